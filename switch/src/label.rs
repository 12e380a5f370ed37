//! 64-bit cjdns route labels: the text form and the scheme-independent label algebra.
//!
//! A label is a stack of directors, the first hop in the least-significant bits, terminated by a
//! single `1` bit above the last director. Splicing, unsplicing and `routes_through` here follow
//! `switch/LabelSplicer.h` of cjdns bit for bit. Operations that need to know how directors are
//! encoded (one-hop checks, re-encoding) live in [`crate::scheme`].

use core::fmt;
use core::str::FromStr;

use thiserror::Error;

/// Highest bit index a spliced label may use: cjdns refuses labels with more than 60
/// significant bits so that a switch always has room for the return path.
pub const MAX_LABEL_BITS: u32 = 59;

/// A route label. Never zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label(u64);

/// Why a label could not be built or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LabelError {
    /// Zero is never a valid label.
    #[error("the all-zero label is not a route")]
    Zero,
    /// Text form has the wrong length (it must be `xxxx.xxxx.xxxx.xxxx`, 19 characters).
    #[error("label text must be 19 characters (xxxx.xxxx.xxxx.xxxx), found {0}")]
    BadLength(usize),
    /// A character that is neither a hex digit nor a dot in the right place.
    #[error("invalid character {found:?} at position {position} in label text")]
    BadCharacter {
        /// The offending character.
        found: char,
        /// Its byte offset.
        position: usize,
    },
    /// The spliced label would need more than 60 significant bits.
    #[error("spliced label would exceed {MAX_LABEL_BITS} bits")]
    TooLong,
    /// `unsplice` was asked for a mid path that the full path does not route through.
    #[error("label {full} does not route through {mid}")]
    NotThrough {
        /// The full path.
        full: Label,
        /// The supposed prefix.
        mid: Label,
    },
    /// `splice` was given no labels.
    #[error("nothing to splice")]
    Empty,
}

impl Label {
    /// The self route: a label whose only bit is the terminator.
    pub const SELF: Label = Label(1);

    /// Wraps a raw label, rejecting zero.
    pub const fn new(raw: u64) -> Result<Self, LabelError> {
        if raw == 0 {
            Err(LabelError::Zero)
        } else {
            Ok(Self(raw))
        }
    }

    /// The raw 64-bit value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Index of the highest set bit (`Bits_log2x64`).
    pub const fn log2(self) -> u32 {
        63 - self.0.leading_zeros()
    }

    /// Reverses all 64 bits; a router turns an arrival label into the path back this way.
    /// Zero cannot result since the input is non-zero.
    pub const fn reversed(self) -> Label {
        Label(self.0.reverse_bits())
    }

    /// Appends `go_here` (a path starting at the node `via_here` reaches) to `via_here`.
    ///
    /// Equals `((go_here ^ 1) << log2(via_here)) ^ via_here`; fails when
    /// `log2(go_here) + log2(via_here) > 59`.
    pub const fn splice(go_here: Label, via_here: Label) -> Result<Label, LabelError> {
        let via_bits = via_here.log2();
        if go_here.log2() + via_bits > MAX_LABEL_BITS {
            return Err(LabelError::TooLong);
        }
        Ok(Label(((go_here.0 ^ 1) << via_bits) ^ via_here.0))
    }

    /// Splices hops given in travel order (first hop first) into one label.
    pub fn splice_path(hops: &[Label]) -> Result<Label, LabelError> {
        let (&first, rest) = hops.split_first().ok_or(LabelError::Empty)?;
        rest.iter()
            .try_fold(first, |via, &go| Label::splice(go, via))
    }

    /// The rest of `full` after the prefix `mid`, as seen from the node `mid` reaches:
    /// `full >> log2(mid)`. Fails unless `full` routes through `mid`.
    pub const fn unsplice(full: Label, mid: Label) -> Result<Label, LabelError> {
        if !full.routes_through(mid) {
            return Err(LabelError::NotThrough { full, mid });
        }
        // routes_through guarantees full has a set bit at or above log2(mid).
        Ok(Label(full.0 >> mid.log2()))
    }

    /// Whether the route `self` passes through the node that `mid` reaches
    /// (`LabelSplicer_routesThrough`).
    pub const fn routes_through(self, mid: Label) -> bool {
        if mid.0 > self.0 {
            return false;
        }
        if mid.0 < 2 {
            return true;
        }
        let mask = u64::MAX >> (64 - mid.log2());
        (self.0 & mask) == (mid.0 & mask)
    }

    /// Parses the text form `0000.0000.0000.0013` (hex in either case).
    pub fn parse(text: &str) -> Result<Self, LabelError> {
        let bytes = text.as_bytes();
        if bytes.len() != 19 {
            return Err(LabelError::BadLength(text.chars().count()));
        }
        let mut value: u64 = 0;
        for (position, &b) in bytes.iter().enumerate() {
            let bad = || LabelError::BadCharacter {
                found: text
                    .get(position..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or(char::from(b)),
                position,
            };
            if position % 5 == 4 {
                if b != b'.' {
                    return Err(bad());
                }
                continue;
            }
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return Err(bad()),
            };
            value = (value << 4) | u64::from(digit);
        }
        Self::new(value)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:04x}.{:04x}.{:04x}.{:04x}",
            (v >> 48) & 0xffff,
            (v >> 32) & 0xffff,
            (v >> 16) & 0xffff,
            v & 0xffff
        )
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({self})")
    }
}

impl FromStr for Label {
    type Err = LabelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<u64> for Label {
    type Error = LabelError;
    fn try_from(raw: u64) -> Result<Self, Self::Error> {
        Self::new(raw)
    }
}

impl From<Label> for u64 {
    fn from(l: Label) -> u64 {
        l.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l(raw: u64) -> Label {
        Label::new(raw).unwrap()
    }

    #[test]
    fn text_form() {
        assert_eq!(l(0x13).to_string(), "0000.0000.0000.0013");
        assert_eq!(l(14574489829).to_string(), "0000.0003.64b5.10e5");
        assert_eq!(Label::parse("0000.0003.64b5.10e5").unwrap(), l(14574489829));
        assert_eq!(Label::parse("0000.0003.64B5.10E5").unwrap(), l(14574489829));
    }

    #[test]
    fn malformed_text() {
        assert_eq!(Label::parse("0000.0000.0000.0000"), Err(LabelError::Zero));
        assert_eq!(Label::parse("13"), Err(LabelError::BadLength(2)));
        assert_eq!(
            Label::parse("0000.0000.0000.001g"),
            Err(LabelError::BadCharacter {
                found: 'g',
                position: 18
            })
        );
        assert_eq!(
            Label::parse("0000:0000.0000.0013"),
            Err(LabelError::BadCharacter {
                found: ':',
                position: 4
            })
        );
        // Non-ASCII input never panics: a two-byte character makes 19 bytes here.
        assert_eq!(
            Label::parse("0000.0000.0000.00é"),
            Err(LabelError::BadCharacter {
                found: 'é',
                position: 17
            })
        );
        assert_eq!(
            Label::parse("0000.0000.0000.é3"),
            Err(LabelError::BadLength(17))
        );
        assert_eq!(Label::new(0), Err(LabelError::Zero));
    }

    #[test]
    fn splice_vectors() {
        assert_eq!(Label::splice(l(0x15), l(0x13)).unwrap(), l(0x153));
        assert_eq!(Label::splice(l(0x04), l(0x04)).unwrap(), l(0x10));
        let path = [0x15, 0x8e, 0xa2, 0x1d, 0x414, 0x1b].map(l);
        assert_eq!(
            Label::splice_path(&path).unwrap(),
            Label::parse("0000.001b.0535.10e5").unwrap()
        );
        assert_eq!(
            Label::splice(Label::parse("0200.0000.0000.1111").unwrap(), l(0x5)).unwrap(),
            Label::parse("0800.0000.0000.4445").unwrap()
        );
        assert_eq!(
            Label::splice(Label::parse("0400.0000.0000.1111").unwrap(), l(0x5)),
            Err(LabelError::TooLong)
        );
        assert_eq!(Label::splice_path(&[]), Err(LabelError::Empty));
    }

    #[test]
    fn unsplice_vectors() {
        assert_eq!(Label::unsplice(l(0x153), l(0x13)).unwrap(), l(0x15));
        assert_eq!(Label::unsplice(l(0x13), Label::SELF).unwrap(), l(0x13));
        assert_eq!(Label::unsplice(l(0x153), l(0x153)).unwrap(), Label::SELF);
        assert!(matches!(
            Label::unsplice(l(0x153), l(0x15)),
            Err(LabelError::NotThrough { .. })
        ));
    }

    #[test]
    fn routes_through_vectors() {
        let dest = Label::parse("0000.001b.0535.10e5").unwrap();
        assert!(dest.routes_through(l(0x15)));
        assert!(!dest.routes_through(l(0x13)));
        assert!(!l(0x0000_900a_ea95_ca55).routes_through(l(0x0000_0165_2639_c655)));
        assert!(dest.routes_through(Label::SELF));
        assert!(l(0x13).routes_through(Label::SELF));
        // mid larger than dest never routes through (C semantics).
        assert!(!l(0x13).routes_through(l(0x153)));
    }

    #[test]
    fn reversal() {
        assert_eq!(l(0x13).reversed(), l(0xc800_0000_0000_0000));
        assert_eq!(l(0xEC80_0000_0000_0000).reversed(), l(0x137));
    }

    proptest! {
        #[test]
        fn splice_then_unsplice_is_identity(go in 1u64..(1 << 30), via in 1u64..(1 << 29)) {
            let (go, via) = (l(go), l(via));
            if let Ok(full) = Label::splice(go, via) {
                prop_assert!(full.routes_through(via));
                prop_assert_eq!(Label::unsplice(full, via).unwrap(), go);
            }
        }

        #[test]
        fn text_round_trip(raw in 1u64..) {
            let label = l(raw);
            prop_assert_eq!(Label::parse(&label.to_string()).unwrap(), label);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,24}") {
            let _ = Label::parse(&s);
        }
    }
}
