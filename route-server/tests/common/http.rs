//! HTTP helpers for the tests that serve the API in process (feature `server`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pktmesh_crypto_auth::Address;
use pktmesh_route_server::http::{
    http_request, now_ms, serve_http, App, GossipSettings, HttpLimits, Shared,
};
use pktmesh_route_server::{Config, CostModel, RouteServer};
use serde_json::{json, Value};

use super::Net;

/// A fresh database path under the temp dir.
pub fn temp_db(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "pktmesh-rs-{name}-{}-{}.redb",
        std::process::id(),
        now_ms()
    ));
    let _ = std::fs::remove_file(&p);
    p
}

/// A route server over `db` with gossip settings.
pub fn app(db: &Path, gossip: GossipSettings) -> Shared {
    let server = RouteServer::new(Config::default(), CostModel::default());
    Arc::new(App::open_with(server, db, gossip).unwrap())
}

/// Serves `app` on 127.0.0.1 (a free port) under `limits`, in the current tokio runtime.
pub async fn serve_app(app: Shared, limits: HttpLimits) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { serve_http(app, listener, limits).await });
    addr
}

/// Serves the API over `db` on 127.0.0.1 (a free port), in the current tokio runtime.
pub async fn start(db: &Path) -> SocketAddr {
    serve_app(app(db, GossipSettings::default()), HttpLimits::default()).await
}

/// `GET path`: status and JSON body (null if not JSON).
pub async fn get(to: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = http_request(to, "GET", path, "application/json", b"")
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// `POST path` with a signed frame: status and JSON reply.
pub async fn post_frame(to: SocketAddr, path: &str, frame: &[u8]) -> (u16, Value) {
    let body = serde_json::to_vec(&json!({ "frame": hex::encode(frame) })).unwrap();
    let (status, reply) = http_request(to, "POST", path, "application/json", &body)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&reply).unwrap_or(Value::Null),
    )
}

/// Every node of `net` announces its links to `rs` with capacities and offers.
pub async fn announce_all(rs: SocketAddr, net: &Net, capacity: u32, offer: u32) {
    let now = now_ms();
    let snode = Address::from_bytes([0xfc; 16]);
    for i in 0..net.nodes.len() {
        let extra = net.capacity_entities(i, capacity, offer);
        let ann = net.announcement_with(i, snode, now, true, Some(40), extra);
        let (status, body) =
            http_request(rs, "POST", "/announce", "application/octet-stream", &ann)
                .await
                .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
}
