//! One entry of the known-node table: the node, how it came in, and its check state.

use std::time::Instant;

use crate::nodes::{Group, Node};

/// How an entry came into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Loaded from the nodes file at start.
    File,
    /// Registered itself (`POST /`, a registering `GET /nodes/`).
    Registered,
    /// Added by an administrator (`POST /nodes/`).
    Added,
    /// Learned from a peer's or a seed's list.
    Learned,
    /// Registered by someone else: a caller whose address is not the node's (or a name,
    /// which a caller cannot be shown to be). Counted against the caller's group (its
    /// referrals) and not vouched for until a check of this process's own.
    Referred,
}

impl Source {
    /// Whether this process vouches for an entry of this source before its own check does
    /// (SPEC §2, §11): registered and added entries, and those of its own file (every entry
    /// it wrote was registered, added, or learned after a check of its own). Learned entries
    /// wait for a successful check.
    pub fn vouches(self) -> bool {
        matches!(self, Source::Registered | Source::Added | Source::File)
    }
}

/// One known node and its check state.
#[derive(Debug, Clone)]
pub struct Entry {
    pub(super) node: Node,
    pub(super) last_seen: Option<Instant>,
    /// Saturates at `u16::MAX`, far beyond any `--fail_limit`.
    pub(super) failures: u16,
    pub(super) source: Source,
    pub(super) last_ok: Option<bool>,
    /// Index into `Table::host_info`.
    pub(super) host: u32,
    /// Position in its group's member list.
    pub(super) group_pos: u32,
    /// Position in `Table::order`.
    pub(super) order_pos: u32,
    /// For a `Referred` entry, the address group of the caller who registered it.
    pub(super) referrer: Option<Group>,
}

impl Entry {
    /// The node (canonical host and port).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// How it came in (upgraded to a vouching source when a learned or file entry later
    /// registers or is added).
    pub fn source(&self) -> Source {
        self.source
    }

    /// For an entry someone else registered, the address group of that caller.
    pub fn referrer(&self) -> Option<&Group> {
        self.referrer.as_ref()
    }

    /// Consecutive failed checks since the last successful one.
    pub fn failures(&self) -> u32 {
        u32::from(self.failures)
    }

    /// When a check last found it online; `None` when none ever did.
    pub fn last_seen(&self) -> Option<Instant> {
        self.last_seen
    }

    /// Whether its last check succeeded; `None` when it was never checked.
    pub fn last_ok(&self) -> Option<bool> {
        self.last_ok
    }

    /// Whether this process may vouch for it to others (SPEC §2, §11): registered, added, or
    /// found online by one of its own checks at least once.
    pub fn vouched(&self) -> bool {
        self.source.vouches() || self.last_seen.is_some()
    }
}

/// What [`Table::admit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Added at the end.
    Added,
    /// Added at the end, after evicting this node from the largest group.
    AddedEvicting(Node),
    /// Already known: nothing changed, except that a vouching source replaces one that does
    /// not vouch.
    AlreadyKnown,
    /// The table is full and the newcomer's group is (one of) the largest: nothing changed
    /// (the API answers 507).
    Full,
}
