//! Bandwidth leases for pktmesh, sans-IO: signed lease messages, per-lease rate metering with EMA
//! demotion, and a strict-priority egress scheduler per switch port.
//!
//! The PKT white paper lets link owners sell **bandwidth leases** (guaranteed kbit/s on one link
//! for a time span) and **virtual-switch leases** (the right to connect leased links through one
//! node). This crate is the node-side engine that makes those leases mean something per packet:
//!
//! - [`wire`]: the compact binary format of lease, virtual-switch-lease and configuration messages
//!   (zero-copy checked views, plain structs that emit).
//! - [`sign`]: Ed25519 with the cjdns identity (the clamped curve25519 scalar used directly as the
//!   Ed25519 scalar, as cjdns `crypto/Sign.c` does).
//! - [`engine`]: [`LeaseEngine`], which verifies and applies messages (control plane, wall-clock
//!   [`UnixTime`] as an argument) and classifies packets into a [`Priority`] (data plane,
//!   monotonic [`Nanos`] as an argument).
//! - [`meter`]: the per-lease token bucket and rate EMA that realise the white paper's demotion
//!   rule.
//! - [`sched`]: [`EgressScheduler`], bounded-memory O(1) strict priority with lowest-first drops.
//!
//! Nothing here reads a clock, touches a socket or draws randomness; `docs/leases.md` explains the
//! design decisions (where priority travels, the EMA formula, why fail-open).
//!
//! # Per-packet use (what a switch does)
//! ```
//! use pktmesh_lease_engine::{EgressScheduler, Enqueued, Nanos, Priority};
//! # use pktmesh_lease_engine::{LeaseEngine, EngineConfig, sign::Signer};
//! # let me = Signer::from_cjdns(&pktmesh_crypto_auth::PrivateKey::from_bytes([1; 32]));
//! # let mut engine = LeaseEngine::new(me.public(), EngineConfig::default());
//! let mut port: EgressScheduler<u32> = EgressScheduler::new(256);
//! let now = Nanos(1_000);
//! // arrival interface 3, next hop interface 5, 1280-byte packet, traffic class from the header.
//! let prio = engine.classify(now, 3, 5, 1280, 0xffff);
//! assert_eq!(prio, Priority::FREE); // no lease: free tier, never dropped for that reason
//! assert!(matches!(port.enqueue(now, prio, 1280, 42), Enqueued::Queued));
//! assert_eq!(port.dequeue(now).map(|d| d.token), Some(42));
//! ```
#![forbid(unsafe_code)]

pub mod engine;
pub mod meter;
pub mod priority;
pub mod sched;
pub mod sign;
pub mod wire;

pub use engine::{Classified, EngineConfig, EngineError, Event, LeaseEngine, LeaseKey};
pub use meter::{LeaseMeter, MeterStats, Verdict};
pub use priority::Priority;
pub use sched::{Dequeued, Dropped, EgressScheduler, Enqueued};
pub use wire::{Command, Config, Lease, Message, VirtualSwitchLease, WireError};

use core::fmt;

/// Monotonic time in nanoseconds since an arbitrary epoch chosen by the driver (data plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

/// Wall-clock time in seconds since the Unix epoch (lease spans, control plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixTime(pub u64);

/// A lease's 16-byte id, chosen at random by the issuing node.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub [u8; 16]);

impl fmt::Debug for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaseId({self})")
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
