//! Raw ChaCha20 and Poly1305, and the ChaCha20-Poly1305 AEAD built from them: the one
//! implementation shared by packet encryption and PacketCrypt mining.
//!
//! The Noise session AEAD ([`Aead`], and [`xseal`]/[`xopen`] for cookies) and PacketCrypt's
//! CryptoCycle (in `pktmesh_chain`, which runs ChaCha20 and Poly1305 separately over a
//! 2048-byte packet-sized buffer) both call [`chacha20_xor`] and [`poly1305_padded`]; nothing
//! else in the workspace runs ChaCha20 or Poly1305. The block functions come from the RustCrypto
//! `chacha20` and `poly1305` crates, which pick their SIMD backend (AVX2, SSE2) at run time and
//! fall back to portable code, so one build runs at full speed on any x86-64 CPU.
//!
//! With the `call-counters` feature, [`calls`] counts the calls of the two functions, so that a
//! test can see that the miner and the Noise transport go through the same code.

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha20;
use poly1305::universal_hash::{KeyInit, UniversalHash};
use poly1305::Poly1305;
use subtle::ConstantTimeEq;

#[cfg(feature = "call-counters")]
mod counters {
    use std::sync::atomic::AtomicU64;
    pub(super) static CHACHA20: AtomicU64 = AtomicU64::new(0);
    pub(super) static POLY1305: AtomicU64 = AtomicU64::new(0);
}

/// Calls of [`chacha20_xor`] and [`poly1305_padded`] so far in this process (feature
/// `call-counters`, for tests).
#[cfg(feature = "call-counters")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    /// Calls of [`chacha20_xor`].
    pub chacha20: u64,
    /// Calls of [`poly1305_padded`].
    pub poly1305: u64,
}

/// The call counts so far (see [`Calls`]).
#[cfg(feature = "call-counters")]
pub fn calls() -> Calls {
    use std::sync::atomic::Ordering::Relaxed;
    Calls {
        chacha20: counters::CHACHA20.load(Relaxed),
        poly1305: counters::POLY1305.load(Relaxed),
    }
}

/// XORs `buf` in place with the ChaCha20 (IETF, RFC 8439) keystream for `key` and `nonce`,
/// starting at 64-byte block `counter`.
///
/// Encryption and decryption are the same operation. PacketCrypt uses this with counter 0 to
/// expand seeds (`HashExpand`) and for CryptoCycle's keystream, exactly as [`Aead`] does for
/// packet payloads (block 0 for the Poly1305 key, block 1 onwards for the message).
pub fn chacha20_xor(key: &[u8; 32], nonce: &[u8; 12], counter: u32, buf: &mut [u8]) {
    #[cfg(feature = "call-counters")]
    counters::CHACHA20.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    #[cfg(feature = "call-counters")]
    counters::POLY1305.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut mac = Poly1305::new(one_time_key.into());
    for part in parts {
        mac.update_padded(part);
    }
    mac.finalize().into()
}

/// The AEAD's tag over associated data `ad` and ciphertext `ct` (RFC 8439 §2.8).
fn aead_tag(one_time_key: &[u8; 32], ad: &[u8], ct: &[u8]) -> [u8; 16] {
    let mut lens = [0u8; 16];
    lens[..8].copy_from_slice(&(ad.len() as u64).to_le_bytes());
    lens[8..].copy_from_slice(&(ct.len() as u64).to_le_bytes());
    poly1305_padded(one_time_key, &[ad, ct, &lens])
}

/// A ChaCha20-Poly1305 key (RFC 8439 §2.8), sealing and opening in place with detached tags.
#[derive(Clone)]
pub struct Aead {
    key: [u8; 32],
}

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aead(..)")
    }
}

impl Aead {
    /// The AEAD with `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self { key: *key }
    }

    /// Encrypts `buf` in place under `nonce` and returns the tag over `ad` and the ciphertext.
    pub fn seal(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        let otk = poly1305_key_gen(&self.key, nonce);
        chacha20_xor(&self.key, nonce, 1, buf);
        aead_tag(&otk, ad, buf)
    }

    /// Checks `tag` (in constant time) and decrypts `buf` in place; on a wrong tag `buf` is
    /// left as it was and the answer is `false`.
    #[must_use]
    pub fn open(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        let otk = poly1305_key_gen(&self.key, nonce);
        if !bool::from(aead_tag(&otk, ad, buf).ct_eq(tag)) {
            return false;
        }
        chacha20_xor(&self.key, nonce, 1, buf);
        true
    }
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha): HChaCha20 of the key and the first 16 nonce
/// bytes gives the subkey of a ChaCha20-Poly1305 pass with nonce `0⁴ ‖ nonce[16..24]`.
fn xchacha_parts(key: &[u8; 32], nonce: &[u8; 24]) -> (Aead, [u8; 12]) {
    let mut input = [0u8; 16];
    input.copy_from_slice(&nonce[..16]);
    let subkey = chacha20::hchacha::<chacha20::cipher::consts::U10>(key.into(), &input.into());
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&nonce[16..]);
    (Aead::new(&subkey.into()), n)
}

/// XChaCha20-Poly1305 seal of `buf` in place; returns the tag.
pub fn xseal(key: &[u8; 32], nonce: &[u8; 24], ad: &[u8], buf: &mut [u8]) -> [u8; 16] {
    let (aead, n) = xchacha_parts(key, nonce);
    aead.seal(&n, ad, buf)
}

/// XChaCha20-Poly1305 open of `buf` in place; `false` (and `buf` untouched) on a wrong tag.
#[must_use]
pub fn xopen(key: &[u8; 32], nonce: &[u8; 24], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
    let (aead, n) = xchacha_parts(key, nonce);
    aead.open(&n, ad, buf, tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        h(s).try_into().unwrap()
    }

    /// RFC 8439 §2.4.2: ChaCha20 encryption of the "sunscreen" text, counter 1.
    #[test]
    fn rfc8439_chacha20_encryption() {
        let key = arr::<32>("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let nonce = arr::<12>("000000000000004a00000000");
        let mut buf = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        chacha20_xor(&key, &nonce, 1, &mut buf);
        assert_eq!(
            buf,
            h(
                "6e2e359a2568f98041ba0728dd0d6981e97e7aec1d4360c20a27afccfd9fae0b
               f91b65c5524733ab8f593dabcd62b3571639d624e65152ab8f530c359f0861d8
               07ca0dbf500d6a6156a38e088a22b65e52bc514d16ccf806818ce91ab7793736
               5af90bbf74a35be6b40b8eedf2785e42874d"
            )
        );
    }

    /// RFC 8439 §2.6.2: the Poly1305 key generated from ChaCha20 block 0.
    #[test]
    fn rfc8439_poly1305_key_generation() {
        let key = arr::<32>("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce = arr::<12>("000000000001020304050607");
        assert_eq!(
            poly1305_key_gen(&key, &nonce).to_vec(),
            h("8ad5a08b905f81cc815040274ab29471a833b637e3fd0da508dbb8e2fdd1a646")
        );
    }

    /// RFC 8439 §2.5.2: Poly1305 of "Cryptographic Forum Research Group" with the backend the
    /// module uses (unpadded: 34 bytes; the padded form is covered by the AEAD vector).
    #[test]
    fn rfc8439_poly1305() {
        let key = arr::<32>("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b");
        let msg = b"Cryptographic Forum Research Group";
        let tag: [u8; 16] = Poly1305::new((&key).into()).compute_unpadded(msg).into();
        assert_eq!(tag.to_vec(), h("a8061dc1305136c6c22b8baf0c0127a9"));
    }

    /// RFC 8439 §2.8.2: the AEAD test vector, sealed and opened.
    #[test]
    fn rfc8439_aead() {
        let key = arr::<32>("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce = arr::<12>("070000004041424344454647");
        let ad = h("50515253c0c1c2c3c4c5c6c7");
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        let aead = Aead::new(&key);
        let mut buf = plain.clone();
        let tag = aead.seal(&nonce, &ad, &mut buf);
        assert_eq!(
            buf,
            h(
                "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
               3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
               92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
               3ff4def08e4b7a9de576d26586cec64b6116"
            )
        );
        assert_eq!(tag.to_vec(), h("1ae10b594f09e26a7e902ecbd0600691"));
        let mut wrong = tag;
        wrong[0] ^= 1;
        let sealed = buf.clone();
        assert!(!aead.open(&nonce, &ad, &mut buf, &wrong));
        assert_eq!(buf, sealed, "a refused packet is left as it was");
        assert!(aead.open(&nonce, &ad, &mut buf, &tag));
        assert_eq!(buf, plain);
    }

    /// draft-irtf-cfrg-xchacha-03 §A.3.1: the XChaCha20-Poly1305 AEAD test vector.
    #[test]
    fn xchacha20_poly1305_draft_vector() {
        let key = arr::<32>("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
        let nonce = arr::<24>("404142434445464748494a4b4c4d4e4f5051525354555657");
        let ad = h("50515253c0c1c2c3c4c5c6c7");
        let plain = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        let mut buf = plain.clone();
        let tag = xseal(&key, &nonce, &ad, &mut buf);
        assert_eq!(
            buf,
            h(
                "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
               731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
               2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
               21f9664c97637da9768812f615c68b13b52e"
            )
        );
        assert_eq!(tag.to_vec(), h("c0875924c1c7987947deafd8780acf49"));
        assert!(xopen(&key, &nonce, &ad, &mut buf, &tag));
        assert_eq!(buf, plain);
    }
}
