//! An in-memory network of node cores for tests: datagrams are delivered between nodes by
//! link address, TUN output is collected per node, and time is explicit.
//!
//! Consecutive entries with the same link address are the shards of one node, in shard order
//! (`pktmesh_node::shard`): datagrams arrive at its first shard, as a kernel might hand them to
//! any worker's socket, and handoffs go to the shard they name.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_node::core::{Node, NodeRef, Output, Pathfinder, Transmit};
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::shard::{Directory, ShardSpec, SharedPathfinder};

pub struct Net<P> {
    pub nodes: Vec<(SocketAddr, Node<P>)>,
    pub tun: Vec<Vec<Vec<u8>>>,
    pub now: Instant,
    /// Packets passed between shards so far.
    pub handoffs: usize,
}

impl<P> Net<P> {
    /// A network of `nodes`, starting at `now`.
    pub fn new(nodes: Vec<(SocketAddr, Node<P>)>, now: Instant) -> Self {
        let tun = nodes.iter().map(|_| Vec::new()).collect();
        Self {
            nodes,
            tun,
            now,
            handoffs: 0,
        }
    }
}

/// The `count` shards of one node with `key`, sharing `pathfinder`.
pub fn shards<P: Pathfinder>(
    key: PrivateKey,
    pathfinder: P,
    seed: [u8; 32],
    count: u8,
    now: Instant,
) -> Vec<Node<SharedPathfinder<P>>> {
    let directory = Directory::new(Node::<SharedPathfinder<P>>::new_switch());
    SharedPathfinder::group(pathfinder, count)
        .into_iter()
        .enumerate()
        .map(|(i, pf)| {
            let spec = ShardSpec::new(i as u8, count).expect("valid shard");
            Node::new_shard(key.clone(), pf, seed, now, spec, directory.clone())
        })
        .collect()
}

impl<P: Pathfinder> Net<P> {
    fn index(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|(a, _)| *a == addr)
    }

    /// Delivers queued datagrams until none are left (bounded).
    pub fn run(&mut self, max_steps: usize) -> usize {
        let mut steps = 0;
        while steps < max_steps {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].1.poll_transmit() {
                    moved = true;
                    let from = self.nodes[i].0;
                    match t {
                        Transmit::Udp { to, data } => self.deliver(from, to, &data),
                        Transmit::Tun(p) => self.tun[i].push(p),
                        Transmit::Handoff { handoff, data } => {
                            let mut buf = PacketBuf::from_slice(&data);
                            self.dispatch(i, Output::Handoff(handoff), &mut buf, 0);
                        }
                    }
                    steps += 1;
                }
            }
            if !moved {
                break;
            }
        }
        steps
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let Some(j) = self.index(to) else { return };
        let mut buf = PacketBuf::from_slice(data);
        let now = self.now;
        let out = self.nodes[j].1.handle_udp(now, from, &mut buf);
        self.dispatch(j, out, &mut buf, 0);
    }

    /// Does what entry `j` answered for the packet in `buf`.
    fn dispatch(&mut self, j: usize, out: Output, buf: &mut PacketBuf, hops: usize) {
        let here = self.nodes[j].0;
        match out {
            Output::Udp(next) => {
                let bytes = buf.data().to_vec();
                self.deliver(here, next, &bytes);
            }
            Output::Tun => self.tun[j].push(buf.data().to_vec()),
            Output::Handoff(h) => {
                assert!(hops < 4, "handoff loop: {h:?}");
                let first = self.index(here).expect("entry has an address");
                let k = first + usize::from(h.shard);
                assert_eq!(self.nodes[k].0, here, "handoff to a shard of another node");
                self.handoffs += 1;
                let now = self.now;
                let out = self.nodes[k].1.handle_handoff(now, h.stage, buf);
                self.dispatch(k, out, buf, hops + 1);
            }
            Output::None => {}
        }
    }

    pub fn send_tun(&mut self, i: usize, packet: &[u8]) {
        let mut buf = PacketBuf::from_slice(packet);
        let now = self.now;
        let out = self.nodes[i].1.handle_tun(now, &mut buf);
        self.dispatch(i, out, &mut buf, 0);
    }

    pub fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for (_, n) in &mut self.nodes {
            n.handle_timeout(now);
        }
    }
}

pub fn key(seed: u8) -> PrivateKey {
    // Deterministic keys with fc addresses.
    let mut rng = rand_chacha_like(seed);
    PrivateKey::generate(&mut rng).0
}

/// A tiny deterministic CSPRNG stand-in for key generation in tests.
fn rand_chacha_like(seed: u8) -> impl rand_core::RngCore + rand_core::CryptoRng {
    use rand_core::SeedableRng;
    rand_chacha::ChaCha20Rng::from_seed([seed; 32])
}

pub fn icmp_echo(src: &Address, dst: &Address, seq: u16) -> Vec<u8> {
    let payload = [
        0x80,
        0,
        0,
        0,
        0x12,
        0x34,
        (seq >> 8) as u8,
        seq as u8,
        0x41,
        0x42,
        0x43,
        0x44,
    ];
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(58);
    p.push(64);
    p.extend_from_slice(src.as_bytes());
    p.extend_from_slice(dst.as_bytes());
    p.extend_from_slice(&payload);
    p
}

/// A pathfinder double: answers every CJDHT message once ("pong"), and pings by sending "ping".
#[derive(Default)]
pub struct EchoPathfinder {
    pub out: VecDeque<(NodeRef, Vec<u8>)>,
    pub peers: Vec<NodeRef>,
    pub received: Vec<Vec<u8>>,
}

impl Pathfinder for EchoPathfinder {
    fn peer_up(&mut self, _now: Instant, peer: NodeRef) {
        self.peers.push(peer);
    }
    fn peer_down(&mut self, _now: Instant, peer: NodeRef) {
        self.peers.retain(|p| p.key != peer.key);
    }
    fn handle_message(&mut self, _now: Instant, from: NodeRef, message: &[u8]) {
        self.received.push(message.to_vec());
        if message == b"ping" {
            self.out.push_back((from, b"pong".to_vec()));
        }
    }
    fn search(&mut self, _now: Instant, _target: Address) {}
    fn ping(&mut self, _now: Instant, node: NodeRef) {
        self.out.push_back((node, b"ping".to_vec()));
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)> {
        self.out.pop_front()
    }
    fn poll_node(&mut self) -> Option<NodeRef> {
        None
    }
    fn node_for(&self, _address: &Address) -> Option<NodeRef> {
        None
    }
}
