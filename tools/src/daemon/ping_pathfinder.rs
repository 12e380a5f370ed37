//! A pathfinder that only pings: enough to set up end-to-end sessions with direct peers.
//!
//! It answers CJDHT `pn` queries and sends one when the node needs a session set up. It finds
//! no paths; the legacy DHT of `pktmesh_node::dht` takes its place for multi-hop routing.

use std::collections::VecDeque;
use std::time::Instant;

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_node::bencode::{self, Dict, Value};
use pktmesh_node::core::{NodeRef, Pathfinder};
use pktmesh_switch::EncodingScheme;

/// Pings and answers pings; knows no paths.
#[derive(Debug, Default)]
pub struct PingPathfinder {
    out: VecDeque<(NodeRef, Vec<u8>)>,
    txid: u32,
}

fn common(txid: &[u8]) -> Dict {
    Dict::new()
        .with("txid", Value::Bytes(txid.to_vec()))
        .with(
            "p",
            Value::Int(i64::from(pktmesh_switch::control::PROTOCOL_VERSION)),
        )
        .with("es", Value::Bytes(EncodingScheme::v358().serialize()))
}

impl Pathfinder for PingPathfinder {
    fn peer_up(&mut self, _now: Instant, _peer: NodeRef) {}
    fn peer_down(&mut self, _now: Instant, _key: &PublicKey) {}
    fn handle_message(&mut self, _now: Instant, from: NodeRef, message: &[u8]) {
        let Ok(dict) = bencode::parse_dict(message) else {
            return;
        };
        if dict.get_bytes("q") == Some(b"pn") {
            if let Some(txid) = dict.get_bytes("txid") {
                let reply = bencode::encode_cjdns(&common(txid));
                self.out.push_back((from, reply));
            }
        }
    }
    fn search(&mut self, _now: Instant, _target: Address) {}
    fn ping(&mut self, _now: Instant, node: NodeRef) {
        self.txid = self.txid.wrapping_add(1);
        let query = common(&self.txid.to_be_bytes()).with("q", Value::Bytes(b"pn".to_vec()));
        self.out.push_back((node, bencode::encode_cjdns(&query)));
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)> {
        self.out.pop_front()
    }
    fn poll_node(&mut self) -> Option<NodeRef> {
        None
    }
    fn node_for(&self, _address: &Address) -> Option<NodeRef> {
        None
    }
}
