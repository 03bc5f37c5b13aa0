//! `cargo bench`: the figures of `BENCHMARKS.md`, measured on loopback against the `dns` and
//! `node` binaries that cargo builds for the bench (the release profile), with a load
//! generator of our own and, when installed, nginx as the yardstick for HTTP and nsd (with
//! dnsperf) for DNS seeding.
//!
//! Prints the table and writes it into `BENCHMARKS.md` with the date and the machine.
//! Environment:
//! - `SEEDMESH_BENCH_RUNS`: runs of figures 1, 2 and 7 (default 5); figures 3–5 make
//!   `min(runs, 3)` runs of their slow parts.
//! - `SEEDMESH_BENCH_SECONDS`: measured seconds of each load run (default 2), after a quarter
//!   of that as warm-up.
//! - `SEEDMESH_BENCH_FIGURES`: which figures, e.g. `1,5` (default all).
//! - `SEEDMESH_BENCH_ARGS`: extra flags for the `dns` of figures 1 and 2 (`--workers 2`).
//! - `SEEDMESH_BENCH_BASELINE`: another `dns` binary (an older build, say) that figures 1
//!   and 2 also measure, taking turns with ours, and compare with ours run by run.
//!
//! `BENCHMARKS.md` is only written by a run of every figure with our binaries as they are.
#![forbid(unsafe_code)]

mod capture;
mod dns;
mod footprint;
mod load;
mod membership;
mod nginx;
mod procfs;
mod report;
#[path = "../../tests/support/mod.rs"]
mod support;
mod throughput;

use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use report::Row;

/// How long and how often to measure.
pub struct Config {
    /// Runs of each load figure.
    pub runs: usize,
    /// Runs of the figures that take seconds each.
    pub slow_runs: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Extra flags for the servers of figures 1 and 2.
    pub server_args: Vec<String>,
    /// A `dns` binary to compare ours with in figures 1 and 2.
    pub baseline: Option<String>,
}

type Figure = fn(&Config) -> Vec<Row>;

const FIGURES: [(&str, Figure); 7] = [
    ("GET /nodes/ against nginx", throughput::get_nodes),
    ("durable POST /nodes/", throughput::post_nodes),
    ("sweep of dead nodes", membership::sweep),
    ("convergence of 30 nodes", membership::convergence),
    ("footprint", footprint::footprint),
    (
        "one-host attack, with and without the defences",
        capture::one_host_attack,
    ),
    ("DNS SRV queries against nsd", dns::srv_rate),
];

fn env_number(name: &str, default: f64) -> f64 {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => text
            .parse()
            .ok()
            .filter(|v: &f64| *v > 0.0)
            .unwrap_or_else(|| panic!("{name}={text:?} is not a positive number")),
    }
}

fn main() {
    let runs = (env_number("SEEDMESH_BENCH_RUNS", 5.0) as usize).max(1);
    let seconds = env_number("SEEDMESH_BENCH_SECONDS", 2.0);
    let config = Config {
        runs,
        slow_runs: runs.min(3),
        warmup: Duration::from_secs_f64(seconds / 4.0),
        duration: Duration::from_secs_f64(seconds),
        server_args: std::env::var("SEEDMESH_BENCH_ARGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        baseline: std::env::var("SEEDMESH_BENCH_BASELINE").ok(),
    };
    let selected: Vec<usize> = match std::env::var("SEEDMESH_BENCH_FIGURES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("SEEDMESH_BENCH_FIGURES: figure numbers")
            })
            .collect(),
        Err(_) => (1..=FIGURES.len()).collect(),
    };

    let started = Instant::now();
    let mut rows = Vec::new();
    for (i, (name, figure)) in FIGURES.iter().enumerate() {
        if !selected.contains(&(i + 1)) {
            continue;
        }
        eprintln!("figure {}: {name}...", i + 1);
        let t = Instant::now();
        match panic::catch_unwind(AssertUnwindSafe(|| figure(&config))) {
            Ok(figure_rows) => rows.extend(figure_rows),
            Err(e) => {
                let why = e
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| e.downcast_ref::<&str>().copied())
                    .unwrap_or("panicked");
                rows.push(Row::failed(format!("{}. {name}", i + 1), why));
            }
        }
        eprintln!("figure {} took {:.0} s", i + 1, t.elapsed().as_secs_f64());
    }

    let generated = format!(
        "Measured by `cargo bench` on {}, in {:.0} s.\n\n\
         Machine: {}.\n\n\
         Medians over runs: {} runs of figures 1, 2 and 7 ({} s measured after {} s of warm-up \
         each), {} of figures 3, 4 and the `dns` memory, {} start-ups of each binary.{}\n\n{}",
        report::now(),
        started.elapsed().as_secs_f64(),
        report::machine(),
        config.runs,
        config.duration.as_secs_f64(),
        config.warmup.as_secs_f64(),
        config.slow_runs,
        config.runs * 2 + 1,
        if config.server_args.is_empty() {
            String::new()
        } else {
            format!(" Figures 1 and 2 with `{}`.", config.server_args.join(" "))
        },
        report::table(&rows)
    );
    println!("\n{generated}");
    let canonical = config.server_args.is_empty() && config.baseline.is_none();
    if canonical && (1..=FIGURES.len()).all(|n| selected.contains(&n)) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
        match report::write_markdown(&path, &generated) {
            Ok(()) => println!("written to {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}
