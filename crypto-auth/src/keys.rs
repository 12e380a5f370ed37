//! cjdns node identity: private keys, public keys, their `….k` text form and `fc00::/8` addresses.
//!
//! - A private key is 32 random bytes used directly as an X25519 scalar (clamped by X25519 itself),
//!   written as 64 hex digits in `cjdroute.conf`.
//! - A public key is X25519(private, basepoint), written as 52 characters of cjdns base32 (the
//!   DNSCurve alphabet with little-endian bit order) followed by `.k`.
//! - The address is the first 16 bytes of SHA-512(SHA-512(public key)); it is valid only when its
//!   first byte is `0xfc`, and a public key is usable in cjdns only when its address is valid.
//!
//! Signing keys (Ed25519 derived from the same scalar) do not live here yet.

use core::fmt;
use core::str::FromStr;

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha512};
use thiserror::Error;

/// The first byte of every valid cjdns address.
pub const ADDRESS_PREFIX: u8 = 0xfc;

/// The cjdns base32 alphabet (DNSCurve): digits and lower-case letters without `a e i o`.
const BASE32_ALPHABET: &[u8; 32] = b"0123456789bcdfghjklmnpqrstuvwxyz";

/// Length of a public key's base32 form without the `.k` suffix.
const PUBLIC_KEY_BASE32_LEN: usize = 52;

/// Why a key or address could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The text has the wrong number of characters.
    #[error("wrong length: expected {expected} characters, found {found}")]
    BadLength {
        /// Characters expected.
        expected: usize,
        /// Characters found.
        found: usize,
    },
    /// A character outside the alphabet of the form being parsed.
    #[error("invalid character {found:?} at position {position}")]
    BadCharacter {
        /// The offending character.
        found: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// A public key without the `.k` suffix.
    #[error("public key must end in \".k\"")]
    MissingSuffix,
    /// The base32 text encodes bits past the 256 of a key.
    #[error("non-zero leftover bits after the 256 bits of the key")]
    NonZeroLeftoverBits,
    /// The key is well formed but its address is outside `fc00::/8`.
    #[error("key's address {0} is not in fc00::/8")]
    AddressNotFc(Address),
    /// The address is well formed but not in `fc00::/8`.
    #[error("address {0} is not in fc00::/8")]
    NotCjdnsAddress(Address),
}

/// A node's 32-byte private key (an X25519 scalar).
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey([u8; 32]);

impl PrivateKey {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the 64-hex-digit form used in `cjdroute.conf` (either case).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut out = [0u8; 32];
        decode_hex_exact(text, &mut out)?;
        Ok(Self(out))
    }

    /// The 64 lower-case hex digits of the key.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// The X25519 public key of this private key.
    pub fn public_key(&self) -> PublicKey {
        let secret = x25519_dalek::StaticSecret::from(self.0);
        PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes())
    }

    /// Draws private keys from `rng` until one has a valid (`fc`) address, as cjdns does.
    ///
    /// About one key in 256 qualifies, so this takes a few hundred X25519 operations.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> (Self, PublicKey, Address) {
        loop {
            let mut bytes = [0u8; 32];
            rng.fill_bytes(&mut bytes);
            let private = Self(bytes);
            let public = private.public_key();
            let address = public.address();
            if address.is_valid() {
                return (private, public, address);
            }
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// A node's 32-byte X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps raw key bytes without checking the address (see [`PublicKey::is_valid`]).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The node's IPv6 address: first 16 bytes of SHA-512(SHA-512(key)).
    pub fn address(&self) -> Address {
        let first = Sha512::digest(self.0);
        let second = Sha512::digest(first);
        let mut out = [0u8; 16];
        out.copy_from_slice(&second[..16]);
        Address(out)
    }

    /// Whether cjdns accepts this key, i.e. whether its address is in `fc00::/8`.
    pub fn is_valid(&self) -> bool {
        self.address().is_valid()
    }

    /// Parses `<52 base32 chars>.k` and requires the key's address to be in `fc00::/8`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let key = Self::parse_any(text)?;
        let address = key.address();
        if !address.is_valid() {
            return Err(KeyError::AddressNotFc(address));
        }
        Ok(key)
    }

    /// Parses `<52 base32 chars>.k` without checking the address.
    pub fn parse_any(text: &str) -> Result<Self, KeyError> {
        let body = text.strip_suffix(".k").ok_or(KeyError::MissingSuffix)?;
        if body.len() != PUBLIC_KEY_BASE32_LEN {
            return Err(KeyError::BadLength {
                expected: PUBLIC_KEY_BASE32_LEN + 2,
                found: text.len(),
            });
        }
        let mut out = [0u8; 32];
        base32_decode(body, &mut out)?;
        Ok(Self(out))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; PUBLIC_KEY_BASE32_LEN];
        base32_encode(&self.0, &mut buf);
        // The alphabet is ASCII, so this cannot fail.
        f.write_str(core::str::from_utf8(&buf).map_err(|_| fmt::Error)?)?;
        f.write_str(".k")
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A cjdns IPv6 address (16 bytes). Valid ones start with `0xfc`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address([u8; 16]);

impl Address {
    /// Wraps raw address bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw address bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Whether the address is in `fc00::/8`.
    pub const fn is_valid(&self) -> bool {
        self.0[0] == ADDRESS_PREFIX
    }

    /// Parses an IPv6 address (any standard text form) and requires it to be in `fc00::/8`.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let ip: std::net::Ipv6Addr = text.parse().map_err(|_| {
            let position = text
                .char_indices()
                .find(|(_, c)| !(c.is_ascii_hexdigit() || *c == ':'))
                .map_or(0, |(i, _)| i);
            KeyError::BadCharacter {
                found: text[position..].chars().next().unwrap_or(' '),
                position,
            }
        })?;
        let address = Self(ip.octets());
        if !address.is_valid() {
            return Err(KeyError::NotCjdnsAddress(address));
        }
        Ok(address)
    }
}

impl From<Address> for std::net::Ipv6Addr {
    fn from(a: Address) -> Self {
        Self::from(a.0)
    }
}

/// cjdns style: eight groups of four hex digits, leading zeros kept, no `::` compression.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks_exact(2).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Encodes `input` in cjdns base32 into `out`, which must hold `ceil(8 * len / 5)` bytes.
///
/// Bits are taken least-significant first: each input byte is added above the bits already
/// pending, and characters are emitted from the low five bits.
pub fn base32_encode(input: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), (input.len() * 8).div_ceil(5));
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut pos = 0;
    for &byte in input {
        acc |= u32::from(byte) << bits;
        bits += 8;
        while bits >= 5 {
            out[pos] = BASE32_ALPHABET[(acc & 31) as usize];
            pos += 1;
            acc >>= 5;
            bits -= 5;
        }
    }
    if bits > 0 {
        out[pos] = BASE32_ALPHABET[(acc & 31) as usize];
    }
}

/// Decodes cjdns base32 `text` into exactly `out.len()` bytes.
///
/// Letters are accepted in either case, as the C decoder does. Fails on characters outside the
/// alphabet, on too few characters, and on leftover bits that are non-zero or a whole group.
pub fn base32_decode(text: &str, out: &mut [u8]) -> Result<(), KeyError> {
    let expected = (out.len() * 8).div_ceil(5);
    if text.len() != expected {
        return Err(KeyError::BadLength {
            expected,
            found: text.len(),
        });
    }
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut pos = 0;
    for (position, ch) in text.char_indices() {
        let value = base32_value(ch).ok_or(KeyError::BadCharacter {
            found: ch,
            position,
        })?;
        acc |= u32::from(value) << bits;
        bits += 5;
        if bits >= 8 {
            // `expected` characters carry at most 4 bits more than `out` holds.
            out[pos] = acc as u8;
            pos += 1;
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits >= 5 || acc != 0 {
        return Err(KeyError::NonZeroLeftoverBits);
    }
    Ok(())
}

fn base32_value(ch: char) -> Option<u8> {
    let lower = ch.to_ascii_lowercase();
    if !lower.is_ascii() {
        return None;
    }
    BASE32_ALPHABET
        .iter()
        .position(|&c| c == lower as u8)
        .map(|i| i as u8)
}

fn decode_hex_exact(text: &str, out: &mut [u8]) -> Result<(), KeyError> {
    if text.len() != out.len() * 2 {
        return Err(KeyError::BadLength {
            expected: out.len() * 2,
            found: text.len(),
        });
    }
    let bytes = text.as_bytes();
    for (i, slot) in out.iter_mut().enumerate() {
        let hi = hex_value(bytes, 2 * i, text)?;
        let lo = hex_value(bytes, 2 * i + 1, text)?;
        *slot = (hi << 4) | lo;
    }
    Ok(())
}

fn hex_value(bytes: &[u8], position: usize, text: &str) -> Result<u8, KeyError> {
    let b = bytes[position];
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(KeyError::BadCharacter {
            found: text
                .get(position..)
                .and_then(|s| s.chars().next())
                .unwrap_or(char::from(b)),
            position,
        }),
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (private hex, public base32, public hex or "", ipv6) from the cjdns protocol digest §3.
    const VECTORS: &[(&str, &str, &str, &str)] = &[
        (
            "751d3db85b848deaf221e0ed2b6cc17f587b29057d74cdd4dc0bd18b7157288e",
            "r6jzx210usqbgnm3pdtm1z6btd14pvdtkn5j8qnpgqzknpggkuw0.k",
            "d7c0df45001a5be5e81c95e519be5199055237cb9116882cadcefe48ab735173",
            "fc68:cb2c:60db:cb96:19ac:34a8:fd34:03fc",
        ),
        (
            "378813dfecc62185ffab4d00030b55f50b54e515bfcea8b41f2bd1c2511bae03",
            "qgkjd0stfvk9r3j28s4gh8rgslbgx2r5xgxzxkgm5vdxqwn8xsu0.k",
            "",
            "fcf5:c1ec:be67:9ad5:1f6c:f31b:5d74:37b0",
        ),
        (
            "90a66780a0dc2ca735bc0c161d3e92c876935981e8658c32a846f79947a923bd",
            "xpr2z2s3hnr0qzpk2u121uqjv15dc335v54pccqlqj6c5p840yy0.k",
            "",
            "fc32:6a5d:e235:7057:e990:6398:5d7a:aa58",
        ),
    ];

    #[test]
    fn digest_key_vectors() {
        for &(private_hex, public_text, public_hex, ipv6) in VECTORS {
            let private = PrivateKey::from_hex(private_hex).unwrap();
            let public = private.public_key();
            assert_eq!(public.to_string(), public_text);
            if !public_hex.is_empty() {
                assert_eq!(hex::encode(public.as_bytes()), public_hex);
            }
            assert_eq!(PublicKey::parse(public_text).unwrap(), public);
            assert_eq!(public.address().to_string(), ipv6);
            assert_eq!(Address::parse(ipv6).unwrap(), public.address());
            assert_eq!(private.to_hex(), private_hex);
        }
    }

    #[test]
    fn digest_public_only_vector() {
        let key =
            PublicKey::parse("3fdqgz2vtqb0wx02hhvx3wjmjqktyt567fcuvj3m72vw5u6ubu70.k").unwrap();
        assert_eq!(
            hex::encode(key.as_bytes()),
            "a331ebbed8d92ac03b10efed3e389cd0c6ec7331a72dbde198476c5eb4d14a1f"
        );
        assert_eq!(
            key.address().to_string(),
            "fc92:8136:dc1f:e6e0:4ef6:a6dd:7187:b85f"
        );
    }

    #[test]
    fn crypto_auth_unit_test_key() {
        let private = PrivateKey::from_bytes(*b"0123456789abcdefghijklmnopqrstuv");
        assert_eq!(
            hex::encode(private.public_key().as_bytes()),
            "3f5b96621111d89c7d3f51716878fab4c3cfd97e320412b4af7e2292a5df3171"
        );
    }

    #[test]
    fn upper_case_base32_is_accepted() {
        let text = "r6jzx210usqbgnm3pdtm1z6btd14pvdtkn5j8qnpgqzknpggkuw0.k";
        let upper = format!("{}.k", text[..52].to_ascii_uppercase());
        assert_eq!(
            PublicKey::parse(&upper).unwrap(),
            PublicKey::parse(text).unwrap()
        );
    }

    #[test]
    fn malformed_public_keys_get_distinct_errors() {
        let good = "r6jzx210usqbgnm3pdtm1z6btd14pvdtkn5j8qnpgqzknpggkuw0.k";
        assert_eq!(PublicKey::parse(&good[..52]), Err(KeyError::MissingSuffix));
        assert!(matches!(
            PublicKey::parse("r6jz.k"),
            Err(KeyError::BadLength {
                expected: 54,
                found: 6
            })
        ));
        let bad_char = good.replacen('6', "a", 1);
        assert_eq!(
            PublicKey::parse(&bad_char),
            Err(KeyError::BadCharacter {
                found: 'a',
                position: 1
            })
        );
        // The last character carries one key bit; a value >= 2 sets a bit past the 256th.
        let leftover = format!("{}2.k", &good[..51]);
        assert_eq!(
            PublicKey::parse(&leftover),
            Err(KeyError::NonZeroLeftoverBits)
        );
        // A well-formed key whose address is not fc00::/8: the all-zero key.
        let zero = PublicKey::from_bytes([0; 32]).to_string();
        assert!(matches!(
            PublicKey::parse(&zero),
            Err(KeyError::AddressNotFc(_))
        ));
        assert!(PublicKey::parse_any(&zero).is_ok());
    }

    #[test]
    fn malformed_private_keys_and_addresses() {
        assert!(matches!(
            PrivateKey::from_hex("abcd"),
            Err(KeyError::BadLength {
                expected: 64,
                found: 4
            })
        ));
        let bad = format!("{}zz", "0".repeat(62));
        assert!(matches!(
            PrivateKey::from_hex(&bad),
            Err(KeyError::BadCharacter {
                found: 'z',
                position: 62
            })
        ));
        assert!(matches!(
            Address::parse("fd00::1"),
            Err(KeyError::NotCjdnsAddress(_))
        ));
        assert!(matches!(
            Address::parse("fc00::zz"),
            Err(KeyError::BadCharacter { .. })
        ));
    }

    #[test]
    fn generated_keys_have_fc_addresses() {
        // A fixed-seed RNG keeps the test deterministic.
        struct Counter(u64);
        impl RngCore for Counter {
            fn next_u32(&mut self) -> u32 {
                self.next_u64() as u32
            }
            fn next_u64(&mut self) -> u64 {
                // splitmix64
                self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            }
            fn fill_bytes(&mut self, dest: &mut [u8]) {
                for chunk in dest.chunks_mut(8) {
                    let v = self.next_u64().to_le_bytes();
                    chunk.copy_from_slice(&v[..chunk.len()]);
                }
            }
            fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
                self.fill_bytes(dest);
                Ok(())
            }
        }
        impl CryptoRng for Counter {}
        let mut rng = Counter(7);
        for _ in 0..3 {
            let (private, public, address) = PrivateKey::generate(&mut rng);
            assert!(address.is_valid());
            assert_eq!(private.public_key(), public);
            assert_eq!(public.address(), address);
            assert_eq!(PublicKey::parse(&public.to_string()).unwrap(), public);
        }
    }
}
