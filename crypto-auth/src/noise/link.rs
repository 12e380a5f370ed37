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
//! abandoned after [`REKEY_ATTEMPT_TIME`]. The previous keys stay usable for receiving until the
//! next re-key, so packets in flight during a re-key are not lost. Sans-IO: the caller feeds
//! packets and timeouts and sends what the link returns.

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

/// Which protocol the link speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// First Noise handshake in progress.
    NoiseHandshake,
    /// Noise keys established (a re-key may be in progress).
    Noise,
    /// Legacy CryptoAuth (fallback or chosen).
    Legacy,
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
        };
        if !prefer_noise {
            link.fall_back(now);
            return Ok((link, None));
        }
        let (sent, first) = link.initiation(None, wall, rng)?;
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
        Self {
            ca,
            peer: accepted.peer,
            password: password.map(<[u8]>::to_vec),
            login: login.map(<[u8]>::to_vec),
            local_index,
            handshakes: 0,
            state: State::Noise(Box::new(NoiseKeys {
                current: Some(accepted.transport),
                previous: None,
                pending: None,
                ever_established: true,
            })),
            last_sent: Some(now),
            last_data_recv: None,
            unanswered_since: None,
        }
    }

    /// Install a handshake our [`super::Responder`] accepted from this link's peer (a re-key
    /// the peer started); the old keys stay usable for receiving.
    pub fn install(&mut self, accepted: Accepted, now: Instant) -> Result<(), NoiseError> {
        if accepted.peer != self.peer {
            return Err(NoiseError::WrongIndex);
        }
        match &mut self.state {
            State::Noise(k) => {
                k.previous = k.current.replace(accepted.transport);
                k.pending = None;
                k.ever_established = true;
            }
            State::Legacy(_) => {
                self.state = State::Noise(Box::new(NoiseKeys {
                    current: Some(accepted.transport),
                    previous: None,
                    pending: None,
                    ever_established: true,
                }));
            }
        }
        self.unanswered_since = None;
        self.last_sent = Some(now);
        Ok(())
    }

    fn initiation<R: RngCore + CryptoRng>(
        &mut self,
        cookie: Option<[u8; 16]>,
        wall: Duration,
        rng: &mut R,
    ) -> Result<(InitiationSent, Vec<u8>), NoiseError> {
        let params = InitiationParams {
            credentials: self
                .password
                .as_deref()
                .map(|pw| Credentials::derive(self.login.as_deref().unwrap_or_default(), pw)),
            prev_session_index: None,
            cookie,
        };
        // A fresh index per handshake (low byte = handshake counter, as cjdns does), so
        // packets still in flight for the previous keys find them.
        let mut index = self.local_index;
        for _ in 0..=256 {
            index = (self.local_index & !0xFF)
                | (self.local_index.wrapping_add(self.handshakes) & 0xFF);
            self.handshakes = self.handshakes.wrapping_add(1);
            if super::is_usable_index(index) {
                break;
            }
        }
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
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
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
    /// drop expired keys. Returns a packet to send, if any.
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
        let (sent, packet) = self.initiation(cookie, wall, rng)?;
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
                        k.previous = k.current.replace(t);
                        k.pending = None;
                        k.ever_established = true;
                        self.last_sent = Some(now);
                        LinkEvent::Transmit(ka)
                    }
                    Some(3) => {
                        let c = p.sent.take_cookie(packet)?;
                        let (attempts, started) = (p.attempts, p.started);
                        let (sent, out) = self.initiation(Some(c), wall, rng)?;
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
