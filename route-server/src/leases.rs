//! The lease book: signed lease messages, buy orders and virtual-network configurations the
//! route server holds (durable state), and what they add up to.
//!
//! Everything in the book is a signed frame, and the book's state is a function of the set of
//! frames, so it can be persisted as a set (the driver writes each accepted frame) and gossiped
//! as a set ([`crate::gossip`]). Kinds:
//!
//! - lease-engine frames (`pktmesh_lease_engine::wire`): bandwidth and virtual-switch leases,
//!   signed by the node whose link it is; configuration commands (attach, classes, release,
//!   transfer), signed by the lease's owner at that sequence number. Configuration applies to
//!   both kinds as a node's `LeaseEngine` applies it: attach, release and transfer to either,
//!   classes to bandwidth leases only (a node enforces a virtual switch only once it is attached
//!   to the same network as the leases it connects);
//! - [`Order`] (first byte `0xB1`): a buyer asks for a lease on a link somebody offers; the node
//!   fulfils it by issuing a lease to the buyer, which the book matches to the order;
//! - [`VirtualNetwork`] (first byte `0xB2`): an owner's ordered list of leases along a path
//!   and the virtual-switch leases that knit them together at the nodes in between.
//!
//! Orders and networks are signed with the lease-engine signer (Ed25519 of the cjdns key over
//! `SIGNING_CONTEXT ‖ bytes`); their first byte differs from the lease frame version (1), so no
//! signature can be replayed across kinds.

use std::collections::BTreeMap;

use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::{Signer, SigningKey};
use pktmesh_lease_engine::wire::{
    Command, Frame, Lease, MessageView, VirtualSwitchLease, WireError,
};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use sha2::{Digest, Sha512};
use thiserror::Error;

/// First byte of an order.
pub const ORDER_MAGIC: u8 = 0xb1;
/// First byte of a virtual-network configuration.
pub const VNET_MAGIC: u8 = 0xb2;
/// Length of an order including its signature.
pub const ORDER_LEN: usize = 1 + 16 + 16 + 4 + 8 + 8 + 32 + 8 + 64;
/// Most leases in one virtual network.
pub const MAX_VNET_LEASES: usize = 32;

/// The identity of a frame in the book: the first 32 bytes of SHA-512 of its bytes.
pub type ItemId = [u8; 32];

/// The id of `bytes`.
pub fn item_id(bytes: &[u8]) -> ItemId {
    let h = Sha512::digest(bytes);
    let mut id = [0u8; 32];
    id.copy_from_slice(&h[..32]);
    id
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
    /// A different lease with this id exists.
    #[error("a different lease with id {0} exists")]
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
}

/// A request to buy a bandwidth lease on the link `node → peer`.
///
/// `[0xB1][node 16][peer 16][kbps u32][start u64][end u64][buyer 32][nonce u64][signature 64]`,
/// big-endian; signed by `buyer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// The node whose link it is.
    pub node: Address,
    /// The peer at the other end.
    pub peer: Address,
    /// kbit/s wanted.
    pub kbps: u32,
    /// Start, unix seconds.
    pub start: UnixTime,
    /// End, unix seconds.
    pub end: UnixTime,
    /// The buyer, who will own the lease.
    pub buyer: SigningKey,
    /// Makes orders distinct.
    pub nonce: u64,
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

impl Order {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(ORDER_LEN);
        b.push(ORDER_MAGIC);
        b.extend_from_slice(self.node.as_bytes());
        b.extend_from_slice(self.peer.as_bytes());
        b.extend_from_slice(&self.kbps.to_be_bytes());
        b.extend_from_slice(&self.start.0.to_be_bytes());
        b.extend_from_slice(&self.end.0.to_be_bytes());
        b.extend_from_slice(&self.buyer.0);
        b.extend_from_slice(&self.nonce.to_be_bytes());
        b
    }

    /// Serializes and signs (the signer must be the buyer).
    pub fn emit_signed(&self, signer: &Signer) -> Vec<u8> {
        let mut b = self.body();
        let sig = signer.sign(&b);
        b.extend_from_slice(&sig);
        b
    }

    /// Parses and verifies the buyer's signature.
    pub fn parse_verified(bytes: &[u8]) -> Result<Self, BookError> {
        if bytes.len() != ORDER_LEN || bytes[0] != ORDER_MAGIC {
            return Err(BookError::Malformed("order"));
        }
        let o = Self {
            node: Address::from_bytes(arr(bytes, 1)),
            peer: Address::from_bytes(arr(bytes, 17)),
            kbps: u32::from_be_bytes(arr(bytes, 33)),
            start: UnixTime(u64::from_be_bytes(arr(bytes, 37))),
            end: UnixTime(u64::from_be_bytes(arr(bytes, 45))),
            buyer: SigningKey(arr(bytes, 53)),
            nonce: u64::from_be_bytes(arr(bytes, 85)),
        };
        if o.kbps == 0 || o.end <= o.start {
            return Err(BookError::Malformed("order (zero rate or empty span)"));
        }
        if !o
            .buyer
            .verify(&bytes[..ORDER_LEN - 64], &arr(bytes, ORDER_LEN - 64))
        {
            return Err(BookError::BadSignature);
        }
        Ok(o)
    }
}

/// An owner's virtual network: leases along a path, in order, and the virtual-switch leases
/// that connect each to the next.
///
/// `[0xB2][id u64][owner 32][seq u64][n_leases u8][n_vswitches u8][lease ids 16·n][vswitch ids
/// 16·m][signature 64]`; signed by `owner`. A later `seq` for the same `(owner, id)` replaces
/// the network; an empty lease list deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetwork {
    /// Network id chosen by the owner (the `network` of attach commands).
    pub id: u64,
    /// The owner.
    pub owner: SigningKey,
    /// Version of this configuration.
    pub seq: u64,
    /// Bandwidth leases along the path, in order.
    pub leases: Vec<LeaseId>,
    /// Virtual-switch leases at the nodes in between.
    pub vswitches: Vec<LeaseId>,
}

impl VirtualNetwork {
    fn body(&self) -> Vec<u8> {
        let mut b = vec![VNET_MAGIC];
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.owner.0);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.push(self.leases.len() as u8);
        b.push(self.vswitches.len() as u8);
        for l in self.leases.iter().chain(&self.vswitches) {
            b.extend_from_slice(&l.0);
        }
        b
    }

    /// Serializes and signs (the signer must be the owner). At most [`MAX_VNET_LEASES`] of
    /// each list are written.
    pub fn emit_signed(&self, signer: &Signer) -> Vec<u8> {
        let mut v = self.clone();
        v.leases.truncate(MAX_VNET_LEASES);
        v.vswitches.truncate(MAX_VNET_LEASES);
        let mut b = v.body();
        let sig = signer.sign(&b);
        b.extend_from_slice(&sig);
        b
    }

    /// Parses and verifies the owner's signature.
    pub fn parse_verified(bytes: &[u8]) -> Result<Self, BookError> {
        const FIXED: usize = 1 + 8 + 32 + 8 + 2;
        if bytes.len() < FIXED + 64 || bytes[0] != VNET_MAGIC {
            return Err(BookError::Malformed("virtual network"));
        }
        let (n, m) = (usize::from(bytes[49]), usize::from(bytes[50]));
        if n > MAX_VNET_LEASES || m > MAX_VNET_LEASES || bytes.len() != FIXED + 16 * (n + m) + 64 {
            return Err(BookError::Malformed("virtual network"));
        }
        let ids = |from: usize, count: usize| {
            (0..count)
                .map(|i| LeaseId(arr(bytes, from + 16 * i)))
                .collect::<Vec<_>>()
        };
        let v = Self {
            id: u64::from_be_bytes(arr(bytes, 1)),
            owner: SigningKey(arr(bytes, 9)),
            seq: u64::from_be_bytes(arr(bytes, 41)),
            leases: ids(FIXED, n),
            vswitches: ids(FIXED + 16 * n, m),
        };
        let signed = bytes.len() - 64;
        if !v.owner.verify(&bytes[..signed], &arr(bytes, signed)) {
            return Err(BookError::BadSignature);
        }
        Ok(v)
    }
}

/// A bandwidth lease with what configuration made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseState {
    /// The lease as issued.
    pub lease: Lease,
    /// The link's sending end.
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

/// The state derived from a set of frames.
#[derive(Debug, Clone, Default)]
struct Derived {
    leases: BTreeMap<LeaseId, LeaseState>,
    vswitches: BTreeMap<LeaseId, VirtualSwitchState>,
    orders: BTreeMap<ItemId, Order>,
    networks: BTreeMap<(SigningKey, u64), VirtualNetwork>,
}

/// The set of signed frames and the state derived from it.
///
/// The state is recomputed by replaying the set in a canonical order (orders, then leases and
/// virtual-switch leases, then configuration by target and sequence number, then networks by
/// owner, id and sequence number, newest first), so it does not depend on arrival order. A
/// frame enters the set only if it passes the time and offer checks at arrival and then takes
/// effect in the replay (a configuration signed by a non-owner, a replayed sequence number,
/// classes for a virtual switch, a network whose leases do not chain are refused).
#[derive(Debug, Clone, Default)]
pub struct LeaseBook {
    frames: BTreeMap<ItemId, Vec<u8>>,
    state: Derived,
}

fn address_of(k: &SigningKey) -> Result<Address, BookError> {
    Ok(k.cjdns_key().ok_or(BookError::BadKey)?.address())
}

enum Parsed {
    Order(Order),
    Lease(Lease),
    VSwitch(VirtualSwitchLease),
    Config(pktmesh_lease_engine::wire::Config),
    Network(VirtualNetwork),
}

fn parse(bytes: &[u8]) -> Result<Parsed, BookError> {
    match bytes.first() {
        Some(&ORDER_MAGIC) => Ok(Parsed::Order(Order::parse_verified(bytes)?)),
        Some(&VNET_MAGIC) => Ok(Parsed::Network(VirtualNetwork::parse_verified(bytes)?)),
        _ => {
            let frame = Frame::new_checked(bytes)?;
            let sig = frame.signature();
            let signed = frame.signed_bytes();
            match frame.view()? {
                MessageView::Lease(v) => {
                    if !v.node().verify(signed, &sig) {
                        return Err(BookError::BadSignature);
                    }
                    Ok(Parsed::Lease(v.into()))
                }
                MessageView::VirtualSwitch(v) => {
                    if !v.node().verify(signed, &sig) {
                        return Err(BookError::BadSignature);
                    }
                    Ok(Parsed::VSwitch(v.into()))
                }
                MessageView::Config(c) => {
                    if !c.signer().verify(signed, &sig) {
                        return Err(BookError::BadSignature);
                    }
                    Ok(Parsed::Config(c.into()))
                }
            }
        }
    }
}

/// Replays `frames` canonically; returns the state and, for each frame that did not take
/// effect, why.
fn replay(frames: &BTreeMap<ItemId, Vec<u8>>) -> (Derived, BTreeMap<ItemId, BookError>) {
    let mut d = Derived::default();
    let mut refused = BTreeMap::new();
    let mut leases = Vec::new();
    let mut vswitches = Vec::new();
    let mut configs = Vec::new();
    let mut networks = Vec::new();
    for (id, bytes) in frames {
        match parse(bytes) {
            Ok(Parsed::Order(o)) => {
                d.orders.insert(*id, o);
            }
            Ok(Parsed::Lease(l)) => leases.push((*id, l)),
            Ok(Parsed::VSwitch(v)) => vswitches.push((*id, v)),
            Ok(Parsed::Config(c)) => configs.push((*id, c)),
            Ok(Parsed::Network(n)) => networks.push((*id, n)),
            Err(e) => {
                refused.insert(*id, e);
            }
        }
    }
    leases.sort_by_key(|(id, l)| (l.id, *id));
    for (id, lease) in leases {
        if let Some(old) = d.leases.get(&lease.id) {
            if old.lease != lease {
                refused.insert(id, BookError::IdConflict(lease.id));
            }
            continue;
        }
        let from = match address_of(&lease.node) {
            Ok(a) => a,
            Err(e) => {
                refused.insert(id, e);
                continue;
            }
        };
        let to = pktmesh_crypto_auth::PublicKey::from_bytes(lease.peer).address();
        let order = d
            .orders
            .iter()
            .find(|(oid, o)| {
                o.node == from
                    && o.peer == to
                    && o.buyer == lease.owner
                    && o.kbps <= lease.kbps
                    && !d.leases.values().any(|l| l.order == Some(**oid))
            })
            .map(|(oid, _)| *oid);
        d.leases.insert(
            lease.id,
            LeaseState {
                owner: lease.owner,
                lease,
                from,
                to,
                network: 0,
                classes: (0, 15),
                released: false,
                seq: 0,
                order,
            },
        );
    }
    vswitches.sort_by_key(|(id, v)| (v.id, *id));
    for (id, v) in vswitches {
        if let Some(old) = d.vswitches.get(&v.id) {
            if old.lease != v {
                refused.insert(id, BookError::IdConflict(v.id));
            }
            continue;
        }
        // One id, one lease: configuration names its target by id alone.
        if d.leases.contains_key(&v.id) {
            refused.insert(id, BookError::IdConflict(v.id));
            continue;
        }
        let node = match address_of(&v.node) {
            Ok(a) => a,
            Err(e) => {
                refused.insert(id, e);
                continue;
            }
        };
        d.vswitches.insert(
            v.id,
            VirtualSwitchState {
                node,
                owner: v.owner,
                lease: v,
                network: 0,
                released: false,
                seq: 0,
            },
        );
    }
    configs.sort_by_key(|(id, c)| (c.target, c.seq, *id));
    for (id, c) in configs {
        if let Err(e) = configure(&mut d, &c) {
            refused.insert(id, e);
        }
    }
    // Per (owner, id), newest first: the newest configuration that holds against the leases as
    // configured is in effect, newer ones that do not are refused, older ones are history and
    // are not checked again (else a lease that was once in a network, since replaced or
    // deleted, could never be released or transferred). Of two with one sequence number the
    // lower frame id is kept. Dropping the refused frames gives the same state.
    networks.sort_by_key(|(id, n)| (n.owner, n.id, std::cmp::Reverse(n.seq), *id));
    let mut decided = std::collections::BTreeSet::new();
    let mut kept: Option<((SigningKey, u64), u64)> = None;
    for (id, n) in networks {
        let key = (n.owner, n.id);
        if kept == Some((key, n.seq)) {
            refused.insert(id, BookError::Replayed);
            continue;
        }
        if decided.contains(&key) {
            kept = Some((key, n.seq));
            continue;
        }
        if let Err(e) = check_network(&d, None, &n) {
            refused.insert(id, e);
            continue;
        }
        kept = Some((key, n.seq));
        decided.insert(key);
        if !n.leases.is_empty() {
            d.networks.insert(key, n);
        }
    }
    (d, refused)
}

/// Applies one configuration command to its target, a bandwidth or a virtual-switch lease, with
/// the checks a node's `LeaseEngine` makes (the time span is checked on arrival, in
/// [`LeaseBook::insert`]): the target is known, the signer owns it, the sequence number is above
/// the last one, the command applies to the kind. Changes nothing when refused.
fn configure(d: &mut Derived, c: &pktmesh_lease_engine::wire::Config) -> Result<(), BookError> {
    let (owner, last) = if let Some(l) = d.leases.get(&c.target) {
        (l.owner, l.seq)
    } else if let Some(v) = d.vswitches.get(&c.target) {
        (v.owner, v.seq)
    } else {
        return Err(BookError::UnknownLease(c.target));
    };
    if c.signer != owner {
        return Err(BookError::WrongOwner(c.target));
    }
    if c.seq <= last {
        return Err(BookError::Replayed);
    }
    if let Some(l) = d.leases.get_mut(&c.target) {
        match c.command {
            Command::Attach { network } => l.network = network,
            Command::SetClasses {
                default_class,
                max_class,
            } => l.classes = (default_class, max_class),
            Command::Release => l.released = true,
            Command::Transfer { new_owner } => l.owner = new_owner,
        }
        l.seq = c.seq;
    } else if let Some(v) = d.vswitches.get_mut(&c.target) {
        match c.command {
            Command::Attach { network } => v.network = network,
            Command::SetClasses { .. } => return Err(BookError::NotApplicable(c.target)),
            Command::Release => v.released = true,
            Command::Transfer { new_owner } => v.owner = new_owner,
        }
        v.seq = c.seq;
    }
    Ok(())
}

fn check_network(d: &Derived, now: Option<UnixTime>, v: &VirtualNetwork) -> Result<(), BookError> {
    let live = |end: UnixTime| now.is_none_or(|n| n < end);
    let mut prev: Option<&LeaseState> = None;
    for id in &v.leases {
        let l = d.leases.get(id).ok_or(BookError::UnknownLease(*id))?;
        if l.owner != v.owner || l.released {
            return Err(BookError::WrongOwner(*id));
        }
        if !live(l.lease.end) {
            return Err(BookError::Expired(*id));
        }
        if let Some(p) = prev {
            if p.to != l.from {
                return Err(BookError::NotAChain(p.lease.id, l.lease.id));
            }
            let knit = v.vswitches.iter().any(|s| {
                d.vswitches.get(s).is_some_and(|vs| {
                    vs.owner == v.owner
                        && !vs.released
                        && live(vs.lease.end)
                        && vs.node == l.from
                        && vs.lease.ins.contains(&p.lease.id)
                        && vs.lease.outs.contains(&l.lease.id)
                })
            });
            if !knit {
                return Err(BookError::NoVirtualSwitch(p.lease.id, l.lease.id));
            }
        }
        prev = Some(l);
    }
    Ok(())
}

impl LeaseBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// A book holding `frames` (as loaded from the database), without arrival checks; frames
    /// that do not take effect are dropped.
    pub fn from_frames(frames: impl IntoIterator<Item = Vec<u8>>) -> Self {
        let frames: BTreeMap<ItemId, Vec<u8>> =
            frames.into_iter().map(|b| (item_id(&b), b)).collect();
        let (state, refused) = replay(&frames);
        let frames = frames
            .into_iter()
            .filter(|(id, _)| !refused.contains_key(id))
            .collect();
        Self { frames, state }
    }

    /// Every frame held, by id (what to persist and gossip).
    pub fn frames(&self) -> impl Iterator<Item = (&ItemId, &Vec<u8>)> {
        self.frames.iter()
    }

    /// Whether the frame with this id is held.
    pub fn contains(&self, id: &ItemId) -> bool {
        self.frames.contains_key(id)
    }

    /// Bandwidth leases.
    pub fn leases(&self) -> impl Iterator<Item = &LeaseState> {
        self.state.leases.values()
    }

    /// One lease.
    pub fn lease(&self, id: &LeaseId) -> Option<&LeaseState> {
        self.state.leases.get(id)
    }

    /// Virtual-switch leases, with their configuration.
    pub fn vswitches(&self) -> impl Iterator<Item = &VirtualSwitchState> {
        self.state.vswitches.values()
    }

    /// One virtual-switch lease.
    pub fn vswitch(&self, id: &LeaseId) -> Option<&VirtualSwitchState> {
        self.state.vswitches.get(id)
    }

    /// Orders, by frame id.
    pub fn orders(&self) -> impl Iterator<Item = (&ItemId, &Order)> {
        self.state.orders.iter()
    }

    /// Orders for links of `node` that no lease fulfils yet (what the node should issue).
    pub fn pending_orders(&self, node: &Address) -> Vec<(ItemId, Order)> {
        self.state
            .orders
            .iter()
            .filter(|(id, o)| {
                o.node == *node && !self.state.leases.values().any(|l| l.order == Some(**id))
            })
            .map(|(id, o)| (*id, *o))
            .collect()
    }

    /// Virtual networks.
    pub fn networks(&self) -> impl Iterator<Item = &VirtualNetwork> {
        self.state.networks.values()
    }

    /// The links `owner` holds an active, unreleased lease on at `now` (for path costs).
    pub fn leased_links(&self, owner: &SigningKey, now: UnixTime) -> Vec<(Address, Address)> {
        self.state
            .leases
            .values()
            .filter(|l| {
                l.owner == *owner && !l.released && l.lease.start <= now && now < l.lease.end
            })
            .map(|l| (l.from, l.to))
            .collect()
    }

    /// A digest of the set of frames (equal digests: equal books).
    pub fn digest(&self) -> [u8; 64] {
        let mut h = Sha512::new();
        for id in self.frames.keys() {
            h.update(id);
        }
        h.finalize().into()
    }

    /// Adds a frame another route server passed on: signature and replay checks only (the
    /// first server made the arrival checks; repeating them later would make servers disagree
    /// about the same set).
    pub fn insert_gossip(&mut self, bytes: &[u8]) -> Result<Accepted, BookError> {
        let id = item_id(bytes);
        if self.frames.contains_key(&id) {
            return Ok(Accepted { id, new: false });
        }
        parse(bytes)?;
        self.accept(id, bytes, true)
    }

    /// Adds `bytes` if it takes effect in the replay. A newcomer that displaces a held frame
    /// (an owner signed two different frames with the same sequence number, and the new one
    /// sorts first) is refused when `evict` is false (API: first come, first served) and
    /// evicts the other when true (gossip: the lowest id wins everywhere, so servers agree).
    fn accept(&mut self, id: ItemId, bytes: &[u8], evict: bool) -> Result<Accepted, BookError> {
        let mut frames = self.frames.clone();
        frames.insert(id, bytes.to_vec());
        let (state, mut refused) = replay(&frames);
        if let Some(e) = refused.remove(&id) {
            return Err(e);
        }
        if !evict {
            if let Some((_, e)) = refused.pop_first() {
                return Err(e);
            }
        }
        for gone in refused.keys() {
            frames.remove(gone);
        }
        self.frames = frames;
        self.state = state;
        Ok(Accepted { id, new: true })
    }

    /// Verifies and adds one frame. `offer` looks up the offer for a link (orders must match
    /// one). Rejected frames change nothing.
    pub fn insert(
        &mut self,
        now: UnixTime,
        bytes: &[u8],
        offer: impl Fn(&Address, &Address) -> Option<OfferRef>,
    ) -> Result<Accepted, BookError> {
        let id = item_id(bytes);
        if self.frames.contains_key(&id) {
            return Ok(Accepted { id, new: false });
        }
        // Arrival checks: signature, time, offers.
        match parse(bytes)? {
            Parsed::Order(o) => {
                if o.end <= now {
                    return Err(BookError::NoOffer("the order's span is over"));
                }
                let off = offer(&o.node, &o.peer).ok_or(BookError::NoOffer("link not offered"))?;
                if o.kbps > off.kbps {
                    return Err(BookError::NoOffer("more kbit/s than offered"));
                }
                if o.end.0 - o.start.0 > u64::from(off.max_seconds) {
                    return Err(BookError::NoOffer("longer than offered"));
                }
            }
            Parsed::Lease(l) if l.end <= now => return Err(BookError::Expired(l.id)),
            Parsed::VSwitch(v) if v.end <= now => return Err(BookError::Expired(v.id)),
            Parsed::Config(c) => {
                let end = match (
                    self.state.leases.get(&c.target),
                    self.state.vswitches.get(&c.target),
                ) {
                    (Some(l), _) => Some(l.lease.end),
                    (None, Some(v)) => Some(v.lease.end),
                    (None, None) => None,
                };
                if end.is_some_and(|end| end <= now) {
                    return Err(BookError::Expired(c.target));
                }
            }
            Parsed::Network(n) => check_network(&self.state, Some(now), &n)?,
            _ => {}
        }
        self.accept(id, bytes, false)
    }
}

#[cfg(test)]
mod tests {
    use pktmesh_crypto_auth::PrivateKey;
    use pktmesh_lease_engine::wire::Message;

    use super::*;

    const NOW: UnixTime = UnixTime(1_700_000_000);

    fn signer(n: u8) -> Signer {
        Signer::from_cjdns(&PrivateKey::from_bytes([n; 32]))
    }

    fn lease(node: u8, peer: u8, owner: &Signer, id: u8) -> Vec<u8> {
        let s = signer(node);
        Message::Lease(Lease {
            id: LeaseId([id; 16]),
            node: s.public(),
            peer: *PrivateKey::from_bytes([peer; 32]).public_key().as_bytes(),
            kbps: 1000,
            start: UnixTime(NOW.0 - 1),
            end: UnixTime(NOW.0 + 100),
            owner: owner.public(),
        })
        .emit_signed(&s)
        .unwrap()
    }

    fn vswitch(node: u8, owner: &Signer, id: u8, ins: u8, outs: u8) -> Vec<u8> {
        let s = signer(node);
        Message::VirtualSwitch(VirtualSwitchLease {
            id: LeaseId([id; 16]),
            node: s.public(),
            owner: owner.public(),
            start: UnixTime(NOW.0 - 1),
            end: UnixTime(NOW.0 + 100),
            ins: vec![LeaseId([ins; 16])],
            outs: vec![LeaseId([outs; 16])],
        })
        .emit_signed(&s)
        .unwrap()
    }

    fn network(owner: &Signer, seq: u64, leases: &[u8], vs: &[u8]) -> Vec<u8> {
        VirtualNetwork {
            id: 1,
            owner: owner.public(),
            seq,
            leases: leases.iter().map(|&i| LeaseId([i; 16])).collect(),
            vswitches: vs.iter().map(|&i| LeaseId([i; 16])).collect(),
        }
        .emit_signed(owner)
    }

    #[test]
    fn virtual_networks_must_chain_through_virtual_switches() {
        let owner = signer(50);
        let mut book = LeaseBook::new();
        let none = |_: &Address, _: &Address| None;
        // Links 1→2 (lease 1), 2→3 (lease 2), 4→5 (lease 3).
        for f in [
            lease(1, 2, &owner, 1),
            lease(2, 3, &owner, 2),
            lease(4, 5, &owner, 3),
        ] {
            book.insert(NOW, &f, none).unwrap();
        }
        let before = book.digest();
        assert_eq!(
            book.insert(NOW, &network(&owner, 1, &[1, 3], &[]), none),
            Err(BookError::NotAChain(LeaseId([1; 16]), LeaseId([3; 16])))
        );
        assert_eq!(
            book.insert(NOW, &network(&owner, 1, &[1, 2], &[]), none),
            Err(BookError::NoVirtualSwitch(
                LeaseId([1; 16]),
                LeaseId([2; 16])
            ))
        );
        // A virtual switch at the wrong node does not count.
        book.insert(NOW, &vswitch(3, &owner, 9, 1, 2), none)
            .unwrap();
        assert!(book
            .insert(NOW, &network(&owner, 1, &[1, 2], &[9]), none)
            .is_err());
        // Someone else's network over our leases.
        let other = signer(51);
        assert_eq!(
            book.insert(NOW, &network(&other, 1, &[1], &[]), none),
            Err(BookError::WrongOwner(LeaseId([1; 16])))
        );
        let mid = book.digest();
        assert_ne!(before, mid, "only the virtual switch was added");
        book.insert(NOW, &vswitch(2, &owner, 10, 1, 2), none)
            .unwrap();
        book.insert(NOW, &network(&owner, 1, &[1, 2], &[10]), none)
            .unwrap();
        assert_eq!(book.networks().count(), 1);
        // Replayed sequence number; then deletion with an empty list.
        assert_eq!(
            book.insert(NOW, &network(&owner, 1, &[1], &[]), none),
            Err(BookError::Replayed)
        );
        book.insert(NOW, &network(&owner, 2, &[], &[]), none)
            .unwrap();
        assert_eq!(book.networks().count(), 0);
        // Reloading the frames gives the same book.
        let reloaded = LeaseBook::from_frames(book.frames().map(|(_, b)| b.clone()));
        assert_eq!(reloaded.digest(), book.digest());
        assert_eq!(reloaded.networks().count(), 0);
    }

    fn config(signer: &Signer, target: u8, seq: u64, command: Command) -> Vec<u8> {
        Message::Config(pktmesh_lease_engine::wire::Config {
            target: LeaseId([target; 16]),
            signer: signer.public(),
            seq,
            command,
        })
        .emit_signed(signer)
        .unwrap()
    }

    #[test]
    fn virtual_switches_take_configuration_like_the_engine() {
        let owner = signer(80);
        let heir = signer(81);
        let stranger = signer(82);
        let none = |_: &Address, _: &Address| None;
        let attach = |network| Command::Attach { network };
        let vs = LeaseId([10; 16]);
        let mut book = LeaseBook::new();
        // Links 1→2 (lease 1) and 2→3 (lease 2), a virtual switch at 2 connecting them.
        for f in [
            lease(1, 2, &owner, 1),
            lease(2, 3, &owner, 2),
            vswitch(2, &owner, 10, 1, 2),
        ] {
            book.insert(NOW, &f, none).unwrap();
        }
        let state = book.vswitch(&vs).unwrap();
        assert_eq!(
            (state.owner, state.network, state.released, state.seq),
            (owner.public(), 0, false, 0)
        );
        assert_eq!(state.node, address_of(&signer(2).public()).unwrap());

        // The owner attaches it.
        book.insert(NOW, &config(&owner, 10, 5, attach(7)), none)
            .unwrap();
        assert_eq!(book.vswitch(&vs).unwrap().network, 7);
        assert_eq!(book.vswitch(&vs).unwrap().seq, 5);
        assert_eq!(book.vswitches().count(), 1);

        // Refused, and nothing changes: someone else, a replayed or an old sequence number,
        // classes (not applicable to a virtual switch), an unknown target, a lapsed lease.
        let before = (book.digest(), book.vswitch(&vs).cloned());
        let refusals = [
            (
                config(&stranger, 10, 6, attach(8)),
                BookError::WrongOwner(vs),
            ),
            (config(&owner, 10, 5, attach(8)), BookError::Replayed),
            (
                config(
                    &owner,
                    10,
                    6,
                    Command::SetClasses {
                        default_class: 1,
                        max_class: 3,
                    },
                ),
                BookError::NotApplicable(vs),
            ),
            (
                config(&owner, 11, 6, attach(8)),
                BookError::UnknownLease(LeaseId([11; 16])),
            ),
        ];
        for (frame, error) in refusals {
            assert_eq!(book.insert(NOW, &frame, none), Err(error));
            assert_eq!((book.digest(), book.vswitch(&vs).cloned()), before);
        }
        assert_eq!(
            book.insert(
                UnixTime(NOW.0 + 100),
                &config(&owner, 10, 6, attach(8)),
                none
            ),
            Err(BookError::Expired(vs))
        );
        assert_eq!((book.digest(), book.vswitch(&vs).cloned()), before);
        // A virtual switch cannot take the id of a bandwidth lease.
        assert_eq!(
            book.insert(NOW, &vswitch(2, &owner, 1, 1, 2), none),
            Err(BookError::IdConflict(LeaseId([1; 16])))
        );
        // An older sequence number arriving late is history (the replay sorts by sequence
        // number): held, but the state stays at the newest.
        book.insert(NOW, &config(&owner, 10, 4, attach(8)), none)
            .unwrap();
        assert_eq!(book.vswitch(&vs).unwrap().network, 7);
        assert_eq!(book.vswitch(&vs).unwrap().seq, 5);

        // It knits the owner's network together.
        book.insert(NOW, &network(&owner, 1, &[1, 2], &[10]), none)
            .unwrap();
        book.insert(NOW, &network(&owner, 2, &[], &[]), none)
            .unwrap();

        // Transfer: the heir continues above the sequence number, the old owner is out.
        let transfer = Command::Transfer {
            new_owner: heir.public(),
        };
        book.insert(NOW, &config(&owner, 10, 6, transfer), none)
            .unwrap();
        assert_eq!(book.vswitch(&vs).unwrap().owner, heir.public());
        assert_eq!(
            book.insert(NOW, &config(&owner, 10, 7, attach(9)), none),
            Err(BookError::WrongOwner(vs))
        );
        book.insert(NOW, &config(&heir, 10, 7, attach(9)), none)
            .unwrap();
        assert_eq!(book.vswitch(&vs).unwrap().network, 9);
        // The heir's virtual switch does not connect the owner's leases.
        assert_eq!(
            book.insert(NOW, &network(&owner, 3, &[1, 2], &[10]), none),
            Err(BookError::NoVirtualSwitch(
                LeaseId([1; 16]),
                LeaseId([2; 16])
            ))
        );

        // Release.
        book.insert(NOW, &config(&heir, 10, 8, Command::Release), none)
            .unwrap();
        let state = book.vswitch(&vs).unwrap();
        assert_eq!(
            (state.owner, state.network, state.released, state.seq),
            (heir.public(), 9, true, 8)
        );

        // The state is a function of the set: reloading, or gossiping in reverse, agrees.
        let frames: Vec<Vec<u8>> = book.frames().map(|(_, b)| b.clone()).collect();
        let reloaded = LeaseBook::from_frames(frames.clone());
        assert_eq!(reloaded.digest(), book.digest());
        assert_eq!(reloaded.vswitch(&vs), book.vswitch(&vs));
        let mut gossiped = LeaseBook::new();
        for _ in 0..2 {
            for f in frames.iter().rev() {
                let _ = gossiped.insert_gossip(f);
            }
        }
        assert_eq!(gossiped.digest(), book.digest());
        assert_eq!(gossiped.vswitch(&vs), book.vswitch(&vs));
    }

    #[test]
    fn orders_need_an_offer_and_a_valid_signature() {
        let buyer = signer(60);
        let order = Order {
            node: Address::from_bytes([0xfc; 16]),
            peer: Address::from_bytes([0xfd; 16]),
            kbps: 100,
            start: NOW,
            end: UnixTime(NOW.0 + 60),
            buyer: buyer.public(),
            nonce: 0,
        };
        let bytes = order.emit_signed(&buyer);
        assert_eq!(Order::parse_verified(&bytes), Ok(order));
        let mut book = LeaseBook::new();
        assert_eq!(
            book.insert(NOW, &bytes, |_, _| None),
            Err(BookError::NoOffer("link not offered"))
        );
        let offer = |_: &Address, _: &Address| {
            Some(OfferRef {
                kbps: 50,
                max_seconds: 3600,
            })
        };
        assert_eq!(
            book.insert(NOW, &bytes, offer),
            Err(BookError::NoOffer("more kbit/s than offered"))
        );
        let mut forged = bytes.clone();
        forged[90] ^= 1;
        assert_eq!(
            book.insert(NOW, &forged, |_, _| None),
            Err(BookError::BadSignature)
        );
        assert_eq!(
            book.insert(NOW, &bytes[..100], |_, _| None),
            Err(BookError::Malformed("order"))
        );
        let generous = |_: &Address, _: &Address| {
            Some(OfferRef {
                kbps: 500,
                max_seconds: 3600,
            })
        };
        assert!(book.insert(NOW, &bytes, generous).unwrap().new);
        assert_eq!(book.pending_orders(&order.node).len(), 1);
    }

    #[test]
    fn equivocation_resolves_the_same_way_everywhere() {
        let owner = signer(70);
        let l = lease(1, 2, &owner, 1);
        let cfg = |network| {
            Message::Config(pktmesh_lease_engine::wire::Config {
                target: LeaseId([1; 16]),
                signer: owner.public(),
                seq: 1,
                command: Command::Attach { network },
            })
            .emit_signed(&owner)
            .unwrap()
        };
        let (x, y) = (cfg(5), cfg(6));
        let mut a = LeaseBook::new();
        let mut b = LeaseBook::new();
        for book in [&mut a, &mut b] {
            book.insert_gossip(&l).unwrap();
        }
        a.insert_gossip(&x).unwrap();
        b.insert_gossip(&y).unwrap();
        // Exchange both ways.
        let _ = a.insert_gossip(&y);
        let _ = b.insert_gossip(&x);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.frames().count(), 2);
    }
}
