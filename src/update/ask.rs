//! Where a node's cycle gets its lists of nodes: its peers' and the seeds' `GET /nodes/`
//! and the seed domains' lookups, asked in parallel, and the log lines that say when a seed
//! or seed domain goes down and comes back.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use super::{Membership, NodeRole, Updater};
use crate::nodes::Node;
use crate::resolve::LookupError;
use crate::transport::{Clock, PeerError, PeerList, Transport};
use crate::upkeep::{SeedNews, Upkeep};

impl<M: Membership, T: Transport, C: Clock> Updater<M, T, C> {
    /// `GET /nodes/` from every seed and a lookup of every seed domain, in parallel; the
    /// results in the order of `role.seeds` and `role.seed_domains`.
    pub(super) fn ask_seeds(
        &self,
        role: &NodeRole,
        me: Option<&Node>,
    ) -> (Vec<SeedAnswer>, Vec<DomainAnswer>) {
        if role.seed_domains.is_empty() {
            return (self.fetch_all(&role.seeds, me), Vec::new());
        }
        let seeds: Vec<Mutex<Option<SeedAnswer>>> =
            role.seeds.iter().map(|_| Mutex::new(None)).collect();
        let domains: Vec<Mutex<Option<DomainAnswer>>> =
            role.seed_domains.iter().map(|_| Mutex::new(None)).collect();
        let n = role.seeds.len();
        self.transport
            .each(n + domains.len(), &|i| match role.seeds.get(i) {
                Some(seed) => {
                    let answer = self.transport.fetch_nodes(seed, me);
                    *seeds[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
                }
                None => {
                    let lookup = self.transport.seed_domain(&role.seed_domains[i - n]);
                    *domains[i - n]
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(lookup);
                }
            });
        let not_looked_up = || LookupError::NoResolver("not looked up".into());
        (
            seeds.into_iter().map(|s| taken(s, not_asked)).collect(),
            domains
                .into_iter()
                .map(|d| taken(d, not_looked_up))
                .collect(),
        )
    }

    /// `GET /nodes/` from each of `nodes` in parallel, in their order; with `me` as the body
    /// when given.
    pub(super) fn fetch_all(
        &self,
        nodes: &[Node],
        me: Option<&Node>,
    ) -> Vec<Result<PeerList, PeerError>> {
        let answers: Vec<Mutex<Option<Result<PeerList, PeerError>>>> =
            nodes.iter().map(|_| Mutex::new(None)).collect();
        self.transport.each(nodes.len(), &|i| {
            let answer = self.transport.fetch_nodes(&nodes[i], me);
            *answers[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
        });
        answers
            .into_iter()
            .map(|slot| taken(slot, not_asked))
            .collect()
    }
}

/// What a request whose task left no result is taken for: a transport whose `each` skipped
/// the call (the real one makes every call, and a panic in one ends the round, which is
/// logged and counted).
fn not_asked() -> PeerError {
    PeerError::Network("not asked".into())
}

/// The result a parallel task left in `slot`, or `missing()` when it left none.
fn taken<T, E>(slot: Mutex<Option<Result<T, E>>>, missing: impl FnOnce() -> E) -> Result<T, E> {
    slot.into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .unwrap_or_else(|| Err(missing()))
}

/// Whom a list came from: for the log, and for how many new nodes are taken from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lister {
    /// A peer's `GET /nodes/` (SPEC §7 step 2).
    Peer,
    /// A seed's `GET /nodes/` or a seed domain's lookup (SPEC §7 step 3, §12).
    Seed,
    /// A feeler's sample from a seed (`feeler.rs`).
    Feeler,
}

impl Lister {
    /// How many new nodes are taken from one answer: `--kn_limit` (SPEC §11), one from a
    /// feeler's.
    pub(super) fn take(self, kn_limit: usize) -> usize {
        match self {
            Lister::Peer | Lister::Seed => kn_limit,
            Lister::Feeler => 1,
        }
    }
}

impl fmt::Display for Lister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lister::Peer => "peer",
            Lister::Seed => "seed",
            Lister::Feeler => "feeler",
        })
    }
}

/// A seed's answer to `GET /nodes/`.
type SeedAnswer = Result<PeerList, PeerError>;

/// What the lookup of a seed domain found.
type DomainAnswer = Result<PeerList, LookupError>;

/// Logs a seed's answer: a line when it goes down (one per cycle while it stays down), and
/// one when it is back.
pub(super) fn say_seed(upkeep: &mut Upkeep, seed: &Node, error: Option<&PeerError>, doing: &str) {
    match (upkeep.seed(seed, error.is_none()), error) {
        (SeedNews::Back, _) => log::info!("seed {seed} is back"),
        (SeedNews::Down, Some(e)) => {
            log::warn!("seed {seed} is down ({doing}: {e}); retrying next cycle")
        }
        _ => {}
    }
}

/// Logs a seed domain's lookup (SPEC §12) as `say_seed` logs a seed's answer.
pub(super) fn say_domain(upkeep: &mut Upkeep, domain: &str, error: Option<&LookupError>) {
    match (upkeep.seed_domain(domain, error.is_none()), error) {
        (SeedNews::Back, _) => log::info!("seed domain {domain} is back"),
        (SeedNews::Down, Some(e)) => log::warn!(
            "seed domain {domain} is down (looking up _seedmesh._tcp.{domain} SRV: {e}); retrying next cycle"
        ),
        _ => {}
    }
}
