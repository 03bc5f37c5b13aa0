//! DNS seeding (SPEC §12): the seed's answer to one DNS query, as a pure function from the
//! query's bytes, the zone, the healthy nodes (`Healthy`: those whose last check succeeded,
//! sampled across address groups) and an RNG to the answer's bytes. No socket and
//! no clock here: `dnsserver` carries the bytes, and parsing and encoding are hickory-proto's.
//!
//! The names of the zone `Z` (answered authoritatively, TTL 60 s):
//! - `Z`: `SOA`, `NS` (the `--seed_ns` names, by default `ns.Z`), and `A`/`AAAA` for healthy
//!   nodes with an IP address listening on `--seed_port`, for clients that assume a port (as
//!   Bitcoin's seeds answer);
//! - `_seedmesh._tcp.Z`: `SRV` for up to 16 healthy nodes, with their ports (RFC 2782);
//! - `_tcp.Z`: an empty non-terminal (no data, not NXDOMAIN: RFC 8020);
//! - `ns.Z`: the seed's own address, when it listens on a specific one;
//! - `<ip>.Z`: an IP address written in one label, `127-0-0-1.Z A 127.0.0.1`, and for IPv6
//!   the 32 hex digits of the address, `00000000000000000000000000000001.Z AAAA ::1`, answered
//!   only for a healthy node's address or a `--seed_ns` name's: anyone else's would let
//!   strangers mint names under the operator's domain (for a certificate, a cookie scope, a
//!   rebinding to an internal address), as sslip.io-style services do on purpose. The `SRV`
//!   targets of IP nodes are these names, with their `A`/`AAAA` in the additional section, so
//!   one answer is enough; another seed of the zone answers the name while it holds the node.
//!
//! A node known by hostname cannot be given an address inside the zone (the seed would have to
//! resolve it, and resolvers drop out-of-zone additional records anyway), so its `SRV` target is
//! its own hostname, without an additional record: the client resolves it as it resolves any
//! name. Such nodes are never in the `A`/`AAAA` answers at the apex.
//!
//! What is never done, whatever the query: recursion (RA is clear), zone transfers
//! (`REFUSED`), an `ANY` answer bigger than one `HINFO` record (RFC 8482), a UDP answer over
//! 512 bytes or the client's EDNS size (at most 1232). A truncated answer keeps whole
//! (`SRV`, address) pairs and sets `TC`, so that a client wanting all of it asks over TCP.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Header, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, HINFO, NS, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

pub use crate::dnsnodes::Healthy;
use crate::dnszone::Place;
pub use crate::dnszone::{
    SERVICE, Zone, ZoneConfig, ZoneError, ip_label, parse_ip_label, parse_zone,
};
use crate::nodes::Host;

/// Time to live of every record, in seconds (SPEC §12), and the SOA minimum that bounds how
/// long resolvers cache a negative answer (RFC 2308 §5).
pub const TTL: u32 = 60;

/// Most nodes in one `SRV`, `A` or `AAAA` answer (SPEC §12).
pub const MAX_NODES: usize = 16;

/// Largest UDP answer when the query has no EDNS (RFC 1035 §4.2.1).
pub const CLASSIC_UDP_SIZE: usize = 512;

/// Largest UDP answer whatever the client's EDNS size says: the DNS flag day 2020 value,
/// which avoids IP fragmentation on common paths.
pub const MAX_UDP_SIZE: u16 = 1232;

/// Largest message over TCP (RFC 1035 §4.2.2: a two-byte length).
pub const MAX_TCP_SIZE: usize = 65535;

/// How the query came, which bounds the answer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A datagram: the answer fits 512 bytes, or the query's EDNS size up to 1232.
    Udp,
    /// A TCP connection: the whole answer, up to 65535 bytes.
    Tcp,
}

/// What `answer` decided, for the server to send and count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The answer's bytes; none when the packet is dropped unanswered.
    pub bytes: Option<Vec<u8>>,
    /// The question's type; none when the question could not be read.
    pub qtype: Option<RecordType>,
    /// The answer's response code; none when dropped.
    pub rcode: Option<ResponseCode>,
    /// Whether `TC` is set.
    pub truncated: bool,
}

impl Answer {
    /// No answer: the message is dropped.
    pub fn dropped() -> Answer {
        Answer {
            bytes: None,
            qtype: None,
            rcode: None,
            truncated: false,
        }
    }
}

/// Answers one DNS message (SPEC §12). Never panics on any input, and its work is bounded by
/// the packet's length and `MAX_NODES`.
///
/// - Fewer than 12 bytes, or a message that is itself a response: dropped (never answer an
///   answer: two servers would echo each other for ever).
/// - A header but no readable message, or not exactly one question: `FORMERR`.
/// - An opcode other than QUERY: `NOTIMP`. EDNS version above 0: `BADVERS` (RFC 6891).
/// - A class other than IN, a name outside the zone, or a zone transfer: `REFUSED`.
/// - Inside the zone: the records described in the module docs, `NXDOMAIN` for other names
///   (with the SOA, for negative caching), and no data (`NOERROR`, SOA) for other types.
pub fn answer(
    zone: &Zone,
    nodes: &Healthy,
    packet: &[u8],
    protocol: Protocol,
    rng: &mut fastrand::Rng,
) -> Answer {
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        return Answer::dropped();
    };
    if header.metadata.message_type != MessageType::Query {
        return Answer::dropped();
    }
    let mut reply = Message::new(header.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata = Metadata::response_from_request(&header.metadata);
    let Ok(query) = Message::from_vec(packet) else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return finish(reply, Vec::new(), CLASSIC_UDP_SIZE, None);
    };
    let qtype = query.queries.first().map(|q| q.query_type());
    let limit = match protocol {
        Protocol::Tcp => MAX_TCP_SIZE,
        Protocol::Udp => query.edns.as_ref().map_or(CLASSIC_UDP_SIZE, |edns| {
            usize::from(edns.max_payload().clamp(512, MAX_UDP_SIZE))
        }),
    };
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_SIZE);
        reply.edns = Some(edns);
    }
    let refuse = |mut reply: Message, code| {
        reply.metadata.response_code = code;
        finish(reply, Vec::new(), limit, qtype)
    };
    if query.op_code != OpCode::Query {
        return refuse(reply, ResponseCode::NotImp);
    }
    let [question] = &query.queries[..] else {
        return refuse(reply, ResponseCode::FormErr);
    };
    reply.queries.push(question.clone());
    if query.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
        return refuse(reply, ResponseCode::BADVERS);
    }
    let qtype = question.query_type();
    let place = match zone.classify(question.name()) {
        // Only nodes' and name servers' addresses have names here (see the module docs).
        Place::Address(ip) if !nodes.has_ip(ip) && !zone.is_ns_address(ip) => Place::Unknown,
        place => place,
    };
    if question.query_class() != DNSClass::IN
        || place == Place::Outside
        || matches!(qtype, RecordType::AXFR | RecordType::IXFR)
    {
        return refuse(reply, ResponseCode::Refused);
    }
    reply.metadata.authoritative = true;
    let owner = question.name().clone();
    let record = |data: RData| Record::from_rdata(owner.clone(), TTL, data);

    // Each entry: an answer record, and the address record its target needs, if any.
    let mut pairs: Vec<(Record, Option<Record>)> = Vec::new();
    match (place, qtype) {
        (Place::Outside, _) => unreachable!("refused above"),
        (Place::Unknown, _) => {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        (_, RecordType::ANY) => {
            // RFC 8482 §4.2: one synthesised HINFO record, whatever the name holds.
            let hinfo = HINFO::new("RFC8482".into(), String::new());
            pairs.push((record(RData::HINFO(hinfo)), None));
        }
        (Place::Apex, RecordType::SOA) => pairs.push((record(soa(zone)), None)),
        (Place::Apex, RecordType::NS) => {
            for name in &zone.ns {
                // Addresses we know of our own: `ns.Z`'s, and those written in a name.
                let ip = match zone.classify(name) {
                    Place::NameServer => zone.ns_addr,
                    Place::Address(ip) => Some(ip),
                    _ => None,
                };
                let glue = ip.map(|ip| Record::from_rdata(name.clone(), TTL, address(ip)));
                pairs.push((record(RData::NS(NS(name.clone()))), glue));
            }
        }
        (Place::Apex, RecordType::A | RecordType::AAAA) => {
            for node in nodes.apex(qtype == RecordType::A, MAX_NODES, rng) {
                if let Host::Ip(ip) = node.host {
                    pairs.push((record(address(ip)), None));
                }
            }
        }
        (Place::Service, RecordType::SRV) => {
            for node in nodes.sample(MAX_NODES, rng) {
                let (target, glue) = match &node.host {
                    Host::Ip(ip) => {
                        let target = zone.address_name(*ip);
                        let glue = Record::from_rdata(target.clone(), TTL, address(*ip));
                        (target, Some(glue))
                    }
                    Host::Name(name) => match Name::from_ascii(format!("{name}.")) {
                        Ok(target) => (target, None),
                        Err(_) => continue,
                    },
                };
                let srv = SRV::new(0, 0, node.port, target);
                pairs.push((record(RData::SRV(srv)), glue));
            }
        }
        (Place::NameServer, RecordType::A | RecordType::AAAA) => {
            if let Some(ip) = zone
                .ns_addr
                .filter(|ip| ip.is_ipv4() == (qtype == RecordType::A))
            {
                pairs.push((record(address(ip)), None));
            }
        }
        (Place::Address(ip), RecordType::A | RecordType::AAAA)
            if ip.is_ipv4() == (qtype == RecordType::A) =>
        {
            pairs.push((record(address(ip)), None));
        }
        _ => {}
    }
    if pairs.is_empty() {
        // NXDOMAIN or no data: the SOA tells resolvers how long to remember it.
        let soa_record = Record::from_rdata(zone.apex.clone(), TTL, soa(zone));
        reply.authorities.push(soa_record);
    }
    finish(reply, pairs, limit, Some(qtype))
}

fn soa(zone: &Zone) -> RData {
    RData::SOA(SOA::new(
        zone.ns[0].clone(),
        zone.hostmaster.clone(),
        zone.serial,
        3600,
        600,
        86400,
        TTL,
    ))
}

fn address(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(ip) => RData::A(A(ip)),
        IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
    }
}

/// The reply to a UDP query over the response-rate limit (`--seed_rrl`, a *slip*): the
/// query's ID and question, `TC` set, no records and no EDNS, so never longer than the query;
/// a real client asks again over TCP. Dropped when the packet is no query with one question.
pub fn slip(packet: &[u8]) -> Answer {
    let Ok(query) = Message::from_vec(packet) else {
        return Answer::dropped();
    };
    let [question] = &query.queries[..] else {
        return Answer::dropped();
    };
    if query.metadata.message_type != MessageType::Query {
        return Answer::dropped();
    }
    let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata = Metadata::response_from_request(&query.metadata);
    reply.metadata.truncation = true;
    reply.queries.push(question.clone());
    let qtype = Some(question.query_type());
    match reply.to_vec() {
        Ok(bytes) if bytes.len() <= packet.len() => Answer {
            bytes: Some(bytes),
            qtype,
            rcode: Some(reply.metadata.response_code),
            truncated: true,
        },
        _ => Answer::dropped(),
    }
}

/// Encodes `reply` with as many of `pairs` as fit in `limit` bytes, each answer with its
/// address record, and sets `TC` when some did not fit.
fn finish(
    reply: Message,
    pairs: Vec<(Record, Option<Record>)>,
    limit: usize,
    qtype: Option<RecordType>,
) -> Answer {
    let encode = |count: usize| {
        let mut message = reply.clone();
        for (answer, extra) in &pairs[..count] {
            message.answers.push(answer.clone());
            if let Some(extra) = extra
                && !message.additionals.contains(extra)
            {
                message.additionals.push(extra.clone());
            }
        }
        message.metadata.truncation = count < pairs.len();
        message.to_vec().ok()
    };
    let fits = |bytes: &Option<Vec<u8>>| bytes.as_ref().is_some_and(|b| b.len() <= limit);
    let mut count = pairs.len();
    let mut bytes = encode(count);
    if !fits(&bytes) {
        // Guess from the average pair size, then step to the largest count that fits.
        let whole = bytes.as_ref().map_or(usize::MAX, Vec::len);
        let base = encode(0).map_or(0, |b| b.len());
        let per_pair = (whole.saturating_sub(base) / pairs.len().max(1)).max(1);
        count = (limit.saturating_sub(base) / per_pair).min(pairs.len().saturating_sub(1));
        bytes = encode(count);
        while count > 0 && !fits(&bytes) {
            count -= 1;
            bytes = encode(count);
        }
        while count + 1 < pairs.len() {
            let more = encode(count + 1);
            if !fits(&more) {
                break;
            }
            count += 1;
            bytes = more;
        }
    }
    if !fits(&bytes) {
        // Not even the question and the SOA fit: cannot happen with 512 bytes as the floor
        // (a name has at most 255), but never send more than the limit.
        return Answer {
            bytes: None,
            qtype,
            rcode: None,
            truncated: false,
        };
    }
    Answer {
        bytes,
        qtype,
        rcode: Some(reply.metadata.response_code),
        truncated: count < pairs.len(),
    }
}

#[cfg(test)]
mod tests;
