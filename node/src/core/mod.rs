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
//! - `link`: peers, their outer sessions (legacy CryptoAuth or Noise), keepalives, beacons,
//!   link addresses;
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

mod api;
mod budget;
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
use pktmesh_switch::header::HEADER_LEN;
use pktmesh_switch::switch_core::{TrafficClassPolicy, ROUTER_SLOT};
use pktmesh_switch::{EncodingScheme, Label, SwitchCore};
use rand_core::{RngCore, SeedableRng};

use crate::beacon::{self};
use crate::ipv6::{self, write_data_header, CONTENT_TYPE_CJDHT};
use crate::packet::PacketBuf;
use crate::routes::LeasedRoutes;
use crate::shard::{Directory, DirectoryView, ShardSpec};

pub use budget::{BudgetSpec, BudgetStats, Rate, LINK_BUDGET, SESSION_BUDGET};
use link::{LinkIn, LinkStage};
use session::{Prepared, SessionIn, SessionStage};
use switch::{ControlIn, SwitchStage, Switched};
pub(crate) use types::EventLog;
pub use types::{
    Handoff, HandshakeStats, NodeError, NodeEvent, Output, PeerStats, PingResult, ReceiveStats,
    SessionStats, Stage, SupernodeQuery, Transmit, MAX_EVENTS, MAX_SUPERNODE_QUERIES,
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
    /// The route server's paths for our leased traffic (override the pathfinder's).
    routes: LeasedRoutes,
    rng: rand_chacha::ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    events: EventLog,
    /// The peers this shard made from beacons (capped).
    beacon_peers: api::BeaconPeers,
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
        let sessions = SessionStage::new(ca.clone(), shard, handle_base, now);
        let beacon_password = beacon::new_password(&mut rng);
        if !shard.is_single() {
            // Shards share the seed for what they must agree on; from here on each draws
            // its own stream (ephemeral keys, nonces, cookies).
            rng.set_stream(u64::from(shard.index()) + 1);
        }
        // Peers that heard our beacon log in with its password (cjdns does the same).
        let mut link = LinkStage::new(ca, beacon_password, now);
        link.set_link_crypto(crate::link_crypto::LinkCryptoMode::Noise);
        Self {
            key,
            address: key.address(),
            view: DirectoryView::new(directory, shard),
            link,
            switch: SwitchStage::new(&signer, key, now),
            sessions,
            upper: Upper::default(),
            pathfinder,
            routes: LeasedRoutes::default(),
            rng,
            transmits: VecDeque::new(),
            events: EventLog::default(),
            beacon_peers: api::BeaconPeers::default(),
        }
    }

    // ----- output queues ----------------------------------------------------------------

    /// The next queued control-plane packet (the link's handshake messages first).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some((to, data)) = self.link.take_datagram() {
            return Some(Transmit::Udp { to, data });
        }
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
            // A HELLO from an unknown address was charged to the budget where it arrived.
            Stage::Datagram(from) => self.datagram_in(now, from, buf, true),
            Stage::Forward { from, to } => {
                self.sync_view();
                self.send_to_peer(now, from, to, buf)
            }
            Stage::Router => {
                // An end-to-end handshake was charged to the budget where it arrived.
                let out = self.router_in(now, buf, true);
                self.drain_pathfinder(now);
                out
            }
            Stage::Tun => self.handle_tun(now, buf),
        }
    }

    /// A datagram arrived from `from`. On return the buffer holds what [`Output`] says to send.
    pub fn handle_udp(&mut self, now: Instant, from: SocketAddr, buf: &mut PacketBuf) -> Output {
        self.datagram_in(now, from, buf, false)
    }

    /// [`Node::handle_udp`]; `charged`: the handshake budget already counted it (in the shard
    /// that handed it over).
    fn datagram_in(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut PacketBuf,
        charged: bool,
    ) -> Output {
        let mut opened = self
            .link
            .open(now, from, buf, &mut self.view, &mut self.events, charged);
        if let LinkIn::NoiseHandshake { slot } = opened {
            opened = self.link.noise_handshake(
                now,
                &mut self.rng,
                from,
                slot,
                buf,
                &mut self.view,
                &mut self.events,
            );
        }
        while let Some(peer) = self.link.take_departed() {
            self.peer_gone(now, peer);
        }
        match opened {
            LinkIn::Drop | LinkIn::NoiseHandshake { .. } => Output::None,
            LinkIn::Elsewhere(owner) => handoff(owner, Stage::Datagram(from)),
            LinkIn::Control { ping } => {
                if let Some(slot) = ping {
                    self.announce_if_ready(now, slot);
                    self.send_keepalive(now, slot);
                }
                Output::None
            }
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
            Switched::Router => self.router_in(now, buf, false),
            Switched::Peer(to) => self.send_to_peer(now, from, to, buf),
            Switched::Elsewhere { owner, to } => handoff(owner, Stage::Forward { from, to }),
            Switched::Error(mut error) => {
                let out = if from == ROUTER_SLOT {
                    self.router_in(now, &mut error, false)
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

    /// A packet the switch delivered to our router (`charged`: if it is an end-to-end
    /// handshake, another shard's budget has counted it).
    fn router_in(&mut self, now: Instant, buf: &mut PacketBuf, charged: bool) -> Output {
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
            Some(_) => self.session_in(now, back, buf, charged),
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
    fn session_in(
        &mut self,
        now: Instant,
        back: u64,
        buf: &mut PacketBuf,
        charged: bool,
    ) -> Output {
        // The peer it came through: the first director of the path back.
        let via = self
            .switch
            .scheme()
            .parse_director(back)
            .map_or(u32::MAX, |(iface, _)| iface);
        let opened = self
            .sessions
            .open(now, &mut self.rng, back, via, charged, buf);
        let (from, source, became_ready) = match opened {
            SessionIn::Drop => return Output::None,
            SessionIn::Reply(mut reply) => {
                self.send_from_router(now, &mut reply);
                return Output::None;
            }
            SessionIn::Shed => {
                self.events.shed(now, true);
                return Output::None;
            }
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
        // One lookup notes the destination and gives its route.
        let route = if user {
            self.routes.note_use(now, destination)
        } else {
            self.routes.route(now, &destination)
        };
        match self.sessions.prepare(now, destination, known, buf, user) {
            Prepared::Seal(index) => self.seal_and_send(now, index, route, buf),
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

    /// Seals `[DataHeader][payload]` in session `index` and hands it to the switch, on
    /// `route` (the route server's label for our leased traffic) when there is one.
    fn seal_and_send(
        &mut self,
        now: Instant,
        index: usize,
        route: Option<Label>,
        buf: &mut PacketBuf,
    ) -> Output {
        if !self.sessions.seal(now, &mut self.rng, index, buf) {
            return Output::None;
        }
        if let Some(label) = route {
            // The switch header is in front and starts with the label.
            if let Some(l) = buf.data_mut().get_mut(..8) {
                l.copy_from_slice(&label.bits().to_be_bytes());
                self.routes.count_routed();
            }
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
        let route = self.routes.route(now, &node.key.address());
        let out = self.seal_and_send(now, index, route, &mut pb);
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

    // ----- timers -----------------------------------------------------------------------

    /// Runs keepalives, expiry and the pathfinder's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.link.keepalive_due(now) {
            self.keepalive(now);
            self.switch.expire_pings(now);
        }
        self.sessions.expire(now);
        for mut initiation in self.sessions.noise_initiations(now, &mut self.rng) {
            self.send_from_router(now, &mut initiation);
        }
        self.link.expire(now);
        self.events.report_shed(now);
        self.routes.expire(now);
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
        // Peers we connect to: probe the quiet, re-handshake the dead (`link::liveness`).
        for slot in self.link.liveness_probes(now, &mut self.events) {
            self.send_keepalive(now, slot);
        }
        // Ping at most one lazy peer per tick, round robin.
        if let Some(slot) = self.link.next_lazy(now) {
            self.send_keepalive(now, slot);
        }
        // Noise links: WireGuard's re-keys and keepalives.
        self.link.noise_timers(now, &mut self.rng);
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
}
