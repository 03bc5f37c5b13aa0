//! The HTTP server: tiny_http's connection threads read each request whole; `--workers`
//! threads take them from its queue, turn each into a `routes::Request`, ask `routes` for the
//! decision, and do what it says: answer, commit a change first (answered from the committer
//! thread once it is on disk), render a report from the live counters, or forward the request
//! to the chain application behind the node and relay its answer (SPEC §13; on a thread of
//! its own, `--app_workers` of them, within `--app_timeout`, so that a slow application never
//! holds the API's workers).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

mod forward;
use forward::{ForwardJob, Forwarding, forward_to_app};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tiny_http::{Header, StatusCode};

use crate::app::App;
use crate::error::Error;
use crate::membership::Outcome;
use crate::peers::{INSTANCE_HEADER, NETWORK_HEADER};
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
    /// The headers every answer carries.
    pub stamp: Stamp,
    /// `--app`: the chain application that answers the paths that are not the API's
    /// (SPEC §13); `config.app_body_limit` is set with it.
    pub app: Option<Arc<App>>,
}

/// What every answer of this process carries besides its own headers: `Seedmesh-Network`
/// with `--network` (SPEC §11), and `Seedmesh-Instance`, a random number drawn at start, by
/// which a process recognises an answer from itself whatever address reached it (an
/// interface address added after start, a NAT hairpin, a name).
#[derive(Debug, Clone)]
pub struct Stamp {
    pub network: Option<String>,
    pub instance: String,
}

impl Stamp {
    /// Adds the stamp's headers to `answer`.
    fn apply(&self, answer: &mut tiny_http::Response) {
        let headers = [
            self.network.as_deref().map(|name| (NETWORK_HEADER, name)),
            Some((INSTANCE_HEADER, self.instance.as_str())),
        ];
        for (name, value) in headers.into_iter().flatten() {
            if let Ok(header) = Header::from_bytes(name, value) {
                answer.add_header(header);
            }
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Threads answering requests.
    pub workers: usize,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Most connections open at once from one IPv4 address or IPv6 /64 (`--max_conns_per_ip`).
    pub max_connections_per_ip: usize,
    /// Most bytes of request bodies over 64 KiB held at once (`--app_body_budget`; only the
    /// application's paths take such bodies).
    pub body_budget: usize,
    /// Threads forwarding to the application (`--app_workers`), when there is one.
    pub app_workers: usize,
}

/// A running server.
pub struct Server {
    http: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
    api: Arc<Api>,
    forwarding: Option<Forwarding>,
}

impl Server {
    /// Serves `listener` with `options.workers` worker threads.
    pub fn start(
        listener: TcpListener,
        api: Arc<Api>,
        options: &ServerOptions,
    ) -> Result<Server, Error> {
        // The API's paths take bodies of 64 KiB, the application's `--app_body_limit`.
        let app_body_limit = api.config.app_body_limit;
        let limits = tiny_http::Limits {
            max_connections: options.max_connections,
            max_connections_per_source: options.max_connections_per_ip,
            body_budget_bytes: options.body_budget,
            idle_timeout: Duration::from_secs(10),
            max_body_bytes: routes::MAX_BODY_BYTES,
            body_limit: app_body_limit.map(|limit| {
                tiny_http::BodyLimit::new(move |_, target| routes::body_limit(target, Some(limit)))
            }),
            ..tiny_http::Limits::default()
        };
        let start_error = |source| Error::Start {
            what: "the HTTP server",
            source,
        };
        let with_app = app_body_limit.is_some();
        let refusals = refusals(Arc::clone(&api.stats), api.stamp.clone(), with_app);
        let http = Arc::new(
            tiny_http::Server::from_listener_with(listener, limits, refusals)
                .map_err(start_error)?,
        );
        let forwarding = match api.app {
            Some(_) => {
                Some(Forwarding::start(&api, options.app_workers.max(1)).map_err(start_error)?)
            }
            None => None,
        };
        let mut workers = Vec::with_capacity(options.workers);
        for i in 0..options.workers {
            let (http, api) = (Arc::clone(&http), Arc::clone(&api));
            let queue = forwarding.clone();
            let worker = thread::Builder::new()
                .name(format!("worker-{i}"))
                .stack_size(512 * 1024)
                .spawn(move || {
                    while let Ok(request) = http.recv() {
                        let load = Load {
                            connections: http.num_connections(),
                            in_flight: http.requests_in_flight(),
                        };
                        serve(request, &api, load, queue.as_ref());
                    }
                })
                .map_err(start_error)?;
            workers.push(worker);
        }
        Ok(Server {
            http,
            workers,
            api,
            forwarding,
        })
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
                serve(
                    request,
                    &self.api,
                    Load::default(),
                    self.forwarding.as_ref(),
                );
            }
        }
        let unanswered = self.http.requests_in_flight();
        if unanswered > 0 {
            log::warn!("stopping with {unanswered} answers not yet written");
        }
    }
}

/// Answers one request, or hands it to `forwarding` for the application. A panic while
/// deciding answers 500; the worker lives on.
fn serve(mut request: tiny_http::Request, api: &Api, load: Load, forwarding: Option<&Forwarding>) {
    // The body is already in memory: moved out, not copied, so that a large one forwarded
    // to the application is held once (it counts against --app_body_budget until the
    // request is answered).
    let body = request.take_body();
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
            let label = Label::of_target(request.url(), api.app.is_some());
            let response = Response::error(500, "internal error; nothing was changed");
            return send(request, label, response, &stats, &api.stamp);
        }
    };
    let label = decision.label;
    match (decision.reply, report) {
        (_, Some(response)) | (Reply::Now(response), None) => {
            send(request, label, response, &stats, &api.stamp);
        }
        (Reply::Commit { change, answer }, None) => {
            let stamp = api.stamp.clone();
            api.store.submit(
                change,
                Box::new(move |result| {
                    if let Ok(committed) = &result {
                        note_defences(&stats, &committed.outcome);
                    }
                    let response = answer.finish(result, &mut fastrand::Rng::new());
                    send(request, label, response, &stats, &stamp);
                }),
            )
        }
        (Reply::Forward(forward), None) => match forwarding {
            Some(forwarding) => forwarding.hand_over(
                ForwardJob {
                    request,
                    body,
                    forward,
                    label,
                },
                api,
            ),
            None => {
                let (status, answer) = forward_to_app(&request, body, forward, api);
                deliver(request, label, status, answer, &stats);
            }
        },
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
        app: api.app.as_ref().map(|app| app.status()),
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
/// or was never read, `app` when it is the application's).
fn refusals(stats: Arc<Stats>, stamp: Stamp, with_app: bool) -> tiny_http::Refusals {
    Arc::new(move |refusal: &tiny_http::Refusal<'_>| {
        let warning = match refusal.cause {
            tiny_http::Cause::TooManyConnections => Some(Warning::TooManyConnections),
            tiny_http::Cause::TooManyFromSource => Some(Warning::TooManyFromSource),
            tiny_http::Cause::BodyBudget => Some(Warning::BodyBudget),
            _ => None,
        };
        if let Some(warning) = warning {
            stats.warn_from(warning, 1, Some(refusal.peer.ip()), Instant::now());
        }
        stats.requests.count(
            refusal
                .target
                .map_or(Label::Other, |target| Label::of_target(target, with_app)),
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
        let response = Response {
            retry_after: refusal.retry_after.map(u64::from),
            ..Response::error(refusal.status.0, refusal.reason)
        };
        to_tiny(response, &stamp)
    })
}

/// Counts the answer, turns it into tiny_http's response and hands it to the connection
/// thread.
fn send(
    request: tiny_http::Request,
    label: Label,
    response: Response,
    stats: &Stats,
    stamp: &Stamp,
) {
    let status = response.status;
    deliver(request, label, status, to_tiny(response, stamp), stats);
}

/// Counts an answer of `status` and hands it to the connection thread.
fn deliver(
    request: tiny_http::Request,
    label: Label,
    status: u16,
    answer: tiny_http::Response,
    stats: &Stats,
) {
    let method = request.method().as_str();
    stats.requests.count(label, method, status);
    if status == 429 {
        let source = request.remote_addr().map(|a| a.ip());
        stats.warn_from(Warning::RateLimited, 1, source, Instant::now());
    }
    log::debug!(
        "{method} {} from {} -> {}",
        request.url(),
        request
            .remote_addr()
            .map_or_else(|| "?".to_string(), |a| a.ip().to_string()),
        status
    );
    // An error means the client has gone: nothing left to do.
    let _ = request.respond(answer);
}

/// Every answer's headers and body, the API's and the connection layer's alike (tiny_http
/// adds `Date`, `Content-Length` and `Connection`). The body is handed over as it is, not
/// copied: for `GET /nodes/` it is the committed list's JSON, shared by every answer until
/// the list changes. Every answer carries the stamp.
fn to_tiny(response: Response, stamp: &Stamp) -> tiny_http::Response {
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
    stamp.apply(&mut answer);
    answer
}

/// A header from ASCII constants.
fn fixed_header(name: &'static str, value: &'static str) -> Header {
    Header::from_bytes(name, value).unwrap_or_else(|()| unreachable!("{name}: {value} is ASCII"))
}
