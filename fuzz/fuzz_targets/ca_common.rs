//! Shared setup for the CryptoAuth fuzz targets: sessions in every stage, built once.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use pktmesh_crypto_auth::legacy::{CryptoAuth, Session, State};
use pktmesh_crypto_auth::PrivateKey;

pub struct Rng(pub u64);
impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 11 ^ self.0 << 7
    }
    fn fill_bytes(&mut self, d: &mut [u8]) {
        for b in d {
            *b = self.next_u64() as u8;
        }
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(d);
        Ok(())
    }
}
impl rand_core::CryptoRng for Rng {}

pub struct Fixture {
    pub t0: Instant,
    /// Receiving sessions in each stage, with a valid packet the peer would send next.
    pub stages: Vec<(Session, Vec<u8>)>,
}

/// Everything observable about a session that a rejected packet must not change.
pub fn snapshot(s: &Session) -> (State, u32, Option<[u8; 32]>, Option<[u8; 32]>, bool, (u32, u32)) {
    (
        s.state(),
        s.next_nonce(),
        s.our_temp_public(),
        s.peer_temp_public(),
        s.is_initiator(),
        (s.replay_stats().received, s.replay_stats().lost),
    )
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let t0 = Instant::now();
        let mut rng = Rng(7);
        let (ka, pa, _) = PrivateKey::generate(&mut rng);
        let (kb, pb, _) = PrivateKey::generate(&mut rng);
        let mut cb = CryptoAuth::new(kb);
        cb.add_user(b"pw", Some(b"login"), None).unwrap();
        let mut a = Session::new(Arc::new(CryptoAuth::new(ka)), pb, false, t0);
        a.set_auth(Some(b"pw"), Some(b"login"));
        let mut b = Session::new(Arc::new(cb), pa, true, t0);
        let mut stages = Vec::new();
        // b in INIT, next packet a HELLO
        let hello = a.encrypt_to_vec(t0, &mut rng, b"hello").unwrap();
        stages.push((b.clone(), hello.clone()));
        let mut h = hello.clone();
        b.decrypt(t0, &mut h).unwrap();
        // a in SENT_HELLO, next packet a KEY
        let key = b.encrypt_to_vec(t0, &mut rng, b"key").unwrap();
        stages.push((a.clone(), key.clone()));
        let mut k = key.clone();
        a.decrypt(t0, &mut k).unwrap();
        // b in SENT_KEY, next packet first data
        let d = a.encrypt_to_vec(t0, &mut rng, b"data").unwrap();
        stages.push((b.clone(), d.clone()));
        let mut dd = d.clone();
        b.decrypt(t0, &mut dd).unwrap();
        // a in RECEIVED_KEY (sending), next packet b's first data
        let d = b.encrypt_to_vec(t0, &mut rng, b"data").unwrap();
        stages.push((a.clone(), d.clone()));
        let mut dd = d.clone();
        a.decrypt(t0, &mut dd).unwrap();
        // both established
        let d = a.encrypt_to_vec(t0, &mut rng, b"more data").unwrap();
        stages.push((b.clone(), d));
        let d = b.encrypt_to_vec(t0, &mut rng, b"more data").unwrap();
        stages.push((a.clone(), d));
        Fixture { t0, stages }
    })
}

/// Feed `packet` to a copy of `session`; a rejected packet must leave it unchanged, and
/// nothing may panic.
pub fn feed(session: &Session, t0: Instant, packet: &mut [u8]) {
    let mut s = session.clone();
    let before = snapshot(&s);
    if s.decrypt(t0, packet).is_err() {
        assert_eq!(before, snapshot(&s), "a rejected packet changed the session");
    }
}
