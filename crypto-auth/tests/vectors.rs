//! Unit vectors of the digest §6.2.2 (from cjdns `CryptoAuth_unit_test.c`).

mod common;

use std::sync::Arc;
use std::time::Instant;

use pktmesh_crypto_auth::legacy::{AuthChallenge, CryptoAuth, PacketKind, Session, State};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};

/// receiveHelloWithNoAuth: a 132-byte HELLO opens to temp key 847c… and "Hello World\0".
#[test]
fn receive_hello_with_no_auth() {
    common::at_every_level(receive_hello_with_no_auth_once);
}

fn receive_hello_with_no_auth_once() {
    let packet_hex = concat!(
        "00000000",
        "00ffffffffffffff7fffffff",
        "ffffffffffffffffffffffffffffffffffffffffffffffff",
        "847c0d2c375234f365e660955187a3735a0f7613d1609d3a6a4d8c53aeaa5a22",
        "ea9cf275eee0185edf7f211192f12e8e",
        "642a325ed76925fe3c76d313b767a10aca584ca0b979dee990a737da7d68366f",
        "a3846d43d541de9129ea3e12"
    );
    let mut packet = hex::decode(packet_hex).unwrap();
    assert_eq!(packet.len(), 132);
    let ours = PrivateKey::from_bytes(*b"0123456789abcdefghijklmnopqrstuv");
    let sender: [u8; 32] = packet[40..72].try_into().unwrap();
    let ca = Arc::new(CryptoAuth::new(ours));
    let mut s = Session::new(ca, PublicKey::from_bytes(sender), false, Instant::now());
    let opened = s
        .decrypt(Instant::now(), &mut packet)
        .expect("vector opens");
    assert_eq!(opened.kind, PacketKind::Hello);
    assert_eq!(opened.payload, b"Hello World\0");
    assert_eq!(s.state(), State::ReceivedHello);
    assert_eq!(
        s.peer_temp_public(),
        Some(sender),
        "the vector's temp key equals its perm key"
    );
}

/// helloWithAuth: password `password`, type 1 → challenge `01 641c99f7719f57 0000 0000`.
#[test]
fn hello_with_auth_challenge() {
    let c = AuthChallenge::for_password(b"password", None);
    assert_eq!(hex::encode(c.to_bytes()), "01641c99f7719f5700000000");
}

/// The same vector with a flipped tag bit fails with HANDSHAKE_DECRYPT_FAILED and changes
/// nothing.
#[test]
fn receive_hello_bit_flip() {
    common::at_every_level(receive_hello_bit_flip_once);
}

fn receive_hello_bit_flip_once() {
    let ours = PrivateKey::from_bytes(*b"0123456789abcdefghijklmnopqrstuv");
    let mut packet = hex::decode(concat!(
        "00000000",
        "00ffffffffffffff7fffffff",
        "ffffffffffffffffffffffffffffffffffffffffffffffff",
        "847c0d2c375234f365e660955187a3735a0f7613d1609d3a6a4d8c53aeaa5a22",
        "ea9cf275eee0185edf7f211192f12e8e",
        "642a325ed76925fe3c76d313b767a10aca584ca0b979dee990a737da7d68366f",
        "a3846d43d541de9129ea3e12"
    ))
    .unwrap();
    packet[131] ^= 1;
    let sender: [u8; 32] = packet[40..72].try_into().unwrap();
    let mut s = Session::new(
        Arc::new(CryptoAuth::new(ours)),
        PublicKey::from_bytes(sender),
        false,
        Instant::now(),
    );
    assert_eq!(
        s.decrypt(Instant::now(), &mut packet).unwrap_err(),
        pktmesh_crypto_auth::DecryptError::HandshakeDecryptFailed
    );
    assert_eq!(s.state(), State::Init);
}
