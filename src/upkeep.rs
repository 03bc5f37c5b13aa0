//! The update rounds' bookkeeping, as a pure type: consecutive failed checks per node, which
//! nodes were removed as dead (and may not be learned back for a while), and which seeds are
//! down. The rounds (`update.rs`) feed it check results and act on its verdicts; it never
//! does I/O and reads no clock (time is handed in).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

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
    /// Consecutive failed checks of each node that failed its last check.
    failures: HashMap<Node, u32>,
    /// Nodes removed as dead, and until when they may not be learned back. Without this, a
    /// dead node removed here comes straight back from a peer that has not checked it yet,
    /// and dead nodes circulate for ever. A node that really returns is re-added at once when
    /// it announces itself (`POST /`), which this does not filter.
    removed: HashMap<Node, Instant>,
    /// Seeds whose last request failed, and whether that was said in the current cycle.
    seeds_down: HashMap<Node, bool>,
    /// Picks which of a peer's new nodes are learned.
    rng: fastrand::Rng,
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
            failures: HashMap::new(),
            removed: HashMap::new(),
            seeds_down: HashMap::new(),
            rng: fastrand::Rng::new(),
        }
    }

    /// The same bookkeeping, with its random choices drawn from `seed` (the simulator's
    /// processes, replayable).
    pub fn with_seed(mut self, seed: u64) -> Upkeep {
        self.rng = fastrand::Rng::with_seed(seed);
        self
    }

    /// At most `most` of `fresh` (nodes one answer listed that are not known yet), chosen at
    /// random: SPEC §11 takes at most `--kn_limit` new nodes from any one answer per round,
    /// so that one answer cannot fill the table, and a whole list answered oldest first does
    /// not make its oldest nodes everyone's peers.
    pub fn pick(&mut self, fresh: Vec<Node>, most: usize) -> Vec<Node> {
        if fresh.len() <= most {
            return fresh;
        }
        self.rng.choose_multiple(fresh, most)
    }

    /// Starts a round at `now`: quarantines that have run out end, and seed failures may be
    /// said again.
    pub fn start_round(&mut self, now: Instant) {
        self.removed.retain(|_, until| *until > now);
        for said in self.seeds_down.values_mut() {
            *said = false;
        }
    }

    /// Records one check of `node` made at `now`.
    pub fn record(&mut self, node: &Node, ok: bool, now: Instant) -> Verdict {
        if ok {
            self.failures.remove(node);
            return Verdict::Online;
        }
        let count = self.failures.entry(node.clone()).or_insert(0);
        *count += 1;
        let count = *count;
        if count < self.fail_limit {
            return Verdict::Failing {
                count,
                limit: self.fail_limit,
            };
        }
        self.failures.remove(node);
        self.removed.insert(node.clone(), now + self.quarantine);
        Verdict::Dead { count }
    }

    /// Ends a round in which `checked` were checked: the failure counts of nodes not checked
    /// (removed by someone else, say) are dropped.
    pub fn end_round(&mut self, checked: &[Node]) {
        if self.failures.is_empty() {
            return;
        }
        let checked: HashSet<&Node> = checked.iter().collect();
        self.failures.retain(|node, _| checked.contains(node));
    }

    /// Whether `node` may be learned from others: it was not removed as dead recently.
    pub fn learnable(&self, node: &Node) -> bool {
        !self.removed.contains_key(node)
    }

    /// Consecutive failed checks of `node` so far.
    pub fn failures(&self, node: &Node) -> u32 {
        self.failures.get(node).copied().unwrap_or(0)
    }

    /// Records a request to a seed.
    pub fn seed(&mut self, seed: &Node, ok: bool) -> SeedNews {
        match (ok, self.seeds_down.get_mut(seed)) {
            (true, None) => SeedNews::Fine,
            (true, Some(_)) => {
                self.seeds_down.remove(seed);
                SeedNews::Back
            }
            (false, Some(said)) if *said => SeedNews::AlreadySaid,
            (false, Some(said)) => {
                *said = true;
                SeedNews::Down
            }
            (false, None) => {
                self.seeds_down.insert(seed.clone(), true);
                SeedNews::Down
            }
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
        assert_eq!(
            upkeep.record(&n(1), false, t),
            Verdict::Failing { count: 1, limit: 3 }
        );
        assert_eq!(
            upkeep.record(&n(1), false, t),
            Verdict::Failing { count: 2, limit: 3 }
        );
        assert_eq!(
            upkeep.record(&n(1), true, t),
            Verdict::Online,
            "a success clears"
        );
        assert_eq!(upkeep.failures(&n(1)), 0);
        assert_eq!(
            upkeep.record(&n(1), false, t),
            Verdict::Failing { count: 1, limit: 3 }
        );
        assert_eq!(
            upkeep.record(&n(1), false, t),
            Verdict::Failing { count: 2, limit: 3 }
        );
        assert_eq!(upkeep.record(&n(1), false, t), Verdict::Dead { count: 3 });
        assert_eq!(upkeep.failures(&n(1)), 0, "forgotten once dead");
    }

    #[test]
    fn the_original_behaviour_removes_at_the_first_failure() {
        let mut upkeep = Upkeep::new(1, MINUTE);
        let t = Instant::now();
        assert_eq!(upkeep.record(&n(1), false, t), Verdict::Dead { count: 1 });
    }

    #[test]
    fn a_dead_node_is_not_learned_back_until_its_quarantine_ends() {
        let t = Instant::now();
        let mut upkeep = Upkeep::new(1, MINUTE);
        upkeep.record(&n(1), false, t);
        assert!(!upkeep.learnable(&n(1)));
        assert!(upkeep.learnable(&n(2)));
        // (1 + 3) intervals of 60 s, +10% for jitter: 264 s.
        upkeep.start_round(t + Duration::from_secs(263));
        assert!(!upkeep.learnable(&n(1)));
        upkeep.start_round(t + Duration::from_secs(265));
        assert!(upkeep.learnable(&n(1)));
    }

    #[test]
    fn failures_of_nodes_not_checked_in_a_round_are_dropped() {
        let t = Instant::now();
        let mut upkeep = Upkeep::new(5, MINUTE);
        upkeep.record(&n(1), false, t);
        upkeep.record(&n(2), false, t);
        upkeep.end_round(&[n(2), n(3)]);
        assert_eq!((upkeep.failures(&n(1)), upkeep.failures(&n(2))), (0, 1));
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
}
