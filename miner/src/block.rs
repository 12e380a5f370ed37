//! The block miner: announcement set → range-merkle tree → coinbase commitment → PcP nonce
//! search → canonical PcP.

use crate::MineError;
use pktmesh_chain::announce::ANN_LEN;
use pktmesh_chain::block::{AnnSetTree, BlockHeader, CoinbaseCommitment, PcProof};
use pktmesh_chain::cryptocycle::State;
use pktmesh_chain::difficulty::{effective_target, is_hash_ok};
use pktmesh_chain::hash::b2b256;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A committed announcement set ready for nonce search.
pub struct BlockMiner {
    /// Announcements in tree (sorted) order.
    anns: Vec<[u8; ANN_LEN]>,
    tree: AnnSetTree,
    ann_min_target: u32,
    pcp_version: u32,
}

impl core::fmt::Debug for BlockMiner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BlockMiner")
            .field("anns", &self.anns.len())
            .finish_non_exhaustive()
    }
}

impl BlockMiner {
    /// Builds the set from `anns` (each assumed valid with aged target ≤ `ann_min_target`);
    /// duplicates are dropped as the consensus tree requires.
    pub fn new(
        anns: &[[u8; ANN_LEN]],
        ann_min_target: u32,
        pcp_version: u32,
    ) -> Result<Self, MineError> {
        let hashes: Vec<[u8; 32]> = anns.iter().map(|a| b2b256(a)).collect();
        let (tree, order) = AnnSetTree::build(&hashes);
        if order.is_empty() {
            return Err(MineError::NoAnnouncements);
        }
        let anns = order.iter().map(|&i| anns[i]).collect();
        Ok(BlockMiner {
            anns,
            tree,
            ann_min_target,
            pcp_version,
        })
    }

    /// The coinbase commitment to put in the coinbase before the header is final.
    pub fn commitment(&self) -> CoinbaseCommitment {
        CoinbaseCommitment::new(self.ann_min_target, &self.tree.root(), self.tree.count())
    }

    /// Effective target for a header with `bits`.
    pub fn effective_target(&self, bits: u32) -> u32 {
        effective_target(
            bits,
            self.ann_min_target,
            self.tree.count(),
            self.pcp_version,
        )
    }

    /// One block hash for `nonce` with announcements chosen from the set; fills `idx` with the
    /// raw item numbers. Allocation-free.
    #[inline]
    pub fn hash(
        &self,
        seed: &[u8; 32],
        nonce: u32,
        state: &mut State,
        idx: &mut [u64; 4],
    ) -> [u8; 32] {
        hash_with_table(&self.anns, seed, nonce, state, idx)
    }

    /// Searches PcP nonces in `[from, to)` for `header`; returns the proof on success.
    pub fn mine(
        &self,
        header: &BlockHeader,
        from: u32,
        to: u32,
        stop: &AtomicBool,
        attempts: &AtomicU64,
    ) -> Result<Option<PcProof>, MineError> {
        let target = self.effective_target(header.bits);
        let seed = header.pc_seed();
        let mut state = Box::<State>::default();
        let mut idx = [0u64; 4];
        for nonce in from..to {
            let h = self.hash(&seed, nonce, &mut state, &mut idx);
            if nonce % 256 == 255 {
                attempts.fetch_add(256, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
            }
            if is_hash_ok(&h, target) {
                let n = self.anns.len() as u64;
                let anns = idx.map(|i| self.anns[(i % n) as usize]);
                let proof = self.tree.proof(&idx)?;
                return Ok(Some(PcProof::new(nonce, anns, proof, self.pcp_version)));
            }
        }
        Ok(None)
    }
}

/// The block work hash over an arbitrary announcement table (used by the miner and by the
/// `bench blk` memory benchmark).
#[inline]
pub fn hash_with_table(
    table: &[[u8; ANN_LEN]],
    seed: &[u8; 32],
    nonce: u32,
    state: &mut State,
    idx: &mut [u64; 4],
) -> [u8; 32] {
    state.init_for_update(seed, u64::from(nonce));
    let n = table.len().max(1) as u64;
    for i in idx.iter_mut() {
        *i = state.item_no();
        if let Some(a) = table.get((*i % n) as usize) {
            state.update(a);
        }
    }
    state.smul();
    state.finalize();
    state.hash()
}
