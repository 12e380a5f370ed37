//! Noise on peer links, and its negotiation with legacy CryptoAuth (`docs/node.md`, "Noise
//! on peer links").
//!
//! * **We connect** ([`LinkCrypto::Unstarted`] → [`LinkCrypto::Negotiating`]): the first packet
//!   for the peer sends a Noise initiation naming our user in the PktmeshPsk entity, which a
//!   stock cjdns 22.3 node drops unanswered (no CjdnsPsk from an unknown address) and a pktmesh
//!   node answers. Packets wait; from [`HELLO_RETRY`] on, every packet goes out as a legacy
//!   HELLO and, at most every [`HELLO_RETRY`], with a fresh initiation. The handshake that
//!   completes first decides; a peer that answered legacy is re-handshaken with legacy from
//!   then on ([`crate::peers::Peer::legacy_only`]).
//! * **A stranger's initiation** ([`LinkStage::screen_noise`], then
//!   [`LinkStage::noise_handshake`]): type, length and mac1 first, then the handshake budget,
//!   then the responder (rate limit with cookies, reset every second; X25519s; PktmeshPsk or
//!   CjdnsPsk naming an authorized user; the cjdns index workaround, digest §6.3.5).
//! * **A peer's initiation** re-handshakes its link: the new keys wait beside the established
//!   ones until a packet opens under them. Its responses and cookie replies complete or retry
//!   our own handshakes.
//! * **Timers**: the WireGuard ones of each Noise link ([`LinkStage::noise_timers`], from the
//!   keepalive tick), with explicit `now`; the wall clock for initiation timestamps is given
//!   by the driver ([`LinkStage::set_wall_clock`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{CryptoAuth, State};
use pktmesh_crypto_auth::noise::link::LinkError;
use pktmesh_crypto_auth::noise::transport::{DATA_HEADER, DATA_TAG};
use pktmesh_crypto_auth::noise::{
    index_for_cjdns_initiator, is_usable_index, InitiationOutcome, KnownSession, Link, LinkAuth,
    LinkMode, NoiseError, ObservedInitiation, PskEntity, Responder,
};
use pktmesh_crypto_auth::DecryptError;
use rand_core::{CryptoRng, RngCore};

use super::liveness::HELLO_RETRY;
use super::{
    budget, decrypt_in_place, encrypt_in_place, LinkIn, LinkStage, LINK_BUDGET, RECENTLY_SHED,
};
use crate::core::types::{EventLog, NodeEvent};
use crate::link_crypto::{LinkCrypto, LinkCryptoMode, Negotiation};
use crate::packet::PacketBuf;
use crate::peers::Peer;
use crate::shard::DirectoryView;

/// Initiations the responder answers in one second before it asks for a cookie round trip
/// (mac2): what the budget lets through at its total rate, so the cookies only matter when
/// the budget's burst is being spent. Reset every second (cjdns 22.3 never resets its own).
const RESPONDER_LIMIT: u32 = LINK_BUDGET.total.per_second;

/// Handshake messages by their type byte (after the `FF FF FF FF` marker).
const INITIATION: u8 = 1;
const RESPONSE: u8 = 2;
const COOKIE_REPLY: u8 = 3;

/// The link stage's Noise side: the offer, the responder and the clock of our initiations.
pub(super) struct NoiseSide {
    mode: LinkCryptoMode,
    responder: Responder,
    /// The wall-clock time (since the Unix epoch) at an instant: TAI64N timestamps, which a
    /// responder requires to grow from one initiation of a key to the next, across restarts.
    clock: (Instant, Duration),
    /// The last local index handed out (the low byte counts a link's handshakes).
    last_index: u32,
}

impl NoiseSide {
    pub(super) fn new(ca: Arc<CryptoAuth>, now: Instant) -> Self {
        Self {
            mode: LinkCryptoMode::Legacy,
            responder: Responder::new(ca, RESPONDER_LIMIT),
            clock: (now, Duration::ZERO),
            last_index: 0,
        }
    }

    pub(super) fn mode(&self) -> LinkCryptoMode {
        self.mode
    }

    /// The responder sees the users added since (it keeps its replay memory).
    pub(super) fn set_context(&mut self, ca: Arc<CryptoAuth>) {
        self.responder.set_context(ca);
    }

    fn wall(&self, now: Instant) -> Duration {
        self.clock.1 + now.saturating_duration_since(self.clock.0)
    }

    /// A fresh local index for a link (its low byte is the link's handshake counter).
    fn index(&mut self) -> u32 {
        loop {
            self.last_index = self.last_index.wrapping_add(0x100);
            if is_usable_index(self.last_index) {
                return self.last_index;
            }
        }
    }
}

/// The link address as the responder's cookies name it.
fn source(from: SocketAddr) -> [u8; 18] {
    let mut b = [0u8; 18];
    let ip = match from.ip() {
        std::net::IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        std::net::IpAddr::V6(v6) => v6,
    };
    b[..16].copy_from_slice(&ip.octets());
    b[16..].copy_from_slice(&from.port().to_be_bytes());
    b
}

/// Whether opening `packet` (not a Noise handshake message) on this link would compute an
/// X25519: only its legacy part can (Noise data never does).
pub(super) fn costs_x25519(crypto: &LinkCrypto, packet: &[u8]) -> bool {
    match crypto {
        LinkCrypto::Legacy(s) => budget::session_costs_x25519(s, packet),
        LinkCrypto::Negotiating(n) => budget::session_costs_x25519(&n.legacy, packet),
        LinkCrypto::Noise(_) | LinkCrypto::Unstarted { .. } => false,
    }
}

/// Opens a packet from `peer` (not a Noise handshake message) in place, leaving the buffer on
/// the payload: a legacy packet, or Noise data (an empty payload is a keepalive). While
/// negotiating, the legacy packets go to the legacy half; once the peer answered our HELLO
/// (its KEY opened) or started a legacy handshake of its own, the link is legacy for good.
pub(super) fn open_in_place(
    peer: &mut Peer,
    now: Instant,
    buf: &mut PacketBuf,
) -> Result<(), DecryptError> {
    match &mut peer.crypto {
        LinkCrypto::Legacy(s) => decrypt_in_place(s, now, buf),
        LinkCrypto::Noise(link) => {
            let start = buf.headroom();
            let packet = buf.data_mut();
            let base = packet.as_ptr() as usize;
            let body = link
                .open_in_place(now, packet)
                .map_err(|e| as_decrypt_error(&e))?;
            let (offset, len) = (super::offset_in(base, body), body.len());
            buf.set_start(start + offset);
            buf.truncate(len);
            Ok(())
        }
        LinkCrypto::Negotiating(n) => {
            decrypt_in_place(&mut n.legacy, now, buf)?;
            if !matches!(n.legacy.state(), State::Init | State::SentHello) {
                peer.crypto.settle(false);
                peer.legacy_only = true;
            }
            Ok(())
        }
        LinkCrypto::Unstarted { .. } => Err(DecryptError::NoSession),
    }
}

/// A Noise error as the cjdns decrypt code it is closest to (for the dropped-packet reports).
fn as_decrypt_error(e: &LinkError) -> DecryptError {
    match e {
        LinkError::Legacy(d) => *d,
        LinkError::Noise(NoiseError::Replay) => DecryptError::Replay,
        LinkError::Noise(NoiseError::Truncated) => DecryptError::Runt,
        LinkError::NotReady | LinkError::Noise(NoiseError::WrongIndex | NoiseError::Expired) => {
            DecryptError::NoSession
        }
        _ => DecryptError::Decrypt,
    }
}

/// A Noise link error as the Noise error it carries.
fn as_noise_error(e: LinkError) -> NoiseError {
    match e {
        LinkError::Noise(n) => n,
        _ => NoiseError::UnexpectedMessage,
    }
}

/// Reports that a negotiation renewed the link of `peer` (it was up before, and reset).
fn report_renewal(events: &mut EventLog, now: Instant, peer: &Peer) {
    let (key, address) = (peer.key, peer.link_address);
    events.liveness(now, true, |suppressed| NodeEvent::PeerSessionRenewed {
        key,
        address,
        suppressed,
    });
}

/// The peer to ping now that its link is up: one whose version is still unknown and that was
/// not pinged in the last half second.
pub(super) fn ping_if_new(peer: &Peer, now: Instant) -> Option<u16> {
    let due = peer
        .last_ping
        .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_millis(500));
    (peer.version == 0 && due).then_some(peer.slot)
}

impl LinkStage {
    /// Whether new links try Noise (`pktmesh.linkCrypto`); with legacy, Noise initiations are
    /// refused too.
    pub(crate) fn set_link_crypto(&mut self, mode: LinkCryptoMode) {
        self.noise.mode = mode;
    }

    /// The wall-clock time at `now` (duration since the Unix epoch), for the timestamps of our
    /// Noise initiations: a responder refuses an initiation whose timestamp is not newer than
    /// the last it accepted from our key, so it must keep growing across restarts.
    pub(crate) fn set_wall_clock(&mut self, now: Instant, since_epoch: Duration) {
        self.noise.clock = (now, since_epoch);
    }

    /// The next handshake message to send, if any.
    pub(crate) fn take_datagram(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.outbox.pop_front()
    }

    /// A Noise handshake message (`FF FF FF FF …`) from `from`, a stranger (`slot` none) or
    /// a peer: the checks that cost no X25519, and the budget for what would. What passes is
    /// answered by [`LinkStage::noise_handshake`].
    #[allow(clippy::too_many_arguments)]
    pub(super) fn screen_noise(
        &mut self,
        now: Instant,
        from: SocketAddr,
        slot: Option<u16>,
        buf: &PacketBuf,
        view: &DirectoryView,
        events: &mut EventLog,
        charged: bool,
    ) -> LinkIn {
        let data = buf.data();
        let kind = data.get(4).copied();
        let costs = match slot {
            None => {
                // Only an initiation can make a peer, and only where Noise is offered.
                if self.noise.mode == LinkCryptoMode::Legacy || kind != Some(INITIATION) {
                    return LinkIn::Drop;
                }
                !charged
            }
            Some(slot) => {
                let Some(peer) = self.peer_mut(slot) else {
                    return LinkIn::Drop;
                };
                // A legacy link refuses Noise (`linkCrypto: "legacy"`, a stock peer).
                let handshaking = peer.crypto.noise_mut().map(|l| l.is_handshaking());
                match (kind, handshaking) {
                    (Some(INITIATION), Some(_)) | (Some(RESPONSE), Some(true)) => true,
                    (Some(COOKIE_REPLY), Some(true)) => false,
                    _ => {
                        peer.bad_packets += 1;
                        return LinkIn::Drop;
                    }
                }
            }
        };
        if kind == Some(INITIATION) && self.noise.responder.screen(data).is_err() {
            return LinkIn::Drop;
        }
        if costs && self.budget.allow(now, from.ip()).is_err() {
            if slot.is_none() {
                self.recently_shed = Some((from, now + RECENTLY_SHED));
            }
            events.shed(now, false);
            return LinkIn::Drop;
        }
        if slot.is_none() && !view.shard().is_single() {
            // The initiator's key decides which shard owns the peer; it is encrypted, so this
            // costs the X25519s the budget just allowed (the owner repeats them, uncharged).
            let shard = view.shard();
            match ObservedInitiation::open(&self.ca, data) {
                Ok(seen) => {
                    let owner = shard.owner_of(&seen.initiator.address());
                    if owner != shard.index() {
                        return LinkIn::Elsewhere(owner);
                    }
                }
                Err(error) => {
                    events.rejection(now, |suppressed| NodeEvent::NoiseRejected {
                        from,
                        error,
                        suppressed,
                    });
                    return LinkIn::Drop;
                }
            }
        }
        LinkIn::NoiseHandshake { slot }
    }

    /// Answers a Noise handshake message [`LinkStage::screen_noise`] passed (the buffer is
    /// left as it was): an initiation from a stranger makes a peer, one from a peer
    /// re-handshakes its link, a response or cookie reply completes or retries our handshake.
    /// What to send goes to the outbox.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn noise_handshake(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        from: SocketAddr,
        slot: Option<u16>,
        buf: &PacketBuf,
        view: &mut DirectoryView,
        events: &mut EventLog,
    ) -> LinkIn {
        let reject = |events: &mut EventLog, error| {
            events.rejection(now, |suppressed| NodeEvent::NoiseRejected {
                from,
                error,
                suppressed,
            });
            LinkIn::Drop
        };
        let result = match slot {
            None => self.accept_noise(now, rng, from, buf.data(), view),
            Some(slot) if buf.data().get(4) == Some(&INITIATION) => {
                self.rehandshake(now, rng, from, slot, buf.data(), events)
            }
            Some(slot) => self.complete_noise(now, rng, slot, buf.data(), view, events),
        };
        match result {
            Ok(answer) => answer,
            Err(error) => {
                if let Some(peer) = slot.and_then(|s| self.peer_mut(s)) {
                    peer.bad_packets += 1;
                }
                reject(events, error)
            }
        }
    }

    /// An initiation from an unknown address: a new incoming peer if it names an authorized
    /// user (PktmeshPsk, or CjdnsPsk from a Noise-enabled cjdns).
    fn accept_noise(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        from: SocketAddr,
        data: &[u8],
        view: &mut DirectoryView,
    ) -> Result<LinkIn, NoiseError> {
        let screened = self.noise.responder.screen(data)?;
        // A cjdns initiator reads our response's indexes swapped (§6.3.5): our index shares
        // its session bits, and data is matched to the link by address anyway.
        let own = self.noise.index();
        let index = index_for_cjdns_initiator(screened.initiator_index(), 0, own);
        let outcome =
            self.noise
                .responder
                .answer(now, rng, &source(from), screened, &[], true, |_| index)?;
        let accepted = match outcome {
            InitiationOutcome::CookieReply(reply) => {
                self.outbox.push_back((from, reply.to_vec()));
                return Ok(LinkIn::Drop);
            }
            InitiationOutcome::Accept(accepted) => accepted,
        };
        let key = accepted.peer;
        if !key.is_valid() || !view.shard().owns(&key.address()) {
            return Err(NoiseError::WrongPermPubkey);
        }
        let Ok((slot, label)) = view.attach(from, key) else {
            return Ok(LinkIn::Drop);
        };
        self.outbox.push_back((from, accepted.response.to_vec()));
        let link = Link::accept(self.ca.clone(), *accepted, None, None, now);
        let crypto = LinkCrypto::Noise(Box::new(link));
        self.insert(Peer::new(
            from, key, crypto, slot, label, true, None, None, now,
        ));
        Ok(LinkIn::Control { ping: None })
    }

    /// An initiation on a peer's link: the peer re-keys or re-handshakes (it restarted). The
    /// new keys wait beside the established ones until a packet opens under them; a
    /// negotiating link is Noise from here on.
    fn rehandshake(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        from: SocketAddr,
        slot: u16,
        data: &[u8],
        events: &mut EventLog,
    ) -> Result<LinkIn, NoiseError> {
        let screened = self.noise.responder.screen(data)?;
        let peer = self
            .peers
            .get_mut(usize::from(slot))
            .and_then(Option::as_mut);
        let peer = peer.ok_or(NoiseError::UnexpectedMessage)?;
        let link = peer
            .crypto
            .noise_mut()
            .ok_or(NoiseError::UnexpectedMessage)?;
        let own = link.next_local_index();
        let index = index_for_cjdns_initiator(screened.initiator_index(), own as u8, own);
        let credentials = link.credentials().cloned();
        let src = source(from);
        let known = [KnownSession {
            session_index: link.session_index(),
            link: &src,
            peer: peer.key,
            credentials: credentials.as_ref(),
        }];
        let outcome =
            self.noise
                .responder
                .answer(now, rng, &src, screened, &known, true, |_| index)?;
        let accepted = match outcome {
            InitiationOutcome::CookieReply(reply) => {
                self.outbox.push_back((from, reply.to_vec()));
                return Ok(LinkIn::Drop);
            }
            InitiationOutcome::Accept(accepted) => accepted,
        };
        self.outbox.push_back((from, accepted.response.to_vec()));
        // A peer with live keys that starts a handshake without naming our session
        // (PrevSessIndex) lost them: it restarted. A routine re-key names it.
        let restarted = link.is_established() && accepted.additional.prev_session_index.is_none();
        link.install(*accepted, now)?;
        if peer.crypto.settle(true) || restarted {
            report_renewal(events, now, peer);
        }
        Ok(LinkIn::Control { ping: None })
    }

    /// A response or cookie reply to our initiation: the response completes the handshake
    /// (the link is Noise from here on; our keepalive confirms it to the peer), the cookie
    /// reply makes us send the initiation again with mac2.
    fn complete_noise(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        slot: u16,
        data: &[u8],
        view: &mut DirectoryView,
        events: &mut EventLog,
    ) -> Result<LinkIn, NoiseError> {
        let wall = self.noise.wall(now);
        let peer = self
            .peers
            .get_mut(usize::from(slot))
            .and_then(Option::as_mut);
        let peer = peer.ok_or(NoiseError::UnexpectedMessage)?;
        let generation = peer.crypto.generation();
        let link = peer
            .crypto
            .noise_mut()
            .ok_or(NoiseError::UnexpectedMessage)?;
        let reply = link
            .handle_control(now, wall, rng, data)
            .map_err(as_noise_error)?;
        let established = link.is_established();
        if let Some(reply) = reply {
            self.outbox.push_back((peer.link_address, reply));
        }
        if !established {
            return Ok(LinkIn::Control { ping: None });
        }
        if peer.crypto.settle(true) {
            report_renewal(events, now, peer);
        }
        peer.last_message = now;
        peer.probes_unanswered = 0;
        let ping = ping_if_new(peer, now);
        self.renewed(now, slot, generation, view, events);
        Ok(LinkIn::Control { ping })
    }

    /// Seals the buffer for a peer whose link is not legacy: Noise data in place (header in
    /// front, tag behind); for a negotiation, the first packet sends the initiation and later
    /// ones go out as legacy HELLOs once [`HELLO_RETRY`] has passed, each retry with a fresh
    /// initiation. Packets that cannot go yet are dropped (the liveness pings repeat).
    pub(super) fn seal_noise(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        slot: u16,
        buf: &mut PacketBuf,
    ) -> Option<SocketAddr> {
        let wall = self.noise.wall(now);
        if self
            .peer(slot)
            .is_some_and(|p| matches!(p.crypto, LinkCrypto::Unstarted { .. }))
        {
            self.start_negotiation(now, wall, rng, slot);
            return None;
        }
        let peer = self.peers.get_mut(usize::from(slot))?.as_mut()?;
        let address = peer.link_address;
        match &mut peer.crypto {
            LinkCrypto::Noise(link) => {
                if link.mode() == LinkMode::Expired && peer.credentials.is_some() {
                    // Every key dropped 540 s after the last handshake: start over.
                    peer.crypto = LinkCrypto::Unstarted { renewal: true };
                    return None;
                }
                buf.push_front(DATA_HEADER)?;
                buf.push_back(DATA_TAG)?;
                link.seal_in_place(now, buf.data_mut()).ok()?;
            }
            LinkCrypto::Negotiating(n) => {
                if now.saturating_duration_since(n.started) < HELLO_RETRY
                    && matches!(n.legacy.state(), State::Init)
                {
                    return None;
                }
                if now.saturating_duration_since(n.last_initiation) >= HELLO_RETRY {
                    if let Ok(initiation) = n.noise.reconnect(now, wall, rng) {
                        self.outbox.push_back((address, initiation));
                        n.last_initiation = now;
                    }
                }
                encrypt_in_place(&mut n.legacy, now, rng, buf)?;
            }
            LinkCrypto::Legacy(session) => encrypt_in_place(session, now, rng, buf)?,
            LinkCrypto::Unstarted { .. } => return None,
        }
        peer.bytes_out += buf.len() as u64;
        Some(address)
    }

    /// Sends the first Noise initiation to the peer in `slot`, which we connect to.
    fn start_negotiation(
        &mut self,
        now: Instant,
        wall: Duration,
        rng: &mut (impl RngCore + CryptoRng),
        slot: u16,
    ) {
        let index = self.noise.index();
        let Some(peer) = self
            .peers
            .get_mut(usize::from(slot))
            .and_then(Option::as_mut)
        else {
            return;
        };
        let Some(credentials) = &peer.credentials else {
            return;
        };
        let LinkCrypto::Unstarted { renewal } = peer.crypto else {
            return;
        };
        let auth = LinkAuth {
            password: Some(&credentials.password),
            login: credentials.login.as_deref(),
            psk_entity: PskEntity::Pktmesh,
        };
        let Ok((noise, initiation)) =
            Link::initiate(self.ca.clone(), peer.key, auth, index, now, wall, rng)
        else {
            return;
        };
        let mut legacy =
            pktmesh_crypto_auth::legacy::Session::new(self.ca.clone(), peer.key, false, now)
                .keep_established(true);
        legacy.set_auth(Some(&credentials.password), credentials.login.as_deref());
        self.outbox.push_back((peer.link_address, initiation));
        peer.crypto = LinkCrypto::Negotiating(Box::new(Negotiation {
            noise,
            legacy,
            started: now,
            last_initiation: now,
            renewal,
        }));
    }

    /// The WireGuard timers of every Noise link (from the keepalive tick): re-keys, keepalives,
    /// retries, and keys dropped when too old. What they send goes to the outbox.
    pub(crate) fn noise_timers(&mut self, now: Instant, rng: &mut (impl RngCore + CryptoRng)) {
        let wall = self.noise.wall(now);
        for peer in self.peers.iter_mut().flatten() {
            let LinkCrypto::Noise(link) = &mut peer.crypto else {
                continue;
            };
            if let Ok(Some(packet)) = link.handle_timeout(now, wall, rng) {
                self.outbox.push_back((peer.link_address, packet));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The negotiation and Noise handshakes at the link stage, with explicit `now`.
    use super::super::tests::{login, view, FOR_ROUTER};
    use super::*;
    use crate::beacon;
    use pktmesh_crypto_auth::noise::handshake::MAX_INITIATION_LEN;
    use pktmesh_crypto_auth::noise::{Credentials, InitiationParams, InitiationSent};
    use pktmesh_crypto_auth::{PrivateKey, PublicKey};
    use rand_core::SeedableRng;

    type Rng = rand_chacha::ChaCha20Rng;

    /// A node's link stage offering `mode`, authorizing the password `pw` for login `a`.
    fn stage(rng: &mut Rng, now: Instant, mode: LinkCryptoMode) -> (LinkStage, PublicKey) {
        let (private, public, _) = PrivateKey::generate(rng);
        let mut s = LinkStage::new(
            Arc::new(CryptoAuth::new(private)),
            [7; beacon::PASSWORD_LEN],
            now,
        );
        s.add_user(b"pw", Some(b"a"), None).unwrap();
        s.set_link_crypto(mode);
        (s, public)
    }

    /// One side of the tests' wire: a stage, its view and events, and its address.
    struct Side {
        stage: LinkStage,
        key: PublicKey,
        view: DirectoryView,
        events: EventLog,
        addr: SocketAddr,
    }

    impl Side {
        fn new(rng: &mut Rng, now: Instant, mode: LinkCryptoMode, addr: &str) -> Self {
            let (stage, key) = stage(rng, now, mode);
            Self {
                stage,
                key,
                view: view(),
                events: EventLog::default(),
                addr: addr.parse().unwrap(),
            }
        }

        /// A datagram from `from` through the stage as the node passes it (a screened Noise
        /// handshake goes on to the responder); what it became, and the buffer.
        fn receive(
            &mut self,
            rng: &mut Rng,
            now: Instant,
            from: SocketAddr,
            datagram: &[u8],
        ) -> (LinkIn, PacketBuf) {
            let mut buf = PacketBuf::from_slice(datagram);
            let s = &mut self.stage;
            let mut got = s.open(now, from, &mut buf, &mut self.view, &mut self.events, false);
            if let LinkIn::NoiseHandshake { slot } = got {
                got =
                    s.noise_handshake(now, rng, from, slot, &buf, &mut self.view, &mut self.events);
            }
            (got, buf)
        }

        /// What the stage queued to send.
        fn outbox(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
            std::iter::from_fn(|| self.stage.take_datagram()).collect()
        }

        /// A switch packet for the peer in `slot`, sealed: the datagram, if one goes out now.
        fn seal(&mut self, rng: &mut Rng, now: Instant, slot: u16) -> Option<Vec<u8>> {
            let mut buf = PacketBuf::from_slice(&FOR_ROUTER);
            self.stage.seal(now, rng, slot, &mut buf)?;
            Some(buf.data().to_vec())
        }

        fn crypto(&self, slot: u16) -> &LinkCrypto {
            &self.stage.peer(slot).unwrap().crypto
        }

        /// Handshakes the Noise link in `slot` completed, re-keys included.
        fn handshakes(&self, slot: u16) -> u64 {
            match self.crypto(slot) {
                LinkCrypto::Noise(l) => l.generation(),
                other => panic!("not Noise: {other:?}"),
            }
        }
    }

    /// Delivers everything `from` queued to `to`; what each became.
    fn carry(rng: &mut Rng, now: Instant, from: &mut Side, to: &mut Side) -> Vec<LinkIn> {
        let queued = from.outbox();
        queued
            .into_iter()
            .map(|(dst, d)| {
                assert_eq!(dst, to.addr);
                to.receive(rng, now, from.addr, &d).0
            })
            .collect()
    }

    fn is_initiation(d: &[u8]) -> bool {
        d.starts_with(&[0xff, 0xff, 0xff, 0xff, INITIATION])
    }

    /// A connects to B; both offer Noise: the first packet sends the initiation, B answers, A's
    /// keepalive confirms. The slots of each other at A and B.
    fn noise_pair(rng: &mut Rng, t0: Instant) -> (Side, Side, u16, u16) {
        let mut a = Side::new(rng, t0, LinkCryptoMode::Noise, "10.0.0.1:1");
        let mut b = Side::new(rng, t0, LinkCryptoMode::Noise, "10.0.0.2:2");
        let (to_b, _) = a
            .stage
            .connect(t0, b.addr, b.key, login(b"pw"), None, &mut a.view)
            .unwrap();
        assert!(matches!(
            a.crypto(to_b),
            LinkCrypto::Unstarted { renewal: false }
        ));
        assert_eq!(
            a.seal(rng, t0, to_b),
            None,
            "nothing goes before the handshake"
        );
        let sent = a.outbox();
        assert!(sent.len() == 1 && is_initiation(&sent[0].1), "{sent:?}");
        let (made, _) = b.receive(rng, t0, a.addr, &sent[0].1);
        assert_eq!(made, LinkIn::Control { ping: None });
        assert_eq!(b.stage.len(), 1, "an incoming Noise peer");
        let to_a = b.stage.by_link[&a.addr];
        assert!(
            matches!(carry(rng, t0, &mut b, &mut a)[..], [LinkIn::Control { ping: Some(s) }] if s == to_b)
        );
        assert!(matches!(a.crypto(to_b), LinkCrypto::Noise(_)));
        assert!(a.crypto(to_b).is_established());
        assert!(
            !b.crypto(to_a).is_established(),
            "B waits for A's first packet"
        );
        // A's keepalive confirms the keys at B.
        assert!(matches!(
            carry(rng, t0, &mut a, &mut b)[..],
            [LinkIn::Control { .. }]
        ));
        assert!(b.crypto(to_a).is_established());
        (a, b, to_b, to_a)
    }

    #[test]
    fn two_pktmesh_links_speak_noise_and_carry_switch_packets_in_place() {
        let t0 = Instant::now();
        let mut rng = Rng::seed_from_u64(40);
        let (mut a, mut b, to_b, to_a) = noise_pair(&mut rng, t0);
        for _ in 0..3 {
            let d = a.seal(&mut rng, t0, to_b).unwrap();
            assert_eq!(d.len(), FOR_ROUTER.len() + 24, "index, counter, tag");
            let (got, buf) = b.receive(&mut rng, t0, a.addr, &d);
            assert!(matches!(got, LinkIn::Opened { slot, .. } if slot == to_a));
            assert_eq!(buf.data(), &FOR_ROUTER[..]);
            let d = b.seal(&mut rng, t0, to_a).unwrap();
            let (got, buf) = a.receive(&mut rng, t0, b.addr, &d);
            assert!(matches!(got, LinkIn::Opened { slot, .. } if slot == to_b));
            assert_eq!(buf.data(), &FOR_ROUTER[..]);
        }
        for (side, slot) in [(&a, to_b), (&b, to_a)] {
            let stats = side.stage.stats(t0);
            let st = stats.iter().find(|s| s.slot == slot).unwrap();
            assert!(st.noise, "noiseProto 1");
            assert_eq!(st.state, "ESTABLISHED");
        }
        assert!(!a.stage.peer(to_b).unwrap().legacy_only);
    }

    /// The stock case: B offers legacy only (as stock cjdns 22.3 answers no PktmeshPsk), so
    /// A's initiation goes unanswered; after HELLO_RETRY A sends a HELLO (and a fresh
    /// initiation), B answers the HELLO, and the link is legacy, also for re-handshakes.
    #[test]
    fn an_initiator_falls_back_to_legacy_after_hello_retry_without_a_response() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut rng = Rng::seed_from_u64(41);
        let mut a = Side::new(&mut rng, t0, LinkCryptoMode::Noise, "10.0.0.1:1");
        let mut b = Side::new(&mut rng, t0, LinkCryptoMode::Legacy, "10.0.0.2:2");
        let (to_b, _) = a
            .stage
            .connect(t0, b.addr, b.key, login(b"pw"), None, &mut a.view)
            .unwrap();
        assert_eq!(a.seal(&mut rng, t0, to_b), None);
        assert_eq!(carry(&mut rng, t0, &mut a, &mut b), [LinkIn::Drop]);
        assert!(
            b.outbox().is_empty() && b.stage.len() == 0,
            "no answer, no peer"
        );
        // Before HELLO_RETRY nothing else goes out.
        assert_eq!(a.seal(&mut rng, ms(1000), to_b), None);
        assert!(a.outbox().is_empty());
        // At HELLO_RETRY: the packet goes as a HELLO, with a fresh initiation.
        let hello = a.seal(&mut rng, ms(1024), to_b).expect("a HELLO");
        assert_eq!(be32(&hello, 0), Some(0), "HELLO");
        assert_eq!(carry(&mut rng, ms(1024), &mut a, &mut b), [LinkIn::Drop]);
        let (got, _) = b.receive(&mut rng, ms(1024), a.addr, &hello);
        let LinkIn::Opened { slot: to_a, .. } = got else {
            panic!("{got:?}")
        };
        // B's KEY: the link is legacy, and stays so.
        let key = b.seal(&mut rng, ms(1030), to_a).unwrap();
        assert_eq!(be32(&key, 0), Some(2), "KEY");
        a.receive(&mut rng, ms(1030), b.addr, &key);
        assert!(matches!(a.crypto(to_b), LinkCrypto::Legacy(_)));
        assert!(a.stage.peer(to_b).unwrap().legacy_only);
        let d = a.seal(&mut rng, ms(1031), to_b).unwrap();
        b.receive(&mut rng, ms(1031), a.addr, &d);
        let d = b.seal(&mut rng, ms(1032), to_a).unwrap();
        a.receive(&mut rng, ms(1032), b.addr, &d);
        assert!(a.crypto(to_b).is_established() && !a.stage.stats(t0)[0].noise);
        // A liveness reset re-handshakes straight with a HELLO; no initiation goes out.
        a.stage.peer_mut(to_b).unwrap().crypto.reset();
        let hello = a.seal(&mut rng, ms(5000), to_b).expect("a HELLO at once");
        assert_eq!(be32(&hello, 0), Some(0));
        assert!(
            a.outbox().is_empty(),
            "no Noise for a peer that needed legacy"
        );
    }

    /// A stranger's initiation naming an authorized user in PktmeshPsk (or CjdnsPsk, as a
    /// Noise-enabled cjdns sends) makes a peer; one naming no user makes nothing.
    #[test]
    fn the_responder_takes_pktmesh_psk_and_refuses_an_initiation_naming_no_user() {
        let t0 = Instant::now();
        let mut rng = Rng::seed_from_u64(42);
        let mut b = Side::new(&mut rng, t0, LinkCryptoMode::Noise, "10.0.0.2:2");
        let b_key = b.key;
        let initiation = |rng: &mut Rng, credentials, psk_entity| {
            let (private, _, _) = PrivateKey::generate(rng);
            let ca = CryptoAuth::new(private);
            let params = InitiationParams {
                credentials,
                psk_entity,
                ..Default::default()
            };
            let mut out = [0u8; MAX_INITIATION_LEN];
            let wall = Duration::from_secs(1_800_000_000);
            let (_, n) =
                InitiationSent::new(&ca, &b_key, &params, 0x100, wall, rng, &mut out).unwrap();
            out[..n].to_vec()
        };
        let user = || Some(Credentials::derive(b"a", b"pw"));
        let from = |i: u16| SocketAddr::from(([10, 0, 0, 9], i));
        // Neither entity: AUTH_REQUIRED, no answer, no peer.
        let bare = initiation(&mut rng, None, PskEntity::Pktmesh);
        assert_eq!(b.receive(&mut rng, t0, from(1), &bare).0, LinkIn::Drop);
        assert!(b.outbox().is_empty() && b.stage.len() == 0);
        assert!(matches!(
            b.events.pop(),
            Some(NodeEvent::NoiseRejected {
                error: NoiseError::AuthRequired,
                ..
            })
        ));
        // A wrong password: no answer either.
        let wrong = Some(Credentials::derive(b"a", b"guess"));
        let guess = initiation(&mut rng, wrong, PskEntity::Pktmesh);
        assert_eq!(b.receive(&mut rng, t0, from(2), &guess).0, LinkIn::Drop);
        assert!(b.outbox().is_empty() && b.stage.len() == 0);
        // PktmeshPsk and CjdnsPsk naming the user: a peer each, answered with a response.
        for (i, entity) in [PskEntity::Pktmesh, PskEntity::Cjdns]
            .into_iter()
            .enumerate()
        {
            let good = initiation(&mut rng, user(), entity);
            let (got, _) = b.receive(&mut rng, t0, from(10 + i as u16), &good);
            assert_eq!(got, LinkIn::Control { ping: None });
            let sent = b.outbox();
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].1.len(), 96, "a handshake response");
            assert_eq!(b.stage.len(), i + 1);
        }
        // The budget was asked before any X25519: three strangers' initiations and two peers'.
        assert_eq!(b.stage.budget_stats().allowed, 4);
    }

    /// A re-key the initiator starts (WireGuard's 120 s) is answered, but the established keys
    /// stay in use at the responder until a packet opens under the new ones; a replayed
    /// initiation changes nothing.
    #[test]
    fn a_noise_re_handshake_replaces_the_session_only_once_data_opens_under_it() {
        let t0 = Instant::now();
        let mut rng = Rng::seed_from_u64(43);
        let (mut a, mut b, to_b, to_a) = noise_pair(&mut rng, t0);
        let t = t0 + Duration::from_secs(120);
        a.stage.noise_timers(t, &mut rng);
        let rekey = a.outbox();
        assert!(rekey.len() == 1 && is_initiation(&rekey[0].1), "{rekey:?}");
        let generation = b.handshakes(to_a);
        let (got, _) = b.receive(&mut rng, t, a.addr, &rekey[0].1);
        assert_eq!(got, LinkIn::Control { ping: None });
        let response = b.outbox();
        assert_eq!(response.len(), 1);
        // The response is held back (lost): both sides keep their keys, data flows.
        for _ in 0..3 {
            let d = b.seal(&mut rng, t, to_a).unwrap();
            assert!(matches!(
                a.receive(&mut rng, t, b.addr, &d).0,
                LinkIn::Opened { .. }
            ));
            let d = a.seal(&mut rng, t, to_b).unwrap();
            assert!(matches!(
                b.receive(&mut rng, t, a.addr, &d).0,
                LinkIn::Opened { .. }
            ));
        }
        assert_eq!(b.handshakes(to_a), generation);
        // A replay of the initiation is refused and changes nothing.
        assert_eq!(b.receive(&mut rng, t, a.addr, &rekey[0].1).0, LinkIn::Drop);
        assert!(b.outbox().is_empty());
        // The response arrives: A's keepalive under the new keys makes them B's.
        let (got, _) = a.receive(&mut rng, t, b.addr, &response[0].1);
        assert!(matches!(got, LinkIn::Control { .. }));
        carry(&mut rng, t, &mut a, &mut b);
        assert_eq!(b.handshakes(to_a), generation + 1);
        while let Some(e) = b.events.pop() {
            assert!(
                !matches!(e, NodeEvent::PeerSessionRenewed { .. }),
                "a routine re-key is no renewal"
            );
        }
        let d = b.seal(&mut rng, t, to_a).unwrap();
        assert!(matches!(
            a.receive(&mut rng, t, b.addr, &d).0,
            LinkIn::Opened { .. }
        ));
    }

    /// `linkCrypto: "legacy"`: a node connects with HELLOs only and refuses Noise
    /// initiations, from strangers and from its peers.
    #[test]
    fn link_crypto_legacy_refuses_noise() {
        let t0 = Instant::now();
        let mut rng = Rng::seed_from_u64(44);
        let mut l = Side::new(&mut rng, t0, LinkCryptoMode::Legacy, "10.0.0.3:3");
        let mut n = Side::new(&mut rng, t0, LinkCryptoMode::Noise, "10.0.0.4:4");
        // L connects to N: a HELLO at once, no initiation.
        let (to_n, _) = l
            .stage
            .connect(t0, n.addr, n.key, login(b"pw"), None, &mut l.view)
            .unwrap();
        let hello = l.seal(&mut rng, t0, to_n).expect("HELLO");
        assert_eq!(be32(&hello, 0), Some(0));
        assert!(l.outbox().is_empty());
        let (got, _) = n.receive(&mut rng, t0, l.addr, &hello);
        let LinkIn::Opened { slot: to_l, .. } = got else {
            panic!("{got:?}")
        };
        assert!(matches!(n.crypto(to_l), LinkCrypto::Legacy(_)));
        // N connects to L: its initiation is refused (no answer, no peer), its HELLO taken.
        let mut m = Side::new(&mut rng, t0, LinkCryptoMode::Noise, "10.0.0.5:5");
        let (to_l2, _) = m
            .stage
            .connect(t0, l.addr, l.key, login(b"pw"), None, &mut m.view)
            .unwrap();
        assert_eq!(m.seal(&mut rng, t0, to_l2), None);
        assert_eq!(carry(&mut rng, t0, &mut m, &mut l), [LinkIn::Drop]);
        assert!(l.outbox().is_empty());
        assert_eq!(l.stage.len(), 1, "only N's entry");
        // A Noise initiation on L's link to N is refused too.
        let t1 = t0 + Duration::from_millis(1024);
        let hello = m
            .seal(&mut rng, t1, to_l2)
            .expect("HELLO after HELLO_RETRY");
        let initiation = m.outbox();
        assert!(matches!(
            l.receive(&mut rng, t1, m.addr, &hello).0,
            LinkIn::Opened { .. }
        ));
        assert_eq!(
            l.receive(&mut rng, t1, m.addr, &initiation[0].1).0,
            LinkIn::Drop
        );
        assert!(l.outbox().is_empty());
        let to_m = l.stage.by_link[&m.addr];
        assert!(matches!(l.crypto(to_m), LinkCrypto::Legacy(_)));
    }

    fn be32(b: &[u8], at: usize) -> Option<u32> {
        crate::core::be32(b, at)
    }
}
