//! The lease book: signed lease messages, buy orders and virtual-network configurations the
//! route server holds (durable state), and what they add up to.
//!
//! Everything in the book is a signed frame, so it can be persisted as a set (the driver writes
//! each accepted frame) and gossiped as a set ([`crate::gossip`]). Kinds:
//!
//! - lease-engine frames (`pktmesh_lease_engine::wire`): bandwidth and virtual-switch leases,
//!   signed by the node whose link it is; configuration commands (attach, classes, release,
//!   transfer), signed by the lease's owner at that sequence number;
//! - [`Order`] (first byte `0xB1`): a buyer asks for a lease on a link somebody offers; the node
//!   fulfils it by issuing a lease to the buyer, which the book matches to the order;
//! - [`VirtualNetwork`] (first byte `0xB2`): an owner's ordered list of leases along a path and
//!   the virtual-switch leases that knit them together at the nodes in between.
//!
//! # Identity
//! Leases and virtual switches are keyed by [`LeaseKey`] = (issuer key, id) everywhere: a lease
//! from another key reusing an id is a different lease and can neither evict nor shadow the
//! first. Configuration and networks name leases by id alone (the lease-engine format); they
//! apply to the leases with that id that the signer owns. An order and a lease match by their
//! full identity (buyer = original owner, link, start, end; the lease at least as fast); of
//! several orders with one identity, each lease takes the lowest unmatched one in a canonical
//! pairing, so every server pairs the same set the same way.
//!
//! # Arrival checks (API and gossip alike)
//! Signature; a time span not over; for a bandwidth lease, its link `node → peer` is in the
//! graph (both ends announce each other) — so its issuer is the link's source — and the link's
//! capacity (the `LINK_CAPACITY` the node announced, else its offer's kbit/s) is not exceeded
//! at any moment of the span by the leases and pending orders on it ([`BookError::OverCapacity`]
//! names the conflicting ones); for an order, an offer on its link and the same capacity check;
//! for a virtual switch, its node is known; the caps below.
//!
//! # Cost
//! Every index is a B-tree keyed for its query (by (issuer, id), by id, by link, by node, by
//! owner, by buyer, by expiry), so accepting a frame costs O(log n) in the book's size plus work
//! bounded by the per-link and per-lease caps (the capacity sweep, the per-lease replay of its
//! configuration); nothing replays or re-verifies the whole book.
//!
//! # Expiry
//! [`LeaseBook::handle_timeout`] prunes leases and virtual switches [`PRUNE_GRACE_SECS`] after
//! they end (with their configuration, matched orders and the networks that name them),
//! unmatched orders when they end, and network deletions [`PRUNE_GRACE_SECS`] after they
//! arrived. Pruned frames are remembered (a bounded set) so gossip does not fetch them again.

mod book;
mod frames;
mod queries;
mod rules;
#[cfg(test)]
mod tests;

use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::SigningKey;
use pktmesh_lease_engine::wire::{Lease, VirtualSwitchLease, WireError};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use sha2::{Digest, Sha512};
use thiserror::Error;

pub use book::{verify, verify_post, Change, LeaseBook, Verified};
pub use frames::{Order, VirtualNetwork, MAX_VNET_LEASES, ORDER_LEN, ORDER_MAGIC, VNET_MAGIC};

/// How long an expired lease (and its configuration and order) stays in the book before it is
/// pruned: one hour. Late configuration and gossip about it are still answered consistently
/// meanwhile, and `GET /leases` shows it as expired. Unmatched orders go when they end.
pub const PRUNE_GRACE_SECS: u64 = 3600;
/// Most bandwidth leases held on one link (expired ones count until pruned).
pub const MAX_LEASES_PER_LINK: usize = 1024;
/// Most unmatched orders held on one link.
pub const MAX_ORDERS_PER_LINK: usize = 1024;
/// Most unmatched orders one buyer may have pending.
pub const MAX_PENDING_ORDERS_PER_BUYER: usize = 64;
/// Most frames signed by one key (leases issued by a node, configuration by an owner, orders
/// by a buyer, networks by an owner).
pub const MAX_FRAMES_PER_SIGNER: usize = 16_384;
/// Most configuration frames held for one lease id.
pub const MAX_CONFIGS_PER_LEASE: usize = 256;
/// Most virtual networks (including deletions not yet pruned) per owner.
pub const MAX_NETWORKS_PER_OWNER: usize = 256;
/// Most ids of pruned or evicted frames remembered.
pub const MAX_TOMBSTONES: usize = 65_536;

/// The identity of a frame in the book: the first 32 bytes of SHA-512 of its bytes.
pub type ItemId = [u8; 32];

/// A lease's or virtual switch's key: (issuer's signing key, id).
pub type LeaseKey = (SigningKey, LeaseId);

/// The id of `bytes`.
pub fn item_id(bytes: &[u8]) -> ItemId {
    let h = Sha512::digest(bytes);
    let mut id = [0u8; 32];
    id.copy_from_slice(&h[..32]);
    id
}

/// What holds a share of a link's capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// A bandwidth lease.
    Lease(LeaseKey),
    /// An order no lease fulfils yet.
    Order(ItemId),
}

/// A reservation in the way of a new one ([`BookError::OverCapacity`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// Whose.
    pub holder: Holder,
    /// kbit/s it holds.
    pub kbps: u32,
    /// Its span.
    pub start: UnixTime,
    /// Its end.
    pub end: UnixTime,
}

/// Why a frame was refused. The book is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BookError {
    /// A malformed lease-engine frame.
    #[error("malformed lease message: {0}")]
    Wire(#[from] WireError),
    /// A malformed order or virtual-network frame.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The signature does not verify for who must have signed.
    #[error("signature does not verify")]
    BadSignature,
    /// A signing key that is not a cjdns identity.
    #[error("signing key is not a valid key")]
    BadKey,
    /// The lease is over.
    #[error("lease {0} has expired")]
    Expired(LeaseId),
    /// A configuration or network naming a lease the book does not hold.
    #[error("unknown lease {0}")]
    UnknownLease(LeaseId),
    /// Signed by someone other than the owner.
    #[error("lease {0} is not owned by the signer")]
    WrongOwner(LeaseId),
    /// A sequence number not above the last one.
    #[error("sequence number is not above the last one accepted")]
    Replayed,
    /// The command does not apply to this kind of lease (classes of a virtual switch).
    #[error("command not applicable to lease {0}")]
    NotApplicable(LeaseId),
    /// A different lease with this (issuer, id) exists.
    #[error("a different lease with id {0} from this issuer exists")]
    IdConflict(LeaseId),
    /// The network's leases do not form a path.
    #[error("leases {0} and {1} are not consecutive links")]
    NotAChain(LeaseId, LeaseId),
    /// No virtual-switch lease of the owner connects two consecutive leases.
    #[error("no virtual-switch lease connects {0} to {1}")]
    NoVirtualSwitch(LeaseId, LeaseId),
    /// The order asks for more than is offered, or for a link nobody offers.
    #[error("no matching offer: {0}")]
    NoOffer(&'static str),
    /// The lease's link is not in the graph (both ends must announce each other, and the
    /// issuer must be the link's source).
    #[error("no link {from} -> {to} in the graph whose source issued the lease")]
    NoLink {
        /// Sending end (the issuer's address).
        from: Address,
        /// Receiving end.
        to: Address,
    },
    /// A virtual switch at a node the graph does not know.
    #[error("node {0} is not in the graph")]
    UnknownNode(Address),
    /// Neither a capacity nor an offer is announced for the link.
    #[error("the link's node announced neither its capacity nor an offer")]
    NoCapacity,
    /// Accepting it would make the reservations on the link exceed its capacity.
    #[error("over the link's capacity of {capacity_kbps} kbit/s: {requested_kbps} kbit/s more would make {peak_kbps} kbit/s")]
    OverCapacity {
        /// The link's capacity.
        capacity_kbps: u32,
        /// What the frame asks for.
        requested_kbps: u32,
        /// What would be reserved at the worst moment.
        peak_kbps: u64,
        /// The reservations held at that moment.
        conflicts: Vec<Conflict>,
    },
    /// A table limit (see the `MAX_*` constants).
    #[error("limit reached: {what} (at most {max})")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// Its value.
        max: usize,
    },
    /// A network deletion for a network the book does not hold.
    #[error("no such network to delete")]
    NothingToDelete,
    /// Releasing or transferring the lease would break the owner's current network.
    #[error("lease {0} is in a current virtual network; change the network first")]
    InNetwork(LeaseId),
}

/// Why a body of the frame endpoints was refused before the book saw it ([`verify_post`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PostError {
    /// Not the JSON object `{"frame": "<hex>"}`.
    #[error("body must be {{\"frame\": \"<hex>\"}}")]
    NotJson,
    /// The frame is not hex.
    #[error("frame is not hex")]
    NotHex,
    /// The frame does not parse or its signature does not verify.
    #[error(transparent)]
    Frame(#[from] BookError),
}

/// A bandwidth lease with what configuration made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// The lease as issued.
    pub lease: Lease,
    /// The link's sending end (the issuer).
    pub from: Address,
    /// The link's receiving end.
    pub to: Address,
    /// Current owner (after transfers).
    pub owner: SigningKey,
    /// Virtual network it is attached to (0: none).
    pub network: u64,
    /// Default and highest traffic class.
    pub classes: (u8, u8),
    /// Released by its owner.
    pub released: bool,
    /// Last configuration sequence number applied.
    pub seq: u64,
    /// The order it fulfils, if any.
    pub order: Option<ItemId>,
    /// The frame of the lease.
    pub frame: ItemId,
    /// The configuration frames in effect for it, in sequence order.
    pub configs: Vec<ItemId>,
}

impl LeaseState {
    /// Its key.
    pub fn key(&self) -> LeaseKey {
        (self.lease.node, self.lease.id)
    }
}

/// A virtual-switch lease with what configuration made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualSwitchState {
    /// The lease as issued.
    pub lease: VirtualSwitchLease,
    /// The node it is at (the issuer).
    pub node: Address,
    /// Current owner (after transfers).
    pub owner: SigningKey,
    /// Virtual network it is attached to (0: none); the node connects its in- and out-leases
    /// only while it is attached to the network they are attached to.
    pub network: u64,
    /// Released by its owner.
    pub released: bool,
    /// Last configuration sequence number applied.
    pub seq: u64,
    /// The frame of the lease.
    pub frame: ItemId,
    /// The configuration frames in effect for it, in sequence order.
    pub configs: Vec<ItemId>,
}

impl VirtualSwitchState {
    /// Its key.
    pub fn key(&self) -> LeaseKey {
        (self.lease.node, self.lease.id)
    }
}

/// An order with what the book made of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderState {
    /// The order.
    pub order: Order,
    /// The lease that fulfils it.
    pub matched: Option<LeaseKey>,
}

/// What [`LeaseBook::insert`] accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The frame's id.
    pub id: ItemId,
    /// False when the book held it already.
    pub new: bool,
}

/// A lease offer as the graph knows it (from a pktmesh announcement entity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferRef {
    /// kbit/s available per lease.
    pub kbps: u32,
    /// Longest lease.
    pub max_seconds: u32,
}

/// What the graph knows about a link `from → to` that both ends announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkInfo {
    /// Capacity `from` announced for it (`LINK_CAPACITY`).
    pub capacity_kbps: Option<u32>,
    /// `from`'s lease offer on it.
    pub offer: Option<OfferRef>,
}

impl LinkInfo {
    /// What may be leased on it in all: the announced capacity, else the offer's kbit/s.
    pub fn leasable_kbps(&self) -> Option<u32> {
        self.capacity_kbps.or(self.offer.map(|o| o.kbps))
    }
}

/// The graph as the book's arrival checks see it (implemented by [`crate::Graph`]).
pub trait Links {
    /// The link `from → to`, if both ends announce each other.
    fn link(&self, from: &Address, to: &Address) -> Option<LinkInfo>;
    /// Whether the node is in the graph.
    fn knows_node(&self, node: &Address) -> bool;
}

/// No graph at all: for loading frames that passed their arrival checks before.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoLinks;

impl Links for NoLinks {
    fn link(&self, _: &Address, _: &Address) -> Option<LinkInfo> {
        None
    }
    fn knows_node(&self, _: &Address) -> bool {
        false
    }
}

/// Counters of what the book refused or pruned (for `GET /stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Frames accepted.
    pub accepted: u64,
    /// Frames refused for capacity (409).
    pub over_capacity: u64,
    /// Frames refused for a table limit.
    pub limited: u64,
    /// Frames refused for any other reason.
    pub refused: u64,
    /// Frames pruned after expiry.
    pub pruned: u64,
    /// Frames evicted by gossip tie-breaks.
    pub evicted: u64,
}
