//! Route server graph and path queries against a simulated line of cjdns switches.

mod common;

use std::sync::Arc;

use common::Net;
use pktmesh_crypto_auth::Address;
use pktmesh_route_server::graph::{Config, Graph, IngestError, Origin};
use pktmesh_route_server::path::{CostModel, PathError, PathFinder, Topology};
use pktmesh_switch::{EncodingScheme, Label};

const NOW: u64 = 1_700_000_000_000;

fn snode() -> Address {
    Address::from_bytes([0xfc; 16])
}

fn graph_of(net: &Net, lag: Option<u16>) -> Graph {
    let mut g = Graph::new(Config {
        self_address: Some(snode()),
        ..Config::default()
    });
    for i in 0..net.nodes.len() {
        g.ingest(
            NOW,
            &net.announcement(i, snode(), NOW, true, lag),
            Origin::Node,
        )
        .unwrap();
    }
    g
}

fn finder(g: &Graph) -> PathFinder {
    PathFinder::new(Arc::new(Topology::build(g, &CostModel::default())))
}

#[test]
fn route_over_a_line_of_switches_with_widening() {
    // 0 - 1 - 2 - 3 - 4 - 5; node 2 and node 4 have many other interfaces so that their
    // director back toward the source is wider than the one onward.
    let mut net = Net::new(6);
    net.link(0, 1);
    net.link(1, 2);
    net.link(2, 3);
    net.dummies(3, 40);
    net.link(3, 4);
    net.dummies(4, 10);
    net.link(4, 5);
    net.dummies(2, 20);
    let g = graph_of(&net, None);
    let mut f = finder(&g);
    let a = |i: usize| net.nodes[i].address;
    let r = f.route(&a(0), &a(5), &[]).unwrap();
    assert_eq!(r.hops, (0..6).map(a).collect::<Vec<_>>());
    let (end, path) = net.deliver(0, r.label).expect("the label forwards");
    assert_eq!(end, 5);
    assert_eq!(path, vec![0, 1, 2, 3, 4, 5]);
    // The same label as EncodingScheme::build_label gives for one scheme.
    let mut hops = vec![(None, Some(net.hop_label(0, 1)))];
    for i in 1..5 {
        hops.push((Some(net.hop_label(i, i - 1)), Some(net.hop_label(i, i + 1))));
    }
    hops.push((Some(net.hop_label(5, 4)), None));
    assert_eq!(r.label, EncodingScheme::v358().build_label(&hops).unwrap());
    // Every prefix works too, and the reverse direction.
    for dst in 1..6 {
        let r = f.route(&a(0), &a(dst), &[]).unwrap();
        assert_eq!(net.deliver(0, r.label).unwrap().0, dst);
        let back = f.route(&a(dst), &a(0), &[]).unwrap();
        assert_eq!(net.deliver(dst, back.label).unwrap().0, 0);
    }
    assert_eq!(f.route(&a(3), &a(3), &[]).unwrap().label, Label::SELF);
}

#[test]
fn widening_is_needed_and_done() {
    // Node 1's link back to 0 sits in a wide slot (after 30 dummies), its link onward to 2 in a
    // narrow one: the route must re-encode 1→2 wider, or node 1's switch could not write the
    // return director.
    let mut net = Net::new(3);
    net.link(1, 2);
    net.dummies(1, 30);
    net.link(0, 1);
    let g = graph_of(&net, None);
    let mut f = finder(&g);
    let a = |i: usize| net.nodes[i].address;
    let r = f.route(&a(0), &a(2), &[]).unwrap();
    let naive = Label::splice(net.hop_label(1, 2), net.hop_label(0, 1)).unwrap();
    assert_ne!(r.label, naive, "widening changed the label");
    assert_eq!(net.deliver(0, r.label).unwrap().0, 2);
    assert!(net.deliver(0, naive).is_none_or(|(end, _)| end != 2));
}

#[test]
fn links_need_both_ends() {
    let mut net = Net::new(3);
    net.link(0, 1);
    net.link(1, 2);
    let mut g = Graph::new(Config::default());
    for i in [0, 1] {
        g.ingest(
            NOW,
            &net.announcement(i, snode(), NOW, true, None),
            Origin::Node,
        )
        .unwrap();
    }
    // Node 2 never announced: 1 lists it, but 1-2 is not a link.
    assert_eq!(g.links().count(), 2);
    let mut f = finder(&g);
    let a = |i: usize| net.nodes[i].address;
    assert_eq!(
        f.route(&a(0), &a(2), &[]),
        Err(PathError::UnknownNode(a(2)))
    );
    g.ingest(
        NOW,
        &net.announcement(2, snode(), NOW, true, None),
        Origin::Node,
    )
    .unwrap();
    assert_eq!(g.links().count(), 4);
    let mut f = finder(&g);
    assert!(f.route(&a(0), &a(2), &[]).is_ok());
}

#[test]
fn cost_prefers_low_lag_and_leases() {
    // A square 0-1-3 and 0-2-3; node 1's side is slow.
    let mut net = Net::new(4);
    net.link(0, 1);
    net.link(1, 3);
    net.link(0, 2);
    net.link(2, 3);
    let mut g = Graph::new(Config::default());
    for (i, lag) in [(0, 20), (1, 500), (2, 20), (3, 20)] {
        g.ingest(
            NOW,
            &net.announcement(i, snode(), NOW, true, Some(lag)),
            Origin::Node,
        )
        .unwrap();
    }
    let a = |i: usize| net.nodes[i].address;
    let mut f = finder(&g);
    let r = f.route(&a(0), &a(3), &[]).unwrap();
    assert_eq!(r.hops, vec![a(0), a(2), a(3)]);
    // Node 3 measures lag 20 on 1→3 too, so leases on 0→1 and 1→3 make that side cheaper
    // only when the lease discount beats the lag difference on 0→1 (500 vs 20): it does not.
    let r = f
        .route(&a(0), &a(3), &[(a(0), a(1)), (a(1), a(3))])
        .unwrap();
    assert_eq!(r.hops, vec![a(0), a(2), a(3)]);
    // With equal lag everywhere the leased side wins.
    let mut g = Graph::new(Config::default());
    for i in 0..4 {
        g.ingest(
            NOW,
            &net.announcement(i, snode(), NOW, true, Some(20)),
            Origin::Node,
        )
        .unwrap();
    }
    let mut f = finder(&g);
    let plain = f.route(&a(0), &a(3), &[]).unwrap();
    let leased_side = if plain.hops[1] == a(1) { 2 } else { 1 };
    let r = f
        .route(
            &a(0),
            &a(3),
            &[(a(0), a(leased_side)), (a(leased_side), a(3))],
        )
        .unwrap();
    assert_eq!(r.hops[1], a(leased_side));
    assert_eq!(net.deliver(0, r.label).unwrap().0, 3);
}

#[test]
fn ingest_checks_like_upstream() {
    let mut net = Net::new(2);
    net.link(0, 1);
    let mut g = Graph::new(Config {
        self_address: Some(snode()),
        ..Config::default()
    });
    // Not a reset, unknown node.
    let ann = net.announcement(0, snode(), NOW, false, None);
    assert_eq!(
        g.ingest(NOW, &ann, Origin::Node),
        Err(IngestError::UnknownNode)
    );
    // Wrong snode.
    let other = Address::from_bytes([0xfc, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let ann = net.announcement(0, other, NOW, true, None);
    assert_eq!(
        g.ingest(NOW, &ann, Origin::Node),
        Err(IngestError::WrongSnode(other))
    );
    // Clock skew above 10 s.
    let ann = net.announcement(0, snode(), NOW - 10_001, true, None);
    assert!(matches!(
        g.ingest(NOW, &ann, Origin::Node),
        Err(IngestError::ClockSkew { .. })
    ));
    // Tampered.
    let mut ann = net.announcement(0, snode(), NOW, true, None);
    let last = ann.len() - 1;
    ann[last] ^= 1;
    assert!(matches!(
        g.ingest(NOW, &ann, Origin::Node),
        Err(IngestError::Malformed(_))
    ));
    assert!(g.is_empty(), "nothing changed");
    // Good reset, then an older one is refused, a newer non-reset accepted.
    let first = g
        .ingest(
            NOW,
            &net.announcement(0, snode(), NOW, true, None),
            Origin::Node,
        )
        .unwrap();
    assert!(first.new);
    let again = g
        .ingest(
            NOW,
            &net.announcement(0, snode(), NOW, true, None),
            Origin::Node,
        )
        .unwrap();
    assert!(!again.new);
    assert_eq!(
        g.ingest(
            NOW,
            &net.announcement(0, snode(), NOW - 1000, true, None),
            Origin::Node
        ),
        Err(IngestError::Old)
    );
    let later = g
        .ingest(
            NOW + 5000,
            &net.announcement(0, snode(), NOW + 5000, false, Some(30)),
            Origin::Node,
        )
        .unwrap();
    assert_ne!(later.state_hash, first.state_hash);
    let node = g.node(&net.nodes[0].address).unwrap();
    assert_eq!(node.version, Some(22));
    assert_eq!(node.peers.len(), 1);
    // Both announcements stay: the first is the latest reset, the second carries link state.
    assert_eq!(node.announcements().count(), 2);
    // 20 minutes later everything is gone.
    g.handle_timeout(NOW + 5000 + 20 * 60 * 1000 + 1);
    assert!(g.is_empty());
}

fn sq(q: &str, txid: &[u8], extra: &[(&str, Vec<u8>)]) -> Vec<u8> {
    use pktmesh_node::bencode::{encode_cjdns, Dict, Value};
    let mut d = Dict::new();
    d.insert("sq", Value::Bytes(q.as_bytes().to_vec()));
    d.insert("txid", Value::Bytes(txid.to_vec()));
    d.insert("p", Value::Int(22));
    for (k, v) in extra {
        d.insert(*k, Value::Bytes(v.clone()));
    }
    encode_cjdns(&d)
}

#[test]
fn supernode_queries_ann_and_gr() {
    use pktmesh_node::bencode::parse_dict;
    use pktmesh_route_server::RouteServer;
    let mut net = Net::new(4);
    for i in 0..3 {
        net.link(i, i + 1);
    }
    let mut rs = RouteServer::new(
        Config {
            self_address: Some(snode()),
            ..Config::default()
        },
        CostModel::default(),
    );
    for i in 0..4 {
        let ann = net.announcement(i, snode(), NOW, true, None);
        let reply = rs
            .handle_query(NOW, &sq("ann", b"\x01abc", &[("ann", ann)]))
            .unwrap();
        assert_eq!(reply.len() % 4, 0, "cjdns pads dictionaries to 4 bytes");
        let d = parse_dict(&reply).unwrap();
        assert_eq!(d.get_bytes("txid"), Some(&b"\x01abc"[..]));
        assert_eq!(d.get_str("error"), Some("none"));
        let hash = d.get_bytes("stateHash").unwrap();
        assert_eq!(
            hash,
            &rs.graph().node(&net.nodes[i].address).unwrap().state_hash()[..]
        );
    }
    // A bad announcement: an error code and nothing changes.
    let reply = rs
        .handle_query(NOW, &sq("ann", b"t", &[("ann", vec![1, 2, 3])]))
        .unwrap();
    assert_eq!(
        parse_dict(&reply).unwrap().get_str("error"),
        Some("failed_parse_or_validate")
    );
    let a = |i: usize| net.nodes[i].address.as_bytes().to_vec();
    let reply = rs
        .handle_query(NOW, &sq("gr", b"q1", &[("src", a(0)), ("tar", a(3))]))
        .unwrap();
    let d = parse_dict(&reply).unwrap();
    let n = d.get_bytes("n").unwrap();
    assert_eq!(n.len(), 40);
    assert_eq!(&n[..32], net.nodes[3].key.public_key().as_bytes());
    let label = Label::new(u64::from_be_bytes(n[32..].try_into().unwrap())).unwrap();
    assert_eq!(net.deliver(0, label).unwrap().0, 3);
    assert_eq!(d.get_bytes("np"), Some(&[1u8, 22][..]));
    // Unknown target: a reply without n.
    let reply = rs
        .handle_query(
            NOW,
            &sq("gr", b"q2", &[("src", a(0)), ("tar", vec![0xfc; 16])]),
        )
        .unwrap();
    assert!(parse_dict(&reply).unwrap().get("n").is_none());
    // Not for us: no sq, no txid, no version.
    assert!(rs.handle_query(NOW, b"d1:q2:pn4:txid1:x1:pi22ee").is_none());
    assert!(rs.handle_query(NOW, b"d2:sq2:pn1:pi22ee").is_none());
    assert!(rs.handle_query(NOW, b"d2:sq2:pn4:txid1:xe").is_none());
    assert!(rs.handle_query(NOW, b"garbage").is_none());
    assert!(rs.handle_query(NOW, &sq("pn", b"p", &[])).is_some());
}
