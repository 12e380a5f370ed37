//! PacketCrypt benchmarks: one CryptoCycle update, one ann-hash attempt (the announcement
//! miner's inner loop), one block hash, one v1 table item, and validation of the real mainnet
//! announcement and of the synthetic PcP-v2 block (full, and work hash + tree proof only).
//!
//! Run: `cargo bench -p pktmesh-benches --bench mining`; for the figures compared with the C
//! reference (built with `-march=native`) add `RUSTFLAGS="-C target-cpu=native"`.
#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pktmesh_chain::announce::AnnValidator;
use pktmesh_chain::block::{
    block_work_hash, pcp_hash, validate_block_proof, BlockHeader, CoinbaseCommitment, PcProof,
};
use pktmesh_chain::cryptocycle::State;
use pktmesh_chain::hash::b2b256;
use pktmesh_chain::item::ItemBuilder;
use pktmesh_chain::randhash::Program;
use pktmesh_miner::ann::{AnnJob, AnnTables};
use pktmesh_miner::block::hash_with_table;
use serde_json::Value;

fn vector(name: &str) -> Value {
    let path = format!(
        "{}/../../shared/vectors/packetcrypt/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).expect("vector file"))
        .expect("vector json")
}

fn unhex(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().expect("field")).expect("hex")
}

fn cryptocycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("cryptocycle");
    let mut s = State::new();
    s.init(&[1u8; 32], 7);
    let item = [0x5au8; 1024];
    g.throughput(Throughput::Elements(1));
    g.bench_function("update", |b| b.iter(|| s.update(black_box(&item))));
    g.bench_function("final_blake2b_2048", |b| b.iter(|| s.finalize()));
    g.bench_function("smul", |b| b.iter(|| s.smul()));
    g.finish();
}

fn ann_mining(c: &mut Criterion) {
    let job = AnnJob {
        parent_hash: [7u8; 32],
        parent_height: 1_000_000,
        work_bits: 0x0300_0001,
        content_type: 0,
        content: Vec::new(),
        signing_key: [0u8; 32],
    };
    let tables = AnnTables::build(&job, 1).expect("tables");
    let mut state = State::new();
    let mut sn = 0u32;
    let mut g = c.benchmark_group("ann_mining");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ann_hash_attempt", |b| {
        b.iter(|| {
            sn = (sn + 1) & 0xff_ffff;
            black_box(tables.attempt(sn, &mut state))
        })
    });
    let seed = [3u8; 32];
    let prog = Program::create(&seed).expect("program");
    let mut builder = ItemBuilder::new();
    let mut item = [0u8; 1024];
    let mut n = 0u64;
    g.bench_function("mkitem2", |b| {
        b.iter(|| {
            n = (n + 1) % 8192;
            builder.mkitem2(n, &seed, &prog, &mut item).expect("item")
        })
    });
    g.finish();
}

fn block_mining(c: &mut Criterion) {
    // 64 MiB of announcement-sized records: larger than the caches, like a real set.
    let table: Vec<[u8; 1024]> = (0..65536u32)
        .map(|i| {
            let mut a = [0u8; 1024];
            pktmesh_chain::hash::hash_expand(&mut a, &[9u8; 32], i);
            a
        })
        .collect();
    let mut state = State::new();
    let mut idx = [0u64; 4];
    let mut nonce = 0u32;
    let mut g = c.benchmark_group("block_mining");
    g.throughput(Throughput::Elements(1));
    g.bench_function("block_hash_64MiB", |b| {
        b.iter(|| {
            nonce = nonce.wrapping_add(1);
            black_box(hash_with_table(
                &table, &[1u8; 32], nonce, &mut state, &mut idx,
            ))
        })
    });
    g.finish();
}

fn validation(c: &mut Criterion) {
    let real = vector("real_ann_v1_mainnet.json");
    let ann = unhex(&real, "ann_hex");
    let parent: [u8; 32] = unhex(&real, "parent_block_hash_raw")
        .try_into()
        .expect("32 bytes");
    let mut v = AnnValidator::new();
    let mut g = c.benchmark_group("validation");
    g.bench_function("check_ann_v1_mainnet", |b| {
        b.iter(|| v.check(black_box(&ann), &parent, 2).expect("valid"))
    });

    let s = vector("synthetic_block_pcp_v2.json");
    let header = BlockHeader::parse(&unhex(&s, "header_hex")).expect("header");
    let pcp = PcProof::parse(&unhex(&s, "pcp_wire_hex")).expect("pcp");
    let commit =
        CoinbaseCommitment::from_slice(&unhex(&s, "coinbase_commitment_hex")).expect("commitment");
    let p: [u8; 32] = unhex(&s, "ann_parent_block_hash_raw")
        .try_into()
        .expect("32 bytes");
    let height = s["block_height"].as_u64().expect("height") as u32;
    g.bench_function("validate_block_proof_full", |b| {
        b.iter(|| {
            validate_block_proof(&header, black_box(&pcp), &commit, &[p; 4], height).expect("valid")
        })
    });
    g.bench_function("block_work_hash_and_tree_proof", |b| {
        b.iter(|| {
            let mut idx = [0u64; 4];
            black_box(block_work_hash(&header, pcp.nonce, &pcp.anns, &mut idx));
            let hashes = pcp.anns.map(|a| b2b256(&a));
            pcp_hash(&hashes, commit.ann_count(), &idx, &pcp.tree_proof).expect("root")
        })
    });
    g.finish();
}

criterion_group!(benches, cryptocycle, ann_mining, block_mining, validation);
criterion_main!(benches);
