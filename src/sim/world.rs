//! The simulated processes and the world they live in: their addresses, their life
//! (alive, refused, black hole), the order they run their rounds in, and churn. How they
//! answer requests is in `serve`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::config::Identity;
use crate::membership::{MemoryStore, Rules};
use crate::nodes::{Host, Node};
use crate::policy::{DEFAULT_MAX_SOURCES, LocalRule, TokenBuckets};
use crate::routes::ApiConfig;
use crate::table::Table;
use crate::update::{NodeRole, Role, Updater};
use crate::upkeep::Upkeep;

use super::attack::Attacker;
use super::figures::{self, History, RoundFigures, Summary};
use super::hash::{FxMap, key};
use super::net::{Net, SimClock};
use super::slice::{self, InSlice};
use super::{Attack, Config};

/// A process that answers everything.
pub(crate) const ALIVE: u8 = 0;
/// A process that stopped: its port refuses connections.
pub(crate) const REFUSED: u8 = 1;
/// A host that accepts and never answers (a firewall dropping packets, a hung process).
pub(crate) const BLACK_HOLE: u8 = 2;

/// The port every simulated node listens on.
const NODE_PORT: u16 = 55000;
/// The port every simulated seed listens on.
const SEED_PORT: u16 = 42020;
/// Honest nodes are spread over this many IPv4 /16 groups (127.1–127.250).
pub(crate) const HONEST_GROUPS: u32 = 250;

/// What a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A seed server (`dns`).
    Seed,
    /// A node.
    Honest,
    /// A node that joins after the attack starts, whose table is measured.
    Observer,
    /// A node whose `GET /nodes/` answers are fabricated (`Attack::LyingPeer`).
    Liar,
}

/// Requests and bytes a process sent and received since the last measurement.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) requests_in: AtomicU64,
    pub(crate) requests_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

impl Traffic {
    /// The counts, reset to zero: `[requests in, requests out, bytes in, bytes out]`.
    pub(crate) fn take(&self) -> [u64; 4] {
        [
            self.requests_in.swap(0, Relaxed),
            self.requests_out.swap(0, Relaxed),
            self.bytes_in.swap(0, Relaxed),
            self.bytes_out.swap(0, Relaxed),
        ]
    }
}

/// One simulated process with everything the real one has: its store, its round's
/// bookkeeping, and the RNG its routes draw from. (Its traffic counters are
/// `Simulation::traffic`, and what a request to it needs first `Simulation::reach`: compact
/// arrays, as every request reads or counts its target's.)
pub(crate) struct Proc {
    pub(crate) node: Node,
    pub(crate) kind: Kind,
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) role: Role,
    pub(crate) upkeep: Mutex<Upkeep>,
    /// The RNG `routes::handle` draws from when this process answers.
    pub(crate) rng: Mutex<fastrand::Rng>,
    /// SPEC §11's per-source token buckets for new registrations (`--reg_rate 10`,
    /// `--reg_burst 100`, the defaults).
    pub(crate) buckets: Mutex<TokenBuckets>,
    /// The RNG of this process's outgoing calls: latency and loss.
    pub(crate) net: Mutex<fastrand::Rng>,
    /// `ALIVE`, `REFUSED` or `BLACK_HOLE`.
    pub(crate) life: u8,
    /// The side of a partition it is on.
    pub(crate) side: u8,
    /// Simulated time its last round took, in nanoseconds.
    pub(crate) round_ns: AtomicU64,
    /// The round it stopped answering in.
    pub(crate) died: Option<usize>,
    /// The first round at whose end no table held it any more.
    pub(crate) forgotten: Option<usize>,
}

impl Proc {
    pub(crate) fn alive(&self) -> bool {
        self.life == ALIVE
    }

    /// An honest node (observers included) that is alive.
    pub(crate) fn live_honest(&self) -> bool {
        matches!(self.kind, Kind::Honest | Kind::Observer) && self.alive()
    }
}

/// What a request to a process needs to know first: whether it answers, from which side of
/// a partition, and what it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reach {
    /// `ALIVE`, `REFUSED` or `BLACK_HOLE`.
    pub(crate) life: u8,
    pub(crate) side: u8,
    pub(crate) kind: Kind,
}

/// Where an address leads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    Proc(u32),
    /// One of the adversary's addresses.
    Sybil(u32),
}

/// A whole network: run it with `step`, one round at a time.
pub struct Simulation {
    pub(crate) config: Config,
    pub(crate) procs: Vec<Proc>,
    pub(crate) index: FxMap<u64, Target>,
    /// Each process's `life`, `side` and `kind`, side by side: every request reads its
    /// target's, and one cache line holds 21 of them.
    pub(crate) reach: Vec<Reach>,
    /// Each process's requests and bytes since the last measurement.
    pub(crate) traffic: Vec<Traffic>,
    pub(crate) attacker: Option<Attacker>,
    /// The world's own choices: the order of rounds, who leaves, which nodes are probed.
    pub(crate) rng: fastrand::Rng,
    /// Simulated time zero. Only differences of `Instant`s reach a figure.
    pub(crate) epoch: Instant,
    pub(crate) round: usize,
    /// Honest addresses handed out so far.
    made: usize,
    seeds: Vec<Node>,
    pub(super) api_seed: ApiConfig,
    pub(super) api_node: ApiConfig,
    pub(crate) history: History,
}

/// Locks a mutex that a panic may have poisoned: the simulation is single-threaded, so the
/// data is whole.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `i`-th honest node's address: 127.(1 + i mod 250).x.y, port 55000, so that honest
/// nodes fill 250 IPv4 /16 groups evenly.
fn honest_node(i: usize) -> Node {
    let i = i as u32;
    let group = 1 + (i % HONEST_GROUPS) as u8;
    let rest = i / HONEST_GROUPS;
    let ip = Ipv4Addr::new(127, group, (rest >> 8) as u8, rest as u8);
    Node {
        host: Host::Ip(IpAddr::V4(ip)),
        port: NODE_PORT,
    }
}

impl Simulation {
    /// A network of `config.nodes` nodes and `config.seeds` seeds, none of which has run a
    /// round yet.
    pub fn new(config: Config) -> Simulation {
        let api = |list_limit| ApiConfig {
            list_limit,
            verify_source: false,
            admin_token: None,
            network: None,
            app_body_limit: None,
        };
        let seeds: Vec<Node> = (0..config.seeds)
            .map(|s| Node {
                host: Host::Ip(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + s as u8))),
                port: SEED_PORT,
            })
            .collect();
        let mut sim = Simulation {
            rng: fastrand::Rng::with_seed(config.seed),
            api_seed: api(config.list_limit),
            api_node: api(config.list_limit),
            procs: Vec::new(),
            index: FxMap::default(),
            reach: Vec::new(),
            traffic: Vec::new(),
            attacker: None,
            epoch: Instant::now(),
            round: 0,
            made: 0,
            seeds: seeds.clone(),
            history: History::default(),
            config,
        };
        for seed in seeds {
            sim.add(seed, Kind::Seed);
        }
        for _ in 0..sim.config.nodes {
            sim.add_honest(Kind::Honest);
        }
        sim
    }

    /// The parameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Rounds run so far.
    pub fn rounds_run(&self) -> usize {
        self.round
    }

    fn add_honest(&mut self, kind: Kind) -> usize {
        let node = honest_node(self.made);
        self.made += 1;
        self.add(node, kind)
    }

    /// Adds a process at `node`, alive, knowing nothing (a node knows its seeds).
    pub(crate) fn add(&mut self, node: Node, kind: Kind) -> usize {
        let i = self.procs.len();
        let (max_nodes, role) = match kind {
            Kind::Seed => (self.config.seed_max_nodes, Role::Dns),
            _ => (
                self.config.max_nodes,
                Role::Node(NodeRole {
                    me: node.clone(),
                    seeds: self.seeds.clone(),
                    kn_limit: self.config.kn_limit,
                    // Seeds are given as addresses; the simulator serves no DNS (SPEC §12).
                    seed_domains: Vec::new(),
                }),
            ),
        };
        // Every simulated address is a loopback one, and every simulated process is bound to
        // one: `--allow_local auto` accepts them (SPEC §11).
        let rules = Rules {
            max_nodes,
            own: Identity::of(vec![node.clone()]),
            local: LocalRule {
                allow_local: true,
                public_only: false,
            },
            max_referred: 8,
        };
        if let Some(k) = key(&node) {
            self.index.insert(k, Target::Proc(i as u32));
        }
        self.procs.push(Proc {
            kind,
            store: Arc::new(MemoryStore::new(
                rules,
                Table::new(),
                fastrand::Rng::with_seed(self.rng.u64(..)),
            )),
            role,
            upkeep: Mutex::new(Upkeep::new(self.config.fail_limit, self.config.upd_int)),
            rng: Mutex::new(fastrand::Rng::with_seed(self.rng.u64(..))),
            buckets: Mutex::new(TokenBuckets::new(10.0, 100, DEFAULT_MAX_SOURCES)),
            net: Mutex::new(fastrand::Rng::with_seed(self.rng.u64(..))),
            life: ALIVE,
            side: 0,
            round_ns: AtomicU64::new(0),
            died: None,
            forgotten: None,
            node,
        });
        self.traffic.push(Traffic::default());
        i
    }

    /// Runs one round: this round's events (churn, black holes, partition, the attack and
    /// its observers), then every live process's `Updater::round` in a seeded random order,
    /// spread over the round's `upd_int` (one after another, or a slice at a time); then
    /// measures the round.
    pub fn step(&mut self) -> RoundFigures {
        let r = self.round;
        self.events(r);
        let mut order: Vec<usize> = (0..self.procs.len())
            .filter(|&i| self.procs[i].alive())
            .collect();
        self.rng.shuffle(&mut order);
        let interval = self.config.upd_int.as_nanos() as u64;
        let start = r as u64 * interval;
        if let Some(attacker) = &self.attacker {
            attacker.act(self, self.epoch + std::time::Duration::from_nanos(start));
        }
        let gap = interval / order.len().max(1) as u64;
        let starts: Vec<u64> = (0..order.len())
            .map(|position| start + position as u64 * gap)
            .collect();
        if self.config.slice.is_zero() {
            for (&i, &at) in order.iter().zip(&starts) {
                self.run_round(i, at, None);
            }
        } else {
            slice::run(self, &order, &starts);
        }
        let figures = figures::measure(self, r);
        self.round += 1;
        figures
    }

    /// Runs process `i`'s round from simulated time `start` (nanoseconds) on, in a slice or
    /// not.
    pub(crate) fn run_round(&self, i: usize, start: u64, slice: Option<InSlice<'_>>) {
        let proc = &self.procs[i];
        let now = AtomicU64::new(start);
        let updater = Updater {
            members: Arc::clone(&proc.store),
            transport: Net::new(self, i, &now, slice),
            clock: SimClock::new(self.epoch, &now),
            role: proc.role.clone(),
            rng: Mutex::new(fastrand::Rng::with_seed(lock(&proc.rng).u64(..))),
        };
        let mut upkeep = lock(&proc.upkeep);
        updater.round(&mut upkeep, &|| false);
        proc.round_ns.store(now.load(Relaxed) - start, Relaxed);
    }

    /// What happens at the start of round `r`.
    fn events(&mut self, r: usize) {
        if r == 1 && self.config.black_holes > 0.0 {
            let count = (self.config.nodes as f64 * self.config.black_holes).round() as usize;
            for i in self.pick_honest(count) {
                self.kill(i, BLACK_HOLE, r);
            }
        }
        if r >= 1 && self.config.churn > 0.0 {
            let live = (0..self.procs.len())
                .filter(|&i| self.procs[i].kind == Kind::Honest && self.procs[i].alive())
                .count();
            let count = (live as f64 * self.config.churn).round() as usize;
            for i in self.pick_honest(count) {
                let life = if self.rng.f64() < self.config.black_holes {
                    BLACK_HOLE
                } else {
                    REFUSED
                };
                self.kill(i, life, r);
            }
            for _ in 0..count {
                self.add_honest(Kind::Honest);
            }
        }
        if self.config.attack != Attack::None && r == self.config.attack_round {
            self.attacker = Some(Attacker::new(self));
        }
        if r == self.config.attack_round + 1 {
            for _ in 0..self.config.observers {
                self.add_honest(Kind::Observer);
            }
        }
        let cut = self
            .config
            .partition
            .is_some_and(|(from, to)| (from..to).contains(&r));
        let mut seed = 0;
        for (i, proc) in self.procs.iter_mut().enumerate() {
            let side = match proc.kind {
                _ if !cut => 0,
                Kind::Seed => {
                    seed += 1;
                    u8::from(seed > self.config.seeds.div_ceil(2))
                }
                _ => (i % 2) as u8,
            };
            proc.side = side;
        }
        self.reach = self
            .procs
            .iter()
            .map(|p| Reach {
                life: p.life,
                side: p.side,
                kind: p.kind,
            })
            .collect();
    }

    /// `count` distinct live honest nodes (not observers), chosen at random.
    fn pick_honest(&mut self, count: usize) -> Vec<usize> {
        let live: Vec<usize> = (0..self.procs.len())
            .filter(|&i| self.procs[i].kind == Kind::Honest && self.procs[i].alive())
            .collect();
        let mut chosen = self.rng.choose_multiple(live, count);
        chosen.sort_unstable();
        chosen
    }

    fn kill(&mut self, i: usize, life: u8, r: usize) {
        let proc = &mut self.procs[i];
        proc.life = life;
        proc.died = Some(r);
    }

    /// The figures of every round so far, and the summary.
    pub fn summary(&self) -> Summary {
        figures::summarize(self)
    }

    /// Every round's figures so far.
    pub fn rounds(&self) -> &[RoundFigures] {
        &self.history.rounds
    }
}
