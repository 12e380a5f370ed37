//! A peer link that prefers Noise and falls back to legacy CryptoAuth.
//!
//! Between pktmesh nodes Noise is the default. [`Link::connect`] sends a Noise initiation;
//! initiations are retried every [`RETRY_AFTER`] (with mac2 once a cookie reply arrived), and
//! after [`NOISE_ATTEMPTS`] unanswered attempts the link falls back to a legacy session with the
//! same password and login (what a stock cjdns node always speaks). Sans-IO: the caller feeds
//! packets and timeouts and sends what the link returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::handshake::{InitiationParams, InitiationSent, MAX_INITIATION_LEN};
use super::transport::{Transport, DATA_HEADER, DATA_OVERHEAD};
use super::{Credentials, NoiseError};
use crate::legacy::{CryptoAuth, Session};
use crate::PublicKey;

/// Initiation retry interval (WireGuard REKEY_TIMEOUT).
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Unanswered initiations before falling back to legacy CryptoAuth.
pub const NOISE_ATTEMPTS: u32 = 3;

/// Which protocol the link speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Noise handshake in progress.
    NoiseHandshake,
    /// Noise established.
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

enum State {
    Handshake {
        sent: InitiationSent,
        last: Instant,
        attempts: u32,
        cookie: Option<[u8; 16]>,
    },
    Noise(Transport),
    Legacy(Box<Session>),
}

/// A link to one peer, initiated by us.
pub struct Link {
    ca: Arc<CryptoAuth>,
    peer: PublicKey,
    password: Option<Vec<u8>>,
    login: Option<Vec<u8>>,
    local_index: u32,
    state: State,
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
    /// will be a HELLO).
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
        };
        if !prefer_noise {
            link.fall_back(now);
            return Ok((link, None));
        }
        let (sent, first) = link.initiation(None, wall, rng)?;
        link.state = State::Handshake {
            sent,
            last: now,
            attempts: 1,
            cookie: None,
        };
        Ok((link, Some(first)))
    }

    fn initiation<R: RngCore + CryptoRng>(
        &self,
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
        let mut out = [0u8; MAX_INITIATION_LEN];
        let (sent, len) = InitiationSent::new(
            &self.ca,
            &self.peer,
            &params,
            self.local_index,
            wall,
            rng,
            &mut out,
        )?;
        Ok((sent, out[..len].to_vec()))
    }

    fn fall_back(&mut self, now: Instant) {
        let mut s = Session::new(self.ca.clone(), self.peer, false, now);
        s.set_auth(self.password.as_deref(), self.login.as_deref());
        self.state = State::Legacy(Box::new(s));
    }

    /// The protocol in use.
    pub fn mode(&self) -> LinkMode {
        match self.state {
            State::Handshake { .. } => LinkMode::NoiseHandshake,
            State::Noise(_) => LinkMode::Noise,
            State::Legacy(_) => LinkMode::Legacy,
        }
    }

    /// Timer: retry the initiation, or fall back to legacy after [`NOISE_ATTEMPTS`]. Returns a
    /// packet to send, if any.
    pub fn handle_timeout<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        wall: Duration,
        rng: &mut R,
    ) -> Result<Option<Vec<u8>>, NoiseError> {
        let State::Handshake {
            last,
            attempts,
            cookie,
            ..
        } = &self.state
        else {
            return Ok(None);
        };
        if now.saturating_duration_since(*last) < RETRY_AFTER {
            return Ok(None);
        }
        if *attempts >= NOISE_ATTEMPTS {
            self.fall_back(now);
            return Ok(None);
        }
        let (attempts, cookie) = (*attempts + 1, *cookie);
        let (sent, packet) = self.initiation(cookie, wall, rng)?;
        self.state = State::Handshake {
            sent,
            last: now,
            attempts,
            cookie,
        };
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
        match &mut self.state {
            State::Handshake { sent, attempts, .. } => {
                match packet.get(4) {
                    Some(2) => {
                        let mut t = sent.complete(&self.ca, now, packet)?;
                        // Confirm the session with an empty keepalive, as WireGuard does.
                        let mut ka = vec![0u8; DATA_OVERHEAD];
                        t.encrypt(now, &mut ka)?;
                        self.state = State::Noise(t);
                        Ok(LinkEvent::Transmit(ka))
                    }
                    Some(3) => {
                        let c = sent.take_cookie(packet)?;
                        let attempts = *attempts;
                        let (sent, p) = self.initiation(Some(c), wall, rng)?;
                        self.state = State::Handshake {
                            sent,
                            last: now,
                            attempts,
                            cookie: Some(c),
                        };
                        Ok(LinkEvent::Transmit(p))
                    }
                    _ => Err(NoiseError::UnexpectedMessage.into()),
                }
            }
            State::Noise(t) => {
                let mut p = packet.to_vec();
                let body = t.decrypt(now, &mut p)?;
                if body.is_empty() {
                    Ok(LinkEvent::Nothing)
                } else {
                    Ok(LinkEvent::Payload(body.to_vec()))
                }
            }
            State::Legacy(s) => {
                let mut p = packet.to_vec();
                let o = s.decrypt(now, &mut p)?;
                Ok(LinkEvent::Payload(o.payload.to_vec()))
            }
        }
    }

    /// Encrypt a payload for the peer.
    pub fn encrypt<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        payload: &[u8],
    ) -> Result<Vec<u8>, LinkError> {
        match &mut self.state {
            State::Handshake { .. } => Err(LinkError::NotReady),
            State::Noise(t) => {
                let mut p = vec![0u8; payload.len() + DATA_OVERHEAD];
                p[DATA_HEADER..DATA_HEADER + payload.len()].copy_from_slice(payload);
                t.encrypt(now, &mut p)?;
                Ok(p)
            }
            State::Legacy(s) => Ok(s.encrypt_to_vec(now, rng, payload)?),
        }
    }
}
