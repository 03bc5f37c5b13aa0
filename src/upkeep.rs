//! The update rounds' bookkeeping, as a pure type: what a check result means for its node
//! (given the failures the table holds for it), which nodes were removed as dead (and may not
//! be learned back for a while), and which seeds and seed domains are down. The rounds
//! (`update.rs`) feed it check results and act on its verdicts; it never does I/O and reads no
//! clock (time is handed in). It also counts the node's cycles for its feeler (`feeler.rs`).

use foldhash::{HashMap, HashMapExt};
use std::time::{Duration, Instant};

use crate::feeler::Feeler;
use crate::nodes::Node;

/// What one check result means for its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered: its failures are cleared.
    Online,
    /// It failed `count` checks in a row, fewer than `limit` (`--fail_limit`): kept for now.
    Failing { count: u32, limit: u32 },
    /// It failed `count` = `--fail_limit` checks in a row: remove it.
    Dead { count: u32 },
}

/// What a seed's result means for the log: one line when it goes down, one per cycle while
/// it stays down, one when it is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedNews {
    /// It answered, as it did last time: nothing to say.
    Fine,
    /// It answered after failing: say it is back.
    Back,
    /// It failed (first time, or again in a new cycle): say so.
    Down,
    /// It failed again within the same cycle: already said.
    AlreadySaid,
}

/// The bookkeeping kept between rounds.
#[derive(Debug, Clone)]
pub struct Upkeep {
    fail_limit: u32,
    /// How long a node removed as dead is not learned back from others.
    quarantine: Duration,
    /// Nodes removed as dead, and until when they may not be learned back. Without this, a
    /// dead node removed here comes straight back from a peer that has not checked it yet,
    /// and dead nodes circulate for ever. A node that really returns is re-added at once when
    /// it announces itself (`POST /`), which this does not filter.
    removed: HashMap<Node, Instant>,
    /// Seeds whose last request failed, and whether that was said in the current cycle.
    seeds_down: HashMap<Node, bool>,
    /// The same for seed domains (`--seed_domain`, SPEC §12) whose last lookup failed.
    domains_down: HashMap<String, bool>,
    /// When this node feels (`feeler.rs`).
    feeler: Feeler,
}

impl Upkeep {
    /// Bookkeeping for rounds `interval` apart that remove a node after `fail_limit`
    /// consecutive failed checks. A removed node stays unlearnable for `fail_limit + 3`
    /// intervals (+10% for jitter): long enough for every peer to have checked and dropped
    /// it too.
    pub fn new(fail_limit: u32, interval: Duration) -> Upkeep {
        Upkeep {
            fail_limit: fail_limit.max(1),
            quarantine: interval.mul_f64(1.1) * (fail_limit.max(1) + 3),
            removed: HashMap::new(),
            seeds_down: HashMap::new(),
            domains_down: HashMap::new(),
            feeler: Feeler::default(),
        }
    }

    /// Starts a round at `now`: quarantines that have run out end, and seed failures may be
    /// said again.
    pub fn start_round(&mut self, now: Instant) {
        self.removed.retain(|_, until| *until > now);
        for said in self
            .seeds_down
            .values_mut()
            .chain(self.domains_down.values_mut())
        {
            *said = false;
        }
    }

    /// What a check of `node` made at `now` means, given the consecutive failed checks
    /// before it (`failures`, as the table holds them).
    pub fn verdict(&mut self, node: &Node, failures: u32, ok: bool, now: Instant) -> Verdict {
        if ok {
            return Verdict::Online;
        }
        let count = failures.saturating_add(1);
        if count < self.fail_limit {
            return Verdict::Failing {
                count,
                limit: self.fail_limit,
            };
        }
        self.condemn(node, now);
        Verdict::Dead { count }
    }

    /// Records that `node` is removed at `now` whatever its failures (it is this process, or
    /// an address the rules refuse): it may not be learned back for a while either.
    pub fn condemn(&mut self, node: &Node, now: Instant) {
        self.removed.insert(node.clone(), now + self.quarantine);
    }

    /// Whether `node` may be learned from others: it was not removed as dead recently.
    pub fn learnable(&self, node: &Node) -> bool {
        !self.removed.contains_key(node)
    }

    /// Counts one node cycle, and says whether it is this node's feeler cycle (`feeler.rs`);
    /// the first call draws the node's phase from `rng`.
    pub fn feeler_cycle(&mut self, rng: &mut fastrand::Rng) -> bool {
        self.feeler.tick(rng)
    }

    /// Records a request to a seed.
    pub fn seed(&mut self, seed: &Node, ok: bool) -> SeedNews {
        news(&mut self.seeds_down, seed, ok)
    }

    /// Records a lookup of a seed domain (SPEC §12), as `seed` records a request to a seed.
    pub fn seed_domain(&mut self, domain: &str, ok: bool) -> SeedNews {
        news(&mut self.domains_down, domain, ok)
    }
}

/// What a seed's (or seed domain's) result means, given those down and whether each was said.
fn news<K, Q>(down: &mut HashMap<K, bool>, key: &Q, ok: bool) -> SeedNews
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
{
    match (ok, down.get_mut(key)) {
        (true, None) => SeedNews::Fine,
        (true, Some(_)) => {
            down.remove(key);
            SeedNews::Back
        }
        (false, Some(said)) if *said => SeedNews::AlreadySaid,
        (false, Some(said)) => {
            *said = true;
            SeedNews::Down
        }
        (false, None) => {
            down.insert(key.to_owned(), true);
            SeedNews::Down
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(port: u16) -> Node {
        Node::new("127.0.0.1", port).unwrap()
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_node_is_dead_after_fail_limit_failures_in_a_row() {
        let t = Instant::now();
        let mut upkeep = Upkeep::new(3, MINUTE);
        let failing = |count| Verdict::Failing { count, limit: 3 };
        assert_eq!(upkeep.verdict(&n(1), 0, false, t), failing(1));
        assert_eq!(upkeep.verdict(&n(1), 1, false, t), failing(2));
        assert_eq!(upkeep.verdict(&n(1), 2, true, t), Verdict::Online);
        assert!(upkeep.learnable(&n(1)));
        assert_eq!(
            upkeep.verdict(&n(1), 2, false, t),
            Verdict::Dead { count: 3 }
        );
        assert!(!upkeep.learnable(&n(1)), "quarantined once dead");
    }

    #[test]
    fn the_original_behaviour_removes_at_the_first_failure() {
        let mut upkeep = Upkeep::new(1, MINUTE);
        let t = Instant::now();
        assert_eq!(
            upkeep.verdict(&n(1), 0, false, t),
            Verdict::Dead { count: 1 }
        );
    }

    #[test]
    fn a_dead_node_is_not_learned_back_until_its_quarantine_ends() {
        let t = Instant::now();
        let mut upkeep = Upkeep::new(1, MINUTE);
        upkeep.verdict(&n(1), 0, false, t);
        upkeep.condemn(&n(2), t);
        assert!(!upkeep.learnable(&n(1)) && !upkeep.learnable(&n(2)));
        assert!(upkeep.learnable(&n(3)));
        // (1 + 3) intervals of 60 s, +10% for jitter: 264 s.
        upkeep.start_round(t + Duration::from_secs(263));
        assert!(!upkeep.learnable(&n(1)));
        upkeep.start_round(t + Duration::from_secs(265));
        assert!(upkeep.learnable(&n(1)));
    }

    #[test]
    fn a_seed_down_is_said_once_per_cycle_and_its_return_once() {
        let t = Instant::now();
        let mut upkeep = Upkeep::new(1, MINUTE);
        let seed = n(42020);
        assert_eq!(upkeep.seed(&seed, true), SeedNews::Fine);
        assert_eq!(upkeep.seed(&seed, false), SeedNews::Down);
        assert_eq!(upkeep.seed(&seed, false), SeedNews::AlreadySaid);
        upkeep.start_round(t);
        assert_eq!(upkeep.seed(&seed, false), SeedNews::Down);
        assert_eq!(upkeep.seed(&seed, true), SeedNews::Back);
        assert_eq!(upkeep.seed(&seed, true), SeedNews::Fine);
    }

    #[test]
    fn a_seed_domain_down_is_said_once_per_cycle_apart_from_the_seeds() {
        let t = Instant::now();
        let mut upkeep = Upkeep::new(1, MINUTE);
        assert_eq!(upkeep.seed_domain("seed.test", false), SeedNews::Down);
        assert_eq!(
            upkeep.seed_domain("seed.test", false),
            SeedNews::AlreadySaid
        );
        assert_eq!(upkeep.seed(&n(53), true), SeedNews::Fine, "seeds apart");
        upkeep.start_round(t);
        assert_eq!(upkeep.seed_domain("seed.test", false), SeedNews::Down);
        assert_eq!(upkeep.seed_domain("seed.test", true), SeedNews::Back);
        assert_eq!(upkeep.seed_domain("other.test", true), SeedNews::Fine);
    }
}
