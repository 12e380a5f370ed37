//! Batched UDP I/O for the data path: `recvmmsg` with UDP GRO on the way in, a queue flushed
//! with UDP GSO on the way out. (One job; about a third of the file is its tests.)
//!
//! Receiving, socket set-up and the one-datagram fallback send are `quinn-udp`'s
//! ([`UdpSocketState`]): up to [`RX_SLOTS`] datagrams per `recvmmsg`, where each may be a GRO
//! super-datagram of equal-sized segments (the last one may be shorter) that
//! [`RxBatch::datagram`] hands out with its segment size; `sendmmsg` is ours. Outgoing
//! datagrams are copied into one reusable arena ([`Udp::queue`]) and sent when the queue is
//! full or the driver flushes ([`Udp::flush`], at the end of every drain round): datagrams to
//! the same peer go out as one GSO message of several segments ([`plan_sends`]), and the
//! messages of a flush — to every peer — leave in one `sendmmsg` per socket. Buffers are
//! allocated once; nothing here allocates per packet.
//!
//! A full send buffer (`EAGAIN`) or qdisc (`ENOBUFS`) drops the datagram: it is counted and
//! logged at most once a second, never retried in a loop. A socket whose first GSO send fails
//! sends one datagram per call from then on; the failed batch is resent that way.
//!
//! `quinn-udp` forbids IP fragmentation on its sockets (`IP_PMTUDISC_PROBE`,
//! `IPV6_DONTFRAG`), which QUIC wants but cjdns does not: a cjdns datagram larger than the
//! path MTU is fragmented by the kernel, so [`Udp::new`] puts those options back to what the
//! socket had. Those (`getsockopt`/`setsockopt` of an `int`), `sendmmsg`, and the
//! `SO_ATTACH_REUSEPORT_CBPF` that keeps a port's datagrams on the node's own sockets
//! ([`steer_to_first`]), which neither std, socket2 nor quinn-udp expose, are the only `unsafe`
//! blocks here.
#![allow(unsafe_code)]

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use pktmesh_node::packet::{HEADROOM, MAX_PACKET};
use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::SockAddr;
use tracing::{debug, info, warn};

/// Datagrams (or GRO super-datagrams) read per `recvmmsg` at most; `quinn-udp`'s batch size.
pub const RX_SLOTS: usize = 32;
/// Room for one received datagram: the largest UDP payload, which a GRO super-datagram
/// (at most 64 segments and 64 KiB) also fits in.
const RX_SLOT_SIZE: usize = 1 << 16;
/// Datagrams queued before the queue is flushed.
pub const TX_BATCH: usize = 32;
/// The largest datagram the node hands over: a [`pktmesh_node::packet::PacketBuf`] with its
/// headroom used up.
const TX_SLOT_SIZE: usize = HEADROOM + MAX_PACKET;
/// Most bytes in one GSO send: the UDP payload limit of an IPv4 packet (65,507), rounded down.
pub const GSO_MAX_BYTES: usize = 65_000;
/// Most segments in one GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// One send of a flush: `count` queued datagrams, `order[first..first + count]` of
/// [`plan_sends`], all to `to`. With `count > 1` it is one GSO send whose segments are
/// `segment` bytes (the last may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedSend {
    /// The destination.
    pub to: SocketAddr,
    /// Index of the first datagram in `order`.
    pub first: usize,
    /// How many datagrams.
    pub count: usize,
    /// The segment size: the length of the first datagram.
    pub segment: usize,
}

/// Decides the sends for queued datagrams `(destination, length)`, in queue order.
///
/// `order` receives the queue indices grouped by destination: destinations in order of their
/// first datagram, each destination's datagrams in queue order (datagrams to one peer are
/// never reordered; datagrams to different peers may be). `sends` receives runs of `order`
/// that go out in one system call: one destination, at most `max_segments(destination)` (and
/// [`GSO_MAX_SEGMENTS`]) datagrams and [`GSO_MAX_BYTES`] bytes, all as long as the first but
/// the last, which may be shorter (what UDP GSO can send). Both vectors are cleared first and
/// allocate only if they have less capacity than there are datagrams.
pub fn plan_sends(
    queued: &[(SocketAddr, usize)],
    max_segments: impl Fn(&SocketAddr) -> usize,
    order: &mut Vec<usize>,
    sends: &mut Vec<PlannedSend>,
) {
    order.clear();
    sends.clear();
    for (i, (to, _)) in queued.iter().enumerate() {
        if order.contains(&i) {
            continue;
        }
        order.extend(
            queued
                .iter()
                .enumerate()
                .skip(i)
                .filter(|(_, (d, _))| d == to)
                .map(|(j, _)| j),
        );
    }
    let mut k = 0;
    while k < order.len() {
        let (to, segment) = queued[order[k]];
        let max = max_segments(&to).clamp(1, GSO_MAX_SEGMENTS);
        let (mut count, mut bytes, mut last) = (1, segment, segment);
        while let Some(&next) = order.get(k + count) {
            let (next_to, len) = queued[next];
            let fits = next_to == to
                && count < max
                && segment > 0
                && last == segment
                && len <= segment
                && bytes + len <= GSO_MAX_BYTES;
            if !fits {
                break;
            }
            count += 1;
            bytes += len;
            last = len;
        }
        sends.push(PlannedSend {
            to,
            first: k,
            count,
            segment,
        });
        k += count;
    }
}

/// One UDP socket of the data path.
struct Port {
    socket: UdpSocket,
    state: UdpSocketState,
    ipv4: bool,
    /// Send several datagrams per call with GSO.
    gso: bool,
    /// A GSO send has worked on this socket (a later failure is about that batch, not GSO).
    gso_proven: bool,
    /// Send system calls made (for tests and statistics).
    send_calls: u64,
}

/// Dropped datagrams not yet logged.
#[derive(Default)]
struct Drops {
    count: u64,
    last_log: Option<Instant>,
}

impl Drops {
    /// Logs the drops counted, if any, and at most once a second.
    fn log(&mut self) {
        if self.count == 0 {
            return;
        }
        let now = Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        warn!(
            dropped = self.count,
            "UDP send buffer full: datagrams dropped"
        );
        self.count = 0;
        self.last_log = Some(now);
    }
}

/// The data path's UDP sockets and their send queue.
pub struct Udp {
    ports: Vec<Port>,
    /// Queued datagrams back to back.
    arena: Box<[u8]>,
    used: usize,
    /// Destination and length of each queued datagram, and where it starts in `arena`.
    queued: Vec<(SocketAddr, usize)>,
    starts: Vec<usize>,
    order: Vec<usize>,
    sends: Vec<PlannedSend>,
    /// Per `sendmmsg` message: its destination and its `UDP_SEGMENT` control message.
    names: Vec<SockAddr>,
    controls: Vec<SegmentControl>,
    drops: Drops,
}

/// Room for one `UDP_SEGMENT` control message, aligned as `struct cmsghdr` must be.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SegmentControl([u8; 32]);

/// `UDP_SEGMENT` from `<linux/udp.h>`: the GSO segment size of a send.
const UDP_SEGMENT: libc::c_int = 103;

impl Udp {
    /// Takes over bound, non-blocking sockets: turns on GRO where the kernel has it, and keeps
    /// IP fragmentation as the sockets had it.
    pub fn new(sockets: Vec<UdpSocket>) -> io::Result<Self> {
        let mut ports = Vec::with_capacity(sockets.len());
        for socket in sockets {
            let ipv4 = socket.local_addr()?.is_ipv4();
            let saved = FragmentOptions::read(socket.as_fd(), ipv4);
            let state = UdpSocketState::new(UdpSockRef::from(&socket))?;
            saved.restore(socket.as_fd());
            ports.push(Port {
                gso: state.max_gso_segments() > 1,
                gso_proven: false,
                send_calls: 0,
                socket,
                state,
                ipv4,
            });
        }
        Ok(Self {
            ports,
            arena: vec![0u8; TX_BATCH * TX_SLOT_SIZE].into_boxed_slice(),
            used: 0,
            queued: Vec::with_capacity(TX_BATCH),
            starts: Vec::with_capacity(TX_BATCH),
            order: Vec::with_capacity(TX_BATCH),
            sends: Vec::with_capacity(TX_BATCH),
            names: Vec::with_capacity(TX_BATCH),
            controls: vec![SegmentControl([0; 32]); TX_BATCH],
            drops: Drops::default(),
        })
    }

    /// The sockets, in the order given to [`Udp::new`].
    pub fn sockets(&self) -> impl Iterator<Item = &UdpSocket> {
        self.ports.iter().map(|p| &p.socket)
    }

    /// How many sockets.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// Whether there is no socket.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Whether socket `i` sends with GSO and receives with GRO.
    pub fn offloads(&self, i: usize) -> (bool, bool) {
        self.ports
            .get(i)
            .map_or((false, false), |p| (p.gso, p.state.gro_segments() > 1))
    }

    /// Reads up to `max` (and [`RX_SLOTS`]) datagrams from socket `i` into `rx` with one
    /// `recvmmsg`; how many. `WouldBlock` when there are none.
    pub fn recv(&self, i: usize, rx: &mut RxBatch, max: usize) -> io::Result<usize> {
        let Some(port) = self.ports.get(i) else {
            return Ok(0);
        };
        rx.count = 0;
        let want = max.clamp(1, RX_SLOTS);
        let mut chunks = rx.arena.chunks_mut(RX_SLOT_SIZE);
        let mut bufs: [IoSliceMut<'_>; RX_SLOTS] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
        let n = port.state.recv(
            UdpSockRef::from(&port.socket),
            &mut bufs[..want],
            &mut rx.meta[..want],
        )?;
        rx.count = n.min(want);
        Ok(rx.count)
    }

    /// Queues a datagram to `to` on the socket of its address family, flushing first when the
    /// queue is full. It goes out at the next [`Udp::flush`] at the latest.
    pub fn queue(&mut self, to: SocketAddr, data: &[u8]) {
        if self.queued.len() >= TX_BATCH || self.used + data.len() > self.arena.len() {
            self.flush();
        }
        if data.len() > self.arena.len() {
            if let Some(p) = self.ports.iter_mut().find(|p| p.ipv4 == to.is_ipv4()) {
                send_one(p, &mut self.drops, to, data);
            }
            return;
        }
        let start = self.used;
        self.arena[start..start + data.len()].copy_from_slice(data);
        self.used += data.len();
        self.queued.push((to, data.len()));
        self.starts.push(start);
    }

    /// Sends everything queued: one message per run of datagrams to one peer (a GSO send of
    /// several segments where the socket has GSO), all messages of a socket in one
    /// `sendmmsg`.
    pub fn flush(&mut self) {
        if !self.queued.is_empty() {
            let ports = &self.ports;
            plan_sends(
                &self.queued,
                |to| {
                    ports
                        .iter()
                        .find(|p| p.ipv4 == to.is_ipv4())
                        .map_or(1, |p| if p.gso { GSO_MAX_SEGMENTS } else { 1 })
                },
                &mut self.order,
                &mut self.sends,
            );
            let queue = Queue {
                arena: &self.arena,
                queued: &self.queued,
                starts: &self.starts,
                order: &self.order,
            };
            for port in &mut self.ports {
                let ipv4 = port.ipv4;
                self.names.clear();
                self.names.extend(
                    self.sends
                        .iter()
                        .filter(|s| s.to.is_ipv4() == ipv4)
                        .map(|s| SockAddr::from(s.to)),
                );
                if self.names.is_empty() {
                    continue;
                }
                let sends = self.sends.iter().filter(|s| s.to.is_ipv4() == ipv4);
                send_messages(
                    port,
                    &mut self.drops,
                    &queue,
                    sends,
                    &self.names,
                    &mut self.controls,
                );
            }
            self.queued.clear();
            self.starts.clear();
            self.used = 0;
        }
        self.drops.log();
    }

    /// Send system calls made so far, over all sockets.
    pub fn send_calls(&self) -> u64 {
        self.ports.iter().map(|p| p.send_calls).sum()
    }
}

/// The queued datagrams of one flush, as [`send_messages`] reads them.
struct Queue<'a> {
    arena: &'a [u8],
    queued: &'a [(SocketAddr, usize)],
    starts: &'a [usize],
    order: &'a [usize],
}

impl Queue<'_> {
    /// The datagrams of a planned send, in order.
    fn datagrams<'s>(&'s self, s: &PlannedSend) -> impl Iterator<Item = &'s [u8]> + 's {
        let run = &self.order[s.first..s.first + s.count];
        run.iter().map(|&q| {
            let (start, len) = (self.starts[q], self.queued[q].1);
            &self.arena[start..start + len]
        })
    }
}

/// Sends `sends` (all for `port`'s address family; `names[i]` is the destination of the
/// i-th) with as few `sendmmsg` calls as the kernel allows: one, unless a message fails.
/// When the socket buffer or qdisc is full, the failed message and the rest are dropped.
/// Otherwise a failed message is resent datagram by datagram when it was a GSO send (GSO is
/// turned off if it never worked on this socket), and the rest follow in another call.
fn send_messages<'a>(
    port: &mut Port,
    drops: &mut Drops,
    queue: &Queue<'_>,
    sends: impl Iterator<Item = &'a PlannedSend>,
    names: &[SockAddr],
    controls: &mut [SegmentControl],
) {
    // First the datagrams as iovecs (one per datagram, a message's back to back) and the
    // control messages; then the headers that point at them, once nothing moves any more.
    let mut iovs = [IoSlice::new(&[]); TX_BATCH];
    let mut planned: [Option<(&PlannedSend, usize, usize)>; TX_BATCH] = [None; TX_BATCH];
    let mut n = 0;
    let mut next_iov = 0;
    for s in sends {
        let (Some(slot), Some(control)) = (planned.get_mut(n), controls.get_mut(n)) else {
            break;
        };
        let first_iov = next_iov;
        for d in queue.datagrams(s) {
            if let Some(iov) = iovs.get_mut(next_iov) {
                *iov = IoSlice::new(d);
                next_iov += 1;
            }
        }
        if s.count > 1 {
            let cmsg = control.0.as_mut_ptr().cast::<libc::cmsghdr>();
            // SAFETY: `control` is 32 bytes aligned for `cmsghdr`: room for the header and a
            // u16 (CMSG_SPACE(2) is 24 on 64-bit Linux), and the data pointer is inside it.
            unsafe {
                (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = UDP_SEGMENT;
                libc::CMSG_DATA(cmsg)
                    .cast::<u16>()
                    .write_unaligned(s.segment as u16);
            }
        }
        *slot = Some((s, first_iov, next_iov - first_iov));
        n += 1;
    }
    // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths).
    let mut hdrs: [libc::mmsghdr; TX_BATCH] = unsafe { std::mem::zeroed() };
    for ((hdr, entry), (name, control)) in hdrs
        .iter_mut()
        .zip(&planned)
        .zip(names.iter().zip(controls.iter_mut()))
    {
        let Some((s, first_iov, iov_count)) = *entry else {
            break;
        };
        hdr.msg_hdr.msg_name = name.as_ptr().cast_mut().cast();
        hdr.msg_hdr.msg_namelen = name.len();
        // std documents IoSlice as ABI-compatible with `struct iovec` on Unix.
        hdr.msg_hdr.msg_iov = iovs[first_iov..].as_ptr().cast_mut().cast();
        hdr.msg_hdr.msg_iovlen = iov_count;
        if s.count > 1 {
            hdr.msg_hdr.msg_control = control.0.as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE only computes a size.
            hdr.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(2) } as _;
        }
    }
    let fd = port.socket.as_raw_fd();
    let mut at = 0;
    while at < n {
        port.send_calls += 1;
        let rest = &mut hdrs[at..n];
        // SAFETY: every header in `rest` points at a destination in `names`, iovecs in `iovs`
        // over datagrams in the arena, and (for GSO) a control message in `controls`; all
        // outlive the call, and the kernel only reads them (and writes `msg_len`).
        let sent = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as _, 0) };
        if sent > 0 {
            let sent = sent as usize;
            if planned[at..at + sent]
                .iter()
                .flatten()
                .any(|(s, _, _)| s.count > 1)
            {
                port.gso_proven = true;
            }
            at += sent;
            continue;
        }
        // The message at `at` failed (or nothing was sent at all).
        let e = io::Error::last_os_error();
        let Some((s, _, _)) = planned[at] else { break };
        if sent == 0 || buffer_full(&e) {
            // The socket buffer or qdisc is full: the rest would be refused too, one system
            // call each. Drop them all.
            drops.count += planned[at..n]
                .iter()
                .flatten()
                .map(|(s, _, _)| s.count as u64)
                .sum::<u64>();
            break;
        } else if s.count > 1 {
            if port.gso_proven {
                debug!(to = %s.to, error = %e, segment = s.segment, "GSO send failed; sending its datagrams one by one");
            } else {
                port.gso = false;
                info!(to = %s.to, error = %e, "UDP GSO does not work on this socket; sending one datagram per call");
            }
            for d in queue.datagrams(s) {
                send_one(port, drops, s.to, d);
            }
        } else {
            debug!(to = %s.to, error = %e, "UDP send failed");
        }
        at += 1;
    }
}

/// Sends one datagram with its own system call (an oversized one, or one of a GSO send
/// that failed). One the kernel will not take is dropped: counted when the socket buffer or
/// qdisc is full, logged otherwise.
fn send_one(port: &mut Port, drops: &mut Drops, to: SocketAddr, datagram: &[u8]) {
    port.send_calls += 1;
    let transmit = Transmit {
        destination: to,
        ecn: None,
        contents: datagram,
        segment_size: None,
        src_ip: None,
    };
    if let Err(e) = port
        .state
        .try_send(UdpSockRef::from(&port.socket), &transmit)
    {
        if buffer_full(&e) {
            drops.count += 1;
        } else {
            debug!(%to, error = %e, "UDP send failed");
        }
    }
}

/// The socket buffer or the qdisc is full: the datagram is dropped, not retried.
pub(super) fn buffer_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Datagrams read by one [`Udp::recv`], reused from call to call.
pub struct RxBatch {
    arena: Box<[u8]>,
    meta: [RecvMeta; RX_SLOTS],
    count: usize,
}

impl Default for RxBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RxBatch {
    /// Room for [`RX_SLOTS`] datagrams of up to 64 KiB (2 MiB), allocated once.
    pub fn new() -> Self {
        Self {
            arena: vec![0u8; RX_SLOTS * RX_SLOT_SIZE].into_boxed_slice(),
            meta: [RecvMeta::default(); RX_SLOTS],
            count: 0,
        }
    }

    /// Datagram `k` of the last read: its source, its bytes and the size of the segments it
    /// is made of (GRO; the last may be shorter). Split it with [`segments`].
    pub fn datagram(&self, k: usize) -> (SocketAddr, &[u8], usize) {
        let Some(m) = self.meta[..self.count].get(k) else {
            return (self.meta[0].addr, &[], 0);
        };
        let start = k * RX_SLOT_SIZE;
        let len = m.len.min(RX_SLOT_SIZE);
        (m.addr, &self.arena[start..start + len], m.stride)
    }
}

/// The datagrams a (GRO) super-datagram is made of: `stride` bytes each, the last maybe
/// shorter; an empty datagram yields nothing.
pub fn segments(data: &[u8], stride: usize) -> std::slice::Chunks<'_, u8> {
    let stride = if stride == 0 { data.len() } else { stride };
    data.chunks(stride.max(1))
}

/// The IP fragmentation options of a socket, to put back after `quinn-udp` changes them.
struct FragmentOptions(Vec<(libc::c_int, libc::c_int, libc::c_int)>);

impl FragmentOptions {
    fn read(fd: BorrowedFd<'_>, ipv4: bool) -> Self {
        let mut options = vec![(libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)];
        if !ipv4 {
            options.push((libc::IPPROTO_IPV6, libc::IPV6_MTU_DISCOVER));
            options.push((libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG));
        }
        Self(
            options
                .into_iter()
                .filter_map(|(level, name)| {
                    get_int_option(fd, level, name)
                        .ok()
                        .map(|v| (level, name, v))
                })
                .collect(),
        )
    }

    fn restore(&self, fd: BorrowedFd<'_>) {
        for &(level, name, value) in &self.0 {
            if let Err(e) = set_int_option(fd, level, name, value) {
                debug!(level, name, error = %e, "cannot restore a UDP socket option");
            }
        }
    }
}

fn get_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open descriptor for the whole call (borrowed); `value` and `len` are
    // live, writable locals, and `len` holds `value`'s size, so the kernel writes at most that
    // many bytes into `value` and the option's size into `len`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if ret == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SO_ATTACH_REUSEPORT_CBPF` from `<asm-generic/socket.h>` (every architecture but MIPS,
/// PA-RISC and SPARC, which pktmesh is not built for).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// One classic BPF instruction.
fn bpf(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        // The opcode constants are u32 in libc; every one fits the 16-bit field.
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The classic BPF program [`steer_to_first`] attaches: it picks, for a datagram, socket
/// `hash(source address, source port) % count` of its `SO_REUSEPORT` group. It reads the
/// source from the IP header (`SKF_NET_OFF`) and the UDP source port right after it, taking
/// the IPv4 header as 20 bytes and the IPv6 one as 40: a datagram with IP options or IPv6
/// extension headers hashes on other bytes, which still picks one of the first `count`. A
/// load out of the packet ends the program with 0: the first socket.
pub fn steering_program(count: u32, ipv4: bool) -> Vec<libc::sock_filter> {
    let net = |offset: i32| (libc::SKF_NET_OFF + offset) as u32;
    let load_word = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let load_half = libc::BPF_LD | libc::BPF_H | libc::BPF_ABS;
    let tax = libc::BPF_MISC | libc::BPF_TAX;
    let xor_x = libc::BPF_ALU | libc::BPF_XOR | libc::BPF_X;
    let (address_words, port_at): (&[i32], i32) = if ipv4 {
        (&[12], 20)
    } else {
        (&[8, 12, 16, 20], 40)
    };
    let mut program = Vec::with_capacity(16);
    for (i, &at) in address_words.iter().enumerate() {
        program.push(bpf(load_word, net(at)));
        if i > 0 {
            program.push(bpf(xor_x, 0));
        }
        program.push(bpf(tax, 0));
    }
    program.push(bpf(load_half, net(port_at)));
    program.push(bpf(xor_x, 0));
    // Mix, so that neighbouring addresses and ports spread over the sockets.
    program.push(bpf(
        libc::BPF_ALU | libc::BPF_MUL | libc::BPF_K,
        0x9e37_79b1,
    ));
    program.push(bpf(libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K, 16));
    program.push(bpf(
        libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K,
        count.max(1),
    ));
    program.push(bpf(libc::BPF_RET | libc::BPF_A, 0));
    program
}

/// Makes the `SO_REUSEPORT` group of the bound socket `fd` deliver every datagram to one of
/// its first `count` sockets (the node's, bound before anyone else could join), by a hash of
/// its source ([`steering_program`]). A socket that joins the group later, which the kernel
/// allows any process of the same user (any process, for root), then receives nothing, unless
/// it replaces the program itself.
pub(crate) fn steer_to_first(fd: BorrowedFd<'_>, count: usize, ipv4: bool) -> io::Result<()> {
    let count = u32::try_from(count).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut program = steering_program(count, ipv4);
    let prog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    let len = std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t;
    // SAFETY: `fd` is an open descriptor for the whole call (borrowed). `prog` is a live local
    // of exactly `len` bytes whose `filter` points at `program`, `len` instructions that stay
    // alive (and unmoved) until the call returns; the kernel copies them.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&raw const prog).cast(),
            len,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the `int` socket option `level`/`name` of `fd` to `value`.
pub(crate) fn set_int_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open descriptor for the whole call (borrowed); the kernel only reads
    // `len` bytes from `value`, a live local of exactly that size.
    let ret =
        unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, (&raw const value).cast(), len) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    /// `order`, and each send as (destination port, first, count, segment).
    type Plan = (Vec<usize>, Vec<(u16, usize, usize, usize)>);

    fn plan(queued: &[(SocketAddr, usize)], max: usize) -> Plan {
        let (mut order, mut sends) = (Vec::new(), Vec::new());
        plan_sends(queued, |_| max, &mut order, &mut sends);
        let sends = sends
            .iter()
            .map(|s| (s.to.port(), s.first, s.count, s.segment))
            .collect();
        (order, sends)
    }

    #[test]
    fn equal_datagrams_to_one_peer_are_one_gso_send() {
        let q = vec![(addr(1), 1400); 5];
        let (order, sends) = plan(&q, 64);
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
        assert_eq!(sends, vec![(1, 0, 5, 1400)]);
    }

    #[test]
    fn a_shorter_datagram_ends_a_gso_send() {
        // 1400 1400 80 | 1400 | 1500 (longer than the segment: a new send) 1500
        let q = [1400, 1400, 80, 1400, 1500, 1500].map(|l| (addr(1), l));
        let (_, sends) = plan(&q, 64);
        assert_eq!(
            sends,
            vec![(1, 0, 3, 1400), (1, 3, 1, 1400), (1, 4, 2, 1500)]
        );
    }

    #[test]
    fn destinations_are_grouped_without_reordering_a_peer() {
        let q = [
            (addr(1), 100),
            (addr(2), 200),
            (addr(1), 100),
            (addr(3), 50),
            (addr(2), 200),
            (addr(1), 90),
        ];
        let (order, sends) = plan(&q, 64);
        assert_eq!(order, vec![0, 2, 5, 1, 4, 3]);
        assert_eq!(sends, vec![(1, 0, 3, 100), (2, 3, 2, 200), (3, 5, 1, 50)]);
    }

    #[test]
    fn limits_split_gso_sends() {
        // Segment count: without GSO every datagram is its own send.
        let q = vec![(addr(1), 100); 3];
        assert_eq!(
            plan(&q, 1).1,
            vec![(1, 0, 1, 100), (1, 1, 1, 100), (1, 2, 1, 100)]
        );
        assert_eq!(plan(&q, 2).1, vec![(1, 0, 2, 100), (1, 2, 1, 100)]);
        // Bytes: 4096-byte datagrams, at most 15 (61,440 bytes) per send.
        let q = vec![(addr(1), 4096); 20];
        assert_eq!(plan(&q, 64).1, vec![(1, 0, 15, 4096), (1, 15, 5, 4096)]);
        // Empty datagrams are never segments.
        let q = vec![(addr(1), 0); 2];
        assert_eq!(plan(&q, 64).1, vec![(1, 0, 1, 0), (1, 1, 1, 0)]);
        assert_eq!(plan(&[], 64), (vec![], vec![]));
    }

    #[test]
    fn gro_segments_split_by_stride() {
        let data: Vec<u8> = (0..10).collect();
        let parts: Vec<&[u8]> = segments(&data, 4).collect();
        assert_eq!(parts, vec![&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert_eq!(segments(&data, 0).count(), 1);
        assert_eq!(segments(&data, 10).count(), 1);
        assert_eq!(segments(&[], 0).count(), 0);
    }

    fn try_bound(addr: &str) -> Option<UdpSocket> {
        let s = std::net::UdpSocket::bind(addr).ok()?;
        s.set_nonblocking(true).unwrap();
        Some(UdpSocket::from_std(s))
    }

    fn bound(addr: &str) -> UdpSocket {
        try_bound(addr).expect("bind loopback")
    }

    /// Reads until `want` datagrams arrived (or 2 s passed): (segment size, super-datagram
    /// length) per read datagram and the segments themselves.
    fn receive(udp: &Udp, rx: &mut RxBatch, want: usize) -> (Vec<(usize, usize)>, Vec<Vec<u8>>) {
        let (mut reads, mut got) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < want && Instant::now() < deadline {
            match udp.recv(0, rx, RX_SLOTS) {
                Ok(n) => {
                    for k in 0..n {
                        let (_, data, stride) = rx.datagram(k);
                        reads.push((stride, data.len()));
                        got.extend(segments(data, stride).map(<[u8]>::to_vec));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("receive: {e}"),
            }
        }
        (reads, got)
    }

    fn datagrams() -> Vec<Vec<u8>> {
        let mut d: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 1200]).collect();
        d.push(vec![9; 300]);
        d
    }

    /// GSO out, GRO in, over loopback: seven datagrams to one peer leave in one send and, where
    /// the kernel has GRO, arrive as one super-datagram that splits back into the seven.
    #[test]
    fn gso_and_gro_over_loopback() {
        for (a, b) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
            let (Some(sa), Some(sb)) = (try_bound(a), try_bound(b)) else {
                eprintln!("skipped {a}: cannot bind loopback");
                continue;
            };
            let mut tx = Udp::new(vec![sa]).unwrap();
            let rx_udp = Udp::new(vec![sb]).unwrap();
            let to = rx_udp.sockets().next().unwrap().local_addr().unwrap();
            let (gso, _) = tx.offloads(0);
            let (_, gro) = rx_udp.offloads(0);
            if !gso || !gro {
                eprintln!(
                    "GSO ({gso}) or GRO ({gro}) not supported here: checking plain datagrams only"
                );
            }
            for d in datagrams() {
                tx.queue(to, &d);
            }
            tx.flush();
            let mut rx = RxBatch::new();
            let (reads, got) = receive(&rx_udp, &mut rx, 7);
            assert_eq!(got, datagrams(), "{a}: datagrams intact and in order");
            if gso && gro {
                assert_eq!(reads, vec![(1200, 7500)], "{a}: one GSO send, one GRO read");
                assert!(tx.offloads(0).0, "GSO still on after it worked");
            }
        }
    }

    /// A plain socket without GRO, as stock cjdns has, and its address.
    fn plain_receiver() -> (std::net::UdpSocket, SocketAddr) {
        let plain = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let to = plain.local_addr().unwrap();
        (plain, to)
    }

    /// Queues [`datagrams`] to `to`, flushes, and checks `plain` reads them one by one.
    fn send_and_expect_datagrams(tx: &mut Udp, plain: &std::net::UdpSocket, to: SocketAddr) {
        for d in datagrams() {
            tx.queue(to, &d);
        }
        tx.flush();
        let mut buf = [0u8; 65536];
        for d in datagrams() {
            let (n, _) = plain.recv_from(&mut buf).expect("a datagram");
            assert_eq!(&buf[..n], &d[..]);
        }
    }

    /// A receiver without GRO (stock cjdns) gets a GSO send as plain datagrams, and a sender
    /// whose GSO is off sends the same datagrams one per call.
    #[test]
    fn gso_reaches_a_plain_socket_as_datagrams() {
        let (plain, to) = plain_receiver();
        for gso in [true, false] {
            let mut tx = Udp::new(vec![bound("127.0.0.1:0")]).unwrap();
            tx.ports[0].gso &= gso;
            send_and_expect_datagrams(&mut tx, &plain, to);
        }
    }

    /// A socket whose first GSO send fails (here: the kernel refuses GSO without UDP
    /// checksums) resends that batch one datagram per call and keeps GSO off.
    #[test]
    fn a_failed_first_gso_send_falls_back_to_single_datagrams() {
        let (plain, to) = plain_receiver();
        let mut tx = Udp::new(vec![bound("127.0.0.1:0")]).unwrap();
        if !tx.offloads(0).0 {
            eprintln!("skipped: no UDP GSO here");
            return;
        }
        let fd = tx.ports[0].socket.as_fd();
        set_int_option(fd, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        send_and_expect_datagrams(&mut tx, &plain, to);
        assert!(!tx.offloads(0).0, "GSO off after the failure");
        send_and_expect_datagrams(&mut tx, &plain, to);
    }

    /// A full queue flushes by itself; datagrams to two peers each arrive in order.
    #[test]
    fn a_full_queue_flushes_and_peers_keep_their_order() {
        let mut tx = Udp::new(vec![bound("127.0.0.1:0")]).unwrap();
        let rx1 = Udp::new(vec![bound("127.0.0.1:0")]).unwrap();
        let rx2 = Udp::new(vec![bound("127.0.0.1:0")]).unwrap();
        let to1 = rx1.sockets().next().unwrap().local_addr().unwrap();
        let to2 = rx2.sockets().next().unwrap().local_addr().unwrap();
        let n = TX_BATCH * 2 + 3;
        for i in 0..n {
            let to = if i % 3 == 0 { to2 } else { to1 };
            tx.queue(to, &(i as u32).to_be_bytes().repeat(100));
        }
        assert_eq!(tx.queued.len(), n - 2 * TX_BATCH, "flushed when full");
        tx.flush();
        let mut rx = RxBatch::new();
        for (udp, to) in [(&rx1, to1), (&rx2, to2)] {
            let want: Vec<Vec<u8>> = (0..n)
                .filter(|i| (if i % 3 == 0 { to2 } else { to1 }) == to)
                .map(|i| (i as u32).to_be_bytes().repeat(100))
                .collect();
            let (_, got) = receive(udp, &mut rx, want.len());
            assert_eq!(got, want);
        }
    }

    /// One flush to three peers is one system call, GSO or not, and each peer gets its
    /// datagrams intact and in order.
    #[test]
    fn a_flush_to_several_peers_is_one_sendmmsg() {
        for gso in [true, false] {
            let mut tx = Udp::new(vec![bound("127.0.0.1:0")]).unwrap();
            tx.ports[0].gso &= gso;
            let receivers: Vec<Udp> = (0..3)
                .map(|_| Udp::new(vec![bound("127.0.0.1:0")]).unwrap())
                .collect();
            let to: Vec<SocketAddr> = receivers
                .iter()
                .map(|r| r.sockets().next().unwrap().local_addr().unwrap())
                .collect();
            let payload = |i: usize| (i as u32).to_be_bytes().repeat(300);
            let count = if gso { 27 } else { 9 };
            for i in 0..count {
                tx.queue(to[i % 3], &payload(i));
            }
            let before = tx.send_calls();
            tx.flush();
            assert_eq!(tx.send_calls() - before, 1, "gso {gso}: one sendmmsg");
            let mut rx = RxBatch::new();
            for (k, r) in receivers.iter().enumerate() {
                let want: Vec<Vec<u8>> = (0..count).filter(|i| i % 3 == k).map(payload).collect();
                let (_, got) = receive(r, &mut rx, want.len());
                assert_eq!(got, want, "gso {gso}: peer {k}");
            }
        }
    }

    #[test]
    fn fragmentation_options_are_kept() {
        for a in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(s) = std::net::UdpSocket::bind(a) else {
                continue;
            };
            s.set_nonblocking(true).unwrap();
            let ipv4 = a.starts_with('1');
            let before = FragmentOptions::read(s.as_fd(), ipv4).0;
            let udp = Udp::new(vec![UdpSocket::from_std(s)]).unwrap();
            let sock = udp.sockets().next().unwrap();
            assert_eq!(FragmentOptions::read(sock.as_fd(), ipv4).0, before, "{a}");
            assert!(!before.is_empty());
        }
    }
}
