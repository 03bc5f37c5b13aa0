//! What a process has been doing: the last update round, running totals of rounds and
//! checks, and HTTP requests by route, method and status. Recorded by the update thread and
//! the server, reported by `/status` and `/metrics`. Counters only grow.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// One update round's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub ended: SystemTime,
    pub duration: Duration,
    /// Nodes checked (one request each).
    pub checked: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Nodes removed after `--fail_limit` failures.
    pub removed: usize,
    /// Nodes learned from peers and seeds.
    pub learned: usize,
    /// Nodes known at the end of the round.
    pub known: usize,
}

impl Default for Round {
    fn default() -> Self {
        Round {
            ended: SystemTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            checked: 0,
            failed: 0,
            removed: 0,
            learned: 0,
            known: 0,
        }
    }
}

/// The route labels requests are counted under.
pub const ROUTES: [&str; 7] = [
    "/",
    "/nodes/",
    "/nodes/random/",
    "/nodes/<i>/",
    "/status",
    "/metrics",
    "other",
];
/// The methods requests are counted under.
pub const METHODS: [&str; 5] = ["GET", "HEAD", "POST", "DELETE", "other"];
/// The statuses requests are counted under; anything else counts as `other`. 408, 414, 417,
/// 431, 501 and 505 are only ever answered by the connection layer (tiny_http's `Refusals`).
pub const STATUSES: [u16; 15] = [
    200, 400, 403, 404, 405, 408, 413, 414, 417, 431, 500, 501, 503, 505, 507,
];

/// Status cells: one per entry of `STATUSES`, and `other`.
const STATUS_CELLS: usize = STATUSES.len() + 1;

/// How many HTTP requests were answered, by (route, method, status). Lock-free.
#[derive(Debug)]
pub struct RequestCounts {
    counts: Vec<AtomicU64>,
}

impl Default for RequestCounts {
    fn default() -> Self {
        let cells = ROUTES.len() * METHODS.len() * STATUS_CELLS;
        RequestCounts {
            counts: (0..cells).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl RequestCounts {
    /// Counts one answered request. `route` is one of `ROUTES`.
    pub fn count(&self, route: &str, method: &str, status: u16) {
        let r = index(&ROUTES, route);
        let m = index(&METHODS, method);
        let s = STATUSES
            .iter()
            .position(|s| *s == status)
            .unwrap_or(STATUSES.len());
        let cell = (r * METHODS.len() + m) * STATUS_CELLS + s;
        self.counts[cell].fetch_add(1, Ordering::Relaxed);
    }

    /// Every (route, method, status, count) with a count above zero.
    pub fn nonzero(&self) -> Vec<(&'static str, &'static str, String, u64)> {
        let mut out = Vec::new();
        for (r, route) in ROUTES.iter().enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                for s in 0..STATUS_CELLS {
                    let cell = (r * METHODS.len() + m) * STATUS_CELLS + s;
                    let n = self.counts[cell].load(Ordering::Relaxed);
                    if n > 0 {
                        let status = STATUSES.get(s).map_or("other".into(), u16::to_string);
                        out.push((*route, *method, status, n));
                    }
                }
            }
        }
        out
    }
}

/// The position of `name` in `names`, or of the last entry (`other`).
fn index(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .unwrap_or(names.len() - 1)
}

/// Running totals since start.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    last_round: Mutex<Option<Round>>,
    pub rounds: AtomicU64,
    /// Total time spent in rounds, in microseconds.
    pub round_micros: AtomicU64,
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    pub removed: AtomicU64,
    pub learned: AtomicU64,
    pub requests: RequestCounts,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            last_round: Mutex::new(None),
            rounds: AtomicU64::new(0),
            round_micros: AtomicU64::new(0),
            checks_ok: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            learned: AtomicU64::new(0),
            requests: RequestCounts::default(),
        }
    }
}

impl Stats {
    pub fn record_round(&self, round: &Round) {
        let add = |counter: &AtomicU64, n: u64| counter.fetch_add(n, Ordering::Relaxed);
        add(&self.checks_ok, (round.checked - round.failed) as u64);
        add(&self.checks_failed, round.failed as u64);
        add(&self.removed, round.removed as u64);
        add(&self.learned, round.learned as u64);
        add(&self.round_micros, round.duration.as_micros() as u64);
        *self
            .last_round
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(round.clone());
        add(&self.rounds, 1);
    }

    /// The last finished round, if any.
    pub fn last_round(&self) -> Option<Round> {
        self.last_round
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_method_and_status() {
        let counts = RequestCounts::default();
        counts.count("/nodes/", "GET", 200);
        counts.count("/nodes/", "GET", 200);
        counts.count("/", "POST", 400);
        counts.count("/weird", "PATCH", 418);
        assert_eq!(
            counts.nonzero(),
            vec![
                ("/", "POST", "400".to_string(), 1),
                ("/nodes/", "GET", "200".to_string(), 2),
                ("other", "other", "other".to_string(), 1),
            ]
        );
    }

    #[test]
    fn rounds_add_up() {
        let stats = Stats::default();
        assert_eq!(stats.last_round(), None);
        let round = Round {
            duration: Duration::from_millis(250),
            checked: 5,
            failed: 2,
            removed: 1,
            learned: 3,
            ..Round::default()
        };
        stats.record_round(&round);
        stats.record_round(&round);
        assert_eq!(stats.rounds.load(Ordering::Relaxed), 2);
        assert_eq!(stats.checks_ok.load(Ordering::Relaxed), 6);
        assert_eq!(stats.checks_failed.load(Ordering::Relaxed), 4);
        assert_eq!(stats.round_micros.load(Ordering::Relaxed), 500_000);
        assert_eq!(stats.last_round(), Some(round));
    }
}
