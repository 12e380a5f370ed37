//! PacketCrypt announcement and block mining.
//!
//! - [`ann`]: the announcement miner. For one hard nonce it builds the two 8192-item tables
//!   (T0 proves the last item through its merkle tree, T1 is hashed), then searches soft
//!   nonces; [`ann::mine_anns`] runs one hard nonce per thread and reports attempts/s.
//! - [`block`]: the block miner. It sorts an announcement set into its range-merkle tree,
//!   builds the coinbase commitment, searches PcP nonces and emits a proof the validator
//!   accepts.
//! - [`bench`]: the `pktmine bench ann|blk` measurements.
//!
//! The hot loops (one ann-hash attempt, one block hash) allocate nothing: all state lives in
//! buffers created before the loop.
#![forbid(unsafe_code)]

pub mod ann;
pub mod bench;
pub mod block;

/// Errors of the miners.
#[derive(Debug, thiserror::Error)]
pub enum MineError {
    /// A RandHash program for a table was rejected (try another hard nonce).
    #[error("table program rejected: {0}")]
    Program(#[from] pktmesh_chain::randhash::RandHashError),
    /// The announcement set is empty after dropping duplicates.
    #[error("no usable announcements")]
    NoAnnouncements,
    /// A proof tree could not be produced.
    #[error("proof tree: {0}")]
    Proof(#[from] pktmesh_chain::block::ProofError),
    /// Content longer than 32 bytes is not supported by this miner.
    #[error("content longer than 32 bytes is not supported")]
    ContentTooLong,
}
