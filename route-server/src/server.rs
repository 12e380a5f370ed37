//! The route server core: the graph, a path finder over its latest snapshot, and the answers
//! to cjdns supernode queries (`sq`), all sans-IO with time as an argument.
//!
//! # Supernode queries
//! A node's router hands the server the bencoded CJDHT message (content type 256) of an
//! inter-router packet; [`RouteServer::handle_query`] returns the bencoded reply to send back
//! through the same session, or `None` when the message is not for us (no `sq`, no `txid`, no
//! protocol version `p`: upstream ignores those). Replies carry `txid` (echoed), `p` (our
//! version) and `recvTime` (ms), and:
//! - `sq = ann` (key `ann` = announcement bytes): `stateHash` (64 bytes, the node's state hash
//!   after the announcement, all zero when unknown) and `error` (`none` or the upstream code);
//! - `sq = gr` (keys `src`, `tar` = 16-byte addresses): `n` = the destination's key and the
//!   8-byte label of the route, `np` = `[1, version]`; neither when there is no route;
//! - `sq = pn`: nothing more.
//!
//! # Snapshots
//! Path queries run on a [`Topology`] snapshot. It is rebuilt when the graph changed and the
//! last build is older than [`RouteServer::REBUILD_INTERVAL_MS`] (upstream rebuilds every 3 s),
//! so a burst of announcements costs one rebuild.

use std::sync::Arc;

use pktmesh_crypto_auth::Address;
use pktmesh_node::bencode::{self, Dict, Value};

use crate::graph::{Config, Graph, IngestError, Ingested, Origin};
use crate::path::{CostModel, LeasedLink, PathError, PathFinder, Route, Topology};

/// The protocol version the server announces in replies (`p`).
pub const PROTOCOL_VERSION: i64 = 22;

/// A route server: graph, path finder, query answers.
#[derive(Debug)]
pub struct RouteServer {
    graph: Graph,
    model: CostModel,
    finder: Option<PathFinder>,
    built_at_ms: u64,
}

impl RouteServer {
    /// Most milliseconds between a graph change and the snapshot that path queries see.
    pub const REBUILD_INTERVAL_MS: u64 = 3_000;

    /// A server with an empty graph.
    pub fn new(config: Config, model: CostModel) -> Self {
        Self {
            graph: Graph::new(config),
            model,
            finder: None,
            built_at_ms: 0,
        }
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The graph, mutably (gossip ingests through it).
    pub fn graph_mut(&mut self) -> &mut Graph {
        &mut self.graph
    }

    /// The cost model.
    pub fn cost_model(&self) -> &CostModel {
        &self.model
    }

    /// Takes an announcement.
    pub fn ingest(
        &mut self,
        now_ms: u64,
        bytes: &[u8],
        origin: Origin,
    ) -> Result<Ingested, IngestError> {
        self.graph.ingest(now_ms, bytes, origin)
    }

    /// Expires old announcements.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.graph.handle_timeout(now_ms);
    }

    /// The snapshot path queries use at `now`, rebuilding it if due.
    pub fn topology(&mut self, now_ms: u64) -> &Arc<Topology> {
        let stale = self
            .finder
            .as_ref()
            .is_none_or(|f| f.topology().generation() != self.graph.generation());
        let due = self.finder.is_none()
            || now_ms.saturating_sub(self.built_at_ms) >= Self::REBUILD_INTERVAL_MS;
        if stale && due {
            let topo = Arc::new(Topology::build(&self.graph, &self.model));
            match &mut self.finder {
                Some(f) => f.set_topology(topo),
                None => self.finder = Some(PathFinder::new(topo)),
            }
            self.built_at_ms = now_ms;
        }
        match &self.finder {
            Some(f) => f.topology(),
            None => unreachable!("finder was just built"),
        }
    }

    /// The cheapest route at `now` for a caller holding leases on `leases`.
    pub fn route(
        &mut self,
        now_ms: u64,
        from: &Address,
        to: &Address,
        leases: &[LeasedLink],
    ) -> Result<Route, PathError> {
        self.topology(now_ms);
        match &mut self.finder {
            Some(f) => f.route(from, to, leases),
            None => Err(PathError::NoPath),
        }
    }

    /// Answers one CJDHT message (see the module docs). Never panics on any input.
    pub fn handle_query(&mut self, now_ms: u64, message: &[u8]) -> Option<Vec<u8>> {
        let Ok(Value::Dict(q)) = bencode::parse_prefix(message).map(|(v, _)| v) else {
            return None;
        };
        let sq = q.get_bytes("sq")?.to_vec();
        let txid = q.get_bytes("txid")?.to_vec();
        if q.get_int("p").is_none_or(|p| p <= 0) {
            return None;
        }
        let mut reply = Dict::new();
        reply.insert("txid", Value::Bytes(txid));
        reply.insert("p", Value::Int(PROTOCOL_VERSION));
        reply.insert("recvTime", Value::Int(now_ms as i64));
        match sq.as_slice() {
            b"pn" => {}
            b"ann" => {
                let ann = q.get_bytes("ann")?;
                let (hash, error) = match self.ingest(now_ms, ann, Origin::Node) {
                    Ok(i) => (i.state_hash, "none"),
                    Err(e) => {
                        let hash = crate::announce::Announcement::new_checked(ann)
                            .ok()
                            .and_then(|a| a.verify().ok())
                            .and_then(|k| self.graph.node(&k.address()))
                            .map_or([0; 64], |n| n.state_hash());
                        (hash, e.reply_code())
                    }
                };
                reply.insert("stateHash", Value::Bytes(hash.to_vec()));
                reply.insert("error", Value::Bytes(error.as_bytes().to_vec()));
            }
            b"gr" => {
                let src = Address::from_bytes(q.get_bytes("src")?.try_into().ok()?);
                let tar = Address::from_bytes(q.get_bytes("tar")?.try_into().ok()?);
                if let Ok(route) = self.route(now_ms, &src, &tar, &[]) {
                    if let Some((key, version)) = self
                        .finder
                        .as_ref()
                        .and_then(|f| f.topology().key_and_version(&tar))
                    {
                        let mut n = key.as_bytes().to_vec();
                        n.extend_from_slice(&route.label.bits().to_be_bytes());
                        reply.insert("n", Value::Bytes(n));
                        reply.insert("np", Value::Bytes(vec![1, version.min(255) as u8]));
                    }
                }
            }
            _ => return None,
        }
        Some(bencode::encode_cjdns(&reply))
    }
}
