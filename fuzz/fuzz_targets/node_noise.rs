//! The node's Noise handshake paths, into a node of two shards that has an established Noise
//! peer B (it connected to B) and a handshake out to a node C that never answered:
//! initiations from strangers and from B's link address (raw, and mutated from valid ones: a
//! stranger's naming the authorized user in PktmeshPsk, B's re-handshake), responses and
//! cookie replies from C's address (raw, and mutated from C's valid response), anything from
//! B's address, and the passage of time (60 s at most, within the keys' life).
//!
//! Invariants: nothing panics and no packet goes round the shards; whatever arrived, B's link
//! is still `ESTABLISHED` and Noise, and a packet B seals afterwards still opens (a stranger,
//! a replay or a mutation never disturbs an established link).
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pktmesh_crypto_auth::legacy::CryptoAuth;
use pktmesh_crypto_auth::noise::handshake::MAX_INITIATION_LEN;
use pktmesh_crypto_auth::noise::{
    Credentials, InitiationOutcome, InitiationParams, InitiationSent, PskEntity, Responder,
};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use pktmesh_node::core::Transmit;
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::peers::PeerCredentials;

#[path = "ca_common.rs"]
mod ca_common;
#[path = "node_common.rs"]
mod node_common;

use ca_common::{mutate, Rng};
use node_common::{Net, B_LINK, FOURTH, OURS, PEER, THIRD};

/// Where C would be.
const C_LINK: &str = "10.0.0.3:3";
/// The most time one input may pass (the keys live 180 s).
const MAX_TIME: Duration = Duration::from_secs(60);

/// A Noise initiation from `from` to `to` naming the user ("a", "pw") in PktmeshPsk.
fn initiation(from: &str, to: &PublicKey, seconds: u64) -> Vec<u8> {
    let ca = CryptoAuth::new(PrivateKey::from_hex(from).expect("a key"));
    let params = InitiationParams {
        credentials: Some(Credentials::derive(b"a", b"pw")),
        psk_entity: PskEntity::Pktmesh,
        ..Default::default()
    };
    let mut out = [0u8; MAX_INITIATION_LEN];
    let wall = Duration::from_secs(seconds);
    let (_, n) = InitiationSent::new(&ca, to, &params, 0x300, wall, &mut Rng(7), &mut out)
        .expect("an initiation");
    out[..n].to_vec()
}

/// A stranger's initiation (THIRD's key) and B's re-handshake (PEER's key), both to us.
fn valid() -> &'static (Vec<u8>, Vec<u8>) {
    static V: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    V.get_or_init(|| {
        let us = PrivateKey::from_hex(OURS).expect("a key").public_key();
        (initiation(THIRD, &us, 1000), initiation(PEER, &us, 2000))
    })
}

/// The net, with our handshake to C out; C's valid response to it.
fn set_up() -> (Net, Vec<u8>) {
    let mut net = Net::new();
    let c_key = PrivateKey::from_hex(FOURTH).expect("a key");
    let c_public = c_key.public_key();
    let owner = usize::from(net.shards[0].shard().owner_of(&c_public.address()));
    let creds = PeerCredentials {
        password: b"pw".to_vec(),
        login: Some(b"a".to_vec()),
    };
    let c_link: SocketAddr = C_LINK.parse().expect("addr");
    let _ = net.shards[owner].connect(net.now, c_link, c_public, creds, None);
    let mut ours = None;
    while let Some(t) = net.shards[owner].poll_transmit() {
        match t {
            Transmit::Udp { to, data } if to == c_link => ours = ours.or(Some(data)),
            other => net.carry_from(owner, other),
        }
    }
    let ours = ours.expect("the initiation to C");
    let mut c = CryptoAuth::new(c_key);
    c.add_user(b"pw", Some(b"a"), None).expect("a user");
    let mut responder = Responder::new(std::sync::Arc::new(c), 100);
    let answer = responder.handle_initiation(net.now, &mut Rng(9), b"A", &ours, 0x500, true);
    let Ok(InitiationOutcome::Accept(accepted)) = answer else {
        panic!("C takes our initiation: {answer:?}")
    };
    (net, accepted.response.to_vec())
}

/// B's link at the shard that owns it: (state, Noise, bytes in).
fn b_link(net: &Net) -> (String, bool, u64) {
    let b = *net.peer.public_key();
    net.shards
        .iter()
        .flat_map(|s| s.peer_stats(net.now))
        .find(|p| p.key == b)
        .map(|p| (p.state.to_string(), p.noise, p.bytes_in))
        .expect("B is a peer")
}

fuzz_target!(|data: &[u8]| {
    let (mut net, response) = set_up();
    let (stranger, rekey) = valid();
    let t0 = net.now;
    let mut rest = data;
    while let [op, arg, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let k = usize::from(*arg % 2);
        let (datagram, from): (Vec<u8>, SocketAddr) = match op % 7 {
            0 => (
                mutate(stranger, bytes),
                SocketAddr::from(([10, 0, 0, 9], u16::from(*arg))),
            ),
            1 => (bytes.to_vec(), SocketAddr::from(([10, 0, 1, *arg], 9))),
            2 => (mutate(rekey, bytes), B_LINK.parse().expect("addr")),
            3 => (bytes.to_vec(), B_LINK.parse().expect("addr")),
            4 => (mutate(&response, bytes), C_LINK.parse().expect("addr")),
            5 => (bytes.to_vec(), C_LINK.parse().expect("addr")),
            _ => {
                let step = Duration::from_millis(u64::from(*len) * 100);
                net.now = (net.now + step).min(t0 + MAX_TIME);
                let now = net.now;
                for s in &mut net.shards {
                    s.handle_timeout(now);
                }
                net.peer.handle_timeout(now);
                net.pump();
                continue;
            }
        };
        let mut buf = PacketBuf::from_slice(&datagram);
        let out = net.shards[k].handle_udp(net.now, from, &mut buf);
        net.follow(k, out, &mut buf, 0);
        net.pump();
    }
    // B's link took no harm: established, Noise, and what B seals now still opens.
    let (state, noise, before) = b_link(&net);
    assert_eq!((state.as_str(), noise), ("ESTABLISHED", true));
    // A switch ping from B: sealed on B's link, it must open at ours.
    let label = net.peer.peer_stats(net.now)[0].label;
    net.peer.switch_ping(net.now, label);
    net.pump();
    assert!(b_link(&net).2 > before, "B's packet did not open");
});
