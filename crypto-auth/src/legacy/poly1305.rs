//! Poly1305 one-time authenticator, radix 2^44 with 64×64→128-bit products (the layout of
//! Andrew Moon's "poly1305-donna-64"), and where the target has AVX2 a four-lane radix 2^26
//! path for long messages (see [`lanes_sum`]).
//!
//! Why not the `poly1305` crate: on an x86-64 build without `-C target-cpu` flags it picks its
//! AVX2 backend at run time, whose helpers then cannot be inlined; setting up a key costs about
//! 1.3 µs there, more than authenticating a whole 1420-byte packet, and legacy CryptoAuth
//! needs a fresh key for every packet (twice per packet per node). This version costs a few
//! nanoseconds to key and about 1.5 cycles a byte on any x86-64 or 64-bit ARM build. Tests
//! compare it with the `poly1305` crate on random and carry-heavy inputs and with RFC 8439.

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

fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

impl Poly1305 {
    /// Keys the authenticator (`r` clamped as the algorithm requires).
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

    /// The tag of `data` (the whole message: Poly1305 pads only its last block).
    pub(crate) fn compute(self, data: &[u8]) -> [u8; 16] {
        // The lanes need 4 × 64-bit vector multiplies (AVX2) to pay: on the SSE2 baseline
        // they measured 35 % slower than one block at a time (docs/perf.md).
        self.compute_with(data, cfg!(target_feature = "avx2"))
    }

    /// [`Poly1305::compute`], with long messages in four interleaved lanes if `lanes`.
    fn compute_with(mut self, data: &[u8], lanes: bool) -> [u8; 16] {
        let groups = if lanes { data.len() / (16 * LANES) } else { 0 };
        let data = if groups >= MIN_GROUPS {
            let (head, tail) = data.split_at(groups * 16 * LANES);
            self.h = to_radix44(lanes_sum(&self.r, head));
            tail
        } else {
            data
        };
        let mut blocks = data.chunks_exact(16);
        for b in &mut blocks {
            let mut m = [0u8; 16];
            m.copy_from_slice(b);
            self.block(&m, 1 << 40);
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            let mut m = [0u8; 16];
            m[..rest.len()].copy_from_slice(rest);
            m[rest.len()] = 1;
            self.block(&m, 0);
        }
        self.finish()
    }

    fn finish(self) -> [u8; 16] {
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

/// Blocks absorbed together by [`lanes_sum`].
const LANES: usize = 4;
/// Fewer groups of [`LANES`] blocks than this go one block at a time: computing r², r³ and
/// r⁴ costs about as much as three blocks.
const MIN_GROUPS: usize = 4;
const MASK26: u64 = (1 << 26) - 1;

/// A value mod 2^130 − 5 in five 26-bit limbs (each may exceed 26 bits by a little).
type Limbs26 = [u64; 5];

/// Poly1305 over `data` (a whole number of groups of [`LANES`] full blocks) from h = 0, four
/// blocks at a time in radix 2^26: lane j absorbs blocks j, j + 4, j + 8, … with
/// h_j ← (h_j + m) · r⁴, except that the last step multiplies lane j by r^(4−j), so the sum
/// of the lanes is Σ mᵢ·r^(n−i), exactly the one-block-at-a-time result. Every product is
/// 32 × 32 → 64 bits on 4-wide arrays, which the compiler turns into vector multiplies
/// (`vpmuludq` with AVX2, `pmuludq` on the SSE2 baseline).
fn lanes_sum(r44: &[u64; 3], data: &[u8]) -> Limbs26 {
    let r1 = from_radix44(r44);
    let r2 = mul26(&r1, &r1);
    let r3 = mul26(&r2, &r1);
    let r4 = mul26(&r2, &r2);
    let mut h = [[0u64; LANES]; 5];
    let groups = data.chunks_exact(16 * LANES);
    let last = groups.len().saturating_sub(1);
    let all_r4 = [r4; LANES];
    let final_powers = [r4, r3, r2, r1];
    for (i, group) in groups.enumerate() {
        let m = load_group(group);
        for (limb, m) in h.iter_mut().zip(m) {
            for (h, m) in limb.iter_mut().zip(m) {
                *h += m;
            }
        }
        h = mul_lanes(&h, if i == last { &final_powers } else { &all_r4 });
    }
    let mut sum = [0u64; 5];
    for (s, limb) in sum.iter_mut().zip(h) {
        *s = limb.iter().sum();
    }
    carry26(sum)
}

/// The five limbs of each of the four blocks of `group`, limb-major.
#[inline(always)]
fn load_group(group: &[u8]) -> [[u64; LANES]; 5] {
    let mut m = [[0u64; LANES]; 5];
    for (lane, block) in group.chunks_exact(16).enumerate().take(LANES) {
        let lo = le64(&block[0..8]);
        let hi = le64(&block[8..16]);
        m[0][lane] = lo & MASK26;
        m[1][lane] = (lo >> 26) & MASK26;
        m[2][lane] = ((lo >> 52) | (hi << 12)) & MASK26;
        m[3][lane] = (hi >> 14) & MASK26;
        m[4][lane] = (hi >> 40) | (1 << 24);
    }
    m
}

/// 32 × 32 → 64-bit product (the operands are below 2^32; the masks say so to the compiler).
#[inline(always)]
fn mul32(a: u64, b: u64) -> u64 {
    (a & 0xffff_ffff) * (b & 0xffff_ffff)
}

/// h · r per lane, reduced to limbs of at most 26 bits (limb 1: 26 bits + 1).
#[inline(always)]
fn mul_lanes(h: &[[u64; LANES]; 5], r: &[Limbs26; LANES]) -> [[u64; LANES]; 5] {
    let mut d = [[0u64; LANES]; 5];
    for lane in 0..LANES {
        let [r0, r1, r2, r3, r4] = r[lane];
        let [s1, s2, s3, s4] = [r1 * 5, r2 * 5, r3 * 5, r4 * 5];
        let [h0, h1, h2, h3, h4] = [h[0][lane], h[1][lane], h[2][lane], h[3][lane], h[4][lane]];
        d[0][lane] = mul32(h0, r0) + mul32(h1, s4) + mul32(h2, s3) + mul32(h3, s2) + mul32(h4, s1);
        d[1][lane] = mul32(h0, r1) + mul32(h1, r0) + mul32(h2, s4) + mul32(h3, s3) + mul32(h4, s2);
        d[2][lane] = mul32(h0, r2) + mul32(h1, r1) + mul32(h2, r0) + mul32(h3, s4) + mul32(h4, s3);
        d[3][lane] = mul32(h0, r3) + mul32(h1, r2) + mul32(h2, r1) + mul32(h3, r0) + mul32(h4, s4);
        d[4][lane] = mul32(h0, r4) + mul32(h1, r3) + mul32(h2, r2) + mul32(h3, r1) + mul32(h4, r0);
    }
    // Carry limb to limb, the top limb round to limb 0 (2^130 ≡ 5), and limb 0 once more.
    let [d0, d1, d2, d3, d4] = &mut d;
    carry_into(d0, d1, 1);
    carry_into(d1, d2, 1);
    carry_into(d2, d3, 1);
    carry_into(d3, d4, 1);
    carry_into(d4, d0, 5);
    carry_into(d0, d1, 1);
    d
}

/// Moves the bits of `from` above 26 into `to`, times `factor`, in every lane.
#[inline(always)]
fn carry_into(from: &mut [u64; LANES], to: &mut [u64; LANES], factor: u64) {
    for (f, t) in from.iter_mut().zip(to) {
        *t += (*f >> 26) * factor;
        *f &= MASK26;
    }
}

/// a · b mod 2^130 − 5 for one value (the powers of r).
fn mul26(a: &Limbs26, b: &Limbs26) -> Limbs26 {
    let lanes = |x: &Limbs26| x.map(|v| [v; LANES]);
    let d = mul_lanes(&lanes(a), &[*b; LANES]);
    d.map(|limb| limb[0])
}

/// Two carry passes: limbs 1–4 below 2^26, limb 0 at most a few units above.
fn carry26(mut l: Limbs26) -> Limbs26 {
    for _ in 0..2 {
        let mut c = 0;
        for v in l.iter_mut() {
            *v += c;
            c = *v >> 26;
            *v &= MASK26;
        }
        l[0] += c * 5;
    }
    l
}

fn from_radix44([r0, r1, r2]: &[u64; 3]) -> Limbs26 {
    let lo = r0 | (r1 << 44);
    let hi = (r1 >> 20) | (r2 << 24);
    [
        lo & MASK26,
        (lo >> 26) & MASK26,
        ((lo >> 52) | (hi << 12)) & MASK26,
        (hi >> 14) & MASK26,
        hi >> 40,
    ]
}

fn to_radix44([l0, l1, l2, l3, l4]: Limbs26) -> [u64; 3] {
    // Sums, not ORs: after carry26 limb 0 may exceed 26 bits by a little; block() and
    // finish() carry the excess like any other.
    let h0 = l0 + ((l1 & 0x3_ffff) << 26);
    let h1 = (l1 >> 18) + (l2 << 8) + ((l3 & 0x3ff) << 34);
    let h2 = (l3 >> 10) + (l4 << 16);
    [h0, h1, h2]
}

/// One carry pass from limb 1 round to limb 1 (2^130 ≡ 5).
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

#[cfg(test)]
mod tests {
    use super::*;
    use ::poly1305::universal_hash::KeyInit;
    use rand_core::{RngCore, SeedableRng};

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
        let tag = Poly1305::new(&key).compute(b"Cryptographic Forum Research Group");
        assert_eq!(hex::encode(tag), "a8061dc1305136c6c22b8baf0c0127a9");
    }

    #[test]
    fn matches_the_reference_crate_on_random_inputs() {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([5; 32]);
        for len in 0..1600usize {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            for lanes in [false, true] {
                assert_eq!(
                    Poly1305::new(&key).compute_with(&data, lanes),
                    reference(&key, &data),
                    "len {len} lanes {lanes}"
                );
            }
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
                    for lanes in [false, true] {
                        assert_eq!(
                            Poly1305::new(&key).compute_with(&data, lanes),
                            reference(&key, &data),
                            "key {key_byte:#x} data {data_byte:#x} len {len} lanes {lanes}"
                        );
                    }
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
            assert_eq!(
                Poly1305::new(&key).compute(&data),
                reference(&key, &data),
                "j {j}"
            );
        }
    }
}
