//! The TUN device: create it, give it the node's address and cjdns' MTU, read and write IPv6
//! packets.
//!
//! This is one of the two modules of pktmesh allowed to use `unsafe` (the Linux ioctls have no
//! safe wrapper in std); every block says why it is sound. The device is opened with
//! `IFF_NO_PI`, so reads and writes are bare IPv6 packets; with offloads on
//! ([`Tun::create`]), also with `IFF_VNET_HDR`: every packet then starts with a
//! `virtio_net_hdr` and reads may return TCP (and, where the kernel has UDP segmentation
//! offload, UDP) super-packets of up to 64 KiB, which `pktmesh_node::offload::segment` cuts
//! into ordinary packets.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use pktmesh_node::offload::{segment, VnetHdr, PLAIN_HDR, VNET_HDR_LEN};

/// cjdns' TUN MTU: 1492 minus 188 bytes of worst-case cjdns overhead.
pub const TUN_MTU: u32 = 1304;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
/// `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO6: libc::c_uint = 0x04;
/// UDP segmentation offload; Linux takes the IPv4 and IPv6 bits only together (≥ 6.2).
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// Largest read with offloads on: a 64 KiB super-packet and its `virtio_net_hdr`.
pub const OFFLOAD_READ_MAX: usize = 65_536 + VNET_HDR_LEN;

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    offload: bool,
    udp_offload: bool,
}

/// `struct in6_ifreq` from `<linux/ipv6.h>`.
#[repr(C)]
struct In6Ifreq {
    addr: [u8; 16],
    prefix_len: u32,
    ifindex: libc::c_int,
}

pub(super) fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: ifreq is a plain C struct of integers, arrays and a union of such; all-zero is a
    // valid value for every field.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let bytes = name.as_bytes();
    if bytes.len() >= req.ifr_name.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {name:?}"),
        ));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

pub(super) fn check(ret: libc::c_int, what: &str) -> io::Result<()> {
    if ret < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// A throwaway socket to configure interfaces with.
struct ControlSocket(RawFd);

impl ControlSocket {
    fn new(family: libc::c_int) -> io::Result<Self> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        check(fd, "socket")?;
        Ok(Self(fd))
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        // SAFETY: the fd was opened by `new` and is closed exactly once here.
        unsafe { libc::close(self.0) };
    }
}

impl Tun {
    /// Creates (or attaches to) the TUN device `name` (a pattern such as `tun%d` is allowed),
    /// assigns `address/8` and MTU 1304, and brings it up. Needs CAP_NET_ADMIN. With
    /// `offload`, the device carries `virtio_net_hdr`s and accepts checksum and TCPv6
    /// segmentation offload, and UDP segmentation offload where the kernel has it
    /// ([`Tun::udp_offload`]); if the kernel refuses offloads, the device is made without
    /// them ([`Tun::offload`] says which).
    pub fn create(name: &str, address: Ipv6Addr, offload: bool) -> io::Result<Self> {
        let mut queues = Self::create_queues(name, address, offload, 1)?;
        queues
            .pop()
            .ok_or_else(|| io::Error::other("no TUN queue opened"))
    }

    /// [`Tun::create`] with `queues` queues (`IFF_MULTI_QUEUE` when more than one): each is its
    /// own file descriptor, and the kernel keeps each flow it sends to us on one queue. The
    /// first queue names the device for the others.
    pub fn create_queues(
        name: &str,
        address: Ipv6Addr,
        offload: bool,
        queues: usize,
    ) -> io::Result<Vec<Self>> {
        let multi = queues > 1;
        let mut offload = offload;
        let first = match Self::open(name, offload, multi) {
            Ok(tun) => tun,
            Err(e) if offload => {
                tracing::warn!(error = %e, "TUN offloads refused; using plain packets");
                offload = false;
                Self::open(name, false, multi)?
            }
            Err(e) => return Err(e),
        };
        first.configure(address)?;
        let mut all = Vec::with_capacity(queues);
        let device = first.name.clone();
        all.push(first);
        for _ in 1..queues {
            all.push(Self::open(&device, offload, multi)?);
        }
        Ok(all)
    }

    fn open(name: &str, offload: bool, multi_queue: bool) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;
        let mut req = ifreq_named(name)?;
        req.ifr_ifru.ifru_flags = IFF_TUN
            | IFF_NO_PI
            | if offload { IFF_VNET_HDR } else { 0 }
            | if multi_queue { IFF_MULTI_QUEUE } else { 0 };
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is; the fd is open.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
        check(ret, "TUNSETIFF")?;
        let mut udp_offload = false;
        if offload {
            let set = |features: libc::c_uint| {
                // SAFETY: TUNSETOFFLOAD takes the feature bits as an unsigned long value
                // argument (not a pointer); the fd is an attached TUN device.
                let ret = unsafe {
                    libc::ioctl(
                        file.as_raw_fd(),
                        TUNSETOFFLOAD as _,
                        libc::c_ulong::from(features),
                    )
                };
                check(ret, "TUNSETOFFLOAD")
            };
            // UDP segmentation offload too where the kernel knows it (EINVAL before 6.2).
            udp_offload = set(TUN_F_CSUM | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6).is_ok();
            if !udp_offload {
                set(TUN_F_CSUM | TUN_F_TSO6)?;
            }
        }
        let name: String = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect();
        Ok(Self {
            file,
            name,
            offload,
            udp_offload,
        })
    }

    fn configure(&self, address: Ipv6Addr) -> io::Result<()> {
        let sock4 = ControlSocket::new(libc::AF_INET)?;
        let mut req = ifreq_named(&self.name)?;
        req.ifr_ifru.ifru_mtu = TUN_MTU as libc::c_int;
        // SAFETY: SIOCSIFMTU reads a `struct ifreq`; the socket is open.
        let ret = unsafe { libc::ioctl(sock4.0, libc::SIOCSIFMTU as _, &mut req) };
        check(ret, "SIOCSIFMTU")?;

        let mut req = ifreq_named(&self.name)?;
        // SAFETY: SIOCGIFINDEX fills `ifr_ifindex` of a `struct ifreq`.
        let ret = unsafe { libc::ioctl(sock4.0, libc::SIOCGIFINDEX as _, &mut req) };
        check(ret, "SIOCGIFINDEX")?;
        // SAFETY: the kernel just wrote the ifindex member of the union.
        let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };

        let sock6 = ControlSocket::new(libc::AF_INET6)?;
        let mut req6 = In6Ifreq {
            addr: address.octets(),
            prefix_len: 8,
            ifindex,
        };
        // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads a `struct in6_ifreq`, which `req6`
        // mirrors with #[repr(C)].
        let ret = unsafe { libc::ioctl(sock6.0, libc::SIOCSIFADDR as _, &mut req6) };
        check(ret, "SIOCSIFADDR")?;

        let mut req = ifreq_named(&self.name)?;
        // SAFETY: SIOCGIFFLAGS fills `ifr_flags` of a `struct ifreq`.
        let ret = unsafe { libc::ioctl(sock4.0, libc::SIOCGIFFLAGS as _, &mut req) };
        check(ret, "SIOCGIFFLAGS")?;
        // SAFETY: the kernel just wrote the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads `ifr_flags` of a `struct ifreq`.
        let ret = unsafe { libc::ioctl(sock4.0, libc::SIOCSIFFLAGS as _, &mut req) };
        check(ret, "SIOCSIFFLAGS")?;
        Ok(())
    }

    /// The kernel's name of the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether packets carry a `virtio_net_hdr` (offloads on).
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Whether the device also takes (and hands out) UDP super-packets (`GSO_UDP_L4`).
    pub fn udp_offload(&self) -> bool {
        self.udp_offload
    }

    /// Reads one packet; `WouldBlock` when none is waiting (reads and writes take `&self`: the
    /// kernel serialises them, and a packet read may produce one to write). With offloads on, the packet starts
    /// with its `virtio_net_hdr` and may be up to [`OFFLOAD_READ_MAX`] bytes.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// With offloads on: reads one packet into `read_buf` (at least [`OFFLOAD_READ_MAX`]
    /// bytes) and hands the ordinary IPv6 packets it stands for to `each` (one, or the
    /// segments of a TCP or UDP super-packet, checksums completed), using `scratch` (the MTU) for
    /// them. `Ok(false)` when nothing was waiting. A packet the offload code rejects is
    /// dropped with a debug log line.
    pub fn recv_segments(
        &self,
        read_buf: &mut [u8],
        scratch: &mut [u8],
        each: impl FnMut(&[u8]),
    ) -> io::Result<bool> {
        let n = match (&self.file).read(read_buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(hdr) = read_buf.get(..n).and_then(VnetHdr::parse) else {
            tracing::debug!(len = n, "TUN read shorter than its virtio_net_hdr");
            return Ok(true);
        };
        let packet = &mut read_buf[VNET_HDR_LEN..n];
        if let Err(e) = segment(&hdr, packet, scratch, each) {
            tracing::debug!(error = %e, len = packet.len(), "offloaded TUN packet dropped");
        }
        Ok(true)
    }

    /// Writes `packet` behind its `virtio_net_hdr` (offloads on only), in one `writev`.
    pub fn send_with_header(&self, hdr: &[u8], packet: &[u8]) -> io::Result<usize> {
        let n = (&self.file).write_vectored(&[io::IoSlice::new(hdr), io::IoSlice::new(packet)])?;
        Ok(n.saturating_sub(hdr.len()))
    }

    /// Writes one IPv6 packet (with offloads on, behind an empty `virtio_net_hdr`: nothing
    /// offloaded, the kernel checks the checksums as usual).
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        if self.offload {
            return self.send_with_header(&PLAIN_HDR, packet);
        }
        (&self.file).write(packet)
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
