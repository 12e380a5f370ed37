//! Difficulty arithmetic: Bitcoin compact targets, work, the effective block target of
//! PcP v1/v2, announcement aging (maturity) and the v1 soft-nonce limit.
//!
//! The semantics follow the PKT full node (`difficulty/{convert,diff}.go`): big-integer
//! arithmetic with truncating division, and `≤` when comparing a hash with a target.

use num_bigint::{BigInt, Sign};

/// Announcements must wait this many blocks after their parent block before use.
pub const ANN_WAIT_PERIOD: u32 = 3;
/// Largest effective target (easiest difficulty) ever required.
pub const MAX_EFFECTIVE_TARGET: u32 = 0x207f_ffff;
/// Aged target of an announcement that may not be used (too young or too old).
pub const UNUSABLE_TARGET: u32 = 0xffff_ffff;

fn two_256() -> BigInt {
    BigInt::from(1u8) << 256
}

/// Compact (nBits) form to a signed big integer.
pub fn compact_to_big(compact: u32) -> BigInt {
    let mut mantissa = compact & 0x007f_ffff;
    let negative = compact & 0x0080_0000 != 0;
    let exponent = compact >> 24;
    let bn = if exponent <= 3 {
        mantissa >>= 8 * (3 - exponent);
        BigInt::from(mantissa)
    } else {
        BigInt::from(mantissa) << (8 * (exponent - 3)) as usize
    };
    if negative {
        -bn
    } else {
        bn
    }
}

/// Big integer to compact (nBits) form (23-bit mantissa, rounded down).
pub fn big_to_compact(n: &BigInt) -> u32 {
    if n.sign() == Sign::NoSign {
        return 0;
    }
    let mag = n.magnitude();
    let mut exponent = mag.to_bytes_be().len() as u32;
    let mut mantissa = if exponent <= 3 {
        (mag.iter_u32_digits().next().unwrap_or(0)) << (8 * (3 - exponent))
    } else {
        let shifted = mag >> (8 * (exponent - 3)) as usize;
        shifted.iter_u32_digits().next().unwrap_or(0)
    };
    if mantissa & 0x0080_0000 != 0 {
        mantissa >>= 8;
        exponent += 1;
    }
    let mut compact = exponent.wrapping_shl(24) | mantissa;
    if n.sign() == Sign::Minus {
        compact |= 0x0080_0000;
    }
    compact
}

/// `floor(2^256 / (target + 1))`; 0 when `target + 1 ≤ 0` (no achievable work).
pub fn work_for_target(target: &BigInt) -> BigInt {
    let t1: BigInt = target + 1u8;
    if t1.sign() != Sign::Plus {
        return BigInt::from(0);
    }
    two_256() / t1
}

/// `floor((2^256 − work) / work)`, or `2^256` for zero work (Go's Euclidean division, which
/// for a positive divisor rounds toward negative infinity).
pub fn target_for_work(work: &BigInt) -> BigInt {
    if work.sign() == Sign::NoSign {
        return two_256();
    }
    let num = two_256() - work;
    let q = &num / work;
    // Go big.Int.Div is Euclidean: adjust truncation toward zero for a negative numerator.
    if num.sign() == Sign::Minus && &q * work != num {
        if work.sign() == Sign::Plus {
            q - 1
        } else {
            q + 1
        }
    } else {
        q
    }
}

/// Whether a 32-byte hash, read as a little-endian 256-bit number, is `≤` the target.
pub fn is_hash_ok(hash: &[u8; 32], target: u32) -> bool {
    let h = BigInt::from_bytes_le(Sign::Plus, hash);
    compact_to_big(target) >= h
}

/// The effective target a block's work hash must meet, given the header `bits`, the
/// coinbase's minimum announcement target, the announcement count and the PcP version.
pub fn effective_target(
    block_bits: u32,
    ann_min_target: u32,
    ann_count: u64,
    pcp_version: u32,
) -> u32 {
    let bw = work_for_target(&compact_to_big(block_bits));
    let aw = work_for_target(&compact_to_big(ann_min_target));
    let work = if aw.sign() == Sign::NoSign || ann_count == 0 {
        two_256() - 1
    } else {
        let mut w = &bw * &bw * &bw;
        let count = BigInt::from(ann_count);
        if pcp_version >= 2 {
            w >>= 10usize;
            w = w / &aw / (&count * &count);
        } else {
            w = w / &aw / &count;
        }
        w
    };
    let t = big_to_compact(&target_for_work(&work));
    t.min(MAX_EFFECTIVE_TARGET)
}

/// The aged target of an announcement with target `target` used `age` blocks after its parent
/// block, in a block with PcP version `pcp_version`; [`UNUSABLE_TARGET`] if it may not be used.
pub fn aged_ann_target(target: u32, age: u32, pcp_version: u32) -> u32 {
    if age < ANN_WAIT_PERIOD {
        return UNUSABLE_TARGET;
    }
    if pcp_version >= 2 {
        if age == ANN_WAIT_PERIOD {
            return target;
        }
        let shift = (age - ANN_WAIT_PERIOD) as usize;
        let t = compact_to_big(target);
        if shift > 256 {
            // Any non-zero target shifted this far exceeds 255 bits; avoid the huge number.
            return if t.sign() == Sign::NoSign {
                0
            } else {
                UNUSABLE_TARGET
            };
        }
        let t = t << shift;
        if t.bits() > 255 {
            return UNUSABLE_TARGET;
        }
        return big_to_compact(&t);
    }
    let t = compact_to_big(target);
    if age == ANN_WAIT_PERIOD {
        return big_to_compact(&t);
    }
    let w = work_for_target(&t) / BigInt::from(age - ANN_WAIT_PERIOD);
    let out = big_to_compact(&target_for_work(&w));
    if out > MAX_EFFECTIVE_TARGET {
        UNUSABLE_TARGET
    } else {
        out
    }
}

/// `IsAnnMinDiffOk`: sanity limits on the coinbase's minimum announcement target.
pub fn is_ann_min_target_ok(target: u32, pcp_version: u32) -> bool {
    let limit = if pcp_version >= 2 {
        MAX_EFFECTIVE_TARGET
    } else {
        0x20ff_ffff
    };
    if target == 0 || target > limit {
        return false;
    }
    let t = compact_to_big(target);
    if pcp_version >= 2 && t.sign() != Sign::Plus {
        return false;
    }
    let w = work_for_target(&t);
    w.sign() == Sign::Plus && w < two_256()
}

/// Largest soft nonce a v1 announcement with `work_bits` may use (about 1024 × its work
/// relative to `0x207fffff`, capped at `2^24 − 1`). A zero mantissa (an unmeetable target)
/// yields 0.
pub fn ann_soft_nonce_max(work_bits: u32) -> u32 {
    let mantissa = work_bits & 0x007f_ffff;
    if mantissa == 0 {
        return 0;
    }
    let log2 = 31 - mantissa.leading_zeros() as i64;
    let bits = 22 - log2 + (0x20 - i64::from(work_bits >> 24)) * 8 + 10;
    if bits >= 24 {
        0x00ff_ffff
    } else {
        let shift = 24 - bits;
        if shift >= 32 {
            0
        } else {
            0x00ff_ffff >> shift
        }
    }
}
