//! Link state reported by nodes (cjdns LINK_STATE: lag, drops, kB received per 10-second slot)
//! shows on `GET /links` and steers `GET /path` around a congested link.
#![cfg(feature = "server")]

mod common;

use common::http::{get, start, temp_db};
use common::Net;
use pktmesh_crypto_auth::Address;
use pktmesh_route_server::announce::{EntityRepr, LinkEgress, LinkSample, LinkStateRepr};
use pktmesh_route_server::http::{http_request, now_ms};
use serde_json::Value;

/// LINK_STATE of node `at` about traffic received from its peer `from`: `slots` samples.
fn link_state(net: &Net, at: usize, from: usize, sample: LinkSample, slots: usize) -> EntityRepr {
    EntityRepr::LinkState(LinkStateRepr {
        node_id: (net.hop_label(at, from).bits() & 0xffff) as u16,
        start_slot: 0,
        samples: vec![sample; slots],
    })
}

fn find<'a>(links: &'a Value, net: &Net, from: usize, to: usize) -> &'a Value {
    links["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| {
            l["from"] == net.nodes[from].address.to_string()
                && l["to"] == net.nodes[to].address.to_string()
        })
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn reported_load_and_drops_show_on_links_and_paths_avoid_congestion() {
    let db = temp_db("linkstate");
    let rs = start(&db).await;
    // A square: 0 → 1 → 3 and 0 → 2 → 3, every link 10 Mbit/s.
    let mut net = Net::new(4);
    for (a, b) in [(0, 1), (0, 2), (1, 3), (2, 3)] {
        net.link(a, b);
    }
    let snode = Address::from_bytes([0xfc; 16]);
    let now = now_ms();
    let busy = LinkSample {
        lag: 80,
        drops: 40,
        kb_recv: 11_000, // 8.8 Mbit/s over a 10-second slot
    };
    let quiet = LinkSample {
        lag: 20,
        drops: 0,
        kb_recv: 100,
    };
    for i in 0..4 {
        let mut extra = net.capacity_entities(i, 10_000, 5_000);
        match i {
            // Node 1 measures what it receives from 0: the paced link 0 → 1 is full and drops.
            1 => extra.push(link_state(&net, 1, 0, busy, 3)),
            2 => extra.push(link_state(&net, 2, 0, quiet, 3)),
            _ => {}
        }
        let ann = net.announcement_with(i, snode, now, true, None, extra);
        let (status, body) =
            http_request(rs, "POST", "/announce", "application/octet-stream", &ann)
                .await
                .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
    let (_, links) = get(rs, "/links").await;
    let congested = find(&links, &net, 0, 1);
    assert!(
        congested["load_kbps"].as_f64().unwrap() > 8000.0,
        "{congested}"
    );
    assert!(
        congested["drops_per_slot"].as_f64().unwrap() >= 40.0,
        "{congested}"
    );
    assert_eq!(congested["lag"], 80.0);
    let calm = find(&links, &net, 0, 2);
    assert!(calm["load_kbps"].as_f64().unwrap() < 100.0, "{calm}");
    assert_eq!(calm["drops_per_slot"], 0.0);

    let (a, z) = (net.nodes[0].address, net.nodes[3].address);
    let (status, route) = get(rs, &format!("/path?from={a}&to={z}")).await;
    assert_eq!(status, 200, "{route}");
    let hops: Vec<&str> = route["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(
        hops[1],
        net.nodes[2].address.to_string(),
        "avoids 0 → 1: {route}"
    );
    let label = pktmesh_switch::Label::parse(route["label"].as_str().unwrap()).unwrap();
    assert_eq!(net.deliver(0, label).unwrap().1, vec![0, 2, 3]);

    // When the report turns (0 → 2 congested, 0 → 1 quiet), the path follows.
    let later = now + 10_000;
    for (i, sample) in [(1, quiet), (2, busy)] {
        let mut extra = net.capacity_entities(i, 10_000, 5_000);
        extra.push(link_state(&net, i, 0, sample, 3));
        let ann = net.announcement_with(i, snode, later, true, None, extra);
        let (status, _) = http_request(rs, "POST", "/announce", "application/octet-stream", &ann)
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    // The snapshot is rebuilt at most every 3 s.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let (_, route) = get(rs, &format!("/path?from={a}&to={z}")).await;
    assert_eq!(
        route["hops"][1],
        net.nodes[1].address.to_string(),
        "{route}"
    );

    // Drops at a paced egress queue happen before link encryption, so the receiver cannot see
    // them: the sender reports them (pktmesh LINK_EGRESS) and they count for its link.
    let (_, links) = get(rs, "/links").await;
    assert_eq!(find(&links, &net, 0, 1)["drops_per_slot"], 0.0);
    let mut extra = net.capacity_entities(0, 10_000, 5_000);
    extra.push(EntityRepr::LinkEgress(LinkEgress {
        peer_num: (net.hop_label(0, 1).bits() & 0xffff) as u16,
        queued: 120,
        sent_kbps: 9_700,
        drops: 350,
    }));
    let ann = net.announcement_with(0, snode, later + 1000, true, None, extra);
    let (status, _) = http_request(rs, "POST", "/announce", "application/octet-stream", &ann)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (_, links) = get(rs, "/links").await;
    let paced = find(&links, &net, 0, 1);
    assert_eq!(paced["drops_per_slot"], 350.0, "{paced}");
    assert_eq!(paced["load_kbps"], 9700.0, "{paced}");
    assert_eq!(
        find(&links, &net, 1, 0)["drops_per_slot"],
        0.0,
        "only that direction"
    );
    let _ = std::fs::remove_file(db);
}
