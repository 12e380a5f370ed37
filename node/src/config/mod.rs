//! `cjdroute.conf`: cjdns' JSON-with-comments dialect, the typed configuration the daemon
//! runs from, and `--genconf`.
//!
//! # Loading
//!
//! [`Config::load`] follows cjdns 22.3 (`rust/cjdns_sys/src/rffi/benc.rs` → `read_conf`):
//!
//! 1. Parse the text strictly (see [`json`] for the dialect).
//! 2. If that fails, parse it again in lax mode (missing or extra commas and colons
//!    tolerated). A file that only parses laxly is accepted only if its `"version"` is absent
//!    or ≤ 1: generated files say `"version": 2`, and a version-2 file that does not parse
//!    strictly is an editing mistake, so it is rejected with the strict-mode error.
//! 3. Map the value onto [`Config`] with `serde`. A key the schema does not know is a
//!    [`Warning`], not an error (keys starting with `_`, cjdns' way of disabling a block such as
//!    `_disabled_ETHInterface`, get their own warning kind). A value of the wrong shape is a
//!    [`ConfigError::Value`] naming the file, the key path and what was expected.
//!
//! # Types
//!
//! Strings that the core interprets are validated while loading: the private key (64 hex
//! digits), peers' public keys (`….k`, address in `fc00::/8`), socket addresses (`ip:port`,
//! `[ipv6]:port`; host names are refused as cjdns refuses them), MAC addresses, integer ranges.
//! Passwords are kept as bytes (cjdns allows `\xHH` in them).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use thiserror::Error;

use crate::bencode::{Dict, Value};

mod genconf;
pub mod json;
mod valuede;

pub use genconf::{genconf, genconf_with, GenconfOptions};
pub use json::{SyntaxError, SyntaxErrorKind};
pub use valuede::KeyPath;

use valuede::{ValueDe, ONE_OR_MANY, STRING_OR_STRUCT};

// ------------------------------------------------------------------------------------------------
// Errors and warnings
// ------------------------------------------------------------------------------------------------

/// Why a config file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text does not parse even in lax mode.
    #[error("{file}: {error}")]
    Syntax {
        /// File name as given to [`Config::load`].
        file: String,
        /// Where and what (from the strict parse, which is the more precise one).
        error: SyntaxError,
    },
    /// The text parses only in lax mode, but the file claims a version that must be strict.
    #[error(
        "{file}: {error} (the file says \"version\": {version}, so it must parse strictly; \
         fix the syntax or set \"version\" to 1)"
    )]
    StrictRequired {
        /// File name.
        file: String,
        /// The strict-mode error.
        error: SyntaxError,
        /// The `version` found.
        version: i64,
    },
    /// The top-level value is not an object.
    #[error("{file}: the top level must be an object ({{ … }})")]
    NotAnObject {
        /// File name.
        file: String,
    },
    /// A value does not fit the schema.
    #[error("{file}: {path}: {message}")]
    Value {
        /// File name.
        file: String,
        /// Key path of the offending value.
        path: KeyPath,
        /// What was expected, and what was found.
        message: String,
    },
}

/// What a [`Warning`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// A key the schema does not know; it is ignored.
    UnknownKey,
    /// A key starting with `_` (cjdns' idiom for a disabled block); it is ignored.
    DisabledKey,
    /// The file parsed only in lax mode; the strict error is given.
    LaxSyntax(SyntaxError),
    /// A key given twice in one object (line of the later one); the last value wins.
    DuplicateKey {
        /// 1-based line.
        line: usize,
    },
    /// Text after the closing `}` of the file (from this line on); it is ignored.
    TrailingContent {
        /// 1-based line.
        line: usize,
    },
    /// A setting that is accepted but has no effect or is incomplete.
    Ineffective(String),
}

/// Something in the file that is accepted but worth logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where in the file.
    pub path: KeyPath,
    /// What.
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WarningKind::UnknownKey => write!(f, "{}: unknown key, ignored", self.path),
            WarningKind::DisabledKey => write!(f, "{}: disabled block, ignored", self.path),
            WarningKind::LaxSyntax(e) => {
                write!(f, "parsed in lax mode, strict parse failed at {e}")
            }
            WarningKind::DuplicateKey { line } => write!(
                f,
                "{}: key given more than once (line {line}), the last one wins",
                self.path
            ),
            WarningKind::TrailingContent { line } => {
                write!(f, "line {line}: text after the end of the config, ignored")
            }
            WarningKind::Ineffective(why) => write!(f, "{}: {why}", self.path),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Field types with validation
// ------------------------------------------------------------------------------------------------

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

// ------------------------------------------------------------------------------------------------
// The schema
// ------------------------------------------------------------------------------------------------

/// A whole `cjdroute.conf`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Config {
    /// `privateKey`: the node's identity.
    pub private_key: ConfPrivateKey,
    /// `publicKey`: informational; checked against the private key (warning on mismatch).
    pub public_key: Option<String>,
    /// `ipv6`: informational; checked against the private key (warning on mismatch).
    pub ipv6: Option<String>,
    /// `authorizedPasswords`: credentials accepted from incoming peers.
    #[serde(default)]
    pub authorized_passwords: Vec<AuthorizedPassword>,
    /// `admin`: the admin API socket.
    pub admin: AdminConf,
    /// `interfaces`: UDP and Ethernet interfaces.
    #[serde(default)]
    pub interfaces: Interfaces,
    /// `router`: TUN, IP tunnel, supernodes, DNS seeds, public peer.
    #[serde(default)]
    pub router: RouterConf,
    /// `security`: privilege dropping steps, in order.
    #[serde(default)]
    pub security: Vec<SecurityEntry>,
    /// `logging`.
    #[serde(default)]
    pub logging: Logging,
    /// `noBackground`: non-zero keeps the process in the foreground.
    #[serde(default)]
    pub no_background: i64,
    /// `pipe`: the angel↔core socket name (unused by pktmesh, which has no angel).
    pub pipe: Option<String>,
    /// `version`: 2 for generated files.
    pub version: Option<i64>,
    /// `pktmesh`: settings beyond cjdns (leases, route server); stock cjdns ignores the key.
    #[serde(default)]
    pub pktmesh: PktmeshConf,
}

/// The `pktmesh` section: link capacity, the route server, lease offers (`docs/node.md`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PktmeshConf {
    /// `linkCapacityKbps`: egress capacity of every peer link, kbit/s. Forwarded traffic is
    /// paced at it and queued by lease priority; absent or 0 sends at once.
    #[serde(default)]
    pub link_capacity_kbps: u32,
    /// `routeServer`: where the node announces its links and fetches lease configuration.
    pub route_server: Option<RouteServerConf>,
    /// `supernode`: this node is the cjdns face of a route server (stock cjdns nodes that list
    /// our key in `router.supernodes` reach the route server through us).
    pub supernode: Option<SupernodeConf>,
    /// `tunOffload`: 1 (the default) lets the kernel hand the TUN device TCP (and, on Linux
    /// ≥ 6.2, UDP) super-packets and partial checksums, which the node cuts and completes, and
    /// merges a flow's packets into one write on the way in; 0 keeps plain packets
    /// (`docs/perf.md`).
    pub tun_offload: Option<u8>,
    /// `workers`: data-path threads, each owning a shard of the node's peers and sessions
    /// (`docs/node.md`). Absent or 0: one per core the process may run on; at most 64.
    pub workers: Option<u8>,
}

/// `pktmesh.supernode`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SupernodeConf {
    /// `url`: the HTTP API of the route server whose supernode queries we relay.
    pub url: String,
}

/// `pktmesh.routeServer`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RouteServerConf {
    /// `url`: the route server's HTTP API, e.g. `"http://10.0.0.1:8470"`.
    pub url: String,
    /// `address`: the route server's cjdns address, which announcements name (optional).
    pub address: Option<ConfAddress>,
    /// `intervalSeconds`: seconds between announcements and lease polls (default 5).
    pub interval_seconds: Option<u64>,
    /// `leaseOffer`: leases this node sells on each of its links, if any.
    pub lease_offer: Option<LeaseOfferConf>,
}

/// `pktmesh.routeServer.leaseOffer`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct LeaseOfferConf {
    /// `maxKbps`: most kbit/s one lease may reserve.
    pub max_kbps: u32,
    /// `maxSeconds`: longest lease.
    pub max_seconds: u32,
    /// `priceMsat`: asking price, millisatoshi per Mbit/s per hour.
    #[serde(default)]
    pub price_msat: u64,
}

/// One `authorizedPasswords` entry.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct AuthorizedPassword {
    /// The password.
    pub password: Secret,
    /// Login name (enables login-based auth) and display name.
    pub user: Option<String>,
    /// Restricts the password to the peer with this address.
    pub ipv6: Option<ConfAddress>,
}

/// `admin`.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct AdminConf {
    /// Where the admin API listens, e.g. `127.0.0.1:11234`.
    pub bind: ConfSocketAddr,
    /// Admin password; `NONE` disables authentication; absent means "random at start-up".
    pub password: Option<Secret>,
}

/// `interfaces`.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct Interfaces {
    /// `UDPInterface` (a list, or a single object).
    #[serde(rename = "UDPInterface", default)]
    pub udp: OneOrMany<UdpInterface>,
    /// `ETHInterface` (a list, or a single object).
    #[serde(rename = "ETHInterface", default)]
    pub eth: OneOrMany<EthInterface>,
}

/// One UDP interface.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UdpInterface {
    /// Data socket address; absent lets the system choose.
    pub bind: Option<ConfSocketAddr>,
    /// Beacon mode.
    #[serde(default)]
    pub beacon: Beacon,
    /// UDP port for beacons (cjdns generates 64512).
    pub beacon_port: Option<u16>,
    /// Devices, broadcast addresses or `"all"` to beacon on.
    pub beacon_devices: Option<Vec<String>>,
    /// DSCP value for outgoing packets.
    pub dscp: Option<u8>,
    /// Peers to connect to, keyed by address.
    #[serde(default)]
    pub connect_to: BTreeMap<ConfSocketAddr, PeerCredentials>,
}

/// One Ethernet interface.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct EthInterface {
    /// Device name or `"all"`.
    pub bind: Option<String>,
    /// Beacon mode.
    pub beacon: Option<Beacon>,
    /// Peers to connect to, keyed by MAC address.
    #[serde(default)]
    pub connect_to: BTreeMap<MacAddr, PeerCredentials>,
}

/// How to reach and authenticate to one peer (`connectTo` value), as passed to
/// `UDPInterface_beginConnection`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PeerCredentials {
    /// The peer's key.
    pub public_key: ConfPublicKey,
    /// Password the peer has for us.
    pub password: Option<Secret>,
    /// Login name the peer has for us.
    pub login: Option<String>,
    /// Display name for the peer.
    pub peer_name: Option<String>,
    /// Protocol version hint.
    pub version: Option<i64>,
}

/// `router`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RouterConf {
    /// `interface`: TUN or socket.
    pub interface: Option<RouterInterface>,
    /// `ipTunnel`.
    #[serde(default)]
    pub ip_tunnel: IpTunnel,
    /// `supernodes`: route server keys.
    #[serde(default)]
    pub supernodes: Vec<ConfPublicKey>,
    /// `dnsSeeds`: host names of peering seeds.
    #[serde(default)]
    pub dns_seeds: Vec<String>,
    /// `publicPeer`: an object `{id, ipv4, ipv6}` or just the id string.
    pub public_peer: Option<PublicPeer>,
}

/// `router.interface`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RouterInterface {
    /// `TUNInterface` or `SocketInterface` (anything else is ignored, as cjdns does).
    #[serde(rename = "type")]
    pub kind: String,
    /// Persistent TUN device name.
    pub tun_device: Option<String>,
    /// Socket path for `SocketInterface`.
    pub socket_full_path: Option<String>,
    /// Obsolete (cjdns warns that it has no effect).
    pub socket_attempt_to_create: Option<i64>,
    /// Obsolete (cjdns ignores it with a warning).
    pub tunfd: Option<String>,
}

impl RouterInterface {
    /// Whether this asks for a TUN device.
    pub fn is_tun(&self) -> bool {
        self.kind == "TUNInterface"
    }

    /// Whether this asks for a socket interface.
    pub fn is_socket(&self) -> bool {
        self.kind == "SocketInterface"
    }
}

/// `router.ipTunnel`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IpTunnel {
    /// Nodes allowed to connect to us, with the addresses they get.
    #[serde(default)]
    pub allowed_connections: Vec<AllowedConnection>,
    /// Nodes we ask for addresses.
    #[serde(default)]
    pub outgoing_connections: Vec<ConfPublicKey>,
}

/// One `router.ipTunnel.allowedConnections` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct AllowedConnection {
    /// The client's key.
    pub public_key: ConfPublicKey,
    /// IPv4 address to issue.
    pub ip4_address: Option<Ipv4Addr>,
    /// Routable IPv4 prefix length.
    pub ip4_prefix: Option<u8>,
    /// Allocated IPv4 block size (prefix length).
    pub ip4_alloc: Option<u8>,
    /// IPv6 address to issue.
    pub ip6_address: Option<Ipv6Addr>,
    /// Routable IPv6 prefix length.
    pub ip6_prefix: Option<u8>,
    /// Allocated IPv6 block size (prefix length).
    pub ip6_alloc: Option<u8>,
}

/// `router.publicPeer`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublicPeer {
    /// Peer id posted to the supernode; nothing is posted without it.
    pub id: Option<String>,
    /// Public IPv4 address and/or port override.
    pub ipv4: Option<String>,
    /// Public IPv6 address and/or port override.
    pub ipv6: Option<String>,
}

#[derive(Deserialize)]
struct PublicPeerFields {
    id: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
}

impl<'de> Deserialize<'de> for PublicPeer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PublicPeer;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object {id, ipv4, ipv6} or a peer id string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PublicPeer, E> {
                Ok(PublicPeer {
                    id: Some(s.to_owned()),
                    ..PublicPeer::default()
                })
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<PublicPeer, D::Error> {
                let f = PublicPeerFields::deserialize(d)?;
                Ok(PublicPeer {
                    id: f.id,
                    ipv4: f.ipv4,
                    ipv6: f.ipv6,
                })
            }
        }
        d.deserialize_newtype_struct(STRING_OR_STRUCT, V)
    }
}

/// One `security` step. cjdns reads each entry by the first key it recognises, in this order:
/// `setuser` (string), `chroot` (string), `nofiles`, `setuser` (int), `noforks`, `chroot`
/// (int), `setupComplete`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SecurityEntry {
    /// User to switch to, or `0` to not switch.
    pub setuser: Option<StrOrInt>,
    /// With `setuser`: keep `CAP_NET_ADMIN`.
    pub keep_net_admin: Option<i64>,
    /// Old name of `keepNetAdmin`.
    pub exempt_angel: Option<i64>,
    /// Directory to chroot into, or `0` to not chroot.
    pub chroot: Option<StrOrInt>,
    /// Non-zero forbids opening files.
    pub nofiles: Option<i64>,
    /// Zero allows forking.
    pub noforks: Option<i64>,
    /// Zero leaves setup incomplete (the cjdns core then exits).
    pub setup_complete: Option<i64>,
}

/// `logging`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Logging {
    /// `"stdout"` to log to standard output.
    pub log_to: Option<String>,
}

// ------------------------------------------------------------------------------------------------
// Loading
// ------------------------------------------------------------------------------------------------

/// A loaded config, the raw value it came from, and what was worth a warning.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// The parsed file (as cjdns' core would see it), e.g. for `--cleanconf`.
    pub raw: Dict,
    /// Unknown keys, lax parsing and the like.
    pub warnings: Vec<Warning>,
}

/// Parses the text of a config file into a dictionary following cjdns' strict-then-lax rule.
/// Returns the dictionary and warnings; `file` names the file in errors.
pub fn parse_text(text: &[u8], file: &str) -> Result<(Dict, Vec<Warning>), ConfigError> {
    let mut warnings = Vec::new();
    let (value, notes) = match json::parse(text, false) {
        Ok(ok) => ok,
        Err(strict) => {
            let Ok((value, notes)) = json::parse(text, true) else {
                return Err(ConfigError::Syntax {
                    file: file.to_owned(),
                    error: strict,
                });
            };
            // cjdns reads the version as an integer; anything else is an error there too.
            let version = match &value {
                Value::Dict(d) => match d.get("version") {
                    None => 0,
                    Some(Value::Int(v)) => *v,
                    Some(_) => {
                        return Err(ConfigError::Value {
                            file: file.to_owned(),
                            path: KeyPath::from_keys(["version"]),
                            message: "expected an integer".to_owned(),
                        })
                    }
                },
                _ => 0,
            };
            if version > 1 {
                return Err(ConfigError::StrictRequired {
                    file: file.to_owned(),
                    error: strict,
                    version,
                });
            }
            warnings.push(Warning {
                path: KeyPath::default(),
                kind: WarningKind::LaxSyntax(strict),
            });
            (value, notes)
        }
    };
    for note in notes {
        warnings.push(match note {
            json::SyntaxNote::DuplicateKey { key, line } => Warning {
                path: KeyPath::default().child_key(&key),
                kind: WarningKind::DuplicateKey { line },
            },
            json::SyntaxNote::TrailingContent { line } => Warning {
                path: KeyPath::default(),
                kind: WarningKind::TrailingContent { line },
            },
        });
    }
    match value {
        Value::Dict(d) => Ok((d, warnings)),
        _ => Err(ConfigError::NotAnObject {
            file: file.to_owned(),
        }),
    }
}

impl Config {
    /// Loads a config from the bytes of a file (see the module docs for the rules).
    pub fn load(text: &[u8], file: &str) -> Result<Loaded, ConfigError> {
        let (raw, mut warnings) = parse_text(text, file)?;
        let config = Self::from_dict(&raw, file, &mut warnings)?;
        Ok(Loaded {
            config,
            raw,
            warnings,
        })
    }

    /// Maps an already parsed dictionary onto the schema, appending warnings.
    pub fn from_dict(
        raw: &Dict,
        file: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, ConfigError> {
        let unknown = RefCell::new(Vec::new());
        let value = Value::Dict(raw.clone());
        let result = Self::deserialize(ValueDe {
            value: &value,
            path: KeyPath::default(),
            unknown: &unknown,
        });
        let config = result.map_err(|e| ConfigError::Value {
            file: file.to_owned(),
            path: e.path.unwrap_or_default(),
            message: e.message,
        })?;
        for path in unknown.into_inner() {
            let disabled = path.last_key().is_some_and(|k| k.starts_with(b"_"));
            warnings.push(Warning {
                path,
                kind: if disabled {
                    WarningKind::DisabledKey
                } else {
                    WarningKind::UnknownKey
                },
            });
        }
        config.validate(file, warnings)?;
        Ok(config)
    }

    /// Cross-field rules cjdns enforces when applying the config.
    fn validate(&self, file: &str, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
        let err = |keys: &[&str], index: Option<usize>, message: &str| {
            let mut path = KeyPath::from_keys(keys.iter().copied());
            if let Some(i) = index {
                path = path.child_index(i);
            }
            ConfigError::Value {
                file: file.to_owned(),
                path,
                message: message.to_owned(),
            }
        };
        let public = self.public_key();
        if let Some(text) = &self.public_key {
            if PublicKey::parse_any(text).ok() != Some(public) {
                warnings.push(Warning {
                    path: KeyPath::from_keys(["publicKey"]),
                    kind: WarningKind::Ineffective(format!(
                        "does not match privateKey (which gives {public}); privateKey is used"
                    )),
                });
            }
        }
        if let Some(text) = &self.ipv6 {
            let ours = Ipv6Addr::from(public.address());
            if Ipv6Addr::from_str(text).ok() != Some(ours) {
                warnings.push(Warning {
                    path: KeyPath::from_keys(["ipv6"]),
                    kind: WarningKind::Ineffective(format!(
                        "does not match privateKey (which gives {}); privateKey is used",
                        public.address()
                    )),
                });
            }
        }
        for (i, udp) in self.interfaces.udp.0.iter().enumerate() {
            if udp.beacon != Beacon::Off
                && (udp.beacon_port.is_none() || udp.beacon_devices.is_none())
            {
                warnings.push(Warning {
                    path: KeyPath::from_keys(["interfaces", "UDPInterface"])
                        .child_index(i)
                        .child_key(b"beacon"),
                    kind: WarningKind::Ineffective(
                        "beacon needs beaconPort and beaconDevices; beaconing stays off".into(),
                    ),
                });
            }
        }
        if let Some(iface) = &self.router.interface {
            if iface.is_socket() && iface.socket_full_path.is_none() {
                return Err(err(
                    &["router", "interface", "socketFullPath"],
                    None,
                    "required when type is SocketInterface",
                ));
            }
        }
        for (i, c) in self.router.ip_tunnel.allowed_connections.iter().enumerate() {
            let keys = ["router", "ipTunnel", "allowedConnections"];
            if c.ip4_address.is_none() && c.ip6_address.is_none() {
                return Err(err(
                    &keys,
                    Some(i),
                    "either ip4Address or ip6Address is required",
                ));
            }
            if c.ip4_prefix.is_some() && c.ip4_address.is_none() {
                return Err(err(&keys, Some(i), "ip4Prefix requires ip4Address"));
            }
            if c.ip6_prefix.is_some() && c.ip6_address.is_none() {
                return Err(err(&keys, Some(i), "ip6Prefix requires ip6Address"));
            }
        }
        Ok(())
    }

    /// The node's private key.
    pub fn private_key(&self) -> PrivateKey {
        self.private_key.0.clone()
    }

    /// The node's public key (derived from the private key).
    pub fn public_key(&self) -> PublicKey {
        self.private_key.0.public_key()
    }

    /// Where the admin API listens.
    pub fn admin_bind(&self) -> SocketAddr {
        self.admin.bind.0
    }

    /// The admin password; `None` if absent (cjdns then makes a random one).
    /// The literal `NONE` disables authentication.
    pub fn admin_password(&self) -> Option<&[u8]> {
        self.admin.password.as_ref().map(Secret::as_bytes)
    }

    /// UDP interfaces in file order.
    pub fn udp_interfaces(&self) -> &[UdpInterface] {
        &self.interfaces.udp.0
    }

    /// Ethernet interfaces in file order.
    pub fn eth_interfaces(&self) -> &[EthInterface] {
        &self.interfaces.eth.0
    }

    /// Every UDP peer to connect to, with the index of the interface it belongs to.
    pub fn udp_peers(&self) -> impl Iterator<Item = UdpPeer<'_>> {
        self.interfaces
            .udp
            .0
            .iter()
            .enumerate()
            .flat_map(|(interface, udp)| {
                udp.connect_to.iter().map(move |(addr, creds)| UdpPeer {
                    interface,
                    addr: addr.0,
                    public_key: creds.public_key.0,
                    credentials: creds,
                })
            })
    }

    /// Whether to stay in the foreground (`noBackground` non-zero).
    pub fn no_background(&self) -> bool {
        self.no_background != 0
    }

    /// Whether `router.interface` asks for a TUN device (the generated default).
    pub fn wants_tun(&self) -> bool {
        self.router
            .interface
            .as_ref()
            .is_some_and(RouterInterface::is_tun)
    }

    /// The persistent TUN device name, if one is configured.
    pub fn tun_device(&self) -> Option<&str> {
        self.router.interface.as_ref()?.tun_device.as_deref()
    }

    /// Whether `logging.logTo` is `"stdout"`.
    pub fn log_to_stdout(&self) -> bool {
        self.logging.log_to.as_deref() == Some("stdout")
    }
}

/// One UDP peer from `connectTo`, with parsed address and key.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct UdpPeer<'a> {
    /// Index into [`Config::udp_interfaces`].
    pub interface: usize,
    /// Where to send.
    pub addr: SocketAddr,
    /// Who must answer.
    pub public_key: PublicKey,
    /// Password, login, names.
    pub credentials: &'a PeerCredentials,
}

impl UdpPeer<'_> {
    /// The password, if any.
    pub fn password(&self) -> Option<&[u8]> {
        self.credentials.password.as_ref().map(Secret::as_bytes)
    }

    /// The login, if any.
    pub fn login(&self) -> Option<&str> {
        self.credentials.login.as_deref()
    }
}

/// Writes `raw` as plain strict JSON without comments (sorted keys, two-space indentation),
/// for `--cleanconf`. This is the layout of the captured configs, not byte for byte what
/// cjdns' own `--cleanconf` prints (which indents differently and writes `\xHH` in upper
/// case).
pub fn clean_conf(raw: &Dict) -> String {
    let mut out = String::new();
    json::write_clean(&Value::Dict(raw.clone()), 0, &mut out);
    out.push('\n');
    out
}
