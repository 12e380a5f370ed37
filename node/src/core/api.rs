//! `Node`'s configuration and introspection: identity, passwords and peers, beacons, link
//! capacities and leases, the supernode face, and the statistics the admin API reports. The
//! data path and the wiring of the stages are in the module root; what is here only hands
//! settings to a stage or reads one out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_lease_engine::{EngineError, Event, LeaseEngine, UnixTime};
use pktmesh_switch::{EncodingScheme, Label};
use rand_core::{CryptoRng, RngCore};

use super::link::BeaconAction;
use super::{
    HandshakeStats, Node, NodeError, NodeRef, Output, Pathfinder, PeerStats, SessionStats,
    SupernodeQuery,
};
use crate::beacon::{self, Beacon, BeaconError};
use crate::egress::{LinkCapacities, PortStats};
use crate::link_crypto::LinkCryptoMode;
use crate::packet::PacketBuf;
use crate::peers::PeerCredentials;
use crate::routes::LeasedRoutes;
use crate::shard::ShardSpec;

impl<P: Pathfinder> Node<P> {
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

    /// Which crypto peer links offer (`pktmesh.linkCrypto`; Noise unless set): with
    /// [`LinkCryptoMode::Legacy`] peers we connect to get HELLOs only and Noise initiations
    /// are refused. Peers connected before keep what they have.
    pub fn set_link_crypto(&mut self, mode: LinkCryptoMode) {
        self.link.set_link_crypto(mode);
    }

    /// The wall-clock time at `now`, as the duration since the Unix epoch: our Noise
    /// initiations carry it (a responder refuses one not newer than the last it accepted from
    /// our key, so a restarted node must not start from zero). The driver sets it at start.
    pub fn set_wall_clock(&mut self, now: Instant, since_epoch: Duration) {
        self.link.set_wall_clock(now, since_epoch);
        self.sessions.set_wall_clock(now, since_epoch);
    }

    /// Starts peering with the node `key` at `link_address` (cjdns `beginConnection`), and
    /// sends the first packet, a switch ping: it starts the negotiation (a Noise initiation
    /// goes out, and the ping with the first legacy HELLO if the peer does not answer Noise)
    /// or, with [`LinkCryptoMode::Legacy`], goes out as a HELLO.
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
    /// from a known address it only updates the password. The driver hands over only beacons
    /// broadcast on a beacon device. A node makes at most [`beacon::MAX_BEACON_PEERS`] peers
    /// from beacons (each of `n` shards at most ⌈max/n⌉); past that a beacon from a new
    /// address is refused ([`BeaconError::TooManyBeaconPeers`]) until one of them is forgotten.
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
        let BeaconAction::Connect(credentials) = self.link.beacon_from(link, b, &self.view) else {
            return Ok(None);
        };
        // Peers made from beacons are capped: forged beacons cannot take every peer slot.
        let cap = beacon::MAX_BEACON_PEERS.div_ceil(usize::from(self.view.shard().count()));
        let link_stage = &self.link;
        if !self
            .beacon_peers
            .has_room(cap, |key| link_stage.node_for(&key.address()).is_some())
        {
            return Err(BeaconError::TooManyBeaconPeers(beacon::MAX_BEACON_PEERS));
        }
        let Ok((slot, label)) = self.link.connect(
            now,
            link,
            b.key,
            credentials,
            Some("beacon_peer".into()),
            &mut self.view,
        ) else {
            return Ok(None);
        };
        self.beacon_peers.add(b.key);
        // Replying to a beacon counts as incoming: forgotten when silent.
        self.link.mark_beacon_peer(slot, b.version);
        self.send_keepalive(now, slot);
        Ok(Some(label))
    }

    // ----- paced links, leases, supernode face ------------------------------------------

    /// Sends the next packet a paced egress port lets go, if any: the buffer then holds the
    /// link-encrypted packet and the answer says where. Call after every batch of input and
    /// when [`Node::poll_timeout`] passes, until it answers [`Output::None`].
    pub fn poll_egress(&mut self, now: Instant, buf: &mut PacketBuf) -> Output {
        // A packet whose link cannot send yet (a Noise handshake in progress) is dropped, as
        // unpaced ones are; the ports' other packets still go.
        while let Some(slot) = self.switch.poll_egress(now, buf) {
            if let out @ Output::Udp(_) = self.seal_for_link(now, slot, buf) {
                return out;
            }
        }
        Output::None
    }

    /// Whether end-to-end sessions with pktmesh nodes are upgraded to Noise (the default;
    /// config `pktmesh.sessionCrypto`, `docs/node.md` "Noise end to end"). Off, every session
    /// stays legacy CryptoAuth and Noise initiations are dropped.
    pub fn set_session_noise(&mut self, on: bool) {
        self.sessions.set_noise(on);
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

    /// The route server's paths for our leased traffic ([`crate::routes`]): the driver turns
    /// the policy on while our own traffic rides a lease, asks the route server for
    /// [`LeasedRoutes::wanted`] and hands the answers to [`LeasedRoutes::set`].
    pub fn leased_routes(&mut self) -> &mut LeasedRoutes {
        &mut self.routes
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

    /// What the handshake budgets let through and shed, and what the session table holds and
    /// has let go (`Pktmesh_handshakeStats`).
    pub fn handshake_stats(&self) -> HandshakeStats {
        HandshakeStats {
            link: self.link.budget_stats(),
            end_to_end: self.sessions.budget_stats(),
            sessions: self.sessions.table_stats(),
        }
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

/// The keys of the peers a shard made from beacons, for the cap on them.
#[derive(Debug, Default)]
pub(super) struct BeaconPeers {
    keys: Vec<PublicKey>,
}

impl BeaconPeers {
    /// Whether another beacon peer fits under `cap`. When the list is full, the peers that
    /// are gone (`present` says no: forgotten when silent, or removed) are dropped from it
    /// first.
    fn has_room(&mut self, cap: usize, present: impl Fn(&PublicKey) -> bool) -> bool {
        if self.keys.len() >= cap {
            self.keys.retain(|k| present(k));
        }
        self.keys.len() < cap
    }

    /// Counts a peer just made from a beacon.
    fn add(&mut self, key: PublicKey) {
        self.keys.push(key);
    }
}
