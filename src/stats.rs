//! What a process has been doing: the last update round and running totals, shared between
//! the update thread (which records) and the API (which reports).

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

/// Running totals since start.
#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    last_round: Mutex<Option<Round>>,
    pub rounds: AtomicU64,
    pub round_seconds_total: Mutex<f64>,
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    pub removed: AtomicU64,
    pub learned: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            last_round: Mutex::new(None),
            rounds: AtomicU64::new(0),
            round_seconds_total: Mutex::new(0.0),
            checks_ok: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            removed: AtomicU64::new(0),
            learned: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn record_round(&self, round: &Round) {
        let add = |counter: &AtomicU64, n: usize| counter.fetch_add(n as u64, Ordering::Relaxed);
        add(&self.checks_ok, round.checked - round.failed);
        add(&self.checks_failed, round.failed);
        add(&self.removed, round.removed);
        add(&self.learned, round.learned);
        *self
            .round_seconds_total
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += round.duration.as_secs_f64();
        *self
            .last_round
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(round.clone());
        self.rounds.fetch_add(1, Ordering::Relaxed);
    }

    /// The last finished round, if any.
    pub fn last_round(&self) -> Option<Round> {
        self.last_round
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
