//! A deterministic in-memory network of DHT pathfinders.
//!
//! Every node is a [`Pathfinder`] plus a real [`SwitchCore`]; links join two switch slots. A
//! message a pathfinder wants to send gets a switch header with its path label and is forwarded
//! switch by switch exactly as cjdns switches do, so a label is only "found" if it really routes.
//! At the node where the switch hands it to the router (slot 1) it is delivered, with the
//! bit-reversed arrival label as the sender's path (what the SessionManager reports), after
//! 5 ms per hop of virtual time. The clock jumps to the next delivery or the earliest
//! `poll_timeout`. Everything is seeded, so runs repeat exactly.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_node::dht::{Config, Event, LookupStatus, Pathfinder, Sender};
use pktmesh_switch::header::SwitchHeaderRepr;
use pktmesh_switch::switch_core::ROUTER_SLOT;
use pktmesh_switch::{EncodingScheme, Forward, Label, SwitchCore};
use rand_core::{CryptoRng, RngCore};

const HOP_LATENCY: Duration = Duration::from_millis(5);
const VERSION: u32 = 22;

/// Deterministic key material for tests (SplitMix64); not for real keys.
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

struct SimNode {
    key: PublicKey,
    pf: Pathfinder,
    sw: SwitchCore,
    /// slot -> (node, its slot)
    links: BTreeMap<u16, (usize, u16)>,
}

struct Delivery {
    at: Instant,
    seq: u64,
    to: usize,
    from: Sender,
    payload: Vec<u8>,
}

#[derive(Default, Debug)]
struct Stats {
    sent: u64,
    delivered: u64,
    undeliverable: u64,
    rejected: u64,
}

struct Net {
    nodes: Vec<SimNode>,
    start: Instant,
    now: Instant,
    queue: Vec<Delivery>,
    seq: u64,
    events: Vec<(usize, Instant, Event)>,
    stats: Stats,
}

impl Net {
    fn new(n: usize, seed: u64, config: Config) -> Self {
        let mut rng = TestRng(seed);
        let start = Instant::now();
        let nodes = (0..n)
            .map(|i| {
                let (_, key, _) = PrivateKey::generate(&mut rng);
                SimNode {
                    key,
                    pf: Pathfinder::new(start, key, config, seed ^ (i as u64 + 1)),
                    sw: SwitchCore::new(EncodingScheme::v358()),
                    links: BTreeMap::new(),
                }
            })
            .collect();
        Self {
            nodes,
            start,
            now: start,
            queue: Vec::new(),
            seq: 0,
            events: Vec::new(),
            stats: Stats::default(),
        }
    }

    fn line(n: usize, seed: u64) -> Self {
        Self::line_with(n, seed, Config::default())
    }

    fn line_with(n: usize, seed: u64, config: Config) -> Self {
        let mut net = Self::new(n, seed, config);
        for i in 0..n - 1 {
            net.link(i, i + 1);
        }
        net
    }

    fn link(&mut self, a: usize, b: usize) {
        let sa = self.nodes[a].sw.add_interface().unwrap().0;
        let sb = self.nodes[b].sw.add_interface().unwrap().0;
        self.nodes[a].sw.remove_interface(sa);
        self.nodes[b].sw.remove_interface(sb);
        self.link_at(a, sa, b, sb);
    }

    /// Links `a`'s switch slot `sa` with `b`'s slot `sb`.
    fn link_at(&mut self, a: usize, sa: u16, b: usize, sb: u16) {
        let la = self.nodes[a].sw.add_interface_at(sa).unwrap();
        let lb = self.nodes[b].sw.add_interface_at(sb).unwrap();
        self.nodes[a].links.insert(sa, (b, sb));
        self.nodes[b].links.insert(sb, (a, sa));
        let (ka, kb) = (self.nodes[a].key, self.nodes[b].key);
        let now = self.now;
        self.nodes[a].pf.peer_up(now, kb, la, VERSION).unwrap();
        self.nodes[b].pf.peer_up(now, ka, lb, VERSION).unwrap();
        self.flush();
    }

    fn addr(&self, i: usize) -> Address {
        self.nodes[i].key.address()
    }

    /// Forwards a packet from `from`'s router along `label`; returns where the switches hand it
    /// to a router, the bit-reversed arrival label and the number of links crossed.
    fn route(&self, from: usize, label: Label, payload: &[u8]) -> Option<(usize, Label, u32)> {
        let mut pkt = SwitchHeaderRepr::new(label.bits()).to_bytes().to_vec();
        pkt.extend_from_slice(payload);
        let (mut at, mut slot, mut links) = (from, ROUTER_SLOT, 0u32);
        for _ in 0..64 {
            match self.nodes[at].sw.forward(slot, &mut pkt) {
                Forward::Deliver { to } if to == ROUTER_SLOT => {
                    if links == 0 {
                        return None; // a self route never leaves the node
                    }
                    let arrival = u64::from_be_bytes(pkt[..8].try_into().unwrap());
                    return Some((at, Label::new(arrival).ok()?.reversed(), links));
                }
                Forward::Deliver { to } => {
                    let &(next, next_slot) = self.nodes[at].links.get(&to)?;
                    at = next;
                    slot = next_slot;
                    links += 1;
                }
                _ => return None,
            }
        }
        None
    }

    fn flush(&mut self) {
        for i in 0..self.nodes.len() {
            while let Some(t) = self.nodes[i].pf.poll_transmit() {
                self.stats.sent += 1;
                match self.route(i, t.path, &t.payload) {
                    // The session layer could only decrypt it at the node whose key it used.
                    Some((to, back, links)) if self.nodes[to].key == t.key => {
                        self.seq += 1;
                        self.queue.push(Delivery {
                            at: self.now + HOP_LATENCY * links,
                            seq: self.seq,
                            to,
                            from: Sender {
                                key: self.nodes[i].key,
                                path: back,
                                version: VERSION,
                            },
                            payload: t.payload,
                        });
                    }
                    _ => self.stats.undeliverable += 1,
                }
            }
            while let Some(e) = self.nodes[i].pf.poll_event() {
                self.events.push((i, self.now, e));
            }
        }
    }

    /// Advances to the next thing that happens; false when nothing ever will.
    fn step(&mut self) -> bool {
        let next_delivery = self.queue.iter().map(|d| (d.at, d.seq)).min();
        let next_timer = self.nodes.iter().filter_map(|n| n.pf.poll_timeout()).min();
        let t = match (next_delivery, next_timer) {
            (Some((d, _)), Some(tm)) => d.min(tm),
            (Some((d, _)), None) => d,
            (None, Some(tm)) => tm,
            (None, None) => return false,
        };
        self.now = self.now.max(t);
        let now = self.now;
        let mut due: Vec<Delivery> = Vec::new();
        let mut i = 0;
        while i < self.queue.len() {
            if self.queue[i].at <= now {
                due.push(self.queue.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|d| (d.at, d.seq));
        for d in due {
            self.stats.delivered += 1;
            if self.nodes[d.to]
                .pf
                .handle_message(now, d.from, &d.payload)
                .is_err()
            {
                self.stats.rejected += 1;
            }
        }
        for n in &mut self.nodes {
            if n.pf.poll_timeout().is_some_and(|t| t <= now) {
                n.pf.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end && self.step() {}
    }

    /// Looks `target` up from `from` the way the session layer would: retrying every two
    /// seconds while searches fail, for at most `limit`. Returns the path found.
    fn find(&mut self, from: usize, target: usize, limit: Duration) -> Option<Label> {
        let end = self.now + limit;
        let want = self.addr(target);
        let mut next_try = self.now;
        let mut seen = self.events.len();
        while self.now < end {
            if self.now >= next_try {
                next_try = self.now + Duration::from_secs(2);
                let now = self.now;
                match self.nodes[from].pf.lookup(now, want) {
                    LookupStatus::Known(info) => return info.path,
                    LookupStatus::Started | LookupStatus::AlreadyRunning => {}
                    other => panic!("lookup refused: {other:?}"),
                }
                self.flush();
            }
            for (node, _, e) in &self.events[seen..] {
                if let (true, Event::PathFound { address, path, .. }) = (*node == from, e) {
                    if *address == want {
                        return Some(*path);
                    }
                }
            }
            seen = self.events.len();
            if !self.step() {
                break;
            }
        }
        None
    }
}

/// The path really takes a packet from `from` to `to` across `hops` links.
fn assert_routes(net: &Net, from: usize, to: usize, path: Label, hops: u32) {
    let (at, back, links) = net.route(from, path, b"probe").expect("path routes");
    assert_eq!(at, to, "path {path} ends at the wrong node");
    assert_eq!(links, hops);
    // And the reversed arrival label leads back.
    let (home, _, _) = net.route(to, back, b"back").expect("return path routes");
    assert_eq!(home, from);
}

#[test]
fn finds_a_node_three_hops_away_after_warm_up() {
    let mut net = Net::line(5, 1);
    net.run_for(Duration::from_secs(20));
    // The janitor has learned the neighbourhood by now.
    assert!(
        net.nodes[0].pf.node_count() >= 3,
        "A knows {}",
        net.nodes[0].pf.node_count()
    );
    let path = net.find(0, 3, Duration::from_secs(30)).expect("A finds D");
    assert_routes(&net, 0, 3, path, 3);
    let path = net.find(0, 4, Duration::from_secs(30)).expect("A finds E");
    assert_routes(&net, 0, 4, path, 4);
    // And the other way round.
    let path = net.find(4, 0, Duration::from_secs(30)).expect("E finds A");
    assert_routes(&net, 4, 0, path, 4);
    assert_eq!(net.stats.rejected, 0, "{:?}", net.stats);
}

#[test]
fn finds_a_node_three_hops_away_from_a_cold_start() {
    let mut net = Net::line(4, 2);
    // Only the peer links are up; A asks for D at once and keeps asking, as the session layer
    // does while it has packets buffered for D.
    let start = net.now;
    let path = net.find(0, 3, Duration::from_secs(60)).expect("A finds D");
    assert_routes(&net, 0, 3, path, 3);
    assert!(net.now - start < Duration::from_secs(60));
    assert_eq!(net.nodes[0].pf.node(&net.addr(3)).unwrap().path, Some(path));
}

#[test]
fn many_seeds_and_lengths() {
    for seed in 10..16 {
        for n in [4usize, 6] {
            let mut net = Net::line(n, seed);
            net.run_for(Duration::from_secs(5));
            let target = n - 1;
            let path = net
                .find(0, target, Duration::from_secs(90))
                .unwrap_or_else(|| panic!("seed {seed}, {n} nodes: no path"));
            assert_routes(&net, 0, target, path, target as u32);
        }
    }
}

#[test]
fn peers_are_found_without_a_search() {
    let mut net = Net::line(3, 3);
    let b = net.addr(1);
    // peer_up already reported the direct peer.
    assert!(
        net.events
            .iter()
            .any(|(n, _, e)| *n == 0
                && matches!(e, Event::PathFound { address, .. } if *address == b))
    );
    let now = net.now;
    assert!(matches!(
        net.nodes[0].pf.lookup(now, b),
        LookupStatus::Known(_)
    ));
    let own = net.addr(0);
    assert_eq!(net.nodes[0].pf.lookup(now, own), LookupStatus::OwnAddress);
}

#[test]
fn work_stays_bounded_over_ten_minutes() {
    let mut net = Net::line(6, 4);
    let minutes = 10;
    net.run_for(Duration::from_secs(60 * minutes));
    let elapsed = (net.now - net.start).as_secs_f64();
    // Janitor: about three queries a second per node at most, plus the answers.
    let per_node_per_sec = net.stats.sent as f64 / elapsed / net.nodes.len() as f64;
    assert!(per_node_per_sec < 8.0, "{per_node_per_sec} messages/s/node");
    for n in &net.nodes {
        assert!(n.pf.queries_in_flight() <= Config::default().max_in_flight);
        assert!(n.pf.node_count() <= 6);
        assert_eq!(n.pf.search_count(), 0);
    }
    // Everyone knows everyone in a six-node line after ten minutes.
    for n in &net.nodes {
        assert_eq!(
            n.pf.node_count(),
            5,
            "{:?}",
            n.pf.nodes().collect::<Vec<_>>()
        );
    }
    assert_eq!(net.stats.rejected, 0, "{:?}", net.stats);
}

#[test]
fn a_small_store_stays_within_capacity() {
    let config = Config {
        node_capacity: 4,
        ..Config::default()
    };
    let mut net = Net::line_with(8, 5, config);
    net.run_for(Duration::from_secs(120));
    for n in &net.nodes {
        // At most 4 non-peers plus at most 2 peers in a line.
        assert!(n.pf.node_count() <= 6, "{}", n.pf.node_count());
    }
    // Even so, the far end is still found.
    let path = net.find(0, 7, Duration::from_secs(120)).expect("A finds H");
    assert_routes(&net, 0, 7, path, 7);
}

#[test]
fn losing_a_peer_loses_the_paths_through_it() {
    let mut net = Net::line(4, 6);
    net.run_for(Duration::from_secs(20));
    let c = net.addr(2);
    let d = net.addr(3);
    assert!(net.nodes[1].pf.node(&d).and_then(|n| n.path).is_some());
    // B's link to C goes down.
    let label_c = net.nodes[1].pf.node(&c).unwrap().path.unwrap();
    let now = net.now;
    net.nodes[1].pf.peer_down(now, label_c);
    net.flush();
    let lost: Vec<Address> = net
        .events
        .iter()
        .filter(|(n, t, _)| *n == 1 && *t == now)
        .filter_map(|(_, _, e)| match e {
            Event::PathLost { address, .. } => Some(*address),
            _ => None,
        })
        .collect();
    assert!(lost.contains(&c) && lost.contains(&d), "{lost:?}");
    assert!(net.nodes[1].pf.node(&d).unwrap().path.is_none());
    assert!(!net.nodes[1].pf.node(&c).unwrap().is_peer);
}

#[test]
fn drives_through_the_node_core_trait() {
    use pktmesh_node::core::{NodeRef, Pathfinder as CorePathfinder};
    let mut net = Net::line(4, 7);
    net.run_for(Duration::from_secs(10));
    let d = net.addr(3);
    let now = net.now;
    let a = &mut net.nodes[0].pf;
    // Known after the warm-up: search() reports it again through poll_node().
    CorePathfinder::search(a, now, d);
    let found: Vec<NodeRef> = std::iter::from_fn(|| CorePathfinder::poll_node(a)).collect();
    let n = found
        .iter()
        .find(|n| n.key.address() == d)
        .expect("reported");
    assert_eq!(CorePathfinder::node_for(a, &d), Some(*n));
    assert_routes(&net, 0, 3, n.path, 3);
    // ping() queues a pn to that node.
    let a = &mut net.nodes[0].pf;
    CorePathfinder::ping(a, now, *n);
    let (to, payload) = CorePathfinder::poll_transmit(a).expect("a ping");
    assert_eq!(to, *n);
    assert!(payload.windows(5).any(|w| w == b"1:q2:") && payload.ends_with(b"e"));
}

#[test]
fn labels_are_widened_for_askers_behind_wide_directors() {
    // A line whose links use 4-, 7- and 10-bit directors in both directions, so every answer
    // has to be re-encoded for the asker (getLabelFor) and every splice has to respect the
    // switch rule that a return director must fit where the forward one was.
    let slots: [(u16, u16); 4] = [(0, 200), (40, 3), (2, 17), (150, 5)];
    let mut found = 0;
    for seed in 20..24 {
        let mut net = Net::new(5, seed, Config::default());
        for (i, &(sa, sb)) in slots.iter().enumerate() {
            net.link_at(i, sa, i + 1, sb);
        }
        net.run_for(Duration::from_secs(10));
        for target in [3usize, 4] {
            let path = net
                .find(0, target, Duration::from_secs(90))
                .unwrap_or_else(|| panic!("seed {seed}: no path to {target}"));
            assert_routes(&net, 0, target, path, target as u32);
            let back = net
                .find(target, 0, Duration::from_secs(90))
                .expect("and back");
            assert_routes(&net, target, 0, back, target as u32);
            found += 1;
        }
        assert_eq!(net.stats.undeliverable, 0, "seed {seed}: {:?}", net.stats);
    }
    assert_eq!(found, 8);
}
