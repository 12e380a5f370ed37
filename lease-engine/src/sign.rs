//! Ed25519 signing of lease messages with a node's cjdns identity.
//!
//! The signing itself is `pktmesh_crypto_auth::sign` (shared with cjdns announcements): the
//! clamped curve25519 private key is the Ed25519 scalar, as cjdns `crypto/Sign.c` does, so a
//! signing key's Montgomery form is the node's cjdns public key, and signatures are ordinary
//! Ed25519. The nonce prefix is SHA-512("pktmesh lease nonce prefix\0" ‖ private key)[..32],
//! deterministic (cjdns draws one at random per signature; both are valid).
//!
//! Every lease message is signed over `SIGNING_CONTEXT ‖ message bytes`, so a lease signature can
//! never be replayed as a cjdns announcement signature or the reverse.

use core::fmt;

use pktmesh_crypto_auth::sign::{CjdnsSigner, CjdnsVerifyingKey};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};

/// Prepended to every signed lease message before signing (domain separation).
pub const SIGNING_CONTEXT: &[u8] = b"pktmesh lease v1\0";

/// Domain string for the deterministic nonce prefix.
const NONCE_DOMAIN: &[u8] = b"pktmesh lease nonce prefix\0";

/// `SIGNING_CONTEXT ‖ message`: the bytes actually signed.
fn with_context(message: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(SIGNING_CONTEXT.len() + message.len());
    signed.extend_from_slice(SIGNING_CONTEXT);
    signed.extend_from_slice(message);
    signed
}

/// An Ed25519 public signing key (32 bytes, compressed Edwards point), the form in which lease
/// messages name their signers.
///
/// Equality is on the bytes. [`SigningKey::cjdns_key`] converts to the node's cjdns key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SigningKey(pub [u8; 32]);

impl SigningKey {
    /// The cjdns (curve25519) public key of this signing key: the Montgomery form of the point,
    /// or `None` if the bytes are not a point on the curve.
    pub fn cjdns_key(&self) -> Option<PublicKey> {
        CjdnsVerifyingKey::from_bytes(&self.0).map(|k| k.cjdns_key())
    }

    /// Whether `signature` is a valid Ed25519 signature by this key over
    /// `SIGNING_CONTEXT ‖ message` (strict verification: canonical encodings, no small-order key).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        CjdnsVerifyingKey::from_bytes(&self.0)
            .is_some_and(|k| k.verify(&with_context(message), signature))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// A node's or an owner's secret signing identity, derived from a cjdns private key.
pub struct Signer(CjdnsSigner);

impl Signer {
    /// Derives the signing identity of the cjdns private key `key` (see the module docs).
    pub fn from_cjdns(key: &PrivateKey) -> Self {
        Self(CjdnsSigner::new(key, NONCE_DOMAIN))
    }

    /// The public signing key (its Montgomery form is the cjdns public key).
    pub fn public(&self) -> SigningKey {
        SigningKey(self.0.verifying_key().to_bytes())
    }

    /// Signs `SIGNING_CONTEXT ‖ message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(&with_context(message))
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_maps_to_the_cjdns_key() {
        // Vector from cjdns test/CryptoAddress_test.c (see the protocol digest, section 3).
        let private = PrivateKey::from_hex(
            "751d3db85b848deaf221e0ed2b6cc17f587b29057d74cdd4dc0bd18b7157288e",
        )
        .unwrap();
        let signer = Signer::from_cjdns(&private);
        assert_eq!(signer.public().cjdns_key(), Some(private.public_key()));
        assert_eq!(
            hex::encode(private.public_key().as_bytes()),
            "d7c0df45001a5be5e81c95e519be5199055237cb9116882cadcefe48ab735173"
        );
    }

    #[test]
    fn signatures_are_context_prefixed_and_pinned() {
        let signer = Signer::from_cjdns(&PrivateKey::from_bytes([7; 32]));
        let sig = signer.sign(b"hello");
        // Lease signatures made before the signing moved to crypto-auth, byte for byte.
        assert_eq!(
            hex::encode(sig),
            concat!(
                "37542111e88900c3271bc3d5146d7478c72f6bfe0ca8d2c60b3fd8ffa12a0957",
                "04dc9bdc28cb6ba4f5788076dcdaf2d3a0a9efd1f407276026830c40b0b1c40c"
            )
        );
        assert!(signer.public().verify(b"hello", &sig));
        assert!(!signer.public().verify(b"hellp", &sig));
        // A plain Ed25519 verifier over the context-prefixed bytes agrees.
        let vk = CjdnsVerifyingKey::from_bytes(&signer.public().0).unwrap();
        assert!(vk.verify(&[SIGNING_CONTEXT, b"hello"].concat(), &sig));
        assert!(!vk.verify(b"hello", &sig));
    }

    #[test]
    fn other_keys_do_not_verify() {
        let a = Signer::from_cjdns(&PrivateKey::from_bytes([1; 32]));
        let b = Signer::from_cjdns(&PrivateKey::from_bytes([2; 32]));
        assert!(!b.public().verify(b"m", &a.sign(b"m")));
        assert!(!SigningKey([0xff; 32]).verify(b"m", &a.sign(b"m")));
    }
}
