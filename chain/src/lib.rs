//! PKT chain rules and PacketCrypt proof-of-work validation, sans-IO.
//!
//! What lives here:
//! - [`hash`]: BLAKE2b, `HashExpand` (ChaCha20 keystream) and double SHA-256.
//! - [`cryptocycle`]: the 2048-byte CryptoCycle state and its Init/Update/Smul/Final.
//! - [`randhash`]: RandGen program generation and the RandHash interpreter.
//! - [`item`]: announcement table items (v1 `mkitem2`, v0 memohash) and the table merkle tree.
//! - [`difficulty`]: compact targets, work, effective block targets, announcement aging.
//! - [`announce`]: the 1024-byte announcement view and its v0/v1 validation (`CheckAnn`).
//! - [`block`]: the 80-byte header, the coinbase commitment, the PcP wire format, the
//!   range-merkle proof tree and [`block::validate_block_proof`].
//! - [`params`]: PKT mainnet constants (block reward, Network Steward share, genesis).
//!
//! # One ChaCha20/Poly1305 for packets and mining
//! CryptoCycle is an AEAD pass over a packet-sized buffer. It calls `chacha20_xor` and
//! `poly1305_padded` of `pktmesh_crypto_auth::primitives`, whose ChaCha20 and Poly1305 the
//! Noise session AEAD runs too, so mining and Noise packet encryption run the same code (and
//! the same run-time CPU-feature selection, `pktmesh_crypto_auth::cpu`: the vector tests run
//! at every level the CPU has). `tests/shared_path.rs` counts the calls of both uses; the
//! legacy CryptoAuth box (XSalsa20-Poly1305, cjdns' wire format) is a different cipher on the
//! same lanes and the same Poly1305 (`crypto-auth/src/legacy/secretbox.rs`). BLAKE2b
//! (`blake2b_simd`) picks its AVX2 code at run time by itself.
//!
//! Everything here is deterministic and performs no I/O: parent block hashes, heights and the
//! announcement set are arguments. Malformed input yields a typed error, never a panic.
#![forbid(unsafe_code)]

pub mod announce;
pub mod block;
pub mod cryptocycle;
pub mod difficulty;
pub mod hash;
pub mod item;
pub mod params;
pub mod randhash;
