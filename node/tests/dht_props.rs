//! Random sequences of everything the node core can do to a pathfinder, including answers full
//! of nonsense labels and keys: nothing panics and every table stays within its bounds.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use pktmesh_node::dht::{Body, Config, DhtError, Message, NodeEntry, Pathfinder, Reply, Sender};
use pktmesh_switch::{EncodingScheme, Label};
use proptest::prelude::*;
use rand_core::{CryptoRng, RngCore};

struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for TestRng {}

/// Twelve valid keys: ours is the first.
fn keys() -> &'static [PublicKey] {
    static KEYS: OnceLock<Vec<PublicKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = TestRng(42);
        (0..12).map(|_| PrivateKey::generate(&mut rng).1).collect()
    })
}

#[derive(Debug, Clone)]
enum Op {
    PeerUp {
        who: usize,
        slot: u16,
        version: u32,
    },
    PeerDown {
        slot: u16,
    },
    /// Answer the oldest queued message if it is a query, with these entries.
    Answer {
        entries: Vec<(usize, u64, u32)>,
        garbage_key: bool,
    },
    Query {
        who: usize,
        path: u64,
        bytes: Vec<u8>,
    },
    Lookup {
        who: usize,
    },
    SwitchError {
        path: u64,
    },
    Wait {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1usize..12, 0u16..257, 18u32..25).prop_map(|(who, slot, version)| Op::PeerUp {
            who,
            slot,
            version
        }),
        (0u16..257).prop_map(|slot| Op::PeerDown { slot }),
        (
            proptest::collection::vec((0usize..12, any::<u64>(), any::<u32>()), 0..12),
            any::<bool>()
        )
            .prop_map(|(entries, garbage_key)| Op::Answer {
                entries,
                garbage_key
            }),
        (
            1usize..12,
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..80)
        )
            .prop_map(|(who, path, bytes)| Op::Query { who, path, bytes }),
        (0usize..12).prop_map(|who| Op::Lookup { who }),
        any::<u64>().prop_map(|path| Op::SwitchError { path }),
        (0u64..40_000).prop_map(|ms| Op::Wait { ms }),
    ]
}

fn query(q: &[u8], tar: Option<Vec<u8>>) -> Vec<u8> {
    let mut m = b"d2:eii0e2:es5:\x61\x14\x45\x81\x001:pi22e1:q2:".to_vec();
    m.extend_from_slice(q);
    if let Some(t) = tar {
        m.extend_from_slice(format!("3:tar{}:", t.len()).as_bytes());
        m.extend_from_slice(&t);
    }
    m.extend_from_slice(b"4:txid2:00e");
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_operations_stay_bounded(ops in proptest::collection::vec(op(), 1..120)) {
        let keys = keys();
        let config = Config {
            node_capacity: 5,
            max_in_flight: 20,
            max_searches: 3,
            rumor_capacity: 4,
            ..Config::default()
        };
        let mut now = Instant::now();
        let mut pf = Pathfinder::new(now, keys[0], config, 3);
        let scheme = EncodingScheme::v358();
        let mut outbox = Vec::new();
        for op in ops {
            match op {
                Op::PeerUp { who, slot, version } => {
                    if let Some(l) = scheme.label_for_interface(u32::from(slot)) {
                        pf.peer_up(now, keys[who], l, version).unwrap();
                    }
                }
                Op::PeerDown { slot } => {
                    if let Some(l) = scheme.label_for_interface(u32::from(slot)) {
                        pf.peer_down(now, l);
                    }
                }
                Op::Answer { entries, garbage_key } => {
                    if outbox.is_empty() {
                        continue;
                    }
                    let t: pktmesh_node::dht::Transmit = outbox.remove(0);
                    let Ok(m) = Message::parse(&t.payload) else { continue };
                    if !matches!(m.body, Body::Query(_)) {
                        continue;
                    }
                    let nodes = entries
                        .into_iter()
                        .map(|(i, label, version)| NodeEntry {
                            key: if garbage_key { PublicKey::from_bytes([i as u8; 32]) } else { keys[i] },
                            label,
                            version,
                        })
                        .collect();
                    let reply = Message {
                        txid: m.txid,
                        version: 22,
                        scheme: Some(scheme),
                        encoding_index: 0,
                        body: Body::Reply(Reply { nodes, dnd: false, node_list_error: None }),
                    };
                    let from = Sender { key: t.key, path: t.path, version: 22 };
                    // Late answers (after the query timed out) are the only ones refused.
                    let r = pf.handle_message(now, from, &reply.to_bytes());
                    prop_assert!(matches!(r, Ok(()) | Err(DhtError::UnknownTransaction)), "{r:?}");
                }
                Op::Query { who, path, bytes } => {
                    let Ok(path) = Label::new(path) else { continue };
                    let from = Sender { key: keys[who], path, version: 22 };
                    let _ = pf.handle_message(now, from, &bytes);
                    let tar = bytes.get(..16).map(<[u8]>::to_vec);
                    let _ = pf.handle_message(now, from, &query(b"fn", tar.clone()));
                    let _ = pf.handle_message(now, from, &query(b"gp", bytes.get(..8).map(<[u8]>::to_vec)));
                    let _ = pf.handle_message(now, from, &query(b"nh", tar));
                }
                Op::Lookup { who } => {
                    let _ = pf.lookup(now, keys[who].address());
                }
                Op::SwitchError { path } => {
                    if let Ok(path) = Label::new(path) {
                        pf.switch_error(now, path);
                    }
                }
                Op::Wait { ms } => {
                    now += Duration::from_millis(ms);
                    if pf.poll_timeout().is_some_and(|t| t <= now) {
                        pf.handle_timeout(now);
                    }
                }
            }
            while let Some(t) = pf.poll_transmit() {
                prop_assert!(Message::parse(&t.payload).is_ok());
                prop_assert_ne!(t.key, keys[0]);
                outbox.push(t);
            }
            while pf.poll_event().is_some() {}
            outbox.truncate(50);
            // 11 possible peers + 5 others.
            prop_assert!(pf.node_count() <= 16);
            prop_assert!(pf.queries_in_flight() <= 20);
            prop_assert!(pf.search_count() <= 3);
            prop_assert!(pf.poll_timeout().is_some());
        }
    }
}
