//! The one reader of node JSON (SPEC §1, §4): request bodies, the nodes file at start, and a
//! peer's `/nodes/` answer. It reads what Python's `json.loads` reads — and so whatever the
//! original (Python/Flask) wrote — and in a list it skips each bad entry with a reason while
//! keeping the good ones. A text that is not a JSON array at all is still an error.
//!
//! What seedmesh accepts, beyond RFC 8259 JSON (for the README):
//!
//! - `NaN`, `Infinity` and `-Infinity` as values, as Python writes them. A node holding one
//!   (`"port": NaN`) is a bad entry with its reason ("\"port\" must be an integer…, got NaN");
//!   the rest of the list is kept.
//! - The encodings `json.loads` detects on bytes: UTF-8 with or without a byte-order mark,
//!   UTF-16 and UTF-32 (either byte order, with a BOM or recognised by their zero bytes).
//! - Lone surrogate escapes (`"\ud800"`, which Python writes for such strings) and bytes that
//!   are not valid in the encoding read as U+FFFD. Python keeps the former and refuses the
//!   whole text for the latter; here either only makes its own entry bad (no address holds
//!   U+FFFD).
//! - Integers of any size (a `port` of `1e30`'s digits is "out of range", not "not an
//!   integer"); Python refuses texts with integers over 4,300 digits. Numbers beyond `f64`
//!   (`1e400`) are numbers (Python reads infinity); as a port, they are not integers.
//! - Nesting of any depth (checked, not kept below the fields of an entry); Python stops near
//!   1,000 levels.
//!
//! Refused on purpose, unlike Python: a node object naming `ip_address` or `port` twice
//! (Python keeps the last; a reader that guesses differently from another is how requests get
//! smuggled) is a bad entry. Refused as Python refuses them: single quotes, comments, trailing
//! commas, `nan`/`inf`, `+1`, leading zeros, control characters inside strings, whitespace
//! other than space, tab, CR and LF, and anything after the top-level value.

use std::borrow::Cow;
use std::fmt;

use crate::nodes::{Node, NodeError, shorten};

/// Most skipped entries of one list whose reasons are kept; the rest are only counted.
pub const MAX_REASONS: usize = 100;

/// The entries of a node list: the good ones, and why the others were skipped.
#[derive(Debug, Default)]
pub struct NodeList {
    /// The valid entries, in the order of the list (duplicates included: the caller decides).
    pub nodes: Vec<Node>,
    /// The position in the list (from 0) of each of `nodes`, for warnings.
    pub positions: Vec<u32>,
    /// How many entries were skipped.
    pub skipped: usize,
    /// The first [`MAX_REASONS`] skipped entries with their reasons.
    pub reasons: Vec<Skipped>,
}

/// One skipped entry of a node list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its position in the list, from 0.
    pub index: usize,
    /// Its text as written, whitespace collapsed, at most 120 characters.
    pub entry: String,
    /// Why it is not a node.
    pub error: NodeError,
}

/// `entry 3 {"ip_address": "x y", "port": 1}: "ip_address" "x y" is not a valid address: …`
impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry {} {}: {}", self.index, self.entry, self.error)
    }
}

/// Where a text stops being JSON: what was expected there, by line and column (from 1,
/// columns in characters of the decoded text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What the reader expected, e.g. "expected ',' or ']'".
    pub expected: &'static str,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.expected, self.line, self.column
        )
    }
}

/// Why a text is not a node list at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListError {
    /// Not JSON (garbled, truncated, empty).
    NotJson(SyntaxError),
    /// JSON, but its top level is not an array; holds the kind of value it is.
    NotArray(&'static str),
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::NotJson(e) => write!(f, "not valid JSON: {e}"),
            ListError::NotArray(kind) => write!(f, "its top level is {kind}, not an array"),
        }
    }
}

impl std::error::Error for ListError {}

/// Reads a node list: a JSON array of node objects. Bad entries are skipped and counted, the
/// first [`MAX_REASONS`] with their reason; a text that is not an array is an error.
pub fn read_node_list(bytes: &[u8]) -> Result<NodeList, ListError> {
    let text = decode(bytes);
    let mut reader = Reader::new(&text);
    reader.ws();
    if reader.peek() != Some(b'[') {
        let kind = reader.skip_value().map_err(ListError::NotJson)?;
        reader.end().map_err(ListError::NotJson)?;
        return Err(ListError::NotArray(kind));
    }
    reader.pos += 1;
    let mut list = NodeList::default();
    reader.ws();
    if reader.peek() == Some(b']') {
        reader.pos += 1;
    } else {
        for index in 0.. {
            reader.ws();
            let start = reader.pos;
            match reader.node().map_err(ListError::NotJson)? {
                Ok(node) => {
                    list.nodes.push(node);
                    list.positions
                        .push(u32::try_from(index).unwrap_or(u32::MAX));
                }
                Err(error) => {
                    list.skipped += 1;
                    if list.reasons.len() < MAX_REASONS {
                        list.reasons.push(Skipped {
                            index,
                            entry: excerpt(&text[start..reader.pos]),
                            error,
                        });
                    }
                }
            }
            reader.ws();
            match reader.peek() {
                Some(b',') => reader.pos += 1,
                Some(b']') => {
                    reader.pos += 1;
                    break;
                }
                _ => return Err(ListError::NotJson(reader.error("expected ',' or ']'"))),
            }
        }
    }
    reader.end().map_err(ListError::NotJson)?;
    Ok(list)
}

/// Reads a request body holding one node object (what [`Node::from_json`] does).
pub fn read_node(bytes: &[u8]) -> Result<Node, NodeError> {
    let text = decode(bytes);
    let mut reader = Reader::new(&text);
    reader.ws();
    let verdict = reader.node().map_err(not_json)?;
    reader.end().map_err(not_json)?;
    verdict
}

/// Like [`read_node`], but an empty body or `{}` is `Ok(None)`.
pub fn read_optional_node(bytes: &[u8]) -> Result<Option<Node>, NodeError> {
    let text = decode(bytes);
    let mut reader = Reader::new(&text);
    reader.ws();
    if reader.peek().is_none() {
        return Ok(None);
    }
    let before = reader.pos;
    if reader.peek() == Some(b'{') {
        reader.pos += 1;
        reader.ws();
        if reader.peek() == Some(b'}') {
            reader.pos += 1;
            reader.end().map_err(not_json)?;
            return Ok(None);
        }
        reader.pos = before;
    }
    let verdict = reader.node().map_err(not_json)?;
    reader.end().map_err(not_json)?;
    verdict.map(Some)
}

fn not_json(e: SyntaxError) -> NodeError {
    NodeError::NotJson(e.to_string())
}

/// An entry's text for a warning: whitespace runs collapsed to one space, at most 120
/// characters.
fn excerpt(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    shorten(&collapsed, 120).into_owned()
}

const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// Decodes bytes as Python's `json.loads` does (`json.detect_encoding`): a UTF-32 or UTF-16
/// byte-order mark, a UTF-8 one, else the pattern of zero bytes in the first four bytes
/// (JSON text starts with ASCII), else UTF-8. Byte sequences that are not valid in the
/// detected encoding read as U+FFFD. Borrows when the text is BOM-less valid UTF-8.
pub fn decode(bytes: &[u8]) -> Cow<'_, str> {
    match bytes {
        [0, 0, 0xfe, 0xff, rest @ ..] => utf32(rest, u32::from_be_bytes),
        [0xff, 0xfe, 0, 0, rest @ ..] => utf32(rest, u32::from_le_bytes),
        [0xfe, 0xff, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [0xff, 0xfe, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xef, 0xbb, 0xbf, rest @ ..] => String::from_utf8_lossy(rest),
        [0, 0, _, _, ..] => utf32(bytes, u32::from_be_bytes),
        [0, _, _, _, ..] | [0, _] => utf16(bytes, u16::from_be_bytes),
        [_, 0, 0, 0, ..] => utf32(bytes, u32::from_le_bytes),
        [_, 0, _, _, ..] | [_, 0] => utf16(bytes, u16::from_le_bytes),
        _ => String::from_utf8_lossy(bytes),
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Cow<'static, str> {
    let units = bytes.chunks(2).map(|c| match *c {
        [a, b] => unit([a, b]),
        _ => 0xdc00, // an odd last byte: a lone surrogate, read as U+FFFD
    });
    Cow::Owned(
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(REPLACEMENT))
            .collect(),
    )
}

fn utf32(bytes: &[u8], unit: fn([u8; 4]) -> u32) -> Cow<'static, str> {
    Cow::Owned(
        bytes
            .chunks(4)
            .map(|c| match *c {
                [a, b, c, d] => char::from_u32(unit([a, b, c, d])).unwrap_or(REPLACEMENT),
                _ => REPLACEMENT,
            })
            .collect(),
    )
}

mod reader;

use reader::Reader;

#[cfg(test)]
mod tests;
