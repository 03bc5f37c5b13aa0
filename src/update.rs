//! The update thread: the seed's sweep (SPEC §6) and the node's cycle (SPEC §7). Both run a
//! round at once, then one every `--upd_int` seconds ±10%, sleeping on the stop channel so
//! that a stop wakes them at once.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::nodes::Node;
use crate::peers::{PeerError, PeerList, Peers, parallel};
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
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    log::info!("update thread stopped");
}

/// Drops the failure counts of nodes that were not checked this round (removed by someone
/// else, say), and gives the tally's parts back.
fn forget_unchecked<'a>(tally: Mutex<Tally<'a>>, checked: &[Node]) -> Tally<'a> {
    let tally = tally.into_inner().unwrap_or_else(PoisonError::into_inner);
    let current: HashSet<&Node> = checked.iter().collect();
    tally
        .memory
        .failures
        .retain(|node, _| current.contains(node));
    tally
}

/// `interval` ±10%, so that processes started together do not probe in lockstep.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

fn stopped(stop: &Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(TryRecvError::Empty))
}

/// One round's check results, shared by the check threads.
struct Tally<'a> {
    memory: &'a mut Memory,
    round: &'a mut Round,
}

impl Updater {
    /// The seed's round: `GET /` every known node, remove the ones that failed too often.
    fn sweep(&self, round: &mut Round, memory: &mut Memory) {
        let known = self.store.snapshot().nodes.as_slice().to_vec();
        let tally = Mutex::new(Tally { memory, round });
        parallel(&known, self.check_threads, |node| {
            self.record(node, self.peers.probe(node), &tally);
        });
        forget_unchecked(tally, &known);
    }

    /// The node's cycle (SPEC §7).
    fn cycle(&self, role: &NodeRole, round: &mut Round, memory: &mut Memory, stop: &Receiver<()>) {
        let me = serde_json::to_vec(&role.me).unwrap_or_default();

        // 1. Check: announce ourselves to every known node, and register with every seed,
        //    all at once.
        let known = self.store.snapshot().nodes.as_slice().to_vec();
        let targets: Vec<(&Node, bool)> = known
            .iter()
            .map(|node| (node, false))
            .chain(role.seeds.iter().map(|seed| (seed, true)))
            .collect();
        let tally = Mutex::new(Tally { memory, round });
        parallel(&targets, self.check_threads, |&(node, is_seed)| {
            let result = self.peers.announce(node, &me);
            match (is_seed, result) {
                (false, result) => self.record(node, result, &tally),
                (true, Ok(())) => log::debug!("registered with seed {node}"),
                (true, Err(e)) => log::warn!("seed {node}: {e}; retrying next cycle"),
            }
        });
        let Tally { memory, round } = forget_unchecked(tally, &known);
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

    /// Counts one check, on the check thread that made it: a success clears the node's
    /// failures, a failure adds one, and a node reaching `fail_limit` is removed right away,
    /// so that slow peers still being checked never delay the removal of a dead one.
    fn record(&self, node: &Node, result: Result<(), PeerError>, tally: &Mutex<Tally<'_>>) {
        let dead = {
            let mut guard = tally.lock().unwrap_or_else(PoisonError::into_inner);
            let Tally { memory, round } = &mut *guard;
            round.checked += 1;
            let error = match result {
                Ok(()) => {
                    memory.failures.remove(node);
                    return;
                }
                Err(e) => e,
            };
            round.failed += 1;
            let count = memory.failures.entry(node.clone()).or_insert(0);
            *count += 1;
            if *count < self.fail_limit {
                log::info!(
                    "{node} failed check {count} of {}: {error}",
                    self.fail_limit
                );
                return;
            }
            log::info!("removing {node}: {count} failed check(s) in a row, last {error}");
            memory.failures.remove(node);
            // Long enough for every peer to have checked and dropped the node too.
            let until = Instant::now() + self.interval.mul_f64(1.1) * (self.fail_limit + 3);
            memory.removed.insert(node.clone(), until);
            node.clone()
        };
        match self.store.apply(Change::Forget(vec![dead])) {
            Ok(committed) if committed.outcome == Outcome::Forgot(1) => {
                tally
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .round
                    .removed += 1;
            }
            Ok(_) => {}
            Err(e) => log::error!("could not remove {node}: {e}"),
        }
    }

    /// Merges the lists that peers (or seeds) answered; returns how many nodes were new.
    fn learn<'a>(
        &self,
        answers: impl Iterator<Item = (&'a Node, Result<PeerList, PeerError>)>,
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
