//! Answers to every kind of query, from snapshots built in memory.

use super::*;
use crate::nodes::Node;
use hickory_proto::op::Query;

/// The nodes, all healthy, with 55000 as the seed port (as `zone()` has it).
fn healthy(nodes: &[Node]) -> Healthy {
    crate::dnsnodes::all_healthy(nodes, 55000)
}

fn zone() -> Zone {
    Zone::new(&ZoneConfig {
        name: "Seed.Test.".into(),
        seed_port: 55000,
        ns_addr: Some("127.0.0.1".parse().unwrap()),
        ns_names: Vec::new(),
        serial: 7,
    })
    .unwrap()
}

fn query(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(4242, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message
        .queries
        .push(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        message.edns = Some(e);
    }
    message.to_vec().unwrap()
}

fn ask(nodes: &[Node], packet: &[u8], protocol: Protocol) -> (Answer, Message) {
    let mut rng = fastrand::Rng::with_seed(1);
    let answer = answer(&zone(), &healthy(nodes), packet, protocol, &mut rng);
    let message = Message::from_vec(answer.bytes.as_deref().expect("an answer")).unwrap();
    (answer, message)
}

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| Node::new(&format!("127.{i}.0.1"), 50000 + i as u16).unwrap())
        .collect()
}

#[test]
fn srv_lists_nodes_with_ports_and_glue() {
    let known = nodes(3);
    let packet = query("_seedmesh._tcp.seed.test.", RecordType::SRV, None);
    let (answer, message) = ask(&known, &packet, Protocol::Udp);
    assert_eq!(answer.rcode, Some(ResponseCode::NoError));
    assert!(message.authoritative && !message.recursion_available && !message.truncation);
    assert!(message.recursion_desired, "RD is copied");
    let mut seen = Vec::new();
    for record in &message.answers {
        assert_eq!(record.ttl, TTL);
        let RData::SRV(srv) = &record.data else {
            panic!("{record}")
        };
        let glue = message
            .additionals
            .iter()
            .find(|r| r.name == srv.target)
            .expect("glue for every target");
        let RData::A(A(ip)) = glue.data else {
            panic!("{glue}")
        };
        seen.push(Node::new(&ip.to_string(), srv.port).unwrap());
    }
    seen.sort();
    assert_eq!(seen, known);
}

#[test]
fn hostname_nodes_are_their_own_targets_without_glue() {
    let known = vec![Node::new("node.example.org", 55001).unwrap()];
    let packet = query("_seedmesh._tcp.seed.test.", RecordType::SRV, None);
    let (_, message) = ask(&known, &packet, Protocol::Udp);
    let RData::SRV(srv) = &message.answers[0].data else {
        panic!()
    };
    assert_eq!(srv.target.to_ascii(), "node.example.org.");
    assert!(message.additionals.is_empty());
    let packet = query("seed.test.", RecordType::A, None);
    let known = vec![Node::new("node.example.org", 55000).unwrap()];
    let (_, message) = ask(&known, &packet, Protocol::Udp);
    assert!(message.answers.is_empty());
}

#[test]
fn classic_udp_answers_fit_512_bytes_and_say_truncated() {
    let known = nodes(40);
    let packet = query("_seedmesh._tcp.seed.test.", RecordType::SRV, None);
    let (answer, message) = ask(&known, &packet, Protocol::Udp);
    let len = answer.bytes.as_ref().unwrap().len();
    assert!(len <= 512, "{len} bytes");
    assert!(message.truncation && answer.truncated);
    assert!(!message.answers.is_empty() && message.answers.len() < MAX_NODES);
    assert_eq!(message.answers.len(), message.additionals.len());
    // The same question over TCP, or with EDNS 1232, gets all 16.
    for (packet, protocol) in [
        (packet.clone(), Protocol::Tcp),
        (
            query("_seedmesh._tcp.seed.test.", RecordType::SRV, Some(4096)),
            Protocol::Udp,
        ),
    ] {
        let (answer, message) = ask(&known, &packet, protocol);
        assert!(answer.bytes.unwrap().len() <= 1232);
        assert!(!message.truncation);
        assert_eq!(message.answers.len(), MAX_NODES);
    }
}

#[test]
fn apex_addresses_are_nodes_on_the_seed_port() {
    let known = vec![
        Node::new("127.0.0.1", 55000).unwrap(),
        Node::new("127.0.0.2", 55001).unwrap(),
        Node::new("::1", 55000).unwrap(),
    ];
    let (_, a) = ask(
        &known,
        &query("seed.test.", RecordType::A, None),
        Protocol::Udp,
    );
    assert_eq!(a.answers.len(), 1);
    assert_eq!(a.answers[0].data, RData::A(A("127.0.0.1".parse().unwrap())));
    let aaaa = query("seed.test.", RecordType::AAAA, None);
    let (_, aaaa) = ask(&known, &aaaa, Protocol::Udp);
    assert_eq!(aaaa.answers[0].data, address("::1".parse().unwrap()));
}

#[test]
fn names_outside_refused_unknown_inside_nxdomain() {
    let known = nodes(2);
    let cases = [
        ("example.org.", RecordType::A, ResponseCode::Refused),
        ("test.", RecordType::SOA, ResponseCode::Refused),
        ("nope.seed.test.", RecordType::A, ResponseCode::NXDomain),
        (
            "a.127-0-0-1.seed.test.",
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        ("_tcp.seed.test.", RecordType::SRV, ResponseCode::NoError),
        ("seed.test.", RecordType::AXFR, ResponseCode::Refused),
        ("seed.test.", RecordType::MX, ResponseCode::NoError),
    ];
    for (name, qtype, rcode) in cases {
        let (answer, message) = ask(&known, &query(name, qtype, None), Protocol::Udp);
        assert_eq!(answer.rcode, Some(rcode), "{name} {qtype}");
        assert!(message.answers.is_empty(), "{name} {qtype}");
        let negative = matches!(rcode, ResponseCode::NXDomain | ResponseCode::NoError);
        assert_eq!(message.authorities.len(), usize::from(negative));
        assert_eq!(message.authoritative, rcode != ResponseCode::Refused);
    }
}

#[test]
fn address_names_and_the_apex_records_answer() {
    let known = nodes(1);
    let (_, m) = ask(
        &known,
        &query("127-0-0-1.SEED.test.", RecordType::A, None),
        Protocol::Udp,
    );
    assert_eq!(m.answers[0].data, address("127.0.0.1".parse().unwrap()));
    // An address no healthy node has is no name of ours: nobody mints names in the zone.
    for stranger in [
        "10-1-2-3.seed.test.",
        "169-254-169-254.seed.test.",
        "127-0-0-2.seed.test.",
    ] {
        let (answer, m) = ask(&known, &query(stranger, RecordType::A, None), Protocol::Udp);
        assert_eq!(answer.rcode, Some(ResponseCode::NXDomain), "{stranger}");
        assert!(m.answers.is_empty(), "{stranger}");
    }
    let (_, m) = ask(
        &known,
        &query("seed.test.", RecordType::SOA, None),
        Protocol::Udp,
    );
    assert!(matches!(m.answers[0].data, RData::SOA(_)));
    let (_, m) = ask(
        &known,
        &query("seed.test.", RecordType::NS, None),
        Protocol::Udp,
    );
    let ns = Name::from_ascii("ns.seed.test.").unwrap();
    assert_eq!(m.answers[0].data, RData::NS(NS(ns.clone())));
    assert_eq!(m.additionals[0].name, ns);
    let (_, m) = ask(
        &known,
        &query("ns.seed.test.", RecordType::A, None),
        Protocol::Udp,
    );
    assert_eq!(m.answers[0].data, address("127.0.0.1".parse().unwrap()));
}

#[test]
fn name_servers_as_delegated_with_the_addresses_we_know() {
    let zone = Zone::new(&ZoneConfig {
        name: "seed.test".into(),
        seed_port: 55000,
        ns_addr: None,
        ns_names: vec!["127-0-0-2.seed.test".into(), "ns1.example.org.".into()],
        serial: 7,
    })
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(1);
    let packet = query("seed.test.", RecordType::NS, None);
    let got = answer(&zone, &healthy(&nodes(1)), &packet, Protocol::Udp, &mut rng);
    let m = Message::from_vec(&got.bytes.unwrap()).unwrap();
    let names: Vec<String> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::NS(ns) => ns.0.to_ascii(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["127-0-0-2.seed.test.", "ns1.example.org."]);
    assert_eq!(m.additionals.len(), 1);
    assert_eq!(m.additionals[0].data, address("127.0.0.2".parse().unwrap()));
    // The name server's own address name answers, though it is no node.
    let packet = query("127-0-0-2.seed.test.", RecordType::A, None);
    let got = answer(&zone, &healthy(&nodes(1)), &packet, Protocol::Udp, &mut rng);
    let m = Message::from_vec(&got.bytes.unwrap()).unwrap();
    assert_eq!(m.answers[0].data, address("127.0.0.2".parse().unwrap()));
}

#[test]
fn any_gets_one_hinfo() {
    let known = nodes(30);
    for name in ["seed.test.", "_seedmesh._tcp.seed.test."] {
        let (answer, m) = ask(&known, &query(name, RecordType::ANY, None), Protocol::Udp);
        assert_eq!(answer.rcode, Some(ResponseCode::NoError));
        assert_eq!(m.answers.len(), 1);
        assert!(matches!(m.answers[0].data, RData::HINFO(_)));
        assert!(m.additionals.is_empty());
    }
}

#[test]
fn edns_is_echoed_and_newer_versions_get_badvers() {
    let known = nodes(1);
    let packet = query("seed.test.", RecordType::SOA, Some(1232));
    let (_, m) = ask(&known, &packet, Protocol::Udp);
    assert_eq!(m.edns.as_ref().map(Edns::max_payload), Some(MAX_UDP_SIZE));
    let mut message = Message::from_vec(&packet).unwrap();
    message.edns.as_mut().unwrap().set_version(1);
    let (answer, _) = ask(&known, &message.to_vec().unwrap(), Protocol::Udp);
    assert_eq!(answer.rcode, Some(ResponseCode::BADVERS));
}

#[test]
fn malformed_packets_are_dropped_or_formerr() {
    let known = nodes(3);
    let mut rng = fastrand::Rng::with_seed(3);
    let z = zone();
    assert_eq!(
        answer(&z, &healthy(&known), &[1, 2, 3], Protocol::Udp, &mut rng).bytes,
        None
    );
    // A response is never answered.
    let mut response = Message::from_vec(&query("seed.test.", RecordType::A, None)).unwrap();
    response.metadata.message_type = MessageType::Response;
    let bytes = response.to_vec().unwrap();
    assert_eq!(
        answer(&z, &healthy(&known), &bytes, Protocol::Udp, &mut rng).bytes,
        None
    );
    // A header with garbage after it: FORMERR, same id.
    let mut bad = query("seed.test.", RecordType::A, None);
    bad.truncate(bad.len() - 3);
    let got = answer(&z, &healthy(&known), &bad, Protocol::Udp, &mut rng);
    assert_eq!(got.rcode, Some(ResponseCode::FormErr));
    assert_eq!(Message::from_vec(&got.bytes.unwrap()).unwrap().id, 4242);
    // Random bytes and mangled queries never panic, and answers stay small.
    let good = query("_seedmesh._tcp.seed.test.", RecordType::SRV, None);
    for i in 0..20_000 {
        let packet: Vec<u8> = if i % 2 == 0 {
            (0..rng.usize(0..600)).map(|_| rng.u8(..)).collect()
        } else {
            let mut p = good.clone();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..p.len());
                p[at] = rng.u8(..);
            }
            p.truncate(rng.usize(1..=p.len()));
            p
        };
        let got = answer(&z, &healthy(&known), &packet, Protocol::Udp, &mut rng);
        assert!(got.bytes.is_none_or(|b| b.len() <= 512));
        // The reply over --seed_rrl reads the same untrusted bytes: never longer than them.
        let slipped = slip(&packet);
        assert!(slipped.bytes.is_none_or(|b| b.len() <= packet.len()));
    }
}

#[test]
fn a_slip_is_the_question_truncated_and_never_longer_than_the_query() {
    for edns in [None, Some(1232)] {
        let packet = query("_seedmesh._tcp.seed.test.", RecordType::SRV, edns);
        let slipped = slip(&packet);
        let bytes = slipped.bytes.expect("a slip");
        assert!(
            bytes.len() <= packet.len(),
            "{} > {}",
            bytes.len(),
            packet.len()
        );
        let m = Message::from_vec(&bytes).unwrap();
        let asked = Message::from_vec(&packet).unwrap();
        assert_eq!(m.metadata.id, asked.metadata.id);
        assert!(m.metadata.truncation && slipped.truncated);
        assert_eq!(m.queries, asked.queries);
        assert!(m.answers.is_empty() && m.additionals.is_empty() && m.authorities.is_empty());
    }
    // Garbage and answers are never answered, even with a slip.
    assert_eq!(slip(b"\x00\x01garbage").bytes, None);
    let (_, answer) = ask(
        &nodes(1),
        &query("_seedmesh._tcp.seed.test.", RecordType::SRV, None),
        Protocol::Udp,
    );
    assert_eq!(slip(&answer.to_vec().unwrap()).bytes, None);
}
