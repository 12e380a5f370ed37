//! Round trips and adversaries (issue 3, "Must show" 2). Every case asserts its outcome.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::TestRng;
use pktmesh_crypto_auth::legacy::{
    raw, AuthChallenge, CryptoAuth, HandshakeHeader, PacketKind, Session, State, HEADER_LEN,
    MAX_OVERHEAD,
};
use pktmesh_crypto_auth::{DecryptError, PrivateKey, PublicKey};
use rand_core::RngCore;

struct Node {
    ca: Arc<CryptoAuth>,
    key: PrivateKey,
    public: PublicKey,
}

/// (password, login, restricted to this node's address)
type UserSpec<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a Node>);

fn node(rng: &mut TestRng, users: &[UserSpec<'_>]) -> Node {
    let (key, public, _) = PrivateKey::generate(rng);
    let mut ca = CryptoAuth::new(key.clone());
    for (pw, login, only) in users {
        ca.add_user(pw, *login, only.map(|n| n.public.address()))
            .unwrap();
    }
    Node {
        ca: Arc::new(ca),
        key,
        public,
    }
}

fn snapshot(s: &Session) -> String {
    format!(
        "{:?} {} {:?} {:?} {} {}",
        s.state(),
        s.next_nonce(),
        s.our_temp_public(),
        s.peer_temp_public(),
        s.replay_stats().received,
        s.replay_stats().lost,
    )
}

/// Decrypt and insist that a failure leaves the session untouched (statistics counters of
/// rejected nonces aside).
fn open(s: &mut Session, now: Instant, p: &[u8]) -> Result<(PacketKind, Vec<u8>), DecryptError> {
    let before = snapshot(s);
    let mut p = p.to_vec();
    match s.decrypt(now, &mut p) {
        Ok(o) => Ok((o.kind, o.payload.to_vec())),
        Err(e) => {
            assert_eq!(before, snapshot(s), "{e:?} changed the session");
            Err(e)
        }
    }
}

/// A (initiator, password + login) and B (requires auth) through the full handshake.
fn established(rng: &mut TestRng, now: Instant) -> (Session, Session) {
    let b_probe = node(rng, &[]);
    let a = node(rng, &[]);
    let b = Node {
        ca: {
            let mut ca = CryptoAuth::new(b_probe.key.clone());
            ca.add_user(b"pw", Some(b"alice"), None).unwrap();
            Arc::new(ca)
        },
        ..b_probe
    };
    let mut sa = Session::new(a.ca.clone(), b.public, false, now);
    sa.set_auth(Some(b"pw"), Some(b"alice"));
    let mut sb = Session::new(b.ca.clone(), a.public, true, now);
    handshake(rng, now, &mut sa, &mut sb);
    (sa, sb)
}

fn handshake(rng: &mut TestRng, now: Instant, sa: &mut Session, sb: &mut Session) {
    let hello = sa.encrypt_to_vec(now, rng, b"h").unwrap();
    assert_eq!(open(sb, now, &hello).unwrap().0, PacketKind::Hello);
    let key = sb.encrypt_to_vec(now, rng, b"k").unwrap();
    assert_eq!(open(sa, now, &key).unwrap().0, PacketKind::Key);
    let d = sa.encrypt_to_vec(now, rng, b"d").unwrap();
    assert!(matches!(open(sb, now, &d).unwrap().0, PacketKind::Data(_)));
    let d = sb.encrypt_to_vec(now, rng, b"d").unwrap();
    assert!(matches!(open(sa, now, &d).unwrap().0, PacketKind::Data(_)));
    assert_eq!(
        (sa.state(), sb.state()),
        (State::Established, State::Established)
    );
}

/// 100 000 packets each way, delivered out of order within the replay window, with
/// duplicates (REPLAY), truncations (RUNT / DECRYPT) and bit flips (DECRYPT) mixed in.
#[test]
fn hundred_thousand_packets_reordered_duplicated_truncated_flipped() {
    let mut rng = TestRng::new(1);
    let now = Instant::now();
    let (mut sa, mut sb) = established(&mut rng, now);
    let mut buf = [0u8; MAX_OVERHEAD + 64];
    let (mut delivered, mut replays, mut runts, mut decrypt_errs) = (0u32, 0u32, 0u32, 0u32);
    for dir in 0..2 {
        let (tx, rx) = if dir == 0 {
            (&mut sa, &mut sb)
        } else {
            (&mut sb, &mut sa)
        };
        let mut batch: Vec<(Vec<u8>, u32)> = Vec::new();
        for i in 0..100_000u32 {
            let payload_len = 1 + (i % 64) as usize;
            buf[MAX_OVERHEAD..MAX_OVERHEAD + payload_len].fill(i as u8);
            let p = tx
                .encrypt(
                    now,
                    &mut rng,
                    &mut buf[..MAX_OVERHEAD + payload_len],
                    MAX_OVERHEAD,
                )
                .unwrap()
                .to_vec();
            batch.push((p, i));
            if batch.len() < 16 {
                continue;
            }
            // Shuffle the batch of 16: any order within the window is accepted.
            for j in (1..batch.len()).rev() {
                let k = (rng.next_u32() as usize) % (j + 1);
                batch.swap(j, k);
            }
            for (p, i) in batch.drain(..) {
                let want = vec![i as u8; 1 + (i % 64) as usize];
                let (kind, got) = open(rx, now, &p).expect("in-window packet accepted");
                assert!(matches!(kind, PacketKind::Data(_)));
                assert_eq!(got, want);
                delivered += 1;
                if i % 7 == 0 {
                    assert_eq!(open(rx, now, &p).unwrap_err(), DecryptError::Replay);
                    replays += 1;
                }
                if i % 11 == 0 {
                    let cut = (rng.next_u32() as usize) % p.len();
                    let expect = if cut < 20 {
                        DecryptError::Runt
                    } else {
                        DecryptError::Decrypt
                    };
                    assert_eq!(open(rx, now, &p[..cut]).unwrap_err(), expect);
                    if cut < 20 {
                        runts += 1
                    } else {
                        decrypt_errs += 1
                    }
                }
                if i % 13 == 0 {
                    let mut f = p.clone();
                    let at = 4 + (rng.next_u32() as usize) % (f.len() - 4);
                    f[at] ^= 1 << (rng.next_u32() % 8);
                    assert_eq!(open(rx, now, &f).unwrap_err(), DecryptError::Decrypt);
                    decrypt_errs += 1;
                }
            }
        }
        assert!(batch.is_empty());
        // Nothing is lost to reordering; the initiator's +3 nonce jump when it became
        // established (5, 6, 7 never sent) shows up as 3 lost nonces in its direction only.
        assert_eq!(rx.replay_stats().lost, if dir == 0 { 3 } else { 0 });
    }
    assert_eq!(delivered, 200_000);
    assert!(replays > 20_000 && runts > 100 && decrypt_errs > 20_000);
    assert_eq!(
        (sa.state(), sb.state()),
        (State::Established, State::Established)
    );
}

/// A packet older than the window is refused as a replay even though it authenticates.
#[test]
fn too_old_is_replay() {
    let mut rng = TestRng::new(2);
    let now = Instant::now();
    let (mut sa, mut sb) = established(&mut rng, now);
    let old = sa.encrypt_to_vec(now, &mut rng, b"old").unwrap();
    for _ in 0..100 {
        let p = sa.encrypt_to_vec(now, &mut rng, b"new").unwrap();
        open(&mut sb, now, &p).unwrap();
    }
    assert_eq!(open(&mut sb, now, &old).unwrap_err(), DecryptError::Replay);
    // A nonce flipped below 4 turns a data packet into a "handshake" of the wrong size.
    let mut p = sa.encrypt_to_vec(now, &mut rng, b"x").unwrap();
    p[..4].copy_from_slice(&2u32.to_be_bytes());
    assert_eq!(
        open(&mut sb, now, &p).unwrap_err(),
        DecryptError::KeyPktEstablishedSession
    );
    p[..4].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(open(&mut sb, now, &p).unwrap_err(), DecryptError::Internal);
}

/// B restarts (fresh session, same keys): A's data is NO_SESSION to it; B's new HELLO resets
/// A's established session and the two re-handshake, roles swapped.
#[test]
fn restarted_peer_rehandshakes() {
    let mut rng = TestRng::new(3);
    let now = Instant::now();
    let (mut sa, sb) = established(&mut rng, now);
    let mut sb2 = Session::new(sb.context().clone(), *sb.peer(), true, now);
    let d = sa.encrypt_to_vec(now, &mut rng, b"to the old B").unwrap();
    assert_eq!(
        open(&mut sb2, now, &d).unwrap_err(),
        DecryptError::NoSession
    );
    // The restarted B needs A to authenticate again; A's session (require_auth = false)
    // takes B's unauthenticated HELLO.
    let hello = sb2.encrypt_to_vec(now, &mut rng, b"I'm back").unwrap();
    let (kind, payload) = open(&mut sa, now, &hello).unwrap();
    assert_eq!((kind, &payload[..]), (PacketKind::Hello, &b"I'm back"[..]));
    assert_eq!(sa.state(), State::ReceivedHello);
    let key = sa.encrypt_to_vec(now, &mut rng, b"welcome").unwrap();
    assert_eq!(open(&mut sb2, now, &key).unwrap().0, PacketKind::Key);
    let d = sb2.encrypt_to_vec(now, &mut rng, b"d").unwrap();
    open(&mut sa, now, &d).unwrap();
    let d = sa.encrypt_to_vec(now, &mut rng, b"d").unwrap();
    open(&mut sb2, now, &d).unwrap();
    assert!(sb2.is_initiator() && !sa.is_initiator());
    assert_eq!(
        (sa.state(), sb2.state()),
        (State::Established, State::Established)
    );
}

/// A restarts and HELLOs an established B (which requires auth): B resets and answers.
#[test]
fn restarted_initiator_rehandshakes() {
    let mut rng = TestRng::new(4);
    let now = Instant::now();
    let (sa, mut sb) = established(&mut rng, now);
    let mut sa2 = Session::new(sa.context().clone(), *sa.peer(), false, now);
    sa2.set_auth(Some(b"pw"), Some(b"alice"));
    handshake(&mut rng, now, &mut sa2, &mut sb);
}

/// Both send HELLO at once: the node with the lower permanent key stays initiator, the other
/// yields and answers with a KEY; both end up established.
#[test]
fn simultaneous_hello() {
    let mut rng = TestRng::new(5);
    let now = Instant::now();
    let (x, y) = (node(&mut rng, &[]), node(&mut rng, &[]));
    let (lo, hi) = if x.public.as_bytes() < y.public.as_bytes() {
        (x, y)
    } else {
        (y, x)
    };
    let mut s_lo = Session::new(lo.ca.clone(), hi.public, false, now);
    let mut s_hi = Session::new(hi.ca.clone(), lo.public, false, now);
    let h_lo = s_lo.encrypt_to_vec(now, &mut rng, b"from lo").unwrap();
    let h_hi = s_hi.encrypt_to_vec(now, &mut rng, b"from hi").unwrap();
    // lo keeps its state but still delivers hi's payload.
    assert_eq!(open(&mut s_lo, now, &h_hi).unwrap().1, b"from hi");
    assert_eq!(s_lo.state(), State::SentHello);
    // hi yields.
    assert_eq!(open(&mut s_hi, now, &h_lo).unwrap().1, b"from lo");
    assert_eq!(s_hi.state(), State::ReceivedHello);
    let key = s_hi.encrypt_to_vec(now, &mut rng, b"k").unwrap();
    assert_eq!(open(&mut s_lo, now, &key).unwrap().0, PacketKind::Key);
    let d = s_lo.encrypt_to_vec(now, &mut rng, b"d").unwrap();
    open(&mut s_hi, now, &d).unwrap();
    let d = s_hi.encrypt_to_vec(now, &mut rng, b"d").unwrap();
    open(&mut s_lo, now, &d).unwrap();
    assert!(s_lo.is_initiator() && !s_hi.is_initiator());
    assert_eq!(
        (s_lo.state(), s_hi.state()),
        (State::Established, State::Established)
    );
}

fn hello_from(
    rng: &mut TestRng,
    now: Instant,
    from: &Node,
    to: &Node,
    password: &[u8],
    login: Option<&[u8]>,
) -> Vec<u8> {
    let mut s = Session::new(from.ca.clone(), to.public, false, now);
    s.set_auth(Some(password), login);
    s.encrypt_to_vec(now, rng, b"hi").unwrap()
}

#[test]
fn wrong_password() {
    let mut rng = TestRng::new(6);
    let now = Instant::now();
    let a = node(&mut rng, &[]);
    let b = node(&mut rng, &[(b"right", Some(b"alice"), None)]);
    // Right login, wrong password: the lookup matches, the box does not open.
    let h = hello_from(&mut rng, now, &a, &b, b"wrong", Some(b"alice"));
    let mut sb = Session::new(b.ca.clone(), a.public, true, now);
    assert_eq!(
        open(&mut sb, now, &h).unwrap_err(),
        DecryptError::HandshakeDecryptFailed
    );
    // Type 1 (password only), wrong password: no user matches.
    let h = hello_from(&mut rng, now, &a, &b, b"wrong", None);
    assert_eq!(
        open(&mut sb, now, &h).unwrap_err(),
        DecryptError::AuthRequired
    );
    let mut open_sb = Session::new(b.ca.clone(), a.public, false, now);
    assert_eq!(
        open(&mut open_sb, now, &h).unwrap_err(),
        DecryptError::UnrecognizedAuth
    );
    // And the right one works both ways (type 1 and type 2).
    for login in [None, Some(&b"alice"[..])] {
        let h = hello_from(&mut rng, now, &a, &b, b"right", login);
        let mut sb = Session::new(b.ca.clone(), a.public, true, now);
        assert_eq!(open(&mut sb, now, &h).unwrap().0, PacketKind::Hello);
    }
    assert_eq!(sb.state(), State::Init);
}

#[test]
fn unknown_login() {
    let mut rng = TestRng::new(7);
    let now = Instant::now();
    let a = node(&mut rng, &[]);
    let b = node(&mut rng, &[(b"pw", Some(b"alice"), None)]);
    let h = hello_from(&mut rng, now, &a, &b, b"pw", Some(b"mallory"));
    // 22.3 checks "auth required" before "unrecognized".
    let mut sb = Session::new(b.ca.clone(), a.public, true, now);
    assert_eq!(
        open(&mut sb, now, &h).unwrap_err(),
        DecryptError::AuthRequired
    );
    let mut sb = Session::new(b.ca.clone(), a.public, false, now);
    assert_eq!(
        open(&mut sb, now, &h).unwrap_err(),
        DecryptError::UnrecognizedAuth
    );
    // No auth at all on a session that requires it.
    let mut plain = Session::new(a.ca.clone(), b.public, false, now);
    let h = plain.encrypt_to_vec(now, &mut rng, b"hi").unwrap();
    let mut sb = Session::new(b.ca.clone(), a.public, true, now);
    assert_eq!(
        open(&mut sb, now, &h).unwrap_err(),
        DecryptError::AuthRequired
    );
}

#[test]
fn ip_restricted_user() {
    let mut rng = TestRng::new(8);
    let now = Instant::now();
    let a = node(&mut rng, &[]);
    let c = node(&mut rng, &[]);
    let b = node(&mut rng, &[(b"pw", Some(b"alice"), Some(&a))]);
    let from_c = hello_from(&mut rng, now, &c, &b, b"pw", Some(b"alice"));
    let mut sb_c = Session::new(b.ca.clone(), c.public, true, now);
    assert_eq!(
        open(&mut sb_c, now, &from_c).unwrap_err(),
        DecryptError::IpRestricted
    );
    let from_a = hello_from(&mut rng, now, &a, &b, b"pw", Some(b"alice"));
    let mut sb_a = Session::new(b.ca.clone(), a.public, true, now);
    assert_eq!(open(&mut sb_a, now, &from_a).unwrap().0, PacketKind::Hello);
    // C's HELLO fed to A's session: wrong permanent key.
    assert_eq!(
        open(&mut sb_a, now, &from_c).unwrap_err(),
        DecryptError::WrongPermPubkey
    );
}

#[test]
fn stray_and_established_keys_and_duplicates() {
    let mut rng = TestRng::new(9);
    let now = Instant::now();
    let a = node(&mut rng, &[]);
    let b = node(&mut rng, &[]);
    let mut sa = Session::new(a.ca.clone(), b.public, false, now);
    let mut sb = Session::new(b.ca.clone(), a.public, false, now);
    let hello = sa.encrypt_to_vec(now, &mut rng, b"h").unwrap();
    let repeat_hello = sa.encrypt_to_vec(now, &mut rng, b"h2").unwrap();
    assert_eq!(PacketKind::of(&repeat_hello), Some(PacketKind::RepeatHello));
    open(&mut sb, now, &hello).unwrap();
    // Same HELLO again: duplicate. REPEAT HELLO with the same temp key: accepted.
    assert_eq!(
        open(&mut sb, now, &hello).unwrap_err(),
        DecryptError::InvalidPacket
    );
    assert_eq!(open(&mut sb, now, &repeat_hello).unwrap().1, b"h2");
    let key = sb.encrypt_to_vec(now, &mut rng, b"k").unwrap();
    let repeat_key = sb.encrypt_to_vec(now, &mut rng, b"k2").unwrap();
    assert_eq!(PacketKind::of(&repeat_key), Some(PacketKind::RepeatKey));
    // A KEY to the responder is stray.
    let mut sb_copy = sb.clone();
    assert_eq!(
        open(&mut sb_copy, now, &key).unwrap_err(),
        DecryptError::WrongPermPubkey
    );
    let mut third = Session::new(b.ca.clone(), a.public, false, now);
    let a_key = {
        // A responder-side KEY aimed at B from A: make A answer a HELLO from B.
        let mut a_resp = Session::new(a.ca.clone(), b.public, false, now);
        let mut b_init = Session::new(b.ca.clone(), a.public, false, now);
        let h = b_init.encrypt_to_vec(now, &mut rng, b"h").unwrap();
        open(&mut a_resp, now, &h).unwrap();
        a_resp.encrypt_to_vec(now, &mut rng, b"k").unwrap()
    };
    assert_eq!(
        open(&mut third, now, &a_key).unwrap_err(),
        DecryptError::StrayKey
    );
    // Data before any KEY was sent: no session.
    open(&mut sa, now, &key).unwrap();
    open(&mut sa, now, &repeat_key).unwrap();
    let d = sa.encrypt_to_vec(now, &mut rng, b"d").unwrap();
    let mut fresh = Session::new(b.ca.clone(), a.public, false, now);
    assert_eq!(
        open(&mut fresh, now, &d).unwrap_err(),
        DecryptError::NoSession
    );
    open(&mut sb, now, &d).unwrap();
    let d = sb.encrypt_to_vec(now, &mut rng, b"d").unwrap();
    open(&mut sa, now, &d).unwrap();
    // KEY on an established session.
    assert_eq!(
        open(&mut sa, now, &key).unwrap_err(),
        DecryptError::KeyPktEstablishedSession
    );
    // Old HELLO on an established session: same temp key, duplicate.
    assert_eq!(
        open(&mut sb, now, &hello).unwrap_err(),
        DecryptError::InvalidPacket
    );
    assert_eq!(
        open(&mut sb, now, &repeat_hello).unwrap_err(),
        DecryptError::InvalidPacket
    );
}

/// A HELLO whose box authenticates but carries an all-zero temporary key.
#[test]
fn zero_temp_key_is_wiseguy() {
    let mut rng = TestRng::new(10);
    let now = Instant::now();
    let a = node(&mut rng, &[]);
    let b = node(&mut rng, &[]);
    let mut p = vec![0u8; HEADER_LEN + 4];
    let mut c = [0u8; 12];
    rng.fill_bytes(&mut c);
    let mut auth = AuthChallenge::from_bytes(&c);
    auth.auth_type = pktmesh_crypto_auth::legacy::AuthType::None;
    let header = HandshakeHeader {
        stage: 0,
        auth,
        nonce: [3; 24],
        public_key: *a.public.as_bytes(),
    };
    p[..4].copy_from_slice(&0u32.to_be_bytes());
    p[4..16].copy_from_slice(&header.auth.to_bytes());
    p[16..40].copy_from_slice(&header.nonce);
    p[40..72].copy_from_slice(&header.public_key);
    let k = raw::beforenm(a.key.as_bytes(), b.public.as_bytes()).unwrap();
    raw::seal_box(&k, &header.nonce, &mut p[72..]);
    let mut sb = Session::new(b.ca.clone(), a.public, false, now);
    assert_eq!(open(&mut sb, now, &p).unwrap_err(), DecryptError::Wiseguy);
    // And with a proper temp key the same construction opens (the test builds real packets).
    p[88..120].copy_from_slice(&[9; 32]);
    p[120..].copy_from_slice(b"ping");
    raw::seal_box(&k, &header.nonce, &mut p[72..]);
    assert_eq!(open(&mut sb, now, &p).unwrap().1, b"ping");
}

#[test]
fn timeouts() {
    let mut rng = TestRng::new(11);
    let t0 = Instant::now();
    let (mut sa, mut sb) = established(&mut rng, t0);
    // 59 s of silence: still established; data at 59 s refreshes.
    let d = sa
        .encrypt_to_vec(t0 + Duration::from_secs(59), &mut rng, b"d")
        .unwrap();
    open(&mut sb, t0 + Duration::from_secs(59), &d).unwrap();
    assert_eq!(sb.state(), State::Established);
    // 60 s after the last data, B resets on its next operation.
    assert_eq!(sb.poll_timeout(), Some(t0 + Duration::from_secs(119)));
    sb.reset_if_timeout(t0 + Duration::from_secs(118));
    assert_eq!(sb.state(), State::Established);
    sb.reset_if_timeout(t0 + Duration::from_secs(119));
    assert_eq!(sb.state(), State::Init);
    // A responder stuck in SENT_KEY resets after 10 s; an initiator in SENT_HELLO never does.
    let a = node(&mut rng, &[]);
    let b = node(&mut rng, &[]);
    let mut x = Session::new(a.ca.clone(), b.public, false, t0);
    let mut y = Session::new(b.ca.clone(), a.public, false, t0);
    let h = x.encrypt_to_vec(t0, &mut rng, b"h").unwrap();
    open(&mut y, t0, &h).unwrap();
    y.encrypt_to_vec(t0, &mut rng, b"k").unwrap();
    assert_eq!(y.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    assert_eq!(x.poll_timeout(), None);
    y.reset_if_timeout(t0 + Duration::from_secs(9));
    assert_eq!(y.state(), State::SentKey);
    y.reset_if_timeout(t0 + Duration::from_secs(10));
    assert_eq!(y.state(), State::Init);
    x.reset_if_timeout(t0 + Duration::from_secs(3600));
    assert_eq!(x.state(), State::SentHello);
}

#[test]
fn api_misuse_is_an_error_not_a_state_change() {
    let mut rng = TestRng::new(12);
    let now = Instant::now();
    let (mut sa, _sb) = established(&mut rng, now);
    let mut buf = [0u8; 30];
    let before = snapshot(&sa);
    assert!(sa.encrypt(now, &mut rng, &mut buf, 10).is_err());
    assert!(
        sa.encrypt(now, &mut rng, &mut buf[..20], 20).is_err(),
        "empty data payload"
    );
    assert_eq!(before, snapshot(&sa));
}
