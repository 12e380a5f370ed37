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

use pktmesh_crypto_auth::PublicKey;

use super::{EngineError, Event, LeaseEngine, LeaseKey, LeaseRecord, VirtualSwitchRecord};
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
                default_class: 0,
                max_class: 15,
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
        if let Some(last) = found.last_seq {
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
                let fields = self.configurable(found.target).ok_or(unknown)?;
                *fields.owner = new_owner;
                *fields.last_seq = Some(c.seq);
                Ok(Event::Transferred {
                    lease: key,
                    new_owner,
                })
            }
        }
    }
}
