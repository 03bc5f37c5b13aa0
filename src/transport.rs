//! The seam between the update rounds and the world: how a round reaches other processes
//! (`Transport`), what it reads the time from (`Clock`), and the typed causes of a failed
//! request (`PeerError`). `peers.rs` implements `Transport` with real HTTP requests; the
//! simulator implements it in memory, so both run the same round logic (`update.rs`).

use std::fmt;
use std::time::Instant;

use crate::nodes::Node;
use crate::resolve::LookupError;

/// Why a request to another process failed: one variant per cause an operator can act on,
/// counted by cause in `/metrics` (`seedmesh_check_failures_total{cause}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// No whole answer within `--timeout` (connect and answer together).
    Timeout,
    /// The connection was refused: nothing listens on that port.
    ConnectionRefused,
    /// The connection was reset or closed before a whole answer came.
    Reset,
    /// The name does not resolve.
    HostNotFound,
    /// Another network failure (no route, network unreachable…), with the system's words.
    Network(String),
    /// An answer, but not HTTP this client could read (a garbled or oversized head).
    Protocol(String),
    /// `GET /nodes/` answered this status instead of 200.
    Status(u16),
    /// A `GET /nodes/` answer over `peers::MAX_LIST_BYTES`, dropped unread.
    TooLarge,
    /// A `GET /nodes/` answer that is not a JSON array of nodes; the reason says what it is.
    NotAList(String),
    /// The peer answered for another network: its `Seedmesh-Network` header (SPEC §11).
    OtherNetwork(String),
    /// The name resolves only to addresses the local-address rule refuses: no connection was
    /// made (SPEC §11); the reason says which and why.
    LocalAddress(String),
    /// The name resolves to this process's own address and port (SPEC §1).
    IsSelf,
}

impl PeerError {
    /// Every cause label, in the order `/metrics` lists them.
    pub const CAUSES: [&'static str; 12] = [
        "timeout",
        "refused",
        "reset",
        "host_not_found",
        "network",
        "protocol",
        "status",
        "too_large",
        "not_a_list",
        "other_network",
        "local_address",
        "itself",
    ];

    /// The position of `OtherNetwork` in `CAUSES`.
    pub const OTHER_NETWORK: usize = 9;

    /// The position of this cause in `CAUSES`.
    pub fn cause_index(&self) -> usize {
        match self {
            PeerError::Timeout => 0,
            PeerError::ConnectionRefused => 1,
            PeerError::Reset => 2,
            PeerError::HostNotFound => 3,
            PeerError::Network(_) => 4,
            PeerError::Protocol(_) => 5,
            PeerError::Status(_) => 6,
            PeerError::TooLarge => 7,
            PeerError::NotAList(_) => 8,
            PeerError::OtherNetwork(_) => PeerError::OTHER_NETWORK,
            PeerError::LocalAddress(_) => 10,
            PeerError::IsSelf => 11,
        }
    }

    /// The short label of this cause, one of `CAUSES`.
    pub fn cause(&self) -> &'static str {
        PeerError::CAUSES[self.cause_index()]
    }
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Timeout => f.write_str("timed out"),
            PeerError::ConnectionRefused => f.write_str("connection refused"),
            PeerError::Reset => f.write_str("connection reset before a whole answer"),
            PeerError::HostNotFound => f.write_str("host not found"),
            PeerError::Network(e) => write!(f, "network error: {e}"),
            PeerError::Protocol(e) => write!(f, "not an HTTP answer: {e}"),
            PeerError::Status(status) => write!(f, "GET /nodes/ answered {status}"),
            PeerError::TooLarge => write!(
                f,
                "list over {} MiB dropped",
                crate::peers::MAX_LIST_BYTES / 1024 / 1024
            ),
            PeerError::NotAList(reason) => write!(f, "not a list of nodes: {reason}"),
            PeerError::OtherNetwork(name) => {
                write!(f, "other network: it answers for network {name:?}")
            }
            PeerError::LocalAddress(reason) => write!(f, "not connected: {reason}"),
            PeerError::IsSelf => f.write_str("it is this process itself"),
        }
    }
}

impl std::error::Error for PeerError {}

/// What a peer's `GET /nodes/` answered.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PeerList {
    /// The valid entries, in the peer's order.
    pub nodes: Vec<Node>,
    /// Entries that were not valid nodes, skipped.
    pub invalid: usize,
}

/// How an update round reaches other processes. Every call is bounded in time by the
/// implementation (`--timeout` for HTTP); none panics on a peer's behaviour.
pub trait Transport: Sync {
    /// `GET /`: online when it answers anything (SPEC §5; the seed's liveness check).
    fn probe(&self, node: &Node) -> Result<(), PeerError>;

    /// `POST /` with `me` as the body: announces us and checks the peer in one request
    /// (SPEC §7 step 1). Online when it answers anything.
    fn announce(&self, node: &Node, me: &Node) -> Result<(), PeerError>;

    /// `GET /nodes/`, with `me` as the JSON body when given (so seeds of the original's later
    /// version register us; SPEC §2): the peer's list, invalid entries skipped.
    fn fetch_nodes(&self, node: &Node, me: Option<&Node>) -> Result<PeerList, PeerError>;

    /// `GET /nodes/?limit=LIMIT`, otherwise as `fetch_nodes`: a diverse sample of at most
    /// `limit` nodes (SPEC §2, §11), which the feeler asks a seed for (`feeler.rs`). A peer
    /// that ignores the query (the original implementation) answers its whole list, and the
    /// caller takes what it needs from that.
    fn fetch_sample(
        &self,
        node: &Node,
        me: Option<&Node>,
        limit: usize,
    ) -> Result<PeerList, PeerError>;

    /// The nodes a DNS seed lists for `domain`: `_seedmesh._tcp.DOMAIN SRV` (SPEC §12), looked
    /// up within the same bound as a request. A transport without DNS (the simulator's) finds
    /// none: it says so.
    fn seed_domain(&self, domain: &str) -> Result<PeerList, LookupError> {
        Err(LookupError::NoResolver(format!(
            "this transport does not look up DNS names such as {domain}"
        )))
    }

    /// Runs `work(i)` for every `i` in `0..n`, at most `--check_threads` at once, and returns
    /// when all have run. One slow call delays only its own thread.
    fn each(&self, n: usize, work: &(dyn Fn(usize) + Sync));
}

/// Where a round reads the time. Real processes use `SystemClock`; the simulator hands in
/// simulated time.
pub trait Clock: Sync {
    /// Now, on a monotonic clock.
    fn now(&self) -> Instant;
}

/// The machine's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_its_own_label() {
        let errors = [
            PeerError::Timeout,
            PeerError::ConnectionRefused,
            PeerError::Reset,
            PeerError::HostNotFound,
            PeerError::Network("x".into()),
            PeerError::Protocol("x".into()),
            PeerError::Status(500),
            PeerError::TooLarge,
            PeerError::NotAList("x".into()),
            PeerError::OtherNetwork("x".into()),
            PeerError::LocalAddress("x".into()),
            PeerError::IsSelf,
        ];
        for (i, e) in errors.iter().enumerate() {
            assert_eq!(e.cause_index(), i, "{e}");
            assert_eq!(e.cause(), PeerError::CAUSES[i]);
        }
    }
}
