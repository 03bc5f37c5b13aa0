//! The logger: one line per event on stderr, `2026-11-24T18:02:05.123Z INFO message`; a
//! throttle that keeps a repeating warning to one line per cause per interval; plurals.

use std::collections::HashMap;
use std::hash::Hash;
use std::io::Write;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

struct Logger {
    level: LevelFilter,
}

/// Installs the logger for `level`. The HTTP client's own chatter shows only at `trace`.
pub fn init(level: LevelFilter) {
    // Fails only if a logger is already installed, which then stays.
    if log::set_logger(Box::leak(Box::new(Logger { level }))).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let third_party = metadata.target().starts_with("ureq");
        let level = if third_party && self.level < LevelFilter::Trace {
            self.level.min(LevelFilter::Warn)
        } else {
            self.level
        };
        metadata.level() <= level
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!(
            "{} {:<5} {}\n",
            rfc3339(SystemTime::now()),
            record.level(),
            record.args()
        );
        // Nowhere to report a failure to write to stderr.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `time` in UTC as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `n` and `noun`, plural unless `n` is 1: `count(1, "known node")` is `1 known node`,
/// `count(2, "known node")` is `2 known nodes`. For nouns whose plural adds an `s`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// How often a throttled cause occurred, when a line about it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrences {
    /// Occurrences this line stands for: those since the cause's last line, this one included.
    pub count: u64,
    /// Time since the cause's last line; `None` for its first line.
    pub since: Option<Duration>,
}

/// Keeps a warning that may repeat many times a second (a full table's 507, a refused
/// connection's 503, a rate-limited caller's 429, an eviction) to at most one line per cause
/// per `interval`, carrying the count of occurrences since that cause's last line. Shared by
/// threads (`&self`); the caller hands in `now`, so tests need no clock.
///
/// Causes are a small fixed set (an enum, or `&'static str`), never per-caller values: the
/// throttle keeps one entry per cause for the life of the process.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use seedmesh::logging::Throttle;
/// let full = Throttle::new(Duration::from_secs(60));
/// if let Some(seen) = full.hit("507", Instant::now()) {
///     log::warn!("table full: {} refused with 507 since the last line", seen.count);
/// }
/// ```
#[derive(Debug)]
pub struct Throttle<K> {
    interval: Duration,
    causes: Mutex<HashMap<K, Cause>>,
}

#[derive(Debug)]
struct Cause {
    /// When the last line about this cause was due.
    last_line: Instant,
    /// Occurrences since then that had no line.
    pending: u64,
}

impl<K: Eq + Hash + Clone> Throttle<K> {
    /// A throttle allowing one line per cause per `interval`.
    pub fn new(interval: Duration) -> Throttle<K> {
        Throttle {
            interval,
            causes: Mutex::new(HashMap::new()),
        }
    }

    /// Records one occurrence of `cause` at `now`. Returns `Some` when a line is due (the
    /// cause's first occurrence, or the first one at least `interval` after its last line),
    /// with the count the line stands for; `None` when the occurrence is only counted.
    pub fn hit(&self, cause: K, now: Instant) -> Option<Occurrences> {
        let mut causes = self.causes.lock().unwrap_or_else(PoisonError::into_inner);
        match causes.get_mut(&cause) {
            None => {
                causes.insert(
                    cause,
                    Cause {
                        last_line: now,
                        pending: 0,
                    },
                );
                Some(Occurrences {
                    count: 1,
                    since: None,
                })
            }
            Some(entry) => {
                let since = now.saturating_duration_since(entry.last_line);
                if since < self.interval {
                    entry.pending += 1;
                    return None;
                }
                let count = entry.pending + 1;
                *entry = Cause {
                    last_line: now,
                    pending: 0,
                };
                Some(Occurrences {
                    count,
                    since: Some(since),
                })
            }
        }
    }

    /// The causes whose counted occurrences have waited at least `interval` for a line, with
    /// those counts; each is then reset as if its line were written at `now`. Call it now and
    /// then (once per update round) so that the last burst of a cause is reported too.
    pub fn due(&self, now: Instant) -> Vec<(K, Occurrences)> {
        let mut causes = self.causes.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lines = Vec::new();
        for (cause, entry) in causes.iter_mut() {
            let since = now.saturating_duration_since(entry.last_line);
            if entry.pending > 0 && since >= self.interval {
                lines.push((
                    cause.clone(),
                    Occurrences {
                        count: entry.pending,
                        since: Some(since),
                    },
                ));
                *entry = Cause {
                    last_line: now,
                    pending: 0,
                };
            }
        }
        lines
    }

    /// `hit`, writing the line at `warn` level when one is due: `message()` for the cause's
    /// first line, then `message() (N times in the last S s)`; see `with_count`.
    pub fn warn(&self, cause: K, now: Instant, message: impl FnOnce() -> String) {
        if let Some(seen) = self.hit(cause, now) {
            log::warn!("{}", with_count(&message(), seen));
        }
    }
}

/// A throttled line: the message, and for a cause seen before its count and period.
pub fn with_count(message: &str, seen: Occurrences) -> String {
    match seen.since {
        None => message.to_owned(),
        Some(since) => format!(
            "{message} ({} in the last {} s)",
            count(seen.count as usize, "time"),
            since.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_agree_with_their_count() {
        assert_eq!(count(0, "known node"), "0 known nodes");
        assert_eq!(count(1, "known node"), "1 known node");
        assert_eq!(count(3, "connection"), "3 connections");
    }

    #[test]
    fn a_throttled_cause_gets_one_line_per_interval_with_its_count() {
        let throttle = Throttle::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            throttle.hit("507", at(0)),
            Some(Occurrences {
                count: 1,
                since: None
            })
        );
        for s in 1..=59 {
            assert_eq!(throttle.hit("507", at(s)), None, "second {s}");
        }
        // Another cause has its own interval.
        assert_eq!(throttle.hit("429", at(30)).map(|o| o.count), Some(1));
        assert_eq!(throttle.hit("429", at(31)), None);
        let line = throttle.hit("507", at(60));
        assert_eq!(
            line,
            Some(Occurrences {
                count: 60,
                since: Some(Duration::from_secs(60))
            })
        );
        assert_eq!(throttle.hit("507", at(61)), None);
        // Nothing more for a while: the pending count is reported once its interval is over.
        assert!(
            throttle
                .due(at(100))
                .iter()
                .all(|(cause, _)| *cause == "429")
        );
        let due = throttle.due(at(121));
        assert_eq!(
            due,
            vec![(
                "507",
                Occurrences {
                    count: 1,
                    since: Some(Duration::from_secs(61))
                }
            )]
        );
        assert!(throttle.due(at(500)).is_empty(), "reported once");
        assert_eq!(throttle.hit("507", at(500)).map(|o| o.count), Some(1));
    }

    #[test]
    fn throttled_lines_carry_the_count() {
        let seen = Occurrences {
            count: 12,
            since: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            with_count("table full", seen),
            "table full (12 times in the last 60 s)"
        );
        let first = Occurrences {
            count: 1,
            since: None,
        };
        assert_eq!(with_count("table full", first), "table full");
    }

    #[test]
    fn a_throttle_is_shared_by_threads_and_counts_every_hit() {
        let throttle = Throttle::new(Duration::from_secs(3600));
        let now = Instant::now();
        let lines: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..1000)
                            .filter(|_| throttle.hit("503", now).is_some())
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(lines, 1);
        let due = throttle.due(now + Duration::from_secs(3600));
        assert_eq!(due[0].1.count, 3999);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(secs * 1000 + ms);
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 7)), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(at(1_795_543_325, 123)), "2026-11-24T18:02:05.123Z");
        assert_eq!(rfc3339(at(4_102_444_799, 999)), "2099-12-31T23:59:59.999Z");
    }
}
