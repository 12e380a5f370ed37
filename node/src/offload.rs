//! TUN offloads: the `virtio_net_hdr` that precedes every packet on a TUN device opened with
//! `IFF_VNET_HDR`, and what a router must do with what the kernel then hands it.
//!
//! With checksum and TCP segmentation offload turned on (`TUNSETOFFLOAD` with `TUN_F_CSUM |
//! TUN_F_TSO6`, and `TUN_F_USO6` where the kernel has it), the kernel passes a local TCP
//! sender's data to the TUN reader as one packet of up to 64 KiB ("GSO"), likewise the
//! datagrams of a UDP sender that uses `UDP_SEGMENT`, and TCP and UDP packets with only the
//! pseudo-header part of their checksum filled in ("needs checksum"). That saves the kernel one trip through its stack per
//! segment. Before such a packet goes into cjdns, whose peers (stock cjdns among them) expect
//! ordinary packets that fit the MTU with correct checksums, it must be cut into segments and
//! checksummed here: [`segment`]. In the other direction a [`Coalescer`] merges a flow's
//! consecutive packets into such super-packets, so the kernel takes them in one write and a
//! receiving application is woken once for all of them.
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
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation offload (one datagram per `gso_size`).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN` (a flag on the GSO type).
pub const GSO_ECN: u8 = 0x80;

const IPV6_HEADER_LEN: usize = 40;
/// IPv6 and UDP headers.
const UDP_HEADERS: usize = IPV6_HEADER_LEN + 8;
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
    /// A GSO type other than TCP or UDP over IPv6 (the device never asks for others).
    #[error("unsupported GSO type {0:#x}")]
    UnsupportedGso(u8),
    /// Not an IPv6 packet carrying TCP (or UDP) directly after the fixed header, or truncated.
    #[error("GSO packet is not IPv6 + TCP/UDP or is truncated")]
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
        GSO_UDP_L4 => segment_udp6(hdr, packet, scratch, emit),
        other => Err(OffloadError::UnsupportedGso(other)),
    }
}

/// Cuts a UDP super-packet into datagrams of `gso_size` payload bytes (the last may be
/// shorter), each with its own length and checksum, as `__udp_gso_segment` would.
fn segment_udp6(
    hdr: &VnetHdr,
    packet: &[u8],
    scratch: &mut [u8],
    emit: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    if packet.len() < UDP_HEADERS || packet[0] >> 4 != 6 || packet[6] != NEXT_HEADER_UDP {
        return Err(OffloadError::Malformed);
    }
    let cut = Cut {
        headers: UDP_HEADERS,
        size: hdr.gso_size,
        next_header: NEXT_HEADER_UDP,
        csum_offset: 6,
    };
    cut.run(
        packet,
        scratch,
        |out, _, _| {
            let udp_len = [out[4], out[5]];
            out[44..46].copy_from_slice(&udp_len);
        },
        emit,
    )
}

/// Cuts a TCP super-packet into MSS segments with consecutive sequence numbers, FIN and PSH
/// only on the last and CWR only on the first, as the kernel's TSO would.
fn segment_tcp6(
    hdr: &VnetHdr,
    packet: &[u8],
    scratch: &mut [u8],
    emit: impl FnMut(&[u8]),
) -> Result<(), OffloadError> {
    if packet.len() < IPV6_HEADER_LEN + 20 || packet[0] >> 4 != 6 || packet[6] != NEXT_HEADER_TCP {
        return Err(OffloadError::Malformed);
    }
    let tcp_len = usize::from(packet[IPV6_HEADER_LEN + 12] >> 4) * 4;
    let headers = IPV6_HEADER_LEN + tcp_len;
    if tcp_len < 20 || packet.len() < headers {
        return Err(OffloadError::Malformed);
    }
    let seq = u32::from_be_bytes([packet[44], packet[45], packet[46], packet[47]]);
    let flags = packet[IPV6_HEADER_LEN + 13];
    let mss = usize::from(hdr.gso_size);
    let cut = Cut {
        headers,
        size: hdr.gso_size,
        next_header: NEXT_HEADER_TCP,
        csum_offset: 16,
    };
    cut.run(
        packet,
        scratch,
        |out, i, last| {
            let seq_i = seq.wrapping_add((i * mss) as u32);
            out[44..48].copy_from_slice(&seq_i.to_be_bytes());
            let mut f = flags;
            if !last {
                f &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                f &= !TCP_CWR;
            }
            out[IPV6_HEADER_LEN + 13] = f;
        },
        emit,
    )
}

/// How to cut a super-packet: the headers every piece repeats, the payload bytes per piece,
/// and where its transport checksum is.
struct Cut {
    headers: usize,
    size: u16,
    next_header: u8,
    csum_offset: usize,
}

impl Cut {
    /// Builds each piece in `scratch` (headers, then its share of the payload; an empty
    /// payload makes one piece), sets its IPv6 payload length, lets `fix(piece, index, last)`
    /// adjust the transport header, computes its checksum and hands it to `emit`.
    fn run(
        &self,
        packet: &[u8],
        scratch: &mut [u8],
        mut fix: impl FnMut(&mut [u8], usize, bool),
        mut emit: impl FnMut(&[u8]),
    ) -> Result<(), OffloadError> {
        let size = usize::from(self.size);
        if size == 0 {
            return Err(OffloadError::ZeroSegmentSize);
        }
        let (head, payload) = packet.split_at(self.headers);
        let pieces = payload.len().div_ceil(size).max(1);
        for (i, chunk) in payload
            .chunks(size)
            .chain(payload.is_empty().then_some(&[][..]))
            .enumerate()
        {
            let len = self.headers + chunk.len();
            let out = scratch.get_mut(..len).ok_or(OffloadError::TooBig(len))?;
            out[..self.headers].copy_from_slice(head);
            out[self.headers..].copy_from_slice(chunk);
            out[4..6].copy_from_slice(&((len - IPV6_HEADER_LEN) as u16).to_be_bytes());
            fix(out, i, i + 1 == pieces);
            let field = IPV6_HEADER_LEN + self.csum_offset;
            out[field..field + 2].fill(0);
            let mut c = fold(l4_sum(out, self.next_header));
            // A UDP checksum of zero means "none"; send its other representation.
            if c == 0 && self.next_header == NEXT_HEADER_UDP {
                c = 0xffff;
            }
            out[field..field + 2].copy_from_slice(&c.to_be_bytes());
            emit(out);
        }
        Ok(())
    }
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

/// The ones'-complement sum (not yet folded) of an IPv6 packet's transport header and
/// payload with its pseudo-header: [`fold`] makes it the checksum to store, or 0 when the
/// stored checksum is right.
fn l4_sum(packet: &[u8], next_header: u8) -> u64 {
    let l4 = packet.get(IPV6_HEADER_LEN..).unwrap_or_default();
    pseudo_header_sum(packet, next_header, l4.len() as u32) + sum_words(l4)
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

/// Most segments merged into one super-packet.
const MAX_COALESCED: usize = 64;
/// Most UDP datagrams merged into one super-packet. The receiving socket is charged for all
/// of them at once, and a UDP socket's default buffer holds about 90 datagrams of 1200 bytes;
/// in the flood benchmark 16 per write (with the daemon yielding after each round) delivered
/// more than 32 or 64 (docs/perf.md).
const MAX_COALESCED_UDP: usize = 16;
/// Largest super-packet (IPv6 payload length is 16 bits).
const MAX_SUPER: usize = 65_535;
const TCP_ACK: u8 = 0x10;

/// Merges consecutive packets of one flow, on their way to a TUN device with offloads, into
/// super-packets the kernel takes in one write (the receiving half of TUN offloads, like GRO
/// on a network card). A packet that cannot be merged is written on its own.
///
/// TCP segments are merged only when nothing but the payload and sequence number differs:
/// same addresses, ports, IPv6 header fields, TCP options, ACK number and window; flags ACK
/// alone (PSH allowed on the last); consecutive sequence numbers; all but the last exactly
/// `gso_size` long. UDP datagrams (only if the device takes UDP segmentation offload) are
/// merged when addresses, ports and IPv6 header fields agree and all but the last have the
/// same length. Each packet's checksum is verified first (a packet with a bad or, for UDP,
/// absent checksum goes on its own, for the kernel to judge), since the super-packet's
/// checksum is the kernel's to trust. Every write is a `virtio_net_hdr` and a packet.
#[derive(Debug)]
pub struct Coalescer {
    /// The super-packet under construction.
    buf: Vec<u8>,
    /// Packets in `buf` (0: empty).
    segments: usize,
    /// What `buf` holds (meaningful when `segments > 0`).
    kind: Kind,
    /// Payload bytes of the first packet (the `gso_size`).
    mss: usize,
    /// Headers (IPv6 + TCP or UDP) of the first packet.
    headers: usize,
    /// TCP: the sequence number the next segment must have.
    next_seq: u32,
    /// The last packet was shorter than `mss` or had PSH: nothing may follow it.
    closed: bool,
    /// Whether UDP datagrams are merged (the device accepts `GSO_UDP_L4`).
    udp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
}

impl Coalescer {
    /// An empty coalescer (its buffer is allocated once, here); `udp`: merge UDP datagrams
    /// too, for a device that takes UDP segmentation offload (Linux ≥ 6.2).
    pub fn new(udp: bool) -> Self {
        Self {
            buf: Vec::with_capacity(MAX_SUPER),
            segments: 0,
            kind: Kind::Tcp,
            mss: 0,
            headers: 0,
            next_seq: 0,
            closed: false,
            udp,
        }
    }

    /// Adds `packet` (an IPv6 packet for the TUN device), writing whatever can no longer grow.
    /// Each write is a `virtio_net_hdr` and the packet behind it, as two slices (for `writev`).
    pub fn push(&mut self, packet: &[u8], mut write: impl FnMut(&[u8], &[u8])) {
        if let Some(seg) = TcpSegment::parse(packet) {
            self.push_tcp(packet, &seg, &mut write);
        } else if let Some(payload) = self.udp.then(|| udp_payload(packet)).flatten() {
            self.push_udp(packet, payload, &mut write);
        } else {
            self.flush(&mut write);
            write(&PLAIN_HDR, packet);
        }
    }

    fn push_tcp(&mut self, packet: &[u8], seg: &TcpSegment, write: &mut impl FnMut(&[u8], &[u8])) {
        if self.segments > 0 && !self.extends_tcp(packet, seg) {
            self.flush(&mut *write);
        }
        if self.segments == 0 {
            if seg.payload == 0 || !seg.mergeable_flags() {
                write(&PLAIN_HDR, packet);
                return;
            }
            self.start(Kind::Tcp, packet, seg.headers, seg.payload);
        } else {
            self.append(&packet[seg.headers..]);
            // As GRO does: a PSH on a later segment is carried by the whole.
            self.buf[IPV6_HEADER_LEN + 13] |= seg.flags & TCP_PSH;
        }
        self.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        self.closed = seg.payload < self.mss || seg.flags & TCP_PSH != 0;
        if self.closed || self.segments >= MAX_COALESCED {
            self.flush(write);
        }
    }

    fn push_udp(&mut self, packet: &[u8], payload: usize, write: &mut impl FnMut(&[u8], &[u8])) {
        if self.segments > 0 && !self.extends_udp(packet, payload) {
            self.flush(&mut *write);
        }
        if self.segments == 0 {
            if payload == 0 {
                write(&PLAIN_HDR, packet);
                return;
            }
            self.start(Kind::Udp, packet, UDP_HEADERS, payload);
        } else {
            self.append(&packet[UDP_HEADERS..]);
        }
        self.closed = payload < self.mss;
        if self.closed || self.segments >= MAX_COALESCED_UDP {
            self.flush(write);
        }
    }

    fn start(&mut self, kind: Kind, packet: &[u8], headers: usize, payload: usize) {
        self.buf.clear();
        self.buf.extend_from_slice(packet);
        self.segments = 1;
        self.kind = kind;
        self.mss = payload;
        self.headers = headers;
    }

    fn append(&mut self, payload: &[u8]) {
        self.buf.extend_from_slice(payload);
        self.segments += 1;
    }

    /// Room for `payload` more bytes behind an open super-packet of `kind`.
    fn open_for(&self, kind: Kind, payload: usize) -> bool {
        !self.closed
            && self.kind == kind
            && payload > 0
            && payload <= self.mss
            && self.buf.len() + payload <= MAX_SUPER
    }

    fn extends_tcp(&self, packet: &[u8], seg: &TcpSegment) -> bool {
        let first = &self.buf[..];
        self.open_for(Kind::Tcp, seg.payload)
            && seg.mergeable_flags()
            && seg.headers == self.headers
            && seg.seq == self.next_seq
            // IPv6 header but the payload length; TCP header but sequence, flags, checksum.
            && packet[..4] == first[..4]
            && packet[6..40] == first[6..40]
            && packet[40..44] == first[40..44]
            && packet[48..53] == first[48..53]
            && packet[54..56] == first[54..56]
            && packet[58..seg.headers] == first[58..seg.headers]
    }

    fn extends_udp(&self, packet: &[u8], payload: usize) -> bool {
        let first = &self.buf[..];
        // IPv6 header but the payload length, and the ports.
        self.open_for(Kind::Udp, payload)
            && packet[..4] == first[..4]
            && packet[6..44] == first[6..44]
    }

    /// Writes the super-packet under construction, if any.
    pub fn flush(&mut self, mut write: impl FnMut(&[u8], &[u8])) {
        match self.segments {
            0 => return,
            // Nothing merged: write it as it came.
            1 => write(&PLAIN_HDR, &self.buf),
            _ => {
                let l4_len = self.buf.len() - IPV6_HEADER_LEN;
                self.buf[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
                let (next_header, gso_type, csum_offset) = match self.kind {
                    Kind::Tcp => (NEXT_HEADER_TCP, GSO_TCPV6, 16),
                    Kind::Udp => {
                        // The UDP length of a super-packet is its whole length, as GRO sets it.
                        self.buf[44..46].copy_from_slice(&(l4_len as u16).to_be_bytes());
                        (NEXT_HEADER_UDP, GSO_UDP_L4, 6)
                    }
                };
                // Partial checksum: the pseudo-header sum, not complemented.
                let pseudo = pseudo_header_sum(&self.buf, next_header, l4_len as u32);
                let c = IPV6_HEADER_LEN + usize::from(csum_offset);
                self.buf[c..c + 2].copy_from_slice(&(!fold(pseudo)).to_be_bytes());
                let hdr = VnetHdr {
                    flags: F_NEEDS_CSUM,
                    gso_type,
                    hdr_len: self.headers as u16,
                    gso_size: self.mss as u16,
                    csum_start: IPV6_HEADER_LEN as u16,
                    csum_offset,
                };
                write(&hdr.emit(), &self.buf);
            }
        }
        self.segments = 0;
        self.closed = false;
    }
}

/// The payload length of an IPv6 + UDP datagram whose lengths agree and whose checksum is
/// present and right; `None` for anything else.
fn udp_payload(p: &[u8]) -> Option<usize> {
    if p.len() < UDP_HEADERS || p[0] >> 4 != 6 || p[6] != NEXT_HEADER_UDP {
        return None;
    }
    let l4_len = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let udp_len = usize::from(u16::from_be_bytes([p[44], p[45]]));
    if IPV6_HEADER_LEN + l4_len != p.len() || udp_len != l4_len || p[46..48] == [0, 0] {
        return None;
    }
    (fold(l4_sum(p, NEXT_HEADER_UDP)) == 0).then_some(l4_len - 8)
}

/// The header of a packet with nothing offloaded.
pub const PLAIN_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// What the coalescer needs of a TCP segment (IPv6, no extension headers, checksum right).
struct TcpSegment {
    headers: usize,
    payload: usize,
    seq: u32,
    flags: u8,
}

impl TcpSegment {
    fn parse(p: &[u8]) -> Option<Self> {
        if p.len() < IPV6_HEADER_LEN + 20 || p[0] >> 4 != 6 || p[6] != NEXT_HEADER_TCP {
            return None;
        }
        let l4_len = usize::from(u16::from_be_bytes([p[4], p[5]]));
        if IPV6_HEADER_LEN + l4_len != p.len() {
            return None;
        }
        let tcp_len = usize::from(p[IPV6_HEADER_LEN + 12] >> 4) * 4;
        if tcp_len < 20 || tcp_len > l4_len {
            return None;
        }
        if fold(l4_sum(p, NEXT_HEADER_TCP)) != 0 {
            return None;
        }
        Some(Self {
            headers: IPV6_HEADER_LEN + tcp_len,
            payload: l4_len - tcp_len,
            seq: u32::from_be_bytes([p[44], p[45], p[46], p[47]]),
            flags: p[IPV6_HEADER_LEN + 13],
        })
    }

    /// ACK, optionally PSH, nothing else (no SYN, FIN, RST, URG, ECE, CWR).
    fn mergeable_flags(&self) -> bool {
        self.flags & !TCP_PSH == TCP_ACK
    }
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

    /// Every write (header and packet, joined) a coalescer makes of `packets`, flushed.
    fn coalesce<P: AsRef<[u8]>>(udp: bool, packets: impl IntoIterator<Item = P>) -> Vec<Vec<u8>> {
        let mut co = Coalescer::new(udp);
        let mut writes = Vec::new();
        for p in packets {
            co.push(p.as_ref(), |h, b| writes.push([h, b].concat()));
        }
        co.flush(|h, b| writes.push([h, b].concat()));
        writes
    }

    fn checksum_ok(p: &[u8]) -> bool {
        let l4 = u32::from(u16::from_be_bytes([p[4], p[5]]));
        fold(pseudo_header_sum(p, p[6], l4) + sum_words(&p[40..])) == 0
    }

    /// Segments a TCP sender sent one by one come out as one super-packet that the kernel's
    /// own segmentation (here: [`segment`]) turns back into exactly those segments.
    #[test]
    fn coalesced_segments_are_one_write_that_splits_back_into_them() {
        let payload: Vec<u8> = (0..6000u32).map(|i| (i * 13 % 251) as u8).collect();
        let mss = 1220;
        let segments: Vec<Vec<u8>> = payload
            .chunks(mss)
            .enumerate()
            .map(|(i, c)| {
                let last = (i + 1) * mss >= payload.len();
                let flags = if last { 0x18 } else { 0x10 };
                tcp6(c, 1000 + (i * mss) as u32, flags, 12)
            })
            .collect();
        let writes = coalesce(true, &segments);
        assert_eq!(
            writes.len(),
            1,
            "PSH on the last segment closed one super-packet"
        );
        let hdr = VnetHdr::parse(&writes[0]).unwrap();
        assert_eq!((hdr.gso_type, hdr.gso_size), (GSO_TCPV6, mss as u16));
        let mut again = Vec::new();
        let mut scratch = [0u8; 1304];
        let mut body = writes[0][VNET_HDR_LEN..].to_vec();
        segment(&hdr, &mut body, &mut scratch, |s| again.push(s.to_vec())).unwrap();
        assert!(
            again == segments,
            "the super-packet does not split back into its segments"
        );
    }

    #[test]
    fn what_must_not_merge_is_written_alone_and_in_order() {
        let mss = 1000;
        let a = tcp6(&[1; 1000], 0, 0x10, 0);
        let b = tcp6(&[2; 1000], 1000, 0x10, 0);
        let gap = tcp6(&[3; 1000], 5000, 0x10, 0); // not the next sequence number
        let fin = tcp6(&[4; 1000], 6000, 0x11, 0); // FIN
        let mut bad = tcp6(&[5; 1000], 7000, 0x10, 0);
        bad[100] ^= 1; // checksum no longer right
        let mut other_port = tcp6(&[6; 1000], 7000, 0x10, 0);
        other_port[41] ^= 1;
        let fix = |p: &mut Vec<u8>| {
            p[56..58].fill(0);
            let l4 = u32::from(u16::from_be_bytes([p[4], p[5]]));
            let c = fold(pseudo_header_sum(p, 6, l4) + sum_words(&p[40..]));
            p[56..58].copy_from_slice(&c.to_be_bytes());
        };
        fix(&mut other_port);
        let mut icmp = a.clone();
        icmp[6] = 58;
        let inputs = [&a, &b, &gap, &fin, &bad, &other_port, &icmp];
        let writes = coalesce(true, inputs);
        // a+b merged; every other packet on its own, in order, behind an empty header.
        assert_eq!(writes.len(), 6);
        let merged = VnetHdr::parse(&writes[0]).unwrap();
        assert_eq!(merged.gso_size, mss);
        assert_eq!(writes[0].len(), VNET_HDR_LEN + 40 + 20 + 2000);
        for (w, p) in writes[1..]
            .iter()
            .zip([&gap, &fin, &bad, &other_port, &icmp])
        {
            assert_eq!(&w[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
            assert_eq!(&w[VNET_HDR_LEN..], &p[..]);
        }
    }

    /// An IPv6 + UDP datagram from port `src` with `payload` and a correct checksum.
    fn udp6(payload: &[u8], src: u16) -> Vec<u8> {
        let l4 = 8 + payload.len();
        let mut p = vec![0u8; 40 + l4];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(l4 as u16).to_be_bytes());
        p[6] = NEXT_HEADER_UDP;
        p[7] = 64;
        p[8] = 0xfc;
        p[23] = 1;
        p[24] = 0xfc;
        p[39] = 2;
        p[40..42].copy_from_slice(&src.to_be_bytes());
        p[42..44].copy_from_slice(&5201u16.to_be_bytes());
        p[44..46].copy_from_slice(&(l4 as u16).to_be_bytes());
        p[48..].copy_from_slice(payload);
        let c = fold(pseudo_header_sum(&p, NEXT_HEADER_UDP, l4 as u32) + sum_words(&p[40..]));
        p[46..48].copy_from_slice(&if c == 0 { 0xffff } else { c }.to_be_bytes());
        p
    }

    /// Datagrams of one flow (equal sizes, a shorter last one) become one UDP GSO write that
    /// the kernel's segmentation (here: [`segment`]) turns back into exactly those datagrams.
    #[test]
    fn udp_datagrams_coalesce_into_one_write_that_splits_back_into_them() {
        let datagrams: Vec<Vec<u8>> = (0..5u8)
            .map(|i| {
                let len = if i == 4 { 300 } else { 1200 };
                let payload: Vec<u8> = (0..len).map(|j| (j as u8).wrapping_mul(i + 3)).collect();
                udp6(&payload, 40000)
            })
            .collect();
        let writes = coalesce(true, &datagrams);
        assert_eq!(
            writes.len(),
            1,
            "the shorter last datagram closes the super-packet"
        );
        let hdr = VnetHdr::parse(&writes[0]).unwrap();
        assert_eq!(
            (hdr.gso_type, hdr.gso_size, hdr.flags, hdr.csum_offset),
            (GSO_UDP_L4, 1200, F_NEEDS_CSUM, 6)
        );
        let mut body = writes[0][VNET_HDR_LEN..].to_vec();
        assert_eq!(body.len(), 48 + 4 * 1200 + 300);
        let mut again = Vec::new();
        let mut scratch = [0u8; 1304];
        segment(&hdr, &mut body, &mut scratch, |s| again.push(s.to_vec())).unwrap();
        assert!(
            again == datagrams,
            "the super-packet does not split back into its datagrams"
        );
    }

    #[test]
    fn udp_that_must_not_merge_is_written_alone_and_in_order() {
        let a = udp6(&[1; 1000], 40000);
        let b = udp6(&[2; 1000], 40000);
        let bigger = udp6(&[3; 1100], 40000); // longer than the first: not a segment of it
        let other_port = udp6(&[4; 1100], 40001);
        let mut no_checksum = udp6(&[5; 1100], 40001);
        no_checksum[46..48].fill(0);
        let mut bad = udp6(&[6; 1100], 40001);
        bad[700] ^= 1;
        let inputs = [&a, &b, &bigger, &other_port, &no_checksum, &bad];
        let writes = coalesce(true, inputs);
        assert_eq!(writes.len(), 5, "a+b merged, the rest alone");
        assert_eq!(VnetHdr::parse(&writes[0]).unwrap().gso_type, GSO_UDP_L4);
        for (w, p) in writes[1..]
            .iter()
            .zip([&bigger, &other_port, &no_checksum, &bad])
        {
            assert_eq!(&w[..VNET_HDR_LEN], &PLAIN_HDR);
            assert_eq!(&w[VNET_HDR_LEN..], &p[..]);
        }
        // A device without UDP segmentation offload gets every datagram as it came.
        let writes = coalesce(false, [&a, &b]);
        assert_eq!(
            writes,
            vec![[&PLAIN_HDR[..], &a].concat(), [&PLAIN_HDR[..], &b].concat()]
        );
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
        // UDP segmentation of a TCP packet, and of one too short for its UDP header.
        let udp_gso = VnetHdr {
            gso_type: GSO_UDP_L4,
            ..gso(1000)
        };
        assert_eq!(
            segment(&udp_gso, &mut p, &mut scratch, |_| n += 1),
            Err(OffloadError::Malformed)
        );
        let mut runt = not_tcp[..44].to_vec();
        assert_eq!(
            segment(&udp_gso, &mut runt, &mut scratch, |_| n += 1),
            Err(OffloadError::Malformed)
        );
        let sctp_gso = VnetHdr {
            gso_type: 3,
            ..gso(1000)
        };
        assert_eq!(
            segment(&sctp_gso, &mut p, &mut scratch, |_| n += 1),
            Err(OffloadError::UnsupportedGso(3))
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
