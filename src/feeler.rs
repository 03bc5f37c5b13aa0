//! The feeler: how a node that already knows enough peers still hears of the rest of the
//! network, decided purely (when, whether, and whom to ask); `update.rs` makes the request.
//!
//! SPEC §7 ends a node's cycle once it vouches for `--kn_limit` nodes, so a node with enough
//! peers never asks anyone for more. A network cut in two then stays in two after the cut
//! heals: each half's checks removed the other half, every node still knows `--kn_limit`
//! live peers on its own side, and only newcomers, who ask the seeds, ever join the halves
//! again (SIMULATION.md, Finding 4). Bitcoin Core meets the same problem with its feeler
//! connections (`net.cpp`, `FEELER_INTERVAL`, PR #8282): every two minutes it tries one
//! address it has heard of but never connected to. Here a node hears of new addresses only
//! by asking, so once every `FEELER_EVERY` cycles a node that knows enough asks one seed for
//! a sample of `--kn_limit` nodes and takes at most one new node from it, checked before it
//! is learned and never relayed before (SPEC §11). The seeds know every live node (each
//! registers with every seed every cycle), so one feeler is enough to join two halves.

use crate::nodes::Node;

/// A node that knows enough feels once in this many cycles (of `--upd_int` each: once in
/// 20 minutes at the default 60 s). Of 1,000 nodes up to 50 feel per cycle, and a healed cut
/// was joined within the first cycle after it, at 1,000 and 10,000 nodes (SIMULATION.md,
/// Finding 4). Each feeler costs its node one request to a seed and at most one check, and
/// then the one more peer it checks every cycle: +7% requests per node per cycle at 10,000
/// nodes with 2% churn.
pub const FEELER_EVERY: u32 = 20;

/// No feeler while the table holds this many times `--kn_limit` entries or more. A node
/// checks every entry it holds in every cycle (SPEC §7 step 1), so its work is about the
/// size of its table. A feeler adds an entry to it, and one to the table of the node it
/// learns (which it announces itself to from then on), whatever that table's size: in a
/// network without churn, where nothing leaves a table, feelers go on until every node is at
/// the bound. Over 200 rounds of 1,000 nodes without churn (SIMULATION.md, Finding 4) the
/// mean table grows from 39.6 entries to 48.9 with a bound of 4 × `--kn_limit` (still
/// growing), to 43.2 with 3 × (level from round ~150 on), and not at all with 2 × (no table
/// there is that small, so nobody feels until a cut halves the tables). 3 × leaves the
/// nodes with the smaller tables (they hold ~2–4 × `--kn_limit` without feelers) feeling,
/// for at most about a tenth more work.
pub const TABLE_CAP_FACTOR: usize = 3;

/// When a node feels: once every `FEELER_EVERY` cycles, at a phase of its own drawn at its
/// first cycle, so that a network started at once does not feel in the same cycle.
#[derive(Debug, Clone, Default)]
pub struct Feeler {
    /// The cycle, among `FEELER_EVERY`, this node feels in; drawn at the first `tick`.
    phase: Option<u32>,
    /// Cycles counted so far, modulo `FEELER_EVERY`.
    cycle: u32,
}

impl Feeler {
    /// Counts one cycle, and says whether it is this node's feeler cycle. The first call
    /// draws the phase from `rng` (seeded in the simulator, so a run stays deterministic).
    pub fn tick(&mut self, rng: &mut fastrand::Rng) -> bool {
        let phase = *self.phase.get_or_insert_with(|| rng.u32(..FEELER_EVERY));
        let due = self.cycle == phase;
        self.cycle = (self.cycle + 1) % FEELER_EVERY;
        due
    }
}

/// Whether a node whose table holds `entries` entries (vouched for or not) may feel: fewer
/// than `TABLE_CAP_FACTOR` × `kn_limit`.
pub fn wanted(entries: usize, kn_limit: usize) -> bool {
    entries < TABLE_CAP_FACTOR.saturating_mul(kn_limit)
}

/// Whom a feeler asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask<'a> {
    /// `GET /nodes/?limit=` from this seed server.
    Seed(&'a Node),
    /// A lookup of this seed domain (`--seed_domain`, SPEC §12).
    Domain(&'a str),
}

/// One seed server among `seeds`, chosen at random; with none, one seed domain among
/// `domains`; with neither, nobody (`None`).
pub fn choose<'a>(
    seeds: &'a [Node],
    domains: &'a [String],
    rng: &mut fastrand::Rng,
) -> Option<Ask<'a>> {
    if !seeds.is_empty() {
        return Some(Ask::Seed(&seeds[rng.usize(..seeds.len())]));
    }
    if !domains.is_empty() {
        return Some(Ask::Domain(&domains[rng.usize(..domains.len())]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(port: u16) -> Node {
        Node::new("127.0.0.1", port).unwrap()
    }

    #[test]
    fn a_node_feels_once_every_feeler_every_cycles_at_its_own_phase() {
        let mut phases = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut feeler = Feeler::default();
            let due: Vec<u32> = (0..3 * FEELER_EVERY)
                .filter(|_| feeler.tick(&mut rng))
                .collect();
            assert_eq!(due.len(), 3, "{due:?}");
            assert_eq!(due[1] - due[0], FEELER_EVERY);
            assert_eq!(due[2] - due[1], FEELER_EVERY);
            phases.insert(due[0]);
        }
        assert!(phases.len() > 5, "phases spread: {phases:?}");
    }

    #[test]
    fn no_feeler_at_or_above_the_table_cap() {
        assert!(wanted(29, 10));
        assert!(!wanted(30, 10));
        assert!(!wanted(31, 10));
        assert!(!wanted(0, 0), "--kn_limit 0 wants nothing");
    }

    #[test]
    fn a_feeler_asks_a_seed_else_a_domain_else_nobody() {
        let mut rng = fastrand::Rng::with_seed(7);
        let seeds = [n(1), n(2)];
        let domains = ["seed.test".to_string()];
        let mut asked = std::collections::BTreeSet::new();
        for _ in 0..50 {
            match choose(&seeds, &domains, &mut rng) {
                Some(Ask::Seed(seed)) => asked.insert(seed.port),
                other => panic!("{other:?}"),
            };
        }
        assert_eq!(asked.into_iter().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(
            choose(&[], &domains, &mut rng),
            Some(Ask::Domain("seed.test"))
        );
        assert_eq!(choose(&[], &[], &mut rng), None);
    }
}
