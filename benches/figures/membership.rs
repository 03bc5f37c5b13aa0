//! Figures 3 and 4: how fast dead nodes go, and how fast a network of nodes finds itself.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::Config;
use crate::report::{Row, median, range, thousands};
use crate::support::{self, BlackHole, Proc, TempDir};

/// `--timeout` of the sweep figure, in seconds: short, so the figure is quick.
const SWEEP_TIMEOUT: f64 = 2.0;
/// Dead nodes the seed holds, and how many of them are black holes.
const DEAD: usize = 1000;
const HOLES: usize = 100;
/// Nodes in the convergence figure, and the peers each must know.
const NETWORK: usize = 30;
const WANTED_PEERS: usize = 10;

/// Polls `check` every `every` until it holds; the time it took, or `None` after `limit`.
fn poll(limit: Duration, every: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if check() {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        thread::sleep(every);
    }
}

/// Figure 3, at `dns`'s default `--check_threads` (1024) and at SPEC §8's 64 (the default
/// until the simulator showed it falls behind; SIMULATION.md, finding 2): a seed whose file holds 900
/// nodes that refuse connections and 100 black holes (they accept and never answer), and the
/// time from its `listening on` (its first round starts then) until its list is empty.
pub fn sweep(config: &Config) -> Vec<Row> {
    let mut rows = Vec::new();
    for threads in [None, Some("64")] {
        let (mut multiples, mut refused_gone) = (Vec::new(), Vec::new());
        for _ in 0..config.slow_runs {
            let dir = TempDir::new("bench-sweep");
            let holes: Vec<BlackHole> = (0..HOLES).map(|_| BlackHole::new("127.0.0.1")).collect();
            let refused = support::refused_addr("127.0.0.1").port();
            let entries: Vec<String> = (0..DEAD)
                .map(|i| {
                    let (ip, port) = if i % (DEAD / HOLES) == 0 {
                        let hole = holes[i / (DEAD / HOLES)].addr;
                        (hole.ip().to_string(), hole.port())
                    } else {
                        (format!("127.1.{}.{}", i / 256, i % 256), refused)
                    };
                    format!(r#"{{"ip_address":"{ip}","port":{port}}}"#)
                })
                .collect();
            fs::write(dir.join("nodes.json"), format!("[{}]", entries.join(","))).unwrap();
            let timeout = SWEEP_TIMEOUT.to_string();
            let mut args = vec!["-u", "86400", "--timeout", &timeout];
            args.extend(threads.iter().flat_map(|n| ["--check_threads", n]));
            let dns = support::dns(dir.path(), &args);
            let known = || dns.nodes().len();
            let every = Duration::from_millis(10);
            let limit = Duration::from_secs_f64(SWEEP_TIMEOUT * 10.0);
            let started = Instant::now();
            let refused = poll(limit, every, || known() <= HOLES).expect("refused ones removed");
            poll(limit, every, || known() == 0).expect("all removed");
            refused_gone.push(refused.as_secs_f64());
            multiples.push(started.elapsed().as_secs_f64() / SWEEP_TIMEOUT);
        }
        let multiple = median(&multiples);
        let setting = match threads {
            None => "`--check_threads 1024` (default)".to_owned(),
            Some(n) => format!("`--check_threads {n}` (SPEC §8's)"),
        };
        rows.push(
            Row::new(
                format!(
                    "3. sweep of {} dead nodes, {HOLES} black holes, {setting}",
                    thousands(DEAD as f64)
                ),
                format!(
                    "{multiple:.2} × `--timeout` ({SWEEP_TIMEOUT} s); refused ones gone in {:.2} s",
                    median(&refused_gone)
                ),
            )
            .spread(range(&multiples, |v| format!("{v:.2} ×")))
            .at_most("≤ 1.5 × `--timeout`", multiple, 1.5, |v| {
                format!("{v:.2} ×")
            }),
        );
    }
    rows
}

/// Figure 4: a seed and 30 nodes at `-u 1`; rounds (seconds) from the first node's start
/// until every node knows at least 10 peers, and from the kill of one node until no list
/// (the seed's and every node's) holds it.
pub fn convergence(config: &Config) -> Vec<Row> {
    let (mut converged, mut gone) = (Vec::new(), Vec::new());
    for _ in 0..config.slow_runs {
        let dir = TempDir::new("bench-network");
        let dns = support::dns(&dir.join("dns"), &["-u", "1"]);
        let seed = dns.addr.to_string();
        let started = Instant::now();
        let mut nodes: Vec<Proc> = (0..NETWORK)
            .map(|i| support::node(&dir.join(&format!("n{i}")), &["-u", "1", "--dns", &seed]))
            .collect();
        let every = Duration::from_millis(50);
        let limit = Duration::from_secs(30);
        poll(limit, every, || {
            nodes.iter().all(|n| n.nodes().len() >= WANTED_PEERS)
        })
        .expect("every node knows enough peers");
        converged.push(started.elapsed().as_secs_f64());

        let mut victim = nodes.remove(NETWORK / 2);
        let victim_node = (victim.addr.ip().to_string(), victim.port());
        victim.kill();
        let took = poll(limit, every, || {
            std::iter::once(&dns)
                .chain(&nodes)
                .all(|p| !p.nodes().contains(&victim_node))
        })
        .expect("the killed node is dropped everywhere");
        gone.push(took.as_secs_f64());
    }
    let rounds = |v: f64| format!("{v:.2}");
    vec![
        Row::new(
            format!(
                "4. {NETWORK} nodes + 1 seed at `-u 1`: every node knows ≥ {WANTED_PEERS} peers"
            ),
            format!("{:.2} rounds", median(&converged)),
        )
        .spread(range(&converged, rounds))
        .at_most("≤ 3 rounds", median(&converged), 3.0, |v| {
            format!("{v:.2} rounds")
        }),
        Row::new(
            "4. a killed node is gone from every list (`--fail_limit 1`)",
            format!("{:.2} rounds", median(&gone)),
        )
        .spread(range(&gone, rounds))
        .at_most("≤ fail_limit + 2 = 3 rounds", median(&gone), 3.0, |v| {
            format!("{v:.2} rounds")
        }),
    ]
}
