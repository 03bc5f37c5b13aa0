//! Unit tests of the lenient reader: each thing Python's `json` accepts and serde_json does
//! not, each deliberate difference, and the texts that are still not node lists.

use super::*;

const GOOD: &str = r#"{"ip_address": "127.0.0.1", "port": 55000}"#;

fn good() -> Node {
    Node::new("127.0.0.1", 55000).unwrap()
}

/// Reads `[GOOD, entry, GOOD2]` and returns the one skipped entry's reason.
fn reason_for(entry: &str) -> String {
    let text = format!(r#"[{GOOD}, {entry}, {{"ip_address": "127.0.0.2", "port": 1}}]"#);
    let list = read_node_list(text.as_bytes()).unwrap_or_else(|e| panic!("{entry}: {e}"));
    assert_eq!(
        list.nodes,
        [good(), Node::new("127.0.0.2", 1).unwrap()],
        "{entry}: the good entries are kept"
    );
    assert_eq!(list.skipped, 1, "{entry}");
    assert_eq!(list.reasons[0].index, 1);
    list.reasons[0].error.to_string()
}

#[test]
fn the_issue_file_loads_its_good_entry() {
    let text = br#"[{"ip_address": "127.0.0.1", "port": 55000}, {"ip_address": "192.0.2.9", "port": NaN}]"#;
    assert!(serde_json::from_slice::<serde_json::Value>(text).is_err());
    let list = read_node_list(text).unwrap();
    assert_eq!(list.nodes, [good()]);
    assert_eq!(list.skipped, 1);
    assert_eq!(
        list.reasons[0].to_string(),
        r#"entry 1 {"ip_address": "192.0.2.9", "port": NaN}: "port" must be an integer in 1..=65535, got NaN"#
    );
}

#[test]
fn python_values_serde_refuses_cost_only_their_entry() {
    for (entry, says) in [
        (r#"{"ip_address": "127.0.0.3", "port": NaN}"#, "got NaN"),
        (
            r#"{"ip_address": "127.0.0.3", "port": Infinity}"#,
            "got Infinity",
        ),
        (
            r#"{"ip_address": "127.0.0.3", "port": -Infinity}"#,
            "got -Infinity",
        ),
        (
            r#"{"ip_address": NaN, "port": 1}"#,
            "\"ip_address\" must be a string, got NaN",
        ),
        (
            r#"{"ip_address": "127.0.0.3", "port": 1, "seen": NaN}"#,
            "unknown key \"seen\"",
        ),
        (
            r#"{"ip_address": "127.0.0.3", "port": 1e400}"#,
            "got a non-integer number",
        ),
        (
            r#"{"ip_address": "127.0.0.3", "port": 1.0}"#,
            "got a non-integer number",
        ),
        (
            r#"{"ip_address": "127.0.0.3", "port": 99999999999999999999999}"#,
            "\"port\" 99999999999999999999999 is out of range",
        ),
        (
            r#"{"ip_address": "127.0.0.3", "port": -0}"#,
            "\"port\" -0 is out of range",
        ),
        (
            r#"{"ip_address": "\ud800", "port": 1}"#,
            "not a valid address",
        ),
        (
            r#"{"ip_address": "127.0.0.3\udfff", "port": 1}"#,
            "not a valid address",
        ),
        (
            r#"{"ip_address": "127.0.0.3", "ip_address": "127.0.0.4", "port": 1}"#,
            "the key \"ip_address\" appears twice",
        ),
        (
            r#"{"port": 1, "ip_address": "127.0.0.3", "port": 2}"#,
            "the key \"port\" appears twice",
        ),
        (r#"NaN"#, "got NaN"),
        (r#"-Infinity"#, "got -Infinity"),
        (r#"[NaN, {"a": [Infinity]}]"#, "got an array"),
        (r#"12"#, "got a number"),
        (r#"1.5e3"#, "got a non-integer number"),
        (r#"{}"#, "the node has no \"ip_address\""),
    ] {
        let reason = reason_for(entry);
        assert!(reason.contains(says), "{entry}: {reason}");
    }
}

#[test]
fn huge_integers_are_integers_and_their_message_is_short() {
    let digits = "9".repeat(5000);
    let reason = reason_for(&format!(
        r#"{{"ip_address": "127.0.0.3", "port": {digits}}}"#
    ));
    assert!(reason.contains("is out of range"), "{reason}");
    assert!(reason.len() < 120, "{reason}");
}

#[test]
fn escapes_are_python_s() {
    let text = r#"[{"ip_address": "127.0.0.\u0031", "port": 1}, {"ip_address": "a\/b", "port": 1}, {"ip_address": "\ud83d\ude00", "port": 1}]"#;
    let list = read_node_list(text.as_bytes()).unwrap();
    assert_eq!(list.nodes, [Node::new("127.0.0.1", 1).unwrap()]);
    assert!(
        list.reasons[0].error.to_string().contains("\"a/b\""),
        "{:?}",
        list.reasons
    );
    assert!(
        list.reasons[1].error.to_string().contains('\u{1f600}'),
        "a surrogate pair is one character"
    );
    // A high surrogate followed by an escape that is not a low one: each on its own.
    let mut reader = Reader::new(r#""\ud800\u0041""#);
    assert_eq!(reader.string().unwrap(), "\u{fffd}A");
}

#[test]
fn every_encoding_python_detects_reads_the_same() {
    let text = format!("[{GOOD}]");
    let utf16le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let utf16be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let utf32le: Vec<u8> = text
        .chars()
        .flat_map(|c| u32::from(c).to_le_bytes())
        .collect();
    let utf32be: Vec<u8> = text
        .chars()
        .flat_map(|c| u32::from(c).to_be_bytes())
        .collect();
    let with = |bom: &[u8], body: &[u8]| [bom, body].concat();
    for (name, bytes) in [
        ("utf-8", text.as_bytes().to_vec()),
        ("utf-8 with BOM", with(&[0xef, 0xbb, 0xbf], text.as_bytes())),
        ("utf-16-le", utf16le.clone()),
        ("utf-16-be", utf16be.clone()),
        ("utf-16 LE BOM", with(&[0xff, 0xfe], &utf16le)),
        ("utf-16 BE BOM", with(&[0xfe, 0xff], &utf16be)),
        ("utf-32-le", utf32le.clone()),
        ("utf-32-be", utf32be.clone()),
        ("utf-32 LE BOM", with(&[0xff, 0xfe, 0, 0], &utf32le)),
        ("utf-32 BE BOM", with(&[0, 0, 0xfe, 0xff], &utf32be)),
    ] {
        let list = read_node_list(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(list.nodes, [good()], "{name}");
        assert_eq!(
            read_node(&bytes[..]).ok(),
            None,
            "{name}: a list is not a node"
        );
    }
    let body: Vec<u8> = GOOD.encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert_eq!(read_node(&with(&[0xff, 0xfe], &body)), Ok(good()));
    assert_eq!(decode(b"\xef\xbb\xbf[]"), "[]");
    assert_eq!(decode(b"[\0"), "[", "two bytes, second zero: UTF-16-LE");
}

#[test]
fn bytes_invalid_in_their_encoding_cost_only_their_entry() {
    let text = b"[{\"ip_address\": \"caf\xe9.example\", \"port\": 1}, {\"ip_address\": \"127.0.0.1\", \"port\": 55000}]";
    let list = read_node_list(text).unwrap();
    assert_eq!(list.nodes, [good()]);
    assert_eq!(list.skipped, 1);
    // In the structure itself, they are not JSON.
    assert!(matches!(
        read_node_list(b"[\xff]"),
        Err(ListError::NotJson(_))
    ));
}

#[test]
fn nesting_of_any_depth_is_walked_without_recursion() {
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let text =
        format!(r#"[{deep}, {{"ip_address": "127.0.0.1", "port": 55000, "x": {deep}}}, {GOOD}]"#);
    let list = read_node_list(text.as_bytes()).unwrap();
    assert_eq!(list.nodes, [good()]);
    assert_eq!(list.skipped, 2);
    assert!(list.reasons[0].entry.len() < 130, "excerpts are short");
    let unbalanced = format!("[{}", "[{\"a\":".repeat(100_000));
    assert!(matches!(
        read_node_list(unbalanced.as_bytes()),
        Err(ListError::NotJson(_))
    ));
}

#[test]
fn texts_that_are_not_a_list_are_errors() {
    for (text, kind) in [
        ("{}", "an object"),
        (GOOD, "an object"),
        ("null", "null"),
        ("\"[]\"", "a string"),
        ("NaN", "NaN"),
        (" 7 ", "a number"),
    ] {
        assert_eq!(
            read_node_list(text.as_bytes()).unwrap_err(),
            ListError::NotArray(kind),
            "{text}"
        );
    }
    for text in [
        "",
        " ",
        "[",
        "[{",
        "[{\"ip_address\": \"127.0.0.1\", \"port\": 1}",
        "[] []",
        "[1,]",
        "[,1]",
        "['127.0.0.1']",
        "[nan]",
        "[inf]",
        "[+1]",
        "[01]",
        "[1.]",
        "[.5]",
        "[True]",
        "[-NaN]",
        "[NaNx]",
        "[Infinity1]",
        "// c\n[]",
        "[/* c */]",
        "[{\"a\":1,}]",
        "[{a:1}]",
        "[\"a\u{1}\"]",
        "[\"\\x41\"]",
        "[\"\\u12\"]",
        "\u{c}[]",
        "[\u{a0}]",
        "[]\0",
        "[\"unterminated]",
        "{\"a\" 1}",
    ] {
        let err = read_node_list(text.as_bytes()).unwrap_err();
        assert!(matches!(err, ListError::NotJson(_)), "{text:?}: {err}");
    }
    assert_eq!(
        read_node_list(b"[\n  {\"a\" 1}]").unwrap_err().to_string(),
        "not valid JSON: expected ':' at line 2 column 8"
    );
    assert_eq!(
        read_node_list(b"{\"a\": 1}").unwrap_err().to_string(),
        "its top level is an object, not an array"
    );
}

#[test]
fn reasons_are_kept_for_the_first_hundred_skipped_entries() {
    let text = format!("[{}{GOOD}]", "7, ".repeat(1000));
    let list = read_node_list(text.as_bytes()).unwrap();
    assert_eq!(list.nodes, [good()]);
    assert_eq!(list.skipped, 1000);
    assert_eq!(list.reasons.len(), MAX_REASONS);
    assert_eq!(list.reasons[99].index, 99);
}

#[test]
fn excerpts_collapse_whitespace_and_stay_short() {
    let text = format!(
        "[\n  {{\n    \"ip_address\": \"{}\",\n    \"port\": 1\n  }}\n]",
        "a".repeat(300)
    );
    let list = read_node_list(text.as_bytes()).unwrap();
    let entry = &list.reasons[0].entry;
    assert!(entry.starts_with("{ \"ip_address\": \"aaa"), "{entry}");
    assert!(
        entry.ends_with('…') && entry.chars().count() == 121,
        "{entry}"
    );
}

#[test]
fn a_request_body_gets_the_reason_of_its_entry() {
    let err = Node::from_json(br#"{"ip_address": "127.0.0.1", "port": NaN}"#).unwrap_err();
    assert_eq!(err, NodeError::PortNotInteger("NaN"));
    assert_eq!(
        err.to_string(),
        "\"port\" must be an integer in 1..=65535, got NaN"
    );
    assert_eq!(Node::from_json(format!(" {GOOD}\n").as_bytes()), Ok(good()));
    assert_eq!(
        Node::from_json(b"\xef\xbb\xbf{\"ip_address\": \"127.0.0.1\", \"port\": 55000}"),
        Ok(good())
    );
    for body in [&b""[..], b"  ", b"{", b"{} {}", b"{'ip_address': 1}"] {
        let err = Node::from_json(body).unwrap_err();
        assert!(matches!(err, NodeError::NotJson(_)), "{body:?}: {err}");
    }
    // Not JSON wins over a bad entry: the body as a whole must be JSON.
    let err = Node::from_json(br#"{"ip_address": "x y", "port": 1} tail"#).unwrap_err();
    assert!(matches!(err, NodeError::NotJson(_)), "{err}");
}

#[test]
fn an_empty_body_or_empty_object_registers_nothing() {
    for body in [&b""[..], b"  \n", b"{}", b" { } ", b"\xef\xbb\xbf{}"] {
        assert_eq!(Node::from_optional_json(body), Ok(None), "{body:?}");
    }
    assert_eq!(Node::from_optional_json(GOOD.as_bytes()), Ok(Some(good())));
    assert_eq!(
        Node::from_optional_json(b"[]"),
        Err(NodeError::NotObject("an array"))
    );
    assert!(matches!(
        Node::from_optional_json(b"{} x"),
        Err(NodeError::NotJson(_))
    ));
    assert_eq!(
        Node::from_optional_json(br#"{"port": 1}"#),
        Err(NodeError::MissingKey("ip_address"))
    );
}

#[test]
fn good_entries_carry_their_position_in_the_list() {
    let text = format!("[7, {GOOD}, null, {GOOD}]");
    let list = read_node_list(text.as_bytes()).unwrap();
    assert_eq!(list.nodes, [good(), good()]);
    assert_eq!(list.positions, [1, 3]);
}
