//! The node core's public vocabulary: what a data-path call answers ([`Output`]), what waits
//! to be sent ([`Transmit`]), what goes between shards ([`Handoff`], [`Stage`]), what the
//! operator sees ([`NodeEvent`], [`PeerStats`], [`SessionStats`], [`PingResult`]), and the
//! bounded event log every stage reports into ([`EventLog`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::noise::NoiseError;
use pktmesh_crypto_auth::{Address, DecryptError, PublicKey};
use pktmesh_switch::switch_core::SlotError;
use pktmesh_switch::Label;
use thiserror::Error;

use super::budget::BudgetStats;
use crate::pathfinding::NodeRef;
use crate::sessions::TableStats;

/// Events kept for [`super::Node::poll_event`].
pub const MAX_EVENTS: usize = 1024;
/// Supernode queries waiting for [`super::Node::poll_supernode_query`]; more are dropped (the asker
/// retries, as it does after any lost message).
pub const MAX_SUPERNODE_QUERIES: usize = 64;

/// A supernode query (a CJDHT message with a top-level `sq` key) that arrived for this node
/// while it serves as the cjdns face of a route server ([`super::Node::set_supernode_face`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupernodeQuery {
    /// Who asked, and the path back to it; hand it to [`super::Node::answer_supernode_query`].
    pub from: NodeRef,
    /// The bencoded query, as it arrived.
    pub message: Vec<u8>,
}

/// Where the packet in the buffer goes after a data-path call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Nothing to send.
    None,
    /// Send the buffer's packet as one UDP datagram to this address.
    Udp(SocketAddr),
    /// Write the buffer's packet (an IPv6 packet) to the TUN device.
    Tun,
    /// The packet belongs to another shard of this node: pass the buffer to that shard's
    /// [`super::Node::handle_handoff`] (never happens with one shard).
    Handoff(Handoff),
}

/// A packet passed between the shards of one node ([`crate::shard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The shard that owns what the packet needs.
    pub shard: u8,
    /// Where in the owner the packet continues.
    pub stage: Stage,
}

/// Where a handed-off packet continues, and what the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A datagram as it arrived from this link address; the owner of the peer opens it.
    Datagram(SocketAddr),
    /// A switched packet (label already rewritten) that arrived on slot `from` for the peer
    /// in slot `to`; the owner of `to` classifies, paces and seals it.
    Forward {
        /// Slot it came in on ([`pktmesh_switch::switch_core::ROUTER_SLOT`] for our own packets).
        from: u16,
        /// Slot of the peer it goes to.
        to: u16,
    },
    /// A packet for our router, starting with its switch header; the owner of the end-to-end
    /// session (or of the switch ping) handles it.
    Router,
    /// An IPv6 packet from the TUN device; the owner of its destination's session sends it.
    Tun,
}

/// A queued control-plane packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A UDP datagram.
    Udp {
        /// Destination.
        to: SocketAddr,
        /// Datagram.
        data: Vec<u8>,
    },
    /// An IPv6 packet for the TUN device.
    Tun(Vec<u8>),
    /// A packet for another shard of this node ([`Output::Handoff`]).
    Handoff {
        /// Which shard, and where it continues.
        handoff: Handoff,
        /// The packet.
        data: Vec<u8>,
    },
}

/// Something the operator may want to see in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A peer's link session authenticated both ways.
    PeerEstablished {
        /// The peer.
        key: PublicKey,
        /// Its link address.
        address: SocketAddr,
    },
    /// A handshake from an unknown address did not authenticate. Reported at most once a
    /// second, so a flood of forged handshakes cannot flood the log.
    HandshakeRejected {
        /// Where it came from.
        from: SocketAddr,
        /// Why.
        error: DecryptError,
        /// Rejections since the previous report that were not reported.
        suppressed: u64,
    },
    /// A Noise handshake message (an initiation from an unknown address or a peer, or a
    /// response or cookie reply to ours) did not authenticate or was refused. Reported at most
    /// once a second, with the legacy rejections.
    NoiseRejected {
        /// Where it came from.
        from: SocketAddr,
        /// Why.
        error: NoiseError,
        /// Rejections since the previous report that were not reported.
        suppressed: u64,
    },
    /// A peer we connect to rejected our credentials or we cannot open its packets.
    PeerAuthFailed {
        /// The peer.
        key: PublicKey,
        /// Why.
        error: DecryptError,
    },
    /// Packets from an established peer link or end-to-end session that did not open: replayed
    /// or too old for the replay window, or failed decryption. Reported at most once a second,
    /// with the number of such drops since the previous report.
    PacketsDropped {
        /// The peer (link) or the remote node (end-to-end session).
        key: PublicKey,
        /// Whether the end-to-end session refused them (else the link session).
        end_to_end: bool,
        /// Why the last one was refused.
        error: DecryptError,
        /// Drops since the previous report that were not reported.
        suppressed: u64,
    },
    /// An incoming peer was silent too long and was removed.
    PeerForgotten {
        /// The peer.
        key: PublicKey,
    },
    /// A peer we connect to stopped answering on an established link session (nothing
    /// authenticated from it for `liveness::DEAD_AFTER` while a keepalive went unanswered):
    /// the session was reset and a fresh HELLO sent (a peer that restarted has lost its
    /// keys). Reported at most once a second.
    PeerSessionDead {
        /// The peer.
        key: PublicKey,
        /// Its link address.
        address: SocketAddr,
        /// How long it had been silent, in milliseconds.
        silent_ms: u64,
        /// Such reports since the previous one that were not reported.
        suppressed: u64,
    },
    /// A new link handshake with a peer completed and replaced its established session (the
    /// peer restarted or re-keyed, or our reset session is up again), or replaced its entry
    /// at an older link address. Reported at most once a second.
    PeerSessionRenewed {
        /// The peer.
        key: PublicKey,
        /// Its link address.
        address: SocketAddr,
        /// Such reports since the previous one that were not reported.
        suppressed: u64,
    },
    /// Packets that would have cost an X25519 (handshakes, mostly) were dropped unopened
    /// because the handshake budget was spent (`docs/node.md`, "Handshake budget"). Reported
    /// at most once a second, with the counts since the previous report.
    HandshakesShed {
        /// Shed by the link stage (HELLOs from unknown addresses, handshakes on peer links).
        link: u64,
        /// Shed by the session stage (end-to-end handshakes).
        end_to_end: u64,
    },
}

/// Errors of the node's API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The peer key is not a valid cjdns key or is our own.
    #[error("invalid peer key: its address is not in fc00::/8 or it is our own key")]
    BadPeerKey,
    /// The peer is already configured at this address.
    #[error("a peer at {0} already exists")]
    DuplicatePeer(SocketAddr),
    /// No switch slot is free.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The password cannot be used.
    #[error("invalid password: {0}")]
    Password(String),
    /// The peer belongs to another shard of this node ([`crate::shard`]).
    #[error("the peer belongs to shard {0}")]
    OtherShard(u8),
}

/// A switch ping started through the admin API or a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingResult {
    /// The cookie the ping carried.
    pub cookie: u64,
    /// Round-trip time.
    pub rtt: Duration,
    /// Responder's protocol version.
    pub version: u32,
    /// The path the pong came back on (reversed arrival label).
    pub response_path: Label,
}

/// Statistics of one peer, as `InterfaceController_peerStats` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's key.
    pub key: PublicKey,
    /// Label from us to it.
    pub label: Label,
    /// Link address.
    pub link_address: SocketAddr,
    /// State name.
    pub state: &'static str,
    /// Protocol version (0 unknown).
    pub version: u32,
    /// Whether it connected to us.
    pub is_incoming: bool,
    /// Milliseconds since it last spoke.
    pub last_ms_ago: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Login or configured name.
    pub user: Option<String>,
    /// The peer's label for us, once an RPATH query answered.
    pub path_to_us: Option<u64>,
    /// Its switch slot.
    pub slot: u16,
    /// What the link session's replay window saw, and packets that did not open.
    pub receive: ReceiveStats,
    /// The link's capacity, kbit/s, if it is paced (`pktmesh.linkCapacityKbps`).
    pub capacity_kbps: Option<u32>,
    /// Whether the link speaks Noise (else legacy CryptoAuth), `noiseProto` in cjdns' terms.
    pub noise: bool,
}

/// What a session's receiving side counted (`InterfaceController_peerStats` and
/// `SessionManager_sessionStats` report these, as cjdns does). All measured, since the last
/// handshake for the replay-window counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Data packets accepted.
    pub received_packets: u64,
    /// Nonces that left the replay window without being seen.
    pub lost_packets: u64,
    /// Packets refused because their nonce was already seen.
    pub duplicates: u64,
    /// Packets refused because their nonce was below the replay window (too late).
    pub received_out_of_range: u64,
    /// Packets that did not open at all (authentication or decryption failed, or refused as
    /// above), since the session was created.
    pub dropped: u64,
}

impl ReceiveStats {
    /// The counters of `session`, with `dropped` packets refused so far.
    pub fn of(session: &pktmesh_crypto_auth::legacy::Session, dropped: u64) -> Self {
        let r = session.replay_stats();
        Self {
            received_packets: u64::from(r.received),
            lost_packets: u64::from(r.lost),
            duplicates: u64::from(r.duplicates),
            received_out_of_range: u64::from(r.out_of_range),
            dropped,
        }
    }
}

/// Statistics of one end-to-end session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStats {
    /// Remote key.
    pub key: PublicKey,
    /// Remote address.
    pub address: Address,
    /// CryptoAuth state name.
    pub state: &'static str,
    /// Our receive handle.
    pub handle: u32,
    /// Its handle (0 unknown).
    pub send_handle: u32,
    /// Path (0 unknown).
    pub path: u64,
    /// Remote version.
    pub version: u32,
    /// What the session's receiving side counted.
    pub receive: ReceiveStats,
    /// Whether the session runs Noise (a pktmesh peer) rather than legacy CryptoAuth.
    pub noise: bool,
}

/// What the handshake budgets of one node core (shard) let through and shed, and what its
/// session table holds and has let go (`Pktmesh_handshakeStats` sums these over shards).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    /// The link stage's budget (by source IP).
    pub link: BudgetStats,
    /// The session stage's budget (by the peer a packet came through).
    pub end_to_end: BudgetStats,
    /// The end-to-end session table.
    pub sessions: TableStats,
}

impl HandshakeStats {
    /// The sum of two shards' figures.
    pub fn plus(self, other: Self) -> Self {
        Self {
            link: self.link.plus(other.link),
            end_to_end: self.end_to_end.plus(other.end_to_end),
            sessions: self.sessions.plus(other.sessions),
        }
    }
}

/// Events not yet collected, oldest dropped beyond [`MAX_EVENTS`], and the once-a-second limit
/// on reports of refused and shed packets.
#[derive(Debug, Default)]
pub(crate) struct EventLog {
    events: VecDeque<NodeEvent>,
    rejections: RateLimit,
    drops: RateLimit,
    shed: ShedReport,
    dead: RateLimit,
    renewed: RateLimit,
}

/// Packets shed by the handshake budgets since the last [`NodeEvent::HandshakesShed`].
#[derive(Debug, Default)]
struct ShedReport {
    last_report: Option<Instant>,
    link: u64,
    end_to_end: u64,
}

/// At most one report a second, counting what it held back.
#[derive(Debug, Default)]
struct RateLimit {
    last_report: Option<Instant>,
    unreported: u64,
}

impl RateLimit {
    /// Whether to report now; if so, how many were held back since the last report.
    fn due(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if due {
            self.last_report = Some(now);
            Some(std::mem::take(&mut self.unreported))
        } else {
            self.unreported += 1;
            None
        }
    }
}

impl EventLog {
    /// Queues an event, dropping the oldest beyond [`MAX_EVENTS`] (a driver that never polls
    /// must not make the node grow).
    pub(crate) fn push(&mut self, e: NodeEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// Reports a refused packet at most once a second (with the number suppressed since the
    /// last report), so forged or spoofed packets cannot flood the log.
    pub(crate) fn rejection(&mut self, now: Instant, event: impl FnOnce(u64) -> NodeEvent) {
        if let Some(suppressed) = self.rejections.due(now) {
            self.push(event(suppressed));
        }
    }

    /// Reports a link session reset ([`NodeEvent::PeerSessionDead`]) or, with `renewed`, a
    /// renewal ([`NodeEvent::PeerSessionRenewed`]), each at most once a second.
    pub(crate) fn liveness(
        &mut self,
        now: Instant,
        renewed: bool,
        event: impl FnOnce(u64) -> NodeEvent,
    ) {
        let limit = if renewed {
            &mut self.renewed
        } else {
            &mut self.dead
        };
        if let Some(suppressed) = limit.due(now) {
            self.push(event(suppressed));
        }
    }

    /// Reports a packet an established session refused ([`NodeEvent::PacketsDropped`]), at
    /// most once a second.
    pub(crate) fn dropped(
        &mut self,
        now: Instant,
        key: PublicKey,
        end_to_end: bool,
        error: DecryptError,
    ) {
        if let Some(suppressed) = self.drops.due(now) {
            self.push(NodeEvent::PacketsDropped {
                key,
                end_to_end,
                error,
                suppressed,
            });
        }
    }

    /// Counts a packet a handshake budget shed (by the session stage if `end_to_end`, else by
    /// the link stage) and reports the count if a report is due.
    pub(crate) fn shed(&mut self, now: Instant, end_to_end: bool) {
        if end_to_end {
            self.shed.end_to_end += 1;
        } else {
            self.shed.link += 1;
        }
        self.report_shed(now);
    }

    /// Reports packets shed since the last report ([`NodeEvent::HandshakesShed`]), if there
    /// are any and the last report is at least a second old (also called by the timer, so the
    /// last of a flood is reported too).
    pub(crate) fn report_shed(&mut self, now: Instant) {
        let r = &mut self.shed;
        let due = r
            .last_report
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if !due || r.link + r.end_to_end == 0 {
            return;
        }
        r.last_report = Some(now);
        let event = NodeEvent::HandshakesShed {
            link: std::mem::take(&mut r.link),
            end_to_end: std::mem::take(&mut r.end_to_end),
        };
        self.push(event);
    }

    /// The oldest event.
    pub(crate) fn pop(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }
}
