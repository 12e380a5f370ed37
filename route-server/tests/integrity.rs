//! Leases and orders with integrity, through the real HTTP server on 127.0.0.1: no
//! overselling (409 naming the conflicts, adjacent spans allowed, exactly one winner of a race),
//! full-identity matching, paging, and each attack of the issue refused or bounded with the
//! counts asserted.
#![cfg(feature = "server")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::http::{announce_all, app, get, post_frame, serve_app, temp_db};
use common::Net;
use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Lease, Message};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_route_server::announce::{AnnounceSigner, AnnouncementRepr, EntityRepr};
use pktmesh_route_server::http::{http_request, now_ms, GossipSettings, HttpLimits, MAX_PAGE};
use pktmesh_route_server::leases::{Order, VirtualNetwork, MAX_PENDING_ORDERS_PER_BUYER};
use serde_json::Value;

/// A line 0 — 1 — 2 whose links have `capacity` kbit/s, all offered up to `capacity`.
async fn line(name: &str, capacity: u32) -> (SocketAddr, Net, std::path::PathBuf) {
    let db = temp_db(name);
    let rs = serve_app(app(&db, GossipSettings::default()), HttpLimits::default()).await;
    let mut net = Net::new(3);
    net.link(0, 1);
    net.link(1, 2);
    announce_all(rs, &net, capacity, capacity).await;
    (rs, net, db)
}

fn order(net: &Net, buyer: &Signer, kbps: u32, start: u64, end: u64, nonce: u64) -> Vec<u8> {
    Order {
        node: net.nodes[0].address,
        peer: net.nodes[1].address,
        kbps,
        start: UnixTime(start),
        end: UnixTime(end),
        buyer: buyer.public(),
        nonce,
    }
    .emit_signed(buyer)
}

#[allow(clippy::too_many_arguments)]
fn lease(
    net: &Net,
    from: usize,
    to: usize,
    owner: &Signer,
    id: u8,
    kbps: u32,
    s: u64,
    e: u64,
) -> Vec<u8> {
    let node = Signer::from_cjdns(&net.nodes[from].key);
    Message::Lease(Lease {
        id: LeaseId([id; 16]),
        node: node.public(),
        peer: *net.nodes[to].key.public_key().as_bytes(),
        kbps,
        start: UnixTime(s),
        end: UnixTime(e),
        owner: owner.public(),
    })
    .emit_signed(&node)
    .unwrap()
}

async fn stats(rs: SocketAddr) -> Value {
    get(rs, "/stats").await.1
}

#[tokio::test(flavor = "current_thread")]
async fn overselling_is_refused_with_409_naming_the_conflicts() {
    let (rs, net, db) = line("oversell", 10_000).await;
    let buyer = Signer::from_cjdns(&common::key(900));
    let t = now_ms() / 1000 + 60;
    let (status, _) = post_frame(rs, "/orders", &order(&net, &buyer, 6000, t, t + 600, 1)).await;
    assert_eq!(status, 201);
    let (status, _) = post_frame(
        rs,
        "/leases",
        &lease(&net, 0, 1, &buyer, 1, 3000, t + 300, t + 900),
    )
    .await;
    assert_eq!(status, 201);
    // Overlapping both: 6000 + 3000 + 2000 > 10000.
    let (status, body) = post_frame(
        rs,
        "/orders",
        &order(&net, &buyer, 2000, t + 400, t + 500, 2),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["capacity_kbps"], 10_000);
    let conflicts = body["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 2, "{body}");
    let kinds: Vec<&str> = conflicts
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"order") && kinds.contains(&"lease"),
        "{body}"
    );
    let lease_conflict = conflicts.iter().find(|c| c["kind"] == "lease").unwrap();
    assert_eq!(lease_conflict["id"], LeaseId([1; 16]).to_string());
    assert_eq!(
        lease_conflict["issuer"],
        hex::encode(Signer::from_cjdns(&net.nodes[0].key).public().0)
    );
    // Adjacent (ends when the order starts, starts when the lease ends) is allowed at 10000.
    let (status, body) =
        post_frame(rs, "/orders", &order(&net, &buyer, 10_000, t - 30, t, 3)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = post_frame(
        rs,
        "/leases",
        &lease(&net, 0, 1, &buyer, 2, 10_000, t + 900, t + 1000),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // A lease overlapping by one second is not.
    let (status, _) = post_frame(
        rs,
        "/leases",
        &lease(&net, 0, 1, &buyer, 3, 5000, t + 899, t + 950),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(stats(rs).await["book"]["over_capacity"], 2);
    let _ = std::fs::remove_file(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_orders_for_the_last_capacity_have_one_winner() {
    let (rs, net, db) = line("race", 10_000).await;
    let t = now_ms() / 1000 + 60;
    // 7000 of 10000 held; 24 buyers race for 3000 each.
    let first = Signer::from_cjdns(&common::key(901));
    let (status, _) = post_frame(rs, "/orders", &order(&net, &first, 7000, t, t + 600, 0)).await;
    assert_eq!(status, 201);
    let net = Arc::new(net);
    let mut tasks = Vec::new();
    for i in 0..24u32 {
        let net = Arc::clone(&net);
        tasks.push(tokio::spawn(async move {
            let buyer = Signer::from_cjdns(&common::key(1000 + i));
            post_frame(
                rs,
                "/orders",
                &order(&net, &buyer, 3000, t, t + 600, u64::from(i)),
            )
            .await
            .0
        }));
    }
    let mut codes = Vec::new();
    for task in tasks {
        codes.push(task.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|&&c| c == 201).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 409).count(), 23, "{codes:?}");
    let a0 = net.nodes[0].address.to_string();
    let (_, pending) = get(rs, &format!("/orders/pending?node={a0}")).await;
    assert_eq!(pending["orders"].as_array().unwrap().len(), 2);
    let _ = std::fs::remove_file(db);
}

#[tokio::test(flavor = "current_thread")]
async fn orders_and_leases_match_by_full_identity_and_pages_cover_everything() {
    let (rs, net, db) = line("identity", 100_000).await;
    let buyer = Signer::from_cjdns(&common::key(902));
    let t = now_ms() / 1000 + 60;
    let spans = [(t, t + 100), (t + 100, t + 200), (t + 1000, t + 2000)];
    let mut ids = Vec::new();
    for (i, (s, e)) in spans.iter().enumerate() {
        let (status, body) =
            post_frame(rs, "/orders", &order(&net, &buyer, 1000, *s, *e, i as u64)).await;
        assert_eq!(status, 201);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let a0 = net.nodes[0].address.to_string();
    let (_, pending) = get(rs, &format!("/orders/pending?node={a0}")).await;
    assert_eq!(pending["orders"].as_array().unwrap().len(), 3);
    for (i, (s, e)) in spans.iter().enumerate().rev() {
        let (status, _) = post_frame(
            rs,
            "/leases",
            &lease(&net, 0, 1, &buyer, 10 + i as u8, 1000, *s, *e),
        )
        .await;
        assert_eq!(status, 201);
    }
    let (_, pending) = get(rs, &format!("/orders/pending?node={a0}")).await;
    assert!(
        pending["orders"].as_array().unwrap().is_empty(),
        "{pending}"
    );
    for (i, id) in ids.iter().enumerate() {
        let (_, o) = get(rs, &format!("/orders?id={id}")).await;
        assert_eq!(
            o["orders"][0]["matched"]["id"],
            LeaseId([10 + i as u8; 16]).to_string()
        );
    }
    // Pages: two at a time, following `next`, cover every lease exactly once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..10 {
        let path = match &after {
            None => "/leases?limit=2".to_owned(),
            Some(a) => format!("/leases?limit=2&after={a}"),
        };
        let (status, page) = get(rs, &path).await;
        assert_eq!(status, 200, "{page}");
        assert!(page["leases"].as_array().unwrap().len() <= 2);
        seen.extend(
            page["leases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].clone()),
        );
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    let (_, mine) = get(
        rs,
        &format!("/orders?buyer={}&limit=2", hex::encode(buyer.public().0)),
    )
    .await;
    assert_eq!(mine["orders"].as_array().unwrap().len(), 2);
    let next = mine["next"].as_str().unwrap();
    let (_, rest) = get(
        rs,
        &format!(
            "/orders?buyer={}&after={next}",
            hex::encode(buyer.public().0)
        ),
    )
    .await;
    assert_eq!(rest["orders"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest["next"].is_null());
    let stranger = hex::encode(Signer::from_cjdns(&common::key(999)).public().0);
    let (_, none) = get(rs, &format!("/orders?buyer={stranger}")).await;
    assert!(none["orders"].as_array().unwrap().is_empty());
    let (_, page) = get(rs, "/orders?limit=1").await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 1);
    assert!(page["next"].is_string());
    let (_, page) = get(rs, &format!("/orders?limit={}", MAX_PAGE * 10)).await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 3);
    assert!(page["next"].is_null());
    let _ = std::fs::remove_file(db);
}

#[tokio::test(flavor = "current_thread")]
async fn attacks_are_refused_or_bounded() {
    let (rs, net, db) = line("attacks", 100_000).await;
    let t = now_ms() / 1000;
    let victim = Signer::from_cjdns(&common::key(903));
    let thief = Signer::from_cjdns(&common::key(904));

    // 1. A lease for another node's link: node 2 signs "0 → 1" — its link would be 2 → 1,
    //    and node 1 → 0 exists but node 2 is not its source either.
    let (status, _) = post_frame(
        rs,
        "/leases",
        &lease(&net, 0, 1, &victim, 7, 1000, t, t + 600),
    )
    .await;
    assert_eq!(status, 201);
    let forged_link = lease(&net, 2, 0, &thief, 8, 1000, t, t + 600);
    let (status, body) = post_frame(rs, "/leases", &forged_link).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("no link"),
        "{body}"
    );

    // 2. An id-reusing lease from another key (node 1 on its own link 1 → 2, victim's id 7):
    //    accepted as a different lease; the victim's is untouched.
    let (status, _) = post_frame(
        rs,
        "/leases",
        &lease(&net, 1, 2, &thief, 7, 1000, t, t + 600),
    )
    .await;
    assert_eq!(status, 201);
    let (_, listing) = get(rs, "/leases").await;
    let sevens: Vec<&Value> = listing["leases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["id"] == LeaseId([7; 16]).to_string())
        .collect();
    assert_eq!(sevens.len(), 2);
    let v = sevens
        .iter()
        .find(|l| l["from"] == net.nodes[0].address.to_string())
        .unwrap();
    assert_eq!(v["owner"], hex::encode(victim.public().0));
    let a0 = net.nodes[0].address.to_string();
    let (_, frames) = get(rs, &format!("/frames?node={a0}")).await;
    assert_eq!(frames["frames"].as_array().unwrap().len(), 1);

    // 3. A 60 KiB padded announcement (under the body limit): refused and counted.
    let mut padded = AnnouncementRepr {
        snode_ip: Address::from_bytes([0xfc; 16]),
        timestamp_ms: now_ms(),
        reset: true,
        version: 1,
        entities: vec![
            EntityRepr::Version(22),
            EntityRepr::EncodingScheme(pktmesh_switch::EncodingScheme::v358()),
        ],
    }
    .emit_signed(&AnnounceSigner::from_cjdns(&common::key(905)))
    .unwrap();
    padded.resize(60 * 1024, 1);
    let (status, body) = http_request(rs, "POST", "/announce", "application/octet-stream", &padded)
        .await
        .unwrap();
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("too_long"));
    let s = stats(rs).await;
    assert_eq!(s["graph"]["announcements_refused"], 1);
    assert_eq!(s["graph"]["nodes"], 3);

    // 4. 10,000 empty networks: every one refused (nothing to delete), none held.
    let owner = Signer::from_cjdns(&common::key(906));
    let mut refused = 0;
    for id in 0..10_000u64 {
        let f = VirtualNetwork {
            id,
            owner: owner.public(),
            seq: 1,
            leases: vec![],
            vswitches: vec![],
        }
        .emit_signed(&owner);
        let (status, _) = post_frame(rs, "/networks", &f).await;
        refused += usize::from(status == 400);
    }
    assert_eq!(refused, 10_000);
    let s = stats(rs).await;
    assert_eq!(s["book"]["frames"], 2, "{s}");

    // 5. Pending orders per buyer are capped (429 beyond).
    let buyer = Signer::from_cjdns(&common::key(907));
    let mut codes = Vec::new();
    for n in 0..(MAX_PENDING_ORDERS_PER_BUYER as u64 + 3) {
        let (status, _) =
            post_frame(rs, "/orders", &order(&net, &buyer, 1, t + 10, t + 20, n)).await;
        codes.push(status);
    }
    assert_eq!(
        codes.iter().filter(|&&c| c == 201).count(),
        MAX_PENDING_ORDERS_PER_BUYER
    );
    assert_eq!(codes.iter().filter(|&&c| c == 429).count(), 3);
    assert_eq!(stats(rs).await["book"]["limited"], 3);
    let _ = std::fs::remove_file(db);
}
