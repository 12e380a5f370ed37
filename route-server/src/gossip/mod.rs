//! Gossip between route servers: anti-entropy over two sets of signed items (announcements
//! and lease-book frames), bucketed so that large sets gossip whole in bounded messages.
//!
//! # Why this protocol
//! Both the graph and the lease book are functions of *sets* of signed items that every server
//! prunes by the same rules. Exchanging missing items until two servers hold the same sets is
//! enough for them to agree, in any order and after any partition. Each set is split into 256
//! buckets by the first byte of the item id (announcements: the first 32 bytes of their
//! SHA-512; frames: [`crate::leases::item_id`]); a bucket's digest is 16 bytes of SHA-512 over
//! its sorted ids. Servers compare digests, list the ids of the buckets that differ, and move
//! the items one side lacks. An idle round costs two 8 KiB digest vectors.
//!
//! # Messages and paging
//! [`handle`] is the whole protocol: a server answers any message with at most one reply (or
//! `None` when there is nothing left to say), and keeps no state between messages. A message
//! may carry:
//! - `digests`: the sender's 2 × 256 bucket digests (first message of an exchange);
//! - `ask`: buckets whose ids the receiver should list;
//! - `ids`: the sender's complete id list of some buckets; the receiver wants what it lacks and
//!   sends what the sender lacks;
//! - `want`: ids the sender lacks; `anns`, `lease_frames`: items.
//!
//! Every reply is built within [`PAGE_BUDGET`] bytes of JSON. Whatever does not fit (ids to
//! list, items to send or want) puts its bucket into `ask`, so the other side lists it again
//! and the work resumes there: a large network gossips whole over several messages instead of
//! stopping at one body's worth. Announcement buckets come before lease buckets, and within a
//! message announcements are taken before frames, so leases find their links.
//!
//! # Arrival checks
//! Gossiped announcements are taken with [`Origin::Gossip`]; gossiped frames pass the same
//! arrival checks as the public API ([`LeaseBook::insert_gossip`]). An item refused now (a
//! configuration whose lease has not arrived) is listed again, and fetched again, next round.
//! Authentication of the sending server is the driver's: [`envelope`].

pub mod envelope;

use std::collections::BTreeSet;

use pktmesh_lease_engine::sign::{Signer, SigningKey};
use pktmesh_lease_engine::UnixTime;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::graph::{Graph, Origin};
use crate::leases::{LeaseBook, ORDER_MAGIC, VNET_MAGIC};

/// Buckets per set.
pub const BUCKETS: usize = 256;
/// Largest gossip body the driver accepts (JSON inside the signed envelope).
pub const MAX_GOSSIP_BODY: usize = 1024 * 1024;
/// What a reply's parts may add up to (JSON bytes, estimated), below [`MAX_GOSSIP_BODY`].
pub const PAGE_BUDGET: usize = 3 * MAX_GOSSIP_BODY / 4;
/// Most items of each list taken from one message.
pub const MAX_ITEMS: usize = 16_384;

/// Which set an item or bucket belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetKind {
    /// Announcements.
    Anns,
    /// Lease-book frames.
    Leases,
}

/// One bucket of one set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BucketRef {
    /// The set.
    pub set: SetKind,
    /// The bucket (first byte of the ids in it).
    pub bucket: u8,
}

/// The sender's ids in one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketIds {
    /// Which bucket.
    #[serde(flatten)]
    pub bucket: BucketRef,
    /// Every id the sender holds in it (unless `partial`).
    pub ids: Vec<Hex32>,
    /// The list was cut at the page budget: the receiver only wants from it.
    #[serde(default, skip_serializing_if = "core::ops::Not::not")]
    pub partial: bool,
}

/// An item by set and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemRef {
    /// The set.
    pub set: SetKind,
    /// The id.
    pub id: Hex32,
}

/// The bucket digests of both sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// 256 × 16 bytes for the announcements.
    pub anns: HexBytes,
    /// 256 × 16 bytes for the lease frames.
    pub leases: HexBytes,
}

/// A gossip message; every part is optional (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GossipMessage {
    /// The sender's bucket digests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digests: Option<Digests>,
    /// Buckets the receiver should list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ask: Vec<BucketRef>,
    /// The sender's ids of some buckets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<BucketIds>,
    /// Items the sender wants.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub want: Vec<ItemRef>,
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

/// A 32-byte id in hex on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hex32(#[serde(with = "hex32")] pub [u8; 32]);

/// Bytes in hex on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HexBytes(#[serde(with = "hex_bytes")] pub Vec<u8>);

/// Why a sealed gossip message was refused ([`open_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The envelope: not for us, not from a peer, a bad signature, a stale timestamp.
    #[error(transparent)]
    Envelope(#[from] envelope::EnvelopeError),
    /// The body is not a gossip message.
    #[error("not a gossip message: {0}")]
    Decode(String),
}

/// Opens a sealed gossip message (a `POST /gossip` body, or the answer to one) meant for `me`
/// from one of `peers` at `now_ms`: the envelope ([`envelope::open`]), then the JSON message
/// inside. Returns the sender and the message. Never panics.
pub fn open_message(
    bytes: &[u8],
    me: &SigningKey,
    peers: &[SigningKey],
    now_ms: u64,
) -> Result<(SigningKey, GossipMessage), OpenError> {
    let opened = envelope::open(bytes, me, peers, now_ms)?;
    let msg = serde_json::from_slice(opened.body).map_err(|e| OpenError::Decode(e.to_string()))?;
    Ok((opened.from, msg))
}

/// Seals `msg` from `signer` to `to` at `now_ms` (JSON in an [`envelope`]).
pub fn seal_message(
    signer: &Signer,
    to: &SigningKey,
    now_ms: u64,
    msg: &GossipMessage,
) -> Result<Vec<u8>, serde_json::Error> {
    Ok(envelope::seal(
        signer,
        to,
        now_ms,
        &serde_json::to_vec(msg)?,
    ))
}

/// What one message did to the receiver (for the driver's counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Announcements taken.
    pub anns_taken: usize,
    /// Announcements refused.
    pub anns_refused: usize,
    /// Frames taken.
    pub frames_taken: usize,
    /// Frames refused.
    pub frames_refused: usize,
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
hex_array!(hex32, 32);
fn digests(graph: &mut Graph, book: &mut LeaseBook) -> Digests {
    let mut a = Vec::with_capacity(16 * BUCKETS);
    let mut l = Vec::with_capacity(16 * BUCKETS);
    for b in 0..=255u8 {
        a.extend_from_slice(&graph.bucket_digest(b));
        l.extend_from_slice(&book.bucket_digest(b));
    }
    Digests {
        anns: HexBytes(a),
        leases: HexBytes(l),
    }
}

/// The 16-byte digest of one bucket's ids, as both the graph and the lease book gossip it:
/// the first 16 bytes of SHA-512 over the ids in order.
pub(crate) fn digest_ids<'a>(ids: impl Iterator<Item = &'a [u8; 32]>) -> [u8; 16] {
    use sha2::Digest;
    let mut h = sha2::Sha512::new();
    for id in ids {
        h.update(id);
    }
    let mut d = [0u8; 16];
    d.copy_from_slice(&h.finalize()[..16]);
    d
}

/// The first message of an exchange: the bucket digests of both sets.
pub fn summary(graph: &mut Graph, book: &mut LeaseBook) -> GossipMessage {
    GossipMessage {
        digests: Some(digests(graph, book)),
        ..GossipMessage::default()
    }
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

/// The JSON bytes budget of one reply.
struct Budget(usize);

impl Budget {
    fn take(&mut self, n: usize) -> bool {
        if n > self.0 {
            return false;
        }
        self.0 -= n;
        true
    }
}

const ID_COST: usize = 2 * 32 + 4;
const REF_COST: usize = ID_COST + 24;

fn ids_of(graph: &Graph, book: &LeaseBook, b: BucketRef) -> Vec<[u8; 32]> {
    match b.set {
        SetKind::Anns => graph.bucket_ids(b.bucket).copied().collect(),
        SetKind::Leases => book.bucket_ids(b.bucket).copied().collect(),
    }
}

fn item(graph: &Graph, book: &LeaseBook, set: SetKind, id: &[u8; 32]) -> Option<Vec<u8>> {
    match set {
        SetKind::Anns => graph.announcement_by_id(id).map(|b| b.to_vec()),
        SetKind::Leases => book.frame(id).map(|b| b.to_vec()),
    }
}

fn push_item(reply: &mut GossipMessage, set: SetKind, bytes: Vec<u8>) {
    match set {
        SetKind::Anns => reply.anns.push(HexBytes(bytes)),
        SetKind::Leases => reply.lease_frames.push(HexBytes(bytes)),
    }
}

/// Handles one message from a peer at `now_ms`; returns the reply, if any, and what the message
/// did. Bounded: at most [`MAX_ITEMS`] of each list are read, and the reply fits
/// [`PAGE_BUDGET`].
pub fn handle(
    now_ms: u64,
    graph: &mut Graph,
    book: &mut LeaseBook,
    msg: &GossipMessage,
) -> (Option<GossipMessage>, Report) {
    let mut report = Report::default();
    let now = UnixTime(now_ms / 1000);

    // Items first (announcements before frames), so the lists below already count them.
    let mut anns: Vec<&[u8]> = msg.anns.iter().take(MAX_ITEMS).map(|b| &b.0[..]).collect();
    anns.sort_by_key(|b| {
        crate::announce::Announcement::new_checked(b).map_or(0, |a| a.timestamp_ms())
    });
    for a in anns {
        match graph.ingest(now_ms, a, Origin::Gossip) {
            Ok(_) => report.anns_taken += 1,
            Err(_) => report.anns_refused += 1,
        }
    }
    let mut frames: Vec<&[u8]> = msg
        .lease_frames
        .iter()
        .take(MAX_ITEMS)
        .map(|b| &b.0[..])
        .collect();
    frames.sort_by_key(|b| lease_rank(b));
    for f in frames {
        match book.insert_gossip(now, f, &*graph) {
            Ok(_) => report.frames_taken += 1,
            Err(_) => report.frames_refused += 1,
        }
    }

    let mut reply = GossipMessage::default();
    let mut budget = Budget(PAGE_BUDGET);
    // Buckets to hand back to the peer ("list these again"), in order.
    let mut again: BTreeSet<BucketRef> = BTreeSet::new();

    // Items the peer wants.
    for r in msg.want.iter().take(MAX_ITEMS) {
        let Some(bytes) = item(graph, book, r.set, &r.id.0) else {
            continue;
        };
        if budget.take(2 * bytes.len() + 4) {
            push_item(&mut reply, r.set, bytes);
        } else {
            again.insert(BucketRef {
                set: r.set,
                bucket: r.id.0[0],
            });
        }
    }

    // The peer's lists: want what we lack, send what it lacks.
    for list in msg.ids.iter().take(2 * BUCKETS) {
        let theirs: BTreeSet<[u8; 32]> = list.ids.iter().take(MAX_ITEMS).map(|h| h.0).collect();
        let mut cut = false;
        for id in &theirs {
            let known = match list.bucket.set {
                SetKind::Anns => graph.knows_id(id),
                SetKind::Leases => book.knows(id),
            };
            if known || id[0] != list.bucket.bucket {
                continue;
            }
            if budget.take(REF_COST) {
                reply.want.push(ItemRef {
                    set: list.bucket.set,
                    id: Hex32(*id),
                });
            } else {
                cut = true;
            }
        }
        if !list.partial {
            for id in ids_of(graph, book, list.bucket) {
                if theirs.contains(&id) {
                    continue;
                }
                let Some(bytes) = item(graph, book, list.bucket.set, &id) else {
                    continue;
                };
                if budget.take(2 * bytes.len() + 4) {
                    push_item(&mut reply, list.bucket.set, bytes);
                } else {
                    cut = true;
                }
            }
        }
        if cut {
            again.insert(list.bucket);
        }
    }

    // Buckets to list: those the peer asked for, and those whose digests differ.
    let mut to_list: BTreeSet<BucketRef> = msg.ask.iter().take(2 * BUCKETS).copied().collect();
    if let Some(d) = &msg.digests {
        let mine = digests(graph, book);
        for (set, theirs, ours) in [
            (SetKind::Anns, &d.anns.0, &mine.anns.0),
            (SetKind::Leases, &d.leases.0, &mine.leases.0),
        ] {
            for b in 0..BUCKETS {
                let (lo, hi) = (16 * b, 16 * b + 16);
                if theirs.get(lo..hi) != ours.get(lo..hi) {
                    to_list.insert(BucketRef {
                        set,
                        bucket: b as u8,
                    });
                }
            }
        }
    }
    for b in to_list {
        if again.contains(&b) {
            continue;
        }
        let ids = ids_of(graph, book, b);
        if ids.is_empty() && msg.digests.is_none() && !msg.ask.contains(&b) {
            continue;
        }
        let need = 32 + ids.len() * ID_COST;
        if budget.take(need) {
            reply.ids.push(BucketIds {
                bucket: b,
                ids: ids.into_iter().map(Hex32).collect(),
                partial: false,
            });
        } else if reply.ids.is_empty() && ids.len() * ID_COST > PAGE_BUDGET / 2 {
            // A bucket larger than a page: list what fits; the peer only wants from it.
            let fit = budget.0.saturating_sub(32) / ID_COST;
            budget.take(32 + fit * ID_COST);
            reply.ids.push(BucketIds {
                bucket: b,
                ids: ids.into_iter().take(fit).map(Hex32).collect(),
                partial: true,
            });
        } else {
            again.insert(b);
        }
    }
    reply.ask = again.into_iter().collect();

    ((!reply.is_empty()).then_some(reply), report)
}
