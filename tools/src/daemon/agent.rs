//! The node's route-server agent: a thread that announces the node's links and lease offers to
//! its route server, fulfils buy orders for leases on its links, and fetches the lease messages
//! that concern the node (`docs/node.md`, "Leases and the route server").
//!
//! The main loop hands the agent a [`LinkSnapshot`] about once a second and receives signed
//! lease frames back, which it applies to the node's lease engine. The agent never touches the
//! node: a slow or absent route server delays configuration, never forwarding (fail open).
//! What goes on the wire is built by the pure functions [`announcement`] and
//! [`lease_for_order`]; this module's thread only moves it over HTTP.
//!
//! Link state: the main loop may also hand the agent the cumulative counters of each peer link
//! about once a second ([`Agent::update_counters`]). A [`LinkMeter`] turns them into 10-second
//! slots, and each announcement then carries, per announced peer, cjdns LINK_STATE for what we
//! received from it (kB and packets lost, the last three slots) and the pktmesh LINK_EGRESS
//! entity for what our egress port toward it sent, dropped and holds (`docs/route-server.md`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::wire::{Lease, Message};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_route_server::announce::{
    EntityRepr, LeaseOffer, LinkCapacity, LinkEgress, LinkSample, LinkStateRepr, PeerRepr,
    CURRENT_VERSION,
};
use pktmesh_route_server::{AnnounceSigner, AnnouncementRepr};
use pktmesh_switch::control::PROTOCOL_VERSION;
use pktmesh_switch::EncodingScheme;
use serde::Deserialize;
use tracing::{debug, info, warn};

/// What the node sells on each of its links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferSettings {
    /// Most kbit/s one lease may reserve.
    pub max_kbps: u32,
    /// Longest lease, seconds.
    pub max_seconds: u32,
    /// Asking price, millisatoshi per Mbit/s per hour.
    pub price_msat: u64,
}

/// How the node talks to its route server.
#[derive(Debug, Clone)]
pub struct RouteServerSettings {
    /// Base URL of the HTTP API, e.g. `http://10.0.0.1:8470`.
    pub url: String,
    /// The route server's cjdns address (announcements name it); unknown: the zero fc address.
    pub address: Option<Address>,
    /// Time between rounds.
    pub interval: Duration,
    /// Leases offered on every link, if any.
    pub offer: Option<OfferSettings>,
}

/// One established peer link as the agent needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLink {
    /// The peer's key.
    pub key: PublicKey,
    /// Our label for it.
    pub label: u64,
    /// Its label for us (RPATH), once known.
    pub path_to_us: Option<u64>,
    /// kbit/s of our active leases on the link towards it.
    pub leased_kbps: u32,
}

/// The node's links at one moment.
#[derive(Debug, Clone, Default)]
pub struct LinkSnapshot {
    /// Established peers.
    pub peers: Vec<PeerLink>,
    /// Egress capacity of each link, kbit/s (0: not configured).
    pub capacity_kbps: u32,
}

/// The announcement of our links: a reset carrying everything (scheme, version, one PEER per
/// peer whose label back to us is known, and the pktmesh capacity and offer entities).
pub fn announcement(
    signer: &AnnounceSigner,
    snode: Address,
    now_ms: u64,
    links: &LinkSnapshot,
    offer: Option<OfferSettings>,
) -> Result<Vec<u8>, pktmesh_route_server::announce::EmitError> {
    announcement_with(signer, snode, now_ms, links, offer, Vec::new())
}

/// [`announcement`] with `extra` entities at the end (link state from a [`LinkMeter`]).
pub fn announcement_with(
    signer: &AnnounceSigner,
    snode: Address,
    now_ms: u64,
    links: &LinkSnapshot,
    offer: Option<OfferSettings>,
    extra: Vec<EntityRepr>,
) -> Result<Vec<u8>, pktmesh_route_server::announce::EmitError> {
    let scheme = EncodingScheme::v358();
    let mut entities = vec![
        EntityRepr::EncodingScheme(scheme),
        EntityRepr::Version(PROTOCOL_VERSION as u16),
    ];
    for p in &links.peers {
        let Some(back) = p.path_to_us else { continue };
        // The PEER entity's label is the peer's label for us (32 bits in cjdns).
        let Ok(label) = u32::try_from(back) else {
            continue;
        };
        let peer_num = (p.label & 0xffff) as u16;
        entities.push(EntityRepr::Peer(PeerRepr {
            encoding_form: scheme.form_index(p.label).unwrap_or(0) as u8,
            flags: 0,
            mtu8: 0,
            peer_num,
            unused: 0xffff_ffff,
            ip: p.key.address(),
            label,
        }));
        if links.capacity_kbps > 0 {
            entities.push(EntityRepr::LinkCapacity(LinkCapacity {
                peer_num,
                flags: 0,
                capacity_kbps: links.capacity_kbps,
                leased_kbps: p.leased_kbps,
            }));
        }
        if let Some(o) = offer {
            entities.push(EntityRepr::LeaseOffer(LeaseOffer {
                peer_num,
                kbps: o.max_kbps,
                max_seconds: o.max_seconds,
                price_msat_per_mbit_hour: o.price_msat,
            }));
        }
    }
    entities.extend(extra);
    AnnouncementRepr {
        snode_ip: snode,
        timestamp_ms: now_ms,
        reset: true,
        version: CURRENT_VERSION,
        entities,
    }
    .emit_signed(signer)
}

/// Cumulative counters of one peer link (what `Node::peer_stats` and `Node::egress_stats`
/// report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkCounters {
    /// The peer.
    pub peer: PublicKey,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Packets from it that never arrived (nonces that left the replay window unseen).
    pub lost_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// Packets our egress port toward it dropped (0 without a paced port).
    pub egress_dropped: u64,
    /// Packets waiting in that port now.
    pub egress_queued: usize,
}

/// Length of a link-state slot (cjdns: 10 s).
const SLOT_MS: u64 = 10_000;
/// Slots of LINK_STATE each announcement carries.
const SLOTS_SENT: usize = 3;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    bytes_in: u64,
    lost_in: u64,
    bytes_out: u64,
    dropped: u64,
}

#[derive(Debug, Default)]
struct PeerMeter {
    last: Option<LinkCounters>,
    slots: VecDeque<(u64, Slot)>,
    queued: usize,
}

/// Turns counter samples into per-slot link state (pure: time is an argument).
#[derive(Debug, Default)]
pub struct LinkMeter {
    peers: HashMap<PublicKey, PeerMeter>,
}

impl LinkMeter {
    /// Adds the counters sampled at `now_ms`: what grew since the last sample goes to the
    /// current 10-second slot (a counter that went back, after a reconnect, starts afresh).
    pub fn sample(&mut self, now_ms: u64, counters: &[LinkCounters]) {
        let slot = now_ms / SLOT_MS;
        for c in counters {
            let m = self.peers.entry(c.peer).or_default();
            let grow = |new: u64, old: u64| new.saturating_sub(old);
            if let Some(last) = m.last {
                if m.slots.back().is_none_or(|(s, _)| *s != slot) {
                    m.slots.push_back((slot, Slot::default()));
                }
                if let Some((_, cur)) = m.slots.back_mut() {
                    cur.bytes_in += grow(c.bytes_in, last.bytes_in);
                    cur.lost_in += grow(c.lost_in, last.lost_in);
                    cur.bytes_out += grow(c.bytes_out, last.bytes_out);
                    cur.dropped += grow(c.egress_dropped, last.egress_dropped);
                }
            }
            while m.slots.len() > SLOTS_SENT + 1 {
                m.slots.pop_front();
            }
            m.last = Some(*c);
            m.queued = c.egress_queued;
        }
        let live: HashSet<PublicKey> = counters.iter().map(|c| c.peer).collect();
        self.peers.retain(|k, _| live.contains(k));
    }

    /// LINK_STATE and LINK_EGRESS entities for the peers `peer_num` numbers, at `now_ms`: the
    /// last [`SLOTS_SENT`] slots up to the current one (empty slots as zero), and the egress of
    /// the last complete slot (or the current one at start).
    pub fn entities(
        &self,
        now_ms: u64,
        peer_num: impl Fn(&PublicKey) -> Option<u16>,
    ) -> Vec<EntityRepr> {
        let now_slot = now_ms / SLOT_MS;
        let mut out = Vec::new();
        let mut peers: Vec<_> = self.peers.iter().collect();
        peers.sort_by_key(|(k, _)| *k.as_bytes());
        for (key, m) in peers {
            let Some(num) = peer_num(key) else { continue };
            if m.slots.is_empty() {
                continue;
            }
            let at = |slot: u64| {
                m.slots
                    .iter()
                    .find(|(s, _)| *s == slot)
                    .map(|(_, v)| *v)
                    .unwrap_or_default()
            };
            let first = now_slot.saturating_sub(SLOTS_SENT as u64 - 1);
            let samples = (first..=now_slot)
                .map(|s| {
                    let v = at(s);
                    LinkSample {
                        lag: 0,
                        drops: v.lost_in.min(u64::from(u16::MAX)) as u16,
                        kb_recv: (v.bytes_in / 1000).min(u64::from(u32::MAX)) as u32,
                    }
                })
                .collect();
            out.push(EntityRepr::LinkState(LinkStateRepr {
                node_id: num,
                start_slot: 0,
                samples,
            }));
            let (slot, egress) = if m.slots.iter().any(|(s, _)| *s + 1 == now_slot) {
                (now_slot - 1, at(now_slot - 1))
            } else {
                (now_slot, at(now_slot))
            };
            let seconds = if slot == now_slot {
                ((now_ms % SLOT_MS) / 1000).max(1)
            } else {
                SLOT_MS / 1000
            };
            out.push(EntityRepr::LinkEgress(LinkEgress {
                peer_num: num,
                queued: m.queued.min(usize::from(u16::MAX)) as u16,
                sent_kbps: (egress.bytes_out * 8 / 1000 / seconds).min(u64::from(u32::MAX)) as u32,
                drops: egress.dropped.min(u64::from(u32::MAX)) as u32,
            }));
        }
        out
    }
}

/// A buy order as `GET /orders/pending` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct PendingOrder {
    /// Order id (hex).
    pub id: String,
    /// Link's sending end (must be us).
    pub node: String,
    /// Link's receiving end.
    pub peer: String,
    /// kbit/s.
    pub kbps: u32,
    /// Start, unix seconds.
    pub start: u64,
    /// End, unix seconds.
    pub end: u64,
    /// Buyer's Ed25519 key (hex).
    pub buyer: String,
}

/// The lease that fulfils `order`, if the order is for one of our established links and
/// within our offer; `id` is the new lease's (random) id.
pub fn lease_for_order(
    me: &Signer,
    my_address: &Address,
    order: &PendingOrder,
    links: &LinkSnapshot,
    offer: OfferSettings,
    id: [u8; 16],
) -> Option<Lease> {
    if Address::parse(&order.node).ok()? != *my_address {
        return None;
    }
    let peer_address = Address::parse(&order.peer).ok()?;
    let peer = links
        .peers
        .iter()
        .find(|p| p.key.address() == peer_address)?;
    let span = order.end.checked_sub(order.start)?;
    if order.kbps == 0 || order.kbps > offer.max_kbps || span > u64::from(offer.max_seconds) {
        return None;
    }
    let mut owner = [0u8; 32];
    hex::decode_to_slice(&order.buyer, &mut owner).ok()?;
    Some(Lease {
        id: LeaseId(id),
        node: me.public(),
        peer: *peer.key.as_bytes(),
        kbps: order.kbps,
        start: UnixTime(order.start),
        end: UnixTime(order.end),
        owner: pktmesh_lease_engine::sign::SigningKey(owner),
    })
}

/// What the main loop hands the agent.
#[derive(Debug)]
enum Input {
    Links(LinkSnapshot),
    Counters(u64, Vec<LinkCounters>),
}

/// The agent thread's handle: feed it snapshots, collect lease frames.
#[derive(Debug)]
pub struct Agent {
    snapshots: Sender<Input>,
    frames: Receiver<Vec<u8>>,
    _thread: JoinHandle<()>,
}

impl Agent {
    /// Starts the agent of the node with `key`.
    pub fn start(key: PrivateKey, settings: RouteServerSettings) -> std::io::Result<Self> {
        let (snap_tx, snap_rx) = mpsc::channel();
        let (frame_tx, frame_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("route-server-agent".into())
            .spawn(move || run(&key, &settings, &snap_rx, &frame_tx))?;
        Ok(Self {
            snapshots: snap_tx,
            frames: frame_rx,
            _thread: thread,
        })
    }

    /// Hands the agent the node's current links.
    pub fn update(&self, links: LinkSnapshot) {
        let _ = self.snapshots.send(Input::Links(links));
    }

    /// Hands the agent the peer links' cumulative counters (about once a second), for the
    /// link state it announces.
    pub fn update_counters(&self, counters: Vec<LinkCounters>) {
        let _ = self.snapshots.send(Input::Counters(unix_ms(), counters));
    }

    /// The next lease frame fetched from the route server, if any.
    pub fn poll_frame(&self) -> Option<Vec<u8>> {
        self.frames.try_recv().ok()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Deserialize)]
struct OrdersReply {
    orders: Vec<PendingOrder>,
}

#[derive(Debug, Deserialize)]
struct FramesReply {
    frames: Vec<String>,
}

/// Largest route-server answer the agent reads; a longer one is cut there and fails to parse.
pub const MAX_REPLY: usize = 16 * 1024 * 1024;

/// Reads the route server's answer to `GET /orders/pending`: the orders it lists. Never panics.
pub fn parse_orders_reply(body: &[u8]) -> Result<Vec<PendingOrder>, serde_json::Error> {
    Ok(serde_json::from_slice::<OrdersReply>(body)?.orders)
}

/// Reads the route server's answer to `GET /frames`: the lease frames it lists, decoded from
/// hex (an entry that is not hex is skipped). Never panics.
pub fn parse_frames_reply(body: &[u8]) -> Result<Vec<Vec<u8>>, serde_json::Error> {
    let reply = serde_json::from_slice::<FramesReply>(body)?;
    Ok(reply
        .frames
        .iter()
        .filter_map(|f| hex::decode(f.trim()).ok())
        .collect())
}

struct Client {
    http: ureq::Agent,
    base: String,
    /// Whether the last request failed (to log a change once, not every round).
    failing: bool,
}

impl Client {
    fn note(&mut self, what: &str, result: Result<(), String>) {
        match result {
            Ok(()) => {
                if self.failing {
                    info!(url = %self.base, "route server reachable again");
                }
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    warn!(url = %self.base, %what, error = %e, "route server request failed; forwarding continues");
                } else {
                    debug!(url = %self.base, %what, error = %e, "route server request failed");
                }
                self.failing = true;
            }
        }
    }

    fn post_bytes(&self, path: &str, body: &[u8]) -> Result<(), String> {
        self.http
            .post(&format!("{}{path}", self.base))
            .set("content-type", "application/octet-stream")
            .send_bytes(body)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn post_frame(&self, frame: &[u8]) -> Result<(), String> {
        self.http
            .post(&format!("{}/leases", self.base))
            .send_json(serde_json::json!({ "frame": hex::encode(frame) }))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The body of `GET path`, at most [`MAX_REPLY`] bytes of it.
    fn get(&self, path: &str) -> Result<Vec<u8>, String> {
        let reply = self
            .http
            .get(&format!("{}{path}", self.base))
            .call()
            .map_err(|e| e.to_string())?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(reply.into_reader(), MAX_REPLY as u64),
            &mut body,
        )
        .map_err(|e| e.to_string())?;
        Ok(body)
    }
}

fn run(
    key: &PrivateKey,
    settings: &RouteServerSettings,
    snapshots: &Receiver<Input>,
    frames: &Sender<Vec<u8>>,
) {
    let announce_signer = AnnounceSigner::from_cjdns(key);
    let lease_signer = Signer::from_cjdns(key);
    let me = key.public_key().address();
    let snode = settings.address.unwrap_or_else(|| {
        Address::from_bytes([0xfc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    });
    let mut client = Client {
        http: ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build(),
        base: settings.url.trim_end_matches('/').to_string(),
        failing: false,
    };
    let mut links = LinkSnapshot::default();
    let mut meter = LinkMeter::default();
    let mut fulfilled: HashSet<String> = HashSet::new();
    let mut next_round = Instant::now();
    loop {
        match snapshots.recv_timeout(next_round.saturating_duration_since(Instant::now())) {
            Ok(input) => {
                match input {
                    Input::Links(s) => links = s,
                    Input::Counters(at, c) => meter.sample(at, &c),
                }
                if Instant::now() < next_round {
                    continue;
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        next_round = Instant::now() + settings.interval;

        let now = unix_ms();
        let state = meter.entities(now, |k| {
            links
                .peers
                .iter()
                .find(|p| p.key == *k && p.path_to_us.is_some())
                .map(|p| (p.label & 0xffff) as u16)
        });
        let announced =
            announcement_with(&announce_signer, snode, now, &links, settings.offer, state)
                .map_err(|e| e.to_string())
                .and_then(|ann| client.post_bytes("/announce", &ann));
        client.note("announce", announced);

        if let Some(offer) = settings.offer {
            let pending = client
                .get(&format!("/orders/pending?node={me}&limit=1000"))
                .and_then(|body| parse_orders_reply(&body).map_err(|e| e.to_string()));
            let result = pending.map(|orders| {
                for order in orders {
                    if fulfilled.contains(&order.id) {
                        continue;
                    }
                    let mut id = [0u8; 16];
                    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut id);
                    let Some(lease) =
                        lease_for_order(&lease_signer, &me, &order, &links, offer, id)
                    else {
                        debug!(order = %order.id, "order not within our offer or links; left pending");
                        continue;
                    };
                    let Ok(frame) = Message::Lease(lease).emit_signed(&lease_signer) else {
                        continue;
                    };
                    match client.post_frame(&frame) {
                        Ok(()) => {
                            info!(order = %order.id, lease = %lease.id, kbps = lease.kbps, peer = %order.peer, "issued a lease for a buy order");
                            fulfilled.insert(order.id);
                        }
                        Err(e) => warn!(order = %order.id, error = %e, "could not submit the lease"),
                    }
                }
            });
            client.note("orders", result);
        }

        let fetched = client
            .get(&format!("/frames?node={me}"))
            .and_then(|body| parse_frames_reply(&body).map_err(|e| e.to_string()))
            .map(|reply| {
                for bytes in reply {
                    let _ = frames.send(bytes);
                }
            });
        client.note("frames", fetched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pktmesh_route_server::Announcement;

    /// A deterministic key whose address is in fc00::/8 (as every cjdns key's must be).
    fn key(seed: u8) -> PrivateKey {
        (0..=u16::MAX)
            .map(|i| {
                let mut b = [seed; 32];
                b[..2].copy_from_slice(&i.to_be_bytes());
                PrivateKey::from_bytes(b)
            })
            .find(|k| k.public_key().address().as_bytes()[0] == 0xfc)
            .expect("one in 256 keys has an fc address")
    }

    fn links() -> LinkSnapshot {
        LinkSnapshot {
            peers: vec![
                PeerLink {
                    key: key(7).public_key(),
                    label: 0x15,
                    path_to_us: Some(0x17),
                    leased_kbps: 400,
                },
                PeerLink {
                    key: key(8).public_key(),
                    label: 0x19,
                    path_to_us: None,
                    leased_kbps: 0,
                },
            ],
            capacity_kbps: 10_000,
        }
    }

    #[test]
    fn announces_links_whose_way_back_is_known() {
        let me = key(3);
        let signer = AnnounceSigner::from_cjdns(&me);
        let offer = OfferSettings {
            max_kbps: 5000,
            max_seconds: 3600,
            price_msat: 9,
        };
        let snode = key(9).public_key().address();
        let bytes =
            announcement(&signer, snode, 1_700_000_000_000, &links(), Some(offer)).expect("emits");
        let ann = Announcement::new_checked(&bytes).expect("parses");
        ann.verify().expect("signed by the node");
        let repr = AnnouncementRepr::parse(&ann);
        assert!(repr.reset);
        assert_eq!(repr.snode_ip, snode);
        let peers: Vec<_> = repr
            .entities
            .iter()
            .filter_map(|e| match e {
                EntityRepr::Peer(p) => Some(*p),
                _ => None,
            })
            .collect();
        assert_eq!(
            peers.len(),
            1,
            "the peer without a known way back is left out"
        );
        assert_eq!(peers[0].ip, key(7).public_key().address());
        assert_eq!((peers[0].label, peers[0].peer_num), (0x17, 0x15));
        assert!(repr.entities.iter().any(|e| matches!(e,
            EntityRepr::LinkCapacity(c) if c.capacity_kbps == 10_000 && c.leased_kbps == 400)));
        assert!(repr.entities.iter().any(|e| matches!(e,
            EntityRepr::LeaseOffer(o) if o.kbps == 5000 && o.max_seconds == 3600)));
    }

    #[test]
    fn fulfils_only_orders_within_the_offer_on_our_links() {
        let me_key = key(3);
        let me = Signer::from_cjdns(&me_key);
        let my_address = me_key.public_key().address();
        let buyer = Signer::from_cjdns(&key(4)).public();
        let offer = OfferSettings {
            max_kbps: 5000,
            max_seconds: 3600,
            price_msat: 0,
        };
        let order = |peer: Address, kbps: u32, seconds: u64| PendingOrder {
            id: "aa".into(),
            node: my_address.to_string(),
            peer: peer.to_string(),
            kbps,
            start: 1000,
            end: 1000 + seconds,
            buyer: hex::encode(buyer.0),
        };
        let peer = key(7).public_key();
        let l = lease_for_order(
            &me,
            &my_address,
            &order(peer.address(), 4000, 600),
            &links(),
            offer,
            [5; 16],
        )
        .expect("within the offer");
        assert_eq!(l.peer, *peer.as_bytes());
        assert_eq!(
            (l.kbps, l.start, l.end),
            (4000, UnixTime(1000), UnixTime(1600))
        );
        assert_eq!(l.owner, buyer);
        assert_eq!(l.node, me.public());
        let stranger = key(30).public_key().address();
        for bad in [
            order(peer.address(), 6000, 600),
            order(peer.address(), 4000, 7200),
            order(stranger, 100, 60),
        ] {
            assert!(lease_for_order(&me, &my_address, &bad, &links(), offer, [5; 16]).is_none());
        }
        let mut not_ours = order(peer.address(), 100, 60);
        not_ours.node = stranger.to_string();
        assert!(lease_for_order(&me, &my_address, &not_ours, &links(), offer, [5; 16]).is_none());
    }

    #[test]
    fn route_server_replies_parse_or_fail_without_panic() {
        let orders = br#"{"orders": [{"id": "aa", "node": "fc00::1", "peer": "fc00::2",
            "kbps": 5, "start": 1, "end": 2, "buyer": "00"}], "next": null}"#;
        let parsed = parse_orders_reply(orders).expect("a list of orders");
        assert_eq!((parsed.len(), parsed[0].kbps), (1, 5));
        let frames = br#"{"frames": ["0102", " 03 ", "not hex", "0"]}"#;
        assert_eq!(
            parse_frames_reply(frames).expect("a list of frames"),
            vec![vec![1, 2], vec![3]]
        );
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            b"{\"frames\": [1]}",
            b"{\"orders\": {}}",
        ] {
            assert!(parse_orders_reply(bad).is_err() && parse_frames_reply(bad).is_err());
        }
    }

    #[test]
    fn counters_become_link_state_and_egress_entities() {
        let peer = key(7).public_key();
        let counters = |bytes_in, lost_in, bytes_out, egress_dropped| LinkCounters {
            peer,
            bytes_in,
            lost_in,
            bytes_out,
            egress_dropped,
            egress_queued: 42,
        };
        let t0 = 1_700_000_000_000u64; // a slot boundary
        let mut meter = LinkMeter::default();
        // Ten seconds at 1.25 MB/s in, 1 MB/s out, 30 packets dropped at our port, 5 lost
        // on the way in; then the next slot starts.
        for s in 0..=10u64 {
            meter.sample(
                t0 + s * 1000,
                &[counters(s * 1_250_000, s / 2, s * 1_000_000, s * 3)],
            );
        }
        let num = |k: &PublicKey| (*k == peer).then_some(0x15);
        let entities = meter.entities(t0 + 10_500, num);
        let (ls, eg) = match &entities[..] {
            [EntityRepr::LinkState(ls), EntityRepr::LinkEgress(eg)] => (ls, eg),
            other => panic!("{other:?}"),
        };
        assert_eq!(ls.node_id, 0x15);
        assert_eq!(ls.samples.len(), 3);
        // The full slot: 9 s of deltas (the first sample only sets the base) = 11,250 kB, 4 lost.
        assert_eq!(ls.samples[1].kb_recv, 11_250);
        assert_eq!(ls.samples[1].drops, 4);
        assert_eq!((eg.peer_num, eg.queued, eg.drops), (0x15, 42, 27));
        assert_eq!(eg.sent_kbps, 9_000_000 * 8 / 1000 / 10);
        // Peers without a number are left out; they go once they stop being reported.
        assert!(meter.entities(t0 + 10_500, |_| None).is_empty());
        meter.sample(t0 + 11_000, &[]);
        assert!(meter.entities(t0 + 11_000, num).is_empty());
        // They fit an announcement that parses back.
        let me = key(3);
        let bytes = announcement_with(
            &AnnounceSigner::from_cjdns(&me),
            key(9).public_key().address(),
            t0 + 10_500,
            &links(),
            None,
            entities.clone(),
        )
        .expect("emits");
        let repr = AnnouncementRepr::parse(&Announcement::new_checked(&bytes).expect("parses"));
        assert!(entities.iter().all(|e| repr.entities.contains(e)));
    }
}
