//! Replay protection for legacy CryptoAuth data nonces (cjdns `replay_protector.rs`).
//!
//! A 64-bit window over the 32-bit packet nonces: `base` is the lowest nonce the bitmap
//! covers and bit *i* records nonce `base + i`. A nonce below the window is rejected; a nonce
//! beyond it slides the window forward (by 32 when the low half is full, else just far enough
//! to leave 16 slots of headroom), counting never-seen nonces that fall out as lost. Only call
//! [`ReplayProtector::check`] for packets that already authenticated, or a forger could mark
//! genuine nonces as seen.

/// Counters kept by the replay protector, for statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Packets accepted (base plus bits set).
    pub received: u32,
    /// Nonces that left the window without being seen.
    pub lost: u32,
    /// Nonces rejected because they were below the window.
    pub out_of_range: u32,
    /// Nonces rejected because they were already seen.
    pub duplicates: u32,
}

/// The sliding window of seen nonces.
#[derive(Debug, Clone, Default)]
pub struct ReplayProtector {
    bitfield: u64,
    base: u32,
    duplicates: u32,
    lost: u32,
    out_of_range: u32,
}

/// Why [`ReplayProtector::check`] refused a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// First time this nonce is seen.
    Fresh,
    /// Below the window: too old to tell.
    TooOld,
    /// Seen before.
    Duplicate,
}

impl ReplayProtector {
    /// An empty window starting at nonce 0.
    pub const fn new() -> Self {
        Self {
            bitfield: 0,
            base: 0,
            duplicates: 0,
            lost: 0,
            out_of_range: 0,
        }
    }

    /// Back to the state of [`ReplayProtector::new`] (done after every handshake packet).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Start the window at `first` (done after the first data packet, with its nonce + 1).
    pub fn init(&mut self, first: u32) {
        self.base = first;
        self.bitfield = 0;
    }

    /// The lowest nonce the window covers.
    pub const fn base(&self) -> u32 {
        self.base
    }

    /// Counters.
    pub fn stats(&self) -> ReplayStats {
        ReplayStats {
            received: self.base.wrapping_add(self.bitfield.count_ones()),
            lost: self.lost,
            out_of_range: self.out_of_range,
            duplicates: self.duplicates,
        }
    }

    /// Would `nonce` be accepted? Does not record it.
    pub fn would_accept(&self, nonce: u32) -> bool {
        let mut probe = self.clone();
        probe.check(nonce) == ReplayVerdict::Fresh
    }

    /// Record `nonce` as seen if it is fresh; say whether it was.
    pub fn check(&mut self, nonce: u32) -> ReplayVerdict {
        if nonce < self.base {
            self.out_of_range = self.out_of_range.wrapping_add(1);
            return ReplayVerdict::TooOld;
        }
        let mut offset = nonce - self.base;
        while offset > 63 {
            let shift = if self.bitfield & 0xFFFF_FFFF == 0xFFFF_FFFF {
                32
            } else {
                offset - 47
            };
            self.lost = self.lost.wrapping_add(self.lost_in_shift(shift));
            self.base = self.base.wrapping_add(shift);
            self.bitfield = if shift > 63 {
                0
            } else {
                self.bitfield >> shift
            };
            offset -= shift;
        }
        let mask = 1u64 << offset;
        if self.bitfield & mask != 0 {
            self.duplicates = self.duplicates.wrapping_add(1);
            return ReplayVerdict::Duplicate;
        }
        self.bitfield |= mask;
        ReplayVerdict::Fresh
    }

    fn lost_in_shift(&self, shift: u32) -> u32 {
        match shift {
            0 => 0,
            s if s > 63 => s - self.bitfield.count_ones(),
            s => s - (self.bitfield << (64 - s)).count_ones(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let mut r = ReplayProtector::new();
        r.init(5);
        for n in 5..1000 {
            assert_eq!(r.check(n), ReplayVerdict::Fresh);
            assert_eq!(r.check(n), ReplayVerdict::Duplicate);
        }
        assert_eq!(r.check(4), ReplayVerdict::TooOld);
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn reordering_within_window() {
        let mut r = ReplayProtector::new();
        for chunk in (0u32..6400).collect::<Vec<_>>().chunks(16) {
            for &n in chunk.iter().rev() {
                assert_eq!(r.check(n), ReplayVerdict::Fresh, "nonce {n}");
            }
        }
        assert_eq!(r.stats().lost, 0);
    }

    #[test]
    fn big_jump_counts_losses() {
        let mut r = ReplayProtector::new();
        assert_eq!(r.check(0), ReplayVerdict::Fresh);
        assert_eq!(r.check(1000), ReplayVerdict::Fresh);
        // window now ends at 1000 + 16 slots of headroom: 1000 - 47 is the new base
        assert_eq!(r.base(), 1000 - 47);
        assert_eq!(r.check(952), ReplayVerdict::TooOld);
        assert_eq!(r.check(953), ReplayVerdict::Fresh);
        assert_eq!(r.stats().lost, 952);
    }
}
