//! The server glue of the simulated processes: a request answered with `routes::handle`'s
//! decision, committed through the process's `MemoryStore` — the same steps `server.rs`
//! takes, without sockets — either at once (`serve`) or, for a round run a slice at a time,
//! against the target's table as the slice found it (`serve_in_slice`).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::membership::Snapshot;
use crate::nodes::Node;
use crate::policy::TokenBuckets;
use crate::response::Response;
use crate::routes::{self, ApiConfig, Body, Context, Reply, Request};

use super::world::{Kind, Simulation, lock};

/// An answer given in a slice (`Simulation::serve_in_slice`).
pub(crate) enum Sliced {
    /// The answer: nothing changes.
    Now(Response),
    /// The request changes its target's table: it is served again at the slice's end,
    /// whose answer is the answer (`None`), or, for a registering `GET /nodes/`, the list
    /// as the slice found it now (`Some`).
    Later(Option<Response>),
}

impl Simulation {
    /// Answers one request to process `j` at simulated time `now` as its server would:
    /// `routes::handle` decides against the committed table, a change is committed through
    /// the store, and the committed outcome words the answer. A body is a node, handed over
    /// as a value (`Body::Node`): its JSON would be the same for every request.
    pub(crate) fn serve(
        &self,
        j: usize,
        method: &str,
        target: &str,
        body: Option<&Node>,
        caller: IpAddr,
        now: Instant,
    ) -> Response {
        let proc = &self.procs[j];
        if let Some(lie) = self.lie(proc.kind, method, target, None) {
            return lie;
        }
        let api = self.api(proc.kind);
        let request = Request {
            method,
            target,
            body: body.map_or(Body::Bytes(b""), Body::Node),
            caller,
            authorization: None,
            network: None,
        };
        let mut rng = lock(&proc.rng);
        // The snapshot is dropped before a change is applied, so the store changes its
        // table in place instead of copying it.
        let decision = {
            let snapshot = proc.store.snapshot();
            let mut context = Context {
                config: api,
                snapshot: &snapshot,
                now,
                rng: &mut rng,
                buckets: &proc.buckets,
            };
            routes::handle(&mut context, &request)
        };
        match decision.reply {
            Reply::Now(response) => response,
            Reply::Commit { change, answer } => {
                let committed = proc.store.apply(&change);
                answer.finish(Ok(committed), &mut rng)
            }
            // Nobody in the simulation asks for /status or /metrics, and no simulated node
            // has an application behind it.
            Reply::Report(_) | Reply::Forward(_) => Response::empty(200),
        }
    }

    /// Answers one request to process `j`, sent by a process whose round runs in a slice
    /// (see `slice`): `routes::handle` decides against `view`, `j`'s table as the slice
    /// found it, drawing from `rng` (the request's own, so that no other request's order
    /// matters).
    ///
    /// An answer that needs no change is given at once (`Sliced::Now`). One that would
    /// change the table waits for the slice's end (`Sliced::Later`), where the request is
    /// served again with `serve` against the table as it is then; meanwhile a registering
    /// `GET /nodes/` is answered the list as the slice found it.
    pub(crate) fn serve_in_slice(
        &self,
        kind: Kind,
        view: &Arc<Snapshot>,
        request: &Request<'_>,
        now: Instant,
        rng: &mut fastrand::Rng,
    ) -> Sliced {
        if let Some(lie) = self.lie(kind, request.method, request.target, Some(&mut *rng)) {
            return Sliced::Now(lie);
        }
        // A registration's token is taken at the slice's end, from the target's own buckets;
        // here a fresh bucket stands in, which always has one.
        let buckets = Mutex::new(TokenBuckets::new(10.0, 100, 1));
        let mut context = Context {
            config: self.api(kind),
            snapshot: view,
            now,
            rng,
            buckets: &buckets,
        };
        match routes::handle(&mut context, request).reply {
            Reply::Now(response) => Sliced::Now(response),
            Reply::Commit { .. } if request.method == "GET" => {
                let listing = Request {
                    body: Body::Bytes(b""),
                    ..*request
                };
                match routes::handle(&mut context, &listing).reply {
                    Reply::Now(response) => Sliced::Later(Some(response)),
                    _ => Sliced::Later(Some(Response::empty(200))),
                }
            }
            Reply::Commit { .. } => Sliced::Later(None),
            Reply::Report(_) | Reply::Forward(_) => Sliced::Now(Response::empty(200)),
        }
    }

    /// The lying peer's answer to a `GET /nodes…` (the adversary's behaviour, not the
    /// routes'), drawn from `rng` or the attacker's own; none for any other request.
    fn lie(
        &self,
        kind: Kind,
        method: &str,
        target: &str,
        rng: Option<&mut fastrand::Rng>,
    ) -> Option<Response> {
        let attacker = self.attacker.as_ref()?;
        (kind == Kind::Liar && method == "GET" && target.starts_with("/nodes"))
            .then(|| attacker.fabricated_list(rng))
    }

    /// The API settings of a process of `kind`.
    fn api(&self, kind: Kind) -> &ApiConfig {
        match kind {
            Kind::Seed => &self.api_seed,
            _ => &self.api_node,
        }
    }
}
