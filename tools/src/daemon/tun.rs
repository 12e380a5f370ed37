//! The TUN device: create it, give it the node's address and cjdns' MTU, read and write IPv6
//! packets.
//!
//! This is one of the two modules of pktmesh allowed to use `unsafe` (the Linux ioctls have no
//! safe wrapper in std); every block says why it is sound. The device is opened with
//! `IFF_NO_PI`, so reads and writes are bare IPv6 packets.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// cjdns' TUN MTU: 1492 minus 188 bytes of worst-case cjdns overhead.
pub const TUN_MTU: u32 = 1304;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// An open TUN device.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
}

/// `struct in6_ifreq` from `<linux/ipv6.h>`.
#[repr(C)]
struct In6Ifreq {
    addr: [u8; 16],
    prefix_len: u32,
    ifindex: libc::c_int,
}

fn ifreq_named(name: &str) -> io::Result<libc::ifreq> {
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

fn check(ret: libc::c_int, what: &str) -> io::Result<()> {
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
    /// assigns `address/8` and MTU 1304, and brings it up. Needs CAP_NET_ADMIN.
    pub fn create(name: &str, address: Ipv6Addr) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;
        let mut req = ifreq_named(name)?;
        req.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI;
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `req` is; the fd is open.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF as _, &mut req) };
        check(ret, "TUNSETIFF")?;
        let name: String = req
            .ifr_name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect();
        let tun = Self { file, name };
        tun.configure(address)?;
        Ok(tun)
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

    /// Reads one packet; `WouldBlock` when none is waiting.
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }

    /// Writes one packet.
    pub fn send(&mut self, packet: &[u8]) -> io::Result<usize> {
        self.file.write(packet)
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
