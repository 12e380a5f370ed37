//! The announcement miner (v1 announcements, PcP v2 rules).

use crate::MineError;
use pktmesh_chain::announce::{
    ann_hash0, ann_hash1, hi32, lo32, v1_table_seed, xor_v1_encrypted_regions, AnnHeader, ANN_LEN,
    ITEM4_PREFIX_OFFSET, MERKLE_BRANCH_OFFSET, MERKLE_ROOT_OFFSET,
};
use pktmesh_chain::cryptocycle::{State, ITEM_LEN};
use pktmesh_chain::difficulty::{ann_soft_nonce_max, is_hash_ok};
use pktmesh_chain::item::{ItemBuilder, TableTree, TABLE_ITEMS};
use pktmesh_chain::randhash::Program;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What to announce and against which parent block.
#[derive(Debug, Clone)]
pub struct AnnJob {
    /// Parent block hash, raw byte order.
    pub parent_hash: [u8; 32],
    /// Parent block height.
    pub parent_height: u32,
    /// Compact work target.
    pub work_bits: u32,
    /// Content type.
    pub content_type: u32,
    /// Content (at most 32 bytes, stored in the content-hash field).
    pub content: Vec<u8>,
    /// Signing key (zero = none).
    pub signing_key: [u8; 32],
}

impl AnnJob {
    /// The 88-byte header for `hard_nonce` with soft nonce 0.
    pub fn header(&self, hard_nonce: u32) -> Result<AnnHeader, MineError> {
        if self.content.len() > 32 {
            return Err(MineError::ContentTooLong);
        }
        let mut content_hash = [0u8; 32];
        content_hash[..self.content.len()].copy_from_slice(&self.content);
        Ok(AnnHeader {
            version: 1,
            soft_nonce: 0,
            hard_nonce,
            work_bits: self.work_bits,
            parent_block_height: self.parent_height,
            content_type: self.content_type,
            content_length: self.content.len() as u32,
            content_hash,
            signing_key: self.signing_key,
        })
    }
}

/// Fills `table` with the 8192 v1 items for a 64-byte table seed.
fn build_table(seed: &[u8; 64], table: &mut [[u8; ITEM_LEN]]) -> Result<(), MineError> {
    let prog = Program::create(&lo32(seed))?;
    let item_seed = hi32(seed);
    let mut b = ItemBuilder::new();
    for (n, item) in table.iter_mut().enumerate() {
        b.mkitem2(n as u64, &item_seed, &prog, item)?;
    }
    Ok(())
}

/// Both tables of one hard nonce, ready for soft-nonce search.
pub struct AnnTables {
    header: [u8; 88],
    root: [u8; 64],
    hash_seed: [u8; 32],
    t0_tree: TableTree,
    t1: Vec<[u8; ITEM_LEN]>,
    soft_nonce_max: u32,
    work_bits: u32,
}

impl core::fmt::Debug for AnnTables {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AnnTables")
            .field("soft_nonce_max", &self.soft_nonce_max)
            .finish_non_exhaustive()
    }
}

impl AnnTables {
    /// Builds T0 (and its merkle tree) and T1 for `hard_nonce` (≈ 2 × 8192 `mkitem2`).
    pub fn build(job: &AnnJob, hard_nonce: u32) -> Result<Self, MineError> {
        let header = job.header(hard_nonce)?.emit();
        let h0 = ann_hash0(&header, &job.parent_hash);
        let mut table = vec![[0u8; ITEM_LEN]; TABLE_ITEMS];
        build_table(&h0, &mut table)?;
        let t0_tree = TableTree::build(&table);
        let root = t0_tree.root();
        let h1 = ann_hash1(&header, &root);
        let seed1 = v1_table_seed(&root, &h0);
        build_table(&seed1, &mut table)?;
        Ok(AnnTables {
            header,
            root,
            hash_seed: lo32(&h1),
            t0_tree,
            t1: table,
            soft_nonce_max: ann_soft_nonce_max(job.work_bits),
            work_bits: job.work_bits,
        })
    }

    /// Largest soft nonce allowed by the work bits.
    pub fn soft_nonce_max(&self) -> u32 {
        self.soft_nonce_max
    }

    /// One ann-hash attempt: leaves the final state in `state` and returns the last item
    /// number. The work hash is `state.hash()`.
    #[inline]
    pub fn attempt(&self, soft_nonce: u32, state: &mut State) -> u32 {
        state.init_for_update(&self.hash_seed, u64::from(soft_nonce));
        let mut n = 0usize;
        for _ in 0..4 {
            n = (state.item_no() % TABLE_ITEMS as u64) as usize;
            state.update(&self.t1[n]);
        }
        state.finalize();
        n as u32
    }

    /// Whether the attempt left in `state` meets the work bits.
    pub fn is_hit(&self, state: &State) -> bool {
        is_hash_ok(&state.hash(), self.work_bits)
    }

    /// The announcement for a successful attempt (`state` and `last_item` from
    /// [`AnnTables::attempt`]).
    pub fn emit(&self, soft_nonce: u32, last_item: u32, state: &State) -> [u8; ANN_LEN] {
        let mut ann = [0u8; ANN_LEN];
        ann[..88].copy_from_slice(&self.header);
        ann[1..4].copy_from_slice(&soft_nonce.to_le_bytes()[..3]);
        self.t0_tree.branch(
            last_item as usize,
            &mut ann[MERKLE_BRANCH_OFFSET..ITEM4_PREFIX_OFFSET],
        );
        debug_assert_eq!(ann[MERKLE_ROOT_OFFSET..ITEM4_PREFIX_OFFSET], self.root[..]);
        xor_v1_encrypted_regions(&mut ann, state);
        ann
    }

    /// Searches soft nonces `[from, to]` and calls `found` for each announcement; stops early
    /// when `stop` is set. Returns the number of attempts made.
    pub fn search(
        &self,
        from: u32,
        to: u32,
        stop: &AtomicBool,
        attempts: &AtomicU64,
        mut found: impl FnMut([u8; ANN_LEN]) -> bool,
    ) -> u64 {
        let mut state = Box::<State>::default();
        let mut done = 0u64;
        let to = to.min(self.soft_nonce_max);
        let mut sn = from;
        while sn <= to {
            let last = self.attempt(sn, &mut state);
            if self.is_hit(&state) && !found(self.emit(sn, last, &state)) {
                done += 1;
                break;
            }
            done += 1;
            if done % 256 == 0 {
                attempts.fetch_add(256, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            sn += 1;
        }
        attempts.fetch_add(done % 256, Ordering::Relaxed);
        done
    }
}

/// Mines `count` announcements with `threads` threads; thread `t` uses hard nonces
/// `first_hard_nonce + t`, `+ threads`, …. `progress` is called about once a second from
/// the calling thread with (total attempts, announcements found).
pub fn mine_anns(
    job: &AnnJob,
    threads: usize,
    count: usize,
    first_hard_nonce: u32,
    mut progress: impl FnMut(u64, usize),
) -> Result<Vec<[u8; ANN_LEN]>, MineError> {
    let threads = threads.max(1);
    let stop = AtomicBool::new(false);
    let attempts = AtomicU64::new(0);
    let out: Mutex<Vec<[u8; ANN_LEN]>> = Mutex::new(Vec::new());
    let err: Mutex<Option<MineError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, attempts, out, err) = (&stop, &attempts, &out, &err);
            s.spawn(move || {
                let mut hard = first_hard_nonce.wrapping_add(t as u32);
                while !stop.load(Ordering::Relaxed) {
                    let tables = match AnnTables::build(job, hard) {
                        Ok(t) => t,
                        Err(MineError::Program(_)) => {
                            hard = hard.wrapping_add(threads as u32);
                            continue;
                        }
                        Err(e) => {
                            *err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                            stop.store(true, Ordering::Relaxed);
                            return;
                        }
                    };
                    tables.search(0, u32::MAX, stop, attempts, |ann| {
                        let mut v = out.lock().unwrap_or_else(|p| p.into_inner());
                        if v.len() < count {
                            v.push(ann);
                        }
                        if v.len() >= count {
                            stop.store(true, Ordering::Relaxed);
                            return false;
                        }
                        true
                    });
                    hard = hard.wrapping_add(threads as u32);
                }
            });
        }
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let found = out.lock().map(|v| v.len()).unwrap_or(0);
            progress(attempts.load(Ordering::Relaxed), found);
        }
    });
    if let Some(e) = err.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(out.into_inner().unwrap_or_else(|p| p.into_inner()))
}
