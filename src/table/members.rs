//! The slots of one address group's entries in the table: a small vector, since most groups
//! of a diverse table hold one or two entries and a table may hold 100,000 groups.

/// Members kept inline: most groups of a diverse table hold one or two entries.
const INLINE: usize = 5;

/// The slots of one group's entries: inline up to `INLINE` of them, on the heap beyond (a
/// heap list stays on the heap until its group empties).
#[derive(Debug, Clone)]
pub(super) enum Members {
    Inline { len: u8, slots: [u32; INLINE] },
    Heap(Vec<u32>),
}

impl Default for Members {
    fn default() -> Members {
        Members::Inline {
            len: 0,
            slots: [0; INLINE],
        }
    }
}

impl std::ops::Deref for Members {
    type Target = [u32];

    fn deref(&self) -> &[u32] {
        match self {
            Members::Inline { len, slots } => &slots[..usize::from(*len)],
            Members::Heap(slots) => slots,
        }
    }
}

impl Members {
    pub(super) fn push(&mut self, slot: u32) {
        match self {
            Members::Inline { len, slots } if usize::from(*len) < INLINE => {
                slots[usize::from(*len)] = slot;
                *len += 1;
            }
            Members::Inline { slots, .. } => {
                let mut heap = Vec::with_capacity(2 * INLINE);
                heap.extend_from_slice(slots);
                heap.push(slot);
                *self = Members::Heap(heap);
            }
            Members::Heap(slots) => slots.push(slot),
        }
    }

    pub(super) fn swap_remove(&mut self, i: usize) {
        match self {
            Members::Inline { len, slots } => {
                let last = usize::from(*len) - 1;
                slots[i] = slots[last];
                *len -= 1;
            }
            Members::Heap(slots) => {
                slots.swap_remove(i);
            }
        }
    }
}
