//! The pktmesh route server: a cjdns-compatible supernode that also knows about bandwidth
//! leases.
//!
//! - [`announce`]: the cjdns announcement format (checked views, values that emit, signing),
//!   plus the pktmesh link-capacity and lease-offer entities.
#![forbid(unsafe_code)]

pub mod announce;
mod varint;
