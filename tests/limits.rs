//! What one client can make a process spend, against the real binaries (SPEC §9, §10, §12,
//! §13): connections from one address (`--max_conns_per_ip`), idle kept-alive connections
//! that would hold every slot (`--max_conns`), DNS-over-TCP queries trickled a byte at a time,
//! and request bodies declared large and never finished (`--app_body_budget`). Clients bind
//! their own loopback address (`127.x.y.z`), so that one test has many sources.

mod support;

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use support::*;

const ATTACKER: &str = "127.66.6.6";
const OTHER: &str = "127.5.5.5";

/// Sends a request on a kept-alive connection and reads its answer (10 s at most).
fn ask(stream: &TcpStream, request: &[u8]) -> std::io::Result<Resp> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&*stream).write_all(request)?;
    read_response(&mut BufReader::new(stream))
}

/// Whether the server closed `stream` (it reads 0, or is reset) within 5 s.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match stream.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn one_address_cannot_hold_every_connection_and_other_clients_are_served() {
    let dir = TempDir::new("per-ip");
    let dns = dns(dir.path(), &NO_SWEEP);
    // 100 kept-alive connections from one address, each answered once (as the attacker's
    // script keeps 1,100 open with a GET every 8 s).
    let mut held = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..100 {
        let stream = connect_from(ATTACKER, dns.addr);
        let resp = ask(&stream, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        match resp.status {
            200 => held.push(stream),
            503 => refused.push(resp),
            _ => panic!("{resp:?}"),
        }
    }
    assert_eq!(
        (held.len(), refused.len()),
        (64, 36),
        "--max_conns_per_ip 64"
    );
    let resp = &refused[0];
    assert_eq!(resp.header("retry-after"), Some("1"), "{resp:?}");
    assert!(resp.error().contains("from your address"), "{resp:?}");
    // Another client is served, and the held connections still are.
    let other = request_from(OTHER, "GET", dns.addr, "/", None, &[]);
    assert_eq!(other.status, 200, "{other:?}");
    assert_eq!(
        ask(&held[0], b"GET / HTTP/1.1\r\n\r\n").unwrap().status,
        200
    );
    // Refused ones are counted as the connection layer's answers.
    let sample = r#"seedmesh_http_requests_total{route="other",method="other",status="503"}"#;
    assert_eq!(dns.metric(sample), 36);
    let sample = r#"seedmesh_connections_refused_total{bound="max_conns_per_ip"}"#;
    assert_eq!(dns.metric(sample), 36);
    // One warning line for the 36, not 36 lines.
    let log = dns.wait_log("(this time from 127.66.6.6)");
    assert_eq!(log.matches("--max_conns_per_ip open").count(), 1, "{log}");
    assert!(
        log.contains("(this time from 127.66.6.6)"),
        "names the source: {log}"
    );
}

#[test]
fn kept_alive_connections_idle_between_requests_make_room_for_an_active_client() {
    let dir = TempDir::new("idle-room");
    let dns = dns(
        dir.path(),
        &[&NO_SWEEP[..], &["--max_conns", "32"]].concat(),
    );
    // One address takes every slot with kept-alive connections, each answered once and idle.
    let mut held: Vec<TcpStream> = (0..32)
        .map(|_| {
            let stream = connect_from(ATTACKER, dns.addr);
            assert_eq!(ask(&stream, b"GET / HTTP/1.1\r\n\r\n").unwrap().status, 200);
            stream
        })
        .collect();
    // Other clients are served, each in the place of the one idle longest (the newcomers
    // keep their connections, so that each needs a slot of its own).
    let mut newcomers = Vec::new();
    for (turn, oldest) in held[..2].iter_mut().enumerate() {
        let stream = connect_from(OTHER, dns.addr);
        let resp = ask(&stream, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(resp.status, 200, "turn {turn}: {resp:?}");
        assert!(closed_by_server(oldest), "turn {turn}");
        newcomers.push(stream);
    }
    // The others are untouched and still served.
    for stream in &held[2..] {
        assert_eq!(ask(stream, b"GET / HTTP/1.1\r\n\r\n").unwrap().status, 200);
    }
    assert!(
        dns.thread_names()
            .iter()
            .filter(|n| *n == "http-conn")
            .count()
            <= 32
    );
}

// DNS over TCP (SPEC §12).

const ZONE: &str = "seed.test";

/// A `dns` with DNS seeding on a free port, and that port's address.
fn seed(dir: &TempDir) -> (Proc, SocketAddr) {
    let mut args = vec!["--seed_zone", ZONE, "--seed_listen", "127.0.0.1:0"];
    args.extend_from_slice(&NO_SWEEP);
    let proc = dns(dir.path(), &args);
    let addr = proc.seeding_addr();
    (proc, addr)
}

/// `seed.test SOA` as a TCP message: its two-byte length, then the message.
fn soa_query() -> Vec<u8> {
    let mut message = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    message.queries.push(Query::query(
        Name::from_ascii("seed.test.").unwrap(),
        RecordType::SOA,
    ));
    let packet = message.to_vec().unwrap();
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&packet);
    framed
}

/// Asks `seed.test SOA` on `stream`; whether a whole answer came back within 5 s.
fn answers(stream: &mut TcpStream) -> bool {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut length = [0u8; 2];
    if stream.write_all(&soa_query()).is_err() || stream.read_exact(&mut length).is_err() {
        return false;
    }
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).is_ok() && Message::from_vec(&answer).is_ok()
}

/// Sends a query's length (256 bytes), then one zero byte every `pace`, until the server
/// closes `stream` or `limit` passes; how long the connection lasted, or `None` if it
/// outlived `limit`.
fn trickle(stream: &mut TcpStream, pace: Duration, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    stream.set_read_timeout(Some(pace)).unwrap();
    let mut byte = 1;
    while started.elapsed() < limit {
        if stream.write_all(&[std::mem::take(&mut byte)]).is_err() {
            return Some(started.elapsed());
        }
        // The read times out after `pace` while the connection is open: the pace itself.
        match stream.read(&mut [0u8; 16]) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            _ => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn a_dns_query_trickled_a_byte_at_a_time_is_cut_off_within_seconds_and_idle_ones_close() {
    let dir = TempDir::new("dns-trickle");
    let (_seed, server) = seed(&dir);
    // A length prefix, then a byte every half second: each read is quick, the query never
    // ends. Before its whole-message deadline, it held the connection for hours.
    let mut slow = TcpStream::connect(server).unwrap();
    let lasted = trickle(
        &mut slow,
        Duration::from_millis(500),
        Duration::from_secs(12),
    );
    let lasted = lasted.expect("still open after 12 s of trickling");
    eprintln!("a trickled query was cut off after {lasted:?}");
    assert!(
        lasted >= Duration::from_millis(2500) && lasted < Duration::from_secs(6),
        "{lasted:?}"
    );
    // A connection that asked once and then waits is closed after a short idle time.
    let mut idle = TcpStream::connect(server).unwrap();
    assert!(answers(&mut idle));
    let started = Instant::now();
    idle.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let _ = idle.read(&mut [0u8; 16]);
    let waited = started.elapsed();
    eprintln!("an idle connection was closed after {waited:?}");
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
}

#[test]
fn one_address_cannot_hold_every_dns_tcp_connection() {
    let dir = TempDir::new("dns-per-ip");
    let (seed, server) = seed(&dir);
    let mut streams: Vec<TcpStream> = (0..12).map(|_| connect_from(ATTACKER, server)).collect();
    // The first 8 are served, the rest closed at once.
    for (i, stream) in streams.iter_mut().enumerate() {
        if i < 8 {
            assert!(answers(stream), "connection {i}");
        } else {
            assert!(closed_by_server(stream), "connection {i}");
        }
    }
    let mut other = connect_from(OTHER, server);
    assert!(answers(&mut other));
    let mut seed = seed;
    assert!(seed.is_running());
}

/// 64 connections from 8 addresses, each trickling a query as `slow.py` did (a length of
/// 256 bytes, then a byte every half second), until they are closed or `limit` has passed;
/// says `ready` once each has sent two bytes; how many were closed, and when the last one was.
fn trickling_attack(
    server: SocketAddr,
    ready: mpsc::Sender<()>,
    limit: Duration,
) -> (usize, Duration) {
    let (_stop, pace) = mpsc::channel::<()>();
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = (0..64)
        .map(|i| connect_from(&format!("127.66.7.{}", 1 + i % 8), server))
        .collect();
    let mut closed = 0;
    let mut last = Duration::ZERO;
    let mut byte = 1;
    while !streams.is_empty() && started.elapsed() < limit {
        let sent = std::mem::take(&mut byte);
        streams.retain_mut(|stream| {
            let _ = stream.set_nonblocking(true);
            let open = |e: std::io::Error| e.kind() == ErrorKind::WouldBlock;
            let gone = stream.write_all(&[sent]).is_err()
                || !stream.read(&mut [0u8; 16]).err().is_some_and(open);
            if gone {
                closed += 1;
                last = started.elapsed();
            }
            !gone
        });
        // Once each has sent two bytes, the first has surely reached its thread.
        if sent == 0 {
            let _ = ready.send(());
        }
        // The pace.
        let _ = pace.recv_timeout(Duration::from_millis(500));
    }
    (closed, last)
}

#[test]
fn trickling_clients_on_every_dns_tcp_slot_lock_nobody_out_for_long_and_udp_is_unaffected() {
    let dir = TempDir::new("dns-slowloris");
    let (_seed, server) = seed(&dir);
    let (ready, started_attack) = mpsc::channel();
    let limit = Duration::from_secs(12);
    let attack = thread::spawn(move || trickling_attack(server, ready, limit));
    started_attack
        .recv_timeout(Duration::from_secs(10))
        .expect("the attack begins");
    // While they hold the slots, UDP is answered all the same, and a TCP client gets in
    // within seconds: as soon as their messages run out of time.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let query = soa_query();
    wait_until(Duration::from_secs(10), "a UDP answer", || {
        let _ = udp.send_to(&query[2..], server);
        udp.recv(&mut [0u8; 1500]).is_ok()
    });
    let started = Instant::now();
    let waited = wait_until(Duration::from_secs(12), "a TCP answer", || {
        answers(&mut connect_from(OTHER, server))
    });
    eprintln!(
        "a TCP client was answered after {waited:?} ({:?})",
        started.elapsed()
    );
    let (closed, last) = attack.join().unwrap();
    eprintln!("{closed} of 64 trickling connections closed, the last after {last:?}");
    assert!(waited < Duration::from_secs(6), "{waited:?}");
    assert_eq!(closed, 64, "every trickling connection was cut off");
    assert!(last < Duration::from_secs(6), "the last after {last:?}");
}

#[test]
fn full_dns_tcp_slots_make_room_by_closing_the_connection_idle_longest() {
    let dir = TempDir::new("dns-idle-room");
    let (_seed, server) = seed(&dir);
    // 64 connections from 8 addresses, each asked once, then waiting.
    let mut held: Vec<TcpStream> = (0..64)
        .map(|i| {
            let mut stream = connect_from(&format!("127.66.8.{}", 1 + i % 8), server);
            assert!(answers(&mut stream), "connection {i}");
            stream
        })
        .collect();
    // A newcomer is served in the place of one that waited (the first, which waited longest,
    // unless a busy machine scheduled its thread's wait later than another's).
    let mut newcomer = connect_from(OTHER, server);
    assert!(answers(&mut newcomer));
    let closed = |stream: &TcpStream| {
        stream.set_nonblocking(true).unwrap();
        let gone = match (&*stream).read(&mut [0u8; 64]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        stream.set_nonblocking(false).unwrap();
        gone
    };
    wait_until(
        Duration::from_secs(5),
        "one held connection is closed",
        || held.iter().filter(|s| closed(s)).count() == 1,
    );
    let open = held.iter().position(|s| !closed(s)).unwrap();
    assert!(answers(&mut held[open]), "the others are untouched");
}

// Request bodies (SPEC §13).

#[test]
fn stalled_large_bodies_are_held_within_the_budget_and_the_rest_refused_at_once() {
    const BODY: usize = 1 << 20;
    let dir = TempDir::new("body-budget");
    let app = FakePeer::new("127.0.0.1", "{}");
    let seed = refused_addr("127.0.0.1").to_string();
    let app_url = format!("http://{}", app.addr);
    let node = node(
        dir.path(),
        &["--dns", &seed, "-u", "3600", "--app", &app_url],
    );
    let rest_before = node.rss_kib();
    // 160 clients from 10 addresses each declare a 1 MiB body and send all but its last byte.
    let head =
        format!("POST /tx HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: {BODY}\r\n\r\n");
    let body = vec![b'x'; BODY - 1];
    let stalled: Vec<TcpStream> = (0..160)
        .map(|i| {
            let mut stream = connect_from(&format!("127.66.9.{}", 1 + i % 10), node.addr);
            stream
                .set_write_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
            stream
        })
        .collect();
    // The ones the budget (64 MiB: 64 such bodies) cannot take are answered 503 at once,
    // before their body is read; the others are held, silent, for their last byte.
    let mut refused = vec![false; stalled.len()];
    for stream in &stalled {
        stream.set_nonblocking(true).unwrap();
    }
    wait_until(Duration::from_secs(8), "96 bodies refused", || {
        for (stream, refused) in stalled.iter().zip(&mut refused) {
            let mut raw = vec![0u8; 4096];
            if let (false, Ok(n)) = (*refused, (&*stream).read(&mut raw)) {
                let text = lossy(&raw[..n]);
                assert_eq!(first_status(&raw[..n]), Some(503), "{text}");
                assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
                *refused = true;
            }
        }
        refused.iter().filter(|r| **r).count() >= 96
    });
    let rss_growth = node.rss_kib().saturating_sub(rest_before);
    eprintln!(
        "{} of 160 stalled 1 MiB bodies refused; RSS grew by {} MiB",
        refused.iter().filter(|r| **r).count(),
        rss_growth / 1024
    );
    assert!(rss_growth < 100 * 1024, "RSS grew by {rss_growth} KiB");
    // Meanwhile the API, whose bodies are small and not counted, answers other clients.
    let node_body = node_body_at("127.0.0.1", 1);
    let resp = request_from(OTHER, "POST", node.addr, "/nodes/", Some(&node_body), &[]);
    assert_eq!(resp.status, 200, "{resp:?}");
    // Once the stalled clients go, their bytes are given back: a whole body is forwarded.
    drop(stalled);
    let whole = String::from_utf8(vec![b'y'; BODY]).unwrap();
    wait_until(
        Duration::from_secs(10),
        "a whole 1 MiB body is forwarded",
        || request_from(OTHER, "POST", node.addr, "/tx", Some(&whole), &[]).status == 200,
    );
}
