//! `primitives.json` and `randhash_mkitem2_400.txt`: HashExpand, CryptoCycle, RandGen,
//! mkitem2, the RFC 8439 equivalence cases, BLAKE2b and the block-1 id.

mod common;
use common::*;
use pktmesh_chain::cryptocycle::State;
use pktmesh_chain::hash::{b2b256, b2b512, dsha256, hash_expand, reversed};
use pktmesh_chain::item::ItemBuilder;
use pktmesh_chain::randhash::{generate, Program};

#[test]
fn hash_expand_vector() {
    at_every_level(hash_expand_vector_once);
}

fn hash_expand_vector_once() {
    let v = &json("primitives.json")["hash_expand"];
    let mut out = [0u8; 64];
    hash_expand(
        &mut out,
        &arr32(v["seed"].as_str().unwrap()),
        v["num"].as_u64().unwrap() as u32,
    );
    assert_eq!(hex::encode(out), v["first64"].as_str().unwrap());
}

#[test]
fn cryptocycle_sequence() {
    at_every_level(cryptocycle_sequence_once);
}

fn cryptocycle_sequence_once() {
    let v = &json("primitives.json")["cryptocycle_sequence"];
    let seed = arr32(v["seed"].as_str().unwrap());
    let nonce = u64::from_str_radix(v["nonce_u64"].as_str().unwrap(), 16).unwrap();
    let mut s = State::new();
    s.init(&seed, nonce);
    assert_eq!(
        hex::encode(&s.bytes()[..48]),
        v["after_init_state_0_48"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(b2b256(s.bytes())),
        v["after_init_blake2b256_of_state"].as_str().unwrap()
    );
    let mut item = [0u8; 1024];
    for (i, b) in item.iter_mut().enumerate() {
        *b = ((7 * i + 3) & 0xff) as u8;
    }
    // The fast init must agree on every byte an update reads or keeps.
    let mut fast = State::new();
    fast.init_for_update(&seed, nonce);
    s.update(&item);
    fast.update(&item);
    assert_eq!(s.bytes()[..], fast.bytes()[..]);
    assert_eq!(
        hex::encode(&s.bytes()[..48]),
        v["after_update_state_0_48"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(b2b256(s.bytes())),
        v["after_update_blake2b256_of_state"].as_str().unwrap()
    );
    s.smul();
    assert_eq!(
        hex::encode(b2b256(s.bytes())),
        v["after_smul_blake2b256_of_state"].as_str().unwrap()
    );
    s.finalize();
    assert_eq!(
        hex::encode(s.hash()),
        v["after_final_state_0_32"].as_str().unwrap()
    );
}

#[test]
fn cryptocycle_is_chacha20_poly1305() {
    at_every_level(cryptocycle_is_chacha20_poly1305_once);
}

fn cryptocycle_is_chacha20_poly1305_once() {
    let v = &json("primitives.json")["cryptocycle_rfc7539_equivalence"];
    let default_key = v["key_ascii"].as_str().unwrap().as_bytes().to_vec();
    for case in v["cases"].as_array().unwrap() {
        let key = case["key_hex"]
            .as_str()
            .map(unhex)
            .unwrap_or_else(|| default_key.clone());
        let msg = case["msg_ascii"].as_str().unwrap().as_bytes();
        let aad = case["aad_ascii"].as_str().unwrap().as_bytes();
        let mut s = State::new();
        let b = s.bytes_mut();
        b[16..48].copy_from_slice(&key);
        let add = aad.len().div_ceil(16);
        let len = msg.len().div_ceil(16);
        let azc = add * 16 - aad.len();
        let tzc = len * 16 - msg.len();
        let word = (azc as u32) | (tzc as u32) << 8 | (add as u32) << 13 | (len as u32) << 17;
        b[12..16].copy_from_slice(&word.to_le_bytes());
        b[48..48 + aad.len()].copy_from_slice(aad);
        let m0 = 48 + add * 16;
        b[m0..m0 + msg.len()].copy_from_slice(msg);
        s.crypt();
        let mut got = s.bytes()[m0..m0 + msg.len()].to_vec();
        got.extend_from_slice(&s.bytes()[16..32]);
        assert_eq!(
            hex::encode(got),
            case["ciphertext_then_tag"].as_str().unwrap()
        );
    }
}

#[test]
fn randgen_vector() {
    let v = &json("primitives.json")["randgen"];
    let prog = generate(&arr32(v["seed"].as_str().unwrap())).unwrap();
    assert_eq!(prog.len() as u64, v["program_len"].as_u64().unwrap());
    for (w, want) in prog.iter().zip(v["first8_words"].as_array().unwrap()) {
        assert_eq!(format!("{w:08x}"), want.as_str().unwrap());
    }
    assert_eq!(
        format!("{:08x}", prog.last().unwrap()),
        v["last_word"].as_str().unwrap()
    );
    let bytes: Vec<u8> = prog.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(
        hex::encode(b2b256(&bytes)),
        v["blake2b256_of_program_words_le"].as_str().unwrap()
    );
}

#[test]
fn mkitem2_vector() {
    at_every_level(mkitem2_vector_once);
}

fn mkitem2_vector_once() {
    let v = &json("primitives.json")["mkitem2"];
    let prog = Program::create(&arr32(v["program_seed"].as_str().unwrap())).unwrap();
    let mut item = [0u8; 1024];
    ItemBuilder::new()
        .mkitem2(
            v["item_no"].as_u64().unwrap(),
            &arr32(v["item_seed"].as_str().unwrap()),
            &prog,
            &mut item,
        )
        .unwrap();
    assert_eq!(
        hex::encode(&item[..32]),
        v["item_first32"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(b2b512(&item)),
        v["blake2b512_of_item"].as_str().unwrap()
    );
}

#[test]
fn randhash_mkitem2_400() {
    at_every_level(randhash_mkitem2_400_once);
}

fn randhash_mkitem2_400_once() {
    let text = read_vector("randhash_mkitem2_400.txt");
    let mut builder = ItemBuilder::new();
    let mut n = 0;
    let mut failures = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let i: u32 = f[0].parse().unwrap();
        let seed = arr32(f[1]);
        assert_eq!(seed, b2b256(&i.to_le_bytes()));
        let item_no: u64 = f[2].parse().unwrap();
        assert_eq!(item_no, u64::from(37 * i % 8192));
        let prog = Program::create(&seed).unwrap();
        let mut item = [0u8; 1024];
        builder.mkitem2(item_no, &seed, &prog, &mut item).unwrap();
        if hex::encode(&b2b512(&item)[..16]) != f[3] {
            failures.push(i);
        }
        n += 1;
    }
    assert_eq!(n, 400);
    assert!(failures.is_empty(), "mismatching items: {failures:?}");
}

#[test]
fn blake2b_sanity_and_block1_id() {
    let v = json("primitives.json");
    assert_eq!(
        hex::encode(b2b256(b"hello world")),
        v["blake2b_sanity"]["blake2b256"].as_str().unwrap()
    );
    let hdr = unhex(v["block1_header"]["header_hex"].as_str().unwrap());
    assert_eq!(
        hex::encode(reversed(&dsha256(&hdr))),
        v["block1_header"]["block_hash_display"].as_str().unwrap()
    );
}
