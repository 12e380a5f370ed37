//! The I/O sinks: where the node's packets go and where they come from — batched UDP sends
//! per peer socket, TUN reads and writes (with offloads), Ethernet frames, paced egress —
//! and the drain loops a worker runs over each readable source.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use pktmesh_node::core::{Node, Output, Pathfinder, Transmit};
use pktmesh_node::eth::EthLink;
use pktmesh_node::offload::Coalescer;
use pktmesh_node::packet::PacketBuf;
use tracing::{debug, info};

use super::interfaces::EthInterface;
use super::tun::{self, Tun};
use super::workers::Handoffs;
use super::{eth, udp, ETH_ROUND, MAX_BATCH};

/// The value of a TUN read, or `None` when the device has nothing more for now (a failed read
/// is logged).
pub(super) fn tun_read<T>(result: io::Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => {
            debug!(error = %e, "TUN read failed");
            None
        }
    }
}

/// The links to peers: UDP sockets and Ethernet interfaces, each with its send queue.
pub(super) struct Links {
    pub(super) udp: udp::Udp,
    pub(super) eth: Vec<EthInterface>,
}

impl Links {
    /// Queues a packet for the peer at link address `to`: an Ethernet frame when the address
    /// names a MAC ([`EthLink`]), a UDP datagram otherwise. It leaves at the next flush.
    pub(super) fn queue(&mut self, to: SocketAddr, data: &[u8]) {
        match EthLink::from_link_address(&to) {
            Some(link) => {
                let iface = self
                    .eth
                    .iter_mut()
                    .find(|e| e.socket.ifindex() == link.ifindex);
                if let Some(iface) = iface {
                    iface.socket.queue(link.mac, data);
                }
            }
            None => self.udp.queue(to, data),
        }
    }

    /// Sends everything queued.
    pub(super) fn flush(&mut self) {
        self.udp.flush();
        for e in &mut self.eth {
            e.socket.flush();
        }
    }
}

pub(super) struct Io<'a> {
    /// Where the node's outputs go.
    pub(super) sinks: Sinks<'a>,
    /// Where Ethernet `recvmmsg` reads into.
    pub(super) eth_rx: eth::EthRxBatch,
    /// Where `recvmmsg` reads into.
    pub(super) rx: udp::RxBatch,
    /// Where offloaded TUN reads go, when the device has offloads.
    pub(super) tun_offload: Option<TunOffloadBuffers>,
    /// Ethernet beacons heard this round, for the shards that did not see them.
    pub(super) eth_beacons: Vec<(SocketAddr, Vec<u8>)>,
}

/// Where what the node answers goes: peers' links, the TUN device, other shards.
pub(super) struct Sinks<'a> {
    /// Where packets for peers go.
    pub(super) links: Links,
    /// The TUN device (`tun_out.tun`) and where packets for it go.
    pub(super) tun_out: TunOut<'a>,
    /// Packets for other shards.
    pub(super) handoffs: Handoffs,
    /// Packets for other shards dropped because too many waited.
    pub(super) dropped: u64,
}

impl Sinks<'_> {
    /// Queues an output for a peer (sent at the next flush, at the latest at the end of the
    /// drain round), writes one for TUN, or keeps one for another shard.
    pub(super) fn emit(&mut self, out: Output, data: &[u8]) {
        match out {
            Output::None => {}
            Output::Udp(to) => self.links.queue(to, data),
            Output::Tun => self.tun_out.write(data),
            Output::Handoff(h) => {
                if !self.handoffs.push(h, data) {
                    self.dropped += 1;
                }
            }
        }
    }

    /// Sends and writes everything queued.
    pub(super) fn flush(&mut self) {
        self.links.flush();
        self.tun_out.flush();
    }
}

/// Buffers for reading a TUN device with offloads: a whole super-packet, and one segment.
pub(super) struct TunOffloadBuffers {
    pub(super) read: Box<[u8]>,
    pub(super) segment: Box<[u8]>,
}

impl TunOffloadBuffers {
    pub(super) fn new() -> Self {
        Self {
            read: vec![0; tun::OFFLOAD_READ_MAX].into_boxed_slice(),
            segment: vec![0; tun::TUN_MTU as usize].into_boxed_slice(),
        }
    }
}

/// Where packets for the TUN device go: straight to it, or, with offloads, through a
/// [`Coalescer`] that merges a flow's consecutive TCP segments (and UDP datagrams, where the
/// kernel takes UDP segmentation offload) into one write.
pub(super) struct TunOut<'a> {
    pub(super) tun: Option<&'a Tun>,
    pub(super) coalescer: Option<Coalescer>,
    /// Writes made so far (a super-packet counts once).
    pub(super) writes: u64,
}

impl TunOut<'_> {
    pub(super) fn write(&mut self, packet: &[u8]) {
        let Some(t) = self.tun else { return };
        let writes = &mut self.writes;
        match self.coalescer.as_mut() {
            Some(c) => c.push(packet, |h, b| Self::write_raw(t, writes, h, b)),
            None => {
                *writes += 1;
                if let Err(e) = t.send(packet) {
                    debug!(error = %e, "TUN write failed");
                }
            }
        }
    }

    /// Writes what the coalescer holds (at the end of every drain round).
    pub(super) fn flush(&mut self) {
        if let (Some(t), Some(c)) = (self.tun, self.coalescer.as_mut()) {
            let writes = &mut self.writes;
            c.flush(|h, b| Self::write_raw(t, writes, h, b));
        }
    }

    pub(super) fn write_raw(t: &Tun, writes: &mut u64, hdr: &[u8], packet: &[u8]) {
        *writes += 1;
        if let Err(e) = t.send_with_header(hdr, packet) {
            debug!(error = %e, "TUN write failed");
        }
    }
}

impl Io<'_> {
    pub(super) fn send(&mut self, out: Output, data: &[u8]) {
        self.sinks.emit(out, data);
    }

    /// Sends and writes everything queued.
    pub(super) fn flush_queues(&mut self) {
        self.sinks.flush();
    }

    /// Ends a round of reading from peers: sends what it caused, and if it wrote to TUN, lets
    /// the woken readers drain their sockets before the next round adds more (on a shared
    /// core the node would otherwise run on and their receive buffers overflow: docs/perf.md,
    /// UDP flood). `tun_writes` is the TUN write count when the round began.
    pub(super) fn end_peer_round(&mut self, tun_writes: u64) {
        self.flush_queues();
        if self.sinks.tun_out.writes != tun_writes {
            std::thread::yield_now();
        }
    }

    /// Reads up to a batch of packets from socket `i`, `recvmmsg` by `recvmmsg`, and sends
    /// what they cause; true if it may still hold data (mio is edge-triggered, so a source
    /// left unread must be revisited without waiting for an event).
    pub(super) fn drain_socket<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
        i: usize,
    ) -> bool {
        let mut budget = MAX_BATCH;
        let tun_writes = self.sinks.tun_out.writes;
        let more = loop {
            if budget == 0 {
                break true;
            }
            let n = match self.sinks.links.udp.recv(i, &mut self.rx, budget) {
                Ok(0) => break false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) => {
                    debug!(error = %e, "UDP receive failed");
                    break false;
                }
            };
            let now = Instant::now();
            for k in 0..n {
                let (from, data, stride) = self.rx.datagram(k);
                for segment in udp::segments(data, stride) {
                    budget = budget.saturating_sub(1);
                    buf.load(segment);
                    let out = node.handle_udp(now, from, buf);
                    self.sinks.emit(out, buf.data());
                }
            }
        };
        self.end_peer_round(tun_writes);
        more
    }

    /// Reads up to a batch of frames from Ethernet interface `i`, `recvmmsg` by `recvmmsg`;
    /// true if it may still hold some. Broadcast frames are beacons; the rest go to the node
    /// like UDP datagrams, from the sender's link address ([`EthLink::link_address`]).
    pub(super) fn drain_eth<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
        i: usize,
    ) -> bool {
        let Some((ifindex, accept_beacons)) = self
            .sinks
            .links
            .eth
            .get(i)
            .map(|e| (e.socket.ifindex(), e.accept_beacons))
        else {
            return false;
        };
        let mut budget = ETH_ROUND;
        let tun_writes = self.sinks.tun_out.writes;
        let more = loop {
            if budget == 0 {
                break true;
            }
            let Some(iface) = self.sinks.links.eth.get(i) else {
                break false;
            };
            let n = match iface.socket.recv_batch(&mut self.eth_rx) {
                Ok(0) => break false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) => {
                    debug!(device = iface.socket.device(), error = %e, "Ethernet receive failed");
                    break false;
                }
            };
            budget = budget.saturating_sub(n);
            let now = Instant::now();
            for k in 0..n {
                let Some((got, frame)) = self.eth_rx.frame(k) else {
                    continue;
                };
                let payload = match pktmesh_node::eth::payload(frame) {
                    Ok(p) => p,
                    Err(e) => {
                        debug!(error = %e, "frame dropped");
                        continue;
                    }
                };
                let link = EthLink {
                    ifindex,
                    mac: got.from,
                };
                if got.broadcast {
                    if !accept_beacons {
                        continue;
                    }
                    match node.handle_eth_beacon(now, link.link_address(), payload) {
                        Ok(Some(label)) => info!(peer = %link, %label, "added peer from beacon"),
                        Ok(None) => {
                            if node.shard().count() > 1 {
                                self.eth_beacons
                                    .push((link.link_address(), payload.to_vec()));
                            }
                        }
                        Err(e) => debug!(peer = %link, error = %e, "ignored beacon"),
                    }
                    continue;
                }
                buf.load(payload);
                let out = node.handle_udp(now, link.link_address(), buf);
                self.sinks.emit(out, buf.data());
            }
        };
        self.end_peer_round(tun_writes);
        more
    }

    /// Reads up to a batch from the TUN device; true if it may still hold packets.
    pub(super) fn drain_tun<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
    ) -> bool {
        if self.tun_offload.is_some() {
            return self.drain_tun_offload(node, buf);
        }
        let mut more = true;
        for _ in 0..MAX_BATCH {
            let Some(t) = self.sinks.tun_out.tun else {
                more = false;
                break;
            };
            let Some(n) = tun_read(t.recv(buf.read_area())) else {
                more = false;
                break;
            };
            buf.set_read_len(n);
            let out = node.handle_tun(Instant::now(), buf);
            self.send(out, buf.data());
        }
        self.flush_queues();
        more
    }

    /// [`Io::drain_tun`] for a device with offloads: each read may be a TCP super-packet of up to
    /// 64 KiB, cut into ordinary packets that go through the node one by one. The round's
    /// budget counts packets, not reads, so a round of small packets batches as many UDP sends
    /// as without offloads.
    pub(super) fn drain_tun_offload<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
    ) -> bool {
        let (Some(t), Some(bufs)) = (self.sinks.tun_out.tun, self.tun_offload.as_mut()) else {
            return false;
        };
        let sinks = &mut self.sinks;
        let mut packets = 0usize;
        let mut more = true;
        for _ in 0..MAX_BATCH {
            if packets >= MAX_BATCH {
                break;
            }
            // One clock read per read: a super-packet's segments arrived together.
            let now = Instant::now();
            let read = t.recv_segments(&mut bufs.read, &mut bufs.segment, |packet| {
                packets += 1;
                buf.load(packet);
                let out = node.handle_tun(now, buf);
                sinks.emit(out, buf.data());
            });
            if tun_read(read) != Some(true) {
                more = false;
                break;
            }
        }
        self.flush_queues();
        more
    }

    /// Sends what the paced egress ports let go now.
    pub(super) fn drain_egress<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
        now: Instant,
    ) {
        loop {
            match node.poll_egress(now, buf) {
                Output::None => break,
                out => self.send(out, buf.data()),
            }
        }
        self.flush_queues();
    }

    /// Sends the control-plane packets the node queued, and everything still queued.
    pub(super) fn flush<P: Pathfinder>(&mut self, node: &mut Node<P>) {
        while let Some(t) = node.poll_transmit() {
            match t {
                Transmit::Udp { to, data } => self.send(Output::Udp(to), &data),
                Transmit::Tun(data) => self.send(Output::Tun, &data),
                Transmit::Handoff { handoff, data } => self.send(Output::Handoff(handoff), &data),
            }
        }
        self.flush_queues();
    }
}
