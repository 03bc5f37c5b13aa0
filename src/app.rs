//! The chain application behind a node (SPEC §13, `node --app URL`): a request for a path
//! that is not the API's is forwarded to the application and its answer relayed, so that the
//! application is reached at the node's one address; and with `--app_health PATH` the
//! application's health decides whether the node announces itself.
//!
//! What is forwarded is decided here as plain data (`outbound`, `relayed_headers`): the
//! method, target and body as they came, the end-to-end headers (less the hop-by-hop ones of
//! RFC 9110 §7.6.1), and `X-Forwarded-For`, `Forwarded` (RFC 7239) and `Via` (RFC 9110
//! §7.6.3) naming the caller and this hop. `App` does the I/O with one ureq agent, on the
//! worker thread that took the request: every call ends within `--app_timeout`, and answers
//! are read up to `--app_answer_limit`.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::config::AppSettings;
use crate::logging::{Throttle, rfc3339, with_count};
use crate::nodes::Host;
use crate::update::Presence;

/// The pseudonym this hop gives itself in `Via` (RFC 9110 §7.6.3).
pub const VIA: &str = "1.1 seedmesh";

/// Most bytes in the status line and headers of the application's answer.
const ANSWER_HEAD_BYTES: usize = 64 * 1024;

/// Most bytes of a health check's answer read (and dropped).
const HEALTH_BODY_BYTES: u64 = 64 * 1024;

/// How long a connection to the application may wait idle to be reused: shorter than the
/// keep-alive timeouts of common application servers (gunicorn's is 2 s), so that a request is
/// seldom sent on a connection the application is closing.
const IDLE_CONNECTION_AGE: Duration = Duration::from_secs(1);

/// Hop-by-hop header fields (RFC 9110 §7.6.1), never forwarded either way, and the ones a hop
/// writes afresh: `Host` (the application's), the framing (`Content-Length`; RFC 9112 §6) and
/// `Expect` (answered here: the whole body is read before it is forwarded). The `Proxy-*`
/// fields and those named by `Connection` are dropped too (`is_hop_by_hop`).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
];

/// A request as it arrived, to forward.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The method, as sent.
    pub method: &'a str,
    /// The request target, origin-form (`/path?query`).
    pub target: &'a str,
    /// The header fields, as received, in order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body (perhaps empty), or `None` when the request has none (RFC 9112 §6.3).
    pub body: Option<&'a [u8]>,
    /// The caller's TCP source address.
    pub caller: IpAddr,
}

/// The request to send to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound<'a> {
    pub method: &'a str,
    /// The application's base URL and the request target.
    pub url: String,
    /// The end-to-end header fields, then `X-Forwarded-For`, `Forwarded` and `Via`.
    pub headers: Vec<(String, String)>,
    pub body: Option<&'a [u8]>,
}

/// Whether the header field `name` stops at this hop, given the (lowercase) names the
/// `Connection` fields list.
fn is_hop_by_hop(name: &str, connection: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&name.as_str()) || name.starts_with("proxy-") || connection.contains(&name)
}

/// The field names the `Connection` fields among `headers` list, lowercase (RFC 9110 §7.6.1).
fn connection_options<'h>(headers: impl Iterator<Item = (&'h str, &'h str)>) -> Vec<String> {
    headers
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(|option| option.trim().to_ascii_lowercase())
        .filter(|option| !option.is_empty())
        .collect()
}

/// The values of every `name` field, joined as one list (RFC 9110 §5.3), or `None`.
fn joined(headers: &[(&str, &str)], name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(n, v)| n.eq_ignore_ascii_case(name) && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// `value` appended to the list `existing`.
fn append(existing: Option<String>, value: &str) -> String {
    match existing {
        Some(list) => format!("{list}, {value}"),
        None => value.to_owned(),
    }
}

/// The request to send to the application at `base` (`http://host:port`, no trailing `/`)
/// for `incoming`: the same method, target and body; its end-to-end header fields in their
/// order; and, appended to any the caller sent, `X-Forwarded-For` with the caller's address,
/// a `Forwarded` element (RFC 7239 §4: `for`, the `host` the caller asked for, `proto`) and
/// `Via`. The caller's own entries in these lists are kept as they came: only the last entry
/// is this node's word.
pub fn outbound<'a>(base: &str, incoming: &Incoming<'a>) -> Outbound<'a> {
    let fields = incoming.headers;
    let connection = connection_options(fields.iter().copied());
    let caller = incoming.caller.to_canonical();
    let mut headers: Vec<(String, String)> = fields
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name, &connection))
        .filter(|(name, _)| {
            !["x-forwarded-for", "forwarded", "via"]
                .iter()
                .any(|ours| name.eq_ignore_ascii_case(ours))
        })
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let forwarded_for = match caller {
        IpAddr::V4(ip) => ip.to_string(),
        // RFC 7239 §6: an IPv6 node is bracketed, and so must be quoted.
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let mut element = format!("for={forwarded_for}");
    let host = fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim())
        .filter(|host| !host.is_empty());
    if let Some(host) = host {
        // A quoted-string (RFC 7230 §3.2.6): `"` and `\` escaped.
        let quoted = host.replace('\\', "\\\\").replace('"', "\\\"");
        element.push_str(&format!(";host=\"{quoted}\""));
    }
    element.push_str(";proto=http");
    headers.extend([
        (
            "X-Forwarded-For".to_owned(),
            append(joined(fields, "x-forwarded-for"), &caller.to_string()),
        ),
        (
            "Forwarded".to_owned(),
            append(joined(fields, "forwarded"), &element),
        ),
        ("Via".to_owned(), append(joined(fields, "via"), VIA)),
    ]);
    Outbound {
        method: incoming.method,
        url: format!("{base}{}", incoming.target),
        headers,
        body: incoming.body,
    }
}

/// The application's header fields to relay (its end-to-end ones, in order, as text; bytes
/// that are not UTF-8 become U+FFFD), and the `Content-Length` it declared, which an answer to
/// `HEAD` passes on.
pub fn relayed_headers(headers: &[(&str, &[u8])]) -> (Vec<(String, String)>, Option<u64>) {
    let text = |value: &[u8]| String::from_utf8_lossy(value).trim().to_owned();
    let connection = connection_options(
        headers
            .iter()
            .map(|&(name, value)| (name, std::str::from_utf8(value).unwrap_or(""))),
    );
    let mut length = None;
    let mut relayed = Vec::new();
    for &(name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            length = text(value).parse().ok();
        }
        // The connection layer writes its own `Date`.
        if is_hop_by_hop(name, &connection) || name.eq_ignore_ascii_case("date") {
            continue;
        }
        relayed.push((name.to_owned(), text(value)));
    }
    (relayed, length)
}

/// The application's answer, to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub status: u16,
    /// Its end-to-end header fields, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The `Content-Length` it declared: what an answer to `HEAD` declares in turn.
    pub length: Option<u64>,
}

/// Why the application gave no answer to relay: one variant per cause an operator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppError {
    /// No whole answer within `--app_timeout`: 504.
    Timeout(Duration),
    /// Nothing listens at the application's address: 502.
    Refused,
    /// The connection closed before a whole answer: 502.
    Closed,
    /// The application answered, but not HTTP this node can read (a garbled or oversized
    /// head, an unrelayable `1xx`), with what was wrong: 502.
    Garbled(String),
    /// An answer over `--app_answer_limit` bytes: 502.
    TooLarge(u64),
    /// Another failure to reach it (host not found, no route…), with the system's words: 502.
    Unreachable(String),
    /// The request cannot be sent as it came (a target or method the HTTP client refuses),
    /// with why: 400.
    Unforwardable(String),
}

impl AppError {
    /// The status this node answers for it (SPEC §13: down or garbled 502, too slow 504).
    pub fn status(&self) -> u16 {
        match self {
            AppError::Timeout(_) => 504,
            AppError::Unforwardable(_) => 400,
            _ => 502,
        }
    }

    /// A short label of the cause, for logs.
    pub fn cause(&self) -> &'static str {
        match self {
            AppError::Timeout(_) => "timeout",
            AppError::Refused => "refused",
            AppError::Closed => "closed",
            AppError::Garbled(_) => "garbled",
            AppError::TooLarge(_) => "too_large",
            AppError::Unreachable(_) => "unreachable",
            AppError::Unforwardable(_) => "unforwardable",
        }
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppError::Timeout(limit) => write!(
                f,
                "the application did not answer within --app_timeout ({} s)",
                limit.as_secs_f64()
            ),
            AppError::Refused => {
                f.write_str("the application refused the connection; is it running?")
            }
            AppError::Closed => {
                f.write_str("the application closed the connection without a whole answer")
            }
            AppError::Garbled(what) => write!(f, "the application's answer is not usable: {what}"),
            AppError::TooLarge(limit) => write!(
                f,
                "the application's answer is over --app_answer_limit ({limit} bytes)"
            ),
            AppError::Unreachable(what) => write!(f, "the application cannot be reached: {what}"),
            AppError::Unforwardable(what) => write!(f, "this request cannot be forwarded: {what}"),
        }
    }
}

impl std::error::Error for AppError {}

/// The application's health as `/status` reports it (SPEC §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppStatus {
    /// `--app`.
    pub url: String,
    /// `--app_health`, when set.
    pub health_path: Option<String>,
    /// The last check's result; `null` before the first one, or without `--app_health`.
    pub healthy: Option<bool>,
    /// Since when it has been so, RFC 3339 UTC.
    pub since: Option<String>,
    /// Why the last check failed.
    pub reason: Option<String>,
    /// Whether this node announces itself to seeds and peers: not while the check fails.
    pub announcing: bool,
}

/// What the health checks found, and since when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// `None` before the first check.
    healthy: Option<bool>,
    since: Option<SystemTime>,
    reason: Option<String>,
}

/// What a health check changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthNews {
    /// As before (or healthy at the first check): nothing to say.
    Same,
    /// It failed, after passing or at the first check: the node stops announcing itself.
    Stopped(String),
    /// It passes after failing: the node announces itself again.
    Resumed,
}

impl Health {
    /// Records a check made at `now`: `Ok` when the application passed, else why not.
    pub fn record(&mut self, result: Result<(), String>, now: SystemTime) -> HealthNews {
        let healthy = result.is_ok();
        let news = match (self.healthy, &result) {
            (Some(false), Ok(())) => HealthNews::Resumed,
            (None | Some(true), Err(reason)) => HealthNews::Stopped(reason.clone()),
            _ => HealthNews::Same,
        };
        if self.healthy != Some(healthy) {
            self.since = Some(now);
        }
        self.healthy = Some(healthy);
        self.reason = result.err();
        news
    }

    /// Whether the node announces itself: unless the last check failed.
    pub fn presence(&self) -> Presence {
        match self.healthy {
            Some(false) => Presence::Quiet,
            _ => Presence::Announce,
        }
    }
}

/// Where the application is: its address itself when `--app` names an IP, so that no request
/// resolves anything; a name is resolved for each new connection by ureq's default resolver.
///
/// ureq's default resolver, given a timeout (we give every call one), starts a thread for each
/// request to resolve even an IP literal, before it looks for a pooled connection: a thread
/// per forwarded request, and a millisecond or more of latency on a loaded machine.
#[derive(Debug, Default)]
struct AppAddress {
    addr: Option<SocketAddr>,
    names: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for AppAddress {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        // The agent reaches the application alone, so the address is the URL's.
        match self.addr {
            Some(addr) => {
                let mut resolved = self.empty();
                resolved.push(addr);
                Ok(resolved)
            }
            None => self.names.resolve(uri, config, timeout),
        }
    }
}

/// The chain application: the HTTP client that reaches it and what its checks found.
pub struct App {
    settings: AppSettings,
    agent: ureq::Agent,
    health: Mutex<Health>,
    /// One warning per cause per interval for failed forwards.
    failures: Throttle<&'static str>,
}

impl App {
    /// The application of `settings`, reached by `workers` threads at most at once (one idle
    /// connection kept for each); failed forwards are logged at most once per cause per
    /// `log_interval`.
    pub fn new(settings: &AppSettings, workers: usize, log_interval: Duration) -> App {
        let config = ureq::Agent::config_builder()
            // Connect, send, and the whole answer, within one budget.
            .timeout_global(Some(settings.timeout))
            // Every status is the application's answer, to relay.
            .http_status_as_error(false)
            // A redirect is the caller's to follow, not ours.
            .max_redirects(0)
            // The application is addressed directly; a proxy from the environment would be
            // wrong.
            .proxy(None)
            // Methods are the caller's (WebDAV's PROPFIND…).
            .allow_non_standard_methods(true)
            // Only the caller's own headers: nothing added.
            .user_agent(ureq::config::AutoHeaderValue::None)
            .accept(ureq::config::AutoHeaderValue::None)
            .accept_encoding(ureq::config::AutoHeaderValue::None)
            .max_response_header_size(ANSWER_HEAD_BYTES)
            .max_idle_connections(workers.max(1))
            .max_idle_connections_per_host(workers.max(1))
            .max_idle_age(IDLE_CONNECTION_AGE)
            .build();
        let address = AppAddress {
            addr: match settings.host {
                Host::Ip(ip) => Some(SocketAddr::new(ip, settings.port)),
                Host::Name(_) => None,
            },
            ..AppAddress::default()
        };
        let connector = ureq::unversioned::transport::DefaultConnector::default();
        App {
            settings: settings.clone(),
            agent: ureq::Agent::with_parts(config, connector, address),
            health: Mutex::new(Health::default()),
            failures: Throttle::new(log_interval),
        }
    }

    /// `--app`, `http://host:port`.
    pub fn url(&self) -> &str {
        &self.settings.url
    }

    /// Forwards `incoming` and returns the application's answer, within `--app_timeout`.
    /// An idempotent request (RFC 9110 §9.2.2) whose connection closed before any answer is
    /// sent once more, on a new connection: a reused connection may have been closed by the
    /// application just as the request went out.
    pub fn forward(&self, incoming: &Incoming<'_>) -> Result<Relayed, AppError> {
        let started = Instant::now();
        let outbound = outbound(&self.settings.url, incoming);
        let idempotent = matches!(
            incoming.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        );
        let mut result = self.send(&outbound);
        if idempotent
            && result == Err(AppError::Closed)
            && started.elapsed() < self.settings.timeout
        {
            result = self.send(&outbound);
        }
        if let Err(e) = &result
            && let Some(seen) = self.failures.hit(e.cause(), Instant::now())
        {
            let line = format!(
                "{} {} for {}: {e}",
                incoming.method, incoming.target, incoming.caller
            );
            log::warn!(
                "application {}: {}",
                self.settings.url,
                with_count(&line, seen)
            );
        }
        result
    }

    /// One attempt at sending `outbound`.
    fn send(&self, outbound: &Outbound<'_>) -> Result<Relayed, AppError> {
        use ureq::http::{HeaderName, HeaderValue, Method, Request};
        let method = Method::from_bytes(outbound.method.as_bytes())
            .map_err(|_| AppError::Unforwardable(format!("method {}", outbound.method)))?;
        let mut request = Request::builder().method(method).uri(outbound.url.as_str());
        for (name, value) in &outbound.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                (Ok(name), Ok(value)) => request = request.header(name, value),
                _ => log::debug!("header {name} not forwarded: not a valid field"),
            }
        }
        let unforwardable = |e: ureq::http::Error| AppError::Unforwardable(e.to_string());
        let answer = match outbound.body {
            Some(body) => self.agent.run(request.body(body).map_err(unforwardable)?),
            None => self.agent.run(request.body(()).map_err(unforwardable)?),
        };
        let mut response = answer.map_err(|e| self.cause(e))?;
        let status = response.status().as_u16();
        if status < 200 {
            return Err(AppError::Garbled(format!(
                "status {status} cannot be relayed (no protocol switching here)"
            )));
        }
        let fields: Vec<(&str, &[u8])> = response
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        let (headers, length) = relayed_headers(&fields);
        let body = response
            .body_mut()
            .with_config()
            .limit(self.settings.answer_limit)
            .read_to_vec()
            .map_err(|e| self.cause(e))?;
        Ok(Relayed {
            status,
            headers,
            body,
            length,
        })
    }

    /// The cause of a failed call, from ureq's error.
    fn cause(&self, e: ureq::Error) -> AppError {
        match e {
            ureq::Error::Timeout(_) => AppError::Timeout(self.settings.timeout),
            ureq::Error::BodyExceedsLimit(_) => AppError::TooLarge(self.settings.answer_limit),
            ureq::Error::Protocol(e) => AppError::Garbled(e.to_string()),
            ureq::Error::LargeResponseHeader(..) => {
                AppError::Garbled(format!("its head is over {} KiB", ANSWER_HEAD_BYTES / 1024))
            }
            ureq::Error::HostNotFound => AppError::Unreachable("host not found".into()),
            ureq::Error::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => AppError::Refused,
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    AppError::Timeout(self.settings.timeout)
                }
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => AppError::Closed,
                io::ErrorKind::InvalidData => AppError::Garbled(e.to_string()),
                _ => AppError::Unreachable(e.to_string()),
            },
            ureq::Error::Http(e) => AppError::Unforwardable(e.to_string()),
            ureq::Error::BadUri(e) => AppError::Unforwardable(e),
            other => AppError::Unreachable(other.to_string()),
        }
    }

    /// Checks the application with `GET --app_health` (any 2xx passes), records the result,
    /// logs a line when the node stops or resumes announcing itself, and says whether it
    /// announces itself this round. Without `--app_health`, it always does.
    pub fn presence(&self) -> Presence {
        let Some(path) = &self.settings.health else {
            return Presence::Announce;
        };
        let result = self.check(path);
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match health.record(result, SystemTime::now()) {
            HealthNews::Stopped(reason) => log::warn!(
                "application {} failed its health check ({reason}): not announcing this node to seeds and peers until it passes",
                self.settings.url
            ),
            HealthNews::Resumed => log::info!(
                "application {} passed its health check (GET {path}): announcing this node again",
                self.settings.url
            ),
            HealthNews::Same => {}
        }
        health.presence()
    }

    /// One health check: `GET path`, `Ok` on a 2xx answer, else why not.
    fn check(&self, path: &str) -> Result<(), String> {
        let answer = self
            .agent
            .get(format!("{}{path}", self.settings.url))
            .header(
                "User-Agent",
                concat!("seedmesh/", env!("CARGO_PKG_VERSION")),
            )
            .call();
        let mut response = answer.map_err(|e| format!("GET {path}: {}", self.cause(e)))?;
        // Read what there is (up to a bound) so that the connection can be reused.
        let _ = response
            .body_mut()
            .with_config()
            .limit(HEALTH_BODY_BYTES)
            .read_to_vec();
        match response.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(format!("GET {path} answered {status}")),
        }
    }

    /// The application's part of `/status`.
    pub fn status(&self) -> AppStatus {
        let health = self
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        AppStatus {
            url: self.settings.url.clone(),
            health_path: self.settings.health.clone(),
            healthy: health.healthy,
            since: health.since.map(rfc3339),
            reason: health.reason.clone(),
            announcing: health.presence() == Presence::Announce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const CALLER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));

    fn incoming<'a>(headers: &'a [(&'a str, &'a str)]) -> Incoming<'a> {
        Incoming {
            method: "POST",
            target: "/blocks/?from=3",
            headers,
            body: Some(b"{}"),
            caller: CALLER,
        }
    }

    fn value<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_request_goes_as_it_came_less_the_hop_by_hop_fields() {
        let headers = [
            ("Host", "127.0.0.1:55000"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Content-Length", "2"),
            ("Expect", "100-continue"),
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer abc"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ];
        let out = outbound("http://127.0.0.1:8080", &incoming(&headers));
        assert_eq!(out.method, "POST");
        assert_eq!(out.url, "http://127.0.0.1:8080/blocks/?from=3");
        assert_eq!(out.body, Some(&b"{}"[..]));
        let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "Authorization",
                "Cookie",
                "Cookie",
                "X-Forwarded-For",
                "Forwarded",
                "Via"
            ]
        );
    }

    #[test]
    fn the_caller_is_named_after_the_entries_it_sent() {
        let out = outbound("http://a:1", &incoming(&[("Host", "127.0.0.1:55000")]));
        assert_eq!(value(&out.headers, "x-forwarded-for"), Some("127.0.0.9"));
        assert_eq!(
            value(&out.headers, "forwarded"),
            Some(r#"for=127.0.0.9;host="127.0.0.1:55000";proto=http"#)
        );
        assert_eq!(value(&out.headers, "via"), Some("1.1 seedmesh"));

        let sent = [
            ("X-Forwarded-For", "127.1.1.1"),
            ("x-forwarded-for", "127.2.2.2, 127.3.3.3"),
            ("Forwarded", "for=127.1.1.1"),
            ("Via", "1.0 fred"),
        ];
        let mut from_v6 = incoming(&sent);
        from_v6.caller = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let out = outbound("http://a:1", &from_v6);
        assert_eq!(
            value(&out.headers, "x-forwarded-for"),
            Some("127.1.1.1, 127.2.2.2, 127.3.3.3, ::1")
        );
        assert_eq!(
            value(&out.headers, "forwarded"),
            Some(r#"for=127.1.1.1, for="[::1]";proto=http"#)
        );
        assert_eq!(value(&out.headers, "via"), Some("1.0 fred, 1.1 seedmesh"));
        let count = |name: &str| {
            out.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .count()
        };
        assert_eq!(
            (count("x-forwarded-for"), count("forwarded"), count("via")),
            (1, 1, 1)
        );

        // An IPv4-mapped caller is its IPv4 address.
        let mut mapped = incoming(&[]);
        mapped.caller = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 7).to_ipv6_mapped());
        let out = outbound("http://a:1", &mapped);
        assert_eq!(value(&out.headers, "x-forwarded-for"), Some("127.0.0.7"));
    }

    #[test]
    fn the_answer_is_relayed_less_the_hop_by_hop_fields() {
        let answer: [(&str, &[u8]); 9] = [
            ("content-type", b"application/json"),
            ("connection", b"close, x-app-hop"),
            ("x-app-hop", b"1"),
            ("keep-alive", b"timeout=5"),
            ("transfer-encoding", b"chunked"),
            ("proxy-authenticate", b"Basic"),
            ("date", b"Tue, 01 Jan 2030 00:00:00 GMT"),
            ("set-cookie", b"a=1"),
            ("content-length", b"1234"),
        ];
        let (headers, length) = relayed_headers(&answer);
        assert_eq!(
            headers,
            [
                ("content-type".to_owned(), "application/json".to_owned()),
                ("set-cookie".to_owned(), "a=1".to_owned())
            ]
        );
        assert_eq!(length, Some(1234));
        let latin1: [(&str, &[u8]); 1] = [("x-name", b"caf\xe9")];
        assert_eq!(relayed_headers(&latin1).0[0].1, "caf\u{fffd}");
    }

    #[test]
    fn presence_stops_at_a_failed_check_and_resumes_at_a_passed_one_saying_so_once() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut health = Health::default();
        assert_eq!(health.presence(), Presence::Announce, "before any check");
        assert_eq!(health.record(Ok(()), t), HealthNews::Same);
        let failed = || Err("GET /health answered 503".to_owned());
        let later = t + Duration::from_secs(60);
        assert_eq!(
            health.record(failed(), later),
            HealthNews::Stopped("GET /health answered 503".into())
        );
        assert_eq!(health.presence(), Presence::Quiet);
        assert_eq!(
            health.record(failed(), later + Duration::from_secs(60)),
            HealthNews::Same
        );
        assert_eq!(health.since, Some(later), "since the first failure");
        assert_eq!(health.reason.as_deref(), Some("GET /health answered 503"));
        let back = later + Duration::from_secs(120);
        assert_eq!(health.record(Ok(()), back), HealthNews::Resumed);
        assert_eq!(health.presence(), Presence::Announce);
        assert_eq!((health.since, health.reason), (Some(back), None));

        // Failing at the very first check stops announcing too.
        let mut fresh = Health::default();
        assert!(matches!(fresh.record(failed(), t), HealthNews::Stopped(_)));
        assert_eq!(fresh.presence(), Presence::Quiet);
    }

    #[test]
    fn statuses_follow_spec_13() {
        assert_eq!(AppError::Timeout(Duration::from_secs(10)).status(), 504);
        for e in [
            AppError::Refused,
            AppError::Closed,
            AppError::Garbled("x".into()),
            AppError::TooLarge(1),
            AppError::Unreachable("x".into()),
        ] {
            assert_eq!(e.status(), 502, "{e}");
        }
        assert_eq!(
            AppError::Timeout(Duration::from_millis(2500)).to_string(),
            "the application did not answer within --app_timeout (2.5 s)"
        );
    }
}
