//! Raw HTTP on a socket for the connection-layer tests: send bytes exactly as given, read
//! every answer that comes back (interim ones too), and check what every answer must carry.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// One answer off the wire.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` sentence of a JSON error answer.
    pub fn error(&self) -> String {
        let value: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        value["error"].as_str().unwrap_or_default().to_owned()
    }

    /// What every final answer must carry, the API's and the connection layer's alike: a
    /// `Date` in IMF-fixdate form (RFC 9110 §6.6.1, §5.6.7), and for an error, the body
    /// `{"error":"<sentence>"}` as JSON exactly as `serde_json` writes it, typed
    /// `application/json`. `Err` says what is missing.
    pub fn check_common(&self) -> Result<(), String> {
        if self.status < 200 {
            return Ok(());
        }
        match self.header("Date") {
            Some(date) if is_imf_fixdate(date) => {}
            other => return Err(format!("{}: Date is {other:?}", self.status)),
        }
        if self.status >= 400 {
            if self.header("Content-Type") != Some("application/json") {
                return Err(format!(
                    "{}: Content-Type {:?}",
                    self.status,
                    self.header("Content-Type")
                ));
            }
            let value: Value = serde_json::from_slice(&self.body)
                .map_err(|e| format!("{}: body not JSON ({e}): {}", self.status, self.text()))?;
            let one_sentence = value.as_object().is_some_and(|o| {
                o.len() == 1 && o["error"].as_str().is_some_and(|s| !s.is_empty())
            });
            let as_serde_writes = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
            if !one_sentence || as_serde_writes != self.body {
                return Err(format!(
                    "{}: body is not {{\"error\":…}} as serde_json writes it: {}",
                    self.status,
                    self.text()
                ));
            }
        }
        Ok(())
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7).
pub fn is_imf_fixdate(date: &str) -> bool {
    let b = date.as_bytes();
    let days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    b.len() == 29
        && days.contains(&&date[..3])
        && &date[3..5] == ", "
        && digits(5..7)
        && b[7] == b' '
        && months.contains(&&date[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &date[25..] == " GMT"
}

/// Sends `bytes` on a fresh connection, closes the sending side, and returns all the server
/// sent until it closed the connection (at most 5 s).
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // The server may answer and close before reading everything: what it sent still counts.
    let _ = stream
        .write_all(bytes)
        .and_then(|()| stream.shutdown(Shutdown::Write));
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    Ok(raw)
}

/// Every answer in `raw`, in order, interim (1xx) ones included; each final answer's body
/// is framed by its `Content-Length`. Stops at the first thing that is not an answer.
pub fn answers(raw: &[u8]) -> Vec<Answer> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let Ok(head) = std::str::from_utf8(&rest[..end]) else {
            break;
        };
        let mut lines = head.split("\r\n");
        let Some(status) = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
        else {
            break;
        };
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let length = if status < 200 { 0 } else { length };
        let body_end = (end + 4 + length).min(rest.len());
        out.push(Answer {
            status,
            headers,
            body: rest[end + 4..body_end].to_vec(),
        });
        rest = &rest[body_end..];
    }
    out
}
