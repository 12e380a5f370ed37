//! Ethernet interfaces (cjdns ETHInterface): one `AF_PACKET` datagram socket per device, bound
//! to ethertype `0xFC00`, that reads and writes the cjdns frame payload (the kernel adds and
//! strips the Ethernet header). The frame format and how Ethernet peers are named are in
//! `pktmesh_node::eth`; this module only moves frames.
//!
//! Frames are batched as UDP datagrams are: up to [`BATCH`] read with one `recvmmsg` into an
//! [`EthRxBatch`], and outgoing frames queued ([`EthSocket::queue`]) and sent with one
//! `sendmmsg` when the driver flushes or the queue is full, each as two iovecs (the cjdns header
//! and the payload, copied once into the queue). Buffers are allocated once.
//!
//! Like [`super::tun`] and [`super::udp`], it may use `unsafe`: `AF_PACKET` addresses
//! (`sockaddr_ll`) have no wrapper in std or socket2. Every block says why it is sound.
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use pktmesh_node::eth::{self, BROADCAST, ETHERTYPE};

use super::tun::{check, ifreq_named};
use super::udp::buffer_full;
use super::SOCKET_BUFFER;

/// Frames per `recvmmsg` and per `sendmmsg`.
pub const BATCH: usize = 32;
/// Room for one frame payload (Ethernet's 1500 bytes and then some).
const SLOT: usize = 2048;

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

/// An open Ethernet interface and its send queue.
pub struct EthSocket {
    fd: OwnedFd,
    ifindex: u32,
    device: String,
    mac: Option<[u8; 6]>,
    tx: TxQueue,
}

/// Frames waiting for [`EthSocket::flush`]: payloads back to back in one arena.
struct TxQueue {
    arena: Box<[u8]>,
    /// Per frame: destination, cjdns header, payload length.
    frames: Vec<([u8; 6], [u8; eth::HEADER_LEN], usize)>,
    used: usize,
    /// Frames the kernel would not take since the last log line.
    dropped: u64,
    last_log: Option<Instant>,
}

/// Frames read by one [`EthSocket::recv_batch`], reused from call to call.
pub struct EthRxBatch {
    arena: Box<[u8]>,
    meta: [Received; BATCH],
    /// Frames larger than their slot (cut by the kernel, so dropped).
    truncated: [bool; BATCH],
    count: usize,
}

impl EthRxBatch {
    /// Room for [`BATCH`] frames.
    pub fn new() -> Self {
        Self {
            arena: vec![0u8; BATCH * SLOT].into_boxed_slice(),
            meta: [Received {
                len: 0,
                from: [0; 6],
                broadcast: false,
            }; BATCH],
            truncated: [false; BATCH],
            count: 0,
        }
    }

    /// Frames read by the last call.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the last call read nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Frame `k` of the last call: who sent it and its bytes (a truncated frame is `None`).
    pub fn frame(&self, k: usize) -> Option<(Received, &[u8])> {
        if k >= self.count || *self.truncated.get(k)? {
            return None;
        }
        let meta = *self.meta.get(k)?;
        let data = self.arena.get(k * SLOT..k * SLOT + meta.len)?;
        Some((meta, data))
    }
}

impl Default for EthRxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl EthSocket {
    /// Opens `device` for cjdns frames, bringing it up if it is down (as cjdns does).
    pub fn open(device: &str) -> io::Result<Self> {
        Self::open_as(device, true)
    }

    /// Opens `device` for sending cjdns frames only: the socket is bound to no protocol, so
    /// the kernel gives it no copies of what arrives (another worker's socket reads those).
    pub fn open_sender(device: &str) -> io::Result<Self> {
        Self::open_as(device, false)
    }

    fn open_as(device: &str, receive: bool) -> io::Result<Self> {
        let protocol = if receive {
            libc::c_int::from(ETHERTYPE.to_be())
        } else {
            0
        };
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

        // As for UDP: large buffers ride out bursts between two turns of the loop (the kernel
        // caps them at net.core.{r,w}mem_max).
        let sref = socket2::SockRef::from(&fd);
        let _ = sref.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sref.set_send_buffer_size(SOCKET_BUFFER);

        let mut addr = sockaddr_ll(ifindex, [0; 6]);
        if !receive {
            addr.sll_protocol = 0;
        }
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
            tx: TxQueue {
                arena: vec![0u8; BATCH * SLOT].into_boxed_slice(),
                frames: Vec::with_capacity(BATCH),
                used: 0,
                dropped: 0,
                last_log: None,
            },
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

    /// Reads up to [`BATCH`] frames with one `recvmmsg`; how many. `WouldBlock` when there
    /// are none.
    pub fn recv_batch(&self, rx: &mut EthRxBatch) -> io::Result<usize> {
        rx.count = 0;
        // SAFETY: all-zero is a valid `sockaddr_ll`.
        let mut names: [libc::sockaddr_ll; BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths).
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let mut iovs: [libc::iovec; BATCH] = std::array::from_fn(|_| libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        });
        for (k, (iov, slot)) in iovs
            .iter_mut()
            .zip(rx.arena.chunks_exact_mut(SLOT))
            .enumerate()
        {
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            let hdr = &mut hdrs[k].msg_hdr;
            hdr.msg_name = std::ptr::from_mut(&mut names[k]).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        }
        for (hdr, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: each header points at its own `sockaddr_ll` and at one iovec over its own
        // SLOT bytes of the arena; all outlive the call, which writes only into them.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
        for k in 0..n.min(BATCH) {
            rx.truncated[k] = hdrs[k].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let mut from = [0u8; 6];
            from.copy_from_slice(&names[k].sll_addr[..6]);
            rx.meta[k] = Received {
                len: (hdrs[k].msg_len as usize).min(SLOT),
                from,
                broadcast: names[k].sll_pkttype == libc::PACKET_BROADCAST,
            };
        }
        rx.count = n.min(BATCH);
        Ok(rx.count)
    }

    /// Queues `payload` for `to` behind a cjdns frame header; it leaves at the next
    /// [`EthSocket::flush`] (at once if the queue is full).
    pub fn queue(&mut self, to: [u8; 6], payload: &[u8]) {
        let Some(header) = eth::header(payload.len()).filter(|_| payload.len() <= SLOT) else {
            self.tx.dropped += 1;
            return;
        };
        if self.tx.frames.len() >= BATCH || self.tx.used + payload.len() > self.tx.arena.len() {
            self.flush();
        }
        let at = self.tx.used;
        self.tx.arena[at..at + payload.len()].copy_from_slice(payload);
        self.tx.used += payload.len();
        self.tx.frames.push((to, header, payload.len()));
    }

    /// Broadcasts `payload` (a beacon body) at once.
    pub fn broadcast(&mut self, payload: &[u8]) {
        self.queue(BROADCAST, payload);
        self.flush();
    }

    /// Sends every queued frame: one `sendmmsg`, more only if the kernel stops early. A frame
    /// it refuses is dropped and counted (logged at most once a second), as cjdns drops it.
    pub fn flush(&mut self) {
        let n = self.tx.frames.len();
        if n > 0 {
            let mut names = [sockaddr_ll(self.ifindex, [0; 6]); BATCH];
            let mut iovs: [libc::iovec; 2 * BATCH] = std::array::from_fn(|_| libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            });
            let mut at = 0;
            for (k, (to, header, len)) in self.tx.frames.iter().enumerate() {
                names[k].sll_addr[..6].copy_from_slice(to);
                iovs[2 * k] = libc::iovec {
                    iov_base: header.as_ptr().cast_mut().cast(),
                    iov_len: header.len(),
                };
                iovs[2 * k + 1] = libc::iovec {
                    iov_base: self.tx.arena[at..].as_mut_ptr().cast(),
                    iov_len: *len,
                };
                at += len;
            }
            // SAFETY: all-zero is a valid `mmsghdr`.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (k, hdr) in hdrs.iter_mut().take(n).enumerate() {
                hdr.msg_hdr.msg_name = std::ptr::from_mut(&mut names[k]).cast();
                hdr.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                hdr.msg_hdr.msg_iov = iovs[2 * k..].as_mut_ptr();
                hdr.msg_hdr.msg_iovlen = 2;
            }
            let mut sent = 0;
            while sent < n {
                let rest = &mut hdrs[sent..n];
                // SAFETY: every header points at its destination in `names` and two iovecs
                // over a header in `frames` and a payload in the arena, all alive and
                // unchanged during the call; the kernel only reads them (and writes msg_len).
                let r = unsafe {
                    libc::sendmmsg(self.fd.as_raw_fd(), rest.as_mut_ptr(), rest.len() as _, 0)
                };
                match usize::try_from(r) {
                    Ok(k) if k > 0 => sent += k,
                    _ => {
                        let e = io::Error::last_os_error();
                        if buffer_full(&e) {
                            // The device or socket queue is full: the rest would be refused
                            // too, one system call each. Drop them all.
                            self.tx.dropped += (n - sent) as u64;
                            break;
                        }
                        // This frame was refused (too large, device down): drop it and go
                        // on with the rest.
                        tracing::debug!(device = %self.device, error = %e, "Ethernet send failed");
                        self.tx.dropped += 1;
                        sent += 1;
                    }
                }
            }
            self.tx.frames.clear();
            self.tx.used = 0;
        }
        self.log_drops();
    }

    fn log_drops(&mut self) {
        let now = Instant::now();
        let quiet = self
            .tx
            .last_log
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
        if self.tx.dropped == 0 || quiet {
            return;
        }
        tracing::warn!(device = %self.device, dropped = self.tx.dropped, "Ethernet frames dropped");
        self.tx.dropped = 0;
        self.tx.last_log = Some(now);
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
