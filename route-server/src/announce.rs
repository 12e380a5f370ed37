//! The cjdns announcement (`wire/Announce.h`): a checked zero-copy view, a plain value that
//! emits, and the signing of announcements with a node's cjdns key.
//!
//! # Layout
//! A 120-byte header, then entities until the end of the message:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 64 | Ed25519 signature over bytes `64..` (the rest of the header and every entity) |
//! | 64 | 32 | Ed25519 public signing key; its Montgomery form is the node's cjdns key |
//! | 96 | 16 | IPv6 of the route server the announcement is meant for |
//! | 112 | 8 | big-endian `(timestamp_ms << 4) \| reset << 3 \| version` (version 1) |
//!
//! An entity is `[length u8][type u8][body]` where `length` counts the two header bytes. A
//! length of 1 is a single pad byte, 0 makes the message invalid, and an entity that runs past
//! the end makes it invalid. Types ([`entity_type`]): ENCODING_SCHEME (0), PEER (1, 32 bytes),
//! VERSION (2, 4 bytes), LINK_STATE (3), plus the three pktmesh extension entities
//! [`entity_type::PKT_LINK_CAPACITY`], [`entity_type::PKT_LEASE_OFFER`] and
//! [`entity_type::PKT_LINK_EGRESS`] (see
//! `docs/route-server.md`); any other type is skipped by its length, as stock cjdns and the
//! upstream snode do, so both ignore ours.
//!
//! # Contract
//! - [`Announcement::new_checked`] never panics. It checks the header length and walks every
//!   entity, checking the bodies of the types it knows; once it succeeds every accessor and the
//!   entity iterator are infallible and in bounds. It does not verify the signature:
//!   [`Announcement::verify`] does, and returns the sender's cjdns key.
//! - [`AnnouncementRepr::emit_signed`] cannot fail for a repr whose entities each fit in 255
//!   bytes ([`AnnouncementRepr::check`]); parsing what it emits gives the same repr back.
//!
//! This file is over 800 lines for one job: the format's view, values and signer belong
//! together, and about 400 lines are its byte vectors and round-trip tests (upstream's signed
//! announcement, entity and link-state vectors).

use core::fmt;

use pktmesh_crypto_auth::sign::{CjdnsSigner, CjdnsVerifyingKey};
use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_switch::{EncodingScheme, SchemeError};
use sha2::{Digest, Sha512};
use thiserror::Error;

use crate::varint;

/// Header length.
pub const HEADER_LEN: usize = 120;
/// Signature length.
pub const SIGNATURE_LEN: usize = 64;
/// The header version cjdns writes (`Announce_Header_CURRENT_VERSION`).
pub const CURRENT_VERSION: u8 = 1;
/// Slots of a link-state history (`LinkState_SLOTS`), one per 10 seconds.
pub const LINK_STATE_SLOTS: usize = 18;
/// Length of a PEER entity.
pub const PEER_LEN: usize = 32;
/// Length of a VERSION entity.
pub const VERSION_LEN: usize = 4;
/// Length of a pktmesh link-capacity entity.
pub const PKT_LINK_CAPACITY_LEN: usize = 14;
/// Length of a pktmesh lease-offer entity.
pub const PKT_LEASE_OFFER_LEN: usize = 22;
/// Length of the pktmesh link-egress entity.
pub const PKT_LINK_EGRESS_LEN: usize = 14;

/// Entity type codes.
pub mod entity_type {
    /// The sender's encoding scheme, compact form.
    pub const ENCODING_SCHEME: u8 = 0;
    /// One direct peer.
    pub const PEER: u8 = 1;
    /// The sender's protocol version.
    pub const VERSION: u8 = 2;
    /// Per-peer link measurements.
    pub const LINK_STATE: u8 = 3;
    /// pktmesh: capacity of the link to one peer and how much of it is leased.
    pub const PKT_LINK_CAPACITY: u8 = 0x50;
    /// pktmesh: an offer to lease bandwidth on the link to one peer.
    pub const PKT_LEASE_OFFER: u8 = 0x51;
    /// pktmesh: what the sender's egress port toward one peer sent and dropped.
    pub const PKT_LINK_EGRESS: u8 = 0x52;
}

/// Why bytes are not a well-formed (or not a validly signed) announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// Shorter than the 120-byte header.
    #[error("announcement of {0} bytes is shorter than its 120-byte header")]
    Truncated(usize),
    /// An entity with length 0.
    #[error("zero-length entity at offset {offset}")]
    ZeroLengthEntity {
        /// Byte offset of the entity in the message.
        offset: usize,
    },
    /// An entity that runs past the end of the message.
    #[error("entity at offset {offset} of length {length} runs past the end")]
    EntityOverrun {
        /// Byte offset.
        offset: usize,
        /// Its length byte.
        length: u8,
    },
    /// A known entity type with the wrong length.
    #[error("entity of type {ty} at offset {offset} has bad length {length}")]
    BadEntityLength {
        /// The type.
        ty: u8,
        /// Byte offset.
        offset: usize,
        /// Its length byte.
        length: u8,
    },
    /// An ENCODING_SCHEME entity that does not hold a sane scheme.
    #[error("bad encoding scheme at offset {offset}: {error}")]
    BadScheme {
        /// Byte offset.
        offset: usize,
        /// What is wrong with it.
        error: SchemeError,
    },
    /// A LINK_STATE entity whose numbers do not decode.
    #[error("malformed link state at offset {offset}")]
    BadLinkState {
        /// Byte offset.
        offset: usize,
    },
    /// The signing key is not a valid Ed25519 point.
    #[error("the signing key is not a valid Ed25519 public key")]
    BadSigningKey,
    /// The signing key maps to a cjdns key whose address is not in fc00::/8.
    #[error("the signing key's cjdns address {0} is not in fc00::/8")]
    NotCjdnsKey(Address),
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// A checked view of one announcement.
#[derive(Clone, Copy)]
pub struct Announcement<'a> {
    bytes: &'a [u8],
}

impl fmt::Debug for Announcement<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Announcement")
            .field("timestamp_ms", &self.timestamp_ms())
            .field("reset", &self.is_reset())
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Announcement<'a> {
    /// Checks the header and every entity (see the module contract).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, AnnounceError> {
        if bytes.len() < HEADER_LEN {
            return Err(AnnounceError::Truncated(bytes.len()));
        }
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            let length = bytes[at];
            match length {
                0 => return Err(AnnounceError::ZeroLengthEntity { offset: at }),
                1 => {
                    at += 1;
                    continue;
                }
                _ => {}
            }
            let end = at + usize::from(length);
            let Some(entity) = bytes.get(at..end) else {
                return Err(AnnounceError::EntityOverrun { offset: at, length });
            };
            Entity::parse(entity, at)?;
            at = end;
        }
        Ok(Self { bytes })
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The signature.
    pub fn signature(&self) -> [u8; 64] {
        arr(self.bytes, 0)
    }

    /// The Ed25519 signing key.
    pub fn signing_key(&self) -> [u8; 32] {
        arr(self.bytes, 64)
    }

    /// The route server this is meant for.
    pub fn snode_ip(&self) -> Address {
        Address::from_bytes(arr(self.bytes, 96))
    }

    fn word(&self) -> u64 {
        u64::from_be_bytes(arr(self.bytes, 112))
    }

    /// Milliseconds since the Unix epoch when the node made the announcement.
    pub fn timestamp_ms(&self) -> u64 {
        self.word() >> 4
    }

    /// Whether this announcement replaces everything known about the node.
    pub fn is_reset(&self) -> bool {
        self.word() >> 3 & 1 == 1
    }

    /// The header version (bits 0..2).
    pub fn version(&self) -> u8 {
        (self.word() & 7) as u8
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> &'a [u8] {
        &self.bytes[SIGNATURE_LEN..]
    }

    /// SHA-512 of the whole message: the announcement's identity in gossip and state hashes.
    pub fn hash(&self) -> [u8; 64] {
        Sha512::digest(self.bytes).into()
    }

    /// The entities in order, pads skipped.
    pub fn entities(&self) -> Entities<'a> {
        Entities {
            bytes: self.bytes,
            at: HEADER_LEN,
        }
    }

    /// Verifies the signature and returns the sender's cjdns key (the Montgomery form of the
    /// signing key), which must have an address in fc00::/8.
    pub fn verify(&self) -> Result<PublicKey, AnnounceError> {
        let vk = CjdnsVerifyingKey::from_bytes(&self.signing_key())
            .ok_or(AnnounceError::BadSigningKey)?;
        if !vk.verify(self.signed_bytes(), &self.signature()) {
            return Err(AnnounceError::BadSignature);
        }
        let key = vk.cjdns_key();
        let address = key.address();
        if !address.is_valid() {
            return Err(AnnounceError::NotCjdnsKey(address));
        }
        Ok(key)
    }
}

/// Iterator over the entities of a checked announcement.
#[derive(Debug, Clone)]
pub struct Entities<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Entities<'a> {
    type Item = Entity<'a>;

    fn next(&mut self) -> Option<Entity<'a>> {
        while self.at < self.bytes.len() {
            let length = usize::from(self.bytes[self.at]);
            if length <= 1 {
                // Pads (0 was refused by new_checked; treat it as the end to stay total).
                if length == 0 {
                    return None;
                }
                self.at += 1;
                continue;
            }
            let entity = self.bytes.get(self.at..self.at + length)?;
            let offset = self.at;
            self.at += length;
            return Entity::parse(entity, offset).ok();
        }
        None
    }
}

/// One entity of an announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity<'a> {
    /// The sender's encoding scheme.
    EncodingScheme(SchemeBytes<'a>),
    /// A direct peer of the sender.
    Peer(PeerView<'a>),
    /// The sender's protocol version.
    Version(u16),
    /// Link measurements toward one peer.
    LinkState(LinkStateView<'a>),
    /// pktmesh: capacity of a link.
    LinkCapacity(LinkCapacity),
    /// pktmesh: a lease offer.
    LeaseOffer(LeaseOffer),
    /// pktmesh: egress measurements of a link.
    LinkEgress(LinkEgress),
    /// A type this crate does not know; skipped by length.
    Unknown {
        /// The type byte.
        ty: u8,
        /// The body after the two header bytes.
        body: &'a [u8],
    },
}

impl<'a> Entity<'a> {
    /// Parses one entity (`bytes` = exactly `length` bytes, length ≥ 2).
    fn parse(bytes: &'a [u8], offset: usize) -> Result<Self, AnnounceError> {
        let length = bytes[0];
        let ty = bytes[1];
        let bad_len = AnnounceError::BadEntityLength { ty, offset, length };
        let body = &bytes[2..];
        Ok(match ty {
            entity_type::ENCODING_SCHEME => {
                if body.len() < 2 {
                    return Err(bad_len);
                }
                EncodingScheme::deserialize(body)
                    .map_err(|error| AnnounceError::BadScheme { offset, error })?;
                Entity::EncodingScheme(SchemeBytes(body))
            }
            entity_type::PEER => {
                if bytes.len() != PEER_LEN {
                    return Err(bad_len);
                }
                Entity::Peer(PeerView(bytes))
            }
            entity_type::VERSION => {
                if bytes.len() != VERSION_LEN {
                    return Err(bad_len);
                }
                Entity::Version(be16(bytes, 2))
            }
            entity_type::LINK_STATE => {
                Entity::LinkState(LinkStateView::new_checked(bytes, offset)?)
            }
            entity_type::PKT_LINK_CAPACITY => {
                if bytes.len() != PKT_LINK_CAPACITY_LEN {
                    return Err(bad_len);
                }
                Entity::LinkCapacity(LinkCapacity {
                    peer_num: be16(bytes, 2),
                    flags: bytes[4],
                    capacity_kbps: be32(bytes, 6),
                    leased_kbps: be32(bytes, 10),
                })
            }
            entity_type::PKT_LEASE_OFFER => {
                if bytes.len() != PKT_LEASE_OFFER_LEN {
                    return Err(bad_len);
                }
                Entity::LeaseOffer(LeaseOffer {
                    peer_num: be16(bytes, 2),
                    kbps: be32(bytes, 6),
                    max_seconds: be32(bytes, 10),
                    price_msat_per_mbit_hour: u64::from_be_bytes(arr(bytes, 14)),
                })
            }
            entity_type::PKT_LINK_EGRESS => {
                if bytes.len() != PKT_LINK_EGRESS_LEN {
                    return Err(bad_len);
                }
                Entity::LinkEgress(LinkEgress {
                    peer_num: be16(bytes, 2),
                    queued: be16(bytes, 4),
                    sent_kbps: be32(bytes, 6),
                    drops: be32(bytes, 10),
                })
            }
            _ => Entity::Unknown { ty, body },
        })
    }

    /// Whether cjdns treats the entity as persistent (VERSION, PEER, ENCODING_SCHEME: later
    /// ones replace earlier ones) rather than ephemeral.
    pub fn is_persistent(&self) -> bool {
        matches!(
            self,
            Entity::EncodingScheme(_) | Entity::Peer(_) | Entity::Version(_)
        )
    }
}

/// The body of a checked ENCODING_SCHEME entity (the compact serialized scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemeBytes<'a>(&'a [u8]);

impl<'a> SchemeBytes<'a> {
    /// The serialized bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The scheme (the bytes were checked to deserialize when the view was built).
    pub fn scheme(&self) -> EncodingScheme {
        EncodingScheme::deserialize(self.0).unwrap_or_else(|_| {
            debug_assert!(false, "checked scheme no longer parses");
            EncodingScheme::v358()
        })
    }
}

/// A PEER entity (32 bytes): a node from which the sender is reachable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PeerView<'a>(&'a [u8]);

impl fmt::Debug for PeerView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("ip", &self.ip())
            .field("label", &format_args!("{:#x}", self.label()))
            .field("peer_num", &format_args!("{:#x}", self.peer_num()))
            .field("form", &self.encoding_form())
            .finish()
    }
}

impl PeerView<'_> {
    /// Form number of the sender's own label toward the peer, in the sender's scheme.
    pub fn encoding_form(&self) -> u8 {
        self.0[2]
    }

    /// Flags (none defined yet).
    pub fn flags(&self) -> u8 {
        self.0[3]
    }

    /// Link MTU in bytes (0 unknown); sent in 8-byte units.
    pub fn mtu(&self) -> u32 {
        u32::from(be16(self.0, 4)) * 8
    }

    /// Low 16 bits of the sender's own label toward the peer (0xffff unknown); LINK_STATE
    /// entities name peers by this number.
    pub fn peer_num(&self) -> u16 {
        be16(self.0, 6)
    }

    /// The "unused" word (cjdns writes 0xffffffff).
    pub fn unused(&self) -> u32 {
        be32(self.0, 8)
    }

    /// The peer's IPv6 address.
    pub fn ip(&self) -> Address {
        Address::from_bytes(arr(self.0, 12))
    }

    /// The label from the peer to the sender, in the peer's scheme; 0 withdraws the link.
    pub fn label(&self) -> u32 {
        be32(self.0, 28)
    }
}

/// One 10-second link-state sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkSample {
    /// Latency measure (cjdns `lagSlots`).
    pub lag: u16,
    /// Packets lost.
    pub drops: u16,
    /// Kilobytes received from the peer.
    pub kb_recv: u32,
}

/// A LINK_STATE entity: `[length][type][pad count][pads…][node id][first slot][lag drops kb]…`,
/// all numbers after the pads in cjdns VarInt form.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LinkStateView<'a> {
    /// The numbers after the pads.
    numbers: &'a [u8],
    node_id: u16,
    start_slot: u8,
    count: u8,
}

impl fmt::Debug for LinkStateView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkState")
            .field("node_id", &self.node_id)
            .field("start_slot", &self.start_slot)
            .field("samples", &self.samples().collect::<Vec<_>>())
            .finish()
    }
}

impl<'a> LinkStateView<'a> {
    fn new_checked(bytes: &'a [u8], offset: usize) -> Result<Self, AnnounceError> {
        let bad = AnnounceError::BadLinkState { offset };
        let pads = usize::from(*bytes.get(2).ok_or(bad)?);
        let after = bytes.get(3 + pads..).ok_or(bad)?;
        if bytes[3..3 + pads].iter().any(|&b| b != 0) {
            return Err(bad);
        }
        let (node_id, n1) = varint::pop(after).ok_or(bad)?;
        let (start, n2) = varint::pop(&after[n1..]).ok_or(bad)?;
        let node_id = u16::try_from(node_id).map_err(|_| bad)?;
        if start >= LINK_STATE_SLOTS as u64 {
            return Err(bad);
        }
        let numbers = &after[n1 + n2..];
        let mut rest = numbers;
        let mut count = 0u8;
        while !rest.is_empty() {
            let (sample, used) = pop_sample(rest).ok_or(bad)?;
            let _ = sample;
            rest = &rest[used..];
            count = count.checked_add(1).ok_or(bad)?;
        }
        if count == 0 {
            return Err(bad);
        }
        Ok(Self {
            numbers,
            node_id,
            start_slot: start as u8,
            count,
        })
    }

    /// The peer these measurements are for: its `peer_num` in the sender's PEER entity.
    pub fn node_id(&self) -> u16 {
        self.node_id
    }

    /// Ring index of the oldest sample (0..18).
    pub fn start_slot(&self) -> u8 {
        self.start_slot
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Never true for a checked view (an entity carries at least one sample).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = LinkSample> + 'a {
        let mut rest = self.numbers;
        core::iter::from_fn(move || {
            let (s, used) = pop_sample(rest)?;
            rest = &rest[used..];
            Some(s)
        })
    }
}

fn pop_sample(b: &[u8]) -> Option<(LinkSample, usize)> {
    let (lag, a) = varint::pop(b)?;
    let (drops, c) = varint::pop(&b[a..])?;
    let (kb, d) = varint::pop(&b[a + c..])?;
    Some((
        LinkSample {
            lag: u16::try_from(lag).ok()?,
            drops: u16::try_from(drops).ok()?,
            kb_recv: u32::try_from(kb).ok()?,
        },
        a + c + d,
    ))
}

/// pktmesh extension (type 0x50, 14 bytes): the capacity of the sender's link to one peer.
///
/// `[14][0x50][peer_num u16][flags u8][0 u8][capacity_kbps u32][leased_kbps u32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkCapacity {
    /// The peer, as in the PEER entity's `peer_num`.
    pub peer_num: u16,
    /// Flags, none defined (0).
    pub flags: u8,
    /// Egress capacity of the link toward the peer, kbit/s.
    pub capacity_kbps: u32,
    /// How much of it is held by active leases, kbit/s.
    pub leased_kbps: u32,
}

/// pktmesh extension (type 0x51, 22 bytes): the sender offers bandwidth leases on its link to
/// one peer.
///
/// `[22][0x51][peer_num u16][0 u16][kbps u32][max_seconds u32][price u64]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseOffer {
    /// The peer, as in the PEER entity's `peer_num`.
    pub peer_num: u16,
    /// Most kbit/s one lease may reserve.
    pub kbps: u32,
    /// Longest lease, seconds.
    pub max_seconds: u32,
    /// Asking price in millisatoshi per Mbit/s per hour.
    pub price_msat_per_mbit_hour: u64,
}

/// pktmesh extension (type 0x52, 14 bytes): what the sender's egress port toward one peer did
/// in the last 10-second slot before the announcement. Drops at a paced egress queue happen
/// before link encryption, so the receiving end's LINK_STATE (nonce gaps) cannot see them; this
/// entity reports them for the link `sender → peer`. Ephemeral, like LINK_STATE.
///
/// `[14][0x52][peer_num u16][queued u16][sent_kbps u32][drops u32]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LinkEgress {
    /// The peer, as in the PEER entity's `peer_num`.
    pub peer_num: u16,
    /// Packets waiting in the port's queue when sampled.
    pub queued: u16,
    /// Mean rate sent toward the peer over the slot, kbit/s.
    pub sent_kbps: u32,
    /// Packets the port dropped in the slot.
    pub drops: u32,
}

/// A PEER entity as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerRepr {
    /// See [`PeerView::encoding_form`].
    pub encoding_form: u8,
    /// See [`PeerView::flags`].
    pub flags: u8,
    /// MTU in 8-byte units.
    pub mtu8: u16,
    /// See [`PeerView::peer_num`].
    pub peer_num: u16,
    /// See [`PeerView::unused`].
    pub unused: u32,
    /// See [`PeerView::ip`].
    pub ip: Address,
    /// See [`PeerView::label`].
    pub label: u32,
}

impl From<PeerView<'_>> for PeerRepr {
    fn from(v: PeerView<'_>) -> Self {
        Self {
            encoding_form: v.encoding_form(),
            flags: v.flags(),
            mtu8: be16(v.0, 4),
            peer_num: v.peer_num(),
            unused: v.unused(),
            ip: v.ip(),
            label: v.label(),
        }
    }
}

/// A LINK_STATE entity as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStateRepr {
    /// See [`LinkStateView::node_id`].
    pub node_id: u16,
    /// See [`LinkStateView::start_slot`] (must be below 18).
    pub start_slot: u8,
    /// Oldest first; 1..=18 of them.
    pub samples: Vec<LinkSample>,
}

/// An entity as a value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a scheme is 252 bytes inline; values are not hot-path
pub enum EntityRepr {
    /// ENCODING_SCHEME.
    EncodingScheme(EncodingScheme),
    /// PEER.
    Peer(PeerRepr),
    /// VERSION.
    Version(u16),
    /// LINK_STATE.
    LinkState(LinkStateRepr),
    /// pktmesh link capacity.
    LinkCapacity(LinkCapacity),
    /// pktmesh lease offer.
    LeaseOffer(LeaseOffer),
    /// pktmesh link egress.
    LinkEgress(LinkEgress),
    /// Anything else (type must not be one of the known ones, body at most 253 bytes).
    Unknown {
        /// Type byte.
        ty: u8,
        /// Body.
        body: Vec<u8>,
    },
}

impl From<Entity<'_>> for EntityRepr {
    fn from(e: Entity<'_>) -> Self {
        match e {
            Entity::EncodingScheme(s) => Self::EncodingScheme(s.scheme()),
            Entity::Peer(p) => Self::Peer(p.into()),
            Entity::Version(v) => Self::Version(v),
            Entity::LinkState(l) => Self::LinkState(LinkStateRepr {
                node_id: l.node_id(),
                start_slot: l.start_slot(),
                samples: l.samples().collect(),
            }),
            Entity::LinkCapacity(c) => Self::LinkCapacity(c),
            Entity::LeaseOffer(o) => Self::LeaseOffer(o),
            Entity::LinkEgress(e) => Self::LinkEgress(e),
            Entity::Unknown { ty, body } => Self::Unknown {
                ty,
                body: body.to_vec(),
            },
        }
    }
}

impl EntityRepr {
    /// Serializes the entity (without alignment pads).
    fn body_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        match self {
            Self::EncodingScheme(s) => {
                let b = s.serialize();
                out.extend_from_slice(&[(b.len() + 2) as u8, entity_type::ENCODING_SCHEME]);
                out.extend_from_slice(&b);
            }
            Self::Peer(p) => {
                out.extend_from_slice(&[PEER_LEN as u8, entity_type::PEER]);
                out.extend_from_slice(&[p.encoding_form, p.flags]);
                out.extend_from_slice(&p.mtu8.to_be_bytes());
                out.extend_from_slice(&p.peer_num.to_be_bytes());
                out.extend_from_slice(&p.unused.to_be_bytes());
                out.extend_from_slice(p.ip.as_bytes());
                out.extend_from_slice(&p.label.to_be_bytes());
            }
            Self::Version(v) => {
                out.extend_from_slice(&[VERSION_LEN as u8, entity_type::VERSION]);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Self::LinkState(l) => {
                out.extend_from_slice(&[0, entity_type::LINK_STATE, 0]);
                varint::push(&mut out, u64::from(l.node_id));
                varint::push(&mut out, u64::from(l.start_slot));
                for s in &l.samples {
                    varint::push(&mut out, u64::from(s.lag));
                    varint::push(&mut out, u64::from(s.drops));
                    varint::push(&mut out, u64::from(s.kb_recv));
                }
                out[0] = out.len().min(255) as u8;
            }
            Self::LinkCapacity(c) => {
                out.extend_from_slice(&[
                    PKT_LINK_CAPACITY_LEN as u8,
                    entity_type::PKT_LINK_CAPACITY,
                ]);
                out.extend_from_slice(&c.peer_num.to_be_bytes());
                out.extend_from_slice(&[c.flags, 0]);
                out.extend_from_slice(&c.capacity_kbps.to_be_bytes());
                out.extend_from_slice(&c.leased_kbps.to_be_bytes());
            }
            Self::LeaseOffer(o) => {
                out.extend_from_slice(&[PKT_LEASE_OFFER_LEN as u8, entity_type::PKT_LEASE_OFFER]);
                out.extend_from_slice(&o.peer_num.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&o.kbps.to_be_bytes());
                out.extend_from_slice(&o.max_seconds.to_be_bytes());
                out.extend_from_slice(&o.price_msat_per_mbit_hour.to_be_bytes());
            }
            Self::LinkEgress(e) => {
                out.extend_from_slice(&[PKT_LINK_EGRESS_LEN as u8, entity_type::PKT_LINK_EGRESS]);
                out.extend_from_slice(&e.peer_num.to_be_bytes());
                out.extend_from_slice(&e.queued.to_be_bytes());
                out.extend_from_slice(&e.sent_kbps.to_be_bytes());
                out.extend_from_slice(&e.drops.to_be_bytes());
            }
            Self::Unknown { ty, body } => {
                out.extend_from_slice(&[(body.len() + 2).min(255) as u8, *ty]);
                out.extend_from_slice(body);
            }
        }
        out
    }

    /// Alignment cjdns gives the entity's first byte (relative to the message start).
    fn alignment(&self) -> usize {
        match self {
            Self::EncodingScheme(_) => 4,
            Self::LinkState(_) => 8,
            _ => 1,
        }
    }
}

/// Why an [`AnnouncementRepr`] cannot be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EmitError {
    /// An entity would be longer than 255 bytes.
    #[error("entity {index} would be {length} bytes (at most 255)")]
    EntityTooLong {
        /// Position in the list.
        index: usize,
        /// Its length.
        length: usize,
    },
    /// A link state with no samples, more than 18, or a start slot of 18 or more.
    #[error("entity {0}: a link state needs 1..=18 samples and a start slot below 18")]
    BadLinkState(usize),
    /// An unknown entity using a known type code.
    #[error("entity {0}: unknown entities may not use a known type code")]
    ReservedType(usize),
    /// The timestamp needs more than 60 bits.
    #[error("timestamp does not fit in 60 bits")]
    TimestampTooLarge,
}

/// An announcement as a value, to build and sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncementRepr {
    /// The route server it is for.
    pub snode_ip: Address,
    /// Milliseconds since the epoch.
    pub timestamp_ms: u64,
    /// Reset flag.
    pub reset: bool,
    /// Header version (3 bits; [`CURRENT_VERSION`]).
    pub version: u8,
    /// Entities in order.
    pub entities: Vec<EntityRepr>,
}

impl AnnouncementRepr {
    /// The value of a checked view (pads dropped).
    pub fn parse(ann: &Announcement<'_>) -> Self {
        Self {
            snode_ip: ann.snode_ip(),
            timestamp_ms: ann.timestamp_ms(),
            reset: ann.is_reset(),
            version: ann.version(),
            entities: ann.entities().map(EntityRepr::from).collect(),
        }
    }

    /// The rules [`AnnouncementRepr::emit_signed`] needs.
    pub fn check(&self) -> Result<(), EmitError> {
        if self.timestamp_ms >> 60 != 0 {
            return Err(EmitError::TimestampTooLarge);
        }
        for (index, e) in self.entities.iter().enumerate() {
            match e {
                EntityRepr::LinkState(l)
                    if l.samples.is_empty()
                        || l.samples.len() > LINK_STATE_SLOTS
                        || usize::from(l.start_slot) >= LINK_STATE_SLOTS =>
                {
                    return Err(EmitError::BadLinkState(index));
                }
                EntityRepr::Unknown { ty, .. }
                    if matches!(
                        *ty,
                        entity_type::ENCODING_SCHEME
                            | entity_type::PEER
                            | entity_type::VERSION
                            | entity_type::LINK_STATE
                            | entity_type::PKT_LINK_CAPACITY
                            | entity_type::PKT_LEASE_OFFER
                            | entity_type::PKT_LINK_EGRESS
                    ) =>
                {
                    return Err(EmitError::ReservedType(index));
                }
                _ => {}
            }
            let length = e.body_bytes().len();
            let length = match e {
                EntityRepr::Unknown { body, .. } => body.len() + 2,
                _ => length,
            };
            if length > 255 {
                return Err(EmitError::EntityTooLong { index, length });
            }
        }
        Ok(())
    }

    /// Serializes and signs with `signer`, aligning the scheme (4) and link states (8) with
    /// pad bytes as cjdns does.
    pub fn emit_signed(&self, signer: &AnnounceSigner) -> Result<Vec<u8>, EmitError> {
        self.check()?;
        let mut out = vec![0u8; HEADER_LEN];
        out[64..96].copy_from_slice(&signer.signing_key());
        out[96..112].copy_from_slice(self.snode_ip.as_bytes());
        let word =
            self.timestamp_ms << 4 | u64::from(self.reset) << 3 | u64::from(self.version & 7);
        out[112..120].copy_from_slice(&word.to_be_bytes());
        for e in &self.entities {
            let align = e.alignment();
            while out.len() % align != 0 {
                out.push(1);
            }
            out.extend_from_slice(&e.body_bytes());
        }
        let sig = signer.sign(&out[SIGNATURE_LEN..]);
        out[..SIGNATURE_LEN].copy_from_slice(&sig);
        Ok(out)
    }
}

/// Signs announcements with a node's cjdns identity, as cjdns `crypto/Sign.c` does: the clamped
/// curve25519 secret is the Ed25519 scalar, so the signing key's Montgomery form is the node's
/// cjdns public key (`pktmesh_crypto_auth::sign`, shared with lease messages). The nonce prefix
/// is derived deterministically from the key, SHA-512("pktmesh announce nonce prefix\0" ‖ key),
/// where cjdns draws it at random; either gives a valid Ed25519 signature. Unlike lease messages
/// (`pktmesh_lease_engine::sign`), announcements are signed over the raw bytes with no context
/// string, because stock snodes verify them that way.
pub struct AnnounceSigner(CjdnsSigner);

/// Domain string of the announcement signer's deterministic nonce prefix.
const ANNOUNCE_NONCE_DOMAIN: &[u8] = b"pktmesh announce nonce prefix\0";

impl fmt::Debug for AnnounceSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnnounceSigner")
            .field("signing_key", &hex::encode(self.signing_key()))
            .finish_non_exhaustive()
    }
}

impl AnnounceSigner {
    /// The signer of the node whose cjdns private key is `key`.
    pub fn from_cjdns(key: &PrivateKey) -> Self {
        Self(CjdnsSigner::new(key, ANNOUNCE_NONCE_DOMAIN))
    }

    /// The Ed25519 public key written into announcements.
    pub fn signing_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs `message` (plain Ed25519, no context).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real announcement from the upstream snode's parser tests (cjdns-ann
    /// `serialized_ann.rs`, `test_parse`): signed by a cjdns node, reset flag set, V358.
    const UPSTREAM: &str = concat!(
        "3a2349bd342608df20d999ff2384e99f1e179dbdf4aaa61692c2477c011cfe63",
        "5b42d3cdb8556d94f365cdfa338dc38f40c1fabf69500830af915f41bed71b09",
        "f2e1d148ed18b09d16b5766e4250df7b4e83a5ccedd4cfde15f1f474db1a5bc2",
        "fc928136dc1fe6e04ef6a6dd7187b85f",
        "00001576462f6f69",
        "04020012",
        "01",
        "07006114458100",
        "200100000000fffffffffffffc928136dc1fe6e04ef6a6dd7187b85f00000015",
    );

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn parses_and_verifies_the_upstream_vector() {
        let bytes = unhex(UPSTREAM);
        let ann = Announcement::new_checked(&bytes).unwrap();
        assert_eq!(ann.timestamp_ms(), 1_474_857_989_878);
        assert!(ann.is_reset());
        assert_eq!(ann.version(), 1);
        assert_eq!(
            ann.snode_ip().to_string(),
            "fc92:8136:dc1f:e6e0:4ef6:a6dd:7187:b85f"
        );
        let key = ann.verify().unwrap();
        assert_eq!(
            key.address().to_string(),
            "fc49:11cb:38c2:8d42:9865:7b8e:0d67:11b3"
        );
        let entities: Vec<_> = ann.entities().collect();
        assert_eq!(entities.len(), 3);
        assert_eq!(entities[0], Entity::Version(18));
        assert!(
            matches!(entities[1], Entity::EncodingScheme(s) if s.scheme() == EncodingScheme::v358())
        );
        let Entity::Peer(p) = entities[2] else {
            panic!("not a peer")
        };
        assert_eq!(p.label(), 0x15);
        assert_eq!(p.peer_num(), 0xffff);
        assert_eq!(p.unused(), 0xffff_ffff);
        assert_eq!(p.mtu(), 0);
        assert_eq!(p.ip(), ann.snode_ip());
        // One flipped bit anywhere after the signature breaks it.
        let mut bad = bytes.clone();
        bad[140] ^= 1;
        assert_eq!(
            Announcement::new_checked(&bad).unwrap().verify(),
            Err(AnnounceError::BadSignature)
        );
    }

    #[test]
    fn upstream_header_only_vector() {
        let bytes = unhex(concat!(
            "9dcdafaf6a129d4194eb52586ec81ecbf7f52abf183268a314e19e066baa7bfb",
            "e01121ba42ff8fa41356420894d576ce0a0105577cca0e50d945283c18d89c07",
            "f2e1d148ed18b09d16b5766e4250df7b4e83a5ccedd4cfde15f1f474db1a5bc2",
            "fc928136dc1fe6e04ef6a6dd7187b85f",
            "0000157354c540c1",
        ));
        let ann = Announcement::new_checked(&bytes).unwrap();
        assert_eq!(ann.entities().count(), 0);
        assert!(!ann.is_reset());
        // Upstream only parses this one; its signature is not valid (checked with an
        // independent Ed25519 verifier too), so it must be refused.
        assert_eq!(ann.verify(), Err(AnnounceError::BadSignature));
    }

    fn header_plus(entities: &str) -> Vec<u8> {
        let mut b = vec![0u8; HEADER_LEN];
        b.extend_from_slice(&unhex(entities));
        b
    }

    #[test]
    fn upstream_entity_vectors() {
        // Invalid entity sequences from cjdns-ann's test_parse_entities.
        for bad in [
            "00123123132412",
            "02050001",
            "02050100",
            "02",
            "0305",
            "02050302",
            "030201",
            "0501000220",
            "030507006114458100",
            "0204020012",
            "20200100000000fffffffffffffc928136dc1fe6e04ef6a6dd7187b85f00000015",
        ] {
            assert!(
                Announcement::new_checked(&header_plus(bad)).is_err(),
                "{bad} should be refused"
            );
        }
        // Unknown entities first and last, a pad in between.
        let b = header_plus(
            "020701200100000000fffffffffffffc928136dc1fe6e04ef6a6dd7187b85f00000003030510",
        );
        let ann = Announcement::new_checked(&b).unwrap();
        let e: Vec<_> = ann.entities().collect();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0], Entity::Unknown { ty: 7, body: &[] });
        assert!(matches!(e[1], Entity::Peer(p) if p.label() == 3));
        assert_eq!(
            e[2],
            Entity::Unknown {
                ty: 5,
                body: &[0x10]
            }
        );
    }

    #[test]
    fn upstream_link_state_vector() {
        let b = header_plus("2003060000000000000410130001120002130002130000140003120001130001");
        let ann = Announcement::new_checked(&b).unwrap();
        let Some(Entity::LinkState(ls)) = ann.entities().next() else {
            panic!("no link state")
        };
        assert_eq!(ls.node_id(), 4);
        assert_eq!(ls.start_slot(), 16);
        let s: Vec<_> = ls.samples().collect();
        let lags: Vec<u16> = s.iter().map(|s| s.lag).collect();
        let kbs: Vec<u32> = s.iter().map(|s| s.kb_recv).collect();
        assert_eq!(lags, [0x13, 0x12, 0x13, 0x13, 0x14, 0x12, 0x13]);
        assert_eq!(kbs, [1, 2, 2, 0, 3, 1, 1]);
        assert!(s.iter().all(|s| s.drops == 0));
    }

    #[test]
    fn malformed_link_states() {
        for bad in [
            "0303",         // no pad count
            "04030100",     // pad count 1 but nothing after
            "0503010100",   // non-zero pad
            "050300040a",   // start slot 10 but no samples
            "05030004",     // truncated
            "0603000401fd", // bad varint
            "06030004120a", // start slot 18
        ] {
            assert!(
                Announcement::new_checked(&header_plus(bad)).is_err(),
                "{bad}"
            );
        }
    }

    fn sample_repr() -> AnnouncementRepr {
        AnnouncementRepr {
            snode_ip: Address::from_bytes([0xfc; 16]),
            timestamp_ms: 1_700_000_000_123,
            reset: true,
            version: CURRENT_VERSION,
            entities: vec![
                EntityRepr::Version(22),
                EntityRepr::EncodingScheme(EncodingScheme::v358()),
                EntityRepr::Peer(PeerRepr {
                    encoding_form: 1,
                    flags: 0,
                    mtu8: 1280 / 8,
                    peer_num: 0x86,
                    unused: 0xffff_ffff,
                    ip: Address::from_bytes([
                        0xfc, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                    ]),
                    label: 0x13,
                }),
                EntityRepr::LinkState(LinkStateRepr {
                    node_id: 0x86,
                    start_slot: 17,
                    samples: vec![
                        LinkSample {
                            lag: 300,
                            drops: 1,
                            kb_recv: 70_000,
                        },
                        LinkSample {
                            lag: 12,
                            drops: 0,
                            kb_recv: 0xfd,
                        },
                    ],
                }),
                EntityRepr::LinkCapacity(LinkCapacity {
                    peer_num: 0x86,
                    flags: 0,
                    capacity_kbps: 100_000,
                    leased_kbps: 20_000,
                }),
                EntityRepr::LeaseOffer(LeaseOffer {
                    peer_num: 0x86,
                    kbps: 50_000,
                    max_seconds: 86_400,
                    price_msat_per_mbit_hour: 1_000,
                }),
                EntityRepr::Unknown {
                    ty: 0x77,
                    body: vec![1, 2, 3],
                },
            ],
        }
    }

    #[test]
    fn emit_round_trips_and_verifies() {
        let signer = AnnounceSigner::from_cjdns(
            &PrivateKey::from_hex(
                "751d3db85b848deaf221e0ed2b6cc17f587b29057d74cdd4dc0bd18b7157288e",
            )
            .unwrap(),
        );
        let repr = sample_repr();
        let bytes = repr.emit_signed(&signer).unwrap();
        let ann = Announcement::new_checked(&bytes).unwrap();
        assert_eq!(AnnouncementRepr::parse(&ann), repr);
        let key = ann.verify().unwrap();
        assert_eq!(
            hex::encode(key.as_bytes()),
            "d7c0df45001a5be5e81c95e519be5199055237cb9116882cadcefe48ab735173"
        );
        // cjdns alignment: the scheme starts on 4, the link state on 8.
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            let (len, ty) = (bytes[at], bytes.get(at + 1).copied());
            if len > 1 {
                match ty {
                    Some(entity_type::ENCODING_SCHEME) => assert_eq!(at % 4, 0),
                    Some(entity_type::LINK_STATE) => assert_eq!(at % 8, 0),
                    _ => {}
                }
            }
            at += usize::from(len);
        }
    }

    #[test]
    fn signatures_are_raw_and_pinned() {
        let signer = AnnounceSigner::from_cjdns(&PrivateKey::from_bytes([7; 32]));
        let sig = signer.sign(b"hello");
        // Announcement signatures made before the signing moved to crypto-auth, byte for byte.
        assert_eq!(
            hex::encode(sig),
            concat!(
                "8469fe04419a5e82341983c9cb8b6d9a39e8efb0f469a56ca9fcc5cd87d32728",
                "168c626ec83eb201847fed06225f6136d76d3019955d6618f0c889adf172ed01"
            )
        );
        // Over the raw bytes, no context.
        let vk = CjdnsVerifyingKey::from_bytes(&signer.signing_key()).unwrap();
        assert!(vk.verify(b"hello", &sig));
    }

    #[test]
    fn emit_refuses_bad_values() {
        let signer = AnnounceSigner::from_cjdns(&PrivateKey::from_bytes([3; 32]));
        let mut r = sample_repr();
        r.entities.push(EntityRepr::Unknown {
            ty: 9,
            body: vec![0; 254],
        });
        assert!(matches!(
            r.emit_signed(&signer),
            Err(EmitError::EntityTooLong { .. })
        ));
        let mut r = sample_repr();
        r.entities.push(EntityRepr::Unknown {
            ty: entity_type::PEER,
            body: vec![],
        });
        assert_eq!(r.emit_signed(&signer), Err(EmitError::ReservedType(7)));
        let mut r = sample_repr();
        r.timestamp_ms = 1 << 60;
        assert_eq!(r.emit_signed(&signer), Err(EmitError::TimestampTooLarge));
    }

    fn any_entity() -> impl proptest::strategy::Strategy<Value = EntityRepr> {
        use proptest::prelude::*;
        let sample =
            (any::<u16>(), any::<u16>(), any::<u32>()).prop_map(|(lag, drops, kb_recv)| {
                LinkSample {
                    lag,
                    drops,
                    kb_recv,
                }
            });
        prop_oneof![
            any::<u16>().prop_map(EntityRepr::Version),
            (0usize..5).prop_map(|i| EntityRepr::EncodingScheme(
                [
                    EncodingScheme::v358(),
                    EncodingScheme::f4(),
                    EncodingScheme::f8(),
                    EncodingScheme::v48(),
                    EncodingScheme::v37(),
                ][i]
            )),
            (any::<[u8; 8]>(), any::<[u8; 16]>(), any::<u32>()).prop_map(|(a, ip, label)| {
                EntityRepr::Peer(PeerRepr {
                    encoding_form: a[0],
                    flags: a[1],
                    mtu8: u16::from_be_bytes([a[2], a[3]]),
                    peer_num: u16::from_be_bytes([a[4], a[5]]),
                    unused: u32::from(a[6]) << 8 | u32::from(a[7]),
                    ip: Address::from_bytes(ip),
                    label,
                })
            }),
            (
                any::<u16>(),
                0u8..18,
                proptest::collection::vec(sample, 1..=18)
            )
                .prop_map(|(node_id, start_slot, samples)| EntityRepr::LinkState(
                    LinkStateRepr {
                        node_id,
                        start_slot,
                        samples,
                    }
                )),
            (any::<u16>(), any::<u8>(), any::<u32>(), any::<u32>()).prop_map(|(p, f, c, l)| {
                EntityRepr::LinkCapacity(LinkCapacity {
                    peer_num: p,
                    flags: f,
                    capacity_kbps: c,
                    leased_kbps: l,
                })
            }),
            (any::<u16>(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(p, k, m, c)| {
                EntityRepr::LeaseOffer(LeaseOffer {
                    peer_num: p,
                    kbps: k,
                    max_seconds: m,
                    price_msat_per_mbit_hour: c,
                })
            }),
            (4u8..0x50, proptest::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(ty, body)| EntityRepr::Unknown { ty, body }),
        ]
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            if let Ok(a) = Announcement::new_checked(&bytes) {
                let _ = a.verify();
                let _ = AnnouncementRepr::parse(&a);
                for e in a.entities() {
                    if let Entity::LinkState(l) = e {
                        proptest::prop_assert_eq!(l.samples().count(), l.len());
                    }
                }
            }
        }

        #[test]
        fn any_repr_round_trips(
            entities in proptest::collection::vec(any_entity(), 0..12),
            ts in 0u64..(1 << 60),
            reset in proptest::prelude::any::<bool>(),
            version in 0u8..8,
            seed in 1u8..255,
        ) {
            let repr = AnnouncementRepr {
                snode_ip: Address::from_bytes([0xfc; 16]),
                timestamp_ms: ts,
                reset,
                version,
                entities,
            };
            let signer = AnnounceSigner::from_cjdns(&PrivateKey::from_bytes([seed; 32]));
            let bytes = repr.emit_signed(&signer).unwrap();
            let ann = Announcement::new_checked(&bytes).unwrap();
            proptest::prop_assert_eq!(AnnouncementRepr::parse(&ann), repr);
            // The key may map outside fc00::/8; the signature itself always verifies.
            proptest::prop_assert!(!matches!(ann.verify(), Err(AnnounceError::BadSignature)));
        }

        #[test]
        fn entities_after_a_header_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut b = vec![0u8; HEADER_LEN];
            b.extend_from_slice(&tail);
            if let Ok(a) = Announcement::new_checked(&b) {
                let n = a.entities().count();
                let repr = AnnouncementRepr::parse(&a);
                proptest::prop_assert_eq!(repr.entities.len(), n);
            }
        }
    }
}
