//! Tests that need a real remote caller run inside a network namespace of their own
//! (`unshare -n`), where documentation-range addresses are added to the namespace's `lo`:
//! a client can then connect from an address that is not loopback, and nothing it sends can
//! leave the machine (the namespace has no other interface). loopback-only: own network namespace

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::http::{Resp, exchange_on};

/// Set inside the namespace, so the re-executed test runs its body instead of re-executing.
const INSIDE: &str = "SEEDMESH_TEST_NETNS";

/// The addresses added to the namespace's `lo`, one per documentation range (RFC 5737).
pub const NS_ADDRS: [&str; 3] = ["192.0.2.1", "198.51.100.7", "203.0.113.9"];

/// Runs `body` in a fresh network namespace (and mount namespace, for `hosts_file`): the
/// test binary re-executes itself under `unshare -n -m`, running only the test `name`. Needs root (CI runs as root); without it the
/// test fails when `CI` is set, and otherwise says so and passes without running, so that a
/// developer's unprivileged `cargo test` still works.
pub fn in_namespace(name: &str, body: impl FnOnce()) {
    if std::env::var_os(INSIDE).is_some() {
        set_up_namespace();
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let output = Command::new("unshare")
        .args(["-n", "-m", "--propagation", "private", "--"])
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INSIDE, "1")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(e) => return unavailable(name, &format!("cannot run unshare: {e}")),
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() && stderr.contains("unshare failed") {
        return unavailable(name, &stderr);
    }
    assert!(
        output.status.success(),
        "{name} failed in its network namespace:\n{}\n{stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 passed"),
        "{name} did not run in its namespace:\n{stdout}"
    );
}

fn unavailable(name: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{name} needs a network namespace (root) in CI: {why}");
    }
    eprintln!("SKIPPED {name}: needs a network namespace (run as root): {why}");
}

fn set_up_namespace() {
    let run = |args: &[&str]| {
        let status = Command::new("ip").args(args).status().expect("run ip");
        assert!(status.success(), "ip {args:?}");
    };
    run(&["link", "set", "lo", "up"]);
    for addr in NS_ADDRS {
        run(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]);
    }
}

/// A TCP connection to `addr` from `source` (any port): a caller that is not loopback.
pub fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let source: IpAddr = source.parse().expect("a source IP");
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::new(source, 0).into())
        .expect("bind the source address");
    socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    socket.into()
}

/// One request to `addr` from `source`.
pub fn request_from(
    source: &str,
    method: &str,
    addr: SocketAddr,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Resp {
    let stream = connect_from(source, addr);
    exchange_on(stream, method, addr, path, body.map(str::as_bytes), headers)
        .unwrap_or_else(|e| panic!("{method} {addr}{path} from {source}: {e}"))
}

/// Makes `entries` (address, name) the namespace's `/etc/hosts`, bind-mounted over the real
/// one inside the test's mount namespace only, so that names resolve as the test needs.
pub fn hosts_file(dir: &std::path::Path, entries: &[(&str, &str)]) {
    assert!(
        std::env::var_os(INSIDE).is_some(),
        "hosts_file only inside in_namespace"
    );
    let text: String = entries
        .iter()
        .map(|(ip, name)| format!("{ip} {name}\n"))
        .collect();
    let path = dir.join("hosts");
    std::fs::write(&path, text).expect("write hosts");
    let status = Command::new("mount")
        .args(["--bind"])
        .arg(&path)
        .arg("/etc/hosts")
        .status()
        .expect("run mount");
    assert!(status.success(), "mount --bind hosts /etc/hosts");
}

/// Adds `addrs` to the namespace's `lo`, for tests that need more addresses than `NS_ADDRS`.
pub fn add_addresses(addrs: &[String]) {
    assert!(
        std::env::var_os(INSIDE).is_some(),
        "add_addresses only inside in_namespace"
    );
    for addr in addrs {
        let status = Command::new("ip")
            .args(["addr", "add", &format!("{addr}/32"), "dev", "lo"])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip addr add {addr}");
    }
}
