//! RandGen: deterministic generation of a RandHash program from a 32-byte seed.
//!
//! The generator spends a budget (20000 at the top level) on operations, inputs, branches and
//! loops, drawing every choice from `HashExpand(seed, ctr, 64)` blocks. The exact order of the
//! random draws is consensus: it is reproduced here step by step.

use super::opcodes::{self, CODES_1_1, CODES_2_1, CODES_2_2, CODES_4_2, CODES_4_4};
use super::{RandHashError, MAX_INSNS};
use crate::hash::hash_expand;

const INITIAL_BUDGET: u32 = 20000;
const MEMORY_COST: u32 = 20;
const INPUT_COST: u32 = 2;
const BRANCH_COST: u32 = 50;
const HIGHER_SCOPE_ONE_IN: u32 = 4;
const VAR_REUSE_ONE_IN: u32 = 8;
const IMMEDIATE_ONE_IN: u32 = 4;
const RANDOM_BRANCH_ONE_IN: u32 = 2;
const SCOPE_MARKER: u32 = u32::MAX;

#[derive(Clone, Copy)]
enum OpType {
    T11,
    T21,
    T22,
    T42,
    T44,
}

impl OpType {
    fn cost(self) -> u32 {
        match self {
            OpType::T11 => 1,
            OpType::T21 => 2,
            OpType::T22 => 4,
            OpType::T42 => 8,
            OpType::T44 => 16,
        }
    }
}

struct Gen {
    seed: [u8; 32],
    block: [u32; 16],
    next: usize,
    ctr: u32,
    insns: Vec<u32>,
    vars: Vec<u32>,
    scope: u32,
    too_big: bool,
    broken: bool,
}

impl Gen {
    fn randu32(&mut self) -> u32 {
        if self.next >= 16 {
            let mut buf = [0u8; 64];
            hash_expand(&mut buf, &self.seed, self.ctr);
            self.ctr = self.ctr.wrapping_add(1);
            for (w, c) in self.block.iter_mut().zip(buf.chunks_exact(4)) {
                *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            self.next = 0;
        }
        let v = self.block[self.next];
        self.next += 1;
        v
    }

    fn cointoss(&mut self, one_in: u32) -> bool {
        self.randu32() % one_in.max(1) == 0
    }

    fn rand_range(&mut self, start: u32, end: u32) -> u32 {
        self.randu32() % (end - start).max(1) + start
    }

    fn emit(&mut self, insn: u32) {
        if self.insns.len() >= MAX_INSNS {
            self.too_big = true;
            return;
        }
        self.insns.push(insn);
    }

    fn open_scope(&mut self) {
        self.scope += 1;
        self.vars.push(SCOPE_MARKER);
    }

    fn close_scope(&mut self) {
        self.emit(u32::from(opcodes::END));
        self.scope = self.scope.saturating_sub(1);
        while let Some(v) = self.vars.pop() {
            if v == SCOPE_MARKER {
                break;
            }
        }
    }

    fn mk_var(&mut self) {
        self.vars.push(0);
    }

    fn get_var(&mut self, dbl: bool) -> u32 {
        let need = if dbl { 2 } else { 1 };
        let mut eof = self.vars.len() as isize;
        let mut bof = eof - 1;
        while bof >= 0 {
            if self.vars[bof as usize] != SCOPE_MARKER {
                bof -= 1;
                continue;
            }
            let frame_vars = eof - bof - 1;
            // A frame with enough variables is used unless a 1-in-4 toss moves up a scope.
            if frame_vars >= need && (bof == 0 || !self.cointoss(HIGHER_SCOPE_ONE_IN)) {
                break;
            }
            eof = bof;
            bof -= 1;
        }
        if bof < 0 || eof - bof - 1 < need {
            self.broken = true;
            return 0;
        }
        let (bof, eof) = (bof as u32, eof as u32);
        let start = self.rand_range(bof + 1, eof);
        let mut j = start + 1;
        loop {
            if j >= eof {
                j = bof + 1;
            }
            if (!dbl || j > bof + 1) && self.cointoss(VAR_REUSE_ONE_IN) {
                break;
            }
            let free = self.vars[j as usize] & 1 == 0;
            if free && (!dbl || self.vars[j as usize - 1] & 1 == 0) {
                break;
            }
            j += 1;
        }
        self.vars[j as usize] |= 1;
        if dbl {
            self.vars[j as usize - 1] |= 1;
        }
        j
    }

    fn get_a(&mut self, dbl: bool) -> u32 {
        self.get_var(dbl) << 9
    }

    fn get_b(&mut self, dbl: bool) -> u32 {
        if self.cointoss(IMMEDIATE_ONE_IN) {
            self.randu32() << 20 | 1 << 18
        } else {
            self.get_var(dbl) << 20
        }
    }

    fn op(&mut self, ty: OpType, budget: &mut u32) -> bool {
        let r = self.randu32() as usize;
        if *budget < ty.cost() {
            return false;
        }
        *budget -= ty.cost();
        let (code, dbl, outs, has_b) = match ty {
            OpType::T11 => (CODES_1_1[r % CODES_1_1.len()], false, 1, false),
            OpType::T21 => (CODES_2_1[r % CODES_2_1.len()], false, 1, true),
            OpType::T22 => (CODES_2_2[r % CODES_2_2.len()], false, 2, true),
            OpType::T42 => (CODES_4_2[r % CODES_4_2.len()], true, 2, true),
            OpType::T44 => (CODES_4_4[r % CODES_4_4.len()], true, 4, true),
        };
        let a = self.get_a(dbl);
        let b = if has_b { self.get_b(dbl) } else { 0 };
        self.emit(u32::from(code) | a | b);
        for _ in 0..outs {
            self.mk_var();
        }
        true
    }

    fn input(&mut self, budget: &mut u32) -> bool {
        if *budget < INPUT_COST {
            return false;
        }
        *budget -= INPUT_COST;
        self.mk_var();
        let r = self.randu32();
        self.emit(r << 8 | u32::from(opcodes::IN));
        true
    }

    fn branch(&mut self, budget: &mut u32) -> bool {
        if *budget < BRANCH_COST {
            return false;
        }
        *budget -= BRANCH_COST;
        let code = if self.cointoss(RANDOM_BRANCH_ONE_IN) {
            opcodes::IF_RANDOM
        } else {
            opcodes::IF_LIKELY
        };
        let a = self.get_a(false);
        self.emit(a | u32::from(code) | 2 << 20);
        let j1 = self.insns.len();
        self.emit(u32::from(opcodes::JMP));
        let mut b1 = *budget * 7 / 32;
        self.body(&mut b1, true);
        let j2 = self.insns.len();
        self.emit(u32::from(opcodes::JMP));
        let mut b2 = *budget * 7 / 32;
        self.body(&mut b2, true);
        let count = self.insns.len();
        if let Some(w) = self.insns.get_mut(j1) {
            *w = ((j2 - j1) as u32) << 8 | u32::from(opcodes::JMP);
        }
        if let Some(w) = self.insns.get_mut(j2) {
            *w = (count.saturating_sub(j2 + 1) as u32) << 8 | u32::from(opcodes::JMP);
        }
        true
    }

    /// Emits a loop; always returns `false` (creating a loop ends the enclosing body).
    fn make_loop(&mut self, budget: &mut u32) -> bool {
        let cycles = self.rand_range(2, 7 + 29 * self.scope);
        let mem_accesses = self.rand_range(2, 4);
        if *budget < MEMORY_COST * cycles {
            return false;
        }
        *budget /= cycles;
        self.emit(cycles << 20 | u32::from(opcodes::LOOP));
        self.open_scope();
        let template = self.randu32() << 8 | u32::from(opcodes::MEMORY);
        for _ in 0..mem_accesses {
            if *budget < MEMORY_COST {
                break;
            }
            *budget -= MEMORY_COST;
            self.mk_var();
            let carry = self.randu32() & 15;
            self.emit(template & !(15 << 9) | carry << 9);
        }
        self.body(budget, false);
        self.close_scope();
        false
    }

    fn body(&mut self, budget: &mut u32, new_scope: bool) {
        if new_scope {
            self.open_scope();
        }
        'outer: loop {
            if self.insns.len() > MAX_INSNS || self.broken {
                break;
            }
            let max = self.rand_range(2, 12);
            for i in 1..=max {
                if self.cointoss(4 * max / i) && self.op(OpType::T44, budget) {
                    continue;
                }
                if self.cointoss(3 * max / i) && self.op(OpType::T42, budget) {
                    continue;
                }
                if self.cointoss(3 * max / i) && self.op(OpType::T22, budget) {
                    continue;
                }
                if self.cointoss(2 * max / i) && self.op(OpType::T21, budget) {
                    continue;
                }
                if self.cointoss(i) && self.input(budget) {
                    continue;
                }
                if self.op(OpType::T11, budget) {
                    continue;
                }
                break 'outer;
            }
            let r = self.randu32();
            let should_branch = (r % 64) + (self.insns.len() as u32 * 25 / 2048) < 50;
            if should_branch && !self.branch(budget) {
                break;
            }
            let r = self.randu32();
            if r % 32 < 23 && !self.make_loop(budget) {
                break;
            }
        }
        if new_scope {
            self.close_scope();
        }
    }
}

/// Generates the RandHash program for `seed` (`RandGen_generate`).
pub fn generate(seed: &[u8; 32]) -> Result<Vec<u32>, RandHashError> {
    let mut g = Gen {
        seed: *seed,
        block: [0; 16],
        next: 16,
        ctr: 0,
        insns: Vec::with_capacity(MAX_INSNS),
        vars: Vec::with_capacity(256),
        scope: 0,
        too_big: false,
        broken: false,
    };
    let mut budget = INITIAL_BUDGET;
    g.make_loop(&mut budget);
    if g.broken {
        return Err(RandHashError::NoVariable);
    }
    if g.too_big {
        return Err(RandHashError::TooBig);
    }
    Ok(g.insns)
}
