//! One process run: bind, open the store, serve, run the update thread, and on SIGINT or
//! SIGTERM stop in order (SPEC §9).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::config::{Settings, binds_all_interfaces};
use crate::error::Error;
use crate::nodes::{Host, Node};
use crate::peers::Peers;
use crate::report::Profile;
use crate::routes::ApiConfig;
use crate::server::{Api, Server, ServerOptions};
use crate::stats::Stats;
use crate::store::{Store, StoreOptions};
use crate::transport::SystemClock;
use crate::update::{self, NodeRole, Role, Updater};

/// How long a stop may take in all (SPEC §9 allows 2 s).
const STOP_BUDGET: Duration = Duration::from_millis(1500);

/// How long a stop waits for an update round in progress.
const UPDATE_GRACE: Duration = Duration::from_millis(200);

/// Runs the process until a stop signal; returns once stopped cleanly.
pub fn run(settings: &Settings) -> Result<(), Error> {
    let start_error = |what| move |source| Error::Start { what, source };
    // Signals first, so that a stop during start-up is not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(start_error("signal handling"))?;

    let listener = bind(settings)?;
    let port = listener
        .local_addr()
        .map_err(start_error("the listener"))?
        .port();
    let me = advertised(settings, port);
    let (store, warnings) = Store::open(StoreOptions {
        dir: settings.dir.clone(),
        file_name: settings.nodes_file.clone(),
        max_nodes: settings.max_nodes,
        own: own_identities(settings, port, me.as_ref()),
    })?;
    for warning in warnings {
        log::warn!("{warning}");
    }
    let store = Arc::new(store);
    let stats = Arc::new(Stats::default());

    let api = Arc::new(Api {
        config: ApiConfig {
            list_limit: settings.list_limit,
            verify_source: settings.verify_source,
            admin_token: settings.admin_token.clone(),
        },
        store: Arc::clone(&store),
        profile: Profile {
            role: settings.kind.name(),
            node: me.clone(),
            version: env!("CARGO_PKG_VERSION"),
            settings: settings.clone(),
        },
        stats: Arc::clone(&stats),
    });
    let server = Server::start(
        listener,
        api,
        &ServerOptions {
            workers: settings.workers,
            max_connections: settings.max_conns,
        },
    )?;
    // Tests and scripts wait for this line: it comes once connections are accepted.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}", server.addr()).and_then(|_| stdout.flush());
    drop(stdout);
    log::info!(
        "{} {} listening on {}{}; directory {}, file {}, {} known nodes",
        settings.kind.name(),
        env!("CARGO_PKG_VERSION"),
        server.addr(),
        me.as_ref()
            .map(|me| format!(" as {me}"))
            .unwrap_or_default(),
        settings.dir.display(),
        store.path().display(),
        store.snapshot().nodes.len()
    );

    let role = match (&me, &settings.node) {
        (Some(me), Some(node)) => Role::Node(NodeRole {
            me: me.clone(),
            seeds: node.seeds.clone(),
            kn_limit: node.kn_limit,
        }),
        _ => Role::Dns,
    };
    let updater = Updater {
        members: Arc::clone(&store),
        transport: Peers::new(settings.timeout, settings.check_threads),
        clock: SystemClock,
        role,
    };
    let (interval, fail_limit) = (settings.upd_int, settings.fail_limit);
    let (stop, stopped) = mpsc::channel::<()>();
    let update_thread = thread::Builder::new()
        .name("update".into())
        .spawn(move || update::run(&updater, &stats, interval, fail_limit, &stopped))
        .map_err(start_error("the update thread"))?;

    let signal = signals.forever().next();
    let deadline = Instant::now() + STOP_BUDGET;
    log::info!(
        "{}: stopping",
        match signal {
            Some(SIGINT) => "SIGINT",
            Some(SIGTERM) => "SIGTERM",
            _ => "signal",
        }
    );
    // Wake the update thread; it ends at once if asleep, or after its current step.
    drop(stop);
    server.shutdown(deadline);
    // A round in progress may wait on a peer for up to --timeout: give it a moment to end,
    // no more. Nothing it does is owed to anyone, and the file is whole at any instant.
    let grace = (Instant::now() + UPDATE_GRACE).min(deadline);
    while !update_thread.is_finished() && Instant::now() < grace {
        thread::sleep(Duration::from_millis(5));
    }
    if !update_thread.is_finished() {
        log::info!("leaving the update round in progress (it waits on peers)");
    }
    store.flush();
    log::info!("stopped");
    Ok(())
}

/// Binds the listening socket: the given port, or for a node without `-p` a free port in
/// 50000–59999.
fn bind(settings: &Settings) -> Result<TcpListener, Error> {
    let host = if binds_all_interfaces(&settings.ip) {
        if settings.ip == "::" { "::" } else { "0.0.0.0" }
    } else {
        settings.ip.as_str()
    };
    let bind_error = |port: u16, source| Error::Bind {
        addr: format!("{}:{port}", bracketed(host)),
        source,
    };
    let bind_port = |port: u16| -> std::io::Result<TcpListener> {
        let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
        TcpListener::bind(&addrs[..])
    };
    if let Some(port) = settings.port {
        return bind_port(port).map_err(|e| bind_error(port, e));
    }
    let mut last = None;
    for _ in 0..200 {
        let port = fastrand::u16(50000..=59999);
        match bind_port(port) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(bind_error(port, e)),
        }
    }
    Err(Error::Bind {
        addr: format!("{}:50000-59999", bracketed(host)),
        source: last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()),
    })
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The node this process announces: `--advertise` or `--ip`, with the bound port. A `dns`
/// bound to all interfaces announces nothing.
fn advertised(settings: &Settings, port: u16) -> Option<Node> {
    let advertise = settings
        .node
        .as_ref()
        .and_then(|node| node.advertise.as_ref());
    let host = match advertise {
        Some(host) => host.clone(),
        None if binds_all_interfaces(&settings.ip) => return None,
        None => Host::parse(&settings.ip).ok()?,
    };
    Some(Node { host, port })
}

/// The identities that are this process itself, never added to its list.
fn own_identities(settings: &Settings, port: u16, me: Option<&Node>) -> Vec<Node> {
    let mut own: Vec<Node> = me.into_iter().cloned().collect();
    if binds_all_interfaces(&settings.ip) {
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            own.push(Node {
                host: Host::Ip(ip),
                port,
            });
        }
        own.push(Node {
            host: Host::Name("localhost".into()),
            port,
        });
    } else if let Ok(host) = Host::parse(&settings.ip) {
        own.push(Node { host, port });
    }
    own.dedup();
    own
}
