//! Packet priorities (local to one switch) and the traffic-class field that carries the
//! virtual-network class between pktmesh switches.
//!
//! A [`Priority`] is a level 0..=63; the egress scheduler serves higher levels first and drops
//! lower levels first. The levels are split into three bands:
//!
//! | levels | who |
//! |---|---|
//! | 48..=63 | traffic within its lease: 48 + the owner's class (0..=15) |
//! | 1..=47 | lease traffic beyond its lease, demoted by the EMA rule (see [`crate::meter`]) |
//! | 0 | free tier: no lease (fail open) |
//!
//! The switch header's 16-bit traffic class (bytes 10–11) carries only the *owner's* class, never
//! the local priority: values 0..=15 are a class, `0xFFFF` means "unclassed" (what every stock
//! cjdns switch writes), and anything else is treated as unclassed too.

/// Header traffic-class value meaning "no class" (stock cjdns switches write it on every hop).
pub const UNCLASSED: u16 = 0xFFFF;

/// A packet's local priority, 0 (free tier) ..= 63.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Priority(u8);

impl Priority {
    /// Free tier: traffic with no lease on this link.
    pub const FREE: Self = Self(0);
    /// Lowest level of demoted lease traffic.
    pub const DEMOTED_MIN: Self = Self(1);
    /// Highest level of demoted lease traffic.
    pub const DEMOTED_MAX: Self = Self(47);
    /// Level of in-lease traffic of class 0; class `c` rides `LEASE_BASE + c`.
    pub const LEASE_BASE: Self = Self(48);
    /// Highest level.
    pub const MAX: Self = Self(63);
    /// Number of levels.
    pub const LEVELS: usize = 64;

    /// The level `level`, or `None` above 63.
    pub const fn new(level: u8) -> Option<Self> {
        if level as usize >= Self::LEVELS {
            None
        } else {
            Some(Self(level))
        }
    }

    /// In-lease priority of owner class `class` (saturates at 15).
    pub const fn in_lease(class: u8) -> Self {
        let c = if class > 15 { 15 } else { class };
        Self(Self::LEASE_BASE.0 + c)
    }

    /// The level.
    pub const fn level(self) -> u8 {
        self.0
    }

    /// Whether this is in-lease traffic.
    pub const fn is_in_lease(self) -> bool {
        self.0 >= Self::LEASE_BASE.0
    }

    /// Whether this is demoted lease traffic.
    pub const fn is_demoted(self) -> bool {
        self.0 >= Self::DEMOTED_MIN.0 && self.0 <= Self::DEMOTED_MAX.0
    }
}

/// The owner class carried by a header traffic-class value, if any.
pub const fn header_class(traffic_class: u16) -> Option<u8> {
    if traffic_class <= 15 {
        Some(traffic_class as u8)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands() {
        assert!(Priority::in_lease(0).is_in_lease());
        assert_eq!(Priority::in_lease(99), Priority::MAX);
        assert!(Priority::DEMOTED_MIN.is_demoted() && Priority::DEMOTED_MAX.is_demoted());
        assert!(!Priority::FREE.is_demoted() && !Priority::FREE.is_in_lease());
        assert_eq!(Priority::new(64), None);
        assert_eq!(header_class(UNCLASSED), None);
        assert_eq!(header_class(7), Some(7));
        assert_eq!(header_class(16), None);
    }
}
