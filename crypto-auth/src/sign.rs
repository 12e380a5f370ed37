//! Ed25519 with a node's cjdns identity, as cjdns `crypto/Sign.c` does it.
//!
//! cjdns has one secret per node, the 32-byte curve25519 private key. To sign, it clamps that
//! scalar (`&= 248` on byte 0, `&= 63` then `|= 64` on byte 31) and uses it *directly* as the
//! Ed25519 secret scalar, with no SHA-512 expansion of a seed. The Ed25519 public key is then
//! `scalar · B` on the Edwards curve, whose Montgomery form is exactly the node's cjdns public key
//! ([`CjdnsVerifyingKey::cjdns_key`]), so a verifier can tie a signature to a cjdns identity.
//! Signatures are ordinary Ed25519 and verify with any standard verifier.
//!
//! Ed25519 also needs a secret "nonce prefix" that standard keys take from the second half of
//! SHA-512(seed). cjdns derives a fresh one per signature from SHA-512(scalar ‖ 32 random bytes).
//! [`CjdnsSigner`] derives it deterministically instead, as the first 32 bytes of
//! SHA-512(nonce domain ‖ private key), where the caller names the domain (lease messages and
//! cjdns announcements use different ones). Signatures are thus deterministic, like RFC 8032, and
//! need no RNG argument; they differ from cjdns's but are equally valid.
//!
//! This module signs exactly the bytes it is given: domain separation of *messages* (a context
//! prefix, as lease frames have) is the caller's business.
//!
//! Users: `pktmesh_lease_engine::sign` (lease messages) and `pktmesh_route_server::announce`
//! (cjdns announcements).

use core::fmt;

use ed25519_dalek::hazmat::{raw_sign, ExpandedSecretKey};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha512};

use crate::keys::{PrivateKey, PublicKey};

/// The secret Ed25519 signing identity of a cjdns private key (see the module docs).
pub struct CjdnsSigner {
    expanded: ExpandedSecretKey,
    public: VerifyingKey,
}

impl CjdnsSigner {
    /// The signer of the cjdns private key `key`, whose nonce prefix is
    /// SHA-512(`nonce_domain` ‖ `key`)[..32].
    pub fn new(key: &PrivateKey, nonce_domain: &[u8]) -> Self {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(key.as_bytes());
        // The clamping cjdns applies; ExpandedSecretKey::from_bytes clamps the same way again.
        bytes[0] &= 248;
        bytes[31] &= 63;
        bytes[31] |= 64;
        let prefix = Sha512::new()
            .chain_update(nonce_domain)
            .chain_update(key.as_bytes())
            .finalize();
        bytes[32..].copy_from_slice(&prefix[..32]);
        let expanded = ExpandedSecretKey::from_bytes(&bytes);
        let public = VerifyingKey::from(&expanded);
        Self { expanded, public }
    }

    /// The Ed25519 public key (its Montgomery form is the cjdns public key).
    pub fn verifying_key(&self) -> CjdnsVerifyingKey {
        CjdnsVerifyingKey(self.public)
    }

    /// The Ed25519 signature of exactly `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        raw_sign::<Sha512>(&self.expanded, message, &self.public).to_bytes()
    }
}

impl fmt::Debug for CjdnsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CjdnsSigner")
            .field("public", &self.verifying_key())
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key that is a valid curve point (32 bytes, compressed Edwards form).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CjdnsVerifyingKey(VerifyingKey);

impl CjdnsVerifyingKey {
    /// The key encoded by `bytes`, or `None` if they are not a point on the curve.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<Self> {
        VerifyingKey::from_bytes(bytes).ok().map(Self)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The cjdns (curve25519) public key: the Montgomery form of the point.
    pub fn cjdns_key(&self) -> PublicKey {
        PublicKey::from_bytes(self.0.to_montgomery().to_bytes())
    }

    /// Whether `signature` is a valid Ed25519 signature by this key over exactly `message`
    /// (strict verification: canonical encodings, no small-order key).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0
            .verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    }
}

impl fmt::Debug for CjdnsVerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CjdnsVerifyingKey(")?;
        for b in self.0.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &[u8] = b"pktmesh announce nonce prefix\0";

    #[test]
    fn signing_key_maps_to_the_cjdns_key() {
        // Vector from cjdns test/CryptoAddress_test.c (see the protocol digest, section 3).
        let private = PrivateKey::from_hex(
            "751d3db85b848deaf221e0ed2b6cc17f587b29057d74cdd4dc0bd18b7157288e",
        )
        .unwrap();
        let signer = CjdnsSigner::new(&private, DOMAIN);
        assert_eq!(
            hex::encode(signer.verifying_key().to_bytes()),
            "4cdbc7b1df079ce1f3af9b5481f125efedce745c2fa295b64bcfb503cf9b7336"
        );
        assert_eq!(signer.verifying_key().cjdns_key(), private.public_key());
        assert_eq!(
            hex::encode(private.public_key().as_bytes()),
            "d7c0df45001a5be5e81c95e519be5199055237cb9116882cadcefe48ab735173"
        );
        // The nonce domain does not change the key.
        assert_eq!(
            CjdnsSigner::new(&private, b"other").verifying_key(),
            signer.verifying_key()
        );
    }

    #[test]
    fn signatures_are_pinned() {
        // Pins the scalar and nonce-prefix derivation: signatures stored or sent by earlier
        // versions (the route-server's announcement domain here) must stay byte-for-byte equal.
        let signer = CjdnsSigner::new(&PrivateKey::from_bytes([7; 32]), DOMAIN);
        assert_eq!(
            hex::encode(signer.verifying_key().to_bytes()),
            "c8853df345ece33372843ff336ccb67a9d8d4de8af6f3645848a30bc6fe48f2b"
        );
        assert_eq!(
            hex::encode(signer.sign(b"hello")),
            concat!(
                "8469fe04419a5e82341983c9cb8b6d9a39e8efb0f469a56ca9fcc5cd87d32728",
                "168c626ec83eb201847fed06225f6136d76d3019955d6618f0c889adf172ed01"
            )
        );
    }

    #[test]
    fn signatures_verify_with_standard_ed25519() {
        let signer = CjdnsSigner::new(&PrivateKey::from_bytes([7; 32]), DOMAIN);
        let sig = signer.sign(b"hello");
        let key = signer.verifying_key();
        assert!(key.verify(b"hello", &sig));
        assert!(!key.verify(b"hellp", &sig));
        // A plain Ed25519 verifier agrees.
        let vk = VerifyingKey::from_bytes(&key.to_bytes()).unwrap();
        vk.verify_strict(b"hello", &Signature::from_bytes(&sig))
            .unwrap();
        // Deterministic; another nonce domain gives another, equally valid signature.
        assert_eq!(sig, signer.sign(b"hello"));
        let other = CjdnsSigner::new(&PrivateKey::from_bytes([7; 32]), b"other domain");
        let sig2 = other.sign(b"hello");
        assert_ne!(sig, sig2);
        assert!(key.verify(b"hello", &sig2));
    }

    #[test]
    fn other_keys_and_bad_bytes_do_not_verify() {
        let a = CjdnsSigner::new(&PrivateKey::from_bytes([1; 32]), DOMAIN);
        let b = CjdnsSigner::new(&PrivateKey::from_bytes([2; 32]), DOMAIN);
        let sig = a.sign(b"m");
        assert!(!b.verifying_key().verify(b"m", &sig));
        let mut bad = sig;
        bad[63] ^= 0x80;
        assert!(!a.verifying_key().verify(b"m", &bad));
        let key = a.verifying_key();
        assert_eq!(CjdnsVerifyingKey::from_bytes(&key.to_bytes()), Some(key));
        // y = 2 is not the y of any curve point.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert_eq!(CjdnsVerifyingKey::from_bytes(&not_a_point), None);
    }
}
