//! A connection's socket with its read buffer: bytes are read in small slices, parsed from the
//! buffer, and consumed. Every read has a deadline; nothing is read that the parser did not
//! ask for, so a connection holds at most a head's worth of buffered bytes.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes asked of the socket per read.
const READ_SLICE: usize = 4096;

/// A connection's socket and the bytes read from it but not yet consumed. The socket is
/// shared with the accept thread, which may shut it to make room for another connection
/// (one descriptor, not a duplicate).
pub(crate) struct Input {
    stream: Arc<TcpStream>,
    buf: Vec<u8>,
    /// `buf[start..]` is unconsumed.
    start: usize,
    /// The read timeout the socket has now, to set it only when it changes.
    timeout: Option<Duration>,
}

impl Input {
    pub(crate) fn new(stream: Arc<TcpStream>) -> Input {
        Input {
            stream,
            buf: Vec::with_capacity(READ_SLICE),
            start: 0,
            timeout: None,
        }
    }

    /// The bytes read and not yet consumed.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Marks the first `n` buffered bytes as used.
    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more bytes into the buffer, waiting at most until `deadline` (at most
    /// `patience` when there is none). `Ok(0)` when the client has closed its side;
    /// `TimedOut` when the deadline passes first.
    pub(crate) fn read_more(
        &mut self,
        deadline: Option<Instant>,
        patience: Duration,
    ) -> io::Result<usize> {
        let wait = match deadline {
            Some(deadline) => deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .ok_or(ErrorKind::TimedOut)?
                .min(patience),
            None => patience,
        };
        self.set_timeout(wait)?;
        // Move what is left to the front rather than grow: the buffer stays small.
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let filled = self.buf.len();
        self.buf.resize(filled + READ_SLICE, 0);
        let read = loop {
            match (&*self.stream).read(&mut self.buf[filled..]) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    break Err(ErrorKind::TimedOut.into())
                }
                other => break other,
            }
        };
        self.buf.truncate(filled + *read.as_ref().unwrap_or(&0));
        read
    }

    /// Moves up to `out.len()` bytes, buffered first, then straight from the socket, into
    /// `out`; fails with `UnexpectedEof` if the client closes first.
    pub(crate) fn read_exact(&mut self, mut out: &mut [u8], deadline: Instant) -> io::Result<()> {
        let take = self.buffered().len().min(out.len());
        out[..take].copy_from_slice(&self.buffered()[..take]);
        self.consume(take);
        out = &mut out[take..];
        while !out.is_empty() {
            let left = deadline
                .checked_duration_since(Instant::now())
                .filter(|left| !left.is_zero())
                .ok_or(ErrorKind::TimedOut)?;
            self.set_timeout(left)?;
            match (&*self.stream).read(out) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => out = &mut out[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    return Err(ErrorKind::TimedOut.into())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes all of `parts` in order, in as few system calls as the socket allows.
    pub(crate) fn write_all(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let mut slices: Vec<io::IoSlice<'_>> = parts.iter().map(|p| io::IoSlice::new(p)).collect();
        let mut pending = &mut slices[..];
        let mut left: usize = parts.iter().map(|p| p.len()).sum();
        while left > 0 {
            match (&*self.stream).write_vectored(pending) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    left -= n;
                    io::IoSlice::advance_slices(&mut pending, n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Closes the connection the way RFC 9112 §9.6 asks, so that a client still sending
    /// reads our last answer instead of a reset: close the writing side (the client sees
    /// the answer end), then read and discard whatever the client still sends until it
    /// closes too, `most_bytes` have been discarded, or `most_time` has passed. Only then is
    /// the socket closed (by dropping it). Never stores what it discards.
    ///
    /// A client that has more than `most_bytes` to send (Node.js's `http.request` sends a
    /// whole 10 MB body before it looks at the answer) is no longer read from, but the socket
    /// stays open until `most_time` has passed: its writes wait on TCP's flow control instead
    /// of failing on a reset, and it reads the answer meanwhile.
    pub(crate) fn linger(mut self, most_bytes: usize, most_time: Duration) -> Lingered {
        let started = Instant::now();
        let _ = (&*self.stream).flush();
        let _ = self.stream.shutdown(Shutdown::Write);
        let mut discarded = self.buffered().len();
        self.buf.clear();
        self.start = 0;
        let mut scratch = [0u8; 8192];
        let ended_by = loop {
            if discarded >= most_bytes {
                break LingerEnd::Bytes;
            }
            let left = match most_time.checked_sub(started.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => break LingerEnd::Time,
            };
            if self.set_timeout(left).is_err() {
                break LingerEnd::Error;
            }
            match (&*self.stream).read(&mut scratch) {
                Ok(0) => break LingerEnd::ClientClosed,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break LingerEnd::Time
                }
                Err(_) => break LingerEnd::Error,
            }
        };
        if ended_by == LingerEnd::Bytes {
            if let Some(left) = most_time.checked_sub(started.elapsed()) {
                std::thread::sleep(left);
            }
        }
        Lingered {
            discarded,
            ended_by,
            took: started.elapsed(),
        }
    }

    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        // Whole milliseconds (at least one: zero would mean "wait forever").
        let timeout = Duration::from_millis(timeout.as_millis().clamp(1, u64::MAX as u128) as u64);
        if self.timeout != Some(timeout) {
            self.stream.set_read_timeout(Some(timeout))?;
            self.timeout = Some(timeout);
        }
        Ok(())
    }
}

/// How a lingering close went (for tests and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lingered {
    pub(crate) discarded: usize,
    pub(crate) ended_by: LingerEnd,
    pub(crate) took: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LingerEnd {
    ClientClosed,
    Bytes,
    Time,
    Error,
}
