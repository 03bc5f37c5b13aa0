//! DNS over TCP (RFC 7766): one thread per connection, each query a two-byte length and the
//! message (RFC 1035 §4.2.2), within bounds that one client cannot use up (RFC 7766 §10 asks
//! servers to limit connections per client and the time a connection may hold):
//!
//! - at most `MAX_TCP_CONNECTIONS` open, and `MAX_TCP_PER_SOURCE` from one source (an IPv4
//!   address, an IPv6 /64); a connection over its source's cap is closed at once;
//! - when all are open, a newcomer takes the place of the connection that has waited longest
//!   for its next query (closed as its idle timeout would close it); only when every one is in
//!   the middle of a message is the newcomer closed;
//! - a message must arrive whole within `TCP_MESSAGE_TIME` of its first byte, whatever the
//!   pace of its bytes, and a connection waiting for a query closes after `TCP_IDLE_TIMEOUT`
//!   (RFC 7766 §6.2.3: seconds);
//! - a query over `MAX_TCP_QUERY` bytes closes the connection.
//!
//! A stop closes the connections still open and joins their threads.

use std::collections::{BTreeSet, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{STACK_BYTES, Shared};
use crate::dnsseed::Protocol;

/// Most TCP connections open at once.
pub const MAX_TCP_CONNECTIONS: usize = 64;

/// Most TCP connections open at once from one IPv4 address or IPv6 /64: a resolver needs a
/// few; eight sources are needed to fill every slot.
pub const MAX_TCP_PER_SOURCE: usize = 8;

/// A connection that waits this long for a query is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A query must arrive whole (length and message) within this time of its first byte, and an
/// answer be taken by the client within it; otherwise the connection is closed. A query is
/// one small segment: a few seconds is ample on any link, and a trickle of bytes (one every
/// few seconds) can no longer hold a connection for hours.
pub const TCP_MESSAGE_TIME: Duration = Duration::from_secs(3);

/// Longest query accepted over TCP, in bytes; a longer one closes the connection. Real
/// queries are one question and an OPT record: well under 512 bytes.
pub const MAX_TCP_QUERY: usize = 4096;

/// A client as the per-source cap counts it: an IPv4 address or an IPv6 /64 (one LAN, from
/// which one host takes as many addresses as it likes); an IPv4-mapped IPv6 address is its
/// IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl Source {
    fn of(ip: IpAddr) -> Source {
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

/// The open TCP connections, under one lock: the accept thread registers, prunes and chooses
/// the one to close; each connection thread says when it waits for a query and when one has
/// begun.
#[derive(Default)]
pub(super) struct Connections {
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    open: HashMap<u64, Open>,
    /// Connections waiting for a query, the one waiting longest first.
    idle: BTreeSet<(Instant, u64)>,
    next_id: u64,
}

/// An open connection: a handle on its socket (to close it), its thread, and its state.
struct Open {
    source: Source,
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
    idle_since: Option<Instant>,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connection `id` waits for a query from `now`: it may be closed for a newcomer.
    fn idle(&self, id: u64, now: Instant) {
        let mut registry = self.lock();
        let registry = &mut *registry;
        if let Some(open) = registry.open.get_mut(&id)
            && open.idle_since.is_none()
        {
            open.idle_since = Some(now);
            registry.idle.insert((now, id));
        }
    }

    /// A query has begun on connection `id`; `false` when it was chosen to be closed (and
    /// so no longer registered) or the server is stopping.
    fn busy(&self, id: u64) -> bool {
        let mut registry = self.lock();
        let registry = &mut *registry;
        let Some(open) = registry.open.get_mut(&id) else {
            return false;
        };
        if let Some(since) = open.idle_since.take() {
            registry.idle.remove(&(since, id));
        }
        true
    }

    /// Every connection's socket handle and thread, taken out for a stop.
    pub(super) fn take_all(&self) -> Vec<(TcpStream, Option<JoinHandle<()>>)> {
        let mut registry = self.lock();
        registry.idle.clear();
        registry
            .open
            .drain()
            .map(|(_, open)| (open.stream, open.thread))
            .collect()
    }
}

impl Registry {
    /// Forgets the connections whose threads have ended, and joins them (they have ended:
    /// this does not wait).
    fn prune(&mut self) {
        let done: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, open)| open.thread.as_ref().is_none_or(JoinHandle::is_finished))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(open) = self.open.remove(&id) {
                if let Some(since) = open.idle_since {
                    self.idle.remove(&(since, id));
                }
                if let Some(thread) = open.thread {
                    let _ = thread.join();
                }
            }
        }
    }
}

/// Accepts TCP connections until the server stops.
pub(super) fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of file descriptors, say: back off rather than spin.
                log::warn!("DNS over TCP: accept: {e}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        admit(stream, shared);
    }
}

/// Serves `stream`, closes it at once (its source over its cap, or every connection in the
/// middle of a query), or first closes the connection idle longest to make room for it.
fn admit(stream: TcpStream, shared: &Arc<Shared>) {
    let Ok(peer) = stream.peer_addr() else { return };
    let source = Source::of(peer.ip());
    let mut registry = shared.tcp.lock();
    registry.prune();
    let from_source = registry
        .open
        .values()
        .filter(|open| open.source == source)
        .count();
    if from_source >= MAX_TCP_PER_SOURCE {
        let cap = MAX_TCP_PER_SOURCE;
        log::debug!("DNS over TCP: {cap} connections open from {peer}'s address; closing one more");
        return;
    }
    if registry.open.len() >= MAX_TCP_CONNECTIONS {
        let Some((_, id)) = registry.idle.pop_first() else {
            log::debug!(
                "DNS over TCP: {MAX_TCP_CONNECTIONS} connections open, none idle; closing a new one"
            );
            return;
        };
        // No longer registered, its thread ends at once: its read returns, or it finds
        // itself gone when its query begins (for which it needs the lock).
        let Some(mut evicted) = registry.open.remove(&id) else {
            return;
        };
        drop(registry);
        let _ = evicted.stream.shutdown(Shutdown::Both);
        if let Some(thread) = evicted.thread.take() {
            let _ = thread.join();
        }
        log::debug!("DNS over TCP: closed the connection idle longest for one from {peer}");
        registry = shared.tcp.lock();
    }
    let Ok(handle) = stream.try_clone() else {
        return;
    };
    let id = registry.next_id;
    registry.next_id += 1;
    registry.open.insert(
        id,
        Open {
            source,
            stream: handle,
            thread: None,
            idle_since: None,
        },
    );
    // Registered before its thread starts, so that the thread finds itself; the lock is held
    // until its handle is stored, so that a prune never takes it for ended.
    let serving = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name("dns-tcp".into())
        .stack_size(STACK_BYTES)
        .spawn(move || serve(stream, id, &serving));
    match spawned {
        Ok(thread) => {
            if let Some(open) = registry.open.get_mut(&id) {
                open.thread = Some(thread);
            }
        }
        Err(e) => {
            registry.open.remove(&id);
            log::warn!("DNS over TCP: cannot start a connection thread: {e}");
        }
    }
}

/// Answers the queries of connection `id` until the client closes it, idles, takes longer
/// than `TCP_MESSAGE_TIME` over a query, sends one over `MAX_TCP_QUERY` bytes or one that
/// gets no answer, it is closed for a newcomer, or the server stops.
fn serve(stream: TcpStream, id: u64, shared: &Shared) {
    serve_queries(&stream, id, shared);
    // The accept thread holds a handle on this socket until it prunes the connection: the
    // client is told now.
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve_queries(mut stream: &TcpStream, id: u64, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(TCP_MESSAGE_TIME));
    let _ = stream.set_nodelay(true);
    let mut rng = fastrand::Rng::new();
    let mut view = shared.view();
    let mut query = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        shared.tcp.idle(id, Instant::now());
        let mut length = [0u8; 2];
        let _ = stream.set_read_timeout(Some(TCP_IDLE_TIMEOUT));
        let first = stream.read(&mut length[..1]);
        if !shared.tcp.busy(id) || !matches!(first, Ok(1)) {
            return;
        }
        let deadline = Instant::now() + TCP_MESSAGE_TIME;
        if read_by(stream, &mut length[1..], deadline).is_err() {
            return;
        }
        let length = usize::from(u16::from_be_bytes(length));
        if length > MAX_TCP_QUERY {
            return;
        }
        query.resize(length, 0);
        if read_by(stream, &mut query, deadline).is_err() {
            return;
        }
        let answer = shared.answer(&query, Protocol::Tcp, &mut view, None, &mut rng);
        let Some(bytes) = answer.bytes else {
            return;
        };
        let Ok(length) = u16::try_from(bytes.len()) else {
            return;
        };
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&bytes);
        if stream.write_all(&framed).is_err() {
            return;
        }
    }
}

/// Fills `out` from `stream` by `deadline`, however the bytes are paced.
fn read_by(mut stream: &TcpStream, mut out: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    while !out.is_empty() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or(ErrorKind::TimedOut)?;
        // At least a millisecond: zero would mean no timeout at all.
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        match stream.read(out) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => out = &mut out[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Source;
    use std::net::{IpAddr, Ipv6Addr};

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64_bit_networks() {
        let a: Ipv6Addr = "2001:db8:0:1:aaaa::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:0:1:bbbb::2".parse().unwrap();
        let c: Ipv6Addr = "2001:db8:0:2::1".parse().unwrap();
        assert_eq!(Source::of(a.into()), Source::of(b.into()));
        assert_ne!(Source::of(a.into()), Source::of(c.into()));
        let mapped: Ipv6Addr = "::ffff:127.0.0.9".parse().unwrap();
        let v4: IpAddr = "127.0.0.9".parse().unwrap();
        assert_eq!(Source::of(mapped.into()), Source::of(v4));
    }
}
