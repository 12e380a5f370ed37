//! Noise sessions between two pktmesh nodes: handshake, auth, cookies, data adversaries and
//! the fallback to legacy CryptoAuth.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestRng;
use pktmesh_crypto_auth::legacy::CryptoAuth;
use pktmesh_crypto_auth::noise::handshake::{MAX_INITIATION_LEN, RESPONSE_LEN};
use pktmesh_crypto_auth::noise::link::{
    LinkAuth, LinkError, DROP_ALL_AFTER, NOISE_ATTEMPTS, RETRY_AFTER,
};
use pktmesh_crypto_auth::noise::transport::{DATA_OVERHEAD, REKEY_AFTER_TIME};
use pktmesh_crypto_auth::noise::{
    is_usable_index, Attach, Credentials, InitiationOutcome, InitiationParams, InitiationSent,
    KnownSession, Link, LinkEvent, LinkMode, NoiseError, ObservedInitiation, PskEntity, Responder,
    Transport,
};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};

const WALL: Duration = Duration::from_secs(1_800_000_000);
const SRC: &[u8] = b"10.0.0.1:1234";

struct Pair {
    a: Arc<CryptoAuth>,
    b: Arc<CryptoAuth>,
    pa: PublicKey,
    pb: PublicKey,
}

fn pair(rng: &mut TestRng, users: &[(&[u8], Option<&[u8]>)]) -> Pair {
    let (ka, pa, _) = PrivateKey::generate(rng);
    let (kb, pb, _) = PrivateKey::generate(rng);
    let mut cb = CryptoAuth::new(kb);
    for (pw, login) in users {
        cb.add_user(pw, *login, None).unwrap();
    }
    Pair {
        a: Arc::new(CryptoAuth::new(ka)),
        b: Arc::new(cb),
        pa,
        pb,
    }
}

fn initiate(
    rng: &mut TestRng,
    p: &Pair,
    creds: Option<Credentials>,
    cookie: Option<[u8; 16]>,
    wall: Duration,
) -> (InitiationSent, Vec<u8>) {
    let mut out = [0u8; MAX_INITIATION_LEN];
    let params = InitiationParams {
        credentials: creds,
        cookie,
        ..Default::default()
    };
    let (s, n) = InitiationSent::new(&p.a, &p.pb, &params, 0x0100, wall, rng, &mut out).unwrap();
    (s, out[..n].to_vec())
}

fn accept(o: InitiationOutcome) -> Box<pktmesh_crypto_auth::noise::Accepted> {
    match o {
        InitiationOutcome::Accept(a) => a,
        InitiationOutcome::CookieReply(_) => panic!("unexpected cookie reply"),
    }
}

fn established(rng: &mut TestRng, now: Instant) -> (Transport, Transport) {
    let p = pair(rng, &[(b"pw", Some(b"alice"))]);
    let creds = Credentials::derive(b"alice", b"pw");
    let (sent, init) = initiate(rng, &p, Some(creds), None, WALL);
    assert_eq!(init.len(), 184, "with auth: 4 + 148 + 16 + 16");
    let mut r = Responder::new(p.b.clone(), 100);
    let acc = accept(
        r.handle_initiation(now, rng, SRC, &init, 0x0200, true)
            .unwrap(),
    );
    assert_eq!(acc.peer, p.pa);
    assert_eq!(acc.login.as_deref(), Some(&b"alice"[..]));
    assert_eq!(acc.additional.version, Some(22));
    let mut ta = sent.complete(&p.a, now, &acc.response).unwrap();
    let mut tb = acc.transport;
    // The responder may not send until the initiator's first packet arrives.
    let mut buf = vec![0u8; DATA_OVERHEAD + 3];
    assert_eq!(
        tb.encrypt(now, &mut buf).unwrap_err(),
        NoiseError::NotConfirmed
    );
    let mut ka = vec![0u8; DATA_OVERHEAD];
    ta.encrypt(now, &mut ka).unwrap();
    assert!(tb.decrypt(now, &mut ka).unwrap().is_empty());
    assert!(tb.is_confirmed());
    (ta, tb)
}

fn seal(t: &mut Transport, now: Instant, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; payload.len() + DATA_OVERHEAD];
    p[8..8 + payload.len()].copy_from_slice(payload);
    t.encrypt(now, &mut p).unwrap();
    p
}

#[test]
fn handshake_and_data_both_ways() {
    let mut rng = TestRng::new(1);
    let now = Instant::now();
    let (mut ta, mut tb) = established(&mut rng, now);
    for i in 0..1000u32 {
        let msg = i.to_be_bytes();
        let mut p = seal(&mut ta, now, &msg);
        assert_eq!(p.len(), 24 + 4);
        assert_eq!(
            &p[..4],
            &0x0200u32.to_le_bytes(),
            "receiver index first, little endian"
        );
        assert_eq!(tb.decrypt(now, &mut p).unwrap(), &msg);
        let mut p = seal(&mut tb, now, &msg);
        assert_eq!(ta.decrypt(now, &mut p).unwrap(), &msg);
    }
}

#[test]
fn data_adversaries() {
    let mut rng = TestRng::new(2);
    let now = Instant::now();
    let (mut ta, mut tb) = established(&mut rng, now);
    let packets: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| seal(&mut ta, now, &i.to_le_bytes()))
        .collect();
    // Reordered within the 1024 window: all accepted; duplicates are replays.
    for chunk in packets.chunks(100) {
        for p in chunk.iter().rev() {
            let mut q = p.clone();
            tb.decrypt(now, &mut q).unwrap();
            let mut q = p.clone();
            assert_eq!(tb.decrypt(now, &mut q).unwrap_err(), NoiseError::Replay);
        }
    }
    let mut p = seal(&mut ta, now, b"flip me");
    for at in 8..p.len() {
        let mut q = p.clone();
        q[at] ^= 0x10;
        assert_eq!(
            tb.decrypt(now, &mut q).unwrap_err(),
            NoiseError::Decrypt,
            "byte {at}"
        );
    }
    let mut q = p.clone();
    q[0] ^= 1;
    assert_eq!(tb.decrypt(now, &mut q).unwrap_err(), NoiseError::WrongIndex);
    for cut in 0..DATA_OVERHEAD {
        assert_eq!(
            tb.decrypt(now, &mut p[..cut].to_vec()).unwrap_err(),
            NoiseError::Truncated
        );
    }
    assert_eq!(tb.decrypt(now, &mut p).unwrap(), b"flip me");
    // Keys expire.
    let late = now + Duration::from_secs(180);
    let mut p = vec![0u8; DATA_OVERHEAD];
    assert_eq!(ta.encrypt(late, &mut p).unwrap_err(), NoiseError::Expired);
}

#[test]
fn auth_rules() {
    let mut rng = TestRng::new(3);
    let now = Instant::now();
    let p = pair(&mut rng, &[(b"pw", Some(b"alice"))]);
    let mut r = Responder::new(p.b.clone(), 100);
    // No CjdnsPsk while auth is required.
    let (_, init) = initiate(&mut rng, &p, None, None, WALL);
    assert_eq!(init.len(), 176, "without auth: 4 + 148 + 8 + 16");
    assert_eq!(
        r.handle_initiation(now, &mut rng, SRC, &init, 0x200, true)
            .unwrap_err(),
        NoiseError::AuthRequired
    );
    // ... accepted when not required, with a zero PSK.
    let (sent, init) = initiate(&mut rng, &p, None, None, WALL + Duration::from_secs(1));
    let acc = accept(
        r.handle_initiation(now, &mut rng, SRC, &init, 0x200, false)
            .unwrap(),
    );
    assert!(acc.login.is_none());
    sent.complete(&p.a, now, &acc.response).unwrap();
    // Unknown login / wrong password: the lookup does not match.
    let (_, init) = initiate(
        &mut rng,
        &p,
        Some(Credentials::derive(b"mallory", b"pw")),
        None,
        WALL + Duration::from_secs(2),
    );
    assert_eq!(
        r.handle_initiation(now, &mut rng, SRC, &init, 0x200, true)
            .unwrap_err(),
        NoiseError::UnrecognizedAuth
    );
    let (_, init) = initiate(
        &mut rng,
        &p,
        Some(Credentials::derive(b"alice", b"wrong")),
        None,
        WALL + Duration::from_secs(3),
    );
    assert_eq!(
        r.handle_initiation(now, &mut rng, SRC, &init, 0x200, true)
            .unwrap_err(),
        NoiseError::UnrecognizedAuth
    );
    // A replayed initiation (same timestamp) is refused.
    let (_, init) = initiate(
        &mut rng,
        &p,
        Some(Credentials::derive(b"alice", b"pw")),
        None,
        WALL + Duration::from_secs(10),
    );
    accept(
        r.handle_initiation(now, &mut rng, SRC, &init, 0x200, true)
            .unwrap(),
    );
    assert_eq!(
        r.handle_initiation(now, &mut rng, SRC, &init, 0x200, true)
            .unwrap_err(),
        NoiseError::Replay
    );
    // Bit flips anywhere are refused (mac1 first).
    for at in 4..init.len() {
        let mut q = init.clone();
        q[at] ^= 4;
        assert!(
            r.handle_initiation(now, &mut rng, SRC, &q, 0x200, true)
                .is_err(),
            "byte {at}"
        );
    }
    // A response with any byte before mac2 flipped is refused (mac2 only matters to a node
    // under load, as in WireGuard); the intact one completes.
    let (sent, init) = initiate(&mut rng, &p, None, None, WALL + Duration::from_secs(20));
    let mut r2 = Responder::new(p.b.clone(), 100);
    let acc = accept(
        r2.handle_initiation(now, &mut rng, SRC, &init, 0x200, false)
            .unwrap(),
    );
    for at in 0..RESPONSE_LEN - 16 {
        let mut bad = acc.response;
        bad[at] ^= 1;
        assert!(sent.complete(&p.a, now, &bad).is_err(), "byte {at}");
    }
    assert!(sent.complete(&p.a, now, &acc.response).is_ok());
}

#[test]
fn cookie_under_load() {
    let mut rng = TestRng::new(4);
    let now = Instant::now();
    let p = pair(&mut rng, &[]);
    // A budget of 0 initiations per second: every initiation needs a cookie.
    let mut r = Responder::new(p.b.clone(), 0);
    let (sent, init) = initiate(&mut rng, &p, None, None, WALL);
    let reply = match r
        .handle_initiation(now, &mut rng, SRC, &init, 0x200, false)
        .unwrap()
    {
        InitiationOutcome::CookieReply(c) => c,
        InitiationOutcome::Accept(_) => panic!("should be under load"),
    };
    assert_eq!(reply.len(), 68);
    let cookie = sent.take_cookie(&reply).unwrap();
    let (sent, init) = initiate(
        &mut rng,
        &p,
        None,
        Some(cookie),
        WALL + Duration::from_secs(1),
    );
    let acc = accept(
        r.handle_initiation(now, &mut rng, SRC, &init, 0x200, false)
            .unwrap(),
    );
    sent.complete(&p.a, now, &acc.response).unwrap();
    // The cookie is bound to the source address.
    let (_, init) = initiate(
        &mut rng,
        &p,
        None,
        Some(cookie),
        WALL + Duration::from_secs(2),
    );
    assert!(matches!(
        r.handle_initiation(now, &mut rng, b"10.0.0.2:1", &init, 0x200, false)
            .unwrap(),
        InitiationOutcome::CookieReply(_)
    ));
    // With a normal budget, the limiter refills every second (unlike cjdns 22.3).
    let mut r = Responder::new(p.b.clone(), 2);
    let mut cookies = 0;
    for i in 0..20u64 {
        let t = now + Duration::from_millis(250 * i);
        let (_, init) = initiate(
            &mut rng,
            &p,
            None,
            None,
            WALL + Duration::from_secs(100 + i),
        );
        if let InitiationOutcome::CookieReply(_) = r
            .handle_initiation(t, &mut rng, SRC, &init, 0x200, false)
            .unwrap()
        {
            cookies += 1;
        }
    }
    assert_eq!(
        cookies, 10,
        "2 per second accepted, 2 per second asked for a cookie"
    );
}

#[test]
fn index_for_a_cjdns_initiator_shares_its_session_bits() {
    use pktmesh_crypto_auth::noise::index_for_cjdns_initiator;
    assert_eq!(
        index_for_cjdns_initiator(0x0000_0105, 7, 0x900),
        0x0000_0107
    );
    // Would be an unusable index (wire bytes 00 00 00 00): the fallback is used.
    assert_eq!(index_for_cjdns_initiator(0x0000_0005, 0, 0x900), 0x900);
}

#[test]
fn indexes_never_look_like_legacy_words() {
    assert!(!is_usable_index(0));
    assert!(!is_usable_index(0x0300_0000), "wire bytes 00 00 00 03");
    assert!(!is_usable_index(u32::MAX));
    assert!(is_usable_index(0x0100));
    assert!(is_usable_index(4 << 24));
}

#[test]
fn link_prefers_noise() {
    let mut rng = TestRng::new(5);
    let now = Instant::now();
    let p = pair(&mut rng, &[(b"pw", None)]);
    let (mut link, first) = Link::connect(
        p.a.clone(),
        p.pb,
        Some(b"pw"),
        None,
        true,
        0x100,
        now,
        WALL,
        &mut rng,
    )
    .unwrap();
    assert_eq!(link.mode(), LinkMode::NoiseHandshake);
    assert!(matches!(
        link.encrypt(now, &mut rng, b"x"),
        Err(LinkError::NotReady)
    ));
    let mut r = Responder::new(p.b.clone(), 100);
    let acc = accept(
        r.handle_initiation(now, &mut rng, SRC, &first.unwrap(), 0x300, true)
            .unwrap(),
    );
    let LinkEvent::Transmit(mut ka) = link
        .handle_packet(now, WALL, &mut rng, &acc.response)
        .unwrap()
    else {
        panic!("keepalive expected")
    };
    let mut tb = acc.transport;
    assert!(tb.decrypt(now, &mut ka).unwrap().is_empty());
    assert_eq!(link.mode(), LinkMode::Noise);
    let mut d = link.encrypt(now, &mut rng, b"switch packet").unwrap();
    assert_eq!(tb.decrypt(now, &mut d).unwrap(), b"switch packet");
    let back = seal(&mut tb, now, b"reply");
    assert_eq!(
        link.handle_packet(now, WALL, &mut rng, &back).unwrap(),
        LinkEvent::Payload(b"reply".to_vec())
    );
}

#[test]
fn link_falls_back_to_legacy_when_noise_is_ignored() {
    let mut rng = TestRng::new(6);
    let t0 = Instant::now();
    let p = pair(&mut rng, &[(b"pw", Some(b"alice"))]);
    let (mut link, first) = Link::connect(
        p.a.clone(),
        p.pb,
        Some(b"pw"),
        Some(b"alice"),
        true,
        0x100,
        t0,
        WALL,
        &mut rng,
    )
    .unwrap();
    assert!(first.is_some());
    let mut t = t0;
    for _ in 1..NOISE_ATTEMPTS {
        t += RETRY_AFTER;
        let again = link.handle_timeout(t, WALL, &mut rng).unwrap();
        assert!(
            again.is_some_and(|p| p[..4] == [0xff; 4]),
            "a retried initiation"
        );
    }
    t += RETRY_AFTER;
    assert!(link.handle_timeout(t, WALL, &mut rng).unwrap().is_none());
    assert_eq!(link.mode(), LinkMode::Legacy);
    // The legacy HELLO carries the same login and password.
    let hello = link.encrypt(t, &mut rng, b"ping").unwrap();
    let mut sb = pktmesh_crypto_auth::legacy::Session::new(p.b.clone(), p.pa, true, t);
    let mut h = hello.clone();
    assert_eq!(sb.decrypt(t, &mut h).unwrap().payload, b"ping");
}

/// Two links through a responder, then the WireGuard timers.
fn linked(rng: &mut TestRng, t0: Instant) -> (Link, Link, Responder, Pair) {
    let p = pair(rng, &[(b"pw", None)]);
    let (mut a, first) = Link::connect(
        p.a.clone(),
        p.pb,
        Some(b"pw"),
        None,
        true,
        0x100,
        t0,
        WALL,
        rng,
    )
    .unwrap();
    let mut r = Responder::new(p.b.clone(), 100);
    let acc = accept(
        r.handle_initiation(t0, rng, SRC, &first.unwrap(), 0x300, true)
            .unwrap(),
    );
    let response = acc.response;
    let mut b = Link::accept(p.b.clone(), *acc, None, None, t0);
    let LinkEvent::Transmit(ka) = a.handle_packet(t0, WALL, rng, &response).unwrap() else {
        panic!("keepalive expected")
    };
    assert_eq!(
        b.handle_packet(t0, WALL, rng, &ka).unwrap(),
        LinkEvent::Nothing
    );
    (a, b, r, p)
}

#[test]
fn keepalive_after_receiving_without_sending() {
    let mut rng = TestRng::new(7);
    let t0 = Instant::now();
    let (mut a, mut b, _, _) = linked(&mut rng, t0);
    let d = a.encrypt(t0, &mut rng, b"data").unwrap();
    assert_eq!(
        b.handle_packet(t0, WALL, &mut rng, &d).unwrap(),
        LinkEvent::Payload(b"data".to_vec())
    );
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    let t = t0 + Duration::from_secs(9);
    assert_eq!(b.handle_timeout(t, WALL, &mut rng).unwrap(), None);
    let t = t0 + Duration::from_secs(10);
    let ka = b
        .handle_timeout(t, WALL, &mut rng)
        .unwrap()
        .expect("keepalive");
    assert_eq!(ka.len(), DATA_OVERHEAD);
    assert_eq!(
        a.handle_packet(t, WALL, &mut rng, &ka).unwrap(),
        LinkEvent::Nothing
    );
    // A keepalive does not arm the peer's keepalive timer (no ping-pong of keepalives), and
    // the answer cleared A's "unanswered" timer.
    let later = t + Duration::from_secs(30);
    assert_eq!(b.handle_timeout(later, WALL, &mut rng).unwrap(), None);
}

#[test]
fn unanswered_data_starts_a_new_handshake() {
    let mut rng = TestRng::new(8);
    let t0 = Instant::now();
    let (mut a, _b, _, _) = linked(&mut rng, t0);
    a.encrypt(t0, &mut rng, b"hello?").unwrap();
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(15)));
    assert_eq!(
        a.handle_timeout(t0 + Duration::from_secs(14), WALL, &mut rng)
            .unwrap(),
        None
    );
    let init = a
        .handle_timeout(t0 + Duration::from_secs(15), WALL, &mut rng)
        .unwrap();
    assert!(init.is_some_and(|p| p[..5] == [0xff, 0xff, 0xff, 0xff, 1]));
    // Re-key attempts do not fall back to legacy: the link stays Noise and keeps its keys.
    for i in 1..=20u64 {
        let _ = a
            .handle_timeout(t0 + Duration::from_secs(15 + 5 * i), WALL, &mut rng)
            .unwrap();
    }
    assert_eq!(a.mode(), LinkMode::Noise);
}

#[test]
fn rekey_after_120s_keeps_previous_keys_for_packets_in_flight() {
    let mut rng = TestRng::new(9);
    let t0 = Instant::now();
    let (mut a, mut b, mut r, _) = linked(&mut rng, t0);
    let t = t0 + Duration::from_secs(120);
    // B sends with the old keys; the packet is still in flight while A re-keys.
    let in_flight = b.encrypt(t, &mut rng, b"old keys").unwrap();
    let init = a
        .handle_timeout(t, WALL + Duration::from_secs(120), &mut rng)
        .unwrap()
        .expect("re-key initiation");
    let acc = accept(
        r.handle_initiation(t, &mut rng, SRC, &init, 0x301, true)
            .unwrap(),
    );
    let response = acc.response;
    b.install(*acc, t).unwrap();
    let LinkEvent::Transmit(ka) = a.handle_packet(t, WALL, &mut rng, &response).unwrap() else {
        panic!("keepalive expected")
    };
    assert_eq!(
        b.handle_packet(t, WALL, &mut rng, &ka).unwrap(),
        LinkEvent::Nothing
    );
    assert_eq!(
        a.handle_packet(t, WALL, &mut rng, &in_flight).unwrap(),
        LinkEvent::Payload(b"old keys".to_vec())
    );
    let new = b.encrypt(t, &mut rng, b"new keys").unwrap();
    assert_ne!(new[..4], in_flight[..4], "a new index per handshake");
    assert_eq!(
        a.handle_packet(t, WALL, &mut rng, &new).unwrap(),
        LinkEvent::Payload(b"new keys".to_vec())
    );
    let d = a.encrypt(t, &mut rng, b"both ways").unwrap();
    assert_eq!(
        b.handle_packet(t, WALL, &mut rng, &d).unwrap(),
        LinkEvent::Payload(b"both ways".to_vec())
    );
}

// --- PrevSessIndex (digest §6.3.2 entity 2, §6.3.5 item 1) -------------------------------------

const SRC2: &[u8] = b"10.0.0.2:4321";

fn prev_index_of(p: &Pair, init: &[u8]) -> Option<u32> {
    ObservedInitiation::open(&p.b, init)
        .unwrap()
        .additional
        .prev_session_index
}

fn initiation_with_prev(rng: &mut TestRng, p: &Pair, prev: Option<u32>) -> Vec<u8> {
    let mut out = [0u8; MAX_INITIATION_LEN];
    let params = InitiationParams {
        prev_session_index: prev,
        ..Default::default()
    };
    let (_, n) = InitiationSent::new(&p.a, &p.pb, &params, 0x0100, WALL, rng, &mut out).unwrap();
    out[..n].to_vec()
}

#[test]
fn rekey_sends_prev_sess_index_and_attaches_to_the_same_key() {
    let mut rng = TestRng::new(20);
    let t0 = Instant::now();
    let (mut a, mut b, mut r, p) = linked(&mut rng, t0);
    // A learnt B's session index (responder index 0x300 >> 8) from the response; the first
    // initiation could not carry one.
    assert_eq!(b.session_index(), 3);
    assert_eq!(a.peer_session_index(), Some(3));
    let t = t0 + REKEY_AFTER_TIME;
    let wall = WALL + REKEY_AFTER_TIME;
    let init = a
        .handle_timeout(t, wall, &mut rng)
        .unwrap()
        .expect("re-key");
    assert_eq!(prev_index_of(&p, &init), Some(3));
    // A now speaks from a new link address: the index finds B's session of the same key.
    let known = [KnownSession {
        session_index: b.session_index(),
        link: SRC,
        peer: b.peer(),
        credentials: None,
    }];
    let acc = accept(
        r.handle_initiation_in(t, &mut rng, SRC2, &init, &known, true, |at| match at {
            Attach::Existing(3) => b.next_local_index(),
            other => panic!("{other:?}"),
        })
        .unwrap(),
    );
    assert_eq!(acc.attach, Attach::Existing(3));
    assert_eq!(acc.transport.local_index(), 0x301, "B's next index");
    let response = acc.response;
    b.install(*acc, t).unwrap();
    let LinkEvent::Transmit(ka) = a.handle_packet(t, wall, &mut rng, &response).unwrap() else {
        panic!("keepalive expected")
    };
    assert_eq!(
        b.handle_packet(t, wall, &mut rng, &ka).unwrap(),
        LinkEvent::Nothing
    );
    let d = b.encrypt(t, &mut rng, b"attached").unwrap();
    assert_eq!(
        a.handle_packet(t, wall, &mut rng, &d).unwrap(),
        LinkEvent::Payload(b"attached".to_vec())
    );
    // The next re-key names B's session again (0x301 >> 8); its retry goes without the hint,
    // which may be stale.
    assert_eq!(a.peer_session_index(), Some(3));
    let t = t + REKEY_AFTER_TIME;
    let wall = wall + REKEY_AFTER_TIME;
    let init = a
        .handle_timeout(t, wall, &mut rng)
        .unwrap()
        .expect("re-key");
    assert_eq!(prev_index_of(&p, &init), Some(3));
    let retry = a
        .handle_timeout(t + RETRY_AFTER, wall + RETRY_AFTER, &mut rng)
        .unwrap()
        .expect("retry");
    assert_eq!(prev_index_of(&p, &retry), None);
    // The un-hinted retry from the old address is matched by link address and key.
    let acc = accept(
        r.handle_initiation_in(t + RETRY_AFTER, &mut rng, SRC, &retry, &known, true, |_| {
            b.next_local_index()
        })
        .unwrap(),
    );
    assert_eq!(acc.attach, Attach::Existing(3));
    assert_eq!(acc.peer, p.pa);
}

#[test]
fn prev_sess_index_naming_another_key_is_wrong_perm_pubkey() {
    let mut rng = TestRng::new(21);
    let t0 = Instant::now();
    let p = pair(&mut rng, &[]);
    let (_, pc, _) = PrivateKey::generate(&mut rng);
    let mut r = Responder::new(p.b.clone(), 100);
    let c_session = [KnownSession {
        session_index: 3,
        link: b"10.0.0.3:1",
        peer: pc,
        credentials: None,
    }];
    // From an unknown link address, PrevSessIndex 3 names C's session: cjdns's rejection.
    let init = initiation_with_prev(&mut rng, &p, Some(3));
    let err = r
        .handle_initiation_in(t0, &mut rng, SRC, &init, &c_session, false, |_| 0x200)
        .unwrap_err();
    assert_eq!(err, NoiseError::WrongPermPubkey);
    assert!(err.to_string().starts_with("WRONG_PERM_PUBKEY"));
    // Nothing was recorded: the same initiation is accepted when the index names nothing.
    let acc = accept(
        r.handle_initiation_in(t0, &mut rng, SRC, &init, &[], false, |_| 0x200)
            .unwrap(),
    );
    assert_eq!(acc.attach, Attach::New);
    // A link address that belongs to another key is refused the same way.
    let init = initiation_with_prev(&mut rng, &p, None);
    let mut r = Responder::new(p.b.clone(), 100);
    assert_eq!(
        r.handle_initiation_in(
            t0,
            &mut rng,
            b"10.0.0.3:1",
            &init,
            &c_session,
            false,
            |_| { 0x200 }
        )
        .unwrap_err(),
        NoiseError::WrongPermPubkey
    );
    // The check comes after the CjdnsPsk checks, as in 22.3: unauthenticated is AUTH_REQUIRED.
    assert_eq!(
        r.handle_initiation_in(t0, &mut rng, SRC, &init, &c_session, true, |_| 0x200)
            .unwrap_err(),
        NoiseError::AuthRequired
    );
}

#[test]
fn wrong_prev_sess_index_from_a_stock_node_never_misattaches() {
    let mut rng = TestRng::new(22);
    let t0 = Instant::now();
    let p = pair(&mut rng, &[]);
    let (_, pc, _) = PrivateKey::generate(&mut rng);
    let mut r = Responder::new(p.b.clone(), 100);
    // A's session is 5 on SRC; C's is 3. A stock 22.3 node (response index swap) sends its
    // own index back as PrevSessIndex: here 3, naming C's session.
    let known = [
        KnownSession {
            session_index: 3,
            link: b"10.0.0.3:1",
            peer: pc,
            credentials: None,
        },
        KnownSession {
            session_index: 5,
            link: SRC,
            peer: p.pa,
            credentials: None,
        },
    ];
    let init = initiation_with_prev(&mut rng, &p, Some(3));
    let acc = accept(
        r.handle_initiation_in(t0, &mut rng, SRC, &init, &known, false, |at| match at {
            Attach::Existing(5) => 0x501,
            other => panic!("{other:?}"),
        })
        .unwrap(),
    );
    assert_eq!(
        acc.attach,
        Attach::Existing(5),
        "matched by link address and key"
    );
    assert_eq!(
        acc.additional.prev_session_index,
        Some(3),
        "the hint is still reported"
    );
    assert_eq!(acc.transport.local_index(), 0x501);
    // An index naming no session from a new address starts a new session.
    let init = initiation_with_prev(&mut rng, &p, Some(77));
    let mut r = Responder::new(p.b.clone(), 100);
    let acc = accept(
        r.handle_initiation_in(t0, &mut rng, SRC2, &init, &known, false, |_| 0x900)
            .unwrap(),
    );
    assert_eq!(acc.attach, Attach::New);
    // The plain entry point never attaches.
    let init = initiation_with_prev(&mut rng, &p, Some(5));
    let mut r = Responder::new(p.b.clone(), 100);
    let acc = accept(
        r.handle_initiation(t0, &mut rng, SRC, &init, 0x900, false)
            .unwrap(),
    );
    assert_eq!(acc.attach, Attach::New);
}

// --- 540 s: all keys dropped (digest §6.3.4) ---------------------------------------------------

/// Drive `link`'s timers on a virtual clock until `end`, discarding what it sends; returns
/// when it became [`LinkMode::Expired`], if it did.
fn run_silent(link: &mut Link, rng: &mut TestRng, end: Instant) -> Option<Instant> {
    for _ in 0..1000 {
        let t = link.poll_timeout()?;
        if t > end {
            return None;
        }
        assert_ne!(link.mode(), LinkMode::Expired);
        let _ = link.handle_timeout(t, WALL, rng).unwrap();
        if link.mode() == LinkMode::Expired {
            return Some(t);
        }
    }
    panic!("timers do not make progress");
}

#[test]
fn all_keys_dropped_540s_after_the_last_handshake() {
    let mut rng = TestRng::new(23);
    let t0 = Instant::now();
    let (mut a, mut b, mut r, p) = linked(&mut rng, t0);
    assert_eq!(DROP_ALL_AFTER, Duration::from_secs(540));
    assert_eq!(a.last_handshake(), Some(t0));
    let old = b.encrypt(t0, &mut rng, b"old").unwrap();
    // The peers stop hearing each other. A (initiator) tries to re-key at 120 s, gives up at
    // 210 s; B (responder) tries at 180 s when its keys expire, gives up at 270 s. Both drop
    // everything at exactly 540 s.
    let end = t0 + Duration::from_secs(1000);
    assert_eq!(run_silent(&mut a, &mut rng, end), Some(t0 + DROP_ALL_AFTER));
    assert_eq!(run_silent(&mut b, &mut rng, end), Some(t0 + DROP_ALL_AFTER));
    for link in [&mut a, &mut b] {
        assert_eq!(link.mode(), LinkMode::Expired);
        assert_eq!(link.poll_timeout(), None, "idle until a fresh handshake");
        assert_eq!(link.last_handshake(), None);
        assert_eq!(link.peer_session_index(), None);
        assert_eq!(
            link.encrypt(end, &mut rng, b"x").unwrap_err(),
            LinkError::NotReady
        );
        assert_eq!(link.handle_timeout(end, WALL, &mut rng).unwrap(), None);
    }
    assert_eq!(
        a.handle_packet(end, WALL, &mut rng, &old).unwrap_err(),
        LinkError::NotReady
    );
    // One second earlier nothing is dropped yet.
    let (mut a2, _, _, _) = linked(&mut rng, t0);
    let just_before = t0 + DROP_ALL_AFTER - Duration::from_secs(1);
    assert_eq!(run_silent(&mut a2, &mut rng, just_before), None);
    assert_ne!(a2.mode(), LinkMode::Expired);
    // A fresh handshake revives the link (without a PrevSessIndex: it was forgotten).
    let wall = WALL + Duration::from_secs(1000);
    let init = a.reconnect(end, wall, &mut rng).unwrap();
    assert_eq!(prev_index_of(&p, &init), None);
    assert_eq!(a.mode(), LinkMode::NoiseHandshake);
    let known = [KnownSession {
        session_index: b.session_index(),
        link: SRC,
        peer: b.peer(),
        credentials: None,
    }];
    let acc = accept(
        r.handle_initiation_in(end, &mut rng, SRC, &init, &known, true, |_| {
            b.next_local_index()
        })
        .unwrap(),
    );
    assert_eq!(acc.attach, Attach::Existing(3));
    let response = acc.response;
    b.install(*acc, end).unwrap();
    let LinkEvent::Transmit(ka) = a.handle_packet(end, wall, &mut rng, &response).unwrap() else {
        panic!("keepalive expected")
    };
    assert_eq!(
        b.handle_packet(end, wall, &mut rng, &ka).unwrap(),
        LinkEvent::Nothing
    );
    assert_eq!((a.mode(), b.mode()), (LinkMode::Noise, LinkMode::Noise));
    let d = b.encrypt(end, &mut rng, b"again").unwrap();
    assert_eq!(
        a.handle_packet(end, wall, &mut rng, &d).unwrap(),
        LinkEvent::Payload(b"again".to_vec())
    );
    // The timers run again (next: the keepalive for the data just received).
    assert_eq!(a.poll_timeout(), Some(end + Duration::from_secs(10)));
}

#[test]
fn a_link_that_keeps_rekeying_never_expires() {
    let mut rng = TestRng::new(24);
    let t0 = Instant::now();
    let (mut a, mut b, mut r, p) = linked(&mut rng, t0);
    for step in 1..=10u32 {
        let t = t0 + REKEY_AFTER_TIME * step;
        let wall = WALL + REKEY_AFTER_TIME * step;
        assert_eq!(a.poll_timeout(), Some(t));
        let init = a
            .handle_timeout(t, wall, &mut rng)
            .unwrap()
            .expect("re-key");
        assert_eq!(prev_index_of(&p, &init), Some(3), "step {step}");
        let known = [KnownSession {
            session_index: b.session_index(),
            link: SRC,
            peer: b.peer(),
            credentials: None,
        }];
        let acc = accept(
            r.handle_initiation_in(t, &mut rng, SRC, &init, &known, true, |_| {
                b.next_local_index()
            })
            .unwrap(),
        );
        let response = acc.response;
        b.install(*acc, t).unwrap();
        let LinkEvent::Transmit(ka) = a.handle_packet(t, wall, &mut rng, &response).unwrap() else {
            panic!("keepalive expected")
        };
        b.handle_packet(t, wall, &mut rng, &ka).unwrap();
        assert_eq!(a.last_handshake(), Some(t));
        assert_eq!(b.last_handshake(), Some(t));
    }
    // 1200 s after the first handshake, still Noise on both sides.
    assert_eq!((a.mode(), b.mode()), (LinkMode::Noise, LinkMode::Noise));
}

// --- pktmesh: PktmeshPsk, re-handshakes that wait for data, re-keys from the responder ------

/// A pktmesh initiation: CjdnsVer and PktmeshPsk, no CjdnsPsk.
fn pktmesh_initiation(rng: &mut TestRng, p: &Pair, wall: Duration) -> (InitiationSent, Vec<u8>) {
    let mut out = [0u8; MAX_INITIATION_LEN];
    let params = InitiationParams {
        credentials: Some(Credentials::derive(b"alice", b"pw")),
        psk_entity: PskEntity::Pktmesh,
        ..Default::default()
    };
    let (s, n) = InitiationSent::new(&p.a, &p.pb, &params, 0x0100, wall, rng, &mut out).unwrap();
    (s, out[..n].to_vec())
}

#[test]
fn a_pktmesh_initiation_names_its_user_in_pktmesh_psk_only() {
    let mut rng = TestRng::new(30);
    let now = Instant::now();
    let p = pair(&mut rng, &[(b"pw", Some(b"alice"))]);
    let (sent, init) = pktmesh_initiation(&mut rng, &p, WALL);
    assert_eq!(
        init.len(),
        184,
        "CjdnsVer 6 + PktmeshPsk 10 bytes, no padding"
    );
    let seen = ObservedInitiation::open(&p.b, &init).unwrap();
    assert_eq!(
        seen.additional.psk_lookup, None,
        "no CjdnsPsk: stock 22.3 drops it"
    );
    assert!(seen.additional.pktmesh_psk.is_some());
    let mut r = Responder::new(p.b.clone(), 100);
    let screened = r.screen(&init).unwrap();
    assert_eq!(screened.initiator_index(), 0x0100);
    let acc = accept(
        r.answer(now, &mut rng, SRC, screened, &[], true, |_| 0x0200)
            .unwrap(),
    );
    assert_eq!(acc.login.as_deref(), Some(&b"alice"[..]));
    assert_eq!(
        acc.credentials.as_ref().map(Credentials::lookup),
        Some(Credentials::derive(b"alice", b"pw").lookup())
    );
    sent.complete(&p.a, now, &acc.response).unwrap();
    // Neither entity: refused while auth is required.
    let (_, bare) = initiate(&mut rng, &p, None, None, WALL + Duration::from_secs(1));
    assert_eq!(
        r.handle_initiation(now, &mut rng, SRC, &bare, 0x200, true)
            .unwrap_err(),
        NoiseError::AuthRequired
    );
    // Screening changes nothing and costs no X25519: a bad mac1 fails there.
    let mut bad = init.clone();
    let m = bad.len();
    bad[m - 20] ^= 1;
    assert_eq!(r.screen(&bad).unwrap_err(), NoiseError::BadMac);
}

#[test]
fn a_handshake_the_peer_starts_replaces_the_keys_only_once_data_opens_under_it() {
    let mut rng = TestRng::new(31);
    let t0 = Instant::now();
    let (mut a, mut b, mut r, _) = linked(&mut rng, t0);
    let t = t0 + Duration::from_secs(30);
    // A starts a re-handshake; B installs it but keeps sending with the keys in use.
    let wall = WALL + Duration::from_secs(30);
    let init = a.reconnect(t, wall, &mut rng).unwrap();
    let acc = accept(
        r.handle_initiation(t, &mut rng, SRC, &init, 0x301, true)
            .unwrap(),
    );
    let response = acc.response;
    let generation = b.generation();
    b.install(*acc, t).unwrap();
    assert_eq!(b.generation(), generation, "nothing replaced yet");
    let old = b.encrypt(t, &mut rng, b"still old").unwrap();
    assert_eq!(
        a.handle_packet(t, WALL, &mut rng, &old).unwrap(),
        LinkEvent::Payload(b"still old".to_vec())
    );
    // The response never arrives at A (lost, or the initiation was a replay): B keeps working.
    let d = a.encrypt(t, &mut rng, b"old keys too").unwrap();
    assert_eq!(
        b.handle_packet(t, WALL, &mut rng, &d).unwrap(),
        LinkEvent::Payload(b"old keys too".to_vec())
    );
    assert_eq!(b.generation(), generation);
    // Once A has the response, its keepalive opens under the new keys at B: they take over.
    let LinkEvent::Transmit(mut ka) = a.handle_packet(t, wall, &mut rng, &response).unwrap() else {
        panic!("keepalive expected")
    };
    assert!(b.open_in_place(t, &mut ka).unwrap().is_empty());
    assert_eq!(b.generation(), generation + 1);
    let new = b.encrypt(t, &mut rng, b"new").unwrap();
    assert_ne!(new[..4], old[..4], "sent under the new keys");
    assert_eq!(
        a.handle_packet(t, WALL, &mut rng, &new).unwrap(),
        LinkEvent::Payload(b"new".to_vec())
    );
}

#[test]
fn the_responder_re_keys_with_the_credentials_it_accepted_and_the_initiator_knows_them() {
    let mut rng = TestRng::new(32);
    let t0 = Instant::now();
    let p = pair(&mut rng, &[(b"pw", Some(b"alice"))]);
    // A connects with a PktmeshPsk; A itself authorizes nobody.
    let auth = LinkAuth {
        password: Some(b"pw"),
        login: Some(b"alice"),
        psk_entity: PskEntity::Pktmesh,
    };
    let (mut a, first) =
        Link::initiate(p.a.clone(), p.pb, auth, 0x100, t0, WALL, &mut rng).unwrap();
    let mut rb = Responder::new(p.b.clone(), 100);
    let acc = accept(
        rb.handle_initiation(t0, &mut rng, SRC, &first, 0x300, true)
            .unwrap(),
    );
    let response = acc.response;
    let mut b = Link::accept(p.b.clone(), *acc, None, None, t0);
    let LinkEvent::Transmit(ka) = a.handle_packet(t0, WALL, &mut rng, &response).unwrap() else {
        panic!("keepalive expected")
    };
    b.handle_packet(t0, WALL, &mut rng, &ka).unwrap();
    // B re-keys (its keys are about to expire); its initiation names the same user.
    let wall = WALL + Duration::from_secs(60);
    let t = t0 + Duration::from_secs(60);
    let init = b.reconnect(t, wall, &mut rng).unwrap();
    let seen = ObservedInitiation::open(&p.a, &init).unwrap();
    assert_eq!(
        seen.additional.pktmesh_psk,
        Some(*Credentials::derive(b"alice", b"pw").lookup())
    );
    // A is not B's user base: only the session's own credentials let it answer.
    let mut ra = Responder::new(p.a.clone(), 100);
    assert_eq!(
        ra.handle_initiation(t, &mut rng, SRC, &init, 0x101, true)
            .unwrap_err(),
        NoiseError::UnrecognizedAuth
    );
    let creds = a.credentials().cloned();
    let known = [KnownSession {
        session_index: a.session_index(),
        link: SRC,
        peer: a.peer(),
        credentials: creds.as_ref(),
    }];
    let index = a.next_local_index();
    let mut ra = Responder::new(p.a.clone(), 100);
    let acc = accept(
        ra.handle_initiation_in(t, &mut rng, SRC, &init, &known, true, |_| index)
            .unwrap(),
    );
    assert_eq!(acc.attach, Attach::Existing(a.session_index()));
    let response = acc.response;
    a.install(*acc, t).unwrap();
    let LinkEvent::Transmit(ka) = b.handle_packet(t, wall, &mut rng, &response).unwrap() else {
        panic!("keepalive expected")
    };
    assert_eq!(
        a.handle_packet(t, wall, &mut rng, &ka).unwrap(),
        LinkEvent::Nothing
    );
    let d = a.encrypt(t, &mut rng, b"both re-keyed").unwrap();
    assert_eq!(
        b.handle_packet(t, wall, &mut rng, &d).unwrap(),
        LinkEvent::Payload(b"both re-keyed".to_vec())
    );
}
