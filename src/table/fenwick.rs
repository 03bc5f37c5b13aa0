//! A Fenwick tree over the insertion order: which positions hold an entry, so that the i-th
//! entry is found in O(log n) after removals.

/// A Fenwick (binary indexed) tree over 0/1 flags: which positions of the insertion order
/// hold an entry, so that the i-th entry is found in O(log n).
#[derive(Debug, Clone, Default)]
pub(super) struct Fenwick {
    /// `tree[i - 1]` holds the sum of the flags in positions `(i - lowbit(i), i]` (1-based).
    tree: Vec<u32>,
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

impl Fenwick {
    /// `n` positions, all set, built in O(n).
    pub(super) fn ones(n: usize) -> Fenwick {
        let mut tree = vec![1; n];
        for i in 1..=n {
            let parent = i + lowbit(i);
            if parent <= n {
                tree[parent - 1] += tree[i - 1];
            }
        }
        Fenwick { tree }
    }

    /// Appends a position with flag `value`.
    pub(super) fn push(&mut self, value: u32) {
        let i = self.tree.len() + 1;
        let mut sum = value;
        let mut j = i - 1;
        while j > i - lowbit(i) {
            sum += self.tree[j - 1];
            j -= lowbit(j);
        }
        self.tree.push(sum);
    }

    /// Clears the flag at 0-based `pos` (which is set).
    pub(super) fn remove_one(&mut self, pos: usize) {
        let mut i = pos + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] -= 1;
            i += lowbit(i);
        }
    }

    /// The 0-based position of the set flag with `k` set flags before it (`k` < the number
    /// set).
    pub(super) fn select(&self, k: usize) -> usize {
        let n = self.tree.len();
        let mut pos = 0;
        let mut rest = k as u64;
        let mut step = if n == 0 { 0 } else { 1 << n.ilog2() };
        while step > 0 {
            let next = pos + step;
            if next <= n && u64::from(self.tree[next - 1]) <= rest {
                pos = next;
                rest -= u64::from(self.tree[next - 1]);
            }
            step >>= 1;
        }
        pos
    }
}
