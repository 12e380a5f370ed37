//! Hash primitives of PacketCrypt: BLAKE2b-256/512 (`HashCompress`), the ChaCha20-based
//! `HashExpand`, and Bitcoin's double SHA-256 used for block ids.

use blake2b_simd::Params;
use pktmesh_crypto_auth::primitives::chacha20_xor;
use sha2::{Digest, Sha256};

fn params(len: usize) -> Params {
    let mut p = Params::new();
    p.hash_length(len);
    p
}

fn out<const N: usize>(h: blake2b_simd::Hash) -> [u8; N] {
    let mut o = [0u8; N];
    o.copy_from_slice(h.as_bytes());
    o
}

/// Unkeyed BLAKE2b with a 32-byte output.
pub fn b2b256(data: &[u8]) -> [u8; 32] {
    out(params(32).hash(data))
}

/// Unkeyed BLAKE2b-256 of the concatenation of `parts`.
pub fn b2b256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut st = params(32).to_state();
    for p in parts {
        st.update(p);
    }
    out(st.finalize())
}

/// Unkeyed BLAKE2b with a 64-byte output.
pub fn b2b512(data: &[u8]) -> [u8; 64] {
    out(blake2b_simd::blake2b(data))
}

/// Unkeyed BLAKE2b-512 of the concatenation of `parts`.
pub fn b2b512_parts(parts: &[&[u8]]) -> [u8; 64] {
    let mut st = params(64).to_state();
    for p in parts {
        st.update(p);
    }
    out(st.finalize())
}

/// The 12-byte ChaCha20 nonce `LE32(num) ‖ "PC_EXPND"` used by [`hash_expand`].
fn expand_nonce(num: u32) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(&num.to_le_bytes());
    nonce[4..].copy_from_slice(b"PC_EXPND");
    nonce
}

/// `HashExpand(seed, num)`: fills `out` with ChaCha20 keystream (key `seed`, nonce
/// `LE32(num) ‖ "PC_EXPND"`, counter 0).
pub fn hash_expand(out: &mut [u8], seed: &[u8; 32], num: u32) {
    out.fill(0);
    chacha20_xor(seed, &expand_nonce(num), 0, out);
}

/// Like [`hash_expand`] but writes the keystream that starts at 64-byte block `block`.
pub fn hash_expand_at(out: &mut [u8], seed: &[u8; 32], num: u32, block: u32) {
    out.fill(0);
    chacha20_xor(seed, &expand_nonce(num), block, out);
}

/// Double SHA-256 (Bitcoin block ids and txids), in raw (not display) byte order.
pub fn dsha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(data)).into()
}

/// Reverses a 32-byte hash between raw and display (explorer) byte order.
pub fn reversed(hash: &[u8; 32]) -> [u8; 32] {
    let mut out = *hash;
    out.reverse();
    out
}
