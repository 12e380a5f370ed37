//! Applying one verified message to the control state: which leases a node takes, and which
//! lease a configuration command means.
//!
//! Each function here either changes the state and returns the [`Event`], or returns an
//! [`EngineError`] with the state untouched; [`LeaseEngine::handle_message`] verifies the
//! signature before and rebuilds the forwarding tables after.
//!
//! What a node takes (`docs/leases.md` §3.5):
//! - leases it issued itself (its out-leases) and virtual switches it issued, whatever the state
//!   of the link: its agent signs leases only for established links, and a link that is down for
//!   a moment must not lose them;
//! - leases on a link into it, only from an issuer that is a peer *now*, and at most
//!   [`EngineConfig::max_leases_per_issuer`](super::EngineConfig::max_leases_per_issuer) of them
//!   per issuer, so that no one peer can fill the table for the others.
//!
//! Configuration names its target by id alone (the wire format has no issuer). It applies to the
//! one lease or virtual switch of that id owned by the signer; two or more such leases (another
//! issuer reused the id and named the same owner) are refused as [`EngineError::Ambiguous`]
//! rather than guessed. Finding them is a scan of the table (at most
//! [`EngineConfig::max_leases`](super::EngineConfig::max_leases) entries), cheap beside the
//! signature check before it.

use std::collections::{HashMap, HashSet};

use pktmesh_crypto_auth::PublicKey;

use super::{
    EngineError, Event, LeaseEngine, LeaseKey, LeaseRecord, SeqMemory, VirtualSwitchRecord,
    SEQ_MEMORY_PER_LEASE, SEQ_MEMORY_SECS,
};
use crate::sign::SigningKey;
use crate::wire::{Command, Config, Lease, VirtualSwitchLease};
use crate::{LeaseId, UnixTime};

/// The lease a configuration command resolved to.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// A bandwidth lease.
    Lease(LeaseKey),
    /// A virtual-switch lease.
    Switch(LeaseKey),
}

impl Target {
    fn key(self) -> LeaseKey {
        match self {
            Self::Lease(k) | Self::Switch(k) => k,
        }
    }
}

/// What configuration checks need of its target.
#[derive(Debug, Clone, Copy)]
struct Found {
    target: Target,
    start: UnixTime,
    end: UnixTime,
    last_seq: Option<u64>,
}

/// The fields configuration changes, common to both kinds of lease.
struct Configurable<'a> {
    owner: &'a mut SigningKey,
    network: &'a mut u64,
    last_seq: &'a mut Option<u64>,
}

/// Class of unclassed packets on a lease nobody configured (or just transferred).
const FRESH_DEFAULT_CLASS: u8 = 0;
/// Highest class on a lease nobody configured (or just transferred).
const FRESH_MAX_CLASS: u8 = 15;

/// `Expired` unless a span ending at `end` is still running (or yet to start) at `now`.
fn not_over(lease: LeaseId, end: UnixTime, now: UnixTime) -> Result<(), EngineError> {
    if now >= end {
        return Err(EngineError::Expired {
            lease,
            end: end.0,
            now: now.0,
        });
    }
    Ok(())
}

impl LeaseEngine {
    fn check_room(&self) -> Result<(), EngineError> {
        if self.state.leases.len() + self.state.vswitches.len() >= self.config.max_leases {
            return Err(EngineError::TableFull);
        }
        Ok(())
    }

    /// Whether the node with signing key `issuer` is a peer now.
    fn is_peer(&self, issuer: SigningKey) -> bool {
        issuer
            .cjdns_key()
            .is_some_and(|k| self.peers.contains_key(&k))
    }

    pub(super) fn add_lease(&mut self, now: UnixTime, lease: Lease) -> Result<Event, EngineError> {
        let ours = lease.node == self.me;
        let into_us = Some(PublicKey::from_bytes(lease.peer)) == self.me_cjdns;
        if !ours && !into_us {
            return Err(EngineError::NotForThisNode(lease.id));
        }
        not_over(lease.id, lease.end, now)?;
        let key = LeaseKey::new(lease.node, lease.id);
        if let Some(known) = self.state.leases.get(&key) {
            // The same lease, possibly re-sent after a transfer: keep what we have.
            let same = Lease {
                owner: known.lease.owner,
                ..lease
            };
            return if same == known.lease {
                Ok(Event::AlreadyKnown(key))
            } else {
                Err(EngineError::IdConflict(lease.id))
            };
        }
        if self.state.vswitches.contains_key(&key) {
            return Err(EngineError::IdConflict(lease.id));
        }
        if !ours {
            if !self.is_peer(lease.node) {
                return Err(EngineError::NotAPeer {
                    lease: lease.id,
                    issuer: lease.node,
                });
            }
            let max = self.config.max_leases_per_issuer;
            // Every lease of another issuer kept here is a lease into this node.
            let held = self
                .state
                .leases
                .range(LeaseKey::of_issuer(lease.node))
                .count();
            if held >= max {
                return Err(EngineError::IssuerFull {
                    issuer: lease.node,
                    max,
                });
            }
        }
        self.check_room()?;
        self.state.leases.insert(
            key,
            LeaseRecord {
                lease,
                network: 0,
                default_class: FRESH_DEFAULT_CLASS,
                max_class: FRESH_MAX_CLASS,
                last_seq: None,
            },
        );
        Ok(Event::LeaseAdded(key))
    }

    pub(super) fn add_vswitch(
        &mut self,
        now: UnixTime,
        vs: VirtualSwitchLease,
    ) -> Result<Event, EngineError> {
        if vs.node != self.me {
            return Err(EngineError::NotForThisNode(vs.id));
        }
        not_over(vs.id, vs.end, now)?;
        let key = LeaseKey::new(vs.node, vs.id);
        if let Some(known) = self.state.vswitches.get(&key) {
            let same = VirtualSwitchLease {
                owner: known.lease.owner,
                ..vs.clone()
            };
            return if same == known.lease {
                Ok(Event::AlreadyKnown(key))
            } else {
                Err(EngineError::IdConflict(vs.id))
            };
        }
        if self.state.leases.contains_key(&key) {
            return Err(EngineError::IdConflict(vs.id));
        }
        self.check_room()?;
        self.state.vswitches.insert(
            key,
            VirtualSwitchRecord {
                lease: vs,
                network: 0,
                last_seq: None,
            },
        );
        Ok(Event::VirtualSwitchAdded(key))
    }

    /// The one lease or virtual switch with id `id` that `signer` owns.
    fn resolve(&self, id: LeaseId, signer: SigningKey) -> Result<Found, EngineError> {
        let leases = self.state.leases.iter().map(|(k, r)| {
            let found = Found {
                target: Target::Lease(*k),
                start: r.lease.start,
                end: r.lease.end,
                last_seq: r.last_seq,
            };
            (found, r.lease.owner)
        });
        let switches = self.state.vswitches.iter().map(|(k, r)| {
            let found = Found {
                target: Target::Switch(*k),
                start: r.lease.start,
                end: r.lease.end,
                last_seq: r.last_seq,
            };
            (found, r.lease.owner)
        });
        let mut owned = None;
        let mut count = 0;
        let mut other_owner = None;
        let named = leases
            .chain(switches)
            .filter(|(found, _)| found.target.key().id == id);
        for (found, owner) in named {
            if owner == signer {
                count += 1;
                owned.get_or_insert(found);
            } else {
                other_owner.get_or_insert(owner);
            }
        }
        match (owned, other_owner) {
            (Some(found), _) if count == 1 => Ok(found),
            (Some(_), _) => Err(EngineError::Ambiguous {
                lease: id,
                signer,
                count,
            }),
            (None, Some(owner)) => Err(EngineError::WrongOwner {
                lease: id,
                owner,
                signer,
            }),
            (None, None) => Err(EngineError::UnknownLease(id)),
        }
    }

    fn configurable(&mut self, target: Target) -> Option<Configurable<'_>> {
        match target {
            Target::Lease(k) => self.state.leases.get_mut(&k).map(|r| Configurable {
                owner: &mut r.lease.owner,
                network: &mut r.network,
                last_seq: &mut r.last_seq,
            }),
            Target::Switch(k) => self.state.vswitches.get_mut(&k).map(|r| Configurable {
                owner: &mut r.lease.owner,
                network: &mut r.network,
                last_seq: &mut r.last_seq,
            }),
        }
    }

    pub(super) fn configure(&mut self, now: UnixTime, c: Config) -> Result<Event, EngineError> {
        let id = c.target;
        let found = self.resolve(id, c.signer)?;
        not_over(id, found.end, now)?;
        if now < found.start {
            return Err(EngineError::NotStarted {
                lease: id,
                start: found.start.0,
                now: now.0,
            });
        }
        let remembered = self.remembered_seq(now, c.signer, id);
        if let Some(last) = found.last_seq.max(remembered) {
            if c.seq <= last {
                return Err(EngineError::Replayed {
                    lease: id,
                    seq: c.seq,
                    last,
                });
            }
        }
        let key = found.target.key();
        let unknown = EngineError::UnknownLease(id); // (resolved just now: not reached)
        match c.command {
            Command::Release => {
                self.state.leases.remove(&key);
                self.state.vswitches.remove(&key);
                Ok(Event::Released(key))
            }
            Command::SetClasses {
                default_class,
                max_class,
            } => {
                let Target::Lease(k) = found.target else {
                    return Err(EngineError::NotApplicable(id));
                };
                let r = self.state.leases.get_mut(&k).ok_or(unknown)?;
                r.default_class = default_class;
                r.max_class = max_class;
                r.last_seq = Some(c.seq);
                Ok(Event::ClassesSet(key))
            }
            Command::Attach { network } => {
                let fields = self.configurable(found.target).ok_or(unknown)?;
                *fields.network = network;
                *fields.last_seq = Some(c.seq);
                Ok(Event::Attached {
                    lease: key,
                    network,
                })
            }
            Command::Transfer { new_owner } => {
                // A transfer detaches: the new owner attaches the lease itself. Otherwise the
                // previous owner chooses which of the new owner's networks it joins (a thief
                // attaches a copy of the owner's in-lease id to the owner's network, then hands
                // it over).
                if let Target::Lease(k) = found.target {
                    let r = self.state.leases.get_mut(&k).ok_or(unknown.clone())?;
                    r.default_class = FRESH_DEFAULT_CLASS;
                    r.max_class = FRESH_MAX_CLASS;
                }
                let fields = self.configurable(found.target).ok_or(unknown)?;
                *fields.owner = new_owner;
                *fields.network = 0;
                *fields.last_seq = Some(c.seq);
                Ok(Event::Transferred {
                    lease: key,
                    new_owner,
                })
            }
        }
    }

    /// The last sequence number `signer` had accepted for the target id `id` at any lease of
    /// that id, unless forgotten (see [`Self::remember_seq`]).
    fn remembered_seq(&self, now: UnixTime, signer: SigningKey, id: LeaseId) -> Option<u64> {
        let m = self.seqs.get(&(signer, id))?;
        let fresh = now.0 < m.last_use.0.saturating_add(SEQ_MEMORY_SECS);
        (fresh || self.listed(signer, id)).then_some(m.seq)
    }

    /// Whether a virtual switch owned by `signer` lists `id`.
    fn listed(&self, signer: SigningKey, id: LeaseId) -> bool {
        self.state.vswitches.values().any(|v| {
            v.lease.owner == signer && v.lease.ins.iter().chain(&v.lease.outs).any(|i| *i == id)
        })
    }

    /// Records that `signer`'s configuration `seq` of the lease `key` was accepted at `now`.
    ///
    /// An entry is forgotten [`SEQ_MEMORY_SECS`] after its last use, unless a virtual switch of
    /// its signer still lists the id (the case a replay could exploit). The memory holds at
    /// most [`SEQ_MEMORY_PER_LEASE`] × `max_leases` entries; when it is full, forgotten
    /// entries go first, then one entry whose signer owns no lease of that id any more
    /// (preferring ids no virtual switch of the signer lists): the least recently used one of
    /// the issuer with the most such entries, so that a peer churning leases and transfers to
    /// fill the memory evicts its own entries first. Entries of leases still held are never
    /// evicted: there are at most `max_leases` of them, so one can always go.
    pub(super) fn remember_seq(
        &mut self,
        now: UnixTime,
        signer: SigningKey,
        key: LeaseKey,
        seq: u64,
    ) {
        let entry = SeqMemory {
            seq,
            last_use: now,
            issuer: key.issuer,
        };
        let cap = self
            .config
            .max_leases
            .saturating_mul(SEQ_MEMORY_PER_LEASE)
            .max(1);
        if !self.seqs.contains_key(&(signer, key.id)) && self.seqs.len() >= cap {
            self.evict(now);
        }
        self.seqs.insert((signer, key.id), entry);
    }

    /// Drops the forgotten entries, or else one (see [`Self::remember_seq`]).
    fn evict(&mut self, now: UnixTime) {
        // (owner, id) of every lease and virtual switch held now, and of every id a virtual
        // switch lists.
        let leases = self.state.leases.iter().map(|(k, r)| (r.lease.owner, k.id));
        let switches = self
            .state
            .vswitches
            .iter()
            .map(|(k, r)| (r.lease.owner, k.id));
        let held: HashSet<(SigningKey, LeaseId)> = leases.chain(switches).collect();
        let listed: HashSet<(SigningKey, LeaseId)> = self
            .state
            .vswitches
            .values()
            .flat_map(|v| {
                let owner = v.lease.owner;
                v.lease
                    .ins
                    .iter()
                    .chain(&v.lease.outs)
                    .map(move |id| (owner, *id))
            })
            .collect();
        let before = self.seqs.len();
        self.seqs.retain(|k, m| {
            now.0 < m.last_use.0.saturating_add(SEQ_MEMORY_SECS)
                || held.contains(k)
                || listed.contains(k)
        });
        if self.seqs.len() < before {
            return;
        }
        let gone: Vec<((SigningKey, LeaseId), SeqMemory)> = self
            .seqs
            .iter()
            .filter(|(k, _)| !held.contains(*k))
            .map(|(k, m)| (*k, *m))
            .collect();
        let unlisted: Vec<_> = gone.iter().filter(|(k, _)| !listed.contains(k)).collect();
        let candidates: Vec<_> = if unlisted.is_empty() {
            gone.iter().collect()
        } else {
            unlisted
        };
        let mut per_issuer: HashMap<SigningKey, usize> = HashMap::new();
        for (_, m) in &candidates {
            *per_issuer.entry(m.issuer).or_default() += 1;
        }
        let Some((&issuer, _)) = per_issuer.iter().max_by_key(|(i, n)| (**n, **i)) else {
            return;
        };
        let oldest = candidates
            .iter()
            .filter(|(_, m)| m.issuer == issuer)
            .min_by_key(|(k, m)| (m.last_use, *k))
            .map(|(k, _)| *k);
        if let Some(k) = oldest {
            self.seqs.remove(&k);
        }
    }
}
