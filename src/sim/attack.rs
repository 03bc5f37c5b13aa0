//! The adversaries of SPEC §11, as the simulator plays them. Their behaviour is theirs, not
//! seedmesh's, so it is written here; everything the honest processes do about them goes
//! through the real routes, store and rounds.
//!
//! - one-host: one IP address, `--attack_size` ports (Heilman et al. 2015's one attacker);
//! - one-group: `--attack_size` IP addresses of one /16, one port each;
//!
//! both register every address with every seed at the start of every round from
//! `--attack_round` on, answer every check, and answer `GET /nodes/` with their own
//! addresses only, so that a newcomer who asks one learns only more of them;
//! - lying-peer: one node that takes part in the rounds like any other, but answers every
//!   `GET /nodes/` with 1,000 freshly fabricated addresses where nothing listens.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::nodes::{Host, Node};
use crate::response::{Payload, Response};

use super::Attack;
use super::hash::key;
use super::world::{Kind, Simulation, Target, lock};

/// Fabricated addresses in each of the lying peer's answers.
pub(crate) const FABRICATED_PER_ANSWER: usize = 1000;
/// Prepared `GET /nodes/` answers the sybils take turns with.
const PREPARED_LISTS: usize = 8;

/// The adversary of one simulation.
pub(crate) struct Attacker {
    kind: Attack,
    /// The adversary's addresses (one-host, one-group).
    sybils: Vec<Node>,
    /// `GET /nodes/` answers listing sybils only.
    lists: Vec<Vec<u8>>,
    next_list: AtomicUsize,
    /// Draws the lying peer's fabricated addresses.
    rng: Mutex<fastrand::Rng>,
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Host {
    Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

impl Attacker {
    /// Sets the attack up in `sim`: its addresses (in 127.255.0.0/16, a group no honest
    /// node is in), or the lying peer's process (127.254.0.1).
    pub(crate) fn new(sim: &mut Simulation) -> Attacker {
        let kind = sim.config.attack;
        let size = sim.config.attack_size;
        let sybils: Vec<Node> = match kind {
            Attack::OneHost => (0..size.min(64_511))
                .map(|k| Node {
                    host: v4(127, 255, 0, 1),
                    port: 1024 + k as u16,
                })
                .collect(),
            Attack::OneGroup => (0..size.min(65_535))
                .map(|k| {
                    let k = k + 1;
                    Node {
                        host: v4(127, 255, (k >> 8) as u8, k as u8),
                        port: 55000,
                    }
                })
                .collect(),
            Attack::LyingPeer => {
                let liar = Node {
                    host: v4(127, 254, 0, 1),
                    port: 55000,
                };
                sim.add(liar, Kind::Liar);
                Vec::new()
            }
            Attack::None => Vec::new(),
        };
        for (k, sybil) in sybils.iter().enumerate() {
            if let Some(address) = key(sybil) {
                sim.index.insert(address, Target::Sybil(k as u32));
            }
        }
        let lists = if sybils.is_empty() {
            Vec::new()
        } else {
            (0..PREPARED_LISTS)
                .map(|_| {
                    let sample = sim
                        .rng
                        .choose_multiple(sybils.iter(), sim.config.list_limit);
                    serde_json::to_vec(&sample).unwrap_or_default()
                })
                .collect()
        };
        Attacker {
            kind,
            sybils,
            lists,
            next_list: AtomicUsize::new(0),
            rng: Mutex::new(fastrand::Rng::with_seed(sim.rng.u64(..))),
        }
    }

    /// The attack's moves at the start of a round: every address registers with every live
    /// seed, through the seed's own routes.
    pub(crate) fn act(&self, sim: &Simulation, now: std::time::Instant) {
        if !matches!(self.kind, Attack::OneHost | Attack::OneGroup) {
            return;
        }
        let seeds: Vec<usize> = (0..sim.procs.len())
            .filter(|&i| sim.procs[i].kind == Kind::Seed && sim.procs[i].alive())
            .collect();
        for node in &self.sybils {
            let Host::Ip(ip) = node.host else { continue };
            for &seed in &seeds {
                let answer = sim.serve(seed, "POST", "/", Some(node), ip, now);
                let traffic = &sim.traffic[seed];
                traffic.requests_in.fetch_add(1, Relaxed);
                traffic.bytes_in.fetch_add(
                    super::net::REQUEST_HEAD_BYTES + super::net::json_len(node),
                    Relaxed,
                );
                traffic.bytes_out.fetch_add(
                    super::net::ANSWER_HEAD_BYTES + super::net::body_len(&answer),
                    Relaxed,
                );
            }
        }
    }

    /// A sybil's answer: every check succeeds, and `GET /nodes/` lists sybils only, the
    /// prepared lists taken in turn, or at random with `rng` (a request's own, in a slice).
    pub(crate) fn answer(
        &self,
        method: &str,
        target: &str,
        body: Option<&Node>,
        rng: Option<&mut fastrand::Rng>,
    ) -> Response {
        match (method, target.starts_with("/nodes")) {
            ("GET", true) if !self.lists.is_empty() => {
                let i = match rng {
                    Some(rng) => rng.usize(..self.lists.len()),
                    None => self.next_list.fetch_add(1, Relaxed) % self.lists.len(),
                };
                owned(self.lists[i].clone())
            }
            ("POST", false) => match body {
                Some(node) => Response::json(200, node),
                None => Response::empty(200),
            },
            _ => Response::empty(200),
        }
    }

    /// The lying peer's `GET /nodes/` answer: 1,000 fresh addresses in the honest nodes'
    /// groups (127.1–127.253) on ports where no simulated node listens, drawn from `rng` (a
    /// request's own, in a slice) or the attacker's.
    pub(crate) fn fabricated_list(&self, rng: Option<&mut fastrand::Rng>) -> Response {
        let mut shared;
        let rng = match rng {
            Some(rng) => rng,
            None => {
                shared = lock(&self.rng);
                &mut *shared
            }
        };
        let fabricated: Vec<Node> = (0..FABRICATED_PER_ANSWER)
            .map(|_| Node {
                host: v4(127, rng.u8(1..=253), rng.u8(..), rng.u8(..)),
                port: rng.u16(1024..=54_999),
            })
            .collect();
        owned(serde_json::to_vec(&fabricated).unwrap_or_default())
    }
}

fn owned(bytes: Vec<u8>) -> Response {
    Response {
        body: Payload::Owned(bytes),
        content_type: Some(crate::response::JSON),
        ..Response::empty(200)
    }
}
