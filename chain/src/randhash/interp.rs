//! The RandHash interpreter (normative; the reference also has a JIT with the same results).
//!
//! A run reads `hash_in`, adds its outputs into `hash_out` (two 256-word halves of a
//! CryptoCycle state) and reads a 256-word memory window. Registers index a single stack that
//! also holds scope markers, exactly as the generator laid them out. Each cycle may execute at
//! most [`MAX_OPS`] operations. An [`Interpreter`] keeps its stacks between runs so that
//! repeated runs do not allocate.

use super::opcodes::{self as oc, imm64};
use super::{RandHashError, MAX_OPS};

const SCOPE_MARKER: u32 = u32::MAX;
const INOUT_WORDS: usize = 256;

/// Reusable interpreter context (register stack and scope stack).
#[derive(Debug, Default, Clone)]
pub struct Interpreter {
    stack: Vec<u32>,
    scopes: Vec<u32>,
    var_count: u32,
    op_ctr: u32,
    loop_cycle: u32,
    hash_ctr: usize,
}

struct Run<'a> {
    prog: &'a [u32],
    memory: &'a [u32],
    hash_in: &'a [u32; INOUT_WORDS],
    hash_out: &'a mut [u32; INOUT_WORDS],
}

#[inline]
fn lanes8(a: u32, b: u32, f: impl Fn(u8, u8) -> u8) -> u32 {
    let mut out = 0u32;
    for k in 0..4 {
        out |= u32::from(f((a >> (8 * k)) as u8, (b >> (8 * k)) as u8)) << (8 * k);
    }
    out
}

#[inline]
fn lanes16(a: u32, b: u32, f: impl Fn(u16, u16) -> u16) -> u32 {
    u32::from(f(a as u16, b as u16)) | u32::from(f((a >> 16) as u16, (b >> 16) as u16)) << 16
}

#[inline]
fn lanes8c(a: u32, b: u32, f: impl Fn(u8, u8) -> u16) -> u64 {
    let mut out = 0u64;
    for k in 0..4 {
        out |= u64::from(f((a >> (8 * k)) as u8, (b >> (8 * k)) as u8)) << (16 * k);
    }
    out
}

#[inline]
fn lanes16c(a: u32, b: u32, f: impl Fn(u16, u16) -> u32) -> u64 {
    u64::from(f(a as u16, b as u16)) | u64::from(f((a >> 16) as u16, (b >> 16) as u16)) << 32
}

fn op_1_1(code: u8, a: u32) -> u32 {
    match code {
        oc::POPCNT8 => lanes8(a, 0, |x, _| x.count_ones() as u8),
        oc::POPCNT16 => lanes16(a, 0, |x, _| x.count_ones() as u16),
        oc::POPCNT32 => a.count_ones(),
        oc::CLZ8 => lanes8(a, 0, |x, _| x.leading_zeros() as u8),
        oc::CLZ16 => lanes16(a, 0, |x, _| x.leading_zeros() as u16),
        oc::CLZ32 => a.leading_zeros(),
        oc::CTZ8 => lanes8(a, 0, |x, _| x.trailing_zeros() as u8),
        oc::CTZ16 => lanes16(a, 0, |x, _| x.trailing_zeros() as u16),
        oc::CTZ32 => a.trailing_zeros(),
        oc::BSWAP16 => lanes16(a, 0, |x, _| x.swap_bytes()),
        _ => a.swap_bytes(), // BSWAP32
    }
}

fn op_2_1(code: u8, a: u32, b: u32) -> u32 {
    match code {
        oc::ADD8 => lanes8(a, b, u8::wrapping_add),
        oc::ADD16 => lanes16(a, b, u16::wrapping_add),
        oc::ADD32 => a.wrapping_add(b),
        oc::SUB8 => lanes8(a, b, u8::wrapping_sub),
        oc::SUB16 => lanes16(a, b, u16::wrapping_sub),
        oc::SUB32 => a.wrapping_sub(b),
        oc::SHLL8 => lanes8(a, b, |x, y| x << (y & 7)),
        oc::SHLL16 => lanes16(a, b, |x, y| x << (y & 15)),
        oc::SHLL32 => a << (b & 31),
        oc::SHRL8 => lanes8(a, b, |x, y| x >> (y & 7)),
        oc::SHRL16 => lanes16(a, b, |x, y| x >> (y & 15)),
        oc::SHRL32 => a >> (b & 31),
        oc::SHRA8 => lanes8(a, b, |x, y| ((x as i8) >> (y & 7)) as u8),
        oc::SHRA16 => lanes16(a, b, |x, y| ((x as i16) >> (y & 15)) as u16),
        oc::SHRA32 => ((a as i32) >> (b & 31)) as u32,
        oc::ROTL8 => lanes8(a, b, |x, y| x.rotate_left(u32::from(y & 7))),
        oc::ROTL16 => lanes16(a, b, |x, y| x.rotate_left(u32::from(y & 15))),
        oc::ROTL32 => a.rotate_left(b & 31),
        oc::MUL8 => lanes8(a, b, u8::wrapping_mul),
        oc::MUL16 => lanes16(a, b, u16::wrapping_mul),
        oc::MUL32 => a.wrapping_mul(b),
        oc::AND => a & b,
        oc::OR => a | b,
        _ => a ^ b, // XOR
    }
}

fn op_2_2(code: u8, a: u32, b: u32) -> u64 {
    match code {
        oc::ADD8C => lanes8c(a, b, |x, y| u16::from(x) + u16::from(y)),
        oc::ADD16C => lanes16c(a, b, |x, y| u32::from(x) + u32::from(y)),
        oc::ADD32C => u64::from(a) + u64::from(b),
        oc::SUB8C => lanes8c(a, b, |x, y| u16::from(x).wrapping_sub(u16::from(y))),
        oc::SUB16C => lanes16c(a, b, |x, y| u32::from(x).wrapping_sub(u32::from(y))),
        oc::SUB32C => u64::from(a).wrapping_sub(u64::from(b)),
        oc::MUL8C => lanes8c(a, b, |x, y| {
            (i16::from(x as i8) * i16::from(y as i8)) as u16
        }),
        oc::MUL16C => lanes16c(a, b, |x, y| {
            (i32::from(x as i16) * i32::from(y as i16)) as u32
        }),
        oc::MUL32C => (i64::from(a as i32) * i64::from(b as i32)) as u64,
        oc::MULSU8C => lanes8c(a, b, |x, y| (i16::from(x as i8) * i16::from(y)) as u16),
        oc::MULSU16C => lanes16c(a, b, |x, y| (i32::from(x as i16) * i32::from(y)) as u32),
        oc::MULSU32C => (i64::from(a as i32) * i64::from(b)) as u64,
        oc::MULU8C => lanes8c(a, b, |x, y| u16::from(x) * u16::from(y)),
        oc::MULU16C => lanes16c(a, b, |x, y| u32::from(x) * u32::from(y)),
        _ => u64::from(a) * u64::from(b), // MULU32C
    }
}

fn op_4_2(code: u8, a: u64, b: u64) -> u64 {
    match code {
        oc::ADD64 => a.wrapping_add(b),
        oc::SUB64 => a.wrapping_sub(b),
        oc::SHLL64 => a << (b & 63),
        oc::SHRL64 => a >> (b & 63),
        oc::SHRA64 => ((a as i64) >> (b & 63)) as u64,
        oc::ROTL64 => a.rotate_left((b & 63) as u32),
        oc::ROTR64 => a.rotate_right((b & 63) as u32),
        _ => a.wrapping_mul(b), // MUL64
    }
}

fn op_4_4(code: u8, a: u64, b: u64) -> u128 {
    match code {
        oc::ADD64C => {
            let r = a.wrapping_add(b);
            u128::from(r) | u128::from(r < b) << 64
        }
        oc::SUB64C => {
            let r = a.wrapping_sub(b);
            let hi = if a < b { u64::MAX } else { 0 };
            u128::from(r) | u128::from(hi) << 64
        }
        oc::MUL64C => (i128::from(a as i64) * i128::from(b as i64)) as u128,
        oc::MULSU64C => (i128::from(a as i64) * i128::from(b)) as u128,
        _ => u128::from(a) * u128::from(b), // MULU64C
    }
}

impl Interpreter {
    /// A fresh interpreter.
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn reg(&self, idx: usize) -> Result<u32, RandHashError> {
        self.stack.get(idx).copied().ok_or(RandHashError::Malformed)
    }

    #[inline]
    fn reg64(&self, idx: usize) -> Result<u64, RandHashError> {
        let lo = self.reg(idx.checked_sub(1).ok_or(RandHashError::Malformed)?)?;
        let hi = self.reg(idx)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    #[inline]
    fn push(&mut self, v: u32) {
        self.stack.push(v);
        self.var_count += 1;
    }

    /// Runs `prog` for `cycles` cycles over `state` (two 256-word halves, in then out, swapped
    /// after every cycle) reading `memory` (256 words).
    pub fn run(
        &mut self,
        prog: &[u32],
        memory: &[u32],
        state: &mut [[u32; INOUT_WORDS]; 2],
        cycles: u32,
    ) -> Result<(), RandHashError> {
        if memory.len() < INOUT_WORDS || prog.is_empty() {
            return Err(RandHashError::Malformed);
        }
        self.stack.clear();
        self.scopes.clear();
        self.var_count = 0;
        self.loop_cycle = 0;
        self.hash_ctr = 0;
        let mut in_idx = 0;
        for _ in 0..cycles {
            self.op_ctr = 0;
            let (first, second) = state.split_at_mut(1);
            let (hash_in, hash_out) = if in_idx == 0 {
                (&first[0], &mut second[0])
            } else {
                (&second[0], &mut first[0])
            };
            let mut run = Run {
                prog,
                memory,
                hash_in,
                hash_out,
            };
            self.interpret(&mut run, 0)?;
            if self.op_ctr > MAX_OPS {
                return Err(RandHashError::TooLong);
            }
            self.hash_ctr = 0;
            in_idx ^= 1;
        }
        Ok(())
    }

    fn interpret(&mut self, run: &mut Run<'_>, mut pc: usize) -> Result<usize, RandHashError> {
        if pc != 0 {
            self.stack.push(SCOPE_MARKER);
            self.scopes.push(self.var_count);
            self.var_count = 0;
        }
        loop {
            self.op_ctr += 1;
            if self.op_ctr > MAX_OPS {
                return Err(RandHashError::TooLong);
            }
            let insn = *run.prog.get(pc).ok_or(RandHashError::Malformed)?;
            let code = oc::op(insn);
            match code {
                oc::POPCNT8..=oc::BSWAP32 => {
                    let a = self.reg(oc::reg_a(insn))?;
                    self.push(op_1_1(code, a));
                }
                oc::ADD8..=oc::XOR => {
                    let a = self.reg(oc::reg_a(insn))?;
                    let b = if oc::has_imm(insn) {
                        imm64(insn) as u32
                    } else {
                        self.reg(oc::reg_b(insn))?
                    };
                    self.push(op_2_1(code, a, b));
                }
                oc::ADD8C..=oc::MULU32C => {
                    let a = self.reg(oc::reg_a(insn))?;
                    let b = if oc::has_imm(insn) {
                        imm64(insn) as u32
                    } else {
                        self.reg(oc::reg_b(insn))?
                    };
                    let r = op_2_2(code, a, b);
                    self.push(r as u32);
                    self.push((r >> 32) as u32);
                }
                oc::ADD64..=oc::MUL64 => {
                    let a = self.reg64(oc::reg_a(insn))?;
                    let b = if oc::has_imm(insn) {
                        imm64(insn)
                    } else {
                        self.reg64(oc::reg_b(insn))?
                    };
                    let r = op_4_2(code, a, b);
                    self.push(r as u32);
                    self.push((r >> 32) as u32);
                }
                oc::ADD64C..=oc::MULU64C => {
                    let a = self.reg64(oc::reg_a(insn))?;
                    let b = if oc::has_imm(insn) {
                        imm64(insn)
                    } else {
                        self.reg64(oc::reg_b(insn))?
                    };
                    let r = op_4_4(code, a, b);
                    for k in 0..4 {
                        self.push((r >> (32 * k)) as u32);
                    }
                }
                oc::IN => {
                    let idx = (imm64(insn) as u32 as usize) % INOUT_WORDS;
                    self.push(run.hash_in[idx]);
                }
                oc::MEMORY => {
                    let idx = oc::mem_base(insn).wrapping_add(
                        self.loop_cycle
                            .wrapping_add(oc::mem_carry(insn))
                            .wrapping_mul(oc::mem_step(insn)),
                    ) as usize
                        % INOUT_WORDS;
                    self.push(run.memory[idx]);
                }
                oc::LOOP => {
                    let count = imm64(insn) as i64;
                    let mut ret = pc;
                    for i in 0..count.max(0) {
                        self.loop_cycle = i as u32;
                        ret = self.interpret(run, pc + 1)?;
                    }
                    pc = ret;
                    if pc + 1 == run.prog.len() {
                        return Ok(pc);
                    }
                }
                oc::IF_LIKELY | oc::IF_RANDOM => {
                    let mask = if code == oc::IF_LIKELY { 7 } else { 1 };
                    let cond = self.reg(oc::reg_a(insn))? & mask != 0;
                    if imm64(insn) != 2 {
                        return Err(RandHashError::Malformed);
                    }
                    pc = if cond {
                        self.interpret(run, pc + 2)?
                    } else {
                        self.interpret(run, pc + 1)?
                    };
                }
                oc::JMP => {
                    pc += (insn >> 8) as usize;
                }
                oc::END => {
                    let n = self.var_count as usize;
                    let start = self
                        .stack
                        .len()
                        .checked_sub(n)
                        .ok_or(RandHashError::Malformed)?;
                    for &v in &self.stack[start..] {
                        let slot = &mut run.hash_out[self.hash_ctr];
                        *slot = slot.wrapping_add(v);
                        self.hash_ctr = (self.hash_ctr + 1) % INOUT_WORDS;
                    }
                    self.stack.truncate(start);
                    if self.stack.pop() != Some(SCOPE_MARKER) {
                        return Err(RandHashError::Malformed);
                    }
                    self.var_count = self.scopes.pop().ok_or(RandHashError::Malformed)?;
                    return Ok(pc);
                }
                _ => return Err(RandHashError::Malformed),
            }
            pc += 1;
        }
    }
}
