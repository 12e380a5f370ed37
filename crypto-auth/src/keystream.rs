//! The keystream of a 16-word, 20-round ARX block function (Salsa20 for the legacy box,
//! ChaCha20 for Noise and PacketCrypt), computed eight blocks at a time.
//!
//! Each of the 16 state words is a [`U32x8`], one lane per block, so every round operation is
//! one vector instruction at every [`crate::cpu`] level (a pair of SSE2 instructions on the
//! x86-64 baseline). The finished blocks are transposed back to block order
//! ([`U32x8::transpose_blocks`]) and stay in vectors: the keystream is a [`Keystream`] of 32-byte
//! vectors that [`xor`] applies to the data. Keystream short enough goes one block at a time
//! instead ([`Simd::SCALAR_MAX`]). An AEAD computes the first eight blocks before anything
//! else ([`Stream::first_blocks`]) because block 0 holds its Poly1305 key, then XORs the
//! message with the rest of them and whatever follows ([`Stream::xor`]).
//!
//! Everything here is `#[inline(always)]`: it is compiled into the kernel of each level. No
//! byte buffer is zeroed, copied or XORed by loops left to LLVM: at the AVX-512 level, with no
//! `-C target-cpu` to tune for, LLVM would do those in 512-bit registers, which costs clock
//! speed and a vector port on Intel CPUs (a native build keeps to 256 bits there); measured,
//! that made the ChaCha20 kernels 9–13 % slower than a native build (docs/perf.md).

use std::marker::PhantomData;

use crate::cpu::{Simd, U32x8};

/// Bytes of one block.
pub(crate) const BLOCK: usize = 64;
/// Blocks of one lane pass.
pub(crate) const LANES: usize = 8;
/// Bytes of one lane pass.
pub(crate) const PASS: usize = BLOCK * LANES;

/// The block function of one cipher.
pub(crate) trait Rounds {
    /// The state word that holds the block counter (its low 32 bits).
    const COUNTER: usize;
    /// The state word that holds the counter's high 32 bits, for a 64-bit counter.
    const COUNTER_HI: Option<usize>;
    /// The 20 rounds over one block, in place.
    fn rounds(x: &mut [u32; 16]);
    /// The 20 rounds over eight blocks at once, one lane each.
    fn rounds_lanes<V: U32x8>(x: [V; 16]) -> [V; 16];
}

/// Keystream in block order, 32 bytes a vector: up to eight blocks (two vectors each).
pub(crate) type Keystream<V> = [V; 2 * LANES];

/// The keystream of one key and nonce under the block function `R`.
pub(crate) struct Stream<R> {
    /// The input state with the block counter at zero.
    state: [u32; 16],
    rounds: PhantomData<R>,
}

impl<R: Rounds> Stream<R> {
    /// The stream whose input block (counter words zero) is `state`.
    #[inline(always)]
    pub(crate) fn new(state: [u32; 16]) -> Self {
        Self {
            state,
            rounds: PhantomData,
        }
    }

    /// One keystream block as two vectors. The rounds run on scalar words.
    #[inline(always)]
    pub(crate) fn block<S: Simd>(&self, simd: S, counter: u64) -> [S::U32x8; 2] {
        let mut input = self.state;
        input[R::COUNTER] = counter as u32;
        if let Some(hi) = R::COUNTER_HI {
            input[hi] = (counter >> 32) as u32;
        }
        let mut x = input;
        if S::INLINE_ROUNDS {
            R::rounds(&mut x);
        } else {
            rounds_apart::<R>(&mut x);
        }
        let half = |w: usize| {
            let mut a = [0u32; 8];
            let mut b = [0u32; 8];
            a.copy_from_slice(&x[w..w + 8]);
            b.copy_from_slice(&input[w..w + 8]);
            simd.u32x8(a).add(simd.u32x8(b))
        };
        [half(0), half(8)]
    }

    /// [`LANES`] consecutive keystream blocks starting at `counter`.
    #[inline(always)]
    pub(crate) fn blocks<S: Simd>(&self, simd: S, counter: u64) -> Keystream<S::U32x8> {
        // Loops rather than `array::map`, which LLVM may leave out of line, compiled for the
        // baseline (see `crate::cpu`).
        let mut input = [simd.splat(0); 16];
        for (i, w) in input.iter_mut().zip(self.state) {
            *i = simd.splat(w);
        }
        let mut lo = [0u32; LANES];
        let mut hi = [0u32; LANES];
        for (lane, (lo, hi)) in lo.iter_mut().zip(&mut hi).enumerate() {
            let c = counter + lane as u64;
            *lo = c as u32;
            *hi = (c >> 32) as u32;
        }
        input[R::COUNTER] = simd.u32x8(lo);
        if let Some(w) = R::COUNTER_HI {
            input[w] = simd.u32x8(hi);
        }
        let mut x = R::rounds_lanes(input);
        for (x, i) in x.iter_mut().zip(input) {
            *x = x.add(i);
        }
        U32x8::transpose_blocks(x)
    }

    /// Keystream blocks 0–7 as far as the first `len` bytes of the stream need them (block 0
    /// always; the vectors past them are unspecified), all lanes at once unless
    /// [`Simd::SCALAR_MAX`] bytes (at most two blocks) are enough.
    #[inline(always)]
    pub(crate) fn first_blocks<S: Simd>(&self, simd: S, len: usize) -> Keystream<S::U32x8> {
        if len > S::SCALAR_MAX {
            return self.blocks(simd, 0);
        }
        let [a, b] = self.block(simd, 0);
        let [c, d] = if len > BLOCK {
            self.block(simd, 1)
        } else {
            [a, b]
        };
        // Filled with copies rather than zeros: LLVM merges stores of constant zeros into
        // 512-bit ones at the AVX-512 level.
        [a, b, c, d, a, b, c, d, a, b, c, d, a, b, c, d]
    }

    /// XORs `buf` with the stream from byte `skip` (a multiple of 32) on; `first` is
    /// [`Stream::first_blocks`] for at least `skip + buf.len()` bytes (or the whole pass).
    #[inline(always)]
    pub(crate) fn xor<S: Simd>(
        &self,
        simd: S,
        buf: &mut [u8],
        first: &Keystream<S::U32x8>,
        skip: usize,
    ) {
        let (head, rest) = buf.split_at_mut(buf.len().min(PASS - skip));
        xor(head, &first[skip / 32..]);
        self.xor_from(simd, LANES as u64, rest);
    }

    /// The sealing half of an AEAD on this stream: XORs `buf` with the stream from byte `skip`
    /// (32 or 64) on and returns the first 32 bytes of block 0, its Poly1305 key, from the
    /// same lane pass.
    #[inline(always)]
    pub(crate) fn xor_after_key<S: Simd>(&self, simd: S, buf: &mut [u8], skip: usize) -> [u8; 32] {
        let first = self.first_blocks(simd, skip + buf.len());
        self.xor(simd, buf, &first, skip);
        first[0].to_bytes()
    }

    /// XORs `buf` with the stream from block `counter` on.
    #[inline(always)]
    pub(crate) fn xor_from<S: Simd>(&self, simd: S, mut counter: u64, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(PASS) {
            if chunk.len() > S::SCALAR_MAX {
                xor(chunk, &self.blocks(simd, counter));
            } else {
                // Short tails: one block at a time is cheaper than all the lanes.
                for (i, part) in chunk.chunks_mut(BLOCK).enumerate() {
                    xor(part, &self.block(simd, counter + i as u64));
                }
            }
            counter += LANES as u64;
        }
    }
}

/// [`Rounds::rounds`] in a function of its own: on the x86-64 baseline the one-block rounds
/// inlined into a whole kernel spill, and took twice the instructions.
#[inline(never)]
fn rounds_apart<R: Rounds>(x: &mut [u32; 16]) {
    R::rounds(x);
}

/// `data ^= keystream` over the length of `data` (at most 32 bytes a vector).
#[inline(always)]
pub(crate) fn xor<V: U32x8>(data: &mut [u8], keystream: &[V]) {
    for (d, k) in data.chunks_mut(32).zip(keystream) {
        k.xor_into(d);
    }
}
