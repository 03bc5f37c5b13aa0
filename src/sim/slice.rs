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

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Instant;

use crate::membership::Snapshot;
use crate::nodes::Node;

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
    pub(crate) target_path: &'static str,
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
/// epoch, ascending), a slice of `Config::slice` at a time.
pub(crate) fn run(sim: &Simulation, order: &[usize], starts: &[u64]) {
    let length = (sim.config.slice.as_nanos() as u64).max(1);
    let Some(&first) = starts.first() else { return };
    let slice_of = |k: usize| (starts[k] - first) / length;
    // Every table as the round found it. A process's view is its committed table again
    // after each slice that changed it; only a member's own round changes its table while
    // its view is out, so a table is copied at most once per round (copy on write).
    let mut views: Vec<Arc<Snapshot>> = sim.procs.iter().map(|p| p.store.snapshot()).collect();
    let mut from = 0;
    while from < order.len() {
        let mut to = from + 1;
        while to < order.len() && slice_of(to) == slice_of(from) {
            to += 1;
        }
        run_slice(sim, &mut views, &order[from..to], &starts[from..to]);
        from = to;
    }
}

/// Runs one slice: the members' rounds at once against `views`, then the deferred requests;
/// leaves `views` up to date.
fn run_slice(sim: &Simulation, views: &mut [Arc<Snapshot>], members: &[usize], starts: &[u64]) {
    let deferred: Vec<Mutex<Vec<Deferred>>> =
        members.iter().map(|_| Mutex::new(Vec::new())).collect();
    // Seeds first: a seed's sweep is the longest round by far, and it should not be left
    // to one thread at the end. (Which thread runs what changes nothing but the time.)
    let mut schedule: Vec<usize> = (0..members.len()).collect();
    schedule.sort_by_key(|&k| sim.procs[members[k]].kind != Kind::Seed);
    {
        let views = &*views;
        parallel(sim.config.threads, schedule.len(), &|n| {
            let k = schedule[n];
            let slice = InSlice {
                views,
                deferred: &deferred[k],
            };
            sim.run_round(members[k], starts[k], Some(slice));
        });
    }
    for &i in members {
        views[i] = sim.procs[i].store.snapshot();
    }

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
    let mut groups: Vec<&[Deferred]> = writes.chunk_by(|a, b| a.target == b.target).collect();
    // The busiest targets (the seeds) first, for the same reason as above.
    groups.sort_by_key(|group| std::cmp::Reverse(group.len()));
    // Nobody reads a target's view while its requests are served: let it go, so that its
    // store changes its table in place rather than copying it.
    let empty = Arc::new(Snapshot::default());
    for group in &groups {
        views[group[0].target as usize] = Arc::clone(&empty);
    }
    // A few requests are not worth a thread.
    let threads = if writes.len() < 32 {
        1
    } else {
        sim.config.threads
    };
    parallel(threads, groups.len(), &|g| {
        for request in groups[g] {
            deliver(sim, request);
        }
    });
    for group in &groups {
        let target = group[0].target as usize;
        views[target] = sim.procs[target].store.snapshot();
    }
}

/// Serves a deferred request for real at its target (see the module documentation).
fn deliver(sim: &Simulation, request: &Deferred) {
    let target = request.target as usize;
    // What a registering `GET /nodes/` changes, without a list nobody reads: the same
    // route, with `limit=0`.
    let path = match request.method {
        "GET" => "/nodes/?limit=0",
        _ => request.target_path,
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

/// Runs `work(k)` for every `k` in `0..n` on up to `threads` threads (this one among them),
/// each taking the next `k` when it is done with one.
fn parallel(threads: usize, n: usize, work: &(dyn Fn(usize) + Sync)) {
    let threads = threads.min(n);
    if threads <= 1 {
        (0..n).for_each(work);
        return;
    }
    let next = AtomicUsize::new(0);
    let run = || {
        loop {
            let k = next.fetch_add(1, Relaxed);
            if k >= n {
                break;
            }
            work(k);
        }
    };
    thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(run);
        }
        run();
    });
}
