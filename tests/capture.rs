//! Capture resistance (SPEC §11) tried as an attacker would, against the real binaries on
//! loopback, where `127.a.b.c` spans 256 address groups (`127.a/16`): one host filling a
//! seed's table, a lying peer, a caller registering too fast, local addresses, and two
//! networks side by side.

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use support::*;

/// A seed that never sweeps (its list holds addresses nobody listens on) and does not rate
/// limit (so one source can fill it): only eviction and diversity are at work.
const FILLABLE: [&str; 8] = [
    "-u",
    "3600",
    "--fail_limit",
    "1000000",
    "--reg_burst",
    "1000000",
    "--max_nodes",
    "50",
];

fn register(proc: &Proc, ip: &str, port: u16) -> Resp {
    proc.post("/", &node_body_at(ip, port))
}

/// The `/16` of an IPv4 address, as text: `127.66`.
fn group(ip: &str) -> String {
    ip.split('.').take(2).collect::<Vec<_>>().join(".")
}

#[test]
fn one_host_filling_the_table_cannot_keep_out_or_outnumber_other_groups() {
    let dir = TempDir::new("one-host");
    let seed = dns(dir.path(), &FILLABLE);
    // One IP registers ten times --max_nodes entries.
    let attacker = "127.66.0.1";
    let accepted = (1..=500)
        .filter(|port| register(&seed, attacker, *port).status == 200)
        .count();
    assert_eq!(
        accepted, 50,
        "the first 50 fill the table; the rest are 507"
    );
    // Every later newcomer from another group gets in.
    for g in 1..=15 {
        let answer = register(&seed, &format!("127.{g}.0.1"), 7000);
        assert_eq!(answer.status, 200, "group 127.{g}: {}", answer.body);
    }
    let known = seed.nodes();
    assert_eq!(known.len(), 50, "the table never grows past --max_nodes");
    // A ?limit=10 answer holds at most one of the attacker's entries.
    for _ in 0..30 {
        let answer = seed.get("/nodes/?limit=10").json();
        let listed = nodes_of(&answer);
        let theirs = listed.iter().filter(|(ip, _)| ip == attacker).count();
        assert!(theirs <= 1, "{theirs} of the attacker's in {listed:?}");
        let groups: HashSet<String> = listed.iter().map(|(ip, _)| group(ip)).collect();
        assert_eq!(groups.len(), 10, "{listed:?}");
    }
    // A newcomer from the largest group (the attacker's) is 507 and changes nothing.
    let before = (seed.nodes(), seed.nodes_on_disk());
    let refused = register(&seed, "127.66.0.2", 1);
    assert_eq!(refused.status, 507, "{}", refused.body);
    assert!(refused.error().contains("full"), "{}", refused.error());
    assert_eq!((seed.nodes(), seed.nodes_on_disk()), before);
    let status = seed.get("/status").json();
    assert_eq!(status["table"]["groups"], 16);
    assert_eq!(status["defences"]["evicted"], 15);
    assert!(status["defences"]["full"].as_u64().unwrap() >= 450);
    let metrics = seed.get("/metrics").body;
    assert!(
        metrics.contains("\nseedmesh_evictions_total 15\n"),
        "{metrics}"
    );
    // 450 refusals and 15 evictions, one line each per interval (an hour here).
    let log = seed.wait_log("a registration from its largest address group");
    assert_eq!(
        log.matches("a registration from its largest address group")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("an entry of its largest address group was evicted")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn with_thirty_groups_known_every_answer_of_ten_holds_ten_groups() {
    let dir = TempDir::new("thirty-groups");
    let seed = dns(dir.path(), &FILLABLE[..6]);
    for g in 1..=30u16 {
        // Uneven groups: group g holds g entries.
        for port in 1..=g {
            assert_eq!(register(&seed, &format!("127.{g}.0.1"), port).status, 200);
        }
    }
    for _ in 0..50 {
        let listed = nodes_of(&seed.get("/nodes/?limit=10").json());
        let groups: HashSet<String> = listed.iter().map(|(ip, _)| group(ip)).collect();
        assert_eq!((listed.len(), groups.len()), (10, 10), "{listed:?}");
    }
}

#[test]
fn a_lying_peers_fabrications_are_never_relayed_and_a_real_peer_among_them_is() {
    let dir = TempDir::new("lying-peer");
    let dead_seed = refused_addr("127.0.0.1").to_string();
    let real = node(&dir.join("real"), &["-u", "60", "--dns", &dead_seed]);
    // 1,000 addresses nobody listens on, across one group, with the real node among them.
    let mut listed: Vec<Value> = (1..=1000u16)
        .map(|port| json!({"ip_address": "127.99.0.1", "port": 20000 + port}))
        .collect();
    listed.insert(700, real.node_json());
    let liar = FakePeer::new("127.0.0.1", &Value::Array(listed).to_string());
    let liar_addr = liar.addr.to_string();
    let me = node(
        &dir.join("me"),
        &["-u", "0.5", "-k", "3", "--dns", &liar_addr],
    );
    let took = wait_until(
        Duration::from_secs(10),
        "the real node is learned and listed",
        || {
            me.nodes()
                .contains(&(real.addr.ip().to_string(), real.port()))
        },
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Several more rounds: no fabrication is ever listed.
    wait_until(Duration::from_secs(10), "a few more rounds", || {
        me.stderr().matches("round:").count() >= 6
    });
    let fabricated = me
        .nodes()
        .iter()
        .filter(|(ip, _)| ip == "127.99.0.1")
        .count();
    assert_eq!(fabricated, 0, "{:?}", me.nodes());
    let on_disk = me.nodes_on_disk();
    assert!(
        on_disk.iter().all(|(ip, _)| ip != "127.99.0.1"),
        "not even kept unverified: {on_disk:?}"
    );
}

#[test]
fn one_source_registering_too_fast_gets_429_and_another_source_does_not() {
    let dir = TempDir::new("rate");
    // One new node per 10 s after the burst of 100: however slow this machine is today, the
    // 150 registrations come faster than that.
    let mut args = FILLABLE[..4].to_vec();
    args.extend(["--reg_rate", "0.1"]);
    let seed = dns(dir.path(), &args);
    let answers: Vec<Resp> = (1..=150)
        .map(|port| register(&seed, "127.0.0.9", port))
        .collect();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let limited: Vec<&Resp> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(ok + limited.len(), 150);
    assert!((100..=102).contains(&ok), "the burst is 100: {ok}");
    for answer in &limited {
        let wait: u64 = answer.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=10).contains(&wait), "{}", answer.body);
        assert!(answer.error().contains("--reg_rate"), "{}", answer.error());
    }
    assert_eq!(seed.nodes().len(), ok, "each 429 added nothing");
    // Another source is unaffected; a known node re-announces freely.
    let other = request_from(
        "127.0.0.2",
        "POST",
        seed.addr,
        "/",
        Some(&node_body_at("127.0.0.8", 1)),
        &[],
    );
    assert_eq!(other.status, 200, "{}", other.body);
    assert_eq!(register(&seed, "127.0.0.9", 1).status, 200);
    let metrics = seed.get("/metrics").body;
    let line = format!("\nseedmesh_rate_limited_total {}\n", limited.len());
    assert!(metrics.contains(&line), "{metrics}");
    // The operator's warning names who it was.
    seed.wait_log("faster than --reg_rate: refused with 429 (this time from 127.");
}

#[test]
fn local_addresses_are_refused_and_never_connected_to_with_allow_local_no() {
    let dir = TempDir::new("allow-local-no");
    // Something listening on loopback, that no check may reach.
    let service = FakePeer::new("127.0.0.1", "[]");
    let seed = dns(dir.path(), &["-u", "0.3", "--allow_local", "no"]);
    for (ip, port) in [
        ("127.0.0.1", service.addr.port()),
        ("127.0.0.53", 53),
        ("::1", 6379),
        ("169.254.169.254", 80), // loopback-only: refused
        ("localhost", service.addr.port()),
    ] {
        for (method, path) in [("POST", "/"), ("POST", "/nodes/")] {
            let answer = request(method, seed.addr, path, Some(&node_body_at(ip, port)), &[]);
            assert_eq!(answer.status, 400, "{method} {path} {ip}: {}", answer.body);
            assert!(
                answer.error().contains("--allow_local"),
                "{}",
                answer.error()
            );
        }
    }
    wait_until(Duration::from_secs(5), "a few sweeps", || {
        seed.stderr().matches("round:").count() >= 3
    });
    assert!(seed.nodes().is_empty());
    assert!(!seed.nodes_file().exists(), "nothing was ever written");
    assert_eq!(service.count(), 0, "no connection to the local service");
    let refused = seed.get("/status").json()["defences"]["refused_local"].clone();
    assert_eq!(refused, 10);
}

#[test]
fn public_only_refuses_private_and_shared_ranges_too() {
    let dir = TempDir::new("public-only");
    let seed = dns(dir.path(), &["-u", "3600", "--public_only"]);
    for ip in [
        "10.1.2.3",    // loopback-only: refused
        "172.16.0.1",  // loopback-only: refused
        "192.168.1.1", // loopback-only: refused
        "100.64.0.1",  // loopback-only: refused
        "fd00::1",     // loopback-only: refused
    ] {
        let answer = register(&seed, ip, 80);
        assert_eq!(answer.status, 400, "{ip}: {}", answer.body);
        assert!(
            answer.error().contains("--public_only"),
            "{}",
            answer.error()
        );
    }
    assert!(seed.nodes().is_empty());
}

#[test]
fn processes_of_two_networks_never_list_each_other_and_curl_still_works() {
    let dir = TempDir::new("networks");
    let seed = dns(&dir.join("seed"), &["-u", "0.3", "--network", "alpha"]);
    let seed_addr = seed.addr.to_string();
    let member = node(
        &dir.join("member"),
        &["-u", "0.3", "--network", "alpha", "--dns", &seed_addr],
    );
    let stranger = node(
        &dir.join("stranger"),
        &["-u", "0.3", "--network", "beta", "--dns", &seed_addr],
    );
    wait_until(Duration::from_secs(10), "the member registers", || {
        seed.nodes()
            .contains(&(member.addr.ip().to_string(), member.port()))
    });
    wait_until(Duration::from_secs(10), "a few rounds", || {
        stranger.stderr().matches("round:").count() >= 3
            && seed.stderr().matches("round:").count() >= 3
    });
    let listed: Vec<SocketAddr> = seed
        .nodes()
        .iter()
        .map(|(ip, port)| SocketAddr::new(ip.parse().unwrap(), *port))
        .collect();
    assert!(!listed.contains(&stranger.addr), "{listed:?}");
    assert!(stranger.nodes().is_empty(), "{:?}", stranger.nodes());
    stranger.wait_log("network \"alpha\"");
    let answer = seed.get("/");
    assert_eq!(answer.header("seedmesh-network"), Some("alpha"));
    // A request without the header (curl, the original) is accepted.
    let curl = register(&seed, "127.0.0.77", 7);
    assert_eq!(curl.status, 200, "{}", curl.body);
}
