//! The connection layer's own answers and its closing in stages, with short `Limits` so that
//! timeouts take a fraction of a second: each refusal reaches the `Refusals` hook with its
//! cause and is framed like every answer (`Date`, `Content-Length`, `Connection`).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Cause, Limits, Refusal, Refusals, Response, Server};

/// What the hook saw: status, cause, method and target.
type Seen = Arc<Mutex<Vec<(u16, Cause, Option<String>, Option<String>)>>>;

/// A server on a loopback port with `limits`, answering `GET /drop` by dropping the request
/// and anything else with 200 "ok"; its hook records each refusal.
fn start(limits: Limits) -> (Arc<Server>, SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let refusals: Refusals = Arc::new(move |r: &Refusal<'_>| {
        record.lock().unwrap().push((
            r.status.0,
            r.cause,
            r.method.map(|m| m.to_string()),
            r.target.map(str::to_owned),
        ));
        Response::json_error(r.status, r.reason)
    });
    let server = Arc::new(Server::from_listener_with(listener, limits, refusals).unwrap());
    let addr = server.server_addr();
    let worker = Arc::clone(&server);
    thread::spawn(move || {
        while let Ok(request) = worker.recv() {
            if request.url() == "/drop" {
                drop(request);
            } else {
                let _ = request.respond(Response::from_string("ok"));
            }
        }
    });
    (server, addr, seen)
}

fn short_limits() -> Limits {
    Limits {
        idle_timeout: Duration::from_millis(300),
        linger_time: Duration::from_millis(500),
        linger_bytes: 256 * 1024,
        ..Limits::default()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Reads until the server closes; the text read.
fn read_all(stream: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

fn has_date(text: &str) -> bool {
    text.split("\r\n")
        .any(|l| l.starts_with("Date: ") && l.ends_with(" GMT"))
}

#[test]
fn a_request_not_whole_within_the_idle_timeout_is_408_through_the_hook() {
    let (_server, addr, seen) = start(short_limits());
    let mut stream = connect(addr);
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
    let started = Instant::now();
    let text = read_all(&mut stream);
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{text}"
    );
    assert!(has_date(&text), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(
        text.ends_with(r#"{"error":"request not received in time"}"#),
        "{text}"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(408, Cause::Timeout, None, None)]
    );
}

#[test]
fn a_dropped_request_is_500_through_the_hook_and_the_connection_persists() {
    let (_server, addr, seen) = start(short_limits());
    let mut stream = connect(addr);
    stream
        .write_all(b"GET /drop HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = read_all(&mut stream);
    assert!(
        text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{text}"
    );
    assert!(text.contains("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(text.matches("Date: ").count(), 2, "{text}");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        &[(
            500,
            Cause::Unanswered,
            Some("GET".to_owned()),
            Some("/drop".to_owned())
        )]
    );
}

#[test]
fn a_connection_over_the_limit_is_503_through_the_hook() {
    let (_server, addr, seen) = start(Limits {
        max_connections: 1,
        ..short_limits()
    });
    // The first connection holds the only slot while it sends a request slowly.
    let mut held = connect(addr);
    held.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let mut stream = connect(addr);
        let _ = stream.write_all(b"GET / HTTP/1.1\r\n\r\n");
        let text = read_all(&mut stream);
        if text.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break text;
        }
    };
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(has_date(&text), "{text}");
    let seen = seen.lock().unwrap();
    assert!(
        seen.contains(&(503, Cause::TooManyConnections, None, None)),
        "{seen:?}"
    );
}

#[test]
fn a_client_that_never_stops_sending_is_closed_after_linger_time() {
    let limits = Limits {
        max_body_bytes: 1024,
        ..short_limits()
    };
    let linger_time = limits.linger_time;
    let (_server, addr, _seen) = start(limits);
    let mut stream = connect(addr);
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = stream.try_clone().unwrap();
    // Declares a body far over the limit, then sends without end.
    stream
        .write_all(b"POST / HTTP/1.1\r\nContent-Length: 1000000000000\r\n\r\n")
        .unwrap();
    let sender = thread::spawn(move || {
        let chunk = [b' '; 16 * 1024];
        let mut sent = 0usize;
        let started = Instant::now();
        while stream.write_all(&chunk).is_ok() {
            sent += chunk.len();
            if started.elapsed() > Duration::from_secs(10) {
                break;
            }
        }
        (sent, started.elapsed())
    });
    // The answer comes at once, and the server closes its sending side after it.
    let mut answer = Vec::new();
    reader.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    // Then it reads and discards, and closes for good once linger_time has passed.
    let (sent, took) = sender.join().unwrap();
    assert!(
        took >= linger_time.mul_f32(0.8) && took < linger_time * 4,
        "the client could send for {took:?} ({sent} bytes)"
    );
    let _ = reader.shutdown(Shutdown::Both);
}

#[test]
fn a_body_limit_decided_from_the_head_applies_to_that_request_alone() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let limits = Limits {
        max_body_bytes: 10,
        // `/big…` takes bodies of up to 100 bytes, the rest keeps `max_body_bytes`' 10.
        body_limit: Some(tiny_http::BodyLimit::new(|_, target| {
            if target.starts_with("/big") {
                100
            } else {
                10
            }
        })),
        ..short_limits()
    };
    let server = Arc::new(Server::from_listener(listener, limits).unwrap());
    let addr = server.server_addr();
    let worker = Arc::clone(&server);
    thread::spawn(move || {
        while let Ok(mut request) = worker.recv() {
            let mut body = Vec::new();
            request.as_reader().read_to_end(&mut body).unwrap();
            let said = format!("{} {}", body.len(), request.body_too_large());
            let _ = request.respond(Response::from_string(said));
        }
    });
    let post = |target: &str, body: &[u8], chunked: bool| {
        let mut stream = connect(addr);
        let framing = match chunked {
            true => "Transfer-Encoding: chunked".to_owned(),
            false => format!("Content-Length: {}", body.len()),
        };
        let mut raw = format!("POST {target} HTTP/1.1\r\n{framing}\r\nConnection: close\r\n\r\n")
            .into_bytes();
        match chunked {
            true => {
                raw.extend(format!("{:x}\r\n", body.len()).as_bytes());
                raw.extend(body);
                raw.extend(b"\r\n0\r\n\r\n");
            }
            false => raw.extend(body),
        }
        let _ = stream.write_all(&raw);
        let text = read_all(&mut stream);
        text.rsplit("\r\n\r\n").next().unwrap().to_owned()
    };
    for chunked in [false, true] {
        assert_eq!(post("/big", &[b'x'; 100], chunked), "100 false");
        assert_eq!(post("/big?x", &[b'x'; 101], chunked), "0 true");
        assert_eq!(post("/small", &[b'x'; 10], chunked), "10 false");
        assert_eq!(post("/small", &[b'x'; 11], chunked), "0 true");
    }
}

/// Sends a request and reads its answer on a kept-alive connection: the status line and the
/// body, read by `Content-Length`.
fn exchange_kept(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-answer");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let length: usize = head
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

/// Whether the server has closed `stream` (reads 0) within 5 s.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    matches!(stream.read(&mut [0u8; 64]), Ok(0))
}

#[test]
fn a_source_over_its_cap_is_503_with_retry_after_and_others_still_get_in() {
    let (server, addr, seen) = start(Limits {
        max_connections_per_source: 2,
        ..short_limits()
    });
    let _held: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    wait_until_open(&server, 2);
    let mut third = connect(addr);
    let _ = third.write_all(b"GET / HTTP/1.1\r\n\r\n");
    let text = read_all(&mut third);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    assert!(
        text.contains("too many open connections from your address"),
        "{text}"
    );
    assert!(seen
        .lock()
        .unwrap()
        .contains(&(503, Cause::TooManyFromSource, None, None)));
    assert_eq!(server.num_connections(), 2);
}

fn wait_until_open(server: &Server, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.num_connections() != n {
        assert!(
            Instant::now() < deadline,
            "{} open",
            server.num_connections()
        );
        thread::yield_now();
    }
}

#[test]
fn full_slots_make_room_by_closing_the_keep_alive_connection_idle_longest() {
    let (server, addr, seen) = start(Limits {
        max_connections: 3,
        idle_timeout: Duration::from_secs(5),
        ..short_limits()
    });
    // Three kept-alive connections, answered once each, idle since in this order.
    let mut kept: Vec<TcpStream> = (0..3).map(|_| connect(addr)).collect();
    for stream in &mut kept {
        let text = exchange_kept(stream, b"GET / HTTP/1.1\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    }
    // A newcomer is served: the first one, idle longest, is closed for it.
    let mut newcomer = connect(addr);
    let text = exchange_kept(&mut newcomer, b"GET / HTTP/1.1\r\n\r\n");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        closed_by_server(&mut kept[0]),
        "the one idle longest is closed"
    );
    // The others were not touched and still serve.
    for stream in &mut kept[1..] {
        let text = exchange_kept(stream, b"GET / HTTP/1.1\r\n\r\n");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    }
    // A connection that has not been answered yet is never closed for another: with every
    // slot held by a request under way, a newcomer gets 503.
    for stream in kept[1..].iter_mut().chain([&mut newcomer]) {
        stream.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    }
    // Once the server has seen those first bytes: until then they are idle, and a late
    // connection would rightly take one's slot.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.num_idle_connections() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} idle",
            server.num_idle_connections()
        );
        thread::yield_now();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let mut late = connect(addr);
        let _ = late.write_all(b"GET / HTTP/1.1\r\n\r\n");
        let text = read_all(&mut late);
        if text.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break text;
        }
    };
    assert!(
        text.contains("too many open connections; try again"),
        "{text}"
    );
    assert!(seen
        .lock()
        .unwrap()
        .contains(&(503, Cause::TooManyConnections, None, None)));
    assert!(server.num_connections() <= 3);
}

/// A server whose `/big…` paths take bodies of up to 1,000 bytes (the rest 10), within a
/// budget of 1,000 body bytes; it answers with the body's length.
fn start_with_budget() -> (Arc<Server>, SocketAddr, Seen) {
    let (server, addr, seen) = start(Limits {
        max_body_bytes: 10,
        body_limit: Some(tiny_http::BodyLimit::new(|_, target| {
            if target.starts_with("/big") {
                1000
            } else {
                10
            }
        })),
        body_budget_bytes: 1000,
        idle_timeout: Duration::from_secs(5),
        ..short_limits()
    });
    (server, addr, seen)
}

#[test]
fn a_declared_body_the_budget_cannot_take_is_503_at_once_before_it_is_read() {
    let (server, addr, seen) = start_with_budget();
    // Holds 600 bytes of the budget: declared, partly sent, stalled.
    let mut stalled = connect(addr);
    stalled
        .write_all(b"POST /big HTTP/1.1\r\nContent-Length: 600\r\n\r\nxxxx")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.body_bytes_held() != 600 {
        assert!(
            Instant::now() < deadline,
            "{} held",
            server.body_bytes_held()
        );
        thread::yield_now();
    }
    // The same source may hold a second body only within a quarter of the budget (250):
    // answered at once, before any of its body is sent, and never told to continue.
    let started = Instant::now();
    let mut second = connect(addr);
    second
        .write_all(b"POST /big HTTP/1.1\r\nContent-Length: 300\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let text = read_all(&mut second);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(seen.lock().unwrap().contains(&(
        503,
        Cause::BodyBudget,
        Some("POST".to_owned()),
        Some("/big".to_owned())
    )));
    // Bodies within max_body_bytes are not counted: still served.
    let mut small = connect(addr);
    small
        .write_all(b"POST /small HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        .unwrap();
    assert!(read_all(&mut small).starts_with("HTTP/1.1 200 OK\r\n"));
    // Once the stalled client goes, its bytes are given back, and a large body is served.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.body_bytes_held() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} held",
            server.body_bytes_held()
        );
        thread::yield_now();
    }
    let mut big = connect(addr);
    let mut request =
        b"POST /big HTTP/1.1\r\nContent-Length: 900\r\nConnection: close\r\n\r\n".to_vec();
    request.extend([b'y'; 900]);
    big.write_all(&request).unwrap();
    assert!(read_all(&mut big).starts_with("HTTP/1.1 200 OK\r\n"));
}

#[test]
fn a_chunked_body_is_counted_as_it_grows_and_refused_once_the_budget_is_spent() {
    let (server, addr, seen) = start_with_budget();
    let mut first = connect(addr);
    first
        .write_all(b"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    // 400 bytes in one chunk, then a stall: 400 counted.
    let mut chunk = b"190\r\n".to_vec();
    chunk.extend([b'z'; 400]);
    chunk.extend(b"\r\n");
    first.write_all(&chunk).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.body_bytes_held() != 400 {
        assert!(
            Instant::now() < deadline,
            "{} held",
            server.body_bytes_held()
        );
        thread::yield_now();
    }
    // A second from the same source: its first 200 bytes fit its quarter, the next 100 not.
    let mut second = connect(addr);
    let mut request = b"POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend(b"64\r\n");
        request.extend([b'w'; 100]);
        request.extend(b"\r\n");
    }
    second.write_all(&request).unwrap();
    let text = read_all(&mut second);
    assert!(
        text.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nRetry-After: 1\r\n"), "{text}");
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|(status, cause, ..)| (*status, *cause) == (503, Cause::BodyBudget)));
    // The first, its source's only body, may grow past the quarter, and is served whole.
    let mut rest = b"258\r\n".to_vec();
    rest.extend([b'z'; 600]);
    rest.extend(b"\r\n0\r\n\r\n");
    first.write_all(&rest).unwrap();
    let text = exchange_kept(&mut first, b"");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
}
