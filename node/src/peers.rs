//! Direct peers (cjdns `InterfaceController`): one link session per peer (legacy CryptoAuth or
//! Noise, [`LinkCrypto`]), its switch slot, liveness and statistics.
//!
//! What lives here is per-peer bookkeeping and the keepalive schedule; the packet flow through
//! peers is in [`crate::core`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::State;
use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::Label;

use crate::link_crypto::LinkCrypto;

/// Every tick at most one peer is pinged (`PING_INTERVAL`).
pub const PING_INTERVAL: Duration = Duration::from_millis(1024);
/// A peer silent this long is pinged (`PING_AFTER`).
pub const PING_AFTER: Duration = Duration::from_millis(3072);
/// A switch ping with no pong after this long has failed.
pub const PING_TIMEOUT: Duration = Duration::from_millis(2048);
/// A peer silent this long is unresponsive (`UNRESPONSIVE_AFTER`).
pub const UNRESPONSIVE_AFTER: Duration = Duration::from_millis(20480);
/// An incoming peer silent this long is forgotten (`FORGET_AFTER`).
pub const FORGET_AFTER: Duration = Duration::from_millis(262_144);
/// Keepalive pings carry these 12 bytes at the end of their data.
pub const KEEPALIVE_MAGIC: &[u8; 12] = b"IFACE_CNTRLR";

/// A peer's state as `InterfaceController_peerStats` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Link session state (handshake or established).
    Session(State),
    /// Silent for longer than [`UNRESPONSIVE_AFTER`].
    Unresponsive,
    /// Answered with an incompatible version.
    Incompatible,
}

impl PeerState {
    /// The name cjdns prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Session(State::Init) => "INIT",
            Self::Session(State::SentHello) => "SENT_HELLO",
            Self::Session(State::ReceivedHello) => "RECEIVED_HELLO",
            Self::Session(State::SentKey) => "SENT_KEY",
            Self::Session(State::ReceivedKey) => "RECEIVED_KEY",
            Self::Session(State::Established) => "ESTABLISHED",
            Self::Unresponsive => "UNRESPONSIVE",
            Self::Incompatible => "INCOMPATIBLE",
        }
    }
}

/// How to authenticate to a peer we connect to (the password is left out of `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The password the peer authorized.
    pub password: Vec<u8>,
    /// Our login at the peer, if it uses one.
    pub login: Option<Vec<u8>>,
}

impl std::fmt::Debug for PeerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCredentials")
            .field("password", &"<redacted>")
            .field("login", &self.login.as_deref().map(String::from_utf8_lossy))
            .finish()
    }
}

/// One direct peer.
#[derive(Debug)]
pub struct Peer {
    /// Where its datagrams come from and go to.
    pub link_address: SocketAddr,
    /// Its permanent key.
    pub key: PublicKey,
    /// The link session.
    pub crypto: LinkCrypto,
    /// A re-handshake goes straight to legacy CryptoAuth: the peer answered our legacy HELLO
    /// while our Noise initiations went unanswered (a stock cjdns node).
    pub legacy_only: bool,
    /// Its switch slot.
    pub slot: u16,
    /// The label that reaches it from our router.
    pub label: Label,
    /// Whether it connected to us (and may be forgotten when silent).
    pub is_incoming: bool,
    /// Credentials if we connect to it.
    pub credentials: Option<PeerCredentials>,
    /// Display name from the config.
    pub name: Option<String>,
    /// Its protocol version, learned from a pong (0 = unknown).
    pub version: u32,
    /// When a packet from it last authenticated.
    pub last_message: Instant,
    /// When we last pinged it.
    pub last_ping: Option<Instant>,
    /// Cookie of the outstanding keepalive ping.
    pub ping_cookie: Option<u64>,
    /// Liveness probes sent since the peer last spoke (`core::link::liveness`).
    pub probes_unanswered: u8,
    /// Marked by a pong with a version below 20.
    pub incompatible: bool,
    /// Whether the pathfinder has been told about it.
    pub announced: bool,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Packets that failed to decrypt or were replays.
    pub bad_packets: u64,
    /// The peer's label for us (its switch's director back to us), learned with an RPATH
    /// query; what route-server announcements carry.
    pub path_to_us: Option<u64>,
}

impl Peer {
    /// A peer that has not spoken yet: version unknown, not announced, counters at zero.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        link_address: SocketAddr,
        key: PublicKey,
        crypto: LinkCrypto,
        slot: u16,
        label: Label,
        is_incoming: bool,
        credentials: Option<PeerCredentials>,
        name: Option<String>,
        now: Instant,
    ) -> Self {
        Self {
            link_address,
            key,
            crypto,
            legacy_only: false,
            slot,
            label,
            is_incoming,
            credentials,
            name,
            version: 0,
            last_message: now,
            last_ping: None,
            ping_cookie: None,
            probes_unanswered: 0,
            incompatible: false,
            announced: false,
            bytes_in: 0,
            bytes_out: 0,
            bad_packets: 0,
            path_to_us: None,
        }
    }

    /// The state to report.
    pub fn state(&self, now: Instant) -> PeerState {
        if self.incompatible {
            PeerState::Incompatible
        } else if now.saturating_duration_since(self.last_message) > UNRESPONSIVE_AFTER {
            PeerState::Unresponsive
        } else {
            PeerState::Session(self.crypto.state())
        }
    }

    /// The node's address.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// Whether the keepalive should ping it now.
    pub fn is_lazy(&self, now: Instant) -> bool {
        let quiet = now.saturating_duration_since(self.last_message) >= PING_AFTER;
        let unknown_version = self.version == 0;
        let recently_pinged = self
            .last_ping
            .is_some_and(|t| now.saturating_duration_since(t) < PING_AFTER);
        (quiet || unknown_version) && !recently_pinged
    }
}
