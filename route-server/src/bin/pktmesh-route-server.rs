//! `pktmesh-route-server`: the route server daemon (HTTP JSON API, gossip, durable leases).
//!
//! ```text
//! pktmesh-route-server --listen 127.0.0.1:8470 --db /var/lib/pktmesh/rs.redb \
//!     [--self-address fc..] [--key-file rs.key] [--peer KEY@10.0.0.2:8470 ...] \
//!     [--gossip-seconds 5] [--header-timeout-ms 10000] [--request-timeout-ms 30000] \
//!     [--max-connections 8192] [--threads 2]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Parser;
use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_route_server::http::{parse_peer, serve, App, GossipSettings, HttpLimits, ServeConfig};
use pktmesh_route_server::{Config, CostModel, RouteServer};

/// Command line.
#[derive(Debug, Parser)]
#[command(version, about = "pktmesh route server: link state, paths, leases")]
struct Args {
    /// Address to serve the HTTP API on.
    #[arg(long, default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// Database file for leases, orders and virtual networks (created if missing).
    #[arg(long)]
    db: PathBuf,
    /// This server's cjdns address; node announcements must name it.
    #[arg(long)]
    self_address: Option<String>,
    /// File holding this server's cjdns private key (64 hex digits); it signs gossip. Without
    /// one, gossip is off.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// A route server to gossip with: KEY@HOST:PORT, KEY its Ed25519 signing key in hex (what
    /// `pktctl lease whoami` prints first for its key file). Only these may gossip to us.
    #[arg(long)]
    peer: Vec<String>,
    /// Seconds between gossip rounds.
    #[arg(long, default_value_t = 5)]
    gossip_seconds: u64,
    /// Milliseconds to wait for a request head before closing the connection (idle
    /// keep-alive connections included).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Milliseconds a request may take, body included (408 after).
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: u64,
    /// Most open connections; more are closed at once.
    #[arg(long, default_value_t = 8192)]
    max_connections: usize,
    /// Worker threads of the runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn load_key(path: &std::path::Path) -> anyhow::Result<PrivateKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path:?}"))?;
    PrivateKey::from_hex(text.trim()).map_err(|e| anyhow!("{path:?}: {e}"))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let self_address = args
        .self_address
        .as_deref()
        .map(Address::parse)
        .transpose()
        .context("--self-address")?;
    let signer = args
        .key_file
        .as_deref()
        .map(load_key)
        .transpose()?
        .map(|k| Signer::from_cjdns(&k));
    let peers = args
        .peer
        .iter()
        .map(|p| parse_peer(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("--peer {e}"))?;
    let mut gossip = GossipSettings::new(signer, peers);
    gossip.every = Duration::from_secs(args.gossip_seconds.max(1));
    let server = RouteServer::new(
        Config {
            self_address,
            ..Config::default()
        },
        CostModel::default(),
    );
    let app = App::open_with(server, &args.db, gossip)
        .with_context(|| format!("opening {:?}", args.db))?;
    let config = ServeConfig {
        limits: HttpLimits {
            header_read_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
            request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
            max_connections: args.max_connections.max(1),
        },
        ..ServeConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("listening on {}", listener.local_addr()?);
        serve(Arc::new(app), listener, config).await?;
        Ok(())
    })
}
