//! The HTTP API (SPEC §2, §3, §10, §11) as one pure function: the request's facts and a
//! `Context` (the settings, a snapshot of the known nodes, the time, an RNG and the
//! registration token buckets) in, a decision out. No sockets, no disk, no clock here:
//! `server.rs` does the I/O.
//!
//! A request that changes the list does not answer at once: `handle` returns the `Change`
//! and how to word the answer; the store commits the change to disk and `Answer::finish`
//! turns the committed outcome into the response. With `--app`, a request for a path that is
//! not the API's is for the chain application behind the node (SPEC §13): `handle` says so
//! (`Reply::Forward`) and `server` forwards it with `app`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::membership::{Change, Committed, Outcome, Snapshot, vouched};
use crate::nodes::{Host, Node, NodeError};
use crate::policy::TokenBuckets;
use crate::response::Response;
use crate::store::PersistError;

/// Request bodies larger than this are refused with 413 (SPEC §3), in bytes.
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
    /// The `Seedmesh-Network` header, if any (SPEC §11).
    pub network: Option<&'a str>,
}

/// What a request is decided against.
pub struct Context<'a> {
    pub config: &'a ApiConfig,
    /// The committed table.
    pub snapshot: &'a Arc<Snapshot>,
    /// When the request arrived, for the token buckets.
    pub now: Instant,
    pub rng: &'a mut fastrand::Rng,
    /// SPEC §11's per-source token buckets for new registrations, shared by the workers.
    pub buckets: &'a Mutex<TokenBuckets>,
}

/// A request body, as the connection layer read it.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    Bytes(&'a [u8]),
    /// A node, already read: what a `Bytes` body holding its JSON (`Node`'s serialization)
    /// says, for a transport that carries nodes as values rather than text (the simulator's,
    /// which would otherwise write and read the same JSON millions of times). The server
    /// never makes one.
    Node(&'a Node),
    /// Over `MAX_BODY_BYTES`: not read.
    TooLarge,
    /// No body, because the request had neither `Content-Length` nor `Transfer-Encoding`
    /// (RFC 9112 §6.3). Node.js's `http.request` sends a `DELETE` body this way.
    Unframed,
}

/// The answer to a request that needs a node but came without a framed body.
pub const UNFRAMED: &str = "the request has no body (no Content-Length or Transfer-Encoding); send the node as JSON with a length";

/// The settings the API needs.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Most nodes one `GET /nodes/` answer holds (`--list_limit`).
    pub list_limit: usize,
    /// Accept a registration only for the caller's own address (`--verify_source`).
    pub verify_source: bool,
    /// Lets remote callers change the list with `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// `--network`: a registration naming another network is refused (SPEC §11).
    pub network: Option<String>,
    /// With `--app`: the paths that are not the API's are the chain application's, with
    /// request bodies of at most this many bytes (`--app_body_limit`; SPEC §13). `None`:
    /// they are 404.
    pub app_body_limit: Option<usize>,
}

/// What `handle` decided, and the label the request is counted under in `/metrics`.
#[derive(Debug)]
pub struct Decision {
    pub label: Label,
    pub reply: Reply,
}

/// The answer, or what must happen before it.
#[derive(Debug)]
pub enum Reply {
    /// The answer, ready.
    Now(Response),
    /// Commit `change` first, then word the answer with `answer.finish(result)`.
    Commit { change: Change, answer: Answer },
    /// The `/status` or `/metrics` report, which the server renders from its live counters.
    Report(Report),
    /// A request for the chain application behind this node (SPEC §13): the server forwards
    /// it and relays the answer.
    Forward(Forward),
}

/// A request to forward to the chain application (SPEC §13). The method, the headers and
/// the body are the request's own; `app::outbound` says which headers go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The request target as sent, origin-form (`/path?query`): the application gets the
    /// same.
    pub target: String,
    /// Whether the request has a body to forward (framed by `Content-Length` or chunked,
    /// perhaps empty); without one, none is sent either.
    pub with_body: bool,
}

/// Which report a request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Status,
    Metrics,
}

/// How to answer once a change is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `POST /`: the node as stored.
    Registered(Node),
    /// `POST /nodes/`, `DELETE /nodes/`: the whole list after the change.
    List,
    /// A registering `GET /nodes/`: the list after the change, sampled as a `GET /nodes/`.
    Listing { most: usize },
}

impl Answer {
    /// The response to a change that was committed (or failed to be).
    pub fn finish(
        self,
        result: Result<Committed, PersistError>,
        rng: &mut fastrand::Rng,
    ) -> Response {
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
            (_, Outcome::Refused(refusal)) => Response::error(400, refusal.to_string()),
            (_, Outcome::TooManyReferred) => Response::error(
                403,
                "your address group has registered as many nodes other than itself as it may (--reg_others); register your own address, or wait until those leave",
            ),
            (Answer::Registered(node), _) => Response::json(200, &node),
            (Answer::List, _) => Response::list(committed.snapshot),
            (Answer::Listing { most }, _) => listing(&committed.snapshot, most, rng),
        }
    }
}

/// What requests are counted under in `/metrics`: the route, or `Other` when none matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Root,
    Nodes,
    Random,
    Index,
    Status,
    Metrics,
    /// Forwarded to the chain application (SPEC §13).
    App,
    Other,
}

impl Label {
    /// Every label, in the order `/metrics` lists them.
    pub const ALL: [Label; 8] = [
        Label::Root,
        Label::Nodes,
        Label::Random,
        Label::Index,
        Label::Status,
        Label::Metrics,
        Label::App,
        Label::Other,
    ];

    /// The label's text in `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Root => "/",
            Label::Nodes => "/nodes/",
            Label::Random => "/nodes/random/",
            Label::Index => "/nodes/<i>/",
            Label::Status => "/status",
            Label::Metrics => "/metrics",
            Label::App => "app",
            Label::Other => "other",
        }
    }

    /// The label of a request target (path and optional query).
    pub fn of(target: &str) -> Label {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        Route::parse(path).map_or(Label::Other, Route::label)
    }

    /// The label of a request target for a process that forwards the paths that are not the
    /// API's to a chain application when `with_app` (SPEC §13): `App` for those.
    pub fn of_target(target: &str, with_app: bool) -> Label {
        match with_app && is_app_target(target) {
            true => Label::App,
            false => Label::of(target),
        }
    }
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

    fn label(self) -> Label {
        match self {
            Route::Root => Label::Root,
            Route::Nodes => Label::Nodes,
            Route::Random => Label::Random,
            Route::Index(_) => Label::Index,
            Route::Status => Label::Status,
            Route::Metrics => Label::Metrics,
        }
    }
}

/// Whether `path` (without its query) is one of the API's own: `/`, `/nodes` and every path
/// under `/nodes/`, `/status`, `/metrics`, with or without a trailing slash (SPEC §2, §13).
/// The API answers these (404 when no route matches, as under `/nodes/`); with `--app`, the
/// application answers the others.
pub fn is_api_path(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    matches!(path, "" | "/nodes" | "/status" | "/metrics") || path.starts_with("/nodes/")
}

/// Whether a request for `target` goes to the chain application when there is one: an
/// origin-form target (`/…`; not `*` or a `CONNECT` authority) outside the API's paths.
pub fn is_app_target(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    path.starts_with('/') && !is_api_path(path)
}

/// The body limit of a request for `target`, in bytes, decided from its head before any of
/// the body is read: `app_body_limit` (`--app_body_limit`) for the application's paths when
/// there is one, `MAX_BODY_BYTES` for the API's (SPEC §3, §13).
pub fn body_limit(target: &str, app_body_limit: Option<usize>) -> usize {
    match app_body_limit {
        Some(limit) if is_app_target(target) => limit,
        _ => MAX_BODY_BYTES,
    }
}

/// Decides the answer to `request`.
pub fn handle(context: &mut Context<'_>, request: &Request<'_>) -> Decision {
    let (path, query) = match request.target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.target, None),
    };
    if let Some(limit) = context.config.app_body_limit
        && is_app_target(request.target)
    {
        return Decision {
            label: Label::App,
            reply: forward(request, limit),
        };
    }
    let Some(route) = Route::parse(path) else {
        return Decision {
            label: Label::Other,
            reply: Reply::Now(Response::error(404, format!("no such path: {path}"))),
        };
    };
    let reply = decide(context, request, route, query).unwrap_or_else(Reply::Now);
    Decision {
        label: route.label(),
        reply,
    }
}

fn decide(
    context: &mut Context<'_>,
    request: &Request<'_>,
    route: Route,
    query: Option<&str>,
) -> Result<Reply, Response> {
    let (config, snapshot) = (context.config, context.snapshot);
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
        Body::Bytes(bytes) => Read::Json(bytes),
        Body::Node(node) => Read::Node(node),
        Body::TooLarge => {
            return Err(Response::error(
                413,
                format!("request body is over {} KiB", MAX_BODY_BYTES / 1024),
            ));
        }
        // Only GET and HEAD need no node.
        Body::Unframed if method != "GET" => return Err(Response::error(400, UNFRAMED)),
        Body::Unframed => Read::Json(b""),
    };
    let reply = match (route, method) {
        (Route::Root, "GET") => Reply::Now(Response::empty(200)),
        (Route::Root, _) => match registration(context, request, body.node()?)? {
            Registration::Known(node) => Reply::Now(Response::json(200, &node)),
            Registration::New(change, node) => Reply::Commit {
                change,
                answer: Answer::Registered(node),
            },
        },
        (Route::Nodes, "GET") => {
            let most = limit.unwrap_or(usize::MAX).min(config.list_limit);
            // The original's later version registers with a node as the body (SPEC §2);
            // an empty body or `{}` registers nothing.
            let node = body.optional_node()?;
            match node
                .map(|node| registration(context, request, node))
                .transpose()?
            {
                None | Some(Registration::Known(_)) => {
                    Reply::Now(listing(snapshot, most, context.rng))
                }
                Some(Registration::New(change, _)) => Reply::Commit {
                    change,
                    answer: Answer::Listing { most },
                },
            }
        }
        (Route::Nodes, _) => {
            if !may_change_list(config, request) {
                return Err(Response::error(
                    403,
                    "changing the list needs a loopback caller, or Authorization: Bearer <token> matching --admin_token",
                ));
            }
            let node = body.node()?;
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
        (Route::Random, _) => match snapshot.table.random_where(context.rng, vouched) {
            Some(node) => Reply::Now(Response::json(200, node)),
            None => return Err(Response::error(404, "no node is known yet")),
        },
        (Route::Status, _) => Reply::Report(Report::Status),
        (Route::Metrics, _) => Reply::Report(Report::Metrics),
        (Route::Index(i), _) => match snapshot.known().get(i) {
            Some(node) => Reply::Now(Response::json(200, node)),
            None => {
                return Err(Response::error(
                    404,
                    format!("no node at index {i}: {} known", snapshot.known().len()),
                ));
            }
        },
    };
    Ok(reply)
}

/// The decision for a request the chain application answers: forward it, unless its body is
/// over `limit` bytes (413, and the application never sees it).
fn forward(request: &Request<'_>, limit: usize) -> Reply {
    let with_body = match request.body {
        Body::TooLarge => {
            return Reply::Now(Response::error(
                413,
                format!(
                    "request body is over {} (--app_body_limit); it was not forwarded",
                    size(limit)
                ),
            ));
        }
        Body::Unframed => false,
        Body::Bytes(_) | Body::Node(_) => true,
    };
    Reply::Forward(Forward {
        target: request.target.to_owned(),
        with_body,
    })
}

/// `bytes` for people: `1 MiB`, `64 KiB`, or `1000 bytes`.
fn size(bytes: usize) -> String {
    match bytes {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A registration that passed every rule of the API: of a node already known (nothing to
/// write), or the change to commit: a node registering itself (new, or known only as
/// learned or referred), or a caller registering another node (a referral).
enum Registration {
    Known(Node),
    New(Change, Node),
}

/// Checks a node registering itself (`POST /`, or a `GET /nodes/` with a body): its network,
/// `--verify_source`, and the caller's token bucket when the node is new (SPEC §10, §11).
fn registration(
    context: &mut Context<'_>,
    request: &Request<'_>,
    node: Node,
) -> Result<Registration, Response> {
    let config = context.config;
    if let (Some(ours), Some(theirs)) = (&config.network, request.network)
        && theirs != ours
    {
        return Err(Response::error(
            403,
            format!("this is network {ours:?}, not {theirs:?} (Seedmesh-Network)"),
        ));
    }
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
    // A node registering itself, or someone else registering it (another address, or a
    // name, which a caller cannot be shown to be): a referral, counted against the caller's
    // address group and not vouched for until checked (SPEC §11: one source must not own the
    // answers by registering an address in every group).
    // A loopback caller stands for the operator, as for `POST /nodes/` (SPEC §10).
    let trusted = request.caller.to_canonical().is_loopback();
    let change = if trusted || is_own_address(&node, request.caller) {
        Change::Register(node.clone())
    } else {
        let by = Host::Ip(request.caller.to_canonical()).group();
        Change::Refer {
            node: node.clone(),
            by,
        }
    };
    // A registration of a known node changes nothing (unless a node registers itself where
    // it was only learned or referred): no need to wait for the disk, and re-announcing
    // costs no token.
    match context.snapshot.table.entry(&node) {
        Some(entry) if entry.source().vouches() || matches!(change, Change::Refer { .. }) => {
            return Ok(Registration::Known(node));
        }
        Some(_) => return Ok(Registration::New(change, node)),
        None => {}
    }
    let taken = context
        .buckets
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .try_take(request.caller, context.now);
    if let Err(wait) = taken {
        return Err(Response {
            retry_after: Some(wait.seconds),
            ..Response::error(
                429,
                format!(
                    "{} adds new nodes too fast (--reg_rate); try again in {} s",
                    request.caller.to_canonical(),
                    wait.seconds
                ),
            )
        });
    }
    Ok(Registration::New(change, node))
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

/// The `GET /nodes/` answer: every vouched node, oldest first (shared, not copied), when at
/// most `most` are known; otherwise a random sample of `most`, diverse across address groups
/// (SPEC §11).
///
/// Counting the vouched nodes would list them all, once per snapshot: at a seed, whose table
/// changes at every registration, that is the whole table again for every answer. A sample
/// of one more than `most` tells whether there are more, for the price of the sample; its
/// first `most` are the answer, as diverse as any prefix of a sample.
fn listing(snapshot: &Arc<Snapshot>, most: usize, rng: &mut fastrand::Rng) -> Response {
    if snapshot.table.len() > most {
        let mut sample = snapshot
            .table
            .sample_where(most.saturating_add(1), rng, vouched);
        if sample.len() > most {
            sample.truncate(most);
            return Response::sample(sample.into_iter().cloned().collect());
        }
    }
    Response::list(Arc::clone(snapshot))
}

/// A body that may hold a node: JSON text, or a node already read (`Body::Node`).
#[derive(Clone, Copy)]
enum Read<'a> {
    Json(&'a [u8]),
    Node(&'a Node),
}

impl Read<'_> {
    /// The node the body holds (SPEC §1), or 400 saying why it is not one.
    fn node(self) -> Result<Node, Response> {
        match self {
            Read::Json(bytes) => Node::from_json(bytes).map_err(bad_node),
            Read::Node(node) => Ok(node.clone()),
        }
    }

    /// The node of a body that may register one (`GET /nodes/`, SPEC §2): `None` for an empty
    /// body or `{}`.
    fn optional_node(self) -> Result<Option<Node>, Response> {
        match self {
            Read::Json(bytes) => Node::from_optional_json(bytes).map_err(bad_node),
            Read::Node(node) => Ok(Some(node.clone())),
        }
    }
}

fn bad_node(e: NodeError) -> Response {
    Response::error(400, e.to_string())
}

/// Whether `node` is the caller's own address (for `--verify_source`).
fn is_own_address(node: &Node, caller: IpAddr) -> bool {
    matches!(node.host, Host::Ip(ip) if ip.to_canonical() == caller.to_canonical())
}

/// `POST`/`DELETE /nodes/` act on someone else's behalf: loopback callers, or the admin token
/// (SPEC §10).
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
mod tests;
