//! The lease book at scale: inserting a lease into a book that holds 100,000 leases (signature
//! check, indexes, capacity sweep of its link). Besides criterion's mean, prints the p50/p99/max
//! of 10,000 individually timed inserts (the figure `docs/perf.md` records).
//!
//! Run: `nice -n 19 cargo bench -p pktmesh-route-server --bench book`
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Lease, Message};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_route_server::leases::{LeaseBook, LinkInfo, Links};

const NOW: u64 = 1_700_000_000;
const BOOK: usize = 100_000;
/// Leases per link (well below the per-link cap), so 1,000 issuing nodes.
const PER_LINK: usize = 100;

/// Every link exists with room for all the leases on it.
struct Roomy;

impl Links for Roomy {
    fn link(&self, _: &Address, _: &Address) -> Option<LinkInfo> {
        Some(LinkInfo {
            capacity_kbps: Some(u32::MAX),
            offer: None,
        })
    }
    fn knows_node(&self, _: &Address) -> bool {
        true
    }
}

/// Signed leases: `count` of them starting at number `from`, each issuer `PER_LINK` times.
fn leases(from: usize, count: usize, issuers: &[Signer], owner: &Signer) -> Vec<Vec<u8>> {
    let peer = *PrivateKey::from_bytes([7; 32]).public_key().as_bytes();
    (from..from + count)
        .map(|n| {
            let node = &issuers[(n / PER_LINK) % issuers.len()];
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(n as u64).to_be_bytes());
            Message::Lease(Lease {
                id: LeaseId(id),
                node: node.public(),
                peer,
                kbps: 100,
                start: UnixTime(NOW + (n % 50) as u64 * 60),
                end: UnixTime(NOW + 3600 + (n % 50) as u64 * 60),
                owner: owner.public(),
            })
            .emit_signed(node)
            .expect("emits")
        })
        .collect()
}

fn book_insert(c: &mut Criterion) {
    let issuers: Vec<Signer> = (0..(BOOK / PER_LINK + 200) as u32)
        .map(|i| {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_be_bytes());
            k[31] = 1;
            Signer::from_cjdns(&PrivateKey::from_bytes(k))
        })
        .collect();
    let owner = Signer::from_cjdns(&PrivateKey::from_bytes([9; 32]));
    let mut book = LeaseBook::new();
    for f in leases(0, BOOK, &issuers, &owner) {
        book.insert(UnixTime(NOW), &f, &Roomy).expect("fills");
    }
    assert_eq!(book.leases().count(), BOOK);

    // 10,000 inserts timed one by one.
    let extra = leases(BOOK, 10_000, &issuers, &owner);
    let mut times: Vec<Duration> = extra
        .iter()
        .map(|f| {
            let t = Instant::now();
            book.insert(UnixTime(NOW), f, &Roomy).expect("inserts");
            t.elapsed()
        })
        .collect();
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "book of {BOOK} leases: insert p50 {:?} p99 {:?} max {:?} (n = {})",
        pct(0.50),
        pct(0.99),
        times[times.len() - 1],
        times.len()
    );

    let pool = leases(BOOK + 10_000, 20_000, &issuers, &owner);
    let mut next = 0usize;
    c.bench_function("lease book: insert into 100k", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let f = &pool[next % pool.len()];
                next += 1;
                let _ = book.insert(UnixTime(NOW), f, &Roomy);
            }
            start.elapsed()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = book_insert
}
criterion_main!(benches);
