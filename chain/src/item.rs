//! Announcement table items: v1 items (`mkitem2`, RandHash-backed), v0 items (memohash),
//! and the 8192-item BLAKE2b-512 merkle tree with its branch check.

use crate::cryptocycle::{State, ITEM_LEN};
use crate::hash::{b2b512, hash_expand};
use crate::randhash::{Interpreter, Program, RandHashError};

/// Number of items in an announcement table.
pub const TABLE_ITEMS: usize = 8192;
/// Depth of the table's merkle tree.
pub const MERKLE_DEPTH: usize = 13;

/// RandHash cycles per v1 item.
const MKITEM2_CYCLES: u32 = 2;

/// Converts a 2048-byte state into the two 256-word RandHash halves.
pub(crate) fn state_to_words(state: &State, words: &mut [[u32; 256]; 2]) {
    for (i, c) in state.bytes().chunks_exact(4).enumerate() {
        words[i / 256][i % 256] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// Writes the two RandHash halves back into the state bytes.
pub(crate) fn words_to_state(words: &[[u32; 256]; 2], state: &mut State) {
    for (i, c) in state.bytes_mut().chunks_exact_mut(4).enumerate() {
        c.copy_from_slice(&words[i / 256][i % 256].to_le_bytes());
    }
}

/// Scratch space for building v1 items without allocating per item.
#[derive(Debug)]
pub struct ItemBuilder {
    interp: Interpreter,
    words: Box<[[u32; 256]; 2]>,
    state: Box<State>,
}

impl Default for ItemBuilder {
    fn default() -> Self {
        ItemBuilder {
            interp: Interpreter::new(),
            words: Box::new([[0u32; 256]; 2]),
            state: Box::default(),
        }
    }
}

impl ItemBuilder {
    /// New scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// `mkitem2(n, seed)`: the v1 table item `n` for the program `prog` and item seed
    /// `item_seed`, written to `out`.
    pub fn mkitem2(
        &mut self,
        item_no: u64,
        item_seed: &[u8; 32],
        prog: &Program,
        out: &mut [u8; ITEM_LEN],
    ) -> Result<(), RandHashError> {
        self.state.init(item_seed, item_no);
        state_to_words(&self.state, &mut self.words);
        self.interp.run(
            prog.insns(),
            prog.memory_window(item_no),
            &mut self.words,
            MKITEM2_CYCLES,
        )?;
        words_to_state(&self.words, &mut self.state);
        self.state.make_fuzzable();
        self.state.crypt();
        out.copy_from_slice(&self.state.bytes()[..ITEM_LEN]);
        Ok(())
    }

    /// v0 `Update` with RandHash: the program is generated from `item[992,1024)`, run 4
    /// cycles over `state` with the item as memory, then the normal CryptoCycle update.
    pub fn update_v0(
        &mut self,
        state: &mut State,
        item: &[u8; ITEM_LEN],
    ) -> Result<(), RandHashError> {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&item[992..]);
        let prog = crate::randhash::generate(&seed)?;
        let mut memory = [0u32; 256];
        for (m, c) in memory.iter_mut().zip(item.chunks_exact(4)) {
            *m = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        state_to_words(state, &mut self.words);
        self.interp.run(&prog, &memory, &mut self.words, 4)?;
        words_to_state(&self.words, state);
        state.update(item);
        Ok(())
    }
}

/// The v0 table item `n` for `seed` (HashExpand, a BLAKE2b-512 chain, then 2 memohash cycles).
pub fn mkitem_v0(item_no: u32, seed: &[u8; 32], out: &mut [u8; ITEM_LEN]) {
    hash_expand(&mut out[..64], seed, item_no);
    for i in 1..16 {
        let prev = b2b512(&out[64 * (i - 1)..64 * i]);
        out[64 * i..64 * (i + 1)].copy_from_slice(&prev);
    }
    let mut tmp = [0u8; 128];
    for _ in 0..2 {
        for i in 0..16 {
            let p = (i + 15) % 16;
            let q = u32::from_le_bytes([
                out[64 * p],
                out[64 * p + 1],
                out[64 * p + 2],
                out[64 * p + 3],
            ]) % 15;
            let j = (i + q as usize) % 16;
            tmp[..64].copy_from_slice(&out[64 * p..64 * p + 64]);
            tmp[64..].copy_from_slice(&out[64 * j..64 * j + 64]);
            let h = b2b512(&tmp);
            out[64 * i..64 * i + 64].copy_from_slice(&h);
        }
    }
}

/// Checks a table merkle branch: `leaf` (BLAKE2b-512 of the item) at index `item_no`, the 13
/// sibling hashes `branch` (leaf level first) and the 64-byte `root`.
pub fn merkle_branch_is_valid(leaf: &[u8; 64], item_no: usize, branch: &[u8], root: &[u8]) -> bool {
    if branch.len() != MERKLE_DEPTH * 64 || root.len() != 64 {
        return false;
    }
    let mut buf = [0u8; 128];
    let mut n = item_no;
    buf[64 * (n & 1)..][..64].copy_from_slice(leaf);
    for sib in branch.chunks_exact(64) {
        buf[64 * (!n & 1)..][..64].copy_from_slice(sib);
        n >>= 1;
        let h = b2b512(&buf);
        buf[64 * (n & 1)..][..64].copy_from_slice(&h);
    }
    buf[64 * (n & 1)..][..64] == *root
}

/// A full 8192-leaf BLAKE2b-512 merkle tree (miner side): all levels, leaf level first.
#[derive(Debug, Clone)]
pub struct TableTree {
    /// `levels[0]` holds 8192 leaf hashes, `levels[13]` the root.
    levels: Vec<Vec<[u8; 64]>>,
}

impl TableTree {
    /// Builds the tree over `items` (8192 × 1024 bytes).
    pub fn build(items: &[[u8; ITEM_LEN]]) -> Self {
        let mut levels = Vec::with_capacity(MERKLE_DEPTH + 1);
        levels.push(items.iter().map(|i| b2b512(i)).collect::<Vec<_>>());
        for d in 0..MERKLE_DEPTH {
            let next = levels[d]
                .chunks_exact(2)
                .map(|p| {
                    let mut buf = [0u8; 128];
                    buf[..64].copy_from_slice(&p[0]);
                    buf[64..].copy_from_slice(&p[1]);
                    b2b512(&buf)
                })
                .collect::<Vec<_>>();
            levels.push(next);
        }
        TableTree { levels }
    }

    /// The 64-byte root.
    pub fn root(&self) -> [u8; 64] {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or([0u8; 64])
    }

    /// Writes the 13 sibling hashes for `item_no` followed by the root (896 bytes) to `out`.
    pub fn branch(&self, item_no: usize, out: &mut [u8]) {
        let mut n = item_no;
        for (d, sib) in out.chunks_exact_mut(64).take(MERKLE_DEPTH).enumerate() {
            if let Some(h) = self.levels[d].get(n ^ 1) {
                sib.copy_from_slice(h);
            }
            n >>= 1;
        }
        if out.len() >= (MERKLE_DEPTH + 1) * 64 {
            out[MERKLE_DEPTH * 64..(MERKLE_DEPTH + 1) * 64].copy_from_slice(&self.root());
        }
    }
}
