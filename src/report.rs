//! What `/status` and `/metrics` tell an operator: who this process is and its settings, the
//! last update round, and running totals; as JSON for people and scripts, and as Prometheus
//! text (exposition format 0.0.4) for scrapers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::app::AppStatus;
use crate::config::{Kind, Settings};
use crate::logging::rfc3339;
use crate::membership::Snapshot;
use crate::nodes::Node;
use crate::stats::Stats;
use crate::store::StoreStats;
use crate::transport::PeerError;

/// The Content-Type of `/metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Who this process is, fixed at start.
#[derive(Debug, Clone)]
pub struct Profile {
    /// `dns` or `node`.
    pub role: &'static str,
    /// The node this process announces; none for a `dns` bound to all interfaces.
    pub node: Option<Node>,
    pub version: &'static str,
    /// The HTTP address bound (the port chosen when `-p 0`).
    pub listening: SocketAddr,
    /// The DNS seeding address bound (SPEC §12), UDP and TCP; none without `--seed_zone`.
    pub dns_listening: Option<SocketAddr>,
    pub settings: Settings,
}

impl Profile {
    /// Whether this process runs feelers (`feeler.rs`): a node does, a seed never.
    pub fn feels(&self) -> bool {
        self.settings.kind == Kind::Node
    }
}

/// The server's load at the time of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Client connections open.
    pub connections: usize,
    /// Requests read and not yet answered on their socket.
    pub in_flight: usize,
}

/// Everything a report is made of.
pub struct Facts<'a> {
    pub profile: &'a Profile,
    pub stats: &'a Stats,
    /// The committed list.
    pub snapshot: &'a Snapshot,
    /// What the store's committer has done.
    pub disk: &'a StoreStats,
    pub load: Load,
    /// The chain application behind a node (`--app`, SPEC §13).
    pub app: Option<AppStatus>,
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// The `/status` document, in the order an operator reads it.
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    pub role: &'static str,
    pub node: &'a Option<Node>,
    pub version: &'static str,
    /// `IP:PORT` of the HTTP listener, as bound.
    pub listening: SocketAddr,
    /// `IP:PORT` of DNS seeding, as bound; absent without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_listening: Option<SocketAddr>,
    pub uptime_seconds: u64,
    /// Nodes this process vouches for: what `GET /nodes/` lists.
    pub known: usize,
    /// The known-node table (SPEC §11).
    pub table: TableReport,
    /// What the defences of SPEC §11 did since start.
    pub defences: DefenceReport,
    pub last_round: Option<LastRound>,
    pub rounds: u64,
    pub totals: Totals,
    pub connections: usize,
    /// The chain application behind this node and its health (`--app`, SPEC §13); absent
    /// without `--app`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<AppStatus>,
    /// The effective settings: every flag's value.
    pub settings: &'a Settings,
}

/// The last update round, as `/status` reports it.
#[derive(Debug, Serialize)]
pub struct LastRound {
    /// When it ended, RFC 3339 UTC.
    pub ended: String,
    pub ended_unix: u64,
    pub duration_ms: f64,
    pub checked: usize,
    pub failed: usize,
    pub removed: usize,
    pub learned: usize,
    pub known: usize,
}

/// The known-node table, as `/status` reports it.
#[derive(Debug, Serialize)]
pub struct TableReport {
    /// Entries, vouched for or not.
    pub entries: usize,
    /// Entries waiting for this process's first check of them (learned, loaded, or names).
    pub unverified: usize,
    /// Address groups with at least one entry.
    pub groups: usize,
    /// Entries in the largest group.
    pub largest_group: usize,
}

/// What SPEC §11's defences did since start, as `/status` reports it.
#[derive(Debug, Serialize)]
pub struct DefenceReport {
    /// Registrations refused with 507 (full table, newcomer's group the largest).
    pub full: u64,
    /// Registrations refused with 429 (`--reg_rate`).
    pub rate_limited: u64,
    /// Entries evicted to make room for a newcomer of a smaller group.
    pub evicted: u64,
    /// Nodes refused by the local-address rule.
    pub refused_local: u64,
    /// Failed checks of peers that answered for another `--network`.
    pub other_network: u64,
}

/// Running totals since start.
#[derive(Debug, Serialize)]
pub struct Totals {
    pub checks_ok: u64,
    pub checks_failed: u64,
    pub removed: u64,
    pub learned: u64,
    /// Feeler requests to seeds, and the nodes they learned (also in `learned`); a node's
    /// only (a seed never feels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feelers: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feeler_learned: Option<u64>,
    pub changes: u64,
    pub disk_writes: u64,
    pub disk_write_failures: u64,
}

/// The `/status` document.
pub fn status<'a>(facts: &Facts<'a>) -> Status<'a> {
    let Facts {
        profile,
        stats,
        snapshot,
        disk,
        load,
        app,
    } = facts;
    let feels = profile.feels();
    let last_round = stats.last_round().map(|round| LastRound {
        ended: rfc3339(round.ended),
        ended_unix: round
            .ended
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        // Microsecond precision, without float noise in the last digits.
        duration_ms: round.duration.as_micros() as f64 / 1000.0,
        checked: round.checked,
        failed: round.failed,
        removed: round.removed,
        learned: round.learned,
        known: round.known,
    });
    Status {
        role: profile.role,
        node: &profile.node,
        version: profile.version,
        listening: profile.listening,
        dns_listening: profile.dns_listening,
        uptime_seconds: stats.started.elapsed().as_secs(),
        known: snapshot.known().len(),
        table: TableReport {
            entries: snapshot.table.len(),
            unverified: snapshot.unverified(),
            groups: snapshot.table.groups(),
            largest_group: snapshot.table.largest_group(),
        },
        defences: DefenceReport {
            full: read(&stats.defences.full),
            rate_limited: read(&stats.defences.rate_limited),
            evicted: read(&stats.defences.evicted),
            refused_local: read(&stats.defences.refused_local),
            other_network: read(&stats.check_failures[PeerError::OTHER_NETWORK]),
        },
        last_round,
        rounds: read(&stats.rounds),
        totals: Totals {
            checks_ok: read(&stats.checks_ok),
            checks_failed: read(&stats.checks_failed),
            removed: read(&stats.removed),
            learned: read(&stats.learned),
            feelers: feels.then(|| read(&stats.feelers)),
            feeler_learned: feels.then(|| read(&stats.felt)),
            changes: read(&disk.changes),
            disk_writes: read(&disk.writes),
            disk_write_failures: disk.write_failures.iter().map(read).sum(),
        },
        connections: load.connections,
        app: app.clone(),
        settings: &profile.settings,
    }
}

mod metrics;

pub use metrics::metrics;
