//! End-to-end sessions (cjdns `SessionManager`): one legacy CryptoAuth session per remote
//! node, addressed by the 32-bit handles each side picks, plus the buffer of user packets
//! that wait for a session or a path.
//!
//! The packet flow (which handle goes where, when user traffic may be sent) is in
//! [`crate::core`]; this module owns the table and its invariants.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{CryptoAuth, Session, State};
use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::Label;
use rand_core::RngCore;

/// The lowest first handle (0–3 are CryptoAuth handshake words).
pub const MIN_FIRST_HANDLE: u32 = 4;
/// One more than the highest first handle.
pub const MAX_FIRST_HANDLE: u32 = 100_000;
/// User packets held while sessions are set up, across all destinations.
pub const MAX_BUFFERED: usize = 30;
/// How long a buffered packet waits before it is dropped.
pub const BUFFER_TIMEOUT: Duration = Duration::from_secs(10);
/// The most end-to-end sessions kept.
pub const MAX_SESSIONS: usize = 4096;

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
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes sent.
    pub bytes_out: u64,
    /// Packets for this session that did not open (failed decryption, replayed or too old).
    pub bad_packets: u64,
}

impl InnerSession {
    /// Whether user traffic may be sent (forward secrecy: only after the peer's KEY).
    pub fn ready(&self) -> bool {
        matches!(
            self.session.state(),
            State::ReceivedKey | State::Established
        )
    }
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
        Self {
            ca,
            first_handle,
            sessions: Vec::new(),
            by_address: HashMap::new(),
            buffered: VecDeque::new(),
        }
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

    /// The session with `key`, created if absent; updates its path and version when given.
    /// `None` when the table is full.
    pub fn get_or_create(
        &mut self,
        now: Instant,
        key: PublicKey,
        path: Option<Label>,
        version: u32,
    ) -> Option<usize> {
        let address = key.address();
        let index = match self.by_address.get(&address) {
            Some(&i) => i,
            None => {
                let i = match self.sessions.iter().position(Option::is_none) {
                    Some(i) => i,
                    None if self.sessions.len() < MAX_SESSIONS => {
                        self.sessions.push(None);
                        self.sessions.len() - 1
                    }
                    None => return None,
                };
                let receive_handle = self.first_handle + u32::try_from(i).ok()?;
                self.sessions[i] = Some(InnerSession {
                    key,
                    address,
                    session: Session::new(self.ca.clone(), key, false, now),
                    path: None,
                    version: 0,
                    receive_handle,
                    send_handle: None,
                    last_used: None,
                    last_setup: None,
                    bytes_in: 0,
                    bytes_out: 0,
                    bad_packets: 0,
                });
                self.by_address.insert(address, i);
                i
            }
        };
        let s = self.sessions[index].as_mut()?;
        if path.is_some() {
            s.path = path;
        }
        if version != 0 {
            s.version = version;
        }
        Some(index)
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

    /// Drops buffered packets older than [`BUFFER_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) {
        self.buffered
            .retain(|b| now.saturating_duration_since(b.since) < BUFFER_TIMEOUT);
    }

    /// Number of buffered packets.
    pub fn buffered_len(&self) -> usize {
        self.buffered.len()
    }
}
