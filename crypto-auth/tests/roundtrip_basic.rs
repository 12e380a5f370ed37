//! Basic two-party handshake and data exchange.
mod common;
use pktmesh_crypto_auth::legacy::{CryptoAuth, PacketKind, Session, State};
use pktmesh_crypto_auth::PrivateKey;
use std::sync::Arc;
use std::time::Instant;

#[test]
fn handshake_and_data() {
    let mut rng = common::TestRng::new(1);
    let (ka, pa, _) = PrivateKey::generate(&mut rng);
    let (kb, pb, _) = PrivateKey::generate(&mut rng);
    let now = Instant::now();
    let ca_a = Arc::new(CryptoAuth::new(ka));
    let mut cb = CryptoAuth::new(kb);
    cb.add_user(b"secret", Some(b"alice"), None).unwrap();
    let mut a = Session::new(ca_a, pb, false, now);
    a.set_auth(Some(b"secret"), Some(b"alice"));
    let mut b = Session::new(Arc::new(cb), pa, true, now);
    let mut hello = a.encrypt_to_vec(now, &mut rng, b"ping").unwrap();
    assert_eq!(a.state(), State::SentHello);
    let o = b.decrypt(now, &mut hello).unwrap();
    assert_eq!((o.kind, &*o.payload), (PacketKind::Hello, &b"ping"[..]));
    let mut key = b.encrypt_to_vec(now, &mut rng, b"pong").unwrap();
    assert_eq!(b.state(), State::SentKey);
    let o = a.decrypt(now, &mut key).unwrap();
    assert_eq!((o.kind, &*o.payload), (PacketKind::Key, &b"pong"[..]));
    assert_eq!(a.state(), State::ReceivedKey);
    let mut d = a.encrypt_to_vec(now, &mut rng, b"data1").unwrap();
    assert_eq!(d.len(), 25);
    let o = b.decrypt(now, &mut d).unwrap();
    assert_eq!((o.kind, &*o.payload), (PacketKind::Data(4), &b"data1"[..]));
    assert_eq!(b.state(), State::Established);
    assert_eq!(b.next_nonce(), 6);
    let mut d = b.encrypt_to_vec(now, &mut rng, b"data2").unwrap();
    let o = a.decrypt(now, &mut d).unwrap();
    assert_eq!((o.kind, &*o.payload), (PacketKind::Data(6), &b"data2"[..]));
    assert_eq!(a.state(), State::Established);
    assert_eq!(a.next_nonce(), 8);
}
