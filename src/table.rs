//! The known-node table (SPEC §11), what Bitcoin calls the address manager: the known nodes in
//! insertion order, spread over address groups, with each entry's check state; a full table
//! evicts from its largest group instead of refusing, and random samples take groups in random
//! order, one entry each, before any group gives a second.
//!
//! Pure: time is an `Instant` handed in, randomness a `fastrand::Rng` handed in; nothing here
//! touches a socket, the disk or the clock. Iteration never depends on hash order, so a seeded
//! `Rng` replays the same decisions.
//!
//! Costs, with n entries and G groups: `admit` (without eviction), `remove`, `record_check`,
//! `contains` O(1) amortised; `get(i)` O(log n) (O(1) until something was removed); eviction
//! O(G + S), S the size of the largest group; `sample(k)` O(k + G); `sample_where` O(k + G +
//! the entries its filter turns down); `random` O(1).

use foldhash::HashMap;
use hashbrown::HashTable;
use std::cmp::Reverse;
use std::hash::BuildHasher;
use std::time::Instant;

use crate::nodes::{Group, Host, Node};

/// A host (IP literal or name) and how many entries it has.
#[derive(Debug, Clone)]
struct HostInfo {
    count: u32,
    group: u32,
}

/// An address group's entries (its key is in `Table::group_ids` only).
#[derive(Debug, Clone)]
struct GroupInfo {
    /// Slots of its entries, in no particular order.
    members: Members,
    /// Position in `Table::live_groups`.
    live_pos: u32,
}

/// How readily an entry is evicted from its group, greatest first: its host's entries, its
/// failed checks, then how long ago it was last seen online (never counts as longest).
type EvictionRank = (u32, u16, Reverse<Option<Instant>>);

/// A hole in `Table::order` left by a removed entry.
const VACANT: u32 = u32::MAX;

/// The known-node table (SPEC §11). See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Entries by slot; `None` for free slots (listed in `free_slots`).
    slots: Vec<Option<Entry>>,
    free_slots: Vec<u32>,
    /// The slots of the entries, found by their node's hash and told apart by the node in the
    /// slot: one probe finds an entry (a map from host to host id, then from (host id,
    /// port) to slot, was two, each a cache miss in a large table).
    index: HashTable<u32>,
    /// Hashes nodes for `index`; seeded per table (foldhash), as the keys are strangers'.
    hasher: foldhash::fast::RandomState,
    /// Host → host id.
    hosts: HashMap<Host, u32>,
    host_info: Vec<HostInfo>,
    free_hosts: Vec<u32>,
    /// Group → group id.
    group_ids: HashMap<Group, u32>,
    groups: Vec<GroupInfo>,
    free_groups: Vec<u32>,
    /// Ids of the groups that have entries.
    live_groups: Vec<u32>,
    /// Slots in insertion order, `VACANT` where an entry was removed.
    order: Vec<u32>,
    /// Which positions of `order` are occupied, to find the i-th entry.
    ranks: Fenwick,
    vacant: usize,
    /// How many `Referred` entries each caller's group registered.
    referrals: HashMap<Group, u32>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it has no entry.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Number of address groups with at least one entry.
    pub fn groups(&self) -> usize {
        self.live_groups.len()
    }

    /// Entries in the largest group (0 when empty).
    pub fn largest_group(&self) -> usize {
        self.live_groups
            .iter()
            .map(|&g| self.groups[g as usize].members.len())
            .max()
            .unwrap_or(0)
    }

    /// Whether `node` (in canonical form) is known.
    pub fn contains(&self, node: &Node) -> bool {
        self.slot_of(node).is_some()
    }

    /// The entry of `node`, if known.
    pub fn entry(&self, node: &Node) -> Option<&Entry> {
        self.slot_of(node).map(|slot| self.at(slot))
    }

    /// The entry at position `i` of the insertion order (oldest first).
    pub fn get(&self, i: usize) -> Option<&Entry> {
        if i >= self.len() {
            return None;
        }
        let pos = if self.vacant == 0 {
            i
        } else {
            self.ranks.select(i)
        };
        Some(self.at(self.order[pos]))
    }

    /// The entries, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.order
            .iter()
            .filter(|&&slot| slot != VACANT)
            .map(|&slot| self.at(slot))
    }

    /// Admits a node (SPEC §11). A known node is `AlreadyKnown`. Below `max_nodes` entries
    /// the node is added. A full table evicts instead of refusing: when the newcomer's group
    /// is smaller than the largest group, one entry of a largest group (ties at random) is
    /// evicted — from its host with the most entries, the entry with the most failed checks,
    /// then the one least recently seen online (never counts as least recent), remaining
    /// ties at random — and the newcomer added; when its group is (one of) the largest, it
    /// is `Full`. The table never grows past `max_nodes`, nor past its size when it already
    /// holds more.
    pub fn admit(
        &mut self,
        node: Node,
        source: Source,
        max_nodes: usize,
        rng: &mut fastrand::Rng,
    ) -> Admission {
        self.admit_from(node, source, None, max_nodes, rng)
    }

    /// Admits a node that a caller of group `referrer` registered on its behalf, as
    /// `Source::Referred` (see [`Table::admit`]; a known node is left as it is).
    pub fn admit_referred(
        &mut self,
        node: Node,
        referrer: Group,
        max_nodes: usize,
        rng: &mut fastrand::Rng,
    ) -> Admission {
        self.admit_from(node, Source::Referred, Some(referrer), max_nodes, rng)
    }

    /// How many entries callers of `group` registered on others' behalf (`Referred`).
    pub fn referred_by(&self, group: &Group) -> usize {
        self.referrals.get(group).map_or(0, |&n| n as usize)
    }

    fn admit_from(
        &mut self,
        node: Node,
        source: Source,
        referrer: Option<Group>,
        max_nodes: usize,
        rng: &mut fastrand::Rng,
    ) -> Admission {
        if let Some(slot) = self.slot_of(&node) {
            let entry = self.at_mut(slot);
            if source.vouches() && !entry.source.vouches() {
                entry.source = source;
                // No longer someone else's referral: the node itself (or an administrator)
                // stands for it now.
                if let Some(gone) = entry.referrer.take() {
                    self.unrefer(&gone);
                }
            }
            return Admission::AlreadyKnown;
        }
        let mut evicted = None;
        if self.len() >= max_nodes {
            let own = self.group_size_of(&node.host);
            match self.pick_largest_group(rng) {
                Some((group, size)) if own < size => evicted = Some(self.evict_from(group, rng)),
                _ => return Admission::Full,
            }
        }
        self.insert(node, source, referrer);
        match evicted {
            Some(node) => Admission::AddedEvicting(node),
            None => Admission::Added,
        }
    }

    /// Removes `node`; returns its entry when it was known.
    pub fn remove(&mut self, node: &Node) -> Option<Entry> {
        let slot = self.slot_of(node)?;
        Some(self.remove_slot(slot))
    }

    /// Records a check of `node` made at `now`: online resets its failures and sets when it
    /// was last seen online; offline adds a failure. Returns the updated entry, `None` when
    /// the node is not known.
    pub fn record_check(&mut self, node: &Node, online: bool, now: Instant) -> Option<&Entry> {
        let slot = self.slot_of(node)?;
        let entry = self.at_mut(slot);
        if online {
            entry.failures = 0;
            entry.last_seen = Some(entry.last_seen.map_or(now, |seen| seen.max(now)));
        } else {
            entry.failures = entry.failures.saturating_add(1);
        }
        entry.last_ok = Some(online);
        Some(entry)
    }

    fn slot_of(&self, node: &Node) -> Option<u32> {
        let hash = self.hasher.hash_one(node);
        self.index
            .find(hash, |&slot| self.at(slot).node == *node)
            .copied()
    }

    fn at(&self, slot: u32) -> &Entry {
        occupied(&self.slots, slot)
    }

    fn at_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize]
            .as_mut()
            .unwrap_or_else(|| unreachable!("slot {slot} is free"))
    }

    /// Entries in the group of `host` (0 for a group not in the table).
    fn group_size_of(&self, host: &Host) -> usize {
        let group = match self.hosts.get(host) {
            Some(&h) => Some(self.host_info[h as usize].group),
            None => self.group_ids.get(&host.group()).copied(),
        };
        group.map_or(0, |g| self.groups[g as usize].members.len())
    }

    /// A largest group (ties at random) and its size.
    fn pick_largest_group(&self, rng: &mut fastrand::Rng) -> Option<(u32, usize)> {
        let mut best: Option<(u32, usize)> = None;
        let mut ties = 0;
        for &group in &self.live_groups {
            let size = self.groups[group as usize].members.len();
            match best {
                Some((_, most)) if size < most => {}
                Some((_, most)) if size == most => {
                    ties += 1;
                    if rng.usize(..ties) == 0 {
                        best = Some((group, size));
                    }
                }
                _ => {
                    best = Some((group, size));
                    ties = 1;
                }
            }
        }
        best
    }

    /// Evicts one entry of `group` (see [`Table::admit`]) and returns its node.
    fn evict_from(&mut self, group: u32, rng: &mut fastrand::Rng) -> Node {
        let mut best: Option<(u32, EvictionRank)> = None;
        let mut ties = 0;
        for &slot in self.groups[group as usize].members.iter() {
            let entry = self.at(slot);
            let key = (
                self.host_info[entry.host as usize].count,
                entry.failures,
                Reverse(entry.last_seen),
            );
            match &best {
                Some((_, most)) if key < *most => {}
                Some((_, most)) if key == *most => {
                    ties += 1;
                    if rng.usize(..ties) == 0 {
                        best = Some((slot, key));
                    }
                }
                _ => {
                    best = Some((slot, key));
                    ties = 1;
                }
            }
        }
        let (slot, _) = best.unwrap_or_else(|| unreachable!("a live group has members"));
        self.remove_slot(slot).node
    }

    fn unrefer(&mut self, group: &Group) {
        if let Some(count) = self.referrals.get_mut(group) {
            *count -= 1;
            if *count == 0 {
                self.referrals.remove(group);
            }
        }
    }

    fn insert(&mut self, node: Node, source: Source, referrer: Option<Group>) {
        if let Some(group) = &referrer {
            *self.referrals.entry(group.clone()).or_insert(0) += 1;
        }
        let host = match self.hosts.get(&node.host) {
            Some(&h) => h,
            None => {
                let key = node.host.group();
                let group = match self.group_ids.get(&key) {
                    Some(&g) => g,
                    None => self.new_group(key),
                };
                let info = HostInfo { count: 0, group };
                let h = match self.free_hosts.pop() {
                    Some(h) => {
                        self.host_info[h as usize] = info;
                        h
                    }
                    None => {
                        self.host_info.push(info);
                        id(self.host_info.len() - 1)
                    }
                };
                self.hosts.insert(node.host.clone(), h);
                h
            }
        };
        let info = &mut self.host_info[host as usize];
        info.count += 1;
        let members = &mut self.groups[info.group as usize].members;
        let slot = self.free_slots.pop().unwrap_or(id(self.slots.len()));
        let entry = Entry {
            last_seen: None,
            failures: 0,
            source,
            last_ok: None,
            host,
            group_pos: id(members.len()),
            order_pos: id(self.order.len()),
            referrer,
            node,
        };
        members.push(slot);
        let hash = self.hasher.hash_one(&entry.node);
        self.order.push(slot);
        self.ranks.push(1);
        match self.slots.get_mut(slot as usize) {
            Some(free) => *free = Some(entry),
            None => self.slots.push(Some(entry)),
        }
        let Table {
            index,
            slots,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, slot, |&s| hasher.hash_one(&occupied(slots, s).node));
    }

    fn new_group(&mut self, key: Group) -> u32 {
        let info = GroupInfo {
            members: Members::default(),
            live_pos: id(self.live_groups.len()),
        };
        let group = match self.free_groups.pop() {
            Some(g) => {
                self.groups[g as usize] = info;
                g
            }
            None => {
                self.groups.push(info);
                id(self.groups.len() - 1)
            }
        };
        self.live_groups.push(group);
        self.group_ids.insert(key, group);
        group
    }

    fn remove_slot(&mut self, slot: u32) -> Entry {
        let entry = self.slots[slot as usize]
            .take()
            .unwrap_or_else(|| unreachable!("slot {slot} is free"));
        self.free_slots.push(slot);
        let hash = self.hasher.hash_one(&entry.node);
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        if let Some(group) = &entry.referrer {
            self.unrefer(group);
        }

        self.order[entry.order_pos as usize] = VACANT;
        self.ranks.remove_one(entry.order_pos as usize);
        self.vacant += 1;

        let info = &mut self.host_info[entry.host as usize];
        info.count -= 1;
        let (group, host_gone) = (info.group, info.count == 0);
        let members = &mut self.groups[group as usize].members;
        members.swap_remove(entry.group_pos as usize);
        if let Some(moved) = members.get(entry.group_pos as usize).copied() {
            self.at_mut(moved).group_pos = entry.group_pos;
        }
        if self.groups[group as usize].members.is_empty() {
            self.drop_group(group, &entry.node.host.group());
        }
        if host_gone {
            self.hosts.remove(&entry.node.host);
            self.free_hosts.push(entry.host);
        }
        if self.vacant > 32 && self.vacant * 2 > self.order.len() {
            self.compact();
        }
        entry
    }

    fn drop_group(&mut self, group: u32, key: &Group) {
        let info = &mut self.groups[group as usize];
        let pos = info.live_pos as usize;
        info.members = Members::default();
        self.group_ids.remove(key);
        self.live_groups.swap_remove(pos);
        if let Some(&moved) = self.live_groups.get(pos) {
            self.groups[moved as usize].live_pos = id(pos);
        }
        self.free_groups.push(group);
    }

    /// Closes the holes in `order` (amortised: only when they outnumber the entries).
    fn compact(&mut self) {
        let mut live = 0;
        for read in 0..self.order.len() {
            let slot = self.order[read];
            if slot != VACANT {
                self.order[live] = slot;
                self.at_mut(slot).order_pos = id(live);
                live += 1;
            }
        }
        self.order.truncate(live);
        self.ranks = Fenwick::ones(live);
        self.vacant = 0;
    }
}

/// The entry in `slot`, which is occupied.
fn occupied(slots: &[Option<Entry>], slot: u32) -> &Entry {
    slots[slot as usize]
        .as_ref()
        .unwrap_or_else(|| unreachable!("slot {slot} is free"))
}

/// An index as `u32`: the table holds fewer than 2³² entries.
fn id(index: usize) -> u32 {
    u32::try_from(index).unwrap_or_else(|_| unreachable!("more than 2^32 entries"))
}

mod entry;
mod fenwick;
mod members;
mod sample;

pub use entry::{Admission, Entry, Source};

use fenwick::Fenwick;
use members::Members;
pub use sample::pick_diverse;

#[cfg(test)]
mod tests;
