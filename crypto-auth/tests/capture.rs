//! The captures of real cjdns 22.3 nodes (`shared/vectors/cjdns-captures/`).
//!
//! What can be checked from a capture plus the nodes' permanent keys:
//! * the HELLO (frame 1) opens with our [`Session`] acting as B (B's user `nodeA`,
//!   `require_auth` as for an unknown incoming peer), and its payload is a switch PING;
//! * the KEY (frame 2) opens with the key A would use: beforenm(A's temp secret, B's perm
//!   public) = beforenm(B's perm secret, A's temp public), and carries B's temp key and B's
//!   switch PING;
//! * every later frame is a data packet under beforenm(A temp, B temp), a key that only the two
//!   temporary *private* keys give (forward secrecy): the scenario does not contain them, so
//!   no data frame, and nothing of the inner session inside, can be opened. The test asserts
//!   that this is so, instead of pretending otherwise;
//! * the state machine is replayed instead: two pktmesh sessions, driven in the capture's
//!   order with payloads of the captured lengths and the capture's timestamps, must emit
//!   exactly the captured stage/nonce word and length for every one of the frames.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{
    raw, AuthType, CryptoAuth, HandshakeHeader, PacketKind, Session, State, DATA_HEADER_LEN,
    HEADER_LEN,
};
use pktmesh_crypto_auth::DecryptError;
use pktmesh_switch::control::{control_frame, ControlMessage};
use pktmesh_switch::header::SwitchHeader;

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// Check that a decrypted outer payload is a switch PING to the peer's router carrying the
/// InterfaceController keepalive data.
fn assert_switch_ping(payload: &[u8]) {
    let hdr = SwitchHeader::new_checked(payload).expect("switch header");
    assert_eq!(
        hdr.label(),
        0x8000_0000_0000_0001,
        "ping to the peer's router, reversed"
    );
    assert_eq!(hdr.version(), 1);
    let frame = control_frame(payload).expect("control frame");
    match ControlMessage::parse(frame).expect("checksum and body") {
        ControlMessage::Ping(p) => {
            assert_eq!(p.version, 22);
            assert!(p.data.ends_with(b"IFACE_CNTRLR"), "keepalive ping data");
        }
        other => panic!("expected a PING, got {other:?}"),
    }
}

#[test]
fn two_node_password() {
    common::at_every_level(two_node_password_once);
}

fn two_node_password_once() {
    let dir = common::captures_dir().join("two-node-password");
    let sc = common::load_scenario(&dir);
    let frames = common::read_udp_frames(&dir.join("capture.pcap"));
    assert_eq!(frames.len(), 31);
    let a = sc.nodes.iter().find(|n| n.name == "A").unwrap();
    let b = sc.nodes.iter().find(|n| n.name == "B").unwrap();
    let login = sc.login.clone().unwrap();
    let password = sc.password.clone().unwrap();
    let now = Instant::now();

    // --- Frame 1, acting as B: our Session opens A's HELLO.
    let mut ca_b = CryptoAuth::new(b.private_key.clone());
    ca_b.add_user(password.as_bytes(), Some(login.as_bytes()), None)
        .unwrap();
    let ca_b = Arc::new(ca_b);
    let mut b_sess = Session::new(ca_b.clone(), a.public_key, true, now);
    let mut hello = frames[0].payload.clone();
    let hdr = HandshakeHeader::parse(&hello).unwrap();
    assert_eq!(hdr.auth.auth_type, AuthType::Login);
    assert_eq!(hdr.auth.lookup, sha256(login.as_bytes())[1..8]);
    assert_eq!(hdr.public_key, *a.public_key.as_bytes());
    let opened = b_sess.decrypt(now, &mut hello).expect("B opens A's HELLO");
    assert_eq!(opened.kind, PacketKind::Hello);
    assert_switch_ping(opened.payload);
    assert_eq!(b_sess.state(), State::ReceivedHello);
    let a_temp = b_sess.peer_temp_public().unwrap();
    // The same HELLO again is a duplicate.
    let mut again = frames[0].payload.clone();
    assert_eq!(
        b_sess.decrypt(now, &mut again).unwrap_err(),
        DecryptError::InvalidPacket
    );
    // Without the user, an incoming session refuses it.
    let mut b_nouser = Session::new(
        Arc::new(CryptoAuth::new(b.private_key.clone())),
        a.public_key,
        true,
        now,
    );
    let mut again = frames[0].payload.clone();
    assert_eq!(
        b_nouser.decrypt(now, &mut again).unwrap_err(),
        DecryptError::AuthRequired
    );

    // --- Frame 2, A's view of B's KEY.
    let mut key = frames[1].payload.clone();
    let hdr = HandshakeHeader::parse(&key).unwrap();
    assert_eq!(u32::from_be_bytes(key[..4].try_into().unwrap()), 2);
    assert_eq!(hdr.auth.auth_type, AuthType::None);
    assert_eq!(
        hdr.auth.additional, 0,
        "22.3 zeroes `additional` in type-0 challenges"
    );
    assert_eq!(hdr.public_key, *b.public_key.as_bytes());
    let k = raw::beforenm(b.private_key.as_bytes(), &a_temp).unwrap();
    assert!(
        raw::open_box(&k, &hdr.nonce, &mut key[72..]),
        "KEY opens under A's key"
    );
    let b_temp: [u8; 32] = key[88..120].try_into().unwrap();
    assert_ne!(b_temp, [0; 32]);
    assert_switch_ping(&key[HEADER_LEN..]);
    // A KEY is stray for B's own (responder) session.
    let mut key = frames[1].payload.clone();
    assert_eq!(
        b_sess.decrypt(now, &mut key).unwrap_err(),
        DecryptError::WrongPermPubkey
    );

    // --- Frames 3..31: data packets. B's session has not sent a KEY, so data is NO_SESSION;
    // and no key derivable from the scenario opens them (forward secrecy).
    let pw = sha256(password.as_bytes());
    let candidates = [
        raw::beforenm(b.private_key.as_bytes(), &a_temp).unwrap(),
        raw::beforenm(a.private_key.as_bytes(), &b_temp).unwrap(),
        raw::beforenm(a.private_key.as_bytes(), b.public_key.as_bytes()).unwrap(),
        raw::shared_secret(a.private_key.as_bytes(), b.public_key.as_bytes(), Some(&pw)).unwrap(),
    ];
    for f in &frames[2..] {
        let kind = PacketKind::of(&f.payload).unwrap();
        let PacketKind::Data(n) = kind else {
            panic!("frame {} is {kind:?}", f.number)
        };
        let mut p = f.payload.clone();
        assert_eq!(
            b_sess.decrypt(now, &mut p).unwrap_err(),
            DecryptError::NoSession
        );
        for k in &candidates {
            for at in [0usize, 4] {
                let mut nonce = [0u8; 24];
                nonce[at..at + 4].copy_from_slice(&n.to_le_bytes());
                let mut p = f.payload.clone();
                assert!(!raw::open_box(k, &nonce, &mut p[4..]));
            }
        }
    }
}

/// Replay the capture through two pktmesh sessions: same order, same timestamps, same payload
/// lengths. Every frame we emit must carry the captured stage/nonce word and length.
#[test]
fn two_node_password_state_machine_replay() {
    common::at_every_level(two_node_password_state_machine_replay_once);
}

fn two_node_password_state_machine_replay_once() {
    let dir = common::captures_dir().join("two-node-password");
    let sc = common::load_scenario(&dir);
    let frames = common::read_udp_frames(&dir.join("capture.pcap"));
    let a = sc.nodes.iter().find(|n| n.name == "A").unwrap();
    let b = sc.nodes.iter().find(|n| n.name == "B").unwrap();
    let (login, password) = (sc.login.clone().unwrap(), sc.password.clone().unwrap());
    let t0 = Instant::now();
    let first = frames[0].ts;
    let mut ca_b = CryptoAuth::new(b.private_key.clone());
    ca_b.add_user(password.as_bytes(), Some(login.as_bytes()), None)
        .unwrap();
    let mut sa = Session::new(
        Arc::new(CryptoAuth::new(a.private_key.clone())),
        b.public_key,
        false,
        t0,
    );
    sa.set_auth(Some(password.as_bytes()), Some(login.as_bytes()));
    let mut sb = Session::new(Arc::new(ca_b), a.public_key, true, t0);
    let mut rng = common::TestRng::new(22);
    for f in &frames {
        let now = t0 + f.ts.saturating_sub(first);
        let from_a = f.src == a.udp;
        let (tx, rx) = if from_a {
            (&mut sa, &mut sb)
        } else {
            (&mut sb, &mut sa)
        };
        let overhead = tx.overhead();
        assert!(overhead == HEADER_LEN || overhead == DATA_HEADER_LEN);
        let plain = vec![0x5a; f.payload.len() - overhead];
        let ours = tx.encrypt_to_vec(now, &mut rng, &plain).unwrap();
        assert_eq!(ours.len(), f.payload.len(), "frame {} length", f.number);
        assert_eq!(
            ours[..4],
            f.payload[..4],
            "frame {} stage/nonce word",
            f.number
        );
        let mut ours = ours;
        let opened = rx
            .decrypt(now, &mut ours)
            .expect("our peer opens our frame");
        assert_eq!(opened.payload, &plain[..]);
    }
    assert_eq!(sa.state(), State::Established);
    assert_eq!(sb.state(), State::Established);
    // The capture spans less than the setup timeout between frames.
    let span = frames.last().unwrap().ts - first;
    assert!(span < Duration::from_secs(60), "capture spans {span:?}");
}

/// Replays exactly the bytes a recorded RNG produced.
struct ReplayRng {
    bytes: Vec<u8>,
    at: usize,
}

impl rand_core::RngCore for ReplayRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, d: &mut [u8]) {
        let end = self.at + d.len();
        d.copy_from_slice(
            self.bytes
                .get(self.at..end)
                .expect("recorded randomness exhausted"),
        );
        self.at = end;
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(d);
        Ok(())
    }
}

impl rand_core::CryptoRng for ReplayRng {}

/// A live capture of a pktmesh session peered with stock cjdroute 22.3 (see the vector's
/// README). Acting as P with its recorded randomness, pktmesh's own `Session`s open every frame
/// cjdroute sent: the KEY, every outer data packet (checksummed control frames), the inner
/// HELLO and inner data down to the ICMPv6 echo replies. P's own frames are re-emitted with the
/// same stage/nonce words, and the HELLO's clear header and encrypted temporary key are
/// byte-identical to the captured ones.
#[test]
fn live_cjdroute_acting_as_pktmesh() {
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/pktmesh-cjdroute-legacy"
    ));
    let sc = common::load_scenario(&dir);
    let frames = common::read_udp_frames(&dir.join("capture.pcap"));
    let p = sc.nodes.iter().find(|n| n.name == "P").unwrap();
    let c = sc.nodes.iter().find(|n| n.name == "C").unwrap();
    let draws = hex::decode(sc.json["pktmesh_rng_draws"].as_str().unwrap()).unwrap();
    let our_handle =
        u32::from_str_radix(sc.json["pktmesh_inner_handle"].as_str().unwrap(), 16).unwrap();
    let mut rng = ReplayRng {
        bytes: draws,
        at: 0,
    };
    let (login, password) = (sc.login.clone().unwrap(), sc.password.clone().unwrap());
    let t0 = Instant::now();
    let first = frames[0].ts;
    let ca_p = Arc::new(CryptoAuth::new(p.private_key.clone()));
    let mut outer = Session::new(ca_p.clone(), c.public_key, false, t0);
    outer.set_auth(Some(password.as_bytes()), Some(login.as_bytes()));
    let mut inner: Option<Session> = None;
    let (mut opened, mut stale, mut control) = (0, 0, 0);
    let mut cjdht = 0;
    let mut replies = Vec::new();
    for f in &frames {
        let now = t0 + f.ts.saturating_sub(first);
        if f.src == p.udp {
            let plain = vec![0u8; f.payload.len() - outer.overhead()];
            let ours = outer.encrypt_to_vec(now, &mut rng, &plain).unwrap();
            assert_eq!(ours.len(), f.payload.len(), "frame {}", f.number);
            assert_eq!(ours[..4], f.payload[..4], "frame {} stage/nonce", f.number);
            if f.number == 1 {
                assert_eq!(ours[..72], f.payload[..72], "HELLO clear header");
                assert_eq!(ours[88..120], f.payload[88..120], "encrypted temporary key");
            }
            continue;
        }
        let mut pkt = f.payload.clone();
        let o = outer
            .decrypt(now, &mut pkt)
            .unwrap_or_else(|e| panic!("frame {}: {e}", f.number));
        opened += 1;
        let sw = o.payload.to_vec();
        SwitchHeader::new_checked(&sw[..]).expect("switch header");
        if let Some(frame) = control_frame(&sw) {
            ControlMessage::parse(frame).expect("checksummed control frame");
            control += 1;
            continue;
        }
        let body = &sw[12..];
        let word = u32::from_be_bytes(body[..4].try_into().unwrap());
        if word < 4 {
            let s =
                inner.get_or_insert_with(|| Session::new(ca_p.clone(), c.public_key, false, now));
            let mut q = body.to_vec();
            let o = s
                .decrypt(now, &mut q)
                .expect("inner handshake from cjdroute");
            assert_eq!(
                o.payload[4..8],
                [0x10, 0, 1, 0],
                "CJDHT DataHeader after the handle"
            );
            // P answered each inner HELLO with a KEY right away; that consumed its randomness.
            s.encrypt_to_vec(now, &mut rng, &[0u8; 8]).unwrap();
            continue;
        }
        assert_eq!(word, our_handle, "inner data is addressed to P's handle");
        let Some(s) = inner.as_mut() else {
            stale += 1; // an inner session from P's earlier run
            continue;
        };
        let mut q = body[4..].to_vec();
        let o = s
            .decrypt(now, &mut q)
            .unwrap_or_else(|e| panic!("frame {}: inner {e}", f.number));
        match u16::from_be_bytes([o.payload[2], o.payload[3]]) {
            256 => cjdht += 1,
            58 => {
                assert_eq!(o.payload[4], 129, "echo reply");
                assert_eq!(o.payload[12..], b"ABCD".repeat(25)[..], "echo payload");
                replies.push(u16::from_be_bytes([o.payload[10], o.payload[11]]));
            }
            other => panic!("unexpected content type {other}"),
        }
    }
    assert_eq!(
        rng.at,
        rng.bytes.len(),
        "all recorded randomness used, in order"
    );
    assert_eq!(outer.state(), State::Established);
    assert_eq!(inner.as_ref().map(Session::state), Some(State::Established));
    assert_eq!(stale, 6);
    assert_eq!(replies, [1, 2, 3]);
    assert!(
        control > 10 && cjdht >= 1 && opened > 20,
        "{control} {cjdht} {opened}"
    );
}

/// The live Noise capture (see the vector's README): rebuilt from P's recorded randomness and
/// clock, pktmesh's `noise::Link` emits the captured initiation byte for byte, accepts
/// cjdroute's response, emits the captured keepalive byte for byte, and opens every Noise data
/// packet cjdroute sent, down to the inner session's ICMPv6 echo replies.
#[test]
fn live_cjdroute_noise_acting_as_pktmesh() {
    use pktmesh_crypto_auth::noise::{Link, LinkEvent, LinkMode};

    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/pktmesh-cjdroute-noise"
    ));
    let sc = common::load_scenario(&dir);
    let frames = common::read_udp_frames(&dir.join("capture.pcap"));
    let p = sc.nodes.iter().find(|n| n.name == "P").unwrap();
    let c = sc.nodes.iter().find(|n| n.name == "C").unwrap();
    let draws = hex::decode(sc.json["pktmesh_rng_draws"].as_str().unwrap()).unwrap();
    let (secs, nanos) = sc.json["pktmesh_wall_clock"]
        .as_str()
        .unwrap()
        .split_once('.')
        .unwrap();
    let wall = Duration::new(secs.parse().unwrap(), nanos.parse().unwrap());
    let index = u32::from_str_radix(sc.json["pktmesh_local_index"].as_str().unwrap(), 16).unwrap();
    let our_handle =
        u32::from_str_radix(sc.json["pktmesh_inner_handle"].as_str().unwrap(), 16).unwrap();
    let (login, password) = (sc.login.clone().unwrap(), sc.password.clone().unwrap());
    let mut rng = ReplayRng {
        bytes: draws,
        at: 0,
    };
    let t0 = Instant::now();
    let first = frames[0].ts;
    let ca_p = Arc::new(CryptoAuth::new(p.private_key.clone()));
    let (mut link, initiation) = Link::connect(
        ca_p.clone(),
        c.public_key,
        Some(password.as_bytes()),
        Some(login.as_bytes()),
        true,
        index,
        t0,
        wall,
        &mut rng,
    )
    .unwrap();
    assert_eq!(
        initiation.unwrap(),
        frames[0].payload,
        "initiation, byte for byte"
    );
    let mut keepalive: Option<Vec<u8>> = None;
    let mut inner: Option<Session> = None;
    let (mut data, mut control, mut cjdht) = (0, 0, 0);
    let mut replies = Vec::new();
    for f in &frames[1..] {
        let now = t0 + f.ts.saturating_sub(first);
        if f.src == p.udp {
            if let Some(ka) = keepalive.take() {
                assert_eq!(ka, f.payload, "keepalive after the response, byte for byte");
                continue;
            }
            let plain = vec![0u8; f.payload.len() - 24];
            let ours = link.encrypt(now, &mut rng, &plain).unwrap();
            assert_eq!(
                ours[..8],
                f.payload[..8],
                "frame {}: index and counter",
                f.number
            );
            continue;
        }
        let sw = match link.handle_packet(now, wall, &mut rng, &f.payload) {
            Ok(LinkEvent::Transmit(ka)) => {
                assert_eq!(f.payload.len(), 96, "cjdroute's Noise response");
                assert_eq!(link.mode(), LinkMode::Noise);
                keepalive = Some(ka);
                continue;
            }
            Ok(LinkEvent::Payload(sw)) => sw,
            Ok(LinkEvent::Nothing) => continue,
            Err(e) => panic!("frame {}: {e}", f.number),
        };
        data += 1;
        if let Some(frame) = control_frame(&sw) {
            ControlMessage::parse(frame).expect("checksummed control frame");
            control += 1;
            continue;
        }
        let body = &sw[12..];
        let word = u32::from_be_bytes(body[..4].try_into().unwrap());
        if word < 4 {
            let s =
                inner.get_or_insert_with(|| Session::new(ca_p.clone(), c.public_key, false, now));
            s.decrypt(now, &mut body.to_vec())
                .expect("inner handshake from cjdroute");
            s.encrypt_to_vec(now, &mut rng, &[0u8; 8]).unwrap();
            continue;
        }
        assert_eq!(word, our_handle);
        let s = inner.as_mut().expect("inner session");
        let mut q = body[4..].to_vec();
        let o = s
            .decrypt(now, &mut q)
            .unwrap_or_else(|e| panic!("frame {}: inner {e}", f.number));
        match u16::from_be_bytes([o.payload[2], o.payload[3]]) {
            256 => cjdht += 1,
            58 => {
                assert_eq!(o.payload[4], 129, "echo reply");
                replies.push(u16::from_be_bytes([o.payload[10], o.payload[11]]));
            }
            other => panic!("unexpected content type {other}"),
        }
    }
    assert_eq!(
        rng.at,
        rng.bytes.len(),
        "all recorded randomness used, in order"
    );
    assert_eq!(link.mode(), LinkMode::Noise);
    assert_eq!(replies, [1, 2, 3]);
    assert!(
        data > 20 && control > 10 && cjdht >= 1,
        "{data} {control} {cjdht}"
    );
}
