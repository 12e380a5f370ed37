//! What the route server knows: for every node, the set of its announcements that still say
//! something, and the state derived from them.
//!
//! # Model
//! A node's state is a pure function of the set of its announcements that the server holds
//! ([`NodeState::announcements`]); ingestion adds one announcement, prunes the set and
//! re-derives the state by applying the kept announcements oldest first. Because the result
//! does not depend on arrival order, two servers holding the same set agree on the graph,
//! which is what makes inventory gossip ([`crate::gossip`]) converge.
//!
//! Pruning, as the upstream snode does it, relative to the newest announcement of the node:
//! announcements older than [`Config::agreed_timeout_ms`] (20 minutes) and older than the
//! latest *reset* announcement go; of the rest, an announcement stays if it is the newest, the
//! latest reset, carries link state, or carries a persistent entity (PEER by peer number,
//! VERSION, ENCODING_SCHEME, and the pktmesh capacity/offer entities by peer number) that no
//! newer kept announcement replaces.
//!
//! Checks on arrival (`now` is an argument, milliseconds since the Unix epoch):
//! - from the node itself ([`Origin::Node`]): addressed to this server, at most
//!   [`Config::max_clock_skew_ms`] (10 s) from `now`, not older than the newest held, and a
//!   node we do not know must start with a reset announcement;
//! - from another server ([`Origin::Gossip`]): not in the future beyond the skew, not older than
//!   the agreed timeout.
//!
//! A link counts only when both ends announce each other ([`Graph::links`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::EncodingScheme;
use sha2::{Digest, Sha512};
use thiserror::Error;

use crate::announce::{
    AnnounceError, Announcement, Entity, LeaseOffer, LinkCapacity, LinkEgress, LinkSample,
    LINK_STATE_SLOTS,
};

/// Length of a link-state time slot.
pub const SLOT_MS: u64 = 10_000;
/// Largest announcement accepted by default: cjdns keeps an announcement within one CJDHT
/// message (about 1 KiB); 16 KiB leaves room for a node with many peers and the pktmesh entities
/// while a 64 KiB padded one is refused.
pub const MAX_ANNOUNCEMENT_LEN: usize = 16 * 1024;
/// Most ids of pruned announcements remembered (so gossip does not fetch them again).
pub const MAX_FORGOTTEN: usize = 65_536;

/// Route-server limits and identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// This server's cjdns address; announcements from nodes must name it. `None` accepts any.
    pub self_address: Option<Address>,
    /// Largest difference between a node's clock and ours (upstream: 10 s).
    pub max_clock_skew_ms: u64,
    /// How long an announcement says something (upstream: 20 minutes).
    pub agreed_timeout_ms: u64,
    /// Most nodes kept.
    pub max_nodes: usize,
    /// Most announcements kept per node.
    pub max_announcements_per_node: usize,
    /// Largest announcement accepted, bytes.
    pub max_announcement_len: usize,
    /// Most peers one node may announce.
    pub max_peers_per_node: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            self_address: None,
            max_clock_skew_ms: 10_000,
            agreed_timeout_ms: 20 * 60 * 1000,
            max_nodes: 100_000,
            max_announcements_per_node: 32,
            max_announcement_len: MAX_ANNOUNCEMENT_LEN,
            max_peers_per_node: 256,
        }
    }
}

/// Where an announcement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The announcing node sent it to us.
    Node,
    /// Another route server passed it on.
    Gossip,
}

/// Why an announcement was not taken. State is unchanged after any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IngestError {
    /// Malformed or badly signed.
    #[error(transparent)]
    Malformed(#[from] AnnounceError),
    /// Meant for another route server.
    #[error("announcement is for route server {0}")]
    WrongSnode(Address),
    /// The node's clock is too far from ours.
    #[error("clock skew of {skew_ms} ms is above the limit")]
    ClockSkew {
        /// |now − timestamp|.
        skew_ms: u64,
    },
    /// Older than what we hold for the node (from the node), or below its latest reset, or past
    /// the agreed timeout.
    #[error("announcement is older than the node's current state")]
    Old,
    /// A non-reset announcement from a node we do not know.
    #[error("unknown node: send a reset announcement first")]
    UnknownNode,
    /// A new node's first announcement lacks an encoding scheme.
    #[error("a reset announcement must carry an encoding scheme")]
    NoEncodingScheme,
    /// A new node's first announcement lacks a version.
    #[error("a reset announcement must carry a version")]
    NoVersion,
    /// [`Config::max_nodes`] reached.
    #[error("node table full")]
    TableFull,
    /// Longer than [`Config::max_announcement_len`].
    #[error("announcement of {0} bytes is above the limit")]
    TooLong(usize),
    /// The node would have more than [`Config::max_peers_per_node`] peers.
    #[error("too many peers announced")]
    TooManyPeers,
}

impl IngestError {
    /// The `error` string of an `ann` reply, as the upstream snode spells it.
    pub fn reply_code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "failed_parse_or_validate",
            Self::WrongSnode(_) => "wrong_snode",
            Self::ClockSkew { .. } => "excessive_clock_skew",
            Self::Old => "old_message",
            Self::UnknownNode => "unknown_node",
            Self::NoEncodingScheme => "no_encodingScheme",
            Self::NoVersion => "no_version",
            Self::TableFull => "table_full",
            Self::TooLong(_) => "too_long",
            Self::TooManyPeers => "too_many_peers",
        }
    }
}

/// What an accepted announcement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// The announcing node.
    pub node: Address,
    /// SHA-512 of the announcement.
    pub hash: [u8; 64],
    /// False when it was known already (nothing changed).
    pub new: bool,
    /// Whether the set still holds it after pruning (false: superseded on arrival).
    pub kept: bool,
    /// The node's state hash after it ([`NodeState::state_hash`]).
    pub state_hash: [u8; 64],
}

/// A direct peer of a node, as the node announced it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerLink {
    /// The peer.
    pub ip: Address,
    /// The label from the peer to this node, in the peer's scheme.
    pub label: u32,
    /// Form number of this node's label toward the peer.
    pub encoding_form: u8,
    /// MTU, bytes (0 unknown).
    pub mtu: u32,
    /// Flags.
    pub flags: u8,
    /// Link-state samples of traffic from the peer, by 10-second slot number.
    pub samples: BTreeMap<u64, LinkSample>,
}

/// Aggregated link measurements (what the path cost uses).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkMetrics {
    /// Mean lag of the samples with data (cjdns lag units, ~ms); `None` without data.
    pub lag: Option<f32>,
    /// Packets lost per slot, mean.
    pub drops_per_slot: f32,
    /// Received kbit/s over the most recent slots.
    pub load_kbps: f32,
    /// Upstream's link value: Σ kb/(lag·2^drops) decayed by 1/18 per slot of age.
    pub value: f64,
}

impl PeerLink {
    /// Metrics over the samples.
    pub fn metrics(&self) -> LinkMetrics {
        let Some((&newest, _)) = self.samples.last_key_value() else {
            return LinkMetrics::default();
        };
        let mut m = LinkMetrics::default();
        let (mut lag_sum, mut lag_n, mut drops, mut n) = (0f64, 0u32, 0f64, 0u32);
        let mut kb_recent = 0f64;
        let mut recent_n = 0u32;
        for (&slot, s) in &self.samples {
            let age = newest - slot;
            if s.lag != 0 {
                lag_sum += f64::from(s.lag);
                lag_n += 1;
                m.value += f64::from(s.kb_recv)
                    / (f64::from(s.lag) * 2f64.powi(i32::from(s.drops)))
                    / (1.0 + age as f64 / 18.0);
            }
            drops += f64::from(s.drops);
            n += 1;
            if age < 3 {
                kb_recent += f64::from(s.kb_recv);
                recent_n += 1;
            }
        }
        if lag_n > 0 {
            m.lag = Some((lag_sum / f64::from(lag_n)) as f32);
        }
        m.drops_per_slot = (drops / f64::from(n.max(1))) as f32;
        m.load_kbps = (kb_recent * 8.0 / (f64::from(recent_n.max(1)) * 10.0)) as f32;
        m
    }
}

/// Everything known about one node.
#[derive(Debug, Clone)]
pub struct NodeState {
    /// Its cjdns key.
    pub key: PublicKey,
    /// Its Ed25519 signing key.
    pub signing_key: [u8; 32],
    /// Its address.
    pub address: Address,
    anns: BTreeMap<(u64, [u8; 64]), Arc<[u8]>>,
    forgotten: BTreeSet<(u64, [u8; 64])>,
    /// Encoding scheme (absent until announced).
    pub scheme: Option<EncodingScheme>,
    /// Protocol version (absent until announced).
    pub version: Option<u16>,
    /// Peers by peer number.
    pub peers: BTreeMap<u16, PeerLink>,
    /// Announced link capacities by peer number.
    pub capacity: BTreeMap<u16, LinkCapacity>,
    /// Lease offers by peer number.
    pub offers: BTreeMap<u16, LeaseOffer>,
    /// Egress reports by peer number, with the 10-second slot of their announcement.
    pub egress: BTreeMap<u16, (u64, LinkEgress)>,
    state_hash: [u8; 64],
}

impl NodeState {
    /// The announcements held, oldest first, as (timestamp ms, hash, bytes).
    pub fn announcements(&self) -> impl Iterator<Item = (u64, &[u8; 64], &Arc<[u8]>)> {
        self.anns.iter().map(|((t, h), b)| (*t, h, b))
    }

    /// Newest announcement time.
    pub fn newest_ms(&self) -> Option<u64> {
        self.anns.keys().next_back().map(|k| k.0)
    }

    /// SHA-512 chain over the held announcements, oldest first:
    /// `h = SHA-512(h ‖ ann)` from 64 zero bytes, as the upstream snode's `stateHash`.
    pub fn state_hash(&self) -> [u8; 64] {
        self.state_hash
    }

    /// The peer entry for `ip` (the newest peer number wins if several).
    pub fn peer_by_ip(&self, ip: &Address) -> Option<(u16, &PeerLink)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.ip == *ip)
            .map(|(n, p)| (*n, p))
            .next_back()
    }

    fn new(key: PublicKey, signing_key: [u8; 32]) -> Self {
        Self {
            key,
            signing_key,
            address: key.address(),
            anns: BTreeMap::new(),
            forgotten: BTreeSet::new(),
            scheme: None,
            version: None,
            peers: BTreeMap::new(),
            capacity: BTreeMap::new(),
            offers: BTreeMap::new(),
            egress: BTreeMap::new(),
            state_hash: [0; 64],
        }
    }

    /// Applies the pruning rules (module docs). Returns the keys dropped.
    fn prune(&mut self, config: &Config) {
        let Some(newest) = self.newest_ms() else {
            return;
        };
        let floor_age = newest.saturating_sub(config.agreed_timeout_ms);
        let latest_reset = self
            .anns
            .iter()
            .rev()
            .find(|(_, b)| Announcement::new_checked(b).is_ok_and(|a| a.is_reset()))
            .map(|(k, _)| *k);
        let mut seen: HashSet<(u8, u16)> = HashSet::new();
        let mut drop = Vec::new();
        let newest_key = self.anns.keys().next_back().copied();
        for (k, b) in self.anns.iter().rev() {
            if k.0 < floor_age || latest_reset.is_some_and(|r| *k < r) {
                drop.push(*k);
                continue;
            }
            let Ok(a) = Announcement::new_checked(b) else {
                drop.push(*k);
                continue;
            };
            let mut useful = Some(*k) == newest_key || Some(*k) == latest_reset;
            for e in a.entities() {
                let key = match e {
                    Entity::EncodingScheme(_) => Some((0, 0)),
                    Entity::Version(_) => Some((2, 0)),
                    Entity::Peer(p) => Some((1, p.peer_num())),
                    Entity::LinkCapacity(c) => Some((0x50, c.peer_num)),
                    Entity::LeaseOffer(o) => Some((0x51, o.peer_num)),
                    Entity::LinkState(_) | Entity::LinkEgress(_) => {
                        useful = true;
                        None
                    }
                    Entity::Unknown { .. } => None,
                };
                if let Some(key) = key {
                    useful |= seen.insert(key);
                }
            }
            if !useful {
                drop.push(*k);
            }
        }
        let excess = self
            .anns
            .len()
            .saturating_sub(drop.len())
            .saturating_sub(config.max_announcements_per_node);
        // Over the per-node cap: drop the oldest that are still kept.
        let extra: Vec<_> = self
            .anns
            .keys()
            .filter(|k| !drop.contains(k) && Some(**k) != newest_key)
            .take(excess)
            .copied()
            .collect();
        for k in drop.into_iter().chain(extra) {
            self.anns.remove(&k);
            self.forgotten.insert(k);
        }
        while self.forgotten.len() > 1024 {
            self.forgotten.pop_first();
        }
    }

    /// Re-derives scheme, version, peers, capacity, offers and the state hash from the set.
    fn derive(&mut self) {
        self.scheme = None;
        self.version = None;
        self.peers.clear();
        self.capacity.clear();
        self.offers.clear();
        self.egress.clear();
        let mut carry = [0u8; 64];
        for b in self.anns.values() {
            carry = Sha512::new()
                .chain_update(carry)
                .chain_update(&b[..])
                .finalize()
                .into();
            let Ok(a) = Announcement::new_checked(b) else {
                continue;
            };
            let ts_slot = a.timestamp_ms() / SLOT_MS;
            // Peers first so that link states in the same announcement find them.
            for e in a.entities() {
                match e {
                    Entity::EncodingScheme(s) => self.scheme = Some(s.scheme()),
                    Entity::Version(v) => self.version = Some(v),
                    Entity::Peer(p) => {
                        if p.label() == 0 {
                            self.peers.remove(&p.peer_num());
                            continue;
                        }
                        let old = self.peers.remove(&p.peer_num());
                        let samples = old
                            .filter(|o| o.ip == p.ip() && o.label == p.label())
                            .map(|o| o.samples)
                            .unwrap_or_default();
                        self.peers.insert(
                            p.peer_num(),
                            PeerLink {
                                ip: p.ip(),
                                label: p.label(),
                                encoding_form: p.encoding_form(),
                                mtu: p.mtu(),
                                flags: p.flags(),
                                samples,
                            },
                        );
                    }
                    Entity::LinkCapacity(c) => {
                        self.capacity.insert(c.peer_num, c);
                    }
                    Entity::LinkEgress(e) => {
                        self.egress.insert(e.peer_num, (ts_slot, e));
                    }
                    Entity::LeaseOffer(o) => {
                        if o.kbps == 0 {
                            self.offers.remove(&o.peer_num);
                        } else {
                            self.offers.insert(o.peer_num, o);
                        }
                    }
                    _ => {}
                }
            }
            for e in a.entities() {
                let Entity::LinkState(ls) = e else { continue };
                let Some(peer) = self.peers.get_mut(&ls.node_id()) else {
                    continue;
                };
                // The newest sample belongs to the announcement's own slot.
                let n = ls.len() as u64;
                for (i, s) in ls.samples().enumerate() {
                    let slot = ts_slot.saturating_sub(n - 1 - i as u64);
                    peer.samples.insert(slot, s);
                }
                let keep_from = ts_slot.saturating_sub(2 * LINK_STATE_SLOTS as u64 * 4);
                peer.samples.retain(|&s, _| s >= keep_from);
            }
        }
        self.state_hash = carry;
    }
}

/// A link both of whose ends announce each other.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Sending end.
    pub from: Address,
    /// Receiving end.
    pub to: Address,
    /// The label from `from` to `to`, in `from`'s scheme (from `to`'s PEER entity).
    pub label: u32,
    /// Measured at `to`.
    pub metrics: LinkMetrics,
    /// Capacity announced by `from` (pktmesh entity), if any.
    pub capacity: Option<LinkCapacity>,
    /// Lease offer announced by `from`, if any.
    pub offer: Option<LeaseOffer>,
}

/// The link-state graph.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    config: Config,
    nodes: HashMap<Address, NodeState>,
    generation: u64,
    /// Every held announcement by id (first 32 bytes of its hash), for gossip.
    ann_ids: BTreeMap<[u8; 32], (Address, u64, [u8; 64])>,
    forgotten_ids: HashSet<[u8; 32]>,
    forgotten_order: VecDeque<[u8; 32]>,
    buckets: Vec<Option<[u8; 16]>>,
}

/// The gossip id of an announcement hash.
pub fn ann_id(hash: &[u8; 64]) -> [u8; 32] {
    let mut id = [0u8; 32];
    id.copy_from_slice(&hash[..32]);
    id
}

impl Graph {
    /// An empty graph.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            nodes: HashMap::new(),
            generation: 0,
            ann_ids: BTreeMap::new(),
            forgotten_ids: HashSet::new(),
            forgotten_order: VecDeque::new(),
            buckets: vec![None; 256],
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Bumped on every change; path engines rebuild when it moves.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A node's state.
    pub fn node(&self, address: &Address) -> Option<&NodeState> {
        self.nodes.get(address)
    }

    /// All nodes, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeState> {
        self.nodes.values()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Whether the announcement with this hash and timestamp is held, or was held and pruned
    /// (gossip need not fetch it again).
    pub fn knows(&self, node: &Address, timestamp_ms: u64, hash: &[u8; 64]) -> bool {
        self.nodes.get(node).is_some_and(|n| {
            let k = (timestamp_ms, *hash);
            n.anns.contains_key(&k) || n.forgotten.contains(&k)
        })
    }

    /// Takes one announcement (see the module docs for the checks).
    pub fn ingest(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        origin: Origin,
    ) -> Result<Ingested, IngestError> {
        if bytes.len() > self.config.max_announcement_len {
            return Err(IngestError::TooLong(bytes.len()));
        }
        let ann = Announcement::new_checked(bytes)?;
        let peers_named = ann
            .entities()
            .filter(|e| matches!(e, Entity::Peer(_)))
            .count();
        if peers_named > self.config.max_peers_per_node {
            return Err(IngestError::TooManyPeers);
        }
        let key = ann.verify()?;
        let address = key.address();
        let ts = ann.timestamp_ms();
        let hash = ann.hash();
        let skew = now_ms.abs_diff(ts);
        match origin {
            Origin::Node => {
                if let Some(me) = self.config.self_address {
                    if ann.snode_ip() != me {
                        return Err(IngestError::WrongSnode(ann.snode_ip()));
                    }
                }
                if skew > self.config.max_clock_skew_ms {
                    return Err(IngestError::ClockSkew { skew_ms: skew });
                }
            }
            Origin::Gossip => {
                if ts > now_ms + self.config.max_clock_skew_ms {
                    return Err(IngestError::ClockSkew { skew_ms: skew });
                }
                if ts + self.config.agreed_timeout_ms < now_ms {
                    return Err(IngestError::Old);
                }
            }
        }
        let k = (ts, hash);
        match self.nodes.get(&address) {
            Some(n) => {
                if n.anns.contains_key(&k) || n.forgotten.contains(&k) {
                    return Ok(Ingested {
                        node: address,
                        hash,
                        new: false,
                        kept: n.anns.contains_key(&k),
                        state_hash: n.state_hash,
                    });
                }
                let newest = n.newest_ms().unwrap_or(0);
                if origin == Origin::Node && ts < newest {
                    return Err(IngestError::Old);
                }
                if ts + self.config.agreed_timeout_ms < newest {
                    return Err(IngestError::Old);
                }
                let below_reset = n.anns.iter().any(|(nk, b)| {
                    *nk > k && Announcement::new_checked(b).is_ok_and(|a| a.is_reset())
                });
                if below_reset && !ann.is_reset() {
                    return Err(IngestError::Old);
                }
            }
            None => {
                if !ann.is_reset() && origin == Origin::Node {
                    return Err(IngestError::UnknownNode);
                }
                if self.nodes.len() >= self.config.max_nodes {
                    return Err(IngestError::TableFull);
                }
            }
        }
        if ann.is_reset() {
            let mut has_scheme = false;
            let mut has_version = false;
            for e in ann.entities() {
                has_scheme |= matches!(e, Entity::EncodingScheme(_));
                has_version |= matches!(e, Entity::Version(_));
            }
            if !has_scheme {
                return Err(IngestError::NoEncodingScheme);
            }
            if !has_version {
                return Err(IngestError::NoVersion);
            }
        }
        let config = self.config;
        let node = self
            .nodes
            .entry(address)
            .or_insert_with(|| NodeState::new(key, ann.signing_key()));
        let before = node.clone();
        node.anns.insert(k, Arc::from(bytes));
        node.prune(&config);
        node.derive();
        if node.peers.len() > config.max_peers_per_node {
            *node = before;
            if node.anns.is_empty() {
                self.nodes.remove(&address);
            }
            return Err(IngestError::TooManyPeers);
        }
        let (kept, state_hash) = (node.anns.contains_key(&k), node.state_hash);
        let after: Vec<(u64, [u8; 64])> = node.anns.keys().copied().collect();
        let gone: Vec<(u64, [u8; 64])> = before
            .anns
            .keys()
            .chain(std::iter::once(&k))
            .filter(|x| !after.contains(x))
            .copied()
            .collect();
        self.reindex(address, &after, &gone);
        self.generation += 1;
        Ok(Ingested {
            node: address,
            hash,
            new: true,
            kept,
            state_hash,
        })
    }

    /// Forgets announcements older than the agreed timeout at `now` and nodes left with none.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let limit = now_ms.saturating_sub(self.config.agreed_timeout_ms);
        let mut changed = false;
        let mut gone: Vec<(Address, (u64, [u8; 64]))> = Vec::new();
        self.nodes.retain(|a, n| {
            let before = n.anns.len();
            n.anns.retain(|k, _| {
                let keep = k.0 >= limit;
                if !keep {
                    gone.push((*a, *k));
                }
                keep
            });
            if n.anns.len() != before {
                changed = true;
                n.derive();
            }
            !n.anns.is_empty()
        });
        for (a, k) in gone {
            self.reindex(a, &[], &[k]);
        }
        if changed {
            self.generation += 1;
        }
    }

    /// Updates the gossip index: `kept` announcements of `node` are held, `gone` ones not.
    fn reindex(&mut self, node: Address, kept: &[(u64, [u8; 64])], gone: &[(u64, [u8; 64])]) {
        for (ts, h) in kept {
            let id = ann_id(h);
            if self.ann_ids.insert(id, (node, *ts, *h)).is_none() {
                self.buckets[usize::from(id[0])] = None;
            }
        }
        for (_, h) in gone {
            let id = ann_id(h);
            if self.ann_ids.remove(&id).is_some() {
                self.buckets[usize::from(id[0])] = None;
            }
            if self.forgotten_ids.insert(id) {
                self.forgotten_order.push_back(id);
            }
            while self.forgotten_order.len() > MAX_FORGOTTEN {
                if let Some(old) = self.forgotten_order.pop_front() {
                    self.forgotten_ids.remove(&old);
                }
            }
        }
    }

    /// The ids of the held announcements whose first byte is `bucket`.
    pub fn bucket_ids(&self, bucket: u8) -> impl Iterator<Item = &[u8; 32]> {
        let mut lo = [0u8; 32];
        lo[0] = bucket;
        let mut hi = [0xffu8; 32];
        hi[0] = bucket;
        self.ann_ids.range(lo..=hi).map(|(id, _)| id)
    }

    /// A 16-byte digest of the announcement ids in `bucket` (cached until it changes).
    pub fn bucket_digest(&mut self, bucket: u8) -> [u8; 16] {
        if self.buckets.len() != 256 {
            self.buckets = vec![None; 256];
        }
        if let Some(d) = self.buckets[usize::from(bucket)] {
            return d;
        }
        let d = crate::gossip::digest_ids(self.bucket_ids(bucket));
        self.buckets[usize::from(bucket)] = Some(d);
        d
    }

    /// The bytes of the held announcement with this gossip id.
    pub fn announcement_by_id(&self, id: &[u8; 32]) -> Option<&Arc<[u8]>> {
        let (node, ts, h) = self.ann_ids.get(id)?;
        self.nodes.get(node)?.anns.get(&(*ts, *h))
    }

    /// Whether the announcement is held or was pruned lately (gossip need not fetch it).
    pub fn knows_id(&self, id: &[u8; 32]) -> bool {
        self.ann_ids.contains_key(id) || self.forgotten_ids.contains(id)
    }

    /// Number of announcements held.
    pub fn announcement_count(&self) -> usize {
        self.ann_ids.len()
    }

    /// When [`Graph::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.nodes
            .values()
            .filter_map(|n| n.anns.keys().next().map(|k| k.0))
            .min()
            .map(|t| t + self.config.agreed_timeout_ms + 1)
    }

    /// Every link whose two ends announce each other, in both directions.
    pub fn links(&self) -> impl Iterator<Item = Link> + '_ {
        self.nodes.values().flat_map(move |to| {
            to.peers.values().filter_map(move |p| {
                let from = self.nodes.get(&p.ip)?;
                let (num, _) = from.peer_by_ip(&to.address)?;
                let mut metrics = p.metrics();
                // The sender's own egress report, if recent (within 3 slots of its newest
                // announcement): drops at its queue are invisible to the receiver.
                let newest = from.newest_ms().unwrap_or(0) / SLOT_MS;
                if let Some((slot, e)) = from.egress.get(&num) {
                    if newest.saturating_sub(*slot) < 3 {
                        metrics.drops_per_slot = metrics.drops_per_slot.max(e.drops as f32);
                        metrics.load_kbps = metrics.load_kbps.max(e.sent_kbps as f32);
                    }
                }
                Some(Link {
                    from: from.address,
                    to: to.address,
                    label: p.label,
                    metrics,
                    capacity: from.capacity.get(&num).copied(),
                    offer: from.offers.get(&num).copied(),
                })
            })
        })
    }

    /// A digest of the whole graph's announcement sets (equal digests: equal state).
    pub fn digest(&self) -> [u8; 64] {
        let mut addrs: Vec<_> = self.nodes.keys().copied().collect();
        addrs.sort();
        let mut h = Sha512::new();
        for a in addrs {
            h.update(a.as_bytes());
            h.update(self.nodes[&a].state_hash);
        }
        h.finalize().into()
    }
}

impl crate::leases::Links for Graph {
    fn link(&self, from: &Address, to: &Address) -> Option<crate::leases::LinkInfo> {
        let f = self.nodes.get(from)?;
        let t = self.nodes.get(to)?;
        let (num, _) = f.peer_by_ip(to)?;
        t.peer_by_ip(from)?;
        Some(crate::leases::LinkInfo {
            capacity_kbps: f.capacity.get(&num).map(|c| c.capacity_kbps),
            offer: f.offers.get(&num).map(|o| crate::leases::OfferRef {
                kbps: o.kbps,
                max_seconds: o.max_seconds,
            }),
        })
    }

    fn knows_node(&self, node: &Address) -> bool {
        self.nodes.contains_key(node)
    }
}
