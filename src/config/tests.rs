//! Derived settings: the local-address rule, the node announced, own identities, `/status`.

use super::*;

fn settings(kind: Kind, args: &[&str]) -> Settings {
    let args = args.iter().map(OsString::from).collect();
    match flags::parse(kind, args, &Env::default()) {
        Ok(Command::Run(settings)) => *settings,
        other => panic!("{other:?}"),
    }
}

fn node(text: &str) -> Node {
    let (host, port) = text.rsplit_once(':').unwrap();
    Node::new(host.trim_matches(['[', ']']), port.parse().unwrap()).unwrap()
}

fn nodes(list: &[&str]) -> Vec<Node> {
    let mut nodes: Vec<Node> = list.iter().map(|n| node(n)).collect();
    nodes.sort();
    nodes
}

#[test]
fn allow_local_auto_follows_the_bound_address() {
    let lo: IpAddr = "127.0.0.9".parse().unwrap();
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    let public: IpAddr = "192.0.2.1".parse().unwrap();
    let any: IpAddr = "0.0.0.0".parse().unwrap();
    let auto = settings(Kind::Dns, &[]);
    assert_eq!(auto.allow_local, AllowLocal::Auto);
    assert!(auto.allows_local(lo) && auto.allows_local(mapped));
    assert!(!auto.allows_local(public) && !auto.allows_local(any));
    let yes = settings(Kind::Dns, &["--allow_local", "yes"]);
    assert!(yes.allows_local(public) && yes.allows_local(lo));
    let no = settings(Kind::Node, &["--allow_local", "no"]);
    assert!(!no.allows_local(lo) && !no.allows_local(public));
}

#[test]
fn a_process_bound_to_one_address_is_that_address_and_what_it_advertises() {
    let s = settings(
        Kind::Node,
        &["-i", "127.0.0.22", "--advertise", "192.0.2.7"],
    );
    let bound: SocketAddr = "127.0.0.22:5000".parse().unwrap();
    let id = s.identity(bound);
    assert_eq!(id.nodes(), nodes(&["127.0.0.22:5000", "192.0.2.7:5000"]));
    assert!(id.contains(&node("127.0.0.22:5000")));
    let mapped = Node {
        host: Host::Ip("::ffff:127.0.0.22".parse().unwrap()),
        port: 5000,
    };
    assert!(
        id.contains(&mapped),
        "an IPv4-mapped spelling is the same node"
    );
    assert!(!id.contains(&node("127.0.0.22:5001")));
    assert!(!id.contains(&node("127.0.0.23:5000")));
    assert!(
        !id.contains(&node("localhost:5000")),
        "localhost is 127.0.0.1"
    );
    let dns = settings(Kind::Dns, &[]);
    let id = dns.identity("127.0.0.1:42020".parse().unwrap());
    assert_eq!(id.nodes(), nodes(&["127.0.0.1:42020", "localhost:42020"]));
    assert_eq!(dns.advertised(42020), Some(node("127.0.0.1:42020")));
}

#[test]
fn a_process_bound_to_all_interfaces_is_every_interface_address() {
    let interfaces: Vec<IpAddr> = ["127.0.0.1", "192.0.2.4", "2001:db8::4", "::1"]
        .iter()
        .map(|ip| ip.parse().unwrap())
        .collect();
    let dns = settings(Kind::Dns, &["-i", "0.0.0.0"]);
    let id = dns.identity_with("0.0.0.0:42020".parse().unwrap(), &interfaces);
    assert_eq!(dns.advertised(42020), None, "nothing to announce");
    assert_eq!(
        id.nodes(),
        nodes(&["127.0.0.1:42020", "192.0.2.4:42020", "localhost:42020"]),
        "an IPv4 socket is not reached over IPv6"
    );
    assert!(id.contains(&node("127.3.4.5:42020")), "all of 127/8");
    assert!(!id.contains(&node("[::1]:42020")));

    let node_s = settings(Kind::Node, &["-i", "::", "--advertise", "198.51.100.9"]);
    let id = node_s.identity_with("[::]:55000".parse().unwrap(), &interfaces);
    assert_eq!(
        id.nodes(),
        nodes(&[
            "127.0.0.1:55000",
            "192.0.2.4:55000",
            "[2001:db8::4]:55000",
            "[::1]:55000",
            "localhost:55000",
            "198.51.100.9:55000",
        ])
    );
    assert!(id.contains(&node("[::1]:55000")) && id.contains(&node("127.0.0.2:55000")));
    assert!(!id.contains(&node("192.0.2.5:55000")));
}

#[test]
fn the_real_interfaces_include_loopback() {
    let dns = settings(Kind::Dns, &["-i", "0.0.0.0"]);
    let id = dns.identity("0.0.0.0:42020".parse().unwrap());
    assert!(id.contains(&node("127.0.0.1:42020")));
    assert!(id.nodes().len() >= 2, "{:?}", id.nodes());
}

#[test]
fn settings_report_seconds_and_never_the_token() {
    let token = "a-token-of-24-bytes-here";
    let s = settings(
        Kind::Node,
        &["-u", "0.5", "--admin_token", token, "-k", "4"],
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["upd_int_seconds"], 0.5);
    assert_eq!(json["timeout_seconds"], 5.0);
    assert_eq!(json["admin_token_set"], true);
    assert_eq!(json["kn_limit"], 4);
    assert_eq!(json["log_level"], "info");
    assert_eq!(json["allow_local"], "auto");
    assert_eq!(
        (json["reg_rate"].as_f64(), json["reg_burst"].as_u64()),
        (Some(10.0), Some(100))
    );
    assert_eq!(
        (&json["network"], &json["public_only"]),
        (&Value::Null, &Value::Bool(false))
    );
    assert_eq!(json["app"], Value::Null);
    assert!(!json.to_string().contains(token));
    let dns = serde_json::to_value(settings(Kind::Dns, &[])).unwrap();
    assert_eq!(dns["admin_token_set"], false);
    assert!(dns.get("kn_limit").is_none() && dns.get("seeds").is_none());
    assert!(dns.get("app").is_none());
    let app = settings(
        Kind::Node,
        &["--app", "http://127.0.0.1:8080/", "--network", "main-1"],
    );
    let json = serde_json::to_value(&app).unwrap();
    assert_eq!(json["network"], "main-1");
    assert_eq!(
        json["app"],
        serde_json::json!({"url": "http://127.0.0.1:8080", "health": null,
            "body_limit": 1048576, "body_budget": 67108864, "answer_limit": 16777216,
            "timeout_seconds": 10.0,
            "workers": 8})
    );
}

use serde_json::Value;

#[test]
fn connections_and_check_threads_share_the_open_file_limit() {
    let dns = settings(Kind::Dns, &[]);
    // --max_conns 1024 + --check_threads 1024 + 128.
    assert_eq!(dns.open_files_wanted(), 2176);
    let fit = |s: &Settings, limit| {
        let fitted = s.within_open_files(limit);
        (fitted.max_conns, fitted.check_threads)
    };
    assert_eq!(fit(&dns, 100_000), (1024, 1024));
    assert_eq!(fit(&dns, 2176), (1024, 1024));
    // 1,872 left after the 128 kept: halved between the two, as they were equal.
    assert_eq!(fit(&dns, 2000), (936, 936));
    assert_eq!(fit(&dns, 1024), (448, 448));
    assert_eq!(fit(&dns, 10), (1, 1), "never none");
    let node = settings(Kind::Node, &[]);
    // 896 left for 1,024 connections and 64 checks: each keeps its share.
    assert_eq!(fit(&node, 1024), (843, 53));
    let app = settings(Kind::Node, &["--app", "http://127.0.0.1:8080"]);
    assert_eq!(app.open_files_wanted(), 1024 + 64 + 8 + 128);
}
