//! The HTTP API against an in-process server on 127.0.0.1, and durability across `kill -9`
//! of the real binary.
#![cfg(feature = "server")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::http::{announce_all, app, get, post_frame, start, temp_db};
use common::Net;
use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{
    Command, Config as LeaseConfig, Lease, Message, VirtualSwitchLease,
};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_route_server::announce::{EntityRepr, LeaseOffer, LinkCapacity};
use pktmesh_route_server::http::{
    gossip_with, http_request, now_ms, serve_http, GossipSettings, HttpLimits, Peer, Shared,
    MAX_BODY,
};
use pktmesh_route_server::leases::{Order, VirtualNetwork};
use pktmesh_switch::Label;
use serde_json::Value;

/// A lease on `from → to` for `owner` during `[start, start + 3600)`, 10 Mbit/s.
fn lease(net: &Net, from: usize, to: usize, owner: &Signer, id: u8, start: u64) -> Vec<u8> {
    let node = Signer::from_cjdns(&net.nodes[from].key);
    Message::Lease(Lease {
        id: LeaseId([id; 16]),
        node: node.public(),
        peer: *net.nodes[to].key.public_key().as_bytes(),
        kbps: 10_000,
        start: UnixTime(start),
        end: UnixTime(start + 3600),
        owner: owner.public(),
    })
    .emit_signed(&node)
    .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn buy_attach_configure_and_route() {
    let db = temp_db("api");
    let rs = start(&db).await;
    let mut net = Net::new(3);
    net.link(0, 1);
    net.link(1, 2);
    let now = now_ms();
    let snode = Address::from_bytes([0xfc; 16]);
    // Nodes 0 and 1 offer leases on their links onward.
    for i in 0..3 {
        let mut extra = Vec::new();
        if i < 2 {
            let num = (net.hop_label(i, i + 1).bits() & 0xffff) as u16;
            extra.push(EntityRepr::LinkCapacity(LinkCapacity {
                peer_num: num,
                flags: 0,
                capacity_kbps: 100_000,
                leased_kbps: 0,
            }));
            extra.push(EntityRepr::LeaseOffer(LeaseOffer {
                peer_num: num,
                kbps: 50_000,
                max_seconds: 86_400,
                price_msat_per_mbit_hour: 5,
            }));
        }
        let ann = net.announcement_with(i, snode, now, true, Some(40), extra);
        let (status, body) =
            http_request(rs, "POST", "/announce", "application/octet-stream", &ann)
                .await
                .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let (_, links) = get(rs, "/links").await;
    assert_eq!(links["links"].as_array().unwrap().len(), 4);
    let (_, offers) = get(rs, "/offers").await;
    assert_eq!(offers["offers"].as_array().unwrap().len(), 2);

    // Buy a lease on 0→1: an order signed by the buyer.
    let buyer = Signer::from_cjdns(&common::key(500));
    let now_s = now / 1000;
    let order = Order {
        node: net.nodes[0].address,
        peer: net.nodes[1].address,
        kbps: 10_000,
        start: UnixTime(now_s),
        end: UnixTime(now_s + 3600),
        buyer: buyer.public(),
        nonce: 1,
    };
    let (status, _) = post_frame(rs, "/orders", &order.emit_signed(&buyer)).await;
    assert_eq!(status, 201);
    // More than offered is refused.
    let greedy = Order {
        kbps: 60_000,
        nonce: 2,
        ..order
    };
    let (status, body) = post_frame(rs, "/orders", &greedy.emit_signed(&buyer)).await;
    assert_eq!(status, 400, "{body}");
    let a0 = net.nodes[0].address.to_string();
    let (_, pending) = get(rs, &format!("/orders/pending?node={a0}")).await;
    assert_eq!(pending["orders"].as_array().unwrap().len(), 1);
    // The node fulfils it.
    let (status, _) = post_frame(rs, "/leases", &lease(&net, 0, 1, &buyer, 1, now_s)).await;
    assert_eq!(status, 201);
    let (_, pending) = get(rs, &format!("/orders/pending?node={a0}")).await;
    assert_eq!(pending["orders"].as_array().unwrap().len(), 0);
    // And a second lease on 1→2 plus a virtual switch at node 1 connecting them.
    let (status, _) = post_frame(rs, "/leases", &lease(&net, 1, 2, &buyer, 2, now_s)).await;
    assert_eq!(status, 201);
    let n1 = Signer::from_cjdns(&net.nodes[1].key);
    let vs = Message::VirtualSwitch(VirtualSwitchLease {
        id: LeaseId([3; 16]),
        node: n1.public(),
        owner: buyer.public(),
        start: UnixTime(now_s - 10),
        end: UnixTime(now_s + 3600),
        ins: vec![LeaseId([1; 16])],
        outs: vec![LeaseId([2; 16])],
    })
    .emit_signed(&n1)
    .unwrap();
    let (status, _) = post_frame(rs, "/leases", &vs).await;
    assert_eq!(status, 201);
    // Attach both to network 42 (signed by the owner).
    for (id, seq) in [(1u8, 1u64), (2, 1)] {
        let cfg = Message::Config(LeaseConfig {
            target: LeaseId([id; 16]),
            signer: buyer.public(),
            seq,
            command: Command::Attach { network: 42 },
        })
        .emit_signed(&buyer)
        .unwrap();
        let (status, _) = post_frame(rs, "/leases", &cfg).await;
        assert_eq!(status, 201);
    }
    let net_frame = VirtualNetwork {
        id: 42,
        owner: buyer.public(),
        seq: 1,
        leases: vec![LeaseId([1; 16]), LeaseId([2; 16])],
        vswitches: vec![LeaseId([3; 16])],
    }
    .emit_signed(&buyer);
    let (status, body) = post_frame(rs, "/networks", &net_frame).await;
    assert_eq!(status, 201, "{body}");

    // Bad input changes nothing.
    let (_, before) = get(rs, "/leases").await;
    let thief = Signer::from_cjdns(&common::key(501));
    let forged = Message::Config(LeaseConfig {
        target: LeaseId([1; 16]),
        signer: thief.public(),
        seq: 9,
        command: Command::Transfer {
            new_owner: thief.public(),
        },
    })
    .emit_signed(&thief)
    .unwrap();
    let (status, body) = post_frame(rs, "/leases", &forged).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("not owned"),
        "{body}"
    );
    let mut tampered = lease(&net, 0, 1, &buyer, 9, now_s);
    tampered[10] ^= 1;
    let (status, _) = post_frame(rs, "/leases", &tampered).await;
    assert_eq!(status, 400);
    let expired = {
        let node = Signer::from_cjdns(&net.nodes[0].key);
        Message::Lease(Lease {
            id: LeaseId([8; 16]),
            node: node.public(),
            peer: *net.nodes[1].key.public_key().as_bytes(),
            kbps: 1,
            start: UnixTime(1),
            end: UnixTime(2),
            owner: buyer.public(),
        })
        .emit_signed(&node)
        .unwrap()
    };
    let (status, body) = post_frame(rs, "/leases", &expired).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("expired"));
    let (status, _) = http_request(rs, "POST", "/leases", "application/json", b"{\"frame\": 5}")
        .await
        .unwrap();
    assert_eq!(status, 400);
    let huge = vec![b'a'; MAX_BODY + 1];
    let (status, _) = http_request(rs, "POST", "/leases", "application/json", &huge)
        .await
        .unwrap();
    assert_eq!(status, 413);
    let (status, _) = http_request(rs, "POST", "/announce", "application/octet-stream", &huge)
        .await
        .unwrap();
    assert_eq!(status, 413);
    let (_, after) = get(rs, "/leases").await;
    assert_eq!(before, after);

    // Paths: plain, and with the owner's leases.
    let (a, z) = (net.nodes[0].address, net.nodes[2].address);
    let hex_owner = hex::encode(buyer.public().0);
    let (status, route) = get(rs, &format!("/path?from={a}&to={z}&owner={hex_owner}")).await;
    assert_eq!(status, 200, "{route}");
    assert_eq!(route["leased_links_used"], 2);
    let label = Label::parse(route["label"].as_str().unwrap()).unwrap();
    assert_eq!(net.deliver(0, label).unwrap().0, 2);
    let (status, _) = get(rs, &format!("/path?from={a}&to=fc00::1")).await;
    assert_eq!(status, 404);
    let (status, _) = get(rs, "/path?from=nonsense&to=fc00::1").await;
    assert_eq!(status, 400);

    let (status, doc) = get(rs, "/openapi.json").await;
    assert_eq!(status, 200);
    for p in [
        "/links",
        "/offers",
        "/leases",
        "/orders",
        "/networks",
        "/path",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} documented");
    }
    let _ = std::fs::remove_file(db);
}

/// Starts the binary on an ephemeral port; returns the child and its address.
fn spawn_binary(db: &std::path::Path) -> (std::process::Child, SocketAddr) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pktmesh-route-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .trim_start_matches("listening on ")
        .parse()
        .unwrap();
    (child, addr)
}

#[tokio::test(flavor = "current_thread")]
async fn leases_survive_kill_9() {
    let db = temp_db("kill9");
    let mut net = Net::new(2);
    net.link(0, 1);
    let owner = Signer::from_cjdns(&common::key(600));
    let now_s = now_ms() / 1000;
    let (mut child, rs) = spawn_binary(&db);
    announce_all(rs, &net, 100_000, 50_000).await;
    let (status, body) = post_frame(rs, "/leases", &lease(&net, 0, 1, &owner, 7, now_s)).await;
    assert_eq!(status, 201, "{body}");
    // SIGKILL right after the 201: the commit happened before the answer.
    child.kill().unwrap();
    child.wait().unwrap();
    let (mut child, rs) = spawn_binary(&db);
    let mut found = false;
    for _ in 0..50 {
        if let Ok((200, body)) = http_request(rs, "GET", "/leases", "application/json", b"").await {
            let v: Value = serde_json::from_slice(&body).unwrap();
            found = v["leases"].as_array().unwrap().len() == 1;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(db);
    assert!(found, "the lease survived kill -9");
}

/// Two servers that trust each other's keys.
fn gossiping_pair(
    a_db: &std::path::Path,
    b_db: &std::path::Path,
    b_addr: SocketAddr,
    a_addr: SocketAddr,
) -> (Shared, Shared) {
    let (ka, kb) = (common::key(710), common::key(711));
    let (sa, sb) = (Signer::from_cjdns(&ka), Signer::from_cjdns(&kb));
    let pa = Peer {
        key: sa.public(),
        addr: a_addr,
    };
    let pb = Peer {
        key: sb.public(),
        addr: b_addr,
    };
    let a = app(a_db, GossipSettings::new(Some(sa), vec![pb]));
    let b = app(b_db, GossipSettings::new(Some(sb), vec![pa]));
    (a, b)
}

#[tokio::test(flavor = "current_thread")]
async fn gossip_over_http() {
    let (db_a, db_b) = (temp_db("ga"), temp_db("gb"));
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (a_addr, b_addr) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let (a, b) = gossiping_pair(&db_a, &db_b, b_addr, a_addr);
    let b_state = Arc::clone(&b);
    tokio::spawn(async move { serve_http(b_state, lb, HttpLimits::default()).await });
    drop(la);

    let mut net = Net::new(2);
    net.link(0, 1);
    let now = now_ms();
    let snode = Address::from_bytes([0xfc; 16]);
    let owner = Signer::from_cjdns(&common::key(700));
    {
        let mut rs = a.graph_mut();
        for i in 0..2 {
            let extra = net.capacity_entities(i, 100_000, 50_000);
            let ann = net.announcement_with(i, snode, now, true, Some(30), extra);
            rs.ingest(now, &ann, pktmesh_route_server::Origin::Node)
                .unwrap();
        }
        let frame = lease(&net, 0, 1, &owner, 4, now / 1000);
        let mut book = a.book_mut();
        book.insert(UnixTime(now / 1000), &frame, rs.graph())
            .unwrap();
        drop(a.persist(&mut book));
    }
    let peer_b = Peer {
        key: b.gossip_key().unwrap(),
        addr: b_addr,
    };
    gossip_with(&a, &peer_b).await.unwrap();
    let (ga, gb) = (a.graph().graph().digest(), b.graph().graph().digest());
    assert_eq!(ga, gb);
    assert_eq!(a.book().digest(), b.book().digest());
    let (_, leases) = get(b_addr, "/leases").await;
    assert_eq!(leases["leases"].as_array().unwrap().len(), 1);
    let (_, links) = get(b_addr, "/links").await;
    assert_eq!(links["links"].as_array().unwrap().len(), 2);
    for db in [db_a, db_b] {
        let _ = std::fs::remove_file(db);
    }
}
