//! Datagrams on the beacon port (`Node::handle_beacon`) and Ethernet beacon bodies
//! (`Node::handle_eth_beacon`) into a node of two shards, handed over as the daemon does: to
//! each shard in turn until one refuses it. Time passes between them and the node's timers run.
//! Nothing panics; what does not parse as a beacon is refused and makes no peer; a beacon
//! makes at most one peer, in one shard, with the key it carries at the address it names (the
//! sender's IP and the port it advertises, or the sender's MAC), and none with our own key;
//! the node never holds more than [`MAX_BEACON_PEERS`] peers made from beacons.
//!
//! The input is a sequence of records `[op, a, b, …]`: `op & 3` is 0 for a UDP beacon (the
//! next 64 bytes, from 10.0.a.b), 1 for an Ethernet body (the next 56 bytes, from MAC
//! 02:00:00:00:a:b), 2 or 3 for `a` tenths of a second passing; when `op & 0x10` is set the
//! beacon's key is replaced by one of [`KEYS`] valid keys (selected by `b`), so that many
//! distinct senders reach the peering code.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use pktmesh_node::beacon::{Beacon, BEACON_LEN, BODY_LEN, MAX_BEACON_PEERS};
use pktmesh_node::core::Node;
use pktmesh_node::dht::{Config, Pathfinder};
use pktmesh_node::eth::EthLink;
use pktmesh_node::shard::{Directory, ShardSpec, SharedPathfinder};

/// A key with an fc00::/8 address.
const OURS: &str = "586d616d3b65911f481a3750fe7118624a1fa861773cfd0c451330b1c7d2ff3b";
/// Valid sender keys to substitute.
const KEYS: usize = 48;
/// Where the key sits in a beacon body.
const KEY_AT: usize = BODY_LEN - 32;

type Core = Node<SharedPathfinder<Pathfinder>>;

/// Public keys whose addresses are in fc00::/8 (any 32 bytes are an X25519 public key).
fn keys() -> &'static [PublicKey] {
    static K: OnceLock<Vec<PublicKey>> = OnceLock::new();
    K.get_or_init(|| {
        (0..=u16::MAX)
            .map(|i| {
                let mut b = [7u8; 32];
                b[..2].copy_from_slice(&i.to_be_bytes());
                PublicKey::from_bytes(b)
            })
            .filter(PublicKey::is_valid)
            .take(KEYS)
            .collect()
    })
}

fn shards(now: Instant) -> Vec<Core> {
    let ours = PrivateKey::from_hex(OURS).expect("a key");
    let directory = Directory::new(Core::new_switch());
    let dht = Pathfinder::new(now, ours.public_key(), Config::default(), 1);
    SharedPathfinder::group(dht, 2)
        .into_iter()
        .enumerate()
        .map(|(i, pf)| {
            let spec = ShardSpec::new(i as u8, 2).expect("valid");
            Node::new_shard(ours.clone(), pf, [1; 32], now, spec, directory.clone())
        })
        .collect()
}

/// One beacon to every shard, as the daemon's `dispatch_beacon` does, with the checks.
fn dispatch(shards: &mut [Core], now: Instant, from: SocketAddr, bytes: &[u8], udp: bool) {
    let parsed = if udp {
        Beacon::parse(bytes)
    } else {
        Beacon::parse_body(bytes)
    };
    let link = match &parsed {
        Ok(b) if udp => SocketAddr::new(from.ip(), b.data_port),
        _ => from,
    };
    let before: usize = shards.iter().map(|s| s.peer_stats(now).len()).sum();
    let mut made = 0;
    for shard in shards.iter_mut() {
        let result = if udp {
            shard.handle_beacon(now, from, bytes)
        } else {
            shard.handle_eth_beacon(now, from, bytes)
        };
        match result {
            Ok(Some(_)) => {
                made += 1;
                let Ok(b) = &parsed else {
                    panic!("a peer from a beacon that does not parse");
                };
                assert!(&b.key != shard.public_key(), "a peer with our own key");
                assert!(
                    shard
                        .peer_stats(now)
                        .iter()
                        .any(|p| p.key == b.key && p.link_address == link),
                    "the new peer is not at the address the beacon names"
                );
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    assert!(made <= 1, "one beacon made {made} peers");
    let peers: Vec<_> = shards.iter().flat_map(|s| s.peer_stats(now)).collect();
    assert!(
        peers.len() <= before + made,
        "a beacon made a peer it did not report"
    );
    if parsed.is_err() {
        assert_eq!(peers.len(), before, "a malformed beacon changed the peers");
    }
    let from_beacons = peers
        .iter()
        .filter(|p| p.user.as_deref() == Some("beacon_peer"))
        .count();
    assert!(
        from_beacons <= MAX_BEACON_PEERS,
        "{from_beacons} peers from beacons"
    );
}

/// Drops what the shards queued (their transmits and log events).
fn drain(shards: &mut [Core]) {
    for s in shards.iter_mut() {
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
}

fuzz_target!(|data: &[u8]| {
    let mut now = Instant::now();
    let mut shards = shards(now);
    let mut rest = data;
    while let [op, a, b, tail @ ..] = rest {
        let kind = op & 3;
        let len = match kind {
            0 => BEACON_LEN,
            1 => BODY_LEN,
            _ => 0,
        };
        let (bytes, next) = tail.split_at(len.min(tail.len()));
        rest = next;
        let mut bytes = bytes.to_vec();
        if op & 0x10 != 0 {
            let key = keys()[usize::from(*b) % KEYS];
            let at = if kind == 0 { KEY_AT + 8 } else { KEY_AT };
            if let Some(k) = bytes.get_mut(at..at + 32) {
                k.copy_from_slice(key.as_bytes());
            }
        }
        match kind {
            0 => {
                let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, *a, *b)), 64512);
                dispatch(&mut shards, now, from, &bytes, true);
            }
            1 => {
                let link = EthLink {
                    ifindex: 2,
                    mac: [2, 0, 0, 0, *a, *b],
                };
                dispatch(&mut shards, now, link.link_address(), &bytes, false);
            }
            _ => {
                now += Duration::from_millis(u64::from(*a) * 100);
                for s in shards.iter_mut() {
                    s.handle_timeout(now);
                }
            }
        }
        drain(&mut shards);
    }
});
