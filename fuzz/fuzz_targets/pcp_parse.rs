//! Fuzz the PcP TLV parser, its canonical-form check and serializer, the tree-proof
//! evaluator and the transaction parser. Parsing must never panic, and a parsed proof must
//! survive serialize → parse unchanged (and then be canonical).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_chain::block::{pcp_hash, PcProof, Tx};
use pktmesh_chain::hash::b2b256;

fuzz_target!(|data: &[u8]| {
    let _ = Tx::parse(data);
    if let Ok(p) = PcProof::parse(data) {
        let _ = p.is_canonical();
        let wire = p.serialize();
        let q = PcProof::parse(&wire).expect("serialized proof must parse");
        assert!(q.is_canonical(), "serialized proof must be canonical");
        assert_eq!(q.wire_len, wire.len());
        let mut norm = p.clone();
        if norm.content_proofs.as_ref().is_some_and(|c| c.is_empty()) {
            norm.content_proofs = None;
        }
        norm.wire_len = q.wire_len;
        assert!(norm == q, "round trip changed the proof");
        // Evaluate its tree proof against item numbers derived from the nonce.
        let hashes = p.anns.map(|a| b2b256(&a));
        let count = u64::from(p.nonce % 5000) + 1;
        let idx = [0, 1, 2, 3].map(|i| {
            u64::from(p.nonce)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(i * 16)
        });
        let _ = pcp_hash(&hashes, count, &idx, &p.tree_proof);
    }
    // Tree proofs over arbitrary bytes.
    if data.len() >= 16 {
        let count = u64::from_le_bytes(data[..8].try_into().unwrap());
        let seed = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let hashes = [0u8, 1, 2, 3].map(|i| b2b256(&[i, data.len() as u8]));
        let idx = [0, 1, 2, 3].map(|i| seed.rotate_left(i * 13));
        let _ = pcp_hash(&hashes, count, &idx, &data[16..]);
    }
});
