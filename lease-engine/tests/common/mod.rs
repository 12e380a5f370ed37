//! Shared test fixtures: a node N with three leaseholders connected through virtual switches.
#![allow(dead_code, unreachable_pub)]

pub mod png;

use pktmesh_crypto_auth::PrivateKey;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Command, Config, Lease, Message, VirtualSwitchLease};
use pktmesh_lease_engine::{EngineConfig, Event, LeaseEngine, LeaseId, LeaseKey, UnixTime};

/// Wall-clock time of the fixtures.
pub const NOW: UnixTime = UnixTime(1_800_000_000);
/// Interface of the downstream peer Q all leased traffic goes to.
pub const OUT_IF: u16 = 10;
/// Interface of a peer with no lease (free-tier traffic arrives here).
pub const FREE_IF: u16 = 9;

pub fn signer(seed: u8) -> (PrivateKey, Signer) {
    let mut b = [seed; 32];
    b[0] = 0x42;
    let k = PrivateKey::from_bytes(b);
    let s = Signer::from_cjdns(&k);
    (k, s)
}

pub struct World {
    pub engine: LeaseEngine,
    pub node: Signer,
    pub node_key: PrivateKey,
    pub owners: Vec<Signer>,
    pub ups: Vec<Signer>,
    pub in_ids: Vec<LeaseId>,
    pub out_ids: Vec<LeaseId>,
    pub vs_ids: Vec<LeaseId>,
    pub seq: u64,
}

/// Arrival interface of leaseholder `i`.
pub fn in_if(i: usize) -> u16 {
    2 + i as u16
}

impl World {
    /// Node N, downstream Q, and one leaseholder per entry of `kbps`, each with an in-lease from
    /// its upstream node, an out-lease N → Q of that rate and a virtual switch at N, all attached
    /// to the holder's network — every step through signed messages.
    pub fn new(kbps: &[u32]) -> Self {
        let (node_key, node) = signer(1);
        let (q_key, _) = signer(2);
        let mut engine = LeaseEngine::new(node.public(), EngineConfig::default());
        engine.peer_up(q_key.public_key(), OUT_IF);
        let (_, free_peer) = signer(3);
        engine.peer_up(free_peer.public().cjdns_key().unwrap(), FREE_IF);
        let mut w = Self {
            engine,
            node,
            node_key,
            owners: vec![],
            ups: vec![],
            in_ids: vec![],
            out_ids: vec![],
            vs_ids: vec![],
            seq: 0,
        };
        for (i, &rate) in kbps.iter().enumerate() {
            let (up_key, up) = signer(10 + i as u8);
            let (_, owner) = signer(20 + i as u8);
            w.engine.peer_up(up_key.public_key(), in_if(i));
            let in_id = LeaseId([0x10 + i as u8; 16]);
            let out_id = LeaseId([0x20 + i as u8; 16]);
            let vs_id = LeaseId([0x30 + i as u8; 16]);
            let in_lease = Lease {
                id: in_id,
                node: up.public(),
                peer: *w.node_key.public_key().as_bytes(),
                kbps: rate,
                start: UnixTime(NOW.0 - 10),
                end: UnixTime(NOW.0 + 3600),
                owner: owner.public(),
            };
            let out_lease = Lease {
                id: out_id,
                node: w.node.public(),
                peer: *q_key.public_key().as_bytes(),
                ..in_lease
            };
            let vs = VirtualSwitchLease {
                id: vs_id,
                node: w.node.public(),
                owner: owner.public(),
                start: in_lease.start,
                end: in_lease.end,
                ins: vec![in_id],
                outs: vec![out_id],
            };
            let m = Message::Lease(in_lease).emit_signed(&up).unwrap();
            assert_eq!(
                w.engine.handle_message(NOW, &m),
                Ok(Event::LeaseAdded(LeaseKey::new(up.public(), in_id)))
            );
            let m = Message::Lease(out_lease).emit_signed(&w.node).unwrap();
            assert_eq!(
                w.engine.handle_message(NOW, &m),
                Ok(Event::LeaseAdded(LeaseKey::new(w.node.public(), out_id)))
            );
            let m = Message::VirtualSwitch(vs).emit_signed(&w.node).unwrap();
            assert_eq!(
                w.engine.handle_message(NOW, &m),
                Ok(Event::VirtualSwitchAdded(LeaseKey::new(
                    w.node.public(),
                    vs_id
                )))
            );
            w.owners.push(owner);
            w.ups.push(up);
            w.in_ids.push(in_id);
            w.out_ids.push(out_id);
            w.vs_ids.push(vs_id);
            for id in [in_id, out_id, vs_id] {
                let m = w.config(
                    i,
                    id,
                    Command::Attach {
                        network: 100 + i as u64,
                    },
                );
                assert!(matches!(
                    w.engine.handle_message(NOW, &m),
                    Ok(Event::Attached { .. })
                ));
            }
        }
        w
    }

    /// Holder `i`'s in-lease (issued by its upstream node).
    pub fn in_key(&self, i: usize) -> LeaseKey {
        LeaseKey::new(self.ups[i].public(), self.in_ids[i])
    }

    /// Holder `i`'s out-lease (issued by N).
    pub fn out_key(&self, i: usize) -> LeaseKey {
        LeaseKey::new(self.node.public(), self.out_ids[i])
    }

    /// Holder `i`'s virtual switch (issued by N).
    pub fn vs_key(&self, i: usize) -> LeaseKey {
        LeaseKey::new(self.node.public(), self.vs_ids[i])
    }

    /// A configuration message from owner `i`, with the next sequence number.
    pub fn config(&mut self, i: usize, target: LeaseId, command: Command) -> Vec<u8> {
        self.seq += 1;
        let c = Config {
            target,
            signer: self.owners[i].public(),
            seq: self.seq,
            command,
        };
        Message::Config(c).emit_signed(&self.owners[i]).unwrap()
    }
}
