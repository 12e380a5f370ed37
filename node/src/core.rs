//! The node: switch, direct peers, end-to-end sessions and the pathfinder wired together.
//!
//! Inputs are datagrams from peers ([`Node::handle_udp`]), IPv6 packets from the TUN device
//! ([`Node::handle_tun`]) and the passage of time ([`Node::handle_timeout`]). The data path
//! works in place on a caller-owned [`PacketBuf`] and answers with one [`Output`] that refers
//! to the same buffer, so forwarding and TUN traffic allocate nothing. Control-plane packets
//! (keepalives, handshakes, pathfinder messages, errors) are queued and collected with
//! [`Node::poll_transmit`]; noteworthy happenings with [`Node::poll_event`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{handshake_sender, CryptoAuth, Session, State};
use pktmesh_crypto_auth::{Address, DecryptError, PrivateKey, PublicKey};
use pktmesh_switch::control::{
    self, respond, write_switch_error, ControlMessage, ErrorCode, LinkAddress, NoReply, Ping,
    RPath, ResponderConfig, Snode, CONTROL_MARKER, ERROR_PACKET_MAX, PROTOCOL_VERSION,
};
use pktmesh_switch::header::{SwitchHeaderRepr, HEADER_LEN};
use pktmesh_switch::switch_core::{SlotError, ROUTER_SLOT};
use pktmesh_switch::{EncodingScheme, Forward, Label, SwitchCore};
use rand_core::{CryptoRng, RngCore, SeedableRng};
use thiserror::Error;

use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::{EngineConfig, EngineError, Event, LeaseEngine, Nanos, UnixTime};
use pktmesh_switch::switch_core::TrafficClassPolicy;

use crate::beacon::{self, Beacon, BeaconError};
use crate::egress::{EgressPort, PortStats};
use crate::ipv6::{self, read_data_header, write_data_header, CONTENT_TYPE_CJDHT};
use crate::packet::PacketBuf;
use crate::peers::{Peer, PeerCredentials, PeerState, KEEPALIVE_MAGIC, PING_INTERVAL};
use crate::sessions::SessionManager;
use crate::shard::{Directory, ShardSpec};

/// Events kept for [`Node::poll_event`].
pub const MAX_EVENTS: usize = 1024;
/// Supernode queries waiting for [`Node::poll_supernode_query`]; more are dropped (the asker
/// retries, as it does after any lost message).
pub const MAX_SUPERNODE_QUERIES: usize = 64;

/// A supernode query (a CJDHT message with a top-level `sq` key) that arrived for this node
/// while it serves as the cjdns face of a route server ([`Node::set_supernode_face`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupernodeQuery {
    /// Who asked, and the path back to it; hand it to [`Node::answer_supernode_query`].
    pub from: NodeRef,
    /// The bencoded query, as it arrived.
    pub message: Vec<u8>,
}

/// A node as the pathfinder knows it: key, path from us, version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRef {
    /// Permanent key.
    pub key: PublicKey,
    /// Path from this node.
    pub path: Label,
    /// Protocol version (0 = unknown).
    pub version: u32,
}

/// What the node core needs from a pathfinder (the DHT of [`crate::dht`], or a test double).
pub trait Pathfinder {
    /// A direct peer's link is up and its version known.
    fn peer_up(&mut self, now: Instant, peer: NodeRef);
    /// A direct peer is gone.
    fn peer_down(&mut self, now: Instant, peer: NodeRef);
    /// A CJDHT message (the bencoded bytes after the DataHeader) arrived from `from`.
    fn handle_message(&mut self, now: Instant, from: NodeRef, message: &[u8]);
    /// Find a path to `target`; the answer comes from [`Pathfinder::poll_node`].
    fn search(&mut self, now: Instant, target: Address);
    /// Send something to `node` that it must answer (sets up an end-to-end session).
    fn ping(&mut self, now: Instant, node: NodeRef);
    /// Advance timers.
    fn handle_timeout(&mut self, now: Instant);
    /// When [`Pathfinder::handle_timeout`] wants to run next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next CJDHT message to send.
    fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)>;
    /// The next node whose path was found or changed.
    fn poll_node(&mut self) -> Option<NodeRef>;
    /// The best path known to `address`.
    fn node_for(&self, address: &Address) -> Option<NodeRef>;
}

/// Where the packet in the buffer goes after a data-path call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Output {
    /// Nothing to send.
    None,
    /// Send the buffer's packet as one UDP datagram to this address.
    Udp(SocketAddr),
    /// Write the buffer's packet (an IPv6 packet) to the TUN device.
    Tun,
    /// The packet belongs to another shard of this node: pass the buffer to that shard's
    /// [`Node::handle_handoff`] (never happens with one shard).
    Handoff(Handoff),
}

/// A packet passed between the shards of one node ([`crate::shard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The shard that owns what the packet needs.
    pub shard: u8,
    /// Where in the owner the packet continues.
    pub stage: Stage,
}

/// Where a handed-off packet continues, and what the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// A datagram as it arrived from this link address; the owner of the peer opens it.
    Datagram(SocketAddr),
    /// A switched packet (label already rewritten) that arrived on slot `from` for the peer
    /// in slot `to`; the owner of `to` classifies, paces and seals it.
    Forward {
        /// Slot it came in on ([`ROUTER_SLOT`] for our own packets).
        from: u16,
        /// Slot of the peer it goes to.
        to: u16,
    },
    /// A packet for our router, starting with its switch header; the owner of the end-to-end
    /// session (or of the switch ping) handles it.
    Router,
    /// An IPv6 packet from the TUN device; the owner of its destination's session sends it.
    Tun,
}

/// A queued control-plane packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// A UDP datagram.
    Udp {
        /// Destination.
        to: SocketAddr,
        /// Datagram.
        data: Vec<u8>,
    },
    /// An IPv6 packet for the TUN device.
    Tun(Vec<u8>),
    /// A packet for another shard of this node ([`Output::Handoff`]).
    Handoff {
        /// Which shard, and where it continues.
        handoff: Handoff,
        /// The packet.
        data: Vec<u8>,
    },
}

/// Something the operator may want to see in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A peer's link session authenticated both ways.
    PeerEstablished {
        /// The peer.
        key: PublicKey,
        /// Its link address.
        address: SocketAddr,
    },
    /// A handshake from an unknown address did not authenticate. Reported at most once a
    /// second, so a flood of forged handshakes cannot flood the log.
    HandshakeRejected {
        /// Where it came from.
        from: SocketAddr,
        /// Why.
        error: DecryptError,
        /// Rejections since the previous report that were not reported.
        suppressed: u64,
    },
    /// A peer we connect to rejected our credentials or we cannot open its packets.
    PeerAuthFailed {
        /// The peer.
        key: PublicKey,
        /// Why.
        error: DecryptError,
    },
    /// An incoming peer was silent too long and was removed.
    PeerForgotten {
        /// The peer.
        key: PublicKey,
    },
}

/// Errors of the node's API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The peer key is not a valid cjdns key or is our own.
    #[error("invalid peer key: its address is not in fc00::/8 or it is our own key")]
    BadPeerKey,
    /// The peer is already configured at this address.
    #[error("a peer at {0} already exists")]
    DuplicatePeer(SocketAddr),
    /// No switch slot is free.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The password cannot be used.
    #[error("invalid password: {0}")]
    Password(String),
    /// The peer belongs to another shard of this node ([`crate::shard`]).
    #[error("the peer belongs to shard {0}")]
    OtherShard(u8),
}

/// A switch ping started through the admin API or a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingResult {
    /// The cookie the ping carried.
    pub cookie: u64,
    /// Round-trip time.
    pub rtt: Duration,
    /// Responder's protocol version.
    pub version: u32,
    /// The path the pong came back on (reversed arrival label).
    pub response_path: Label,
}

/// Statistics of one peer, as `InterfaceController_peerStats` reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's key.
    pub key: PublicKey,
    /// Label from us to it.
    pub label: Label,
    /// Link address.
    pub link_address: SocketAddr,
    /// State name.
    pub state: &'static str,
    /// Protocol version (0 unknown).
    pub version: u32,
    /// Whether it connected to us.
    pub is_incoming: bool,
    /// Milliseconds since it last spoke.
    pub last_ms_ago: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Login or configured name.
    pub user: Option<String>,
    /// The peer's label for us, once an RPATH query answered.
    pub path_to_us: Option<u64>,
    /// Its switch slot.
    pub slot: u16,
}

/// Statistics of one end-to-end session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionStats {
    /// Remote key.
    pub key: PublicKey,
    /// Remote address.
    pub address: Address,
    /// CryptoAuth state name.
    pub state: &'static str,
    /// Our receive handle.
    pub handle: u32,
    /// Its handle (0 unknown).
    pub send_handle: u32,
    /// Path (0 unknown).
    pub path: u64,
    /// Remote version.
    pub version: u32,
}

/// The node core. `P` is the pathfinder.
pub struct Node<P> {
    ca: Arc<CryptoAuth>,
    key: PublicKey,
    address: Address,
    scheme: EncodingScheme,
    switch: SwitchCore,
    peers: Vec<Option<Peer>>,
    peer_by_link: HashMap<SocketAddr, u16>,
    sessions: SessionManager,
    pathfinder: P,
    rng: rand_chacha::ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<NodeEvent>,
    next_keepalive: Instant,
    keepalive_cursor: usize,
    pings: HashMap<u64, (Instant, Label)>,
    ping_results: VecDeque<PingResult>,
    beacon_password: [u8; beacon::PASSWORD_LEN],
    last_reject_report: Option<Instant>,
    rejects_unreported: u64,
    /// Leases on our links and the per-packet classification.
    leases: LeaseEngine,
    /// Egress ports of the peers whose link has a capacity, by switch slot.
    egress: Vec<Option<EgressPort>>,
    /// Capacity of every peer link, kbit/s (`None`: unpaced, no ports).
    link_kbps: Option<u32>,
    /// Where [`Nanos`] for the lease engine count from.
    epoch: Instant,
    /// Round-robin start for [`Node::poll_egress`].
    egress_cursor: usize,
    /// Whether this node is the cjdns face of a route server (answers GETSNODE with itself and
    /// passes `sq` queries out through [`Node::poll_supernode_query`]).
    supernode_face: bool,
    /// Supernode queries not yet collected.
    supernode_queries: VecDeque<SupernodeQuery>,
    /// Which shard of the node this core is.
    shard: ShardSpec,
    /// Slots and link addresses of all shards.
    directory: Arc<Directory>,
    /// Generation of the directory that `switch`, `slot_owner` and `link_owner` copy.
    directory_generation: u64,
    /// Owner of each switch slot, copied from the directory.
    slot_owner: Vec<Option<u8>>,
    /// Owner of each peer link address, copied from the directory.
    link_owner: HashMap<SocketAddr, u8>,
    /// The node's first receive handle; shard `i` has the `i`-th range after it.
    handle_base: u32,
}

impl<P> std::fmt::Debug for Node<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.address)
            .field("peers", &self.peer_by_link.len())
            .finish_non_exhaustive()
    }
}

/// Offset of `part` in the buffer whose first byte is at address `base` (the in-place crypto
/// calls return sub-slices of the buffer they were given).
fn offset_in(base: usize, part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(base)
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let w = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// Whether a CJDHT message is a supernode query: a bencoded dictionary with an `sq` key.
fn is_supernode_query(message: &[u8]) -> bool {
    crate::bencode::parse_prefix(message)
        .ok()
        .and_then(|(v, _)| v.as_dict().map(|d| d.contains_key("sq")))
        .unwrap_or(false)
}

fn handoff(shard: u8, stage: Stage) -> Output {
    Output::Handoff(Handoff { shard, stage })
}

fn state_name(s: State) -> &'static str {
    PeerState::Session(s).name()
}

impl<P: Pathfinder> Node<P> {
    /// A node with `private_key`, its randomness seeded from `seed`.
    pub fn new(private_key: PrivateKey, pathfinder: P, seed: [u8; 32], now: Instant) -> Self {
        let directory = Directory::new(Self::new_switch());
        Self::new_shard(
            private_key,
            pathfinder,
            seed,
            now,
            ShardSpec::SINGLE,
            directory,
        )
    }

    /// The switch every shard starts from: only the router attached, traffic classes kept.
    pub fn new_switch() -> SwitchCore {
        // The traffic class carries the lease tag between pktmesh switches (docs/leases.md §4);
        // the lease engine decides what to write, the switch leaves it alone.
        let mut switch = SwitchCore::new(EncodingScheme::v358());
        switch.set_traffic_class_policy(TrafficClassPolicy::Preserve);
        switch
    }

    /// One shard of a node split over several workers ([`crate::shard`]). All shards of a node
    /// get the same key, the same `seed` (so they agree on the beacon password and the handle
    /// base) and the same `directory` (made from [`Node::new_switch`]); each draws its own
    /// randomness after that.
    pub fn new_shard(
        private_key: PrivateKey,
        pathfinder: P,
        seed: [u8; 32],
        now: Instant,
        shard: ShardSpec,
        directory: Arc<Directory>,
    ) -> Self {
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
        let mut leases = LeaseEngine::new(
            Signer::from_cjdns(&private_key).public(),
            EngineConfig::default(),
        );
        // Our own traffic (from the router) rides our attached out-leases and is tagged.
        leases.set_local_interface(Some(ROUTER_SLOT));
        // End-to-end sessions use no passwords; they share the context as created here, while
        // link sessions see the users added later (`Arc::make_mut` splits the two).
        let ca = Arc::new(CryptoAuth::new(private_key));
        let key = *ca.public_key();
        let scheme = EncodingScheme::v358();
        let handle_base = crate::sessions::random_first_handle(&mut rng);
        let sessions = SessionManager::new(ca.clone(), shard.first_handle(handle_base));
        let beacon_password = beacon::new_password(&mut rng);
        if !shard.is_single() {
            // Shards share the seed for what they must agree on; from here on each draws
            // its own stream (ephemeral keys, nonces, cookies).
            rng.set_stream(u64::from(shard.index()) + 1);
        }
        let mut peers = Vec::with_capacity(pktmesh_switch::switch_core::SLOT_COUNT);
        peers.resize_with(pktmesh_switch::switch_core::SLOT_COUNT, || None);
        let mut egress = Vec::with_capacity(pktmesh_switch::switch_core::SLOT_COUNT);
        egress.resize_with(pktmesh_switch::switch_core::SLOT_COUNT, || None);
        let (directory_generation, table) = directory.snapshot();
        let mut node = Self {
            ca,
            key,
            address: key.address(),
            scheme,
            switch: table.switch,
            peers,
            peer_by_link: HashMap::new(),
            sessions,
            pathfinder,
            rng,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_keepalive: now,
            keepalive_cursor: 0,
            pings: HashMap::new(),
            ping_results: VecDeque::new(),
            beacon_password,
            last_reject_report: None,
            rejects_unreported: 0,
            leases,
            egress,
            link_kbps: None,
            epoch: now,
            egress_cursor: 0,
            supernode_face: false,
            supernode_queries: VecDeque::new(),
            shard,
            directory,
            directory_generation,
            slot_owner: table.slot_owner,
            link_owner: table.link_owner,
            handle_base,
        };
        // Peers that heard our beacon log in with this password (cjdns does the same).
        if let Err(e) =
            node.add_authorized_password(&beacon_password, Some(beacon::LOCAL_PEERS_LOGIN), None)
        {
            unreachable!("a fresh context accepts the beacon password: {e}");
        }
        node
    }

    /// Our beacon for a UDP interface whose data socket uses `data_port`.
    pub fn beacon(&self, data_port: u16) -> [u8; beacon::BEACON_LEN] {
        self.own_beacon(data_port).to_bytes()
    }

    /// Our beacon body for Ethernet interfaces (no UDP header: peers are MACs there).
    pub fn eth_beacon(&self) -> [u8; beacon::BODY_LEN] {
        self.own_beacon(0).body_bytes()
    }

    fn own_beacon(&self, data_port: u16) -> Beacon {
        Beacon {
            data_port,
            version: beacon::BEACON_PROTOCOL_VERSION,
            password: self.beacon_password,
            key: self.key,
        }
    }

    /// A datagram arrived on a beacon port from `from`. A beacon from a new address makes a
    /// peer (we initiate, logging in as `Local Peers` with its password) and returns its label;
    /// from a known address it only updates the password.
    pub fn handle_beacon(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
    ) -> Result<Option<Label>, BeaconError> {
        let b = Beacon::parse(data)?;
        self.peer_from_beacon(now, SocketAddr::new(from.ip(), b.data_port), &b)
    }

    /// An Ethernet beacon body arrived from the peer whose link address is `link`
    /// ([`crate::eth::EthLink::link_address`]); as [`Node::handle_beacon`] otherwise.
    pub fn handle_eth_beacon(
        &mut self,
        now: Instant,
        link: SocketAddr,
        body: &[u8],
    ) -> Result<Option<Label>, BeaconError> {
        let b = Beacon::parse_body(body)?;
        self.peer_from_beacon(now, link, &b)
    }

    fn peer_from_beacon(
        &mut self,
        now: Instant,
        link: SocketAddr,
        b: &Beacon,
    ) -> Result<Option<Label>, BeaconError> {
        if b.key == self.key || !self.shard.owns(&b.key.address()) {
            return Ok(None);
        }
        let credentials = PeerCredentials {
            password: b.password.to_vec(),
            login: Some(beacon::LOCAL_PEERS_LOGIN.to_vec()),
        };
        if let Some(&slot) = self.peer_by_link.get(&link) {
            if let Some(peer) = self.peers[usize::from(slot)].as_mut() {
                if peer.credentials.as_ref() != Some(&credentials) {
                    peer.session
                        .set_auth(Some(&credentials.password), credentials.login.as_deref());
                    peer.credentials = Some(credentials);
                }
            }
            return Ok(None);
        }
        match self.connect(now, link, b.key, credentials, Some("beacon_peer".into())) {
            Ok(label) => {
                // Replying to a beacon counts as incoming: forgotten when silent.
                if let Some(&slot) = self.peer_by_link.get(&link) {
                    if let Some(p) = self.peers[usize::from(slot)].as_mut() {
                        p.is_incoming = true;
                        p.version = b.version;
                    }
                }
                Ok(Some(label))
            }
            Err(_) => Ok(None),
        }
    }

    /// This node's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.key
    }

    /// This node's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// The encoding scheme of this node's switch.
    pub fn scheme(&self) -> &EncodingScheme {
        &self.scheme
    }

    /// The pathfinder.
    pub fn pathfinder(&self) -> &P {
        &self.pathfinder
    }

    /// The pathfinder, mutably.
    pub fn pathfinder_mut(&mut self) -> &mut P {
        &mut self.pathfinder
    }

    fn ca_mut(&mut self) -> &mut CryptoAuth {
        // Users are added before peers exist; afterwards the sessions share the context.
        Arc::make_mut(&mut self.ca)
    }

    /// Authorizes `password` for incoming peers, optionally under `login` and restricted to
    /// one peer address.
    pub fn add_authorized_password(
        &mut self,
        password: &[u8],
        login: Option<&[u8]>,
        restricted_to: Option<Address>,
    ) -> Result<(), NodeError> {
        self.ca_mut()
            .add_user(password, login, restricted_to)
            .map_err(|e| NodeError::Password(e.to_string()))?;
        // Existing sessions keep the context they were created with; new ones see the user.
        Ok(())
    }

    /// Logins of the authorized passwords (`AuthorizedPasswords_list`): the added ones in the
    /// order they were added, then `Local Peers` (our beacon password), which stock 22.3 lists
    /// after them (`[default-login, Local Peers]` in the `admin-api` captures) although it
    /// authorizes it first.
    pub fn authorized_users(&self) -> Vec<Vec<u8>> {
        let (beacon, added): (Vec<_>, Vec<_>) = self
            .ca
            .users()
            .iter()
            .map(|u| u.login().to_vec())
            .partition(|login| login == beacon::LOCAL_PEERS_LOGIN);
        added.into_iter().chain(beacon).collect()
    }

    /// Starts peering with the node `key` at `link_address` (cjdns `beginConnection`), and
    /// sends the first packet, a switch ping, which goes out as a HELLO.
    pub fn connect(
        &mut self,
        now: Instant,
        link_address: SocketAddr,
        key: PublicKey,
        credentials: PeerCredentials,
        name: Option<String>,
    ) -> Result<Label, NodeError> {
        if !key.is_valid() || key == self.key {
            return Err(NodeError::BadPeerKey);
        }
        let owner = self.shard.owner_of(&key.address());
        if owner != self.shard.index() {
            return Err(NodeError::OtherShard(owner));
        }
        self.sync_directory();
        if self.peer_by_link.contains_key(&link_address)
            || self.link_owner.contains_key(&link_address)
        {
            return Err(NodeError::DuplicatePeer(link_address));
        }
        let (slot, label) = self.attach(link_address)?;
        let mut session = Session::new(self.ca.clone(), key, false, now);
        session.set_auth(Some(&credentials.password), credentials.login.as_deref());
        self.peers[usize::from(slot)] = Some(Peer::new(
            link_address,
            key,
            session,
            slot,
            label,
            false,
            Some(credentials),
            name,
            now,
        ));
        self.peer_by_link.insert(link_address, slot);
        self.send_keepalive(now, slot);
        Ok(label)
    }

    /// The next queued control-plane packet.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event worth logging.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    /// Reports a refused packet at most once a second (with the number suppressed since the
    /// last report), so forged or spoofed packets cannot flood the log.
    fn report_rejection(&mut self, now: Instant, event: impl FnOnce(u64) -> NodeEvent) {
        let due = self
            .last_reject_report
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
        if due {
            self.last_reject_report = Some(now);
            let suppressed = std::mem::take(&mut self.rejects_unreported);
            self.push_event(event(suppressed));
        } else {
            self.rejects_unreported += 1;
        }
    }

    /// Queues an event, dropping the oldest beyond [`MAX_EVENTS`] (a driver that never polls
    /// must not make the node grow).
    fn push_event(&mut self, e: NodeEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    /// The next completed switch ping.
    pub fn poll_ping_result(&mut self) -> Option<PingResult> {
        self.ping_results.pop_front()
    }

    /// When [`Node::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Instant {
        let t = match self.pathfinder.poll_timeout() {
            Some(t) if t < self.next_keepalive => t,
            _ => self.next_keepalive,
        };
        self.egress
            .iter()
            .flatten()
            .filter_map(EgressPort::next_ready)
            .fold(t, Instant::min)
    }

    // ----- data path -------------------------------------------------------------------

    /// A packet another shard of this node handed over ([`Output::Handoff`]); the buffer holds
    /// what the [`Stage`] says. Answers like the call the packet would have reached here.
    pub fn handle_handoff(&mut self, now: Instant, stage: Stage, buf: &mut PacketBuf) -> Output {
        match stage {
            Stage::Datagram(from) => self.handle_udp(now, from, buf),
            Stage::Forward { from, to } => {
                self.sync_directory();
                self.deliver_to_slot(now, from, to, buf)
            }
            Stage::Router => {
                let out = self.router_in(now, buf);
                self.drain_pathfinder(now);
                out
            }
            Stage::Tun => self.handle_tun(now, buf),
        }
    }

    /// Which shard of the node this core is.
    pub fn shard(&self) -> ShardSpec {
        self.shard
    }

    /// Brings the copies of the shared directory up to date; one atomic read when nothing
    /// changed.
    fn sync_directory(&mut self) {
        if self.directory.generation() == self.directory_generation {
            return;
        }
        let (generation, table) = self.directory.snapshot();
        self.directory_generation = generation;
        self.switch = table.switch;
        self.slot_owner = table.slot_owner;
        self.link_owner = table.link_owner;
    }

    /// Takes a switch slot for a peer of ours at `link`.
    fn attach(&mut self, link: SocketAddr) -> Result<(u16, Label), SlotError> {
        let attached = self.directory.attach(self.shard.index(), link)?;
        self.sync_directory();
        Ok(attached)
    }

    /// The shard that owns the peer at `link`, if it is not this one.
    fn link_owner_elsewhere(&mut self, link: &SocketAddr) -> Option<u8> {
        if self.shard.is_single() {
            return None;
        }
        self.sync_directory();
        self.link_owner
            .get(link)
            .copied()
            .filter(|&o| o != self.shard.index())
    }

    /// The shard that owns the sender of a link HELLO, if it is not this one.
    fn hello_owner_elsewhere(&self, datagram: &[u8]) -> Option<u8> {
        if self.shard.is_single() || be32(datagram, 0)? > 1 {
            return None;
        }
        let owner = self.shard.owner_of(&handshake_sender(datagram)?.address());
        (owner != self.shard.index()).then_some(owner)
    }

    /// The shard that owns the peer in `slot`, if it is not this one.
    fn slot_owner_elsewhere(&self, slot: u16) -> Option<u8> {
        self.slot_owner
            .get(usize::from(slot))
            .copied()
            .flatten()
            .filter(|&o| o != self.shard.index())
    }

    /// A datagram arrived from `from`. On return the buffer holds what [`Output`] says to send.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, buf: &mut PacketBuf) -> Output {
        let slot = match self.peer_by_link.get(&from) {
            Some(&slot) => slot,
            None => {
                if let Some(owner) = self.link_owner_elsewhere(&from) {
                    return handoff(owner, Stage::Datagram(from));
                }
                if let Some(owner) = self.hello_owner_elsewhere(buf.data()) {
                    return handoff(owner, Stage::Datagram(from));
                }
                return match self.accept_peer(now, from, buf) {
                    Some(slot) => self.after_link_decrypt(now, slot, buf, true),
                    None => Output::None,
                };
            }
        };
        let Some(peer) = self.peers[usize::from(slot)].as_mut() else {
            return Output::None;
        };
        let start = buf.headroom();
        let pkt = buf.data_mut();
        let base = pkt.as_ptr() as usize;
        let opened = match peer.session.decrypt(now, pkt) {
            Ok(o) => (offset_in(base, o.payload), o.payload.len()),
            Err(error) => {
                peer.bad_packets += 1;
                if matches!(
                    error,
                    DecryptError::AuthRequired
                        | DecryptError::UnrecognizedAuth
                        | DecryptError::HandshakeDecryptFailed
                ) {
                    let key = peer.key;
                    self.report_rejection(now, |_| NodeEvent::PeerAuthFailed { key, error });
                }
                return Output::None;
            }
        };
        buf.set_start(start + opened.0);
        buf.truncate(opened.1);
        self.after_link_decrypt(now, slot, buf, false)
    }

    /// Handles the first packet from an unknown address: only a HELLO that names an authorized
    /// user creates a peer.
    fn accept_peer(&mut self, now: Instant, from: SocketAddr, buf: &mut PacketBuf) -> Option<u16> {
        let first = be32(buf.data(), 0)?;
        if first > 1 {
            return None;
        }
        let key = handshake_sender(buf.data())?;
        if !key.is_valid() || key == self.key {
            return None;
        }
        let mut session = Session::new(self.ca.clone(), key, true, now);
        let start = buf.headroom();
        let pkt = buf.data_mut();
        let base = pkt.as_ptr() as usize;
        let opened = match session.decrypt(now, pkt) {
            Ok(o) => (offset_in(base, o.payload), o.payload.len()),
            Err(error) => {
                self.report_rejection(now, |suppressed| NodeEvent::HandshakeRejected {
                    from,
                    error,
                    suppressed,
                });
                return None;
            }
        };
        // A peer that restarted on a new port replaces its old incoming entry.
        if let Some(old) = self
            .peers
            .iter()
            .flatten()
            .find(|p| p.key == key && p.is_incoming)
            .map(|p| p.slot)
        {
            self.remove_peer(now, old);
        }
        let (slot, label) = self.attach(from).ok()?;
        self.peers[usize::from(slot)] = Some(Peer::new(
            from, key, session, slot, label, true, None, None, now,
        ));
        self.peer_by_link.insert(from, slot);
        buf.set_start(start + opened.0);
        buf.truncate(opened.1);
        Some(slot)
    }

    fn after_link_decrypt(
        &mut self,
        now: Instant,
        slot: u16,
        buf: &mut PacketBuf,
        new: bool,
    ) -> Output {
        let Some(peer) = self.peers[usize::from(slot)].as_mut() else {
            return Output::None;
        };
        peer.bytes_in += buf.len() as u64;
        if peer.session.is_established() {
            peer.last_message = now;
            self.announce_if_ready(now, slot);
        } else {
            // Until the link is established only packets for our router are accepted, and
            // the peer is pinged so that it reveals its version.
            if buf.data().get(7) != Some(&1) {
                return Output::None;
            }
            if new || peer.version == 0 {
                let due = peer
                    .last_ping
                    .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_millis(500));
                if due {
                    self.send_keepalive(now, slot);
                }
            }
        }
        self.switch_in(now, slot, buf)
    }

    /// Tells the pathfinder (once) about a peer whose link is established and whose version
    /// is known; cjdns never reports a peer of unknown version.
    fn announce_if_ready(&mut self, now: Instant, slot: u16) {
        let Some(peer) = self.peers[usize::from(slot)].as_mut() else {
            return;
        };
        if peer.announced || peer.version == 0 || !peer.session.is_established() {
            return;
        }
        peer.announced = true;
        let node = NodeRef {
            key: peer.key,
            path: peer.label,
            version: peer.version,
        };
        let event = NodeEvent::PeerEstablished {
            key: peer.key,
            address: peer.link_address,
        };
        self.push_event(event);
        self.leases.peer_up(node.key, slot);
        self.pathfinder.peer_up(now, node);
        self.send_rpath_query(now, slot);
    }

    /// Asks the peer in `slot` for its label back to us (cjdns RPATH).
    fn send_rpath_query(&mut self, now: Instant, slot: u16) {
        let Some(label) = self.peers[usize::from(slot)].as_ref().map(|p| p.label) else {
            return;
        };
        let msg = ControlMessage::RPathQuery(RPath {
            version: PROTOCOL_VERSION,
            rpath: label.bits(),
        });
        let mut out = [0u8; 128];
        if let Ok(n) = msg.emit_packet(&SwitchHeaderRepr::new(label.bits()), &mut out) {
            let mut b = PacketBuf::from_slice(&out[..n]);
            let o = self.send_from_router(now, &mut b);
            self.queue(o, &b);
        }
    }

    /// Runs the switch on a packet that arrived on `from`.
    fn switch_in(&mut self, now: Instant, from: u16, buf: &mut PacketBuf) -> Output {
        self.sync_directory();
        match self.switch.forward(from, buf.data_mut()) {
            Forward::Deliver { to } if to == ROUTER_SLOT => self.router_in(now, buf),
            Forward::Deliver { to } => self.deliver_to_slot(now, from, to, buf),
            Forward::SendError { code } => {
                let mut err = [0u8; ERROR_PACKET_MAX];
                if let Ok(n) = write_switch_error(buf.data(), code, &mut err) {
                    let mut eb = PacketBuf::from_slice(&err[..n]);
                    let out = if from == ROUTER_SLOT {
                        self.router_in(now, &mut eb)
                    } else {
                        self.send_to_peer(now, from, &mut eb)
                    };
                    self.queue(out, &eb);
                }
                Output::None
            }
            Forward::Drop(_) => Output::None,
        }
    }

    /// Sends a switched packet on to the peer in slot `to`, or hands it to the shard that owns
    /// that peer.
    fn deliver_to_slot(&mut self, now: Instant, from: u16, to: u16, buf: &mut PacketBuf) -> Output {
        match self.slot_owner_elsewhere(to) {
            Some(owner) => handoff(owner, Stage::Forward { from, to }),
            None => self.forward_to_peer(now, from, to, buf),
        }
    }

    /// Classifies a switched packet for its lease, writes the traffic class the lease engine
    /// chose, and sends it to the peer in `to` — at once, or through the peer's egress port when
    /// the link is paced and busy.
    fn forward_to_peer(&mut self, now: Instant, from: u16, to: u16, buf: &mut PacketBuf) -> Output {
        let nanos = self.nanos(now);
        let len = buf.len();
        let data = buf.data_mut();
        let is_control = be32(data, HEADER_LEN) == Some(0xffff_ffff) && from == ROUTER_SLOT;
        let Some(tc_bytes) = data.get_mut(10..12) else {
            return Output::None;
        };
        let tc = u16::from_be_bytes([tc_bytes[0], tc_bytes[1]]);
        let verdict = self.leases.classify_packet(nanos, from, to, len as u32, tc);
        if verdict.traffic_class != tc {
            tc_bytes.copy_from_slice(&verdict.traffic_class.to_be_bytes());
        }
        if let Some(kbps) = self.link_kbps {
            let port =
                self.egress[usize::from(to)].get_or_insert_with(|| EgressPort::new(kbps, now));
            if is_control {
                // Our own switch pings and errors keep the link alive: never queued.
                port.charge(now, len);
            } else if !port.admit_now(now, len) {
                port.enqueue(now, nanos, verdict.priority, buf.data());
                return Output::None;
            }
        }
        self.send_to_peer(now, to, buf)
    }

    fn nanos(&self, now: Instant) -> Nanos {
        Nanos(now.saturating_duration_since(self.epoch).as_nanos() as u64)
    }

    /// Sends the next packet a paced egress port lets go, if any: the buffer then holds the
    /// link-encrypted packet and the answer says where. Call after every batch of input and
    /// when [`Node::poll_timeout`] passes, until it answers [`Output::None`].
    pub fn poll_egress(&mut self, now: Instant, buf: &mut PacketBuf) -> Output {
        let n = self.egress.len();
        let nanos = self.nanos(now);
        for step in 0..n {
            let slot = (self.egress_cursor + step) % n;
            let Some(port) = self.egress[slot].as_mut() else {
                continue;
            };
            if port.dequeue_into(now, nanos, buf) {
                self.egress_cursor = slot + 1;
                // slot < SLOT_COUNT = 257
                return self.send_to_peer(now, slot as u16, buf);
            }
        }
        Output::None
    }

    /// Sets the capacity of every peer link (kbit/s); forwarded traffic is then paced at it and
    /// queued by lease priority when the link is busy. `None` sends everything at once.
    pub fn set_link_capacity(&mut self, kbps: Option<u32>) {
        self.link_kbps = kbps.filter(|k| *k > 0);
        self.egress.iter_mut().for_each(|p| *p = None);
    }

    /// Makes this node the cjdns face of a route server, or stops it being one.
    ///
    /// A stock cjdns node finds its supernode by asking its peers (switch GETSNODE); this node
    /// then names itself. The supernode queries (`sq`: `pn`, `ann`, `gr`) that arrive for it in
    /// end-to-end sessions are queued for [`Node::poll_supernode_query`] instead of going to the
    /// pathfinder; the driver has the route server answer them and sends the answer back with
    /// [`Node::answer_supernode_query`].
    pub fn set_supernode_face(&mut self, enabled: bool) {
        self.supernode_face = enabled;
        if !enabled {
            self.supernode_queries.clear();
        }
    }

    /// The next supernode query for the route server, oldest first.
    pub fn poll_supernode_query(&mut self) -> Option<SupernodeQuery> {
        self.supernode_queries.pop_front()
    }

    /// Sends the route server's answer to a supernode query back to the node that asked
    /// (content type 256 in the end-to-end session with `to`).
    pub fn answer_supernode_query(&mut self, now: Instant, to: NodeRef, answer: &[u8]) {
        self.send_cjdht(now, to, answer);
    }

    /// The configured link capacity, kbit/s.
    pub fn link_capacity(&self) -> Option<u32> {
        self.link_kbps
    }

    /// Counters of the paced egress ports, by peer key.
    pub fn egress_stats(&self) -> Vec<(PublicKey, PortStats)> {
        self.egress
            .iter()
            .enumerate()
            .filter_map(|(slot, port)| {
                let port = port.as_ref()?;
                let peer = self.peers.get(slot)?.as_ref()?;
                Some((peer.key, port.stats()))
            })
            .collect()
    }

    /// Applies one signed lease message (`docs/leases.md` §3) at wall-clock time `now`.
    pub fn handle_lease_message(
        &mut self,
        now: UnixTime,
        bytes: &[u8],
    ) -> Result<Event, EngineError> {
        self.leases.handle_message(now, bytes)
    }

    /// Lets lease time spans start and end (call about once a second with the wall clock).
    pub fn handle_lease_timeout(&mut self, now: UnixTime) {
        self.leases.handle_timeout(now);
    }

    /// The lease engine (leases known, meters).
    pub fn leases(&self) -> &LeaseEngine {
        &self.leases
    }

    /// Encrypts the buffer for the peer in `slot`.
    fn send_to_peer(&mut self, now: Instant, slot: u16, buf: &mut PacketBuf) -> Output {
        let Some(peer) = self.peers[usize::from(slot)].as_mut() else {
            return Output::None;
        };
        let (whole, start) = buf.with_headroom();
        let base = whole.as_ptr() as usize;
        let new_start = match peer.session.encrypt(now, &mut self.rng, whole, start) {
            Ok(pkt) => offset_in(base, pkt),
            Err(_) => return Output::None,
        };
        buf.set_start(new_start);
        peer.bytes_out += buf.len() as u64;
        Output::Udp(peer.link_address)
    }

    /// Sends a packet our router originated (it starts with a switch header).
    fn send_from_router(&mut self, now: Instant, buf: &mut PacketBuf) -> Output {
        self.switch_in(now, ROUTER_SLOT, buf)
    }

    fn queue(&mut self, out: Output, buf: &PacketBuf) {
        match out {
            Output::None => {}
            Output::Udp(to) => self.transmits.push_back(Transmit::Udp {
                to,
                data: buf.data().to_vec(),
            }),
            Output::Tun => self.transmits.push_back(Transmit::Tun(buf.data().to_vec())),
            Output::Handoff(handoff) => self.transmits.push_back(Transmit::Handoff {
                handoff,
                data: buf.data().to_vec(),
            }),
        }
    }

    /// A packet the switch delivered to our router.
    fn router_in(&mut self, now: Instant, buf: &mut PacketBuf) -> Output {
        let Some(header) = buf.data().first_chunk::<HEADER_LEN>() else {
            return Output::None;
        };
        let label = u64::from_be_bytes([
            header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7],
        ]);
        let back = label.reverse_bits();
        match be32(buf.data(), HEADER_LEN) {
            Some(0xffff_ffff) => self.control_in(now, back, buf),
            Some(_) => self.session_in(now, back, buf),
            None => Output::None,
        }
    }

    fn control_in(&mut self, now: Instant, back: u64, buf: &PacketBuf) -> Output {
        let Some(frame) = control::control_frame(buf.data()) else {
            return Output::None;
        };
        let link = self
            .peers
            .iter()
            .flatten()
            .find(|p| p.label.bits() == back)
            .map(|p| match p.link_address {
                SocketAddr::V4(a) => LinkAddress::Udp4 {
                    port: a.port(),
                    addr: a.ip().octets(),
                },
                SocketAddr::V6(a) => LinkAddress::Udp6 {
                    port: a.port(),
                    addr: a.ip().octets(),
                },
            });
        let scheme = self.scheme;
        let config = ResponderConfig {
            protocol_version: PROTOCOL_VERSION,
            public_key: *self.key.as_bytes(),
            scheme: &scheme,
            snode: self.supernode_face.then_some(Snode {
                key: *self.key.as_bytes(),
                path: Label::SELF,
                version: PROTOCOL_VERSION,
            }),
        };
        let mut out = [0u8; 512];
        match respond(&config, back, frame, link, &mut out) {
            Ok(n) => {
                let mut reply = PacketBuf::from_slice(&out[..n]);
                let o = self.send_from_router(now, &mut reply);
                self.queue(o, &reply);
                Output::None
            }
            Err(NoReply::NotAQuery(_)) => match ControlMessage::parse(frame) {
                Ok(ControlMessage::Pong(p)) => self.on_pong(now, back, p),
                Ok(ControlMessage::RPathReply(r)) => {
                    if let Some(peer) = self
                        .peers
                        .iter_mut()
                        .flatten()
                        .find(|p| p.label.bits() == back)
                    {
                        peer.path_to_us = Some(r.rpath);
                    }
                    Output::None
                }
                _ => Output::None,
            },
            Err(_) => Output::None,
        }
    }

    /// A pong for a keepalive or a switch ping; one whose cookie another shard made goes there.
    fn on_pong(&mut self, now: Instant, back: u64, pong: Ping<'_>) -> Output {
        let Some(cookie_bytes) = pong.data.first_chunk::<8>() else {
            return Output::None;
        };
        let cookie = u64::from_be_bytes(*cookie_bytes);
        let owner = self.shard.owner_of_cookie(cookie);
        if owner != self.shard.index() {
            return handoff(owner, Stage::Router);
        }
        if pong.data.ends_with(KEEPALIVE_MAGIC) {
            let Some(peer) = self
                .peers
                .iter_mut()
                .flatten()
                .find(|p| p.ping_cookie == Some(cookie))
            else {
                return Output::None;
            };
            peer.ping_cookie = None;
            if peer.label.bits() != back || pong.version < control::MINIMUM_COMPATIBLE_VERSION {
                peer.incompatible = true;
                return Output::None;
            }
            peer.version = pong.version;
            if peer.session.is_established() {
                peer.last_message = now;
            }
            let slot = peer.slot;
            let ask_rpath = peer.announced && peer.path_to_us.is_none();
            self.announce_if_ready(now, slot);
            if ask_rpath {
                self.send_rpath_query(now, slot);
            }
        } else if let Some((sent, path)) = self.pings.remove(&cookie) {
            self.ping_results.push_back(PingResult {
                cookie,
                rtt: now.saturating_duration_since(sent),
                version: pong.version,
                response_path: Label::new(back).unwrap_or(path),
            });
        }
        Output::None
    }

    /// An end-to-end packet for our router: `[switch header][handle or handshake][…]`.
    fn session_in(&mut self, now: Instant, back: u64, buf: &mut PacketBuf) -> Output {
        let Ok(back_label) = Label::new(back) else {
            return Output::None;
        };
        let data = buf.data();
        let Some(word) = be32(data, HEADER_LEN) else {
            return Output::None;
        };
        if data.len() < HEADER_LEN + 4 + 20 {
            return Output::None;
        }
        // Kept to quote in an AUTHENTICATION error if decryption fails.
        let mut quoted = [0u8; HEADER_LEN + 16];
        quoted.copy_from_slice(&data[..HEADER_LEN + 16]);
        let (index, handshake) = if word > 3 {
            let Some(index) = self.sessions.index_of_handle(word) else {
                return match self.shard.owner_of_handle(self.handle_base, word) {
                    Some(owner) if owner != self.shard.index() => handoff(owner, Stage::Router),
                    _ => Output::None,
                };
            };
            if be32(data, HEADER_LEN + 4).is_none_or(|nonce| nonce < 4) {
                return Output::None;
            }
            buf.advance(HEADER_LEN + 4);
            (index, false)
        } else {
            if data.len() < HEADER_LEN + 120 + 4 {
                return Output::None;
            }
            let Some(key) = handshake_sender(&data[HEADER_LEN..]) else {
                return Output::None;
            };
            if !key.is_valid() || key == self.key {
                return Output::None;
            }
            let owner = self.shard.owner_of(&key.address());
            if owner != self.shard.index() {
                return handoff(owner, Stage::Router);
            }
            let Some(index) = self.sessions.get_or_create(now, key, Some(back_label), 0) else {
                return Output::None;
            };
            buf.advance(HEADER_LEN);
            (index, true)
        };
        let Some(sess) = self.sessions.get_mut(index) else {
            return Output::None;
        };
        let was_ready = sess.ready();
        let start = buf.headroom();
        let pkt = buf.data_mut();
        let base = pkt.as_ptr() as usize;
        let (offset, len) = match sess.session.decrypt(now, pkt) {
            Ok(o) => (offset_in(base, o.payload), o.payload.len()),
            Err(error) => {
                let state = sess.session.state() as u32;
                self.send_auth_error(now, back_label, &quoted, error, state);
                return Output::None;
            }
        };
        buf.set_start(start + offset);
        buf.truncate(len);
        if handshake {
            let Some(handle) = be32(buf.data(), 0) else {
                return Output::None;
            };
            sess.send_handle = Some(handle);
            buf.advance(4);
        }
        sess.path = Some(back_label);
        sess.bytes_in += buf.len() as u64;
        let node = NodeRef {
            key: sess.key,
            path: back_label,
            version: sess.version,
        };
        let source = sess.address;
        let became_ready = !was_ready && sess.ready();

        let out = match read_data_header(buf.data()) {
            Some(ct) if ct < 256 => {
                let (whole, data_offset) = buf.with_headroom();
                match ipv6::to_tun(whole, data_offset, &source, &self.address) {
                    Some(ip_start) => {
                        buf.set_start(ip_start);
                        Output::Tun
                    }
                    None => Output::None,
                }
            }
            Some(CONTENT_TYPE_CJDHT) => {
                let message = buf.data().get(4..).unwrap_or_default();
                if self.supernode_face && is_supernode_query(message) {
                    if self.supernode_queries.len() < MAX_SUPERNODE_QUERIES {
                        self.supernode_queries.push_back(SupernodeQuery {
                            from: node,
                            message: message.to_vec(),
                        });
                    }
                } else {
                    self.pathfinder.handle_message(now, node, message);
                }
                Output::None
            }
            _ => Output::None,
        };
        if became_ready {
            // The KEY arrived: user packets may flow now. They are queued behind `out`.
            self.flush(now, source);
        }
        self.drain_pathfinder(now);
        out
    }

    fn send_auth_error(
        &mut self,
        now: Instant,
        back: Label,
        quoted: &[u8],
        error: DecryptError,
        state: u32,
    ) {
        let mut cause = [0u8; HEADER_LEN + 16 + 8];
        cause[..HEADER_LEN + 16].copy_from_slice(quoted);
        cause[HEADER_LEN + 16..HEADER_LEN + 20].copy_from_slice(&error.code().to_be_bytes());
        cause[HEADER_LEN + 20..].copy_from_slice(&state.to_be_bytes());
        let header = SwitchHeaderRepr {
            suppress_errors: true,
            ..SwitchHeaderRepr::new(back.bits())
        };
        let mut out = [0u8; 128];
        let msg = ControlMessage::Error {
            code: ErrorCode::AUTHENTICATION,
            cause: &cause,
        };
        if let Ok(n) = msg.emit_packet(&header, &mut out) {
            let mut b = PacketBuf::from_slice(&out[..n]);
            let o = self.send_from_router(now, &mut b);
            self.queue(o, &b);
        }
    }

    /// An IPv6 packet read from the TUN device.
    pub fn handle_tun(&mut self, now: Instant, buf: &mut PacketBuf) -> Output {
        if !self.shard.is_single() {
            if let Some(destination) = ipv6::destination(buf.data()) {
                let owner = self.shard.owner_of(&destination);
                if owner != self.shard.index() {
                    return handoff(owner, Stage::Tun);
                }
            }
        }
        let own = self.address;
        let out = match ipv6::from_tun(buf.data_mut(), &own) {
            Ok(o) => o,
            Err(_) => return Output::None,
        };
        buf.advance(out.data_offset);
        let output = self.send_to_node(now, out.destination, buf, true);
        self.drain_pathfinder(now);
        output
    }

    /// Sends `[DataHeader][payload]` to `destination` through its end-to-end session.
    fn send_to_node(
        &mut self,
        now: Instant,
        destination: Address,
        buf: &mut PacketBuf,
        user: bool,
    ) -> Output {
        let index = match self.sessions.index_of(&destination) {
            Some(i) => i,
            None => match self.known_node(&destination) {
                Some(node) => {
                    match self
                        .sessions
                        .get_or_create(now, node.key, Some(node.path), node.version)
                    {
                        Some(i) => i,
                        None => return Output::None,
                    }
                }
                None => {
                    self.sessions.buffer(now, destination, buf.data());
                    self.pathfinder.search(now, destination);
                    return Output::None;
                }
            },
        };
        let Some(sess) = self.sessions.get_mut(index) else {
            return Output::None;
        };
        if sess.path.is_none() {
            self.sessions.buffer(now, destination, buf.data());
            self.pathfinder.search(now, destination);
            return Output::None;
        }
        if user {
            sess.last_used = Some(now);
            if !sess.ready() {
                let setup_due = sess
                    .last_setup
                    .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
                let node = NodeRef {
                    key: sess.key,
                    path: sess.path.unwrap_or(Label::SELF),
                    version: sess.version,
                };
                if setup_due {
                    sess.last_setup = Some(now);
                }
                self.sessions.buffer(now, destination, buf.data());
                if setup_due {
                    self.pathfinder.ping(now, node);
                }
                return Output::None;
            }
        }
        self.seal_and_send(now, index, buf)
    }

    /// A node we can reach without searching: a direct peer or one the pathfinder knows.
    fn known_node(&self, address: &Address) -> Option<NodeRef> {
        let peer = self
            .peers
            .iter()
            .flatten()
            .find(|p| &p.address() == address)
            .map(|p| NodeRef {
                key: p.key,
                path: p.label,
                version: p.version,
            });
        peer.or_else(|| self.pathfinder.node_for(address))
    }

    /// Encrypts `[DataHeader][payload]` in session `index` and hands it to the switch.
    fn seal_and_send(&mut self, now: Instant, index: usize, buf: &mut PacketBuf) -> Output {
        let Some(sess) = self.sessions.get_mut(index) else {
            return Output::None;
        };
        let Some(path) = sess.path else {
            return Output::None;
        };
        sess.session.reset_if_timeout(now);
        if !sess.ready() {
            // Handshake packets carry our handle inside, so the peer can address us.
            match buf.push_front(4) {
                Some(h) => h.copy_from_slice(&sess.receive_handle.to_be_bytes()),
                None => return Output::None,
            }
        }
        sess.bytes_out += buf.len() as u64;
        let (whole, start) = buf.with_headroom();
        let base = whole.as_ptr() as usize;
        let new_start = match sess.session.encrypt(now, &mut self.rng, whole, start) {
            Ok(pkt) => offset_in(base, pkt),
            Err(_) => return Output::None,
        };
        buf.set_start(new_start);
        if sess.ready() {
            let Some(handle) = sess.send_handle else {
                return Output::None;
            };
            match buf.push_front(4) {
                Some(h) => h.copy_from_slice(&handle.to_be_bytes()),
                None => return Output::None,
            }
        }
        match buf.push_front(HEADER_LEN) {
            Some(h) => h.copy_from_slice(&SwitchHeaderRepr::new(path.bits()).to_bytes()),
            None => return Output::None,
        }
        self.send_from_router(now, buf)
    }

    /// Sends the user packets buffered for `destination`, now that its session is ready.
    fn flush(&mut self, now: Instant, destination: Address) {
        for b in self.sessions.take_buffered(&destination) {
            let mut pb = PacketBuf::from_slice(&b.data);
            let out = self.send_to_node(now, destination, &mut pb, true);
            self.queue(out, &pb);
        }
    }

    /// Sends a CJDHT message (content type 256) to `node` in its end-to-end session, setting
    /// the session up if needed.
    fn send_cjdht(&mut self, now: Instant, node: NodeRef, message: &[u8]) {
        let Some(index) = self
            .sessions
            .get_or_create(now, node.key, Some(node.path), node.version)
        else {
            return;
        };
        let mut pb = PacketBuf::new();
        let n = message.len().min(crate::packet::MAX_PACKET - 4);
        {
            let area = pb.read_area();
            write_data_header(area, CONTENT_TYPE_CJDHT);
            area[4..4 + n].copy_from_slice(&message[..n]);
        }
        pb.set_read_len(4 + n);
        if let Some(s) = self.sessions.get_mut(index) {
            s.last_setup = Some(now);
        }
        let out = self.seal_and_send(now, index, &mut pb);
        self.queue(out, &pb);
    }

    /// Sends what the pathfinder queued and acts on the paths it found.
    fn drain_pathfinder(&mut self, now: Instant) {
        for _ in 0..256 {
            let Some((node, message)) = self.pathfinder.poll_transmit() else {
                break;
            };
            self.send_cjdht(now, node, &message);
        }
        for _ in 0..256 {
            let Some(node) = self.pathfinder.poll_node() else {
                break;
            };
            let address = node.key.address();
            if !self.sessions.is_waiting(&address) {
                // Keep the path of an existing session current; create nothing new.
                if self.sessions.index_of(&address).is_some() {
                    self.sessions
                        .get_or_create(now, node.key, Some(node.path), node.version);
                }
                continue;
            }
            // Packets wait for this node: send them if its session is ready, set it up if not.
            let Some(index) =
                self.sessions
                    .get_or_create(now, node.key, Some(node.path), node.version)
            else {
                continue;
            };
            if self.sessions.get(index).is_some_and(|s| s.ready()) {
                self.flush(now, address);
            } else {
                self.pathfinder.ping(now, node);
            }
        }
    }

    // ----- timers -----------------------------------------------------------------------

    /// Runs keepalives, expiry and the pathfinder's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_keepalive {
            self.next_keepalive = now + PING_INTERVAL;
            self.keepalive(now);
        }
        self.sessions.expire(now);
        self.pathfinder.handle_timeout(now);
        self.drain_pathfinder(now);
    }

    fn keepalive(&mut self, now: Instant) {
        // Forget incoming peers that went silent.
        let forgotten: Vec<u16> = self
            .peers
            .iter()
            .flatten()
            .filter(|p| {
                p.is_incoming
                    && now.saturating_duration_since(p.last_message) > crate::peers::FORGET_AFTER
            })
            .map(|p| p.slot)
            .collect();
        for slot in forgotten {
            if let Some(key) = self.peers[usize::from(slot)].as_ref().map(|p| p.key) {
                self.push_event(NodeEvent::PeerForgotten { key });
            }
            self.remove_peer(now, slot);
        }
        // Ping at most one lazy peer per tick, round robin.
        let n = self.peers.len();
        for step in 0..n {
            let slot = (self.keepalive_cursor + step) % n;
            let lazy = self.peers[slot].as_ref().is_some_and(|p| p.is_lazy(now));
            if lazy {
                self.keepalive_cursor = slot + 1;
                // slot < 257
                self.send_keepalive(now, slot as u16);
                break;
            }
        }
    }

    fn remove_peer(&mut self, now: Instant, slot: u16) {
        if let Some(peer) = self.peers[usize::from(slot)].take() {
            self.peer_by_link.remove(&peer.link_address);
            self.directory.detach(slot, peer.link_address);
            self.sync_directory();
            self.egress[usize::from(slot)] = None;
            if peer.announced {
                self.leases.peer_down(&peer.key);
            }
            if peer.announced {
                let node = NodeRef {
                    key: peer.key,
                    path: peer.label,
                    version: peer.version,
                };
                self.pathfinder.peer_down(now, node);
            }
        }
    }

    fn send_keepalive(&mut self, now: Instant, slot: u16) {
        let cookie = self.shard.mark_cookie(self.rng.next_u64());
        let Some(peer) = self.peers[usize::from(slot)].as_mut() else {
            return;
        };
        peer.last_ping = Some(now);
        peer.ping_cookie = Some(cookie);
        let label = peer.label;
        let mut data = [0u8; 8 + 12];
        data[..8].copy_from_slice(&cookie.to_be_bytes());
        data[8..].copy_from_slice(KEEPALIVE_MAGIC);
        self.send_switch_ping(now, label, &data);
    }

    fn send_switch_ping(&mut self, now: Instant, label: Label, data: &[u8]) {
        let msg = ControlMessage::Ping(Ping {
            version: PROTOCOL_VERSION,
            data,
        });
        let mut out = [0u8; 400];
        if let Ok(n) = msg.emit_packet(&SwitchHeaderRepr::new(label.bits()), &mut out) {
            let mut b = PacketBuf::from_slice(&out[..n]);
            let o = self.send_from_router(now, &mut b);
            self.queue(o, &b);
        }
    }

    /// Starts a switch ping along `path` (admin `SwitchPinger_ping`); the answer arrives as a
    /// [`PingResult`] with the returned cookie.
    pub fn switch_ping(&mut self, now: Instant, path: Label) -> u64 {
        let cookie = self.shard.mark_cookie(self.rng.next_u64());
        self.pings.insert(cookie, (now, path));
        self.send_switch_ping(now, path, &cookie.to_be_bytes());
        cookie
    }

    // ----- introspection ----------------------------------------------------------------

    /// Peer statistics (`InterfaceController_peerStats`).
    pub fn peer_stats(&self, now: Instant) -> Vec<PeerStats> {
        self.peers
            .iter()
            .flatten()
            .map(|p| PeerStats {
                key: p.key,
                label: p.label,
                link_address: p.link_address,
                state: p.state(now).name(),
                version: p.version,
                is_incoming: p.is_incoming,
                last_ms_ago: now.saturating_duration_since(p.last_message).as_millis() as u64,
                bytes_in: p.bytes_in,
                bytes_out: p.bytes_out,
                user: p.name.clone(),
                path_to_us: p.path_to_us,
                slot: p.slot,
            })
            .collect()
    }

    /// End-to-end session statistics (`SessionManager_sessionStats`).
    pub fn session_stats(&self) -> Vec<SessionStats> {
        self.sessions
            .iter()
            .map(|s| SessionStats {
                key: s.key,
                address: s.address,
                state: state_name(s.session.state()),
                handle: s.receive_handle,
                send_handle: s.send_handle.unwrap_or(0),
                path: s.path.map_or(0, Label::bits),
                version: s.version,
            })
            .collect()
    }

    /// Number of user packets waiting for sessions.
    pub fn buffered_packets(&self) -> usize {
        self.sessions.buffered_len()
    }

    /// Random bytes from the node's generator (for callers that need nonces, e.g. admin cookies).
    pub fn rng(&mut self) -> &mut (impl RngCore + CryptoRng) {
        &mut self.rng
    }

    /// The marker every control frame starts with (re-exported for drivers and tests).
    pub const CONTROL_MARKER: [u8; 4] = CONTROL_MARKER;
}
