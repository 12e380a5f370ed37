//! HTTP helpers for the tests that serve the API in process (feature `server`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pktmesh_route_server::http::{http_request, now_ms, router, App};
use pktmesh_route_server::{Config, CostModel, RouteServer};
use serde_json::{json, Value};

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

/// Serves the API over `db` on 127.0.0.1 (a free port), in the current tokio runtime.
pub async fn start(db: &Path) -> SocketAddr {
    let server = RouteServer::new(Config::default(), CostModel::default());
    let app = Arc::new(Mutex::new(App::open(server, db).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(app)).await });
    addr
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
