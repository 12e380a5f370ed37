//! Unit tests of the lease book: the rules, the indexes and the caps.

use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Command, Lease, Message, VirtualSwitchLease};
use pktmesh_lease_engine::{LeaseId, UnixTime};

use super::frames::address_of;
use super::*;

/// Every link exists, with this capacity and offer; every node is known.
struct AllLinks(LinkInfo);

impl Links for AllLinks {
    fn link(&self, _: &Address, _: &Address) -> Option<LinkInfo> {
        Some(self.0)
    }
    fn knows_node(&self, _: &Address) -> bool {
        true
    }
}

const BIG: AllLinks = AllLinks(LinkInfo {
    capacity_kbps: Some(1_000_000),
    offer: None,
});

fn key_of(node: u8, id: u8) -> LeaseKey {
    (signer(node).public(), LeaseId([id; 16]))
}

const NOW: UnixTime = UnixTime(1_700_000_000);

fn signer(n: u8) -> Signer {
    Signer::from_cjdns(&PrivateKey::from_bytes([n; 32]))
}

fn lease(node: u8, peer: u8, owner: &Signer, id: u8) -> Vec<u8> {
    let s = signer(node);
    Message::Lease(Lease {
        id: LeaseId([id; 16]),
        node: s.public(),
        peer: *PrivateKey::from_bytes([peer; 32]).public_key().as_bytes(),
        kbps: 1000,
        start: UnixTime(NOW.0 - 1),
        end: UnixTime(NOW.0 + 100),
        owner: owner.public(),
    })
    .emit_signed(&s)
    .unwrap()
}

fn vswitch(node: u8, owner: &Signer, id: u8, ins: u8, outs: u8) -> Vec<u8> {
    let s = signer(node);
    Message::VirtualSwitch(VirtualSwitchLease {
        id: LeaseId([id; 16]),
        node: s.public(),
        owner: owner.public(),
        start: UnixTime(NOW.0 - 1),
        end: UnixTime(NOW.0 + 100),
        ins: vec![LeaseId([ins; 16])],
        outs: vec![LeaseId([outs; 16])],
    })
    .emit_signed(&s)
    .unwrap()
}

fn network(owner: &Signer, seq: u64, leases: &[u8], vs: &[u8]) -> Vec<u8> {
    VirtualNetwork {
        id: 1,
        owner: owner.public(),
        seq,
        leases: leases.iter().map(|&i| LeaseId([i; 16])).collect(),
        vswitches: vs.iter().map(|&i| LeaseId([i; 16])).collect(),
    }
    .emit_signed(owner)
}

#[test]
fn virtual_networks_must_chain_through_virtual_switches() {
    let owner = signer(50);
    let mut book = LeaseBook::new();
    let none = &BIG;
    // Links 1→2 (lease 1), 2→3 (lease 2), 4→5 (lease 3).
    for f in [
        lease(1, 2, &owner, 1),
        lease(2, 3, &owner, 2),
        lease(4, 5, &owner, 3),
    ] {
        book.insert(NOW, &f, none).unwrap();
    }
    let before = book.digest();
    assert_eq!(
        book.insert(NOW, &network(&owner, 1, &[1, 3], &[]), none),
        Err(BookError::NotAChain(LeaseId([1; 16]), LeaseId([3; 16])))
    );
    assert_eq!(
        book.insert(NOW, &network(&owner, 1, &[1, 2], &[]), none),
        Err(BookError::NoVirtualSwitch(
            LeaseId([1; 16]),
            LeaseId([2; 16])
        ))
    );
    // A virtual switch at the wrong node does not count.
    book.insert(NOW, &vswitch(3, &owner, 9, 1, 2), none)
        .unwrap();
    assert!(book
        .insert(NOW, &network(&owner, 1, &[1, 2], &[9]), none)
        .is_err());
    // Someone else's network over our leases.
    let other = signer(51);
    assert_eq!(
        book.insert(NOW, &network(&other, 1, &[1], &[]), none),
        Err(BookError::WrongOwner(LeaseId([1; 16])))
    );
    let mid = book.digest();
    assert_ne!(before, mid, "only the virtual switch was added");
    book.insert(NOW, &vswitch(2, &owner, 10, 1, 2), none)
        .unwrap();
    book.insert(NOW, &network(&owner, 1, &[1, 2], &[10]), none)
        .unwrap();
    assert_eq!(book.networks().count(), 1);
    // Replayed sequence number; then deletion with an empty list.
    assert_eq!(
        book.insert(NOW, &network(&owner, 1, &[1], &[]), none),
        Err(BookError::Replayed)
    );
    book.insert(NOW, &network(&owner, 2, &[], &[]), none)
        .unwrap();
    assert_eq!(book.networks().count(), 0);
    // Reloading the frames gives the same book.
    let reloaded = LeaseBook::from_frames(book.frames().map(|(_, b)| b.to_vec()), NOW);
    assert_eq!(reloaded.digest(), book.digest());
    assert_eq!(reloaded.networks().count(), 0);
}

fn config(signer: &Signer, target: u8, seq: u64, command: Command) -> Vec<u8> {
    Message::Config(pktmesh_lease_engine::wire::Config {
        target: LeaseId([target; 16]),
        signer: signer.public(),
        seq,
        command,
    })
    .emit_signed(signer)
    .unwrap()
}

#[test]
fn virtual_switches_take_configuration_like_the_engine() {
    let owner = signer(80);
    let heir = signer(81);
    let stranger = signer(82);
    let none = &BIG;
    let attach = |network| Command::Attach { network };
    let vs = LeaseId([10; 16]);
    let _ = vs;
    let mut book = LeaseBook::new();
    // Links 1→2 (lease 1) and 2→3 (lease 2), a virtual switch at 2 connecting them.
    for f in [
        lease(1, 2, &owner, 1),
        lease(2, 3, &owner, 2),
        vswitch(2, &owner, 10, 1, 2),
    ] {
        book.insert(NOW, &f, none).unwrap();
    }
    let state = book.vswitch(&key_of(2, 10)).unwrap();
    assert_eq!(
        (state.owner, state.network, state.released, state.seq),
        (owner.public(), 0, false, 0)
    );
    assert_eq!(state.node, address_of(&signer(2).public()).unwrap());

    // The owner attaches it.
    book.insert(NOW, &config(&owner, 10, 5, attach(7)), none)
        .unwrap();
    assert_eq!(book.vswitch(&key_of(2, 10)).unwrap().network, 7);
    assert_eq!(book.vswitch(&key_of(2, 10)).unwrap().seq, 5);
    assert_eq!(book.vswitches().count(), 1);

    // Refused, and nothing changes: someone else, a replayed or an old sequence number,
    // classes (not applicable to a virtual switch), an unknown target, a lapsed lease.
    let before = (book.digest(), book.vswitch(&key_of(2, 10)).cloned());
    let refusals = [
        (
            config(&stranger, 10, 6, attach(8)),
            BookError::WrongOwner(vs),
        ),
        (config(&owner, 10, 5, attach(8)), BookError::Replayed),
        (
            config(
                &owner,
                10,
                6,
                Command::SetClasses {
                    default_class: 1,
                    max_class: 3,
                },
            ),
            BookError::NotApplicable(vs),
        ),
        (
            config(&owner, 11, 6, attach(8)),
            BookError::UnknownLease(LeaseId([11; 16])),
        ),
    ];
    for (frame, error) in refusals {
        assert_eq!(book.insert(NOW, &frame, none), Err(error));
        assert_eq!(
            (book.digest(), book.vswitch(&key_of(2, 10)).cloned()),
            before
        );
    }
    assert_eq!(
        book.insert(
            UnixTime(NOW.0 + 100),
            &config(&owner, 10, 6, attach(8)),
            none
        ),
        Err(BookError::Expired(vs))
    );
    assert_eq!(
        (book.digest(), book.vswitch(&key_of(2, 10)).cloned()),
        before
    );
    // A virtual switch cannot take the id of a bandwidth lease.
    assert_eq!(
        book.insert(NOW, &vswitch(1, &owner, 1, 1, 2), none),
        Err(BookError::IdConflict(LeaseId([1; 16])))
    );
    // An older sequence number arriving late is history (the replay sorts by sequence
    // number): held, but the state stays at the newest.
    book.insert(NOW, &config(&owner, 10, 4, attach(8)), none)
        .unwrap();
    assert_eq!(book.vswitch(&key_of(2, 10)).unwrap().network, 7);
    assert_eq!(book.vswitch(&key_of(2, 10)).unwrap().seq, 5);

    // It knits the owner's network together.
    book.insert(NOW, &network(&owner, 1, &[1, 2], &[10]), none)
        .unwrap();
    book.insert(NOW, &network(&owner, 2, &[], &[]), none)
        .unwrap();

    // Transfer: the heir continues above the sequence number, the old owner is out.
    let transfer = Command::Transfer {
        new_owner: heir.public(),
    };
    book.insert(NOW, &config(&owner, 10, 6, transfer), none)
        .unwrap();
    assert_eq!(book.vswitch(&key_of(2, 10)).unwrap().owner, heir.public());
    assert_eq!(
        book.insert(NOW, &config(&owner, 10, 7, attach(9)), none),
        Err(BookError::WrongOwner(vs))
    );
    book.insert(NOW, &config(&heir, 10, 7, attach(9)), none)
        .unwrap();
    assert_eq!(book.vswitch(&key_of(2, 10)).unwrap().network, 9);
    // The heir's virtual switch does not connect the owner's leases.
    assert_eq!(
        book.insert(NOW, &network(&owner, 3, &[1, 2], &[10]), none),
        Err(BookError::NoVirtualSwitch(
            LeaseId([1; 16]),
            LeaseId([2; 16])
        ))
    );

    // Release.
    book.insert(NOW, &config(&heir, 10, 8, Command::Release), none)
        .unwrap();
    let state = book.vswitch(&key_of(2, 10)).unwrap();
    assert_eq!(
        (state.owner, state.network, state.released, state.seq),
        (heir.public(), 9, true, 8)
    );

    // The state is a function of the set: reloading, or gossiping in reverse, agrees.
    let frames: Vec<Vec<u8>> = book.frames().map(|(_, b)| b.to_vec()).collect();
    let reloaded = LeaseBook::from_frames(frames.clone(), NOW);
    assert_eq!(reloaded.digest(), book.digest());
    assert_eq!(
        reloaded.vswitch(&key_of(2, 10)),
        book.vswitch(&key_of(2, 10))
    );
    let mut gossiped = LeaseBook::new();
    for _ in 0..2 {
        for f in frames.iter().rev() {
            let _ = gossiped.insert_gossip(NOW, f, &BIG);
        }
    }
    assert_eq!(gossiped.digest(), book.digest());
    assert_eq!(
        gossiped.vswitch(&key_of(2, 10)),
        book.vswitch(&key_of(2, 10))
    );
}

#[test]
fn orders_need_an_offer_and_a_valid_signature() {
    let buyer = signer(60);
    let order = Order {
        node: Address::from_bytes([0xfc; 16]),
        peer: Address::from_bytes([0xfd; 16]),
        kbps: 100,
        start: NOW,
        end: UnixTime(NOW.0 + 60),
        buyer: buyer.public(),
        nonce: 0,
    };
    let bytes = order.emit_signed(&buyer);
    assert_eq!(Order::parse_verified(&bytes), Ok(order));
    let mut book = LeaseBook::new();
    assert_eq!(
        book.insert(NOW, &bytes, &NoLinks),
        Err(BookError::NoOffer("link not offered"))
    );
    let offer = |kbps| {
        AllLinks(LinkInfo {
            capacity_kbps: Some(10_000),
            offer: Some(OfferRef {
                kbps,
                max_seconds: 3600,
            }),
        })
    };
    assert_eq!(
        book.insert(NOW, &bytes, &offer(50)),
        Err(BookError::NoOffer("more kbit/s than offered"))
    );
    let mut forged = bytes.clone();
    forged[90] ^= 1;
    assert_eq!(
        book.insert(NOW, &forged, &offer(500)),
        Err(BookError::BadSignature)
    );
    assert_eq!(
        book.insert(NOW, &bytes[..100], &offer(500)),
        Err(BookError::Malformed("order"))
    );
    assert!(book.insert(NOW, &bytes, &offer(500)).unwrap().new);
    assert_eq!(book.pending_orders(&order.node, NOW, None, 100).len(), 1);
    assert_eq!(book.stats().accepted, 1);
    assert_eq!(book.stats().refused, 4);
}

#[test]
fn equivocation_resolves_the_same_way_everywhere() {
    let owner = signer(70);
    let l = lease(1, 2, &owner, 1);
    let cfg = |network| {
        Message::Config(pktmesh_lease_engine::wire::Config {
            target: LeaseId([1; 16]),
            signer: owner.public(),
            seq: 1,
            command: Command::Attach { network },
        })
        .emit_signed(&owner)
        .unwrap()
    };
    let (x, y) = (cfg(5), cfg(6));
    let mut a = LeaseBook::new();
    let mut b = LeaseBook::new();
    for book in [&mut a, &mut b] {
        book.insert_gossip(NOW, &l, &BIG).unwrap();
    }
    a.insert_gossip(NOW, &x, &BIG).unwrap();
    b.insert_gossip(NOW, &y, &BIG).unwrap();
    // Exchange both ways.
    let _ = a.insert_gossip(NOW, &y, &BIG);
    let _ = b.insert_gossip(NOW, &x, &BIG);
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.frames().count(), 2);
}

/// The links listed exist (with their info); the nodes at their ends are known.
struct SomeLinks(Vec<(Address, Address, LinkInfo)>);

impl Links for SomeLinks {
    fn link(&self, from: &Address, to: &Address) -> Option<LinkInfo> {
        self.0
            .iter()
            .find(|(f, t, _)| f == from && t == to)
            .map(|(_, _, i)| *i)
    }
    fn knows_node(&self, node: &Address) -> bool {
        self.0.iter().any(|(f, t, _)| f == node || t == node)
    }
}

fn addr(n: u8) -> Address {
    address_of(&signer(n).public()).unwrap()
}

/// The link 1 → 2 with `capacity` kbit/s and an offer of up to `capacity` per lease.
fn link_1_2(capacity: u32) -> SomeLinks {
    SomeLinks(vec![(
        addr(1),
        addr(2),
        LinkInfo {
            capacity_kbps: Some(capacity),
            offer: Some(OfferRef {
                kbps: capacity,
                max_seconds: 86_400,
            }),
        },
    )])
}

/// A lease on 1 → 2 from node 1 with an explicit span and rate.
fn span_lease(owner: &Signer, id: u8, kbps: u32, start: u64, end: u64) -> Vec<u8> {
    let s = signer(1);
    Message::Lease(Lease {
        id: LeaseId([id; 16]),
        node: s.public(),
        peer: *PrivateKey::from_bytes([2; 32]).public_key().as_bytes(),
        kbps,
        start: UnixTime(start),
        end: UnixTime(end),
        owner: owner.public(),
    })
    .emit_signed(&s)
    .unwrap()
}

fn order_on_1_2(buyer: &Signer, kbps: u32, start: u64, end: u64, nonce: u64) -> (Order, Vec<u8>) {
    let o = Order {
        node: addr(1),
        peer: addr(2),
        kbps,
        start: UnixTime(start),
        end: UnixTime(end),
        buyer: buyer.public(),
        nonce,
    };
    (o, o.emit_signed(buyer))
}

#[test]
fn capacity_is_never_oversold_and_adjacent_spans_fit() {
    let links = link_1_2(1000);
    let (a, b) = (signer(90), signer(91));
    let mut book = LeaseBook::new();
    let t = NOW.0;
    book.insert(NOW, &span_lease(&a, 1, 600, t, t + 100), &links)
        .unwrap();
    // Overlapping: 600 + 500 > 1000, refused with the conflicting lease named.
    let before = book.digest();
    match book.insert(NOW, &span_lease(&b, 2, 500, t + 50, t + 150), &links) {
        Err(BookError::OverCapacity {
            capacity_kbps,
            peak_kbps,
            conflicts,
            ..
        }) => {
            assert_eq!((capacity_kbps, peak_kbps), (1000, 1100));
            assert_eq!(conflicts.len(), 1);
            assert_eq!(conflicts[0].holder, Holder::Lease(key_of(1, 1)));
        }
        other => panic!("expected OverCapacity, got {other:?}"),
    }
    assert_eq!(book.digest(), before);
    // Adjacent (end == start) does not overlap: allowed, at the full capacity.
    book.insert(NOW, &span_lease(&b, 3, 1000, t + 100, t + 200), &links)
        .unwrap();
    // An order counts too: 400 fits beside 600, then nothing more fits in the first span.
    let (_, o1) = order_on_1_2(&b, 400, t, t + 100, 1);
    book.insert(NOW, &o1, &links).unwrap();
    let (_, o2) = order_on_1_2(&b, 1, t + 10, t + 20, 2);
    match book.insert(NOW, &o2, &links) {
        Err(BookError::OverCapacity { conflicts, .. }) => assert_eq!(conflicts.len(), 2),
        other => panic!("expected OverCapacity, got {other:?}"),
    }
    // The lease that fulfils the order takes its share over (no double count).
    book.insert(NOW, &span_lease(&b, 4, 400, t, t + 100), &links)
        .unwrap();
    assert_eq!(book.lease(&key_of(1, 4)).unwrap().order, Some(item_id(&o1)));
    // A released lease frees its share.
    book.insert(NOW, &config(&a, 1, 1, Command::Release), &links)
        .unwrap();
    book.insert(NOW, &span_lease(&b, 5, 600, t + 10, t + 90), &links)
        .unwrap();
    assert_eq!(book.stats().over_capacity, 2);
}

#[test]
fn three_orders_of_one_buyer_on_one_link_are_all_fulfilled() {
    let links = link_1_2(10_000);
    let buyer = signer(92);
    let mut book = LeaseBook::new();
    let t = NOW.0;
    let spans = [(t, t + 100), (t + 100, t + 200), (t + 500, t + 900)];
    let mut order_ids = Vec::new();
    for (i, (s, e)) in spans.iter().enumerate() {
        let (_, bytes) = order_on_1_2(&buyer, 1000, *s, *e, i as u64);
        order_ids.push(book.insert(NOW, &bytes, &links).unwrap().id);
    }
    assert_eq!(book.pending_orders(&addr(1), NOW, None, 100).len(), 3);
    // Fulfilled out of order, each by its own lease (full identity: buyer, link, start, end).
    for (i, (s, e)) in spans.iter().enumerate().rev() {
        book.insert(NOW, &span_lease(&buyer, 10 + i as u8, 1000, *s, *e), &links)
            .unwrap();
    }
    for (i, oid) in order_ids.iter().enumerate() {
        let lease = book.lease(&key_of(1, 10 + i as u8)).unwrap();
        assert_eq!(lease.order, Some(*oid), "lease {i} fulfils order {i}");
        assert_eq!(
            book.order(oid).unwrap().matched,
            Some(key_of(1, 10 + i as u8))
        );
    }
    assert!(book.pending_orders(&addr(1), NOW, None, 100).is_empty());
}

#[test]
fn a_reused_id_from_another_key_neither_evicts_nor_shadows() {
    // Victim: node 1's lease 7 on 1 → 2, owned by 93. Thief: node 3 issues lease 7 too.
    let (victim_owner, thief) = (signer(93), signer(94));
    let mut info = link_1_2(10_000).0;
    info.push((addr(3), addr(4), info[0].2));
    let links = SomeLinks(info);
    let victim = span_lease(&victim_owner, 7, 1000, NOW.0 - 1, NOW.0 + 100);
    let copy = |owner: &Signer| {
        let s = signer(3);
        Message::Lease(Lease {
            id: LeaseId([7; 16]),
            node: s.public(),
            peer: *PrivateKey::from_bytes([4; 32]).public_key().as_bytes(),
            kbps: 1000,
            start: UnixTime(NOW.0 - 1),
            end: UnixTime(NOW.0 + 100),
            owner: owner.public(),
        })
        .emit_signed(&s)
        .unwrap()
    };
    // Through the API and through gossip, in both orders.
    for gossip in [false, true] {
        for thief_first in [false, true] {
            let mut book = LeaseBook::new();
            let put = |b: &mut LeaseBook, f: &[u8]| {
                if gossip {
                    b.insert_gossip(NOW, f, &links)
                } else {
                    b.insert(NOW, f, &links)
                }
            };
            let frames = if thief_first {
                [copy(&thief), victim.clone()]
            } else {
                [victim.clone(), copy(&thief)]
            };
            for f in &frames {
                put(&mut book, f).unwrap();
            }
            // The thief configures "lease 7": only its own copy changes.
            put(
                &mut book,
                &config(&thief, 7, 1, Command::Attach { network: 66 }),
            )
            .unwrap();
            // A transfer of the victim's lease by the thief is refused.
            let steal = config(
                &thief,
                7,
                2,
                Command::Transfer {
                    new_owner: thief.public(),
                },
            );
            let _ = put(&mut book, &steal);
            let v = book.lease(&key_of(1, 7)).unwrap();
            assert_eq!(
                (v.owner, v.network, v.from, v.to),
                (victim_owner.public(), 0, addr(1), addr(2))
            );
            assert_eq!(book.leases_with_id(&LeaseId([7; 16])).count(), 2);
            assert_eq!(
                book.leased_links(&victim_owner.public(), NOW),
                vec![(addr(1), addr(2))]
            );
            // The victim's node is sent its own lease, not the copy.
            let frames = book.frames_for(&addr(1), NOW);
            assert_eq!(frames.len(), 1);
            assert_eq!(&frames[0][..], &victim[..]);
            // The victim's owner still configures it.
            put(
                &mut book,
                &config(&victim_owner, 7, 5, Command::Attach { network: 9 }),
            )
            .unwrap();
            assert_eq!(book.lease(&key_of(1, 7)).unwrap().network, 9);
        }
    }
}

#[test]
fn leases_need_their_link_in_the_graph_and_its_source_as_issuer() {
    let links = link_1_2(10_000);
    let owner = signer(95);
    let mut book = LeaseBook::new();
    // Node 1 leasing 1 → 2: fine. Node 2 leasing 2 → 1 (not announced) or node 3 claiming
    // "1 → 2" by naming peer 2 from its own key: its link is 3 → 2, not in the graph.
    book.insert(NOW, &lease(1, 2, &owner, 1), &links).unwrap();
    for (node, peer) in [(2u8, 1u8), (3, 2)] {
        assert_eq!(
            book.insert(NOW, &lease(node, peer, &owner, 2), &links),
            Err(BookError::NoLink {
                from: addr(node),
                to: addr(peer),
            })
        );
    }
    assert_eq!(book.leases().count(), 1);
    assert_eq!(book.stats().refused, 2);
}

#[test]
fn empty_networks_are_bounded_through_the_api_and_gossip() {
    let owner = signer(96);
    let empty = |id: u64| {
        VirtualNetwork {
            id,
            owner: owner.public(),
            seq: 1,
            leases: vec![],
            vswitches: vec![],
        }
        .emit_signed(&owner)
    };
    let mut api = LeaseBook::new();
    let mut gossip = LeaseBook::new();
    let (mut api_ok, mut gossip_ok) = (0, 0);
    for id in 0..10_000 {
        let f = empty(id);
        api_ok += usize::from(api.insert(NOW, &f, &BIG).is_ok());
        gossip_ok += usize::from(gossip.insert_gossip(NOW, &f, &BIG).is_ok());
    }
    assert_eq!(api_ok, 0, "nothing to delete");
    assert_eq!(api.len(), 0);
    assert_eq!(gossip_ok, MAX_NETWORKS_PER_OWNER);
    assert_eq!(gossip.len(), MAX_NETWORKS_PER_OWNER);
    assert_eq!(
        gossip.stats().limited,
        (10_000 - MAX_NETWORKS_PER_OWNER) as u64
    );
    // Deletions are pruned after the grace period.
    gossip.handle_timeout(UnixTime(NOW.0 + PRUNE_GRACE_SECS));
    assert_eq!(gossip.len(), 0);
}

#[test]
fn expired_leases_and_orders_are_pruned_and_never_pending_again() {
    let links = link_1_2(10_000);
    let buyer = signer(97);
    let mut book = LeaseBook::new();
    let t = NOW.0;
    let (_, unmatched) = order_on_1_2(&buyer, 100, t, t + 60, 1);
    let (_, matched) = order_on_1_2(&buyer, 100, t, t + 120, 2);
    book.insert(NOW, &unmatched, &links).unwrap();
    book.insert(NOW, &matched, &links).unwrap();
    book.insert(NOW, &span_lease(&buyer, 1, 100, t, t + 120), &links)
        .unwrap();
    book.insert(
        NOW,
        &config(&buyer, 1, 1, Command::Attach { network: 3 }),
        &links,
    )
    .unwrap();
    assert_eq!(book.len(), 4);
    assert_eq!(book.pending_orders(&addr(1), NOW, None, 10).len(), 1);
    // Once it ends the unmatched order is not pending, and is pruned.
    let after = UnixTime(t + 60);
    assert!(book.pending_orders(&addr(1), after, None, 10).is_empty());
    book.handle_timeout(after);
    assert_eq!(book.len(), 3);
    assert!(book.pending_orders(&addr(1), after, None, 10).is_empty());
    // The lease stays for the grace period after its end, then goes with its order and
    // configuration; the ids are remembered so gossip does not fetch them again.
    book.handle_timeout(UnixTime(t + 120 + PRUNE_GRACE_SECS - 1));
    assert_eq!(book.len(), 3);
    assert_eq!(
        book.poll_timeout(),
        Some(UnixTime(t + 120 + PRUNE_GRACE_SECS))
    );
    book.handle_timeout(UnixTime(t + 120 + PRUNE_GRACE_SECS));
    assert_eq!(book.len(), 0);
    assert_eq!(book.stats().pruned, 4);
    assert!(book.knows(&item_id(&matched)) && book.knows(&item_id(&unmatched)));
    // A pruned order offered again (by a lagging peer) is refused: it is over.
    assert!(book
        .insert_gossip(UnixTime(t + 120 + PRUNE_GRACE_SECS), &unmatched, &links)
        .is_err());
    let changes = book.take_changes();
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, Change::Removed(_)))
            .count(),
        4
    );
}
