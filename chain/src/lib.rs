//! PKT chain rules and PacketCrypt proof-of-work validation.
//!
//! Work in progress: see issue "chain + miner".
#![forbid(unsafe_code)]
