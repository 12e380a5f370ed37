//! Arbitrary datagrams to the admin API of a node (authentication off, so every function is
//! reachable): the server and the node's functions never panic, and every response is
//! bencode.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use pktmesh_crypto_auth::PrivateKey;
use pktmesh_node::admin::{AdminServer, UnixMillis};
use pktmesh_node::bencode::parse_prefix;
use pktmesh_node::core::Node;
use pktmesh_node::dht::{Config, Pathfinder};
use pktmesh_node::host::{HostState, InterfaceKind};
use pktmesh_node::node_admin::{NodeAdmin, PendingPings};

const KEY: &str = "586d616d3b65911f481a3750fe7118624a1fa861773cfd0c451330b1c7d2ff3b";

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let key = PrivateKey::from_hex(KEY).expect("a key");
    let dht = Pathfinder::new(now, key.public_key(), Config::default(), 1);
    let mut node = Node::new(key, dht, [3; 32], now);
    let mut server = AdminServer::new("NONE");
    let mut pings = PendingPings::default();
    let mut host = HostState::new();
    host.add_open_interface(InterfaceKind::Udp {
        bind: "10.0.0.1:1000".parse().expect("an address"),
    });
    let mut shards = [&mut node];
    let mut functions = NodeAdmin {
        shards: &mut shards,
        now,
        pings: &mut pings,
        host: &mut host,
    };
    let src = "127.0.0.1:5000".parse().expect("an address");
    let handled = server.handle(UnixMillis(1_700_000_000_000), src, data, &mut functions);
    for r in &handled.responses {
        assert!(parse_prefix(r).is_ok(), "responses are bencode");
    }
});
