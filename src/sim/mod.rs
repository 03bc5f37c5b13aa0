//! A deterministic simulation of a whole seedmesh network in one process (issue 12,
//! SIMULATION.md): thousands of seeds and nodes, each running the real decision logic —
//! `routes::handle` for every request it receives, `Rules::apply` through a `MemoryStore`
//! for every change, and `Updater::round` (the seed's sweep, the node's three-step cycle,
//! with its `Upkeep`) for its rounds — against an in-memory network and a simulated clock.
//!
//! Nothing here decides what a process does; it only decides what the network does:
//! - `net`: the in-memory `Transport` (latency, loss, refused ports, black holes,
//!   partitions; a round's time is the makespan of its calls on `--check_threads` virtual
//!   threads) and the simulated `Clock`;
//! - `world`: the processes, their addresses, and the server glue that turns a request into
//!   `routes::handle`'s decision and commits it;
//! - `slice`: running the processes of one slice of a round at once, on several threads,
//!   deterministically (the changes their requests make wait for the slice's end);
//! - `attack`: the adversaries of SPEC §11 (one host, one address group, a lying peer);
//! - `figures`: what is measured each round, as lines, CSV and a summary.
//!
//! Determinism: every random choice comes from a `fastrand::Rng` derived from `Config::seed`,
//! processes run in a seeded order (one after another, or a slice at a time with every
//! change to another process made at the slice's end in that order), no thread's timing
//! and no `HashMap` order reaches a figure, and no wall-clock time is measured. One seed
//! gives the same figures, byte for byte, on any number of threads.

mod attack;
mod crew;
pub mod figures;
mod hash;
mod net;
mod serve;
mod slice;
mod world;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use figures::{RoundFigures, Summary};
pub use world::Simulation;

/// Which adversary of SPEC §11 joins the network at `Config::attack_round`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attack {
    /// No adversary.
    None,
    /// One IP address registering `attack_size` ports with every seed, every round; each
    /// of its addresses answers checks and lists only its own (Heilman et al. 2015).
    OneHost,
    /// `attack_size` IP addresses of one IPv4 /16, one port each, otherwise as `OneHost`.
    OneGroup,
    /// One peer that behaves as a node but answers every `GET /nodes/` with 1,000 freshly
    /// fabricated addresses where nothing listens (SPEC §11's "lying peer").
    LyingPeer,
}

impl Attack {
    /// The attack's name on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Attack::None => "none",
            Attack::OneHost => "one-host",
            Attack::OneGroup => "one-group",
            Attack::LyingPeer => "lying-peer",
        }
    }
}

impl fmt::Display for Attack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Attack {
    type Err = String;

    fn from_str(text: &str) -> Result<Attack, String> {
        match text {
            "none" => Ok(Attack::None),
            "one-host" => Ok(Attack::OneHost),
            "one-group" => Ok(Attack::OneGroup),
            "lying-peer" => Ok(Attack::LyingPeer),
            other => Err(format!(
                "unknown attack {other:?}: none, one-host, one-group or lying-peer"
            )),
        }
    }
}

/// A simulation's parameters. `Default` gives the binaries' defaults (SPEC §8) for a
/// 1,000-node network with two seeds.
#[derive(Debug, Clone)]
pub struct Config {
    /// Honest nodes at the start; all join in round 0, knowing only the seeds.
    pub nodes: usize,
    /// Seed servers (`dns`), each known to every node.
    pub seeds: usize,
    /// Rounds to run; one round is `upd_int` of simulated time.
    pub rounds: usize,
    /// Share of live honest nodes that leave at the start of each round from round 1 on,
    /// replaced by as many newcomers (fresh addresses, knowing only the seeds).
    pub churn: f64,
    /// The adversary.
    pub attack: Attack,
    /// The seed of every random choice.
    pub seed: u64,
    /// Nodes: `--kn_limit`.
    pub kn_limit: usize,
    /// Nodes: `--max_nodes`.
    pub max_nodes: usize,
    /// Seeds: `--max_nodes`.
    pub seed_max_nodes: usize,
    /// Both: `--list_limit`.
    pub list_limit: usize,
    /// Both: `--fail_limit`.
    pub fail_limit: u32,
    /// Both: `--upd_int`, the length of a round.
    pub upd_int: Duration,
    /// Nodes: `--timeout`; what a check of a black hole or a lost request costs.
    pub timeout: Duration,
    /// Nodes: `--check_threads`, the virtual threads a round's calls run on.
    pub check_threads: usize,
    /// Seeds: `--timeout`.
    pub seed_timeout: Duration,
    /// Seeds: `--check_threads`.
    pub seed_check_threads: usize,
    /// Share of the initial nodes that become black holes (accept, never answer) after
    /// round 0, once they have registered; also the share of churn departures that leave
    /// a black hole rather than a refused port.
    pub black_holes: f64,
    /// Probability that a request is lost (fails as a timeout).
    pub loss: f64,
    /// Round-trip time of the network; a request costs two (connect, then the exchange),
    /// a refused connection one, each scaled by a random factor in 0.5..1.5.
    pub latency: Duration,
    /// Rounds `[from, to)` during which the network is cut in two: odd-numbered nodes and
    /// the second half of the seeds cannot reach the others (requests across time out).
    pub partition: Option<(usize, usize)>,
    /// Addresses the adversary registers (one-host, one-group).
    pub attack_size: usize,
    /// First round of the attack.
    pub attack_round: usize,
    /// Honest newcomers that join one round after the attack starts; the attacker's share
    /// of their tables is measured.
    pub observers: usize,
    /// `GET /nodes/` answers sampled each round (from random live nodes, and `?limit=10`
    /// from each seed) to measure dead and attacker entries in answers.
    pub probes: usize,
    /// Simulated time of one slice of a round (`--slice_ms`, default 100 ms: no longer than
    /// one answered request takes at the default latency). The processes whose rounds start
    /// within one slice run at once, each against the others' tables as the slice found
    /// them; the changes their requests make to others' tables (registrations) are made at
    /// the slice's end, in the order of the rounds (see `slice`). Zero: the sequential
    /// model, one process at a time, every change seen at once by the next request.
    pub slice: Duration,
    /// Threads that run a slice's processes (`--threads`, at least 1). Only the speed
    /// depends on it: one seed gives the same output on any number of threads.
    pub threads: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            nodes: 1000,
            seeds: 2,
            rounds: 30,
            churn: 0.0,
            attack: Attack::None,
            seed: 1,
            kn_limit: 10,
            max_nodes: 1000,
            seed_max_nodes: 10_000,
            list_limit: 1000,
            fail_limit: 1,
            upd_int: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            check_threads: 64,
            seed_timeout: Duration::from_secs(2),
            seed_check_threads: 1024,
            black_holes: 0.0,
            loss: 0.0,
            latency: Duration::from_millis(50),
            partition: None,
            attack_size: 10_000,
            attack_round: 1,
            observers: 10,
            probes: 20,
            slice: Duration::from_millis(100),
            threads: 1,
        }
    }
}
