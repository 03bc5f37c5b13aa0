//! The HTTP API (SPEC §2, §3, §10) as one function: a request as plain data in, an answer as
//! plain data out. No sockets here; `server.rs` does the HTTP.
//!
//! A request that changes the list does not answer at once: `handle` returns the `Change` and
//! how to word the answer, the store commits the change to disk, and `Answer::finish` turns the
//! committed outcome into the response.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::nodes::{Host, Node, NodeError};
use crate::report::{self, Facts, Load, Profile};
use crate::stats::Stats;
use crate::store::{Change, Committed, Outcome, PersistError, Snapshot, Store};

/// Request bodies larger than this are refused with 413 without being read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request, as plain data.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The request target as sent: path and optional query.
    pub target: &'a str,
    pub body: Body<'a>,
    /// The TCP source address of the caller.
    pub caller: IpAddr,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The server's load when the request arrived, for `/status` and `/metrics`.
    pub load: Load,
}

#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// Over `MAX_BODY_BYTES`: not read.
    TooLarge,
    /// No body, because the request had neither `Content-Length` nor `Transfer-Encoding`
    /// (RFC 9112 §6.3). Node.js's `http.request` sends a `DELETE` body this way.
    Unframed,
}

/// The answer to a request that needs a node but came without a framed body.
pub const UNFRAMED: &str = "the request has no body (no Content-Length or Transfer-Encoding); send the node as JSON with a length";

/// A response, as plain data.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// `Some("application/json")` for every JSON body.
    pub content_type: Option<&'static str>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    pub body: Payload,
}

/// A response body.
#[derive(Debug, Clone)]
pub enum Payload {
    Empty,
    Owned(Vec<u8>),
    /// The committed list's JSON, shared rather than copied.
    List(Arc<Snapshot>),
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        match self {
            Payload::Empty => &[],
            Payload::Owned(bytes) => bytes,
            Payload::List(snapshot) => &snapshot.json,
        }
    }
}

impl Response {
    fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            allow: None,
            body: Payload::Empty,
        }
    }

    fn json(status: u16, value: &impl Serialize) -> Response {
        // Serializing our own types to memory cannot fail.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        Response {
            status,
            content_type: Some("application/json"),
            allow: None,
            body: Payload::Owned(bytes),
        }
    }

    fn list(snapshot: Arc<Snapshot>) -> Response {
        Response {
            status: 200,
            content_type: Some("application/json"),
            allow: None,
            body: Payload::List(snapshot),
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        #[derive(Serialize)]
        struct ErrorBody {
            error: String,
        }
        Response::json(
            status,
            &ErrorBody {
                error: message.into(),
            },
        )
    }

    fn method_not_allowed(method: &str, allow: &'static str) -> Response {
        let mut response = Response::error(
            405,
            format!("method {method} is not allowed here; allowed: {allow}"),
        );
        response.allow = Some(allow);
        response
    }
}

/// What `handle` decided.
#[derive(Debug)]
pub enum Reply {
    /// The answer, ready.
    Now(Response),
    /// Commit `change` first, then word the answer with `answer.finish(result)`.
    Commit { change: Change, answer: Answer },
}

/// How to answer once a change is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `POST /`: the node as stored.
    Registered(Node),
    /// `POST /nodes/`, `DELETE /nodes/`: the whole list after the change.
    List,
}

impl Answer {
    pub fn finish(self, result: Result<Committed, PersistError>) -> Response {
        let committed = match result {
            Ok(committed) => committed,
            Err(e) => return Response::error(500, format!("{e}; nothing was changed")),
        };
        match (self, committed.outcome) {
            (_, Outcome::Full) => Response::error(
                507,
                "the known-node table is full (--max_nodes); nothing was added",
            ),
            (_, Outcome::IsSelf) => Response::error(
                400,
                "that is this server's own address; a server never lists itself",
            ),
            (Answer::Registered(node), _) => Response::json(200, &node),
            (Answer::List, _) => Response::list(committed.snapshot),
        }
    }
}

/// The settings the API needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Most nodes one `GET /nodes/` answer holds.
    pub list_limit: usize,
    /// Accept `POST /` only for the caller's own address.
    pub verify_source: bool,
    /// Lets remote callers change the list with `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
}

/// What the API runs against.
pub struct Api {
    pub config: ApiConfig,
    pub store: Arc<Store>,
    /// Who this process is, for `/status` and `/metrics`.
    pub profile: Profile,
    pub stats: Arc<Stats>,
}

/// The routes, with the methods each allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Root,
    Nodes,
    Random,
    Index(usize),
    Status,
    Metrics,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let path = path.strip_suffix('/').unwrap_or(path);
        match path {
            "" => Some(Route::Root),
            "/nodes" => Some(Route::Nodes),
            "/nodes/random" => Some(Route::Random),
            "/status" => Some(Route::Status),
            "/metrics" => Some(Route::Metrics),
            _ => {
                let index = path.strip_prefix("/nodes/")?;
                if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // More digits than usize holds is simply out of range.
                Some(Route::Index(index.parse().unwrap_or(usize::MAX)))
            }
        }
    }

    fn allow(self) -> &'static str {
        match self {
            Route::Root => "GET, HEAD, POST",
            Route::Nodes => "GET, HEAD, POST, DELETE",
            Route::Random | Route::Index(_) | Route::Status | Route::Metrics => "GET, HEAD",
        }
    }

    /// The label requests to this route are counted under (see `stats::ROUTES`).
    fn label(self) -> &'static str {
        match self {
            Route::Root => "/",
            Route::Nodes => "/nodes/",
            Route::Random => "/nodes/random/",
            Route::Index(_) => "/nodes/<i>/",
            Route::Status => "/status",
            Route::Metrics => "/metrics",
        }
    }
}

/// The label a request target is counted under in `/metrics`.
pub fn route_label(target: &str) -> &'static str {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Route::parse(path).map_or("other", Route::label)
}

/// Decides the answer to `request`.
pub fn handle(api: &Api, request: &Request<'_>) -> Reply {
    match decide(api, request) {
        Ok(reply) => reply,
        Err(response) => Reply::Now(response),
    }
}

fn decide(api: &Api, request: &Request<'_>) -> Result<Reply, Response> {
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.target, None),
    };
    let route =
        Route::parse(path).ok_or_else(|| Response::error(404, format!("no such path: {path}")))?;
    let method = match request.method {
        "HEAD" => "GET",
        method => method,
    };
    let allowed = matches!(
        (route, method),
        (_, "GET") | (Route::Root | Route::Nodes, "POST") | (Route::Nodes, "DELETE")
    );
    if !allowed {
        return Err(Response::method_not_allowed(request.method, route.allow()));
    }
    let limit = parse_query(query, route == Route::Nodes && method == "GET")?;
    let body = match request.body {
        Body::Bytes(bytes) => bytes,
        Body::TooLarge => {
            return Err(Response::error(
                413,
                format!("request body is over {} KiB", MAX_BODY_BYTES / 1024),
            ));
        }
        // Only GET and HEAD need no node.
        Body::Unframed if method != "GET" => return Err(Response::error(400, UNFRAMED)),
        Body::Unframed => b"",
    };
    let snapshot = || api.store.snapshot();
    let config = &api.config;
    let reply = match (route, method) {
        (Route::Root, "GET") => Reply::Now(Response::empty(200)),
        (Route::Root, _) => {
            let node = parse_node(body)?;
            if config.verify_source && !is_own_address(&node, request.caller) {
                return Err(Response::error(
                    403,
                    format!(
                        "--verify_source is on: you may register only your own address {}, not {}",
                        request.caller.to_canonical(),
                        node.host
                    ),
                ));
            }
            // A registration of a known node changes nothing: no need to wait for the disk.
            if snapshot().nodes.contains(&node) {
                return Ok(Reply::Now(Response::json(200, &node)));
            }
            Reply::Commit {
                change: Change::Add(node.clone()),
                answer: Answer::Registered(node),
            }
        }
        (Route::Nodes, "GET") => Reply::Now(list(&snapshot(), limit, config.list_limit)),
        (Route::Nodes, _) => {
            if !may_change_list(config, request) {
                return Err(Response::error(
                    403,
                    "changing the list needs a loopback caller, or Authorization: Bearer <token> matching --admin_token",
                ));
            }
            let node = parse_node(body)?;
            let change = if method == "POST" {
                Change::Add(node)
            } else {
                Change::Remove(node)
            };
            Reply::Commit {
                change,
                answer: Answer::List,
            }
        }
        (Route::Random, _) => {
            let snapshot = snapshot();
            let mut rng = fastrand::Rng::new();
            match snapshot.nodes.random(&mut rng) {
                Some(node) => Reply::Now(Response::json(200, node)),
                None => return Err(Response::error(404, "no node is known yet")),
            }
        }
        (Route::Status, _) => {
            Reply::Now(Response::json(200, &report::status(&facts(api, request))))
        }
        (Route::Metrics, _) => Reply::Now(Response {
            status: 200,
            content_type: Some(report::METRICS_CONTENT_TYPE),
            allow: None,
            body: Payload::Owned(report::metrics(&facts(api, request)).into_bytes()),
        }),
        (Route::Index(i), _) => {
            let snapshot = snapshot();
            match snapshot.nodes.get(i) {
                Some(node) => Reply::Now(Response::json(200, node)),
                None => {
                    return Err(Response::error(
                        404,
                        format!("no node at index {i}: {} known", snapshot.nodes.len()),
                    ));
                }
            }
        }
    };
    Ok(reply)
}

fn facts<'a>(api: &'a Api, request: &Request<'_>) -> Facts<'a> {
    Facts {
        profile: &api.profile,
        stats: &api.stats,
        store: &api.store,
        load: request.load,
    }
}

/// Parses the query string: only `GET /nodes/` takes one parameter, `limit`.
fn parse_query(query: Option<&str>, takes_limit: bool) -> Result<Option<usize>, Response> {
    let mut limit = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "limit" || !takes_limit {
            return Err(Response::error(
                400,
                format!("unknown query parameter {key:?}; only GET /nodes/ takes one: limit"),
            ));
        }
        if limit.is_some() {
            return Err(Response::error(400, "limit is given twice"));
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Response::error(
                400,
                format!("limit must be a non-negative integer, got {value:?}"),
            ));
        }
        limit = Some(value.parse().unwrap_or(usize::MAX));
    }
    Ok(limit)
}

/// The `GET /nodes/` answer: the whole list (shared, not copied) when it fits, otherwise a
/// uniformly random sample.
fn list(snapshot: &Arc<Snapshot>, limit: Option<usize>, list_limit: usize) -> Response {
    let most = limit.unwrap_or(usize::MAX).min(list_limit);
    if snapshot.nodes.len() <= most {
        return Response::list(Arc::clone(snapshot));
    }
    let mut rng = fastrand::Rng::new();
    Response::json(200, &snapshot.nodes.sample(most, &mut rng))
}

fn parse_node(body: &[u8]) -> Result<Node, Response> {
    Node::from_json(body).map_err(|e: NodeError| Response::error(400, e.to_string()))
}

/// Whether `node` is the caller's own address (for `--verify_source`).
fn is_own_address(node: &Node, caller: IpAddr) -> bool {
    matches!(node.host, Host::Ip(ip) if ip.to_canonical() == caller.to_canonical())
}

/// `POST`/`DELETE /nodes/` act on someone else's behalf: loopback callers, or the admin token.
fn may_change_list(config: &ApiConfig, request: &Request<'_>) -> bool {
    if request.caller.to_canonical().is_loopback() {
        return true;
    }
    let (Some(expected), Some(header)) = (&config.admin_token, request.authorization) else {
        return false;
    };
    let presented = match header.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return false,
    };
    constant_time_eq(presented.as_bytes(), expected.as_bytes())
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::store::StoreOptions;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    /// An API over a store in its own temporary directory, removed on drop.
    struct Fixture {
        api: Api,
        dir: PathBuf,
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn fixture(name: &str, max_nodes: usize, config: ApiConfig) -> Fixture {
        let dir =
            std::env::temp_dir().join(format!("seedmesh-routes-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = Store::open(StoreOptions {
            dir: dir.clone(),
            file_name: "nodes.json".into(),
            max_nodes,
            own: vec![Node::new("127.0.0.1", 42020).unwrap()],
        })
        .unwrap();
        let api = Api {
            config,
            store: Arc::new(store),
            profile: profile(),
            stats: Arc::new(Stats::default()),
        };
        Fixture { api, dir }
    }

    fn profile() -> Profile {
        let Ok(config::Command::Run(settings)) = config::parse(config::Kind::Dns, Vec::new())
        else {
            panic!("the defaults parse")
        };
        Profile {
            role: "dns",
            node: Some(Node::new("127.0.0.1", 42020).unwrap()),
            version: "0.0.0-test",
            settings: *settings,
        }
    }

    fn config() -> ApiConfig {
        ApiConfig {
            list_limit: 1000,
            verify_source: false,
            admin_token: Some("s3cret".into()),
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
            load: Load::default(),
        };
        match handle(&f.api, &request) {
            Reply::Now(response) => response,
            Reply::Commit { change, answer } => answer.finish(f.api.store.apply(change)),
        }
    }

    fn get(f: &Fixture, target: &str) -> Response {
        call(f, "GET", target, "", LOCAL, None)
    }

    fn text(response: &Response) -> String {
        String::from_utf8(response.body.as_ref().to_vec()).unwrap()
    }

    fn json(response: &Response) -> serde_json::Value {
        assert_eq!(
            response.content_type,
            Some("application/json"),
            "{}",
            text(response)
        );
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
        let f = fixture("root", 10, config());
        for method in ["GET", "HEAD"] {
            let response = call(&f, method, "/", "", REMOTE, None);
            assert_eq!(response.status, 200);
            assert!(response.body.as_ref().is_empty());
        }
    }

    #[test]
    fn registration_stores_the_canonical_node_and_lists_it() {
        let f = fixture("register", 10, config());
        let response = call(
            &f,
            "POST",
            "/",
            r#"{"ip_address": "0:0:0:0:0:0:0:1", "port": 55000}"#,
            REMOTE,
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
            load: Load::default(),
        };
        assert!(matches!(handle(&f.api, &request), Reply::Now(r) if r.status == 200));
    }

    #[test]
    fn invalid_bodies_are_400_with_a_reason_and_change_nothing() {
        let f = fixture("invalid", 10, config());
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
            "verify",
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
            "list",
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
        let f = fixture("query", 10, config());
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
        let f = fixture("pick", 10, config());
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
        assert_eq!(get(&f, "/nodes/99999999999999999999999/").status, 404);
    }

    #[test]
    fn unknown_paths_are_404() {
        let f = fixture("404", 10, config());
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
        let f = fixture("405", 10, config());
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
        let f = fixture("change", 10, config());
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
        let f = fixture("trust", 10, config());
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Basic s3cret"),
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
                Some("Bearer s3cret")
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
                Some("bearer  s3cret ")
            )),
            Vec::<u64>::new()
        );
        let loopback6 = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
        assert_eq!(
            call(&f, "POST", "/nodes/", &node(2), loopback6, None).status,
            200
        );

        let without = fixture(
            "trust-none",
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
        let f = fixture("413", 10, config());
        for (method, target) in [("POST", "/"), ("POST", "/nodes/"), ("DELETE", "/nodes/")] {
            let request = Request {
                method,
                target,
                body: Body::TooLarge,
                caller: LOCAL,
                authorization: None,
                load: Load::default(),
            };
            let Reply::Now(response) = handle(&f.api, &request) else {
                panic!("no commit expected")
            };
            assert_eq!(response.status, 413);
            assert!(error(&response).contains("64 KiB"));
        }
    }

    #[test]
    fn a_full_table_is_507_and_unchanged() {
        let f = fixture("507", 2, config());
        call(&f, "POST", "/", &node(1), REMOTE, None);
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
        let f = fixture("self", 10, config());
        for (method, target) in [("POST", "/"), ("POST", "/nodes/")] {
            let response = call(&f, method, target, &node(42020), LOCAL, None);
            assert_eq!(response.status, 400, "{method} {target}");
            assert!(error(&response).contains("own address"));
        }
        assert!(ports(&get(&f, "/nodes/")).is_empty());
    }

    #[test]
    fn a_failed_write_is_500_and_changes_nothing() {
        let f = fixture("500", 10, config());
        call(&f, "POST", "/nodes/", &node(1), LOCAL, None);
        std::fs::create_dir(f.dir.join("nodes.json.tmp")).unwrap();
        for (method, target, body) in [
            ("POST", "/", node(2)),
            ("POST", "/nodes/", node(2)),
            ("DELETE", "/nodes/", node(1)),
        ] {
            let response = call(&f, method, target, &body, LOCAL, None);
            assert_eq!(response.status, 500, "{method} {target}");
            assert!(
                error(&response).contains("could not save"),
                "{}",
                error(&response)
            );
        }
        assert_eq!(ports(&get(&f, "/nodes/")), vec![1]);
    }

    #[test]
    fn status_and_metrics_report_the_list_and_allow_only_reads() {
        let f = fixture("report", 10, config());
        call(&f, "POST", "/nodes/", &node(1), LOCAL, None);
        let status = json(&get(&f, "/status"));
        assert_eq!(status["role"], "dns");
        assert_eq!(status["known"], 1);
        assert_eq!(status["totals"]["changes"], 1);
        assert_eq!(status["last_round"], serde_json::Value::Null);
        let metrics = get(&f, "/metrics/");
        assert_eq!(metrics.content_type, Some(report::METRICS_CONTENT_TYPE));
        assert!(text(&metrics).contains("\nseedmesh_known_nodes 1\n"));
        for target in ["/status", "/metrics"] {
            let response = call(&f, "POST", target, "", LOCAL, None);
            assert_eq!((response.status, response.allow), (405, Some("GET, HEAD")));
            assert_eq!(get(&f, &format!("{target}?verbose=1")).status, 400);
        }
        assert_eq!(route_label("/status?x"), "/status");
        assert_eq!(route_label("/nodes/12/"), "/nodes/<i>/");
        assert_eq!(route_label("/favicon.ico"), "other");
    }
}
