//! One encryption path for packets and mining (issue 17, must show 1): PacketCrypt's
//! CryptoCycle and a Noise session's transport seal and open through the same ChaCha20 and
//! Poly1305 of `pktmesh_crypto_auth::primitives`, counted by its `call-counters` feature.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pktmesh_chain::cryptocycle::State;
use pktmesh_crypto_auth::legacy::CryptoAuth;
use pktmesh_crypto_auth::noise::handshake::MAX_INITIATION_LEN;
use pktmesh_crypto_auth::noise::transport::DATA_OVERHEAD;
use pktmesh_crypto_auth::noise::{
    Credentials, InitiationOutcome, InitiationParams, InitiationSent, Responder, Transport,
};
use pktmesh_crypto_auth::primitives::{calls, Calls};
use pktmesh_crypto_auth::PrivateKey;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Two Noise transports of one session, built through the public handshake API.
fn noise_session(now: Instant) -> (Transport, Transport) {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let (ka, _, _) = PrivateKey::generate(&mut rng);
    let (kb, pb, _) = PrivateKey::generate(&mut rng);
    let mut b = CryptoAuth::new(kb);
    b.add_user(b"pw", Some(b"miner"), None).expect("user");
    let (a, b) = (Arc::new(CryptoAuth::new(ka)), Arc::new(b));
    let params = InitiationParams {
        credentials: Some(Credentials::derive(b"miner", b"pw")),
        ..Default::default()
    };
    let mut init = [0u8; MAX_INITIATION_LEN];
    let wall = Duration::from_secs(1_800_000_000);
    let (sent, n) = InitiationSent::new(&a, &pb, &params, 0x0100, wall, &mut rng, &mut init)
        .expect("initiation");
    let mut responder = Responder::new(b, 100);
    let accepted = match responder
        .handle_initiation(now, &mut rng, b"10.0.0.1:1", &init[..n], 0x0200, true)
        .expect("the responder takes the initiation")
    {
        InitiationOutcome::Accept(acc) => acc,
        InitiationOutcome::CookieReply(_) => panic!("no cookie expected"),
    };
    let initiator = sent
        .complete(&a, now, &accepted.response)
        .expect("response");
    (initiator, accepted.transport)
}

fn grew(before: Calls, after: Calls) -> (u64, u64) {
    (
        after.chacha20 - before.chacha20,
        after.poly1305 - before.poly1305,
    )
}

#[test]
fn mining_and_noise_sessions_run_the_same_chacha20_and_poly1305() {
    // The miner: one CryptoCycle AEAD pass over a packet-sized state.
    let mut state = State::new();
    state.init(&[7; 32], 1);
    let before = calls();
    state.crypt();
    assert!(!state.is_failed(), "a fuzzable state runs the AEAD pass");
    let mined = calls();
    let (chacha, poly) = grew(before, mined);
    assert!(
        chacha >= 1 && poly >= 1,
        "CryptoCycle ran ChaCha20 {chacha} and Poly1305 {poly} times through primitives"
    );

    // A Noise session: one data packet sealed and opened.
    let now = Instant::now();
    let (mut a, mut b) = noise_session(now);
    let payload = b"one packet";
    let mut packet = vec![0u8; payload.len() + DATA_OVERHEAD];
    packet[8..8 + payload.len()].copy_from_slice(payload);
    let before = calls();
    a.encrypt(now, &mut packet).expect("seal");
    let opened = b.decrypt(now, &mut packet).expect("open").to_vec();
    assert_eq!(opened, payload);
    let (chacha, poly) = grew(before, calls());
    // Seal and open: each one keystream pass (the Poly1305 key in block 0, the payload from
    // block 1 on) and a tag.
    assert!(
        chacha >= 2 && poly >= 2,
        "the Noise transport ran ChaCha20 {chacha} and Poly1305 {poly} times through primitives"
    );
}
