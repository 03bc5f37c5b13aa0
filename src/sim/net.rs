//! The simulated network: `Net` is the `Transport` a simulated process's rounds reach their
//! peers through, `SimClock` the `Clock` they read.
//!
//! A call is delivered at once to the target's `Simulation::serve`, and costs simulated time:
//! two round trips when answered (connect, then the exchange), one when refused, `--timeout`
//! when lost, partitioned away or sent to a black hole (or to an address where nothing
//! exists). `each` runs its calls one after another but on `--check_threads` virtual
//! threads: each call starts on the thread that is free first, as `peers::parallel` hands
//! the next item to the first thread done, so a step's time is the makespan of its calls.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::nodes::{Host, Node};
use crate::peers;
use crate::response::{Payload, Response};
use crate::routes::{Body, Request};
use crate::transport::{Clock, PeerError, PeerList, Transport};

use super::hash::key;
use super::serve::Sliced;
use super::slice::{Deferred, InSlice};
use super::world::{ALIVE, BLACK_HOLE, Kind, REFUSED, Simulation, Target, lock};

/// Bytes of an HTTP request's head as our client sends it (request line, Host, User-Agent,
/// Accept, Content-Type, Content-Length): an estimate, counted for every request.
pub(crate) const REQUEST_HEAD_BYTES: u64 = 140;
/// Bytes of an answer's head as our server sends it (status line, Server, Date,
/// Content-Type, Content-Length): an estimate, counted for every answer.
pub(crate) const ANSWER_HEAD_BYTES: u64 = 130;

/// The clock of one process's round: the simulated time its calls have reached.
pub(crate) struct SimClock<'a> {
    epoch: Instant,
    now: &'a AtomicU64,
}

impl<'a> SimClock<'a> {
    /// A clock reading `epoch` + `now` nanoseconds.
    pub(crate) fn new(epoch: Instant, now: &'a AtomicU64) -> SimClock<'a> {
        SimClock { epoch, now }
    }
}

impl Clock for SimClock<'_> {
    fn now(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.now.load(Relaxed))
    }
}

/// The transport of process `from` during one of its rounds.
pub(crate) struct Net<'a> {
    sim: &'a Simulation,
    from: usize,
    /// The caller's `--timeout` and `--check_threads`.
    timeout: Duration,
    threads: usize,
    /// Simulated time since the epoch, in nanoseconds, on the virtual thread now running.
    now: &'a AtomicU64,
    /// In a slice: the others' tables as the slice found them, and where the requests
    /// whose changes wait for the slice's end go.
    slice: Option<InSlice<'a>>,
}

/// What became of a call before any answer.
enum Fate {
    Answered(Target),
    Refused,
    TimedOut,
}

impl<'a> Net<'a> {
    pub(crate) fn new(
        sim: &'a Simulation,
        from: usize,
        now: &'a AtomicU64,
        slice: Option<InSlice<'a>>,
    ) -> Net<'a> {
        let config = &sim.config;
        let (timeout, threads) = match sim.procs[from].kind {
            Kind::Seed => (config.seed_timeout, config.seed_check_threads),
            _ => (config.timeout, config.check_threads),
        };
        Net {
            sim,
            from,
            timeout,
            threads,
            now,
            slice,
        }
    }

    fn spend(&self, nanos: u64) {
        self.now.fetch_add(nanos, Relaxed);
    }

    /// Sends one request, with a node as its body or none, and returns the answer, counting
    /// requests and bytes (the body's as its JSON) on both ends. In a slice, an answer that
    /// waits for the slice's end comes back empty here and is counted then.
    fn exchange(
        &self,
        node: &Node,
        method: &'static str,
        target: Cow<'static, str>,
        body: Option<&Node>,
    ) -> Result<Response, PeerError> {
        let sim = self.sim;
        let config = &sim.config;
        let me = &sim.procs[self.from];
        let mine = &sim.traffic[self.from];
        let request_bytes = REQUEST_HEAD_BYTES + body.map_or(0, json_len);
        mine.requests_out.fetch_add(1, Relaxed);
        mine.bytes_out.fetch_add(request_bytes, Relaxed);
        let (round_trip, lost, mut own) = {
            let mut rng = lock(&me.net);
            let round_trip = config.latency.as_nanos() as f64 * (0.5 + rng.f64());
            let lost = config.loss > 0.0 && rng.f64() < config.loss;
            // In a slice, what the target draws for this request comes from the request's
            // own RNG, so that the order of other requests to it does not matter.
            let own = self.slice.map(|_| fastrand::Rng::with_seed(rng.u64(..)));
            (round_trip as u64, lost, own)
        };
        let timeout = self.timeout.as_nanos() as u64;
        let fate = match key(node).and_then(|k| sim.index.get(&k)) {
            _ if lost => Fate::TimedOut,
            None => Fate::TimedOut,
            Some(Target::Sybil(k)) => Fate::Answered(Target::Sybil(*k)),
            Some(Target::Proc(j)) => {
                let reach = sim.reach[*j as usize];
                if reach.side != me.side {
                    Fate::TimedOut
                } else {
                    match reach.life {
                        ALIVE => Fate::Answered(Target::Proc(*j)),
                        REFUSED => Fate::Refused,
                        BLACK_HOLE => Fate::TimedOut,
                        _ => Fate::TimedOut,
                    }
                }
            }
        };
        let target_at = match fate {
            Fate::TimedOut => {
                self.spend(timeout);
                return Err(PeerError::Timeout);
            }
            Fate::Refused => {
                self.spend(round_trip.min(timeout));
                return Err(PeerError::ConnectionRefused);
            }
            Fate::Answered(at) => at,
        };
        self.spend((2 * round_trip).min(timeout));
        let caller = match me.node.host {
            Host::Ip(ip) => ip,
            Host::Name(_) => IpAddr::from([127, 0, 0, 1]),
        };
        let response = match target_at {
            Target::Proc(j) => {
                let j = j as usize;
                let now = sim.epoch + Duration::from_nanos(self.now.load(Relaxed));
                let answer = match (self.slice, own.as_mut()) {
                    (Some(slice), Some(rng)) => {
                        let request = Request {
                            method,
                            target: &target,
                            body: body.map_or(Body::Bytes(b""), Body::Node),
                            caller,
                            authorization: None,
                            network: None,
                        };
                        let kind = sim.reach[j].kind;
                        match sim.serve_in_slice(kind, &slice.views[j], &request, now, rng) {
                            Sliced::Now(answer) => Some(answer),
                            Sliced::Later(answer) => {
                                lock(slice.deferred).push(Deferred {
                                    target: j as u32,
                                    caller: self.from as u32,
                                    method,
                                    target_path: target,
                                    node: body.cloned(),
                                    ip: caller,
                                    at: now,
                                    answered: answer.is_some(),
                                });
                                answer
                            }
                        }
                    }
                    _ => Some(sim.serve(j, method, &target, body, caller, now)),
                };
                let traffic = &sim.traffic[j];
                traffic.requests_in.fetch_add(1, Relaxed);
                traffic.bytes_in.fetch_add(request_bytes, Relaxed);
                if let Some(answer) = &answer {
                    traffic
                        .bytes_out
                        .fetch_add(ANSWER_HEAD_BYTES + body_len(answer), Relaxed);
                }
                answer
            }
            Target::Sybil(_) => Some(match &sim.attacker {
                Some(attacker) => attacker.answer(method, &target, body, own.as_mut()),
                None => Response::empty(200),
            }),
        };
        match response {
            Some(response) => {
                mine.bytes_in
                    .fetch_add(ANSWER_HEAD_BYTES + body_len(&response), Relaxed);
                Ok(response)
            }
            // Answered at the slice's end, and counted then; the caller of a request that
            // changes something needs only to know that it was answered.
            None => Ok(Response::empty(200)),
        }
    }
}

impl Net<'_> {
    /// `GET` of `target` (`/nodes/`, with a query or not), with `me` as the body when given:
    /// the list it answers, as `peers::Peers` reads it.
    fn fetch(
        &self,
        node: &Node,
        target: Cow<'static, str>,
        me: Option<&Node>,
    ) -> Result<PeerList, PeerError> {
        let response = self.exchange(node, "GET", target.clone(), me)?;
        // As `peers::Peers` does: a refused registration still leaves the list worth asking.
        if response.status != 200 && me.is_some() {
            return self.fetch(node, target, None);
        }
        if response.status != 200 {
            return Err(PeerError::Status(response.status));
        }
        read_list(response.body)
    }
}

/// Counts the answer to a request served at the slice's end on both ends: the target sent
/// it, the caller received it.
pub(crate) fn count_answer(sim: &Simulation, target: usize, caller: usize, answer: &Response) {
    let bytes = ANSWER_HEAD_BYTES + body_len(answer);
    sim.traffic[target].bytes_out.fetch_add(bytes, Relaxed);
    sim.traffic[caller].bytes_in.fetch_add(bytes, Relaxed);
}

impl Transport for Net<'_> {
    fn probe(&self, node: &Node) -> Result<(), PeerError> {
        self.exchange(node, "GET", Cow::Borrowed("/"), None)
            .map(drop)
    }

    fn announce(&self, node: &Node, me: &Node) -> Result<(), PeerError> {
        self.exchange(node, "POST", Cow::Borrowed("/"), Some(me))
            .map(drop)
    }

    fn fetch_nodes(&self, node: &Node, me: Option<&Node>) -> Result<PeerList, PeerError> {
        self.fetch(node, Cow::Borrowed("/nodes/"), me)
    }

    fn fetch_sample(
        &self,
        node: &Node,
        me: Option<&Node>,
        limit: usize,
    ) -> Result<PeerList, PeerError> {
        self.fetch(node, Cow::Owned(format!("/nodes/?limit={limit}")), me)
    }

    fn each(&self, n: usize, work: &(dyn Fn(usize) + Sync)) {
        let start = self.now.load(Relaxed);
        let threads = self.threads.clamp(1, n.max(1));
        let mut free: BinaryHeap<Reverse<u64>> = (0..threads).map(|_| Reverse(start)).collect();
        let mut end = start;
        for i in 0..n {
            let Some(Reverse(at)) = free.pop() else { break };
            self.now.store(at, Relaxed);
            work(i);
            let done = self.now.load(Relaxed);
            end = end.max(done);
            free.push(Reverse(done));
        }
        self.now.store(end, Relaxed);
    }
}

/// A `GET /nodes/` answer's entries: the committed list itself when it was answered whole
/// (no JSON made), otherwise the body read by the client's own parser.
pub(crate) fn read_list(body: Payload) -> Result<PeerList, PeerError> {
    match body {
        Payload::List(snapshot) => Ok(PeerList {
            nodes: snapshot.known().to_vec(),
            invalid: 0,
        }),
        Payload::Sample(nodes, _) => Ok(PeerList { nodes, invalid: 0 }),
        Payload::Owned(bytes) => peers::parse_list(&bytes),
        Payload::Empty => peers::parse_list(b""),
    }
}

/// The length of an answer's body in bytes, without making the JSON of a whole list.
pub(crate) fn body_len(response: &Response) -> u64 {
    match &response.body {
        Payload::Empty => 0,
        Payload::Owned(bytes) => bytes.len() as u64,
        Payload::List(snapshot) => list_len(snapshot.known()),
        Payload::Sample(nodes, _) => list_len(nodes),
    }
}

/// The length of `nodes` as a JSON array.
fn list_len(nodes: &[Node]) -> u64 {
    // `[`, `]`, and a comma between entries.
    let frame = 2 + nodes.len().saturating_sub(1) as u64;
    frame + nodes.iter().map(json_len).sum::<u64>()
}

/// The length of `node`'s JSON, `{"ip_address":"127.0.0.1","port":55000}`: counted for an
/// IPv4 address (every simulated one), serialized otherwise.
pub(crate) fn json_len(node: &Node) -> u64 {
    fn digits(mut x: u32) -> u64 {
        let mut n = 1;
        while x >= 10 {
            x /= 10;
            n += 1;
        }
        n
    }
    match node.host {
        Host::Ip(IpAddr::V4(ip)) => {
            // `{"ip_address":"` (15), `","port":` (9), `}` (1), three dots.
            let octets: u64 = ip.octets().iter().map(|&o| digits(u32::from(o))).sum();
            25 + 3 + octets + digits(u32::from(node.port))
        }
        _ => {
            let mut counter = Counter(0);
            // Writing to a counter cannot fail.
            let _ = serde_json::to_writer(&mut counter, node);
            counter.0
        }
    }
}

/// An `io::Write` that only counts.
struct Counter(u64);

impl io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_counts_what_serde_writes() {
        let nodes = vec![
            Node::new("127.0.0.1", 1).unwrap(),
            Node::new("127.1.2.3", 42020).unwrap(),
        ];
        let response = Response::sample(nodes);
        assert_eq!(body_len(&response), response.body.as_ref().len() as u64);
        for (host, port) in [("127.0.0.1", 1), ("127.255.10.100", 55000), ("::1", 80)] {
            let node = Node::new(host, port).unwrap();
            let json = serde_json::to_vec(&node).unwrap();
            assert_eq!(json_len(&node), json.len() as u64, "{node}");
        }
    }
}
