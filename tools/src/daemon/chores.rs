//! The first worker and its chores: everything besides packets that the daemon does on a
//! schedule or on its own sockets — the admin API, beacons, the route-server agent and the
//! supernode relay, the per-second tick (leases, link state, pings), and the log lines for the
//! node's events.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mio::{Events, Poll, Token};
use pktmesh_crypto_auth::PublicKey;
use pktmesh_lease_engine::UnixTime;
use pktmesh_node::beacon::BeaconError;
use pktmesh_node::core::{Node, NodeEvent, Pathfinder};
use pktmesh_node::egress::PortStats;
use pktmesh_node::eth::display_link;
use pktmesh_switch::Label;
use tracing::{debug, info, warn};

use super::admin::Admin;
use super::interfaces::BeaconSocket;
use super::lease_frames::{apply_frames, FrameLedger};
use super::workers::{lock, with_all_shards, ShardNode, Worker};
use super::{agent, leased_routes, snode, ADMIN, BEACON_BASE, MAX_WAIT, WAKER};

/// The first worker: a worker, plus the admin API, beacons, the route-server agent, the
/// supernode relay and the once-a-second chores.
pub(super) struct MainWorker<'a, P> {
    pub(super) poll: Poll,
    pub(super) worker: Worker<'a, P>,
    pub(super) admin: Option<Admin>,
    pub(super) beacons: Vec<BeaconSocket>,
    pub(super) agent: Option<agent::Agent>,
    pub(super) leased_routes: Option<leased_routes::LeasedRouteClient>,
    pub(super) relay: Option<snode::SupernodeRelay>,
    pub(super) tun_name: Option<String>,
    pub(super) next_beacon: Instant,
    pub(super) next_second: Instant,
    pub(super) lease_frames: FrameLedger,
    pub(super) egress_seen: HashMap<PublicKey, PortStats>,
}

impl<P: Pathfinder> MainWorker<'_, P> {
    pub(super) fn run(&mut self, shutdown: &AtomicBool) -> Result<()> {
        let shards = self.worker.shards;
        let mut events = Events::with_capacity(256);
        {
            let mut node = lock(&shards[0]);
            self.worker.io.flush(&mut node);
        }
        let mut beacons_ready = vec![false; self.beacons.len()];
        while !shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            let wait = if self.worker.busy() {
                Duration::ZERO
            } else {
                let mut due = lock(&shards[0]).poll_timeout().min(self.next_beacon);
                if let Some(d) = self.admin.as_ref().and_then(|a| a.pings.next_deadline()) {
                    due = due.min(d);
                }
                due.saturating_duration_since(now).min(MAX_WAIT)
            };
            match self.poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("poll"),
            }
            let mut admin_ready = false;
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    ADMIN => admin_ready = true,
                    Token(i) if i > BEACON_BASE - self.beacons.len() && i <= BEACON_BASE => {
                        if let Some(r) = beacons_ready.get_mut(BEACON_BASE - i) {
                            *r = true;
                        }
                    }
                    token => {
                        self.worker.note_event(token);
                    }
                }
            }
            {
                let mut node = lock(&shards[0]);
                if admin_ready {
                    if let Some(a) = self.admin.as_mut() {
                        with_all_shards(&mut node, shards, |all| a.drain(all));
                        a.report_host_requests(self.tun_name.as_deref());
                    }
                }
                for (b, ready) in self.beacons.iter().zip(beacons_ready.iter_mut()) {
                    if std::mem::take(ready) {
                        let heard = b.receive();
                        with_all_shards(&mut node, shards, |all| {
                            for (from, data) in &heard {
                                dispatch_beacon(all, *from, |n| {
                                    n.handle_beacon(Instant::now(), *from, data)
                                });
                            }
                        });
                    }
                }
                self.worker.round(&mut node);
                let heard = std::mem::take(&mut self.worker.io.eth_beacons);
                if !heard.is_empty() {
                    // Shard 0 has seen them; the others may own their senders.
                    with_all_shards(&mut node, shards, |all| {
                        for (from, data) in &heard {
                            dispatch_beacon(all.get_mut(1..).unwrap_or_default(), *from, |n| {
                                n.handle_eth_beacon(Instant::now(), *from, data)
                            });
                        }
                    });
                }
                self.chores(&mut node);
                self.worker.io.flush(&mut node);
                if let Some(a) = self.admin.as_mut() {
                    a.complete_pings(&mut node);
                }
                log_events(&mut node);
            }
            self.worker.run_handoffs();
        }
        Ok(())
    }

    /// The once-a-second tick, beacons when due, and the supernode relay. `node` is the first
    /// shard (held); the others are locked for the tick and the relay.
    pub(super) fn chores(&mut self, node: &mut ShardNode<P>) {
        let now = Instant::now();
        let shards = self.worker.shards;
        if now >= self.next_second {
            self.next_second = now + Duration::from_secs(1);
            let (agent, frames, seen) = (
                self.agent.as_ref(),
                &mut self.lease_frames,
                &mut self.egress_seen,
            );
            with_all_shards(node, shards, |all| {
                second_tick(all, agent, frames, seen, now);
            });
            if let Some(client) = self.leased_routes.as_ref() {
                with_all_shards(node, shards, |all| leased_routes_tick(all, client, now));
            }
        }
        if now >= self.next_beacon {
            self.next_beacon = now + pktmesh_node::beacon::BEACON_INTERVAL;
            for b in self.beacons.iter().filter(|b| b.settings.send) {
                b.send(node, self.tun_name.as_deref());
            }
            let beacon = node.eth_beacon();
            for e in self
                .worker
                .io
                .sinks
                .links
                .eth
                .iter_mut()
                .filter(|e| e.send_beacons)
            {
                e.socket.broadcast(&beacon);
            }
        }
        if let Some(r) = self.relay.as_mut() {
            // Queries arrive in the shard that owns the asker's session; the answer goes back
            // through that shard.
            with_all_shards(node, shards, |all| {
                for shard in all.iter_mut() {
                    while let Some(q) = shard.poll_supernode_query() {
                        r.submit(q);
                    }
                }
                while let Some((to, answer)) = r.poll_answer() {
                    let owner = all
                        .first()
                        .map_or(0, |n| usize::from(n.shard().owner_of(&to.key.address())));
                    if let Some(shard) = all.get_mut(owner) {
                        shard.answer_supernode_query(now, to, &answer);
                    }
                }
            });
        }
    }
}

/// Offers a beacon to each shard; the one that owns its sender peers with it.
pub(super) fn dispatch_beacon<P: Pathfinder>(
    shards: &mut [&mut ShardNode<P>],
    from: SocketAddr,
    mut handle: impl FnMut(&mut ShardNode<P>) -> Result<Option<Label>, BeaconError>,
) {
    for node in shards.iter_mut() {
        match handle(node) {
            Ok(Some(label)) => info!(peer = %display_link(&from), %label, "added peer from beacon"),
            Ok(None) => {}
            Err(e) => {
                debug!(peer = %display_link(&from), error = %e, "ignored beacon");
                return;
            }
        }
    }
}

pub(super) fn log_events<P: Pathfinder>(node: &mut Node<P>) {
    while let Some(e) = node.poll_event() {
        log_event(&e);
    }
}

/// Once a second, over every shard: lease time spans, lease frames from the route server (each
/// shard keeps the whole lease state: it classifies packets for the links it owns; a frame is
/// applied once, and one refused is not retried for a while: `lease_frames`), what the paced
/// links dropped, and a snapshot of our links for the agent.
pub(super) fn second_tick<P: Pathfinder>(
    shards: &mut [&mut ShardNode<P>],
    agent: Option<&agent::Agent>,
    frames: &mut FrameLedger,
    egress_seen: &mut HashMap<PublicKey, PortStats>,
    now: Instant,
) {
    let unix = UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    for node in shards.iter_mut() {
        node.handle_lease_timeout(unix);
    }
    for node in shards.iter() {
        for (key, stats) in node.egress_stats() {
            let seen = egress_seen.entry(key).or_default();
            if stats.dropped > seen.dropped {
                info!(peer = %key, dropped = stats.dropped - seen.dropped,
                    free_tier = stats.dropped_free - seen.dropped_free,
                    sent = (stats.sent_direct + stats.sent_queued) - (seen.sent_direct + seen.sent_queued),
                    queued = stats.queued, "paced link busy: packets dropped in the last second");
            }
            *seen = stats;
        }
    }
    let Some(agent) = agent else {
        return;
    };
    apply_frames(shards, agent, frames, unix, now);
    let Some(first) = shards.first() else {
        return;
    };
    let me = first.leases().snapshot();
    let my_key = *first.public_key();
    let stats: Vec<_> = shards
        .iter()
        .flat_map(|node| node.peer_stats(now))
        .filter(|p| p.state == "ESTABLISHED")
        .collect();
    // What the links carried and lost, for the link state the agent announces.
    agent.update_counters(
        stats
            .iter()
            .map(|p| {
                let (dropped, queued) = egress_seen
                    .get(&p.key)
                    .map_or((0, 0), |s| (s.dropped, s.queued));
                agent::LinkCounters {
                    peer: p.key,
                    bytes_in: p.bytes_in,
                    lost_in: p.receive.lost_packets,
                    bytes_out: p.bytes_out,
                    egress_dropped: dropped,
                    egress_queued: queued,
                }
            })
            .collect(),
    );
    let peers = stats
        .iter()
        .filter(|p| p.version != 0)
        .map(|p| agent::PeerLink {
            key: p.key,
            label: p.label.bits(),
            path_to_us: p.path_to_us,
            leased_kbps: me
                .leases
                .values()
                .filter(|r| {
                    r.lease.node.cjdns_key() == Some(my_key)
                        && r.lease.peer == *p.key.as_bytes()
                        && r.lease.start <= unix
                        && unix < r.lease.end
                })
                .map(|r| r.lease.kbps)
                .sum(),
        })
        .collect();
    agent.update(agent::LinkSnapshot {
        peers,
        capacity_kbps: first.link_capacities().default.unwrap_or(0),
    });
}

/// Once a second: whether our own traffic rides a lease (one owner's attached out-leases on
/// our ports) and so should follow the route server's paths; the destinations to ask it about;
/// the answers it gave since the last tick (`docs/leases.md`, "The leased path").
pub(super) fn leased_routes_tick<P: Pathfinder>(
    shards: &mut [&mut ShardNode<P>],
    client: &leased_routes::LeasedRouteClient,
    now: Instant,
) {
    let Some(first) = shards.first() else {
        return;
    };
    let unix = UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let my_key = *first.public_key();
    let from = *first.address();
    let owners: HashSet<[u8; 32]> = first
        .leases()
        .snapshot()
        .leases
        .values()
        .filter(|r| {
            r.lease.node.cjdns_key() == Some(my_key)
                && r.network != 0
                && r.lease.start <= unix
                && unix < r.lease.end
        })
        .map(|r| r.lease.owner.0)
        .collect();
    // Several owners: whose network our traffic belongs to is not ours to guess (the lease
    // engine leaves such traffic untagged too), so the DHT decides.
    let owner = match owners.len() {
        1 => owners.into_iter().next(),
        _ => None,
    };
    let mut destinations = Vec::new();
    let mut switched = false;
    for node in shards.iter_mut() {
        let routes = node.leased_routes();
        if routes.enabled() != owner.is_some() {
            routes.set_enabled(owner.is_some());
            switched = true;
        }
        destinations.extend(routes.wanted(now));
    }
    match (switched, owner.is_some()) {
        (true, true) => info!("our traffic rides a lease: asking the route server for its paths"),
        (true, false) => info!("no lease for our own traffic: paths from the DHT"),
        _ => {}
    }
    if let (Some(owner), false) = (owner, destinations.is_empty()) {
        client.submit(leased_routes::Request {
            from,
            owner: hex::encode(owner),
            destinations,
        });
    }
    while let Some(answer) = client.poll_answer() {
        // Every shard gets it: the one that owns the destination's session uses it.
        let mut changed = false;
        for node in shards.iter_mut() {
            let routes = node.leased_routes();
            match answer.label {
                Some(label) => changed |= routes.set(now, answer.destination, label),
                None => routes.unroutable(&answer.destination),
            }
        }
        match answer.label {
            Some(label) if changed => {
                info!(destination = %answer.destination, %label, "leased traffic follows the route server's path")
            }
            Some(_) => {}
            None => debug!(destination = %answer.destination, "no leased path: the DHT's path"),
        }
    }
}

pub(super) fn log_event(e: &NodeEvent) {
    match e {
        NodeEvent::PeerEstablished { key, address } => {
            info!(peer = %display_link(address), %key, "peer established")
        }
        NodeEvent::HandshakeRejected {
            from,
            error,
            suppressed,
        } => {
            warn!(peer = %from, %error, suppressed, "rejected handshake from unknown peer (wrong password or login?)")
        }
        NodeEvent::NoiseRejected {
            from,
            error,
            suppressed,
        } => {
            warn!(peer = %display_link(from), %error, suppressed, "rejected handshake (Noise; wrong password or login?)")
        }
        NodeEvent::PeerAuthFailed { key, error } => {
            warn!(%key, %error, "peer authentication failed (wrong password?)")
        }
        NodeEvent::PeerForgotten { key } => info!(%key, "forgot silent incoming peer"),
        NodeEvent::PacketsDropped {
            key,
            end_to_end,
            error,
            suppressed,
        } => {
            let session = if *end_to_end { "end-to-end" } else { "link" };
            warn!(%key, session, %error, suppressed, "received packets dropped (replayed, too late or undecryptable)")
        }
        NodeEvent::PeerSessionDead {
            key,
            address,
            silent_ms,
            suppressed,
        } => {
            warn!(peer = %display_link(address), %key, silent_ms, suppressed, "peer stopped answering (restarted?): link session reset, sending a fresh HELLO")
        }
        NodeEvent::PeerSessionRenewed {
            key,
            address,
            suppressed,
        } => {
            info!(peer = %display_link(address), %key, suppressed, "peer link session renewed: a new handshake completed and replaced the old session")
        }
        NodeEvent::HandshakesShed { link, end_to_end } => {
            warn!(
                link,
                end_to_end, "handshake budget spent: handshakes shed unopened (a flood?)"
            )
        }
    }
}
