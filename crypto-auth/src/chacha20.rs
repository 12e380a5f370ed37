//! ChaCha20 (RFC 8439: 96-bit nonce, 32-bit block counter) on the lanes of
//! [`crate::keystream`], and HChaCha20 (the XChaCha20 subkey).
//!
//! The block function is written twice, as in Salsa20: once over one block's words and once
//! over eight blocks' words as vectors, which [`crate::keystream::Stream`] runs at the level
//! [`crate::cpu`] picked. Tests compare it with the `chacha20` crate and RFC 8439 at every level
//! (`primitives.rs`).

use crate::cpu::U32x8;
use crate::keystream::{Rounds, Stream};

/// "expand 32-byte k".
const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

/// The ChaCha20 block function (20 rounds).
pub(crate) struct ChaCha20;

/// The input block of `key` with words 12–15 (counter and nonce) `tail`.
#[inline(always)]
fn input_block(key: &[u8; 32], tail: [u32; 4]) -> [u32; 16] {
    let mut x = [0u32; 16];
    x[..4].copy_from_slice(&SIGMA);
    for (w, c) in x[4..12].iter_mut().zip(key.chunks_exact(4)) {
        *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    x[12..].copy_from_slice(&tail);
    x
}

/// Little-endian word `i` of `bytes`.
#[inline(always)]
fn word(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([
        bytes[4 * i],
        bytes[4 * i + 1],
        bytes[4 * i + 2],
        bytes[4 * i + 3],
    ])
}

/// The keystream of `key` and `nonce` (block counter in word 12, from 0). The counter has 32
/// bits: a stream must end before block 2^32 (256 GiB), as RFC 8439 requires.
#[inline(always)]
pub(crate) fn stream(key: &[u8; 32], nonce: &[u8; 12]) -> Stream<ChaCha20> {
    let tail = [0, word(nonce, 0), word(nonce, 1), word(nonce, 2)];
    Stream::new(input_block(key, tail))
}

/// HChaCha20(key, input) (draft-irtf-cfrg-xchacha §2.2): the XChaCha20 subkey.
pub(crate) fn hchacha20(key: &[u8; 32], input: &[u8; 16]) -> [u8; 32] {
    let tail = [
        word(input, 0),
        word(input, 1),
        word(input, 2),
        word(input, 3),
    ];
    let mut x = input_block(key, tail);
    ChaCha20::rounds(&mut x);
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(x[..4].iter().chain(&x[12..])) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

impl Rounds for ChaCha20 {
    const COUNTER: usize = 12;
    const COUNTER_HI: Option<usize> = None;

    #[inline(always)]
    fn rounds(x: &mut [u32; 16]) {
        #[inline(always)]
        fn quarter(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
            x[a] = x[a].wrapping_add(x[b]);
            x[d] = (x[d] ^ x[a]).rotate_left(16);
            x[c] = x[c].wrapping_add(x[d]);
            x[b] = (x[b] ^ x[c]).rotate_left(12);
            x[a] = x[a].wrapping_add(x[b]);
            x[d] = (x[d] ^ x[a]).rotate_left(8);
            x[c] = x[c].wrapping_add(x[d]);
            x[b] = (x[b] ^ x[c]).rotate_left(7);
        }
        for _ in 0..10 {
            quarter(x, 0, 4, 8, 12);
            quarter(x, 1, 5, 9, 13);
            quarter(x, 2, 6, 10, 14);
            quarter(x, 3, 7, 11, 15);
            quarter(x, 0, 5, 10, 15);
            quarter(x, 1, 6, 11, 12);
            quarter(x, 2, 7, 8, 13);
            quarter(x, 3, 4, 9, 14);
        }
    }

    /// On locals, so the state stays in registers.
    #[inline(always)]
    fn rounds_lanes<V: U32x8>(s: [V; 16]) -> [V; 16] {
        let [mut x0, mut x1, mut x2, mut x3, mut x4, mut x5, mut x6, mut x7, mut x8, mut x9, mut x10, mut x11, mut x12, mut x13, mut x14, mut x15] =
            s;
        macro_rules! qr {
            ($a:ident, $b:ident, $c:ident, $d:ident) => {
                $a = $a.add($b);
                $d = $d.xor($a).rotl::<16, 16>();
                $c = $c.add($d);
                $b = $b.xor($c).rotl::<12, 20>();
                $a = $a.add($b);
                $d = $d.xor($a).rotl::<8, 24>();
                $c = $c.add($d);
                $b = $b.xor($c).rotl::<7, 25>();
            };
        }
        for _ in 0..10 {
            qr!(x0, x4, x8, x12);
            qr!(x1, x5, x9, x13);
            qr!(x2, x6, x10, x14);
            qr!(x3, x7, x11, x15);
            qr!(x0, x5, x10, x15);
            qr!(x1, x6, x11, x12);
            qr!(x2, x7, x8, x13);
            qr!(x3, x4, x9, x14);
        }
        [
            x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
        ]
    }
}
