//! Keys, addresses and the encrypted sessions of a cjdns node.
//!
//! What lives here:
//! - [`keys`]: private keys, X25519 public keys, the cjdns base32 `….k` text form and the
//!   `fc00::/8` IPv6 address derived from a public key.
//! - [`primitives`]: the one place in the workspace that provides raw ChaCha20 and Poly1305.
//!   Packet encryption (Noise sessions) and PacketCrypt's CryptoCycle (`pktmesh-chain`) both
//!   build on it, so the two uses share one implementation and one set of CPU-feature choices.
//!
//! Everything here is sans-IO: no sockets, no clocks, no threads. Time and randomness are
//! arguments.
#![forbid(unsafe_code)]

pub mod keys;
pub mod primitives;

pub use keys::{Address, KeyError, PrivateKey, PublicKey};
