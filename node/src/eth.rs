//! Ethernet peering as cjdns' ETHInterface does it: the 6-byte frame header that follows the
//! Ethernet header of every frame with ethertype `0xFC00`, and how an Ethernet peer (a MAC on
//! one device) is named inside the node.
//!
//! A frame payload is `[version 0][zero][length: payload + 6, BE][FC 00][payload]`, where the
//! payload is a CryptoAuth message to or from a peer, or — when the frame went to
//! `ff:ff:ff:ff:ff:ff` — a 56-byte beacon body ([`crate::beacon::Beacon::parse_body`]). The
//! length lets a receiver strip the padding Ethernet adds to short frames.
//!
//! The node keys its peers by link address ([`std::net::SocketAddr`]). An Ethernet peer gets
//! one that no UDP peer can have ([`EthLink::link_address`]): the IPv6 link-local address made
//! from its MAC (modified EUI-64), scoped to the device's interface index, with port 0. The
//! daemon sends packets for such an address as Ethernet frames; everything else in the node
//! treats it like any other peer.
//!
//! Sockets (`AF_PACKET`) are the daemon's; this module is bytes only.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use thiserror::Error;

/// The ethertype cjdns frames carry.
pub const ETHERTYPE: u16 = 0xFC00;
/// Size of the cjdns frame header.
pub const HEADER_LEN: usize = 6;
/// The only frame header version.
pub const VERSION: u8 = 0;
/// The broadcast MAC beacons go to.
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// The largest frame payload cjdns reads (header included); Ethernet's 1500 less 4 spare bytes.
pub const MAX_FRAME: usize = 1496;

/// Why a frame is dropped (cjdns drops the same frames, silently).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Shorter than the header.
    #[error("frame of {0} bytes has no cjdns header")]
    Runt(usize),
    /// A header version other than 0.
    #[error("unknown frame header version {0}")]
    Version(u8),
    /// The length field claims more than the frame holds (or less than the header).
    #[error("length field {claimed} does not fit a frame of {len} bytes")]
    Length {
        /// The length field.
        claimed: u16,
        /// The frame's size.
        len: usize,
    },
    /// The header does not end in `FC 00`.
    #[error("bad frame magic")]
    BadMagic,
}

/// The payload of a received frame, without its header and any Ethernet padding. Checks run
/// in cjdns' order: size, version, length, magic.
pub fn payload(frame: &[u8]) -> Result<&[u8], FrameError> {
    let Some((header, rest)) = frame.split_first_chunk::<HEADER_LEN>() else {
        return Err(FrameError::Runt(frame.len()));
    };
    if header[0] != VERSION {
        return Err(FrameError::Version(header[0]));
    }
    let claimed = u16::from_be_bytes([header[2], header[3]]);
    let payload = usize::from(claimed)
        .checked_sub(HEADER_LEN)
        .and_then(|n| rest.get(..n))
        .ok_or(FrameError::Length {
            claimed,
            len: frame.len(),
        })?;
    if u16::from_be_bytes([header[4], header[5]]) != ETHERTYPE {
        return Err(FrameError::BadMagic);
    }
    Ok(payload)
}

/// The header for a payload of `payload_len` bytes, or `None` if no frame can hold it.
pub fn header(payload_len: usize) -> Option<[u8; HEADER_LEN]> {
    let length = u16::try_from(payload_len.checked_add(HEADER_LEN)?).ok()?;
    let [l0, l1] = length.to_be_bytes();
    let [m0, m1] = ETHERTYPE.to_be_bytes();
    Some([VERSION, 0, l0, l1, m0, m1])
}

/// An Ethernet peer: a MAC address on the device with this interface index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthLink {
    /// The device's interface index.
    pub ifindex: u32,
    /// The peer's MAC address.
    pub mac: [u8; 6],
}

impl EthLink {
    /// The link address the node knows this peer by: `[fe80::<EUI-64 of mac>%ifindex]:0`.
    pub fn link_address(&self) -> SocketAddr {
        let m = self.mac;
        let ip = Ipv6Addr::from([
            0xfe,
            0x80,
            0,
            0,
            0,
            0,
            0,
            0,
            m[0] ^ 0x02,
            m[1],
            m[2],
            0xff,
            0xfe,
            m[3],
            m[4],
            m[5],
        ]);
        SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, self.ifindex))
    }

    /// The Ethernet peer a link address names, if it names one (UDP peers never have port 0
    /// and a link-local EUI-64 address with a scope).
    pub fn from_link_address(address: &SocketAddr) -> Option<Self> {
        let SocketAddr::V6(v6) = address else {
            return None;
        };
        let o = v6.ip().octets();
        let eui64 = o[..8] == [0xfe, 0x80, 0, 0, 0, 0, 0, 0] && o[11] == 0xff && o[12] == 0xfe;
        if v6.port() != 0 || v6.scope_id() == 0 || v6.flowinfo() != 0 || !eui64 {
            return None;
        }
        Some(Self {
            ifindex: v6.scope_id(),
            mac: [o[8] ^ 0x02, o[9], o[10], o[13], o[14], o[15]],
        })
    }
}

impl fmt::Display for EthLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%{}", mac_text(&self.mac), self.ifindex)
    }
}

/// A MAC address as `02:00:5e:10:00:01`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    let m = mac;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// How a peer's link address reads in logs and the admin API: the MAC (with the interface
/// index) for Ethernet peers, `ip:port` otherwise.
pub fn display_link(address: &SocketAddr) -> String {
    match EthLink::from_link_address(address) {
        Some(link) => link.to_string(),
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_and_round_trip() {
        let h = header(100).unwrap();
        assert_eq!(h, [0, 0, 0, 106, 0xfc, 0x00]);
        let mut frame = h.to_vec();
        frame.extend_from_slice(&[7u8; 100]);
        assert_eq!(payload(&frame), Ok(&[7u8; 100][..]));
        assert_eq!(header(65_529).map(|h| h[2..4] == [0xff, 0xff]), Some(true));
        assert_eq!(header(65_530), None);
    }

    #[test]
    fn ethernet_padding_is_stripped() {
        // A 10-byte beacon-less payload padded to Ethernet's 46-byte minimum.
        let mut frame = header(10).unwrap().to_vec();
        frame.extend_from_slice(&[1u8; 10]);
        frame.resize(46, 0);
        assert_eq!(payload(&frame), Ok(&[1u8; 10][..]));
    }

    #[test]
    fn malformed_frames_are_refused() {
        let good = {
            let mut f = header(4).unwrap().to_vec();
            f.extend_from_slice(b"abcd");
            f
        };
        assert_eq!(payload(&good[..5]), Err(FrameError::Runt(5)));
        assert_eq!(payload(&[]), Err(FrameError::Runt(0)));
        let mut m = good.clone();
        m[0] = 1;
        assert_eq!(payload(&m), Err(FrameError::Version(1)));
        // The zero byte is not checked (cjdns does not either).
        let mut m = good.clone();
        m[1] = 9;
        assert!(payload(&m).is_ok());
        let mut m = good.clone();
        m[3] = 11;
        assert_eq!(
            payload(&m),
            Err(FrameError::Length {
                claimed: 11,
                len: 10
            })
        );
        let mut m = good.clone();
        m[3] = 5;
        assert_eq!(
            payload(&m),
            Err(FrameError::Length {
                claimed: 5,
                len: 10
            })
        );
        let mut m = good.clone();
        m[5] = 1;
        assert_eq!(payload(&m), Err(FrameError::BadMagic));
        // An empty payload is a valid frame.
        assert_eq!(payload(&header(0).unwrap()), Ok(&[][..]));
    }

    #[test]
    fn link_addresses_round_trip_and_never_collide_with_udp() {
        let link = EthLink {
            ifindex: 7,
            mac: [0x02, 0x11, 0x22, 0x33, 0x44, 0x55],
        };
        let a = link.link_address();
        assert_eq!(a.to_string(), "[fe80::11:22ff:fe33:4455%7]:0");
        assert_eq!(EthLink::from_link_address(&a), Some(link));
        assert_eq!(display_link(&a), "02:11:22:33:44:55%7");
        for mac in [[0u8; 6], [0xff; 6], [0x00, 0x1b, 0x21, 0xab, 0xcd, 0xef]] {
            let l = EthLink { ifindex: 1, mac };
            assert_eq!(EthLink::from_link_address(&l.link_address()), Some(l));
        }
        for udp in [
            "10.0.0.1:0",
            "[fe80::11:22ff:fe33:4455%7]:11000",
            "[fe80::11:22ff:fe33:4455]:0",
            "[fe80::1%7]:0",
            "[fc00::11:22ff:fe33:4455%7]:0",
        ] {
            let addr: SocketAddr = udp.parse().unwrap();
            assert_eq!(EthLink::from_link_address(&addr), None, "{udp}");
            assert_eq!(display_link(&addr), addr.to_string());
        }
    }
}
