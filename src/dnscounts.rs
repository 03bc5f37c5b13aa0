//! What DNS seeding answered (SPEC §12), for `/metrics`: messages by query type and response
//! code, and the answers a UDP worker sent from its cache.

use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::dnsseed::Answer;

/// The query types DNS answers are counted under; anything else is `other`, and a message
/// whose question could not be read is `none`.
pub const QTYPES: [&str; 8] = ["A", "AAAA", "SRV", "NS", "SOA", "ANY", "other", "none"];
/// The response codes answers are counted under; `dropped` means not answered.
pub const RCODES: [&str; 9] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS", "other",
    "dropped",
];

/// DNS messages answered (or dropped), by query type and response code, and the answers
/// reused from a UDP worker's cache. Lock-free; counters only grow.
#[derive(Debug)]
pub struct DnsCounts {
    counts: Vec<AtomicU64>,
    /// Answers sent from a worker's cache (`dnscache`) rather than built.
    pub reused: AtomicU64,
    /// UDP queries over `--seed_rrl` answered with an empty truncated reply (a slip).
    pub slipped: AtomicU64,
    /// UDP queries over `--seed_rrl` dropped unanswered.
    pub rate_dropped: AtomicU64,
}

impl Default for DnsCounts {
    fn default() -> Self {
        DnsCounts {
            counts: (0..QTYPES.len() * RCODES.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            reused: AtomicU64::new(0),
            slipped: AtomicU64::new(0),
            rate_dropped: AtomicU64::new(0),
        }
    }
}

impl DnsCounts {
    /// Counts one answer.
    pub fn count(&self, answer: &Answer) {
        let qtype = match answer.qtype {
            None => "none",
            Some(RecordType::A) => "A",
            Some(RecordType::AAAA) => "AAAA",
            Some(RecordType::SRV) => "SRV",
            Some(RecordType::NS) => "NS",
            Some(RecordType::SOA) => "SOA",
            Some(RecordType::ANY) => "ANY",
            Some(_) => "other",
        };
        let rcode = match answer.rcode {
            None => "dropped",
            Some(ResponseCode::NoError) => "NOERROR",
            Some(ResponseCode::FormErr) => "FORMERR",
            Some(ResponseCode::ServFail) => "SERVFAIL",
            Some(ResponseCode::NXDomain) => "NXDOMAIN",
            Some(ResponseCode::NotImp) => "NOTIMP",
            Some(ResponseCode::Refused) => "REFUSED",
            Some(ResponseCode::BADVERS) => "BADVERS",
            Some(_) => "other",
        };
        let at = |names: &[&str], name| names.iter().position(|n| *n == name).unwrap_or(0);
        let cell = at(&QTYPES, qtype) * RCODES.len() + at(&RCODES, rcode);
        self.counts[cell].fetch_add(1, Ordering::Relaxed);
    }

    /// Every (query type, response code, count) with a count above zero.
    pub fn nonzero(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (q, qtype) in QTYPES.iter().enumerate() {
            for (r, rcode) in RCODES.iter().enumerate() {
                let n = self.counts[q * RCODES.len() + r].load(Ordering::Relaxed);
                if n > 0 {
                    out.push((*qtype, *rcode, n));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(qtype: Option<RecordType>, rcode: Option<ResponseCode>) -> Answer {
        Answer {
            bytes: None,
            qtype,
            rcode,
            truncated: false,
        }
    }

    #[test]
    fn messages_are_counted_by_query_type_and_response_code() {
        let counts = DnsCounts::default();
        counts.count(&answer(Some(RecordType::SRV), Some(ResponseCode::NoError)));
        counts.count(&answer(Some(RecordType::SRV), Some(ResponseCode::NoError)));
        counts.count(&answer(Some(RecordType::MX), Some(ResponseCode::NXDomain)));
        counts.count(&answer(None, Some(ResponseCode::FormErr)));
        counts.count(&answer(None, None));
        assert_eq!(
            counts.nonzero(),
            [
                ("SRV", "NOERROR", 2),
                ("other", "NXDOMAIN", 1),
                ("none", "FORMERR", 1),
                ("none", "dropped", 1),
            ]
        );
    }
}
