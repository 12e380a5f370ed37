//! The sans-IO core of a cjdns node: everything `cjdroute` does between bytes on a socket or
//! TUN device and bytes back out, with time and randomness as arguments.
//!
//! - [`bencode`]: bencode with the cjdns top-level padding quirk.
//! - [`config`]: `cjdroute.conf` (cjdns' JSON-with-comments dialect) and `--genconf`.
//! - [`admin`]: the admin API (bencode over UDP): cookies, password auth, dispatch.
//! - [`dht`]: the legacy DHT pathfinder (CJDHT messages, content type 256).
//!
//! Sockets, TUN devices, timers and threads live in the daemon (`pktmesh-tools`, `cjdroute`).
#![forbid(unsafe_code)]

pub mod admin;
pub mod bencode;
pub mod config;
pub mod dht;
