//! Addresses as integer keys, and a fast hasher for the maps keyed by them. The simulator
//! looks an address up for every entry of every table every round; std's SipHash would be
//! most of the run. No map's iteration order ever reaches a figure.

use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use crate::nodes::{Host, Node};

/// An IPv4 node's address and port as one integer; `None` for IPv6 and hostnames, which the
/// simulator never gives its processes (such an entry is an address where nothing listens).
pub(crate) fn key(node: &Node) -> Option<u64> {
    match node.host {
        Host::Ip(IpAddr::V4(ip)) => Some((u64::from(u32::from(ip)) << 16) | u64::from(node.port)),
        _ => None,
    }
}

/// The multiplicative hasher of rustc's FxHash: one multiply per word, not DoS-resistant,
/// which does not matter for keys the simulator makes itself.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// A `HashMap` with `FxHasher`.
pub(crate) type FxMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;
