//! Running a round a slice at a time, on several threads, with the same output on any
//! number of them (`Config::slice`, `Config::threads`; SIMULATION.md, "Speed").
//!
//! A round's processes start their rounds one after another, spread over `--upd_int`. The
//! sequential model runs them one at a time, every request seeing every change made before
//! it. Here the round is cut into slices of simulated time (`--slice_ms`), and the processes
//! whose rounds start in one slice run at once:
//!
//! 1. at the slice's start, each of them is given a *view*, its table as the slice found
//!    it: the others' requests to it are answered from the view while its own round changes
//!    its table (a process's own round sees its own changes at once, as before);
//! 2. every request goes through `routes::handle` against the target's view, drawing from
//!    the request's own RNG (`Simulation::serve_in_slice`). When the decision changes
//!    nothing (a check, a known node announcing itself, a list), that is the answer. When it
//!    would change the target's table (a registration), the request is *deferred*: the
//!    caller learns that it was answered (a registering `GET /nodes/` also gets the list as
//!    the slice found it), and the request waits;
//! 3. at the slice's end, the deferred requests are served again, for real, with
//!    `Simulation::serve` (the target's committed table, its RNG and token buckets, the
//!    commit through its store), target by target in the order of the rounds and, within a
//!    round, of the requests. Different targets share nothing, so they run at once too.
//!
//! Nothing a process's round reads depends on when another thread runs: the others' tables
//! are views fixed at the slice's start, the targets' own RNGs and buckets are used only in
//! step 3, in a fixed order, and the traffic counters are sums. So the output depends on
//! `--slice_ms`, never on `--threads` (`tests/simulation.rs` holds it).
//!
//! What this changes in the model: a registration reaches its target at the end of the
//! slice it was sent in (on average half a slice late, as if the network were that much
//! slower for writes only), and a process answers a request from a process of the same
//! slice from its table as the slice began. A registering `GET /nodes/` refused at the
//! slice's end (429, 507) is not retried without its body, as `peers` does at once.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::membership::Snapshot;
use crate::nodes::Node;

use super::crew::{Crew, Job, with_crew};
use super::net::count_answer;
use super::world::{Kind, Simulation};

/// What a round running in a slice reaches the others through.
#[derive(Clone, Copy)]
pub(crate) struct InSlice<'a> {
    /// Every process's table as the slice found it, by process.
    pub(crate) views: &'a [Arc<Snapshot>],
    /// Where the requests whose changes wait for the slice's end go.
    pub(crate) deferred: &'a Mutex<Vec<Deferred>>,
}

/// A request whose change to its target's table waits for the end of its slice.
pub(crate) struct Deferred {
    /// The process it was sent to, and the one that sent it.
    pub(crate) target: u32,
    pub(crate) caller: u32,
    pub(crate) method: &'static str,
    /// Its target (path and query) as sent; a deferred `GET` is served as `/nodes/?limit=0`.
    pub(crate) target_path: Cow<'static, str>,
    /// Its body.
    pub(crate) node: Option<Node>,
    /// The caller's address, and when it was sent.
    pub(crate) ip: std::net::IpAddr,
    pub(crate) at: Instant,
    /// Whether the caller was already answered (a registering `GET /nodes/`, answered the
    /// list); otherwise the answer given at the slice's end is counted as sent and received.
    pub(crate) answered: bool,
}

/// Runs the rounds of the processes of `order` (live processes in the round's order), each
/// starting at the simulated time at the same position of `starts` (nanoseconds since the
/// epoch, ascending), a slice of `Config::slice` at a time, on `Config::threads` threads.
pub(crate) fn run(sim: &Simulation, order: &[usize], starts: &[u64]) {
    let length = (sim.config.slice.as_nanos() as u64).max(1);
    let Some(&first) = starts.first() else { return };
    let slice_of = |k: usize| (starts[k] - first) / length;
    // Every table as the round found it. A process's view is its committed table again
    // after each slice that changed it; only a member's own round changes its table while
    // its view is out, so a table is copied at most once per round (copy on write).
    let mut views: Vec<Arc<Snapshot>> = sim.procs.iter().map(|p| p.store.snapshot()).collect();
    with_crew(sim.config.threads, |crew| {
        let mut from = 0;
        while from < order.len() {
            let mut to = from + 1;
            while to < order.len() && slice_of(to) == slice_of(from) {
                to += 1;
            }
            run_slice(sim, crew, &mut views, &order[from..to], &starts[from..to]);
            from = to;
        }
    });
}

/// Runs one slice: the members' rounds at once against `views`, then the deferred requests;
/// leaves `views` up to date.
fn run_slice<'a>(
    sim: &'a Simulation,
    crew: &Crew<'_, 'a>,
    views: &mut Vec<Arc<Snapshot>>,
    members: &'a [usize],
    starts: &'a [u64],
) {
    // Seeds first: a seed's sweep is the longest round by far, and it should not be left
    // to one thread at the end. (Which thread runs what changes nothing but the time.)
    let mut schedule: Vec<usize> = (0..members.len()).collect();
    schedule.sort_by_key(|&k| sim.procs[members[k]].kind != Kind::Seed);
    let rounds = Arc::new(Rounds {
        sim,
        members,
        starts,
        schedule,
        views: std::mem::take(views),
        deferred: members.iter().map(|_| Mutex::new(Vec::new())).collect(),
    });
    crew.run(rounds.clone());
    let Rounds {
        views: mut returned,
        deferred,
        ..
    } = Arc::into_inner(rounds).unwrap_or_else(|| unreachable!("the crew let go of the job"));
    for &i in members {
        returned[i] = sim.procs[i].store.snapshot();
    }
    *views = returned;

    // The deferred requests in the order of the rounds, then of each round's requests;
    // grouped by target (a stable sort keeps that order within each).
    let mut writes: Vec<Deferred> = deferred
        .into_iter()
        .flat_map(|d| d.into_inner().unwrap_or_else(PoisonError::into_inner))
        .collect();
    if writes.is_empty() {
        return;
    }
    writes.sort_by_key(|d| d.target);
    let mut groups: Vec<Range<usize>> = Vec::new();
    for (k, write) in writes.iter().enumerate() {
        match groups.last_mut() {
            Some(group) if writes[group.start].target == write.target => group.end = k + 1,
            _ => groups.push(k..k + 1),
        }
    }
    // The busiest targets (the seeds) first, for the same reason as above.
    groups.sort_by_key(|group| std::cmp::Reverse(group.len()));
    // Nobody reads a target's view while its requests are served: let it go, so that its
    // store changes its table in place rather than copying it.
    let empty = Arc::new(Snapshot::default());
    let targets: Vec<usize> = groups
        .iter()
        .map(|group| writes[group.start].target as usize)
        .collect();
    for &target in &targets {
        views[target] = Arc::clone(&empty);
    }
    let deliveries = Deliveries {
        sim,
        writes,
        groups,
    };
    // A few requests are not worth waking a thread.
    if deliveries.writes.len() < 32 {
        (0..deliveries.len()).for_each(|g| deliveries.work(g));
    } else {
        crew.run(Arc::new(deliveries));
    }
    for target in targets {
        views[target] = sim.procs[target].store.snapshot();
    }
}

/// A slice's rounds, one item per member.
struct Rounds<'a> {
    sim: &'a Simulation,
    members: &'a [usize],
    starts: &'a [u64],
    /// Positions in `members`, in the order the threads take them.
    schedule: Vec<usize>,
    views: Vec<Arc<Snapshot>>,
    /// Each member's deferred requests, by position in `members`.
    deferred: Vec<Mutex<Vec<Deferred>>>,
}

impl Job for Rounds<'_> {
    fn len(&self) -> usize {
        self.schedule.len()
    }

    fn work(&self, n: usize) {
        let k = self.schedule[n];
        let slice = InSlice {
            views: &self.views,
            deferred: &self.deferred[k],
        };
        self.sim
            .run_round(self.members[k], self.starts[k], Some(slice));
    }
}

/// A slice's deferred requests, one item per target: its requests in their order.
struct Deliveries<'a> {
    sim: &'a Simulation,
    writes: Vec<Deferred>,
    groups: Vec<Range<usize>>,
}

impl Job for Deliveries<'_> {
    fn len(&self) -> usize {
        self.groups.len()
    }

    fn work(&self, g: usize) {
        for request in &self.writes[self.groups[g].clone()] {
            deliver(self.sim, request);
        }
    }
}

/// Serves a deferred request for real at its target (see the module documentation).
fn deliver(sim: &Simulation, request: &Deferred) {
    let target = request.target as usize;
    // What a registering `GET /nodes/` changes, without a list nobody reads: the same
    // route, with `limit=0`.
    let path = match request.method {
        "GET" => "/nodes/?limit=0",
        _ => &request.target_path,
    };
    let answer = sim.serve(
        target,
        request.method,
        path,
        request.node.as_ref(),
        request.ip,
        request.at,
    );
    if !request.answered {
        count_answer(sim, target, request.caller as usize, &answer);
    }
}
