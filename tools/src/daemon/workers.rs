//! The workers: one thread per shard of the node, each with its own poll loop, its own socket
//! on every UDP bind and its own TUN queue, and the hand-offs between them — a packet that
//! needs another shard is run through that shard after the round (or left in its inbox when
//! it is busy), and what it caused is sent before the shard is unlocked, so a session's
//! packets always leave in the order they were sealed.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::{Events, Poll, Token, Waker};
use pktmesh_node::core::{Handoff, Node, Pathfinder};
use pktmesh_node::offload::Coalescer;
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::shard::SharedPathfinder;
use tracing::warn;

use super::chores::log_events;
use super::sinks::{Io, Links, Sinks, TunOffloadBuffers, TunOut};
use super::tun::Tun;
use super::{eth, udp, ETH_BASE, MAX_HANDOFFS, MAX_HANDOFF_PASSES, MAX_WAIT, TUN};

/// Sets the shutdown flag when dropped, so every worker ends when one does.
pub(super) struct StopOnExit<'a>(pub(super) &'a AtomicBool);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A node core of one shard.
pub(super) type ShardNode<P> = Node<SharedPathfinder<P>>;

/// A shard of the node as the workers share it: its core, the packets other workers left for
/// it because they found it busy, and how to wake its worker.
pub(super) struct Shard<P> {
    pub(super) node: Mutex<ShardNode<P>>,
    pub(super) inbox: Mutex<Handoffs>,
    pub(super) waker: Arc<Waker>,
}

/// Locks a shard's core. A worker that panicked while holding one has ended the daemon (its
/// thread's result is checked), so a poisoned lock is taken as it is.
pub(super) fn lock<P>(shard: &Shard<P>) -> MutexGuard<'_, ShardNode<P>> {
    shard.node.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Packets on their way to a shard, copied into one reused byte arena: what a worker's round
/// handed off, and a shard's inbox. Once grown to the traffic it allocates nothing.
#[derive(Default)]
pub(super) struct Handoffs {
    pub(super) items: Vec<(Handoff, std::ops::Range<usize>)>,
    pub(super) bytes: Vec<u8>,
}

impl Handoffs {
    pub(super) fn lock(inbox: &Mutex<Handoffs>) -> MutexGuard<'_, Handoffs> {
        inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a copy of `data`; false when [`MAX_HANDOFFS`] already wait.
    pub(super) fn push(&mut self, handoff: Handoff, data: &[u8]) -> bool {
        if self.items.len() >= MAX_HANDOFFS {
            return false;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.items.push((handoff, start..self.bytes.len()));
        true
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.bytes.clear();
    }

    /// The packets for `shard`, in order.
    pub(super) fn for_shard(&self, shard: usize) -> impl Iterator<Item = (Handoff, &[u8])> {
        self.items
            .iter()
            .filter(move |(h, _)| usize::from(h.shard) == shard)
            .filter_map(|(h, r)| Some((*h, self.bytes.get(r.clone())?)))
    }
}

/// Runs `packets` (handed to `node`'s shard) through it and does what it answers.
pub(super) fn run_handed<'p, P: Pathfinder>(
    node: &mut ShardNode<P>,
    packets: impl Iterator<Item = (Handoff, &'p [u8])>,
    buf: &mut PacketBuf,
    sinks: &mut Sinks<'_>,
) {
    let now = Instant::now();
    for (h, data) in packets {
        buf.load(data);
        let out = node.handle_handoff(now, h.stage, buf);
        sinks.emit(out, buf.data());
    }
}

/// Calls `f` with every shard: `held` (shard 0, locked by the caller) and the others, locked
/// in ascending order (the one order any thread takes two shard locks in).
pub(super) fn with_all_shards<P: Pathfinder, T>(
    held: &mut ShardNode<P>,
    shards: &[Shard<P>],
    f: impl FnOnce(&mut [&mut ShardNode<P>]) -> T,
) -> T {
    let mut guards: Vec<MutexGuard<'_, ShardNode<P>>> = shards.iter().skip(1).map(lock).collect();
    let mut all: Vec<&mut ShardNode<P>> = Vec::with_capacity(shards.len());
    all.push(held);
    all.extend(guards.iter_mut().map(|g| &mut **g));
    f(&mut all)
}

/// One worker: its sockets and TUN queue, and the shard it owns.
pub(super) struct Worker<'a, P> {
    pub(super) index: usize,
    pub(super) shards: &'a [Shard<P>],
    pub(super) io: Io<'a>,
    pub(super) buf: PacketBuf,
    /// Handoffs being taken to their shards.
    pub(super) batch: Handoffs,
    /// What other workers left for this worker's shard, taken out of its inbox.
    pub(super) inbox: Handoffs,
    /// Hand every packet for another shard to its inbox, even when the shard is free (a test
    /// switch, `PKTMESH_HANDOFFS_VIA_INBOX`).
    pub(super) via_inbox: bool,
    pub(super) tun_pending: bool,
    pub(super) socket_pending: Vec<bool>,
    pub(super) eth_pending: Vec<bool>,
    /// Dropped handoffs already logged, and when.
    pub(super) drops_reported: u64,
    pub(super) last_drop_report: Option<Instant>,
}

impl<'a, P: Pathfinder> Worker<'a, P> {
    pub(super) fn new(
        index: usize,
        shards: &'a [Shard<P>],
        links: Links,
        tun: Option<&'a Tun>,
        via_inbox: bool,
    ) -> Self {
        let sockets = links.udp.len();
        let eth = links.eth.len();
        Self {
            index,
            shards,
            io: Io {
                sinks: Sinks {
                    links,
                    tun_out: TunOut {
                        tun,
                        coalescer: tun
                            .filter(|t| t.offload())
                            .map(|t| Coalescer::new(t.udp_offload())),
                        writes: 0,
                    },
                    handoffs: Handoffs::default(),
                    dropped: 0,
                },
                eth_rx: eth::EthRxBatch::new(),
                rx: udp::RxBatch::new(),
                tun_offload: tun.is_some_and(Tun::offload).then(TunOffloadBuffers::new),
                eth_beacons: Vec::new(),
            },
            buf: PacketBuf::new(),
            batch: Handoffs::default(),
            inbox: Handoffs::default(),
            via_inbox,
            tun_pending: false,
            socket_pending: vec![false; sockets],
            eth_pending: vec![false; eth],
            drops_reported: 0,
            last_drop_report: None,
        }
    }

    /// Sources with unread data are served again at once (mio is edge-triggered).
    pub(super) fn busy(&self) -> bool {
        self.tun_pending
            || self
                .socket_pending
                .iter()
                .chain(&self.eth_pending)
                .any(|&p| p)
    }

    /// Notes what a poll event made ready; false for tokens that are not the data path's.
    pub(super) fn note_event(&mut self, token: Token) -> bool {
        match token {
            TUN => self.tun_pending = true,
            Token(i) if i > ETH_BASE - self.eth_pending.len() && i <= ETH_BASE => {
                if let Some(p) = self.eth_pending.get_mut(ETH_BASE - i) {
                    *p = true;
                }
            }
            Token(i) => match self.socket_pending.get_mut(i) {
                Some(p) => *p = true,
                None => return false,
            },
        }
        true
    }

    /// One round on the worker's own shard: a batch from each ready source, paced egress,
    /// timers, and everything it queued sent.
    pub(super) fn round(&mut self, node: &mut ShardNode<P>) {
        self.take_inbox(node);
        // One batch from each ready source per round, so neither direction starves the other.
        if self.tun_pending {
            self.tun_pending = self.io.drain_tun(node, &mut self.buf);
        }
        for (i, pending) in self.socket_pending.iter_mut().enumerate() {
            if *pending {
                *pending = self.io.drain_socket(node, &mut self.buf, i);
            }
        }
        for (i, pending) in self.eth_pending.iter_mut().enumerate() {
            if *pending {
                *pending = self.io.drain_eth(node, &mut self.buf, i);
            }
        }
        let now = Instant::now();
        self.io.drain_egress(node, &mut self.buf, now);
        if now >= node.poll_timeout() || node.pathfinder().has_output() {
            node.handle_timeout(now);
        }
        self.io.flush(node);
        log_events(node);
    }

    /// Runs through the worker's own shard what other workers left in its inbox.
    pub(super) fn take_inbox(&mut self, node: &mut ShardNode<P>) {
        {
            let mut inbox = Handoffs::lock(&self.shards[self.index].inbox);
            if inbox.is_empty() {
                return;
            }
            std::mem::swap(&mut *inbox, &mut self.inbox);
        }
        let packets = self.inbox.for_shard(self.index);
        run_handed(node, packets, &mut self.buf, &mut self.io.sinks);
        self.inbox.clear();
    }

    /// Takes the packets handed off during the round to their shards, and reports (at most once
    /// a second) those dropped because too many waited.
    pub(super) fn run_handoffs(&mut self) {
        self.pass_handoffs();
        let dropped = self.io.sinks.dropped;
        if dropped > self.drops_reported {
            let now = Instant::now();
            let due = self
                .last_drop_report
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
            if due {
                warn!(
                    worker = self.index,
                    dropped = dropped - self.drops_reported,
                    "packets for other shards dropped: the handoff queue was full"
                );
                self.drops_reported = dropped;
                self.last_drop_report = Some(now);
            }
        }
    }

    /// Runs the waiting handoffs through their shards, each under its shard's lock, and sends
    /// what they cause before letting go of the lock: so what a shard seals for a session
    /// leaves in nonce order whichever worker sealed it. A shard that is busy (its own worker,
    /// or another, is in it) is not waited for: its packets go to its inbox and its worker is
    /// woken, so no worker ever sleeps on another's lock.
    pub(super) fn pass_handoffs(&mut self) {
        for _ in 0..MAX_HANDOFF_PASSES {
            if self.io.sinks.handoffs.is_empty() {
                return;
            }
            std::mem::swap(&mut self.batch, &mut self.io.sinks.handoffs);
            for (s, shard) in self.shards.iter().enumerate() {
                if self.batch.for_shard(s).next().is_none() {
                    continue;
                }
                let attempt = if self.via_inbox {
                    Err(TryLockError::WouldBlock)
                } else {
                    shard.node.try_lock()
                };
                let mut node = match attempt {
                    Ok(node) => node,
                    Err(TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(TryLockError::WouldBlock) => {
                        let mut inbox = Handoffs::lock(&shard.inbox);
                        let was_empty = inbox.is_empty();
                        for (h, data) in self.batch.for_shard(s) {
                            if !inbox.push(h, data) {
                                self.io.sinks.dropped += 1;
                            }
                        }
                        drop(inbox);
                        if was_empty {
                            let _ = shard.waker.wake();
                        }
                        continue;
                    }
                };
                // What waits in the shard's inbox was handed over before this batch: it goes
                // first, or a session's packets would leave (and arrive) out of order and the
                // receiver's replay window would drop them.
                {
                    let mut inbox = Handoffs::lock(&shard.inbox);
                    if !inbox.is_empty() {
                        std::mem::swap(&mut *inbox, &mut self.inbox);
                    }
                }
                if !self.inbox.is_empty() {
                    let waiting = self.inbox.for_shard(s);
                    run_handed(&mut node, waiting, &mut self.buf, &mut self.io.sinks);
                    self.inbox.clear();
                }
                let packets = self.batch.for_shard(s);
                run_handed(&mut node, packets, &mut self.buf, &mut self.io.sinks);
                self.io.flush(&mut node);
                log_events(&mut node);
            }
            self.batch.clear();
        }
        // Only a packet passed back and forth (a table changing under it) gets here.
        self.io.sinks.dropped += self.io.sinks.handoffs.len() as u64;
        self.io.sinks.handoffs.clear();
    }

    /// The loop of a worker other than the first: its sockets and TUN queue only.
    pub(super) fn run(mut self, mut poll: Poll, shutdown: &AtomicBool) -> Result<()> {
        let mut events = Events::with_capacity(256);
        let shard = &self.shards[self.index];
        while !shutdown.load(Ordering::Relaxed) {
            let wait = if self.busy() {
                Duration::ZERO
            } else {
                lock(shard)
                    .poll_timeout()
                    .saturating_duration_since(Instant::now())
                    .min(MAX_WAIT)
            };
            match poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("poll"),
            }
            for event in events.iter() {
                self.note_event(event.token());
            }
            {
                let mut node = lock(shard);
                self.round(&mut node);
            }
            self.run_handoffs();
        }
        Ok(())
    }
}
