//! Reading captures: pcap and pcapng files into numbered, timestamped link-layer frames — UDP
//! datagrams (over IPv4 or IPv6), cjdns Ethernet frames (ethertype `0xFC00`) and anything else.
//!
//! Link types: Ethernet (1, VLAN tags skipped), Linux cooked (113) and cooked v2 (276), raw IP
//! (101, 228, 229). Every read is checked: a short or odd frame becomes [`Link::Other`], never a
//! panic; only a file that is not a capture at all is an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use pktmesh_node::eth::ETHERTYPE as CJDNS_ETHERTYPE;

/// One frame of a capture.
#[derive(Debug, Clone)]
pub struct CaptureFrame {
    /// 1-based frame number in the file.
    pub number: usize,
    /// Capture time, microseconds since the Unix epoch.
    pub micros: u64,
    /// Captured length of the whole frame.
    pub len: usize,
    /// What the frame carries.
    pub link: Link,
}

/// The part of a frame the decoder reads.
#[derive(Debug, Clone)]
pub enum Link {
    /// A UDP datagram.
    Udp {
        /// Source address.
        src: SocketAddr,
        /// Destination address.
        dst: SocketAddr,
        /// UDP payload.
        payload: Vec<u8>,
    },
    /// An Ethernet frame of ethertype `0xFC00` (cjdns' ETHInterface).
    Eth {
        /// Source MAC.
        src: [u8; 6],
        /// Destination MAC (`None` in Linux cooked captures, which do not record it).
        dst: Option<[u8; 6]>,
        /// Everything after the ethertype: the 6-byte cjdns frame header and its payload.
        payload: Vec<u8>,
    },
    /// Anything else: the ethertype and IP protocol where the frame had them.
    Other {
        /// Ethertype, if the link layer has one.
        ethertype: Option<u16>,
        /// IP protocol number, for IP packets that are not UDP.
        ip_proto: Option<u8>,
    },
}

/// One UDP datagram of a capture (the view older callers use).
#[derive(Debug, Clone)]
pub struct UdpDatagram {
    /// 1-based frame number in the pcap.
    pub frame: usize,
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Read every frame of a pcap or pcapng file.
pub fn read_frames(path: &Path) -> Result<Vec<CaptureFrame>> {
    let bytes = std::fs::read(path).with_context(|| format!("open {}", path.display()))?;
    parse_frames(&bytes)
}

/// Every frame of a pcap or pcapng file held in memory.
pub fn parse_frames(bytes: &[u8]) -> Result<Vec<CaptureFrame>> {
    // pcapng files start with a Section Header Block, type 0x0A0D0D0A.
    if bytes.get(..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        return read_pcapng(bytes);
    }
    let mut reader = pcap_file::pcap::PcapReader::new(bytes).context("not a pcap file")?;
    let linktype = u32::from(reader.header().datalink);
    check_linktype(linktype)?;
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.context("truncated pcap record")?;
        out.push(frame(out.len() + 1, pkt.timestamp, linktype, &pkt.data));
    }
    Ok(out)
}

/// Read the UDP datagrams of a pcap or pcapng file (other frames are skipped).
pub fn read_pcap(path: &Path) -> Result<Vec<UdpDatagram>> {
    Ok(read_frames(path)?
        .into_iter()
        .filter_map(|f| match f.link {
            Link::Udp { src, dst, payload } => Some(UdpDatagram {
                frame: f.number,
                src,
                dst,
                payload,
            }),
            _ => None,
        })
        .collect())
}

fn read_pcapng(bytes: &[u8]) -> Result<Vec<CaptureFrame>> {
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut reader = PcapNgReader::new(bytes).context("not a pcapng file")?;
    let mut out = Vec::new();
    let mut links: Vec<u32> = Vec::new();
    while let Some(block) = reader.next_block() {
        let block = block.context("truncated pcapng block")?;
        let (iface, ts, data) = match &block {
            Block::SectionHeader(_) => {
                links.clear();
                continue;
            }
            Block::InterfaceDescription(i) => {
                let linktype = u32::from(i.linktype);
                check_linktype(linktype)?;
                links.push(linktype);
                continue;
            }
            Block::EnhancedPacket(p) => (p.interface_id as usize, p.timestamp, &p.data),
            Block::SimplePacket(p) => (0, std::time::Duration::ZERO, &p.data),
            _ => continue,
        };
        let linktype = *links
            .get(iface)
            .ok_or_else(|| anyhow!("packet on an undeclared interface"))?;
        out.push(frame(out.len() + 1, ts, linktype, data));
    }
    Ok(out)
}

fn check_linktype(linktype: u32) -> Result<()> {
    match linktype {
        1 | 113 | 276 | 101 | 228 | 229 => Ok(()),
        other => bail!("unsupported link type {other}"),
    }
}

fn frame(number: usize, ts: std::time::Duration, linktype: u32, data: &[u8]) -> CaptureFrame {
    CaptureFrame {
        number,
        micros: u64::try_from(ts.as_micros()).unwrap_or(u64::MAX),
        len: data.len(),
        link: link(linktype, data),
    }
}

const OTHER: Link = Link::Other {
    ethertype: None,
    ip_proto: None,
};

fn mac(b: Option<&[u8]>) -> Option<[u8; 6]> {
    b.and_then(|b| b.try_into().ok())
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn link(linktype: u32, data: &[u8]) -> Link {
    // (source MAC, destination MAC, ethertype, what follows the ethertype)
    let (src, dst, ethertype, rest) = match linktype {
        1 => {
            let mut off = 12;
            while be16(data, off) == Some(0x8100) {
                off += 4;
            }
            (
                mac(data.get(6..12)),
                mac(data.get(..6)),
                be16(data, off),
                data.get(off + 2..),
            )
        }
        113 => (mac(data.get(6..12)), None, be16(data, 14), data.get(16..)),
        276 => (None, None, be16(data, 0), data.get(20..)),
        _ => return ip(data).unwrap_or(OTHER),
    };
    let (Some(ethertype), Some(rest)) = (ethertype, rest) else {
        return OTHER;
    };
    match ethertype {
        CJDNS_ETHERTYPE => match src {
            Some(src) => Link::Eth {
                src,
                dst,
                payload: rest.to_vec(),
            },
            None => OTHER,
        },
        0x0800 | 0x86dd => ip(rest).unwrap_or(Link::Other {
            ethertype: Some(ethertype),
            ip_proto: None,
        }),
        _ => Link::Other {
            ethertype: Some(ethertype),
            ip_proto: None,
        },
    }
}

/// A UDP datagram, or `Other` with the protocol of another IP packet.
fn ip(ip: &[u8]) -> Option<Link> {
    let (ethertype, proto, src, dst, l4): (u16, u8, IpAddr, IpAddr, &[u8]) = match ip.first()? >> 4
    {
        4 => {
            let ihl = usize::from(ip.first()? & 0xf) * 4;
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                0x0800,
                *ip.get(9)?,
                Ipv4Addr::from(s).into(),
                Ipv4Addr::from(d).into(),
                ip.get(ihl..)?,
            )
        }
        6 => {
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                0x86dd,
                *ip.get(6)?,
                Ipv6Addr::from(s).into(),
                Ipv6Addr::from(d).into(),
                ip.get(40..)?,
            )
        }
        _ => return None,
    };
    if proto != 17 {
        return Some(Link::Other {
            ethertype: Some(ethertype),
            ip_proto: Some(proto),
        });
    }
    let len = usize::from(be16(l4, 4)?);
    Some(Link::Udp {
        src: SocketAddr::new(src, be16(l4, 0)?),
        dst: SocketAddr::new(dst, be16(l4, 2)?),
        payload: l4.get(8..len)?.to_vec(),
    })
}
