//! The announcement set's range-merkle tree: building it and proving four leaves (miner
//! side, [`AnnSetTree`]), and recomputing the committed root from a proof ([`pcp_hash`]).
//!
//! Each entry is `hash32 ‖ LE64 start ‖ LE64 end`, where a leaf's start is the first 8 bytes
//! (LE) of its announcement hash and its end is the next leaf's start. Because a validator
//! must learn the range of every subtree next to the proven leaves, a set with duplicate
//! announcements cannot produce a root with start 0 and end `2^64 − 1`.

use crate::hash::{b2b256, b2b256_parts};

/// Why a tree proof could not be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The commitment claims zero announcements (or a count that overflows).
    #[error("invalid announcement count")]
    BadCount,
    /// Two facts about the same node disagree (e.g. duplicate announcements).
    #[error("conflicting values in the proof tree")]
    Conflict,
    /// The proof ended early.
    #[error("proof too short")]
    Runt,
    /// Bytes left over after the last node.
    #[error("extra data at the end of the proof")]
    ExtraData,
    /// A pad entry's sibling is not computable (cannot happen for valid inputs).
    #[error("pad sibling is not computable")]
    PadSibling,
    /// The root did not end up fully known with range `[0, 2^64 − 1]`.
    #[error("root is incomplete or has the wrong range")]
    BadRoot,
}

/// Node flags.
mod flag {
    pub(super) const RIGHT: u16 = 1;
    pub(super) const LEAF: u16 = 1 << 1;
    pub(super) const FIRST: u16 = 1 << 2;
    pub(super) const COMPUTABLE: u16 = 1 << 3;
    pub(super) const PAD: u16 = 1 << 4;
    pub(super) const PAD_SIBLING: u16 = 1 << 5;
    pub(super) const HAS_HASH: u16 = 1 << 6;
    pub(super) const HAS_START: u16 = 1 << 7;
    pub(super) const HAS_END: u16 = 1 << 8;
    pub(super) const HAS_RANGE: u16 = 1 << 9;
    pub(super) const ALL4: u16 = HAS_HASH | HAS_START | HAS_END | HAS_RANGE;
}

const NONE: usize = usize::MAX;

#[derive(Clone, Copy)]
struct Node {
    parent: usize,
    left: usize,
    right: usize,
    bits: u64,
    flags: u16,
    hash: [u8; 32],
    start: u64,
    end: u64,
    range: u64,
}

/// The pre-order node list shared by prover and verifier.
struct Skeleton {
    nodes: Vec<Node>,
}

impl Skeleton {
    /// Builds the node list for leaves `idx` (already `+1`) in a tree of `m` leaves.
    fn build(m: u64, idx: &[u64; 4]) -> Result<Self, ProofError> {
        let height = 64 - (m - 1).leading_zeros();
        let mut s = Skeleton {
            nodes: Vec::with_capacity(16 * height as usize + 1),
        };
        s.make(idx, 0, height, NONE, m)?;
        Ok(s)
    }

    fn has(&self, n: usize, f: u16) -> bool {
        self.nodes[n].flags & f == f
    }

    fn make(
        &mut self,
        idx: &[u64; 4],
        bits: u64,
        depth: u32,
        parent: usize,
        m: u64,
    ) -> Result<usize, ProofError> {
        let me = self.nodes.len();
        let mask = u64::MAX.checked_shl(depth).unwrap_or(0);
        let mut flags = 0u16;
        if depth < 64 && bits >> depth & 1 == 1 {
            flags |= flag::RIGHT;
        }
        if depth == 0 {
            flags |= flag::LEAF;
        }
        if bits & mask == 0 {
            flags |= flag::FIRST | flag::HAS_START;
        }
        self.nodes.push(Node {
            parent,
            left: NONE,
            right: NONE,
            bits,
            flags,
            hash: [0; 32],
            start: 0,
            end: 0,
            range: 0,
        });
        if idx.iter().any(|&a| (a ^ bits) & mask == 0) {
            self.nodes[me].flags |= flag::COMPUTABLE;
            if depth == 0 {
                return Ok(me);
            }
            let l = self.make(idx, bits, depth - 1, me, m)?;
            self.nodes[me].left = l;
            let r = self.make(idx, bits | 1 << (depth - 1), depth - 1, me, m)?;
            self.nodes[me].right = r;
            if self.has(r, flag::PAD) {
                if !self.has(l, flag::COMPUTABLE) {
                    return Err(ProofError::PadSibling);
                }
                self.nodes[l].flags |= flag::PAD_SIBLING;
            }
            return Ok(me);
        }
        if bits >= m {
            let n = &mut self.nodes[me];
            n.flags |= flag::PAD | flag::ALL4;
            n.hash = [0xff; 32];
            n.start = u64::MAX;
            n.end = u64::MAX;
        }
        Ok(me)
    }

    fn explicit_range(&self, n: usize) -> bool {
        let f = self.nodes[n].flags;
        f & (flag::LEAF | flag::RIGHT | flag::PAD) == (flag::LEAF | flag::RIGHT)
            || f & (flag::LEAF | flag::COMPUTABLE | flag::PAD | flag::PAD_SIBLING) == 0
    }

    fn needs_hash(&self, n: usize) -> bool {
        self.nodes[n].flags & (flag::HAS_HASH | flag::COMPUTABLE) == 0
    }

    fn sibling(&self, n: usize) -> Option<usize> {
        let p = self.nodes[n].parent;
        if p == NONE {
            return None;
        }
        Some(if self.has(n, flag::RIGHT) {
            self.nodes[p].left
        } else {
            self.nodes[p].right
        })
    }

    fn leaf(&self, bits: u64) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| n.flags & flag::LEAF != 0 && n.bits == bits)
    }

    // Propagation rules; each returns false on a conflict with a known value.

    fn set_hash(&mut self, n: usize, h: &[u8; 32]) -> bool {
        if self.has(n, flag::HAS_HASH) {
            return self.nodes[n].hash == *h;
        }
        self.nodes[n].hash = *h;
        self.nodes[n].flags |= flag::HAS_HASH;
        if self.has(n, flag::LEAF) {
            let mut s = [0u8; 8];
            s.copy_from_slice(&h[..8]);
            return self.set_start(n, u64::from_le_bytes(s));
        }
        self.recompute(n)
    }

    fn set_start(&mut self, n: usize, v: u64) -> bool {
        if self.has(n, flag::HAS_START) {
            return self.nodes[n].start == v;
        }
        self.nodes[n].start = v;
        self.nodes[n].flags |= flag::HAS_START;
        if self.has(n, flag::RIGHT) {
            if let Some(s) = self.sibling(n) {
                if !self.set_end(s, v) {
                    return false;
                }
            }
        }
        self.recompute(n)
    }

    fn set_end(&mut self, n: usize, v: u64) -> bool {
        if self.has(n, flag::HAS_END) {
            return self.nodes[n].end == v;
        }
        self.nodes[n].end = v;
        self.nodes[n].flags |= flag::HAS_END;
        if !self.has(n, flag::RIGHT) {
            if let Some(s) = self.sibling(n) {
                if !self.set_start(s, v) {
                    return false;
                }
            }
        }
        self.recompute(n)
    }

    fn set_range(&mut self, n: usize, v: u64) -> bool {
        if self.has(n, flag::HAS_RANGE) {
            return self.nodes[n].range == v;
        }
        self.nodes[n].range = v;
        self.nodes[n].flags |= flag::HAS_RANGE;
        self.recompute(n)
    }

    fn recompute(&mut self, n: usize) -> bool {
        use flag::*;
        let node = self.nodes[n];
        if self.has(n, HAS_START | HAS_END | HAS_RANGE) {
            if !self.has(n, ALL4) {
                return true;
            }
            let Some(sib) = self.sibling(n) else {
                return true;
            };
            if !self.has(sib, ALL4) {
                return true;
            }
            let (a, b) = if self.has(n, RIGHT) {
                (self.nodes[sib], node)
            } else {
                (node, self.nodes[sib])
            };
            let ph = b2b256_parts(&[
                &a.hash,
                &a.start.to_le_bytes(),
                &a.end.to_le_bytes(),
                &b.hash,
                &b.start.to_le_bytes(),
                &b.end.to_le_bytes(),
            ]);
            let p = node.parent;
            self.set_hash(p, &ph) && self.set_start(p, a.start) && self.set_end(p, b.end)
        } else if self.has(n, HAS_START | HAS_END) {
            self.set_range(n, node.end.wrapping_sub(node.start))
        } else if self.has(n, HAS_END | HAS_RANGE) {
            self.set_start(n, node.end.wrapping_sub(node.range))
        } else if self.has(n, HAS_START | HAS_RANGE) {
            self.set_end(n, node.range.wrapping_add(node.start))
        } else {
            true
        }
    }
}

fn leaf_indexes(ann_count: u64, indexes: &[u64; 4]) -> Result<(u64, [u64; 4]), ProofError> {
    if ann_count == 0 {
        return Err(ProofError::BadCount);
    }
    let m = ann_count.checked_add(1).ok_or(ProofError::BadCount)?;
    let mut idx = [0u64; 4];
    for (o, i) in idx.iter_mut().zip(indexes) {
        *o = i % ann_count + 1;
    }
    Ok((m, idx))
}

/// `PcpHash`: recomputes the committed root (`B2b256(root ‖ 0^8 ‖ ff^8)`) from the four
/// announcement hashes, the committed `ann_count`, the raw item numbers from the work hash
/// and the proof bytes.
pub fn pcp_hash(
    ann_hashes: &[[u8; 32]; 4],
    ann_count: u64,
    indexes: &[u64; 4],
    proof: &[u8],
) -> Result<[u8; 32], ProofError> {
    let (m, idx) = leaf_indexes(ann_count, indexes)?;
    let mut t = Skeleton::build(m, &idx)?;
    for (h, &i) in ann_hashes.iter().zip(&idx) {
        let leaf = t.leaf(i).ok_or(ProofError::Conflict)?;
        if !t.set_hash(leaf, h) {
            return Err(ProofError::Conflict);
        }
    }
    let mut pos = 0usize;
    for n in 0..t.nodes.len() {
        if t.explicit_range(n) {
            let b = proof.get(pos..pos + 8).ok_or(ProofError::Runt)?;
            pos += 8;
            let mut r = [0u8; 8];
            r.copy_from_slice(b);
            if !t.set_range(n, u64::from_le_bytes(r)) {
                return Err(ProofError::Conflict);
            }
        }
        if t.needs_hash(n) {
            let b = proof.get(pos..pos + 32).ok_or(ProofError::Runt)?;
            pos += 32;
            let mut h = [0u8; 32];
            h.copy_from_slice(b);
            if !t.set_hash(n, &h) {
                return Err(ProofError::Conflict);
            }
        }
    }
    if pos != proof.len() {
        return Err(ProofError::ExtraData);
    }
    let root = t.nodes[0];
    let want = flag::COMPUTABLE | flag::FIRST | flag::ALL4;
    if root.flags != want || root.start != 0 || root.end != u64::MAX || root.range != u64::MAX {
        return Err(ProofError::BadRoot);
    }
    Ok(b2b256_parts(&[&root.hash, &[0u8; 8], &[0xffu8; 8]]))
}

/// One tree entry: hash, start and end of its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Hash (announcement hash for leaves).
    pub hash: [u8; 32],
    /// Start of the range.
    pub start: u64,
    /// End of the range.
    pub end: u64,
}

impl Entry {
    const PAD: Entry = Entry {
        hash: [0xff; 32],
        start: u64::MAX,
        end: u64::MAX,
    };

    fn parent(a: &Entry, b: &Entry) -> Entry {
        let hash = b2b256_parts(&[
            &a.hash,
            &a.start.to_le_bytes(),
            &a.end.to_le_bytes(),
            &b.hash,
            &b.start.to_le_bytes(),
            &b.end.to_le_bytes(),
        ]);
        Entry {
            hash,
            start: a.start,
            end: b.end,
        }
    }
}

/// The full announcement-set tree (miner side).
#[derive(Debug, Clone)]
pub struct AnnSetTree {
    /// `levels[0]` = zero entry + sorted announcements (+ pad), last level = root.
    levels: Vec<Vec<Entry>>,
    count: u64,
}

/// Sort key of an announcement hash: its first 8 bytes as a little-endian u64.
pub fn ann_key(hash: &[u8; 32]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(k)
}

impl AnnSetTree {
    /// Builds the tree over announcement hashes (BLAKE2b-256 of each announcement). Returns
    /// the tree and, for every kept hash in sorted order, its position in `hashes`.
    /// Duplicate keys and keys 0 or `2^64 − 1` are dropped.
    pub fn build(hashes: &[[u8; 32]]) -> (Self, Vec<usize>) {
        let mut order: Vec<usize> = (0..hashes.len()).collect();
        order.sort_by_key(|&i| ann_key(&hashes[i]));
        let mut kept: Vec<usize> = Vec::with_capacity(order.len());
        for i in order {
            let k = ann_key(&hashes[i]);
            if k == 0 || k == u64::MAX {
                continue;
            }
            if kept.last().is_some_and(|&j| ann_key(&hashes[j]) == k) {
                continue;
            }
            kept.push(i);
        }
        let mut leaves = Vec::with_capacity(kept.len() + 2);
        leaves.push(Entry {
            hash: [0; 32],
            start: 0,
            end: 0,
        });
        for &i in &kept {
            leaves.push(Entry {
                hash: hashes[i],
                start: ann_key(&hashes[i]),
                end: 0,
            });
        }
        for j in 0..leaves.len() {
            leaves[j].end = leaves.get(j + 1).map_or(u64::MAX, |e| e.start);
        }
        let mut levels = vec![leaves];
        loop {
            let cur = levels.last_mut().expect("non-empty");
            if cur.len() == 1 {
                break;
            }
            if cur.len() % 2 == 1 {
                cur.push(Entry::PAD);
            }
            let next: Vec<Entry> = cur
                .chunks_exact(2)
                .map(|p| Entry::parent(&p[0], &p[1]))
                .collect();
            levels.push(next);
        }
        (
            AnnSetTree {
                levels,
                count: kept.len() as u64,
            },
            kept,
        )
    }

    /// Number of announcements (the zero entry excluded).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The committed root: `B2b256(root ‖ LE64 0 ‖ LE64 2^64−1)`.
    pub fn root(&self) -> [u8; 32] {
        let r = self
            .levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(Entry::PAD);
        let mut buf = [0u8; 48];
        buf[..32].copy_from_slice(&r.hash);
        buf[32..40].copy_from_slice(&r.start.to_le_bytes());
        buf[40..].copy_from_slice(&r.end.to_le_bytes());
        b2b256(&buf)
    }

    /// Sorted position of the announcement proven for raw item number `item_no`.
    pub fn lloc(&self, item_no: u64) -> u64 {
        item_no % self.count.max(1)
    }

    fn entry(&self, depth: u32, bits: u64) -> Entry {
        self.levels
            .get(depth as usize)
            .and_then(|l| l.get((bits >> depth) as usize))
            .copied()
            .unwrap_or(Entry::PAD)
    }

    /// The tree proof for the four raw item numbers `indexes` (as produced by the work hash).
    pub fn proof(&self, indexes: &[u64; 4]) -> Result<Vec<u8>, ProofError> {
        let (m, idx) = leaf_indexes(self.count, indexes)?;
        let t = Skeleton::build(m, &idx)?;
        let height = 64 - (m - 1).leading_zeros();
        let mut out = Vec::new();
        // Depth of each node follows from the pre-order walk: recompute it from the parent.
        let mut depth = vec![0u32; t.nodes.len()];
        for n in 0..t.nodes.len() {
            let p = t.nodes[n].parent;
            depth[n] = if p == NONE { height } else { depth[p] - 1 };
            let e = self.entry(depth[n], t.nodes[n].bits);
            if t.explicit_range(n) {
                out.extend_from_slice(&e.end.wrapping_sub(e.start).to_le_bytes());
            }
            if t.needs_hash(n) {
                out.extend_from_slice(&e.hash);
            }
        }
        Ok(out)
    }
}
