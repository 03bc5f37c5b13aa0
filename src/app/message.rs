//! What is forwarded to the chain application and relayed back, as plain data (SPEC §13):
//! the method, target and body as they came; the end-to-end header fields, less the hop-by-hop
//! ones of RFC 9110 §7.6.1; and `X-Forwarded-For`, `Forwarded` (RFC 7239) and `Via` (RFC 9110
//! §7.6.3) naming the caller and this hop. Pure: no sockets here.

use std::net::IpAddr;

/// The pseudonym this hop gives itself in `Via` (RFC 9110 §7.6.3), after the version of the
/// request it received: `1.1 seedmesh`.
pub const VIA: &str = "seedmesh";

/// Hop-by-hop header fields (RFC 9110 §7.6.1), never forwarded either way, and the ones a hop
/// writes afresh: `Host` (the application's), the framing (`Content-Length`; RFC 9112 §6) and
/// `Expect` (answered here: the whole body is read before it is forwarded). The `Proxy-*`
/// fields and those named by `Connection` are dropped too (`is_hop_by_hop`).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
];

/// A request as it arrived, to forward.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The method, as sent.
    pub method: &'a str,
    /// The request target, origin-form (`/path?query`).
    pub target: &'a str,
    /// The header fields, as received, in order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body (perhaps empty), or `None` when the request has none (RFC 9112 §6.3).
    pub body: Option<&'a [u8]>,
    /// The caller's TCP source address.
    pub caller: IpAddr,
    /// The HTTP version the request came in, `1.1` or `1.0`, for `Via`.
    pub version: &'a str,
}

/// The request to send to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound<'a> {
    pub method: &'a str,
    /// The application's base URL and the request target.
    pub url: String,
    /// The end-to-end header fields, then `X-Forwarded-For`, `Forwarded` and `Via`.
    pub headers: Vec<(String, String)>,
    pub body: Option<&'a [u8]>,
}

/// Whether the header field `name` stops at this hop, given the (lowercase) names the
/// `Connection` fields list.
fn is_hop_by_hop(name: &str, connection: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    HOP_BY_HOP.contains(&name.as_str()) || name.starts_with("proxy-") || connection.contains(&name)
}

/// The field names the `Connection` fields among `headers` list, lowercase (RFC 9110 §7.6.1).
fn connection_options<'h>(headers: impl Iterator<Item = (&'h str, &'h str)>) -> Vec<String> {
    headers
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .map(|option| option.trim().to_ascii_lowercase())
        .filter(|option| !option.is_empty())
        .collect()
}

/// The values of every `name` field, joined as one list (RFC 9110 §5.3), or `None`.
fn joined(headers: &[(&str, &str)], name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(n, v)| n.eq_ignore_ascii_case(name) && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

/// `value` appended to the list `existing`.
fn append(existing: Option<String>, value: &str) -> String {
    match existing {
        Some(list) => format!("{list}, {value}"),
        None => value.to_owned(),
    }
}

/// The request to send to the application at `base` (`http://host:port`, no trailing `/`)
/// for `incoming`: the same method, target and body; its end-to-end header fields in their
/// order; and, appended to any the caller sent, `X-Forwarded-For` with the caller's address,
/// a `Forwarded` element (RFC 7239 §4: `for`, the `host` the caller asked for, `proto`) and
/// `Via`. The caller's own entries in these lists are kept as they came: only the last entry
/// is this node's word.
pub fn outbound<'a>(base: &str, incoming: &Incoming<'a>) -> Outbound<'a> {
    let fields = incoming.headers;
    let connection = connection_options(fields.iter().copied());
    let caller = incoming.caller.to_canonical();
    let mut headers: Vec<(String, String)> = fields
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name, &connection))
        .filter(|(name, _)| {
            !["x-forwarded-for", "forwarded", "via"]
                .iter()
                .any(|ours| name.eq_ignore_ascii_case(ours))
        })
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let forwarded_for = match caller {
        IpAddr::V4(ip) => ip.to_string(),
        // RFC 7239 §6: an IPv6 node is bracketed, and so must be quoted.
        IpAddr::V6(ip) => format!("\"[{ip}]\""),
    };
    let mut element = format!("for={forwarded_for}");
    let host = fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim())
        .filter(|host| !host.is_empty());
    if let Some(host) = host {
        // A quoted-string (RFC 7230 §3.2.6): `"` and `\` escaped.
        let quoted = host.replace('\\', "\\\\").replace('"', "\\\"");
        element.push_str(&format!(";host=\"{quoted}\""));
    }
    element.push_str(";proto=http");
    headers.extend([
        (
            "X-Forwarded-For".to_owned(),
            append(joined(fields, "x-forwarded-for"), &caller.to_string()),
        ),
        (
            "Forwarded".to_owned(),
            append(joined(fields, "forwarded"), &element),
        ),
        (
            "Via".to_owned(),
            append(
                joined(fields, "via"),
                &format!("{} {VIA}", incoming.version),
            ),
        ),
    ]);
    Outbound {
        method: incoming.method,
        url: format!("{base}{}", incoming.target),
        headers,
        body: incoming.body,
    }
}

/// The application's header fields to relay (its end-to-end ones, in order, as text; bytes
/// that are not UTF-8 become U+FFFD), and the `Content-Length` it declared, which an answer to
/// `HEAD` passes on.
pub fn relayed_headers(headers: &[(&str, &[u8])]) -> (Vec<(String, String)>, Option<u64>) {
    let text = |value: &[u8]| String::from_utf8_lossy(value).trim().to_owned();
    let connection = connection_options(
        headers
            .iter()
            .map(|&(name, value)| (name, std::str::from_utf8(value).unwrap_or(""))),
    );
    let mut length = None;
    let mut relayed = Vec::new();
    for &(name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            length = text(value).parse().ok();
        }
        // The connection layer writes its own `Date`.
        if is_hop_by_hop(name, &connection) || name.eq_ignore_ascii_case("date") {
            continue;
        }
        relayed.push((name.to_owned(), text(value)));
    }
    (relayed, length)
}

/// The application's answer, to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub status: u16,
    /// Its end-to-end header fields, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The `Content-Length` it declared: what an answer to `HEAD` declares in turn.
    pub length: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const CALLER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9));

    fn incoming<'a>(headers: &'a [(&'a str, &'a str)]) -> Incoming<'a> {
        Incoming {
            method: "POST",
            target: "/blocks/?from=3",
            headers,
            body: Some(b"{}"),
            caller: CALLER,
            version: "1.1",
        }
    }

    fn value<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_request_goes_as_it_came_less_the_hop_by_hop_fields() {
        let headers = [
            ("Host", "127.0.0.1:55000"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic eA=="),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("Content-Length", "2"),
            ("Expect", "100-continue"),
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer abc"),
            ("Cookie", "a=1"),
            ("Cookie", "b=2"),
        ];
        let out = outbound("http://127.0.0.1:8080", &incoming(&headers));
        assert_eq!(out.method, "POST");
        assert_eq!(out.url, "http://127.0.0.1:8080/blocks/?from=3");
        assert_eq!(out.body, Some(&b"{}"[..]));
        let names: Vec<&str> = out.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "Authorization",
                "Cookie",
                "Cookie",
                "X-Forwarded-For",
                "Forwarded",
                "Via"
            ]
        );
    }

    #[test]
    fn the_caller_is_named_after_the_entries_it_sent() {
        let out = outbound("http://a:1", &incoming(&[("Host", "127.0.0.1:55000")]));
        assert_eq!(value(&out.headers, "x-forwarded-for"), Some("127.0.0.9"));
        assert_eq!(
            value(&out.headers, "forwarded"),
            Some(r#"for=127.0.0.9;host="127.0.0.1:55000";proto=http"#)
        );
        assert_eq!(value(&out.headers, "via"), Some("1.1 seedmesh"));

        let sent = [
            ("X-Forwarded-For", "127.1.1.1"),
            ("x-forwarded-for", "127.2.2.2, 127.3.3.3"),
            ("Forwarded", "for=127.1.1.1"),
            ("Via", "1.0 fred"),
        ];
        let mut from_v6 = incoming(&sent);
        from_v6.caller = IpAddr::V6(Ipv6Addr::LOCALHOST);
        from_v6.version = "1.0";
        let out = outbound("http://a:1", &from_v6);
        assert_eq!(
            value(&out.headers, "x-forwarded-for"),
            Some("127.1.1.1, 127.2.2.2, 127.3.3.3, ::1")
        );
        assert_eq!(
            value(&out.headers, "forwarded"),
            Some(r#"for=127.1.1.1, for="[::1]";proto=http"#)
        );
        assert_eq!(value(&out.headers, "via"), Some("1.0 fred, 1.0 seedmesh"));
        let count = |name: &str| {
            out.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .count()
        };
        assert_eq!(
            (count("x-forwarded-for"), count("forwarded"), count("via")),
            (1, 1, 1)
        );

        // An IPv4-mapped caller is its IPv4 address.
        let mut mapped = incoming(&[]);
        mapped.caller = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 7).to_ipv6_mapped());
        let out = outbound("http://a:1", &mapped);
        assert_eq!(value(&out.headers, "x-forwarded-for"), Some("127.0.0.7"));
    }

    #[test]
    fn the_answer_is_relayed_less_the_hop_by_hop_fields() {
        let answer: [(&str, &[u8]); 9] = [
            ("content-type", b"application/json"),
            ("connection", b"close, x-app-hop"),
            ("x-app-hop", b"1"),
            ("keep-alive", b"timeout=5"),
            ("transfer-encoding", b"chunked"),
            ("proxy-authenticate", b"Basic"),
            ("date", b"Tue, 01 Jan 2030 00:00:00 GMT"),
            ("set-cookie", b"a=1"),
            ("content-length", b"1234"),
        ];
        let (headers, length) = relayed_headers(&answer);
        assert_eq!(
            headers,
            [
                ("content-type".to_owned(), "application/json".to_owned()),
                ("set-cookie".to_owned(), "a=1".to_owned())
            ]
        );
        assert_eq!(length, Some(1234));
        let latin1: [(&str, &[u8]); 1] = [("x-name", b"caf\xe9")];
        assert_eq!(relayed_headers(&latin1).0[0].1, "caf\u{fffd}");
    }
}
