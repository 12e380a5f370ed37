//! The IKpsk2 handshake in cjdns's WireGuard framing (digest §6.3), sans-IO.
//!
//! Initiator: [`InitiationSent::new`] writes the initiation; [`InitiationSent::complete`]
//! checks the response and yields a [`Transport`]; [`InitiationSent::take_cookie`] handles a
//! cookie reply. Responder: [`Responder::handle_initiation`] (node-global: mac1, cookie and
//! rate-limit gate before any X25519, timestamp replay check, CjdnsPsk or PktmeshPsk lookup)
//! answers with a response or a cookie reply; [`Responder::handle_initiation_in`] also places
//! the handshake among existing sessions by link address, static key and the PrevSessIndex
//! hint. It is [`Responder::screen`] (what costs no X25519: type, length, mac1) then
//! [`Responder::answer`], so a caller can spend a handshake budget's token in between.
//!
//! Differences from cjdns 22.3, deliberately (§6.3.5): a response is read as WireGuard
//! defines it (`sender_idx` = the responder's index, `receiver_idx` = ours), and the handshake
//! rate limiter is a per-second budget that refills, not a lifetime counter.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;

use super::additional::{Additional, Credentials, MAX_ADDITIONAL};
use super::crypto::{dh, hash, kdf1, kdf2, kdf3, mac, open_to, public_of, seal_to, xopen, xseal};
use super::transport::{HandshakeVerified, Transport};
use super::NoiseError;
use crate::legacy::CryptoAuth;
use crate::PublicKey;

const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
const IDENTIFIER: &[u8] = b"WireGuard v1 zx2c4 Jason@zx2c4.com";
const LABEL_MAC1: &[u8] = b"mac1----";
const LABEL_COOKIE: &[u8] = b"cookie--";

/// The 4-byte marker cjdns puts before every Noise handshake message.
pub const CONTROL_MARKER: [u8; 4] = [0xff; 4];
/// Initiation length on the wire without additional data (marker included).
pub const INITIATION_BASE_LEN: usize = 4 + 148;
/// Response length on the wire.
pub const RESPONSE_LEN: usize = 4 + 92;
/// Cookie reply length on the wire.
pub const COOKIE_REPLY_LEN: usize = 4 + 64;
/// Largest initiation this implementation writes or accepts.
pub const MAX_INITIATION_LEN: usize = INITIATION_BASE_LEN + MAX_ADDITIONAL + 16;
/// Cookies are valid for this long.
pub const COOKIE_LIFETIME: Duration = Duration::from_secs(120);
/// The cjdns protocol version announced in CjdnsVer.
pub const PROTOCOL_VERSION: u32 = 22;
/// Most static keys whose last initiation timestamp a [`Responder`] remembers (for the replay
/// check); past that, the key heard from longest ago that has no session is forgotten.
pub const MAX_REMEMBERED_KEYS: usize = 16_384;
/// A key with no session, not heard from for this long, is forgotten: longer than a session
/// lives without a handshake ([`super::link::DROP_ALL_AFTER`]), so a replayed initiation of a
/// forgotten key can only start a handshake nobody can finish, never replace a live session.
pub const TIMESTAMP_MEMORY: Duration = Duration::from_secs(600);
/// How often a [`Responder`] looks for keys to forget.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Whether the 16-byte MAC `computed` equals `received`, in time that does not depend on where
/// they differ.
fn mac_matches(computed: &[u8; 16], received: &[u8]) -> bool {
    bool::from(computed[..].ct_eq(received))
}

fn initial_chain(responder_static: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let ck = hash(&[CONSTRUCTION]);
    let h = hash(&[&ck, IDENTIFIER]);
    (ck, hash(&[&h, responder_static]))
}

/// Whether `index` can be used as a local Noise index: its four wire bytes (LE), read big
/// endian, must not look like a legacy handshake word (0..=3) or the Noise marker.
pub fn is_usable_index(index: u32) -> bool {
    let word = u32::from_be_bytes(index.to_le_bytes());
    word >= 4 && word != u32::MAX
}

/// The local index a responder should use when the initiator is a cjdns 22.x node.
///
/// cjdns reads a handshake response with the two index fields swapped (digest §6.3.5 defect 1):
/// it takes the responder's `sender_idx` as its own session index. Choosing our index with the
/// initiator's upper 24 bits (its session number) and our own low byte lets such an initiator
/// find its session; data it then sends carries its own index, whose upper 24 bits equal ours.
/// Falls back to `fallback` if the combination would not be a usable index.
pub fn index_for_cjdns_initiator(initiator_index: u32, counter: u8, fallback: u32) -> u32 {
    let index = (initiator_index & 0xFFFF_FF00) | u32::from(counter);
    if is_usable_index(index) {
        index
    } else {
        fallback
    }
}

/// A TAI64N timestamp of a wall-clock time given as the duration since the Unix epoch.
pub fn tai64n(since_epoch: Duration) -> [u8; 12] {
    let mut t = [0u8; 12];
    t[..8].copy_from_slice(&(0x4000_0000_0000_000a_u64 + since_epoch.as_secs()).to_be_bytes());
    t[8..].copy_from_slice(&since_epoch.subsec_nanos().to_be_bytes());
    t
}

fn u32_le(b: &[u8], at: usize) -> Result<u32, NoiseError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(NoiseError::Truncated)
}

fn key32(b: &[u8], at: usize) -> Result<[u8; 32], NoiseError> {
    b.get(at..at + 32)
        .and_then(|s| s.try_into().ok())
        .ok_or(NoiseError::Truncated)
}

/// An initiation we sent and the state to finish it.
#[derive(Clone)]
pub struct InitiationSent {
    peer: [u8; 32],
    psk: [u8; 32],
    local_index: u32,
    ephemeral: [u8; 32],
    ephemeral_public: [u8; 32],
    ck: [u8; 32],
    h: [u8; 32],
    mac1: [u8; 16],
}

impl std::fmt::Debug for InitiationSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitiationSent")
            .field("local_index", &self.local_index)
            .finish_non_exhaustive()
    }
}

/// Which additional-data entity names the initiator's user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PskEntity {
    /// CjdnsPsk (type 1), what cjdns sends and reads.
    #[default]
    Cjdns,
    /// PktmeshPsk (type 0x50): only pktmesh answers it; a stock cjdns 22.3 node drops the
    /// initiation as `AUTH_REQUIRED`.
    Pktmesh,
}

/// What the initiator puts in its initiation besides the keys.
#[derive(Debug, Clone, Default)]
pub struct InitiationParams {
    /// Password credentials (CjdnsPsk) for the peer, if it requires them.
    pub credentials: Option<Credentials>,
    /// The entity that carries the credentials' lookup.
    pub psk_entity: PskEntity,
    /// The peer's session index learnt from an earlier handshake (PrevSessIndex).
    pub prev_session_index: Option<u32>,
    /// A cookie from the peer's last cookie reply, if still fresh (gives mac2).
    pub cookie: Option<[u8; 16]>,
}

impl InitiationSent {
    /// Write an initiation to `peer` into `out`; returns the state and the length written.
    /// `local_index` must satisfy [`is_usable_index`]; `wall` is the wall-clock time since the
    /// Unix epoch (the TAI64N timestamp).
    pub fn new<R: RngCore + CryptoRng>(
        ca: &CryptoAuth,
        peer: &PublicKey,
        params: &InitiationParams,
        local_index: u32,
        wall: Duration,
        rng: &mut R,
        out: &mut [u8; MAX_INITIATION_LEN],
    ) -> Result<(Self, usize), NoiseError> {
        if !is_usable_index(local_index) {
            return Err(NoiseError::BadIndex);
        }
        let s_r = *peer.as_bytes();
        let s_i = ca.private_key().as_bytes();
        let (mut ck, mut h) = initial_chain(&s_r);
        let mut e = [0u8; 32];
        rng.fill_bytes(&mut e);
        let e_pub = public_of(&e);
        let lookup = params.credentials.as_ref().map(|c| *c.lookup());
        let additional = Additional {
            version: Some(PROTOCOL_VERSION),
            psk_lookup: lookup.filter(|_| params.psk_entity == PskEntity::Cjdns),
            pktmesh_psk: lookup.filter(|_| params.psk_entity == PskEntity::Pktmesh),
            prev_session_index: params.prev_session_index,
        };
        let mut a = [0u8; MAX_ADDITIONAL];
        let a_len = additional.encode(&mut a);
        let len = INITIATION_BASE_LEN + a_len + 16;
        out.fill(0);
        let msg = &mut out[4..len];
        msg[0] = 1;
        msg[4..8].copy_from_slice(&local_index.to_le_bytes());
        ck = kdf1(&ck, &e_pub);
        msg[8..40].copy_from_slice(&e_pub);
        h = hash(&[&h, &e_pub]);
        let (ck2, k) = kdf2(&ck, &dh(&e, &s_r).ok_or(NoiseError::WeakKey)?);
        ck = ck2;
        seal_to(&k, 0, &h, ca.public_key().as_bytes(), &mut msg[40..88]);
        h = hash(&[&h, &msg[40..88]]);
        let (ck2, k) = kdf2(&ck, &dh(s_i, &s_r).ok_or(NoiseError::WeakKey)?);
        ck = ck2;
        seal_to(&k, 0, &h, &tai64n(wall), &mut msg[88..116]);
        h = hash(&[&h, &msg[88..116]]);
        seal_to(&k, 0, &h, &a[..a_len], &mut msg[116..116 + a_len + 16]);
        let m = msg.len();
        let mac1 = mac(&hash(&[LABEL_MAC1, &s_r]), &msg[..m - 32]);
        msg[m - 32..m - 16].copy_from_slice(&mac1);
        if let Some(cookie) = &params.cookie {
            let mac2 = mac(cookie, &msg[..m - 16]);
            msg[m - 16..].copy_from_slice(&mac2);
        }
        out[..4].copy_from_slice(&CONTROL_MARKER);
        let psk = params.credentials.as_ref().map_or([0; 32], |c| *c.psk());
        Ok((
            Self {
                peer: s_r,
                psk,
                local_index,
                ephemeral: e,
                ephemeral_public: e_pub,
                ck,
                h,
                mac1,
            },
            len,
        ))
    }

    /// Our index in this handshake.
    pub fn local_index(&self) -> u32 {
        self.local_index
    }

    /// Check a response (`FF FF FF FF 02 …`, 96 bytes) and derive the transport keys.
    pub fn complete(
        &self,
        ca: &CryptoAuth,
        now: Instant,
        packet: &[u8],
    ) -> Result<Transport, NoiseError> {
        let msg = packet
            .strip_prefix(&CONTROL_MARKER)
            .ok_or(NoiseError::NotNoise)?;
        if msg.len() != RESPONSE_LEN - 4 {
            return Err(NoiseError::Truncated);
        }
        if msg[..4] != [2, 0, 0, 0] {
            return Err(NoiseError::UnexpectedMessage);
        }
        let responder_index = u32_le(msg, 4)?;
        if u32_le(msg, 8)? != self.local_index {
            return Err(NoiseError::WrongIndex);
        }
        let mac1 = mac(&hash(&[LABEL_MAC1, ca.public_key().as_bytes()]), &msg[..60]);
        if !mac_matches(&mac1, &msg[60..76]) {
            return Err(NoiseError::BadMac);
        }
        let e_r = key32(msg, 12)?;
        let mut ck = kdf1(&self.ck, &e_r);
        let mut h = hash(&[&self.h, &e_r]);
        ck = kdf1(&ck, &dh(&self.ephemeral, &e_r).ok_or(NoiseError::WeakKey)?);
        ck = kdf1(
            &ck,
            &dh(ca.private_key().as_bytes(), &e_r).ok_or(NoiseError::WeakKey)?,
        );
        let (ck, t, k) = kdf3(&ck, &self.psk);
        h = hash(&[&h, &t]);
        if !open_to(&k, 0, &h, &msg[44..60], &mut []) {
            return Err(NoiseError::Decrypt);
        }
        let (send, recv) = kdf2(&ck, &[]);
        Ok(Transport::from_handshake(
            HandshakeVerified(()),
            self.local_index,
            responder_index,
            &send,
            &recv,
            now,
            true,
        ))
    }

    /// Open a cookie reply to this initiation; returns the cookie for the next attempt's mac2.
    pub fn take_cookie(&self, packet: &[u8]) -> Result<[u8; 16], NoiseError> {
        let msg = packet
            .strip_prefix(&CONTROL_MARKER)
            .ok_or(NoiseError::NotNoise)?;
        if msg.len() != COOKIE_REPLY_LEN - 4 {
            return Err(NoiseError::Truncated);
        }
        if msg[..4] != [3, 0, 0, 0] {
            return Err(NoiseError::UnexpectedMessage);
        }
        if u32_le(msg, 4)? != self.local_index {
            return Err(NoiseError::WrongIndex);
        }
        let nonce: [u8; 24] = msg[8..32].try_into().map_err(|_| NoiseError::Truncated)?;
        let sealed: [u8; 32] = msg[32..64].try_into().map_err(|_| NoiseError::Truncated)?;
        xopen(
            &hash(&[LABEL_COOKIE, &self.peer]),
            &nonce,
            &self.mac1,
            &sealed,
        )
        .ok_or(NoiseError::Decrypt)
    }

    /// Our ephemeral public key (for tests).
    pub fn ephemeral_public(&self) -> [u8; 32] {
        self.ephemeral_public
    }
}

/// What reading an initiation with the responder's static key yields.
struct Consumed {
    initiator_index: u32,
    e_i: [u8; 32],
    s_i: [u8; 32],
    ts: [u8; 12],
    additional: Additional,
    ck: [u8; 32],
    h: [u8; 32],
}

/// One responder step: `MixKey(DH(our static, public))`, then `DecryptAndHash(sealed)` into
/// `out`. Returns the key of the step (cjdns opens the additional data with it too).
fn mix_dh_and_open(
    ck: &mut [u8; 32],
    h: &mut [u8; 32],
    ca: &CryptoAuth,
    public: &[u8; 32],
    sealed: Option<&[u8]>,
    out: &mut [u8],
) -> Result<[u8; 32], NoiseError> {
    let sealed = sealed.ok_or(NoiseError::Truncated)?;
    let shared = dh(ca.private_key().as_bytes(), public).ok_or(NoiseError::WeakKey)?;
    let (next_ck, k) = kdf2(ck, &shared);
    *ck = next_ck;
    if !open_to(&k, 0, h, sealed, out) {
        return Err(NoiseError::Decrypt);
    }
    *h = hash(&[h, sealed]);
    Ok(k)
}

/// Decrypt an initiation's static key, timestamp and additional data with the responder's
/// static key (`msg` without the marker, length already checked).
fn consume_initiation(ca: &CryptoAuth, msg: &[u8]) -> Result<Consumed, NoiseError> {
    let add_len = msg.len().saturating_sub(INITIATION_BASE_LEN - 4);
    if (1..16).contains(&add_len) || add_len > MAX_ADDITIONAL + 16 {
        return Err(NoiseError::BadAdditionalData);
    }
    let initiator_index = u32_le(msg, 4)?;
    let s_r = *ca.public_key().as_bytes();
    let (mut ck, mut h) = initial_chain(&s_r);
    let e_i = key32(msg, 8)?;
    ck = kdf1(&ck, &e_i);
    h = hash(&[&h, &e_i]);
    let mut s_i = [0u8; 32];
    mix_dh_and_open(&mut ck, &mut h, ca, &e_i, msg.get(40..88), &mut s_i)?;
    let mut ts = [0u8; 12];
    // cjdns reuses this step's key (nonce 0) for the additional data below.
    let k = mix_dh_and_open(&mut ck, &mut h, ca, &s_i, msg.get(88..116), &mut ts)?;
    let mut a = [0u8; MAX_ADDITIONAL];
    let additional = if add_len == 0 {
        Additional::default()
    } else {
        let plain = &mut a[..add_len - 16];
        let sealed = msg.get(116..116 + add_len).ok_or(NoiseError::Truncated)?;
        if !open_to(&k, 0, &h, sealed, plain) {
            return Err(NoiseError::Decrypt);
        }
        Additional::decode(plain)?
    };
    Ok(Consumed {
        initiator_index,
        e_i,
        s_i,
        ts,
        additional,
        ck,
        h,
    })
}

/// An initiation read by an observer that holds the responder's static key (a capture
/// decoder). With the initiator's ephemeral secret it becomes the initiator's
/// [`InitiationSent`], which turns the response into the session keys.
#[derive(Clone)]
pub struct ObservedInitiation {
    /// The initiator's permanent key.
    pub initiator: PublicKey,
    /// The initiator's index.
    pub initiator_index: u32,
    /// The initiator's ephemeral public key.
    pub ephemeral_public: [u8; 32],
    /// The additional data.
    pub additional: Additional,
    responder: [u8; 32],
    ck: [u8; 32],
    h: [u8; 32],
}

impl std::fmt::Debug for ObservedInitiation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedInitiation")
            .field("initiator", &self.initiator)
            .field("initiator_index", &self.initiator_index)
            .finish_non_exhaustive()
    }
}

impl ObservedInitiation {
    /// Read an initiation (`FF FF FF FF 01 …`) with the responder's context.
    pub fn open(responder: &CryptoAuth, packet: &[u8]) -> Result<Self, NoiseError> {
        let msg = packet
            .strip_prefix(&CONTROL_MARKER)
            .ok_or(NoiseError::NotNoise)?;
        if msg.len() < INITIATION_BASE_LEN - 4 || msg.len() > MAX_INITIATION_LEN - 4 {
            return Err(NoiseError::Truncated);
        }
        if msg[..4] != [1, 0, 0, 0] {
            return Err(NoiseError::UnexpectedMessage);
        }
        let c = consume_initiation(responder, msg)?;
        Ok(Self {
            initiator: PublicKey::from_bytes(c.s_i),
            initiator_index: c.initiator_index,
            ephemeral_public: c.e_i,
            additional: c.additional,
            responder: *responder.public_key().as_bytes(),
            ck: c.ck,
            h: c.h,
        })
    }

    /// The initiator's state, given its ephemeral secret (checked against the public key) and
    /// the PSK of the user its CjdnsPsk names (zero without one).
    pub fn with_ephemeral(&self, secret: &[u8; 32], psk: &[u8; 32]) -> Option<InitiationSent> {
        (public_of(secret) == self.ephemeral_public).then_some(InitiationSent {
            peer: self.responder,
            psk: *psk,
            local_index: self.initiator_index,
            ephemeral: *secret,
            ephemeral_public: self.ephemeral_public,
            ck: self.ck,
            h: self.h,
            mac1: [0; 16],
        })
    }
}

/// A handshake the responder accepted.
#[derive(Debug)]
pub struct Accepted {
    /// The session (the responder may send once the initiator's first data packet arrives).
    pub transport: Transport,
    /// The initiator's permanent key.
    pub peer: PublicKey,
    /// The initiator's additional data.
    pub additional: Additional,
    /// The login of the user whose CjdnsPsk (or PktmeshPsk) matched, if any.
    pub login: Option<Vec<u8>>,
    /// The credentials the handshake used (the matched user's, or the known session's), if
    /// any: what this side names in handshakes it starts on the same link.
    pub credentials: Option<Credentials>,
    /// Whether the handshake belongs to an existing session or starts a new one.
    pub attach: Attach,
    /// The response to send (`FF FF FF FF 02 …`).
    pub response: [u8; RESPONSE_LEN],
}

/// An existing Noise session of this node that a new handshake may be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownSession<'a> {
    /// Its cjdns session index (our Noise index >> 8), what a peer sends as PrevSessIndex.
    pub session_index: u32,
    /// The link address it lives on, in the same byte form as `src` of
    /// [`Responder::handle_initiation_in`].
    pub link: &'a [u8],
    /// The peer's permanent key.
    pub peer: PublicKey,
    /// The credentials of the session's own handshakes (a link we connected with a
    /// password, or one accepted with a user's): a handshake that attaches to this session
    /// and names their lookup uses their PSK, whether or not the lookup is one of our users
    /// (the peer may start a re-key with the password we use to reach it).
    pub credentials: Option<&'a Credentials>,
}

/// Where the responder placed an accepted handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// No existing session matched: the handshake starts a new session.
    New,
    /// The handshake re-keys the existing session with this cjdns session index.
    Existing(u32),
}

/// Place a handshake from `peer` arriving at link address `src` among `sessions`.
///
/// The link address decides first: a session on `src` with the same key is the one (the
/// PrevSessIndex is then ignored, so a wrong index sent by a cjdns 22.3 node, digest §6.3.5,
/// never moves the handshake elsewhere); a session on `src` with another key is
/// `WRONG_PERM_PUBKEY`. Otherwise PrevSessIndex, as 22.3 uses it: naming a session of the
/// same key attaches to it (the peer moved to a new address), naming one of another key is
/// `WRONG_PERM_PUBKEY`, naming none is ignored.
fn place<'a>(
    sessions: &[KnownSession<'a>],
    src: &[u8],
    peer: &PublicKey,
    prev_session_index: Option<u32>,
) -> Result<(Attach, Option<&'a Credentials>), NoiseError> {
    if let Some(s) = sessions.iter().find(|s| s.link == src) {
        return if s.peer == *peer {
            Ok((Attach::Existing(s.session_index), s.credentials))
        } else {
            Err(NoiseError::WrongPermPubkey)
        };
    }
    let named = prev_session_index.and_then(|i| sessions.iter().find(|s| s.session_index == i));
    match named {
        Some(s) if s.peer == *peer => Ok((Attach::Existing(s.session_index), s.credentials)),
        Some(_) => Err(NoiseError::WrongPermPubkey),
        None => Ok((Attach::New, None)),
    }
}

/// An initiation that passed [`Responder::screen`]: right type and length, valid mac1.
#[derive(Debug, Clone, Copy)]
pub struct Screened<'a> {
    /// The message without the marker.
    msg: &'a [u8],
}

impl Screened<'_> {
    /// The initiator's index (`sender_idx`), in clear.
    pub fn initiator_index(&self) -> u32 {
        u32::from_le_bytes([self.msg[4], self.msg[5], self.msg[6], self.msg[7]])
    }
}

/// What the responder does with an initiation.
#[derive(Debug)]
pub enum InitiationOutcome {
    /// Accepted: send the response.
    Accept(Box<Accepted>),
    /// Under load and without a valid mac2: send this cookie reply and create nothing.
    CookieReply([u8; COOKIE_REPLY_LEN]),
}

/// The node-global responder: mac1/cookie gate, rate limiting and timestamp replay check.
#[derive(Clone)]
pub struct Responder {
    ca: Arc<CryptoAuth>,
    mac1_key: [u8; 32],
    cookie_key: [u8; 32],
    cookie_secret: [u8; 32],
    cookie_secret_born: Option<Instant>,
    limit_per_second: u32,
    window_start: Option<Instant>,
    in_window: u32,
    /// The last initiation timestamp of each static key, and when it was accepted.
    timestamps: HashMap<[u8; 32], ([u8; 12], Instant)>,
    last_prune: Option<Instant>,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("limit_per_second", &self.limit_per_second)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// A responder for node `ca` that answers up to `limit_per_second` initiations per second
    /// without cookies (the budget refills every second; cjdns 22.3 never refills it).
    pub fn new(ca: Arc<CryptoAuth>, limit_per_second: u32) -> Self {
        let s_r = *ca.public_key().as_bytes();
        Self {
            ca,
            mac1_key: hash(&[LABEL_MAC1, &s_r]),
            cookie_key: hash(&[LABEL_COOKIE, &s_r]),
            cookie_secret: [0; 32],
            cookie_secret_born: None,
            limit_per_second,
            window_start: None,
            in_window: 0,
            timestamps: HashMap::new(),
            last_prune: None,
        }
    }

    fn cookie_for<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        src: &[u8],
    ) -> [u8; 16] {
        let fresh = self
            .cookie_secret_born
            .is_some_and(|b| now.saturating_duration_since(b) < COOKIE_LIFETIME);
        if !fresh {
            rng.fill_bytes(&mut self.cookie_secret);
            self.cookie_secret_born = Some(now);
        }
        mac(&self.cookie_secret, src)
    }

    fn under_load(&mut self, now: Instant) -> bool {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= Duration::from_secs(1) {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
        self.in_window > self.limit_per_second
    }

    /// Records `ts` as the last timestamp of `key`. Keys with no session in `sessions` are
    /// forgotten after [`TIMESTAMP_MEMORY`] (looked for every [`PRUNE_EVERY`]), and at most
    /// [`MAX_REMEMBERED_KEYS`] are kept: a full map forgets the key heard from longest ago,
    /// one without a session if there is one.
    fn remember(
        &mut self,
        now: Instant,
        key: [u8; 32],
        ts: [u8; 12],
        sessions: &[KnownSession<'_>],
    ) {
        let live: HashSet<[u8; 32]> = sessions.iter().map(|s| *s.peer.as_bytes()).collect();
        if self
            .last_prune
            .is_none_or(|t| now.saturating_duration_since(t) >= PRUNE_EVERY)
        {
            self.timestamps.retain(|k, (_, seen)| {
                live.contains(k) || now.saturating_duration_since(*seen) < TIMESTAMP_MEMORY
            });
            self.last_prune = Some(now);
        }
        if !self.timestamps.contains_key(&key) && self.timestamps.len() >= MAX_REMEMBERED_KEYS {
            let oldest = |with_session: bool| {
                self.timestamps
                    .iter()
                    .filter(|(k, _)| with_session || !live.contains(*k))
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(k, _)| *k)
            };
            if let Some(victim) = oldest(false).or_else(|| oldest(true)) {
                self.timestamps.remove(&victim);
            }
        }
        self.timestamps.insert(key, (ts, now));
    }

    /// Use `ca` from now on (the same node key with the users added since), keeping the
    /// replay memory and the cookie secret.
    pub fn set_context(&mut self, ca: Arc<CryptoAuth>) {
        debug_assert_eq!(ca.public_key(), self.ca.public_key(), "same node key");
        self.ca = ca;
    }

    /// How many static keys the replay check remembers.
    pub fn remembered_keys(&self) -> usize {
        self.timestamps.len()
    }

    /// Handle an initiation (`FF FF FF FF 01 …`) from link address `src` (any stable byte
    /// form, used for cookies). `local_index` is the index we will use if we accept; with
    /// `require_auth`, an initiation without a known CjdnsPsk is refused. No existing session
    /// is consulted (the result is always [`Attach::New`]); see
    /// [`Responder::handle_initiation_in`].
    pub fn handle_initiation<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        src: &[u8],
        packet: &[u8],
        local_index: u32,
        require_auth: bool,
    ) -> Result<InitiationOutcome, NoiseError> {
        self.handle_initiation_in(now, rng, src, packet, &[], require_auth, |_| local_index)
    }

    /// Handle an initiation like [`Responder::handle_initiation`], placing it among the
    /// node's existing `sessions` by link address, static key and the PrevSessIndex hint
    /// (see [`Attach`]): a PrevSessIndex or link address belonging to another permanent key is
    /// [`NoiseError::WrongPermPubkey`] (after the CjdnsPsk checks, before the IP restriction,
    /// as in cjdns 22.3). `local_index` gives the index to use for the chosen placement; it
    /// must satisfy [`is_usable_index`]. The same as [`Responder::screen`] then
    /// [`Responder::answer`].
    #[allow(clippy::too_many_arguments)]
    pub fn handle_initiation_in<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        src: &[u8],
        packet: &[u8],
        sessions: &[KnownSession<'_>],
        require_auth: bool,
        local_index: impl FnOnce(Attach) -> u32,
    ) -> Result<InitiationOutcome, NoiseError> {
        let screened = self.screen(packet)?;
        self.answer(now, rng, src, screened, sessions, require_auth, local_index)
    }

    /// The checks of an initiation (`FF FF FF FF 01 …`) that cost no X25519: its type, its
    /// length and mac1. Changes nothing; what passes is worth a handshake budget's token
    /// before [`Responder::answer`] spends X25519s on it.
    pub fn screen<'a>(&self, packet: &'a [u8]) -> Result<Screened<'a>, NoiseError> {
        let msg = packet
            .strip_prefix(&CONTROL_MARKER)
            .ok_or(NoiseError::NotNoise)?;
        if msg.len() < INITIATION_BASE_LEN - 4 || msg.len() > MAX_INITIATION_LEN - 4 {
            return Err(NoiseError::Truncated);
        }
        if msg[..4] != [1, 0, 0, 0] {
            return Err(NoiseError::UnexpectedMessage);
        }
        let add_len = msg.len() - (INITIATION_BASE_LEN - 4);
        if (1..16).contains(&add_len) {
            return Err(NoiseError::BadAdditionalData);
        }
        let m = msg.len();
        if !mac_matches(&mac(&self.mac1_key, &msg[..m - 32]), &msg[m - 32..m - 16]) {
            return Err(NoiseError::BadMac);
        }
        Ok(Screened { msg })
    }

    /// Answer a [`Responder::screen`]ed initiation from `src`: under load (more than the
    /// per-second limit this second) and without a valid mac2, a cookie reply; otherwise it
    /// is opened (the X25519s) and checked as [`Responder::handle_initiation_in`] says.
    #[allow(clippy::too_many_arguments)]
    pub fn answer<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        rng: &mut R,
        src: &[u8],
        screened: Screened<'_>,
        sessions: &[KnownSession<'_>],
        require_auth: bool,
        local_index: impl FnOnce(Attach) -> u32,
    ) -> Result<InitiationOutcome, NoiseError> {
        let msg = screened.msg;
        let m = msg.len();
        if self.under_load(now) {
            let cookie = self.cookie_for(now, rng, src);
            if !mac_matches(&mac(&cookie, &msg[..m - 16]), &msg[m - 16..]) {
                let mut reply = [0u8; COOKIE_REPLY_LEN];
                reply[..4].copy_from_slice(&CONTROL_MARKER);
                reply[4] = 3;
                reply[8..12].copy_from_slice(&msg[4..8]);
                let mut nonce = [0u8; 24];
                rng.fill_bytes(&mut nonce);
                reply[12..36].copy_from_slice(&nonce);
                let mac1: [u8; 16] = msg[m - 32..m - 16]
                    .try_into()
                    .map_err(|_| NoiseError::Truncated)?;
                reply[36..68].copy_from_slice(&xseal(&self.cookie_key, &nonce, &mac1, &cookie));
                return Ok(InitiationOutcome::CookieReply(reply));
            }
        }
        let Consumed {
            initiator_index,
            e_i,
            s_i,
            ts,
            additional,
            mut ck,
            mut h,
        } = consume_initiation(&self.ca, msg)?;
        let peer = PublicKey::from_bytes(s_i);
        if peer == *self.ca.public_key() {
            return Err(NoiseError::OwnKey);
        }
        // Authentication: a user of ours, or the credentials of the session the handshake
        // attaches to.
        let lookup = additional.user_lookup()?;
        let placed = place(sessions, src, &peer, additional.prev_session_index);
        let own = match (&placed, &lookup) {
            (Ok((_, Some(c))), Some(l)) if c.lookup() == l => Some(*c),
            _ => None,
        };
        let user = match &lookup {
            _ if own.is_some() => None,
            Some(l) => Some(
                self.ca
                    .find_noise_user(l)
                    .ok_or(NoiseError::UnrecognizedAuth)?,
            ),
            None if require_auth => return Err(NoiseError::AuthRequired),
            None => None,
        };
        let (attach, _) = placed?;
        if let Some(ip) = user.and_then(|u| u.restricted_to()) {
            if ip != peer.address() {
                return Err(NoiseError::IpRestricted);
            }
        }
        let credentials = own.or(user.map(|u| u.noise())).cloned();
        let psk = credentials.as_ref().map_or([0; 32], |c| *c.psk());
        let login = user.map(|u| u.login().to_vec());
        // Replayed initiations carry an old timestamp.
        if self
            .timestamps
            .get(&s_i)
            .is_some_and(|(last, _)| ts <= *last)
        {
            return Err(NoiseError::Replay);
        }
        let local_index = local_index(attach);
        if !is_usable_index(local_index) {
            return Err(NoiseError::BadIndex);
        }
        // Response.
        let mut e = [0u8; 32];
        rng.fill_bytes(&mut e);
        let e_r = public_of(&e);
        let mut response = [0u8; RESPONSE_LEN];
        response[..4].copy_from_slice(&CONTROL_MARKER);
        let out = &mut response[4..];
        out[0] = 2;
        out[4..8].copy_from_slice(&local_index.to_le_bytes());
        out[8..12].copy_from_slice(&initiator_index.to_le_bytes());
        out[12..44].copy_from_slice(&e_r);
        ck = kdf1(&ck, &e_r);
        h = hash(&[&h, &e_r]);
        ck = kdf1(&ck, &dh(&e, &e_i).ok_or(NoiseError::WeakKey)?);
        ck = kdf1(&ck, &dh(&e, &s_i).ok_or(NoiseError::WeakKey)?);
        let (ck, t, k) = kdf3(&ck, &psk);
        h = hash(&[&h, &t]);
        seal_to(&k, 0, &h, &[], &mut out[44..60]);
        let mac1 = mac(&hash(&[LABEL_MAC1, &s_i]), &out[..60]);
        out[60..76].copy_from_slice(&mac1);
        let (recv, send) = kdf2(&ck, &[]);
        self.remember(now, s_i, ts, sessions);
        let transport = Transport::from_handshake(
            HandshakeVerified(()),
            local_index,
            initiator_index,
            &send,
            &recv,
            now,
            false,
        );
        Ok(InitiationOutcome::Accept(Box::new(Accepted {
            transport,
            peer,
            additional,
            login,
            credentials,
            attach,
            response,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;

    fn responder() -> Responder {
        let ca = CryptoAuth::new(PrivateKey::from_bytes([7; 32]));
        Responder::new(Arc::new(ca), 10)
    }

    fn key(i: usize) -> [u8; 32] {
        let mut k = [0u8; 32];
        k[..8].copy_from_slice(&(i as u64).to_le_bytes());
        k
    }

    #[test]
    fn keys_without_a_session_are_forgotten_after_the_memory() {
        let mut r = responder();
        let t0 = Instant::now();
        let with_session = key(1);
        let link = b"10.0.0.1:1".as_slice();
        let sessions = [KnownSession {
            session_index: 1,
            link,
            peer: PublicKey::from_bytes(with_session),
            credentials: None,
        }];
        r.remember(t0, with_session, [1; 12], &sessions);
        r.remember(t0, key(2), [1; 12], &sessions);
        assert_eq!(r.remembered_keys(), 2);
        // Within the memory nothing is forgotten; past it, the key without a session is.
        let later = t0 + TIMESTAMP_MEMORY - Duration::from_secs(1);
        r.remember(later, key(3), [1; 12], &sessions);
        assert_eq!(r.remembered_keys(), 3);
        let much_later = t0 + TIMESTAMP_MEMORY + PRUNE_EVERY;
        r.remember(much_later, key(4), [1; 12], &sessions);
        assert!(
            r.timestamps.contains_key(&with_session),
            "a live session's key stays"
        );
        assert!(!r.timestamps.contains_key(&key(2)), "forgotten");
        assert!(r.timestamps.contains_key(&key(3)) && r.timestamps.contains_key(&key(4)));
    }

    #[test]
    fn a_full_map_forgets_the_oldest_key_without_a_session() {
        let mut r = responder();
        let t0 = Instant::now();
        let link = b"10.0.0.1:1".as_slice();
        let sessions = [KnownSession {
            session_index: 1,
            link,
            peer: PublicKey::from_bytes(key(0)),
            credentials: None,
        }];
        for i in 0..MAX_REMEMBERED_KEYS {
            r.remember(
                t0 + Duration::from_millis(i as u64),
                key(i),
                [0; 12],
                &sessions,
            );
        }
        assert_eq!(r.remembered_keys(), MAX_REMEMBERED_KEYS);
        let t = t0 + Duration::from_secs(30);
        r.remember(t, key(MAX_REMEMBERED_KEYS), [0; 12], &sessions);
        assert_eq!(r.remembered_keys(), MAX_REMEMBERED_KEYS, "capped");
        assert!(r.timestamps.contains_key(&key(0)), "key 0 has a session");
        assert!(
            !r.timestamps.contains_key(&key(1)),
            "oldest without a session"
        );
        // A key already known is updated in place, evicting nothing.
        r.remember(t, key(5), [9; 12], &sessions);
        assert_eq!(r.remembered_keys(), MAX_REMEMBERED_KEYS);
        assert_eq!(r.timestamps[&key(5)].0, [9; 12]);
    }

    #[test]
    fn mac_comparison_is_exact() {
        let m = [5u8; 16];
        assert!(mac_matches(&m, &[5; 16]));
        let mut other = [5u8; 16];
        other[15] = 4;
        assert!(!mac_matches(&m, &other));
        assert!(!mac_matches(&m, &[5; 15]), "a short slice never matches");
    }
}
