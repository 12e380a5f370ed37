//! The "JSON with comments" dialect of `cjdroute.conf`, parsed into bencode values.
//!
//! What cjdns 22.3 accepts (and so do we):
//! - `// …` to end of line and `/* … */` comments; whitespace is space, tab and newline
//!   (we also accept carriage return, which cjdns rejects, so CRLF files load).
//! - Objects, arrays, strings and integers (`-?[0-9]+` as an `i64`; leading zeros are allowed
//!   as cjdns' `str::parse` allows them). No floats, `true`, `false` or `null`.
//! - Strings are raw bytes up to the next `"`; the only escape is `\xHH`.
//! - Strict mode requires `:` after each key and `,` between members and forbids trailing
//!   commas. Lax mode tolerates missing, repeated and trailing commas and missing or repeated
//!   colons.
//! - A key that appears twice keeps its last value.
//!
//! Where cjdns is sloppier than this parser, we report an error instead: an unterminated
//! string or comment, a `/` that does not start a comment (cjdns silently drops it and the next
//! byte), a `\x` escape whose two characters are not both hex digits.
//!
//! The parser is recursive; nesting is bounded by [`MAX_NESTING`] so hostile input cannot
//! exhaust the stack.

use std::collections::BTreeMap;
use std::fmt;

use crate::bencode::{Dict, Value};

/// Deepest nesting of objects and arrays accepted in a config file.
pub const MAX_NESTING: usize = 64;

/// What is wrong with the text of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyntaxErrorKind {
    /// The file ended inside a value.
    UnexpectedEnd,
    /// A character that cannot appear here; `expected` says what could.
    UnexpectedChar {
        /// The offending byte.
        found: u8,
        /// What the parser was looking for.
        expected: &'static str,
    },
    /// `true`, `false` or `null`: cjdns configs use integers instead.
    UnsupportedLiteral,
    /// A number with a fraction or exponent.
    Float,
    /// A run of digits and `-` that is not an `i64`.
    BadInteger,
    /// A backslash escape other than `\xHH`.
    BadEscape,
    /// A string without its closing quote.
    UnterminatedString,
    /// A `/* …` without `*/`.
    UnterminatedComment,
    /// A `/` that does not start `//` or `/*`.
    StraySlash,
    /// Objects and arrays nested deeper than [`MAX_NESTING`].
    TooDeep,
}

impl fmt::Display for SyntaxErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedEnd => f.write_str("unexpected end of file"),
            Self::UnexpectedChar { found, expected } => {
                if found.is_ascii_graphic() {
                    write!(f, "unexpected '{}', expected {expected}", *found as char)
                } else {
                    write!(f, "unexpected byte 0x{found:02x}, expected {expected}")
                }
            }
            Self::UnsupportedLiteral => {
                f.write_str("true/false/null are not supported, use an integer (1 or 0)")
            }
            Self::Float => f.write_str("only integers are supported, not fractions"),
            Self::BadInteger => f.write_str("invalid integer"),
            Self::BadEscape => f.write_str("invalid escape: the only escape is \\xHH"),
            Self::UnterminatedString => f.write_str("string is not terminated"),
            Self::UnterminatedComment => f.write_str("/* comment is not terminated"),
            Self::StraySlash => f.write_str("'/' must start // or /* comment"),
            Self::TooDeep => write!(f, "nesting deeper than {MAX_NESTING} levels"),
        }
    }
}

/// A syntax error and where it is (1-based line and column, in bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong.
    pub kind: SyntaxErrorKind,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (bytes).
    pub column: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.kind
        )
    }
}

/// Something accepted but worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyntaxNote {
    /// The same key twice in one object: the last one wins.
    DuplicateKey { key: Vec<u8>, line: usize },
    /// Non-blank text after the top-level value (cjdns ignores it too).
    TrailingContent { line: usize },
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    line: usize,
    line_start: usize,
    lax: bool,
    notes: Vec<SyntaxNote>,
}

type Result<T> = core::result::Result<T, SyntaxError>;

impl Parser<'_> {
    fn error_at(&self, pos: usize, kind: SyntaxErrorKind) -> SyntaxError {
        // `pos` is never before the start of the current line except for errors reported at
        // the start of a multi-line token, which we attribute to the current line.
        SyntaxError {
            kind,
            line: self.line,
            column: pos.saturating_sub(self.line_start) + 1,
        }
    }

    fn error(&self, kind: SyntaxErrorKind) -> SyntaxError {
        self.error_at(self.pos, kind)
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.line_start = self.pos;
        }
        Some(b)
    }

    /// Skips whitespace and comments; returns the next meaningful byte without consuming it.
    fn skip_blank(&mut self) -> Result<Option<u8>> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => {
                    self.bump();
                }
                Some(b'/') => {
                    let start = self.pos;
                    self.bump();
                    match self.bump() {
                        Some(b'/') => {
                            while let Some(b) = self.bump() {
                                if b == b'\n' {
                                    break;
                                }
                            }
                        }
                        Some(b'*') => loop {
                            match self.bump() {
                                Some(b'*') if self.peek() == Some(b'/') => {
                                    self.bump();
                                    break;
                                }
                                Some(_) => {}
                                None => {
                                    return Err(
                                        self.error_at(start, SyntaxErrorKind::UnterminatedComment)
                                    )
                                }
                            }
                        },
                        _ => return Err(self.error_at(start, SyntaxErrorKind::StraySlash)),
                    }
                }
                other => return Ok(other),
            }
        }
    }

    fn expect_some(&mut self) -> Result<u8> {
        self.skip_blank()?
            .ok_or_else(|| self.error(SyntaxErrorKind::UnexpectedEnd))
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        let b = self.expect_some()?;
        match b {
            b'{' | b'[' if depth >= MAX_NESTING => Err(self.error(SyntaxErrorKind::TooDeep)),
            b'{' => {
                self.bump();
                self.object(depth + 1).map(Value::Dict)
            }
            b'[' => {
                self.bump();
                self.array(depth + 1).map(Value::List)
            }
            b'"' => {
                self.bump();
                self.string().map(Value::Bytes)
            }
            b'-' | b'0'..=b'9' => self.integer().map(Value::Int),
            b't' | b'f' | b'n' => Err(self.error(SyntaxErrorKind::UnsupportedLiteral)),
            found => Err(self.error(SyntaxErrorKind::UnexpectedChar {
                found,
                expected: "a value ({, [, \" or an integer)",
            })),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Dict> {
        let mut map: BTreeMap<Vec<u8>, Value> = BTreeMap::new();
        let mut need_comma = false;
        loop {
            let b = self.expect_some()?;
            match b {
                b'}' => {
                    if !self.lax && !map.is_empty() && !need_comma {
                        return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                            found: b'}',
                            expected: "another member after ','",
                        }));
                    }
                    self.bump();
                    return Ok(Dict::from(map));
                }
                b',' => {
                    if !self.lax && !need_comma {
                        return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                            found: b',',
                            expected: "a key or '}'",
                        }));
                    }
                    self.bump();
                    need_comma = false;
                }
                b'"' => {
                    if !self.lax && need_comma {
                        return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                            found: b'"',
                            expected: "',' or '}'",
                        }));
                    }
                    let line = self.line;
                    self.bump();
                    let key = self.string()?;
                    self.colon()?;
                    let value = self.value(depth)?;
                    if map.contains_key(&key) {
                        self.notes.push(SyntaxNote::DuplicateKey {
                            key: key.clone(),
                            line,
                        });
                    }
                    map.insert(key, value);
                    need_comma = true;
                }
                found => {
                    return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                        found,
                        expected: if need_comma {
                            "',' or '}'"
                        } else {
                            "a key or '}'"
                        },
                    }))
                }
            }
        }
    }

    /// The `:` between a key and its value (optional and repeatable in lax mode).
    fn colon(&mut self) -> Result<()> {
        let mut seen = false;
        loop {
            let b = self.expect_some()?;
            if b != b':' {
                if !seen && !self.lax {
                    return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                        found: b,
                        expected: "':' after the key",
                    }));
                }
                return Ok(());
            }
            if seen && !self.lax {
                return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                    found: b':',
                    expected: "a value after ':'",
                }));
            }
            self.bump();
            seen = true;
        }
    }

    fn array(&mut self, depth: usize) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut need_comma = false;
        loop {
            let b = self.expect_some()?;
            match b {
                b']' => {
                    if !self.lax && !items.is_empty() && !need_comma {
                        return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                            found: b']',
                            expected: "another item after ','",
                        }));
                    }
                    self.bump();
                    return Ok(items);
                }
                b',' => {
                    if !self.lax && !need_comma {
                        return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                            found: b',',
                            expected: "a value or ']'",
                        }));
                    }
                    self.bump();
                    need_comma = false;
                }
                _ => {
                    if !self.lax && need_comma {
                        return Err(self.error(SyntaxErrorKind::UnexpectedChar {
                            found: b,
                            expected: "',' or ']'",
                        }));
                    }
                    items.push(self.value(depth)?);
                    need_comma = true;
                }
            }
        }
    }

    /// After the opening quote.
    fn string(&mut self) -> Result<Vec<u8>> {
        let start = self.pos.saturating_sub(1);
        let start_line = (self.line, self.line_start);
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => {
                    return Err(SyntaxError {
                        kind: SyntaxErrorKind::UnterminatedString,
                        line: start_line.0,
                        column: start - start_line.1 + 1,
                    })
                }
                Some(b'"') => return Ok(out),
                Some(b'\\') => {
                    let at = self.pos - 1;
                    if self.bump() != Some(b'x') {
                        return Err(self.error_at(at, SyntaxErrorKind::BadEscape));
                    }
                    let hi = self.bump().and_then(hex_digit);
                    let lo = self.bump().and_then(hex_digit);
                    match (hi, lo) {
                        (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                        _ => return Err(self.error_at(at, SyntaxErrorKind::BadEscape)),
                    }
                }
                Some(b) => out.push(b),
            }
        }
    }

    fn integer(&mut self) -> Result<i64> {
        let start = self.pos;
        while let Some(b'0'..=b'9' | b'-') = self.peek() {
            self.bump();
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return Err(self.error(SyntaxErrorKind::Float));
        }
        // Digits and '-' are ASCII.
        let text = core::str::from_utf8(&self.input[start..self.pos]).unwrap_or("");
        text.parse::<i64>()
            .map_err(|_| self.error_at(start, SyntaxErrorKind::BadInteger))
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses the whole of `input` as one value in strict or lax mode.
pub(crate) fn parse(
    input: &[u8],
    lax: bool,
) -> core::result::Result<(Value, Vec<SyntaxNote>), SyntaxError> {
    let mut p = Parser {
        input,
        pos: 0,
        line: 1,
        line_start: 0,
        lax,
        notes: Vec::new(),
    };
    let value = p.value(0)?;
    // cjdns stops reading after the top-level value; we do too but say so.
    match p.skip_blank() {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => {
            let line = p.line;
            p.notes.push(SyntaxNote::TrailingContent { line });
        }
    }
    Ok((value, p.notes))
}

/// Writes a value back out in the strict dialect: sorted keys, two-space indentation, empty
/// containers as `{}`/`[]`, bytes outside printable ASCII (and `"`, `\`) as `\xHH`. For
/// printable ASCII strings without `"` or `\` this is byte for byte what Python's
/// `json.dumps(v, indent=2, sort_keys=True)` prints, the form of the captured configs.
pub(crate) fn write_clean(value: &Value, indent: usize, out: &mut String) {
    const STEP: &str = "  ";
    match value {
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Bytes(b) => write_string(b, out),
        Value::List(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&STEP.repeat(indent + 1));
                write_clean(item, indent + 1, out);
                if i + 1 < items.len() {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&STEP.repeat(indent));
            out.push(']');
        }
        Value::Dict(d) => {
            if d.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push_str("{\n");
            let n = d.len();
            for (i, (k, v)) in d.iter().enumerate() {
                out.push_str(&STEP.repeat(indent + 1));
                write_string(k, out);
                out.push_str(": ");
                write_clean(v, indent + 1, out);
                if i + 1 < n {
                    out.push(',');
                }
                out.push('\n');
            }
            out.push_str(&STEP.repeat(indent));
            out.push('}');
        }
    }
}

fn write_string(b: &[u8], out: &mut String) {
    out.push('"');
    for &c in b {
        if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
            out.push(c as char);
        } else {
            out.push_str(&format!("\\x{c:02x}"));
        }
    }
    out.push('"');
}
