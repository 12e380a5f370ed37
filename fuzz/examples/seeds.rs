//! Writes the seed inputs of the targets whose inputs must be signed or must name the fixtures'
//! keys (`rs_frame`, `rs_gossip`, `rs_announce`, `lease_message`, `agent_replies`,
//! `node_beacon`) into `fuzz/seeds/<target>/`. The files are committed; run this again when a
//! fixture or a format changes:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/seeds
//! ```

use std::path::Path;

use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Command, Config, Lease, Message, VirtualSwitchLease};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_node::beacon::{Beacon, BEACON_PROTOCOL_VERSION};
use pktmesh_route_server::gossip::GossipMessage;
use pktmesh_route_server::gossip::{self, BucketIds, BucketRef, Hex32, HexBytes, ItemRef, SetKind};
use pktmesh_route_server::leases::{item_id, LeaseBook, Order, VirtualNetwork};
use pktmesh_route_server::Graph;
use serde_json::json;

#[path = "../fuzz_targets/rs_common.rs"]
mod rs_common;

use rs_common::{fc_key, Fixture, NOW};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("a seed folder");
    std::fs::write(d.join(name), bytes).expect("a seed file");
}

fn body(frame: &[u8]) -> String {
    json!({ "frame": hex::encode(frame) }).to_string()
}

/// Frames the fixture's book does not hold yet, valid against it.
fn new_frames(f: &Fixture) -> Vec<(&'static str, Vec<u8>)> {
    let (n, o) = (&f.nodes, &f.owners);
    let config = |target: u8, seq: u64, command: Command| {
        Message::Config(Config {
            target: LeaseId([target; 16]),
            signer: o[0].public(),
            seq,
            command,
        })
        .emit_signed(&o[0])
        .expect("a configuration")
    };
    vec![
        (
            "lease",
            Message::Lease(Lease {
                id: LeaseId([9; 16]),
                node: n[2].lease.public(),
                peer: *n[3].key.public_key().as_bytes(),
                kbps: 2_000,
                start: UnixTime(NOW),
                end: UnixTime(NOW + 300),
                owner: o[1].public(),
            })
            .emit_signed(&n[2].lease)
            .expect("a lease"),
        ),
        (
            "vswitch",
            Message::VirtualSwitch(VirtualSwitchLease {
                id: LeaseId([10; 16]),
                node: n[2].lease.public(),
                owner: o[0].public(),
                start: UnixTime(NOW),
                end: UnixTime(NOW + 300),
                ins: vec![LeaseId([2; 16])],
                outs: vec![LeaseId([9; 16])],
            })
            .emit_signed(&n[2].lease)
            .expect("a virtual switch"),
        ),
        (
            "classes",
            config(
                1,
                2,
                Command::SetClasses {
                    default_class: 1,
                    max_class: 3,
                },
            ),
        ),
        (
            "network-delete",
            VirtualNetwork {
                id: 7,
                owner: o[0].public(),
                seq: 2,
                leases: Vec::new(),
                vswitches: Vec::new(),
            }
            .emit_signed(&o[0]),
        ),
        (
            "transfer",
            config(
                2,
                2,
                Command::Transfer {
                    new_owner: o[1].public(),
                },
            ),
        ),
        ("release", config(1, 3, Command::Release)),
        (
            "order",
            Order {
                node: n[0].address,
                peer: n[1].address,
                kbps: 700,
                start: UnixTime(NOW + 10),
                end: UnixTime(NOW + 900),
                buyer: o[1].public(),
                nonce: 2,
            }
            .emit_signed(&o[1]),
        ),
    ]
}

fn frame_seeds(dir: &Path, f: &Fixture) {
    let mut all = Vec::new();
    for (i, fr) in f.frames.iter().enumerate() {
        write(dir, "rs_frame", &format!("held-{i}"), body(fr).as_bytes());
        write(dir, "lease_message", &format!("held-{i}"), fr);
    }
    for (name, fr) in new_frames(f) {
        write(dir, "rs_frame", name, body(&fr).as_bytes());
        write(dir, "lease_message", name, &fr);
        all.push(body(&fr));
    }
    write(dir, "rs_frame", "all-new", all.join("\n").as_bytes());
    write(dir, "rs_frame", "not-hex", br#"{"frame": "zz"}"#);
}

fn gossip_seeds(dir: &Path, f: &Fixture) {
    let json = |m: &GossipMessage| serde_json::to_vec(m).expect("a message encodes");
    let mut empty_graph = Graph::new(pktmesh_route_server::Config::default());
    let mut empty_book = LeaseBook::new();
    let (mut graph, mut book) = (f.graph.clone(), f.book.clone());
    write(
        dir,
        "rs_gossip",
        "digests-empty",
        &json(&gossip::summary(&mut empty_graph, &mut empty_book)),
    );
    write(
        dir,
        "rs_gossip",
        "digests-full",
        &json(&gossip::summary(&mut graph, &mut book)),
    );
    let items = GossipMessage {
        anns: f.anns.iter().map(|a| HexBytes(a.clone())).collect(),
        lease_frames: f.frames.iter().map(|b| HexBytes(b.clone())).collect(),
        ..GossipMessage::default()
    };
    write(dir, "rs_gossip", "items", &json(&items));
    let fresh = GossipMessage {
        lease_frames: new_frames(f)
            .into_iter()
            .map(|(_, b)| HexBytes(b))
            .collect(),
        ..GossipMessage::default()
    };
    write(dir, "rs_gossip", "new-frames", &json(&fresh));
    let ids: Vec<[u8; 32]> = f.frames.iter().map(|b| item_id(b)).collect();
    let lists = GossipMessage {
        ask: vec![
            BucketRef {
                set: SetKind::Anns,
                bucket: 0,
            },
            BucketRef {
                set: SetKind::Leases,
                bucket: ids[0][0],
            },
        ],
        ids: vec![BucketIds {
            bucket: BucketRef {
                set: SetKind::Leases,
                bucket: ids[1][0],
            },
            ids: vec![Hex32(ids[1]), Hex32([ids[1][0]; 32])],
            partial: false,
        }],
        want: ids
            .iter()
            .map(|id| ItemRef {
                set: SetKind::Leases,
                id: Hex32(*id),
            })
            .collect(),
        ..GossipMessage::default()
    };
    write(dir, "rs_gossip", "lists", &json(&lists));
    write(dir, "rs_gossip", "nothing", b"{}");
    for (i, a) in f.anns.iter().enumerate() {
        write(dir, "rs_announce", &format!("ring-{i}"), a);
    }
}

fn agent_seeds(dir: &Path) {
    let me = fc_key(1).public_key().address();
    let peer = fc_key(2).public_key().address();
    let buyer = Signer::from_cjdns(&fc_key(9)).public();
    let order = |id: &str, node: String, peer: String, kbps: u32, span: u64| {
        json!({"id": id, "node": node, "peer": peer, "kbps": kbps, "start": NOW,
            "end": NOW + span, "buyer": hex::encode(buyer.0)})
    };
    let orders = json!({"orders": [
        order("01", me.to_string(), peer.to_string(), 1_000, 600),
        order("02", me.to_string(), peer.to_string(), 9_000, 600),
        order("03", peer.to_string(), me.to_string(), 1_000, 600),
    ], "next": null});
    write(
        dir,
        "agent_replies",
        "orders",
        orders.to_string().as_bytes(),
    );
    let from_peer = Signer::from_cjdns(&fc_key(2));
    let lease = Message::Lease(Lease {
        id: LeaseId([4; 16]),
        node: from_peer.public(),
        peer: *fc_key(1).public_key().as_bytes(),
        kbps: 1_000,
        start: UnixTime(NOW - 10),
        end: UnixTime(NOW + 600),
        owner: buyer,
    })
    .emit_signed(&from_peer)
    .expect("a lease");
    let frames = json!({"frames": [hex::encode(&lease), "zz"]});
    write(
        dir,
        "agent_replies",
        "frames",
        frames.to_string().as_bytes(),
    );
}

fn beacon_seeds(dir: &Path) {
    let beacon = |seed: u8, port: u16| Beacon {
        data_port: port,
        version: BEACON_PROTOCOL_VERSION,
        password: [b'a' + seed; 20],
        key: fc_key(seed).public_key(),
    };
    let mut all = Vec::new();
    for i in 0..4u8 {
        let mut udp = vec![0, 1, 10 + i];
        udp.extend_from_slice(&beacon(20 + i, 5000 + u16::from(i)).to_bytes());
        let mut eth = vec![1, 2, 10 + i];
        eth.extend_from_slice(&beacon(30 + i, 0).body_bytes());
        write(dir, "node_beacon", &format!("udp-{i}"), &udp);
        write(dir, "node_beacon", &format!("eth-{i}"), &eth);
        all.extend_from_slice(&udp);
        all.extend_from_slice(&eth);
        all.extend_from_slice(&[2, 200, 0]);
    }
    write(dir, "node_beacon", "mixed", &all);
    // Many senders, keys substituted (`op & 0x10`), then peers forgotten.
    let mut many = Vec::new();
    for i in 0..48u8 {
        many.extend_from_slice(&[0x10, i, i]);
        many.extend_from_slice(&beacon(20, 6000).to_bytes());
    }
    many.extend_from_slice(&[2, 255, 0, 2, 255, 0, 2, 255, 0]);
    write(dir, "node_beacon", "many", &many);
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/seeds".into());
    let dir = Path::new(&dir);
    let f = rs_common::fixture();
    frame_seeds(dir, f);
    gossip_seeds(dir, f);
    agent_seeds(dir);
    beacon_seeds(dir);
}
