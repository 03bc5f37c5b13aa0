//! Node lists as the servers answer them and as their files hold them.

use std::net::SocketAddr;
use std::path::Path;

use super::{Value, json};

/// A nodes file as (ip_address, port) pairs; panics unless it is a JSON array of nodes.
pub fn nodes_in_file(path: &Path) -> Vec<(String, u16)> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let list: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text:?}", path.display()));
    nodes_of(&list)
}

/// The exact text a server writes for 127.0.0.1:`port` in a list, to find it in an answer
/// without parsing hundreds of thousands of them.
pub fn listed_form(port: u16) -> String {
    format!(r#"{{"ip_address":"127.0.0.1","port":{port}}}"#)
}

/// The ports of a list of 127.0.0.1 nodes; panics on any other address.
pub fn localhost_ports(listed: &[(String, u16)]) -> Vec<u16> {
    assert!(
        listed.iter().all(|(ip, _)| ip == "127.0.0.1"),
        "only 127.0.0.1 nodes expected: {listed:?}"
    );
    listed.iter().map(|(_, port)| *port).collect()
}

/// A nodes file (JSON text) listing `addrs`.
pub fn nodes_file_of(addrs: &[SocketAddr]) -> String {
    let nodes: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"ip_address": a.ip().to_string(), "port": a.port()}))
        .collect();
    Value::Array(nodes).to_string()
}

/// A node object as request body text.
pub fn node_body_at(ip: &str, port: u16) -> String {
    json!({"ip_address": ip, "port": port}).to_string()
}

pub fn nodes_of(list: &Value) -> Vec<(String, u16)> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|n| {
            (
                n["ip_address"].as_str().unwrap().to_owned(),
                n["port"].as_u64().unwrap() as u16,
            )
        })
        .collect()
}
