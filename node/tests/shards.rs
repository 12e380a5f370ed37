//! A node split into shards (`pktmesh_node::shard`) among ordinary nodes running the legacy
//! DHT: the line A–B–C–D where B and C each have two shards, and each holds one of its two
//! peers, so every packet that crosses them changes shard at least once.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{icmp_echo, key, shards, Net};
use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_node::core::Node;
use pktmesh_node::dht;
use pktmesh_node::peers::PeerCredentials;
use pktmesh_node::shard::{ShardSpec, SharedPathfinder};

type Core = Node<SharedPathfinder<dht::Pathfinder>>;

const PASSWORD: &[u8] = b"line password";
const LOGIN: &[u8] = b"left neighbour";

fn owner(address: &Address, count: u8) -> u8 {
    ShardSpec::new(0, count).unwrap().owner_of(address)
}

/// Keys for A, B, C, D such that, with two shards, B's peers (A, C) belong to different
/// shards of B and C's peers (B, D) to different shards of C, and the far end of the line
/// (D for B, A for C) to the shard that does not hold the first hop towards it: then
/// end-to-end packets for B and C arrive on one shard and are opened on the other.
fn line_keys() -> [PrivateKey; 4] {
    let candidates: Vec<PrivateKey> = (40..120).map(key).collect();
    let addr = |k: &PrivateKey| k.public_key().address();
    for a in &candidates {
        for c in &candidates {
            if owner(&addr(a), 2) == owner(&addr(c), 2) {
                continue;
            }
            for b in &candidates {
                for d in &candidates {
                    let distinct: HashSet<_> = [a, b, c, d].iter().map(|k| addr(k)).collect();
                    let o = |k: &PrivateKey| owner(&addr(k), 2);
                    if distinct.len() == 4 && o(b) != o(d) && o(c) != o(d) && o(a) != o(b) {
                        return [a.clone(), b.clone(), c.clone(), d.clone()];
                    }
                }
            }
        }
    }
    panic!("no suitable keys among the candidates");
}

/// The line with `counts[i]` shards for node `i`. Entry indices of node `i` start at
/// `first[i]`.
struct Line {
    net: Net<SharedPathfinder<dht::Pathfinder>>,
    first: Vec<usize>,
    addresses: Vec<Address>,
}

fn line(counts: [u8; 4]) -> Line {
    let now = Instant::now();
    let keys = line_keys();
    let mut entries: Vec<(SocketAddr, Core)> = Vec::new();
    let mut first = Vec::new();
    let mut links = Vec::new();
    for (i, (private, &count)) in keys.iter().zip(&counts).enumerate() {
        let public = private.public_key();
        let router = dht::Pathfinder::new(now, public, dht::Config::default(), i as u64);
        let link: SocketAddr = format!("10.9.0.{}:2000", i + 1).parse().unwrap();
        first.push(entries.len());
        links.push(link);
        for mut shard in shards(private.clone(), router, [i as u8; 32], count, now) {
            shard
                .add_authorized_password(PASSWORD, Some(LOGIN), None)
                .unwrap();
            entries.push((link, shard));
        }
    }
    let addresses: Vec<Address> = keys.iter().map(|k| k.public_key().address()).collect();
    for i in 0..3 {
        let peer_key = keys[i + 1].public_key();
        let owner = owner(&peer_key.address(), counts[i]);
        let entry = &mut entries[first[i] + usize::from(owner)].1;
        entry
            .connect(
                now,
                links[i + 1],
                peer_key,
                PeerCredentials {
                    password: PASSWORD.to_vec(),
                    login: Some(LOGIN.to_vec()),
                },
                None,
            )
            .unwrap();
    }
    Line {
        net: Net::new(entries, now),
        first,
        addresses,
    }
}

impl Line {
    fn settle(&mut self) {
        for _ in 0..20 {
            self.net.run(100_000);
            self.net.tick(Duration::from_millis(500));
        }
    }

    fn entries_of(&self, node: usize) -> std::ops::Range<usize> {
        let end = self
            .first
            .get(node + 1)
            .copied()
            .unwrap_or(self.net.nodes.len());
        self.first[node]..end
    }

    fn tun_of(&self, node: usize) -> Vec<Vec<u8>> {
        self.entries_of(node)
            .flat_map(|e| self.net.tun[e].iter().cloned())
            .collect()
    }

    /// Sends ICMP echoes from `from` (read by its shard `shard`) to `to` until one arrives,
    /// giving the DHT simulated time between tries; true if one did.
    fn reach(&mut self, from: usize, shard: usize, to: usize) -> bool {
        let (src, dst) = (self.addresses[from], self.addresses[to]);
        let before = self.tun_of(to).len();
        for seq in 1..=40u16 {
            self.net
                .send_tun(self.first[from] + shard, &icmp_echo(&src, &dst, seq));
            self.net.run(100_000);
            let got = self.tun_of(to);
            if got.len() > before {
                let p = got.last().unwrap();
                assert_eq!(&p[8..24], src.as_bytes(), "source");
                assert_eq!(&p[24..40], dst.as_bytes(), "destination");
                return true;
            }
            self.net.tick(Duration::from_millis(500));
        }
        false
    }
}

#[test]
fn a_line_through_two_sharded_nodes_carries_traffic_both_ways() {
    let mut line = line([1, 2, 2, 1]);
    line.settle();
    let now = line.net.now;
    // Each peer lives in exactly one shard, the one its address names, and is established,
    // over Noise (an initiation that arrived on the other shard was handed over).
    for node in [1, 2] {
        let mut seen = HashSet::new();
        let mut slots = HashSet::new();
        for e in line.entries_of(node) {
            let shard = line.net.nodes[e].1.shard();
            for p in line.net.nodes[e].1.peer_stats(now) {
                assert!(shard.owns(&p.key.address()), "peer in the wrong shard");
                assert_eq!(p.state, "ESTABLISHED", "{p:?}");
                assert!(p.noise, "{p:?}");
                assert!(seen.insert(p.key), "peer held by two shards");
                assert!(slots.insert(p.slot), "slot given out twice");
            }
        }
        assert_eq!(seen.len(), 2, "node {node} has both its peers");
    }
    assert!(line.reach(0, 0, 3), "A reached D through B and C");
    assert!(line.reach(3, 0, 0), "D reached A");
    // The sharded nodes talk to everyone from either shard.
    for shard in 0..2 {
        assert!(line.reach(1, shard, 3), "B (shard {shard}) reached D");
        assert!(line.reach(2, shard, 0), "C (shard {shard}) reached A");
    }
    assert!(line.reach(0, 0, 1), "A reached B");
    assert!(line.reach(3, 0, 2), "D reached C");
    // Now that those sessions are up, their packets carry handles: those from D arrive at B
    // on the shard of C and are opened on D's shard (and likewise at C for A).
    assert!(line.reach(3, 0, 1), "D reached B");
    assert!(line.reach(0, 0, 2), "A reached C");
    assert!(line.net.handoffs > 0, "packets crossed shards");
    // An end-to-end session exists in one shard only, the one its remote address names.
    for node in [1, 2] {
        let mut remotes = HashSet::new();
        let mut handles = HashSet::new();
        for e in line.entries_of(node) {
            let shard = line.net.nodes[e].1.shard();
            for s in line.net.nodes[e].1.session_stats() {
                assert!(shard.owns(&s.address), "session in the wrong shard");
                assert!(remotes.insert(s.address), "two sessions with one node");
                assert!(handles.insert(s.handle), "handle used twice");
            }
        }
        assert!(remotes.len() >= 2, "node {node} has sessions: {remotes:?}");
    }
}

#[test]
fn switch_pings_from_the_first_shard_complete_there() {
    let mut line = line([1, 2, 2, 1]);
    line.settle();
    let now = line.net.now;
    // B pings each of its peers from shard 0; one of them belongs to shard 1, whose pong
    // must come back to shard 0.
    let b0 = line.first[1];
    let labels: Vec<_> = line
        .entries_of(1)
        .flat_map(|e| line.net.nodes[e].1.peer_stats(now))
        .map(|p| p.label)
        .collect();
    assert_eq!(labels.len(), 2);
    let cookies: Vec<u64> = labels
        .iter()
        .map(|&l| line.net.nodes[b0].1.switch_ping(now, l))
        .collect();
    line.net.run(100_000);
    let mut answered = HashSet::new();
    while let Some(r) = line.net.nodes[b0].1.poll_ping_result() {
        answered.insert(r.cookie);
    }
    assert_eq!(
        answered,
        cookies.into_iter().collect(),
        "both pongs reached shard 0"
    );
    assert!(line.net.nodes[b0 + 1].1.poll_ping_result().is_none());
}

#[test]
fn one_shard_behaves_like_an_unsharded_node() {
    // The same line with no sharded node: no handoffs at all.
    let mut line = line([1, 1, 1, 1]);
    line.settle();
    assert!(line.reach(0, 0, 3));
    assert!(line.reach(3, 0, 0));
    assert_eq!(line.net.handoffs, 0);
}

/// The admin API over a node of three shards: peers and sessions of every shard, a new peer
/// connected in the shard that owns it, a password added to every shard.
#[test]
fn the_admin_api_answers_for_all_shards() {
    use pktmesh_node::admin::{client, AdminServer, UnixMillis};
    use pktmesh_node::bencode::{Dict, Value};
    use pktmesh_node::host::{HostState, InterfaceKind};
    use pktmesh_node::node_admin::{NodeAdmin, PendingPings};

    let now = Instant::now();
    let private = key(7);
    let router = dht::Pathfinder::new(now, private.public_key(), dht::Config::default(), 7);
    let mut nodes = shards(private, router, [7; 32], 3, now);
    let mut server = AdminServer::new("NONE");
    let mut pings = PendingPings::default();
    let mut host = HostState::new();
    host.add_open_interface(InterfaceKind::Udp {
        bind: "10.0.0.7:1007".parse().unwrap(),
    });
    let src: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    let mut ask = |nodes: &mut Vec<Core>, function: &str, args: Dict| -> Dict {
        let mut refs: Vec<&mut Core> = nodes.iter_mut().collect();
        let mut f = NodeAdmin {
            shards: &mut refs,
            now,
            pings: &mut pings,
            host: &mut host,
        };
        let req = client::request(function, args, b"t1");
        let out = server
            .handle(UnixMillis(1_700_000_000_000), src, &req, &mut f)
            .responses;
        client::parse_response(&out[0]).unwrap().dict
    };
    // Nine peers through beginConnection; each lands in the shard its address names.
    let peers: Vec<PrivateKey> = (100..109).map(key).collect();
    for (i, p) in peers.iter().enumerate() {
        let args = Dict::new()
            .with(
                "publicKey",
                Value::from(p.public_key().to_string().as_str()),
            )
            .with(
                "address",
                Value::from(format!("10.1.0.{}:1000", i + 1).as_str()),
            )
            .with("password", Value::from("x"));
        let reply = ask(&mut nodes, "UDPInterface_beginConnection", args);
        assert_eq!(reply.get_str("error"), Some("none"), "{reply:?}");
    }
    let mut held = 0;
    for n in &nodes {
        for p in n.peer_stats(now) {
            assert!(n.shard().owns(&p.key.address()));
            held += 1;
        }
    }
    assert_eq!(held, 9);
    assert!(
        nodes
            .iter()
            .filter(|n| !n.peer_stats(now).is_empty())
            .count()
            > 1,
        "the peers are spread over shards"
    );
    // peerStats pages through all of them, in slot order.
    let mut labels = Vec::new();
    for page in 0..2 {
        let reply = ask(
            &mut nodes,
            "InterfaceController_peerStats",
            Dict::new().with("page", Value::Int(page)),
        );
        assert_eq!(reply.get_int("total"), Some(9));
        if let Some(Value::List(list)) = reply.get("peers") {
            for p in list {
                let addr = p.as_dict().unwrap().get_str("addr").unwrap().to_string();
                // v<version>.<label, four groups>.<key>
                let parts: Vec<&str> = addr.split('.').collect();
                labels.push(parts[1..5].join("."));
            }
        }
    }
    assert_eq!(labels.len(), 9);
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(labels, sorted, "slot order");
    // A password added through the API is known to every shard.
    let reply = ask(
        &mut nodes,
        "AuthorizedPasswords_add",
        Dict::new()
            .with("password", Value::from("new one"))
            .with("user", Value::from("carol")),
    );
    assert_eq!(reply.get_str("error"), Some("none"), "{reply:?}");
    for n in &nodes {
        assert!(n.authorized_users().iter().any(|u| u == b"carol"));
    }
}
