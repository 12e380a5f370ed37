//! Raw ChaCha20 and Poly1305, shared by packet encryption and PacketCrypt mining.
//!
//! The Noise session AEAD (ChaCha20-Poly1305) and PacketCrypt's CryptoCycle, which runs
//! ChaCha20 and Poly1305 separately over a 2048-byte packet-sized buffer, both take these
//! primitives from this module. Only the primitives live here; the constructions that use them
//! live with their protocol (`crate::noise` for sessions, `pktmesh_chain` for CryptoCycle).

pub use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
pub use chacha20::{ChaCha20, ChaCha20Legacy};
pub use poly1305::universal_hash::{KeyInit, UniversalHash};
pub use poly1305::Poly1305;
