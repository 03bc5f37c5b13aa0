//! Figure 5: memory (resident set, from /proc/PID/status), start-up time to `listening on`,
//! and the size of the binaries.

use std::thread;
use std::time::{Duration, Instant};

use crate::Config;
use crate::load::{Connection, get_request};
use crate::procfs;
use crate::report::{Row, median, range};
use crate::support::{self, Proc, TempDir};
use crate::throughput::add_nodes;

const MIB: f64 = 1024.0 * 1024.0;

fn rss(proc: &Proc) -> f64 {
    procfs::rss(proc.pid())
}

fn mib(bytes: f64) -> String {
    format!("{:.2} MiB", bytes / MIB)
}

pub fn footprint(config: &Config) -> Vec<Row> {
    let mut rows = Vec::new();

    // Idle nodes in a small network: a seed and three nodes at -u 1, after a few rounds.
    let dir = TempDir::new("bench-idle");
    let dns = support::dns(&dir.join("dns"), &["-u", "1"]);
    let seed = dns.addr.to_string();
    let nodes: Vec<Proc> = (0..3)
        .map(|i| support::node(&dir.join(&format!("n{i}")), &["-u", "1", "--dns", &seed]))
        .collect();
    thread::sleep(Duration::from_secs(4));
    let idle: Vec<f64> = nodes.iter().map(rss).collect();
    drop((nodes, dns));
    rows.push(
        Row::new(
            "5. RSS of an idle `node` (3 nodes + seed, after 4 rounds at `-u 1`)",
            mib(median(&idle)),
        )
        .spread(range(&idle, mib))
        .at_most("≤ 4 MiB", median(&idle), 4.0 * MIB, mib),
    );

    // A seed holding 10,000 nodes, added over loopback, that has then served its list.
    let mut full = Vec::new();
    for _ in 0..config.slow_runs {
        let dir = TempDir::new("bench-rss");
        let dns = support::dns(dir.path(), &["-u", "86400"]);
        add_nodes(dns.addr, "/nodes/", 10_000);
        let mut connection = Connection::open(dns.addr).unwrap();
        for _ in 0..100 {
            let answer = connection.exchange(&get_request("/nodes/")).unwrap();
            assert_eq!(answer.status, 200);
        }
        assert_eq!(dns.get("/nodes/10000/").status, 404);
        assert_eq!(dns.get("/nodes/9999/").status, 200);
        full.push(rss(&dns));
    }
    rows.push(
        Row::new(
            "5. RSS of a `dns` holding 10,000 nodes (after adding them and 100 `GET /nodes/`)",
            mib(median(&full)),
        )
        .spread(range(&full, mib))
        .at_most("≤ 16 MiB", median(&full), 16.0 * MIB, mib),
    );

    // Start-up: from spawn to the `listening on` line, empty state directory.
    let dead_seed = support::refused_addr("127.0.0.1").to_string();
    for (name, bin, extra) in [
        ("dns", env!("CARGO_BIN_EXE_dns"), vec![]),
        (
            "node",
            env!("CARGO_BIN_EXE_node"),
            vec!["--dns", &dead_seed],
        ),
    ] {
        let mut times = Vec::new();
        for _ in 0..config.runs * 2 + 1 {
            let dir = TempDir::new("bench-start");
            let mut args = vec!["-u", "86400"];
            args.extend(&extra);
            let started = Instant::now();
            let proc = support::spawn(bin, dir.path(), &args);
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            drop(proc);
        }
        let ms = |v: f64| format!("{v:.1} ms");
        rows.push(
            Row::new(
                format!("5. start-up of `{name}` to `listening on`"),
                ms(median(&times)),
            )
            .spread(range(&times, ms))
            .at_most("≤ 20 ms", median(&times), 20.0, ms),
        );
    }

    for (name, bin) in [
        ("dns", env!("CARGO_BIN_EXE_dns")),
        ("node", env!("CARGO_BIN_EXE_node")),
    ] {
        let size = std::fs::metadata(bin).map_or(f64::NAN, |m| m.len() as f64);
        rows.push(
            Row::new(format!("5. `{name}` binary, stripped"), mib(size)).at_most(
                "≤ 2 MiB",
                size,
                2.0 * MIB,
                mib,
            ),
        );
    }
    rows
}
