//! The miners' output is accepted by the validator.

use pktmesh_chain::announce::check_ann;
use pktmesh_chain::block::{validate_block_proof, BlockHeader, CoinbaseCommitment, PcProof};
use pktmesh_miner::ann::{mine_anns, AnnJob};
use pktmesh_miner::block::BlockMiner;
use std::sync::atomic::{AtomicBool, AtomicU64};

fn vector() -> serde_json::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/packetcrypt/synthetic_block_pcp_v2.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).expect("vector")).expect("json")
}

fn arr32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn mined_announcements_validate() {
    let job = AnnJob {
        parent_hash: [0x42; 32],
        parent_height: 500_000,
        work_bits: 0x2000_ffff,
        content_type: 7,
        content: b"pktmesh".to_vec(),
        signing_key: [0; 32],
    };
    let anns = mine_anns(&job, 2, 3, 1000, |_, _| {}).unwrap();
    assert_eq!(anns.len(), 3);
    for a in &anns {
        let c = check_ann(a, &job.parent_hash, 2).expect("mined announcement must validate");
        assert!(pktmesh_chain::difficulty::is_hash_ok(
            &c.work_hash,
            job.work_bits
        ));
        assert!(check_ann(a, &[0x43; 32], 2).is_err());
    }
}

#[test]
fn block_miner_reproduces_the_synthetic_block() {
    let v = vector();
    let anns: Vec<[u8; 1024]> = v["all_anns_sorted_by_hash_prefix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            hex::decode(a.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    let header =
        BlockHeader::parse(&hex::decode(v["header_hex"].as_str().unwrap()).unwrap()).unwrap();
    let commit = CoinbaseCommitment::from_slice(
        &hex::decode(v["coinbase_commitment_hex"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let miner = BlockMiner::new(&anns, 0x207f_ffff, 2).unwrap();
    assert_eq!(miner.commitment(), commit);
    let pcp = miner
        .mine(
            &header,
            0,
            1 << 20,
            &AtomicBool::new(false),
            &AtomicU64::new(0),
        )
        .unwrap()
        .expect("nonce");
    let parent = arr32(v["ann_parent_block_hash_raw"].as_str().unwrap());
    let height = v["block_height"].as_u64().unwrap() as u32;
    assert!(pcp.is_canonical());
    let reparsed = PcProof::parse(&pcp.serialize()).unwrap();
    assert_eq!(reparsed, pcp);
    let ok = validate_block_proof(&header, &reparsed, &commit, &[parent; 4], height).unwrap();
    // Scanning from nonce 0 finds the same first solution as the reference miner.
    assert_eq!(u64::from(pcp.nonce), v["pcp_nonce"].as_u64().unwrap());
    assert_eq!(
        hex::encode(pcp.serialize()),
        v["pcp_wire_hex"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(ok.work_hash),
        v["work_hash_raw"].as_str().unwrap()
    );
}
