//! Must show 5 (lease part): forged, expired, replayed and misdirected lease messages are rejected
//! with a precise error and change nothing; ownership transfer, release and class settings work
//! through signed messages.

mod common;

use common::{in_if, signer, World, NOW, OUT_IF};
use pktmesh_lease_engine::priority::{network_tag, tagged, FREE_TAG, UNCLASSED};
use pktmesh_lease_engine::wire::{Command, Config, Lease, Message, VirtualSwitchLease};
use pktmesh_lease_engine::{
    EngineConfig, EngineError, Event, LeaseEngine, LeaseId, LeaseKey, Nanos, Priority, UnixTime,
    WireError,
};

fn lease_for(w: &World, id: u8, start: u64, end: u64) -> Lease {
    let (q, _) = signer(2);
    Lease {
        id: LeaseId([id; 16]),
        node: w.node.public(),
        peer: *q.public_key().as_bytes(),
        kbps: 1000,
        start: UnixTime(start),
        end: UnixTime(end),
        owner: w.owners[0].public(),
    }
}

/// Sends `bytes`, expects `error`, and checks that nothing changed.
fn rejected(w: &mut World, bytes: &[u8], error: EngineError) {
    let before = w.engine.snapshot().clone();
    let got = w.engine.handle_message(NOW, bytes);
    assert_eq!(got, Err(error.clone()));
    assert_eq!(w.engine.snapshot(), &before, "state changed after {error}");
    // Errors read well.
    assert!(!error.to_string().is_empty());
}

#[test]
fn forged_lease_is_rejected() {
    let mut w = World::new(&[1000]);
    let lease = lease_for(&w, 0x77, NOW.0 - 1, NOW.0 + 100);
    // Signed by the owner instead of the node.
    let forged = Message::Lease(lease).emit_signed(&w.owners[0]).unwrap();
    let node = w.node.public();
    rejected(&mut w, &forged, EngineError::BadSignature { signer: node });
    // A valid message with one flipped bit anywhere in the signed part or signature.
    let good = Message::Lease(lease).emit_signed(&w.node).unwrap();
    for at in [5, 60, 90, 120, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert!(
            w.engine.handle_message(NOW, &bad).is_err(),
            "bit flip at {at} accepted"
        );
    }
    assert_eq!(
        w.engine.handle_message(NOW, &good),
        Ok(Event::LeaseAdded(LeaseKey::new(node, LeaseId([0x77; 16]))))
    );
}

#[test]
fn expired_lease_is_rejected() {
    let mut w = World::new(&[1000]);
    let lease = lease_for(&w, 0x78, NOW.0 - 100, NOW.0);
    let m = Message::Lease(lease).emit_signed(&w.node).unwrap();
    rejected(
        &mut w,
        &m,
        EngineError::Expired {
            lease: LeaseId([0x78; 16]),
            end: NOW.0,
            now: NOW.0,
        },
    );
}

#[test]
fn lease_of_another_node_is_rejected() {
    let mut w = World::new(&[1000]);
    let (_, other) = signer(99);
    let lease = Lease {
        node: other.public(),
        peer: [9; 32],
        ..lease_for(&w, 0x79, 0, NOW.0 + 9)
    };
    let m = Message::Lease(lease).emit_signed(&other).unwrap();
    rejected(&mut w, &m, EngineError::NotForThisNode(LeaseId([0x79; 16])));
}

#[test]
fn malformed_bytes_are_rejected() {
    let mut w = World::new(&[1000]);
    rejected(
        &mut w,
        &[1, 1, 0],
        EngineError::Wire(WireError::Truncated(3)),
    );
    let good = Message::Lease(lease_for(&w, 0x7a, 0, NOW.0 + 9))
        .emit_signed(&w.node)
        .unwrap();
    rejected(
        &mut w,
        &good[..good.len() - 1],
        EngineError::Wire(WireError::LengthMismatch {
            expected: 200,
            actual: 199,
        }),
    );
}

#[test]
fn configuration_needs_the_owner_the_time_span_and_a_fresh_sequence() {
    let mut w = World::new(&[1000, 1000]);
    let target = w.out_ids[0];
    // Owner 1 signs a command for owner 0's lease: validly signed, wrong owner.
    let m = w.config(1, target, Command::Attach { network: 5 });
    let (owner0, owner1) = (w.owners[0].public(), w.owners[1].public());
    rejected(
        &mut w,
        &m,
        EngineError::WrongOwner {
            lease: target,
            owner: owner0,
            signer: owner1,
        },
    );
    // Claims owner 0 but is signed by owner 1: forged.
    let c = Config {
        target,
        signer: w.owners[0].public(),
        seq: 1000,
        command: Command::Release,
    };
    let m = Message::Config(c).emit_signed(&w.owners[1]).unwrap();
    rejected(&mut w, &m, EngineError::BadSignature { signer: owner0 });
    // Replay of an accepted command.
    let m = w.config(
        0,
        target,
        Command::SetClasses {
            default_class: 2,
            max_class: 4,
        },
    );
    assert_eq!(
        w.engine.handle_message(NOW, &m),
        Ok(Event::ClassesSet(w.out_key(0)))
    );
    let seq = w.seq;
    rejected(
        &mut w,
        &m,
        EngineError::Replayed {
            lease: target,
            seq,
            last: seq,
        },
    );
    // Unknown lease.
    let m = w.config(0, LeaseId([0xee; 16]), Command::Release);
    rejected(&mut w, &m, EngineError::UnknownLease(LeaseId([0xee; 16])));
    // Not started yet.
    let future = lease_for(&w, 0x7b, NOW.0 + 50, NOW.0 + 100);
    let m = Message::Lease(future).emit_signed(&w.node).unwrap();
    assert!(w.engine.handle_message(NOW, &m).is_ok());
    let m = w.config(0, future.id, Command::Attach { network: 1 });
    rejected(
        &mut w,
        &m,
        EngineError::NotStarted {
            lease: future.id,
            start: NOW.0 + 50,
            now: NOW.0,
        },
    );
    // Expired: the same command after the end is refused, and the lease is gone.
    let before = w.engine.snapshot().clone();
    assert_eq!(
        w.engine.handle_message(UnixTime(NOW.0 + 100), &m),
        Err(EngineError::UnknownLease(future.id))
    );
    let future_key = LeaseKey::new(w.node.public(), future.id);
    assert!(!w.engine.snapshot().leases.contains_key(&future_key));
    assert_ne!(w.engine.snapshot(), &before); // (time passing removed it, not the message)
}

#[test]
fn classes_map_header_classes_into_the_lease_band() {
    let mut w = World::new(&[100_000]);
    let now = Nanos(1);
    assert_eq!(
        w.engine.classify(now, in_if(0), OUT_IF, 100, UNCLASSED),
        Priority::in_lease(0)
    );
    assert_eq!(
        w.engine.classify(now, in_if(0), OUT_IF, 100, 9),
        Priority::in_lease(9)
    );
    let m = w.config(
        0,
        w.out_ids[0],
        Command::SetClasses {
            default_class: 2,
            max_class: 4,
        },
    );
    w.engine.handle_message(NOW, &m).unwrap();
    assert_eq!(
        w.engine.classify(now, in_if(0), OUT_IF, 100, UNCLASSED),
        Priority::in_lease(2)
    );
    assert_eq!(
        w.engine.classify(now, in_if(0), OUT_IF, 100, 9),
        Priority::in_lease(4)
    );
    assert_eq!(
        w.engine.classify(now, in_if(0), OUT_IF, 100, 3),
        Priority::in_lease(3)
    );
    // Other pairs, and out-of-range interfaces, ride the free tier.
    assert_eq!(
        w.engine.classify(now, OUT_IF, in_if(0), 100, 3),
        Priority::FREE
    );
    assert_eq!(w.engine.classify(now, 9999, OUT_IF, 100, 3), Priority::FREE);
}

#[test]
fn transfer_hands_over_control_and_release_ends_enforcement() {
    let mut w = World::new(&[1000, 1000]);
    let (out, out_key) = (w.out_ids[0], w.out_key(0));
    let new_owner = w.owners[1].public();
    let m = w.config(0, out, Command::Transfer { new_owner });
    assert_eq!(
        w.engine.handle_message(NOW, &m),
        Ok(Event::Transferred {
            lease: out_key,
            new_owner
        })
    );
    assert_eq!(w.engine.snapshot().leases[&out_key].lease.owner, new_owner);
    // The old owner no longer controls it; the new owner does.
    let m = w.config(0, out, Command::Release);
    assert!(matches!(
        w.engine.handle_message(NOW, &m),
        Err(EngineError::WrongOwner { .. })
    ));
    // The virtual switch of owner 0 no longer connects it (owners differ): free tier now.
    assert_eq!(
        w.engine.classify(Nanos(1), in_if(0), OUT_IF, 100, 0),
        Priority::FREE
    );
    // Re-sending the original lease message does not undo the transfer.
    let mut original = w.engine.snapshot().leases[&out_key].lease;
    original.owner = w.owners[0].public();
    let m = Message::Lease(original).emit_signed(&w.node).unwrap();
    assert_eq!(
        w.engine.handle_message(NOW, &m),
        Ok(Event::AlreadyKnown(out_key))
    );
    assert_eq!(w.engine.snapshot().leases[&out_key].lease.owner, new_owner);
    // Owner 1 releases its own lease: enforcement of it stops.
    assert!(w
        .engine
        .classify(Nanos(1), in_if(1), OUT_IF, 100, 0)
        .is_in_lease());
    let m = w.config(1, w.out_ids[1], Command::Release);
    assert_eq!(
        w.engine.handle_message(NOW, &m),
        Ok(Event::Released(w.out_key(1)))
    );
    assert_eq!(
        w.engine.classify(Nanos(2), in_if(1), OUT_IF, 100, 0),
        Priority::FREE
    );
}

#[test]
fn leases_end_on_time() {
    let mut w = World::new(&[1000]);
    assert!(w
        .engine
        .classify(Nanos(1), in_if(0), OUT_IF, 100, 0)
        .is_in_lease());
    let end = w.engine.poll_timeout().unwrap();
    assert_eq!(end, UnixTime(NOW.0 + 3600));
    w.engine.handle_timeout(UnixTime(end.0 - 1));
    assert!(w
        .engine
        .classify(Nanos(2), in_if(0), OUT_IF, 100, 0)
        .is_in_lease());
    w.engine.handle_timeout(end);
    assert_eq!(
        w.engine.classify(Nanos(3), in_if(0), OUT_IF, 100, 0),
        Priority::FREE
    );
    assert!(w.engine.snapshot().leases.is_empty());
}

#[test]
fn two_networks_cannot_share_an_interface_pair() {
    // Owner 1 also leases the link from holder 0's upstream node and asks its virtual switch to
    // connect it to its out-lease: same arrival and next-hop interfaces as holder 0's network.
    let mut w = World::new(&[1000, 1000]);
    let up0 = &w.ups[0];
    let in2 = Lease {
        id: LeaseId([0x55; 16]),
        node: up0.public(),
        peer: *w.node_key.public_key().as_bytes(),
        kbps: 1000,
        start: UnixTime(NOW.0 - 10),
        end: UnixTime(NOW.0 + 3600),
        owner: w.owners[1].public(),
    };
    let m = Message::Lease(in2).emit_signed(up0).unwrap();
    w.engine.handle_message(NOW, &m).unwrap();
    let vs = VirtualSwitchLease {
        id: LeaseId([0x56; 16]),
        node: w.node.public(),
        owner: w.owners[1].public(),
        start: in2.start,
        end: in2.end,
        ins: vec![in2.id],
        outs: vec![w.out_ids[1]],
    };
    let m = Message::VirtualSwitch(vs).emit_signed(&w.node).unwrap();
    w.engine.handle_message(NOW, &m).unwrap();
    let m = w.config(1, in2.id, Command::Attach { network: 101 });
    w.engine.handle_message(NOW, &m).unwrap();
    // The last step would put (in_if(0), OUT_IF) into two networks.
    let m = w.config(1, LeaseId([0x56; 16]), Command::Attach { network: 101 });
    rejected(&mut w, &m, EngineError::PairInUse(LeaseId([0x56; 16])));
    assert!(w
        .engine
        .classify(Nanos(1), in_if(0), OUT_IF, 100, 0)
        .is_in_lease());
}

#[test]
fn messages_round_trip_through_the_wire_format() {
    let w = World::new(&[1000]);
    let m = Message::Lease(lease_for(&w, 1, 0, 9));
    let bytes = m.emit_signed(&w.node).unwrap();
    let (back, sig) = Message::parse(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.emit_with_signature(&sig).unwrap(), bytes);
}

#[test]
fn memory_is_bounded() {
    let (_, node) = signer(1);
    let config = EngineConfig {
        max_interfaces: u16::MAX,
        max_leases: 1,
        ..EngineConfig::default()
    };
    let mut e = LeaseEngine::new(node.public(), config);
    assert_eq!(e.classify(Nanos(1), 2000, 3, 100, 0), Priority::FREE);
    // One lease fits, the second does not.
    let (q, _) = signer(2);
    let mut lease = Lease {
        id: LeaseId([1; 16]),
        node: node.public(),
        peer: *q.public_key().as_bytes(),
        kbps: 1,
        start: UnixTime(0),
        end: UnixTime(NOW.0 + 1),
        owner: node.public(),
    };
    let m = Message::Lease(lease).emit_signed(&node).unwrap();
    assert!(e.handle_message(NOW, &m).is_ok());
    lease.id = LeaseId([2; 16]);
    let m = Message::Lease(lease).emit_signed(&node).unwrap();
    assert_eq!(e.handle_message(NOW, &m), Err(EngineError::TableFull));
}

#[test]
fn a_virtual_network_across_two_nodes() {
    // A → N1 → N2 → B, all three links and both virtual switches held by one owner. The lease on
    // N1 → N2 is N1's out-lease and N2's in-lease: the same signed bytes go to both nodes.
    let (a_k, a) = signer(50);
    let (n1_k, n1) = signer(51);
    let (n2_k, n2) = signer(52);
    let (b_k, _) = signer(53);
    let (_, owner) = signer(54);
    let span = (UnixTime(NOW.0 - 1), UnixTime(NOW.0 + 60));
    let link = |id: u8,
                from: &pktmesh_lease_engine::sign::Signer,
                to: &pktmesh_crypto_auth::PrivateKey| Lease {
        id: LeaseId([id; 16]),
        node: from.public(),
        peer: *to.public_key().as_bytes(),
        kbps: 5000,
        start: span.0,
        end: span.1,
        owner: owner.public(),
    };
    let (l1, l2, l3) = (link(1, &a, &n1_k), link(2, &n1, &n2_k), link(3, &n2, &b_k));
    let vs = |id: u8, node: &pktmesh_lease_engine::sign::Signer, i: LeaseId, o: LeaseId| {
        VirtualSwitchLease {
            id: LeaseId([id; 16]),
            node: node.public(),
            owner: owner.public(),
            start: span.0,
            end: span.1,
            ins: vec![i],
            outs: vec![o],
        }
    };
    let (vs1, vs2) = (vs(4, &n1, l1.id, l2.id), vs(5, &n2, l2.id, l3.id));
    let m_l1 = Message::Lease(l1).emit_signed(&a).unwrap();
    let m_l2 = Message::Lease(l2).emit_signed(&n1).unwrap();
    let m_l3 = Message::Lease(l3).emit_signed(&n2).unwrap();
    let m_vs1 = Message::VirtualSwitch(vs1.clone())
        .emit_signed(&n1)
        .unwrap();
    let m_vs2 = Message::VirtualSwitch(vs2.clone())
        .emit_signed(&n2)
        .unwrap();
    let attach = |seq: u64, id: LeaseId| {
        let c = Config {
            target: id,
            signer: owner.public(),
            seq,
            command: Command::Attach { network: 9 },
        };
        Message::Config(c).emit_signed(&owner).unwrap()
    };

    let mut e1 = LeaseEngine::new(n1.public(), EngineConfig::default());
    e1.peer_up(a_k.public_key(), 1);
    e1.peer_up(n2_k.public_key(), 2);
    let mut e2 = LeaseEngine::new(n2.public(), EngineConfig::default());
    e2.peer_up(n1_k.public_key(), 1);
    e2.peer_up(b_k.public_key(), 2);

    for m in [&m_l1, &m_l2, &m_vs1] {
        e1.handle_message(NOW, m).unwrap();
    }
    for m in [&m_l2, &m_l3, &m_vs2] {
        e2.handle_message(NOW, m).unwrap();
    }
    // Each node refuses what does not concern it.
    assert_eq!(
        e1.handle_message(NOW, &m_l3),
        Err(EngineError::NotForThisNode(l3.id))
    );
    assert_eq!(
        e2.handle_message(NOW, &m_l1),
        Err(EngineError::NotForThisNode(l1.id))
    );
    assert_eq!(
        e1.handle_message(NOW, &m_vs2),
        Err(EngineError::NotForThisNode(vs2.id))
    );

    let now = Nanos(1);
    assert_eq!(e1.classify(now, 1, 2, 100, 0), Priority::FREE);
    for (seq, id) in [(1, l1.id), (2, l2.id), (3, vs1.id)] {
        e1.handle_message(NOW, &attach(seq, id)).unwrap();
    }
    for (seq, id) in [(2, l2.id), (3, l3.id), (4, vs2.id)] {
        e2.handle_message(NOW, &attach(seq, id)).unwrap();
    }
    assert!(e1.classify(now, 1, 2, 100, 0).is_in_lease());
    assert!(e2.classify(now, 1, 2, 100, 0).is_in_lease());
    // The reverse direction is not leased: free tier.
    assert_eq!(e1.classify(now, 2, 1, 100, 0), Priority::FREE);
    assert_eq!(e2.classify(now, 2, 1, 100, 0), Priority::FREE);

    // Flows merge: a flooder F on N1's interface 3 sends to B too, so at N2 both flows arrive
    // from N1. N1 tags what it classified and N2 follows the tag, not the interface pair.
    let (f_k, _) = signer(55);
    e1.peer_up(f_k.public_key(), 3);
    let customer = e1.classify_packet(now, 1, 2, 100, 0);
    assert!(customer.priority.is_in_lease());
    assert_eq!(customer.traffic_class, tagged(network_tag(9), 0));
    let flood = e1.classify_packet(now, 3, 2, 100, 0);
    assert_eq!(flood.priority, Priority::FREE);
    assert_eq!(flood.traffic_class, tagged(FREE_TAG, 0));
    let at_n2 = e2.classify_packet(now, 1, 2, 100, customer.traffic_class);
    assert!(at_n2.priority.is_in_lease());
    assert_eq!(
        at_n2.traffic_class, customer.traffic_class,
        "forwarded unchanged"
    );
    let flood_at_n2 = e2.classify_packet(now, 1, 2, 100, flood.traffic_class);
    assert_eq!(flood_at_n2.priority, Priority::FREE);
    // A stock cjdns switch between them erases the tag (0xFFFF): N2 falls back to the pair.
    assert!(e2.classify(now, 1, 2, 100, UNCLASSED).is_in_lease());
    // Another network's tag on this port is not this lease's traffic.
    let other = tagged(network_tag(10), 3);
    assert_eq!(e2.classify(now, 1, 2, 100, other), Priority::FREE);
    // The class travels in the tag and maps into the lease band.
    assert_eq!(
        e2.classify(now, 1, 2, 100, tagged(network_tag(9), 5)),
        Priority::in_lease(5)
    );
    // A port without leases leaves the value alone.
    let untouched = e1.classify_packet(now, 2, 3, 100, UNCLASSED);
    assert_eq!(untouched.traffic_class, UNCLASSED);

    // The first hop: A's own traffic (its router, interface 1) rides A's attached out-lease
    // A → N1 and is tagged there; transit traffic that A forwards on the same port (here from
    // interface 3) is marked free, so N1 cannot take it for the customer's.
    let mut ea = LeaseEngine::new(a.public(), EngineConfig::default());
    ea.set_local_interface(Some(1));
    ea.peer_up(n1_k.public_key(), 2);
    ea.peer_up(f_k.public_key(), 3);
    ea.handle_message(NOW, &m_l1).unwrap();
    assert_eq!(
        ea.classify(now, 1, 2, 100, 0),
        Priority::FREE,
        "not attached yet"
    );
    ea.handle_message(NOW, &attach(1, l1.id)).unwrap();
    let own = ea.classify_packet(now, 1, 2, 100, 0);
    assert!(own.priority.is_in_lease());
    assert_eq!(own.traffic_class, tagged(network_tag(9), 0));
    let transit = ea.classify_packet(now, 3, 2, 100, 0);
    assert_eq!(transit.priority, Priority::FREE);
    assert_eq!(transit.traffic_class, tagged(FREE_TAG, 0));
    // At N1 the tag decides, whatever link the packet came in on.
    assert!(e1.classify(now, 1, 2, 100, own.traffic_class).is_in_lease());
    assert_eq!(
        e1.classify(now, 1, 2, 100, transit.traffic_class),
        Priority::FREE
    );
    // Without a local interface the node does not classify its own traffic.
    ea.set_local_interface(None);
    assert_eq!(ea.classify(now, 1, 2, 100, 0), Priority::FREE);
}

/// Tags are small public numbers, so a tag counts only on a packet that arrives over a link its
/// network holds into the node. Every way to forge one: from another interface (a peer with no
/// lease), after the lease ended, and the tag of a network whose lease is on another link.
#[test]
fn forged_network_tags_are_free_tier() {
    let (a_k, a) = signer(60);
    let (n1_k, n1) = signer(61);
    let (b_k, _) = signer(62);
    let (c_k, _) = signer(63);
    let (thief_k, _) = signer(64);
    let (_, owner) = signer(65);
    let span = (UnixTime(NOW.0 - 1), UnixTime(NOW.0 + 60));
    let link = |id: u8,
                from: &pktmesh_lease_engine::sign::Signer,
                to: &pktmesh_crypto_auth::PrivateKey,
                end: UnixTime| Lease {
        id: LeaseId([id; 16]),
        node: from.public(),
        peer: *to.public_key().as_bytes(),
        kbps: 5000,
        start: span.0,
        end,
        owner: owner.public(),
    };
    // Network 9: A → N1 → B. Network 10 (same owner): only an out-lease N1 → C.
    let (l1, l2, l3) = (
        link(1, &a, &n1_k, span.1),
        link(2, &n1, &b_k, span.1),
        link(3, &n1, &c_k, UnixTime(NOW.0 + 5)),
    );
    let vs = VirtualSwitchLease {
        id: LeaseId([4; 16]),
        node: n1.public(),
        owner: owner.public(),
        start: span.0,
        end: span.1,
        ins: vec![l1.id],
        outs: vec![l2.id],
    };
    let mut e = LeaseEngine::new(n1.public(), EngineConfig::default());
    for (key, interface) in [(&a_k, 1), (&b_k, 2), (&c_k, 3), (&thief_k, 4)] {
        e.peer_up(key.public_key(), interface);
    }
    e.handle_message(NOW, &Message::Lease(l1).emit_signed(&a).unwrap())
        .unwrap();
    for m in [
        Message::Lease(l2),
        Message::Lease(l3),
        Message::VirtualSwitch(vs.clone()),
    ] {
        e.handle_message(NOW, &m.emit_signed(&n1).unwrap()).unwrap();
    }
    let attach = |seq: u64, id: LeaseId, network: u64| {
        let c = Config {
            target: id,
            signer: owner.public(),
            seq,
            command: Command::Attach { network },
        };
        Message::Config(c).emit_signed(&owner).unwrap()
    };
    for (seq, id, net) in [(1, l1.id, 9), (2, l2.id, 9), (3, vs.id, 9), (4, l3.id, 10)] {
        e.handle_message(NOW, &attach(seq, id, net)).unwrap();
    }
    let now = Nanos(1);
    let tag9 = tagged(network_tag(9), 2);
    // The real holder's tagged traffic, from A: in its lease, forwarded unchanged.
    let real = e.classify_packet(now, 1, 2, 100, tag9);
    assert!(real.priority.is_in_lease());
    assert_eq!(real.traffic_class, tag9);
    // 1. The same tag from a peer that holds no lease into N1: free tier, and re-marked free
    //    so that the next switch (where N1 → B *is* the network's link) does not honour it.
    let forged = e.classify_packet(now, 4, 2, 100, tag9);
    assert_eq!(forged.priority, Priority::FREE);
    assert_eq!(forged.traffic_class, tagged(FREE_TAG, 2));
    // From B, the network's out-link: not a way in either.
    assert_eq!(e.classify(now, 2, 2, 100, tag9), Priority::FREE);
    // 2. The tag of network 10, whose lease leaves on interface 3, on a packet to B.
    let tag10 = tagged(network_tag(10), 0);
    assert_eq!(e.classify(now, 1, 2, 100, tag10), Priority::FREE);
    // ... and to C, where network 10 has its lease but no link into N1: still free tier.
    let to_c = e.classify_packet(now, 4, 3, 100, tag10);
    assert_eq!(to_c.priority, Priority::FREE);
    assert_eq!(to_c.traffic_class, tagged(FREE_TAG, 0));
    assert_eq!(e.forged_tags(), 4);
    // 3. After the lease ends, its tag is worth nothing on any link.
    e.handle_timeout(UnixTime(NOW.0 + 61));
    let late = e.classify_packet(now, 1, 2, 100, tag9);
    assert_eq!(late.priority, Priority::FREE);
    assert_eq!(late.traffic_class, tagged(FREE_TAG, 2));
    assert_eq!(e.forged_tags(), 5);
}
