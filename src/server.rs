//! The HTTP server: tiny_http's connection threads read each request whole; `--workers`
//! threads take them from its queue, turn each into a `routes::Request`, ask `routes` for the
//! decision, and do what it says: answer, commit a change first (answered from the committer
//! thread once it is on disk), or render a report from the live counters.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_http::{Header, StatusCode};

use crate::error::Error;
use crate::membership::Outcome;
use crate::peers::NETWORK_HEADER;
use crate::policy::TokenBuckets;
use crate::report::{self, Facts, Load, Profile};
use crate::response::{Payload, Response};
use crate::routes::{self, ApiConfig, Body, Context, Label, Reply, Report};
use crate::stats::{Stats, Warning};
use crate::store::Store;

/// What the server answers from.
pub struct Api {
    pub config: ApiConfig,
    pub store: Arc<Store>,
    /// Who this process is, for `/status` and `/metrics`.
    pub profile: Profile,
    pub stats: Arc<Stats>,
    /// SPEC §11's per-source token buckets for new registrations.
    pub buckets: Mutex<TokenBuckets>,
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Threads answering requests.
    pub workers: usize,
    /// Most connections open at once.
    pub max_connections: usize,
}

/// A running server.
pub struct Server {
    http: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    api: Arc<Api>,
}

impl Server {
    /// Serves `listener` with `options.workers` worker threads.
    pub fn start(
        listener: TcpListener,
        api: Arc<Api>,
        options: &ServerOptions,
    ) -> Result<Server, Error> {
        let limits = tiny_http::Limits {
            max_connections: options.max_connections,
            idle_timeout: Duration::from_secs(10),
            max_body_bytes: routes::MAX_BODY_BYTES,
            ..tiny_http::Limits::default()
        };
        let start_error = |source| Error::Start {
            what: "the HTTP server",
            source,
        };
        let refusals = refusals(Arc::clone(&api.stats), api.config.network.clone());
        let http = Arc::new(
            tiny_http::Server::from_listener_with(listener, limits, refusals)
                .map_err(start_error)?,
        );
        let mut workers = Vec::with_capacity(options.workers);
        for i in 0..options.workers {
            let (http, api) = (Arc::clone(&http), Arc::clone(&api));
            let worker = thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(512 * 1024)
                .spawn(move || {
                    while let Ok(request) = http.recv() {
                        let load = Load {
                            connections: http.num_connections(),
                            in_flight: http.requests_in_flight(),
                        };
                        serve(request, &api, load);
                    }
                })
                .map_err(start_error)?;
            workers.push(worker);
        }
        Ok(Server { http, workers, api })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.http.server_addr()
    }

    /// Stops accepting, answers every request already read, and returns once their answers
    /// are written or `deadline` has passed.
    pub fn shutdown(self, deadline: Instant) {
        self.http.stop_accepting();
        for _ in &self.workers {
            self.http.unblock();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
        // A request read as the stop began can land in the queue behind the workers' last
        // turn, and changes wait for the committer: serve and wait until every request in
        // flight is answered on its socket.
        while self.http.requests_in_flight() > 0 && Instant::now() < deadline {
            if let Ok(Some(request)) = self.http.recv_timeout(Duration::from_millis(2)) {
                serve(request, &self.api, Load::default());
            }
        }
        let unanswered = self.http.requests_in_flight();
        if unanswered > 0 {
            log::warn!("stopping with {unanswered} answers not yet written");
        }
    }
}

/// Answers one request. A panic while deciding answers 500; the worker lives on.
fn serve(mut request: tiny_http::Request, api: &Api, load: Load) {
    let mut body = Vec::new();
    // The body is already in memory: reading it cannot fail.
    let _ = request.as_reader().read_to_end(&mut body);
    let decision = panic::catch_unwind(AssertUnwindSafe(|| {
        let plain = routes::Request {
            method: request.method().as_str(),
            target: request.url(),
            body: if request.body_too_large() {
                Body::TooLarge
            } else if request.framing() == tiny_http::Framing::None {
                Body::Unframed
            } else {
                Body::Bytes(&body)
            },
            caller: request
                .remote_addr()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()),
            authorization: header(&request, "Authorization"),
            network: header(&request, NETWORK_HEADER),
        };
        let snapshot = api.store.snapshot();
        let mut context = Context {
            config: &api.config,
            snapshot: &snapshot,
            now: Instant::now(),
            rng: &mut fastrand::Rng::new(),
            buckets: &api.buckets,
        };
        let decision = routes::handle(&mut context, &plain);
        let report = match decision.reply {
            Reply::Report(report) => Some(render(api, report, load)),
            _ => None,
        };
        (decision, report)
    }));
    let stats = Arc::clone(&api.stats);
    let (decision, report) = match decision {
        Ok(decided) => decided,
        Err(_) => {
            let label = Label::of(request.url());
            let response = Response::error(500, "internal error; nothing was changed");
            return send(request, label, response, &stats, &api.config.network);
        }
    };
    let label = decision.label;
    match (decision.reply, report) {
        (_, Some(response)) | (Reply::Now(response), None) => {
            send(request, label, response, &stats, &api.config.network);
        }
        (Reply::Commit { change, answer }, None) => {
            let network = api.config.network.clone();
            api.store.submit(
                change,
                Box::new(move |result| {
                    if let Ok(committed) = &result {
                        note_defences(&stats, &committed.outcome);
                    }
                    let response = answer.finish(result, &mut fastrand::Rng::new());
                    send(request, label, response, &stats, &network);
                }),
            )
        }
        (Reply::Report(_), None) => unreachable!("every report is rendered above"),
    }
}

/// The `/status` or `/metrics` answer, from the live counters.
fn render(api: &Api, report: Report, load: Load) -> Response {
    let snapshot = api.store.snapshot();
    let facts = Facts {
        profile: &api.profile,
        stats: &api.stats,
        snapshot: &snapshot,
        disk: api.store.stats(),
        load,
    };
    match report {
        Report::Status => Response::json(200, &report::status(&facts)),
        Report::Metrics => Response {
            content_type: Some(report::METRICS_CONTENT_TYPE),
            body: Payload::Owned(report::metrics(&facts).into_bytes()),
            ..Response::empty(200)
        },
    }
}

fn header<'r>(request: &'r tiny_http::Request, name: &'static str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(name))
        .map(|h| h.value.as_str())
}

/// Counts and logs (throttled) what a committed change says about the defences of SPEC §11.
fn note_defences(stats: &Stats, outcome: &Outcome) {
    let now = Instant::now();
    stats.warn(Warning::Evicted, outcome.evicted(), now);
    stats.warn(Warning::RefusedLocal, outcome.refused(), now);
    if *outcome == Outcome::Full {
        stats.warn(Warning::Full, 1, now);
    }
}

/// The answers tiny_http's connection layer gives on its own (a malformed or too slow
/// request, too many connections, …): worded as the API's errors, with the same headers, and
/// counted in `http_requests_total` like them (under route `other` when the path is unknown
/// or was never read).
fn refusals(stats: Arc<Stats>, network: Option<String>) -> tiny_http::Refusals {
    Arc::new(move |refusal: &tiny_http::Refusal<'_>| {
        if refusal.cause == tiny_http::Cause::TooManyConnections {
            stats.warn(Warning::TooManyConnections, 1, Instant::now());
        }
        stats.requests.count(
            refusal.target.map_or(Label::Other, Label::of),
            refusal.method.map_or("other", tiny_http::Method::as_str),
            refusal.status.0,
        );
        log::debug!(
            "{} {} from {} -> {} ({})",
            refusal.method.map_or("-", tiny_http::Method::as_str),
            refusal.target.unwrap_or("-"),
            refusal.peer.ip(),
            refusal.status.0,
            refusal.reason
        );
        to_tiny(Response::error(refusal.status.0, refusal.reason), &network)
    })
}

/// Counts the answer, turns it into tiny_http's response and hands it to the connection
/// thread.
fn send(
    request: tiny_http::Request,
    label: Label,
    response: Response,
    stats: &Stats,
    network: &Option<String>,
) {
    let method = request.method().as_str();
    stats.requests.count(label, method, response.status);
    if response.status == 429 {
        stats.warn(Warning::RateLimited, 1, Instant::now());
    }
    log::debug!(
        "{method} {} from {} -> {}",
        request.url(),
        request
            .remote_addr()
            .map_or_else(|| "?".to_string(), |a| a.ip().to_string()),
        response.status
    );
    // An error means the client has gone: nothing left to do.
    let _ = request.respond(to_tiny(response, network));
}

/// Every answer's headers and body, the API's and the connection layer's alike (tiny_http
/// adds `Date`, `Content-Length` and `Connection`). The body is handed over as it is, not
/// copied: for `GET /nodes/` it is the committed list's JSON, shared by every answer until
/// the list changes. With `--network`, every answer names it (SPEC §11).
fn to_tiny(response: Response, network: &Option<String>) -> tiny_http::Response {
    let mut answer = tiny_http::Response::from_shared(Arc::new(response.body))
        .with_status_code(StatusCode(response.status))
        .with_header(fixed_header(
            "Server",
            concat!("seedmesh/", env!("CARGO_PKG_VERSION")),
        ));
    if let Some(content_type) = response.content_type {
        answer.add_header(fixed_header("Content-Type", content_type));
    }
    if let Some(allow) = response.allow {
        answer.add_header(fixed_header("Allow", allow));
    }
    if let Some(header) = response
        .retry_after
        .and_then(|seconds| Header::from_bytes("Retry-After", seconds.to_string()).ok())
    {
        answer.add_header(header);
    }
    if let Some(header) = network
        .as_ref()
        .and_then(|name| Header::from_bytes(NETWORK_HEADER, name.as_bytes()).ok())
    {
        answer.add_header(header);
    }
    answer
}

/// A header from ASCII constants.
fn fixed_header(name: &'static str, value: &'static str) -> Header {
    Header::from_bytes(name, value).unwrap_or_else(|()| unreachable!("{name}: {value} is ASCII"))
}
