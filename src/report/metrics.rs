//! `/metrics`: the facts of `/status` and the counters behind them, as Prometheus text
//! (exposition format 0.0.4): a `# HELP` and `# TYPE` line per family, then its samples, every
//! name prefixed `seedmesh_`.

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use super::{Facts, read};
use crate::store::PersistError;
use crate::transport::PeerError;

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
        "Nodes learned from peers, seed servers and seed domains (feelers included).",
        read(&stats.learned),
    );
    // A seed never feels (the feeler is a node's, `feeler.rs`).
    if profile.feels() {
        out.single(
            "feelers_total",
            "counter",
            "Feeler requests: a seed (or seed domain) asked by a node that knows enough.",
            read(&stats.feelers),
        );
        out.single(
            "feeler_nodes_learned_total",
            "counter",
            "Nodes learned through feeler requests (also in nodes_learned_total).",
            read(&stats.felt),
        );
    }
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
