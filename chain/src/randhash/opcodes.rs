//! Opcode numbers and instruction-word decoding for RandHash programs.
//!
//! Encodings: normal op `[0,8)` opcode, `[9,18)` regA, bit 18 has-immediate, `[20,29)` regB;
//! immediate ops carry a 12-bit immediate in `[20,32)` with bit 19 selecting the "pattern"
//! form; `JMP` has a 24-bit forward offset in `[8,32)`; `MEMORY` has carry `[9,13)`, step
//! `[13,17)` and base `[17,32)`.

#![allow(missing_docs)]

pub const POPCNT8: u8 = 1;
pub const POPCNT16: u8 = 2;
pub const POPCNT32: u8 = 3;
pub const CLZ8: u8 = 4;
pub const CLZ16: u8 = 5;
pub const CLZ32: u8 = 6;
pub const CTZ8: u8 = 7;
pub const CTZ16: u8 = 8;
pub const CTZ32: u8 = 9;
pub const BSWAP16: u8 = 10;
pub const BSWAP32: u8 = 11;

pub const ADD8: u8 = 12;
pub const ADD16: u8 = 13;
pub const ADD32: u8 = 14;
pub const SUB8: u8 = 15;
pub const SUB16: u8 = 16;
pub const SUB32: u8 = 17;
pub const SHLL8: u8 = 18;
pub const SHLL16: u8 = 19;
pub const SHLL32: u8 = 20;
pub const SHRL8: u8 = 21;
pub const SHRL16: u8 = 22;
pub const SHRL32: u8 = 23;
pub const SHRA8: u8 = 24;
pub const SHRA16: u8 = 25;
pub const SHRA32: u8 = 26;
pub const ROTL8: u8 = 27;
pub const ROTL16: u8 = 28;
pub const ROTL32: u8 = 29;
pub const MUL8: u8 = 30;
pub const MUL16: u8 = 31;
pub const MUL32: u8 = 32;
pub const AND: u8 = 33;
pub const OR: u8 = 34;
pub const XOR: u8 = 35;

pub const ADD8C: u8 = 36;
pub const ADD16C: u8 = 37;
pub const ADD32C: u8 = 38;
pub const SUB8C: u8 = 39;
pub const SUB16C: u8 = 40;
pub const SUB32C: u8 = 41;
pub const MUL8C: u8 = 42;
pub const MUL16C: u8 = 43;
pub const MUL32C: u8 = 44;
pub const MULSU8C: u8 = 45;
pub const MULSU16C: u8 = 46;
pub const MULSU32C: u8 = 47;
pub const MULU8C: u8 = 48;
pub const MULU16C: u8 = 49;
pub const MULU32C: u8 = 50;

pub const ADD64: u8 = 51;
pub const SUB64: u8 = 52;
pub const SHLL64: u8 = 53;
pub const SHRL64: u8 = 54;
pub const SHRA64: u8 = 55;
pub const ROTL64: u8 = 56;
pub const ROTR64: u8 = 57;
pub const MUL64: u8 = 58;

pub const ADD64C: u8 = 59;
pub const SUB64C: u8 = 60;
pub const MUL64C: u8 = 61;
pub const MULSU64C: u8 = 62;
pub const MULU64C: u8 = 63;

pub const IN: u8 = 64;
pub const MEMORY: u8 = 65;
pub const LOOP: u8 = 66;
pub const IF_LIKELY: u8 = 67;
pub const IF_RANDOM: u8 = 68;
pub const JMP: u8 = 69;
pub const END: u8 = 70;

/// Opcodes of type 1_1 (one input word, one output word), in generator order.
pub const CODES_1_1: [u8; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
/// Opcodes of type 2_1 (two input words, one output word).
pub const CODES_2_1: [u8; 24] = [
    12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
];
/// Opcodes of type 2_2 (two input words, a double-width result).
pub const CODES_2_2: [u8; 15] = [36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50];
/// Opcodes of type 4_2 (64-bit operands, 64-bit result).
pub const CODES_4_2: [u8; 8] = [51, 52, 53, 54, 55, 56, 57, 58];
/// Opcodes of type 4_4 (64-bit operands, 128-bit result).
pub const CODES_4_4: [u8; 5] = [59, 60, 61, 62, 63];

/// The opcode byte.
#[inline]
pub fn op(insn: u32) -> u8 {
    insn as u8
}
/// Register A index.
#[inline]
pub fn reg_a(insn: u32) -> usize {
    (insn >> 9 & 0x1ff) as usize
}
/// Register B index.
#[inline]
pub fn reg_b(insn: u32) -> usize {
    (insn >> 20 & 0x1ff) as usize
}
/// Whether operand B is the immediate.
#[inline]
pub fn has_imm(insn: u32) -> bool {
    insn >> 18 & 1 == 1
}
/// MEMORY carry field.
#[inline]
pub fn mem_carry(insn: u32) -> u32 {
    insn >> 9 & 15
}
/// MEMORY step field.
#[inline]
pub fn mem_step(insn: u32) -> u32 {
    insn >> 13 & 15
}
/// MEMORY base field.
#[inline]
pub fn mem_base(insn: u32) -> u32 {
    insn >> 17
}

/// The 64-bit immediate: sign-extended 12-bit field, or the "pattern" form when bit 19 is set.
#[inline]
pub fn imm64(insn: u32) -> u64 {
    if insn >> 19 & 1 == 1 {
        let imm = insn >> 20;
        let a = imm & 31;
        let b = imm >> 5 & 31;
        let i = imm >> 10 & 1;
        let s = imm >> 11 & 1;
        let base: u64 = if i == 1 { u64::MAX >> 1 } else { u64::MAX };
        (base ^ (1u64 << b) ^ (1u64 << a)) | u64::from(s) << 63
    } else {
        ((insn as i32) >> 20) as i64 as u64
    }
}
