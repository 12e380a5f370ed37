//! The field types of `cjdroute.conf` that are validated while loading: keys, socket
//! addresses, fc addresses, MAC addresses, passwords as bytes, beacon modes, and the
//! one-or-many and string-or-integer shapes cjdns accepts.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use thiserror::Error;

use super::valuede::ONE_OR_MANY;

/// Implements `Deserialize` for a type from its `FromStr`, with `$what` in the error message.
macro_rules! deserialize_from_str {
    ($ty:ty, $what:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$ty, E> {
                        <$ty>::from_str(s).map_err(|e| {
                            E::custom(format_args!("expected {}, found {s:?} ({e})", $what))
                        })
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

/// The node's private key (`privateKey`, 64 hex digits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfPrivateKey(pub PrivateKey);

impl FromStr for ConfPrivateKey {
    type Err = pktmesh_crypto_auth::KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PrivateKey::from_hex(s).map(Self)
    }
}
deserialize_from_str!(ConfPrivateKey, "a private key of 64 hex digits");

/// A peer's public key (`….k` with an `fc00::/8` address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfPublicKey(pub PublicKey);

impl FromStr for ConfPublicKey {
    type Err = pktmesh_crypto_auth::KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::parse(s).map(Self)
    }
}
deserialize_from_str!(
    ConfPublicKey,
    "a public key (52 base32 characters and \".k\")"
);

/// An `ip:port` or `[ipv6]:port` socket address (no host names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfSocketAddr(pub SocketAddr);

impl FromStr for ConfSocketAddr {
    type Err = std::net::AddrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SocketAddr::from_str(s).map(Self)
    }
}
deserialize_from_str!(
    ConfSocketAddr,
    "an address \"IPv4:port\" or \"[IPv6]:port\" (host names are not supported)"
);

/// A cjdns (`fc00::/8`) IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfAddress(pub Address);

impl FromStr for ConfAddress {
    type Err = pktmesh_crypto_auth::KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s).map(Self)
    }
}
deserialize_from_str!(ConfAddress, "a cjdns IPv6 address (fc00::/8)");

/// An Ethernet MAC address (`01:02:03:04:05:06`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

/// The text is not six `:`-separated pairs of hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("not six ':'-separated hex bytes")]
pub struct BadMac;

impl FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(BadMac)?;
            if part.len() != 2 {
                return Err(BadMac);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| BadMac)?;
        }
        if parts.next().is_some() {
            return Err(BadMac);
        }
        Ok(Self(out))
    }
}
deserialize_from_str!(MacAddr, "a MAC address like \"01:02:03:04:05:06\"");

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A password or other secret string: raw bytes, redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl Secret {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Secret, E> {
                Ok(Secret(b.to_vec()))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Secret, E> {
                Ok(Secret(s.as_bytes().to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// UDP/ETH beacon mode: 0 off, 1 accept beacons, 2 accept and send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Beacon {
    /// `0`: neither send nor accept beacons.
    #[default]
    Off,
    /// `1`: accept beacons from other nodes only.
    Accept,
    /// `2`: send and accept beacons.
    AcceptAndSend,
}

impl<'de> Deserialize<'de> for Beacon {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match i64::deserialize(d)? {
            0 => Ok(Self::Off),
            1 => Ok(Self::Accept),
            2 => Ok(Self::AcceptAndSend),
            other => Err(de::Error::custom(format_args!(
                "expected 0, 1 or 2, found {other}"
            ))),
        }
    }
}

/// A list that may also be written as a single object (`interfaces.UDPInterface`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(core::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of objects or a single object")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element()? {
                    out.push(item);
                }
                Ok(OneOrMany(out))
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<Self::Value, D::Error> {
                Vec::<T>::deserialize(d).map(OneOrMany)
            }
        }
        d.deserialize_newtype_struct(ONE_OR_MANY, V(core::marker::PhantomData))
    }
}

/// A `security` value that may be a string or an integer (`setuser`, `chroot`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrOrInt {
    /// A string (user name, directory).
    Str(String),
    /// An integer (`0` disables).
    Int(i64),
}

impl<'de> Deserialize<'de> for StrOrInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StrOrInt;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<StrOrInt, E> {
                Ok(StrOrInt::Int(i))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StrOrInt, E> {
                Ok(StrOrInt::Str(s.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `pktmesh.linkCapacityKbps`: one capacity for every peer link (a number, as before), or an
/// object with a `"default"` and entries per peer, keyed like `connectTo` (`"ip:port"`) or,
/// for peers that connect to us, by public key (`"….k"`). 0 means not paced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkCapacityConf {
    /// Every link without an entry of its own.
    pub default: u32,
    /// By the peer's link address.
    pub by_link: Vec<(SocketAddr, u32)>,
    /// By the peer's key.
    pub by_key: Vec<(PublicKey, u32)>,
}

impl<'de> Deserialize<'de> for LinkCapacityConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LinkCapacityConf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "kbit/s as a number, or an object of \"default\", \"ip:port\" or \"….k\" keys to kbit/s",
                )
            }
            fn visit_i64<E: de::Error>(self, i: i64) -> Result<LinkCapacityConf, E> {
                let kbps = u32::try_from(i).map_err(|_| E::custom(format!("{i} kbit/s")))?;
                Ok(LinkCapacityConf {
                    default: kbps,
                    ..LinkCapacityConf::default()
                })
            }
            fn visit_u64<E: de::Error>(self, i: u64) -> Result<LinkCapacityConf, E> {
                self.visit_i64(i64::try_from(i).unwrap_or(-1))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<LinkCapacityConf, A::Error> {
                let mut out = LinkCapacityConf::default();
                while let Some((key, kbps)) = map.next_entry::<String, u32>()? {
                    if key == "default" {
                        out.default = kbps;
                    } else if let Ok(addr) = key.parse::<SocketAddr>() {
                        out.by_link.push((addr, kbps));
                    } else if let Ok(peer) = PublicKey::parse(&key) {
                        out.by_key.push((peer, kbps));
                    } else {
                        return Err(de::Error::custom(format!(
                            "{key:?} is not \"default\", an ip:port (a connectTo key) or a public key (….k)"
                        )));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}
