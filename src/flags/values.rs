//! Parsers for flag values. Each says what it expected, in the user's terms, and never names
//! the flag: `Flag::apply` adds that.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::AllowLocal;
use crate::nodes::{Host, Node, NodeError};

/// Longest `--upd_int`, `--timeout` or `--app_timeout`: a day.
const MAX_SECONDS: f64 = 86_400.0;

/// Largest `BYTES` value: 1 GiB.
const MAX_BYTES: u64 = 1 << 30;

/// A whole number in `min..=max`, as the type of the setting it is for (`max` fits it).
pub fn int<T: TryFrom<u64>>(text: &str, min: u64, max: u64) -> Result<T, String> {
    let n = match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => n,
        Ok(n) => return Err(format!("{n} is out of range: expected {min} to {max}")),
        Err(_) => return Err(format!("expected a whole number from {min} to {max}")),
    };
    T::try_from(n).map_err(|_| format!("{n} is out of range: expected {min} to {max}"))
}

/// The port of a `HOST:PORT` or URL, 1 to 65535.
fn port_in(text: &str) -> Result<u16, String> {
    match text.parse::<u64>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        Ok(port) => Err(format!("port {port} is out of range: expected 1 to 65535")),
        Err(_) => Err(format!("port {text:?} is not a number from 1 to 65535")),
    }
}

/// Largest value of a `u32` setting.
pub const U32: u64 = u32::MAX as u64;

/// Seconds, fractions allowed: above 0, at least `min`, at most a day.
pub fn seconds(text: &str, min: f64) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s >= min && s <= MAX_SECONDS => {
            Ok(Duration::from_secs_f64(s))
        }
        _ if min > 0.0 => Err(format!(
            "expected a number of seconds from {min} to {MAX_SECONDS}"
        )),
        _ => Err(format!(
            "expected a number of seconds above 0 and at most {MAX_SECONDS}"
        )),
    }
}

/// A rate per second above 0 (fractions allowed), at most a million.
pub fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 && r <= 1e6 => Ok(r),
        _ => {
            Err("expected a number per second above 0 (such as 10 or 0.5), at most 1000000".into())
        }
    }
}

/// A size in bytes: a whole number, or one with `KiB`, `MiB` or `GiB`; 1 byte to 1 GiB.
pub fn bytes(text: &str) -> Result<u64, String> {
    let expected =
        || "expected a size such as 65536, 64KiB or 1MiB, from 1 byte to 1GiB".to_string();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = match unit {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return Err(expected()),
    };
    match number.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)) {
        Some(n) if (1..=MAX_BYTES).contains(&n) => Ok(n),
        _ => Err(expected()),
    }
}

/// Not empty.
pub fn nonempty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(text.to_owned())
}

/// A directory: not empty, and not an existing file.
pub fn dir(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(nonempty(text)?);
    match std::fs::metadata(&path) {
        Ok(meta) if !meta.is_dir() => Err("it is a file, not a directory".into()),
        _ => Ok(path),
    }
}

/// A plain file name, without `/`.
pub fn file_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text == "." || text == ".." || text.contains('/') {
        return Err("expected a plain file name, without '/'".into());
    }
    Ok(text.to_owned())
}

/// An address to bind: an IP literal (canonical), `0.0.0.0` or `::` (`""` is `0.0.0.0`, as
/// in the original design), or a hostname (lowercased).
pub fn bind_ip(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Ok("0.0.0.0".into());
    }
    match text.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(ip.to_string()),
        Err(_) => host(text).map(|host| host.to_string()),
    }
}

/// A node address (SPEC §1). The error is the API's reason, in a flag's terms: the value is
/// the flag's, not a body's `"ip_address"`, and a port goes in `-p`.
pub fn host(text: &str) -> Result<Host, String> {
    Host::parse(text).map_err(|e| match e {
        NodeError::BadAddress { reason, .. } => {
            format!(
                "not a valid address: {}",
                reason.replace("in \"port\"", "in -p/--port")
            )
        }
        other => other.to_string(),
    })
}

/// `HOST:PORT`, with brackets around an IPv6 host.
pub fn seed(text: &str) -> Result<Node, String> {
    let (host_text, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT, such as 127.0.0.1:42020".to_string())?;
    let host_text = match host_text.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .ok_or_else(|| "an IPv6 address goes in brackets: [::1]:42020".to_string())?,
        None if host_text.contains(':') => {
            return Err("an IPv6 address goes in brackets: [::1]:42020".into());
        }
        None => host_text,
    };
    let port = port_in(port)?;
    Ok(Node {
        host: host(host_text)?,
        port,
    })
}

pub fn allow_local(text: &str) -> Result<AllowLocal, String> {
    match text {
        "yes" => Ok(AllowLocal::Yes),
        "no" => Ok(AllowLocal::No),
        "auto" => Ok(AllowLocal::Auto),
        _ => Err("expected yes, no or auto".into()),
    }
}

/// A network name: 1–64 ASCII letters, digits, `-`, `_` and `.`, safe as a header value.
pub fn network(text: &str) -> Result<String, String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if (1..=64).contains(&text.len()) && text.bytes().all(allowed) {
        return Ok(text.to_owned());
    }
    Err("expected 1 to 64 ASCII letters, digits, '-', '_' or '.'".into())
}

pub fn log_level(text: &str) -> Result<log::LevelFilter, String> {
    match text.parse::<log::LevelFilter>() {
        Ok(level) if level != log::LevelFilter::Off => Ok(level),
        _ => Err("expected error, warn, info, debug or trace".into()),
    }
}

/// An application base URL, `http://HOST:PORT` (port 80 when left out; IPv6 in brackets),
/// with no path but `/`: its canonical text, host and port.
pub fn app_url(text: &str) -> Result<(String, Host, u16), String> {
    const EXAMPLE: &str = "such as http://127.0.0.1:8080";
    let Some(rest) = text.strip_prefix("http://") else {
        return Err(if text.starts_with("https://") {
            format!("https is not supported: the application is reached over plain HTTP, {EXAMPLE}")
        } else {
            format!("expected an http:// base URL, {EXAMPLE}")
        });
    };
    if rest.contains(['?', '#']) {
        return Err(format!("a base URL has no query or fragment, {EXAMPLE}"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if !path.is_empty() && path != "/" {
        return Err(format!(
            "a base URL has no path ({path}): requests keep their own paths; give one {EXAMPLE}"
        ));
    }
    if authority.contains('@') {
        return Err("a base URL has no user or password".into());
    }
    let (host_text, port) = match authority.strip_prefix('[') {
        Some(inner) => {
            let (host_text, after) = inner
                .split_once(']')
                .ok_or_else(|| "an IPv6 host ends with ']'".to_string())?;
            (host_text, after.strip_prefix(':'))
        }
        None if authority.matches(':').count() > 1 => {
            return Err("an IPv6 host goes in brackets: http://[::1]:8080".into());
        }
        None => match authority.split_once(':') {
            Some((host_text, port)) => (host_text, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port_in(port)?,
        None => 80,
    };
    let host = host(host_text)?;
    let url = format!(
        "http://{}",
        Node {
            host: host.clone(),
            port
        }
    );
    Ok((url, host, port))
}

/// A request path: starts with `/`, visible ASCII, at most 1024 bytes.
pub fn url_path(text: &str) -> Result<String, String> {
    if text.starts_with('/')
        && text.len() <= 1024
        && !text.contains('#')
        && text.bytes().all(|b| b.is_ascii_graphic())
    {
        return Ok(text.to_owned());
    }
    Err("expected a path starting with '/', such as /health, without spaces".into())
}

/// A DNS name (`--seed_zone`, `--seed_ns`, `--seed_domain`): a hostname, lowercased, without
/// a final dot, short enough for the names under it.
pub fn zone(text: &str) -> Result<String, String> {
    crate::dnsseed::parse_zone(text).map_err(|e| e.to_string())
}

/// `IP:PORT`, with brackets around an IPv6 address; port 0 (any free port) only when
/// `any_port`.
pub fn socket_addr(text: &str, any_port: bool) -> Result<SocketAddr, String> {
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() == 0 && !any_port => {
            Err("port 0 is not a port to ask: expected 1 to 65535".into())
        }
        Ok(addr) => Ok(addr),
        Err(_) => Err("expected IP:PORT, such as 127.0.0.1:5353 or [::1]:5353".into()),
    }
}
