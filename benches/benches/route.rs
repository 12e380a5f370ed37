//! Route-server path queries on a synthetic 10,000-node, 50,000-link graph (issue 6 target:
//! p99 ≤ 1 ms and ≥ 20,000 queries/s on one core).
//!
//! The graph is a small world: a ring where every node links to its next three (30,000 links)
//! plus 20,000 random chords, every link in both directions with lag 10..200 and a capacity, and
//! V358 labels from each node's interface slots. Queries are uniformly random pairs; the
//! snapshot is built once (as the server does between graph changes).
//!
//! Run: `cargo bench -p pktmesh-benches --bench route` (pin with `taskset -c 1`). Besides the
//! criterion estimate it prints p50/p99 latency and throughput over 20,000 timed queries.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_route_server::announce::LinkCapacity;
use pktmesh_route_server::graph::{Link, LinkMetrics};
use pktmesh_route_server::path::{CostModel, NodeInfo, PathFinder, Topology};
use pktmesh_switch::EncodingScheme;

const NODES: usize = 10_000;
const CHORDS: usize = 20_000;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn address(i: usize) -> Address {
    let mut b = [0u8; 16];
    b[0] = 0xfc;
    b[8..].copy_from_slice(&(i as u64).to_be_bytes());
    Address::from_bytes(b)
}

fn synthetic() -> (Vec<Address>, Topology) {
    let scheme = EncodingScheme::v358();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let addrs: Vec<Address> = (0..NODES).map(address).collect();
    let nodes: Vec<NodeInfo> = addrs
        .iter()
        .enumerate()
        .map(|(i, &address)| NodeInfo {
            address,
            key: PublicKey::from_bytes([i as u8; 32]),
            version: 22,
            scheme,
        })
        .collect();
    let mut pairs = HashSet::new();
    for i in 0..NODES {
        for d in 1..=3 {
            pairs.insert((i.min((i + d) % NODES), i.max((i + d) % NODES)));
        }
    }
    while pairs.len() < 3 * NODES + CHORDS {
        let (a, b) = (rng.below(NODES), rng.below(NODES));
        if a != b {
            pairs.insert((a.min(b), a.max(b)));
        }
    }
    let mut next_slot = vec![2u32; NODES]; // slot 0 and 1 are taken (cjdns: 1 = router)
    let mut pairs: Vec<_> = pairs.into_iter().collect();
    pairs.sort_unstable();
    let mut links = Vec::with_capacity(pairs.len() * 2);
    for (a, b) in pairs {
        let (sa, sb) = (next_slot[a], next_slot[b]);
        next_slot[a] += 1;
        next_slot[b] += 1;
        for (from, to, slot) in [(a, b, sa), (b, a, sb)] {
            let label = scheme.label_for_interface(slot).unwrap().bits() as u32;
            links.push(Link {
                from: addrs[from],
                to: addrs[to],
                label,
                metrics: LinkMetrics {
                    lag: Some(10.0 + rng.below(190) as f32),
                    drops_per_slot: 0.0,
                    load_kbps: rng.below(50_000) as f32,
                    value: 0.0,
                },
                capacity: Some(LinkCapacity {
                    peer_num: 0,
                    flags: 0,
                    capacity_kbps: 100_000,
                    leased_kbps: 0,
                }),
                offer: None,
            });
        }
    }
    let topo = Topology::from_parts(&nodes, &links, &CostModel::default());
    (addrs, topo)
}

fn bench(c: &mut Criterion) {
    let (addrs, topo) = synthetic();
    assert_eq!(topo.node_count(), NODES);
    assert_eq!(topo.link_count(), 2 * (3 * NODES + CHORDS));
    let mut finder = PathFinder::new(Arc::new(topo));

    // Timed run: latency distribution and single-core throughput.
    let mut rng = Rng(7);
    let mut times = Vec::with_capacity(20_000);
    let mut errors = 0;
    let mut work = Vec::with_capacity(20_000);
    let mut hops = Vec::with_capacity(20_000);
    let mut last_error = None;
    let start = Instant::now();
    for _ in 0..20_000 {
        let (a, b) = (&addrs[rng.below(NODES)], &addrs[rng.below(NODES)]);
        let t = Instant::now();
        match finder.route(a, b, &[]) {
            Ok(r) => hops.push(r.hops.len() - 1),
            Err(e) => {
                errors += 1;
                last_error = Some(e);
            }
        }
        times.push(t.elapsed().as_nanos() as u64);
        work.push(finder.last_settled());
    }
    let total = start.elapsed();
    times.sort_unstable();
    work.sort_unstable();
    hops.sort_unstable();
    if !hops.is_empty() {
        eprintln!(
            "hops per route: p50 {}, max {}; last error: {last_error:?}",
            hops[hops.len() / 2],
            hops[hops.len() - 1]
        );
    }
    eprintln!(
        "settled nodes per query: p50 {}, p99 {}, max {}",
        work[work.len() / 2],
        work[work.len() * 99 / 100],
        work[work.len() - 1]
    );
    eprintln!(
        "route 10k/50k: p50 {:.1} us, p99 {:.1} us, max {:.1} us, {:.0} queries/s, {errors} errors",
        times[times.len() / 2] as f64 / 1e3,
        times[times.len() * 99 / 100] as f64 / 1e3,
        times[times.len() - 1] as f64 / 1e3,
        20_000.0 / total.as_secs_f64()
    );

    let mut rng = Rng(11);
    c.bench_function("route/query_10k_nodes_50k_links", |b| {
        b.iter(|| {
            let (a, z) = (&addrs[rng.below(NODES)], &addrs[rng.below(NODES)]);
            black_box(finder.route(a, z, &[]).ok())
        })
    });
    c.bench_function("route/generate_and_snapshot_10k_nodes_50k_links", |b| {
        b.iter(|| black_box(synthetic().1.link_count()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
