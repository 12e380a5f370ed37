//! Forged beacons: a flood of beacons from new keys and addresses makes at most
//! `MAX_BEACON_PEERS` peers, leaves the other peer slots free, and the cap makes room again
//! once those peers are forgotten.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{key, EchoPathfinder};
use pktmesh_node::beacon::{Beacon, BeaconError, BEACON_PROTOCOL_VERSION, MAX_BEACON_PEERS};
use pktmesh_node::core::Node;
use pktmesh_node::peers::{PeerCredentials, FORGET_AFTER};

/// A beacon from node `seed`, advertising data port 4000.
fn beacon_of(seed: u8) -> [u8; 64] {
    Beacon {
        data_port: 4000,
        version: BEACON_PROTOCOL_VERSION,
        password: [b'x'; 20],
        key: key(seed).public_key(),
    }
    .to_bytes()
}

fn sender(i: u8) -> SocketAddr {
    SocketAddr::from(([192, 168, 7, i], 64512))
}

#[test]
fn forged_beacons_make_at_most_the_capped_number_of_peers() {
    let now = Instant::now();
    let mut node = Node::new(key(0), EchoPathfinder::default(), [3; 32], now);
    let forged = MAX_BEACON_PEERS as u8 + 40;
    let mut made = 0;
    let mut refused = 0;
    for i in 1..=forged {
        match node.handle_beacon(now, sender(i), &beacon_of(i)) {
            Ok(Some(_)) => made += 1,
            Err(BeaconError::TooManyBeaconPeers(n)) => {
                assert_eq!(n, MAX_BEACON_PEERS);
                refused += 1;
            }
            other => panic!("beacon {i}: {other:?}"),
        }
    }
    assert_eq!(made, MAX_BEACON_PEERS);
    assert_eq!(refused, 40);
    assert_eq!(node.peer_stats(now).len(), MAX_BEACON_PEERS);
    // A known sender only refreshes its password, even at the cap.
    assert_eq!(node.handle_beacon(now, sender(1), &beacon_of(1)), Ok(None));

    // The other slots are free for configured peers.
    let configured = key(200).public_key();
    node.connect(
        now,
        "10.9.9.9:5000".parse().unwrap(),
        configured,
        PeerCredentials {
            password: b"pw".to_vec(),
            login: None,
        },
        Some("configured".into()),
    )
    .expect("a configured peer still gets a slot");

    // The forged peers never answer: once forgotten, beacons make peers again.
    let mut t = now;
    let end = now + FORGET_AFTER + Duration::from_secs(30);
    while t < end {
        t += Duration::from_secs(1);
        node.handle_timeout(t);
        while node.poll_transmit().is_some() {}
    }
    let left: Vec<_> = node.peer_stats(t);
    assert!(
        left.iter().all(|p| !p.is_incoming),
        "the silent beacon peers are forgotten: {left:?}"
    );
    let late = forged + 1;
    assert!(matches!(
        node.handle_beacon(t, sender(late), &beacon_of(late)),
        Ok(Some(_))
    ));
}

#[test]
fn each_shard_takes_its_share_of_the_cap() {
    let now = Instant::now();
    let mut shards = common::shards(key(0), EchoPathfinder::default(), [3; 32], 4, now);
    let mut made = 0;
    for i in 1..=120u8 {
        let beacon = beacon_of(i);
        for node in shards.iter_mut() {
            if let Ok(Some(_)) = node.handle_beacon(now, sender(i), &beacon) {
                made += 1;
            }
        }
    }
    assert!(
        (MAX_BEACON_PEERS..=MAX_BEACON_PEERS + 3).contains(&made),
        "{made} peers from beacons over 4 shards"
    );
    for node in &shards {
        assert!(node.peer_stats(now).len() <= MAX_BEACON_PEERS.div_ceil(4));
    }
}
