//! Which datagrams on the UDP beacon port are beacons this node takes.
//!
//! The beacon socket listens on the wildcard address, so anything sent to the beacon port from
//! anywhere reaches it: a host on the Internet could make the node peer with whatever it names.
//! A beacon is taken only when the datagram was sent to the broadcast address of one of the
//! interfaces the beacon settings select (`beaconDevices`), arrived on that interface, and came
//! from an address inside that interface's subnet ([`accept_beacon`]). The destination and the
//! arrival interface come from `IP_PKTINFO` ([`recv_with_info`]), which the kernel fills in
//! for every datagram; routers do not forward directed broadcasts, so only a host on the link
//! can send one. What a host on the link can still do is bounded by the node's cap on peers
//! made from beacons (`pktmesh_node::beacon::MAX_BEACON_PEERS`).
//!
//! `recvmsg` is the one system call here that neither std nor socket2 offers with control
//! messages and initialised buffers; it is the only `unsafe` block. The control messages are
//! parsed from plain bytes ([`packet_info`]).
#![allow(unsafe_code)]

use std::fmt;
use std::io;
use std::mem::{offset_of, size_of};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, BorrowedFd};

/// An IPv4 interface beacons are sent on and accepted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeaconInterface {
    /// Device name.
    pub name: String,
    /// Interface index (`None`: unknown, and then nothing is accepted on it).
    pub index: Option<u32>,
    /// Our address on it.
    pub addr: Ipv4Addr,
    /// Its netmask.
    pub netmask: Ipv4Addr,
}

impl BeaconInterface {
    /// The broadcast address beacons go to, as cjdns computes it: address | !netmask
    /// (interfaces need not have a broadcast address set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask))
    }

    /// Whether `ip` is inside this interface's subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask);
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

/// The interfaces among `all` that `devices` (names, broadcast addresses or `all`) selects:
/// IPv4, not loopback, not the TUN device `tun`.
pub fn beacon_interfaces(
    devices: &[String],
    all: &[if_addrs::Interface],
    tun: Option<&str>,
) -> Vec<BeaconInterface> {
    let any = devices.iter().any(|d| d == "all");
    all.iter()
        .filter(|i| !i.is_loopback() && Some(i.name.as_str()) != tun)
        .filter_map(|i| match &i.addr {
            if_addrs::IfAddr::V4(v4) => Some(BeaconInterface {
                name: i.name.clone(),
                index: i.index,
                addr: v4.ip,
                netmask: v4.netmask,
            }),
            if_addrs::IfAddr::V6(_) => None,
        })
        .filter(|i| {
            any || devices
                .iter()
                .any(|d| *d == i.name || *d == i.broadcast().to_string())
        })
        .collect()
}

/// Where a datagram was sent and where it arrived, from `IP_PKTINFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    /// The interface it arrived on.
    pub ifindex: u32,
    /// The destination address in its IP header.
    pub dst: Ipv4Addr,
}

/// Why a datagram on the beacon port is not taken as a beacon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The kernel said nothing of where it was sent.
    NoPacketInfo,
    /// Not from an IPv4 address.
    NotIpv4,
    /// Sent to an address that is no selected interface's broadcast address (unicast, most
    /// likely).
    NotBroadcast {
        /// Where it was sent.
        dst: Ipv4Addr,
    },
    /// Sent to a selected interface's broadcast address, but it arrived on another interface.
    WrongInterface {
        /// Where it was sent.
        dst: Ipv4Addr,
        /// The interface it arrived on.
        ifindex: u32,
    },
    /// Broadcast on a selected interface by an address outside its subnet.
    SourceOutsideSubnet {
        /// The sender.
        from: Ipv4Addr,
        /// The interface.
        device: String,
    },
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoPacketInfo => write!(f, "no destination address (IP_PKTINFO) with it"),
            Self::NotIpv4 => write!(f, "not from an IPv4 address"),
            Self::NotBroadcast { dst } => {
                write!(f, "sent to {dst}, not a beacon device's broadcast address")
            }
            Self::WrongInterface { dst, ifindex } => write!(
                f,
                "sent to {dst} but arrived on interface {ifindex}, not on the device it is the \
                 broadcast address of"
            ),
            Self::SourceOutsideSubnet { from, device } => {
                write!(f, "broadcast on {device} by {from}, outside its subnet")
            }
        }
    }
}

/// Whether a datagram from `from` with packet info `info` is a beacon to take: sent to the
/// broadcast address of one of `interfaces`, arrived on that interface and sent from an
/// address in its subnet. Returns that interface.
pub fn accept_beacon(
    from: SocketAddr,
    info: Option<PacketInfo>,
    interfaces: &[BeaconInterface],
) -> Result<&BeaconInterface, Refused> {
    let info = info.ok_or(Refused::NoPacketInfo)?;
    let SocketAddr::V4(from) = from else {
        return Err(Refused::NotIpv4);
    };
    let mut refused = Refused::NotBroadcast { dst: info.dst };
    for i in interfaces.iter().filter(|i| i.broadcast() == info.dst) {
        if i.index != Some(info.ifindex) {
            refused = Refused::WrongInterface {
                dst: info.dst,
                ifindex: info.ifindex,
            };
        } else if !i.contains(*from.ip()) {
            refused = Refused::SourceOutsideSubnet {
                from: *from.ip(),
                device: i.name.clone(),
            };
        } else {
            return Ok(i);
        }
    }
    Err(refused)
}

/// The `IP_PKTINFO` control message among the control messages `control` (as `recvmsg` wrote
/// them: `cmsghdr` headers, each followed by its data, every one aligned to a word).
pub fn packet_info(control: &[u8]) -> Option<PacketInfo> {
    const WORD: usize = size_of::<usize>();
    // The kernel's `struct cmsghdr` starts with a `size_t` length, then level and type.
    let header = size_of::<libc::cmsghdr>().next_multiple_of(WORD);
    let level_at = offset_of!(libc::cmsghdr, cmsg_level);
    let type_at = offset_of!(libc::cmsghdr, cmsg_type);
    let int = |at: usize| -> Option<libc::c_int> {
        Some(libc::c_int::from_ne_bytes(
            control.get(at..at + 4)?.try_into().ok()?,
        ))
    };
    let mut at = 0;
    while let Some(len) = control.get(at..at + WORD) {
        let len = usize::from_ne_bytes(len.try_into().ok()?);
        if len < header || at + len > control.len() {
            return None;
        }
        let (level, kind) = (int(at + level_at)?, int(at + type_at)?);
        if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
            // struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
            let data = control.get(at + header..at + len)?;
            let ifindex = libc::c_int::from_ne_bytes(data.get(0..4)?.try_into().ok()?);
            let dst: [u8; 4] = data.get(8..12)?.try_into().ok()?;
            return Some(PacketInfo {
                ifindex: u32::try_from(ifindex).ok()?,
                dst: Ipv4Addr::from(dst),
            });
        }
        at += len.next_multiple_of(WORD);
    }
    None
}

/// Room for the control messages of one datagram, aligned as `struct cmsghdr` must be.
#[repr(C, align(8))]
struct Control([u8; 128]);

/// Reads one datagram from the IPv4 socket `fd` (which has `IP_PKTINFO` on) into `buf`: its
/// length (at most `buf.len()`; the rest is cut), its sender and its packet info.
pub fn recv_with_info(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<PacketInfo>)> {
    let mut control = Control([0; 128]);
    let mut from = libc::sockaddr_in {
        sin_family: 0,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `msghdr` is a C struct of integers and pointers, for which all zeroes is a valid
    // value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut from).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: `fd` is an open descriptor for the whole call (borrowed). Every pointer in `msg`
    // points at a live local or at `buf`, with the length of what it points at: the kernel
    // writes at most `msg_namelen` bytes into `from`, `iov_len` bytes into `buf` and
    // `msg_controllen` bytes into `control`, and updates `msg`'s lengths and flags.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, 0) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    let from = SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from(from.sin_addr.s_addr.to_ne_bytes()),
        u16::from_be(from.sin_port),
    ));
    let written = (msg.msg_controllen as usize).min(control.0.len());
    Ok((n.min(buf.len()), from, packet_info(&control.0[..written])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn lan() -> BeaconInterface {
        BeaconInterface {
            name: "eth0".into(),
            index: Some(2),
            addr: Ipv4Addr::new(192, 168, 1, 10),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
        }
    }

    fn wan() -> BeaconInterface {
        BeaconInterface {
            name: "eth1".into(),
            index: Some(3),
            addr: Ipv4Addr::new(10, 1, 0, 2),
            netmask: Ipv4Addr::new(255, 255, 0, 0),
        }
    }

    fn from(ip: [u8; 4]) -> SocketAddr {
        SocketAddr::from((ip, 64512))
    }

    fn info(ifindex: u32, dst: [u8; 4]) -> Option<PacketInfo> {
        Some(PacketInfo {
            ifindex,
            dst: Ipv4Addr::from(dst),
        })
    }

    #[test]
    fn a_broadcast_from_the_subnet_on_its_device_is_taken() {
        let list = [wan(), lan()];
        let got = accept_beacon(from([192, 168, 1, 20]), info(2, [192, 168, 1, 255]), &list);
        assert_eq!(got.map(|i| i.name.as_str()), Ok("eth0"));
        let got = accept_beacon(from([10, 1, 7, 7]), info(3, [10, 1, 255, 255]), &list);
        assert_eq!(got.map(|i| i.name.as_str()), Ok("eth1"));
    }

    #[test]
    fn unicast_and_foreign_broadcasts_are_refused() {
        let list = [lan()];
        // Sent to our own address: what a host anywhere on the Internet can do.
        assert_eq!(
            accept_beacon(from([203, 0, 113, 9]), info(2, [192, 168, 1, 10]), &list),
            Err(Refused::NotBroadcast {
                dst: Ipv4Addr::new(192, 168, 1, 10)
            })
        );
        // The limited broadcast and another subnet's broadcast are not ours either.
        for dst in [[255, 255, 255, 255], [192, 168, 2, 255]] {
            assert!(matches!(
                accept_beacon(from([192, 168, 1, 20]), info(2, dst), &list),
                Err(Refused::NotBroadcast { .. })
            ));
        }
        // The right broadcast address, delivered through another device (routed to us).
        assert_eq!(
            accept_beacon(from([192, 168, 1, 20]), info(3, [192, 168, 1, 255]), &list),
            Err(Refused::WrongInterface {
                dst: Ipv4Addr::new(192, 168, 1, 255),
                ifindex: 3
            })
        );
        // On the right device from outside the subnet (a forged or routed source).
        assert_eq!(
            accept_beacon(from([198, 51, 100, 1]), info(2, [192, 168, 1, 255]), &list),
            Err(Refused::SourceOutsideSubnet {
                from: Ipv4Addr::new(198, 51, 100, 1),
                device: "eth0".into()
            })
        );
        // No packet info, an IPv6 sender, a device whose index is unknown, no devices.
        assert_eq!(
            accept_beacon(from([192, 168, 1, 20]), None, &list),
            Err(Refused::NoPacketInfo)
        );
        let v6 = SocketAddr::from(([0xfe80, 0, 0, 0, 0, 0, 0, 1], 64512));
        assert_eq!(
            accept_beacon(v6, info(2, [192, 168, 1, 255]), &list),
            Err(Refused::NotIpv4)
        );
        let unknown = [BeaconInterface {
            index: None,
            ..lan()
        }];
        assert!(accept_beacon(
            from([192, 168, 1, 20]),
            info(2, [192, 168, 1, 255]),
            &unknown
        )
        .is_err());
        assert!(accept_beacon(from([192, 168, 1, 20]), info(2, [192, 168, 1, 255]), &[]).is_err());
    }

    fn interface(name: &str, ip: [u8; 4], prefix: u8, index: u32) -> if_addrs::Interface {
        let netmask = Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0));
        if_addrs::Interface {
            name: name.into(),
            addr: if_addrs::IfAddr::V4(if_addrs::Ifv4Addr {
                ip: Ipv4Addr::from(ip),
                netmask,
                prefixlen: prefix,
                broadcast: None,
            }),
            index: Some(index),
        }
    }

    #[test]
    fn devices_select_interfaces_by_name_broadcast_or_all() {
        let all = [
            interface("lo", [127, 0, 0, 1], 8, 1),
            interface("eth0", [192, 168, 1, 10], 24, 2),
            interface("eth1", [10, 1, 0, 2], 16, 3),
            interface("tun0", [10, 99, 0, 1], 24, 4),
        ];
        let names = |devices: &[&str]| -> Vec<String> {
            let devices: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
            beacon_interfaces(&devices, &all, Some("tun0"))
                .into_iter()
                .map(|i| i.name)
                .collect()
        };
        assert_eq!(names(&["all"]), ["eth0", "eth1"]);
        assert_eq!(names(&["eth1"]), ["eth1"]);
        assert_eq!(names(&["192.168.1.255"]), ["eth0"]);
        assert_eq!(names(&["lo", "tun0", "nope"]), Vec::<String>::new());
    }

    /// A control message as the kernel writes it: header (length, level, type), data, padding.
    fn cmsg(level: libc::c_int, kind: libc::c_int, data: &[u8]) -> Vec<u8> {
        let header = size_of::<libc::cmsghdr>();
        let mut out = vec![0u8; (header + data.len()).next_multiple_of(size_of::<usize>())];
        out[..size_of::<usize>()].copy_from_slice(&(header + data.len()).to_ne_bytes());
        let level_at = offset_of!(libc::cmsghdr, cmsg_level);
        out[level_at..level_at + 4].copy_from_slice(&level.to_ne_bytes());
        let type_at = offset_of!(libc::cmsghdr, cmsg_type);
        out[type_at..type_at + 4].copy_from_slice(&kind.to_ne_bytes());
        out[header..header + data.len()].copy_from_slice(data);
        out
    }

    #[test]
    fn packet_info_is_found_among_control_messages() {
        let mut pktinfo = Vec::new();
        pktinfo.extend_from_slice(&7i32.to_ne_bytes());
        pktinfo.extend_from_slice(&[10, 0, 0, 1]);
        pktinfo.extend_from_slice(&[10, 0, 0, 255]);
        let mut control = cmsg(libc::SOL_SOCKET, libc::SO_TIMESTAMP, &[1; 16]);
        control.extend(cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &pktinfo));
        assert_eq!(
            packet_info(&control),
            Some(PacketInfo {
                ifindex: 7,
                dst: Ipv4Addr::new(10, 0, 0, 255)
            })
        );
        // The padding after the last message may be cut; its data may not.
        assert!(packet_info(&control[..control.len() - 4]).is_some());
        // Truncated, empty, lying about its length, or too short a payload: nothing.
        assert_eq!(packet_info(&control[..control.len() - 5]), None);
        assert_eq!(packet_info(&[]), None);
        let mut liar = control.clone();
        liar[..size_of::<usize>()].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(packet_info(&liar), None);
        assert_eq!(
            packet_info(&cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &[0; 8])),
            None
        );
    }

    /// Over loopback: the destination and interface the kernel reports are the real ones.
    #[test]
    fn recv_with_info_reports_destination_and_interface() {
        let rx = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        crate::daemon::udp::set_int_option(rx.as_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
            .unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"hello beacon port", ("127.0.0.1", port))
            .unwrap();
        let mut buf = [0u8; 8];
        let (n, from, info) = recv_with_info(rx.as_fd(), &mut buf).unwrap();
        assert_eq!((n, &buf[..n]), (8, &b"hello be"[..]), "cut to the buffer");
        assert_eq!(from, tx.local_addr().unwrap());
        let info = info.expect("IP_PKTINFO");
        assert_eq!(info.dst, Ipv4Addr::LOCALHOST);
        let lo = if_addrs::get_if_addrs()
            .unwrap()
            .into_iter()
            .find(|i| i.is_loopback() && i.ip().is_ipv4())
            .and_then(|i| i.index);
        assert_eq!(Some(info.ifindex), lo);
        // Unicast to our own address, as a stranger would send it: refused.
        let lo_iface = BeaconInterface {
            name: "lo".into(),
            index: lo,
            addr: Ipv4Addr::LOCALHOST,
            netmask: Ipv4Addr::new(255, 0, 0, 0),
        };
        assert!(matches!(
            accept_beacon(from, Some(info), &[lo_iface]),
            Err(Refused::NotBroadcast { .. })
        ));
    }
}
