//! What the node targets share: fixture keys, a pathfinder that stays out of the way, and a
//! node of two shards with an established peer.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_node::core::{Node, NodeRef, Output, Pathfinder, Transmit};
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::peers::PeerCredentials;
use pktmesh_node::shard::{Directory, ShardSpec, SharedPathfinder};

/// Keys with fc00::/8 addresses: the node under test, its peer, and two more.
pub const OURS: &str = "586d616d3b65911f481a3750fe7118624a1fa861773cfd0c451330b1c7d2ff3b";
pub const PEER: &str = "7864abbbecd0aa1c632aa1d235b81da2a0f251d1f5e1fe2e8ca9741a6e5f4176";
pub const THIRD: &str = "e9981af17d98c0d6b9a47ae1e157bbd8527fca1afde08f677a8a686596230913";
pub const FOURTH: &str = "b17e6b441225d89f9da6b565952a7b5e0fd1f522b4aca236bc1168886aaab9df";

/// A pathfinder that knows nothing and says nothing.
pub struct Quiet;

impl Pathfinder for Quiet {
    fn peer_up(&mut self, _: Instant, _: NodeRef) {}
    fn peer_down(&mut self, _: Instant, _: NodeRef) {}
    fn handle_message(&mut self, _: Instant, _: NodeRef, _: &[u8]) {}
    fn search(&mut self, _: Instant, _: Address) {}
    fn ping(&mut self, _: Instant, _: NodeRef) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)> {
        None
    }
    fn poll_node(&mut self) -> Option<NodeRef> {
        None
    }
    fn node_for(&self, _: &Address) -> Option<NodeRef> {
        None
    }
}

/// A node core as the targets drive it.
pub type Core = Node<SharedPathfinder<Quiet>>;

/// A node split over two shards (`shards`) with one established peer (`peer`, at [`B_LINK`],
/// which connected to it over Noise), and the time.
pub struct Net {
    pub shards: Vec<Core>,
    pub peer: Core,
    pub now: Instant,
}

/// The node's link address, as the peer sees it.
pub const A_LINK: &str = "10.0.0.1:1";
/// The peer's link address.
pub const B_LINK: &str = "10.0.0.2:2";

impl Net {
    /// The node and its peer, peered.
    pub fn new() -> Self {
        let now = Instant::now();
        let ours = PrivateKey::from_hex(OURS).expect("a key");
        let peer_key = PrivateKey::from_hex(PEER).expect("a key");
        let directory = Directory::new(Core::new_switch());
        let shards: Vec<Core> = SharedPathfinder::group(Quiet, 2)
            .into_iter()
            .enumerate()
            .map(|(i, pf)| {
                let spec = ShardSpec::new(i as u8, 2).expect("valid");
                Node::new_shard(ours.clone(), pf, [1; 32], now, spec, directory.clone())
            })
            .collect();
        let mut peer = Node::new(
            peer_key,
            SharedPathfinder::group(Quiet, 1).pop().expect("one"),
            [2; 32],
            now,
        );
        peer.add_authorized_password(b"pw", Some(b"a"), None)
            .expect("a password");
        let mut net = Self { shards, peer, now };
        let b_key = *net.peer.public_key();
        let owner = usize::from(net.shards[0].shard().owner_of(&b_key.address()));
        let creds = PeerCredentials {
            password: b"pw".to_vec(),
            login: Some(b"a".to_vec()),
        };
        let _ = net.shards[owner].connect(now, B_LINK.parse().expect("addr"), b_key, creds, None);
        for _ in 0..4 {
            net.pump();
            net.now += Duration::from_millis(1100);
            let now = net.now;
            for s in &mut net.shards {
                s.handle_timeout(now);
            }
            net.peer.handle_timeout(now);
        }
        let stats = net.shards[owner].peer_stats(net.now);
        assert!(
            stats.first().is_some_and(|p| p.state == "ESTABLISHED"),
            "the set-up peers: {stats:?}"
        );
        net
    }

    /// Delivers queued control packets both ways (bounded).
    pub fn pump(&mut self) {
        for _ in 0..16 {
            let mut moved = false;
            for k in 0..self.shards.len() {
                while let Some(t) = self.shards[k].poll_transmit() {
                    moved = true;
                    self.carry_from(k, t);
                }
            }
            while let Some(t) = self.peer.poll_transmit() {
                moved = true;
                if let Transmit::Udp { data, .. } = t {
                    self.deliver_to_shard(0, &data);
                }
            }
            if !moved {
                break;
            }
        }
    }

    pub fn carry_from(&mut self, k: usize, t: Transmit) {
        match t {
            Transmit::Udp { to, data } if to == Self::b_link() => self.deliver_to_peer(&data),
            Transmit::Udp { .. } => {}
            Transmit::Tun(_) => {}
            Transmit::Handoff { handoff, data } => {
                let mut buf = PacketBuf::from_slice(&data);
                self.follow(k, Output::Handoff(handoff), &mut buf, 0);
            }
        }
    }

    /// The peer's link address; datagrams for any other go nowhere.
    pub fn b_link() -> SocketAddr {
        B_LINK.parse().expect("addr")
    }

    pub fn deliver_to_peer(&mut self, data: &[u8]) {
        let mut buf = PacketBuf::from_slice(data);
        let from: SocketAddr = A_LINK.parse().expect("addr");
        let _ = self.peer.handle_udp(self.now, from, &mut buf);
    }

    /// A datagram from the peer, arriving at shard `k` (as at any worker's socket).
    pub fn deliver_to_shard(&mut self, k: usize, data: &[u8]) {
        let mut buf = PacketBuf::from_slice(data);
        let from: SocketAddr = B_LINK.parse().expect("addr");
        let out = self.shards[k].handle_udp(self.now, from, &mut buf);
        self.follow(k, out, &mut buf, 0);
    }

    /// Carries on with what a shard answered: to the peer, or to another shard.
    pub fn follow(&mut self, k: usize, out: Output, buf: &mut PacketBuf, hops: usize) {
        match out {
            Output::Udp(to) if to == Self::b_link() => {
                let data = buf.data().to_vec();
                self.deliver_to_peer(&data);
            }
            Output::Udp(_) => {}
            Output::Handoff(h) => {
                assert!(hops < 4, "a packet went round the shards: {h:?}");
                let to = usize::from(h.shard);
                assert!(
                    to < self.shards.len() && to != k,
                    "handoff to {to} from {k}"
                );
                let out = self.shards[to].handle_handoff(self.now, h.stage, buf);
                self.follow(to, out, buf, hops + 1);
            }
            Output::Tun | Output::None => {}
        }
    }
}
