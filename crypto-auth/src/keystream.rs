//! The keystream of a 16-word, 20-round ARX block function (Salsa20 for the legacy box),
//! computed eight blocks at a time.
//!
//! Each of the 16 state words is a [`U32x8`], one lane per block, so every round operation is
//! one vector instruction at every [`crate::cpu`] level (a pair of SSE2 instructions on the
//! x86-64 baseline). The finished blocks are transposed back to block order
//! ([`U32x8::write_blocks`]). Keystream short enough goes one block at a time instead
//! ([`Simd::SCALAR_MAX`]). An AEAD computes the first eight blocks before anything else
//! ([`Stream::first_blocks`]) because block 0 holds its Poly1305 key, then XORs the message with
//! the rest of them and whatever follows ([`Stream::xor`]).
//!
//! Everything here is `#[inline(always)]`: it is compiled into the kernel of each level.

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

    /// One keystream block.
    #[inline(always)]
    pub(crate) fn block(&self, counter: u64) -> [u8; BLOCK] {
        let mut input = self.state;
        input[R::COUNTER] = counter as u32;
        if let Some(hi) = R::COUNTER_HI {
            input[hi] = (counter >> 32) as u32;
        }
        let mut x = input;
        R::rounds(&mut x);
        let mut out = [0u8; BLOCK];
        for ((o, a), b) in out.chunks_exact_mut(4).zip(x).zip(input) {
            o.copy_from_slice(&a.wrapping_add(b).to_le_bytes());
        }
        out
    }

    /// [`LANES`] consecutive keystream blocks starting at `counter`, into `out`.
    #[inline(always)]
    pub(crate) fn blocks<S: Simd>(&self, simd: S, counter: u64, out: &mut [u8; PASS]) {
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
        U32x8::write_blocks(x, out);
    }

    /// Keystream blocks 0–7 as far as the first `len` bytes of the stream need them (block 0
    /// always), all lanes at once unless [`Simd::SCALAR_MAX`] bytes are enough.
    #[inline(always)]
    pub(crate) fn first_blocks<S: Simd>(&self, simd: S, len: usize, out: &mut [u8; PASS]) {
        if len > S::SCALAR_MAX {
            self.blocks(simd, 0, out);
        } else {
            let blocks = len.div_ceil(BLOCK).max(1);
            for (i, part) in out.chunks_exact_mut(BLOCK).take(blocks).enumerate() {
                part.copy_from_slice(&self.block(i as u64));
            }
        }
    }

    /// XORs `buf` with the stream from byte `skip` on; `first` is [`Stream::first_blocks`]
    /// for at least `skip + buf.len()` bytes (or the whole pass).
    #[inline(always)]
    pub(crate) fn xor<S: Simd>(&self, simd: S, buf: &mut [u8], first: &[u8; PASS], skip: usize) {
        let (head, rest) = buf.split_at_mut(buf.len().min(PASS - skip));
        xor(head, &first[skip..]);
        self.xor_from(simd, LANES as u64, rest);
    }

    /// XORs `buf` with the stream from block `counter` on.
    #[inline(always)]
    pub(crate) fn xor_from<S: Simd>(&self, simd: S, mut counter: u64, buf: &mut [u8]) {
        let mut pass = [0u8; PASS];
        for chunk in buf.chunks_mut(PASS) {
            if chunk.len() > S::SCALAR_MAX {
                self.blocks(simd, counter, &mut pass);
                xor(chunk, &pass);
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

/// `data ^= stream` over the length of `data` (`stream` is at least as long).
#[inline(always)]
fn xor(data: &mut [u8], stream: &[u8]) {
    for (d, s) in data.iter_mut().zip(stream) {
        *d ^= s;
    }
}
