//! Response-rate limiting for DNS over UDP (`--seed_rrl`): what keeps a seed from being a
//! reflector. A UDP query's source address can be forged, so an attacker can have the seed
//! send its answers (up to 24 times a query's size, within 1,232 bytes) to a victim. Each
//! client network (IPv4 `/24`, IPv6 `/56`, as BIND's and NSD's RRL group them) gets a token
//! bucket of `--seed_rrl` answers per second; past it, every second query is answered with
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

/// Of the queries over the limit, one in this many gets a slip (BIND's and NSD's default 2).
const SLIP: u64 = 2;

/// What to do with one UDP query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
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
    /// Queries over the limit so far, for choosing the slips.
    over: u64,
}

impl ResponseLimit {
    /// `per_second` answers per second to one client network, as many at once; none when
    /// `per_second` is 0 (no limit).
    pub fn new(per_second: u32) -> Option<ResponseLimit> {
        (per_second > 0).then(|| ResponseLimit {
            buckets: TokenBuckets::new(f64::from(per_second), per_second, MAX_NETWORKS),
            over: 0,
        })
    }

    /// The verdict for a query from `source` at `now`.
    pub fn judge(&mut self, source: IpAddr, now: Instant) -> Verdict {
        if self.buckets.try_take(network(source), now).is_ok() {
            return Verdict::Answer;
        }
        self.over += 1;
        if self.over.is_multiple_of(SLIP) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
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
        let verdicts: Vec<Verdict> = (0..9)
            .map(|i| limit.judge(ip(&format!("192.0.2.{i}")), now))
            .collect();
        use Verdict::*;
        assert_eq!(
            verdicts,
            [
                Answer, Answer, Answer, Answer, Answer, Drop, Slip, Drop, Slip
            ]
        );
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
        assert_eq!(limit.judge(ip("2001:db8:0:1::1"), now), Verdict::Answer);
        // The same /56, another /64: the same bucket.
        assert_ne!(limit.judge(ip("2001:db8:0:ff::1"), now), Verdict::Answer);
        assert_eq!(limit.judge(ip("2001:db8:0:100::1"), now), Verdict::Answer);
        assert_eq!(limit.judge(ip("::ffff:198.51.100.7"), now), Verdict::Answer);
        assert_ne!(limit.judge(ip("198.51.100.200"), now), Verdict::Answer);
    }

    #[test]
    fn zero_is_no_limit() {
        assert!(ResponseLimit::new(0).is_none());
    }
}
