//! The node store: nodes this node has heard from, with the best known path to each.
//!
//! Keyspace: cjdns compares addresses *rotated by 64 bits* (`Address_ROT64`): bytes 8..16 first,
//! then bytes 0..8, each 32-bit word as a big-endian number. "Distance" is the XOR of two rotated
//! addresses read as one 128-bit number, and the store is ordered by rotated address
//! (`NodeStore.c` `compareNodes`). The "prefix" of an address is its bytes 8..12.
//!
//! What answers look like (from `NodeStore.c`):
//! - `fn` (`NodeStore::closest`): walk outward from the first node at or after the target in
//!   rotated order, each step taking whichever neighbour (previous or next) is closer to the
//!   target, skipping unreachable and version-incompatible nodes, until `count` are found; the
//!   list is returned furthest first, closest last.
//! - `gp` (`NodeStore::peers_from`): direct peers (and this node itself, label 1) whose label
//!   is at least the target label truncated to its first director plus terminator; the `max`
//!   with the smallest `label - target` are kept, furthest first.
//!
//! What differs from cjdns (deliberately): cjdns keeps a graph of links and only admits a node
//! whose path is one hop beyond a node it already has (so it learns a network hop by hop). This
//! store keeps one best path per node and admits a node once it has answered one of our
//! queries on that path, which proves the path. A path is replaced by a shorter one (fewer label
//! bits), or by any working one after the old one failed; a direct peer keeps its one-hop label.
//! The store holds at most `capacity` nodes besides direct peers; when full, the worst is
//! evicted (unreachable first, then failing, then older protocol versions, then the furthest
//! from us in keyspace, latency counting as distance, as in `whichIsWorse`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::{EncodingScheme, Label};

use super::version;

/// An address as cjdns orders and compares it: bytes 8..16 then 0..8, big-endian.
pub(crate) fn rotated(address: &[u8; 16]) -> u128 {
    let mut r = [0u8; 16];
    r[..8].copy_from_slice(&address[8..]);
    r[8..].copy_from_slice(&address[..8]);
    u128::from_be_bytes(r)
}

/// The inverse of [`rotated`].
pub(crate) fn unrotated(rot: u128) -> [u8; 16] {
    let r = rot.to_be_bytes();
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(&r[8..]);
    a[8..].copy_from_slice(&r[..8]);
    a
}

/// Keyspace distance between two addresses (XOR of rotated addresses).
pub(crate) fn distance(a: &[u8; 16], b: &[u8; 16]) -> u128 {
    rotated(a) ^ rotated(b)
}

/// `Address_prefixForIp6`: bytes 8..12 as a big-endian number.
pub(crate) fn prefix(a: &[u8; 16]) -> u32 {
    (rotated(a) >> 96) as u32
}

/// Read-only view of a stored node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// Public key.
    pub key: PublicKey,
    /// cjdns address of the key.
    pub address: Address,
    /// Best known path from this node, `None` while unreachable.
    pub path: Option<Label>,
    /// Protocol version.
    pub version: u32,
    /// Whether it is a direct peer.
    pub is_peer: bool,
    /// Smoothed round-trip time of DHT queries, once one was answered.
    pub rtt: Option<Duration>,
    /// When it last answered a query.
    pub last_heard: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) key: PublicKey,
    pub(crate) address: Address,
    pub(crate) version: u32,
    pub(crate) scheme: Option<EncodingScheme>,
    pub(crate) encoding_index: u32,
    pub(crate) path: Option<Label>,
    pub(crate) peer_label: Option<Label>,
    pub(crate) failures: u32,
    pub(crate) rtt_ms: Option<u32>,
    pub(crate) last_heard: Option<Instant>,
    /// Last time the janitor or anyone queried it (for "least recently pinged").
    pub(crate) last_queried: Option<Instant>,
    pub(crate) dnd: bool,
    /// Where the next `gp` to this node starts (pages through its peers).
    pub(crate) gp_cursor: u64,
}

impl Node {
    fn new(key: PublicKey, address: Address, version: u32) -> Self {
        Self {
            key,
            address,
            version,
            scheme: None,
            encoding_index: 0,
            path: None,
            peer_label: None,
            failures: 0,
            rtt_ms: None,
            last_heard: None,
            last_queried: None,
            dnd: false,
            gp_cursor: 0,
        }
    }

    pub(crate) fn info(&self) -> NodeInfo {
        NodeInfo {
            key: self.key,
            address: self.address,
            path: self.path,
            version: self.version,
            is_peer: self.peer_label.is_some(),
            rtt: self.rtt_ms.map(|ms| Duration::from_millis(u64::from(ms))),
            last_heard: self.last_heard,
        }
    }

    /// Usable as an answer or a search hop.
    pub(crate) fn reachable(&self) -> bool {
        self.path.is_some() && self.failures < FAILURES_UNREACHABLE
    }

    fn is_peer_path(&self) -> bool {
        self.peer_label.is_some() && self.path == self.peer_label
    }
}

/// After this many unanswered queries in a row on its path, a node is no longer handed out or
/// asked in searches (until it answers again).
pub(crate) const FAILURES_UNREACHABLE: u32 = 2;

/// What an update did to a node's best path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathUpdate {
    /// Unchanged.
    Same,
    /// New best path (or newly reachable).
    Changed(Label),
}

/// Nodes keyed by rotated address.
#[derive(Debug, Clone)]
pub(crate) struct NodeStore {
    self_key: PublicKey,
    self_address: Address,
    scheme: EncodingScheme,
    nodes: BTreeMap<u128, Node>,
    capacity: usize,
    max_peers: usize,
}

impl NodeStore {
    pub(crate) fn new(
        self_key: PublicKey,
        scheme: EncodingScheme,
        capacity: usize,
        max_peers: usize,
    ) -> Self {
        Self {
            self_key,
            self_address: self_key.address(),
            scheme,
            nodes: BTreeMap::new(),
            capacity,
            max_peers,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn get(&self, address: &Address) -> Option<&Node> {
        self.nodes.get(&rotated(address.as_bytes()))
    }

    pub(crate) fn get_mut(&mut self, address: &Address) -> Option<&mut Node> {
        self.nodes.get_mut(&rotated(address.as_bytes()))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    fn peer_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.peer_label.is_some())
            .count()
    }

    /// A direct peer came up at `label` (a one-hop label of our switch).
    pub(crate) fn add_peer(&mut self, key: PublicKey, label: Label, version: u32) -> PathUpdate {
        let address = key.address();
        let rot = rotated(address.as_bytes());
        if !self.nodes.contains_key(&rot) && self.peer_count() >= self.max_peers {
            return PathUpdate::Same;
        }
        let node = self
            .nodes
            .entry(rot)
            .or_insert_with(|| Node::new(key, address, version));
        if version != 0 {
            node.version = version;
        }
        node.peer_label = Some(label);
        node.failures = 0;
        let update = if node.path == Some(label) {
            PathUpdate::Same
        } else {
            node.path = Some(label);
            PathUpdate::Changed(label)
        };
        self.evict();
        update
    }

    /// The peer at `label` went away: it and every node whose path went through it lose their
    /// path. Returns the nodes that became unreachable.
    pub(crate) fn remove_peer(&mut self, label: Label) -> Vec<NodeInfo> {
        let mut lost = Vec::new();
        for node in self.nodes.values_mut() {
            if node.peer_label == Some(label) {
                node.peer_label = None;
            }
            if let Some(p) = node.path {
                if p.routes_through(label) && self.scheme.is_one_hop(label) {
                    node.path = None;
                    lost.push(node.info());
                }
            }
        }
        self.evict();
        lost
    }

    /// A node answered a query we sent it on `path`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_reply(
        &mut self,
        now: Instant,
        key: PublicKey,
        path: Label,
        version: u32,
        scheme: Option<EncodingScheme>,
        encoding_index: u32,
        rtt: Duration,
        dnd: bool,
    ) -> PathUpdate {
        if key == self.self_key {
            return PathUpdate::Same;
        }
        let address = key.address();
        let rot = rotated(address.as_bytes());
        let node = self
            .nodes
            .entry(rot)
            .or_insert_with(|| Node::new(key, address, version));
        if node.scheme.is_some() && scheme.is_some() && node.scheme != scheme {
            // It restarted with another switch: nothing we knew about its links holds.
            node.gp_cursor = 0;
        }
        node.scheme = scheme;
        node.encoding_index = encoding_index;
        node.version = version;
        node.dnd = dnd;
        node.last_heard = Some(now);
        let ms = u32::try_from(rtt.as_millis()).unwrap_or(u32::MAX).max(1);
        node.rtt_ms = Some(match node.rtt_ms {
            None => ms,
            Some(old) => ((u64::from(old) * 7 + u64::from(ms)) / 8) as u32,
        });
        let old_failed = node.failures >= FAILURES_UNREACHABLE;
        let update = match node.path {
            Some(p) if p == path => {
                node.failures = 0;
                if old_failed {
                    PathUpdate::Changed(path)
                } else {
                    PathUpdate::Same
                }
            }
            _ if node.is_peer_path() && !old_failed => PathUpdate::Same,
            Some(p) if p.log2() <= path.log2() && node.failures == 0 => PathUpdate::Same,
            _ => {
                node.path = Some(path);
                node.failures = 0;
                PathUpdate::Changed(path)
            }
        };
        self.evict();
        update
    }

    /// A query to `key` on `path` went unanswered. Returns the node's info if this made it
    /// unreachable.
    pub(crate) fn on_timeout(&mut self, key: &PublicKey, path: Label) -> Option<NodeInfo> {
        let node = self.get_mut(&key.address())?;
        if node.path != Some(path) {
            return None;
        }
        node.failures = node.failures.saturating_add(1);
        (node.failures == FAILURES_UNREACHABLE).then(|| node.info())
    }

    /// A switch reported that `path` is broken: the node whose best path it is loses it.
    pub(crate) fn break_path(&mut self, path: Label) -> Option<NodeInfo> {
        let node = self.nodes.values_mut().find(|n| n.path == Some(path))?;
        if node.is_peer_path() {
            // Peers are managed by peer_up/peer_down; count it as a failure only.
            node.failures = node.failures.saturating_add(1);
            return None;
        }
        node.path = None;
        Some(node.info())
    }

    /// Drops the worst non-peer nodes until at most `capacity` remain.
    fn evict(&mut self) {
        let self_prefix = prefix(self.self_address.as_bytes());
        while self
            .nodes
            .values()
            .filter(|n| n.peer_label.is_none())
            .count()
            > self.capacity
        {
            let worst = self
                .nodes
                .iter()
                .filter(|(_, n)| n.peer_label.is_none())
                .max_by_key(|(_, n)| {
                    let dist = u64::from(prefix(n.address.as_bytes()) ^ self_prefix);
                    let cost = u64::from(n.rtt_ms.unwrap_or(u32::MAX >> 10)) << 10;
                    (
                        n.path.is_none(),
                        n.failures,
                        n.version < version::CURRENT,
                        dist.saturating_add(cost),
                    )
                })
                .map(|(k, _)| *k);
            match worst {
                Some(k) => {
                    self.nodes.remove(&k);
                }
                None => break,
            }
        }
    }

    /// `NodeStore_getClosestNodes`: up to `count` reachable nodes compatible with
    /// `compat_version`, closest to `target` last.
    pub(crate) fn closest(
        &self,
        target: &[u8; 16],
        count: usize,
        compat_version: u32,
    ) -> Vec<&Node> {
        let keys: Vec<u128> = self.nodes.keys().copied().collect();
        let t = rotated(target);
        let ok = |k: u128| {
            self.nodes
                .get(&k)
                .filter(|n| n.reachable() && version::compatible(compat_version, n.version))
        };
        let mut chosen: Vec<&Node> = Vec::with_capacity(count);
        if keys.is_empty() || count == 0 {
            return chosen;
        }
        let mut next = Some(keys.partition_point(|k| *k < t).min(keys.len() - 1));
        let mut prev = next.and_then(|n| n.checked_sub(1));
        while chosen.len() < count {
            let pk = prev.and_then(|i| keys.get(i).copied());
            let nk = next.and_then(|i| keys.get(i).copied());
            let take_prev = match (pk, nk) {
                (Some(p), Some(n)) => (p ^ t) < (n ^ t),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_prev {
                if let Some(n) = pk.and_then(ok) {
                    chosen.push(n);
                }
                prev = prev.and_then(|i| i.checked_sub(1));
            } else {
                if let Some(n) = nk.and_then(ok) {
                    chosen.push(n);
                }
                next = next.map(|i| i + 1).filter(|&i| i < keys.len());
            }
        }
        chosen.reverse();
        chosen
    }

    /// `NodeStore_getPeers`: (key, label, version) of direct peers, and of this node itself as
    /// label 1, whose label is at or after `label` (truncated to one director), nearest last.
    pub(crate) fn peers_from(
        &self,
        label: u64,
        max: usize,
        own_version: u32,
    ) -> Vec<(PublicKey, u64, u32)> {
        let label = if label > 1 {
            let bits = self
                .scheme
                .form_index(label)
                .and_then(|i| self.scheme.forms().get(i))
                .map_or(4, |f| f.width())
                .min(62);
            (label & ((1u64 << bits) - 1)) | (1u64 << bits)
        } else {
            label
        };
        let mut found: Vec<(PublicKey, u64, u32, bool)> = Vec::new();
        if label <= 1 {
            found.push((self.self_key, 1, own_version, false));
        }
        for n in self.nodes.values() {
            let Some(p) = n.peer_label.filter(|_| n.is_peer_path()) else {
                continue;
            };
            if p.bits() >= label {
                found.push((n.key, p.bits(), n.version, n.dnd));
            }
        }
        found.sort_by_key(|f| f.1.wrapping_sub(label));
        found.truncate(max);
        found.reverse();
        found
            .into_iter()
            .filter(|f| !f.3)
            .map(|(k, l, v, _)| (k, l, v))
            .collect()
    }

    /// `NodeStore_getBest`: the node itself if reachable, else a reachable node closer to the
    /// target (by prefix) than we are, fewest label bits first.
    pub(crate) fn best_next_hop(&self, target: &[u8; 16]) -> Option<&Node> {
        if let Some(n) = self.nodes.get(&rotated(target)).filter(|n| n.reachable()) {
            return Some(n);
        }
        let tp = prefix(target);
        let ours = prefix(self.self_address.as_bytes()) ^ tp;
        self.nodes
            .values()
            .filter(|n| n.reachable() && (prefix(n.address.as_bytes()) ^ tp) < ours)
            .min_by_key(|n| {
                (
                    n.path.map_or(u32::MAX, Label::log2),
                    prefix(n.address.as_bytes()) ^ tp,
                )
            })
    }
}
