//! A peer link's encryption: legacy CryptoAuth, Noise, or the negotiation between the two
//! while a peer we connect to has not shown which it speaks (`docs/node.md`, "Noise on peer
//! links").
//!
//! What is here is the state and what can be asked of it without the link stage's context
//! (keys, timers, the budget); the link stage (`core::link`, its `noise` module) moves a peer
//! from one variant to the next.

use std::time::Instant;

use pktmesh_crypto_auth::legacy::{Session, State};
use pktmesh_crypto_auth::noise::Link;

use crate::core::ReceiveStats;

/// Which link crypto a node offers (`pktmesh.linkCrypto`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkCryptoMode {
    /// Noise where the peer speaks it: peers we connect to are negotiated, Noise initiations
    /// naming an authorized user are answered. The default.
    #[default]
    Noise,
    /// Legacy CryptoAuth only, as before Noise: HELLOs, and Noise initiations are refused.
    Legacy,
}

/// How a peer link encrypts.
// The legacy session stays inline, as it was before Noise: it is what most links carry, and
// a peer table of 257 slots does not mind the size of the rarer variants' boxes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum LinkCrypto {
    /// A peer we connect to, before anything went out: the first packet for it starts a
    /// [`LinkCrypto::Negotiating`]. A reset Noise link comes back here too, as a `renewal`:
    /// its next establishment is reported as a renewed session.
    Unstarted {
        /// A link to the peer was up before.
        renewal: bool,
    },
    /// A peer we connect to that has not answered yet: our Noise initiation is out and, once
    /// it went unanswered for `HELLO_RETRY`, legacy HELLOs go with every retry. Whichever
    /// handshake completes first decides.
    Negotiating(Box<Negotiation>),
    /// Noise (WireGuard IKpsk2 in cjdns' framing).
    Noise(Box<Link>),
    /// Legacy CryptoAuth: a stock cjdns peer, `pktmesh.linkCrypto: "legacy"`, or a peer that
    /// connected to us with a HELLO.
    Legacy(Session),
}

/// Both handshakes of a negotiation.
#[derive(Debug)]
pub struct Negotiation {
    /// Our Noise handshake (its initiations name our user in PktmeshPsk, which only pktmesh
    /// reads: a stock cjdns 22.3 node drops them unanswered).
    pub noise: Link,
    /// The legacy session whose HELLO goes out from `HELLO_RETRY` on.
    pub legacy: Session,
    /// When the first initiation went out.
    pub started: Instant,
    /// When the last one did.
    pub last_initiation: Instant,
    /// A link to the peer was up before (reset by liveness, or its keys expired).
    pub renewal: bool,
}

impl LinkCrypto {
    /// Whether the link carries data both ways.
    pub fn is_established(&self) -> bool {
        match self {
            Self::Legacy(s) => s.is_established(),
            Self::Noise(l) => l.is_established(),
            Self::Unstarted { .. } | Self::Negotiating(_) => false,
        }
    }

    /// The Noise link, of a Noise link or of a negotiation.
    pub fn noise_mut(&mut self) -> Option<&mut Link> {
        match self {
            Self::Noise(l) => Some(l),
            Self::Negotiating(n) => Some(&mut n.noise),
            Self::Legacy(_) | Self::Unstarted { .. } => None,
        }
    }

    /// Whether the link speaks Noise (`noiseProto` in `InterfaceController_peerStats`).
    pub fn is_noise(&self) -> bool {
        matches!(self, Self::Noise(_))
    }

    /// The state as cjdns names a CryptoAuth session's: a Noise link is `ESTABLISHED` once its
    /// keys carry data both ways, `SENT_KEY` while a responder waits for the initiator's first
    /// packet, `SENT_HELLO` while a handshake we started waits for its response.
    pub fn state(&self) -> State {
        match self {
            Self::Legacy(s) => s.state(),
            Self::Noise(l) if l.is_established() => State::Established,
            Self::Noise(l) if l.is_handshaking() => State::SentHello,
            Self::Noise(_) => State::SentKey,
            Self::Negotiating(_) => State::SentHello,
            Self::Unstarted { .. } => State::Init,
        }
    }

    /// Handshakes completed (it changes when the link becomes established, first or again). A
    /// Noise link's routine re-keys (every two minutes) do not count: they are no renewal.
    pub fn generation(&self) -> u64 {
        match self {
            Self::Legacy(s) => s.generation(),
            Self::Noise(l) => u64::from(l.generation() > 0),
            Self::Unstarted { .. } | Self::Negotiating(_) => 0,
        }
    }

    /// Ends a negotiation: the link is Noise (`noise`) or legacy from now on, with the keys of
    /// that half. Anything else stays as it is. Whether it renewed a link that was up before.
    pub fn settle(&mut self, noise: bool) -> bool {
        if !matches!(self, Self::Negotiating(_)) {
            return false;
        }
        let Self::Negotiating(n) = std::mem::replace(self, Self::Unstarted { renewal: false })
        else {
            return false;
        };
        let Negotiation {
            noise: link,
            legacy,
            renewal,
            ..
        } = *n;
        *self = if noise {
            Self::Noise(Box::new(link))
        } else {
            Self::Legacy(legacy)
        };
        renewal
    }

    /// Forgets the keys so that the next packet starts over: a legacy session is reset (its
    /// next packet is a HELLO), anything else starts a new negotiation.
    pub fn reset(&mut self) {
        let renewal = match self {
            Self::Legacy(s) => return s.reset(),
            Self::Noise(_) => true,
            Self::Negotiating(n) => n.renewal,
            Self::Unstarted { renewal } => *renewal,
        };
        *self = Self::Unstarted { renewal };
    }

    /// Whether `temp` is the peer's temporary key of a legacy handshake this link completed
    /// (a HELLO carrying it is a replay).
    pub fn has_used_temp_key(&self, temp: &[u8; 32]) -> bool {
        matches!(self, Self::Legacy(s) if s.has_used_temp_key(temp))
    }

    /// New credentials for handshakes we start (a beacon peer's new beacon password).
    pub fn set_auth(&mut self, password: Option<&[u8]>, login: Option<&[u8]>) {
        match self {
            Self::Legacy(s) => s.set_auth(password, login),
            Self::Noise(l) => l.set_auth(password, login),
            Self::Negotiating(n) => {
                n.legacy.set_auth(password, login);
                n.noise.set_auth(password, login);
            }
            Self::Unstarted { .. } => {}
        }
    }

    /// The receive counters of the keys in use (since their handshake), with `dropped`
    /// packets refused so far.
    pub fn receive_stats(&self, dropped: u64) -> ReceiveStats {
        match self {
            Self::Legacy(s) => ReceiveStats::of(s, dropped),
            Self::Noise(l) => {
                let c = l.receive_counts();
                ReceiveStats {
                    received_packets: c.received,
                    lost_packets: c.lost,
                    duplicates: c.duplicates,
                    received_out_of_range: c.out_of_range,
                    dropped,
                }
            }
            Self::Unstarted { .. } | Self::Negotiating(_) => ReceiveStats {
                dropped,
                ..ReceiveStats::default()
            },
        }
    }
}
