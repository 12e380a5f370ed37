//! Error types of the session layer.
//!
//! [`DecryptError`] mirrors cjdns's `Ca_DecryptErr` one-to-one (codes 1–16; 0 = "no error" is
//! `Ok`), because the code travels on the wire inside `AUTHENTICATION` switch errors. The
//! variants say who is at fault: malformed input (`Runt`), a peer breaking the protocol
//! (`StrayKey`, `InvalidPacket`, `Wiseguy`, `Replay`), failed authentication (`Decrypt`,
//! `HandshakeDecryptFailed`, `AuthRequired`, `UnrecognizedAuth`, `IpRestricted`,
//! `WrongPermPubkey`) or a session that is not in a state to take the packet (`NoSession`,
//! `KeyPktEstablishedSession`). All of them are zero-sized `Copy` values: cheap on the hot path.

use thiserror::Error;

/// Why an incoming legacy CryptoAuth packet was rejected (cjdns `Ca_DecryptErr`, codes 1–16).
///
/// A rejected packet never changes the session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// Packet too short (< 20 bytes).
    #[error("RUNT: packet too short")]
    Runt,
    /// A data packet arrived before any handshake was exchanged.
    #[error("NO_SESSION: data packet for a session that is not set up")]
    NoSession,
    /// Final handshake step failed (code kept for completeness; 22.3 reports `DECRYPT`).
    #[error("FINAL_HANDSHAKE_FAIL")]
    FinalShakeFail,
    /// Data packet failed to decrypt (code kept for completeness; 22.3 reports `DECRYPT`).
    #[error("FAILED_DECRYPT_RUN_MSG")]
    FailedDecryptRunMsg,
    /// A KEY or REPEAT KEY arrived on an established session.
    #[error("KEY_PKT_ESTABLISHED_SESSION: key packet on an established session")]
    KeyPktEstablishedSession,
    /// The permanent public key in the handshake is not this session's peer.
    #[error("WRONG_PERM_PUBKEY: handshake from a different permanent key")]
    WrongPermPubkey,
    /// The matched user is restricted to another peer IPv6 address.
    #[error("IP_RESTRICTED: user is restricted to another peer address")]
    IpRestricted,
    /// The session requires authentication and the packet carries none that matches.
    #[error("AUTH_REQUIRED: authentication required")]
    AuthRequired,
    /// The packet names an auth type or login/password lookup that is not configured.
    #[error("UNRECOGNIZED_AUTH: unknown login or password")]
    UnrecognizedAuth,
    /// A KEY packet arrived although this side did not send a HELLO.
    #[error("STRAY_KEY: key packet in a state that does not expect one")]
    StrayKey,
    /// The box of a handshake packet did not authenticate.
    #[error("HANDSHAKE_DECRYPT_FAILED: handshake packet failed to decrypt")]
    HandshakeDecryptFailed,
    /// The handshake carried an all-zero temporary key.
    #[error("WISEGUY: zero temporary public key")]
    Wiseguy,
    /// Duplicate HELLO/KEY, or a REPEAT packet whose temporary key does not fit the session.
    #[error("INVALID_PACKET: duplicate or inconsistent handshake packet")]
    InvalidPacket,
    /// The data packet authenticated but its nonce was already seen or is out of the window.
    #[error("REPLAY: duplicate or too old nonce")]
    Replay,
    /// The data packet did not authenticate.
    #[error("DECRYPT: authenticated decryption failed")]
    Decrypt,
    /// Internal consistency failure (22.3 also reports a handshake packet shorter than its
    /// 120-byte header with this code).
    #[error("INTERNAL: internal error or truncated handshake")]
    Internal,
}

impl DecryptError {
    /// The numeric cjdns code (`Ca_DecryptErr`), as carried in `AUTHENTICATION` errors.
    pub const fn code(self) -> u32 {
        match self {
            Self::Runt => 1,
            Self::NoSession => 2,
            Self::FinalShakeFail => 3,
            Self::FailedDecryptRunMsg => 4,
            Self::KeyPktEstablishedSession => 5,
            Self::WrongPermPubkey => 6,
            Self::IpRestricted => 7,
            Self::AuthRequired => 8,
            Self::UnrecognizedAuth => 9,
            Self::StrayKey => 10,
            Self::HandshakeDecryptFailed => 11,
            Self::Wiseguy => 12,
            Self::InvalidPacket => 13,
            Self::Replay => 14,
            Self::Decrypt => 15,
            Self::Internal => 16,
        }
    }

    /// The upstream name of the code, e.g. `"REPLAY"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Runt => "RUNT",
            Self::NoSession => "NO_SESSION",
            Self::FinalShakeFail => "FINAL_HANDSHAKE_FAIL",
            Self::FailedDecryptRunMsg => "FAILED_DECRYPT_RUN_MSG",
            Self::KeyPktEstablishedSession => "KEY_PKT_ESTABLISHED_SESSION",
            Self::WrongPermPubkey => "WRONG_PERM_PUBKEY",
            Self::IpRestricted => "IP_RESTRICTED",
            Self::AuthRequired => "AUTH_REQUIRED",
            Self::UnrecognizedAuth => "UNRECOGNIZED_AUTH",
            Self::StrayKey => "STRAY_KEY",
            Self::HandshakeDecryptFailed => "HANDSHAKE_DECRYPT_FAILED",
            Self::Wiseguy => "WISEGUY",
            Self::InvalidPacket => "INVALID_PACKET",
            Self::Replay => "REPLAY",
            Self::Decrypt => "DECRYPT",
            Self::Internal => "INTERNAL",
        }
    }
}

/// Why a payload could not be encrypted (API misuse or an unusable key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The buffer has less room before the payload than the packet header needs.
    #[error("need {needed} bytes of headroom before the payload, have {available}")]
    InsufficientHeadroom {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// Data packets must carry at least one byte.
    #[error("empty payload on an established session")]
    EmptyPayload,
    /// An X25519 computation produced the all-zero point (peer key of low order).
    #[error("peer key is of low order (all-zero shared secret)")]
    WeakKey,
}

/// Why a user could not be added to a [`crate::legacy::CryptoAuth`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AddUserError {
    /// Another user with a different password already has this login.
    #[error("duplicate login {0:?}")]
    DuplicateLogin(String),
    /// Empty passwords are not allowed.
    #[error("empty password")]
    EmptyPassword,
}
