//! The rounds against a network in memory: no sockets, no disk, and time only as handed in.

use super::*;
use crate::nodes::NodeSet;
use crate::store::Rules;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

fn n(port: u16) -> Node {
    Node::new("127.0.0.1", port).unwrap()
}

/// Peers in memory: who answers, what each lists, and every request made, in order.
#[derive(Default)]
struct FakeNet {
    online: HashSet<Node>,
    lists: HashMap<Node, Vec<Node>>,
    requests: Mutex<Vec<(&'static str, Node)>>,
    /// A request to this node panics, as a bug in a round would.
    panics_on: Option<Node>,
}

impl FakeNet {
    fn answer(&self, what: &'static str, node: &Node) -> Result<(), PeerError> {
        assert!(self.panics_on.as_ref() != Some(node), "a bug in the round");
        self.requests.lock().unwrap().push((what, node.clone()));
        if self.online.contains(node) {
            Ok(())
        } else {
            Err(PeerError::Refused)
        }
    }

    fn asked(&self, what: &str) -> Vec<u16> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, node)| node.port)
            .collect()
    }
}

impl Transport for FakeNet {
    fn probe(&self, node: &Node) -> Result<(), PeerError> {
        self.answer("probe", node)
    }

    fn announce(&self, node: &Node, _me: &Node) -> Result<(), PeerError> {
        self.answer("announce", node)
    }

    fn fetch_nodes(&self, node: &Node, _me: Option<&Node>) -> Result<PeerList, PeerError> {
        self.answer("fetch", node)?;
        Ok(PeerList {
            nodes: self.lists.get(node).cloned().unwrap_or_default(),
            invalid: 0,
        })
    }

    fn each(&self, n: usize, work: &(dyn Fn(usize) + Sync)) {
        (0..n).for_each(work);
    }
}

/// A clock that stands still unless moved.
struct Still(Instant);

impl Clock for Still {
    fn now(&self) -> Instant {
        self.0
    }
}

fn store(nodes: &[Node], me: Option<&Node>) -> MemoryStore {
    let mut set = NodeSet::new();
    for node in nodes {
        set.insert(node.clone());
    }
    let rules = Rules {
        max_nodes: 100,
        own: me.into_iter().cloned().collect(),
    };
    MemoryStore::new(rules, set)
}

fn ports(members: &MemoryStore) -> Vec<u16> {
    members
        .snapshot()
        .nodes
        .as_slice()
        .iter()
        .map(|n| n.port)
        .collect()
}

fn never() -> bool {
    false
}

#[test]
fn the_sweep_removes_nodes_that_fail_and_keeps_the_others() {
    let net = FakeNet {
        online: [n(1), n(3)].into(),
        ..FakeNet::default()
    };
    let updater = Updater {
        members: store(&[n(1), n(2), n(3)], None),
        transport: net,
        clock: Still(Instant::now()),
        role: Role::Dns,
    };
    let mut upkeep = Upkeep::new(1, Duration::from_secs(60));
    let round = updater.round(&mut upkeep, &never);
    assert_eq!(ports(&updater.members), vec![1, 3]);
    assert_eq!(updater.transport.asked("probe"), vec![1, 2, 3]);
    assert_eq!((round.checked, round.failed, round.removed), (3, 1, 1));
    assert_eq!(round.failures[PeerError::Refused.cause_index()], 1);
    assert_eq!(round.known, 2);
}

#[test]
fn a_node_is_removed_only_after_fail_limit_rounds() {
    let updater = Updater {
        members: store(&[n(1)], None),
        transport: FakeNet::default(),
        clock: Still(Instant::now()),
        role: Role::Dns,
    };
    let mut upkeep = Upkeep::new(2, Duration::from_secs(60));
    assert_eq!(updater.round(&mut upkeep, &never).removed, 0);
    assert_eq!(ports(&updater.members), vec![1]);
    assert_eq!(updater.round(&mut upkeep, &never).removed, 1);
    assert!(ports(&updater.members).is_empty());
}

fn node_role(kn_limit: usize) -> NodeRole {
    NodeRole {
        me: n(100),
        seeds: vec![n(900)],
        kn_limit,
    }
}

#[test]
fn a_node_that_knows_enough_only_checks() {
    let net = FakeNet {
        online: [n(1), n(2), n(900)].into(),
        ..FakeNet::default()
    };
    let updater = Updater {
        members: store(&[n(1), n(2)], Some(&n(100))),
        transport: net,
        clock: Still(Instant::now()),
        role: Role::Node(node_role(2)),
    };
    updater.round(&mut Upkeep::new(1, Duration::from_secs(60)), &never);
    let net = &updater.transport;
    assert_eq!(
        net.asked("announce"),
        vec![1, 2, 900],
        "peers, then the seed"
    );
    assert!(net.asked("fetch").is_empty(), "known >= --kn_limit");
}

#[test]
fn a_node_short_of_peers_asks_its_peers_then_the_seeds() {
    let net = FakeNet {
        online: [n(1), n(900)].into(),
        lists: HashMap::from([(n(1), vec![n(2), n(100), n(1)]), (n(900), vec![n(3), n(4)])]),
        ..FakeNet::default()
    };
    let updater = Updater {
        members: store(&[n(1)], Some(&n(100))),
        transport: net,
        clock: Still(Instant::now()),
        role: Role::Node(node_role(3)),
    };
    let round = updater.round(&mut Upkeep::new(1, Duration::from_secs(60)), &never);
    // Itself and a known node are skipped; the seed fills up the rest.
    assert_eq!(ports(&updater.members), vec![1, 2, 3, 4]);
    assert_eq!(updater.transport.asked("fetch"), vec![1, 900]);
    assert_eq!(round.learned, 3);
}

#[test]
fn at_most_kn_limit_new_nodes_are_taken_from_one_answer() {
    let big: Vec<Node> = (1000..2000).map(n).collect();
    let net = FakeNet {
        online: [n(1), n(900)].into(),
        lists: HashMap::from([(n(1), big.clone()), (n(900), big)]),
        ..FakeNet::default()
    };
    let updater = Updater {
        members: store(&[n(1)], Some(&n(100))),
        transport: net,
        clock: Still(Instant::now()),
        role: Role::Node(node_role(3)),
    };
    let mut upkeep = Upkeep::new(1, Duration::from_secs(60)).with_seed(5);
    let round = updater.round(&mut upkeep, &never);
    // Three from the peer (which is then enough: the seed is not asked), chosen at random
    // rather than the answer's first three.
    assert_eq!(round.learned, 3);
    assert_eq!(updater.transport.asked("fetch"), vec![1]);
    let learned = ports(&updater.members);
    assert_eq!(learned.len(), 4);
    assert_ne!(&learned[1..], &[1000, 1001, 1002], "a random choice");
}

#[test]
fn the_seed_step_is_skipped_when_peers_gave_enough() {
    let net = FakeNet {
        online: [n(1), n(900)].into(),
        lists: HashMap::from([(n(1), vec![n(2), n(3)])]),
        ..FakeNet::default()
    };
    let updater = Updater {
        members: store(&[n(1)], Some(&n(100))),
        transport: net,
        clock: Still(Instant::now()),
        role: Role::Node(node_role(3)),
    };
    updater.round(&mut Upkeep::new(1, Duration::from_secs(60)), &never);
    assert_eq!(updater.transport.asked("fetch"), vec![1]);
}

#[test]
fn a_node_removed_as_dead_is_not_learned_back_from_a_peer() {
    let net = FakeNet {
        online: [n(1)].into(),
        // Peer 1 has not noticed that 2 is dead.
        lists: HashMap::from([(n(1), vec![n(2)])]),
        ..FakeNet::default()
    };
    let updater = Updater {
        members: store(&[n(1), n(2)], Some(&n(100))),
        transport: net,
        clock: Still(Instant::now()),
        role: Role::Node(node_role(5)),
    };
    let round = updater.round(&mut Upkeep::new(1, Duration::from_secs(60)), &never);
    assert_eq!(round.removed, 1);
    assert_eq!(ports(&updater.members), vec![1]);
}

#[test]
fn a_stop_between_steps_ends_the_round() {
    let net = FakeNet {
        online: [n(1)].into(),
        lists: HashMap::from([(n(1), vec![n(2)])]),
        ..FakeNet::default()
    };
    let updater = Updater {
        members: store(&[n(1)], Some(&n(100))),
        transport: net,
        clock: Still(Instant::now()),
        role: Role::Node(node_role(5)),
    };
    updater.round(&mut Upkeep::new(1, Duration::from_secs(60)), &|| true);
    assert!(updater.transport.asked("fetch").is_empty());
}

#[test]
fn a_round_that_panics_is_counted_and_the_next_one_runs() {
    let net = FakeNet {
        panics_on: Some(n(1)),
        ..FakeNet::default()
    };
    let updater = Updater {
        members: store(&[n(1)], None),
        transport: net,
        clock: crate::transport::SystemClock,
        role: Role::Dns,
    };
    let stats = Stats::default();
    let (stop, stopped) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let (updater, stats) = (&updater, &stats);
        scope.spawn(move || run(updater, stats, Duration::from_millis(5), 1, &stopped));
        let deadline = Instant::now() + Duration::from_secs(10);
        while stats.round_panics.load(Ordering::Relaxed) < 3 {
            assert!(
                Instant::now() < deadline,
                "the update thread stopped rounding"
            );
            std::thread::yield_now();
        }
        drop(stop);
    });
    assert_eq!(stats.rounds.load(Ordering::Relaxed), 0, "no round finished");
}
