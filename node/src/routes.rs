//! Leased routes: the paths a route server computed for this node's leased traffic, by
//! destination, and which destinations the node sends user traffic to (so that the driver
//! knows whose path to ask for).
//!
//! A virtual ISP leases links and knits them into a virtual network; the route server knows
//! which links those are and computes, for the network's owner, the path that prefers them
//! (`GET /path?from=&to=&owner=`, `docs/route-server.md`). The DHT knows nothing of leases and
//! prefers the shortest label. When this node's own traffic rides a lease (its lease engine
//! has an attached out-lease on one of its ports), the driver turns the policy on
//! ([`LeasedRoutes::set_enabled`]), asks the route server for the destinations listed by
//! [`LeasedRoutes::wanted`] and hands the answers back ([`LeasedRoutes::set`]); the node then
//! sends those destinations' packets on the route server's label instead of the DHT's.
//!
//! Fail open: a route expires [`LeasedRoutes::ttl`] after it was last confirmed, so when the
//! route server is away the node falls back to the DHT's path; a route server answering "no
//! path" does the same at once ([`LeasedRoutes::unroutable`]). The table is keyed by
//! destinations of our own user traffic, never by what a stranger sends, and holds at most
//! [`MAX_ROUTES`] entries; when it is full a new destination replaces the one used least
//! recently. Everything takes an explicit `now`; nothing here does I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::Address;
use pktmesh_switch::Label;

/// Most destinations tracked.
pub const MAX_ROUTES: usize = 256;
/// Most destinations [`LeasedRoutes::wanted`] lists at once (one route-server query each).
pub const MAX_WANTED: usize = 32;
/// A destination not sent to for this long is no longer asked for.
pub const USE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The route server's label and until when it holds.
    route: Option<(Label, Instant)>,
    /// When user traffic for the destination was last sent.
    last_used: Instant,
    /// When the driver was last told to ask for it.
    asked: Option<Instant>,
}

/// The leased routes of one node (or shard); see the module docs.
#[derive(Debug, Clone)]
pub struct LeasedRoutes {
    enabled: bool,
    refresh: Duration,
    ttl: Duration,
    entries: HashMap<Address, Entry>,
    /// Packets sent on a route server's label.
    used: u64,
}

impl LeasedRoutes {
    /// An empty, disabled table whose routes are asked for again every `refresh` and expire
    /// `ttl` after the last answer.
    pub fn new(refresh: Duration, ttl: Duration) -> Self {
        Self {
            enabled: false,
            refresh,
            ttl: ttl.max(refresh),
            entries: HashMap::new(),
            used: 0,
        }
    }

    /// How long a route holds without a fresh answer.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Turns the policy on or off; off forgets every route (the DHT decides again).
    pub fn set_enabled(&mut self, enabled: bool) {
        if !enabled {
            self.entries.clear();
        }
        self.enabled = enabled;
    }

    /// Whether the policy is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// User traffic for `destination` is being sent: notes it, and returns the route that
    /// holds for it now, in the same lookup (not counted: see [`Self::count_routed`]). O(1)
    /// unless the table is full.
    #[inline]
    pub fn note_use(&mut self, now: Instant, destination: Address) -> Option<Label> {
        if !self.enabled {
            return None;
        }
        if let Some(e) = self.entries.get_mut(&destination) {
            e.last_used = now;
            return e.route.filter(|(_, until)| now < *until).map(|(l, _)| l);
        }
        if self.entries.len() >= MAX_ROUTES {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.entries.remove(&a);
            }
        }
        self.entries.insert(
            destination,
            Entry {
                route: None,
                last_used: now,
                asked: None,
            },
        );
        None
    }

    /// The route that holds for `destination` now, if any (not counted).
    #[inline]
    pub fn route(&self, now: Instant, destination: &Address) -> Option<Label> {
        if self.entries.is_empty() {
            return None;
        }
        let (label, until) = self.entries.get(destination)?.route?;
        (now < until).then_some(label)
    }

    /// Counts a packet sent on a route server's label.
    #[inline]
    pub fn count_routed(&mut self) {
        self.used = self.used.wrapping_add(1);
    }

    /// The label to send `destination`'s packets on, if the route server gave one that still
    /// holds; counts the packet as sent on it.
    #[inline]
    pub fn label_for(&mut self, now: Instant, destination: &Address) -> Option<Label> {
        let label = self.route(now, destination)?;
        self.count_routed();
        Some(label)
    }

    /// Destinations to ask the route server about now: used recently, and with no route or
    /// one due for refreshing, not asked about in the last `refresh`. Marks them asked.
    pub fn wanted(&mut self, now: Instant) -> Vec<Address> {
        if !self.enabled {
            return Vec::new();
        }
        let refresh = self.refresh;
        let mut out = Vec::new();
        for (address, e) in &mut self.entries {
            if out.len() >= MAX_WANTED {
                break;
            }
            let recent = now.saturating_duration_since(e.last_used) < USE_WINDOW;
            let stale = e.route.is_none_or(|(_, until)| {
                until.saturating_duration_since(now) < self.ttl.saturating_sub(refresh)
            });
            let asked_lately = e
                .asked
                .is_some_and(|t| now.saturating_duration_since(t) < refresh);
            if recent && stale && !asked_lately {
                e.asked = Some(now);
                out.push(*address);
            }
        }
        out
    }

    /// The route server's path to `destination` is `label`; it holds for [`Self::ttl`].
    /// Returns whether the label is new (a change worth a log line).
    pub fn set(&mut self, now: Instant, destination: Address, label: Label) -> bool {
        if !self.enabled {
            return false;
        }
        let until = now + self.ttl;
        match self.entries.get_mut(&destination) {
            Some(e) => {
                let changed = e.route.is_none_or(|(l, u)| l != label || now >= u);
                e.route = Some((label, until));
                changed
            }
            None => false,
        }
    }

    /// The route server has no path to `destination`: the DHT's path is used.
    pub fn unroutable(&mut self, destination: &Address) {
        if let Some(e) = self.entries.get_mut(destination) {
            e.route = None;
        }
    }

    /// Forgets destinations neither used within [`USE_WINDOW`] nor routed.
    pub fn expire(&mut self, now: Instant) {
        self.entries.retain(|_, e| {
            now.saturating_duration_since(e.last_used) < USE_WINDOW
                || e.route.is_some_and(|(_, until)| now < until)
        });
    }

    /// The routes that hold now: (destination, label).
    pub fn routes(&self, now: Instant) -> impl Iterator<Item = (Address, Label)> + '_ {
        self.entries.iter().filter_map(move |(a, e)| {
            e.route
                .filter(|(_, until)| now < *until)
                .map(|(label, _)| (*a, label))
        })
    }

    /// Packets sent on a route server's label so far.
    pub fn packets_routed(&self) -> u64 {
        self.used
    }
}

impl Default for LeasedRoutes {
    /// Asked for every 10 s, held for 30 s.
    fn default() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> Address {
        let mut b = [0u8; 16];
        b[0] = 0xfc;
        b[15] = n;
        Address::from_bytes(b)
    }

    fn label(bits: u64) -> Label {
        Label::new(bits).unwrap()
    }

    fn table() -> (LeasedRoutes, Instant) {
        let mut t = LeasedRoutes::new(Duration::from_secs(5), Duration::from_secs(15));
        t.set_enabled(true);
        (t, Instant::now())
    }

    #[test]
    fn disabled_tracks_nothing() {
        let mut t = LeasedRoutes::default();
        let now = Instant::now();
        t.note_use(now, addr(1));
        assert!(t.wanted(now).is_empty());
        assert!(!t.set(now, addr(1), label(0x13)));
        assert_eq!(t.label_for(now, &addr(1)), None);
    }

    #[test]
    fn a_used_destination_is_asked_for_once_per_refresh() {
        let (mut t, now) = table();
        t.note_use(now, addr(1));
        assert_eq!(t.wanted(now), vec![addr(1)]);
        assert!(t.wanted(now + Duration::from_secs(1)).is_empty());
        // No answer came: asked again after the refresh interval.
        assert_eq!(t.wanted(now + Duration::from_secs(5)), vec![addr(1)]);
    }

    #[test]
    fn an_answer_routes_until_its_ttl_then_the_dht_decides() {
        let (mut t, now) = table();
        t.note_use(now, addr(1));
        t.wanted(now);
        assert!(t.set(now, addr(1), label(0x13)));
        assert!(!t.set(now, addr(1), label(0x13)), "same label: no change");
        assert_eq!(t.label_for(now, &addr(1)), Some(label(0x13)));
        assert_eq!(
            t.label_for(now + Duration::from_secs(14), &addr(1)),
            Some(label(0x13))
        );
        assert_eq!(t.label_for(now + Duration::from_secs(15), &addr(1)), None);
        assert_eq!(t.packets_routed(), 2);
        assert_eq!(t.label_for(now, &addr(2)), None, "other destinations");
    }

    #[test]
    fn a_route_is_refreshed_before_it_expires() {
        let (mut t, now) = table();
        t.note_use(now, addr(1));
        t.wanted(now);
        t.set(now, addr(1), label(0x13));
        // Fresh: not asked for.
        assert!(t.wanted(now + Duration::from_secs(4)).is_empty());
        // Older than the refresh interval (and used): asked for again.
        t.note_use(now + Duration::from_secs(6), addr(1));
        assert_eq!(t.wanted(now + Duration::from_secs(6)), vec![addr(1)]);
    }

    #[test]
    fn unroutable_falls_back_at_once() {
        let (mut t, now) = table();
        t.note_use(now, addr(1));
        t.set(now, addr(1), label(0x13));
        t.unroutable(&addr(1));
        assert_eq!(t.label_for(now, &addr(1)), None);
    }

    #[test]
    fn the_table_is_capped_and_keeps_the_recently_used() {
        let (mut t, now) = table();
        for i in 0..MAX_ROUTES {
            let at = now + Duration::from_millis(i as u64);
            let mut b = [0u8; 16];
            b[0] = 0xfc;
            b[14..].copy_from_slice(&(i as u16).to_be_bytes());
            t.note_use(at, Address::from_bytes(b));
        }
        let first = {
            let mut b = [0u8; 16];
            b[0] = 0xfc;
            Address::from_bytes(b)
        };
        let newcomer = {
            let mut b = [0u8; 16];
            b[..2].copy_from_slice(&[0xfc, 1]);
            Address::from_bytes(b)
        };
        t.note_use(now + Duration::from_secs(1), newcomer);
        assert_eq!(t.entries.len(), MAX_ROUTES);
        assert!(!t.entries.contains_key(&first), "least recently used left");
        assert!(t.entries.contains_key(&newcomer));
        // At most MAX_WANTED queries per round.
        assert_eq!(t.wanted(now + Duration::from_secs(1)).len(), MAX_WANTED);
    }

    #[test]
    fn unused_destinations_expire_and_disabling_forgets_routes() {
        let (mut t, now) = table();
        t.note_use(now, addr(1));
        t.note_use(now, addr(2));
        t.set(now, addr(2), label(0x13));
        t.expire(now + USE_WINDOW);
        assert!(!t.entries.contains_key(&addr(1)));
        // Still routed (until its ttl) even though unused for a minute? No: its ttl (15 s)
        // is over by then too.
        assert!(!t.entries.contains_key(&addr(2)));
        t.note_use(now, addr(3));
        t.set(now, addr(3), label(0x15));
        t.set_enabled(false);
        assert_eq!(t.label_for(now, &addr(3)), None);
        assert_eq!(t.routes(now).count(), 0);
    }
}
