//! What a process runs with (SPEC §8): `Settings`, made from the command line by `flags`,
//! and the values derived from them once the socket is bound: the address to bind, the node
//! this process announces, and every identity that is this process itself (SPEC §1).

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::error::Error;
use crate::flags;
use crate::nodes::{Host, Node};

/// Which binary is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dns,
    Node,
}

impl Kind {
    /// `dns` or `node`: the binary's name, as messages and `/status` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dns => "dns",
            Kind::Node => "node",
        }
    }
}

/// The ports a `node` started without `-p` picks from, at random (SPEC §8).
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 50000..=59999;

/// The environment variable that may hold the admin token (SPEC §8), so that it need not
/// appear in the process list.
pub const TOKEN_VAR: &str = "SEEDMESH_ADMIN_TOKEN";

/// Everything a process needs to run. `/status` reports it as it is (durations in seconds,
/// the admin token only as whether one is set). Each field's flag, default and meaning are
/// defined once, in `flags::FLAGS`.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    #[serde(skip)]
    pub kind: Kind,
    /// `-i`: the address to bind, canonical: an IP literal (`0.0.0.0` or `::` for all
    /// interfaces) or a lowercase hostname.
    pub ip: String,
    /// `-p`: the port to bind (0: any free port); `None` for a node means a free port in
    /// `NODE_PORTS`.
    pub port: Option<u16>,
    /// `-d`: the state directory.
    pub dir: PathBuf,
    /// `-n`: the nodes file's name inside `dir`.
    pub nodes_file: String,
    /// `-u`: time between update rounds, at least 0.1 s.
    #[serde(rename = "upd_int_seconds", serialize_with = "seconds")]
    pub upd_int: Duration,
    /// `--timeout`: time per peer request, connect and answer.
    #[serde(rename = "timeout_seconds", serialize_with = "seconds")]
    pub timeout: Duration,
    /// `--fail_limit`: consecutive failed checks before a node is removed.
    pub fail_limit: u32,
    /// `--max_nodes`: the cap on known nodes.
    pub max_nodes: usize,
    /// `--list_limit`: most nodes in one `GET /nodes/` answer.
    pub list_limit: usize,
    /// `--check_threads`: peer requests in parallel.
    pub check_threads: usize,
    /// `--workers`: HTTP worker threads.
    pub workers: usize,
    /// `--max_conns`: most open client connections.
    pub max_conns: usize,
    /// `--max_conns_per_ip`: most open client connections from one IPv4 address or IPv6
    /// /64; beyond, 503 (tiny_http's `Limits::max_connections_per_source`).
    pub max_conns_per_ip: usize,
    /// `--verify_source`: accept `POST /` only for the caller's own address (SPEC §10).
    pub verify_source: bool,
    /// The admin token (SPEC §10), at least 16 bytes, from exactly one of `--admin_token`,
    /// `--admin_token_file` and `SEEDMESH_ADMIN_TOKEN`. Never logged or reported.
    #[serde(rename = "admin_token_set", serialize_with = "is_set")]
    pub admin_token: Option<String>,
    /// `--allow_local`: SPEC §11's local-address rule; see `allows_local`.
    pub allow_local: AllowLocal,
    /// `--public_only`: also refuse private and shared ranges (SPEC §11).
    pub public_only: bool,
    /// `--reg_rate`: new nodes per second one source IP may add (SPEC §11's token bucket).
    pub reg_rate: f64,
    /// `--reg_burst`: the bucket's size, new nodes one source may add at once.
    pub reg_burst: u32,
    /// `--reg_others`: most nodes other than itself (another address, or a name) that
    /// callers of one address group (IPv4 /16, IPv6 /32) may have registered at once; they
    /// are listed only once this process's own check found them online.
    pub reg_others: usize,
    /// `--network`: the `Seedmesh-Network` header value (SPEC §11): ASCII letters, digits,
    /// `-`, `_` and `.`, 1–64 of them.
    pub network: Option<String>,
    /// `--seed_zone` and the `--seed_*` flags: DNS seeding (SPEC §12), `dns` only; `None`
    /// when off (and then not shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_dns: Option<SeedDnsSettings>,
    /// `--log`, `-q`, `-v`: the log level.
    #[serde(serialize_with = "as_text")]
    pub log_level: log::LevelFilter,
    /// The flags only a `node` has; `None` for a `dns`.
    #[serde(flatten)]
    pub node: Option<NodeSettings>,
}

/// The flags only a `node` has.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSettings {
    /// `-k`: known nodes wanted before the exchange and seed steps are skipped.
    pub kn_limit: usize,
    /// `--dns`, or `--dns_ip`/`--dns_port`: the seed servers.
    pub seeds: Vec<Node>,
    /// `--advertise`: the address announced to others, when it differs from `ip`.
    pub advertise: Option<Host>,
    /// `--app` and the `--app_*` flags: the chain application behind this node (SPEC §13).
    pub app: Option<AppSettings>,
    /// `--seed_domain`: seeds found through DNS, `_seedmesh._tcp.NAME SRV` (SPEC §12); each
    /// lowercase, without a final dot.
    pub seed_domains: Vec<String>,
    /// `--resolver`: the DNS server asked for them; `None`: the nameservers of
    /// `/etc/resolv.conf`.
    pub resolver: Option<SocketAddr>,
}

/// DNS seeding (SPEC §12): `dns --seed_zone NAME --seed_listen ADDR:PORT [--seed_port PORT]
/// [--seed_ns NAME]...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeedDnsSettings {
    /// `--seed_zone`: the zone answered authoritatively, lowercase, without the final dot.
    pub zone: String,
    /// `--seed_listen`: where DNS is served, over UDP and TCP on one port (port 0: any free
    /// port).
    pub listen: SocketAddr,
    /// `--seed_port`: healthy nodes with an IP address on this port are the zone apex's
    /// `A`/`AAAA` records.
    pub port: u16,
    /// `--seed_ns`: the zone's name servers as the parent zone delegates it; empty: `ns.ZONE`,
    /// whose address is the `--seed_listen` address.
    pub ns: Vec<String>,
    /// `--seed_rrl`: UDP answers per second to one client network (IPv4 `/24`, IPv6 `/56`)
    /// before slips and drops (`dnsserver::rrl`); 0: no limit.
    pub rrl: u32,
}

/// The chain application behind a node (SPEC §13).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppSettings {
    /// `--app`: the application's base URL, canonical `http://HOST:PORT` (IPv6 in brackets,
    /// no trailing `/`); `host` and `port` are its parts.
    pub url: String,
    #[serde(skip)]
    pub host: Host,
    #[serde(skip)]
    pub port: u16,
    /// `--app_health`: a path starting with `/` whose failure stops announcing this node.
    pub health: Option<String>,
    /// `--app_body_limit`: largest request body forwarded, in bytes (default 1 MiB).
    pub body_limit: u64,
    /// `--app_body_budget`: most bytes of request bodies over 64 KiB (the application's)
    /// held in memory at once, all clients together (default 64 MiB, and never under
    /// `body_limit`); beyond, 503 (tiny_http's `Limits::body_budget_bytes`).
    pub body_budget: u64,
    /// `--app_answer_limit`: largest answer relayed, in bytes (default 16 MiB).
    pub answer_limit: u64,
    /// `--app_timeout`: time the application has to answer (default 10 s).
    #[serde(rename = "timeout_seconds", serialize_with = "seconds")]
    pub timeout: Duration,
    /// `--app_workers`: threads that forward to the application, apart from the API's
    /// `--workers`, so that a slow application never stalls the node's own API (default 8).
    pub workers: usize,
}

/// `--allow_local`: whether loopback and link-local addresses are accepted as nodes (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowLocal {
    /// Always.
    Yes,
    /// Never.
    No,
    /// When the process itself is bound to a loopback address (a local test network).
    Auto,
}

fn seconds<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

fn is_set<S: Serializer>(token: &Option<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(token.is_some())
}

fn as_text<S: Serializer>(level: &log::LevelFilter, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&level.as_str().to_ascii_lowercase())
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Settings>),
    /// Print this text and exit 0.
    Print(String),
}

/// What the process takes from its environment, apart from its arguments.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// The value of `SEEDMESH_ADMIN_TOKEN`, when set.
    pub admin_token: Option<OsString>,
}

impl Env {
    /// This process's environment.
    pub fn current() -> Env {
        Env {
            admin_token: std::env::var_os(TOKEN_VAR),
        }
    }
}

/// Parses the arguments (without the program name), with this process's environment. A bad
/// flag or value is an `Error::Usage` naming it (exit status 2).
pub fn parse(kind: Kind, args: Vec<OsString>) -> Result<Command, Error> {
    flags::parse(kind, args, &Env::current())
}

impl Settings {
    /// Whether `ip` means every interface (`0.0.0.0` or `::`).
    pub fn binds_all_interfaces(&self) -> bool {
        self.ip
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
    }

    /// SPEC §11's local-address rule for a process bound to `bound`: whether loopback and
    /// link-local addresses are accepted as nodes. `auto` accepts them when `bound` is a
    /// loopback address (IPv4-mapped ones included).
    pub fn allows_local(&self, bound: IpAddr) -> bool {
        match self.allow_local {
            AllowLocal::Yes => true,
            AllowLocal::No => false,
            AllowLocal::Auto => bound.to_canonical().is_loopback(),
        }
    }

    /// File descriptors a process may hold at once with these settings: a socket per client
    /// connection and per peer request in flight, one per forwarding thread, and 128 more
    /// for the DNS server's TCP connections (at most 64), the listeners, the files and the
    /// lock.
    pub fn open_files_wanted(&self) -> u64 {
        let app = self
            .node
            .as_ref()
            .and_then(|node| node.app.as_ref())
            .map_or(0, |app| app.workers);
        (self.max_conns + self.check_threads + app + 128) as u64
    }

    /// These settings with `--max_conns` and `--check_threads` lowered, in proportion and to
    /// no less than 1 each, so that the process stays within `open_files` (the soft limit it
    /// got): a connection or a check that cannot open its socket fails, and a failed check
    /// would drop a live node. The application's threads and 128 files for the rest (the
    /// nodes file, logs, the DNS sockets) are kept whole. Unchanged when the limit holds them.
    pub fn within_open_files(&self, open_files: u64) -> Settings {
        let mut fitted = self.clone();
        if open_files >= self.open_files_wanted() {
            return fitted;
        }
        let shared = (self.max_conns + self.check_threads) as u64;
        let room = open_files.saturating_sub(self.open_files_wanted() - shared);
        let conns = (self.max_conns as u64 * room / shared).max(1);
        fitted.max_conns = usize::try_from(conns).unwrap_or(1);
        fitted.check_threads = usize::try_from(room.saturating_sub(conns).max(1)).unwrap_or(1);
        fitted
    }

    /// The node this process announces once bound to `port`: `--advertise`, else `--ip`. A
    /// process bound to all interfaces without `--advertise` (only a `dns` may be) announces
    /// nothing.
    pub fn advertised(&self, port: u16) -> Option<Node> {
        let advertise = self.node.as_ref().and_then(|n| n.advertise.clone());
        let host = match advertise {
            Some(host) => host,
            None if self.binds_all_interfaces() => return None,
            None => Host::parse(&self.ip).ok()?,
        };
        Some(Node { host, port })
    }

    /// Every identity of this process once its socket is bound to `bound`, with this
    /// machine's interface addresses (`if-addrs`) when it binds all of them. See `Identity`.
    pub fn identity(&self, bound: SocketAddr) -> Identity {
        let interfaces = if bound.ip().is_unspecified() {
            match if_addrs::get_if_addrs() {
                Ok(list) => list.iter().map(|i| i.ip()).collect(),
                Err(e) => {
                    log::warn!(
                        "cannot list the interface addresses ({e}): only loopback and the advertised address count as this process"
                    );
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        self.identity_with(bound, &interfaces)
    }

    /// `identity`, with the interface addresses given (pure, for tests).
    pub fn identity_with(&self, bound: SocketAddr, interfaces: &[IpAddr]) -> Identity {
        let port = bound.port();
        let bound_ip = bound.ip().to_canonical();
        let all = bound_ip.is_unspecified();
        // An IPv4 socket is not reached through IPv6 addresses; an IPv6 one (`::`, dual
        // stack as Linux binds it by default) through both.
        let reaches = |ip: &IpAddr| !(all && bound_ip.is_ipv4() && ip.is_ipv6());
        let mut ips: Vec<IpAddr> = Vec::new();
        if all {
            ips.extend(interfaces.iter().map(|ip| ip.to_canonical()));
            ips.extend([
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ]);
        } else {
            ips.push(bound_ip);
        }
        let mut nodes: Vec<Node> = ips
            .into_iter()
            .filter(|ip| reaches(ip) && !ip.is_unspecified())
            .map(|ip| Node {
                host: Host::Ip(ip),
                port,
            })
            .collect();
        // `localhost` resolves to 127.0.0.1 (and ::1): it is this process when that reaches it.
        if all || bound_ip == Ipv4Addr::LOCALHOST || bound_ip == Ipv6Addr::LOCALHOST {
            nodes.push(Node {
                host: Host::Name("localhost".into()),
                port,
            });
        }
        // Bound to a name (`-i localhost`): the name too.
        if let Ok(host @ Host::Name(_)) = Host::parse(&self.ip) {
            nodes.push(Node { host, port });
        }
        nodes.extend(self.advertised(port));
        nodes.sort();
        nodes.dedup();
        Identity {
            port,
            all_interfaces: all.then_some(bound_ip),
            nodes,
        }
    }
}

/// Every spelling of a node that is this process itself (SPEC §1), fixed once it is bound:
/// the bound IP and port in canonical form; when bound to all interfaces, every interface
/// address of the machine, loopback and `localhost`; a name it was bound by; and always the
/// advertised node. A process never stores, lists or probes any of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    port: u16,
    /// `0.0.0.0` or `::` when bound to all interfaces.
    all_interfaces: Option<IpAddr>,
    nodes: Vec<Node>,
}

impl Identity {
    /// Exactly these nodes, for a process bound to one address (tests and the simulator).
    pub fn of(mut nodes: Vec<Node>) -> Identity {
        nodes.sort();
        nodes.dedup();
        Identity {
            port: nodes.first().map_or(0, |n| n.port),
            all_interfaces: None,
            nodes,
        }
    }

    /// The identities as nodes, sorted, without duplicates.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Whether `node` is this process: one of `nodes()` after canonicalisation (an
    /// IPv4-mapped IPv6 address is its IPv4 address), or, when bound to all interfaces, any
    /// loopback address (all of `127.0.0.0/8` reaches such a socket) with this port.
    pub fn contains(&self, node: &Node) -> bool {
        let host = match &node.host {
            Host::Ip(ip) => Host::Ip(ip.to_canonical()),
            Host::Name(name) => Host::Name(name.to_ascii_lowercase().into()),
        };
        if let (Some(bound), Host::Ip(ip)) = (self.all_interfaces, &host)
            && node.port == self.port
            && ip.is_loopback()
            && (bound.is_ipv6() || ip.is_ipv4())
        {
            return true;
        }
        self.nodes.contains(&Node {
            host,
            port: node.port,
        })
    }
}

#[cfg(test)]
mod tests;
