//! The pktmesh route server: a cjdns-compatible supernode that also knows about bandwidth
//! leases.
//!
//! - [`announce`]: the cjdns announcement format (checked views, values that emit, signing),
//!   plus the pktmesh link-capacity and lease-offer entities.
//! - [`graph`]: per-node announcement sets and the state derived from them (links, link state,
//!   capacity, offers).
//! - [`path`]: graph snapshots and bidirectional Dijkstra with lease-aware costs; route labels.
//! - [`server`]: [`RouteServer`], which ties them together and answers cjdns supernode queries
//!   (`ann`, `gr`, `pn`).
//! - [`leases`]: the lease book (signed leases, orders, virtual networks), durable state.
//! - [`gossip`]: anti-entropy between route servers over per-node state hashes.
//! - `http` (feature `server`, on by default): the axum driver, redb store and gossip timer;
//!   the only module that uses tokio or reads the clock. Build with `--no-default-features`
//!   for the sans-IO core alone.
#![forbid(unsafe_code)]

pub mod announce;
pub mod graph;
pub mod path;
pub mod server;
mod varint;

pub use announce::{AnnounceError, AnnounceSigner, Announcement, AnnouncementRepr};
pub use graph::{Config, Graph, IngestError, Origin};
pub use path::{CostModel, PathError, Route, Topology};
pub use server::RouteServer;
pub mod gossip;
#[cfg(feature = "server")]
pub mod http;
pub mod leases;
