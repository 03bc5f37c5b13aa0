//! Stopping (SPEC §9): SIGTERM and SIGINT while requests are in flight, while a disk write is
//! under way, while the update thread is stuck on black-holed peers or asleep; every answered
//! change kept, exit 0 within 2 s, and the directory free at once.

mod support;

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use support::*;

const LOCALHOST: &str = "127.0.0.1";

/// What a writer of `a_stop_signal_during_a_write_storm_loses_no_answered_change` saw.
#[derive(Default)]
struct Outcomes {
    answered: Vec<u16>,
    /// Answered 503 by the stopping server: not applied.
    refused: Vec<u16>,
    /// The connection ended with the request unanswered.
    unanswered: Vec<u16>,
}

/// Adds fresh ports, reconnecting when the server closes the connection, until it can no
/// longer connect.
fn writer_until_refused(addr: SocketAddr, first_port: u16, answers: &AtomicUsize) -> Outcomes {
    let mut outcomes = Outcomes::default();
    let mut port = first_port;
    while let Ok(mut conn) = Conn::open(addr) {
        loop {
            port += 1;
            match conn.request("POST", "/nodes/", Some(&node_body_at(LOCALHOST, port))) {
                Ok(answer) if answer.status == 200 => {
                    outcomes.answered.push(port);
                    answers.fetch_add(1, Ordering::SeqCst);
                }
                Ok(answer) => {
                    assert_eq!(answer.status, 503, "POST {port}: {}", answer.body);
                    assert!(answer.error().contains("shutting down"), "{}", answer.body);
                    outcomes.refused.push(port);
                    break;
                }
                Err(_) => {
                    outcomes.unanswered.push(port);
                    break;
                }
            }
        }
    }
    outcomes
}

/// Asserts that a stop signal made the process exit with status 0 within `bound`.
fn assert_clean_exit(proc: &Proc, what: &str, stopped: (ExitStatus, Duration), bound: Duration) {
    let (status, took) = stopped;
    assert_eq!(status.code(), Some(0), "{what}: {}", proc.stderr());
    assert!(took < bound, "{what}: exit took {took:?}");
    eprintln!("{what}: exit 0 in {took:?}");
}

#[test]
fn a_stop_signal_during_a_write_storm_loses_no_answered_change() {
    for signal in ["TERM", "INT"] {
        let dir = TempDir::new("stop-storm");
        let mut dns = dns(dir.path(), &NO_SWEEP_WHOLE_LIST);
        let answers = AtomicUsize::new(0);
        let (outcomes, stopped): (Vec<Outcomes>, _) = thread::scope(|scope| {
            let writers: Vec<_> = (0..4u16)
                .map(|w| {
                    let (addr, answers) = (dns.addr, &answers);
                    scope.spawn(move || writer_until_refused(addr, w * 10_000, answers))
                })
                .collect();
            wait_until(Duration::from_secs(10), "the storm is under way", || {
                answers.load(Ordering::SeqCst) >= 200
            });
            let stopped = dns.signal(signal, Duration::from_secs(10));
            let outcomes = writers
                .into_iter()
                .map(|w| w.join().expect("writer"))
                .collect();
            (outcomes, stopped)
        });
        let what = format!("SIG{signal} during a write storm");
        assert_clean_exit(&dns, &what, stopped, Duration::from_secs(2));

        let on_disk: HashSet<u16> = localhost_ports(&dns.nodes_on_disk()).into_iter().collect();
        for (w, outcome) in outcomes.iter().enumerate() {
            for port in &outcome.answered {
                assert!(
                    on_disk.contains(port),
                    "SIG{signal}: writer {w}: {port} was answered 200 but is not on disk"
                );
            }
            for port in &outcome.refused {
                assert!(
                    !on_disk.contains(port),
                    "SIG{signal}: writer {w}: {port} was refused but is on disk"
                );
            }
        }
        let asked: HashSet<u16> = outcomes
            .iter()
            .flat_map(|o| o.answered.iter().chain(&o.unanswered))
            .copied()
            .collect();
        assert!(
            on_disk.is_subset(&asked),
            "SIG{signal}: nodes nobody asked for"
        );

        // The lock went with the process: a new one starts at once on the same directory and
        // finds every answered change.
        let again = spawn(env!("CARGO_BIN_EXE_dns"), dir.path(), &NO_SWEEP_WHOLE_LIST);
        let listed: HashSet<u16> = localhost_ports(&again.nodes()).into_iter().collect();
        assert_eq!(listed, on_disk, "SIG{signal}: restart");
    }
}

#[test]
fn a_stop_signal_ends_a_round_stuck_on_black_holes_within_2_s() {
    let binaries = [
        (env!("CARGO_BIN_EXE_dns"), "TERM"),
        (env!("CARGO_BIN_EXE_node"), "INT"),
    ];
    for (bin, signal) in binaries {
        let holes: Vec<BlackHole> = (0..3).map(|_| BlackHole::new(LOCALHOST)).collect();
        let addrs: Vec<SocketAddr> = holes.iter().map(|h| h.addr).collect();
        let dir = TempDir::new("stop-mid-round");
        fs::write(dir.join("nodes.json"), nodes_file_of(&addrs)).unwrap();
        let seed = holes[0].addr.to_string();
        let mut args = vec!["-u", "3600", "--timeout", "60"];
        if bin.ends_with("node") {
            args.extend(["--dns", &seed]);
        }
        let mut proc = spawn(bin, dir.path(), &args);
        wait_until(
            Duration::from_secs(10),
            "the round is checking the black holes",
            || {
                proc.thread_names()
                    .iter()
                    .filter(|n| *n == "peer-check")
                    .count()
                    >= 3
            },
        );

        let stopped = proc.signal(signal, Duration::from_secs(10));
        let what = format!("{bin} SIG{signal} mid-round");
        assert_clean_exit(&proc, &what, stopped, Duration::from_secs(2));
        let log = proc.wait_log("leaving the update round in progress");
        assert!(
            !log.contains("update thread stopped"),
            "the round was still waiting: {log}"
        );

        // Unlocked at once, with the list intact: no check failed, so nothing was removed.
        let again = spawn(bin, dir.path(), &args);
        let expected: Vec<(String, u16)> = addrs
            .iter()
            .map(|a| (a.ip().to_string(), a.port()))
            .collect();
        assert_eq!(again.nodes(), expected, "{bin}");
    }
}

#[test]
fn a_stop_signal_wakes_the_update_thread_from_its_sleep() {
    let dead_seed = refused_addr(LOCALHOST).to_string();
    let binaries = [
        (env!("CARGO_BIN_EXE_dns"), "INT"),
        (env!("CARGO_BIN_EXE_node"), "TERM"),
    ];
    for (bin, signal) in binaries {
        let dir = TempDir::new("stop-mid-sleep");
        let mut args = vec!["-u", "3600"];
        if bin.ends_with("node") {
            args.extend(["--dns", &dead_seed]);
        }
        let mut proc = spawn(bin, dir.path(), &args);
        proc.wait_log("round:");

        let stopped = proc.signal(signal, Duration::from_secs(10));
        let what = format!("{bin} SIG{signal} mid-sleep");
        assert_clean_exit(&proc, &what, stopped, Duration::from_secs(1));
        // The sleep itself was cut short: the update thread ended before the process did,
        // rather than being left behind like a thread stuck in a round.
        let log = proc.stderr();
        let ended = log
            .find("update thread stopped")
            .expect("the update thread ended");
        let stopped = log
            .rfind("INFO  stopped\n")
            .expect("the process logged its stop");
        assert!(ended < stopped, "{log}");
        assert!(!log.contains("leaving the update round"), "{log}");
        let again = spawn(bin, dir.path(), &args);
        assert_eq!(
            again.get("/").status,
            200,
            "{bin}: the directory is free again"
        );
    }
}

#[test]
fn a_stop_refuses_new_connections_and_answers_the_change_being_written() {
    let dir = TempDir::new("stop-in-flight");
    let mut dns = dns(dir.path(), &NO_SWEEP);
    // A FIFO in place of the temporary file holds the committer in open() until someone reads
    // it: a disk write that stays in progress for as long as the test wants.
    let fifo = dir.join("nodes.json.tmp");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let addr = dns.addr;
    let client = thread::spawn(move || {
        request(
            "POST",
            addr,
            "/nodes/",
            Some(&node_body_at(LOCALHOST, 7)),
            &[],
        )
    });
    wait_until(Duration::from_secs(10), "the write is under way", || {
        dns.thread_waits()
            .iter()
            .any(|(name, wchan)| name == "committer" && wchan == "wait_for_partner")
    });

    dns.send_signal("TERM");
    wait_until(
        Duration::from_secs(5),
        "new connections are refused",
        || std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
    );
    assert!(
        dns.is_running(),
        "the process waits for the change in flight"
    );
    assert!(!client.is_finished(), "nothing answered yet");
    dns.wait_log("SIGTERM: stopping");

    // Let the write go on: it reaches the disk layer (a FIFO then refuses fsync, so the change
    // is not saved), and the client has its answer before the process exits.
    let written = fs::read_to_string(&fifo).unwrap();
    assert!(written.contains(&listed_form(7)), "{written}");
    let answer = client.join().expect("client");
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert!(answer.error().contains("could not save"), "{}", answer.body);
    let status = dns.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", dns.stderr());
    assert!(
        !fifo.exists(),
        "the failed write took its temporary file away"
    );
    assert!(
        !dns.nodes_file().exists(),
        "the unsaved change is not on disk"
    );
}
