//! A small private bencode codec, just enough for CJDHT messages.
//!
//! It reads the way cjdns 22.3's reader (`cjdns-bencode` `standard::Parser::<32, true>`) does:
//!
//! - integers are `i64` without leading zeros; `-0` and `ie` are refused;
//! - byte-string lengths have no leading zeros, except the first key of the top-level
//!   dictionary, whose length may carry any number of ASCII `0`s (cjdns' alignment padding);
//! - keys may come in any order; a repeated key replaces the earlier value;
//! - nesting deeper than [`MAX_DEPTH`] levels is refused;
//! - bytes after the top-level value are left to the caller (cjdns logs and ignores them).
//!
//! It writes keys sorted by raw bytes and pads the top-level dictionary to a multiple of four
//! bytes by putting ASCII `0`s between the `d` and the first key's length, as every cjdns 22.x
//! writer does.
//!
//! Parsing never panics and never allocates more than the input justifies (a declared string
//! length is checked against the remaining input first).

use std::collections::BTreeMap;

use thiserror::Error;

/// Deepest nesting accepted below the top-level value.
pub(crate) const MAX_DEPTH: u32 = 32;

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `i…e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(Vec<u8>),
    /// `l…e`
    List(Vec<Value>),
    /// `d…e`
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// Why bytes are not bencode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BencodeError {
    /// The input ended inside a value.
    #[error("bencode: unexpected end of input at byte {0}")]
    Eof(usize),
    /// A byte that cannot start or continue a value here.
    #[error("bencode: unexpected byte 0x{byte:02x} at byte {offset}")]
    UnexpectedByte {
        /// The byte.
        byte: u8,
        /// Where it is.
        offset: usize,
    },
    /// Leading zeros in an integer or a string length, `-0`, or an integer without digits.
    #[error("bencode: non-canonical number at byte {0}")]
    BadNumber(usize),
    /// A number that does not fit.
    #[error("bencode: number out of range at byte {0}")]
    Overflow(usize),
    /// Nesting deeper than 32 levels.
    #[error("bencode: nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The top-level value is not a dictionary.
    #[error("bencode: top-level value is not a dictionary")]
    NotADict,
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, BencodeError> {
        let b = *self
            .input
            .get(self.pos)
            .ok_or(BencodeError::Eof(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn value(&mut self, depth: u32) -> Result<Value, BencodeError> {
        let start = self.pos;
        let b = self.byte()?;
        self.value_from(b, start, depth)
    }

    fn value_from(&mut self, b: u8, start: usize, depth: u32) -> Result<Value, BencodeError> {
        if depth > MAX_DEPTH {
            return Err(BencodeError::TooDeep);
        }
        match b {
            b'i' => self.int().map(Value::Int),
            b'l' => {
                let mut items = Vec::new();
                loop {
                    let at = self.pos;
                    let b = self.byte()?;
                    if b == b'e' {
                        return Ok(Value::List(items));
                    }
                    items.push(self.value_from(b, at, depth + 1)?);
                }
            }
            b'd' => {
                let mut map = BTreeMap::new();
                let mut pad_ok = depth == 0;
                loop {
                    let at = self.pos;
                    let b = self.byte()?;
                    if b == b'e' {
                        return Ok(Value::Dict(map));
                    }
                    let key = self.string(b, at, pad_ok)?;
                    pad_ok = false;
                    let value = self.value(depth + 1)?;
                    map.insert(key, value);
                }
            }
            b'0'..=b'9' => self.string(b, start, false).map(Value::Bytes),
            byte => Err(BencodeError::UnexpectedByte {
                byte,
                offset: start,
            }),
        }
    }

    /// After the `i`.
    fn int(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        let mut b = self.byte()?;
        let negative = b == b'-';
        if negative {
            b = self.byte()?;
        }
        if b == b'e' {
            return Err(BencodeError::BadNumber(start));
        }
        // Accumulate negatively so that i64::MIN fits.
        let mut acc: i64 = 0;
        let mut digits = 0u32;
        while b != b'e' {
            if !b.is_ascii_digit() {
                return Err(BencodeError::UnexpectedByte {
                    byte: b,
                    offset: self.pos - 1,
                });
            }
            if digits > 0 && acc == 0 {
                return Err(BencodeError::BadNumber(start));
            }
            acc = acc
                .checked_mul(10)
                .and_then(|a| a.checked_sub(i64::from(b - b'0')))
                .ok_or(BencodeError::Overflow(start))?;
            digits += 1;
            b = self.byte()?;
        }
        if negative {
            if acc == 0 {
                return Err(BencodeError::BadNumber(start));
            }
            Ok(acc)
        } else {
            acc.checked_neg().ok_or(BencodeError::Overflow(start))
        }
    }

    /// `first` is the first length digit, already consumed.
    fn string(&mut self, first: u8, start: usize, pad_ok: bool) -> Result<Vec<u8>, BencodeError> {
        let mut b = first;
        let mut len: usize = 0;
        let mut digits = 0u32;
        while b != b':' {
            if !b.is_ascii_digit() {
                return Err(BencodeError::UnexpectedByte {
                    byte: b,
                    offset: self.pos - 1,
                });
            }
            if digits > 0 && len == 0 && !pad_ok {
                return Err(BencodeError::BadNumber(start));
            }
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(b - b'0')))
                .ok_or(BencodeError::Overflow(start))?;
            digits += 1;
            b = self.byte()?;
        }
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let body = rest.get(..len).ok_or(BencodeError::Eof(self.input.len()))?;
        self.pos += len;
        Ok(body.to_vec())
    }
}

/// Parses a dictionary from the start of `input`; returns it and the number of bytes used.
pub(crate) fn parse_dict_prefix(
    input: &[u8],
) -> Result<(BTreeMap<Vec<u8>, Value>, usize), BencodeError> {
    let mut r = Reader { input, pos: 0 };
    match r.value(0)? {
        Value::Dict(d) => Ok((d, r.pos)),
        _ => Err(BencodeError::NotADict),
    }
}

fn write_string(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fn write_value(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => write_string(b, out),
        Value::List(items) => {
            out.push(b'l');
            items.iter().for_each(|i| write_value(i, out));
            out.push(b'e');
        }
        Value::Dict(map) => {
            out.push(b'd');
            for (k, v) in map {
                write_string(k, out);
                write_value(v, out);
            }
            out.push(b'e');
        }
    }
}

/// Encodes a top-level dictionary the way cjdns 22.x does: sorted keys, padded with `0`s after
/// the `d` to a multiple of four bytes (an empty dictionary is left unpadded).
pub(crate) fn write_dict_padded(map: &BTreeMap<Vec<u8>, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_value(&Value::Dict(map.clone()), &mut out);
    if !map.is_empty() {
        let pad = (4 - out.len() % 4) % 4;
        out.splice(1..1, std::iter::repeat_n(b'0', pad));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<BTreeMap<Vec<u8>, Value>, BencodeError> {
        parse_dict_prefix(b).map(|(d, _)| d)
    }

    #[test]
    fn padding_only_on_first_top_level_key() {
        assert!(parse(b"d0002:foi1ee").is_ok());
        assert!(parse(b"d02:foi1ee").is_ok());
        assert!(parse(b"d2:fo01:xe").is_err());
        assert!(parse(b"d2:fod02:abi1eee").is_err());
        assert!(parse(b"d2:foli01eee").is_err());
        assert!(parse(b"d2:foi-0ee").is_err());
        assert!(parse(b"d2:foiee").is_err());
        assert!(parse(b"d2:foi-9223372036854775808ee").is_ok());
        assert!(parse(b"d2:foi9223372036854775808ee").is_err());
        assert_eq!(parse(b"d1:ai0ee").unwrap()[&b"a".to_vec()], Value::Int(0));
    }

    #[test]
    fn writer_pads_to_four() {
        let mut m = BTreeMap::new();
        m.insert(b"q".to_vec(), Value::Bytes(b"pong".to_vec()));
        // "d1:q4:ponge" is 11 bytes: one pad byte.
        assert_eq!(write_dict_padded(&m), b"d01:q4:ponge".to_vec());
        m.insert(b"fo".to_vec(), Value::Int(1));
        let out = write_dict_padded(&m);
        assert_eq!(out.len() % 4, 0);
        assert_eq!(parse(&out).unwrap(), m);
    }

    #[test]
    fn depth_is_bounded() {
        let mut deep = b"d1:x".to_vec();
        deep.extend(std::iter::repeat_n(b'l', 40));
        deep.extend(std::iter::repeat_n(b'e', 41));
        assert_eq!(parse(&deep), Err(BencodeError::TooDeep));
    }
}
