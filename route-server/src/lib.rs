//! The pktmesh route server: a cjdns-compatible supernode that also knows about bandwidth
//! leases.
//!
//! - [`announce`]: the cjdns announcement format (checked views, values that emit, signing),
//!   plus the pktmesh link-capacity and lease-offer entities.
//! - [`graph`]: per-node announcement sets and the state derived from them (links, link state,
//!   capacity, offers).
//! - [`path`]: graph snapshots and bidirectional Dijkstra with lease-aware costs; route labels.
#![forbid(unsafe_code)]

pub mod announce;
pub mod graph;
pub mod path;
mod varint;
