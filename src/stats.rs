//! What a process has been doing: the last update round, running totals of rounds and
//! checks, and HTTP requests by route, method and status. Recorded by the update thread and
//! the server, reported by `/status` and `/metrics`. Counters only grow.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::logging::Throttle;
use crate::routes::Label;
use crate::transport::PeerError;

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
    /// Nodes learned from peers and seeds (each checked before it was learned).
    pub learned: usize,
    /// Feeler requests made (`feeler.rs`): 0 or 1.
    pub feelers: usize,
    /// Nodes learned by the feeler (0 or 1), also counted in `learned`.
    pub felt: usize,
    /// Entries evicted to make room for learned nodes.
    pub evicted: usize,
    /// Learned nodes the local-address rule refused.
    pub refused: usize,
    /// Nodes known at the end of the round.
    pub known: usize,
    /// Failed checks by cause, indexed as `PeerError::CAUSES`.
    pub failures: [usize; PeerError::CAUSES.len()],
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
            feelers: 0,
            felt: 0,
            evicted: 0,
            refused: 0,
            known: 0,
            failures: [0; PeerError::CAUSES.len()],
        }
    }
}

/// The methods requests are counted under (`PUT`, `PATCH` and `OPTIONS` for a chain
/// application's routes, SPEC §13).
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];
/// The statuses requests are counted under; anything else counts as `other`. 408, 414, 417,
/// 431, 501 and 505 are only ever answered by the connection layer (tiny_http's `Refusals`);
/// 201, 204, 3xx, 401, 409 and 422 only by a chain application (SPEC §13).
pub const STATUSES: [u16; 26] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 405, 408, 409, 413, 414, 417, 422, 429, 431,
    500, 501, 502, 503, 504, 505, 507,
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
        let cells = Label::ALL.len() * METHODS.len() * STATUS_CELLS;
        RequestCounts {
            counts: (0..cells).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl RequestCounts {
    /// Counts one answered request.
    pub fn count(&self, label: Label, method: &str, status: u16) {
        let r = label as usize;
        let m = METHODS
            .iter()
            .position(|n| *n == method)
            .unwrap_or(METHODS.len() - 1);
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
        for (r, route) in Label::ALL.iter().map(|l| l.as_str()).enumerate() {
            for (m, method) in METHODS.iter().enumerate() {
                for s in 0..STATUS_CELLS {
                    let cell = (r * METHODS.len() + m) * STATUS_CELLS + s;
                    let n = self.counts[cell].load(Ordering::Relaxed);
                    if n > 0 {
                        let status = STATUSES.get(s).map_or("other".into(), u16::to_string);
                        out.push((route, *method, status, n));
                    }
                }
            }
        }
        out
    }
}

/// Warnings that can repeat many times a second: each is logged at most once per update
/// interval, with the count since its last line (issue 10; `logging::Throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Warning {
    /// A registration refused with 507: the table is full and its group the largest.
    Full,
    /// A caller adding new nodes faster than `--reg_rate`, answered 429.
    RateLimited,
    /// Entries evicted to make room in a full table.
    Evicted,
    /// Nodes refused by the local-address rule.
    RefusedLocal,
    /// A connection refused with 503: `--max_conns` connections were already open.
    TooManyConnections,
    /// A connection refused with 503: its address had `--max_conns_per_ip` open.
    TooManyFromSource,
    /// A request refused with 503: the bodies held would pass `--app_body_budget`.
    BodyBudget,
}

impl Warning {
    /// The line logged for this cause.
    pub fn message(self) -> &'static str {
        match self {
            Warning::Full => {
                "known-node table full: a registration from its largest address group was refused with 507"
            }
            Warning::RateLimited => {
                "a caller adds new nodes faster than --reg_rate: refused with 429"
            }
            Warning::Evicted => {
                "known-node table full: an entry of its largest address group was evicted for a newcomer"
            }
            Warning::RefusedLocal => {
                "a local or non-public address was refused (--allow_local, --public_only)"
            }
            Warning::TooManyConnections => {
                "a connection was refused with 503: --max_conns connections were open"
            }
            Warning::TooManyFromSource => {
                "a connection was refused with 503: its address had --max_conns_per_ip open"
            }
            Warning::BodyBudget => {
                "a request was refused with 503: its body would pass --app_body_budget"
            }
        }
    }
}

/// What SPEC §11's defences did since start. Counters only grow.
#[derive(Debug, Default)]
pub struct Defences {
    /// Registrations refused with 507.
    pub full: AtomicU64,
    /// Registrations refused with 429.
    pub rate_limited: AtomicU64,
    /// Entries evicted to make room.
    pub evicted: AtomicU64,
    /// Nodes refused by the local-address rule (registered, added or learned).
    pub refused_local: AtomicU64,
    /// Connections refused with 503 over `--max_conns`.
    pub too_many_connections: AtomicU64,
    /// Connections refused with 503 over `--max_conns_per_ip`.
    pub too_many_from_source: AtomicU64,
    /// Requests refused with 503 over `--app_body_budget`.
    pub body_budget: AtomicU64,
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
    /// Failed checks by cause, indexed as `PeerError::CAUSES`.
    pub check_failures: [AtomicU64; PeerError::CAUSES.len()],
    /// Update rounds that panicked; the update thread logged each and carried on.
    pub round_panics: AtomicU64,
    pub removed: AtomicU64,
    pub learned: AtomicU64,
    /// Feeler requests made, and nodes they learned (`feeler.rs`).
    pub feelers: AtomicU64,
    pub felt: AtomicU64,
    pub requests: RequestCounts,
    pub defences: Defences,
    /// DNS seeding (SPEC §12): messages by query type and response code.
    pub dns: crate::dnsserver::DnsCounts,
    /// One line per cause per interval for the warnings that repeat.
    pub warnings: Throttle<Warning>,
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
            check_failures: Default::default(),
            round_panics: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            learned: AtomicU64::new(0),
            feelers: AtomicU64::new(0),
            felt: AtomicU64::new(0),
            requests: RequestCounts::default(),
            defences: Defences::default(),
            dns: crate::dnsserver::DnsCounts::default(),
            warnings: Throttle::new(Duration::from_secs(60)),
        }
    }
}

impl Stats {
    /// Totals whose repeated warnings are logged at most once per `interval`.
    pub fn with_interval(interval: Duration) -> Stats {
        Stats {
            warnings: Throttle::new(interval),
            ..Stats::default()
        }
    }

    /// Counts `n` occurrences of `warning` and logs its line when one is due.
    pub fn warn(&self, warning: Warning, n: usize, now: Instant) {
        self.warn_from(warning, n, None, now);
    }

    /// As `warn`, for occurrences caused by `source`: a line logged names it (the one seen
    /// first in the interval; the count that follows covers every source).
    pub fn warn_from(&self, warning: Warning, n: usize, source: Option<IpAddr>, now: Instant) {
        if n == 0 {
            return;
        }
        let counter = match warning {
            Warning::Full => &self.defences.full,
            Warning::RateLimited => &self.defences.rate_limited,
            Warning::Evicted => &self.defences.evicted,
            Warning::RefusedLocal => &self.defences.refused_local,
            Warning::TooManyConnections => &self.defences.too_many_connections,
            Warning::TooManyFromSource => &self.defences.too_many_from_source,
            Warning::BodyBudget => &self.defences.body_budget,
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
        for _ in 0..n {
            self.warnings.warn(warning, now, || match source {
                Some(ip) => format!("{} (this time from {ip})", warning.message()),
                None => warning.message().to_owned(),
            });
        }
    }

    /// Logs the counts of throttled warnings that have waited an interval for their line.
    pub fn flush_warnings(&self, now: Instant) {
        for (warning, seen) in self.warnings.due(now) {
            log::warn!("{}", crate::logging::with_count(warning.message(), seen));
        }
    }

    pub fn record_round(&self, round: &Round) {
        let add = |counter: &AtomicU64, n: u64| counter.fetch_add(n, Ordering::Relaxed);
        add(&self.checks_ok, (round.checked - round.failed) as u64);
        add(&self.checks_failed, round.failed as u64);
        add(&self.removed, round.removed as u64);
        add(&self.learned, round.learned as u64);
        add(&self.feelers, round.feelers as u64);
        add(&self.felt, round.felt as u64);
        add(&self.round_micros, round.duration.as_micros() as u64);
        for (counter, n) in self.check_failures.iter().zip(round.failures) {
            add(counter, n as u64);
        }
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
        counts.count(Label::Nodes, "GET", 200);
        counts.count(Label::Nodes, "GET", 200);
        counts.count(Label::Root, "POST", 400);
        counts.count(Label::Other, "BREW", 418);
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
