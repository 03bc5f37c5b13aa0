//! Properties of the node rules and of the known nodes, checked on many generated inputs
//! (proptest) against simple models written from the SPEC: node parsing and canonical form
//! (§1), the node-list reader (§4: one bad entry never costs the good ones), the known-node
//! table (§11: the cap, eviction only from a strictly larger group, diverse samples), and
//! `Store` with its file through any sequence of changes, bursts of changes written
//! together, failed writes and reopenings (§3, §4).
//!
//! Nothing here starts a process: addresses outside loopback are only parsed.

mod support;

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use seedmesh::config::Identity;
use seedmesh::membership::{Change, Outcome, Rules};
use seedmesh::nodes::{Group, Node};
use seedmesh::policy::LocalRule;
use seedmesh::pyjson;
use seedmesh::store::{self, Store, StoreOptions};
use seedmesh::table::{Admission, Entry, Source, Table};
use serde_json::{Value, json};
use support::TempDir;

// ---- Node parsing (SPEC §1) ----

/// Whether SPEC §1 says `ip` can be a peer at all: not unspecified, multicast
/// (`224.0.0.0/4`, `ff00::/8`), broadcast, reserved `240.0.0.0/4`, nor (the README's choice,
/// RFC 1122) "this network" `0.0.0.0/8`.
fn model_can_be_peer(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let first = v4.octets()[0];
            first != 0 && !(224..=255).contains(&first)
        }
        IpAddr::V6(v6) => !v6.is_unspecified() && v6.segments()[0] >> 8 != 0xff,
    }
}

/// The canonical form of an `ip_address` as SPEC §1 describes it, or `None` if it is not a
/// node address: an IP literal that can be a peer, in Rust's display form, an IPv4-mapped
/// IPv6 address as the IPv4 address it maps; or an RFC 1123 hostname, lowercased (with the
/// README's choices: no trailing dot, and a last label that is all digits is a bad IPv4
/// address).
fn model_address(text: &str) -> Option<String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        return model_can_be_peer(ip).then(|| ip.to_string());
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
            "127.01.2.3",
            "127.256.1.1",
            "example.com.",
            "LocalHost",
            "::ffff:127.1.2.3",
            "http://127.0.0.1:5000",
            "127.0.0.1:80",
            "[::1]:80",
            " localhost",
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
        prop_assert_eq!(long.is_ok(), model_address(&ip.to_string()).is_some());
        prop_assert_eq!(long.ok(), short.ok());
    }

    #[test]
    fn an_ipv4_address_and_its_mapped_spelling_are_one_node(ip in any::<Ipv4Addr>(), port in 1u16..) {
        let mapped = Node::new(&ip.to_ipv6_mapped().to_string(), port);
        let plain = Node::new(&ip.to_string(), port);
        prop_assert_eq!(mapped.as_ref().ok(), plain.as_ref().ok());
        prop_assert_eq!(mapped.is_err(), plain.is_err());
        if let Ok(node) = plain {
            prop_assert_eq!(node.host.to_string(), ip.to_string());
        }
    }
}

// ---- The node-list reader (SPEC §4) ----

/// An entry of a node list as text, with the node it holds when it is valid: what serde
/// writes for any candidate, or what Python's `json` writes that serde refuses.
fn list_entry() -> impl Strategy<Value = (String, Option<(String, u16)>)> {
    let python_only = (
        prop::sample::select(vec!["NaN", "Infinity", "-Infinity", "1e400", "\"\\ud800\""]),
        any::<bool>(),
    )
        .prop_map(|(odd, in_port)| {
            let text = if in_port {
                format!(r#"{{"ip_address": "127.0.0.1", "port": {odd}}}"#)
            } else {
                format!(r#"{{"ip_address": {odd}, "port": 8}}"#)
            };
            (text, None)
        });
    prop_oneof![
        6 => node_candidate().prop_map(|(value, verdict)| (value.to_string(), verdict)),
        1 => python_only,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_list_keeps_exactly_its_good_entries_in_order(
        entries in proptest::collection::vec(list_entry(), 0..12),
        pretty in any::<bool>(),
        utf16 in any::<bool>(),
    ) {
        let separator = if pretty { ",\n  " } else { "," };
        let texts: Vec<&str> = entries.iter().map(|(text, _)| text.as_str()).collect();
        let text = format!("[{}]", texts.join(separator));
        let bytes: Vec<u8> = if utf16 {
            text.encode_utf16().flat_map(u16::to_le_bytes).collect()
        } else {
            text.into_bytes()
        };
        let list = pyjson::read_node_list(&bytes).expect("an array of JSON values is a list");
        let expected: Vec<(String, u16)> = entries.iter().filter_map(|(_, v)| v.clone()).collect();
        let got: Vec<(String, u16)> =
            list.nodes.iter().map(|n| (n.host.to_string(), n.port)).collect();
        prop_assert_eq!(got, expected.clone());
        prop_assert_eq!(list.skipped, entries.len() - expected.len());
        let bad: Vec<usize> = (0..entries.len()).filter(|&i| entries[i].1.is_none()).collect();
        let reported: Vec<usize> = list.reasons.iter().map(|r| r.index).collect();
        prop_assert_eq!(reported, bad);
    }

    #[test]
    fn any_bytes_are_a_list_or_an_error_never_a_panic(
        body in proptest::collection::vec(any::<u8>(), 0..200)
    ) {
        let _ = pyjson::read_node_list(&body);
        let _ = Node::from_optional_json(&body);
    }
}

#[test]
fn a_nodes_file_python_wrote_loads_its_good_entries() {
    let dir = TempDir::new("python-file");
    let file = dir.join("nodes.json");
    // What the original writes with json.dump after a registration of port NaN.
    std::fs::write(
        &file,
        r#"[{"ip_address": "127.0.0.1", "port": 55000}, {"ip_address": "127.0.0.2", "port": NaN}]"#,
    )
    .unwrap();
    let (table, warnings) = store::load(&file, &rules(100)).unwrap();
    assert_eq!(nodes(&table), &[n(55000)]);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("entry 1") && warnings[0].contains("got NaN"),
        "{warnings:?}"
    );
    for not_a_list in ["{\"ip_address\": \"127.0.0.1\"}", "[{", "[NaN"] {
        std::fs::write(&file, not_a_list).unwrap();
        assert!(store::load(&file, &rules(100)).is_err(), "{not_a_list}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            not_a_list,
            "left untouched"
        );
    }
}

// ---- The known-node table (SPEC §11) ----

/// `127.g.0.h:port`: address group `127.g.0.0/16`, host h.
fn gn(group: u8, host: u8, port: u16) -> Node {
    Node::new(&format!("127.{group}.0.{host}"), port).unwrap()
}

#[derive(Debug, Clone)]
enum TableOp {
    Arrive(Node, Source),
    Remove(prop::sample::Index),
    Check(prop::sample::Index, bool, u64),
}

fn table_op() -> impl Strategy<Value = TableOp> {
    // Group 0 arrives as often as all others together: an attacker filling the table.
    let group = prop_oneof![5 => Just(0u8), 5 => 0u8..8];
    let source = prop::sample::select(vec![
        Source::File,
        Source::Registered,
        Source::Added,
        Source::Learned,
    ]);
    prop_oneof![
        8 => (group, 1u8..4, 1u16..8, source)
            .prop_map(|(g, h, port, source)| TableOp::Arrive(gn(g, h, port), source)),
        1 => any::<prop::sample::Index>().prop_map(TableOp::Remove),
        3 => (any::<prop::sample::Index>(), any::<bool>(), 0u64..1000)
            .prop_map(|(i, online, at)| TableOp::Check(i, online, at)),
    ]
}

fn sizes<K: std::hash::Hash + Eq>(table: &Table, key: impl Fn(&Node) -> K) -> HashMap<K, usize> {
    let mut sizes = HashMap::new();
    for entry in table.iter() {
        *sizes.entry(key(entry.node())).or_default() += 1;
    }
    sizes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 9: after any sequence of arrivals from any groups, the table never exceeds
    /// `max_nodes`, and a group loses an entry to an arrival only while it is (one of) the
    /// largest and the arrival's group is strictly smaller — the entry of its most
    /// represented host, with the most failed checks, then the least recently seen.
    #[test]
    fn a_full_table_evicts_only_from_a_largest_group_for_a_strictly_smaller_one(
        ops in proptest::collection::vec(table_op(), 1..150),
        max_nodes in 1usize..12,
        seed in any::<u64>(),
    ) {
        let start = Instant::now();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut table = Table::new();
        let mut model: Vec<Node> = Vec::new();
        for op in ops {
            match op {
                TableOp::Arrive(node, source) => {
                    let groups = sizes(&table, Node::group);
                    let hosts = sizes(&table, |n| n.host.clone());
                    let largest = groups.values().copied().max().unwrap_or(0);
                    let own = groups.get(&node.group()).copied().unwrap_or(0);
                    let known = model.contains(&node);
                    let full = model.len() >= max_nodes;
                    // The eviction order of every entry, before the arrival.
                    let ranks: Vec<_> = model
                        .iter()
                        .map(|n| {
                            let entry = table.entry(n).unwrap();
                            let rank = (hosts[&n.host], entry.failures(), Reverse(entry.last_seen()));
                            (n.clone(), rank)
                        })
                        .collect();
                    match table.admit(node.clone(), source, max_nodes, &mut rng) {
                        Admission::AlreadyKnown => prop_assert!(known),
                        Admission::Added => {
                            prop_assert!(!known && !full);
                            model.push(node);
                        }
                        Admission::AddedEvicting(victim) => {
                            prop_assert!(!known && full);
                            let victim_group = victim.group();
                            prop_assert_eq!(groups[&victim_group], largest, "from a largest group");
                            prop_assert!(own < largest, "for a strictly smaller group");
                            let worst = ranks
                                .iter()
                                .filter(|(n, _)| n.group() == victim_group)
                                .map(|(_, r)| *r)
                                .max();
                            let victim_rank = ranks.iter().find(|(n, _)| *n == victim).map(|(_, r)| *r);
                            prop_assert_eq!(victim_rank, worst, "the right entry of it");
                            model.retain(|n| *n != victim);
                            model.push(node);
                        }
                        Admission::Full => prop_assert!(!known && full && own == largest),
                    }
                }
                TableOp::Remove(index) => {
                    if !model.is_empty() {
                        let node = model.remove(index.index(model.len()));
                        prop_assert!(table.remove(&node).is_some());
                    }
                }
                TableOp::Check(index, online, at) => {
                    if !model.is_empty() {
                        let node = &model[index.index(model.len())];
                        let now = start + Duration::from_millis(at);
                        prop_assert!(table.record_check(node, online, now).is_some());
                    }
                }
            }
            prop_assert!(table.len() <= max_nodes);
            let listed: Vec<Node> = table.iter().map(|e| e.node().clone()).collect();
            prop_assert_eq!(&listed, &model);
            for (i, node) in model.iter().enumerate() {
                prop_assert_eq!(table.get(i).map(|e| e.node()), Some(node));
            }
            prop_assert_eq!(table.groups(), sizes(&table, Node::group).len());
        }
    }

    /// SPEC §11: samples take groups in random order, one entry per group, before any group
    /// gives a second; so with G groups one gives at most ⌈k/G⌉ unless others run out.
    #[test]
    fn samples_take_every_group_once_before_any_twice(
        arrivals in proptest::collection::vec((prop_oneof![3 => Just(0u8), 2 => 0u8..10], 1u8..6, 1u16..20), 0..120),
        checks in proptest::collection::vec(any::<bool>(), 0..120),
        k in 0usize..40,
        filtered in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let now = Instant::now();
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut table = Table::new();
        for (g, h, port) in arrivals {
            table.admit(gn(g, h, port), Source::Learned, usize::MAX, &mut rng);
        }
        let all: Vec<Node> = table.iter().map(|e| e.node().clone()).collect();
        for (node, online) in all.iter().zip(checks) {
            table.record_check(node, online, now);
        }
        let eligible = |e: &Entry| !filtered || e.last_ok() == Some(true);
        let sample: Vec<Node> = if filtered {
            table.sample_where(k, &mut rng, eligible)
        } else {
            table.sample(k, &mut rng)
        }
        .into_iter()
        .cloned()
        .collect();
        let mut size: HashMap<Group, usize> = HashMap::new();
        for entry in table.iter().filter(|e| eligible(e)) {
            *size.entry(entry.node().group()).or_default() += 1;
        }
        let total: usize = size.values().sum();
        prop_assert_eq!(sample.len(), k.min(total));
        prop_assert_eq!(sample.iter().collect::<HashSet<_>>().len(), sample.len(), "distinct");
        prop_assert!(sample.iter().all(|n| table.entry(n).is_some_and(eligible)));
        let mut given: HashMap<Group, usize> = HashMap::new();
        for node in &sample {
            let group = node.group();
            let r = given.get(&group).copied().unwrap_or(0) + 1;
            for (other, &other_size) in &size {
                let other_given = given.get(other).copied().unwrap_or(0);
                prop_assert!(
                    *other == group || other_given >= (r - 1).min(other_size),
                    "{}'s entry {} came before {} gave {}",
                    group, r, other, r - 1
                );
            }
            given.insert(group, r);
        }
        let groups = size.len();
        if groups > 0 {
            let bound = k.div_ceil(groups);
            let some_ran_out = size.iter().any(|(g, &s)| given.get(g).copied().unwrap_or(0) == s && s < bound);
            prop_assert!(some_ran_out || given.values().all(|&c| c <= bound), "{:?}", given);
        }
    }
}

/// SPEC §11's measure of success, on the table alone: one host registering ten times
/// `max_nodes` entries leaves every later newcomer from another group accepted, is refused
/// (507) for more of its own, and holds at most one entry of a 10-node sample while ten or
/// more other groups are known.
#[test]
fn one_host_cannot_own_the_table() {
    let max_nodes = 300;
    let mut rng = fastrand::Rng::with_seed(9);
    let mut table = Table::new();
    let attacker = |port| gn(66, 1, port);
    for port in 1..=10 * max_nodes as u16 {
        table.admit(attacker(port), Source::Registered, max_nodes, &mut rng);
    }
    assert_eq!(table.len(), max_nodes, "the attacker filled it");
    for g in 100..=130u8 {
        let admitted = table.admit(gn(g, 1, 55000), Source::Registered, max_nodes, &mut rng);
        assert!(
            matches!(admitted, Admission::AddedEvicting(ref gone) if gone.host == attacker(1).host),
            "{admitted:?}"
        );
        assert_eq!(
            table.admit(attacker(65535), Source::Registered, max_nodes, &mut rng),
            Admission::Full,
            "the attacker's group is the largest"
        );
    }
    for _ in 0..200 {
        let sample = table.sample(10, &mut rng);
        let theirs = sample.iter().filter(|n| n.host == attacker(1).host).count();
        assert!(theirs <= 1, "{theirs} of 10");
    }
}

/// `127.0.0.1:port`.
fn n(port: u16) -> Node {
    Node::new("127.0.0.1", port).unwrap()
}

/// What a store is opened with: one host, so no eviction; the process is port 1.
fn rules(max_nodes: usize) -> Rules {
    Rules {
        max_nodes,
        own: Identity::of(vec![n(1)]),
        local: LocalRule {
            allow_local: true,
            public_only: false,
        },
        max_referred: 8,
    }
}

/// Every node of a table, oldest first.
fn nodes(table: &Table) -> Vec<Node> {
    table.iter().map(|e| e.node().clone()).collect()
}

// ---- Store and its file (SPEC §4) ----

/// The known nodes as SPEC §2 and §4 describe them: an ordered list without duplicates,
/// never holding the process itself, refusing new nodes when full. All the nodes here are of
/// one host, so one address group: a full table evicts nobody for them (SPEC §11).
#[derive(Debug, Clone)]
struct Model {
    nodes: Vec<Node>,
    max_nodes: usize,
    own: Node,
}

impl Model {
    fn apply(&mut self, change: &Change) -> Outcome {
        match change {
            Change::Add(node) | Change::Register(node) if *node == self.own => Outcome::IsSelf,
            Change::Add(node) | Change::Register(node) if self.nodes.contains(node) => {
                Outcome::AlreadyKnown
            }
            Change::Add(_) | Change::Register(_) if self.nodes.len() >= self.max_nodes => {
                Outcome::Full
            }
            Change::Add(node) | Change::Register(node) => {
                self.nodes.push(node.clone());
                Outcome::Added { evicted: None }
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
                Outcome::Learned {
                    added,
                    evicted: 0,
                    refused: 0,
                }
            }
            Change::Forget(nodes) => {
                let before = self.nodes.len();
                self.nodes.retain(|known| !nodes.contains(known));
                Outcome::Forgot(before - self.nodes.len())
            }
            Change::Checked { .. } => Outcome::Recorded,
            Change::Refer { .. } => unreachable!("not generated here"),
        }
    }
}

/// Whether an outcome changed the list (and so needed a disk write).
fn changed(outcome: &Outcome) -> bool {
    outcome.changed()
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
        2 => node.clone().prop_map(Change::Add),
        2 => node.clone().prop_map(Change::Register),
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
        rules: rules(4),
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
                    if changed(&expected) {
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
            prop_assert_eq!(snapshot.all(), model.nodes.clone(), "in memory");
            let (on_disk, warnings) = store::load(&file, &rules(100)).unwrap();
            prop_assert_eq!(nodes(&on_disk), model.nodes.clone(), "the file");
            prop_assert!(warnings.is_empty(), "{:?}", warnings);
        }
    }
}
