//! The real-time loop around the rounds: a round at once, then one every `--upd_int` ±10%,
//! sleeping on the stop channel so that a stop wakes it at once, and surviving a round that
//! panics.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, SystemTime};

use super::{Membership, Presence, Updater};
use crate::stats::{Stats, Warning};
use crate::transport::{Clock, Transport};
use crate::upkeep::Upkeep;

/// The real-time loop: runs rounds until `stop` receives a message or its sender is dropped.
/// A round that panics is logged and counted (`seedmesh_round_panics_total`), and the next
/// one runs on time: peer upkeep never silently ends while the API keeps answering.
pub fn run<M: Membership, T: Transport, C: Clock>(
    updater: &Updater<M, T, C>,
    stats: &Stats,
    interval: Duration,
    fail_limit: u32,
    stop: &Receiver<()>,
) {
    run_as(updater, stats, interval, fail_limit, stop, &|| {
        Presence::Announce
    });
}

/// `run`, asking `presence` before each round whether the node announces itself in it (a
/// node behind a chain application checks the application's health there, SPEC §13).
pub fn run_as<M: Membership, T: Transport, C: Clock>(
    updater: &Updater<M, T, C>,
    stats: &Stats,
    interval: Duration,
    fail_limit: u32,
    stop: &Receiver<()>,
    presence: &dyn Fn() -> Presence,
) {
    let mut upkeep = Upkeep::new(fail_limit, interval);
    let stopping = || !matches!(stop.try_recv(), Err(TryRecvError::Empty));
    loop {
        let started = updater.clock.now();
        let round = || updater.round_as(presence(), &mut upkeep, &stopping);
        match guarded(stats, round) {
            Some(mut round) => {
                round.duration = updater.clock.now().saturating_duration_since(started);
                round.ended = SystemTime::now();
                log::info!(
                    "round: checked {}, failed {}, removed {}, learned {}, known {}, in {} ms",
                    round.checked,
                    round.failed,
                    round.removed,
                    round.learned,
                    round.known,
                    round.duration.as_millis()
                );
                stats.record_round(&round);
                let now = updater.clock.now();
                stats.warn(Warning::Evicted, round.evicted, now);
                stats.warn(Warning::RefusedLocal, round.refused, now);
                stats.flush_warnings(now);
            }
            // The bookkeeping may be half-updated: start afresh rather than trust it.
            None => upkeep = Upkeep::new(fail_limit, interval),
        }
        match stop.recv_timeout(jittered(interval)) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    log::info!("update thread stopped");
}

/// Runs `work`, turning a panic into a logged, counted `None`.
fn guarded<R>(stats: &Stats, work: impl FnOnce() -> R) -> Option<R> {
    match panic::catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => Some(result),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            log::error!("update round failed: {what}; the next round runs as planned");
            stats
                .round_panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    }
}

/// `interval` ±10%, so that processes started together do not probe in lockstep.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}
