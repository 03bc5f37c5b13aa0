//! The load generator: `connections` keep-alive HTTP/1.1 connections, one thread each, sending
//! requests back to back (closed loop) for a fixed time and timing every answer. The same
//! generator drives our server and nginx, so their ratio is measured with equal tools.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How to load a server.
pub struct Load {
    pub connections: usize,
    /// Run before measuring, so that connections, caches and allocators are warm.
    pub warmup: Duration,
    /// The measured time.
    pub duration: Duration,
}

/// What one load run measured.
pub struct Outcome {
    /// 2xx answers to requests sent within the measured time.
    pub completed: u64,
    /// 2xx answers over the whole run, warm-up included.
    pub total: u64,
    /// Other answers and broken connections, over the whole run.
    pub errors: u64,
    pub seconds: f64,
    /// Latency of each completed request, in microseconds, sorted.
    pub latencies_us: Vec<u32>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.seconds
    }

    /// The latency at quantile `q` (nearest rank), in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize).max(1);
        f64::from(self.latencies_us[rank - 1]) / 1000.0
    }
}

/// Writes request number `i` of connection `c` into the buffer.
pub type Script<'a> = &'a (dyn Fn(usize, u64, &mut Vec<u8>) + Sync);

/// Runs `load` against `addr`. Every answer must be 2xx; others count as errors.
pub fn run(addr: SocketAddr, load: &Load, script: Script<'_>) -> io::Result<Outcome> {
    let connections = (0..load.connections)
        .map(|_| Connection::open(addr))
        .collect::<io::Result<Vec<_>>>()?;
    // Threads start within microseconds of each other; the warm-up absorbs the stagger.
    let measured_from = Instant::now() + load.warmup;
    let end = measured_from + load.duration;
    let results = Mutex::new(Vec::new());
    thread::scope(|scope| -> io::Result<()> {
        for (c, mut connection) in connections.into_iter().enumerate() {
            let results = &results;
            thread::Builder::new()
                .name(format!("load-{c}"))
                .spawn_scoped(scope, move || {
                    let outcome = connection.drive(c, script, measured_from, end);
                    results.lock().unwrap().push(outcome);
                })?;
        }
        Ok(())
    })?;
    let mut outcome = Outcome {
        completed: 0,
        total: 0,
        errors: 0,
        seconds: load.duration.as_secs_f64(),
        latencies_us: Vec::new(),
    };
    for (completed, total, errors, latencies) in results.into_inner().unwrap() {
        outcome.completed += completed;
        outcome.total += total;
        outcome.errors += errors;
        outcome.latencies_us.extend(latencies);
    }
    outcome.latencies_us.sort_unstable();
    Ok(outcome)
}

/// One answer, as far as the generator cares.
pub struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

/// A keep-alive client connection that reads answers with `Content-Length` framing.
pub struct Connection {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` holding data read from the socket.
    filled: usize,
    /// The server said `Connection: close` on the last answer.
    closing: bool,
}

impl Connection {
    pub fn open(addr: SocketAddr) -> io::Result<Connection> {
        Ok(Connection {
            addr,
            stream: connect(addr)?,
            buf: vec![0; 64 * 1024],
            filled: 0,
            closing: false,
        })
    }

    /// Sends `request` and reads the whole answer.
    pub fn exchange(&mut self, request: &[u8]) -> io::Result<Answer<'_>> {
        if self.closing {
            self.stream = connect(self.addr)?;
            self.filled = 0;
            self.closing = false;
        }
        self.stream.write_all(request)?;
        let head_end = loop {
            if let Some(end) = find_head_end(&self.buf[..self.filled]) {
                break end;
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| invalid("answer head is not UTF-8"))?;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let mut length = 0;
        for line in head.split("\r\n").skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            if name.eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("bad Content-Length"))?;
            } else if name.eq_ignore_ascii_case("connection") {
                self.closing = value.trim().eq_ignore_ascii_case("close");
            }
        }
        let end = head_end + length;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        while self.filled < end {
            self.fill()?;
        }
        // Nothing is pipelined: whatever follows would be a protocol error, so drop it.
        self.filled = 0;
        Ok(Answer {
            status,
            body: &self.buf[head_end..end],
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.filled == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        match self.stream.read(&mut self.buf[self.filled..])? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.filled += n;
                Ok(())
            }
        }
    }

    /// Sends requests until `end`; returns (completed in the measured time, completed in all,
    /// errors, latencies).
    fn drive(
        &mut self,
        c: usize,
        script: Script<'_>,
        measured_from: Instant,
        end: Instant,
    ) -> (u64, u64, u64, Vec<u32>) {
        let mut latencies = Vec::with_capacity(1 << 16);
        let (mut completed, mut total, mut errors) = (0, 0, 0);
        let mut request = Vec::with_capacity(256);
        for i in 0.. {
            if Instant::now() >= end {
                break;
            }
            request.clear();
            script(c, i, &mut request);
            let sent = Instant::now();
            let ok = match self.exchange(&request) {
                Ok(answer) => (200..300).contains(&answer.status),
                Err(_) => {
                    self.closing = true;
                    false
                }
            };
            if !ok {
                errors += 1;
                // Do not spin on a server that is down.
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            total += 1;
            if sent >= measured_from {
                completed += 1;
                let micros = sent.elapsed().as_micros();
                latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
            }
        }
        (completed, total, errors, latencies)
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

fn find_head_end(data: &[u8]) -> Option<usize> {
    data.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// `GET path` on a keep-alive connection.
pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").into_bytes()
}

/// `method path` with a JSON body on a keep-alive connection.
pub fn body_request(out: &mut Vec<u8>, method: &str, path: &str, body: &str) {
    let _ = write!(
        out,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}
