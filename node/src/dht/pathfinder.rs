//! The pathfinder state machine: queries in flight, searches, the janitor and the node store.
//!
//! One job in one file, longer than most: the four parts share the queries-in-flight table
//! and the node store on every step (a reply both answers a query and feeds a search and the
//! store; the janitor starts searches and pings), so splitting them would only pass the same
//! state between files. Message formats are in [`super::message`], the store in
//! [`super::store`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::{EncodingScheme, Label};

use super::message::{Body, Message, NodeEntry, Query, Reply, Target};
use super::store::{self, NodeInfo, NodeStore, PathUpdate};
use super::{version, DhtError};
use crate::pathfinding::NodeRef;

/// Nodes per `fn`/`gp` answer (`RouterModule_K`).
const K: usize = 8;
/// Initial mean response time (`GMRT_INITAL_MILLISECONDS`).
const GMRT_INITIAL_MS: u64 = 5000;
/// Window of the mean response time (`GMRT_SECONDS`).
const GMRT_WINDOW_SECS: u64 = 256;
/// Search step timeout bounds (`MIN_TIMEOUT`, `MAX_TIMEOUT`).
const SEARCH_TIMEOUT_MS: (u64, u64) = (10, 10_000);
/// Query timeout bounds (`PING_TIMEOUT_MINIMUM`, `PING_TIMEOUT_MAXIMUM`).
const PING_TIMEOUT_MS: (u64, u64) = (3000, 30_000);
/// Candidates and asked nodes remembered per search (`SearchStore_SEARCH_NODES`).
const SEARCH_NODES: usize = 256;
/// Paths recently probed by the janitor (`Janitor_pvt_blacklist_NUM`).
const BLACKLIST_LEN: usize = 64;
/// Keyspace buckets and nodes kept per bucket (`NodeStore_bucketNumber`, `_bucketSize`).
const BUCKET_SIZE: usize = 4;
/// Bound of the transmit and event queues; the oldest entry is dropped beyond it.
const QUEUE_LEN: usize = 1024;

/// Tunables. The defaults are cjdns 22.3's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Protocol version we announce (`p`).
    pub version: u32,
    /// Our switch's encoding scheme (announced as `es`).
    pub scheme: EncodingScheme,
    /// Nodes kept besides direct peers (`NodeStore_DEFAULT_NODE_CAPACITY` = 128).
    pub node_capacity: usize,
    /// Direct peers kept.
    pub max_peers: usize,
    /// Mean janitor period; each cycle is scheduled between half and one and a half of it
    /// (`Janitor_LOCAL_MAINTENANCE_MILLISECONDS_DEFAULT` = 1 s).
    pub janitor_interval: Duration,
    /// Concurrent searches (`SearchRunner_DEFAULT_MAX_CONCURRENT_SEARCHES` = 30).
    pub max_searches: usize,
    /// Queries one search may send (the core's search requests use 20).
    pub search_max_requests: u32,
    /// Queries in flight at once.
    pub max_in_flight: usize,
    /// Rumoured nodes (heard of, never asked) kept for the janitor to probe.
    pub rumor_capacity: usize,
    /// How long the janitor leaves a probed path alone (`Janitor_BLACKLIST_PATH_FOR_…` = 30 s).
    pub blacklist_for: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: version::CURRENT,
            scheme: EncodingScheme::v358(),
            node_capacity: 128,
            max_peers: 256,
            janitor_interval: Duration::from_millis(1000),
            max_searches: 30,
            search_max_requests: 20,
            max_in_flight: 512,
            rumor_capacity: 64,
            blacklist_for: Duration::from_secs(30),
        }
    }
}

/// Who sent a CJDHT message, as the session layer knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    /// The session's remote key.
    pub key: PublicKey,
    /// Path from this node to the sender: the arrival label bit-reversed, as the
    /// SessionManager puts it in the RouteHeader. Replies to the sender's queries go there.
    pub path: Label,
    /// The sender's protocol version as the session layer knows it (0 if unknown; the `p` in
    /// the message wins).
    pub version: u32,
}

/// A CJDHT message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Destination key (the end-to-end session to use).
    pub key: PublicKey,
    /// Destination address.
    pub address: Address,
    /// Path label to send it on.
    pub path: Label,
    /// Destination's protocol version (0 if unknown).
    pub version: u32,
    /// The bencoded message; send it after a DataHeader of content type 256.
    pub payload: Vec<u8>,
}

/// Something the session layer should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A node is reachable on `path` (new node, better path, or a search found it).
    PathFound {
        /// Its address.
        address: Address,
        /// Its key.
        key: PublicKey,
        /// Path label from this node.
        path: Label,
        /// Its protocol version.
        version: u32,
    },
    /// A node's path went away (its peer link went down or a switch reported it broken).
    PathLost {
        /// Its address.
        address: Address,
        /// Its key.
        key: PublicKey,
    },
    /// A search ended without reaching its target.
    SearchFailed {
        /// What was searched for.
        target: Address,
    },
}

/// What [`Pathfinder::lookup`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum LookupStatus {
    /// The node is known and reachable; no search was needed.
    Known(NodeInfo),
    /// A search started; its result comes as [`Event::PathFound`] or [`Event::SearchFailed`].
    Started,
    /// A search for this target is already running.
    AlreadyRunning,
    /// No node is known to ask (no peers yet); nothing was started.
    NoNodesToAsk,
    /// [`Config::max_searches`] are running; nothing was started.
    TooManySearches,
    /// The target is this node's own address.
    OwnAddress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// A plain liveness check.
    Ping,
    /// `gp` whose answer feeds the rumor mill.
    Peers,
    /// `fn` for keyspace maintenance.
    Keyspace,
    /// Part of a search.
    Search(u64),
}

#[derive(Debug, Clone)]
struct Pending {
    key: PublicKey,
    path: Label,
    sent: Instant,
    deadline: Instant,
    cookie: u64,
    purpose: Purpose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    key: PublicKey,
    path: Label,
    version: u32,
}

#[derive(Debug, Clone)]
struct Search {
    target: [u8; 16],
    stack: Vec<Candidate>,
    asked: VecDeque<PublicKey>,
    requests: u32,
    in_flight: u32,
    last_asked_path: Option<Label>,
    /// When to ask the next candidate without waiting for the last one.
    continue_at: Option<Instant>,
}

/// SplitMix64: small, seedable, good enough for jitter and transaction cookies (replies are
/// authenticated by the session layer; the cookie only guards against confusion).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// Mean response time over the last 256 seconds (`AverageRoller`), one bucket per second.
#[derive(Debug, Clone)]
struct MeanResponse {
    origin: Instant,
    buckets: VecDeque<(u64, u64, u64)>,
    last: u64,
}

impl MeanResponse {
    fn new(now: Instant) -> Self {
        let mut m = Self {
            origin: now,
            buckets: VecDeque::new(),
            last: GMRT_INITIAL_MS,
        };
        m.update(now, GMRT_INITIAL_MS);
        m
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    fn expire(&mut self, now: Instant) {
        let s = self.second(now);
        while self
            .buckets
            .front()
            .is_some_and(|b| s.saturating_sub(b.0) >= GMRT_WINDOW_SECS)
        {
            self.buckets.pop_front();
        }
    }

    fn update(&mut self, now: Instant, ms: u64) {
        self.expire(now);
        let s = self.second(now);
        match self.buckets.back_mut() {
            Some(b) if b.0 == s => {
                b.1 = b.1.saturating_add(ms);
                b.2 += 1;
            }
            _ => self.buckets.push_back((s, ms, 1)),
        }
        self.last = self.average(now);
    }

    fn average(&mut self, now: Instant) -> u64 {
        self.expire(now);
        let (sum, count) = self
            .buckets
            .iter()
            .fold((0u64, 0u64), |(s, c), b| (s.saturating_add(b.1), c + b.2));
        sum.checked_div(count).unwrap_or(self.last)
    }
}

/// A node heard of but not yet asked (`RumorMill` entry).
type Rumor = Candidate;

/// The legacy DHT pathfinder. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct Pathfinder {
    key: PublicKey,
    address: Address,
    config: Config,
    store: NodeStore,
    rng: Rng,
    gmrt: MeanResponse,
    pending: BTreeMap<u32, Pending>,
    next_handle: u32,
    searches: BTreeMap<u64, Search>,
    next_search: u64,
    rumors: Vec<Rumor>,
    dht_mill: Vec<Rumor>,
    blacklist: VecDeque<(Label, Instant)>,
    janitor_at: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Pathfinder {
    /// A pathfinder for the node with public key `key`. `seed` drives timer jitter and
    /// transaction ids; take it from the OS.
    pub fn new(now: Instant, key: PublicKey, config: Config, seed: u64) -> Self {
        let mut rng = Rng(seed);
        let next_handle = rng.next() as u32;
        let mut pf = Self {
            key,
            address: key.address(),
            config,
            store: NodeStore::new(key, config.scheme, config.node_capacity, config.max_peers),
            rng,
            gmrt: MeanResponse::new(now),
            pending: BTreeMap::new(),
            next_handle,
            searches: BTreeMap::new(),
            next_search: 0,
            rumors: Vec::new(),
            dht_mill: Vec::new(),
            blacklist: VecDeque::new(),
            janitor_at: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        pf.janitor_at = now + pf.janitor_delay();
        pf
    }

    /// This node's key.
    pub fn key(&self) -> PublicKey {
        self.key
    }

    /// This node's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// A stored node.
    pub fn node(&self, address: &Address) -> Option<NodeInfo> {
        self.store.get(address).map(|n| n.info())
    }

    /// All stored nodes, in keyspace order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeInfo> + '_ {
        self.store.iter().map(|n| n.info())
    }

    /// Number of stored nodes.
    pub fn node_count(&self) -> usize {
        self.store.len()
    }

    /// Number of searches running.
    pub fn search_count(&self) -> usize {
        self.searches.len()
    }

    /// Number of our queries awaiting a reply.
    pub fn queries_in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Next message to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Pathfinder::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.deadline);
        let searches = self.searches.values().filter_map(|s| s.continue_at);
        pending
            .chain(searches)
            .chain(std::iter::once(self.janitor_at))
            .min()
    }

    /// A direct peer reached the ESTABLISHED state on one-hop `label` (`PFChan_Core_PEER`).
    /// Emits [`Event::PathFound`] for it and asks it for its peers.
    pub fn peer_up(
        &mut self,
        now: Instant,
        key: PublicKey,
        label: Label,
        version: u32,
    ) -> Result<(), DhtError> {
        if key == self.key {
            return Err(DhtError::FromSelf);
        }
        if !self.config.scheme.is_one_hop(label) {
            return Err(DhtError::NotOneHop(label));
        }
        if let PathUpdate::Changed(path) = self.store.add_peer(key, label, version) {
            self.path_found(key, path, version);
        }
        // cjdns asks every new peer for its peers, starting at label 0.
        self.send_query(
            now,
            key,
            label,
            version,
            Query::GetPeers(Target::Label(0)),
            Purpose::Peers,
        );
        Ok(())
    }

    /// The peer on `label` disconnected or became unresponsive (`PFChan_Core_PEER_GONE`). It
    /// and every node reached through it lose their path ([`Event::PathLost`]).
    pub fn peer_down(&mut self, _now: Instant, label: Label) {
        for lost in self.store.remove_peer(label) {
            self.push_event(Event::PathLost {
                address: lost.address,
                key: lost.key,
            });
        }
    }

    /// Like [`Pathfinder::peer_down`], for the peer with this key.
    pub fn peer_down_key(&mut self, now: Instant, key: &PublicKey) {
        let label = self.store.get(&key.address()).and_then(|n| n.peer_label);
        if let Some(label) = label {
            self.peer_down(now, label);
        }
    }

    /// Sends a `pn` to `key` on `path`; an answer refreshes the node (and, when it is new,
    /// adds it to the store with [`Event::PathFound`]).
    pub fn ping(&mut self, now: Instant, key: PublicKey, path: Label, version: u32) {
        self.send_query(now, key, path, version, Query::Ping, Purpose::Ping);
    }

    /// A switch ERROR came back for a packet sent on `path` (`PFChan_Core_SWITCH_ERR`): the node
    /// whose best path that is loses it, and a search for it starts.
    pub fn switch_error(&mut self, now: Instant, path: Label) {
        if let Some(lost) = self.store.break_path(path) {
            self.push_event(Event::PathLost {
                address: lost.address,
                key: lost.key,
            });
            let _ = self.lookup(now, lost.address);
        }
    }

    /// The session layer saw traffic from a node on a new path (`PFChan_Core_DISCOVERED_PATH`).
    /// A shorter path to a node we already know is queued to be probed.
    pub fn discovered_path(&mut self, _now: Instant, key: PublicKey, path: Label) {
        let Some(node) = self.store.get(&key.address()) else {
            return;
        };
        if node.path.is_some_and(|p| p.bits() <= path.bits()) {
            return;
        }
        let version = node.version;
        self.add_rumor(Rumor { key, path, version });
    }

    /// Finds a path to `target` (`PFChan_Core_SEARCH_REQ`).
    pub fn lookup(&mut self, now: Instant, target: Address) -> LookupStatus {
        if target == self.address {
            return LookupStatus::OwnAddress;
        }
        if let Some(n) = self.store.get(&target).filter(|n| n.reachable()) {
            return LookupStatus::Known(n.info());
        }
        let t = *target.as_bytes();
        if self.searches.values().any(|s| s.target == t) {
            return LookupStatus::AlreadyRunning;
        }
        if self.searches.len() >= self.config.max_searches {
            return LookupStatus::TooManySearches;
        }
        let count = self.config.search_max_requests as usize;
        let stack: Vec<Candidate> = self
            .store
            .closest(&t, count.min(SEARCH_NODES), version::CURRENT)
            .into_iter()
            .filter_map(|n| {
                n.path.map(|path| Candidate {
                    key: n.key,
                    path,
                    version: n.version,
                })
            })
            .collect();
        if stack.is_empty() {
            return LookupStatus::NoNodesToAsk;
        }
        let id = self.next_search;
        self.next_search += 1;
        self.searches.insert(
            id,
            Search {
                target: t,
                stack,
                asked: VecDeque::new(),
                requests: 0,
                in_flight: 0,
                last_asked_path: None,
                continue_at: None,
            },
        );
        self.search_step(now, id);
        LookupStatus::Started
    }

    /// Handles one CJDHT message (the bytes after the DataHeader) from `from`. Answers to
    /// queries are queued for [`Pathfinder::poll_transmit`]; replies to our queries update the
    /// store, searches and janitor. An error means the message was dropped and nothing changed.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: Sender,
        bytes: &[u8],
    ) -> Result<(), DhtError> {
        if from.key == self.key {
            return Err(DhtError::FromSelf);
        }
        let msg = Message::parse(bytes)?;
        if msg.version < version::MINIMUM_COMPATIBLE {
            return Err(DhtError::IncompatibleVersion(msg.version));
        }
        match &msg.body {
            Body::Query(q) => {
                self.answer(from, &msg, q);
                Ok(())
            }
            Body::Reply(r) => self.on_reply(now, from, &msg, r),
        }
    }

    /// Runs whatever is due: query timeouts, search steps and the janitor.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(h, _)| *h)
            .collect();
        for h in expired {
            if let Some(p) = self.pending.remove(&h) {
                // A node that stops answering is no longer handed out; the session layer keeps
                // its path until something better or a PathLost comes along.
                let _ = self.store.on_timeout(&p.key, p.path);
                if let Purpose::Search(id) = p.purpose {
                    if let Some(s) = self.searches.get_mut(&id) {
                        s.in_flight = s.in_flight.saturating_sub(1);
                        self.search_step(now, id);
                    }
                }
            }
        }
        let due: Vec<u64> = self
            .searches
            .iter()
            .filter(|(_, s)| s.continue_at.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.search_step(now, id);
        }
        if self.janitor_at <= now {
            self.janitor_at = now + self.janitor_delay();
            self.janitor_cycle(now);
        }
    }

    // --------------------------------------------------------------------------------------
    // Answering queries (ReplyModule + RouterModule.handleQuery + EncodingSchemeModule)
    // --------------------------------------------------------------------------------------

    fn answer(&mut self, from: Sender, msg: &Message, q: &Query) {
        let asker = from.path;
        let scheme = self.config.scheme;
        let mut nodes: Vec<NodeEntry> = Vec::new();
        let mut add = |key: PublicKey, label: u64, version: u32| {
            let Ok(label) = Label::new(label) else { return };
            if let Ok(l) = scheme.get_label_for(label, asker) {
                nodes.push(NodeEntry {
                    key,
                    label: l.bits(),
                    version,
                });
            }
        };
        match q {
            Query::Other { q, .. } if q.as_slice() == b"sq" => return,
            Query::FindNode(Target::Address(t)) => {
                for n in self.store.closest(t, K, msg.version) {
                    if let (Some(p), false) = (n.path, n.dnd) {
                        add(n.key, p.bits(), n.version);
                    }
                }
            }
            Query::GetPeers(Target::Label(l)) => {
                for (key, label, version) in self.store.peers_from(*l, K, self.config.version) {
                    add(key, label, version);
                }
            }
            Query::NextHop(Target::Address(t)) => {
                if let Some(n) = self.store.best_next_hop(t) {
                    if let (Some(p), false) = (n.path, n.dnd) {
                        add(n.key, p.bits(), n.version);
                    }
                }
            }
            _ => {}
        }
        let reply = Message {
            txid: msg.txid.clone(),
            version: self.config.version,
            scheme: Some(scheme),
            encoding_index: scheme.form_index(asker.bits()).unwrap_or(0) as u32,
            body: Body::Reply(Reply {
                nodes,
                dnd: false,
                node_list_error: None,
            }),
        };
        self.push_transmit(Transmit {
            key: from.key,
            address: from.key.address(),
            path: from.path,
            version: msg.version,
            payload: reply.to_bytes(),
        });
    }

    // --------------------------------------------------------------------------------------
    // Our queries (RouterModule_newMessage + Pinger + SerializationModule)
    // --------------------------------------------------------------------------------------

    fn search_timeout(&mut self, now: Instant) -> Duration {
        let x = self.gmrt.average(now).saturating_mul(4);
        let x = x + self.rng.below(x | 1) / 2;
        Duration::from_millis(x.clamp(SEARCH_TIMEOUT_MS.0, SEARCH_TIMEOUT_MS.1))
    }

    fn ping_timeout(&mut self, now: Instant) -> Duration {
        let x = self.gmrt.average(now).saturating_mul(10);
        Duration::from_millis(x.clamp(PING_TIMEOUT_MS.0, PING_TIMEOUT_MS.1))
    }

    fn janitor_delay(&mut self) -> Duration {
        // Bounded to a day so that no configuration can overflow the clock arithmetic.
        let half = (self.config.janitor_interval.as_millis() / 2).clamp(1, 43_200_000) as u64;
        Duration::from_millis(half + self.rng.below(half * 2))
    }

    /// Queues a query; returns false when too many are in flight.
    fn send_query(
        &mut self,
        now: Instant,
        key: PublicKey,
        path: Label,
        version: u32,
        query: Query,
        purpose: Purpose,
    ) -> bool {
        if self.pending.len() >= self.config.max_in_flight || key == self.key {
            return false;
        }
        let mut handle = self.next_handle;
        while self.pending.contains_key(&handle) {
            handle = handle.wrapping_add(1);
        }
        self.next_handle = handle.wrapping_add(1);
        let cookie = self.rng.next();
        // SerializationModule prefixes our txids with "00"; Pinger puts handle and cookie.
        let mut txid = Vec::with_capacity(14);
        txid.extend_from_slice(b"00");
        txid.extend_from_slice(&handle.to_le_bytes());
        txid.extend_from_slice(&cookie.to_le_bytes());
        let msg = Message {
            txid,
            version: self.config.version,
            scheme: Some(self.config.scheme),
            encoding_index: self.config.scheme.form_index(path.bits()).unwrap_or(0) as u32,
            body: Body::Query(query),
        };
        let deadline = now + self.ping_timeout(now);
        self.pending.insert(
            handle,
            Pending {
                key,
                path,
                sent: now,
                deadline,
                cookie,
                purpose,
            },
        );
        if let Some(n) = self.store.get_mut(&key.address()) {
            n.last_queried = Some(now);
        }
        self.push_transmit(Transmit {
            key,
            address: key.address(),
            path,
            version,
            payload: msg.to_bytes(),
        });
        true
    }

    fn on_reply(
        &mut self,
        now: Instant,
        from: Sender,
        msg: &Message,
        reply: &Reply,
    ) -> Result<(), DhtError> {
        let txid = msg.txid.as_slice();
        let (Some(b"00"), Some(h), Some(c)) = (
            txid.get(..2),
            txid.get(2..6).and_then(|b| <[u8; 4]>::try_from(b).ok()),
            txid.get(6..14).and_then(|b| <[u8; 8]>::try_from(b).ok()),
        ) else {
            return Err(DhtError::UnknownTransaction);
        };
        let handle = u32::from_le_bytes(h);
        match self.pending.get(&handle) {
            Some(p) if p.cookie == u64::from_le_bytes(c) && txid.len() == 14 => {
                if p.key != from.key {
                    return Err(DhtError::WrongResponder);
                }
            }
            _ => return Err(DhtError::UnknownTransaction),
        }
        let Some(p) = self.pending.remove(&handle) else {
            return Err(DhtError::UnknownTransaction);
        };
        let rtt = now.saturating_duration_since(p.sent);
        self.gmrt.update(now, rtt.as_millis() as u64);
        let update = self.store.on_reply(
            now,
            from.key,
            p.path,
            msg.version,
            msg.scheme,
            msg.encoding_index,
            rtt,
            reply.dnd,
        );
        let announced = matches!(update, PathUpdate::Changed(_));
        if let PathUpdate::Changed(path) = update {
            self.path_found(from.key, path, msg.version);
        }
        // Node lists are relative to the responder: splice them onto the path we asked it on.
        let responder = Candidate {
            key: from.key,
            path: p.path,
            version: msg.version,
        };
        let entries = self.spliced(&reply.nodes, p.path);
        match p.purpose {
            Purpose::Ping => {}
            Purpose::Peers => {
                self.on_peers_reply(from.key, &reply.nodes, &entries);
            }
            Purpose::Keyspace => self.on_keyspace_reply(&responder, &entries),
            Purpose::Search(id) => {
                self.on_search_reply(now, id, &responder, p.path, &entries, announced)
            }
        }
        Ok(())
    }

    /// Node-list entries made relative to us (`ReplySerializer_parse` with splicing): entries
    /// whose label is zero, cannot be spliced, or whose key is not a valid cjdns key are
    /// dropped, as is our own key.
    fn spliced(&self, nodes: &[NodeEntry], via: Label) -> Vec<Candidate> {
        nodes
            .iter()
            .filter(|e| e.key != self.key && e.key.address().is_valid())
            .filter_map(|e| {
                let label = Label::new(e.label).ok()?;
                let path = Label::splice(label, via).ok()?;
                Some(Candidate {
                    key: e.key,
                    path,
                    version: e.version,
                })
            })
            .collect()
    }

    // --------------------------------------------------------------------------------------
    // Searches (SearchRunner + SearchStore)
    // --------------------------------------------------------------------------------------

    fn search_step(&mut self, now: Instant, id: u64) {
        let max = self.config.search_max_requests;
        let Some(s) = self.searches.get_mut(&id) else {
            return;
        };
        let next = loop {
            if s.requests >= max {
                break None;
            }
            match s.stack.pop() {
                None => break None,
                Some(c) if s.asked.contains(&c.key) => continue,
                Some(c) => break Some(c),
            }
        };
        let Some(c) = next else {
            // Nothing left to ask: wait for what is in flight, then give up.
            s.continue_at = None;
            if s.in_flight == 0 {
                let target = Address::from_bytes(s.target);
                self.searches.remove(&id);
                self.push_event(Event::SearchFailed { target });
            }
            return;
        };
        if s.asked.len() >= SEARCH_NODES {
            s.asked.pop_front();
        }
        s.asked.push_back(c.key);
        s.last_asked_path = Some(c.path);
        let target = s.target;
        // cjdns asks the target itself with `gp` and the 16-byte address as `tar`, which a
        // stock node answers with an empty reply: in effect a ping.
        let query = if c.key.address().as_bytes() == &target {
            Query::GetPeers(Target::Address(target))
        } else {
            Query::FindNode(Target::Address(target))
        };
        let sent = self.send_query(now, c.key, c.path, c.version, query, Purpose::Search(id));
        let wait = self.search_timeout(now);
        if let Some(s) = self.searches.get_mut(&id) {
            if sent {
                s.requests += 1;
                s.in_flight += 1;
            } else {
                s.stack.push(c);
                s.asked.pop_back();
            }
            s.continue_at = Some(now + wait);
        }
    }

    fn on_search_reply(
        &mut self,
        now: Instant,
        id: u64,
        from: &Candidate,
        asked_path: Label,
        entries: &[Candidate],
        announced: bool,
    ) {
        let Some(s) = self.searches.get_mut(&id) else {
            return;
        };
        s.in_flight = s.in_flight.saturating_sub(1);
        let target = s.target;
        if from.key.address().as_bytes() == &target {
            self.searches.remove(&id);
            // The store has the node now; report its best path even if unchanged (the session
            // layer asked), unless the reply itself just reported it.
            if !announced {
                let path = self
                    .store
                    .get(&from.key.address())
                    .and_then(|n| n.path)
                    .unwrap_or(from.path);
                self.path_found(from.key, path, from.version);
            }
            return;
        }
        let late = s.last_asked_path != Some(asked_path);
        let from_addr = *from.key.address().as_bytes();
        let from_dist = store::distance(&target, &from_addr);
        let mut best: Option<Candidate> = None;
        let mut rumors = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            // Duplicates: only the last entry for a key counts (what cjdns' isDuplicateEntry
            // meant to do; as written it keeps only the last entry of the whole list).
            if entries
                .get(i + 1..)
                .unwrap_or_default()
                .iter()
                .any(|x| x.key == e.key)
            {
                continue;
            }
            let addr = *e.key.address().as_bytes();
            if store::distance(&target, &addr) >= from_dist || late {
                continue;
            }
            if !self
                .store
                .get(&e.key.address())
                .is_some_and(|n| n.reachable())
            {
                rumors.push(Rumor {
                    key: e.key,
                    path: e.path,
                    version: e.version,
                });
            }
            if addr == target {
                if let Some(b) = best {
                    if e.path.bits() < b.path.bits() {
                        push_candidate(&mut s.stack, b);
                        best = Some(*e);
                    } else {
                        push_candidate(&mut s.stack, *e);
                    }
                } else {
                    best = Some(*e);
                }
                continue;
            }
            push_candidate(&mut s.stack, *e);
        }
        if let Some(b) = best {
            push_candidate(&mut s.stack, b);
        }
        for r in rumors {
            self.add_rumor(r);
        }
        self.search_step(now, id);
    }

    // --------------------------------------------------------------------------------------
    // The janitor
    // --------------------------------------------------------------------------------------

    fn janitor_cycle(&mut self, now: Instant) {
        self.blacklist
            .retain(|(_, t)| now.saturating_duration_since(*t) < self.config.blacklist_for);
        // 1. A rumoured node (from searches, peer lists, discovered paths): ask for its peers.
        let mut probed = false;
        while let Some(r) = self.take_best_rumor() {
            if self.blacklist.iter().any(|(p, _)| *p == r.path) {
                continue;
            }
            self.blacklist_path(now, r.path);
            probed = self.send_query(
                now,
                r.key,
                r.path,
                r.version,
                Query::GetPeers(Target::Label(0)),
                Purpose::Peers,
            );
            break;
        }
        // Otherwise page through the peers of a random known node.
        if !probed {
            let reachable: Vec<(PublicKey, Label, u32, u64)> = self
                .store
                .iter()
                .filter(|n| n.reachable())
                .filter_map(|n| n.path.map(|p| (n.key, p, n.version, n.gp_cursor)))
                .collect();
            if !reachable.is_empty() {
                let i = self.rng.below(reachable.len() as u64) as usize;
                if let Some(&(key, path, version, cursor)) = reachable.get(i) {
                    self.send_query(
                        now,
                        key,
                        path,
                        version,
                        Query::GetPeers(Target::Label(cursor)),
                        Purpose::Peers,
                    );
                }
            }
        }
        // 2. Re-check the node we have heard from least recently (tryExistingNode).
        let quiet = Duration::from_millis(PING_TIMEOUT_MS.0);
        let stale = self
            .store
            .iter()
            .filter(|n| n.path.is_some())
            .filter(|n| {
                n.last_queried
                    .is_none_or(|t| now.saturating_duration_since(t) >= quiet)
            })
            .min_by_key(|n| n.last_heard)
            .and_then(|n| n.path.map(|p| (n.key, p, n.version, n.gp_cursor)));
        if let Some((key, path, version, cursor)) = stale {
            self.send_query(
                now,
                key,
                path,
                version,
                Query::GetPeers(Target::Label(cursor)),
                Purpose::Peers,
            );
        }
        // 3. Keyspace: for each bucket keep asking its nodes for nodes nearer to us.
        self.keyspace_maintenance(now);
    }

    fn keyspace_maintenance(&mut self, now: Instant) {
        let own = store::rotated(self.address.as_bytes());
        if self.dht_mill.is_empty() {
            let mut per_bucket: HashMap<u32, usize> = HashMap::new();
            let mut fill = Vec::new();
            for n in self.store.iter().filter(|n| n.reachable()) {
                let bucket = (own ^ store::rotated(n.address.as_bytes())).leading_zeros();
                let c = per_bucket.entry(bucket).or_insert(0);
                if *c < BUCKET_SIZE {
                    *c += 1;
                    if let Some(path) = n.path {
                        fill.push(Rumor {
                            key: n.key,
                            path,
                            version: n.version,
                        });
                    }
                }
            }
            self.dht_mill = fill;
            return;
        }
        let Some(r) = self.dht_mill.pop() else { return };
        let rot = store::rotated(r.key.address().as_bytes());
        let known_here = self
            .store
            .get(&r.key.address())
            .is_some_and(|n| n.path == Some(r.path));
        if known_here {
            let bucket = (own ^ rot).leading_zeros();
            // NodeStore_addrForBucket: the node's address with the first bit where it differs
            // from ours flipped, i.e. a target between it and us.
            let target = store::unrotated(rot ^ (1u128 << (127 - bucket.min(127))));
            self.send_query(
                now,
                r.key,
                r.path,
                r.version,
                Query::FindNode(Target::Address(target)),
                Purpose::Keyspace,
            );
        } else {
            self.send_query(now, r.key, r.path, r.version, Query::Ping, Purpose::Ping);
        }
    }

    /// `peersResponseCallback`: peers we do not know (or know by a worse path) are rumours.
    fn on_peers_reply(&mut self, from: PublicKey, raw: &[NodeEntry], entries: &[Candidate]) {
        // Page on: after a full page continue past its largest label, else start over.
        let next_cursor = if raw.len() >= K {
            raw.iter()
                .map(|e| e.label)
                .max()
                .map_or(0, |l| l.saturating_add(1))
        } else {
            0
        };
        if let Some(n) = self.store.get_mut(&from.address()) {
            n.gp_cursor = next_cursor;
        }
        for e in entries {
            if e.key == from {
                continue;
            }
            let interesting = match self.store.get(&e.key.address()) {
                None => true,
                Some(n) => {
                    !n.reachable()
                        || n.path
                            .is_some_and(|p| p != e.path && e.path.log2() < p.log2())
                }
            };
            if interesting {
                self.add_rumor(*e);
            }
        }
    }

    /// `dhtResponseCallback`: nodes at least as close to us as the replier are worth knowing.
    fn on_keyspace_reply(&mut self, from: &Candidate, entries: &[Candidate]) {
        let own = *self.address.as_bytes();
        let from_dist = store::distance(&own, from.key.address().as_bytes());
        for e in entries {
            if store::distance(&own, e.key.address().as_bytes()) > from_dist {
                continue;
            }
            if self
                .store
                .get(&e.key.address())
                .is_some_and(|n| n.path == Some(e.path))
            {
                continue;
            }
            self.add_rumor(*e);
        }
    }

    fn blacklist_path(&mut self, now: Instant, path: Label) {
        self.blacklist.retain(|(p, _)| *p != path);
        if self.blacklist.len() >= BLACKLIST_LEN {
            self.blacklist.pop_front();
        }
        self.blacklist.push_back((path, now));
    }

    /// `RumorMill` badness: keyspace distance (first 64 rotated bits) plus path length.
    fn badness(&self, r: &Rumor) -> u32 {
        let d = (store::distance(self.address.as_bytes(), r.key.address().as_bytes()) >> 64) as u64;
        (63 - d.leading_zeros().min(63)) + r.path.log2()
    }

    fn add_rumor(&mut self, r: Rumor) {
        if r.key == self.key
            || self
                .rumors
                .iter()
                .any(|x| x.key == r.key && x.path == r.path)
        {
            return;
        }
        if self.rumors.len() < self.config.rumor_capacity {
            self.rumors.push(r);
            return;
        }
        let worst = self
            .rumors
            .iter()
            .enumerate()
            .max_by_key(|(_, x)| self.badness(x))
            .map(|(i, x)| (i, self.badness(x)));
        if let Some((i, bad)) = worst {
            if self.badness(&r) < bad {
                if let Some(slot) = self.rumors.get_mut(i) {
                    *slot = r;
                }
            }
        }
    }

    fn take_best_rumor(&mut self) -> Option<Rumor> {
        let i = self
            .rumors
            .iter()
            .enumerate()
            .min_by_key(|(_, x)| self.badness(x))
            .map(|(i, _)| i)?;
        Some(self.rumors.swap_remove(i))
    }

    // --------------------------------------------------------------------------------------
    // Output queues
    // --------------------------------------------------------------------------------------

    fn path_found(&mut self, key: PublicKey, path: Label, version: u32) {
        self.push_event(Event::PathFound {
            address: key.address(),
            key,
            path,
            version,
        });
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= QUEUE_LEN {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn push_transmit(&mut self, t: Transmit) {
        if self.transmits.len() >= QUEUE_LEN {
            self.transmits.pop_front();
        }
        self.transmits.push_back(t);
    }
}

fn push_candidate(stack: &mut Vec<Candidate>, c: Candidate) {
    // SearchStore: the stack holds 256; when full the newest entry replaces the top.
    if stack.len() >= SEARCH_NODES {
        stack.pop();
    }
    stack.push(c);
}

/// The node core drives the DHT through its pathfinder trait. Failures it has no use for
/// (malformed messages, refused lookups, [`Event::PathLost`], [`Event::SearchFailed`]) are
/// dropped here; use the inherent API to see them.
impl crate::pathfinding::Pathfinder for Pathfinder {
    fn peer_up(&mut self, now: Instant, peer: NodeRef) {
        let _ = Pathfinder::peer_up(self, now, peer.key, peer.path, peer.version);
    }

    fn peer_down(&mut self, now: Instant, peer: NodeRef) {
        self.peer_down_key(now, &peer.key);
    }

    fn handle_message(&mut self, now: Instant, from: NodeRef, message: &[u8]) {
        let from = Sender {
            key: from.key,
            path: from.path,
            version: from.version,
        };
        let _ = Pathfinder::handle_message(self, now, from, message);
    }

    fn search(&mut self, now: Instant, target: Address) {
        // Like cjdns' searchReq: a known node is reported again instead of searched for.
        if let LookupStatus::Known(n) = self.lookup(now, target) {
            if let Some(path) = n.path {
                self.path_found(n.key, path, n.version);
            }
        }
    }

    fn ping(&mut self, now: Instant, node: NodeRef) {
        Pathfinder::ping(self, now, node.key, node.path, node.version);
    }

    fn handle_timeout(&mut self, now: Instant) {
        Pathfinder::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Pathfinder::poll_timeout(self)
    }

    fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)> {
        Pathfinder::poll_transmit(self).map(|t| {
            let to = NodeRef {
                key: t.key,
                path: t.path,
                version: t.version,
            };
            (to, t.payload)
        })
    }

    fn poll_node(&mut self) -> Option<NodeRef> {
        while let Some(e) = self.poll_event() {
            if let Event::PathFound {
                key, path, version, ..
            } = e
            {
                return Some(NodeRef { key, path, version });
            }
        }
        None
    }

    fn node_for(&self, address: &Address) -> Option<NodeRef> {
        let n = self.store.get(address).filter(|n| n.reachable())?;
        Some(NodeRef {
            key: n.key,
            path: n.path?,
            version: n.version,
        })
    }
}
