//! The link stage (cjdns' InterfaceController): direct peers and their outer sessions (legacy
//! CryptoAuth or Noise, negotiated: [`noise`]), keepalives, beacons and link addresses.
//!
//! **Owns:** the peer table (by switch slot and by link address), each peer's link session,
//! counters and keepalive state, the node's beacon password and the keepalive schedule, the
//! Noise responder and the handshake messages waiting to be sent.
//! **Does not own:** the switch slots themselves (taken from and given back to the shard's
//! [`DirectoryView`]), what happens to a packet after it is opened (the switch stage decides),
//! or the pathfinder (the [`super::Node`] wiring tells it about peers this stage announces).
//!
//! In: a datagram from a link address ([`LinkStage::open`]). Out: the same buffer opened in
//! place to the switch packet it carries, with the peer's slot — or sealed in place for a
//! peer ([`LinkStage::seal`]).
//!
//! A datagram that would cost an X25519 (a HELLO naming an authorized user or a Noise
//! initiation from an unknown address, a handshake on a peer's link) first asks the stage's
//! [`Budget`], keyed by the source IP; what it refuses is dropped unopened and counted.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{handshake_sender, CryptoAuth, Session};
use pktmesh_crypto_auth::noise::handshake::CONTROL_MARKER;
use pktmesh_crypto_auth::{Address, DecryptError, PublicKey};
use pktmesh_switch::control::LinkAddress;
use pktmesh_switch::switch_core::SLOT_COUNT;
use pktmesh_switch::Label;
use rand_core::{CryptoRng, RngCore};

use super::budget::{self, Budget, BudgetStats, LINK_BUDGET};
use super::types::{EventLog, NodeError, NodeEvent, PeerStats};
use super::{be32, offset_in};
use crate::beacon::{self, Beacon};
use crate::link_crypto::{LinkCrypto, LinkCryptoMode};
use crate::packet::PacketBuf;
use crate::pathfinding::NodeRef;
use crate::peers::{Peer, PeerCredentials, KEEPALIVE_MAGIC, PING_INTERVAL};
use crate::shard::DirectoryView;

mod liveness;
mod noise;

use noise::NoiseSide;

/// What became of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkIn {
    /// Dropped (not a peer's packet, or it did not open).
    Drop,
    /// Another shard owns the peer (or the HELLO's sender): hand the datagram there.
    Elsewhere(u8),
    /// A Noise handshake message that passed the cheap checks, and the budget where it costs
    /// X25519s: the wiring hands it to [`LinkStage::noise_handshake`] with the node's
    /// randomness. `slot`: the peer it came from (`None`: an initiation from a stranger).
    NoiseHandshake {
        /// The peer whose link it arrived on.
        slot: Option<u16>,
    },
    /// Taken by the link (a handshake message, a Noise keepalive); nothing for the switch.
    Control {
        /// Ping this peer: its link just came up and its version is unknown.
        ping: Option<u16>,
    },
    /// Opened: the buffer holds the switch packet; it came from the peer in `slot`.
    Opened {
        /// The peer's slot.
        slot: u16,
        /// Keep it away from the switch: the link is not up yet and it is not for our router.
        hold: bool,
        /// Ping the peer (new, or its version still unknown): it reveals its version.
        ping: bool,
    },
}

/// What a beacon asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BeaconAction {
    /// Nothing (our own, another shard's, or a known peer whose password was updated).
    None,
    /// A new peer: connect to it with these credentials.
    Connect(PeerCredentials),
}

/// The peers of one shard.
pub(crate) struct LinkStage {
    /// Link sessions see the users added with [`LinkStage::add_user`].
    ca: Arc<CryptoAuth>,
    key: PublicKey,
    peers: Vec<Option<Peer>>,
    by_link: HashMap<SocketAddr, u16>,
    beacon_password: [u8; beacon::PASSWORD_LEN],
    next_keepalive: Instant,
    keepalive_cursor: usize,
    /// Peers removed while opening a datagram (a peer that came back on a new port), for the
    /// wiring to tell the other stages ([`LinkStage::take_departed`]).
    departed: Vec<Peer>,
    /// What may cost an X25519, by source IP.
    budget: Budget<IpAddr>,
    /// The unknown link address whose HELLO the budget refused last, and until when all its
    /// datagrams are shed without asking (a flood's come back to back from one address).
    recently_shed: Option<(SocketAddr, Instant)>,
    /// Noise: the preference, the responder, the wall clock of our initiations.
    noise: NoiseSide,
    /// Handshake messages to send (initiations, responses, cookie replies, keepalives),
    /// taken with [`LinkStage::take_datagram`].
    outbox: VecDeque<(SocketAddr, Vec<u8>)>,
}

/// How long datagrams from an unknown address just refused by the budget are shed without
/// asking it (well under the per-source refill time, so the rate a source gets does not
/// change).
const RECENTLY_SHED: Duration = Duration::from_millis(100);

impl LinkStage {
    /// A stage with no peers; peers that heard our beacon log in with `beacon_password`. It
    /// speaks legacy CryptoAuth only until [`LinkStage::set_link_crypto`] turns Noise on
    /// (the node does, unless configured otherwise).
    pub(crate) fn new(
        ca: Arc<CryptoAuth>,
        beacon_password: [u8; beacon::PASSWORD_LEN],
        now: Instant,
    ) -> Self {
        let key = *ca.public_key();
        let ca_for_noise = ca.clone();
        let mut peers = Vec::with_capacity(SLOT_COUNT);
        peers.resize_with(SLOT_COUNT, || None);
        let mut stage = Self {
            ca,
            key,
            peers,
            by_link: HashMap::new(),
            beacon_password,
            next_keepalive: now,
            keepalive_cursor: 0,
            departed: Vec::new(),
            budget: Budget::new(LINK_BUDGET, now),
            recently_shed: None,
            noise: NoiseSide::new(ca_for_noise, now),
            outbox: VecDeque::new(),
        };
        if let Err(e) = stage.add_user(&beacon_password, Some(beacon::LOCAL_PEERS_LOGIN), None) {
            unreachable!("a fresh context accepts the beacon password: {e}");
        }
        stage
    }

    fn peer(&self, slot: u16) -> Option<&Peer> {
        self.peers.get(usize::from(slot))?.as_ref()
    }

    fn peer_mut(&mut self, slot: u16) -> Option<&mut Peer> {
        self.peers.get_mut(usize::from(slot))?.as_mut()
    }

    /// Authorizes `password` for incoming peers (sessions created from now on see it).
    pub(crate) fn add_user(
        &mut self,
        password: &[u8],
        login: Option<&[u8]>,
        restricted_to: Option<Address>,
    ) -> Result<(), NodeError> {
        // Users are added before peers exist; afterwards the sessions share the context.
        Arc::make_mut(&mut self.ca)
            .add_user(password, login, restricted_to)
            .map_err(|e| NodeError::Password(e.to_string()))?;
        self.noise.set_context(self.ca.clone());
        Ok(())
    }

    /// The link context (its users).
    pub(crate) fn context(&self) -> &CryptoAuth {
        &self.ca
    }

    // ----- peers in ------------------------------------------------------------------

    /// A datagram from `from`: opened in place by the peer's link session, or by a new
    /// incoming peer when it is a HELLO naming an authorized user. `charged`: another shard
    /// already had a HELLO from an unknown address pass the budget before handing it here.
    pub(crate) fn open(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut PacketBuf,
        view: &mut DirectoryView,
        events: &mut EventLog,
        charged: bool,
    ) -> LinkIn {
        // An unknown address whose HELLO the budget refused a moment ago: whatever else it
        // sends now would be dropped too (it is no peer), so it is, before any lookup.
        if !charged
            && self
                .recently_shed
                .is_some_and(|(addr, until)| addr == from && now < until)
        {
            self.budget.shed_again();
            events.shed(now, false);
            return LinkIn::Drop;
        }
        let is_noise_control = buf.data().starts_with(&CONTROL_MARKER);
        let (slot, new, generation) = match self.by_link.get(&from) {
            Some(&slot) if is_noise_control => {
                return self.screen_noise(now, from, Some(slot), buf, view, events, charged);
            }
            Some(&slot) => {
                let Some(peer) = self
                    .peers
                    .get_mut(usize::from(slot))
                    .and_then(Option::as_mut)
                else {
                    return LinkIn::Drop;
                };
                if noise::costs_x25519(&peer.crypto, buf.data())
                    && self.budget.allow(now, from.ip()).is_err()
                {
                    events.shed(now, false);
                    return LinkIn::Drop;
                }
                let generation = peer.crypto.generation();
                if let Err(error) = noise::open_in_place(peer, now, buf) {
                    peer.bad_packets += 1;
                    let key = peer.key;
                    if matches!(
                        error,
                        DecryptError::AuthRequired
                            | DecryptError::UnrecognizedAuth
                            | DecryptError::HandshakeDecryptFailed
                    ) {
                        events.rejection(now, |_| NodeEvent::PeerAuthFailed { key, error });
                    } else if peer.crypto.is_established() {
                        events.dropped(now, key, false, error);
                    }
                    return LinkIn::Drop;
                }
                (slot, false, Some(generation))
            }
            None => {
                if let Some(owner) = view.link_owner_elsewhere(&from) {
                    return LinkIn::Elsewhere(owner);
                }
                if is_noise_control {
                    return self.screen_noise(now, from, None, buf, view, events, charged);
                }
                // Only a HELLO can make a peer, and only one naming an authorized user costs
                // an X25519: that one asks the budget before anything else is done with it.
                if be32(buf.data(), 0).is_none_or(|stage| stage > 1) {
                    return LinkIn::Drop;
                }
                if !charged
                    && budget::hello_costs_x25519(&self.ca, buf.data(), true)
                    && self.budget.allow(now, from.ip()).is_err()
                {
                    self.recently_shed = Some((from, now + RECENTLY_SHED));
                    events.shed(now, false);
                    return LinkIn::Drop;
                }
                if let Some(owner) = hello_owner_elsewhere(view, buf.data()) {
                    return LinkIn::Elsewhere(owner);
                }
                match self.accept(now, from, buf, view, events) {
                    Some(slot) => (slot, true, None),
                    None => return LinkIn::Drop,
                }
            }
        };
        if let Some(generation) = generation {
            self.renewed(now, slot, generation, view, events);
        }
        let Some(peer) = self.peer_mut(slot) else {
            return LinkIn::Drop;
        };
        peer.bytes_in += buf.len() as u64;
        if peer.crypto.is_established() {
            peer.last_message = now;
            peer.probes_unanswered = 0;
            if buf.is_empty() {
                // A Noise keepalive: the link is alive; nothing for the switch.
                return LinkIn::Control {
                    ping: noise::ping_if_new(peer, now),
                };
            }
            return LinkIn::Opened {
                slot,
                hold: false,
                ping: false,
            };
        }
        // Until the link is established only packets for our router are accepted, and the
        // peer is pinged so that it reveals its version.
        let hold = buf.data().get(7) != Some(&1);
        let due = peer
            .last_ping
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_millis(500));
        let ping = !hold && (new || peer.version == 0) && due;
        LinkIn::Opened { slot, hold, ping }
    }

    /// The first packet from an unknown address: only a HELLO that names an authorized user
    /// creates a peer.
    fn accept(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut PacketBuf,
        view: &mut DirectoryView,
        events: &mut EventLog,
    ) -> Option<u16> {
        if be32(buf.data(), 0)? > 1 {
            return None;
        }
        let key = handshake_sender(buf.data())?;
        if !key.is_valid() || key == self.key {
            return None;
        }
        let mut session = Session::new(self.ca.clone(), key, true, now).keep_established(true);
        let opened = decrypt_in_place(&mut session, now, buf)
            .and_then(|()| self.refuse_replayed_hello(&key, &session));
        if let Err(error) = opened {
            events.rejection(now, |suppressed| NodeEvent::HandshakeRejected {
                from,
                error,
                suppressed,
            });
            return None;
        }
        // A peer that restarted on a new port replaces its old incoming entry once the new
        // session is established (`renewed`), not before: a HELLO alone proves nothing.
        let (slot, label) = view.attach(from, key).ok()?;
        let crypto = LinkCrypto::Legacy(session);
        self.insert(Peer::new(
            from, key, crypto, slot, label, true, None, None, now,
        ));
        Some(slot)
    }

    fn insert(&mut self, peer: Peer) {
        self.by_link.insert(peer.link_address, peer.slot);
        let slot = usize::from(peer.slot);
        self.peers[slot] = Some(peer);
    }

    /// Starts peering with `key` at `link_address` (cjdns `beginConnection`); the caller then
    /// sends the first keepalive, which starts the negotiation (a Noise initiation goes out;
    /// the keepalive itself goes with the first legacy HELLO) or, with
    /// `pktmesh.linkCrypto: "legacy"`, goes out as a HELLO.
    pub(crate) fn connect(
        &mut self,
        now: Instant,
        link_address: SocketAddr,
        key: PublicKey,
        credentials: PeerCredentials,
        name: Option<String>,
        view: &mut DirectoryView,
    ) -> Result<(u16, Label), NodeError> {
        if !key.is_valid() || key == self.key {
            return Err(NodeError::BadPeerKey);
        }
        let owner = view.shard().owner_of(&key.address());
        if owner != view.shard().index() {
            return Err(NodeError::OtherShard(owner));
        }
        if self.by_link.contains_key(&link_address) || view.has_link(&link_address) {
            return Err(NodeError::DuplicatePeer(link_address));
        }
        let (slot, label) = view.attach(link_address, key).map_err(NodeError::from)?;
        if self
            .recently_shed
            .is_some_and(|(addr, _)| addr == link_address)
        {
            self.recently_shed = None;
        }
        let crypto = match self.noise.mode() {
            LinkCryptoMode::Noise => LinkCrypto::Unstarted { renewal: false },
            LinkCryptoMode::Legacy => {
                LinkCrypto::Legacy(self.legacy_session(key, &credentials, now))
            }
        };
        self.insert(Peer::new(
            link_address,
            key,
            crypto,
            slot,
            label,
            false,
            Some(credentials),
            name,
            now,
        ));
        Ok((slot, label))
    }

    /// A link session of ours to `key` (we connect to it) with our credentials.
    fn legacy_session(
        &self,
        key: PublicKey,
        credentials: &PeerCredentials,
        now: Instant,
    ) -> Session {
        let mut session = Session::new(self.ca.clone(), key, false, now).keep_established(true);
        session.set_auth(Some(&credentials.password), credentials.login.as_deref());
        session
    }

    /// Removes the peer in `slot` and gives its slot back; returns it.
    pub(crate) fn remove(&mut self, slot: u16, view: &mut DirectoryView) -> Option<Peer> {
        let peer = self.peers.get_mut(usize::from(slot))?.take()?;
        self.by_link.remove(&peer.link_address);
        view.detach(slot, peer.link_address);
        Some(peer)
    }

    /// Peers removed by [`LinkStage::open`] since the last call.
    pub(crate) fn take_departed(&mut self) -> Option<Peer> {
        self.departed.pop()
    }

    // ----- peers out -----------------------------------------------------------------

    /// Seals the buffer in place for the peer in `slot`; its link address, if the peer exists
    /// and the session can send.
    pub(crate) fn seal(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        slot: u16,
        buf: &mut PacketBuf,
    ) -> Option<SocketAddr> {
        let peer = self.peer_mut(slot)?;
        let LinkCrypto::Legacy(session) = &mut peer.crypto else {
            return self.seal_noise(now, rng, slot, buf);
        };
        encrypt_in_place(session, now, rng, buf)?;
        peer.bytes_out += buf.len() as u64;
        Some(peer.link_address)
    }

    // ----- announcing and keepalives ------------------------------------------------

    /// The peer in `slot` as the pathfinder should learn it, once: when its link is established
    /// and its version known (cjdns never reports a peer of unknown version).
    pub(crate) fn take_announcement(&mut self, slot: u16) -> Option<(NodeRef, SocketAddr)> {
        let peer = self.peer_mut(slot)?;
        if peer.announced || peer.version == 0 || !peer.crypto.is_established() {
            return None;
        }
        peer.announced = true;
        Some((
            NodeRef {
                key: peer.key,
                path: peer.label,
                version: peer.version,
            },
            peer.link_address,
        ))
    }

    /// Records a keepalive ping with `cookie` to the peer in `slot`; the label to send it to
    /// and the ping data.
    pub(crate) fn keepalive_sent(
        &mut self,
        now: Instant,
        slot: u16,
        cookie: u64,
    ) -> Option<(Label, [u8; 20])> {
        let peer = self.peer_mut(slot)?;
        peer.last_ping = Some(now);
        peer.ping_cookie = Some(cookie);
        let mut data = [0u8; 20];
        data[..8].copy_from_slice(&cookie.to_be_bytes());
        data[8..].copy_from_slice(KEEPALIVE_MAGIC);
        Some((peer.label, data))
    }

    /// A keepalive pong with `cookie` came back on path `back` from a peer of `version`.
    /// Returns the peer's slot and whether to ask it for its path to us again.
    pub(crate) fn keepalive_answered(
        &mut self,
        now: Instant,
        cookie: u64,
        back: u64,
        version: u32,
    ) -> Option<(u16, bool)> {
        let peer = self
            .peers
            .iter_mut()
            .flatten()
            .find(|p| p.ping_cookie == Some(cookie))?;
        peer.ping_cookie = None;
        if peer.label.bits() != back
            || version < pktmesh_switch::control::MINIMUM_COMPATIBLE_VERSION
        {
            peer.incompatible = true;
            return None;
        }
        peer.version = version;
        if peer.crypto.is_established() {
            peer.last_message = now;
        }
        Some((peer.slot, peer.announced && peer.path_to_us.is_none()))
    }

    /// Forgets budget sources that went quiet (about once a second).
    pub(crate) fn expire(&mut self, now: Instant) {
        self.budget.sweep_if_due(now);
    }

    /// What the handshake budget let through and shed.
    pub(crate) fn budget_stats(&self) -> BudgetStats {
        self.budget.stats()
    }

    /// Whether the keepalive timer is due; it then restarts.
    pub(crate) fn keepalive_due(&mut self, now: Instant) -> bool {
        if now < self.next_keepalive {
            return false;
        }
        self.next_keepalive = now + PING_INTERVAL;
        true
    }

    /// When the keepalive timer runs next.
    pub(crate) fn next_keepalive(&self) -> Instant {
        self.next_keepalive
    }

    /// Incoming peers that went silent too long (to be removed).
    pub(crate) fn silent(&self, now: Instant) -> Vec<(u16, PublicKey)> {
        self.peers
            .iter()
            .flatten()
            .filter(|p| {
                p.is_incoming
                    && now.saturating_duration_since(p.last_message) > crate::peers::FORGET_AFTER
            })
            .map(|p| (p.slot, p.key))
            .collect()
    }

    /// The next lazy peer to ping, round robin (at most one per tick).
    pub(crate) fn next_lazy(&mut self, now: Instant) -> Option<u16> {
        let n = self.peers.len();
        let slot = (0..n)
            .map(|step| (self.keepalive_cursor + step) % n)
            .find(|&slot| self.peers[slot].as_ref().is_some_and(|p| p.is_lazy(now)))?;
        self.keepalive_cursor = slot + 1;
        // slot < SLOT_COUNT = 257
        Some(slot as u16)
    }

    // ----- beacons ------------------------------------------------------------------

    /// Our beacon (`data_port` 0 for the body Ethernet beacons carry).
    pub(crate) fn own_beacon(&self, data_port: u16) -> Beacon {
        Beacon {
            data_port,
            version: beacon::BEACON_PROTOCOL_VERSION,
            password: self.beacon_password,
            key: self.key,
        }
    }

    /// A beacon from `link`: a known peer's password is updated; a new one is to be connected.
    pub(crate) fn beacon_from(
        &mut self,
        link: SocketAddr,
        b: &Beacon,
        view: &DirectoryView,
    ) -> BeaconAction {
        if b.key == self.key || !view.shard().owns(&b.key.address()) {
            return BeaconAction::None;
        }
        let credentials = PeerCredentials {
            password: b.password.to_vec(),
            login: Some(beacon::LOCAL_PEERS_LOGIN.to_vec()),
        };
        if let Some(&slot) = self.by_link.get(&link) {
            if let Some(peer) = self.peer_mut(slot) {
                if peer.credentials.as_ref() != Some(&credentials) {
                    peer.crypto
                        .set_auth(Some(&credentials.password), credentials.login.as_deref());
                    peer.credentials = Some(credentials);
                }
            }
            return BeaconAction::None;
        }
        BeaconAction::Connect(credentials)
    }

    /// A peer we connected to because of its beacon counts as incoming (forgotten when silent).
    pub(crate) fn mark_beacon_peer(&mut self, slot: u16, version: u32) {
        if let Some(p) = self.peer_mut(slot) {
            p.is_incoming = true;
            p.version = version;
        }
    }

    // ----- lookups ------------------------------------------------------------------

    /// The link-layer address of the direct peer reached by `label` (for LLADDR).
    pub(crate) fn link_address_of(&self, label: u64) -> Option<LinkAddress> {
        let p = self
            .peers
            .iter()
            .flatten()
            .find(|p| p.label.bits() == label)?;
        Some(match p.link_address {
            SocketAddr::V4(a) => LinkAddress::Udp4 {
                port: a.port(),
                addr: a.ip().octets(),
            },
            SocketAddr::V6(a) => LinkAddress::Udp6 {
                port: a.port(),
                addr: a.ip().octets(),
            },
        })
    }

    /// An RPATH reply: the peer reached by `label` reaches us with `rpath`.
    pub(crate) fn set_path_to_us(&mut self, label: u64, rpath: u64) {
        if let Some(p) = self
            .peers
            .iter_mut()
            .flatten()
            .find(|p| p.label.bits() == label)
        {
            p.path_to_us = Some(rpath);
        }
    }

    /// The label of the peer in `slot`.
    pub(crate) fn label_of(&self, slot: u16) -> Option<Label> {
        self.peer(slot).map(|p| p.label)
    }

    /// The key of the peer in `slot`.
    #[cfg(test)]
    pub(crate) fn key_of(&self, slot: u16) -> Option<PublicKey> {
        self.peer(slot).map(|p| p.key)
    }

    /// The direct peer with this address, as a pathfinder would name it.
    pub(crate) fn node_for(&self, address: &Address) -> Option<NodeRef> {
        self.peers
            .iter()
            .flatten()
            .find(|p| &p.address() == address)
            .map(|p| NodeRef {
                key: p.key,
                path: p.label,
                version: p.version,
            })
    }

    /// Number of peers.
    pub(crate) fn len(&self) -> usize {
        self.by_link.len()
    }

    /// Statistics of every peer (`InterfaceController_peerStats`).
    pub(crate) fn stats(&self, now: Instant) -> Vec<PeerStats> {
        self.peers
            .iter()
            .flatten()
            .map(|p| PeerStats {
                key: p.key,
                label: p.label,
                link_address: p.link_address,
                state: p.state(now).name(),
                version: p.version,
                is_incoming: p.is_incoming,
                last_ms_ago: now.saturating_duration_since(p.last_message).as_millis() as u64,
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                user: p.name.clone(),
                path_to_us: p.path_to_us,
                slot: p.slot,
                receive: p.crypto.receive_stats(p.bad_packets),
                capacity_kbps: None,
                noise: p.crypto.is_noise(),
            })
            .collect()
    }
}

/// Seals the buffer in place with `session` (a HELLO while the handshake is incomplete).
fn encrypt_in_place(
    session: &mut Session,
    now: Instant,
    rng: &mut (impl RngCore + CryptoRng),
    buf: &mut PacketBuf,
) -> Option<()> {
    let (whole, start) = buf.with_headroom();
    let base = whole.as_ptr() as usize;
    let sealed = session.encrypt(now, rng, whole, start).ok()?;
    let new_start = offset_in(base, sealed);
    buf.set_start(new_start);
    Some(())
}

/// Opens the packet in `buf` in place with `session`, leaving the buffer on the payload.
pub(super) fn decrypt_in_place(
    session: &mut Session,
    now: Instant,
    buf: &mut PacketBuf,
) -> Result<(), DecryptError> {
    let start = buf.headroom();
    let pkt = buf.data_mut();
    let base = pkt.as_ptr() as usize;
    let opened = session.decrypt(now, pkt)?;
    let (offset, len) = (offset_in(base, opened.payload), opened.payload.len());
    buf.set_start(start + offset);
    buf.truncate(len);
    Ok(())
}

/// The shard that owns the sender of a link HELLO, if it is not this one.
fn hello_owner_elsewhere(view: &DirectoryView, datagram: &[u8]) -> Option<u8> {
    let shard = view.shard();
    if shard.is_single() || be32(datagram, 0)? > 1 {
        return None;
    }
    let owner = shard.owner_of(&handshake_sender(datagram)?.address());
    (owner != shard.index()).then_some(owner)
}

impl std::fmt::Debug for LinkStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkStage")
            .field("peers", &self.by_link.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    //! The link stage on its own: datagrams in, switch packets out.
    use super::*;
    use crate::shard::{Directory, ShardSpec};
    use pktmesh_crypto_auth::PrivateKey;
    use pktmesh_switch::{EncodingScheme, SwitchCore};
    use rand_core::SeedableRng;
    use std::time::Duration;

    pub(super) fn view() -> DirectoryView {
        let switch = SwitchCore::new(EncodingScheme::v358());
        DirectoryView::new(Directory::new(switch), ShardSpec::SINGLE)
    }

    fn stage(rng: &mut rand_chacha::ChaCha20Rng, now: Instant) -> (LinkStage, PublicKey) {
        let (private, public, _) = PrivateKey::generate(rng);
        let ca = Arc::new(CryptoAuth::new(private));
        (LinkStage::new(ca, [7; beacon::PASSWORD_LEN], now), public)
    }

    pub(super) fn login(password: &[u8]) -> PeerCredentials {
        PeerCredentials {
            password: password.to_vec(),
            login: Some(b"a".to_vec()),
        }
    }

    /// A switch packet for the receiver's router (label 1): what a keepalive looks like.
    pub(super) const FOR_ROUTER: [u8; 16] =
        [0, 0, 0, 0, 0, 0, 0, 1, 0, 0x44, 0xff, 0xff, 1, 2, 3, 4];

    #[test]
    fn a_peers_datagram_opens_to_the_switch_packet_it_carries() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let (mut a, a_key) = stage(&mut rng, now);
        let (mut b, b_key) = stage(&mut rng, now);
        b.add_user(b"pw", Some(b"a"), None).unwrap();
        let (mut va, mut vb) = (view(), view());
        let a_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let (to_b, _) = a
            .connect(now, b_addr, b_key, login(b"pw"), None, &mut va)
            .unwrap();
        let mut buf = PacketBuf::from_slice(&FOR_ROUTER);
        assert_eq!(a.seal(now, &mut rng, to_b, &mut buf), Some(b_addr));
        assert_eq!(be32(buf.data(), 0), Some(0), "the first packet is a HELLO");

        let mut events = EventLog::default();
        match b.open(now, a_addr, &mut buf, &mut vb, &mut events, false) {
            LinkIn::Opened { slot, hold, ping } => {
                assert!(!hold, "packets for the router pass before the link is up");
                assert!(ping, "a new peer is pinged for its version");
                assert_eq!(b.key_of(slot), Some(a_key));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(buf.data(), &FOR_ROUTER[..]);
        assert_eq!((b.len(), b.stats(now)[0].bytes_in), (1, 16));
        assert!(events.pop().is_none());
    }

    #[test]
    fn strangers_and_wrong_passwords_are_dropped_and_reported_once() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let (mut b, b_key) = stage(&mut rng, now);
        b.add_user(b"pw", Some(b"a"), None).unwrap();
        let mut vb = view();
        let mut events = EventLog::default();
        let b_addr: SocketAddr = "10.0.0.2:2".parse().unwrap();
        for i in 0..3u16 {
            let (mut c, _) = stage(&mut rng, now);
            let (slot, _) = c
                .connect(now, b_addr, b_key, login(b"wrong"), None, &mut view())
                .unwrap();
            let mut buf = PacketBuf::from_slice(&FOR_ROUTER);
            c.seal(now, &mut rng, slot, &mut buf).unwrap();
            let from = SocketAddr::from(([10, 0, 0, 3], 10 + i));
            assert_eq!(
                b.open(now, from, &mut buf, &mut vb, &mut events, false),
                LinkIn::Drop
            );
        }
        assert!(matches!(
            events.pop(),
            Some(NodeEvent::HandshakeRejected { .. })
        ));
        assert!(events.pop().is_none(), "one report a second");
        // Not a handshake, from nowhere known.
        let mut junk = PacketBuf::from_slice(&[0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8]);
        let from = SocketAddr::from(([10, 0, 0, 4], 4));
        assert_eq!(
            b.open(now, from, &mut junk, &mut vb, &mut events, false),
            LinkIn::Drop
        );
        assert_eq!(b.len(), 0);
    }

    #[test]
    fn a_hello_flood_naming_a_login_is_shed_per_source_and_peers_keep_working() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let (mut b, b_key) = stage(&mut rng, now);
        b.add_user(b"pw", Some(b"a"), None).unwrap();
        let mut vb = view();
        let mut events = EventLog::default();
        let b_addr: SocketAddr = "10.0.0.2:2".parse().unwrap();
        // An established peer at 10.0.0.1.
        let (mut a, _) = stage(&mut rng, now);
        let a_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let (to_b, _) = a
            .connect(now, b_addr, b_key, login(b"pw"), None, &mut view())
            .unwrap();
        let mut buf = PacketBuf::from_slice(&FOR_ROUTER);
        a.seal(now, &mut rng, to_b, &mut buf).unwrap();
        let LinkIn::Opened { slot: a_slot, .. } =
            b.open(now, a_addr, &mut buf, &mut vb, &mut events, false)
        else {
            panic!("A's HELLO did not open");
        };
        let mut key = PacketBuf::from_slice(&FOR_ROUTER);
        let a_back = b.seal(now, &mut rng, a_slot, &mut key).unwrap();
        assert_eq!(a_back, a_addr);
        let mut a_view = view();
        let _ = a.open(now, b_addr, &mut key, &mut a_view, &mut events, false);
        // The flooder at 10.0.0.66 knows the login ("a", it travels in clear), not the
        // password: each HELLO would cost B an X25519 before failing.
        let (mut f, _) = stage(&mut rng, now);
        let (f_slot, _) = f
            .connect(now, b_addr, b_key, login(b"guess"), None, &mut view())
            .unwrap();
        let mut hello = PacketBuf::from_slice(&FOR_ROUTER);
        f.seal(now, &mut rng, f_slot, &mut hello).unwrap();
        let hello = hello.data().to_vec();
        let per_source = u64::from(LINK_BUDGET.per_source.burst);
        for port in 0..5000u16 {
            // Every port of the flooder's address counts as one source.
            let from = SocketAddr::from(([10, 0, 0, 66], 1000 + port));
            let mut buf = PacketBuf::from_slice(&hello);
            assert_eq!(
                b.open(now, from, &mut buf, &mut vb, &mut events, false),
                LinkIn::Drop
            );
            // A's traffic keeps opening throughout.
            if port % 500 == 0 {
                let mut data = PacketBuf::from_slice(&FOR_ROUTER);
                a.seal(now, &mut rng, to_b, &mut data).unwrap();
                assert!(matches!(
                    b.open(now, a_addr, &mut data, &mut vb, &mut events, false),
                    LinkIn::Opened { slot, hold: false, .. } if slot == a_slot
                ));
            }
        }
        // Allowed: the flooder's burst, and from A its HELLO and its first data packet (which
        // derives the data key); nothing A sent once established asked.
        let st = b.budget_stats();
        assert_eq!(
            (st.allowed, st.shed_source, st.sources),
            (per_source + 2, 5000 - per_source, 2)
        );
        // One report of the rejections and one of what was shed, in this instant.
        let mut reports = Vec::new();
        while let Some(e) = events.pop() {
            reports.push(e);
        }
        assert!(
            matches!(
                reports.as_slice(),
                [
                    NodeEvent::HandshakeRejected { .. },
                    NodeEvent::HandshakesShed {
                        link: 1,
                        end_to_end: 0
                    }
                ]
            ),
            "{reports:?}"
        );
        // From one address, back to back: shed without asking the budget, and counted; half
        // a second later the source's next token (2 a second) lets one through again.
        let one = SocketAddr::from(([10, 0, 0, 66], 999));
        for _ in 0..100 {
            let mut buf = PacketBuf::from_slice(&hello);
            let _ = b.open(now, one, &mut buf, &mut vb, &mut events, false);
        }
        let later = now + Duration::from_millis(500);
        let mut buf = PacketBuf::from_slice(&hello);
        let _ = b.open(later, one, &mut buf, &mut vb, &mut events, false);
        let st = b.budget_stats();
        assert_eq!(
            (st.allowed, st.shed_source),
            (per_source + 3, 5100 - per_source)
        );
        // The timer reports the rest a second later.
        events.report_shed(now + Duration::from_secs(1));
        assert_eq!(
            events.pop(),
            Some(NodeEvent::HandshakesShed {
                link: 5100 - per_source - 1,
                end_to_end: 0
            })
        );
        // A new peer from another address still gets in.
        let (mut c, _) = stage(&mut rng, now);
        let (c_slot, _) = c
            .connect(now, b_addr, b_key, login(b"pw"), None, &mut view())
            .unwrap();
        let mut buf = PacketBuf::from_slice(&FOR_ROUTER);
        c.seal(now, &mut rng, c_slot, &mut buf).unwrap();
        let from = SocketAddr::from(([10, 0, 0, 3], 3));
        assert!(matches!(
            b.open(now, from, &mut buf, &mut vb, &mut events, false),
            LinkIn::Opened { .. }
        ));
        assert_eq!(b.len(), 2);
    }
}
