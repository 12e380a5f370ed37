//! The 80-byte block header (Bitcoin layout) and its two hashes: the block id (double SHA-256)
//! and the BLAKE2b-256 seed of the PacketCrypt work hash.

use super::BlockError;
use crate::hash::{b2b256, dsha256, reversed};

/// Size of a block header.
pub const HEADER_LEN: usize = 80;

/// A decoded block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHeader {
    /// Block version.
    pub version: u32,
    /// Previous block id (raw byte order).
    pub prev_block: [u8; 32],
    /// Transaction merkle root (raw byte order).
    pub merkle_root: [u8; 32],
    /// Timestamp.
    pub time: u32,
    /// Compact target (`bits`).
    pub bits: u32,
    /// Header nonce (free for miners, the "high nonce").
    pub nonce: u32,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl BlockHeader {
    /// Parses the first 80 bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, BlockError> {
        let b = bytes
            .get(..HEADER_LEN)
            .ok_or(BlockError::Truncated("header"))?;
        let mut prev_block = [0u8; 32];
        prev_block.copy_from_slice(&b[4..36]);
        let mut merkle_root = [0u8; 32];
        merkle_root.copy_from_slice(&b[36..68]);
        Ok(BlockHeader {
            version: le32(b, 0),
            prev_block,
            merkle_root,
            time: le32(b, 68),
            bits: le32(b, 72),
            nonce: le32(b, 76),
        })
    }

    /// Serialises the header into 80 bytes.
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.version.to_le_bytes());
        out[4..36].copy_from_slice(&self.prev_block);
        out[36..68].copy_from_slice(&self.merkle_root);
        out[68..72].copy_from_slice(&self.time.to_le_bytes());
        out[72..76].copy_from_slice(&self.bits.to_le_bytes());
        out[76..80].copy_from_slice(&self.nonce.to_le_bytes());
        out
    }

    /// Block id: double SHA-256 of the header, raw byte order.
    pub fn block_hash(&self) -> [u8; 32] {
        dsha256(&self.emit())
    }

    /// Block id in display (explorer) byte order.
    pub fn block_hash_display(&self) -> [u8; 32] {
        reversed(&self.block_hash())
    }

    /// BLAKE2b-256 of the header: the seed of the block's CryptoCycle work hash.
    pub fn pc_seed(&self) -> [u8; 32] {
        b2b256(&self.emit())
    }
}
