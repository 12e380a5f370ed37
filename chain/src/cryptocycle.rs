//! CryptoCycle: PacketCrypt's inner loop, one ChaCha20-Poly1305 AEAD pass over a 2048-byte,
//! packet-sized state.
//!
//! The state layout is: bytes `[0,12)` nonce, `[12,16)` a header word whose bit fields select
//! encrypt/decrypt, AAD length, message length and zero counts, `[16,48)` the key (after a
//! crypt, `[16,32)` holds the Poly1305 tag), then AAD and message. ChaCha20 and Poly1305 come
//! from [`pktmesh_crypto_auth::primitives`], the same functions the packet AEAD uses.
//!
//! Nothing here allocates; every operation works in place on a [`State`].

use crate::hash::{b2b256, hash_expand, hash_expand_at};
use curve25519_dalek::edwards::EdwardsPoint;
use pktmesh_crypto_auth::primitives::{
    chacha20_xor, chacha20_xor_after_key, poly1305_key_gen, poly1305_padded,
};

/// Size of the CryptoCycle state in bytes.
pub const STATE_LEN: usize = 2048;
/// Size of one item (a table item or a whole announcement) fed to [`State::update`].
pub const ITEM_LEN: usize = 1024;

/// Offset of the header word.
const HDR_WORD: usize = 12;
/// Offset where AAD (then the message) starts.
const HDR_LEN: usize = 48;

/// Bit fields of the header word at bytes `[12,16)`.
mod bits {
    pub(super) const AZC_SHIFT: u32 = 0;
    pub(super) const TZC_SHIFT: u32 = 8;
    pub(super) const DECRYPT_SHIFT: u32 = 12;
    pub(super) const ADD_SHIFT: u32 = 13;
    pub(super) const TRUNC_SHIFT: u32 = 16;
    pub(super) const LEN_SHIFT: u32 = 17;
    pub(super) const FAIL_SHIFT: u32 = 24;
    pub(super) const VERSION_SHIFT: u32 = 25;
}

/// The 2048-byte CryptoCycle state.
#[derive(Clone)]
#[repr(C, align(64))]
pub struct State {
    bytes: [u8; STATE_LEN],
}

impl Default for State {
    fn default() -> Self {
        State {
            bytes: [0u8; STATE_LEN],
        }
    }
}

impl core::fmt::Debug for State {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("State")
            .field("head", &&self.bytes[..48])
            .finish_non_exhaustive()
    }
}

impl State {
    /// A zeroed state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The raw 2048 bytes.
    pub fn bytes(&self) -> &[u8; STATE_LEN] {
        &self.bytes
    }

    /// The raw 2048 bytes, mutable (used by RandHash and by tests that craft AEAD inputs).
    pub fn bytes_mut(&mut self) -> &mut [u8; STATE_LEN] {
        &mut self.bytes
    }

    /// The first 32 bytes: after [`State::finalize`] this is the work hash.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = [0u8; 32];
        h.copy_from_slice(&self.bytes[..32]);
        h
    }

    fn word(&self) -> u32 {
        u32::from_le_bytes([
            self.bytes[HDR_WORD],
            self.bytes[HDR_WORD + 1],
            self.bytes[HDR_WORD + 2],
            self.bytes[HDR_WORD + 3],
        ])
    }

    fn set_word(&mut self, w: u32) {
        self.bytes[HDR_WORD..HDR_WORD + 4].copy_from_slice(&w.to_le_bytes());
    }

    /// `GetItemNo`: the little-endian u64 at bytes `[16,24)` (the first 8 tag bytes).
    pub fn item_no(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.bytes[16..24]);
        u64::from_le_bytes(b)
    }

    /// `MakeFuzzable`: derives the header word from key/tag bytes `[16,20)`, clears version and
    /// fail bits and forces the message length to at least 32 blocks.
    pub fn make_fuzzable(&mut self) {
        let mut w = u32::from_le_bytes([
            self.bytes[16],
            self.bytes[17],
            self.bytes[18],
            self.bytes[19],
        ]);
        w &= !(0x7f << bits::VERSION_SHIFT);
        w &= !(1 << bits::FAIL_SHIFT);
        w |= 32 << bits::LEN_SHIFT;
        self.set_word(w);
    }

    /// Whether the fail flag is set (only after a crypt with a non-zero version or fail bit).
    pub fn is_failed(&self) -> bool {
        self.word() >> bits::FAIL_SHIFT & 1 == 1
    }

    /// One AEAD pass as selected by the header word (see the module docs): encrypt or decrypt
    /// the message in place and write the Poly1305 tag to bytes `[16,32)`.
    pub fn crypt(&mut self) {
        let mut w = self.word();
        if w >> bits::VERSION_SHIFT != 0 || w >> bits::FAIL_SHIFT & 1 == 1 {
            self.set_word(w | 1 << bits::FAIL_SHIFT);
            return;
        }
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&self.bytes[..12]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&self.bytes[16..48]);
        // One cipher instance: block 0 gives the Poly1305 key (RFC 8439 §2.6), the message
        // is then XORed from block 1 on without re-keying or seeking.
        let add = (w >> bits::ADD_SHIFT & 7) as usize;
        let len = (w >> bits::LEN_SHIFT & 0x7f) as usize;
        let max = 125 - add;
        let (len, truncated) = if len > max { (max, 1) } else { (len, 0) };
        w &= !(0x7f << bits::LEN_SHIFT | 1 << bits::TRUNC_SHIFT);
        w |= (len as u32) << bits::LEN_SHIFT | truncated << bits::TRUNC_SHIFT;
        self.set_word(w);

        let alen = 16 * add;
        let mlen = 16 * len;
        let tzc = (w >> bits::TZC_SHIFT & 15) as usize;
        let azc = (w >> bits::AZC_SHIFT & 15) as usize;
        let decrypt = w >> bits::DECRYPT_SHIFT & 1 == 1;
        // alen + mlen <= 16 * 125 = 2000, so the region always fits in the 2048 bytes.
        let msg_start = HDR_LEN + alen;
        let msg_end = msg_start + mlen;

        let mut lens = [0u8; 16];
        lens[..8].copy_from_slice(&(alen as u64).wrapping_sub(azc as u64).to_le_bytes());
        lens[8..].copy_from_slice(&(mlen as u64).wrapping_sub(tzc as u64).to_le_bytes());

        // Encrypting: one keystream pass gives the Poly1305 key (block 0) and encrypts the
        // message (block 1 on) in place. Decrypting: the key comes first, for the tag over the
        // ciphertext, then the message is decrypted from block 1 on.
        let tag = if decrypt {
            let poly_key = poly1305_key_gen(&key, &nonce);
            let tag = poly1305_padded(&poly_key, &[&self.bytes[HDR_LEN..msg_end], &lens]);
            chacha20_xor(&key, &nonce, 1, &mut self.bytes[msg_start..msg_end]);
            tag
        } else {
            let poly_key =
                chacha20_xor_after_key(&key, &nonce, &mut self.bytes[msg_start..msg_end]);
            let zero_from = msg_end - tzc.min(mlen);
            self.bytes[zero_from..msg_end].fill(0);
            poly1305_padded(&poly_key, &[&self.bytes[HDR_LEN..msg_end], &lens])
        };
        self.bytes[16..32].copy_from_slice(&tag);
    }

    /// `Init(seed, nonce)`: the state becomes `HashExpand(seed, 0, 2048)` with `LE64(nonce)`
    /// over bytes `[0,8)`, then [`State::make_fuzzable`].
    pub fn init(&mut self, seed: &[u8; 32], nonce: u64) {
        hash_expand(&mut self.bytes, seed, 0);
        self.bytes[..8].copy_from_slice(&nonce.to_le_bytes());
        self.make_fuzzable();
    }

    /// `Init` for a state whose next operation is [`State::update`]: only the keystream bytes
    /// that the first update does not overwrite (`[0,32)` and `[1056,2048)`) are computed.
    /// Every byte read later is identical to [`State::init`]; bytes `[64,1024)` keep their
    /// previous contents until the update overwrites them.
    pub fn init_for_update(&mut self, seed: &[u8; 32], nonce: u64) {
        hash_expand(&mut self.bytes[..64], seed, 0);
        hash_expand_at(&mut self.bytes[1024..], seed, 0, 16);
        self.bytes[..8].copy_from_slice(&nonce.to_le_bytes());
        self.make_fuzzable();
    }

    /// `Update(item)`: copy the 1024-byte item over bytes `[32,1056)`, make fuzzable, crypt.
    pub fn update(&mut self, item: &[u8; ITEM_LEN]) {
        self.bytes[32..32 + ITEM_LEN].copy_from_slice(item);
        self.make_fuzzable();
        self.crypt();
    }

    /// `Smul`: `P = X25519_base(state[32,64))`; `state[64,96) = X25519(state[0,32), P)`.
    ///
    /// `P` is kept in Edwards form (it lies in the prime-order subgroup), so the second
    /// multiplication uses curve25519-dalek's variable-base Edwards multiplication (with its
    /// SIMD backends) and only the result is converted to the Montgomery u-coordinate. Both
    /// scalars are clamped as in X25519; the output equals libsodium's
    /// `crypto_scalarmult_curve25519` (checked by the `primitives.json` Smul vector).
    pub fn smul(&mut self) {
        let mut s1 = [0u8; 32];
        s1.copy_from_slice(&self.bytes[32..64]);
        let p = EdwardsPoint::mul_base_clamped(s1);
        let mut s0 = [0u8; 32];
        s0.copy_from_slice(&self.bytes[..32]);
        let q = p.mul_clamped(s0).to_montgomery();
        self.bytes[64..96].copy_from_slice(q.as_bytes());
    }

    /// `Final`: `state[0,32) = BLAKE2b-256(state)`; the result is the work hash.
    pub fn finalize(&mut self) {
        let h = b2b256(&self.bytes);
        self.bytes[..32].copy_from_slice(&h);
    }
}
