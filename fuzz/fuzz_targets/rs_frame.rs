//! Bodies of the route server's frame endpoints (`POST /leases`, `/orders`, `/networks`) into
//! its lease book by the driver's own path: `leases::verify_post` (JSON, hex, parse, signature),
//! then `LeaseBook::insert_verified` against the graph. Nothing panics; a refused frame changes
//! nothing; after expiry, a book rebuilt from its frames (as the driver does at start-up) is
//! the same book.
//!
//! The input is up to [`MAX_BODIES`] bodies, one per line, posted in turn to a book that holds
//! leases, a virtual switch, their configuration, a network and an order on a ring of four
//! nodes (`rs_common`). Each body's frame is posted a second time re-signed by the key its
//! kind needs, so mutated frames reach the book's rules and not only the signature check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_lease_engine::UnixTime;
use pktmesh_route_server::leases::{verify_post, LeaseBook};
use pktmesh_route_server::Graph;

#[path = "rs_common.rs"]
mod rs_common;

/// Most bodies taken from one input.
const MAX_BODIES: usize = 8;

/// What the `POST` handler does with `body`, with the checks of this target. Returns whether
/// the book took a new frame.
fn post(book: &mut LeaseBook, graph: &Graph, now: UnixTime, body: &[u8]) -> bool {
    let Ok(verified) = verify_post(body) else {
        return false;
    };
    let before = rs_common::book_state(book);
    let result = book.insert_verified(now, verified, graph);
    if result.is_err() {
        assert!(
            rs_common::book_state(book) == before,
            "a refused frame changed the book"
        );
    }
    // What the driver hands to its store.
    let _ = book.take_changes();
    result.is_ok_and(|a| a.new)
}

/// The frame a body carries, if it is `{"frame": "<hex>"}`.
fn frame_of(body: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    hex::decode(v.get("frame")?.as_str()?.trim()).ok()
}

fuzz_target!(|data: &[u8]| {
    let f = rs_common::fixture();
    let mut book = f.book.clone();
    let now = UnixTime(rs_common::NOW);
    let mut changed = false;
    for body in data.split(|&b| b == b'\n').take(MAX_BODIES) {
        changed |= post(&mut book, &f.graph, now, body);
        let Some(frame) = frame_of(body) else {
            continue;
        };
        let pick = frame.last().copied().unwrap_or(0);
        if let Some(signed) = rs_common::resign(f, &frame, pick) {
            let body = serde_json::json!({ "frame": hex::encode(signed) }).to_string();
            changed |= post(&mut book, &f.graph, now, body.as_bytes());
        }
    }
    // Expiry some time later, then a restart: the frames alone give the same book (checked
    // when the book took something: the fixture's own frames reload alike).
    let later = UnixTime(rs_common::NOW + u64::from(data.first().copied().unwrap_or(0)) * 30);
    book.handle_timeout(later);
    let _ = book.take_changes();
    if !changed {
        return;
    }
    let reloaded = LeaseBook::from_frames(book.frames().map(|(_, b)| b.to_vec()), later);
    assert!(
        rs_common::book_state(&reloaded) == rs_common::book_state(&book),
        "the book reloaded from its frames differs"
    );
});
