//! The rounds against a network in memory: no sockets, no disk, and time only as handed in.

use super::*;
use crate::config::Identity;
use crate::feeler::{FEELER_EVERY, TABLE_CAP_FACTOR};
use crate::membership::Rules;
use crate::policy::LocalRule;
use crate::resolve::LookupError;
use crate::stats::Stats;
use crate::table::{Source, Table};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn n(port: u16) -> Node {
    Node::new("127.0.0.1", port).unwrap()
}

/// Peers in memory: who answers, what each lists, and every request made, in order.
#[derive(Default)]
struct FakeNet {
    online: HashSet<Node>,
    lists: HashMap<Node, Vec<Node>>,
    /// What each seed domain lists; a domain not here does not resolve.
    domains: HashMap<String, Vec<Node>>,
    requests: Mutex<Vec<(&'static str, Node)>>,
    /// The seed domains looked up, in order.
    lookups: Mutex<Vec<String>>,
    /// A request to this node panics, as a bug in a round would.
    panics_on: Option<Node>,
    /// The `?limit=` of every sample asked for, in order.
    limits: Mutex<Vec<usize>>,
}

impl FakeNet {
    fn answer(&self, what: &'static str, node: &Node) -> Result<(), PeerError> {
        assert!(self.panics_on.as_ref() != Some(node), "a bug in the round");
        self.requests.lock().unwrap().push((what, node.clone()));
        if self.online.contains(node) {
            Ok(())
        } else {
            Err(PeerError::ConnectionRefused)
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

    fn fetch_nodes(&self, node: &Node, me: Option<&Node>) -> Result<PeerList, PeerError> {
        self.answer(if me.is_some() { "fetch" } else { "fetch-quiet" }, node)?;
        Ok(PeerList {
            nodes: self.lists.get(node).cloned().unwrap_or_default(),
            invalid: 0,
        })
    }

    fn fetch_sample(
        &self,
        node: &Node,
        me: Option<&Node>,
        limit: usize,
    ) -> Result<PeerList, PeerError> {
        self.limits.lock().unwrap().push(limit);
        self.answer(
            if me.is_some() {
                "sample"
            } else {
                "sample-quiet"
            },
            node,
        )?;
        Ok(PeerList {
            nodes: self.lists.get(node).cloned().unwrap_or_default(),
            invalid: 0,
        })
    }

    fn seed_domain(&self, domain: &str) -> Result<PeerList, LookupError> {
        self.lookups.lock().unwrap().push(domain.to_owned());
        match self.domains.get(domain) {
            Some(nodes) => Ok(PeerList {
                nodes: nodes.clone(),
                invalid: 0,
            }),
            None => Err(LookupError::Rcode(
                hickory_proto::op::ResponseCode::NXDomain,
            )),
        }
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

/// A store holding `nodes`, registered (so vouched for), and `me` as its own identity.
fn store(nodes: &[Node], me: Option<&Node>) -> MemoryStore {
    let mut table = Table::new();
    let mut rng = fastrand::Rng::with_seed(1);
    for node in nodes {
        table.admit(node.clone(), Source::Registered, 100, &mut rng);
    }
    let rules = Rules {
        max_nodes: 100,
        own: Identity::of(me.into_iter().cloned().collect()),
        local: LocalRule {
            allow_local: true,
            public_only: false,
        },
        max_referred: 8,
    };
    MemoryStore::new(rules, table, rng)
}

/// The ports of every entry, vouched for or not.
fn ports(members: &MemoryStore) -> Vec<u16> {
    members.snapshot().all().iter().map(|n| n.port).collect()
}

fn updater(
    members: MemoryStore,
    transport: FakeNet,
    role: Role,
) -> Updater<MemoryStore, FakeNet, Still> {
    Updater {
        members,
        transport,
        clock: Still(Instant::now()),
        role,
        rng: Mutex::new(fastrand::Rng::with_seed(2)),
    }
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
    let updater = updater(store(&[n(1), n(2), n(3)], None), net, Role::Dns);
    let mut upkeep = Upkeep::new(1, Duration::from_secs(60));
    let round = updater.round(&mut upkeep, &never);
    assert_eq!(ports(&updater.members), vec![1, 3]);
    assert_eq!(updater.transport.asked("probe"), vec![1, 2, 3]);
    assert_eq!((round.checked, round.failed, round.removed), (3, 1, 1));
    assert_eq!(
        round.failures[PeerError::ConnectionRefused.cause_index()],
        1
    );
    assert_eq!(round.known, 2);
}

#[test]
fn a_node_is_removed_only_after_fail_limit_rounds() {
    let updater = updater(store(&[n(1)], None), FakeNet::default(), Role::Dns);
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
        seed_domains: Vec::new(),
    }
}

#[test]
fn a_node_that_knows_enough_only_checks() {
    let net = FakeNet {
        online: [n(1), n(2), n(900)].into(),
        ..FakeNet::default()
    };
    let updater = updater(
        store(&[n(1), n(2)], Some(&n(100))),
        net,
        Role::Node(node_role(2)),
    );
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
        online: [n(1), n(2), n(3), n(4), n(900)].into(),
        lists: HashMap::from([(n(1), vec![n(2), n(100), n(1)]), (n(900), vec![n(3), n(4)])]),
        ..FakeNet::default()
    };
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(node_role(3)));
    let round = updater.round(&mut Upkeep::new(1, Duration::from_secs(60)), &never);
    // Itself and a known node are skipped; the seed fills up the rest.
    let mut learned = ports(&updater.members);
    learned.sort_unstable();
    assert_eq!(learned, vec![1, 2, 3, 4]);
    assert_eq!(updater.transport.asked("fetch"), vec![1, 900]);
    assert_eq!(round.learned, 3);
}

#[test]
fn a_quiet_node_tells_nobody_of_itself_yet_keeps_its_table_healthy() {
    let net = FakeNet {
        online: [n(1), n(3), n(4), n(900)].into(),
        lists: HashMap::from([(n(1), vec![n(3)]), (n(900), vec![n(4)])]),
        ..FakeNet::default()
    };
    let updater = updater(
        store(&[n(1), n(2)], Some(&n(100))),
        net,
        Role::Node(node_role(10)),
    );
    let mut upkeep = Upkeep::new(1, Duration::from_secs(60));
    let round = updater.round_as(Presence::Quiet, &mut upkeep, &never);
    let net = &updater.transport;
    assert!(net.asked("announce").is_empty(), "no POST / with itself");
    assert!(
        net.asked("fetch").is_empty(),
        "no node body with GET /nodes/"
    );
    // Peers checked with GET / (the dead one removed), the seed not registered with but
    // asked, and learned nodes checked with GET / too.
    assert_eq!(net.asked("probe"), vec![1, 2, 3, 4]);
    assert_eq!(net.asked("fetch-quiet"), vec![1, 900]);
    let mut known = ports(&updater.members);
    known.sort_unstable();
    assert_eq!(known, vec![1, 3, 4]);
    assert_eq!((round.removed, round.learned), (1, 2));

    // Announcing again, it registers with the seed and announces itself to every peer.
    updater.round_as(Presence::Announce, &mut upkeep, &never);
    let mut announced = updater.transport.asked("announce");
    announced.sort_unstable();
    assert_eq!(announced, vec![1, 3, 4, 900]);
}

#[test]
fn the_seed_step_is_skipped_when_peers_gave_enough() {
    let net = FakeNet {
        online: [n(1), n(2), n(3), n(900)].into(),
        lists: HashMap::from([(n(1), vec![n(2), n(3)])]),
        ..FakeNet::default()
    };
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(node_role(3)));
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
    let updater = updater(
        store(&[n(1), n(2)], Some(&n(100))),
        net,
        Role::Node(node_role(5)),
    );
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
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(node_role(5)));
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
        rng: Mutex::new(fastrand::Rng::with_seed(3)),
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

/// `count` addresses of the group 127.`group`/16, none of which answers.
fn fabricated(group: u8, count: u16) -> Vec<Node> {
    (2000..2000 + count)
        .map(|port| Node::new(&format!("127.{group}.0.1"), port).unwrap())
        .collect()
}

#[test]
fn a_lying_peers_fabrications_are_never_learned_and_a_real_peer_among_them_is() {
    let real = Node::new("127.50.0.1", 7).unwrap();
    let mut listed = fabricated(99, 1000);
    listed.insert(500, real.clone());
    let net = FakeNet {
        online: [n(1), real.clone()].into(),
        lists: HashMap::from([(n(1), listed)]),
        ..FakeNet::default()
    };
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(node_role(3)));
    let round = updater.round(&mut Upkeep::new(1, Duration::from_secs(60)), &never);
    let snapshot = updater.members.snapshot();
    assert_eq!(
        snapshot.all(),
        vec![n(1), real.clone()],
        "only what answered"
    );
    assert_eq!(snapshot.known(), &[n(1), real], "and vouched for at once");
    // At most --kn_limit of the answer were tried, one per group first.
    let tried = updater.transport.asked("announce").len() - 2;
    assert_eq!(tried, 3, "the peer, then 3 candidates");
    assert_eq!(round.learned, 1);
}

#[test]
fn a_failed_candidate_is_not_tried_again_in_the_next_round() {
    let net = FakeNet {
        online: [n(1)].into(),
        lists: HashMap::from([(n(1), fabricated(99, 2))]),
        ..FakeNet::default()
    };
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(node_role(5)));
    let mut upkeep = Upkeep::new(1, Duration::from_secs(60));
    updater.round(&mut upkeep, &never);
    updater.round(&mut upkeep, &never);
    let fabricated_tries = updater
        .transport
        .asked("announce")
        .iter()
        .filter(|p| **p >= 2000)
        .count();
    assert_eq!(fabricated_tries, 2, "each fabrication cost one check, once");
}

#[test]
fn a_seed_domains_answer_is_taken_like_a_seeds_list() {
    // The seed lists 3; the domain lists 1 known node, 2 that answer and 20 made up in one
    // group. A node given only a domain and no seed learns from it alone.
    let mut listed = vec![n(1), n(3), Node::new("127.60.0.1", 6).unwrap()];
    listed.extend(fabricated(98, 20));
    for seeds in [vec![n(900)], Vec::new()] {
        let net = FakeNet {
            online: [
                n(1),
                n(2),
                n(3),
                Node::new("127.60.0.1", 6).unwrap(),
                n(900),
            ]
            .into(),
            lists: HashMap::from([(n(900), vec![n(2)])]),
            domains: HashMap::from([("seed.test".to_string(), listed.clone())]),
            ..FakeNet::default()
        };
        let role = NodeRole {
            seeds: seeds.clone(),
            seed_domains: vec!["seed.test".into(), "gone.test".into()],
            ..node_role(4)
        };
        let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(role));
        let round = updater.round(&mut Upkeep::new(1, Duration::from_secs(60)), &never);
        let net = &updater.transport;
        assert_eq!(*net.lookups.lock().unwrap(), ["seed.test", "gone.test"]);
        // Checked before learned, at most --kn_limit (4) taken from the domain's answer,
        // one per address group first: 3 and 127.60.0.1 answer, two made-up ones do not.
        let tried: Vec<u16> = net
            .asked("announce")
            .into_iter()
            .skip(1 + seeds.len())
            .collect();
        let from_seed = usize::from(!seeds.is_empty());
        assert_eq!(tried.len(), from_seed + 4, "{tried:?}");
        assert_eq!(tried.iter().filter(|p| **p >= 2000).count(), 2, "{tried:?}");
        let mut known: Vec<String> = updater
            .members
            .snapshot()
            .known()
            .iter()
            .map(Node::to_string)
            .collect();
        known.sort();
        let mut want = vec!["127.0.0.1:1", "127.0.0.1:3", "127.60.0.1:6"];
        if from_seed == 1 {
            want.insert(1, "127.0.0.1:2");
        }
        assert_eq!(known, want);
        assert_eq!(round.learned, 2 + from_seed);
    }
}

/// Runs `rounds` rounds (announcing or quiet) and returns the rounds' figures.
fn rounds_of(
    updater: &Updater<MemoryStore, FakeNet, Still>,
    rounds: u32,
    presence: Presence,
) -> Vec<Round> {
    let mut upkeep = Upkeep::new(1, Duration::from_secs(60));
    (0..rounds)
        .map(|_| updater.round_as(presence, &mut upkeep, &never))
        .collect()
}

/// The rounds (by index) in which a feeler asked for a sample.
fn feeler_rounds(rounds: &[Round]) -> Vec<usize> {
    (0..rounds.len())
        .filter(|&r| rounds[r].feelers > 0)
        .collect()
}

#[test]
fn a_node_that_knows_enough_asks_one_seed_only_on_its_feeler_cycles_and_takes_one_node() {
    // Knows 2 = --kn_limit; each of two seeds lists 6 nodes that answer, in 6 groups.
    let listed = |base: u16| -> Vec<Node> {
        (0..6)
            .map(|i| Node::new(&format!("127.{}.0.1", base + i), 7).unwrap())
            .collect()
    };
    let mut online: HashSet<Node> = [n(1), n(2), n(900), n(901)].into();
    online.extend(listed(10));
    online.extend(listed(20));
    let net = FakeNet {
        online,
        lists: HashMap::from([(n(900), listed(10)), (n(901), listed(20))]),
        ..FakeNet::default()
    };
    let role = NodeRole {
        seeds: vec![n(900), n(901)],
        ..node_role(2)
    };
    let updater = updater(store(&[n(1), n(2)], Some(&n(100))), net, Role::Node(role));
    let rounds = rounds_of(&updater, 3 * FEELER_EVERY, Presence::Announce);
    let felt = feeler_rounds(&rounds);
    assert_eq!(felt.len(), 3, "once every FEELER_EVERY rounds: {felt:?}");
    assert!(
        felt.windows(2)
            .all(|w| w[1] - w[0] == FEELER_EVERY as usize)
    );
    let net = &updater.transport;
    // One seed asked per feeler, for a sample of --kn_limit; never the whole list.
    let samples = net.asked("sample");
    assert_eq!(samples.len(), 3);
    assert!(
        samples.iter().all(|p| *p == 900 || *p == 901),
        "{samples:?}"
    );
    assert_eq!(*net.limits.lock().unwrap(), vec![2, 2, 2]);
    assert!(
        net.asked("fetch").is_empty(),
        "the cycle still ends at step 1"
    );
    // At most one node taken per feeler, checked (announced to) before it was learned.
    for &r in &felt {
        assert_eq!((rounds[r].learned, rounds[r].felt), (1, 1), "round {r}");
    }
    let learned: u32 = rounds.iter().map(|r| r.learned as u32).sum();
    assert_eq!(learned, 3);
    let requests = net.requests.lock().unwrap();
    for node in updater.members.snapshot().known() {
        if [n(1), n(2)].contains(node) {
            continue;
        }
        let sample = requests.iter().position(|(w, _)| *w == "sample").unwrap();
        let check = requests
            .iter()
            .position(|(w, to)| *w == "announce" && to == node)
            .expect("a learned node was checked");
        assert!(sample < check, "{node}: asked, then checked");
    }
    // The nodes ever tried beyond the first peers and the seeds: one per feeler, no more.
    let tried: HashSet<&Node> = requests
        .iter()
        .filter(|(w, to)| *w == "announce" && to.host != n(1).host)
        .map(|(_, to)| to)
        .collect();
    assert_eq!(tried.len(), 3);
}

#[test]
fn a_feelers_candidate_that_does_not_answer_is_not_learned() {
    let net = FakeNet {
        online: [n(1), n(900)].into(),
        lists: HashMap::from([(n(900), fabricated(99, 50))]),
        ..FakeNet::default()
    };
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(node_role(1)));
    let rounds = rounds_of(&updater, FEELER_EVERY, Presence::Announce);
    assert_eq!(feeler_rounds(&rounds).len(), 1);
    let tried = updater.transport.asked("announce");
    assert_eq!(tried.iter().filter(|p| **p >= 2000).count(), 1, "one tried");
    assert_eq!(ports(&updater.members), vec![1], "and not learned");
    assert_eq!(rounds.iter().map(|r| r.felt).sum::<usize>(), 0);
}

#[test]
fn no_feeler_at_or_above_the_table_cap() {
    // --kn_limit 2: no feeler from TABLE_CAP_FACTOR x 2 entries on; one below.
    let cap = (TABLE_CAP_FACTOR * 2) as u16;
    for (entries, feelers) in [(cap, 0), (cap + 1, 0), (cap - 1, 1)] {
        let held: Vec<Node> = (1..=entries)
            .collect::<Vec<u16>>()
            .into_iter()
            .map(n)
            .collect();
        let mut online: HashSet<Node> = held.iter().cloned().collect();
        online.extend([n(900), n(50)]);
        let net = FakeNet {
            online,
            lists: HashMap::from([(n(900), vec![n(50)])]),
            ..FakeNet::default()
        };
        let updater = updater(store(&held, Some(&n(100))), net, Role::Node(node_role(2)));
        let rounds = rounds_of(&updater, FEELER_EVERY, Presence::Announce);
        assert_eq!(feeler_rounds(&rounds).len(), feelers, "{entries} entries");
        assert_eq!(updater.transport.asked("sample").len(), feelers);
    }
}

#[test]
fn a_quiet_node_feels_without_telling_the_seed_of_itself() {
    let net = FakeNet {
        online: [n(1), n(900), n(50)].into(),
        lists: HashMap::from([(n(900), vec![n(50)])]),
        ..FakeNet::default()
    };
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(node_role(1)));
    let rounds = rounds_of(&updater, FEELER_EVERY, Presence::Quiet);
    let net = &updater.transport;
    assert_eq!(net.asked("sample-quiet"), vec![900]);
    assert!(net.asked("sample").is_empty() && net.asked("announce").is_empty());
    assert_eq!(rounds.iter().map(|r| r.felt).sum::<usize>(), 1);
    assert_eq!(ports(&updater.members), vec![1, 50]);
}

#[test]
fn with_only_a_seed_domain_a_feeler_looks_it_up_once() {
    let net = FakeNet {
        online: [n(1), n(50), n(51)].into(),
        domains: HashMap::from([("seed.test".to_string(), vec![n(50), n(51)])]),
        ..FakeNet::default()
    };
    let role = NodeRole {
        seeds: Vec::new(),
        seed_domains: vec!["seed.test".into()],
        ..node_role(1)
    };
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(role));
    let rounds = rounds_of(&updater, FEELER_EVERY, Presence::Announce);
    assert_eq!(*updater.transport.lookups.lock().unwrap(), ["seed.test"]);
    assert_eq!(
        rounds.iter().map(|r| r.felt).sum::<usize>(),
        1,
        "one of two"
    );
    assert_eq!(updater.members.snapshot().all().len(), 2);
}

#[test]
fn with_no_seed_and_no_domain_there_is_no_feeler() {
    let net = FakeNet {
        online: [n(1)].into(),
        ..FakeNet::default()
    };
    let role = NodeRole {
        seeds: Vec::new(),
        ..node_role(1)
    };
    let updater = updater(store(&[n(1)], Some(&n(100))), net, Role::Node(role));
    let rounds = rounds_of(&updater, FEELER_EVERY, Presence::Announce);
    assert!(feeler_rounds(&rounds).is_empty());
    assert_eq!(
        updater.transport.asked("announce").len(),
        FEELER_EVERY as usize
    );
}
