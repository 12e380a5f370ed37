//! The Noise/WireGuard primitives: BLAKE2s hash, HMAC-BLAKE2s, the HKDF chain, keyed
//! BLAKE2s-128 MACs, ChaCha20-Poly1305 with a counter nonce and XChaCha20-Poly1305 for cookies.
//! The AEADs are [`crate::primitives`]' (the ChaCha20 and Poly1305 that PacketCrypt mining
//! uses too); hashes, HMAC and X25519 come from RustCrypto and dalek crates.

use blake2::digest::{FixedOutput, Mac, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use hmac::SimpleHmac;

use crate::primitives::{self, Aead};

/// BLAKE2s-256 of the concatenation of `parts`.
pub(crate) fn hash(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Blake2s256::new();
    for p in parts {
        Digest::update(&mut h, p);
    }
    h.finalize().into()
}

/// HMAC-BLAKE2s. Keys longer than the 64-byte block are truncated, not hashed, as boringtun
/// (and so cjdns) does; for keys of 1–64 bytes this is standard HMAC.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = key.get(..64).unwrap_or(key);
    let mut m = match <SimpleHmac<Blake2s256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32], // HMAC accepts keys of any length
    };
    for p in parts {
        Mac::update(&mut m, p);
    }
    m.finalize().into_bytes().into()
}

/// HKDF with one output.
pub(crate) fn kdf1(ck: &[u8; 32], input: &[u8]) -> [u8; 32] {
    let t0 = hmac(ck, &[input]);
    hmac(&t0, &[&[1]])
}

/// HKDF with two outputs.
pub(crate) fn kdf2(ck: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32]) {
    let t0 = hmac(ck, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    let t2 = hmac(&t0, &[&t1, &[2]]);
    (t1, t2)
}

/// HKDF with three outputs.
pub(crate) fn kdf3(ck: &[u8; 32], input: &[u8]) -> ([u8; 32], [u8; 32], [u8; 32]) {
    let t0 = hmac(ck, &[input]);
    let t1 = hmac(&t0, &[&[1]]);
    let t2 = hmac(&t0, &[&t1, &[2]]);
    let t3 = hmac(&t0, &[&t2, &[3]]);
    (t1, t2, t3)
}

/// Keyed BLAKE2s with a 16-byte output (WireGuard's MAC).
pub(crate) fn mac(key: &[u8], data: &[u8]) -> [u8; 16] {
    let mut m =
        match <Blake2sMac<blake2::digest::consts::U16> as blake2::digest::KeyInit>::new_from_slice(
            key,
        ) {
            Ok(m) => m,
            Err(_) => return [0; 16],
        };
    Update::update(&mut m, data);
    m.finalize_fixed().into()
}

/// The 12-byte nonce 0^4 ‖ counter (LE).
fn nonce12(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    n
}

/// A ChaCha20-Poly1305 key.
pub(crate) fn aead_key(key: &[u8; 32]) -> Aead {
    Aead::new(key)
}

/// Encrypt `buf` in place; returns the tag.
pub(crate) fn seal(cipher: &Aead, counter: u64, ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
    cipher.seal(&nonce12(counter), ad, buf)
}

/// Verify and decrypt `buf` in place; untouched on failure.
pub(crate) fn open(cipher: &Aead, counter: u64, ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
    cipher.open(&nonce12(counter), ad, buf, tag)
}

/// Seal `plain` into `out` (= ciphertext ‖ tag, `plain.len() + 16` bytes) with a one-off key.
pub(crate) fn seal_to(key: &[u8; 32], counter: u64, ad: &[u8], plain: &[u8], out: &mut [u8]) {
    let (ct, tag) = out.split_at_mut(plain.len());
    ct.copy_from_slice(plain);
    let t = seal(&aead_key(key), counter, ad, ct);
    tag.copy_from_slice(&t);
}

/// Open `sealed` (= ciphertext ‖ tag) with a one-off key into `out` (`sealed.len() - 16`).
pub(crate) fn open_to(
    key: &[u8; 32],
    counter: u64,
    ad: &[u8],
    sealed: &[u8],
    out: &mut [u8],
) -> bool {
    let Some(split) = sealed.len().checked_sub(16) else {
        return false;
    };
    let (ct, tag) = sealed.split_at(split);
    if out.len() != ct.len() {
        return false;
    }
    out.copy_from_slice(ct);
    let Ok(tag) = <[u8; 16]>::try_from(tag) else {
        return false;
    };
    open(&aead_key(key), counter, ad, out, &tag)
}

/// XChaCha20-Poly1305 seal of a cookie (16 bytes) → 32 bytes.
pub(crate) fn xseal(key: &[u8; 32], nonce: &[u8; 24], ad: &[u8], cookie: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let (ct, tag) = out.split_at_mut(16);
    ct.copy_from_slice(cookie);
    tag.copy_from_slice(&primitives::xseal(key, nonce, ad, ct));
    out
}

/// XChaCha20-Poly1305 open of a sealed cookie.
pub(crate) fn xopen(
    key: &[u8; 32],
    nonce: &[u8; 24],
    ad: &[u8],
    sealed: &[u8; 32],
) -> Option<[u8; 16]> {
    let mut cookie = [0u8; 16];
    cookie.copy_from_slice(&sealed[..16]);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&sealed[16..]);
    primitives::xopen(key, nonce, ad, &mut cookie, &tag).then_some(cookie)
}

/// X25519; `None` for an all-zero result.
pub(crate) fn dh(secret: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    let s = x25519_dalek::StaticSecret::from(*secret);
    let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    shared.was_contributory().then(|| shared.to_bytes())
}

/// X25519 base-point multiplication.
pub(crate) fn public_of(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digest §6.3.1: HASH(construction) starts 60e26dae, HASH(ck ‖ identifier) starts 2211b361.
    #[test]
    fn wireguard_initial_constants() {
        let ck = hash(&[b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"]);
        assert_eq!(hex::encode(&ck[..4]), "60e26dae");
        let h = hash(&[&ck, b"WireGuard v1 zx2c4 Jason@zx2c4.com"]);
        assert_eq!(hex::encode(&h[..4]), "2211b361");
    }

    /// HMAC-BLAKE2s against the RFC 2104 construction spelled out with BLAKE2s.
    #[test]
    fn hmac_matches_definition() {
        let key = b"key";
        let msg = b"The quick brown fox";
        let mut k = [0u8; 64];
        k[..3].copy_from_slice(key);
        let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
        let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
        let inner = hash(&[&ipad, msg]);
        let outer = hash(&[&opad, &inner]);
        assert_eq!(hmac(key, &[msg]), outer);
    }
}
