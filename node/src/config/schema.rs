//! The schema of `cjdroute.conf`: one type per block, as cjdns 22.3 reads it, plus the
//! `pktmesh` block (paced links, leases, workers).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use super::valuede::STRING_OR_STRUCT;

use super::values::*;

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
    /// `linkCapacityKbps`: egress capacity of the peer links, kbit/s, one for all or per peer
    /// ([`LinkCapacityConf`]). Forwarded traffic is paced at it and queued by lease priority;
    /// absent or 0 sends at once.
    #[serde(default)]
    pub link_capacity_kbps: LinkCapacityConf,
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
    /// `linkCrypto`: `"noise"` (the default) negotiates Noise with peers that speak it and
    /// keeps legacy CryptoAuth for those that do not (stock cjdns); `"legacy"` speaks legacy
    /// CryptoAuth only and refuses Noise (`docs/node.md`, "Noise on peer links").
    pub link_crypto: Option<LinkCryptoConf>,
    /// `sessionCrypto`: `"noise"` (the default) upgrades end-to-end sessions with pktmesh
    /// nodes to Noise and keeps legacy CryptoAuth with stock cjdns; `"legacy"` keeps every
    /// session legacy and drops Noise initiations (`docs/node.md`, "Noise end to end").
    pub session_crypto: Option<SessionCryptoConf>,
}

/// `pktmesh.sessionCrypto`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SessionCryptoConf {
    /// Noise with pktmesh nodes.
    Noise,
    /// Legacy CryptoAuth only.
    Legacy,
}

/// `pktmesh.linkCrypto`.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LinkCryptoConf {
    /// Noise where the peer speaks it.
    Noise,
    /// Legacy CryptoAuth only.
    Legacy,
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
