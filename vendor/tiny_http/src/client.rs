//! One connection, served by one thread: read a request whole (head and body, within the
//! `Limits`), hand it to `Server::recv()`, wait for the answer, write it, and repeat while the
//! connection persists. All socket I/O happens here, so the worker that answers a request
//! only ever touches memory. A connection the server ends is closed in stages (RFC 9112
//! §9.6), so that a client still sending reads the last answer instead of a reset.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::admission::{self, BodyHold, ConnId, Source};
use crate::body;
use crate::common::{HTTPVersion, Header, Method, StatusCode};
use crate::head::{self, BadHead, Framing, Head};
use crate::input::Input;
use crate::refusal::{Cause, Failure, Refusal};
use crate::request::Request;
use crate::response::{Answering, Rendered};
use crate::{Limits, Shared, Slot};

/// How a connection ended, for what must happen to its socket.
enum End {
    /// The client closed, went idle, or the server is stopping between requests: nothing
    /// is owed, close.
    Quiet,
    /// The server answered and ends the connection: close in stages.
    Answered,
    /// The socket failed while writing: close.
    Broken,
}

/// Serves one connection, registered as `id`, until the client closes it, stays idle past
/// the idle timeout, breaks the protocol, or the server stops, or until the accept thread
/// closes it to make room while it waits for a next request (it then ends at once, without
/// serving what may have arrived).
pub(crate) fn serve(stream: Arc<TcpStream>, peer: SocketAddr, id: ConnId, shared: &Arc<Shared>) {
    let limits = &shared.limits;
    let mut input = Input::new(stream);
    let end = serve_requests(&mut input, peer, id, shared);
    if let End::Answered = end {
        let lingered = input.linger(limits.linger_bytes, limits.linger_time);
        log::trace!("closed {peer} in stages: {lingered:?}");
    }
}

fn serve_requests(input: &mut Input, peer: SocketAddr, id: ConnId, shared: &Arc<Shared>) -> End {
    let limits = &shared.limits;
    let source = Source::of(peer.ip());
    let mut answered = false;
    loop {
        if shared.closing.load(SeqCst) {
            return End::Quiet;
        }
        // Between requests a kept-alive connection may be closed to make room for a newcomer:
        // it says so while it waits, and asks once the next request has begun.
        if input.buffered().is_empty() {
            if answered {
                admission::lock(shared).idle(id, Instant::now());
            }
            let arrived = await_request(input, limits);
            let chosen = answered && !admission::lock(shared).busy(id);
            if !arrived || chosen {
                return End::Quiet;
            }
        }
        let head = match read_head(input, limits) {
            Ok(Some(head)) => head,
            Ok(None) => return End::Quiet,
            Err(bad) => {
                let line = bad.line.as_ref().map(|(m, t)| (m, t.as_str()));
                return refuse(input, peer, shared, bad.failure, line);
            }
        };
        let line = Some((&head.method, head.target.as_str()));
        let body_limit = limits.body_bytes(&head.method, &head.target);
        let has_body = match head.framing {
            Framing::None => false,
            Framing::Length(n) => n > 0 && n <= body_limit as u64,
            Framing::Chunked => true,
        };
        // A declared body is counted against the budget before any of it is read, and
        // before the client is told to send it.
        let mut hold = BodyHold::new(shared, source);
        if let Framing::Length(n) = head.framing {
            if has_body && !hold.reserve(n as usize) {
                return refuse(input, peer, shared, body_budget_spent(), line);
            }
        }
        if head.expects_continue && has_body {
            // RFC 9110 §10.1.1: the client waits for this before sending the body.
            let _ = input.write_all(&[b"HTTP/1.1 100 Continue\r\n\r\n"]);
        }
        let deadline = head.started + limits.idle_timeout;
        let body = match body::read(input, head.framing, deadline, body_limit, limits, hold) {
            Ok(body) => body,
            Err(failure) => return refuse(input, peer, shared, failure, line),
        };
        // Counted in flight before `closing` is read: a stopping server either sees this
        // request in flight (and serves it from the queue) or this thread sees `closing`.
        shared.in_flight.fetch_add(1, SeqCst);
        let in_flight = Slot(&shared.in_flight);
        if shared.closing.load(SeqCst) {
            let failure = Failure::new(503, Cause::Stopping, "server is shutting down");
            return refuse(input, peer, shared, failure, line);
        }
        let keep_alive = head.keep_alive && !body.too_large;

        let (answer_tx, answer_rx) = mpsc::channel();
        let request = Request::new(head, body, peer, keep_alive, answer_tx, Arc::clone(shared));
        shared.messages.push(request);
        // A request is always answered: `Request`'s destructor answers 500 if nobody did.
        let answer = match answer_rx.recv() {
            Ok(answer) => answer,
            Err(_) => return End::Broken,
        };
        let written = write(input, &answer);
        drop(in_flight);
        if !written {
            return End::Broken;
        }
        if answer.close {
            return End::Answered;
        }
        answered = true;
    }
}

/// The 503 for a body that the budget of body bytes cannot take now.
pub(crate) fn body_budget_spent() -> Failure {
    Failure::new(
        503,
        Cause::BodyBudget,
        "too many request bodies are being received; try again later",
    )
}

/// Waits for the first byte of a request, at most the idle timeout; `false` when the
/// connection ends or idles out first.
fn await_request(input: &mut Input, limits: &Limits) -> bool {
    while input.buffered().is_empty() {
        match input.read_more(None, limits.idle_timeout) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    true
}

/// Reads a request head whose first byte has arrived. `Ok(None)` when the connection ends
/// (or idles out) between requests.
fn read_head(input: &mut Input, limits: &Limits) -> Result<Option<Head>, BadHead> {
    if !await_request(input, limits) {
        return Ok(None);
    }
    // The request's own deadline starts with its first byte.
    let started = Instant::now();
    let deadline = started + limits.idle_timeout;
    // Parse again only when a new line has arrived: a head ends with one.
    let mut parse_from = 0;
    loop {
        let buffered = input.buffered();
        if buffered[parse_from..].contains(&b'\n') {
            if let Some((head, used)) = head::parse(buffered, started)? {
                if used > limits.max_head_bytes {
                    return Err(head_too_large(buffered).into());
                }
                input.consume(used);
                return Ok(Some(head));
            }
        }
        if buffered.len() >= limits.max_head_bytes {
            return Err(head_too_large(buffered).into());
        }
        parse_from = buffered.len();
        match input.read_more(Some(deadline), limits.idle_timeout) {
            Ok(0) => return Err(body::io_failure(std::io::ErrorKind::UnexpectedEof.into()).into()),
            Ok(_) => {}
            Err(e) => return Err(body::io_failure(e).into()),
        }
    }
}

/// 414 when the request line alone does not fit in the head's budget (RFC 9112 §3), 431
/// otherwise (RFC 6585 §5).
fn head_too_large(buffered: &[u8]) -> Failure {
    let request_line_ended = buffered
        .iter()
        .skip_while(|&&b| b == b'\r' || b == b'\n')
        .any(|&b| b == b'\n');
    if request_line_ended {
        Failure::new(431, Cause::HeadTooLarge, "request head too large")
    } else {
        Failure::new(414, Cause::HeadTooLarge, "request target too long")
    }
}

/// Answers a request the connection layer will not hand over, through the user's
/// `Refusals` hook; the connection then ends.
fn refuse(
    input: &mut Input,
    peer: SocketAddr,
    shared: &Shared,
    failure: Failure,
    line: Option<(&Method, &str)>,
) -> End {
    let rendered = refusal_answer(shared, peer, failure, line, HTTPVersion(1, 1), true);
    if write(input, &rendered) {
        End::Answered
    } else {
        End::Broken
    }
}

/// The rendered answer to a refusal, worded by the user's hook.
pub(crate) fn refusal_answer(
    shared: &Shared,
    peer: SocketAddr,
    failure: Failure,
    line: Option<(&Method, &str)>,
    version: HTTPVersion,
    close: bool,
) -> Rendered {
    let refusal = Refusal {
        status: StatusCode(failure.status),
        reason: failure.reason,
        cause: failure.cause,
        method: line.map(|(m, _)| m),
        target: line.map(|(_, t)| t),
        peer,
        connections: shared.connections.load(SeqCst),
        retry_after: failure.cause.retry_after(),
    };
    let mut response = (shared.refusals)(&refusal).with_status_code(failure.status);
    if let Some(seconds) = refusal.retry_after {
        if !response
            .headers()
            .iter()
            .any(|h| h.field.equiv("Retry-After"))
        {
            if let Ok(header) = Header::from_bytes("Retry-After", seconds.to_string()) {
                response.add_header(header);
            }
        }
    }
    response.render(Answering {
        version,
        head_request: line.is_some_and(|(m, _)| *m == Method::Head),
        close,
    })
}

/// Writes a rendered answer: its head and its body, which is shared rather than copied, in
/// one system call when the socket takes them. `false` when the client is gone.
fn write(input: &mut Input, answer: &Rendered) -> bool {
    let body: &[u8] = answer.body.as_ref().map_or(&[], |body| (**body).as_ref());
    input.write_all(&[&answer.head, body]).is_ok()
}

/// How long the accept thread spends on a connection it turns away.
pub(crate) const TURN_AWAY_TIME: Duration = Duration::from_millis(100);
