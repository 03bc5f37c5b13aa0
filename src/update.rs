//! The update thread: the seed's sweep (SPEC §6) and the node's cycle (SPEC §7). Both run a
//! round at once, then one every `--upd_int` seconds ±10%, sleeping on the stop channel so
//! that a stop wakes them at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime};

use crate::nodes::Node;
use crate::peers::{PeerError, Peers, parallel};
use crate::stats::{Round, Stats};
use crate::store::{Change, Outcome, Store};

/// What the update thread works with.
pub struct Updater {
    pub store: Arc<Store>,
    pub stats: Arc<Stats>,
    pub peers: Peers,
    /// Time between rounds, before jitter.
    pub interval: Duration,
    pub check_threads: usize,
    /// Consecutive failed checks before a node is removed.
    pub fail_limit: u32,
}

/// What a round does.
pub enum Role {
    /// The seed: check every known node with `GET /`.
    Dns,
    /// A node: check by announcing itself, then exchange, then ask the seeds.
    Node(NodeRole),
}

pub struct NodeRole {
    /// This node, as announced to others.
    pub me: Node,
    pub seeds: Vec<Node>,
    /// Known nodes wanted before the exchange and seed steps are skipped.
    pub kn_limit: usize,
}

/// What the update thread remembers between rounds.
#[derive(Default)]
struct Memory {
    /// Consecutive failed checks of each known node that failed its last check.
    failures: HashMap<Node, u32>,
    /// Nodes removed as dead, and until when they may not be learned back from others.
    /// Without this, a dead node removed here comes straight back from a peer that has not
    /// checked it yet, and dead nodes circulate for ever. A node that really returns is
    /// re-added at once when it announces itself (`POST /`), which this does not filter.
    removed: HashMap<Node, Instant>,
}

/// Runs rounds until `stop` receives a message or its sender is dropped.
pub fn run(updater: &Updater, role: &Role, stop: &Receiver<()>) {
    let mut memory = Memory::default();
    loop {
        let started = Instant::now();
        memory.removed.retain(|_, until| *until > started);
        let mut round = Round::default();
        match role {
            Role::Dns => updater.sweep(&mut round, &mut memory),
            Role::Node(node) => updater.cycle(node, &mut round, &mut memory, stop),
        }
        round.known = updater.store.snapshot().nodes.len();
        round.duration = started.elapsed();
        round.ended = SystemTime::now();
        log::info!(
            "round: checked {}, failed {}, removed {}, learned {}, known {}, in {} ms",
            round.checked,
            round.failed,
            round.removed,
            round.learned,
            round.known,
            round.duration.as_millis()
        );
        updater.stats.record_round(&round);
        match stop.recv_timeout(jittered(updater.interval)) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// `interval` ±10%, so that processes started together do not probe in lockstep.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

fn stopped(stop: &Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(TryRecvError::Empty))
}

impl Updater {
    /// The seed's round: `GET /` every known node, remove the ones that failed too often.
    fn sweep(&self, round: &mut Round, memory: &mut Memory) {
        let known = self.store.snapshot().nodes.as_slice().to_vec();
        let results = parallel(&known, self.check_threads, |node| self.peers.probe(node));
        self.settle(&known, results, round, memory);
    }

    /// The node's cycle (SPEC §7).
    fn cycle(&self, role: &NodeRole, round: &mut Round, memory: &mut Memory, stop: &Receiver<()>) {
        let me = serde_json::to_vec(&role.me).unwrap_or_default();

        // 1. Check: announce ourselves to every known node, and register with every seed,
        //    all at once.
        let known = self.store.snapshot().nodes.as_slice().to_vec();
        let targets: Vec<&Node> = known.iter().chain(&role.seeds).collect();
        let mut results = parallel(&targets, self.check_threads, |node| {
            self.peers.announce(node, &me)
        });
        for (seed, result) in role.seeds.iter().zip(results.split_off(known.len())) {
            match result {
                Ok(()) => log::debug!("registered with seed {seed}"),
                Err(e) => log::warn!("seed {seed}: {e}; retrying next cycle"),
            }
        }
        self.settle(&known, results, round, memory);
        if self.enough(role) || stopped(stop) {
            return;
        }

        // 2. Exchange: ask every known node for its peers.
        let known = self.store.snapshot().nodes.as_slice().to_vec();
        let lists = parallel(&known, self.check_threads, |node| {
            self.peers.fetch_nodes(node)
        });
        round.learned += self.learn(known.iter().zip(lists), "peer", memory);
        if self.enough(role) || stopped(stop) {
            return;
        }

        // 3. Seed: ask the seed servers.
        let lists = parallel(&role.seeds, self.check_threads, |seed| {
            self.peers.fetch_nodes(seed)
        });
        round.learned += self.learn(role.seeds.iter().zip(lists), "seed", memory);
    }

    fn enough(&self, role: &NodeRole) -> bool {
        self.store.snapshot().nodes.len() >= role.kn_limit
    }

    /// Counts check results: a success clears a node's failures, a failure adds one, and the
    /// nodes that reached `fail_limit` are removed.
    fn settle(
        &self,
        checked: &[Node],
        results: Vec<Result<(), PeerError>>,
        round: &mut Round,
        memory: &mut Memory,
    ) {
        let failures = &mut memory.failures;
        let mut dead = Vec::new();
        for (node, result) in checked.iter().zip(results) {
            round.checked += 1;
            match result {
                Ok(()) => {
                    failures.remove(node);
                }
                Err(e) => {
                    round.failed += 1;
                    let count = failures.entry(node.clone()).or_insert(0);
                    *count += 1;
                    if *count >= self.fail_limit {
                        log::info!("removing {node}: {count} failed check(s) in a row, last {e}");
                        dead.push(node.clone());
                    } else {
                        log::info!("{node} failed check {count} of {}: {e}", self.fail_limit);
                    }
                }
            }
        }
        // Forget the counts of nodes that are no longer being checked.
        let current: HashSet<&Node> = checked.iter().collect();
        failures.retain(|node, _| current.contains(node));
        if dead.is_empty() {
            return;
        }
        // Long enough for every peer to have checked and dropped the node too.
        let until = Instant::now() + self.interval.mul_f64(1.1) * (self.fail_limit + 3);
        for node in &dead {
            failures.remove(node);
            memory.removed.insert(node.clone(), until);
        }
        match self.store.apply(Change::Forget(dead)) {
            Ok(committed) => {
                if let Outcome::Forgot(n) = committed.outcome {
                    round.removed += n;
                }
            }
            Err(e) => log::error!("could not remove dead nodes: {e}"),
        }
    }

    /// Merges the lists that peers (or seeds) answered; returns how many nodes were new.
    fn learn<'a>(
        &self,
        answers: impl Iterator<Item = (&'a Node, Result<crate::peers::PeerList, PeerError>)>,
        what: &str,
        memory: &Memory,
    ) -> usize {
        let mut merged = Vec::new();
        for (from, answer) in answers {
            match answer {
                Ok(list) => {
                    if list.invalid > 0 {
                        log::warn!(
                            "{what} {from} listed {} invalid node(s), skipped",
                            list.invalid
                        );
                    }
                    merged.extend(
                        list.nodes
                            .into_iter()
                            .filter(|n| !memory.removed.contains_key(n)),
                    );
                }
                Err(e) => log::warn!("{what} {from}: {e}"),
            }
        }
        if merged.is_empty() {
            return 0;
        }
        match self.store.apply(Change::Learn(merged)) {
            Ok(committed) => match committed.outcome {
                Outcome::Learned(n) => n,
                _ => 0,
            },
            Err(e) => {
                log::error!("could not save learned nodes: {e}");
                0
            }
        }
    }
}
