//! Bodies of `POST /gossip` into a route server by the driver's own path
//! (`gossip::open_message`: envelope and JSON; `gossip::handle` over the graph and the lease
//! book; `gossip::seal_message` for the answer), then the exchange carried on with a second,
//! empty server for up to [`ROUNDS`] messages. Nothing panics; every answer opens at the other
//! side, says something and fits the driver's gossip body limit; a message that took no
//! announcement (no frame) leaves the graph (the book) as it was.
//!
//! The input is used three ways: as a raw body (the envelope check), as the JSON message that
//! a configured peer sealed, and as that message with its announcements and frames re-signed
//! by the ring's keys (`rs_common`), so that mutated items reach the graph's and the book's
//! rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_route_server::gossip::{self, envelope, GossipMessage, HexBytes, MAX_GOSSIP_BODY};
use pktmesh_route_server::leases::LeaseBook;
use pktmesh_route_server::Graph;

#[path = "rs_common.rs"]
mod rs_common;

use rs_common::{Fixture, NOW_MS};

/// Most messages of one exchange.
const ROUNDS: usize = 6;
/// Largest `POST /gossip` request the driver reads (its body limit on that route).
const MAX_REQUEST: usize = MAX_GOSSIP_BODY + 4096;

struct Server<'a> {
    signer: &'a Signer,
    graph: Graph,
    book: LeaseBook,
}

/// Server 0 holds the fixture; server 1 is empty.
fn servers(f: &Fixture) -> (Server<'_>, Server<'_>) {
    (
        Server {
            signer: &f.servers[0],
            graph: f.graph.clone(),
            book: f.book.clone(),
        },
        Server {
            signer: &f.servers[1],
            graph: Graph::new(pktmesh_route_server::Config::default()),
            book: LeaseBook::new(),
        },
    )
}

/// `sealed`, sent by `tx` to `rx`, then the answers back and forth.
fn exchange<'a, 'f>(mut tx: &'a mut Server<'f>, mut rx: &'a mut Server<'f>, mut sealed: Vec<u8>) {
    for round in 0..ROUNDS {
        let me = rx.signer.public();
        let msg = match gossip::open_message(&sealed, &me, &[tx.signer.public()], NOW_MS) {
            Ok((from, m)) => {
                assert!(from == tx.signer.public(), "opened as from another sender");
                m
            }
            Err(e) => {
                assert!(round == 0, "an answer does not open: {e}");
                return;
            }
        };
        if msg.is_empty() {
            // The driver answers 400; answers are never empty.
            assert!(round == 0, "an empty answer");
            return;
        }
        let before = gossip::summary(&mut rx.graph, &mut rx.book);
        let (reply, report) = gossip::handle(NOW_MS, &mut rx.graph, &mut rx.book, &msg);
        let _ = rx.book.take_changes();
        assert!(report.anns_taken + report.anns_refused <= msg.anns.len());
        assert!(report.frames_taken + report.frames_refused <= msg.lease_frames.len());
        let after = gossip::summary(&mut rx.graph, &mut rx.book);
        let (Some(b), Some(a)) = (before.digests, after.digests) else {
            panic!("a summary without digests");
        };
        if report.anns_taken == 0 {
            assert!(
                a.anns == b.anns,
                "no announcement taken, yet the graph changed"
            );
        }
        if report.frames_taken == 0 {
            assert!(a.leases == b.leases, "no frame taken, yet the book changed");
        }
        let Some(reply) = reply else {
            return;
        };
        assert!(!reply.is_empty(), "an empty answer is sent");
        sealed = gossip::seal_message(rx.signer, &tx.signer.public(), NOW_MS, &reply)
            .expect("an answer encodes");
        assert!(
            sealed.len() <= MAX_REQUEST,
            "an answer of {} bytes, beyond the gossip limit",
            sealed.len()
        );
        std::mem::swap(&mut tx, &mut rx);
    }
}

fuzz_target!(|data: &[u8]| {
    let f = rs_common::fixture();
    // The raw body: the envelope check refuses what a configured peer did not seal.
    let me = f.servers[0].public();
    let _ = gossip::open_message(data, &me, &[f.servers[1].public()], NOW_MS);

    // The body as the JSON message server 1 sealed for server 0.
    let (mut a, mut b) = servers(f);
    exchange(
        &mut b,
        &mut a,
        envelope::seal(&f.servers[1], &me, NOW_MS, data),
    );

    // The same message with its items re-signed.
    let Ok(mut msg) = serde_json::from_slice::<GossipMessage>(data) else {
        return;
    };
    for (i, ann) in msg.anns.iter_mut().enumerate().take(16) {
        let pick = ann.0.last().copied().unwrap_or(i as u8);
        if let Some(signed) = rs_common::resign_announcement(f, &ann.0, pick) {
            *ann = HexBytes(signed);
        }
    }
    for frame in msg.lease_frames.iter_mut().take(16) {
        let pick = frame.0.last().copied().unwrap_or(0);
        if let Some(signed) = rs_common::resign(f, &frame.0, pick) {
            *frame = HexBytes(signed);
        }
    }
    let (mut a, mut b) = servers(f);
    let sealed = gossip::seal_message(&f.servers[1], &me, NOW_MS, &msg).expect("it encodes");
    exchange(&mut b, &mut a, sealed);
});
