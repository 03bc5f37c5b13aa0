//! One connection, served by one thread: read a request whole (head and body, within the
//! `Limits`), hand it to `Server::recv()`, wait for the answer, write it, and repeat while the
//! connection is kept alive. All socket I/O happens here, so the worker that answers a request
//! only ever touches memory.

use std::io::{self, BufRead, BufReader, ErrorKind, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::str::FromStr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc;
use std::time::Instant;

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, Method, StatusCode};
use crate::request::Request;
use crate::response::Rendered;
use crate::{Limits, Shared, Slot};

/// Most headers in one request.
const MAX_HEADERS: usize = 100;

/// Why a request could not be read; answered with `status` and the connection closed.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    reason: &'static str,
}

fn fail<T>(status: u16, reason: &'static str) -> Result<T, Failure> {
    Err(Failure {
        status: StatusCode(status),
        reason,
    })
}

/// A request head as read from the wire.
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) target: String,
    pub(crate) version: HTTPVersion,
    pub(crate) headers: Vec<Header>,
    /// When the first byte of the request arrived.
    started: Instant,
}

impl Head {
    fn header(&self, name: &'static str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    }

    /// Whether the client allows another request on this connection after this one.
    fn keep_alive(&self) -> bool {
        let connection = self.header("Connection").map(str::to_ascii_lowercase);
        match connection {
            Some(ref v) if v.contains("close") => false,
            Some(ref v) if v.contains("keep-alive") => true,
            _ => self.version >= HTTPVersion(1, 1),
        }
    }
}

/// A request body as read from the wire.
pub(crate) struct Body {
    pub(crate) data: Vec<u8>,
    /// Bigger than `Limits::max_body_bytes`; not read, and `data` is empty.
    pub(crate) too_large: bool,
    /// The length the client declared, if it declared one.
    pub(crate) declared: Option<usize>,
}

/// Serves one connection until the client closes it, stays idle past the idle timeout,
/// breaks the protocol, or the server stops.
pub(crate) fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let limits = &shared.limits;
    let mut reader = match stream.try_clone() {
        Ok(read_half) => BufReader::with_capacity(4096, read_half),
        Err(_) => return,
    };
    let mut writer = stream;
    loop {
        if shared.closing.load(SeqCst) {
            break;
        }
        let head = match read_head(&mut reader, limits) {
            Ok(Some(head)) => head,
            Ok(None) => break,
            Err(failure) => {
                let _ = writer.write_all(&error_response(failure.status, failure.reason));
                break;
            }
        };
        let body = match read_body(&mut reader, &mut writer, &head, limits) {
            Ok(body) => body,
            Err(failure) => {
                let _ = writer.write_all(&error_response(failure.status, failure.reason));
                break;
            }
        };
        // Counted in flight before `closing` is read: a stopping server either sees this
        // request in flight (and serves it from the queue) or this thread sees `closing`.
        shared.in_flight.fetch_add(1, SeqCst);
        let in_flight = Slot(&shared.in_flight);
        if shared.closing.load(SeqCst) {
            let _ = writer.write_all(&error_response(StatusCode(503), "server is shutting down"));
            break;
        }
        let keep_alive = head.keep_alive() && !body.too_large;

        let (answer_tx, answer_rx) = mpsc::channel();
        let request = Request::new(head, body, peer, keep_alive, answer_tx);
        shared.messages.push(request);
        // A request is always answered: `Request`'s destructor answers 500 if nobody did.
        let written = match answer_rx.recv() {
            Ok(answer) => write_answer(&mut writer, &answer).is_ok(),
            Err(_) => false,
        };
        drop(in_flight);
        if !written || !keep_alive {
            break;
        }
    }
    // Let the client read what we wrote before it sees the connection end.
    let _ = writer.flush();
    let _ = writer.shutdown(Shutdown::Write);
}

/// Writes a rendered answer: its head and its body, which is shared rather than copied, in
/// one system call when the socket takes them.
fn write_answer(writer: &mut TcpStream, answer: &Rendered) -> io::Result<()> {
    let body: &[u8] = answer.body.as_ref().map_or(&[], |body| (**body).as_ref());
    let mut slices = [IoSlice::new(&answer.head), IoSlice::new(body)];
    let mut pending = &mut slices[..];
    let mut left = answer.head.len() + body.len();
    while left > 0 {
        match writer.write_vectored(pending) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                left -= n;
                IoSlice::advance_slices(&mut pending, n);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a request head. `Ok(None)` when the connection ends (or idles out) between requests.
fn read_head(reader: &mut BufReader<TcpStream>, limits: &Limits) -> Result<Option<Head>, Failure> {
    // Wait for the first byte; only then does the request's own deadline start.
    match fill(reader) {
        Ok(true) => {}
        Ok(false) | Err(_) => return Ok(None),
    }
    let started = Instant::now();
    let mut budget = limits.max_head_bytes;
    let mut line = Vec::with_capacity(128);

    // RFC 9112 §2.2: ignore empty lines before the request line.
    loop {
        read_line(reader, &mut line, &mut budget, started, limits)?;
        if !line.is_empty() {
            break;
        }
    }
    let (method, target, version) = parse_request_line(&line)?;

    let mut headers = Vec::new();
    loop {
        read_line(reader, &mut line, &mut budget, started, limits)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return fail(431, "too many request headers");
        }
        headers.push(parse_header(&line)?);
    }
    Ok(Some(Head {
        method,
        target,
        version,
        headers,
        started,
    }))
}

/// Waits until the reader has data. `Ok(false)` at end of stream.
fn fill(reader: &mut BufReader<TcpStream>) -> io::Result<bool> {
    loop {
        match reader.fill_buf() {
            Ok(data) => return Ok(!data.is_empty()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Reads one line into `line`, without its line ending (CRLF, or a bare LF), spending at most
/// `budget` bytes and finishing before the request's deadline.
fn read_line(
    reader: &mut BufReader<TcpStream>,
    line: &mut Vec<u8>,
    budget: &mut usize,
    started: Instant,
    limits: &Limits,
) -> Result<(), Failure> {
    line.clear();
    loop {
        let available = match fill(reader) {
            Ok(true) => reader.buffer(),
            Ok(false) => return fail(400, "connection closed in the middle of a request"),
            Err(e) => return Err(io_failure(&e)),
        };
        let (take, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        if take > *budget {
            return fail(431, "request head too large");
        }
        *budget -= take;
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if complete {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(());
        }
        if started.elapsed() > limits.idle_timeout {
            return fail(408, "request not received in time");
        }
    }
}

/// What a failed read means for the client.
fn io_failure(e: &io::Error) -> Failure {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => Failure {
            status: StatusCode(408),
            reason: "request not received in time",
        },
        _ => Failure {
            status: StatusCode(400),
            reason: "connection failed in the middle of a request",
        },
    }
}

fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), Failure> {
    let line = match std::str::from_utf8(line) {
        Ok(line) if line.is_ascii() => line,
        _ => return fail(400, "request line is not ASCII"),
    };
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && !t.is_empty() => (m, t, v),
        _ => return fail(400, "malformed request line"),
    };
    if !method.bytes().all(is_token_byte) {
        return fail(400, "malformed request method");
    }
    let version = match version {
        "HTTP/1.1" => HTTPVersion(1, 1),
        "HTTP/1.0" => HTTPVersion(1, 0),
        v if v.starts_with("HTTP/") => {
            return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        _ => return fail(400, "malformed request line"),
    };
    let method = Method::from_str(method).or_else(|_| fail(400, "malformed request method"))?;
    Ok((method, target.to_owned(), version))
}

fn parse_header(line: &[u8]) -> Result<Header, Failure> {
    let colon = match line.iter().position(|&b| b == b':') {
        Some(colon) => colon,
        None => return fail(400, "malformed request header"),
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // An empty name, or one with white space (also obsolete line folding), is rejected.
    if name.is_empty() || !name.iter().copied().all(is_token_byte) {
        return fail(400, "malformed request header");
    }
    let value = value.trim_ascii();
    match (
        AsciiString::from_ascii(name),
        AsciiString::from_ascii(value),
    ) {
        (Ok(name), Ok(value)) => match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(header) => Ok(header),
            Err(()) => fail(400, "malformed request header"),
        },
        _ => fail(400, "request header is not ASCII"),
    }
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads the body the head announces, unless it is larger than allowed.
fn read_body(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    head: &Head,
    limits: &Limits,
) -> Result<Body, Failure> {
    let expects_continue = match head.header("Expect") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
        Some(_) => return fail(417, "unsupported Expect header"),
    };
    let chunked = match head.header("Transfer-Encoding") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("chunked") => true,
        Some(_) => return fail(501, "unsupported Transfer-Encoding"),
    };
    let declared = content_length(head)?;
    if chunked && declared.is_some() {
        // Both framings at once is how requests are smuggled past proxies: refuse.
        return fail(400, "both Content-Length and Transfer-Encoding");
    }
    if declared.is_some_and(|n| n > limits.max_body_bytes) {
        return Ok(Body {
            data: Vec::new(),
            too_large: true,
            declared,
        });
    }
    if !chunked && declared.unwrap_or(0) == 0 {
        return Ok(Body {
            data: Vec::new(),
            too_large: false,
            declared,
        });
    }
    if expects_continue {
        let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut source = Deadline {
        inner: reader,
        deadline: head.started + limits.idle_timeout,
    };
    let mut data = Vec::new();
    let read = if chunked {
        read_chunked(&mut source, &mut data, limits.max_body_bytes)
    } else {
        data.resize(declared.unwrap_or(0), 0);
        source.read_exact(&mut data).map(|_| true)
    };
    match read {
        Ok(true) => Ok(Body {
            data,
            too_large: false,
            declared,
        }),
        Ok(false) => Ok(Body {
            data: Vec::new(),
            too_large: true,
            declared,
        }),
        Err(e) if e.kind() == ErrorKind::InvalidInput => fail(400, "malformed chunked body"),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
            fail(400, "connection closed in the middle of a request")
        }
        Err(e) => Err(io_failure(&e)),
    }
}

/// The declared `Content-Length`; every copy of the header must agree.
fn content_length(head: &Head) -> Result<Option<usize>, Failure> {
    let mut length = None;
    for header in head
        .headers
        .iter()
        .filter(|h| h.field.equiv("Content-Length"))
    {
        let value = header.value.as_str();
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return fail(400, "malformed Content-Length");
        }
        // Too many digits for usize is simply very large.
        let parsed = value.parse::<usize>().unwrap_or(usize::MAX);
        if length.is_some_and(|l| l != parsed) {
            return fail(400, "conflicting Content-Length headers");
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// Decodes a chunked body into `data`. `Ok(false)` when it is larger than `max` (the rest is
/// left unread). The bytes read off the wire are bounded too, so that endless chunk headers
/// cannot keep the thread busy.
fn read_chunked(reader: &mut impl Read, data: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let wire_budget = (max as u64).saturating_mul(2).saturating_add(4096);
    let mut decoder = chunked_transfer::Decoder::new(reader.by_ref().take(wire_budget));
    decoder.by_ref().take(max as u64 + 1).read_to_end(data)?;
    if data.len() > max {
        data.clear();
        return Ok(false);
    }
    // The decoder reports a body cut short as an ordinary end; it is only whole when no
    // chunk is left half read.
    match decoder.remaining_chunks_size() {
        None => Ok(true),
        Some(_) => Err(io::Error::from(ErrorKind::UnexpectedEof)),
    }
}

/// A reader that fails with `TimedOut` once its deadline has passed, so that a body
/// trickling in a byte at a time cannot hold the connection thread for long.
struct Deadline<R> {
    inner: R,
    deadline: Instant,
}

impl<R: Read> Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() > self.deadline {
            return Err(ErrorKind::TimedOut.into());
        }
        self.inner.read(buf)
    }
}

/// A complete response for errors the server answers on its own: JSON, like the API's own
/// errors, and always closing the connection.
pub(crate) fn error_response(status: StatusCode, reason: &str) -> Vec<u8> {
    let body = format!("{{\"error\": \"{}\"}}", reason);
    format!(
        "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        status.0,
        status.default_reason_phrase(),
        body.len(),
        body
    )
    .into_bytes()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn request_line_is_parsed_strictly() {
        let (method, target, version) = parse_request_line(b"GET /hello HTTP/1.1").unwrap();
        assert_eq!(method, Method::Get);
        assert_eq!(target, "/hello");
        assert_eq!(version, HTTPVersion(1, 1));

        assert_eq!(
            parse_request_line(b"GET /hello").unwrap_err().status,
            StatusCode(400)
        );
        assert_eq!(
            parse_request_line(b"qsd qsd qsd").unwrap_err().status,
            StatusCode(400)
        );
        assert_eq!(
            parse_request_line(b"GET / HTTP/2.0").unwrap_err().status,
            StatusCode(505)
        );
        assert_eq!(
            parse_request_line(b"GET  / HTTP/1.1").unwrap_err().status,
            StatusCode(400)
        );
        assert_eq!(
            parse_request_line(b"G(T / HTTP/1.1").unwrap_err().status,
            StatusCode(400)
        );
    }

    #[test]
    fn headers_with_bad_names_are_rejected() {
        let header = parse_header(b"Content-Length:  12 ").unwrap();
        assert!(header.field.equiv("content-length"));
        assert_eq!(header.value.as_str(), "12");

        assert!(parse_header(b"no colon").is_err());
        assert!(parse_header(b": empty name").is_err());
        assert!(parse_header(b" folded: line").is_err());
        assert!(parse_header(b"Bad Name: x").is_err());
    }
}
