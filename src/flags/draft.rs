//! What the flags wrote, before the rules between flags (`finish`) make it `Settings`.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::config::TOKEN_VAR;
use crate::nodes::Node;

/// The settings as the flags write them, one flag at a time, with what only becomes a
/// setting through a rule between flags.
pub struct Draft {
    pub(super) settings: Settings,
    /// The node flags; kept for a `node` only.
    pub(super) node: NodeSettings,
    /// `--dns_ip`, `--dns_port`: the seed when no `--dns` is given.
    pub(super) dns_ip: String,
    pub(super) dns_port: u16,
    /// `--app`: the URL, its host and port.
    pub(super) app_url: Option<(String, Host, u16)>,
    /// The `--app_*` flags, kept only with `--app`.
    pub(super) app: AppSettings,
    /// `--seed_zone`, `--seed_listen`: DNS seeding, on when both are given.
    pub(super) seed_zone: Option<String>,
    pub(super) seed_listen: Option<std::net::SocketAddr>,
    /// `--seed_port`, `--seed_ns`: kept only with DNS seeding on.
    pub(super) seed_port: u16,
    pub(super) seed_ns: Vec<String>,
    pub(super) seed_rrl: u32,
    pub(super) token: Option<String>,
    pub(super) token_file: Option<PathBuf>,
}

/// Most bytes read from `--admin_token_file`: a token, not a file someone pointed at by mistake.
const TOKEN_FILE_LIMIT: u64 = 4096;

/// Fewest bytes in an admin token.
pub const TOKEN_MIN: usize = 16;

impl Draft {
    /// A draft whose every field is set by a flag's default, or left unset on purpose.
    pub fn new(kind: Kind) -> Draft {
        Draft {
            settings: Settings {
                kind,
                ip: String::new(),
                port: None,
                dir: PathBuf::new(),
                nodes_file: String::new(),
                upd_int: Duration::ZERO,
                timeout: Duration::ZERO,
                fail_limit: 0,
                max_nodes: 0,
                list_limit: 0,
                check_threads: 0,
                workers: 0,
                max_conns: 0,
                max_conns_per_ip: 0,
                verify_source: false,
                admin_token: None,
                allow_local: AllowLocal::Auto,
                public_only: false,
                reg_rate: 0.0,
                reg_burst: 0,
                reg_others: 0,
                network: None,
                seed_dns: None,
                log_level: log::LevelFilter::Info,
                node: None,
            },
            node: NodeSettings {
                kn_limit: 0,
                seeds: Vec::new(),
                advertise: None,
                app: None,
                seed_domains: Vec::new(),
                resolver: None,
            },
            dns_ip: String::new(),
            dns_port: 0,
            app_url: None,
            app: AppSettings {
                url: String::new(),
                host: Host::Name("unset".into()),
                port: 0,
                health: None,
                body_limit: 0,
                body_budget: 0,
                answer_limit: 0,
                timeout: Duration::ZERO,
                workers: 0,
            },
            seed_zone: None,
            seed_listen: None,
            seed_port: 0,
            seed_ns: Vec::new(),
            seed_rrl: 0,
            token: None,
            token_file: None,
        }
    }

    /// Applies the rules between flags, given the long names of the flags on the command line.
    pub fn finish(self, given: &[&str], env: &Env) -> Result<Settings, Error> {
        let usage = |message: String| Err(Error::Usage(message));
        let has = |flag: &str| given.contains(&flag);
        let Draft {
            mut settings,
            mut node,
            dns_ip,
            dns_port,
            app_url,
            mut app,
            seed_zone,
            seed_listen,
            seed_port,
            seed_ns,
            seed_rrl,
            token,
            token_file,
        } = self;

        let levels: Vec<&str> = ["--quiet", "--verbose", "--log"]
            .into_iter()
            .filter(|f| has(f))
            .collect();
        if levels.len() > 1 {
            return usage(format!(
                "{} set the log level twice: give one of -q, -v and --log",
                levels.join(" and ")
            ));
        }

        settings.admin_token = admin_token(token, token_file, env)?;

        if settings.kind == Kind::Dns {
            settings.seed_dns = match (seed_zone, seed_listen) {
                (Some(zone), Some(listen)) => Some(SeedDnsSettings {
                    zone,
                    listen,
                    port: seed_port,
                    ns: seed_ns,
                    rrl: seed_rrl,
                }),
                (None, None) => {
                    if let Some(flag) = ["--seed_port", "--seed_ns", "--seed_rrl"]
                        .into_iter()
                        .find(|f| has(f))
                    {
                        return usage(format!(
                            "{flag} needs --seed_zone NAME and --seed_listen ADDR:PORT, the DNS seeding it is about"
                        ));
                    }
                    None
                }
                (Some(_), None) => {
                    return usage(
                        "--seed_zone needs --seed_listen ADDR:PORT, where to answer DNS".into(),
                    );
                }
                (None, Some(_)) => {
                    return usage(
                        "--seed_listen needs --seed_zone NAME, the zone to answer".into(),
                    );
                }
            };
            return Ok(settings);
        }
        if has("--resolver") && node.seed_domains.is_empty() {
            return usage("--resolver needs --seed_domain NAME, the names it looks up".into());
        }
        // A node that finds its seeds through DNS asks no HTTP seed it was not given: the
        // default --dns_ip/--dns_port would be one.
        let dns_seeds_only =
            !node.seed_domains.is_empty() && !["--dns_ip", "--dns_port"].into_iter().any(has);
        if node.seeds.is_empty() && !dns_seeds_only {
            let seed = Node::new(&dns_ip, dns_port);
            node.seeds = vec![seed.map_err(|e| {
                Error::Usage(format!(
                    "invalid --dns_ip/--dns_port {dns_ip}:{dns_port}: {e}"
                ))
            })?];
        } else if let Some(old) = ["--dns_ip", "--dns_port"].into_iter().find(|f| has(f)) {
            return usage(format!(
                "--dns replaces {old}: give --dns HOST:PORT (repeatable) or --dns_ip/--dns_port, not both"
            ));
        }
        if node.advertise.is_none() && settings.binds_all_interfaces() {
            return usage(format!(
                "--ip {} binds all interfaces, which no peer can reach: give --advertise with the address peers should use",
                settings.ip
            ));
        }
        match app_url {
            Some((url, host, port)) => {
                (app.url, app.host, app.port) = (url, host, port);
                // The budget must hold one body of the largest size forwarded: by default
                // it grows to it; given, it must be at least that.
                if !has("--app_body_budget") {
                    app.body_budget = app.body_budget.max(app.body_limit);
                } else if app.body_budget < app.body_limit {
                    return usage(format!(
                        "--app_body_budget ({} bytes) is under --app_body_limit ({} bytes): no body that large could ever be forwarded",
                        app.body_budget, app.body_limit
                    ));
                }
                node.app = Some(app);
            }
            None => {
                let app_flags = FLAGS
                    .iter()
                    .map(|f| f.long)
                    .filter(|f| f.starts_with("--app_"));
                if let Some(flag) = app_flags.into_iter().find(|f| has(f)) {
                    return usage(format!(
                        "{flag} needs --app URL, the application it is about"
                    ));
                }
            }
        }
        settings.node = Some(node);
        Ok(settings)
    }
}

/// The admin token from its one source: `--admin_token`, `--admin_token_file` or the
/// environment variable; at least `TOKEN_MIN` bytes of visible ASCII. Messages never hold
/// the token.
fn admin_token(
    flag: Option<String>,
    file: Option<PathBuf>,
    env: &Env,
) -> Result<Option<String>, Error> {
    let usage = |message: String| Err(Error::Usage(message));
    let mut sources = Vec::new();
    if flag.is_some() {
        sources.push("--admin_token".to_owned());
    }
    if let Some(path) = &file {
        sources.push(format!("--admin_token_file {}", path.display()));
    }
    if env.admin_token.is_some() {
        sources.push(TOKEN_VAR.to_owned());
    }
    if sources.len() > 1 {
        return usage(format!(
            "the admin token is given twice, by {}: give it one way",
            sources.join(" and ")
        ));
    }
    let token = match (flag, file, &env.admin_token) {
        (Some(token), _, _) => token,
        (_, Some(path), _) => read_token_file(&path)?,
        (_, _, Some(value)) => match value.to_str() {
            Some(text) => text.to_owned(),
            None => return usage(format!("{TOKEN_VAR} is not UTF-8")),
        },
        (None, None, None) => return Ok(None),
    };
    let source = &sources[0];
    if let Some(bad) = token.bytes().find(|b| !b.is_ascii_graphic()) {
        let what = if bad.is_ascii_whitespace() {
            "a space or line break"
        } else {
            "a byte that is not visible ASCII"
        };
        return usage(format!(
            "the admin token from {source} holds {what}; use letters, digits and punctuation"
        ));
    }
    if token.len() < TOKEN_MIN {
        return usage(format!(
            "the admin token from {source} has {} bytes, too short to resist guessing: it needs at least {TOKEN_MIN} \
             (make one with: head -c 32 /dev/urandom | base64)",
            token.len()
        ));
    }
    Ok(Some(token))
}

/// The token in `path`, without one trailing newline (`\n` or `\r\n`).
fn read_token_file(path: &std::path::Path) -> Result<String, Error> {
    use std::io::Read;
    let bad = |why: String| Error::Usage(format!("--admin_token_file {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let mut bytes = Vec::new();
    file.take(TOKEN_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > TOKEN_FILE_LIMIT {
        return Err(bad(format!(
            "over {TOKEN_FILE_LIMIT} bytes: not a token file"
        )));
    }
    let mut text = String::from_utf8(bytes).map_err(|_| bad("not UTF-8 text".into()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}
