//! The trust rules of SPEC §10 with real remote callers: each test runs its processes and
//! its clients in a network namespace of its own, where a client connects from an address
//! that is not loopback. loopback-only: own network namespace

mod support;

use support::*;

const TOKEN: &str = "an-admin-token-of-32-characters!";

fn node_at(ip: &str, port: u16) -> String {
    json!({"ip_address": ip, "port": port}).to_string()
}

#[test]
fn remote_changes_to_the_list_need_the_admin_token() {
    in_namespace("remote_changes_to_the_list_need_the_admin_token", || {
        let dir = TempDir::new("remote-token");
        let dns = dns(
            dir.path(),
            &["-i", "0.0.0.0", "--admin_token", TOKEN, "-u", "3600"],
        );
        let seed = std::net::SocketAddr::new("192.0.2.1".parse().unwrap(), dns.port());
        let remote = "198.51.100.7";
        // Bound to all interfaces, not loopback: loopback nodes are refused (SPEC §11).
        let body = node_at("203.0.113.50", 5005);
        let bearer = format!("Bearer {TOKEN}");
        for (method, auth) in [
            ("POST", None),
            ("POST", Some("Bearer wrong-token-wrong-token!!!")),
            ("DELETE", None),
            ("POST", Some(TOKEN)),
        ] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
            let answer = request_from(remote, method, seed, "/nodes/", Some(&body), &headers);
            assert_eq!(answer.status, 403, "{method} with {auth:?}");
            assert!(
                answer.error().contains("--admin_token"),
                "{}",
                answer.error()
            );
        }
        assert!(dns.nodes().is_empty(), "a refused change changes nothing");

        let auth = [("Authorization", bearer.as_str())];
        let added = request_from(remote, "POST", seed, "/nodes/", Some(&body), &auth);
        assert_eq!(added.status, 200, "{}", added.body);
        assert_eq!(dns.nodes(), vec![("203.0.113.50".to_string(), 5005)]);
        let removed = request_from(remote, "DELETE", seed, "/nodes/", Some(&body), &auth);
        assert_eq!((removed.status, removed.json()), (200, json!([])));

        // A loopback caller needs no token; registration is open to anyone.
        assert_eq!(dns.post("/nodes/", &body).status, 200);
        let register = node_at(remote, 5006);
        let answer = request_from(remote, "POST", seed, "/", Some(&register), &[]);
        assert_eq!(answer.status, 200, "{}", answer.body);
    });
}

#[test]
fn without_a_token_remote_callers_cannot_change_the_list() {
    in_namespace(
        "without_a_token_remote_callers_cannot_change_the_list",
        || {
            let dir = TempDir::new("remote-no-token");
            let dns = dns(dir.path(), &["-i", "192.0.2.1", "-u", "3600"]);
            let body = node_at("127.0.0.5", 5005);
            let auth = [("Authorization", "Bearer ")];
            let answer = request_from(
                "203.0.113.9",
                "POST",
                dns.addr,
                "/nodes/",
                Some(&body),
                &auth,
            );
            assert_eq!(answer.status, 403);
        },
    );
}

#[test]
fn verify_source_accepts_a_remote_caller_only_for_its_own_address() {
    in_namespace(
        "verify_source_accepts_a_remote_caller_only_for_its_own_address",
        || {
            let dir = TempDir::new("remote-verify");
            let dns = dns(
                dir.path(),
                &["-i", "192.0.2.1", "--verify_source", "-u", "3600"],
            );
            let remote = "198.51.100.7";
            let own = node_at(remote, 5007);
            let answer = request_from(remote, "POST", dns.addr, "/", Some(&own), &[]);
            assert_eq!(answer.status, 200, "{}", answer.body);

            let other = node_at("203.0.113.9", 5007);
            let answer = request_from(remote, "POST", dns.addr, "/", Some(&other), &[]);
            assert_eq!(answer.status, 403);
            assert!(
                answer
                    .error()
                    .contains("only your own address 198.51.100.7"),
                "{}",
                answer.error()
            );
            // The same rule for a registering GET /nodes/ (the original's later version).
            let answer = request_from(remote, "GET", dns.addr, "/nodes/", Some(&other), &[]);
            assert_eq!(answer.status, 403);
            assert_eq!(dns.nodes(), vec![(remote.to_string(), 5007)]);
        },
    );
}

#[test]
fn a_seed_on_a_public_address_refuses_local_nodes_and_names_that_lead_to_them() {
    in_namespace(
        "a_seed_on_a_public_address_refuses_local_nodes_and_names_that_lead_to_them",
        || {
            let dir = TempDir::new("remote-local");
            // A service on loopback that a public seed must never be made to probe, and a
            // name that resolves to it.
            let service = FakePeer::new("127.0.0.1", "[]");
            let port = service.addr.port();
            hosts_file(
                dir.path(),
                &[
                    ("127.0.0.1", "metadata.test"),
                    ("198.51.100.7", "honest.test"),
                ],
            );
            let honest = FakePeer::new("198.51.100.7", "[]");
            let seed = dns(&dir.join("seed"), &["-i", "192.0.2.1", "-u", "0.3"]);
            let remote = "203.0.113.9";
            for (ip, port) in [
                ("127.0.0.1", port),
                ("169.254.169.254", 80),
                ("fe80::1", 80),
                ("localhost", port),
            ] {
                let body = node_at(ip, port);
                let answer = request_from(remote, "POST", seed.addr, "/", Some(&body), &[]);
                assert_eq!(answer.status, 400, "{ip}: {}", answer.body);
                assert!(
                    answer.error().contains("--allow_local"),
                    "{}",
                    answer.error()
                );
            }
            // A name is resolved when it is probed: to loopback, it is never connected to
            // and is dropped; to a public address, it is checked and listed.
            for name in ["metadata.test", "honest.test"] {
                let at = if name == "honest.test" {
                    honest.addr.port()
                } else {
                    port
                };
                let body = node_at(name, at);
                let answer = request_from(remote, "POST", seed.addr, "/", Some(&body), &[]);
                assert_eq!(answer.status, 200, "{name}: {}", answer.body);
            }
            let honest_listed = ("honest.test".to_string(), honest.addr.port());
            wait_until(
                std::time::Duration::from_secs(10),
                "the names are checked",
                || {
                    let listed = seed.nodes();
                    listed.contains(&honest_listed)
                        && !seed
                            .nodes_on_disk()
                            .iter()
                            .any(|(host, _)| host == "metadata.test")
                },
            );
            assert_eq!(
                service.count(),
                0,
                "the loopback service was never connected to"
            );
            let metrics = seed.get("/metrics").body;
            assert!(
                metrics.contains("seedmesh_check_failures_total{cause=\"local_address\"} 1"),
                "{metrics}"
            );
        },
    );
}

#[test]
fn a_name_that_resolves_to_the_process_itself_is_dropped_at_its_first_check() {
    in_namespace(
        "a_name_that_resolves_to_the_process_itself_is_dropped_at_its_first_check",
        || {
            let dir = TempDir::new("remote-self-name");
            hosts_file(dir.path(), &[("192.0.2.1", "me.test")]);
            let seed = dns(&dir.join("seed"), &["-i", "192.0.2.1", "-u", "0.3"]);
            let body = node_at("me.test", seed.port());
            let answer = request_from("203.0.113.9", "POST", seed.addr, "/", Some(&body), &[]);
            // A name cannot be known to be this process without a lookup: accepted, and
            // not vouched for until checked.
            assert_eq!(answer.status, 200, "{}", answer.body);
            assert!(seed.nodes().is_empty(), "never listed");
            wait_until(
                std::time::Duration::from_secs(10),
                "its first check",
                || {
                    seed.get("/metrics")
                        .body
                        .contains("seedmesh_check_failures_total{cause=\"itself\"} 1")
                },
            );
            assert!(seed.nodes().is_empty());
            assert!(
                !seed
                    .nodes_on_disk()
                    .iter()
                    .any(|(host, _)| host == "me.test"),
                "dropped"
            );
        },
    );
}

#[test]
fn one_caller_registering_addresses_of_many_groups_owns_no_answers() {
    in_namespace(
        "one_caller_registering_addresses_of_many_groups_owns_no_answers",
        || {
            let dir = TempDir::new("remote-referrals");
            // Twelve honest nodes in twelve groups, each registering itself.
            let honest_ips: Vec<String> = (1..=12).map(|g| format!("10.{g}.0.1")).collect();
            add_addresses(&honest_ips);
            let seed = dns(&dir.join("seed"), &["-i", "192.0.2.1", "-u", "0.5"]);
            let honest: Vec<FakePeer> = honest_ips
                .iter()
                .map(|ip| FakePeer::new(ip, "[]"))
                .collect();
            for peer in &honest {
                let ip = peer.addr.ip().to_string();
                let body = node_at(&ip, peer.addr.port());
                let answer = request_from(&ip, "POST", seed.addr, "/", Some(&body), &[]);
                assert_eq!(answer.status, 200, "{}", answer.body);
            }
            // One caller registers an address in each of 99 other groups, as the attack did.
            let attacker = "203.0.113.9";
            let statuses: Vec<u16> = (100..199)
                .map(|g| {
                    let body = node_at(&format!("10.{g}.7.7"), 9000);
                    request_from(attacker, "POST", seed.addr, "/", Some(&body), &[]).status
                })
                .collect();
            let accepted = statuses.iter().filter(|s| **s == 200).count();
            assert_eq!(accepted, 8, "--reg_others: {statuses:?}");
            assert!(
                statuses.iter().all(|s| [200, 403].contains(s)),
                "{statuses:?}"
            );
            // None is listed, before its check or after (nothing answers there).
            let attackers = |listed: &[(String, u16)]| {
                listed.iter().filter(|(ip, _)| ip.ends_with(".7.7")).count()
            };
            assert_eq!(attackers(&seed.nodes()), 0);
            wait_until(std::time::Duration::from_secs(10), "a sweep", || {
                seed.stderr().matches("round:").count() >= 3
            });
            for _ in 0..50 {
                let listed = nodes_of(&seed.get("/nodes/?limit=10").json());
                assert_eq!(attackers(&listed), 0, "{listed:?}");
                assert_eq!(listed.len(), 10);
            }
        },
    );
}

#[test]
fn an_address_added_after_start_is_still_recognised_as_the_process_itself() {
    in_namespace(
        "an_address_added_after_start_is_still_recognised_as_the_process_itself",
        || {
            let dir = TempDir::new("remote-new-address");
            let seed = dns(&dir.join("seed"), &["-i", "0.0.0.0", "-u", "0.3"]);
            // An address the seed did not have when it listed its identities.
            add_addresses(&["192.0.2.77".to_string()]);
            let body = node_at("192.0.2.77", seed.port());
            let answer = request_from("203.0.113.9", "POST", seed.addr, "/", Some(&body), &[]);
            assert_eq!(answer.status, 200, "{}", answer.body);
            wait_until(
                std::time::Duration::from_secs(10),
                "its first check",
                || {
                    seed.get("/metrics")
                        .body
                        .contains("seedmesh_check_failures_total{cause=\"itself\"} 1")
                },
            );
            assert!(seed.nodes().is_empty(), "never listed");
            assert!(seed.nodes_on_disk().is_empty(), "dropped");
        },
    );
}

#[test]
fn an_app_whose_name_leads_back_to_the_node_is_refused_at_start() {
    in_namespace(
        "an_app_whose_name_leads_back_to_the_node_is_refused_at_start",
        || {
            let dir = TempDir::new("remote-app-alias");
            hosts_file(dir.path(), &[("192.0.2.1", "alias.test")]);
            let port = refused_addr("192.0.2.1").port().to_string();
            let failed = try_spawn(
                env!("CARGO_BIN_EXE_node"),
                &dir.join("n"),
                &[
                    "-i",
                    "192.0.2.1",
                    "-p",
                    &port,
                    "--app",
                    &format!("http://alias.test:{port}"),
                ],
            )
            .err()
            .expect("refused");
            assert_eq!(failed.status.code(), Some(2), "{failed:?}");
            assert!(
                failed.stderr.contains("is this node itself"),
                "{}",
                failed.stderr
            );
        },
    );
}
