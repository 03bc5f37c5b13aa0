//! DNS seeding (SPEC §12), against the real `dns` and `node` binaries on loopback: the seed's
//! answers read with hickory-proto's message types over std sockets, as any resolver would
//! read them. The seed answers only with nodes whose last check by it succeeded, so a node
//! appears once a sweep has checked it: every such condition is awaited with a deadline, and
//! the seeds here sweep every 0.3 s.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use support::*;

const ZONE: &str = "seed.test";
const SRV_NAME: &str = "_seedmesh._tcp.seed.test.";
/// How long a condition that needs a sweep or an update round may take.
const SETTLE: Duration = Duration::from_secs(20);

/// A `dns` with DNS seeding on a free port, and that port's address.
fn seed(dir: &TempDir, args: &[&str]) -> (Proc, SocketAddr) {
    let mut full = vec!["--seed_zone", ZONE, "--seed_listen", "127.0.0.1:0"];
    full.extend_from_slice(args);
    let proc = dns(dir.path(), &full);
    let addr = proc.seeding_addr();
    (proc, addr)
}

fn question(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
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

/// Sends `packet` over UDP and returns the answer's bytes. UDP may lose a datagram (the
/// server's socket buffer full of junk, or a loaded machine): the query is sent again every
/// half second, as resolvers do, for up to 10 s.
fn udp_exchange(server: SocketAddr, packet: &[u8]) -> Vec<u8> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(server).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buffer = vec![0u8; 65536];
    for _ in 0..20 {
        socket.send(packet).unwrap();
        if let Ok(len) = socket.recv(&mut buffer) {
            buffer.truncate(len);
            return buffer;
        }
    }
    panic!("no UDP answer from {server} in 10 s");
}

fn udp(server: SocketAddr, name: &str, qtype: RecordType, edns: Option<u16>) -> (Message, usize) {
    let bytes = udp_exchange(server, &question(name, qtype, edns));
    (
        Message::from_vec(&bytes).expect("a DNS message"),
        bytes.len(),
    )
}

fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    tcp_on(&mut stream, name, qtype)
}

/// One query and its answer on an open connection.
fn tcp_on(stream: &mut TcpStream, name: &str, qtype: RecordType) -> Message {
    let packet = question(name, qtype, None);
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&packet);
    stream.write_all(&framed).unwrap();
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).unwrap();
    let mut answer = vec![0u8; u16::from_be_bytes(length) as usize];
    stream.read_exact(&mut answer).unwrap();
    Message::from_vec(&answer).unwrap()
}

/// The (ip, port) pairs an SRV answer lists; panics unless every target has its address in
/// the additional section.
fn srv_nodes(message: &Message) -> BTreeSet<(String, u16)> {
    message
        .answers
        .iter()
        .map(|record| {
            let RData::SRV(srv) = &record.data else {
                panic!("not an SRV record: {record}")
            };
            let glue = message
                .additionals
                .iter()
                .find(|r| r.name == srv.target)
                .unwrap_or_else(|| panic!("no address for {} in {message}", srv.target));
            let ip = match &glue.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(aaaa) => aaaa.0.to_string(),
                other => panic!("glue is {other:?}"),
            };
            (ip, srv.port)
        })
        .collect()
}

/// The addresses of an `A`/`AAAA` answer.
fn addresses(message: &Message) -> BTreeSet<String> {
    message
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(aaaa) => aaaa.0.to_string(),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn pairs(addrs: &[SocketAddr]) -> BTreeSet<(String, u16)> {
    addrs
        .iter()
        .map(|a| (a.ip().to_string(), a.port()))
        .collect()
}

fn register(seed: &Proc, addr: SocketAddr) {
    let resp = seed.post("/", &node_body_at(&addr.ip().to_string(), addr.port()));
    assert_eq!(resp.status, 200, "{}", resp.body);
}

/// A peer at exactly `addr` that answers every HTTP request with an empty 200.
fn peer_at(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = stream.read(&mut [0u8; 4096]);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    Ok(addr)
}

/// `count` live peers, one per address group from 127.`first`/16 on, each registered with
/// `seed`; returns their addresses once a sweep has found them all healthy (SRV over TCP
/// lists them, or 16 of them).
fn healthy_peers(seed: &Proc, server: SocketAddr, first: u8, count: u8) -> Vec<SocketAddr> {
    let live: Vec<SocketAddr> = (first..first + count)
        .map(|i| peer_at(format!("127.{i}.0.1:0").parse().unwrap()).unwrap())
        .collect();
    for addr in &live {
        register(seed, *addr);
    }
    let all = pairs(&live);
    wait_until(SETTLE, "a sweep finds the peers healthy", || {
        let listed = srv_nodes(&tcp(server, SRV_NAME, RecordType::SRV));
        listed.len() == all.len().min(16) && listed.is_subset(&all)
    });
    live
}

#[test]
fn srv_lists_exactly_the_healthy_nodes_with_their_addresses() {
    let dir = TempDir::new("dns-srv");
    let (seed, server) = seed(&dir, &["-u", "0.3"]);
    // A dead node registers first: registered is not healthy, so no answer ever lists it,
    // not even before the sweep that removes it.
    let dead = refused_addr("127.4.0.1");
    register(&seed, dead);
    let live: Vec<SocketAddr> = (1..=3)
        .map(|i| peer_at(format!("127.{i}.0.1:0").parse().unwrap()).unwrap())
        .collect();
    let (answer, _) = udp(server, SRV_NAME, RecordType::SRV, None);
    assert!(answer.answers.is_empty(), "nothing checked yet: {answer}");
    for addr in &live {
        register(&seed, *addr);
    }
    let want = pairs(&live);
    let dead = (dead.ip().to_string(), dead.port());
    wait_until(SETTLE, "SRV lists exactly the live nodes", || {
        let (answer, _) = udp(server, SRV_NAME, RecordType::SRV, None);
        let listed = srv_nodes(&answer);
        assert!(
            !listed.contains(&dead),
            "the dead node was listed: {answer}"
        );
        assert!(listed.is_subset(&want), "{answer}");
        listed == want
    });
    let (answer, _) = udp(server, SRV_NAME, RecordType::SRV, Some(1232));
    assert_eq!(answer.response_code, ResponseCode::NoError);
    assert!(answer.authoritative && !answer.recursion_available);
    assert_eq!(srv_nodes(&answer), want);
    for record in answer.answers.iter().chain(&answer.additionals) {
        assert_eq!(record.ttl, 60, "{record}");
        assert!(record.name.to_ascii().ends_with(".seed.test."), "{record}");
    }
    // Each target name is answered alone too; an address that is no node's has no name.
    let target = answer.additionals[0].name.to_ascii();
    let (alone, _) = udp(server, &target, RecordType::A, None);
    assert_eq!(alone.answers[0].data, answer.additionals[0].data);
    let (stranger, _) = udp(server, "169-254-169-254.seed.test.", RecordType::A, None);
    assert_eq!(stranger.response_code, ResponseCode::NXDomain, "{stranger}");
    let (dead_name, _) = udp(server, "127-4-0-1.seed.test.", RecordType::A, None);
    assert_eq!(
        dead_name.response_code,
        ResponseCode::NXDomain,
        "{dead_name}"
    );
    // `/status` names the ports bound, not the 0 asked for.
    let status = seed.get("/status").json();
    assert_eq!(status["listening"], seed.addr.to_string());
    assert_eq!(status["dns_listening"], server.to_string());
}

#[test]
fn killed_node_disappears_after_the_sweep() {
    let dir = TempDir::new("dns-killed");
    let (seed, server) = seed(&dir, &["-u", "0.3"]);
    let seed_http = seed.addr.to_string();
    let node_dir = TempDir::new("dns-killed-node");
    let mut node = node(node_dir.path(), &["--dns", &seed_http, "-u", "60"]);
    let other = peer_at("127.9.0.1:0".parse().unwrap()).unwrap();
    register(&seed, other);
    let listed = |addr: SocketAddr| {
        let (answer, _) = udp(server, SRV_NAME, RecordType::SRV, None);
        srv_nodes(&answer).contains(&(addr.ip().to_string(), addr.port()))
    };
    wait_until(SETTLE, "the node registers and is served", || {
        listed(node.addr)
    });
    node.kill();
    wait_until(SETTLE, "the killed node is gone from SRV", || {
        !listed(node.addr)
    });
    // Gone for good, and the live one stays.
    for _ in 0..5 {
        assert!(!listed(node.addr) && listed(other));
    }
}

#[test]
fn apex_addresses_are_the_nodes_on_the_seed_port() {
    let dir = TempDir::new("dns-apex");
    // Two peers on one port P (the seed port), and one elsewhere.
    let (first, second) = (0..20)
        .find_map(|_| {
            let first = peer_at("127.5.0.1:0".parse().unwrap()).ok()?;
            let second =
                peer_at(SocketAddr::new("127.6.0.1".parse().unwrap(), first.port())).ok()?;
            Some((first, second))
        })
        .expect("two loopback addresses on one port");
    let elsewhere = peer_at("127.7.0.1:0".parse().unwrap()).unwrap();
    let port = first.port().to_string();
    let (seed, server) = seed(&dir, &["-u", "0.3", "--seed_port", &port]);
    // On the seed port too, but dead: never an A record.
    let dead = SocketAddr::new("127.8.0.1".parse().unwrap(), first.port());
    register(&seed, dead);
    let v6 = peer_at(SocketAddr::new("::1".parse().unwrap(), first.port())).ok();
    for addr in [first, second, elsewhere].iter().chain(&v6) {
        register(&seed, *addr);
    }
    let want: BTreeSet<String> = ["127.5.0.1".to_string(), "127.6.0.1".to_string()].into();
    wait_until(SETTLE, "A lists the nodes on the seed port", || {
        let listed = addresses(&udp(server, "seed.test.", RecordType::A, None).0);
        assert!(listed.is_subset(&want), "{listed:?}");
        listed == want
    });
    wait_until(SETTLE, "SRV lists all of them", || {
        srv_nodes(&udp(server, SRV_NAME, RecordType::SRV, None).0).len() == 3 + v6.iter().len()
    });
    match v6 {
        Some(_) => {
            let (answer, _) = udp(server, "seed.test.", RecordType::AAAA, None);
            assert_eq!(addresses(&answer), ["::1".to_string()].into());
        }
        None => eprintln!("no IPv6 loopback here: the AAAA part of this test did not run"),
    }
}

#[test]
fn classic_udp_answers_fit_512_bytes_and_tcp_carries_all() {
    let dir = TempDir::new("dns-size");
    let (seed, server) = seed(&dir, &["-u", "0.3"]);
    let live = healthy_peers(&seed, server, 10, 20);
    let all = pairs(&live);
    let answer = tcp(server, SRV_NAME, RecordType::SRV);
    assert!(!answer.truncation, "TCP carries the whole answer");
    assert_eq!(srv_nodes(&answer).len(), 16);
    for _ in 0..20 {
        let (answer, len) = udp(server, SRV_NAME, RecordType::SRV, None);
        assert!(len <= 512, "{len} bytes without EDNS");
        assert!(answer.truncation, "TC when some did not fit");
        let listed = srv_nodes(&answer);
        assert!(!listed.is_empty() && listed.len() < 16 && listed.is_subset(&all));
        let (answer, len) = udp(server, SRV_NAME, RecordType::SRV, Some(4096));
        assert!(len <= 1232, "{len} bytes with EDNS 4096");
        assert!(!answer.truncation);
        assert_eq!(srv_nodes(&answer).len(), 16);
    }
}

#[test]
fn refused_outside_nxdomain_inside_any_minimal_and_counted() {
    let dir = TempDir::new("dns-codes");
    let args = [
        "-u",
        "0.3",
        "--seed_ns",
        "127-0-0-9.seed.test",
        "--seed_ns",
        "ns.example.org",
    ];
    let (seed, server) = seed(&dir, &args);
    // 20 healthy nodes: an ANY that listed them would be large.
    healthy_peers(&seed, server, 40, 20);
    let rcode = |name: &str, qtype| udp(server, name, qtype, None).0.response_code;
    assert_eq!(rcode("example.org.", RecordType::A), ResponseCode::Refused);
    assert_eq!(rcode("test.", RecordType::NS), ResponseCode::Refused);
    assert_eq!(
        rcode("nope.seed.test.", RecordType::A),
        ResponseCode::NXDomain
    );
    assert_eq!(rcode("seed.test.", RecordType::AXFR), ResponseCode::Refused);
    let (nx, _) = udp(server, "nope.seed.test.", RecordType::A, None);
    assert!(nx.authoritative && matches!(nx.authorities[0].data, RData::SOA(_)));
    let (soa, _) = udp(server, "seed.test.", RecordType::SOA, None);
    assert!(matches!(soa.answers[0].data, RData::SOA(_)));
    let (ns, _) = udp(server, "seed.test.", RecordType::NS, None);
    let names: Vec<String> = ns
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::NS(ns) => ns.0.to_ascii(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["127-0-0-9.seed.test.", "ns.example.org."]);
    let mut glue = ns.clone();
    glue.answers = ns.additionals.clone();
    assert_eq!(addresses(&glue), ["127.0.0.9".to_string()].into());
    for name in ["seed.test.", SRV_NAME] {
        let (any, len) = udp(server, name, RecordType::ANY, Some(4096));
        assert_eq!(any.response_code, ResponseCode::NoError);
        assert_eq!(any.answers.len(), 1, "{any}");
        assert!(matches!(any.answers[0].data, RData::HINFO(_)));
        assert!(any.additionals.is_empty() && len < 100, "{len} bytes");
    }
    let metrics = seed.get("/metrics").body;
    for line in [
        r#"seedmesh_dns_queries_total{qtype="A",rcode="REFUSED"} 1"#,
        r#"seedmesh_dns_queries_total{qtype="A",rcode="NXDOMAIN"} 2"#,
        r#"seedmesh_dns_queries_total{qtype="ANY",rcode="NOERROR"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
}

#[test]
fn random_datagrams_and_garbled_queries_leave_it_answering() {
    let dir = TempDir::new("dns-fuzz");
    // Robustness, not the rate limit: that has a test of its own.
    let (mut seed, server) = seed(&dir, &["-u", "0.3", "--seed_rrl", "0"]);
    healthy_peers(&seed, server, 80, 1);
    let mut rng = fastrand::Rng::with_seed(12);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let good = question(SRV_NAME, RecordType::SRV, None);
    let alive = || udp(server, SRV_NAME, RecordType::SRV, None).0.answers.len() == 1;
    for i in 0..12_000 {
        let packet: Vec<u8> = if i < 10_000 {
            (0..rng.usize(0..700)).map(|_| rng.u8(..)).collect()
        } else {
            let mut p = good.clone();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(..p.len());
                p[at] = rng.u8(..);
            }
            p.truncate(rng.usize(1..=p.len()));
            p
        };
        let _ = socket.send_to(&packet, server);
        if i % 1000 == 999 {
            assert!(alive(), "no answer after {} datagrams", i + 1);
        }
    }
    // Over TCP: garbage, an oversized length, a half message then silence.
    for bytes in [&b"\x00\x05hello"[..], b"\xff\xff", b"\x00\x40\x12\x34"] {
        let mut stream = TcpStream::connect(server).unwrap();
        let _ = stream.write_all(bytes);
    }
    assert!(seed.is_running());
    assert!(alive());
    assert_eq!(tcp(server, SRV_NAME, RecordType::SRV).answers.len(), 1);
    let metrics = seed.get("/metrics").body;
    assert!(metrics.contains(r#"rcode="FORMERR""#), "{metrics}");
}

#[test]
fn a_udp_flood_from_one_network_gets_the_rate_then_slips_and_tcp_still_answers() {
    let dir = TempDir::new("dns-rrl");
    let (mut seed, server) = seed(&dir, &["--seed_rrl", "5"]);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let soa = |id: u16| {
        let mut packet = question(&format!("{ZONE}."), RecordType::SOA, Some(1232));
        packet[..2].copy_from_slice(&id.to_be_bytes());
        packet
    };
    for id in 0..40u16 {
        socket.send_to(&soa(id), server).unwrap();
    }
    // What the seed did with each, from its counters: once all 40 are accounted for, every
    // reply is in this socket's buffer, however slowly a loaded machine got there.
    let answered = r#"seedmesh_dns_queries_total{qtype="SOA",rcode="NOERROR"}"#;
    let slipped = r#"seedmesh_dns_rate_limited_total{action="slipped"}"#;
    let dropped = r#"seedmesh_dns_rate_limited_total{action="dropped"}"#;
    wait_until(
        Duration::from_secs(10),
        "the 40 queries are accounted for",
        || seed.metric(answered) + seed.metric(slipped) + seed.metric(dropped) == 40,
    );
    let (mut full, mut slips) = (0, 0);
    let mut buffer = [0u8; 2048];
    while let Ok((len, _)) = socket.recv_from(&mut buffer) {
        let reply = Message::from_vec(&buffer[..len]).expect("a DNS message");
        assert!(reply.id < 40, "{reply}");
        if reply.truncation {
            assert!(
                reply.answers.is_empty(),
                "a slip carries no records: {reply}"
            );
            assert!(len <= soa(0).len(), "a slip is no bigger than the query");
            slips += 1;
        } else {
            assert_eq!(reply.answers.len(), 1, "{reply}");
            full += 1;
        }
    }
    // 5 at once (the burst), maybe a few more as the bucket refills during the flood; of the
    // rest, every second one slips and the others get nothing.
    assert_eq!((seed.metric(answered), seed.metric(slipped)), (full, slips));
    assert!((5..40).contains(&full), "{full} full answers");
    assert_eq!(
        slips,
        (40 - full) / 2,
        "{slips} slips of {} over",
        40 - full
    );
    // TCP is not limited: a client told to retry over it is answered at once.
    assert_eq!(
        tcp(server, &format!("{ZONE}."), RecordType::SOA)
            .answers
            .len(),
        1
    );
    // Garbage over the limit goes to the slip path, which reads it too: nothing breaks.
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..2_000 {
        let junk: Vec<u8> = (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect();
        let _ = socket.send_to(&junk, server);
    }
    assert!(seed.is_running());
    // And the bucket refills: five a second.
    wait_until(Duration::from_secs(10), "a full UDP answer again", || {
        !udp(server, &format!("{ZONE}."), RecordType::SOA, None)
            .0
            .truncation
    });
}

#[test]
fn node_with_only_a_seed_domain_joins_the_network() {
    let dir = TempDir::new("dns-join-seed");
    let (seed, server) = seed(&dir, &["-u", "0.5"]);
    let seed_http = seed.addr.to_string();
    let dirs: Vec<TempDir> = (0..3)
        .map(|i| TempDir::new(&format!("dns-join-{i}")))
        .collect();
    let members: Vec<Proc> = dirs[..2]
        .iter()
        .map(|d| node(d.path(), &["--dns", &seed_http, "-u", "0.5"]))
        .collect();
    wait_until(SETTLE, "the seed serves both nodes", || {
        srv_nodes(&udp(server, SRV_NAME, RecordType::SRV, None).0).len() == 2
    });
    let resolver = server.to_string();
    let newcomer = node(
        dirs[2].path(),
        &["--seed_domain", ZONE, "--resolver", &resolver, "-u", "0.5"],
    );
    let status = newcomer.get("/status").json();
    assert_eq!(status["settings"]["seeds"], json!([]), "no HTTP seed");
    let addr_of = |p: &Proc| (p.addr.ip().to_string(), p.addr.port());
    wait_until(SETTLE, "the newcomer learns both nodes", || {
        let known: BTreeSet<(String, u16)> = newcomer.nodes().into_iter().collect();
        members.iter().all(|m| known.contains(&addr_of(m)))
    });
    wait_until(SETTLE, "the nodes learn the newcomer", || {
        members
            .iter()
            .all(|m| m.nodes().contains(&addr_of(&newcomer)))
    });
}

#[test]
fn stops_within_two_seconds_with_dns_seeding_on() {
    let dir = TempDir::new("dns-stop");
    let (mut seed, server) = seed(&dir, &NO_SWEEP);
    // A TCP client that asked once and stays connected and silent must not hold the stop:
    // the stop closes its connection and joins the thread that served it.
    let mut idle = TcpStream::connect(server).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        tcp_on(&mut idle, "seed.test.", RecordType::SOA)
            .answers
            .len(),
        1
    );
    let _silent = TcpStream::connect(server).unwrap();
    assert_eq!(
        udp(server, "seed.test.", RecordType::SOA, None)
            .0
            .answers
            .len(),
        1
    );
    let (status, took) = seed.signal("TERM", Duration::from_secs(5));
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let log = seed.stderr();
    assert!(!log.contains("did not stop in time"), "{log}");
    assert_eq!(
        idle.read(&mut [0u8; 16]).unwrap_or(0),
        0,
        "closed by the stop"
    );
}
