//! The block work hash and `validate_block_proof`, in the PKT-FullNode order:
//! version/height gates, canonical form, signatures, content proofs, coinbase commitment,
//! work vs. effective target, announcement checks and aging, then the tree proof.

use super::{pcp_hash, BlockError, BlockHeader, CoinbaseCommitment, PcProof};
use crate::announce::{AnnValidator, Announcement, ANN_LEN};
use crate::cryptocycle::State;
use crate::difficulty::{
    aged_ann_target, effective_target, is_ann_min_target_ok, is_hash_ok, ANN_WAIT_PERIOD,
};
use crate::hash::{b2b256, b2b256_parts};
use crate::params::is_pcp_version_allowed;

/// What a valid proof yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidBlock {
    /// The work hash (raw byte order).
    pub work_hash: [u8; 32],
    /// The effective target it met.
    pub effective_target: u32,
}

/// The block work hash: Init(B2b256(header), nonce), 4 × Update(announcement) with the raw item
/// numbers recorded in `indexes`, Smul, Final.
pub fn block_work_hash(
    header: &BlockHeader,
    nonce: u32,
    anns: &[[u8; ANN_LEN]; 4],
    indexes: &mut [u64; 4],
) -> [u8; 32] {
    let mut s = State::new();
    s.init_for_update(&header.pc_seed(), u64::from(nonce));
    for (ann, idx) in anns.iter().zip(indexes.iter_mut()) {
        *idx = s.item_no();
        s.update(ann);
    }
    s.smul();
    s.finalize();
    s.hash()
}

/// Checks a content proof (PcP ≤ 1) for content of `len` bytes committed as `root`, proving
/// block `proof_idx mod blocks`. Returns the number of proof bytes used.
fn check_content_proof(
    root: &[u8],
    len: u32,
    proof_idx: u32,
    proof: &[u8],
) -> Result<usize, BlockError> {
    let blocks = len.div_ceil(32);
    let mut k = proof_idx % blocks;
    let depth = 32 - (blocks - 1).leading_zeros();
    let first = proof
        .get(..32)
        .ok_or(BlockError::ContentProof("truncated"))?;
    let mut cur = [0u8; 32];
    cur.copy_from_slice(first);
    let mut pos = 32;
    let mut block_size: u64 = 32;
    for _ in 0..depth {
        if block_size * u64::from(k ^ 1) < u64::from(len) {
            let sib = proof
                .get(pos..pos + 32)
                .ok_or(BlockError::ContentProof("truncated"))?;
            pos += 32;
            cur = if k & 1 == 1 {
                b2b256_parts(&[sib, &cur])
            } else {
                b2b256_parts(&[&cur, sib])
            };
        }
        k >>= 1;
        block_size <<= 1;
    }
    if cur[..] != root[..] {
        return Err(BlockError::ContentProof("root mismatch"));
    }
    Ok(pos)
}

fn check_signatures(pcp: &PcProof) -> Result<(), BlockError> {
    for (i, ann) in pcp.anns.iter().enumerate() {
        let a = Announcement::new_checked(&ann[..])
            .map_err(|error| BlockError::Ann { index: i, error })?;
        if !a.has_signing_key() {
            continue;
        }
        let sig = pcp.signatures[i].ok_or(BlockError::BadSignature(i))?;
        let mut key = [0u8; 32];
        key.copy_from_slice(a.signing_key());
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| BlockError::BadSignature(i))?;
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        vk.verify_strict(ann, &sig)
            .map_err(|_| BlockError::BadSignature(i))?;
    }
    Ok(())
}

fn check_content_proofs(header: &BlockHeader, pcp: &PcProof) -> Result<(), BlockError> {
    if pcp.version >= 2 {
        if pcp.content_proofs.is_some() {
            return Err(BlockError::ContentProof(
                "content proofs not allowed in PcP v2",
            ));
        }
        return Ok(());
    }
    let seed = b2b256(&header.emit());
    let proof_idx = u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]) ^ pcp.nonce;
    let proofs = pcp.content_proofs.as_deref().unwrap_or(&[]);
    let mut pos = 0;
    for ann in pcp.anns.iter() {
        let a = Announcement::new_checked(&ann[..])
            .map_err(|error| BlockError::Ann { index: 0, error })?;
        if a.content_length() <= 32 {
            continue;
        }
        let rest = proofs.get(pos..).unwrap_or(&[]);
        pos += check_content_proof(a.content_hash(), a.content_length(), proof_idx, rest)?;
    }
    if pos != proofs.len() {
        return Err(BlockError::ContentProof("extra bytes"));
    }
    Ok(())
}

/// Validates a block's PacketCrypt proof.
///
/// `parent_hashes[i]` is the raw-order hash of the block at announcement `i`'s parent height
/// on this block's chain (the caller looks it up); `height` is the block height (from the
/// coinbase). Returns the work hash, or the first rule that failed.
pub fn validate_block_proof(
    header: &BlockHeader,
    pcp: &PcProof,
    commitment: &CoinbaseCommitment,
    parent_hashes: &[[u8; 32]; 4],
    height: u32,
) -> Result<ValidBlock, BlockError> {
    if !is_pcp_version_allowed(pcp.version, height) {
        return Err(BlockError::PcpVersionNotAllowed {
            version: pcp.version,
            height,
        });
    }
    for (index, ann) in pcp.anns.iter().enumerate() {
        let a = Announcement::new_checked(&ann[..])
            .map_err(|error| BlockError::Ann { index, error })?;
        if a.parent_block_height() > height {
            return Err(BlockError::AnnParentTooHigh {
                index,
                parent_height: a.parent_block_height(),
                height,
            });
        }
    }
    if !pcp.is_canonical() {
        return Err(BlockError::NonCanonical {
            wire_len: pcp.wire_len,
            canonical: pcp.canonical_size(),
        });
    }
    check_signatures(pcp)?;
    check_content_proofs(header, pcp)?;

    if commitment.magic() != super::commitment::COMMIT_MAGIC
        || !is_ann_min_target_ok(commitment.ann_min_target(), pcp.version)
    {
        return Err(BlockError::BadCoinbase);
    }

    let mut indexes = [0u64; 4];
    let work_hash = block_work_hash(header, pcp.nonce, &pcp.anns, &mut indexes);
    let eff = effective_target(
        header.bits,
        commitment.ann_min_target(),
        commitment.ann_count(),
        pcp.version,
    );
    if !is_hash_ok(&work_hash, eff) {
        return Err(BlockError::InsufficientWork {
            effective_target: eff,
            work_hash,
        });
    }

    let mut validator = AnnValidator::new();
    let mut ann_hashes = [[0u8; 32]; 4];
    for (index, ann) in pcp.anns.iter().enumerate() {
        validator
            .check(ann, &parent_hashes[index], pcp.version)
            .map_err(|error| BlockError::Ann { index, error })?;
        let a = Announcement::new_checked(&ann[..])
            .map_err(|error| BlockError::Ann { index, error })?;
        let aged = if height < ANN_WAIT_PERIOD {
            a.work_bits()
        } else {
            let age = height.wrapping_sub(a.parent_block_height());
            if age < ANN_WAIT_PERIOD {
                return Err(BlockError::AnnTooYoung { index, age });
            }
            aged_ann_target(a.work_bits(), age, pcp.version)
        };
        if aged > commitment.ann_min_target() {
            return Err(BlockError::AnnInsufficientWork {
                index,
                aged,
                min: commitment.ann_min_target(),
            });
        }
        ann_hashes[index] = b2b256(ann);
    }

    let root = pcp_hash(
        &ann_hashes,
        commitment.ann_count(),
        &indexes,
        &pcp.tree_proof,
    )?;
    if root != commitment.merkle_root() {
        return Err(BlockError::RootMismatch);
    }
    Ok(ValidBlock {
        work_hash,
        effective_target: eff,
    })
}
