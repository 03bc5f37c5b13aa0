//! What the simulator measures at the end of each round, and the summary of a run.
//!
//! Shares are fractions in 0..=1; times are simulated seconds; traffic is per live honest
//! node (or per seed) during the round. "Live" means answering; "dead" means a refused port,
//! a black hole, or an address where nothing exists (a lying peer's fabrication).

use std::fmt;

use crate::nodes::Node;

use super::hash::key;
use super::net::read_list;
use super::world::{Kind, Simulation, Target};

/// The figures of one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundFigures {
    /// The round, from 0.
    pub round: usize,
    /// Simulated seconds at the end of the round.
    pub time_s: f64,
    /// Live honest nodes.
    pub live: usize,
    /// Mean and largest table size of live honest nodes.
    pub known_mean: f64,
    pub known_max: usize,
    /// Share of live honest nodes that know at least `--kn_limit` live honest peers.
    pub converged: f64,
    /// The largest connected component of the "knows" graph (live honest nodes, an edge when
    /// either knows the other), as a share of live honest nodes.
    pub lcc: f64,
    /// Share of dead entries in live honest nodes' tables.
    pub dead_tables: f64,
    /// Share of dead entries in `GET /nodes/` answers of random live nodes.
    pub dead_answers: f64,
    /// Share of dead entries in the seeds' `GET /nodes/` and `?limit=10` answers.
    pub dead_seed_answers: f64,
    /// Nodes that stopped answering and are still in some table.
    pub unforgotten: usize,
    /// Requests sent and received per live honest node: mean and largest.
    pub req_out_mean: f64,
    pub req_out_max: u64,
    pub req_in_mean: f64,
    pub req_in_max: u64,
    /// KiB sent and received per live honest node: mean, and the largest received.
    pub kib_out_mean: f64,
    pub kib_in_mean: f64,
    pub kib_in_max: f64,
    /// Simulated seconds a live honest node's round took: mean and longest.
    pub round_s_mean: f64,
    pub round_s_max: f64,
    /// Nodes known to the seed that knows most.
    pub seed_known: usize,
    /// Requests per second received by the busiest seed.
    pub seed_rps: f64,
    /// Simulated seconds the slowest seed's sweep took (it keeps up while ≤ `--upd_int`).
    pub sweep_s: f64,
    /// The adversary's share (its addresses, or fabricated ones) of live honest nodes'
    /// tables, of the seeds' answers, and of the observers' tables.
    pub att_tables: f64,
    pub att_seed_answers: f64,
    pub att_observers: f64,
}

impl RoundFigures {
    /// The figures as (name, value) pairs, in the order of the line and the CSV columns.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let share = |x: f64| format!("{x:.4}");
        let real = |x: f64| format!("{x:.2}");
        vec![
            ("round", self.round.to_string()),
            ("time_s", real(self.time_s)),
            ("live", self.live.to_string()),
            ("known_mean", real(self.known_mean)),
            ("known_max", self.known_max.to_string()),
            ("converged", share(self.converged)),
            ("lcc", share(self.lcc)),
            ("dead_tables", share(self.dead_tables)),
            ("dead_answers", share(self.dead_answers)),
            ("dead_seed_answers", share(self.dead_seed_answers)),
            ("unforgotten", self.unforgotten.to_string()),
            ("req_out_mean", real(self.req_out_mean)),
            ("req_out_max", self.req_out_max.to_string()),
            ("req_in_mean", real(self.req_in_mean)),
            ("req_in_max", self.req_in_max.to_string()),
            ("kib_out_mean", real(self.kib_out_mean)),
            ("kib_in_mean", real(self.kib_in_mean)),
            ("kib_in_max", real(self.kib_in_max)),
            ("round_s_mean", real(self.round_s_mean)),
            ("round_s_max", real(self.round_s_max)),
            ("seed_known", self.seed_known.to_string()),
            ("seed_rps", real(self.seed_rps)),
            ("sweep_s", real(self.sweep_s)),
            ("att_tables", share(self.att_tables)),
            ("att_seed_answers", share(self.att_seed_answers)),
            ("att_observers", share(self.att_observers)),
        ]
    }

    /// One line: `round=3 time_s=240.00 ...`.
    pub fn line(&self) -> String {
        let fields: Vec<String> = self
            .fields()
            .into_iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        fields.join(" ")
    }
}

/// Every round's figures as CSV: a header line, then one line per round.
pub fn csv(rounds: &[RoundFigures]) -> String {
    let header: Vec<&str> = RoundFigures::default()
        .fields()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let mut text = header.join(",");
    text.push('\n');
    for round in rounds {
        let values: Vec<String> = round.fields().into_iter().map(|(_, v)| v).collect();
        text.push_str(&values.join(","));
        text.push('\n');
    }
    text
}

/// The figures of every round so far.
#[derive(Debug, Default)]
pub(crate) struct History {
    pub(crate) rounds: Vec<RoundFigures>,
}

/// What a table entry is, seen from outside.
enum Class {
    LiveHonest(usize),
    /// A seed, or a process of no interest here.
    LiveOther,
    /// The adversary's: a sybil or the lying peer.
    Adversary,
    /// Stopped answering.
    Dead(usize),
    /// Nothing exists there: fabricated.
    Nowhere,
}

fn classify(sim: &Simulation, node: &Node) -> Class {
    match key(node).and_then(|k| sim.index.get(&k)) {
        None => Class::Nowhere,
        Some(Target::Sybil(_)) => Class::Adversary,
        Some(Target::Proc(j)) => {
            let j = *j as usize;
            let proc = &sim.procs[j];
            if !proc.alive() {
                Class::Dead(j)
            } else if proc.kind == Kind::Liar {
                Class::Adversary
            } else if proc.live_honest() {
                Class::LiveHonest(j)
            } else {
                Class::LiveOther
            }
        }
    }
}

/// Counts of entries in a set of tables or answers.
#[derive(Default)]
struct Tally {
    entries: u64,
    dead: u64,
    adversary: u64,
}

impl Tally {
    fn add(&mut self, class: &Class) {
        self.entries += 1;
        match class {
            Class::Dead(_) => self.dead += 1,
            Class::Adversary => self.adversary += 1,
            Class::Nowhere => {
                self.dead += 1;
                self.adversary += 1;
            }
            Class::LiveHonest(_) | Class::LiveOther => {}
        }
    }

    fn dead_share(&self) -> f64 {
        ratio(self.dead as f64, self.entries as f64)
    }

    fn adversary_share(&self) -> f64 {
        ratio(self.adversary as f64, self.entries as f64)
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// Union-find over process indices, for the largest connected component.
struct Components(Vec<u32>);

impl Components {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] as usize != x {
            let parent = self.0[x] as usize;
            self.0[x] = self.0[parent];
            x = parent;
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.0[a.max(b)] = a.min(b) as u32;
        }
    }
}

/// Measures round `r`, just ended, and records it.
pub(crate) fn measure(sim: &mut Simulation, r: usize) -> RoundFigures {
    let answers = probe_answers(sim);
    let config = &sim.config;
    let n = sim.procs.len();
    let mut holders = vec![0u32; n];
    let mut components = Components((0..n as u32).collect());
    let (mut tables, mut observers) = (Tally::default(), Tally::default());
    let mut f = RoundFigures {
        round: r,
        time_s: ((r + 1) as f64) * config.upd_int.as_secs_f64(),
        ..RoundFigures::default()
    };
    let (mut converged, mut known_sum) = (0usize, 0usize);
    let mut traffic_sum = [0u64; 4];
    let mut round_ns_sum = 0u64;
    for (i, proc) in sim.procs.iter().enumerate() {
        let traffic = sim.traffic[i].take();
        if !proc.alive() {
            continue;
        }
        let snapshot = proc.store.snapshot();
        let table = &snapshot.table;
        let honest = proc.live_honest();
        let mut live_peers = 0;
        for node in table.iter().map(|entry| entry.node()) {
            let class = classify(sim, node);
            match class {
                Class::Dead(j) => holders[j] += 1,
                Class::LiveHonest(j) if honest => {
                    live_peers += 1;
                    components.union(i, j);
                }
                _ => {}
            }
            if honest {
                tables.add(&class);
                if proc.kind == Kind::Observer {
                    observers.add(&class);
                }
            }
        }
        let round_ns = proc.round_ns.load(std::sync::atomic::Ordering::Relaxed);
        match proc.kind {
            Kind::Seed => {
                f.seed_known = f.seed_known.max(table.len());
                f.seed_rps = f
                    .seed_rps
                    .max(traffic[0] as f64 / config.upd_int.as_secs_f64());
                f.sweep_s = f.sweep_s.max(round_ns as f64 / 1e9);
            }
            _ if honest => {
                f.live += 1;
                known_sum += table.len();
                f.known_max = f.known_max.max(table.len());
                converged += usize::from(live_peers >= config.kn_limit);
                for (sum, x) in traffic_sum.iter_mut().zip(traffic) {
                    *sum += x;
                }
                f.req_in_max = f.req_in_max.max(traffic[0]);
                f.req_out_max = f.req_out_max.max(traffic[1]);
                f.kib_in_max = f.kib_in_max.max(traffic[2] as f64 / 1024.0);
                round_ns_sum += round_ns;
                f.round_s_max = f.round_s_max.max(round_ns as f64 / 1e9);
            }
            _ => {}
        }
    }
    let live = f.live as f64;
    f.known_mean = ratio(known_sum as f64, live);
    f.converged = ratio(converged as f64, live);
    f.req_in_mean = ratio(traffic_sum[0] as f64, live);
    f.req_out_mean = ratio(traffic_sum[1] as f64, live);
    f.kib_in_mean = ratio(traffic_sum[2] as f64 / 1024.0, live);
    f.kib_out_mean = ratio(traffic_sum[3] as f64 / 1024.0, live);
    f.round_s_mean = ratio(round_ns_sum as f64 / 1e9, live);
    let mut sizes = vec![0usize; n];
    for i in 0..n {
        if sim.procs[i].live_honest() {
            let root = components.find(i);
            sizes[root] += 1;
        }
    }
    f.lcc = ratio(sizes.into_iter().max().unwrap_or(0) as f64, live);
    f.dead_tables = tables.dead_share();
    f.att_tables = tables.adversary_share();
    f.att_observers = observers.adversary_share();
    f.dead_answers = answers.nodes.dead_share();
    f.dead_seed_answers = answers.seeds.dead_share();
    f.att_seed_answers = answers.seeds.adversary_share();
    for (j, proc) in sim.procs.iter_mut().enumerate() {
        if proc.died.is_some() && proc.forgotten.is_none() {
            if holders[j] == 0 {
                proc.forgotten = Some(r);
            } else {
                f.unforgotten += 1;
            }
        }
    }
    sim.history.rounds.push(f.clone());
    f
}

/// Entries of sampled answers: from random live honest nodes, and from the seeds.
struct Answers {
    nodes: Tally,
    seeds: Tally,
}

/// Asks `--probes` random live honest nodes for `GET /nodes/`, and each live seed for
/// `GET /nodes/` once and `?limit=10` `--probes` times, as a newcomer would; the probes are
/// not counted as traffic.
fn probe_answers(sim: &mut Simulation) -> Answers {
    let live: Vec<usize> = (0..sim.procs.len())
        .filter(|&i| sim.procs[i].live_honest())
        .collect();
    let asked = sim.rng.choose_multiple(live, sim.config.probes);
    let asker = std::net::IpAddr::from([127, 0, 0, 1]);
    let mut answers = Answers {
        nodes: Tally::default(),
        seeds: Tally::default(),
    };
    let sim = &*sim;
    let now = sim.epoch + sim.config.upd_int * (sim.round as u32 + 1);
    let ask = |tally: &mut Tally, j: usize, target: &str| {
        let response = sim.serve(j, "GET", target, None, asker, now);
        if let Ok(list) = read_list(response.body) {
            for node in &list.nodes {
                tally.add(&classify(sim, node));
            }
        }
    };
    for j in asked {
        ask(&mut answers.nodes, j, "/nodes/");
    }
    for j in 0..sim.procs.len() {
        if sim.procs[j].kind == Kind::Seed && sim.procs[j].alive() {
            ask(&mut answers.seeds, j, "/nodes/");
            for _ in 0..sim.config.probes {
                ask(&mut answers.seeds, j, "/nodes/?limit=10");
            }
        }
    }
    answers
}

/// The summary of a run: the last line of `simulate`'s output.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// (name, value) pairs, in order.
    pub fields: Vec<(&'static str, String)>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sim:")?;
        for (name, value) in &self.fields {
            write!(f, " {name}={value}")?;
        }
        Ok(())
    }
}

impl Summary {
    /// The value of `name`, if the summary has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The nearest-rank `q` quantile of `sorted`.
fn quantile(sorted: &[usize], q: f64) -> String {
    if sorted.is_empty() {
        return "none".into();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].to_string()
}

pub(crate) fn summarize(sim: &Simulation) -> Summary {
    let config = &sim.config;
    let rounds = &sim.history.rounds;
    let last = rounds.last().cloned().unwrap_or_default();
    let peak = |get: fn(&RoundFigures) -> f64| rounds.iter().map(get).fold(0.0, f64::max);
    let converged_round = rounds
        .iter()
        .find(|f| f.converged >= 0.99)
        .map_or("never".into(), |f| f.round.to_string());
    let mut forget: Vec<usize> = sim
        .procs
        .iter()
        .filter_map(|p| Some(p.forgotten? + 1 - p.died?))
        .collect();
    forget.sort_unstable();
    let died = sim.procs.iter().filter(|p| p.died.is_some()).count();
    let sweep_peak = peak(|f| f.sweep_s);
    let share = |x: f64| format!("{x:.4}");
    let real = |x: f64| format!("{x:.2}");
    let fields = vec![
        ("nodes", config.nodes.to_string()),
        ("seeds", config.seeds.to_string()),
        ("rounds", rounds.len().to_string()),
        ("churn", config.churn.to_string()),
        ("attack", config.attack.to_string()),
        ("seed", config.seed.to_string()),
        ("kn_limit", config.kn_limit.to_string()),
        ("max_nodes", config.max_nodes.to_string()),
        (
            "partition",
            config
                .partition
                .map_or("none".into(), |(from, to)| format!("{from}:{to}")),
        ),
        ("loss", config.loss.to_string()),
        ("black_holes", config.black_holes.to_string()),
        ("latency_ms", config.latency.as_millis().to_string()),
        ("converged_round", converged_round),
        ("converged", share(last.converged)),
        ("lcc", share(last.lcc)),
        ("known_mean", real(last.known_mean)),
        ("died", died.to_string()),
        ("forget_rounds_p50", quantile(&forget, 0.5)),
        ("forget_rounds_p99", quantile(&forget, 0.99)),
        ("forget_rounds_max", quantile(&forget, 1.0)),
        ("unforgotten", last.unforgotten.to_string()),
        ("req_out_mean", real(last.req_out_mean)),
        ("req_out_peak", real(peak(|f| f.req_out_mean))),
        ("req_in_max_peak", real(peak(|f| f.req_in_max as f64))),
        ("kib_out_mean", real(last.kib_out_mean)),
        ("kib_in_max_peak", real(peak(|f| f.kib_in_max))),
        ("round_s_max_peak", real(peak(|f| f.round_s_max))),
        ("seed_rps_peak", real(peak(|f| f.seed_rps))),
        ("sweep_s_peak", real(sweep_peak)),
        (
            "sweep_keeps_up",
            (sweep_peak <= config.upd_int.as_secs_f64()).to_string(),
        ),
        ("dead_tables", share(last.dead_tables)),
        ("dead_answers", share(last.dead_answers)),
        ("dead_answers_peak", share(peak(|f| f.dead_answers))),
        ("dead_seed_answers", share(last.dead_seed_answers)),
        ("att_tables", share(last.att_tables)),
        ("att_seed_answers", share(last.att_seed_answers)),
        ("att_observers", share(last.att_observers)),
    ];
    Summary { fields }
}
