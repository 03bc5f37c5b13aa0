//! The chain application behind a node (SPEC §13, `node --app URL`): a request for a path
//! that is not the API's is forwarded to the application and its answer relayed, so that the
//! application is reached at the node's one address; and with `--app_health PATH` the
//! application's health decides whether the node announces itself.
//!
//! What is forwarded is decided as plain data in `message`, the health's bookkeeping in
//! `health`. `App` does the I/O with one ureq agent, on the worker thread that took the
//! request: every call ends within `--app_timeout`, and answers are read up to
//! `--app_answer_limit`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::config::AppSettings;
use crate::logging::{Throttle, rfc3339, with_count};
use crate::nodes::Host;
use crate::update::Presence;

mod health;
mod message;

pub use health::{AppStatus, Health, HealthNews};
pub use message::{Incoming, Outbound, Relayed, VIA, outbound, relayed_headers};

/// Most bytes in the status line and headers of the application's answer.
const ANSWER_HEAD_BYTES: usize = 64 * 1024;

/// Most bytes of a health check's answer read (and dropped).
const HEALTH_BODY_BYTES: u64 = 64 * 1024;

/// How long a connection to the application may wait idle to be reused: shorter than the
/// keep-alive timeouts of common application servers (gunicorn's is 2 s), so that a request is
/// seldom sent on a connection the application is closing.
const IDLE_CONNECTION_AGE: Duration = Duration::from_secs(1);

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
    /// sent once more, on a new connection, within what is left of `--app_timeout`: a reused
    /// connection may have been closed by the application just as the request went out.
    pub fn forward(&self, incoming: &Incoming<'_>) -> Result<Relayed, AppError> {
        let started = Instant::now();
        let outbound = outbound(&self.settings.url, incoming);
        let idempotent = matches!(
            incoming.method,
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        );
        let mut result = self.send(&outbound, None);
        let left = self.settings.timeout.saturating_sub(started.elapsed());
        if idempotent && result == Err(AppError::Closed) && !left.is_zero() {
            result = self.send(&outbound, Some(left));
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

    /// One attempt at sending `outbound`, within `--app_timeout` or the `budget` given.
    fn send(&self, outbound: &Outbound<'_>, budget: Option<Duration>) -> Result<Relayed, AppError> {
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
            Some(body) => self.run(request.body(body).map_err(unforwardable)?, budget),
            None => self.run(request.body(()).map_err(unforwardable)?, budget),
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

    /// Sends `request` within `--app_timeout`, or within `budget` when given (a request-level
    /// timeout still shares the agent's pooled connections).
    fn run<B: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<B>,
        budget: Option<Duration>,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        match budget {
            Some(budget) => {
                let request = self.agent.configure_request(request);
                self.agent.run(request.timeout_global(Some(budget)).build())
            }
            None => self.agent.run(request),
        }
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
            healthy: health.healthy(),
            since: health.since().map(rfc3339),
            reason: health.reason().map(str::to_owned),
            announcing: health.presence() == Presence::Announce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
