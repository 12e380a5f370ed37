//! Session data-path cost beside the raw AEAD it is built on, in the same run.
//!
//! For each packet size (64 and 1420 bytes of payload):
//! * `raw-xsalsa20poly1305/seal+open`: detached in-place seal then open with the
//!   `xsalsa20poly1305` crate, incrementing nonce: the ceiling;
//! * `legacy-session/seal+open`: `Session::encrypt` on one side and `Session::decrypt` on the
//!   other, in place in one caller buffer (headers, nonce bookkeeping, replay window);
//! * `legacy-session/seal` and `raw/seal` alone;
//! * the same for Noise: `raw-chacha20poly1305` (the `chacha20poly1305` crate, 12-byte
//!   counter nonce) beside `noise-session` (`Transport::encrypt` / `Transport::decrypt`).
//!
//! The target (issue 3) is session seal+open ≥ 90 % of the raw seal+open throughput, with no
//! allocation per packet (the session API works in caller buffers).
#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pktmesh_crypto_auth::legacy::{CryptoAuth, Session, DATA_HEADER_LEN, MAX_OVERHEAD};
use pktmesh_crypto_auth::noise::handshake::MAX_INITIATION_LEN;
use pktmesh_crypto_auth::noise::transport::{DATA_HEADER, DATA_OVERHEAD};
use pktmesh_crypto_auth::noise::{
    InitiationOutcome, InitiationParams, InitiationSent, Responder, Transport,
};
use pktmesh_crypto_auth::PrivateKey;
use xsalsa20poly1305::aead::generic_array::GenericArray;
use xsalsa20poly1305::{AeadInPlace, KeyInit, XSalsa20Poly1305};

/// Not random at all; benchmarks only need distinct keys.
struct CountingRng(u64);
impl rand_core::RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
        self.0
    }
    fn fill_bytes(&mut self, d: &mut [u8]) {
        for b in d {
            *b = (self.next_u64() >> 33) as u8;
        }
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(d);
        Ok(())
    }
}
impl rand_core::CryptoRng for CountingRng {}

fn legacy_pair(rng: &mut CountingRng, now: Instant) -> (Session, Session) {
    let (ka, pa, _) = PrivateKey::generate(rng);
    let (kb, pb, _) = PrivateKey::generate(rng);
    let mut a = Session::new(Arc::new(CryptoAuth::new(ka)), pb, false, now);
    let mut b = Session::new(Arc::new(CryptoAuth::new(kb)), pa, false, now);
    for _ in 0..2 {
        let mut p = a.encrypt_to_vec(now, rng, b"x").unwrap();
        b.decrypt(now, &mut p).unwrap();
        let mut p = b.encrypt_to_vec(now, rng, b"x").unwrap();
        a.decrypt(now, &mut p).unwrap();
    }
    assert!(a.is_established() && b.is_established());
    (a, b)
}

fn noise_pair(rng: &mut CountingRng, now: Instant) -> (Transport, Transport) {
    let (ka, _, _) = PrivateKey::generate(rng);
    let (kb, pb, _) = PrivateKey::generate(rng);
    let (a, b) = (Arc::new(CryptoAuth::new(ka)), Arc::new(CryptoAuth::new(kb)));
    let mut out = [0u8; MAX_INITIATION_LEN];
    let wall = std::time::Duration::from_secs(1_800_000_000);
    let params = InitiationParams::default();
    let (sent, n) = InitiationSent::new(&a, &pb, &params, 0x100, wall, rng, &mut out).unwrap();
    let mut r = Responder::new(b, 10);
    let InitiationOutcome::Accept(acc) = r
        .handle_initiation(now, rng, b"bench", &out[..n], 0x200, false)
        .unwrap()
    else {
        panic!("no cookie expected")
    };
    let mut ta = sent.complete(&a, now, &acc.response).unwrap();
    let mut tb = acc.transport;
    let mut ka = [0u8; DATA_OVERHEAD];
    ta.encrypt(now, &mut ka).unwrap();
    tb.decrypt(now, &mut ka).unwrap();
    (ta, tb)
}

fn data_path(c: &mut Criterion) {
    let now = Instant::now();
    let mut rng = CountingRng(1);
    for size in [64usize, 1420] {
        let mut g = c.benchmark_group(format!("data-{size}"));
        g.throughput(Throughput::Bytes(size as u64));

        let cipher = XSalsa20Poly1305::new(GenericArray::from_slice(&[7u8; 32]));
        let mut buf = vec![0u8; size];
        let mut n: u64 = 0;
        g.bench_function(
            BenchmarkId::new("raw-xsalsa20poly1305", "seal+open"),
            |bch| {
                bch.iter(|| {
                    n += 1;
                    let mut nonce = [0u8; 24];
                    nonce[..8].copy_from_slice(&n.to_le_bytes());
                    let nonce = GenericArray::from_slice(&nonce);
                    let tag = cipher
                        .encrypt_in_place_detached(nonce, &[], &mut buf)
                        .unwrap();
                    cipher
                        .decrypt_in_place_detached(nonce, &[], &mut buf, &tag)
                        .unwrap();
                    black_box(&buf);
                })
            },
        );
        g.bench_function(BenchmarkId::new("raw-xsalsa20poly1305", "seal"), |bch| {
            bch.iter(|| {
                n += 1;
                let mut nonce = [0u8; 24];
                nonce[..8].copy_from_slice(&n.to_le_bytes());
                black_box(
                    cipher
                        .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &[], &mut buf)
                        .unwrap(),
                );
            })
        });

        let (mut a, mut b) = legacy_pair(&mut rng, now);
        let mut packet = vec![0u8; MAX_OVERHEAD + size];
        g.bench_function(BenchmarkId::new("legacy-session", "seal+open"), |bch| {
            bch.iter(|| {
                let p = a.encrypt(now, &mut rng, &mut packet, MAX_OVERHEAD).unwrap();
                let opened = b.decrypt(now, p).unwrap();
                black_box(opened.payload.len());
            })
        });
        g.bench_function(BenchmarkId::new("legacy-session", "seal"), |bch| {
            bch.iter(|| {
                let p = a.encrypt(now, &mut rng, &mut packet, MAX_OVERHEAD).unwrap();
                black_box(p.len());
            })
        });
        assert_eq!(a.overhead(), DATA_HEADER_LEN);

        let chacha = chacha20poly1305::ChaCha20Poly1305::new(GenericArray::from_slice(&[9u8; 32]));
        g.bench_function(
            BenchmarkId::new("raw-chacha20poly1305", "seal+open"),
            |bch| {
                bch.iter(|| {
                    n += 1;
                    let mut nonce = [0u8; 12];
                    nonce[4..].copy_from_slice(&n.to_le_bytes());
                    let nonce = GenericArray::from_slice(&nonce);
                    let tag = chacha
                        .encrypt_in_place_detached(nonce, &[], &mut buf)
                        .unwrap();
                    chacha
                        .decrypt_in_place_detached(nonce, &[], &mut buf, &tag)
                        .unwrap();
                    black_box(&buf);
                })
            },
        );
        let (mut na, mut nb) = noise_pair(&mut rng, now);
        let mut npacket = vec![0u8; size + DATA_OVERHEAD];
        g.bench_function(BenchmarkId::new("noise-session", "seal+open"), |bch| {
            bch.iter(|| {
                na.encrypt(now, &mut npacket).unwrap();
                let body = nb.decrypt(now, &mut npacket).unwrap();
                black_box(body.len());
            })
        });
        g.bench_function(BenchmarkId::new("raw-chacha20poly1305", "seal"), |bch| {
            bch.iter(|| {
                n += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_le_bytes());
                black_box(
                    chacha
                        .encrypt_in_place_detached(GenericArray::from_slice(&nonce), &[], &mut buf)
                        .unwrap(),
                );
            })
        });
        g.bench_function(BenchmarkId::new("noise-session", "seal"), |bch| {
            bch.iter(|| {
                na.encrypt(now, &mut npacket).unwrap();
                black_box(npacket[DATA_HEADER]);
            })
        });
        g.finish();
    }
}

criterion_group!(benches, data_path);
criterion_main!(benches);
