//! A peer link that prefers Noise and falls back to legacy CryptoAuth, with WireGuard's timers.
//!
//! Between pktmesh nodes Noise is the default. [`Link::connect`] sends a Noise initiation;
//! initiations are retried every [`RETRY_AFTER`] (with mac2 once a cookie reply arrived), and
//! after [`NOISE_ATTEMPTS`] unanswered attempts of the *first* handshake the link falls back to
//! a legacy session with the same password and login (what a stock cjdns node always speaks).
//! [`Link::initiate`] starts a Noise-only link (the caller decides about legacy, as the pktmesh
//! node does, naming its user in the PktmeshPsk entity). [`Link::accept`] wraps a session a
//! [`super::Responder`] accepted.
//!
//! A handshake the peer starts on an established link ([`Link::install`]) does not replace the
//! keys in use: its keys wait as the *next* pair and become current when a data packet (or
//! keepalive) opens under them, i.e. when the peer proved it holds them (WireGuard does the
//! same). Data packets open and seal in place ([`Link::open_in_place`],
//! [`Link::seal_in_place`]); handshake messages go to [`Link::handle_control`].
//!
//! Timers (digest §6.3.4, WireGuard's rules), driven by [`Link::poll_timeout`] and
//! [`Link::handle_timeout`]: the initiator re-keys when its keys are [`REKEY_AFTER_TIME`] old;
//! either side re-keys after sending data and hearing nothing for [`KEEPALIVE`] +
//! [`RETRY_AFTER`]; an empty keepalive goes out when data arrived but nothing was sent for
//! [`KEEPALIVE`]; keys older than [`REJECT_AFTER_TIME`] are dropped; a re-key handshake is
//! abandoned after [`REKEY_ATTEMPT_TIME`]; [`DROP_ALL_AFTER`] (540 s) after the last completed
//! handshake every key and any pending handshake are dropped and the link stays
//! [`LinkMode::Expired`] until a fresh handshake ([`Link::reconnect`], or [`Link::install`]
//! of one the peer started).
//!
//! PrevSessIndex: like cjdns 22.3 (which learns it only from a handshake response), the link
//! remembers the peer's session index (`sender_idx >> 8` of the last response it verified) and
//! sends it in the first initiation of each later handshake; retries go without it, so a stale
//! index (the peer restarted and reused it for another key) cannot get every attempt dropped
//! as `WRONG_PERM_PUBKEY` by a stock node. It is forgotten when the keys are dropped at
//! [`DROP_ALL_AFTER`].
//!
//! The previous keys stay usable for receiving until the next re-key, so packets in flight
//! during a re-key are not lost. Sans-IO: the caller feeds packets and timeouts and sends what
//! the link returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::handshake::{
    InitiationParams, InitiationSent, PskEntity, CONTROL_MARKER, MAX_INITIATION_LEN,
};
use super::transport::{
    ReceiveCounts, Transport, DATA_HEADER, DATA_OVERHEAD, REJECT_AFTER_TIME, REKEY_AFTER_TIME,
};
use super::{Accepted, Credentials, NoiseError};
use crate::legacy::{CryptoAuth, Session};
use crate::PublicKey;

/// Initiation retry interval (WireGuard REKEY_TIMEOUT).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Unanswered initiations of the first handshake before falling back to legacy CryptoAuth.
pub const NOISE_ATTEMPTS: u32 = 3;
/// Keepalive interval (WireGuard KEEPALIVE_TIMEOUT).
pub const KEEPALIVE: Duration = Duration::from_secs(10);
/// A re-key handshake is abandoned after this long (WireGuard REKEY_ATTEMPT_TIME).
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// All keys of a link are dropped this long after the last completed handshake (WireGuard
/// REJECT_AFTER_TIME × 3 = 540 s).
pub const DROP_ALL_AFTER: Duration = Duration::from_secs(REJECT_AFTER_TIME.as_secs() * 3);

/// Which protocol the link speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// First Noise handshake in progress.
    NoiseHandshake,
    /// Noise keys established (a re-key may be in progress).
    Noise,
    /// Legacy CryptoAuth (fallback or chosen).
    Legacy,
    /// Noise keys dropped [`DROP_ALL_AFTER`] after the last handshake; nothing is sent or
    /// received until a fresh handshake completes.
    Expired,
}

/// How a link authenticates the handshakes it starts.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkAuth<'a> {
    /// The password the peer authorized, if it requires one.
    pub password: Option<&'a [u8]>,
    /// Our login at the peer, if it uses one.
    pub login: Option<&'a [u8]>,
    /// The entity that names the user in our initiations.
    pub psk_entity: PskEntity,
}

/// What a packet fed to [`Link::handle_packet`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// Decrypted payload for the switch.
    Payload(Vec<u8>),
    /// Send this packet back (keepalive confirming a Noise session, or a retried initiation).
    Transmit(Vec<u8>),
    /// Nothing to do (a keepalive arrived).
    Nothing,
}

/// Errors of a link: either protocol's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Noise rejected the packet.
    #[error("noise: {0}")]
    Noise(#[from] NoiseError),
    /// Legacy CryptoAuth rejected the packet.
    #[error("legacy: {0}")]
    Legacy(#[from] crate::DecryptError),
    /// Legacy CryptoAuth could not encrypt.
    #[error("legacy: {0}")]
    LegacyEncrypt(#[from] crate::EncryptError),
    /// No session can carry data yet.
    #[error("handshake in progress")]
    NotReady,
}

/// A handshake we initiated and are waiting on.
#[derive(Clone)]
struct Pending {
    sent: InitiationSent,
    started: Instant,
    last: Instant,
    attempts: u32,
    cookie: Option<[u8; 16]>,
}

/// Noise keys: the current pair, the previous one (receive only), the pair of a handshake the
/// peer started (current once data opens under it) and a re-key we started.
struct NoiseKeys {
    current: Option<Transport>,
    previous: Option<Transport>,
    next: Option<Transport>,
    pending: Option<Pending>,
    /// Whether we initiated the handshake that made `current` (only then re-key by age).
    ever_established: bool,
    /// Everything was dropped at [`DROP_ALL_AFTER`]; the timers are idle.
    expired: bool,
}

enum State {
    Noise(Box<NoiseKeys>),
    Legacy(Box<Session>),
}

/// A link to one peer.
pub struct Link {
    ca: Arc<CryptoAuth>,
    peer: PublicKey,
    password: Option<Vec<u8>>,
    login: Option<Vec<u8>>,
    /// The PSK and user lookup of this link's handshakes, either direction.
    credentials: Option<Credentials>,
    /// Which entity carries the lookup in our initiations.
    psk_entity: PskEntity,
    local_index: u32,
    /// Handshakes started; the low byte of the index counts them, as cjdns does.
    handshakes: u32,
    state: State,
    /// Last packet (data or keepalive) we sent.
    last_sent: Option<Instant>,
    /// Last non-empty data packet we received (keepalives do not arm the keepalive timer).
    last_data_recv: Option<Instant>,
    /// First data packet we sent since we last heard anything authenticated.
    unanswered_since: Option<Instant>,
    /// When the last handshake completed (the [`DROP_ALL_AFTER`] timer runs from here).
    last_handshake: Option<Instant>,
    /// The peer's cjdns session index learnt from its last handshake response (PrevSessIndex).
    peer_session_index: Option<u32>,
    /// How many times the current keys were replaced by a completed handshake.
    generation: u64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("mode", &self.mode())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Start a link to `peer`. With `prefer_noise`, returns the first initiation to send;
    /// otherwise the link is legacy from the start and returns nothing (its first data packet
    /// will be a HELLO). `local_index` is used for every handshake of this link.
    #[allow(clippy::too_many_arguments)]
    pub fn connect<R: RngCore + CryptoRng>(
        ca: Arc<CryptoAuth>,
        peer: PublicKey,
        password: Option<&[u8]>,
        login: Option<&[u8]>,
        prefer_noise: bool,
        local_index: u32,
        now: Instant,
        wall: Duration,
        rng: &mut R,
    ) -> Result<(Self, Option<Vec<u8>>), NoiseError> {
        let auth = LinkAuth {
            password,
            login,
            psk_entity: PskEntity::Cjdns,
        };
        if prefer_noise {
            let (link, first) = Self::initiate(ca, peer, auth, local_index, now, wall, rng)?;
            return Ok((link, Some(first)));
        }
        let mut link = Self::blank(ca, peer, auth, local_index, now);
        link.fall_back(now);
        Ok((link, None))
    }

    /// Start a Noise-only link to `peer` and return it with its first initiation; `local_index`
    /// is used for every handshake of this link. The link never falls back to legacy by
    /// itself as long as the caller does not call [`Link::handle_timeout`] before the first
    /// handshake completes (its retries and the fallback are that call's).
    pub fn initiate<R: RngCore + CryptoRng>(
        ca: Arc<CryptoAuth>,
        peer: PublicKey,
        auth: LinkAuth<'_>,
        local_index: u32,
        now: Instant,
        wall: Duration,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), NoiseError> {
        let mut link = Self::blank(ca, peer, auth, local_index, now);
        let (sent, first) = link.initiation(None, false, wall, rng)?;
        link.state = State::Noise(Box::new(NoiseKeys {
            current: None,
            previous: None,
            next: None,
            pending: Some(Pending {
                sent,
                started: now,
                last: now,
                attempts: 1,
                cookie: None,
            }),
            ever_established: false,
            expired: false,
        }));
        link.last_sent = Some(now);
        Ok((link, first))
    }

    fn blank(
        ca: Arc<CryptoAuth>,
        peer: PublicKey,
        auth: LinkAuth<'_>,
        local_index: u32,
        now: Instant,
    ) -> Self {
        let LinkAuth {
            password,
            login,
            psk_entity,
        } = auth;
        Self {
            password: password.map(<[u8]>::to_vec),
            login: login.map(<[u8]>::to_vec),
            credentials: password.map(|pw| Credentials::derive(login.unwrap_or_default(), pw)),
            psk_entity,
            state: State::Legacy(Box::new(Session::new(ca.clone(), peer, false, now))),
            ca,
            peer,
            local_index,
            handshakes: 0,
            last_sent: None,
            last_data_recv: None,
            unanswered_since: None,
            last_handshake: None,
            peer_session_index: None,
            generation: 0,
        }
    }

    /// A link from a handshake our [`super::Responder`] accepted. `password` and `login` are
    /// those to use if this side has to start a later handshake; without them the link uses
    /// the credentials the handshake was accepted with (the user the initiator named), in the
    /// entity the initiator named it in.
    pub fn accept(
        ca: Arc<CryptoAuth>,
        accepted: Accepted,
        password: Option<&[u8]>,
        login: Option<&[u8]>,
        now: Instant,
    ) -> Self {
        let local_index = accepted.transport.local_index();
        let born = accepted.transport.born();
        let psk_entity = if accepted.additional.pktmesh_psk.is_some() {
            PskEntity::Pktmesh
        } else {
            PskEntity::Cjdns
        };
        let credentials = password
            .map(|pw| Credentials::derive(login.unwrap_or_default(), pw))
            .or(accepted.credentials);
        Self {
            ca,
            peer: accepted.peer,
            password: password.map(<[u8]>::to_vec),
            login: login.map(<[u8]>::to_vec),
            credentials,
            psk_entity,
            local_index,
            // The accepted handshake used the first index of this link.
            handshakes: 1,
            state: State::Noise(Box::new(NoiseKeys {
                current: Some(accepted.transport),
                previous: None,
                next: None,
                pending: None,
                ever_established: true,
                expired: false,
            })),
            last_sent: Some(now),
            last_data_recv: None,
            unanswered_since: None,
            last_handshake: Some(born),
            peer_session_index: None,
            generation: 0,
        }
    }

    /// Install a handshake our [`super::Responder`] accepted from this link's peer (a re-key
    /// or re-handshake the peer started). While the link has keys in use they stay current:
    /// the new keys wait as the next pair and replace them when a packet opens under them
    /// (the peer proved it has them); the replaced keys stay usable for receiving. A link
    /// with no keys takes them at once. A handshake of our own that is in progress goes on.
    pub fn install(&mut self, accepted: Accepted, now: Instant) -> Result<(), NoiseError> {
        if accepted.peer != self.peer {
            return Err(NoiseError::WrongPermPubkey);
        }
        self.last_handshake = Some(accepted.transport.born());
        match &mut self.state {
            State::Noise(k) if k.current.is_some() && !k.expired => {
                k.next = Some(accepted.transport);
            }
            State::Noise(k) => {
                k.current = Some(accepted.transport);
                k.next = None;
                k.ever_established = true;
                k.expired = false;
            }
            State::Legacy(_) => {
                self.state = State::Noise(Box::new(NoiseKeys {
                    current: Some(accepted.transport),
                    previous: None,
                    next: None,
                    pending: None,
                    ever_established: true,
                    expired: false,
                }));
            }
        }
        self.unanswered_since = None;
        self.last_sent = Some(now);
        Ok(())
    }

    /// Replace the password and login (a beacon peer that restarted has a new beacon
    /// password); later handshakes use them.
    pub fn set_auth(&mut self, password: Option<&[u8]>, login: Option<&[u8]>) {
        self.password = password.map(<[u8]>::to_vec);
        self.login = login.map(<[u8]>::to_vec);
        self.credentials = password.map(|pw| Credentials::derive(login.unwrap_or_default(), pw));
        if let State::Legacy(s) = &mut self.state {
            s.set_auth(password, login);
        }
    }

    /// The PSK and user lookup of this link's handshakes, if it has a password.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// Whether Noise keys can carry data both ways now (the responder's keys only once the
    /// initiator's first packet opened).
    pub fn is_established(&self) -> bool {
        match &self.state {
            State::Noise(k) => {
                !k.expired && k.current.as_ref().is_some_and(Transport::is_confirmed)
            }
            State::Legacy(s) => s.is_established(),
        }
    }

    /// Whether a handshake we started is waiting for its response.
    pub fn is_handshaking(&self) -> bool {
        matches!(&self.state, State::Noise(k) if k.pending.is_some())
    }

    /// How many handshakes completed on this link: keys became usable both ways (a response
    /// to our initiation verified, or the first packet under the keys of a handshake the peer
    /// started opened).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What the current keys' receiving side counted since their handshake (zero without
    /// keys).
    pub fn receive_counts(&self) -> ReceiveCounts {
        match &self.state {
            State::Noise(k) => k
                .current
                .as_ref()
                .map_or_else(ReceiveCounts::default, Transport::receive_counts),
            State::Legacy(_) => ReceiveCounts::default(),
        }
    }

    /// The peer (its permanent key).
    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    /// This link's cjdns session index (its Noise indexes >> 8): what the peer names in a
    /// PrevSessIndex, and [`super::KnownSession::session_index`] for the responder.
    pub fn session_index(&self) -> u32 {
        self.local_index >> 8
    }

    /// When the last handshake completed, if one did.
    pub fn last_handshake(&self) -> Option<Instant> {
        self.last_handshake
    }

    /// The peer's session index this link sends as PrevSessIndex, if known.
    pub fn peer_session_index(&self) -> Option<u32> {
        self.peer_session_index
    }

    /// A fresh local index for the next handshake of this link (low byte = handshake counter,
    /// as cjdns does), so packets still in flight for the previous keys find them. Use it as
    /// the responder's index when a handshake the peer started is attached to this link.
    pub fn next_local_index(&mut self) -> u32 {
        let mut index = self.local_index;
        for _ in 0..=256 {
            index = (self.local_index & !0xFF)
                | (self.local_index.wrapping_add(self.handshakes) & 0xFF);
            self.handshakes = self.handshakes.wrapping_add(1);
            if super::is_usable_index(index) {
                break;
            }
        }
        index
    }

    fn initiation<R: RngCore + CryptoRng>(
        &mut self,
        cookie: Option<[u8; 16]>,
        hint: bool,
        wall: Duration,
        rng: &mut R,
    ) -> Result<(InitiationSent, Vec<u8>), NoiseError> {
        let params = InitiationParams {
            credentials: self.credentials.clone(),
            psk_entity: self.psk_entity,
            prev_session_index: self.peer_session_index.filter(|_| hint),
            cookie,
        };
        let index = self.next_local_index();
        let mut out = [0u8; MAX_INITIATION_LEN];
        let (sent, len) =
            InitiationSent::new(&self.ca, &self.peer, &params, index, wall, rng, &mut out)?;
        Ok((sent, out[..len].to_vec()))
    }

    fn fall_back(&mut self, now: Instant) {
        let mut s = Session::new(self.ca.clone(), self.peer, false, now);
        s.set_auth(self.password.as_deref(), self.login.as_deref());
        self.state = State::Legacy(Box::new(s));
    }

    /// The protocol in use.
    pub fn mode(&self) -> LinkMode {
        match &self.state {
            State::Noise(k) if k.expired => LinkMode::Expired,
            State::Noise(k) if k.current.is_some() => LinkMode::Noise,
            State::Noise(_) => LinkMode::NoiseHandshake,
            State::Legacy(_) => LinkMode::Legacy,
        }
    }

    /// When [`Link::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let State::Noise(k) = &self.state else {
            return None;
        };
        if k.expired {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(h) = self.last_handshake {
            at(h + DROP_ALL_AFTER);
        }
        if let Some(p) = &k.pending {
            at(p.last + RETRY_AFTER);
        }
        if let Some(t) = &k.current {
            at(t.born() + REJECT_AFTER_TIME);
            if k.pending.is_none() {
                if t.is_initiator() {
                    at(t.born() + REKEY_AFTER_TIME);
                }
                if let Some(u) = self.unanswered_since {
                    at(u + KEEPALIVE + RETRY_AFTER);
                }
            }
            if let Some(r) = self.last_data_recv {
                if !matches!(self.last_sent, Some(s) if s > r) {
                    at(r + KEEPALIVE);
                }
            }
        }
        next
    }

    /// Timers: retry or abandon a handshake, fall back to legacy, re-key, send a keepalive,
    /// drop expired keys, drop everything [`DROP_ALL_AFTER`] the last handshake. Returns a
    /// packet to send, if any.
    pub fn handle_timeout<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        wall: Duration,
        rng: &mut R,
    ) -> Result<Option<Vec<u8>>, NoiseError> {
        let (last_sent, last_data_recv) = (self.last_sent, self.last_data_recv);
        let unanswered = self
            .unanswered_since
            .is_some_and(|u| now.saturating_duration_since(u) >= KEEPALIVE + RETRY_AFTER);
        let State::Noise(k) = &mut self.state else {
            return Ok(None);
        };
        if k.expired {
            return Ok(None);
        }
        let drop_all = self
            .last_handshake
            .is_some_and(|h| now.saturating_duration_since(h) >= DROP_ALL_AFTER);
        if drop_all {
            // WireGuard's REJECT_AFTER_TIME × 3: zero every key, abandon any handshake.
            k.current = None;
            k.previous = None;
            k.next = None;
            k.pending = None;
            k.expired = true;
            self.last_handshake = None;
            self.peer_session_index = None;
            self.unanswered_since = None;
            self.last_data_recv = None;
            return Ok(None);
        }
        if let Some(t) = &k.current {
            if now.saturating_duration_since(t.born()) >= REJECT_AFTER_TIME {
                k.previous = k.current.take();
            }
        }
        if let Some(p) = &k.pending {
            if now.saturating_duration_since(p.last) < RETRY_AFTER {
                return Ok(None);
            }
            if !k.ever_established && p.attempts >= NOISE_ATTEMPTS {
                self.fall_back(now);
                return Ok(None);
            }
            if k.ever_established && now.saturating_duration_since(p.started) >= REKEY_ATTEMPT_TIME
            {
                k.pending = None;
                // A fresh handshake after the keys were dropped failed: idle again.
                k.expired = self.last_handshake.is_none();
                return Ok(None);
            }
            let (attempts, cookie, started) = (p.attempts + 1, p.cookie, p.started);
            return self.start_handshake(now, wall, rng, attempts, cookie, started);
        }
        let Some(t) = &mut k.current else {
            // Keys expired and no handshake running: start one.
            return self.start_handshake(now, wall, rng, 1, None, now);
        };
        let aged = t.is_initiator() && t.needs_rekey(now);
        if aged || unanswered {
            self.unanswered_since = None;
            return self.start_handshake(now, wall, rng, 1, None, now);
        }
        if let Some(r) = last_data_recv {
            let quiet = !matches!(last_sent, Some(s) if s > r);
            if quiet && now.saturating_duration_since(r) >= KEEPALIVE && t.is_confirmed() {
                let mut ka = vec![0u8; DATA_OVERHEAD];
                t.encrypt(now, &mut ka)?;
                self.last_sent = Some(now);
                return Ok(Some(ka));
            }
        }
        Ok(None)
    }

    fn start_handshake<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        wall: Duration,
        rng: &mut R,
        attempts: u32,
        cookie: Option<[u8; 16]>,
        started: Instant,
    ) -> Result<Option<Vec<u8>>, NoiseError> {
        let (sent, packet) = self.initiation(cookie, attempts == 1, wall, rng)?;
        if let State::Noise(k) = &mut self.state {
            k.pending = Some(Pending {
                sent,
                started,
                last: now,
                attempts,
                cookie,
            });
        }
        self.last_sent = Some(now);
        Ok(Some(packet))
    }

    /// Feed a packet from the peer (a copy is opened; see [`Link::open_in_place`] and
    /// [`Link::handle_control`] for the allocation-free calls).
    pub fn handle_packet<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        wall: Duration,
        rng: &mut R,
        packet: &[u8],
    ) -> Result<LinkEvent, LinkError> {
        if matches!(self.state, State::Noise(_)) && packet.starts_with(&CONTROL_MARKER) {
            let reply = self.handle_control(now, wall, rng, packet)?;
            return Ok(reply.map_or(LinkEvent::Nothing, LinkEvent::Transmit));
        }
        let mut p = packet.to_vec();
        let body = self.open_in_place(now, &mut p)?;
        Ok(if body.is_empty() {
            LinkEvent::Nothing
        } else {
            LinkEvent::Payload(body.to_vec())
        })
    }

    /// A handshake message (`FF FF FF FF …`) on a Noise link: the response to our initiation
    /// (the keys become current; returns the keepalive that confirms them to the peer) or a
    /// cookie reply (returns the initiation again, with mac2). Initiations the peer starts go
    /// to a [`super::Responder`], then [`Link::install`].
    pub fn handle_control<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        wall: Duration,
        rng: &mut R,
        packet: &[u8],
    ) -> Result<Option<Vec<u8>>, LinkError> {
        let State::Noise(k) = &mut self.state else {
            return Err(NoiseError::UnexpectedMessage.into());
        };
        let p = k.pending.as_ref().ok_or(NoiseError::UnexpectedMessage)?;
        match packet.get(4) {
            Some(2) => {
                let mut t = p.sent.complete(&self.ca, now, packet)?;
                // Confirm the session with an empty keepalive, as WireGuard does.
                let mut ka = vec![0u8; DATA_OVERHEAD];
                t.encrypt(now, &mut ka)?;
                self.peer_session_index = Some(t.remote_index() >> 8);
                self.last_handshake = Some(now);
                k.previous = k.current.replace(t);
                k.pending = None;
                k.ever_established = true;
                k.expired = false;
                self.generation += 1;
                self.last_sent = Some(now);
                self.unanswered_since = None;
                Ok(Some(ka))
            }
            Some(3) => {
                let c = p.sent.take_cookie(packet)?;
                let (attempts, started) = (p.attempts, p.started);
                Ok(self.start_handshake(now, wall, rng, attempts, Some(c), started)?)
            }
            _ => Err(NoiseError::UnexpectedMessage.into()),
        }
    }

    /// Open a data packet in place: `receiver_idx ‖ counter ‖ ciphertext ‖ tag` on a Noise
    /// link (the keys whose index it names: current, previous or next; next becomes current),
    /// a CryptoAuth packet on a legacy one. Returns the payload, a sub-slice of `packet`; an
    /// empty one is a keepalive. A packet that does not open changes nothing.
    pub fn open_in_place<'a>(
        &mut self,
        now: Instant,
        packet: &'a mut [u8],
    ) -> Result<&'a mut [u8], LinkError> {
        let body = match &mut self.state {
            State::Legacy(s) => s.decrypt(now, packet)?.payload,
            State::Noise(k) => {
                let promote = k.next.as_ref().is_some_and(|n| n.accepts_index(packet));
                let keys = match (&mut k.current, &mut k.previous, &mut k.next) {
                    (_, _, Some(n)) if promote => n,
                    (Some(c), _, _) if c.accepts_index(packet) => c,
                    (_, Some(old), _) if old.accepts_index(packet) => old,
                    (Some(c), _, _) => c,
                    (None, _, _) => return Err(LinkError::NotReady),
                };
                let confirms = !keys.is_confirmed();
                let body = keys.decrypt(now, packet)?;
                if promote {
                    // The peer holds the keys of the handshake it started: they take over.
                    k.previous = k.current.take();
                    k.current = k.next.take();
                    k.ever_established = true;
                }
                if confirms {
                    self.generation += 1;
                }
                body
            }
        };
        self.unanswered_since = None;
        if !body.is_empty() {
            self.last_data_recv = Some(now);
        }
        Ok(body)
    }

    /// Seal a data packet in place on a Noise link: `packet` is [`DATA_HEADER`] free bytes,
    /// the payload, then [`super::transport::DATA_TAG`] free bytes; the header and tag are
    /// written. Only Noise keys seal in place ([`LinkError::NotReady`] otherwise; a responder
    /// waiting for the initiator's first packet gets [`NoiseError::NotConfirmed`]).
    pub fn seal_in_place(&mut self, now: Instant, packet: &mut [u8]) -> Result<(), LinkError> {
        let State::Noise(k) = &mut self.state else {
            return Err(LinkError::NotReady);
        };
        let t = k.current.as_mut().ok_or(LinkError::NotReady)?;
        t.encrypt(now, packet)?;
        self.note_sent(now);
        Ok(())
    }

    /// Start a fresh Noise handshake on a link whose keys were dropped at [`DROP_ALL_AFTER`]
    /// (or any Noise link): returns the initiation to send. Retries and abandonment follow
    /// the usual timers. A legacy link has no Noise handshake: [`NoiseError::UnexpectedMessage`].
    pub fn reconnect<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        wall: Duration,
        rng: &mut R,
    ) -> Result<Vec<u8>, NoiseError> {
        match &mut self.state {
            State::Noise(k) => k.expired = false,
            State::Legacy(_) => return Err(NoiseError::UnexpectedMessage),
        }
        self.start_handshake(now, wall, rng, 1, None, now)?
            .ok_or(NoiseError::UnexpectedMessage)
    }

    /// Encrypt a payload for the peer (into a new packet; [`Link::seal_in_place`] does not
    /// allocate).
    pub fn encrypt<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        payload: &[u8],
    ) -> Result<Vec<u8>, LinkError> {
        if let State::Legacy(s) = &mut self.state {
            let out = s.encrypt_to_vec(now, rng, payload)?;
            self.note_sent(now);
            return Ok(out);
        }
        let mut p = vec![0u8; payload.len() + DATA_OVERHEAD];
        p[DATA_HEADER..DATA_HEADER + payload.len()].copy_from_slice(payload);
        self.seal_in_place(now, &mut p)?;
        Ok(p)
    }

    fn note_sent(&mut self, now: Instant) {
        self.last_sent = Some(now);
        if self.unanswered_since.is_none() {
            self.unanswered_since = Some(now);
        }
    }
}
