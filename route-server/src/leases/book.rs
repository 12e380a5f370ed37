//! [`LeaseBook`]: the held frames, the state they add up to and the indexes that keep every
//! arrival O(log n) (see the module docs of [`crate::leases`]). The rules that decide whether a
//! frame takes effect (capacity, order pairing, configuration replay, network checks) are in
//! `rules.rs`, the read side in `queries.rs`; this file stores, indexes and prunes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_lease_engine::sign::SigningKey;
use pktmesh_lease_engine::wire::{Config, Lease, VirtualSwitchLease};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use serde::Deserialize;

use super::frames::{address_of, parse, Parsed};
use super::{
    Accepted, BookError, BookStats, ItemId, LeaseKey, LeaseState, Links, NoLinks, OrderState,
    PostError, VirtualNetwork, VirtualSwitchState, MAX_CONFIGS_PER_LEASE, MAX_FRAMES_PER_SIGNER,
    MAX_LEASES_PER_LINK, MAX_NETWORKS_PER_OWNER, MAX_ORDERS_PER_LINK, MAX_PENDING_ORDERS_PER_BUYER,
    MAX_TOMBSTONES, PRUNE_GRACE_SECS,
};

pub(super) const MIN_ADDR: Address = Address::from_bytes([0; 16]);
pub(super) const MAX_ADDR: Address = Address::from_bytes([0xff; 16]);
pub(super) const MIN_KEY: SigningKey = SigningKey([0; 32]);
pub(super) const MAX_KEY: SigningKey = SigningKey([0xff; 32]);
pub(super) const MIN_ID: LeaseId = LeaseId([0; 16]);
pub(super) const MAX_ID: LeaseId = LeaseId([0xff; 16]);

/// How a frame arrived: decides the checks and how ties are broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The public API: every arrival check; a newcomer that would displace a held frame is
    /// refused (first come, first served).
    Api,
    /// Another route server: every arrival check; a newcomer that wins a tie-break evicts.
    Gossip,
    /// The database at start-up: the frames passed their checks when they arrived; only
    /// structure is checked (the graph is empty then).
    Load,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeldKind {
    Order,
    Lease(LeaseKey),
    VSwitch(LeaseKey),
    Config(LeaseId, u64),
    Network(SigningKey, u64),
}

#[derive(Debug, Clone)]
pub(super) struct Held {
    pub(super) bytes: Arc<[u8]>,
    pub(super) signer: SigningKey,
    pub(super) kind: HeldKind,
}

/// The current version of an owner's network and the leases and virtual switches it uses.
#[derive(Debug, Clone)]
pub(super) struct NetEntry {
    pub(super) frame: ItemId,
    pub(super) net: VirtualNetwork,
    pub(super) uses: Vec<LeaseKey>,
}

/// A change to the set of held frames (what the driver persists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A frame was added.
    Added(ItemId, Arc<[u8]>),
    /// A frame was removed (pruned, superseded or evicted).
    Removed(ItemId),
}

/// A frame whose signature has been checked ([`verify`]), ready for
/// [`LeaseBook::insert_verified`].
#[derive(Debug, Clone)]
pub struct Verified {
    id: ItemId,
    bytes: Vec<u8>,
    parsed: Parsed,
}

impl Verified {
    /// The frame's id.
    pub fn id(&self) -> ItemId {
        self.id
    }
}

/// Parses any frame the book holds and checks its signature (the costly part of an arrival,
/// which needs no lock).
pub fn verify(bytes: &[u8]) -> Result<Verified, BookError> {
    Ok(Verified {
        id: super::item_id(bytes),
        parsed: parse(bytes)?,
        bytes: bytes.to_vec(),
    })
}

/// The body of the frame endpoints (`POST /leases`, `/orders`, `/networks`).
#[derive(Debug, Deserialize)]
struct PostBody {
    /// The signed frame, hex.
    frame: String,
}

/// Reads a body of the frame endpoints, `{"frame": "<hex>"}`, and [`verify`]s the frame: all
/// the HTTP driver does before it locks the book. Never panics.
pub fn verify_post(body: &[u8]) -> Result<Verified, PostError> {
    let PostBody { frame } = serde_json::from_slice(body).map_err(|_| PostError::NotJson)?;
    let bytes = hex::decode(frame.trim()).map_err(|_| PostError::NotHex)?;
    Ok(verify(&bytes)?)
}

/// The set of signed frames, the state derived from it, and its indexes.
#[derive(Debug, Clone)]
pub struct LeaseBook {
    pub(super) frames: BTreeMap<ItemId, Held>,
    pub(super) leases: BTreeMap<LeaseKey, LeaseState>,
    pub(super) vswitches: BTreeMap<LeaseKey, VirtualSwitchState>,
    /// Leases and virtual switches by id, then issuer.
    pub(super) ids: BTreeSet<(LeaseId, SigningKey)>,
    /// Bandwidth leases by link.
    pub(super) by_link: BTreeSet<(Address, Address, LeaseKey)>,
    /// Leases by both ends, virtual switches by their node.
    pub(super) by_node: BTreeSet<(Address, LeaseKey)>,
    /// Leases and virtual switches by current owner.
    pub(super) by_owner: BTreeSet<(SigningKey, LeaseKey)>,
    pub(super) configs: BTreeMap<(LeaseId, u64, ItemId), Config>,
    pub(super) orders: BTreeMap<ItemId, OrderState>,
    pub(super) orders_by_link: BTreeSet<(Address, Address, ItemId)>,
    pub(super) orders_by_buyer: BTreeSet<(SigningKey, ItemId)>,
    pub(super) pending_by_buyer: HashMap<SigningKey, usize>,
    pub(super) pending_by_link: HashMap<(Address, Address), usize>,
    pub(super) networks: BTreeMap<(SigningKey, u64), NetEntry>,
    pub(super) in_networks: BTreeSet<(LeaseKey, SigningKey, u64)>,
    pub(super) expiry: BTreeSet<(UnixTime, ItemId)>,
    pub(super) per_signer: HashMap<SigningKey, usize>,
    pub(super) tombstones: HashSet<ItemId>,
    tomb_order: VecDeque<ItemId>,
    pub(super) buckets: Vec<Option<[u8; 16]>>,
    changes: Vec<Change>,
    pub(super) stats: BookStats,
}

impl Default for LeaseBook {
    fn default() -> Self {
        Self {
            frames: BTreeMap::new(),
            leases: BTreeMap::new(),
            vswitches: BTreeMap::new(),
            ids: BTreeSet::new(),
            by_link: BTreeSet::new(),
            by_node: BTreeSet::new(),
            by_owner: BTreeSet::new(),
            configs: BTreeMap::new(),
            orders: BTreeMap::new(),
            orders_by_link: BTreeSet::new(),
            orders_by_buyer: BTreeSet::new(),
            pending_by_buyer: HashMap::new(),
            pending_by_link: HashMap::new(),
            networks: BTreeMap::new(),
            in_networks: BTreeSet::new(),
            expiry: BTreeSet::new(),
            per_signer: HashMap::new(),
            tombstones: HashSet::new(),
            tomb_order: VecDeque::new(),
            buckets: vec![None; 256],
            changes: Vec::new(),
            stats: BookStats::default(),
        }
    }
}

fn rank(p: &Parsed) -> (u8, u64) {
    match p {
        Parsed::Order(_) => (0, 0),
        Parsed::Lease(_) => (1, 0),
        Parsed::VSwitch(_) => (2, 0),
        Parsed::Config(c) => (3, c.seq),
        Parsed::Network(n) => (4, n.seq),
    }
}

impl LeaseBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// A book holding `frames` (as loaded from the database) at `now`, without the arrival
    /// checks that need the graph (they were made when the frames arrived); frames that do not
    /// take effect are dropped, expired ones pruned.
    pub fn from_frames(frames: impl IntoIterator<Item = Vec<u8>>, now: UnixTime) -> Self {
        let mut parsed: Vec<(Parsed, Vec<u8>)> = frames
            .into_iter()
            .filter_map(|b| parse(&b).ok().map(|p| (p, b)))
            .collect();
        parsed.sort_by_key(|(p, _)| rank(p));
        let mut book = Self::new();
        for (p, b) in parsed {
            let v = Verified {
                id: super::item_id(&b),
                bytes: b,
                parsed: p,
            };
            let _ = book.admit(Mode::Load, now, v, &NoLinks);
        }
        book.handle_timeout(now);
        book.changes.clear();
        book
    }

    /// Verifies and adds one frame from the public API at `now`; `links` is the graph. Refused
    /// frames change nothing.
    pub fn insert(
        &mut self,
        now: UnixTime,
        bytes: &[u8],
        links: &impl Links,
    ) -> Result<Accepted, BookError> {
        let v = verify(bytes).inspect_err(|_| self.stats.refused += 1)?;
        self.admit(Mode::Api, now, v, links)
    }

    /// [`LeaseBook::insert`] of a frame verified beforehand (outside any lock).
    pub fn insert_verified(
        &mut self,
        now: UnixTime,
        frame: Verified,
        links: &impl Links,
    ) -> Result<Accepted, BookError> {
        self.admit(Mode::Api, now, frame, links)
    }

    /// Adds a frame another route server passed on: the same arrival checks; a tie-break
    /// (two configurations or network versions of one owner with one sequence number) keeps the
    /// lowest frame id everywhere and evicts the other, so servers that saw both agree.
    pub fn insert_gossip(
        &mut self,
        now: UnixTime,
        bytes: &[u8],
        links: &impl Links,
    ) -> Result<Accepted, BookError> {
        let v = verify(bytes).inspect_err(|_| self.stats.refused += 1)?;
        self.admit(Mode::Gossip, now, v, links)
    }

    fn admit(
        &mut self,
        mode: Mode,
        now: UnixTime,
        frame: Verified,
        links: &dyn Links,
    ) -> Result<Accepted, BookError> {
        let id = frame.id;
        if self.frames.contains_key(&id) {
            return Ok(Accepted { id, new: false });
        }
        let result = self.admit_new(mode, now, id, &frame.bytes, frame.parsed, links);
        match &result {
            Ok(_) => self.stats.accepted += 1,
            Err(BookError::OverCapacity { .. }) => self.stats.over_capacity += 1,
            Err(BookError::Limit { .. }) => self.stats.limited += 1,
            Err(_) => self.stats.refused += 1,
        }
        result
    }

    fn admit_new(
        &mut self,
        mode: Mode,
        now: UnixTime,
        id: ItemId,
        bytes: &[u8],
        parsed: Parsed,
        links: &dyn Links,
    ) -> Result<Accepted, BookError> {
        let signer = parsed.signer();
        if self.per_signer.get(&signer).copied().unwrap_or(0) >= MAX_FRAMES_PER_SIGNER {
            return Err(BookError::Limit {
                what: "frames per signer",
                max: MAX_FRAMES_PER_SIGNER,
            });
        }
        let kind = match parsed {
            Parsed::Order(o) => self.admit_order(mode, now, id, o, links)?,
            Parsed::Lease(l) => match self.admit_lease(mode, now, id, l, links)? {
                Some(kind) => kind,
                None => return Ok(Accepted { id, new: false }),
            },
            Parsed::VSwitch(v) => self.admit_vswitch(mode, now, id, v, links)?,
            Parsed::Config(c) => self.admit_config(mode, now, id, c)?,
            Parsed::Network(n) => self.admit_network(mode, now, id, n)?,
        };
        self.hold(id, bytes, signer, kind);
        Ok(Accepted { id, new: true })
    }

    fn hold(&mut self, id: ItemId, bytes: &[u8], signer: SigningKey, kind: HeldKind) {
        let bytes: Arc<[u8]> = Arc::from(bytes);
        self.frames.insert(
            id,
            Held {
                bytes: Arc::clone(&bytes),
                signer,
                kind,
            },
        );
        *self.per_signer.entry(signer).or_default() += 1;
        self.buckets[usize::from(id[0])] = None;
        self.changes.push(Change::Added(id, bytes));
    }

    fn admit_order(
        &mut self,
        mode: Mode,
        now: UnixTime,
        id: ItemId,
        o: super::Order,
        links: &dyn Links,
    ) -> Result<HeldKind, BookError> {
        let link = (o.node, o.peer);
        let mut capacity = None;
        if mode != Mode::Load {
            if o.end <= now {
                return Err(BookError::NoOffer("the order's span is over"));
            }
            let info = links.link(&o.node, &o.peer);
            let off = info
                .and_then(|i| i.offer)
                .ok_or(BookError::NoOffer("link not offered"))?;
            if o.kbps > off.kbps {
                return Err(BookError::NoOffer("more kbit/s than offered"));
            }
            if o.end.0 - o.start.0 > u64::from(off.max_seconds) {
                return Err(BookError::NoOffer("longer than offered"));
            }
            capacity = info.and_then(|i| i.leasable_kbps());
        }
        if self.pending_by_buyer.get(&o.buyer).copied().unwrap_or(0) >= MAX_PENDING_ORDERS_PER_BUYER
        {
            return Err(BookError::Limit {
                what: "pending orders per buyer",
                max: MAX_PENDING_ORDERS_PER_BUYER,
            });
        }
        if self.pending_by_link.get(&link).copied().unwrap_or(0) >= MAX_ORDERS_PER_LINK {
            return Err(BookError::Limit {
                what: "pending orders per link",
                max: MAX_ORDERS_PER_LINK,
            });
        }
        let pairing = self.pair_group(&link, &o.buyer, o.start, o.end, Some((id, o.kbps)), None);
        let matched = pairing
            .iter()
            .any(|(l, oid)| *oid == Some(id) && l.is_some());
        if let (false, Some(cap)) = (matched, capacity) {
            self.check_capacity(&link, now, o.start, o.end, o.kbps, cap, &[])?;
        }
        self.orders.insert(
            id,
            OrderState {
                order: o,
                matched: None,
            },
        );
        self.orders_by_link.insert((o.node, o.peer, id));
        self.orders_by_buyer.insert((o.buyer, id));
        self.set_pending(&id, true);
        self.expiry.insert((o.end, id));
        self.apply_pairing(&pairing);
        Ok(HeldKind::Order)
    }

    /// Returns `None` when the same lease is held already under another frame.
    fn admit_lease(
        &mut self,
        mode: Mode,
        now: UnixTime,
        id: ItemId,
        l: Lease,
        links: &dyn Links,
    ) -> Result<Option<HeldKind>, BookError> {
        let from = address_of(&l.node)?;
        let to = PublicKey::from_bytes(l.peer).address();
        let key = (l.node, l.id);
        if mode != Mode::Load && l.end <= now {
            return Err(BookError::Expired(l.id));
        }
        if let Some(old) = self.leases.get(&key) {
            if old.lease == l {
                return Ok(None);
            }
            return Err(BookError::IdConflict(l.id));
        }
        if self.vswitches.contains_key(&key) {
            return Err(BookError::IdConflict(l.id));
        }
        let link = (from, to);
        let info = match mode {
            Mode::Load => None,
            _ => Some(
                links
                    .link(&from, &to)
                    .ok_or(BookError::NoLink { from, to })?,
            ),
        };
        let held_on_link = self
            .by_link
            .range((from, to, (MIN_KEY, MIN_ID))..=(from, to, (MAX_KEY, MAX_ID)))
            .count();
        if held_on_link >= MAX_LEASES_PER_LINK {
            return Err(BookError::Limit {
                what: "leases per link",
                max: MAX_LEASES_PER_LINK,
            });
        }
        let pairing = self.pair_group(&link, &l.owner, l.start, l.end, None, Some((key, l.kbps)));
        if let Some(info) = info {
            let cap = info.leasable_kbps().ok_or(BookError::NoCapacity)?;
            // Orders the lease takes over no longer hold capacity of their own.
            let freed: Vec<ItemId> = pairing
                .iter()
                .filter_map(|(_, o)| *o)
                .filter(|o| self.orders.get(o).is_some_and(|s| s.matched.is_none()))
                .collect();
            self.check_capacity(&link, now, l.start, l.end, l.kbps, cap, &freed)?;
        }
        self.leases.insert(
            key,
            LeaseState {
                lease: l,
                from,
                to,
                owner: l.owner,
                network: 0,
                classes: (0, 15),
                released: false,
                seq: 0,
                order: None,
                frame: id,
                configs: Vec::new(),
            },
        );
        self.ids.insert((l.id, l.node));
        self.by_link.insert((from, to, key));
        self.by_node.insert((from, key));
        self.by_node.insert((to, key));
        self.by_owner.insert((l.owner, key));
        self.expiry
            .insert((UnixTime(l.end.0.saturating_add(PRUNE_GRACE_SECS)), id));
        self.apply_pairing(&pairing);
        self.settle_configs(l.id);
        Ok(Some(HeldKind::Lease(key)))
    }

    fn admit_vswitch(
        &mut self,
        mode: Mode,
        now: UnixTime,
        id: ItemId,
        v: VirtualSwitchLease,
        links: &dyn Links,
    ) -> Result<HeldKind, BookError> {
        let node = address_of(&v.node)?;
        let key = (v.node, v.id);
        if mode != Mode::Load && v.end <= now {
            return Err(BookError::Expired(v.id));
        }
        // One (issuer, id), one lease: configuration names its target by id.
        if self.leases.contains_key(&key) || self.vswitches.contains_key(&key) {
            return Err(BookError::IdConflict(v.id));
        }
        if mode != Mode::Load && !links.knows_node(&node) {
            return Err(BookError::UnknownNode(node));
        }
        self.ids.insert((v.id, v.node));
        self.by_node.insert((node, key));
        self.by_owner.insert((v.owner, key));
        self.expiry
            .insert((UnixTime(v.end.0.saturating_add(PRUNE_GRACE_SECS)), id));
        self.vswitches.insert(
            key,
            VirtualSwitchState {
                node,
                owner: v.owner,
                lease: v,
                network: 0,
                released: false,
                seq: 0,
                frame: id,
                configs: Vec::new(),
            },
        );
        self.settle_configs(key.1);
        Ok(HeldKind::VSwitch(key))
    }

    fn admit_config(
        &mut self,
        mode: Mode,
        now: UnixTime,
        id: ItemId,
        c: Config,
    ) -> Result<HeldKind, BookError> {
        let keys = self.keys_with_id(&c.target);
        if keys.is_empty() {
            return Err(BookError::UnknownLease(c.target));
        }
        if mode != Mode::Load && keys.iter().all(|k| self.end_of(k).is_none_or(|e| e <= now)) {
            return Err(BookError::Expired(c.target));
        }
        if self.config_range(&c.target).count() >= MAX_CONFIGS_PER_LEASE {
            return Err(BookError::Limit {
                what: "configuration frames per lease",
                max: MAX_CONFIGS_PER_LEASE,
            });
        }
        self.configs.insert((c.target, c.seq, id), c);
        let outcome = self.replay_id(&c.target);
        if !outcome.effective.contains(&id) {
            self.configs.remove(&(c.target, c.seq, id));
            return Err(outcome
                .errors
                .get(&id)
                .cloned()
                .unwrap_or(BookError::WrongOwner(c.target)));
        }
        let displaced: Vec<(u64, ItemId)> = self
            .config_range(&c.target)
            .filter(|(_, _, fid)| *fid != id && !outcome.effective.contains(fid))
            .map(|(_, seq, fid)| (seq, fid))
            .collect();
        let broken = self.networks_broken_by(&outcome);
        if mode == Mode::Api {
            if let Some((_, fid)) = displaced.first() {
                let e = outcome.errors.get(fid).cloned();
                self.configs.remove(&(c.target, c.seq, id));
                return Err(e.unwrap_or(BookError::Replayed));
            }
            if !broken.is_empty() {
                self.configs.remove(&(c.target, c.seq, id));
                return Err(BookError::InNetwork(c.target));
            }
        }
        for (_, fid) in displaced {
            self.remove_frame(&fid, false);
            self.stats.evicted += 1;
        }
        for net in broken {
            if let Some(frame) = self.networks.get(&net).map(|n| n.frame) {
                self.remove_frame(&frame, false);
                self.stats.evicted += 1;
            }
        }
        self.apply_replay(outcome);
        Ok(HeldKind::Config(c.target, c.seq))
    }

    fn admit_network(
        &mut self,
        mode: Mode,
        now: UnixTime,
        id: ItemId,
        n: VirtualNetwork,
    ) -> Result<HeldKind, BookError> {
        let key = (n.owner, n.id);
        let current = self
            .networks
            .get(&key)
            .map(|c| (c.net.seq, c.frame, c.net.leases.is_empty()));
        if let Some((seq, frame, _)) = current {
            let wins_tie = mode != Mode::Api && n.seq == seq && id < frame;
            if n.seq < seq || (n.seq == seq && !wins_tie) {
                return Err(BookError::Replayed);
            }
        }
        if current.is_none() {
            let held = self
                .networks
                .range((n.owner, 0)..=(n.owner, u64::MAX))
                .count();
            if held >= MAX_NETWORKS_PER_OWNER {
                return Err(BookError::Limit {
                    what: "networks per owner",
                    max: MAX_NETWORKS_PER_OWNER,
                });
            }
        }
        let uses = if n.leases.is_empty() {
            // Deleting what the API never saw is refused; gossip and the database may carry a
            // deletion of a version this server missed (it is pruned after the grace period).
            if mode == Mode::Api && current.is_none_or(|(_, _, deleted)| deleted) {
                return Err(BookError::NothingToDelete);
            }
            Vec::new()
        } else {
            let live = (mode != Mode::Load).then_some(now);
            self.check_network(live, &n)?
        };
        if let Some((_, frame, _)) = current {
            self.remove_frame(&frame, false);
        }
        for u in &uses {
            self.in_networks.insert((*u, n.owner, n.id));
        }
        if uses.is_empty() {
            self.expiry
                .insert((UnixTime(now.0.saturating_add(PRUNE_GRACE_SECS)), id));
        }
        self.networks.insert(
            key,
            NetEntry {
                frame: id,
                net: n,
                uses,
            },
        );
        Ok(HeldKind::Network(key.0, key.1))
    }

    /// Removes a held frame and what depends on it: a lease's or virtual switch's matched
    /// order (when `prune`), its configuration (when no other lease has its id) and the
    /// networks that use it.
    pub(super) fn remove_frame(&mut self, id: &ItemId, prune: bool) {
        let Some(held) = self.frames.remove(id) else {
            return;
        };
        if let Some(n) = self.per_signer.get_mut(&held.signer) {
            *n -= 1;
            if *n == 0 {
                self.per_signer.remove(&held.signer);
            }
        }
        self.buckets[usize::from(id[0])] = None;
        self.changes.push(Change::Removed(*id));
        self.remember(*id);
        match held.kind {
            HeldKind::Order => {
                if let Some(o) = self.orders.get(id).copied() {
                    self.set_pending(id, false);
                    self.orders.remove(id);
                    self.orders_by_link
                        .remove(&(o.order.node, o.order.peer, *id));
                    self.orders_by_buyer.remove(&(o.order.buyer, *id));
                    if let Some(lk) = o.matched {
                        if let Some(l) = self.leases.get_mut(&lk) {
                            l.order = None;
                        }
                    }
                }
            }
            HeldKind::Lease(key) => {
                let Some(l) = self.leases.remove(&key) else {
                    return;
                };
                self.ids.remove(&(key.1, key.0));
                self.by_link.remove(&(l.from, l.to, key));
                self.by_node.remove(&(l.from, key));
                self.by_node.remove(&(l.to, key));
                self.by_owner.remove(&(l.owner, key));
                if let Some(oid) = l.order {
                    if prune {
                        self.remove_frame(&oid, true);
                    } else if let Some(o) = self.orders.get_mut(&oid) {
                        o.matched = None;
                        let end = o.order.end;
                        self.set_pending(&oid, true);
                        self.expiry.insert((end, oid));
                    }
                }
                self.after_lease_removed(key);
            }
            HeldKind::VSwitch(key) => {
                let Some(v) = self.vswitches.remove(&key) else {
                    return;
                };
                self.ids.remove(&(key.1, key.0));
                self.by_node.remove(&(v.node, key));
                self.by_owner.remove(&(v.owner, key));
                self.after_lease_removed(key);
            }
            HeldKind::Config(target, seq) => {
                self.configs.remove(&(target, seq, *id));
            }
            HeldKind::Network(owner, nid) => {
                if self
                    .networks
                    .get(&(owner, nid))
                    .is_some_and(|n| n.frame == *id)
                {
                    if let Some(n) = self.networks.remove(&(owner, nid)) {
                        for u in n.uses {
                            self.in_networks.remove(&(u, owner, nid));
                        }
                    }
                }
            }
        }
    }

    fn after_lease_removed(&mut self, key: LeaseKey) {
        let nets: Vec<(SigningKey, u64)> = self
            .in_networks
            .range((key, MIN_KEY, 0)..=(key, MAX_KEY, u64::MAX))
            .map(|(_, o, n)| (*o, *n))
            .collect();
        for net in nets {
            if let Some(frame) = self.networks.get(&net).map(|n| n.frame) {
                self.remove_frame(&frame, false);
            }
        }
        if self.keys_with_id(&key.1).is_empty() {
            let gone: Vec<ItemId> = self.config_range(&key.1).map(|(_, _, f)| f).collect();
            for f in gone {
                self.remove_frame(&f, false);
            }
        } else {
            self.settle_configs(key.1);
        }
    }

    pub(super) fn set_pending(&mut self, order: &ItemId, pending: bool) {
        let Some(o) = self.orders.get(order) else {
            return;
        };
        let (buyer, link) = (o.order.buyer, (o.order.node, o.order.peer));
        let was = o.matched.is_none();
        // Called with the order's current state: adds when it becomes pending, removes when it
        // stops being pending (matched or removed).
        let delta: isize = match (pending, was) {
            (true, true) => 1,
            (false, true) => -1,
            _ => 0,
        };
        for counter in [
            self.pending_by_buyer.entry(buyer).or_default(),
            self.pending_by_link.entry(link).or_default(),
        ] {
            *counter = counter.saturating_add_signed(delta);
        }
        if self.pending_by_buyer.get(&buyer) == Some(&0) {
            self.pending_by_buyer.remove(&buyer);
        }
        if self.pending_by_link.get(&link) == Some(&0) {
            self.pending_by_link.remove(&link);
        }
    }

    fn remember(&mut self, id: ItemId) {
        if self.tombstones.insert(id) {
            self.tomb_order.push_back(id);
        }
        while self.tomb_order.len() > MAX_TOMBSTONES {
            if let Some(old) = self.tomb_order.pop_front() {
                self.tombstones.remove(&old);
            }
        }
    }

    /// Prunes what expired by `now` (see the module docs). Returns how many frames went.
    pub fn handle_timeout(&mut self, now: UnixTime) -> usize {
        let before = self.frames.len();
        while let Some(&(t, id)) = self.expiry.first() {
            if t > now {
                break;
            }
            self.expiry.pop_first();
            let Some(kind) = self.frames.get(&id).map(|h| h.kind) else {
                continue;
            };
            match kind {
                // A matched order goes with its lease.
                HeldKind::Order if self.orders.get(&id).is_some_and(|o| o.matched.is_some()) => {}
                HeldKind::Config(..) => {}
                _ => self.remove_frame(&id, true),
            }
        }
        let gone = before.saturating_sub(self.frames.len());
        self.stats.pruned += gone as u64;
        gone
    }

    /// When [`LeaseBook::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        self.expiry.first().map(|(t, _)| *t)
    }

    /// The changes to the set of frames since the last call (what to persist).
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Counters.
    pub fn stats(&self) -> BookStats {
        self.stats
    }
}
