//! Path queries: a compact snapshot of the graph ([`Topology`]) and a bidirectional Dijkstra on
//! a cost that accounts for latency, loss, load and the caller's leases ([`CostModel`]).
//!
//! # Cost of a directed link `u → v`
//! `(hop + lag) · (1 + drop_weight · drops_per_slot) · load_factor · lease_factor`, where
//! - `lag` is the mean lag `v` measured for traffic from `u` (cjdns LINK_STATE; `default_lag`
//!   without data), `hop` a fixed per-hop cost so that short paths win among equals;
//! - `load_factor = 1 / (1 − ρ)` (the M/M/1 delay growth), `ρ = load / free capacity` capped
//!   at `max_utilization`, when `u` announced the link's capacity (pktmesh entity); free
//!   capacity is capacity minus the leased part, so free-tier traffic avoids sold-out links;
//! - for a link on which the caller holds a lease, the load factor is 1 (its share is reserved)
//!   and the cost is multiplied by `lease_factor` (< 1), so paths over one's leases win.
//!
//! # Labels
//! The route label is built by splicing the per-hop labels (each from the PEER entity of the
//! hop's far end), widening a hop's director to the form of the director that leads back to the
//! previous node when that one is wider, in the hop node's own scheme (what
//! `EncodingScheme::build_label` does for one scheme). Every switch on the way can then write
//! its return director.
//!
//! # Work bound
//! One query settles each node at most once from each side and stops when the two frontiers'
//! smallest distances add up to the best meeting found; memory is two arrays per node, reused
//! between queries (generation-stamped, no clearing).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::{ConvertTo, EncodingScheme, Label, LabelError, ReencodeError};
use thiserror::Error;

use crate::graph::{Graph, Link};

/// Weights of the path cost (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// Fixed cost per hop.
    pub hop: f32,
    /// Lag assumed for a link without measurements.
    pub default_lag: f32,
    /// Weight of drops per slot.
    pub drop_weight: f32,
    /// Highest utilisation the load factor uses (caps it at `1/(1−max)`).
    pub max_utilization: f32,
    /// Multiplier for links the caller holds a lease on.
    pub lease_factor: f32,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            hop: 10.0,
            default_lag: 100.0,
            drop_weight: 0.5,
            max_utilization: 0.95,
            lease_factor: 0.25,
        }
    }
}

impl CostModel {
    /// Cost of `link` for a caller without a lease on it, and with one.
    pub fn costs(&self, link: &Link) -> (f32, f32) {
        let m = &link.metrics;
        let base = (self.hop + m.lag.unwrap_or(self.default_lag).max(0.0))
            * (1.0 + self.drop_weight * m.drops_per_slot.clamp(0.0, 64.0));
        let load = match link.capacity {
            Some(c) if c.capacity_kbps > 0 => {
                let free = c.capacity_kbps.saturating_sub(c.leased_kbps).max(1) as f32;
                let rho = (m.load_kbps / free).clamp(0.0, self.max_utilization);
                1.0 / (1.0 - rho)
            }
            _ => 1.0,
        };
        (base * load, base * self.lease_factor)
    }
}

#[derive(Debug, Clone, Copy)]
struct Edge {
    to: u32,
    cost: f32,
    leased_cost: f32,
    label: u32,
}

#[derive(Debug, Clone, Copy)]
struct InEdge {
    from: u32,
    edge: u32,
}

/// A node as [`Topology::from_parts`] takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// Address.
    pub address: Address,
    /// cjdns key.
    pub key: PublicKey,
    /// Protocol version.
    pub version: u16,
    /// Encoding scheme.
    pub scheme: EncodingScheme,
}

/// An immutable, index-based snapshot of the graph for path queries.
#[derive(Debug, Clone)]
pub struct Topology {
    addrs: Vec<Address>,
    keys: Vec<PublicKey>,
    versions: Vec<u16>,
    schemes: Vec<EncodingScheme>,
    index: HashMap<Address, u32>,
    out_start: Vec<u32>,
    out: Vec<Edge>,
    in_start: Vec<u32>,
    inn: Vec<InEdge>,
    generation: u64,
}

impl Topology {
    /// Snapshots the routable part of `graph`: nodes with a scheme and version, links whose
    /// ends announce each other.
    pub fn build(graph: &Graph, model: &CostModel) -> Self {
        let mut nodes: Vec<_> = graph
            .nodes()
            .filter(|n| n.scheme.is_some() && n.version.is_some())
            .collect();
        nodes.sort_by_key(|n| n.address);
        let index: HashMap<Address, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.address, i as u32))
            .collect();
        let mut links: Vec<(u32, Edge)> = graph
            .links()
            .filter_map(|l| {
                let from = *index.get(&l.from)?;
                let to = *index.get(&l.to)?;
                let (cost, leased_cost) = model.costs(&l);
                Some((
                    from,
                    Edge {
                        to,
                        cost,
                        leased_cost,
                        label: l.label,
                    },
                ))
            })
            .collect();
        links.sort_by_key(|(f, e)| (*f, e.to, e.label));
        Self::from_edges(
            nodes.iter().map(|n| n.address).collect(),
            nodes.iter().map(|n| n.key).collect(),
            nodes.iter().map(|n| n.version.unwrap_or(0)).collect(),
            nodes
                .iter()
                .map(|n| n.scheme.unwrap_or_else(EncodingScheme::v358))
                .collect(),
            index,
            links,
            graph.generation(),
        )
    }

    /// Builds a snapshot from nodes and links given directly rather than from announcements
    /// (synthetic graphs for benchmarks and simulations; a graph exported by another server).
    /// Links whose ends are not among `nodes` are skipped.
    pub fn from_parts(nodes: &[NodeInfo], links: &[Link], model: &CostModel) -> Self {
        let mut nodes = nodes.to_vec();
        nodes.sort_by_key(|n| n.address);
        nodes.dedup_by_key(|n| n.address);
        let index: HashMap<Address, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.address, i as u32))
            .collect();
        let mut edges: Vec<(u32, Edge)> = links
            .iter()
            .filter_map(|l| {
                let (cost, leased_cost) = model.costs(l);
                Some((
                    *index.get(&l.from)?,
                    Edge {
                        to: *index.get(&l.to)?,
                        cost,
                        leased_cost,
                        label: l.label,
                    },
                ))
            })
            .collect();
        edges.sort_by_key(|(f, e)| (*f, e.to, e.label));
        Self::from_edges(
            nodes.iter().map(|n| n.address).collect(),
            nodes.iter().map(|n| n.key).collect(),
            nodes.iter().map(|n| n.version).collect(),
            nodes.iter().map(|n| n.scheme).collect(),
            index,
            edges,
            0,
        )
    }

    fn from_edges(
        addrs: Vec<Address>,
        keys: Vec<PublicKey>,
        versions: Vec<u16>,
        schemes: Vec<EncodingScheme>,
        index: HashMap<Address, u32>,
        links: Vec<(u32, Edge)>,
        generation: u64,
    ) -> Self {
        let n = addrs.len();
        let mut out_start = vec![0u32; n + 1];
        for (f, _) in &links {
            out_start[*f as usize + 1] += 1;
        }
        for i in 0..n {
            out_start[i + 1] += out_start[i];
        }
        let out: Vec<Edge> = links.iter().map(|(_, e)| *e).collect();
        let mut in_start = vec![0u32; n + 1];
        for e in &out {
            in_start[e.to as usize + 1] += 1;
        }
        for i in 0..n {
            in_start[i + 1] += in_start[i];
        }
        let mut fill = in_start.clone();
        let mut inn = vec![InEdge { from: 0, edge: 0 }; out.len()];
        for (i, (f, e)) in links.iter().enumerate() {
            let slot = &mut fill[e.to as usize];
            inn[*slot as usize] = InEdge {
                from: *f,
                edge: i as u32,
            };
            *slot += 1;
        }
        Self {
            addrs,
            keys,
            versions,
            schemes,
            index,
            out_start,
            out,
            in_start,
            inn,
            generation,
        }
    }

    /// The graph generation this snapshot was taken at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Nodes in the snapshot.
    pub fn node_count(&self) -> usize {
        self.addrs.len()
    }

    /// Directed links in the snapshot.
    pub fn link_count(&self) -> usize {
        self.out.len()
    }

    /// A node's key and version.
    pub fn key_and_version(&self, a: &Address) -> Option<(PublicKey, u16)> {
        let i = *self.index.get(a)? as usize;
        Some((self.keys[i], self.versions[i]))
    }

    fn edges(&self, u: u32) -> &[Edge] {
        &self.out[self.out_start[u as usize] as usize..self.out_start[u as usize + 1] as usize]
    }

    fn in_edges(&self, v: u32) -> &[InEdge] {
        &self.inn[self.in_start[v as usize] as usize..self.in_start[v as usize + 1] as usize]
    }

    fn owner_of(&self, e: u32) -> u32 {
        // out_start is sorted: the owner of edge e is the last u with out_start[u] <= e.
        (self.out_start.partition_point(|&s| s <= e) - 1) as u32
    }

    fn edge_index(&self, u: u32, v: u32) -> Option<u32> {
        let s = self.out_start[u as usize];
        self.edges(u)
            .iter()
            .position(|e| e.to == v)
            .map(|p| s + p as u32)
    }
}

/// Why no route was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PathError {
    /// The node is not in the graph (or has not announced scheme and version).
    #[error("node {0} is not known")]
    UnknownNode(Address),
    /// The graph has no path between them.
    #[error("no path")]
    NoPath,
    /// The hops' labels do not splice into one label.
    #[error("path label cannot be built: {0}")]
    Label(#[from] ReencodeError),
}

impl From<LabelError> for PathError {
    fn from(e: LabelError) -> Self {
        Self::Label(ReencodeError::Label(e))
    }
}

/// A route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The label from the source to the destination.
    pub label: Label,
    /// The nodes along it, source first.
    pub hops: Vec<Address>,
    /// Its cost.
    pub cost: f32,
}

/// A directed link the caller holds a lease on.
pub type LeasedLink = (Address, Address);

/// Per-node, per-direction search state, kept together so one visit touches one cache line.
#[derive(Debug, Clone, Copy)]
struct Slot {
    seen: u32,
    done: bool,
    dist: f32,
    parent: u32,
}

/// Runs path queries on a [`Topology`]; keeps scratch memory between queries.
#[derive(Debug)]
pub struct PathFinder {
    topo: Arc<Topology>,
    stamp: u32,
    slots: [Vec<Slot>; 2],
    heap: [BinaryHeap<Reverse<u64>>; 2],
    leased: Vec<u32>,
    settled: usize,
    per_hop_extra: f32,
}

impl PathFinder {
    /// A finder over `topo`.
    pub fn new(topo: Arc<Topology>) -> Self {
        let n = topo.node_count();
        let slot = Slot {
            seen: 0,
            done: false,
            dist: 0.0,
            parent: u32::MAX,
        };
        Self {
            topo,
            stamp: 0,
            slots: [vec![slot; n], vec![slot; n]],
            heap: [BinaryHeap::new(), BinaryHeap::new()],
            leased: Vec::new(),
            settled: 0,
            per_hop_extra: 0.0,
        }
    }

    /// Nodes the last query settled (both directions together): its work.
    pub fn last_settled(&self) -> usize {
        self.settled
    }

    /// The snapshot in use.
    pub fn topology(&self) -> &Arc<Topology> {
        &self.topo
    }

    /// Replaces the snapshot (after the graph changed).
    pub fn set_topology(&mut self, topo: Arc<Topology>) {
        *self = Self::new(topo);
    }

    /// The cheapest route from `from` to `to` for a caller holding leases on `leases`.
    pub fn route(
        &mut self,
        from: &Address,
        to: &Address,
        leases: &[LeasedLink],
    ) -> Result<Route, PathError> {
        let topo = Arc::clone(&self.topo);
        let s = *topo.index.get(from).ok_or(PathError::UnknownNode(*from))?;
        let t = *topo.index.get(to).ok_or(PathError::UnknownNode(*to))?;
        if s == t {
            return Ok(Route {
                label: Label::SELF,
                hops: vec![*from],
                cost: 0.0,
            });
        }
        self.leased.clear();
        for (a, b) in leases {
            if let (Some(&u), Some(&v)) = (topo.index.get(a), topo.index.get(b)) {
                if let Some(e) = topo.edge_index(u, v) {
                    self.leased.push(e);
                }
            }
        }
        self.leased.sort_unstable();
        self.per_hop_extra = 0.0;
        let (mut nodes, mut cost) = self.search(&topo, s, t).ok_or(PathError::NoPath)?;
        let label = match build_label(&topo, &nodes) {
            Err(PathError::Label(
                ReencodeError::TooLong | ReencodeError::Label(LabelError::TooLong),
            )) => {
                // The cheapest path has too many (or too wide) hops for one 60-bit label: take
                // the cheapest among the paths with the fewest hops instead.
                self.per_hop_extra = 1e6;
                let settled = self.settled;
                let (n, c) = self.search(&topo, s, t).ok_or(PathError::NoPath)?;
                self.settled += settled;
                self.per_hop_extra = 0.0;
                nodes = n;
                cost = c - 1e6 * (nodes.len() - 1) as f32;
                build_label(&topo, &nodes)?
            }
            other => other?,
        };
        Ok(Route {
            label,
            hops: nodes.iter().map(|&i| topo.addrs[i as usize]).collect(),
            cost,
        })
    }

    #[inline]
    fn cost(&self, e: u32, edge: &Edge) -> f32 {
        let c = if !self.leased.is_empty() && self.leased.binary_search(&e).is_ok() {
            edge.leased_cost
        } else {
            edge.cost
        };
        c + self.per_hop_extra
    }

    #[inline]
    fn slot(&mut self, side: usize, v: u32) -> &mut Slot {
        let stamp = self.stamp;
        let slot = &mut self.slots[side][v as usize];
        if slot.seen != stamp {
            *slot = Slot {
                seen: stamp,
                done: false,
                dist: f32::INFINITY,
                parent: u32::MAX,
            };
        }
        slot
    }

    fn search(&mut self, topo: &Topology, s: u32, t: u32) -> Option<(Vec<u32>, f32)> {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            for side in &mut self.slots {
                side.iter_mut().for_each(|v| v.seen = 0);
            }
            self.stamp = 1;
        }
        for h in &mut self.heap {
            h.clear();
        }
        self.slot(0, s).dist = 0.0;
        self.slot(1, t).dist = 0.0;
        self.heap[0].push(Reverse(key(0.0, s)));
        self.heap[1].push(Reverse(key(0.0, t)));
        let mut best = f32::INFINITY;
        let mut meet = u32::MAX;
        self.settled = 0;
        loop {
            let top = |h: &BinaryHeap<Reverse<u64>>| {
                h.peek()
                    .map_or(f32::INFINITY, |r| f32::from_bits((r.0 >> 32) as u32))
            };
            let (tf, tb) = (top(&self.heap[0]), top(&self.heap[1]));
            if tf + tb >= best || (tf.is_infinite() && tb.is_infinite()) {
                break;
            }
            let side = usize::from(tb < tf);
            let Some(Reverse(k)) = self.heap[side].pop() else {
                break;
            };
            let (d, u) = (f32::from_bits((k >> 32) as u32), k as u32);
            let slot = &mut self.slots[side][u as usize];
            if slot.done || d > slot.dist {
                continue;
            }
            slot.done = true;
            self.settled += 1;
            if side == 0 {
                let start = topo.out_start[u as usize];
                for (k, edge) in topo.edges(u).iter().enumerate() {
                    let e = start + k as u32;
                    let nd = d + self.cost(e, edge);
                    self.relax(0, edge.to, nd, e, &mut best, &mut meet);
                }
            } else {
                for ie in topo.in_edges(u) {
                    let edge = topo.out[ie.edge as usize];
                    let nd = d + self.cost(ie.edge, &edge);
                    self.relax(1, ie.from, nd, ie.edge, &mut best, &mut meet);
                }
            }
        }
        if meet == u32::MAX {
            return None;
        }
        let mut nodes = vec![meet];
        let mut v = meet;
        while v != s {
            let e = self.slots[0][v as usize].parent;
            v = topo.owner_of(e);
            nodes.push(v);
        }
        nodes.reverse();
        let mut v = meet;
        while v != t {
            let e = self.slots[1][v as usize].parent;
            v = topo.out[e as usize].to;
            nodes.push(v);
        }
        Some((nodes, best))
    }

    #[inline]
    fn relax(&mut self, side: usize, v: u32, nd: f32, e: u32, best: &mut f32, meet: &mut u32) {
        // A path through v costs at least nd: no use queueing v once that reaches the best.
        if nd >= *best {
            return;
        }
        let slot = self.slot(side, v);
        if nd < slot.dist {
            slot.dist = nd;
            slot.parent = e;
            self.heap[side].push(Reverse(key(nd, v)));
        }
        let mine = self.slots[side][v as usize].dist;
        let other = self.slots[1 - side][v as usize];
        if other.seen == self.stamp {
            let total = mine + other.dist;
            if total < *best {
                *best = total;
                *meet = v;
            }
        }
    }
}

/// Heap key: non-negative f32 distances order like their bits; the node breaks ties.
#[inline]
fn key(dist: f32, node: u32) -> u64 {
    u64::from(dist.to_bits()) << 32 | u64::from(node)
}

fn label_of(topo: &Topology, u: u32, v: u32) -> Result<Label, PathError> {
    let e = topo.edge_index(u, v).ok_or(PathError::NoPath)?;
    Ok(Label::new(u64::from(topo.out[e as usize].label))?)
}

/// Splices the hop labels of `nodes` with director widening (module docs).
fn build_label(topo: &Topology, nodes: &[u32]) -> Result<Label, PathError> {
    let mut path: Option<Label> = None;
    for i in 0..nodes.len() - 1 {
        let (u, v) = (nodes[i], nodes[i + 1]);
        let mut forward = label_of(topo, u, v)?;
        if i > 0 {
            let reverse = label_of(topo, u, nodes[i - 1])?;
            let scheme = &topo.schemes[u as usize];
            let r = scheme
                .form_index(reverse.bits())
                .ok_or(ReencodeError::NoMatchingForm)?;
            let f = scheme
                .form_index(forward.bits())
                .ok_or(ReencodeError::NoMatchingForm)?;
            if scheme.forms()[r].width() > scheme.forms()[f].width() {
                forward = scheme.convert_label(forward, ConvertTo::Form(r))?;
            }
        }
        path = Some(match path {
            None => forward,
            Some(via) => Label::splice(forward, via)?,
        });
    }
    path.ok_or(PathError::NoPath)
}
