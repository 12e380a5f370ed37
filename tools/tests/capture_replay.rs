//! The captured cjdns 22.3 traffic replayed against pktmesh's node core. Acting as node B
//! (its private key and authorized password), the node is fed A's real HELLO; its answer must
//! be what cjdns expects: a KEY from B's key that A can open (we open it with the keys A would
//! use) carrying a switch PONG to A's router, version 22, valid checksum, A's ping data echoed.
//!
//! (The box starts after the 72 clear bytes: stage, auth, nonce, permanent key.)
//!
//! Only the handshake can be replayed: the capture's later frames are sealed with the two
//! nodes' temporary keys, which a fresh node does not share (forward secrecy).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use pktmesh_crypto_auth::legacy::{raw, HandshakeHeader, HEADER_LEN};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use pktmesh_node::core::{Node, Transmit};
use pktmesh_node::dht;
use pktmesh_node::packet::PacketBuf;
use pktmesh_switch::control::{control_frame, ControlMessage};
use pktmesh_switch::header::SwitchHeader;
use pktmesh_tools::pktctl::decode::read_pcap;
use sha2::Digest;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors/cjdns-captures/two-node-password")
}

#[test]
fn node_as_b_answers_a_real_hello_as_cjdns_expects() {
    let dir = scenario_dir();
    let scenario: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("scenario.json")).unwrap()).unwrap();
    let b_private =
        PrivateKey::from_hex(scenario["nodes"]["B"]["private_key"].as_str().unwrap()).unwrap();
    let a_public =
        PublicKey::parse(scenario["nodes"]["A"]["public_key"].as_str().unwrap()).unwrap();
    let password = scenario["peering"]["password"].as_str().unwrap();
    let login = scenario["peering"]["login"].as_str().unwrap();
    let a_udp: SocketAddr = scenario["nodes"]["A"]["udp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let frames = read_pcap(&dir.join("capture.pcap")).unwrap();
    let hello = &frames[0];
    assert_eq!(hello.src, a_udp);

    let now = Instant::now();
    let b_public = b_private.public_key();
    let mut node = Node::new(
        b_private.clone(),
        dht::Pathfinder::new(now, b_public, dht::Config::default(), 1),
        [3; 32],
        now,
    );
    node.add_authorized_password(password.as_bytes(), Some(login.as_bytes()), None)
        .unwrap();
    let mut buf = PacketBuf::from_slice(&hello.payload);
    let _ = node.handle_udp(now, hello.src, &mut buf);
    let peers = node.peer_stats(now);
    assert_eq!(peers.len(), 1, "A's HELLO authenticates and creates a peer");
    assert_eq!(peers[0].key, a_public);
    assert!(peers[0].is_incoming);

    // What A would do with our answers: it knows its temporary secret; we recover its
    // temporary *public* key from the HELLO (opened with B's key and the password) and open
    // our KEY with beforenm(B's permanent secret, A's temporary public) — the same key.
    let hh = HandshakeHeader::parse(&hello.payload).unwrap();
    let pw_hash: [u8; 32] = sha2::Sha256::digest(password.as_bytes()).into();
    let hello_key =
        raw::shared_secret(b_private.as_bytes(), a_public.as_bytes(), Some(&pw_hash)).unwrap();
    let mut boxed = hello.payload[HEADER_LEN - 48..].to_vec();
    assert!(
        raw::open_box(&hello_key, &hh.nonce, &mut boxed),
        "the HELLO opens with B's key"
    );
    let a_temp: [u8; 32] = boxed[16..48].try_into().unwrap();
    let a_ping = &boxed[48..];

    let mut keys = 0;
    let mut pongs = 0;
    while let Some(t) = node.poll_transmit() {
        let Transmit::Udp { to, data } = t else {
            continue;
        };
        assert_eq!(to, a_udp, "answers go back to A's address");
        let kh = HandshakeHeader::parse(&data).unwrap();
        assert!(
            kh.stage == 2 || kh.stage == 3,
            "a KEY or REPEAT KEY, not {}",
            kh.stage
        );
        assert_eq!(
            &kh.public_key,
            b_public.as_bytes(),
            "KEY carries B's permanent key"
        );
        let key = raw::beforenm(b_private.as_bytes(), &a_temp).unwrap();
        let mut boxed = data[HEADER_LEN - 48..].to_vec();
        assert!(
            raw::open_box(&key, &kh.nonce, &mut boxed),
            "A can open our KEY"
        );
        let payload = &boxed[48..];
        let sh = SwitchHeader::new_checked(payload).unwrap();
        assert_eq!(sh.label(), 0x8000_0000_0000_0001, "addressed to A's router");
        assert_eq!(
            payload[7], 0x01,
            "InterfaceController's check on the far side"
        );
        let frame = control_frame(payload).expect("a control frame");
        match ControlMessage::parse(frame).expect("checksum valid") {
            ControlMessage::Pong(p) => {
                assert_eq!(p.version, 22);
                let a_frame = control_frame(a_ping).unwrap();
                let ControlMessage::Ping(ap) = ControlMessage::parse(a_frame).unwrap() else {
                    panic!("A's HELLO carries a ping")
                };
                assert_eq!(p.data, ap.data, "A's ping data echoed");
                assert!(p.data.ends_with(b"IFACE_CNTRLR"));
                pongs += 1;
            }
            ControlMessage::Ping(p) => {
                // Our own keepalive ping to learn A's version.
                assert_eq!(p.version, 22);
            }
            other => panic!("unexpected {other:?}"),
        }
        keys += 1;
    }
    assert!(keys >= 1, "the node answered the HELLO");
    assert_eq!(pongs, 1, "exactly one PONG answers A's ping");
}
