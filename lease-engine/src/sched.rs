//! The egress scheduler of one switch port: strict priority over 64 levels, FIFO within a level,
//! a fixed pool of packet slots, and lowest-priority-first drops.
//!
//! # Design
//! - Memory is bounded at construction: `capacity` slots of a few machine words each, plus 64
//!   head/tail indices. The scheduler holds the caller's `token` (e.g. a buffer index), never the
//!   packet bytes, so the driver's buffer pool bounds the bytes.
//! - Every operation is O(1): a 64-bit occupancy mask finds the highest non-empty level
//!   (`leading_zeros`) for [`EgressScheduler::dequeue`] and the lowest (`trailing_zeros`) for
//!   eviction; per-level FIFOs are singly linked lists through the slot array.
//! - When the pool is full, an arriving packet of priority `p` evicts the *oldest* packet of the
//!   lowest non-empty level `q` if `q < p`; otherwise the arriving packet is the one dropped. So
//!   drops only happen when the port is contended (the pool is full), and always hit the lowest
//!   priority present.
//!
//! Strict priority is the point: traffic within leases (levels 48..=63) is never delayed by
//! demoted excess (1..=47) or free-tier traffic (0); leases are sold so that in-lease traffic
//! fits the link, and the per-lease token buckets keep each lease's in-lease traffic to its rate.

use crate::priority::Priority;
use crate::Nanos;

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot<T> {
    next: u32,
    len: u32,
    priority: Priority,
    token: T,
}

/// A packet leaving the scheduler (dequeued or dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dequeued<T> {
    /// The caller's token.
    pub token: T,
    /// Its priority.
    pub priority: Priority,
    /// Its length in bytes.
    pub len: u32,
}

/// A dropped packet (same fields as [`Dequeued`]).
pub type Dropped<T> = Dequeued<T>;

/// Outcome of [`EgressScheduler::enqueue`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a dropped packet's buffer must be freed"]
pub enum Enqueued<T> {
    /// Queued; nothing dropped.
    Queued,
    /// Queued after evicting a lower-priority packet, which the caller must free.
    QueuedEvicting(Dropped<T>),
    /// Not queued: the pool is full of packets of at least its priority.
    Dropped(Dropped<T>),
}

/// Strict-priority egress queue of one port (see the module docs).
#[derive(Debug, Clone)]
pub struct EgressScheduler<T> {
    slots: Vec<Slot<T>>,
    free: u32,
    used: u32,
    heads: [u32; Priority::LEVELS],
    tails: [u32; Priority::LEVELS],
    occupied: u64,
    bytes: u64,
}

impl<T: Copy + Default> EgressScheduler<T> {
    /// A scheduler holding at most `capacity` packets (1 ..= 2³² − 2; 0 is raised to 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, (NIL - 1) as usize);
        let slots = (0..capacity)
            .map(|i| Slot {
                next: if i + 1 < capacity {
                    (i + 1) as u32
                } else {
                    NIL
                },
                len: 0,
                priority: Priority::FREE,
                token: T::default(),
            })
            .collect();
        Self {
            slots,
            free: 0,
            used: 0,
            heads: [NIL; Priority::LEVELS],
            tails: [NIL; Priority::LEVELS],
            occupied: 0,
            bytes: 0,
        }
    }
}

impl<T: Copy> EgressScheduler<T> {
    /// Packets queued.
    pub fn len(&self) -> usize {
        self.used as usize
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// Bytes queued.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Most packets it holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Whether packets are queued at `priority`'s level.
    pub fn has_level(&self, priority: Priority) -> bool {
        self.occupied & (1u64 << priority.level()) != 0
    }

    fn pop_level(&mut self, level: usize) -> Dequeued<T> {
        let i = self.heads[level];
        debug_assert_ne!(i, NIL, "occupancy mask out of sync");
        let slot = self.slots[i as usize];
        self.heads[level] = slot.next;
        if slot.next == NIL {
            self.tails[level] = NIL;
            self.occupied &= !(1u64 << level);
        }
        self.slots[i as usize].next = self.free;
        self.free = i;
        self.used -= 1;
        self.bytes -= u64::from(slot.len);
        Dequeued {
            token: slot.token,
            priority: slot.priority,
            len: slot.len,
        }
    }

    fn push(&mut self, priority: Priority, len: u32, token: T) {
        let i = self.free;
        let level = usize::from(priority.level());
        self.free = self.slots[i as usize].next;
        self.slots[i as usize] = Slot {
            next: NIL,
            len,
            priority,
            token,
        };
        match self.tails[level] {
            NIL => self.heads[level] = i,
            t => self.slots[t as usize].next = i,
        }
        self.tails[level] = i;
        self.occupied |= 1u64 << level;
        self.used += 1;
        self.bytes += u64::from(len);
    }

    /// Queues a packet; when full, drops the lowest-priority packet (possibly this one).
    ///
    /// `now` is unused by strict priority; it is part of the signature so that sojourn-time
    /// policies can be added without changing callers.
    #[inline]
    pub fn enqueue(&mut self, _now: Nanos, priority: Priority, len: u32, token: T) -> Enqueued<T> {
        if self.free != NIL {
            self.push(priority, len, token);
            return Enqueued::Queued;
        }
        let lowest = self.occupied.trailing_zeros() as usize;
        if lowest >= usize::from(priority.level()) {
            return Enqueued::Dropped(Dequeued {
                token,
                priority,
                len,
            });
        }
        let evicted = self.pop_level(lowest);
        self.push(priority, len, token);
        Enqueued::QueuedEvicting(evicted)
    }

    /// The next packet to send: the oldest of the highest non-empty level.
    #[inline]
    #[must_use = "a dequeued packet must be sent or freed"]
    pub fn dequeue(&mut self, _now: Nanos) -> Option<Dequeued<T>> {
        if self.occupied == 0 {
            return None;
        }
        let highest = 63 - self.occupied.leading_zeros() as usize;
        Some(self.pop_level(highest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(l: u8) -> Priority {
        Priority::new(l).unwrap()
    }

    #[test]
    fn strict_priority_fifo_within_level() {
        let mut s: EgressScheduler<u32> = EgressScheduler::new(8);
        let t = Nanos(0);
        for (tok, lvl) in [(1, 0), (2, 50), (3, 10), (4, 50), (5, 0)] {
            assert_eq!(s.enqueue(t, p(lvl), 100, tok), Enqueued::Queued);
        }
        assert_eq!(s.bytes(), 500);
        let order: Vec<u32> = std::iter::from_fn(|| s.dequeue(t))
            .map(|d| d.token)
            .collect();
        assert_eq!(order, [2, 4, 3, 1, 5]);
        assert!(s.is_empty() && s.bytes() == 0);
    }

    #[test]
    fn full_pool_drops_lowest_first() {
        let mut s: EgressScheduler<u32> = EgressScheduler::new(3);
        let t = Nanos(0);
        for (tok, lvl) in [(1, 5), (2, 0), (3, 0)] {
            assert_eq!(s.enqueue(t, p(lvl), 1, tok), Enqueued::Queued);
        }
        // Same level as the lowest queued: the arrival is dropped.
        assert!(matches!(s.enqueue(t, p(0), 1, 4), Enqueued::Dropped(d) if d.token == 4));
        // Higher: the oldest free-tier packet is evicted.
        assert!(matches!(s.enqueue(t, p(9), 1, 5), Enqueued::QueuedEvicting(d) if d.token == 2));
        assert!(matches!(s.enqueue(t, p(9), 1, 6), Enqueued::QueuedEvicting(d) if d.token == 3));
        assert!(matches!(s.enqueue(t, p(9), 1, 7), Enqueued::QueuedEvicting(d) if d.token == 1));
        assert!(matches!(s.enqueue(t, p(9), 1, 8), Enqueued::Dropped(d) if d.token == 8));
        let order: Vec<u32> = std::iter::from_fn(|| s.dequeue(t))
            .map(|d| d.token)
            .collect();
        assert_eq!(order, [5, 6, 7]);
    }

    #[test]
    fn random_operations_keep_invariants() {
        let mut s: EgressScheduler<u64> = EgressScheduler::new(17);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut live = 0usize;
        for i in 0..100_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 == 0 {
                if s.dequeue(Nanos(i)).is_some() {
                    live -= 1;
                }
            } else {
                match s.enqueue(Nanos(i), p((x >> 8) as u8 % 64), 1, i) {
                    Enqueued::Queued => live += 1,
                    Enqueued::QueuedEvicting(_) | Enqueued::Dropped(_) => {}
                }
            }
            assert_eq!(s.len(), live);
            assert!(s.len() <= s.capacity());
            assert_eq!(s.bytes(), live as u64);
        }
    }
}
