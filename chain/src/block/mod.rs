//! Blocks: the 80-byte header, the coinbase commitment, the PcP wire format, the
//! range-merkle proof tree and [`validate_block_proof`].
//!
//! - [`header`]: [`BlockHeader`], block id and the PacketCrypt seed.
//! - [`commitment`]: [`CoinbaseCommitment`] and minimal transaction parsing.
//! - [`pcp`]: [`PcProof`] parsing, canonical-form check and serialization.
//! - [`tree`]: [`pcp_hash`] (verifier) and [`AnnSetTree`] (miner: build, root, proofs).
//! - [`validate`]: the work hash and the full consensus check in the reference order.

pub mod commitment;
pub mod header;
pub mod pcp;
pub mod tree;
pub mod validate;
pub mod varint;

pub use commitment::{CoinbaseCommitment, Tx};
pub use header::BlockHeader;
pub use pcp::PcProof;
pub use tree::{pcp_hash, AnnSetTree, ProofError};
pub use validate::{block_work_hash, validate_block_proof, ValidBlock};

use crate::announce::AnnError;

/// Why a block (or its PacketCrypt proof) is invalid. Each variant names one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Input ended before a complete structure.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A CompactSize integer was not minimally encoded.
    #[error("non-canonical varint")]
    NonCanonicalVarint,
    /// pcp TLV length outside `(4100, 131072]`.
    #[error("pcp entity length {0} out of range")]
    PcpLength(u64),
    /// Signatures or content proofs before the pcp TLV.
    #[error("{0} entity before the pcp entity")]
    EntityBeforePcp(&'static str),
    /// Version TLV whose length is not the size of its varint.
    #[error("malformed version entity")]
    BadVersionEntity,
    /// Signature TLV whose size does not match the announcements with signing keys.
    #[error("malformed signatures entity")]
    BadSignatureEntity,
    /// No pcp TLV before the end marker.
    #[error("missing PacketCrypt proof entity")]
    MissingPcp,
    /// The PcP is not in canonical form (unknown, duplicate or padded entities).
    #[error(
        "PacketCrypt proof is not in canonical form ({wire_len} bytes, canonical {canonical})"
    )]
    NonCanonical {
        /// Bytes on the wire.
        wire_len: usize,
        /// Canonical size.
        canonical: usize,
    },
    /// This PcP version is not allowed at this height.
    #[error("PcP version {version} not allowed at height {height}")]
    PcpVersionNotAllowed {
        /// PcP version.
        version: u32,
        /// Block height.
        height: u32,
    },
    /// An announcement claims a parent above the block height.
    #[error("announcement {index} parent height {parent_height} above block height {height}")]
    AnnParentTooHigh {
        /// Announcement index in the PcP.
        index: usize,
        /// Its parent height.
        parent_height: u32,
        /// Block height.
        height: u32,
    },
    /// A signing key without a valid signature.
    #[error("announcement {0} has a signing key but no valid signature")]
    BadSignature(usize),
    /// Content proofs are missing, malformed or present where forbidden.
    #[error("content proof rule failed: {0}")]
    ContentProof(&'static str),
    /// No commitment output in the coinbase.
    #[error("missing packetcrypt commitment")]
    MissingCommitment,
    /// Bad commitment magic or annMinTarget (`BAD_COINBASE`).
    #[error("bad coinbase commitment")]
    BadCoinbase,
    /// The work hash misses the effective target (`INSUF_POW`).
    #[error("work hash does not meet effective target {effective_target:08x}")]
    InsufficientWork {
        /// Effective target (compact).
        effective_target: u32,
        /// Work hash (raw byte order).
        work_hash: [u8; 32],
    },
    /// An announcement failed `CheckAnn`.
    #[error("announcement {index}: {error}")]
    Ann {
        /// Announcement index in the PcP.
        index: usize,
        /// The rule it failed.
        error: AnnError,
    },
    /// An announcement is younger than the 3-block wait period.
    #[error("announcement {index} too young (age {age})")]
    AnnTooYoung {
        /// Announcement index.
        index: usize,
        /// Age in blocks.
        age: u32,
    },
    /// An announcement's aged target exceeds annMinTarget (`ANN_INSUF_POW`).
    #[error("announcement {index} aged target {aged:08x} above annMinTarget {min:08x}")]
    AnnInsufficientWork {
        /// Announcement index.
        index: usize,
        /// Its aged target.
        aged: u32,
        /// The commitment's annMinTarget.
        min: u32,
    },
    /// The tree proof could not be evaluated (`PCP_INVAL`).
    #[error("invalid tree proof: {0}")]
    TreeProof(#[from] ProofError),
    /// The tree proof's root differs from the commitment (`PCP_MISMATCH`).
    #[error("tree proof root does not match the commitment")]
    RootMismatch,
}
