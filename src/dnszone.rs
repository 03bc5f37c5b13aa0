//! The zone a seed answers for (SPEC §12) and its names: the apex, `_seedmesh._tcp` under it,
//! `ns`, and the names that spell an IP address in one label (`127-0-0-1.Z`), which any seed
//! of the zone answers from the name alone. `dnsseed` answers queries against it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;

use crate::nodes::{Host, NodeError, never_peer};

/// The label of the service under the apex: `_seedmesh._tcp.Z`.
pub const SERVICE: &str = "_seedmesh._tcp";

/// Why a zone name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError(pub String);

impl std::fmt::Display for ZoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ZoneError {}

/// Checks a `--seed_zone` value and gives it back lowercased, without a final dot: a
/// hostname (RFC 1123 labels) short enough that its longest names fit the 255-byte limit.
pub fn parse_zone(text: &str) -> Result<String, ZoneError> {
    let name = text.strip_suffix('.').unwrap_or(text);
    match Host::parse(name) {
        Ok(Host::Name(name)) => {
            // The longest name under the apex: a 32-digit IPv6 label.
            if name.len() + 34 > 253 {
                return Err(ZoneError(format!("{text:?} is too long for a zone name")));
            }
            Ok(name.into_string())
        }
        Ok(Host::Ip(_)) => Err(ZoneError(format!(
            "{text:?} is an IP address, not a zone name"
        ))),
        Err(NodeError::BadAddress { reason, .. }) => Err(ZoneError(format!(
            "{text:?} is not a valid zone name: {reason}"
        ))),
        Err(e) => Err(ZoneError(e.to_string())),
    }
}

/// The zone a seed answers for, with the names it answers precomputed.
#[derive(Debug, Clone)]
pub struct Zone {
    pub(crate) apex: Name,
    pub(crate) service: Name,
    /// The zone's name servers (NS records at the apex); the first is the SOA's MNAME.
    pub(crate) ns: Vec<Name>,
    pub(crate) hostmaster: Name,
    /// The seed's own address, the answer for `ns.Z`; none when it listens on all interfaces.
    pub(crate) ns_addr: Option<IpAddr>,
    /// Nodes on this port are the apex's `A`/`AAAA` answers.
    pub(crate) seed_port: u16,
    /// The SOA serial (RFC 1982 arithmetic; the caller's choice, e.g. the start time).
    pub(crate) serial: u32,
}

/// The facts a zone is made of.
#[derive(Debug, Clone)]
pub struct ZoneConfig {
    /// The apex, as `parse_zone` gives it.
    pub name: String,
    /// `--seed_port`.
    pub seed_port: u16,
    /// The address `ns.Z` answers, if any.
    pub ns_addr: Option<IpAddr>,
    /// The name servers of the zone as the parent zone delegates it (`--seed_ns`); empty:
    /// `ns.Z` alone.
    pub ns_names: Vec<String>,
    /// The SOA serial number (RFC 1982 arithmetic), e.g. the start time in Unix seconds.
    pub serial: u32,
}

impl Zone {
    /// Builds the zone; fails when the zone name or a name server's name is not a valid
    /// hostname (RFC 1123) or is too long for the names under it.
    pub fn new(config: &ZoneConfig) -> Result<Zone, ZoneError> {
        let text = parse_zone(&config.name)?;
        let bad = |e: hickory_proto::ProtoError| ZoneError(format!("{text:?}: {e}"));
        let apex = Name::from_ascii(format!("{text}."))
            .map_err(bad)?
            .to_lowercase();
        let under = |relative: &str| {
            Name::from_ascii(relative)
                .and_then(|name| name.append_domain(&apex))
                .map_err(bad)
        };
        let ns_default = under("ns")?;
        let mut ns = Vec::new();
        for text in &config.ns_names {
            let host = text.strip_suffix('.').unwrap_or(text);
            let name = Name::from_ascii(format!("{host}."))
                .map_err(|e| ZoneError(format!("name server {text:?}: {e}")))?;
            ns.push(name.to_lowercase());
        }
        if ns.is_empty() {
            ns.push(ns_default);
        }
        Ok(Zone {
            service: under(SERVICE)?,
            ns,
            hostmaster: under("hostmaster")?,
            apex,
            ns_addr: config.ns_addr.filter(|ip| !ip.is_unspecified()),
            seed_port: config.seed_port,
            serial: config.serial,
        })
    }

    /// The apex, as a fully qualified name.
    pub fn apex(&self) -> &Name {
        &self.apex
    }

    /// `_seedmesh._tcp.Z`, the name of the `SRV` records.
    pub fn service(&self) -> &Name {
        &self.service
    }

    /// `--seed_port`: healthy nodes on it are the apex's `A`/`AAAA` answers.
    pub fn seed_port(&self) -> u16 {
        self.seed_port
    }

    /// The name inside the zone that stands for `ip`: `127-0-0-1.Z`.
    pub fn address_name(&self, ip: IpAddr) -> Name {
        Name::from_ascii(ip_label(ip))
            .and_then(|label| label.append_domain(&self.apex))
            .unwrap_or_else(|_| unreachable!("an IP label and a checked zone make a valid name"))
    }

    /// Whether `ip` is written in one of the zone's `--seed_ns` names (`127-0-0-2.Z`), so
    /// that the name server's own address name answers. O(name servers).
    pub(crate) fn is_ns_address(&self, ip: IpAddr) -> bool {
        self.ns
            .iter()
            .any(|name| self.classify(name) == Place::Address(ip))
    }

    /// What the name `qname` is in this zone.
    pub(crate) fn classify(&self, qname: &Name) -> Place {
        if !self.apex.zone_of(qname) {
            return Place::Outside;
        }
        let labels: Vec<&[u8]> = qname.iter().collect();
        let relative = &labels[..labels.len() - self.apex.iter().count()];
        let is = |label: &[u8], text: &str| label.eq_ignore_ascii_case(text.as_bytes());
        match relative {
            [] => Place::Apex,
            [a, b] if is(a, "_seedmesh") && is(b, "_tcp") => Place::Service,
            [a] if is(a, "_tcp") => Place::EmptyNonTerminal,
            [a] if is(a, "ns") => Place::NameServer,
            [a] => parse_ip_label(a).map_or(Place::Unknown, Place::Address),
            _ => Place::Unknown,
        }
    }
}

/// What a query name is in the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Outside,
    Apex,
    Service,
    EmptyNonTerminal,
    NameServer,
    Address(IpAddr),
    Unknown,
}

/// The label that stands for `ip`: `127-0-0-1`, or the 32 hex digits of an IPv6 address.
/// Both are valid hostname labels (letters, digits, inner `-`; RFC 1123), as stub resolvers
/// insist of the names they return.
pub fn ip_label(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => {
            let [a, b, c, d] = ip.octets();
            format!("{a}-{b}-{c}-{d}")
        }
        IpAddr::V6(ip) => format!("{:032x}", u128::from(ip)),
    }
}

/// The address an `ip_label` stands for; none for any other spelling (one name per address)
/// and for addresses that cannot be nodes (SPEC §1: unspecified, multicast, …).
pub fn parse_ip_label(label: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(label).ok()?.to_ascii_lowercase();
    let ip = if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        IpAddr::V6(Ipv6Addr::from(u128::from_str_radix(&text, 16).ok()?))
    } else {
        let mut octets = [0u8; 4];
        let mut parts = text.split('-');
        for octet in &mut octets {
            *octet = parts.next()?.parse().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        IpAddr::V4(Ipv4Addr::from(octets))
    };
    if ip_label(ip) != text {
        return None;
    }
    // SPEC §1 refuses these as node addresses: no name stands for them.
    if never_peer(ip).is_some() {
        return None;
    }
    match Host::parse(&ip.to_string()) {
        Ok(Host::Ip(canonical)) if canonical == ip => Some(ip),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_labels_round_trip_and_have_one_spelling() {
        for text in ["127.0.0.1", "203.0.113.255", "::1", "2001:db8::42"] {
            let ip: IpAddr = text.parse().unwrap();
            let label = ip_label(ip);
            assert_eq!(parse_ip_label(label.as_bytes()), Some(ip), "{label}");
            assert_eq!(parse_ip_label(label.to_uppercase().as_bytes()), Some(ip));
        }
        assert_eq!(ip_label("::1".parse().unwrap()).len(), 32);
        for bad in [
            "127-00-0-1",
            "127-0-0",
            "127-0-0-1-5",
            "0-0-0-0",
            "224-0-0-1",
            "x",
            "",
        ] {
            assert_eq!(parse_ip_label(bad.as_bytes()), None, "{bad}");
        }
    }
}
