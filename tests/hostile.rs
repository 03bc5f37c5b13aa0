//! What clients and peers can throw at a running process: changes it may not accept, bodies
//! and peer answers over their limits (SPEC §10), and random bytes (§3).

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use seedmesh::nodes::Node;
use support::*;

const LOCALHOST: &str = "127.0.0.1";

#[test]
fn verify_source_accepts_only_the_callers_own_address() {
    // Every connection a test makes comes from 127.0.0.1: std cannot bind a socket before
    // connecting, and Linux picks 127.0.0.1 as the source for any 127.0.0.0/8 destination. So
    // the server listens on 127.0.0.3, and the caller's own address differs from the server's.
    let dir = TempDir::new("verify-source");
    let dns = dns(
        &dir.join("dns"),
        &["-i", "127.0.0.3", "--verify_source", "-u", "3600"],
    );
    let own = dns.post("/", &node_body_at(LOCALHOST, 5));
    assert_eq!(own.status, 200, "{}", own.body);
    for other in ["127.0.0.2", "127.0.0.3", "::1", "localhost"] {
        let refused = dns.post("/", &node_body_at(other, 5));
        assert_eq!(refused.status, 403, "{other}: {}", refused.body);
        let error = refused.error();
        assert!(
            error.contains("--verify_source") && error.contains("your own address 127.0.0.1"),
            "{error}"
        );
    }
    assert_eq!(dns.nodes(), vec![(LOCALHOST.into(), 5)]);

    // A real node registering itself is accepted.
    let seed = dns.addr.to_string();
    let node = node(&dir.join("node"), &["-u", "60", "--dns", &seed]);
    wait_until(Duration::from_secs(10), "the node is registered", || {
        dns.nodes().contains(&(LOCALHOST.into(), node.port()))
    });
    // Adding a node on someone else's behalf is another door, open to loopback callers.
    assert_eq!(
        dns.post("/nodes/", &node_body_at("127.0.0.2", 6)).status,
        200
    );
}

#[test]
fn a_full_table_is_507_and_changes_nothing() {
    let dir = TempDir::new("full");
    let dns = dns(
        dir.path(),
        &["--max_nodes", "3", "-u", "3600", "--fail_limit", "1000"],
    );
    assert_eq!(dns.post("/", &node_body_at(LOCALHOST, 1)).status, 200);
    assert_eq!(dns.post("/nodes/", &node_body_at(LOCALHOST, 2)).status, 200);
    assert_eq!(dns.post("/", &node_body_at(LOCALHOST, 3)).status, 200);
    let file_before = fs::read(dns.nodes_file()).unwrap();
    for path in ["/", "/nodes/"] {
        let full = dns.post(path, &node_body_at(LOCALHOST, 4));
        assert_eq!(full.status, 507, "POST {path}: {}", full.body);
        assert!(full.error().contains("full"), "{}", full.body);
    }
    let three: Vec<(String, u16)> = (1..=3).map(|p| (LOCALHOST.into(), p)).collect();
    assert_eq!(dns.nodes(), three);
    assert_eq!(fs::read(dns.nodes_file()).unwrap(), file_before);
    assert_eq!(
        dns.post("/", &node_body_at(LOCALHOST, 2)).status,
        200,
        "a known node is no new node"
    );
    assert_eq!(
        dns.delete("/nodes/", &node_body_at(LOCALHOST, 1)).status,
        200
    );
    assert_eq!(
        dns.post("/nodes/", &node_body_at(LOCALHOST, 4)).status,
        200,
        "room again"
    );
}

/// A JSON array of `nodes`, padded with white space to exactly `size` bytes.
fn padded_list(nodes: &[SocketAddr], size: usize) -> String {
    let items: Vec<String> = nodes
        .iter()
        .map(|a| node_body_at(&a.ip().to_string(), a.port()))
        .collect();
    let list = format!("[{}", items.join(","));
    format!("{list}{}]", " ".repeat(size - list.len() - 1))
}

#[test]
fn peer_answers_are_bounded_in_size_and_in_nodes_learned() {
    const MIB: usize = 1024 * 1024;
    let dir = TempDir::new("peer-limits");
    // The nodes listed answer, so that a node learns them (it checks each first).
    let (x, w) = (
        FakePeer::new(LOCALHOST, "[]"),
        FakePeer::new("127.0.0.2", "[]"),
    );
    let (x, w_addr, _w) = (x.addr, w.addr, w);
    let over = FakePeer::new(LOCALHOST, &padded_list(&[x], 4 * MIB + 1024));
    let under = FakePeer::new(LOCALHOST, &padded_list(&[w_addr], 4 * MIB - 1024));
    let answering: Vec<FakePeer> = (0..20).map(|_| FakePeer::new("127.0.0.4", "[]")).collect();
    let many_nodes: Vec<SocketAddr> = answering.iter().map(|p| p.addr).collect();
    let many = FakePeer::new(LOCALHOST, &padded_list(&many_nodes, 4096));
    let peers = [&over, &under, &many].map(|p| p.node_json());
    fs::write(
        dir.join("nodes.json"),
        Value::from(peers.to_vec()).to_string(),
    )
    .unwrap();
    let dead_seed = refused_addr(LOCALHOST).to_string();
    let node = node(
        dir.path(),
        &["-u", "60", "--max_nodes", "5", "--dns", &dead_seed],
    );
    wait_until(Duration::from_secs(20), "the first round ends", || {
        node.stderr().contains("round:")
    });

    let known = node.nodes();
    let listed = |a: SocketAddr| known.contains(&(a.ip().to_string(), a.port()));
    assert!(!listed(x), "the list over 4 MiB was dropped: {known:?}");
    node.wait_log("list over 4 MiB dropped");
    assert!(
        listed(w_addr),
        "the list just under 4 MiB was read: {known:?}"
    );
    assert_eq!(
        known.len(),
        5,
        "--max_nodes caps what is learned: {known:?}"
    );
    assert_eq!(node.get("/").status, 200);
    assert!(
        node.rss_kib() < 64 * 1024,
        "{} KiB resident",
        node.rss_kib()
    );
}

#[test]
fn a_body_over_64_kib_is_413_without_being_read() {
    let dir = TempDir::new("413");
    let dns = dns(dir.path(), &[]);
    let rss_before = dns.rss_kib();
    // A declared 1 TB body is refused on the head alone: the body is never even sent.
    for expect in ["", "Expect: 100-continue\r\n"] {
        let mut stream = connect(dns.addr);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let head = format!(
            "POST /nodes/ HTTP/1.1\r\nHost: seed\r\nContent-Length: 1000000000000\r\n{expect}\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let resp = parse_response(&raw).unwrap();
        assert_eq!(resp.status, 413, "{expect:?}: {}", lossy(&raw));
        assert!(resp.error().contains("64 KiB"), "{}", resp.body);
        assert_eq!(resp.header("connection"), Some("close"));
    }
    // A chunked body that never ends is refused once 64 KiB of it have come: a chunk of
    // 64 KiB + 1 bytes, the start of another, and no end.
    let mut stream = connect(dns.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let size = 64 * 1024 + 1;
    let mut sent =
        format!("POST /nodes/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{size:x}\r\n")
            .into_bytes();
    sent.extend(std::iter::repeat_n(b' ', size));
    sent.extend(b"\r\n10\r\n{\"ip_address\": ");
    stream.write_all(&sent).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    assert_eq!(first_status(&raw), Some(413), "{}", lossy(&raw));

    assert!(dns.nodes().is_empty());
    assert_eq!(dns.get("/").status, 200);
    let grown = dns.rss_kib().saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "resident memory grew by {grown} KiB");
}

/// Runs `cases` random cases of `strategy` through `test`, shrinking a failure to a minimal
/// input; failures are not written to disk (the server under test is gone by then).
fn run_cases<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// A body: a node-shaped object with random parts (valid or not), random bytes, a valid node
/// with a few bytes changed, node-like JSON, or more than 64 KiB.
fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    let address = r"(127\.0\.0\.[0-9]{1,3}|[a-zA-Z][a-zA-Z0-9]{0,8}(\.[a-z][a-z0-9-]{0,8}){0,2}|::[0-9a-f]{1,4}|[0-9]{1,3}\.[0-9]{1,3}\.[0-9]\.[0-9]{1,4}|[0-9a-fA-F:]{2,16}|[a-zA-Z0-9.-]{1,20}|)";
    let port = prop_oneof![
        8 => (-5i64..70_000).prop_map(|p| p.to_string()),
        1 => prop::sample::select(vec!["5.0", "\"80\"", "null", "1e3", "[]"]).prop_map(String::from),
    ];
    let node_shaped = (
        address,
        port,
        any::<bool>(),
        prop::option::weighted(0.1, "[a-z_]{1,12}"),
    )
        .prop_map(|(address, port, swapped, extra)| {
            let extra = extra.map(|k| format!(", \"{k}\": 1")).unwrap_or_default();
            let text = if swapped {
                format!(r#"{{"port": {port}, "ip_address": "{address}"{extra}}}"#)
            } else {
                format!(r#"{{"ip_address": "{address}", "port": {port}{extra}}}"#)
            };
            text.into_bytes()
        });
    let valid = br#"{"ip_address": "127.0.0.1", "port": 55000}"#.to_vec();
    let edited = proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)
        .prop_map(move |edits| {
            let mut body = valid.clone();
            for (at, byte) in edits {
                let i = at.index(body.len());
                body[i] = byte;
            }
            body
        });
    let node_like = r#"\{( ?"(ip_address|port|x)": ?("[a-zA-Z0-9.:-]{0,12}"|-?[0-9]{1,6}(\.[05])?|null|\[\]),?){0,3}\}"#;
    prop_oneof![
        8 => node_shaped,
        2 => proptest::collection::vec(any::<u8>(), 0..200),
        2 => edited,
        1 => node_like.prop_map(String::into_bytes),
        1 => (65_537usize..70_000).prop_map(|n| vec![b'{'; n]),
    ]
}

#[test]
fn random_bodies_get_200_400_405_or_413_exactly_as_the_node_rules_say() {
    let dir = TempDir::new("random-bodies");
    // Hundreds of registrations from one source: not what the rate limit is tested for here.
    let mut args = NO_SWEEP.to_vec();
    args.extend(["--reg_burst", "100000"]);
    let dns = dns(dir.path(), &args);
    let own = Node::new(LOCALHOST, dns.port()).unwrap();
    assert_eq!(dns.post("/", &node_body_at(LOCALHOST, 1)).status, 200);
    let requests = (
        prop::sample::select(vec![
            "POST", "POST", "POST", "DELETE", "DELETE", "PUT", "PATCH",
        ]),
        prop::sample::select(vec!["/", "/nodes/", "/nodes"]),
        body_strategy(),
    );
    run_cases(300, requests, |(method, path, body)| {
        let changes = matches!(
            (method, path),
            ("POST", _) | ("DELETE", "/nodes/" | "/nodes")
        );
        let expected = if !changes {
            405
        } else if body.len() > 64 * 1024 {
            413
        } else {
            match Node::from_json(&body) {
                Ok(node) if node == own && method == "POST" => 400,
                Ok(_) => 200,
                Err(_) => 400,
            }
        };
        let resp = try_request_bytes(method, dns.addr, path, Some(&body), &[])
            .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
        prop_assert_eq!(resp.status, expected, "{} {}: {}", method, path, resp.body);
        if resp.status != 200 {
            prop_assert!(!resp.error().is_empty());
        }
        Ok(())
    });
    assert_eq!(dns.get("/").status, 200);
    // Registered names wait for the seed's check (its next sweep is an hour away) before it
    // vouches for them: the list holds the file's IP addresses.
    let on_disk: Vec<(String, u16)> = dns
        .nodes_on_disk()
        .into_iter()
        .filter(|(host, _)| host.parse::<std::net::IpAddr>().is_ok())
        .collect();
    assert_eq!(dns.nodes(), on_disk, "memory and file agree");
}

/// Requests that a server understands, to be damaged at random.
const VALID_REQUESTS: &[&str] = &[
    "GET / HTTP/1.1\r\nHost: seed\r\n\r\n",
    "HEAD /nodes/?limit=3 HTTP/1.0\r\n\r\n",
    "POST /nodes/ HTTP/1.1\r\nContent-Length: 38\r\n\r\n{\"ip_address\": \"127.0.0.1\", \"port\": 8}",
    "DELETE /nodes HTTP/1.1\r\nConnection: close\r\nContent-Length: 38\r\n\r\n{\"ip_address\": \"127.0.0.1\", \"port\": 8}",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n26\r\n{\"ip_address\": \"127.0.0.2\", \"port\": 9}\r\n0\r\n\r\n",
    "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 38\r\n\r\n{\"ip_address\": \"127.0.0.3\", \"port\": 9}",
    "GET /nodes/0/ HTTP/1.1\r\n\r\nGET /nodes/random HTTP/1.1\r\n\r\n",
];

/// Raw bytes for a connection: random, a valid request with a few bytes changed, inserted or
/// removed, or a request of random parts.
fn raw_strategy() -> impl Strategy<Value = Vec<u8>> {
    let edit = (any::<prop::sample::Index>(), any::<u8>(), 0..3u8);
    let damaged = (
        prop::sample::select(VALID_REQUESTS),
        proptest::collection::vec(edit, 1..5),
    )
        .prop_map(|(request, edits)| {
            let mut bytes = request.as_bytes().to_vec();
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => bytes.truncate(i.max(1)),
                }
            }
            bytes
        });
    let parts = (
        r"(GET|HEAD|POST|DELETE|PUT|[A-Z]{1,8}|G(E|\()T|)",
        r"(/|/nodes/?|/nodes/[0-9]{0,3}/?|/nodes/random/?|/x|\*|)(\?[a-z=0-9&]{0,10})?",
        r"HTTP/(1\.1|1\.0|2\.0|0\.9|1)|",
        proptest::collection::vec(
            r"(Content-Length: [0-9]{1,14}|Transfer-Encoding: (chunked|gzip)|Expect: (100-continue|x)|Connection: (close|keep-alive)|X-[a-z]{1,5}: [ -~]{0,20}|[ -~]{0,30})",
            0..5,
        ),
        r"[ -~]{0,60}",
    )
        .prop_map(|(method, target, version, headers, body)| {
            let mut text = format!("{method} {target} {version}\r\n");
            for header in headers {
                text.push_str(&header);
                text.push_str("\r\n");
            }
            text.push_str("\r\n");
            text.push_str(&body);
            text.into_bytes()
        });
    let long_line = (16_300usize..17_000)
        .prop_map(|n| format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(n)).into_bytes());
    let many_headers = (95usize..110)
        .prop_map(|n| format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(n)).into_bytes());
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 1..400),
        4 => damaged,
        4 => parts,
        1 => long_line,
        1 => many_headers,
    ]
}

/// Every status a server may answer to arbitrary bytes on a connection, and why:
/// - 200, 404, 405: the bytes happen to form a request (known path, unknown path, wrong method);
/// - 400: a malformed request line, header, chunked body or node, or the connection closed
///   in the middle of a request (the test closes its sending side after the bytes);
/// - 413: a declared or chunked body over 64 KiB;
/// - 417: an `Expect` other than `100-continue`; 431: a head over 16 KiB or 100 headers;
/// - 501: a `Transfer-Encoding` other than chunked; 505: an HTTP version other than 1.0 and 1.1.
///
/// Never 408 (nothing waits: the sending side is closed), nor 403, 500, 503 or 507.
const RAW_STATUSES: &[u16] = &[200, 400, 404, 405, 413, 417, 431, 501, 505];

#[test]
fn random_bytes_as_http_get_only_the_expected_statuses_and_the_server_stays_up() {
    let dir = TempDir::new("random-bytes");
    let mut dns = dns(dir.path(), &NO_SWEEP);
    assert_eq!(dns.post("/", &node_body_at(LOCALHOST, 1)).status, 200);
    let addr = dns.addr;
    run_cases(500, raw_strategy(), |bytes| {
        let raw = raw_exchange(addr, &bytes)
            .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
        let status = first_status(&raw);
        prop_assert!(
            status.is_some_and(|s| RAW_STATUSES.contains(&s)),
            "answered {:?}: {}",
            status,
            lossy(&raw)
        );
        Ok(())
    });
    assert!(dns.is_running());
    assert_eq!(dns.get("/").status, 200);
    assert_eq!(dns.nodes(), dns.nodes_on_disk(), "memory and file agree");
    assert!(!dns.stderr().contains("panicked"), "{}", dns.stderr());
}
