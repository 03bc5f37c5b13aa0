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
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::membership::{Change, Committed, Outcome, Snapshot, vouched};
use crate::nodes::{Node, NodeError};
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
                // An index too big for a number was read as usize::MAX: not echoed as such.
                let at = match i {
                    usize::MAX => "that index".to_owned(),
                    i => format!("index {i}"),
                };
                let known = snapshot.known().len();
                return Err(Response::error(
                    404,
                    format!("no node at {at}: {known} known"),
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

mod paths;
mod trust;

use paths::Route;
pub use paths::{Label, body_limit, is_api_path, is_app_target};
use trust::{Registration, may_change_list, registration};

#[cfg(test)]
mod tests;
