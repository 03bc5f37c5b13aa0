//! The application's health as its checks find it (`--app_health`, SPEC §13), and what that
//! means for announcing the node: pure bookkeeping, time handed in.

use std::time::SystemTime;

use serde::Serialize;

use crate::update::Presence;

/// The application's health as `/status` reports it (SPEC §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppStatus {
    /// `--app`.
    pub url: String,
    /// `--app_health`, when set.
    pub health_path: Option<String>,
    /// The last check's result; `null` before the first one, or without `--app_health`.
    pub healthy: Option<bool>,
    /// Since when it has been so, RFC 3339 UTC.
    pub since: Option<String>,
    /// Why the last check failed.
    pub reason: Option<String>,
    /// Whether this node announces itself to seeds and peers: not while the check fails.
    pub announcing: bool,
}

/// What the health checks found, and since when.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// `None` before the first check.
    healthy: Option<bool>,
    since: Option<SystemTime>,
    reason: Option<String>,
}

/// What a health check changed, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthNews {
    /// As before (or healthy at the first check): nothing to say.
    Same,
    /// It failed, after passing or at the first check: the node stops announcing itself.
    Stopped(String),
    /// It passes after failing: the node announces itself again.
    Resumed,
}

impl Health {
    /// Records a check made at `now`: `Ok` when the application passed, else why not.
    pub fn record(&mut self, result: Result<(), String>, now: SystemTime) -> HealthNews {
        let healthy = result.is_ok();
        let news = match (self.healthy, &result) {
            (Some(false), Ok(())) => HealthNews::Resumed,
            (None | Some(true), Err(reason)) => HealthNews::Stopped(reason.clone()),
            _ => HealthNews::Same,
        };
        if self.healthy != Some(healthy) {
            self.since = Some(now);
        }
        self.healthy = Some(healthy);
        self.reason = result.err();
        news
    }

    /// The last check's result; `None` before the first one.
    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// When the last check's result began to hold.
    pub fn since(&self) -> Option<SystemTime> {
        self.since
    }

    /// Why the last check failed.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// Whether the node announces itself: unless the last check failed.
    pub fn presence(&self) -> Presence {
        match self.healthy {
            Some(false) => Presence::Quiet,
            _ => Presence::Announce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn presence_stops_at_a_failed_check_and_resumes_at_a_passed_one_saying_so_once() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut health = Health::default();
        assert_eq!(health.presence(), Presence::Announce, "before any check");
        assert_eq!(health.record(Ok(()), t), HealthNews::Same);
        let failed = || Err("GET /health answered 503".to_owned());
        let later = t + Duration::from_secs(60);
        assert_eq!(
            health.record(failed(), later),
            HealthNews::Stopped("GET /health answered 503".into())
        );
        assert_eq!(health.presence(), Presence::Quiet);
        assert_eq!(
            health.record(failed(), later + Duration::from_secs(60)),
            HealthNews::Same
        );
        assert_eq!(health.since, Some(later), "since the first failure");
        assert_eq!(health.reason.as_deref(), Some("GET /health answered 503"));
        let back = later + Duration::from_secs(120);
        assert_eq!(health.record(Ok(()), back), HealthNews::Resumed);
        assert_eq!(health.presence(), Presence::Announce);
        assert_eq!((health.since, health.reason), (Some(back), None));

        // Failing at the very first check stops announcing too.
        let mut fresh = Health::default();
        assert!(matches!(fresh.record(failed(), t), HealthNews::Stopped(_)));
        assert_eq!(fresh.presence(), Presence::Quiet);
    }
}
