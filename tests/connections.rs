//! Connections (SPEC §9, §10): idle and half-sent requests neither block others nor outlive
//! the 10 s timeout, and however clients hold, flood or churn connections, threads stay
//! within `--max_conns`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const LOCALHOST: &str = "127.0.0.1";

#[test]
fn idle_and_half_sent_connections_neither_delay_get_nor_outlive_10_s() {
    let dir = TempDir::new("idle");
    let dns = dns(dir.path(), &[]);
    let baseline = dns.threads_at_rest();
    // From ten addresses, 50 each: one address may open only --max_conns_per_ip (64).
    let mut idle: Vec<TcpStream> = (0..500)
        .map(|i| connect_from(&format!("127.0.0.{}", 2 + i % 10), dns.addr))
        .collect();
    let half_sent = [
        // A head without its end.
        "GET / HTTP/1.1\r\nHost: seed\r\n",
        // A body cut short.
        "POST /nodes/ HTTP/1.1\r\nContent-Length: 44\r\n\r\n{\"ip_address\": ",
    ];
    // Each with the moment it was sent (a connect can wait a second in a full backlog).
    let mut stalled: Vec<(TcpStream, Instant)> = half_sent
        .iter()
        .map(|part| {
            let mut stream = connect(dns.addr);
            stream.write_all(part.as_bytes()).unwrap();
            (stream, Instant::now())
        })
        .collect();
    wait_until(
        Duration::from_secs(10),
        "each connection has its thread",
        || dns.threads() >= baseline + idle.len() + stalled.len(),
    );

    let slowest = (0..5)
        .map(|_| {
            let started = Instant::now();
            assert_eq!(dns.get("/").status, 200);
            started.elapsed()
        })
        .max()
        .unwrap();
    eprintln!("GET / with 502 idle or stalled connections open: slowest of 5 took {slowest:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "GET / took {slowest:?}"
    );

    // About 10 s after their last byte, the stalled requests are answered 408 and closed.
    for ((stream, sent), part) in stalled.iter_mut().zip(half_sent) {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let after = sent.elapsed();
        assert_eq!(first_status(&raw), Some(408), "{part:?}: {}", lossy(&raw));
        assert!(
            after > Duration::from_millis(9500) && after < Duration::from_secs(14),
            "{part:?} closed after {after:?}"
        );
        eprintln!("{part:?} answered 408 and closed after {after:?}");
    }
    // The idle ones are closed without a word.
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            stream.read(&mut [0; 16]).unwrap(),
            0,
            "closed, nothing sent"
        );
    }
    wait_until(Duration::from_secs(5), "their threads end", || {
        dns.threads() <= baseline
    });
}

/// Opens a connection that holds its server thread in one of the ways a client can.
fn holding_connection(addr: SocketAddr, how: usize) -> TcpStream {
    let mut stream = connect(addr);
    let sent: Vec<u8> = match how % 4 {
        // Connects and sends nothing.
        0 => Vec::new(),
        // Sends half a head.
        1 => b"GET /nodes/ HTTP/1.1\r\nHost: se".to_vec(),
        // Sends a head and half its body.
        2 => b"POST /nodes/ HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"ip".to_vec(),
        // Sends many requests and never reads the answers (once they are all answered, the
        // connection is kept alive and idle).
        _ => b"GET /nodes/?limit=5 HTTP/1.1\r\n\r\n".repeat(200),
    };
    stream.write_all(&sent).unwrap();
    stream
}

/// Clears a flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[test]
fn threads_stay_bounded_by_max_conns_whatever_clients_do() {
    const MAX_CONNS: usize = 50;
    // A connection thread counts against --max_conns until it has been joined; the kernel may
    // still list a joined thread for the moment it takes to finish removing it.
    const EXITING: usize = 4;
    let dir = TempDir::new("threads");
    let dns = dns(
        dir.path(),
        &["--max_conns", &MAX_CONNS.to_string(), "--workers", "4"],
    );
    // main, accept, committer, update and the 4 workers.
    let baseline = dns.threads_at_rest();
    let bound = baseline + MAX_CONNS + EXITING;
    let peak = AtomicUsize::new(baseline);
    let sampling = AtomicBool::new(true);
    thread::scope(|scope| {
        scope.spawn(|| {
            while sampling.load(Ordering::SeqCst) {
                peak.fetch_max(dns.threads(), Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
            }
        });
        // Stops the sampling however this scope ends, a failed assertion included.
        let _stop = StopOnDrop(&sampling);

        // 1. Fill every connection slot, with clients that each hold theirs differently.
        let held: Vec<TcpStream> = (0..MAX_CONNS)
            .map(|i| holding_connection(dns.addr, i))
            .collect();
        wait_until(Duration::from_secs(10), "every slot is taken", || {
            dns.threads() >= baseline + MAX_CONNS
        });

        // 2. Beyond them, 150 more connections are each answered at once: 503, or, when one
        //    takes the place of a kept-alive connection idle between requests (those that
        //    sent 200 requests are, once answered) or of a newcomer since gone, 200.
        let mut served = 0;
        for i in 0..150 {
            let mut stream = connect(dns.addr);
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).unwrap();
            match first_status(&raw) {
                Some(200) => served += 1,
                Some(503) => assert!(lossy(&raw).contains("too many open connections")),
                _ => panic!("connection {i}: {}", lossy(&raw)),
            }
        }
        eprintln!("{served} of 150 newcomers served in the place of an idle connection");
        assert!(dns.threads() <= bound, "{} threads", dns.threads());

        // 3. Once the slots are given back, bursts of clients are served, each getting an
        //    answer or a 503, and the threads still stay within the bound.
        drop(held);
        wait_until(Duration::from_secs(10), "the slots are given back", || {
            dns.threads() <= baseline
        });
        let answered = AtomicUsize::new(0);
        thread::scope(|burst| {
            for c in 0..16 {
                let (addr, answered) = (dns.addr, &answered);
                burst.spawn(move || {
                    for i in 0..25 {
                        let body = node_body_at(LOCALHOST, 1000 + c * 100 + i);
                        let resp = request("POST", addr, "/nodes/", Some(&body), &[]);
                        assert!([200, 503].contains(&resp.status), "{resp:?}");
                        if resp.status == 200 {
                            answered.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
            for i in 0..(2 * MAX_CONNS) {
                holding_connection(dns.addr, i);
            }
        });
        assert!(answered.load(Ordering::SeqCst) > 0, "the burst was served");
    });
    let peak = peak.load(Ordering::SeqCst);
    eprintln!("threads: {baseline} at rest, peak {peak}, bound {bound} (--max_conns {MAX_CONNS})");
    assert!(peak <= bound, "peak of {peak} threads, bound {bound}");
    assert!(peak >= baseline + MAX_CONNS, "the slots were really used");
    wait_until(Duration::from_secs(15), "serving again", || {
        dns.get("/").status == 200
    });
}
