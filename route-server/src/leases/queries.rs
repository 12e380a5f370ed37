//! What the lease book answers: lists and pages, one node's frames, leased links, the gossip
//! buckets. Every query reads an index; none walks the whole book except [`LeaseBook::digest`]
//! and [`LeaseBook::frames`].

use std::sync::Arc;

use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::SigningKey;
use pktmesh_lease_engine::wire::Command;
use pktmesh_lease_engine::{LeaseId, UnixTime};
use sha2::{Digest, Sha512};

use super::book::{HeldKind, LeaseBook, MAX_ADDR, MAX_ID, MAX_KEY, MIN_ADDR, MIN_ID, MIN_KEY};
use super::{ItemId, LeaseKey, LeaseState, OrderState, VirtualNetwork, VirtualSwitchState};

impl LeaseBook {
    /// Number of frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the book holds nothing.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Every frame held, by id.
    pub fn frames(&self) -> impl Iterator<Item = (&ItemId, &Arc<[u8]>)> {
        self.frames.iter().map(|(id, h)| (id, &h.bytes))
    }

    /// One frame.
    pub fn frame(&self, id: &ItemId) -> Option<&Arc<[u8]>> {
        self.frames.get(id).map(|h| &h.bytes)
    }

    /// Whether the frame with this id is held.
    pub fn contains(&self, id: &ItemId) -> bool {
        self.frames.contains_key(id)
    }

    /// Whether the frame is held or was held and pruned or evicted lately (gossip need not
    /// fetch it).
    pub fn knows(&self, id: &ItemId) -> bool {
        self.frames.contains_key(id) || self.tombstones.contains(id)
    }

    /// The ids held whose first byte is `bucket`, in order.
    pub fn bucket_ids(&self, bucket: u8) -> impl Iterator<Item = &ItemId> {
        let lo = {
            let mut a = [0u8; 32];
            a[0] = bucket;
            a
        };
        let hi = {
            let mut a = [0xffu8; 32];
            a[0] = bucket;
            a
        };
        self.frames.range(lo..=hi).map(|(id, _)| id)
    }

    /// A 16-byte digest of the ids in `bucket` (cached until the bucket changes).
    pub fn bucket_digest(&mut self, bucket: u8) -> [u8; 16] {
        if let Some(d) = self.buckets[usize::from(bucket)] {
            return d;
        }
        let d = crate::gossip::digest_ids(self.bucket_ids(bucket));
        self.buckets[usize::from(bucket)] = Some(d);
        d
    }

    /// A digest of the set of frames (equal digests: equal books). O(n).
    pub fn digest(&self) -> [u8; 64] {
        let mut h = Sha512::new();
        for id in self.frames.keys() {
            h.update(id);
        }
        h.finalize().into()
    }

    /// Bandwidth leases, by (issuer, id).
    pub fn leases(&self) -> impl Iterator<Item = &LeaseState> {
        self.leases.values()
    }

    /// One lease.
    pub fn lease(&self, key: &LeaseKey) -> Option<&LeaseState> {
        self.leases.get(key)
    }

    /// The bandwidth leases with this id (one per issuer).
    pub fn leases_with_id(&self, id: &LeaseId) -> impl Iterator<Item = &LeaseState> {
        self.ids
            .range((*id, MIN_KEY)..=(*id, MAX_KEY))
            .filter_map(|(i, k)| self.leases.get(&(*k, *i)))
    }

    /// Virtual-switch leases, by (issuer, id).
    pub fn vswitches(&self) -> impl Iterator<Item = &VirtualSwitchState> {
        self.vswitches.values()
    }

    /// One virtual-switch lease.
    pub fn vswitch(&self, key: &LeaseKey) -> Option<&VirtualSwitchState> {
        self.vswitches.get(key)
    }

    /// Up to `limit` leases and virtual switches after `after`, by key.
    pub fn leases_page(
        &self,
        after: Option<LeaseKey>,
        limit: usize,
    ) -> (Vec<&LeaseState>, Vec<&VirtualSwitchState>, Option<LeaseKey>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let lo = after.map_or(Unbounded, Excluded);
        let mut l = self.leases.range((lo, Unbounded)).peekable();
        let mut v = self.vswitches.range((lo, Unbounded)).peekable();
        let (mut ls, mut vs, mut last) = (Vec::new(), Vec::new(), None);
        for _ in 0..limit {
            let take_lease = match (l.peek(), v.peek()) {
                (Some((a, _)), Some((b, _))) => a < b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return (ls, vs, None),
            };
            if take_lease {
                if let Some((k, s)) = l.next() {
                    ls.push(s);
                    last = Some(*k);
                }
            } else if let Some((k, s)) = v.next() {
                vs.push(s);
                last = Some(*k);
            }
        }
        let more = l.peek().is_some() || v.peek().is_some();
        (ls, vs, last.filter(|_| more))
    }

    /// Orders, by frame id.
    pub fn orders(&self) -> impl Iterator<Item = (&ItemId, &OrderState)> {
        self.orders.iter()
    }

    /// One order.
    pub fn order(&self, id: &ItemId) -> Option<&OrderState> {
        self.orders.get(id)
    }

    /// Up to `limit` orders after `after`, by id; and the cursor of the next page.
    pub fn orders_page(
        &self,
        after: Option<ItemId>,
        limit: usize,
    ) -> (Vec<(&ItemId, &OrderState)>, Option<ItemId>) {
        use std::ops::Bound::{Excluded, Unbounded};
        let lo = after.map_or(Unbounded, Excluded);
        page(self.orders.range((lo, Unbounded)), limit)
    }

    /// `buyer`'s orders after `after`, by id, at most `limit`; and the cursor of the next page.
    pub fn orders_of(
        &self,
        buyer: &SigningKey,
        after: Option<ItemId>,
        limit: usize,
    ) -> (Vec<(&ItemId, &OrderState)>, Option<ItemId>) {
        let lo = after.unwrap_or([0; 32]);
        let it = self
            .orders_by_buyer
            .range((*buyer, lo)..=(*buyer, [0xff; 32]))
            .filter(|(_, id)| after.is_none_or(|a| *id > a))
            .filter_map(|(_, id)| self.orders.get_key_value(id));
        page(it, limit)
    }

    /// Orders for links of `node` that no lease fulfils and that are not over at `now`,
    /// after `after`, at most `limit`.
    pub fn pending_orders(
        &self,
        node: &Address,
        now: UnixTime,
        after: Option<ItemId>,
        limit: usize,
    ) -> Vec<(ItemId, super::Order)> {
        self.orders_by_link
            .range((*node, MIN_ADDR, [0; 32])..=(*node, MAX_ADDR, [0xff; 32]))
            .filter(|(_, _, id)| after.is_none_or(|a| *id > a))
            .filter_map(|(_, _, id)| {
                let o = self.orders.get(id)?;
                (o.matched.is_none() && now < o.order.end).then_some((*id, o.order))
            })
            .take(limit)
            .collect()
    }

    /// Current virtual networks (deletions left out).
    pub fn networks(&self) -> impl Iterator<Item = &VirtualNetwork> {
        self.networks
            .values()
            .map(|n| &n.net)
            .filter(|n| !n.leases.is_empty())
    }

    /// The links `owner` holds an active, unreleased lease on at `now` (for path costs).
    pub fn leased_links(&self, owner: &SigningKey, now: UnixTime) -> Vec<(Address, Address)> {
        self.by_owner
            .range((*owner, (MIN_KEY, MIN_ID))..=(*owner, (MAX_KEY, MAX_ID)))
            .filter_map(|(_, k)| self.leases.get(k))
            .filter(|l| !l.released && l.lease.start <= now && now < l.lease.end)
            .map(|l| (l.from, l.to))
            .collect()
    }

    /// The lease-engine frames that concern `node`, in an order its `LeaseEngine` can apply
    /// them in: bandwidth leases on links from or to the node, then virtual-switch leases it
    /// issued (each by lease id), then their configuration by (target, sequence number).
    ///
    /// Left out, because the engine would refuse them: leases that are over at `now`,
    /// configuration of leases that have not started (returned once they have) and
    /// configuration after a release (the node forgets a released lease).
    pub fn frames_for(&self, node: &Address, now: UnixTime) -> Vec<Arc<[u8]>> {
        let mut leases = Vec::new();
        let mut vswitches = Vec::new();
        for (_, key) in self
            .by_node
            .range((*node, (MIN_KEY, MIN_ID))..=(*node, (MAX_KEY, MAX_ID)))
        {
            if let Some(l) = self.leases.get(key) {
                if now < l.lease.end {
                    leases.push((l.lease.id, l.lease.start, l.frame, &l.configs));
                }
            } else if let Some(v) = self.vswitches.get(key) {
                if now < v.lease.end {
                    vswitches.push((v.lease.id, v.lease.start, v.frame, &v.configs));
                }
            }
        }
        leases.sort_by_key(|(id, ..)| *id);
        vswitches.sort_by_key(|(id, ..)| *id);
        let mut out: Vec<Arc<[u8]>> = Vec::new();
        let mut configs: Vec<(LeaseId, u64, ItemId, Command)> = Vec::new();
        for (id, start, frame, cfgs) in leases.iter().chain(&vswitches) {
            if let Some(b) = self.frame(frame) {
                out.push(Arc::clone(b));
            }
            if *start > now {
                continue;
            }
            for f in cfgs.iter() {
                if let Some(HeldKind::Config(_, seq)) = self.frames.get(f).map(|h| h.kind) {
                    if let Some(c) = self.configs.get(&(*id, seq, *f)) {
                        configs.push((*id, seq, *f, c.command));
                    }
                }
            }
        }
        configs.sort_by_key(|(id, seq, ..)| (*id, *seq));
        configs.dedup_by_key(|(_, _, f, _)| *f);
        let mut released: Option<LeaseId> = None;
        for (target, _, f, command) in configs {
            if released == Some(target) {
                continue;
            }
            if command == Command::Release {
                released = Some(target);
            }
            if let Some(b) = self.frame(&f) {
                out.push(Arc::clone(b));
            }
        }
        out
    }

    // ---- helpers shared with rules.rs -----------------------------------------------------

    pub(super) fn keys_with_id(&self, id: &LeaseId) -> Vec<LeaseKey> {
        self.ids
            .range((*id, MIN_KEY)..=(*id, MAX_KEY))
            .map(|(i, k)| (*k, *i))
            .collect()
    }

    pub(super) fn end_of(&self, key: &LeaseKey) -> Option<UnixTime> {
        self.leases
            .get(key)
            .map(|l| l.lease.end)
            .or_else(|| self.vswitches.get(key).map(|v| v.lease.end))
    }

    pub(super) fn config_range(
        &self,
        target: &LeaseId,
    ) -> impl Iterator<Item = (LeaseId, u64, ItemId)> + '_ {
        self.configs
            .range((*target, 0, [0; 32])..=(*target, u64::MAX, [0xff; 32]))
            .map(|(k, _)| *k)
    }

    pub(super) fn leases_on_link(
        &self,
        link: &(Address, Address),
    ) -> impl Iterator<Item = &LeaseState> {
        self.by_link
            .range((link.0, link.1, (MIN_KEY, MIN_ID))..=(link.0, link.1, (MAX_KEY, MAX_ID)))
            .filter_map(|(_, _, k)| self.leases.get(k))
    }

    pub(super) fn orders_on_link(
        &self,
        link: &(Address, Address),
    ) -> impl Iterator<Item = (&ItemId, &OrderState)> {
        self.orders_by_link
            .range((link.0, link.1, [0; 32])..=(link.0, link.1, [0xff; 32]))
            .filter_map(|(_, _, id)| self.orders.get_key_value(id))
    }
}

/// The first `limit` entries of `it`, and the cursor of the next page (the last id taken) when
/// more follow.
fn page<'a, T>(
    mut it: impl Iterator<Item = (&'a ItemId, &'a T)>,
    limit: usize,
) -> (Vec<(&'a ItemId, &'a T)>, Option<ItemId>) {
    let page: Vec<_> = it.by_ref().take(limit).collect();
    let next = page
        .last()
        .map(|(id, _)| **id)
        .filter(|_| it.next().is_some());
    (page, next)
}
