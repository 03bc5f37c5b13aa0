//! The request side of HTTP/1.1 as RFC 9112 (and the parts of RFC 9110 it leans on) states
//! it, rule by rule, against the real `dns`: each row sends raw bytes, followed by a
//! pipelined sentinel request, and names every answer that must come back, in order. A rule
//! that lets the connection persist therefore shows the sentinel's 200; a rule that closes it
//! does not. Every final answer must also carry `Date` and, for an error, the API's JSON error
//! body (`wire::Answer::check_common`).

mod support;
mod wire;

use support::*;
use wire::*;

/// Sent after each row's bytes: answered 200 only if the connection persisted and every
/// byte before it was read as the row says.
const SENTINEL: &str = "GET / HTTP/1.1\r\nHost: seed\r\nConnection: close\r\n\r\n";

/// One rule: where it is written, what it says, the bytes that exercise it, and the statuses
/// of all the answers expected back (interim ones and the sentinel's included).
struct Rule {
    section: &'static str,
    rule: &'static str,
    request: Vec<u8>,
    answers: &'static [u16],
}

fn rule(section: &'static str, text: &'static str, request: &str, answers: &'static [u16]) -> Rule {
    Rule {
        section,
        rule: text,
        request: request.as_bytes().to_vec(),
        answers,
    }
}

/// A `POST /` registering 127.0.0.1:`port`, with `headers` (each ending in CRLF) and the
/// body framed by Content-Length.
fn register(version: &str, headers: &str, port: u16) -> String {
    let body = node_body_at("127.0.0.1", port);
    format!(
        "POST / HTTP/{version}\r\nHost: seed\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A chunked `POST /` registering 127.0.0.1:`port` in one chunk: `size_line` writes the
/// chunk-size line for the body's length, `after` follows the chunk's data (its CRLF, more
/// chunks, the last chunk and the trailer section).
fn chunked(port: u16, size_line: impl Fn(usize) -> String, after: &str) -> String {
    let body = node_body_at("127.0.0.1", port);
    format!(
        "POST / HTTP/1.1\r\nHost: seed\r\nTransfer-Encoding: chunked\r\n\r\n{}{body}{after}",
        size_line(body.len())
    )
}

/// A `POST /` registering 127.0.0.1:`port` whose one Content-Length line holds its length
/// twice: `Content-Length: 38, 38`.
fn twice_declared(port: u16) -> String {
    let length = node_body_at("127.0.0.1", port).len();
    register("1.1", "", port).replacen(
        &format!("Content-Length: {length}"),
        &format!("Content-Length: {length}, {length}"),
        1,
    )
}

fn rules() -> Vec<Rule> {
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(17 * 1024));
    let many_fields = format!("GET / HTTP/1.1\r\n{}\r\n", "X: y\r\n".repeat(101));
    vec![
        // §2.2 Message parsing.
        rule(
            "9112 §2.2",
            "a recipient MAY recognize a single LF as a line terminator",
            "GET / HTTP/1.1\nHost: seed\n\n",
            &[200, 200],
        ),
        rule(
            "9112 §2.2",
            "a server SHOULD ignore at least one empty line before the request-line",
            "\r\n\r\nGET / HTTP/1.1\r\nHost: seed\r\n\r\n",
            &[200, 200],
        ),
        rule(
            "9112 §2.2",
            "whitespace between the start-line and the first field MUST be rejected (or its lines ignored)",
            "GET / HTTP/1.1\r\n Host: seed\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §2.2",
            "a bare CR is invalid (or replaced by SP)",
            "GET / HTTP/1.1\r\nX-A: 1\r2\r\n\r\n",
            &[400],
        ),
        // §2.3 HTTP version.
        rule(
            "9112 §2.3",
            "HTTP-version is case-sensitive",
            "GET / http/1.1\r\n\r\n",
            &[400],
        ),
        rule(
            "9110 §2.5",
            "a higher minor version of HTTP/1 is processed as HTTP/1.1",
            "GET / HTTP/1.7\r\nHost: seed\r\n\r\n",
            &[200, 200],
        ),
        rule(
            "9110 §15.6.6",
            "a major version the server does not support is 505",
            "GET / HTTP/2.0\r\n\r\n",
            &[505],
        ),
        rule(
            "9110 §15.6.6",
            "HTTP/0.9 and other majors are 505 too",
            "GET / HTTP/0.9\r\n\r\n",
            &[505],
        ),
        // §3 Request line.
        rule(
            "9112 §3",
            "the method is case-sensitive: `get` is not GET",
            "get / HTTP/1.1\r\nHost: seed\r\n\r\n",
            &[405, 200],
        ),
        rule(
            "9112 §3",
            "the request-line's parts are separated by a single SP",
            "GET  / HTTP/1.1\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §3.2",
            "no whitespace inside the request-target",
            "GET /a b HTTP/1.1\r\n\r\n",
            &[400],
        ),
        Rule {
            section: "9112 §3",
            rule: "a request-target longer than the server parses MUST be answered 414",
            request: long_target.into_bytes(),
            answers: &[414],
        },
        rule(
            "9112 §3.2",
            "a request-target of none of the four forms is invalid: 400",
            "GET nodes HTTP/1.1\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §3.2",
            "a request-target is ASCII and carries no fragment",
            "GET /#frag HTTP/1.1\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §3.2.2",
            "a server MUST accept the absolute-form",
            "GET http://seed:1/nodes/?limit=0 HTTP/1.1\r\nHost: other\r\n\r\n",
            &[200, 200],
        ),
        rule(
            "9112 §3.2.4",
            "the asterisk-form is only for OPTIONS",
            "GET * HTTP/1.1\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §3.2.4",
            "OPTIONS * is a request like any other (no such path here)",
            "OPTIONS * HTTP/1.1\r\nHost: seed\r\n\r\n",
            &[404, 200],
        ),
        rule(
            "9112 §3.2",
            "more than one Host field line MUST be answered 400",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §3.2",
            "a Host with an invalid value MUST be answered 400",
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §3.2 (deviation)",
            "an HTTP/1.1 request without Host is served: seedmesh has one origin",
            "GET / HTTP/1.1\r\n\r\n",
            &[200, 200],
        ),
        // §5 Field syntax.
        rule(
            "9112 §5.1",
            "whitespace between a field name and its colon MUST be answered 400",
            "GET / HTTP/1.1\r\nHost : seed\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §5.1",
            "OWS around a field value is not part of it",
            "GET /nodes/?limit=0 HTTP/1.1\r\nHost: seed\r\nContent-Length: \t2 \r\n\r\n{}",
            &[200, 200],
        ),
        rule(
            "9112 §5.2",
            "obsolete line folding in a request is rejected with 400",
            "GET / HTTP/1.1\r\nHost: seed\r\nX-A: 1\r\n 2\r\n\r\n",
            &[400],
        ),
        rule(
            "9110 §5.5",
            "a field value with NUL is rejected",
            "GET / HTTP/1.1\r\nX-A: 1\x002\r\n\r\n",
            &[400],
        ),
        Rule {
            section: "6585 §5",
            rule: "too many header fields are answered 431",
            request: many_fields.into_bytes(),
            answers: &[431],
        },
        // §6 Message body: which framing, and what a faulty one means.
        rule(
            "9112 §6.1",
            "Transfer-Encoding in an HTTP/1.0 request means faulty framing: 400, close",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §6.1",
            "a transfer coding the server does not understand is 501",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            &[501],
        ),
        rule(
            "9112 §6.1",
            "chunked is never applied more than once",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §6.1",
            "transfer-coding names are case-insensitive",
            &chunked(1001, |n| format!("{n:x}\r\n"), "\r\n0\r\n\r\n").replace("chunked", "CHUNKED"),
            &[200, 200],
        ),
        rule(
            "9112 §6.3 r3",
            "Content-Length with Transfer-Encoding is refused, and the connection closed",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §6.3 r4",
            "a Transfer-Encoding not ending in chunked MUST be answered 400 and closed",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §6.3 r4",
            "a lone unknown coding is 400 too: the length cannot be known",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §6.3 r5",
            "an invalid Content-Length MUST be answered 400 and closed",
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n12345",
            &[400],
        ),
        rule(
            "9112 §6.3 r5",
            "Content-Length is decimal digits only",
            "POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n12345",
            &[400],
        ),
        rule(
            "9110 §8.6",
            "differing Content-Length values are refused",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n123456",
            &[400],
        ),
        rule(
            "9110 §8.6",
            "a list of identical Content-Length values may be taken as one",
            &twice_declared(1002),
            &[200, 200],
        ),
        rule(
            "9112 §6.3 r6",
            "Content-Length says where the body ends and the next request begins",
            &register("1.1", "", 1003),
            &[200, 200],
        ),
        rule(
            "9112 §6.3 r7",
            "a request with neither is bodiless: what follows is the next request",
            "POST /nodes/ HTTP/1.1\r\nHost: seed\r\n\r\n{\"ip_address\": \"127.0.0.1\", \"port\": 1}",
            &[400, 400],
        ),
        // §7 Chunked transfer coding.
        rule(
            "9112 §7.1",
            "a chunked body is decoded",
            &chunked(1004, |n| format!("{n:x}\r\n"), "\r\n0\r\n\r\n"),
            &[200, 200],
        ),
        rule(
            "9112 §7.1",
            "chunk-size is hexadecimal, in either case",
            &chunked(1005, |n| format!("{n:X}\r\n"), "\r\n0\r\n\r\n"),
            &[200, 200],
        ),
        rule(
            "9112 §7.1",
            "a body may come in many chunks, and chunk-size may have leading zeros",
            &chunked(1006, |n| format!("00{n:x}\r\n"), "\r\n1\r\n \r\n0\r\n\r\n"),
            &[200, 200],
        ),
        rule(
            "9112 §7.1.1",
            "chunk extensions are ignored",
            &chunked(
                1007,
                |n| format!("{n:x} ;name=value;other=\"quoted\"\r\n"),
                "\r\n0;last\r\n\r\n",
            ),
            &[200, 200],
        ),
        rule(
            "9112 §7.1",
            "a chunk-size needs at least one hex digit",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n;ext\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §7.1",
            "a chunk-size is hex digits, nothing else",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §7.1",
            "chunk-data is followed by CRLF",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n0\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §7.1",
            "the chunk-size line ends with CRLF",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            &[400],
        ),
        rule(
            "9112 §7.1.2",
            "a trailer section is read and discarded",
            &chunked(
                1008,
                |n| format!("{n:x}\r\n"),
                "\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n",
            ),
            &[200, 200],
        ),
        rule(
            "9112 §7.1.2",
            "trailer fields follow field syntax",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Bad : 1\r\n\r\n",
            &[400],
        ),
        rule(
            "SPEC §3",
            "a chunked body over 64 KiB is 413, and the connection closed",
            &format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                65 * 1024
            ),
            &[413],
        ),
        // §9 Connection management.
        rule(
            "9112 §9.3",
            "HTTP/1.1 persists by default",
            "GET / HTTP/1.1\r\nHost: seed\r\n\r\n",
            &[200, 200],
        ),
        rule(
            "9112 §9.3",
            "the close option ends the connection after the answer",
            "GET / HTTP/1.1\r\nHost: seed\r\nConnection: close\r\n\r\n",
            &[200],
        ),
        rule(
            "9110 §7.6.1",
            "connection options are a case-insensitive list",
            "GET / HTTP/1.1\r\nHost: seed\r\nConnection: foo, CLOSE\r\n\r\n",
            &[200],
        ),
        rule(
            "9112 §9.3",
            "HTTP/1.0 without keep-alive closes after the answer",
            "GET / HTTP/1.0\r\n\r\n",
            &[200],
        ),
        rule(
            "9112 §9.3",
            "HTTP/1.0 with keep-alive persists, and says so",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            &[200, 200],
        ),
        rule(
            "9112 §9.3",
            "requests may be pipelined; answers come in order",
            "GET /nodes/0 HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
            &[200, 404, 200],
        ),
        // RFC 9110 §10.1.1 Expect.
        rule(
            "9110 §10.1.1",
            "100-continue gets an interim 100 before the body is read",
            &register("1.1", "Expect: 100-continue\r\n", 1009),
            &[100, 200, 200],
        ),
        rule(
            "9110 §10.1.1",
            "100-continue is case-insensitive",
            &register("1.1", "Expect: 100-Continue\r\n", 1010),
            &[100, 200, 200],
        ),
        rule(
            "9110 §10.1.1",
            "100-continue in an HTTP/1.0 request MUST be ignored",
            &register(
                "1.0",
                "Expect: 100-continue\r\nConnection: keep-alive\r\n",
                1011,
            ),
            &[200, 200],
        ),
        rule(
            "9110 §10.1.1",
            "an expectation the server cannot meet is 417",
            "GET / HTTP/1.1\r\nExpect: something\r\n\r\n",
            &[417],
        ),
    ]
}

#[test]
fn requests_are_parsed_as_rfc_9112_says_rule_by_rule() {
    let dir = TempDir::new("rfc9112");
    let dns = dns(dir.path(), &NO_SWEEP);
    // Index 0 exists for the pipelining rule.
    assert_eq!(dns.post("/", &node_body_at("127.0.0.1", 1000)).status, 200);
    let rules = rules();
    let mut failures = Vec::new();
    for rule in &rules {
        let mut bytes = rule.request.clone();
        bytes.extend_from_slice(SENTINEL.as_bytes());
        let raw = exchange(dns.addr, &bytes)
            .unwrap_or_else(|e| panic!("{}: {e}; the server logged: {}", rule.rule, dns.stderr()));
        let got = answers(&raw);
        let statuses: Vec<u16> = got.iter().map(|a| a.status).collect();
        let mut problems = Vec::new();
        if statuses != rule.answers {
            problems.push(format!("answers {statuses:?}, expected {:?}", rule.answers));
        }
        problems.extend(got.iter().filter_map(|a| a.check_common().err()));
        // The last answer says whether the connection ends: it must, since it did.
        if let Some(last) = got.last()
            && last.header("Connection") != Some("close")
        {
            problems.push(format!("last answer lacks Connection: close: {last:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "RFC {} — {}:\n    {}\n    sent {:?}\n    got {:?}",
                rule.section,
                rule.rule,
                problems.join("\n    "),
                String::from_utf8_lossy(&rule.request),
                String::from_utf8_lossy(&raw),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rules broken:\n{}",
        failures.len(),
        rules.len(),
        failures.join("\n")
    );
    // The rows that registered a node did so exactly once each; the rest changed nothing.
    let mut ports: Vec<u16> = dns.nodes().iter().map(|(_, p)| *p).collect();
    ports.sort_unstable();
    assert_eq!(ports, (1000..=1011).collect::<Vec<u16>>());
    assert!(!dns.stderr().contains("panicked"), "{}", dns.stderr());
}
