//! The nodes a DNS seed answers with (SPEC §12): the known-node table's healthy entries, those
//! whose last check by this seed succeeded, drawn as SPEC §11's diverse samples (groups in
//! random order, one entry each, before any group gives a second).
//!
//! `Healthy` is a view of one committed snapshot, made once per snapshot and shared by the
//! server's threads. It indexes the apex's `A`/`AAAA` candidates (healthy IP literals on
//! `--seed_port`) in tables of their own, so that an answer samples them without searching
//! the whole table, and it carries a `generation` that changes only when the set of healthy
//! nodes does: the store publishes a new snapshot on every committed change, check results
//! included, and answers cached by generation (`dnscache`) outlive the snapshots that do not
//! change what DNS may answer. Pure: randomness is handed in.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use crate::membership::Snapshot;
use crate::nodes::{Host, Node};
use crate::table::{Entry, Source, Table};

/// Whether DNS may answer with `entry` (SPEC §12): the last check of it succeeded.
pub fn healthy(entry: &Entry) -> bool {
    entry.last_ok() == Some(true)
}

/// A snapshot as DNS answers see it. Cheap to share (`Arc`); see the module docs.
#[derive(Debug, Clone)]
pub struct Healthy {
    snapshot: Arc<Snapshot>,
    /// `--seed_port`: healthy IP literals on it are the apex's `A`/`AAAA` answers.
    seed_port: u16,
    /// Healthy entries in `snapshot`.
    count: usize,
    /// The apex candidates: healthy IPv4 literals on the seed port, then IPv6 ones.
    apex: Arc<(Table, Table)>,
    /// The IP addresses of healthy nodes, on any port: the only `<ip>.Z` names answered.
    ips: Arc<HashSet<IpAddr>>,
    generation: u64,
}

impl Healthy {
    /// The view of `snapshot`, generation 0.
    pub fn new(snapshot: Arc<Snapshot>, seed_port: u16) -> Healthy {
        let mut view = Healthy {
            snapshot,
            seed_port,
            count: 0,
            apex: Arc::default(),
            ips: Arc::default(),
            generation: 0,
        };
        view.index();
        view
    }

    /// The view of a later `snapshot`: the same generation and apex index when it holds
    /// exactly the healthy nodes this one holds, the next generation and a new index
    /// otherwise. O(n) lookups for n table entries; nothing is copied when nothing changed.
    pub fn next(&self, snapshot: Arc<Snapshot>) -> Healthy {
        let mut count = 0;
        let mut same = true;
        for entry in snapshot.table.iter().filter(|e| healthy(e)) {
            count += 1;
            same = same && self.snapshot.table.entry(entry.node()).is_some_and(healthy);
        }
        let mut view = Healthy {
            snapshot,
            seed_port: self.seed_port,
            count,
            apex: Arc::clone(&self.apex),
            ips: Arc::clone(&self.ips),
            generation: self.generation,
        };
        if !same || count != self.count {
            view.generation = self.generation.wrapping_add(1);
            view.index();
        }
        view
    }

    /// Counts the healthy entries and indexes the apex candidates and the healthy addresses.
    fn index(&mut self) {
        let (mut v4, mut v6) = (Table::new(), Table::new());
        let mut ips = HashSet::new();
        // The tables never fill, so nothing is evicted and the RNG decides nothing.
        let mut rng = fastrand::Rng::with_seed(0);
        self.count = 0;
        for entry in self.snapshot.table.iter().filter(|e| healthy(e)) {
            self.count += 1;
            let node = entry.node();
            if let Host::Ip(ip) = node.host {
                ips.insert(ip);
            }
            let table = match node.host {
                Host::Ip(ip) if node.port == self.seed_port && ip.is_ipv4() => &mut v4,
                Host::Ip(_) if node.port == self.seed_port => &mut v6,
                _ => continue,
            };
            table.admit(node.clone(), Source::File, usize::MAX, &mut rng);
        }
        self.apex = Arc::new((v4, v6));
        self.ips = Arc::new(ips);
    }

    /// The snapshot this is a view of.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// Whether this is the view of `snapshot` (the very one, not an equal one).
    pub fn is_of(&self, snapshot: &Arc<Snapshot>) -> bool {
        Arc::ptr_eq(&self.snapshot, snapshot)
    }

    /// Changes when, and only when, the set of healthy nodes changes (wrapping at `u64::MAX`,
    /// which no process reaches): an answer built from one generation is an answer of any
    /// view of that generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// How many nodes are healthy.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no node is healthy.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether a healthy node has the address `ip` (on any port). O(1).
    pub fn has_ip(&self, ip: IpAddr) -> bool {
        self.ips.contains(&ip)
    }

    /// Up to `k` distinct healthy nodes, a diverse sample (SPEC §11) in the order drawn.
    /// O(k + G + the unhealthy entries drawn on the way), G the table's address groups.
    pub fn sample(&self, k: usize, rng: &mut fastrand::Rng) -> Vec<&Node> {
        self.snapshot.table.sample_where(k, rng, healthy)
    }

    /// Up to `k` distinct healthy IPv4 literals (`v4`) or IPv6 literals on `--seed_port`, a
    /// diverse sample: the apex's `A` or `AAAA` answer. O(k + their groups).
    pub fn apex(&self, v4: bool, k: usize, rng: &mut fastrand::Rng) -> Vec<&Node> {
        let (ipv4, ipv6) = &*self.apex;
        if v4 { ipv4 } else { ipv6 }.sample(k, rng)
    }
}

/// A view of `nodes`, each registered and found online by one check: for tests.
#[cfg(test)]
pub(crate) fn all_healthy(nodes: &[Node], seed_port: u16) -> Healthy {
    let mut table = Table::new();
    let mut rng = fastrand::Rng::with_seed(1);
    let at = std::time::Instant::now();
    for node in nodes {
        table.admit(node.clone(), Source::Registered, usize::MAX, &mut rng);
        table.record_check(node, true, at);
    }
    Healthy::new(Arc::new(Snapshot::new(table)), seed_port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn n(ip: &str, port: u16) -> Node {
        Node::new(ip, port).unwrap()
    }

    /// A snapshot of `nodes`, each with its check result (`None`: never checked).
    fn snapshot(nodes: &[(Node, Option<bool>)]) -> Arc<Snapshot> {
        let mut table = Table::new();
        let mut rng = fastrand::Rng::with_seed(1);
        let at = Instant::now();
        for (node, ok) in nodes {
            table.admit(node.clone(), Source::Registered, 1000, &mut rng);
            if let Some(ok) = ok {
                table.record_check(node, *ok, at);
            }
        }
        Arc::new(Snapshot::new(table))
    }

    #[test]
    fn only_nodes_whose_last_check_succeeded_are_sampled() {
        let view = Healthy::new(
            snapshot(&[
                (n("127.0.0.1", 55000), Some(true)),
                (n("127.1.0.1", 55000), Some(false)),
                (n("127.2.0.1", 55000), None),
                (n("::1", 55000), Some(true)),
                (n("127.3.0.1", 7), Some(true)),
                (n("node.example.org", 55000), Some(true)),
            ]),
            55000,
        );
        let mut rng = fastrand::Rng::with_seed(2);
        let mut all: Vec<String> = view
            .sample(16, &mut rng)
            .iter()
            .map(|n| n.to_string())
            .collect();
        all.sort();
        let want = [
            "127.0.0.1:55000",
            "127.3.0.1:7",
            "[::1]:55000",
            "node.example.org:55000",
        ];
        assert_eq!(all, want);
        assert_eq!(view.len(), 4);
        assert_eq!(view.apex(true, 16, &mut rng), [&n("127.0.0.1", 55000)]);
        assert_eq!(view.apex(false, 16, &mut rng), [&n("::1", 55000)]);
    }

    #[test]
    fn samples_are_diverse_across_address_groups() {
        // 40 healthy nodes in one /16, one in each of 8 others: 9 groups give 9 answers.
        let mut nodes: Vec<(Node, Option<bool>)> = (0..40)
            .map(|i| (n(&format!("127.0.0.{}", i + 1), 55000), Some(true)))
            .collect();
        nodes.extend((1..=8).map(|g| (n(&format!("127.{g}.0.1"), 55000), Some(true))));
        let view = Healthy::new(snapshot(&nodes), 55000);
        let mut rng = fastrand::Rng::with_seed(3);
        for sample in [view.sample(9, &mut rng), view.apex(true, 9, &mut rng)] {
            let mut groups: Vec<_> = sample.iter().map(|n| n.group()).collect();
            groups.sort();
            groups.dedup();
            assert_eq!(groups.len(), 9, "one per group first");
        }
    }

    #[test]
    fn the_generation_changes_only_with_the_healthy_set() {
        let a = n("127.0.0.1", 55000);
        let b = n("127.1.0.1", 55000);
        let first = Healthy::new(snapshot(&[(a.clone(), Some(true)), (b.clone(), None)]), 1);
        // Another snapshot, same healthy nodes (b still unchecked): same generation.
        let same = first.next(snapshot(&[
            (a.clone(), Some(true)),
            (b.clone(), Some(false)),
        ]));
        assert_eq!(same.generation(), first.generation());
        assert!(Arc::ptr_eq(&same.apex, &first.apex), "index kept");
        // b turns healthy: a new generation.
        let grown = same.next(snapshot(&[
            (a.clone(), Some(true)),
            (b.clone(), Some(true)),
        ]));
        assert_eq!(grown.generation(), first.generation() + 1);
        // a fails: one healthy node; then a is back and b fails: still one, another one.
        let swapped = grown.next(snapshot(&[
            (a.clone(), Some(false)),
            (b.clone(), Some(true)),
        ]));
        assert_eq!(swapped.generation(), grown.generation() + 1);
        let back = swapped.next(snapshot(&[(a, Some(true)), (b, Some(false))]));
        assert_eq!((swapped.len(), back.len()), (1, 1));
        assert_ne!(back.generation(), swapped.generation());
    }
}
