//! The DNS seeding server (SPEC §12): carries `dnsseed::answer` over UDP and TCP on
//! `--seed_listen`, with plain std sockets and threads.
//!
//! - UDP: a few worker threads share one socket; each reads a datagram, answers it and sends
//!   the answer back. The work per datagram is at most one call of `dnsseed::answer`; the
//!   busiest questions reuse a recent answer (`dnscache`). Each client network gets at most
//!   `--seed_rrl` answers a second (`rrl`); past it, an empty truncated reply or nothing.
//! - TCP (RFC 7766, `tcp`): one thread per connection, as the HTTP side runs them, with caps
//!   on connections, overall and per source (the connection idle longest makes room for a
//!   newcomer), small stacks, an idle timeout, a deadline for each whole query, and a maximum
//!   query length. A stop closes the connections still open and joins their threads.
//!
//! Answers come from a `Healthy` view of the store's current snapshot: each thread keeps the
//! view it last used and asks for a new one only when the store has published another
//! snapshot; the new view is made once, under a lock, and shared. Idle UDP workers follow the
//! store too (every `UDP_POLL`), so that a view never keeps an old table alive for long.
//! Every answer is counted by query type and response code for `/metrics`; the answers reused
//! from a worker's cache, and the queries over `--seed_rrl` (slipped or dropped), apart.

use std::io;
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::SeedDnsSettings;
use crate::dnscache::AnswerCache;
pub use crate::dnscounts::DnsCounts;
use crate::dnsseed::{self, Answer, Healthy, Protocol, Zone, ZoneConfig};
use crate::error::Error;
use crate::membership::Snapshot;
use crate::stats::Stats;

mod rrl;
mod tcp;

pub use rrl::{Action, ResponseLimit};
pub use tcp::{
    MAX_TCP_CONNECTIONS, MAX_TCP_PER_SOURCE, MAX_TCP_QUERY, TCP_IDLE_TIMEOUT, TCP_MESSAGE_TIME,
};

/// Threads answering UDP queries.
const UDP_WORKERS: usize = 4;

/// Largest datagram read; a longer one is cut here, and so answered FORMERR.
const UDP_BUFFER: usize = 4096;

/// How often a UDP worker blocked on an idle socket looks whether it should stop.
const UDP_POLL: Duration = Duration::from_millis(200);

/// Stack of each DNS thread: they parse and build messages of at most 64 KiB on the heap.
const STACK_BYTES: usize = 256 * 1024;

/// Longest wait for the server's threads at a stop (SPEC §9 allows 2 s for all of it).
const STOP_WAIT: Duration = Duration::from_millis(400);

/// Where the server takes its nodes from: the store's current snapshot (cheap: an `Arc`).
pub type NodeSource = Arc<dyn Fn() -> Arc<Snapshot> + Send + Sync>;

/// The UDP socket and TCP listener of `--seed_listen`, on one port.
pub struct Sockets {
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Sockets {
    /// Binds UDP and TCP on `listen`. With port 0, UDP takes a free port and TCP the same
    /// one; when TCP finds it taken, another is tried.
    pub fn bind(listen: SocketAddr) -> Result<Sockets, Error> {
        let bind_error = |source| Error::Bind {
            addr: format!("{listen} (DNS seeding)"),
            source,
        };
        let mut last = None;
        for _ in 0..if listen.port() == 0 { 20 } else { 1 } {
            let udp = UdpSocket::bind(listen).map_err(bind_error)?;
            let addr = udp.local_addr().map_err(bind_error)?;
            match TcpListener::bind(addr) {
                Ok(tcp) => return Ok(Sockets { udp, tcp }),
                Err(e) => last = Some(e),
            }
        }
        Err(bind_error(
            last.unwrap_or_else(|| io::ErrorKind::AddrInUse.into()),
        ))
    }

    /// The bound address (the same port for UDP and TCP).
    pub fn addr(&self) -> io::Result<SocketAddr> {
        self.udp.local_addr()
    }
}

/// A running DNS seeding server.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// What the server threads share.
struct Shared {
    zone: Zone,
    nodes: NodeSource,
    /// The newest view made, of the newest snapshot seen.
    view: Mutex<Arc<Healthy>>,
    stats: Arc<Stats>,
    stop: AtomicBool,
    /// The TCP connections open (and the finished ones, until the next accept prunes them).
    tcp: tcp::Connections,
    /// `--seed_rrl`'s buckets; none without a limit.
    limit: Option<Mutex<ResponseLimit>>,
}

impl Shared {
    /// Makes `local` (a thread's view) the view of the store's current snapshot. Cheap when
    /// nothing changed: one `Arc` from the store. Otherwise the shared view is brought up to
    /// date once, under its lock, with the snapshot read under that lock so that views only
    /// move forward.
    fn refresh(&self, local: &mut Arc<Healthy>) {
        if local.is_of(&(self.nodes)()) {
            return;
        }
        let mut shared = self.view.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = (self.nodes)();
        if !shared.is_of(&snapshot) {
            *shared = Arc::new(shared.next(snapshot));
        }
        *local = Arc::clone(&shared);
    }

    /// What to do with a UDP query from `source` now (`--seed_rrl`).
    fn judge(&self, source: IpAddr) -> Action {
        match &self.limit {
            None => Action::Answer,
            Some(limit) => limit
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .judge(source, Instant::now()),
        }
    }

    /// The empty truncated reply to a query over `--seed_rrl`, counted as slipped, or as
    /// dropped when the packet gets none (garbage); a panic (there should be none) drops it
    /// and the thread lives on, as in `answer`.
    fn slip(&self, packet: &[u8]) -> Answer {
        let answer = guarded("slip", packet, || dnsseed::slip(packet));
        let counter = match answer.bytes {
            Some(_) => &self.stats.dns.slipped,
            None => &self.stats.dns.rate_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }

    /// The current shared view, for a thread starting up.
    fn view(&self) -> Arc<Healthy> {
        let mut view = Arc::clone(&self.view.lock().unwrap_or_else(PoisonError::into_inner));
        self.refresh(&mut view);
        view
    }

    /// Answers one message from the current nodes, over UDP through the worker's `cache`; a
    /// panic (there should be none) drops the message and the thread lives on.
    fn answer(
        &self,
        packet: &[u8],
        protocol: Protocol,
        view: &mut Arc<Healthy>,
        cache: Option<&mut AnswerCache>,
        rng: &mut fastrand::Rng,
    ) -> Answer {
        let answer = guarded("answer", packet, || {
            self.refresh(view);
            match cache {
                Some(cache) if protocol == Protocol::Udp => {
                    let (answer, reused) =
                        cache.answer(&self.zone, view, packet, rng, Instant::now());
                    if reused {
                        self.stats.dns.reused.fetch_add(1, Ordering::Relaxed);
                    }
                    answer
                }
                _ => dnsseed::answer(&self.zone, view, packet, protocol, rng),
            }
        });
        self.stats.dns.count(&answer);
        answer
    }
}

/// What `reply` makes of `packet`, or no answer if it panics (there should be none): the
/// message is dropped, logged as `what`, and the thread lives on.
fn guarded(what: &str, packet: &[u8], reply: impl FnOnce() -> Answer) -> Answer {
    panic::catch_unwind(AssertUnwindSafe(reply)).unwrap_or_else(|_| {
        log::error!(
            "DNS {what} panicked on a {}-byte message; dropped",
            packet.len()
        );
        Answer::dropped()
    })
}

/// Binds `--seed_listen` and serves the zone of `settings` from `nodes`, the store's
/// snapshots.
pub fn start_for(
    settings: &SeedDnsSettings,
    nodes: NodeSource,
    stats: &Arc<Stats>,
) -> Result<DnsServer, Error> {
    let sockets = Sockets::bind(settings.listen)?;
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32);
    let zone = Zone::new(&ZoneConfig {
        name: settings.zone.clone(),
        seed_port: settings.port,
        ns_addr: Some(settings.listen.ip()),
        ns_names: settings.ns.clone(),
        serial,
    })
    .map_err(|e| Error::Usage(format!("invalid --seed_zone: {e}")))?;
    let limit = ResponseLimit::new(settings.rrl);
    DnsServer::start(sockets, zone, nodes, limit, Arc::clone(stats))
}

impl DnsServer {
    /// Starts the UDP workers and the TCP accept thread; `limit` bounds the UDP answers to
    /// each client network (`--seed_rrl`).
    pub fn start(
        sockets: Sockets,
        zone: Zone,
        nodes: NodeSource,
        limit: Option<ResponseLimit>,
        stats: Arc<Stats>,
    ) -> Result<DnsServer, Error> {
        let start_error = |source| Error::Start {
            what: "the DNS seeding server",
            source,
        };
        let addr = sockets.addr().map_err(start_error)?;
        let view = Healthy::new(nodes(), zone.seed_port());
        let shared = Arc::new(Shared {
            zone,
            nodes,
            view: Mutex::new(Arc::new(view)),
            stats,
            stop: AtomicBool::new(false),
            tcp: tcp::Connections::default(),
            limit: limit.map(Mutex::new),
        });
        sockets
            .udp
            .set_read_timeout(Some(UDP_POLL))
            .map_err(start_error)?;
        let mut threads = Vec::new();
        for i in 0..UDP_WORKERS {
            let socket = sockets.udp.try_clone().map_err(start_error)?;
            let shared = Arc::clone(&shared);
            let thread = thread::Builder::new()
                .name(format!("dns-udp-{i}"))
                .stack_size(STACK_BYTES)
                .spawn(move || serve_udp(&socket, &shared))
                .map_err(start_error)?;
            threads.push(thread);
        }
        let listener = sockets.tcp;
        let accepting = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("dns-tcp-accept".into())
            .stack_size(STACK_BYTES)
            .spawn(move || tcp::accept(&listener, &accepting))
            .map_err(start_error)?;
        threads.push(accept);
        Ok(DnsServer {
            addr,
            shared,
            threads,
        })
    }

    /// The address served, UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops: the UDP workers and the accept thread end, the TCP connections still open are
    /// closed, and every thread is joined. Waits about `UDP_POLL`, never past `deadline` nor
    /// more than `STOP_WAIT`; a thread still running then is left to end with the process.
    pub fn shutdown(self, deadline: Instant) {
        let deadline = deadline.min(Instant::now() + STOP_WAIT);
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept thread with a connection of our own.
        let target = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, self.addr.port()).into(),
            IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, self.addr.port()).into(),
            _ => self.addr,
        };
        let _ = TcpStream::connect_timeout(&target, Duration::from_millis(200));
        let mut threads = self.threads;
        // Once the accept thread is gone no connection is added: close the open ones, which
        // ends their threads' reads at once.
        if let Some(accept) = threads.pop() {
            join_by(accept, deadline);
        }
        let connections = self.shared.tcp.take_all();
        for (stream, _) in &connections {
            let _ = stream.shutdown(Shutdown::Both);
        }
        threads.extend(connections.into_iter().filter_map(|(_, thread)| thread));
        let mut late = 0;
        for thread in threads {
            if !join_by(thread, deadline) {
                late += 1;
            }
        }
        if late > 0 {
            log::warn!("{late} DNS seeding thread(s) did not stop in time; leaving them");
        }
    }
}

/// Joins `thread` if it ends by `deadline`; returns whether it did.
fn join_by(thread: JoinHandle<()>, deadline: Instant) -> bool {
    while !thread.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    if thread.is_finished() {
        let _ = thread.join();
        return true;
    }
    false
}

fn serve_udp(socket: &UdpSocket, shared: &Shared) {
    let mut buffer = vec![0u8; UDP_BUFFER];
    let mut rng = fastrand::Rng::new();
    let mut cache = AnswerCache::default();
    let mut view = shared.view();
    while !shared.stop.load(Ordering::Relaxed) {
        let (len, peer) = match socket.recv_from(&mut buffer) {
            Ok(got) => got,
            // Idle: follow the store all the same, so that no old snapshot is kept alive.
            Err(e) if is_transient(&e) => {
                shared.refresh(&mut view);
                continue;
            }
            Err(e) => {
                log::warn!("DNS over UDP: {e}");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if peer.port() == 0 {
            continue;
        }
        let packet = &buffer[..len];
        let answer = match shared.judge(peer.ip()) {
            Action::Answer => {
                shared.answer(packet, Protocol::Udp, &mut view, Some(&mut cache), &mut rng)
            }
            Action::Slip => shared.slip(packet),
            Action::Drop => {
                shared
                    .stats
                    .dns
                    .rate_dropped
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        if let Some(bytes) = answer.bytes {
            // A failed send (the client's port unreachable, a full buffer) loses one answer,
            // as UDP may; the client asks again.
            let _ = socket.send_to(&bytes, peer);
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}
