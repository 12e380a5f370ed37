//! What the node core needs from a pathfinder, and how it names nodes: the seam between the
//! data path ([`crate::core`]) and route finding (the DHT of [`crate::dht`], the shared
//! pathfinder of [`crate::shard`], or a test double). Neither side depends on the other's
//! internals.

use std::time::Instant;

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::Label;

/// A node as the pathfinder knows it: key, path from us, version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRef {
    /// Permanent key.
    pub key: PublicKey,
    /// Path from this node.
    pub path: Label,
    /// Protocol version (0 = unknown).
    pub version: u32,
}

/// What the node core needs from a pathfinder (the DHT of [`crate::dht`], or a test double).
pub trait Pathfinder {
    /// A direct peer's link is up and its version known.
    fn peer_up(&mut self, now: Instant, peer: NodeRef);
    /// A direct peer is gone.
    fn peer_down(&mut self, now: Instant, peer: NodeRef);
    /// A CJDHT message (the bencoded bytes after the DataHeader) arrived from `from`.
    fn handle_message(&mut self, now: Instant, from: NodeRef, message: &[u8]);
    /// Find a path to `target`; the answer comes from [`Pathfinder::poll_node`].
    fn search(&mut self, now: Instant, target: Address);
    /// Send something to `node` that it must answer (sets up an end-to-end session).
    fn ping(&mut self, now: Instant, node: NodeRef);
    /// Advance timers.
    fn handle_timeout(&mut self, now: Instant);
    /// When [`Pathfinder::handle_timeout`] wants to run next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next CJDHT message to send.
    fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)>;
    /// The next node whose path was found or changed.
    fn poll_node(&mut self) -> Option<NodeRef>;
    /// The best path known to `address`.
    fn node_for(&self, address: &Address) -> Option<NodeRef>;
}
