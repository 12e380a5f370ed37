//! Gossip between route servers: anti-entropy by inventory, like the upstream snode, but
//! summarised per node so that servers that mostly agree exchange little.
//!
//! # Why this protocol
//! Both the graph and the lease book are functions of *sets* of signed items (announcements,
//! lease frames) that only grow until they are pruned by rules every server applies the same
//! way. Exchanging missing items until two servers hold the same sets is therefore enough for
//! them to agree, in any order and after any partition; no clocks, sequence numbers or leaders
//! are needed between servers. Upstream sends the hash of every announcement it holds (INV) and
//! fetches what it lacks (GET_DATA / DATA); that costs one 64-byte hash per announcement per
//! round even when nothing changed. Here the first message carries one state hash per node plus
//! one digest of the lease book (80 bytes per node), and only the nodes whose hashes differ get
//! an inventory. Set reconciliation proper (IBLT, minisketch) would shrink the summary further
//! but needs a tuned difference bound; a per-node summary is simple, exact and bounded.
//!
//! # Exchange
//! [`summary`] starts an exchange; [`handle`] answers any message with at most one reply to the
//! same peer (or `None` when there is nothing left to say). An exchange started by A with B:
//! 1. A → B: summary.
//! 2. B → A: B's inventory of the nodes whose hashes differ (and of the lease book if the
//!    digests differ), and a request for A's inventory of the same.
//! 3. A → B: A's inventory; the items of B's that A lacks.
//! 4. B → A: the items A asked for; the items of A's that B lacks.
//! 5. A → B: the items B asked for.
//!
//! After one exchange both hold the union (less whatever the pruning rules drop). Items a server
//! refuses (e.g. a configuration whose lease has not arrived) are asked for again in the next
//! exchange. Announcements arrive with [`Origin::Gossip`] and lease frames without the arrival
//! checks that only make sense for the first server (time, offers): the first server made them.

use std::collections::BTreeSet;

use pktmesh_crypto_auth::Address;
use serde::{Deserialize, Serialize};

use crate::graph::{Graph, Origin};
use crate::leases::{ItemId, LeaseBook, ORDER_MAGIC, VNET_MAGIC};

/// Most items one message carries in each list (bounds the work per message).
pub const MAX_ITEMS: usize = 4096;

/// One announcement, by node, timestamp and hash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AnnRef {
    /// The announcing node.
    #[serde(with = "hex16")]
    pub node: [u8; 16],
    /// Its timestamp, ms.
    pub timestamp_ms: u64,
    /// SHA-512 of the announcement.
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

/// A gossip message; every part is optional (see the module docs for the exchange).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipMessage {
    /// Per-node state hashes: (address, state hash).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub summary: Vec<NodeHash>,
    /// Digest of the sender's lease book (present with a summary).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_hex")]
    pub lease_digest: Option<Vec<u8>>,
    /// Nodes whose inventory the sender wants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ask_inventory: Vec<Address16>,
    /// Whether the sender wants the receiver's lease inventory.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub ask_lease_inventory: bool,
    /// The sender's announcements for some nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<AnnRef>,
    /// The sender's lease-frame ids (present only when asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_inventory: Option<Vec<Hex32>>,
    /// Announcements the sender wants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub want: Vec<AnnRef>,
    /// Lease frames the sender wants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub want_leases: Vec<Hex32>,
    /// Announcements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anns: Vec<HexBytes>,
    /// Lease frames.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lease_frames: Vec<HexBytes>,
}

impl GossipMessage {
    /// Whether the message says nothing (no need to send it).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A node address in hex on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Address16(#[serde(with = "hex16")] pub [u8; 16]);

/// A 32-byte id in hex on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Hex32(#[serde(with = "hex32")] pub [u8; 32]);

/// Bytes in hex on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HexBytes(#[serde(with = "hex_bytes")] pub Vec<u8>);

/// A node's state hash in a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHash {
    /// Address.
    #[serde(with = "hex16")]
    pub node: [u8; 16],
    /// State hash.
    #[serde(with = "hex_bytes")]
    pub hash: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_str(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

macro_rules! hex_array {
    ($name:ident, $n:literal) => {
        mod $name {
            use serde::{Deserialize, Deserializer, Serializer};

            pub(super) fn serialize<S: Serializer>(b: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&hex::encode(b))
            }

            pub(super) fn deserialize<'de, D: Deserializer<'de>>(
                d: D,
            ) -> Result<[u8; $n], D::Error> {
                let s = String::deserialize(d)?;
                let v = hex::decode(s).map_err(serde::de::Error::custom)?;
                v.try_into()
                    .map_err(|_| serde::de::Error::custom(concat!("expected ", $n, " bytes")))
            }
        }
    };
}
hex_array!(hex16, 16);
hex_array!(hex32, 32);

/// The first message of an exchange: per-node state hashes and the lease-book digest.
pub fn summary(graph: &Graph, book: &LeaseBook) -> GossipMessage {
    let mut summary: Vec<NodeHash> = graph
        .nodes()
        .map(|n| NodeHash {
            node: *n.address.as_bytes(),
            hash: n.state_hash().to_vec(),
        })
        .collect();
    summary.sort_by_key(|n| n.node);
    GossipMessage {
        summary,
        lease_digest: Some(book.digest().to_vec()),
        ..GossipMessage::default()
    }
}

fn inventory_of(graph: &Graph, nodes: &BTreeSet<[u8; 16]>) -> Vec<AnnRef> {
    let mut out = Vec::new();
    for a in nodes {
        if let Some(n) = graph.node(&Address::from_bytes(*a)) {
            for (ts, hash, _) in n.announcements() {
                out.push(AnnRef {
                    node: *a,
                    timestamp_ms: ts,
                    hash: hash.to_vec(),
                });
            }
        }
    }
    out.truncate(MAX_ITEMS);
    out
}

fn lease_rank(b: &[u8]) -> u8 {
    match b.first() {
        Some(&ORDER_MAGIC) => 0,
        Some(&VNET_MAGIC) => 4,
        _ => match b.get(1) {
            Some(1) | Some(2) => 1,
            _ => 3,
        },
    }
}

/// Handles one message from a peer at `now`; returns the reply, if any.
pub fn handle(
    now_ms: u64,
    graph: &mut Graph,
    book: &mut LeaseBook,
    msg: &GossipMessage,
) -> Option<GossipMessage> {
    let mut reply = GossipMessage::default();

    // Items first, so that the inventories below already count them.
    let mut anns: Vec<&[u8]> = msg.anns.iter().take(MAX_ITEMS).map(|b| &b.0[..]).collect();
    anns.sort_by_key(|b| {
        crate::announce::Announcement::new_checked(b).map_or(0, |a| a.timestamp_ms())
    });
    for a in anns {
        let _ = graph.ingest(now_ms, a, Origin::Gossip);
    }
    let mut frames: Vec<&[u8]> = msg
        .lease_frames
        .iter()
        .take(MAX_ITEMS)
        .map(|b| &b.0[..])
        .collect();
    frames.sort_by_key(|b| lease_rank(b));
    for f in frames {
        let _ = book.insert_gossip(f);
    }

    if !msg.summary.is_empty() || msg.lease_digest.is_some() {
        let theirs: std::collections::BTreeMap<[u8; 16], &[u8]> = msg
            .summary
            .iter()
            .take(1 << 20)
            .map(|n| (n.node, &n.hash[..]))
            .collect();
        let mut differ = BTreeSet::new();
        for n in graph.nodes() {
            let a = *n.address.as_bytes();
            if theirs.get(&a).is_none_or(|h| *h != n.state_hash()) {
                differ.insert(a);
            }
        }
        for a in theirs.keys() {
            if graph.node(&Address::from_bytes(*a)).is_none() {
                differ.insert(*a);
            }
        }
        reply.inventory = inventory_of(graph, &differ);
        reply.ask_inventory = differ.iter().map(|a| Address16(*a)).collect();
        if msg.lease_digest.as_deref() != Some(&book.digest()[..]) {
            reply.lease_inventory = Some(book.frames().map(|(id, _)| Hex32(*id)).collect());
            reply.ask_lease_inventory = true;
        }
    }
    if !msg.ask_inventory.is_empty() {
        let nodes: BTreeSet<[u8; 16]> = msg.ask_inventory.iter().map(|a| a.0).collect();
        reply.inventory = inventory_of(graph, &nodes);
    }
    if msg.ask_lease_inventory {
        reply.lease_inventory = Some(book.frames().map(|(id, _)| Hex32(*id)).collect());
    }
    for r in msg.inventory.iter().take(MAX_ITEMS) {
        let Ok(hash) = <[u8; 64]>::try_from(&r.hash[..]) else {
            continue;
        };
        if !graph.knows(&Address::from_bytes(r.node), r.timestamp_ms, &hash) {
            reply.want.push(r.clone());
        }
    }
    if let Some(ids) = &msg.lease_inventory {
        reply.want_leases = ids
            .iter()
            .take(MAX_ITEMS)
            .filter(|id| !book.contains(&id.0))
            .copied()
            .collect();
    }
    for r in msg.want.iter().take(MAX_ITEMS) {
        let node = graph.node(&Address::from_bytes(r.node));
        if let Some(b) = node.and_then(|n| {
            n.announcements()
                .find(|(ts, h, _)| *ts == r.timestamp_ms && h[..] == r.hash[..])
                .map(|(_, _, b)| b)
        }) {
            reply.anns.push(HexBytes(b.to_vec()));
        }
    }
    let wanted: BTreeSet<ItemId> = msg
        .want_leases
        .iter()
        .take(MAX_ITEMS)
        .map(|h| h.0)
        .collect();
    reply.lease_frames = book
        .frames()
        .filter(|(id, _)| wanted.contains(*id))
        .map(|(_, b)| HexBytes(b.clone()))
        .collect();

    // Only a message with something to say is sent.
    (!reply.is_empty()).then_some(reply)
}
