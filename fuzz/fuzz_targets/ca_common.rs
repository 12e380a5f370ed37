//! Shared setup for the CryptoAuth fuzz targets: sessions in every stage, built once.
#![allow(dead_code)] // each target uses a part of it

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use pktmesh_crypto_auth::legacy::{CryptoAuth, Session, State};
use pktmesh_crypto_auth::PrivateKey;

/// XORs `rest` over `valid` (cycling) and, when its last byte is odd, cuts up to 127 bytes
/// off the end: a valid message with a few bits changed.
pub fn mutate(valid: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut p = valid.to_vec();
    for (i, b) in rest.iter().enumerate() {
        if let Some(x) = p.get_mut(i % valid.len().max(1)) {
            *x ^= b;
        }
    }
    if let Some(&cut) = rest.last() {
        if cut & 1 == 1 {
            p.truncate(p.len().saturating_sub(usize::from(cut >> 1)));
        }
    }
    p
}

pub struct Rng(pub u64);
impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
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

/// Everything observable about a session that a rejected packet must not change: its state,
/// next nonce, both temporary keys, role, and replay counts (received, lost).
pub type Snapshot = (
    State,
    u32,
    Option<[u8; 32]>,
    Option<[u8; 32]>,
    bool,
    (u32, u32),
);

/// The [`Snapshot`] of `s`.
pub fn snapshot(s: &Session) -> Snapshot {
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
        assert_eq!(
            before,
            snapshot(&s),
            "a rejected packet changed the session"
        );
    }
}

/// Noise fixtures: a responder, an initiation it accepts, the initiator state with the
/// response, and a confirmed transport pair with a valid data packet.
pub struct NoiseFixture {
    pub t0: Instant,
    pub ca_a: Arc<CryptoAuth>,
    pub responder: pktmesh_crypto_auth::noise::Responder,
    pub initiation: Vec<u8>,
    pub sent: pktmesh_crypto_auth::noise::InitiationSent,
    pub response: Vec<u8>,
    pub transport: pktmesh_crypto_auth::noise::Transport,
    pub data: Vec<u8>,
}

pub fn noise_fixture() -> &'static NoiseFixture {
    use pktmesh_crypto_auth::noise::handshake::MAX_INITIATION_LEN;
    use pktmesh_crypto_auth::noise::{
        Credentials, InitiationOutcome, InitiationParams, InitiationSent, Responder,
    };
    static F: OnceLock<NoiseFixture> = OnceLock::new();
    F.get_or_init(|| {
        let t0 = Instant::now();
        let mut rng = Rng(11);
        let (ka, _, _) = PrivateKey::generate(&mut rng);
        let (kb, pb, _) = PrivateKey::generate(&mut rng);
        let mut cb = CryptoAuth::new(kb);
        cb.add_user(b"pw", Some(b"login"), None).unwrap();
        let (ca_a, ca_b) = (Arc::new(CryptoAuth::new(ka)), Arc::new(cb));
        let params = InitiationParams {
            credentials: Some(Credentials::derive(b"login", b"pw")),
            ..Default::default()
        };
        let mut out = [0u8; MAX_INITIATION_LEN];
        let wall = std::time::Duration::from_secs(1_800_000_000);
        let (sent, n) =
            InitiationSent::new(&ca_a, &pb, &params, 0x100, wall, &mut rng, &mut out).unwrap();
        let initiation = out[..n].to_vec();
        let mut fresh = Responder::new(ca_b.clone(), 1000);
        let InitiationOutcome::Accept(acc) = fresh
            .handle_initiation(t0, &mut rng, b"src", &initiation, 0x200, true)
            .unwrap()
        else {
            panic!("accepted")
        };
        let mut ta = sent.complete(&ca_a, t0, &acc.response).unwrap();
        let mut data = vec![0u8; 24 + 5];
        ta.encrypt(t0, &mut data).unwrap();
        NoiseFixture {
            t0,
            ca_a,
            responder: Responder::new(ca_b, 1000),
            initiation,
            sent,
            response: acc.response.to_vec(),
            transport: acc.transport,
            data,
        }
    })
}
