//! The four-lane Poly1305 path for long messages, in AVX2 operations through `safe_arch`
//! (safe wrappers that exist only when the build targets AVX2; this crate has no `unsafe`).
//! Compiled only for such targets; the one-block-at-a-time code in the parent module does
//! the rest of every message and all of it elsewhere.

use safe_arch::{
    add_i64_m256i, bitand_m256i, bitor_m256i, m256i, mul_u64_low_bits_m256i, set_splat_i64_m256i,
    shl_imm_u64_m256i, shr_imm_u64_m256i, unpack_high_i64_m256i, unpack_low_i64_m256i,
};

/// Blocks absorbed together by the four-lane path.
const LANES: usize = 4;
/// Fewer groups of [`LANES`] blocks than this go one block at a time: computing r², r³ and
/// r⁴ costs about as much as three blocks.
const MIN_GROUPS: usize = 4;
const MASK26: u64 = (1 << 26) - 1;

/// A value mod 2^130 − 5 in five 26-bit limbs (each may exceed 26 bits by a little).
type Limbs26 = [u64; 5];

/// Five limbs of four lanes.
type Lanes = [m256i; 5];

fn splat(v: u64) -> m256i {
    set_splat_i64_m256i(v as i64)
}

/// A per-lane multiplier r and 5·r (2^130 ≡ 5 folds the high products back).
struct Multiplier {
    r: Lanes,
    r5: Lanes,
}

impl Multiplier {
    fn new(r: Lanes) -> Self {
        Self {
            r,
            r5: r.map(|l| add_i64_m256i(l, shl_imm_u64_m256i::<2>(l))),
        }
    }
}

/// The same value in every lane.
fn splat_value(v: &Limbs26) -> Lanes {
    v.map(splat)
}

/// One value per lane.
fn per_lane(v: [&Limbs26; LANES]) -> Lanes {
    std::array::from_fn(|k| m256i::from(v.map(|l| l[k])))
}

/// Lane `i` of `v`.
fn lane(v: Lanes, i: usize) -> Limbs26 {
    v.map(|limb| <[u64; 4]>::from(limb)[i])
}

/// Absorbs the 64-byte groups at the front of `data` into a fresh accumulator (h = 0)
/// under `r` (radix 2^44, as the parent keeps it) if there are enough of them to pay for
/// the powers of r; returns that accumulator, in radix 2^44, and the bytes not absorbed.
pub(super) fn absorb_groups<'d>(r: &[u64; 3], data: &'d [u8]) -> (Option<[u64; 3]>, &'d [u8]) {
    let groups = data.len() / (16 * LANES);
    if groups < MIN_GROUPS {
        return (None, data);
    }
    let (head, tail) = data.split_at(groups * 16 * LANES);
    (Some(to_radix44(lanes_sum(&powers(r), head))), tail)
}

/// r, r², r³, r⁴ in radix 2^26, with two lane multiplications.
fn powers(r44: &[u64; 3]) -> [Limbs26; 4] {
    let r1 = from_radix44(r44);
    let r2 = lane(
        multiply(splat_value(&r1), &Multiplier::new(splat_value(&r1))),
        0,
    );
    let r34 = multiply(
        splat_value(&r2),
        &Multiplier::new(per_lane([&r1, &r2, &r1, &r2])),
    );
    [r1, r2, lane(r34, 0), lane(r34, 1)]
}

/// Poly1305 over `data` (a whole number of 64-byte groups) from h = 0 in radix 2^26,
/// four blocks at a time: each lane absorbs every fourth block with h ← (h + m)·r⁴,
/// except that the last step multiplies the lane holding block k of the final group by
/// r^(4−k), so the sum of the lanes is Σ mᵢ·r^(n−i), the one-block-at-a-time result.
/// The unpacks that split a group into low and high words leave its blocks in lane
/// order 0, 2, 1, 3, hence the order of the final powers.
fn lanes_sum([r1, r2, r3, r4]: &[Limbs26; 4], data: &[u8]) -> Limbs26 {
    let step = Multiplier::new(splat_value(r4));
    let last = Multiplier::new(per_lane([r4, r2, r3, r1]));
    let mut h: Lanes = [splat(0); 5];
    let mut groups = data.chunks_exact(16 * LANES);
    let final_group = groups.next_back();
    for group in groups {
        h = multiply(add(h, load(group)), &step);
    }
    if let Some(group) = final_group {
        h = multiply(add(h, load(group)), &last);
    }
    carry26(h.map(|limb| <[u64; 4]>::from(limb).iter().sum()))
}

#[inline(always)]
fn add(a: Lanes, b: Lanes) -> Lanes {
    std::array::from_fn(|k| add_i64_m256i(a[k], b[k]))
}

/// The five 26-bit limbs (with the 2^128 bit) of the four blocks of a 64-byte group.
#[inline(always)]
fn load(group: &[u8]) -> Lanes {
    let half = |at: usize| {
        let mut b = [0u8; 32];
        if let Some(src) = group.get(at..at + 32) {
            b.copy_from_slice(src);
        }
        m256i::from(b)
    };
    let (a, b) = (half(0), half(32));
    let lo = unpack_low_i64_m256i(a, b);
    let hi = unpack_high_i64_m256i(a, b);
    let mask = splat(MASK26);
    [
        bitand_m256i(lo, mask),
        bitand_m256i(shr_imm_u64_m256i::<26>(lo), mask),
        bitand_m256i(
            bitor_m256i(shr_imm_u64_m256i::<52>(lo), shl_imm_u64_m256i::<12>(hi)),
            mask,
        ),
        bitand_m256i(shr_imm_u64_m256i::<14>(hi), mask),
        bitor_m256i(shr_imm_u64_m256i::<40>(hi), splat(1 << 24)),
    ]
}

/// h · r per lane, limbs carried back to 26 bits (limb 1 may keep one more).
#[inline(always)]
fn multiply(h: Lanes, m: &Multiplier) -> Lanes {
    let p = mul_u64_low_bits_m256i;
    let [h0, h1, h2, h3, h4] = h;
    let [r0, r1, r2, r3, r4] = m.r;
    let [_, s1, s2, s3, s4] = m.r5;
    let sum = |t: [m256i; 5]| {
        add_i64_m256i(
            add_i64_m256i(add_i64_m256i(t[0], t[1]), add_i64_m256i(t[2], t[3])),
            t[4],
        )
    };
    let mut d0 = sum([p(h0, r0), p(h1, s4), p(h2, s3), p(h3, s2), p(h4, s1)]);
    let mut d1 = sum([p(h0, r1), p(h1, r0), p(h2, s4), p(h3, s3), p(h4, s2)]);
    let mut d2 = sum([p(h0, r2), p(h1, r1), p(h2, r0), p(h3, s4), p(h4, s3)]);
    let mut d3 = sum([p(h0, r3), p(h1, r2), p(h2, r1), p(h3, r0), p(h4, s4)]);
    let mut d4 = sum([p(h0, r4), p(h1, r3), p(h2, r2), p(h3, r1), p(h4, r0)]);
    let mask = splat(MASK26);
    let carry = |from: &mut m256i, to: m256i| {
        let c = shr_imm_u64_m256i::<26>(*from);
        *from = bitand_m256i(*from, mask);
        add_i64_m256i(to, c)
    };
    d1 = carry(&mut d0, d1);
    d2 = carry(&mut d1, d2);
    d3 = carry(&mut d2, d3);
    d4 = carry(&mut d3, d4);
    // The top carry times 5 goes to limb 0: c + 4c.
    let c = shr_imm_u64_m256i::<26>(d4);
    d4 = bitand_m256i(d4, mask);
    d0 = add_i64_m256i(d0, add_i64_m256i(c, shl_imm_u64_m256i::<2>(c)));
    d1 = carry(&mut d0, d1);
    [d0, d1, d2, d3, d4]
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
