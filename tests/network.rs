//! Membership over a real network of processes on loopback: failure detection, convergence,
//! exchange, seeds, and no busy loop.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use support::*;

fn addr_json(addr: std::net::SocketAddr) -> String {
    json!({"ip_address": addr.ip().to_string(), "port": addr.port()}).to_string()
}

fn lists(proc: &Proc, addr: std::net::SocketAddr) -> bool {
    proc.nodes().contains(&(addr.ip().to_string(), addr.port()))
}

#[test]
fn dns_removes_a_killed_node_within_a_round_plus_the_timeout() {
    let dir = TempDir::new("dns-kill");
    let dns = dns(&dir.join("dns"), &["-u", "1", "--timeout", "1"]);
    let seed = format!("127.0.0.1:{}", dns.port());
    let mut node = node(&dir.join("node"), &["-u", "60", "--dns", &seed]);
    wait_until(Duration::from_secs(5), "the node registers", || {
        lists(&dns, node.addr)
    });

    node.kill();
    let took = wait_until(
        Duration::from_secs(10),
        "the dns drops the killed node",
        || !lists(&dns, node.addr),
    );
    // fail_limit (1) × upd_int (1 s, +10% jitter) + timeout (1 s), with room for a busy machine.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[test]
fn fail_limit_counts_consecutive_failures() {
    let dir = TempDir::new("fail-limit");
    let dns = dns(
        &dir.join("dns"),
        &["-u", "0.5", "--timeout", "1", "--fail_limit", "3"],
    );
    let gone = refused_addr("127.0.0.1");
    dns.post("/nodes/", &addr_json(gone));
    wait_until(Duration::from_secs(10), "a second failed check", || {
        dns.stderr()
            .contains(&format!("{gone} failed check 2 of 3"))
    });
    assert!(lists(&dns, gone), "still listed after two failures");
    wait_until(Duration::from_secs(10), "removal on the third", || {
        !lists(&dns, gone)
    });
    assert!(
        dns.stderr()
            .contains(&format!("removing {gone}: 3 failed check(s) in a row"))
    );
}

#[test]
fn black_holed_peers_do_not_delay_the_removal_of_a_refused_one() {
    let dir = TempDir::new("black-hole");
    let holes: Vec<BlackHole> = (0..3).map(|_| BlackHole::new("127.0.0.1")).collect();
    let refused = refused_addr("127.0.0.1");
    let dns = dns(dir.path(), &["-u", "0.3", "--timeout", "6"]);
    for hole in &holes {
        dns.post("/nodes/", &addr_json(hole.addr));
    }
    dns.post("/nodes/", &addr_json(refused));
    let started = Instant::now();

    wait_until(
        Duration::from_secs(5),
        "the refused node is removed",
        || !lists(&dns, refused),
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "removal waited on the black holes: {took:?}"
    );
    for hole in &holes {
        assert!(
            lists(&dns, hole.addr),
            "black holes are only removed after the timeout"
        );
    }
    wait_until(Duration::from_secs(20), "the black holes time out", || {
        dns.nodes().is_empty()
    });
}

#[test]
fn four_nodes_and_a_dns_converge_until_each_knows_the_others() {
    let dir = TempDir::new("converge");
    let dns = dns(&dir.join("dns"), &["-u", "1"]);
    let seed = format!("127.0.0.1:{}", dns.port());
    let nodes: Vec<Proc> = (2..=5)
        .map(|i| {
            let ip = format!("127.0.0.{i}");
            node(
                &dir.join(&format!("n{i}")),
                &["-i", &ip, "-u", "1", "--dns", &seed],
            )
        })
        .collect();
    wait_until(
        Duration::from_secs(15),
        "every node knows the three others",
        || {
            nodes.iter().all(|n| {
                let known = n.nodes();
                known.len() == 3
                    && nodes.iter().all(|m| {
                        (m.addr == n.addr) != known.contains(&(m.addr.ip().to_string(), m.port()))
                    })
            })
        },
    );
    assert_eq!(dns.nodes().len(), 4);
    for n in &nodes {
        let on_disk: Value =
            serde_json::from_str(&fs::read_to_string(n.nodes_file()).unwrap()).unwrap();
        assert_eq!(nodes_of(&on_disk).len(), 3, "the file follows the list");
    }
}

#[test]
fn a_node_learns_peers_of_peers_through_exchange() {
    let dir = TempDir::new("exchange");
    let dead_seed = refused_addr("127.0.0.1").to_string();
    let c = node(
        &dir.join("c"),
        &["-i", "127.0.0.3", "-u", "60", "--dns", &dead_seed],
    );
    let b = node(
        &dir.join("b"),
        &["-i", "127.0.0.2", "-u", "60", "--dns", &dead_seed],
    );
    assert_eq!(b.post("/nodes/", &addr_json(c.addr)).status, 200);
    // A starts knowing only B, from its file; its seed is dead.
    let a_dir = dir.join("a");
    fs::create_dir_all(&a_dir).unwrap();
    fs::write(a_dir.join("nodes.json"), format!("[{}]", addr_json(b.addr))).unwrap();
    let a = node(&a_dir, &["-u", "60", "--dns", &dead_seed]);
    wait_until(Duration::from_secs(10), "A learns C from B", || {
        lists(&a, c.addr)
    });
    a.wait_log(&format!("seed {dead_seed}"));
    assert!(lists(&b, a.addr), "A announced itself to B");
}

#[test]
fn a_node_never_lists_itself() {
    let dir = TempDir::new("self");
    let dead_seed = refused_addr("127.0.0.1");
    let answers = FakePeer::new("127.0.0.1", "[]");
    let other = answers.addr;
    // A peer whose list holds the asking node itself and one more.
    let a_dir = dir.join("a");
    let port = refused_addr("127.0.0.1").port();
    let peer = FakePeer::new(
        "127.0.0.1",
        &format!(
            "[{}, {}]",
            json!({"ip_address": "127.0.0.1", "port": port}),
            addr_json(other)
        ),
    );
    fs::create_dir_all(&a_dir).unwrap();
    fs::write(a_dir.join("nodes.json"), format!("[{}]", peer.node_json())).unwrap();
    let a = node(
        &a_dir,
        &[
            "-p",
            &port.to_string(),
            "-u",
            "60",
            "--dns",
            &dead_seed.to_string(),
        ],
    );
    wait_until(Duration::from_secs(10), "A merges the peer's list", || {
        lists(&a, other)
    });
    assert!(!lists(&a, a.addr));
    let own = a.post("/", &addr_json(a.addr));
    assert_eq!(own.status, 400);
    assert!(own.error().contains("own address"));
    assert!(!lists(&a, a.addr));
}

#[test]
fn a_node_that_knows_enough_sends_one_request_per_peer_per_interval() {
    let dir = TempDir::new("no-busy-loop");
    let peer = FakePeer::new("127.0.0.1", "[]");
    let seed = FakePeer::new("127.0.0.1", "[]");
    let a_dir = dir.join("a");
    fs::create_dir_all(&a_dir).unwrap();
    fs::write(a_dir.join("nodes.json"), format!("[{}]", peer.node_json())).unwrap();
    let seed_arg = seed.addr.to_string();
    let a = node(&a_dir, &["-u", "0.5", "-k", "1", "--dns", &seed_arg]);
    let cpu_before = a.cpu_time();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let elapsed = started.elapsed().as_secs_f64();
    // One cycle at start, then one per 0.5 s (±10%): at most about elapsed / 0.45 + 2.
    let most = (elapsed / 0.45) as usize + 2;
    let to_peer = peer.requests.lock().unwrap().clone();
    assert!(
        to_peer.len() <= most,
        "{} requests to the peer in {elapsed:.1} s",
        to_peer.len()
    );
    assert!(to_peer.len() >= 3, "cycles keep running: {to_peer:?}");
    assert!(
        to_peer.iter().all(|r| r.starts_with("POST / ")),
        "only announcements: {to_peer:?}"
    );
    let to_seed = seed.requests.lock().unwrap().clone();
    // Registrations, and at most one feeler (once in 20 cycles, src/feeler.rs).
    let feelers = to_seed
        .iter()
        .filter(|r| r.starts_with("GET /nodes/?limit=1 "))
        .count();
    assert!(
        feelers <= 1
            && to_seed
                .iter()
                .all(|r| r.starts_with("POST / ") || r.starts_with("GET /nodes/?limit=1 ")),
        "registration only, and at most one feeler: {to_seed:?}"
    );
    assert!(to_seed.len() <= most);
    let cpu = a.cpu_time() - cpu_before;
    assert!(
        cpu < Duration::from_millis(500),
        "an idle node used {cpu:?} of CPU in {elapsed:.1} s"
    );
}

#[test]
fn two_seeds_both_receive_the_registration() {
    let dir = TempDir::new("two-seeds");
    let one = dns(&dir.join("one"), &[]);
    let two = dns(&dir.join("two"), &[]);
    let a = node(
        &dir.join("a"),
        &[
            "-u",
            "60",
            "--dns",
            &format!("127.0.0.1:{}", one.port()),
            "--dns",
            &format!("127.0.0.1:{}", two.port()),
        ],
    );
    wait_until(Duration::from_secs(10), "both seeds list the node", || {
        lists(&one, a.addr) && lists(&two, a.addr)
    });
}

#[test]
fn a_dead_seed_never_stops_a_node() {
    let dir = TempDir::new("dead-seed");
    let hole = BlackHole::new("127.0.0.1");
    let a = node(
        dir.path(),
        &[
            "-u",
            "0.3",
            "--timeout",
            "0.5",
            "--dns",
            &hole.addr.to_string(),
        ],
    );
    wait_until(Duration::from_secs(10), "two rounds are logged", || {
        a.stderr().matches("round:").count() >= 2
    });
    a.wait_log(&format!("seed {}", hole.addr));
    assert_eq!(a.get("/").status, 200);
}

/// A seed of the original design's later version: it registers a node sent as the JSON body
/// of `GET /nodes/` and answers the list, and answers 415 to a `GET /nodes/` without one.
struct LaterSeed {
    addr: std::net::SocketAddr,
    registered: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl LaterSeed {
    fn new(listed: Vec<Value>) -> LaterSeed {
        let registered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&registered);
        let peer = FakePeer::answering(
            "127.0.0.1",
            Box::new(move |line, body| {
                let node = serde_json::from_slice::<Value>(body).ok();
                match (line.starts_with("GET /nodes"), node) {
                    (true, Some(node)) => {
                        seen.lock().unwrap().push(node);
                        ("200 OK".into(), Value::Array(listed.clone()).to_string())
                    }
                    (true, None) => (
                        "415 UNSUPPORTED MEDIA TYPE".into(),
                        json!({"error": "send your node as JSON"}).to_string(),
                    ),
                    (false, _) => ("405 METHOD NOT ALLOWED".into(), String::new()),
                }
            }),
        );
        LaterSeed {
            addr: peer.addr,
            registered,
        }
    }
}

#[test]
fn a_node_registers_with_and_learns_from_a_seed_of_the_later_version() {
    let dir = TempDir::new("later-seed");
    let refused = refused_addr("127.0.0.1").to_string();
    let other = node(&dir.join("other"), &["-u", "60", "--dns", &refused]);
    let seed = LaterSeed::new(vec![other.node_json()]);
    let seed_addr = seed.addr.to_string();
    let me = node(
        &dir.join("me"),
        &["-u", "0.3", "-k", "5", "--dns", &seed_addr],
    );
    wait_until(
        Duration::from_secs(10),
        "the node learns the seed's list",
        || lists(&me, other.addr),
    );
    assert!(
        seed.registered.lock().unwrap().contains(&me.node_json()),
        "the node sent itself as the body of GET /nodes/"
    );
}

#[test]
fn a_get_of_the_list_with_a_node_body_registers_it() {
    let dir = TempDir::new("get-registers");
    let dns = dns(dir.path(), NO_SWEEP.as_slice());
    let node = json!({"ip_address": "127.0.0.7", "port": 5000});
    let answer = request("GET", dns.addr, "/nodes/", Some(&node.to_string()), &[]);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!([node]), "registered, then listed");
    for body in ["", "{}", "  "] {
        let answer = request("GET", dns.addr, "/nodes/", Some(body), &[]);
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json(), json!([node]), "{body:?} registers nothing");
    }
    let bad = request(
        "GET",
        dns.addr,
        "/nodes/",
        Some(r#"{"ip_address": "127.0.0.7"}"#),
        &[],
    );
    assert_eq!(bad.status, 400, "the same rules as POST /");
    assert!(bad.error().contains("no \"port\""), "{}", bad.error());
}
