//! Random samples of the table, diverse across address groups (SPEC §11): groups in random
//! order, one entry each, before any group gives a second.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::{Entry, Table, id};
use crate::nodes::{Group, Node};

impl Table {
    /// One node chosen diversely: a group uniformly at random, then an entry of it uniformly
    /// at random. `None` when empty.
    pub fn random(&self, rng: &mut fastrand::Rng) -> Option<&Node> {
        let group = *self
            .live_groups
            .get(rng.usize(..self.live_groups.len().max(1)))?;
        let members = &self.groups[group as usize].members;
        Some(&self.at(members[rng.usize(..members.len())]).node)
    }

    /// Like [`Table::random`], among the entries `keep` accepts: a random group that has one,
    /// then a random entry of it that `keep` accepts.
    pub fn random_where(
        &self,
        rng: &mut fastrand::Rng,
        keep: impl FnMut(&Entry) -> bool,
    ) -> Option<&Node> {
        self.sample_where(1, rng, keep).pop()
    }

    /// A random sample of at most `k` distinct nodes, diverse across address groups (SPEC
    /// §11): rounds over the groups in a fresh random order each, one entry (uniformly
    /// random among those not yet taken) per group per round, so no group gives a second
    /// entry before every group gives one. With G groups, a group gives at most ⌈k/G⌉ of
    /// the k nodes unless other groups run out of entries first. The order of the answer
    /// is the order of drawing, so any prefix of it is diverse too.
    pub fn sample(&self, k: usize, rng: &mut fastrand::Rng) -> Vec<&Node> {
        self.sample_where(k, rng, |_| true)
    }

    /// Like [`Table::sample`], among the entries `keep` accepts (e.g. `Entry::vouched`, or
    /// IP literals on one port whose last check succeeded); groups without such entries do
    /// not count.
    pub fn sample_where(
        &self,
        k: usize,
        rng: &mut fastrand::Rng,
        mut keep: impl FnMut(&Entry) -> bool,
    ) -> Vec<&Node> {
        // Each group with how many of its members were drawn so far; the draws of a group
        // are a lazy Fisher–Yates shuffle of its member list, whose swaps live in `swaps`.
        let active: Vec<(u32, u32)> = match k {
            0 => Vec::new(),
            _ => self.live_groups.iter().map(|&g| (g, 0)).collect(),
        };
        let mut swaps = Swaps::default();
        round_robin(active, k, rng, |(group, drawn), rng| {
            let members = &self.groups[*group as usize].members;
            while (*drawn as usize) < members.len() {
                let slot = draw(members, *group, *drawn, &mut swaps, rng);
                *drawn += 1;
                let entry = self.at(slot);
                if keep(entry) {
                    return Some(&entry.node);
                }
            }
            None
        })
    }
}

/// Rounds over `groups`, each in a fresh random order (shuffled only as far as the round
/// gets), taking `next`'s pick from each group in turn until `k` are taken; a group for which
/// `next` has none leaves, and the rest of its round is drawn among the others. The order of
/// the answer is the order of taking.
fn round_robin<G, T>(
    mut groups: Vec<G>,
    k: usize,
    rng: &mut fastrand::Rng,
    mut next: impl FnMut(&mut G, &mut fastrand::Rng) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::with_capacity(k.min(groups.len()));
    while out.len() < k && !groups.is_empty() {
        let mut i = 0;
        while i < groups.len() && out.len() < k {
            let pick = rng.usize(i..groups.len());
            groups.swap(i, pick);
            match next(&mut groups[i], rng) {
                Some(taken) => {
                    out.push(taken);
                    i += 1;
                }
                None => {
                    groups.swap_remove(i);
                }
            }
        }
    }
    out
}

/// At most `k` of the `candidates` that `keep` accepts, chosen as [`Table::sample`] chooses
/// (SPEC §11): groups in random order, one node each (a random member the filter accepts),
/// before any group gives a second. For taking a few of the new nodes in a peer's answer (at
/// most `--kn_limit` per answer per round), so that a peer listing many addresses of one group
/// cannot crowd out a node of another. `keep` is asked only of the members drawn, so a long
/// answer costs little more than grouping it; a node is taken once however often it is listed.
pub fn pick_diverse(
    candidates: &[Node],
    k: usize,
    rng: &mut fastrand::Rng,
    mut keep: impl FnMut(&Node) -> bool,
) -> Vec<Node> {
    // The groups, numbered in order of first appearance, and each one's members (positions
    // in `candidates`, in their order) as one segment of `members`: a counting sort, so
    // that a long answer costs a few allocations, not one per group.
    let mut index: foldhash::HashMap<Group, u32> = foldhash::HashMapExt::new();
    let mut group_of: Vec<u32> = Vec::with_capacity(candidates.len());
    let mut sizes: Vec<u32> = Vec::new();
    for node in candidates {
        let next = id(sizes.len());
        let group = *index.entry(node.group()).or_insert(next);
        if group == next {
            sizes.push(0);
        }
        sizes[group as usize] += 1;
        group_of.push(group);
    }
    let mut starts: Vec<u32> = Vec::with_capacity(sizes.len());
    let mut total = 0;
    for &size in &sizes {
        starts.push(total);
        total += size;
    }
    let mut members: Vec<u32> = vec![0; candidates.len()];
    let mut filled = starts.clone();
    for (i, &group) in group_of.iter().enumerate() {
        members[filled[group as usize] as usize] = id(i);
        filled[group as usize] += 1;
    }
    let mut taken: Vec<&Node> = Vec::new();
    round_robin(
        (0..sizes.len()).collect(),
        k,
        rng,
        |&mut group: &mut usize, rng| {
            // The group's members not drawn yet are the first `sizes[group]` of its segment; a
            // draw takes one at random and moves the last into its place.
            let start = starts[group] as usize;
            while sizes[group] > 0 {
                let left = sizes[group] as usize;
                let at = start + rng.usize(..left);
                let drawn = members[at];
                members[at] = members[start + left - 1];
                sizes[group] -= 1;
                let node = &candidates[drawn as usize];
                if !taken.contains(&node) && keep(node) {
                    taken.push(node);
                    return Some(node.clone());
                }
            }
            None
        },
    )
}

/// The `drawn`-th member of a lazy Fisher–Yates shuffle of `members` (the draws of one
/// group), given the swaps made so far in `swaps`.
fn draw(
    members: &[u32],
    group: u32,
    drawn: u32,
    swaps: &mut Swaps,
    rng: &mut fastrand::Rng,
) -> u32 {
    let key = |pos: u32| u64::from(group) << 32 | u64::from(pos);
    let at = |swaps: &Swaps, pos: u32| {
        swaps
            .get(&key(pos))
            .copied()
            .unwrap_or(members[pos as usize])
    };
    let size = id(members.len());
    if size - drawn == 1 {
        return at(swaps, drawn);
    }
    let pick = rng.u32(drawn..size);
    let chosen = at(swaps, pick);
    if pick != drawn {
        let displaced = at(swaps, drawn);
        swaps.insert(key(pick), displaced);
    }
    chosen
}

/// The swaps of the lazy Fisher–Yates shuffles of one sample: (group << 32 | position) →
/// slot. Its keys are ours (group ids and positions, never an attacker's input), so a fast
/// fixed hash is safe here.
type Swaps = HashMap<u64, u32, BuildHasherDefault<Mix64>>;

/// SplitMix64's finaliser as a `Hasher` for one `u64`: every input bit moves every output
/// bit, so the low bits the hash table indexes by are well spread.
#[derive(Default)]
struct Mix64(u64);

impl Hasher for Mix64 {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
