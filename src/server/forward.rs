//! Forwarding to the chain application behind the node (SPEC §13): the `--app_workers`
//! threads apart from the API's workers, the hand-over to them (503 when all are busy), and
//! the relay of the application's answer.

use std::net::{IpAddr, Ipv4Addr};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread;

use tiny_http::{Header, StatusCode};

use super::{Api, Stamp, deliver, send, to_tiny};
use crate::app::{Incoming, Relayed};
use crate::response::Response;
use crate::routes::{Forward, Label};

/// A request for the application, handed from an API worker to a forwarding thread.
pub(super) struct ForwardJob {
    pub(super) request: tiny_http::Request,
    pub(super) body: Vec<u8>,
    pub(super) forward: Forward,
    pub(super) label: Label,
}

/// The threads that forward to the application (`--app_workers`), apart from the API's
/// workers, with a queue as long as they are many: a slow application holds only them, never
/// the node's own API (which peers check it by). Beyond them, 503.
#[derive(Clone)]
pub(super) struct Forwarding {
    queue: mpsc::SyncSender<ForwardJob>,
}

impl Forwarding {
    pub(super) fn start(api: &Arc<Api>, threads: usize) -> std::io::Result<Forwarding> {
        let (queue, jobs) = mpsc::sync_channel::<ForwardJob>(threads);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads {
            let (api, jobs) = (Arc::clone(api), Arc::clone(&jobs));
            thread::Builder::new()
                .name(format!("app-forward-{i}"))
                .stack_size(512 * 1024)
                .spawn(move || {
                    loop {
                        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = job else { return };
                        let ForwardJob {
                            request,
                            body,
                            forward,
                            label,
                        } = job;
                        let (status, answer) = forward_to_app(&request, body, forward, &api);
                        deliver(request, label, status, answer, &api.stats);
                    }
                })?;
        }
        Ok(Forwarding { queue })
    }

    /// Hands `job` to a forwarding thread, or answers 503 when every one is busy and as many
    /// requests wait.
    pub(super) fn hand_over(&self, job: ForwardJob, api: &Api) {
        let job = match self.queue.try_send(job) {
            Ok(()) => return,
            Err(mpsc::TrySendError::Full(job) | mpsc::TrySendError::Disconnected(job)) => job,
        };
        let response = Response {
            retry_after: Some(1),
            ..Response::error(
                503,
                "the application is busy: every --app_workers thread is forwarding and as many requests wait; try again",
            )
        };
        send(job.request, job.label, response, &api.stats, &api.stamp);
    }
}

/// Forwards a request to the chain application and turns its answer (or why there is none,
/// as a 502 or 504 JSON error) into tiny_http's response, with its status. A panic while
/// forwarding answers 500.
pub(super) fn forward_to_app(
    request: &tiny_http::Request,
    body: Vec<u8>,
    forward: Forward,
    api: &Api,
) -> (u16, tiny_http::Response) {
    let stamp = &api.stamp;
    let Some(app) = &api.app else {
        let response = Response::error(404, "no such path");
        return (404, to_tiny(response, stamp));
    };
    let forwarded = panic::catch_unwind(AssertUnwindSafe(|| {
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .map(|h| (h.field.as_str(), h.value.as_str()))
            .collect();
        app.forward(&Incoming {
            method: request.method().as_str(),
            target: &forward.target,
            headers: &headers,
            body: forward.with_body.then_some(&body[..]),
            caller: request
                .remote_addr()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip()),
            version: &request.http_version().to_string(),
        })
    }));
    let response = match forwarded {
        Ok(Ok(relayed)) => {
            let head = *request.method() == tiny_http::Method::Head;
            return (relayed.status, relay(relayed, head, stamp));
        }
        Ok(Err(e)) => Response::error(e.status(), e.to_string()),
        Err(_) => Response::error(500, "internal error while forwarding to the application"),
    };
    (response.status, to_tiny(response, stamp))
}

/// The application's answer as tiny_http's response: its status, its end-to-end headers
/// (tiny_http writes `Date`, the framing and `Connection` itself) and its body; an answer to
/// `HEAD` declares the length the application declared. It carries the stamp too.
fn relay(answer: Relayed, head: bool, stamp: &Stamp) -> tiny_http::Response {
    let mut relayed =
        tiny_http::Response::from_data(answer.body).with_status_code(StatusCode(answer.status));
    for (name, value) in answer.headers {
        match Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            Ok(header) => relayed.add_header(header),
            Err(()) => log::debug!("application header {name} not relayed: not a valid field"),
        }
    }
    stamp.apply(&mut relayed);
    if head {
        relayed = relayed.with_head_length(answer.length);
    }
    relayed
}
