//! The HTTP/JSON driver (feature `server`): an axum router over the sans-IO core, the redb
//! store for durable state, the gossip timer and a minimal HTTP client for gossip.
//!
//! This is the only module that reads the clock, touches sockets or uses tokio. Every request
//! locks the core once, passes it the time and releases it; no lock is held across an await.
//!
//! # Durable state
//! Lease frames, orders and virtual networks are written to an embedded [redb] database, one
//! committed write transaction per accepted frame, before the request is answered. redb is
//! pure Rust, copy-on-write with checksummed, fsync'd commits, so after `kill -9` (or a power
//! cut) the file holds exactly the transactions that were committed; no write-ahead log to
//! replay by hand and no C library to build. Link state is ephemeral (nodes re-announce).
//!
//! # Limits
//! Request bodies above [`MAX_BODY`] bytes are refused with 413 before any handler runs.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_lease_engine::sign::SigningKey;
use pktmesh_lease_engine::wire::{Command, Message};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use redb::{Database, ReadableTable, TableDefinition};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::gossip::{self, GossipMessage};
use crate::graph::Origin;
use crate::leases::{LeaseBook, OfferRef};
use crate::server::RouteServer;

/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;

const FRAMES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("frames");

/// Errors of the driver's set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The database could not be opened or read.
    #[error("database: {0}")]
    Db(String),
}

fn db_err(e: impl std::fmt::Display) -> DriverError {
    DriverError::Db(e.to_string())
}

/// The core plus its durable store, shared by the handlers.
pub struct App {
    /// Graph, paths, queries.
    pub server: RouteServer,
    /// Leases, orders, networks.
    pub book: LeaseBook,
    db: Database,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("nodes", &self.server.graph().len())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Opens (or creates) the database at `path` and loads the lease book from it.
    pub fn open(server: RouteServer, path: &Path) -> Result<Self, DriverError> {
        let db = Database::create(path).map_err(db_err)?;
        let mut frames = Vec::new();
        {
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(FRAMES).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(FRAMES).map_err(db_err)?;
            for row in table.iter().map_err(db_err)? {
                let (_, v) = row.map_err(db_err)?;
                frames.push(v.value().to_vec());
            }
        }
        Ok(Self {
            server,
            book: LeaseBook::from_frames(frames),
            db,
        })
    }

    fn persist(&self, id: &[u8; 32], bytes: &[u8]) -> Result<(), DriverError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(FRAMES).map_err(db_err)?;
            t.insert(&id[..], bytes).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// Persists every frame of the book not yet in the database (after gossip).
    fn persist_all(&self) -> Result<(), DriverError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = tx.open_table(FRAMES).map_err(db_err)?;
            for (id, b) in self.book.frames() {
                if t.get(&id[..]).map_err(db_err)?.is_none() {
                    t.insert(&id[..], &b[..]).map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    fn offer(&self, from: &Address, to: &Address) -> Option<OfferRef> {
        let node = self.server.graph().node(from)?;
        let (num, _) = node.peer_by_ip(to)?;
        node.offers.get(&num).map(|o| OfferRef {
            kbps: o.kbps,
            max_seconds: o.max_seconds,
        })
    }
}

/// Shared state of the handlers.
pub type Shared = Arc<Mutex<App>>;

/// Milliseconds since the Unix epoch (the one place the server reads the wall clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, App> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The router.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/links", get(links))
        .route("/offers", get(offers))
        .route("/nodes", get(nodes))
        .route("/path", get(path))
        .route("/announce", post(announce))
        .route("/sq", post(supernode_query))
        .route("/leases", get(leases).post(post_frame))
        .route("/orders", get(orders).post(post_frame))
        .route("/orders/pending", get(pending_orders))
        .route("/frames", get(frames))
        .route("/networks", get(networks).post(post_frame))
        .route("/gossip", post(gossip_in))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn addr(a: &Address) -> String {
    a.to_string()
}

async fn links(State(s): State<Shared>) -> Json<Value> {
    let app = lock(&s);
    let links: Vec<Value> = app
        .server
        .graph()
        .links()
        .map(|l| {
            json!({
                "from": addr(&l.from), "to": addr(&l.to),
                "label": format!("{:#x}", l.label),
                "lag": l.metrics.lag, "drops_per_slot": l.metrics.drops_per_slot,
                "load_kbps": l.metrics.load_kbps, "value": l.metrics.value,
                "capacity_kbps": l.capacity.map(|c| c.capacity_kbps),
                "leased_kbps": l.capacity.map(|c| c.leased_kbps),
                "offer": l.offer.map(|o| json!({"kbps": o.kbps, "max_seconds": o.max_seconds,
                    "price_msat_per_mbit_hour": o.price_msat_per_mbit_hour})),
            })
        })
        .collect();
    Json(json!({ "links": links }))
}

async fn offers(State(s): State<Shared>) -> Json<Value> {
    let app = lock(&s);
    let offers: Vec<Value> = app
        .server
        .graph()
        .links()
        .filter_map(|l| {
            let o = l.offer?;
            Some(json!({"node": addr(&l.from), "peer": addr(&l.to), "kbps": o.kbps,
                "max_seconds": o.max_seconds, "price_msat_per_mbit_hour": o.price_msat_per_mbit_hour}))
        })
        .collect();
    Json(json!({ "offers": offers }))
}

async fn nodes(State(s): State<Shared>) -> Json<Value> {
    let app = lock(&s);
    let nodes: Vec<Value> = app
        .server
        .graph()
        .nodes()
        .map(|n| {
            json!({"address": addr(&n.address), "version": n.version,
                "announcements": n.announcements().count(), "peers": n.peers.len(),
                "state_hash": hex::encode(n.state_hash())})
        })
        .collect();
    Json(json!({ "nodes": nodes }))
}

/// Query of `GET /path`.
#[derive(Debug, Deserialize)]
struct PathQuery {
    from: String,
    to: String,
    /// Hex Ed25519 key whose active leases lower the cost of their links.
    owner: Option<String>,
}

async fn path(State(s): State<Shared>, Query(q): Query<PathQuery>) -> Response {
    let (Ok(from), Ok(to)) = (Address::parse(&q.from), Address::parse(&q.to)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "from and to must be fc00::/8 addresses",
        );
    };
    let owner = match q.owner.as_deref().map(hex::decode) {
        None => None,
        Some(Ok(b)) if b.len() == 32 => Some(SigningKey(b.try_into().unwrap_or([0; 32]))),
        Some(_) => return error(StatusCode::BAD_REQUEST, "owner must be 32 bytes of hex"),
    };
    let now = now_ms();
    let mut app = lock(&s);
    let leases = owner
        .map(|o| app.book.leased_links(&o, UnixTime(now / 1000)))
        .unwrap_or_default();
    match app.server.route(now, &from, &to, &leases) {
        Ok(r) => Json(json!({
            "label": r.label.to_string(),
            "hops": r.hops.iter().map(addr).collect::<Vec<_>>(),
            "cost": r.cost,
            "leased_links_used": r.hops.windows(2).filter(|w| leases.contains(&(w[0], w[1]))).count(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn announce(State(s): State<Shared>, body: Bytes) -> Response {
    let mut app = lock(&s);
    match app.server.ingest(now_ms(), &body, Origin::Node) {
        Ok(i) => Json(
            json!({"error": "none", "stateHash": hex::encode(i.state_hash),
            "new": i.new}),
        )
        .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.reply_code(), "detail": e.to_string()})),
        )
            .into_response(),
    }
}

async fn supernode_query(State(s): State<Shared>, body: Bytes) -> Response {
    let mut app = lock(&s);
    match app.server.handle_query(now_ms(), &body) {
        Some(reply) => reply.into_response(),
        None => error(StatusCode::BAD_REQUEST, "not a supernode query"),
    }
}

/// Body of the POST endpoints for signed frames.
#[derive(Debug, Deserialize)]
struct FrameBody {
    /// The signed frame, hex.
    frame: String,
}

async fn post_frame(State(s): State<Shared>, body: Bytes) -> Response {
    let Ok(FrameBody { frame }) = serde_json::from_slice::<FrameBody>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be {\"frame\": \"<hex>\"}",
        );
    };
    let Ok(bytes) = hex::decode(frame.trim()) else {
        return error(StatusCode::BAD_REQUEST, "frame is not hex");
    };
    let now = UnixTime(now_ms() / 1000);
    let mut app = lock(&s);
    let app = &mut *app;
    let result = {
        let offers = |a: &Address, b: &Address| app.offer(a, b);
        let mut book = app.book.clone();
        book.insert(now, &bytes, offers).map(|acc| (acc, book))
    };
    match result {
        Ok((acc, book)) => {
            if acc.new {
                if let Err(e) = app.persist(&acc.id, &bytes) {
                    return error(StatusCode::INTERNAL_SERVER_ERROR, e);
                }
                app.book = book;
            }
            (
                if acc.new {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                Json(json!({"id": hex::encode(acc.id), "new": acc.new})),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn leases(State(s): State<Shared>) -> Json<Value> {
    let app = lock(&s);
    let leases: Vec<Value> = app
        .book
        .leases()
        .map(|l| {
            json!({"id": l.lease.id.to_string(), "from": addr(&l.from), "to": addr(&l.to),
                "kbps": l.lease.kbps, "start": l.lease.start.0, "end": l.lease.end.0,
                "owner": hex::encode(l.owner.0), "network": l.network,
                "classes": [l.classes.0, l.classes.1], "released": l.released,
                "order": l.order.map(hex::encode)})
        })
        .collect();
    let vswitches: Vec<Value> = app
        .book
        .vswitches()
        .map(|v| {
            let l = &v.lease;
            json!({"id": l.id.to_string(), "node": addr(&v.node),
                "owner": hex::encode(v.owner.0), "start": l.start.0, "end": l.end.0,
                "ins": l.ins.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "outs": l.outs.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "network": v.network, "released": v.released})
        })
        .collect();
    Json(json!({ "leases": leases, "virtual_switches": vswitches }))
}

async fn orders(State(s): State<Shared>) -> Json<Value> {
    let app = lock(&s);
    let orders: Vec<Value> = app.book.orders().map(|(id, o)| order_json(id, o)).collect();
    Json(json!({ "orders": orders }))
}

fn order_json(id: &[u8; 32], o: &crate::leases::Order) -> Value {
    json!({"id": hex::encode(id), "node": addr(&o.node), "peer": addr(&o.peer), "kbps": o.kbps,
        "start": o.start.0, "end": o.end.0, "buyer": hex::encode(o.buyer.0)})
}

/// Query of `GET /orders/pending`.
#[derive(Debug, Deserialize)]
struct PendingQuery {
    node: String,
}

async fn pending_orders(State(s): State<Shared>, Query(q): Query<PendingQuery>) -> Response {
    let Ok(node) = Address::parse(&q.node) else {
        return error(StatusCode::BAD_REQUEST, "node must be an fc00::/8 address");
    };
    let app = lock(&s);
    let orders: Vec<Value> = app
        .book
        .pending_orders(&node)
        .iter()
        .map(|(id, o)| order_json(id, o))
        .collect();
    Json(json!({ "orders": orders })).into_response()
}

/// Query of `GET /frames`.
#[derive(Debug, Deserialize)]
struct FramesQuery {
    node: Option<String>,
}

/// The lease-engine frames of the book that concern `node`, in an order its `LeaseEngine`
/// can apply them in: bandwidth leases on links from or to the node, then virtual-switch leases
/// issued by it (each by lease id), then configuration of those by (target, sequence number).
///
/// Left out, because the engine would refuse them: frames of leases that are over at `now`,
/// configuration of leases that have not started yet (it is returned once they have), and
/// configuration the book holds after a lease's release (the node forgets a released lease).
fn frames_for(book: &LeaseBook, node: &Address, now: UnixTime) -> Vec<Vec<u8>> {
    let addr_of = |k: &SigningKey| k.cjdns_key().map(|k| k.address());
    let mut leases = Vec::new();
    let mut vswitches = Vec::new();
    let mut configs = Vec::new();
    for (_, bytes) in book.frames() {
        // Orders (0xB1) and networks (0xB2) are not lease-engine frames and do not parse here.
        let Ok((message, _)) = Message::parse(bytes) else {
            continue;
        };
        match message {
            Message::Lease(l) => {
                let concerns = addr_of(&l.node) == Some(*node)
                    || PublicKey::from_bytes(l.peer).address() == *node;
                if concerns && now < l.end {
                    leases.push((l.id, l.start, bytes));
                }
            }
            Message::VirtualSwitch(v) => {
                if addr_of(&v.node) == Some(*node) && now < v.end {
                    vswitches.push((v.id, v.start, bytes));
                }
            }
            Message::Config(c) => configs.push((c.target, c.seq, c.command, bytes)),
        }
    }
    leases.sort_by_key(|(id, _, _)| *id);
    vswitches.sort_by_key(|(id, _, _)| *id);
    let started: std::collections::BTreeMap<LeaseId, bool> = leases
        .iter()
        .chain(&vswitches)
        .map(|(id, start, _)| (*id, *start <= now))
        .collect();
    configs.retain(|(target, ..)| started.get(target) == Some(&true));
    configs.sort_by_key(|(target, seq, ..)| (*target, *seq));
    let mut out: Vec<Vec<u8>> = leases
        .into_iter()
        .chain(vswitches)
        .map(|(_, _, b)| b.clone())
        .collect();
    let mut released: Option<LeaseId> = None;
    for (target, _, command, bytes) in configs {
        if released == Some(target) {
            continue;
        }
        if command == Command::Release {
            released = Some(target);
        }
        out.push(bytes.clone());
    }
    out
}

async fn frames(State(s): State<Shared>, Query(q): Query<FramesQuery>) -> Response {
    let Some(Ok(node)) = q.node.as_deref().map(Address::parse) else {
        return error(StatusCode::BAD_REQUEST, "node must be an fc00::/8 address");
    };
    let now = UnixTime(now_ms() / 1000);
    let app = lock(&s);
    let frames: Vec<String> = frames_for(&app.book, &node, now)
        .iter()
        .map(hex::encode)
        .collect();
    Json(json!({ "frames": frames })).into_response()
}

async fn networks(State(s): State<Shared>) -> Json<Value> {
    let app = lock(&s);
    let nets: Vec<Value> = app
        .book
        .networks()
        .map(|n| {
            json!({"id": n.id, "owner": hex::encode(n.owner.0), "seq": n.seq,
                "leases": n.leases.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "virtual_switches": n.vswitches.iter().map(|i| i.to_string()).collect::<Vec<_>>()})
        })
        .collect();
    Json(json!({ "networks": nets }))
}

async fn gossip_in(State(s): State<Shared>, body: Bytes) -> Response {
    let Ok(msg) = serde_json::from_slice::<GossipMessage>(&body) else {
        return error(StatusCode::BAD_REQUEST, "not a gossip message");
    };
    let mut app = lock(&s);
    let app = &mut *app;
    let reply = gossip::handle(now_ms(), app.server.graph_mut(), &mut app.book, &msg);
    if let Err(e) = app.persist_all() {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    match reply {
        Some(r) => Json(r).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

/// A bare HTTP/1.1 request (enough for gossip and tests; no TLS, no chunked bodies).
/// Returns the status and the body.
pub async fn http_request(
    to: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(to).await?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, out[split + 4..].to_vec()))
}

/// One gossip exchange initiated with the server at `peer` (bounded to 8 messages).
pub async fn gossip_with(state: &Shared, peer: SocketAddr) -> std::io::Result<()> {
    let mut msg = {
        let app = lock(state);
        gossip::summary(app.server.graph(), &app.book)
    };
    for _ in 0..4 {
        let body = serde_json::to_vec(&msg).map_err(std::io::Error::other)?;
        let (status, reply) =
            http_request(peer, "POST", "/gossip", "application/json", &body).await?;
        if status != 200 {
            return Ok(());
        }
        let reply: GossipMessage = serde_json::from_slice(&reply).map_err(std::io::Error::other)?;
        let mut app = lock(state);
        let app = &mut *app;
        let next = gossip::handle(now_ms(), app.server.graph_mut(), &mut app.book, &reply);
        app.persist_all().map_err(std::io::Error::other)?;
        match next {
            Some(m) => msg = m,
            None => return Ok(()),
        }
    }
    Ok(())
}

/// Serves `state` on `listener` until the future is dropped, gossiping with `peers` every
/// `gossip_every` and expiring old announcements.
pub async fn serve(
    state: Shared,
    listener: tokio::net::TcpListener,
    peers: Vec<SocketAddr>,
    gossip_every: Duration,
) -> std::io::Result<()> {
    let timer_state = Arc::clone(&state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(gossip_every);
        loop {
            tick.tick().await;
            lock(&timer_state).server.handle_timeout(now_ms());
            for p in &peers {
                if let Err(e) = gossip_with(&timer_state, *p).await {
                    tracing::debug!("gossip with {p}: {e}");
                }
            }
        }
    });
    axum::serve(listener, router(state)).await
}

/// The OpenAPI 3.0 document of the API.
pub const OPENAPI: &str = include_str!("openapi.json");
