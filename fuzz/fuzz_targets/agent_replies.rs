//! Route-server answers as the node's agent reads them (`daemon::agent`): the answer to
//! `GET /orders/pending` (`parse_orders_reply`, then `lease_for_order` and the lease signed as
//! the agent signs it) and the answer to `GET /frames` (`parse_frames_reply`, every frame then
//! handed to the node's lease engine as the main loop does, `Node::handle_lease_message`).
//! Nothing panics; a lease is issued only for an order naming us and one of our established
//! peers, within our offer, owned by the order's buyer; it signs and parses back to itself.
//!
//! The same bytes are read as both answers.
#![no_main]

use std::sync::OnceLock;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::Message;
use pktmesh_lease_engine::UnixTime;
use pktmesh_node::core::Node;
use pktmesh_node::dht::{Config, Pathfinder};
use pktmesh_tools::daemon::agent::{
    lease_for_order, parse_frames_reply, parse_orders_reply, LinkSnapshot, OfferSettings, PeerLink,
};

#[path = "rs_common.rs"]
mod rs_common;

/// The node's clock, unix seconds.
const NOW: u64 = 1_800_000_000;
/// Seeds of the keys (`rs_common::fc_key`): ours and our two peers'.
const OURS: u8 = 1;
const PEERS: [u8; 2] = [2, 3];
const OFFER: OfferSettings = OfferSettings {
    max_kbps: 5_000,
    max_seconds: 3_600,
    price_msat: 1,
};

struct Fixture {
    key: PrivateKey,
    signer: Signer,
    address: Address,
    links: LinkSnapshot,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = rs_common::fc_key(OURS);
        let peers = PEERS
            .into_iter()
            .zip([0x13u64, 0x15])
            .map(|(seed, label)| PeerLink {
                key: rs_common::fc_key(seed).public_key(),
                label,
                path_to_us: Some(label + 4),
                leased_kbps: 0,
            })
            .collect();
        Fixture {
            signer: Signer::from_cjdns(&key),
            address: key.public_key().address(),
            key,
            links: LinkSnapshot {
                peers,
                capacity_kbps: 10_000,
            },
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let now = Instant::now();
    let unix = UnixTime(NOW);
    let dht = Pathfinder::new(now, f.key.public_key(), Config::default(), 1);
    let mut node = Node::new(f.key.clone(), dht, [3; 32], now);

    if let Ok(orders) = parse_orders_reply(data) {
        for (i, order) in orders.iter().enumerate() {
            let id = [i as u8; 16];
            let Some(lease) = lease_for_order(&f.signer, &f.address, order, &f.links, OFFER, id)
            else {
                continue;
            };
            assert!(Address::parse(&order.node).ok() == Some(f.address));
            assert!(
                f.links.peers.iter().any(|p| *p.key.as_bytes() == lease.peer
                    && Address::parse(&order.peer).ok() == Some(p.key.address())),
                "a lease for a link we do not have"
            );
            assert!(lease.kbps == order.kbps && (1..=OFFER.max_kbps).contains(&lease.kbps));
            assert!((lease.start.0, lease.end.0) == (order.start, order.end));
            assert!(lease.end.0 - lease.start.0 <= u64::from(OFFER.max_seconds));
            assert!(hex::decode(&order.buyer).ok().as_deref() == Some(&lease.owner.0[..]));
            assert!(lease.node == f.signer.public());
            if let Ok(frame) = Message::Lease(lease).emit_signed(&f.signer) {
                let (back, _) = Message::parse(&frame).expect("an issued lease parses");
                assert!(back == Message::Lease(lease), "an issued lease changed");
                let _ = node.handle_lease_message(unix, &frame);
            }
        }
    }
    if let Ok(frames) = parse_frames_reply(data) {
        for frame in &frames {
            let _ = node.handle_lease_message(unix, frame);
        }
    }
    node.handle_lease_timeout(unix);
});
