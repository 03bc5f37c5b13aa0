//! The known nodes as data, and what each change does to them: `Snapshot` (the committed
//! table, shared by every reader until the next change), `Change`, `Outcome`, and `Rules`,
//! the one pure function from a table and a change to the next table. The store's committer
//! applies it before writing the file; `MemoryStore` applies it in memory for the simulator
//! and for tests.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use crate::config::Identity;
use crate::nodes::{Group, Host, Node};
use crate::policy::{LocalRule, Refusal};
use crate::table::{Admission, Entry, Source, Table};

/// Whether this process vouches for `entry` to others (SPEC §2, §11): it registered itself,
/// was added by an administrator or loaded from the file, with an IP address; or one of this
/// process's own checks found it online. Learned entries and names wait for a check (a name
/// may turn out to be this process, or to lead to an address the rules refuse).
pub fn vouched(entry: &Entry) -> bool {
    entry.last_seen().is_some()
        || (entry.source().vouches() && matches!(entry.node().host, Host::Ip(_)))
}

/// The committed table. Shared by every reader until the next change.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub table: Table,
    /// Every entry, oldest first, as the file holds them; made on first use.
    file: OnceLock<Vec<u8>>,
    /// The vouched entries, oldest first, as `GET /nodes/` answers them; made on first use.
    listed: OnceLock<Vec<Node>>,
    /// `listed` as JSON, made on first use: apart, because the rounds and every sampled
    /// answer count the vouched nodes, and only a whole-list answer needs their JSON.
    listed_json: OnceLock<Vec<u8>>,
}

impl Snapshot {
    /// A snapshot of `table`.
    pub fn new(table: Table) -> Snapshot {
        Snapshot {
            table,
            file: OnceLock::new(),
            listed: OnceLock::new(),
            listed_json: OnceLock::new(),
        }
    }

    /// Every entry as the nodes file's JSON array (SPEC §4), serialized once per snapshot.
    pub fn file_json(&self) -> &[u8] {
        self.file.get_or_init(|| {
            let nodes: Vec<&Node> = self.table.iter().map(Entry::node).collect();
            // Serializing our own types to memory cannot fail.
            serde_json::to_vec(&nodes).unwrap_or_else(|_| b"[]".to_vec())
        })
    }

    /// The vouched nodes, oldest first: what `GET /nodes/` lists.
    pub fn known(&self) -> &[Node] {
        self.listed.get_or_init(|| {
            self.table
                .iter()
                .filter(|e| vouched(e))
                .map(|e| e.node().clone())
                .collect()
        })
    }

    /// `known()` as a JSON array, serialized once per snapshot.
    pub fn known_json(&self) -> &[u8] {
        self.listed_json.get_or_init(|| {
            // Serializing our own types to memory cannot fail.
            serde_json::to_vec(self.known()).unwrap_or_else(|_| b"[]".to_vec())
        })
    }

    /// Every node in the table, vouched or not, oldest first: what the rounds check.
    pub fn all(&self) -> Vec<Node> {
        self.table.iter().map(|e| e.node().clone()).collect()
    }

    /// Entries that wait for this process's first check of them.
    pub fn unverified(&self) -> usize {
        self.table.len() - self.known().len()
    }
}

/// A change to the known nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A node registering itself (`POST /`, a registering `GET /nodes/`).
    Register(Node),
    /// A caller of address group `by` registering a node that is not itself (another
    /// address, or a name): counted against `by`, and not vouched for until checked.
    Refer { node: Node, by: Group },
    /// An administrator adding a node (`POST /nodes/`).
    Add(Node),
    /// An administrator removing a node (`DELETE /nodes/`).
    Remove(Node),
    /// Nodes learned from a peer's or a seed's list: admitted unverified (SPEC §11).
    Learn(Vec<Node>),
    /// Nodes that stopped answering.
    Forget(Vec<Node>),
    /// The results of this process's own checks (online or not), made at `at`.
    Checked {
        results: Vec<(Node, bool)>,
        at: Instant,
    },
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Added; when the table was full, `evicted` made room (SPEC §11).
    Added {
        evicted: Option<Node>,
    },
    /// Already known: nothing changed.
    AlreadyKnown,
    /// The table is full and the newcomer's address group is (one of) the largest: nothing
    /// changed (507).
    Full,
    /// The node is this process itself: nothing changed.
    IsSelf,
    /// The local-address rule refuses the node: nothing changed.
    Refused(Refusal),
    /// The caller's group already registered `Rules::max_referred` nodes other than itself
    /// that are still known: nothing changed.
    TooManyReferred,
    Removed,
    /// Not known: nothing changed.
    NotKnown,
    /// `Learn`: how many nodes were added, how many entries they evicted, and how many the
    /// local-address rule refused.
    Learned {
        added: usize,
        evicted: usize,
        refused: usize,
    },
    /// `Forget`: how many nodes were removed.
    Forgot(usize),
    /// `Checked`: the entries' check state was recorded.
    Recorded,
}

impl Outcome {
    /// Whether the change changed which nodes are known (and so the file).
    pub fn changed(&self) -> bool {
        match self {
            Outcome::Added { .. } | Outcome::Removed => true,
            Outcome::Learned { added: n, .. } | Outcome::Forgot(n) => *n > 0,
            Outcome::AlreadyKnown
            | Outcome::Full
            | Outcome::IsSelf
            | Outcome::Refused(_)
            | Outcome::TooManyReferred
            | Outcome::NotKnown
            | Outcome::Recorded => false,
        }
    }

    /// How many entries the change evicted.
    pub fn evicted(&self) -> usize {
        match self {
            Outcome::Added { evicted } => usize::from(evicted.is_some()),
            Outcome::Learned { evicted, .. } => *evicted,
            _ => 0,
        }
    }

    /// How many nodes the local-address rule refused.
    pub fn refused(&self) -> usize {
        match self {
            Outcome::Refused(_) => 1,
            Outcome::Learned { refused, .. } => *refused,
            _ => 0,
        }
    }
}

/// A change as committed: what it did, and the table right after it.
#[derive(Debug, Clone)]
pub struct Committed {
    pub outcome: Outcome,
    pub snapshot: Arc<Snapshot>,
}

/// What a change may do: the cap, this process's own identities, the local-address rule.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `--max_nodes`.
    pub max_nodes: usize,
    /// This process itself, never added (SPEC §1).
    pub own: Identity,
    /// SPEC §11's local-address rule, for every way a node comes in.
    pub local: LocalRule,
    /// `--reg_others`: most entries one caller's address group may have registered on
    /// others' behalf at once. Without it, one source could register an address in every
    /// group and own the diverse answers meant to keep it to one group's share.
    pub max_referred: usize,
}

impl Rules {
    /// Applies one change to `table` and says what it did. Pure: the committer applies it to
    /// a copy of the committed table (cloned on the first change of a batch that changes
    /// something), the simulator to its in-memory tables; `rng` breaks eviction ties.
    pub fn apply(
        &self,
        table: &mut Cow<'_, Table>,
        change: &Change,
        rng: &mut fastrand::Rng,
    ) -> Outcome {
        match change {
            Change::Register(node) => self.admit(table, node, Source::Registered, rng),
            Change::Refer { node, by } => {
                if !table.contains(node) && table.referred_by(by) >= self.max_referred {
                    return Outcome::TooManyReferred;
                }
                self.admit_referred(table, node, by, rng)
            }
            Change::Add(node) => self.admit(table, node, Source::Added, rng),
            Change::Remove(node) => {
                if table.contains(node) {
                    table.to_mut().remove(node);
                    Outcome::Removed
                } else {
                    Outcome::NotKnown
                }
            }
            Change::Learn(learned) => {
                let (mut added, mut evicted, mut refused) = (0, 0, 0);
                for node in learned {
                    match self.admit(table, node, Source::Learned, rng) {
                        Outcome::Added { evicted: e } => {
                            added += 1;
                            evicted += usize::from(e.is_some());
                        }
                        Outcome::Refused(_) => refused += 1,
                        _ => {}
                    }
                }
                Outcome::Learned {
                    added,
                    evicted,
                    refused,
                }
            }
            Change::Forget(gone) => {
                let mut removed = 0;
                for node in gone {
                    if may_know(table, node) && table.to_mut().remove(node).is_some() {
                        removed += 1;
                    }
                }
                Outcome::Forgot(removed)
            }
            Change::Checked { results, at } => {
                for (node, online) in results {
                    if may_know(table, node) {
                        table.to_mut().record_check(node, *online, *at);
                    }
                }
                Outcome::Recorded
            }
        }
    }

    fn admit(
        &self,
        table: &mut Cow<'_, Table>,
        node: &Node,
        source: Source,
        rng: &mut fastrand::Rng,
    ) -> Outcome {
        self.admit_as(table, node, source, None, rng)
    }

    fn admit_referred(
        &self,
        table: &mut Cow<'_, Table>,
        node: &Node,
        by: &Group,
        rng: &mut fastrand::Rng,
    ) -> Outcome {
        self.admit_as(table, node, Source::Referred, Some(by), rng)
    }

    fn admit_as(
        &self,
        table: &mut Cow<'_, Table>,
        node: &Node,
        source: Source,
        referrer: Option<&Group>,
        rng: &mut fastrand::Rng,
    ) -> Outcome {
        if self.own.contains(node) {
            return Outcome::IsSelf;
        }
        if let Err(refusal) = self.local.check_node(node) {
            return Outcome::Refused(refusal);
        }
        if let Some(entry) = table.entry(node) {
            // A registration of a learned entry upgrades it (the table does that); nothing
            // else changes, so nothing is cloned for a plain re-announcement.
            if !source.vouches() || entry.source().vouches() {
                return Outcome::AlreadyKnown;
            }
        }
        let table = table.to_mut();
        let admission = match referrer {
            Some(by) => table.admit_referred(node.clone(), by.clone(), self.max_nodes, rng),
            None => table.admit(node.clone(), source, self.max_nodes, rng),
        };
        match admission {
            Admission::Added => Outcome::Added { evicted: None },
            Admission::AddedEvicting(gone) => Outcome::Added {
                evicted: Some(gone),
            },
            Admission::AlreadyKnown => Outcome::AlreadyKnown,
            Admission::Full => Outcome::Full,
        }
    }
}

/// Whether `table` may hold `node`, asked before changing an entry that may not be there: a
/// table still shared (borrowed) is looked in, so that an unknown node does not make it copy
/// itself; one already owned is changed directly, as the change finds the entry anyway.
// Whether the table is owned or borrowed is the point, so the `Cow` itself is the argument.
#[allow(clippy::ptr_arg)]
fn may_know(table: &Cow<'_, Table>, node: &Node) -> bool {
    match table {
        Cow::Owned(_) => true,
        Cow::Borrowed(shared) => shared.contains(node),
    }
}

/// The known nodes without a file: each change is applied at once with `Rules::apply`. The
/// simulator's nodes and the rounds' tests use it; with nothing to write, nothing fails.
#[derive(Debug)]
pub struct MemoryStore {
    rules: Rules,
    current: Mutex<(Arc<Snapshot>, fastrand::Rng)>,
}

impl MemoryStore {
    /// A store holding `table`, changed by `rules`, breaking ties with `rng`.
    pub fn new(rules: Rules, table: Table, rng: fastrand::Rng) -> MemoryStore {
        MemoryStore {
            rules,
            current: Mutex::new((Arc::new(Snapshot::new(table)), rng)),
        }
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(
            &self
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .0,
        )
    }

    /// Applies `change`. The table is changed in place unless a reader still holds the
    /// snapshot, which then keeps the table it had.
    pub fn apply(&self, change: &Change) -> Committed {
        let mut guard = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let (current, rng) = &mut *guard;
        let snapshot = Arc::make_mut(current);
        let mut table = Cow::Owned(std::mem::take(&mut snapshot.table));
        let outcome = self.rules.apply(&mut table, change, rng);
        *snapshot = Snapshot::new(table.into_owned());
        Committed {
            outcome,
            snapshot: Arc::clone(current),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn n(ip: &str, port: u16) -> Node {
        Node::new(ip, port).unwrap()
    }

    fn rules(max_nodes: usize) -> Rules {
        Rules {
            max_nodes,
            own: Identity::of(vec![n("127.0.0.1", 1)]),
            local: LocalRule {
                allow_local: true,
                public_only: false,
            },
            max_referred: 8,
        }
    }

    fn apply(rules: &Rules, table: &mut Table, change: Change) -> Outcome {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut cow = Cow::Owned(std::mem::take(table));
        let outcome = rules.apply(&mut cow, &change, &mut rng);
        *table = cow.into_owned();
        outcome
    }

    #[test]
    fn registered_ips_are_vouched_for_learned_and_named_ones_wait_for_a_check() {
        let rules = rules(10);
        let mut table = Table::new();
        apply(&rules, &mut table, Change::Register(n("127.0.0.2", 2)));
        apply(&rules, &mut table, Change::Register(n("seed.localhost", 3)));
        apply(&rules, &mut table, Change::Learn(vec![n("127.0.0.4", 4)]));
        let snapshot = Snapshot::new(table.clone());
        assert_eq!(snapshot.known(), &[n("127.0.0.2", 2)]);
        assert_eq!(snapshot.unverified(), 2);
        assert_eq!(snapshot.all().len(), 3);
        let at = Instant::now();
        let checked = vec![(n("127.0.0.4", 4), true), (n("seed.localhost", 3), false)];
        let outcome = apply(
            &rules,
            &mut table,
            Change::Checked {
                results: checked,
                at,
            },
        );
        assert_eq!(outcome, Outcome::Recorded);
        let snapshot = Snapshot::new(table);
        assert_eq!(snapshot.known(), &[n("127.0.0.2", 2), n("127.0.0.4", 4)]);
        assert_eq!(
            snapshot.known_json(),
            br#"[{"ip_address":"127.0.0.2","port":2},{"ip_address":"127.0.0.4","port":4}]"#
        );
        assert!(snapshot.file_json().len() > snapshot.known_json().len());
    }

    #[test]
    fn a_full_table_evicts_from_the_largest_group_or_refuses_its_own() {
        let rules = rules(3);
        let mut table = Table::new();
        for port in 2..=4 {
            apply(&rules, &mut table, Change::Register(n("127.0.0.9", port)));
        }
        let same_group = apply(&rules, &mut table, Change::Register(n("127.0.1.1", 9)));
        assert_eq!(same_group, Outcome::Full, "127.0/16 is the largest group");
        match apply(&rules, &mut table, Change::Register(n("127.5.0.1", 9))) {
            Outcome::Added {
                evicted: Some(gone),
            } => assert_eq!(gone.host.to_string(), "127.0.0.9"),
            other => panic!("{other:?}"),
        }
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn itself_and_refused_addresses_never_come_in() {
        let rules = Rules {
            local: LocalRule {
                allow_local: false,
                public_only: false,
            },
            max_referred: 8,
            ..rules(10)
        };
        let mut table = Table::new();
        assert_eq!(
            apply(&rules, &mut table, Change::Register(n("127.0.0.1", 1))),
            Outcome::IsSelf
        );
        let refused = apply(&rules, &mut table, Change::Add(n("169.254.169.254", 80)));
        assert!(matches!(refused, Outcome::Refused(_)), "{refused:?}");
        let learned = apply(
            &rules,
            &mut table,
            Change::Learn(vec![n("127.0.0.3", 6379), n("localhost", 8)]),
        );
        assert_eq!(
            learned,
            Outcome::Learned {
                added: 0,
                evicted: 0,
                refused: 2
            }
        );
        assert!(table.is_empty());
    }

    #[test]
    fn a_memory_store_applies_changes_in_place() {
        let store = MemoryStore::new(rules(10), Table::new(), fastrand::Rng::with_seed(3));
        let committed = store.apply(&Change::Register(n("127.0.0.2", 2)));
        assert_eq!(committed.outcome, Outcome::Added { evicted: None });
        drop(committed);
        let held = store.snapshot();
        store.apply(&Change::Forget(vec![n("127.0.0.2", 2)]));
        assert_eq!(held.known().len(), 1, "a reader keeps the table it had");
        assert!(store.snapshot().table.is_empty());
        let later = Instant::now() + Duration::from_secs(1);
        let outcome = store.apply(&Change::Checked {
            results: vec![(n("127.0.0.9", 9), true)],
            at: later,
        });
        assert_eq!(
            outcome.outcome,
            Outcome::Recorded,
            "unknown nodes are ignored"
        );
    }
}
