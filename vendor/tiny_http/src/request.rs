use std::io::{self, Cursor, Read};

use std::fmt;
use std::net::SocketAddr;
use std::sync::mpsc::Sender;

use crate::client::{Body, Head};
use crate::response::Rendered;
use crate::{HTTPVersion, Header, Method, Response};

/// Represents an HTTP request made by a client.
///
/// A `Request` object is what is produced by the server, and is what your code must analyse
/// and answer. It implements `Send`, so requests can be dispatched to worker threads.
///
/// In this fork the whole body is read before the request is handed out (see
/// `Limits::max_body_bytes`), and `respond` renders the response into memory for the
/// connection's own thread to write: answering never blocks on the client. Requests of one
/// connection are handed out one at a time, in order. A `Request` dropped without an answer
/// is answered `500`.
pub struct Request {
    // the body, already read in full
    body: Cursor<Vec<u8>>,

    // true if the body was larger than allowed and was not read
    body_too_large: bool,

    // where the rendered response goes; `None` once the request has been answered
    responder: Option<Sender<Rendered>>,

    remote_addr: Option<SocketAddr>,

    method: Method,

    path: String,

    http_version: HTTPVersion,

    headers: Vec<Header>,

    body_length: Option<usize>,

    // false when the connection closes after this request
    keep_alive: bool,
}

impl Request {
    pub(crate) fn new(
        head: Head,
        body: Body,
        remote_addr: SocketAddr,
        keep_alive: bool,
        responder: Sender<Rendered>,
    ) -> Request {
        Request {
            body: Cursor::new(body.data),
            body_too_large: body.too_large,
            responder: Some(responder),
            remote_addr: Some(remote_addr),
            method: head.method,
            path: head.target,
            http_version: head.version,
            headers: head.headers,
            body_length: body.declared,
            keep_alive,
        }
    }

    /// Returns true if the request was made through HTTPS. Always false in this fork.
    #[inline]
    pub fn secure(&self) -> bool {
        false
    }

    /// Returns the method requested by the client (eg. `GET`, `POST`, etc.).
    #[inline]
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Returns the resource requested by the client.
    #[inline]
    pub fn url(&self) -> &str {
        &self.path
    }

    /// Returns a list of all headers sent by the client.
    #[inline]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Returns the HTTP version of the request.
    #[inline]
    pub fn http_version(&self) -> &HTTPVersion {
        &self.http_version
    }

    /// Returns the length of the body in bytes, as the client declared it with
    /// `Content-Length`; `None` for a chunked body or none at all.
    #[inline]
    pub fn body_length(&self) -> Option<usize> {
        self.body_length
    }

    /// True when the body was larger than `Limits::max_body_bytes`: it was not read, the
    /// reader is empty, and the connection closes after the response.
    #[inline]
    pub fn body_too_large(&self) -> bool {
        self.body_too_large
    }

    /// Returns the address of the client that sent this request.
    #[inline]
    pub fn remote_addr(&self) -> Option<&SocketAddr> {
        self.remote_addr.as_ref()
    }

    /// Allows to read the body of the request (already in memory).
    #[inline]
    pub fn as_reader(&mut self) -> &mut dyn Read {
        &mut self.body
    }

    /// Sends a response to this request.
    ///
    /// The response is rendered into memory and handed to the connection's thread, which
    /// writes it; an error here means the connection is already gone. A body made with
    /// `Response::from_shared` is not copied: the connection thread writes it as it is.
    #[inline]
    pub fn respond<R>(mut self, response: Response<R>) -> Result<(), io::Error>
    where
        R: Read,
    {
        self.respond_impl(response)
    }

    fn respond_impl<R>(&mut self, response: Response<R>) -> Result<(), io::Error>
    where
        R: Read,
    {
        let responder = match self.responder.take() {
            Some(responder) => responder,
            None => return Ok(()),
        };
        let rendered = response.render(
            self.http_version.clone(),
            &self.headers,
            self.method == Method::Head,
            !self.keep_alive,
        )?;
        responder
            .send(rendered)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> Result<(), fmt::Error> {
        write!(
            formatter,
            "Request({} {} from {:?})",
            self.method, self.path, self.remote_addr
        )
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.responder.is_some() {
            let response = Response::empty(500);
            let _ = self.respond_impl(response); // ignoring any potential error
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Request;

    #[test]
    fn must_be_send() {
        #![allow(dead_code)]
        fn f<T: Send>(_: &T) {}
        fn bar(rq: &Request) {
            f(rq);
        }
    }
}
