//! Test helpers: a line (or any graph) of simulated cjdns switches whose nodes announce their
//! peers to a route server.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "server")]
pub mod http;

use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_route_server::announce::{
    AnnounceSigner, AnnouncementRepr, EntityRepr, LeaseOffer, LinkCapacity, LinkSample,
    LinkStateRepr, PeerRepr, CURRENT_VERSION,
};
use pktmesh_switch::{EncodingScheme, Label, SwitchCore};

/// A node with a switch and a cjdns identity.
pub struct SimNode {
    pub key: PrivateKey,
    pub address: Address,
    pub switch: SwitchCore,
    /// (slot, peer node index, peer's slot back to us)
    pub ports: Vec<(u16, usize, u16)>,
}

/// Deterministic private keys whose addresses are in fc00::/8.
pub fn key(seed: u32) -> PrivateKey {
    for i in 0u32..1_000_000 {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&seed.to_be_bytes());
        b[4..8].copy_from_slice(&i.to_be_bytes());
        let k = PrivateKey::from_bytes(b);
        if k.public_key().address().is_valid() {
            return k;
        }
    }
    unreachable!("no fc key found")
}

pub struct Net {
    pub nodes: Vec<SimNode>,
}

impl Net {
    pub fn new(n: usize) -> Self {
        Self {
            nodes: (0..n)
                .map(|i| {
                    let key = key(i as u32);
                    SimNode {
                        address: key.public_key().address(),
                        key,
                        switch: SwitchCore::new(EncodingScheme::v358()),
                        ports: Vec::new(),
                    }
                })
                .collect(),
        }
    }

    /// Occupies `count` slots on node `i` (interfaces to peers we do not model).
    pub fn dummies(&mut self, i: usize, count: usize) {
        for _ in 0..count {
            self.nodes[i].switch.add_interface().unwrap();
        }
    }

    pub fn link(&mut self, a: usize, b: usize) {
        let (sa, _) = self.nodes[a].switch.add_interface().unwrap();
        let (sb, _) = self.nodes[b].switch.add_interface().unwrap();
        self.nodes[a].ports.push((sa, b, sb));
        self.nodes[b].ports.push((sb, a, sa));
    }

    /// Label from node `a` to its peer `b`.
    pub fn hop_label(&self, a: usize, b: usize) -> Label {
        let (slot, _, _) = self.nodes[a].ports.iter().find(|p| p.1 == b).unwrap();
        EncodingScheme::v358()
            .label_for_interface(u32::from(*slot))
            .unwrap()
    }

    /// The pktmesh entities of node `i`: on each of its links, `capacity` kbit/s and an offer
    /// of up to `offer` kbit/s per lease for a day.
    pub fn capacity_entities(&self, i: usize, capacity: u32, offer: u32) -> Vec<EntityRepr> {
        let mut out = Vec::new();
        for &(_, peer, _) in &self.nodes[i].ports {
            let num = (self.hop_label(i, peer).bits() & 0xffff) as u16;
            out.push(EntityRepr::LinkCapacity(LinkCapacity {
                peer_num: num,
                flags: 0,
                capacity_kbps: capacity,
                leased_kbps: 0,
            }));
            out.push(EntityRepr::LeaseOffer(LeaseOffer {
                peer_num: num,
                kbps: offer,
                max_seconds: 86_400,
                price_msat_per_mbit_hour: 5,
            }));
        }
        out
    }

    /// Node `i`'s announcement listing all its peers (with optional link state).
    pub fn announcement(
        &self,
        i: usize,
        snode: Address,
        ts: u64,
        reset: bool,
        lag: Option<u16>,
    ) -> Vec<u8> {
        self.announcement_with(i, snode, ts, reset, lag, Vec::new())
    }

    /// Like [`Net::announcement`] with extra entities at the end.
    pub fn announcement_with(
        &self,
        i: usize,
        snode: Address,
        ts: u64,
        reset: bool,
        lag: Option<u16>,
        extra: Vec<EntityRepr>,
    ) -> Vec<u8> {
        let scheme = EncodingScheme::v358();
        let mut entities = vec![EntityRepr::Version(22), EntityRepr::EncodingScheme(scheme)];
        for &(_, peer, _) in &self.nodes[i].ports {
            let mine = self.hop_label(i, peer);
            let theirs = self.hop_label(peer, i);
            entities.push(EntityRepr::Peer(PeerRepr {
                encoding_form: scheme.form_index(mine.bits()).unwrap() as u8,
                flags: 0,
                mtu8: 1280 / 8,
                peer_num: (mine.bits() & 0xffff) as u16,
                unused: 0xffff_ffff,
                ip: self.nodes[peer].address,
                label: theirs.bits() as u32,
            }));
            if let Some(lag) = lag {
                entities.push(EntityRepr::LinkState(LinkStateRepr {
                    node_id: (mine.bits() & 0xffff) as u16,
                    start_slot: 0,
                    samples: vec![
                        LinkSample {
                            lag,
                            drops: 0,
                            kb_recv: 100,
                        };
                        3
                    ],
                }));
            }
        }
        entities.extend(extra);
        AnnouncementRepr {
            snode_ip: snode,
            timestamp_ms: ts,
            reset,
            version: CURRENT_VERSION,
            entities,
        }
        .emit_signed(&AnnounceSigner::from_cjdns(&self.nodes[i].key))
        .unwrap()
    }

    /// Sends a packet with `label` from node `from` through the switches; returns the node
    /// where it reaches the router slot, and the hops taken.
    pub fn deliver(&self, from: usize, label: Label) -> Option<(usize, Vec<usize>)> {
        let mut packet = [0u8; 64];
        packet[..8].copy_from_slice(&label.bits().to_be_bytes());
        packet[9] = 1 << 6;
        let mut at = from;
        let mut slot = 1u16;
        let mut path = vec![from];
        for _ in 0..64 {
            match self.nodes[at].switch.forward(slot, &mut packet) {
                pktmesh_switch::Forward::Deliver { to: 1 } => return Some((at, path)),
                pktmesh_switch::Forward::Deliver { to } => {
                    let &(_, peer, back) = self.nodes[at].ports.iter().find(|p| p.0 == to)?;
                    at = peer;
                    slot = back;
                    path.push(at);
                }
                _ => return None,
            }
        }
        None
    }
}
