//! Forwarding-plane benchmarks: SwitchCore decisions over a batch of 1420-byte packets held in
//! memory (header rewrite only), and the RFC 1071 control-message checksum.
//!
//! Run: `cargo bench -p pktmesh-benches --bench switch` (pin with `taskset -c 1` for one core).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pktmesh_switch::control::checksum;
use pktmesh_switch::header::SwitchHeaderRepr;
use pktmesh_switch::{EncodingScheme, Forward, Label, SwitchCore};

const BATCH: usize = 1024;
const PACKET_LEN: usize = 1420;

/// A switch with 40 peers and a batch of packets arriving from various peers with 4-, 7- and
/// 10-bit directors, as a transit node sees them.
/// Arrival slot and arrival header of each packet in the batch.
type Arrivals = Vec<(u16, [u8; 12])>;

fn setup() -> (SwitchCore, Arrivals, Vec<u8>) {
    let scheme = EncodingScheme::v358();
    let mut switch = SwitchCore::new(scheme);
    for _ in 0..40 {
        switch.add_interface().unwrap();
    }
    let mut headers = Vec::with_capacity(BATCH);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    while headers.len() < BATCH {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let from = (seed % 41) as u16;
        let to = ((seed >> 16) % 41) as u32;
        if from == 1 || to == 1 || u32::from(from) == to {
            continue;
        }
        // Forward director wide enough for the return director, then the rest of a path.
        let natural = scheme.serialize_director(to, None).unwrap();
        let source_form = scheme.natural_form(u32::from(from)).unwrap();
        let form = natural.1.max(source_form);
        let (dir, form) = scheme.serialize_director(to, Some(form)).unwrap();
        let width = scheme.forms()[form].width();
        let rest = Label::new(0x153).unwrap();
        let label = (rest.bits() << width) | dir;
        headers.push((from, SwitchHeaderRepr::new(label).to_bytes()));
    }
    let packets = vec![0xa5u8; BATCH * PACKET_LEN];
    (switch, headers, packets)
}

fn forwarding(c: &mut Criterion) {
    let (switch, headers, packets) = setup();
    let mut group = c.benchmark_group("switch");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut packets = packets;
    group.bench_function("forward_1420B_batch1024", |b| {
        b.iter(|| {
            let mut delivered = 0u32;
            for (packet, (from, header)) in packets.chunks_exact_mut(PACKET_LEN).zip(&headers) {
                // Restore the arrival header (12 bytes) so every round makes the same decisions.
                packet[..12].copy_from_slice(header);
                if let Forward::Deliver { .. } = switch.forward(*from, packet) {
                    delivered += 1;
                }
            }
            assert_eq!(delivered as usize, BATCH);
            black_box(delivered)
        })
    });
    group.finish();
}

fn control_checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("control");
    for len in [64usize, 1420] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("checksum_{len}B"), |b| {
            b.iter(|| checksum(black_box(&data)))
        });
    }
    group.finish();
}

criterion_group!(benches, forwarding, control_checksum);
criterion_main!(benches);
