//! `synthetic_block_pcp_v2.json` and `pkt_genesis_block_wire.hex`: header, coinbase and
//! commitment, PcP wire, proof-tree root from all 64 announcements, work hash, effective
//! target, full validation, and the negative cases.

mod common;
use common::*;
use pktmesh_chain::announce::AnnError;
use pktmesh_chain::block::{
    block_work_hash, pcp_hash, validate_block_proof, AnnSetTree, BlockError, BlockHeader,
    CoinbaseCommitment, PcProof, ProofError, Tx,
};
use pktmesh_chain::difficulty::effective_target;
use pktmesh_chain::hash::{b2b256, reversed};
use pktmesh_chain::params;

struct Synth {
    v: serde_json::Value,
    header: BlockHeader,
    pcp: PcProof,
    commit: CoinbaseCommitment,
    parents: [[u8; 32]; 4],
    height: u32,
}

fn synth() -> Synth {
    let v = json("synthetic_block_pcp_v2.json");
    let header = BlockHeader::parse(&unhex(v["header_hex"].as_str().unwrap())).unwrap();
    let pcp = PcProof::parse(&unhex(v["pcp_wire_hex"].as_str().unwrap())).unwrap();
    let commit =
        CoinbaseCommitment::from_slice(&unhex(v["coinbase_commitment_hex"].as_str().unwrap()))
            .unwrap();
    let p = arr32(v["ann_parent_block_hash_raw"].as_str().unwrap());
    let height = v["block_height"].as_u64().unwrap() as u32;
    Synth {
        v,
        header,
        pcp,
        commit,
        parents: [p; 4],
        height,
    }
}

#[test]
fn header_ids_and_coinbase() {
    let s = synth();
    assert_eq!(
        hex::encode(s.header.block_hash_display()),
        s.v["block_hash_display"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(s.header.pc_seed()),
        s.v["header_blake2b256_raw"].as_str().unwrap()
    );
    assert_eq!(s.header.bits, u32_hex(s.v["block_bits"].as_str().unwrap()));
    let tx = Tx::parse(&unhex(s.v["coinbase_tx_hex"].as_str().unwrap())).unwrap();
    assert_eq!(
        hex::encode(reversed(&tx.txid)),
        s.v["coinbase_txid_display"].as_str().unwrap()
    );
    assert_eq!(tx.coinbase_height(), Some(s.height));
    assert_eq!(tx.pc_commitment().unwrap(), s.commit);
    assert_eq!(
        s.header.merkle_root, tx.txid,
        "single-transaction block: merkle root = coinbase txid"
    );
    // Reward and Network Steward output at this height.
    assert_eq!(
        params::block_reward(s.height),
        s.v["subsidy_units"].as_u64().unwrap()
    );
    assert_eq!(
        params::steward_share(s.height),
        s.v["steward_tax_units"].as_u64().unwrap()
    );
    let steward = unhex(params::INITIAL_STEWARD_SCRIPT_HEX);
    let out = tx
        .outputs
        .iter()
        .find(|o| o.script == steward)
        .expect("steward output");
    assert_eq!(out.value, params::steward_share(s.height));
    assert_eq!(
        s.commit.ann_min_target(),
        u32_hex(s.v["ann_min_work_target"].as_str().unwrap())
    );
    assert_eq!(s.commit.ann_count(), s.v["ann_count"].as_u64().unwrap());
    assert_eq!(
        hex::encode(s.commit.merkle_root()),
        s.v["proof_tree_root_hash_raw"].as_str().unwrap()
    );
}

#[test]
fn pcp_wire_and_block_wire() {
    let s = synth();
    let wire = unhex(s.v["pcp_wire_hex"].as_str().unwrap());
    assert_eq!(s.pcp.version, 2);
    assert_eq!(u64::from(s.pcp.nonce), s.v["pcp_nonce"].as_u64().unwrap());
    assert!(s.pcp.is_canonical());
    assert_eq!(s.pcp.wire_len, wire.len());
    assert_eq!(s.pcp.serialize(), wire);
    assert_eq!(
        hex::encode(&s.pcp.tree_proof),
        s.v["proof_tree_hex"].as_str().unwrap()
    );
    for (ann, h) in s
        .pcp
        .anns
        .iter()
        .zip(s.v["ann_hashes_blake2b256"].as_array().unwrap())
    {
        assert_eq!(hex::encode(b2b256(ann)), h.as_str().unwrap());
    }
    let block = unhex(s.v["block_wire_hex"].as_str().unwrap());
    assert_eq!(BlockHeader::parse(&block).unwrap(), s.header);
    let pcp = PcProof::parse(&block[80..]).unwrap();
    assert_eq!(pcp, s.pcp);
    let rest = &block[80 + pcp.wire_len..];
    assert_eq!(rest[0], 1, "one transaction");
    assert_eq!(
        hex::encode(&rest[1..]),
        s.v["coinbase_tx_hex"].as_str().unwrap()
    );
}

#[test]
fn work_hash_effective_target_and_indexes() {
    let s = synth();
    let mut idx = [0u64; 4];
    let wh = block_work_hash(&s.header, s.pcp.nonce, &s.pcp.anns, &mut idx);
    assert_eq!(hex::encode(wh), s.v["work_hash_raw"].as_str().unwrap());
    let llocs: Vec<u64> = idx.iter().map(|i| i % 64).collect();
    let want: Vec<u64> = s.v["ann_tree_indexes_llocs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(llocs, want);
    let eff = effective_target(
        s.header.bits,
        s.commit.ann_min_target(),
        s.commit.ann_count(),
        2,
    );
    assert_eq!(eff, u32_hex(s.v["effective_target"].as_str().unwrap()));
    let root = pcp_hash(
        &s.pcp.anns.map(|a| b2b256(&a)),
        s.commit.ann_count(),
        &idx,
        &s.pcp.tree_proof,
    )
    .unwrap();
    assert_eq!(root, s.commit.merkle_root());
}

#[test]
fn tree_rebuilt_from_all_64_announcements() {
    let s = synth();
    let anns: Vec<Vec<u8>> = s.v["all_anns_sorted_by_hash_prefix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| unhex(a.as_str().unwrap()))
        .collect();
    assert_eq!(anns.len(), 64);
    let hashes: Vec<[u8; 32]> = anns.iter().map(|a| b2b256(a)).collect();
    let (tree, order) = AnnSetTree::build(&hashes);
    assert_eq!(tree.count(), 64);
    assert_eq!(
        order,
        (0..64).collect::<Vec<_>>(),
        "vector is already sorted by hash prefix"
    );
    assert_eq!(tree.root(), s.commit.merkle_root());
    let mut idx = [0u64; 4];
    block_work_hash(&s.header, s.pcp.nonce, &s.pcp.anns, &mut idx);
    for (j, i) in idx.iter().enumerate() {
        assert_eq!(anns[(i % 64) as usize], s.pcp.anns[j][..]);
    }
    assert_eq!(
        tree.proof(&idx).unwrap(),
        s.pcp.tree_proof,
        "prover reproduces the reference proof"
    );
    // Every announcement of the set validates.
    let mut v = pktmesh_chain::announce::AnnValidator::new();
    for a in &anns {
        v.check(a, &s.parents[0], 2).unwrap();
    }
}

#[test]
fn full_validation_accepts() {
    at_every_level(full_validation_accepts_once);
}

fn full_validation_accepts_once() {
    let s = synth();
    let ok = validate_block_proof(&s.header, &s.pcp, &s.commit, &s.parents, s.height).unwrap();
    assert_eq!(
        hex::encode(ok.work_hash),
        s.v["work_hash_raw"].as_str().unwrap()
    );
    assert_eq!(ok.effective_target, 0x1f07ffff);
}

#[test]
fn flipped_announcement_bit_is_rejected() {
    let mut s = synth();
    s.pcp.anns[2][500] ^= 0x10;
    let e = validate_block_proof(&s.header, &s.pcp, &s.commit, &s.parents, s.height).unwrap_err();
    // The announcement is part of the work hash, so the hash changes first.
    assert!(
        matches!(
            e,
            BlockError::InsufficientWork { .. } | BlockError::Ann { index: 2, .. }
        ),
        "{e:?}"
    );
}

#[test]
fn wrong_parent_hash_is_rejected() {
    let mut s = synth();
    s.parents[1][0] ^= 1;
    let e = validate_block_proof(&s.header, &s.pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert_eq!(
        e,
        BlockError::Ann {
            index: 1,
            error: AnnError::InvalidItem4
        }
    );
}

#[test]
fn too_young_announcement_is_rejected() {
    let s = synth();
    let e =
        validate_block_proof(&s.header, &s.pcp, &s.commit, &s.parents, s.height - 1).unwrap_err();
    assert_eq!(e, BlockError::AnnTooYoung { index: 0, age: 2 });
    // Parent above the block height is rejected before anything else.
    let e = validate_block_proof(&s.header, &s.pcp, &s.commit, &s.parents, 999_996).unwrap_err();
    assert!(matches!(e, BlockError::AnnParentTooHigh { .. }), "{e:?}");
}

#[test]
fn aged_announcement_is_rejected() {
    let s = synth();
    // One block later the v2 aged target (doubled) no longer fits: unusable.
    let e =
        validate_block_proof(&s.header, &s.pcp, &s.commit, &s.parents, s.height + 1).unwrap_err();
    assert!(
        matches!(e, BlockError::AnnInsufficientWork { index: 0, .. }),
        "{e:?}"
    );
}

#[test]
fn non_canonical_pcp_is_rejected() {
    let s = synth();
    let wire = unhex(s.v["pcp_wire_hex"].as_str().unwrap());
    let end = wire.len() - 2;
    // An unknown entity before the end marker.
    let mut w = wire[..end].to_vec();
    w.extend_from_slice(&[0x09, 0x02, 0xaa, 0xbb, 0x00, 0x00]);
    let pcp = PcProof::parse(&w).unwrap();
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert!(matches!(e, BlockError::NonCanonical { .. }), "{e:?}");
    // A duplicated version entity.
    let mut w = wire[..end].to_vec();
    w.extend_from_slice(&[0x04, 0x01, 0x02, 0x00, 0x00]);
    let pcp = PcProof::parse(&w).unwrap();
    assert!(!pcp.is_canonical());
    // A non-minimal varint is refused by the parser itself.
    let mut w = vec![0x01, 0xfe];
    w.extend_from_slice(&(wire.len() as u32).to_le_bytes());
    assert_eq!(PcProof::parse(&w), Err(BlockError::NonCanonicalVarint));
    // Signatures before the pcp entity.
    assert_eq!(
        PcProof::parse(&[0x02, 0x00, 0x00, 0x00]),
        Err(BlockError::EntityBeforePcp("signatures"))
    );
    assert_eq!(PcProof::parse(&[0x00, 0x00]), Err(BlockError::MissingPcp));
}

#[test]
fn wrong_tree_branch_is_rejected() {
    let s = synth();
    // A flipped bit in a provided hash: the root changes.
    let mut pcp = s.pcp.clone();
    let n = pcp.tree_proof.len();
    pcp.tree_proof[n - 1] ^= 1;
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert_eq!(e, BlockError::RootMismatch);
    // A truncated and an over-long proof.
    let mut pcp = s.pcp.clone();
    pcp.tree_proof.truncate(n - 8);
    pcp.wire_len -= 8;
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert!(
        matches!(
            e,
            BlockError::TreeProof(ProofError::Runt) | BlockError::NonCanonical { .. }
        ),
        "{e:?}"
    );
    let mut idx = [0u64; 4];
    block_work_hash(&s.header, s.pcp.nonce, &s.pcp.anns, &mut idx);
    let hashes = s.pcp.anns.map(|a| b2b256(&a));
    let mut long = s.pcp.tree_proof.clone();
    long.push(0);
    assert_eq!(
        pcp_hash(&hashes, 64, &idx, &long),
        Err(ProofError::ExtraData)
    );
    assert_eq!(
        pcp_hash(&hashes, 64, &idx, &s.pcp.tree_proof[..100]),
        Err(ProofError::Runt)
    );
    // Two equal leaves conflict (a duplicated announcement).
    let dup = [hashes[0], hashes[0], hashes[2], hashes[3]];
    assert!(pcp_hash(&dup, 64, &idx, &s.pcp.tree_proof).is_err());
    // A wrong committed count changes the leaf positions.
    let e = pcp_hash(&hashes, 65, &idx, &s.pcp.tree_proof);
    assert!(e.map(|r| r != s.commit.merkle_root()).unwrap_or(true));
}

#[test]
fn work_missing_target_is_rejected() {
    let s = synth();
    let mut header = s.header;
    header.bits = 0x1c0f_ffff;
    let e = validate_block_proof(&header, &s.pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert!(matches!(e, BlockError::InsufficientWork { .. }), "{e:?}");
    let mut pcp = s.pcp.clone();
    pcp.nonce ^= 1;
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert!(
        matches!(
            e,
            BlockError::InsufficientWork { .. }
                | BlockError::TreeProof(_)
                | BlockError::RootMismatch
        ),
        "{e:?}"
    );
}

#[test]
fn bad_commitment_and_version_are_rejected() {
    let s = synth();
    let mut c = s.commit;
    c.bytes[0] ^= 1;
    assert_eq!(
        validate_block_proof(&s.header, &s.pcp, &c, &s.parents, s.height),
        Err(BlockError::BadCoinbase)
    );
    let c = CoinbaseCommitment::new(0x2100_ffff, &s.commit.merkle_root(), 64);
    assert_eq!(
        validate_block_proof(&s.header, &s.pcp, &c, &s.parents, s.height),
        Err(BlockError::BadCoinbase)
    );
    let mut pcp = s.pcp.clone();
    pcp.version = 1;
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert!(matches!(e, BlockError::PcpVersionNotAllowed { .. }));
}

#[test]
fn genesis_block() {
    let text = read_vector("pkt_genesis_block_wire.hex");
    let wire = unhex(&text);
    assert_eq!(&wire[..4], &[0xf9, 0xbe, 0xb4, 0xd9]);
    let len = u32::from_le_bytes([wire[4], wire[5], wire[6], wire[7]]) as usize;
    let block = &wire[8..];
    assert_eq!(block.len(), len);
    let header = BlockHeader::parse(block).unwrap();
    assert_eq!(
        hex::encode(header.block_hash_display()),
        params::GENESIS_HASH_DISPLAY
    );
    assert_eq!(header.bits, params::POW_LIMIT_BITS);
    assert_eq!(header.nonce, 0);
    // Its PcP holds placeholder data but is still well-formed TLV.
    let pcp = PcProof::parse(&block[80..]).unwrap();
    let rest = &block[80 + pcp.wire_len..];
    let tx = Tx::parse(&rest[1..]).unwrap();
    assert_eq!(header.merkle_root, tx.txid);
}

#[test]
fn signing_key_and_content_rules() {
    let s = synth();
    // An announcement with a signing key needs a valid signature of its 1024 bytes.
    let sk = ed25519_dalek::SigningKey::from_bytes(&[0x11; 32]);
    let mut pcp = s.pcp.clone();
    pcp.anns[1][56..88].copy_from_slice(sk.verifying_key().as_bytes());
    pcp.wire_len = pcp.canonical_size();
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert_eq!(e, BlockError::BadSignature(1));
    pcp.signatures[1] = Some([0u8; 64]);
    pcp.wire_len = pcp.canonical_size();
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert_eq!(e, BlockError::BadSignature(1));
    use ed25519_dalek::Signer;
    pcp.signatures[1] = Some(sk.sign(&pcp.anns[1]).to_bytes());
    pcp.wire_len = pcp.canonical_size();
    // The signature rule passes; the changed announcement then changes the work hash.
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert!(matches!(e, BlockError::InsufficientWork { .. }), "{e:?}");
    // The signature survives the wire format.
    let back = PcProof::parse(&pcp.serialize()).unwrap();
    assert_eq!(back.signatures, pcp.signatures);
    // PcP v2 must not carry content proofs.
    let mut pcp = s.pcp.clone();
    pcp.content_proofs = Some(vec![0u8; 32]);
    pcp.wire_len = pcp.canonical_size();
    let e = validate_block_proof(&s.header, &pcp, &s.commit, &s.parents, s.height).unwrap_err();
    assert!(matches!(e, BlockError::ContentProof(_)), "{e:?}");
}
