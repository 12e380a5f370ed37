//! Splitting one node over several worker threads: which shard owns which peer and session,
//! the switch table all shards share, and the pathfinder they share.
//!
//! A node with `count` shards runs `count` [`crate::core::Node`] values with the same key. Each
//! owns a part of the state, so sealing for a session happens on one shard only and in nonce
//! order (the legacy replay window tolerates only about 48 packets of reordering):
//!
//! - a **peer** (its link session, keepalives, egress port) and the **end-to-end session** with
//!   a node are owned by the shard [`ShardSpec::owner_of`] picks from the remote address, so
//!   a direct peer's link and end-to-end session live together;
//! - **switch slots** are allocated in a [`Directory`] shared by all shards, which also says
//!   which shard owns each slot and each peer link address;
//! - **receive handles** come from disjoint ranges, one per shard
//!   ([`ShardSpec::owner_of_handle`]);
//! - the **pathfinder** is one, shared through [`SharedPathfinder`], which hands each shard the
//!   messages for the nodes it owns and tells every shard about the paths it finds.
//!
//! When a packet reaches a shard that does not own what it needs, the node answers
//! [`crate::core::Output::Handoff`]: the driver passes the packet to the owning shard's
//! [`crate::core::Node::handle_handoff`]. With one shard (the default) nothing is ever handed
//! off. Locks and threads are the driver's business; nothing here blocks for long (the
//! directory and pathfinder locks are held only for table updates and pathfinder calls).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::switch_core::{SlotError, SLOT_COUNT};
use pktmesh_switch::{Label, SwitchCore};

use crate::pathfinding::{NodeRef, Pathfinder};
use crate::sessions::MAX_SESSIONS;

/// Most shards one node may have.
pub const MAX_SHARDS: u8 = 64;

/// Which shard of how many a node core is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    index: u8,
    count: u8,
}

impl ShardSpec {
    /// The only shard of an unsharded node.
    pub const SINGLE: Self = Self { index: 0, count: 1 };

    /// Shard `index` of `count`; `None` unless `index < count <= MAX_SHARDS`.
    pub fn new(index: u8, count: u8) -> Option<Self> {
        (index < count && count <= MAX_SHARDS).then_some(Self { index, count })
    }

    /// This shard's number, from 0.
    pub fn index(self) -> u8 {
        self.index
    }

    /// How many shards the node has.
    pub fn count(self) -> u8 {
        self.count
    }

    /// Whether this is the only shard.
    pub fn is_single(self) -> bool {
        self.count == 1
    }

    /// The shard that owns the peer and the end-to-end session with the node at `address`.
    /// Addresses are hashes of keys, so their last byte spreads evenly.
    pub fn owner_of(self, address: &Address) -> u8 {
        address.as_bytes()[15] % self.count
    }

    /// Whether this shard owns the peer or session with the node at `address`.
    pub fn owns(self, address: &Address) -> bool {
        self.owner_of(address) == self.index
    }

    /// The first receive handle of this shard, given the node's `base` handle: each shard has
    /// [`MAX_SESSIONS`] handles of its own.
    pub fn first_handle(self, base: u32) -> u32 {
        base + u32::from(self.index) * MAX_SESSIONS as u32
    }

    /// The shard whose handle range holds `handle`, given the node's `base` handle.
    pub fn owner_of_handle(self, base: u32, handle: u32) -> Option<u8> {
        let shard = handle.checked_sub(base)? / MAX_SESSIONS as u32;
        u8::try_from(shard).ok().filter(|&s| s < self.count)
    }

    /// A ping cookie that names this shard in its low byte, so a pong that comes back through
    /// another shard's peer can be handed to the shard that waits for it.
    pub fn mark_cookie(self, random: u64) -> u64 {
        (random & !0xff) | u64::from(self.index)
    }

    /// The shard a cookie made by [`ShardSpec::mark_cookie`] names.
    pub fn owner_of_cookie(self, cookie: u64) -> u8 {
        (cookie & 0xff) as u8 % self.count
    }
}

/// What all shards of a node share about its switch: which slots are in use, by which shard,
/// and which shard owns each peer link address. Shards keep a copy and refresh it when the
/// generation moves, so the data path reads one atomic and no lock.
#[derive(Debug)]
pub struct Directory {
    generation: AtomicU64,
    table: Mutex<DirectoryTable>,
}

/// A snapshot of the [`Directory`].
#[derive(Debug, Clone)]
pub struct DirectoryTable {
    /// Every shard's slots are attached here, so labels decode the same on every shard.
    pub switch: SwitchCore,
    /// Owner of each slot (`None`: free or the router).
    pub slot_owner: Vec<Option<u8>>,
    /// Owner of each peer link address.
    pub link_owner: HashMap<SocketAddr, u8>,
    /// The peer in each slot: its key and link address (every shard classifies packets for
    /// leases between any two slots, and paces each link at that peer's capacity).
    pub slot_peer: Vec<Option<(PublicKey, SocketAddr)>>,
}

impl Directory {
    /// An empty directory for a switch like `switch` (only the router attached).
    pub fn new(switch: SwitchCore) -> Arc<Self> {
        Arc::new(Self {
            generation: AtomicU64::new(0),
            table: Mutex::new(DirectoryTable {
                switch,
                slot_owner: vec![None; SLOT_COUNT],
                link_owner: HashMap::new(),
                slot_peer: vec![None; SLOT_COUNT],
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, DirectoryTable> {
        // The table is consistent after every public call, so a panic elsewhere leaves it usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current generation; changes whenever the table does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A copy of the table and its generation.
    pub fn snapshot(&self) -> (u64, DirectoryTable) {
        let table = self.lock();
        (self.generation.load(Ordering::Acquire), table.clone())
    }

    /// Attaches the peer `key` at `link` for `shard` in the lowest free slot (as cjdns
    /// chooses).
    pub fn attach(
        &self,
        shard: u8,
        link: SocketAddr,
        key: PublicKey,
    ) -> Result<(u16, Label), SlotError> {
        let mut table = self.lock();
        let (slot, label) = table.switch.add_interface()?;
        table.slot_owner[usize::from(slot)] = Some(shard);
        table.slot_peer[usize::from(slot)] = Some((key, link));
        table.link_owner.insert(link, shard);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok((slot, label))
    }

    /// Detaches the peer in `slot` at `link`.
    pub fn detach(&self, slot: u16, link: SocketAddr) {
        let mut table = self.lock();
        table.switch.remove_interface(slot);
        if let Some(o) = table.slot_owner.get_mut(usize::from(slot)) {
            *o = None;
        }
        if let Some(p) = table.slot_peer.get_mut(usize::from(slot)) {
            *p = None;
        }
        table.link_owner.remove(&link);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// One shard's copy of the [`Directory`]: the switch table its data path reads without a
/// lock, refreshed with one atomic read when nothing changed.
#[derive(Debug)]
pub struct DirectoryView {
    directory: Arc<Directory>,
    shard: ShardSpec,
    generation: u64,
    table: DirectoryTable,
}

impl DirectoryView {
    /// A view of `directory` for `shard`.
    pub fn new(directory: Arc<Directory>, shard: ShardSpec) -> Self {
        let (generation, table) = directory.snapshot();
        Self {
            directory,
            shard,
            generation,
            table,
        }
    }

    /// Brings the copy up to date; one atomic read when nothing changed.
    pub fn sync(&mut self) {
        if self.directory.generation() == self.generation {
            return;
        }
        let (generation, table) = self.directory.snapshot();
        self.generation = generation;
        self.table = table;
    }

    /// The switch, with every shard's slots attached.
    pub fn switch(&self) -> &SwitchCore {
        &self.table.switch
    }

    /// Which shard this view belongs to.
    pub fn shard(&self) -> ShardSpec {
        self.shard
    }

    /// The generation of the copy (it moves whenever a slot is taken or given back).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The peer in `slot` (any shard's): its key and link address.
    pub fn peer_in(&self, slot: u16) -> Option<(PublicKey, SocketAddr)> {
        self.table
            .slot_peer
            .get(usize::from(slot))
            .copied()
            .flatten()
    }

    /// Every attached peer (any shard's) and its slot.
    pub fn peers(&self) -> impl Iterator<Item = (u16, PublicKey)> + '_ {
        self.table
            .slot_peer
            .iter()
            .enumerate()
            // slot < SLOT_COUNT = 257
            .filter_map(|(slot, p)| Some((slot as u16, p.as_ref()?.0)))
    }

    /// Takes a switch slot for the peer `key` of this shard at `link`.
    pub fn attach(&mut self, link: SocketAddr, key: PublicKey) -> Result<(u16, Label), SlotError> {
        let attached = self.directory.attach(self.shard.index(), link, key)?;
        self.sync();
        Ok(attached)
    }

    /// Gives back the slot of the peer at `link`.
    pub fn detach(&mut self, slot: u16, link: SocketAddr) {
        self.directory.detach(slot, link);
        self.sync();
    }

    /// Whether any shard has a peer at `link`.
    pub fn has_link(&mut self, link: &SocketAddr) -> bool {
        self.sync();
        self.table.link_owner.contains_key(link)
    }

    /// The shard that owns the peer at `link`, if it is not this one.
    pub fn link_owner_elsewhere(&mut self, link: &SocketAddr) -> Option<u8> {
        if self.shard.is_single() {
            return None;
        }
        self.sync();
        self.table
            .link_owner
            .get(link)
            .copied()
            .filter(|&o| o != self.shard.index())
    }

    /// The shard that owns the peer in `slot`, if it is not this one.
    pub fn slot_owner_elsewhere(&self, slot: u16) -> Option<u8> {
        self.table
            .slot_owner
            .get(usize::from(slot))
            .copied()
            .flatten()
            .filter(|&o| o != self.shard.index())
    }
}

/// Messages and found paths waiting for one shard.
#[derive(Debug, Default)]
struct Outbox {
    transmits: VecDeque<(NodeRef, Vec<u8>)>,
    nodes: VecDeque<NodeRef>,
}

/// Called with a shard's index when something starts waiting for it.
pub type Wake = Box<dyn Fn(u8) + Send + Sync>;

struct Hub<P> {
    pathfinder: P,
    outboxes: Vec<Outbox>,
    spec: ShardSpec,
    wake: Option<Wake>,
}

impl<P> std::fmt::Debug for Hub<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("outboxes", &self.outboxes)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl<P: Pathfinder> Hub<P> {
    /// Moves what the pathfinder produced to the shards: a message to the shard that owns its
    /// destination, a found path to every shard (any of them may hold packets for it).
    fn route(&mut self, ready: &[AtomicBool]) {
        while let Some((node, message)) = self.pathfinder.poll_transmit() {
            let owner = self.spec.owner_of(&node.key.address());
            self.outboxes[usize::from(owner)]
                .transmits
                .push_back((node, message));
            self.mark_ready(ready, owner);
        }
        while let Some(node) = self.pathfinder.poll_node() {
            for shard in 0..self.spec.count {
                self.outboxes[usize::from(shard)].nodes.push_back(node);
                self.mark_ready(ready, shard);
            }
        }
    }

    fn mark_ready(&self, ready: &[AtomicBool], shard: u8) {
        let was = ready[usize::from(shard)].swap(true, Ordering::AcqRel);
        if !was {
            if let Some(wake) = &self.wake {
                wake(shard);
            }
        }
    }
}

/// One shard's handle on the pathfinder all shards share. Calls lock the shared pathfinder;
/// the per-packet polls first read an atomic flag and lock only when something waits.
#[derive(Debug)]
pub struct SharedPathfinder<P> {
    hub: Arc<Mutex<Hub<P>>>,
    ready: Arc<[AtomicBool]>,
    index: u8,
}

impl<P: Pathfinder> SharedPathfinder<P> {
    /// One handle per shard of a node with `count` shards, sharing `pathfinder`.
    pub fn group(pathfinder: P, count: u8) -> Vec<Self> {
        Self::group_with_wake(pathfinder, count, None)
    }

    /// [`SharedPathfinder::group`], calling `wake` with a shard's index whenever messages or
    /// paths start waiting for it (a driver wakes that shard's worker; the call is made with
    /// the pathfinder locked, so it must not block).
    pub fn group_with_wake(pathfinder: P, count: u8, wake: Option<Wake>) -> Vec<Self> {
        let count = count.clamp(1, MAX_SHARDS);
        let spec = ShardSpec { index: 0, count };
        let hub = Arc::new(Mutex::new(Hub {
            pathfinder,
            outboxes: (0..count).map(|_| Outbox::default()).collect(),
            spec,
            wake,
        }));
        let ready: Arc<[AtomicBool]> = (0..count).map(|_| AtomicBool::new(false)).collect();
        (0..count)
            .map(|index| Self {
                hub: hub.clone(),
                ready: ready.clone(),
                index,
            })
            .collect()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Hub<P>) -> T) -> T {
        let mut hub = self.hub.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut hub);
        hub.route(&self.ready);
        out
    }

    /// Runs `f` on the shared pathfinder (for admin and tests).
    pub fn inspect<T>(&self, f: impl FnOnce(&P) -> T) -> T {
        let hub = self.hub.lock().unwrap_or_else(PoisonError::into_inner);
        f(&hub.pathfinder)
    }

    /// Whether messages or found paths wait for this shard.
    pub fn has_output(&self) -> bool {
        self.ready[usize::from(self.index)].load(Ordering::Acquire)
    }

    fn take<T>(&mut self, pick: impl FnOnce(&mut Outbox) -> Option<T>) -> Option<T> {
        if !self.has_output() {
            return None;
        }
        let index = usize::from(self.index);
        let mut hub = self.hub.lock().unwrap_or_else(PoisonError::into_inner);
        let outbox = &mut hub.outboxes[index];
        let item = pick(outbox);
        if outbox.transmits.is_empty() && outbox.nodes.is_empty() {
            self.ready[index].store(false, Ordering::Release);
        }
        item
    }
}

impl<P: Pathfinder> Pathfinder for SharedPathfinder<P> {
    fn peer_up(&mut self, now: Instant, peer: NodeRef) {
        self.with(|h| h.pathfinder.peer_up(now, peer));
    }
    fn peer_down(&mut self, now: Instant, peer: NodeRef) {
        self.with(|h| h.pathfinder.peer_down(now, peer));
    }
    fn handle_message(&mut self, now: Instant, from: NodeRef, message: &[u8]) {
        self.with(|h| h.pathfinder.handle_message(now, from, message));
    }
    fn search(&mut self, now: Instant, target: Address) {
        self.with(|h| h.pathfinder.search(now, target));
    }
    fn ping(&mut self, now: Instant, node: NodeRef) {
        self.with(|h| h.pathfinder.ping(now, node));
    }
    fn handle_timeout(&mut self, now: Instant) {
        // Every shard calls this; the pathfinder acts on deadlines, so extra calls do nothing.
        self.with(|h| h.pathfinder.handle_timeout(now));
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.inspect(Pathfinder::poll_timeout)
    }
    fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)> {
        self.take(|o| o.transmits.pop_front())
    }
    fn poll_node(&mut self) -> Option<NodeRef> {
        self.take(|o| o.nodes.pop_front())
    }
    fn node_for(&self, address: &Address) -> Option<NodeRef> {
        self.inspect(|p| p.node_for(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pktmesh_switch::EncodingScheme;

    #[test]
    fn handle_ranges_do_not_overlap_and_name_their_shard() {
        let base = 77_777;
        for count in [1u8, 2, 3, 64] {
            for index in 0..count {
                let s = ShardSpec::new(index, count).unwrap();
                let first = s.first_handle(base);
                let last = first + MAX_SESSIONS as u32 - 1;
                assert_eq!(s.owner_of_handle(base, first), Some(index));
                assert_eq!(s.owner_of_handle(base, last), Some(index));
            }
            let s = ShardSpec::new(0, count).unwrap();
            let beyond = base + u32::from(count) * MAX_SESSIONS as u32;
            assert_eq!(s.owner_of_handle(base, beyond), None);
            assert_eq!(s.owner_of_handle(base, base - 1), None);
        }
        assert_eq!(ShardSpec::new(2, 2), None);
        assert_eq!(ShardSpec::new(0, MAX_SHARDS + 1), None);
    }

    #[test]
    fn cookies_carry_their_shard() {
        let s = ShardSpec::new(3, 5).unwrap();
        for r in [0u64, u64::MAX, 0x1234_5678_9abc_def0] {
            let c = s.mark_cookie(r);
            assert_eq!(s.owner_of_cookie(c), 3);
            assert_eq!(c & !0xff, r & !0xff);
        }
    }

    #[test]
    fn the_directory_allocates_slots_as_one_switch_would() {
        let dir = Directory::new(SwitchCore::new(EncodingScheme::v358()));
        let mut alone = SwitchCore::new(EncodingScheme::v358());
        let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:1".parse().unwrap();
        let (ka, kb) = (
            PublicKey::from_bytes([1; 32]),
            PublicKey::from_bytes([2; 32]),
        );
        let g0 = dir.generation();
        let (s0, l0) = dir.attach(0, a, ka).unwrap();
        let (s1, l1) = dir.attach(1, b, kb).unwrap();
        assert_eq!(alone.add_interface().unwrap(), (s0, l0));
        assert_eq!(alone.add_interface().unwrap(), (s1, l1));
        let (g1, table) = dir.snapshot();
        assert!(g1 > g0);
        assert_eq!(table.slot_owner[usize::from(s0)], Some(0));
        assert_eq!(table.slot_owner[usize::from(s1)], Some(1));
        assert_eq!(table.link_owner.get(&b), Some(&1));
        assert_eq!(table.slot_peer[usize::from(s1)], Some((kb, b)));
        dir.detach(s0, a);
        let (g2, table) = dir.snapshot();
        assert!(g2 > g1);
        assert_eq!(table.slot_owner[usize::from(s0)], None);
        assert!(!table.switch.has_interface(u32::from(s0)));
        assert!(!table.link_owner.contains_key(&a));
        assert_eq!(table.slot_peer[usize::from(s0)], None);
        // The freed slot is the next one given out.
        assert_eq!(dir.attach(1, a, ka).unwrap().0, s0);
    }
}
