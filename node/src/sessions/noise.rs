//! Noise end to end between pktmesh nodes: an upgrade of a legacy CryptoAuth session, never a
//! replacement for it (`docs/node.md`, "Noise end to end").
//!
//! Stock cjdns 22.3 runs only legacy CryptoAuth end to end, and its session layer drops a
//! packet whose first word is neither a handshake word nor one of its handles without a word
//! back. So a pktmesh node that *started* a legacy session sends, once that session is
//! established, one Noise initiation framed behind [`NOISE_MARKER`]: a stock node drops it, a
//! pktmesh node answers. The initiator then seals with Noise at once; the responder does so once
//! the initiator's first Noise packet (the empty keepalive sent right after the response)
//! opened. A node that never answers keeps legacy: after [`PROBE_ATTEMPTS`] unanswered
//! initiations the session is [`Probe::LegacyOnly`] for as long as it lives.
//!
//! Wire, after the switch header:
//! - handshake: `[FF FF FF FE][sender's permanent key, 32][FF FF FF FF][WireGuard message]`:
//!   the message is the links' Noise handshake (`Noise_IKpsk2`, PSK all zero, the additional data
//!   carrying only the protocol version); the key travels in clear, as in a legacy HELLO, so the
//!   receiving node finds the session's shard and refuses a key with no established session
//!   before any X25519;
//! - data: `[receive handle | 0x8000_0000, BE][counter, u32 LE][ciphertext][tag, 16]`: the
//!   links' Noise transport, whose index is the receiver's legacy handle with the top bit set
//!   (cjdns handles stay below 2^31), so one lookup finds the session.
//!
//! The Noise keys belong to the legacy handshake they were made under (its
//! [`Session::generation`]): when the legacy session is renewed or reset, they are dropped and
//! the legacy initiator probes again. The initiator re-keys when its keys are
//! [`REKEY_AFTER_TIME`] old; keys older than [`REJECT_AFTER_TIME`] are never used, so a re-key
//! that fails falls back to legacy, not to silence. Sans-IO: every function takes `now`.

use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{CryptoAuth, Session};
use pktmesh_crypto_auth::noise::handshake::{CONTROL_MARKER, MAX_INITIATION_LEN, RESPONSE_LEN};
use pktmesh_crypto_auth::noise::transport::{
    DATA_HEADER, DATA_TAG, REJECT_AFTER_TIME, REKEY_AFTER_TIME,
};
use pktmesh_crypto_auth::noise::{InitiationParams, InitiationSent, NoiseError, Transport};
use pktmesh_crypto_auth::PublicKey;
use rand_core::{CryptoRng, RngCore};

use crate::packet::PacketBuf;

/// First word of an end-to-end Noise handshake message (never a cjdns handle or handshake
/// word, and not the switch's control marker `FFFFFFFF`).
pub(crate) const NOISE_MARKER: u32 = 0xFFFF_FFFE;
/// Set in the first word of an end-to-end Noise data packet: the rest is the receiver's handle.
pub(crate) const NOISE_HANDLE_BIT: u32 = 0x8000_0000;
/// Bytes in front of the WireGuard message in a handshake packet (marker and key).
pub(crate) const CONTROL_PREFIX: usize = 4 + 32;
/// An unanswered initiation is sent again after this long.
pub(crate) const PROBE_RETRY: Duration = Duration::from_secs(2);
/// Unanswered initiations before a session stays legacy.
pub(crate) const PROBE_ATTEMPTS: u8 = 2;

/// Whether the initiator still asks its peer for Noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Not asked yet (or the keys were dropped with their legacy handshake).
    Idle,
    /// `attempts` initiations sent, the last at `at`.
    Sent {
        /// When the last went out.
        at: Instant,
        /// How many went out without an answer.
        attempts: u8,
    },
    /// The peer never answered: legacy for as long as the session lives.
    LegacyOnly,
}

/// The Noise side of one end-to-end session.
#[derive(Debug)]
pub(crate) struct SessionNoise {
    probe: Probe,
    /// Our unanswered initiation.
    pending: Option<InitiationSent>,
    /// The newest keys (a responder's are unconfirmed until the initiator's data opens).
    current: Option<Transport>,
    /// The keys before, kept for packets in flight and while `current` is unconfirmed.
    previous: Option<Transport>,
    /// The legacy handshake (its generation) the keys were made under.
    generation: u64,
}

impl Default for SessionNoise {
    fn default() -> Self {
        Self {
            probe: Probe::Idle,
            pending: None,
            current: None,
            previous: None,
            generation: 0,
        }
    }
}

/// The Noise index of a session whose legacy receive handle is `handle`: its wire bytes (the
/// transport writes indexes little-endian) read big-endian are `handle | NOISE_HANDLE_BIT`.
pub(crate) fn noise_index(handle: u32) -> u32 {
    u32::from_le_bytes((handle | NOISE_HANDLE_BIT).to_be_bytes())
}

/// Whether the first word after the switch header is a Noise data packet's, and its handle.
pub(crate) fn data_handle(word: u32) -> Option<u32> {
    (word & NOISE_HANDLE_BIT != 0 && word < NOISE_MARKER).then_some(word & !NOISE_HANDLE_BIT)
}

/// The sender's key of a handshake packet (`[marker][key][message]`, without the switch
/// header), if it is one.
pub(crate) fn control_sender(packet: &[u8]) -> Option<PublicKey> {
    let (marker, rest) = packet.split_first_chunk::<4>()?;
    if u32::from_be_bytes(*marker) != NOISE_MARKER {
        return None;
    }
    rest.first_chunk::<32>().map(|k| PublicKey::from_bytes(*k))
}

/// The WireGuard message of a handshake packet (with its `FF FF FF FF` marker).
pub(crate) fn control_message(packet: &[u8]) -> Option<&[u8]> {
    packet.get(CONTROL_PREFIX..)
}

/// Writes `[marker][our key][message]` into a fresh buffer.
fn control_packet(our_key: &PublicKey, message: &[u8]) -> PacketBuf {
    let mut out = [0u8; CONTROL_PREFIX + MAX_INITIATION_LEN];
    out[..4].copy_from_slice(&NOISE_MARKER.to_be_bytes());
    out[4..CONTROL_PREFIX].copy_from_slice(our_key.as_bytes());
    let n = message.len().min(MAX_INITIATION_LEN);
    out[CONTROL_PREFIX..CONTROL_PREFIX + n].copy_from_slice(&message[..n]);
    PacketBuf::from_slice(&out[..CONTROL_PREFIX + n])
}

impl SessionNoise {
    fn usable(t: &Transport, now: Instant) -> bool {
        t.is_confirmed() && now.saturating_duration_since(t.born()) < REJECT_AFTER_TIME
    }

    /// Whether the keys belong to the legacy handshake in force (and that one is up).
    fn keys_in_force(&self, legacy: &Session) -> bool {
        legacy.is_established() && legacy.generation() == self.generation
    }

    /// The keys that seal now: the newest usable of current and previous.
    fn sender(&mut self, now: Instant, legacy: &Session) -> Option<&mut Transport> {
        if !self.keys_in_force(legacy) {
            return None;
        }
        [self.current.as_mut(), self.previous.as_mut()]
            .into_iter()
            .flatten()
            .find(|t| Self::usable(t, now))
    }

    /// Seals `[DataHeader][payload]` in place as a Noise data packet, if the session sends
    /// under Noise now; `false` leaves the buffer untouched.
    pub(crate) fn seal(&mut self, now: Instant, legacy: &Session, buf: &mut PacketBuf) -> bool {
        let Some(t) = self.sender(now, legacy) else {
            return false;
        };
        if buf.headroom() < DATA_HEADER || buf.push_back(DATA_TAG).is_none() {
            return false;
        }
        buf.push_front(DATA_HEADER);
        if t.encrypt(now, buf.data_mut()).is_err() {
            // Not reached (checked above); the buffer is garbage now either way.
            return false;
        }
        true
    }

    /// Opens a Noise data packet (`[index][counter][ciphertext][tag]`) in place; `Ok(true)`:
    /// the buffer holds `[DataHeader][payload]`; `Ok(false)`: a keepalive (nothing to deliver).
    pub(crate) fn open(&mut self, now: Instant, buf: &mut PacketBuf) -> Result<bool, NoiseError> {
        // Newest keys first; a packet in flight from before a re-key opens under the old ones.
        let mut result = Err(NoiseError::Decrypt);
        for t in [&mut self.current, &mut self.previous]
            .into_iter()
            .flatten()
        {
            match t.decrypt(now, buf.data_mut()) {
                Ok(body) => {
                    result = Ok(body.len());
                    break;
                }
                // Report why it failed (replay, expiry) rather than a bare decrypt failure.
                Err(e) if e != NoiseError::Decrypt => result = Err(e),
                Err(_) => {}
            }
        }
        let body = result?;
        buf.advance(DATA_HEADER);
        buf.truncate(body);
        Ok(body > 0)
    }

    /// An initiation to send now, if this session should ask (again) for Noise: we started
    /// the legacy session, it is established, and the peer has not said no, or our keys want
    /// renewing. `our_index` is [`noise_index`] of our handle.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn poll_initiation<R: RngCore + CryptoRng>(
        &mut self,
        now: Instant,
        wall: Duration,
        ca: &CryptoAuth,
        legacy: &Session,
        our_index: u32,
        rng: &mut R,
    ) -> Option<PacketBuf> {
        if legacy.generation() != self.generation {
            // A new legacy handshake: the peer may be a new process; keys and answers are stale.
            *self = Self {
                generation: legacy.generation(),
                ..Self::default()
            };
        }
        if !legacy.is_established() || !legacy.is_initiator() {
            return None;
        }
        let renew = self.current.as_ref().is_some_and(|t| {
            t.is_initiator() && now.saturating_duration_since(t.born()) >= REKEY_AFTER_TIME
        });
        let attempts = match self.probe {
            Probe::LegacyOnly => return None,
            Probe::Idle if self.current.is_none() || renew => 0,
            Probe::Idle => return None,
            Probe::Sent { at, attempts } => {
                if now.saturating_duration_since(at) < PROBE_RETRY {
                    return None;
                }
                if attempts >= PROBE_ATTEMPTS {
                    self.pending = None;
                    self.probe = if self.current.is_some() {
                        Probe::Idle // a re-key went unanswered: keep trying at the next age check
                    } else {
                        Probe::LegacyOnly
                    };
                    return None;
                }
                attempts
            }
        };
        let mut out = [0u8; MAX_INITIATION_LEN];
        let params = InitiationParams::default();
        let (sent, n) =
            InitiationSent::new(ca, legacy.peer(), &params, our_index, wall, rng, &mut out).ok()?;
        self.pending = Some(sent);
        self.probe = Probe::Sent {
            at: now,
            attempts: attempts + 1,
        };
        Some(control_packet(ca.public_key(), &out[..n]))
    }

    /// The peer's response to our initiation: the new keys send from now on. Returns the
    /// empty keepalive that confirms them to the peer.
    pub(crate) fn complete(
        &mut self,
        now: Instant,
        ca: &CryptoAuth,
        message: &[u8],
    ) -> Result<PacketBuf, NoiseError> {
        if message.len() != RESPONSE_LEN {
            return Err(NoiseError::Truncated);
        }
        let sent = self.pending.as_ref().ok_or(NoiseError::UnexpectedMessage)?;
        let mut transport = sent.complete(ca, now, message)?;
        self.pending = None;
        self.probe = Probe::Idle;
        let mut keepalive = PacketBuf::new();
        keepalive.push_back(DATA_HEADER + DATA_TAG);
        transport.encrypt(now, keepalive.data_mut())?;
        self.previous = self.current.replace(transport);
        Ok(keepalive)
    }

    /// Keys the peer's initiation made (we responded): they send once the peer's data opens
    /// under them; until then the keys before (if any) keep sending.
    pub(crate) fn install(&mut self, transport: Transport, generation: u64) {
        if generation != self.generation {
            *self = Self {
                generation,
                ..Self::default()
            };
        }
        self.previous = self.current.replace(transport);
    }

    /// Whether the session has Noise keys that send (or will, once the peer's data opens),
    /// made under the legacy handshake in force: what the admin API reports as `noiseProto`.
    pub(crate) fn is_active(&self, legacy: &Session) -> bool {
        legacy.is_established() && legacy.generation() == self.generation && self.current.is_some()
    }
}

/// A response packet (`[marker][our key][response]`) for the peer.
pub(crate) fn response_packet(our_key: &PublicKey, response: &[u8]) -> PacketBuf {
    control_packet(our_key, response)
}

/// Whether `message` (after the prefix) is a WireGuard message of `kind` (1 initiation,
/// 2 response).
pub(crate) fn message_kind(message: &[u8]) -> Option<u8> {
    let rest = message.strip_prefix(&CONTROL_MARKER)?;
    match rest.first_chunk::<4>()? {
        [k @ 1..=3, 0, 0, 0] => Some(*k),
        _ => None,
    }
}
