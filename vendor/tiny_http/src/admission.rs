//! Who is served, and with how much memory: the cap on open connections per source (an IPv4
//! address, an IPv6 /64), the choice of the connection to close when every slot is taken
//! (the keep-alive connection idle the longest), and the budget of request-body bytes held in
//! memory at once. The accept thread asks `Admission::admit` before it serves a connection;
//! each connection thread says when it waits between requests (`idle`, `busy`), holds a large
//! body (`BodyHold`), and ends (`close`).
//!
//! Why these rules: without them, one client holding `max_connections` keep-alive
//! connections (a request every few seconds keeps each one open for ever) locks every other
//! client out, and one client declaring large bodies and stalling before their last byte
//! makes the server hold `max_connections` × the body limit in memory.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Instant;

use crate::refusal::Cause;
use crate::{Limits, Shared};

/// A client as the per-source limits count it: one IPv4 address, or one IPv6 /64, the
/// network of a single LAN (RFC 4291 §2.5.1) from which one host can take as many addresses
/// as it likes (SLAAC, privacy addresses), so that counting single IPv6 addresses would count
/// nothing. An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 client) is its IPv4
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    pub(crate) fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::V4(v4.octets()),
                None => {
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&v6.octets()[..8]);
                    Source::V6(net)
                }
            },
        }
    }
}

/// Identifies an open connection while it is registered.
pub(crate) type ConnId = u64;

/// The open connections and what they hold, under one lock (`Shared::admission`). `H` is
/// the handle that closes a connection (its socket, shared with its thread, so no descriptor
/// is duplicated; anything in unit tests).
pub(crate) struct Admission<H> {
    connections: HashMap<ConnId, Conn<H>>,
    sources: HashMap<Source, Held>,
    /// Keep-alive connections waiting for their next request, the one idle longest first.
    idle: BTreeSet<(Instant, ConnId)>,
    next_id: ConnId,
    /// Body bytes counted against `Limits::body_budget_bytes`, all sources together.
    body_bytes: usize,
}

struct Conn<H> {
    source: Source,
    /// Taken by the accept thread when it closes this connection to make room.
    handle: Option<H>,
    /// Since when it has waited for its next request (only after one has been answered).
    idle_since: Option<Instant>,
    /// Chosen to be closed for a newcomer: it must not start another request.
    evicted: bool,
}

/// What one source holds.
#[derive(Debug, Default)]
struct Held {
    connections: usize,
    body_bytes: usize,
}

/// A connection the accept thread must close (shut its socket, then join its thread) before
/// it serves the newcomer that replaces it.
pub(crate) struct Evicted<H> {
    pub(crate) id: ConnId,
    pub(crate) handle: H,
}

impl<H> Admission<H> {
    pub(crate) fn new() -> Admission<H> {
        Admission {
            connections: HashMap::new(),
            sources: HashMap::new(),
            idle: BTreeSet::new(),
            next_id: 0,
            body_bytes: 0,
        }
    }

    /// Keep-alive connections waiting between requests: those a newcomer may replace.
    pub(crate) fn idle_count(&self) -> usize {
        self.idle.len()
    }

    /// Decides on a new connection from `source`, when `slots_full` says whether
    /// `Limits::max_connections` connections are already open. Refused when its source already
    /// has `Limits::max_connections_per_source` open (`TooManyFromSource`), or when every slot
    /// is taken and no connection is idle between requests (`TooManyConnections`). Otherwise
    /// it is registered (closing it is the caller's `close`) and, when the slots were full,
    /// the keep-alive connection idle the longest is chosen to make room: the caller closes
    /// it before serving the newcomer.
    pub(crate) fn admit(
        &mut self,
        source: Source,
        handle: H,
        slots_full: bool,
        limits: &Limits,
    ) -> Result<(ConnId, Option<Evicted<H>>), Cause> {
        let open = self.sources.get(&source).map_or(0, |held| held.connections);
        if open >= limits.max_connections_per_source {
            return Err(Cause::TooManyFromSource);
        }
        let evicted = if slots_full {
            let Some((_, id)) = self.idle.pop_first() else {
                return Err(Cause::TooManyConnections);
            };
            let conn = self
                .connections
                .get_mut(&id)
                .unwrap_or_else(|| unreachable!("an idle connection is registered"));
            conn.evicted = true;
            conn.idle_since = None;
            conn.handle.take().map(|handle| Evicted { id, handle })
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.connections.insert(
            id,
            Conn {
                source,
                handle: Some(handle),
                idle_since: None,
                evicted: false,
            },
        );
        self.sources.entry(source).or_default().connections += 1;
        Ok((id, evicted))
    }

    /// Connection `id` has answered a request and waits for the next one, from `now`: it may
    /// be closed to make room for a newcomer.
    pub(crate) fn idle(&mut self, id: ConnId, now: Instant) {
        if let Some(conn) = self.connections.get_mut(&id) {
            if !conn.evicted && conn.idle_since.is_none() {
                conn.idle_since = Some(now);
                self.idle.insert((now, id));
            }
        }
    }

    /// Connection `id` has received the first byte of a request. `false` when it was chosen
    /// to be closed while it waited: it must then end without serving it.
    pub(crate) fn busy(&mut self, id: ConnId) -> bool {
        let Some(conn) = self.connections.get_mut(&id) else {
            return false;
        };
        if let Some(since) = conn.idle_since.take() {
            self.idle.remove(&(since, id));
        }
        !conn.evicted
    }

    /// Connection `id` has ended.
    pub(crate) fn close(&mut self, id: ConnId) {
        let Some(conn) = self.connections.remove(&id) else {
            return;
        };
        if let Some(since) = conn.idle_since {
            self.idle.remove(&(since, id));
        }
        if let Some(held) = self.sources.get_mut(&conn.source) {
            held.connections -= 1;
            self.forget_if_empty(conn.source);
        }
    }

    /// Counts `more` body bytes of `source` against the budget, for a body of which `own`
    /// bytes are already counted; `false` (nothing counted) when they do not fit. They fit
    /// when all sources together stay within `Limits::body_budget_bytes`, and the source
    /// within a quarter of it, unless this body is the only one it holds: so one client
    /// cannot take the whole budget, and a single body is never refused for its size alone.
    pub(crate) fn hold_body(
        &mut self,
        source: Source,
        own: usize,
        more: usize,
        limits: &Limits,
    ) -> bool {
        let budget = limits.body_budget_bytes;
        if self.body_bytes.saturating_add(more) > budget {
            return false;
        }
        let held = self.sources.entry(source).or_default();
        let others = held.body_bytes - own;
        if others > 0 && held.body_bytes.saturating_add(more) > budget / SOURCE_SHARE {
            self.forget_if_empty(source);
            return false;
        }
        held.body_bytes += more;
        self.body_bytes += more;
        true
    }

    /// Gives back `bytes` counted by `hold_body` for `source`.
    pub(crate) fn release_body(&mut self, source: Source, bytes: usize) {
        self.body_bytes -= bytes;
        if let Some(held) = self.sources.get_mut(&source) {
            held.body_bytes -= bytes;
            self.forget_if_empty(source);
        }
    }

    /// Body bytes counted against the budget now, all sources together.
    #[cfg(test)]
    pub(crate) fn body_bytes(&self) -> usize {
        self.body_bytes
    }

    fn forget_if_empty(&mut self, source: Source) {
        if self
            .sources
            .get(&source)
            .is_some_and(|held| held.connections == 0 && held.body_bytes == 0)
        {
            self.sources.remove(&source);
        }
    }
}

/// One source may hold at most this fraction of `Limits::body_budget_bytes` (beyond a single
/// body).
pub(crate) const SOURCE_SHARE: usize = 4;

/// Locks the server's admission state; a panic elsewhere while it was held leaves it usable
/// (every change it makes is complete before anything can panic).
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, Admission<Arc<std::net::TcpStream>>> {
    shared
        .admission
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// A request body's bytes counted against `Limits::body_budget_bytes` for as long as the
/// request lives; given back when it is dropped. A body of at most `Limits::max_body_bytes`
/// is not counted: each connection holds at most one, so at most `max_connections` ×
/// `max_body_bytes` are held that way. A larger one (a limit raised by `Limits::body_limit`)
/// is counted whole: before any of it is read when its length is declared, chunk by chunk
/// when it is chunked.
pub(crate) struct BodyHold {
    shared: Arc<Shared>,
    source: Source,
    bytes: usize,
}

impl BodyHold {
    pub(crate) fn new(shared: &Arc<Shared>, source: Source) -> BodyHold {
        BodyHold {
            shared: Arc::clone(shared),
            source,
            bytes: 0,
        }
    }

    /// Makes this body `total` bytes long in the count; `false` (nothing changed) when the
    /// budget cannot take it.
    pub(crate) fn reserve(&mut self, total: usize) -> bool {
        let limits = &self.shared.limits;
        if total <= limits.max_body_bytes || total <= self.bytes {
            return true;
        }
        let more = total - self.bytes;
        let held = lock(&self.shared).hold_body(self.source, self.bytes, more, limits);
        if held {
            self.bytes = total;
            self.shared.body_bytes.fetch_add(more, SeqCst);
        }
        held
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        if self.bytes > 0 {
            lock(&self.shared).release_body(self.source, self.bytes);
            self.shared.body_bytes.fetch_sub(self.bytes, SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;
    use std::time::Duration;

    fn limits(per_source: usize, budget: usize) -> Limits {
        Limits {
            max_connections_per_source: per_source,
            body_budget_bytes: budget,
            ..Limits::default()
        }
    }

    fn v4(last: u8) -> Source {
        Source::of(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn ipv6_sources_are_64_bit_networks_and_mapped_ipv4_is_ipv4() {
        let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a.into()), Source::of(b.into()));
        assert_ne!(Source::of(a.into()), Source::of(c.into()));
        let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(Source::of(mapped.into()), v4(7));
        assert_ne!(v4(7), v4(8));
    }

    #[test]
    fn a_source_over_its_cap_is_refused_and_may_come_back_once_one_closes() {
        let limits = limits(2, 1 << 20);
        let mut admission = Admission::new();
        let (first, _) = admission.admit(v4(1), (), false, &limits).unwrap();
        admission.admit(v4(1), (), false, &limits).unwrap();
        assert_eq!(
            admission.admit(v4(1), (), false, &limits).err(),
            Some(Cause::TooManyFromSource)
        );
        assert!(admission.admit(v4(2), (), false, &limits).is_ok());
        admission.close(first);
        assert!(admission.admit(v4(1), (), false, &limits).is_ok());
    }

    #[test]
    fn full_slots_close_the_keep_alive_connection_idle_longest_never_a_busy_one() {
        let limits = limits(64, 1 << 20);
        let mut admission = Admission::new();
        let t0 = Instant::now();
        let ids: Vec<ConnId> = (0..4)
            .map(|i| admission.admit(v4(i), i, false, &limits).unwrap().0)
            .collect();
        // Full, and nobody idle between requests: the newcomer is refused.
        assert_eq!(
            admission.admit(v4(9), 9, true, &limits).err(),
            Some(Cause::TooManyConnections)
        );
        admission.idle(ids[2], t0 + Duration::from_secs(2));
        admission.idle(ids[1], t0 + Duration::from_secs(1));
        admission.idle(ids[3], t0 + Duration::from_secs(3));
        // Connection 3 received a request: no longer a candidate.
        assert!(admission.busy(ids[3]));
        let (_, evicted) = admission.admit(v4(9), 9, true, &limits).unwrap();
        let evicted = evicted.unwrap();
        assert_eq!((evicted.id, evicted.handle), (ids[1], 1));
        // It must not start the request it may be receiving now.
        assert!(!admission.busy(ids[1]));
        admission.close(ids[1]);
        let (_, evicted) = admission.admit(v4(9), 9, true, &limits).unwrap();
        assert_eq!(evicted.unwrap().id, ids[2]);
        assert_eq!(
            admission.admit(v4(9), 9, true, &limits).err(),
            Some(Cause::TooManyConnections)
        );
    }

    #[test]
    fn the_body_budget_holds_across_sources_and_one_source_gets_a_quarter_beyond_one_body() {
        let limits = limits(64, 1000);
        let mut admission: Admission<()> = Admission::new();
        // One body may be as large as the whole budget…
        assert!(admission.hold_body(v4(1), 0, 600, &limits));
        // …a second from the same source only within its quarter (250 bytes).
        assert!(!admission.hold_body(v4(1), 0, 10, &limits));
        // The first body may grow: it is the source's only one.
        assert!(admission.hold_body(v4(1), 600, 100, &limits));
        assert!(admission.hold_body(v4(2), 0, 200, &limits));
        assert!(admission.hold_body(v4(2), 0, 50, &limits));
        assert!(
            !admission.hold_body(v4(2), 0, 1, &limits),
            "over its quarter"
        );
        assert!(
            !admission.hold_body(v4(3), 0, 51, &limits),
            "over the budget"
        );
        assert!(admission.hold_body(v4(3), 0, 50, &limits));
        assert_eq!(admission.body_bytes(), 1000);
        admission.release_body(v4(1), 700);
        assert!(admission.hold_body(v4(3), 50, 250, &limits));
        assert_eq!(admission.body_bytes(), 550);
    }
}
