//! Keys, addresses and the encrypted sessions of a cjdns node.
//!
//! What lives here:
//! - [`keys`]: private keys, X25519 public keys, the cjdns base32 `….k` text form and the
//!   `fc00::/8` IPv6 address derived from a public key.
//! - [`legacy`]: the legacy cjdns CryptoAuth (wire-compatible with cjdns 22.x): the session
//!   state machine, handshake header, users and passwords.
//! - [`noise`]: Noise (WireGuard IKpsk2) sessions in cjdns's framing, and the peer link that
//!   prefers Noise and falls back to legacy.
//! - [`replay`]: the 64-bit sliding replay window of legacy data packets.
//! - [`sign`]: Ed25519 with a cjdns identity (the clamped curve25519 scalar used directly, as
//!   cjdns `crypto/Sign.c` does), shared by lease messages and cjdns announcements.
//! - [`error`]: the typed errors (decrypt errors carry the cjdns codes 1–16).
//! - [`primitives`]: the one place in the workspace that provides raw ChaCha20 and Poly1305.
//!   Packet encryption (Noise sessions) and PacketCrypt's CryptoCycle (`pktmesh-chain`) both
//!   build on it, so the two uses share one implementation and one set of CPU-feature choices.
//!
//! - [`cpu`]: which SIMD code the ciphers run, chosen once at run time from the CPU's features,
//!   so a plain `cargo build --release` runs as fast as a `-C target-cpu=native` one.
//!
//! Everything here is sans-IO: no sockets, no clocks, no threads. Time and randomness are
//! arguments. `unsafe` is denied everywhere but in [`cpu`] (the `#[target_feature]` calls and
//! AVX2 intrinsics of the run-time dispatch).
#![deny(unsafe_code)]

mod chacha20;
pub mod cpu;
pub mod error;
pub mod keys;
mod keystream;
pub mod legacy;
pub mod noise;
mod poly1305;
pub mod primitives;
pub mod replay;
pub mod sign;

pub use error::{AddUserError, DecryptError, EncryptError};
pub use keys::{Address, KeyError, PrivateKey, PublicKey};
