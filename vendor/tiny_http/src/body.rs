//! Reading a request body as its head frames it (RFC 9112 §6): a `Content-Length` body, a
//! chunked one (§7.1, chunk sizes parsed by `httparse`, the trailer section read and discarded,
//! §7.1.2), or none. Bounded in bytes (`Limits::max_body_bytes` of content, and a budget for
//! the chunked framing around it), in time (the request's deadline), and by the bytes all
//! connections hold together (`Limits::body_budget_bytes`, through a `BodyHold`).

use std::io::{self, ErrorKind};
use std::time::Instant;

use crate::admission::BodyHold;
use crate::client::body_budget_spent;
use crate::head::{Framing, MAX_HEADERS};
use crate::input::Input;
use crate::refusal::{malformed, Cause, Failure};
use crate::Limits;

/// Longest chunk-size line, chunk extensions included (RFC 9112 §7.1.1 asks servers to
/// bound them).
const MAX_CHUNK_LINE: usize = 1024;

/// A request body as read from the wire.
pub(crate) struct Body {
    pub(crate) data: Vec<u8>,
    /// Bigger than the request's body limit: not read (beyond that much), and `data` is empty.
    pub(crate) too_large: bool,
    /// `data`'s bytes as counted against the budget, given back when this is dropped.
    pub(crate) hold: BodyHold,
}

/// Reads the body `framing` announces, unless it is larger than `max` bytes, by `deadline`.
/// A body with a declared length must already be counted in `hold`; a chunked one is
/// counted as it grows, and refused (503, `Cause::BodyBudget`) when the budget cannot take
/// its next chunk.
pub(crate) fn read(
    input: &mut Input,
    framing: Framing,
    deadline: Instant,
    max: usize,
    limits: &Limits,
    mut hold: BodyHold,
) -> Result<Body, Failure> {
    let (data, too_large) = match framing {
        Framing::None | Framing::Length(0) => (Vec::new(), false),
        Framing::Length(n) if n > max as u64 => (Vec::new(), true),
        Framing::Length(n) => {
            let mut data = vec![0; n as usize];
            input.read_exact(&mut data, deadline).map_err(io_failure)?;
            (data, false)
        }
        Framing::Chunked => match read_chunked(input, deadline, max, limits, &mut hold)? {
            Some(data) => (data, false),
            None => (Vec::new(), true),
        },
    };
    Ok(Body {
        data,
        too_large,
        hold,
    })
}

/// Decodes a chunked body (RFC 9112 §7.1). `None` when its content is larger than `max`
/// bytes; the rest is then left unread.
fn read_chunked(
    input: &mut Input,
    deadline: Instant,
    max: usize,
    limits: &Limits,
    hold: &mut BodyHold,
) -> Result<Option<Vec<u8>>, Failure> {
    // Chunk-size lines and CRLFs cost this much at most: enough for the whole body in
    // chunks of a few bytes, not for endless framing around no content.
    let mut framing_left = max.saturating_mul(4).saturating_add(limits.max_head_bytes);
    let mut data = Vec::new();
    loop {
        let line_end = need_line(input, deadline)?;
        let size = chunk_size(&input.buffered()[..line_end])?;
        input.consume(line_end);
        framing_left = framing_left.checked_sub(line_end + 2).ok_or(Failure::new(
            413,
            Cause::Malformed,
            "too much chunked framing",
        ))?;
        if size == 0 {
            break;
        }
        if size > (max - data.len()) as u64 {
            return Ok(None);
        }
        if !hold.reserve(data.len() + size as usize) {
            return Err(body_budget_spent());
        }
        let at = data.len();
        data.resize(at + size as usize, 0);
        input
            .read_exact(&mut data[at..], deadline)
            .map_err(io_failure)?;
        need(input, 2, deadline)?;
        if &input.buffered()[..2] != b"\r\n" {
            return malformed("chunk data not followed by CRLF");
        }
        input.consume(2);
    }
    read_trailers(input, deadline, limits)?;
    Ok(Some(data))
}

/// The size on a chunk-size line (`line` ends with its LF): `1*HEXDIG`, optional chunk
/// extensions (ignored; no control characters but HTAB), then CRLF.
fn chunk_size(line: &[u8]) -> Result<u64, Failure> {
    let Some(body) = line.strip_suffix(b"\r\n") else {
        return malformed("chunk-size line not ended by CRLF");
    };
    let starts_with_digit = body.first().is_some_and(u8::is_ascii_hexdigit);
    let clean = body.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    if !starts_with_digit || !clean {
        return malformed("malformed chunk size");
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((n, size))) if n == line.len() => Ok(size),
        _ => malformed("malformed chunk size"),
    }
}

/// Reads and discards the trailer section after the last chunk (RFC 9112 §7.1.2): header
/// field lines, held to the same syntax and bounds as a head, then an empty line.
fn read_trailers(input: &mut Input, deadline: Instant, limits: &Limits) -> Result<(), Failure> {
    loop {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::parse_headers(input.buffered(), &mut fields) {
            Ok(httparse::Status::Complete((n, _))) => {
                input.consume(n);
                return Ok(());
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => {
                return Err(Failure::new(
                    431,
                    Cause::HeadTooLarge,
                    "more than 100 trailer fields",
                ))
            }
            Err(_) => return malformed("malformed trailer section"),
        }
        if input.buffered().len() >= limits.max_head_bytes {
            return Err(Failure::new(
                431,
                Cause::HeadTooLarge,
                "trailer section too large",
            ));
        }
        more(input, deadline)?;
    }
}

/// Waits until a whole line is buffered; returns its length with its LF.
fn need_line(input: &mut Input, deadline: Instant) -> Result<usize, Failure> {
    loop {
        let buffered = input.buffered();
        if let Some(lf) = buffered
            .iter()
            .take(MAX_CHUNK_LINE)
            .position(|&b| b == b'\n')
        {
            return Ok(lf + 1);
        }
        if buffered.len() >= MAX_CHUNK_LINE {
            return malformed("chunk-size line too long");
        }
        more(input, deadline)?;
    }
}

/// Waits until at least `n` bytes are buffered.
fn need(input: &mut Input, n: usize, deadline: Instant) -> Result<(), Failure> {
    while input.buffered().len() < n {
        more(input, deadline)?;
    }
    Ok(())
}

fn more(input: &mut Input, deadline: Instant) -> Result<(), Failure> {
    match input.read_more(Some(deadline), std::time::Duration::MAX) {
        Ok(0) => Err(io_failure(ErrorKind::UnexpectedEof.into())),
        Ok(_) => Ok(()),
        Err(e) => Err(io_failure(e)),
    }
}

/// What a failed read in the middle of a request means for the client.
pub(crate) fn io_failure(e: io::Error) -> Failure {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            Failure::new(408, Cause::Timeout, "request not received in time")
        }
        ErrorKind::UnexpectedEof => Failure::new(
            400,
            Cause::Interrupted,
            "connection closed in the middle of a request",
        ),
        _ => Failure::new(
            400,
            Cause::Interrupted,
            "connection failed in the middle of a request",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_size;

    #[test]
    fn chunk_size_lines_follow_rfc_9112_7_1() {
        assert_eq!(chunk_size(b"1a\r\n"), Ok(26));
        assert_eq!(chunk_size(b"1A;name=value\r\n"), Ok(26));
        assert_eq!(chunk_size(b"0\r\n"), Ok(0));
        assert!(chunk_size(b"\r\n").is_err(), "no digits");
        assert!(chunk_size(b";ext\r\n").is_err(), "no digits");
        assert!(chunk_size(b"1a\n").is_err(), "bare LF");
        assert!(chunk_size(b"-1\r\n").is_err());
        assert!(chunk_size(b"0x1a\r\n").is_err());
        assert!(chunk_size(b"1;a\nb\r\n").is_err(), "LF inside an extension");
        assert!(
            chunk_size(b"11111111111111111\r\n").is_err(),
            "over 64 bits"
        );
    }
}
