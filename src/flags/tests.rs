//! The flag table: every flag parses, defaults come from the table, and the messages for a
//! repeated, unknown, other-binary or bad flag say so.

use std::path::PathBuf;
use std::time::Duration;

use super::draft::TOKEN_MIN;
use super::*;
use crate::nodes::Node;

const TOKEN: &str = "0123456789abcdef-token";

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn run_env(kind: Kind, list: &[&str], env: &Env) -> Result<Settings, Error> {
    match parse(kind, args(list), env)? {
        Command::Run(settings) => Ok(*settings),
        Command::Print(text) => panic!("printed {text}"),
    }
}

fn run(kind: Kind, list: &[&str]) -> Result<Settings, Error> {
    run_env(kind, list, &Env::default())
}

fn usage(kind: Kind, list: &[&str]) -> String {
    match run(kind, list) {
        Err(Error::Usage(message)) => message,
        other => panic!("{list:?} gave {other:?}"),
    }
}

/// A valid value for every flag that takes one; the tests below check that this covers the
/// whole table.
fn sample(long: &str) -> Option<&'static str> {
    Some(match long {
        "--ip" => "127.0.0.5",
        "--port" => "55001",
        "--dir" => "some/dir",
        "--nodes" => "list.json",
        "--upd_int" => "0.1",
        "--kn_limit" => "3",
        "--dns_ip" => "127.0.0.9",
        "--dns_port" => "9",
        "--dns" => "[::1]:7",
        "--advertise" => "seed.example.org",
        "--timeout" => "0.5",
        "--fail_limit" | "--reg_burst" | "--reg_others" => "2",
        "--max_nodes" | "--list_limit" | "--check_threads" | "--workers" | "--max_conns"
        | "--max_conns_per_ip" | "--app_workers" => "7",
        "--allow_local" => "yes",
        "--reg_rate" => "0.5",
        "--network" => "test-net_1.0",
        "--app" => "http://localhost:8080",
        "--app_health" => "/health?deep=1",
        "--app_body_limit" | "--app_answer_limit" => "64KiB",
        "--app_body_budget" => "128MiB",
        "--app_timeout" => "2.5",
        "--seed_zone" | "--seed_ns" | "--seed_domain" => "Seed.Example.org.",
        "--seed_listen" => "[::1]:5353",
        "--seed_port" => "8333",
        "--seed_rrl" => "20",
        "--resolver" => "127.0.0.53:53",
        "--admin_token" => TOKEN,
        "--admin_token_file" => return None, // needs a file: see its own test
        "--log" => "debug",
        _ => return None,
    })
}

/// Flags that need another flag to be accepted.
fn companions(long: &str) -> &'static [&'static str] {
    match long {
        "--app_health" | "--app_body_limit" | "--app_body_budget" | "--app_answer_limit"
        | "--app_timeout" | "--app_workers" => &["--app", "http://127.0.0.1:1"],
        "--seed_zone" => &["--seed_listen", "127.0.0.1:0"],
        "--seed_listen" => &["--seed_zone", "seed.test"],
        "--seed_port" | "--seed_ns" | "--seed_rrl" => {
            &["--seed_zone", "seed.test", "--seed_listen", "127.0.0.1:0"]
        }
        "--resolver" => &["--seed_domain", "seed.test"],
        _ => &[],
    }
}

/// `--help` with each flag's continuation lines joined to its first.
fn one_line_per_flag(help: &str) -> String {
    help.replace(&format!("\n{:33}", ""), " ")
}

#[test]
fn help_lines_fit_100_columns() {
    for kind in [Kind::Dns, Kind::Node] {
        for line in help(kind).lines() {
            assert!(line.chars().count() <= 100, "{line}");
        }
    }
}

#[test]
fn every_flag_of_each_binary_parses_and_changes_its_settings() {
    for kind in [Kind::Dns, Kind::Node] {
        let defaults = serde_json::to_value(run(kind, &[]).unwrap()).unwrap();
        for flag in FLAGS.iter().filter(|f| f.applies(kind)) {
            if ["--help", "--version", "--admin_token_file"].contains(&flag.long) {
                continue;
            }
            let mut list: Vec<&str> = companions(flag.long).to_vec();
            list.push(flag.long);
            if let Takes::Value(..) = flag.takes {
                let value =
                    sample(flag.long).unwrap_or_else(|| panic!("no sample for {}", flag.long));
                list.push(value);
            }
            let with_flag = run(kind, &list).unwrap_or_else(|e| panic!("{list:?}: {e}"));
            let mut without: Vec<&str> = companions(flag.long).to_vec();
            if without.is_empty() {
                without.push("--workers=4");
            }
            // Companions that only go together (--seed_zone, --seed_listen) are compared
            // with the defaults.
            let base = run(kind, &without)
                .map_or_else(|_| defaults.clone(), |s| serde_json::to_value(s).unwrap());
            let changed = serde_json::to_value(&with_flag).unwrap();
            if flag.long == "--log" || flag.long == "--quiet" || flag.long == "--verbose" {
                assert_ne!(changed["log_level"], defaults["log_level"], "{list:?}");
            } else {
                assert_ne!(changed, base, "{list:?} changed nothing");
            }
            if let Some(short) = flag.short {
                let at = list.iter().position(|a| *a == flag.long).unwrap();
                list[at] = short;
                let by_short = serde_json::to_value(run(kind, &list).unwrap()).unwrap();
                assert_eq!(by_short, changed, "{short} is {}", flag.long);
            }
        }
    }
}

#[test]
fn defaults_are_the_tables_parsed_and_printed_by_help() {
    for kind in [Kind::Dns, Kind::Node] {
        let implicit = serde_json::to_value(run(kind, &[]).unwrap()).unwrap();
        let mut explicit = Vec::new();
        let text = one_line_per_flag(&help(kind));
        for flag in FLAGS.iter().filter(|f| f.applies(kind)) {
            match flag.usage(kind) {
                Use::Default(value) => {
                    let line = text
                        .lines()
                        .find(|l| l.contains(&format!("{} ", flag.long)));
                    let line = line.unwrap_or_else(|| panic!("{} not in help", flag.long));
                    assert!(line.ends_with(&format!("[default: {value}]")), "{line}");
                    if companions(flag.long).is_empty() {
                        explicit.push(format!("{}={value}", flag.long));
                    }
                }
                Use::Unset(text_default) if !text_default.is_empty() => {
                    assert!(
                        text.contains(&format!("[default: {text_default}]")),
                        "{}",
                        flag.long
                    );
                }
                _ => assert!(text.contains(flag.long), "{} not in help", flag.long),
            }
        }
        let explicit: Vec<&str> = explicit.iter().map(String::as_str).collect();
        let parsed = run(kind, &explicit).unwrap_or_else(|e| panic!("{explicit:?}: {e}"));
        // --log=info counts as given, like the default it is.
        assert_eq!(serde_json::to_value(parsed).unwrap(), implicit, "{kind:?}");
    }
}

#[test]
fn defaults_follow_the_contract() {
    let dns = run(Kind::Dns, &[]).unwrap();
    assert_eq!((dns.ip.as_str(), dns.port), ("127.0.0.1", Some(42020)));
    assert_eq!(dns.dir, PathBuf::from("./.dns_server"));
    assert_eq!(dns.max_nodes, 10000);
    assert_eq!(dns.node, None, "a dns has no node flags");
    let node = run(Kind::Node, &[]).unwrap();
    assert_eq!((node.ip.as_str(), node.port), ("127.0.0.1", None));
    assert_eq!(node.dir, PathBuf::from("./.node"));
    assert_eq!((node.max_nodes, node.list_limit), (1000, 1000));
    assert_eq!(
        node.node,
        Some(NodeSettings {
            kn_limit: 10,
            seeds: vec![Node::new("127.0.0.1", 42020).unwrap()],
            advertise: None,
            app: None,
            seed_domains: Vec::new(),
            resolver: None,
        })
    );
    // The seed sweeps its whole table each round: more threads, a shorter timeout.
    assert_eq!(
        (dns.timeout, dns.check_threads),
        (Duration::from_secs(2), 1024)
    );
    assert_eq!(
        (node.timeout, node.check_threads),
        (Duration::from_secs(5), 64)
    );
    for s in [&dns, &node] {
        assert_eq!(s.nodes_file, "nodes.json");
        assert_eq!(s.upd_int, Duration::from_secs(60));
        assert_eq!((s.fail_limit, s.workers), (1, 4));
        assert_eq!(
            (s.reg_rate, s.reg_burst, s.allow_local),
            (10.0, 100, AllowLocal::Auto)
        );
        assert_eq!(
            (s.public_only, &s.network, &s.admin_token),
            (false, &None, &None)
        );
    }
    let help = one_line_per_flag(&help(Kind::Node));
    let ports = crate::config::NODE_PORTS;
    assert!(help.contains(&format!("a free port in {}-{}", ports.start(), ports.end())));
}

#[test]
fn app_settings_come_with_app_only() {
    let s = run(
        Kind::Node,
        &["--app", "http://[::1]:8080/", "--app_timeout", "3"],
    )
    .unwrap();
    let app = s.node.unwrap().app.unwrap();
    assert_eq!((app.url.as_str(), app.port), ("http://[::1]:8080", 8080));
    assert_eq!((app.body_limit, app.answer_limit), (1 << 20, 16 << 20));
    assert_eq!((app.timeout, &app.health), (Duration::from_secs(3), &None));
    let s = run(Kind::Node, &["--app", "http://App.Example:80"]).unwrap();
    assert_eq!(s.node.unwrap().app.unwrap().url, "http://app.example:80");
    assert!(usage(Kind::Node, &["--app_timeout", "3"]).contains("--app_timeout needs --app"));
    for (url, says) in [
        ("https://127.0.0.1:1", "https is not supported"),
        ("127.0.0.1:8080", "expected an http:// base URL"),
        ("http://127.0.0.1:8080/api", "no path (/api)"),
        ("http://127.0.0.1:0", "port 0 is out of range"),
        ("http://::1:8080", "brackets"),
        ("http://u:p@127.0.0.1:1", "no user"),
        ("http://127.0.0.1:1/?x", "no query"),
    ] {
        let message = usage(Kind::Node, &["--app", url]);
        assert!(
            message.starts_with("invalid value") && message.contains(says),
            "{url}: {message}"
        );
    }
    assert!(
        usage(
            Kind::Node,
            &["--app", "http://127.0.0.1:1", "--app_health", "health"]
        )
        .contains("starting with '/'")
    );
    assert!(
        usage(Kind::Dns, &["--app", "http://127.0.0.1:1"])
            .contains("does not apply to dns, only to node")
    );
}

#[test]
fn dns_seeding_flags_come_together_and_a_node_may_have_only_dns_seeds() {
    let dns = run(
        Kind::Dns,
        &["--seed_zone", "Seed.Test.", "--seed_listen", "127.0.0.1:0"],
    )
    .unwrap();
    assert_eq!(
        dns.seed_dns,
        Some(SeedDnsSettings {
            zone: "seed.test".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            port: 55000,
            ns: Vec::new(),
            rrl: 100,
        })
    );
    let status = serde_json::to_value(&dns).unwrap();
    assert_eq!(status["seed_dns"]["listen"], "127.0.0.1:0");
    let off = run(Kind::Dns, &[]).unwrap();
    assert_eq!(off.seed_dns, None);
    assert!(
        serde_json::to_value(&off)
            .unwrap()
            .get("seed_dns")
            .is_none()
    );
    for (args, says) in [
        (
            &["--seed_zone", "seed.test"][..],
            "--seed_zone needs --seed_listen",
        ),
        (
            &["--seed_listen", "127.0.0.1:0"],
            "--seed_listen needs --seed_zone",
        ),
        (&["--seed_port", "53"], "--seed_port needs --seed_zone"),
        (&["--seed_rrl", "0"], "--seed_rrl needs --seed_zone"),
        (
            &["--seed_ns", "ns.example.org"],
            "--seed_ns needs --seed_zone",
        ),
        (
            &["--seed_zone", "1.2.3.4", "--seed_listen", "127.0.0.1:0"],
            "not a zone name",
        ),
        (
            &["--seed_zone", "bad..zone", "--seed_listen", "127.0.0.1:0"],
            "\"bad..zone\" is not a valid zone name: a hostname label is empty",
        ),
        (
            &["--seed_zone", "seed.test", "--seed_listen", "x"],
            "expected IP:PORT",
        ),
    ] {
        let message = usage(Kind::Dns, args);
        assert!(message.contains(says), "{args:?}: {message}");
    }
    assert!(usage(Kind::Node, &["--seed_zone", "a.b"]).contains("does not apply to node"));
    assert!(usage(Kind::Dns, &["--seed_domain", "a.b"]).contains("does not apply to dns"));

    // A node with only DNS seeds has no HTTP seed; with --dns or --dns_port, both.
    let node = run(
        Kind::Node,
        &[
            "--seed_domain",
            "seed.test",
            "--seed_domain",
            "b.test",
            "--resolver",
            "[::1]:53",
        ],
    )
    .unwrap()
    .node
    .unwrap();
    assert_eq!(node.seeds, Vec::new());
    assert_eq!(node.seed_domains, ["seed.test", "b.test"]);
    assert_eq!(node.resolver, Some("[::1]:53".parse().unwrap()));
    for other in [&["--dns_port", "7"][..], &["--dns", "127.0.0.1:7"]] {
        let mut args = vec!["--seed_domain", "a.test"];
        args.extend_from_slice(other);
        let node = run(Kind::Node, &args).unwrap().node.unwrap();
        assert_eq!(node.seeds, [Node::new("127.0.0.1", 7).unwrap()], "{args:?}");
    }
    assert!(usage(Kind::Node, &["--resolver", "127.0.0.1:53"]).contains("needs --seed_domain"));
    let zero = usage(
        Kind::Node,
        &["--seed_domain", "a.test", "--resolver", "127.0.0.1:0"],
    );
    assert!(zero.contains("port 0"), "{zero}");
}

#[test]
fn repeated_unknown_and_other_binary_flags_say_so() {
    let repeated = usage(Kind::Dns, &["-p", "1", "--port", "2"]);
    assert_eq!(
        repeated,
        "--port is repeated (2 times): give it once (short or long)"
    );
    assert!(
        usage(Kind::Node, &["--verify_source", "--verify_source"])
            .contains("--verify_source is repeated")
    );
    assert!(usage(Kind::Node, &["--network=a", "--network=a"]).contains("repeated"));
    assert!(
        run(
            Kind::Node,
            &["--dns", "127.0.0.1:1", "--dns", "127.0.0.1:2"]
        )
        .is_ok(),
        "--dns repeats"
    );
    assert_eq!(
        usage(Kind::Dns, &["--bogus"]),
        "unknown flag --bogus; see dns --help"
    );
    assert_eq!(
        usage(Kind::Dns, &["--upd-int", "3"]),
        "unknown flag --upd-int; did you mean --upd_int?"
    );
    assert_eq!(
        usage(Kind::Dns, &["--kn_limit", "3"]),
        "--kn_limit does not apply to dns, only to node; see dns --help"
    );
    assert!(usage(Kind::Dns, &["-k", "3"]).contains("--kn_limit does not apply to dns"));
    assert!(usage(Kind::Dns, &["--advertise=127.0.0.1"]).contains("does not apply to dns"));
    assert_eq!(
        usage(Kind::Node, &["--public_only=yes"]),
        "--public_only takes no value; see --help"
    );
    assert!(usage(Kind::Node, &["stray"]).contains("unexpected argument \"stray\""));
}

#[test]
fn bad_values_name_the_flag_and_what_was_expected() {
    for (kind, list, says) in [
        (
            Kind::Dns,
            &["--port", "abc"][..],
            "invalid value \"abc\" for --port: expected a whole number from 0 to 65535",
        ),
        (Kind::Dns, &["-p", "70000"], "--port: 70000 is out of range"),
        (Kind::Dns, &["--port"], "--port needs a value"),
        (
            Kind::Dns,
            &["-p", "-d", "x"],
            "--port needs a value (got the flag -d)",
        ),
        (
            Kind::Dns,
            &["-i", "127.0.0.1:80"],
            "for --ip: not a valid address: it has a port; give the host alone and the port in \
             -p/--port",
        ),
        (
            Kind::Node,
            &["--advertise", "0.0.0.0"],
            "for --advertise: not a valid address: the unspecified",
        ),
        (
            Kind::Node,
            &["-u", "0"],
            "--upd_int: expected a number of seconds from 0.1",
        ),
        (Kind::Dns, &["-u", "0.05"], "--upd_int"),
        (Kind::Node, &["--timeout", "-1"], "--timeout"),
        (Kind::Node, &["--workers", "0"], "--workers"),
        (
            Kind::Node,
            &["--dns", "nohost"],
            "--dns: expected HOST:PORT",
        ),
        (
            Kind::Node,
            &["--dns", "127.0.0.1:0"],
            "--dns: port 0 is out of range: expected 1 to 65535",
        ),
        (Kind::Node, &["--dns", "::1:5"], "brackets"),
        (
            Kind::Node,
            &["--dns", "a.example:1", "--dns_ip", "b"],
            "--dns replaces --dns_ip",
        ),
        (Kind::Node, &["-n", "a/b.json"], "--nodes"),
        (Kind::Node, &["-i", "0.0.0.0"], "--advertise"),
        (Kind::Node, &["-i", ""], "--advertise"),
        (
            Kind::Node,
            &["-q", "-v"],
            "--quiet and --verbose set the log level twice",
        ),
        (Kind::Node, &["--log", "loud"], "--log"),
        (
            Kind::Dns,
            &["--allow_local", "maybe"],
            "--allow_local: expected yes, no or auto",
        ),
        (Kind::Dns, &["--reg_rate", "0"], "--reg_rate"),
        (Kind::Dns, &["--reg_burst", "0"], "--reg_burst"),
        (
            Kind::Dns,
            &["--network", "a b"],
            "--network: expected 1 to 64 ASCII letters",
        ),
        (Kind::Dns, &["--network", &"n".repeat(65)], "--network"),
        (
            Kind::Node,
            &["--app", "http://127.0.0.1:1", "--app_body_limit", "0"],
            "--app_body_limit",
        ),
        (
            Kind::Node,
            &["--app", "http://127.0.0.1:1", "--app_answer_limit", "2GiB"],
            "--app_answer_limit",
        ),
    ] {
        let message = usage(kind, list);
        assert!(message.contains(says), "{list:?}: {message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
    let file = std::env::temp_dir().join(format!("seedmesh-flags-file-{}", std::process::id()));
    std::fs::write(&file, "x").unwrap();
    let message = usage(Kind::Dns, &["-d", file.to_str().unwrap()]);
    assert!(
        message.contains("--dir: it is a file, not a directory"),
        "{message}"
    );
    std::fs::remove_file(&file).unwrap();
    let s = run(Kind::Dns, &["-i", "", "-u", "0.1"]).unwrap();
    assert_eq!(
        (s.ip.as_str(), s.upd_int),
        ("0.0.0.0", Duration::from_millis(100))
    );
}

#[test]
fn the_admin_token_comes_from_one_source_and_is_long_enough() {
    let dir = std::env::temp_dir().join(format!("seedmesh-flags-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    let path = file.to_str().unwrap();
    let env = Env {
        admin_token: Some(TOKEN.into()),
    };
    let token = |s: Settings| s.admin_token;

    std::fs::write(&file, format!("{TOKEN}\r\n")).unwrap();
    assert_eq!(
        token(run(Kind::Dns, &["--admin_token_file", path]).unwrap()).as_deref(),
        Some(TOKEN)
    );
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    assert_eq!(
        token(run(Kind::Node, &["--admin_token_file", path]).unwrap()).as_deref(),
        Some(TOKEN)
    );
    assert_eq!(
        token(run_env(Kind::Dns, &[], &env).unwrap()).as_deref(),
        Some(TOKEN)
    );
    assert_eq!(
        token(run(Kind::Dns, &["--admin_token", TOKEN]).unwrap()).as_deref(),
        Some(TOKEN)
    );

    let both = run_env(Kind::Dns, &["--admin_token_file", path], &env)
        .unwrap_err()
        .to_string();
    assert_eq!(
        both,
        format!(
            "the admin token is given twice, by --admin_token_file {path} and SEEDMESH_ADMIN_TOKEN: give it one way"
        )
    );
    let both = usage(
        Kind::Dns,
        &["--admin_token", TOKEN, "--admin_token_file", path],
    );
    assert!(
        both.contains("by --admin_token and --admin_token_file"),
        "{both}"
    );

    let short = &TOKEN[..TOKEN_MIN - 1];
    std::fs::write(&file, format!("{short}\n")).unwrap();
    for message in [
        usage(Kind::Dns, &["--admin_token_file", path]),
        usage(Kind::Dns, &["--admin_token", short]),
        run_env(
            Kind::Dns,
            &[],
            &Env {
                admin_token: Some(short.into()),
            },
        )
        .unwrap_err()
        .to_string(),
        run_env(
            Kind::Dns,
            &[],
            &Env {
                admin_token: Some("".into()),
            },
        )
        .unwrap_err()
        .to_string(),
    ] {
        assert!(
            message.contains("too short") && message.contains("at least 16"),
            "{message}"
        );
        assert!(!message.contains(short), "never the token: {message}");
    }
    std::fs::write(&file, format!("{TOKEN}\n\n")).unwrap();
    assert!(usage(Kind::Dns, &["--admin_token_file", path]).contains("a space or line break"));
    let missing = dir.join("missing");
    let message = usage(
        Kind::Dns,
        &["--admin_token_file", missing.to_str().unwrap()],
    );
    assert!(message.contains("cannot read it"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_readme_flag_table_lists_every_flag_with_the_tables_defaults() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## Flags\n")
        .nth(1)
        .expect("a Flags section");
    let section = section.split("\n## ").next().unwrap();
    let rows: Vec<Vec<&str>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").collect())
        .collect();
    for flag in FLAGS
        .iter()
        .filter(|f| !["--help", "--version"].contains(&f.long))
    {
        let names = |row: &Vec<&str>| {
            row[0]
                .split(['`', ' ', ','])
                .any(|name| name == flag.long || Some(name) == flag.short)
        };
        let row = rows.iter().find(|row| names(row));
        let row = row.unwrap_or_else(|| panic!("README's Flags table lacks {}", flag.long));
        for (kind, cell) in [(Kind::Dns, row[1]), (Kind::Node, row[2])] {
            match flag.usage(kind) {
                Use::Default(value) => {
                    assert!(
                        cell.contains(&format!("`{value}`")),
                        "{}: {cell}",
                        flag.long
                    )
                }
                Use::Not => assert_eq!(cell, "—", "{} for {kind:?}", flag.long),
                Use::Unset(_) => assert_ne!(cell, "—", "{} for {kind:?}", flag.long),
            }
        }
    }
}

#[test]
fn the_app_body_budget_holds_at_least_one_body_of_the_largest_size() {
    let app = |list: &[&str]| {
        let mut full = vec!["--app", "http://127.0.0.1:1"];
        full.extend_from_slice(list);
        run(Kind::Node, &full).unwrap().node.unwrap().app.unwrap()
    };
    assert_eq!(app(&[]).body_budget, 64 << 20);
    // Not given: raised to a larger --app_body_limit.
    assert_eq!(app(&["--app_body_limit", "100MiB"]).body_budget, 100 << 20);
    assert_eq!(app(&["--app_body_budget", "8MiB"]).body_budget, 8 << 20);
    let message = usage(
        Kind::Node,
        &[
            "--app",
            "http://127.0.0.1:1",
            "--app_body_limit",
            "2MiB",
            "--app_body_budget",
            "1MiB",
        ],
    );
    assert!(message.contains("--app_body_budget"), "{message}");
    assert!(message.contains("under --app_body_limit"), "{message}");
    assert_eq!(run(Kind::Dns, &[]).unwrap().max_conns_per_ip, 64);
}
