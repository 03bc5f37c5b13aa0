//! `cargo run --release --example simulate -- --nodes 10000 --rounds 100 --seed 1`: runs a
//! deterministic simulation of a seedmesh network (`seedmesh::sim`, SIMULATION.md), prints
//! one line per round and a last `sim: key=value ...` line, and writes the figures as CSV and
//! SVG plots under `target/sim/`. One `--seed` gives byte-identical stdout, CSV and SVG;
//! wall-clock time appears only on stderr.
//!
//! `--compare A.csv,B.csv --labels a,b --columns x,y --svg OUT.svg` instead plots columns of
//! earlier runs side by side (the before/after figures of SIMULATION.md).
#![forbid(unsafe_code)]

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use seedmesh::sim::{Attack, Config, RoundFigures, Simulation, figures};

fn help() -> String {
    let d = Config::default();
    format!(
        "simulate: a deterministic simulation of a seedmesh network (SIMULATION.md)

USAGE: cargo run --release --example simulate -- [FLAGS]

Network:
  --nodes N            honest nodes at the start [default: {nodes}]
  --seeds N            seed servers [default: {seeds}]
  --rounds N           rounds of --upd_int simulated seconds [default: {rounds}]
  --churn F            share of live nodes replaced by newcomers each round [default: {churn}]
  --black_holes F      share of nodes that turn into black holes after round 0, and of
                       churn departures that leave one [default: {black_holes}]
  --loss F             probability that a request is lost (a timeout) [default: {loss}]
  --latency_ms MS      round-trip time; a request costs two [default: {latency}]
  --partition A:B      cut the network in two during rounds A..B [default: none]
  --seed N             seed of every random choice [default: {seed}]

Adversary (SPEC §11):
  --attack KIND        none, one-host, one-group, lying-peer [default: none]
  --attack_size N      addresses of a one-host or one-group attacker [default: {attack_size}]
  --attack_round N     round the attack starts [default: {attack_round}]
  --observers N        honest newcomers joining a round later, whose tables are measured
                       [default: {observers}]

Settings of the simulated processes (SPEC §8):
  --kn_limit N         nodes' --kn_limit [default: {kn_limit}]
  --max_nodes N        nodes' --max_nodes [default: {max_nodes}]
  --seed_max_nodes N   seeds' --max_nodes [default: {seed_max_nodes}]
  --list_limit N       --list_limit [default: {list_limit}]
  --fail_limit N       --fail_limit [default: {fail_limit}]
  --upd_int SECONDS    --upd_int [default: {upd_int}]
  --timeout SECONDS    nodes' --timeout [default: {timeout}]
  --check_threads N    nodes' --check_threads [default: {check_threads}]
  --seed_timeout S     seeds' --timeout [default: {seed_timeout}]
  --seed_check_threads N  seeds' --check_threads [default: {seed_check_threads}]

Speed (SIMULATION.md, \"Speed\"):
  --slice_ms MS        the processes whose rounds start within one slice of this many
                       simulated milliseconds run at once, each against the others' tables
                       as the slice found them; their changes to others are made at the
                       slice's end. 0: one process at a time (the sequential model)
                       [default: {slice_ms}]
  --threads N          threads running a slice; the output is the same for any number
                       [default: the machine's cores]

Output:
  --probes N           answers sampled per round for the answer figures [default: {probes}]
  --out DIR            where the CSV and SVG go [default: target/sim]
  --name NAME          file name stem [default: made of the main flags]
  --quiet              no per-round lines on stdout (the summary still comes)

Compare earlier runs:
  --compare A.csv,B.csv --labels a,b --columns c1,c2 --svg OUT.svg [--title T]
",
        nodes = d.nodes,
        seeds = d.seeds,
        rounds = d.rounds,
        churn = d.churn,
        black_holes = d.black_holes,
        loss = d.loss,
        latency = d.latency.as_millis(),
        seed = d.seed,
        attack_size = d.attack_size,
        attack_round = d.attack_round,
        observers = d.observers,
        kn_limit = d.kn_limit,
        max_nodes = d.max_nodes,
        seed_max_nodes = d.seed_max_nodes,
        list_limit = d.list_limit,
        fail_limit = d.fail_limit,
        upd_int = d.upd_int.as_secs_f64(),
        timeout = d.timeout.as_secs_f64(),
        check_threads = d.check_threads,
        seed_timeout = d.seed_timeout.as_secs_f64(),
        seed_check_threads = d.seed_check_threads,
        probes = d.probes,
        slice_ms = d.slice.as_millis(),
    )
}

type Result<T> = std::result::Result<T, Box<dyn Error>>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulate: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The files' name: the flags that shape the network, those at their defaults left out
/// (`n1000-s2-r20-c0.02-none-seed1`, `…-p5_10-loss0.05`), so that different runs do not
/// overwrite each other's files.
fn run_name(config: &Config) -> String {
    let d = Config::default();
    let mut name = format!(
        "n{}-s{}-r{}-c{}-{}-seed{}",
        config.nodes, config.seeds, config.rounds, config.churn, config.attack, config.seed
    );
    if let Some((from, to)) = config.partition {
        name += &format!("-p{from}_{to}");
    }
    for ((key, value), (_, default)) in extras(config).into_iter().zip(extras(&d)) {
        if value != default {
            name += &format!("-{key}{value}");
        }
    }
    name
}

/// The flags a file name carries when they differ from their defaults: (key, value as
/// written in the name).
fn extras(c: &Config) -> [(&'static str, String); 18] {
    let seconds = |d: Duration| d.as_secs_f64().to_string();
    [
        ("loss", c.loss.to_string()),
        ("bh", c.black_holes.to_string()),
        ("k", c.kn_limit.to_string()),
        ("max", c.max_nodes.to_string()),
        ("smax", c.seed_max_nodes.to_string()),
        ("lat", c.latency.as_millis().to_string()),
        ("u", seconds(c.upd_int)),
        ("slice", c.slice.as_millis().to_string()),
        ("f", c.fail_limit.to_string()),
        ("list", c.list_limit.to_string()),
        ("t", seconds(c.timeout)),
        ("ct", c.check_threads.to_string()),
        ("st", seconds(c.seed_timeout)),
        ("sct", c.seed_check_threads.to_string()),
        ("as", c.attack_size.to_string()),
        ("ar", c.attack_round.to_string()),
        ("obs", c.observers.to_string()),
        ("pr", c.probes.to_string()),
    ]
}

/// The value of `flag` read by `parse`, or none when it is not given. An error names the
/// flag; a flag given twice is an error (the last would otherwise be taken silently).
fn flag<T>(
    args: &mut pico_args::Arguments,
    flag: &'static str,
    parse: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    let values: Vec<String> = args.values_from_str(flag)?;
    match values.as_slice() {
        [] => Ok(None),
        [one] => match parse(one) {
            Ok(value) => Ok(Some(value)),
            Err(why) => Err(format!("invalid value {one:?} for {flag}: {why}").into()),
        },
        _ => Err(format!("{flag} is repeated; give it once").into()),
    }
}

/// A whole number in `min..=max`.
fn whole<T>(min: T, max: T) -> impl Fn(&str) -> std::result::Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    move |text| match text.parse::<T>() {
        Ok(n) if n >= min && n <= max => Ok(n),
        _ => Err(format!("expected a whole number from {min} to {max}")),
    }
}

/// A whole number of at least `min`.
fn at_least<T>(min: T) -> impl Fn(&str) -> std::result::Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    move |text| match text.parse::<T>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("expected a whole number, at least {min}")),
    }
}

/// Seconds in `min..=max`, fractions allowed.
fn seconds(min: f64, max: f64) -> impl Fn(&str) -> std::result::Result<Duration, String> {
    move |text| match text.parse::<f64>() {
        Ok(x) if (min..=max).contains(&x) => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!("expected a number of seconds from {min} to {max}")),
    }
}

fn share(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("expected a share from 0 to 1".into()),
    }
}

fn rounds_range(text: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || "expected A:B, rounds with A < B".to_string();
    let (a, b) = text.split_once(':').ok_or_else(bad)?;
    let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a < b { Ok((a, b)) } else { Err(bad()) }
}

fn file_stem(text: &str) -> std::result::Result<String, String> {
    if text.is_empty() || text.contains(['/', '\\']) || text.starts_with('.') {
        return Err("expected a file name without a directory".into());
    }
    Ok(text.to_owned())
}

fn run() -> Result<()> {
    let mut args = pico_args::Arguments::from_env();
    if args.contains(["-h", "--help"]) {
        print!("{}", help());
        return Ok(());
    }
    if let Some(files) = args.opt_value_from_str::<_, String>("--compare")? {
        return compare(args, &files);
    }
    let d = Config::default();
    let config = Config {
        nodes: flag(&mut args, "--nodes", at_least(1))?.unwrap_or(d.nodes),
        seeds: flag(&mut args, "--seeds", whole(1, 250))?.unwrap_or(d.seeds),
        rounds: flag(&mut args, "--rounds", at_least(1))?.unwrap_or(d.rounds),
        churn: flag(&mut args, "--churn", share)?.unwrap_or(d.churn),
        attack: flag(&mut args, "--attack", |t| t.parse::<Attack>())?.unwrap_or(d.attack),
        seed: flag(&mut args, "--seed", at_least(0))?.unwrap_or(d.seed),
        kn_limit: flag(&mut args, "--kn_limit", at_least(1))?.unwrap_or(d.kn_limit),
        max_nodes: flag(&mut args, "--max_nodes", at_least(1))?.unwrap_or(d.max_nodes),
        seed_max_nodes: flag(&mut args, "--seed_max_nodes", at_least(1))?
            .unwrap_or(d.seed_max_nodes),
        list_limit: flag(&mut args, "--list_limit", at_least(1))?.unwrap_or(d.list_limit),
        fail_limit: flag(&mut args, "--fail_limit", at_least(1))?.unwrap_or(d.fail_limit),
        // The binaries' bounds (SPEC §8): a round of 0 s would never end.
        upd_int: flag(&mut args, "--upd_int", seconds(0.1, 86400.0))?.unwrap_or(d.upd_int),
        timeout: flag(&mut args, "--timeout", seconds(0.001, 3600.0))?.unwrap_or(d.timeout),
        check_threads: flag(&mut args, "--check_threads", at_least(1))?.unwrap_or(d.check_threads),
        seed_timeout: flag(&mut args, "--seed_timeout", seconds(0.001, 3600.0))?
            .unwrap_or(d.seed_timeout),
        seed_check_threads: flag(&mut args, "--seed_check_threads", at_least(1))?
            .unwrap_or(d.seed_check_threads),
        black_holes: flag(&mut args, "--black_holes", share)?.unwrap_or(d.black_holes),
        loss: flag(&mut args, "--loss", share)?.unwrap_or(d.loss),
        latency: flag(&mut args, "--latency_ms", whole(0, 600_000))?
            .map_or(d.latency, Duration::from_millis),
        partition: flag(&mut args, "--partition", rounds_range)?,
        attack_size: flag(&mut args, "--attack_size", at_least(1))?.unwrap_or(d.attack_size),
        attack_round: flag(&mut args, "--attack_round", at_least(0))?.unwrap_or(d.attack_round),
        observers: flag(&mut args, "--observers", at_least(0))?.unwrap_or(d.observers),
        probes: flag(&mut args, "--probes", at_least(0))?.unwrap_or(d.probes),
        slice: flag(&mut args, "--slice_ms", whole(0, 600_000))?
            .map_or(d.slice, Duration::from_millis),
        threads: flag(&mut args, "--threads", whole(1, 1024))?
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let out: PathBuf = flag(&mut args, "--out", |t| Ok(PathBuf::from(t)))?
        .unwrap_or_else(|| PathBuf::from("target/sim"));
    let name = match flag(&mut args, "--name", file_stem)? {
        Some(name) => name,
        None => run_name(&config),
    };
    let quiet = args.contains("--quiet");
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("unknown argument {:?}; see --help", rest[0]).into());
    }
    // Before minutes of simulation, not after: the directory must take the files.
    fs::create_dir_all(&out).map_err(|e| format!("--out {}: {e}", out.display()))?;

    let rounds = config.rounds;
    let started = Instant::now();
    let mut last_progress = started;
    let mut sim = Simulation::new(config);
    for r in 0..rounds {
        let figures = sim.step();
        if !quiet {
            println!("{}", figures.line());
        }
        if last_progress.elapsed() >= Duration::from_secs(5) || r + 1 == rounds {
            last_progress = Instant::now();
            eprintln!(
                "simulate: round {}/{rounds}, {} live nodes, wall {:.1} s",
                r + 1,
                figures.live,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let summary = sim.summary();
    println!("{summary}");
    let csv_path = out.join(format!("{name}.csv"));
    fs::write(&csv_path, figures::csv(sim.rounds()))
        .map_err(|e| format!("{}: {e}", csv_path.display()))?;
    let svg_path = out.join(format!("{name}.svg"));
    plot_run(&svg_path, &name, sim.rounds(), sim.config())?;
    eprintln!(
        "simulate: wrote {} and {}; wall {:.1} s",
        csv_path.display(),
        svg_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One series of a panel: its label and its points (round, value).
type Series = (String, Vec<(f64, f64)>);

/// One run's figures as six panels in one SVG.
fn plot_run(path: &Path, title: &str, rounds: &[RoundFigures], config: &Config) -> Result<()> {
    let column = |get: fn(&RoundFigures) -> f64| -> Vec<(f64, f64)> {
        rounds.iter().map(|f| (f.round as f64, get(f))).collect()
    };
    let upd_int = config.upd_int.as_secs_f64();
    let panels: Vec<(&str, Vec<Series>)> = vec![
        (
            "convergence (share of live nodes)",
            vec![
                ("knows ≥ kn_limit live".into(), column(|f| f.converged)),
                ("largest component".into(), column(|f| f.lcc)),
            ],
        ),
        (
            "dead entries (share)",
            vec![
                ("in tables".into(), column(|f| f.dead_tables)),
                ("in node answers".into(), column(|f| f.dead_answers)),
                ("in seed answers".into(), column(|f| f.dead_seed_answers)),
            ],
        ),
        (
            "requests per node per round",
            vec![
                ("out, mean".into(), column(|f| f.req_out_mean)),
                ("in, mean".into(), column(|f| f.req_in_mean)),
                ("in, max".into(), column(|f| f.req_in_max as f64)),
            ],
        ),
        (
            "KiB per node per round",
            vec![
                ("out, mean".into(), column(|f| f.kib_out_mean)),
                ("in, mean".into(), column(|f| f.kib_in_mean)),
                ("in, max".into(), column(|f| f.kib_in_max)),
            ],
        ),
        (
            "seed: sweep seconds, requests/s",
            vec![
                ("sweep s".into(), column(|f| f.sweep_s)),
                (
                    "--upd_int".into(),
                    rounds.iter().map(|f| (f.round as f64, upd_int)).collect(),
                ),
                ("requests/s".into(), column(|f| f.seed_rps)),
            ],
        ),
        (
            "adversary's share",
            vec![
                ("of node tables".into(), column(|f| f.att_tables)),
                ("of seed answers".into(), column(|f| f.att_seed_answers)),
                ("of newcomers' tables".into(), column(|f| f.att_observers)),
            ],
        ),
    ];
    draw(path, title, (3, 2), &panels)
}

/// Draws `panels` on a grid of `(rows, columns)` in one SVG file.
fn draw(
    path: &Path,
    title: &str,
    grid: (usize, usize),
    panels: &[(&str, Vec<Series>)],
) -> Result<()> {
    let size = (560 * grid.1 as u32, 300 * grid.0 as u32 + 40);
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (area, (caption, series)) in root.split_evenly(grid).iter().zip(panels) {
        let x_max = series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|p| p.0))
            .fold(1.0, f64::max);
        let y_max = series
            .iter()
            .flat_map(|(_, points)| points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        let y_max = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
        let mut chart = ChartBuilder::on(area)
            .caption(*caption, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("round")
            .disable_x_mesh()
            .disable_y_mesh()
            .x_labels(6)
            .y_labels(6)
            .draw()?;
        for (i, (label, points)) in series.iter().enumerate() {
            let color = colors[i % colors.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// `--compare`: columns of earlier runs' CSV files, one panel per column, one line per run.
fn compare(mut args: pico_args::Arguments, files: &str) -> Result<()> {
    let files: Vec<&str> = files.split(',').collect();
    let labels: String = args.value_from_str("--labels")?;
    let labels: Vec<&str> = labels.split(',').collect();
    let columns: String = args.value_from_str("--columns")?;
    let columns: Vec<&str> = columns.split(',').collect();
    let svg: PathBuf = args.value_from_str("--svg")?;
    let title: String = args
        .opt_value_from_str("--title")?
        .unwrap_or_else(|| columns.join(", "));
    let rest = args.finish();
    if !rest.is_empty() {
        return Err(format!("{:?} does not apply to --compare; see --help", rest[0]).into());
    }
    if labels.len() != files.len() {
        return Err("--labels needs one label per --compare file".into());
    }
    let mut runs = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
        let mut rows: Vec<Vec<f64>> = Vec::new();
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let row: Vec<f64> = line
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| format!("{file} line {}: {e}", i + 2))?;
            if row.len() != header.len() {
                return Err(format!("{file} line {}: not {} columns", i + 2, header.len()).into());
            }
            rows.push(row);
        }
        runs.push((
            header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            rows,
        ));
    }
    let mut panels = Vec::new();
    for column in &columns {
        let mut series = Vec::new();
        for ((header, rows), label) in runs.iter().zip(&labels) {
            let at = header
                .iter()
                .position(|h| h == column)
                .ok_or_else(|| format!("no column {column} in a --compare file"))?;
            let points = rows.iter().map(|row| (row[0], row[at])).collect();
            series.push((label.to_string(), points));
        }
        panels.push((*column, series));
    }
    if let Some(parent) = svg.parent() {
        fs::create_dir_all(parent)?;
    }
    draw(&svg, &title, (1, panels.len()), &panels)?;
    eprintln!("simulate: wrote {}", svg.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> pico_args::Arguments {
        pico_args::Arguments::from_vec(list.iter().map(Into::into).collect())
    }

    fn error<T: std::fmt::Debug>(result: Result<T>) -> String {
        result.expect_err("an error").to_string()
    }

    #[test]
    fn a_flag_error_names_the_flag_and_a_repeated_flag_is_refused() {
        let rounds = |list: &[&str]| flag(&mut args(list), "--upd_int", seconds(0.1, 86400.0));
        assert_eq!(
            error(rounds(&["--upd_int", "0"])),
            r#"invalid value "0" for --upd_int: expected a number of seconds from 0.1 to 86400"#
        );
        assert_eq!(
            error(rounds(&["--upd_int", "1", "--upd_int", "2"])),
            "--upd_int is repeated; give it once"
        );
        assert_eq!(
            rounds(&["--upd_int", "0.5"]).unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(rounds(&[]).unwrap(), None);
        let nodes = flag(&mut args(&["--nodes", "abc"]), "--nodes", at_least(1usize));
        assert!(error(nodes).contains("for --nodes: expected a whole number, at least 1"));
        assert!(rounds_range("10:5").is_err() && rounds_range("5:10") == Ok((5, 10)));
        assert!(file_stem("../x").is_err() && file_stem("run-1").is_ok());
    }

    #[test]
    fn runs_that_differ_get_files_of_their_own() {
        let plain = Config::default();
        let cut = Config {
            partition: Some((5, 10)),
            loss: 0.05,
            ..Config::default()
        };
        assert_eq!(run_name(&plain), "n1000-s2-r30-c0-none-seed1");
        assert_eq!(run_name(&cut), "n1000-s2-r30-c0-none-seed1-p5_10-loss0.05");
    }
}
