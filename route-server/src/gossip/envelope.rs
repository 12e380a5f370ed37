//! The signed envelope around every gossip message, so that a server accepts gossip only from
//! the route servers it is configured to trust, and only what was meant for it.
//!
//! ```text
//! offset  size  field
//! 0       1     magic 0xB3
//! 1       1     version 1
//! 2       32    sender: Ed25519 signing key (the lease-engine form of its cjdns key)
//! 34      32    receiver: Ed25519 signing key
//! 66      8     timestamp, ms since the Unix epoch, big-endian
//! 74      4     body length n, big-endian
//! 78      n     body: the JSON gossip message
//! 78+n    64    Ed25519 signature over "pktmesh lease v1\0" ‖ bytes[0..78+n]
//! ```
//!
//! Signed with the lease-engine signer; the first byte (0xB3) differs from every other kind it
//! signs (lease frames 1, orders 0xB1, networks 0xB2), so no signature crosses kinds. Naming the
//! receiver stops a message from being replayed to another server; the timestamp must be within
//! [`MAX_SKEW_MS`] of the receiver's clock. A replay within that window changes nothing (gossip
//! only adds items that are signed themselves). [`open`] never panics on any input.

use pktmesh_lease_engine::sign::{Signer, SigningKey};
use thiserror::Error;

/// First byte.
pub const MAGIC: u8 = 0xb3;
/// Version byte.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 78;
/// Largest clock difference accepted.
pub const MAX_SKEW_MS: u64 = 30_000;

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not an envelope (length, magic, version).
    #[error("not a gossip envelope")]
    Malformed,
    /// Addressed to another server.
    #[error("envelope is for another server")]
    NotForUs,
    /// The sender is not a configured peer.
    #[error("sender is not a configured peer")]
    UnknownPeer,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The timestamp is too far from ours.
    #[error("timestamp {skew_ms} ms away from ours")]
    Stale {
        /// |now − timestamp|.
        skew_ms: u64,
    },
}

impl EnvelopeError {
    /// Whether the refusal means "who are you" (401: no valid credentials) rather than "you
    /// may not" (403: a valid signer we do not accept, or not for us).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            Self::BadSignature | Self::Stale { .. } | Self::Malformed
        )
    }
}

/// An opened envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened<'a> {
    /// Who sent it.
    pub from: SigningKey,
    /// When, ms.
    pub timestamp_ms: u64,
    /// The message.
    pub body: &'a [u8],
}

/// Seals `body` from `signer` to `to` at `now_ms`.
pub fn seal(signer: &Signer, to: &SigningKey, now_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + body.len() + 64);
    b.push(MAGIC);
    b.push(VERSION);
    b.extend_from_slice(&signer.public().0);
    b.extend_from_slice(&to.0);
    b.extend_from_slice(&now_ms.to_be_bytes());
    b.extend_from_slice(&(body.len().min(u32::MAX as usize) as u32).to_be_bytes());
    b.extend_from_slice(body);
    let sig = signer.sign(&b);
    b.extend_from_slice(&sig);
    b
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

/// Opens an envelope meant for `me` from one of `peers` at `now_ms`. Checks, in order: shape,
/// receiver, sender, signature, time.
pub fn open<'a>(
    bytes: &'a [u8],
    me: &SigningKey,
    peers: &[SigningKey],
    now_ms: u64,
) -> Result<Opened<'a>, EnvelopeError> {
    if bytes.len() < HEADER_LEN + 64 || bytes[0] != MAGIC || bytes[1] != VERSION {
        return Err(EnvelopeError::Malformed);
    }
    let n = u32::from_be_bytes(arr(bytes, 74)) as usize;
    if bytes.len() != HEADER_LEN + n + 64 {
        return Err(EnvelopeError::Malformed);
    }
    let from = SigningKey(arr(bytes, 2));
    if SigningKey(arr(bytes, 34)) != *me {
        return Err(EnvelopeError::NotForUs);
    }
    if !peers.contains(&from) {
        return Err(EnvelopeError::UnknownPeer);
    }
    let signed = HEADER_LEN + n;
    if !from.verify(&bytes[..signed], &arr(bytes, signed)) {
        return Err(EnvelopeError::BadSignature);
    }
    let timestamp_ms = u64::from_be_bytes(arr(bytes, 66));
    let skew_ms = now_ms.abs_diff(timestamp_ms);
    if skew_ms > MAX_SKEW_MS {
        return Err(EnvelopeError::Stale { skew_ms });
    }
    Ok(Opened {
        from,
        timestamp_ms,
        body: &bytes[HEADER_LEN..signed],
    })
}

#[cfg(test)]
mod tests {
    use pktmesh_crypto_auth::PrivateKey;

    use super::*;

    #[test]
    fn only_configured_peers_and_good_signatures_pass() {
        let a = Signer::from_cjdns(&PrivateKey::from_bytes([1; 32]));
        let b = Signer::from_cjdns(&PrivateKey::from_bytes([2; 32]));
        let c = Signer::from_cjdns(&PrivateKey::from_bytes([3; 32]));
        let now = 1_700_000_000_000;
        let env = seal(&a, &b.public(), now, b"{\"x\":1}");
        let opened = open(&env, &b.public(), &[a.public()], now + 5).unwrap();
        assert_eq!(opened.body, b"{\"x\":1}");
        assert_eq!(opened.from, a.public());
        assert_eq!(
            open(&env, &c.public(), &[a.public()], now),
            Err(EnvelopeError::NotForUs)
        );
        assert_eq!(
            open(&env, &b.public(), &[c.public()], now),
            Err(EnvelopeError::UnknownPeer)
        );
        let mut bad = env.clone();
        bad[HEADER_LEN] ^= 1;
        assert_eq!(
            open(&bad, &b.public(), &[a.public()], now),
            Err(EnvelopeError::BadSignature)
        );
        assert!(matches!(
            open(&env, &b.public(), &[a.public()], now + MAX_SKEW_MS + 1),
            Err(EnvelopeError::Stale { .. })
        ));
        // Never panics on truncations.
        for cut in 0..env.len() {
            assert!(open(&env[..cut], &b.public(), &[a.public()], now).is_err());
        }
        assert_eq!(
            open(b"{}", &b.public(), &[a.public()], now),
            Err(EnvelopeError::Malformed)
        );
    }
}
