//! Arbitrary datagrams, TUN packets and handoffs into a node split over two shards that has
//! one established peer (which also seals fuzzed IPv6 packets for it): nothing panics, and no
//! packet is passed between the shards more than a few times.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pktmesh_crypto_auth::PrivateKey;
use pktmesh_node::core::{Node, NodeRef, Output, Pathfinder, Stage, Transmit};
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::peers::PeerCredentials;
use pktmesh_node::shard::{Directory, ShardSpec, SharedPathfinder};

/// Two keys with fc00::/8 addresses.
const OURS: &str = "586d616d3b65911f481a3750fe7118624a1fa861773cfd0c451330b1c7d2ff3b";
const PEER: &str = "7864abbbecd0aa1c632aa1d235b81da2a0f251d1f5e1fe2e8ca9741a6e5f4176";

/// A pathfinder that knows nothing and says nothing.
struct Quiet;

impl Pathfinder for Quiet {
    fn peer_up(&mut self, _: Instant, _: NodeRef) {}
    fn peer_down(&mut self, _: Instant, _: NodeRef) {}
    fn handle_message(&mut self, _: Instant, _: NodeRef, _: &[u8]) {}
    fn search(&mut self, _: Instant, _: pktmesh_crypto_auth::Address) {}
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
    fn node_for(&self, _: &pktmesh_crypto_auth::Address) -> Option<NodeRef> {
        None
    }
}

type Core = Node<SharedPathfinder<Quiet>>;

struct Net {
    shards: Vec<Core>,
    peer: Core,
    now: Instant,
}

const A_LINK: &str = "10.0.0.1:1";
const B_LINK: &str = "10.0.0.2:2";

impl Net {
    fn new() -> Self {
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
    fn pump(&mut self) {
        for _ in 0..16 {
            let mut moved = false;
            for k in 0..self.shards.len() {
                while let Some(t) = self.shards[k].poll_transmit() {
                    moved = true;
                    self.from_shard(k, t);
                }
            }
            while let Some(t) = self.peer.poll_transmit() {
                moved = true;
                if let Transmit::Udp { data, .. } = t {
                    self.to_shard(0, &data);
                }
            }
            if !moved {
                break;
            }
        }
    }

    fn from_shard(&mut self, k: usize, t: Transmit) {
        match t {
            Transmit::Udp { data, .. } => self.to_peer(&data),
            Transmit::Tun(_) => {}
            Transmit::Handoff { handoff, data } => {
                let mut buf = PacketBuf::from_slice(&data);
                self.follow(k, Output::Handoff(handoff), &mut buf, 0);
            }
        }
    }

    fn to_peer(&mut self, data: &[u8]) {
        let mut buf = PacketBuf::from_slice(data);
        let from: SocketAddr = A_LINK.parse().expect("addr");
        let _ = self.peer.handle_udp(self.now, from, &mut buf);
    }

    /// A datagram from the peer, arriving at shard `k` (as at any worker's socket).
    fn to_shard(&mut self, k: usize, data: &[u8]) {
        let mut buf = PacketBuf::from_slice(data);
        let from: SocketAddr = B_LINK.parse().expect("addr");
        let out = self.shards[k].handle_udp(self.now, from, &mut buf);
        self.follow(k, out, &mut buf, 0);
    }

    fn follow(&mut self, k: usize, out: Output, buf: &mut PacketBuf, hops: usize) {
        match out {
            Output::Udp(_) => {
                let data = buf.data().to_vec();
                self.to_peer(&data);
            }
            Output::Handoff(h) => {
                assert!(hops < 4, "a packet went round the shards: {h:?}");
                let to = usize::from(h.shard);
                assert!(to < self.shards.len() && to != k, "handoff to {to} from {k}");
                let out = self.shards[to].handle_handoff(self.now, h.stage, buf);
                self.follow(to, out, buf, hops + 1);
            }
            Output::Tun | Output::None => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut net = Net::new();
    let mut rest = data;
    while let [op, shard, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let k = usize::from(*shard % 2);
        let mut buf = PacketBuf::from_slice(bytes);
        let now = net.now;
        match op % 6 {
            0 => net.to_shard(k, bytes),
            1 => {
                let from = SocketAddr::from(([10, 0, 0, *shard], u16::from(*len)));
                let out = net.shards[k].handle_udp(now, from, &mut buf);
                net.follow(k, out, &mut buf, 0);
            }
            2 => {
                let out = net.shards[k].handle_tun(now, &mut buf);
                net.follow(k, out, &mut buf, 0);
            }
            3 => {
                let stage = match shard / 2 % 4 {
                    0 => Stage::Datagram(B_LINK.parse().expect("addr")),
                    1 => Stage::Forward {
                        from: u16::from(*len),
                        to: u16::from(*shard),
                    },
                    2 => Stage::Router,
                    _ => Stage::Tun,
                };
                let out = net.shards[k].handle_handoff(now, stage, &mut buf);
                net.follow(k, out, &mut buf, 0);
            }
            4 => {
                // The peer seals a fuzzed IPv6 packet for us: it passes the link crypto.
                let mut packet = bytes.to_vec();
                if let Some(dst) = packet.get_mut(24..40) {
                    dst.copy_from_slice(net.shards[0].address().as_bytes());
                }
                let mut pb = PacketBuf::from_slice(&packet);
                if let Output::Udp(_) = net.peer.handle_tun(now, &mut pb) {
                    let sealed = pb.data().to_vec();
                    net.to_shard(k, &sealed);
                }
            }
            _ => {
                net.now += Duration::from_millis(u64::from(*len) * 10);
                let now = net.now;
                for s in &mut net.shards {
                    s.handle_timeout(now);
                }
            }
        }
        net.pump();
    }
});
