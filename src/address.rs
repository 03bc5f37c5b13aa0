//! The address of a node (SPEC §1, §11): parsing with a reason in the user's terms for every
//! refusal, the canonical form that decides identity, the addresses that can never be a peer,
//! the address scope that §11's local-address rule reads, and the address group that §11's
//! table and samples spread over.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::nodes::NodeError;

/// The address part of a node, in canonical form (SPEC §1).
///
/// Two hosts are the same host exactly when they are equal: IP literals hold Rust's canonical
/// form (an IPv4-mapped IPv6 address is held as the IPv4 address it maps), names are lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// An IP literal; displayed in Rust's canonical form (`::1`, not `0:0:0:0:0:0:0:1`).
    /// Never an IPv4-mapped IPv6 address when built by [`Host::parse`] or [`Host::from_ip`].
    Ip(IpAddr),
    /// An RFC 1123 hostname, lowercased.
    Name(Box<str>),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(name) => f.write_str(name),
        }
    }
}

/// Where an IP address lives, as §11's local-address rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `127.0.0.0/8`, `::1`: this machine.
    Loopback,
    /// `169.254.0.0/16` (cloud metadata services live there), `fe80::/10`: this link.
    LinkLocal,
    /// `10/8`, `172.16/12`, `192.168/16` (RFC 1918), `fc00::/7` (RFC 4193 unique local) and the
    /// deprecated site-local `fec0::/10` (RFC 3879).
    Private,
    /// `100.64.0.0/10`: carrier-grade NAT (RFC 6598).
    Shared,
    /// Everything else.
    Public,
}

impl Scope {
    /// The scope of `ip`, an IPv4-mapped IPv6 address counting as the IPv4 address it maps.
    pub fn of(ip: IpAddr) -> Scope {
        match embedded_v4(ip).map_or(ip.to_canonical(), IpAddr::V4) {
            IpAddr::V4(ip) => {
                let [a, b, ..] = ip.octets();
                if a == 127 {
                    Scope::Loopback
                } else if a == 169 && b == 254 {
                    Scope::LinkLocal
                } else if a == 10 || (a == 172 && b & 0xf0 == 16) || (a == 192 && b == 168) {
                    Scope::Private
                } else if a == 100 && b & 0xc0 == 64 {
                    Scope::Shared
                } else {
                    Scope::Public
                }
            }
            IpAddr::V6(ip) => {
                let first = ip.segments()[0];
                if ip == Ipv6Addr::LOCALHOST {
                    Scope::Loopback
                } else if first & 0xffc0 == 0xfe80 {
                    Scope::LinkLocal
                } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
                    Scope::Private
                } else {
                    Scope::Public
                }
            }
        }
    }

    /// The scope's name in a sentence: "a loopback address".
    pub fn describe(self) -> &'static str {
        match self {
            Scope::Loopback => "a loopback address",
            Scope::LinkLocal => "a link-local address",
            Scope::Private => "a private address",
            Scope::Shared => "a shared (carrier-grade NAT) address",
            Scope::Public => "a public address",
        }
    }

    /// True for loopback and link-local: the scopes `--allow_local` decides.
    pub fn is_local(self) -> bool {
        matches!(self, Scope::Loopback | Scope::LinkLocal)
    }
}

/// Why `ip` can never be a peer, or `None` when it can (SPEC §1): the unspecified addresses,
/// "this network" `0.0.0.0/8` (RFC 1122 §3.2.1.3: a source, never a destination; Linux even
/// connects `0.0.0.0` to itself), multicast `224.0.0.0/4` and `ff00::/8`, the broadcast address
/// `255.255.255.255` and the reserved `240.0.0.0/4` (RFC 1112). An IPv4-mapped address is judged
/// as the IPv4 address it maps.
pub fn never_peer(ip: IpAddr) -> Option<&'static str> {
    let ip = embedded_v4(ip).map_or(ip.to_canonical(), IpAddr::V4);
    if ip.is_unspecified() {
        return Some("the unspecified address is not a node address");
    }
    match ip {
        IpAddr::V4(v4) => {
            let a = v4.octets()[0];
            if v4 == Ipv4Addr::BROADCAST {
                Some("the broadcast address is not a node address")
            } else if v4.is_multicast() {
                Some("a multicast address (224.0.0.0/4) is not a node address")
            } else if a >= 240 {
                Some("the reserved range 240.0.0.0/4 is not a node address")
            } else if a == 0 {
                Some("0.0.0.0/8 means \"this network\" and is never a destination (RFC 1122)")
            } else {
                None
            }
        }
        IpAddr::V6(v6) if v6.is_multicast() => {
            Some("a multicast address (ff00::/8) is not a node address")
        }
        IpAddr::V6(_) => None,
    }
}

/// The IPv4 address an IPv6 address carries, for the spellings that reach it: IPv4-mapped
/// (`::ffff:0:0/96`, RFC 4291), IPv4-compatible (`::/96`, deprecated, but routed by some
/// stacks), SIIT (`::ffff:0:0:0/96`, RFC 6145), NAT64 (`64:ff9b::/96`, RFC 6052, and
/// `64:ff9b:1::/48`, RFC 8215: the last 32 bits) and 6to4 (`2002::/16`, RFC 3056: bits 16–48).
/// On an IPv6-only host behind NAT64 such an address reaches the IPv4 address it carries, so it
/// is judged as that address. `::` and `::1` are not IPv4-compatible addresses.
pub fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, ..] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

/// A node's address group (SPEC §11, after Bitcoin's addrman): the `/16` of an IPv4 address,
/// the `/32` of an IPv6 address, the last two labels of a hostname (the whole name when it has
/// one label). Within a group, entries are told apart by their [`Host`] (the IP, or the whole
/// name).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Group {
    /// The first two octets of an IPv4 address.
    V4([u8; 2]),
    /// The first two 16-bit segments of an IPv6 address.
    V6([u16; 2]),
    /// A hostname's last two labels, lowercase.
    Name(Box<str>),
}

/// `192.0.0.0/16`, `2001:db8::/32`, `example.com`.
impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Group::V4([a, b]) => write!(f, "{a}.{b}.0.0/16"),
            Group::V6([a, b]) => write!(f, "{}/32", Ipv6Addr::new(*a, *b, 0, 0, 0, 0, 0, 0)),
            Group::Name(name) => f.write_str(name),
        }
    }
}

impl Host {
    /// Parses and canonicalises an `ip_address` value (SPEC §1). A refusal says what is wrong
    /// in the user's terms and, where the intended host is recognisable (a URL, `host:port`,
    /// brackets, spaces around, a trailing dot), which text to give instead.
    pub fn parse(text: &str) -> Result<Host, NodeError> {
        parse_plain(text).map_err(|reason| NodeError::BadAddress {
            address: text.to_owned(),
            reason: explain(text).unwrap_or_else(|| reason.to_owned()),
        })
    }

    /// The host of an IP address, canonical: an IPv4-mapped IPv6 address becomes the IPv4
    /// address. Does not refuse anything; see [`never_peer`].
    pub fn from_ip(ip: IpAddr) -> Host {
        Host::Ip(ip.to_canonical())
    }

    /// The IP address, for an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }

    /// True for `127.0.0.0/8`, `::1` and IPv4-mapped loopback.
    pub fn is_loopback(&self) -> bool {
        self.scope() == Some(Scope::Loopback)
    }

    /// The address scope: an IP literal's, and loopback for `localhost` and names under
    /// `.localhost`, which always resolve to loopback (RFC 6761 §6.3). Other names: `None`,
    /// as their scope is known only once they are resolved.
    pub fn scope(&self) -> Option<Scope> {
        match self {
            Host::Ip(ip) => Some(Scope::of(*ip)),
            Host::Name(name) if &**name == "localhost" || name.ends_with(".localhost") => {
                Some(Scope::Loopback)
            }
            Host::Name(_) => None,
        }
    }

    /// The address group (SPEC §11).
    pub fn group(&self) -> Group {
        match self {
            Host::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => {
                    let [a, b, ..] = v4.octets();
                    Group::V4([a, b])
                }
                IpAddr::V6(v6) => {
                    let [a, b, ..] = v6.segments();
                    Group::V6([a, b])
                }
            },
            Host::Name(name) => {
                let cut = name
                    .rmatch_indices('.')
                    .nth(1)
                    .map_or(0, |(dot, _)| dot + 1);
                Group::Name(name[cut..].into())
            }
        }
    }
}

/// The parse itself, with a short reason and no hint.
fn parse_plain(text: &str) -> Result<Host, &'static str> {
    if text.is_empty() {
        return Err("it is empty");
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        return match never_peer(ip) {
            Some(reason) => Err(reason),
            None => Ok(Host::Ip(ip)),
        };
    }
    if text.contains(':') {
        return Err(if text.matches(':').count() == 1 {
            "a hostname has only letters, digits, '-' and '.'"
        } else {
            "it is not a valid IPv6 address"
        });
    }
    if !text.is_ascii() {
        return Err("a hostname is ASCII: write an international name in its xn-- form (IDNA)");
    }
    if text.len() > 253 {
        return Err("a hostname has at most 253 characters");
    }
    for label in text.split('.') {
        if label.is_empty() {
            return Err("a hostname label is empty");
        }
        if label.len() > 63 {
            return Err("a hostname label has at most 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("a hostname has only letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a hostname label cannot start or end with '-'");
        }
    }
    // RFC 1123 §2.1: a top-level label is never all digits, so `1.2.3` or `256.1.1.1`
    // are malformed IPv4 addresses rather than hostnames.
    let last = text.rsplit('.').next().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) {
        return Err("it is not a valid IPv4 address");
    }
    // Nor is it a hexadecimal number: resolvers read `0x7f000001` or `0xc6.0x33.0x64.0x7` as
    // an IPv4 address (inet_aton), so such a "name" would be an IP address in another
    // spelling, escaping the rules for IP addresses and faking address groups at will.
    if let Some(hex) = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"))
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(
            "a number in hexadecimal spells an IPv4 address to resolvers: write the address in dotted decimal",
        );
    }
    Ok(Host::Name(text.to_ascii_lowercase().into_boxed_str()))
}

/// A reason in the user's terms for a text that `parse_plain` refused, when the text is a
/// recognisable mistake (a URL, a port, brackets, a path, spaces, a malformed IPv4 address…).
fn explain(text: &str) -> Option<String> {
    if text.parse::<IpAddr>().is_ok() {
        return None; // an IP literal that can never be a peer: `never_peer` said why
    }
    // `: "host"` when the host the user meant parses.
    let hint = |host: &str| match parse_plain(host) {
        Ok(host) => format!(": \"{host}\""),
        Err(_) => String::new(),
    };
    let trimmed = text.trim();
    if trimmed.len() != text.len() {
        return Some(if trimmed.is_empty() {
            "it is only whitespace".into()
        } else {
            format!(
                "it has whitespace around it; give the address alone{}",
                hint(trimmed)
            )
        });
    }
    if let Some((scheme, rest)) = text.split_once("://") {
        return Some(format!(
            "it is a URL; give the host alone, without \"{scheme}://\", port or path{}",
            hint(&host_of(rest))
        ));
    }
    let authority = text.split(['/', '?', '#']).next().unwrap_or(text);
    if let Some((user, _)) = authority.rsplit_once('@') {
        return Some(format!(
            "give the host alone, without the user name \"{user}@\"{}",
            hint(&host_of(text))
        ));
    }
    if authority.len() != text.len() {
        let after = &text[authority.len()..];
        let prefix_len = after
            .strip_prefix('/')
            .filter(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        if let (Some(len), Ok(_)) = (prefix_len, authority.parse::<IpAddr>()) {
            return Some(format!(
                "it is a network (/{len}); a node is one address{}",
                hint(authority)
            ));
        }
        return Some(format!(
            "it has a path; give the host alone{}",
            hint(&host_of(text))
        ));
    }
    if let Some(inside) = text.strip_prefix('[') {
        return Some(match inside.split_once(']') {
            Some((host, "")) => {
                format!("IPv6 addresses are written without brackets{}", hint(host))
            }
            Some((host, port)) if port.strip_prefix(':').is_some_and(is_port) => format!(
                "it has a port; give the host alone, without brackets, and the port in \"port\"{}",
                hint(host)
            ),
            _ => "IPv6 addresses are written without brackets".into(),
        });
    }
    if let Some((address, zone)) = text.split_once('%')
        && address.parse::<Ipv6Addr>().is_ok()
    {
        return Some(format!(
            "a zone index (%{zone}) means something only on the machine that wrote it; give the address without it{}",
            hint(address)
        ));
    }
    if let Some((host, port)) = text.rsplit_once(':')
        && is_port(port)
    {
        let one_colon = !host.contains(':');
        if one_colon || host.parse::<Ipv6Addr>().is_ok() {
            return Some(format!(
                "it has a port; give the host alone and the port in \"port\"{}",
                hint(host)
            ));
        }
    }
    if text.chars().any(char::is_whitespace) {
        return Some("an address has no spaces".into());
    }
    if text.chars().any(char::is_control) {
        return Some("it holds control characters".into());
    }
    if let Some(name) = text.strip_suffix('.')
        && parse_plain(name).is_ok()
    {
        return Some(format!(
            "write the hostname without the final dot{}",
            hint(name)
        ));
    }
    let last = text.rsplit('.').next().unwrap_or(text);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) && !text.contains(':') {
        return Some(ipv4_mistake(text));
    }
    None
}

/// At most five digits: what follows the `:` of a `host:port` (none at all in `host:`).
fn is_port(text: &str) -> bool {
    text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The host part of a URL's remainder or of `user@host:port/path`.
fn host_of(text: &str) -> String {
    let authority = text.split(['/', '?', '#']).next().unwrap_or(text);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(inside) = host_port.strip_prefix('[') {
        return inside.split(']').next().unwrap_or(inside).to_owned();
    }
    match host_port.split_once(':') {
        Some((host, port)) if !port.contains(':') => host.to_owned(),
        _ => host_port.to_owned(),
    }
}

/// What is wrong with a text that ends in an all-digit label: it is meant as IPv4.
fn ipv4_mistake(text: &str) -> String {
    let base = "it is not a valid IPv4 address";
    if !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return format!("{base}, and a hostname's last label is never all digits");
    }
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 4 {
        return format!("{base}: it has {} numbers, not four", parts.len());
    }
    for part in parts {
        if part.is_empty() {
            return format!("{base}: a number is missing between two dots");
        }
        if part.len() > 1 && part.starts_with('0') {
            return format!(
                "{base}: {part} has a leading zero, which some tools read as octal; write {}",
                part.trim_start_matches('0').parse::<u64>().unwrap_or(0)
            );
        }
        if part.len() > 3 || part.parse::<u16>().is_ok_and(|n| n > 255) {
            return format!("{base}: {part} is over 255");
        }
    }
    base.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> String {
        match Host::parse(text) {
            Ok(host) => panic!("{text:?} accepted as {host}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_spelling_of_an_address_is_one_canonical_host() {
        for (spellings, canonical) in [
            (
                &["127.0.0.1", "::ffff:127.0.0.1", "0:0:0:0:0:FFFF:7F00:1"][..],
                "127.0.0.1",
            ),
            (&["::1", "0:0:0:0:0:0:0:1", "0::1"], "::1"),
            (&["FE80::0001", "fe80:0:0:0:0:0:0:1"], "fe80::1"),
            (&["::ffff:192.0.2.4", "::FFFF:C000:204"], "192.0.2.4"),
            (
                &["Seed.Example.COM", "seed.example.com"],
                "seed.example.com",
            ),
        ] {
            for spelling in spellings {
                let host = Host::parse(spelling).unwrap_or_else(|e| panic!("{spelling}: {e}"));
                assert_eq!(host.to_string(), canonical, "{spelling}");
            }
        }
        // The deprecated IPv4-compatible form is an IPv6 address, not the IPv4 one.
        assert_eq!(Host::parse("::1.2.3.4").unwrap().to_string(), "::102:304");
        assert_eq!(
            Host::from_ip("::ffff:127.0.0.9".parse().unwrap()),
            Host::parse("127.0.0.9").unwrap()
        );
    }

    #[test]
    fn addresses_that_can_never_be_a_peer_are_refused_with_their_reason() {
        for (text, why) in [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("0.1.2.3", "this network"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("::ffff:224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("FF05::1:3", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("254.1.2.3", "reserved"),
        ] {
            let reason = reason(text);
            assert!(reason.contains(why), "{text}: {reason}");
            assert!(
                reason.contains("not") || reason.contains("never"),
                "{reason}"
            );
        }
        // Their neighbours are ordinary addresses.
        for text in ["1.0.0.0", "223.255.255.255", "fe00::1", "fd00::1"] {
            assert!(Host::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn urls_ports_paths_and_users_are_told_to_give_the_host_alone() {
        for (text, says) in [
            (
                "http://192.0.2.7:5000",
                "it is a URL; give the host alone, without \"http://\", port or path: \"192.0.2.7\"",
            ),
            (
                "https://Seed.Example.com/nodes/",
                "URL; give the host alone, without \"https://\", port or path: \"seed.example.com\"",
            ),
            (
                "http://[::1]:80/",
                "URL; give the host alone, without \"http://\", port or path: \"::1\"",
            ),
            (
                "192.0.2.7:5000",
                "it has a port; give the host alone and the port in \"port\": \"192.0.2.7\"",
            ),
            (
                "example.com:80",
                "it has a port; give the host alone and the port in \"port\": \"example.com\"",
            ),
            (
                "[::1]:80",
                "it has a port; give the host alone, without brackets, and the port in \"port\": \"::1\"",
            ),
            (
                "[::1]",
                "IPv6 addresses are written without brackets: \"::1\"",
            ),
            (
                "1:2:3:4:5:6:7:8:80",
                "it has a port; give the host alone and the port in \"port\": \"1:2:3:4:5:6:7:8\"",
            ),
            (
                "example.com/nodes",
                "it has a path; give the host alone: \"example.com\"",
            ),
            (
                "192.0.2.7/",
                "it has a path; give the host alone: \"192.0.2.7\"",
            ),
            (
                "example.com?x=1",
                "it has a path; give the host alone: \"example.com\"",
            ),
            (
                "10.0.0.0/8",
                "it is a network (/8); a node is one address: \"10.0.0.0\"",
            ),
            (
                "user@example.com",
                "without the user name \"user@\": \"example.com\"",
            ),
            (
                "a:b@192.0.2.7:80",
                "without the user name \"a:b@\": \"192.0.2.7\"",
            ),
            (
                " 192.0.2.7",
                "it has whitespace around it; give the address alone: \"192.0.2.7\"",
            ),
            (
                "example.com\n",
                "whitespace around it; give the address alone: \"example.com\"",
            ),
            ("   ", "it is only whitespace"),
            ("example.com.", "without the final dot: \"example.com\""),
            (
                "fe80::1%eth0",
                "a zone index (%eth0) means something only on the machine that wrote it; give the address without it: \"fe80::1\"",
            ),
        ] {
            let reason = reason(text);
            assert!(reason.contains(says), "{text:?}: {reason}");
            assert!(!reason.contains("not a valid IPv6"), "{text:?}: {reason}");
        }
    }

    #[test]
    fn malformed_addresses_say_what_is_malformed() {
        for (text, says) in [
            ("", "it is empty"),
            ("256.1.1.1", "not a valid IPv4 address: 256 is over 255"),
            ("1.2.3.1000", "1000 is over 255"),
            (
                "1.2.3",
                "not a valid IPv4 address: it has 3 numbers, not four",
            ),
            ("1.2.3.4.5", "it has 5 numbers"),
            ("1..3.4", "a number is missing"),
            (
                "01.2.3.4",
                "01 has a leading zero, which some tools read as octal; write 1",
            ),
            (
                "0x7f.0.0.1",
                "not a valid IPv4 address, and a hostname's last label is never all digits",
            ),
            ("::1::2", "not a valid IPv6 address"),
            ("a b", "an address has no spaces"),
            ("a\u{7}b", "control characters"),
            ("h\u{e9}.com", "xn-- form"),
            ("a_b.com", "only letters, digits"),
            ("a:b", "only letters, digits"),
            ("-a.com", "start or end with '-'"),
            ("a..b", "label is empty"),
            ("..", "label is empty"),
        ] {
            let reason = reason(text);
            assert!(reason.contains(says), "{text:?}: {reason}");
        }
    }

    #[test]
    fn scopes_follow_the_ranges_of_spec_11() {
        for (text, scope) in [
            ("127.0.0.1", Scope::Loopback),
            ("127.255.0.9", Scope::Loopback),
            ("::1", Scope::Loopback),
            ("169.254.169.254", Scope::LinkLocal),
            ("fe80::1", Scope::LinkLocal),
            ("febf::1", Scope::LinkLocal),
            ("10.1.2.3", Scope::Private),
            ("172.16.0.1", Scope::Private),
            ("172.31.255.255", Scope::Private),
            ("192.168.1.1", Scope::Private),
            ("fc00::1", Scope::Private),
            ("fdff::1", Scope::Private),
            ("fec0::1", Scope::Private),
            ("100.64.0.1", Scope::Shared),
            ("100.127.255.255", Scope::Shared),
            ("172.32.0.1", Scope::Public),
            ("172.15.0.1", Scope::Public),
            ("100.128.0.1", Scope::Public),
            ("100.63.255.255", Scope::Public),
            ("169.253.0.1", Scope::Public),
            ("192.0.2.1", Scope::Public),
            ("2001:db8::1", Scope::Public),
            ("fe7f::1", Scope::Public),
        ] {
            assert_eq!(Host::parse(text).unwrap().scope(), Some(scope), "{text}");
        }
        let mapped: IpAddr = "::ffff:169.254.169.254".parse().unwrap();
        assert_eq!(Scope::of(mapped), Scope::LinkLocal);
        for name in ["localhost", "db.localhost"] {
            assert_eq!(Host::parse(name).unwrap().scope(), Some(Scope::Loopback));
        }
        for name in ["example.com", "localhost.example.com", "notlocalhost"] {
            assert_eq!(Host::parse(name).unwrap().scope(), None, "{name}");
        }
        assert!(Host::parse("::ffff:127.0.0.1").unwrap().is_loopback());
        assert!(!Host::parse("localhost.example").unwrap().is_loopback());
    }

    #[test]
    fn groups_are_the_ipv4_16_the_ipv6_32_and_a_names_last_two_labels() {
        let group = |text: &str| Host::parse(text).unwrap().group();
        assert_eq!(group("127.3.9.9"), group("127.3.200.1"));
        assert_ne!(group("127.3.9.9"), group("127.4.9.9"));
        assert_eq!(group("::ffff:127.3.0.1"), group("127.3.0.2"));
        assert_eq!(group("2001:db8:1::1"), group("2001:db8:ffff::2"));
        assert_ne!(group("2001:db8::1"), group("2001:db9::1"));
        assert_eq!(group("a.b.Example.com"), group("example.com"));
        assert_ne!(group("example.com"), group("example.org"));
        assert_eq!(group("localhost").to_string(), "localhost");
        assert_eq!(group("127.3.9.9").to_string(), "127.3.0.0/16");
        assert_eq!(group("2001:db8:1::1").to_string(), "2001:db8::/32");
        assert_eq!(group("x.y.seed.example.com").to_string(), "example.com");
    }

    #[test]
    fn hexadecimal_numbers_are_not_names() {
        for text in ["0x7f000001", "0xc6.0x33.0x64.0x7", "a.0X1f", "0x"] {
            let err = Host::parse(text).expect_err(text);
            assert!(err.to_string().contains("hexadecimal"), "{text}: {err}");
        }
        for text in ["0xfe.example", "0x.org", "x0x1"] {
            assert!(Host::parse(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn ipv6_addresses_carrying_an_ipv4_address_are_judged_as_it() {
        let cases = [
            ("::7f00:1", Scope::Loopback),            // IPv4-compatible 127.0.0.1
            ("::ffff:0:7f00:1", Scope::Loopback),     // SIIT
            ("64:ff9b::a9fe:a9fe", Scope::LinkLocal), // NAT64 169.254.169.254
            ("64:ff9b:1::a01:203", Scope::Private),   // local NAT64 10.1.2.3
            ("2002:7f00:1::1", Scope::Loopback),      // 6to4 127.0.0.1
            ("2002:c000:0201::1", Scope::Public),     // 6to4 192.0.2.1
            ("::1", Scope::Loopback),
            ("2001:db8::1", Scope::Public),
        ];
        for (text, scope) in cases {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(Scope::of(ip), scope, "{text}");
        }
        let multicast: IpAddr = "64:ff9b::e000:1".parse().unwrap();
        assert!(never_peer(multicast).is_some());
        assert_eq!(embedded_v4("::".parse().unwrap()), None);
        assert_eq!(embedded_v4("::1".parse().unwrap()), None);
    }
}
