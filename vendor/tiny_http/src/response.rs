//! Responses, and the one place where every answer's head is written: the answers the user
//! gives through `Request::respond` and the ones the connection layer gives itself (see
//! `Refusal`) are rendered by `Response::render` alike, so they carry the same `Date`,
//! framing and `Connection` headers.

use std::sync::Arc;
use std::time::SystemTime;

use crate::common::{HTTPVersion, Header, StatusCode};

/// A response body that is shared, not copied: the connection thread writes these very bytes.
pub type SharedBody = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// An answer to a request: a status, header fields and a body held in memory.
///
/// The connection layer writes the framing itself, so these headers cannot be set (adding
/// them does nothing): `Date` (RFC 9110 §6.6.1, always the current time), `Content-Length`
/// (always the body's length), `Connection`, `Keep-Alive`, `Transfer-Encoding`, `Trailer`
/// and `Upgrade`. `Content-Type` holds one value; adding it again replaces it.
#[derive(Clone)]
pub struct Response {
    status_code: StatusCode,
    headers: Vec<Header>,
    body: SharedBody,
    /// The `Content-Length` an answer to `HEAD` declares.
    head_length: HeadLength,
}

/// The `Content-Length` of an answer to `HEAD` (RFC 9110 §9.3.2, §8.6: the length a `GET`
/// would get, or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadLength {
    /// The body's length: the body is what a `GET` would get.
    Body,
    /// This many bytes: the body is not held (a `HEAD` answer relayed from elsewhere).
    Declared(u64),
    /// Unknown: no `Content-Length`.
    Unknown,
}

/// A response rendered for the connection thread: the status line and headers, the body
/// still shared (`None` when there is none to send, as for `HEAD`), and whether the
/// connection closes after it.
pub(crate) struct Rendered {
    pub(crate) head: Vec<u8>,
    pub(crate) body: Option<SharedBody>,
    pub(crate) close: bool,
}

/// What rendering needs to know of the request being answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering {
    /// The request's version: an HTTP/1.0 client is told when the connection stays open.
    pub(crate) version: HTTPVersion,
    /// A `HEAD` request: the head says what a `GET` would get, and no body follows.
    pub(crate) head_request: bool,
    /// Whether the connection closes after this answer.
    pub(crate) close: bool,
}

/// Header fields the connection layer writes itself.
const FRAMING: [&str; 7] = [
    "Connection",
    "Content-Length",
    "Date",
    "Keep-Alive",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
];

impl Response {
    /// A `200` response whose body is shared rather than copied: the connection thread
    /// writes `body` itself, after the head, with `Content-Length` framing.
    pub fn from_shared(body: SharedBody) -> Response {
        Response {
            status_code: StatusCode(200),
            headers: Vec::new(),
            body,
            head_length: HeadLength::Body,
        }
    }

    /// A `200` response with `data` as its body.
    pub fn from_data<D: Into<Vec<u8>>>(data: D) -> Response {
        Response::from_shared(Arc::new(data.into()))
    }

    /// A `200` response with `text` as its body, as `text/plain; charset=UTF-8`.
    pub fn from_string<S: Into<String>>(text: S) -> Response {
        Response::from_data(text.into().into_bytes()).with_header(
            Header::from_bytes("Content-Type", "text/plain; charset=UTF-8")
                .unwrap_or_else(|()| unreachable!("a constant, valid header")),
        )
    }

    /// A response with `status_code` and no body.
    pub fn empty<S: Into<StatusCode>>(status_code: S) -> Response {
        Response::from_data(Vec::new()).with_status_code(status_code)
    }

    /// `{"error":"<reason>"}` as `application/json` with `status_code`: the answer the
    /// connection layer gives when its user supplies none (see `Server::from_listener_with`).
    /// The JSON is written as `serde_json` writes a one-field object.
    pub fn json_error<S: Into<StatusCode>>(status_code: S, reason: &str) -> Response {
        let mut body = String::with_capacity(reason.len() + 12);
        body.push_str("{\"error\":");
        json_string(&mut body, reason);
        body.push('}');
        Response::from_data(body.into_bytes())
            .with_status_code(status_code)
            .with_header(
                Header::from_bytes("Content-Type", "application/json")
                    .unwrap_or_else(|()| unreachable!("a constant, valid header")),
            )
    }

    /// Adds a header; see the type's documentation for the ones that cannot be set.
    pub fn add_header<H: Into<Header>>(&mut self, header: H) {
        let header = header.into();
        if FRAMING.iter().any(|name| header.field.equiv(name)) {
            return;
        }
        if header.field.equiv("Content-Type") {
            if let Some(existing) = self
                .headers
                .iter_mut()
                .find(|h| h.field.equiv("Content-Type"))
            {
                existing.value = header.value;
                return;
            }
        }
        self.headers.push(header);
    }

    /// This response with one more header.
    #[must_use]
    pub fn with_header<H: Into<Header>>(mut self, header: H) -> Response {
        self.add_header(header);
        self
    }

    /// This response with another status code.
    #[must_use]
    pub fn with_status_code<S: Into<StatusCode>>(mut self, code: S) -> Response {
        self.status_code = code.into();
        self
    }

    /// This response, answering a `HEAD` request whose `GET` would get a body of `length`
    /// bytes (`None`: unknown), held elsewhere: a `HEAD` answer relayed from another server.
    /// Its `Content-Length` says `length` (or is left out), whatever this response's own
    /// (empty) body. Answers to other methods are unaffected.
    #[must_use]
    pub fn with_head_length(mut self, length: Option<u64>) -> Response {
        self.head_length = length.map_or(HeadLength::Unknown, HeadLength::Declared);
        self
    }

    /// The status this response answers with.
    pub fn status_code(&self) -> StatusCode {
        self.status_code
    }

    /// The body's length in bytes.
    pub fn data_length(&self) -> usize {
        (*self.body).as_ref().len()
    }

    /// The headers set so far (without the framing ones the connection layer adds).
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// Renders the head of this answer to a request: the status line (always `HTTP/1.1`,
    /// the highest version we conform to, RFC 9110 §2.5), `Date`, the headers, the
    /// `Content-Length` and, when the connection closes, `Connection: close`, or when an
    /// HTTP/1.0 connection stays open, `Connection: keep-alive` (RFC 9112 §9.3). Statuses
    /// 1xx, 204 and 304 and answers to `HEAD` carry no body (RFC 9110 §6.4.1).
    pub(crate) fn render(self, answering: Answering) -> Rendered {
        let status = self.status_code.0;
        let mut head = Vec::with_capacity(160 + 40 * self.headers.len());
        push(&mut head, &["HTTP/1.1 ", &status.to_string(), " "]);
        push(
            &mut head,
            &[self.status_code.default_reason_phrase(), "\r\n"],
        );
        push(
            &mut head,
            &[
                "Date: ",
                &httpdate::fmt_http_date(SystemTime::now()),
                "\r\n",
            ],
        );
        for header in &self.headers {
            push(
                &mut head,
                &[header.field.as_str(), ": ", &header.value, "\r\n"],
            );
        }
        let bodiless = matches!(status, 100..=199 | 204 | 304);
        let length = match (answering.head_request, self.head_length) {
            (true, HeadLength::Declared(n)) => Some(n),
            (true, HeadLength::Unknown) => None,
            _ => Some(self.data_length() as u64),
        };
        if let (false, Some(length)) = (bodiless, length) {
            push(
                &mut head,
                &["Content-Length: ", &length.to_string(), "\r\n"],
            );
        }
        if answering.close {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if answering.version < HTTPVersion(1, 1) {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let send_body = !bodiless && !answering.head_request && self.data_length() > 0;
        Rendered {
            head,
            body: send_body.then_some(self.body),
            close: answering.close,
        }
    }
}

fn push(head: &mut Vec<u8>, parts: &[&str]) {
    for part in parts {
        head.extend_from_slice(part.as_bytes());
    }
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it: `"`, `\` and control
/// characters (`\b \f \n \r \t` by name, the rest as `\u00XX`); nothing else.
fn json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status_code", &self.status_code)
            .field("headers", &self.headers)
            .field("data_length", &self.data_length())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header::from_bytes(name, value).unwrap()
    }

    fn answering(version: HTTPVersion, head_request: bool, close: bool) -> Answering {
        Answering {
            version,
            head_request,
            close,
        }
    }

    fn head_of(rendered: &Rendered) -> String {
        String::from_utf8(rendered.head.clone()).unwrap()
    }

    #[test]
    fn a_shared_body_is_not_copied_and_framed_by_its_length() {
        let body: SharedBody = Arc::new(b"[1,2,3]".to_vec());
        let rendered = Response::from_shared(Arc::clone(&body))
            .with_header(header("Transfer-Encoding", "chunked"))
            .with_header(header("Content-Length", "99"))
            .render(answering(HTTPVersion(1, 1), false, false));
        let head = head_of(&rendered);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\nDate: "), "{head}");
        assert!(head.contains("Content-Length: 7\r\n"), "{head}");
        assert!(!head.contains("Transfer-Encoding"), "{head}");
        assert!(!head.contains("Connection"), "{head}");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
        let sent = rendered.body.expect("a body to send");
        assert!(Arc::ptr_eq(&sent, &body), "the very same bytes, shared");
    }

    #[test]
    fn head_requests_and_empty_bodies_send_no_body() {
        let body: SharedBody = Arc::new(b"[1,2,3]".to_vec());
        let rendered =
            Response::from_shared(body).render(answering(HTTPVersion(1, 1), true, false));
        assert!(rendered.body.is_none(), "HEAD has no body");
        assert!(head_of(&rendered).contains("Content-Length: 7\r\n"));

        let rendered = Response::empty(204).render(answering(HTTPVersion(1, 1), false, false));
        assert!(!head_of(&rendered).contains("Content-Length"));
        assert!(rendered.body.is_none());
    }

    #[test]
    fn a_relayed_head_answer_declares_the_length_a_get_would_get() {
        let relayed = || Response::empty(200).with_head_length(Some(1234));
        let head = relayed().render(answering(HTTPVersion(1, 1), true, false));
        assert!(head_of(&head).contains("Content-Length: 1234\r\n"));
        assert!(head.body.is_none());
        let unknown = Response::empty(200).with_head_length(None);
        let head = unknown.render(answering(HTTPVersion(1, 1), true, false));
        assert!(!head_of(&head).contains("Content-Length"));
        // Another method gets what the body holds.
        let get = relayed().render(answering(HTTPVersion(1, 1), false, false));
        assert!(head_of(&get).contains("Content-Length: 0\r\n"));
    }

    #[test]
    fn the_connection_header_says_what_happens_to_the_connection() {
        let close = Response::empty(200).render(answering(HTTPVersion(1, 1), false, true));
        assert!(head_of(&close).contains("\r\nConnection: close\r\n"));
        assert!(close.close);
        let old_kept = Response::empty(200).render(answering(HTTPVersion(1, 0), false, false));
        assert!(head_of(&old_kept).contains("\r\nConnection: keep-alive\r\n"));
        assert!(head_of(&old_kept).starts_with("HTTP/1.1 200 OK\r\n"));
        let old_closed = Response::empty(200).render(answering(HTTPVersion(1, 0), false, true));
        assert!(head_of(&old_closed).contains("\r\nConnection: close\r\n"));
    }

    #[test]
    fn json_errors_are_escaped_as_serde_json_writes_them() {
        let rendered = Response::json_error(400, "a \"quoted\" \\ tab\t\u{1} é").render(answering(
            HTTPVersion(1, 1),
            false,
            true,
        ));
        let body = rendered.body.clone().unwrap();
        assert_eq!(
            std::str::from_utf8((*body).as_ref()).unwrap(),
            r#"{"error":"a \"quoted\" \\ tab\t\u0001 é"}"#
        );
        let head = head_of(&rendered);
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: application/json\r\n"),
            "{head}"
        );
    }

    #[test]
    fn content_type_is_replaced_not_repeated() {
        let response = Response::from_string("x").with_header(header("content-type", "a/b"));
        let types: Vec<_> = response
            .headers()
            .iter()
            .filter(|h| h.field.equiv("Content-Type"))
            .collect();
        assert_eq!(types.len(), 1);
        assert_eq!(types[0].value, "a/b");
    }
}
