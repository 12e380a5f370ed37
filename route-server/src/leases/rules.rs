//! The rules that decide what a frame does to the book, each bounded by a per-link or per-lease
//! cap rather than the book's size:
//!
//! - **pairing** of orders and leases with one identity (buyer, link, start, end): leases by
//!   key, each takes the lowest unmatched order (by frame id) it is at least as fast as;
//! - **capacity**: the largest sum, at any moment of a span from `now` on, of the unreleased
//!   leases and pending orders on a link (a sweep over their starts and ends; a reservation
//!   ending when another starts does not overlap it);
//! - **configuration replay** of one lease id: for each lease with that id, its configuration
//!   frames in (sequence number, frame id) order, each applied when signed by the owner at that
//!   point with a sequence number above the last (one counter per lease, carried over a
//!   transfer, which also detaches the lease), as a node's `LeaseEngine` applies them (a node
//!   also refuses a signer's sequence number not above the last it accepted for that id on an
//!   earlier lease; the book does not model that);
//! - **networks**: each listed lease resolves to one of the owner's unreleased leases with that
//!   id, consecutive ones share a node, and one of the listed virtual switches of the owner at
//!   that node connects the one to the next.

use std::collections::{HashMap, HashSet};

use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::SigningKey;
use pktmesh_lease_engine::wire::Command;
use pktmesh_lease_engine::{LeaseId, UnixTime};

use super::book::LeaseBook;
use super::{BookError, Conflict, Holder, ItemId, LeaseKey, VirtualNetwork};

/// A pairing of one identity group: (lease, order) pairs, `None` where unpaired.
pub(super) type Pairing = Vec<(Option<LeaseKey>, Option<ItemId>)>;

/// The configured state of one lease after a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Configured {
    pub(super) owner: SigningKey,
    pub(super) network: u64,
    pub(super) classes: (u8, u8),
    pub(super) released: bool,
    pub(super) seq: u64,
}

/// What replaying the configuration of one lease id gives.
#[derive(Debug, Default)]
pub(super) struct Replay {
    pub(super) states: Vec<(LeaseKey, Configured, Vec<ItemId>)>,
    pub(super) effective: HashSet<ItemId>,
    pub(super) errors: HashMap<ItemId, BookError>,
}

impl LeaseBook {
    /// The pairing of the group (link, buyer, start, end), with an extra order or lease.
    pub(super) fn pair_group(
        &self,
        link: &(Address, Address),
        buyer: &SigningKey,
        start: UnixTime,
        end: UnixTime,
        extra_order: Option<(ItemId, u32)>,
        extra_lease: Option<(LeaseKey, u32)>,
    ) -> Pairing {
        let mut orders: Vec<(ItemId, u32)> = self
            .orders_on_link(link)
            .filter(|(_, o)| {
                o.order.buyer == *buyer && o.order.start == start && o.order.end == end
            })
            .map(|(id, o)| (*id, o.order.kbps))
            .chain(extra_order)
            .collect();
        orders.sort();
        let mut leases: Vec<(LeaseKey, u32)> = self
            .leases_on_link(link)
            .filter(|l| l.lease.owner == *buyer && l.lease.start == start && l.lease.end == end)
            .map(|l| (l.key(), l.lease.kbps))
            .chain(extra_lease)
            .collect();
        leases.sort();
        let mut taken = vec![false; orders.len()];
        let mut out: Pairing = Vec::new();
        for (key, kbps) in leases {
            let pick = (0..orders.len()).find(|&i| !taken[i] && orders[i].1 <= kbps);
            if let Some(i) = pick {
                taken[i] = true;
            }
            out.push((Some(key), pick.map(|i| orders[i].0)));
        }
        for (i, (id, _)) in orders.iter().enumerate() {
            if !taken[i] {
                out.push((None, Some(*id)));
            }
        }
        out
    }

    /// Makes the book's matches those of `pairing` (every member must be held).
    pub(super) fn apply_pairing(&mut self, pairing: &Pairing) {
        for (lease, order) in pairing {
            if let Some(o) = order {
                let now_matched = *lease;
                let before = self.orders.get(o).map(|s| s.matched);
                match (before, now_matched) {
                    (Some(None), Some(_)) => {
                        self.set_pending(o, false);
                        if let Some(s) = self.orders.get_mut(o) {
                            s.matched = now_matched;
                        }
                    }
                    (Some(Some(_)), None) => {
                        if let Some(s) = self.orders.get_mut(o) {
                            s.matched = None;
                        }
                        self.set_pending(o, true);
                    }
                    (Some(_), _) => {
                        if let Some(s) = self.orders.get_mut(o) {
                            s.matched = now_matched;
                        }
                    }
                    (None, _) => {}
                }
            }
            if let Some(l) = lease.and_then(|k| self.leases.get_mut(&k)) {
                l.order = *order;
            }
        }
    }

    /// Refuses a reservation of `kbps` on `link` during `[start, end)` that would make the
    /// reservations there exceed `capacity` at some moment from `now` on. `freed` orders are
    /// left out (a new lease takes them over).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_capacity(
        &self,
        link: &(Address, Address),
        now: UnixTime,
        start: UnixTime,
        end: UnixTime,
        kbps: u32,
        capacity: u32,
        freed: &[ItemId],
    ) -> Result<(), BookError> {
        let lo = start.max(now);
        if lo >= end {
            return Ok(());
        }
        let overlaps = |s: UnixTime, e: UnixTime| s < end && lo < e;
        let mut held: Vec<Conflict> = self
            .leases_on_link(link)
            .filter(|l| !l.released && overlaps(l.lease.start, l.lease.end))
            .map(|l| Conflict {
                holder: Holder::Lease(l.key()),
                kbps: l.lease.kbps,
                start: l.lease.start,
                end: l.lease.end,
            })
            .collect();
        held.extend(
            self.orders_on_link(link)
                .filter(|(id, o)| {
                    o.matched.is_none()
                        && !freed.contains(id)
                        && now < o.order.end
                        && overlaps(o.order.start, o.order.end)
                })
                .map(|(id, o)| Conflict {
                    holder: Holder::Order(*id),
                    kbps: o.order.kbps,
                    start: o.order.start,
                    end: o.order.end,
                }),
        );
        // Sweep: ends before starts at the same moment (adjacent spans do not overlap).
        let mut events: Vec<(UnixTime, i64)> = Vec::with_capacity(2 * held.len());
        for c in &held {
            events.push((c.start.max(lo), i64::from(c.kbps)));
            events.push((c.end, -i64::from(c.kbps)));
        }
        events.sort();
        let (mut sum, mut peak, mut at) = (0i64, 0i64, lo);
        for (t, d) in events {
            sum += d;
            if t < end && sum > peak {
                peak = sum;
                at = t;
            }
        }
        let total = peak as u64 + u64::from(kbps);
        if total <= u64::from(capacity) {
            return Ok(());
        }
        held.retain(|c| c.start <= at && at < c.end);
        Err(BookError::OverCapacity {
            capacity_kbps: capacity,
            requested_kbps: kbps,
            peak_kbps: total,
            conflicts: held,
        })
    }

    /// Replays the configuration of every lease with id `target` (not applied).
    pub(super) fn replay_id(&self, target: &LeaseId) -> Replay {
        let mut out = Replay::default();
        for key in self.keys_with_id(target) {
            let (owner, vswitch) = match (self.leases.get(&key), self.vswitches.get(&key)) {
                (Some(l), _) => (l.lease.owner, false),
                (None, Some(v)) => (v.lease.owner, true),
                (None, None) => continue,
            };
            let mut st = Configured {
                owner,
                network: 0,
                classes: (0, 15),
                released: false,
                seq: 0,
            };
            let mut applied = Vec::new();
            for ((_, seq, fid), c) in self
                .configs
                .range((*target, 0, [0; 32])..=(*target, u64::MAX, [0xff; 32]))
            {
                if c.signer != st.owner {
                    out.errors
                        .entry(*fid)
                        .or_insert(BookError::WrongOwner(*target));
                    continue;
                }
                let refusal = if *seq <= st.seq {
                    Some(BookError::Replayed)
                } else if vswitch && matches!(c.command, Command::SetClasses { .. }) {
                    Some(BookError::NotApplicable(*target))
                } else {
                    None
                };
                if let Some(e) = refusal {
                    // The owner's refusal says more than another lease's "not owned".
                    out.errors.insert(*fid, e);
                    continue;
                }
                match c.command {
                    Command::Attach { network } => st.network = network,
                    Command::SetClasses {
                        default_class,
                        max_class,
                    } => st.classes = (default_class, max_class),
                    Command::Release => st.released = true,
                    Command::Transfer { new_owner } => {
                        // A transfer detaches, as at a node: the new owner attaches it.
                        st.owner = new_owner;
                        st.network = 0;
                        st.classes = (0, 15);
                    }
                }
                st.seq = *seq;
                applied.push(*fid);
                out.effective.insert(*fid);
            }
            out.states.push((key, st, applied));
        }
        out
    }

    /// The current networks a replay would break (a lease in one released or transferred).
    pub(super) fn networks_broken_by(&self, replay: &Replay) -> Vec<(SigningKey, u64)> {
        let mut out = Vec::new();
        for (key, st, _) in &replay.states {
            let (owner, released) = match (self.leases.get(key), self.vswitches.get(key)) {
                (Some(l), _) => (l.owner, l.released),
                (None, Some(v)) => (v.owner, v.released),
                (None, None) => continue,
            };
            if owner == st.owner && released == st.released {
                continue;
            }
            out.extend(
                self.in_networks
                    .range(
                        (*key, SigningKey([0; 32]), 0)..=(*key, SigningKey([0xff; 32]), u64::MAX),
                    )
                    .map(|(_, o, n)| (*o, *n)),
            );
        }
        out.sort();
        out.dedup();
        out
    }

    /// Applies a replay's states (owners, networks, classes, flags, effective frames).
    pub(super) fn apply_replay(&mut self, replay: Replay) {
        for (key, st, applied) in replay.states {
            let old_owner = if let Some(l) = self.leases.get_mut(&key) {
                let old = l.owner;
                l.owner = st.owner;
                l.network = st.network;
                l.classes = st.classes;
                l.released = st.released;
                l.seq = st.seq;
                l.configs = applied;
                old
            } else if let Some(v) = self.vswitches.get_mut(&key) {
                let old = v.owner;
                v.owner = st.owner;
                v.network = st.network;
                v.released = st.released;
                v.seq = st.seq;
                v.configs = applied;
                old
            } else {
                continue;
            };
            if old_owner != st.owner {
                self.by_owner.remove(&(old_owner, key));
                self.by_owner.insert((st.owner, key));
            }
        }
    }

    /// Re-derives the configuration of leases with `target` after one was added or removed;
    /// configuration that no longer takes effect anywhere is evicted.
    pub(super) fn settle_configs(&mut self, target: LeaseId) {
        let replay = self.replay_id(&target);
        let stale: Vec<ItemId> = self
            .config_range(&target)
            .filter(|(_, _, f)| !replay.effective.contains(f))
            .map(|(_, _, f)| f)
            .collect();
        for net in self.networks_broken_by(&replay) {
            if let Some(frame) = self.networks.get(&net).map(|n| n.frame) {
                self.remove_frame(&frame, false);
                self.stats.evicted += 1;
            }
        }
        self.apply_replay(replay);
        for f in stale {
            self.remove_frame(&f, false);
            self.stats.evicted += 1;
        }
    }

    /// Checks a network against the leases as configured (`now`: also that they are live);
    /// returns the leases and virtual switches it uses.
    pub(super) fn check_network(
        &self,
        now: Option<UnixTime>,
        n: &VirtualNetwork,
    ) -> Result<Vec<LeaseKey>, BookError> {
        let live = |end: UnixTime| now.is_none_or(|t| t < end);
        // Per position: (lease key, index of the previous position's choice, virtual switch).
        let mut layers: Vec<Vec<(LeaseKey, usize, Option<LeaseKey>)>> = Vec::new();
        for (i, lid) in n.leases.iter().enumerate() {
            let all: Vec<_> = self.leases_with_id(lid).collect();
            if all.is_empty() {
                return Err(BookError::UnknownLease(*lid));
            }
            let owned: Vec<_> = all
                .iter()
                .filter(|l| l.owner == n.owner && !l.released)
                .collect();
            if owned.is_empty() {
                return Err(BookError::WrongOwner(*lid));
            }
            let cands: Vec<_> = owned.into_iter().filter(|l| live(l.lease.end)).collect();
            if cands.is_empty() {
                return Err(BookError::Expired(*lid));
            }
            if i == 0 {
                layers.push(cands.iter().map(|l| (l.key(), 0, None)).collect());
                continue;
            }
            let prev_id = n.leases[i - 1];
            let mut layer = Vec::new();
            let mut chained = false;
            for c in &cands {
                for (pi, (pk, _, _)) in layers[i - 1].iter().enumerate() {
                    let Some(p) = self.leases.get(pk) else {
                        continue;
                    };
                    if p.to != c.from {
                        continue;
                    }
                    chained = true;
                    if let Some(vs) = self.knit(n, &live, p.lease.id, c.lease.id, &c.from) {
                        layer.push((c.key(), pi, Some(vs)));
                        break;
                    }
                }
            }
            if layer.is_empty() {
                return Err(if chained {
                    BookError::NoVirtualSwitch(prev_id, *lid)
                } else {
                    BookError::NotAChain(prev_id, *lid)
                });
            }
            layers.push(layer);
        }
        let mut uses = Vec::new();
        let mut at = 0;
        for layer in layers.iter().rev() {
            let (key, prev, vs) = layer[at];
            uses.push(key);
            uses.extend(vs);
            at = prev;
        }
        uses.sort();
        uses.dedup();
        Ok(uses)
    }

    /// One of the network's virtual switches of its owner at `node` connecting `inn` to `out`.
    fn knit(
        &self,
        n: &VirtualNetwork,
        live: &dyn Fn(UnixTime) -> bool,
        inn: LeaseId,
        out: LeaseId,
        node: &Address,
    ) -> Option<LeaseKey> {
        n.vswitches.iter().find_map(|vid| {
            self.keys_with_id(vid).into_iter().find(|k| {
                self.vswitches.get(k).is_some_and(|vs| {
                    vs.owner == n.owner
                        && !vs.released
                        && live(vs.lease.end)
                        && vs.node == *node
                        && vs.lease.ins.contains(&inn)
                        && vs.lease.outs.contains(&out)
                })
            })
        })
    }
}
