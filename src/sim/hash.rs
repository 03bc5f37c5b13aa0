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

/// The multiplicative hasher of rustc's FxHash, one multiply per word, finished with
/// MurmurHash3's 64-bit mixer so that the low bits (which pick a bucket) depend on every bit
/// of the key (the keys' low 16 bits are a port that most addresses share). Not
/// DoS-resistant, which does not matter for keys the simulator makes itself.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
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
