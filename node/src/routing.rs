//! The legacy DHT ([`crate::dht::Pathfinder`]) as the node core's [`Pathfinder`].
//!
//! The DHT speaks in keys, labels and bencoded messages; the node core speaks in
//! [`NodeRef`]s. This adapter translates, turns lookups of known nodes into immediate answers,
//! and sends the CJDHT pings the core asks for to set up end-to-end sessions.

use std::collections::VecDeque;
use std::time::Instant;

use pktmesh_crypto_auth::Address;

use crate::core::{NodeRef, Pathfinder};
use crate::dht::{self, Body, Event, LookupStatus, Message, Query, Sender};

/// The DHT pathfinder behind the node core's interface.
#[derive(Debug)]
pub struct DhtRouter {
    dht: dht::Pathfinder,
    extra: VecDeque<(NodeRef, Vec<u8>)>,
    found: VecDeque<NodeRef>,
    pings: u32,
}

impl DhtRouter {
    /// Wraps a DHT pathfinder.
    pub fn new(dht: dht::Pathfinder) -> Self {
        Self {
            dht,
            extra: VecDeque::new(),
            found: VecDeque::new(),
            pings: 0,
        }
    }

    /// The DHT, for introspection.
    pub fn dht(&self) -> &dht::Pathfinder {
        &self.dht
    }
}

impl Pathfinder for DhtRouter {
    fn peer_up(&mut self, now: Instant, peer: NodeRef) {
        let _ = self.dht.peer_up(now, peer.key, peer.path, peer.version);
    }

    fn peer_down(&mut self, now: Instant, peer: NodeRef) {
        self.dht.peer_down(now, peer.path);
    }

    fn handle_message(&mut self, now: Instant, from: NodeRef, message: &[u8]) {
        let sender = Sender {
            key: from.key,
            path: from.path,
            version: from.version,
        };
        let _ = self.dht.handle_message(now, sender, message);
    }

    fn search(&mut self, now: Instant, target: Address) {
        if let LookupStatus::Known(info) = self.dht.lookup(now, target) {
            if let Some(path) = info.path {
                self.found.push_back(NodeRef {
                    key: info.key,
                    path,
                    version: info.version,
                });
            }
        }
    }

    fn ping(&mut self, _now: Instant, node: NodeRef) {
        self.pings = self.pings.wrapping_add(1);
        let scheme = pktmesh_switch::EncodingScheme::v358();
        let mut txid = b"ss".to_vec();
        txid.extend_from_slice(&self.pings.to_be_bytes());
        let message = Message {
            txid,
            version: pktmesh_switch::control::PROTOCOL_VERSION,
            scheme: Some(scheme),
            encoding_index: scheme.form_index(node.path.bits()).unwrap_or(0) as u32,
            body: Body::Query(Query::Ping),
        };
        self.extra.push_back((node, message.to_bytes()));
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.dht.handle_timeout(now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.dht.poll_timeout()
    }

    fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)> {
        if let Some(x) = self.extra.pop_front() {
            return Some(x);
        }
        let t = self.dht.poll_transmit()?;
        Some((
            NodeRef {
                key: t.key,
                path: t.path,
                version: t.version,
            },
            t.payload,
        ))
    }

    fn poll_node(&mut self) -> Option<NodeRef> {
        if let Some(n) = self.found.pop_front() {
            return Some(n);
        }
        loop {
            match self.dht.poll_event()? {
                Event::PathFound {
                    key, path, version, ..
                } => return Some(NodeRef { key, path, version }),
                Event::PathLost { .. } | Event::SearchFailed { .. } => continue,
            }
        }
    }

    fn node_for(&self, address: &Address) -> Option<NodeRef> {
        let info = self.dht.node(address)?;
        Some(NodeRef {
            key: info.key,
            path: info.path?,
            version: info.version,
        })
    }
}
