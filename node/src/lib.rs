//! The sans-IO core of a cjdns node: everything `cjdroute` does between bytes on a socket or
//! TUN device and bytes back out, with time and randomness as arguments.
//!
//! - [`bencode`]: bencode with the cjdns top-level padding quirk.
//! - [`config`]: `cjdroute.conf` (cjdns' JSON-with-comments dialect) and `--genconf`.
//! - [`admin`]: the admin API (bencode over UDP): cookies, password auth, dispatch;
//!   [`node_admin`]: the node's admin functions; [`host`]: what those functions ask of the
//!   process hosting the node (sockets, TUN, privileges), recorded for the driver.
//! - [`dht`]: the legacy DHT pathfinder (CJDHT messages, content type 256).
//! - [`core`]: the node itself: the link, switch, session and upper stages wired together;
//!   [`pathfinding`]: what it needs from a pathfinder.
//! - [`peers`], [`sessions`]: the peer table (InterfaceController) and the end-to-end session
//!   table (SessionManager); [`link_crypto`]: a peer link's legacy or Noise encryption;
//!   [`routes`]: the route server's paths for leased traffic.
//! - [`beacon`], [`eth`]: LAN beacons, and the framing and peer naming of Ethernet links.
//! - [`shard`]: one node split over several workers (who owns which peer and session).
//! - [`ipv6`]: IPv6 packets to and from cjdns content types; [`packet`]: the reusable buffer.
//!
//! Sockets, TUN devices, timers and threads live in the daemon (`pktmesh-tools`, `cjdroute`).
#![forbid(unsafe_code)]

pub mod admin;
pub mod beacon;
pub mod bencode;
pub mod config;
pub mod core;
pub mod dht;
pub mod egress;
pub mod eth;
pub mod host;
pub mod ipv6;
pub mod link_crypto;
pub mod node_admin;
pub mod offload;
pub mod packet;
pub mod pathfinding;
pub mod peers;
pub mod routes;
pub mod sessions;
pub mod shard;
