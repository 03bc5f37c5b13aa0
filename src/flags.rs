//! The command line (SPEC §8), one definition per flag: its names, value name, each binary's
//! default, help, and the parser that writes it into the settings. The parser and `--help`
//! both read `FLAGS`, so a default is written once (as in ripgrep's `crates/core/flags/defs.rs`,
//! with pico-args doing the splitting). A bad flag or value is a one-line `Error::Usage`
//! naming the flag (exit status 2); rules between flags are in `Draft::finish`.

use std::convert::Infallible;
use std::ffi::OsString;

use pico_args::{Arguments, Keys};

use crate::config::{
    AllowLocal, AppSettings, Command, Env, Kind, NodeSettings, SeedDnsSettings, Settings,
};
use crate::error::Error;
use crate::nodes::Host;

mod draft;
mod help;
#[cfg(test)]
mod tests;
mod values;

pub use draft::Draft;
pub use help::help;
use values::*;

/// How one binary takes a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The binary does not take the flag.
    Not,
    /// Taken; without it, this text is parsed as if given (and `--help` prints it).
    Default(&'static str),
    /// Taken; without it, nothing is set, and `--help` prints this text as the default
    /// (empty: nothing printed).
    Unset(&'static str),
}

/// What a flag takes, and how it writes the settings.
#[derive(Clone, Copy)]
pub enum Takes {
    /// No value: present or not.
    Switch(fn(&mut Draft)),
    /// One value, named in `--help` (`PORT`), parsed into the draft; the error says what was
    /// expected and never names the flag (the caller does).
    Value(&'static str, fn(&mut Draft, &str) -> Result<(), String>),
}

/// One flag: everything the parser and `--help` know about it.
#[derive(Clone, Copy)]
pub struct Flag {
    /// `--port`.
    pub long: &'static str,
    /// `-p`.
    pub short: Option<&'static str>,
    pub takes: Takes,
    pub dns: Use,
    pub node: Use,
    pub help: &'static str,
    /// Added to `help` in `node --help` only.
    pub node_help: &'static str,
    /// May be given more than once; otherwise a second time is an error.
    pub repeatable: bool,
}

impl Flag {
    const fn new(long: &'static str, takes: Takes) -> Flag {
        Flag {
            long,
            short: None,
            takes,
            dns: Use::Not,
            node: Use::Not,
            help: "",
            node_help: "",
            repeatable: false,
        }
    }
    const fn value(
        long: &'static str,
        var: &'static str,
        set: fn(&mut Draft, &str) -> Result<(), String>,
    ) -> Flag {
        Flag::new(long, Takes::Value(var, set))
    }
    const fn switch(long: &'static str, set: fn(&mut Draft)) -> Flag {
        Flag::new(long, Takes::Switch(set))
    }
    const fn short(mut self, short: &'static str) -> Flag {
        self.short = Some(short);
        self
    }
    /// The same use for both binaries.
    const fn both(mut self, usage: Use) -> Flag {
        self.dns = usage;
        self.node = usage;
        self
    }
    const fn each(mut self, dns: Use, node: Use) -> Flag {
        self.dns = dns;
        self.node = node;
        self
    }
    const fn node_only(mut self, usage: Use) -> Flag {
        self.node = usage;
        self
    }
    const fn dns_only(mut self, usage: Use) -> Flag {
        self.dns = usage;
        self
    }
    const fn help(mut self, help: &'static str) -> Flag {
        self.help = help;
        self
    }
    const fn node_help(mut self, more: &'static str) -> Flag {
        self.node_help = more;
        self
    }
    const fn repeatable(mut self) -> Flag {
        self.repeatable = true;
        self
    }

    /// How `kind` takes this flag.
    pub fn usage(&self, kind: Kind) -> Use {
        match kind {
            Kind::Dns => self.dns,
            Kind::Node => self.node,
        }
    }

    pub fn applies(&self, kind: Kind) -> bool {
        self.usage(kind) != Use::Not
    }

    /// Whether `name` (`-p`, `--port`) is this flag.
    pub fn is(&self, name: &str) -> bool {
        self.long == name || self.short == Some(name)
    }

    fn keys(&self) -> Keys {
        match self.short {
            Some(short) => [short, self.long].into(),
            None => self.long.into(),
        }
    }

    /// Parses `value` into the draft, naming the flag in the error.
    fn apply(&self, draft: &mut Draft, value: &str) -> Result<(), Error> {
        match self.takes {
            Takes::Switch(set) => {
                set(draft);
                Ok(())
            }
            // `-p -d x`: the value is the next flag, the port was forgotten.
            Takes::Value(..) if value.starts_with('-') && lookup(value).is_some() => {
                Err(Error::Usage(format!(
                    "{} needs a value (got the flag {value}); see --help",
                    self.long
                )))
            }
            Takes::Value(_, set) => set(draft, value).map_err(|e| {
                Error::Usage(format!("invalid value {value:?} for {}: {e}", self.long))
            }),
        }
    }

    /// Takes every occurrence of this flag out of `args` and applies it; returns how many
    /// there were.
    fn take(&self, args: &mut Arguments, draft: &mut Draft) -> Result<usize, Error> {
        let values = match self.takes {
            Takes::Switch(_) => {
                let mut times = 0;
                while args.contains(self.keys()) {
                    times += 1;
                }
                vec![String::new(); times]
            }
            Takes::Value(..) => args
                .values_from_fn(self.keys(), |s| Ok::<_, Infallible>(s.to_owned()))
                .map_err(|e| self.pico_error(e))?,
        };
        if values.len() > 1 && !self.repeatable {
            return Err(Error::Usage(format!(
                "{} is repeated ({} times): give it once{}",
                self.long,
                values.len(),
                if self.short.is_some() {
                    " (short or long)"
                } else {
                    ""
                }
            )));
        }
        for value in &values {
            self.apply(draft, value)?;
        }
        Ok(values.len())
    }

    fn pico_error(&self, e: pico_args::Error) -> Error {
        let flag = self.long;
        Error::Usage(match e {
            pico_args::Error::OptionWithoutAValue(_) => format!("{flag} needs a value; see --help"),
            pico_args::Error::NonUtf8Argument => format!("the value of {flag} is not UTF-8"),
            other => format!("{flag}: {other}"),
        })
    }
}

/// Every flag, in `--help` order. A flag's `Use::Default` text goes through its own parser,
/// so it is the default both for the settings and for `--help`.
pub const FLAGS: &[Flag] = &[
    Flag::value("--ip", "IP", |d, v| set(&mut d.settings.ip, bind_ip(v)?))
        .short("-i")
        .both(Use::Default("127.0.0.1"))
        .help("address to bind (0.0.0.0 or :: for all interfaces)")
        .node_help("; also the address it announces, unless --advertise"),
    Flag::value("--port", "PORT", |d, v| {
        set(&mut d.settings.port, Some(int(v, 0, 65535)?))
    })
    .short("-p")
    .each(
        Use::Default("42020"),
        Use::Unset("a free port in 50000-59999"),
    )
    .help("port to bind and announce (0: any free port)"),
    Flag::value("--dir", "DIR", |d, v| set(&mut d.settings.dir, dir(v)?))
        .short("-d")
        .each(Use::Default("./.dns_server"), Use::Default("./.node"))
        .help("state directory, created with its parents; one process per directory"),
    Flag::value("--nodes", "FILE", |d, v| {
        set(&mut d.settings.nodes_file, file_name(v)?)
    })
    .short("-n")
    .both(Use::Default("nodes.json"))
    .help("nodes file name inside the directory"),
    Flag::value("--upd_int", "SECONDS", |d, v| {
        set(&mut d.settings.upd_int, seconds(v, 0.1)?)
    })
    .short("-u")
    .both(Use::Default("60"))
    .help("seconds between update rounds, at least 0.1 (±10% jitter)"),
    Flag::value("--kn_limit", "N", |d, v| {
        set(&mut d.node.kn_limit, int(v, 1, 10_000_000)?)
    })
    .short("-k")
    .node_only(Use::Default("10"))
    .help("known nodes wanted before the exchange and seed steps are skipped"),
    Flag::value("--dns_ip", "HOST", |d, v| set(&mut d.dns_ip, nonempty(v)?))
        .node_only(Use::Default("127.0.0.1"))
        .help("the seed server's address"),
    Flag::value("--dns_port", "PORT", |d, v| {
        set(&mut d.dns_port, int(v, 1, 65535)?)
    })
    .node_only(Use::Default("42020"))
    .help("the seed server's port"),
    Flag::value("--dns", "HOST:PORT", |d, v| {
        d.node.seeds.push(seed(v)?);
        Ok(())
    })
    .node_only(Use::Unset("none"))
    .repeatable()
    .help("a seed server (IPv6 in brackets); replaces --dns_ip/--dns_port"),
    Flag::value("--advertise", "HOST", |d, v| {
        set(&mut d.node.advertise, Some(host(v)?))
    })
    .node_only(Use::Unset("the --ip value"))
    .help("address announced to others (behind NAT, or with --ip 0.0.0.0)"),
    Flag::value("--timeout", "SECONDS", |d, v| {
        set(&mut d.settings.timeout, seconds(v, 0.0)?)
    })
    // The seed's sweep must get through 100,000 nodes, 10% of them black holes, within a
    // 60 s round (SIMULATION.md); a node it drops by mistake registers again next cycle.
    .each(Use::Default("2"), Use::Default("5"))
    .help("seconds per peer request, connect and answer"),
    Flag::value("--fail_limit", "N", |d, v| {
        set(&mut d.settings.fail_limit, int(v, 1, U32)?)
    })
    .both(Use::Default("1"))
    .help("consecutive failed checks before a node is removed"),
    Flag::value("--max_nodes", "N", |d, v| {
        set(&mut d.settings.max_nodes, int(v, 1, 10_000_000)?)
    })
    .each(Use::Default("10000"), Use::Default("1000"))
    .help("cap on known nodes"),
    Flag::value("--list_limit", "N", |d, v| {
        set(&mut d.settings.list_limit, int(v, 1, 10_000_000)?)
    })
    .both(Use::Default("1000"))
    .help("most nodes in one GET /nodes/ answer"),
    Flag::value("--check_threads", "N", |d, v| {
        set(&mut d.settings.check_threads, int(v, 1, 4096)?)
    })
    // See --timeout: 1024 threads of 256 KiB stacks, a socket each (LimitNOFILE=4096 in the
    // systemd unit).
    .each(Use::Default("1024"), Use::Default("64"))
    .help("peer requests made in parallel"),
    Flag::value("--workers", "N", |d, v| {
        set(&mut d.settings.workers, int(v, 1, 1024)?)
    })
    .both(Use::Default("4"))
    .help("HTTP worker threads"),
    Flag::value("--max_conns", "N", |d, v| {
        set(&mut d.settings.max_conns, int(v, 1, 1_000_000)?)
    })
    .both(Use::Default("1024"))
    .help("most open client connections; beyond, a newcomer replaces the one idle longest (503 if none is idle)"),
    Flag::value("--max_conns_per_ip", "N", |d, v| {
        set(&mut d.settings.max_conns_per_ip, int(v, 1, 1_000_000)?)
    })
    .both(Use::Default("64"))
    .help("most open connections from one IP address (IPv6: one /64); beyond, 503 with Retry-After"),
    Flag::switch("--verify_source", |d| d.settings.verify_source = true)
        .both(Use::Unset(""))
        .help("accept POST / only for the caller's own IP address"),
    Flag::value("--allow_local", "yes|no|auto", |d, v| {
        set(&mut d.settings.allow_local, allow_local(v)?)
    })
    .both(Use::Default("auto"))
    .help("accept loopback and link-local nodes; auto: when bound to loopback"),
    Flag::switch("--public_only", |d| d.settings.public_only = true)
        .both(Use::Unset(""))
        .help("also refuse nodes in private and shared address ranges"),
    Flag::value("--reg_rate", "PER_SECOND", |d, v| {
        set(&mut d.settings.reg_rate, rate(v)?)
    })
    .both(Use::Default("10"))
    .help("new nodes one source IP may add per second"),
    Flag::value("--reg_burst", "N", |d, v| {
        set(&mut d.settings.reg_burst, int(v, 1, U32)?)
    })
    .both(Use::Default("100"))
    .help("new nodes one source IP may add at once"),
    Flag::value("--reg_others", "N", |d, v| {
        set(&mut d.settings.reg_others, int(v, 0, 1_000_000)?)
    })
    .both(Use::Default("8"))
    .help("nodes other than itself (another address, a name) one source group may have registered at once; 403 beyond"),
    Flag::value("--network", "NAME", |d, v| {
        set(&mut d.settings.network, Some(network(v)?))
    })
    .both(Use::Unset("none"))
    .help("network name sent and checked in the Seedmesh-Network header"),
    Flag::value("--seed_zone", "NAME", |d, v| {
        set(&mut d.seed_zone, Some(zone(v)?))
    })
    .dns_only(Use::Unset("off"))
    .help("answer DNS for this zone (_seedmesh._tcp.NAME SRV: healthy nodes and their ports)"),
    Flag::value("--seed_listen", "ADDR:PORT", |d, v| {
        set(&mut d.seed_listen, Some(socket_addr(v, true)?))
    })
    .dns_only(Use::Unset("none"))
    .help("where DNS seeding answers, UDP and TCP (port 0: any free port); with --seed_zone"),
    Flag::value("--seed_port", "PORT", |d, v| {
        set(&mut d.seed_port, int(v, 1, 65535)?)
    })
    .dns_only(Use::Default("55000"))
    .help("healthy nodes on this port are the zone's A/AAAA records"),
    Flag::value("--seed_ns", "NAME", |d, v| {
        d.seed_ns.push(zone(v)?);
        Ok(())
    })
    .dns_only(Use::Unset("ns.ZONE"))
    .repeatable()
    .help("a name server of the zone, as the parent zone delegates it (its NS records)"),
    Flag::value("--seed_rrl", "N", |d, v| {
        set(&mut d.seed_rrl, int(v, 0, 1_000_000)?)
    })
    .dns_only(Use::Default("100"))
    .help("DNS answers per second over UDP to one client network (/24, IPv6 /56); beyond, every 2nd is an empty truncated reply and the rest are dropped; 0: no limit"),
    Flag::value("--seed_domain", "NAME", |d, v| {
        d.node.seed_domains.push(zone(v)?);
        Ok(())
    })
    .node_only(Use::Unset("none"))
    .repeatable()
    .help("a seed found through DNS (_seedmesh._tcp.NAME SRV); without --dns, no HTTP seed"),
    Flag::value("--resolver", "ADDR:PORT", |d, v| {
        set(&mut d.node.resolver, Some(socket_addr(v, false)?))
    })
    .node_only(Use::Unset("the nameservers of /etc/resolv.conf"))
    .help("the DNS server asked for --seed_domain"),
    Flag::value("--app", "URL", |d, v| {
        set(&mut d.app_url, Some(app_url(v)?))
    })
    .node_only(Use::Unset("none"))
    .help("the chain application behind this node, http://HOST:PORT"),
    Flag::value("--app_health", "PATH", |d, v| {
        set(&mut d.app.health, Some(url_path(v)?))
    })
    .node_only(Use::Unset("none"))
    .help("the application's health check; failing, the node stops announcing itself"),
    Flag::value("--app_body_limit", "BYTES", |d, v| {
        set(&mut d.app.body_limit, bytes(v)?)
    })
    .node_only(Use::Default("1MiB"))
    .help("largest request body forwarded to the application"),
    Flag::value("--app_body_budget", "BYTES", |d, v| {
        set(&mut d.app.body_budget, bytes(v)?)
    })
    .node_only(Use::Default("64MiB"))
    .help("most bytes of bodies over 64 KiB held at once (at least --app_body_limit); beyond, 503"),
    Flag::value("--app_answer_limit", "BYTES", |d, v| {
        set(&mut d.app.answer_limit, bytes(v)?)
    })
    .node_only(Use::Default("16MiB"))
    .help("largest application answer relayed"),
    Flag::value("--app_timeout", "SECONDS", |d, v| {
        set(&mut d.app.timeout, seconds(v, 0.0)?)
    })
    .node_only(Use::Default("10"))
    .help("seconds the application has to answer"),
    Flag::value("--app_workers", "N", |d, v| {
        set(&mut d.app.workers, int(v, 1, 4096)?)
    })
    .node_only(Use::Default("8"))
    .help("threads forwarding to the application, apart from --workers; beyond them 503"),
    Flag::value("--admin_token", "TOKEN", |d, v| {
        set(&mut d.token, Some(v.to_owned()))
    })
    .both(Use::Unset("none"))
    .help("lets remote callers change /nodes/ with Authorization: Bearer TOKEN (shown by ps)"),
    Flag::value("--admin_token_file", "PATH", |d, v| {
        set(&mut d.token_file, Some(nonempty(v)?.into()))
    })
    .both(Use::Unset("none"))
    .help("the admin token from a file instead (not shown by ps; one final newline ignored)"),
    Flag::value("--log", "LEVEL", |d, v| {
        set(&mut d.settings.log_level, log_level(v)?)
    })
    .both(Use::Default("info"))
    .help("error, warn, info, debug or trace"),
    Flag::switch("--quiet", |d| d.settings.log_level = log::LevelFilter::Warn)
        .short("-q")
        .both(Use::Unset(""))
        .help("log warnings and errors only (--log warn)"),
    Flag::switch("--verbose", |d| {
        d.settings.log_level = log::LevelFilter::Debug
    })
    .short("-v")
    .both(Use::Unset(""))
    .help("log a line per request too (--log debug)"),
    Flag::switch("--help", |_| {})
        .short("-h")
        .both(Use::Unset(""))
        .help("print this help"),
    Flag::switch("--version", |_| {})
        .short("-V")
        .both(Use::Unset(""))
        .help("print the version"),
];

/// Assigns, for the table's one-line setters.
fn set<T>(field: &mut T, value: T) -> Result<(), String> {
    *field = value;
    Ok(())
}

/// The flag named `name` (`-p`, `--port`), whichever binary takes it.
pub fn lookup(name: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|flag| flag.is(name))
}

/// Parses the arguments (without the program name) for `kind`, with its environment.
pub fn parse(kind: Kind, args: Vec<OsString>, env: &Env) -> Result<Command, Error> {
    let mut args = Arguments::from_vec(args);
    if args.contains(["-h", "--help"]) {
        return Ok(Command::Print(help(kind)));
    }
    if args.contains(["-V", "--version"]) {
        let version = env!("CARGO_PKG_VERSION");
        return Ok(Command::Print(format!("{} {version}\n", kind.name())));
    }
    let mut draft = Draft::new(kind);
    let flags: Vec<&Flag> = FLAGS.iter().filter(|f| f.applies(kind)).collect();
    for flag in &flags {
        if let Use::Default(text) = flag.usage(kind) {
            flag.apply(&mut draft, text)?;
        }
    }
    let mut given = Vec::new();
    for flag in &flags {
        if flag.take(&mut args, &mut draft)? > 0 {
            given.push(flag.long);
        }
    }
    leftovers(kind, &args.finish())?;
    let settings = draft.finish(&given, env)?;
    Ok(Command::Run(Box::new(settings)))
}

/// The error for what no flag of `kind` took: unknown, another binary's, or a stray word.
fn leftovers(kind: Kind, rest: &[OsString]) -> Result<(), Error> {
    let Some(first) = rest.first() else {
        return Ok(());
    };
    let text = first.to_string_lossy();
    let this = kind.name();
    if !text.starts_with('-') || text == "-" {
        return Err(Error::Usage(format!(
            "unexpected argument {text:?}: {this} takes only flags; see --help"
        )));
    }
    let name = text.split_once('=').map_or(&*text, |(name, _)| name);
    let message = match lookup(name) {
        Some(flag) if flag.applies(kind) => format!("{} takes no value; see --help", flag.long),
        Some(flag) => {
            let other = if kind == Kind::Dns { "node" } else { "dns" };
            format!(
                "{} does not apply to {this}, only to {other}; see {this} --help",
                flag.long
            )
        }
        None => {
            let near = format!("--{}", name.trim_start_matches('-').replace('-', "_"));
            match lookup(&near).filter(|f| f.applies(kind)) {
                Some(flag) => format!("unknown flag {name}; did you mean {}?", flag.long),
                None => format!("unknown flag {name}; see {this} --help"),
            }
        }
    };
    Err(Error::Usage(message))
}
