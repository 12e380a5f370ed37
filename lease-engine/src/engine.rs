//! The lease engine of one node: verifies and applies lease messages (control plane) and turns
//! each forwarded packet into a [`Priority`] (data plane).
//!
//! # Control plane
//! [`LeaseEngine::handle_message`] takes one signed frame and the wall-clock time. It either
//! applies it completely and returns an [`Event`], or returns an [`EngineError`] and changes
//! nothing. Checks, in order: the frame parses; the signature verifies for the key that must have
//! signed (the issuing node for leases, the claimed signer for configuration); the message
//! concerns this node; the time span covers `now`; a lease into this node comes from a current
//! peer that has room left; the signer owns the target, and exactly one lease of that id; the
//! sequence number is fresh (above the lease's last, and above the last its signer had accepted
//! for that id on any lease, remembered past the lease); the result is consistent (no two virtual networks on the same pair
//! of interfaces). The rules for applying messages are in the `control` submodule.
//!
//! Leases and virtual switches are kept by [`LeaseKey`], (issuer, id): ids are the issuer's to
//! choose, so a lease another node signs with the same id is a different lease and cannot
//! displace or block the first. Configuration names only an id; it applies to the one lease of
//! that id its signer owns (`docs/leases.md` §3).
//!
//! Time: [`LeaseEngine::poll_timeout`] gives the next instant a lease starts or ends;
//! the driver calls [`LeaseEngine::handle_timeout`] then.
//!
//! # Data plane
//! A bandwidth lease is for a link *out of* a node (node → peer). A node enforces the leases on
//! its own links at their egress ports. It recognises a packet's lease from where the packet
//! comes from and where it goes: a virtual-switch lease held by the same owner connects an
//! *in-lease* (on the link peer P → this node, so arrival interface = P) to an *out-lease* (this
//! node → peer Q, so next-hop interface = Q), when all three are attached to the same virtual
//! network. [`LeaseEngine::classify`] looks the (arrival, next hop) pair up in a dense table
//! (O(1), no hashing), runs the out-lease's [`LeaseMeter`], and maps the result to a priority.
//! Everything else is free tier: fail open.

mod control;

use core::fmt;
use core::ops::RangeInclusive;
use std::collections::{BTreeMap, HashMap};

use pktmesh_crypto_auth::PublicKey;
use thiserror::Error;

use crate::meter::{LeaseMeter, MeterStats, Verdict};
use crate::priority::{network_tag, tagged, HeaderClass, Priority, FREE_TAG};
use crate::sign::SigningKey;
use crate::wire::{Frame, Lease, MessageView, VirtualSwitchLease, WireError};
use crate::{LeaseId, Nanos, UnixTime};

/// Most interfaces the pair table covers (1024: a 4 MiB table).
pub const MAX_INTERFACES: u16 = 1024;

/// Engine limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Interfaces numbered `0..max_interfaces` can carry leased traffic (the pair table has
    /// `max_interfaces²` entries of 4 bytes). Default 256 (256 KiB); values above
    /// [`MAX_INTERFACES`] are lowered to it.
    pub max_interfaces: u16,
    /// Most leases of both kinds the node keeps. Default 4096.
    pub max_leases: usize,
    /// Most bandwidth leases into this node that one issuer (a peer) may have here, so that one
    /// peer cannot fill the table for the others. Leases this node issued do not count. Default
    /// 512 (a peer then fills at most an eighth of the default table).
    pub max_leases_per_issuer: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_interfaces: 256,
            max_leases: 4096,
            max_leases_per_issuer: 512,
        }
    }
}

/// A lease's identity at a node: the key that issued (signed) it and the id the issuer chose.
/// The same id from two issuers names two different leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseKey {
    /// The issuing node's signing key (the message's `node`).
    pub issuer: SigningKey,
    /// The id the issuer gave the lease.
    pub id: LeaseId,
}

impl LeaseKey {
    /// The lease `id` issued by `issuer`.
    pub const fn new(issuer: SigningKey, id: LeaseId) -> Self {
        Self { issuer, id }
    }

    /// Every key of `issuer`, as a range of the engine's maps (they sort by issuer first).
    fn of_issuer(issuer: SigningKey) -> RangeInclusive<Self> {
        Self::new(issuer, LeaseId([0; 16]))..=Self::new(issuer, LeaseId([0xff; 16]))
    }
}

impl fmt::Display for LeaseKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} issued by {:?}", self.id, self.issuer)
    }
}

/// Why a message was rejected. The engine's state is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Malformed bytes.
    #[error("malformed lease message: {0}")]
    Wire(#[from] WireError),
    /// The signature does not verify for the key that must have signed.
    #[error("signature does not verify for {signer:?}")]
    BadSignature {
        /// The key the signature was checked against.
        signer: SigningKey,
    },
    /// A lease issued by another node, or for a link that does not touch this node.
    #[error("lease {0} is not for a link of this node")]
    NotForThisNode(LeaseId),
    /// The lease's time span is over.
    #[error("lease {lease} expired at {end} (now {now})")]
    Expired {
        /// The lease.
        lease: LeaseId,
        /// Its end, unix seconds.
        end: u64,
        /// Now, unix seconds.
        now: u64,
    },
    /// Configuration of a lease that has not started.
    #[error("lease {lease} starts at {start} (now {now})")]
    NotStarted {
        /// The lease.
        lease: LeaseId,
        /// Its start, unix seconds.
        start: u64,
        /// Now, unix seconds.
        now: u64,
    },
    /// Configuration of a lease this node does not know.
    #[error("unknown lease {0}")]
    UnknownLease(LeaseId),
    /// A validly signed command from someone who owns no lease with the target id.
    #[error("lease {lease} is owned by {owner:?}, not {signer:?}")]
    WrongOwner {
        /// The lease.
        lease: LeaseId,
        /// Its owner (of one of them, if several issuers use the id).
        owner: SigningKey,
        /// Who signed.
        signer: SigningKey,
    },
    /// A sequence number not above the last accepted one (a replay or a reordering).
    #[error("sequence number {seq} for lease {lease} is not above {last}")]
    Replayed {
        /// The lease.
        lease: LeaseId,
        /// Sequence number received.
        seq: u64,
        /// Last one accepted.
        last: u64,
    },
    /// A different lease with the same issuer and id is known.
    #[error("a different lease with id {0} from the same issuer is already known")]
    IdConflict(LeaseId),
    /// A lease into this node from a node that is not currently its peer.
    #[error("lease {lease} is issued by {issuer:?}, which is not a peer of this node")]
    NotAPeer {
        /// The lease.
        lease: LeaseId,
        /// Its issuer.
        issuer: SigningKey,
    },
    /// The issuer has [`EngineConfig::max_leases_per_issuer`] leases into this node already.
    #[error("{issuer:?} has {max} leases into this node already")]
    IssuerFull {
        /// The issuer.
        issuer: SigningKey,
        /// The limit.
        max: usize,
    },
    /// The node keeps [`EngineConfig::max_leases`] leases already.
    #[error("lease table full")]
    TableFull,
    /// Configuration whose target id names several leases its signer owns (issued by different
    /// nodes): the engine does not guess which one is meant.
    #[error("{count} leases with id {lease} are owned by {signer:?}: ambiguous target")]
    Ambiguous {
        /// The target id.
        lease: LeaseId,
        /// Who signed.
        signer: SigningKey,
        /// How many leases it names.
        count: usize,
    },
    /// The command does not apply to this kind of lease.
    #[error("command not applicable to lease {0}")]
    NotApplicable(LeaseId),
    /// Attaching would make another virtual network's traffic indistinguishable from this one's
    /// (same arrival and next-hop interfaces).
    #[error("lease {0}: its interface pair is already used by another virtual network")]
    PairInUse(LeaseId),
}

/// What an accepted message did, to the lease it names by (issuer, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new bandwidth lease is known.
    LeaseAdded(LeaseKey),
    /// A new virtual-switch lease is known.
    VirtualSwitchAdded(LeaseKey),
    /// The same lease was known already; nothing changed.
    AlreadyKnown(LeaseKey),
    /// The lease now belongs to `network` (0: none).
    Attached {
        /// The lease.
        lease: LeaseKey,
        /// The network.
        network: u64,
    },
    /// The lease's class mapping changed.
    ClassesSet(LeaseKey),
    /// The lease was released and forgotten.
    Released(LeaseKey),
    /// The lease changed hands.
    Transferred {
        /// The lease.
        lease: LeaseKey,
        /// Its new owner.
        new_owner: SigningKey,
    },
}

impl Event {
    /// The lease the event is about.
    pub fn key(&self) -> LeaseKey {
        match *self {
            Self::LeaseAdded(k)
            | Self::VirtualSwitchAdded(k)
            | Self::AlreadyKnown(k)
            | Self::ClassesSet(k)
            | Self::Released(k) => k,
            Self::Attached { lease, .. } | Self::Transferred { lease, .. } => lease,
        }
    }
}

/// A bandwidth lease with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The lease (with its current owner).
    pub lease: Lease,
    /// Virtual network it is attached to (0: none).
    pub network: u64,
    /// Class of unclassed packets.
    pub default_class: u8,
    /// Highest class allowed.
    pub max_class: u8,
    /// Last accepted configuration sequence number.
    pub last_seq: Option<u64>,
}

/// A virtual-switch lease with its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualSwitchRecord {
    /// The lease (with its current owner).
    pub lease: VirtualSwitchLease,
    /// Virtual network it is attached to (0: none).
    pub network: u64,
    /// Last accepted configuration sequence number.
    pub last_seq: Option<u64>,
}

/// Everything the control plane holds, for comparisons ("nothing changed") and inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Bandwidth leases by (issuer, id).
    pub leases: BTreeMap<LeaseKey, LeaseRecord>,
    /// Virtual-switch leases by (issuer, id); their issuer is always this node.
    pub vswitches: BTreeMap<LeaseKey, VirtualSwitchRecord>,
}

impl Snapshot {
    /// The bandwidth leases with id `id`, whoever issued them (usually one).
    pub fn leases_with_id(&self, id: LeaseId) -> impl Iterator<Item = (&LeaseKey, &LeaseRecord)> {
        self.leases.iter().filter(move |(k, _)| k.id == id)
    }
}

#[derive(Debug, Clone)]
struct Active {
    key: LeaseKey,
    meter: LeaseMeter,
    default_class: u8,
    max_class: u8,
    /// [`network_tag`] of the lease's virtual network.
    tag: u16,
}

/// The slot (1-based index into `active`) of the lease `key`, `record`, made now: the meter of
/// the previous rebuild is kept (`old`), the classes and `tag` are the record's current ones.
fn activate(
    active: &mut Vec<Active>,
    old: &mut HashMap<LeaseKey, Active>,
    key: LeaseKey,
    record: &LeaseRecord,
    tag: u16,
) -> u32 {
    let meter = old
        .remove(&key)
        .map_or_else(|| LeaseMeter::new(record.lease.kbps), |a| a.meter);
    active.push(Active {
        key,
        meter,
        default_class: record.default_class,
        max_class: record.max_class,
        tag,
    });
    active.len() as u32
}

/// Lists `slot` under `tag` on a port; a different slot already there for the tag is a
/// conflict (counted, the first stays).
fn add_tag(port: &mut Vec<(u16, u32)>, tag: u16, slot: u32, conflicts: &mut usize) {
    match port.iter().find(|(t, _)| *t == tag) {
        Some(&(_, s)) if s != slot => *conflicts += 1,
        Some(_) => {}
        None => port.push((tag, slot)),
    }
}

/// How long a remembered configuration sequence number is kept after its last use (24 h).
pub const SEQ_MEMORY_SECS: u64 = 24 * 3600;

/// Most remembered (signer, target id) sequence numbers, per lease the table may hold.
pub const SEQ_MEMORY_PER_LEASE: usize = 4;

/// The last configuration sequence number a signer had accepted for a target id, whichever
/// lease of that id it applied to. Configuration replay protection must outlive the lease
/// record: otherwise a new lease with a reused id (another issuer's copy, made the owner's)
/// accepts the owner's old signed commands for that id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeqMemory {
    seq: u64,
    /// When it was last accepted (wall clock); forgotten [`SEQ_MEMORY_SECS`] after.
    last_use: UnixTime,
    /// The issuer of the lease it applied to, so that eviction hits the issuer that made the
    /// most entries first (a peer churning leases evicts its own entries, not the victims').
    issuer: SigningKey,
}

/// The verdict on one packet: its local priority and the traffic-class value to forward it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// Where the egress scheduler puts it.
    pub priority: Priority,
    /// What to write into the switch header's traffic class (often the value it came with).
    pub traffic_class: u16,
}

/// The lease engine of one node (see the module docs).
#[derive(Debug, Clone)]
pub struct LeaseEngine {
    me: SigningKey,
    me_cjdns: Option<PublicKey>,
    config: EngineConfig,
    clock: UnixTime,
    state: Snapshot,
    peers: HashMap<PublicKey, u16>,
    /// `arrival · n + next_hop` → index into `active` + 1 (0: no lease).
    pairs: Vec<u32>,
    /// Per next-hop interface: (network tag, active slot) of the out-leases leaving there.
    tags: Vec<Vec<(u16, u32)>>,
    /// The interface of traffic this node originates, if it classifies that traffic.
    local_interface: Option<u16>,
    /// Per next-hop interface: active slot of the out-lease that carries local traffic (0: none).
    local: Vec<u32>,
    active: Vec<Active>,
    conflicts: usize,
    /// Last accepted configuration sequence number per (signer, target id), kept after the
    /// lease record is gone (see [`SeqMemory`]).
    seqs: HashMap<(SigningKey, LeaseId), SeqMemory>,
    /// Tagged packets not honoured (see [`LeaseEngine::forged_tags`]).
    forged_tags: u64,
}

fn is_active(start: UnixTime, end: UnixTime, now: UnixTime) -> bool {
    start <= now && now < end
}

impl LeaseEngine {
    /// An engine for the node whose signing key is `me` (see [`crate::sign::Signer::public`]).
    pub fn new(me: SigningKey, mut config: EngineConfig) -> Self {
        config.max_interfaces = config.max_interfaces.min(MAX_INTERFACES);
        let n = usize::from(config.max_interfaces);
        Self {
            me,
            me_cjdns: me.cjdns_key(),
            config,
            clock: UnixTime(0),
            state: Snapshot {
                leases: BTreeMap::new(),
                vswitches: BTreeMap::new(),
            },
            peers: HashMap::new(),
            pairs: vec![0; n * n],
            tags: vec![Vec::new(); n],
            local_interface: None,
            local: vec![0; n],
            active: Vec::new(),
            conflicts: 0,
            seqs: HashMap::new(),
            forged_tags: 0,
        }
    }

    /// Tagged packets refused as lease traffic: their network has no lease on the next hop, or
    /// the packet did not come in over a link that network holds into this node.
    pub fn forged_tags(&self) -> u64 {
        self.forged_tags
    }

    /// The control-plane state.
    pub fn snapshot(&self) -> &Snapshot {
        &self.state
    }

    /// Meter counters of an out-lease currently enforced here.
    pub fn meter_stats(&self, lease: LeaseKey) -> Option<MeterStats> {
        self.active
            .iter()
            .find(|a| a.key == lease)
            .map(|a| a.meter.stats())
    }

    /// Names the interface of the traffic this node originates itself (a node's router slot).
    /// That traffic then rides the out-lease of its port when exactly one virtual network has
    /// an attached out-lease there, and is tagged with that network, so the switches after
    /// this one can tell it from transit traffic that shares the link (`docs/leases.md` §4).
    pub fn set_local_interface(&mut self, interface: Option<u16>) {
        self.local_interface = interface;
        self.rebuild();
    }

    /// The peer with cjdns key `peer` is reachable through interface `interface`. Leases into
    /// this node are accepted only from current peers.
    pub fn peer_up(&mut self, peer: PublicKey, interface: u16) {
        self.peers.insert(peer, interface);
        self.rebuild();
    }

    /// The peers and their interfaces, all at once (a node split over workers learns them from
    /// its shared switch table); recomputes the tables only when something changed.
    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = (PublicKey, u16)>) {
        let peers: HashMap<PublicKey, u16> = peers.into_iter().collect();
        if peers != self.peers {
            self.peers = peers;
            self.rebuild();
        }
    }

    /// The peer is gone. The leases it issued into this node stay known (and take effect again
    /// when it comes back), but no new ones are accepted from it meanwhile.
    pub fn peer_down(&mut self, peer: &PublicKey) {
        self.peers.remove(peer);
        self.rebuild();
    }

    /// Verifies and applies one signed message at wall-clock time `now`.
    pub fn handle_message(&mut self, now: UnixTime, bytes: &[u8]) -> Result<Event, EngineError> {
        let frame = Frame::new_checked(bytes)?;
        let view = frame.view()?;
        let signer = match view {
            MessageView::Lease(l) => l.node(),
            MessageView::VirtualSwitch(v) => v.node(),
            MessageView::Config(c) => c.signer(),
        };
        if !signer.verify(frame.signed_bytes(), &frame.signature()) {
            return Err(EngineError::BadSignature { signer });
        }
        // Time passing is not the message's doing: apply it whatever the verdict.
        self.handle_timeout(now);
        let before = self.state.clone();
        let result = match view {
            MessageView::Lease(l) => self.add_lease(now, l.into()),
            MessageView::VirtualSwitch(v) => self.add_vswitch(now, v.into()),
            MessageView::Config(c) => self.configure(now, c.into()),
        };
        if result.is_ok() {
            let conflicts_before = self.conflicts;
            self.rebuild();
            if self.conflicts > conflicts_before {
                let lease = match view {
                    MessageView::Lease(l) => l.id(),
                    MessageView::VirtualSwitch(v) => v.id(),
                    MessageView::Config(c) => c.target(),
                };
                self.state = before;
                self.rebuild();
                return Err(EngineError::PairInUse(lease));
            }
            if let (MessageView::Config(c), Ok(event)) = (view, &result) {
                self.remember_seq(now, c.signer(), event.key(), c.seq());
            }
        }
        result
    }

    /// Drops leases whose span is over.
    fn expire(&mut self) {
        let now = self.clock;
        self.state.leases.retain(|_, r| now < r.lease.end);
        self.state.vswitches.retain(|_, r| now < r.lease.end);
    }

    /// The next wall-clock instant at which a lease starts or ends.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<UnixTime> {
        let spans = self
            .state
            .leases
            .values()
            .map(|r| (r.lease.start, r.lease.end))
            .chain(
                self.state
                    .vswitches
                    .values()
                    .map(|r| (r.lease.start, r.lease.end)),
            );
        spans
            .flat_map(|(s, e)| [s, e])
            .filter(|t| *t > self.clock)
            .min()
    }

    /// Advances the wall clock: leases that ended are forgotten, leases that started take effect.
    pub fn handle_timeout(&mut self, now: UnixTime) {
        if now > self.clock {
            self.clock = now;
            self.expire();
            self.rebuild();
        }
    }

    /// Recomputes the pair table and the set of enforced out-leases from the control state,
    /// keeping the meters of leases that stay enforced.
    ///
    /// A virtual switch names its leases by id alone. Its out-leases are this node's, so an id
    /// names one of them. Its in-leases are other nodes': an id names the leases into this node
    /// of that id owned by the switch's owner, and an id that names more than one of them names
    /// none, whether or not the others are attached or running (another issuer reusing the id
    /// can deny the owner that link, not take its place: a copy it made the owner's and
    /// attached itself would otherwise be the only usable one). The one it names must be
    /// attached to the switch's network and running now.
    fn rebuild(&mut self) {
        let n = usize::from(self.config.max_interfaces);
        let now = self.clock;
        let mut old: HashMap<LeaseKey, Active> =
            self.active.drain(..).map(|a| (a.key, a)).collect();
        self.pairs.iter_mut().for_each(|p| *p = 0);
        self.tags.iter_mut().for_each(Vec::clear);
        self.conflicts = 0;
        let mut index: HashMap<LeaseKey, u32> = HashMap::new();
        // Leases into this node, by id (any issuer).
        let mut into_us: HashMap<LeaseId, Vec<&LeaseRecord>> = HashMap::new();
        for (key, r) in &self.state.leases {
            if Some(PublicKey::from_bytes(r.lease.peer)) == self.me_cjdns {
                into_us.entry(key.id).or_default().push(r);
            }
        }
        for vs in self.state.vswitches.values() {
            let v = &vs.lease;
            if vs.network == 0 || !is_active(v.start, v.end, now) {
                continue;
            }
            let usable = |r: &LeaseRecord| {
                r.network == vs.network
                    && r.lease.owner == v.owner
                    && is_active(r.lease.start, r.lease.end, now)
            };
            // The arrival interface of each in-lease the id names unambiguously.
            let arrivals: Vec<usize> = v
                .ins
                .iter()
                .filter_map(|id| {
                    let mut named = into_us.get(id)?.iter().filter(|r| r.lease.owner == v.owner);
                    let (Some(inl), None) = (named.next(), named.next()) else {
                        return None;
                    };
                    if !usable(inl) {
                        return None;
                    }
                    let peer = inl.lease.node.cjdns_key()?;
                    let &i = self.peers.get(&peer)?;
                    Some(usize::from(i)).filter(|&i| i < n)
                })
                .collect();
            for id in &v.outs {
                let key = LeaseKey::new(self.me, *id);
                let Some(out) = self.state.leases.get(&key).filter(|r| usable(r)) else {
                    continue;
                };
                let Some(&j) = self.peers.get(&PublicKey::from_bytes(out.lease.peer)) else {
                    continue;
                };
                let j = usize::from(j);
                if j >= n {
                    continue;
                }
                for &i in &arrivals {
                    let tag = network_tag(vs.network);
                    let slot = *index
                        .entry(key)
                        .or_insert_with(|| activate(&mut self.active, &mut old, key, out, tag));
                    add_tag(&mut self.tags[j], tag, slot, &mut self.conflicts);
                    let cell = &mut self.pairs[i * n + j];
                    if *cell != 0 && *cell != slot {
                        self.conflicts += 1;
                    } else {
                        *cell = slot;
                    }
                }
            }
        }
        // Traffic this node originates: the attached out-lease of each port, if unambiguous.
        self.local.iter_mut().for_each(|l| *l = 0);
        if self.local_interface.is_some() {
            let mut per_port: HashMap<usize, Vec<(LeaseKey, u64)>> = HashMap::new();
            for (key, r) in self.state.leases.range(LeaseKey::of_issuer(self.me)) {
                let l = &r.lease;
                if r.network == 0 || !is_active(l.start, l.end, now) {
                    continue;
                }
                if let Some(&j) = self.peers.get(&PublicKey::from_bytes(l.peer)) {
                    if usize::from(j) < n {
                        per_port
                            .entry(usize::from(j))
                            .or_default()
                            .push((*key, r.network));
                    }
                }
            }
            for (j, leases) in per_port {
                let [(key, network)] = leases[..] else {
                    continue; // several networks on one port: local traffic stays free tier
                };
                let Some(r) = self.state.leases.get(&key) else {
                    continue;
                };
                let tag = network_tag(network);
                let slot = *index
                    .entry(key)
                    .or_insert_with(|| activate(&mut self.active, &mut old, key, r, tag));
                self.local[j] = slot;
                add_tag(&mut self.tags[j], tag, slot, &mut self.conflicts);
            }
        }
    }

    /// The priority of a packet of `len` bytes that arrived on interface `arrival` and leaves on
    /// interface `next_hop` at monotonic time `now`, whose switch header carries
    /// `traffic_class`. O(1), no allocation. Packets on no lease are [`Priority::FREE`].
    #[inline]
    #[must_use]
    pub fn classify(
        &mut self,
        now: Nanos,
        arrival: u16,
        next_hop: u16,
        len: u32,
        traffic_class: u16,
    ) -> Priority {
        self.classify_packet(now, arrival, next_hop, len, traffic_class)
            .priority
    }

    /// [`LeaseEngine::classify`], and the traffic-class value to forward the packet with
    /// (`docs/leases.md` §4):
    ///
    /// - tagged by an upstream pktmesh switch: the out-lease on `next_hop` of the network with
    ///   that tag, if there is one and the packet arrived over a link that network holds into
    ///   this node, and the value is forwarded unchanged; otherwise free tier, and the tag is
    ///   replaced by [`FREE_TAG`] (counted in [`LeaseEngine::forged_tags`]);
    /// - not tagged: the (arrival, next hop) pair decides; a packet found on a lease is tagged
    ///   with its network, one found on none leaving a port that carries leases is tagged
    ///   [`FREE_TAG`] so that the switches after this one do not take it for lease traffic.
    ///
    /// O(1) in the number of leases (the tagged case scans the few networks of one port), no
    /// allocation.
    #[inline]
    #[must_use]
    pub fn classify_packet(
        &mut self,
        now: Nanos,
        arrival: u16,
        next_hop: u16,
        len: u32,
        traffic_class: u16,
    ) -> Classified {
        let n = usize::from(self.config.max_interfaces);
        let (a, b) = (usize::from(arrival), usize::from(next_hop));
        let free = Classified {
            priority: Priority::FREE,
            traffic_class,
        };
        if b >= n {
            return free;
        }
        let header = HeaderClass::parse(traffic_class);
        let slot = match header {
            HeaderClass::Tagged { tag: FREE_TAG, .. } => return free,
            HeaderClass::Tagged { tag, class } => {
                // Tags are small public numbers: a tag counts only for a network that leaves
                // on `next_hop`, on a packet that came in over a link that network holds into
                // this node (the pair table, or our own router for our own traffic). Anything
                // else is free tier here and leaves marked free, so that no switch after this
                // one honours it either (its in-link from us may well be that network's).
                let slot = self.tags[b]
                    .iter()
                    .find(|(t, _)| *t == tag)
                    .map(|&(_, s)| s);
                let arrived_on_the_network = slot.is_some_and(|slot| {
                    if Some(arrival) == self.local_interface {
                        self.local[b] == slot
                    } else {
                        a < n && self.pairs[a * n + b] == slot
                    }
                });
                let Some(slot) = slot.filter(|_| arrived_on_the_network) else {
                    self.forged_tags = self.forged_tags.wrapping_add(1);
                    return Classified {
                        priority: Priority::FREE,
                        traffic_class: tagged(FREE_TAG, class),
                    };
                };
                slot as usize
            }
            HeaderClass::Class(_) | HeaderClass::Unclassed => {
                let pair = if Some(arrival) == self.local_interface {
                    self.local[b]
                } else if a < n {
                    self.pairs[a * n + b]
                } else {
                    0
                };
                if pair == 0 {
                    if self.tags[b].is_empty() {
                        return free;
                    }
                    let class = header.class().unwrap_or(0);
                    return Classified {
                        priority: Priority::FREE,
                        traffic_class: tagged(FREE_TAG, class),
                    };
                }
                pair as usize
            }
        };
        let Some(active) = slot.checked_sub(1).and_then(|s| self.active.get_mut(s)) else {
            return free;
        };
        let class = match header.class() {
            Some(c) => c.min(active.max_class),
            None => active.default_class,
        };
        let priority = match active.meter.on_packet(now, len) {
            Verdict::InLease => Priority::in_lease(class),
            Verdict::Excess(p) => p,
        };
        let traffic_class = match header {
            HeaderClass::Tagged { .. } => traffic_class,
            _ => tagged(active.tag, class),
        };
        Classified {
            priority,
            traffic_class,
        }
    }
}
