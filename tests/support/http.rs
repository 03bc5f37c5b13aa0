//! Test support, HTTP side: one-shot requests, keep-alive connections, raw bytes on a socket,
//! and reading what comes back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error` sentence of a JSON error answer.
    pub fn error(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        self.json()["error"]
            .as_str()
            .expect("an error message")
            .to_owned()
    }
}

/// One HTTP/1.1 request on its own connection, with a 10 s deadline.
pub fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    try_request(method, addr, path, body, headers)
        .unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"))
}

pub fn try_request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    try_request_bytes(method, addr, path, body.map(str::as_bytes), headers)
}

/// `try_request` with a body of any bytes, UTF-8 or not.
pub fn try_request_bytes(
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    exchange_on(stream, method, addr, path, body, headers)
}

/// One request on `stream`, already connected to `addr`, with a 10 s deadline.
pub fn exchange_on(
    mut stream: TcpStream,
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> std::io::Result<Resp> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        // curl -d sends a form content type; the server must not care.
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body.unwrap_or_default());
    // A server may answer and close before reading a whole request (a body over the limit, a
    // connection turned away): a failed write does not stop us reading what it answered.
    let sent = stream.write_all(&request);
    match (sent, read_until_closed(&mut stream)) {
        (_, Ok(raw)) if !raw.is_empty() => parse_response(&raw),
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(()), Ok(raw)) => parse_response(&raw),
    }
}

/// Reads until the server closes the connection. A reset after some bytes (a server that
/// answers and closes without reading all the client sent) keeps what came before it.
fn read_until_closed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(_) if !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// Parses one complete HTTP response (with `Content-Length`).
pub fn parse_response(raw: &[u8]) -> std::io::Result<Resp> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = String::from_utf8_lossy(&raw[end + 4..]).into_owned();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A plain TCP connection, for tests that speak (or withhold) HTTP themselves.
pub fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect")
}

/// Bytes off the wire as text, for messages.
pub fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// One keep-alive HTTP/1.1 connection for many requests in a row, as a busy client sends them.
/// Every read has a 10 s deadline.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    addr: SocketAddr,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            addr,
        })
    }

    /// Sends one request and reads its answer. An error means the connection is gone, and
    /// the server may or may not have read the request.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<Resp> {
        let body = body.unwrap_or("");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body.as_bytes());
        self.writer.write_all(&request)?;
        read_response(&mut self.reader)
    }
}

/// Reads one final response (skipping `1xx` interim ones) framed by `Content-Length`.
pub fn read_response(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
        let mut resp = parse_response(&head)?;
        if (100..200).contains(&resp.status) {
            continue;
        }
        let length = match resp.header("content-length") {
            Some(v) => v.parse().map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad Content-Length")
            })?,
            None => 0,
        };
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        resp.body = String::from_utf8_lossy(&body).into_owned();
        return Ok(resp);
    }
}

/// Sends `bytes` exactly as given on a fresh connection, closes the sending side, and returns
/// all the server sent back until it closed the connection (waiting at most 10 s).
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // The server may answer and close before reading everything (a head over 16 KiB):
    // what it sent back is still worth reading.
    let _ = stream
        .write_all(bytes)
        .and_then(|_| stream.shutdown(std::net::Shutdown::Write));
    read_until_closed(&mut stream)
}

/// The status of the first final (non-`1xx`) response in `raw`, if there is one.
pub fn first_status(raw: &[u8]) -> Option<u16> {
    let mut rest = raw;
    loop {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&rest[..end]).ok()?;
        let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
        if !(100..200).contains(&status) {
            return Some(status);
        }
        rest = &rest[end + 4..];
    }
}
