//! What the real binaries guarantee when writes go wrong around them: many writers at once,
//! `kill -9` in the middle of writes, and a disk that refuses them (SPEC §3, §4).

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const LOCALHOST: &str = "127.0.0.1";

/// One client of `concurrent_changes_are_all_answered_and_all_kept`: `requests` adds and
/// deletes on its own keep-alive connection, within its own `ports`. Returns the ports its
/// changes leave listed.
fn mixed_writer(
    addr: SocketAddr,
    seed: u64,
    ports: std::ops::Range<u16>,
    requests: usize,
) -> Vec<u16> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut conn = Conn::open(addr).expect("connect");
    let mut listed = BTreeSet::new();
    for i in 0..requests {
        let port = rng.u16(ports.clone());
        let add = rng.u8(0..10) < 6;
        let method = if add { "POST" } else { "DELETE" };
        let answer = conn
            .request(method, "/nodes/", Some(&node_body_at(LOCALHOST, port)))
            .unwrap_or_else(|e| panic!("client {seed}, request {i}: {e}"));
        assert_eq!(
            answer.status, 200,
            "client {seed}, {method} {port}: {}",
            answer.body
        );
        // The answer is the list as written with this change (and maybe others, from other
        // clients): this client's own change must show.
        assert_eq!(
            answer.body.contains(&listed_form(port)),
            add,
            "client {seed}: the answer to {method} {port} does not reflect it"
        );
        if add {
            listed.insert(port);
        } else {
            listed.remove(&port);
        }
    }
    listed.into_iter().collect()
}

#[test]
fn concurrent_changes_are_all_answered_and_all_kept() {
    const CLIENTS: u16 = 16;
    const REQUESTS: usize = 1000;
    // Each client owns 50 ports, so at most 800 nodes: under --max_nodes and --list_limit.
    const PORTS: u16 = 50;
    let dir = TempDir::new("concurrency");
    let dns = dns(dir.path(), &NO_SWEEP);
    let started = Instant::now();
    let mut expected: Vec<u16> = thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let first = 10_000 + c * PORTS;
                let addr = dns.addr;
                scope
                    .spawn(move || mixed_writer(addr, u64::from(c), first..first + PORTS, REQUESTS))
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|client| client.join().expect("a client failed"))
            .collect()
    });
    let took = started.elapsed();
    eprintln!(
        "{} requests from {CLIENTS} clients in {took:?}",
        usize::from(CLIENTS) * REQUESTS
    );

    let in_memory = localhost_ports(&dns.nodes());
    let mut listed = in_memory.clone();
    listed.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        listed, expected,
        "the list is exactly what the requests imply"
    );
    assert_eq!(
        localhost_ports(&dns.nodes_on_disk()),
        in_memory,
        "the file holds the same list, in the same order"
    );
}

/// What the clients of `kill_9_during_writes_never_loses_an_acknowledged_change` were told,
/// port by port. Every client owns its ports, so the last answer about a port is its state.
#[derive(Default)]
struct Acknowledged {
    /// Port → listed, as of the last `200` about it.
    state: HashMap<u16, bool>,
    /// Ports whose last request got no answer: either state is right.
    unknown: HashSet<u16>,
}

impl Acknowledged {
    /// Checks a list against what was acknowledged: nothing acknowledged is lost, nothing
    /// appears that nobody asked for.
    fn check(&self, listed: &[u16], what: &str) {
        let set: HashSet<u16> = listed.iter().copied().collect();
        assert_eq!(set.len(), listed.len(), "{what}: duplicates in {listed:?}");
        for (port, &present) in &self.state {
            if !self.unknown.contains(port) {
                assert_eq!(
                    set.contains(port),
                    present,
                    "{what}: port {port} was acknowledged as {}",
                    if present { "added" } else { "deleted" }
                );
            }
        }
        for port in &set {
            assert!(
                self.state.contains_key(port) || self.unknown.contains(port),
                "{what}: port {port} is listed but was never added"
            );
        }
    }

    /// After a restart, the ports left unknown take the state the file gave them.
    fn settle(&mut self, listed: &[u16]) {
        for port in self.unknown.drain() {
            self.state.insert(port, listed.contains(&port));
        }
    }

    /// The listed ports of client `w` (ports `w * 10_000 + …`).
    fn listed_of(&self, w: u16) -> Vec<u16> {
        let mut mine: Vec<u16> = self
            .state
            .iter()
            .filter(|&(&port, &present)| present && port / 10_000 == w)
            .map(|(&port, _)| port)
            .collect();
        mine.sort_unstable();
        mine
    }
}

/// What one storm client did until the server died under it.
struct Storm {
    /// (port, listed) for every change answered `200`, in order.
    answered: Vec<(u16, bool)>,
    /// The port of the request that got no answer.
    unanswered: Option<u16>,
    next_port: u16,
}

/// Adds fresh ports and deletes listed ones on a keep-alive connection until the server
/// stops answering.
fn storm_writer(
    addr: SocketAddr,
    seed: u64,
    mut listed: Vec<u16>,
    mut next_port: u16,
    answers: &AtomicUsize,
) -> Storm {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut answered = Vec::new();
    let Ok(mut conn) = Conn::open(addr) else {
        return Storm {
            answered,
            unanswered: None,
            next_port,
        };
    };
    loop {
        let (port, add) = if listed.is_empty() || rng.u8(0..10) < 7 {
            next_port += 1;
            (next_port - 1, true)
        } else {
            (listed.swap_remove(rng.usize(0..listed.len())), false)
        };
        let method = if add { "POST" } else { "DELETE" };
        match conn.request(method, "/nodes/", Some(&node_body_at(LOCALHOST, port))) {
            Ok(answer) => {
                assert_eq!(answer.status, 200, "{method} {port}: {}", answer.body);
                answered.push((port, add));
                if add {
                    listed.push(port);
                }
                answers.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                return Storm {
                    answered,
                    unanswered: Some(port),
                    next_port,
                };
            }
        }
    }
}

#[test]
fn kill_9_during_writes_never_loses_an_acknowledged_change() {
    const ROUNDS: usize = 6;
    const WRITERS: u16 = 4;
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = TempDir::new("kill-9");
    let mut acknowledged = Acknowledged::default();
    let mut next_ports: Vec<u16> = (0..WRITERS).map(|w| w * 10_000 + 1).collect();
    for round in 0..ROUNDS {
        let what = format!("seed {seed}, round {round}");
        let mut dns = dns(dir.path(), &NO_SWEEP_WHOLE_LIST);
        let listed = localhost_ports(&dns.nodes());
        acknowledged.check(&listed, &format!("{what}, after restart"));
        acknowledged.settle(&listed);

        // Kill after a random number of answered changes: a random moment of the storm.
        let kill_after = rng.usize(1..300);
        let answers = AtomicUsize::new(0);
        let storms: Vec<Storm> = thread::scope(|scope| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (addr, answers) = (dns.addr, &answers);
                    let listed = acknowledged.listed_of(w);
                    let next = next_ports[usize::from(w)];
                    let seed = rng.u64(..);
                    scope.spawn(move || storm_writer(addr, seed, listed, next, answers))
                })
                .collect();
            wait_until(
                Duration::from_secs(30),
                "enough changes are answered",
                || answers.load(Ordering::SeqCst) >= kill_after,
            );
            dns.kill();
            writers
                .into_iter()
                .map(|w| w.join().expect("writer"))
                .collect()
        });
        for (w, storm) in storms.into_iter().enumerate() {
            next_ports[w] = storm.next_port;
            for (port, listed) in storm.answered {
                acknowledged.state.insert(port, listed);
                acknowledged.unknown.remove(&port);
            }
            acknowledged.unknown.extend(storm.unanswered);
        }
        // Read straight after the kill: the file is a complete array holding every change
        // that was answered 200.
        acknowledged.check(
            &localhost_ports(&dns.nodes_on_disk()),
            &format!("{what}, file after kill -9 at {kill_after}+ answers"),
        );
    }
    let dns = dns(dir.path(), &NO_SWEEP_WHOLE_LIST);
    let listed = localhost_ports(&dns.nodes());
    acknowledged.check(&listed, &format!("seed {seed}, final restart"));
    assert_eq!(localhost_ports(&dns.nodes_on_disk()), listed);
    assert!(
        acknowledged.state.values().filter(|&&p| p).count() > ROUNDS,
        "the storms did write"
    );
}

#[test]
fn a_failed_write_is_500_and_leaves_the_list() {
    let dir = TempDir::new("disk-failure");
    let dns = dns(dir.path(), &NO_SWEEP);
    assert_eq!(dns.post("/nodes/", &node_body_at(LOCALHOST, 1)).status, 200);
    let file_before = fs::read(dns.nodes_file()).unwrap();
    let temp = dir.join("nodes.json.tmp");
    for disk_full in [true, false] {
        // /dev/full as the temporary file fails the write itself with ENOSPC, as a full disk
        // does; a directory in its place fails the open. (Root ignores permissions; not these.)
        let (what, reason) = if disk_full {
            ("disk full", "No space left on device")
        } else {
            fs::create_dir(&temp).unwrap();
            ("unwritable", "Is a directory")
        };
        for (method, path, port) in [
            ("POST", "/", 2),
            ("POST", "/nodes/", 2),
            ("DELETE", "/nodes/", 1),
        ] {
            if disk_full {
                std::os::unix::fs::symlink("/dev/full", &temp).unwrap();
            }
            let answer = request(
                method,
                dns.addr,
                path,
                Some(&node_body_at(LOCALHOST, port)),
                &[],
            );
            assert_eq!(
                answer.status, 500,
                "{what}: {method} {path}: {}",
                answer.body
            );
            let error = answer.error();
            assert!(
                error.contains("could not save")
                    && error.contains(reason)
                    && error.contains("nothing was changed"),
                "{what}: {error}"
            );
            if disk_full {
                // The failed write took its temporary file away with it.
                assert!(fs::symlink_metadata(&temp).is_err(), "{what}: temp left");
            }
        }
        assert_eq!(
            localhost_ports(&dns.nodes()),
            vec![1],
            "{what}: the list is as before"
        );
        assert_eq!(
            fs::read(dns.nodes_file()).unwrap(),
            file_before,
            "{what}: the file too"
        );
        assert_eq!(dns.get("/").status, 200, "{what}: still serving");
        assert_eq!(
            dns.post("/", &node_body_at(LOCALHOST, 1)).status,
            200,
            "{what}: a change that writes nothing still succeeds"
        );

        // Once the obstacle is gone, writes succeed again.
        if !disk_full {
            fs::remove_dir(&temp).unwrap();
        }
        let added = dns.post("/nodes/", &node_body_at(LOCALHOST, 2));
        assert_eq!(added.status, 200, "{what}: {}", added.body);
        assert_eq!(localhost_ports(&nodes_of(&added.json())), vec![1, 2]);
        assert_eq!(
            localhost_ports(&dns.nodes_on_disk()),
            vec![1, 2],
            "{what}: recovered"
        );
        assert_eq!(
            dns.delete("/nodes/", &node_body_at(LOCALHOST, 2)).status,
            200
        );
    }
    dns.wait_log("could not save");
}
