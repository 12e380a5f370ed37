//! Shared set-up for the route-server fuzz targets (`rs_frame`, `rs_gossip`; `agent_replies`
//! and the seed generator take its keys): four nodes in a ring that announce each other with
//! capacities and offers, a lease book holding leases, a virtual switch, their configuration,
//! a network and an order along it, and the re-signing that lets mutated frames and
//! announcements past their signature checks.
#![allow(dead_code)]

use std::sync::OnceLock;

use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Command, Config, Lease, Message, VirtualSwitchLease};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_route_server::announce::{Announcement, AnnouncementRepr};
use pktmesh_route_server::leases::{
    ItemId, LeaseBook, LeaseState, Order, OrderState, VirtualNetwork, VirtualSwitchState,
    ORDER_LEN, ORDER_MAGIC, VNET_MAGIC,
};
use pktmesh_route_server::{AnnounceSigner, Graph, Origin};
use pktmesh_switch::EncodingScheme;
use pktmesh_tools::daemon::agent::{announcement, LinkSnapshot, OfferSettings, PeerLink};

/// The route server's clock, unix seconds.
pub const NOW: u64 = 1_800_000_000;
/// The same in milliseconds.
pub const NOW_MS: u64 = NOW * 1000;
/// Nodes in the ring.
pub const NODES: usize = 4;
/// When the fixture's announcements were made.
pub const ANN_MS: u64 = NOW_MS - 5_000;

/// One node of the ring.
pub struct RingNode {
    pub key: PrivateKey,
    pub address: Address,
    /// Its lease-engine signer (leases, virtual switches).
    pub lease: Signer,
    /// Its announcement signer.
    pub ann: AnnounceSigner,
}

pub struct Fixture {
    pub nodes: Vec<RingNode>,
    /// Lease owners and buyers.
    pub owners: [Signer; 2],
    /// Two route servers' gossip keys.
    pub servers: [Signer; 2],
    /// The nodes' announcements, taken.
    pub graph: Graph,
    /// The frames below, taken.
    pub book: LeaseBook,
    /// The announcements in `graph`.
    pub anns: Vec<Vec<u8>>,
    /// The frames in `book`, in the order they were taken.
    pub frames: Vec<Vec<u8>>,
}

/// A deterministic key whose address is in fc00::/8.
pub fn fc_key(seed: u8) -> PrivateKey {
    (0..=u16::MAX)
        .map(|i| {
            let mut b = [seed; 32];
            b[..2].copy_from_slice(&i.to_be_bytes());
            PrivateKey::from_bytes(b)
        })
        .find(|k| k.public_key().address().is_valid())
        .expect("one key in 256 has an fc address")
}

/// Node `i`'s slot for its ring neighbour `j` (1: the next node, 2: the previous one).
fn slot(i: usize, j: usize) -> u32 {
    if j == (i + 1) % NODES {
        1
    } else {
        2
    }
}

fn label(i: usize, j: usize) -> u64 {
    EncodingScheme::v358()
        .label_for_interface(slot(i, j))
        .expect("a small slot has a label")
        .bits()
}

fn ring_announcement(nodes: &[RingNode], i: usize) -> Vec<u8> {
    let peers = [(i + 1) % NODES, (i + NODES - 1) % NODES]
        .into_iter()
        .map(|j| PeerLink {
            key: nodes[j].key.public_key(),
            label: label(i, j),
            path_to_us: Some(label(j, i)),
            leased_kbps: 0,
        })
        .collect();
    let links = LinkSnapshot {
        peers,
        capacity_kbps: 10_000,
    };
    let offer = OfferSettings {
        max_kbps: 5_000,
        max_seconds: 86_400,
        price_msat: 7,
    };
    let snode = Address::from_bytes([0xfc; 16]);
    announcement(&nodes[i].ann, snode, ANN_MS, &links, Some(offer)).expect("a ring announcement")
}

fn lease(nodes: &[RingNode], from: usize, id: u8, owner: &Signer) -> Vec<u8> {
    let l = Lease {
        id: LeaseId([id; 16]),
        node: nodes[from].lease.public(),
        peer: *nodes[(from + 1) % NODES].key.public_key().as_bytes(),
        kbps: 1_000,
        start: UnixTime(NOW - 10),
        end: UnixTime(NOW + 1_000),
        owner: owner.public(),
    };
    Message::Lease(l)
        .emit_signed(&nodes[from].lease)
        .expect("a lease")
}

fn build() -> Fixture {
    let nodes: Vec<RingNode> = (0..NODES as u8)
        .map(|i| {
            let key = fc_key(i + 1);
            RingNode {
                address: key.public_key().address(),
                lease: Signer::from_cjdns(&key),
                ann: AnnounceSigner::from_cjdns(&key),
                key,
            }
        })
        .collect();
    let owners = [
        Signer::from_cjdns(&PrivateKey::from_bytes([50; 32])),
        Signer::from_cjdns(&PrivateKey::from_bytes([51; 32])),
    ];
    let servers = [
        Signer::from_cjdns(&fc_key(60)),
        Signer::from_cjdns(&fc_key(61)),
    ];
    let mut graph = Graph::new(pktmesh_route_server::Config::default());
    let anns: Vec<Vec<u8>> = (0..NODES).map(|i| ring_announcement(&nodes, i)).collect();
    for a in &anns {
        graph
            .ingest(ANN_MS, a, Origin::Node)
            .expect("the graph takes the ring");
    }
    let owner = &owners[0];
    let (l1, l2, vs) = (LeaseId([1; 16]), LeaseId([2; 16]), LeaseId([3; 16]));
    let mut frames = vec![lease(&nodes, 0, 1, owner), lease(&nodes, 1, 2, owner)];
    frames.push(
        Message::VirtualSwitch(VirtualSwitchLease {
            id: vs,
            node: nodes[1].lease.public(),
            owner: owner.public(),
            start: UnixTime(NOW - 10),
            end: UnixTime(NOW + 1_000),
            ins: vec![l1],
            outs: vec![l2],
        })
        .emit_signed(&nodes[1].lease)
        .expect("a virtual switch"),
    );
    for target in [l1, l2, vs] {
        let c = Config {
            target,
            signer: owner.public(),
            seq: 1,
            command: Command::Attach { network: 7 },
        };
        frames.push(
            Message::Config(c)
                .emit_signed(owner)
                .expect("a configuration"),
        );
    }
    frames.push(
        VirtualNetwork {
            id: 7,
            owner: owner.public(),
            seq: 1,
            leases: vec![l1, l2],
            vswitches: vec![vs],
        }
        .emit_signed(owner),
    );
    frames.push(
        Order {
            node: nodes[2].address,
            peer: nodes[3].address,
            kbps: 500,
            start: UnixTime(NOW),
            end: UnixTime(NOW + 600),
            buyer: owners[1].public(),
            nonce: 1,
        }
        .emit_signed(&owners[1]),
    );
    let mut book = LeaseBook::new();
    for f in &frames {
        book.insert(UnixTime(NOW), f, &graph)
            .expect("the book takes the fixture");
    }
    let _ = book.take_changes();
    Fixture {
        nodes,
        owners,
        servers,
        graph,
        book,
        anns,
        frames,
    }
}

/// Built once.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(build)
}

/// `frame` re-signed by the fixture key its kind needs (chosen by `pick`) and, for some picks,
/// pointed at a link of the ring, so that a mutated frame reaches the book's rules rather than
/// stopping at the signature. `None` if it has the shape of no frame.
pub fn resign(f: &Fixture, frame: &[u8], pick: u8) -> Option<Vec<u8>> {
    let node = |n: u8| &f.nodes[usize::from(n) % NODES];
    let owner = &f.owners[usize::from(pick >> 7)];
    let signed = |mut body: Vec<u8>, by: &Signer| {
        let sig = by.sign(&body);
        body.extend_from_slice(&sig);
        body
    };
    match *frame.first()? {
        ORDER_MAGIC if frame.len() == ORDER_LEN => {
            let mut b = frame[..ORDER_LEN - 64].to_vec();
            if pick & 1 == 1 {
                b[1..17].copy_from_slice(node(pick >> 1).address.as_bytes());
                b[17..33].copy_from_slice(node((pick >> 1) + 1).address.as_bytes());
            }
            b[53..85].copy_from_slice(&owner.public().0);
            Some(signed(b, owner))
        }
        VNET_MAGIC if frame.len() >= 51 + 64 => {
            let mut b = frame[..frame.len() - 64].to_vec();
            b[9..41].copy_from_slice(&owner.public().0);
            Some(signed(b, owner))
        }
        _ => match Message::parse(frame).ok()?.0 {
            Message::Lease(mut l) => {
                let from = node(pick);
                l.node = from.lease.public();
                if pick & 2 == 2 {
                    l.peer = *node(pick + 1).key.public_key().as_bytes();
                }
                if pick & 4 == 4 {
                    l.owner = owner.public();
                }
                Message::Lease(l).emit_signed(&from.lease).ok()
            }
            Message::VirtualSwitch(mut v) => {
                let at = node(pick);
                v.node = at.lease.public();
                Message::VirtualSwitch(v).emit_signed(&at.lease).ok()
            }
            Message::Config(mut c) => {
                c.signer = owner.public();
                Message::Config(c).emit_signed(owner).ok()
            }
        },
    }
}

/// `ann` re-signed by ring node `pick` with a recent timestamp, so that a mutated
/// announcement reaches the graph's rules. `None` if it does not parse.
pub fn resign_announcement(f: &Fixture, ann: &[u8], pick: u8) -> Option<Vec<u8>> {
    let mut repr = AnnouncementRepr::parse(&Announcement::new_checked(ann).ok()?);
    repr.timestamp_ms = ANN_MS + u64::from(pick) * 10;
    repr.emit_signed(&f.nodes[usize::from(pick) % NODES].ann)
        .ok()
}

/// What a lease book holds and what it makes of it, for comparisons.
pub type BookState = (
    [u8; 64],
    Vec<LeaseState>,
    Vec<VirtualSwitchState>,
    Vec<(ItemId, OrderState)>,
    Vec<VirtualNetwork>,
);

pub fn book_state(book: &LeaseBook) -> BookState {
    (
        book.digest(),
        book.leases().cloned().collect(),
        book.vswitches().cloned().collect(),
        book.orders().map(|(id, o)| (*id, *o)).collect(),
        book.networks().cloned().collect(),
    )
}
