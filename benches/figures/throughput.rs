//! Figures 1 and 2: `GET /nodes/` with 1,000 known nodes, against nginx serving the same bytes
//! in the same run, and durable `POST /nodes/` changes.
//!
//! The servers compared take turns, run after run (each run starting with the next one, so
//! that none is always first), and each ratio is the median of the ratios of the runs: on a
//! noisy machine only figures measured side by side compare.

use std::net::SocketAddr;
use std::thread;

use crate::load::{self, Connection, Load, Outcome, Script, body_request, get_request};
use crate::report::{Row, median, range, thousands};
use crate::support::{self, Proc, TempDir};
use crate::{Config, nginx, procfs};

/// Connections (figure 1) and concurrent clients (figure 2).
const CONNECTIONS: usize = 16;
/// Nodes known during figures 1 and 2.
const KNOWN: usize = 1000;

/// The `i`th of the synthetic nodes a server is loaded with, as a request body.
pub fn synthetic_node(i: usize) -> String {
    format!(
        r#"{{"ip_address":"127.{}.{}.{}","port":{}}}"#,
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

/// A `dns` holding the synthetic nodes, never sweeping them (they are not reachable).
fn our_server(config: &Config, binary: &str) -> (Proc, TempDir) {
    let dir = TempDir::new("bench-throughput");
    let mut args = vec!["-u", "86400"];
    args.extend(config.server_args.iter().map(String::as_str));
    let dns = support::spawn(binary, dir.path(), &args);
    add_nodes(dns.addr, "/nodes/", KNOWN);
    (dns, dir)
}

/// Requests per second, p99 in ms, and server CPU µs per request, of each run.
struct Series {
    rates: Vec<f64>,
    p99s: Vec<f64>,
    cpu_us: Vec<f64>,
}

impl Series {
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

    /// `12,345 req/s, p99 1.23 ms, server CPU 45 µs/req`.
    fn summary(&self, unit: &str) -> String {
        format!(
            "{} {unit}/s, p99 {:.2} ms, server CPU {:.0} µs/{unit}",
            thousands(self.rate()),
            self.p99(),
            median(&self.cpu_us)
        )
    }

    /// Rows comparing `self` (ours) with `other`, run by run: requests/s and CPU per request.
    fn ratios(&self, other: &Series) -> (Vec<f64>, Vec<f64>) {
        let per_run = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x / y).collect();
        (
            per_run(&self.rates, &other.rates),
            per_run(&self.cpu_us, &other.cpu_us),
        )
    }
}

/// A server under load: where it listens, its processes (for their CPU time), its figures.
struct Contender {
    name: String,
    addr: SocketAddr,
    pids: Vec<u32>,
    series: Series,
}

impl Contender {
    fn new(name: impl Into<String>, addr: SocketAddr, pids: Vec<u32>) -> Contender {
        Contender {
            name: name.into(),
            addr,
            pids,
            series: Series {
                rates: Vec::new(),
                p99s: Vec::new(),
                cpu_us: Vec::new(),
            },
        }
    }

    /// One load run, with the CPU time the server used per answer (warm-up included).
    fn measure(&mut self, load: &Load, script: Script<'_>) {
        let cpu = |pids: &[u32]| pids.iter().map(|&p| procfs::cpu_seconds(p)).sum::<f64>();
        let before = cpu(&self.pids);
        let outcome: Outcome = load::run(self.addr, load, script).expect("load");
        let cpu_per_answer = (cpu(&self.pids) - before) / outcome.total as f64;
        assert_eq!(outcome.errors, 0, "{}: answers other than 2xx", self.name);
        self.series.rates.push(outcome.per_second());
        self.series.p99s.push(outcome.quantile_ms(0.99));
        self.series.cpu_us.push(cpu_per_answer * 1e6);
    }
}

/// `config.runs` rounds in which every contender takes one load run; the script is made for
/// each run.
fn take_turns<S: Fn(usize, u64, &mut Vec<u8>) + Sync>(
    config: &Config,
    contenders: &mut [Contender],
    script: impl Fn(usize) -> S,
) {
    let load = Load {
        connections: CONNECTIONS,
        warmup: config.warmup,
        duration: config.duration,
    };
    for run in 0..config.runs {
        let script = script(run);
        let n = contenders.len();
        for k in 0..n {
            contenders[(run + k) % n].measure(&load, &script);
        }
    }
}

/// Rows for what the baseline binary (`SEEDMESH_BENCH_BASELINE`) measured, against ours.
fn baseline_rows(figure: &str, unit: &str, ours: &Contender, baseline: &Contender) -> Vec<Row> {
    let (rates, cpu) = ours.series.ratios(&baseline.series);
    let ratio = |v: f64| format!("{v:.2}");
    vec![
        Row::new(
            format!("{figure}. baseline {}", baseline.name),
            baseline.series.summary(unit),
        )
        .spread(baseline.series.spread()),
        Row::new(
            format!("{figure}. ours / baseline: {unit}/s, server CPU per {unit}"),
            format!("{:.2}, {:.2}", median(&rates), median(&cpu)),
        )
        .spread(format!("{}; {}", range(&rates, ratio), range(&cpu, ratio))),
    ]
}

/// Figure 1: `GET /nodes/` from our `dns`, from nginx serving the same bytes, and from the
/// baseline binary if there is one.
pub fn get_nodes(config: &Config) -> Vec<Row> {
    let (dns, _dir) = our_server(config, env!("CARGO_BIN_EXE_dns"));
    let body = {
        let mut connection = Connection::open(dns.addr).expect("connect");
        let answer = connection.exchange(&get_request("/nodes/")).expect("GET");
        answer.body.to_vec()
    };
    let listed = support::nodes_of(&serde_json::from_slice(&body).expect("a JSON list"));
    assert_eq!(listed.len(), KNOWN);
    let mut contenders = vec![Contender::new("ours", dns.addr, vec![dns.pid()])];

    let nginx = match nginx::find() {
        None => Err("not installed".to_owned()),
        Some(binary) => nginx::Nginx::start(&binary, &body).inspect(|server| {
            let name = nginx::version(&binary);
            contenders.push(Contender::new(name, server.addr, server.pids()));
        }),
    };
    let _baseline = config.baseline.as_ref().map(|binary| {
        let (dns, dir) = our_server(config, binary);
        contenders.push(Contender::new(binary, dns.addr, vec![dns.pid()]));
        (dns, dir)
    });

    let request = get_request("/nodes/");
    take_turns(config, &mut contenders, |_| {
        |_: usize, _: u64, out: &mut Vec<u8>| out.extend_from_slice(&request)
    });

    let ours = &contenders[0];
    let p99 = ours.series.p99();
    let mut rows = vec![
        Row::new(
            format!(
                "1. `GET /nodes/`, {} nodes ({} B), {CONNECTIONS} connections",
                thousands(KNOWN as f64),
                thousands(body.len() as f64)
            ),
            ours.series.summary("req"),
        )
        .spread(ours.series.spread())
        .target("p99 < 5 ms", p99 < 5.0, format!("{:.2} ms over", p99 - 5.0)),
    ];
    let ratio = |v: f64| format!("{v:.2}");
    match &nginx {
        Ok(_) => {
            let theirs = &contenders[1];
            let (rates, cpu) = ours.series.ratios(&theirs.series);
            let rate = median(&rates);
            rows.push(
                Row::new(
                    format!("1. {}, same bytes as a static file, same run", theirs.name),
                    theirs.series.summary("req"),
                )
                .spread(theirs.series.spread()),
            );
            rows.push(
                Row::new("1. ours / nginx, requests/s", ratio(rate))
                    .spread(range(&rates, ratio))
                    .target(
                        "≥ 0.50",
                        rate >= 0.5,
                        format!("{:.0}% short", (0.5 - rate) / 0.5 * 100.0),
                    ),
            );
            rows.push(
                Row::new(
                    "1. ours / nginx, server CPU per request",
                    ratio(median(&cpu)),
                )
                .spread(range(&cpu, ratio)),
            );
        }
        Err(why) => rows.push(Row::new("1. nginx, same bytes", why.clone())),
    }
    if config.baseline.is_some() {
        rows.extend(baseline_rows("1", "req", ours, contenders.last().unwrap()));
    }
    rows
}

/// Figure 2. Each client adds a node of its own with `POST /nodes/`, then removes it with
/// `DELETE /nodes/`, and again: every request is a change that must be on disk before its
/// 200, and the list stays at 1,000 nodes, so every answer is the same size as in figure 1.
pub fn post_nodes(config: &Config) -> Vec<Row> {
    let (dns, _dir) = our_server(config, env!("CARGO_BIN_EXE_dns"));
    let mut contenders = vec![Contender::new("ours", dns.addr, vec![dns.pid()])];
    let _baseline = config.baseline.as_ref().map(|binary| {
        let (dns, dir) = our_server(config, binary);
        contenders.push(Contender::new(binary, dns.addr, vec![dns.pid()]));
        (dns, dir)
    });
    take_turns(config, &mut contenders, |run| {
        move |c: usize, i: u64, out: &mut Vec<u8>| {
            // A node no run has used: 127.(16 + run).c.x, port from the sequence number.
            let k = i / 2;
            let node = format!(
                r#"{{"ip_address":"127.{}.{c}.{}","port":{}}}"#,
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
        }
    });

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
        on_disk.len() <= KNOWN + CONNECTIONS * config.runs,
        "unacknowledged nodes on disk"
    );

    let ours = &contenders[0];
    let rate = ours.series.rate();
    let mut rows = vec![
        Row::new(
            format!(
                "2. `POST`+`DELETE /nodes/`, durable, {CONNECTIONS} clients, {} nodes",
                thousands(KNOWN as f64)
            ),
            ours.series.summary("change"),
        )
        .spread(ours.series.spread())
        .target(
            "≥ 2,000 changes/s",
            rate >= 2000.0,
            format!("{:.0}% short", (2000.0 - rate) / 20.0),
        ),
    ];
    if config.baseline.is_some() {
        rows.extend(baseline_rows(
            "2",
            "change",
            ours,
            contenders.last().unwrap(),
        ));
    }
    rows
}
