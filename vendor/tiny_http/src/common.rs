//! The small HTTP vocabulary shared by requests and responses: status codes, header fields,
//! methods and versions.

use std::cmp::Ordering;
use std::fmt::{self, Display, Formatter};
use std::str::FromStr;

/// Status code of a response, e.g. `StatusCode(404)`.
#[derive(Eq, PartialEq, Copy, Clone, Debug, Ord, PartialOrd, Hash)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// The reason phrase RFC 9110 §15 gives this status code ("Not Found" for 404), or
    /// `"Unknown"`.
    pub fn default_reason_phrase(&self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            421 => "Misdirected Request",
            422 => "Unprocessable Content",
            426 => "Upgrade Required",
            428 => "Precondition Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            507 => "Insufficient Storage",
            _ => "Unknown",
        }
    }
}

impl From<u16> for StatusCode {
    fn from(code: u16) -> StatusCode {
        StatusCode(code)
    }
}

impl PartialEq<u16> for StatusCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

/// One header field line: a name and its value.
#[derive(Debug, Clone)]
pub struct Header {
    /// The field name.
    pub field: HeaderField,
    /// The value without surrounding white space. Bytes that are not UTF-8 (RFC 9110 §5.5
    /// `obs-text`) are replaced by U+FFFD.
    pub value: String,
}

impl Header {
    /// Builds a header for a response. Fails when the name is not a token (RFC 9110 §5.1)
    /// or the value holds a control character other than a tab (CR, LF and NUL would let a
    /// value forge other header lines).
    ///
    /// ```
    /// let header = tiny_http::Header::from_bytes("Content-Type", "text/plain").unwrap();
    /// assert!(header.field.equiv("content-type"));
    /// ```
    #[allow(clippy::result_unit_err)]
    pub fn from_bytes<B1, B2>(name: B1, value: B2) -> Result<Header, ()>
    where
        B1: AsRef<[u8]>,
        B2: AsRef<[u8]>,
    {
        let field = HeaderField::from_bytes(name)?;
        let value = std::str::from_utf8(value.as_ref()).map_err(|_| ())?;
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(());
        }
        Ok(Header {
            field,
            value: value.trim_matches([' ', '\t']).to_owned(),
        })
    }
}

impl FromStr for Header {
    type Err = ();

    /// Parses `Name: value`; no white space is allowed before the colon (RFC 9112 §5.1).
    fn from_str(input: &str) -> Result<Header, ()> {
        let (name, value) = input.split_once(':').ok_or(())?;
        Header::from_bytes(name, value)
    }
}

impl Display for Header {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}: {}", self.field, self.value)
    }
}

/// The name of a header field (`Content-Type`); compared without regard to case.
#[derive(Debug, Clone, Eq)]
pub struct HeaderField(String);

impl HeaderField {
    /// Fails unless `bytes` is a non-empty token (RFC 9110 §5.1, §5.6.2).
    #[allow(clippy::result_unit_err)]
    pub fn from_bytes<B: AsRef<[u8]>>(bytes: B) -> Result<HeaderField, ()> {
        let bytes = bytes.as_ref();
        if bytes.is_empty() || !bytes.iter().copied().all(is_token_byte) {
            return Err(());
        }
        // A token is ASCII.
        Ok(HeaderField(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// The name as received or given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the field `other`, ignoring case.
    pub fn equiv(&self, other: &str) -> bool {
        other.eq_ignore_ascii_case(&self.0)
    }
}

impl FromStr for HeaderField {
    type Err = ();

    fn from_str(s: &str) -> Result<HeaderField, ()> {
        HeaderField::from_bytes(s)
    }
}

impl Display for HeaderField {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        formatter.write_str(&self.0)
    }
}

impl PartialEq for HeaderField {
    fn eq(&self, other: &HeaderField) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

/// RFC 9110 §5.6.2 `tchar`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request method (RFC 9110 §9). Methods are case-sensitive: `get` is a method of its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET` (RFC 9110 §9.3.1)
    Get,
    /// `HEAD` (RFC 9110 §9.3.2)
    Head,
    /// `POST` (RFC 9110 §9.3.3)
    Post,
    /// `PUT` (RFC 9110 §9.3.4)
    Put,
    /// `DELETE` (RFC 9110 §9.3.5)
    Delete,
    /// `CONNECT` (RFC 9110 §9.3.6)
    Connect,
    /// `OPTIONS` (RFC 9110 §9.3.7)
    Options,
    /// `TRACE` (RFC 9110 §9.3.8)
    Trace,
    /// `PATCH` (RFC 5789)
    Patch,
    /// Any other token.
    NonStandard(String),
}

impl Method {
    /// The method as sent, e.g. `"GET"`.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::NonStandard(s) => s,
        }
    }
}

impl FromStr for Method {
    type Err = ();

    /// Fails unless `s` is a token (RFC 9110 §9.1).
    fn from_str(s: &str) -> Result<Method, ()> {
        Ok(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            s if !s.is_empty() && s.bytes().all(is_token_byte) => Method::NonStandard(s.to_owned()),
            _ => return Err(()),
        })
    }
}

impl Display for Method {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        formatter.write_str(self.as_str())
    }
}

/// An HTTP version, `HTTPVersion(1, 1)` for HTTP/1.1.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HTTPVersion(pub u8, pub u8);

impl Display for HTTPVersion {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> Result<(), fmt::Error> {
        write!(formatter, "{}.{}", self.0, self.1)
    }
}

impl Ord for HTTPVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

impl PartialOrd for HTTPVersion {
    fn partial_cmp(&self, other: &HTTPVersion) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<(u8, u8)> for HTTPVersion {
    fn eq(&self, &(major, minor): &(u8, u8)) -> bool {
        self.0 == major && self.1 == minor
    }
}

impl PartialOrd<(u8, u8)> for HTTPVersion {
    fn partial_cmp(&self, &(major, minor): &(u8, u8)) -> Option<Ordering> {
        Some(self.cmp(&HTTPVersion(major, minor)))
    }
}

impl From<(u8, u8)> for HTTPVersion {
    fn from((major, minor): (u8, u8)) -> HTTPVersion {
        HTTPVersion(major, minor)
    }
}

#[cfg(test)]
mod test {
    use super::{Header, Method};

    #[test]
    fn a_header_parses_with_its_value_trimmed() {
        let header: Header = "Content-Type:  text/html ".parse().unwrap();
        assert!(header.field.equiv("content-type"));
        assert_eq!(header.value, "text/html");
        let header: Header = "Time: 20: 34".parse().unwrap();
        assert_eq!(header.value, "20: 34");
        assert!("hello world".parse::<Header>().is_err());
    }

    /// RUSTSEC-2020-0031 (request smuggling through malformed `Transfer-Encoding` headers)
    /// and response splitting through a value holding CR or LF.
    #[test]
    fn header_names_are_tokens_and_values_hold_no_line_breaks() {
        assert!("Transfer-Encoding : chunked".parse::<Header>().is_err());
        assert!(" Transfer-Encoding: chunked".parse::<Header>().is_err());
        assert!("Transfer Encoding: chunked".parse::<Header>().is_err());
        assert!("Transfer-Encoding: chunked ".parse::<Header>().is_ok());
        assert!(Header::from_bytes("X-A", "1\r\nSet-Cookie: x").is_err());
        assert!(Header::from_bytes("X-A", "1\0").is_err());
        assert!(Header::from_bytes("X-A", "a\tb").is_ok());
    }

    #[test]
    fn methods_are_case_sensitive_tokens() {
        assert_eq!("GET".parse::<Method>(), Ok(Method::Get));
        assert_eq!(
            "get".parse::<Method>(),
            Ok(Method::NonStandard("get".into()))
        );
        assert!("G(T".parse::<Method>().is_err());
        assert!("".parse::<Method>().is_err());
    }
}
