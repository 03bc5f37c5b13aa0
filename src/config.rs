//! The command line (SPEC §8): flags to `Settings`, `--help`, `--version`. A bad flag or value
//! is a one-line `Error::Usage` naming the flag (exit status 2).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use pico_args::Arguments;
use serde::{Serialize, Serializer};

use crate::error::Error;
use crate::nodes::{Host, Node};

/// Which binary is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dns,
    Node,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dns => "dns",
            Kind::Node => "node",
        }
    }
}

/// Everything a process needs to run. `/status` reports it as it is (durations in seconds,
/// the admin token only as whether one is set).
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    #[serde(skip)]
    pub kind: Kind,
    /// Address to bind; `""` means all interfaces.
    pub ip: String,
    /// Port to bind; `None` for a node means a free port in 50000–59999.
    pub port: Option<u16>,
    pub dir: PathBuf,
    pub nodes_file: String,
    #[serde(rename = "upd_int_seconds", serialize_with = "seconds")]
    pub upd_int: Duration,
    #[serde(rename = "timeout_seconds", serialize_with = "seconds")]
    pub timeout: Duration,
    pub fail_limit: u32,
    pub max_nodes: usize,
    pub list_limit: usize,
    pub check_threads: usize,
    pub workers: usize,
    pub max_conns: usize,
    pub verify_source: bool,
    #[serde(rename = "admin_token_set", serialize_with = "is_set")]
    pub admin_token: Option<String>,
    #[serde(serialize_with = "as_text")]
    pub log_level: log::LevelFilter,
    /// The flags only a `node` has; `None` for a `dns`.
    #[serde(flatten)]
    pub node: Option<NodeSettings>,
}

/// The flags only a `node` has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSettings {
    /// Known nodes wanted before the exchange and seed steps are skipped.
    pub kn_limit: usize,
    /// The seed servers.
    pub seeds: Vec<Node>,
    /// The address announced to others, when it differs from `ip`.
    pub advertise: Option<Host>,
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

/// One flag, for `--help`: names, value name, default for `dns`, default for `node`, meaning.
/// A `None` default means the binary does not take the flag.
struct FlagDoc {
    names: &'static str,
    value: &'static str,
    dns: Option<&'static str>,
    node: Option<&'static str>,
    help: &'static str,
}

const FLAGS: &[FlagDoc] = &[
    FlagDoc {
        names: "-i, --ip",
        value: "IP",
        dns: Some("\"\" (all interfaces)"),
        node: Some("127.0.0.1"),
        help: "address to bind; for node also the address it advertises",
    },
    FlagDoc {
        names: "-p, --port",
        value: "PORT",
        dns: Some("42020"),
        node: Some("a free port in 50000-59999"),
        help: "port to bind and advertise (0: any free port)",
    },
    FlagDoc {
        names: "-d, --dir",
        value: "DIR",
        dns: Some("./.dns_server"),
        node: Some("./.node"),
        help: "state directory, created if missing; one process per directory",
    },
    FlagDoc {
        names: "-n, --nodes",
        value: "FILE",
        dns: Some("nodes.json"),
        node: Some("nodes.json"),
        help: "nodes file name inside the directory",
    },
    FlagDoc {
        names: "-u, --upd_int",
        value: "SECONDS",
        dns: Some("60"),
        node: Some("60"),
        help: "seconds between update rounds (±10% jitter)",
    },
    FlagDoc {
        names: "-k, --kn_limit",
        value: "N",
        dns: None,
        node: Some("10"),
        help: "known nodes wanted before skipping the exchange and seed steps",
    },
    FlagDoc {
        names: "    --dns_ip",
        value: "IP",
        dns: None,
        node: Some("127.0.0.1"),
        help: "the seed server's address",
    },
    FlagDoc {
        names: "    --dns_port",
        value: "PORT",
        dns: None,
        node: Some("42020"),
        help: "the seed server's port",
    },
    FlagDoc {
        names: "    --dns",
        value: "HOST:PORT",
        dns: None,
        node: Some("none"),
        help: "a seed server; repeatable; replaces --dns_ip/--dns_port",
    },
    FlagDoc {
        names: "    --advertise",
        value: "IP",
        dns: None,
        node: Some("the --ip value"),
        help: "address announced to others (NAT, or --ip 0.0.0.0)",
    },
    FlagDoc {
        names: "    --timeout",
        value: "SECONDS",
        dns: Some("5"),
        node: Some("5"),
        help: "seconds per peer request, connect and answer",
    },
    FlagDoc {
        names: "    --fail_limit",
        value: "N",
        dns: Some("1"),
        node: Some("1"),
        help: "consecutive failed checks before a node is removed",
    },
    FlagDoc {
        names: "    --max_nodes",
        value: "N",
        dns: Some("10000"),
        node: Some("1000"),
        help: "cap on known nodes; more are refused with 507",
    },
    FlagDoc {
        names: "    --list_limit",
        value: "N",
        dns: Some("1000"),
        node: Some("1000"),
        help: "most nodes in one GET /nodes/ answer",
    },
    FlagDoc {
        names: "    --check_threads",
        value: "N",
        dns: Some("64"),
        node: Some("64"),
        help: "peer requests made in parallel",
    },
    FlagDoc {
        names: "    --workers",
        value: "N",
        dns: Some("4"),
        node: Some("4"),
        help: "HTTP worker threads",
    },
    FlagDoc {
        names: "    --max_conns",
        value: "N",
        dns: Some("1024"),
        node: Some("1024"),
        help: "most open client connections; more get 503",
    },
    FlagDoc {
        names: "    --verify_source",
        value: "",
        dns: Some("off"),
        node: Some("off"),
        help: "accept POST / only for the caller's own IP address",
    },
    FlagDoc {
        names: "    --admin_token",
        value: "TOKEN",
        dns: Some("none"),
        node: Some("none"),
        help: "lets remote callers change /nodes/ with Authorization: Bearer TOKEN",
    },
    FlagDoc {
        names: "    --log",
        value: "LEVEL",
        dns: Some("info"),
        node: Some("info"),
        help: "error, warn, info, debug or trace",
    },
    FlagDoc {
        names: "-q, --quiet",
        value: "",
        dns: Some("off"),
        node: Some("off"),
        help: "log warnings and errors only (--log warn)",
    },
    FlagDoc {
        names: "-v, --verbose",
        value: "",
        dns: Some("off"),
        node: Some("off"),
        help: "log debug lines too (--log debug)",
    },
    FlagDoc {
        names: "-h, --help",
        value: "",
        dns: Some(""),
        node: Some(""),
        help: "print this help",
    },
    FlagDoc {
        names: "-V, --version",
        value: "",
        dns: Some(""),
        node: Some(""),
        help: "print the version",
    },
];

/// The `--help` text.
pub fn help(kind: Kind) -> String {
    let mut text = match kind {
        Kind::Dns => String::from(
            "dns: the seedmesh seed server. Nodes register with it (POST /) and ask it for\n\
             nodes (GET /nodes/); it checks every registered node each round and drops the dead.\n\n\
             usage: dns [FLAGS]\n\nflags:\n",
        ),
        Kind::Node => String::from(
            "node: a seedmesh network node. It serves the node API, keeps its known nodes in\n\
             DIR/nodes.json, and each round checks them, asks them for peers when it knows too\n\
             few, and asks the seed servers as a last resort.\n\n\
             usage: node [FLAGS]\n\nflags:\n",
        ),
    };
    for flag in FLAGS {
        let default = match kind {
            Kind::Dns => flag.dns,
            Kind::Node => flag.node,
        };
        let Some(default) = default else { continue };
        let left = format!("{} {}", flag.names, flag.value);
        let _ = write!(text, "  {left:<26} {}", flag.help);
        if !default.is_empty() && default != "off" {
            let _ = write!(text, " [default: {default}]");
        }
        text.push('\n');
    }
    text
}

/// Parses the arguments (without the program name).
pub fn parse(kind: Kind, args: Vec<OsString>) -> Result<Command, Error> {
    let mut args = Arguments::from_vec(args);
    if args.contains(["-h", "--help"]) {
        return Ok(Command::Print(help(kind)));
    }
    if args.contains(["-V", "--version"]) {
        return Ok(Command::Print(format!(
            "{} {}\n",
            kind.name(),
            env!("CARGO_PKG_VERSION")
        )));
    }
    let is_node = kind == Kind::Node;
    let mut settings = Settings {
        kind,
        ip: if is_node {
            "127.0.0.1".into()
        } else {
            String::new()
        },
        port: if is_node { None } else { Some(42020) },
        dir: PathBuf::from(if is_node { "./.node" } else { "./.dns_server" }),
        nodes_file: "nodes.json".into(),
        upd_int: Duration::from_secs(60),
        timeout: Duration::from_secs(5),
        fail_limit: 1,
        max_nodes: if is_node { 1000 } else { 10000 },
        list_limit: 1000,
        check_threads: 64,
        workers: 4,
        max_conns: 1024,
        verify_source: false,
        admin_token: None,
        log_level: log::LevelFilter::Info,
        node: None,
    };

    let a = &mut args;
    if let Some(ip) = value(a, ["-i", "--ip"], parse_bind_ip)? {
        settings.ip = ip;
    }
    if let Some(port) = value(a, ["-p", "--port"], |s| parse_int(s, 0, 65535))? {
        settings.port = Some(port as u16);
    }
    if let Some(dir) = value(a, ["-d", "--dir"], parse_nonempty)? {
        settings.dir = PathBuf::from(dir);
    }
    if let Some(name) = value(a, ["-n", "--nodes"], parse_file_name)? {
        settings.nodes_file = name;
    }
    if let Some(d) = value(a, ["-u", "--upd_int"], parse_seconds)? {
        settings.upd_int = d;
    }
    if let Some(d) = value(a, "--timeout", parse_seconds)? {
        settings.timeout = d;
    }
    if let Some(n) = value(a, "--fail_limit", |s| parse_int(s, 1, u32::MAX as u64))? {
        settings.fail_limit = n as u32;
    }
    if let Some(n) = value(a, "--max_nodes", |s| parse_int(s, 1, 10_000_000))? {
        settings.max_nodes = n as usize;
    }
    if let Some(n) = value(a, "--list_limit", |s| parse_int(s, 1, 10_000_000))? {
        settings.list_limit = n as usize;
    }
    if let Some(n) = value(a, "--check_threads", |s| parse_int(s, 1, 4096))? {
        settings.check_threads = n as usize;
    }
    if let Some(n) = value(a, "--workers", |s| parse_int(s, 1, 1024))? {
        settings.workers = n as usize;
    }
    if let Some(n) = value(a, "--max_conns", |s| parse_int(s, 1, 1_000_000))? {
        settings.max_conns = n as usize;
    }
    settings.verify_source = a.contains("--verify_source");
    settings.admin_token = value(a, "--admin_token", parse_nonempty)?;
    settings.log_level = log_level(a)?;

    if is_node {
        settings.node = Some(node_settings(a, &settings.ip)?);
    }

    let rest = args.finish();
    if let Some(first) = rest.first() {
        let first = first.to_string_lossy();
        let known = FLAGS
            .iter()
            .any(|f| f.names.split(", ").any(|n| n.trim() == first));
        return Err(Error::Usage(if known && first.starts_with('-') {
            format!(
                "{first} is given twice, or does not apply to {}; see --help",
                kind.name()
            )
        } else if first.starts_with('-') {
            format!("unknown flag {first}; see --help")
        } else {
            format!("unexpected argument {first:?}; see --help")
        }));
    }
    Ok(Command::Run(Box::new(settings)))
}

/// Parses the flags only a `node` has.
fn node_settings(a: &mut Arguments, ip: &str) -> Result<NodeSettings, Error> {
    let kn_limit = value(a, ["-k", "--kn_limit"], |s| parse_int(s, 1, 10_000_000))?;
    let advertise = value(a, "--advertise", |s| {
        Host::parse(s).map_err(|e| e.to_string())
    })?;
    let dns_ip = value(a, "--dns_ip", parse_nonempty)?;
    let dns_port = value(a, "--dns_port", |s| parse_int(s, 1, 65535))?;
    let seeds = a
        .values_from_fn("--dns", parse_seed)
        .map_err(|e| usage_error("--dns", e))?;
    let seeds = if seeds.is_empty() {
        let ip = dns_ip.unwrap_or_else(|| "127.0.0.1".into());
        let port = dns_port.unwrap_or(42020) as u16;
        vec![
            Node::new(&ip, port)
                .map_err(|e| Error::Usage(format!("invalid --dns_ip/--dns_port: {e}")))?,
        ]
    } else if dns_ip.is_some() || dns_port.is_some() {
        return Err(Error::Usage(
            "--dns replaces --dns_ip/--dns_port: give one or the other".into(),
        ));
    } else {
        seeds
    };
    if advertise.is_none() && binds_all_interfaces(ip) {
        return Err(Error::Usage(format!(
            "--ip {ip:?} binds all interfaces, which no peer can reach: give --advertise with the address peers should use"
        )));
    }
    Ok(NodeSettings {
        kn_limit: kn_limit.map_or(10, |n| n as usize),
        seeds,
        advertise,
    })
}

/// Whether a bind address means every interface.
pub fn binds_all_interfaces(ip: &str) -> bool {
    ip.is_empty() || ip == "0.0.0.0" || ip == "::"
}

/// Parses one flag's value, naming the flag in any error.
fn value<K, T>(
    args: &mut Arguments,
    keys: K,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<T>, Error>
where
    K: Into<pico_args::Keys> + Copy + FlagName,
{
    args.opt_value_from_fn(keys, parse)
        .map_err(|e| usage_error(keys.flag_name(), e))
}

/// The long name of a flag, for messages.
trait FlagName {
    fn flag_name(self) -> &'static str;
}

impl FlagName for [&'static str; 2] {
    fn flag_name(self) -> &'static str {
        self[1]
    }
}

impl FlagName for &'static str {
    fn flag_name(self) -> &'static str {
        self
    }
}

fn usage_error(flag: &str, e: pico_args::Error) -> Error {
    Error::Usage(match e {
        pico_args::Error::OptionWithoutAValue(_) => format!("{flag} needs a value; see --help"),
        pico_args::Error::Utf8ArgumentParsingFailed { value, cause } => {
            format!("invalid value {value:?} for {flag}: {cause}")
        }
        pico_args::Error::NonUtf8Argument => format!("the value of {flag} is not UTF-8"),
        other => format!("{flag}: {other}"),
    })
}

fn log_level(args: &mut Arguments) -> Result<log::LevelFilter, Error> {
    let quiet = args.contains(["-q", "--quiet"]);
    let verbose = args.contains(["-v", "--verbose"]);
    let named = value(args, "--log", |s| {
        s.parse::<log::LevelFilter>()
            .map_err(|_| "expected error, warn, info, debug or trace".to_string())
    })?;
    match (quiet, verbose, named) {
        (true, true, _) | (true, _, Some(_)) | (_, true, Some(_)) => {
            Err(Error::Usage("give only one of -q, -v and --log".into()))
        }
        (true, _, _) => Ok(log::LevelFilter::Warn),
        (_, true, _) => Ok(log::LevelFilter::Debug),
        (_, _, Some(level)) => Ok(level),
        _ => Ok(log::LevelFilter::Info),
    }
}

fn parse_int(text: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 = text
        .parse()
        .map_err(|_| format!("expected a whole number in {min}..={max}"))?;
    if n < min || n > max {
        return Err(format!("must be in {min}..={max}"));
    }
    Ok(n)
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err("expected a number of seconds above 0 and at most 86400".into()),
    }
}

fn parse_nonempty(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(text.to_owned())
}

fn parse_file_name(text: &str) -> Result<String, String> {
    if text.is_empty() || text == "." || text == ".." || text.contains('/') {
        return Err("expected a plain file name, without '/'".into());
    }
    Ok(text.to_owned())
}

fn parse_bind_ip(text: &str) -> Result<String, String> {
    if binds_all_interfaces(text) {
        return Ok(text.to_owned());
    }
    Host::parse(text)
        .map(|host| host.to_string())
        .map_err(|e| e.to_string())
}

/// `HOST:PORT`, with brackets around an IPv6 host.
fn parse_seed(text: &str) -> Result<Node, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| "expected HOST:PORT".to_string())?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = parse_int(port, 1, 65535)? as u16;
    Node::new(host, port).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(kind: Kind, args: &[&str]) -> Result<Settings, Error> {
        match parse(kind, args.iter().map(OsString::from).collect())? {
            Command::Run(settings) => Ok(*settings),
            Command::Print(text) => panic!("printed {text}"),
        }
    }

    fn usage(kind: Kind, args: &[&str]) -> String {
        match run(kind, args) {
            Err(Error::Usage(message)) => message,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    #[test]
    fn defaults_follow_the_contract() {
        let dns = run(Kind::Dns, &[]).unwrap();
        assert_eq!((dns.ip.as_str(), dns.port), ("", Some(42020)));
        assert_eq!(dns.dir, PathBuf::from("./.dns_server"));
        assert_eq!(dns.max_nodes, 10000);
        assert_eq!(dns.node, None, "a dns has no node flags");
        let node = run(Kind::Node, &[]).unwrap();
        assert_eq!((node.ip.as_str(), node.port), ("127.0.0.1", None));
        assert_eq!(node.dir, PathBuf::from("./.node"));
        assert_eq!((node.max_nodes, node.list_limit), (1000, 1000));
        assert_eq!(
            node.node,
            Some(NodeSettings {
                kn_limit: 10,
                seeds: vec![Node::new("127.0.0.1", 42020).unwrap()],
                advertise: None,
            })
        );
        for s in [&dns, &node] {
            assert_eq!(s.nodes_file, "nodes.json");
            assert_eq!(s.upd_int, Duration::from_secs(60));
            assert_eq!(s.timeout, Duration::from_secs(5));
            assert_eq!((s.fail_limit, s.check_threads, s.workers), (1, 64, 4));
        }
    }

    #[test]
    fn flags_set_their_values() {
        let s = run(
            Kind::Node,
            &[
                "-p",
                "55000",
                "-d",
                "x",
                "-u",
                "0.5",
                "-k",
                "3",
                "--dns",
                "[::1]:7",
                "--dns=seed.example:8",
                "--timeout",
                "2",
                "--fail_limit",
                "3",
                "--advertise",
                "10.0.0.1",
                "--admin_token",
                "t",
                "-q",
            ],
        )
        .unwrap();
        assert_eq!(s.port, Some(55000));
        assert_eq!(s.dir, PathBuf::from("x"));
        assert_eq!(s.upd_int, Duration::from_millis(500));
        assert_eq!(
            s.node,
            Some(NodeSettings {
                kn_limit: 3,
                seeds: vec![
                    Node::new("::1", 7).unwrap(),
                    Node::new("seed.example", 8).unwrap()
                ],
                advertise: Some(Host::parse("10.0.0.1").unwrap()),
            })
        );
        assert_eq!((s.timeout, s.fail_limit), (Duration::from_secs(2), 3));
        assert_eq!(s.admin_token.as_deref(), Some("t"));
        assert_eq!(s.log_level, log::LevelFilter::Warn);
        let s = run(Kind::Node, &["--dns_ip", "10.1.1.1", "--dns_port", "9"]).unwrap();
        let seeds = s.node.map(|n| n.seeds);
        assert_eq!(seeds, Some(vec![Node::new("10.1.1.1", 9).unwrap()]));
    }

    #[test]
    fn settings_report_seconds_and_never_the_token() {
        let s = run(
            Kind::Node,
            &["-u", "0.5", "--admin_token", "s3cret", "-k", "4"],
        )
        .unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["upd_int_seconds"], 0.5);
        assert_eq!(json["timeout_seconds"], 5.0);
        assert_eq!(json["admin_token_set"], true);
        assert_eq!(json["kn_limit"], 4);
        assert_eq!(json["log_level"], "info");
        assert!(!json.to_string().contains("s3cret"));
        let dns = serde_json::to_value(run(Kind::Dns, &[]).unwrap()).unwrap();
        assert_eq!(dns["admin_token_set"], false);
        assert!(dns.get("kn_limit").is_none() && dns.get("seeds").is_none());
    }

    #[test]
    fn bad_flags_name_the_flag() {
        assert!(usage(Kind::Dns, &["--port", "abc"]).contains("--port"));
        assert!(usage(Kind::Dns, &["-p", "70000"]).contains("--port"));
        assert!(usage(Kind::Dns, &["--port"]).contains("--port needs a value"));
        assert!(usage(Kind::Dns, &["--bogus"]).contains("unknown flag --bogus"));
        assert!(usage(Kind::Dns, &["--kn_limit", "3"]).contains("--kn_limit"));
        assert!(usage(Kind::Dns, &["-p", "1", "-p", "2"]).contains("given twice"));
        assert!(usage(Kind::Node, &["-u", "0"]).contains("--upd_int"));
        assert!(usage(Kind::Node, &["--timeout", "-1"]).contains("--timeout"));
        assert!(usage(Kind::Node, &["--workers", "0"]).contains("--workers"));
        assert!(usage(Kind::Node, &["--dns", "nohost"]).contains("--dns"));
        assert!(usage(Kind::Node, &["--dns", "a:1", "--dns_ip", "b"]).contains("--dns replaces"));
        assert!(usage(Kind::Node, &["-n", "a/b.json"]).contains("--nodes"));
        assert!(usage(Kind::Node, &["-i", "0.0.0.0"]).contains("--advertise"));
        assert!(usage(Kind::Node, &["-q", "-v"]).contains("only one of"));
        assert!(usage(Kind::Node, &["--log", "loud"]).contains("--log"));
        assert!(usage(Kind::Node, &["stray"]).contains("unexpected argument"));
        assert!(run(Kind::Node, &["-i", "0.0.0.0", "--advertise", "192.0.2.1"]).is_ok());
    }

    #[test]
    fn help_lists_every_flag_of_the_binary() {
        let dns = help(Kind::Dns);
        let node = help(Kind::Node);
        for flag in [
            "--ip",
            "--port",
            "--dir",
            "--nodes",
            "--upd_int",
            "--timeout",
            "--fail_limit",
            "--max_nodes",
            "--list_limit",
            "--check_threads",
            "--workers",
            "--verify_source",
            "--admin_token",
            "--version",
        ] {
            assert!(dns.contains(flag) && node.contains(flag), "{flag}");
        }
        for flag in [
            "--kn_limit",
            "--dns_ip",
            "--dns_port",
            "--dns ",
            "--advertise",
        ] {
            assert!(node.contains(flag), "{flag}");
            assert!(!dns.contains(flag), "{flag}");
        }
        assert!(dns.contains("[default: 42020]") && node.contains("[default: 10]"));
    }
}
