//! IPv6 packets from the TUN device to cjdns content and back (`net/TUNAdapter.c`).
//!
//! cjdns does not carry the 40-byte IPv6 header: the sender drops it and sends a 4-byte
//! DataHeader whose content type is the IPv6 next header; the receiver rebuilds the header with
//! hop limit 42, the sender's address as source and its own as destination. Traffic class,
//! flow label and hop limit are lost on the way, as in cjdns.
//!
//! Both directions work in place: the 40 bytes of the IPv6 header are exactly the room the
//! DataHeader (outgoing) or the end-to-end data header (incoming) occupies.

use pktmesh_crypto_auth::Address;
use thiserror::Error;

/// Size of the IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;

/// Size of the cjdns DataHeader (version/flags, unused, content type).
pub const DATA_HEADER_LEN: usize = 4;

/// Hop limit cjdns writes into rebuilt IPv6 headers.
pub const REBUILT_HOP_LIMIT: u8 = 64 - 22;

/// The content type of CJDHT (pathfinder) messages.
pub const CONTENT_TYPE_CJDHT: u16 = 256;

/// The content type of IpTunnel messages.
pub const CONTENT_TYPE_IPTUN: u16 = 257;

/// Why a packet read from the TUN device is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TunDrop {
    /// Shorter than an IPv6 header.
    #[error("packet of {0} bytes is too short for IPv6")]
    Runt(usize),
    /// Not IPv6 (IpTunnel is not supported).
    #[error("not an IPv6 packet (version {0})")]
    NotIpv6(u8),
    /// The payload length field disagrees with the packet.
    #[error("IPv6 payload length {claimed} but {actual} bytes follow the header")]
    BadLength {
        /// What the header says.
        claimed: usize,
        /// What is there.
        actual: usize,
    },
    /// The source is not this node's address.
    #[error("source address is not ours")]
    ForeignSource,
    /// The destination is outside fc00::/8.
    #[error("destination is not a cjdns address")]
    NotCjdnsDestination,
    /// The destination is this node.
    #[error("destination is this node")]
    ToSelf,
}

/// An outgoing packet converted for a cjdns session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// The destination node.
    pub destination: Address,
    /// Offset in the buffer where the DataHeader now starts (header + payload to the end).
    pub data_offset: usize,
}

/// The destination address of an IPv6 packet, unchecked (`None` if shorter than a header).
pub fn destination(packet: &[u8]) -> Option<Address> {
    let dst = packet.get(24..40)?.first_chunk::<16>()?;
    Some(Address::from_bytes(*dst))
}

/// Converts an IPv6 packet read from TUN into `[DataHeader][payload]` in place.
pub fn from_tun(packet: &mut [u8], own: &Address) -> Result<Outgoing, TunDrop> {
    let len = packet.len();
    let Some(header) = packet.first_chunk::<IPV6_HEADER_LEN>() else {
        return Err(TunDrop::Runt(len));
    };
    let version = header[0] >> 4;
    if version != 6 {
        return Err(TunDrop::NotIpv6(version));
    }
    let claimed = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let actual = len - IPV6_HEADER_LEN;
    if claimed != actual {
        return Err(TunDrop::BadLength { claimed, actual });
    }
    let next_header = header[6];
    let mut src = [0u8; 16];
    src.copy_from_slice(&header[8..24]);
    if &src != own.as_bytes() {
        return Err(TunDrop::ForeignSource);
    }
    let Some(destination) = destination(header) else {
        return Err(TunDrop::Runt(len));
    };
    if !destination.is_valid() {
        return Err(TunDrop::NotCjdnsDestination);
    }
    if &destination == own {
        return Err(TunDrop::ToSelf);
    }
    let data_offset = IPV6_HEADER_LEN - DATA_HEADER_LEN;
    write_data_header(&mut packet[data_offset..], u16::from(next_header));
    Ok(Outgoing {
        destination,
        data_offset,
    })
}

/// Writes a DataHeader (version 1, no flags) for `content_type` at the front of `out`.
pub fn write_data_header(out: &mut [u8], content_type: u16) {
    if let Some(h) = out.first_chunk_mut::<DATA_HEADER_LEN>() {
        let [hi, lo] = content_type.to_be_bytes();
        *h = [0x10, 0, hi, lo];
    }
}

/// Reads the content type of a DataHeader; `None` if too short or not version 1.
pub fn read_data_header(data: &[u8]) -> Option<u16> {
    let h = data.first_chunk::<DATA_HEADER_LEN>()?;
    (h[0] >> 4 == 1).then(|| u16::from_be_bytes([h[2], h[3]]))
}

/// Rebuilds the IPv6 header for an incoming `[DataHeader][payload]` at `buf[data_offset..]`,
/// which must have at least 36 bytes in front of it (the header overwrites them and the
/// DataHeader). Returns the offset where the IPv6 packet starts, or `None` when there is no
/// room, the content type is not an IP protocol, or the payload is longer than IPv6 allows.
pub fn to_tun(
    buf: &mut [u8],
    data_offset: usize,
    source: &Address,
    own: &Address,
) -> Option<usize> {
    let content_type = read_data_header(buf.get(data_offset..)?)?;
    let next_header = u8::try_from(content_type).ok()?;
    let start = (data_offset + DATA_HEADER_LEN).checked_sub(IPV6_HEADER_LEN)?;
    let payload_len = u16::try_from(buf.len() - data_offset - DATA_HEADER_LEN).ok()?;
    let header = buf.get_mut(start..start + IPV6_HEADER_LEN)?;
    header[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    header[4..6].copy_from_slice(&payload_len.to_be_bytes());
    header[6] = next_header;
    header[7] = REBUILT_HOP_LIMIT;
    header[8..24].copy_from_slice(source.as_bytes());
    header[24..40].copy_from_slice(own.as_bytes());
    Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> Address {
        let mut a = [0u8; 16];
        a[0] = 0xfc;
        a[15] = last;
        Address::from_bytes(a)
    }

    fn icmp_packet(src: &Address, dst: &Address, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0x0a, 0xbc, 0xde];
        p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        p.push(58);
        p.push(64);
        p.extend_from_slice(src.as_bytes());
        p.extend_from_slice(dst.as_bytes());
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn round_trip_through_cjdns_form() {
        let (a, b) = (addr(1), addr(2));
        let mut p = icmp_packet(&a, &b, b"\x80\x00echo");
        let out = from_tun(&mut p, &a).unwrap();
        assert_eq!(out.destination, b);
        assert_eq!(&p[out.data_offset..out.data_offset + 4], &[0x10, 0, 0, 58]);
        assert_eq!(&p[out.data_offset + 4..], b"\x80\x00echo");
        // On the far side: rebuilt with hop limit 42, flow label gone.
        let start = to_tun(&mut p, out.data_offset, &a, &b).unwrap();
        assert_eq!(start, 0);
        let mut expected = icmp_packet(&a, &b, b"\x80\x00echo");
        expected[1..4].fill(0);
        expected[7] = 42;
        assert_eq!(p, expected);
    }

    #[test]
    fn tun_drops() {
        let (a, b) = (addr(1), addr(2));
        assert_eq!(from_tun(&mut [0x60; 10], &a), Err(TunDrop::Runt(10)));
        let mut v4 = icmp_packet(&a, &b, b"x");
        v4[0] = 0x45;
        assert_eq!(from_tun(&mut v4, &a), Err(TunDrop::NotIpv6(4)));
        let mut foreign = icmp_packet(&b, &a, b"x");
        assert_eq!(from_tun(&mut foreign, &a), Err(TunDrop::ForeignSource));
        let mut to_self = icmp_packet(&a, &a, b"x");
        assert_eq!(from_tun(&mut to_self, &a), Err(TunDrop::ToSelf));
        let mut outside = icmp_packet(&a, &Address::from_bytes([0xfd; 16]), b"x");
        assert_eq!(
            from_tun(&mut outside, &a),
            Err(TunDrop::NotCjdnsDestination)
        );
        let mut short = icmp_packet(&a, &b, b"xyz");
        short.pop();
        assert!(matches!(
            from_tun(&mut short, &a),
            Err(TunDrop::BadLength { .. })
        ));
    }

    #[test]
    fn non_ip_content_is_not_rebuilt() {
        let (a, b) = (addr(1), addr(2));
        let mut buf = vec![0u8; 36];
        buf.extend_from_slice(&[0x10, 0, 1, 0, b'd', b'e']);
        assert_eq!(to_tun(&mut buf, 36, &a, &b), None);
        let mut no_room = vec![0x10, 0, 0, 58, 1, 2];
        assert_eq!(to_tun(&mut no_room, 0, &a, &b), None);
    }
}
