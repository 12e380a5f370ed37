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
//! The switch header's 16-bit traffic class (bytes 10–11) never carries the local priority. It
//! carries what the next pktmesh switch needs to find the packet's lease ([`HeaderClass`]):
//!
//! | value (binary) | meaning |
//! |---|---|
//! | `0000 0000 0000 cccc` | owner class `c`, virtual network unknown |
//! | `10tt tttt tttt cccc` | owner class `c` in the virtual network with tag `t` (1..=1023); tag 0: a pktmesh switch found no lease for it (free tier) |
//! | anything else, e.g. `0xFFFF` (what every stock cjdns switch writes) | unclassed |

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

/// Traffic-class bits that mark a tagged value (`10` in the top two bits).
pub const TAG_MARK: u16 = 0x8000;
/// Mask of the marker bits.
const TAG_MARK_MASK: u16 = 0xC000;
/// Tag a pktmesh switch writes when it found no lease for a packet on a port that carries leases.
pub const FREE_TAG: u16 = 0;
/// Number of distinct network tags (1..=1023 name networks, 0 is [`FREE_TAG`]).
pub const NETWORK_TAGS: u16 = 1023;

/// What a header traffic-class value says about the packet's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderClass {
    /// Nothing known (a stock cjdns switch was on the way, or an originator wrote nothing).
    Unclassed,
    /// The owner's class, network unknown.
    Class(u8),
    /// Tagged by a pktmesh switch upstream: the network's tag (0: no lease) and the class.
    Tagged {
        /// [`network_tag`] of the packet's virtual network, or [`FREE_TAG`].
        tag: u16,
        /// The owner's class.
        class: u8,
    },
}

impl HeaderClass {
    /// Decodes a header traffic-class value.
    pub const fn parse(traffic_class: u16) -> Self {
        if traffic_class <= 15 {
            Self::Class(traffic_class as u8)
        } else if traffic_class & TAG_MARK_MASK == TAG_MARK {
            Self::Tagged {
                tag: (traffic_class >> 4) & 0x3ff,
                class: (traffic_class & 0xf) as u8,
            }
        } else {
            Self::Unclassed
        }
    }

    /// The owner class, if the value carries one.
    pub const fn class(self) -> Option<u8> {
        match self {
            Self::Unclassed => None,
            Self::Class(c) | Self::Tagged { class: c, .. } => Some(c),
        }
    }
}

/// The traffic-class value for network tag `tag` (0..=1023) and owner class `class` (0..=15).
pub const fn tagged(tag: u16, class: u8) -> u16 {
    TAG_MARK | ((tag & 0x3ff) << 4) | (class & 0xf) as u16
}

/// The tag of virtual network `network` (≠ 0): `1 + network mod 1023`. Two networks with the
/// same tag cannot share a port of one node (the engine refuses the second, `PairInUse`).
pub const fn network_tag(network: u64) -> u16 {
    1 + (network % NETWORK_TAGS as u64) as u16
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

    #[test]
    fn traffic_class_values() {
        assert_eq!(HeaderClass::parse(0xffff), HeaderClass::Unclassed);
        assert_eq!(HeaderClass::parse(0x4000), HeaderClass::Unclassed);
        assert_eq!(HeaderClass::parse(16), HeaderClass::Unclassed);
        assert_eq!(HeaderClass::parse(9), HeaderClass::Class(9));
        for tag in [FREE_TAG, 1, 517, 1023] {
            for class in [0u8, 7, 15] {
                let v = tagged(tag, class);
                assert_ne!(v, 0xffff);
                assert_eq!(HeaderClass::parse(v), HeaderClass::Tagged { tag, class });
                assert_eq!(HeaderClass::parse(v).class(), Some(class));
            }
        }
        assert_eq!(network_tag(1), 2);
        assert_eq!(network_tag(1022), 1023);
        assert_eq!(network_tag(1023), 1);
        assert!((0..5000u64).all(|n| (1..=1023).contains(&network_tag(n))));
    }
}
