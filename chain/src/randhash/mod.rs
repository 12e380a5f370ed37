//! RandHash: the random-program hash that makes PacketCrypt table items expensive to compute.
//!
//! - [`opcodes`]: the 70 opcode numbers and the instruction-word decoders.
//! - [`randgen`]: program generation from a 32-byte seed (RandGen), with its budget rules.
//! - [`interp`]: the interpreter that runs a program over a CryptoCycle state, with the
//!   20000-operation limit.
//!
//! [`Program`] bundles a generated program with the 8 KiB memory it reads (`createProg`).

pub mod interp;
pub mod opcodes;
pub mod randgen;

pub use interp::Interpreter;
pub use randgen::generate;

use crate::hash::hash_expand;

/// Maximum number of instructions in a program.
pub const MAX_INSNS: usize = 2048;
/// Maximum operations per interpreter cycle; a run that exceeds it fails.
pub const MAX_OPS: u32 = 20000;
/// Words of program memory (`progbuf`), 8192 bytes.
pub const PROG_MEMORY_WORDS: usize = 2048;
/// Words visible to one RandHash run through `MEMORY` instructions.
pub const MEMORY_WINDOW_WORDS: usize = 256;

/// Why RandHash rejected a program or a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RandHashError {
    /// RandGen would have emitted more than 2048 instructions.
    #[error("generated program exceeds {MAX_INSNS} instructions")]
    TooBig,
    /// RandGen found no variable frame to draw from (cannot happen for generated programs).
    #[error("program generator ran out of variables")]
    NoVariable,
    /// A run executed more than 20000 operations in one cycle.
    #[error("program run exceeded {MAX_OPS} operations")]
    TooLong,
    /// The program referenced a register or instruction that does not exist.
    #[error("malformed program (bad register, opcode or jump)")]
    Malformed,
}

/// A generated program together with its 2048-word memory (`Announce_createProg`): the memory
/// is `HashExpand(seed, 0, 8192)` with the program words written over its start.
#[derive(Clone)]
pub struct Program {
    insns: Vec<u32>,
    memory: Box<[u32; PROG_MEMORY_WORDS]>,
}

impl core::fmt::Debug for Program {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Program")
            .field("len", &self.insns.len())
            .finish_non_exhaustive()
    }
}

impl Program {
    /// `createProg(seed)`: generate the program for `seed` and build its memory.
    pub fn create(seed: &[u8; 32]) -> Result<Self, RandHashError> {
        let insns = generate(seed)?;
        let mut bytes = vec![0u8; PROG_MEMORY_WORDS * 4];
        hash_expand(&mut bytes, seed, 0);
        let mut memory = Box::new([0u32; PROG_MEMORY_WORDS]);
        for (m, c) in memory.iter_mut().zip(bytes.chunks_exact(4)) {
            *m = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        memory[..insns.len()].copy_from_slice(&insns);
        Ok(Program { insns, memory })
    }

    /// The instruction words.
    pub fn insns(&self) -> &[u32] {
        &self.insns
    }

    /// The 256-word memory window used for item number `item_no` (`progbuf[n mod 1792 ..]`).
    pub fn memory_window(&self, item_no: u64) -> &[u32] {
        let start = (item_no % (PROG_MEMORY_WORDS - MEMORY_WINDOW_WORDS) as u64) as usize;
        &self.memory[start..start + MEMORY_WINDOW_WORDS]
    }
}
