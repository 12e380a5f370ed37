//! The lease engine of one node: verifies and applies lease messages (control plane) and turns
//! each forwarded packet into a [`Priority`] (data plane).
//!
//! # Control plane
//! [`LeaseEngine::handle_message`] takes one signed frame and the wall-clock time. It either
//! applies it completely and returns an [`Event`], or returns an [`EngineError`] and changes
//! nothing. Checks, in order: the frame parses; the signature verifies for the key that must have
//! signed (the issuing node for leases, the claimed signer for configuration); the message
//! concerns this node; the time span covers `now`; the signer owns the target; the sequence
//! number is fresh; the result is consistent (no two virtual networks on the same pair of
//! interfaces).
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

use std::collections::{BTreeMap, HashMap};

use pktmesh_crypto_auth::PublicKey;
use thiserror::Error;

use crate::meter::{LeaseMeter, MeterStats, Verdict};
use crate::priority::{network_tag, tagged, HeaderClass, Priority, FREE_TAG};
use crate::sign::SigningKey;
use crate::wire::{Command, Config, Frame, Lease, MessageView, VirtualSwitchLease, WireError};
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
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_interfaces: 256,
            max_leases: 4096,
        }
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
    /// A validly signed command from someone other than the lease's owner.
    #[error("lease {lease} is owned by {owner:?}, not {signer:?}")]
    WrongOwner {
        /// The lease.
        lease: LeaseId,
        /// Its owner.
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
    /// A different lease with the same id is known.
    #[error("a different lease with id {0} is already known")]
    IdConflict(LeaseId),
    /// The node keeps [`EngineConfig::max_leases`] leases already.
    #[error("lease table full")]
    TableFull,
    /// The command does not apply to this kind of lease.
    #[error("command not applicable to lease {0}")]
    NotApplicable(LeaseId),
    /// Attaching would make another virtual network's traffic indistinguishable from this one's
    /// (same arrival and next-hop interfaces).
    #[error("lease {0}: its interface pair is already used by another virtual network")]
    PairInUse(LeaseId),
}

/// What an accepted message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new bandwidth lease is known.
    LeaseAdded(LeaseId),
    /// A new virtual-switch lease is known.
    VirtualSwitchAdded(LeaseId),
    /// The same lease was known already; nothing changed.
    AlreadyKnown(LeaseId),
    /// The lease now belongs to `network` (0: none).
    Attached {
        /// The lease.
        lease: LeaseId,
        /// The network.
        network: u64,
    },
    /// The lease's class mapping changed.
    ClassesSet(LeaseId),
    /// The lease was released and forgotten.
    Released(LeaseId),
    /// The lease changed hands.
    Transferred {
        /// The lease.
        lease: LeaseId,
        /// Its new owner.
        new_owner: SigningKey,
    },
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
    /// Bandwidth leases by id.
    pub leases: BTreeMap<LeaseId, LeaseRecord>,
    /// Virtual-switch leases by id.
    pub vswitches: BTreeMap<LeaseId, VirtualSwitchRecord>,
}

#[derive(Debug, Clone)]
struct Active {
    id: LeaseId,
    meter: LeaseMeter,
    default_class: u8,
    max_class: u8,
    /// [`network_tag`] of the lease's virtual network.
    tag: u16,
}

/// The slot (1-based index into `active`) of the lease in `record`, made now: the meter of the
/// previous rebuild is kept (`old`), the classes and `tag` are the record's current ones.
fn activate(
    active: &mut Vec<Active>,
    old: &mut HashMap<LeaseId, Active>,
    record: &LeaseRecord,
    tag: u16,
) -> u32 {
    let id = record.lease.id;
    let meter = old
        .remove(&id)
        .map_or_else(|| LeaseMeter::new(record.lease.kbps), |a| a.meter);
    active.push(Active {
        id,
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
    pub fn meter_stats(&self, lease: LeaseId) -> Option<MeterStats> {
        self.active
            .iter()
            .find(|a| a.id == lease)
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

    /// The peer with cjdns key `peer` is reachable through interface `interface`.
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

    /// The peer is gone.
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
        }
        result
    }

    fn check_room(&self) -> Result<(), EngineError> {
        if self.state.leases.len() + self.state.vswitches.len() >= self.config.max_leases {
            return Err(EngineError::TableFull);
        }
        Ok(())
    }

    fn add_lease(&mut self, now: UnixTime, lease: Lease) -> Result<Event, EngineError> {
        let ours = lease.node == self.me;
        let into_us = Some(PublicKey::from_bytes(lease.peer)) == self.me_cjdns;
        if !ours && !into_us {
            return Err(EngineError::NotForThisNode(lease.id));
        }
        if now >= lease.end {
            return Err(EngineError::Expired {
                lease: lease.id,
                end: lease.end.0,
                now: now.0,
            });
        }
        if let Some(known) = self.state.leases.get(&lease.id) {
            // The same lease, possibly re-sent after a transfer: keep what we have.
            let same = Lease {
                owner: known.lease.owner,
                ..lease
            };
            return if same == known.lease {
                Ok(Event::AlreadyKnown(lease.id))
            } else {
                Err(EngineError::IdConflict(lease.id))
            };
        }
        if self.state.vswitches.contains_key(&lease.id) {
            return Err(EngineError::IdConflict(lease.id));
        }
        self.check_room()?;
        self.state.leases.insert(
            lease.id,
            LeaseRecord {
                lease,
                network: 0,
                default_class: 0,
                max_class: 15,
                last_seq: None,
            },
        );
        Ok(Event::LeaseAdded(lease.id))
    }

    fn add_vswitch(&mut self, now: UnixTime, vs: VirtualSwitchLease) -> Result<Event, EngineError> {
        if vs.node != self.me {
            return Err(EngineError::NotForThisNode(vs.id));
        }
        if now >= vs.end {
            return Err(EngineError::Expired {
                lease: vs.id,
                end: vs.end.0,
                now: now.0,
            });
        }
        if let Some(known) = self.state.vswitches.get(&vs.id) {
            let same = VirtualSwitchLease {
                owner: known.lease.owner,
                ..vs.clone()
            };
            return if same == known.lease {
                Ok(Event::AlreadyKnown(vs.id))
            } else {
                Err(EngineError::IdConflict(vs.id))
            };
        }
        if self.state.leases.contains_key(&vs.id) {
            return Err(EngineError::IdConflict(vs.id));
        }
        self.check_room()?;
        let id = vs.id;
        self.state.vswitches.insert(
            id,
            VirtualSwitchRecord {
                lease: vs,
                network: 0,
                last_seq: None,
            },
        );
        Ok(Event::VirtualSwitchAdded(id))
    }

    fn configure(&mut self, now: UnixTime, c: Config) -> Result<Event, EngineError> {
        let id = c.target;
        let (owner, start, end, last_seq) = if let Some(r) = self.state.leases.get(&id) {
            (r.lease.owner, r.lease.start, r.lease.end, r.last_seq)
        } else if let Some(r) = self.state.vswitches.get(&id) {
            (r.lease.owner, r.lease.start, r.lease.end, r.last_seq)
        } else {
            return Err(EngineError::UnknownLease(id));
        };
        if c.signer != owner {
            return Err(EngineError::WrongOwner {
                lease: id,
                owner,
                signer: c.signer,
            });
        }
        if now >= end {
            return Err(EngineError::Expired {
                lease: id,
                end: end.0,
                now: now.0,
            });
        }
        if now < start {
            return Err(EngineError::NotStarted {
                lease: id,
                start: start.0,
                now: now.0,
            });
        }
        if let Some(last) = last_seq {
            if c.seq <= last {
                return Err(EngineError::Replayed {
                    lease: id,
                    seq: c.seq,
                    last,
                });
            }
        }
        let event = match c.command {
            Command::Attach { network } => {
                if let Some(r) = self.state.leases.get_mut(&id) {
                    r.network = network;
                } else if let Some(r) = self.state.vswitches.get_mut(&id) {
                    r.network = network;
                }
                Event::Attached { lease: id, network }
            }
            Command::SetClasses {
                default_class,
                max_class,
            } => {
                let Some(r) = self.state.leases.get_mut(&id) else {
                    return Err(EngineError::NotApplicable(id));
                };
                r.default_class = default_class;
                r.max_class = max_class;
                Event::ClassesSet(id)
            }
            Command::Release => {
                self.state.leases.remove(&id);
                self.state.vswitches.remove(&id);
                return Ok(Event::Released(id));
            }
            Command::Transfer { new_owner } => {
                if let Some(r) = self.state.leases.get_mut(&id) {
                    r.lease.owner = new_owner;
                } else if let Some(r) = self.state.vswitches.get_mut(&id) {
                    r.lease.owner = new_owner;
                }
                Event::Transferred {
                    lease: id,
                    new_owner,
                }
            }
        };
        if let Some(r) = self.state.leases.get_mut(&id) {
            r.last_seq = Some(c.seq);
        } else if let Some(r) = self.state.vswitches.get_mut(&id) {
            r.last_seq = Some(c.seq);
        }
        Ok(event)
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
    fn rebuild(&mut self) {
        let n = usize::from(self.config.max_interfaces);
        let now = self.clock;
        let mut old: HashMap<LeaseId, Active> = self.active.drain(..).map(|a| (a.id, a)).collect();
        self.pairs.iter_mut().for_each(|p| *p = 0);
        self.tags.iter_mut().for_each(Vec::clear);
        self.conflicts = 0;
        let mut index: HashMap<LeaseId, u32> = HashMap::new();
        for vs in self.state.vswitches.values() {
            let v = &vs.lease;
            if vs.network == 0 || !is_active(v.start, v.end, now) {
                continue;
            }
            let usable = |id: &LeaseId| {
                self.state.leases.get(id).filter(|r| {
                    r.network == vs.network
                        && r.lease.owner == v.owner
                        && is_active(r.lease.start, r.lease.end, now)
                })
            };
            for out in v.outs.iter().filter_map(usable) {
                if out.lease.node != self.me {
                    continue;
                }
                let Some(&j) = self.peers.get(&PublicKey::from_bytes(out.lease.peer)) else {
                    continue;
                };
                for inl in v.ins.iter().filter_map(usable) {
                    if Some(PublicKey::from_bytes(inl.lease.peer)) != self.me_cjdns {
                        continue;
                    }
                    let Some(&i) = inl.lease.node.cjdns_key().and_then(|k| self.peers.get(&k))
                    else {
                        continue;
                    };
                    let (i, j) = (usize::from(i), usize::from(j));
                    if i >= n || j >= n {
                        continue;
                    }
                    let tag = network_tag(vs.network);
                    let slot = *index
                        .entry(out.lease.id)
                        .or_insert_with(|| activate(&mut self.active, &mut old, out, tag));
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
            let mut per_port: HashMap<usize, Vec<(LeaseId, u64)>> = HashMap::new();
            for r in self.state.leases.values() {
                let l = &r.lease;
                if l.node != self.me || r.network == 0 || !is_active(l.start, l.end, now) {
                    continue;
                }
                if let Some(&j) = self.peers.get(&PublicKey::from_bytes(l.peer)) {
                    if usize::from(j) < n {
                        per_port
                            .entry(usize::from(j))
                            .or_default()
                            .push((l.id, r.network));
                    }
                }
            }
            for (j, leases) in per_port {
                let [(id, network)] = leases[..] else {
                    continue; // several networks on one port: local traffic stays free tier
                };
                let Some(r) = self.state.leases.get(&id) else {
                    continue;
                };
                let tag = network_tag(network);
                let slot = *index
                    .entry(id)
                    .or_insert_with(|| activate(&mut self.active, &mut old, r, tag));
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
