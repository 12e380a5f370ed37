//! Two node cores wired together in memory: peering with a password, the switch keepalive,
//! end-to-end session set-up through a pathfinder and IPv6 packets from TUN to TUN.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_node::core::{Node, NodeEvent, NodeRef, Output, Pathfinder, Transmit};
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::peers::PeerCredentials;

/// A pathfinder double: answers every CJDHT message once ("pong"), and pings by sending "ping".
#[derive(Default)]
struct EchoPathfinder {
    out: VecDeque<(NodeRef, Vec<u8>)>,
    peers: Vec<NodeRef>,
    received: Vec<Vec<u8>>,
}

impl Pathfinder for EchoPathfinder {
    fn peer_up(&mut self, _now: Instant, peer: NodeRef) {
        self.peers.push(peer);
    }
    fn peer_down(&mut self, _now: Instant, key: &PublicKey) {
        self.peers.retain(|p| &p.key != key);
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

struct Net {
    nodes: Vec<(SocketAddr, Node<EchoPathfinder>)>,
    tun: Vec<Vec<Vec<u8>>>,
    now: Instant,
}

impl Net {
    fn index(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|(a, _)| *a == addr)
    }

    /// Delivers queued datagrams until none are left (bounded).
    fn run(&mut self, max_steps: usize) -> usize {
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
        match self.nodes[j].1.handle_udp(now, from, &mut buf) {
            Output::Udp(next) => {
                let bytes = buf.data().to_vec();
                self.deliver(to, next, &bytes);
            }
            Output::Tun => self.tun[j].push(buf.data().to_vec()),
            Output::None => {}
        }
    }

    fn send_tun(&mut self, i: usize, packet: &[u8]) {
        let mut buf = PacketBuf::from_slice(packet);
        let now = self.now;
        let from = self.nodes[i].0;
        match self.nodes[i].1.handle_tun(now, &mut buf) {
            Output::Udp(to) => {
                let bytes = buf.data().to_vec();
                self.deliver(from, to, &bytes);
            }
            Output::Tun => self.tun[i].push(buf.data().to_vec()),
            Output::None => {}
        }
    }

    fn tick(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        for (_, n) in &mut self.nodes {
            n.handle_timeout(now);
        }
    }
}

fn key(seed: u8) -> PrivateKey {
    // Deterministic keys with fc addresses.
    let mut rng = rand_chacha_like(seed);
    PrivateKey::generate(&mut rng).0
}

/// A tiny deterministic CSPRNG stand-in for key generation in tests.
fn rand_chacha_like(seed: u8) -> impl rand_core::RngCore + rand_core::CryptoRng {
    use rand_core::SeedableRng;
    rand_chacha::ChaCha20Rng::from_seed([seed; 32])
}

fn icmp_echo(src: &Address, dst: &Address, seq: u16) -> Vec<u8> {
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

fn two_nodes(password_ok: bool) -> Net {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:1001".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:1002".parse().unwrap();
    let mut a = Node::new(key(1), EchoPathfinder::default(), [11; 32], now);
    let mut b = Node::new(key(2), EchoPathfinder::default(), [22; 32], now);
    b.add_authorized_password(b"secret password", Some(b"nodeA"), None)
        .unwrap();
    let password = if password_ok {
        b"secret password".to_vec()
    } else {
        b"wrong".to_vec()
    };
    let b_key = *b.public_key();
    a.connect(
        now,
        b_addr,
        b_key,
        PeerCredentials {
            password,
            login: Some(b"nodeA".to_vec()),
        },
        Some("nodeB".into()),
    )
    .unwrap();
    Net {
        nodes: vec![(a_addr, a), (b_addr, b)],
        tun: vec![Vec::new(), Vec::new()],
        now,
    }
}

#[test]
fn peers_establish_and_learn_versions() {
    let mut net = two_nodes(true);
    for _ in 0..10 {
        net.run(1000);
        net.tick(Duration::from_millis(1100));
    }
    net.run(1000);
    let now = net.now;
    for (_, n) in &net.nodes {
        let stats = n.peer_stats(now);
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].state, "ESTABLISHED", "{stats:?}");
        assert_eq!(stats[0].version, 22);
        assert_eq!(
            n.pathfinder().peers.len(),
            1,
            "peer reported to the pathfinder"
        );
    }
    assert!(net.nodes[1].1.peer_stats(now)[0].is_incoming);
}

#[test]
fn ping_through_tun_both_ways() {
    let mut net = two_nodes(true);
    for _ in 0..5 {
        net.run(1000);
        net.tick(Duration::from_millis(1100));
    }
    let a = *net.nodes[0].1.address();
    let b = *net.nodes[1].1.address();
    // First packet: buffered until the end-to-end session is up, then delivered.
    net.send_tun(0, &icmp_echo(&a, &b, 1));
    net.run(1000);
    assert_eq!(net.tun[1].len(), 1, "echo request reached B's TUN");
    let got = &net.tun[1][0];
    let mut expect = icmp_echo(&a, &b, 1);
    expect[7] = 42; // rebuilt hop limit
    assert_eq!(got, &expect);
    // Later packets go straight through, both ways.
    for seq in 2..50u16 {
        net.send_tun(0, &icmp_echo(&a, &b, seq));
        net.send_tun(1, &icmp_echo(&b, &a, seq));
        net.run(1000);
    }
    assert_eq!(net.tun[1].len(), 49);
    assert_eq!(net.tun[0].len(), 48);
    let sessions = net.nodes[0].1.session_stats();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].state, "ESTABLISHED");
    assert_eq!(net.nodes[0].1.buffered_packets(), 0);
}

#[test]
fn wrong_password_never_peers() {
    let mut net = two_nodes(false);
    for _ in 0..5 {
        net.run(1000);
        net.tick(Duration::from_millis(1100));
    }
    let now = net.now;
    assert!(net.nodes[1].1.peer_stats(now).is_empty(), "B has no peer");
    let mut rejected = 0;
    while let Some(e) = net.nodes[1].1.poll_event() {
        if matches!(e, NodeEvent::HandshakeRejected { .. }) {
            rejected += 1;
        }
    }
    assert!(rejected >= 1, "B reports the rejected handshake");
    assert_ne!(net.nodes[0].1.peer_stats(now)[0].state, "ESTABLISHED");
}
