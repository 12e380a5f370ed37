//! `GET /frames?node=`: the lease-engine frames a node feeds to its `LeaseEngine`, in an order
//! it can apply them in, and none of another node's.
#![cfg(feature = "server")]

mod common;

use std::net::SocketAddr;

use common::http::{announce_all, get, post_frame, start, temp_db};
use common::Net;
use pktmesh_lease_engine::sign::{Signer, SigningKey};
use pktmesh_lease_engine::wire::{
    Command, Config as LeaseConfig, Lease, Message, VirtualSwitchLease,
};
use pktmesh_lease_engine::{
    EngineConfig, Event, LeaseEngine, LeaseId, LeaseKey, Nanos, Priority, UnixTime,
};
use pktmesh_route_server::http::now_ms;
use pktmesh_route_server::leases::VirtualNetwork;
use serde_json::json;

async fn post(to: SocketAddr, path: &str, frame: &[u8]) {
    let (status, reply) = post_frame(to, path, frame).await;
    assert_eq!(status, 201, "{reply}");
}

/// A lease on `from → to` for `owner`, during `[start, start + 3600)`.
fn lease(net: &Net, from: usize, to: usize, owner: &Signer, id: u8, start: u64) -> Vec<u8> {
    let node = Signer::from_cjdns(&net.nodes[from].key);
    Message::Lease(Lease {
        id: LeaseId([id; 16]),
        node: node.public(),
        peer: *net.nodes[to].key.public_key().as_bytes(),
        kbps: 1000,
        start: UnixTime(start),
        end: UnixTime(start + 3600),
        owner: owner.public(),
    })
    .emit_signed(&node)
    .unwrap()
}

fn vswitch(net: &Net, at: usize, owner: &Signer, id: u8, ins: u8, outs: u8, now: u64) -> Vec<u8> {
    let node = Signer::from_cjdns(&net.nodes[at].key);
    Message::VirtualSwitch(VirtualSwitchLease {
        id: LeaseId([id; 16]),
        node: node.public(),
        owner: owner.public(),
        start: UnixTime(now - 10),
        end: UnixTime(now + 3600),
        ins: vec![LeaseId([ins; 16])],
        outs: vec![LeaseId([outs; 16])],
    })
    .emit_signed(&node)
    .unwrap()
}

fn config(signer: &Signer, target: u8, seq: u64, command: Command) -> Vec<u8> {
    Message::Config(LeaseConfig {
        target: LeaseId([target; 16]),
        signer: signer.public(),
        seq,
        command,
    })
    .emit_signed(signer)
    .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn frames_of_a_node_apply_cleanly_to_its_engine() {
    let db = temp_db("frames");
    let rs = start(&db).await;
    // A line 0 → 1 → 2 → 3; we look at node 1.
    let mut net = Net::new(4);
    for i in 0..3 {
        net.link(i, i + 1);
    }
    announce_all(rs, &net, 100_000, 50_000).await;
    let owner = Signer::from_cjdns(&common::key(800));
    let heir = Signer::from_cjdns(&common::key(801));
    let now = now_ms() / 1000;
    let attach = |network| Command::Attach { network };
    // Submitted interleaved, with sequence numbers out of order: the answer must sort them.
    post(rs, "/leases", &lease(&net, 1, 2, &owner, 2, now - 10)).await;
    post(rs, "/leases", &config(&owner, 2, 20, attach(7))).await;
    post(rs, "/leases", &config(&owner, 2, 10, attach(6))).await;
    post(rs, "/leases", &lease(&net, 0, 1, &owner, 1, now - 10)).await;
    post(rs, "/leases", &config(&owner, 1, 5, attach(7))).await;
    post(rs, "/leases", &vswitch(&net, 1, &owner, 3, 1, 2, now)).await;
    // Lease 4 (1 → 2) changes hands; the heir continues above the sequence number.
    post(rs, "/leases", &lease(&net, 1, 2, &owner, 4, now - 10)).await;
    let classes = Command::SetClasses {
        default_class: 2,
        max_class: 9,
    };
    post(rs, "/leases", &config(&owner, 4, 1, classes)).await;
    let transfer = Command::Transfer {
        new_owner: heir.public(),
    };
    post(rs, "/leases", &config(&owner, 4, 2, transfer)).await;
    post(rs, "/leases", &config(&heir, 4, 3, attach(9))).await;
    // Lease 5 (0 → 1) is released.
    post(rs, "/leases", &lease(&net, 0, 1, &owner, 5, now - 10)).await;
    post(rs, "/leases", &config(&owner, 5, 1, Command::Release)).await;
    // Lease 6 (1 → 2) starts in an hour: the lease is for the node now, its configuration
    // only once it has started (the engine refuses it before).
    post(rs, "/leases", &lease(&net, 1, 2, &owner, 6, now + 3600)).await;
    post(rs, "/leases", &config(&owner, 6, 1, attach(7))).await;
    // Another node's: lease 8 on 2 → 3, a virtual switch at 2 and their configuration.
    let elsewhere = [
        lease(&net, 2, 3, &owner, 8, now - 10),
        vswitch(&net, 2, &owner, 9, 2, 8, now),
        config(&owner, 8, 1, attach(7)),
    ];
    for f in &elsewhere {
        post(rs, "/leases", f).await;
    }

    let a1 = net.nodes[1].address.to_string();
    let (status, body) = get(rs, &format!("/frames?node={a1}")).await;
    assert_eq!(status, 200, "{body}");
    let frames: Vec<Vec<u8>> = body["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| hex::decode(f.as_str().unwrap()).unwrap())
        .collect();
    for f in &elsewhere {
        assert!(!frames.contains(f), "another node's frame returned");
    }
    let me = Signer::from_cjdns(&net.nodes[1].key).public();
    let mut engine = LeaseEngine::new(me, EngineConfig::default());
    // Leases into node 1 are taken from its peers only.
    engine.peer_up(net.nodes[0].key.public_key(), 1);
    engine.peer_up(net.nodes[2].key.public_key(), 2);
    let mut events = Vec::new();
    for f in &frames {
        let event = engine.handle_message(UnixTime(now), f);
        assert!(
            matches!(event, Ok(e) if !matches!(e, Event::AlreadyKnown(_))),
            "{event:?}"
        );
        events.push(event.unwrap());
    }
    // Five leases, one virtual switch, seven configuration commands (lease 6's withheld).
    assert_eq!(frames.len(), 13, "{events:?}");
    let snap = engine.snapshot();
    // The engine keys by (issuer, id): lease 1 is node 0's, the rest node 1's.
    let n0 = Signer::from_cjdns(&net.nodes[0].key).public();
    let keys = |ids: &[(SigningKey, u8)]| {
        let mut keys: Vec<_> = ids
            .iter()
            .map(|&(issuer, i)| LeaseKey::new(issuer, LeaseId([i; 16])))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        snap.leases.keys().copied().collect::<Vec<_>>(),
        keys(&[(n0, 1), (me, 2), (me, 4), (me, 6)])
    );
    assert_eq!(
        snap.vswitches.keys().copied().collect::<Vec<_>>(),
        keys(&[(me, 3)])
    );
    assert_eq!(snap.leases[&LeaseKey::new(n0, LeaseId([1; 16]))].network, 7);
    let mine = |id: u8| &snap.leases[&LeaseKey::new(me, LeaseId([id; 16]))];
    assert_eq!(mine(2).network, 7);
    let four = mine(4);
    assert_eq!(
        (
            four.lease.owner,
            four.network,
            four.default_class,
            four.max_class
        ),
        // The transfer reset the old owner's classes (a transfer detaches and resets); the
        // heir attached it itself.
        (heir.public(), 9, 0, 15)
    );
    assert_eq!(mine(6).network, 0);

    // Node 3 gets only its in-lease and that lease's configuration.
    let a3 = net.nodes[3].address.to_string();
    let (_, body) = get(rs, &format!("/frames?node={a3}")).await;
    assert_eq!(body["frames"].as_array().unwrap().len(), 2, "{body}");
    // A node nothing concerns gets nothing.
    let (status, body) = get(rs, "/frames?node=fc00::1").await;
    assert_eq!((status, body), (200, json!({ "frames": [] })));

    // Bad input: a JSON error, as elsewhere.
    for bad in ["/frames?node=nonsense", "/frames?node=fd00::1", "/frames"] {
        let (status, body) = get(rs, bad).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].as_str().is_some(), "{bad}: {body}");
    }
    let (_, doc) = get(rs, "/openapi.json").await;
    assert!(doc["paths"].get("/frames").is_some());
    let _ = std::fs::remove_file(db);
}

/// `GET /frames?node=` fed to a fresh engine of `node` whose peers are the nodes in `peers`
/// (interface i + 1 for the i-th).
async fn engine_of(rs: SocketAddr, net: &Net, node: usize, peers: &[usize]) -> LeaseEngine {
    let me = Signer::from_cjdns(&net.nodes[node].key).public();
    let mut engine = LeaseEngine::new(me, EngineConfig::default());
    for (i, &p) in peers.iter().enumerate() {
        engine.peer_up(net.nodes[p].key.public_key(), i as u16 + 1);
    }
    let address = net.nodes[node].address.to_string();
    let (status, body) = get(rs, &format!("/frames?node={address}")).await;
    assert_eq!(status, 200, "{body}");
    let now = UnixTime(now_ms() / 1000);
    for f in body["frames"].as_array().unwrap() {
        let bytes = hex::decode(f.as_str().unwrap()).unwrap();
        let event = engine.handle_message(now, &bytes);
        assert!(event.is_ok(), "{event:?}");
    }
    engine
}

#[tokio::test(flavor = "current_thread")]
async fn a_virtual_switch_attached_through_the_book_is_enforced_by_its_node() {
    let db = temp_db("vswitch");
    let rs = start(&db).await;
    // A line 0 → 1 → 2: leases 1 (0 → 1) and 2 (1 → 2), a virtual switch 3 at node 1.
    let mut net = Net::new(3);
    net.link(0, 1);
    net.link(1, 2);
    announce_all(rs, &net, 100_000, 50_000).await;
    let owner = Signer::from_cjdns(&common::key(810));
    let stranger = Signer::from_cjdns(&common::key(811));
    let now = now_ms() / 1000;
    let attach = |network| Command::Attach { network };
    post(rs, "/leases", &lease(&net, 0, 1, &owner, 1, now - 10)).await;
    post(rs, "/leases", &lease(&net, 1, 2, &owner, 2, now - 10)).await;
    post(rs, "/leases", &vswitch(&net, 1, &owner, 3, 1, 2, now)).await;
    post(rs, "/leases", &config(&owner, 1, 1, attach(7))).await;
    post(rs, "/leases", &config(&owner, 2, 1, attach(7))).await;
    // The leases are in network 7, the switch is not yet: the node does not connect them.
    let (from, to) = (1, 2);
    let mut engine = engine_of(rs, &net, 1, &[0, 2]).await;
    assert_eq!(engine.classify(Nanos(1), from, to, 100, 0), Priority::FREE);

    // The owner attaches the virtual switch through the book.
    post(rs, "/leases", &config(&owner, 3, 1, attach(7))).await;
    let (_, listing) = get(rs, "/leases").await;
    let vs = &listing["virtual_switches"][0];
    assert_eq!(vs["id"], LeaseId([3; 16]).to_string());
    assert_eq!(vs["node"], net.nodes[1].address.to_string());
    assert_eq!(vs["network"], 7);
    assert_eq!(vs["released"], false);
    assert_eq!(vs["owner"], hex::encode(owner.public().0));

    // Refused, and nothing changes: someone else's attach, a replayed sequence number, classes
    // (not applicable to a virtual switch).
    let refusals = [
        config(&stranger, 3, 2, attach(8)),
        config(&owner, 3, 1, attach(8)),
        config(
            &owner,
            3,
            2,
            Command::SetClasses {
                default_class: 1,
                max_class: 2,
            },
        ),
    ];
    for f in &refusals {
        let (status, body) = post_frame(rs, "/leases", f).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().is_some(), "{body}");
        assert_eq!(get(rs, "/leases").await.1, listing);
    }

    // The node's frames now make (in-lease, out-lease) = (interface 1, interface 2) leased.
    let mut engine = engine_of(rs, &net, 1, &[0, 2]).await;
    let snap = engine.snapshot();
    let at_1 = Signer::from_cjdns(&net.nodes[1].key).public();
    assert_eq!(
        snap.vswitches[&LeaseKey::new(at_1, LeaseId([3; 16]))].network,
        7
    );
    assert!(engine.classify(Nanos(1), from, to, 100, 0).is_in_lease());
    // The other direction is not leased.
    assert_eq!(engine.classify(Nanos(1), to, from, 100, 0), Priority::FREE);

    // The virtual network over it is accepted; deleting it and then releasing the switch
    // works, and the node stops connecting the leases.
    let vnet = |seq: u64, leases: &[u8], vswitches: &[u8]| {
        VirtualNetwork {
            id: 7,
            owner: owner.public(),
            seq,
            leases: leases.iter().map(|&i| LeaseId([i; 16])).collect(),
            vswitches: vswitches.iter().map(|&i| LeaseId([i; 16])).collect(),
        }
        .emit_signed(&owner)
    };
    post(rs, "/networks", &vnet(1, &[1, 2], &[3])).await;
    post(rs, "/networks", &vnet(2, &[], &[])).await;
    post(rs, "/leases", &config(&owner, 3, 2, Command::Release)).await;
    let (_, listing) = get(rs, "/leases").await;
    assert_eq!(listing["virtual_switches"][0]["released"], true);
    let mut engine = engine_of(rs, &net, 1, &[0, 2]).await;
    assert!(engine.snapshot().vswitches.is_empty());
    assert_eq!(engine.classify(Nanos(1), from, to, 100, 0), Priority::FREE);
    let _ = std::fs::remove_file(db);
}
