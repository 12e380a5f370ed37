//! The switch stage (cjdns' SwitchCore and ControlHandler, plus pktmesh's leases): where a
//! packet goes, what priority and traffic class it gets, when a paced link lets it go, and the
//! answers to switch control messages.
//!
//! **Owns:** the lease engine and the per-packet classification, the egress port of every paced
//! peer link, the switch pings in flight and their results, and whether the node answers
//! GETSNODE as a supernode face. **Does not own:** the switch table (read from the shard's
//! [`DirectoryView`]), the peers and their sessions (the link stage seals what this stage lets
//! go), or end-to-end sessions.
//!
//! In: a switch packet and the slot it arrived on ([`SwitchStage::forward`]), a packet for a
//! peer ([`SwitchStage::egress`]), a control frame for our router ([`SwitchStage::control`]).
//! Out: decisions; the buffer is rewritten in place (label, traffic class).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::PublicKey;
use pktmesh_lease_engine::sign::Signer;
use pktmesh_lease_engine::{EngineConfig, EngineError, Event, LeaseEngine, Nanos, UnixTime};
use pktmesh_switch::control::{
    self, respond, write_switch_error, ControlMessage, ErrorCode, LinkAddress, NoReply, Ping,
    RPath, ResponderConfig, Snode, ERROR_PACKET_MAX, PROTOCOL_VERSION,
};
use pktmesh_switch::header::{SwitchHeaderRepr, HEADER_LEN};
use pktmesh_switch::switch_core::{ROUTER_SLOT, SLOT_COUNT};
use pktmesh_switch::{EncodingScheme, Forward, Label};

use super::be32;
use super::types::PingResult;
use crate::egress::{EgressPort, LinkCapacities, PortStats};
use crate::packet::PacketBuf;
use crate::peers::KEEPALIVE_MAGIC;
use crate::shard::{DirectoryView, ShardSpec};

/// Where a switched packet goes.
#[derive(Debug)]
pub(crate) enum Switched {
    /// To our router (the buffer's label now names the way back).
    Router,
    /// To the peer in this slot, which this shard owns.
    Peer(u16),
    /// To the peer in `to`, which shard `owner` owns.
    Elsewhere {
        /// The owning shard.
        owner: u8,
        /// The peer's slot.
        to: u16,
    },
    /// Not forwardable: send this ERROR back out of the arrival slot.
    Error(PacketBuf),
    /// Dropped.
    Drop,
}

/// What a control frame for our router calls for.
#[derive(Debug)]
pub(crate) enum ControlIn {
    /// Nothing more.
    None,
    /// Send this reply from our router.
    Reply(PacketBuf),
    /// A keepalive pong: the peer that was pinged with `cookie` is alive at `version`.
    KeepalivePong {
        /// The ping's cookie.
        cookie: u64,
        /// The peer's protocol version.
        version: u32,
    },
    /// An RPATH reply: the peer reached by the arrival path reaches us with this label.
    RPath(u64),
    /// The pong answers a ping another shard sent.
    Elsewhere(u8),
}

/// Leases, pacing and control messages of one shard.
pub(crate) struct SwitchStage {
    key: PublicKey,
    scheme: EncodingScheme,
    leases: LeaseEngine,
    /// The egress port of each paced peer link this shard sends on, and whose it is.
    egress: Vec<Option<(PublicKey, EgressPort)>>,
    /// Capacity of each peer link.
    capacities: LinkCapacities,
    /// The directory generation the lease engine's peers were taken from.
    peers_seen: Option<u64>,
    /// Test switch: the traffic class written on everything our router sends
    /// ([`SwitchStage::forge_traffic_class`]).
    forged_class: Option<u16>,
    /// Where [`Nanos`] for the lease engine count from.
    epoch: Instant,
    /// Round-robin start for [`SwitchStage::poll_egress`].
    egress_cursor: usize,
    /// Whether GETSNODE is answered with this node (the cjdns face of a route server).
    supernode_face: bool,
    pings: HashMap<u64, (Instant, Label)>,
    ping_results: VecDeque<PingResult>,
}

impl SwitchStage {
    /// A stage for the node with this signing identity and key.
    pub(crate) fn new(signer: &Signer, key: PublicKey, now: Instant) -> Self {
        let mut leases = LeaseEngine::new(signer.public(), EngineConfig::default());
        // Our own traffic (from the router) rides our attached out-leases and is tagged.
        leases.set_local_interface(Some(ROUTER_SLOT));
        let mut egress = Vec::with_capacity(SLOT_COUNT);
        egress.resize_with(SLOT_COUNT, || None);
        Self {
            key,
            scheme: EncodingScheme::v358(),
            leases,
            egress,
            capacities: LinkCapacities::default(),
            peers_seen: None,
            forged_class: None,
            epoch: now,
            egress_cursor: 0,
            supernode_face: false,
            pings: HashMap::new(),
            ping_results: VecDeque::new(),
        }
    }

    /// The switch's encoding scheme.
    pub(crate) fn scheme(&self) -> &EncodingScheme {
        &self.scheme
    }

    /// Takes the peers of every slot from the shared switch table when it changed: the lease
    /// engine classifies packets between any two slots (whichever shard owns them), and a port
    /// whose slot changed hands is dropped.
    pub(crate) fn sync(&mut self, view: &DirectoryView) {
        if self.peers_seen == Some(view.generation()) {
            return;
        }
        self.peers_seen = Some(view.generation());
        self.leases
            .set_peers(view.peers().map(|(slot, key)| (key, slot)));
        for (slot, port) in self.egress.iter_mut().enumerate() {
            // slot < SLOT_COUNT = 257
            let now_there = view.peer_in(slot as u16).map(|(k, _)| k);
            if port.as_ref().is_some_and(|(k, _)| Some(*k) != now_there) {
                *port = None;
            }
        }
    }

    /// Runs the switch on a packet that arrived on slot `from`.
    pub(crate) fn forward(&self, view: &DirectoryView, from: u16, buf: &mut PacketBuf) -> Switched {
        match view.switch().forward(from, buf.data_mut()) {
            Forward::Deliver { to } if to == ROUTER_SLOT => Switched::Router,
            Forward::Deliver { to } => match view.slot_owner_elsewhere(to) {
                Some(owner) => Switched::Elsewhere { owner, to },
                None => Switched::Peer(to),
            },
            Forward::SendError { code } => {
                let mut err = [0u8; ERROR_PACKET_MAX];
                match write_switch_error(buf.data(), code, &mut err) {
                    Ok(n) => Switched::Error(PacketBuf::from_slice(&err[..n])),
                    Err(_) => Switched::Drop,
                }
            }
            Forward::Drop(_) => Switched::Drop,
        }
    }

    fn nanos(&self, now: Instant) -> Nanos {
        Nanos(now.saturating_duration_since(self.epoch).as_nanos() as u64)
    }

    /// Classifies a packet for the peer in `to` by its lease, writes the traffic class the
    /// lease engine chose, and paces it at that peer's link capacity: `true` to send it now,
    /// `false` when the paced link is busy and the packet waits in the peer's egress port.
    pub(crate) fn egress(
        &mut self,
        now: Instant,
        view: &DirectoryView,
        from: u16,
        to: u16,
        buf: &mut PacketBuf,
    ) -> bool {
        let nanos = self.nanos(now);
        let len = buf.len();
        let data = buf.data_mut();
        let is_control = be32(data, HEADER_LEN) == Some(0xffff_ffff) && from == ROUTER_SLOT;
        let Some(tc_bytes) = data.get_mut(10..12) else {
            return false;
        };
        let tc = u16::from_be_bytes([tc_bytes[0], tc_bytes[1]]);
        let verdict = self.leases.classify_packet(nanos, from, to, len as u32, tc);
        let written = match self.forged_class {
            Some(forged) if from == ROUTER_SLOT => forged,
            _ => verdict.traffic_class,
        };
        if written != tc {
            tc_bytes.copy_from_slice(&written.to_be_bytes());
        }
        let Some(slot) = self.egress.get_mut(usize::from(to)) else {
            return false;
        };
        let port = match slot {
            Some((_, port)) => port,
            None => {
                let Some((key, link)) = view.peer_in(to) else {
                    return true;
                };
                let Some(kbps) = self.capacities.of(&key, &link) else {
                    return true;
                };
                &mut slot.insert((key, EgressPort::new(kbps, now))).1
            }
        };
        if is_control {
            // Our own switch pings and errors keep the link alive: never queued.
            port.charge(now, len);
        } else if !port.admit_now(now, len) {
            port.enqueue(now, nanos, verdict.priority, buf.data());
            return false;
        }
        true
    }

    /// The next packet a paced egress port lets go, loaded into `buf`, and its peer's slot.
    pub(crate) fn poll_egress(&mut self, now: Instant, buf: &mut PacketBuf) -> Option<u16> {
        let n = self.egress.len();
        let nanos = self.nanos(now);
        for step in 0..n {
            let slot = (self.egress_cursor + step) % n;
            let Some((_, port)) = self.egress[slot].as_mut() else {
                continue;
            };
            if port.dequeue_into(now, nanos, buf) {
                self.egress_cursor = slot + 1;
                // slot < SLOT_COUNT = 257
                return Some(slot as u16);
            }
        }
        None
    }

    /// When the next paced packet may go.
    pub(crate) fn next_egress(&self) -> Option<Instant> {
        self.egress
            .iter()
            .flatten()
            .filter_map(|(_, port)| port.next_ready())
            .min()
    }

    /// Sets the capacity of each peer link; ports are made again at the new rates.
    pub(crate) fn set_link_capacities(&mut self, capacities: LinkCapacities) {
        self.capacities = capacities;
        self.egress.iter_mut().for_each(|p| *p = None);
    }

    /// The capacities of the peer links.
    pub(crate) fn link_capacities(&self) -> &LinkCapacities {
        &self.capacities
    }

    /// Counters of the paced egress ports, by peer key.
    pub(crate) fn egress_stats(&self) -> impl Iterator<Item = (PublicKey, PortStats)> + '_ {
        self.egress
            .iter()
            .flatten()
            .map(|(key, port)| (*key, port.stats()))
    }

    /// Applies one signed lease message (`docs/leases.md` §3) at wall-clock time `now`.
    pub(crate) fn handle_lease_message(
        &mut self,
        now: UnixTime,
        bytes: &[u8],
    ) -> Result<Event, EngineError> {
        self.leases.handle_message(now, bytes)
    }

    /// Lets lease time spans start and end.
    pub(crate) fn handle_lease_timeout(&mut self, now: UnixTime) {
        self.leases.handle_timeout(now);
    }

    /// The lease engine.
    pub(crate) fn leases(&self) -> &LeaseEngine {
        &self.leases
    }

    /// For tests of lease theft only: write `class` as the traffic class of every packet our
    /// router sends, after classification, as a node that wants to ride another network's
    /// lease would (`docs/leases.md` §4: the switches after it must not honour it).
    pub(crate) fn forge_traffic_class(&mut self, class: Option<u16>) {
        self.forged_class = class;
    }

    /// Whether GETSNODE is answered with this node.
    pub(crate) fn set_supernode_face(&mut self, enabled: bool) {
        self.supernode_face = enabled;
    }

    // ----- control messages -----------------------------------------------------------

    /// A control frame (after the `FFFFFFFF` marker) that reached our router on path `back`
    /// (the arrival label reversed) from the direct peer at `link`, if it is one.
    pub(crate) fn control(
        &mut self,
        now: Instant,
        shard: ShardSpec,
        back: u64,
        frame: &[u8],
        link: Option<LinkAddress>,
    ) -> ControlIn {
        let config = ResponderConfig {
            protocol_version: PROTOCOL_VERSION,
            public_key: *self.key.as_bytes(),
            scheme: &self.scheme,
            snode: self.supernode_face.then_some(Snode {
                key: *self.key.as_bytes(),
                path: Label::SELF,
                version: PROTOCOL_VERSION,
            }),
        };
        let mut out = [0u8; 512];
        match respond(&config, back, frame, link, &mut out) {
            Ok(n) => ControlIn::Reply(PacketBuf::from_slice(&out[..n])),
            Err(NoReply::NotAQuery(_)) => match ControlMessage::parse(frame) {
                Ok(ControlMessage::Pong(p)) => self.pong(now, shard, back, p),
                Ok(ControlMessage::RPathReply(r)) => ControlIn::RPath(r.rpath),
                _ => ControlIn::None,
            },
            Err(_) => ControlIn::None,
        }
    }

    /// A pong for a keepalive or a switch ping; one whose cookie another shard made goes there.
    fn pong(&mut self, now: Instant, shard: ShardSpec, back: u64, pong: Ping<'_>) -> ControlIn {
        let Some(cookie_bytes) = pong.data.first_chunk::<8>() else {
            return ControlIn::None;
        };
        let cookie = u64::from_be_bytes(*cookie_bytes);
        let owner = shard.owner_of_cookie(cookie);
        if owner != shard.index() {
            return ControlIn::Elsewhere(owner);
        }
        if pong.data.ends_with(KEEPALIVE_MAGIC) {
            return ControlIn::KeepalivePong {
                cookie,
                version: pong.version,
            };
        }
        if let Some((sent, path)) = self.pings.remove(&cookie) {
            self.ping_results.push_back(PingResult {
                cookie,
                rtt: now.saturating_duration_since(sent),
                version: pong.version,
                response_path: Label::new(back).unwrap_or(path),
            });
        }
        ControlIn::None
    }

    /// Records a switch ping with `cookie` along `path` (admin `SwitchPinger_ping`) and returns
    /// the packet to send from our router.
    pub(crate) fn start_ping(
        &mut self,
        now: Instant,
        path: Label,
        cookie: u64,
    ) -> Option<PacketBuf> {
        self.pings.insert(cookie, (now, path));
        ping_packet(path, &cookie.to_be_bytes())
    }

    /// Switch pings that never got an answer are forgotten after this long.
    const PING_FORGET: Duration = Duration::from_secs(60);

    /// Forgets switch pings older than a minute.
    pub(crate) fn expire_pings(&mut self, now: Instant) {
        self.pings
            .retain(|_, (sent, _)| now.saturating_duration_since(*sent) < Self::PING_FORGET);
    }

    /// The next completed switch ping.
    pub(crate) fn poll_ping_result(&mut self) -> Option<PingResult> {
        self.ping_results.pop_front()
    }
}

/// A switch PING to `label` carrying `data`, as our router sends it.
pub(crate) fn ping_packet(label: Label, data: &[u8]) -> Option<PacketBuf> {
    let msg = ControlMessage::Ping(Ping {
        version: PROTOCOL_VERSION,
        data,
    });
    let mut out = [0u8; 400];
    let n = msg
        .emit_packet(&SwitchHeaderRepr::new(label.bits()), &mut out)
        .ok()?;
    Some(PacketBuf::from_slice(&out[..n]))
}

/// An RPATH query to the peer reached by `label` (its label back to us).
pub(crate) fn rpath_query(label: Label) -> Option<PacketBuf> {
    let msg = ControlMessage::RPathQuery(RPath {
        version: PROTOCOL_VERSION,
        rpath: label.bits(),
    });
    let mut out = [0u8; 128];
    let n = msg
        .emit_packet(&SwitchHeaderRepr::new(label.bits()), &mut out)
        .ok()?;
    Some(PacketBuf::from_slice(&out[..n]))
}

/// An AUTHENTICATION error back along `back`, quoting the start of the packet that failed and
/// the session's error code and state (cjdns' SessionManager does the same).
pub(crate) fn auth_error(back: Label, quoted: &[u8], code: u32, state: u32) -> Option<PacketBuf> {
    let mut cause = [0u8; HEADER_LEN + 16 + 8];
    let q = quoted.get(..HEADER_LEN + 16)?;
    cause[..HEADER_LEN + 16].copy_from_slice(q);
    cause[HEADER_LEN + 16..HEADER_LEN + 20].copy_from_slice(&code.to_be_bytes());
    cause[HEADER_LEN + 20..].copy_from_slice(&state.to_be_bytes());
    let header = SwitchHeaderRepr {
        suppress_errors: true,
        ..SwitchHeaderRepr::new(back.bits())
    };
    let msg = ControlMessage::Error {
        code: ErrorCode::AUTHENTICATION,
        cause: &cause,
    };
    let mut out = [0u8; 128];
    let n = msg.emit_packet(&header, &mut out).ok()?;
    Some(PacketBuf::from_slice(&out[..n]))
}

/// The control frame of a switch packet, if it is one.
pub(crate) fn control_frame(packet: &[u8]) -> Option<&[u8]> {
    control::control_frame(packet)
}

impl std::fmt::Debug for SwitchStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwitchStage")
            .field("capacities", &self.capacities)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    //! The switch stage on its own: switched packets in, decisions out.
    use super::*;
    use crate::shard::{Directory, ShardSpec};
    use pktmesh_crypto_auth::PrivateKey;
    use pktmesh_switch::SwitchCore;
    use rand_core::SeedableRng;

    fn stage(now: Instant) -> SwitchStage {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let (private, public, _) = PrivateKey::generate(&mut rng);
        SwitchStage::new(&Signer::from_cjdns(&private), public, now)
    }

    fn packet(label: u64, body: &[u8]) -> PacketBuf {
        let mut p = SwitchHeaderRepr::new(label).to_bytes().to_vec();
        p.extend_from_slice(body);
        PacketBuf::from_slice(&p)
    }

    #[test]
    fn a_switched_packet_goes_where_its_label_says() {
        let now = Instant::now();
        let st = stage(now);
        let switch = SwitchCore::new(EncodingScheme::v358());
        let mut view = DirectoryView::new(Directory::new(switch), ShardSpec::SINGLE);
        let (slot, label) = view.attach("10.0.0.2:2".parse().unwrap(), st.key).unwrap();
        // From our router to the peer: its label is rewritten on the way.
        let mut buf = packet(label.bits(), &[0, 0, 0, 9]);
        assert!(matches!(st.forward(&view, ROUTER_SLOT, &mut buf), Switched::Peer(s) if s == slot));
        assert_ne!(buf.data()[..8], label.bits().to_be_bytes());
        // From the peer to our router.
        let mut buf = packet(1, &[0, 0, 0, 9]);
        assert!(matches!(
            st.forward(&view, slot, &mut buf),
            Switched::Router
        ));
        // To a slot with no peer: an ERROR goes back.
        let unknown = EncodingScheme::v358().label_for_interface(5).unwrap();
        let mut buf = packet(unknown.bits(), &[0, 0, 0, 9, 0, 0, 0, 0]);
        match st.forward(&view, slot, &mut buf) {
            Switched::Error(e) => {
                let frame = control_frame(e.data()).unwrap();
                assert!(matches!(
                    ControlMessage::parse(frame),
                    Ok(ControlMessage::Error { code, .. }) if code == ErrorCode::MALFORMED_ADDRESS
                ));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_ping_for_our_router_gets_a_pong_and_a_pong_ends_a_switch_ping() {
        let now = Instant::now();
        let mut st = stage(now);
        let ping = ping_packet(Label::SELF, b"0123456789").unwrap();
        match st.control(
            now,
            ShardSpec::SINGLE,
            0x13,
            control_frame(ping.data()).unwrap(),
            None,
        ) {
            ControlIn::Reply(pong) => {
                assert_eq!(pong.data()[..8], 0x13u64.to_be_bytes());
                let frame = control_frame(pong.data()).unwrap();
                assert!(matches!(
                    ControlMessage::parse(frame),
                    Ok(ControlMessage::Pong(p)) if p.data == b"0123456789"
                ));
            }
            other => panic!("{other:?}"),
        }
        // Our own switch ping, answered.
        let path = Label::new(0x13).unwrap();
        let cookie = 0x1234_5600;
        let sent = st.start_ping(now, path, cookie).unwrap();
        let frame = control_frame(sent.data()).unwrap();
        let mut out = [0u8; 128];
        let config = ResponderConfig {
            protocol_version: 22,
            public_key: [9; 32],
            scheme: &EncodingScheme::v358(),
            snode: None,
        };
        let n = respond(&config, 0x13, frame, None, &mut out).unwrap();
        let later = now + Duration::from_millis(5);
        let answer = control_frame(&out[..n]).unwrap();
        assert!(matches!(
            st.control(later, ShardSpec::SINGLE, 0x13, answer, None),
            ControlIn::None
        ));
        let result = st.poll_ping_result().unwrap();
        assert_eq!(
            (result.cookie, result.rtt),
            (cookie, Duration::from_millis(5))
        );
        // A keepalive pong is for the link stage.
        let mut data = [0u8; 20];
        data[..8].copy_from_slice(&7u64.to_be_bytes());
        data[8..].copy_from_slice(KEEPALIVE_MAGIC);
        let keepalive = ping_packet(Label::SELF, &data).unwrap();
        let n = respond(
            &config,
            0x13,
            control_frame(keepalive.data()).unwrap(),
            None,
            &mut out,
        )
        .unwrap();
        assert!(matches!(
            st.control(
                now,
                ShardSpec::SINGLE,
                0x13,
                control_frame(&out[..n]).unwrap(),
                None
            ),
            ControlIn::KeepalivePong {
                cookie: 7,
                version: 22
            }
        ));
    }

    #[test]
    fn a_paced_link_holds_what_exceeds_its_rate_and_lets_it_go_later() {
        let now = Instant::now();
        let mut st = stage(now);
        let switch = SwitchCore::new(EncodingScheme::v358());
        let mut view = DirectoryView::new(Directory::new(switch), ShardSpec::SINGLE);
        let (fast, slow) = (
            PublicKey::from_bytes([1; 32]),
            PublicKey::from_bytes([2; 32]),
        );
        let (to_fast, _) = view.attach("10.0.0.1:1".parse().unwrap(), fast).unwrap();
        let (to_slow, _) = view.attach("10.0.0.2:2".parse().unwrap(), slow).unwrap();
        // Unpaced by default; the slow peer's link, named by its key, at 1 Mbit/s.
        let mut caps = LinkCapacities::default();
        caps.by_key.insert(slow, 1000);
        st.set_link_capacities(caps);
        st.sync(&view);
        for _ in 0..50 {
            let mut buf = packet(0x13, &[0u8; 1000]);
            assert!(
                st.egress(now, &view, 3, to_fast, &mut buf),
                "an unpaced link"
            );
        }
        let mut sent = 0;
        let mut held = 0;
        for _ in 0..50 {
            let mut buf = packet(0x13, &[0u8; 1000]);
            if st.egress(now, &view, 3, to_slow, &mut buf) {
                sent += 1;
            } else {
                held += 1;
            }
        }
        assert!(sent > 0 && held > 0, "{sent} sent, {held} held");
        let mut buf = PacketBuf::new();
        assert_eq!(st.poll_egress(now, &mut buf), None, "not yet");
        let later = now + Duration::from_secs(10);
        assert_eq!(st.poll_egress(later, &mut buf), Some(to_slow));
        assert_eq!(buf.len(), 1012);
        assert_eq!(
            st.egress_stats().map(|(k, _)| k).collect::<Vec<_>>(),
            [slow]
        );
        // The slot given to another peer loses its port.
        view.detach(to_slow, "10.0.0.2:2".parse().unwrap());
        st.sync(&view);
        assert_eq!(st.egress_stats().count(), 0);
    }
}
