//! Two node cores wired together in memory: peering with a password, the switch keepalive,
//! end-to-end session set-up through a pathfinder and IPv6 packets from TUN to TUN.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{icmp_echo, key, EchoPathfinder, Net};
use pktmesh_node::core::{Node, NodeEvent};
use pktmesh_node::link_crypto::LinkCryptoMode;
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::peers::PeerCredentials;
use pktmesh_switch::Label;

fn two_nodes(password_ok: bool) -> Net<EchoPathfinder> {
    two_nodes_speaking(password_ok, LinkCryptoMode::Noise)
}

/// Two nodes, A connecting to B, whose links offer `mode`.
fn two_nodes_speaking(password_ok: bool, mode: LinkCryptoMode) -> Net<EchoPathfinder> {
    let now = Instant::now();
    let a_addr: SocketAddr = "10.0.0.1:1001".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:1002".parse().unwrap();
    let mut a = Node::new(key(1), EchoPathfinder::default(), [11; 32], now);
    let mut b = Node::new(key(2), EchoPathfinder::default(), [22; 32], now);
    a.set_link_crypto(mode);
    b.set_link_crypto(mode);
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
    Net::new(vec![(a_addr, a), (b_addr, b)], now)
}

/// Two nodes whose link is up (five keepalive rounds).
fn established() -> Net<EchoPathfinder> {
    established_speaking(LinkCryptoMode::Noise)
}

/// Two nodes whose link, offering `mode`, is up.
fn established_speaking(mode: LinkCryptoMode) -> Net<EchoPathfinder> {
    let mut net = two_nodes_speaking(true, mode);
    for _ in 0..5 {
        net.run(1000);
        net.tick(Duration::from_millis(1100));
    }
    net
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
    // Each learned (RPATH) the label its peer uses to reach it: what announcements carry.
    let (a, b) = (&net.nodes[0].1, &net.nodes[1].1);
    let (a_stats, b_stats) = (a.peer_stats(now), b.peer_stats(now));
    assert_eq!(a_stats[0].path_to_us, Some(b_stats[0].label.bits()));
    assert_eq!(b_stats[0].path_to_us, Some(a_stats[0].label.bits()));
}

#[test]
fn ping_through_tun_both_ways() {
    let mut net = established();
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
        if matches!(
            e,
            NodeEvent::HandshakeRejected { .. } | NodeEvent::NoiseRejected { .. }
        ) {
            rejected += 1;
        }
    }
    assert!(rejected >= 1, "B reports the rejected handshake");
    assert_ne!(net.nodes[0].1.peer_stats(now)[0].state, "ESTABLISHED");
}

#[test]
fn garbage_and_forged_handshakes_do_not_disturb_a_session() {
    use rand_core::{RngCore, SeedableRng};
    let mut net = established();
    let a = *net.nodes[0].1.address();
    let b = *net.nodes[1].1.address();
    net.send_tun(0, &icmp_echo(&a, &b, 1));
    net.run(1000);
    assert_eq!(net.tun[1].len(), 1);

    // An attacker floods B: random bytes, forged HELLOs (stage 0 with random keys), packets
    // from A's own address with bad tags, runts and oversized datagrams.
    let mut rng = rand_chacha::ChaCha20Rng::from_seed([9; 32]);
    let attacker: SocketAddr = "10.0.0.66:6666".parse().unwrap();
    let a_addr = net.nodes[0].0;
    let now = net.now;
    for i in 0..20_000u32 {
        let len = match i % 4 {
            0 => (rng.next_u32() % 16) as usize,
            1 => 4096,
            _ => 20 + (rng.next_u32() % 1500) as usize,
        };
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        if i % 3 == 0 && len >= 4 {
            data[..4].copy_from_slice(&[0, 0, 0, 0]);
        }
        let from = if i % 5 == 0 { a_addr } else { attacker };
        let mut buf = PacketBuf::from_slice(&data);
        let _ = net.nodes[1].1.handle_udp(now, from, &mut buf);
    }
    while net.nodes[1].1.poll_transmit().is_some() {}
    // The flood is reported, but not once per forged handshake.
    let mut reports = 0;
    while let Some(e) = net.nodes[1].1.poll_event() {
        if matches!(e, NodeEvent::HandshakeRejected { .. }) {
            reports += 1;
        }
    }
    assert!(
        (1..=2).contains(&reports),
        "{reports} rejection reports in one instant"
    );
    assert_eq!(
        net.nodes[1].1.peer_stats(now).len(),
        1,
        "no peer was created by the flood"
    );
    // The session still carries traffic both ways.
    for seq in 2..10u16 {
        net.send_tun(0, &icmp_echo(&a, &b, seq));
        net.send_tun(1, &icmp_echo(&b, &a, seq));
        net.run(1000);
    }
    assert_eq!(net.tun[1].len(), 9);
    assert_eq!(net.tun[0].len(), 8);
}

/// A supernode query (`sq`) in the shape stock cjdns' SupernodeHunter sends (`pn`, with `p` and
/// `txid`).
fn snode_ping(txid: &[u8]) -> Vec<u8> {
    let mut q = b"d1:pi22e2:sq2:pn4:txid".to_vec();
    q.extend_from_slice(format!("{}:", txid.len()).as_bytes());
    q.extend_from_slice(txid);
    q.push(b'e');
    q
}

#[test]
fn supernode_face_hands_sq_queries_out_and_sends_answers_back() {
    let mut net = established();
    net.nodes[1].1.set_supernode_face(true);
    let b_ref = net.nodes[0].1.pathfinder().peers[0];
    let a_key = *net.nodes[0].1.public_key();

    // A asks B (its snode) and sends an ordinary DHT message too.
    let query = snode_ping(b"\x00\x01snode");
    net.nodes[0]
        .1
        .pathfinder_mut()
        .out
        .extend([(b_ref, query.clone()), (b_ref, b"ping".to_vec())]);
    net.tick(Duration::from_millis(10));
    net.run(1000);
    net.tick(Duration::from_millis(10));
    net.run(1000);

    let b = &mut net.nodes[1].1;
    let q = b
        .poll_supernode_query()
        .expect("the sq query is handed out");
    assert_eq!(q.message, query);
    assert_eq!(q.from.key, a_key);
    assert!(b.poll_supernode_query().is_none());
    assert_eq!(
        b.pathfinder().received,
        vec![b"ping".to_vec()],
        "the pathfinder sees the DHT message, not the supernode query"
    );

    // The route server's answer goes back to A in the session, as content type 256.
    let answer = b"d1:pi22e8:recvTimei1700000000000e4:txid7:\x00\x01snodee".to_vec();
    let now = net.now;
    b.answer_supernode_query(now, q.from, &answer);
    net.run(1000);
    let received = &net.nodes[0].1.pathfinder().received;
    assert!(received.contains(&answer), "{received:?}");
    assert!(received.contains(&b"pong".to_vec()));

    // Not a face any more: supernode queries go to the pathfinder like any CJDHT message.
    net.nodes[1].1.set_supernode_face(false);
    net.nodes[0]
        .1
        .pathfinder_mut()
        .out
        .push_back((b_ref, snode_ping(b"again")));
    net.tick(Duration::from_millis(10));
    net.run(1000);
    let b = &mut net.nodes[1].1;
    assert!(b.poll_supernode_query().is_none());
    assert_eq!(b.pathfinder().received.last(), Some(&snode_ping(b"again")));
}

#[test]
fn supernode_query_queue_is_bounded() {
    let mut net = established();
    net.nodes[1].1.set_supernode_face(true);
    let b_ref = net.nodes[0].1.pathfinder().peers[0];
    for i in 0..200u32 {
        net.nodes[0]
            .1
            .pathfinder_mut()
            .out
            .push_back((b_ref, snode_ping(&i.to_be_bytes())));
    }
    for _ in 0..5 {
        net.tick(Duration::from_millis(10));
        net.run(10_000);
    }
    let b = &mut net.nodes[1].1;
    let mut n = 0;
    while b.poll_supernode_query().is_some() {
        n += 1;
    }
    assert_eq!(n, pktmesh_node::core::MAX_SUPERNODE_QUERIES);
}

#[test]
fn an_ethernet_beacon_peers_two_nodes_addressed_by_mac() {
    use pktmesh_node::eth::{display_link, EthLink};
    let now = Instant::now();
    let a_link = EthLink {
        ifindex: 4,
        mac: [0x02, 0, 0, 0, 0, 0x0a],
    }
    .link_address();
    let b_link = EthLink {
        ifindex: 4,
        mac: [0x02, 0, 0, 0, 0, 0x0b],
    }
    .link_address();
    let a = Node::new(key(1), EchoPathfinder::default(), [11; 32], now);
    let mut b = Node::new(key(2), EchoPathfinder::default(), [22; 32], now);
    // B hears A's broadcast: it peers with A's MAC and initiates, logging in as Local Peers.
    let label = b.handle_eth_beacon(now, a_link, &a.eth_beacon()).unwrap();
    assert!(label.is_some(), "a new MAC becomes a peer");
    assert_eq!(
        b.handle_eth_beacon(now, a_link, &a.eth_beacon()),
        Ok(None),
        "a known MAC only refreshes its password"
    );
    assert_eq!(
        b.handle_eth_beacon(now, b_link, &b.eth_beacon()),
        Ok(None),
        "our own beacon is ignored"
    );
    let mut net = Net::new(vec![(a_link, a), (b_link, b)], now);
    for _ in 0..5 {
        net.run(1000);
        net.tick(Duration::from_millis(1100));
    }
    let now = net.now;
    for (i, (_, n)) in net.nodes.iter().enumerate() {
        let stats = n.peer_stats(now);
        assert_eq!(stats.len(), 1, "node {i}");
        assert_eq!(stats[0].state, "ESTABLISHED", "node {i}: {stats:?}");
    }
    let seen_by_a = net.nodes[0].1.peer_stats(now)[0].link_address;
    assert_eq!(display_link(&seen_by_a), "02:00:00:00:00:0b%4");
    let (a, b) = (*net.nodes[0].1.address(), *net.nodes[1].1.address());
    for seq in 1..10u16 {
        net.send_tun(0, &icmp_echo(&a, &b, seq));
        net.send_tun(1, &icmp_echo(&b, &a, seq));
        net.run(1000);
    }
    assert_eq!(net.tun[1].len(), 9, "A to B over the Ethernet link");
    assert_eq!(net.tun[0].len(), 9, "B to A");
}

/// The receive counters are measured, not constants: known traffic from A, then a replayed
/// datagram, one delivered too late for the replay window and one damaged on the way, each
/// shows up in B's counters for A, and B reports the drops at most once a second; on a legacy
/// link (a 64-nonce window) and on a Noise link (1024 counters).
#[test]
fn receive_counters_count_known_traffic_and_drops() {
    receive_counters(LinkCryptoMode::Legacy, 100);
    receive_counters(LinkCryptoMode::Noise, 1060);
}

/// [`receive_counters_count_known_traffic_and_drops`] with `held` datagrams held back: the
/// first is too late once the last 40 arrived.
fn receive_counters(mode: LinkCryptoMode, held_count: u16) {
    use pktmesh_node::core::Output;
    let mut net = established_speaking(mode);
    let noise = mode == LinkCryptoMode::Noise;
    assert_eq!(net.nodes[1].1.peer_stats(net.now)[0].noise, noise);
    let (a, b) = (*net.nodes[0].1.address(), *net.nodes[1].1.address());
    let a_addr = net.nodes[0].0;
    net.send_tun(0, &icmp_echo(&a, &b, 1));
    net.run(1000);
    let before = net.nodes[1].1.peer_stats(net.now)[0].receive;
    assert_eq!((before.duplicates, before.dropped), (0, 0));
    // Datagrams A → B, held back instead of delivered.
    let now = net.now;
    let mut held = Vec::new();
    for seq in 2..2 + held_count {
        let mut buf = PacketBuf::from_slice(&icmp_echo(&a, &b, seq));
        match net.nodes[0].1.handle_tun(now, &mut buf) {
            Output::Udp(to) => {
                assert_eq!(to, net.nodes[1].0);
                held.push(buf.data().to_vec());
            }
            other => panic!("{other:?}"),
        }
    }
    let deliver = |net: &mut Net<EchoPathfinder>, data: &[u8]| {
        let mut buf = PacketBuf::from_slice(data);
        let now = net.now;
        net.nodes[1].1.handle_udp(now, a_addr, &mut buf)
    };
    // The last 40 in order, then the last one again (a duplicate), then the first (too late:
    // 60 or 1020 nonces behind, outside the window once the window moved), then a damaged one.
    let last = held.len() - 1;
    for d in &held[held.len() - 40..] {
        assert_eq!(deliver(&mut net, d), Output::Tun);
    }
    assert_eq!(deliver(&mut net, &held[last]), Output::None);
    assert_eq!(deliver(&mut net, &held[0]), Output::None);
    let mut damaged = held[10].clone();
    let end = damaged.len() - 1;
    damaged[end] ^= 0x40;
    assert_eq!(deliver(&mut net, &damaged), Output::None);
    let after = net.nodes[1].1.peer_stats(net.now)[0].receive;
    assert_eq!(after.duplicates - before.duplicates, 1, "{after:?}");
    assert_eq!(
        after.received_out_of_range - before.received_out_of_range,
        1
    );
    assert_eq!(
        after.dropped - before.dropped,
        3,
        "duplicate, too late and damaged"
    );
    assert!(after.received_packets >= before.received_packets + 40);
    assert!(
        after.lost_packets > before.lost_packets,
        "skipped nonces: {after:?}"
    );
    // Reported once in this instant, with the rest counted as suppressed a second later.
    let drops = |net: &mut Net<EchoPathfinder>| {
        let mut n = Vec::new();
        while let Some(e) = net.nodes[1].1.poll_event() {
            if let NodeEvent::PacketsDropped {
                end_to_end,
                suppressed,
                ..
            } = e
            {
                n.push((end_to_end, suppressed));
            }
        }
        n
    };
    assert_eq!(drops(&mut net), [(false, 0)]);
    net.now += Duration::from_millis(1500);
    assert_eq!(deliver(&mut net, &held[last]), Output::None);
    assert_eq!(drops(&mut net), [(false, 2)]);
}

#[test]
fn a_leased_route_overrides_the_pathfinders_path_until_withdrawn() {
    let mut net = established();
    let a = *net.nodes[0].1.address();
    let b = *net.nodes[1].1.address();
    net.send_tun(0, &icmp_echo(&a, &b, 1));
    net.run(1000);
    assert_eq!(net.tun[1].len(), 1, "the session is up");
    // Our traffic rides a lease: the node lists B as a destination to ask the route server
    // about, once.
    net.nodes[0].1.leased_routes().set_enabled(true);
    net.send_tun(0, &icmp_echo(&a, &b, 2));
    net.run(1000);
    assert_eq!(net.tun[1].len(), 2);
    let now = net.now;
    assert_eq!(net.nodes[0].1.leased_routes().wanted(now), vec![b]);
    assert!(net.nodes[0].1.leased_routes().wanted(now).is_empty());
    // The route server's label goes elsewhere (an interface A does not have): B's packets take
    // it, so B hears nothing.
    let peer_label = net.nodes[0].1.peer_stats(now)[0].label;
    let elsewhere = Label::new(0x1c).unwrap();
    assert_ne!(elsewhere, peer_label);
    assert!(net.nodes[0].1.leased_routes().set(now, b, elsewhere));
    for seq in 3..6 {
        net.send_tun(0, &icmp_echo(&a, &b, seq));
    }
    net.run(1000);
    assert_eq!(net.tun[1].len(), 2, "sent on the route server's label");
    assert_eq!(net.nodes[0].1.leased_routes().packets_routed(), 3);
    // The route server's own label for the direct link works like the pathfinder's.
    net.nodes[0].1.leased_routes().set(now, b, peer_label);
    net.send_tun(0, &icmp_echo(&a, &b, 6));
    net.run(1000);
    assert_eq!(net.tun[1].len(), 3);
    // No path any more: the pathfinder's path again.
    net.nodes[0].1.leased_routes().set(now, b, elsewhere);
    net.nodes[0].1.leased_routes().unroutable(&b);
    net.send_tun(0, &icmp_echo(&a, &b, 7));
    net.run(1000);
    assert_eq!(net.tun[1].len(), 4);
    assert_eq!(net.nodes[0].1.leased_routes().packets_routed(), 4);
}
