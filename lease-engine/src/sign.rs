//! Ed25519 signing with a node's cjdns identity, as cjdns does it (`crypto/Sign.c`).
//!
//! cjdns has one secret per node, the 32-byte curve25519 private key. To sign, it clamps that
//! scalar (`&= 248` on byte 0, `&= 63` then `|= 64` on byte 31) and uses it *directly* as the
//! Ed25519 secret scalar, with no SHA-512 expansion of a seed. The Ed25519 public key is then
//! `scalar · B` on the Edwards curve, whose Montgomery form is exactly the node's cjdns public key,
//! so a verifier can tie a signature to a cjdns identity. Signatures are ordinary Ed25519 and
//! verify with any standard verifier.
//!
//! Ed25519 also needs a secret "nonce prefix" that standard keys take from the second half of
//! SHA-512(seed). cjdns derives a fresh one per signature from SHA-512(scalar ‖ 32 random bytes).
//! This module derives it deterministically instead, as SHA-512(domain ‖ private key)'s first
//! 32 bytes (the signature stays deterministic, like RFC 8032, and needs no RNG argument); the
//! two choices produce different but equally valid signatures.
//!
//! Every lease message is signed over `SIGNING_CONTEXT ‖ message bytes`, so a lease signature can
//! never be replayed as a cjdns announcement signature or the reverse.

use core::fmt;

use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{Signature, VerifyingKey};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use sha2::{Digest, Sha512};

/// Prepended to every signed lease message before signing (domain separation).
pub const SIGNING_CONTEXT: &[u8] = b"pktmesh lease v1\0";

/// Domain string for the deterministic nonce prefix.
const NONCE_DOMAIN: &[u8] = b"pktmesh lease nonce prefix\0";

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
        let vk = VerifyingKey::from_bytes(&self.0).ok()?;
        Some(PublicKey::from_bytes(vk.to_montgomery().to_bytes()))
    }

    /// Whether `signature` is a valid Ed25519 signature by this key over
    /// `SIGNING_CONTEXT ‖ message` (strict verification: canonical encodings, no small-order key).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let Ok(vk) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let sig = Signature::from_bytes(signature);
        let mut signed = Vec::with_capacity(SIGNING_CONTEXT.len() + message.len());
        signed.extend_from_slice(SIGNING_CONTEXT);
        signed.extend_from_slice(message);
        vk.verify_strict(&signed, &sig).is_ok()
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
pub struct Signer {
    expanded: ExpandedSecretKey,
    public: VerifyingKey,
}

impl Signer {
    /// Derives the signing identity of the cjdns private key `key` (see the module docs).
    pub fn from_cjdns(key: &PrivateKey) -> Self {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(key.as_bytes());
        // The clamping cjdns applies; ExpandedSecretKey::from_bytes clamps the same way again.
        bytes[0] &= 248;
        bytes[31] &= 63;
        bytes[31] |= 64;
        let prefix = Sha512::new()
            .chain_update(NONCE_DOMAIN)
            .chain_update(key.as_bytes())
            .finalize();
        bytes[32..].copy_from_slice(&prefix[..32]);
        let expanded = ExpandedSecretKey::from_bytes(&bytes);
        let public = VerifyingKey::from(&expanded);
        Self { expanded, public }
    }

    /// The public signing key (its Montgomery form is the cjdns public key).
    pub fn public(&self) -> SigningKey {
        SigningKey(self.public.to_bytes())
    }

    /// Signs `SIGNING_CONTEXT ‖ message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signed = Vec::with_capacity(SIGNING_CONTEXT.len() + message.len());
        signed.extend_from_slice(SIGNING_CONTEXT);
        signed.extend_from_slice(message);
        raw_sign::<Sha512>(&self.expanded, &signed, &self.public).to_bytes()
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
    fn signatures_verify_with_standard_ed25519() {
        let private = PrivateKey::from_bytes([7; 32]);
        let signer = Signer::from_cjdns(&private);
        let sig = signer.sign(b"hello");
        assert!(signer.public().verify(b"hello", &sig));
        assert!(!signer.public().verify(b"hellp", &sig));
        // A plain Ed25519 verifier over the context-prefixed bytes agrees.
        let vk = VerifyingKey::from_bytes(&signer.public().0).unwrap();
        let mut m = SIGNING_CONTEXT.to_vec();
        m.extend_from_slice(b"hello");
        vk.verify_strict(&m, &Signature::from_bytes(&sig)).unwrap();
        // Deterministic.
        assert_eq!(sig, signer.sign(b"hello"));
    }

    #[test]
    fn other_keys_do_not_verify() {
        let a = Signer::from_cjdns(&PrivateKey::from_bytes([1; 32]));
        let b = Signer::from_cjdns(&PrivateKey::from_bytes([2; 32]));
        assert!(!b.public().verify(b"m", &a.sign(b"m")));
        assert!(!SigningKey([0xff; 32]).verify(b"m", &a.sign(b"m")));
    }
}
