//! The answers the connection layer gives on its own, without handing the request to
//! `Server::recv()`: refusals of requests it cannot or will not read (400, 408, 414, 417, 431,
//! 501, 503, 505) and the 500 for a request its user dropped unanswered. Each goes through the
//! user's `Refusals` hook, which words the answer and can count and log it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::common::{Method, StatusCode};
use crate::response::Response;

/// Why the connection layer answered on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// `Limits::max_connections` connections were already open and none was idle between
    /// requests: 503, answered on the accept thread before anything is read, and the
    /// connection closed.
    TooManyConnections,
    /// The client's source (an IPv4 address, an IPv6 /64) already had
    /// `Limits::max_connections_per_source` connections open: 503 with `Retry-After`,
    /// answered on the accept thread before anything is read, and the connection closed.
    TooManyFromSource,
    /// The request's body would take the bytes held in memory for bodies over
    /// `Limits::body_budget_bytes` (or its source over its share of them): 503 with
    /// `Retry-After`, answered before the body is read (a chunked one: once it grows too
    /// large), and the connection closed in stages.
    BodyBudget,
    /// The server has begun stopping (`Server::stop_accepting`): 503.
    Stopping,
    /// The request did not arrive whole within `Limits::idle_timeout` of its first byte: 408.
    Timeout,
    /// The request line or the head is over `Limits::max_head_bytes` (414, 431), or has more
    /// than 100 header fields (431).
    HeadTooLarge,
    /// The request breaks HTTP/1.1's message syntax or framing (RFC 9112): 400.
    Malformed,
    /// A protocol version, transfer coding or expectation this server does not implement:
    /// 505, 501 or 417.
    Unsupported,
    /// The client closed or reset the connection in the middle of a request: 400 (which it
    /// will seldom read).
    Interrupted,
    /// The user dropped a `Request` without answering it: 500.
    Unanswered,
}

/// One answer the connection layer gives on its own, as its `Refusals` hook sees it.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    /// The status answered: 400, 408, 414, 417, 431, 500, 501, 503 or 505.
    pub status: StatusCode,
    /// One sentence, lowercase, saying what was wrong, e.g. `"request head too large"`.
    pub reason: &'a str,
    /// Why, as data: tells a 503 over `max_connections` from a 503 while stopping.
    pub cause: Cause,
    /// The request's method, when its request line was read.
    pub method: Option<&'a Method>,
    /// The request target as received, when its request line was read.
    pub target: Option<&'a str>,
    /// The client.
    pub peer: SocketAddr,
    /// Connections being served at that moment (for `TooManyConnections`, the ones that
    /// filled the limit; the refused one is not among them).
    pub connections: usize,
    /// Seconds after which the client may try again, for a refusal that passes
    /// (`TooManyFromSource`, `BodyBudget`): the connection layer sends it as `Retry-After`
    /// (RFC 9110 §10.2.3) unless the hook's response has one.
    pub retry_after: Option<u32>,
}

impl Cause {
    /// The `Retry-After` a refusal for this cause carries, in seconds.
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Cause::TooManyFromSource | Cause::BodyBudget => Some(1),
            _ => None,
        }
    }
}

/// Words the answer to a `Refusal`, and may count or log it. Called once per refusal, on the
/// connection's thread (on the accept thread for `TooManyConnections` and
/// `TooManyFromSource`): it must be quick and
/// must not block. The connection layer adds the framing (`Date`, `Content-Length`,
/// `Connection: close`) and always closes the connection after the answer, except for 500
/// `Unanswered`, which keeps it as the request asked.
pub type Refusals = Arc<dyn Fn(&Refusal<'_>) -> Response + Send + Sync>;

/// The hook used when the user gives none: `{"error":"<reason>"}` as JSON.
pub(crate) fn default_refusals() -> Refusals {
    Arc::new(|refusal: &Refusal<'_>| Response::json_error(refusal.status, refusal.reason))
}

/// A request the connection layer will not hand over, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
    pub(crate) cause: Cause,
}

impl Failure {
    pub(crate) const fn new(status: u16, cause: Cause, reason: &'static str) -> Failure {
        Failure {
            status,
            reason,
            cause,
        }
    }
}

/// `Err(Failure)` for a malformed request (400).
pub(crate) fn malformed<T>(reason: &'static str) -> Result<T, Failure> {
    Err(Failure::new(400, Cause::Malformed, reason))
}
