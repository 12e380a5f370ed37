//! The session stage (cjdns' SessionManager): end-to-end CryptoAuth sessions with other nodes,
//! their receive handles, and the user packets that wait while a session is set up.
//!
//! **Owns:** the session table ([`SessionManager`]: sessions by address and by receive handle,
//! the waiting packets), this shard's range of receive handles. **Does not own:** paths to
//! nodes (the pathfinder finds them, the wiring passes them in), the switch, or what the opened
//! content is for (the upper stage dispatches it).
//!
//! A handshake from a node with no session here is opened in a session of its own and put in
//! the table only once it has opened ([`SessionManager::admit`]); whatever would cost an
//! X25519 (handshakes, and data packets that derive the data key) first asks the stage's
//! [`Budget`], keyed by the peer the packet came through.
//!
//! In: a packet for our router that is not a control message, `[switch header][handle or
//! handshake][…]` ([`SessionStage::open`]); `[DataHeader][content]` to seal for a node
//! ([`SessionStage::seal`]). Out: the same buffer, opened to `[DataHeader][content]` or sealed
//! to a switch packet from our router.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{handshake_sender, CryptoAuth, Session, State};
use pktmesh_crypto_auth::noise::{InitiationOutcome, Responder};
use pktmesh_crypto_auth::{Address, DecryptError, PublicKey};
use pktmesh_switch::header::{SwitchHeaderRepr, HEADER_LEN};
use pktmesh_switch::Label;
use rand_core::{CryptoRng, RngCore};

use super::budget::{self, Budget, BudgetStats, SESSION_BUDGET};
use super::link::decrypt_in_place;
use super::types::{ReceiveStats, SessionStats};
use super::{be32, offset_in};
use crate::packet::PacketBuf;
use crate::pathfinding::NodeRef;
use crate::peers::PeerState;
use crate::sessions::noise::{self, NOISE_MARKER};
use crate::sessions::{Buffered, SessionManager, TableStats};
use crate::shard::ShardSpec;

/// What became of a packet for our router.
#[derive(Debug)]
pub(crate) enum SessionIn {
    /// Dropped.
    Drop,
    /// Dropped unopened: it would have cost an X25519 and the handshake budget refused it.
    Shed,
    /// Another shard owns the session: hand the packet there.
    Elsewhere(u8),
    /// It did not decrypt: send this AUTHENTICATION error back (from our router).
    AuthError {
        /// The sender, by path.
        back: Label,
        /// The packet's first bytes, to quote.
        quoted: [u8; HEADER_LEN + 16],
        /// Why it did not open.
        error: DecryptError,
        /// The session's remote node.
        key: PublicKey,
        /// Whether the session was established (a drop worth reporting).
        established: bool,
        /// The session's state.
        state: u32,
    },
    /// A Noise handshake answer (response or the keepalive that confirms new keys): send
    /// this switch packet from our router.
    Reply(PacketBuf),
    /// Opened: the buffer holds `[DataHeader][content]` from `from`.
    Content {
        /// The sender, with the path back to it.
        from: NodeRef,
        /// The sender's address.
        source: Address,
        /// The session has just become ready: packets waiting for `from` may go now.
        became_ready: bool,
    },
}

/// What to do with a packet for a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// Seal it in this session and send it.
    Seal(usize),
    /// It waits for the session; ask the pathfinder to ping `ping` (to set the session up)
    /// or to search for a path when `ping` is `None` and `search` is set.
    Waiting {
        /// Search for a path to the destination.
        search: bool,
        /// Ping this node to finish the session's handshake.
        ping: Option<NodeRef>,
    },
    /// Dropped (no session could be made).
    Drop,
}

/// The end-to-end sessions of one shard.
#[derive(Debug)]
pub(crate) struct SessionStage {
    sessions: SessionManager,
    key: PublicKey,
    shard: ShardSpec,
    /// The node's first receive handle; shard `i` has the `i`-th range after it.
    handle_base: u32,
    /// What may cost an X25519, by the switch interface (peer) a packet came in on.
    budget: Budget<u32>,
    /// Answers Noise initiations of pktmesh nodes whose legacy session with us is up.
    responder: Responder,
    /// Whether sessions are upgraded to Noise (config `sessionCrypto`; off: legacy only, and
    /// Noise initiations are dropped).
    noise: bool,
    /// The wall-clock time at an instant, for the timestamps of our Noise initiations.
    clock: (Instant, Duration),
    /// When the sessions are next looked at for initiations to send (at once if never).
    next_noise_scan: Option<Instant>,
}

/// Most Noise initiations answered per second without a cookie: the session budget, which
/// counts before the responder, is what limits them.
const NOISE_RESPONDER_LIMIT: u32 = u32::MAX;
/// How often sessions are looked at for Noise initiations to send.
const NOISE_SCAN_EVERY: Duration = Duration::from_millis(250);

impl SessionStage {
    /// A stage whose sessions use `ca` (no passwords) and whose handles start at the shard's
    /// range after `handle_base`.
    pub(crate) fn new(
        ca: Arc<CryptoAuth>,
        shard: ShardSpec,
        handle_base: u32,
        now: Instant,
    ) -> Self {
        let key = *ca.public_key();
        Self {
            responder: Responder::new(ca.clone(), NOISE_RESPONDER_LIMIT),
            sessions: SessionManager::new(ca, shard.first_handle(handle_base)),
            key,
            shard,
            handle_base,
            budget: Budget::new(SESSION_BUDGET, now),
            noise: true,
            clock: (now, Duration::ZERO),
            next_noise_scan: None,
        }
    }

    /// Whether sessions are upgraded to Noise between pktmesh nodes (the default).
    pub(crate) fn set_noise(&mut self, on: bool) {
        self.noise = on;
    }

    /// The wall-clock time (since the Unix epoch) at `now`: our Noise initiations carry it,
    /// and a responder refuses one not newer than the last it accepted from our key, across
    /// restarts too.
    pub(crate) fn set_wall_clock(&mut self, now: Instant, since_epoch: Duration) {
        self.clock = (now, since_epoch);
    }

    fn wall(&self, now: Instant) -> Duration {
        self.clock.1 + now.saturating_duration_since(self.clock.0)
    }

    /// Opens, in place, an end-to-end packet that reached our router along `back` (the path
    /// back to its sender) through the switch interface `via` (the peer it came from, what the
    /// handshake budget counts by). `charged`: a handshake was counted by the budget of the
    /// shard that handed it over (a shard counts a handshake for another before the handoff,
    /// so that each source has one bucket however its keys are spread over shards).
    pub(crate) fn open(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        back: u64,
        via: u32,
        charged: bool,
        buf: &mut PacketBuf,
    ) -> SessionIn {
        let Ok(back_label) = Label::new(back) else {
            return SessionIn::Drop;
        };
        let data = buf.data();
        let Some(word) = be32(data, HEADER_LEN) else {
            return SessionIn::Drop;
        };
        if word == NOISE_MARKER {
            return self.noise_control(now, rng, back_label, (!charged).then_some(via), buf);
        }
        if let Some(handle) = noise::data_handle(word) {
            return self.open_noise(now, handle, back_label, buf);
        }
        if data.len() < HEADER_LEN + 4 + 20 {
            return SessionIn::Drop;
        }
        // Kept to quote in an AUTHENTICATION error if decryption fails.
        let mut quoted = [0u8; HEADER_LEN + 16];
        quoted.copy_from_slice(&data[..HEADER_LEN + 16]);
        let handshake = word <= 3;
        let opened = if handshake {
            let via = (!charged).then_some(via);
            self.open_handshake(now, back_label, via, &quoted, buf)
        } else {
            let Some(index) = self.sessions.index_of_handle(word) else {
                return match self.shard.owner_of_handle(self.handle_base, word) {
                    Some(owner) if owner != self.shard.index() => SessionIn::Elsewhere(owner),
                    _ => SessionIn::Drop,
                };
            };
            if be32(data, HEADER_LEN + 4).is_none_or(|nonce| nonce < 4) {
                return SessionIn::Drop;
            }
            self.open_in(
                now,
                index,
                HEADER_LEN + 4,
                back_label,
                Some(via),
                &quoted,
                buf,
            )
        };
        let (index, was_ready) = match opened {
            Ok(o) => o,
            Err(out) => return out,
        };
        let Some(sess) = self.sessions.get_mut(index) else {
            return SessionIn::Drop;
        };
        if handshake {
            let Some(handle) = be32(buf.data(), 0) else {
                return SessionIn::Drop;
            };
            sess.send_handle = Some(handle);
            buf.advance(4);
        }
        sess.path = Some(back_label);
        sess.bytes_in += buf.len() as u64;
        sess.last_validated = now;
        SessionIn::Content {
            source: sess.address,
            from: NodeRef {
                key: sess.key,
                path: back_label,
                version: sess.version,
            },
            became_ready: !was_ready && sess.ready(),
        }
    }

    /// Opens a handshake packet (`[switch header][CryptoAuth handshake]`) in the sender's
    /// session, or in a new one admitted to the table once it has opened; one for another
    /// shard is counted here (by `via`, unless `None`: already counted) and handed over. The
    /// session's index and whether it was ready before.
    fn open_handshake(
        &mut self,
        now: Instant,
        back: Label,
        via: Option<u32>,
        quoted: &[u8; HEADER_LEN + 16],
        buf: &mut PacketBuf,
    ) -> Result<(usize, bool), SessionIn> {
        let data = buf.data();
        if data.len() < HEADER_LEN + 120 + 4 {
            return Err(SessionIn::Drop);
        }
        let key = data
            .get(HEADER_LEN..)
            .and_then(handshake_sender)
            .ok_or(SessionIn::Drop)?;
        if !key.is_valid() || key == self.key {
            return Err(SessionIn::Drop);
        }
        let ca_packet = data.get(HEADER_LEN..).unwrap_or_default();
        // One that cannot open (it names a user end-to-end sessions do not have) fails before
        // any X25519, and is answered with an error as before.
        let costly = budget::hello_costs_x25519(self.sessions.context(), ca_packet, false);
        let owner = self.shard.owner_of(&key.address());
        if owner != self.shard.index() {
            if costly {
                self.charge(now, via)?;
            }
            return Err(SessionIn::Elsewhere(owner));
        }
        if let Some(index) = self.sessions.index_of(&key.address()) {
            return self.open_in(now, index, HEADER_LEN, back, via, quoted, buf);
        }
        // A node with no session here: nothing is kept unless its handshake opens.
        if costly {
            self.charge(now, via)?;
            if !self.sessions.has_room_for_stranger() {
                return Err(SessionIn::Drop);
            }
        }
        let mut session = Session::new(self.sessions.context().clone(), key, false, now);
        buf.advance(HEADER_LEN);
        if let Err(error) = decrypt_in_place(&mut session, now, buf) {
            return Err(SessionIn::AuthError {
                back,
                quoted: *quoted,
                error,
                key,
                established: false,
                state: session.state() as u32,
            });
        }
        let index = self
            .sessions
            .admit(now, session, back)
            .ok_or(SessionIn::Drop)?;
        Ok((index, false))
    }

    /// One X25519 for a packet that came through `via` (`None`: already counted), if the
    /// budget allows it.
    fn charge(&mut self, now: Instant, via: Option<u32>) -> Result<(), SessionIn> {
        match via {
            Some(via) if self.budget.allow(now, via).is_err() => Err(SessionIn::Shed),
            _ => Ok(()),
        }
    }

    /// Opens the CryptoAuth packet that starts `skip` bytes into the buffer in session
    /// `index`, if the budget lets it cost an X25519 where it would (`via` as for
    /// [`SessionStage::charge`]). The index and whether the session was ready before.
    #[allow(clippy::too_many_arguments)]
    fn open_in(
        &mut self,
        now: Instant,
        index: usize,
        skip: usize,
        back: Label,
        via: Option<u32>,
        quoted: &[u8; HEADER_LEN + 16],
        buf: &mut PacketBuf,
    ) -> Result<(usize, bool), SessionIn> {
        let Some(sess) = self.sessions.get_mut(index) else {
            return Err(SessionIn::Drop);
        };
        let ca_packet = buf.data().get(skip..).unwrap_or_default();
        if let Some(via) = via {
            if budget::session_costs_x25519(&sess.session, ca_packet)
                && self.budget.allow(now, via).is_err()
            {
                return Err(SessionIn::Shed);
            }
        }
        let was_ready = sess.ready();
        buf.advance(skip);
        if let Err(error) = decrypt_in_place(&mut sess.session, now, buf) {
            sess.bad_packets += 1;
            return Err(SessionIn::AuthError {
                back,
                quoted: *quoted,
                error,
                key: sess.key,
                established: sess.session.is_established(),
                state: sess.session.state() as u32,
            });
        }
        Ok((index, was_ready))
    }

    /// A Noise data packet for the session with receive handle `handle` (`docs/node.md`,
    /// "Noise end to end"): opened in place to `[DataHeader][content]`; a keepalive only
    /// confirms the keys. A packet that does not open is dropped (and counted).
    fn open_noise(
        &mut self,
        now: Instant,
        handle: u32,
        back: Label,
        buf: &mut PacketBuf,
    ) -> SessionIn {
        let Some(index) = self.sessions.index_of_handle(handle) else {
            return match self.shard.owner_of_handle(self.handle_base, handle) {
                Some(owner) if owner != self.shard.index() => SessionIn::Elsewhere(owner),
                _ => SessionIn::Drop,
            };
        };
        let Some(sess) = self.sessions.get_mut(index) else {
            return SessionIn::Drop;
        };
        buf.advance(HEADER_LEN);
        match sess.noise.open(now, buf) {
            Ok(content) => {
                sess.path = Some(back);
                sess.last_validated = now;
                if !content {
                    return SessionIn::Drop;
                }
                sess.bytes_in += buf.len() as u64;
                SessionIn::Content {
                    source: sess.address,
                    from: NodeRef {
                        key: sess.key,
                        path: back,
                        version: sess.version,
                    },
                    became_ready: false,
                }
            }
            Err(_) => {
                sess.bad_packets += 1;
                SessionIn::Drop
            }
        }
    }

    /// A Noise handshake message (`[marker][sender key][message]`) along `back`: an
    /// initiation of a node whose legacy session with us is established is answered (the
    /// X25519s counted by the budget, by `via`, unless `None`: already counted); a response to
    /// our initiation turns the keys on. Nothing is created for a key without a session.
    fn noise_control(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        back: Label,
        via: Option<u32>,
        buf: &PacketBuf,
    ) -> SessionIn {
        let packet = buf.data().get(HEADER_LEN..).unwrap_or_default();
        let (Some(key), Some(message)) = (
            noise::control_sender(packet),
            noise::control_message(packet),
        ) else {
            return SessionIn::Drop;
        };
        if !self.noise || !key.is_valid() || key == self.key {
            return SessionIn::Drop;
        }
        let kind = noise::message_kind(message);
        let owner = self.shard.owner_of(&key.address());
        if owner != self.shard.index() {
            if kind == Some(1) && self.responder.screen(message).is_ok() {
                if let Err(shed) = self.charge(now, via) {
                    return shed;
                }
            }
            return SessionIn::Elsewhere(owner);
        }
        let Some(index) = self.sessions.index_of(&key.address()) else {
            return SessionIn::Drop;
        };
        let ca = self.sessions.context().clone();
        match kind {
            Some(1) => {
                let Ok(screened) = self.responder.screen(message) else {
                    return SessionIn::Drop;
                };
                let Some(sess) = self.sessions.get(index) else {
                    return SessionIn::Drop;
                };
                if !sess.session.is_established() {
                    return SessionIn::Drop;
                }
                let (our_index, generation) = (
                    noise::noise_index(sess.receive_handle),
                    sess.session.generation(),
                );
                if let Err(shed) = self.charge(now, via) {
                    return shed;
                }
                let src = *key.as_bytes();
                let Ok(InitiationOutcome::Accept(accepted)) =
                    self.responder
                        .answer(now, rng, &src, screened, &[], false, |_| our_index)
                else {
                    return SessionIn::Drop;
                };
                let Some(sess) = self.sessions.get_mut(index) else {
                    return SessionIn::Drop;
                };
                if accepted.peer != key {
                    return SessionIn::Drop;
                }
                let accepted = *accepted;
                sess.noise.install(accepted.transport, generation);
                let mut reply = noise::response_packet(&self.key, &accepted.response);
                with_switch_header(&mut reply, back)
                    .map_or(SessionIn::Drop, |()| SessionIn::Reply(reply))
            }
            Some(2) => {
                let Some(sess) = self.sessions.get_mut(index) else {
                    return SessionIn::Drop;
                };
                let Ok(mut keepalive) = sess.noise.complete(now, &ca, message) else {
                    return SessionIn::Drop;
                };
                sess.last_validated = now;
                with_switch_header(&mut keepalive, back)
                    .map_or(SessionIn::Drop, |()| SessionIn::Reply(keepalive))
            }
            _ => SessionIn::Drop,
        }
    }

    /// Noise initiations to send now (`docs/node.md`, "Noise end to end"): for sessions we
    /// started whose legacy handshake is established, once, again after
    /// [`noise::PROBE_RETRY`] if unanswered, and when the keys want renewing. Looked at every
    /// [`NOISE_SCAN_EVERY`]; each packet is a switch packet from our router.
    pub(crate) fn noise_initiations(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Vec<PacketBuf> {
        if !self.noise || self.next_noise_scan.is_some_and(|t| now < t) {
            return Vec::new();
        }
        self.next_noise_scan = Some(now + NOISE_SCAN_EVERY);
        let wall = self.wall(now);
        let ca = self.sessions.context().clone();
        let mut out = Vec::new();
        for sess in self.sessions.iter_mut() {
            let Some(path) = sess.path else {
                continue;
            };
            let our_index = noise::noise_index(sess.receive_handle);
            if let Some(mut p) =
                sess.noise
                    .poll_initiation(now, wall, &ca, &sess.session, our_index, rng)
            {
                if with_switch_header(&mut p, path).is_some() {
                    out.push(p);
                }
            }
        }
        out
    }

    /// The session for a packet to `destination`: an existing one, or one made for the node
    /// `known` names (a direct peer or a node the pathfinder knows; asked only when there is no
    /// session); a packet that cannot go yet is kept (user packets wait for a ready session).
    pub(crate) fn prepare(
        &mut self,
        now: Instant,
        destination: Address,
        known: impl FnOnce() -> Option<NodeRef>,
        buf: &PacketBuf,
        user: bool,
    ) -> Prepared {
        let index = match self.sessions.index_of(&destination) {
            Some(i) => i,
            None => match known() {
                Some(node) => {
                    match self
                        .sessions
                        .get_or_create(now, node.key, Some(node.path), node.version)
                    {
                        Some(i) => i,
                        None => return Prepared::Drop,
                    }
                }
                None => {
                    self.sessions.buffer(now, destination, buf.data());
                    return Prepared::Waiting {
                        search: true,
                        ping: None,
                    };
                }
            },
        };
        let Some(sess) = self.sessions.get_mut(index) else {
            return Prepared::Drop;
        };
        let Some(path) = sess.path else {
            self.sessions.buffer(now, destination, buf.data());
            return Prepared::Waiting {
                search: true,
                ping: None,
            };
        };
        if user {
            sess.last_used = Some(now);
            if !sess.ready() {
                let setup_due = sess
                    .last_setup
                    .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
                let node = NodeRef {
                    key: sess.key,
                    path,
                    version: sess.version,
                };
                if setup_due {
                    sess.last_setup = Some(now);
                }
                self.sessions.buffer(now, destination, buf.data());
                return Prepared::Waiting {
                    search: false,
                    ping: setup_due.then_some(node),
                };
            }
        }
        Prepared::Seal(index)
    }

    /// The session with `node`, made if needed, marked as being set up now (for messages the
    /// pathfinder sends, which set sessions up).
    pub(crate) fn for_message(&mut self, now: Instant, node: NodeRef) -> Option<usize> {
        let index = self
            .sessions
            .get_or_create(now, node.key, Some(node.path), node.version)?;
        if let Some(s) = self.sessions.get_mut(index) {
            s.last_setup = Some(now);
        }
        Some(index)
    }

    /// Seals `[DataHeader][payload]` in place in session `index` and puts the switch header
    /// in front: the buffer then holds a switch packet from our router.
    pub(crate) fn seal(
        &mut self,
        now: Instant,
        rng: &mut (impl RngCore + CryptoRng),
        index: usize,
        buf: &mut PacketBuf,
    ) -> bool {
        let Some(sess) = self.sessions.get_mut(index) else {
            return false;
        };
        let Some(path) = sess.path else {
            return false;
        };
        // Noise first: its traffic does not feed the legacy session, whose 60 s silence
        // timeout must not reset a session that runs under Noise (the Noise keys have their
        // own limit, after which sealing falls back to legacy and that timeout applies).
        if sess.noise.seal(now, &sess.session, buf) {
            sess.bytes_out += buf.len() as u64;
            return with_switch_header(buf, path).is_some();
        }
        sess.session.reset_if_timeout(now);
        if !sess.ready() {
            // Handshake packets carry our handle inside, so the peer can address us.
            match buf.push_front(4) {
                Some(h) => h.copy_from_slice(&sess.receive_handle.to_be_bytes()),
                None => return false,
            }
        }
        sess.bytes_out += buf.len() as u64;
        let (whole, start) = buf.with_headroom();
        let base = whole.as_ptr() as usize;
        let new_start = match sess.session.encrypt(now, rng, whole, start) {
            Ok(pkt) => offset_in(base, pkt),
            Err(_) => return false,
        };
        buf.set_start(new_start);
        if sess.ready() {
            let Some(handle) = sess.send_handle else {
                return false;
            };
            match buf.push_front(4) {
                Some(h) => h.copy_from_slice(&handle.to_be_bytes()),
                None => return false,
            }
        }
        match buf.push_front(HEADER_LEN) {
            Some(h) => {
                h.copy_from_slice(&SwitchHeaderRepr::new(path.bits()).to_bytes());
                true
            }
            None => false,
        }
    }

    /// A path to `node` was found or changed. Returns whether packets wait for it, and if so
    /// the session to send them in (made if needed).
    pub(crate) fn path_found(&mut self, now: Instant, node: NodeRef) -> Option<usize> {
        let address = node.key.address();
        if !self.sessions.is_waiting(&address) {
            // Keep the path of an existing session current (a reported path keeps it alive, as
            // in cjdns); create nothing new.
            if let Some(index) = self.sessions.index_of(&address) {
                self.sessions
                    .get_or_create(now, node.key, Some(node.path), node.version);
                self.sessions.validated(index, now);
            }
            return None;
        }
        let index = self
            .sessions
            .get_or_create(now, node.key, Some(node.path), node.version)?;
        self.sessions.validated(index, now);
        Some(index)
    }

    /// Whether session `index` can carry user packets.
    pub(crate) fn is_ready(&self, index: usize) -> bool {
        self.sessions.get(index).is_some_and(|s| s.ready())
    }

    /// The packets waiting for `destination`, to send now.
    pub(crate) fn take_waiting(&mut self, destination: &Address) -> Vec<Buffered> {
        self.sessions.take_buffered(destination)
    }

    /// Forgets packets that waited too long, sessions that timed out, and budget sources that
    /// went quiet.
    pub(crate) fn expire(&mut self, now: Instant) {
        self.sessions.expire(now);
        self.budget.sweep_if_due(now);
    }

    /// What the handshake budget let through and shed.
    pub(crate) fn budget_stats(&self) -> BudgetStats {
        self.budget.stats()
    }

    /// What the session table holds and has let go.
    pub(crate) fn table_stats(&self) -> TableStats {
        self.sessions.stats()
    }

    /// Number of user packets waiting for sessions.
    pub(crate) fn waiting_len(&self) -> usize {
        self.sessions.buffered_len()
    }

    /// Statistics of every session (`SessionManager_sessionStats`).
    pub(crate) fn stats(&self) -> Vec<SessionStats> {
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
                receive: ReceiveStats::of(&s.session, s.bad_packets),
                noise: s.noise.is_active(&s.session),
            })
            .collect()
    }
}

/// Puts a switch header for `path` in front of the buffer.
fn with_switch_header(buf: &mut PacketBuf, path: Label) -> Option<()> {
    buf.push_front(HEADER_LEN)?
        .copy_from_slice(&SwitchHeaderRepr::new(path.bits()).to_bytes());
    Some(())
}

fn state_name(s: State) -> &'static str {
    PeerState::Session(s).name()
}

#[cfg(test)]
mod tests {
    //! The session stage on its own: `[DataHeader][content]` sealed by one node's stage and
    //! opened by another's.
    use super::*;
    use crate::core::budget::SESSION_BUDGET;
    use pktmesh_crypto_auth::PrivateKey;
    use rand_core::SeedableRng;

    fn stage(rng: &mut rand_chacha::ChaCha20Rng, base: u32) -> (SessionStage, PublicKey) {
        let (private, public, _) = PrivateKey::generate(rng);
        let ca = Arc::new(CryptoAuth::new(private));
        (
            SessionStage::new(ca, ShardSpec::SINGLE, base, Instant::now()),
            public,
        )
    }

    const CJDHT: &[u8] = b"\x10\x00\x01\x00d1:q2:pne";

    #[test]
    fn a_session_packet_opens_to_its_content_and_sets_the_session_up() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let (mut a, a_key) = stage(&mut rng, 100);
        let (mut b, b_key) = stage(&mut rng, 5000);
        let path = Label::new(0x13).unwrap();
        let b_node = NodeRef {
            key: b_key,
            path,
            version: 22,
        };
        // A user packet waits for a ready session and asks for a ping to set it up.
        let buf = PacketBuf::from_slice(CJDHT);
        assert_eq!(
            a.prepare(now, b_key.address(), || Some(b_node), &buf, true),
            Prepared::Waiting {
                search: false,
                ping: Some(b_node)
            }
        );
        assert_eq!(a.waiting_len(), 1);
        // A pathfinder message goes at once, in a HELLO carrying A's handle.
        let index = a.for_message(now, b_node).unwrap();
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(a.seal(now, &mut rng, index, &mut buf));
        assert_eq!(buf.data()[..8], 0x13u64.to_be_bytes());
        match b.open(now, &mut rng, 0x13, 3, false, &mut buf) {
            SessionIn::Content {
                from,
                source,
                became_ready,
            } => {
                assert_eq!((from.key, from.path), (a_key, path));
                assert_eq!(source, a_key.address());
                assert!(!became_ready);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(buf.data(), CJDHT);
        assert_eq!(b.stats()[0].send_handle, a.stats()[0].handle);
        // B answers with its KEY; then A's data packets flow, and a replayed one is counted.
        let a_node = NodeRef {
            key: a_key,
            path,
            version: 22,
        };
        let back = b.for_message(now, a_node).unwrap();
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(b.seal(now, &mut rng, back, &mut buf));
        assert!(matches!(
            a.open(now, &mut rng, 0x13, 3, false, &mut buf),
            SessionIn::Content {
                became_ready: true,
                ..
            }
        ));
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(a.seal(now, &mut rng, index, &mut buf));
        let data = buf.data().to_vec();
        assert!(matches!(
            b.open(now, &mut rng, 0x13, 3, false, &mut buf),
            SessionIn::Content { .. }
        ));
        let mut again = PacketBuf::from_slice(&data);
        assert!(matches!(
            b.open(now, &mut rng, 0x13, 3, false, &mut again),
            SessionIn::AuthError {
                established: true,
                ..
            }
        ));
        // The window starts after the first data nonce, so its replay counts as too old.
        let r = b.stats()[0].receive;
        assert_eq!(
            (r.duplicates + r.received_out_of_range, r.dropped),
            (1, 1),
            "{r:?}"
        );
        assert!(r.received_packets >= 1, "{r:?}");
    }

    /// Two stages with an established legacy session, A its initiator: (A, B, A's session
    /// index at A, B's at B).
    fn established_pair(
        rng: &mut rand_chacha::ChaCha20Rng,
        now: Instant,
    ) -> (SessionStage, SessionStage, usize, usize) {
        let (mut a, a_key) = stage(rng, 100);
        let (mut b, b_key) = stage(rng, 5000);
        let path = Label::new(0x13).unwrap();
        let node = |key| NodeRef {
            key,
            path,
            version: 22,
        };
        let at_a = a.for_message(now, node(b_key)).unwrap();
        let at_b = b.for_message(now, node(a_key)).unwrap();
        // HELLO, KEY, data, data: both sides established.
        for (from_a, _) in [(true, 0), (false, 1), (true, 2), (false, 3)] {
            let (tx, rx, index) = if from_a {
                (&mut a, &mut b, at_a)
            } else {
                (&mut b, &mut a, at_b)
            };
            let mut buf = PacketBuf::from_slice(CJDHT);
            assert!(tx.seal(now, rng, index, &mut buf));
            assert!(matches!(
                rx.open(now, rng, 0x13, 3, false, &mut buf),
                SessionIn::Content { .. }
            ));
        }
        assert_eq!(
            (a.stats()[0].state, b.stats()[0].state),
            ("ESTABLISHED", "ESTABLISHED")
        );
        (a, b, at_a, at_b)
    }

    /// The first word after the switch header of a sealed packet.
    fn first_word(buf: &PacketBuf) -> u32 {
        be32(buf.data(), HEADER_LEN).unwrap()
    }

    #[test]
    fn pktmesh_nodes_upgrade_their_session_to_noise() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(21);
        let (mut a, mut b, at_a, at_b) = established_pair(&mut rng, now);
        // Only the legacy initiator asks, once.
        assert!(b.noise_initiations(now, &mut rng).is_empty());
        let mut initiations = a.noise_initiations(now, &mut rng);
        assert_eq!(initiations.len(), 1);
        assert!(a.noise_initiations(now, &mut rng).is_empty());
        let mut response = match b.open(now, &mut rng, 0x13, 3, false, &mut initiations[0]) {
            SessionIn::Reply(r) => r,
            other => panic!("{other:?}"),
        };
        // B does not send under the new keys before A's first Noise packet opened.
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(b.seal(now, &mut rng, at_b, &mut buf));
        assert_eq!(first_word(&buf) & noise::NOISE_HANDLE_BIT, 0);
        let mut keepalive = match a.open(now, &mut rng, 0x13, 3, false, &mut response) {
            SessionIn::Reply(k) => k,
            other => panic!("{other:?}"),
        };
        // A seals under Noise at once; B opens it.
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(a.seal(now, &mut rng, at_a, &mut buf));
        assert_eq!(
            first_word(&buf),
            a.stats()[0].send_handle | noise::NOISE_HANDLE_BIT
        );
        let sent = buf.data().to_vec();
        assert!(matches!(
            b.open(now, &mut rng, 0x13, 3, false, &mut buf),
            SessionIn::Content { .. }
        ));
        assert_eq!(buf.data(), CJDHT);
        // A replay does not open, and is counted.
        let mut again = PacketBuf::from_slice(&sent);
        assert!(matches!(
            b.open(now, &mut rng, 0x13, 3, false, &mut again),
            SessionIn::Drop
        ));
        assert_eq!(b.stats()[0].receive.dropped, 1);
        // The keepalive (already confirmed by the data above) opens to nothing.
        assert!(matches!(
            b.open(now, &mut rng, 0x13, 3, false, &mut keepalive),
            SessionIn::Drop
        ));
        // B now sends under Noise too, and A opens it.
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(b.seal(now, &mut rng, at_b, &mut buf));
        assert_ne!(first_word(&buf) & noise::NOISE_HANDLE_BIT, 0);
        assert!(matches!(
            a.open(now, &mut rng, 0x13, 3, false, &mut buf),
            SessionIn::Content { .. }
        ));
        assert_eq!(buf.data(), CJDHT);
        assert!(a.stats()[0].noise && b.stats()[0].noise);
        // Past legacy's 60 s silence timeout (no legacy packet since the upgrade), before the
        // Noise keys' re-key age: both sides still seal under Noise, nothing is reset.
        let later = now + Duration::from_secs(61);
        for a_sends in [true, false] {
            let (tx, rx, index) = if a_sends {
                (&mut a, &mut b, at_a)
            } else {
                (&mut b, &mut a, at_b)
            };
            let mut buf = PacketBuf::from_slice(CJDHT);
            assert!(tx.seal(later, &mut rng, index, &mut buf));
            assert_ne!(first_word(&buf) & noise::NOISE_HANDLE_BIT, 0);
            assert!(matches!(
                rx.open(later, &mut rng, 0x13, 3, false, &mut buf),
                SessionIn::Content { .. }
            ));
        }
        assert_eq!(
            (a.stats()[0].state, b.stats()[0].state),
            ("ESTABLISHED", "ESTABLISHED")
        );
    }

    #[test]
    fn a_node_that_never_answers_keeps_legacy() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(22);
        let (mut a, mut b, at_a, _) = established_pair(&mut rng, now);
        // B stands for stock cjdns, which drops the initiation unread.
        b.set_noise(false);
        let mut t = now;
        let mut sent = 0;
        for _ in 0..10 {
            for mut i in a.noise_initiations(t, &mut rng) {
                sent += 1;
                assert!(matches!(
                    b.open(t, &mut rng, 0x13, 3, false, &mut i),
                    SessionIn::Drop
                ));
            }
            t += noise::PROBE_RETRY;
        }
        assert_eq!(sent, usize::from(noise::PROBE_ATTEMPTS));
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(a.seal(t, &mut rng, at_a, &mut buf));
        assert_eq!(first_word(&buf), a.stats()[0].send_handle);
        assert!(matches!(
            b.open(t, &mut rng, 0x13, 3, false, &mut buf),
            SessionIn::Content { .. }
        ));
        assert!(!a.stats()[0].noise && !b.stats()[0].noise);
    }

    #[test]
    fn a_noise_initiation_from_a_node_without_a_session_costs_nothing() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(23);
        let (mut a, _, _, _) = established_pair(&mut rng, now);
        let (mut c, _) = stage(&mut rng, 9000);
        let mut initiation = a.noise_initiations(now, &mut rng).remove(0);
        assert!(matches!(
            c.open(now, &mut rng, 0x13, 3, false, &mut initiation),
            SessionIn::Drop
        ));
        assert!(c.stats().is_empty());
        assert_eq!(c.budget_stats(), BudgetStats::default());
    }

    #[test]
    fn unknown_handles_are_dropped_and_bad_handshakes_answered_with_an_error() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(12);
        let (mut a, _) = stage(&mut rng, 100);
        let (mut b, b_key) = stage(&mut rng, 5000);
        let mut pkt = [0u8; 12 + 4 + 20];
        pkt[..8].copy_from_slice(&0x13u64.to_be_bytes());
        pkt[12..16].copy_from_slice(&77_777u32.to_be_bytes());
        pkt[19] = 9;
        let mut buf = PacketBuf::from_slice(&pkt);
        assert!(matches!(
            b.open(now, &mut rng, 0x13, 3, false, &mut buf),
            SessionIn::Drop
        ));
        // A HELLO whose box was damaged on the way.
        let node = NodeRef {
            key: b_key,
            path: Label::new(0x13).unwrap(),
            version: 22,
        };
        let index = a.for_message(now, node).unwrap();
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(a.seal(now, &mut rng, index, &mut buf));
        let mut damaged = buf.data().to_vec();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        let mut buf = PacketBuf::from_slice(&damaged);
        assert!(matches!(
            b.open(now, &mut rng, 0x13, 3, false, &mut buf),
            SessionIn::AuthError { back, .. } if back.bits() == 0x13
        ));
    }

    /// A forged end-to-end HELLO from `key` (an fc key whose private half nobody has): the
    /// right header, a box that cannot open.
    fn forged_hello(key: &PublicKey, rng: &mut rand_chacha::ChaCha20Rng) -> PacketBuf {
        let mut pkt = [0u8; HEADER_LEN + 120 + 4 + 16];
        rng.fill_bytes(&mut pkt);
        pkt[..HEADER_LEN].copy_from_slice(&SwitchHeaderRepr::new(0x13).to_bytes());
        pkt[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&[0; 4]);
        // Auth type 0 (none): what end-to-end sessions accept.
        pkt[HEADER_LEN + 4] = 0;
        pkt[HEADER_LEN + 40..HEADER_LEN + 72].copy_from_slice(key.as_bytes());
        PacketBuf::from_slice(&pkt)
    }

    /// A random key whose address is in fc00::/8 (cheap: no scalar multiplication).
    fn fc_key(rng: &mut rand_chacha::ChaCha20Rng) -> PublicKey {
        loop {
            let mut b = [0u8; 32];
            rng.fill_bytes(&mut b);
            let k = PublicKey::from_bytes(b);
            if k.is_valid() {
                return k;
            }
        }
    }

    #[test]
    fn a_strangers_handshake_makes_a_session_only_once_it_opens() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(13);
        let (mut b, _) = stage(&mut rng, 5000);
        // Forged HELLOs are answered with an error, as before, but leave nothing behind.
        for _ in 0..10 {
            let mut buf = forged_hello(&fc_key(&mut rng), &mut rng);
            assert!(matches!(
                b.open(now, &mut rng, 0x13, 3, false, &mut buf),
                SessionIn::AuthError {
                    established: false,
                    state: 0,
                    ..
                }
            ));
        }
        assert!(
            b.stats().is_empty(),
            "no session for a handshake that failed"
        );
        // A genuine one is admitted, with the first handle.
        let (mut a, a_key) = stage(&mut rng, 100);
        let b_node = NodeRef {
            key: *b.sessions.context().public_key(),
            path: Label::new(0x13).unwrap(),
            version: 22,
        };
        let index = a.for_message(now, b_node).unwrap();
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(a.seal(now, &mut rng, index, &mut buf));
        assert!(matches!(
            b.open(now, &mut rng, 0x13, 3, false, &mut buf),
            SessionIn::Content { .. }
        ));
        let stats = b.stats();
        assert_eq!((stats.len(), stats[0].key), (1, a_key));
        assert_eq!((stats[0].handle, stats[0].path), (5000, 0x13));
        let t = b.table_stats();
        assert_eq!((t.sessions, t.pending), (1, 1));
    }

    #[test]
    fn a_handshake_flood_through_one_peer_is_shed_and_another_peers_handshake_opens() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(14);
        let (mut b, b_key) = stage(&mut rng, 5000);
        let per_peer = u64::from(SESSION_BUDGET.per_source.burst);
        // 2000 forged HELLOs through peer 3 in one instant: its burst is opened (and fails),
        // the rest is shed unopened.
        let (mut errors, mut shed) = (0u64, 0u64);
        for _ in 0..2000 {
            let mut buf = forged_hello(&fc_key(&mut rng), &mut rng);
            match b.open(now, &mut rng, 0x13, 3, false, &mut buf) {
                SessionIn::AuthError { .. } => errors += 1,
                SessionIn::Shed => shed += 1,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((errors, shed), (per_peer, 2000 - per_peer));
        let st = b.budget_stats();
        assert_eq!(
            (st.allowed, st.shed_source, st.sources),
            (per_peer, shed, 1)
        );
        // A genuine handshake through another peer (interface 5) opens at once.
        let (mut a, _) = stage(&mut rng, 100);
        let b_node = NodeRef {
            key: b_key,
            path: Label::new(0x15).unwrap(),
            version: 22,
        };
        let index = a.for_message(now, b_node).unwrap();
        let mut buf = PacketBuf::from_slice(CJDHT);
        assert!(a.seal(now, &mut rng, index, &mut buf));
        assert!(matches!(
            b.open(now, &mut rng, 0x15, 5, false, &mut buf),
            SessionIn::Content { .. }
        ));
        // Through peer 3 again after a second: its rate (32/s) let 32 more through.
        let later = now + Duration::from_secs(1);
        let opened = (0..100)
            .filter(|_| {
                let mut buf = forged_hello(&fc_key(&mut rng), &mut rng);
                matches!(
                    b.open(later, &mut rng, 0x13, 3, false, &mut buf),
                    SessionIn::AuthError { .. }
                )
            })
            .count();
        assert_eq!(opened as u32, SESSION_BUDGET.per_source.per_second);
        assert_eq!(b.table_stats().sessions, 1);
    }

    #[test]
    fn a_handshake_for_another_shard_is_counted_once_before_the_handoff() {
        let now = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(15);
        let (private, _, _) = PrivateKey::generate(&mut rng);
        let ca = Arc::new(CryptoAuth::new(private));
        let shard = |i| {
            let spec = ShardSpec::new(i, 2).unwrap();
            SessionStage::new(ca.clone(), spec, 100, now)
        };
        let (mut s0, mut s1) = (shard(0), shard(1));
        let burst = u64::from(SESSION_BUDGET.per_source.burst);
        let mut handed = 0u64;
        for _ in 0..200 {
            let key = loop {
                let k = fc_key(&mut rng);
                if ShardSpec::new(0, 2).unwrap().owner_of(&k.address()) == 1 {
                    break k;
                }
            };
            let mut buf = forged_hello(&key, &mut rng);
            match s0.open(now, &mut rng, 0x13, 3, false, &mut buf) {
                SessionIn::Elsewhere(1) => {
                    handed += 1;
                    // The owner opens it without asking its own budget.
                    assert!(matches!(
                        s1.open(now, &mut rng, 0x13, 3, true, &mut buf),
                        SessionIn::AuthError { .. }
                    ));
                }
                SessionIn::Shed => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            handed, burst,
            "peer 3's one bucket, in the shard it arrived at"
        );
        assert_eq!(s0.budget_stats().allowed, burst);
        assert_eq!(s1.budget_stats(), BudgetStats::default());
    }
}
