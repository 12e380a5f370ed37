//! Legacy cjdns CryptoAuth, wire-compatible with cjdns 22.x (digest §6.2).
//!
//! Used by stock cjdns for every peer link it initiates and for every end-to-end session.
//! X25519 + HSalsa20 (`crypto_box_beforenm`) or SHA-256(X25519 ‖ SHA-256(password)) keys,
//! XSalsa20-Poly1305 boxes with the tag first, a 120-byte handshake header (HELLO, REPEAT
//! HELLO, KEY, REPEAT KEY) and 20-byte data headers.
//!
//! * [`CryptoAuth`]: the node's permanent key pair and authorized users.
//! * [`Session`]: one session with one peer; sans-IO (`now` and `rng` are arguments).
//! * [`HandshakeHeader`], [`AuthChallenge`], [`PacketKind`]: the wire format.

mod auth;
mod crypto;
mod header;
mod secretbox;
mod session;
mod stages;

pub use auth::{CryptoAuth, User};
pub use header::{
    AuthChallenge, AuthType, HandshakeHeader, PacketKind, DATA_HEADER_LEN, HEADER_LEN,
};
pub use session::{
    handshake_sender, Opened, Session, State, ESTABLISHED_TIMEOUT, MAX_NONCE, MAX_OVERHEAD,
    SETUP_TIMEOUT, USED_TEMP_KEYS,
};

/// Raw primitives exposed for tests, benchmarks and the capture decoder.
pub mod raw {
    /// libsodium `crypto_box_beforenm` (X25519 then HSalsa20); `None` for a low-order key.
    pub fn beforenm(secret: &[u8; 32], public: &[u8; 32]) -> Option<[u8; 32]> {
        super::crypto::beforenm(secret, public)
    }
    /// The CryptoAuth shared secret with an optional SHA-256(password).
    pub fn shared_secret(
        secret: &[u8; 32],
        public: &[u8; 32],
        password_hash: Option<&[u8; 32]>,
    ) -> Option<[u8; 32]> {
        super::crypto::shared_secret(secret, public, password_hash)
    }
    /// SHA-256(password): the password secret mixed into handshake keys.
    pub fn password_hash(password: &[u8]) -> [u8; 32] {
        super::crypto::sha256(password)
    }
    /// The X25519 public key of a (temporary) private key.
    pub fn public_of(secret: &[u8; 32]) -> [u8; 32] {
        super::crypto::x25519_base(secret)
    }
    /// The 24-byte nonce of data packet `nonce` sent by the initiator (or by the responder).
    pub fn data_nonce(nonce: u32, sender_is_initiator: bool) -> [u8; 24] {
        super::crypto::data_nonce(nonce, sender_is_initiator)
    }
    /// Open a tag-first XSalsa20-Poly1305 box in place: `buf` = tag ‖ ciphertext; on success
    /// the plaintext is `buf[16..]`.
    pub fn open_box(key: &[u8; 32], nonce: &[u8; 24], buf: &mut [u8]) -> bool {
        let Some((tag, ct)) = buf.split_first_chunk_mut::<16>() else {
            return false;
        };
        super::crypto::open_detached(&super::crypto::box_key(key), nonce, ct, tag).is_some()
    }
    /// Seal `buf[16..]` in place as a tag-first XSalsa20-Poly1305 box.
    pub fn seal_box(key: &[u8; 32], nonce: &[u8; 24], buf: &mut [u8]) {
        let Some((tag, pt)) = buf.split_first_chunk_mut::<16>() else {
            return;
        };
        *tag = super::crypto::seal_detached(&super::crypto::box_key(key), nonce, pt);
    }
}
