//! An established Noise session: ChaCha20-Poly1305 transport keys, the 1024-packet replay
//! window, and the cjdns data framing `receiver_idx(4 LE) ‖ counter(4 LE) ‖ ciphertext ‖ tag`.
//!
//! A [`Transport`] can only be built by the handshake code from a [`HandshakeVerified`] token,
//! which exists only after the peer's handshake message authenticated.

use std::time::{Duration, Instant};

use super::crypto::{aead_key, open, seal};
use super::NoiseError;
use crate::primitives::Aead;

/// Header of a data packet on the wire.
pub const DATA_HEADER: usize = 8;
/// Tag after the ciphertext.
pub const DATA_TAG: usize = 16;
/// Total per-packet overhead.
pub const DATA_OVERHEAD: usize = DATA_HEADER + DATA_TAG;
/// Sending stops (a new handshake is needed) at this counter: the wire carries 32 bits.
pub const REJECT_AFTER_MESSAGES: u64 = 0xFFFF_FFF0;
/// Keys older than this are not used (WireGuard REJECT_AFTER_TIME).
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// The initiator re-keys when sending with keys this old (REKEY_AFTER_TIME).
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);

const WINDOW_WORDS: usize = 16;
const WINDOW: u64 = 64 * WINDOW_WORDS as u64;

/// Proof that a handshake message of the peer authenticated. Only the handshake code makes it.
#[derive(Debug)]
pub(crate) struct HandshakeVerified(pub(super) ());

/// What a session's receiving side counted since its handshake, as the legacy replay window
/// counts it ([`crate::replay::ReplayStats`]): only packets that authenticated count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveCounts {
    /// Packets accepted.
    pub received: u64,
    /// Counters that left the window without being seen.
    pub lost: u64,
    /// Packets refused because their counter was already seen.
    pub duplicates: u64,
    /// Packets refused because their counter was below the window.
    pub out_of_range: u64,
}

/// WireGuard-style sliding window of 1024 counters.
#[derive(Debug, Clone, Default)]
struct Window {
    /// One past the highest counter seen.
    next: u64,
    bits: [u64; WINDOW_WORDS],
    counts: ReceiveCounts,
}

impl Window {
    fn accepts(&self, c: u64) -> bool {
        if c >= self.next {
            return true;
        }
        if self.next - c > WINDOW {
            return false;
        }
        let bit = c % WINDOW;
        self.bits[(bit / 64) as usize] & (1 << (bit % 64)) == 0
    }

    /// Counts a refused counter of an authenticated packet.
    fn refused(&mut self, c: u64) {
        if self.next - c > WINDOW {
            self.counts.out_of_range += 1;
        } else {
            self.counts.duplicates += 1;
        }
    }

    fn mark(&mut self, c: u64) {
        if c >= self.next {
            // Slots are reused for counters WINDOW apart: each taken over for [next, c] held a
            // counter that now leaves the window; unseen, it was lost. Counters skipped beyond
            // a whole window never entered it.
            let span = c - self.next + 1;
            for x in self.next..self.next + span.min(WINDOW) {
                let bit = x % WINDOW;
                let word = &mut self.bits[(bit / 64) as usize];
                if x >= WINDOW && *word & (1 << (bit % 64)) == 0 {
                    self.counts.lost += 1;
                }
                *word &= !(1 << (bit % 64));
            }
            self.counts.lost += span.saturating_sub(WINDOW);
            self.next = c + 1;
        }
        let bit = c % WINDOW;
        self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        self.counts.received += 1;
    }
}

/// Transport keys of one Noise session.
#[derive(Clone)]
pub struct Transport {
    local_index: u32,
    remote_index: u32,
    send: Aead,
    recv: Aead,
    send_counter: u64,
    window: Window,
    born: Instant,
    initiator: bool,
    confirmed: bool,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("local_index", &self.local_index)
            .field("remote_index", &self.remote_index)
            .field("initiator", &self.initiator)
            .field("confirmed", &self.confirmed)
            .finish_non_exhaustive()
    }
}

impl Transport {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_handshake(
        _proof: HandshakeVerified,
        local_index: u32,
        remote_index: u32,
        send: &[u8; 32],
        recv: &[u8; 32],
        now: Instant,
        initiator: bool,
    ) -> Self {
        Self {
            local_index,
            remote_index,
            send: aead_key(send),
            recv: aead_key(recv),
            send_counter: 0,
            window: Window::default(),
            born: now,
            initiator,
            // The initiator knows the responder has the keys (it answered); the responder
            // waits for the first data packet, as in WireGuard.
            confirmed: initiator,
        }
    }

    /// Our index (the peer puts it in data packets to us).
    pub fn local_index(&self) -> u32 {
        self.local_index
    }
    /// The peer's index (we put it in data packets to it).
    pub fn remote_index(&self) -> u32 {
        self.remote_index
    }
    /// Whether we initiated the handshake.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }
    /// Whether we may send (responder: after the first data packet from the initiator).
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }
    /// The same keys as the peer holds them (send and receive swapped, indexes swapped, a fresh
    /// replay window): lets an observer that rebuilt one side open the other side's packets.
    pub fn mirrored(&self) -> Transport {
        Self {
            local_index: self.remote_index,
            remote_index: self.local_index,
            send: self.recv.clone(),
            recv: self.send.clone(),
            send_counter: 0,
            window: Window::default(),
            born: self.born,
            initiator: !self.initiator,
            confirmed: true,
        }
    }

    /// What the receiving side counted since the handshake.
    pub fn receive_counts(&self) -> ReceiveCounts {
        self.window.counts
    }

    /// When the keys were made.
    pub fn born(&self) -> Instant {
        self.born
    }
    /// Whether `packet` is a data packet addressed to this session's index.
    pub fn accepts_index(&self, packet: &[u8]) -> bool {
        packet.get(..4) == Some(&self.local_index.to_le_bytes()[..])
    }
    /// Whether the initiator should start a new handshake before sending.
    pub fn needs_rekey(&self, now: Instant) -> bool {
        self.initiator && now.saturating_duration_since(self.born) >= REKEY_AFTER_TIME
            || self.send_counter >= REJECT_AFTER_MESSAGES / 2
    }

    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.born) >= REJECT_AFTER_TIME
    }

    /// Seal `packet[8..len-16]` in place; writes the header and the tag. `packet` must be at
    /// least [`DATA_OVERHEAD`] bytes (an empty payload is a keepalive).
    pub fn encrypt(&mut self, now: Instant, packet: &mut [u8]) -> Result<(), NoiseError> {
        if packet.len() < DATA_OVERHEAD {
            return Err(NoiseError::BufferTooSmall);
        }
        if !self.confirmed {
            return Err(NoiseError::NotConfirmed);
        }
        if self.expired(now) || self.send_counter >= REJECT_AFTER_MESSAGES {
            return Err(NoiseError::Expired);
        }
        let counter = self.send_counter;
        self.send_counter += 1;
        let tag_at = packet.len() - DATA_TAG;
        let (head, rest) = packet.split_at_mut(DATA_HEADER);
        let (body, tag) = rest.split_at_mut(tag_at - DATA_HEADER);
        head[..4].copy_from_slice(&self.remote_index.to_le_bytes());
        head[4..].copy_from_slice(&(counter as u32).to_le_bytes());
        tag.copy_from_slice(&seal(&self.send, counter, &[], body));
        Ok(())
    }

    /// Open a data packet in place; returns the payload (empty = keepalive). A rejected packet
    /// changes nothing but the counts of refused packets (a replayed or too old counter of a
    /// packet that authenticated).
    pub fn decrypt<'a>(
        &mut self,
        now: Instant,
        packet: &'a mut [u8],
    ) -> Result<&'a mut [u8], NoiseError> {
        if packet.len() < DATA_OVERHEAD {
            return Err(NoiseError::Truncated);
        }
        let idx = u32::from_le_bytes([packet[0], packet[1], packet[2], packet[3]]);
        if idx != self.local_index {
            return Err(NoiseError::WrongIndex);
        }
        if self.expired(now) {
            return Err(NoiseError::Expired);
        }
        let counter = u64::from(u32::from_le_bytes([
            packet[4], packet[5], packet[6], packet[7],
        ]));
        let tag_at = packet.len() - DATA_TAG;
        let (rest, tag) = packet.split_at_mut(tag_at);
        let tag: [u8; 16] = tag.try_into().map_err(|_| NoiseError::Truncated)?;
        let body = &mut rest[DATA_HEADER..];
        // Authenticated first, as the legacy window counts: a forged counter is no replay.
        if !open(&self.recv, counter, &[], body, &tag) {
            return Err(NoiseError::Decrypt);
        }
        if !self.window.accepts(counter) {
            self.window.refused(counter);
            return Err(NoiseError::Replay);
        }
        self.window.mark(counter);
        self.confirmed = true;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window() {
        let mut w = Window::default();
        for c in [5u64, 3, 4, 0, 2000, 977] {
            assert!(w.accepts(c), "{c}");
            w.mark(c);
            assert!(!w.accepts(c));
        }
        assert!(!w.accepts(976), "more than 1024 behind 2000");
        assert!(w.accepts(1999));
        // Seen 0, 3, 4, 5 before 2000; 977 since. Left the window unseen: 1, 2 and 6..976.
        assert_eq!(w.counts.received, 6);
        assert_eq!(w.counts.lost, 2 + (976 - 6 + 1));
        w.refused(977);
        w.refused(5);
        assert_eq!((w.counts.duplicates, w.counts.out_of_range), (1, 1));
    }
}
