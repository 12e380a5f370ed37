//! Link session liveness and renewal: a peer that restarted (and lost its keys) is noticed
//! from unanswered keepalives and re-handshaken; a new handshake replaces an established one
//! only when it completes; a replayed HELLO is refused. Nothing here changes the wire.
//!
//! Timings (docs/node.md, "Link session liveness"), for peers we connect to (we hold their
//! credentials, so we can send a HELLO; incoming peers come back by themselves):
//! * quiet for [`PROBE_AFTER`] (nothing authenticated from the peer): a keepalive ping, again
//!   every [`PROBE_TIMEOUT`] while it stays quiet;
//! * quiet for [`DEAD_AFTER`] with [`PROBES_LOST`] pings in a row unanswered (the last for
//!   [`PROBE_TIMEOUT`]): the session is dead; it is reset and a fresh HELLO goes out at once
//!   ([`NodeEvent::PeerSessionDead`]). One lost ping (or one ping the peer ignored) is not
//!   enough: a live idle peer is never reset for a single missing answer;
//! * while the handshake is incomplete the HELLO is repeated every [`HELLO_RETRY`] for the
//!   first [`UNRESPONSIVE_AFTER`] of silence (then at the keepalive's pace);
//! * our HELLO answered with a KEY but none of our pings under the new keys (half open: the
//!   peer died, or restarted again, right after answering): dead after [`PROBES_LOST`] pings,
//!   each unanswered for [`HELLO_RETRY`], instead of after `SETUP_TIMEOUT` (10 s).
//!
//! A responder killed just after its last packet is so declared dead 3.1–4.1 s later (one
//! keepalive tick of 1.024 s of jitter), and a restarted one has the HELLO within 1 s of its
//! socket opening.

use std::time::{Duration, Instant};

use pktmesh_crypto_auth::legacy::{Session, State};
use pktmesh_crypto_auth::{DecryptError, PublicKey};

use super::LinkStage;
use crate::core::types::{EventLog, NodeEvent};
use crate::peers::{Peer, PING_INTERVAL, UNRESPONSIVE_AFTER};
use crate::shard::DirectoryView;

/// A peer silent this long gets a liveness ping (one keepalive tick: two pings fit before
/// [`DEAD_AFTER`]).
pub(crate) const PROBE_AFTER: Duration = Duration::from_millis(1024);
/// A liveness ping unanswered this long counts as lost (and the next one goes out).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(1024);
/// A peer silent this long, with [`PROBES_LOST`] liveness pings lost, has a dead session.
pub(crate) const DEAD_AFTER: Duration = Duration::from_millis(3072);
/// How many liveness pings in a row must go unanswered before a session is declared dead.
pub(crate) const PROBES_LOST: u8 = 2;
/// While a handshake with a peer we connect to is incomplete, its HELLO repeats this often.
pub(crate) const HELLO_RETRY: Duration = PING_INTERVAL;

/// Resets the link session of `peer`, silent for `quiet`, and reports it
/// ([`NodeEvent::PeerSessionDead`]); its next packet is a fresh HELLO.
fn declare_dead(peer: &mut Peer, now: Instant, quiet: Duration, events: &mut EventLog) {
    peer.probes_unanswered = 0;
    peer.crypto.reset();
    let (key, address) = (peer.key, peer.link_address);
    let silent_ms = quiet.as_millis() as u64;
    events.liveness(now, false, |suppressed| NodeEvent::PeerSessionDead {
        key,
        address,
        silent_ms,
        suppressed,
    });
}

impl LinkStage {
    /// The keepalive tick's liveness pass: the peers to ping now (an established but quiet
    /// peer, or one whose handshake is incomplete: the ping goes out as a HELLO). A peer whose
    /// session is dead is reset first, and reported.
    pub(crate) fn liveness_probes(&mut self, now: Instant, events: &mut EventLog) -> Vec<u16> {
        let mut due = Vec::new();
        for peer in self.peers.iter_mut().flatten() {
            if peer.credentials.is_none() || peer.incompatible {
                continue;
            }
            let quiet = now.saturating_duration_since(peer.last_message);
            let ping_age = peer.last_ping.map(|t| now.saturating_duration_since(t));
            if !peer.crypto.is_established() {
                let retry_due = ping_age.is_none_or(|a| a >= HELLO_RETRY);
                // Our HELLO was answered with a KEY, but nothing we sent under the new keys
                // since (the pings go out as data): the peer that answered is gone (it crashed
                // or restarted again right after answering). Left alone, the half-open session
                // would last until SETUP_TIMEOUT (10 s); it is dead after PROBES_LOST pings.
                let half_open = peer.crypto.state() == State::ReceivedKey;
                if !half_open {
                    peer.probes_unanswered = 0;
                } else if retry_due && peer.probes_unanswered >= PROBES_LOST {
                    declare_dead(peer, now, quiet, events);
                    due.push(peer.slot);
                    continue;
                }
                if retry_due && (quiet < UNRESPONSIVE_AFTER || half_open) {
                    if half_open {
                        peer.probes_unanswered = peer.probes_unanswered.saturating_add(1);
                    }
                    due.push(peer.slot);
                }
                continue;
            }
            // A ping sent since the peer last spoke, unanswered for PROBE_TIMEOUT.
            let since_spoke = peer.last_ping.is_some_and(|t| t >= peer.last_message);
            if !since_spoke {
                peer.probes_unanswered = 0;
            }
            let lost = since_spoke && ping_age.is_some_and(|a| a >= PROBE_TIMEOUT);
            if quiet >= DEAD_AFTER && lost && peer.probes_unanswered >= PROBES_LOST {
                declare_dead(peer, now, quiet, events);
                due.push(peer.slot);
            } else if quiet >= PROBE_AFTER
                && (peer.last_ping.is_none_or(|t| t < peer.last_message) || lost)
            {
                peer.probes_unanswered = peer.probes_unanswered.saturating_add(1);
                due.push(peer.slot);
            }
        }
        due
    }

    /// After a packet from the peer in `slot` opened: if its session completed a handshake
    /// (`generation` was the session's before), a renewal replaced the established session,
    /// or a new entry of an incoming peer (that came back on a new port) is now established
    /// and replaces its older entries, which only now are removed.
    pub(super) fn renewed(
        &mut self,
        now: Instant,
        slot: u16,
        generation: u64,
        view: &mut DirectoryView,
        events: &mut EventLog,
    ) {
        let Some(peer) = self.peer(slot) else {
            return;
        };
        if peer.crypto.generation() == generation {
            return;
        }
        let (key, address, incoming) = (peer.key, peer.link_address, peer.is_incoming);
        let older: Vec<u16> = self
            .peers
            .iter()
            .flatten()
            .filter(|p| incoming && p.is_incoming && p.key == key && p.slot != slot)
            .map(|p| p.slot)
            .collect();
        for old in &older {
            if let Some(peer) = self.remove(*old, view) {
                self.departed.push(peer);
            }
        }
        if generation > 0 || !older.is_empty() {
            events.liveness(now, true, |suppressed| NodeEvent::PeerSessionRenewed {
                key,
                address,
                suppressed,
            });
        }
    }

    /// A HELLO from a new address opened into `session`: refused when its temporary key is one
    /// an entry of the same incoming peer already completed a handshake with (a replay).
    pub(super) fn refuse_replayed_hello(
        &self,
        key: &PublicKey,
        session: &Session,
    ) -> Result<(), DecryptError> {
        let Some(temp) = session.peer_temp_public() else {
            return Ok(());
        };
        let replayed = self
            .peers
            .iter()
            .flatten()
            .any(|p| &p.key == key && p.crypto.has_used_temp_key(&temp));
        if replayed {
            return Err(DecryptError::Replay);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Dead-session detection and renewal with explicit `now`.
    use super::super::tests::{login, view, FOR_ROUTER};
    use super::super::{LinkIn, LinkStage};
    use super::*;
    use crate::beacon;
    use crate::link_crypto::LinkCrypto;
    use crate::packet::PacketBuf;
    use pktmesh_crypto_auth::legacy::CryptoAuth;
    use pktmesh_crypto_auth::PrivateKey;
    use rand_core::SeedableRng;
    use std::net::SocketAddr;
    use std::sync::Arc;

    fn stage_of(private: PrivateKey, now: Instant) -> LinkStage {
        let mut s = LinkStage::new(
            Arc::new(CryptoAuth::new(private)),
            [7; beacon::PASSWORD_LEN],
            now,
        );
        s.add_user(b"pw", Some(b"a"), None).unwrap();
        s
    }

    /// Carries a packet sealed by `from` for `slot` to `to` (from `addr`); what it became.
    #[allow(clippy::too_many_arguments)]
    fn carry(
        rng: &mut rand_chacha::ChaCha20Rng,
        now: Instant,
        from: &mut LinkStage,
        slot: u16,
        to: &mut LinkStage,
        addr: SocketAddr,
        to_view: &mut DirectoryView,
        events: &mut EventLog,
    ) -> (LinkIn, Vec<u8>) {
        let mut buf = PacketBuf::from_slice(&FOR_ROUTER);
        from.seal(now, rng, slot, &mut buf).unwrap();
        let sent = buf.data().to_vec();
        (to.open(now, addr, &mut buf, to_view, events, false), sent)
    }

    #[test]
    fn a_silent_peer_is_probed_declared_dead_and_re_handshaken_with_its_restart() {
        let t0 = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(21);
        let (a_private, _, _) = PrivateKey::generate(&mut rng);
        let (b_private, b_key, _) = PrivateKey::generate(&mut rng);
        let mut a = stage_of(a_private, t0);
        let mut b = stage_of(b_private.clone(), t0);
        let (mut va, mut vb) = (view(), view());
        let mut events = EventLog::default();
        let a_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let (to_b, _) = a
            .connect(t0, b_addr, b_key, login(b"pw"), None, &mut va)
            .unwrap();
        // HELLO, KEY, data both ways.
        let (LinkIn::Opened { slot: to_a, .. }, _) = carry(
            &mut rng,
            t0,
            &mut a,
            to_b,
            &mut b,
            a_addr,
            &mut vb,
            &mut events,
        ) else {
            panic!("HELLO")
        };
        for _ in 0..2 {
            carry(
                &mut rng,
                t0,
                &mut b,
                to_a,
                &mut a,
                b_addr,
                &mut va,
                &mut events,
            );
            carry(
                &mut rng,
                t0,
                &mut a,
                to_b,
                &mut b,
                a_addr,
                &mut vb,
                &mut events,
            );
        }
        let peer = |s: &LinkStage, slot| s.peer(slot).unwrap().crypto.is_established();
        assert!(peer(&a, to_b) && peer(&b, to_a));
        a.peer_mut(to_b).unwrap().last_message = t0;

        let ms = |n| t0 + Duration::from_millis(n);
        // A live peer that ignores one probe (or whose answer is lost) and then speaks is not
        // reset: the count of unanswered probes starts again.
        assert_eq!(a.liveness_probes(ms(1100), &mut events), vec![to_b]);
        a.keepalive_sent(ms(1100), to_b, 7);
        assert_eq!(a.liveness_probes(ms(2124), &mut events), vec![to_b]);
        a.keepalive_sent(ms(2124), to_b, 8);
        carry(
            &mut rng,
            ms(2500),
            &mut b,
            to_a,
            &mut a,
            b_addr,
            &mut va,
            &mut events,
        );
        assert_eq!(a.peer(to_b).unwrap().probes_unanswered, 0);
        assert!(a.liveness_probes(ms(3148), &mut events).is_empty());
        assert_eq!(a.liveness_probes(ms(3600), &mut events), vec![to_b]);
        a.keepalive_sent(ms(3600), to_b, 9);
        assert_eq!(a.liveness_probes(ms(4624), &mut events), vec![to_b]);
        assert!(
            peer(&a, to_b),
            "one unanswered probe is no evidence of a dead peer"
        );
        assert!(events.pop().is_none());
        a.peer_mut(to_b).unwrap().last_message = t0;
        a.peer_mut(to_b).unwrap().last_ping = None;
        a.peer_mut(to_b).unwrap().probes_unanswered = 0;

        // B dies at t0. Quiet < PROBE_AFTER: nothing.
        assert!(a.liveness_probes(ms(1000), &mut events).is_empty());
        // Probed at PROBE_AFTER.
        assert_eq!(a.liveness_probes(ms(1076), &mut events), vec![to_b]);
        a.keepalive_sent(ms(1076), to_b, 1);
        // Unanswered but the ping is too recent to be lost.
        assert!(a.liveness_probes(ms(2000), &mut events).is_empty());
        // Lost: probed again; one lost probe is not enough to declare it dead.
        assert_eq!(a.liveness_probes(ms(2100), &mut events), vec![to_b]);
        a.keepalive_sent(ms(2100), to_b, 3);
        assert!(peer(&a, to_b));
        assert!(a.liveness_probes(ms(3000), &mut events).is_empty());
        assert!(events.pop().is_none());
        // Quiet DEAD_AFTER with two pings lost (the last for PROBE_TIMEOUT): reset, reported,
        // HELLO now.
        assert_eq!(a.liveness_probes(ms(3124), &mut events), vec![to_b]);
        assert!(!peer(&a, to_b));
        assert!(matches!(
            events.pop(),
            Some(NodeEvent::PeerSessionDead { key, silent_ms: 3124, .. }) if key == b_key
        ));
        a.keepalive_sent(ms(3124), to_b, 2);
        // The HELLO is repeated every HELLO_RETRY while B is away.
        assert!(a.liveness_probes(ms(3500), &mut events).is_empty());
        assert_eq!(a.liveness_probes(ms(4148), &mut events), vec![to_b]);

        // B restarts (same key, nothing remembered) and gets the next HELLO: up again.
        let mut b = stage_of(b_private, ms(4000));
        let mut vb = view();
        let (LinkIn::Opened { slot: to_a, .. }, _) = carry(
            &mut rng,
            ms(4148),
            &mut a,
            to_b,
            &mut b,
            a_addr,
            &mut vb,
            &mut events,
        ) else {
            panic!("the HELLO after the reset opens at the restarted peer")
        };
        carry(
            &mut rng,
            ms(4149),
            &mut b,
            to_a,
            &mut a,
            b_addr,
            &mut va,
            &mut events,
        );
        carry(
            &mut rng,
            ms(4150),
            &mut a,
            to_b,
            &mut b,
            a_addr,
            &mut vb,
            &mut events,
        );
        carry(
            &mut rng,
            ms(4151),
            &mut b,
            to_a,
            &mut a,
            b_addr,
            &mut va,
            &mut events,
        );
        assert!(peer(&a, to_b) && peer(&b, to_a));
        assert!(matches!(
            events.pop(),
            Some(NodeEvent::PeerSessionRenewed { key, .. }) if key == b_key
        ));
        // Answered again: no more probes until it is quiet again.
        assert!(a.liveness_probes(ms(5000), &mut events).is_empty());
        assert!(events.pop().is_none());
    }

    #[test]
    fn a_half_open_handshake_whose_peer_went_away_is_reset_within_seconds() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(23);
        let (a_private, _, _) = PrivateKey::generate(&mut rng);
        let (b_private, b_key, _) = PrivateKey::generate(&mut rng);
        let mut a = stage_of(a_private, t0);
        let mut b = stage_of(b_private.clone(), t0);
        let (mut va, mut vb) = (view(), view());
        let mut events = EventLog::default();
        let a_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let (to_b, _) = a
            .connect(t0, b_addr, b_key, login(b"pw"), None, &mut va)
            .unwrap();
        assert_eq!(a.liveness_probes(t0, &mut events), vec![to_b]);
        a.keepalive_sent(t0, to_b, 1);
        // The HELLO reaches B, B's KEY reaches A; then B is gone (a responder that crashed or
        // restarted right after answering): A's data under the new keys is never answered.
        let (LinkIn::Opened { slot: to_a, .. }, _) = carry(
            &mut rng,
            t0,
            &mut a,
            to_b,
            &mut b,
            a_addr,
            &mut vb,
            &mut events,
        ) else {
            panic!("HELLO")
        };
        carry(
            &mut rng,
            ms(1),
            &mut b,
            to_a,
            &mut a,
            b_addr,
            &mut va,
            &mut events,
        );
        let state = |s: &LinkStage| s.peer(to_b).unwrap().crypto.state();
        assert_eq!(state(&a), State::ReceivedKey);
        a.keepalive_sent(ms(2), to_b, 2);
        // Probed like a quiet established peer, the pings going out as data; two lost.
        assert!(a.liveness_probes(ms(1000), &mut events).is_empty());
        assert_eq!(a.liveness_probes(ms(1100), &mut events), vec![to_b]);
        a.keepalive_sent(ms(1100), to_b, 3);
        assert_eq!(a.liveness_probes(ms(2124), &mut events), vec![to_b]);
        a.keepalive_sent(ms(2124), to_b, 4);
        assert_eq!(state(&a), State::ReceivedKey);
        assert!(events.pop().is_none());
        // Reset (not after SETUP_TIMEOUT, 10 s), reported, and a fresh HELLO goes out.
        assert_eq!(a.liveness_probes(ms(3148), &mut events), vec![to_b]);
        assert_eq!(state(&a), State::Init);
        assert!(matches!(
            events.pop(),
            Some(NodeEvent::PeerSessionDead { key, .. }) if key == b_key
        ));
        a.keepalive_sent(ms(3148), to_b, 5);
        // The restarted B answers that HELLO: the link is up again.
        let mut b = stage_of(b_private, ms(3000));
        let mut vb = view();
        let (LinkIn::Opened { slot: to_a, .. }, _) = carry(
            &mut rng,
            ms(3148),
            &mut a,
            to_b,
            &mut b,
            a_addr,
            &mut vb,
            &mut events,
        ) else {
            panic!("the fresh HELLO opens at the restarted peer")
        };
        for at in [3149, 3151] {
            carry(
                &mut rng,
                ms(at),
                &mut b,
                to_a,
                &mut a,
                b_addr,
                &mut va,
                &mut events,
            );
            carry(
                &mut rng,
                ms(at + 1),
                &mut a,
                to_b,
                &mut b,
                a_addr,
                &mut vb,
                &mut events,
            );
        }
        assert!(a.peer(to_b).unwrap().crypto.is_established());
        assert!(b.peer(to_a).unwrap().crypto.is_established());
    }

    #[test]
    fn a_replayed_hello_changes_nothing_and_a_new_port_replaces_the_entry_only_once_established() {
        let t0 = Instant::now();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(22);
        let (a_private, a_key, _) = PrivateKey::generate(&mut rng);
        let (b_private, b_key, _) = PrivateKey::generate(&mut rng);
        let mut a = stage_of(a_private.clone(), t0);
        let mut b = stage_of(b_private, t0);
        let (mut va, mut vb) = (view(), view());
        let mut events = EventLog::default();
        let a_addr: SocketAddr = "10.0.0.1:1".parse().unwrap();
        let b_addr: SocketAddr = "10.0.0.2:2".parse().unwrap();
        let (to_b, _) = a
            .connect(t0, b_addr, b_key, login(b"pw"), None, &mut va)
            .unwrap();
        let (LinkIn::Opened { slot: to_a, .. }, hello) = carry(
            &mut rng,
            t0,
            &mut a,
            to_b,
            &mut b,
            a_addr,
            &mut vb,
            &mut events,
        ) else {
            panic!("HELLO")
        };
        for _ in 0..2 {
            carry(
                &mut rng,
                t0,
                &mut b,
                to_a,
                &mut a,
                b_addr,
                &mut va,
                &mut events,
            );
            carry(
                &mut rng,
                t0,
                &mut a,
                to_b,
                &mut b,
                a_addr,
                &mut vb,
                &mut events,
            );
        }
        let generation = b.peer(to_a).unwrap().crypto.generation();
        assert_eq!(generation, 1);
        while events.pop().is_some() {}
        // The captured HELLO, replayed from A's address and from another one.
        for (i, from) in [a_addr, "10.0.0.9:9".parse().unwrap()]
            .into_iter()
            .enumerate()
        {
            let at = t0 + Duration::from_secs(2 * i as u64 + 1);
            let mut buf = PacketBuf::from_slice(&hello);
            assert_eq!(
                b.open(at, from, &mut buf, &mut vb, &mut events, false),
                LinkIn::Drop
            );
            assert!(matches!(
                events.pop(),
                Some(
                    NodeEvent::PacketsDropped {
                        error: DecryptError::Replay,
                        ..
                    } | NodeEvent::HandshakeRejected {
                        error: DecryptError::Replay,
                        ..
                    }
                )
            ));
        }
        let LinkCrypto::Legacy(s) = &b.peer(to_a).unwrap().crypto else {
            panic!("a legacy link")
        };
        assert!(s.is_established() && !s.is_renewing());
        assert_eq!((b.len(), s.generation()), (1, generation));
        let (_, _) = carry(
            &mut rng,
            t0,
            &mut a,
            to_b,
            &mut b,
            a_addr,
            &mut vb,
            &mut events,
        );
        assert!(events.pop().is_none(), "A's data still opens");

        // A restarts on a new port: its HELLO makes a second entry; the first stays (and
        // works) until the new session is established.
        let t1 = t0 + Duration::from_secs(10);
        let mut a2 = stage_of(a_private, t1);
        let mut va2 = view();
        let a2_addr: SocketAddr = "10.0.0.1:7".parse().unwrap();
        let (to_b2, _) = a2
            .connect(t1, b_addr, b_key, login(b"pw"), None, &mut va2)
            .unwrap();
        let (LinkIn::Opened { slot: to_a2, .. }, _) = carry(
            &mut rng,
            t1,
            &mut a2,
            to_b2,
            &mut b,
            a2_addr,
            &mut vb,
            &mut events,
        ) else {
            panic!("new HELLO")
        };
        assert_eq!(b.len(), 2);
        assert!(matches!(
            carry(&mut rng, t1, &mut a, to_b, &mut b, a_addr, &mut vb, &mut events).0,
            LinkIn::Opened { slot, .. } if slot == to_a
        ));
        carry(
            &mut rng,
            t1,
            &mut b,
            to_a2,
            &mut a2,
            b_addr,
            &mut va2,
            &mut events,
        );
        carry(
            &mut rng,
            t1,
            &mut a2,
            to_b2,
            &mut b,
            a2_addr,
            &mut vb,
            &mut events,
        );
        assert_eq!(
            b.len(),
            1,
            "the old entry goes once the new one is established"
        );
        assert_eq!(b.take_departed().map(|p| p.link_address), Some(a_addr));
        assert!(matches!(
            events.pop(),
            Some(NodeEvent::PeerSessionRenewed { key, address, .. })
                if key == a_key && address == a2_addr
        ));
    }
}
