//! Figure 6: the one-host attack of SPEC §11, against our binaries and, in the same run,
//! against the same code without the defences (the commit before they landed), built here.
//!
//! One host (`127.66.0.1`, one source IP) registers ten times `--max_nodes` ports with a
//! seed; then twenty honest nodes of twenty other groups register, each from its own address;
//! then a fresh node bootstraps from the seed. Every registered address answers HTTP, as an
//! attacker's listeners would. Measured: honest newcomers admitted, the attacker's share of
//! the seed's `?limit=10` answers, and of the fresh node's table after its first round.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Config;
use crate::report::{Row, median, range};
use crate::support::{self, FakePeer, TempDir, json, nodes_of, request_from, wait_until};

/// The last commit of `main` before capture resistance was wired in (the table existed,
/// unused): the same code without the defences. `SEEDMESH_BENCH_UNDEFENDED` may name a
/// directory holding such `dns` and `node` binaries instead.
const UNDEFENDED_REV: &str = "1fb14d3";

const MAX_NODES: usize = 30;
const ATTACK: u16 = 300;
const HONEST: u8 = 20;
const ATTACKER: &str = "127.66.0.1";

/// What one run measured.
struct Outcome {
    admitted: usize,
    answer_share: f64,
    table_share: f64,
}

/// The binaries under `dir`'s `release/` (ours: cargo's own).
fn bins(dir: &Path) -> (String, String) {
    let at = |name: &str| dir.join(name).display().to_string();
    (at("dns"), at("node"))
}

/// Builds the undefended binaries once (a git worktree of `UNDEFENDED_REV` under `target/`);
/// `None`, with the reason, when that cannot be done here.
fn undefended() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("SEEDMESH_BENCH_UNDEFENDED") {
        return Ok(PathBuf::from(dir));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let base = root.join("target/bench-undefended");
    let src = base.join("src");
    let bin = base.join("target/release");
    if bin.join("dns").exists() && bin.join("node").exists() {
        return Ok(bin);
    }
    let run = |command: &mut Command| -> Result<(), String> {
        let out = command.output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    if !src.exists() {
        run(Command::new("git").current_dir(root).args([
            "worktree",
            "add",
            "--detach",
            &src.display().to_string(),
            UNDEFENDED_REV,
        ]))
        .map_err(|e| format!("no git worktree of {UNDEFENDED_REV}: {e}"))?;
    }
    eprintln!("figure 6: building the undefended binaries ({UNDEFENDED_REV}), about a minute...");
    run(Command::new("cargo").current_dir(&src).args([
        "build",
        "--release",
        "--bins",
        "--quiet",
        "--target-dir",
        &base.join("target").display().to_string(),
    ]))
    .map_err(|e| format!("cannot build {UNDEFENDED_REV}: {e}"))?;
    Ok(bin)
}

/// One run of the attack against `dns` and `node`.
fn attack(dns: &str, node: &str) -> Outcome {
    let dir = TempDir::new("bench-capture");
    let max = MAX_NODES.to_string();
    let seed = support::spawn(
        dns,
        &dir.join("seed"),
        &[
            "-u",
            "86400",
            "--fail_limit",
            "1000000",
            "--max_nodes",
            &max,
        ],
    );
    // The attacker: one IP, many listening ports, registered as fast as it can.
    let listeners: Vec<FakePeer> = (0..ATTACK).map(|_| FakePeer::new(ATTACKER, "[]")).collect();
    for listener in &listeners {
        let body = json!({"ip_address": ATTACKER, "port": listener.addr.port()}).to_string();
        let _ = request_from(ATTACKER, "POST", seed.addr, "/", Some(&body), &[]);
    }
    // Twenty honest nodes of twenty other groups, each registering itself.
    let honest: Vec<FakePeer> = (1..=HONEST)
        .map(|g| FakePeer::new(&format!("127.{g}.0.1"), "[]"))
        .collect();
    let admitted = honest
        .iter()
        .filter(|peer| {
            let ip = peer.addr.ip().to_string();
            let body = json!({"ip_address": ip, "port": peer.addr.port()}).to_string();
            request_from(&ip, "POST", seed.addr, "/", Some(&body), &[]).status == 200
        })
        .count();
    // The attacker's share of the seed's answers.
    let (mut theirs, mut all) = (0, 0);
    for _ in 0..100 {
        let listed = nodes_of(&seed.get("/nodes/?limit=10").json());
        theirs += listed.iter().filter(|(ip, _)| ip == ATTACKER).count();
        all += listed.len();
    }
    // A fresh node bootstraps from the seed.
    let seed_addr = seed.addr.to_string();
    let fresh = support::spawn(
        node,
        &dir.join("fresh"),
        &["-u", "86400", "-k", "10", "--dns", &seed_addr],
    );
    wait_until(
        Duration::from_secs(30),
        "the fresh node's first round",
        || fresh.stderr().contains("round:"),
    );
    let table = fresh.nodes();
    let in_table = table.iter().filter(|(ip, _)| ip == ATTACKER).count();
    Outcome {
        admitted,
        answer_share: theirs as f64 / all.max(1) as f64,
        table_share: in_table as f64 / table.len().max(1) as f64,
    }
}

/// Figure 6: the attack, with the defences and without them, `config.slow_runs` times each.
pub fn one_host_attack(config: &Config) -> Vec<Row> {
    let ours = bins(
        Path::new(env!("CARGO_BIN_EXE_dns"))
            .parent()
            .unwrap_or(Path::new(".")),
    );
    let mut rows = Vec::new();
    let mut contenders = vec![("with the defences", Ok(PathBuf::new()))];
    contenders.push(("without them", undefended()));
    for (which, bin) in contenders {
        let (dns, node) = match bin {
            Ok(dir) if dir.as_os_str().is_empty() => ours.clone(),
            Ok(dir) => bins(&dir),
            Err(why) => {
                rows.push(Row::failed(format!("6. one-host attack, {which}"), &why));
                continue;
            }
        };
        let runs: Vec<Outcome> = (0..config.slow_runs).map(|_| attack(&dns, &node)).collect();
        let admitted: Vec<f64> = runs.iter().map(|r| r.admitted as f64).collect();
        let answers: Vec<f64> = runs.iter().map(|r| r.answer_share * 100.0).collect();
        let tables: Vec<f64> = runs.iter().map(|r| r.table_share * 100.0).collect();
        let percent = |v: f64| format!("{v:.0}%");
        let figure = |what: &str| format!("6. one host, {ATTACK} registrations, {which}: {what}");
        let defended = which == "with the defences";
        let row = |what: &str, values: &[f64], format: &dyn Fn(f64) -> String| {
            Row::new(figure(what), format(median(values))).spread(range(values, format))
        };
        let newcomers = row(
            &format!("honest newcomers of {HONEST} groups admitted"),
            &admitted,
            &|v| format!("{v:.0} of {HONEST}"),
        );
        let answer = row(
            "attacker's share of `?limit=10` answers",
            &answers,
            &percent,
        );
        let table = row(
            "attacker's share of a fresh node's table",
            &tables,
            &percent,
        );
        if defended {
            let all_in = median(&admitted) >= f64::from(HONEST);
            rows.push(newcomers.target(format!("all {HONEST}"), all_in, "some were refused"));
            rows.push(answer.at_most("≤ 10% (one of ten)", median(&answers), 10.0, percent));
            rows.push(table.at_most("≤ 10% (one of ten)", median(&tables), 10.0, percent));
        } else {
            rows.extend([newcomers, answer, table]);
        }
    }
    rows
}
