//! Handshake stages as types, and the proof tokens that gate them.
//!
//! Each stage of a legacy session is its own struct holding exactly the keys that stage has:
//!
//! | stage | cjdns state | holds |
//! |---|---|---|
//! | `Init` | INIT 0 | nothing |
//! | [`HelloSent`] | SENT_HELLO 1 | our temporary key pair |
//! | [`HelloReceived`] | RECEIVED_HELLO 2 | the peer's temporary public key |
//! | [`KeySent`] | SENT_KEY 3 | both temporary keys |
//! | [`KeyReceived`] | RECEIVED_KEY 4 | both temporary keys |
//! | [`Sending`] | RECEIVED_KEY (nextNonce > 4) | both temporary keys, the data key, our next nonce |
//! | [`Established`] | ESTABLISHED 100 | the data key, our next nonce |
//!
//! An [`Established`] value can only be made by [`Established::confirm`], which takes a
//! [`DataOpened`] token; the only code that creates that token is [`DataKey::open`], after the
//! Poly1305 tag of a data packet verified under the key derived from both temporary keys. So
//! an established session always means "the peer proved it holds the other temporary key".

use super::secretbox::SecretBox;
use rand_core::{CryptoRng, RngCore};

use super::crypto::{self, TAG_LEN};

/// A temporary (per-handshake) X25519 key pair.
#[derive(Clone)]
pub(crate) struct TempKeyPair {
    pub(crate) secret: [u8; 32],
    pub(crate) public: [u8; 32],
}

impl TempKeyPair {
    pub(crate) fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let public = crypto::x25519_base(&secret);
        Self { secret, public }
    }
}

/// Proof that a data packet authenticated under a [`DataKey`]. Only [`DataKey::open`] makes one.
#[derive(Debug)]
pub(crate) struct DataOpened(());

/// The data-phase key: beforenm(our temporary secret, peer temporary public), with the role
/// that decides where each direction puts its nonce.
#[derive(Clone)]
pub(crate) struct DataKey {
    cipher: SecretBox,
    we_initiated: bool,
}

impl DataKey {
    /// Derive from the temporary keys; `None` for a low-order peer key.
    pub(crate) fn derive(
        ours: &TempKeyPair,
        theirs: &[u8; 32],
        we_initiated: bool,
    ) -> Option<Self> {
        let k = crypto::beforenm(&ours.secret, theirs)?;
        Some(Self {
            cipher: crypto::box_key(&k),
            we_initiated,
        })
    }

    pub(crate) fn we_initiated(&self) -> bool {
        self.we_initiated
    }

    /// Seal `packet[20..]` in place as data packet `nonce`, writing the 20-byte header.
    /// `packet` must be at least 20 bytes long (checked by the caller).
    pub(crate) fn seal(&self, nonce: u32, packet: &mut [u8]) {
        let Some((head, body)) = packet.split_first_chunk_mut::<20>() else {
            return;
        };
        let n = crypto::data_nonce(nonce, self.we_initiated);
        let tag = crypto::seal_detached(&self.cipher, &n, body);
        head[..4].copy_from_slice(&nonce.to_be_bytes());
        head[4..].copy_from_slice(&tag);
    }

    /// Verify and decrypt `packet[20..]` in place (the peer's direction). Untouched on failure.
    pub(crate) fn open(&self, nonce: u32, packet: &mut [u8]) -> Option<DataOpened> {
        let (head, body) = packet.split_first_chunk_mut::<20>()?;
        let tag: &[u8; TAG_LEN] = head[4..].try_into().ok()?;
        let n = crypto::data_nonce(nonce, !self.we_initiated);
        crypto::open_detached(&self.cipher, &n, body, tag).map(|_| DataOpened(()))
    }
}

/// SENT_HELLO: we sent a HELLO with this temporary key.
#[derive(Clone)]
pub(crate) struct HelloSent {
    pub(crate) ours: TempKeyPair,
}

/// RECEIVED_HELLO: the peer's HELLO authenticated; we have its temporary key.
#[derive(Clone)]
pub(crate) struct HelloReceived {
    pub(crate) theirs: [u8; 32],
}

/// SENT_KEY: we answered with a KEY.
#[derive(Clone)]
pub(crate) struct KeySent {
    pub(crate) ours: TempKeyPair,
    pub(crate) theirs: [u8; 32],
}

/// RECEIVED_KEY: we sent the HELLO and a KEY authenticated.
#[derive(Clone)]
pub(crate) struct KeyReceived {
    pub(crate) ours: TempKeyPair,
    pub(crate) theirs: [u8; 32],
}

/// We (the initiator) send data; nothing has come back under the data key yet.
#[derive(Clone)]
pub(crate) struct Sending {
    pub(crate) ours: TempKeyPair,
    pub(crate) theirs: [u8; 32],
    pub(crate) key: DataKey,
    pub(crate) next_nonce: u32,
}

/// ESTABLISHED: a data packet from the peer authenticated under the data key.
#[derive(Clone)]
pub(crate) struct Established {
    theirs: [u8; 32],
    key: DataKey,
    next_nonce: u32,
}

impl Established {
    /// The only constructor: needs the proof that a data packet opened under `key`.
    pub(crate) fn confirm(
        _proof: DataOpened,
        theirs: [u8; 32],
        key: DataKey,
        next_nonce: u32,
    ) -> Self {
        Self {
            theirs,
            key,
            next_nonce,
        }
    }
    pub(crate) fn theirs(&self) -> &[u8; 32] {
        &self.theirs
    }
    pub(crate) fn key(&self) -> &DataKey {
        &self.key
    }
    pub(crate) fn next_nonce(&self) -> u32 {
        self.next_nonce
    }
    #[cfg(test)]
    pub(crate) fn set_next_nonce_for_test(&mut self, n: u32) {
        self.next_nonce = n;
    }
    pub(crate) fn take_nonce(&mut self) -> u32 {
        let n = self.next_nonce;
        self.next_nonce = n.wrapping_add(1);
        n
    }
}

/// The stage a legacy session is in.
#[derive(Clone)]
pub(crate) enum Stage {
    Init,
    HelloSent(HelloSent),
    HelloReceived(HelloReceived),
    KeySent(KeySent),
    KeyReceived(KeyReceived),
    Sending(Sending),
    Established(Established),
}
