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

use super::secretbox::{open_with_subkey, seal_with_subkey, SecretBox, SubkeyWindow};
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
    /// Subkeys for our next packets (our counter only goes up).
    seal_window: Option<SubkeyWindow>,
    /// Subkeys around the peer's last authenticated packet.
    open_window: Option<SubkeyWindow>,
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
            seal_window: None,
            open_window: None,
        })
    }

    pub(crate) fn we_initiated(&self) -> bool {
        self.we_initiated
    }

    /// The subkeys of eight packets from counter `first` on, in the direction whose sender
    /// is (or is not) the session initiator.
    fn window_at(&self, first: u32, sender_is_initiator: bool) -> SubkeyWindow {
        SubkeyWindow::derive(&self.cipher, first, |c| {
            crypto::data_nonce(c, sender_is_initiator)
        })
    }

    /// Seal `packet[20..]` in place as data packet `nonce`, writing the 20-byte header.
    /// `packet` must be at least 20 bytes long (checked by the caller).
    pub(crate) fn seal(&mut self, nonce: u32, packet: &mut [u8]) {
        let Some((head, body)) = packet.split_first_chunk_mut::<20>() else {
            return;
        };
        let cached = self.seal_window.as_ref().and_then(|w| w.get(nonce));
        let tag = match cached {
            Some((subkey, tail)) => seal_with_subkey(subkey, tail, body),
            None => {
                let window = self.window_at(nonce, self.we_initiated);
                let (subkey, tail) = window.first_key();
                let tag = seal_with_subkey(subkey, tail, body);
                self.seal_window = Some(window);
                tag
            }
        };
        head[..4].copy_from_slice(&nonce.to_be_bytes());
        head[4..].copy_from_slice(&tag);
    }

    /// Verify and decrypt `packet[20..]` in place (the peer's direction). Untouched on failure.
    ///
    /// A packet outside the current subkey window is tried with a fresh window starting at
    /// its counter, which replaces the old one only if the packet authenticates: forged
    /// packets cost one lane pass each and cannot move the window.
    pub(crate) fn open(&mut self, nonce: u32, packet: &mut [u8]) -> Option<DataOpened> {
        let (head, body) = packet.split_first_chunk_mut::<20>()?;
        let tag: &[u8; TAG_LEN] = head[4..].try_into().ok()?;
        if let Some((subkey, tail)) = self.open_window.as_ref().and_then(|w| w.get(nonce)) {
            return open_with_subkey(subkey, tail, body, tag).then_some(DataOpened(()));
        }
        let window = self.window_at(nonce, !self.we_initiated);
        let (subkey, tail) = window.first_key();
        if !open_with_subkey(subkey, tail, body, tag) {
            return None;
        }
        self.open_window = Some(window);
        Some(DataOpened(()))
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
    pub(crate) fn key_mut(&mut self) -> &mut DataKey {
        &mut self.key
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    fn pair() -> (DataKey, DataKey) {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([8; 32]);
        let a = TempKeyPair::generate(&mut rng);
        let b = TempKeyPair::generate(&mut rng);
        let initiator = DataKey::derive(&a, &b.public, true).unwrap();
        let responder = DataKey::derive(&b, &a.public, false).unwrap();
        (initiator, responder)
    }

    fn sealed(key: &mut DataKey, nonce: u32) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p.extend((0..300u32).map(|i| (i ^ nonce) as u8));
        key.seal(nonce, &mut p);
        p
    }

    fn open_window_start(key: &DataKey) -> Option<u32> {
        key.open_window.as_ref().map(SubkeyWindow::first)
    }

    /// Packets sealed through the subkey windows (across window edges and the 32-bit wrap)
    /// are byte-identical to the one-nonce-at-a-time box, and open in order, in reverse
    /// and after gaps.
    #[test]
    fn windows_agree_with_the_plain_box_everywhere() {
        let (mut a, mut b) = pair();
        let plain = a.cipher.clone();
        let counters: Vec<u32> = (4..30)
            .chain(u32::MAX - 10..=u32::MAX)
            .chain(0..5)
            .collect();
        for &n in &counters {
            let p = sealed(&mut a, n);
            let mut q = vec![0u8; 300];
            q.iter_mut()
                .zip(0..300u32)
                .for_each(|(q, i)| *q = (i ^ n) as u8);
            let tag = crypto::seal_detached(&plain, &crypto::data_nonce(n, true), &mut q);
            assert_eq!(&p[4..20], &tag, "tag of {n}");
            assert_eq!(&p[20..], &q[..], "ciphertext of {n}");
        }
        for n in counters.iter().rev().chain(&counters).chain([&1000, &9]) {
            let mut p = sealed(&mut a, *n);
            assert!(b.open(*n, &mut p).is_some(), "open {n}");
            assert!(p[20..]
                .iter()
                .zip(0..300u32)
                .all(|(x, i)| *x == (i ^ n) as u8));
        }
    }

    /// A forged packet outside the window is refused and leaves the window where it was.
    #[test]
    fn forged_packets_do_not_move_the_open_window() {
        let (mut a, mut b) = pair();
        for n in 4..7 {
            let mut p = sealed(&mut a, n);
            assert!(b.open(n, &mut p).is_some());
        }
        let start = open_window_start(&b);
        assert_eq!(start, Some(4));
        for forged in [5u32, 100, 4_000_000] {
            let mut p = sealed(&mut a, forged);
            p[25] ^= 1;
            let before = p.clone();
            assert!(b.open(forged, &mut p).is_none());
            assert_eq!(p, before, "a refused packet is left as it was");
            assert_eq!(open_window_start(&b), start);
        }
        let mut p = sealed(&mut a, 100);
        assert!(b.open(100, &mut p).is_some());
        assert_eq!(open_window_start(&b), Some(100));
    }
}
