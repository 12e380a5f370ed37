//! Egress ports: per-peer strict-priority queues paced at the link's capacity.
//!
//! A link with a configured capacity gets an [`EgressPort`]. A packet forwarded to that peer is
//! sent at once while the port's queue is empty and its pacing bucket is not in debt; otherwise
//! its plaintext (switch header onwards, not yet link-encrypted, so the link session's nonces stay
//! in order) is copied into one of the port's fixed buffers and queued in a
//! [`EgressScheduler`] at the priority the lease engine gave it. The node drains ports with
//! [`EgressPort::dequeue_into`] as the bucket refills. Packets are dropped only when the queue
//! is full, lowest priority first: fail open.
//!
//! # Priority never reorders a flow
//! Strict priority alone would send a lease's in-lease packets (level 48+) ahead of the same
//! lease's demoted excess (levels 1..=47) queued before them. Those packets were sealed by the
//! end-to-end session in order, and the receiver's replay window (about 64 nonces) drops the ones
//! that arrive too late: a lease made its holder *slower* (docs/leases.md §6). So the port
//! remembers, per flow, the level of the last packet it queued, and a newcomer of that flow is
//! queued no higher than that while the flow has packets waiting. Flows still overtake each
//! other by priority (a lease's traffic goes before free-tier traffic); a flow never overtakes
//! itself. A flow is the four bytes after the switch header (the end-to-end receive handle, or
//! the handshake stage), hashed into [`FLOW_BUCKETS`] buckets: two flows in one bucket only keep
//! each other's order, which costs priority, never correctness. The label is left out on
//! purpose: a session whose path changes (the route server's label for leased traffic replacing
//! the DHT's) keeps its handle, and must not overtake its own packets queued under the old label.
//!
//! Links without a capacity have no port and are never queued here (the kernel's socket buffer
//! is their queue). What lives elsewhere: classification (`pktmesh_lease_engine::LeaseEngine`),
//! encryption and the choice of what to send (`crate::core`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::PublicKey;
use pktmesh_lease_engine::{EgressScheduler, Enqueued, Nanos, Priority};

use crate::packet::PacketBuf;

/// Packets one port can hold.
pub const PORT_SLOTS: usize = 128;
/// Largest packet a port stores (a switch packet: cjdns MTU plus headers, with margin).
pub const SLOT_BYTES: usize = 2048;
/// The pacing bucket holds this much time's worth of bytes (and at least [`MIN_BURST`]).
pub const BURST: Duration = Duration::from_millis(5);
/// Smallest burst, bytes: two full-size packets.
pub const MIN_BURST: f64 = 3000.0;
/// Buckets of the per-flow order table of a port.
pub const FLOW_BUCKETS: usize = 256;

/// What the port knows of one flow bucket: packets waiting, and the level of the last one
/// queued (no later packet of the flow is queued higher while any wait).
#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    queued: u16,
    level: u8,
}

/// The flow bucket of a switch packet: FNV-1a over the 4 bytes after the switch header (the
/// end-to-end receive handle or handshake stage), not the label (see the module docs).
fn flow_bucket(packet: &[u8]) -> u8 {
    let key = packet.get(12..16).into_iter().flatten();
    let hash = key.fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    (hash ^ (hash >> 8) ^ (hash >> 16) ^ (hash >> 24)) as u8
}

/// How fast each peer link may send, kbit/s (`pktmesh.linkCapacityKbps`): one value for every
/// link, overridden per peer by its key (incoming peers) or its link address (the keys of
/// `connectTo`). A link with no capacity is not paced and has no port.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkCapacities {
    /// Every peer link without an entry of its own (`None`: not paced).
    pub default: Option<u32>,
    /// By the peer's link address.
    pub by_link: HashMap<SocketAddr, u32>,
    /// By the peer's key.
    pub by_key: HashMap<PublicKey, u32>,
}

impl LinkCapacities {
    /// The same capacity for every link (`None` or 0: none paced).
    pub fn uniform(kbps: Option<u32>) -> Self {
        Self {
            default: kbps.filter(|k| *k > 0),
            ..Self::default()
        }
    }

    /// The capacity of the link to peer `key` at `link`: its key's entry, else its address's,
    /// else the default; 0 means not paced.
    pub fn of(&self, key: &PublicKey, link: &SocketAddr) -> Option<u32> {
        self.by_key
            .get(key)
            .or_else(|| self.by_link.get(link))
            .copied()
            .or(self.default)
            .filter(|k| *k > 0)
    }

    /// Whether any link is paced.
    pub fn any(&self) -> bool {
        self.default.is_some()
            || self
                .by_link
                .values()
                .chain(self.by_key.values())
                .any(|k| *k > 0)
    }
}

/// Counters of one port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Link capacity, kbit/s.
    pub kbps: u32,
    /// Packets sent without waiting.
    pub sent_direct: u64,
    /// Packets sent from the queue.
    pub sent_queued: u64,
    /// Packets dropped because the queue was full (contention).
    pub dropped: u64,
    /// Dropped packets that were free tier.
    pub dropped_free: u64,
    /// Packets waiting now.
    pub queued: usize,
}

/// One paced, prioritised egress port.
#[derive(Debug)]
pub struct EgressPort {
    sched: EgressScheduler<u32>,
    buffers: Vec<Box<[u8]>>,
    lens: Vec<u16>,
    /// The flow bucket of the packet in each buffer.
    flow_of: Vec<u8>,
    flows: [Flow; FLOW_BUCKETS],
    free: Vec<u32>,
    bytes_per_ns: f64,
    depth: f64,
    tokens: f64,
    last: Instant,
    stats: PortStats,
}

impl EgressPort {
    /// A port for a link of `kbps` kbit/s, starting with a full bucket at `now`.
    pub fn new(kbps: u32, now: Instant) -> Self {
        let bytes_per_ns = f64::from(kbps.max(1)) * 1000.0 / 8.0 / 1e9;
        let depth = (bytes_per_ns * BURST.as_nanos() as f64).max(MIN_BURST);
        Self {
            sched: EgressScheduler::new(PORT_SLOTS),
            buffers: (0..=PORT_SLOTS)
                .map(|_| vec![0u8; SLOT_BYTES].into_boxed_slice())
                .collect(),
            lens: vec![0; PORT_SLOTS + 1],
            flow_of: vec![0; PORT_SLOTS + 1],
            flows: [Flow::default(); FLOW_BUCKETS],
            free: (0..=PORT_SLOTS as u32).rev().collect(),
            bytes_per_ns,
            depth,
            tokens: depth,
            last: now,
            stats: PortStats {
                kbps,
                ..PortStats::default()
            },
        }
    }

    fn refill(&mut self, now: Instant) {
        let ns = now.saturating_duration_since(self.last).as_nanos() as f64;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + ns * self.bytes_per_ns).min(self.depth);
    }

    /// Whether a packet of `len` bytes may go out now without queueing; if so its bytes are
    /// charged to the bucket.
    pub fn admit_now(&mut self, now: Instant, len: usize) -> bool {
        self.refill(now);
        if self.sched.is_empty() && self.tokens > 0.0 {
            self.tokens -= len as f64;
            self.stats.sent_direct += 1;
            true
        } else {
            false
        }
    }

    /// Charges `len` bytes sent past the queue (the node's own control packets).
    pub fn charge(&mut self, now: Instant, len: usize) {
        self.refill(now);
        self.tokens -= len as f64;
    }

    /// Queues a copy of `packet` at `priority`, or lower if packets of its flow queued earlier
    /// wait at a lower level (see the module docs). A packet too big for a slot is sent as free
    /// tier would be when the queue is full: dropped (it cannot be a valid switch packet).
    pub fn enqueue(&mut self, now: Instant, nanos: Nanos, priority: Priority, packet: &[u8]) {
        self.refill(now);
        if packet.len() > SLOT_BYTES {
            self.count_drop(priority);
            return;
        }
        // One buffer more than the scheduler holds: there is always a buffer for the newcomer,
        // and whichever packet the scheduler refuses or evicts gives its buffer back.
        let Some(slot) = self.free.pop() else {
            self.count_drop(priority);
            return;
        };
        self.store(slot, packet);
        let bucket = flow_bucket(packet);
        let flow = self.flows[usize::from(bucket)];
        let priority = if flow.queued > 0 {
            Priority::new(priority.level().min(flow.level)).unwrap_or(priority)
        } else {
            priority
        };
        self.flow_of[slot as usize] = bucket;
        match self
            .sched
            .enqueue(nanos, priority, packet.len() as u32, slot)
        {
            Enqueued::Queued => self.joined(bucket, priority),
            Enqueued::QueuedEvicting(d) => {
                self.count_drop(d.priority);
                self.release(d.token);
                self.joined(bucket, priority);
            }
            Enqueued::Dropped(d) => {
                self.count_drop(d.priority);
                self.free.push(d.token);
            }
        }
    }

    /// A packet of flow `bucket` was queued at `priority`.
    fn joined(&mut self, bucket: u8, priority: Priority) {
        let flow = &mut self.flows[usize::from(bucket)];
        flow.queued = flow.queued.saturating_add(1);
        flow.level = priority.level();
    }

    /// The packet in buffer `slot` left the queue (sent or evicted): its buffer is free again.
    fn release(&mut self, slot: u32) {
        let bucket = self.flow_of[slot as usize];
        let flow = &mut self.flows[usize::from(bucket)];
        flow.queued = flow.queued.saturating_sub(1);
        self.free.push(slot);
    }

    fn store(&mut self, slot: u32, packet: &[u8]) {
        let i = slot as usize;
        self.buffers[i][..packet.len()].copy_from_slice(packet);
        self.lens[i] = packet.len() as u16;
    }

    fn count_drop(&mut self, priority: Priority) {
        self.stats.dropped += 1;
        if priority == Priority::FREE {
            self.stats.dropped_free += 1;
        }
    }

    /// When the next queued packet may go, if any is queued.
    pub fn next_ready(&self) -> Option<Instant> {
        if self.sched.is_empty() {
            return None;
        }
        if self.tokens > 0.0 {
            return Some(self.last);
        }
        let wait_ns = (-self.tokens / self.bytes_per_ns).ceil() as u64 + 1;
        Some(self.last + Duration::from_nanos(wait_ns))
    }

    /// Moves the next packet the bucket allows into `out` (after its headroom).
    pub fn dequeue_into(&mut self, now: Instant, nanos: Nanos, out: &mut PacketBuf) -> bool {
        self.refill(now);
        if self.tokens <= 0.0 {
            return false;
        }
        let Some(d) = self.sched.dequeue(nanos) else {
            return false;
        };
        let i = d.token as usize;
        let len = usize::from(self.lens[i]);
        out.read_area()[..len].copy_from_slice(&self.buffers[i][..len]);
        out.set_read_len(len);
        self.release(d.token);
        self.tokens -= len as f64;
        self.stats.sent_queued += 1;
        true
    }

    /// The port's counters.
    pub fn stats(&self) -> PortStats {
        PortStats {
            queued: self.sched.len(),
            ..self.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(tag: u8, len: usize) -> Vec<u8> {
        vec![tag; len]
    }

    #[test]
    fn paces_at_the_link_rate() {
        let t0 = Instant::now();
        // 8 Mbit/s = 1,000,000 bytes/s: 1000 packets of 1000 bytes a second.
        let mut port = EgressPort::new(8_000, t0);
        let mut out = PacketBuf::new();
        let (mut sent, mut offered) = (0u32, 0u32);
        for ms in 0..1000u64 {
            let now = t0 + Duration::from_millis(ms);
            // Offer 3 packets a millisecond (3× the rate).
            for _ in 0..3 {
                offered += 1;
                if port.admit_now(now, 1000) {
                    sent += 1;
                } else {
                    port.enqueue(now, Nanos(ms * 1_000_000), Priority::FREE, &packet(1, 1000));
                }
            }
            while port.dequeue_into(now, Nanos(ms * 1_000_000), &mut out) {
                assert_eq!(out.len(), 1000);
                sent += 1;
            }
        }
        assert_eq!(offered, 3000);
        // 1 s at the rate plus the initial burst (5 ms, at least 3000 bytes).
        assert!((1000..=1010).contains(&sent), "sent {sent}");
        let stats = port.stats();
        assert!(
            stats.queued >= PORT_SLOTS - 1,
            "the queue stays full under overload"
        );
        assert_eq!(u64::from(sent), stats.sent_direct + stats.sent_queued);
        assert_eq!(stats.dropped, stats.dropped_free);
        assert_eq!(
            u64::from(offered) - u64::from(sent) - stats.queued as u64,
            stats.dropped
        );
    }

    #[test]
    fn contention_drops_the_lowest_priority_first() {
        let t0 = Instant::now();
        let mut port = EgressPort::new(1_000, t0);
        let mut out = PacketBuf::new();
        // Empty the bucket, then fill the queue with free-tier packets.
        while port.admit_now(t0, 1000) {}
        for _ in 0..PORT_SLOTS {
            port.enqueue(t0, Nanos(0), Priority::FREE, &packet(0, 500));
        }
        assert_eq!(
            port.stats().dropped,
            0,
            "nothing dropped until the queue is full"
        );
        // In-lease packets push free-tier ones out; more free tier is refused.
        for i in 0..10 {
            port.enqueue(t0, Nanos(0), Priority::in_lease(0), &packet(100 + i, 600));
        }
        port.enqueue(t0, Nanos(0), Priority::FREE, &packet(0, 500));
        let stats = port.stats();
        assert_eq!((stats.dropped, stats.dropped_free), (11, 11));
        assert_eq!(stats.queued, PORT_SLOTS);
        // The leased packets leave first, in order, with their bytes intact.
        let mut later = t0;
        for i in 0..10 {
            later += Duration::from_secs(1);
            assert!(port.dequeue_into(later, Nanos(1), &mut out));
            assert_eq!(out.data(), &packet(100 + i, 600)[..]);
        }
        later += Duration::from_secs(1);
        assert!(port.dequeue_into(later, Nanos(1), &mut out));
        assert_eq!(out.data(), &packet(0, 500)[..]);
        // An oversized packet is refused, never truncated.
        port.enqueue(later, Nanos(1), Priority::MAX, &packet(9, SLOT_BYTES + 1));
        assert_eq!(port.stats().dropped, 12);
    }

    /// A switch packet of flow `flow` (its handle) with sequence number `seq`.
    fn flow_packet(flow: u8, seq: u8) -> Vec<u8> {
        let mut p = vec![0u8; 200];
        p[7] = 0x13;
        p[12..16].copy_from_slice(&[0, 0, 1, flow]);
        p[20] = seq;
        p
    }

    #[test]
    fn priority_never_reorders_a_flow_but_flows_overtake_free_tier() {
        let t0 = Instant::now();
        let mut port = EgressPort::new(1_000, t0);
        let mut out = PacketBuf::new();
        while port.admit_now(t0, 1000) {}
        // Free tier first, then a lease's flow whose packets alternate between in-lease and
        // demoted excess, as the EMA rule makes them.
        port.enqueue(t0, Nanos(0), Priority::FREE, &flow_packet(9, 0));
        for seq in 0..20u8 {
            let level = if seq % 3 == 0 { 20 } else { 48 };
            let p = Priority::new(level).unwrap();
            port.enqueue(t0, Nanos(0), p, &flow_packet(1, seq));
        }
        // Another lease's flow, all in-lease, queued last.
        for seq in 0..3u8 {
            port.enqueue(t0, Nanos(0), Priority::in_lease(0), &flow_packet(2, seq));
        }
        let mut later = t0;
        let mut order = Vec::new();
        while {
            later += Duration::from_secs(1);
            port.dequeue_into(later, Nanos(1), &mut out)
        } {
            order.push((out.data()[15], out.data()[20]));
        }
        assert_eq!(order.len(), 24);
        for flow in [1, 2] {
            let seqs: Vec<u8> = order.iter().filter(|o| o.0 == flow).map(|o| o.1).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "flow {flow}: {seqs:?}"
            );
        }
        // The lease traffic still goes before the free-tier packet queued before it.
        assert_eq!(order.last(), Some(&(9, 0)));
        // Flow 2's first packet (in-lease, alone in its flow) overtakes flow 1's demoted tail.
        let first_of_2 = order.iter().position(|o| o.0 == 2).unwrap();
        let last_of_1 = order.iter().rposition(|o| o.0 == 1).unwrap();
        assert!(first_of_2 < last_of_1, "{order:?}");
    }

    #[test]
    fn a_session_whose_label_changes_does_not_overtake_itself() {
        let t0 = Instant::now();
        let mut port = EgressPort::new(1_000, t0);
        let mut out = PacketBuf::new();
        while port.admit_now(t0, 1000) {}
        // Demoted packets under the DHT's label, then in-lease ones under the route server's.
        for seq in 0..4u8 {
            port.enqueue(
                t0,
                Nanos(0),
                Priority::new(20).unwrap(),
                &flow_packet(1, seq),
            );
        }
        for seq in 4..8u8 {
            let mut p = flow_packet(1, seq);
            p[7] = 0x15;
            port.enqueue(t0, Nanos(0), Priority::in_lease(0), &p);
        }
        let mut later = t0;
        let mut seqs = Vec::new();
        while {
            later += Duration::from_secs(1);
            port.dequeue_into(later, Nanos(1), &mut out)
        } {
            seqs.push(out.data()[20]);
        }
        assert_eq!(seqs, (0..8).collect::<Vec<u8>>());
    }

    #[test]
    fn says_when_the_next_packet_may_go() {
        let t0 = Instant::now();
        let mut port = EgressPort::new(8_000, t0);
        assert_eq!(port.next_ready(), None);
        while port.admit_now(t0, 1000) {}
        port.enqueue(t0, Nanos(0), Priority::FREE, &packet(1, 1000));
        let ready = port.next_ready().expect("a packet waits");
        assert!(ready > t0 && ready <= t0 + Duration::from_millis(1) + Duration::from_micros(1));
        let mut out = PacketBuf::new();
        assert!(!port.dequeue_into(t0, Nanos(0), &mut out));
        assert!(port.dequeue_into(ready, Nanos(0), &mut out));
    }
}
