//! The command line and the operator's first minutes, against the real binaries: exit codes and
//! messages of bad flags, `--help`, the default bind address, the admin token from a file or
//! the environment (and never in `ps`, `/status` or the logs), SIGHUP, and
//! `scripts/localnet.sh`'s help and refusals.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use support::*;

const DNS: &str = env!("CARGO_BIN_EXE_dns");
const NODE: &str = env!("CARGO_BIN_EXE_node");
const TOKEN: &str = "cli-test-token-0123456789abcdef";

/// Runs `bin args` to its exit, which must be a usage error: status 2, nothing on stdout, and
/// one line on stderr, returned.
fn usage_error(bin: &str, args: &[&str]) -> String {
    let (status, out, err) = run_to_exit(bin, args);
    assert_eq!(status.code(), Some(2), "{args:?}: {err}");
    assert!(out.is_empty(), "{args:?} printed {out}");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    let name = Path::new(bin).file_name().unwrap().to_str().unwrap();
    let message = err.trim_end().strip_prefix(&format!("{name}: error: "));
    message.unwrap_or_else(|| panic!("{err}")).to_owned()
}

#[test]
fn usage_errors_exit_2_with_one_line_saying_what_is_wrong() {
    let dir = TempDir::new("cli-usage");
    let file = dir.join("a-file");
    std::fs::write(&file, "x").unwrap();
    let file = file.to_str().unwrap();
    let short = dir.join("short-token");
    std::fs::write(&short, "0123456789\n").unwrap();
    let short = short.to_str().unwrap();
    for (bin, args, says) in [
        (
            DNS,
            &["-p", "1", "--port", "2"][..],
            "--port is repeated (2 times): give it once",
        ),
        (
            NODE,
            &["--verify_source", "--verify_source"],
            "--verify_source is repeated",
        ),
        (DNS, &["--bogus"], "unknown flag --bogus; see dns --help"),
        (
            DNS,
            &["--kn_limit", "3"],
            "--kn_limit does not apply to dns, only to node",
        ),
        (
            DNS,
            &["--app", "http://127.0.0.1:8080"],
            "--app does not apply to dns",
        ),
        (
            DNS,
            &["-u", "0.05"],
            "invalid value \"0.05\" for --upd_int: expected a number of seconds from 0.1",
        ),
        (
            NODE,
            &["--dns", "127.0.0.1:0"],
            "--dns: port 0 is out of range",
        ),
        (DNS, &["-d", file], "--dir: it is a file, not a directory"),
        (NODE, &["--app_timeout", "3"], "--app_timeout needs --app"),
        (
            DNS,
            &["--admin_token_file", short],
            "has 10 bytes, too short",
        ),
        (DNS, &["--admin_token", "s3cret"], "at least 16"),
        (
            DNS,
            &["--allow_local", "sometimes"],
            "--allow_local: expected yes, no or auto",
        ),
        (NODE, &["--network", "two words"], "--network"),
    ] {
        let message = usage_error(bin, args);
        assert!(message.contains(says), "{args:?}: {message}");
    }
}

#[test]
fn help_lists_each_binarys_own_flags() {
    let (status, dns_help, _) = run_to_exit(DNS, &["--help"]);
    assert!(status.success());
    let (status, node_help, _) = run_to_exit(NODE, &["-h"]);
    assert!(status.success());
    let flat = |help: &str| help.split_whitespace().collect::<Vec<_>>().join(" ");
    let (dns_flat, node_flat) = (flat(&dns_help), flat(&node_help));
    assert!(
        dns_flat.contains(
            "-i, --ip IP address to bind (0.0.0.0 or :: for all interfaces) [default: 127.0.0.1] -p,"
        ),
        "dns binds, never announces: {dns_help}"
    );
    assert!(
        node_flat
            .contains("for all interfaces); also the address it announces, unless --advertise"),
        "{node_help}"
    );
    for flag in [
        "--kn_limit",
        "--dns ",
        "--advertise",
        "--app ",
        "--app_timeout",
    ] {
        assert!(
            !dns_help.contains(flag) && node_help.contains(flag),
            "{flag}"
        );
    }
    for flag in [
        "--allow_local",
        "--public_only",
        "--reg_rate",
        "--reg_burst",
        "--network",
        "--admin_token_file",
    ] {
        assert!(
            dns_help.contains(flag) && node_help.contains(flag),
            "{flag}"
        );
    }
    assert!(dns_help.contains("SEEDMESH_ADMIN_TOKEN"));
}

/// A process started here with `envs`, its stderr collected; killed when dropped.
struct Started {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Started {
    fn new(bin: &str, args: &[&str], envs: &[(&str, &str)]) -> Started {
        let mut child = Command::new(bin)
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
        thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .unwrap_or_else(|_| panic!("{bin} {args:?} did not start: {}", stderr.lock().unwrap()));
        let addr = line.strip_prefix("listening on ").expect("listening line");
        let started = Started {
            child,
            addr: addr.parse().unwrap(),
            stderr,
        };
        wait_until(Duration::from_secs(10), "the start-up line", || {
            started.stderr().contains(" listening on ")
        });
        started
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{name}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dns_binds_loopback_by_default_and_says_1_known_node() {
    let dir = TempDir::new("cli-default-ip");
    let gone = refused_addr("127.0.0.1");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.join("nodes.json"), nodes_file_of(&[gone])).unwrap();
    let args = [
        "-p",
        "0",
        "-d",
        dir.path().to_str().unwrap(),
        "-u",
        "3600",
        "--fail_limit",
        "9",
    ];
    let dns = Started::new(DNS, &args, &[]);
    assert_eq!(dns.addr.ip().to_string(), "127.0.0.1");
    // The log is read by a thread of its own: wait for the line rather than race it.
    wait_until(Duration::from_secs(10), "the start line", || {
        dns.stderr().contains(", 1 known node\n")
    });
}

#[test]
fn the_admin_token_from_a_file_or_the_environment_never_shows() {
    let dir = TempDir::new("cli-token");
    let file = dir.join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let state = dir.join("state");
    let state = state.to_str().unwrap();
    let base = ["-p", "0", "-d", state, "-v"];
    let by_file = [&base[..], &["--admin_token_file", file.to_str().unwrap()]].concat();
    for (args, envs) in [
        (&by_file[..], &[][..]),
        (&base[..], &[("SEEDMESH_ADMIN_TOKEN", TOKEN)][..]),
    ] {
        let mut dns = Started::new(DNS, args, envs);
        let status = request("GET", dns.addr, "/status", None, &[]);
        assert_eq!(
            status.json()["settings"]["admin_token_set"],
            true,
            "{args:?}"
        );
        assert!(!status.body.contains(TOKEN));
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", dns.child.id())).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains(TOKEN), "in ps");
        assert!(!dns.stderr().contains(TOKEN), "in the log");
        dns.signal("TERM");
        assert!(dns.child.wait().unwrap().success());
    }
    let message = usage_error_env(&by_file, &[("SEEDMESH_ADMIN_TOKEN", TOKEN)]);
    assert!(
        message.contains("given twice, by --admin_token_file")
            && message.contains("and SEEDMESH_ADMIN_TOKEN"),
        "{message}"
    );
    let message = usage_error_env(&base, &[("SEEDMESH_ADMIN_TOKEN", "short")]);
    assert!(
        message.contains("from SEEDMESH_ADMIN_TOKEN has 5 bytes, too short"),
        "{message}"
    );
}

/// `usage_error` for a `dns` with extra environment variables.
fn usage_error_env(args: &[&str], envs: &[(&str, &str)]) -> String {
    let out = Command::new(DNS)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn sighup_is_logged_and_the_process_keeps_running() {
    let dir = TempDir::new("cli-hup");
    let mut node = Started::new(
        NODE,
        &[
            "-p",
            "0",
            "-d",
            dir.path().to_str().unwrap(),
            "--dns",
            "127.0.0.1:9",
        ],
        &[],
    );
    node.signal("HUP");
    wait_until(Duration::from_secs(5), "the SIGHUP line", || {
        node.stderr().contains("SIGHUP")
    });
    assert!(
        node.stderr()
            .contains("WARN  SIGHUP (a closed terminal?): ignored, still running")
    );
    assert_eq!(request("GET", node.addr, "/", None, &[]).status, 200);
    assert!(matches!(node.child.try_wait(), Ok(None)), "still running");
    node.signal("TERM");
    assert_eq!(node.child.wait().unwrap().code(), Some(0));
}

const LOCALNET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/localnet.sh");

/// `scripts/localnet.sh args` with the binaries cargo built, in `dir`, on any free port.
fn localnet(dir: &Path, args: &[&str]) -> Command {
    let bins = Path::new(DNS).parent().unwrap();
    let mut command = Command::new(LOCALNET);
    command
        .args(args)
        .env("SEEDMESH_BIN_DIR", bins)
        .env("LOCALNET_DIR", dir)
        .env("DNS_PORT", "0")
        .stdin(Stdio::null());
    command
}

/// A running `localnet.sh`; stopped with SIGTERM (which stops its processes) when dropped.
struct Localnet {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Drop for Localnet {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn localnet_help_explains_n_the_flag_and_the_environment() {
    let out = Command::new(LOCALNET).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "[N]",
        "--until-converged",
        "DNS_PORT",
        "LOCALNET_DIR",
        "SEEDMESH_PROFILE",
        "about 45 s",
    ] {
        assert!(help.contains(word), "{word}: {help}");
    }
    let out = Command::new(LOCALNET).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn localnet_refuses_a_second_network_in_its_directory_and_leaves_the_first_untouched() {
    let dir = TempDir::new("cli-localnet");
    let mut child = localnet(dir.path(), &["2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (stdout, sink) = (child.stdout.take().unwrap(), Arc::clone(&lines));
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let first = Localnet { child, lines };
    let seen = |text: &str| first.lines.lock().unwrap().iter().any(|l| l.contains(text));
    wait_until(
        Duration::from_secs(30),
        "the first network converges",
        || seen("converged after"),
    );
    let dns_line = first
        .lines
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.starts_with("dns "))
        .cloned()
        .unwrap();
    let addr: SocketAddr = dns_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let log_before = std::fs::read_to_string(dir.join("dns.log")).unwrap();

    // --until-converged: were it not refused, it would still end.
    let second = localnet(dir.path(), &["2", "--until-converged"])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    let pid = first.child.id();
    assert!(
        err.contains(&format!(
            "a local network is already running in {} (script pid {pid})",
            dir.path().display()
        )),
        "{err}"
    );

    // The first network's files and processes are as they were.
    let log_after = std::fs::read_to_string(dir.join("dns.log")).unwrap();
    assert!(
        log_after.starts_with(&log_before),
        "the first network's log was replaced"
    );
    assert!(dir.join("node1").join("nodes.json").exists());
    let nodes = request("GET", addr, "/nodes/", None, &[]);
    assert_eq!((nodes.status, nodes_of(&nodes.json()).len()), (200, 2));
    // The ticker printed each state once: no line repeats the one before it.
    let lines = first.lines.lock().unwrap().clone();
    let ticks: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("t="))
        .filter_map(|l| l.split_once("s  ").map(|(_, counts)| counts))
        .collect();
    assert!(!ticks.is_empty(), "{lines:?}");
    assert!(ticks.windows(2).all(|w| w[0] != w[1]), "{lines:?}");
}

#[test]
fn localnet_shows_the_log_of_a_process_that_did_not_start() {
    let dir = TempDir::new("cli-localnet-fail");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = localnet(dir.path(), &["2"])
        .env("DNS_PORT", &port)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("localnet: dns did not start; the end of"),
        "{err}"
    );
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn a_low_open_file_limit_lowers_connections_and_checks_with_a_warning_and_status_shows_them() {
    let dir = TempDir::new("nofile");
    // The seed's defaults (1,024 connections, 1,024 check threads) want 2,176 open files;
    // under a hard limit of 1,500 a round could not open its sockets.
    let wrapper = dir.join("dns-under-ulimit");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nulimit -n 1500 || exit 99\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_dns")
        ),
    )
    .unwrap();
    let chmod = Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    assert!(chmod.success());
    let dns = spawn(wrapper.to_str().unwrap(), &dir.join("d"), &["-u", "3600"]);
    // 1,372 left after the 128 kept, shared evenly by the two equal defaults. The warning
    // comes on stderr, read by a thread of its own: wait for it rather than race it.
    let warning = "--max_conns lowered from 1024 to 686 and --check_threads from 1024 to 686";
    dns.wait_log(warning);
    let status = dns.get("/status").json();
    assert_eq!(status["settings"]["max_conns"], 686, "{status}");
    assert_eq!(status["settings"]["check_threads"], 686, "{status}");
}
