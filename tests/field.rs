//! Faults reported from the field (issue 8), each as the input that showed it, beside the
//! rest of its kind, against the real binaries: one endpoint has one identity, addresses
//! that can never be a peer are refused, reasons are in the user's terms, and one bad entry
//! (as Python's `json` writes it) never costs the good ones.

mod support;

use std::fs;
use std::time::Duration;

use support::*;

fn post_node(proc: &Proc, path: &str, ip: &str, port: u16) -> Resp {
    proc.post(path, &node_body_at(ip, port))
}

#[test]
fn a_process_refuses_itself_under_every_spelling_of_its_address() {
    let dir = TempDir::new("self-spellings");
    let dns = dns(dir.path(), &["-i", "127.0.0.22", "-u", "3600"]);
    let port = dns.port();
    for spelling in [
        "127.0.0.22",
        "::ffff:127.0.0.22",
        "0:0:0:0:0:ffff:7f00:16", // loopback-only: refused (it is 127.0.0.22)
        "::FFFF:127.0.0.22",
    ] {
        for path in ["/", "/nodes/"] {
            let answer = post_node(&dns, path, spelling, port);
            assert_eq!(answer.status, 400, "{path} {spelling}: {}", answer.body);
            assert!(answer.error().contains("own address"), "{}", answer.error());
        }
    }
    assert!(dns.nodes().is_empty());
    // Another port of the same address is someone else.
    assert_eq!(
        post_node(&dns, "/", "::ffff:127.0.0.22", port + 1).status,
        200
    );
    assert_eq!(dns.nodes(), vec![("127.0.0.22".to_string(), port + 1)]);
}

#[test]
fn a_process_on_all_interfaces_is_every_loopback_address_and_localhost() {
    let dir = TempDir::new("self-all");
    let dns = dns(
        dir.path(),
        &["-i", "0.0.0.0", "-u", "3600", "--allow_local", "yes"],
    );
    let port = dns.port();
    for spelling in [
        "127.0.0.1",
        "127.0.0.2",
        "::ffff:127.0.0.1",
        "localhost",
        "LocalHost",
    ] {
        let answer = post_node(&dns, "/", spelling, port);
        assert_eq!(answer.status, 400, "{spelling}: {}", answer.body);
    }
    assert!(dns.nodes().is_empty());
}

#[test]
fn a_node_that_learns_itself_under_another_spelling_never_lists_or_announces_to_itself() {
    let dir = TempDir::new("self-learned");
    let dead_seed = refused_addr("127.0.0.1").to_string();
    let port = refused_addr("127.0.0.1").port();
    // A peer listing the node as an IPv4-mapped IPv6 address, and a real node.
    let other = FakePeer::new("127.0.0.1", "[]");
    let peer = FakePeer::new(
        "127.0.0.1",
        &json!([
            {"ip_address": "::ffff:127.0.0.1", "port": port},
            {"ip_address": "127.0.0.1", "port": other.addr.port()},
        ])
        .to_string(),
    );
    let node_dir = dir.join("node");
    fs::create_dir_all(&node_dir).unwrap();
    fs::write(
        node_dir.join("nodes.json"),
        format!("[{}]", peer.node_json()),
    )
    .unwrap();
    let node = node(
        &node_dir,
        &[
            "-p",
            &port.to_string(),
            "-u",
            "0.3",
            "-k",
            "5",
            "--dns",
            &dead_seed,
        ],
    );
    wait_until(
        Duration::from_secs(10),
        "the node learns the real one",
        || {
            node.nodes()
                .contains(&("127.0.0.1".to_string(), other.addr.port()))
        },
    );
    wait_until(Duration::from_secs(10), "a few more rounds", || {
        node.stderr().matches("round:").count() >= 4
    });
    let listed = node.nodes();
    assert!(!listed.iter().any(|(_, p)| *p == port), "{listed:?}");
    assert!(
        !node.stderr().contains(&format!(":{port} failed check")),
        "it never checked itself: {}",
        node.stderr()
    );
}

#[test]
fn addresses_that_can_never_be_a_peer_are_400_with_a_reason() {
    let dir = TempDir::new("never-peer");
    let dns = dns(dir.path(), &["-u", "3600"]);
    for (ip, reason) in [
        ("224.0.0.1", "multicast"),       // loopback-only: refused
        ("239.255.255.250", "multicast"), // loopback-only: refused
        ("ff02::1", "multicast"),         // loopback-only: refused
        ("255.255.255.255", "broadcast"), // loopback-only: refused
        ("240.0.0.1", "reserved"),        // loopback-only: refused
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
    ] {
        for path in ["/", "/nodes/"] {
            let answer = post_node(&dns, path, ip, 5000);
            assert_eq!(answer.status, 400, "{path} {ip}: {}", answer.body);
            assert!(answer.error().contains(reason), "{ip}: {}", answer.error());
        }
    }
    assert!(dns.nodes().is_empty());
    assert!(!dns.nodes_file().exists(), "nothing was written");
}

#[test]
fn a_url_or_host_and_port_is_told_to_give_the_host_alone() {
    let dir = TempDir::new("user-terms");
    let dns = dns(dir.path(), &["-u", "3600"]);
    for text in [
        "http://127.0.0.7:5000",
        "http://127.0.0.7",
        "127.0.0.7:5000",
        "[::1]:5000",
        "localhost:5000",
        "https://seed.example.org/",
    ] {
        let answer = post_node(&dns, "/", text, 5000);
        assert_eq!(answer.status, 400, "{text}");
        let reason = answer.error();
        assert!(
            reason.contains("the host alone") && !reason.contains("IPv6"),
            "{text}: {reason}"
        );
    }
}

#[test]
fn a_nodes_file_with_nan_loads_its_good_entries() {
    let dir = TempDir::new("nan-file");
    // As the original (Python's json.dump) writes it after someone registered port NaN.
    fs::write(
        dir.join("nodes.json"),
        r#"[{"ip_address": "127.0.0.1", "port": 55000}, {"ip_address": "127.0.0.9", "port": NaN},
           {"ip_address": "127.0.0.2", "port": Infinity}, {"ip_address": "127.0.0.3", "port": 3}]"#,
    )
    .unwrap();
    let dns = dns(dir.path(), &NO_SWEEP);
    assert_eq!(
        dns.nodes(),
        vec![("127.0.0.1".into(), 55000), ("127.0.0.3".into(), 3)]
    );
    let log = dns.wait_log("skipping entry 2");
    assert!(
        log.contains("skipping entry 1") && log.contains("skipping entry 2"),
        "{log}"
    );
    // The same kind in a request body: a reason, not "not valid JSON".
    let answer = dns.post("/", r#"{"ip_address": "127.0.0.5", "port": NaN}"#);
    assert_eq!(answer.status, 400);
    assert!(answer.error().contains("NaN"), "{}", answer.error());
}

#[test]
fn a_peer_list_with_nan_keeps_its_good_entries() {
    let dir = TempDir::new("nan-peer");
    let good = FakePeer::new("127.0.0.1", "[]");
    let list = format!(
        r#"[{{"ip_address": "127.0.0.1", "port": {}}}, {{"ip_address": "127.0.0.8", "port": NaN}}]"#,
        good.addr.port()
    );
    let peer = FakePeer::new("127.0.0.1", &list);
    let peer_addr = peer.addr.to_string();
    let node = node(dir.path(), &["-u", "0.3", "-k", "5", "--dns", &peer_addr]);
    wait_until(Duration::from_secs(10), "the good entry is learned", || {
        node.nodes()
            .contains(&("127.0.0.1".to_string(), good.addr.port()))
    });
    node.wait_log("listed 1 invalid node(s)");
}
