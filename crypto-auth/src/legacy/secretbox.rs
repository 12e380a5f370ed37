//! XSalsa20-Poly1305 (NaCl `crypto_secretbox`) with a lane-parallel Salsa20 keystream.
//!
//! Legacy CryptoAuth seals every packet twice (end-to-end session, then the link session) with
//! XSalsa20-Poly1305, and profiles of a node showed the generic one-block-at-a-time Salsa20 of
//! the `salsa20` crate as the largest single cost. This module computes the keystream eight
//! blocks at a time ([`crate::keystream`]): each of the 16 state words is a vector of eight
//! lanes, one lane per block, so every round operation is a vector instruction, at the level
//! [`crate::cpu`] picks for the CPU at run time (AVX2, AVX2 with AVX-512VL rotates, or `wide`'s
//! SSE2 pairs and portable code). Block 0, which holds the Poly1305 key, is one of the lanes
//! rather than a separate block. [`SubkeyWindow`] derives the HSalsa20 subkeys of eight
//! consecutive packet counters in one lane pass. Poly1305 is [`crate::poly1305`], shared with
//! the ChaCha20-Poly1305 of [`crate::primitives`].
//!
//! The construction is NaCl's: subkey = HSalsa20(key, nonce[..16]); the Salsa20 stream under
//! the subkey and nonce[16..] starts at block 0; its first 32 bytes are the Poly1305 key and
//! the message is XORed with the stream from byte 32 on; the tag is Poly1305 over the
//! ciphertext. Tests compare it with the `xsalsa20poly1305` crate on random inputs, at every
//! level the CPU runs.

use subtle::ConstantTimeEq;

use crate::cpu::{self, Kernel, Simd, U32x8};
use crate::keystream::{Rounds, Stream, LANES};
use crate::poly1305::Poly1305;

/// Salsa20 constants ("expand 32-byte k").
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// A secretbox key ready for many packets.
#[derive(Clone)]
pub(crate) struct SecretBox {
    key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    /// The box for a 32-byte key.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self { key: *key }
    }

    /// Encrypts `buf` in place under `nonce` and returns the tag.
    pub(crate) fn seal_detached(&self, nonce: &[u8; 24], buf: &mut [u8]) -> [u8; 16] {
        let (subkey, tail) = self.split_nonce(nonce);
        seal_with_subkey(&subkey, &tail, buf)
    }

    /// Checks `tag` over `buf` and, if it is right, decrypts `buf` in place. A wrong tag
    /// leaves `buf` untouched and returns `false`.
    pub(crate) fn open_detached(&self, nonce: &[u8; 24], buf: &mut [u8], tag: &[u8; 16]) -> bool {
        let (subkey, tail) = self.split_nonce(nonce);
        open_with_subkey(&subkey, &tail, buf, tag)
    }

    /// The XSalsa20 subkey of `nonce` and the nonce's last 8 bytes.
    fn split_nonce(&self, nonce: &[u8; 24]) -> ([u8; 32], [u8; 8]) {
        let mut head = [0u8; 16];
        head.copy_from_slice(&nonce[..16]);
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&nonce[16..]);
        (hsalsa20(&self.key, &head), tail)
    }
}

/// [`SecretBox::seal_detached`] with the subkey already derived (see [`SubkeyWindow`]):
/// encrypts `buf` in place with the Salsa20 stream of `subkey` and `nonce_tail` (the last 8
/// nonce bytes), returns the tag.
pub(crate) fn seal_with_subkey(
    subkey: &[u8; 32],
    nonce_tail: &[u8; 8],
    buf: &mut [u8],
) -> [u8; 16] {
    cpu::run(Seal {
        subkey,
        nonce_tail,
        buf,
    })
}

/// [`SecretBox::open_detached`] with the subkey already derived.
pub(crate) fn open_with_subkey(
    subkey: &[u8; 32],
    nonce_tail: &[u8; 8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    cpu::run(Open {
        subkey,
        nonce_tail,
        buf,
        tag,
    })
}

/// The sealing of one box, at each [`cpu`] level.
struct Seal<'a> {
    subkey: &'a [u8; 32],
    nonce_tail: &'a [u8; 8],
    buf: &'a mut [u8],
}

impl Kernel for Seal<'_> {
    type Output = [u8; 16];

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> [u8; 16] {
        let key = salsa20(self.subkey, self.nonce_tail).xor_after_key(simd, self.buf, 32);
        Poly1305::new(&key).compute(simd, self.buf)
    }
}

/// The opening of one box, at each [`cpu`] level.
struct Open<'a> {
    subkey: &'a [u8; 32],
    nonce_tail: &'a [u8; 8],
    buf: &'a mut [u8],
    tag: &'a [u8; 16],
}

impl Kernel for Open<'_> {
    type Output = bool;

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> bool {
        let stream = salsa20(self.subkey, self.nonce_tail);
        let first = stream.first_blocks(simd, 32 + self.buf.len());
        let expected = Poly1305::new(&first[0].to_bytes()).compute(simd, self.buf);
        if !bool::from(expected.ct_eq(self.tag)) {
            return false;
        }
        stream.xor(simd, self.buf, &first, 32);
        true
    }
}

/// The XSalsa20 subkeys of [`LANES`] consecutive packet counters, derived in one lane pass.
///
/// Legacy data nonces differ only in a 32-bit counter inside the first 16 bytes, the part
/// HSalsa20 turns into the per-packet subkey, so a session can derive the subkeys of the
/// next eight packets for about the price of three single derivations. `nonce_of` maps a
/// counter to its 24-byte nonce; every nonce of a window must share its last 8 bytes.
#[derive(Clone)]
pub(crate) struct SubkeyWindow {
    first: u32,
    tail: [u8; 8],
    keys: [[u8; 32]; LANES],
}

impl std::fmt::Debug for SubkeyWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubkeyWindow")
            .field("first", &self.first)
            .finish_non_exhaustive()
    }
}

impl SubkeyWindow {
    /// The subkeys of counters `first`, `first + 1`, … (wrapping) under `cipher`'s key.
    pub(crate) fn derive(
        cipher: &SecretBox,
        first: u32,
        nonce_of: impl Fn(u32) -> [u8; 24],
    ) -> Self {
        let mut inputs = [[0u8; 16]; LANES];
        let mut tail = [0u8; 8];
        for (i, input) in inputs.iter_mut().enumerate() {
            let nonce = nonce_of(first.wrapping_add(i as u32));
            input.copy_from_slice(&nonce[..16]);
            if i == 0 {
                tail.copy_from_slice(&nonce[16..]);
            }
        }
        Self {
            first,
            tail,
            keys: cpu::run(HSalsa20Lanes {
                key: &cipher.key,
                inputs: &inputs,
            }),
        }
    }

    /// The first counter of the window.
    #[cfg(test)]
    pub(crate) fn first(&self) -> u32 {
        self.first
    }

    /// The subkey and nonce tail of the window's first counter.
    pub(crate) fn first_key(&self) -> (&[u8; 32], &[u8; 8]) {
        (&self.keys[0], &self.tail)
    }

    /// The subkey and nonce tail of `counter`, if it is in this window.
    pub(crate) fn get(&self, counter: u32) -> Option<(&[u8; 32], &[u8; 8])> {
        let key = self.keys.get(counter.wrapping_sub(self.first) as usize)?;
        Some((key, &self.tail))
    }
}

/// The Salsa20 input block of `key` and `nonce` with the counter (words 8 and 9) at zero, the
/// counter-less HSalsa20 input when `nonce` is its 16-byte input.
#[inline(always)]
fn input_block(key: &[u8; 32], nonce: [u32; 4]) -> [u32; 16] {
    let k = words::<8>(key);
    [
        SIGMA[0], k[0], k[1], k[2], k[3], SIGMA[1], nonce[0], nonce[1], nonce[2], nonce[3],
        SIGMA[2], k[4], k[5], k[6], k[7], SIGMA[3],
    ]
}

/// The Salsa20 stream of one packet: subkey and 8-byte nonce.
#[inline(always)]
fn salsa20(subkey: &[u8; 32], tail: &[u8; 8]) -> Stream<Salsa20> {
    let n = words::<2>(tail);
    Stream::new(input_block(subkey, [n[0], n[1], 0, 0]))
}

/// The words of HSalsa20's output in the state: the constants' and the nonce's positions.
const HSALSA20_OUT: [usize; 8] = [0, 5, 10, 15, 6, 7, 8, 9];

/// HSalsa20(key, input): the XSalsa20 subkey (also `crypto_box_beforenm`'s last step).
pub(crate) fn hsalsa20(key: &[u8; 32], input: &[u8; 16]) -> [u8; 32] {
    let mut x = input_block(key, words::<4>(input));
    Salsa20::rounds(&mut x);
    let mut out = [0u8; 32];
    for (o, i) in out.chunks_exact_mut(4).zip(HSALSA20_OUT) {
        o.copy_from_slice(&x[i].to_le_bytes());
    }
    out
}

/// HSalsa20 of one key and [`LANES`] inputs at once, at each [`cpu`] level.
struct HSalsa20Lanes<'a> {
    key: &'a [u8; 32],
    inputs: &'a [[u8; 16]; LANES],
}

impl Kernel for HSalsa20Lanes<'_> {
    type Output = [[u8; 32]; LANES];

    #[inline(always)]
    fn run<S: Simd>(self, simd: S) -> [[u8; 32]; LANES] {
        let mut x = [simd.splat(0); 16];
        for (x, w) in x.iter_mut().zip(input_block(self.key, [0; 4])) {
            *x = simd.splat(w);
        }
        for (i, w) in [6, 7, 8, 9].into_iter().enumerate() {
            let mut lanes = [0u32; LANES];
            for (l, input) in lanes.iter_mut().zip(self.inputs) {
                *l = words::<4>(input)[i];
            }
            x[w] = simd.u32x8(lanes);
        }
        let x = Salsa20::rounds_lanes(x);
        let mut out = [[0u8; 32]; LANES];
        for (slot, w) in HSALSA20_OUT.into_iter().enumerate() {
            for (o, v) in out.iter_mut().zip(x[w].to_array()) {
                o[slot * 4..slot * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        out
    }
}

/// Little-endian 32-bit words of `bytes`.
#[inline(always)]
fn words<const N: usize>(bytes: &[u8]) -> [u32; N] {
    let mut w = [0u32; N];
    for (w, c) in w.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    w
}

/// The Salsa20 block function (20 rounds).
pub(crate) struct Salsa20;

impl Rounds for Salsa20 {
    const COUNTER: usize = 8;
    const COUNTER_HI: Option<usize> = Some(9);

    #[inline(always)]
    fn rounds(x: &mut [u32; 16]) {
        #[inline(always)]
        fn quarter(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
            x[b] ^= x[a].wrapping_add(x[d]).rotate_left(7);
            x[c] ^= x[b].wrapping_add(x[a]).rotate_left(9);
            x[d] ^= x[c].wrapping_add(x[b]).rotate_left(13);
            x[a] ^= x[d].wrapping_add(x[c]).rotate_left(18);
        }
        for _ in 0..10 {
            quarter(x, 0, 4, 8, 12);
            quarter(x, 5, 9, 13, 1);
            quarter(x, 10, 14, 2, 6);
            quarter(x, 15, 3, 7, 11);
            quarter(x, 0, 1, 2, 3);
            quarter(x, 5, 6, 7, 4);
            quarter(x, 10, 11, 8, 9);
            quarter(x, 15, 12, 13, 14);
        }
    }

    /// On locals, so the state stays in registers.
    #[inline(always)]
    fn rounds_lanes<V: U32x8>(s: [V; 16]) -> [V; 16] {
        let [mut x0, mut x1, mut x2, mut x3, mut x4, mut x5, mut x6, mut x7, mut x8, mut x9, mut x10, mut x11, mut x12, mut x13, mut x14, mut x15] =
            s;
        macro_rules! qr {
            ($a:ident, $b:ident, $c:ident, $d:ident) => {
                $b = $b.xor($a.add($d).rotl::<7, 25>());
                $c = $c.xor($b.add($a).rotl::<9, 23>());
                $d = $d.xor($c.add($b).rotl::<13, 19>());
                $a = $a.xor($d.add($c).rotl::<18, 14>());
            };
        }
        for _ in 0..10 {
            qr!(x0, x4, x8, x12);
            qr!(x5, x9, x13, x1);
            qr!(x10, x14, x2, x6);
            qr!(x15, x3, x7, x11);
            qr!(x0, x1, x2, x3);
            qr!(x5, x6, x7, x4);
            qr!(x10, x11, x8, x9);
            qr!(x15, x12, x13, x14);
        }
        [
            x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Level;
    use rand_core::{RngCore, SeedableRng};
    use xsalsa20poly1305::aead::generic_array::GenericArray;
    use xsalsa20poly1305::{AeadInPlace, KeyInit as _, XSalsa20Poly1305};

    fn reference_seal(key: &[u8; 32], nonce: &[u8; 24], buf: &mut [u8]) -> [u8; 16] {
        XSalsa20Poly1305::new(GenericArray::from_slice(key))
            .encrypt_in_place_detached(GenericArray::from_slice(nonce), &[], buf)
            .unwrap()
            .into()
    }

    /// [`SecretBox::seal_detached`] at `level`.
    fn seal_at(level: Level, key: &[u8; 32], nonce: &[u8; 24], buf: &mut [u8]) -> [u8; 16] {
        let (subkey, tail) = SecretBox::new(key).split_nonce(nonce);
        let seal = Seal {
            subkey: &subkey,
            nonce_tail: &tail,
            buf,
        };
        cpu::with_level(level, || cpu::run(seal))
    }

    /// [`SecretBox::open_detached`] at `level`.
    fn open_at(
        level: Level,
        key: &[u8; 32],
        nonce: &[u8; 24],
        buf: &mut [u8],
        tag: &[u8; 16],
    ) -> bool {
        let (subkey, tail) = SecretBox::new(key).split_nonce(nonce);
        let open = Open {
            subkey: &subkey,
            nonce_tail: &tail,
            buf,
            tag,
        };
        cpu::with_level(level, || cpu::run(open))
    }

    /// Every length from 0 to 1600 bytes (all tail shapes: inside block 0, one to eight
    /// blocks, several lane groups) and random keys and nonces agree with the
    /// `xsalsa20poly1305` crate, and open what they seal, at every level the CPU runs and
    /// through the dispatching API.
    #[test]
    fn matches_the_reference_crate() {
        for level in cpu::levels() {
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([3; 32]);
            for len in 0..1600usize {
                let mut key = [0u8; 32];
                let mut nonce = [0u8; 24];
                rng.fill_bytes(&mut key);
                rng.fill_bytes(&mut nonce);
                let mut plain = vec![0u8; len];
                rng.fill_bytes(&mut plain);
                let mut ours = plain.clone();
                let mut theirs = plain.clone();
                let tag = seal_at(level, &key, &nonce, &mut ours);
                let what = format!("{level:?}, len {len}");
                assert_eq!(
                    tag,
                    reference_seal(&key, &nonce, &mut theirs),
                    "tag, {what}"
                );
                assert_eq!(ours, theirs, "ciphertext, {what}");
                assert!(open_at(level, &key, &nonce, &mut ours, &tag), "{what}");
                assert_eq!(ours, plain, "{what}");
                let b = SecretBox::new(&key);
                assert_eq!(b.seal_detached(&nonce, &mut ours), tag, "{what}");
                assert!(b.open_detached(&nonce, &mut ours, &tag), "{what}");
            }
        }
    }

    #[test]
    fn wrong_tag_or_bit_flip_is_refused_and_changes_nothing() {
        for level in cpu::levels() {
            let key = [7; 32];
            let nonce = [9u8; 24];
            let mut buf = vec![0x5a; 700];
            let tag = seal_at(level, &key, &nonce, &mut buf);
            let sealed = buf.clone();
            let mut bad_tag = tag;
            bad_tag[15] ^= 1;
            assert!(!open_at(level, &key, &nonce, &mut buf, &bad_tag));
            assert_eq!(buf, sealed);
            buf[600] ^= 0x80;
            let flipped = buf.clone();
            assert!(!open_at(level, &key, &nonce, &mut buf, &tag));
            assert_eq!(buf, flipped);
            let mut other_nonce = nonce;
            other_nonce[23] ^= 1;
            buf[600] ^= 0x80;
            assert!(!open_at(level, &key, &other_nonce, &mut buf, &tag));
            assert!(open_at(level, &key, &nonce, &mut buf, &tag));
        }
    }

    /// HSalsa20 agrees with the `salsa20` crate's.
    #[test]
    fn hsalsa20_matches_the_reference_crate() {
        use salsa20::cipher::consts::U10;
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([4; 32]);
        for _ in 0..100 {
            let mut key = [0u8; 32];
            let mut input = [0u8; 16];
            rng.fill_bytes(&mut key);
            rng.fill_bytes(&mut input);
            let theirs: [u8; 32] = salsa20::hsalsa::<U10>(
                GenericArray::from_slice(&key),
                GenericArray::from_slice(&input),
            )
            .into();
            assert_eq!(hsalsa20(&key, &input), theirs);
        }
    }

    /// Subkeys derived eight at a time equal HSalsa20 of each nonce, at every level, also
    /// across the 32-bit wrap of the counter, and the window answers for its eight counters
    /// only.
    #[test]
    fn subkey_window_matches_hsalsa20_of_each_nonce() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([6; 32]);
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let b = SecretBox::new(&key);
        let nonce_of = |c: u32| {
            let mut n = [0x5au8; 24];
            n[4..8].copy_from_slice(&c.to_le_bytes());
            n
        };
        for first in [0u32, 77, u32::MAX - 3] {
            let w = SubkeyWindow::derive(&b, first, nonce_of);
            for i in 0..8u32 {
                let c = first.wrapping_add(i);
                let (sub, tail) = w.get(c).unwrap();
                let n = nonce_of(c);
                assert_eq!(sub, &hsalsa20(&key, n[..16].try_into().unwrap()), "{c}");
                assert_eq!(tail, &n[16..]);
            }
            assert!(w.get(first.wrapping_add(8)).is_none());
            assert!(w.get(first.wrapping_sub(1)).is_none());
            let inputs: [[u8; 16]; LANES] = std::array::from_fn(|i| {
                nonce_of(first.wrapping_add(i as u32))[..16]
                    .try_into()
                    .unwrap()
            });
            for level in cpu::levels() {
                let lanes = HSalsa20Lanes {
                    key: &key,
                    inputs: &inputs,
                };
                let keys = cpu::with_level(level, || cpu::run(lanes));
                assert_eq!(keys, w.keys, "{level:?}");
            }
        }
    }

    /// Eight blocks of one stream through the lanes.
    struct Blocks<'a> {
        stream: &'a Stream<Salsa20>,
        counter: u64,
    }

    impl Kernel for Blocks<'_> {
        type Output = [u8; 512];
        fn run<S: Simd>(self, simd: S) -> [u8; 512] {
            let mut out = [0u8; 512];
            let blocks = self.stream.blocks(simd, self.counter);
            for (o, v) in out.chunks_exact_mut(32).zip(blocks) {
                o.copy_from_slice(&v.to_bytes());
            }
            out
        }
    }

    /// One block through the scalar path.
    fn block(stream: &Stream<Salsa20>, counter: u64) -> Vec<u8> {
        let [lo, hi] = stream.block(cpu::Portable, counter);
        [lo.to_bytes(), hi.to_bytes()].concat()
    }

    /// The eight-lane path computes the same blocks as the one-block path at every level,
    /// also where the block counter carries from word 8 into word 9.
    #[test]
    fn counter_crosses_a_32_bit_boundary_like_the_reference() {
        // Not reachable by packets (≤ 64 KiB), but the lane counter must carry into word 9.
        let s = salsa20(&[1u8; 32], &[2; 8]);
        let start = u64::from(u32::MAX) - 3;
        for level in cpu::levels() {
            let blocks = Blocks {
                stream: &s,
                counter: start,
            };
            let wide = cpu::with_level(level, || cpu::run(blocks));
            for lane in 0..LANES {
                assert_eq!(
                    &wide[lane * 64..(lane + 1) * 64],
                    &block(&s, start + lane as u64)[..],
                    "{level:?}, lane {lane}"
                );
            }
        }
    }
}
