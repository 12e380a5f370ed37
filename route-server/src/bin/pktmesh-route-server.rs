//! `pktmesh-route-server`: the route server daemon (HTTP JSON API, gossip, durable leases).
//!
//! ```text
//! pktmesh-route-server --listen 127.0.0.1:8470 --db /var/lib/pktmesh/rs.redb \
//!     [--self-address fc..] [--peer 10.0.0.2:8470 ...] [--gossip-seconds 5]
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pktmesh_crypto_auth::Address;
use pktmesh_route_server::http::{serve, App};
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
    /// Other route servers to gossip with (their HTTP API address); repeatable.
    #[arg(long)]
    peer: Vec<SocketAddr>,
    /// Seconds between gossip rounds (and announcement expiry).
    #[arg(long, default_value_t = 5)]
    gossip_seconds: u64,
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
    let server = RouteServer::new(
        Config {
            self_address,
            ..Config::default()
        },
        CostModel::default(),
    );
    let app = App::open(server, &args.db).with_context(|| format!("opening {:?}", args.db))?;
    let state = Arc::new(Mutex::new(app));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        println!("listening on {}", listener.local_addr()?);
        serve(
            state,
            listener,
            args.peer,
            Duration::from_secs(args.gossip_seconds.max(1)),
        )
        .await?;
        Ok(())
    })
}
