//! The handshake budget: which packets would make the node compute an X25519 shared secret,
//! and the token buckets, per source and in total, that decide whether it may.
//!
//! A legacy CryptoAuth HELLO or KEY costs the receiver one X25519 (about 80 µs here,
//! `docs/perf.md`) before it knows whether the packet is genuine, and a stranger can send
//! thousands a second. So before any X25519 the link and session stages ask their
//! [`Budget`]: a bucket per source (a link address's IP, or the peer a packet for our router
//! came through) and one for the stage as a whole. A packet the budget refuses is dropped
//! unopened ("shed") and counted; what is already established never asks, so established
//! peers and sessions keep their traffic whatever arrives. Sizes and reasons: `docs/node.md`,
//! "Handshake budget".
//!
//! Time is an argument; nothing here allocates after [`Budget::new`] (the per-source table is
//! allocated at its cap, entries whose bucket has refilled are swept away, and a new source
//! finding the table full is refused).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{AuthType, CryptoAuth, HandshakeHeader, Session, State};

/// Tokens are counted in millionths, so a refill of `per_second` tokens a second adds
/// `per_second` millionths every microsecond.
const SCALE: u64 = 1_000_000;

/// How often a full per-source table is swept for sources that went quiet.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket's size: `burst` tokens at most, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: u32,
    /// Most tokens held (what a quiet source may spend at once).
    pub burst: u32,
}

/// A stage's budget: the per-source and total buckets, and how many sources are tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSpec {
    /// Each source's bucket.
    pub per_source: Rate,
    /// The stage's bucket, shared by all sources.
    pub total: Rate,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

/// The link stage's budget, per shard: HELLOs from unknown addresses that name an authorized
/// user, and handshakes on known peers' links, by source IP.
pub const LINK_BUDGET: BudgetSpec = BudgetSpec {
    per_source: Rate {
        per_second: 2,
        burst: 8,
    },
    total: Rate {
        per_second: 128,
        burst: 256,
    },
    max_sources: 1024,
};

/// The session stage's budget, per shard: end-to-end handshakes (and first data packets of
/// unfinished handshakes), by the peer they came through.
pub const SESSION_BUDGET: BudgetSpec = BudgetSpec {
    per_source: Rate {
        per_second: 32,
        burst: 64,
    },
    total: Rate {
        per_second: 256,
        burst: 512,
    },
    max_sources: 512,
};

/// Why a packet was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shed {
    /// Its source spent its bucket.
    Source,
    /// The stage spent its bucket.
    Total,
    /// Its source is new and the per-source table is full.
    TableFull,
}

/// What a budget let through and shed, since the node started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BudgetStats {
    /// Packets allowed to cost an X25519.
    pub allowed: u64,
    /// Shed because their source's bucket was empty.
    pub shed_source: u64,
    /// Shed because the total bucket was empty.
    pub shed_total: u64,
    /// Shed because their source was new and the per-source table full.
    pub shed_table_full: u64,
    /// Sources tracked now.
    pub sources: usize,
}

impl BudgetStats {
    /// All packets shed, whatever the reason.
    pub fn shed(&self) -> u64 {
        self.shed_source + self.shed_total + self.shed_table_full
    }

    /// The sum of two stages' or shards' figures.
    pub fn plus(self, other: Self) -> Self {
        Self {
            allowed: self.allowed + other.allowed,
            shed_source: self.shed_source + other.shed_source,
            shed_total: self.shed_total + other.shed_total,
            shed_table_full: self.shed_table_full + other.shed_table_full,
            sources: self.sources + other.sources,
        }
    }
}

/// One token bucket (tokens in millionths, as of `at`).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    millionths: u64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self {
            millionths: u64::from(rate.burst) * SCALE,
            at: now,
        }
    }

    /// Adds what `rate` earned since the last call (time never runs backwards here).
    fn refill(&mut self, rate: Rate, now: Instant) {
        if now <= self.at {
            return;
        }
        let micros = u64::try_from(now.duration_since(self.at).as_micros()).unwrap_or(u64::MAX);
        let earned = micros.saturating_mul(u64::from(rate.per_second));
        let cap = u64::from(rate.burst) * SCALE;
        self.millionths = self.millionths.saturating_add(earned).min(cap);
        self.at = now;
    }

    fn has_token(&self) -> bool {
        self.millionths >= SCALE
    }

    fn take(&mut self) {
        self.millionths = self.millionths.saturating_sub(SCALE);
    }

    fn is_full(&self, rate: Rate) -> bool {
        self.millionths >= u64::from(rate.burst) * SCALE
    }
}

/// Token buckets for one stage: one per source (keyed by `K`, which strangers choose, so the
/// table is capped and swept) and one in total.
#[derive(Debug)]
pub(crate) struct Budget<K> {
    spec: BudgetSpec,
    total: Bucket,
    sources: HashMap<K, Bucket>,
    next_sweep: Instant,
    stats: BudgetStats,
}

impl<K: Hash + Eq + Copy> Budget<K> {
    /// Full buckets at `now`, and a per-source table allocated at its cap.
    pub(crate) fn new(spec: BudgetSpec, now: Instant) -> Self {
        Self {
            spec,
            total: Bucket::full(spec.total, now),
            sources: HashMap::with_capacity(spec.max_sources),
            next_sweep: now,
            stats: BudgetStats::default(),
        }
    }

    /// Whether `source` may spend one X25519 now; if so its bucket and the total pay a token
    /// each. A refusal costs neither bucket, so a flooding source does not drain the total.
    pub(crate) fn allow(&mut self, now: Instant, source: K) -> Result<(), Shed> {
        let result = self.try_take(now, source);
        match result {
            Ok(()) => self.stats.allowed += 1,
            Err(Shed::Source) => self.stats.shed_source += 1,
            Err(Shed::Total) => self.stats.shed_total += 1,
            Err(Shed::TableFull) => self.stats.shed_table_full += 1,
        }
        result
    }

    fn try_take(&mut self, now: Instant, source: K) -> Result<(), Shed> {
        let per_source = self.spec.per_source;
        let full = self.sources.len() >= self.spec.max_sources;
        // One hash for a known source (the flood case).
        let bucket = match self.sources.entry(source) {
            Entry::Occupied(o) => o.into_mut(),
            Entry::Vacant(v) if !full => v.insert(Bucket::full(per_source, now)),
            Entry::Vacant(_) => {
                if now < self.next_sweep {
                    return Err(Shed::TableFull);
                }
                self.sweep(now);
                if self.sources.len() >= self.spec.max_sources {
                    return Err(Shed::TableFull);
                }
                self.sources
                    .entry(source)
                    .or_insert(Bucket::full(per_source, now))
            }
        };
        bucket.refill(per_source, now);
        if !bucket.has_token() {
            return Err(Shed::Source);
        }
        self.total.refill(self.spec.total, now);
        if !self.total.has_token() {
            return Err(Shed::Total);
        }
        bucket.take();
        self.total.take();
        Ok(())
    }

    /// Counts a packet shed without asking, because its source was refused a moment ago (the
    /// caller's fast path for floods).
    pub(crate) fn shed_again(&mut self) {
        self.stats.shed_source += 1;
    }

    /// Forgets sources whose bucket has refilled (a full bucket is what a new source gets, so
    /// nothing is lost); runs at most once a [`SWEEP_INTERVAL`] unless the table is full.
    pub(crate) fn sweep(&mut self, now: Instant) {
        let rate = self.spec.per_source;
        self.sources.retain(|_, b| {
            b.refill(rate, now);
            !b.is_full(rate)
        });
        self.next_sweep = now + SWEEP_INTERVAL;
    }

    /// Sweeps if the last sweep is a [`SWEEP_INTERVAL`] old (for the timer).
    pub(crate) fn sweep_if_due(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.sweep(now);
        }
    }

    /// What was allowed and shed so far.
    pub(crate) fn stats(&self) -> BudgetStats {
        BudgetStats {
            sources: self.sources.len(),
            ..self.stats
        }
    }
}

/// Whether opening `packet` (a CryptoAuth packet, handshake or data) in `session` would
/// compute an X25519: a HELLO from the session's peer that its auth lets through, a KEY we
/// are waiting for, or a data packet while the data key is not derived yet (which derives it
/// from both temporary keys, every time until one opens). What fails the cheaper checks first
/// (another key, an unknown user, a KEY for an established session) costs nothing.
pub(crate) fn session_costs_x25519(session: &Session, packet: &[u8]) -> bool {
    let Some(word) = packet.first_chunk::<4>().map(|w| u32::from_be_bytes(*w)) else {
        return false;
    };
    if word > 3 {
        return matches!(session.state(), State::SentKey | State::ReceivedKey);
    }
    let is_key = word >= 2;
    if is_key && (session.is_established() || !session.is_initiator()) {
        return false;
    }
    let Some(header) = HandshakeHeader::parse(packet) else {
        return false;
    };
    if &header.public_key != session.peer().as_bytes() {
        return false;
    }
    session.context().find_user(&header.auth).is_some() || header.auth.auth_type == AuthType::None
}

/// Whether a HELLO from a sender with no session yet would cost an X25519 in a session of
/// `ca`: it names one of `ca`'s users, or carries no auth where strangers need none
/// (`require_auth` false, as for end-to-end sessions).
pub(crate) fn hello_costs_x25519(ca: &CryptoAuth, packet: &[u8], require_auth: bool) -> bool {
    let Some(header) = HandshakeHeader::parse(packet) else {
        return false;
    };
    ca.find_user(&header.auth).is_some()
        || (!require_auth && header.auth.auth_type == AuthType::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: BudgetSpec = BudgetSpec {
        per_source: Rate {
            per_second: 2,
            burst: 4,
        },
        total: Rate {
            per_second: 10,
            burst: 6,
        },
        max_sources: 3,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_source_spends_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(SPEC, t0);
        for _ in 0..4 {
            assert_eq!(b.allow(t0, 1u8), Ok(()));
        }
        assert_eq!(b.allow(t0, 1), Err(Shed::Source));
        // 2 a second: one token after 500 ms, not before.
        assert_eq!(b.allow(t0 + ms(499), 1), Err(Shed::Source));
        assert_eq!(b.allow(t0 + ms(500), 1), Ok(()));
        assert_eq!(b.allow(t0 + ms(500), 1), Err(Shed::Source));
        let s = b.stats();
        assert_eq!((s.allowed, s.shed_source, s.shed()), (5, 3, 3));
    }

    #[test]
    fn the_total_caps_many_sources_and_a_flooder_does_not_drain_it() {
        let t0 = Instant::now();
        let mut b = Budget::new(SPEC, t0);
        // One source floods: after its burst of 4 everything is shed at the source, and the
        // total keeps the 2 tokens it has left.
        for _ in 0..1000 {
            let _ = b.allow(t0, 1u8);
        }
        assert_eq!(b.stats().allowed, 4);
        assert_eq!(b.allow(t0, 2), Ok(()));
        assert_eq!(b.allow(t0, 2), Ok(()));
        // The total (burst 6) is spent now, though source 2 has tokens left.
        assert_eq!(b.allow(t0, 2), Err(Shed::Total));
        // 10 a second in total: one more after 100 ms.
        assert_eq!(b.allow(t0 + ms(100), 2), Ok(()));
        assert_eq!(b.allow(t0 + ms(100), 2), Err(Shed::Total));
        assert_eq!(b.stats().shed_total, 2);
    }

    #[test]
    fn the_source_table_is_capped_and_quiet_sources_are_swept() {
        let t0 = Instant::now();
        let mut b = Budget::new(SPEC, t0);
        for s in 0..3u8 {
            assert_eq!(b.allow(t0, s), Ok(()));
        }
        assert_eq!(b.stats().sources, 3);
        // A fourth source finds the table full: the three have not refilled yet.
        assert_eq!(b.allow(t0 + ms(100), 9), Err(Shed::TableFull));
        // Within a second no new sweep is tried.
        assert_eq!(b.allow(t0 + ms(600), 9), Err(Shed::TableFull));
        // Source 0 keeps spending; 1 and 2 go quiet and refill (one token at 2/s: 500 ms).
        assert_eq!(b.allow(t0 + ms(900), 0), Ok(()));
        assert_eq!(b.allow(t0 + ms(1100), 9), Ok(()), "1 and 2 were swept");
        assert_eq!(b.stats().sources, 2);
        assert_eq!(b.stats().shed_table_full, 2);
        // The timer sweep forgets the rest once they have refilled.
        b.sweep_if_due(t0 + ms(5000));
        assert_eq!(b.stats().sources, 0);
        assert_eq!(b.stats().allowed, 5);
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let t0 = Instant::now() + ms(10_000);
        let mut b = Budget::new(SPEC, t0);
        for _ in 0..4 {
            assert_eq!(b.allow(t0, 1u8), Ok(()));
        }
        assert_eq!(b.allow(t0 - ms(5000), 1), Err(Shed::Source));
        assert_eq!(b.allow(t0, 1), Err(Shed::Source));
    }
}
