//! The API decided without a socket, a disk or a clock: a snapshot in memory, changes
//! applied with the store's own pure `Rules::apply`.

use super::*;
use crate::config::Identity;
use crate::membership::Rules;
use crate::policy::LocalRule;
use crate::response::JSON;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

/// An API over a table in memory, committing changes as the store would.
struct Fixture {
    config: ApiConfig,
    rules: Rules,
    snapshot: RefCell<Arc<Snapshot>>,
    /// When set, every commit fails as a full disk would.
    disk_full: Cell<bool>,
    rng: RefCell<fastrand::Rng>,
    buckets: Mutex<TokenBuckets>,
    /// The time requests arrive at.
    now: Cell<Instant>,
}

fn fixture(max_nodes: usize, config: ApiConfig) -> Fixture {
    Fixture {
        config,
        rules: Rules {
            max_nodes,
            own: Identity::of(vec![Node::new("127.0.0.1", 42020).unwrap()]),
            local: LocalRule {
                allow_local: true,
                public_only: false,
            },
            max_referred: 8,
        },
        snapshot: RefCell::new(Arc::new(Snapshot::default())),
        disk_full: Cell::new(false),
        rng: RefCell::new(fastrand::Rng::with_seed(7)),
        buckets: Mutex::new(TokenBuckets::new(10.0, 100, 1000)),
        now: Cell::new(Instant::now()),
    }
}

fn config() -> ApiConfig {
    ApiConfig {
        list_limit: 1000,
        verify_source: false,
        admin_token: Some("s3cret-s3cret-s3cret".into()),
        network: None,
        app_body_limit: None,
    }
}

impl Fixture {
    fn decide(&self, request: &Request<'_>) -> Decision {
        let snapshot = Arc::clone(&self.snapshot.borrow());
        let mut rng = self.rng.borrow_mut();
        let mut context = Context {
            config: &self.config,
            snapshot: &snapshot,
            now: self.now.get(),
            rng: &mut rng,
            buckets: &self.buckets,
        };
        handle(&mut context, request)
    }

    /// Commits `change` as the store's committer would: applied to a copy, published whole.
    fn commit(&self, change: Change) -> Result<Committed, PersistError> {
        if self.disk_full.get() {
            return Err(PersistError::DiskFull(
                "could not save nodes.json: No space left on device".into(),
            ));
        }
        let base = Arc::clone(&self.snapshot.borrow());
        let mut table = Cow::Borrowed(&base.table);
        let outcome = self
            .rules
            .apply(&mut table, &change, &mut self.rng.borrow_mut());
        let snapshot = match table {
            Cow::Borrowed(_) => base.clone(),
            Cow::Owned(table) => Arc::new(Snapshot::new(table)),
        };
        *self.snapshot.borrow_mut() = Arc::clone(&snapshot);
        Ok(Committed { outcome, snapshot })
    }

    /// Lets time pass for the token buckets.
    fn wait(&self, seconds: u64) {
        self.now.set(self.now.get() + Duration::from_secs(seconds));
    }
}

/// Sends a request through `handle`, committing any change as the server would.
fn call(
    f: &Fixture,
    method: &str,
    target: &str,
    body: &str,
    caller: IpAddr,
    auth: Option<&str>,
) -> Response {
    let request = Request {
        method,
        target,
        body: Body::Bytes(body.as_bytes()),
        caller,
        authorization: auth,
        network: None,
    };
    match f.decide(&request).reply {
        Reply::Now(response) => response,
        Reply::Commit { change, answer } => {
            answer.finish(f.commit(change), &mut f.rng.borrow_mut())
        }
        Reply::Report(report) => panic!("{report:?} is rendered by the server"),
        Reply::Forward(forward) => panic!("{forward:?} is for the application"),
    }
}

fn get(f: &Fixture, target: &str) -> Response {
    call(f, "GET", target, "", LOCAL, None)
}

fn text(response: &Response) -> String {
    String::from_utf8(response.body.as_ref().to_vec()).unwrap()
}

fn json(response: &Response) -> serde_json::Value {
    assert_eq!(response.content_type, Some(JSON), "{}", text(response));
    serde_json::from_slice(response.body.as_ref()).unwrap()
}

fn error(response: &Response) -> String {
    json(response)["error"].as_str().unwrap().to_owned()
}

fn node(port: u16) -> String {
    format!(r#"{{"ip_address": "127.0.0.1", "port": {port}}}"#)
}

fn ports(response: &Response) -> Vec<u64> {
    json(response)
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["port"].as_u64().unwrap())
        .collect()
}

#[test]
fn root_answers_online_with_an_empty_body() {
    let f = fixture(10, config());
    for method in ["GET", "HEAD"] {
        let response = call(&f, method, "/", "", REMOTE, None);
        assert_eq!(response.status, 200);
        assert!(response.body.as_ref().is_empty());
    }
}

#[test]
fn registration_stores_the_canonical_node_and_lists_it() {
    let f = fixture(10, config());
    let response = call(
        &f,
        "POST",
        "/",
        r#"{"ip_address": "0:0:0:0:0:0:0:1", "port": 55000}"#,
        LOCAL,
        None,
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        json(&response),
        serde_json::json!({"ip_address": "::1", "port": 55000})
    );
    assert_eq!(
        text(&get(&f, "/nodes/")),
        r#"[{"ip_address":"::1","port":55000}]"#
    );
    // Registering again changes nothing and needs no disk write.
    let request = Request {
        method: "POST",
        target: "/",
        body: Body::Bytes(br#"{"ip_address": "::1", "port": 55000}"#),
        caller: REMOTE,
        authorization: None,
        network: None,
    };
    assert!(matches!(f.decide(&request).reply, Reply::Now(r) if r.status == 200));
}

#[test]
fn invalid_bodies_are_400_with_a_reason_and_change_nothing() {
    let f = fixture(10, config());
    call(&f, "POST", "/", &node(1), LOCAL, None);
    let cases = [
        ("", "not valid JSON"),
        ("ip_address=127.0.0.1&port=5", "not valid JSON"),
        ("[]", "got an array"),
        (r#"{"ip_address": "127.0.0.1"}"#, "no \"port\""),
        (
            r#"{"ip_address": "127.0.0.1", "port": 5, "x": 1}"#,
            "unknown key",
        ),
        (
            r#"{"ip_address": "127.0.0.1", "port": "5"}"#,
            "must be an integer",
        ),
        (
            r#"{"ip_address": "127.0.0.1", "port": 70000}"#,
            "out of range",
        ),
        (
            r#"{"ip_address": "not an address", "port": 5}"#,
            "not a valid address",
        ),
    ];
    for (target, method) in [("/", "POST"), ("/nodes/", "POST"), ("/nodes/", "DELETE")] {
        for (body, reason) in cases {
            let response = call(&f, method, target, body, LOCAL, None);
            assert_eq!(response.status, 400, "{method} {target} {body}");
            assert!(
                error(&response).contains(reason),
                "{body}: {}",
                error(&response)
            );
        }
    }
    assert_eq!(ports(&get(&f, "/nodes")), vec![1]);
}

#[test]
fn verify_source_accepts_only_the_callers_own_address() {
    let f = fixture(
        10,
        ApiConfig {
            verify_source: true,
            ..config()
        },
    );
    let own = r#"{"ip_address": "192.0.2.7", "port": 5}"#;
    assert_eq!(call(&f, "POST", "/", own, REMOTE, None).status, 200);
    let other = call(
        &f,
        "POST",
        "/",
        r#"{"ip_address": "192.0.2.8", "port": 5}"#,
        REMOTE,
        None,
    );
    assert_eq!(other.status, 403);
    assert!(
        error(&other).contains("only your own address 192.0.2.7"),
        "{}",
        error(&other)
    );
    let name = call(
        &f,
        "POST",
        "/",
        r#"{"ip_address": "example.com", "port": 5}"#,
        REMOTE,
        None,
    );
    assert_eq!(name.status, 403);
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
    assert_eq!(
        call(
            &f,
            "POST",
            "/",
            r#"{"ip_address": "192.0.2.7", "port": 6}"#,
            mapped,
            None
        )
        .status,
        200
    );
    assert_eq!(ports(&get(&f, "/nodes/")), vec![5, 6]);
}

#[test]
fn the_list_is_oldest_first_and_sampled_beyond_the_limits() {
    let f = fixture(
        100,
        ApiConfig {
            list_limit: 4,
            ..config()
        },
    );
    for port in [30, 10, 20] {
        call(&f, "POST", "/nodes/", &node(port), LOCAL, None);
    }
    assert_eq!(ports(&get(&f, "/nodes/")), vec![30, 10, 20]);
    assert_eq!(
        ports(&get(&f, "/nodes")),
        vec![30, 10, 20],
        "trailing slash is optional"
    );
    for port in [40, 50, 60] {
        call(&f, "POST", "/nodes/", &node(port), LOCAL, None);
    }
    let all = [30u64, 10, 20, 40, 50, 60];
    let sample = ports(&get(&f, "/nodes/"));
    assert_eq!(sample.len(), 4, "--list_limit caps the answer");
    assert!(sample.iter().all(|p| all.contains(p)));
    let mut distinct = sample.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4);
    assert_eq!(ports(&get(&f, "/nodes/?limit=2")).len(), 2);
    assert_eq!(ports(&get(&f, "/nodes/?limit=99")).len(), 4);
    assert_eq!(ports(&get(&f, "/nodes?limit=0")).len(), 0);
}

#[test]
fn bad_queries_are_400() {
    let f = fixture(10, config());
    for target in [
        "/nodes/?limit=",
        "/nodes/?limit=-1",
        "/nodes/?limit=x",
        "/nodes/?limit=1.5",
        "/nodes/?limit=1&limit=2",
        "/nodes/?lmit=3",
        "/?limit=3",
        "/nodes/0/?x",
    ] {
        let response = get(&f, target);
        assert_eq!(response.status, 400, "{target}");
        assert!(!error(&response).is_empty());
    }
    assert_eq!(get(&f, "/nodes/?limit=99999999999999999999999").status, 200);
}

#[test]
fn random_and_index_pick_known_nodes_or_404() {
    let f = fixture(10, config());
    assert_eq!(get(&f, "/nodes/random/").status, 404);
    assert_eq!(get(&f, "/nodes/0/").status, 404);
    call(&f, "POST", "/nodes/", &node(7), LOCAL, None);
    call(&f, "POST", "/nodes/", &node(8), LOCAL, None);
    let random = json(&get(&f, "/nodes/random"));
    assert!([7, 8].contains(&random["port"].as_u64().unwrap()));
    assert_eq!(json(&get(&f, "/nodes/1/"))["port"], 8);
    assert_eq!(json(&get(&f, "/nodes/0"))["port"], 7);
    let missing = get(&f, "/nodes/2/");
    assert_eq!(missing.status, 404);
    assert_eq!(error(&missing), "no node at index 2: 2 known");
    let huge = get(&f, "/nodes/99999999999999999999999/");
    assert_eq!(huge.status, 404);
    assert_eq!(error(&huge), "no node at that index: 2 known");
}

#[test]
fn unknown_paths_are_404() {
    let f = fixture(10, config());
    for target in [
        "/nope",
        "/nodes/abc/",
        "/nodes/-1/",
        "/nodes//",
        "//",
        "/nodes/1/2",
        "/NODES/",
    ] {
        let response = get(&f, target);
        assert_eq!(response.status, 404, "{target}");
        assert!(error(&response).contains("no such path"), "{target}");
    }
}

#[test]
fn wrong_methods_are_405_with_allow() {
    let f = fixture(10, config());
    let cases = [
        ("PUT", "/", "GET, HEAD, POST"),
        ("DELETE", "/", "GET, HEAD, POST"),
        ("PATCH", "/nodes/", "GET, HEAD, POST, DELETE"),
        ("POST", "/nodes/random/", "GET, HEAD"),
        ("DELETE", "/nodes/0/", "GET, HEAD"),
        ("OPTIONS", "/nodes", "GET, HEAD, POST, DELETE"),
    ];
    for (method, target, allow) in cases {
        let response = call(&f, method, target, &node(5), LOCAL, None);
        assert_eq!(response.status, 405, "{method} {target}");
        assert_eq!(response.allow, Some(allow));
        assert!(error(&response).contains(method));
    }
    assert_eq!(ports(&get(&f, "/nodes/")), Vec::<u64>::new());
}

#[test]
fn add_and_delete_answer_the_whole_list() {
    let f = fixture(10, config());
    assert_eq!(
        ports(&call(&f, "POST", "/nodes/", &node(1), LOCAL, None)),
        vec![1]
    );
    assert_eq!(
        ports(&call(&f, "POST", "/nodes/", &node(2), LOCAL, None)),
        vec![1, 2]
    );
    assert_eq!(
        ports(&call(&f, "POST", "/nodes", &node(1), LOCAL, None)),
        vec![1, 2],
        "known: unchanged"
    );
    assert_eq!(
        ports(&call(&f, "DELETE", "/nodes/", &node(1), LOCAL, None)),
        vec![2]
    );
    assert_eq!(
        ports(&call(&f, "DELETE", "/nodes/", &node(9), LOCAL, None)),
        vec![2],
        "unknown: unchanged"
    );
}

#[test]
fn remote_changes_need_the_admin_token() {
    let f = fixture(10, config());
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret-s3cret-s3cret"),
        Some("Basic s3cret-s3cret-s3cret"),
        Some("Bearer s3cre"),
    ] {
        let response = call(&f, "POST", "/nodes/", &node(1), REMOTE, auth);
        assert_eq!(response.status, 403, "{auth:?}");
        assert!(error(&response).contains("--admin_token"));
        assert_eq!(
            call(&f, "DELETE", "/nodes/", &node(1), REMOTE, auth).status,
            403
        );
    }
    assert_eq!(
        ports(&call(
            &f,
            "POST",
            "/nodes/",
            &node(1),
            REMOTE,
            Some("Bearer s3cret-s3cret-s3cret")
        )),
        vec![1]
    );
    assert_eq!(
        ports(&call(
            &f,
            "DELETE",
            "/nodes/",
            &node(1),
            REMOTE,
            Some("bearer  s3cret-s3cret-s3cret ")
        )),
        Vec::<u64>::new()
    );
    let loopback6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    assert_eq!(
        call(&f, "POST", "/nodes/", &node(2), loopback6, None).status,
        200
    );

    let without = fixture(
        10,
        ApiConfig {
            admin_token: None,
            ..config()
        },
    );
    assert_eq!(
        call(
            &without,
            "POST",
            "/nodes/",
            &node(1),
            REMOTE,
            Some("Bearer ")
        )
        .status,
        403
    );
    assert_eq!(
        call(&without, "POST", "/", &node(1), REMOTE, None).status,
        200,
        "registration is open"
    );
}

#[test]
fn bodies_over_the_limit_are_413() {
    let f = fixture(10, config());
    for (method, target) in [("POST", "/"), ("POST", "/nodes/"), ("DELETE", "/nodes/")] {
        let request = Request {
            method,
            target,
            body: Body::TooLarge,
            caller: LOCAL,
            authorization: None,
            network: None,
        };
        let Reply::Now(response) = f.decide(&request).reply else {
            panic!("no commit expected")
        };
        assert_eq!(response.status, 413);
        assert!(error(&response).contains("64 KiB"));
    }
}

#[test]
fn a_full_table_is_507_and_unchanged() {
    let f = fixture(2, config());
    call(&f, "POST", "/", &node(1), LOCAL, None);
    call(&f, "POST", "/nodes/", &node(2), LOCAL, None);
    for (method, target) in [("POST", "/"), ("POST", "/nodes/")] {
        let response = call(&f, method, target, &node(3), LOCAL, None);
        assert_eq!(response.status, 507, "{method} {target}");
        assert!(error(&response).contains("full"));
    }
    assert_eq!(ports(&get(&f, "/nodes/")), vec![1, 2]);
    assert_eq!(
        call(&f, "POST", "/", &node(2), REMOTE, None).status,
        200,
        "a known node is fine"
    );
}

#[test]
fn a_server_never_lists_itself() {
    let f = fixture(10, config());
    for (method, target) in [("POST", "/"), ("POST", "/nodes/")] {
        let response = call(&f, method, target, &node(42020), LOCAL, None);
        assert_eq!(response.status, 400, "{method} {target}");
        assert!(error(&response).contains("own address"));
    }
    assert!(ports(&get(&f, "/nodes/")).is_empty());
}

#[test]
fn a_failed_write_is_500_and_changes_nothing() {
    let f = fixture(10, config());
    call(&f, "POST", "/nodes/", &node(1), LOCAL, None);
    f.disk_full.set(true);
    for (method, target, body) in [
        ("POST", "/", node(2)),
        ("POST", "/nodes/", node(2)),
        ("DELETE", "/nodes/", node(1)),
    ] {
        let response = call(&f, method, target, &body, LOCAL, None);
        assert_eq!(response.status, 500, "{method} {target}");
        assert!(
            error(&response).contains("No space left on device; nothing was changed"),
            "{}",
            error(&response)
        );
    }
    f.disk_full.set(false);
    assert_eq!(ports(&get(&f, "/nodes/")), vec![1]);
}

#[test]
fn status_and_metrics_are_reports_that_allow_only_reads() {
    let f = fixture(10, config());
    for (target, report) in [("/status", Report::Status), ("/metrics/", Report::Metrics)] {
        let request = Request {
            method: "GET",
            target,
            body: Body::Bytes(b""),
            caller: REMOTE,
            authorization: None,
            network: None,
        };
        let decision = f.decide(&request);
        assert!(
            matches!(decision.reply, Reply::Report(r) if r == report),
            "{target}"
        );
    }
    for target in ["/status", "/metrics"] {
        let response = call(&f, "POST", target, "", LOCAL, None);
        assert_eq!((response.status, response.allow), (405, Some("GET, HEAD")));
        assert_eq!(get(&f, &format!("{target}?verbose=1")).status, 400);
    }
}

#[test]
fn every_request_is_labelled_by_its_route() {
    let f = fixture(10, config());
    let cases = [
        ("GET", "/status?x", Label::Status),
        ("GET", "/nodes/12/", Label::Index),
        ("DELETE", "/nodes/12/", Label::Index),
        ("GET", "/nodes?limit=x", Label::Nodes),
        ("PUT", "/", Label::Root),
        ("GET", "/favicon.ico", Label::Other),
    ];
    for (method, target, label) in cases {
        let request = Request {
            method,
            target,
            body: Body::Bytes(b""),
            caller: LOCAL,
            authorization: None,
            network: None,
        };
        assert_eq!(f.decide(&request).label, label, "{method} {target}");
        assert_eq!(Label::of(target), label, "{target}");
    }
}

#[test]
fn a_get_of_the_list_with_a_node_body_registers_it_by_the_rules_of_post() {
    let f = fixture(
        10,
        ApiConfig {
            verify_source: true,
            ..config()
        },
    );
    let own = r#"{"ip_address": "192.0.2.7", "port": 5}"#;
    let answer = call(&f, "GET", "/nodes/", own, REMOTE, None);
    assert_eq!(ports(&answer), vec![5], "registered, then listed");
    let other = call(&f, "GET", "/nodes/", &node(6), REMOTE, None);
    assert_eq!(other.status, 403, "--verify_source holds here too");
    for body in ["", "{}", " \r\n"] {
        assert_eq!(
            ports(&call(&f, "GET", "/nodes/", body, REMOTE, None)),
            vec![5]
        );
    }
    let limited = call(&f, "GET", "/nodes/?limit=0", own, REMOTE, None);
    assert_eq!(
        ports(&limited),
        Vec::<u64>::new(),
        "the query still applies"
    );
}

fn register_from(f: &Fixture, caller: IpAddr, ip: &str, port: u16) -> Response {
    let body = format!(r#"{{"ip_address": "{ip}", "port": {port}}}"#);
    call(f, "POST", "/", &body, caller, None)
}

#[test]
fn one_source_adding_too_fast_gets_429_and_adds_nothing() {
    let f = fixture(1000, config());
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let statuses: Vec<u16> = (1..=150)
        .map(|port| register_from(&f, LOCAL, "127.0.0.9", port).status)
        .collect();
    assert!(
        statuses[..100].iter().all(|s| *s == 200),
        "the burst of 100"
    );
    assert!(statuses[100..].iter().all(|s| *s == 429));
    let refused = register_from(&f, LOCAL, "127.0.0.9", 999);
    assert_eq!(refused.retry_after, Some(1), "10 new nodes per second");
    assert!(
        error(&refused).contains("--reg_rate"),
        "{}",
        error(&refused)
    );
    assert_eq!(ports(&get(&f, "/nodes/")).len(), 100, "a 429 adds nothing");
    assert_eq!(
        register_from(&f, LOCAL, "127.0.0.9", 1).status,
        200,
        "re-announcing a known node is free"
    );
    assert_eq!(
        register_from(&f, other, "127.0.0.8", 1).status,
        200,
        "another source"
    );
    // An administrator is not limited.
    assert_eq!(
        call(&f, "POST", "/nodes/", &node(7000), LOCAL, None).status,
        200
    );
    f.wait(1);
    assert_eq!(
        register_from(&f, LOCAL, "127.0.0.9", 999).status,
        200,
        "refilled"
    );
}

#[test]
fn a_registration_from_another_network_is_403() {
    let f = fixture(
        10,
        ApiConfig {
            network: Some("main".into()),
            ..config()
        },
    );
    let body = node(5);
    let register = |network| {
        let request = Request {
            method: "POST",
            target: "/",
            body: Body::Bytes(body.as_bytes()),
            caller: LOCAL,
            authorization: None,
            network,
        };
        match f.decide(&request).reply {
            Reply::Now(response) => response.status,
            Reply::Commit { change, answer } => {
                answer
                    .finish(f.commit(change), &mut f.rng.borrow_mut())
                    .status
            }
            Reply::Report(_) | Reply::Forward(_) => unreachable!(),
        }
    };
    assert_eq!(register(Some("test")), 403);
    assert!(ports(&get(&f, "/nodes/")).is_empty());
    assert_eq!(register(Some("main")), 200);
    assert_eq!(
        register(None),
        200,
        "a caller without the header (curl) is accepted"
    );
}

#[test]
fn samples_take_one_node_per_group_before_any_group_gives_a_second() {
    let f = fixture(1000, config());
    // 30 groups of 127.g/16, one of which registered 100 nodes.
    for port in 1..=100 {
        call(
            &f,
            "POST",
            "/nodes/",
            &format!(r#"{{"ip_address": "127.200.0.1", "port": {port}}}"#),
            LOCAL,
            None,
        );
    }
    for group in 1..30 {
        let body = format!(r#"{{"ip_address": "127.{group}.0.1", "port": 1}}"#);
        call(&f, "POST", "/nodes/", &body, LOCAL, None);
    }
    for _ in 0..50 {
        let answer = json(&get(&f, "/nodes/?limit=10"));
        let groups: HashSet<String> = answer
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                let ip = n["ip_address"].as_str().unwrap();
                ip.split('.').take(2).collect::<Vec<_>>().join(".")
            })
            .collect();
        assert_eq!(groups.len(), 10, "{answer}");
    }
    let random: HashSet<String> = (0..200)
        .map(|_| {
            json(&get(&f, "/nodes/random/"))["ip_address"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(
        random.len() > 20,
        "a random node is a random group first: {random:?}"
    );
}

#[test]
fn local_addresses_are_refused_where_the_rule_says_so() {
    let mut f = fixture(10, config());
    f.rules.local = LocalRule {
        allow_local: false,
        public_only: true,
    };
    for (ip, reason) in [
        ("127.0.0.5", "--allow_local"),
        ("169.254.169.254", "--allow_local"),
        ("10.1.2.3", "--public_only"),
        ("100.64.0.1", "--public_only"),
    ] {
        let answer = register_from(&f, REMOTE, ip, 80);
        assert_eq!(answer.status, 400, "{ip}");
        assert!(error(&answer).contains(reason), "{ip}: {}", error(&answer));
    }
    assert!(ports(&get(&f, "/nodes/")).is_empty());
}

/// The decision for `method target` with `body`, by a node with `--app` whose body limit is
/// 1 MiB.
fn decide_with_app(method: &str, target: &str, body: Body<'_>) -> Decision {
    let f = fixture(
        100,
        ApiConfig {
            app_body_limit: Some(1 << 20),
            ..config()
        },
    );
    f.decide(&Request {
        method,
        target,
        body,
        caller: REMOTE,
        authorization: None,
        network: None,
    })
}

#[test]
fn with_an_application_the_paths_that_are_not_the_apis_are_forwarded() {
    for (method, target) in [
        ("GET", "/blocks/0"),
        ("GET", "/blockchain/"),
        ("HEAD", "/blocks/0?verbose=1"),
        ("PATCH", "/transactions/"),
        ("PROPFIND", "/utxo"),
        ("GET", "/nodesx"),
        ("GET", "/status/x"),
        ("GET", "//nodes/"),
    ] {
        let decision = decide_with_app(method, target, Body::Bytes(b""));
        assert_eq!(decision.label, Label::App, "{method} {target}");
        match decision.reply {
            Reply::Forward(forward) => {
                assert_eq!(forward.target, target);
                assert!(forward.with_body);
            }
            other => panic!("{method} {target}: {other:?}"),
        }
    }
    let unframed = decide_with_app("GET", "/blocks/0", Body::Unframed);
    assert!(matches!(
        unframed.reply,
        Reply::Forward(Forward {
            with_body: false,
            ..
        })
    ));
}

#[test]
fn the_apis_own_paths_stay_the_apis_with_an_application() {
    for (target, label) in [
        ("/", Label::Root),
        ("/nodes", Label::Nodes),
        ("/nodes/?limit=3", Label::Nodes),
        ("/nodes/random/", Label::Random),
        ("/nodes/0/", Label::Index),
        ("/status/", Label::Status),
        ("/metrics", Label::Metrics),
    ] {
        let decision = decide_with_app("GET", target, Body::Bytes(b""));
        assert_eq!(decision.label, label, "{target}");
        assert!(!matches!(decision.reply, Reply::Forward(_)), "{target}");
    }
    // Under /nodes/ a path no route matches is the API's 404, not the application's.
    let decision = decide_with_app("GET", "/nodes/abc/", Body::Bytes(b""));
    match decision.reply {
        Reply::Now(response) => assert_eq!(response.status, 404),
        other => panic!("{other:?}"),
    }
    // Targets that are not a path are never forwarded.
    for (method, target) in [("OPTIONS", "*"), ("CONNECT", "127.0.0.1:8080")] {
        let decision = decide_with_app(method, target, Body::Bytes(b""));
        assert_eq!(decision.label, Label::Other, "{target}");
    }
}

#[test]
fn without_an_application_unknown_paths_are_404_as_ever() {
    let f = fixture(100, config());
    let response = call(&f, "GET", "/blocks/0", "", REMOTE, None);
    assert_eq!(response.status, 404);
    assert_eq!(error(&response), "no such path: /blocks/0");
}

#[test]
fn a_body_over_the_application_limit_is_413_and_not_forwarded() {
    let decision = decide_with_app("POST", "/transactions/", Body::TooLarge);
    assert_eq!(decision.label, Label::App);
    match decision.reply {
        Reply::Now(response) => {
            assert_eq!(response.status, 413);
            assert_eq!(
                error(&response),
                "request body is over 1 MiB (--app_body_limit); it was not forwarded"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_body_limit_is_decided_by_path() {
    let app = Some(3 << 20);
    assert_eq!(body_limit("/blocks/0", app), 3 << 20);
    assert_eq!(body_limit("/blocks/0?x=/nodes/", app), 3 << 20);
    for api in [
        "/",
        "/nodes/",
        "/nodes?limit=2",
        "/nodes/7",
        "/status",
        "/metrics/",
        "*",
    ] {
        assert_eq!(body_limit(api, app), MAX_BODY_BYTES, "{api}");
    }
    assert_eq!(body_limit("/blocks/0", None), MAX_BODY_BYTES);
    // An application limit below the API's applies to the application's paths alone.
    assert_eq!(body_limit("/blocks/0", Some(1000)), 1000);
    assert_eq!(body_limit("/nodes/", Some(1000)), MAX_BODY_BYTES);
}

#[test]
fn the_applications_paths_are_labelled_app_only_with_an_application() {
    assert_eq!(Label::of_target("/blocks/0", true), Label::App);
    assert_eq!(Label::of_target("/blocks/0", false), Label::Other);
    assert_eq!(Label::of_target("/nodes/?limit=2", true), Label::Nodes);
    assert_eq!(Label::of_target("/nodes/x", true), Label::Other);
    assert_eq!(Label::of_target("*", true), Label::Other);
}

#[test]
fn a_caller_registering_others_is_counted_and_not_vouched_for_until_checked() {
    let f = fixture(100, config());
    // 192.0.2.7 registers nodes of eight other groups: accepted, none listed yet.
    for g in 1..=8 {
        let answer = register_from(&f, REMOTE, &format!("198.51.{g}.1"), 80);
        assert_eq!(answer.status, 200, "{g}");
    }
    assert!(
        ports(&get(&f, "/nodes/")).is_empty(),
        "referrals wait for a check"
    );
    let ninth = register_from(&f, REMOTE, "203.0.113.1", 80);
    assert_eq!(ninth.status, 403);
    assert!(error(&ninth).contains("--reg_others"), "{}", error(&ninth));
    // Another caller of the same /16 is the same source group.
    let neighbour = IpAddr::V4(Ipv4Addr::new(192, 0, 9, 9));
    assert_eq!(register_from(&f, neighbour, "203.0.113.2", 80).status, 403);
    // Its own address is not a referral; nor is a known node registered again.
    assert_eq!(register_from(&f, REMOTE, "192.0.2.7", 80).status, 200);
    assert_eq!(ports(&get(&f, "/nodes/")), vec![80]);
    assert_eq!(register_from(&f, REMOTE, "198.51.1.1", 80).status, 200);
    // A referred node that registers itself is vouched for; a checked one too.
    let referred = IpAddr::V4(Ipv4Addr::new(198, 51, 1, 1));
    assert_eq!(register_from(&f, referred, "198.51.1.1", 80).status, 200);
    f.commit(Change::Checked {
        results: vec![(Node::new("198.51.2.1", 80).unwrap(), true)],
        at: f.now.get(),
    })
    .unwrap();
    let listed = json(&get(&f, "/nodes/"));
    let hosts: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ip_address"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["198.51.1.1", "198.51.2.1", "192.0.2.7"]);
    // The upgraded referral no longer counts against the caller's group: one more fits.
    assert_eq!(register_from(&f, REMOTE, "203.0.113.3", 80).status, 200);
}

#[test]
fn a_node_given_as_a_value_is_decided_as_its_json() {
    let by_json = fixture(10, config());
    let by_value = fixture(10, config());
    let nodes = [
        Node::new("127.0.0.5", 55000).unwrap(),
        Node::new("127.0.0.6", 8).unwrap(),
    ];
    let requests = [
        ("POST", "/", &nodes[0], REMOTE),
        ("POST", "/", &nodes[0], REMOTE),
        ("GET", "/nodes/", &nodes[1], LOCAL),
        ("GET", "/nodes/?limit=1", &nodes[1], LOCAL),
        ("POST", "/nodes/", &nodes[1], REMOTE),
        ("DELETE", "/nodes/", &nodes[0], LOCAL),
    ];
    for (method, target, node, caller) in requests {
        let json = serde_json::to_vec(node).unwrap();
        let answer = |f: &Fixture, body: Body<'_>| {
            let request = Request {
                method,
                target,
                body,
                caller,
                authorization: None,
                network: None,
            };
            match f.decide(&request).reply {
                Reply::Now(response) => (None, response.status, text(&response)),
                Reply::Commit { change, answer } => {
                    let response = answer.finish(f.commit(change.clone()), &mut f.rng.borrow_mut());
                    (Some(change), response.status, text(&response))
                }
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            answer(&by_json, Body::Bytes(&json)),
            answer(&by_value, Body::Node(node)),
            "{method} {target} {node}"
        );
    }
    assert_eq!(
        text(&get(&by_json, "/nodes/")),
        text(&get(&by_value, "/nodes/"))
    );
}
