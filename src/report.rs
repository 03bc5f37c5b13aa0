//! What `/status` and `/metrics` tell an operator: who this process is and its settings, the
//! last update round, and running totals; as JSON for people and scripts, and as Prometheus
//! text (exposition format 0.0.4) for scrapers.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::app::AppStatus;
use crate::config::Settings;
use crate::logging::rfc3339;
use crate::membership::Snapshot;
use crate::nodes::Node;
use crate::stats::Stats;
use crate::store::{PersistError, StoreStats};
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
    /// Feeler requests to seeds, and the nodes they learned (also in `learned`).
    pub feelers: u64,
    pub feeler_learned: u64,
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
            feelers: read(&stats.feelers),
            feeler_learned: read(&stats.felt),
            changes: read(&disk.changes),
            disk_writes: read(&disk.writes),
            disk_write_failures: disk.write_failures.iter().map(read).sum(),
        },
        connections: load.connections,
        app: app.clone(),
        settings: &profile.settings,
    }
}

/// Prometheus text exposition, built a metric family at a time.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    /// Starts a family with its `# HELP` and `# TYPE` lines.
    fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(
            self.0,
            "# HELP seedmesh_{name} {help}\n# TYPE seedmesh_{name} {kind}"
        );
        self
    }

    /// A family of one sample without labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help).sample(name, &[], value);
    }

    /// One sample; label values are our own constants, escaped all the same.
    fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) -> &mut Self {
        let _ = write!(self.0, "seedmesh_{name}");
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.0, "{{{}}}", pairs.join(","));
        }
        let _ = writeln!(self.0, " {value}");
        self
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `/metrics` text.
pub fn metrics(facts: &Facts<'_>) -> String {
    let Facts {
        profile,
        stats,
        snapshot,
        disk,
        load,
        app,
    } = facts;
    let mut out = Exposition::default();
    out.family(
        "info",
        "gauge",
        "Always 1; the labels say what this process is.",
    )
    .sample(
        "info",
        &[("role", profile.role), ("version", profile.version)],
        1,
    );
    out.single(
        "uptime_seconds",
        "gauge",
        "Seconds since the process started.",
        stats.started.elapsed().as_secs_f64(),
    );
    out.single(
        "known_nodes",
        "gauge",
        "Nodes this process vouches for right now (what GET /nodes/ lists).",
        snapshot.known().len(),
    );
    out.single(
        "table_entries",
        "gauge",
        "Entries in the known-node table, vouched for or not.",
        snapshot.table.len(),
    );
    out.single(
        "unverified_nodes",
        "gauge",
        "Entries waiting for this process's first check (learned, loaded, or names).",
        snapshot.unverified(),
    );
    out.single(
        "address_groups",
        "gauge",
        "Address groups (IPv4 /16, IPv6 /32, a name's last two labels) with entries.",
        snapshot.table.groups(),
    );
    out.single(
        "largest_group_entries",
        "gauge",
        "Entries in the largest address group.",
        snapshot.table.largest_group(),
    );
    let defences = &stats.defences;
    out.single(
        "registrations_full_total",
        "counter",
        "Registrations refused with 507: table full and the newcomer's group the largest.",
        read(&defences.full),
    );
    out.single(
        "rate_limited_total",
        "counter",
        "Registrations refused with 429: the source added new nodes faster than --reg_rate.",
        read(&defences.rate_limited),
    );
    out.single(
        "evictions_total",
        "counter",
        "Entries evicted from the largest address group to make room for a newcomer.",
        read(&defences.evicted),
    );
    out.family(
        "connections_refused_total",
        "counter",
        "Connections and requests the connection layer refused with 503, by the bound reached.",
    )
    .sample(
        "connections_refused_total",
        &[("bound", "max_conns")],
        read(&defences.too_many_connections),
    )
    .sample(
        "connections_refused_total",
        &[("bound", "max_conns_per_ip")],
        read(&defences.too_many_from_source),
    )
    .sample(
        "connections_refused_total",
        &[("bound", "app_body_budget")],
        read(&defences.body_budget),
    );
    out.single(
        "refused_local_total",
        "counter",
        "Nodes refused by the local-address rule (--allow_local, --public_only).",
        read(&defences.refused_local),
    );
    out.single(
        "max_nodes",
        "gauge",
        "The cap on known nodes (--max_nodes).",
        profile.settings.max_nodes,
    );
    out.single(
        "update_rounds_total",
        "counter",
        "Update rounds finished.",
        read(&stats.rounds),
    );
    out.family(
        "update_round_duration_seconds",
        "summary",
        "Time spent in update rounds.",
    )
    .sample(
        "update_round_duration_seconds_sum",
        &[],
        read(&stats.round_micros) as f64 / 1e6,
    )
    .sample(
        "update_round_duration_seconds_count",
        &[],
        read(&stats.rounds),
    );
    if let Some(round) = stats.last_round() {
        let ended = round.ended.duration_since(UNIX_EPOCH).unwrap_or_default();
        out.single(
            "last_round_duration_seconds",
            "gauge",
            "How long the last update round took.",
            round.duration.as_secs_f64(),
        );
        out.single(
            "last_round_end_timestamp_seconds",
            "gauge",
            "When the last update round ended (Unix time).",
            ended.as_secs_f64(),
        );
    }
    out.family(
        "checks_total",
        "counter",
        "Liveness checks of known nodes, by result.",
    )
    .sample("checks_total", &[("result", "ok")], read(&stats.checks_ok))
    .sample(
        "checks_total",
        &[("result", "failed")],
        read(&stats.checks_failed),
    );
    let family = out.family(
        "check_failures_total",
        "counter",
        "Failed liveness checks and peer requests of update rounds, by cause.",
    );
    for (cause, counter) in PeerError::CAUSES.iter().zip(&stats.check_failures) {
        family.sample("check_failures_total", &[("cause", cause)], read(counter));
    }
    out.single(
        "round_panics_total",
        "counter",
        "Update rounds that panicked (logged; the update thread carried on).",
        read(&stats.round_panics),
    );
    out.single(
        "nodes_removed_total",
        "counter",
        "Nodes removed after --fail_limit failed checks.",
        read(&stats.removed),
    );
    out.single(
        "nodes_learned_total",
        "counter",
        "Nodes learned from peers and seed servers.",
        read(&stats.learned),
    );
    out.single(
        "feelers_total",
        "counter",
        "Feeler requests: a seed asked by a node that knows enough (once in 20 rounds).",
        read(&stats.feelers),
    );
    out.single(
        "feeler_nodes_learned_total",
        "counter",
        "Nodes learned through feeler requests (also in nodes_learned_total).",
        read(&stats.felt),
    );
    out.single(
        "changes_total",
        "counter",
        "Changes to the known nodes written to disk.",
        read(&disk.changes),
    );
    out.single(
        "disk_writes_total",
        "counter",
        "Writes of the nodes file (each may hold many changes).",
        read(&disk.writes),
    );
    let family = out.family(
        "persist_failures_total",
        "counter",
        "Writes of the nodes file that failed, by cause; their changes were refused.",
    );
    for (cause, counter) in PersistError::CAUSES.iter().zip(&disk.write_failures) {
        family.sample("persist_failures_total", &[("cause", cause)], read(counter));
    }
    out.single(
        "open_connections",
        "gauge",
        "Client connections open.",
        load.connections,
    );
    out.single(
        "requests_in_flight",
        "gauge",
        "Requests read and not yet answered.",
        load.in_flight,
    );
    if let Some(app) = app {
        out.single(
            "app_announcing",
            "gauge",
            "1 while this node announces itself; 0 while its application fails --app_health.",
            u8::from(app.announcing),
        );
        if let Some(healthy) = app.healthy {
            out.single(
                "app_healthy",
                "gauge",
                "1 when the application passed its last --app_health check, else 0.",
                u8::from(healthy),
            );
        }
    }
    out.family(
        "http_requests_total",
        "counter",
        "HTTP requests answered, by route, method and status.",
    );
    for (route, method, status, count) in stats.requests.nonzero() {
        out.sample(
            "http_requests_total",
            &[("route", route), ("method", method), ("status", &status)],
            count,
        );
    }
    if profile.settings.seed_dns.is_some() {
        out.family(
            "dns_queries_total",
            "counter",
            "DNS seeding messages, by query type and response code (dropped: not answered).",
        );
        for (qtype, rcode, count) in stats.dns.nonzero() {
            out.sample(
                "dns_queries_total",
                &[("qtype", qtype), ("rcode", rcode)],
                count,
            );
        }
        out.single(
            "dns_answers_reused_total",
            "counter",
            "DNS seeding answers sent again from a UDP worker's cache instead of built.",
            read(&stats.dns.reused),
        );
        out.family(
            "dns_rate_limited_total",
            "counter",
            "UDP queries over --seed_rrl, by what was done: an empty truncated reply, or none.",
        )
        .sample(
            "dns_rate_limited_total",
            &[("action", "slipped")],
            read(&stats.dns.slipped),
        )
        .sample(
            "dns_rate_limited_total",
            &[("action", "dropped")],
            read(&stats.dns.rate_dropped),
        );
    }
    out.0
}
