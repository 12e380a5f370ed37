//! Lease enforcement per packet: `LeaseEngine::classify` (pair lookup, token bucket, rate EMA,
//! demotion), `LeaseEngine::classify_packet` (the same plus the header traffic class: tag lookup
//! mid-path, tagging at the first hop, as the node calls it) and the port's `EgressScheduler`
//! (enqueue + dequeue).
//!
//! Run: `cargo bench -p pktmesh-benches --bench lease` (pin with `taskset -c 1` for one core).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pktmesh_crypto_auth::PrivateKey;
use pktmesh_lease_engine::priority::{network_tag, tagged, FREE_TAG};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Command, Config, Lease, Message, VirtualSwitchLease};
use pktmesh_lease_engine::{
    EgressScheduler, EngineConfig, Enqueued, LeaseEngine, LeaseId, Nanos, Priority, UnixTime,
};

const BATCH: usize = 1024;
const OUT_IF: u16 = 10;
const NOW: UnixTime = UnixTime(1_800_000_000);

fn signer(seed: u8) -> (PrivateKey, Signer) {
    let k = PrivateKey::from_bytes([seed; 32]);
    let s = Signer::from_cjdns(&k);
    (k, s)
}

/// A node with leases of 20/30/40 Mbit/s from interfaces 2, 3, 4 to interface 10, set up through
/// signed messages; interface 9 carries free-tier traffic.
fn engine() -> LeaseEngine {
    let (node_k, node) = signer(1);
    let (q_k, _) = signer(2);
    let mut engine = LeaseEngine::new(node.public(), EngineConfig::default());
    engine.peer_up(q_k.public_key(), OUT_IF);
    for (i, kbps) in [20_000u32, 30_000, 40_000].into_iter().enumerate() {
        let (up_k, up) = signer(10 + i as u8);
        let (_, owner) = signer(20 + i as u8);
        engine.peer_up(up_k.public_key(), 2 + i as u16);
        let inl = Lease {
            id: LeaseId([0x10 + i as u8; 16]),
            node: up.public(),
            peer: *node_k.public_key().as_bytes(),
            kbps,
            start: UnixTime(NOW.0 - 1),
            end: UnixTime(NOW.0 + 3600),
            owner: owner.public(),
        };
        let out = Lease {
            id: LeaseId([0x20 + i as u8; 16]),
            node: node.public(),
            peer: *q_k.public_key().as_bytes(),
            ..inl
        };
        let vs = VirtualSwitchLease {
            id: LeaseId([0x30 + i as u8; 16]),
            node: node.public(),
            owner: owner.public(),
            start: inl.start,
            end: inl.end,
            ins: vec![inl.id],
            outs: vec![out.id],
        };
        let msgs = [
            Message::Lease(inl).emit_signed(&up),
            Message::Lease(out).emit_signed(&node),
            Message::VirtualSwitch(vs.clone()).emit_signed(&node),
        ];
        for m in msgs {
            engine.handle_message(NOW, &m.unwrap()).unwrap();
        }
        for (seq, id) in [inl.id, out.id, vs.id].into_iter().enumerate() {
            let c = Config {
                target: id,
                signer: owner.public(),
                seq: seq as u64 + 1,
                command: Command::Attach {
                    network: 1 + i as u64,
                },
            };
            engine
                .handle_message(NOW, &Message::Config(c).emit_signed(&owner).unwrap())
                .unwrap();
        }
    }
    engine
}

/// Arrival interfaces of a batch: the three leases, free tier, in a fixed pseudo-random mix.
fn arrivals() -> Vec<u16> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..BATCH)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            [2, 3, 4, 9][(x % 4) as usize]
        })
        .collect()
}

fn per_packet(c: &mut Criterion) {
    let arrivals = arrivals();
    let mut group = c.benchmark_group("lease");
    group.throughput(Throughput::Elements(BATCH as u64));

    // 1250-byte packets 100 ns apart: every lease is far over its rate, so the demotion path
    // (division, error diffusion) runs as well as the in-lease path.
    let mut e = engine();
    let mut t = 0u64;
    group.bench_function("classify_batch1024", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for &a in &arrivals {
                t += 100;
                acc += u32::from(e.classify(Nanos(t), a, OUT_IF, 1250, 0xffff).level());
            }
            black_box(acc)
        })
    });

    // The node's call: `classify_packet` with the header's traffic class. First hop: packets
    // arrive untagged (0xffff) and leave tagged with their network. Mid-path: packets arrive
    // tagged by the previous pktmesh switch (networks 1..3, or FREE_TAG) and are found by tag.
    let mut e = engine();
    let mut t = 0u64;
    group.bench_function("classify_packet_first_hop_batch1024", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for &a in &arrivals {
                t += 100;
                let c = e.classify_packet(Nanos(t), a, OUT_IF, 1250, 0xffff);
                acc += u32::from(c.priority.level()) + u32::from(c.traffic_class);
            }
            black_box(acc)
        })
    });
    let tcs: Vec<u16> = arrivals
        .iter()
        .map(|&a| match a {
            2..=4 => tagged(network_tag(u64::from(a) - 1), 0),
            _ => tagged(FREE_TAG, 0),
        })
        .collect();
    let mut e = engine();
    // The tags must be found (else this would measure the free-tier shortcut).
    assert!(e
        .classify_packet(Nanos(0), 2, OUT_IF, 100, tagged(network_tag(1), 0))
        .priority
        .is_in_lease());
    let mut t = 0u64;
    group.bench_function("classify_packet_tagged_batch1024", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for (&a, &tc) in arrivals.iter().zip(&tcs) {
                t += 100;
                let c = e.classify_packet(Nanos(t), a, OUT_IF, 1250, tc);
                acc += u32::from(c.priority.level()) + u32::from(c.traffic_class);
            }
            black_box(acc)
        })
    });

    let mut port: EgressScheduler<u32> = EgressScheduler::new(256);
    let prios: Vec<Priority> = (0..BATCH)
        .map(|i| Priority::new((i * 37 % 64) as u8).unwrap())
        .collect();
    group.bench_function("enqueue_dequeue_batch1024", |b| {
        b.iter(|| {
            let mut sent = 0u32;
            for (i, &p) in prios.iter().enumerate() {
                if !matches!(port.enqueue(Nanos(0), p, 1250, i as u32), Enqueued::Queued) {
                    sent += 1;
                }
                if i % 2 == 1 {
                    sent += port.dequeue(Nanos(0)).map_or(0, |d| d.token);
                }
            }
            while let Some(d) = port.dequeue(Nanos(0)) {
                sent += d.token;
            }
            black_box(sent)
        })
    });

    // The whole per-packet addition on a full port: classify, enqueue (with evictions once the
    // 256 slots fill), and one dequeue per packet.
    let mut e = engine();
    let mut port: EgressScheduler<u32> = EgressScheduler::new(256);
    let mut t = 0u64;
    group.bench_function("classify_enqueue_dequeue_batch1024", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for (i, &a) in arrivals.iter().enumerate() {
                t += 100;
                let now = Nanos(t);
                let p = e.classify(now, a, OUT_IF, 1250, 0xffff);
                match port.enqueue(now, p, 1250, i as u32) {
                    Enqueued::Queued => {}
                    Enqueued::QueuedEvicting(d) | Enqueued::Dropped(d) => acc += d.token,
                }
                if i % 4 != 0 {
                    acc += port.dequeue(now).map_or(0, |d| d.token);
                }
            }
            black_box(acc)
        })
    });
    group.finish();
}

criterion_group!(benches, per_packet);
criterion_main!(benches);
