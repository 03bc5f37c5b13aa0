//! `node --app` (SPEC §13) against the real binaries: a small chain application written
//! here (a std `TcpListener` serving `/blocks/…`, `/health` and an echo of what it got) behind
//! a node, reached through the node's address as a peer would reach it.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// A request as the application got it.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A chain application on a loopback port: `GET /blocks/<n>` answers block `n` (404 for
/// anything that is not a number), `GET /health` 200 or 503 as `healthy` says, `/echo` 200
/// with hop-by-hop fields of its own in the answer, `/big` 2 KiB; `/flaky/…` closes the
/// connection without an answer the first time it is asked. Keeps connections alive as
/// HTTP/1.1 servers do, and records every request it gets.
struct App {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    healthy: Arc<AtomicBool>,
}

impl App {
    fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the application");
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let healthy = Arc::new(AtomicBool::new(true));
        let (record, health) = (Arc::clone(&got), Arc::clone(&healthy));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (record, health) = (Arc::clone(&record), Arc::clone(&health));
                thread::spawn(move || serve(stream, &record, &health));
            }
        });
        App { addr, got, healthy }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// The requests it got for `path`, health checks aside.
    fn got_for(&self, prefix: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.target.starts_with(prefix))
            .collect()
    }
}

/// Serves one connection's requests until the client closes it.
fn serve(stream: TcpStream, record: &Mutex<Vec<Got>>, healthy: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = Vec::new();
        loop {
            let mut field = String::new();
            if reader.read_line(&mut field).is_err() || field.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = field.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let length = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let got = Got {
            method: method.clone(),
            target: target.clone(),
            headers,
            body,
        };
        let first = {
            let mut record = record.lock().unwrap();
            record.push(got);
            record.iter().filter(|g| g.target == target).count() == 1
        };
        if target.starts_with("/flaky/") && first {
            // Closes the connection without an answer, the first time only.
            return;
        }
        let (status, extra, body) = answer(&method, &target, healthy);
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        );
        let mut out = head.into_bytes();
        // An answer to HEAD has the head a GET would get, and no body.
        if method != "HEAD" {
            out.extend_from_slice(body.as_bytes());
        }
        if writer.write_all(&out).is_err() {
            return;
        }
    }
}

/// The application's answer: status line rest, extra header lines, body.
fn answer(method: &str, target: &str, healthy: &AtomicBool) -> (String, String, String) {
    let json = "Content-Type: application/json\r\n";
    if target == "/health" {
        return match healthy.load(Ordering::SeqCst) {
            true => ("200 OK".into(), String::new(), "ok".into()),
            false => (
                "503 Service Unavailable".into(),
                String::new(),
                "syncing".into(),
            ),
        };
    }
    if target == "/echo" {
        let extra = "Connection: X-App-Hop\r\nX-App-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nUpgrade: h2c\r\nX-App-End: yes\r\n";
        return ("200 OK".into(), extra.into(), format!("{method} echoed"));
    }
    if target == "/big" {
        return ("200 OK".into(), String::new(), "x".repeat(2048));
    }
    if let Some(height) = target.strip_prefix("/blocks/") {
        return match height.parse::<u64>() {
            Ok(h) => (
                "200 OK".into(),
                format!("{json}X-Block-Height: {h}\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"),
                format!(r#"{{"height":{h},"transactions":[]}}"#),
            ),
            Err(_) => (
                "404 Not Found".into(),
                json.into(),
                r#"{"message":"no such block"}"#.into(),
            ),
        };
    }
    ("200 OK".into(), String::new(), format!("{method} {target}"))
}

/// The values of every `name` header of `resp`.
fn all(resp: &Resp, name: &str) -> Vec<String> {
    resp.headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

#[test]
fn a_peer_reaches_the_application_through_another_nodes_address() {
    let dir = TempDir::new("app-reach");
    let app = App::start();
    let seed = dns(&dir.join("dns"), &[]);
    let seed_flag = seed.addr.to_string();
    let a = node(&dir.join("a"), &["--dns", &seed_flag, "--app", &app.url()]);
    wait_until(Duration::from_secs(10), "the seed lists node a", || {
        seed.nodes().contains(&("127.0.0.1".into(), a.port()))
    });
    // Node b learns a from the seed; b's application asks b for peers, as SPEC §13 says.
    let b = node(&dir.join("b"), &["--dns", &seed_flag]);
    let peer = wait_until_some(Duration::from_secs(10), "node b lists node a", || {
        let listed = nodes_of(&b.get("/nodes/?limit=10").json());
        listed.into_iter().find(|(_, port)| *port == a.port())
    });
    let peer: SocketAddr = format!("{}:{}", peer.0, peer.1).parse().unwrap();

    let block = request("GET", peer, "/blocks/0", None, &[]);
    assert_eq!(block.status, 200, "{block:?}");
    assert_eq!(block.body, r#"{"height":0,"transactions":[]}"#);
    assert_eq!(block.header("content-type"), Some("application/json"));
    assert_eq!(block.header("x-block-height"), Some("0"));
    assert_eq!(
        all(&block, "set-cookie"),
        ["a=1", "b=2"],
        "repeated fields kept"
    );
    assert_eq!(block.header("content-length"), Some("30"));
    let missing = request("GET", peer, "/blocks/latest", None, &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body, r#"{"message":"no such block"}"#,
        "the application's own 404"
    );
    let head = request("HEAD", peer, "/blocks/7", None, &[]);
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(
        head.header("content-length"),
        Some("30"),
        "the length a GET gets"
    );
    assert_eq!(
        app.got_for("/blocks/")
            .iter()
            .map(|g| (g.method.as_str(), g.target.as_str()))
            .collect::<Vec<_>>(),
        [
            ("GET", "/blocks/0"),
            ("GET", "/blocks/latest"),
            ("HEAD", "/blocks/7")
        ]
    );

    // The node's own paths stay its own.
    let status = request("GET", peer, "/status", None, &[]).json();
    assert_eq!(status["role"], "node");
    assert_eq!(status["app"]["url"], app.url());
    assert_eq!(status["app"]["healthy"], Value::Null, "no --app_health");
    let missing = request("GET", peer, "/nodes/x/", None, &[]);
    assert_eq!(missing.status, 404);
    assert!(missing.error().contains("no such path"), "{missing:?}");
    let metrics = request("GET", peer, "/metrics", None, &[]).body;
    assert!(
        metrics
            .contains(r#"seedmesh_http_requests_total{route="app",method="GET",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        !app.got()
            .iter()
            .any(|g| g.target.starts_with("/nodes") || g.target == "/status")
    );
    // Without --app, the same path is seedmesh's 404.
    let plain = b.get("/blocks/0");
    assert_eq!(plain.status, 404);
    assert_eq!(plain.error(), "no such path: /blocks/0");
}

/// Waits until `find` returns something, and returns it.
fn wait_until_some<T>(limit: Duration, what: &str, mut find: impl FnMut() -> Option<T>) -> T {
    let mut found = None;
    wait_until(limit, what, || {
        found = find();
        found.is_some()
    });
    found.unwrap()
}

#[test]
fn an_application_that_is_down_or_garbled_is_502() {
    let dir = TempDir::new("app-502");
    let down = refused_addr("127.0.0.1");
    let node_down = node(&dir.join("down"), &["--app", &format!("http://{down}")]);
    let answer = node_down.get("/blocks/0");
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(
        answer.error(),
        "the application refused the connection; is it running?"
    );
    wait_until(Duration::from_secs(5), "the failure is logged", || {
        node_down
            .stderr()
            .contains("GET /blocks/0 for 127.0.0.1: the application refused the connection")
    });

    // An answer that is not HTTP.
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let garbage_addr = garbage.local_addr().unwrap();
    thread::spawn(move || {
        for stream in garbage.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\nnot http at all\r\n");
        }
    });
    let node_garbled = node(
        &dir.join("garbled"),
        &["--app", &format!("http://{garbage_addr}")],
    );
    let answer = node_garbled.get("/blocks/0");
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(answer.error().starts_with("the application"), "{answer:?}");

    // An answer over --app_answer_limit.
    let app = App::start();
    let node_small = node(
        &dir.join("small"),
        &["--app", &app.url(), "--app_answer_limit", "1KiB"],
    );
    let answer = node_small.get("/big");
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(
        answer.error(),
        "the application's answer is over --app_answer_limit (1024 bytes)"
    );
    assert_eq!(
        node_small.get("/blocks/1").status,
        200,
        "a small one is relayed"
    );
}

#[test]
fn only_an_idempotent_request_is_sent_again_when_the_connection_closes_unanswered() {
    let dir = TempDir::new("app-retry");
    let app = App::start();
    let n = node(&dir.join("n"), &["--app", &app.url()]);
    let answer = n.get("/flaky/get");
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(app.got_for("/flaky/get").len(), 2, "sent once more");
    let answer = n.post("/flaky/post", "{}");
    assert_eq!(answer.status, 502, "{answer:?}");
    assert_eq!(
        answer.error(),
        "the application closed the connection without a whole answer"
    );
    assert_eq!(
        app.got_for("/flaky/post").len(),
        1,
        "a POST is never sent twice"
    );
}

#[test]
fn a_slow_application_is_504_after_app_timeout_and_frees_the_worker() {
    let dir = TempDir::new("app-504");
    let hole = BlackHole::new("127.0.0.1");
    let n = node(
        &dir.join("n"),
        &[
            "--app",
            &format!("http://{}", hole.addr),
            "--app_timeout",
            "0.5",
            "--workers",
            "1",
        ],
    );
    let started = Instant::now();
    let answer = n.get("/blocks/0");
    let took = started.elapsed();
    assert_eq!(answer.status, 504, "{answer:?}");
    assert_eq!(
        answer.error(),
        "the application did not answer within --app_timeout (0.5 s)"
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // The only worker is free again: the node's own API answers at once.
    let started = Instant::now();
    assert_eq!(n.get("/status").status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_body_over_app_body_limit_is_413_without_reaching_the_application() {
    let dir = TempDir::new("app-413");
    let app = App::start();
    let n = node(&dir.join("n"), &["--app", &app.url()]);
    let limit = 1 << 20;
    // Just under and at the default 1 MiB: forwarded whole.
    for size in [limit - 1, limit] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let answer = try_request_bytes("POST", n.addr, "/transactions/", Some(&body), &[])
            .expect("an answer");
        assert_eq!(answer.status, 200, "{size}: {answer:?}");
        let got = app.got_for("/transactions/").pop().expect("forwarded");
        assert_eq!(got.body.len(), size);
        assert!(got.body == body, "the body arrived whole and unchanged");
        assert_eq!(
            got.header("content-length"),
            Some(size.to_string().as_str())
        );
    }
    let before = app.got_for("/transactions/").len();
    let over = vec![b'x'; limit + 1];
    let answer =
        try_request_bytes("POST", n.addr, "/transactions/", Some(&over), &[]).expect("an answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(
        answer.error(),
        "request body is over 1 MiB (--app_body_limit); it was not forwarded"
    );
    assert_eq!(
        app.got_for("/transactions/").len(),
        before,
        "never reached the application"
    );

    // The API's own paths keep their 64 KiB.
    let api = vec![b' '; 64 * 1024 + 1];
    let answer = try_request_bytes("POST", n.addr, "/", Some(&api), &[]).expect("an answer");
    assert_eq!(answer.status, 413, "{answer:?}");
    assert_eq!(answer.error(), "request body is over 64 KiB");

    // A smaller --app_body_limit holds for the application's paths only.
    let small = node(
        &dir.join("small"),
        &["--app", &app.url(), "--app_body_limit", "100"],
    );
    let answer = try_request_bytes("PUT", small.addr, "/x", Some(&[b'y'; 101]), &[]).unwrap();
    assert_eq!(answer.status, 413);
    let answer = try_request_bytes("PUT", small.addr, "/x", Some(&[b'y'; 100]), &[]).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(app.got_for("/x").len(), 1);
}

#[test]
fn hop_by_hop_headers_are_not_forwarded_either_way_and_the_caller_is_named() {
    let dir = TempDir::new("app-hop");
    let app = App::start();
    let n = node(&dir.join("n"), &["--app", &app.url()]);
    let answer = request(
        "POST",
        n.addr,
        "/echo",
        Some("{}"),
        &[
            // `Connection: close` is added by `request`; these come in another field line.
            ("Connection", "X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic eDp5"),
            ("TE", "trailers"),
            ("Upgrade", "websocket"),
            ("X-Forwarded-For", "127.9.9.9"),
            ("Forwarded", "for=127.9.9.9"),
            ("X-End-To-End", "yes"),
            ("Authorization", "Bearer app-token"),
        ],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "POST echoed");
    let got = app.got_for("/echo").pop().expect("forwarded");
    for hop in [
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "upgrade",
        "connection",
    ] {
        assert_eq!(got.header(hop), None, "{hop} was forwarded: {got:?}");
    }
    assert_eq!(got.header("x-end-to-end"), Some("yes"));
    assert_eq!(got.header("authorization"), Some("Bearer app-token"));
    assert_eq!(
        got.header("host"),
        Some(app.addr.to_string().as_str()),
        "the application's"
    );
    assert_eq!(got.header("x-forwarded-for"), Some("127.9.9.9, 127.0.0.1"));
    assert_eq!(
        got.header("forwarded"),
        Some(
            format!(
                r#"for=127.9.9.9, for=127.0.0.1;host="{}";proto=http"#,
                n.addr
            )
            .as_str()
        )
    );
    assert_eq!(got.header("via"), Some("1.1 seedmesh"));
    assert_eq!(
        got.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(got.body, b"{}");

    // The application's own hop-by-hop fields stop at the node too.
    for hop in ["x-app-hop", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert_eq!(answer.header(hop), None, "{hop} was relayed: {answer:?}");
    }
    assert_eq!(answer.header("x-app-end"), Some("yes"));
    assert_eq!(
        all(&answer, "connection"),
        ["close"],
        "only the node's own, for this connection"
    );
}

/// A seed that answers every request with `[]` and records each one: method, target, body.
struct FakeSeed {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl FakeSeed {
    fn start() -> FakeSeed {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&got);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if let Some(got) = serve_seed(stream) {
                    let body = String::from_utf8_lossy(&got.body).into_owned();
                    record.lock().unwrap().push((got.method, got.target, body));
                }
            }
        });
        FakeSeed { addr, got }
    }

    /// How many `method target` requests it got.
    fn count(&self, method: &str, target: &str) -> usize {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(m, t, _)| m == method && t == target)
            .count()
    }

    /// The bodies of the `method target` requests it got, in order.
    fn bodies(&self, method: &str, target: &str) -> Vec<String> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(m, t, _)| m == method && t == target)
            .map(|(_, _, b)| b.clone())
            .collect()
    }
}

/// Serves one request on a seed's connection: answers `[]` and closes; returns the request.
fn serve_seed(stream: TcpStream) -> Option<Got> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    if !matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let mut length = 0;
    loop {
        let mut field = String::new();
        if reader.read_line(&mut field).is_err() || field.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = field.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let _ = writer.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]",
    );
    Some(Got {
        method,
        target,
        headers: Vec::new(),
        body,
    })
}

#[test]
fn a_node_whose_application_fails_its_health_check_stops_announcing_and_resumes() {
    let dir = TempDir::new("app-health");
    let app = App::start();
    let seed = FakeSeed::start();
    let peer = FakePeer::new("127.0.0.1", "[]");
    let n = node(
        &dir.join("n"),
        &[
            "-u",
            "0.2",
            "--dns",
            &seed.addr.to_string(),
            "--app",
            &app.url(),
            "--app_health",
            "/health",
        ],
    );
    // An administrator adds a peer (loopback may); the node checks it each round.
    assert_eq!(n.post("/nodes/", &peer.node_json().to_string()).status, 200);
    let peer_lines = || peer.requests.lock().unwrap().clone();
    let deadline = Duration::from_secs(10);
    wait_until(
        deadline,
        "the node announces itself to seed and peer",
        || seed.count("POST", "/") >= 1 && peer_lines().iter().any(|l| l.starts_with("POST / ")),
    );
    assert!(
        seed.bodies("GET", "/nodes/")
            .iter()
            .all(|b| b.contains("\"port\"")),
        "an announcing node sends itself with GET /nodes/"
    );

    // The application fails its check: the node stops announcing itself.
    app.healthy.store(false, Ordering::SeqCst);
    wait_until(deadline, "the node says it stops announcing", || {
        n.stderr()
            .contains("failed its health check (GET /health answered 503): not announcing")
    });
    let (seed_posts, seed_gets) = (seed.count("POST", "/"), seed.count("GET", "/nodes/"));
    let peer_posts = peer_lines()
        .iter()
        .filter(|l| l.starts_with("POST / "))
        .count();
    let peer_probes = || {
        peer_lines()
            .iter()
            .filter(|l| l.starts_with("GET / "))
            .count()
    };
    wait_until(
        deadline,
        "three quiet rounds have asked the seed and probed the peer",
        || seed.count("GET", "/nodes/") >= seed_gets + 3 && peer_probes() >= 3,
    );
    assert_eq!(
        seed.count("POST", "/"),
        seed_posts,
        "no POST / to the seed while quiet"
    );
    let quiet_bodies = seed.bodies("GET", "/nodes/");
    assert!(
        quiet_bodies[seed_gets..].iter().all(String::is_empty),
        "no node body on GET /nodes/ while quiet: {quiet_bodies:?}"
    );
    let peer_now = peer_lines()
        .iter()
        .filter(|l| l.starts_with("POST / "))
        .count();
    assert_eq!(peer_now, peer_posts, "no POST / to the peer while quiet");
    // Its table stays healthy, and it says why it is quiet.
    assert!(n.nodes().contains(&("127.0.0.1".into(), peer.addr.port())));
    let status = n.get("/status").json();
    assert_eq!(status["app"]["healthy"], false);
    assert_eq!(status["app"]["announcing"], false);
    assert_eq!(status["app"]["reason"], "GET /health answered 503");
    assert!(status["app"]["since"].is_string());
    let metrics = n.get("/metrics").body;
    assert!(metrics.contains("\nseedmesh_app_healthy 0\n"), "{metrics}");
    assert!(
        metrics.contains("\nseedmesh_app_announcing 0\n"),
        "{metrics}"
    );
    assert_eq!(
        n.stderr().matches("not announcing this node").count(),
        1,
        "one line when it stops"
    );

    // It passes again: the node announces itself again.
    app.healthy.store(true, Ordering::SeqCst);
    wait_until(deadline, "the node announces itself again", || {
        seed.count("POST", "/") > seed_posts
            && peer_lines()
                .iter()
                .filter(|l| l.starts_with("POST / "))
                .count()
                > peer_posts
    });
    let stderr = n.stderr();
    assert_eq!(
        stderr.matches("announcing this node again").count(),
        1,
        "{stderr}"
    );
    assert_eq!(n.get("/status").json()["app"]["announcing"], true);
}

#[test]
fn an_app_that_is_the_node_itself_is_refused_at_start() {
    let dir = TempDir::new("app-self");
    let free = refused_addr("127.0.0.1");
    let port = free.port().to_string();
    let failed = try_spawn(
        env!("CARGO_BIN_EXE_node"),
        &dir.join("n"),
        &["-p", &port, "--app", &format!("http://{free}")],
    )
    .err()
    .expect("refused");
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    assert!(
        failed.stderr.contains("is this node itself"),
        "{}",
        failed.stderr
    );
}

/// An application that accepts connections, counts them, and never answers.
struct Stalled {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Stalled {
    fn start() -> Stalled {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the application");
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&connections);
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Stalled { addr, connections }
    }
}

#[test]
fn a_stalled_application_holds_only_the_forwarding_threads_never_the_api() {
    let dir = TempDir::new("app-stalled");
    let app = Stalled::start();
    let n = node(
        &dir.join("n"),
        &[
            "--app",
            &format!("http://{}", app.addr),
            "--app_timeout",
            "2",
            "--workers",
            "1",
            "--app_workers",
            "2",
        ],
    );
    let addr = n.addr;
    let slow = |path: &'static str| thread::spawn(move || request("GET", addr, path, None, &[]));
    let busy: Vec<_> = ["/blocks/1", "/blocks/2"].into_iter().map(slow).collect();
    wait_until(
        Duration::from_secs(5),
        "both forwarding threads wait on it",
        || app.connections.load(Ordering::SeqCst) == 2,
    );
    // Two more wait in the queue; a third finds it full.
    let more: Vec<_> = ["/blocks/3", "/blocks/4", "/blocks/5"]
        .into_iter()
        .map(slow)
        .collect();
    // Meanwhile the node's own API, on its single worker, answers at once.
    let started = Instant::now();
    assert_eq!(n.get("/status").status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let statuses: Vec<u16> = busy
        .into_iter()
        .chain(more)
        .map(|t| t.join().unwrap())
        .map(|answer| {
            if answer.status == 503 {
                assert_eq!(answer.header("retry-after"), Some("1"));
                assert!(
                    answer.error().contains("--app_workers"),
                    "{}",
                    answer.error()
                );
            }
            answer.status
        })
        .collect();
    let (timed_out, refused) = (
        statuses.iter().filter(|s| **s == 504).count(),
        statuses.iter().filter(|s| **s == 503).count(),
    );
    assert_eq!((timed_out, refused), (4, 1), "{statuses:?}");
}
