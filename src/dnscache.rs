//! A memo of `dnsseed::answer` for the questions a seed is asked most (the SRV name and the
//! apex), so that a UDP worker under load encodes an answer once and sends it many times.
//!
//! An answer depends on the question (name up to case, type, class, EDNS size) and on the
//! healthy nodes, and is a random sample of them. A cache entry keeps up to `SLOTS` answers
//! for one question, each built from one generation of the healthy nodes (`Healthy`: it
//! changes exactly when the set of healthy nodes does, not with every snapshot the store
//! publishes), for at most `MAX_AGE`: a query picks a slot at random and reuses it when it is
//! fresh and of the current generation, else builds a new answer into it. Clients therefore
//! still get varied samples, and a node that leaves the healthy set leaves every answer at
//! once (resolvers keep answers for the 60 s TTL anyway).
//!
//! A reused answer gets the query's ID, RD and CD bits (header rewritten by hickory-proto)
//! and the query's spelling of the name (resolvers vary its case, draft-vixie-dnsext-0x20,
//! and compare): the name's bytes are copied over the cached ones only when they are equal
//! but for case, so the message's layout and compression pointers stay as encoded.

use std::time::{Duration, Instant};

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

use crate::dnsseed::{self, Answer, Healthy, Protocol, Zone};

/// Answers kept per question.
pub const SLOTS: usize = 8;

/// How long an answer is reused, at most.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// Questions remembered; when more come, the cache starts afresh.
const MAX_QUESTIONS: usize = 16;

/// One worker's memo (not shared: no lock on the way of a query).
#[derive(Default)]
pub struct AnswerCache {
    entries: Vec<Entry>,
}

/// What an answer depends on, besides the nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    /// Compared without case (hickory's `Name` equality).
    name: Name,
    qtype: RecordType,
    qclass: DNSClass,
    /// The query's EDNS size, when it has EDNS.
    edns: Option<u16>,
}

struct Entry {
    key: Key,
    /// The name's length on the wire, from offset 12 of both query and answer.
    name_len: usize,
    slots: [Option<Slot>; SLOTS],
}

struct Slot {
    built: Instant,
    /// The generation of the healthy nodes it was built from.
    generation: u64,
    answer: Answer,
}

impl AnswerCache {
    /// `dnsseed::answer` for a UDP query, reusing a recent answer to the same question from
    /// the same generation of `nodes` when there is one; `now` is the time of the query.
    /// Returns the answer, and whether it was a reused one.
    pub fn answer(
        &mut self,
        zone: &Zone,
        nodes: &Healthy,
        packet: &[u8],
        rng: &mut fastrand::Rng,
        now: Instant,
    ) -> (Answer, bool) {
        let Some((key, query)) = cacheable(zone, packet) else {
            return (
                dnsseed::answer(zone, nodes, packet, Protocol::Udp, rng),
                false,
            );
        };
        let generation = nodes.generation();
        let at = match self.entries.iter().position(|e| e.key == key) {
            Some(at) => at,
            None => {
                if self.entries.len() >= MAX_QUESTIONS {
                    self.entries.clear();
                }
                let name_len = key.name.iter().map(|label| label.len() + 1).sum::<usize>() + 1;
                self.entries.push(Entry {
                    key,
                    name_len,
                    slots: Default::default(),
                });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[at];
        let slot = &mut entry.slots[rng.usize(..SLOTS)];
        if let Some(cached) = slot
            .as_ref()
            .filter(|s| s.generation == generation && now.duration_since(s.built) < MAX_AGE)
            && let Some(bytes) = reuse(&cached.answer, packet, &query, entry.name_len)
        {
            let answer = Answer {
                bytes: Some(bytes),
                ..cached.answer.clone()
            };
            return (answer, true);
        }
        let answer = dnsseed::answer(zone, nodes, packet, Protocol::Udp, rng);
        if answer.rcode == Some(ResponseCode::NoError) && answer.bytes.is_some() {
            *slot = Some(Slot {
                built: now,
                generation,
                answer: answer.clone(),
            });
        }
        (answer, false)
    }
}

/// The key of a well-formed standard query for the apex or the SRV name, and its header.
fn cacheable(zone: &Zone, packet: &[u8]) -> Option<(Key, Header)> {
    let query = Message::from_vec(packet).ok()?;
    let [question] = &query.queries[..] else {
        return None;
    };
    let plain = query.message_type == MessageType::Query
        && query.op_code == OpCode::Query
        && query.edns.as_ref().is_none_or(|e| e.version() == 0)
        && (question.name() == zone.apex() || question.name() == zone.service());
    if !plain {
        return None;
    }
    let header = Header::read(&mut BinDecoder::new(packet)).ok()?;
    let key = Key {
        name: question.name().clone(),
        qtype: question.query_type(),
        qclass: question.query_class(),
        edns: query.edns.as_ref().map(|e| e.max_payload()),
    };
    Some((key, header))
}

/// `answer`'s bytes with the query's ID, RD and CD bits and its spelling of the name; none
/// when the name's bytes differ other than by case.
fn reuse(answer: &Answer, packet: &[u8], query: &Header, name_len: usize) -> Option<Vec<u8>> {
    let cached = answer.bytes.as_ref()?;
    let name = 12..12 + name_len;
    let (theirs, ours) = (packet.get(name.clone())?, cached.get(name.clone())?);
    if !theirs.eq_ignore_ascii_case(ours) {
        return None;
    }
    let mut header = Header::read(&mut BinDecoder::new(cached)).ok()?;
    header.metadata.id = query.metadata.id;
    header.metadata.recursion_desired = query.metadata.recursion_desired;
    header.metadata.checking_disabled = query.metadata.checking_disabled;
    let mut head = Vec::with_capacity(12);
    header.emit(&mut BinEncoder::new(&mut head)).ok()?;
    let mut bytes = cached.clone();
    bytes.get_mut(..12)?.copy_from_slice(head.get(..12)?);
    bytes[name].copy_from_slice(theirs);
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dnsnodes::all_healthy;
    use crate::dnsseed::ZoneConfig;
    use crate::nodes::Node;
    use hickory_proto::op::Query;
    use hickory_proto::rr::RData;
    use std::sync::Arc;

    fn query(id: u16, name: &str, rd: bool) -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = rd;
        message.queries.push(Query::query(
            Name::from_ascii(name).unwrap(),
            RecordType::SRV,
        ));
        message.to_vec().unwrap()
    }

    fn zone() -> Zone {
        Zone::new(&ZoneConfig {
            name: "seed.test".into(),
            seed_port: 55000,
            ns_addr: None,
            ns_names: Vec::new(),
            serial: 1,
        })
        .unwrap()
    }

    fn srv_count(answer: &Answer) -> usize {
        Message::from_vec(answer.bytes.as_ref().unwrap())
            .unwrap()
            .answers
            .len()
    }

    #[test]
    fn reused_answers_carry_the_querys_id_flags_and_spelling() {
        let zone = zone();
        let nodes: Vec<Node> = (0..3)
            .map(|i| Node::new(&format!("127.{i}.0.1"), 50000 + i).unwrap())
            .collect();
        let view = all_healthy(&nodes, 55000);
        let mut cache = AnswerCache::default();
        let mut rng = fastrand::Rng::with_seed(5);
        let now = Instant::now();
        // Fill every slot, then every answer is a reuse.
        for i in 0..200 {
            let packet = query(i, "_seedmesh._tcp.seed.test.", false);
            cache.answer(&zone, &view, &packet, &mut rng, now);
        }
        let packet = query(777, "_SeedMesh._TCP.seed.TEST.", true);
        let (got, reused) = cache.answer(&zone, &view, &packet, &mut rng, now);
        assert!(reused);
        let message = Message::from_vec(got.bytes.as_ref().unwrap()).unwrap();
        assert_eq!(message.id, 777);
        assert!(message.recursion_desired && message.authoritative);
        assert_eq!(
            message.queries[0].name().to_ascii(),
            "_SeedMesh._TCP.seed.TEST."
        );
        assert_eq!(message.answers.len(), 3);
        assert!(matches!(message.answers[0].data, RData::SRV(_)));
    }

    #[test]
    fn answers_are_reused_until_the_healthy_nodes_change_or_age() {
        let zone = zone();
        let a = Node::new("127.0.0.1", 50000).unwrap();
        let b = Node::new("127.1.0.1", 50001).unwrap();
        let first = all_healthy(&[a.clone(), b.clone()], 55000);
        let mut cache = AnswerCache::default();
        let mut rng = fastrand::Rng::with_seed(6);
        let now = Instant::now();
        let packet = query(1, "_seedmesh._tcp.seed.test.", false);
        for _ in 0..100 {
            cache.answer(&zone, &first, &packet, &mut rng, now);
        }
        // A new snapshot with the same healthy nodes (a check result recorded, say): reused.
        let same = first.next(Arc::clone(all_healthy(&[a.clone(), b], 55000).snapshot()));
        assert!(cache.answer(&zone, &same, &packet, &mut rng, now).1);
        // b's check failed: never in an answer again, from the first query on.
        let fewer = same.next(Arc::clone(all_healthy(&[a], 55000).snapshot()));
        for _ in 0..100 {
            let (answer, reused) = cache.answer(&zone, &fewer, &packet, &mut rng, now);
            assert_eq!(srv_count(&answer), 1, "reused: {reused}");
        }
        // Time: an answer is reused for MAX_AGE at most.
        let later = now + MAX_AGE;
        assert!(!cache.answer(&zone, &fewer, &packet, &mut rng, later).1);
    }
}
