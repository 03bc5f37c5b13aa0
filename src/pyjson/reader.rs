//! The reader of JSON text as Python's `json` module reads it: a cursor over decoded text
//! that checks the grammar without recursion and reads node objects as it goes.

use std::borrow::Cow;

use super::{REPLACEMENT, SyntaxError};
use crate::nodes::{Field, Fields, Node, NodeError};

/// A cursor over decoded JSON text, reading the grammar of Python's `json` module.
pub(super) struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Reader<'a> {
        Reader {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Skips JSON whitespace: space, tab, LF, CR (as Python's `json`).
    pub(super) fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    pub(super) fn error(&self, expected: &'static str) -> SyntaxError {
        let mut at = self.pos.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        SyntaxError {
            expected,
            line,
            column: before[line_start..].chars().count() + 1,
        }
    }

    /// Whitespace, then the end of the text.
    pub(super) fn end(&mut self) -> Result<(), SyntaxError> {
        self.ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("expected the end of the text")),
        }
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> Result<(), SyntaxError> {
        self.ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    /// `word` at the cursor, as a whole token (Python reads `NaNx` as `NaN` then `x`, which
    /// then fails as a missing delimiter, and so do we).
    fn literal(&mut self, word: &str) -> Result<(), SyntaxError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// One node object (or any other value, which is then `NotObject`). The outer error is
    /// a syntax error (the text is not JSON); the inner one a bad entry.
    pub(super) fn node(&mut self) -> Result<Result<Node, NodeError>, SyntaxError> {
        self.ws();
        if self.peek() != Some(b'{') {
            let kind = self.skip_value()?;
            return Ok(Err(NodeError::NotObject(kind)));
        }
        self.pos += 1;
        let mut fields = Fields::default();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(fields.into_node());
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a key in double quotes"));
            }
            let key = self.string()?;
            self.expect(b':', "expected ':'")?;
            self.ws();
            if fields.wants(&key) {
                let value = self.field()?;
                fields.set(&key, value);
            } else {
                fields.skip(&key);
                self.skip_value()?;
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(fields.into_node());
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// The value of a field: strings and integers kept, everything else by kind.
    fn field(&mut self) -> Result<Field<'a>, SyntaxError> {
        match self.peek() {
            Some(b'"') => Ok(Field::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') if !self.bytes[self.pos..].starts_with(b"-I") => {
                let start = self.pos;
                let integer = self.number()?;
                let digits = &self.text[start..self.pos];
                Ok(if integer {
                    Field::Int(Cow::Borrowed(digits))
                } else {
                    Field::Other("a non-integer number")
                })
            }
            _ => Ok(Field::Other(self.skip_value()?)),
        }
    }

    /// A number by Python's pattern `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`; true when it
    /// has neither fraction nor exponent.
    fn number(&mut self) -> Result<bool, SyntaxError> {
        let digits = |r: &mut Reader<'_>| {
            let start = r.pos;
            while matches!(r.peek(), Some(b'0'..=b'9')) {
                r.pos += 1;
            }
            r.pos - start
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.error("expected a value")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') && matches!(self.bytes.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            digits(self);
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let mut at = self.pos + 1;
            if matches!(self.bytes.get(at), Some(b'+' | b'-')) {
                at += 1;
            }
            if matches!(self.bytes.get(at), Some(b'0'..=b'9')) {
                self.pos = at;
                digits(self);
                integer = false;
            }
        }
        Ok(integer)
    }

    /// A string at the cursor (on its `"`), escapes resolved; borrowed when it has none. A
    /// lone surrogate escape reads as U+FFFD.
    pub(super) fn string(&mut self) -> Result<Cow<'a, str>, SyntaxError> {
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek() {
                None => return Err(self.error("expected the end of a string ('\"')")),
                Some(b'"') => {
                    let text = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(text));
                }
                Some(b'\\') => return self.string_rest(self.text[start..self.pos].to_owned()),
                Some(0..=0x1f) => {
                    return Err(self.error("unexpected control character in a string"));
                }
                Some(_) => self.pos += 1,
            }
        }
    }

    /// The rest of a string once an escape made it owned.
    fn string_rest(&mut self, mut text: String) -> Result<Cow<'a, str>, SyntaxError> {
        let mut start = self.pos;
        loop {
            let Some(byte) = self.peek() else {
                return Err(self.error("expected the end of a string ('\"')"));
            };
            match byte {
                b'"' => {
                    text.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    return Ok(Cow::Owned(text));
                }
                b'\\' => {
                    text.push_str(&self.text[start..self.pos]);
                    self.pos += 1;
                    text.push(self.escape()?);
                    start = self.pos;
                }
                0..=0x1f => return Err(self.error("unexpected control character in a string")),
                _ => self.pos += 1,
            }
        }
    }

    /// The escape after a backslash (the cursor past the `\`).
    fn escape(&mut self) -> Result<char, SyntaxError> {
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let first = self.hex4()?;
                if (0xd800..0xdc00).contains(&first) && self.bytes[self.pos..].starts_with(b"\\u") {
                    let back = self.pos;
                    self.pos += 2;
                    let second = self.hex4()?;
                    if (0xdc00..0xe000).contains(&second) {
                        let c = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
                        return Ok(char::from_u32(c).unwrap_or(REPLACEMENT));
                    }
                    // Not a pair: the second escape is read on its own.
                    self.pos = back;
                }
                return Ok(char::from_u32(first).unwrap_or(REPLACEMENT));
            }
            _ => return Err(self.error("invalid escape in a string")),
        };
        self.pos += 1;
        Ok(c)
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let hex = self
            .bytes
            .get(self.pos..self.pos + 4)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .ok_or_else(|| self.error("expected four hex digits after \\u"))?;
        let value = hex.iter().fold(0, |acc, &h| {
            acc * 16 + (h as char).to_digit(16).unwrap_or_default()
        });
        self.pos += 4;
        Ok(value)
    }

    /// Reads one value of any kind and depth without keeping it (containers are walked with a
    /// stack of closers, not recursion); returns its kind as a user would name it.
    pub(super) fn skip_value(&mut self) -> Result<&'static str, SyntaxError> {
        let mut closers: Vec<u8> = Vec::new();
        let mut kind = None;
        loop {
            // A value.
            self.ws();
            let this = match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        closers.push(b'}');
                        self.key()?;
                        kind.get_or_insert("an object");
                        continue;
                    }
                    "an object"
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        closers.push(b']');
                        kind.get_or_insert("an array");
                        continue;
                    }
                    "an array"
                }
                Some(b'"') => {
                    self.string()?;
                    "a string"
                }
                Some(b'-') if self.bytes[self.pos..].starts_with(b"-I") => {
                    self.literal("-Infinity")?;
                    "-Infinity"
                }
                Some(b'-' | b'0'..=b'9') => {
                    if self.number()? {
                        "a number"
                    } else {
                        "a non-integer number"
                    }
                }
                Some(b't') => self.literal("true").map(|()| "a boolean")?,
                Some(b'f') => self.literal("false").map(|()| "a boolean")?,
                Some(b'n') => self.literal("null").map(|()| "null")?,
                Some(b'N') => self.literal("NaN").map(|()| "NaN")?,
                Some(b'I') => self.literal("Infinity").map(|()| "Infinity")?,
                _ => return Err(self.error("expected a value")),
            };
            kind.get_or_insert(this);
            // After a value: close containers, or go on to the next element.
            loop {
                let Some(&closer) = closers.last() else {
                    return Ok(kind.unwrap_or(this));
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if closer == b'}' {
                            self.ws();
                            self.key()?;
                        }
                        break;
                    }
                    Some(b) if b == closer => {
                        self.pos += 1;
                        closers.pop();
                    }
                    _ if closer == b'}' => return Err(self.error("expected ',' or '}'")),
                    _ => return Err(self.error("expected ',' or ']'")),
                }
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Result<(), SyntaxError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a key in double quotes"));
        }
        self.string()?;
        self.expect(b':', "expected ':'")
    }
}
