//! Noise sessions: WireGuard's `Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s` in the framing cjdns
//! 22.x uses on peer links (digest §6.3), sans-IO.
//!
//! * [`handshake`]: initiation / response / cookie reply, the CjdnsPsk password entity, the
//!   mac1 → cookie → rate-limit gate that runs before any X25519.
//! * [`transport`]: established sessions, `receiver_idx ‖ counter(4) ‖ ciphertext ‖ tag` data
//!   packets and the 1024-packet replay window.
//! * [`additional`]: the cjdns additional-data entities and PSK derivation.
//! * [`link`]: a peer link that prefers Noise and falls back to legacy CryptoAuth when the
//!   peer does not answer Noise.
//!
//! Not reproduced from cjdns 22.3 (§6.3.5): the response index swap and the never-refilled
//! handshake rate limiter.

pub mod additional;
mod crypto;
pub mod handshake;
pub mod link;
pub mod transport;

pub use additional::{Additional, Credentials};
pub use handshake::{
    index_for_cjdns_initiator, is_usable_index, Accepted, Attach, InitiationOutcome,
    InitiationParams, InitiationSent, KnownSession, ObservedInitiation, PskEntity, Responder,
    Screened,
};
pub use link::{Link, LinkAuth, LinkEvent, LinkMode};
pub use transport::Transport;

use thiserror::Error;

/// Why a Noise message was rejected. A rejected message changes no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// Not a Noise message (no `FFFFFFFF` marker).
    #[error("not a Noise handshake message")]
    NotNoise,
    /// Shorter (or longer) than its type requires.
    #[error("truncated or oversized Noise message")]
    Truncated,
    /// A handshake message of a type that is not expected here.
    #[error("unexpected Noise message type")]
    UnexpectedMessage,
    /// The index does not name this session.
    #[error("index does not match the session")]
    WrongIndex,
    /// mac1 did not verify.
    #[error("bad mac1")]
    BadMac,
    /// An AEAD did not authenticate.
    #[error("authenticated decryption failed")]
    Decrypt,
    /// Replayed data counter or initiation timestamp.
    #[error("replay")]
    Replay,
    /// The additional data is malformed.
    #[error("malformed additional data")]
    BadAdditionalData,
    /// The CjdnsPsk (or PktmeshPsk) names no configured user.
    #[error("UNRECOGNIZED_AUTH: the CjdnsPsk or PktmeshPsk names no user")]
    UnrecognizedAuth,
    /// Authentication is required and the initiation has no CjdnsPsk.
    #[error("authentication required")]
    AuthRequired,
    /// The initiation's PrevSessIndex names an existing session of another permanent key, or
    /// its link address belongs to a session of another key (cjdns `WRONG_PERM_PUBKEY`, code 6).
    #[error("WRONG_PERM_PUBKEY: handshake from a different permanent key")]
    WrongPermPubkey,
    /// The matched user is restricted to another peer address.
    #[error("user restricted to another peer address")]
    IpRestricted,
    /// The initiation names our own key.
    #[error("initiation from our own key")]
    OwnKey,
    /// A key of low order (all-zero X25519 result).
    #[error("low-order key")]
    WeakKey,
    /// The local index would be mistaken for a legacy word on the wire.
    #[error("unusable local index")]
    BadIndex,
    /// The keys are too old or the counter is exhausted: handshake again.
    #[error("session expired")]
    Expired,
    /// The responder may not send before the initiator's first data packet.
    #[error("session not yet confirmed by the initiator")]
    NotConfirmed,
    /// The caller's buffer is too small.
    #[error("buffer too small")]
    BufferTooSmall,
}
