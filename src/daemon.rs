//! One process run, wiring only: bind, open the store, serve, run the update thread, and on
//! SIGINT or SIGTERM stop in order (SPEC §9). SIGHUP is logged and ignored. What the settings
//! imply (the node announced, this process's identities) is `config`'s.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::app::App;
use crate::config::{NODE_PORTS, Settings};
use crate::dnsserver::{self, NodeSource};
use crate::error::Error;
use crate::logging::count;
use crate::membership::Rules;
use crate::nodes::{Host, Node};
use crate::peers::{PeerPolicy, Peers};
use crate::policy::{DEFAULT_MAX_SOURCES, LocalRule, TokenBuckets};
use crate::report::Profile;
use crate::routes::ApiConfig;
use crate::server::{Api, Server, ServerOptions, Stamp};
use crate::stats::Stats;
use crate::store::{Store, StoreOptions};
use crate::transport::SystemClock;
use crate::update::{self, NodeRole, Presence, Role, Updater};

/// How long a stop may take in all (SPEC §9 allows 2 s).
const STOP_BUDGET: Duration = Duration::from_millis(1500);

/// How long a stop waits for an update round in progress.
const UPDATE_GRACE: Duration = Duration::from_millis(200);

/// Runs the process until a stop signal; returns once stopped cleanly.
pub fn run(settings: &Settings) -> Result<(), Error> {
    let start_error = |what| move |source| Error::Start { what, source };
    // Signals first, so that a stop during start-up is not lost, and a SIGHUP (a closed
    // terminal) does not end the process.
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(start_error("signal handling"))?;

    let settings = &within_open_files(settings);
    // Drawn once: answers carry it, and a check that meets it has reached this process.
    let instance = format!("{:016x}", fastrand::u64(..));
    let listener = bind(settings)?;
    let bound = listener.local_addr().map_err(start_error("the listener"))?;
    let me = settings.advertised(bound.port());
    let identity = settings.identity(bound);
    let local = LocalRule {
        allow_local: settings.allows_local(bound.ip()),
        public_only: settings.public_only,
    };
    let (store, warnings) = Store::open(StoreOptions {
        dir: settings.dir.clone(),
        file_name: settings.nodes_file.clone(),
        rules: Rules {
            max_nodes: settings.max_nodes,
            own: identity.clone(),
            local,
            max_referred: settings.reg_others,
        },
    })?;
    for warning in warnings {
        log::warn!("{warning}");
    }
    let store = Arc::new(store);
    let stats = Arc::new(Stats::with_interval(settings.upd_int));
    let app_settings = settings.node.as_ref().and_then(|node| node.app.as_ref());
    if let Some(app) = app_settings {
        let at = Node {
            host: app.host.clone(),
            port: app.port,
        };
        // A request forwarded to this very process would be forwarded again, for ever: by
        // its address, or by a name that resolves to it.
        let resolved: Vec<Node> = match &at.host {
            Host::Ip(_) => vec![at.clone()],
            Host::Name(name) => (name.as_ref(), at.port)
                .to_socket_addrs()
                .map(|addrs| {
                    addrs
                        .map(|a| Node {
                            host: Host::Ip(a.ip().to_canonical()),
                            port: a.port(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        if resolved.iter().any(|node| identity.contains(node)) {
            return Err(Error::Usage(format!(
                "--app {} is this node itself; give the address of the application behind it",
                app.url
            )));
        }
    }
    let app = app_settings.map(|app| Arc::new(App::new(app, app.workers, settings.upd_int)));

    // DNS seeding (SPEC §12): bound before `listening on`, so that a bad address stops the start,
    // and before the profile, which shows the address it is bound to.
    let seed_dns = match &settings.seed_dns {
        Some(seed) => {
            let store = Arc::clone(&store);
            let nodes: NodeSource = Arc::new(move || store.snapshot());
            Some(dnsserver::start_for(seed, nodes, &stats)?)
        }
        None => None,
    };
    let api = Arc::new(Api {
        config: ApiConfig {
            list_limit: settings.list_limit,
            verify_source: settings.verify_source,
            admin_token: settings.admin_token.clone(),
            network: settings.network.clone(),
            app_body_limit: app_settings
                .map(|app| usize::try_from(app.body_limit).unwrap_or(usize::MAX)),
        },
        store: Arc::clone(&store),
        profile: Profile {
            role: settings.kind.name(),
            node: me.clone(),
            version: env!("CARGO_PKG_VERSION"),
            listening: bound,
            dns_listening: seed_dns.as_ref().map(|dns| dns.addr()),
            settings: settings.clone(),
        },
        stats: Arc::clone(&stats),
        buckets: Mutex::new(TokenBuckets::new(
            settings.reg_rate,
            settings.reg_burst,
            DEFAULT_MAX_SOURCES,
        )),
        stamp: Stamp {
            network: settings.network.clone(),
            instance: instance.clone(),
        },
        app: app.clone(),
    });
    let server = Server::start(
        listener,
        api,
        &ServerOptions {
            workers: settings.workers,
            max_connections: settings.max_conns,
            max_connections_per_ip: settings.max_conns_per_ip,
            body_budget: app_settings
                .map_or(tiny_http::Limits::default().body_budget_bytes, |app| {
                    usize::try_from(app.body_budget).unwrap_or(usize::MAX)
                }),
            app_workers: app_settings.map_or(0, |app| app.workers),
        },
    )?;
    // Tests and scripts wait for this line: it comes once connections are accepted.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "listening on {}", server.addr()).and_then(|_| stdout.flush());
    if let Some(dns) = &seed_dns {
        let _ = writeln!(stdout, "dns seeding on {}", dns.addr()).and_then(|_| stdout.flush());
        log::info!("dns seeding on {} (UDP and TCP)", dns.addr());
    }
    drop(stdout);
    log::info!(
        "{} {} listening on {}{}; directory {}, file {}, {}",
        settings.kind.name(),
        env!("CARGO_PKG_VERSION"),
        server.addr(),
        me.as_ref()
            .map(|me| format!(" as {me}"))
            .unwrap_or_default(),
        settings.dir.display(),
        store.path().display(),
        count(store.snapshot().table.len(), "known node")
    );
    if let Some(app) = app_settings {
        log::info!(
            "forwarding the paths that are not seedmesh's to the application at {}{}",
            app.url,
            app.health
                .as_ref()
                .map(|path| format!("; announcing this node while GET {path} passes"))
                .unwrap_or_default()
        );
    }

    let role = match (&me, &settings.node) {
        (Some(me), Some(node)) => Role::Node(NodeRole {
            me: me.clone(),
            seeds: node.seeds.clone(),
            kn_limit: node.kn_limit,
            seed_domains: node.seed_domains.clone(),
        }),
        _ => Role::Dns,
    };
    let updater = Updater {
        members: Arc::clone(&store),
        transport: Peers::new(
            settings.timeout,
            settings.check_threads,
            PeerPolicy {
                local,
                own: identity,
                network: settings.network.clone(),
                instance: instance.clone(),
                exempt: settings
                    .node
                    .as_ref()
                    .map(|node| node.seeds.clone())
                    .unwrap_or_default(),
            },
        )
        .with_resolver(settings.node.as_ref().and_then(|node| node.resolver)),
        clock: SystemClock,
        role,
        rng: Mutex::new(fastrand::Rng::new()),
    };
    let (interval, fail_limit) = (settings.upd_int, settings.fail_limit);
    let (stop, stopped) = mpsc::channel::<()>();
    // Dropped when the update thread ends, however it ends: the stop waits on it.
    let (ended, update_ended) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("update".into())
        .spawn(move || {
            let _ended = ended;
            // With `--app_health`, the application's health decides each round whether
            // this node announces itself (SPEC §13).
            let presence = || {
                app.as_ref()
                    .map_or(Presence::Announce, |app| app.presence())
            };
            update::run_as(&updater, &stats, interval, fail_limit, &stopped, &presence);
        })
        .map_err(start_error("the update thread"))?;

    let signal = wait_for_stop(&mut signals);
    let deadline = Instant::now() + STOP_BUDGET;
    log::info!("{signal}: stopping");
    // Wake the update thread; it ends at once if asleep, or after its current step.
    drop(stop);
    server.shutdown(deadline);
    if let Some(dns) = seed_dns {
        dns.shutdown(deadline);
    }
    // A round in progress may wait on a peer for up to --timeout: give it a moment to end,
    // no more. Nothing it does is owed to anyone, and the file is whole at any instant.
    let grace = UPDATE_GRACE.min(deadline.saturating_duration_since(Instant::now()));
    if let Err(RecvTimeoutError::Timeout) = update_ended.recv_timeout(grace) {
        log::info!("leaving the update round in progress (it waits on peers)");
    }
    store.flush();
    log::info!("stopped");
    Ok(())
}

/// Raises the soft open-file limit to what the settings need, within the hard limit, and
/// returns the settings the process runs with: `--max_conns` and `--check_threads` lowered
/// (with a warning) if the limit still cannot hold them. `/status` shows these.
fn within_open_files(settings: &Settings) -> Settings {
    let wanted = settings.open_files_wanted();
    let limit = match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => limit,
        Err(e) => {
            log::warn!("cannot read or raise the open-file limit ({e}); keeping the settings");
            return settings.clone();
        }
    };
    let fitted = settings.within_open_files(limit);
    if fitted.max_conns < settings.max_conns || fitted.check_threads < settings.check_threads {
        log::warn!(
            "the open-file limit is {limit} (ulimit -n), under the {wanted} these settings need: \
             --max_conns lowered from {} to {} and --check_threads from {} to {}; raise the \
             hard limit (LimitNOFILE= under systemd) or lower them",
            settings.max_conns,
            fitted.max_conns,
            settings.check_threads,
            fitted.check_threads,
        );
    }
    fitted
}

/// Waits for SIGINT or SIGTERM and returns its name; logs each SIGHUP and carries on.
fn wait_for_stop(signals: &mut Signals) -> &'static str {
    for signal in signals.forever() {
        match signal {
            SIGINT => return "SIGINT",
            SIGTERM => return "SIGTERM",
            SIGHUP => log::warn!(
                "SIGHUP (a closed terminal?): ignored, still running; nothing to reload, SIGTERM stops"
            ),
            _ => {}
        }
    }
    "end of signals"
}

/// Binds the listening socket on `--ip`: the given port, or for a node without `-p` a free
/// port in `NODE_PORTS`.
fn bind(settings: &Settings) -> Result<TcpListener, Error> {
    let host = settings.ip.as_str();
    let shown = |port: u16| match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    let bind_port = |port: u16| -> std::io::Result<TcpListener> {
        let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
        TcpListener::bind(&addrs[..])
    };
    if let Some(port) = settings.port {
        return bind_port(port).map_err(|source| Error::Bind {
            addr: shown(port),
            source,
        });
    }
    let mut last = None;
    for _ in 0..200 {
        let port = fastrand::u16(NODE_PORTS);
        match bind_port(port) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last = Some(e),
            Err(source) => {
                return Err(Error::Bind {
                    addr: shown(port),
                    source,
                });
            }
        }
    }
    Err(Error::Bind {
        addr: format!("{host}:{}-{}", NODE_PORTS.start(), NODE_PORTS.end()),
        source: last.unwrap_or_else(|| std::io::ErrorKind::AddrInUse.into()),
    })
}
