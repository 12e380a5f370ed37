//! The HTTP API's handlers (`docs/route-server.md`, `openapi.json`): each one parses its input,
//! locks the core briefly with the time as an argument, and answers JSON.
//!
//! Lists that grow with the book are paged: `?limit=` (default [`DEFAULT_PAGE`], at most
//! [`MAX_PAGE`]) and `?after=<cursor>` with the `next` cursor of the previous page (`null` on
//! the last one).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::SigningKey;
use pktmesh_lease_engine::{LeaseId, UnixTime};
use serde::Deserialize;
use serde_json::{json, Value};
use tower_http::timeout::TimeoutLayer;

use super::{now_ms, Counters, HttpLimits, Shared, MAX_BODY};
use crate::gossip::{self, OpenError, MAX_GOSSIP_BODY};
use crate::graph::Origin;
use crate::leases::{BookError, Conflict, Holder, ItemId, LeaseKey, OrderState, PostError};

/// Default page size.
pub const DEFAULT_PAGE: usize = 100;
/// Largest page size.
pub const MAX_PAGE: usize = 1000;

/// The OpenAPI 3.0 document of the API.
pub const OPENAPI: &str = include_str!("../openapi.json");

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

/// The router, with the request timeout and body limits of `limits`.
pub fn router(state: Shared, limits: HttpLimits) -> Router {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/links", get(links))
        .route("/offers", get(offers))
        .route("/nodes", get(nodes))
        .route("/path", get(path))
        .route("/stats", get(stats))
        .route("/announce", post(announce))
        .route("/sq", post(supernode_query))
        .route("/leases", get(leases).post(post_frame))
        .route("/orders", get(orders).post(post_frame))
        .route("/orders/pending", get(pending_orders))
        .route("/frames", get(frames))
        .route("/networks", get(networks).post(post_frame))
        .route(
            "/gossip",
            post(gossip_in).layer(DefaultBodyLimit::max(MAX_GOSSIP_BODY + 4096)),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn addr(a: &Address) -> String {
    a.to_string()
}

async fn links(State(s): State<Shared>) -> Json<Value> {
    let rs = s.graph();
    let links: Vec<Value> = rs
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
    let rs = s.graph();
    let offers: Vec<Value> = rs
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
    let rs = s.graph();
    let nodes: Vec<Value> = rs
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

async fn stats(State(s): State<Shared>) -> Json<Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let b = s.book().stats();
    let c = &s.counters;
    let (frames, nodes, anns) = {
        let rs = s.graph();
        (
            s.book().len(),
            rs.graph().len(),
            rs.graph().announcement_count(),
        )
    };
    Json(json!({
        "book": {"frames": frames, "accepted": b.accepted, "over_capacity": b.over_capacity,
            "limited": b.limited, "refused": b.refused, "pruned": b.pruned, "evicted": b.evicted},
        "graph": {"nodes": nodes, "announcements": anns,
            "announcements_refused": c.announcements_refused.load(Relaxed)},
        "connections": {"accepted": c.connections_accepted.load(Relaxed),
            "refused": c.connections_refused.load(Relaxed)},
        "gossip": {"unauthenticated": c.gossip_unauthenticated.load(Relaxed),
            "forbidden": c.gossip_forbidden.load(Relaxed), "bad": c.gossip_bad.load(Relaxed),
            "items_refused": c.gossip_items_refused.load(Relaxed),
            "exchanges": c.gossip_exchanges.load(Relaxed),
            "failures": c.gossip_failures.load(Relaxed)},
    }))
}

/// Query of `GET /path`.
#[derive(Debug, Deserialize)]
struct PathQuery {
    from: String,
    to: String,
    /// Hex Ed25519 key whose active leases lower the cost of their links.
    owner: Option<String>,
}

fn parse_key(text: &str) -> Option<SigningKey> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(SigningKey)
}

async fn path(State(s): State<Shared>, Query(q): Query<PathQuery>) -> Response {
    let (Ok(from), Ok(to)) = (Address::parse(&q.from), Address::parse(&q.to)) else {
        return error(
            StatusCode::BAD_REQUEST,
            "from and to must be fc00::/8 addresses",
        );
    };
    let owner = match q.owner.as_deref().map(parse_key) {
        None => None,
        Some(Some(k)) => Some(k),
        Some(None) => return error(StatusCode::BAD_REQUEST, "owner must be 32 bytes of hex"),
    };
    let now = now_ms();
    let leases = owner
        .map(|o| s.book().leased_links(&o, UnixTime(now / 1000)))
        .unwrap_or_default();
    // The snapshot is refreshed under the write lock (cheap unless a rebuild is due); the
    // search runs outside any lock with a pooled finder.
    let topo = Arc::clone(s.graph_mut().topology(now));
    let mut finder = {
        let mut pool = s.finders.lock().unwrap_or_else(|p| p.into_inner());
        pool.pop()
    }
    .unwrap_or_else(|| crate::path::PathFinder::new(Arc::clone(&topo)));
    if !Arc::ptr_eq(finder.topology(), &topo) {
        finder.set_topology(topo);
    }
    let result = finder.route(&from, &to, &leases);
    s.finders
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(finder);
    match result {
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
    let result = s.graph_mut().ingest(now_ms(), &body, Origin::Node);
    match result {
        Ok(i) => Json(
            json!({"error": "none", "stateHash": hex::encode(i.state_hash),
            "new": i.new}),
        )
        .into_response(),
        Err(e) => {
            Counters::bump(&s.counters.announcements_refused);
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.reply_code(), "detail": e.to_string()})),
            )
                .into_response()
        }
    }
}

async fn supernode_query(State(s): State<Shared>, body: Bytes) -> Response {
    let reply = s.graph_mut().handle_query(now_ms(), &body);
    match reply {
        Some(reply) => reply.into_response(),
        None => error(StatusCode::BAD_REQUEST, "not a supernode query"),
    }
}

fn conflict_json(c: &Conflict) -> Value {
    let mut v = match c.holder {
        Holder::Lease((issuer, id)) => {
            json!({"kind": "lease", "issuer": hex::encode(issuer.0), "id": id.to_string()})
        }
        Holder::Order(id) => json!({"kind": "order", "id": hex::encode(id)}),
    };
    v["kbps"] = json!(c.kbps);
    v["start"] = json!(c.start.0);
    v["end"] = json!(c.end.0);
    v
}

fn book_error(e: &BookError) -> Response {
    match e {
        BookError::OverCapacity {
            capacity_kbps,
            conflicts,
            ..
        } => (
            StatusCode::CONFLICT,
            Json(
                json!({"error": e.to_string(), "capacity_kbps": capacity_kbps,
                "conflicts": conflicts.iter().map(conflict_json).collect::<Vec<_>>()}),
            ),
        )
            .into_response(),
        BookError::Limit { .. } => error(StatusCode::TOO_MANY_REQUESTS, e),
        _ => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn post_frame(State(s): State<Shared>, body: Bytes) -> Response {
    // The body and the signature are checked before any lock.
    let verified = match crate::leases::verify_post(&body) {
        Ok(v) => v,
        Err(PostError::Frame(e)) => return book_error(&e),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let now = UnixTime(now_ms() / 1000);
    let (result, committed) = {
        let rs = s.graph();
        let mut book = s.book_mut();
        let result = book.insert_verified(now, verified, rs.graph());
        let committed = s.persist(&mut book);
        (result, committed)
    };
    match result {
        Ok(acc) => {
            if let Err(e) = committed.await {
                return error(StatusCode::INTERNAL_SERVER_ERROR, e);
            }
            let status = if acc.new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (
                status,
                Json(json!({"id": hex::encode(acc.id), "new": acc.new})),
            )
                .into_response()
        }
        Err(e) => book_error(&e),
    }
}

/// `?after=&limit=` of the paged lists.
#[derive(Debug, Deserialize)]
struct Page {
    after: Option<String>,
    limit: Option<usize>,
    /// `/orders?id=`: one order.
    id: Option<String>,
    /// `/orders/pending?node=`.
    node: Option<String>,
    /// `/orders?buyer=`: one buyer's orders.
    buyer: Option<String>,
}

impl Page {
    fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
    }
}

fn lease_cursor(k: &LeaseKey) -> String {
    format!("{}:{}", hex::encode(k.0 .0), k.1)
}

fn parse_lease_cursor(text: &str) -> Option<LeaseKey> {
    let (issuer, id) = text.split_once(':')?;
    let id = hex::decode(id)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())?;
    Some((parse_key(issuer)?, LeaseId(id)))
}

fn parse_item(text: &str) -> Option<ItemId> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
}

async fn leases(State(s): State<Shared>, Query(q): Query<Page>) -> Response {
    let after = match q.after.as_deref().map(parse_lease_cursor) {
        None => None,
        Some(Some(k)) => Some(k),
        Some(None) => return error(StatusCode::BAD_REQUEST, "after must be ISSUER:ID in hex"),
    };
    let book = s.book();
    let (ls, vs, next) = book.leases_page(after, q.limit());
    let leases: Vec<Value> = ls
        .iter()
        .map(|l| {
            json!({"id": l.lease.id.to_string(), "issuer": hex::encode(l.lease.node.0),
                "from": addr(&l.from), "to": addr(&l.to),
                "kbps": l.lease.kbps, "start": l.lease.start.0, "end": l.lease.end.0,
                "owner": hex::encode(l.owner.0), "network": l.network,
                "classes": [l.classes.0, l.classes.1], "released": l.released,
                "order": l.order.map(hex::encode)})
        })
        .collect();
    let vswitches: Vec<Value> = vs
        .iter()
        .map(|v| {
            let l = &v.lease;
            json!({"id": l.id.to_string(), "issuer": hex::encode(l.node.0), "node": addr(&v.node),
                "owner": hex::encode(v.owner.0), "start": l.start.0, "end": l.end.0,
                "ins": l.ins.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "outs": l.outs.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "network": v.network, "released": v.released})
        })
        .collect();
    Json(json!({ "leases": leases, "virtual_switches": vswitches,
        "next": next.as_ref().map(lease_cursor) }))
    .into_response()
}

fn order_json(id: &ItemId, o: &OrderState) -> Value {
    let ord = &o.order;
    json!({"id": hex::encode(id), "node": addr(&ord.node), "peer": addr(&ord.peer),
        "kbps": ord.kbps, "start": ord.start.0, "end": ord.end.0,
        "buyer": hex::encode(ord.buyer.0),
        "matched": o.matched.map(|(issuer, id)| json!({"issuer": hex::encode(issuer.0),
            "id": id.to_string()}))})
}

async fn orders(State(s): State<Shared>, Query(q): Query<Page>) -> Response {
    let book = s.book();
    if let Some(id) = &q.id {
        let Some(id) = parse_item(id) else {
            return error(StatusCode::BAD_REQUEST, "id must be 64 hex digits");
        };
        let orders: Vec<Value> = book
            .order(&id)
            .map(|o| order_json(&id, o))
            .into_iter()
            .collect();
        return Json(json!({ "orders": orders, "next": null })).into_response();
    }
    let after = match q.after.as_deref().map(parse_item) {
        None => None,
        Some(Some(a)) => Some(a),
        Some(None) => return error(StatusCode::BAD_REQUEST, "after must be 64 hex digits"),
    };
    let (page, next) = match q.buyer.as_deref().map(parse_key) {
        None => book.orders_page(after, q.limit()),
        Some(Some(buyer)) => book.orders_of(&buyer, after, q.limit()),
        Some(None) => return error(StatusCode::BAD_REQUEST, "buyer must be 64 hex digits"),
    };
    let orders: Vec<Value> = page.iter().map(|(id, o)| order_json(id, o)).collect();
    Json(json!({ "orders": orders, "next": next.map(hex::encode) })).into_response()
}

async fn pending_orders(State(s): State<Shared>, Query(q): Query<Page>) -> Response {
    let Some(Ok(node)) = q.node.as_deref().map(Address::parse) else {
        return error(StatusCode::BAD_REQUEST, "node must be an fc00::/8 address");
    };
    let after = q.after.as_deref().and_then(parse_item);
    let now = UnixTime(now_ms() / 1000);
    let limit = q.limit();
    let book = s.book();
    let page = book.pending_orders(&node, now, after, limit);
    let next = (page.len() == limit)
        .then(|| page.last().map(|(id, _)| hex::encode(id)))
        .flatten();
    let orders: Vec<Value> = page
        .iter()
        .map(|(id, o)| {
            order_json(
                id,
                &OrderState {
                    order: *o,
                    matched: None,
                },
            )
        })
        .collect();
    Json(json!({ "orders": orders, "next": next })).into_response()
}

/// Query of `GET /frames`.
#[derive(Debug, Deserialize)]
struct FramesQuery {
    node: Option<String>,
}

async fn frames(State(s): State<Shared>, Query(q): Query<FramesQuery>) -> Response {
    let Some(Ok(node)) = q.node.as_deref().map(Address::parse) else {
        return error(StatusCode::BAD_REQUEST, "node must be an fc00::/8 address");
    };
    let now = UnixTime(now_ms() / 1000);
    let frames = s.book().frames_for(&node, now);
    let frames: Vec<String> = frames.iter().map(hex::encode).collect();
    Json(json!({ "frames": frames })).into_response()
}

async fn networks(State(s): State<Shared>) -> Json<Value> {
    let book = s.book();
    let nets: Vec<Value> = book
        .networks()
        .map(|n| {
            json!({"id": n.id, "owner": hex::encode(n.owner.0), "seq": n.seq,
                "leases": n.leases.iter().map(|i| i.to_string()).collect::<Vec<_>>(),
                "virtual_switches": n.vswitches.iter().map(|i| i.to_string()).collect::<Vec<_>>()})
        })
        .collect();
    Json(json!({ "networks": nets }))
}

/// `POST /gossip`: a signed envelope ([`envelope`]) from a configured peer; the answer is the
/// next message sealed to it (200, `application/octet-stream`), or 204.
async fn gossip_in(State(s): State<Shared>, body: Bytes) -> Response {
    let c = &s.counters;
    let Some(signer) = s.gossip.signer.as_ref() else {
        Counters::bump(&c.gossip_forbidden);
        return error(StatusCode::FORBIDDEN, "this server has no gossip key");
    };
    let peers: Vec<SigningKey> = s.gossip.peers.iter().map(|p| p.key).collect();
    let now = now_ms();
    let (from, msg) = match gossip::open_message(&body, &signer.public(), &peers, now) {
        Ok((from, m)) if !m.is_empty() => (from, m),
        Err(OpenError::Envelope(e)) if e.is_unauthenticated() => {
            Counters::bump(&c.gossip_unauthenticated);
            return error(StatusCode::UNAUTHORIZED, e);
        }
        Err(OpenError::Envelope(e)) => {
            Counters::bump(&c.gossip_forbidden);
            return error(StatusCode::FORBIDDEN, e);
        }
        _ => {
            Counters::bump(&c.gossip_bad);
            return error(StatusCode::BAD_REQUEST, "not a gossip message");
        }
    };
    let (reply, report, committed) = {
        let mut rs = s.graph_mut();
        let mut book = s.book_mut();
        let (reply, report) = gossip::handle(now, rs.graph_mut(), &mut book, &msg);
        (reply, report, s.persist(&mut book))
    };
    let refused = (report.anns_refused + report.frames_refused) as u64;
    c.gossip_items_refused
        .fetch_add(refused, std::sync::atomic::Ordering::Relaxed);
    if let Err(e) = committed.await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e);
    }
    match reply.map(|r| gossip::seal_message(signer, &from, now_ms(), &r)) {
        Some(Ok(sealed)) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], sealed).into_response()
        }
        Some(Err(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode the reply"),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}
