//! The four-lane Poly1305 path for long messages, on the AVX2 vectors of [`crate::cpu`]
//! (safe types that exist only once the CPU has shown AVX2; this module has no `unsafe`). It
//! runs where [`crate::cpu`] picked an AVX2 level at run time; the one-block-at-a-time code in
//! the parent module does the rest of every message and all of it elsewhere. Everything is
//! `#[inline(always)]`, to be compiled into the AVX2 kernels, and uses loops rather than
//! `array::map`, which LLVM may leave out of line (compiled for the baseline).

use crate::cpu::avx2::{Avx2, U64x4};

/// Blocks absorbed together by the four-lane path.
const LANES: usize = 4;
/// Fewer groups of [`LANES`] blocks than this go one block at a time: computing r², r³ and
/// r⁴ costs about as much as three blocks.
const MIN_GROUPS: usize = 4;
const MASK26: u64 = (1 << 26) - 1;

/// A value mod 2^130 − 5 in five 26-bit limbs (each may exceed 26 bits by a little).
type Limbs26 = [u64; 5];

/// Five limbs of four lanes.
type Lanes = [U64x4; 5];

/// A per-lane multiplier r and 5·r (2^130 ≡ 5 folds the high products back).
struct Multiplier {
    r: Lanes,
    r5: Lanes,
}

impl Multiplier {
    #[inline(always)]
    fn new(r: Lanes) -> Self {
        Self {
            r,
            r5: [
                r[0].add(r[0].shl::<2>()),
                r[1].add(r[1].shl::<2>()),
                r[2].add(r[2].shl::<2>()),
                r[3].add(r[3].shl::<2>()),
                r[4].add(r[4].shl::<2>()),
            ],
        }
    }
}

/// The same value in every lane.
#[inline(always)]
fn splat_value(avx2: Avx2, v: &Limbs26) -> Lanes {
    let mut out = [avx2.splat64(0); 5];
    for (o, l) in out.iter_mut().zip(v) {
        *o = avx2.splat64(*l);
    }
    out
}

/// One value per lane.
#[inline(always)]
fn per_lane(avx2: Avx2, v: [&Limbs26; LANES]) -> Lanes {
    let mut out = [avx2.splat64(0); 5];
    for (k, o) in out.iter_mut().enumerate() {
        *o = avx2.u64x4([v[0][k], v[1][k], v[2][k], v[3][k]]);
    }
    out
}

/// Lane `i` of `v`.
#[inline(always)]
fn lane(v: Lanes, i: usize) -> Limbs26 {
    let mut out = [0; 5];
    for (o, limb) in out.iter_mut().zip(v) {
        *o = limb.to_array()[i];
    }
    out
}

/// Absorbs the 64-byte groups at the front of `data` into the accumulator `h` (radix 2^44,
/// as the parent keeps it, each limb within its width) under `r` if there are enough of them
/// to pay for the powers of r; returns the new accumulator, in radix 2^44, and the bytes not
/// absorbed.
#[inline(always)]
pub(super) fn absorb_groups<'d>(
    avx2: Avx2,
    r: &[u64; 3],
    h: &[u64; 3],
    data: &'d [u8],
) -> (Option<[u64; 3]>, &'d [u8]) {
    let groups = data.len() / (16 * LANES);
    if groups < MIN_GROUPS {
        return (None, data);
    }
    let (head, tail) = data.split_at(groups * 16 * LANES);
    let sum = lanes_sum(avx2, &powers(avx2, r), &from_radix44(h), head);
    (Some(to_radix44(sum)), tail)
}

/// r, r², r³, r⁴ in radix 2^26, with two lane multiplications.
#[inline(always)]
fn powers(avx2: Avx2, r44: &[u64; 3]) -> [Limbs26; 4] {
    let r1 = from_radix44(r44);
    let r2 = lane(
        multiply(
            avx2,
            splat_value(avx2, &r1),
            &Multiplier::new(splat_value(avx2, &r1)),
        ),
        0,
    );
    let r34 = multiply(
        avx2,
        splat_value(avx2, &r2),
        &Multiplier::new(per_lane(avx2, [&r1, &r2, &r1, &r2])),
    );
    [r1, r2, lane(r34, 0), lane(r34, 1)]
}

/// Poly1305 over `data` (a whole number of 64-byte groups) from the accumulator `h0` in
/// radix 2^26, four blocks at a time: each lane absorbs every fourth block with
/// h ← (h + m)·r⁴, except that the last step multiplies the lane holding block k of the final
/// group by r^(4−k), so the sum of the lanes is h0·rⁿ + Σ mᵢ·r^(n−i), the one-block-at-a-time
/// result (`h0` starts in the lane of block 0). The unpacks that split a group into low and
/// high words leave its blocks in lane order 0, 2, 1, 3, hence the order of the final powers.
#[inline(always)]
fn lanes_sum(avx2: Avx2, [r1, r2, r3, r4]: &[Limbs26; 4], h0: &Limbs26, data: &[u8]) -> Limbs26 {
    let step = Multiplier::new(splat_value(avx2, r4));
    let last = Multiplier::new(per_lane(avx2, [r4, r2, r3, r1]));
    let mut h: Lanes = per_lane(avx2, [h0, &[0; 5], &[0; 5], &[0; 5]]);
    let mut groups = data.chunks_exact(16 * LANES);
    let final_group = groups.next_back();
    for group in groups {
        h = multiply(avx2, add(h, load(avx2, group)), &step);
    }
    if let Some(group) = final_group {
        h = multiply(avx2, add(h, load(avx2, group)), &last);
    }
    let mut sum = [0; 5];
    for (s, limb) in sum.iter_mut().zip(h) {
        *s = limb.to_array().iter().sum();
    }
    carry26(sum)
}

#[inline(always)]
fn add(mut a: Lanes, b: Lanes) -> Lanes {
    for (a, b) in a.iter_mut().zip(b) {
        *a = a.add(b);
    }
    a
}

/// The five 26-bit limbs (with the 2^128 bit) of the four blocks of a 64-byte group.
#[inline(always)]
fn load(avx2: Avx2, group: &[u8]) -> Lanes {
    let half = |at: usize| {
        let mut b = [0u8; 32];
        if let Some(src) = group.get(at..at + 32) {
            b.copy_from_slice(src);
        }
        avx2.load64(&b)
    };
    let (a, b) = (half(0), half(32));
    let lo = a.unpack_lo(b);
    let hi = a.unpack_hi(b);
    let mask = avx2.splat64(MASK26);
    [
        lo.and(mask),
        lo.shr::<26>().and(mask),
        lo.shr::<52>().or(hi.shl::<12>()).and(mask),
        hi.shr::<14>().and(mask),
        hi.shr::<40>().or(avx2.splat64(1 << 24)),
    ]
}

/// h · r per lane, limbs carried back to 26 bits (limb 1 may keep one more).
#[inline(always)]
fn multiply(avx2: Avx2, h: Lanes, m: &Multiplier) -> Lanes {
    let p = U64x4::mul32;
    let [h0, h1, h2, h3, h4] = h;
    let [r0, r1, r2, r3, r4] = m.r;
    let [_, s1, s2, s3, s4] = m.r5;
    let sum = |t: [U64x4; 5]| t[0].add(t[1]).add(t[2].add(t[3])).add(t[4]);
    let mut d0 = sum([p(h0, r0), p(h1, s4), p(h2, s3), p(h3, s2), p(h4, s1)]);
    let mut d1 = sum([p(h0, r1), p(h1, r0), p(h2, s4), p(h3, s3), p(h4, s2)]);
    let mut d2 = sum([p(h0, r2), p(h1, r1), p(h2, r0), p(h3, s4), p(h4, s3)]);
    let mut d3 = sum([p(h0, r3), p(h1, r2), p(h2, r1), p(h3, r0), p(h4, s4)]);
    let mut d4 = sum([p(h0, r4), p(h1, r3), p(h2, r2), p(h3, r1), p(h4, r0)]);
    let mask = avx2.splat64(MASK26);
    let carry = |from: &mut U64x4, to: U64x4| {
        let c = from.shr::<26>();
        *from = from.and(mask);
        to.add(c)
    };
    d1 = carry(&mut d0, d1);
    d2 = carry(&mut d1, d2);
    d3 = carry(&mut d2, d3);
    d4 = carry(&mut d3, d4);
    // The top carry times 5 goes to limb 0: c + 4c.
    let c = d4.shr::<26>();
    d4 = d4.and(mask);
    d0 = d0.add(c.add(c.shl::<2>()));
    d1 = carry(&mut d0, d1);
    [d0, d1, d2, d3, d4]
}

/// Two carry passes: limbs 1–4 below 2^26, limb 0 at most a few units above.
#[inline(always)]
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

/// Radix 2^44 (limbs within their widths: 44, 44, 42 bits) to radix 2^26.
#[inline(always)]
fn from_radix44([h0, h1, h2]: &[u64; 3]) -> Limbs26 {
    [
        h0 & MASK26,
        ((h0 >> 26) | (h1 << 18)) & MASK26,
        (h1 >> 8) & MASK26,
        ((h1 >> 34) | (h2 << 10)) & MASK26,
        h2 >> 16,
    ]
}

#[inline(always)]
fn to_radix44([l0, l1, l2, l3, l4]: Limbs26) -> [u64; 3] {
    // Sums, not ORs: after carry26 limb 0 may exceed 26 bits by a little; block() and
    // finish() carry the excess like any other.
    let h0 = l0 + ((l1 & 0x3_ffff) << 26);
    let h1 = (l1 >> 18) + (l2 << 8) + ((l3 & 0x3ff) << 34);
    let h2 = (l3 >> 10) + (l4 << 16);
    [h0, h1, h2]
}
