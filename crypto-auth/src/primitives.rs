//! Raw ChaCha20 and Poly1305, and the ChaCha20-Poly1305 AEAD built from them: the one
//! implementation shared by packet encryption and PacketCrypt mining.
//!
//! The Noise session AEAD ([`Aead`], and [`xseal`]/[`xopen`] for cookies) and PacketCrypt's
//! CryptoCycle (in `pktmesh_chain`, which runs ChaCha20 and Poly1305 separately over a
//! 2048-byte packet-sized buffer, through [`chacha20_xor`] and [`poly1305_padded`]) run the same
//! ChaCha20 (eight blocks at a time on the lanes that also run the legacy box's Salsa20) and
//! the same Poly1305 (the legacy box's too); nothing else in the workspace runs ChaCha20 or
//! Poly1305. Each operation runs at the SIMD level [`crate::cpu`] picks at run time (AVX2,
//! AVX2 with AVX-512VL, or portable), so a plain `cargo build --release` runs as fast as a
//! `-C target-cpu=native` one. An AEAD seal or open is one keystream pass: block 0 (the
//! Poly1305 key) is a lane of the message's first pass.
//!
//! With the `call-counters` feature, [`calls`] counts the keystream passes and the tags, so
//! that a test can see that the miner and the Noise transport go through the same code.

use subtle::ConstantTimeEq;

use crate::chacha20::{hchacha20, stream};
use crate::cpu::{self, Kernel, Simd, U32x8};
use crate::poly1305::Poly1305;

#[cfg(feature = "call-counters")]
mod counters {
    use std::sync::atomic::AtomicU64;
    pub(super) static CHACHA20: AtomicU64 = AtomicU64::new(0);
    pub(super) static POLY1305: AtomicU64 = AtomicU64::new(0);
}

/// ChaCha20 keystream passes and Poly1305 tags so far in this process (feature
/// `call-counters`, for tests).
#[cfg(feature = "call-counters")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    /// Keystream passes: calls of [`chacha20_xor`], and one per [`Aead`] seal or open.
    pub chacha20: u64,
    /// Tags: calls of [`poly1305_padded`], and one per [`Aead`] seal or open.
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

/// Counts `passes` keystream passes and `tags` Poly1305 tags (feature `call-counters`).
#[inline(always)]
fn count(passes: u64, tags: u64) {
    #[cfg(feature = "call-counters")]
    {
        use std::sync::atomic::Ordering::Relaxed;
        counters::CHACHA20.fetch_add(passes, Relaxed);
        counters::POLY1305.fetch_add(tags, Relaxed);
    }
    #[cfg(not(feature = "call-counters"))]
    let _ = (passes, tags);
}

/// XORs `buf` in place with the ChaCha20 (IETF, RFC 8439) keystream for `key` and `nonce`,
/// starting at 64-byte block `counter`.
///
/// Encryption and decryption are the same operation. PacketCrypt uses this with counter 0 to
/// expand seeds (`HashExpand`) and for CryptoCycle's keystream (block 0 for the Poly1305 key,
/// block 1 onwards for the message, as in [`Aead`]). The block counter has 32 bits: `buf` must
/// end before block 2^32.
pub fn chacha20_xor(key: &[u8; 32], nonce: &[u8; 12], counter: u32, buf: &mut [u8]) {
    count(1, 0);
    cpu::run(Xor {
        key,
        nonce,
        counter,
        buf,
    });
}

/// [`chacha20_xor`] at each [`cpu`] level.
struct Xor<'a> {
    key: &'a [u8; 32],
    nonce: &'a [u8; 12],
    counter: u32,
    buf: &'a mut [u8],
}

impl Kernel for Xor<'_> {
    type Output = ();

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) {
        stream(self.key, self.nonce).xor_from(simd, u64::from(self.counter), self.buf);
    }
}

/// The encrypting half of the ChaCha20-Poly1305 AEAD (RFC 8439 §2.8) in one keystream pass:
/// XORs `buf` in place with the keystream of `key` and `nonce` from block 1 on and returns the
/// Poly1305 one-time key, the first 32 bytes of block 0 (a lane of the same pass). CryptoCycle
/// encrypts with this; [`poly1305_key_gen`] then [`chacha20_xor`] from block 1 is the same,
/// for when the key is needed before the XOR.
pub fn chacha20_xor_after_key(key: &[u8; 32], nonce: &[u8; 12], buf: &mut [u8]) -> [u8; 32] {
    count(1, 0);
    cpu::run(XorAfterKey { key, nonce, buf })
}

/// [`chacha20_xor_after_key`] at each [`cpu`] level.
struct XorAfterKey<'a> {
    key: &'a [u8; 32],
    nonce: &'a [u8; 12],
    buf: &'a mut [u8],
}

impl Kernel for XorAfterKey<'_> {
    type Output = [u8; 32];

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> [u8; 32] {
        stream(self.key, self.nonce).xor_after_key(simd, self.buf, 64)
    }
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
    count(0, 1);
    cpu::run(Padded {
        key: one_time_key,
        parts,
    })
}

/// [`poly1305_padded`] at each [`cpu`] level.
struct Padded<'a> {
    key: &'a [u8; 32],
    parts: &'a [&'a [u8]],
}

impl Kernel for Padded<'_> {
    type Output = [u8; 16];

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> [u8; 16] {
        let mut mac = Poly1305::new(self.key);
        for part in self.parts {
            mac.update_padded(simd, part);
        }
        mac.finish()
    }
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
        count(1, 1);
        cpu::run(Seal {
            key: &self.key,
            nonce,
            ad,
            buf,
        })
    }

    /// Checks `tag` (in constant time) and decrypts `buf` in place; on a wrong tag `buf` is
    /// left as it was and the answer is `false`.
    #[must_use]
    pub fn open(&self, nonce: &[u8; 12], ad: &[u8], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        count(1, 1);
        cpu::run(Open {
            key: &self.key,
            nonce,
            ad,
            buf,
            tag,
        })
    }
}

/// [`Aead::seal`] at each [`cpu`] level.
struct Seal<'a> {
    key: &'a [u8; 32],
    nonce: &'a [u8; 12],
    ad: &'a [u8],
    buf: &'a mut [u8],
}

impl Kernel for Seal<'_> {
    type Output = [u8; 16];

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> [u8; 16] {
        let otk = stream(self.key, self.nonce).xor_after_key(simd, self.buf, 64);
        aead_tag(simd, &otk, self.ad, self.buf)
    }
}

/// [`Aead::open`] at each [`cpu`] level.
struct Open<'a> {
    key: &'a [u8; 32],
    nonce: &'a [u8; 12],
    ad: &'a [u8],
    buf: &'a mut [u8],
    tag: &'a [u8; 16],
}

impl Kernel for Open<'_> {
    type Output = bool;

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> bool {
        let stream = stream(self.key, self.nonce);
        let first = stream.first_blocks(simd, 64 + self.buf.len());
        let otk = first[0].to_bytes();
        if !bool::from(aead_tag(simd, &otk, self.ad, self.buf).ct_eq(self.tag)) {
            return false;
        }
        stream.xor(simd, self.buf, &first, 64);
        true
    }
}

/// The AEAD's tag over associated data `ad` and ciphertext `ct` (RFC 8439 §2.8) with the
/// one-time key `otk`.
#[inline(always)]
fn aead_tag<S: Simd>(simd: S, otk: &[u8; 32], ad: &[u8], ct: &[u8]) -> [u8; 16] {
    let mut lens = [0u8; 16];
    lens[..8].copy_from_slice(&(ad.len() as u64).to_le_bytes());
    lens[8..].copy_from_slice(&(ct.len() as u64).to_le_bytes());
    let mut mac = Poly1305::new(otk);
    mac.update_padded(simd, ad);
    mac.update_padded(simd, ct);
    mac.update_padded(simd, &lens);
    mac.finish()
}

/// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha): HChaCha20 of the key and the first 16 nonce
/// bytes gives the subkey of a ChaCha20-Poly1305 pass with nonce `0⁴ ‖ nonce[16..24]`.
fn xchacha_parts(key: &[u8; 32], nonce: &[u8; 24]) -> (Aead, [u8; 12]) {
    let mut input = [0u8; 16];
    input.copy_from_slice(&nonce[..16]);
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&nonce[16..]);
    (Aead::new(&hchacha20(key, &input)), n)
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
    use ::chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
    use ::poly1305::universal_hash::UniversalHash;
    use chacha20poly1305::aead::generic_array::GenericArray;
    use chacha20poly1305::{AeadInPlace, KeyInit};
    use rand_core::{RngCore, SeedableRng};

    /// Runs `check` at every SIMD level the CPU has.
    fn at_every_level(check: impl Fn()) {
        for level in cpu::levels() {
            eprintln!("at {level:?}");
            cpu::with_level(level, &check);
        }
    }

    fn random<const N: usize>(rng: &mut impl RngCore) -> [u8; N] {
        let mut b = [0u8; N];
        rng.fill_bytes(&mut b);
        b
    }

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn arr<const N: usize>(s: &str) -> [u8; N] {
        h(s).try_into().unwrap()
    }

    /// RFC 8439 §2.4.2: ChaCha20 encryption of the "sunscreen" text, counter 1, at every level.
    #[test]
    fn rfc8439_chacha20_encryption() {
        at_every_level(|| {
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
        });
    }

    /// RFC 8439 §2.6.2: the Poly1305 key generated from ChaCha20 block 0.
    #[test]
    fn rfc8439_poly1305_key_generation() {
        at_every_level(|| {
            let key = arr::<32>("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
            let nonce = arr::<12>("000000000001020304050607");
            assert_eq!(
                poly1305_key_gen(&key, &nonce).to_vec(),
                h("8ad5a08b905f81cc815040274ab29471a833b637e3fd0da508dbb8e2fdd1a646")
            );
        });
    }

    /// RFC 8439 §2.8.2: the AEAD test vector, sealed and opened.
    #[test]
    fn rfc8439_aead() {
        at_every_level(|| {
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
        });
    }

    /// draft-irtf-cfrg-xchacha-03 §A.3.1: the XChaCha20-Poly1305 AEAD test vector.
    #[test]
    fn xchacha20_poly1305_draft_vector() {
        at_every_level(|| {
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
        });
    }

    /// Every length from 0 to 1600 bytes from counters 0, 1, 7 and 1000 (all tail shapes: one
    /// block, lane passes, scalar tails) with random keys and nonces agrees with the `chacha20`
    /// crate at every level.
    #[test]
    fn chacha20_matches_the_reference_crate() {
        at_every_level(|| {
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([8; 32]);
            for len in 0..1600usize {
                let key = random::<32>(&mut rng);
                let nonce = random::<12>(&mut rng);
                let counter = [0u32, 1, 7, 1000][len % 4];
                let mut ours = vec![0u8; len];
                rng.fill_bytes(&mut ours);
                let mut theirs = ours.clone();
                chacha20_xor(&key, &nonce, counter, &mut ours);
                let mut c = ::chacha20::ChaCha20::new((&key).into(), (&nonce).into());
                c.seek(u64::from(counter) * 64);
                c.apply_keystream(&mut theirs);
                assert_eq!(ours, theirs, "len {len}, counter {counter}");
            }
        });
    }

    /// Padded Poly1305 over one to three parts of random lengths (short ones, and long ones
    /// that take the four-lane path after an earlier part) agrees with the `poly1305` crate at
    /// every level.
    #[test]
    fn poly1305_padded_matches_the_reference_crate() {
        at_every_level(|| {
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
            let lens = [
                0usize, 1, 15, 16, 17, 63, 255, 256, 257, 511, 1000, 1420, 2000,
            ];
            for (i, &a) in lens.iter().enumerate() {
                for &b in &lens[i..] {
                    for parts in 1..=3 {
                        let key = random::<32>(&mut rng);
                        let data: Vec<Vec<u8>> = [a, b, 16][..parts]
                            .iter()
                            .map(|&n| {
                                let mut d = vec![0u8; n];
                                rng.fill_bytes(&mut d);
                                d
                            })
                            .collect();
                        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
                        let mut mac = ::poly1305::Poly1305::new((&key).into());
                        for part in &refs {
                            mac.update_padded(part);
                        }
                        let theirs: [u8; 16] = mac.finalize().into();
                        let what = format!("parts {a}, {b}, 16 (first {parts})");
                        assert_eq!(poly1305_padded(&key, &refs), theirs, "{what}");
                    }
                }
            }
        });
    }

    /// Seal and open of every length from 0 to 1600 bytes with random keys, nonces and
    /// associated data agree with the `chacha20poly1305` crate at every level; a wrong tag is
    /// refused and changes nothing.
    #[test]
    fn aead_matches_the_reference_crate() {
        at_every_level(|| {
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([10; 32]);
            for len in 0..1600usize {
                let key = random::<32>(&mut rng);
                let nonce = random::<12>(&mut rng);
                let mut ad = vec![0u8; len % 37];
                rng.fill_bytes(&mut ad);
                let mut plain = vec![0u8; len];
                rng.fill_bytes(&mut plain);
                let mut ours = plain.clone();
                let mut theirs = plain.clone();
                let aead = Aead::new(&key);
                let tag = aead.seal(&nonce, &ad, &mut ours);
                let their_tag =
                    chacha20poly1305::ChaCha20Poly1305::new(GenericArray::from_slice(&key))
                        .encrypt_in_place_detached(
                            GenericArray::from_slice(&nonce),
                            &ad,
                            &mut theirs,
                        )
                        .unwrap();
                assert_eq!(tag[..], their_tag[..], "tag, len {len}");
                assert_eq!(ours, theirs, "ciphertext, len {len}");
                let mut wrong = tag;
                wrong[len % 16] ^= 1;
                assert!(!aead.open(&nonce, &ad, &mut ours, &wrong), "len {len}");
                assert_eq!(
                    ours, theirs,
                    "a refused packet is left as it was, len {len}"
                );
                assert!(aead.open(&nonce, &ad, &mut ours, &tag), "len {len}");
                assert_eq!(ours, plain, "len {len}");
            }
        });
    }

    /// HChaCha20 agrees with the `chacha20` crate's.
    #[test]
    fn hchacha20_matches_the_reference_crate() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([11; 32]);
        for _ in 0..100 {
            let key = random::<32>(&mut rng);
            let input = random::<16>(&mut rng);
            let theirs: [u8; 32] = ::chacha20::hchacha::<::chacha20::cipher::consts::U10>(
                (&key).into(),
                (&input).into(),
            )
            .into();
            assert_eq!(hchacha20(&key, &input), theirs);
        }
    }

    /// The encrypting half agrees with the Poly1305 key of block 0 and the XOR from block 1.
    #[test]
    fn xor_after_key_is_key_gen_then_xor_from_block_1() {
        at_every_level(|| {
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([12; 32]);
            for len in 0..1200usize {
                let key = random::<32>(&mut rng);
                let nonce = random::<12>(&mut rng);
                let mut ours = vec![0u8; len];
                rng.fill_bytes(&mut ours);
                let mut theirs = ours.clone();
                let otk = chacha20_xor_after_key(&key, &nonce, &mut ours);
                chacha20_xor(&key, &nonce, 1, &mut theirs);
                assert_eq!(otk, poly1305_key_gen(&key, &nonce), "len {len}");
                assert_eq!(ours, theirs, "len {len}");
            }
        });
    }
}
