//! The lease frames the route-server agent fetches (`GET /frames?node=`), applied to the lease
//! engine of every shard, each at most once and none of them over and over.
//!
//! The agent hands over the node's whole list every round, and anyone can post frames that name
//! this node. Every frame costs a signature check per shard, on the first worker (which also
//! forwards packets), so the [`FrameLedger`] remembers by SHA-256 digest:
//!
//! - frames applied: not offered again (at most [`MAX_APPLIED`], oldest forgotten; a forgotten
//!   one offered again is `AlreadyKnown` or refused as a replay, and remembered again);
//! - frames refused: not offered again for [`RETRY_AFTER`] (a lease may start later, its
//!   issuer become a peer, the lease a configuration names arrive), at most [`MAX_REFUSED`],
//!   the oldest dropped first.
//!
//! A frame the first shard refuses is not offered to the others: every shard holds the same
//! lease state and the same peers, so the verdict would be the same. Refusals are counted
//! ([`FrameCounts`]) and logged once a round at info (each one at debug).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use pktmesh_lease_engine::UnixTime;
use pktmesh_node::core::Pathfinder;
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use super::agent::Agent;
use super::workers::ShardNode;

/// How long a refused frame is not offered again.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(30);
/// Most refused frames remembered.
pub(super) const MAX_REFUSED: usize = 4096;
/// Most applied frames remembered.
pub(super) const MAX_APPLIED: usize = 65_536;

type FrameDigest = [u8; 32];

/// What became of the frames offered so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FrameCounts {
    /// Frames applied.
    pub(super) applied: u64,
    /// Frames refused (each time it was offered and checked).
    pub(super) refused: u64,
    /// Offers skipped because the frame was refused less than [`RETRY_AFTER`] ago.
    pub(super) skipped: u64,
}

/// The digests of frames applied and refused (see the module docs).
#[derive(Debug, Default)]
pub(super) struct FrameLedger {
    applied: HashSet<FrameDigest>,
    applied_order: VecDeque<FrameDigest>,
    /// Digest → when it was refused; `refused_order` lists the same in that order.
    refused: HashMap<FrameDigest, Instant>,
    refused_order: VecDeque<(FrameDigest, Instant)>,
    counts: FrameCounts,
}

impl FrameLedger {
    /// Whether the frame with `digest` should be checked at `now`: not applied before, and not
    /// refused within [`RETRY_AFTER`].
    pub(super) fn wants(&mut self, now: Instant, digest: &FrameDigest) -> bool {
        self.forget_refusals(now);
        if self.applied.contains(digest) {
            return false;
        }
        if self.refused.contains_key(digest) {
            self.counts.skipped += 1;
            return false;
        }
        true
    }

    /// The frame with `digest` was applied.
    pub(super) fn applied(&mut self, digest: FrameDigest) {
        self.counts.applied += 1;
        if self.applied.insert(digest) {
            self.applied_order.push_back(digest);
        }
        while self.applied_order.len() > MAX_APPLIED {
            if let Some(old) = self.applied_order.pop_front() {
                self.applied.remove(&old);
            }
        }
    }

    /// The frame with `digest` was refused at `now`.
    pub(super) fn refused(&mut self, now: Instant, digest: FrameDigest) {
        self.counts.refused += 1;
        if let Entry::Vacant(e) = self.refused.entry(digest) {
            e.insert(now);
            self.refused_order.push_back((digest, now));
        }
        while self.refused_order.len() > MAX_REFUSED {
            if let Some((old, at)) = self.refused_order.pop_front() {
                self.forget_refusal(&old, at);
            }
        }
    }

    /// The counts so far.
    pub(super) fn counts(&self) -> FrameCounts {
        self.counts
    }

    /// Refused frames remembered now.
    #[cfg(test)]
    fn refused_len(&self) -> usize {
        self.refused.len()
    }

    /// Drops the refusals made [`RETRY_AFTER`] or longer before `now` (they are in time order).
    fn forget_refusals(&mut self, now: Instant) {
        while let Some(&(digest, at)) = self.refused_order.front() {
            if now.saturating_duration_since(at) < RETRY_AFTER {
                break;
            }
            self.refused_order.pop_front();
            self.forget_refusal(&digest, at);
        }
    }

    fn forget_refusal(&mut self, digest: &FrameDigest, at: Instant) {
        if self.refused.get(digest) == Some(&at) {
            self.refused.remove(digest);
        }
    }
}

/// Applies the frames the agent fetched since the last call to every shard's lease engine, at
/// wall-clock `unix` and monotonic `now`, skipping those the ledger has seen.
pub(super) fn apply_frames<P: Pathfinder>(
    shards: &mut [&mut ShardNode<P>],
    agent: &Agent,
    ledger: &mut FrameLedger,
    unix: UnixTime,
    now: Instant,
) {
    let mut refused = 0u64;
    let mut last_error = None;
    while let Some(frame) = agent.poll_frame() {
        let digest: FrameDigest = Sha256::digest(&frame).into();
        if !ledger.wants(now, &digest) {
            continue;
        }
        let mut result = None;
        for node in shards.iter_mut() {
            let r = node.handle_lease_message(unix, &frame);
            let failed = r.is_err();
            result = Some(r);
            if failed {
                break; // the other shards hold the same state: same verdict
            }
        }
        match result {
            Some(Ok(event)) => {
                info!(?event, "lease message applied");
                ledger.applied(digest);
            }
            Some(Err(e)) => {
                debug!(error = %e, "lease message refused");
                ledger.refused(now, digest);
                refused += 1;
                last_error = Some(e);
            }
            None => {}
        }
    }
    if let Some(error) = last_error {
        let counts = ledger.counts();
        info!(refused, %error, total_refused = counts.refused, skipped = counts.skipped,
            retry_after_s = RETRY_AFTER.as_secs(), "lease messages refused (last error shown)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u32) -> FrameDigest {
        let mut d = [0; 32];
        d[..4].copy_from_slice(&i.to_be_bytes());
        d
    }

    #[test]
    fn a_refused_frame_is_retried_only_after_the_delay() {
        let mut ledger = FrameLedger::default();
        let t0 = Instant::now();
        let d = digest(1);
        assert!(ledger.wants(t0, &d));
        ledger.refused(t0, d);
        assert!(!ledger.wants(t0 + Duration::from_secs(1), &d));
        assert!(!ledger.wants(t0 + RETRY_AFTER - Duration::from_millis(1), &d));
        assert!(ledger.wants(t0 + RETRY_AFTER, &d));
        assert_eq!(ledger.refused_len(), 0);
        // Refused again, then applied: never offered again.
        ledger.refused(t0 + RETRY_AFTER, d);
        assert!(ledger.wants(t0 + RETRY_AFTER * 2, &d));
        ledger.applied(d);
        assert!(!ledger.wants(t0 + RETRY_AFTER * 9, &d));
        let counts = ledger.counts();
        assert_eq!((counts.applied, counts.refused, counts.skipped), (1, 2, 2));
    }

    #[test]
    fn the_ledger_is_bounded_and_forgets_the_oldest_first() {
        let mut ledger = FrameLedger::default();
        let t0 = Instant::now();
        let n = MAX_REFUSED as u32 + 10;
        for i in 0..n {
            ledger.refused(t0, digest(i));
        }
        assert_eq!(ledger.refused_len(), MAX_REFUSED);
        assert!(ledger.wants(t0, &digest(0)), "the oldest is dropped");
        assert!(ledger.wants(t0, &digest(9)));
        assert!(!ledger.wants(t0, &digest(10)), "the rest is kept");
        assert!(!ledger.wants(t0, &digest(n - 1)));
        for i in 0..MAX_APPLIED as u32 + 1 {
            ledger.applied(digest(i));
        }
        assert_eq!(ledger.applied.len(), MAX_APPLIED);
        assert!(
            ledger.wants(t0, &digest(0)),
            "the oldest applied is forgotten"
        );
        assert!(!ledger.wants(t0, &digest(1)));
    }
}
