//! seedmesh's fork of tiny_http 0.12.0 (package `seedmesh-tiny-http`; see `PATCHES.md`).
//!
//! The request/response API is tiny_http's: a `Server` whose `recv()` hands out `Request`s,
//! answered with `Request::respond(Response)`. What changed is underneath: every connection is
//! served by one thread out of a bounded budget; that thread reads the whole request (head
//! parsed by `httparse` and checked against RFC 9112, body within limits and deadlines) before
//! handing it to `recv()`, and writes the response itself. A worker calling `recv()` therefore
//! never blocks on a slow or hostile client. The answers the connection layer gives on its
//! own (400, 408, 414, 417, 431, 501, 503, 505) go through the user's `Refusals` hook, and
//! every answer's head is rendered in one place, with `Date` and its framing.
//!
//! ```no_run
//! let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
//! while let Ok(request) = server.recv() {
//!     let _ = request.respond(tiny_http::Response::from_string("hello"));
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use admission::{Admission, ConnId, Source};
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use head::Framing;
pub use refusal::{Cause, Refusal, Refusals};
pub use request::Request;
pub use response::{Response, SharedBody};

mod admission;
mod body;
mod client;
mod common;
mod head;
mod input;
mod refusal;
mod request;
mod response;
mod util;

/// Bounds on what one client can make the server spend.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most connections served at once. When they are all open, a new connection takes the
    /// place of the keep-alive connection that has waited longest for its next request (it
    /// is closed, as an idle timeout would close it); when none waits, the new one is
    /// answered `503 Service Unavailable` and closed at once. So clients that hold
    /// connections open between requests cannot lock out the others; a connection is never
    /// closed before it has been answered once.
    pub max_connections: usize,
    /// Most connections open at once from one source: an IPv4 address, or an IPv6 /64 (an
    /// IPv4-mapped IPv6 address counts as its IPv4 address). One more is answered `503`
    /// (`Cause::TooManyFromSource`, with `Retry-After`) and closed at once, so that one client
    /// cannot take every slot of `max_connections`.
    pub max_connections_per_source: usize,
    /// Most request-body bytes held in memory at once, all connections together, for the
    /// bodies larger than `max_body_bytes` (which only a `body_limit` can allow). Such a
    /// body counts whole for as long as its request lives: declared by `Content-Length`, it
    /// is counted before any of it is read (or `100 Continue` sent); chunked, as its chunks
    /// arrive. One that does not fit is answered `503` with `Retry-After`
    /// (`Cause::BodyBudget`) and the connection closes in stages. One source (as
    /// `max_connections_per_source` counts them) may hold at most a quarter of the budget,
    /// unless it is its only body. Bodies of at most `max_body_bytes` are not counted: each
    /// connection holds at most one, `max_connections` × `max_body_bytes` in all.
    pub body_budget_bytes: usize,
    /// A connection that sends nothing for this long is closed. A request must also arrive
    /// whole (head and body) within this time of its first byte, and a response that the
    /// client does not read within this time is abandoned.
    pub idle_timeout: Duration,
    /// Most bytes in a request line plus its headers; more is answered 431.
    pub max_head_bytes: usize,
    /// Most bytes in a request body. A larger body is never stored: the request is handed
    /// over with `Request::body_too_large()` set and an empty body, and the connection is
    /// closed in stages after the answer (see `linger_bytes`). `body_limit`, when set, decides
    /// instead.
    pub max_body_bytes: usize,
    /// Decides each request's body limit from its head (method and target), in place of
    /// `max_body_bytes`: for instance a larger one for the paths a server forwards elsewhere.
    /// Everything `max_body_bytes` says holds for the limit it returns. `None`:
    /// `max_body_bytes` for every request.
    pub body_limit: Option<BodyLimit>,
    /// Stack size of each connection thread.
    pub connection_stack_bytes: usize,
    /// When the server ends a connection, it first closes its sending side, then reads and
    /// discards what the client still sends, until the client closes, this many bytes have
    /// been discarded, or `linger_time` has passed (RFC 9112 §9.6). A client still sending a
    /// body too large thus reads the 413 instead of a connection reset.
    pub linger_bytes: usize,
    /// The longest a closing connection is read and discarded (see `linger_bytes`).
    pub linger_time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_connections_per_source: 64,
            body_budget_bytes: 64 * 1024 * 1024,
            idle_timeout: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            body_limit: None,
            connection_stack_bytes: 128 * 1024,
            linger_bytes: 4 * 1024 * 1024,
            linger_time: Duration::from_secs(2),
        }
    }
}

impl Limits {
    /// The body limit of a request with this method and target, in bytes.
    pub(crate) fn body_bytes(&self, method: &Method, target: &str) -> usize {
        match &self.body_limit {
            Some(BodyLimit(decide)) => decide(method, target),
            None => self.max_body_bytes,
        }
    }
}

/// A request's body limit in bytes, decided from its method and its target (origin form,
/// `/path?query`) once the head is read and before any of the body is. It runs on the
/// connection's thread for every request: it must be quick and must not block.
#[derive(Clone)]
pub struct BodyLimit(Arc<dyn Fn(&Method, &str) -> usize + Send + Sync>);

impl BodyLimit {
    /// The limit `decide(method, target)` returns, in bytes.
    pub fn new(decide: impl Fn(&Method, &str) -> usize + Send + Sync + 'static) -> BodyLimit {
        BodyLimit(Arc::new(decide))
    }
}

impl std::fmt::Debug for BodyLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BodyLimit(..)")
    }
}

/// The HTTP server: an accept thread, one thread per open connection (bounded by
/// `Limits::max_connections`), and a queue of complete requests that `recv()` pops.
pub struct Server {
    shared: Arc<Shared>,
    listening_addr: SocketAddr,
}

/// What the accept thread, the connection threads and the `Server` handle share.
pub(crate) struct Shared {
    /// Set once the server stops accepting; connection threads stop after their current request.
    pub(crate) closing: AtomicBool,
    /// Requests read and waiting for `recv()`.
    pub(crate) messages: Arc<MessagesQueue<Request>>,
    /// Connections currently open (each holds one connection thread).
    pub(crate) connections: AtomicUsize,
    /// Requests handed to `recv()` whose response is not yet written to the socket.
    pub(crate) in_flight: AtomicUsize,
    /// The open connections by source, the idle ones, and the body bytes counted against
    /// `Limits::body_budget_bytes` (see `admission`).
    pub(crate) admission: Mutex<Admission<Arc<TcpStream>>>,
    /// Body bytes counted against `Limits::body_budget_bytes` now (a copy, read without the
    /// lock).
    pub(crate) body_bytes: AtomicUsize,
    pub(crate) limits: Limits,
    /// Words (and lets the user count) the answers the connection layer gives on its own.
    pub(crate) refusals: Refusals,
}

/// Decrements a counter when dropped, so that a panicking thread still gives its slot back.
pub(crate) struct Slot<'a>(pub(crate) &'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Server {
    /// Binds `addr` and serves it with the default `Limits`.
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        let listener = TcpListener::bind(addr)?;
        Ok(Self::from_listener(listener, Limits::default())?)
    }

    /// Serves an already bound listener; the connection layer's own answers are
    /// `Response::json_error`s.
    pub fn from_listener(listener: TcpListener, limits: Limits) -> IoResult<Server> {
        Self::from_listener_with(listener, limits, refusal::default_refusals())
    }

    /// Serves an already bound listener; `refusals` words each answer the connection layer
    /// gives on its own, and can count and log it (see `Refusal`).
    pub fn from_listener_with(
        listener: TcpListener,
        limits: Limits,
        refusals: Refusals,
    ) -> IoResult<Server> {
        let listening_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            closing: AtomicBool::new(false),
            messages: MessagesQueue::with_capacity(64),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            admission: Mutex::new(Admission::new()),
            body_bytes: AtomicUsize::new(0),
            limits,
            refusals,
        });
        let inside = Arc::clone(&shared);
        thread::Builder::new()
            .name("http-accept".into())
            .stack_size(64 * 1024)
            .spawn(move || accept_loop(&listener, &inside))?;
        Ok(Server {
            shared,
            listening_addr,
        })
    }

    /// The address the listener is bound to (with the real port when bound to port 0).
    #[inline]
    pub fn server_addr(&self) -> SocketAddr {
        self.listening_addr
    }

    /// Connections open right now.
    pub fn num_connections(&self) -> usize {
        self.shared.connections.load(SeqCst)
    }

    /// Keep-alive connections waiting for their next request: those a newcomer may close to
    /// take a full server's slot (the one idle longest first). A connection whose next request
    /// has begun to arrive is not among them.
    pub fn num_idle_connections(&self) -> usize {
        admission::lock(&self.shared).idle_count()
    }

    /// Requests read but not yet answered on their socket.
    pub fn requests_in_flight(&self) -> usize {
        self.shared.in_flight.load(SeqCst)
    }

    /// Request-body bytes counted against `Limits::body_budget_bytes` right now.
    pub fn body_bytes_held(&self) -> usize {
        self.shared.body_bytes.load(SeqCst)
    }

    /// Blocks until the next request is available.
    pub fn recv(&self) -> IoResult<Request> {
        match self.shared.messages.pop() {
            Some(rq) => Ok(rq),
            None => Err(IoError::other("thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout.
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        Ok(self.shared.messages.pop_timeout(timeout))
    }

    /// Unblocks one thread blocked in `recv()`, after the requests already queued.
    pub fn unblock(&self) {
        self.shared.messages.unblock();
    }

    /// Stops accepting connections: the listening socket is closed, so new connections are
    /// refused. Open connections finish the request they are reading, then close.
    pub fn stop_accepting(&self) {
        if self.shared.closing.swap(true, SeqCst) {
            return;
        }
        // Wake the accept thread, blocked in accept(), with a connection of our own.
        let _ =
            TcpStream::connect_timeout(&wake_address(self.listening_addr), Duration::from_secs(1));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// The address to connect to in order to reach a listener bound to `bound`.
fn wake_address(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// Accepts connections until the server closes. An accept error never ends the loop: running
/// out of file descriptors, say, is waited out, where upstream tiny_http stopped serving.
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut last_error_report: Option<Instant> = None;
    // The connection threads not yet joined.
    let mut threads: Vec<(ConnId, JoinHandle<()>)> = Vec::new();
    loop {
        let accepted = listener.accept();
        if shared.closing.load(SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, peer)) => admit(stream, peer, shared, &mut threads),
            Err(e) => match e.kind() {
                IoErrorKind::Interrupted
                | IoErrorKind::ConnectionAborted
                | IoErrorKind::ConnectionReset => {}
                _ => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: nothing to do but wait for resources.
                    let quiet =
                        last_error_report.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
                    if !quiet {
                        log::error!("cannot accept connections: {}", e);
                        last_error_report = Some(Instant::now());
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            },
        }
    }
}

/// Starts a connection thread for `stream`, or turns the connection away: its source has
/// `max_connections_per_source` open, or the budget of connections is spent and none is idle
/// between requests. When the budget is spent and one is idle, the one idle longest is closed
/// and its thread joined first (it ends at once: see `client::serve`). A connection thread
/// counts against the budget until it has ended and been joined, not merely until its
/// connection closed: otherwise, while connections come and go, threads still ending would
/// let the number of threads exceed the budget.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    threads: &mut Vec<(ConnId, JoinHandle<()>)>,
) {
    let limits = &shared.limits;
    reap(threads);
    let configured = stream
        .set_nodelay(true)
        .and_then(|_| stream.set_read_timeout(Some(limits.idle_timeout)))
        .and_then(|_| stream.set_write_timeout(Some(limits.idle_timeout)));
    if configured.is_err() {
        return;
    }
    // Shared with the admission state, to shut it should it be chosen to make room.
    let stream = Arc::new(stream);
    let source = Source::of(peer.ip());
    let slots_full = threads.len() >= limits.max_connections;
    let admitted = admission::lock(shared).admit(source, Arc::clone(&stream), slots_full, limits);
    let id = match admitted {
        Ok((id, evicted)) => {
            if let Some(evicted) = evicted {
                let _ = evicted.handle.shutdown(std::net::Shutdown::Both);
                if let Some(at) = threads.iter().position(|(id, _)| *id == evicted.id) {
                    let _ = threads.swap_remove(at).1.join();
                }
                log::debug!("closed the connection idle longest for one from {peer}");
            }
            id
        }
        Err(cause) => return turn_away(&stream, peer, shared, cause),
    };
    shared.connections.fetch_add(1, SeqCst);
    let inside = Arc::clone(shared);
    // The closure owns the stream; if spawning fails it is dropped, which closes it.
    let spawned = thread::Builder::new()
        .name("http-conn".into())
        .stack_size(limits.connection_stack_bytes)
        .spawn(move || {
            let _slot = Slot(&inside.connections);
            let _registered = Registered(&inside, id);
            client::serve(stream, peer, id, &inside);
        });
    match spawned {
        Ok(thread) => threads.push((id, thread)),
        Err(e) => {
            shared.connections.fetch_sub(1, SeqCst);
            admission::lock(shared).close(id);
            static REPORTED: Mutex<Option<Instant>> = Mutex::new(None);
            let mut last = REPORTED.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                log::error!("cannot start a connection thread: {}", e);
                *last = Some(Instant::now());
            }
        }
    }
}

/// Unregisters a connection from the admission state when its thread ends, a panic included.
struct Registered<'a>(&'a Shared, ConnId);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        admission::lock(self.0).close(self.1);
    }
}

/// Joins the connection threads that have finished serving; each takes at most the moment
/// it needs to end.
fn reap(threads: &mut Vec<(ConnId, JoinHandle<()>)>) {
    let mut i = 0;
    while i < threads.len() {
        if threads[i].1.is_finished() {
            let _ = threads.swap_remove(i).1.join();
        } else {
            i += 1;
        }
    }
}

/// Answers 503 on a connection we will not serve, spending at most `TURN_AWAY_TIME` on it.
/// The accept thread cannot linger as a connection thread does: it discards what the client
/// has sent so far, answers, closes its sending side, and discards once more before closing.
fn turn_away(mut stream: &TcpStream, peer: SocketAddr, shared: &Shared, cause: Cause) {
    let failure = match cause {
        Cause::TooManyFromSource => refusal::Failure::new(
            503,
            Cause::TooManyFromSource,
            "too many open connections from your address; close some, or try again later",
        ),
        _ => refusal::Failure::new(
            503,
            Cause::TooManyConnections,
            "too many open connections; try again later",
        ),
    };
    let answer = client::refusal_answer(shared, peer, failure, None, HTTPVersion(1, 1), true);
    let discard = |mut stream: &TcpStream| {
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            if !matches!(stream.read(&mut scratch), Ok(n) if n > 0) {
                break;
            }
        }
    };
    if stream.set_nonblocking(true).is_ok() {
        discard(stream);
    }
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(client::TURN_AWAY_TIME));
    let body: &[u8] = answer.body.as_ref().map_or(&[], |body| (**body).as_ref());
    let _ = stream
        .write_all(&answer.head)
        .and_then(|()| stream.write_all(body));
    let _ = stream.shutdown(std::net::Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        discard(stream);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Server>();
    }
}
