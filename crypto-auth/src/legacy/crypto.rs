//! The legacy CryptoAuth primitives: X25519, `crypto_box_beforenm`, the password secret and
//! the XSalsa20-Poly1305 box in the libsodium "easy" layout (tag first), sealed by
//! [`SecretBox`].
//!
//! Everything works in place on caller buffers; nothing allocates. Opening a box is the only
//! way to obtain a [`BoxOpened`] token, which the session code demands before it lets a
//! handshake packet or the first data packet change its state.

use sha2::{Digest, Sha256};

use super::secretbox::{hsalsa20, SecretBox};

/// Length of a Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;

/// Proof that a box authenticated under some key. Only [`open_detached`] creates one.
#[derive(Debug)]
pub(crate) struct BoxOpened(());

/// X25519(sk, pk), or `None` when the result is the all-zero point (libsodium refuses it too).
pub(crate) fn x25519(secret: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    let sk = x25519_dalek::StaticSecret::from(*secret);
    let shared = sk.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    shared.was_contributory().then(|| shared.to_bytes())
}

/// X25519 base-point multiplication: the public key of a (temporary) private key.
pub(crate) fn x25519_base(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret)).to_bytes()
}

/// libsodium `crypto_box_beforenm`: HSalsa20(X25519(sk, pk), 0^16).
pub(crate) fn beforenm(secret: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
    let shared = x25519(secret, public)?;
    Some(hsalsa20(&shared, &[0; 16]))
}

/// The CryptoAuth shared secret S(sk, pk, password): `beforenm` without a password, else
/// SHA-256(X25519(sk, pk) ‖ SHA-256(password)).
pub(crate) fn shared_secret(
    secret: &[u8; 32],
    public: &[u8; 32],
    password_hash: Option<&[u8; 32]>,
) -> Option<[u8; 32]> {
    match password_hash {
        None => beforenm(secret, public),
        Some(pw) => {
            let raw = x25519(secret, public)?;
            let mut h = Sha256::new();
            h.update(raw);
            h.update(pw);
            Some(h.finalize().into())
        }
    }
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A box key ready for many packets.
pub(crate) fn box_key(key: &[u8; 32]) -> SecretBox {
    SecretBox::new(key)
}

/// Encrypt `buf` in place and return the tag.
pub(crate) fn seal_detached(cipher: &SecretBox, nonce: &[u8; 24], buf: &mut [u8]) -> [u8; 16] {
    cipher.seal_detached(nonce, buf)
}

/// Verify `tag` over `buf` and decrypt `buf` in place. On failure `buf` is left untouched.
pub(crate) fn open_detached(
    cipher: &SecretBox,
    nonce: &[u8; 24],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> Option<BoxOpened> {
    cipher
        .open_detached(nonce, buf, tag)
        .then_some(BoxOpened(()))
}

/// The 24-byte nonce of a data packet: the packet nonce, little endian, at byte 4 when the
/// sender is the session initiator, at byte 0 when it is the responder.
pub(crate) fn data_nonce(nonce: u32, sender_is_initiator: bool) -> [u8; 24] {
    let mut n = [0u8; 24];
    let at = if sender_is_initiator { 4 } else { 0 };
    n[at..at + 4].copy_from_slice(&nonce.to_le_bytes());
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The session layer's sealing must agree with the crate's combined (tag-first) API.
    #[test]
    fn detached_matches_tag_first_layout() {
        use xsalsa20poly1305::aead::generic_array::GenericArray;
        use xsalsa20poly1305::{KeyInit, XSalsa20Poly1305};
        let key = box_key(&[7; 32]);
        let nonce = [9u8; 24];
        let mut buf = *b"hello world";
        let tag = seal_detached(&key, &nonce, &mut buf);
        let combined = XSalsa20Poly1305::new(GenericArray::from_slice(&[7; 32]))
            .encrypt(GenericArray::from_slice(&nonce), &b"hello world"[..])
            .unwrap();
        assert_eq!(&combined[..16], &tag);
        assert_eq!(&combined[16..], &buf);
        assert!(open_detached(&key, &nonce, &mut buf, &tag).is_some());
        assert_eq!(&buf, b"hello world");
    }

    use xsalsa20poly1305::aead::Aead;
}
