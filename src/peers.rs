//! The real `Transport`: HTTP requests to other processes with ureq (SPEC §5, §7, §10, §11),
//! every one bounded by `--timeout`, run on at most `--check_threads` threads by `parallel`;
//! and the DNS lookups of seed domains (SPEC §12) through `resolve`, bounded the same way.
//!
//! Before any connection, the address is held to SPEC §11's local-address rule: an IP
//! literal as it is, a name by each address it resolves to (resolved here, not by ureq, so
//! that the address connected to is the one checked). With `--network`, every request
//! carries the `Seedmesh-Network` header and an answer naming another network is a failure.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, mpsc};
use std::thread;
use std::time::Duration;

use crate::config::Identity;
use crate::nodes::{Host, Node};
use crate::policy::LocalRule;
use crate::resolve::LookupError;
use crate::transport::{PeerError, PeerList, Transport};

/// Resolves an IP-literal URL to its address without a thread, and a name with ureq's
/// default resolver. ureq's default resolver, given a timeout (every call of ours has one),
/// starts a thread for each request to resolve even an IP literal; our peer requests are
/// always to IP literals (names are resolved and checked in `Peers::target`), and so is the
/// application when `--app` names an IP.
#[derive(Debug, Default)]
pub struct LiteralResolver {
    names: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        match literal.parse::<IpAddr>() {
            Ok(ip) => {
                let mut resolved = self.empty();
                resolved.push(SocketAddr::new(ip, uri.port_u16().unwrap_or(80)));
                Ok(resolved)
            }
            Err(_) => self.names.resolve(uri, config, timeout),
        }
    }
}

/// An agent of `config` that resolves IP literals without a thread (see `LiteralResolver`).
pub fn agent(config: ureq::config::Config) -> ureq::Agent {
    let connector = ureq::unversioned::transport::DefaultConnector::default();
    ureq::Agent::with_parts(config, connector, LiteralResolver::default())
}

/// The header that keeps networks apart (SPEC §11).
pub const NETWORK_HEADER: &str = "Seedmesh-Network";

/// The header by which a process recognises an answer from itself: a random number drawn at
/// start, on every answer (SPEC §1: a process never probes itself, under any address).
pub const INSTANCE_HEADER: &str = "Seedmesh-Instance";

/// What every request to a peer respects (SPEC §1, §11).
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    /// SPEC §11's local-address rule, for every address before it is connected to.
    pub local: LocalRule,
    /// This process: a name that resolves to it is a failed check, never a request.
    pub own: Identity,
    /// `--network`: sent with every request, and checked in every answer.
    pub network: Option<String>,
    /// Seeds given on the command line: the operator's choice, exempt from the local rule.
    pub exempt: Vec<Node>,
    /// This process's `Seedmesh-Instance`: an answer carrying it came from itself.
    pub instance: String,
}

/// A peer's `/nodes/` answer over this size is dropped (SPEC §10), in bytes.
pub const MAX_LIST_BYTES: u64 = 4 * 1024 * 1024;

/// Most bytes in the status line and headers of a peer's answer (bodies are not bounded by
/// this; they stream through).
const ANSWER_HEAD_BYTES: usize = 16 * 1024;

/// Stack size of the threads that make peer requests, in bytes.
const CHECK_STACK_BYTES: usize = 256 * 1024;

/// The HTTP client for peers: one agent, cheap to clone, every call bounded by the timeout.
#[derive(Clone)]
pub struct Peers {
    agent: ureq::Agent,
    /// Most requests in flight at once in `each` (`--check_threads`).
    threads: usize,
    timeout: Duration,
    policy: PeerPolicy,
    /// `--resolver`: the DNS server asked for seed domains; `None`: the system's.
    resolver: Option<SocketAddr>,
}

/// Where a request goes: the URL's origin (an IP literal, so ureq resolves nothing) and, for
/// a node known by name, the `Host` header that names it.
struct Target {
    origin: String,
    host: Option<String>,
}

impl Peers {
    /// A client whose every request (connect, send, answer) ends within `timeout` (a name's
    /// resolution has a `timeout` of its own before that), running at most `threads`
    /// requests at once, within `policy`.
    pub fn new(timeout: Duration, threads: usize, policy: PeerPolicy) -> Peers {
        let config = ureq::Agent::config_builder()
            // Connect, send and receive, all within one budget.
            .timeout_global(Some(timeout))
            // Any HTTP answer means the peer is online (SPEC §5).
            .http_status_as_error(false)
            // Peers are addressed directly; a proxy from the environment would be wrong.
            .proxy(None)
            .max_redirects(0)
            // No pooling: rounds are a minute apart and servers close idle connections after
            // 10 s, so a pooled connection would be stale and fail a healthy peer.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            // ureq's buffers default to 128 KiB in and 128 KiB out per request: on every
            // check thread, where our requests are a few hundred bytes and an answer's head
            // has to fit the input buffer only, that is memory for nothing.
            .input_buffer_size(ANSWER_HEAD_BYTES)
            .max_response_header_size(ANSWER_HEAD_BYTES)
            .output_buffer_size(4 * 1024)
            .user_agent(concat!("seedmesh/", env!("CARGO_PKG_VERSION")))
            .build();
        Peers {
            agent: agent(config),
            threads,
            timeout,
            policy,
            resolver: None,
        }
    }

    /// The same client, asking `resolver` (`None`: the nameservers of `/etc/resolv.conf`)
    /// when it looks up a seed domain (SPEC §12).
    pub fn with_resolver(mut self, resolver: Option<SocketAddr>) -> Peers {
        self.resolver = resolver;
        self
    }

    /// Where to send a request for `node`, once its address passed the rules.
    fn target(&self, node: &Node) -> Result<Target, PeerError> {
        let exempt = self.policy.exempt.contains(node);
        let allowed = |ip: IpAddr| -> Result<(), PeerError> {
            let candidate = Node {
                host: Host::Ip(ip.to_canonical()),
                port: node.port,
            };
            if self.policy.own.contains(&candidate) {
                return Err(PeerError::IsSelf);
            }
            if exempt {
                return Ok(());
            }
            self.policy
                .local
                .check_ip(ip)
                .map_err(|refusal| PeerError::LocalAddress(refusal.to_string()))
        };
        match &node.host {
            Host::Ip(ip) => {
                allowed(*ip)?;
                Ok(Target {
                    origin: node.url(""),
                    host: None,
                })
            }
            Host::Name(name) => {
                let addrs = resolve(name, node.port, self.timeout)?;
                let mut refused = None;
                for addr in addrs {
                    match allowed(addr.ip()) {
                        Ok(()) => {
                            let at = Node {
                                host: Host::Ip(addr.ip().to_canonical()),
                                port: node.port,
                            };
                            return Ok(Target {
                                origin: at.url(""),
                                host: Some(node.to_string()),
                            });
                        }
                        Err(PeerError::IsSelf) => return Err(PeerError::IsSelf),
                        Err(e) => refused = refused.or(Some(e)),
                    }
                }
                Err(refused.unwrap_or(PeerError::HostNotFound))
            }
        }
    }

    /// A request to `node` at `path`, with the headers every request carries.
    fn request<B>(
        &self,
        node: &Node,
        path: &str,
        make: impl FnOnce(&ureq::Agent, String) -> ureq::RequestBuilder<B>,
    ) -> Result<ureq::RequestBuilder<B>, PeerError> {
        let target = self.target(node)?;
        let mut request = make(&self.agent, format!("{}{path}", target.origin));
        if let Some(host) = target.host {
            request = request.header("Host", host);
        }
        if let Some(network) = &self.policy.network {
            request = request.header(NETWORK_HEADER, network);
        }
        Ok(request)
    }

    /// An answer, unless it names another network or comes from this process itself.
    fn checked(
        &self,
        answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, PeerError> {
        let response = answer.map_err(cause)?;
        if response
            .headers()
            .get(INSTANCE_HEADER)
            .is_some_and(|instance| instance.as_bytes() == self.policy.instance.as_bytes())
        {
            return Err(PeerError::IsSelf);
        }
        if let (Some(ours), Some(theirs)) =
            (&self.policy.network, response.headers().get(NETWORK_HEADER))
            && theirs.as_bytes() != ours.as_bytes()
        {
            let theirs = String::from_utf8_lossy(theirs.as_bytes()).into_owned();
            return Err(PeerError::OtherNetwork(theirs));
        }
        Ok(response)
    }
}

/// The addresses of `name`, resolved by the system within `timeout` (on a thread of its own:
/// the system resolver has no timeout we can set).
fn resolve(name: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, PeerError> {
    let (tx, rx) = mpsc::channel();
    let query = (name.to_owned(), port);
    let spawned = thread::Builder::new()
        .name("resolve".into())
        .stack_size(CHECK_STACK_BYTES)
        .spawn(move || {
            let _ = tx.send(query.to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        });
    if let Err(e) = spawned {
        return Err(PeerError::Network(format!("cannot resolve {name}: {e}")));
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(PeerError::HostNotFound),
        Err(_) => Err(PeerError::Timeout),
    }
}

impl Transport for Peers {
    fn probe(&self, node: &Node) -> Result<(), PeerError> {
        let request = self.request(node, "/", |agent, url| agent.get(url))?;
        self.checked(request.call()).map(drop)
    }

    fn announce(&self, node: &Node, me: &Node) -> Result<(), PeerError> {
        let request = self.request(node, "/", |agent, url| agent.post(url))?;
        let answer = request
            .header("Content-Type", "application/json")
            .send(&json(me)[..]);
        self.checked(answer).map(drop)
    }

    fn fetch_nodes(&self, node: &Node, me: Option<&Node>) -> Result<PeerList, PeerError> {
        self.fetch(node, "/nodes/", me)
    }

    fn fetch_sample(
        &self,
        node: &Node,
        me: Option<&Node>,
        limit: usize,
    ) -> Result<PeerList, PeerError> {
        self.fetch(node, &format!("/nodes/?limit={limit}"), me)
    }

    fn seed_domain(&self, domain: &str) -> Result<PeerList, LookupError> {
        let nodes = crate::resolve::seed_nodes(domain, self.resolver, self.timeout)?;
        Ok(PeerList { nodes, invalid: 0 })
    }

    fn each(&self, n: usize, work: &(dyn Fn(usize) + Sync)) {
        let items: Vec<usize> = (0..n).collect();
        parallel(&items, self.threads, |&i| work(i));
    }
}

impl Peers {
    /// `GET` of `path` (`/nodes/`, with a query or not) from `node`, with `me` as the body
    /// when given: the list it answers (see `Transport::fetch_nodes`).
    fn fetch(&self, node: &Node, path: &str, me: Option<&Node>) -> Result<PeerList, PeerError> {
        let request = self.request(node, path, |agent, url| agent.get(url))?;
        let answer = match me {
            // The original's later version registers a node that sends itself as the body
            // of `GET /nodes/`, and answers 415 to a `GET /nodes/` without one (SPEC §2).
            Some(me) => request
                .header("Content-Type", "application/json")
                .force_send_body()
                .send(&json(me)[..]),
            None => request.call(),
        };
        let mut response = self.checked(answer)?;
        let status = response.status().as_u16();
        if status != 200 && me.is_some() {
            // Our registration was refused (a full table, a rate limit…): the list is
            // still worth having.
            return self.fetch(node, path, None);
        }
        if status != 200 {
            return Err(PeerError::Status(status));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_LIST_BYTES)
            .read_to_vec()
            .map_err(cause)?;
        parse_list(&body)
    }
}

/// A node as the JSON body of a request.
fn json(node: &Node) -> Vec<u8> {
    // Serializing our own type to memory cannot fail.
    serde_json::to_vec(node).unwrap_or_default()
}

/// Reads a `GET /nodes/` answer: a JSON array whose invalid entries are skipped (read as
/// Python's `json` reads it, see `pyjson`). Public so that the simulator reads a peer's
/// answer exactly as this client does.
///
/// # Errors
/// `PeerError::NotAList` when the body is not a JSON array.
pub fn parse_list(body: &[u8]) -> Result<PeerList, PeerError> {
    let list =
        crate::pyjson::read_node_list(body).map_err(|e| PeerError::NotAList(e.to_string()))?;
    Ok(PeerList {
        nodes: list.nodes,
        invalid: list.skipped,
    })
}

/// The cause of a failed request, from ureq's error.
fn cause(e: ureq::Error) -> PeerError {
    match e {
        ureq::Error::Timeout(_) => PeerError::Timeout,
        ureq::Error::HostNotFound => PeerError::HostNotFound,
        ureq::Error::BodyExceedsLimit(_) => PeerError::TooLarge,
        ureq::Error::Protocol(e) => PeerError::Protocol(e.to_string()),
        ureq::Error::Io(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => PeerError::ConnectionRefused,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => PeerError::Timeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => PeerError::Reset,
            _ => PeerError::Network(e.to_string()),
        },
        other => PeerError::Network(other.to_string()),
    }
}

/// Runs `f` on every item with at most `threads` threads at once, and returns the results in
/// the order of `items`. One slow item delays only its own thread.
pub fn parallel<T, R, F>(items: &[T], threads: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { return };
            let result = f(item);
            *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
        }
    };
    thread::scope(|scope| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            let spawned = thread::Builder::new()
                .name("peer-check".into())
                .stack_size(CHECK_STACK_BYTES)
                .spawn_scoped(scope, work);
            if spawned.is_err() {
                // Out of threads: the ones already running (or this one) do the rest.
                break;
            }
        }
    });
    // If not even one thread could start, do the work here.
    work();
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .unwrap_or_else(|| unreachable!("every item was processed"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn parallel_keeps_order_and_bounds_threads() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let items: Vec<u32> = (0..40).collect();
        let out = parallel(&items, 4, |&i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(peak.load(Ordering::SeqCst) <= 4);
        assert!(peak.load(Ordering::SeqCst) >= 2, "work did run in parallel");
    }

    #[test]
    fn one_slow_item_does_not_delay_the_others() {
        let items: Vec<u64> = vec![300, 1, 1, 1, 1, 1, 1, 1];
        let started = Instant::now();
        let finished = parallel(&items, 2, |&ms| {
            thread::sleep(Duration::from_millis(ms));
            started.elapsed()
        });
        // The fast items all finish on the second thread long before the slow one.
        assert!(
            finished[1..]
                .iter()
                .all(|t| *t < Duration::from_millis(200)),
            "{finished:?}"
        );
    }

    /// Serves one HTTP answer with `head_extra` added to its head and `body`, once.
    fn serve_once(head_extra: String, body: String) -> Node {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let answer = format!(
                "HTTP/1.1 200 OK\r\n{head_extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
        });
        Node::new("127.0.0.1", port).unwrap()
    }

    #[test]
    fn lists_far_larger_than_the_input_buffer_stream_through() {
        let nodes: Vec<String> = (1..=5000)
            .map(|p| format!(r#"{{"ip_address":"127.0.0.9","port":{p}}}"#))
            .collect();
        let body = format!("[{}]", nodes.join(","));
        assert!(body.len() > 10 * ANSWER_HEAD_BYTES);
        // A head of a few KiB (long headers from another implementation) fits too.
        let head = format!("X-Padding: {}\r\n", "x".repeat(4000));
        let policy = PeerPolicy {
            local: LocalRule {
                allow_local: true,
                public_only: false,
            },
            own: Identity::of(Vec::new()),
            network: None,
            exempt: Vec::new(),
            instance: "test".into(),
        };
        let peers = Peers::new(Duration::from_secs(5), 4, policy);
        let list = peers.fetch_nodes(&serve_once(head, body), None).unwrap();
        assert_eq!(list.nodes.len(), 5000);
        assert_eq!(list.nodes[4999].port, 5000);

        // The bound on heads is explicit: a bigger one is no answer.
        let head = format!("X-Padding: {}\r\n", "x".repeat(ANSWER_HEAD_BYTES));
        let err = peers.probe(&serve_once(head, String::new())).unwrap_err();
        // ureq waits for the rest of a head that cannot fit its buffer, and so sees the
        // peer close before a whole answer.
        assert!(
            matches!(err, PeerError::Reset | PeerError::Protocol(_)),
            "{err}"
        );
    }

    #[test]
    fn parallel_of_nothing_is_nothing() {
        let out: Vec<u8> = parallel(&[] as &[u8], 8, |&x| x);
        assert!(out.is_empty());
    }
}
