//! Figures 1 and 2: `GET /nodes/` with 1,000 known nodes, against nginx serving the same bytes
//! in the same run, and durable `POST /nodes/` changes.

use std::net::SocketAddr;
use std::thread;

use crate::load::{self, Connection, Load, Outcome, Script, body_request, get_request};
use crate::report::{Row, median, range, thousands};
use crate::support::{self, TempDir};
use crate::{Config, nginx, procfs};

/// Connections (figure 1) and concurrent clients (figure 2).
const CONNECTIONS: usize = 16;

/// The `i`th of the synthetic nodes a server is loaded with, as a request body.
pub fn synthetic_node(i: usize) -> String {
    format!(
        r#"{{"ip_address":"10.{}.{}.{}","port":{}}}"#,
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255,
        55000 + i % 1000
    )
}

/// Adds `count` synthetic nodes to the server at `addr` with `POST path`, from 16 clients.
pub fn add_nodes(addr: SocketAddr, path: &str, count: usize) {
    thread::scope(|scope| {
        for c in 0..CONNECTIONS {
            scope.spawn(move || {
                let mut connection = Connection::open(addr).expect("connect");
                let mut request = Vec::new();
                for i in (c..count).step_by(CONNECTIONS) {
                    request.clear();
                    body_request(&mut request, "POST", path, &synthetic_node(i));
                    let answer = connection.exchange(&request).expect("add a node");
                    assert_eq!(answer.status, 200, "adding node {i}");
                }
            });
        }
    });
}

fn load(config: &Config) -> Load {
    Load {
        connections: CONNECTIONS,
        warmup: config.warmup,
        duration: config.duration,
    }
}

/// Runs `load` against the server at `addr` whose processes are `pids`, and adds how much
/// CPU time they used per answer (warm-up included) to the outcome.
fn measure(addr: SocketAddr, pids: &[u32], load: &Load, script: Script<'_>) -> (Outcome, f64) {
    let cpu = || {
        pids.iter()
            .map(|&pid| procfs::cpu_seconds(pid))
            .sum::<f64>()
    };
    let before = cpu();
    let outcome = load::run(addr, load, script).expect("load");
    let per_answer = (cpu() - before) / outcome.total as f64;
    (outcome, per_answer)
}

/// Requests per second, p99 in ms, and server CPU µs per request, of each run.
struct Series {
    rates: Vec<f64>,
    p99s: Vec<f64>,
    cpu_us: Vec<f64>,
}

impl Series {
    fn new() -> Series {
        Series {
            rates: Vec::new(),
            p99s: Vec::new(),
            cpu_us: Vec::new(),
        }
    }

    fn push(&mut self, (outcome, cpu): (Outcome, f64)) {
        assert_eq!(outcome.errors, 0, "answers other than 2xx");
        self.rates.push(outcome.per_second());
        self.p99s.push(outcome.quantile_ms(0.99));
        self.cpu_us.push(cpu * 1e6);
    }

    fn cpu(&self) -> f64 {
        median(&self.cpu_us)
    }

    fn rate(&self) -> f64 {
        median(&self.rates)
    }

    fn p99(&self) -> f64 {
        median(&self.p99s)
    }

    fn spread(&self) -> String {
        format!(
            "{}; p99 {}; {} µs",
            range(&self.rates, thousands),
            range(&self.p99s, |v| format!("{v:.2} ms")),
            range(&self.cpu_us, |v| format!("{v:.0}"))
        )
    }

    /// `12,345 req/s, p99 1.23 ms, 45 µs CPU/req`.
    fn summary(&self, unit: &str) -> String {
        format!(
            "{} {unit}/s, p99 {:.2} ms, server CPU {:.0} µs/{unit}",
            thousands(self.rate()),
            self.p99(),
            self.cpu()
        )
    }
}

/// Figure 1. With nginx installed, the two servers take turns, run after run, and the ratio
/// is the median of the per-pair ratios.
pub fn get_nodes(config: &Config) -> Vec<Row> {
    let dir = TempDir::new("bench-get");
    // No sweep during the run: the synthetic nodes are not reachable.
    let dns = support::dns(dir.path(), &["-u", "86400"]);
    add_nodes(dns.addr, "/nodes/", 1000);
    let body = {
        let mut connection = Connection::open(dns.addr).expect("connect");
        let answer = connection.exchange(&get_request("/nodes/")).expect("GET");
        answer.body.to_vec()
    };
    assert_eq!(
        support::nodes_of(&serde_json::from_slice(&body).unwrap()).len(),
        1000
    );

    let nginx = match nginx::find() {
        None => Err("not installed".to_owned()),
        Some(binary) => {
            nginx::Nginx::start(&binary, &body).map(|server| (server, nginx::version(&binary)))
        }
    };
    let request = get_request("/nodes/");
    let script = |_: usize, _: u64, out: &mut Vec<u8>| out.extend_from_slice(&request);
    let (mut ours, mut theirs, mut ratios) = (Series::new(), Series::new(), Vec::new());
    for _ in 0..config.runs {
        ours.push(measure(dns.addr, &[dns.pid()], &load(config), &script));
        if let Ok((server, _)) = &nginx {
            theirs.push(measure(server.addr, &server.pids(), &load(config), &script));
            ratios.push(ours.rates.last().unwrap() / theirs.rates.last().unwrap());
        }
    }

    let what = format!(
        "1. `GET /nodes/`, 1,000 nodes ({} B), 16 connections",
        body.len()
    );
    let p99_ok = ours.p99() < 5.0;
    let mut rows = vec![
        Row::new(what, ours.summary("req"))
            .spread(ours.spread())
            .target(
                "p99 < 5 ms",
                p99_ok,
                format!("p99 {:.2} ms over", ours.p99() - 5.0),
            ),
    ];
    match &nginx {
        Ok((_, version)) => {
            let ratio = median(&ratios);
            rows.push(
                Row::new(
                    format!("1. {version}, same bytes as a static file, same run"),
                    theirs.summary("req"),
                )
                .spread(theirs.spread()),
            );
            let cpu_ratios: Vec<f64> = ours
                .cpu_us
                .iter()
                .zip(&theirs.cpu_us)
                .map(|(a, b)| a / b)
                .collect();
            rows.push(
                Row::new("1. ours / nginx, requests/s", format!("{ratio:.2}"))
                    .spread(range(&ratios, |v| format!("{v:.2}")))
                    .target(
                        "≥ 0.50",
                        ratio >= 0.5,
                        format!("{:.0}% short", (0.5 - ratio) / 0.5 * 100.0),
                    ),
            );
            rows.push(
                Row::new(
                    "1. ours / nginx, server CPU per request",
                    format!("{:.2}", median(&cpu_ratios)),
                )
                .spread(range(&cpu_ratios, |v| format!("{v:.2}"))),
            );
        }
        Err(why) => rows.push(Row::new("1. nginx, same bytes", why.clone())),
    }
    rows
}

/// Figure 2. Each client adds a node of its own with `POST /nodes/`, then removes it with
/// `DELETE /nodes/`, and again: every request is a change that must be on disk before its
/// 200, and the list stays at 1,000 nodes, so every answer is the same size as in figure 1.
pub fn post_nodes(config: &Config) -> Vec<Row> {
    let dir = TempDir::new("bench-post");
    let dns = support::dns(dir.path(), &["-u", "86400"]);
    add_nodes(dns.addr, "/nodes/", 1000);
    let mut changes = Series::new();
    for run in 0..config.runs {
        let script = |c: usize, i: u64, out: &mut Vec<u8>| {
            // A node no run has used: 172.(16 + run).c.x, port from the sequence number.
            let k = i / 2;
            let node = format!(
                r#"{{"ip_address":"172.{}.{c}.{}","port":{}}}"#,
                16 + run,
                k % 250 + 1,
                k / 250 + 1
            );
            let method = if i.is_multiple_of(2) {
                "POST"
            } else {
                "DELETE"
            };
            body_request(out, method, "/nodes/", &node);
        };
        changes.push(measure(dns.addr, &[dns.pid()], &load(config), &script));
    }
    // What was acknowledged is on disk: the file holds every listed node, plus at most the
    // nodes of the clients stopped between a POST and its DELETE (beyond 1,000 nodes,
    // `GET /nodes/` answers a sample).
    let listed = support::nodes_of(&dns.get("/nodes/").json());
    let file = std::fs::read_to_string(dns.nodes_file()).expect("nodes file");
    let on_disk = support::nodes_of(&serde_json::from_str(&file).expect("a JSON file"));
    assert!(
        listed.iter().all(|n| on_disk.contains(n)),
        "a listed node is not on disk"
    );
    assert!(
        on_disk.len() <= 1000 + CONNECTIONS * config.runs,
        "unacknowledged nodes on disk"
    );

    let rate = changes.rate();
    vec![
        Row::new(
            "2. `POST`+`DELETE /nodes/`, durable, 16 clients, 1,000 nodes",
            changes.summary("change"),
        )
        .spread(changes.spread())
        .target(
            "≥ 2,000 changes/s",
            rate >= 2000.0,
            format!("{:.0}% short", (2000.0 - rate) / 20.0),
        ),
    ]
}
