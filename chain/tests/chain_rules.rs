//! `difficulty.json` plus the PKT reward schedule and steward share at several heights.

mod common;
use common::*;
use pktmesh_chain::difficulty::*;
use pktmesh_chain::params::*;

#[test]
fn effective_targets() {
    let v = json("difficulty.json");
    for c in v["effective_target"].as_array().unwrap() {
        let bits = u32_hex(c["block_bits"].as_str().unwrap());
        let amt = u32_hex(c["ann_min_target"].as_str().unwrap());
        let n = c["ann_count"].as_u64().unwrap();
        assert_eq!(
            effective_target(bits, amt, n, 2),
            u32_hex(c["effective_target_pcp_v2"].as_str().unwrap()),
            "{c}"
        );
        assert_eq!(
            effective_target(bits, amt, n, 1),
            u32_hex(c["effective_target_pcp_v1"].as_str().unwrap()),
            "{c}"
        );
    }
    assert_eq!(effective_target(0x1f0fffff, 0x207fffff, 0, 2), 0);
}

#[test]
fn aged_targets() {
    let v = json("difficulty.json");
    for c in v["aged_ann_target"].as_array().unwrap() {
        let t = u32_hex(c["ann_target"].as_str().unwrap());
        let age = c["age_blocks"].as_u64().unwrap() as u32;
        assert_eq!(
            aged_ann_target(t, age, 2),
            u32_hex(c["aged_target_v2"].as_str().unwrap()),
            "{c}"
        );
        assert_eq!(
            aged_ann_target(t, age, 1),
            u32_hex(c["aged_target_v1"].as_str().unwrap()),
            "{c}"
        );
    }
}

#[test]
fn soft_nonce_max() {
    let v = json("difficulty.json");
    for c in v["ann_soft_nonce_max"].as_array().unwrap() {
        let t = u32_hex(c["work_bits"].as_str().unwrap());
        assert_eq!(
            u64::from(ann_soft_nonce_max(t)),
            c["soft_nonce_max"].as_u64().unwrap(),
            "{c}"
        );
    }
}

#[test]
fn compact_and_work() {
    let v = json("difficulty.json");
    for c in v["compact"].as_array().unwrap() {
        let compact = u32_hex(c["compact"].as_str().unwrap());
        let t = compact_to_big(compact);
        let want =
            num_bigint::BigInt::parse_bytes(c["target_hex"].as_str().unwrap().as_bytes(), 16)
                .unwrap();
        assert_eq!(t, want);
        assert_eq!(big_to_compact(&t), compact);
        let w = num_bigint::BigInt::parse_bytes(
            c["work_2^256_div_(target+1)"].as_str().unwrap().as_bytes(),
            16,
        )
        .unwrap();
        assert_eq!(work_for_target(&t), w);
    }
    assert!(is_hash_ok(&[0u8; 32], 0x1d00ffff));
    let mut h = [0u8; 32];
    h[31] = 0x01;
    assert!(!is_hash_ok(&h, 0x1d00ffff));
    // Negative compact values never validate a hash.
    assert!(!is_hash_ok(&[0u8; 32], 0x0480_0001));
    assert!(!is_ann_min_target_ok(0, 2));
    assert!(!is_ann_min_target_ok(0x2080_0000, 2));
    assert!(is_ann_min_target_ok(0x207f_ffff, 2));
}

#[test]
fn reward_schedule() {
    // (height, subsidy units, steward units) from the spec's table.
    for (h, s, t) in [
        (0u32, 4_473_208_438_784u64, 891_146_993_664u64),
        (143_999, 4_473_208_438_784, 891_146_993_664),
        (144_000, 4_025_887_594_905, 802_032_294_297),
        (1_000_000, 2_377_246_365_915, 473_592_049_459),
        (1_152_000, 1_925_569_556_391, 383_609_560_062),
        (1_296_000, 1_733_012_600_752, 345_248_604_056),
        (2_000_000, 1_137_029_567_353, 226_517_609_121),
    ] {
        assert_eq!(block_reward(h), s, "height {h}");
        assert_eq!(steward_share(h), t, "height {h}");
    }
    assert_eq!(block_reward(0), 4166 * UNITS_PER_PKT);
    assert!(is_pcp_version_allowed(2, 113_949) && !is_pcp_version_allowed(2, 113_948));
    assert!(is_pcp_version_allowed(1, 122_621) && !is_pcp_version_allowed(1, 122_622));
}
