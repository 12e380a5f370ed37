//! AVX2 vectors behind a token, and the `#[target_feature]` entry points of the AVX2 levels.
//!
//! Soundness: every intrinsic here needs a CPU with AVX2. An [`Avx2`] token is made only in
//! [`run_avx2`] and [`run_avx512`], which [`super::run`] calls only once the CPU has reported
//! AVX2; the vector types have private fields and are made only through a token, and the free
//! functions of this module are called only from their methods. So whenever any of this code
//! runs, the CPU has AVX2.

use core::arch::x86_64::{
    __m256i, _mm256_add_epi32, _mm256_add_epi64, _mm256_and_si256, _mm256_loadu_si256,
    _mm256_mul_epu32, _mm256_or_si256, _mm256_permute2x128_si256, _mm256_set1_epi32,
    _mm256_set1_epi64x, _mm256_slli_epi32, _mm256_slli_epi64, _mm256_srli_epi32, _mm256_srli_epi64,
    _mm256_storeu_si256, _mm256_unpackhi_epi32, _mm256_unpackhi_epi64, _mm256_unpacklo_epi32,
    _mm256_unpacklo_epi64, _mm256_xor_si256,
};

use super::{Kernel, Simd};

/// Proof that the CPU has AVX2 (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

/// Runs `kernel` with AVX2 code.
///
/// # Safety
/// The CPU must support AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn run_avx2<K: Kernel>(kernel: K) -> K::Output {
    kernel.run(Avx2(()))
}

/// Runs `kernel` with the AVX2 code compiled for AVX-512F/VL/DQ as well (rotates, 64-bit
/// multiplies, 32 registers).
///
/// # Safety
/// The CPU must support AVX2, AVX-512F, AVX-512VL and AVX-512DQ.
#[cfg(has_avx512_target_feature)]
#[target_feature(enable = "avx2,avx512f,avx512vl,avx512dq")]
pub(super) unsafe fn run_avx512<K: Kernel>(kernel: K) -> K::Output {
    kernel.run(Avx2(()))
}

/// Eight 32-bit lanes in one AVX2 register.
#[derive(Clone, Copy)]
pub(crate) struct U32x8(__m256i);

/// Four 64-bit lanes in one AVX2 register.
#[derive(Clone, Copy)]
pub(crate) struct U64x4(__m256i);

#[inline(always)]
fn load(bytes: &[u8; 32]) -> __m256i {
    // SAFETY: AVX2 is present (module docs); the pointer covers the 32 readable bytes of
    // `bytes`, and `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

#[inline(always)]
fn store(v: __m256i, out: &mut [u8; 32]) {
    // SAFETY: AVX2 is present (module docs); the pointer covers the 32 writable bytes of
    // `out`, and `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) }
}

/// Calls one AVX2 intrinsic on register (and constant) arguments: no pointers.
macro_rules! avx2 {
    ($f:ident $(::<$n:tt>)? ($($a:expr),*)) => {
        // SAFETY: AVX2 is present (module docs), and an intrinsic that only computes on
        // registers has no other requirement.
        unsafe { $f $(::<$n>)? ($($a),*) }
    };
}

/// The rows of an 8×8 matrix of 32-bit words as its columns.
#[inline(always)]
fn transpose(r: [__m256i; 8]) -> [__m256i; 8] {
    let lo32 = |a, b| avx2!(_mm256_unpacklo_epi32(a, b));
    let hi32 = |a, b| avx2!(_mm256_unpackhi_epi32(a, b));
    let lo64 = |a, b| avx2!(_mm256_unpacklo_epi64(a, b));
    let hi64 = |a, b| avx2!(_mm256_unpackhi_epi64(a, b));
    // Within each 128-bit half: pairs of rows interleaved, then quads.
    let t = [
        lo32(r[0], r[1]),
        hi32(r[0], r[1]),
        lo32(r[2], r[3]),
        hi32(r[2], r[3]),
        lo32(r[4], r[5]),
        hi32(r[4], r[5]),
        lo32(r[6], r[7]),
        hi32(r[6], r[7]),
    ];
    // u[k] holds column k of rows 0–3 (low half) and column k + 4 (high half); u[4 + k] the
    // same for rows 4–7.
    let u = [
        lo64(t[0], t[2]),
        hi64(t[0], t[2]),
        lo64(t[1], t[3]),
        hi64(t[1], t[3]),
        lo64(t[4], t[6]),
        hi64(t[4], t[6]),
        lo64(t[5], t[7]),
        hi64(t[5], t[7]),
    ];
    let low = |a, b| avx2!(_mm256_permute2x128_si256::<0x20>(a, b));
    let high = |a, b| avx2!(_mm256_permute2x128_si256::<0x31>(a, b));
    [
        low(u[0], u[4]),
        low(u[1], u[5]),
        low(u[2], u[6]),
        low(u[3], u[7]),
        high(u[0], u[4]),
        high(u[1], u[5]),
        high(u[2], u[6]),
        high(u[3], u[7]),
    ]
}

impl Simd for Avx2 {
    type U32x8 = U32x8;
    const SCALAR_MAX: usize = 64;
    const INLINE_ROUNDS: bool = true;

    #[inline(always)]
    fn splat(self, v: u32) -> U32x8 {
        U32x8(avx2!(_mm256_set1_epi32(v as i32)))
    }

    #[inline(always)]
    fn u32x8(self, v: [u32; 8]) -> U32x8 {
        let mut b = [0u8; 32];
        for (o, w) in b.chunks_exact_mut(4).zip(v) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        U32x8(load(&b))
    }

    #[inline(always)]
    fn avx2(self) -> Option<Avx2> {
        Some(self)
    }
}

impl super::U32x8 for U32x8 {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        Self(avx2!(_mm256_add_epi32(self.0, o.0)))
    }

    #[inline(always)]
    fn xor(self, o: Self) -> Self {
        Self(avx2!(_mm256_xor_si256(self.0, o.0)))
    }

    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        let l = avx2!(_mm256_slli_epi32::<L>(self.0));
        let r = avx2!(_mm256_srli_epi32::<R>(self.0));
        Self(avx2!(_mm256_or_si256(l, r)))
    }

    #[inline(always)]
    fn to_array(self) -> [u32; 8] {
        let mut b = [0u8; 32];
        store(self.0, &mut b);
        let mut v = [0u32; 8];
        for (w, c) in v.iter_mut().zip(b.chunks_exact(4)) {
            *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        v
    }

    #[inline(always)]
    fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        store(self.0, &mut b);
        b
    }

    /// One register where `data` has all 32 bytes; else byte by byte (a loop LLVM would widen
    /// to 512-bit registers at the AVX-512 level if it were longer).
    #[inline(always)]
    fn xor_into(self, data: &mut [u8]) {
        match <&mut [u8; 32]>::try_from(&mut *data) {
            Ok(d) => store(avx2!(_mm256_xor_si256(load(d), self.0)), d),
            Err(_) => {
                for (d, k) in data.iter_mut().zip(self.to_bytes()) {
                    *d ^= k;
                }
            }
        }
    }

    #[inline(always)]
    fn transpose_blocks(words: [Self; 16]) -> [Self; 16] {
        let w = |i: usize| words[i].0;
        let low = transpose([w(0), w(1), w(2), w(3), w(4), w(5), w(6), w(7)]);
        let high = transpose([w(8), w(9), w(10), w(11), w(12), w(13), w(14), w(15)]);
        let mut out = [Self(low[0]); 16];
        for (b, (lo, hi)) in low.into_iter().zip(high).enumerate() {
            out[2 * b] = Self(lo);
            out[2 * b + 1] = Self(hi);
        }
        out
    }
}

impl Avx2 {
    /// All lanes `v`.
    #[inline(always)]
    pub(crate) fn splat64(self, v: u64) -> U64x4 {
        U64x4(avx2!(_mm256_set1_epi64x(v as i64)))
    }

    /// Lane `i` is `v[i]`.
    #[inline(always)]
    pub(crate) fn u64x4(self, v: [u64; 4]) -> U64x4 {
        let mut b = [0u8; 32];
        for (o, w) in b.chunks_exact_mut(8).zip(v) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        U64x4(load(&b))
    }

    /// 32 bytes as four little-endian 64-bit lanes.
    #[inline(always)]
    pub(crate) fn load64(self, bytes: &[u8; 32]) -> U64x4 {
        U64x4(load(bytes))
    }
}

impl U64x4 {
    /// Lane-wise wrapping addition.
    #[inline(always)]
    pub(crate) fn add(self, o: Self) -> Self {
        Self(avx2!(_mm256_add_epi64(self.0, o.0)))
    }

    /// Lane-wise AND.
    #[inline(always)]
    pub(crate) fn and(self, o: Self) -> Self {
        Self(avx2!(_mm256_and_si256(self.0, o.0)))
    }

    /// Lane-wise OR.
    #[inline(always)]
    pub(crate) fn or(self, o: Self) -> Self {
        Self(avx2!(_mm256_or_si256(self.0, o.0)))
    }

    /// The 64-bit products of the low 32 bits of each lane (`vpmuludq`).
    #[inline(always)]
    pub(crate) fn mul32(self, o: Self) -> Self {
        Self(avx2!(_mm256_mul_epu32(self.0, o.0)))
    }

    /// Lane-wise shift left by `N` bits.
    #[inline(always)]
    pub(crate) fn shl<const N: i32>(self) -> Self {
        Self(avx2!(_mm256_slli_epi64::<N>(self.0)))
    }

    /// Lane-wise logical shift right by `N` bits.
    #[inline(always)]
    pub(crate) fn shr<const N: i32>(self) -> Self {
        Self(avx2!(_mm256_srli_epi64::<N>(self.0)))
    }

    /// Lanes 0 and 2 of `self` and `o`, interleaved within each 128-bit half:
    /// `[self[0], o[0], self[2], o[2]]`.
    #[inline(always)]
    pub(crate) fn unpack_lo(self, o: Self) -> Self {
        Self(avx2!(_mm256_unpacklo_epi64(self.0, o.0)))
    }

    /// `[self[1], o[1], self[3], o[3]]`.
    #[inline(always)]
    pub(crate) fn unpack_hi(self, o: Self) -> Self {
        Self(avx2!(_mm256_unpackhi_epi64(self.0, o.0)))
    }

    /// The four lanes.
    #[inline(always)]
    pub(crate) fn to_array(self) -> [u64; 4] {
        let mut b = [0u8; 32];
        store(self.0, &mut b);
        let mut v = [0u64; 4];
        for (w, c) in v.iter_mut().zip(b.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(c);
            *w = u64::from_le_bytes(le);
        }
        v
    }
}
