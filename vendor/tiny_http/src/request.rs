//! A request read whole, handed out by `Server::recv()`, and answered with `respond`.

use std::fmt;
use std::io::{self, Cursor, Read};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::admission::BodyHold;
use crate::body::Body;
use crate::client::refusal_answer;
use crate::head::{Framing, Head};
use crate::refusal::{Cause, Failure};
use crate::response::{Answering, Rendered};
use crate::{HTTPVersion, Header, Method, Response, Shared};

/// An HTTP request made by a client.
///
/// In this fork the whole body is read before the request is handed out (see
/// `Limits::max_body_bytes` and `Limits::body_limit`), and `respond` renders the response into memory for the
/// connection's own thread to write: answering never blocks on the client. Requests of one
/// connection are handed out one at a time, in order. A `Request` dropped without an answer
/// is answered 500 through the server's `Refusals` hook (`Cause::Unanswered`).
pub struct Request {
    body: Cursor<Vec<u8>>,
    body_too_large: bool,
    // the body's bytes counted against `Limits::body_budget_bytes` until this is dropped
    _hold: BodyHold,
    // where the rendered response goes; `None` once the request has been answered
    responder: Option<Sender<Rendered>>,
    remote_addr: SocketAddr,
    method: Method,
    target: String,
    http_version: HTTPVersion,
    headers: Vec<Header>,
    framing: Framing,
    // false when the connection closes after this request
    keep_alive: bool,
    shared: Arc<Shared>,
}

impl Request {
    pub(crate) fn new(
        head: Head,
        body: Body,
        remote_addr: SocketAddr,
        keep_alive: bool,
        responder: Sender<Rendered>,
        shared: Arc<Shared>,
    ) -> Request {
        Request {
            body: Cursor::new(body.data),
            body_too_large: body.too_large,
            _hold: body.hold,
            responder: Some(responder),
            remote_addr,
            method: head.method,
            target: head.target,
            http_version: head.version,
            headers: head.headers,
            framing: head.framing,
            keep_alive,
            shared,
        }
    }

    /// The request method (`GET`, `POST`, …).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The request target in origin form, `/path?query` (an absolute-form target,
    /// `http://host/path?query`, is reduced to this; RFC 9112 §3.2.2). `*` for
    /// `OPTIONS *`, `host:port` for `CONNECT`.
    #[inline]
    pub fn url(&self) -> &str {
        &self.target
    }

    /// The request's header fields, in the order received.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The request's HTTP version: 1.0 or 1.1 (a higher 1.x is read as 1.1).
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// How the client delimited the body. `Framing::None` means the request has no body
    /// at all (RFC 9112 §6.3): a client that sent bytes after the head without
    /// `Content-Length` or `Transfer-Encoding` will see them read as its next request.
    #[inline]
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The body's length as declared with `Content-Length`, in bytes; `None` for a chunked
    /// body or none at all.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        match self.framing {
            Framing::Length(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Framing::None | Framing::Chunked => None,
        }
    }

    /// True when the body was larger than the request's limit (`Limits::max_body_bytes`, or
    /// what `Limits::body_limit` decided for it): it was not read, the
    /// reader is empty, and the connection closes in stages after the answer (RFC 9112
    /// §9.6), so that a client still sending reads it.
    #[inline]
    pub fn body_too_large(&self) -> bool {
        self.body_too_large
    }

    /// The client's address.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        Some(&self.remote_addr)
    }

    /// The body, already in memory.
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        &mut self.body
    }

    /// Moves the body out without copying it (what `as_reader` has not read yet; the reader
    /// is empty afterwards). A large body stays counted against `Limits::body_budget_bytes`
    /// until this request is dropped or answered, so keep the body no longer than the
    /// request.
    pub fn take_body(&mut self) -> Vec<u8> {
        let at = usize::try_from(self.body.position()).unwrap_or(usize::MAX);
        let mut data = std::mem::take(self.body.get_mut());
        self.body.set_position(0);
        if at > 0 {
            data.drain(..at.min(data.len()));
        }
        data
    }

    /// Answers this request.
    ///
    /// The response is rendered into memory and handed to the connection's thread, which
    /// writes it; an error here means the connection is already gone. The body is not
    /// copied: the connection thread writes it as it is.
    pub fn respond(mut self, response: Response) -> Result<(), io::Error> {
        let Some(responder) = self.responder.take() else {
            return Ok(());
        };
        let rendered = response.render(self.answering());
        responder
            .send(rendered)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
    }

    fn answering(&self) -> Answering {
        Answering {
            version: self.http_version,
            head_request: self.method == Method::Head,
            // A server that has begun stopping says so rather than keep the connection.
            close: !self.keep_alive || self.shared.closing.load(SeqCst),
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {})",
            self.method, self.target, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(responder) = self.responder.take() {
            let failure = Failure::new(
                500,
                Cause::Unanswered,
                "internal error: the request was not answered",
            );
            let answering = self.answering();
            let rendered = refusal_answer(
                &self.shared,
                self.remote_addr,
                failure,
                Some((&self.method, &self.target)),
                answering.version,
                answering.close,
            );
            let _ = responder.send(rendered);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        fn f<T: Send>() {}
        f::<Request>();
    }
}
