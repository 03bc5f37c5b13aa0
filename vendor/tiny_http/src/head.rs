//! A request head, parsed by `httparse` and then held to the rules of RFC 9112 (HTTP/1.1
//! message syntax) and RFC 9110 that `httparse` leaves to its caller: the request-target's
//! form, one `Host`, the message framing (`Content-Length`, `Transfer-Encoding`), `Expect` and
//! whether the connection persists. Pure: bytes in, a `Head` or the reason to refuse out.

use std::time::Instant;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
use crate::refusal::{malformed, Cause, Failure};

/// Most header fields in one request (or one chunked trailer section).
pub(crate) const MAX_HEADERS: usize = 100;

/// How a request's body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Neither `Content-Length` nor `Transfer-Encoding`: the request has no body, whatever
    /// bytes follow the head (RFC 9112 §6.3, rule 7). Bytes a client meant as a body are
    /// read as the next request.
    None,
    /// `Content-Length` (RFC 9112 §6.2), in bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked` (RFC 9112 §7.1).
    Chunked,
}

/// A request head as read from the wire and checked.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    /// The request-target in origin form (`/path?query`): an absolute-form target
    /// (`http://host/path`) is reduced to its path and query (RFC 9112 §3.2.2).
    pub(crate) target: String,
    pub(crate) version: HTTPVersion,
    pub(crate) headers: Vec<Header>,
    pub(crate) framing: Framing,
    /// Whether the client lets the connection persist after this request (RFC 9112 §9.3).
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` in an HTTP/1.1 request (RFC 9110 §10.1.1).
    pub(crate) expects_continue: bool,
    /// When the first byte of the request arrived.
    pub(crate) started: Instant,
}

/// A head that could not be accepted, with its request line when that much was read.
#[derive(Debug)]
pub(crate) struct BadHead {
    pub(crate) failure: Failure,
    pub(crate) line: Option<(Method, String)>,
}

impl From<Failure> for BadHead {
    fn from(failure: Failure) -> BadHead {
        BadHead {
            failure,
            line: None,
        }
    }
}

/// Parses the head at the start of `buf`. `Ok(None)` while it is incomplete; otherwise the
/// head and the number of bytes it took (empty lines before the request line included, which
/// RFC 9112 §2.2 says to ignore).
pub(crate) fn parse(buf: &[u8], started: Instant) -> Result<Option<(Head, usize)>, BadHead> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let parsed = request.parse(buf);
    let line = match (&request.method, &request.path) {
        (Some(method), Some(path)) => method.parse().ok().map(|m| (m, (*path).to_owned())),
        _ => None,
    };
    let refuse = |failure: Failure| BadHead {
        failure,
        line: line.clone(),
    };
    let consumed = match parsed {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::Version) => {
            return other_version(buf, started).map_err(|bad| BadHead {
                line: bad.line.or(line.clone()),
                ..bad
            })
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(refuse(Failure::new(
                431,
                Cause::HeadTooLarge,
                "more than 100 request header fields",
            )))
        }
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            // RFC 9112 §5.1: no white space before the colon; §5.2: no obsolete line folding;
            // RFC 9110 §5.5: no CR, LF or NUL in a value.
            return Err(refuse(Failure::new(
                400,
                Cause::Malformed,
                "malformed request header field",
            )));
        }
        Err(_) => {
            return Err(refuse(Failure::new(
                400,
                Cause::Malformed,
                "malformed request line",
            )))
        }
    };
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(refuse(Failure::new(
            400,
            Cause::Malformed,
            "malformed request line",
        )));
    };
    let method: Method = method.parse().map_err(|()| {
        refuse(Failure::new(
            400,
            Cause::Malformed,
            "malformed request method",
        ))
    })?;
    let version = HTTPVersion(1, minor);
    let headers = request
        .headers
        .iter()
        .map(|field| Header {
            // httparse has checked the name is a token.
            field: HeaderField::from_bytes(field.name)
                .unwrap_or_else(|()| unreachable!("httparse accepts only token header names")),
            value: String::from_utf8_lossy(field.value.trim_ascii()).into_owned(),
        })
        .collect::<Vec<_>>();
    let checked = (|| {
        let target = origin_form(&method, target)?;
        check_host(&headers)?;
        let framing = framing(version, &headers)?;
        let expects_continue = expectation(version, &headers)?;
        Ok((target, framing, expects_continue))
    })();
    let (target, framing, expects_continue) = checked.map_err(refuse)?;
    let keep_alive = keep_alive(version, &headers);
    Ok(Some((
        Head {
            method,
            target,
            version,
            headers,
            framing,
            keep_alive,
            expects_continue,
            started,
        },
        consumed,
    )))
}

/// A request line whose version `httparse` refused: `HTTP/1.x` with x above 1 is read as
/// HTTP/1.1 (RFC 9110 §2.5: a higher minor version is processed as the highest one we
/// implement), another major version is 505, anything else 400 (the version is
/// case-sensitive, RFC 9112 §2.3).
fn other_version(buf: &[u8], started: Instant) -> Result<Option<(Head, usize)>, BadHead> {
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let Some(end) = buf[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|e| start + e)
    else {
        let so_far = buf[start..]
            .rsplit(|&b| b == b' ')
            .next()
            .unwrap_or_default();
        if could_be_version(so_far) {
            return Ok(None); // The version has not arrived whole yet.
        }
        return Err(Failure::new(400, Cause::Malformed, "malformed HTTP version").into());
    };
    let line = &buf[start..end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        // httparse read a version where the line has more parts than three.
        return Err(Failure::new(400, Cause::Malformed, "malformed request line").into());
    }
    match version {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] => {
            let mut patched = buf.to_vec();
            let at = start + line.len() - 1;
            patched[at] = b'1';
            parse(&patched, started)
        }
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(Failure::new(
                505,
                Cause::Unsupported,
                "only HTTP/1.0 and HTTP/1.1 are supported",
            )
            .into())
        }
        _ => Err(Failure::new(400, Cause::Malformed, "malformed HTTP version").into()),
    }
}

/// Whether `bytes` can still become `HTTP/<digit>.<digit>`.
fn could_be_version(bytes: &[u8]) -> bool {
    bytes.len() <= 8
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            0 => b == b'H',
            1 | 2 => b == b'T',
            3 => b == b'P',
            4 => b == b'/',
            6 => b == b'.',
            _ => b.is_ascii_digit(),
        })
}

/// The request-target in origin form (RFC 9112 §3.2). An origin-form target is kept; an
/// absolute-form one (`http://host:port/path?query`) must be accepted (§3.2.2) and is reduced
/// to `/path?query`; `*` is only for `OPTIONS` (§3.2.4) and authority-form only for `CONNECT`
/// (§3.2.3). A target must be ASCII (RFC 3986) and carries no fragment.
fn origin_form(method: &Method, target: &str) -> Result<String, Failure> {
    if !target.is_ascii() || target.contains('#') {
        return malformed("malformed request target");
    }
    if target.starts_with('/') {
        return Ok(target.to_owned());
    }
    match method {
        Method::Options if target == "*" => return Ok(target.to_owned()),
        Method::Connect => return Ok(target.to_owned()),
        _ => {}
    }
    let Some((scheme, rest)) = target.split_once("://") else {
        return malformed("malformed request target");
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return malformed("malformed request target");
    }
    let path_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let path = &rest[path_at..];
    Ok(if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    })
}

/// RFC 9112 §3.2: a request with more than one `Host` field line, or a `Host` that is not
/// `uri-host [":" port]`, is refused with 400.
///
/// An HTTP/1.1 request *without* `Host` is accepted, though §3.2 asks for a 400: seedmesh
/// serves one origin and never reads `Host`, and the raw requests its users type into `nc`
/// and its tests send often leave it out. Refusing them would protect nothing.
fn check_host(headers: &[Header]) -> Result<(), Failure> {
    let mut hosts = headers.iter().filter(|h| h.field.equiv("Host"));
    let (Some(host), None) = (hosts.next(), hosts.next()) else {
        return match headers.iter().any(|h| h.field.equiv("Host")) {
            true => malformed("more than one Host header field"),
            false => Ok(()),
        };
    };
    // reg-name, IPv4 and IP-literal characters (RFC 3986 §3.2.2), and the port's colon.
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b);
    if !host.value.bytes().all(allowed) {
        return malformed("malformed Host header field");
    }
    Ok(())
}

/// The values of every `name` field line, split into list elements (RFC 9110 §5.6.1: empty
/// elements are ignored), trimmed.
fn list<'h>(headers: &'h [Header], name: &'static str) -> impl Iterator<Item = &'h str> {
    headers
        .iter()
        .filter(move |h| h.field.equiv(name))
        .flat_map(|h| h.value.split(','))
        .map(|element| element.trim_matches([' ', '\t']))
        .filter(|element| !element.is_empty())
}

/// The body's framing (RFC 9112 §6.1, §6.3), or why the request cannot be read safely.
fn framing(version: HTTPVersion, headers: &[Header]) -> Result<Framing, Failure> {
    let has_te = headers.iter().any(|h| h.field.equiv("Transfer-Encoding"));
    let has_length = headers.iter().any(|h| h.field.equiv("Content-Length"));
    if has_te {
        if version < HTTPVersion(1, 1) {
            // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
            return malformed("Transfer-Encoding in an HTTP/1.0 request");
        }
        if has_length {
            // §6.3 rule 3, §11.2: both framings at once is how requests are smuggled.
            return malformed(
                "a request may not have both Content-Length and Transfer-Encoding (RFC 9112 §6.3)",
            );
        }
        let codings: Vec<&str> = list(headers, "Transfer-Encoding").collect();
        if !codings
            .last()
            .is_some_and(|last| last.eq_ignore_ascii_case("chunked"))
        {
            // §6.3 rule 4: the body's length cannot be known.
            return malformed("Transfer-Encoding does not end with chunked");
        }
        let chunked = codings
            .iter()
            .filter(|c| c.eq_ignore_ascii_case("chunked"))
            .count();
        if chunked > 1 {
            // §6.1: chunked is never applied more than once.
            return malformed("chunked applied more than once");
        }
        if codings.len() > 1 {
            // §6.1: a transfer coding we do not understand.
            return Err(Failure::new(
                501,
                Cause::Unsupported,
                "unsupported Transfer-Encoding: only chunked is implemented",
            ));
        }
        return Ok(Framing::Chunked);
    }
    if !has_length {
        return Ok(Framing::None);
    }
    // §6.3 rule 5, §8.6: 1*DIGIT; repeated identical values (in one line or several) may be
    // taken as one; anything else is refused.
    let mut length = None;
    for value in headers
        .iter()
        .filter(|h| h.field.equiv("Content-Length"))
        .flat_map(|h| h.value.split(','))
        .map(|v| v.trim_matches([' ', '\t']))
    {
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return malformed("malformed Content-Length");
        }
        // More digits than u64 holds is simply very large.
        let parsed = value.parse::<u64>().unwrap_or(u64::MAX);
        if length.is_some_and(|l| l != parsed) {
            return malformed("conflicting Content-Length values");
        }
        length = Some(parsed);
    }
    Ok(Framing::Length(length.unwrap_or(0)))
}

/// `Expect` (RFC 9110 §10.1.1): `100-continue` (any case) asks for a `100 Continue` before
/// the body, except in HTTP/1.0, where it is ignored; any other expectation is 417.
fn expectation(version: HTTPVersion, headers: &[Header]) -> Result<bool, Failure> {
    let mut expects = false;
    for value in list(headers, "Expect") {
        if !value.eq_ignore_ascii_case("100-continue") {
            return Err(Failure::new(
                417,
                Cause::Unsupported,
                "unsupported Expect header: only 100-continue is implemented",
            ));
        }
        expects = version >= HTTPVersion(1, 1);
    }
    Ok(expects)
}

/// RFC 9112 §9.3: a `close` connection option ends the connection after this request; else
/// HTTP/1.1 persists, and HTTP/1.0 persists only with the `keep-alive` option.
fn keep_alive(version: HTTPVersion, headers: &[Header]) -> bool {
    let options = || list(headers, "Connection");
    if options().any(|o| o.eq_ignore_ascii_case("close")) {
        return false;
    }
    version >= HTTPVersion(1, 1) || options().any(|o| o.eq_ignore_ascii_case("keep-alive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<(Head, usize)>, BadHead> {
        parse(raw.as_bytes(), Instant::now())
    }

    fn ok(raw: &str) -> Head {
        match head(raw) {
            Ok(Some((head, n))) => {
                assert_eq!(
                    n,
                    raw.find("\r\n\r\n").map_or(raw.len(), |e| e + 4),
                    "{raw:?}"
                );
                head
            }
            Ok(None) => panic!("incomplete: {raw:?}"),
            Err(e) => panic!("{raw:?}: {:?}", e.failure),
        }
    }

    fn status(raw: &str) -> u16 {
        match head(raw) {
            Err(e) => e.failure.status,
            Ok(Some(_)) => 200,
            Ok(None) => 0,
        }
    }

    #[test]
    fn a_head_is_parsed_with_its_framing_and_persistence() {
        let h = ok("POST /nodes/?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.target, "/nodes/?x=1");
        assert_eq!(h.version, HTTPVersion(1, 1));
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert!(!h.expects_continue);
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n"), 0);
        assert_eq!(status("GET / HTTP/1"), 0);
        assert_eq!(status("GET / HTTP/2"), 0);
        assert_eq!(status("GET / HTTP/2.0\r\n"), 505);
        assert_eq!(status("GET / HTTP/x"), 400);
        assert_eq!(status("GET /a b HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1 x\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.9\r\n\r\n"), 200);
    }

    #[test]
    fn a_request_line_error_keeps_what_was_read_of_it() {
        let bad = head("GET /x HTTP/1.1\r\nBad Name: 1\r\n\r\n").unwrap_err();
        assert_eq!(bad.failure.status, 400);
        assert_eq!(bad.line, Some((Method::Get, "/x".to_owned())));
    }
}
