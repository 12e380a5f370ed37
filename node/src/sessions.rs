//! End-to-end sessions (cjdns `SessionManager`): one legacy CryptoAuth session per remote
//! node, addressed by the 32-bit handles each side picks, plus the buffer of user packets
//! that wait for a session or a path.
//!
//! The packet flow (which handle goes where, when user traffic may be sent) is in
//! [`crate::core`]; this module owns the table and its invariants:
//!
//! - a session's receive handle is the table's first handle plus its index, so a handle names
//!   its session in one lookup (a freed index is used again, lowest first);
//! - a stranger's handshake makes a session only once it has opened
//!   ([`SessionManager::admit`]), and only by taking a free index or the place of the oldest
//!   session that is not set up (never an established one);
//! - a session ends as cjdns 22.3 ends it (`SessionManager.c`, `checkTimedOutSessions`, once a
//!   second): when nothing from it has opened and no path to it was reported for
//!   [`SESSION_TIMEOUT`];
//! - when the table is full, a session the node itself needs takes the place of the oldest one
//!   not set up, or failing that of the least recently active one.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{CryptoAuth, Session, State};
use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::Label;
use rand_core::RngCore;

pub(crate) mod noise;
use noise::SessionNoise;

/// The lowest first handle (0–3 are CryptoAuth handshake words).
pub const MIN_FIRST_HANDLE: u32 = 4;
/// One more than the highest first handle.
pub const MAX_FIRST_HANDLE: u32 = 100_000;
/// User packets held while sessions are set up, across all destinations.
pub const MAX_BUFFERED: usize = 30;
/// How long a buffered packet waits before it is dropped.
pub const BUFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most end-to-end sessions kept (per shard: each has a handle range this long).
pub const MAX_SESSIONS: usize = 4096;
/// A session ends when nothing from it has opened and no path to it was reported for this
/// long (cjdns `SessionManager_SESSION_TIMEOUT_MILLISECONDS_DEFAULT`, 120000).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(120);
/// How often sessions are checked for [`SESSION_TIMEOUT`] (cjdns: every 1000 ms).
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

/// One end-to-end session.
#[derive(Debug)]
pub struct InnerSession {
    /// The remote node's key.
    pub key: PublicKey,
    /// Its address.
    pub address: Address,
    /// The CryptoAuth session (no password).
    pub session: Session,
    /// The best known path from us to it.
    pub path: Option<Label>,
    /// Its protocol version (0 = unknown).
    pub version: u32,
    /// The handle it uses to reach this session (ours).
    pub receive_handle: u32,
    /// The handle we use to reach its session (learned from its handshake).
    pub send_handle: Option<u32>,
    /// When user traffic last used it.
    pub last_used: Option<Instant>,
    /// When a set-up message was last sent through it.
    pub last_setup: Option<Instant>,
    /// When it was made, a packet from it last opened, or a path to it was last reported
    /// (cjdns' `timeLastValidated` of its best path): it ends [`SESSION_TIMEOUT`] after this.
    pub last_validated: Instant,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Packets for this session that did not open (failed decryption, replayed or too old).
    pub bad_packets: u64,
    /// The Noise upgrade of the session, between pktmesh nodes ([`noise`]).
    pub(crate) noise: SessionNoise,
}

impl InnerSession {
    /// Whether user traffic may be sent (forward secrecy: only after the peer's KEY).
    pub fn ready(&self) -> bool {
        matches!(
            self.session.state(),
            State::ReceivedKey | State::Established
        )
    }

    /// When it was last of use: validated, or used by user traffic.
    fn last_active(&self) -> Instant {
        self.last_used
            .map_or(self.last_validated, |u| u.max(self.last_validated))
    }
}

/// What the session table holds and has let go, since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Sessions now.
    pub sessions: usize,
    /// Of those, not set up (no KEY received, no data opened).
    pub pending: usize,
    /// Sessions ended after [`SESSION_TIMEOUT`].
    pub expired: u64,
    /// Sessions not set up that gave their place to another in a full table.
    pub evicted_pending: u64,
    /// Set-up sessions that gave their place to one the node needed in a table full of
    /// set-up sessions.
    pub evicted_ready: u64,
}

impl TableStats {
    /// The sum of two shards' figures.
    pub fn plus(self, other: Self) -> Self {
        Self {
            sessions: self.sessions + other.sessions,
            pending: self.pending + other.pending,
            expired: self.expired + other.expired,
            evicted_pending: self.evicted_pending + other.evicted_pending,
            evicted_ready: self.evicted_ready + other.evicted_ready,
        }
    }
}

/// Which sessions a new one may take the place of when the table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Evict {
    /// Only sessions not set up (for a stranger's handshake).
    PendingOnly,
    /// Those first, then the least recently active (for a session this node needs).
    AnyIfNeeded,
}

/// A user packet waiting for a session.
#[derive(Debug)]
pub struct Buffered {
    /// Destination.
    pub destination: Address,
    /// `[DataHeader][payload]`.
    pub data: Vec<u8>,
    /// When it was buffered.
    pub since: Instant,
}

/// The session table.
#[derive(Debug)]
pub struct SessionManager {
    ca: Arc<CryptoAuth>,
    first_handle: u32,
    sessions: Vec<Option<InnerSession>>,
    by_address: HashMap<Address, usize>,
    buffered: VecDeque<Buffered>,
    next_expiry: Option<Instant>,
    stats: TableStats,
    /// Most sessions ([`MAX_SESSIONS`]; fewer in tests).
    capacity: usize,
}

/// A random first receive handle, as cjdns draws it (at least [`MIN_FIRST_HANDLE`], below
/// [`MAX_FIRST_HANDLE`]).
pub fn random_first_handle(rng: &mut impl RngCore) -> u32 {
    MIN_FIRST_HANDLE + rng.next_u32() % (MAX_FIRST_HANDLE - MIN_FIRST_HANDLE)
}

impl SessionManager {
    /// An empty table for the node `ca` whose receive handles start at `first_handle` (see
    /// [`random_first_handle`]).
    pub fn new(ca: Arc<CryptoAuth>, first_handle: u32) -> Self {
        Self::with_capacity(ca, first_handle, MAX_SESSIONS)
    }

    /// [`SessionManager::new`] holding at most `capacity` (≤ [`MAX_SESSIONS`]) sessions.
    pub(crate) fn with_capacity(ca: Arc<CryptoAuth>, first_handle: u32, capacity: usize) -> Self {
        Self {
            ca,
            first_handle,
            sessions: Vec::new(),
            by_address: HashMap::new(),
            buffered: VecDeque::new(),
            next_expiry: None,
            stats: TableStats::default(),
            capacity: capacity.min(MAX_SESSIONS),
        }
    }

    /// The node context sessions are made with.
    pub fn context(&self) -> &Arc<CryptoAuth> {
        &self.ca
    }

    /// Index of the session with `address`.
    pub fn index_of(&self, address: &Address) -> Option<usize> {
        self.by_address.get(address).copied()
    }

    /// Index of the session whose receive handle is `handle`.
    pub fn index_of_handle(&self, handle: u32) -> Option<usize> {
        let i = usize::try_from(handle.checked_sub(self.first_handle)?).ok()?;
        self.sessions.get(i)?.as_ref().map(|_| i)
    }

    /// The session at `index`.
    pub fn get(&self, index: usize) -> Option<&InnerSession> {
        self.sessions.get(index)?.as_ref()
    }

    /// The session at `index`, mutably.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut InnerSession> {
        self.sessions.get_mut(index)?.as_mut()
    }

    /// All sessions.
    pub fn iter(&self) -> impl Iterator<Item = &InnerSession> {
        self.sessions.iter().flatten()
    }

    /// All sessions, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut InnerSession> {
        self.sessions.iter_mut().flatten()
    }

    /// The session with `key`, created if absent (in a full table, in the place of the oldest
    /// session not set up, or failing that of the least recently active); updates its path and
    /// version when given. For sessions this node needs; a stranger's handshake goes through
    /// [`SessionManager::admit`]. `None` only if no index can be had.
    pub fn get_or_create(
        &mut self,
        now: Instant,
        key: PublicKey,
        path: Option<Label>,
        version: u32,
    ) -> Option<usize> {
        let index = match self.by_address.get(&key.address()) {
            Some(&i) => i,
            None => {
                let session = Session::new(self.ca.clone(), key, false, now);
                self.insert(now, session, Evict::AnyIfNeeded)?
            }
        };
        let s = self.sessions.get_mut(index)?.as_mut()?;
        if path.is_some() {
            s.path = path;
        }
        if version != 0 {
            s.version = version;
        }
        Some(index)
    }

    /// Whether a stranger's handshake could be admitted: an index is free, or a session not
    /// set up could give its place. Asked before the handshake costs an X25519.
    pub fn has_room_for_stranger(&self) -> bool {
        self.by_address.len() < self.capacity || self.iter().any(|s| !s.ready())
    }

    /// Puts a session whose first handshake from a stranger (`session`'s peer, reached along
    /// `path`) has just opened into the table: in a free index, or in the place of the oldest
    /// session not set up. `None` if the table holds only set-up sessions, or the stranger
    /// already has one.
    pub fn admit(&mut self, now: Instant, session: Session, path: Label) -> Option<usize> {
        if self.by_address.contains_key(&session.peer().address()) {
            return None;
        }
        let index = self.insert(now, session, Evict::PendingOnly)?;
        if let Some(s) = self.get_mut(index) {
            s.path = Some(path);
        }
        Some(index)
    }

    /// Places `session` (whose peer has no session here) at the lowest free index, or in the
    /// place of a session `evict` allows when the table is full.
    fn insert(&mut self, now: Instant, session: Session, evict: Evict) -> Option<usize> {
        let i = match self.sessions.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.sessions.len() < self.capacity => {
                self.sessions.push(None);
                self.sessions.len() - 1
            }
            None => {
                let victim = self.victim(evict)?;
                let gone = self.remove(victim)?;
                if gone.ready() {
                    self.stats.evicted_ready += 1;
                } else {
                    self.stats.evicted_pending += 1;
                }
                victim
            }
        };
        let key = *session.peer();
        let address = key.address();
        let receive_handle = self.first_handle + u32::try_from(i).ok()?;
        *self.sessions.get_mut(i)? = Some(InnerSession {
            key,
            address,
            session,
            path: None,
            version: 0,
            receive_handle,
            send_handle: None,
            last_used: None,
            last_setup: None,
            last_validated: now,
            bytes_in: 0,
            bytes_out: 0,
            bad_packets: 0,
            noise: SessionNoise::default(),
        });
        self.by_address.insert(address, i);
        Some(i)
    }

    /// The session a new one takes the place of in a full table: the oldest one not set up;
    /// else, if `evict` allows, the least recently active.
    fn victim(&self, evict: Evict) -> Option<usize> {
        let oldest = |ready: bool| {
            self.sessions
                .iter()
                .enumerate()
                .filter_map(|(i, s)| Some((i, s.as_ref()?)))
                .filter(|(_, s)| s.ready() == ready)
                .min_by_key(|(_, s)| s.last_active())
                .map(|(i, _)| i)
        };
        match evict {
            Evict::PendingOnly => oldest(false),
            Evict::AnyIfNeeded => oldest(false).or_else(|| oldest(true)),
        }
    }

    /// Takes the session at `index` out of the table; its index is free again.
    fn remove(&mut self, index: usize) -> Option<InnerSession> {
        let s = self.sessions.get_mut(index)?.take()?;
        self.by_address.remove(&s.address);
        Some(s)
    }

    /// Something from the session at `index` opened, or a path to it was reported, at `now`.
    pub fn validated(&mut self, index: usize, now: Instant) {
        if let Some(s) = self.get_mut(index) {
            s.last_validated = s.last_validated.max(now);
        }
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Whether there is no session.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// What the table holds and has let go.
    pub fn stats(&self) -> TableStats {
        TableStats {
            sessions: self.len(),
            pending: self.iter().filter(|s| !s.ready()).count(),
            ..self.stats
        }
    }

    /// Keeps a user packet until a session to `destination` is ready; the oldest is dropped
    /// when [`MAX_BUFFERED`] are waiting.
    pub fn buffer(&mut self, now: Instant, destination: Address, data: &[u8]) {
        if self.buffered.len() >= MAX_BUFFERED {
            self.buffered.pop_front();
        }
        self.buffered.push_back(Buffered {
            destination,
            data: data.to_vec(),
            since: now,
        });
    }

    /// Removes and returns the packets waiting for `destination`.
    pub fn take_buffered(&mut self, destination: &Address) -> Vec<Buffered> {
        let mut out = Vec::new();
        self.buffered.retain_mut(|b| {
            if &b.destination == destination {
                out.push(Buffered {
                    destination: b.destination,
                    data: std::mem::take(&mut b.data),
                    since: b.since,
                });
                false
            } else {
                true
            }
        });
        out
    }

    /// Whether packets wait for `destination`.
    pub fn is_waiting(&self, destination: &Address) -> bool {
        self.buffered.iter().any(|b| &b.destination == destination)
    }

    /// Drops buffered packets older than [`BUFFER_TIMEOUT`] and, at most once an
    /// [`EXPIRY_INTERVAL`], ends sessions that were not validated for [`SESSION_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) {
        self.buffered
            .retain(|b| now.saturating_duration_since(b.since) < BUFFER_TIMEOUT);
        if self.next_expiry.is_some_and(|t| now < t) {
            return;
        }
        self.next_expiry = Some(now + EXPIRY_INTERVAL);
        for i in 0..self.sessions.len() {
            let timed_out = self
                .get(i)
                .is_some_and(|s| now.saturating_duration_since(s.last_validated) > SESSION_TIMEOUT);
            if timed_out && self.remove(i).is_some() {
                self.stats.expired += 1;
            }
        }
    }

    /// Number of buffered packets.
    pub fn buffered_len(&self) -> usize {
        self.buffered.len()
    }
}

#[cfg(test)]
mod tests {
    //! The table's bookkeeping: expiry, eviction order, admission of strangers.
    use super::*;
    use pktmesh_crypto_auth::PrivateKey;
    use rand_core::SeedableRng;

    fn table(rng: &mut rand_chacha::ChaCha20Rng) -> SessionManager {
        let (private, _, _) = PrivateKey::generate(rng);
        SessionManager::new(Arc::new(CryptoAuth::new(private)), 1000)
    }

    fn keys(rng: &mut rand_chacha::ChaCha20Rng, n: usize) -> Vec<PublicKey> {
        (0..n).map(|_| PrivateKey::generate(rng).1).collect()
    }

    /// A session that received a KEY (ready) without any crypto: a completed handshake
    /// between two throwaway contexts.
    fn make_ready(m: &mut SessionManager, rng: &mut rand_chacha::ChaCha20Rng, index: usize) {
        let now = Instant::now();
        let (their_private, their_key, _) = PrivateKey::generate(rng);
        let theirs = Arc::new(CryptoAuth::new(their_private));
        let ours = m.context().clone();
        let mut a = Session::new(ours.clone(), their_key, false, now);
        let mut b = Session::new(theirs, *ours.public_key(), false, now);
        let hello = a.encrypt_to_vec(now, rng, b"hello").unwrap();
        b.decrypt(now, &mut hello.clone()).unwrap();
        let mut key = b.encrypt_to_vec(now, rng, b"key").unwrap();
        a.decrypt(now, &mut key).unwrap();
        assert!(matches!(a.state(), State::ReceivedKey));
        // The table's entry keeps its own key; only its CryptoAuth state matters here.
        let s = m.get_mut(index).unwrap();
        s.session = a;
        assert!(s.ready());
    }

    #[test]
    fn idle_sessions_end_after_the_cjdns_timeout_and_traffic_keeps_them() {
        let t0 = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut m = table(&mut rng);
        let k = keys(&mut rng, 2);
        let quiet = m.get_or_create(t0, k[0], None, 0).unwrap();
        let busy = m.get_or_create(t0, k[1], None, 0).unwrap();
        assert_eq!((quiet, busy), (0, 1));
        // Something opens from `busy` every 50 s.
        for t in [50, 100] {
            m.validated(busy, t0 + Duration::from_secs(t));
        }
        m.expire(t0 + Duration::from_secs(120));
        assert_eq!(m.len(), 2, "120 s is not more than the timeout");
        m.expire(t0 + Duration::from_millis(120_500));
        assert_eq!(m.len(), 2, "checked at most once a second");
        m.expire(t0 + Duration::from_secs(121));
        assert_eq!(m.index_of(&k[0].address()), None, "the quiet one ended");
        assert_eq!(m.index_of_handle(1000), None, "its handle is gone");
        assert_eq!(m.index_of(&k[1].address()), Some(busy));
        assert_eq!(m.stats().expired, 1);
        m.expire(t0 + Duration::from_secs(221));
        assert!(m.is_empty());
        // A freed index is used again: the next session gets the first handle.
        let again = m.get_or_create(t0 + Duration::from_secs(222), k[0], None, 0);
        assert_eq!(again, Some(0));
        assert_eq!(m.get(0).unwrap().receive_handle, 1000);
    }

    #[test]
    fn a_full_table_gives_up_sessions_not_set_up_first_oldest_first() {
        let t0 = Instant::now();
        let secs = |n: u64| t0 + Duration::from_secs(n);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let (private, _, _) = PrivateKey::generate(&mut rng);
        let mut m = SessionManager::with_capacity(Arc::new(CryptoAuth::new(private)), 1000, 6);
        let k = keys(&mut rng, 10);
        // Index i made at second 10 + i; 1 and 3 are not set up, the others are.
        for (i, key) in k.iter().take(6).enumerate() {
            assert_eq!(m.get_or_create(secs(10 + i as u64), *key, None, 0), Some(i));
        }
        for i in [0, 2, 4, 5] {
            make_ready(&mut m, &mut rng, i);
        }
        // 3 opened something later than 1 was made; 0 (set up) is the oldest of all.
        m.validated(3, secs(20));
        let new = m.get_or_create(secs(30), k[6], None, 0);
        assert_eq!(new, Some(1), "the oldest session not set up gave its place");
        assert_eq!(
            m.get(1).unwrap().receive_handle,
            1001,
            "same index, same handle"
        );
        assert_eq!(m.index_of(&k[1].address()), None);
        // A stranger may only take the place of one not set up: 3 (at second 20) before the
        // new one at 1 (second 30); then that one.
        let stranger = |m: &SessionManager, key: PublicKey, at| {
            Session::new(m.context().clone(), key, false, at)
        };
        assert!(m.has_room_for_stranger());
        let s = stranger(&m, k[7], secs(31));
        assert_eq!(m.admit(secs(31), s, Label::SELF), Some(3));
        let s = stranger(&m, k[8], secs(32));
        assert_eq!(m.admit(secs(32), s, Label::SELF), Some(1));
        // Once every place is set up, strangers find no room, while the node itself takes the
        // place of the least recently active: 0 was made first but is in use, so 2.
        make_ready(&mut m, &mut rng, 1);
        make_ready(&mut m, &mut rng, 3);
        assert!(!m.has_room_for_stranger());
        let s = stranger(&m, k[9], secs(33));
        assert_eq!(m.admit(secs(33), s, Label::SELF), None);
        m.get_mut(0).unwrap().last_used = Some(secs(25));
        assert_eq!(m.get_or_create(secs(34), k[9], None, 0), Some(2));
        let st = m.stats();
        assert_eq!(
            (
                st.sessions,
                st.pending,
                st.evicted_pending,
                st.evicted_ready
            ),
            (6, 1, 3, 1)
        );
        // An admitted stranger keeps the path its handshake came on.
        assert_eq!(m.get(1).unwrap().path, Some(Label::SELF));
    }
}
