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

/// XORs `buf` in place with the ChaCha20 (IETF, RFC 8439) keystream for `key` and `nonce`,
/// starting at 64-byte block `counter`.
///
/// Encryption and decryption are the same operation. PacketCrypt uses this with counter 0 to
/// expand seeds (`HashExpand`) and with counter 1 for the CryptoCycle message, exactly as the
/// AEAD does for packet payloads.
pub fn chacha20_xor(key: &[u8; 32], nonce: &[u8; 12], counter: u32, buf: &mut [u8]) {
    let mut cipher = ChaCha20::new(key.into(), nonce.into());
    if counter != 0 {
        cipher.seek(u64::from(counter) * 64);
    }
    cipher.apply_keystream(buf);
}

/// The Poly1305 one-time key of the ChaCha20-Poly1305 AEAD (RFC 8439 §2.6): the first 32 bytes
/// of ChaCha20 keystream block 0 for `key` and `nonce`.
pub fn poly1305_key_gen(key: &[u8; 32], nonce: &[u8; 12]) -> [u8; 32] {
    let mut block0 = [0u8; 32];
    chacha20_xor(key, nonce, 0, &mut block0);
    block0
}

/// Poly1305 tag of the concatenation of `parts`, each part zero-padded to a multiple of 16
/// bytes (the padding rule of the RFC 8439 AEAD). `one_time_key` must never be reused.
pub fn poly1305_padded(one_time_key: &[u8; 32], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = Poly1305::new(one_time_key.into());
    for part in parts {
        mac.update_padded(part);
    }
    mac.finalize().into()
}
