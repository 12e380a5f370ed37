//! A `serde` deserializer over a parsed config value that knows where it is.
//!
//! - Every error carries the key path of the value that failed
//!   (`interfaces.UDPInterface[0].connectTo["10.0.0.1:1"].publicKey`).
//! - Keys a struct does not declare are recorded as warnings with their path, then skipped.
//! - Integers stand in for booleans (`0` is false), as everywhere in cjdns configs.
//! - Two helper shapes are recognised through marker newtype names: "one object or a list of
//!   them" ([`ONE_OR_MANY`]) and "a string or an object" ([`STRING_OR_STRUCT`]).

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use crate::bencode::{Dict, Value};

/// Marker newtype name: accept a single object where a list of objects is expected.
pub(crate) const ONE_OR_MANY: &str = "__pktmesh_one_or_many";
/// Marker newtype name: a bare string is handed to `visit_str`, anything else to
/// `visit_newtype_struct`.
pub(crate) const STRING_OR_STRUCT: &str = "__pktmesh_string_or_struct";

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(Vec<u8>),
    Index(usize),
}

/// A key path inside the config file, displayed the way an operator would write it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub(crate) fn child_key(&self, key: &[u8]) -> Self {
        let mut v = self.0.clone();
        v.push(Segment::Key(key.to_vec()));
        Self(v)
    }

    pub(crate) fn child_index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Segment::Index(i));
        Self(v)
    }

    /// Builds a path from dotted segments (tests and messages).
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Self {
        Self(
            keys.into_iter()
                .map(|k| Segment::Key(k.as_bytes().to_vec()))
                .collect(),
        )
    }

    /// The last key of the path, if it ends in a key.
    pub fn last_key(&self) -> Option<&[u8]> {
        match self.0.last() {
            Some(Segment::Key(k)) => Some(k),
            _ => None,
        }
    }

    /// Whether this is the top level of the file.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

fn is_plain_key(k: &[u8]) -> bool {
    !k.is_empty() && k.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) if is_plain_key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    // Plain keys are ASCII.
                    f.write_str(&String::from_utf8_lossy(k))?;
                }
                Segment::Key(k) => {
                    f.write_str("[\"")?;
                    for &c in k {
                        if (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\' {
                            write!(f, "{}", c as char)?;
                        } else {
                            write!(f, "\\x{c:02x}")?;
                        }
                    }
                    f.write_str("\"]")?;
                }
            }
        }
        Ok(())
    }
}

/// A value that does not fit the schema, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeError {
    /// Where; `None` until the error bubbles through the deserializer that produced it.
    pub(crate) path: Option<KeyPath>,
    pub(crate) message: String,
}

impl DeError {
    fn at(mut self, path: &KeyPath) -> Self {
        if self.path.is_none() {
            self.path = Some(path.clone());
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{p}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            path: None,
            message: msg.to_string(),
        }
    }
}

/// Keys that the schema does not know, by path.
pub(crate) type Unknown = RefCell<Vec<KeyPath>>;

/// Deserializer for one value at one path.
pub(crate) struct ValueDe<'a> {
    pub(crate) value: &'a Value,
    pub(crate) path: KeyPath,
    pub(crate) unknown: &'a Unknown,
}

impl<'a> ValueDe<'a> {
    fn unexpected(&self) -> de::Unexpected<'a> {
        match self.value {
            Value::Int(i) => de::Unexpected::Signed(*i),
            Value::Bytes(b) => match core::str::from_utf8(b) {
                Ok(s) => de::Unexpected::Str(s),
                Err(_) => de::Unexpected::Bytes(b),
            },
            Value::List(_) => de::Unexpected::Seq,
            Value::Dict(_) => de::Unexpected::Map,
        }
    }

    fn fail<T>(&self, expected: &dyn de::Expected) -> Result<T, DeError> {
        Err(de::Error::invalid_type(self.unexpected(), expected))
    }

    fn map(&self, dict: &'a Dict, fields: Option<&'static [&'static str]>) -> MapDe<'a> {
        MapDe {
            iter: Box::new(dict.iter()),
            pending: None,
            path: self.path.clone(),
            fields,
            unknown: self.unknown,
        }
    }
}

struct Expecting(&'static str);
impl de::Expected for Expecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

macro_rules! forward_int {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match self.value {
                Value::Int(i) => visitor.visit_i64(*i),
                _ => self.fail(&Expecting("an integer")),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ValueDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Bytes(b) => match core::str::from_utf8(b) {
                Ok(s) => visitor.visit_borrowed_str(s),
                Err(_) => visitor.visit_borrowed_bytes(b),
            },
            Value::List(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                index: 0,
                path: self.path.clone(),
                unknown: self.unknown,
            }),
            Value::Dict(d) => visitor.visit_map(self.map(d, None)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Int(i) => visitor.visit_bool(*i != 0),
            _ => self.fail(&Expecting("an integer (0 or 1)")),
        }
    }

    forward_int!(
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    );

    fn deserialize_f32<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DeError> {
        self.fail(&Expecting("an integer"))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DeError> {
        self.fail(&Expecting("an integer"))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Bytes(b) => match core::str::from_utf8(b) {
                Ok(s) => visitor.visit_borrowed_str(s),
                Err(_) => Err(de::Error::custom("expected a UTF-8 string")),
            },
            _ => self.fail(&Expecting("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Bytes(b) => visitor.visit_borrowed_bytes(b),
            _ => self.fail(&Expecting("a string")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match (name, self.value) {
            (ONE_OR_MANY, Value::Dict(_)) => {
                let path = self.path.clone();
                visitor.visit_seq(OneDe {
                    inner: Some(self),
                    path,
                })
            }
            (STRING_OR_STRUCT, Value::Bytes(_)) => self.deserialize_str(visitor),
            _ => visitor.visit_newtype_struct(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::List(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                index: 0,
                path: self.path.clone(),
                unknown: self.unknown,
            }),
            _ => self.fail(&Expecting("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Value::Dict(d) => visitor.visit_map(self.map(d, None)),
            _ => self.fail(&Expecting("an object")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Value::Dict(d) => visitor.visit_map(self.map(d, Some(fields))),
            _ => self.fail(&Expecting("an object")),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Value::Bytes(b) => match core::str::from_utf8(b) {
                Ok(s) => visitor.visit_enum(s.into_deserializer()),
                Err(_) => Err(de::Error::custom("expected a UTF-8 string")),
            },
            _ => self.fail(&Expecting("a string")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a> {
    items: core::slice::Iter<'a, Value>,
    index: usize,
    path: KeyPath,
    unknown: &'a Unknown,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(value) = self.items.next() else {
            return Ok(None);
        };
        let path = self.path.child_index(self.index);
        self.index += 1;
        seed.deserialize(ValueDe {
            value,
            path: path.clone(),
            unknown: self.unknown,
        })
        .map(Some)
        .map_err(|e| e.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A single object presented as a one-element list.
struct OneDe<'a> {
    inner: Option<ValueDe<'a>>,
    path: KeyPath,
}

impl<'de> de::SeqAccess<'de> for OneDe<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.inner.take() {
            Some(de) => seed.deserialize(de).map(Some).map_err(|e| e.at(&self.path)),
            None => Ok(None),
        }
    }
}

type Entries<'a> = Box<dyn Iterator<Item = (&'a [u8], &'a Value)> + 'a>;

struct MapDe<'a> {
    iter: Entries<'a>,
    pending: Option<(&'a [u8], &'a Value)>,
    path: KeyPath,
    fields: Option<&'static [&'static str]>,
    unknown: &'a Unknown,
}

impl<'de> de::MapAccess<'de> for MapDe<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.iter.next() else {
            return Ok(None);
        };
        self.pending = Some((key, value));
        let path = self.path.child_key(key);
        if let Some(fields) = self.fields {
            let known = core::str::from_utf8(key).is_ok_and(|k| fields.contains(&k));
            if !known {
                self.unknown.borrow_mut().push(path.clone());
            }
        }
        seed.deserialize(KeyDe { key })
            .map(Some)
            .map_err(|e| e.at(&path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("value requested before key"));
        };
        let path = self.path.child_key(key);
        seed.deserialize(ValueDe {
            value,
            path: path.clone(),
            unknown: self.unknown,
        })
        .map_err(|e| e.at(&path))
    }
}

/// Deserializer for an object key (always a byte string).
struct KeyDe<'a> {
    key: &'a [u8],
}

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match core::str::from_utf8(self.key) {
            Ok(s) => visitor.visit_borrowed_str(s),
            Err(_) => visitor.visit_borrowed_bytes(self.key),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_bytes(self.key)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_bytes(self.key)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        option unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}
