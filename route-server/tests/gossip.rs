//! Three route servers, one partitioned away while link state and leases change on both
//! sides; after the partition heals all three hold the same state within a bounded number of
//! gossip rounds. Deterministic: in-memory, virtual clock.

mod common;

use common::Net;
use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::sign::SigningKey;
use pktmesh_lease_engine::wire::{
    Command, Config as LeaseConfig, Lease, Message, VirtualSwitchLease,
};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_route_server::gossip::{self, GossipMessage};
use pktmesh_route_server::graph::{Config, Graph, Origin};
use pktmesh_route_server::leases::{Accepted, BookError, LeaseBook};
use pktmesh_route_server::path::{CostModel, PathFinder, Topology};

const T0: u64 = 1_700_000_000_000;
/// Virtual time between gossip rounds.
const ROUND_MS: u64 = 5_000;

struct Server {
    graph: Graph,
    book: LeaseBook,
}

impl Server {
    fn new() -> Self {
        Self {
            graph: Graph::new(Config::default()),
            book: LeaseBook::new(),
        }
    }

    fn state(&self) -> ([u8; 64], [u8; 64]) {
        (self.graph.digest(), self.book.digest())
    }
}

/// One exchange initiated by `a` with `b`; bounded to the five steps of the protocol (plus
/// slack) so a bug cannot loop forever.
fn exchange(now: u64, servers: &mut [Server], a: usize, b: usize) {
    let mut msg: GossipMessage = {
        let s = &mut servers[a];
        gossip::summary(&mut s.graph, &mut s.book)
    };
    // Through JSON, as the HTTP driver sends it.
    let mut to = b;
    for _ in 0..8 {
        let wire = serde_json::to_vec(&msg).unwrap();
        let got: GossipMessage = serde_json::from_slice(&wire).unwrap();
        let s = &mut servers[to];
        match gossip::handle(now, &mut s.graph, &mut s.book, &got).0 {
            Some(reply) => msg = reply,
            None => return,
        }
        to = if to == a { b } else { a };
    }
    panic!("exchange did not end within 8 messages");
}

/// One round: every connected pair exchanges once (each side initiates).
fn round(now: u64, servers: &mut [Server], connected: &dyn Fn(usize, usize) -> bool) {
    for a in 0..servers.len() {
        for b in 0..servers.len() {
            if a != b && connected(a, b) {
                exchange(now, servers, a, b);
            }
        }
    }
}

fn lease(net: &Net, from: usize, to: usize, owner: &Signer, id: u8, kbps: u32) -> Vec<u8> {
    let node = Signer::from_cjdns(&net.nodes[from].key);
    Message::Lease(Lease {
        id: LeaseId([id; 16]),
        node: node.public(),
        peer: *net.nodes[to].key.public_key().as_bytes(),
        kbps,
        start: UnixTime(T0 / 1000),
        end: UnixTime(T0 / 1000 + 86_400),
        owner: owner.public(),
    })
    .emit_signed(&node)
    .unwrap()
}

/// A virtual-switch lease at `at` connecting lease `ins` to lease `outs`.
fn vswitch(net: &Net, at: usize, owner: &Signer, id: u8, ins: u8, outs: u8) -> Vec<u8> {
    let node = Signer::from_cjdns(&net.nodes[at].key);
    Message::VirtualSwitch(VirtualSwitchLease {
        id: LeaseId([id; 16]),
        node: node.public(),
        owner: owner.public(),
        start: UnixTime(T0 / 1000),
        end: UnixTime(T0 / 1000 + 86_400),
        ins: vec![LeaseId([ins; 16])],
        outs: vec![LeaseId([outs; 16])],
    })
    .emit_signed(&node)
    .unwrap()
}

/// The key (issuer, id) of node `at`'s lease `id`.
fn key(net: &Net, at: usize, id: u8) -> (SigningKey, LeaseId) {
    (
        Signer::from_cjdns(&net.nodes[at].key).public(),
        LeaseId([id; 16]),
    )
}

fn insert(s: &mut Server, t: UnixTime, f: &[u8]) -> Result<Accepted, BookError> {
    s.book.insert(t, f, &s.graph)
}

fn attach(owner: &Signer, id: u8, seq: u64, network: u64) -> Vec<u8> {
    Message::Config(LeaseConfig {
        target: LeaseId([id; 16]),
        signer: owner.public(),
        seq,
        command: Command::Attach { network },
    })
    .emit_signed(owner)
    .unwrap()
}

#[test]
fn partitioned_servers_converge_after_healing() {
    let mut net = Net::new(6);
    for i in 0..5 {
        net.link(i, i + 1);
    }
    let snode = Address::from_bytes([0xfc; 16]);
    let mut servers: Vec<Server> = (0..3).map(|_| Server::new()).collect();
    // Nodes 0,1 announce to server 0; 2,3 to server 1; 4,5 to server 2.
    let mut now = T0;
    for i in 0..6 {
        let extra = net.capacity_entities(i, 100_000, 50_000);
        let ann = net.announcement_with(i, snode, now, true, Some(50), extra);
        servers[i / 2]
            .graph
            .ingest(now, &ann, Origin::Node)
            .unwrap();
    }
    let all = |_: usize, _: usize| true;
    round(now, &mut servers, &all);
    let s0 = servers[0].state();
    assert!(servers.iter().all(|s| s.state() == s0), "initial sync");
    assert_eq!(servers[2].graph.len(), 6);

    // Partition server 2 away.
    let apart = |a: usize, b: usize| a != 2 && b != 2;
    let owner_a = Signer::from_cjdns(&common::key(100));
    let owner_b = Signer::from_cjdns(&common::key(101));
    now += ROUND_MS;
    // Majority side: new link state from nodes 0 and 1, a lease on 0→1 and its attachment.
    for i in [0, 1] {
        let ann = net.announcement(i, snode, now, false, Some(300));
        servers[0].graph.ingest(now, &ann, Origin::Node).unwrap();
    }
    let t = UnixTime(now / 1000);
    insert(&mut servers[0], t, &lease(&net, 0, 1, &owner_a, 1, 20_000)).unwrap();
    insert(&mut servers[0], t, &attach(&owner_a, 1, 1, 7)).unwrap();
    // Minority side: nodes 4 and 5 report a lossy link; a lease on 4→5, attached, then
    // re-attached elsewhere.
    for i in [4, 5] {
        let ann = net.announcement(i, snode, now, false, Some(900));
        servers[2].graph.ingest(now, &ann, Origin::Node).unwrap();
    }
    insert(&mut servers[2], t, &lease(&net, 4, 5, &owner_b, 2, 30_000)).unwrap();
    insert(&mut servers[2], t, &attach(&owner_b, 2, 1, 9)).unwrap();
    insert(&mut servers[2], t, &attach(&owner_b, 2, 2, 10)).unwrap();
    // And a virtual switch at node 4 (lease 2 out of it), attached to network 10.
    for f in [
        vswitch(&net, 4, &owner_b, 5, 6, 2),
        attach(&owner_b, 5, 1, 10),
    ] {
        insert(&mut servers[2], t, &f).unwrap();
    }
    // A forged attachment (signed by the wrong owner) is refused and changes nothing.
    let before = servers[2].state();
    assert!(insert(&mut servers[2], t, &attach(&owner_a, 2, 3, 11)).is_err());
    assert_eq!(servers[2].state(), before);

    for _ in 0..3 {
        now += ROUND_MS;
        round(now, &mut servers, &apart);
    }
    assert_eq!(servers[0].state(), servers[1].state(), "majority agrees");
    assert_ne!(
        servers[0].state(),
        servers[2].state(),
        "partitioned server differs"
    );
    assert!(servers[2].book.lease(&key(&net, 0, 1)).is_none());

    // Heal: one round must be enough (bounded time: ROUND_MS).
    now += ROUND_MS;
    round(now, &mut servers, &all);
    let s0 = servers[0].state();
    for (i, s) in servers.iter().enumerate() {
        assert_eq!(s.state(), s0, "server {i} converged");
    }
    // The converged state has everything from both sides.
    for s in &servers {
        assert_eq!(s.book.lease(&key(&net, 0, 1)).unwrap().network, 7);
        assert_eq!(s.book.lease(&key(&net, 4, 2)).unwrap().network, 10);
        assert_eq!(s.book.vswitch(&key(&net, 4, 5)).unwrap().network, 10);
        let n4 = s.graph.node(&net.nodes[4].address).unwrap();
        assert_eq!(n4.announcements().count(), 2);
    }
    // And gives the same answers.
    let routes: Vec<_> = servers
        .iter()
        .map(|s| {
            let topo = Topology::build(&s.graph, &CostModel::default());
            PathFinder::new(topo.into())
                .route(&net.nodes[0].address, &net.nodes[5].address, &[])
                .unwrap()
        })
        .collect();
    assert!(routes.iter().all(|r| *r == routes[0]));
    assert_eq!(net.deliver(0, routes[0].label).unwrap().0, 5);
}

#[test]
fn order_of_arrival_does_not_matter() {
    // Configurations that arrive before their lease, or out of sequence, end in the same book.
    let mut net = Net::new(2);
    net.link(0, 1);
    let mut graph = Graph::new(Config::default());
    for i in 0..2 {
        let extra = net.capacity_entities(i, 100_000, 50_000);
        let ann = net.announcement_with(i, Address::from_bytes([0xfc; 16]), T0, true, None, extra);
        graph.ingest(T0, &ann, Origin::Node).unwrap();
    }
    let t = UnixTime(T0 / 1000);
    let owner = Signer::from_cjdns(&common::key(7));
    let frames = [
        lease(&net, 0, 1, &owner, 3, 1000),
        attach(&owner, 3, 1, 1),
        attach(&owner, 3, 2, 2),
        attach(&owner, 3, 5, 5),
        vswitch(&net, 1, &owner, 4, 3, 9),
        attach(&owner, 4, 1, 5),
        attach(&owner, 4, 3, 6),
    ];
    let mut forward = LeaseBook::new();
    for f in &frames {
        forward.insert_gossip(t, f, &graph).unwrap();
    }
    let mut backward = LeaseBook::new();
    for _ in 0..2 {
        for f in frames.iter().rev() {
            let _ = backward.insert_gossip(t, f, &graph);
        }
    }
    assert_eq!(forward.digest(), backward.digest());
    assert_eq!(backward.lease(&key(&net, 0, 3)).unwrap().network, 5);
    assert_eq!(backward.vswitch(&key(&net, 1, 4)).unwrap().network, 6);
    assert_eq!(forward.vswitch(&key(&net, 1, 4)).unwrap().network, 6);
    // A replayed sequence number with different content is refused.
    assert!(forward
        .insert_gossip(t, &attach(&owner, 3, 5, 6), &graph)
        .is_err());
}

fn node_history(net: &Net) -> Vec<Vec<u8>> {
    let snode = Address::from_bytes([0xfc; 16]);
    vec![
        net.announcement(0, snode, T0, true, Some(10)),
        net.announcement(0, snode, T0 + 1_000, false, Some(20)),
        net.announcement(0, snode, T0 + 2_000, false, None),
        net.announcement(0, snode, T0 + 3_000, true, Some(40)),
        net.announcement(0, snode, T0 + 4_000, false, Some(50)),
        net.announcement(1, snode, T0 + 1_500, true, Some(60)),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// The graph depends on the set of announcements, not on their arrival order.
    #[test]
    fn graph_state_is_independent_of_arrival_order(
        order in proptest::strategy::Strategy::prop_shuffle(proptest::strategy::Just((0usize..6).collect::<Vec<_>>()))
    ) {
        let mut net = Net::new(3);
        net.link(0, 1);
        net.link(0, 2);
        let anns = node_history(&net);
        let now = T0 + 5_000;
        let mut canonical = Graph::new(Config::default());
        for a in &anns {
            let _ = canonical.ingest(now, a, Origin::Gossip);
        }
        let mut shuffled = Graph::new(Config::default());
        for &i in &order {
            let _ = shuffled.ingest(now, &anns[i], Origin::Gossip);
        }
        proptest::prop_assert_eq!(shuffled.digest(), canonical.digest());
    }
}
