//! The HTTP API, persistence and command line of the real binaries, as a user drives them.

mod support;

use std::fs;
use std::time::Duration;

use support::*;

fn node_body(port: u16) -> String {
    json!({"ip_address": "127.0.0.1", "port": port}).to_string()
}

#[test]
fn register_and_list() {
    let dir = TempDir::new("register");
    let dns = dns(dir.path(), &[]);
    assert_eq!(dns.get("/").status, 200);
    assert!(dns.get("/").body.is_empty());

    let answer = dns.post("/", r#"{"ip_address": "0:0:0:0:0:0:0:1", "port": 55000}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({"ip_address": "::1", "port": 55000}));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    dns.post("/", &node_body(55001));

    let list = dns.get("/nodes/");
    assert_eq!(list.header("content-type"), Some("application/json"));
    assert_eq!(
        nodes_of(&list.json()),
        vec![("::1".into(), 55000), ("127.0.0.1".into(), 55001)]
    );
    assert_eq!(
        dns.get("/nodes").body,
        list.body,
        "with or without the trailing slash"
    );
    assert_eq!(
        dns.get("/nodes/1/").json(),
        json!({"ip_address": "127.0.0.1", "port": 55001})
    );
    let random = dns.get("/nodes/random/").json();
    assert!(list.json().as_array().unwrap().contains(&random));
    assert_eq!(
        dns.get("/nodes/?limit=1").json().as_array().unwrap().len(),
        1
    );
}

#[test]
fn add_duplicate_and_delete() {
    let dir = TempDir::new("add-delete");
    let dns = dns(dir.path(), &[]);
    let added = dns.post("/nodes/", &node_body(1));
    assert_eq!(nodes_of(&added.json()), vec![("127.0.0.1".into(), 1)]);
    let again = dns.post("/nodes/", &node_body(1));
    assert_eq!(again.status, 200);
    assert_eq!(
        again.body, added.body,
        "adding a known node changes nothing"
    );
    dns.post("/nodes/", &node_body(2));
    let deleted = dns.delete("/nodes/", &node_body(1));
    assert_eq!(nodes_of(&deleted.json()), vec![("127.0.0.1".into(), 2)]);
    let unknown = dns.delete("/nodes/", &node_body(9));
    assert_eq!(unknown.status, 200);
    assert_eq!(nodes_of(&unknown.json()), vec![("127.0.0.1".into(), 2)]);
    let on_disk: Value =
        serde_json::from_str(&fs::read_to_string(dns.nodes_file()).unwrap()).unwrap();
    assert_eq!(on_disk, json!([{"ip_address": "127.0.0.1", "port": 2}]));
}

#[test]
fn every_invalid_body_is_400_and_changes_nothing() {
    let dir = TempDir::new("invalid");
    let dns = dns(dir.path(), &[]);
    dns.post("/", &node_body(7));
    let before_file = fs::read(dns.nodes_file()).unwrap();
    let bodies = [
        "",
        "not json",
        "ip_address=127.0.0.1&port=5",
        "[]",
        "42",
        "{\"ip_address\": \"127.0.0.1\"}",
        "{\"port\": 5}",
        "{\"ip_address\": \"127.0.0.1\", \"port\": 5, \"extra\": true}",
        "{\"ip_address\": 127, \"port\": 5}",
        "{\"ip_address\": \"127.0.0.1\", \"port\": \"5\"}",
        "{\"ip_address\": \"127.0.0.1\", \"port\": 5.0}",
        "{\"ip_address\": \"127.0.0.1\", \"port\": 0}",
        "{\"ip_address\": \"127.0.0.1\", \"port\": 65536}",
        "{\"ip_address\": \"0.0.0.0\", \"port\": 5}",
        "{\"ip_address\": \"256.0.0.1\", \"port\": 5}", // loopback-only: refused
        "{\"ip_address\": \"bad_host\", \"port\": 5}",
        "{\"ip_address\": \"[::1]\", \"port\": 5}",
    ];
    for (method, path) in [("POST", "/"), ("POST", "/nodes/"), ("DELETE", "/nodes/")] {
        for body in bodies {
            let answer = request(method, dns.addr, path, Some(body), &[]);
            assert_eq!(
                answer.status, 400,
                "{method} {path} {body:?}: {}",
                answer.body
            );
            assert!(!answer.error().is_empty());
        }
    }
    assert_eq!(dns.nodes(), vec![("127.0.0.1".into(), 7)]);
    assert_eq!(
        fs::read(dns.nodes_file()).unwrap(),
        before_file,
        "file untouched"
    );
}

#[test]
fn unknown_paths_wrong_methods_and_large_bodies() {
    let dir = TempDir::new("errors");
    let dns = dns(dir.path(), &[]);
    let missing = dns.get("/no/such/path");
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("no such path"));
    assert_eq!(dns.get("/nodes/0/").status, 404);
    assert_eq!(dns.get("/nodes/random/").status, 404);

    let wrong = request("PUT", dns.addr, "/nodes/", Some(&node_body(1)), &[]);
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD, POST, DELETE"));
    assert!(wrong.error().contains("PUT"));
    let wrong = request("POST", dns.addr, "/nodes/random", Some(&node_body(1)), &[]);
    assert_eq!(
        (wrong.status, wrong.header("allow")),
        (405, Some("GET, HEAD"))
    );

    let big = format!(
        "{{\"ip_address\": \"127.0.0.1\", \"port\": 5, \"pad\": \"{}\"}}",
        "x".repeat(100_000)
    );
    let too_large = dns.post("/nodes/", &big);
    assert_eq!(too_large.status, 413);
    assert!(too_large.error().contains("64 KiB"));
    assert!(dns.nodes().is_empty());
    assert_eq!(dns.get("/").status, 200, "still serving");
}

#[test]
fn head_answers_like_get_without_a_body() {
    let dir = TempDir::new("head");
    let dns = dns(dir.path(), &[]);
    dns.post("/", &node_body(3));
    let head = request("HEAD", dns.addr, "/nodes/", None, &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let length: usize = head.header("content-length").unwrap().parse().unwrap();
    assert_eq!(length, dns.get("/nodes/").body.len());
}

#[test]
fn restart_keeps_the_list() {
    let dir = TempDir::new("restart");
    // The nodes are made-up addresses: keep the sweep at start from removing them.
    let mut first = dns(dir.path(), &NO_SWEEP);
    for port in [5, 6, 7] {
        assert_eq!(first.post("/", &node_body(port)).status, 200);
    }
    first.delete("/nodes/", &node_body(6));
    let (status, _) = first.signal("TERM", Duration::from_secs(5));
    assert!(status.success());
    let second = dns(dir.path(), &NO_SWEEP);
    assert_eq!(
        second.nodes(),
        vec![("127.0.0.1".into(), 5), ("127.0.0.1".into(), 7)]
    );
    second.wait_log("2 known nodes");
}

#[test]
fn a_file_from_the_original_design_loads_and_bad_entries_are_skipped() {
    let dir = TempDir::new("python-file");
    // As Python's json.dump writes it, with one bad entry and one duplicate.
    fs::write(
        dir.join("nodes.json"),
        r#"[{"ip_address": "127.0.0.1", "port": 55000}, {"ip_address": "x y", "port": 1}, {"ip_address": "127.0.0.1", "port": 55000}, {"ip_address": "127.0.0.2", "port": 55001}]"#,
    )
    .unwrap();
    // 127.0.0.1:55000 is refused when checked: keep the sweep at start from removing it.
    let dns = dns(dir.path(), &NO_SWEEP);
    assert_eq!(
        dns.nodes(),
        vec![("127.0.0.1".into(), 55000), ("127.0.0.2".into(), 55001)]
    );
    let log = dns.wait_log("skipping entry 2");
    assert!(
        log.contains("skipping entry 1") && log.contains("skipping entry 2"),
        "{log}"
    );
    assert!(log.contains("nodes.json"), "{log}");
}

#[test]
fn a_corrupt_file_refuses_to_start_and_is_left_untouched() {
    for content in [
        &b"{\"ip_address\": \"127.0.0.1\"}"[..],
        b"[{\"ip_address\": ",
        b"\x00\x01garbage",
    ] {
        let dir = TempDir::new("corrupt");
        fs::write(dir.join("nodes.json"), content).unwrap();
        let failed = try_spawn(env!("CARGO_BIN_EXE_dns"), dir.path(), &[])
            .err()
            .expect("must not start");
        assert!(!failed.status.success());
        assert!(failed.stderr.contains("nodes.json"), "{}", failed.stderr);
        assert!(
            failed.stderr.contains("not a JSON array"),
            "{}",
            failed.stderr
        );
        assert_eq!(fs::read(dir.join("nodes.json")).unwrap(), content);
    }
}

#[test]
fn a_second_process_on_the_same_directory_is_refused() {
    let dir = TempDir::new("lock");
    let first = node(dir.path(), &["--dns", "127.0.0.1:9"]);
    let failed = try_spawn(
        env!("CARGO_BIN_EXE_node"),
        dir.path(),
        &["--dns", "127.0.0.1:9"],
    )
    .err()
    .expect("second process must not start");
    assert!(!failed.status.success());
    assert!(
        failed.stderr.contains("in use by another process"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains(&format!("pid {}", first.pid())),
        "{}",
        failed.stderr
    );
    assert_eq!(first.get("/").status, 200, "the first one is unaffected");
}

#[test]
fn the_lock_is_released_when_the_holder_dies() {
    let dir = TempDir::new("lock-release");
    let mut first = dns(dir.path(), &[]);
    first.kill();
    let second = dns(dir.path(), &[]);
    assert_eq!(second.get("/").status, 200);
}

#[test]
fn state_directory_is_created_with_its_parents() {
    let dir = TempDir::new("mkdir");
    let nested = dir.join("a/b/c");
    let dns = spawn(env!("CARGO_BIN_EXE_dns"), &nested, &["-n", "peers.json"]);
    dns.post("/", &node_body(4));
    assert!(nested.join("peers.json").exists());
}

#[test]
fn help_version_and_bad_flags() {
    for bin in [env!("CARGO_BIN_EXE_dns"), env!("CARGO_BIN_EXE_node")] {
        let (status, out, _) = run_to_exit(bin, &["--help"]);
        assert!(status.success());
        for flag in [
            "--port",
            "--dir",
            "--upd_int",
            "--timeout",
            "--fail_limit",
            "--max_nodes",
            "--workers",
        ] {
            assert!(out.contains(flag), "{bin} --help lacks {flag}");
        }
        assert!(out.contains("[default: "));
        let (status, out, _) = run_to_exit(bin, &["-V"]);
        assert!(status.success());
        assert!(out.contains(env!("CARGO_PKG_VERSION")));

        let cases: [(&[&str], &str); 5] = [
            (&["--bogus"], "--bogus"),
            (&["--port", "http"], "--port"),
            (&["-p"], "--port"),
            (&["--workers", "0"], "--workers"),
            (&["-u", "never"], "--upd_int"),
        ];
        for (args, flag) in cases {
            let (status, out, err) = run_to_exit(bin, args);
            assert_eq!(status.code(), Some(2), "{args:?}");
            assert!(out.is_empty());
            assert_eq!(err.lines().count(), 1, "one line: {err}");
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }
    let (status, _, err) = run_to_exit(env!("CARGO_BIN_EXE_node"), &["-i", "0.0.0.0", "-p", "0"]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("--advertise"), "{err}");
}
