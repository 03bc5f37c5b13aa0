//! The update rounds: the seed's sweep (SPEC §6) and the node's cycle (SPEC §7).
//!
//! A round reaches peers only through a `Transport`, changes the known nodes only through
//! `Membership`, and reads the time only from a `Clock`; its bookkeeping is the pure
//! `Upkeep`. So the same round runs in the binaries (ureq, the store, the system clock) and
//! in the simulator (in-memory peers and time). `run` is the real-time loop around it: a
//! round at once, then one every `--upd_int` ±10%, sleeping on the stop channel so that a
//! stop wakes it at once, and surviving a round that panics. Asking peers and seeds for
//! their lists is `ask.rs`; the feeler's request (`feeler.rs` decides when) is `feel.rs`.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::membership::{Change, Committed, MemoryStore, Outcome, Snapshot};
use crate::nodes::Node;
use crate::stats::Round;
use crate::store::{PersistError, Store};
use crate::table::{Entry, pick_diverse};
use crate::transport::{Clock, PeerError, PeerList, Transport};
use crate::upkeep::{Upkeep, Verdict};

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
    /// `--seed_domain`: seeds found through DNS (SPEC §12), looked up in the seed step.
    pub seed_domains: Vec<String>,
}

impl NodeRole {
    /// The node a request carries as its announcement: this node, unless the round is quiet.
    pub fn announced(&self, presence: Presence) -> Option<&Node> {
        match presence {
            Presence::Announce => Some(&self.me),
            Presence::Quiet => None,
        }
    }
}

/// Whether a node announces itself in a round. A node whose chain application fails its
/// health check (`--app_health`, SPEC §13) goes quiet: it sends no `POST /` with itself and
/// no node body with its `GET /nodes/`, and checks its peers with `GET /` instead, so that its
/// table stays healthy while nobody is told of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Presence {
    /// Announce itself to seeds and peers (SPEC §7).
    #[default]
    Announce,
    /// Tell nobody of itself this round.
    Quiet,
}

/// Everything a round works with.
pub struct Updater<M, T, C> {
    pub members: M,
    pub transport: T,
    pub clock: C,
    pub role: Role,
    /// Chooses which of a peer's new nodes to take; seeded in the simulator.
    pub rng: Mutex<fastrand::Rng>,
}

impl<M: Membership, T: Transport, C: Clock> Updater<M, T, C> {
    /// Runs one round; `stopping` is asked between steps and ends the round early when true.
    pub fn round(&self, upkeep: &mut Upkeep, stopping: &dyn Fn() -> bool) -> Round {
        self.round_as(Presence::Announce, upkeep, stopping)
    }

    /// Runs one round, a node announcing itself or not as `presence` says (a seed has
    /// nothing to announce); see `round`.
    pub fn round_as(
        &self,
        presence: Presence,
        upkeep: &mut Upkeep,
        stopping: &dyn Fn() -> bool,
    ) -> Round {
        upkeep.start_round(self.clock.now());
        let mut round = Round::default();
        match &self.role {
            Role::Dns => {
                let all = self.members.snapshot().all();
                self.check(&all, Presence::Quiet, upkeep, &mut round);
            }
            Role::Node(node) => self.cycle(node, presence, upkeep, &mut round, stopping),
        }
        round.known = self.members.snapshot().known().len();
        round
    }

    /// The node's cycle (SPEC §7, with SPEC §11's rules for learned nodes), and the feeler
    /// (`feeler.rs`) in a cycle that ends because this node knows enough; a quiet one
    /// (`Presence::Quiet`) tells nobody of this node.
    fn cycle(
        &self,
        role: &NodeRole,
        presence: Presence,
        upkeep: &mut Upkeep,
        round: &mut Round,
        stopping: &dyn Fn() -> bool,
    ) {
        let me = role.announced(presence);
        let feeler_cycle = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            upkeep.feeler_cycle(&mut rng)
        };
        // 1. Check: announce ourselves to every entry, and register with every seed, all at
        //    once (quiet: only check the entries).
        let all = self.members.snapshot().all();
        let seeds = Mutex::new(Vec::new());
        let registering: &[Node] = if me.is_some() { &role.seeds } else { &[] };
        self.check_and(
            &all,
            registering,
            presence,
            upkeep,
            round,
            &|seed, result| {
                seeds
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((seed.clone(), result));
            },
        );
        for (seed, result) in seeds.into_inner().unwrap_or_else(PoisonError::into_inner) {
            say_seed(upkeep, &seed, result.err().as_ref(), "registering");
        }
        if self.ends_here(role, feeler_cycle, presence, upkeep, round, stopping) {
            return;
        }

        // 2. Exchange: ask every node we vouch for for its peers.
        let peers = self.members.snapshot().known().to_vec();
        let mut lists = Vec::new();
        for (peer, answer) in peers.iter().zip(self.fetch_all(&peers, me)) {
            match answer {
                Ok(list) => lists.push((peer, list)),
                Err(e) => log::warn!("peer {peer}: {e}"),
            }
        }
        self.learn(lists, Lister::Peer, role, presence, upkeep, round);
        if self.ends_here(role, feeler_cycle, presence, upkeep, round, stopping) {
            return;
        }

        // 3. Seed: ask the seed servers, and look up the seed domains (SPEC §12), all at
        //    once; what a domain lists is taken as a seed's list is.
        let (answers, lookups) = self.ask_seeds(role, me);
        let mut lists: Vec<(&dyn fmt::Display, PeerList)> = Vec::new();
        for (seed, answer) in role.seeds.iter().zip(answers) {
            say_seed(upkeep, seed, answer.as_ref().err(), "asking");
            lists.extend(answer.ok().map(|list| (seed as &dyn fmt::Display, list)));
        }
        for (domain, lookup) in role.seed_domains.iter().zip(lookups) {
            say_domain(upkeep, domain, lookup.as_ref().err());
            lists.extend(lookup.ok().map(|list| (domain as &dyn fmt::Display, list)));
        }
        self.learn(lists, Lister::Seed, role, presence, upkeep, round);
    }

    /// Whether the cycle ends after a step: at a stop, or once this node knows enough (SPEC
    /// §7), when a feeler cycle (`feeler.rs`) runs the feeler first.
    fn ends_here(
        &self,
        role: &NodeRole,
        feeler_cycle: bool,
        presence: Presence,
        upkeep: &mut Upkeep,
        round: &mut Round,
        stopping: &dyn Fn() -> bool,
    ) -> bool {
        if stopping() {
            return true;
        }
        if !self.enough(role) {
            return false;
        }
        if feeler_cycle {
            self.feel(role, presence, upkeep, round);
        }
        true
    }

    /// Whether this node vouches for at least `--kn_limit` nodes.
    fn enough(&self, role: &NodeRole) -> bool {
        self.members.snapshot().known().len() >= role.kn_limit
    }

    /// The one request that checks `node`: `POST /` with ourselves for a node that announces
    /// itself (which announces us too), `GET /` otherwise (a seed, a quiet node).
    fn check_one(&self, node: &Node, presence: Presence) -> Result<(), PeerError> {
        match (&self.role, presence) {
            (Role::Node(role), Presence::Announce) => self.transport.announce(node, &role.me),
            _ => self.transport.probe(node),
        }
    }

    /// Checks `nodes` in parallel and records the results: see `check_and`.
    fn check(&self, nodes: &[Node], presence: Presence, upkeep: &mut Upkeep, round: &mut Round) {
        self.check_and(nodes, &[], presence, upkeep, round, &|_, _| {});
    }

    /// Checks `nodes`, and makes the same request to each of `extra` (handing its result to
    /// `on_extra`), all in parallel. A node whose failures reach `--fail_limit` is removed
    /// the moment its check fails, so that slow peers still being checked never delay the
    /// removal of a dead one; a node that turns out to be this process, or to resolve to an
    /// address the rules refuse, is removed at once. The other results (online or failing)
    /// are recorded in the table together at the end.
    fn check_and(
        &self,
        nodes: &[Node],
        extra: &[Node],
        presence: Presence,
        upkeep: &mut Upkeep,
        round: &mut Round,
        on_extra: &(dyn Fn(&Node, Result<(), PeerError>) + Sync),
    ) {
        // Each node's failed checks before this round, read up front: the snapshot is not
        // held while the checks change the table (a store without a file, the simulator's,
        // then changes it in place instead of copying it).
        let failures: Vec<u32> = {
            let snapshot = self.members.snapshot();
            nodes
                .iter()
                .map(|node| snapshot.table.entry(node).map_or(0, Entry::failures))
                .collect()
        };
        let results = Mutex::new(Vec::with_capacity(nodes.len()));
        let tally = Mutex::new(Tally { upkeep, round });
        self.transport.each(nodes.len() + extra.len(), &|i| {
            let Some(node) = nodes.get(i) else {
                let seed = &extra[i - nodes.len()];
                return on_extra(seed, self.check_one(seed, presence));
            };
            let result = self.check_one(node, presence);
            if let Some(online) = self.record(node, failures[i], result, &tally) {
                results
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((i, online));
            }
        });
        // Recorded in the order of `nodes`, not the order of the answers: the same results
        // give the same table.
        let mut results = results.into_inner().unwrap_or_else(PoisonError::into_inner);
        if results.is_empty() {
            return;
        }
        results.sort_unstable_by_key(|(i, _)| *i);
        let results = results
            .into_iter()
            .map(|(i, online)| (nodes[i].clone(), online))
            .collect();
        let at = self.clock.now();
        if let Err(e) = self.members.apply(Change::Checked { results, at }) {
            log::error!("could not record the checks: {e}");
        }
    }

    /// Counts one check, on the thread that made it, and removes the node at once when the
    /// verdict is that it is gone. Returns whether the node was online, for the table, or
    /// `None` when it was removed.
    fn record(
        &self,
        node: &Node,
        failures: u32,
        result: Result<(), PeerError>,
        tally: &Mutex<Tally<'_>>,
    ) -> Option<bool> {
        let now = self.clock.now();
        let error = {
            let mut guard = tally.lock().unwrap_or_else(PoisonError::into_inner);
            let Tally { upkeep, round } = &mut *guard;
            round.checked += 1;
            let error = match result {
                Ok(()) => return Some(true),
                Err(e) => e,
            };
            round.failed += 1;
            round.failures[error.cause_index()] += 1;
            let verdict = match error {
                // It is this process, or the rules refuse where its name leads: no number of
                // checks changes that.
                PeerError::IsSelf | PeerError::LocalAddress(_) => {
                    upkeep.condemn(node, now);
                    Verdict::Dead {
                        count: failures + 1,
                    }
                }
                _ => upkeep.verdict(node, failures, false, now),
            };
            match verdict {
                Verdict::Online => return Some(true),
                Verdict::Failing { count, limit } => {
                    log::info!("{node} failed check {count} of {limit}: {error}");
                    return Some(false);
                }
                Verdict::Dead { count } => {
                    log::info!("removing {node}: {count} failed check(s) in a row, last {error}");
                    error
                }
            }
        };
        match self.members.apply(Change::Forget(vec![node.clone()])) {
            Ok(committed) if committed.outcome == Outcome::Forgot(1) => {
                tally
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .round
                    .removed += 1;
            }
            Ok(_) => {}
            Err(e) => log::error!("could not remove {node} ({error}): {e}"),
        }
        None
    }

    /// Takes new nodes from the lists that peers (or seeds, or a feeler) answered — at most
    /// `--kn_limit` from each answer (one from a feeler's), chosen across address groups —
    /// checks them at once, and learns the ones that answer: a learned node is vouched for
    /// only by this process's own check, and a fabricated address costs a check and is never
    /// relayed (SPEC §11).
    fn learn<F: fmt::Display>(
        &self,
        lists: Vec<(F, PeerList)>,
        what: Lister,
        role: &NodeRole,
        presence: Presence,
        upkeep: &mut Upkeep,
        round: &mut Round,
    ) {
        let mut candidates: Vec<Node> = Vec::new();
        {
            // Not held past the choice, so that learning changes the table in place.
            let snapshot = self.members.snapshot();
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            for (from, list) in lists {
                if list.invalid > 0 {
                    log::warn!(
                        "{what} {from} listed {} invalid node(s), skipped",
                        list.invalid
                    );
                }
                let take = what.take(role.kn_limit);
                let picked = pick_diverse(&list.nodes, take, &mut rng, |n| {
                    *n != role.me
                        && !snapshot.table.contains(n)
                        && !candidates.contains(n)
                        && upkeep.learnable(n)
                });
                candidates.extend(picked);
            }
        }
        if candidates.is_empty() {
            return;
        }
        let online = Mutex::new(Vec::new());
        self.transport.each(candidates.len(), &|i| {
            let node = &candidates[i];
            match self.check_one(node, presence) {
                Ok(()) => online
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(i),
                Err(e) => log::debug!("{what}-listed {node} not learned: {e}"),
            }
        });
        let mut online = online.into_inner().unwrap_or_else(PoisonError::into_inner);
        online.sort_unstable();
        round.checked += candidates.len();
        let verified: Vec<Node> = online.iter().map(|&i| candidates[i].clone()).collect();
        for (i, node) in candidates.iter().enumerate() {
            if online.binary_search(&i).is_err() {
                upkeep.condemn(node, self.clock.now());
            }
        }
        if verified.is_empty() {
            return;
        }
        let at = self.clock.now();
        match self.members.apply(Change::Learn(verified.clone())) {
            Ok(committed) => {
                let outcome = &committed.outcome;
                if let Outcome::Learned { added, .. } = outcome {
                    round.learned += added;
                }
                round.evicted += outcome.evicted();
                round.refused += outcome.refused();
            }
            Err(e) => {
                log::error!("could not save learned nodes: {e}");
                return;
            }
        }
        let results = verified.into_iter().map(|n| (n, true)).collect();
        if let Err(e) = self.members.apply(Change::Checked { results, at }) {
            log::error!("could not record the checks of learned nodes: {e}");
        }
    }
}

/// One round's check results, shared by the threads that make the checks.
struct Tally<'a> {
    upkeep: &'a mut Upkeep,
    round: &'a mut Round,
}

mod ask;
mod feel;
mod run;
use ask::{Lister, say_domain, say_seed};
pub use run::{run, run_as};

#[cfg(test)]
mod tests;
