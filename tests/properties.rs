//! Properties of the node rules and of the known nodes, checked on many generated inputs
//! (proptest) against simple models written from the SPEC: node parsing and canonical form
//! (§1), `NodeSet`, and `Store` with its file through any sequence of changes, bursts of
//! changes written together, failed writes and reopenings (§3, §4).

mod support;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;

use proptest::prelude::*;
use seedmesh::nodes::{Node, NodeSet};
use seedmesh::store::{self, Change, Outcome, Store, StoreOptions};
use serde_json::{Value, json};
use support::TempDir;

// ---- Node parsing (SPEC §1) ----

/// The canonical form of an `ip_address` as SPEC §1 describes it, or `None` if it is not a
/// node address: an IP literal other than the unspecified ones, in Rust's display form, or
/// an RFC 1123 hostname, lowercased (with the README's choices: no trailing dot, and a last
/// label that is all digits is a bad IPv4 address).
fn model_address(text: &str) -> Option<String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return (!ip.is_unspecified()).then(|| ip.to_string());
    }
    if text.is_empty() || text.len() > 253 {
        return None;
    }
    let labels: Vec<&str> = text.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    let last_all_digits = labels.last()?.chars().all(|c| c.is_ascii_digit());
    (labels.iter().all(label_ok) && !last_all_digits).then(|| text.to_ascii_lowercase())
}

/// `ip_address` texts: IP literals in several spellings, hostnames near and past the limits,
/// printable and Unicode junk, and known traps.
fn address_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<Ipv6Addr>().prop_map(|ip| ip.to_string()),
        // Uncompressed and upper case: the same address, spelled differently.
        any::<Ipv6Addr>().prop_map(|ip| {
            let groups: Vec<String> = ip.segments().iter().map(|g| format!("{g:X}")).collect();
            groups.join(":")
        }),
        r"[a-zA-Z0-9-]{1,12}(\.[a-zA-Z0-9-]{1,12}){0,3}",
        r"[a-z0-9]{60,66}(\.com)?",
        ("[a-z]{1,63}", 3usize..6).prop_map(|(label, n)| vec![label; n].join(".")),
        // 248 to 255 characters: around the 253 limit.
        (56usize..=63).prop_map(|last| format!(
            "{}.{}",
            vec!["a".repeat(63); 3].join("."),
            "b".repeat(last)
        )),
        r"[ -~]{0,16}",
        r"\PC{0,8}",
        prop::sample::select(vec![
            "0.0.0.0",
            "::",
            "[::1]",
            "fe80::1%eth0",
            "1.2.3",
            "01.2.3.4",
            "256.1.1.1",
            "example.com.",
            "LocalHost",
            "::ffff:1.2.3.4",
        ])
        .prop_map(String::from),
    ]
}

/// A `port` value, with the integer it holds when it is a JSON integer.
fn port_value() -> impl Strategy<Value = (Value, Option<i128>)> {
    prop_oneof![
        4 => (-3i64..70_000).prop_map(|p| (json!(p), Some(i128::from(p)))),
        1 => any::<i64>().prop_map(|p| (json!(p), Some(i128::from(p)))),
        1 => any::<u64>().prop_map(|p| (json!(p), Some(i128::from(p)))),
        // Floats are not integers, not even 80.0.
        1 => (-1e6f64..1e6).prop_map(|f| (json!(f), None)),
        1 => (1u16..).prop_map(|p| (json!(f64::from(p)), None)),
        1 => prop::sample::select(vec![json!("80"), Value::Null, json!([80]), json!({})])
            .prop_map(|v| (v, None)),
    ]
}

/// A JSON value to parse as a node, with what SPEC §1 says it is: `Some((host, port))` in
/// canonical form when it is a valid node.
fn node_candidate() -> impl Strategy<Value = (Value, Option<(String, u16)>)> {
    let address = prop_oneof![
        9 => address_text().prop_map(Value::String),
        1 => prop::sample::select(vec![json!(127), Value::Null, json!(["::1"]), json!(true)]),
    ];
    let object = (
        address,
        port_value(),
        prop::bool::weighted(0.95),
        prop::bool::weighted(0.95),
        prop::option::weighted(0.1, "[a-z_]{1,12}"),
    )
        .prop_map(|(address, (port, integer), has_address, has_port, extra)| {
            let mut object = serde_json::Map::new();
            if has_address {
                object.insert("ip_address".into(), address.clone());
            }
            if has_port {
                object.insert("port".into(), port);
            }
            if let Some(key) = &extra {
                object.insert(key.clone(), json!(1));
            }
            let only_known_keys = object.keys().all(|k| k == "ip_address" || k == "port");
            let verdict = match (address.as_str(), integer) {
                (Some(text), Some(p)) if has_address && has_port && only_known_keys => {
                    let port = u16::try_from(p).ok().filter(|p| *p >= 1);
                    model_address(text).zip(port)
                }
                _ => None,
            };
            (Value::Object(object), verdict)
        });
    let not_an_object = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        r"[ -~]{0,20}".prop_map(Value::from),
        proptest::collection::vec(any::<u16>(), 0..3).prop_map(Value::from),
    ]
    .prop_map(|v| (v, None));
    prop_oneof![9 => object, 1 => not_an_object]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_node_is_accepted_exactly_when_spec_1_allows_and_kept_in_canonical_form(
        (value, verdict) in node_candidate()
    ) {
        let parsed = Node::from_value(&value);
        match (&parsed, &verdict) {
            (Ok(node), Some((host, port))) => {
                prop_assert_eq!(&node.host.to_string(), host);
                prop_assert_eq!(node.port, *port);
            }
            (Err(e), None) => prop_assert!(!e.to_string().is_empty()),
            _ => prop_assert!(false, "{}: parsed as {:?}, SPEC says {:?}", value, parsed, verdict),
        }
        // A request body with the same text is judged the same.
        prop_assert_eq!(Node::from_json(value.to_string().as_bytes()), parsed.clone());
        // What is accepted comes back unchanged through the file format.
        if let Ok(node) = parsed {
            let written = serde_json::to_vec(&node).unwrap();
            prop_assert_eq!(Node::from_json(&written), Ok(node));
        }
    }

    #[test]
    fn any_bytes_are_a_node_or_a_reason_never_a_panic(
        body in proptest::collection::vec(any::<u8>(), 0..200)
    ) {
        match Node::from_json(&body) {
            Ok(node) => prop_assert_eq!(Node::from_json(&serde_json::to_vec(&node).unwrap()), Ok(node)),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn one_node_whatever_the_spelling(ip in any::<Ipv6Addr>(), port in 1u16..) {
        let groups: Vec<String> = ip.segments().iter().map(|g| format!("{g:X}")).collect();
        let long = Node::new(&groups.join(":"), port);
        let short = Node::new(&ip.to_string(), port);
        if ip.is_unspecified() {
            prop_assert!(long.is_err() && short.is_err());
        } else {
            prop_assert_eq!(long, short);
        }
    }
}

// ---- NodeSet ----

fn n(port: u16) -> Node {
    Node::new("127.0.0.1", port).unwrap()
}

fn ports_of(nodes: &[Node]) -> Vec<u16> {
    nodes.iter().map(|node| node.port).collect()
}

#[derive(Debug, Clone)]
enum SetOp {
    Insert(u16),
    RemoveAll(Vec<u16>),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_node_set_is_an_ordered_list_without_duplicates(
        ops in proptest::collection::vec(
            prop_oneof![
                3 => (1u16..10).prop_map(SetOp::Insert),
                1 => proptest::collection::vec(1u16..10, 0..4).prop_map(SetOp::RemoveAll),
            ],
            0..60,
        ),
        k in 0usize..12,
        seed in any::<u64>(),
    ) {
        let mut set = NodeSet::new();
        let mut model: Vec<u16> = Vec::new();
        for op in ops {
            match op {
                SetOp::Insert(port) => {
                    let new = !model.contains(&port);
                    prop_assert_eq!(set.insert(n(port)), new);
                    if new {
                        model.push(port);
                    }
                }
                SetOp::RemoveAll(ports) => {
                    let gone: HashSet<Node> = ports.iter().map(|&p| n(p)).collect();
                    let before = model.len();
                    model.retain(|p| !ports.contains(p));
                    prop_assert_eq!(set.remove_all(&gone), before - model.len());
                }
            }
            prop_assert_eq!(ports_of(set.as_slice()), model.clone());
            prop_assert_eq!((set.len(), set.is_empty()), (model.len(), model.is_empty()));
            for port in 1..10 {
                prop_assert_eq!(set.contains(&n(port)), model.contains(&port));
            }
            for i in 0..=model.len() {
                prop_assert_eq!(set.get(i).map(|node| node.port), model.get(i).copied());
            }
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let sample = ports_of(&set.sample(k, &mut rng).into_iter().cloned().collect::<Vec<_>>());
        prop_assert_eq!(sample.len(), k.min(model.len()));
        prop_assert_eq!(sample.iter().collect::<HashSet<_>>().len(), sample.len());
        prop_assert!(sample.iter().all(|p| model.contains(p)));
        let random = set.random(&mut rng).map(|node| node.port);
        prop_assert_eq!(random.is_some(), !model.is_empty());
        prop_assert!(random.is_none_or(|p| model.contains(&p)));
    }
}

// ---- Store and its file (SPEC §4) ----

/// The known nodes as SPEC §2 and §4 describe them: an ordered list without duplicates,
/// never holding the process itself, refusing new nodes when full.
#[derive(Debug, Clone)]
struct Model {
    nodes: Vec<Node>,
    max_nodes: usize,
    own: Node,
}

impl Model {
    fn apply(&mut self, change: &Change) -> Outcome {
        match change {
            Change::Add(node) if *node == self.own => Outcome::IsSelf,
            Change::Add(node) if self.nodes.contains(node) => Outcome::AlreadyKnown,
            Change::Add(_) if self.nodes.len() >= self.max_nodes => Outcome::Full,
            Change::Add(node) => {
                self.nodes.push(node.clone());
                Outcome::Added
            }
            Change::Remove(node) if self.nodes.contains(node) => {
                self.nodes.retain(|known| known != node);
                Outcome::Removed
            }
            Change::Remove(_) => Outcome::NotKnown,
            Change::Learn(nodes) => {
                let mut added = 0;
                for node in nodes {
                    let new = *node != self.own && !self.nodes.contains(node);
                    if new && self.nodes.len() < self.max_nodes {
                        self.nodes.push(node.clone());
                        added += 1;
                    }
                }
                Outcome::Learned(added)
            }
            Change::Forget(nodes) => {
                let before = self.nodes.len();
                self.nodes.retain(|known| !nodes.contains(known));
                Outcome::Forgot(before - self.nodes.len())
            }
        }
    }
}

/// Whether an outcome changed the list (and so needed a disk write).
fn changed(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Added | Outcome::Removed | Outcome::Learned(1..) | Outcome::Forgot(1..)
    )
}

#[derive(Debug, Clone)]
enum StoreOp {
    /// One change, waited for.
    One(Change),
    /// Changes submitted back to back, so that the committer writes them together.
    Burst(Vec<Change>),
    /// One change while the temporary file cannot be written.
    FailedWrite(Change),
    /// Close the store and open it again from its file.
    Reopen,
}

fn change() -> impl Strategy<Value = Change> {
    // Ports 1..=6 of one host, so that changes collide; port 1 is the process itself.
    let node = (1u16..=6).prop_map(n);
    prop_oneof![
        3 => node.clone().prop_map(Change::Add),
        2 => node.clone().prop_map(Change::Remove),
        1 => proptest::collection::vec(node.clone(), 0..5).prop_map(Change::Learn),
        1 => proptest::collection::vec(node, 0..4).prop_map(Change::Forget),
    ]
}

fn store_op() -> impl Strategy<Value = StoreOp> {
    prop_oneof![
        5 => change().prop_map(StoreOp::One),
        2 => proptest::collection::vec(change(), 2..12).prop_map(StoreOp::Burst),
        1 => change().prop_map(StoreOp::FailedWrite),
        1 => Just(StoreOp::Reopen),
    ]
}

fn open(dir: &TempDir) -> Store {
    let options = StoreOptions {
        dir: dir.path().to_path_buf(),
        file_name: "nodes.json".into(),
        max_nodes: 4,
        own: vec![n(1)],
    };
    Store::open(options).expect("open store").0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_store_and_its_file_follow_the_model_through_any_changes(
        ops in proptest::collection::vec(store_op(), 1..25)
    ) {
        let dir = TempDir::new("store-model");
        let file = dir.join("nodes.json");
        let temp = dir.join("nodes.json.tmp");
        let mut model = Model { nodes: Vec::new(), max_nodes: 4, own: n(1) };
        let mut store = open(&dir);
        for op in ops {
            match op {
                StoreOp::One(change) => {
                    let expected = model.apply(&change);
                    let committed = store.apply(change.clone());
                    prop_assert_eq!(committed.map(|c| c.outcome).ok(), Some(expected), "{:?}", change);
                }
                StoreOp::Burst(changes) => {
                    let (tx, rx) = mpsc::channel();
                    for (i, change) in changes.iter().enumerate() {
                        let tx = tx.clone();
                        store.submit(change.clone(), Box::new(move |result| {
                            let _ = tx.send((i, result.map(|c| c.outcome).ok()));
                        }));
                    }
                    drop(tx);
                    let mut answers: Vec<(usize, Option<Outcome>)> = rx.iter().collect();
                    answers.sort_by_key(|(i, _)| *i);
                    let expected: Vec<(usize, Option<Outcome>)> = changes
                        .iter()
                        .enumerate()
                        .map(|(i, change)| (i, Some(model.apply(change))))
                        .collect();
                    prop_assert_eq!(answers, expected, "{:?}", changes);
                }
                StoreOp::FailedWrite(change) => {
                    std::fs::create_dir(&temp).unwrap();
                    let mut attempt = model.clone();
                    let expected = attempt.apply(&change);
                    let committed = store.apply(change.clone()).map(|c| c.outcome);
                    if changed(expected) {
                        prop_assert!(committed.is_err(), "{:?} was not written yet succeeded", change);
                    } else {
                        // Nothing to write: nothing to fail.
                        prop_assert_eq!(committed.ok(), Some(expected));
                    }
                    std::fs::remove_dir(&temp).unwrap();
                }
                StoreOp::Reopen => {
                    drop(store);
                    store = open(&dir);
                }
            }
            let snapshot = store.snapshot();
            prop_assert_eq!(snapshot.nodes.as_slice(), model.nodes.as_slice(), "in memory");
            let (on_disk, warnings) = store::load(&file, 100, &[]).unwrap();
            prop_assert_eq!(on_disk.as_slice(), model.nodes.as_slice(), "the file");
            prop_assert!(warnings.is_empty(), "{:?}", warnings);
        }
    }
}
