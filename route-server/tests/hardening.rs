//! The route server cannot be flooded: idle and slowloris sockets are closed after the
//! header-read timeout, the connection cap holds, gossip is authenticated (401/403, counted),
//! runs the public arrival checks, pages large sets whole, and a silent peer stalls neither the
//! other peers nor expiry. All on 127.0.0.1 with short timeouts.
#![cfg(feature = "server")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{announce_all, app, get, post_frame, serve_app, temp_db};
use common::Net;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::UnixTime;
use pktmesh_route_server::gossip::{envelope, GossipMessage, HexBytes};
use pktmesh_route_server::http::{
    gossip_with, http_request, now_ms, serve, GossipError, GossipSettings, HttpLimits, Peer,
    ServeConfig, Shared,
};
use pktmesh_route_server::leases::Order;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn short() -> HttpLimits {
    HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        max_connections: 4096,
    }
}

/// Whether the server closed `s` (EOF or reset) within `within`.
async fn closed(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    match tokio::time::timeout(within, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        // A 408 page before the close counts too; read on to the end.
        Ok(Ok(_)) => tokio::time::timeout(within, s.read_to_end(&mut Vec::new()))
            .await
            .is_ok(),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slowloris_sockets_are_closed_and_normal_requests_still_answer() {
    let db = temp_db("idle");
    let rs = serve_app(app(&db, GossipSettings::default()), short()).await;
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(rs).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = TcpStream::connect(rs).await.unwrap();
        s.write_all(b"GET /links HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // Keep the slowloris ones trickling a header byte at a time.
    for s in &mut slow {
        let _ = s.write_all(b"X-A: b").await;
    }
    let t = Instant::now();
    let (status, _) = get(rs, "/links").await;
    let answered = t.elapsed();
    assert_eq!(status, 200);
    assert!(
        answered < Duration::from_secs(1),
        "answered in {answered:?}"
    );
    // After the timeout every one of them is closed by the server.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut n_closed = 0;
    for s in idle.iter_mut().chain(slow.iter_mut()) {
        n_closed += usize::from(closed(s, Duration::from_millis(500)).await);
    }
    assert_eq!(n_closed, 300);
    // A keep-alive connection that goes idle after a request is closed too.
    let mut ka = TcpStream::connect(rs).await.unwrap();
    ka.write_all(b"GET /nodes HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = ka.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(closed(&mut ka, Duration::from_millis(500)).await);
    let _ = std::fs::remove_file(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds() {
    let db = temp_db("cap");
    let state = app(&db, GossipSettings::default());
    let limits = HttpLimits {
        max_connections: 20,
        ..short()
    };
    let rs = serve_app(Arc::clone(&state), limits).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(rs).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The 21st is closed at once.
    let mut extra = TcpStream::connect(rs).await.unwrap();
    assert!(closed(&mut extra, Duration::from_millis(200)).await);
    // Once the idle ones time out, requests are served again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, s) = get(rs, "/stats").await;
    assert_eq!(status, 200);
    assert!(s["connections"]["refused"].as_u64().unwrap() >= 1, "{s}");
    drop(held);
    let _ = std::fs::remove_file(db);
}

/// Two servers A and B that trust each other, B served; returns (A, B, B's address).
async fn pair(name: &str) -> (Shared, Shared, Signer, SocketAddr) {
    let (ka, kb) = (common::key(720), common::key(721));
    let (sa, sb) = (Signer::from_cjdns(&ka), Signer::from_cjdns(&kb));
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = lb.local_addr().unwrap();
    let pa = Peer {
        key: sa.public(),
        addr: "127.0.0.1:9".parse().unwrap(),
    };
    let pb = Peer {
        key: sb.public(),
        addr: b_addr,
    };
    let a = app(
        &temp_db(&format!("{name}-a")),
        GossipSettings::new(Some(Signer::from_cjdns(&ka)), vec![pb]),
    );
    let b = app(
        &temp_db(&format!("{name}-b")),
        GossipSettings::new(Some(sb), vec![pa]),
    );
    let bs = Arc::clone(&b);
    tokio::spawn(async move { pktmesh_route_server::http::serve_http(bs, lb, short()).await });
    (a, b, sa, b_addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_is_authenticated_and_checked_like_the_api() {
    let (_a, b, sa, b_addr) = pair("auth").await;
    let b_key = b.gossip_key().unwrap();
    let post = |body: Vec<u8>| async move {
        http_request(b_addr, "POST", "/gossip", "application/octet-stream", &body)
            .await
            .unwrap()
    };
    let msg = serde_json::to_vec(&GossipMessage {
        ask: vec![],
        ..GossipMessage::default()
    })
    .unwrap();
    // `{}` unsigned: 401.
    assert_eq!(post(b"{}".to_vec()).await.0, 401);
    // Signed by a key B does not know: 403.
    let stranger = Signer::from_cjdns(&common::key(722));
    assert_eq!(
        post(envelope::seal(&stranger, &b_key, now_ms(), &msg))
            .await
            .0,
        403
    );
    // Signed by A but tampered: 401.
    let mut bad = envelope::seal(&sa, &b_key, now_ms(), b"{\"ask\":[]}");
    bad[envelope::HEADER_LEN] ^= 1;
    assert_eq!(post(bad).await.0, 401);
    // Signed by A for another server: 403.
    assert_eq!(
        post(envelope::seal(&sa, &stranger.public(), now_ms(), &msg))
            .await
            .0,
        403
    );
    // Signed by A, saying nothing (`{}`): 400.
    assert_eq!(
        post(envelope::seal(&sa, &b_key, now_ms(), b"{}")).await.0,
        400
    );
    // Signed by A, carrying an order for a link nobody offers: refused like the API.
    let buyer = Signer::from_cjdns(&common::key(723));
    let o = Order {
        node: common::key(1).public_key().address(),
        peer: common::key(2).public_key().address(),
        kbps: 10,
        start: UnixTime(now_ms() / 1000),
        end: UnixTime(now_ms() / 1000 + 60),
        buyer: buyer.public(),
        nonce: 0,
    }
    .emit_signed(&buyer);
    let carrying = GossipMessage {
        lease_frames: vec![HexBytes(o)],
        ..GossipMessage::default()
    };
    let body = serde_json::to_vec(&carrying).unwrap();
    let (status, _) = post(envelope::seal(&sa, &b_key, now_ms(), &body)).await;
    assert!(status == 200 || status == 204, "{status}");
    let (_, s) = get(b_addr, "/stats").await;
    assert_eq!(s["gossip"]["unauthenticated"], 2, "{s}");
    assert_eq!(s["gossip"]["forbidden"], 2, "{s}");
    assert_eq!(s["gossip"]["bad"], 1, "{s}");
    assert_eq!(s["gossip"]["items_refused"], 1, "{s}");
    assert_eq!(s["book"]["frames"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_sets_gossip_whole_across_pages() {
    let (a, b, _, b_addr) = pair("pages").await;
    // 2,000 nodes in a ring announce to A (about 2 MB of announcements, many pages).
    let n = 2000;
    let mut net = Net::new(n);
    for i in 0..n {
        net.link(i, (i + 1) % n);
    }
    let now = now_ms();
    let snode = pktmesh_crypto_auth::Address::from_bytes([0xfc; 16]);
    {
        let mut rs = a.graph_mut();
        for i in 0..n {
            let extra = net.capacity_entities(i, 100_000, 50_000);
            let ann = net.announcement_with(i, snode, now, true, Some(20), extra);
            rs.ingest(now, &ann, pktmesh_route_server::Origin::Node)
                .unwrap();
        }
    }
    let peer_b = Peer {
        key: b.gossip_key().unwrap(),
        addr: b_addr,
    };
    let sent = gossip_with(&a, &peer_b).await.unwrap();
    assert!(sent > 2, "took {sent} messages");
    assert_eq!(b.graph().graph().len(), n);
    assert_eq!(a.graph().graph().digest(), b.graph().graph().digest());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_stalls_neither_other_peers_nor_expiry() {
    // A peer that accepts the TCP connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            if let Ok((s, _)) = silent.accept().await {
                held.push(s);
            }
        }
    });
    let (kb, kc) = (common::key(730), common::key(731));
    let (sb, sc) = (Signer::from_cjdns(&kb), Signer::from_cjdns(&kc));
    let lc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c_addr = lc.local_addr().unwrap();
    let c = app(
        &temp_db("silent-c"),
        GossipSettings::new(
            Some(sc),
            vec![Peer {
                key: sb.public(),
                addr: "127.0.0.1:9".parse().unwrap(),
            }],
        ),
    );
    let cs = Arc::clone(&c);
    tokio::spawn(async move { pktmesh_route_server::http::serve_http(cs, lc, short()).await });
    let silent_peer = Peer {
        key: Signer::from_cjdns(&common::key(732)).public(),
        addr: silent_addr,
    };
    let c_peer = Peer {
        key: c.gossip_key().unwrap(),
        addr: c_addr,
    };
    // B gossips every 200 ms with the silent peer first and C, 300 ms per request.
    let mut settings =
        GossipSettings::new(Some(Signer::from_cjdns(&kb)), vec![silent_peer, c_peer]);
    settings.every = Duration::from_millis(200);
    settings.request_timeout = Duration::from_millis(300);
    let b_db = temp_db("silent-b");
    let b = app(&b_db, settings);
    // The exchange with the silent peer ends with a timeout, in bounded time.
    let t = Instant::now();
    match gossip_with(&b, &silent_peer).await {
        Err(GossipError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));

    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = lb.local_addr().unwrap();
    let bs = Arc::clone(&b);
    tokio::spawn(async move {
        serve(
            bs,
            lb,
            ServeConfig {
                limits: short(),
                expire_every: Duration::from_millis(100),
            },
        )
        .await
    });
    // B holds an order that ends in two seconds, on an offered link.
    let mut net = Net::new(2);
    net.link(0, 1);
    announce_all(b_addr, &net, 10_000, 10_000).await;
    let buyer = Signer::from_cjdns(&common::key(733));
    let end = now_ms() / 1000 + 2;
    let o = Order {
        node: net.nodes[0].address,
        peer: net.nodes[1].address,
        kbps: 10,
        start: UnixTime(end - 2),
        end: UnixTime(end),
        buyer: buyer.public(),
        nonce: 0,
    }
    .emit_signed(&buyer);
    let (status, _) = post_frame(b_addr, "/orders", &o).await;
    assert_eq!(status, 201);
    // C gets B's graph and order through gossip although the silent peer never answers.
    let mut synced = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if c.graph().graph().len() == 2 && c.book().len() == 1 {
            synced = true;
            break;
        }
    }
    assert!(synced, "C synced with B");
    // And the order expires on time at B.
    let mut expired = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, s): (u16, Value) = get(b_addr, "/stats").await;
        if s["book"]["frames"] == 0 {
            expired = s["book"]["pruned"] == 1;
            break;
        }
    }
    assert!(expired, "the order was pruned while the silent peer hung");
    let (_, s) = get(b_addr, "/stats").await;
    assert!(s["gossip"]["failures"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["gossip"]["exchanges"].as_u64().unwrap() >= 1, "{s}");
    let _ = std::fs::remove_file(b_db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_peer_is_an_error_not_a_silent_end() {
    // A peer that answers every request 413, as an over-full body would get.
    let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = refusing.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = refusing.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    let me = Signer::from_cjdns(&common::key(740));
    let peer = Peer {
        key: Signer::from_cjdns(&common::key(741)).public(),
        addr,
    };
    let a = app(
        &temp_db("refusing"),
        GossipSettings::new(Some(me), vec![peer]),
    );
    match gossip_with(&a, &peer).await {
        Err(GossipError::Status { status: 413, .. }) => {}
        other => panic!("expected a 413 error, got {other:?}"),
    }
}
