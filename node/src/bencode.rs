//! Bencode as cjdns speaks it: a value type, a strict parser and an encoder with cjdns'
//! top-level padding.
//!
//! # Dialect
//!
//! - Integers are `i64`, written without leading zeros; `-0` and an empty body are rejected.
//! - Byte-string lengths have no leading zeros, **except** the length of the first key of the
//!   top-level dictionary, which cjdns pads with ASCII `0`s (`d01:q4:ponge`, `d0002:foi1ee`).
//! - Dictionary keys are byte strings. The parser accepts them in any order (as cjdns does) but
//!   rejects a key that appears twice; the encoder always writes them sorted by raw bytes.
//! - Values may nest at most [`MAX_DEPTH`] levels below the top-level value (the same bound as
//!   cjdns' reader: a value at depth 33 is refused).
//!
//! The encoder can pad the top-level dictionary to a multiple of `align` bytes the way every
//! cjdns 22.x writer does (`align` = 4): ASCII `0`s go between the `d` and the first key's
//! length. An empty dictionary is never padded (`d00e` would not parse).
//!
//! # Guarantees
//!
//! Parsing never panics and never allocates more than the input can justify: a byte string's
//! declared length is checked against the remaining input before anything is copied. Work is
//! linear in the input length.

use std::collections::BTreeMap;
use std::fmt;

use thiserror::Error;

/// Deepest nesting the parser accepts: the top-level value is depth 0 and a value at depth
/// `MAX_DEPTH + 1` is an error (cjdns' `Parser::<32, _>`).
pub const MAX_DEPTH: usize = 32;

/// The alignment cjdns uses for every top-level dictionary it writes.
pub const CJDNS_ALIGN: usize = 4;

/// A bencoded value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// `i…e`
    Int(i64),
    /// `<len>:<bytes>` (not necessarily UTF-8)
    Bytes(Vec<u8>),
    /// `l…e`
    List(Vec<Value>),
    /// `d…e`
    Dict(Dict),
}

/// A bencoded dictionary: byte-string keys kept sorted by their raw bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Dict(BTreeMap<Vec<u8>, Value>);

impl Dict {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self(BTreeMap::new())
    }

    /// Inserts (or replaces) `key`, returning the previous value.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Value>) -> Option<Value> {
        self.0.insert(key.into(), value.into())
    }

    /// Builder form of [`Dict::insert`].
    #[must_use]
    pub fn with(mut self, key: impl Into<Vec<u8>>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) -> Option<Value> {
        self.0.remove(key.as_ref())
    }

    /// The value under `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&Value> {
        self.0.get(key.as_ref())
    }

    /// The integer under `key`, if present and an integer.
    pub fn get_int(&self, key: impl AsRef<[u8]>) -> Option<i64> {
        self.get(key).and_then(Value::as_int)
    }

    /// The byte string under `key`, if present and a byte string.
    pub fn get_bytes(&self, key: impl AsRef<[u8]>) -> Option<&[u8]> {
        self.get(key).and_then(Value::as_bytes)
    }

    /// The byte string under `key`, if present, a byte string and valid UTF-8.
    pub fn get_str(&self, key: impl AsRef<[u8]>) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// The list under `key`, if present and a list.
    pub fn get_list(&self, key: impl AsRef<[u8]>) -> Option<&[Value]> {
        self.get(key).and_then(Value::as_list)
    }

    /// The dictionary under `key`, if present and a dictionary.
    pub fn get_dict(&self, key: impl AsRef<[u8]>) -> Option<&Dict> {
        self.get(key).and_then(Value::as_dict)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> bool {
        self.0.contains_key(key.as_ref())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Value)> {
        self.0.iter().map(|(k, v)| (k.as_slice(), v))
    }

    /// The underlying map.
    pub fn as_map(&self) -> &BTreeMap<Vec<u8>, Value> {
        &self.0
    }

    /// Consumes the dictionary, returning the underlying map.
    pub fn into_map(self) -> BTreeMap<Vec<u8>, Value> {
        self.0
    }
}

impl From<BTreeMap<Vec<u8>, Value>> for Dict {
    fn from(map: BTreeMap<Vec<u8>, Value>) -> Self {
        Self(map)
    }
}

impl<K: Into<Vec<u8>>, V: Into<Value>> FromIterator<(K, V)> for Dict {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl Value {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Self::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The text, if this is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| core::str::from_utf8(b).ok())
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Self::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Self::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The name cjdns' admin API uses for this kind of value (`Int`, `String`, `List`, `Dict`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Int(_) => "Int",
            Self::Bytes(_) => "String",
            Self::List(_) => "List",
            Self::Dict(_) => "Dict",
        }
    }
}

macro_rules! value_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(i: $t) -> Self {
                Self::Int(i64::from(i))
            }
        }
    )*};
}
value_from_int!(i64, i32, i16, i8, u32, u16, u8, bool);

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Bytes(s.into_bytes())
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Self::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Self::Bytes(b)
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Self::List(l)
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Self {
        Self::Dict(d)
    }
}

/// Writes a byte string the way a human wants to read it: text when printable, else hex.
fn fmt_bytes(b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if b.iter().all(|c| (0x20..0x7f).contains(c)) {
        // All printable ASCII, so this is valid UTF-8.
        write!(f, "{:?}", String::from_utf8_lossy(b))
    } else {
        f.write_str("0x")?;
        for c in b {
            write!(f, "{c:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(i) => write!(f, "{i}"),
            Self::Bytes(b) => fmt_bytes(b, f),
            Self::List(l) => f.debug_list().entries(l).finish(),
            Self::Dict(d) => fmt::Debug::fmt(d, f),
        }
    }
}

impl fmt::Debug for Dict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Key<'a>(&'a [u8]);
        impl fmt::Debug for Key<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt_bytes(self.0, f)
            }
        }
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (Key(k), v)))
            .finish()
    }
}

// ------------------------------------------------------------------------------------------------
// Parsing
// ------------------------------------------------------------------------------------------------

/// What is wrong with a bencoded input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a value.
    #[error("unexpected end of input")]
    UnexpectedEof,
    /// A byte that cannot start a value (or continue one) here.
    #[error("unexpected byte 0x{0:02x}")]
    UnexpectedByte(u8),
    /// `ie` or `i-e`.
    #[error("integer without digits")]
    EmptyInteger,
    /// `i01e`, `i-01e`.
    #[error("leading zero in integer")]
    IntegerLeadingZero,
    /// `i-0e`.
    #[error("negative zero")]
    NegativeZero,
    /// The integer does not fit in an `i64`.
    #[error("integer out of range")]
    IntegerOverflow,
    /// `03:foo` outside the one place where cjdns pads.
    #[error("leading zero in string length")]
    LengthLeadingZero,
    /// The declared length does not fit in memory addresses.
    #[error("string length out of range")]
    LengthOverflow,
    /// The declared length runs past the end of the input.
    #[error("string of {declared} bytes runs past the end of input ({available} left)")]
    StringPastEnd {
        /// Length the string declared.
        declared: usize,
        /// Bytes actually left in the input.
        available: usize,
    },
    /// A dictionary key that is not a byte string.
    #[error("dictionary key is not a byte string")]
    KeyNotString,
    /// A dictionary key with no value before the closing `e`.
    #[error("dictionary key without a value")]
    MissingValue,
    /// The same key twice in one dictionary.
    #[error("duplicate dictionary key")]
    DuplicateKey,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Bytes after a complete top-level value.
    #[error("trailing bytes after the value")]
    TrailingBytes,
    /// The top-level value is not a dictionary where one is required.
    #[error("top-level value is not a dictionary")]
    NotADict,
}

/// A parse failure and the byte offset where it was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("bencode: {kind} at byte {offset}")]
pub struct DecodeError {
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// Offset into the input of the offending byte (or the input length at end of input).
    pub offset: usize,
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            kind,
            offset: self.pos,
        }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(DecodeErrorKind::UnexpectedEof))
    }

    fn next(&mut self) -> Result<u8, DecodeError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(self.err(DecodeErrorKind::TooDeep));
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                self.int().map(Value::Int)
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                self.dict(depth).map(Value::Dict)
            }
            b'0'..=b'9' => self.bytes(false).map(Value::Bytes),
            other => Err(self.err(DecodeErrorKind::UnexpectedByte(other))),
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Dict, DecodeError> {
        let mut map = BTreeMap::new();
        // cjdns pads only the first key of the top-level dictionary.
        let mut allow_pad = depth == 0;
        loop {
            let start = self.pos;
            match self.peek()? {
                b'e' => {
                    self.pos += 1;
                    return Ok(Dict(map));
                }
                b'0'..=b'9' => {}
                _ => return Err(self.err(DecodeErrorKind::KeyNotString)),
            }
            let key = self.bytes(allow_pad)?;
            allow_pad = false;
            if self.peek()? == b'e' {
                return Err(self.err(DecodeErrorKind::MissingValue));
            }
            let value = self.value(depth + 1)?;
            if map.insert(key, value).is_some() {
                return Err(DecodeError {
                    kind: DecodeErrorKind::DuplicateKey,
                    offset: start,
                });
            }
        }
    }

    /// After the `i`: digits up to `e`.
    fn int(&mut self) -> Result<i64, DecodeError> {
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let first = self.pos;
        // Accumulate as a negative number so that i64::MIN is representable.
        let mut acc: i64 = 0;
        loop {
            let b = self.peek()?;
            match b {
                b'e' => break,
                b'0'..=b'9' => {
                    if self.pos > first && self.input.get(first) == Some(&b'0') {
                        return Err(DecodeError {
                            kind: DecodeErrorKind::IntegerLeadingZero,
                            offset: first,
                        });
                    }
                    acc = acc
                        .checked_mul(10)
                        .and_then(|a| a.checked_sub(i64::from(b - b'0')))
                        .ok_or_else(|| self.err(DecodeErrorKind::IntegerOverflow))?;
                    self.pos += 1;
                }
                other => return Err(self.err(DecodeErrorKind::UnexpectedByte(other))),
            }
        }
        if self.pos == first {
            return Err(self.err(DecodeErrorKind::EmptyInteger));
        }
        self.pos += 1; // the 'e'
        if negative {
            if acc == 0 {
                return Err(DecodeError {
                    kind: DecodeErrorKind::NegativeZero,
                    offset: first,
                });
            }
            Ok(acc)
        } else {
            acc.checked_neg().ok_or(DecodeError {
                kind: DecodeErrorKind::IntegerOverflow,
                offset: first,
            })
        }
    }

    /// `<len>:<bytes>`; `allow_pad` permits leading zeros in `<len>`.
    fn bytes(&mut self, allow_pad: bool) -> Result<Vec<u8>, DecodeError> {
        let first = self.pos;
        let mut len: usize = 0;
        loop {
            let b = self.next()?;
            match b {
                b':' if self.pos - 1 > first => break,
                b'0'..=b'9' => {
                    if !allow_pad && self.pos - 1 > first && self.input.get(first) == Some(&b'0') {
                        return Err(DecodeError {
                            kind: DecodeErrorKind::LengthLeadingZero,
                            offset: first,
                        });
                    }
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(b - b'0')))
                        .ok_or(DecodeError {
                            kind: DecodeErrorKind::LengthOverflow,
                            offset: first,
                        })?;
                }
                other => {
                    self.pos -= 1;
                    return Err(self.err(DecodeErrorKind::UnexpectedByte(other)));
                }
            }
        }
        let available = self.input.len() - self.pos;
        if len > available {
            return Err(self.err(DecodeErrorKind::StringPastEnd {
                declared: len,
                available,
            }));
        }
        let out = self.input[self.pos..self.pos + len].to_vec();
        self.pos += len;
        Ok(out)
    }
}

/// Parses one value from the start of `input`, returning it and the number of bytes used.
pub fn parse_prefix(input: &[u8]) -> Result<(Value, usize), DecodeError> {
    let mut p = Parser { input, pos: 0 };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// Parses `input`, which must hold exactly one value.
pub fn parse(input: &[u8]) -> Result<Value, DecodeError> {
    let (v, used) = parse_prefix(input)?;
    if used != input.len() {
        return Err(DecodeError {
            kind: DecodeErrorKind::TrailingBytes,
            offset: used,
        });
    }
    Ok(v)
}

/// Parses `input`, which must hold exactly one dictionary (an admin message, a DHT message).
pub fn parse_dict(input: &[u8]) -> Result<Dict, DecodeError> {
    match parse(input)? {
        Value::Dict(d) => Ok(d),
        _ => Err(DecodeError {
            kind: DecodeErrorKind::NotADict,
            offset: 0,
        }),
    }
}

// ------------------------------------------------------------------------------------------------
// Encoding
// ------------------------------------------------------------------------------------------------

fn write_len(len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b':');
}

fn write_bytes(b: &[u8], out: &mut Vec<u8>) {
    write_len(b.len(), out);
    out.extend_from_slice(b);
}

/// Appends the canonical (unpadded) encoding of `value` to `out`.
pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => write_bytes(b, out),
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(d) => {
            out.push(b'd');
            for (k, v) in &d.0 {
                write_bytes(k, out);
                encode_into(v, out);
            }
            out.push(b'e');
        }
    }
}

/// The canonical (unpadded) encoding of `value`.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

/// Inserts cjdns padding after the leading `d` of an encoded, non-empty dictionary.
fn pad_after_d(out: &mut Vec<u8>, align: usize) {
    if align > 1 {
        let pad = (align - out.len() % align) % align;
        out.splice(1..1, core::iter::repeat_n(b'0', pad));
    }
}

/// The encoding of `value` with a top-level dictionary padded to a multiple of `align` bytes,
/// as cjdns' writer does (see the module docs). Other values, empty dictionaries and
/// `align <= 1` are written unpadded.
pub fn encode_padded(value: &Value, align: usize) -> Vec<u8> {
    let mut out = encode(value);
    if matches!(value, Value::Dict(d) if !d.is_empty()) {
        pad_after_d(&mut out, align);
    }
    out
}

/// A dictionary as cjdns writes it: padded to a multiple of [`CJDNS_ALIGN`].
pub fn encode_cjdns(dict: &Dict) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'd');
    for (k, v) in &dict.0 {
        write_bytes(k, &mut out);
        encode_into(v, &mut out);
    }
    out.push(b'e');
    if !dict.is_empty() {
        pad_after_d(&mut out, CJDNS_ALIGN);
    }
    out
}
