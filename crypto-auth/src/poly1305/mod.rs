//! Poly1305 one-time authenticator, radix 2^44 with 64×64→128-bit products (the layout of
//! Andrew Moon's "poly1305-donna-64"), and where the CPU has AVX2 (chosen at run time,
//! [`crate::cpu`]) a four-lane radix 2^26 path for long messages (`poly1305/avx2.rs`). The one
//! Poly1305 of the crate: the legacy box's (a whole message, [`Poly1305::compute`]) and the
//! ChaCha20-Poly1305 of [`crate::primitives`] (zero-padded parts,
//! [`Poly1305::update_padded`]).
//!
//! Why not the `poly1305` crate: on an x86-64 build without `-C target-cpu` flags it picks its
//! AVX2 backend at run time, whose helpers then cannot be inlined; setting up a key costs about
//! 1.3 µs there, more than authenticating a whole 1420-byte packet, and both AEADs need a fresh
//! key for every packet (and PacketCrypt for every CryptoCycle pass). This version costs a few
//! nanoseconds to key and about 1.5 cycles a byte on any x86-64 or 64-bit ARM build. Tests
//! compare it with the `poly1305` crate on random and carry-heavy inputs and with RFC 8439,
//! at every level the CPU runs.

use crate::cpu::Simd;

const MASK44: u64 = (1 << 44) - 1;
const MASK42: u64 = (1 << 42) - 1;

/// A Poly1305 computation under one 32-byte one-time key.
pub(crate) struct Poly1305 {
    r: [u64; 3],
    /// 20·r1 and 20·r2: the reduction folds 2^132 ≡ 20 (mod 2^130 − 5) into the products.
    s: [u64; 2],
    h: [u64; 3],
    pad: [u64; 2],
}

#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

impl Poly1305 {
    /// Keys the authenticator (`r` clamped as the algorithm requires).
    #[inline(always)]
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let t0 = le64(&key[0..8]);
        let t1 = le64(&key[8..16]);
        let r0 = t0 & 0x0ffc_0fff_ffff;
        let r1 = ((t0 >> 44) | (t1 << 20)) & 0x0fff_ffc0_ffff;
        let r2 = (t1 >> 24) & 0x000f_ffff_fc0f;
        Self {
            r: [r0, r1, r2],
            s: [r1 * 20, r2 * 20],
            h: [0; 3],
            pad: [le64(&key[16..24]), le64(&key[24..32])],
        }
    }

    /// Absorbs one 16-byte block; `hibit` is 2^128 (as `1 << 40` in the top limb) for full
    /// blocks and 0 for the padded last one.
    #[inline(always)]
    fn block(&mut self, m: &[u8; 16], hibit: u64) {
        let [r0, r1, r2] = self.r;
        let [s1, s2] = self.s;
        let [mut h0, mut h1, mut h2] = self.h;
        let t0 = le64(&m[0..8]);
        let t1 = le64(&m[8..16]);
        h0 += t0 & MASK44;
        h1 += ((t0 >> 44) | (t1 << 20)) & MASK44;
        h2 += ((t1 >> 24) & MASK42) | hibit;
        let m = |a: u64, b: u64| u128::from(a) * u128::from(b);
        let d0 = m(h0, r0) + m(h1, s2) + m(h2, s1);
        let mut d1 = m(h0, r1) + m(h1, r0) + m(h2, s2);
        let mut d2 = m(h0, r2) + m(h1, r1) + m(h2, r0);
        let mut c = (d0 >> 44) as u64;
        h0 = d0 as u64 & MASK44;
        d1 += u128::from(c);
        c = (d1 >> 44) as u64;
        h1 = d1 as u64 & MASK44;
        d2 += u128::from(c);
        c = (d2 >> 42) as u64;
        h2 = d2 as u64 & MASK42;
        h0 += c * 5;
        c = h0 >> 44;
        h0 &= MASK44;
        h1 += c;
        self.h = [h0, h1, h2];
    }

    /// The tag of `data` (the whole message: Poly1305 pads only its last block), at the
    /// level of `simd`.
    #[inline(always)]
    pub(crate) fn compute<S: Simd>(mut self, simd: S, data: &[u8]) -> [u8; 16] {
        let rest = self.absorb_lanes(simd, data);
        self.compute_blocks(rest)
    }

    /// Absorbs `data` zero-padded to a multiple of 16 bytes (the padding rule of the RFC 8439
    /// AEAD), at the level of `simd`; [`Poly1305::finish`] gives the tag.
    #[inline(always)]
    pub(crate) fn update_padded<S: Simd>(&mut self, simd: S, data: &[u8]) {
        let rest = self.absorb_lanes(simd, data);
        let rest = self.absorb_blocks(rest);
        if !rest.is_empty() {
            let mut m = [0u8; 16];
            m[..rest.len()].copy_from_slice(rest);
            self.block(&m, 1 << 40);
        }
    }

    /// With AVX2: absorbs all but the last few full blocks of a long message four at a time
    /// ([`avx2::absorb_groups`]) and returns what is left. Without AVX2 every block goes
    /// through [`Poly1305::block`]: a portable four-lane version measured 35 % slower than that
    /// on the SSE2 baseline (docs/perf.md).
    #[inline(always)]
    fn absorb_lanes<'d, S: Simd>(&mut self, simd: S, data: &'d [u8]) -> &'d [u8] {
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = simd.avx2() {
            let (h, rest) = avx2::absorb_groups(avx2, &self.r, &carry(carry(self.h)), data);
            if let Some(h) = h {
                self.h = h;
            }
            return rest;
        }
        let _ = simd;
        data
    }

    /// Absorbs the full blocks of `data` one at a time and returns the partial block left.
    #[inline(always)]
    fn absorb_blocks<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let mut blocks = data.chunks_exact(16);
        for b in &mut blocks {
            let mut m = [0u8; 16];
            m.copy_from_slice(b);
            self.block(&m, 1 << 40);
        }
        blocks.remainder()
    }

    /// The tag of `data` absorbed one block at a time (the last one padded): the end of
    /// [`Poly1305::compute`], and all of it in tests that compare the paths.
    #[inline(always)]
    fn compute_blocks(mut self, data: &[u8]) -> [u8; 16] {
        let rest = self.absorb_blocks(data);
        if !rest.is_empty() {
            let mut m = [0u8; 16];
            m[..rest.len()].copy_from_slice(rest);
            m[rest.len()] = 1;
            self.block(&m, 0);
        }
        self.finish()
    }

    /// The tag.
    #[inline(always)]
    pub(crate) fn finish(self) -> [u8; 16] {
        // Two carry passes leave every limb within its width.
        let [mut h0, mut h1, mut h2] = carry(carry(self.h));
        let mut c;
        // g = h + 5 − 2^130; take g if it did not go negative (h ≥ p), without branching.
        let mut g0 = h0 + 5;
        c = g0 >> 44;
        g0 &= MASK44;
        let mut g1 = h1 + c;
        c = g1 >> 44;
        g1 &= MASK44;
        let mut g2 = (h2 + c).wrapping_sub(1 << 42);
        let take_g = (g2 >> 63).wrapping_sub(1);
        g0 &= take_g;
        g1 &= take_g;
        g2 &= take_g;
        let keep_h = !take_g;
        h0 = (h0 & keep_h) | g0;
        h1 = (h1 & keep_h) | g1;
        h2 = (h2 & keep_h) | g2;
        // h + pad mod 2^128.
        let [t0, t1] = self.pad;
        h0 += t0 & MASK44;
        c = h0 >> 44;
        h0 &= MASK44;
        h1 += (((t0 >> 44) | (t1 << 20)) & MASK44) + c;
        c = h1 >> 44;
        h1 &= MASK44;
        h2 += ((t1 >> 24) & MASK42) + c;
        h2 &= MASK42;
        let lo = h0 | (h1 << 44);
        let hi = (h1 >> 20) | (h2 << 24);
        let mut tag = [0u8; 16];
        tag[..8].copy_from_slice(&lo.to_le_bytes());
        tag[8..].copy_from_slice(&hi.to_le_bytes());
        tag
    }
}

/// One carry pass from limb 1 round to limb 1 (2^130 ≡ 5).
#[inline(always)]
fn carry([mut h0, mut h1, mut h2]: [u64; 3]) -> [u64; 3] {
    let mut c = h1 >> 44;
    h1 &= MASK44;
    h2 += c;
    c = h2 >> 42;
    h2 &= MASK42;
    h0 += c * 5;
    c = h0 >> 44;
    h0 &= MASK44;
    h1 += c;
    [h0, h1, h2]
}

#[cfg(target_arch = "x86_64")]
mod avx2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{self, Kernel, Level};
    use ::poly1305::universal_hash::KeyInit;
    use rand_core::{RngCore, SeedableRng};

    /// A tag at one level.
    struct Tag<'a>(&'a [u8; 32], &'a [u8]);

    impl Kernel for Tag<'_> {
        type Output = [u8; 16];
        fn run<S: Simd>(self, simd: S) -> [u8; 16] {
            Poly1305::new(self.0).compute(simd, self.1)
        }
    }

    fn tag_at(level: Level, key: &[u8; 32], data: &[u8]) -> [u8; 16] {
        cpu::with_level(level, || cpu::run(Tag(key, data)))
    }

    fn reference(key: &[u8; 32], data: &[u8]) -> [u8; 16] {
        ::poly1305::Poly1305::new(key.into())
            .compute_unpadded(data)
            .into()
    }

    #[test]
    fn rfc8439_vector() {
        let key: [u8; 32] =
            hex::decode("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
                .unwrap()
                .try_into()
                .unwrap();
        for level in cpu::levels() {
            let tag = tag_at(level, &key, b"Cryptographic Forum Research Group");
            assert_eq!(hex::encode(tag), "a8061dc1305136c6c22b8baf0c0127a9");
        }
    }

    #[test]
    fn matches_the_reference_crate_on_random_inputs() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([5; 32]);
        for len in 0..1600usize {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            let expected = reference(&key, &data);
            for level in cpu::levels() {
                assert_eq!(tag_at(level, &key, &data), expected, "{level:?}, len {len}");
            }
            let one_by_one = Poly1305::new(&key).compute_blocks(&data);
            assert_eq!(one_by_one, expected, "len {len}, block by block");
        }
    }

    /// Inputs that make every carry and the final reduction work: all-ones keys and
    /// messages, all-zero, and r = 0 with a full pad (h + pad wraps 2^128).
    #[test]
    fn matches_the_reference_crate_on_carry_heavy_inputs() {
        for key_byte in [0x00u8, 0xff, 0x7f, 0x80] {
            for data_byte in [0x00u8, 0xff, 0x01, 0xfe] {
                for len in [
                    0usize, 1, 15, 16, 17, 31, 32, 33, 64, 255, 256, 257, 1024, 1420, 4096,
                ] {
                    let key = [key_byte; 32];
                    let data = vec![data_byte; len];
                    let expected = reference(&key, &data);
                    let what = format!("key {key_byte:#x} data {data_byte:#x} len {len}");
                    for level in cpu::levels() {
                        assert_eq!(tag_at(level, &key, &data), expected, "{level:?}, {what}");
                    }
                    let one_by_one = Poly1305::new(&key).compute_blocks(&data);
                    assert_eq!(one_by_one, expected, "{what}, block by block");
                }
            }
        }
        // With r = 1 and no pad, two full blocks of (2^128 − 1) and (2^128 − 1 − j) give
        // h = 2^130 − 2 − j: above p = 2^130 − 5 for j < 3, p itself for j = 3, below after.
        let mut key = [0u8; 32];
        key[0] = 1;
        for j in 0u8..6 {
            let mut data = [0xffu8; 32];
            data[16] = 0xff - j;
            for level in cpu::levels() {
                assert_eq!(
                    tag_at(level, &key, &data),
                    reference(&key, &data),
                    "{level:?}, j {j}"
                );
            }
        }
    }
}
