//! Which SIMD code runs: chosen once per process at run time, from what the CPU reports.
//!
//! The lane-parallel code of this crate (the Salsa20 lanes of the legacy box, the ChaCha20
//! lanes of Noise and PacketCrypt, the four-lane Poly1305 of both) is written once, generic
//! over `Simd`. Three levels instantiate it:
//!
//! * [`Level::Portable`]: `wide` vectors, which are SSE2 on the x86-64 baseline and plain
//!   arrays (or NEON) elsewhere, and Poly1305 one block at a time. Every CPU runs it.
//! * [`Level::Avx2`]: 256-bit AVX2 registers (`avx2`).
//! * [`Level::Avx512`]: the same AVX2 code compiled with AVX-512F/VL/DQ enabled as well, which
//!   gives LLVM one-instruction vector rotates (`vprold`), 64-bit multiplies and 32 vector
//!   registers; what a `-C target-cpu=native` build of the AVX2 code gets on such a CPU. The
//!   vectors stay 256 bits wide (see `crate::keystream` on why). It needs Rust 1.89 to
//!   compile (`build.rs` probes for it); older compilers stop at [`Level::Avx2`].
//!
//! [`level`] detects the CPU once and caches the answer in an atomic. `run` hands a
//! `Kernel` (one whole operation: a box sealed, a Poly1305 tag) to a function compiled for
//! that level with `#[target_feature]`, so a plain `cargo build --release` runs the same
//! instructions a native build would. The operation is the unit of dispatch: one predictable
//! branch per packet, never one per block. [`with_level`] caps the level for one thread, so
//! that one build tests (and benchmarks) every path the CPU has.
//!
//! Contract for kernel code: everything a kernel calls that touches vectors, or that should
//! be compiled for the level (loops over the packet), is `#[inline(always)]`, and vectors are
//! built with loops rather than `array::map` or `array::from_fn`, which LLVM may leave out of
//! line. A function that is not inlined into the `#[target_feature]` entry point is compiled
//! for the x86-64 baseline, where the AVX2 intrinsics cannot be inlined: still correct, but
//! many times slower (check with `objdump -d` that no `core_arch` function is called).
//!
//! This module and `avx2` hold all of the crate's `unsafe`: calling the `#[target_feature]`
//! entry points, and the AVX2 intrinsics behind the safe vector types. Both are sound for the
//! same reason: an AVX2 entry point is called, and an `avx2::Avx2` token (without which no
//! AVX2 vector can be made) exists, only once the CPU has been seen to support AVX2.
#![allow(unsafe_code)]

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;

use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// A level of SIMD support: which instantiation of the lane-parallel code runs.
///
/// Ordered: a CPU that runs one level runs every lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Level {
    /// Runs on every CPU: `wide` vectors (SSE2 on x86-64) and one-block Poly1305.
    Portable = 1,
    /// x86-64 with AVX2.
    Avx2 = 2,
    /// x86-64 with AVX2, AVX-512F, AVX-512VL and AVX-512DQ (still 256-bit vectors).
    Avx512 = 3,
}

impl Level {
    fn from_u8(v: u8) -> Self {
        match v {
            3 => Level::Avx512,
            2 => Level::Avx2,
            _ => Level::Portable,
        }
    }
}

/// What the CPU supports; 0 until detected.
static DETECTED: AtomicU8 = AtomicU8::new(0);

thread_local! {
    /// The highest level this thread may use ([`with_level`]).
    static CAP: Cell<Level> = const { Cell::new(Level::Avx512) };
}

/// The highest level this CPU runs (detected on the first call, then cached).
fn detected() -> Level {
    match DETECTED.load(Relaxed) {
        0 => {
            let level = detect();
            DETECTED.store(level as u8, Relaxed);
            level
        }
        v => Level::from_u8(v),
    }
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        #[cfg(has_avx512_target_feature)]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
        {
            return Level::Avx512;
        }
        if is_x86_feature_detected!("avx2") {
            return Level::Avx2;
        }
    }
    Level::Portable
}

/// The level the crypto code of this thread runs at: the highest the CPU supports, capped by
/// [`with_level`].
pub fn level() -> Level {
    detected().min(CAP.with(Cell::get))
}

/// Every level this CPU runs, lowest first.
pub fn levels() -> impl Iterator<Item = Level> {
    [Level::Portable, Level::Avx2, Level::Avx512]
        .into_iter()
        .filter(|l| *l <= detected())
}

/// Runs `f` with this thread's crypto code capped at `max` (the CPU's best if that is lower),
/// so that tests and benchmarks can run every path the CPU has, one after the other, in one
/// build. Every level computes the same bytes.
pub fn with_level<R>(max: Level, f: impl FnOnce() -> R) -> R {
    /// Puts the previous cap back, also when `f` panics.
    struct Restore(Level);
    impl Drop for Restore {
        fn drop(&mut self) {
            CAP.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CAP.with(|c| c.replace(max)));
    f()
}

/// Eight 32-bit lanes: what the Salsa20 and ChaCha20 lanes need.
pub(crate) trait U32x8: Copy {
    /// Lane-wise wrapping addition.
    fn add(self, o: Self) -> Self;
    /// Lane-wise XOR.
    fn xor(self, o: Self) -> Self;
    /// Lane-wise rotation left by `L` bits; `R` must be `32 - L`.
    fn rotl<const L: i32, const R: i32>(self) -> Self;
    /// The eight lanes.
    fn to_array(self) -> [u32; 8];
    /// The eight lanes, little-endian.
    fn to_bytes(self) -> [u8; 32];
    /// `data ^= ` the lanes' bytes over the length of `data` (at most 32 bytes).
    fn xor_into(self, data: &mut [u8]);
    /// Eight blocks of sixteen words given word-major (`words[w]` holds word `w` of the eight
    /// blocks, one lane each) as block-major vectors: `2b` holds words 0–7 of block `b`,
    /// `2b + 1` words 8–15.
    fn transpose_blocks(words: [Self; 16]) -> [Self; 16];
}

/// The vectors and lane counts of one [`Level`]. Values are zero-sized tokens; the AVX2 one
/// exists only where the CPU has AVX2.
pub(crate) trait Simd: Copy {
    /// Eight 32-bit lanes.
    type U32x8: U32x8;
    /// Keystream up to this many bytes (at most two blocks) costs less as single blocks than
    /// as one pass of eight lanes: with AVX2 a lane pass costs less than two blocks, on the
    /// SSE2 baseline about three (docs/perf.md).
    const SCALAR_MAX: usize;
    /// Whether the one-block rounds are inlined into the kernel: with AVX LLVM runs them as
    /// rows of 128-bit vectors; on the baseline they spill there (`crate::keystream`).
    const INLINE_ROUNDS: bool;
    /// All lanes `v`.
    fn splat(self, v: u32) -> Self::U32x8;
    /// Lane `i` is `v[i]`.
    fn u32x8(self, v: [u32; 8]) -> Self::U32x8;
    /// The AVX2 token where this level has AVX2 (for the four-lane Poly1305).
    #[cfg(target_arch = "x86_64")]
    fn avx2(self) -> Option<avx2::Avx2>;
}

/// The level every CPU runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl Simd for Portable {
    type U32x8 = wide::u32x8;
    const SCALAR_MAX: usize = 128;
    const INLINE_ROUNDS: bool = false;

    #[inline(always)]
    fn splat(self, v: u32) -> wide::u32x8 {
        wide::u32x8::splat(v)
    }

    #[inline(always)]
    fn u32x8(self, v: [u32; 8]) -> wide::u32x8 {
        wide::u32x8::new(v)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn avx2(self) -> Option<avx2::Avx2> {
        None
    }
}

impl U32x8 for wide::u32x8 {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self + o
    }

    #[inline(always)]
    fn xor(self, o: Self) -> Self {
        self ^ o
    }

    #[inline(always)]
    fn rotl<const L: i32, const R: i32>(self) -> Self {
        (self << L as u32) | (self >> R as u32)
    }

    #[inline(always)]
    fn to_array(self) -> [u32; 8] {
        wide::u32x8::to_array(self)
    }

    #[inline(always)]
    fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        for (o, w) in b.chunks_exact_mut(4).zip(self.to_array()) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    #[inline(always)]
    fn xor_into(self, data: &mut [u8]) {
        // A whole vector as one: LLVM leaves a byte loop byte by byte here.
        if let Ok(d) = <&mut [u8; 32]>::try_from(&mut *data) {
            let mut w = [0u32; 8];
            for (w, c) in w.iter_mut().zip(d.chunks_exact(4)) {
                *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            for (c, x) in d.chunks_exact_mut(4).zip((Self::new(w) ^ self).to_array()) {
                c.copy_from_slice(&x.to_le_bytes());
            }
            return;
        }
        for (d, k) in data.iter_mut().zip(self.to_bytes()) {
            *d ^= k;
        }
    }

    #[inline(always)]
    fn transpose_blocks(words: [Self; 16]) -> [Self; 16] {
        // Without AVX2 `wide` transposes element by element anyway: gather the words of each
        // block straight from the lanes.
        let mut w = [[0u32; 8]; 16];
        for (w, v) in w.iter_mut().zip(words) {
            *w = v.to_array();
        }
        let mut out = [Self::ZERO; 16];
        for (b, pair) in out.chunks_exact_mut(2).enumerate() {
            for (half, v) in pair.iter_mut().enumerate() {
                let mut block = [0u32; 8];
                for (o, w) in block.iter_mut().zip(&w[8 * half..8 * half + 8]) {
                    *o = w[b];
                }
                *v = Self::new(block);
            }
        }
        out
    }
}

/// One operation written once for every level: [`run`] calls [`Kernel::run`] with the
/// [`Simd`] token of the level, inside a function compiled for it.
pub(crate) trait Kernel {
    /// What the operation returns.
    type Output;
    /// The operation at the level of `simd`. Implementations are `#[inline(always)]`.
    fn run<S: Simd>(self, simd: S) -> Self::Output;
}

/// Runs `kernel` at this thread's [`level`].
#[inline]
pub(crate) fn run<K: Kernel>(kernel: K) -> K::Output {
    #[cfg(target_arch = "x86_64")]
    match level() {
        Level::Portable => {}
        #[cfg(has_avx512_target_feature)]
        // SAFETY: `level()` is `Avx512` only if the CPU reported AVX2, AVX-512F, AVX-512VL and
        // AVX-512DQ, the features `avx2::run_avx512` is compiled for.
        Level::Avx512 => return unsafe { avx2::run_avx512(kernel) },
        // SAFETY: here `level()` is at least `Avx2`, so the CPU reported AVX2, the feature
        // `avx2::run_avx2` is compiled for.
        _ => return unsafe { avx2::run_avx2(kernel) },
    }
    kernel.run(Portable)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests of every kernel run at each of [`levels`]: on a CPU with AVX2 that must
    /// include the AVX2 levels, or the dispatch is untested.
    #[test]
    fn detection_matches_the_cpu() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            levels().any(|l| l == Level::Avx2),
            is_x86_feature_detected!("avx2")
        );
        assert_eq!(levels().next(), Some(Level::Portable));
        assert_eq!(levels().last(), Some(level()));
    }

    #[test]
    fn with_level_caps_this_thread_only_and_restores() {
        let best = level();
        with_level(Level::Portable, || {
            assert_eq!(level(), Level::Portable);
            std::thread::spawn(move || assert_eq!(level(), best))
                .join()
                .unwrap();
            with_level(Level::Avx512, || {
                assert_eq!(level(), Level::Avx512.min(best))
            });
        });
        assert_eq!(level(), best);
    }
}
