//! Arbitrary CJDHT messages (content type 256, as a remote node sends them) into the DHT
//! pathfinder: it never panics, whatever it queues is valid bencode, and its timers still run.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pktmesh_crypto_auth::PrivateKey;
use pktmesh_node::bencode::parse;
use pktmesh_node::dht::{Config, Pathfinder, Sender};
use pktmesh_switch::Label;

/// Two keys with fc00::/8 addresses.
const OURS: &str = "586d616d3b65911f481a3750fe7118624a1fa861773cfd0c451330b1c7d2ff3b";
const PEER: &str = "7864abbbecd0aa1c632aa1d235b81da2a0f251d1f5e1fe2e8ca9741a6e5f4176";

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let ours = PrivateKey::from_hex(OURS).expect("a key").public_key();
    let peer = PrivateKey::from_hex(PEER).expect("a key").public_key();
    let mut pf = Pathfinder::new(now, ours, Config::default(), 1);
    let from = Sender {
        key: peer,
        path: Label::new(0x13).expect("a valid label"),
        version: 22,
    };
    let _ = pf.handle_message(now, from, data);
    while let Some(t) = pf.poll_transmit() {
        assert!(parse(&t.payload).is_ok(), "queued messages are bencode");
    }
    pf.handle_timeout(now + Duration::from_secs(30));
});
