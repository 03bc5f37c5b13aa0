//! Response-rate limiting for DNS over UDP (`--seed_rrl`): what keeps a seed from being a
//! reflector. A UDP query's source address can be forged, so an attacker can have the seed
//! send its answers (up to 24 times a query's size, within 1,232 bytes) to a victim. Each
//! client network (IPv4 `/24`, IPv6 `/56`, BIND's defaults; NSD takes IPv6 `/64`) gets a token
//! bucket of `--seed_rrl` answers per second; past it, every second query from that network
//! is answered with
//! an empty, truncated reply (a *slip*: no bigger than the query, `TC` set, so that a real
//! client behind a busy resolver asks again over TCP, whose handshake proves its address) and
//! the others are dropped. TCP is never limited here (it has its own connection bounds).
//!
//! The idea and the grouping are those of Vixie and Schryver's DNS RRL (ISC technical note
//! 2012-1), as BIND (`rate-limit { responses-per-second; slip; }`) and NSD (`rrl-ratelimit`,
//! `rrl-slip`) implement it; this one counts every answer to a network alike, whatever the
//! question, which is simpler and stricter.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use crate::policy::TokenBuckets;

/// Client networks tracked at once; beyond, the ones least in debt are forgotten (see
/// `TokenBuckets`). About 100 bytes each.
const MAX_NETWORKS: usize = 65_536;

/// Of a network's queries over the limit, one in this many gets a slip (BIND's and NSD's
/// default 2).
const SLIP: u8 = 2;

/// Counters of queries over the limit, by a hash of the network: a fixed table, so that
/// forged sources cannot grow it; two networks sharing a counter only shift which of their
/// queries slip.
const SLIP_COUNTERS: usize = 4096;

/// What to do with one UDP query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Within the limit: answer it.
    Answer,
    /// Over the limit: send the empty truncated reply.
    Slip,
    /// Over the limit: send nothing.
    Drop,
}

/// The token buckets of `--seed_rrl`, one per client network.
#[derive(Debug)]
pub struct ResponseLimit {
    buckets: TokenBuckets,
    /// Queries over the limit so far, per network (by `slot`), for choosing the slips.
    over: Box<[u8; SLIP_COUNTERS]>,
}

impl ResponseLimit {
    /// `per_second` answers per second to one client network, as many at once; none when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32) -> Option<ResponseLimit> {
        (per_second > 0).then(|| ResponseLimit {
            buckets: TokenBuckets::new(f64::from(per_second), per_second, MAX_NETWORKS),
            over: Box::new([0; SLIP_COUNTERS]),
        })
    }

    /// The verdict for a query from `source` at `now`.
    pub fn judge(&mut self, source: IpAddr, now: Instant) -> Action {
        let network = network(source);
        if self.buckets.try_take(network, now).is_ok() {
            return Action::Answer;
        }
        let over = &mut self.over[slot(network)];
        *over = over.wrapping_add(1) % SLIP;
        if *over == 0 {
            Action::Slip
        } else {
            Action::Drop
        }
    }
}

/// The slip counter of `network` (an address from `network()`): its bits above the host
/// part, folded to `SLIP_COUNTERS` entries.
fn slot(network: IpAddr) -> usize {
    let bits = match network {
        IpAddr::V4(v4) => u128::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => u128::from(v6) >> 72,
    };
    let folded = bits ^ (bits >> 12) ^ (bits >> 24) ^ (bits >> 36) ^ (bits >> 48);
    (folded % SLIP_COUNTERS as u128) as usize
}

/// The client network of `ip`, as an address with the host bits cleared: IPv4 `/24`, IPv6
/// `/56` (`TokenBuckets` keys IPv6 by `/64`, so a `/56` with zeroes below is one key).
fn network(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & !0xff)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 72) - 1))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_network_gets_its_rate_then_slips_and_drops_alternately() {
        let mut limit = ResponseLimit::new(5).unwrap();
        let now = Instant::now();
        let verdicts: Vec<Action> = (0..9)
            .map(|i| limit.judge(ip(&format!("192.0.2.{i}")), now))
            .collect();
        use Action::*;
        assert_eq!(
            verdicts,
            [
                Answer, Answer, Answer, Answer, Answer, Drop, Slip, Drop, Slip
            ]
        );
        // Each network over the limit has its own alternation.
        assert_eq!(limit.judge(ip("198.51.100.1"), now), Answer);
        for _ in 0..4 {
            limit.judge(ip("198.51.100.1"), now);
        }
        assert_eq!(limit.judge(ip("198.51.100.1"), now), Drop);
        assert_eq!(limit.judge(ip("192.0.2.1"), now), Drop);
        assert_eq!(limit.judge(ip("198.51.100.1"), now), Slip);
        assert_eq!(limit.judge(ip("192.0.2.1"), now), Slip);
        // Another /24 is unaffected; the first gets one answer per 1/5 s again.
        assert_eq!(limit.judge(ip("192.0.3.1"), now), Answer);
        assert_eq!(
            limit.judge(ip("192.0.2.1"), now + Duration::from_millis(210)),
            Answer
        );
    }

    #[test]
    fn ipv6_networks_are_slash_56_and_mapped_addresses_are_ipv4() {
        let mut limit = ResponseLimit::new(1).unwrap();
        let now = Instant::now();
        assert_eq!(limit.judge(ip("2001:db8:0:1::1"), now), Action::Answer);
        // The same /56, another /64: the same bucket.
        assert_ne!(limit.judge(ip("2001:db8:0:ff::1"), now), Action::Answer);
        assert_eq!(limit.judge(ip("2001:db8:0:100::1"), now), Action::Answer);
        assert_eq!(limit.judge(ip("::ffff:198.51.100.7"), now), Action::Answer);
        assert_ne!(limit.judge(ip("198.51.100.200"), now), Action::Answer);
    }

    #[test]
    fn zero_is_no_limit() {
        assert!(ResponseLimit::new(0).is_none());
    }
}
