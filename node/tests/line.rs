//! A line of node cores running the legacy DHT: A–B–C–D (and longer), where A only peers with
//! B and must find D through the DHT and reach it through the switches of B and C.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{icmp_echo, key, Net};
use pktmesh_node::core::Node;
use pktmesh_node::dht;
use pktmesh_node::peers::PeerCredentials;

fn line(n: usize) -> Net<dht::Pathfinder> {
    let now = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..n {
        let private = key(40 + i as u8);
        let public = private.public_key();
        let router = dht::Pathfinder::new(now, public, dht::Config::default(), i as u64);
        let mut node = Node::new(private, router, [i as u8; 32], now);
        node.add_authorized_password(b"line password", Some(b"left neighbour"), None)
            .unwrap();
        let addr: SocketAddr = format!("10.9.0.{}:2000", i + 1).parse().unwrap();
        nodes.push((addr, node));
    }
    for i in 0..n - 1 {
        let (to, key) = (nodes[i + 1].0, *nodes[i + 1].1.public_key());
        nodes[i]
            .1
            .connect(
                now,
                to,
                key,
                PeerCredentials {
                    password: b"line password".to_vec(),
                    login: Some(b"left neighbour".to_vec()),
                },
                None,
            )
            .unwrap();
    }
    Net::new(nodes, now)
}

fn reach_end(n: usize) {
    let mut net: Net<dht::Pathfinder> = line(n);
    // Let peering and the DHT janitors settle (bounded simulated time).
    for _ in 0..20 {
        net.run(100_000);
        net.tick(Duration::from_millis(500));
    }
    let a = *net.nodes[0].1.address();
    let d = *net.nodes[n - 1].1.address();
    let mut delivered = false;
    for seq in 1..=40u16 {
        net.send_tun(0, &icmp_echo(&a, &d, seq));
        net.run(100_000);
        if !net.tun[n - 1].is_empty() {
            delivered = true;
            break;
        }
        net.tick(Duration::from_millis(500));
    }
    assert!(delivered, "A never reached the node {} hops away", n - 1);
    let got = net.tun[n - 1].last().unwrap();
    assert_eq!(&got[8..24], a.as_bytes(), "source is A");
    assert_eq!(&got[24..40], d.as_bytes(), "destination is D");
    // The session from A to D uses a multi-hop label, not a direct peer's.
    let sessions = net.nodes[0].1.session_stats();
    let to_d = sessions
        .iter()
        .find(|s| s.address == d)
        .expect("session to D");
    assert!(!pktmesh_switch::EncodingScheme::v358()
        .is_one_hop(pktmesh_switch::Label::new(to_d.path).unwrap()));
    // And D answers back over the reversed path.
    let before = net.tun[0].len();
    net.send_tun(n - 1, &icmp_echo(&d, &a, 1));
    net.run(100_000);
    assert!(net.tun[0].len() > before, "D's reply reached A");
    let _: &Node<dht::Pathfinder> = &net.nodes[0].1;
}

#[test]
fn a_reaches_d_three_hops_away() {
    reach_end(4);
}

#[test]
fn six_node_line() {
    reach_end(6);
}
