//! TUN offloads: the `virtio_net_hdr` that precedes every packet on a TUN device opened with
//! `IFF_VNET_HDR`, and what a router must do with what the kernel then hands it.
//!
//! With checksum and TCP segmentation offload turned on (`TUNSETOFFLOAD` with `TUN_F_CSUM |
//! TUN_F_TSO6`), the kernel passes a local TCP sender's data to the TUN reader as one packet of
//! up to 64 KiB ("GSO"), and TCP and UDP packets with only the pseudo-header part of their
//! checksum filled in ("needs checksum"). That saves the kernel one trip through its stack per
//! segment. Before such a packet goes into cjdns, whose peers (stock cjdns among them) expect
//! ordinary packets that fit the MTU with correct checksums, it must be cut into segments and
//! checksummed here: [`segment`].
//!
//! Pure functions over byte slices, no I/O. The TUN driver is `tools/src/daemon/tun.rs`.

use thiserror::Error;

/// Length of `struct virtio_net_hdr` (without the `num_buffers` field).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` is partial.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was verified (receive direction).
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on the GSO type).
pub const GSO_ECN: u8 = 0x80;

const IPV6_HEADER_LEN: usize = 40;
const NEXT_HEADER_TCP: u8 = 6;
const NEXT_HEADER_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// A parsed `virtio_net_hdr` (little-endian fields, as on every host pktmesh runs on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHdr {
    /// `F_*` flags.
    pub flags: u8,
    /// `GSO_*` type.
    pub gso_type: u8,
    /// Length of the headers before the payload (may be an estimate; not relied upon).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the transport header).
    pub csum_start: u16,
    /// Where, from `csum_start`, the checksum field is.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parses the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let b = bytes.get(..VNET_HDR_LEN)?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    /// The header's bytes.
    pub fn emit(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }
}

/// Why an offloaded packet could not be turned into ordinary packets (it is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// A GSO type other than TCP over IPv6 (the device never asks for others).
    #[error("unsupported GSO type {0:#x}")]
    UnsupportedGso(u8),
    /// Not an IPv6 packet carrying TCP directly after the fixed header, or truncated.
    #[error("GSO packet is not IPv6 + TCP or is truncated")]
    Malformed,
    /// The checksum position is outside the packet.
    #[error("checksum position outside the packet")]
    BadChecksumPosition,
    /// A segment would not fit the output buffer.
    #[error("segment of {0} bytes does not fit the buffer")]
    TooBig(usize),
    /// `gso_size` is zero.
    #[error("GSO packet with segment size 0")]
    ZeroSegmentSize,
}

/// Turns one packet read from a TUN device with offloads (after its [`VnetHdr`]) into
/// ordinary IPv6 packets, handing each to `emit` in order: a GSO packet is cut into segments
/// of `gso_size` payload bytes with their own headers and checksums (built in `scratch`, which
/// must hold the largest segment: the MTU); a packet that needs its checksum gets it, in
/// place; anything else is passed through as it is.
pub fn segment(
    hdr: &VnetHdr,
    packet: &mut [u8],
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    match hdr.gso_type & !GSO_ECN {
        GSO_NONE => {
            if hdr.flags & F_NEEDS_CSUM == 0 {
                emit(packet);
                return Ok(());
            }
            complete_checksum(packet, hdr.csum_start.into(), hdr.csum_offset.into())?;
            emit(packet);
            Ok(())
        }
        GSO_TCPV6 => segment_tcp6(hdr, packet, scratch, emit),
        other => Err(OffloadError::UnsupportedGso(other)),
    }
}

fn segment_tcp6(
    hdr: &VnetHdr,
    packet: &[u8],
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    let mss = usize::from(hdr.gso_size);
    if mss == 0 {
        return Err(OffloadError::ZeroSegmentSize);
    }
    if packet.len() < IPV6_HEADER_LEN + 20 || packet[0] >> 4 != 6 || packet[6] != NEXT_HEADER_TCP {
        return Err(OffloadError::Malformed);
    }
    let tcp_len = usize::from(packet[IPV6_HEADER_LEN + 12] >> 4) * 4;
    let headers = IPV6_HEADER_LEN + tcp_len;
    if tcp_len < 20 || packet.len() < headers {
        return Err(OffloadError::Malformed);
    }
    let (head, payload) = packet.split_at(headers);
    let seq = u32::from_be_bytes([head[44], head[45], head[46], head[47]]);
    let flags = head[IPV6_HEADER_LEN + 13];
    let chunks = payload.len().div_ceil(mss).max(1);
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let len = headers + chunk.len();
        let out = scratch.get_mut(..len).ok_or(OffloadError::TooBig(len))?;
        out[..headers].copy_from_slice(head);
        out[headers..].copy_from_slice(chunk);
        let l4_len = (tcp_len + chunk.len()) as u16;
        out[4..6].copy_from_slice(&l4_len.to_be_bytes());
        let seq_i = seq.wrapping_add((i * mss) as u32);
        out[44..48].copy_from_slice(&seq_i.to_be_bytes());
        let mut f = flags;
        if i + 1 < chunks {
            f &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            f &= !TCP_CWR;
        }
        out[IPV6_HEADER_LEN + 13] = f;
        out[IPV6_HEADER_LEN + 16..IPV6_HEADER_LEN + 18].fill(0);
        let sum = pseudo_header_sum(out, NEXT_HEADER_TCP, u32::from(l4_len))
            + sum_words(&out[IPV6_HEADER_LEN..]);
        out[IPV6_HEADER_LEN + 16..IPV6_HEADER_LEN + 18].copy_from_slice(&fold(sum).to_be_bytes());
        emit(out);
    }
    Ok(())
}

/// Fills in a partial checksum: the field at `start + offset` holds the pseudo-header sum;
/// the checksum covers `start..` (`skb_checksum_help`).
fn complete_checksum(packet: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let field = start + offset;
    if field + 2 > packet.len() {
        return Err(OffloadError::BadChecksumPosition);
    }
    let mut c = fold(sum_words(&packet[start..]));
    // A UDP checksum of zero means "none"; send its other representation.
    let is_udp =
        packet.first().is_some_and(|v| v >> 4 == 6) && packet.get(6) == Some(&NEXT_HEADER_UDP);
    if c == 0 && is_udp && offset == 6 {
        c = 0xffff;
    }
    packet[field..field + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// The ones'-complement sum (not yet folded) of the IPv6 pseudo-header of `packet`.
fn pseudo_header_sum(packet: &[u8], next_header: u8, l4_len: u32) -> u64 {
    sum_words(&packet[8..40]) + u64::from(l4_len) + u64::from(next_header)
}

/// Sum of the big-endian 16-bit words of `data` (odd last byte padded), unfolded. Read four
/// bytes at a time: the ones'-complement sum of 32-bit words folds to the same 16-bit result.
fn sum_words(data: &[u8]) -> u64 {
    let mut sum = 0u64;
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        sum += u64::from(u32::from_be_bytes([q[0], q[1], q[2], q[3]]));
    }
    let rest = quads.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    sum + u64::from(u32::from_be_bytes(tail))
}

/// Folds a sum to 16 bits and complements it: the checksum to store.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv6 + TCP packet with `payload`, a correct checksum, sequence `seq` and `flags`.
    fn tcp6(payload: &[u8], seq: u32, flags: u8, options: usize) -> Vec<u8> {
        let tcp_len = 20 + options;
        let mut p = vec![0u8; 40 + tcp_len + payload.len()];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((tcp_len + payload.len()) as u16).to_be_bytes());
        p[6] = NEXT_HEADER_TCP;
        p[7] = 64;
        p[8] = 0xfc;
        p[23] = 1;
        p[24] = 0xfc;
        p[39] = 2;
        p[40..42].copy_from_slice(&5201u16.to_be_bytes());
        p[42..44].copy_from_slice(&40000u16.to_be_bytes());
        p[44..48].copy_from_slice(&seq.to_be_bytes());
        p[52] = ((tcp_len / 4) as u8) << 4;
        p[53] = flags;
        p[54..56].copy_from_slice(&512u16.to_be_bytes());
        for (i, b) in p[60..60 + options].iter_mut().enumerate() {
            *b = if i % 4 == 0 { 1 } else { i as u8 }; // NOPs and filler
        }
        p[40 + tcp_len..].copy_from_slice(payload);
        let sum = pseudo_header_sum(&p, 6, (tcp_len + payload.len()) as u32) + sum_words(&p[40..]);
        p[56..58].copy_from_slice(&fold(sum).to_be_bytes());
        p
    }

    fn checksum_ok(p: &[u8]) -> bool {
        let l4 = u32::from(u16::from_be_bytes([p[4], p[5]]));
        fold(pseudo_header_sum(p, p[6], l4) + sum_words(&p[40..])) == 0
    }

    #[test]
    fn vnet_hdr_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 72,
            gso_size: 1232,
            csum_start: 40,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.emit()), Some(h));
        assert_eq!(VnetHdr::parse(&[0; 9]), None);
    }

    /// A GSO packet becomes exactly the segments a kernel would have sent one by one.
    #[test]
    fn tcp_gso_packet_becomes_the_segments_tcp_would_have_sent() {
        let payload: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for options in [0usize, 12] {
            let mss = 1232 - options;
            let mut big = tcp6(&payload, 0xffff_f000, 0x18 | TCP_FIN | TCP_CWR, options);
            // What the kernel hands over: the checksum field holds a partial sum; lengths
            // describe the whole super-packet.
            big[56..58].copy_from_slice(&[0x12, 0x34]);
            let hdr = VnetHdr {
                flags: F_NEEDS_CSUM,
                gso_type: GSO_TCPV6,
                hdr_len: (60 + options) as u16,
                gso_size: mss as u16,
                csum_start: 40,
                csum_offset: 16,
            };
            let mut scratch = [0u8; 1304];
            let mut got = Vec::new();
            segment(&hdr, &mut big, &mut scratch, |s| got.push(s.to_vec())).unwrap();
            let expected: Vec<Vec<u8>> = payload
                .chunks(mss)
                .enumerate()
                .map(|(i, c)| {
                    let last = (i + 1) * mss >= payload.len();
                    let mut f = 0x18 | TCP_FIN | TCP_CWR;
                    if !last {
                        f &= !(TCP_FIN | TCP_PSH);
                    }
                    if i > 0 {
                        f &= !TCP_CWR;
                    }
                    tcp6(c, 0xffff_f000u32.wrapping_add((i * mss) as u32), f, options)
                })
                .collect();
            assert_eq!(got.len(), 5000usize.div_ceil(mss));
            assert_eq!(got, expected, "options {options}");
            assert!(got.iter().all(|s| checksum_ok(s) && s.len() <= 1304));
        }
    }

    #[test]
    fn partial_checksums_are_completed_and_plain_packets_pass() {
        let good = tcp6(b"hello, partial checksum", 7, 0x18, 0);
        // The kernel's partial form: the pseudo-header sum, not complemented, in the field.
        let mut partial = good.clone();
        let pseudo = pseudo_header_sum(&good, 6, u32::from(u16::from_be_bytes([good[4], good[5]])));
        partial[56..58].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            csum_start: 40,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut scratch = [0u8; 1304];
        let mut got = Vec::new();
        segment(&hdr, &mut partial, &mut scratch, |s| got.push(s.to_vec())).unwrap();
        assert_eq!(got, vec![good.clone()]);
        got.clear();
        segment(&VnetHdr::default(), &mut good.clone(), &mut scratch, |s| {
            got.push(s.to_vec())
        })
        .unwrap();
        assert_eq!(got, vec![good]);
    }

    #[test]
    fn malformed_offloads_are_errors_not_panics() {
        let mut scratch = [0u8; 1304];
        let gso = |size: u16| VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            gso_size: size,
            csum_start: 40,
            csum_offset: 16,
            ..VnetHdr::default()
        };
        let mut p = tcp6(&[1; 3000], 1, 0x10, 0);
        let mut n = 0;
        assert_eq!(
            segment(&gso(0), &mut p, &mut scratch, |_| n += 1),
            Err(OffloadError::ZeroSegmentSize)
        );
        assert_eq!(
            segment(&gso(1400), &mut p, &mut scratch, |_| n += 1),
            Err(OffloadError::TooBig(1460))
        );
        for cut in [0usize, 10, 39, 40, 59] {
            assert_eq!(
                segment(&gso(1000), &mut p[..cut], &mut scratch, |_| n += 1),
                Err(OffloadError::Malformed)
            );
        }
        let mut not_tcp = p.clone();
        not_tcp[6] = 17;
        assert_eq!(
            segment(&gso(1000), &mut not_tcp, &mut scratch, |_| n += 1),
            Err(OffloadError::Malformed)
        );
        let udp_gso = VnetHdr {
            gso_type: 5,
            ..gso(1000)
        };
        assert_eq!(
            segment(&udp_gso, &mut p, &mut scratch, |_| n += 1),
            Err(OffloadError::UnsupportedGso(5))
        );
        let bad_csum = VnetHdr {
            gso_type: GSO_NONE,
            csum_start: 60,
            csum_offset: 3000,
            ..gso(0)
        };
        assert_eq!(
            segment(&bad_csum, &mut p[..100], &mut scratch, |_| n += 1),
            Err(OffloadError::BadChecksumPosition)
        );
        assert_eq!(n, 0, "nothing is emitted for a rejected packet");
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([8; 32]);
        let mut scratch = [0u8; 1304];
        for _ in 0..20_000 {
            let mut raw = vec![0u8; (rng.next_u32() % 3000) as usize + VNET_HDR_LEN];
            rng.fill_bytes(&mut raw);
            raw[1] &= 0x85; // mostly GSO types we handle
            if raw.len() > 16 {
                raw[VNET_HDR_LEN] = 0x60;
                raw[VNET_HDR_LEN + 6] = 6;
            }
            let hdr = VnetHdr::parse(&raw).unwrap();
            let (h, body) = raw.split_at_mut(VNET_HDR_LEN);
            let gso = h[1] & !GSO_ECN != GSO_NONE;
            let body_len = body.len();
            let _ = segment(&hdr, body, &mut scratch, |s| {
                // Segments fit the scratch buffer; other packets pass through unchanged.
                assert!(if gso {
                    s.len() <= 1304
                } else {
                    s.len() == body_len
                });
            });
        }
    }
}
