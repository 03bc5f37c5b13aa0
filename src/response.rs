//! An answer as plain data: status, the few headers the API sets, and the body. `routes`
//! decides it, `server` alone turns it into bytes on a socket.

use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::membership::Snapshot;
use crate::nodes::Node;

/// The Content-Type of every JSON answer.
pub const JSON: &str = "application/json";

/// A response, as plain data.
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The `Content-Type` header: `Some(JSON)` for every JSON body.
    pub content_type: Option<&'static str>,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
    /// The `Retry-After` header of a 429, in whole seconds.
    pub retry_after: Option<u64>,
    pub body: Payload,
}

/// A response body.
#[derive(Debug, Clone)]
pub enum Payload {
    Empty,
    Owned(Vec<u8>),
    /// The committed list's JSON (its vouched nodes), shared rather than copied.
    List(Arc<Snapshot>),
    /// A sample of the known nodes (`GET /nodes/` beyond `--list_limit`, `?limit=N`), as
    /// nodes; their JSON array is made on first use. The simulator reads the nodes without
    /// making it.
    Sample(Vec<Node>, OnceLock<Vec<u8>>),
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        match self {
            Payload::Empty => &[],
            Payload::Owned(bytes) => bytes,
            Payload::List(snapshot) => snapshot.known_json(),
            // Serializing our own types to memory cannot fail.
            Payload::Sample(nodes, json) => {
                json.get_or_init(|| serde_json::to_vec(nodes).unwrap_or_default())
            }
        }
    }
}

impl Response {
    /// A body-less answer.
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            allow: None,
            retry_after: None,
            body: Payload::Empty,
        }
    }

    /// `value` as JSON.
    pub fn json(status: u16, value: &impl Serialize) -> Response {
        // Serializing our own types to memory cannot fail.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        Response {
            body: Payload::Owned(bytes),
            content_type: Some(JSON),
            ..Response::empty(status)
        }
    }

    /// The committed list's vouched nodes, oldest first.
    pub fn list(snapshot: Arc<Snapshot>) -> Response {
        Response {
            body: Payload::List(snapshot),
            content_type: Some(JSON),
            ..Response::empty(200)
        }
    }

    /// A sample of the known nodes, as a JSON array.
    pub fn sample(nodes: Vec<Node>) -> Response {
        Response {
            body: Payload::Sample(nodes, OnceLock::new()),
            content_type: Some(JSON),
            ..Response::empty(200)
        }
    }

    /// `{"error": message}` with `status`: the one shape of every error this process sends.
    pub fn error(status: u16, message: impl Into<String>) -> Response {
        #[derive(Serialize)]
        struct ErrorBody {
            error: String,
        }
        Response::json(
            status,
            &ErrorBody {
                error: message.into(),
            },
        )
    }

    /// 405 with the `Allow` header.
    pub fn method_not_allowed(method: &str, allow: &'static str) -> Response {
        Response {
            allow: Some(allow),
            ..Response::error(
                405,
                format!("method {method} is not allowed here; allowed: {allow}"),
            )
        }
    }
}
