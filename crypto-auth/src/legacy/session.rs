//! One legacy CryptoAuth session with one peer: the state machine of cjdns 22.3
//! (`crypto_auth.rs`), sans-IO.
//!
//! * [`Session::encrypt`] seals the payload that sits in a caller buffer after `headroom`
//!   bytes, writing the header into the headroom (120 bytes for handshake packets, 20 for data;
//!   [`MAX_OVERHEAD`] always suffices) and returns the packet as a sub-slice. It sends HELLO,
//!   REPEAT HELLO, KEY or REPEAT KEY while the handshake is incomplete, data afterwards.
//! * [`Session::decrypt`] opens a packet in place and returns the plaintext as a sub-slice.
//!   A packet that fails (any [`DecryptError`]) leaves the session exactly as it was.
//!
//! Time is an argument (`now`), randomness is an argument (`rng`); nothing here allocates on
//! the data path. Timeouts (10 s without data during setup, 60 s once established, never
//! while a HELLO is outstanding) are applied by [`Session::reset_if_timeout`], which
//! `encrypt` and `decrypt` call first, as cjdns does before encrypting and for every packet
//! from a known peer.
//!
//! One deliberate difference from 22.3: cjdns re-initialises the replay window to the nonce of
//! a *failed* first data packet; here a packet that fails authentication changes nothing.
//!
//! Two rules against replayed and untimely HELLOs (no change to the wire):
//! * **Used temporary keys are refused.** A HELLO or REPEAT HELLO whose temporary key belongs
//!   to a handshake this session already completed (the last [`USED_TEMP_KEYS`] of them) fails
//!   with [`DecryptError::Replay`]; a captured HELLO cannot be played back later.
//! * **Renewal keeps the established session** (opt-in, [`Session::keep_established`], used
//!   for link sessions): a HELLO with a new temporary key on an established session starts a
//!   *pending* handshake beside it. The established session keeps opening the peer's data; we
//!   answer on whichever of the two the peer's last authenticated packet used (so a peer that
//!   re-handshakes gets its KEY); the pending handshake replaces the established one only when
//!   a data packet opens under it, i.e. when the peer proved it holds the new keys. A pending
//!   handshake silent for [`SETUP_TIMEOUT`] is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};

use super::auth::CryptoAuth;
use super::crypto;
use super::header::{
    AuthChallenge, AuthType, HandshakeHeader, PacketKind, BOX_OFFSET, DATA_HEADER_LEN, HEADER_LEN,
};
use super::stages::{
    DataKey, Established, HelloReceived, HelloSent, KeyReceived, KeySent, Sending, Stage,
    TempKeyPair,
};
use crate::error::{DecryptError, EncryptError};
use crate::keys::PublicKey;
use crate::replay::{ReplayProtector, ReplayStats, ReplayVerdict};

/// Headroom that is always enough for [`Session::encrypt`].
pub const MAX_OVERHEAD: usize = HEADER_LEN;
/// A session that is not established resets after this long without data.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(10);
/// An established session resets after this long without data.
pub const ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);
/// At this nonce the session resets and re-handshakes instead of wrapping.
pub const MAX_NONCE: u32 = u32::MAX - 0xF;
/// How many temporary keys of completed handshakes a session remembers to refuse replays.
pub const USED_TEMP_KEYS: usize = 16;

/// The peer's temporary keys of the handshakes this session completed, newest last (bounded).
#[derive(Clone, Default)]
struct UsedTemps {
    keys: std::collections::VecDeque<[u8; 32]>,
}

impl UsedTemps {
    fn insert(&mut self, key: [u8; 32]) {
        if self.contains(&key) {
            return;
        }
        if self.keys.len() >= USED_TEMP_KEYS {
            self.keys.pop_front();
        }
        self.keys.push_back(key);
    }

    fn contains(&self, key: &[u8; 32]) -> bool {
        self.keys.iter().any(|k| k == key)
    }
}

/// The externally visible state (cjdns `CryptoAuth_State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum State {
    /// Nothing sent or received.
    Init = 0,
    /// We sent a HELLO.
    SentHello = 1,
    /// We received a HELLO.
    ReceivedHello = 2,
    /// We sent a KEY.
    SentKey = 3,
    /// We received a KEY (and may be sending data).
    ReceivedKey = 4,
    /// A data packet from the peer authenticated.
    Established = 100,
}

/// A successfully opened packet.
#[derive(Debug)]
pub struct Opened<'a> {
    /// What kind of packet it was.
    pub kind: PacketKind,
    /// The plaintext, inside the caller's buffer.
    pub payload: &'a mut [u8],
}

/// Our own credentials for HELLO packets.
#[derive(Clone)]
struct OwnAuth {
    challenge: AuthChallenge,
    secret: [u8; 32],
}

/// A legacy CryptoAuth session with one peer. Cloning copies the whole state (for tests and
/// fuzzing; a real node keeps one value per peer).
#[derive(Clone)]
pub struct Session {
    ca: Arc<CryptoAuth>,
    peer: PublicKey,
    require_auth: bool,
    auth: Option<OwnAuth>,
    stage: Stage,
    replay: ReplayProtector,
    last_packet: Instant,
    /// Temporary keys of completed handshakes (replays of their HELLOs are refused).
    used: UsedTemps,
    /// [`Session::keep_established`].
    keep_established: bool,
    /// A handshake a HELLO started beside the established session (only with
    /// `keep_established`); never has a pending handshake of its own.
    pending: Option<Box<Session>>,
    /// The peer's last authenticated packet opened under `pending`: answer there.
    prefer_pending: bool,
    /// Handshakes completed (see [`Session::generation`]).
    generation: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("state", &self.state())
            .field("require_auth", &self.require_auth)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// A session of the node `ca` with the peer whose permanent key is `peer`. With
    /// `require_auth`, a HELLO/KEY must name a configured user (cjdns sets this for sessions
    /// created by an unknown incoming peer).
    pub fn new(ca: Arc<CryptoAuth>, peer: PublicKey, require_auth: bool, now: Instant) -> Self {
        Self {
            ca,
            peer,
            require_auth,
            auth: None,
            stage: Stage::Init,
            replay: ReplayProtector::new(),
            last_packet: now,
            used: UsedTemps::default(),
            keep_established: false,
            pending: None,
            prefer_pending: false,
            generation: 0,
        }
    }

    /// Keep an established session when a HELLO with a new temporary key arrives: the new
    /// handshake runs beside it and replaces it only once a data packet opens under the new
    /// keys (see the module documentation). Off by default (cjdns replaces the session at
    /// once); link sessions turn it on.
    pub fn keep_established(mut self, keep: bool) -> Self {
        self.keep_established = keep;
        self
    }

    /// How many handshakes this session has completed: it changes when the session becomes
    /// established, first or again (a renewal that replaced the established session).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether a new handshake is pending beside the established session.
    pub fn is_renewing(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether `temp` is the peer's temporary key of a handshake this session completed (its
    /// HELLO would be a replay).
    pub fn has_used_temp_key(&self, temp: &[u8; 32]) -> bool {
        self.used.contains(temp)
            || matches!(&self.stage, Stage::Established(e) if e.theirs() == temp)
    }

    /// A session for a new handshake beside this one: same context, peer and credentials,
    /// and it refuses the same used keys (plus the current one).
    fn pending_for(&self, now: Instant) -> Session {
        let mut used = self.used.clone();
        if let Some(t) = self.theirs() {
            used.insert(*t);
        }
        Session {
            ca: self.ca.clone(),
            peer: self.peer,
            require_auth: self.require_auth,
            auth: self.auth.clone(),
            stage: Stage::Init,
            replay: ReplayProtector::new(),
            last_packet: now,
            used,
            keep_established: false,
            pending: None,
            prefer_pending: false,
            generation: self.generation,
        }
    }

    /// The pending handshake replaces the session.
    fn take_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            let p = *p;
            self.stage = p.stage;
            self.replay = p.replay;
            self.last_packet = p.last_packet;
            self.used = p.used;
            self.generation = p.generation;
        }
        self.prefer_pending = false;
    }

    /// Drops a pending handshake that has been silent for [`SETUP_TIMEOUT`].
    fn expire_pending(&mut self, now: Instant) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now.saturating_duration_since(p.last_packet) >= SETUP_TIMEOUT)
        {
            self.pending = None;
            self.prefer_pending = false;
        }
    }

    /// Set (or clear) the password and login this side sends in its HELLO packets: auth type 2
    /// with a login, type 1 without. Changing it resets the session.
    pub fn set_auth(&mut self, password: Option<&[u8]>, login: Option<&[u8]>) {
        let new = password.map(|pw| OwnAuth {
            challenge: AuthChallenge::for_password(pw, login),
            secret: crypto::sha256(pw),
        });
        let same = match (&self.auth, &new) {
            (None, None) => true,
            (Some(a), Some(b)) => a.challenge == b.challenge && a.secret == b.secret,
            _ => false,
        };
        if !same {
            self.auth = new;
            self.reset();
        }
    }

    /// The peer's permanent key.
    pub fn peer(&self) -> &PublicKey {
        &self.peer
    }

    /// The node context this session belongs to.
    pub fn context(&self) -> &Arc<CryptoAuth> {
        &self.ca
    }

    /// The cjdns state.
    pub fn state(&self) -> State {
        match &self.stage {
            Stage::Init => State::Init,
            Stage::HelloSent(_) => State::SentHello,
            Stage::HelloReceived(_) => State::ReceivedHello,
            Stage::KeySent(_) => State::SentKey,
            Stage::KeyReceived(_) | Stage::Sending(_) => State::ReceivedKey,
            Stage::Established(_) => State::Established,
        }
    }

    /// cjdns's `nextNonce` counter (the state below 5, the next data nonce above).
    pub fn next_nonce(&self) -> u32 {
        match &self.stage {
            Stage::Init => 0,
            Stage::HelloSent(_) => 1,
            Stage::HelloReceived(_) => 2,
            Stage::KeySent(_) => 3,
            Stage::KeyReceived(_) => 4,
            Stage::Sending(s) => s.next_nonce,
            Stage::Established(e) => e.next_nonce(),
        }
    }

    /// Whether we sent the HELLO of the current handshake.
    pub fn is_initiator(&self) -> bool {
        match &self.stage {
            Stage::HelloSent(_) | Stage::KeyReceived(_) | Stage::Sending(_) => true,
            Stage::Established(e) => e.key().we_initiated(),
            Stage::Init | Stage::HelloReceived(_) | Stage::KeySent(_) => false,
        }
    }

    /// Whether the session is established (a data packet from the peer authenticated).
    pub fn is_established(&self) -> bool {
        matches!(self.stage, Stage::Established(_))
    }

    /// Replay-protector counters.
    pub fn replay_stats(&self) -> ReplayStats {
        self.replay.stats()
    }

    /// The header room [`Session::encrypt`] needs for the next packet.
    pub fn overhead(&self) -> usize {
        if let Some(p) = self.pending.as_ref().filter(|_| self.prefer_pending) {
            return p.overhead();
        }
        match self.stage {
            Stage::Init | Stage::HelloSent(_) | Stage::HelloReceived(_) | Stage::KeySent(_) => {
                HEADER_LEN
            }
            _ => DATA_HEADER_LEN,
        }
    }

    /// Our temporary public key of the current handshake, if any.
    pub fn our_temp_public(&self) -> Option<[u8; 32]> {
        self.ours().map(|k| k.public)
    }

    /// The peer's temporary public key of the current handshake, if known.
    pub fn peer_temp_public(&self) -> Option<[u8; 32]> {
        self.theirs().copied()
    }

    fn ours(&self) -> Option<&TempKeyPair> {
        match &self.stage {
            Stage::HelloSent(s) => Some(&s.ours),
            Stage::KeySent(s) => Some(&s.ours),
            Stage::KeyReceived(s) => Some(&s.ours),
            Stage::Sending(s) => Some(&s.ours),
            Stage::Init | Stage::HelloReceived(_) | Stage::Established(_) => None,
        }
    }

    fn theirs(&self) -> Option<&[u8; 32]> {
        match &self.stage {
            Stage::HelloReceived(s) => Some(&s.theirs),
            Stage::KeySent(s) => Some(&s.theirs),
            Stage::KeyReceived(s) => Some(&s.theirs),
            Stage::Sending(s) => Some(&s.theirs),
            Stage::Established(e) => Some(e.theirs()),
            Stage::Init | Stage::HelloSent(_) => None,
        }
    }

    /// Forget the handshake (temporary keys, data key, a pending renewal); keeps the replay
    /// window and the used temporary keys.
    pub fn reset(&mut self) {
        self.stage = Stage::Init;
        self.pending = None;
        self.prefer_pending = false;
    }

    /// When [`Session::reset_if_timeout`] will next reset the session, if it can: `None` in
    /// INIT (nothing to reset) and while our HELLO is outstanding.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.stage {
            Stage::Init | Stage::HelloSent(_) => None,
            Stage::Established(_) => Some(self.last_packet + ESTABLISHED_TIMEOUT),
            _ => Some(self.last_packet + SETUP_TIMEOUT),
        }
    }

    /// Reset the session if it has been silent too long: 10 s without data while not
    /// established, 60 s when established; never while our HELLO is outstanding.
    pub fn reset_if_timeout(&mut self, now: Instant) {
        if matches!(self.stage, Stage::HelloSent(_)) {
            return;
        }
        let silent = now.saturating_duration_since(self.last_packet);
        if silent < SETUP_TIMEOUT || (silent < ESTABLISHED_TIMEOUT && self.is_established()) {
            return;
        }
        if self.pending.is_some() {
            // The old session died while a new handshake is under way: carry on with that.
            self.take_pending();
            return;
        }
        self.last_packet = now;
        self.reset();
    }

    /// Encrypt the payload `buf[headroom..]` in place; the packet is written to
    /// `buf[headroom - overhead..]` and returned.
    pub fn encrypt<'a, R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        buf: &'a mut [u8],
        headroom: usize,
    ) -> Result<&'a mut [u8], EncryptError> {
        self.expire_pending(now);
        self.reset_if_timeout(now);
        if self.prefer_pending {
            if let Some(p) = self.pending.as_mut() {
                return p.encrypt(now, rng, buf, headroom);
            }
        }
        if self.next_nonce() >= MAX_NONCE {
            self.reset();
        }
        let needed = self.overhead();
        let available = headroom.min(buf.len());
        if available < needed {
            return Err(EncryptError::InsufficientHeadroom { needed, available });
        }
        let packet = buf.get_mut(available - needed..).unwrap_or_default();
        if needed == HEADER_LEN {
            self.seal_handshake(rng, packet)?;
            return Ok(packet);
        }
        if packet.len() == DATA_HEADER_LEN {
            return Err(EncryptError::EmptyPayload);
        }
        if let Stage::KeyReceived(k) = &self.stage {
            let key = DataKey::derive(&k.ours, &k.theirs, true).ok_or(EncryptError::WeakKey)?;
            let Stage::KeyReceived(k) = std::mem::replace(&mut self.stage, Stage::Init) else {
                unreachable!("matched above")
            };
            self.stage = Stage::Sending(Sending {
                ours: k.ours,
                theirs: k.theirs,
                key,
                next_nonce: 4,
            });
        }
        match &mut self.stage {
            Stage::Sending(s) => {
                s.key.seal(s.next_nonce, packet);
                s.next_nonce = s.next_nonce.wrapping_add(1);
            }
            Stage::Established(e) => {
                let n = e.take_nonce();
                e.key_mut().seal(n, packet);
            }
            _ => unreachable!("overhead() is 20 only for data stages"),
        }
        Ok(packet)
    }

    /// Convenience wrapper around [`Session::encrypt`] that allocates.
    pub fn encrypt_to_vec<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        payload: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        let mut buf = vec![0u8; MAX_OVERHEAD + payload.len()];
        buf[MAX_OVERHEAD..].copy_from_slice(payload);
        let len = self.encrypt(now, rng, &mut buf, MAX_OVERHEAD)?.len();
        buf.drain(..buf.len() - len);
        Ok(buf)
    }

    fn seal_handshake<R: RngCore + CryptoRng>(
        &mut self,
        rng: &mut R,
        packet: &mut [u8],
    ) -> Result<(), EncryptError> {
        let stage_word = self.next_nonce();
        // Fresh temporary keys for HELLO (from INIT) and KEY (from RECEIVED_HELLO).
        let ours = match &self.stage {
            Stage::Init | Stage::HelloReceived(_) => TempKeyPair::generate(rng),
            Stage::HelloSent(s) => s.ours.clone(),
            Stage::KeySent(s) => s.ours.clone(),
            _ => unreachable!("called only for handshake stages"),
        };
        let own_secret = self.auth.as_ref().map(|a| a.secret);
        let peer_key = match self.theirs() {
            None => *self.peer.as_bytes(),
            Some(t) => *t,
        };
        let key = crypto::shared_secret(
            self.ca.private_key().as_bytes(),
            &peer_key,
            own_secret.as_ref(),
        )
        .ok_or(EncryptError::WeakKey)?;

        let mut random = [0u8; 36];
        rng.fill_bytes(&mut random);
        let auth = match &self.auth {
            Some(a) => a.challenge,
            None => {
                let mut c = [0u8; 12];
                c.copy_from_slice(&random[..12]);
                let mut c = AuthChallenge::from_bytes(&c);
                c.auth_type = AuthType::None;
                c.additional = 0;
                c
            }
        };
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&random[12..]);
        let header = HandshakeHeader {
            stage: stage_word,
            auth,
            nonce,
            public_key: *self.ca.public_key().as_bytes(),
        };

        let Some((head, body)) = packet.split_first_chunk_mut::<BOX_OFFSET>() else {
            unreachable!("caller checked the headroom")
        };
        header.emit(head);
        let Some((tag, boxed)) = body.split_first_chunk_mut::<16>() else {
            unreachable!("caller checked the headroom")
        };
        if let Some(t) = boxed.first_chunk_mut::<32>() {
            *t = ours.public;
        }
        *tag = crypto::seal_detached(&crypto::box_key(&key), &nonce, boxed);

        self.stage = match std::mem::replace(&mut self.stage, Stage::Init) {
            Stage::Init | Stage::HelloSent(_) => Stage::HelloSent(HelloSent { ours }),
            Stage::HelloReceived(h) => Stage::KeySent(KeySent {
                ours,
                theirs: h.theirs,
            }),
            Stage::KeySent(k) => Stage::KeySent(k),
            _ => unreachable!("called only for handshake stages"),
        };
        Ok(())
    }

    /// Open `packet` in place. On success the plaintext is returned as a sub-slice; on failure
    /// the session is unchanged.
    pub fn decrypt<'a>(
        &mut self,
        now: Instant,
        packet: &'a mut [u8],
    ) -> Result<Opened<'a>, DecryptError> {
        let kind = self.open_in_place(now, packet)?;
        let start = if kind.is_handshake() {
            HEADER_LEN
        } else {
            DATA_HEADER_LEN
        };
        Ok(Opened {
            kind,
            payload: packet.get_mut(start..).unwrap_or_default(),
        })
    }

    fn open_in_place(
        &mut self,
        now: Instant,
        packet: &mut [u8],
    ) -> Result<PacketKind, DecryptError> {
        self.expire_pending(now);
        self.reset_if_timeout(now);
        if packet.len() < DATA_HEADER_LEN {
            return Err(DecryptError::Runt);
        }
        let kind = PacketKind::of(packet).ok_or(DecryptError::Runt)?;
        let renewal = self.keep_established
            && self.is_established()
            && matches!(kind, PacketKind::Hello | PacketKind::RepeatHello);
        if renewal || self.pending.is_some() {
            return self.open_renewing(now, kind, packet);
        }
        self.open_one(now, kind, packet)
    }

    fn open_one(
        &mut self,
        now: Instant,
        kind: PacketKind,
        packet: &mut [u8],
    ) -> Result<PacketKind, DecryptError> {
        match (kind, self.is_established()) {
            (PacketKind::Data(nonce), _) => self.open_data(now, nonce, packet),
            (PacketKind::Key | PacketKind::RepeatKey, true) => {
                Err(DecryptError::KeyPktEstablishedSession)
            }
            _ => self.open_handshake(kind, packet),
        }
    }

    /// An established session with `keep_established`: HELLOs and KEYs go to the pending
    /// handshake (made by the first HELLO), data to the established session first, then to
    /// the pending one, which replaces the established session when data opens under it.
    fn open_renewing(
        &mut self,
        now: Instant,
        kind: PacketKind,
        packet: &mut [u8],
    ) -> Result<PacketKind, DecryptError> {
        if let PacketKind::Data(_) = kind {
            let error = match self.open_one(now, kind, packet) {
                Ok(k) => {
                    self.prefer_pending = false;
                    return Ok(k);
                }
                Err(e) => e,
            };
            let Some(p) = self.pending.as_mut() else {
                return Err(error);
            };
            // The established session's error is the one that counts when both refuse.
            p.open_one(now, kind, packet).map_err(|_| error)?;
            if p.is_established() {
                self.take_pending();
            } else {
                self.prefer_pending = true;
            }
            return Ok(kind);
        }
        if self.pending.is_none() && matches!(kind, PacketKind::Key | PacketKind::RepeatKey) {
            return self.open_one(now, kind, packet);
        }
        let mut p = match self.pending.take() {
            Some(p) => p,
            None => Box::new(self.pending_for(now)),
        };
        let result = p.open_one(now, kind, packet);
        if result.is_ok() || p.stage_is_under_way() {
            self.prefer_pending |= result.is_ok();
            self.pending = Some(p);
        }
        result
    }

    /// Whether a handshake has started (anything past INIT).
    fn stage_is_under_way(&self) -> bool {
        !matches!(self.stage, Stage::Init)
    }

    fn open_data(
        &mut self,
        now: Instant,
        nonce: u32,
        packet: &mut [u8],
    ) -> Result<PacketKind, DecryptError> {
        let kind = PacketKind::Data(nonce);
        if let Stage::Established(e) = &mut self.stage {
            e.key_mut()
                .open(nonce, packet)
                .ok_or(DecryptError::Decrypt)?;
            if self.replay.check(nonce) != ReplayVerdict::Fresh {
                return Err(DecryptError::Replay);
            }
            self.last_packet = now;
            return Ok(kind);
        }
        // First data packet: derive the data key from both temporary keys.
        let (key, theirs, next_nonce) = match &self.stage {
            Stage::KeySent(k) => (DataKey::derive(&k.ours, &k.theirs, false), k.theirs, 3),
            Stage::KeyReceived(k) => (DataKey::derive(&k.ours, &k.theirs, true), k.theirs, 4),
            Stage::Sending(s) => (Some(s.key.clone()), s.theirs, s.next_nonce),
            _ => return Err(DecryptError::NoSession),
        };
        let mut key = key.ok_or(DecryptError::Decrypt)?;
        let proof = key.open(nonce, packet).ok_or(DecryptError::Decrypt)?;
        self.replay.init(nonce.wrapping_add(1));
        self.used.insert(theirs);
        self.generation = self.generation.wrapping_add(1);
        self.stage = Stage::Established(Established::confirm(
            proof,
            theirs,
            key,
            next_nonce.wrapping_add(3),
        ));
        self.last_packet = now;
        Ok(kind)
    }

    fn open_handshake(
        &mut self,
        kind: PacketKind,
        packet: &mut [u8],
    ) -> Result<PacketKind, DecryptError> {
        let header = HandshakeHeader::parse(packet).ok_or(DecryptError::Internal)?;
        if header.public_key != *self.peer.as_bytes() {
            return Err(DecryptError::WrongPermPubkey);
        }
        let user = self.ca.find_user(&header.auth);
        if let Some(ip) = user.and_then(|u| u.restricted_to()) {
            if ip != self.peer.address() {
                return Err(DecryptError::IpRestricted);
            }
        }
        if self.require_auth && user.is_none() {
            return Err(DecryptError::AuthRequired);
        }
        if user.is_none() && header.auth.auth_type != AuthType::None {
            return Err(DecryptError::UnrecognizedAuth);
        }
        let password = user.map(|u| *u.secret());
        let is_hello = matches!(kind, PacketKind::Hello | PacketKind::RepeatHello);
        let secret = if is_hello {
            crypto::shared_secret(
                self.ca.private_key().as_bytes(),
                self.peer.as_bytes(),
                password.as_ref(),
            )
        } else {
            let ours = self
                .ours()
                .filter(|_| self.is_initiator())
                .ok_or(DecryptError::StrayKey)?;
            crypto::shared_secret(&ours.secret, self.peer.as_bytes(), password.as_ref())
        }
        .ok_or(DecryptError::HandshakeDecryptFailed)?;

        let body = packet.get_mut(BOX_OFFSET..).ok_or(DecryptError::Internal)?;
        let (tag, boxed) = body
            .split_first_chunk_mut::<16>()
            .ok_or(DecryptError::Internal)?;
        crypto::open_detached(&crypto::box_key(&secret), &header.nonce, boxed, tag)
            .ok_or(DecryptError::HandshakeDecryptFailed)?;
        let temp: [u8; 32] = *boxed.first_chunk::<32>().ok_or(DecryptError::Internal)?;
        if temp == [0u8; 32] {
            return Err(DecryptError::Wiseguy);
        }

        let known = self.theirs().copied();
        if is_hello && known != Some(temp) && self.used.contains(&temp) {
            // The HELLO of a handshake this session completed: a replay.
            return Err(DecryptError::Replay);
        }
        let past_key = matches!(
            self.stage,
            Stage::KeyReceived(_) | Stage::Sending(_) | Stage::Established(_)
        );
        match kind {
            PacketKind::Hello if known == Some(temp) => return Err(DecryptError::InvalidPacket),
            PacketKind::Key if past_key && known == Some(temp) => {
                return Err(DecryptError::InvalidPacket)
            }
            PacketKind::RepeatKey if past_key && known != Some(temp) => {
                return Err(DecryptError::InvalidPacket)
            }
            _ => {}
        }

        let stage = std::mem::replace(&mut self.stage, Stage::Init);
        let result = if is_hello {
            self.on_hello(stage, temp)
        } else {
            self.on_key(stage, kind, temp)
        };
        let (stage, outcome) = result;
        self.stage = stage;
        match outcome {
            Ok(reset_replay) => {
                if reset_replay {
                    self.replay.reset();
                }
                Ok(kind)
            }
            Err(e) => Err(e),
        }
    }

    /// HELLO / REPEAT HELLO that authenticated, carrying temporary key `temp`.
    fn on_hello(&self, stage: Stage, temp: [u8; 32]) -> (Stage, Result<bool, DecryptError>) {
        let fresh = Stage::HelloReceived(HelloReceived { theirs: temp });
        let known = match &stage {
            Stage::HelloReceived(s) => Some(s.theirs),
            Stage::KeySent(s) => Some(s.theirs),
            Stage::KeyReceived(s) => Some(s.theirs),
            Stage::Sending(s) => Some(s.theirs),
            Stage::Established(e) => Some(*e.theirs()),
            Stage::Init | Stage::HelloSent(_) => None,
        };
        if known != Some(temp) {
            return match stage {
                // Both sides sent HELLO: the one with the lower permanent key stays initiator.
                Stage::HelloSent(h) => {
                    if self.peer.as_bytes() < self.ca.public_key().as_bytes() {
                        (fresh, Ok(true))
                    } else {
                        (Stage::HelloSent(h), Ok(false))
                    }
                }
                _ => (fresh, Ok(true)),
            };
        }
        match stage {
            s @ (Stage::HelloReceived(_) | Stage::KeySent(_)) => (s, Ok(true)),
            s => (s, Err(DecryptError::InvalidPacket)),
        }
    }

    /// KEY / REPEAT KEY that authenticated (we are the initiator).
    fn on_key(
        &self,
        stage: Stage,
        kind: PacketKind,
        temp: [u8; 32],
    ) -> (Stage, Result<bool, DecryptError>) {
        match stage {
            Stage::HelloSent(h) => (
                Stage::KeyReceived(KeyReceived {
                    ours: h.ours,
                    theirs: temp,
                }),
                Ok(true),
            ),
            Stage::KeyReceived(mut k) => {
                if kind == PacketKind::Key {
                    k.theirs = temp;
                }
                (Stage::KeyReceived(k), Ok(true))
            }
            Stage::Sending(mut s) => {
                if kind == PacketKind::Key {
                    match DataKey::derive(&s.ours, &temp, true) {
                        Some(key) => {
                            s.key = key;
                            s.theirs = temp;
                        }
                        None => {
                            return (Stage::Sending(s), Err(DecryptError::HandshakeDecryptFailed))
                        }
                    }
                }
                s.next_nonce = s.next_nonce.wrapping_add(1);
                (Stage::Sending(s), Ok(true))
            }
            s @ Stage::Established(_) => (s, Err(DecryptError::KeyPktEstablishedSession)),
            s => (s, Err(DecryptError::StrayKey)),
        }
    }
}

/// The permanent public key named in a handshake packet (to find or create the session for an
/// incoming HELLO from an unknown sender). `None` for data packets and short input.
pub fn handshake_sender(packet: &[u8]) -> Option<PublicKey> {
    let kind = PacketKind::of(packet)?;
    if !kind.is_handshake() {
        return None;
    }
    HandshakeHeader::parse(packet).map(|h| PublicKey::from_bytes(h.public_key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::PrivateKey;

    struct Counter(u64);
    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            self.0 >> 7
        }
        fn fill_bytes(&mut self, d: &mut [u8]) {
            for b in d {
                *b = self.next_u64() as u8;
            }
        }
        fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(d);
            Ok(())
        }
    }
    impl CryptoRng for Counter {}

    /// At nonce 0xFFFFFFF0 the sender resets and starts a new handshake instead of wrapping.
    #[test]
    fn nonce_wrap_resets_and_rehandshakes() {
        let mut rng = Counter(3);
        let now = Instant::now();
        let (ka, pa, _) = PrivateKey::generate(&mut rng);
        let (kb, pb, _) = PrivateKey::generate(&mut rng);
        let mut a = Session::new(Arc::new(CryptoAuth::new(ka)), pb, false, now);
        let mut b = Session::new(Arc::new(CryptoAuth::new(kb)), pa, false, now);
        for _ in 0..2 {
            let mut p = a.encrypt_to_vec(now, &mut rng, b"x").unwrap();
            b.decrypt(now, &mut p).unwrap();
            let mut p = b.encrypt_to_vec(now, &mut rng, b"y").unwrap();
            a.decrypt(now, &mut p).unwrap();
        }
        assert!(a.is_established() && b.is_established());
        if let Stage::Established(e) = &mut a.stage {
            e.set_next_nonce_for_test(MAX_NONCE - 1);
        }
        let mut last = a.encrypt_to_vec(now, &mut rng, b"last").unwrap();
        assert_eq!(PacketKind::of(&last), Some(PacketKind::Data(MAX_NONCE - 1)));
        assert_eq!(b.decrypt(now, &mut last).unwrap().payload, b"last");
        let mut hello = a.encrypt_to_vec(now, &mut rng, b"again").unwrap();
        assert_eq!(PacketKind::of(&hello), Some(PacketKind::Hello));
        assert_eq!(a.state(), State::SentHello);
        // The peer accepts the new HELLO on its established session and re-handshakes.
        assert_eq!(b.decrypt(now, &mut hello).unwrap().payload, b"again");
        assert_eq!(b.state(), State::ReceivedHello);
    }

    /// Two sessions, `b` keeping its established session on renewal; established both ways.
    fn established_pair(rng: &mut Counter, now: Instant, keep: bool) -> (Session, Session) {
        let (ka, pa, _) = PrivateKey::generate(rng);
        let (kb, pb, _) = PrivateKey::generate(rng);
        let a = Session::new(Arc::new(CryptoAuth::new(ka)), pb, false, now);
        let b = Session::new(Arc::new(CryptoAuth::new(kb)), pa, false, now).keep_established(keep);
        let (mut a, mut b) = (a, b);
        for _ in 0..2 {
            let mut p = a.encrypt_to_vec(now, rng, b"x").unwrap();
            b.decrypt(now, &mut p).unwrap();
            let mut p = b.encrypt_to_vec(now, rng, b"y").unwrap();
            a.decrypt(now, &mut p).unwrap();
        }
        assert!(a.is_established() && b.is_established());
        (a, b)
    }

    /// A HELLO on an established session (keep_established) runs beside it: the old session
    /// keeps opening the peer's data, the answer is a KEY, and the new session replaces the
    /// old one only when data opens under it.
    #[test]
    fn a_hello_does_not_replace_an_established_session_until_the_new_one_is_established() {
        let mut rng = Counter(11);
        let now = Instant::now();
        let (mut a, mut b) = established_pair(&mut rng, now, true);
        assert_eq!(b.generation(), 1);
        // Data of the old session, sent before A re-handshakes but delivered afterwards.
        let mut late = a.encrypt_to_vec(now, &mut rng, b"old").unwrap();
        a.reset();
        let mut hello = a.encrypt_to_vec(now, &mut rng, b"hello").unwrap();
        assert_eq!(PacketKind::of(&hello), Some(PacketKind::Hello));
        assert_eq!(b.decrypt(now, &mut hello).unwrap().payload, b"hello");
        assert_eq!(
            (b.state(), b.is_renewing(), b.generation()),
            (State::Established, true, 1),
            "the old session stays"
        );
        assert_eq!(b.decrypt(now, &mut late).unwrap().payload, b"old");
        // The peer last spoke on the old session: B answers there (data, not a KEY) ...
        let mut reply = b.encrypt_to_vec(now, &mut rng, b"r").unwrap();
        assert!(matches!(PacketKind::of(&reply), Some(PacketKind::Data(_))));
        assert!(a.decrypt(now, &mut reply).is_err());
        // ... until the peer speaks on the new one again (A repeats its HELLO).
        let mut repeat = a.encrypt_to_vec(now, &mut rng, b"hello again").unwrap();
        assert_eq!(PacketKind::of(&repeat), Some(PacketKind::RepeatHello));
        b.decrypt(now, &mut repeat).unwrap();
        let mut key = b.encrypt_to_vec(now, &mut rng, b"key").unwrap();
        assert_eq!(PacketKind::of(&key), Some(PacketKind::Key));
        assert_eq!(a.decrypt(now, &mut key).unwrap().payload, b"key");
        assert_eq!(b.state(), State::Established);
        // A's first data packet under the new keys proves it: B switches.
        let mut data = a.encrypt_to_vec(now, &mut rng, b"new").unwrap();
        assert_eq!(b.decrypt(now, &mut data).unwrap().payload, b"new");
        assert_eq!((b.is_renewing(), b.generation()), (false, 2));
        let mut back = b.encrypt_to_vec(now, &mut rng, b"back").unwrap();
        assert_eq!(a.decrypt(now, &mut back).unwrap().payload, b"back");
        assert!(a.is_established());
        // The old session is gone now.
        let mut stale = vec![0u8; 0];
        stale.extend_from_slice(&late);
        assert!(b.decrypt(now, &mut stale).is_err());
    }

    /// A HELLO of a completed handshake is refused as a replay, on an established session and
    /// after renewals, and leaves the session as it was; a pending handshake that never
    /// completes is dropped after SETUP_TIMEOUT.
    #[test]
    fn replayed_hellos_are_refused_and_pending_handshakes_expire() {
        let mut rng = Counter(12);
        let now = Instant::now();
        let (ka, pa, _) = PrivateKey::generate(&mut rng);
        let (kb, pb, _) = PrivateKey::generate(&mut rng);
        let mut a = Session::new(Arc::new(CryptoAuth::new(ka)), pb, false, now);
        let mut b =
            Session::new(Arc::new(CryptoAuth::new(kb)), pa, false, now).keep_established(true);
        let first_hello = a.encrypt_to_vec(now, &mut rng, b"x").unwrap();
        let mut p = first_hello.clone();
        b.decrypt(now, &mut p).unwrap();
        let mut p = b.encrypt_to_vec(now, &mut rng, b"y").unwrap();
        a.decrypt(now, &mut p).unwrap();
        let mut p = a.encrypt_to_vec(now, &mut rng, b"z").unwrap();
        b.decrypt(now, &mut p).unwrap();
        assert!(b.is_established());
        // The captured HELLO of this very session.
        let mut replay = first_hello.clone();
        assert!(b.decrypt(now, &mut replay).is_err());
        assert!(!b.is_renewing());
        // A renews (its HELLO, B's KEY, A's data): the first HELLO is still refused.
        a.reset();
        let second_hello = a.encrypt_to_vec(now, &mut rng, b"h2").unwrap();
        b.decrypt(now, &mut second_hello.clone()).unwrap();
        let mut key = b.encrypt_to_vec(now, &mut rng, b"k").unwrap();
        a.decrypt(now, &mut key).unwrap();
        let mut data = a.encrypt_to_vec(now, &mut rng, b"d").unwrap();
        b.decrypt(now, &mut data).unwrap();
        assert_eq!(b.generation(), 2);
        for hello in [&first_hello, &second_hello] {
            let mut replay = hello.clone();
            assert_eq!(
                b.decrypt(now, &mut replay).err(),
                Some(DecryptError::Replay)
            );
            assert!(!b.is_renewing(), "a replay starts nothing");
        }
        let mut data = a.encrypt_to_vec(now, &mut rng, b"still").unwrap();
        assert_eq!(b.decrypt(now, &mut data).unwrap().payload, b"still");
        // Even without keep_established (cjdns replaces the session on a HELLO), a used key
        // is refused.
        let (mut c, mut d) = established_pair(&mut rng, now, false);
        c.reset();
        let hello = c.encrypt_to_vec(now, &mut rng, b"h").unwrap();
        d.decrypt(now, &mut hello.clone()).unwrap();
        let mut key = d.encrypt_to_vec(now, &mut rng, b"k").unwrap();
        c.decrypt(now, &mut key).unwrap();
        let mut data = c.encrypt_to_vec(now, &mut rng, b"d").unwrap();
        d.decrypt(now, &mut data).unwrap();
        let generation = d.generation();
        // (The current handshake's own HELLO: refused as cjdns refuses it.)
        assert_eq!(
            d.decrypt(now, &mut hello.clone()).err(),
            Some(DecryptError::InvalidPacket)
        );
        c.reset();
        let renewed = c.encrypt_to_vec(now, &mut rng, b"h").unwrap();
        d.decrypt(now, &mut renewed.clone()).unwrap();
        let mut key = d.encrypt_to_vec(now, &mut rng, b"k").unwrap();
        c.decrypt(now, &mut key).unwrap();
        let mut data = c.encrypt_to_vec(now, &mut rng, b"d").unwrap();
        d.decrypt(now, &mut data).unwrap();
        assert_eq!(
            d.decrypt(now, &mut hello.clone()).err(),
            Some(DecryptError::Replay)
        );
        assert!(d.is_established());
        assert_eq!(d.generation(), generation + 1);
        // A fresh HELLO that never completes: pending for SETUP_TIMEOUT, then dropped.
        let (mut e, mut f) = established_pair(&mut rng, now, true);
        e.reset();
        let mut hello = e.encrypt_to_vec(now, &mut rng, b"h").unwrap();
        f.decrypt(now, &mut hello).unwrap();
        assert!(f.is_renewing());
        let later = now + SETUP_TIMEOUT;
        let mut out = f.encrypt_to_vec(later, &mut rng, b"o").unwrap();
        assert!(!f.is_renewing());
        assert!(matches!(PacketKind::of(&out), Some(PacketKind::Data(_))));
        assert!(f.is_established());
        let _ = e.decrypt(later, &mut out);
    }
}
