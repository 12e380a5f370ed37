//! A peer link that prefers Noise and falls back to legacy CryptoAuth, with WireGuard's timers.
//!
//! Between pktmesh nodes Noise is the default. [`Link::connect`] sends a Noise initiation;
//! initiations are retried every [`RETRY_AFTER`] (with mac2 once a cookie reply arrived), and
//! after [`NOISE_ATTEMPTS`] unanswered attempts of the *first* handshake the link falls back to
//! a legacy session with the same password and login (what a stock cjdns node always speaks).
//! [`Link::accept`] wraps a session a [`super::Responder`] accepted.
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

use super::handshake::{InitiationParams, InitiationSent, MAX_INITIATION_LEN};
use super::transport::{
    Transport, DATA_HEADER, DATA_OVERHEAD, REJECT_AFTER_TIME, REKEY_AFTER_TIME,
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

/// Noise keys: the current pair, the previous one (receive only) and a pending re-key.
struct NoiseKeys {
    current: Option<Transport>,
    previous: Option<Transport>,
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
        let mut link = Self {
            password: password.map(<[u8]>::to_vec),
            login: login.map(<[u8]>::to_vec),
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
        };
        if !prefer_noise {
            link.fall_back(now);
            return Ok((link, None));
        }
        let (sent, first) = link.initiation(None, false, wall, rng)?;
        link.state = State::Noise(Box::new(NoiseKeys {
            current: None,
            previous: None,
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
        Ok((link, Some(first)))
    }

    /// A link from a handshake our [`super::Responder`] accepted. `credentials` are the
    /// password and login to use if this side has to start a later handshake.
    pub fn accept(
        ca: Arc<CryptoAuth>,
        accepted: Accepted,
        password: Option<&[u8]>,
        login: Option<&[u8]>,
        now: Instant,
    ) -> Self {
        let local_index = accepted.transport.local_index();
        let born = accepted.transport.born();
        Self {
            ca,
            peer: accepted.peer,
            password: password.map(<[u8]>::to_vec),
            login: login.map(<[u8]>::to_vec),
            local_index,
            // The accepted handshake used the first index of this link.
            handshakes: 1,
            state: State::Noise(Box::new(NoiseKeys {
                current: Some(accepted.transport),
                previous: None,
                pending: None,
                ever_established: true,
                expired: false,
            })),
            last_sent: Some(now),
            last_data_recv: None,
            unanswered_since: None,
            last_handshake: Some(born),
            peer_session_index: None,
        }
    }

    /// Install a handshake our [`super::Responder`] accepted from this link's peer (a re-key
    /// the peer started); the old keys stay usable for receiving.
    pub fn install(&mut self, accepted: Accepted, now: Instant) -> Result<(), NoiseError> {
        if accepted.peer != self.peer {
            return Err(NoiseError::WrongPermPubkey);
        }
        self.last_handshake = Some(accepted.transport.born());
        match &mut self.state {
            State::Noise(k) => {
                k.previous = k.current.replace(accepted.transport);
                k.pending = None;
                k.ever_established = true;
                k.expired = false;
            }
            State::Legacy(_) => {
                self.state = State::Noise(Box::new(NoiseKeys {
                    current: Some(accepted.transport),
                    previous: None,
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
            credentials: self
                .password
                .as_deref()
                .map(|pw| Credentials::derive(self.login.as_deref().unwrap_or_default(), pw)),
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

    /// Feed a packet from the peer.
    pub fn handle_packet<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        wall: Duration,
        rng: &mut R,
        packet: &[u8],
    ) -> Result<LinkEvent, LinkError> {
        let event = match &mut self.state {
            State::Legacy(s) => {
                let mut p = packet.to_vec();
                let o = s.decrypt(now, &mut p)?;
                LinkEvent::Payload(o.payload.to_vec())
            }
            State::Noise(k) if packet.get(..4) == Some(&[0xff; 4]) => {
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
                        self.last_sent = Some(now);
                        LinkEvent::Transmit(ka)
                    }
                    Some(3) => {
                        let c = p.sent.take_cookie(packet)?;
                        let (attempts, started) = (p.attempts, p.started);
                        let (sent, out) = self.initiation(Some(c), attempts == 1, wall, rng)?;
                        if let State::Noise(k) = &mut self.state {
                            k.pending = Some(Pending {
                                sent,
                                started,
                                last: now,
                                attempts,
                                cookie: Some(c),
                            });
                        }
                        self.last_sent = Some(now);
                        return Ok(LinkEvent::Transmit(out));
                    }
                    _ => return Err(NoiseError::UnexpectedMessage.into()),
                }
            }
            State::Noise(k) => {
                let mut p = packet.to_vec();
                let body = match (&mut k.current, &mut k.previous) {
                    (Some(c), _) if c.accepts_index(&p) => c.decrypt(now, &mut p)?,
                    (_, Some(old)) if old.accepts_index(&p) => old.decrypt(now, &mut p)?,
                    (Some(c), _) => c.decrypt(now, &mut p)?,
                    (None, _) => return Err(LinkError::NotReady),
                };
                if body.is_empty() {
                    LinkEvent::Nothing
                } else {
                    LinkEvent::Payload(body.to_vec())
                }
            }
        };
        self.unanswered_since = None;
        if matches!(event, LinkEvent::Payload(_)) {
            self.last_data_recv = Some(now);
        }
        Ok(event)
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

    /// Encrypt a payload for the peer.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        payload: &[u8],
    ) -> Result<Vec<u8>, LinkError> {
        let out = match &mut self.state {
            State::Noise(k) => {
                let t = k.current.as_mut().ok_or(LinkError::NotReady)?;
                let mut p = vec![0u8; payload.len() + DATA_OVERHEAD];
                p[DATA_HEADER..DATA_HEADER + payload.len()].copy_from_slice(payload);
                t.encrypt(now, &mut p)?;
                p
            }
            State::Legacy(s) => s.encrypt_to_vec(now, rng, payload)?,
        };
        self.last_sent = Some(now);
        if self.unanswered_since.is_none() {
            self.unanswered_since = Some(now);
        }
        Ok(out)
    }
}
