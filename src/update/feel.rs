//! The feeler's request in a node's cycle: `feeler.rs` decides when and whom to ask, this
//! asks and learns through the cycle's own `learn`, so SPEC §11 holds for what it finds.

use std::fmt;
use std::sync::PoisonError;

use super::{Lister, Membership, NodeRole, Presence, Updater, say_domain, say_seed};
use crate::feeler::{self, Ask};
use crate::stats::Round;
use crate::transport::{Clock, PeerList, Transport};
use crate::upkeep::Upkeep;

impl<M: Membership, T: Transport, C: Clock> Updater<M, T, C> {
    /// The feeler, in a cycle that ends because this node knows enough: unless its table
    /// already holds `feeler::TABLE_CAP_FACTOR` × `--kn_limit` entries, asks one seed chosen
    /// at random for `GET /nodes/?limit=` `--kn_limit` (with no seed, looks up one seed
    /// domain; with neither, does nothing), and learns at most one new node of the answer,
    /// checked first. A quiet node (`Presence::Quiet`) asks without its own node as the body.
    pub(super) fn feel(
        &self,
        role: &NodeRole,
        presence: Presence,
        upkeep: &mut Upkeep,
        round: &mut Round,
    ) {
        let entries = self.members.snapshot().table.len();
        if !feeler::wanted(entries, role.kn_limit) {
            return;
        }
        let ask = {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            feeler::choose(&role.seeds, &role.seed_domains, &mut rng)
        };
        let me = role.announced(presence);
        let (from, answer): (&dyn fmt::Display, Option<PeerList>) = match &ask {
            None => return,
            Some(Ask::Seed(seed)) => {
                let answer = self.transport.fetch_sample(seed, me, role.kn_limit);
                say_seed(upkeep, seed, answer.as_ref().err(), "feeling");
                (seed, answer.ok())
            }
            Some(Ask::Domain(domain)) => {
                let lookup = self.transport.seed_domain(domain);
                say_domain(upkeep, domain, lookup.as_ref().err());
                (domain, lookup.ok())
            }
        };
        round.feelers += 1;
        let Some(list) = answer else { return };
        let learned = round.learned;
        let lists = vec![(from, list)];
        self.learn(lists, Lister::Feeler, role, presence, upkeep, round);
        round.felt += round.learned - learned;
    }
}
