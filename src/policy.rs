//! Who may add which node (SPEC §11), as pure decisions: the local-address rule (no SSRF
//! through the table), and the per-source token buckets that bound how fast one source adds
//! new nodes. Time is an `Instant` handed in.

use foldhash::{HashMap, HashMapExt};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use crate::nodes::{Host, Node, Scope, never_peer};

/// SPEC §11's local-address rule, resolved: `--allow_local` as a bool (config decides `auto`:
/// true when the process is bound to a loopback address) and `--public_only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalRule {
    /// Accept loopback (`127/8`, `::1`) and link-local (`169.254/16`, `fe80::/10`) addresses.
    pub allow_local: bool,
    /// Also refuse private (`10/8`, `172.16/12`, `192.168/16`, `fc00::/7`) and shared
    /// (`100.64/10`) addresses.
    pub public_only: bool,
}

/// Why the local-address rule refuses an address; the message names the flag that decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An address that can never be a peer (what a name may resolve to: `0.0.0.0`,
    /// multicast…; see `nodes::never_peer`).
    NeverPeer {
        /// The address, canonical.
        address: IpAddr,
        /// Why, from `nodes::never_peer`.
        reason: &'static str,
    },
    /// Loopback or link-local, without `--allow_local`.
    Local {
        /// The address or `localhost` name, as displayed.
        address: String,
        scope: Scope,
    },
    /// Private or shared, with `--public_only`.
    NotPublic {
        /// The address, as displayed.
        address: String,
        scope: Scope,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NeverPeer { address, reason } => {
                write!(f, "{address} can never be a peer: {reason}")
            }
            Refusal::Local { address, scope } => write!(
                f,
                "{address} is {}: local addresses are accepted only with --allow_local yes \
                 (or --allow_local auto on a process bound to loopback)",
                scope.describe()
            ),
            Refusal::NotPublic { address, scope } => {
                write!(
                    f,
                    "{address} is {}, refused with --public_only",
                    scope.describe()
                )
            }
        }
    }
}

impl std::error::Error for Refusal {}

impl LocalRule {
    /// Whether addresses of `scope` are accepted.
    pub fn permits(&self, scope: Scope) -> bool {
        match scope {
            Scope::Loopback | Scope::LinkLocal => self.allow_local,
            Scope::Private | Scope::Shared => !self.public_only,
            Scope::Public => true,
        }
    }

    /// Decides an IP address: a node's literal, or an address its name resolved to (checked
    /// before any connection is made, SPEC §11).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        if let Some(reason) = never_peer(ip) {
            return Err(Refusal::NeverPeer {
                address: ip,
                reason,
            });
        }
        self.check_scope(Scope::of(ip), || ip.to_string())
    }

    /// Decides a host now: IP literals, and `localhost` names (loopback by RFC 6761). Other
    /// names pass here; each address they resolve to is decided by [`LocalRule::check_ip`]
    /// when they are probed.
    pub fn check_host(&self, host: &Host) -> Result<(), Refusal> {
        match (host, host.scope()) {
            (Host::Ip(ip), _) => self.check_ip(*ip),
            (Host::Name(_), Some(scope)) => self.check_scope(scope, || host.to_string()),
            (Host::Name(_), None) => Ok(()),
        }
    }

    /// Decides a node now, by its host (see [`LocalRule::check_host`]).
    pub fn check_node(&self, node: &Node) -> Result<(), Refusal> {
        self.check_host(&node.host)
    }

    fn check_scope(&self, scope: Scope, address: impl FnOnce() -> String) -> Result<(), Refusal> {
        if self.permits(scope) {
            return Ok(());
        }
        let address = address();
        Err(if scope.is_local() {
            Refusal::Local { address, scope }
        } else {
            Refusal::NotPublic { address, scope }
        })
    }
}

/// A source as SPEC §11's rate counts it: an IPv4 address (`/32`), or an IPv6 `/64` (one
/// subscriber's network: a host gets a whole `/64` and can pick any address in it). An
/// IPv4-mapped IPv6 address counts as the IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    V4(Ipv4Addr),
    /// The first 64 bits.
    V6([u8; 8]),
}

impl SourceKey {
    /// The source an address belongs to.
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip.to_canonical() {
            IpAddr::V4(v4) => SourceKey::V4(v4),
            IpAddr::V6(v6) => {
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                SourceKey::V6(prefix)
            }
        }
    }
}

/// `192.0.2.1`, `2001:db8:1:2::/64`.
impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceKey::V4(v4) => v4.fmt(f),
            SourceKey::V6(prefix) => {
                let mut octets = [0; 16];
                octets[..8].copy_from_slice(prefix);
                write!(f, "{}/64", Ipv6Addr::from(octets))
            }
        }
    }
}

/// A refused take: whole seconds until the source's bucket holds a token again, for the
/// `Retry-After` header. At least 1, at most [`MAX_RETRY_AFTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// Whole seconds, 1..=`MAX_RETRY_AFTER`.
    pub seconds: u64,
}

/// Sources tracked at most by default: about 1 MiB of buckets.
pub const DEFAULT_MAX_SOURCES: usize = 16_384;

/// The longest `Retry-After` given (a day): what a source hears when its bucket never refills
/// (a rate of 0).
pub const MAX_RETRY_AFTER: u64 = 86_400;

/// Slack for floating-point refills: a source that waited its `Retry-After` gets its token.
const EPSILON: f64 = 1e-9;

/// One source's bucket: its tokens as of `at`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-source token buckets (SPEC §11): each source (see [`SourceKey`]) holds up to `burst`
/// tokens, refilled at `rate` tokens per second; adding a new node takes one.
///
/// Memory is bounded: at most `max_sources` buckets are tracked. A bucket that is full again
/// is the same as no bucket, so it is dropped when room is needed. If the tracked sources are
/// still at the cap after that (many sources each with a debt — say an attacker cycling
/// through IPv6 `/64`s), the quarter of buckets holding the most tokens (the smallest debts)
/// are dropped too: those sources start afresh with a full burst, which a source from an
/// untracked `/64` gets anyway. So nobody is ever refused because of the cap (no lock-out),
/// the sources deepest in debt — the ones being limited — are forgotten last, and the work of
/// making room, O(`max_sources`), happens at most once per `max_sources / 4` new sources.
#[derive(Debug, Clone)]
pub struct TokenBuckets {
    rate: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<SourceKey, Bucket>,
    forgiven: u64,
}

impl TokenBuckets {
    /// `rate` tokens per second (0 or less, or not a number: no refill), `burst` tokens at
    /// most (at least 1), at most `max_sources` sources tracked (at least 1).
    pub fn new(rate: f64, burst: u32, max_sources: usize) -> TokenBuckets {
        TokenBuckets {
            rate: if rate > 0.0 { rate } else { 0.0 },
            burst: f64::from(burst.max(1)),
            max_sources: max_sources.max(1),
            buckets: HashMap::new(),
            forgiven: 0,
        }
    }

    /// Takes one token from `source`'s bucket at `now`, or says how long until one is there.
    pub fn try_take(&mut self, source: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        let key = SourceKey::of(source);
        let (rate, burst) = (self.rate, self.burst);
        if let Some(bucket) = self.buckets.get_mut(&key) {
            bucket.tokens = level(bucket, now, rate, burst);
            bucket.at = bucket.at.max(now);
            if bucket.tokens >= 1.0 - EPSILON {
                bucket.tokens = (bucket.tokens - 1.0).max(0.0);
                return Ok(());
            }
            let wait = (1.0 - bucket.tokens) / rate;
            let seconds = if wait.is_finite() {
                (wait.ceil() as u64).clamp(1, MAX_RETRY_AFTER)
            } else {
                MAX_RETRY_AFTER
            };
            return Err(RetryAfter { seconds });
        }
        if self.buckets.len() >= self.max_sources {
            self.make_room(now);
        }
        self.buckets.insert(
            key,
            Bucket {
                tokens: burst - 1.0,
                at: now,
            },
        );
        Ok(())
    }

    /// Drops the buckets that are full again at `now` (they hold nothing a new bucket would
    /// not). Optional: the cap makes room by itself; a caller may prune once per round to
    /// keep memory low.
    pub fn prune(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .retain(|_, bucket| level(bucket, now, rate, burst) < burst - EPSILON);
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Buckets dropped with a debt because the cap was reached (see the type's docs).
    pub fn forgiven(&self) -> u64 {
        self.forgiven
    }

    fn make_room(&mut self, now: Instant) {
        self.prune(now);
        let quarter = (self.max_sources / 4).max(1);
        if self.buckets.len() + quarter <= self.max_sources {
            return;
        }
        let (rate, burst) = (self.rate, self.burst);
        let mut levels: Vec<f64> = self
            .buckets
            .values()
            .map(|bucket| level(bucket, now, rate, burst))
            .collect();
        let nth = levels.len().saturating_sub(quarter);
        let (_, threshold, _) = levels.select_nth_unstable_by(nth, f64::total_cmp);
        let threshold = *threshold;
        let before = self.buckets.len();
        self.buckets
            .retain(|_, bucket| level(bucket, now, rate, burst) < threshold);
        self.forgiven += (before - self.buckets.len()) as u64;
    }
}

/// A bucket's tokens at `now`.
fn level(bucket: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + rate * elapsed).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn node(host: &str) -> Node {
        Node::new(host, 8).unwrap()
    }

    const STRICT: LocalRule = LocalRule {
        allow_local: false,
        public_only: false,
    };

    #[test]
    fn local_addresses_need_allow_local_and_say_so() {
        for host in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "169.254.169.254",
            "fe80::1",
        ] {
            let refusal = STRICT.check_node(&node(host)).unwrap_err();
            assert!(
                matches!(refusal, Refusal::Local { .. }),
                "{host}: {refusal:?}"
            );
            let message = refusal.to_string();
            assert!(message.contains("--allow_local yes"), "{message}");
            assert!(message.starts_with(host), "{message}");
        }
        let refusal = STRICT.check_ip(ip("::ffff:169.254.169.254")).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "169.254.169.254 is a link-local address: local addresses are accepted only with \
             --allow_local yes (or --allow_local auto on a process bound to loopback)"
        );
        let open = LocalRule {
            allow_local: true,
            public_only: false,
        };
        for host in ["127.0.0.1", "::1", "169.254.169.254", "localhost"] {
            assert_eq!(open.check_node(&node(host)), Ok(()), "{host}");
        }
    }

    #[test]
    fn public_only_refuses_private_and_shared_ranges_too() {
        let rule = LocalRule {
            allow_local: true,
            public_only: true,
        };
        for host in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "fd00::1",
            "100.64.0.1",
        ] {
            let refusal = rule.check_node(&node(host)).unwrap_err();
            assert!(matches!(refusal, Refusal::NotPublic { .. }), "{host}");
            assert!(refusal.to_string().contains("--public_only"), "{refusal}");
        }
        assert_eq!(rule.check_node(&node("127.0.0.1")), Ok(()));
        for host in ["10.1.2.3", "100.64.0.1", "192.0.2.1", "2001:db8::1"] {
            assert_eq!(STRICT.check_node(&node(host)), Ok(()), "{host}");
        }
    }

    #[test]
    fn names_pass_until_resolved_except_localhost() {
        assert_eq!(STRICT.check_node(&node("seed.example.com")), Ok(()));
        for name in ["localhost", "api.localhost"] {
            let refusal = STRICT.check_node(&node(name)).unwrap_err();
            assert!(refusal.to_string().starts_with(name), "{refusal}");
        }
        // What a name resolves to is held to the rule before any connection…
        assert!(STRICT.check_ip(ip("127.0.0.53")).is_err());
        assert!(STRICT.check_ip(ip("::ffff:127.0.0.1")).is_err());
        // …and an address that can never be a peer is refused whatever the flags.
        let open = LocalRule {
            allow_local: true,
            public_only: false,
        };
        for resolved in ["0.0.0.0", "::", "224.0.0.1", "255.255.255.255"] {
            let refusal = open.check_ip(ip(resolved)).unwrap_err();
            assert!(matches!(refusal, Refusal::NeverPeer { .. }), "{resolved}");
            assert!(refusal.to_string().contains("can never be a peer"));
        }
    }

    #[test]
    fn a_source_gets_its_burst_then_the_rate_with_retry_after() {
        let start = Instant::now();
        let mut buckets = TokenBuckets::new(2.0, 3, 100);
        let source = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(buckets.try_take(source, start), Ok(()));
        }
        assert_eq!(
            buckets.try_take(source, start),
            Err(RetryAfter { seconds: 1 }),
            "half a second to the next token, rounded up"
        );
        // Another source is unaffected.
        assert_eq!(buckets.try_take(ip("192.0.2.2"), start), Ok(()));
        // Half a second later, one token.
        let later = start + Duration::from_millis(500);
        assert_eq!(buckets.try_take(source, later), Ok(()));
        assert!(buckets.try_take(source, later).is_err());
        // After a long pause the bucket is full again, not fuller.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(buckets.try_take(source, much_later), Ok(()));
        }
        assert!(buckets.try_take(source, much_later).is_err());
    }

    #[test]
    fn retry_after_is_whole_seconds_until_a_token_is_there() {
        let start = Instant::now();
        let mut slow = TokenBuckets::new(0.1, 1, 100);
        let source = ip("192.0.2.1");
        assert_eq!(slow.try_take(source, start), Ok(()));
        assert_eq!(
            slow.try_take(source, start),
            Err(RetryAfter { seconds: 10 })
        );
        let waited = start + Duration::from_millis(2500);
        assert_eq!(
            slow.try_take(source, waited),
            Err(RetryAfter { seconds: 8 })
        );
        // Waiting exactly as told is enough.
        assert_eq!(
            slow.try_take(source, waited + Duration::from_secs(8)),
            Ok(())
        );
        // A clock handed in out of order refills nothing and breaks nothing.
        assert!(slow.try_take(source, start).is_err());

        let never = &mut TokenBuckets::new(0.0, 1, 100);
        assert_eq!(never.try_take(source, start), Ok(()));
        assert_eq!(
            never.try_take(source, start + Duration::from_secs(999_999)),
            Err(RetryAfter {
                seconds: MAX_RETRY_AFTER
            })
        );
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        let start = Instant::now();
        let mut buckets = TokenBuckets::new(1.0, 1, 100);
        assert_eq!(buckets.try_take(ip("2001:db8:1:2::1"), start), Ok(()));
        assert!(
            buckets.try_take(ip("2001:db8:1:2:ffff::9"), start).is_err(),
            "same /64"
        );
        assert_eq!(buckets.try_take(ip("2001:db8:1:3::1"), start), Ok(()));
        assert_eq!(buckets.try_take(ip("192.0.2.1"), start), Ok(()));
        assert!(
            buckets.try_take(ip("::ffff:192.0.2.1"), start).is_err(),
            "the IPv4-mapped spelling is the same source"
        );
        assert_eq!(buckets.try_take(ip("192.0.2.2"), start), Ok(()));
        assert_eq!(
            SourceKey::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );
    }

    #[test]
    fn memory_is_bounded_and_the_cap_locks_nobody_out() {
        let start = Instant::now();
        let cap = 64;
        let mut buckets = TokenBuckets::new(0.001, 10, cap);
        // A source deep in debt.
        let limited = ip("192.0.2.1");
        for _ in 0..10 {
            buckets.try_take(limited, start).unwrap();
        }
        assert!(buckets.try_take(limited, start).is_err());
        // An attacker cycling through 200,000 /64s, one token each.
        for i in 0..200_000u64 {
            let octets = (0x2001_0db8_0000_0000_u64 + i).to_be_bytes();
            let mut address = [0u8; 16];
            address[..8].copy_from_slice(&octets);
            let source = IpAddr::from(address);
            assert_eq!(buckets.try_take(source, start), Ok(()), "never locked out");
            assert!(buckets.tracked() <= cap);
        }
        assert!(buckets.forgiven() > 0);
        // The source in debt is still limited: the smallest debts were forgotten first.
        assert!(buckets.try_take(limited, start).is_err());
        // A newcomer still gets in.
        assert_eq!(buckets.try_take(ip("198.51.100.1"), start), Ok(()));
    }

    #[test]
    fn buckets_full_again_are_dropped() {
        let start = Instant::now();
        let mut buckets = TokenBuckets::new(10.0, 5, 4);
        for i in 1..=4 {
            buckets
                .try_take(ip(&format!("192.0.2.{i}")), start)
                .unwrap();
        }
        assert_eq!(buckets.tracked(), 4);
        buckets.prune(start);
        assert_eq!(buckets.tracked(), 4, "each still owes a token");
        buckets.prune(start + Duration::from_millis(100));
        assert_eq!(buckets.tracked(), 0);
        assert_eq!(buckets.forgiven(), 0);
    }
}
