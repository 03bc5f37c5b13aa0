//! Stand-ins for other processes: a black hole, a refused port, a peer that answers anything.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{Value, json};

/// A peer that accepts connections and never answers (a black hole).
pub struct BlackHole {
    pub addr: SocketAddr,
    _listener: TcpListener,
}

impl BlackHole {
    /// The kernel completes connections into the backlog; nobody ever reads or answers them.
    pub fn new(ip: &str) -> BlackHole {
        let listener = TcpListener::bind((ip, 0)).expect("bind black hole");
        BlackHole {
            addr: listener.local_addr().unwrap(),
            _listener: listener,
        }
    }
}

/// A port with nothing listening: connections are refused.
pub fn refused_addr(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind((ip, 0)).expect("bind");
    listener.local_addr().unwrap()
    // Dropped here: the port is closed.
}

/// A minimal HTTP peer that answers every request as its handler says (by default `200`
/// and a fixed body), and records each request line it receives.
pub struct FakePeer {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// How a `FakePeer` answers: from the request line and body, a status line ("200 OK") and a
/// JSON body.
pub type Answerer = Box<dyn Fn(&str, &[u8]) -> (String, String) + Send>;

impl FakePeer {
    /// A peer that answers `200` with `body` to everything.
    pub fn new(ip: &str, body: &str) -> FakePeer {
        let body = body.to_owned();
        FakePeer::answering(ip, Box::new(move |_, _| ("200 OK".into(), body.clone())))
    }

    /// A peer whose every answer `answer` decides.
    pub fn answering(ip: &str, answer: Answerer) -> FakePeer {
        let listener = TcpListener::bind((ip, 0)).expect("bind fake peer");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body_in = vec![0; length];
                let _ = reader.read_exact(&mut body_in);
                seen.lock().unwrap().push(line.trim().to_owned());
                let (status, body) = answer(line.trim(), &body_in);
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        FakePeer { addr, requests }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn node_json(&self) -> Value {
        json!({"ip_address": self.addr.ip().to_string(), "port": self.addr.port()})
    }
}
