//! `real_ann_v1_mainnet.json`: a real PKT mainnet announcement, its intermediates, and the
//! negative cases (flipped bit, wrong parent hash, version rules, soft nonce limit).

mod common;
use common::*;
use pktmesh_chain::announce::{check_ann, AnnError, Announcement};
use pktmesh_chain::hash::{b2b256, reversed};

struct Real {
    ann: Vec<u8>,
    parent: [u8; 32],
    v: serde_json::Value,
}

fn real() -> Real {
    let v = json("real_ann_v1_mainnet.json");
    let ann = unhex(v["ann_hex"].as_str().unwrap());
    let parent = arr32(v["parent_block_hash_raw"].as_str().unwrap());
    assert_eq!(
        reversed(&parent),
        arr32(v["parent_block_hash_display"].as_str().unwrap())
    );
    Real { ann, parent, v }
}

#[test]
fn real_ann_decodes() {
    let r = real();
    let a = Announcement::new_checked(&r.ann[..]).unwrap();
    let d = &r.v["decoded_header"];
    assert_eq!(u64::from(a.version()), d["version"].as_u64().unwrap());
    assert_eq!(u64::from(a.soft_nonce()), d["soft_nonce"].as_u64().unwrap());
    assert_eq!(u64::from(a.hard_nonce()), d["hard_nonce"].as_u64().unwrap());
    assert_eq!(a.work_bits(), u32_hex(d["work_bits"].as_str().unwrap()));
    assert_eq!(
        u64::from(a.parent_block_height()),
        d["parent_block_height"].as_u64().unwrap()
    );
    assert_eq!(
        hex::encode(a.signing_key()),
        d["signing_key"].as_str().unwrap()
    );
    assert_eq!(a.header_repr().emit()[..], r.ann[..88]);
    assert_eq!(
        hex::encode(b2b256(&r.ann)),
        r.v["expected"]["ann_hash_blake2b256_of_1024_bytes"]
            .as_str()
            .unwrap()
    );
    assert_eq!(
        hex::encode(a.merkle_root()),
        r.v["intermediate"]["merkle_root_field_bytes_920_984"]
            .as_str()
            .unwrap()
    );
}

#[test]
fn real_ann_validates_with_intermediates() {
    at_every_level(real_ann_validates_with_intermediates_once);
}

fn real_ann_validates_with_intermediates_once() {
    let r = real();
    let pcp = r.v["packetcrypt_version_context"].as_u64().unwrap() as u32;
    let c = check_ann(&r.ann, &r.parent, pcp).expect("real announcement must validate");
    let e = &r.v["expected"];
    let i = &r.v["intermediate"];
    assert_eq!(
        hex::encode(c.work_hash),
        e["work_hash_raw"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(reversed(&c.work_hash)),
        e["work_hash_as_le_number_hex"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(c.ann_hash0),
        i["annHash0_blake2b512"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(c.ann_hash1),
        i["annHash1_blake2b512"].as_str().unwrap()
    );
    let want: Vec<u64> = i["item_numbers_in_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(
        c.item_nos.iter().map(|&n| u64::from(n)).collect::<Vec<_>>(),
        want
    );
    let seed = pktmesh_chain::announce::v1_table_seed(&r.ann[920..984], &c.ann_hash0);
    assert_eq!(
        hex::encode(seed),
        i["v1_seed_blake2b512_root_then_annHash0"].as_str().unwrap()
    );
    // Item hash prefixes of the four T1 items.
    let prog = pktmesh_chain::randhash::Program::create(&seed[..32].try_into().unwrap()).unwrap();
    let mut b = pktmesh_chain::item::ItemBuilder::new();
    for (n, want) in c
        .item_nos
        .iter()
        .zip(i["item_blake2b512_first16_bytes"].as_array().unwrap())
    {
        let mut item = [0u8; 1024];
        b.mkitem2(
            u64::from(*n),
            &seed[32..].try_into().unwrap(),
            &prog,
            &mut item,
        )
        .unwrap();
        assert_eq!(
            hex::encode(&pktmesh_chain::hash::b2b512(&item)[..16]),
            want.as_str().unwrap()
        );
    }
    assert_eq!(
        u64::from(pktmesh_chain::difficulty::ann_soft_nonce_max(0x2002_0000)),
        e["soft_nonce_max_for_work_bits"].as_u64().unwrap()
    );
}

#[test]
fn every_flipped_region_is_rejected() {
    let r = real();
    // One bit in each region: header, branch, root, item-4 prefix.
    for (byte, bit) in [
        (5usize, 0u8),
        (30, 3),
        (100, 7),
        (500, 1),
        (919, 4),
        (950, 2),
        (1000, 6),
        (1023, 0),
    ] {
        let mut ann = r.ann.clone();
        ann[byte] ^= 1 << bit;
        assert!(
            check_ann(&ann, &r.parent, 2).is_err(),
            "flip at byte {byte} bit {bit} accepted"
        );
    }
    // A flipped branch bit decrypts to a wrong sibling: merkle failure.
    let mut ann = r.ann.clone();
    ann[100] ^= 1;
    assert_eq!(check_ann(&ann, &r.parent, 2), Err(AnnError::InvalidMerkle));
    // A flipped prefix bit decrypts to a non-zero prefix.
    let mut ann = r.ann.clone();
    ann[1000] ^= 1;
    assert_eq!(check_ann(&ann, &r.parent, 2), Err(AnnError::InvalidItem4));
}

#[test]
fn wrong_parent_hash_is_rejected() {
    let r = real();
    let mut parent = r.parent;
    parent[0] ^= 1;
    // The parent hash seeds both tables, so the final state (and with it the decryption of
    // the item-4 prefix) changes: the reference order reports the prefix first.
    assert_eq!(check_ann(&r.ann, &parent, 2), Err(AnnError::InvalidItem4));
    // Display order passed where raw order is expected.
    assert!(check_ann(&r.ann, &reversed(&r.parent), 2).is_err());
}

#[test]
fn version_and_nonce_rules() {
    let r = real();
    let mut ann = r.ann.clone();
    ann[12..16].copy_from_slice(&100_000u32.to_le_bytes());
    assert!(matches!(
        check_ann(&ann, &r.parent, 2),
        Err(AnnError::VersionNotAllowed { .. })
    ));
    let mut ann = r.ann.clone();
    ann[0] = 0;
    assert!(matches!(
        check_ann(&ann, &r.parent, 2),
        Err(AnnError::VersionMismatch { .. })
    ));
    let mut ann = r.ann.clone();
    ann[0] = 2;
    assert_eq!(
        check_ann(&ann, &r.parent, 2),
        Err(AnnError::UnknownVersion(2))
    );
    let mut ann = r.ann.clone();
    Announcement::new_checked(&mut ann[..])
        .unwrap()
        .set_soft_nonce(40_000);
    assert!(matches!(
        check_ann(&ann, &r.parent, 2),
        Err(AnnError::SoftNonceHigh { max: 32767, .. })
    ));
    assert_eq!(
        check_ann(&r.ann[..1000], &r.parent, 2),
        Err(AnnError::Length(1000))
    );
}
