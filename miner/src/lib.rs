//! PacketCrypt announcement and block mining.
//!
//! Work in progress: see issue "chain + miner".
#![forbid(unsafe_code)]
