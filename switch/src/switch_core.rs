//! SwitchCore: the per-packet forwarding decision of a cjdns switch (`switch/SwitchCore.c`).
//!
//! A switch has up to 257 interface slots; slot 1 is always the node's own router. For a packet
//! arriving on slot `s`, the switch reads the first director of the label, checks that the
//! return director for `s` fits, ORs the bit-reversed return director into the top of the
//! label, shifts the consumed bits out, adds them to the label shift, marks the traffic class
//! unclassed (unless told to preserve it, [`TrafficClassPolicy`]) and hands the packet to the
//! destination slot. [`SwitchCore::forward`] does this in
//! place over the packet buffer and never allocates; when the packet cannot be forwarded it
//! says which ERROR to send back out of the arrival slot ([`crate::control::write_switch_error`]
//! builds it from the untouched packet).
//!
//! What does not live here: queueing and scheduling per port, and the interfaces themselves.

use thiserror::Error;

use crate::control::ErrorCode;
use crate::header::{HEADER_LEN, TRAFFIC_CLASS_UNCLASSED};
use crate::label::Label;
use crate::scheme::EncodingScheme;

/// Interface slots a switch has (0..=256).
pub const SLOT_COUNT: usize = 257;

/// The slot of the node's own router.
pub const ROUTER_SLOT: u16 = 1;

/// A packet shorter than this gets no ERROR reply (it could not carry a cause).
const ERROR_MIN_CAUSE: usize = HEADER_LEN + 4;

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Forward {
    /// The header was rewritten; hand the packet to this slot (slot 1 is the router).
    Deliver {
        /// Destination slot.
        to: u16,
    },
    /// The packet is unchanged; send an ERROR with this code back out of the arrival slot.
    SendError {
        /// The error to report.
        code: ErrorCode,
    },
    /// Drop silently.
    Drop(DropReason),
}

/// Why a packet was dropped without an error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than a switch header.
    Runt,
    /// Forwarding failed but the packet is too short to quote in an error.
    ErrorRunt(ErrorCode),
    /// Forwarding failed and the packet asked for no error.
    ErrorSuppressed(ErrorCode),
    /// The label shift would pass 63 ("label rolled over").
    LabelRolledOver,
    /// The arrival slot is not an interface of this switch.
    UnknownArrivalSlot,
}

/// What a switch does with the 16-bit traffic class of packets it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrafficClassPolicy {
    /// Write `0xFFFF` ("unclassed"), as every stock cjdns switch does. The default.
    #[default]
    Overwrite,
    /// Leave it as it arrived, so a priority class set by a pktmesh sender survives pktmesh
    /// switches (see `docs/leases.md`; stock switches on the path still overwrite it).
    Preserve,
}

/// Interface table errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SlotError {
    /// All slots are taken.
    #[error("all switch slots are in use")]
    Full,
    /// The slot number is out of range or cannot be encoded by the scheme.
    #[error("slot {0} cannot be used by this switch")]
    Invalid(u16),
    /// The slot is already in use.
    #[error("slot {0} is already in use")]
    Occupied(u16),
}

/// A switch: its encoding scheme and which slots have interfaces.
#[derive(Debug, Clone)]
pub struct SwitchCore {
    scheme: EncodingScheme,
    occupied: [u64; SLOT_COUNT.div_ceil(64)],
    self_route_width: u32,
    traffic_class: TrafficClassPolicy,
}

impl SwitchCore {
    /// A switch with only its router attached (slot 1).
    pub fn new(scheme: EncodingScheme) -> Self {
        let mut core = Self {
            scheme,
            occupied: [0; SLOT_COUNT.div_ceil(64)],
            self_route_width: scheme.forms()[0].width(),
            traffic_class: TrafficClassPolicy::Overwrite,
        };
        core.set(ROUTER_SLOT, true);
        core
    }

    /// Chooses what happens to the traffic class of forwarded packets.
    pub fn set_traffic_class_policy(&mut self, policy: TrafficClassPolicy) {
        self.traffic_class = policy;
    }

    /// The switch's encoding scheme.
    pub fn scheme(&self) -> &EncodingScheme {
        &self.scheme
    }

    fn set(&mut self, slot: u16, on: bool) {
        let (word, bit) = (usize::from(slot) / 64, slot % 64);
        if on {
            self.occupied[word] |= 1 << bit;
        } else {
            self.occupied[word] &= !(1 << bit);
        }
    }

    /// Whether `slot` has an interface.
    pub fn has_interface(&self, slot: u32) -> bool {
        let slot = slot as usize;
        slot < SLOT_COUNT && self.occupied[slot / 64] & (1 << (slot % 64)) != 0
    }

    /// Attaches an interface in the lowest free slot (starting at 0, as cjdns does) and returns
    /// the slot and the label that reaches the peer behind it.
    pub fn add_interface(&mut self) -> Result<(u16, Label), SlotError> {
        let slot = (0..SLOT_COUNT as u16)
            .find(|&s| {
                !self.has_interface(u32::from(s))
                    && self.scheme.label_for_interface(u32::from(s)).is_some()
            })
            .ok_or(SlotError::Full)?;
        self.add_interface_at(slot).map(|label| (slot, label))
    }

    /// Attaches an interface in a chosen slot and returns the label of the peer behind it.
    pub fn add_interface_at(&mut self, slot: u16) -> Result<Label, SlotError> {
        if usize::from(slot) >= SLOT_COUNT || slot == ROUTER_SLOT {
            return Err(SlotError::Invalid(slot));
        }
        if self.has_interface(u32::from(slot)) {
            return Err(SlotError::Occupied(slot));
        }
        let label = self
            .scheme
            .label_for_interface(u32::from(slot))
            .ok_or(SlotError::Invalid(slot))?;
        self.set(slot, true);
        Ok(label)
    }

    /// Detaches the interface in `slot` (the router slot cannot be removed).
    pub fn remove_interface(&mut self, slot: u16) {
        if slot != ROUTER_SLOT && usize::from(slot) < SLOT_COUNT {
            self.set(slot, false);
        }
    }

    /// Width and destination of the first director, and width needed to encode `from`.
    #[inline]
    fn decode(&self, label: u64, from: u32) -> Option<Directors> {
        if self.scheme.is_358() {
            let (bits, dest) = if label & 1 != 0 {
                let v = ((label >> 1) & 7) as u32;
                (
                    4,
                    match v {
                        0 => 1,
                        1 => 0,
                        v => v,
                    },
                )
            } else if label & 2 != 0 {
                let v = ((label >> 2) & 0x1f) as u32;
                (7, v + u32::from(v != 0))
            } else {
                let v = ((label >> 2) & 0xff) as u32;
                (10, v + u32::from(v != 0))
            };
            let source_bits = if from < 8 {
                4
            } else if from < 33 {
                7
            } else {
                10
            };
            return Some(Directors {
                bits,
                dest,
                source_bits,
            });
        }
        let (dest, form) = self.scheme.parse_director(label)?;
        let source_form = self.scheme.natural_form(from)?;
        Some(Directors {
            bits: self.scheme.forms()[form].width(),
            dest,
            source_bits: self.scheme.forms()[source_form].width(),
        })
    }

    /// The director for `from` at exactly `bits` bits (`NumberCompress_getCompressed`); the
    /// router is always `1`, whatever the width.
    #[inline]
    fn compress(&self, from: u32, bits: u32) -> u64 {
        if from == u32::from(ROUTER_SLOT) {
            return 1;
        }
        if self.scheme.is_358() {
            let from = u64::from(from);
            return match (bits, from) {
                (4, 0) => 3,
                (4, n) => (n << 1) | 1,
                (7, 0) => 2,
                (7, n) => ((n - 1) << 2) | 2,
                (_, 0) => 0,
                (_, n) => (n - 1) << 2,
            };
        }
        let form = self.scheme.forms().iter().position(|f| f.width() == bits);
        form.and_then(|i| self.scheme.serialize_director(from, Some(i)))
            .map_or(0, |(d, _)| d)
    }

    /// Decides where `packet`, which arrived on slot `from`, goes, rewriting its header in place
    /// when it is forwarded. Bit-exact with cjdns 22.x `SwitchCore.c`.
    pub fn forward(&self, from: u16, packet: &mut [u8]) -> Forward {
        let Some(head) = packet.first_chunk_mut::<HEADER_LEN>() else {
            return Forward::Drop(DropReason::Runt);
        };
        let from32 = u32::from(from);
        if !self.has_interface(from32) {
            return Forward::Drop(DropReason::UnknownArrivalSlot);
        }
        let label = u64::from_be_bytes([
            head[0], head[1], head[2], head[3], head[4], head[5], head[6], head[7],
        ]);
        let suppress = head[8] & 1 != 0;
        let fail = |code: ErrorCode, packet_len: usize| -> Forward {
            if packet_len < ERROR_MIN_CAUSE {
                Forward::Drop(DropReason::ErrorRunt(code))
            } else if suppress {
                Forward::Drop(DropReason::ErrorSuppressed(code))
            } else {
                Forward::SendError { code }
            }
        };
        let packet_len = packet.len();
        let Some(Directors {
            mut bits,
            dest,
            source_bits,
        }) = self.decode(label, from32)
        else {
            return fail(ErrorCode::MALFORMED_ADDRESS, packet_len);
        };

        let router = u32::from(ROUTER_SLOT);
        if dest == router && (label & low_mask(bits)) != 1 {
            return fail(ErrorCode::MALFORMED_ADDRESS, packet_len);
        }
        if source_bits > bits {
            if dest == router {
                // The self route 0…01 is one director wide whatever its width, so it may be
                // read as wide as the return director needs if the bits above it are free.
                if (label ^ 1) & low_mask(source_bits + self.self_route_width) != 0 {
                    return fail(ErrorCode::RETURN_PATH_INVALID, packet_len);
                }
                bits = source_bits;
            } else if from32 == router {
                if label >> (bits + 64 - source_bits) != 0 {
                    return fail(ErrorCode::MALFORMED_ADDRESS, packet_len);
                }
            } else {
                return fail(ErrorCode::MALFORMED_ADDRESS, packet_len);
            }
        }
        if !self.has_interface(dest) {
            return fail(ErrorCode::MALFORMED_ADDRESS, packet_len);
        }

        let shift = u32::from(packet[9] & 0x3f) + bits;
        if shift > 63 {
            return Forward::Drop(DropReason::LabelRolledOver);
        }
        let return_director = self.compress(from32, bits).reverse_bits();
        let next = (label >> bits) | return_director;
        packet[..8].copy_from_slice(&next.to_be_bytes());
        packet[9] = (packet[9] & 0xc0) | shift as u8;
        if self.traffic_class == TrafficClassPolicy::Overwrite {
            packet[10..12].copy_from_slice(&TRAFFIC_CLASS_UNCLASSED.to_be_bytes());
        }
        // dest < SLOT_COUNT since has_interface(dest) held.
        Forward::Deliver { to: dest as u16 }
    }
}

#[derive(Clone, Copy)]
struct Directors {
    bits: u32,
    dest: u32,
    source_bits: u32,
}

const fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}
