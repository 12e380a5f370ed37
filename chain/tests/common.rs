//! Helpers shared by the vector tests.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::path::PathBuf;

use pktmesh_crypto_auth::cpu;

/// Runs `check` once at every SIMD level this CPU has (`cpu::levels`: portable, then AVX2 and
/// AVX-512 where present), so one build checks every ChaCha20 and Poly1305 path of
/// CryptoCycle against the vectors.
pub fn at_every_level(check: impl Fn()) {
    for level in cpu::levels() {
        eprintln!("at {level:?}");
        cpu::with_level(level, &check);
    }
}

pub fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/packetcrypt/"
    ))
    .join(name)
}

pub fn read_vector(name: &str) -> String {
    std::fs::read_to_string(vector_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&read_vector(name)).expect("vector json")
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s.trim()).expect("hex")
}

pub fn arr32(s: &str) -> [u8; 32] {
    unhex(s).try_into().expect("32 bytes")
}

pub fn u32_hex(s: &str) -> u32 {
    u32::from_str_radix(s, 16).expect("hex u32")
}
