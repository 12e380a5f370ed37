//! Load tests of the HTTP server on 127.0.0.1 (figures in `docs/perf.md`). Too slow and too
//! timing-sensitive for CI on a shared machine, so `#[ignore]`d; run them by hand, one at a
//! time, at low priority and with enough file descriptors:
//!
//! ```text
//! ulimit -n 20000
//! nice -n 19 cargo test --release -p pktmesh-route-server --test load -- --ignored --nocapture --test-threads 1
//! ```
//!
//! Each run is bounded (fixed request counts, fixed socket counts) and talks to 127.0.0.1 only.
#![cfg(feature = "server")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http::{announce_all, app, temp_db};
use common::Net;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Lease, Message};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_route_server::http::{
    http_request, now_ms, serve_http, GossipSettings, HttpLimits, Shared,
};
// (`http_request` opens a connection per request; the load clients keep theirs alive.)
use pktmesh_route_server::leases::Order;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Serves `state` on its own two-thread runtime (as the binary does), apart from the clients.
fn serve_apart(state: Shared, limits: HttpLimits) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            serve_http(state, listener, limits).await
        })
        .unwrap();
    });
    rx.recv().unwrap()
}

fn percentiles(name: &str, mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let at = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let (p50, p99) = (at(0.50), at(0.99));
    println!(
        "{name}: n = {}, p50 {p50:?}, p99 {p99:?}, max {:?}",
        times.len(),
        times[times.len() - 1]
    );
    (p50, p99)
}

/// One keep-alive HTTP/1.1 request on `s`: status and body (Content-Length bodies only).
async fn request(s: &mut TcpStream, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed mid-answer");
                buf.extend_from_slice(&chunk[..n]);
            }
            return (status, buf[end + 4..end + 4 + len].to_vec());
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Runs `total` requests made by `make(i)` from `clients` concurrent clients, each on its own
/// keep-alive connection, each starting a request every `every` (or back to back when
/// `None`); returns the latency of each and the wall time.
async fn hammer<F>(
    rs: SocketAddr,
    clients: usize,
    total: usize,
    every: Option<Duration>,
    make: F,
) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> (String, String, Vec<u8>, u16) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let make = Arc::clone(&make);
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(rs).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut times = Vec::new();
            // Staggered, so that paced clients do not all fire at once.
            let mut tick = every.map(|e| {
                let first = tokio::time::Instant::now() + e * c as u32 / clients as u32;
                tokio::time::interval_at(first, e)
            });
            let mut i = c;
            while i < total {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let (method, path, body, want) = make(i);
                let t = Instant::now();
                let (status, reply) = request(&mut s, &method, &path, &body).await;
                times.push(t.elapsed());
                assert_eq!(status, want, "{}", String::from_utf8_lossy(&reply));
                i += clients;
            }
            times
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test: run by hand (see the module docs)"]
async fn orders_and_frames_with_100k_frames_in_the_book() {
    let db = temp_db("load");
    let state = app(&db, GossipSettings::default());
    let rs = serve_apart(Arc::clone(&state), HttpLimits::default());
    // 1,000 nodes in a ring, every link 1 Gbit/s, offered in leases up to 1 Mbit/s.
    let n = 1000;
    let mut net = Net::new(n);
    for i in 0..n {
        net.link(i, (i + 1) % n);
    }
    let t0 = Instant::now();
    announce_all(rs, &net, 1_000_000, 1000).await;
    // 100,000 leases: 100 on each forward link.
    let owner = Signer::from_cjdns(&common::key(5000));
    let now = now_ms() / 1000;
    let signers: Vec<Signer> = net
        .nodes
        .iter()
        .map(|s| Signer::from_cjdns(&s.key))
        .collect();
    let committed = {
        let rs_lock = state.graph();
        let mut book = state.book_mut();
        for k in 0..100_000usize {
            let from = k % n;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(k as u64).to_be_bytes());
            let f = Message::Lease(Lease {
                id: LeaseId(id),
                node: signers[from].public(),
                peer: *net.nodes[(from + 1) % n].key.public_key().as_bytes(),
                kbps: 1000,
                start: UnixTime(now),
                end: UnixTime(now + 3600 + (k % 600) as u64),
                owner: owner.public(),
            })
            .emit_signed(&signers[from])
            .unwrap();
            book.insert(UnixTime(now), &f, rs_lock.graph()).unwrap();
        }
        state.persist(&mut book)
    };
    // The 100,000 frames are committed before the clock starts.
    committed.await.unwrap();
    assert_eq!(state.book().len(), 100_000);
    println!("set-up (1,000 nodes, 100,000 leases): {:?}", t0.elapsed());

    // 50 clients: 2,000 orders (distinct buyers and nonces, on every link).
    let buyers: Arc<Vec<Signer>> = Arc::new(
        (0..50u32)
            .map(|i| Signer::from_cjdns(&common::key(6000 + i)))
            .collect(),
    );
    let net = Arc::new(net);
    let orders: Vec<Vec<u8>> = (0..2000usize)
        .map(|i| {
            let buyer = &buyers[i % 50];
            let from = (i * 7) % n;
            Order {
                node: net.nodes[from].address,
                peer: net.nodes[(from + 1) % n].address,
                kbps: 100,
                start: UnixTime(now + 60),
                end: UnixTime(now + 660),
                buyer: buyer.public(),
                nonce: i as u64,
            }
            .emit_signed(buyer)
        })
        .collect();
    let orders = Arc::new(orders);
    let order_request = move |i: usize| {
        let body =
            serde_json::to_vec(&serde_json::json!({"frame": hex::encode(&orders[i])})).unwrap();
        ("POST".to_owned(), "/orders".to_owned(), body, 201)
    };
    let order_request = Arc::new(order_request);
    // Paced: 50 clients, one order each every 100 ms (500 orders/s).
    let paced = Arc::clone(&order_request);
    let (times, wall) = hammer(rs, 50, 1000, Some(Duration::from_millis(100)), move |i| {
        paced(i)
    })
    .await;
    println!(
        "  {:.0} requests/s",
        times.len() as f64 / wall.as_secs_f64()
    );
    let (_, orders_p99) = percentiles("POST /orders, 50 clients at 10/s each", times);
    // Saturated: 50 clients back to back.
    let (times, wall) = hammer(rs, 50, 1000, None, move |i| order_request(1000 + i)).await;
    println!(
        "  {:.0} requests/s",
        times.len() as f64 / wall.as_secs_f64()
    );
    percentiles("POST /orders, 50 clients back to back", times);

    let addrs: Arc<Vec<String>> =
        Arc::new(net.nodes.iter().map(|s| s.address.to_string()).collect());
    let frames_request = move |i: usize| {
        (
            "GET".to_owned(),
            format!("/frames?node={}", addrs[(i * 13) % addrs.len()]),
            Vec::new(),
            200,
        )
    };
    let frames_request = Arc::new(frames_request);
    // Paced: every one of 1,000 nodes polling once a second is 1,000 requests/s; 50 clients at
    // 20/s each.
    let paced = Arc::clone(&frames_request);
    let (times, wall) = hammer(rs, 50, 5000, Some(Duration::from_millis(50)), move |i| {
        paced(i)
    })
    .await;
    println!(
        "  {:.0} requests/s",
        times.len() as f64 / wall.as_secs_f64()
    );
    let (_, frames_p99) = percentiles("GET /frames?node=, 50 clients at 20/s each", times);
    let (times, wall) = hammer(rs, 50, 5000, None, move |i| frames_request(i)).await;
    println!(
        "  {:.0} requests/s",
        times.len() as f64 / wall.as_secs_f64()
    );
    percentiles("GET /frames?node=, 50 clients back to back", times);
    assert!(
        orders_p99 <= Duration::from_millis(5),
        "POST /orders p99 {orders_p99:?}"
    );
    assert!(
        frames_p99 <= Duration::from_millis(2),
        "GET /frames p99 {frames_p99:?}"
    );
    let _ = std::fs::remove_file(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test: run by hand (see the module docs)"]
async fn idle_sockets_and_slowloris_do_not_delay_normal_requests() {
    let db = temp_db("loris");
    let limits = HttpLimits {
        header_read_timeout: Duration::from_secs(3),
        ..HttpLimits::default()
    };
    let rs = serve_apart(app(&db, GossipSettings::default()), limits);
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(rs).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut s = TcpStream::connect(rs).await.unwrap();
        s.write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let opened = Instant::now();
    // Normal requests while they hang on, and the slowloris ones trickle a byte each round.
    let mut times = Vec::new();
    for round in 0..20 {
        for s in slow.iter_mut() {
            let _ = s.write_all(&[b'a' + (round % 26) as u8]).await;
        }
        let t = Instant::now();
        let (status, _) = http_request(rs, "GET", "/nodes", "application/json", b"")
            .await
            .unwrap();
        times.push(t.elapsed());
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, p99) = percentiles(
        "GET /nodes beside 2,000 idle + 500 slowloris",
        times.clone(),
    );
    let worst = *times.iter().max().unwrap();
    // After the header-read timeout every one of the 2,500 is closed by the server.
    tokio::time::sleep(
        limits
            .header_read_timeout
            .saturating_sub(opened.elapsed())
            .saturating_add(Duration::from_millis(500)),
    )
    .await;
    let mut n_closed = 0;
    let mut buf = [0u8; 256];
    for s in idle.iter_mut().chain(slow.iter_mut()) {
        use tokio::io::AsyncReadExt;
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            n_closed += 1;
        }
    }
    println!("closed by the server after the timeout: {n_closed} of 2500");
    assert_eq!(n_closed, 2500);
    assert!(
        worst <= Duration::from_millis(100),
        "worst {worst:?}, p99 {p99:?}"
    );
    let _ = std::fs::remove_file(db);
}
