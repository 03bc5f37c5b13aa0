//! The node object (SPEC §1): validation with a precise reason for each rejection, the
//! canonical form that decides identity.
//! The address itself (parsing, scope, group) is `address`; reading JSON text is `pyjson`.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;

/// The address part of a node, its group and scope (defined in `address`).
pub use crate::address::{Group, Host, Scope, never_peer};

/// A network node: identity is the canonical (host, port) pair (SPEC §1).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    /// The address, canonical: also what tells entries of one address group apart.
    pub host: Host,
    /// 1..=65535.
    pub port: u16,
}

/// Why a value is not a valid node. Each variant's message says what was wrong, in the terms
/// of the JSON the user sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// The bytes are not JSON at all (as Python's `json` reads it, see `pyjson`); the text
    /// says where.
    NotJson(String),
    /// Valid JSON, but not an object; holds the kind of value it is ("an array").
    NotObject(&'static str),
    /// One of the two keys is absent.
    MissingKey(&'static str),
    /// A key other than `ip_address` and `port` (shortened when long).
    UnknownKey(String),
    /// `ip_address` or `port` appears twice in one object (Python would keep the last; we
    /// refuse rather than guess).
    RepeatedKey(&'static str),
    /// `ip_address` is not a string; holds the kind of value it is.
    AddressNotString(&'static str),
    /// `ip_address` is a string but not an address that can be a node.
    BadAddress {
        /// The text as given.
        address: String,
        /// Why, in the user's terms, with the text to give instead when recognisable.
        reason: String,
    },
    /// `port` is not a JSON integer; holds the kind of value it is ("NaN").
    PortNotInteger(&'static str),
    /// `port` is an integer outside 1..=65535; holds its digits (shortened when long).
    PortOutOfRange(String),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::NotJson(e) => write!(f, "body is not valid JSON ({e})"),
            NodeError::NotObject(kind) => write!(
                f,
                "expected a node object {{\"ip_address\": ..., \"port\": ...}}, got {kind}"
            ),
            NodeError::MissingKey(key) => write!(f, "the node has no \"{key}\""),
            NodeError::UnknownKey(key) => write!(
                f,
                "unknown key \"{key}\": a node has only \"ip_address\" and \"port\""
            ),
            NodeError::RepeatedKey(key) => {
                write!(f, "the key \"{key}\" appears twice in the node")
            }
            NodeError::AddressNotString(kind) => {
                write!(f, "\"ip_address\" must be a string, got {kind}")
            }
            NodeError::BadAddress { address, reason } => {
                write!(
                    f,
                    "\"ip_address\" {:?} is not a valid address: {reason}",
                    shorten(address, 100)
                )
            }
            NodeError::PortNotInteger(kind) => {
                write!(f, "\"port\" must be an integer in 1..=65535, got {kind}")
            }
            NodeError::PortOutOfRange(port) => {
                write!(f, "\"port\" {port} is out of range 1..=65535")
            }
        }
    }
}

impl std::error::Error for NodeError {}

/// `text`, cut after `most` characters with an ellipsis.
pub(crate) fn shorten(text: &str, most: usize) -> Cow<'_, str> {
    match text.char_indices().nth(most) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
    }
}

/// The value of one field of a node object, as a JSON reader found it.
#[derive(Debug)]
pub(crate) enum Field<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// An integer of any size, as its decimal text (`-12`).
    Int(Cow<'a, str>),
    /// Anything else, by the name of its kind ("a boolean", "NaN").
    Other(&'static str),
}

impl Field<'_> {
    /// The kind of value, as a user would name it in an error message.
    fn kind(&self) -> &'static str {
        match self {
            Field::Str(_) => "a string",
            Field::Int(_) => "a number",
            Field::Other(kind) => kind,
        }
    }
}

/// What a JSON reader found in a node object: the two fields, the first other key, and the
/// first key given twice. [`Fields::into_node`] decides, so that every reader gives the same
/// verdict with the same reason.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a> {
    address: Option<Field<'a>>,
    port: Option<Field<'a>>,
    unknown: Option<String>,
    repeated: Option<&'static str>,
}

impl<'a> Fields<'a> {
    /// Whether `key` is one whose value the verdict reads (so the reader must read it, not
    /// skip it).
    pub(crate) fn wants(&self, key: &str) -> bool {
        match key {
            "ip_address" => self.address.is_none(),
            "port" => self.port.is_none(),
            _ => false,
        }
    }

    /// Records the value of `key` (read when [`Fields::wants`] said so).
    pub(crate) fn set(&mut self, key: &str, value: Field<'a>) {
        match key {
            "ip_address" => self.address = Some(value),
            "port" => self.port = Some(value),
            _ => {}
        }
    }

    /// Records a key whose value is not read: an unknown key, or a repeated one.
    pub(crate) fn skip(&mut self, key: &str) {
        match key {
            "ip_address" => self.repeated = self.repeated.or(Some("ip_address")),
            "port" => self.repeated = self.repeated.or(Some("port")),
            _ if self.unknown.is_none() => self.unknown = Some(shorten(key, 64).into_owned()),
            _ => {}
        }
    }

    /// The verdict of SPEC §1 on these fields.
    pub(crate) fn into_node(self) -> Result<Node, NodeError> {
        if let Some(key) = self.unknown {
            return Err(NodeError::UnknownKey(key));
        }
        if let Some(key) = self.repeated {
            return Err(NodeError::RepeatedKey(key));
        }
        let address = match self.address {
            None => return Err(NodeError::MissingKey("ip_address")),
            Some(Field::Str(address)) => address,
            Some(other) => return Err(NodeError::AddressNotString(other.kind())),
        };
        let port = match self.port {
            None => return Err(NodeError::MissingKey("port")),
            Some(Field::Int(digits)) => digits,
            Some(other) => return Err(NodeError::PortNotInteger(other.kind())),
        };
        let port = match port.parse::<u16>() {
            Ok(p @ 1..=65535) => p,
            _ => return Err(NodeError::PortOutOfRange(shorten(&port, 24).into_owned())),
        };
        Ok(Node {
            host: Host::parse(&address)?,
            port,
        })
    }
}

/// The kind of a serde_json value, as a user would name it in an error message.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a non-integer number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Node {
    /// Builds a node from a host text and a port, as given on the command line.
    pub fn new(host: &str, port: u16) -> Result<Node, NodeError> {
        if port == 0 {
            return Err(NodeError::PortOutOfRange("0".into()));
        }
        Ok(Node {
            host: Host::parse(host)?,
            port,
        })
    }

    /// Parses a request body: JSON text holding one node object, read as Python's `json`
    /// reads it (see `pyjson`), so `{"ip_address": "127.0.0.1", "port": NaN}` is told that
    /// the port is not an integer rather than that the body is not JSON.
    pub fn from_json(body: &[u8]) -> Result<Node, NodeError> {
        crate::pyjson::read_node(body)
    }

    /// Parses a body that may register a node (`GET /nodes/`, SPEC §2): `Ok(None)` for an
    /// empty (or all-whitespace) body and for `{}`, otherwise as [`Node::from_json`].
    pub fn from_optional_json(body: &[u8]) -> Result<Option<Node>, NodeError> {
        crate::pyjson::read_optional_node(body)
    }

    /// Validates a serde_json value as a node object (SPEC §1).
    pub fn from_value(value: &Value) -> Result<Node, NodeError> {
        let object = match value {
            Value::Object(object) => object,
            other => return Err(NodeError::NotObject(kind(other))),
        };
        let mut fields = Fields::default();
        for (key, value) in object {
            if !fields.wants(key) {
                fields.skip(key);
                continue;
            }
            let field = match value {
                Value::String(text) => Field::Str(Cow::Borrowed(text)),
                Value::Number(n) if n.is_u64() || n.is_i64() => Field::Int(n.to_string().into()),
                other => Field::Other(kind(other)),
            };
            fields.set(key, field);
        }
        fields.into_node()
    }

    /// The `http://host:port` origin of this node, for requests to it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{self}{path}")
    }

    /// The node's address group (SPEC §11); within a group, entries are told apart by
    /// [`Node::host`](Node).
    pub fn group(&self) -> Group {
        self.host.group()
    }
}

/// `host:port`, with brackets around IPv6 addresses.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl Serialize for Host {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // The text `Display` gives, written at once: a node's address is serialized for
            // every answer, list and file, and `collect_str` escapes each piece apart.
            Host::Ip(IpAddr::V4(ip)) => {
                let mut text = [0u8; 15];
                let len = dotted_quad(ip.octets(), &mut text);
                let text = std::str::from_utf8(&text[..len]).map_err(serde::ser::Error::custom)?;
                serializer.serialize_str(text)
            }
            _ => serializer.collect_str(self),
        }
    }
}

/// Writes `octets` as `a.b.c.d` (what `Ipv4Addr`'s `Display` writes) into `out`; returns the
/// length, at most 15.
fn dotted_quad(octets: [u8; 4], out: &mut [u8; 15]) -> usize {
    let mut len = 0;
    for (i, octet) in octets.into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut object = serializer.serialize_struct("Node", 2)?;
        object.serialize_field("ip_address", &self.host)?;
        object.serialize_field("port", &self.port)?;
        object.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<Node, NodeError> {
        Node::from_value(&value)
    }

    #[test]
    fn an_ipv4_address_serializes_as_it_displays() {
        for octets in [
            [0, 0, 0, 1],
            [127, 0, 0, 1],
            [9, 10, 99, 100],
            [255, 254, 200, 109],
        ] {
            let ip = std::net::Ipv4Addr::from(octets);
            let node = Node {
                host: Host::Ip(IpAddr::V4(ip)),
                port: 55000,
            };
            let want = format!(r#"{{"ip_address":"{ip}","port":55000}}"#);
            assert_eq!(serde_json::to_string(&node).unwrap(), want);
        }
        for octet in 0..=255u8 {
            let ip = std::net::Ipv4Addr::new(octet, octet, 1, octet);
            let host = Host::Ip(IpAddr::V4(ip));
            assert_eq!(serde_json::to_string(&host).unwrap(), format!("\"{ip}\""));
        }
        let named = Host::parse("seed.example.com").unwrap();
        assert_eq!(
            serde_json::to_string(&named).unwrap(),
            r#""seed.example.com""#
        );
    }

    #[test]
    fn valid_nodes_are_canonicalised() {
        let cases = [
            (
                json!({"ip_address": "127.0.0.1", "port": 55000}),
                "127.0.0.1",
                55000,
            ),
            (
                json!({"port": 1, "ip_address": "10.0.0.255"}),
                "10.0.0.255",
                1,
            ),
            (
                json!({"ip_address": "0:0:0:0:0:0:0:1", "port": 65535}),
                "::1",
                65535,
            ),
            (
                json!({"ip_address": "FE80::0001", "port": 80}),
                "fe80::1",
                80,
            ),
            (
                json!({"ip_address": "::ffff:1.2.3.4", "port": 80}),
                "1.2.3.4",
                80,
            ),
            (
                json!({"ip_address": "Seed.Example.COM", "port": 42020}),
                "seed.example.com",
                42020,
            ),
            (
                json!({"ip_address": "localhost", "port": 8}),
                "localhost",
                8,
            ),
            (json!({"ip_address": "a-b.c1", "port": 8}), "a-b.c1", 8),
            (
                json!({"ip_address": "x".repeat(63), "port": 8}),
                &"x".repeat(63),
                8,
            ),
            (
                json!({"ip_address": "1.2.3.example", "port": 8}),
                "1.2.3.example",
                8,
            ),
        ];
        for (input, host, port) in cases {
            let node = parse(input.clone()).unwrap_or_else(|e| panic!("{input} rejected: {e}"));
            assert_eq!(node.host.to_string(), host, "{input}");
            assert_eq!(node.port, port, "{input}");
        }
    }

    #[test]
    fn invalid_nodes_are_rejected_with_their_reason() {
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        let cases: Vec<(Value, &str)> = vec![
            (json!([1, 2]), "got an array"),
            (json!("127.0.0.1:55000"), "got a string"),
            (json!(null), "got null"),
            (json!({"port": 55000}), "no \"ip_address\""),
            (json!({"ip_address": "127.0.0.1"}), "no \"port\""),
            (json!({}), "no \"ip_address\""),
            (
                json!({"ip_address": "127.0.0.1", "port": 1, "name": "x"}),
                "unknown key \"name\"",
            ),
            (
                json!({"ip_address": 127, "port": 1}),
                "must be a string, got a number",
            ),
            (
                json!({"ip_address": null, "port": 1}),
                "must be a string, got null",
            ),
            (json!({"ip_address": "", "port": 1}), "it is empty"),
            (
                json!({"ip_address": "0.0.0.0", "port": 1}),
                "unspecified address",
            ),
            (
                json!({"ip_address": "::", "port": 1}),
                "unspecified address",
            ),
            (
                json!({"ip_address": "[::1]", "port": 1}),
                "without brackets",
            ),
            (
                json!({"ip_address": "::1::2", "port": 1}),
                "not a valid IPv6",
            ),
            (
                json!({"ip_address": "fe80::1%eth0", "port": 1}),
                "zone index (%eth0)",
            ),
            (
                json!({"ip_address": "256.1.1.1", "port": 1}),
                "not a valid IPv4",
            ),
            (
                json!({"ip_address": "1.2.3", "port": 1}),
                "not a valid IPv4",
            ),
            (
                json!({"ip_address": "01.2.3.4", "port": 1}),
                "not a valid IPv4",
            ),
            (json!({"ip_address": "a..b", "port": 1}), "label is empty"),
            (
                json!({"ip_address": "example.com.", "port": 1}),
                "without the final dot",
            ),
            (
                json!({"ip_address": "-a.com", "port": 1}),
                "start or end with '-'",
            ),
            (
                json!({"ip_address": "a-.com", "port": 1}),
                "start or end with '-'",
            ),
            (
                json!({"ip_address": "a_b.com", "port": 1}),
                "only letters, digits",
            ),
            (json!({"ip_address": "a b", "port": 1}), "no spaces"),
            (json!({"ip_address": "h\u{e9}.com", "port": 1}), "xn-- form"),
            (
                json!({"ip_address": "x".repeat(64), "port": 1}),
                "at most 63 characters",
            ),
            (
                json!({"ip_address": long_name, "port": 1}),
                "at most 253 characters",
            ),
            (
                json!({"ip_address": "127.0.0.1", "port": "55000"}),
                "got a string",
            ),
            (
                json!({"ip_address": "127.0.0.1", "port": 55000.0}),
                "got a non-integer number",
            ),
            (
                json!({"ip_address": "127.0.0.1", "port": 1.5}),
                "got a non-integer number",
            ),
            (json!({"ip_address": "127.0.0.1", "port": null}), "got null"),
            (
                json!({"ip_address": "127.0.0.1", "port": true}),
                "got a boolean",
            ),
            (
                json!({"ip_address": "127.0.0.1", "port": 0}),
                "0 is out of range",
            ),
            (
                json!({"ip_address": "127.0.0.1", "port": -1}),
                "-1 is out of range",
            ),
            (
                json!({"ip_address": "127.0.0.1", "port": 65536}),
                "65536 is out of range",
            ),
            (
                json!({"ip_address": "127.0.0.1", "port": u64::MAX}),
                "out of range",
            ),
        ];
        for (input, reason) in cases {
            let err = parse(input.clone()).expect_err(&input.to_string());
            assert!(
                err.to_string().contains(reason),
                "{input}: {err} lacks {reason:?}"
            );
        }
    }

    #[test]
    fn bodies_that_are_not_json_say_so() {
        for body in [&b""[..], b"{", b"ip_address=1.2.3.4&port=5", b"\xff\xfe"] {
            let err = Node::from_json(body).unwrap_err();
            assert!(matches!(err, NodeError::NotJson(_)), "{body:?}: {err}");
            assert!(err.to_string().starts_with("body is not valid JSON"));
        }
    }

    #[test]
    fn identity_is_the_canonical_pair() {
        let a = parse(json!({"ip_address": "0:0:0:0:0:0:0:1", "port": 5})).unwrap();
        let b = parse(json!({"ip_address": "::1", "port": 5})).unwrap();
        let c = parse(json!({"ip_address": "::1", "port": 6})).unwrap();
        let d = parse(json!({"ip_address": "LocalHost", "port": 5})).unwrap();
        let e = parse(json!({"ip_address": "localhost", "port": 5})).unwrap();
        assert_eq!(a, b);
        assert_ne!(b, c);
        assert_eq!(d, e);
        assert_ne!(a, d, "a hostname and an IP are different nodes");
    }

    #[test]
    fn nodes_serialize_in_the_original_file_format() {
        let node = Node::new("0:0:0:0:0:0:0:1", 55000).unwrap();
        assert_eq!(
            serde_json::to_string(&node).unwrap(),
            r#"{"ip_address":"::1","port":55000}"#
        );
        assert_eq!(node.to_string(), "[::1]:55000");
        assert_eq!(node.url("/nodes/"), "http://[::1]:55000/nodes/");
        assert_eq!(
            Node::new("10.1.2.3", 7).unwrap().url("/"),
            "http://10.1.2.3:7/"
        );
    }

    #[test]
    fn loopback_is_recognised_in_every_form() {
        for host in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(Host::parse(host).unwrap().is_loopback(), "{host}");
        }
        // `localhost` always resolves to loopback (RFC 6761 §6.3).
        assert!(Host::parse("localhost").unwrap().is_loopback());
        for host in ["10.0.0.1", "2001:db8::2", "localhost.example.com"] {
            assert!(!Host::parse(host).unwrap().is_loopback(), "{host}");
        }
    }
}
