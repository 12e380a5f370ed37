//! Ethernet interfaces (cjdns ETHInterface): one `AF_PACKET` datagram socket per device, bound
//! to ethertype `0xFC00`, that reads and writes the cjdns frame payload (the kernel adds and
//! strips the Ethernet header). The frame format and how Ethernet peers are named are in
//! `pktmesh_node::eth`; this module only moves frames.
//!
//! Like [`super::tun`] and [`super::udp`], it may use `unsafe`: `AF_PACKET` addresses
//! (`sockaddr_ll`) have no wrapper in std or socket2. Every block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use pktmesh_node::eth::{self, BROADCAST, ETHERTYPE};

use super::tun::{check, ifreq_named};

/// One frame read from the socket.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Bytes read (the cjdns frame header and what follows).
    pub len: usize,
    /// The sender's MAC.
    pub from: [u8; 6],
    /// Sent to the broadcast address (a beacon, if anything).
    pub broadcast: bool,
}

/// An open Ethernet interface.
#[derive(Debug)]
pub struct EthSocket {
    fd: OwnedFd,
    ifindex: u32,
    device: String,
    mac: Option<[u8; 6]>,
}

impl EthSocket {
    /// Opens `device` for cjdns frames, bringing it up if it is down (as cjdns does).
    pub fn open(device: &str) -> io::Result<Self> {
        let protocol = libc::c_int::from(ETHERTYPE.to_be());
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        check(raw, "socket(AF_PACKET)")?;
        // SAFETY: `raw` is a descriptor we just opened and nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let mut req = ifreq_named(device)?;
        // SAFETY: SIOCGIFINDEX fills `ifr_ifindex` of the `struct ifreq` it is given.
        let ret = unsafe { libc::ioctl(raw, libc::SIOCGIFINDEX as _, &mut req) };
        check(ret, "SIOCGIFINDEX")?;
        // SAFETY: SIOCGIFINDEX succeeded, so the union holds `ifru_ifindex`.
        let index = unsafe { req.ifr_ifru.ifru_ifindex };
        let ifindex = u32::try_from(index)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative ifindex"))?;

        let mut req = ifreq_named(device)?;
        // SAFETY: SIOCGIFFLAGS fills `ifr_flags` of the `struct ifreq` it is given.
        let ret = unsafe { libc::ioctl(raw, libc::SIOCGIFFLAGS as _, &mut req) };
        check(ret, "SIOCGIFFLAGS")?;
        // SAFETY: SIOCGIFFLAGS succeeded, so the union holds `ifru_flags`.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if flags & libc::IFF_UP as libc::c_short == 0 {
            tracing::info!(device, "bringing the Ethernet device up");
            req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
            // SAFETY: SIOCSIFFLAGS reads `ifr_flags` of the `struct ifreq` it is given.
            let ret = unsafe { libc::ioctl(raw, libc::SIOCSIFFLAGS as _, &mut req) };
            check(ret, "SIOCSIFFLAGS")?;
        }

        let addr = sockaddr_ll(ifindex, [0; 6]);
        // SAFETY: `addr` is a valid `sockaddr_ll` and the length passed is its size.
        let ret = unsafe {
            libc::bind(
                raw,
                std::ptr::from_ref(&addr).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        check(ret, "bind(AF_PACKET)")?;
        Ok(Self {
            fd,
            ifindex,
            device: device.to_string(),
            mac: read_mac(device),
        })
    }

    /// The device's interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The device's own MAC, if the system says.
    pub fn mac(&self) -> Option<[u8; 6]> {
        self.mac
    }

    /// Reads one frame into `buf`; `WouldBlock` when there is none.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        // SAFETY: all-zero is a valid `sockaddr_ll`.
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut from_len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` is writable for `buf.len()` bytes; `from`/`from_len` describe a
        // writable `sockaddr_ll`, which the kernel fills up to `from_len` bytes.
        let n = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                std::ptr::from_mut(&mut from).cast(),
                &mut from_len,
            )
        };
        let len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        if len > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes truncated"),
            ));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&from.sll_addr[..6]);
        Ok(Received {
            len,
            from: mac,
            broadcast: from.sll_pkttype == libc::PACKET_BROADCAST,
        })
    }

    /// Sends `payload` to `to` behind a cjdns frame header.
    pub fn send(&self, to: [u8; 6], payload: &[u8]) -> io::Result<()> {
        let Some(header) = eth::header(payload.len()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "payload too large for a frame",
            ));
        };
        let mut addr = sockaddr_ll(self.ifindex, to);
        let mut iov = [
            libc::iovec {
                iov_base: header.as_ptr().cast_mut().cast(),
                iov_len: header.len(),
            },
            libc::iovec {
                iov_base: payload.as_ptr().cast_mut().cast(),
                iov_len: payload.len(),
            },
        ];
        // SAFETY: all-zero is a valid `msghdr`; the fields set below point at `addr` and
        // `iov`, which outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = std::ptr::from_mut(&mut addr).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        // SAFETY: `msg` describes a valid destination and two readable buffers; the kernel
        // only reads them.
        let n = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Broadcasts `payload` (a beacon body).
    pub fn broadcast(&self, payload: &[u8]) -> io::Result<()> {
        self.send(BROADCAST, payload)
    }
}

impl AsRawFd for EthSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn sockaddr_ll(ifindex: u32, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: all-zero is a valid `sockaddr_ll`.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as libc::c_ushort;
    addr.sll_protocol = ETHERTYPE.to_be();
    addr.sll_ifindex = ifindex as libc::c_int;
    addr.sll_hatype = libc::ARPHRD_ETHER;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&mac);
    addr
}

/// `/sys/class/net/<device>/address`, parsed.
fn read_mac(device: &str) -> Option<[u8; 6]> {
    let text =
        std::fs::read_to_string(Path::new("/sys/class/net").join(device).join("address")).ok()?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The Ethernet devices `bind: "all"` means: every device of type Ethernet except `lo` and
/// those in `skip` (cjdns takes every device but `lo`; a TUN device cannot carry frames).
pub fn all_devices(skip: &[&str]) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name != "lo" && !skip.contains(&name.as_str()))
        .filter(|name| {
            let kind = std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("type"));
            kind.is_ok_and(|t| t.trim() == libc::ARPHRD_ETHER.to_string())
        })
        .collect();
    names.sort();
    names
}
