//! XSalsa20-Poly1305 (NaCl `crypto_secretbox`) with a lane-parallel Salsa20 keystream.
//!
//! Legacy CryptoAuth seals every packet twice (end-to-end session, then the link session) with
//! XSalsa20-Poly1305, and profiles of a node showed the generic one-block-at-a-time Salsa20 of
//! the `salsa20` crate as the largest single cost. This module computes the keystream eight
//! blocks at a time: each of the 16 state words is a `wide::u32x8`, one lane per block, so
//! every round operation is a vector instruction (AVX2 with native CPU flags, pairs of SSE2
//! operations on the x86-64 baseline, portable code elsewhere). The compiler alone does not
//! vectorise this on the baseline (SSE2 has no vector rotate), hence `wide`, which keeps the
//! `unsafe` intrinsics in that crate. The eight finished blocks are transposed back to
//! block order as two 8×8 word matrices (`i32x8::transpose`, shuffles with AVX2), and block
//! 0, which holds the Poly1305 key, is one of the lanes rather than a separate block.
//! [`SubkeyWindow`] derives the HSalsa20 subkeys of eight consecutive packet counters in one
//! lane pass. Poly1305 is [`super::poly1305`].
//!
//! The construction is NaCl's: subkey = HSalsa20(key, nonce[..16]); the Salsa20 stream under
//! the subkey and nonce[16..] starts at block 0; its first 32 bytes are the Poly1305 key and
//! the message is XORed with the stream from byte 32 on; the tag is Poly1305 over the
//! ciphertext. Tests compare it with the `xsalsa20poly1305` crate on random inputs.

use subtle::ConstantTimeEq;

use super::poly1305::Poly1305;

/// Salsa20 constants ("expand 32-byte k").
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
/// Blocks computed together: one `u32x8` lane each.
const LANES: usize = 8;
/// Bytes of keystream per Salsa20 block.
const BLOCK: usize = 64;
/// Keystream up to this long is computed one block at a time, longer in all lanes at once.
/// With AVX2 a lane pass (eight blocks) costs less than two scalar blocks; on the SSE2
/// baseline it costs about three (docs/perf.md).
const SCALAR_MAX: usize = if cfg!(target_feature = "avx2") {
    BLOCK
} else {
    2 * BLOCK
};

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
    let stream = Stream::new(subkey, nonce_tail);
    let mut first = [0u8; BLOCK * LANES];
    stream.first_blocks(buf.len(), &mut first);
    stream.xor(buf, &first);
    Poly1305::new(poly_key(&first)).compute(buf)
}

/// [`SecretBox::open_detached`] with the subkey already derived.
pub(crate) fn open_with_subkey(
    subkey: &[u8; 32],
    nonce_tail: &[u8; 8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    let stream = Stream::new(subkey, nonce_tail);
    let mut first = [0u8; BLOCK * LANES];
    stream.first_blocks(buf.len(), &mut first);
    let expected = Poly1305::new(poly_key(&first)).compute(buf);
    if !bool::from(expected.ct_eq(tag)) {
        return false;
    }
    stream.xor(buf, &first);
    true
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
            keys: hsalsa20_lanes(&cipher.key, &inputs),
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

/// The Poly1305 key: the first 32 bytes of keystream block 0.
fn poly_key(first: &[u8; BLOCK * LANES]) -> &[u8; 32] {
    // Always `Some`: the buffer holds eight blocks.
    first.first_chunk::<32>().unwrap_or(&[0; 32])
}

/// HSalsa20(key, input): the XSalsa20 subkey (also `crypto_box_beforenm`'s last step).
pub(crate) fn hsalsa20(key: &[u8; 32], input: &[u8; 16]) -> [u8; 32] {
    let k = words(key);
    let mut n = [0u32; 4];
    for (w, c) in n.iter_mut().zip(input.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    let mut x = [
        SIGMA[0], k[0], k[1], k[2], k[3], SIGMA[1], n[0], n[1], n[2], n[3], SIGMA[2], k[4], k[5],
        k[6], k[7], SIGMA[3],
    ];
    for _ in 0..10 {
        double_round(&mut x);
    }
    let mut out = [0u8; 32];
    for (o, i) in out.chunks_exact_mut(4).zip([0, 5, 10, 15, 6, 7, 8, 9]) {
        o.copy_from_slice(&x[i].to_le_bytes());
    }
    out
}

/// HSalsa20 of one key and [`LANES`] inputs at once.
fn hsalsa20_lanes(key: &[u8; 32], inputs: &[[u8; 16]; LANES]) -> [[u8; 32]; LANES] {
    let k = words(key);
    let splat = |w: u32| Lanes(wide::u32x8::splat(w));
    let input_word = |i: usize| {
        let mut lanes = [0u32; LANES];
        for (l, input) in lanes.iter_mut().zip(inputs) {
            *l = u32::from_le_bytes([
                input[4 * i],
                input[4 * i + 1],
                input[4 * i + 2],
                input[4 * i + 3],
            ]);
        }
        Lanes(wide::u32x8::new(lanes))
    };
    let x = rounds_lanes([
        splat(SIGMA[0]),
        splat(k[0]),
        splat(k[1]),
        splat(k[2]),
        splat(k[3]),
        splat(SIGMA[1]),
        input_word(0),
        input_word(1),
        input_word(2),
        input_word(3),
        splat(SIGMA[2]),
        splat(k[4]),
        splat(k[5]),
        splat(k[6]),
        splat(k[7]),
        splat(SIGMA[3]),
    ]);
    let mut out = [[0u8; 32]; LANES];
    for (slot, w) in [0, 5, 10, 15, 6, 7, 8, 9].into_iter().enumerate() {
        for (o, v) in out.iter_mut().zip(x[w].0.to_array()) {
            o[slot * 4..slot * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    out
}

fn words(key: &[u8; 32]) -> [u32; 8] {
    let mut k = [0u32; 8];
    for (w, c) in k.iter_mut().zip(key.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    k
}

/// The Salsa20 stream of one packet: subkey and 8-byte nonce.
struct Stream {
    /// The input state with the block counter at zero.
    state: [u32; 16],
}

impl Stream {
    fn new(subkey: &[u8; 32], tail: &[u8; 8]) -> Self {
        let sub = words(subkey);
        let n0 = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
        let n1 = u32::from_le_bytes([tail[4], tail[5], tail[6], tail[7]]);
        Self {
            state: [
                SIGMA[0], sub[0], sub[1], sub[2], sub[3], SIGMA[1], n0, n1, 0, 0, SIGMA[2], sub[4],
                sub[5], sub[6], sub[7], SIGMA[3],
            ],
        }
    }

    /// One keystream block (counter `counter`).
    fn block(&self, counter: u64) -> [u8; BLOCK] {
        let mut input = self.state;
        input[8] = counter as u32;
        input[9] = (counter >> 32) as u32;
        let mut x = input;
        for _ in 0..10 {
            double_round(&mut x);
        }
        let mut out = [0u8; BLOCK];
        for ((o, a), b) in out.chunks_exact_mut(4).zip(x).zip(input) {
            o.copy_from_slice(&a.wrapping_add(b).to_le_bytes());
        }
        out
    }

    /// [`LANES`] consecutive keystream blocks starting at `counter`, into `out`.
    fn blocks(&self, counter: u64, out: &mut [u8; BLOCK * LANES]) {
        let mut input = [Lanes(wide::u32x8::ZERO); 16];
        for (w, lanes) in input.iter_mut().enumerate() {
            *lanes = Lanes(wide::u32x8::splat(self.state[w]));
        }
        let mut lo = [0u32; LANES];
        let mut hi = [0u32; LANES];
        for lane in 0..LANES {
            let c = counter + lane as u64;
            lo[lane] = c as u32;
            hi[lane] = (c >> 32) as u32;
        }
        input[8] = Lanes(wide::u32x8::new(lo));
        input[9] = Lanes(wide::u32x8::new(hi));
        let x = rounds_lanes(input);
        // Word-major (lane = block) to block-major: transpose words 0–7 and 8–15 of the
        // eight blocks as two 8×8 matrices (unpack/shuffle instructions with AVX2).
        let mut sums = [wide::i32x8::ZERO; 16];
        for (s, (x, i)) in sums.iter_mut().zip(x.iter().zip(&input)) {
            *s = wide::i32x8::new(x.add(*i).0.to_array().map(|v| v as i32));
        }
        let [low, high] = [0, 8].map(|w| {
            let mut m = [wide::i32x8::ZERO; 8];
            m.copy_from_slice(&sums[w..w + 8]);
            wide::i32x8::transpose(m)
        });
        for (block, (lo, hi)) in out.chunks_exact_mut(BLOCK).zip(low.iter().zip(&high)) {
            let words = lo.to_array().into_iter().chain(hi.to_array());
            for (o, w) in block.chunks_exact_mut(4).zip(words) {
                o.copy_from_slice(&w.to_le_bytes());
            }
        }
    }

    /// Keystream blocks 0–7 as far as a message of `len` bytes needs them (block 0 always:
    /// it holds the Poly1305 key), all lanes at once unless [`SCALAR_MAX`] bytes are enough.
    fn first_blocks(&self, len: usize, out: &mut [u8; BLOCK * LANES]) {
        if 32 + len > SCALAR_MAX {
            self.blocks(0, out);
        } else {
            for (i, part) in out
                .chunks_exact_mut(BLOCK)
                .take(SCALAR_MAX / BLOCK)
                .enumerate()
            {
                part.copy_from_slice(&self.block(i as u64));
            }
        }
    }

    /// XORs `buf` with the stream from byte 32 on; `first` is [`Stream::first_blocks`].
    fn xor(&self, buf: &mut [u8], first: &[u8; BLOCK * LANES]) {
        let (head, rest) = buf.split_at_mut(buf.len().min(BLOCK * LANES - 32));
        xor(head, &first[32..]);
        let mut counter = LANES as u64;
        let mut wide = [0u8; BLOCK * LANES];
        for chunk in rest.chunks_mut(BLOCK * LANES) {
            if chunk.len() > SCALAR_MAX {
                self.blocks(counter, &mut wide);
                xor(chunk, &wide);
            } else {
                // Short tails: one block at a time is cheaper than all the lanes.
                for (i, part) in chunk.chunks_mut(BLOCK).enumerate() {
                    xor(part, &self.block(counter + i as u64));
                }
            }
            counter += LANES as u64;
        }
    }
}

fn xor(data: &mut [u8], stream: &[u8]) {
    for (d, s) in data.iter_mut().zip(stream) {
        *d ^= s;
    }
}

#[inline(always)]
fn quarter(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[b] ^= x[a].wrapping_add(x[d]).rotate_left(7);
    x[c] ^= x[b].wrapping_add(x[a]).rotate_left(9);
    x[d] ^= x[c].wrapping_add(x[b]).rotate_left(13);
    x[a] ^= x[d].wrapping_add(x[c]).rotate_left(18);
}

/// A column round then a row round.
#[inline(always)]
fn double_round(x: &mut [u32; 16]) {
    quarter(x, 0, 4, 8, 12);
    quarter(x, 5, 9, 13, 1);
    quarter(x, 10, 14, 2, 6);
    quarter(x, 15, 3, 7, 11);
    quarter(x, 0, 1, 2, 3);
    quarter(x, 5, 6, 7, 4);
    quarter(x, 10, 11, 8, 9);
    quarter(x, 15, 12, 13, 14);
}

/// One state word of [`LANES`] blocks, as a `wide` vector (AVX2 or SSE2 underneath).
#[derive(Clone, Copy)]
struct Lanes(wide::u32x8);

impl Lanes {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Self(self.0 + o.0)
    }

    #[inline(always)]
    fn xor_rot(self, v: Self, rot: u32) -> Self {
        Self(self.0 ^ ((v.0 << rot) | (v.0 >> (32 - rot))))
    }
}

/// Twenty rounds over [`LANES`] blocks at once, on locals so the state stays in registers.
#[inline(always)]
fn rounds_lanes(s: [Lanes; 16]) -> [Lanes; 16] {
    let [mut x0, mut x1, mut x2, mut x3, mut x4, mut x5, mut x6, mut x7, mut x8, mut x9, mut x10, mut x11, mut x12, mut x13, mut x14, mut x15] =
        s;
    macro_rules! qr {
        ($a:ident, $b:ident, $c:ident, $d:ident) => {
            $b = $b.xor_rot($a.add($d), 7);
            $c = $c.xor_rot($b.add($a), 9);
            $d = $d.xor_rot($c.add($b), 13);
            $a = $a.xor_rot($d.add($c), 18);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::{RngCore, SeedableRng};
    use xsalsa20poly1305::aead::generic_array::GenericArray;
    use xsalsa20poly1305::{AeadInPlace, KeyInit as _, XSalsa20Poly1305};

    fn reference_seal(key: &[u8; 32], nonce: &[u8; 24], buf: &mut [u8]) -> [u8; 16] {
        XSalsa20Poly1305::new(GenericArray::from_slice(key))
            .encrypt_in_place_detached(GenericArray::from_slice(nonce), &[], buf)
            .unwrap()
            .into()
    }

    /// Every length from 0 to 1600 bytes (all tail shapes: inside block 0, one to eight
    /// blocks, several lane groups) and random keys and nonces agree with the
    /// `xsalsa20poly1305` crate, and open what they seal.
    #[test]
    fn matches_the_reference_crate() {
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
            let b = SecretBox::new(&key);
            let tag = b.seal_detached(&nonce, &mut ours);
            assert_eq!(
                tag,
                reference_seal(&key, &nonce, &mut theirs),
                "tag, len {len}"
            );
            assert_eq!(ours, theirs, "ciphertext, len {len}");
            assert!(b.open_detached(&nonce, &mut ours, &tag));
            assert_eq!(ours, plain);
        }
    }

    #[test]
    fn wrong_tag_or_bit_flip_is_refused_and_changes_nothing() {
        let b = SecretBox::new(&[7; 32]);
        let nonce = [9u8; 24];
        let mut buf = vec![0x5a; 700];
        let tag = b.seal_detached(&nonce, &mut buf);
        let sealed = buf.clone();
        let mut bad_tag = tag;
        bad_tag[15] ^= 1;
        assert!(!b.open_detached(&nonce, &mut buf, &bad_tag));
        assert_eq!(buf, sealed);
        buf[600] ^= 0x80;
        let flipped = buf.clone();
        assert!(!b.open_detached(&nonce, &mut buf, &tag));
        assert_eq!(buf, flipped);
        let mut other_nonce = nonce;
        other_nonce[23] ^= 1;
        buf[600] ^= 0x80;
        assert!(!b.open_detached(&other_nonce, &mut buf, &tag));
        assert!(b.open_detached(&nonce, &mut buf, &tag));
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

    /// Subkeys derived eight at a time equal HSalsa20 of each nonce, also across the
    /// 32-bit wrap of the counter, and the window answers for its eight counters only.
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
        }
    }

    /// The eight-lane path computes the same blocks as the one-block path, also where the
    /// block counter carries from word 8 into word 9.
    #[test]
    fn counter_crosses_a_32_bit_boundary_like_the_reference() {
        // Not reachable by packets (≤ 64 KiB), but the lane counter must carry into word 9.
        let key = [1u8; 32];
        let s = Stream::new(&key, &[2; 8]);
        let mut wide = [0u8; BLOCK * LANES];
        let start = u64::from(u32::MAX) - 3;
        s.blocks(start, &mut wide);
        for lane in 0..LANES {
            assert_eq!(
                &wide[lane * BLOCK..(lane + 1) * BLOCK],
                &s.block(start + lane as u64)[..]
            );
        }
    }
}
