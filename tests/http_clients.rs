//! What real HTTP clients meet in the connection layer (issue 14), against the real `dns`:
//! a client still sending a body too large reads the 413 (RFC 9112 §9.6), an HTTP/1.0
//! keep-alive client is told the connection persists (§9.3), every answer the connection
//! layer gives on its own carries `Date` and the API's error body and is counted in
//! `/metrics`, and a body sent without framing is named as such.

mod support;
mod wire;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use support::*;
use wire::*;

/// Sends `POST /nodes/` with a `body.len()`-byte body from one thread while reading the
/// answer on another, as Node.js's `http` and `fetch` do, and like them fails when a write
/// fails before the whole answer has been read (Node reports `EPIPE`, wget "Giving up"): a
/// server that resets the connection right after its 413 loses such clients. Closes the
/// connection once the answer is read, the upload perhaps still going.
fn post_while_sending(addr: SocketAddr, body: &Arc<Vec<u8>>) -> Result<Answer, String> {
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let setup = stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(5))))
        .and_then(|()| stream.try_clone());
    let mut writer = setup.map_err(|e| e.to_string())?;
    let write_failed = Arc::new(AtomicBool::new(false));
    let sender = {
        let (body, write_failed) = (Arc::clone(body), Arc::clone(&write_failed));
        thread::spawn(move || {
            let head = format!(
                "POST /nodes/ HTTP/1.1\r\nHost: seed\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let sent = writer
                .write_all(head.as_bytes())
                .and_then(|()| writer.write_all(&body));
            write_failed.store(sent.is_err(), Ordering::SeqCst);
        })
    };
    let mut raw = Vec::new();
    let mut chunk = [0u8; 4096];
    let outcome = loop {
        if let Some(answer) = answers(&raw).into_iter().next().filter(complete) {
            break if write_failed.load(Ordering::SeqCst) {
                Err(format!(
                    "a write failed before the answer was read: {answer:?}"
                ))
            } else {
                Ok(answer)
            };
        }
        match (&stream).read(&mut chunk) {
            Ok(0) => break Err(format!("closed without a whole answer: {}", lossy(&raw))),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => break Err(format!("{e} before a whole answer: {}", lossy(&raw))),
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
    outcome
}

/// Whether the answer's body is all there (`answers` cuts it short otherwise).
fn complete(answer: &Answer) -> bool {
    answer
        .header("Content-Length")
        .and_then(|l| l.parse::<usize>().ok())
        .is_some_and(|l| l == answer.body.len())
}

#[test]
fn a_client_still_sending_10_mb_reads_the_413_every_time_and_memory_stays_flat() {
    const TRIES: usize = 50;
    let dir = TempDir::new("413-10mb");
    let dns = dns(dir.path(), &NO_SWEEP);
    let baseline = dns.threads_at_rest();
    let body = Arc::new(vec![b' '; 10_000_000]);
    let rss_before = dns.rss_kib();
    let mut rss_peak = rss_before;
    let started = Instant::now();
    for i in 0..TRIES {
        let answer = post_while_sending(dns.addr, &body).unwrap_or_else(|e| panic!("try {i}: {e}"));
        assert_eq!(answer.status, 413, "try {i}: {answer:?}");
        assert!(answer.error().contains("64 KiB"), "{}", answer.text());
        assert_eq!(answer.header("Connection"), Some("close"));
        answer.check_common().unwrap();
        rss_peak = rss_peak.max(dns.rss_kib());
    }
    let took = started.elapsed();
    eprintln!(
        "{TRIES} uploads of 10 MB answered 413 in {took:?}; RSS {rss_before} KiB before, {rss_peak} KiB at most"
    );
    assert!(
        took < Duration::from_secs(30),
        "{TRIES} tries took {took:?}"
    );
    // One body kept would be 10 MB: the server never stores one.
    let grown = rss_peak.saturating_sub(rss_before);
    assert!(grown < 8 * 1024, "resident memory grew by {grown} KiB");
    // Connections that lingered are all closed within the linger bound.
    wait_until(Duration::from_secs(5), "lingering connections end", || {
        dns.threads() <= baseline
    });
    assert_eq!(dns.get("/").status, 200);
    assert!(dns.nodes().is_empty());
}

/// Reads one answer off a kept connection, within `limit`.
fn answer_within(reader: &mut BufReader<TcpStream>, limit: Duration) -> Resp {
    reader.get_ref().set_read_timeout(Some(limit)).unwrap();
    read_response(reader).expect("an answer in time")
}

#[test]
fn an_http_1_0_keep_alive_client_gets_three_answers_on_one_connection_without_waiting() {
    let dir = TempDir::new("http10");
    let dns = dns(dir.path(), &NO_SWEEP);
    let started = Instant::now();
    let stream = connect(dns.addr);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    for path in ["/", "/nodes/", "/status"] {
        let request = format!("GET {path} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        writer.write_all(request.as_bytes()).unwrap();
        let answer = answer_within(&mut reader, Duration::from_secs(2));
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        assert_eq!(
            answer.header("Connection"),
            Some("keep-alive"),
            "{answer:?}"
        );
    }
    // Without keep-alive, an HTTP/1.0 connection is told it ends, and ends at once.
    let mut stream = connect(dns.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("closed at once");
    let answer = parse_response(&raw).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("Connection"), Some("close"));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

/// A raw request that the connection layer (or, for 413, the API) refuses, and the status.
const REFUSED: &[(&str, u16)] = &[
    ("GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n", 400),
    (
        "POST /nodes/ HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n",
        413,
    ),
    ("GET / HTTP/1.1\r\nExpect: something\r\n\r\n", 417),
    (
        "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        501,
    ),
    ("GET / HTTP/2.0\r\n\r\n", 505),
];

#[test]
fn every_connection_layer_answer_carries_date_and_the_api_error_body_and_is_counted() {
    let dir = TempDir::new("refusals");
    let dns = dns(dir.path(), &NO_SWEEP);
    let mut cases: Vec<(String, u16)> = REFUSED.iter().map(|(r, s)| (r.to_string(), *s)).collect();
    cases.push((format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(17_000)), 414));
    cases.push((
        format!("GET /x HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(101)),
        431,
    ));
    for (request, status) in &cases {
        let raw = exchange(dns.addr, request.as_bytes()).unwrap();
        let got = answers(&raw);
        assert_eq!(got.len(), 1, "{request:.60?}: {}", lossy(&raw));
        assert_eq!(got[0].status, *status, "{request:.60?}: {}", lossy(&raw));
        got[0]
            .check_common()
            .unwrap_or_else(|e| panic!("{request:.60?}: {e}"));
        assert_eq!(got[0].header("Connection"), Some("close"));
    }
    // The API's own errors and answers look the same.
    let raw = exchange(dns.addr, b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    answers(&raw)[0].check_common().unwrap();
    let raw = exchange(dns.addr, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    answers(&raw)[0].check_common().unwrap();

    // Each refusal is counted: under its route and method when its request line was read,
    // under `other` when not.
    let metrics = dns.get("/metrics").body;
    for sample in [
        r#"route="/",method="GET",status="400""#,
        r#"route="/nodes/",method="POST",status="413""#,
        r#"route="/",method="GET",status="417""#,
        r#"route="/",method="POST",status="501""#,
        r#"route="/",method="GET",status="505""#,
        r#"route="other",method="other",status="414""#,
        r#"route="other",method="GET",status="431""#,
    ] {
        let line = format!("seedmesh_http_requests_total{{{sample}}} 1");
        assert!(metrics.contains(&line), "no {line:?} in:\n{metrics}");
    }
}

#[test]
fn a_connection_over_max_conns_gets_a_503_with_date_and_the_api_error_body() {
    let dir = TempDir::new("503");
    let dns = dns(dir.path(), &["--max_conns", "1"]);
    let held = connect(dns.addr);
    wait_until(
        Duration::from_secs(5),
        "the held connection is served",
        || dns.thread_names().iter().any(|n| n == "http-conn"),
    );
    let raw = exchange(dns.addr, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let got = answers(&raw);
    assert_eq!(got.len(), 1, "{}", lossy(&raw));
    assert_eq!(got[0].status, 503);
    got[0].check_common().unwrap();
    assert!(got[0].error().contains("too many open connections"));
    // More refusals make no more lines: one per interval, with the count, for the operator.
    for _ in 0..5 {
        let raw = exchange(dns.addr, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(answers(&raw)[0].status, 503);
    }
    // The warning is written after the answer is sent: wait for it, then count.
    let log = dns.wait_log("refused with 503: --max_conns");
    assert_eq!(
        log.matches("refused with 503: --max_conns").count(),
        1,
        "{log}"
    );
    drop(held);
    wait_until(Duration::from_secs(5), "the slot is free again", || {
        !dns.thread_names().iter().any(|n| n == "http-conn")
    });
    let metrics = dns.get("/metrics").body;
    let line = r#"seedmesh_http_requests_total{route="other",method="other",status="503"} 6"#;
    assert!(metrics.contains(line), "no {line:?} in:\n{metrics}");
    assert!(
        metrics.contains("\nseedmesh_connections_refused_total{bound=\"max_conns\"} 6\n"),
        "{metrics}"
    );
}

#[test]
fn a_request_not_sent_whole_in_10_s_gets_a_408_with_date_and_the_api_error_body() {
    let dir = TempDir::new("408");
    let dns = dns(dir.path(), &NO_SWEEP);
    let mut stream = connect(dns.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: seed\r\n")
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let got = answers(&raw);
    assert_eq!(got.len(), 1, "{}", lossy(&raw));
    assert_eq!(got[0].status, 408);
    got[0].check_common().unwrap();
}

#[test]
fn an_unframed_body_is_named_as_such_and_changes_nothing() {
    let dir = TempDir::new("unframed");
    let dns = dns(dir.path(), &NO_SWEEP);
    let node = node_body_at("127.0.0.1", 1);
    assert_eq!(dns.post("/nodes/", &node).status, 200);
    // As Node.js's http.request sends a DELETE body: no Content-Length, no Transfer-Encoding.
    for method in ["DELETE /nodes/", "POST /nodes/", "POST /"] {
        let request = format!(
            "{method} HTTP/1.1\r\nHost: seed\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n\r\n{node}"
        );
        let raw = exchange(dns.addr, request.as_bytes()).unwrap();
        let got = answers(&raw);
        assert_eq!(got[0].status, 400, "{method}: {}", lossy(&raw));
        assert_eq!(
            got[0].error(),
            "the request has no body (no Content-Length or Transfer-Encoding); send the node as JSON with a length"
        );
        // The body was read as the next request (RFC 9112 §6.3), refused as one.
        assert_eq!(got.get(1).map(|a| a.status), Some(400), "{}", lossy(&raw));
    }
    assert_eq!(dns.nodes(), vec![("127.0.0.1".to_owned(), 1)]);
}
