//! The node: four stages and the wiring between them.
//!
//! ```text
//!  datagram ──► link ──► switch ──► session ──► upper ──► TUN / pathfinder / route server
//!  (peer)       open     forward    open        deliver
//!                 ▲         │ to a peer
//!  datagram ◄── link ◄── switch ◄── session ◄── TUN packet, CJDHT message
//!  (peer)       seal     egress     seal
//! ```
//!
//! - `link`: peers, their outer sessions, keepalives, beacons, link addresses;
//! - `switch`: where a packet goes, leases and pacing, control messages;
//! - `session`: end-to-end sessions and their handles;
//! - `upper`: consumers by content type (IPv6 to TUN, CJDHT to the pathfinder).
//!
//! Each stage owns its state and works in place on the caller's [`PacketBuf`]; [`Node`] only
//! passes the buffer from one to the next and acts on what they answer (hand a packet to
//! another shard, tell the pathfinder about a peer, send a reply). Inputs are datagrams from
//! peers ([`Node::handle_udp`]), IPv6 packets from the TUN device ([`Node::handle_tun`]) and
//! the passage of time ([`Node::handle_timeout`]). A data-path call answers with one
//! [`Output`] that refers to the same buffer, so forwarding and TUN traffic allocate nothing.
//! Control-plane packets (keepalives, handshakes, pathfinder messages, errors) are queued and
//! collected with [`Node::poll_transmit`]; noteworthy happenings with [`Node::poll_event`].
//! `docs/node.md` follows one packet through the stages.

mod link;
mod session;
mod switch;
mod types;
mod upper;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use pktmesh_crypto_auth::legacy::CryptoAuth;
use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::{EngineError, Event, LeaseEngine, UnixTime};
use pktmesh_switch::header::HEADER_LEN;
use pktmesh_switch::switch_core::{TrafficClassPolicy, ROUTER_SLOT};
use pktmesh_switch::{EncodingScheme, Label, SwitchCore};
use rand_core::{CryptoRng, RngCore, SeedableRng};

use crate::beacon::{self, Beacon, BeaconError};
use crate::egress::{LinkCapacities, PortStats};
use crate::ipv6::{self, write_data_header, CONTENT_TYPE_CJDHT};
use crate::packet::PacketBuf;
use crate::peers::PeerCredentials;
use crate::shard::{Directory, DirectoryView, ShardSpec};

use link::{BeaconAction, LinkIn, LinkStage};
use session::{Prepared, SessionIn, SessionStage};
use switch::{ControlIn, SwitchStage, Switched};
pub(crate) use types::EventLog;
pub use types::{
    Handoff, NodeError, NodeEvent, Output, PeerStats, PingResult, ReceiveStats, SessionStats,
    Stage, SupernodeQuery, Transmit, MAX_EVENTS, MAX_SUPERNODE_QUERIES,
};
use upper::Upper;

pub use crate::pathfinding::{NodeRef, Pathfinder};

/// The node core. `P` is the pathfinder.
pub struct Node<P> {
    key: PublicKey,
    address: Address,
    /// This shard's copy of the switch table all shards share.
    view: DirectoryView,
    link: LinkStage,
    switch: SwitchStage,
    sessions: SessionStage,
    upper: Upper,
    pathfinder: P,
    rng: rand_chacha::ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    events: EventLog,
}

impl<P> std::fmt::Debug for Node<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.address)
            .field("peers", &self.link.len())
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

fn handoff(shard: u8, stage: Stage) -> Output {
    Output::Handoff(Handoff { shard, stage })
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
        let signer = Signer::from_cjdns(&private_key);
        // End-to-end sessions use no passwords; they share the context as created here, while
        // link sessions see the users added later (`Arc::make_mut` splits the two).
        let ca = Arc::new(CryptoAuth::new(private_key));
        let key = *ca.public_key();
        let handle_base = crate::sessions::random_first_handle(&mut rng);
        let sessions = SessionStage::new(ca.clone(), shard, handle_base);
        let beacon_password = beacon::new_password(&mut rng);
        if !shard.is_single() {
            // Shards share the seed for what they must agree on; from here on each draws
            // its own stream (ephemeral keys, nonces, cookies).
            rng.set_stream(u64::from(shard.index()) + 1);
        }
        Self {
            key,
            address: key.address(),
            view: DirectoryView::new(directory, shard),
            // Peers that heard our beacon log in with its password (cjdns does the same).
            link: LinkStage::new(ca, beacon_password, now),
            switch: SwitchStage::new(&signer, key, now),
            sessions,
            upper: Upper::default(),
            pathfinder,
            rng,
            transmits: VecDeque::new(),
            events: EventLog::default(),
        }
    }

    // ----- identity and configuration ---------------------------------------------------

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
        self.switch.scheme()
    }

    /// The pathfinder.
    pub fn pathfinder(&self) -> &P {
        &self.pathfinder
    }

    /// The pathfinder, mutably.
    pub fn pathfinder_mut(&mut self) -> &mut P {
        &mut self.pathfinder
    }

    /// Which shard of the node this core is.
    pub fn shard(&self) -> ShardSpec {
        self.view.shard()
    }

    /// Authorizes `password` for incoming peers, optionally under `login` and restricted to
    /// one peer address.
    pub fn add_authorized_password(
        &mut self,
        password: &[u8],
        login: Option<&[u8]>,
        restricted_to: Option<Address>,
    ) -> Result<(), NodeError> {
        // Existing sessions keep the context they were created with; new ones see the user.
        self.link.add_user(password, login, restricted_to)
    }

    /// Logins of the authorized passwords (`AuthorizedPasswords_list`): the added ones in the
    /// order they were added, then `Local Peers` (our beacon password), which stock 22.3 lists
    /// after them (`[default-login, Local Peers]` in the `admin-api` captures) although it
    /// authorizes it first.
    pub fn authorized_users(&self) -> Vec<Vec<u8>> {
        let (beacon, added): (Vec<_>, Vec<_>) = self
            .link
            .context()
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
        let (slot, label) =
            self.link
                .connect(now, link_address, key, credentials, name, &mut self.view)?;
        self.send_keepalive(now, slot);
        Ok(label)
    }

    // ----- beacons ----------------------------------------------------------------------

    /// Our beacon for a UDP interface whose data socket uses `data_port`.
    pub fn beacon(&self, data_port: u16) -> [u8; beacon::BEACON_LEN] {
        self.link.own_beacon(data_port).to_bytes()
    }

    /// Our beacon body for Ethernet interfaces (no UDP header: peers are MACs there).
    pub fn eth_beacon(&self) -> [u8; beacon::BODY_LEN] {
        self.link.own_beacon(0).body_bytes()
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
        Ok(self.peer_from_beacon(now, SocketAddr::new(from.ip(), b.data_port), &b))
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
        Ok(self.peer_from_beacon(now, link, &b))
    }

    fn peer_from_beacon(&mut self, now: Instant, link: SocketAddr, b: &Beacon) -> Option<Label> {
        let BeaconAction::Connect(credentials) = self.link.beacon_from(link, b, &self.view) else {
            return None;
        };
        let (slot, label) = self
            .link
            .connect(
                now,
                link,
                b.key,
                credentials,
                Some("beacon_peer".into()),
                &mut self.view,
            )
            .ok()?;
        // Replying to a beacon counts as incoming: forgotten when silent.
        self.link.mark_beacon_peer(slot, b.version);
        self.send_keepalive(now, slot);
        Some(label)
    }

    // ----- output queues ----------------------------------------------------------------

    /// The next queued control-plane packet.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event worth logging.
    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop()
    }

    /// The next completed switch ping.
    pub fn poll_ping_result(&mut self) -> Option<PingResult> {
        self.switch.poll_ping_result()
    }

    /// When [`Node::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Instant {
        let t = match self.pathfinder.poll_timeout() {
            Some(t) if t < self.link.next_keepalive() => t,
            _ => self.link.next_keepalive(),
        };
        self.switch.next_egress().map_or(t, |e| e.min(t))
    }

    fn queue(&mut self, out: Output, buf: &PacketBuf) {
        let data = || buf.data().to_vec();
        match out {
            Output::None => {}
            Output::Udp(to) => self.transmits.push_back(Transmit::Udp { to, data: data() }),
            Output::Tun => self.transmits.push_back(Transmit::Tun(data())),
            Output::Handoff(handoff) => self.transmits.push_back(Transmit::Handoff {
                handoff,
                data: data(),
            }),
        }
    }

    // ----- data path: in from a peer ----------------------------------------------------

    /// A packet another shard of this node handed over ([`Output::Handoff`]); the buffer holds
    /// what the [`Stage`] says. Answers like the call the packet would have reached here.
    pub fn handle_handoff(&mut self, now: Instant, stage: Stage, buf: &mut PacketBuf) -> Output {
        match stage {
            Stage::Datagram(from) => self.handle_udp(now, from, buf),
            Stage::Forward { from, to } => {
                self.sync_view();
                self.send_to_peer(now, from, to, buf)
            }
            Stage::Router => {
                let out = self.router_in(now, buf);
                self.drain_pathfinder(now);
                out
            }
            Stage::Tun => self.handle_tun(now, buf),
        }
    }

    /// A datagram arrived from `from`. On return the buffer holds what [`Output`] says to send.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, buf: &mut PacketBuf) -> Output {
        let opened = self
            .link
            .open(now, from, buf, &mut self.view, &mut self.events);
        while let Some(peer) = self.link.take_departed() {
            self.peer_gone(now, peer);
        }
        match opened {
            LinkIn::Drop => Output::None,
            LinkIn::Elsewhere(owner) => handoff(owner, Stage::Datagram(from)),
            LinkIn::Opened { slot, hold, ping } => {
                self.announce_if_ready(now, slot);
                if ping {
                    self.send_keepalive(now, slot);
                }
                if hold {
                    return Output::None;
                }
                self.switch_in(now, slot, buf)
            }
        }
    }

    /// Tells the other stages (once) about a peer whose link is established and whose version
    /// is known.
    fn announce_if_ready(&mut self, now: Instant, slot: u16) {
        let Some((node, address)) = self.link.take_announcement(slot) else {
            return;
        };
        self.events.push(NodeEvent::PeerEstablished {
            key: node.key,
            address,
        });
        self.pathfinder.peer_up(now, node);
        self.send_rpath_query(now, slot);
    }

    /// Brings this shard's copy of the switch table up to date, and the switch stage's view of
    /// the peers in it (one atomic read when nothing changed).
    fn sync_view(&mut self) {
        self.view.sync();
        self.switch.sync(&self.view);
    }

    /// Runs the switch on a packet that arrived on `from`.
    fn switch_in(&mut self, now: Instant, from: u16, buf: &mut PacketBuf) -> Output {
        self.sync_view();
        match self.switch.forward(&self.view, from, buf) {
            Switched::Router => self.router_in(now, buf),
            Switched::Peer(to) => self.send_to_peer(now, from, to, buf),
            Switched::Elsewhere { owner, to } => handoff(owner, Stage::Forward { from, to }),
            Switched::Error(mut error) => {
                let out = if from == ROUTER_SLOT {
                    self.router_in(now, &mut error)
                } else {
                    self.seal_for_link(now, from, &mut error)
                };
                self.queue(out, &error);
                Output::None
            }
            Switched::Drop => Output::None,
        }
    }

    /// Classifies and paces a switched packet for the peer in `to`, and seals it for the link
    /// unless the paced link keeps it for later.
    fn send_to_peer(&mut self, now: Instant, from: u16, to: u16, buf: &mut PacketBuf) -> Output {
        if self.switch.egress(now, &self.view, from, to, buf) {
            self.seal_for_link(now, to, buf)
        } else {
            Output::None
        }
    }

    /// Seals the buffer for the peer in `slot`.
    fn seal_for_link(&mut self, now: Instant, slot: u16, buf: &mut PacketBuf) -> Output {
        match self.link.seal(now, &mut self.rng, slot, buf) {
            Some(address) => Output::Udp(address),
            None => Output::None,
        }
    }

    /// A packet the switch delivered to our router.
    fn router_in(&mut self, now: Instant, buf: &mut PacketBuf) -> Output {
        let Some(label) = buf
            .data()
            .first_chunk::<8>()
            .map(|l| u64::from_be_bytes(*l))
        else {
            return Output::None;
        };
        let back = label.reverse_bits();
        match be32(buf.data(), HEADER_LEN) {
            Some(0xffff_ffff) => self.control_in(now, back, buf),
            Some(_) => self.session_in(now, back, buf),
            None => Output::None,
        }
    }

    fn control_in(&mut self, now: Instant, back: u64, buf: &PacketBuf) -> Output {
        let Some(frame) = switch::control_frame(buf.data()) else {
            return Output::None;
        };
        let link = self.link.link_address_of(back);
        match self
            .switch
            .control(now, self.view.shard(), back, frame, link)
        {
            ControlIn::None => {}
            ControlIn::Reply(mut reply) => self.send_from_router(now, &mut reply),
            ControlIn::KeepalivePong { cookie, version } => {
                if let Some((slot, ask_rpath)) =
                    self.link.keepalive_answered(now, cookie, back, version)
                {
                    self.announce_if_ready(now, slot);
                    if ask_rpath {
                        self.send_rpath_query(now, slot);
                    }
                }
            }
            ControlIn::RPath(rpath) => self.link.set_path_to_us(back, rpath),
            ControlIn::Elsewhere(owner) => return handoff(owner, Stage::Router),
        }
        Output::None
    }

    /// An end-to-end packet for our router, opened by the session stage and handed to the
    /// consumer of its content type.
    fn session_in(&mut self, now: Instant, back: u64, buf: &mut PacketBuf) -> Output {
        let (from, source, became_ready) = match self.sessions.open(now, back, buf) {
            SessionIn::Drop => return Output::None,
            SessionIn::Elsewhere(owner) => return handoff(owner, Stage::Router),
            SessionIn::AuthError {
                back,
                quoted,
                error,
                key,
                established,
                state,
            } => {
                if established {
                    self.events.dropped(now, key, true, error);
                }
                if let Some(mut reply) = switch::auth_error(back, &quoted, error.code(), state) {
                    self.send_from_router(now, &mut reply);
                }
                return Output::None;
            }
            SessionIn::Content {
                from,
                source,
                became_ready,
            } => (from, source, became_ready),
        };
        let out = self
            .upper
            .deliver(now, from, &source, &self.address, buf, &mut self.pathfinder);
        if became_ready {
            // The KEY arrived: user packets may flow now. They are queued behind `out`.
            self.flush(now, source);
        }
        self.drain_pathfinder(now);
        out
    }

    // ----- data path: out from this node ------------------------------------------------

    /// An IPv6 packet read from the TUN device.
    pub fn handle_tun(&mut self, now: Instant, buf: &mut PacketBuf) -> Output {
        let shard = self.view.shard();
        if !shard.is_single() {
            if let Some(destination) = ipv6::destination(buf.data()) {
                let owner = shard.owner_of(&destination);
                if owner != shard.index() {
                    return handoff(owner, Stage::Tun);
                }
            }
        }
        let out = match ipv6::from_tun(buf.data_mut(), &self.address) {
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
        // A direct peer or a node the pathfinder knows, looked up only when no session exists.
        let (link, pathfinder) = (&self.link, &self.pathfinder);
        let known = || {
            link.node_for(&destination)
                .or_else(|| pathfinder.node_for(&destination))
        };
        match self.sessions.prepare(now, destination, known, buf, user) {
            Prepared::Seal(index) => self.seal_and_send(now, index, buf),
            Prepared::Waiting { search, ping } => {
                if let Some(node) = ping {
                    self.pathfinder.ping(now, node);
                } else if search {
                    self.pathfinder.search(now, destination);
                }
                Output::None
            }
            Prepared::Drop => Output::None,
        }
    }

    /// Seals `[DataHeader][payload]` in session `index` and hands it to the switch.
    fn seal_and_send(&mut self, now: Instant, index: usize, buf: &mut PacketBuf) -> Output {
        if !self.sessions.seal(now, &mut self.rng, index, buf) {
            return Output::None;
        }
        self.switch_in(now, ROUTER_SLOT, buf)
    }

    /// Sends a packet our router originated (it starts with a switch header) and queues it.
    fn send_from_router(&mut self, now: Instant, buf: &mut PacketBuf) {
        let out = self.switch_in(now, ROUTER_SLOT, buf);
        self.queue(out, buf);
    }

    /// Sends the user packets buffered for `destination`, now that its session is ready.
    fn flush(&mut self, now: Instant, destination: Address) {
        for b in self.sessions.take_waiting(&destination) {
            let mut pb = PacketBuf::from_slice(&b.data);
            let out = self.send_to_node(now, destination, &mut pb, true);
            self.queue(out, &pb);
        }
    }

    /// Sends a CJDHT message (content type 256) to `node` in its end-to-end session, setting
    /// the session up if needed.
    fn send_cjdht(&mut self, now: Instant, node: NodeRef, message: &[u8]) {
        let Some(index) = self.sessions.for_message(now, node) else {
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
            // Packets wait for this node: send them if its session is ready, set it up if not.
            let Some(index) = self.sessions.path_found(now, node) else {
                continue;
            };
            if self.sessions.is_ready(index) {
                self.flush(now, node.key.address());
            } else {
                self.pathfinder.ping(now, node);
            }
        }
    }

    // ----- paced links, leases, supernode face ------------------------------------------

    /// Sends the next packet a paced egress port lets go, if any: the buffer then holds the
    /// link-encrypted packet and the answer says where. Call after every batch of input and
    /// when [`Node::poll_timeout`] passes, until it answers [`Output::None`].
    pub fn poll_egress(&mut self, now: Instant, buf: &mut PacketBuf) -> Output {
        match self.switch.poll_egress(now, buf) {
            Some(slot) => self.seal_for_link(now, slot, buf),
            None => Output::None,
        }
    }

    /// Sets the capacity of every peer link (kbit/s); forwarded traffic is then paced at it and
    /// queued by lease priority when the link is busy. `None` sends everything at once.
    pub fn set_link_capacity(&mut self, kbps: Option<u32>) {
        self.set_link_capacities(LinkCapacities::uniform(kbps));
    }

    /// Sets the capacity of each peer link: a default and entries by peer key or link address
    /// (`pktmesh.linkCapacityKbps`).
    pub fn set_link_capacities(&mut self, capacities: LinkCapacities) {
        self.switch.set_link_capacities(capacities);
    }

    /// For tests of lease theft only: every packet this node originates leaves with traffic
    /// class `class` (a forged network tag), as a peer that wants to ride another network's
    /// lease would send it. `None` (the default) classifies honestly.
    pub fn forge_traffic_class(&mut self, class: Option<u16>) {
        self.switch.forge_traffic_class(class);
    }

    /// The capacities of the peer links.
    pub fn link_capacities(&self) -> &LinkCapacities {
        self.switch.link_capacities()
    }

    /// The capacity of the link to `key` at `link`, kbit/s (`None`: not paced).
    pub fn link_capacity_of(&self, key: &PublicKey, link: &SocketAddr) -> Option<u32> {
        self.switch.link_capacities().of(key, link)
    }

    /// Counters of the paced egress ports of this shard, by peer key.
    pub fn egress_stats(&self) -> Vec<(PublicKey, PortStats)> {
        self.switch.egress_stats().collect()
    }

    /// Applies one signed lease message (`docs/leases.md` §3) at wall-clock time `now`.
    pub fn handle_lease_message(
        &mut self,
        now: UnixTime,
        bytes: &[u8],
    ) -> Result<Event, EngineError> {
        self.sync_view();
        self.switch.handle_lease_message(now, bytes)
    }

    /// Lets lease time spans start and end (call about once a second with the wall clock).
    pub fn handle_lease_timeout(&mut self, now: UnixTime) {
        self.sync_view();
        self.switch.handle_lease_timeout(now);
    }

    /// The lease engine (leases known, meters).
    pub fn leases(&self) -> &LeaseEngine {
        self.switch.leases()
    }

    /// Makes this node the cjdns face of a route server, or stops it being one.
    ///
    /// A stock cjdns node finds its supernode by asking its peers (switch GETSNODE); this node
    /// then names itself. The supernode queries (`sq`: `pn`, `ann`, `gr`) that arrive for it in
    /// end-to-end sessions are queued for [`Node::poll_supernode_query`] instead of going to the
    /// pathfinder; the driver has the route server answer them and sends the answer back with
    /// [`Node::answer_supernode_query`].
    pub fn set_supernode_face(&mut self, enabled: bool) {
        self.switch.set_supernode_face(enabled);
        self.upper.dht.supernode_face = enabled;
        if !enabled {
            self.upper.dht.supernode_queries.clear();
        }
    }

    /// The next supernode query for the route server, oldest first.
    pub fn poll_supernode_query(&mut self) -> Option<SupernodeQuery> {
        self.upper.dht.supernode_queries.pop_front()
    }

    /// Sends the route server's answer to a supernode query back to the node that asked
    /// (content type 256 in the end-to-end session with `to`).
    pub fn answer_supernode_query(&mut self, now: Instant, to: NodeRef, answer: &[u8]) {
        self.send_cjdht(now, to, answer);
    }

    // ----- timers -----------------------------------------------------------------------

    /// Runs keepalives, expiry and the pathfinder's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.link.keepalive_due(now) {
            self.keepalive(now);
            self.switch.expire_pings(now);
        }
        self.sessions.expire(now);
        self.pathfinder.handle_timeout(now);
        self.drain_pathfinder(now);
    }

    fn keepalive(&mut self, now: Instant) {
        // Forget incoming peers that went silent.
        for (slot, key) in self.link.silent(now) {
            self.events.push(NodeEvent::PeerForgotten { key });
            if let Some(peer) = self.link.remove(slot, &mut self.view) {
                self.peer_gone(now, peer);
            }
        }
        // Ping at most one lazy peer per tick, round robin.
        if let Some(slot) = self.link.next_lazy(now) {
            self.send_keepalive(now, slot);
        }
    }

    /// A peer left the link stage (its slot is free again): the switch stage and the
    /// pathfinder forget it too.
    fn peer_gone(&mut self, now: Instant, peer: crate::peers::Peer) {
        self.sync_view();
        if peer.announced {
            let node = NodeRef {
                key: peer.key,
                path: peer.label,
                version: peer.version,
            };
            self.pathfinder.peer_down(now, node);
        }
    }

    fn send_keepalive(&mut self, now: Instant, slot: u16) {
        let cookie = self.view.shard().mark_cookie(self.rng.next_u64());
        let Some((label, data)) = self.link.keepalive_sent(now, slot, cookie) else {
            return;
        };
        if let Some(mut ping) = switch::ping_packet(label, &data) {
            self.send_from_router(now, &mut ping);
        }
    }

    /// Asks the peer in `slot` for its label back to us (cjdns RPATH).
    fn send_rpath_query(&mut self, now: Instant, slot: u16) {
        let Some(label) = self.link.label_of(slot) else {
            return;
        };
        if let Some(mut query) = switch::rpath_query(label) {
            self.send_from_router(now, &mut query);
        }
    }

    /// Starts a switch ping along `path` (admin `SwitchPinger_ping`); the answer arrives as a
    /// [`PingResult`] with the returned cookie.
    pub fn switch_ping(&mut self, now: Instant, path: Label) -> u64 {
        let cookie = self.view.shard().mark_cookie(self.rng.next_u64());
        if let Some(mut ping) = self.switch.start_ping(now, path, cookie) {
            self.send_from_router(now, &mut ping);
        }
        cookie
    }

    // ----- introspection ----------------------------------------------------------------

    /// Peer statistics (`InterfaceController_peerStats`).
    pub fn peer_stats(&self, now: Instant) -> Vec<PeerStats> {
        let mut stats = self.link.stats(now);
        for p in &mut stats {
            p.capacity_kbps = self.link_capacity_of(&p.key, &p.link_address);
        }
        stats
    }

    /// End-to-end session statistics (`SessionManager_sessionStats`).
    pub fn session_stats(&self) -> Vec<SessionStats> {
        self.sessions.stats()
    }

    /// Number of user packets waiting for sessions.
    pub fn buffered_packets(&self) -> usize {
        self.sessions.waiting_len()
    }

    /// Random bytes from the node's generator (for callers that need nonces, e.g. admin cookies).
    pub fn rng(&mut self) -> &mut (impl RngCore + CryptoRng) {
        &mut self.rng
    }
}
