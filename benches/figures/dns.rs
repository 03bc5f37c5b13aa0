//! Figure 7: DNS seeding (SPEC §12). Queries per second for `_seedmesh._tcp.seed.test SRV`
//! with EDNS (so that the 16 nodes and their addresses fit one answer), from dnsperf, against
//! our `dns` and against nsd serving a zone file with the same records, taking turns in the
//! same run. The goal: at least half of nsd's rate.
//!
//! nsd runs from a private directory (config, zone file, pid file, logs, state) on a free
//! loopback port, with as many server processes as the machine has cores, no privilege drop,
//! no chroot, no database, no remote control, and response rate limiting off: Debian's nsd
//! has it on by default, at 200 answers per second per client, which would measure the rate
//! limiter. When nsd or dnsperf is missing, the figure says so and measures nothing.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::Config;
use crate::report::{Row, median, range, thousands};
use crate::support::{self, FakePeer, Proc, TempDir};

const ZONE: &str = "seed.test";
const SRV_NAME: &str = "_seedmesh._tcp.seed.test.";
/// Nodes the seed knows: exactly one SRV answer's worth.
const NODES: usize = 16;
/// dnsperf's simulated clients and queries in flight.
const CLIENTS: &str = "4";
const IN_FLIGHT: &str = "64";

/// A binary on `PATH` or in the sbin directories outside a user's `PATH`.
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

pub fn srv_rate(config: &Config) -> Vec<Row> {
    let figure = "7. DNS `SRV` queries/s (dnsperf, EDNS)";
    let (Some(nsd), Some(dnsperf)) = (find("nsd"), find("dnsperf")) else {
        let why = "nsd or dnsperf is not installed (Debian: apt-get install nsd dnsperf)";
        eprintln!("figure 7 skipped: {why}");
        return vec![Row::new(figure, format!("not measured: {why}"))];
    };
    // Live peers, so that the nodes count as healthy however strictly that is judged.
    let peers: Vec<FakePeer> = (0..NODES)
        .map(|i| FakePeer::new(&format!("127.{}.0.1", 101 + i), "[]"))
        .collect();
    let dir = TempDir::new("bench-dns");
    let ours = support::dns(
        dir.path(),
        &[
            "--seed_zone",
            ZONE,
            "--seed_listen",
            "127.0.0.1:0",
            "-u",
            "2",
            // dnsperf is one client: measure the answering, not the rate limit (nsd's is
            // off too).
            "--seed_rrl",
            "0",
        ],
    );
    let our_addr = seeding_addr(&ours);
    for peer in &peers {
        let body = support::node_body_at(&peer.addr.ip().to_string(), peer.addr.port());
        assert_eq!(
            ours.post("/", &body).status,
            200,
            "registering {}",
            peer.addr
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer = ask_tcp(our_addr, SRV_NAME, RecordType::SRV);
        if answer.answers.len() == NODES {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "our SRV answer never held {NODES} nodes"
        );
        thread::sleep(Duration::from_millis(100));
    };
    let zone_file = zone_text(&[
        ask_tcp(our_addr, "seed.test.", RecordType::SOA),
        ask_tcp(our_addr, "seed.test.", RecordType::NS),
        answer,
    ]);
    let nsd_dir = TempDir::new("bench-nsd");
    let server = match Nsd::start(&nsd, nsd_dir.path(), &zone_file) {
        Ok(server) => server,
        Err(e) => return vec![Row::failed(figure, &e)],
    };
    let queries = nsd_dir.join("queries.txt");
    fs::write(&queries, format!("{SRV_NAME} SRV\n")).expect("write the query file");
    let perf = |addr: SocketAddr, length: Duration| dnsperf_run(&dnsperf, addr, &queries, length);

    let warmup = config.warmup.max(Duration::from_secs(1));
    let _ = (perf(our_addr, warmup), perf(server.addr, warmup));
    let before = answers_and_reuses(&ours);
    let (mut ours_qps, mut nsd_qps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let mut sizes = (0.0, 0.0);
    for run in 0..config.runs {
        let targets = [(our_addr, true), (server.addr, false)];
        let mut this_run = [0.0f64; 2];
        for k in 0..2 {
            let (addr, is_ours) = targets[(run + k) % 2];
            let result = match perf(addr, config.duration) {
                Ok(result) => result,
                Err(e) => return vec![Row::failed(figure, &e)],
            };
            this_run[usize::from(!is_ours)] = result.qps;
            if is_ours {
                sizes.0 = result.response_bytes;
            } else {
                sizes.1 = result.response_bytes;
            }
        }
        ours_qps.push(this_run[0]);
        nsd_qps.push(this_run[1]);
        ratios.push(this_run[0] / this_run[1]);
    }
    let after = answers_and_reuses(&ours);
    let answered = after.0.saturating_sub(before.0);
    let hit_rate = after.1.saturating_sub(before.1) as f64 / answered.max(1) as f64;
    drop(peers);
    let ratio = median(&ratios);
    let percent = |v: f64| format!("{:.0}%", v * 100.0);
    vec![
        Row::new(
            "7. DNS `SRV` queries/s, ours (16 nodes, EDNS)",
            format!("{}/s", thousands(median(&ours_qps))),
        )
        .spread(format!(
            "{}; answers of {:.0} bytes",
            range(&ours_qps, thousands),
            sizes.0
        )),
        Row::new(
            format!("7. same records from {}", nsd_version(&nsd)),
            format!("{}/s", thousands(median(&nsd_qps))),
        )
        .spread(format!(
            "{}; answers of {:.0} bytes; {} servers",
            range(&nsd_qps, thousands),
            sizes.1,
            server.count
        )),
        Row::new(
            "7. our answers sent from a worker's cache",
            percent(hit_rate),
        )
        .spread(format!(
            "{} of {} while measured, the seed sweeping every 2 s",
            thousands(hit_rate * answered as f64),
            thousands(answered as f64)
        )),
        Row::new("7. ours / nsd", percent(ratio))
            .spread(range(&ratios, percent))
            .target(
                "≥ 50%",
                ratio >= 0.5,
                format!("{} short", percent(0.5 - ratio)),
            ),
    ]
}

/// The DNS answers `proc` sent, and those it sent from a worker's cache, from `/metrics`.
fn answers_and_reuses(proc: &Proc) -> (u64, u64) {
    let metrics = proc.get("/metrics").body;
    let value = |line: &str| -> u64 {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let mut totals = (0, 0);
    for line in metrics.lines() {
        if line.starts_with("seedmesh_dns_queries_total{") {
            totals.0 += value(line);
        } else if line.starts_with("seedmesh_dns_answers_reused_total ") {
            totals.1 += value(line);
        }
    }
    totals
}

/// The `dns seeding on ADDR` log line's address.
fn seeding_addr(proc: &Proc) -> SocketAddr {
    proc.stderr()
        .lines()
        .find_map(|line| {
            let rest = line.split("dns seeding on ").nth(1)?;
            rest.split(' ').next()?.parse().ok()
        })
        .expect("the 'dns seeding on' log line")
}

/// Asks `server` one question over TCP (no size limit, so whole answers).
fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let mut query = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
    query
        .queries
        .push(Query::query(Name::from_ascii(name).expect("a name"), qtype));
    let packet = query.to_vec().expect("encode a query");
    let mut stream = TcpStream::connect(server).expect("connect to a DNS server");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a timeout");
    let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&packet);
    stream.write_all(&framed).expect("send a query");
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).expect("an answer");
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer).expect("an answer");
    Message::from_vec(&answer).expect("a DNS answer")
}

/// A zone file holding every record of `answers` (hickory-proto prints records in zone file
/// syntax, RFC 1035 §5).
fn zone_text(answers: &[Message]) -> String {
    let mut text = format!("$ORIGIN {ZONE}.\n");
    for message in answers {
        for record in message.answers.iter().chain(&message.additionals) {
            let _ = writeln!(text, "{record}");
        }
    }
    text
}

/// An nsd serving the zone from its own directory; stopped when dropped.
struct Nsd {
    child: Child,
    addr: SocketAddr,
    count: usize,
}

impl Nsd {
    /// nsd cannot bind port 0: a port is picked by binding and releasing it, and another is
    /// tried when someone takes it meanwhile.
    fn start(binary: &Path, dir: &Path, zone: &str) -> Result<Nsd, String> {
        fs::write(dir.join("seed.test.zone"), zone).map_err(|e| e.to_string())?;
        let count = thread::available_parallelism().map_or(1, |n| n.get());
        let mut last = String::new();
        for _ in 0..5 {
            let port = UdpSocket::bind("127.0.0.1:0")
                .and_then(|s| s.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let conf = dir.join("nsd.conf");
            fs::write(&conf, nsd_config(dir, addr, count)).map_err(|e| e.to_string())?;
            let child = Command::new(binary)
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
            let mut nsd = Nsd { child, addr, count };
            match nsd.wait_ready() {
                Ok(()) => return Ok(nsd),
                Err(e) => {
                    drop(nsd);
                    last = format!(
                        "{e}; {}",
                        fs::read_to_string(dir.join("nsd.log")).unwrap_or_default()
                    );
                }
            }
        }
        Err(format!("nsd did not start: {}", last.trim()))
    }

    /// Waits until nsd answers the SRV question with all the nodes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nsd exited with {status}"));
            }
            if TcpStream::connect(self.addr).is_ok() {
                let answer = ask_tcp(self.addr, SRV_NAME, RecordType::SRV);
                if answer.answers.len() == NODES {
                    return Ok(());
                }
                return Err(format!("nsd answered {} SRV records", answer.answers.len()));
            }
            if Instant::now() > deadline {
                return Err("nsd is not listening after 10 s".into());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nsd {
    fn drop(&mut self) {
        // SIGTERM lets the main process stop its server processes.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nsd_config(dir: &Path, addr: SocketAddr, count: usize) -> String {
    let d = dir.display();
    format!(
        "server:
  ip-address: {ip}@{port}
  port: {port}
  do-ip6: no
  server-count: {count}
  username: \"\"
  chroot: \"\"
  zonesdir: \"{d}\"
  database: \"\"
  zonelistfile: \"{d}/zone.list\"
  xfrdfile: \"{d}/xfrd.state\"
  xfrdir: \"{d}\"
  pidfile: \"{d}/nsd.pid\"
  logfile: \"{d}/nsd.log\"
  verbosity: 0
  hide-version: yes
  minimal-responses: no
  rrl-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: {ZONE}
  zonefile: \"{d}/seed.test.zone\"
",
        ip = addr.ip(),
        port = addr.port(),
    )
}

/// `NSD 4.6.1`, from `nsd -v`.
fn nsd_version(binary: &Path) -> String {
    Command::new(binary)
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned();
            let line = text.lines().next()?.to_owned();
            Some(line.replace("NSD version", "NSD"))
        })
        .unwrap_or_else(|| "nsd".into())
}

/// What one dnsperf run measured.
struct Perf {
    qps: f64,
    response_bytes: f64,
}

fn dnsperf_run(
    binary: &Path,
    addr: SocketAddr,
    queries: &Path,
    length: Duration,
) -> Result<Perf, String> {
    let seconds = format!("{:.1}", length.as_secs_f64().max(1.0));
    let output = Command::new(binary)
        .args(["-s", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .arg("-d")
        .arg(queries)
        .args(["-l", &seconds, "-e", "-c", CLIENTS, "-q", IN_FLIGHT])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run dnsperf: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |label: &str| -> Option<String> {
        text.lines()
            .find_map(|line| line.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
    };
    let qps = field("Queries per second:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no rate in dnsperf's output: {text}"))?;
    let response_bytes = field("Average packet size:")
        .and_then(|v| v.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    if let Some(codes) = field("Response codes:")
        && (!codes.starts_with("NOERROR") || codes.contains(','))
    {
        return Err(format!("dnsperf saw errors: {codes}"));
    }
    Ok(Perf {
        qps,
        response_bytes,
    })
}
