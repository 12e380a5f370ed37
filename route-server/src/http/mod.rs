//! The HTTP/JSON driver (feature `server`): the accept loop, the axum router over the sans-IO
//! core, the redb store, gossip with other route servers and the timers.
//!
//! This is the only module that reads the clock, touches sockets or uses tokio.
//!
//! # Locks
//! The graph (with its path snapshot) and the lease book each sit behind a
//! [`std::sync::RwLock`]; readers share them, and no lock is held across an await or during
//! signature checks (frames are verified before the book is locked; path queries clone the
//! snapshot's `Arc` and search outside the lock). Writers hold the book's lock for one O(log n)
//! insertion. Lock order: graph, then book.
//!
//! # Connections
//! [`serve_http`] accepts connections itself (hyper-util's tokio glue under hyper's HTTP/1
//! builder, with axum as the service) because `axum::serve` exposes no header-read timeout:
//! - at most [`HttpLimits::max_connections`] connections are open; beyond that a new one is
//!   closed at once (and counted);
//! - hyper's header-read timeout ([`HttpLimits::header_read_timeout`]) starts whenever the
//!   server waits for a request head, so it closes slowloris connections and idle keep-alive
//!   connections alike;
//! - tower-http's `TimeoutLayer` answers 408 to a request (body read included) that takes
//!   longer than [`HttpLimits::request_timeout`].
//!
//! # Cancel safety
//! A handler dropped by the timeout may have changed the book already; its frame is then
//! queued for the store all the same (the change is sent under the lock), only the answer is
//! lost.
//!
//! # Limits
//! Request bodies above [`MAX_BODY`] bytes (gossip: [`crate::gossip::MAX_GOSSIP_BODY`]) are
//! refused with 413 before any handler runs.

mod api;
mod peers;
mod store;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use pktmesh_lease_engine::sign::{Signer, SigningKey};
use pktmesh_lease_engine::UnixTime;

use crate::leases::LeaseBook;
use crate::path::PathFinder;
use crate::server::RouteServer;

pub use api::{router, DEFAULT_PAGE, MAX_PAGE, OPENAPI};
pub use peers::{gossip_with, http_request, http_request_timeout, GossipError, Peer};

/// Largest request body accepted on the public endpoints.
pub const MAX_BODY: usize = 64 * 1024;

/// Errors of the driver's set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The database could not be opened or read.
    #[error("database: {0}")]
    Db(String),
}

/// Connection limits of [`serve_http`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest wait for a request head (from connect, or from the previous response on a
    /// keep-alive connection); then the connection is closed.
    pub header_read_timeout: Duration,
    /// Longest a request may take, body included (408 after).
    pub request_timeout: Duration,
    /// Most open connections.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 8192,
        }
    }
}

/// Gossip set-up: this server's key and the peers it trusts.
#[derive(Debug, Default)]
pub struct GossipSettings {
    /// This server's signer (its cjdns identity); without one, gossip is off.
    pub signer: Option<Signer>,
    /// The route servers gossiped with, and the only ones whose gossip is accepted.
    pub peers: Vec<Peer>,
    /// Time between rounds.
    pub every: Duration,
    /// Longest wait for one gossip request (connect, send, answer).
    pub request_timeout: Duration,
    /// Most messages one exchange may take (paging of large sets).
    pub max_messages: usize,
}

impl GossipSettings {
    /// Defaults for `signer` and `peers`: a round every 5 s, 5 s per request, 4096 messages.
    pub fn new(signer: Option<Signer>, peers: Vec<Peer>) -> Self {
        Self {
            signer,
            peers,
            every: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_messages: 4096,
        }
    }
}

/// Counters shown by `GET /stats`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections closed at once because [`HttpLimits::max_connections`] were open.
    pub connections_refused: AtomicU64,
    /// Connections accepted.
    pub connections_accepted: AtomicU64,
    /// Gossip refused: bad or missing signature, stale timestamp, not an envelope (401).
    pub gossip_unauthenticated: AtomicU64,
    /// Gossip refused: a signer that is not a configured peer, or meant for another server
    /// (403).
    pub gossip_forbidden: AtomicU64,
    /// Gossip refused: an authenticated body that is not a message, or says nothing (400).
    pub gossip_bad: AtomicU64,
    /// Gossip exchanges that failed (timeouts, errors), as the initiator.
    pub gossip_failures: AtomicU64,
    /// Gossip exchanges completed, as the initiator.
    pub gossip_exchanges: AtomicU64,
    /// Items refused from gossip (announcements and frames).
    pub gossip_items_refused: AtomicU64,
    /// Announcements refused on `/announce`.
    pub announcements_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The core, its durable store and the gossip settings, shared by the handlers.
pub struct App {
    graph: RwLock<RouteServer>,
    book: RwLock<LeaseBook>,
    store: store::Store,
    finders: Mutex<Vec<PathFinder>>,
    gossip: GossipSettings,
    /// Counters.
    pub counters: Counters,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// Shared state of the handlers.
pub type Shared = Arc<App>;

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl App {
    /// Opens (or creates) the database at `path` and loads the lease book from it; gossip off.
    pub fn open(server: RouteServer, path: &Path) -> Result<Self, DriverError> {
        Self::open_with(server, path, GossipSettings::new(None, Vec::new()))
    }

    /// [`App::open`] with gossip settings.
    pub fn open_with(
        server: RouteServer,
        path: &Path,
        gossip: GossipSettings,
    ) -> Result<Self, DriverError> {
        let (store, frames) = store::Store::open(path)?;
        let mut book = LeaseBook::from_frames(frames, UnixTime(now_ms() / 1000));
        let pruned = book.take_changes();
        let app = Self {
            graph: RwLock::new(server),
            book: RwLock::new(book),
            store,
            finders: Mutex::new(Vec::new()),
            gossip,
            counters: Counters::default(),
        };
        drop(app.store.submit(pruned));
        Ok(app)
    }

    /// The graph and path snapshot, for reading.
    pub fn graph(&self) -> RwLockReadGuard<'_, RouteServer> {
        read(&self.graph)
    }

    /// The graph, for writing.
    pub fn graph_mut(&self) -> RwLockWriteGuard<'_, RouteServer> {
        write(&self.graph)
    }

    /// The lease book, for reading.
    pub fn book(&self) -> RwLockReadGuard<'_, LeaseBook> {
        read(&self.book)
    }

    /// The lease book, for writing. Changes made through it are not persisted until
    /// [`App::persist`] is called.
    pub fn book_mut(&self) -> RwLockWriteGuard<'_, LeaseBook> {
        write(&self.book)
    }

    /// Queues the book's pending changes for the store (call with the book locked) and
    /// returns what to await for their commit.
    pub fn persist(
        &self,
        book: &mut LeaseBook,
    ) -> impl std::future::Future<Output = Result<(), String>> {
        let wait = self.store.submit(book.take_changes());
        async move {
            wait.await
                .unwrap_or_else(|_| Err("the store has stopped".into()))
        }
    }

    /// This server's gossip key, if it has one.
    pub fn gossip_key(&self) -> Option<SigningKey> {
        self.gossip.signer.as_ref().map(Signer::public)
    }

    /// Expires old announcements and prunes the lease book at `now`.
    pub async fn handle_timeout(&self, now_ms: u64) -> Result<(), String> {
        self.graph_mut().handle_timeout(now_ms);
        let wait = {
            let mut book = self.book_mut();
            book.handle_timeout(UnixTime(now_ms / 1000));
            self.persist(&mut book)
        };
        wait.await
    }
}

/// Milliseconds since the Unix epoch (the one place the server reads the wall clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Accepts connections on `listener` and serves `state` on them under `limits`, until the
/// future is dropped.
pub async fn serve_http(
    state: Shared,
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let router = router(Arc::clone(&state), limits);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors or the like: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            Counters::bump(&state.counters.connections_refused);
            drop(stream);
            continue;
        };
        Counters::bump(&state.counters.connections_accepted);
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
            drop(permit);
        });
    }
}

/// What [`serve`] runs besides the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeConfig {
    /// Connection limits.
    pub limits: HttpLimits,
    /// Time between expiry passes (announcements, lease book).
    pub expire_every: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            limits: HttpLimits::default(),
            expire_every: Duration::from_secs(1),
        }
    }
}

/// Serves `state` on `listener`, expiring state every [`ServeConfig::expire_every`] and
/// gossiping with each configured peer on its own timer (a slow peer delays only itself),
/// until the future is dropped.
pub async fn serve(
    state: Shared,
    listener: tokio::net::TcpListener,
    config: ServeConfig,
) -> std::io::Result<()> {
    let expiry = Arc::clone(&state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(config.expire_every);
        loop {
            tick.tick().await;
            if let Err(e) = expiry.handle_timeout(now_ms()).await {
                tracing::error!("expiry: {e}");
            }
        }
    });
    peers::spawn_gossip(&state);
    serve_http(state, listener, config.limits).await
}

/// Parses `KEY@HOST:PORT` (64 hex digits of the peer's Ed25519 signing key, as `pktctl lease
/// whoami` prints it, then its HTTP address).
pub fn parse_peer(text: &str) -> Result<Peer, String> {
    let (key, addr) = text
        .split_once('@')
        .ok_or_else(|| format!("{text:?}: expected KEY@HOST:PORT"))?;
    let key = hex::decode(key.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(SigningKey)
        .filter(|k| k.cjdns_key().is_some())
        .ok_or_else(|| format!("{text:?}: the key is not 64 hex digits of an Ed25519 key"))?;
    let addr: SocketAddr = addr
        .trim()
        .parse()
        .map_err(|e| format!("{text:?}: address: {e}"))?;
    Ok(Peer { key, addr })
}
