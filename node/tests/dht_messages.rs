//! CJDHT messages against real cjdns bytes (`test/Main_fuzz_test_cases/Dht*.hex` of cjdns
//! 22.3: a 68-byte RouteHeader, a 4-byte DataHeader, then the bencoded message), malformed
//! input, and the answers a pathfinder gives to those queries.

use std::time::{Duration, Instant};

use pktmesh_crypto_auth::PublicKey;
use pktmesh_node::dht::{
    Body, Config, DhtError, Message, NodeEntry, NodeListError, Pathfinder, Query, Reply, Sender,
    Target, CONTENT_TYPE_CJDHT,
};
use pktmesh_switch::{EncodingScheme, Label};
use proptest::prelude::*;

const FIND_NODE: &str = "f0fb3dd2076c775b31e9e3701dbcff38269d389be8e3ce1f93c5bdf247d8f577000000003a7bd3430021ffff0000001001000129fc756f0df3714a4268259113d5eb6f0410000100643030303030323a6569693065323a6573353a6114458100313a7069313665313a71323a666e333a74617231363afc4ad89041cbd4154d124fd0121165da343a7478696431323aa9c592fc1dcb6f374a67f52365";
const GET_PEERS: &str = "d66adab960d7b7e657b5c239786301e331550a4181dbbb8b20a7cb19f00f825200000000144d67a30060ffff000000140100000bfcd97f8ae0504b487fd607fa55096e26100001006430323a6569693065323a6573353a6114458100313a7069323065313a71323a6770333a746172383a000000009b64dc53343a7478696431333a30a9342ffb4b0eebc9d3e57d3365";
const PING: &str = "b4058c12d011b1652b8b10e685938e92325ca81f02bbff24671f21a7fb41a40700000001450bd343000000000000001000000000fcdeb3032fe2c57363b5123690d932691000010064323a6569693065323a6573353a6114458100313a7069323065313a71323a706e343a7478696431333a31c0cd38edb95f880bdf6b2e9765";

/// A fuzz case split into sender key, label (as the RouteHeader has it), sender address and
/// the CJDHT body.
struct Case {
    key: PublicKey,
    label: u64,
    ip6: [u8; 16],
    body: Vec<u8>,
}

fn case(hex_text: &str) -> Case {
    let b = hex::decode(hex_text).unwrap();
    let key: [u8; 32] = b[..32].try_into().unwrap();
    let label = u64::from_be_bytes(b[32..40].try_into().unwrap());
    let ip6: [u8; 16] = b[52..68].try_into().unwrap();
    // DataHeader: version 1, content type 256.
    assert_eq!(b[68] >> 4, 1);
    assert_eq!(u16::from_be_bytes([b[70], b[71]]), CONTENT_TYPE_CJDHT);
    Case {
        key: PublicKey::from_bytes(key),
        label,
        ip6,
        body: b[72..].to_vec(),
    }
}

const V358: [u8; 5] = [0x61, 0x14, 0x45, 0x81, 0x00];

#[test]
fn keys_hash_to_the_route_header_addresses() {
    for c in [case(FIND_NODE), case(GET_PEERS), case(PING)] {
        assert_eq!(c.key.address().as_bytes(), &c.ip6);
    }
}

#[test]
fn find_node_query_from_cjdns() {
    let c = case(FIND_NODE);
    let m = Message::parse(&c.body).unwrap();
    assert_eq!(m.version, 16);
    assert_eq!(m.encoding_index, 0);
    assert_eq!(m.scheme, Some(EncodingScheme::v358()));
    assert_eq!(m.txid, hex::decode("a9c592fc1dcb6f374a67f523").unwrap());
    let tar: [u8; 16] = hex::decode("fc4ad89041cbd4154d124fd0121165da")
        .unwrap()
        .try_into()
        .unwrap();
    assert_eq!(m.body, Body::Query(Query::FindNode(Target::Address(tar))));
    // This older writer padded with five zeros; 22.3 pads to the next multiple of four only.
    let again = m.to_bytes();
    assert!(
        again.starts_with(b"d02:ei"),
        "{:?}",
        String::from_utf8_lossy(&again)
    );
    assert_eq!(again.len() % 4, 0);
    assert_eq!(&again[2..], &c.body[6..]);
    assert_eq!(Message::parse(&again).unwrap(), m);
}

#[test]
fn get_peers_query_from_cjdns_round_trips() {
    let c = case(GET_PEERS);
    let m = Message::parse(&c.body).unwrap();
    assert_eq!(m.version, 20);
    assert_eq!(m.scheme.unwrap().serialize(), V358);
    assert_eq!(
        m.body,
        Body::Query(Query::GetPeers(Target::Label(0x0000_0000_9b64_dc53)))
    );
    assert_eq!(m.txid.len(), 13);
    assert_eq!(m.to_bytes(), c.body);
}

#[test]
fn ping_query_from_cjdns_round_trips() {
    let c = case(PING);
    let m = Message::parse(&c.body).unwrap();
    assert_eq!(m.version, 20);
    assert_eq!(m.body, Body::Query(Query::Ping));
    assert_eq!(m.to_bytes(), c.body);
    assert_eq!(c.body.len() % 4, 0);
}

fn pathfinder() -> (Pathfinder, Instant) {
    let now = Instant::now();
    // Our own key only has to differ from the senders'.
    let own = PublicKey::from_bytes([7; 32]);
    (Pathfinder::new(now, own, Config::default(), 7), now)
}

#[test]
fn answers_the_cjdns_ping_like_cjdns() {
    let (mut pf, now) = pathfinder();
    let c = case(PING);
    let path = Label::new(c.label).unwrap();
    let from = Sender {
        key: c.key,
        path,
        version: 16,
    };
    pf.handle_message(now, from, &c.body).unwrap();
    let t = pf.poll_transmit().expect("a reply");
    assert!(pf.poll_transmit().is_none());
    assert_eq!(t.key, c.key);
    assert_eq!(t.path, path);
    assert_eq!(t.version, 20);
    assert_eq!(t.payload.len() % 4, 0);
    let r = Message::parse(&t.payload).unwrap();
    let q = Message::parse(&c.body).unwrap();
    assert_eq!(r.txid, q.txid, "txid echoed verbatim");
    assert_eq!(r.version, 22);
    assert_eq!(r.scheme.unwrap().serialize(), V358);
    // 0x…d343: first director in the 4-bit form.
    assert_eq!(r.encoding_index, 0);
    assert_eq!(r.body, Body::Reply(Reply::default()));
    // Exactly what cjdns 22.3 would write for this reply.
    let mut expected = b"d2:eii0e2:es5:".to_vec();
    expected.extend_from_slice(&V358);
    expected.extend_from_slice(b"1:pi22e4:txid13:");
    expected.extend_from_slice(&q.txid);
    expected.push(b'e');
    let pad = (4 - expected.len() % 4) % 4;
    expected.splice(1..1, std::iter::repeat_n(b'0', pad));
    assert_eq!(t.payload, expected);
}

#[test]
fn answers_get_peers_with_itself_and_its_peers() {
    let (mut pf, now) = pathfinder();
    let c = case(GET_PEERS);
    // Two direct peers: the asker on 0x13 and another on 0x15.
    let other = case(PING).key;
    pf.peer_up(now, c.key, Label::new(0x13).unwrap(), 20)
        .unwrap();
    pf.peer_up(now, other, Label::new(0x15).unwrap(), 22)
        .unwrap();
    while pf.poll_transmit().is_some() {}
    let q = Message {
        txid: b"00abcdefghijkl".to_vec(),
        version: 22,
        scheme: Some(EncodingScheme::v358()),
        encoding_index: 0,
        body: Body::Query(Query::GetPeers(Target::Label(0))),
    };
    let from = Sender {
        key: c.key,
        path: Label::new(0x13).unwrap(),
        version: 20,
    };
    pf.handle_message(now, from, &q.to_bytes()).unwrap();
    let r = Message::parse(&pf.poll_transmit().unwrap().payload).unwrap();
    let Body::Reply(reply) = r.body else {
        panic!("not a reply")
    };
    // Nearest to label 0 last: 0x15, 0x13, then ourselves as 1.
    let labels: Vec<u64> = reply.nodes.iter().map(|n| n.label).collect();
    assert_eq!(labels, vec![0x15, 0x13, 1]);
    assert_eq!(reply.nodes[2].key, pf.key());
    assert_eq!(reply.nodes[2].version, 22);
    assert_eq!(reply.nodes[1].version, 20);
    // From label 0x15 on, only 0x15 remains.
    let gp = |label| Message {
        body: Body::Query(Query::GetPeers(Target::Label(label))),
        ..q.clone()
    };
    pf.handle_message(now, from, &gp(0x15).to_bytes()).unwrap();
    let r = Message::parse(&pf.poll_transmit().unwrap().payload).unwrap();
    let Body::Reply(reply) = r.body else {
        panic!("not a reply")
    };
    assert_eq!(reply.nodes.len(), 1);
    assert_eq!(reply.nodes[0].label, 0x15);
    // The target is cut to its first director as V358 reads it: 0x14 ends in binary 00, a
    // 10-bit director, so it means 0x414 and no 4-bit peer label is at or above it.
    pf.handle_message(now, from, &gp(0x14).to_bytes()).unwrap();
    let r = Message::parse(&pf.poll_transmit().unwrap().payload).unwrap();
    assert_eq!(r.body, Body::Reply(Reply::default()));
}

#[test]
fn labels_are_reencoded_for_a_wide_asker() {
    let (mut pf, now) = pathfinder();
    let asker = case(GET_PEERS).key;
    let other = case(PING).key;
    // The asker sits behind interface 40 (a 10-bit director), the other peer behind 0x15.
    let wide = EncodingScheme::v358().label_for_interface(40).unwrap();
    pf.peer_up(now, asker, wide, 22).unwrap();
    pf.peer_up(now, other, Label::new(0x15).unwrap(), 22)
        .unwrap();
    while pf.poll_transmit().is_some() {}
    let q = Message {
        txid: b"00abcdefghijkl".to_vec(),
        version: 22,
        scheme: Some(EncodingScheme::v358()),
        encoding_index: 2,
        body: Body::Query(Query::GetPeers(Target::Label(0))),
    };
    let from = Sender {
        key: asker,
        path: wide,
        version: 22,
    };
    pf.handle_message(now, from, &q.to_bytes()).unwrap();
    let r = Message::parse(&pf.poll_transmit().unwrap().payload).unwrap();
    assert_eq!(
        r.encoding_index, 2,
        "we reach the asker through a 10-bit director"
    );
    let Body::Reply(reply) = r.body else {
        panic!("not a reply")
    };
    let for_other = reply.nodes.iter().find(|n| n.key == other).unwrap();
    // 0x15 (interface 2, 4-bit form) widened to the 10-bit form: 0x404.
    assert_eq!(for_other.label, 0x404);
    // The self route stays 1.
    assert_eq!(
        reply
            .nodes
            .iter()
            .find(|n| n.key == pf.key())
            .unwrap()
            .label,
        1
    );
}

#[test]
fn old_versions_are_dropped_and_not_answered() {
    let (mut pf, now) = pathfinder();
    let c = case(FIND_NODE);
    let from = Sender {
        key: c.key,
        path: Label::new(c.label).unwrap(),
        version: 16,
    };
    assert_eq!(
        pf.handle_message(now, from, &c.body),
        Err(DhtError::IncompatibleVersion(16))
    );
    assert!(pf.poll_transmit().is_none());
}

#[test]
fn supernode_queries_are_ignored() {
    let (mut pf, now) = pathfinder();
    let c = case(PING);
    let q = Message {
        txid: b"01xyz".to_vec(),
        version: 22,
        scheme: Some(EncodingScheme::v358()),
        encoding_index: 0,
        body: Body::Query(Query::Other {
            q: b"sq".to_vec(),
            target: Target::Missing,
        }),
    };
    let from = Sender {
        key: c.key,
        path: Label::new(0x13).unwrap(),
        version: 22,
    };
    pf.handle_message(now, from, &q.to_bytes()).unwrap();
    assert!(pf.poll_transmit().is_none());
}

#[test]
fn replies_to_nobody_are_rejected() {
    let (mut pf, now) = pathfinder();
    let c = case(PING);
    let from = Sender {
        key: c.key,
        path: Label::new(0x13).unwrap(),
        version: 22,
    };
    for txid in [&b"00abcdefghijkl"[..], b"01abcdefghijkl", b"", b"00"] {
        let r = Message {
            txid: txid.to_vec(),
            version: 22,
            scheme: None,
            encoding_index: 0,
            body: Body::Reply(Reply::default()),
        };
        assert_eq!(
            pf.handle_message(now, from, &r.to_bytes()),
            Err(DhtError::UnknownTransaction)
        );
    }
}

#[test]
fn reply_node_lists() {
    let k = case(PING).key;
    let entry = NodeEntry {
        key: k,
        label: 0x153,
        version: 22,
    };
    let r = Message {
        txid: b"00x".to_vec(),
        version: 22,
        scheme: Some(EncodingScheme::v358()),
        encoding_index: 1,
        body: Body::Reply(Reply {
            nodes: vec![
                entry,
                NodeEntry {
                    version: 300,
                    ..entry
                },
            ],
            dnd: true,
            node_list_error: None,
        }),
    };
    let bytes = r.to_bytes();
    assert_eq!(bytes.len() % 4, 0);
    // np: two-byte versions because 300 > 255.
    let np = [b"2:np5:".as_slice(), &[2, 0, 22, 1, 44]].concat();
    assert!(bytes.windows(np.len()).any(|w| w == np.as_slice()));
    assert_eq!(Message::parse(&bytes).unwrap(), r);

    // A reply whose list is broken is still a reply, without nodes.
    let bad = [&b"d1:n3:abc2:np2:\x01\x16"[..], b"d1:n0:", b"d1:ni5e"];
    let errors = [
        NodeListError::BadLength(3),
        NodeListError::BadLength(0),
        NodeListError::WrongType,
    ];
    for (b, e) in bad.iter().zip(errors) {
        let mut m = b.to_vec();
        m.extend_from_slice(b"1:pi22e4:txid3:00xe");
        let mut m2 = b"d2:eii0e".to_vec();
        m2.extend_from_slice(&m[1..]);
        let parsed = Message::parse(&m2).unwrap();
        let Body::Reply(reply) = parsed.body else {
            panic!("not a reply")
        };
        assert!(reply.nodes.is_empty());
        assert_eq!(reply.node_list_error, Some(e));
    }
    // Versions that do not match the entries.
    let mut n = Vec::new();
    n.extend_from_slice(k.as_bytes());
    n.extend_from_slice(&0x13u64.to_be_bytes());
    let mut m = b"d2:eii0e1:n40:".to_vec();
    m.extend_from_slice(&n);
    m.extend_from_slice(b"2:np3:\x01\x16\x16");
    m.extend_from_slice(b"1:pi22e4:txid3:00xe");
    let Body::Reply(reply) = Message::parse(&m).unwrap().body else {
        panic!()
    };
    assert_eq!(reply.node_list_error, Some(NodeListError::BadVersions));
}

#[test]
fn malformed_messages_get_typed_errors() {
    let cases: &[(&[u8], DhtError)] = &[
        (b"d1:pi22e2:eii0ee", DhtError::MissingKey("txid")),
        (b"d4:txid1:x2:eii0ee", DhtError::MissingKey("p")),
        (b"d4:txid1:x1:pi22ee", DhtError::MissingKey("ei")),
        (
            b"d4:txid1:x1:pi22e2:eii3ee",
            DhtError::BadEncodingIndex { index: 3, forms: 3 },
        ),
        (
            b"d4:txid1:x1:pi22e2:eii-1ee",
            DhtError::BadEncodingIndex {
                index: -1,
                forms: 3,
            },
        ),
        (b"d4:txid1:x1:pi-1e2:eii0ee", DhtError::BadVersion(-1)),
        (b"d4:txidi1e1:pi22e2:eii0ee", DhtError::WrongType("txid")),
        (b"d4:txid1:x1:p2:222:eii0ee", DhtError::WrongType("p")),
        (b"d4:txid1:x1:pi22e2:eii0e1:qi1ee", DhtError::WrongType("q")),
    ];
    for (bytes, err) in cases {
        assert_eq!(
            &Message::parse(bytes).unwrap_err(),
            err,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    for bytes in [&b""[..], b"l1:xe", b"d", b"d4:txid", b"i5e", b"d003:fooi1e"] {
        assert!(
            matches!(Message::parse(bytes), Err(DhtError::Bencode(_))),
            "{bytes:?}"
        );
    }
    // A nonsense scheme (a single form with a prefix).
    assert!(matches!(
        Message::parse(b"d2:eii0e2:es2:\x21\x004:txid1:x1:pi22ee"),
        Err(DhtError::BadScheme(_))
    ));
    // Extra bytes after the dictionary are ignored, as cjdns does.
    let mut ping = case(PING).body;
    ping.extend_from_slice(b"garbage");
    assert!(Message::parse(&ping).is_ok());
}

#[test]
fn messages_from_ourselves_are_refused() {
    let (mut pf, now) = pathfinder();
    let from = Sender {
        key: pf.key(),
        path: Label::SELF,
        version: 22,
    };
    assert_eq!(
        pf.handle_message(now, from, &case(PING).body),
        Err(DhtError::FromSelf)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::parse(&bytes);
        let (mut pf, now) = pathfinder();
        let from = Sender { key: case(PING).key, path: Label::new(0x13).unwrap(), version: 22 };
        let _ = pf.handle_message(now, from, &bytes);
        pf.handle_timeout(now + Duration::from_secs(1));
    }

    #[test]
    fn mutated_cjdns_messages_never_panic(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut body = case([FIND_NODE, GET_PEERS, PING][which]).body;
        for (i, b) in flips {
            let n = body.len();
            body[i % n] ^= b;
        }
        body.truncate(cut % (body.len() + 1));
        let _ = Message::parse(&body);
        let (mut pf, now) = pathfinder();
        let from = Sender { key: case(PING).key, path: Label::new(0x13).unwrap(), version: 22 };
        let _ = pf.handle_message(now, from, &body);
    }

    #[test]
    fn messages_round_trip(
        txid in proptest::collection::vec(any::<u8>(), 0..20),
        version in 20u32..100_000,
        ei in 0u32..3,
        entries in proptest::collection::vec((any::<[u8; 32]>(), 1u64.., any::<u32>()), 0..10),
        dnd in any::<bool>(),
    ) {
        let m = Message {
            txid,
            version,
            scheme: Some(EncodingScheme::v358()),
            encoding_index: ei,
            body: Body::Reply(Reply {
                nodes: entries
                    .into_iter()
                    .map(|(k, label, version)| NodeEntry { key: PublicKey::from_bytes(k), label, version })
                    .collect(),
                dnd,
                node_list_error: None,
            }),
        };
        let bytes = m.to_bytes();
        prop_assert_eq!(bytes.len() % 4, 0);
        prop_assert_eq!(Message::parse(&bytes).unwrap(), m);
    }
}

fn ask(pf: &mut Pathfinder, now: Instant, from: Sender, query: Query) -> Reply {
    let q = Message {
        txid: b"00q".to_vec(),
        version: 22,
        scheme: Some(EncodingScheme::v358()),
        encoding_index: 0,
        body: Body::Query(query),
    };
    pf.handle_message(now, from, &q.to_bytes()).unwrap();
    let t = pf.poll_transmit().expect("an answer");
    assert_eq!(t.key, from.key);
    match Message::parse(&t.payload).unwrap().body {
        Body::Reply(r) => r,
        other => panic!("not a reply: {other:?}"),
    }
}

#[test]
fn search_style_get_peers_and_next_hop() {
    let (mut pf, now) = pathfinder();
    let a = case(GET_PEERS).key;
    let b = case(PING).key;
    pf.peer_up(now, a, Label::new(0x13).unwrap(), 22).unwrap();
    pf.peer_up(now, b, Label::new(0x15).unwrap(), 22).unwrap();
    while pf.poll_transmit().is_some() {}
    let from = Sender {
        key: a,
        path: Label::new(0x13).unwrap(),
        version: 22,
    };
    // cjdns' search asks its target `gp` with the 16-byte address: an empty answer.
    let r = ask(
        &mut pf,
        now,
        from,
        Query::GetPeers(Target::Address(*b.address().as_bytes())),
    );
    assert!(r.nodes.is_empty());
    // `nh` for a known node names that node, its label re-encoded for the asker.
    let r = ask(
        &mut pf,
        now,
        from,
        Query::NextHop(Target::Address(*b.address().as_bytes())),
    );
    assert_eq!(r.nodes.len(), 1);
    assert_eq!((r.nodes[0].key, r.nodes[0].label), (b, 0x15));
    // `fn` for b's address: b is the closest node we know, so it comes last.
    let r = ask(
        &mut pf,
        now,
        from,
        Query::FindNode(Target::Address(*b.address().as_bytes())),
    );
    assert_eq!(r.nodes.last().map(|n| (n.key, n.label)), Some((b, 0x15)));
    // A target of the wrong length gets an empty answer, as in cjdns.
    let r = ask(
        &mut pf,
        now,
        from,
        Query::FindNode(Target::Other(vec![1, 2, 3])),
    );
    assert!(r.nodes.is_empty());
}

#[test]
fn do_not_disturb_nodes_are_not_handed_out() {
    let (mut pf, now) = pathfinder();
    let a = case(GET_PEERS).key;
    let b = case(PING).key;
    pf.peer_up(now, a, Label::new(0x13).unwrap(), 22).unwrap();
    pf.peer_up(now, b, Label::new(0x15).unwrap(), 22).unwrap();
    // Answer our get-peers query to b with "do not disturb".
    let mut to_b = None;
    while let Some(t) = pf.poll_transmit() {
        if t.key == b {
            to_b = Some(t);
        }
    }
    let t = to_b.expect("peer_up asks the peer for its peers");
    let q = Message::parse(&t.payload).unwrap();
    assert_eq!(q.body, Body::Query(Query::GetPeers(Target::Label(0))));
    assert!(
        q.txid.starts_with(b"00"),
        "our txids carry cjdns' 00 prefix"
    );
    assert_eq!(q.txid.len(), 14);
    let reply = Message {
        txid: q.txid,
        version: 22,
        scheme: Some(EncodingScheme::v358()),
        encoding_index: 0,
        body: Body::Reply(Reply {
            dnd: true,
            ..Reply::default()
        }),
    };
    let from_b = Sender {
        key: b,
        path: Label::new(0x15).unwrap(),
        version: 22,
    };
    pf.handle_message(now, from_b, &reply.to_bytes()).unwrap();
    assert!(pf.node(&b.address()).unwrap().last_heard.is_some());
    // The same reply twice is not ours any more.
    assert_eq!(
        pf.handle_message(now, from_b, &reply.to_bytes()),
        Err(DhtError::UnknownTransaction)
    );
    let from_a = Sender {
        key: a,
        path: Label::new(0x13).unwrap(),
        version: 22,
    };
    let r = ask(&mut pf, now, from_a, Query::GetPeers(Target::Label(0)));
    assert!(r.nodes.iter().all(|n| n.key != b), "{r:?}");
    let r = ask(
        &mut pf,
        now,
        from_a,
        Query::FindNode(Target::Address(*b.address().as_bytes())),
    );
    assert!(r.nodes.iter().all(|n| n.key != b), "{r:?}");
}

#[test]
fn replies_from_the_wrong_node_are_refused() {
    let (mut pf, now) = pathfinder();
    let a = case(GET_PEERS).key;
    let b = case(PING).key;
    pf.peer_up(now, a, Label::new(0x13).unwrap(), 22).unwrap();
    let t = pf.poll_transmit().unwrap();
    let q = Message::parse(&t.payload).unwrap();
    let reply = Message {
        txid: q.txid,
        version: 22,
        scheme: None,
        encoding_index: 0,
        body: Body::Reply(Reply::default()),
    };
    let from_b = Sender {
        key: b,
        path: Label::new(0x13).unwrap(),
        version: 22,
    };
    assert_eq!(
        pf.handle_message(now, from_b, &reply.to_bytes()),
        Err(DhtError::WrongResponder)
    );
    // The real peer's answer still counts.
    let from_a = Sender { key: a, ..from_b };
    pf.handle_message(now, from_a, &reply.to_bytes()).unwrap();
}
