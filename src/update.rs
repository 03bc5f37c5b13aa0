//! The update rounds: the seed's sweep (SPEC §6) and the node's cycle (SPEC §7).
//!
//! A round reaches peers only through a `Transport`, changes the known nodes only through
//! `Membership`, and reads the time only from a `Clock`; its bookkeeping is the pure
//! `Upkeep`. So the same round runs in the binaries (ureq, the store, the system clock) and
//! in the simulator (in-memory peers and time). `run` is the real-time loop around it: a
//! round at once, then one every `--upd_int` ±10%, sleeping on the stop channel so that a
//! stop wakes it at once, and surviving a round that panics.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::nodes::Node;
use crate::stats::{Round, Stats};
use crate::store::{Change, Committed, MemoryStore, Outcome, PersistError, Snapshot, Store};
use crate::transport::{Clock, PeerError, PeerList, Transport};
use crate::upkeep::{SeedNews, Upkeep, Verdict};

/// The known nodes as a round sees them: read a snapshot, apply a change. The store
/// implements it with its durable committer; the simulator in memory.
pub trait Membership: Sync {
    /// The committed list.
    fn snapshot(&self) -> Arc<Snapshot>;
    /// Applies `change` and returns once it is committed (or failed to be).
    fn apply(&self, change: Change) -> Result<Committed, PersistError>;
}

impl Membership for Store {
    fn snapshot(&self) -> Arc<Snapshot> {
        Store::snapshot(self)
    }

    fn apply(&self, change: Change) -> Result<Committed, PersistError> {
        Store::apply(self, change)
    }
}

impl Membership for MemoryStore {
    fn snapshot(&self) -> Arc<Snapshot> {
        MemoryStore::snapshot(self)
    }

    fn apply(&self, change: Change) -> Result<Committed, PersistError> {
        Ok(MemoryStore::apply(self, &change))
    }
}

impl<M: Membership + Send> Membership for Arc<M> {
    fn snapshot(&self) -> Arc<Snapshot> {
        M::snapshot(self)
    }

    fn apply(&self, change: Change) -> Result<Committed, PersistError> {
        M::apply(self, change)
    }
}

/// What a round does.
#[derive(Debug, Clone)]
pub enum Role {
    /// The seed: check every known node with `GET /`.
    Dns,
    /// A node: check by announcing itself, then exchange, then ask the seeds.
    Node(NodeRole),
}

/// A node's part in the rounds.
#[derive(Debug, Clone)]
pub struct NodeRole {
    /// This node, as announced to others.
    pub me: Node,
    /// The seed servers.
    pub seeds: Vec<Node>,
    /// Known nodes wanted before the exchange and seed steps are skipped (`--kn_limit`).
    pub kn_limit: usize,
}

/// Everything a round works with.
pub struct Updater<M, T, C> {
    pub members: M,
    pub transport: T,
    pub clock: C,
    pub role: Role,
}

impl<M: Membership, T: Transport, C: Clock> Updater<M, T, C> {
    /// Runs one round; `stopping` is asked between steps and ends the round early when true.
    pub fn round(&self, upkeep: &mut Upkeep, stopping: &dyn Fn() -> bool) -> Round {
        upkeep.start_round(self.clock.now());
        let mut round = Round::default();
        match &self.role {
            Role::Dns => self.sweep(upkeep, &mut round),
            Role::Node(node) => self.cycle(node, upkeep, &mut round, stopping),
        }
        round.known = self.members.snapshot().nodes.len();
        round
    }

    /// The seed's round: `GET /` every known node, remove the ones that failed too often.
    fn sweep(&self, upkeep: &mut Upkeep, round: &mut Round) {
        let known = self.members.snapshot().nodes.as_slice().to_vec();
        let tally = Mutex::new(Tally { upkeep, round });
        self.transport.each(known.len(), &|i| {
            let node = &known[i];
            self.record(node, self.transport.probe(node), &tally);
        });
        let Tally { upkeep, .. } = tally.into_inner().unwrap_or_else(PoisonError::into_inner);
        upkeep.end_round(&known);
    }

    /// The node's cycle (SPEC §7).
    fn cycle(
        &self,
        role: &NodeRole,
        upkeep: &mut Upkeep,
        round: &mut Round,
        stopping: &dyn Fn() -> bool,
    ) {
        // 1. Check: announce ourselves to every known node, and register with every seed,
        //    all at once.
        let known = self.members.snapshot().nodes.as_slice().to_vec();
        let targets: Vec<&Node> = known.iter().chain(&role.seeds).collect();
        let tally = Mutex::new(Tally { upkeep, round });
        self.transport.each(targets.len(), &|i| {
            let node = targets[i];
            let result = self.transport.announce(node, &role.me);
            if i < known.len() {
                self.record(node, result, &tally);
            } else {
                let mut guard = tally.lock().unwrap_or_else(PoisonError::into_inner);
                say_seed(guard.upkeep, node, result.as_ref().err(), "registering");
            }
        });
        let Tally { upkeep, round } = tally.into_inner().unwrap_or_else(PoisonError::into_inner);
        upkeep.end_round(&known);
        if self.enough(role) || stopping() {
            return;
        }

        // 2. Exchange: ask every known node for its peers.
        let known = self.members.snapshot().nodes.as_slice().to_vec();
        let mut lists = Vec::new();
        for (peer, answer) in known.iter().zip(self.fetch_all(&known, &role.me)) {
            match answer {
                Ok(list) => lists.push((peer, list)),
                Err(e) => log::warn!("peer {peer}: {e}"),
            }
        }
        round.learned += self.learn(lists, "peer", upkeep, role.kn_limit);
        if self.enough(role) || stopping() {
            return;
        }

        // 3. Seed: ask the seed servers.
        let mut lists = Vec::new();
        for (seed, answer) in role.seeds.iter().zip(self.fetch_all(&role.seeds, &role.me)) {
            say_seed(upkeep, seed, answer.as_ref().err(), "asking");
            lists.extend(answer.ok().map(|list| (seed, list)));
        }
        round.learned += self.learn(lists, "seed", upkeep, role.kn_limit);
    }

    /// `GET /nodes/` from each of `nodes` in parallel, in their order.
    fn fetch_all(&self, nodes: &[Node], me: &Node) -> Vec<Result<PeerList, PeerError>> {
        let answers: Vec<Mutex<Option<Result<PeerList, PeerError>>>> =
            nodes.iter().map(|_| Mutex::new(None)).collect();
        self.transport.each(nodes.len(), &|i| {
            let answer = self.transport.fetch_nodes(&nodes[i], Some(me));
            *answers[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
        });
        answers
            .into_iter()
            .map(|slot| {
                slot.into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unwrap_or(Err(PeerError::Network("not asked".into())))
            })
            .collect()
    }

    fn enough(&self, role: &NodeRole) -> bool {
        self.members.snapshot().nodes.len() >= role.kn_limit
    }

    /// Counts one check, on the thread that made it: a node whose failures reach
    /// `--fail_limit` is removed right away, so that slow peers still being checked never
    /// delay the removal of a dead one.
    fn record(&self, node: &Node, result: Result<(), PeerError>, tally: &Mutex<Tally<'_>>) {
        let now = self.clock.now();
        let verdict = {
            let mut guard = tally.lock().unwrap_or_else(PoisonError::into_inner);
            let Tally { upkeep, round } = &mut *guard;
            round.checked += 1;
            if let Err(e) = &result {
                round.failed += 1;
                round.failures[e.cause_index()] += 1;
            }
            upkeep.record(node, result.is_ok(), now)
        };
        let error = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        match verdict {
            Verdict::Online => {}
            Verdict::Failing { count, limit } => {
                log::info!("{node} failed check {count} of {limit}: {error}");
            }
            Verdict::Dead { count } => {
                log::info!("removing {node}: {count} failed check(s) in a row, last {error}");
                match self.members.apply(Change::Forget(vec![node.clone()])) {
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
        }
    }

    /// Merges the lists that peers (or seeds) answered, at most `most` new nodes from each
    /// (SPEC §11); returns how many nodes were new.
    fn learn(
        &self,
        lists: Vec<(&Node, PeerList)>,
        what: &str,
        upkeep: &mut Upkeep,
        most: usize,
    ) -> usize {
        let known = self.members.snapshot();
        let mut merged = Vec::new();
        for (from, list) in lists {
            if list.invalid > 0 {
                log::warn!(
                    "{what} {from} listed {} invalid node(s), skipped",
                    list.invalid
                );
            }
            let fresh: Vec<Node> = list
                .nodes
                .into_iter()
                .filter(|n| upkeep.learnable(n) && !known.nodes.contains(n))
                .collect();
            merged.extend(upkeep.pick(fresh, most));
        }
        drop(known);
        if merged.is_empty() {
            return 0;
        }
        match self.members.apply(Change::Learn(merged)) {
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

/// One round's check results, shared by the threads that make the checks.
struct Tally<'a> {
    upkeep: &'a mut Upkeep,
    round: &'a mut Round,
}

/// Logs a seed's answer: a line when it goes down (one per cycle while it stays down), and
/// one when it is back.
fn say_seed(upkeep: &mut Upkeep, seed: &Node, error: Option<&PeerError>, doing: &str) {
    match (upkeep.seed(seed, error.is_none()), error) {
        (SeedNews::Back, _) => log::info!("seed {seed} is back"),
        (SeedNews::Down, Some(e)) => {
            log::warn!("seed {seed} is down ({doing}: {e}); retrying next cycle")
        }
        _ => {}
    }
}

/// The real-time loop: runs rounds until `stop` receives a message or its sender is dropped.
/// A round that panics is logged and counted (`seedmesh_round_panics_total`), and the next
/// one runs on time: peer upkeep never silently ends while the API keeps answering.
pub fn run<M: Membership, T: Transport, C: Clock>(
    updater: &Updater<M, T, C>,
    stats: &Stats,
    interval: Duration,
    fail_limit: u32,
    stop: &Receiver<()>,
) {
    let mut upkeep = Upkeep::new(fail_limit, interval);
    let stopping = || !matches!(stop.try_recv(), Err(TryRecvError::Empty));
    loop {
        let started = updater.clock.now();
        let outcome =
            panic::catch_unwind(AssertUnwindSafe(|| updater.round(&mut upkeep, &stopping)));
        match outcome {
            Ok(mut round) => {
                round.duration = updater.clock.now().saturating_duration_since(started);
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
                stats.record_round(&round);
            }
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                log::error!("update round failed: {what}; the next round runs as planned");
                stats
                    .round_panics
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // The bookkeeping may be half-updated: start afresh rather than trust it.
                upkeep = Upkeep::new(fail_limit, interval);
            }
        }
        match stop.recv_timeout(jittered(interval)) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    log::info!("update thread stopped");
}

/// `interval` ±10%, so that processes started together do not probe in lockstep.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests;
