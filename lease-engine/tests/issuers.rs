//! Issue 23 (engine part): leases are keyed by (issuer, id), a node takes leases into itself
//! only from its peers and only so many from each, and a reused id can deny, never steal.
//!
//! The attacker throughout is a peer M of node N (interface [`THIEF_IF`]) that signs leases on
//! its link M → N reusing the ids of holder 0's leases, owned by its own key or by holder 0's.

mod common;

use common::{in_if, signer, World, NOW, OUT_IF};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Command, Config, Lease, Message};
use pktmesh_lease_engine::{
    EngineConfig, EngineError, Event, LeaseEngine, LeaseId, LeaseKey, Nanos, Priority, UnixTime,
};

/// Interface of the attacking peer M.
const THIEF_IF: u16 = 7;

/// The attacker: M's signer (a peer of N once [`World::thief`] has run) and the key of its own
/// lease owner.
struct Thief {
    node: Signer,
    owner: Signer,
}

impl World {
    fn thief(&mut self) -> Thief {
        let (m_key, node) = signer(40);
        let (_, owner) = signer(41);
        self.engine.peer_up(m_key.public_key(), THIEF_IF);
        Thief { node, owner }
    }

    /// A lease from `from` into N with `id`, owned by `owner`, ending at `end`.
    fn lease_into(&self, from: &Signer, id: LeaseId, owner: &Signer, end: u64) -> Vec<u8> {
        let lease = Lease {
            id,
            node: from.public(),
            peer: *self.node_key.public_key().as_bytes(),
            kbps: 1000,
            start: UnixTime(NOW.0 - 10),
            end: UnixTime(end),
            owner: owner.public(),
        };
        Message::Lease(lease).emit_signed(from).unwrap()
    }

    /// Whether M's traffic towards the holders' out-link is free tier (probed on a copy).
    fn thief_is_free(&self) -> bool {
        let mut probe = self.engine.clone();
        probe.classify(Nanos(1), THIEF_IF, OUT_IF, 100, 0) == Priority::FREE
    }

    fn holder_in_lease(&self, i: usize) -> bool {
        let mut probe = self.engine.clone();
        probe
            .classify(Nanos(1), in_if(i), OUT_IF, 100, 0)
            .is_in_lease()
    }
}

/// A configuration command signed by `by`, which names itself.
fn command(by: &Signer, target: LeaseId, seq: u64, command: Command) -> Vec<u8> {
    let c = Config {
        target,
        signer: by.public(),
        seq,
        command,
    };
    Message::Config(c).emit_signed(by).unwrap()
}

/// Sends `bytes`, expects `error`, and checks that nothing changed.
fn rejected(engine: &mut LeaseEngine, bytes: &[u8], error: EngineError) {
    let before = engine.snapshot().clone();
    assert_eq!(engine.handle_message(NOW, bytes), Err(error.clone()));
    assert_eq!(engine.snapshot(), &before, "state changed after {error}");
    assert!(!error.to_string().is_empty());
}

#[test]
fn a_reused_id_from_another_issuer_is_a_separate_lease_and_the_victims_keeps_working() {
    let mut w = World::new(&[1000]);
    let m = w.thief();
    let victim_in = w.engine.snapshot().leases[&w.in_key(0)].clone();
    // M reuses both of holder 0's ids (in-lease and out-lease) for leases on its own link.
    for id in [w.in_ids[0], w.out_ids[0]] {
        let bytes = w.lease_into(&m.node, id, &m.owner, NOW.0 + 3600);
        assert_eq!(
            w.engine.handle_message(NOW, &bytes),
            Ok(Event::LeaseAdded(LeaseKey::new(m.node.public(), id)))
        );
    }
    let snap = w.engine.snapshot();
    assert_eq!(snap.leases_with_id(w.in_ids[0]).count(), 2);
    assert_eq!(snap.leases_with_id(w.out_ids[0]).count(), 2);
    assert_eq!(
        snap.leases[&w.in_key(0)],
        victim_in,
        "victim's lease changed"
    );
    assert!(w.holder_in_lease(0));
    // M attaches its lease to the victim's network: still not the victim's virtual switch
    // (another owner), so M's traffic stays free tier and the victim's keeps its lease.
    let attach = command(&m.owner, w.in_ids[0], 1, Command::Attach { network: 100 });
    assert_eq!(
        w.engine.handle_message(NOW, &attach),
        Ok(Event::Attached {
            lease: LeaseKey::new(m.node.public(), w.in_ids[0]),
            network: 100
        })
    );
    assert!(w.thief_is_free());
    assert!(w.holder_in_lease(0));

    // Sent first, a lease with an id the victim's issuer uses next does not block it.
    let next = LeaseId([0x99; 16]);
    let squat = w.lease_into(&m.node, next, &m.owner, NOW.0 + 3600);
    w.engine.handle_message(NOW, &squat).unwrap();
    let real = w.lease_into(&w.ups[0], next, &w.owners[0], NOW.0 + 3600);
    assert_eq!(
        w.engine.handle_message(NOW, &real),
        Ok(Event::LeaseAdded(LeaseKey::new(w.ups[0].public(), next)))
    );
    // The same issuer and id with other contents is still a conflict.
    let changed = w.lease_into(&w.ups[0], next, &w.owners[0], NOW.0 + 60);
    rejected(&mut w.engine, &changed, EngineError::IdConflict(next));
}

#[test]
fn configuration_applies_to_the_lease_its_signer_owns() {
    let mut w = World::new(&[1000]);
    let m = w.thief();
    let id = w.in_ids[0];
    let bytes = w.lease_into(&m.node, id, &m.owner, NOW.0 + 3600);
    w.engine.handle_message(NOW, &bytes).unwrap();
    let theirs = LeaseKey::new(m.node.public(), id);
    // Each owner's command reaches its own lease of that id, and only that one.
    let classes = Command::SetClasses {
        default_class: 3,
        max_class: 5,
    };
    assert_eq!(
        w.engine
            .handle_message(NOW, &command(&m.owner, id, 1, classes)),
        Ok(Event::ClassesSet(theirs))
    );
    let snap = w.engine.snapshot();
    assert_eq!(
        (
            snap.leases[&theirs].default_class,
            snap.leases[&theirs].max_class
        ),
        (3, 5)
    );
    assert_eq!(snap.leases[&w.in_key(0)].default_class, 0);
    let attach = command(&m.owner, id, 2, Command::Attach { network: 55 });
    w.engine.handle_message(NOW, &attach).unwrap();
    assert_eq!(w.engine.snapshot().leases[&w.in_key(0)].network, 100);
    let detach = w.config(0, id, Command::Attach { network: 0 });
    assert_eq!(
        w.engine.handle_message(NOW, &detach),
        Ok(Event::Attached {
            lease: w.in_key(0),
            network: 0
        })
    );
    assert_eq!(w.engine.snapshot().leases[&theirs].network, 55);
    assert!(!w.holder_in_lease(0), "the owner detached its own lease");
    // Someone who owns no lease of that id: WrongOwner, as before.
    let (_, stranger) = signer(42);
    let release = command(&stranger, id, 9, Command::Release);
    assert!(matches!(
        w.engine.handle_message(NOW, &release),
        Err(EngineError::WrongOwner { lease, signer, .. })
            if lease == id && signer == stranger.public()
    ));
}

#[test]
fn a_target_naming_two_of_the_signers_leases_is_refused() {
    let mut w = World::new(&[1000]);
    let m = w.thief();
    let id = w.in_ids[0];
    // M names holder 0 as the owner of its copy of the id.
    let bytes = w.lease_into(&m.node, id, &w.owners[0], NOW.0 + 3600);
    w.engine.handle_message(NOW, &bytes).unwrap();
    let owner0 = w.owners[0].public();
    let release = w.config(0, id, Command::Release);
    rejected(
        &mut w.engine,
        &release,
        EngineError::Ambiguous {
            lease: id,
            signer: owner0,
            count: 2,
        },
    );
    // Denied, not stolen: the virtual switch's in-lease id names two of the owner's leases, so
    // it connects neither; M's traffic stays free tier.
    assert!(!w.holder_in_lease(0));
    assert!(w.thief_is_free());
    // The owner's other leases still take commands.
    let out = w.out_ids[0];
    let classes = w.config(
        0,
        out,
        Command::SetClasses {
            default_class: 1,
            max_class: 15,
        },
    );
    assert_eq!(
        w.engine.handle_message(NOW, &classes),
        Ok(Event::ClassesSet(w.out_key(0)))
    );
}

#[test]
fn an_in_lease_id_naming_two_of_the_owners_leases_connects_neither() {
    let mut w = World::new(&[1000]);
    let m = w.thief();
    let id = w.in_ids[0];
    // The owner takes its in-lease out of the network for a while.
    let detach = w.config(0, id, Command::Attach { network: 0 });
    w.engine.handle_message(NOW, &detach).unwrap();
    assert!(!w.holder_in_lease(0));
    // M's copy of the id ends early. M attaches it to the owner's network and then hands it
    // to the owner: M's copy is now the only one of the owner's leases with that id attached.
    let bytes = w.lease_into(&m.node, id, &m.owner, NOW.0 + 100);
    w.engine.handle_message(NOW, &bytes).unwrap();
    let attach = command(&m.owner, id, 1, Command::Attach { network: 100 });
    w.engine.handle_message(NOW, &attach).unwrap();
    let new_owner = w.owners[0].public();
    let give = command(&m.owner, id, 2, Command::Transfer { new_owner });
    w.engine.handle_message(NOW, &give).unwrap();
    // Still the id names two of the owner's leases: the virtual switch connects neither, and
    // M's traffic does not ride the owner's out-lease.
    assert!(w.thief_is_free());
    assert!(!w.holder_in_lease(0));
    let attach = w.config(0, id, Command::Attach { network: 100 });
    assert!(matches!(
        w.engine.handle_message(NOW, &attach),
        Err(EngineError::Ambiguous { count: 2, .. })
    ));
    // Once M's copy is over, the id names one lease again and the owner attaches it.
    w.engine.handle_timeout(UnixTime(NOW.0 + 100));
    let attach = w.config(0, id, Command::Attach { network: 100 });
    assert_eq!(
        w.engine.handle_message(UnixTime(NOW.0 + 100), &attach),
        Ok(Event::Attached {
            lease: w.in_key(0),
            network: 100
        })
    );
    assert!(w.holder_in_lease(0));
    assert!(w.thief_is_free());
}

#[test]
fn leases_into_the_node_come_only_from_its_peers() {
    let mut w = World::new(&[1000]);
    let (s_key, stranger) = signer(43);
    let id = LeaseId([0x43; 16]);
    let bytes = w.lease_into(&stranger, id, &w.owners[0], NOW.0 + 3600);
    rejected(
        &mut w.engine,
        &bytes,
        EngineError::NotAPeer {
            lease: id,
            issuer: stranger.public(),
        },
    );
    w.engine.peer_up(s_key.public_key(), 8);
    assert_eq!(
        w.engine.handle_message(NOW, &bytes),
        Ok(Event::LeaseAdded(LeaseKey::new(stranger.public(), id)))
    );
    // A peer that goes down keeps the leases it issued (re-sent: already known), but issues
    // no new ones meanwhile.
    w.engine.peer_down(&s_key.public_key());
    assert_eq!(
        w.engine.handle_message(NOW, &bytes),
        Ok(Event::AlreadyKnown(LeaseKey::new(stranger.public(), id)))
    );
    let other = LeaseId([0x44; 16]);
    let more = w.lease_into(&stranger, other, &w.owners[0], NOW.0 + 3600);
    rejected(
        &mut w.engine,
        &more,
        EngineError::NotAPeer {
            lease: other,
            issuer: stranger.public(),
        },
    );
    // The node's own leases need no peer up: its agent signs them for established links,
    // which may be down for a moment.
    let (gone, _) = signer(44);
    let own = Lease {
        id: LeaseId([0x45; 16]),
        node: w.node.public(),
        peer: *gone.public_key().as_bytes(),
        kbps: 10,
        start: NOW,
        end: UnixTime(NOW.0 + 60),
        owner: w.owners[0].public(),
    };
    let bytes = Message::Lease(own).emit_signed(&w.node).unwrap();
    assert_eq!(
        w.engine.handle_message(NOW, &bytes),
        Ok(Event::LeaseAdded(LeaseKey::new(w.node.public(), own.id)))
    );
}

#[test]
fn one_issuer_cannot_fill_the_table() {
    let (node_key, node) = signer(1);
    let config = EngineConfig {
        max_leases: 8,
        max_leases_per_issuer: 2,
        ..EngineConfig::default()
    };
    let mut e = LeaseEngine::new(node.public(), config);
    let (p_key, p) = signer(2);
    let (q_key, q) = signer(3);
    e.peer_up(p_key.public_key(), 1);
    e.peer_up(q_key.public_key(), 2);
    let lease = |from: &Signer, to: &pktmesh_crypto_auth::PrivateKey, id: u8| {
        let l = Lease {
            id: LeaseId([id; 16]),
            node: from.public(),
            peer: *to.public_key().as_bytes(),
            kbps: 1,
            start: NOW,
            end: UnixTime(NOW.0 + 60),
            owner: from.public(),
        };
        Message::Lease(l).emit_signed(from).unwrap()
    };
    for id in [1, 2] {
        assert!(e.handle_message(NOW, &lease(&p, &node_key, id)).is_ok());
    }
    let before = e.snapshot().clone();
    assert_eq!(
        e.handle_message(NOW, &lease(&p, &node_key, 3)),
        Err(EngineError::IssuerFull {
            issuer: p.public(),
            max: 2
        })
    );
    assert_eq!(e.snapshot(), &before);
    // Another peer still gets in, and the node's own leases do not count against anyone.
    for id in [1, 2] {
        assert!(e.handle_message(NOW, &lease(&q, &node_key, id)).is_ok());
    }
    for id in [1, 2, 3] {
        assert!(e.handle_message(NOW, &lease(&node, &p_key, id)).is_ok());
    }
    assert_eq!(e.snapshot().leases.len(), 7);
    // The whole table stays bounded.
    assert!(e.handle_message(NOW, &lease(&node, &q_key, 4)).is_ok());
    assert_eq!(
        e.handle_message(NOW, &lease(&node, &q_key, 5)),
        Err(EngineError::TableFull)
    );
}

/// Holder 0's in-lease ends while its virtual switch (which lists the id) stays attached.
fn in_lease_gone(w: &mut World) {
    let release = w.config(0, w.in_ids[0], Command::Release);
    assert_eq!(
        w.engine.handle_message(NOW, &release),
        Ok(Event::Released(w.in_key(0)))
    );
    assert!(!w.holder_in_lease(0));
}

#[test]
fn attach_then_transfer_does_not_bring_a_copy_into_the_owners_network() {
    let mut w = World::new(&[1000]);
    let m = w.thief();
    let id = w.in_ids[0];
    in_lease_gone(&mut w);
    // M signs the id on its own link, attaches it to holder 0's network with its own key and
    // hands it to holder 0: the transfer detaches it.
    let bytes = w.lease_into(&m.node, id, &m.owner, NOW.0 + 3600);
    w.engine.handle_message(NOW, &bytes).unwrap();
    let classes = Command::SetClasses {
        default_class: 7,
        max_class: 15,
    };
    w.engine
        .handle_message(NOW, &command(&m.owner, id, 1, classes))
        .unwrap();
    let attach = command(&m.owner, id, 2, Command::Attach { network: 100 });
    w.engine.handle_message(NOW, &attach).unwrap();
    let new_owner = w.owners[0].public();
    let give = command(&m.owner, id, 3, Command::Transfer { new_owner });
    let theirs = LeaseKey::new(m.node.public(), id);
    assert_eq!(
        w.engine.handle_message(NOW, &give),
        Ok(Event::Transferred {
            lease: theirs,
            new_owner
        })
    );
    let r = &w.engine.snapshot().leases[&theirs];
    assert_eq!(
        (r.lease.owner, r.network, r.default_class, r.max_class),
        (new_owner, 0, 0, 15)
    );
    assert!(w.thief_is_free());
}

#[test]
fn the_owners_old_attach_does_not_apply_to_a_new_copy_of_the_id() {
    let mut w = World::new(&[1000]);
    let m = w.thief();
    let id = w.in_ids[0];
    // Holder 0 re-attaches its in-lease; the signed command is public (the route server).
    let attach = w.config(0, id, Command::Attach { network: 100 });
    let seq = w.seq;
    w.engine.handle_message(NOW, &attach).unwrap();
    in_lease_gone(&mut w);
    // M signs the id on its own link owned by holder 0 and replays the holder's attach: the
    // node remembers the holder's last sequence number for the id past the lease.
    let bytes = w.lease_into(&m.node, id, &w.owners[0], NOW.0 + 30 * 3600);
    w.engine.handle_message(NOW, &bytes).unwrap();
    let replayed = EngineError::Replayed {
        lease: id,
        seq,
        last: seq + 1,
    };
    rejected(&mut w.engine, &attach, replayed.clone());
    let r = &w.engine.snapshot().leases[&LeaseKey::new(m.node.public(), id)];
    assert_eq!((r.network, r.last_seq), (0, None));
    assert!(w.thief_is_free());
    // Nor does a later one, while the holder's virtual switch still lists the id.
    let later = UnixTime(NOW.0 + 3599);
    assert_eq!(w.engine.handle_message(later, &attach), Err(replayed));
}

#[test]
fn the_owner_reattaches_and_transfers_its_leases_as_before() {
    let mut w = World::new(&[1000, 1000]);
    let id = w.in_ids[0];
    // Detach, re-attach, change classes: each above the last.
    for command in [
        Command::Attach { network: 0 },
        Command::Attach { network: 100 },
        Command::SetClasses {
            default_class: 2,
            max_class: 9,
        },
    ] {
        let m = w.config(0, id, command);
        w.engine.handle_message(NOW, &m).unwrap();
    }
    assert!(w.holder_in_lease(0));
    // A new in-lease that reuses the id after the first is released: the owner configures it
    // with later sequence numbers (pktctl's default, milliseconds since the epoch, are).
    in_lease_gone(&mut w);
    let bytes = w.lease_into(&w.ups[0], LeaseId([0x50; 16]), &w.owners[0], NOW.0 + 3600);
    w.engine.handle_message(NOW, &bytes).unwrap();
    let again = w.lease_into(&w.ups[0], id, &w.owners[0], NOW.0 + 1800);
    assert_eq!(
        w.engine.handle_message(NOW, &again),
        Ok(Event::LeaseAdded(w.in_key(0)))
    );
    let attach = w.config(0, id, Command::Attach { network: 100 });
    assert_eq!(
        w.engine.handle_message(NOW, &attach),
        Ok(Event::Attached {
            lease: w.in_key(0),
            network: 100
        })
    );
    assert!(w.holder_in_lease(0));
    // Holder 0 hands its out-lease to holder 1, who attaches it to its own network: holder
    // 1's virtual switch now connects holder 1's in-lease to it.
    let out = w.out_ids[0];
    let new_owner = w.owners[1].public();
    let give = w.config(0, out, Command::Transfer { new_owner });
    w.engine.handle_message(NOW, &give).unwrap();
    assert_eq!(w.engine.snapshot().leases[&w.out_key(0)].network, 0);
    assert!(!w.holder_in_lease(0));
    let attach = w.config(1, out, Command::Attach { network: 101 });
    assert_eq!(
        w.engine.handle_message(NOW, &attach),
        Ok(Event::Attached {
            lease: w.out_key(0),
            network: 101
        })
    );
}
