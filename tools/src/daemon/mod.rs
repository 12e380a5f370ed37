//! The `cjdroute` driver: sockets, the TUN device, timers and signals around the sans-IO node
//! core of `pktmesh-node`.
//!
//! One thread runs a `mio` poll loop over the UDP sockets, the Ethernet interfaces ([`eth`]),
//! the TUN device and the admin socket.
//! Every packet is handed to the node in one reusable [`PacketBuf`] and written wherever the
//! node says; nothing on that path allocates. UDP is batched ([`udp`]): up to 32 datagrams per
//! `recvmmsg` (UDP GRO super-datagrams split by segment size), and datagrams for peers queued
//! and sent with UDP GSO at the end of every drain round or when the queue is full.
//! Control-plane packets the node queues are flushed after every round. What the node does
//! lives in `pktmesh-node`; this module only moves bytes and keeps time.

pub mod agent;
pub mod eth;
pub mod snode;
pub mod tun;
pub mod udp;

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_lease_engine::UnixTime;
use pktmesh_node::admin::AdminServer;
use pktmesh_node::core::{Node, NodeEvent, Output, Pathfinder, Transmit};
use pktmesh_node::egress::PortStats;
use pktmesh_node::eth::{display_link, EthLink};
use pktmesh_node::node_admin::{NodeAdmin, PendingPings};
use pktmesh_node::offload::Coalescer;
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::peers::PeerCredentials;
use sha2::{Digest, Sha256};
use tracing::{debug, info, warn};

use self::eth::EthSocket;
use self::tun::Tun;

/// A peer to connect to: over UDP (`A` is its socket address) or Ethernet (`A` is its MAC).
#[derive(Debug, Clone)]
pub struct PeerSpec<A = SocketAddr> {
    /// Its UDP address or MAC.
    pub address: A,
    /// Its public key.
    pub key: PublicKey,
    /// Password it authorized.
    pub password: String,
    /// Our login there.
    pub login: Option<String>,
    /// Display name.
    pub name: Option<String>,
}

/// A password incoming peers may use.
#[derive(Debug, Clone)]
pub struct AuthorizedPassword {
    /// The password.
    pub password: String,
    /// Login name.
    pub user: Option<String>,
    /// Only for this peer address.
    pub ipv6: Option<Address>,
}

/// Everything the driver needs to run a node.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// The node's private key.
    pub private_key: PrivateKey,
    /// UDP addresses to bind.
    pub udp_binds: Vec<SocketAddr>,
    /// Peers to connect to.
    pub peers: Vec<PeerSpec>,
    /// Passwords for incoming peers.
    pub authorized: Vec<AuthorizedPassword>,
    /// TUN device name, or `None` to run without TUN.
    pub tun: Option<String>,
    /// Where the admin API listens, if anywhere.
    pub admin_bind: Option<SocketAddr>,
    /// The admin password (`NONE` turns authentication off).
    pub admin_password: Vec<u8>,
    /// LAN beaconing, per UDP interface that has it on.
    pub beacons: Vec<BeaconSettings>,
    /// Egress capacity of every peer link, kbit/s (`pktmesh.linkCapacityKbps`).
    pub link_kbps: Option<u32>,
    /// The route server to announce to and take lease configuration from.
    pub route_server: Option<agent::RouteServerSettings>,
    /// HTTP API of the route server this node is the cjdns face of (`pktmesh.supernode.url`).
    pub supernode_url: Option<String>,
    /// Use TUN checksum and segmentation offloads (`pktmesh.tunOffload`, default on).
    pub tun_offload: bool,
    /// Ethernet interfaces (`interfaces.ETHInterface`).
    pub eth: Vec<EthSettings>,
}

/// One `ETHInterface` entry.
#[derive(Debug, Clone)]
pub struct EthSettings {
    /// The device, or `all` for every Ethernet device but `lo` (and our TUN).
    pub device: String,
    /// Peer with the senders of beacons (`beacon` 1 or 2).
    pub accept_beacons: bool,
    /// Send beacons too (`beacon` 2).
    pub send_beacons: bool,
    /// Peers to connect to, by MAC (cjdns ignores them when `device` is `all`; so do we).
    pub peers: Vec<PeerSpec<[u8; 6]>>,
}

/// Beaconing of one UDP interface (`beacon`, `beaconPort`, `beaconDevices`).
#[derive(Debug, Clone)]
pub struct BeaconSettings {
    /// Index into [`DaemonSettings::udp_binds`].
    pub udp_index: usize,
    /// Send beacons too (mode 2), not only accept them (mode 1).
    pub send: bool,
    /// The beacon port (cjdns generates 64512).
    pub port: u16,
    /// Device names, broadcast addresses, or `all`.
    pub devices: Vec<String>,
}

const TUN: Token = Token(usize::MAX - 1);
const ADMIN: Token = Token(usize::MAX - 2);
const WAKER: Token = Token(usize::MAX - 3);
/// Beacon sockets use tokens from here down.
const BEACON_BASE: usize = usize::MAX - 1000;
/// Ethernet interfaces use tokens from here down.
const ETH_BASE: usize = usize::MAX - 2000;
const MAX_BATCH: usize = 64;
const SOCKET_BUFFER: usize = 4 << 20;

/// Runs the node until `shutdown` is set.
pub fn run<P: Pathfinder>(
    settings: DaemonSettings,
    pathfinder: P,
    shutdown: Arc<AtomicBool>,
) -> Result<()> {
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let now = Instant::now();
    let mut node = Node::new(settings.private_key.clone(), pathfinder, seed, now);
    info!(address = %node.address(), key = %node.public_key(), "node identity");
    node.set_link_capacity(settings.link_kbps);
    if let Some(kbps) = node.link_capacity() {
        info!(
            kbps,
            "peer links paced at their capacity, queued by lease priority"
        );
    }
    let agent = match &settings.route_server {
        Some(rs) => {
            info!(url = %rs.url, offer = ?rs.offer, "route server agent on");
            Some(
                agent::Agent::start(settings.private_key.clone(), rs.clone())
                    .context("starting the route-server agent")?,
            )
        }
        None => None,
    };
    let mut next_second = Instant::now();
    let mut applied_frames: HashSet<[u8; 32]> = HashSet::new();
    let mut egress_seen = HashMap::new();
    for a in &settings.authorized {
        node.add_authorized_password(
            a.password.as_bytes(),
            a.user.as_deref().map(str::as_bytes),
            a.ipv6,
        )
        .with_context(|| format!("authorizedPasswords entry for user {:?}", a.user))?;
    }

    let mut poll = Poll::new().context("creating the poll instance")?;
    let mut relay = match &settings.supernode_url {
        Some(url) => {
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            node.set_supernode_face(true);
            info!(%url, "supernode face on: supernode queries go to this route server");
            Some(snode::SupernodeRelay::start(url, waker).context("starting the supernode relay")?)
        }
        None => None,
    };
    let mut sockets = Vec::new();
    for (i, bind) in settings.udp_binds.iter().enumerate() {
        let std_sock = bind_udp(bind).with_context(|| format!("binding UDP {bind}"))?;
        std_sock.set_nonblocking(true)?;
        // Large buffers ride out bursts between two turns of the loop; the kernel caps them
        // at net.core.{r,w}mem_max.
        let sref = socket2::SockRef::from(&std_sock);
        let _ = sref.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sref.set_send_buffer_size(SOCKET_BUFFER);
        let mut sock = UdpSocket::from_std(std_sock);
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE)?;
        sockets.push(sock);
    }

    let tun = match &settings.tun {
        Some(name) => {
            let t = Tun::create(name, (*node.address()).into(), settings.tun_offload)
                .with_context(|| format!("creating TUN device {name:?}"))?;
            poll.registry()
                .register(&mut SourceFd(&t.as_raw_fd()), TUN, Interest::READABLE)?;
            info!(
                device = t.name(),
                address = %node.address(),
                mtu = tun::TUN_MTU,
                offload = t.offload(),
                udp_offload = t.udp_offload(),
                "TUN up"
            );
            Some(t)
        }
        None => None,
    };

    let mut beacons = Vec::new();
    for (i, b) in settings.beacons.iter().enumerate() {
        let Some(data) = sockets.get(b.udp_index) else {
            continue;
        };
        let data_addr = data.local_addr()?;
        let bind = SocketAddr::new(data_addr.ip(), b.port);
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        sock.set_reuse_address(true)?;
        sock.set_broadcast(true)?;
        sock.set_nonblocking(true)?;
        sock.bind(&bind.into())
            .with_context(|| format!("binding the beacon socket {bind}"))?;
        let mut sock = UdpSocket::from_std(sock.into());
        poll.registry()
            .register(&mut sock, Token(BEACON_BASE - i), Interest::READABLE)?;
        info!(bind = %bind, send = b.send, "beacons on");
        beacons.push(BeaconSocket {
            socket: sock,
            settings: b.clone(),
            data_port: data_addr.port(),
        });
    }
    let tun_name = tun.as_ref().map(|t| t.name().to_string());
    let mut next_beacon = Instant::now();
    let eth = open_eth(&settings.eth, tun_name.as_deref(), &poll, &mut node)?;

    let mut admin = match settings.admin_bind {
        Some(bind) => {
            let std_sock = StdUdpSocket::bind(bind)
                .with_context(|| format!("binding the admin API to {bind}"))?;
            std_sock.set_nonblocking(true)?;
            let mut sock = UdpSocket::from_std(std_sock);
            poll.registry()
                .register(&mut sock, ADMIN, Interest::READABLE)?;
            info!(bind = %bind, "admin API up");
            Some(Admin {
                socket: sock,
                server: AdminServer::new(settings.admin_password.clone()),
                pings: PendingPings::default(),
            })
        }
        None => None,
    };

    for p in &settings.peers {
        connect(&mut node, p.address, p);
    }

    let mut events = Events::with_capacity(256);
    let mut buf = PacketBuf::new();
    let mut io = Io {
        links: Links {
            udp: udp::Udp::new(sockets).context("setting up the UDP sockets")?,
            eth,
        },
        eth_rx: eth::EthRxBatch::new(),
        rx: udp::RxBatch::new(),
        tun_out: TunOut {
            tun: tun.as_ref(),
            coalescer: tun
                .as_ref()
                .filter(|t| t.offload())
                .map(|t| Coalescer::new(t.udp_offload())),
            writes: 0,
        },
        tun_offload: tun
            .as_ref()
            .is_some_and(Tun::offload)
            .then(TunOffloadBuffers::new),
    };
    for (i, sock) in io.links.udp.sockets().enumerate() {
        let (gso, gro) = io.links.udp.offloads(i);
        info!(bind = %sock.local_addr()?, gso, gro, "UDP interface up");
    }
    io.flush(&mut node);
    let mut tun_pending = false;
    let mut socket_pending = vec![false; io.links.udp.len()];
    let mut eth_pending = vec![false; io.links.eth.len()];
    while !shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        // Sources with unread data are served again at once (mio is edge-triggered).
        let busy = tun_pending || socket_pending.iter().chain(&eth_pending).any(|&p| p);
        let wait = if busy {
            Duration::ZERO
        } else {
            node.poll_timeout()
                .min(next_beacon)
                .saturating_duration_since(now)
                .min(Duration::from_millis(50))
        };
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("poll"),
        }
        for event in events.iter() {
            match event.token() {
                TUN => tun_pending = true,
                WAKER => {}
                ADMIN => {
                    if let Some(a) = admin.as_mut() {
                        a.drain(&mut node);
                    }
                }
                Token(i) if i > ETH_BASE - eth_pending.len() && i <= ETH_BASE => {
                    if let Some(p) = eth_pending.get_mut(ETH_BASE - i) {
                        *p = true;
                    }
                }
                Token(i) if i > BEACON_BASE - beacons.len() && i <= BEACON_BASE => {
                    if let Some(b) = beacons.get(BEACON_BASE - i) {
                        b.receive(&mut node);
                    }
                }
                Token(i) => {
                    if let Some(p) = socket_pending.get_mut(i) {
                        *p = true;
                    }
                }
            }
        }
        // One batch from each ready source per round, so neither direction starves the other.
        if tun_pending {
            tun_pending = io.drain_tun(&mut node, &mut buf);
        }
        for (i, pending) in socket_pending.iter_mut().enumerate() {
            if *pending {
                *pending = io.drain_socket(&mut node, &mut buf, i);
            }
        }
        for (i, pending) in eth_pending.iter_mut().enumerate() {
            if *pending {
                *pending = io.drain_eth(&mut node, &mut buf, i);
            }
        }
        let now = Instant::now();
        io.drain_egress(&mut node, &mut buf, now);
        if now >= node.poll_timeout() {
            node.handle_timeout(now);
        }
        if now >= next_second {
            next_second = now + Duration::from_secs(1);
            second_tick(
                &mut node,
                agent.as_ref(),
                &mut applied_frames,
                &mut egress_seen,
                now,
            );
        }
        if now >= next_beacon {
            next_beacon = now + pktmesh_node::beacon::BEACON_INTERVAL;
            for b in beacons.iter().filter(|b| b.settings.send) {
                b.send(&node, tun_name.as_deref());
            }
            let beacon = node.eth_beacon();
            for e in io.links.eth.iter_mut().filter(|e| e.send_beacons) {
                e.socket.broadcast(&beacon);
            }
        }
        if let Some(r) = relay.as_mut() {
            while let Some(q) = node.poll_supernode_query() {
                r.submit(q);
            }
            while let Some((to, answer)) = r.poll_answer() {
                node.answer_supernode_query(now, to, &answer);
            }
        }
        io.flush(&mut node);
        if let Some(a) = admin.as_mut() {
            a.complete_pings(&mut node);
        }
        while let Some(e) = node.poll_event() {
            log_event(&e);
        }
    }
    info!("shutting down");
    Ok(())
}

/// Once a second: lease time spans, lease frames from the route server, and a snapshot of our
/// links for the agent.
fn second_tick<P: Pathfinder>(
    node: &mut Node<P>,
    agent: Option<&agent::Agent>,
    applied: &mut HashSet<[u8; 32]>,
    egress_seen: &mut HashMap<PublicKey, PortStats>,
    now: Instant,
) {
    let unix = UnixTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    node.handle_lease_timeout(unix);
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
    let Some(agent) = agent else {
        return;
    };
    while let Some(frame) = agent.poll_frame() {
        let digest: [u8; 32] = Sha256::digest(&frame).into();
        if applied.contains(&digest) {
            continue;
        }
        match node.handle_lease_message(unix, &frame) {
            Ok(event) => {
                info!(?event, "lease message applied");
                applied.insert(digest);
            }
            // Retried next round: the lease may start later or its peer come up.
            Err(e) => debug!(error = %e, "lease message not applied"),
        }
    }
    let me = node.leases().snapshot();
    let my_key = *node.public_key();
    let peers = node
        .peer_stats(now)
        .into_iter()
        .filter(|p| p.state == "ESTABLISHED" && p.version != 0)
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
        capacity_kbps: node.link_capacity().unwrap_or(0),
    });
}

/// Starts peering with `p` at link address `address`.
fn connect<P: Pathfinder, A>(node: &mut Node<P>, address: SocketAddr, p: &PeerSpec<A>) {
    let creds = PeerCredentials {
        password: p.password.as_bytes().to_vec(),
        login: p.login.as_ref().map(|l| l.as_bytes().to_vec()),
    };
    let peer = display_link(&address);
    match node.connect(Instant::now(), address, p.key, creds, p.name.clone()) {
        Ok(label) => info!(%peer, key = %p.key, %label, "connecting to peer"),
        Err(e) => warn!(%peer, error = %e, "cannot connect to peer"),
    }
}

/// An open Ethernet interface and its beacon mode.
struct EthInterface {
    socket: EthSocket,
    accept_beacons: bool,
    send_beacons: bool,
}

/// Opens the configured Ethernet interfaces, registers them with `poll` and connects to
/// their peers. A device that cannot be opened is logged and skipped, as cjdns does.
fn open_eth<P: Pathfinder>(
    settings: &[EthSettings],
    tun: Option<&str>,
    poll: &Poll,
    node: &mut Node<P>,
) -> Result<Vec<EthInterface>> {
    let mut out = Vec::new();
    for s in settings {
        let all = s.device == "all";
        let devices = if all {
            eth::all_devices(tun.as_slice())
        } else {
            vec![s.device.clone()]
        };
        if all && !s.peers.is_empty() {
            warn!("ETHInterface with bind \"all\": connectTo is ignored (as in cjdns)");
        }
        for device in devices {
            let socket = match EthSocket::open(&device) {
                Ok(socket) => socket,
                Err(e) => {
                    warn!(%device, error = %e, "cannot open Ethernet interface; skipped");
                    continue;
                }
            };
            let token = Token(ETH_BASE - out.len());
            poll.registry().register(
                &mut SourceFd(&socket.as_raw_fd()),
                token,
                Interest::READABLE,
            )?;
            let mac = socket.mac().map(|m| pktmesh_node::eth::mac_text(&m));
            info!(
                %device,
                ifindex = socket.ifindex(),
                mac = mac.as_deref().unwrap_or("?"),
                beacon = u8::from(s.accept_beacons) + u8::from(s.send_beacons),
                "Ethernet interface up"
            );
            if !all {
                for p in &s.peers {
                    let link = EthLink {
                        ifindex: socket.ifindex(),
                        mac: p.address,
                    };
                    connect(node, link.link_address(), p);
                }
            }
            out.push(EthInterface {
                socket,
                accept_beacons: s.accept_beacons,
                send_beacons: s.send_beacons,
            });
        }
    }
    Ok(out)
}

fn log_event(e: &NodeEvent) {
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
        NodeEvent::PeerAuthFailed { key, error } => {
            warn!(%key, %error, "peer authentication failed (wrong password?)")
        }
        NodeEvent::PeerForgotten { key } => info!(%key, "forgot silent incoming peer"),
    }
}

/// Binds a UDP socket; IPv6 sockets are IPv6-only, so `0.0.0.0:P` and `[::]:P` (what
/// `cjdroute --genconf` writes) can both be bound, as cjdns does.
fn bind_udp(bind: &SocketAddr) -> io::Result<StdUdpSocket> {
    let domain = if bind.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
    if bind.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.bind(&(*bind).into())?;
    Ok(sock.into())
}

struct BeaconSocket {
    socket: UdpSocket,
    settings: BeaconSettings,
    data_port: u16,
}

impl BeaconSocket {
    /// Broadcasts our beacon on every selected IPv4 interface (not loopback, not our TUN).
    fn send<P: Pathfinder>(&self, node: &Node<P>, tun: Option<&str>) {
        let beacon = node.beacon(self.data_port);
        let all = self.settings.devices.iter().any(|d| d == "all");
        let Ok(ifaces) = if_addrs::get_if_addrs() else {
            return;
        };
        for iface in ifaces {
            let if_addrs::IfAddr::V4(v4) = &iface.addr else {
                continue;
            };
            if iface.is_loopback() || Some(iface.name.as_str()) == tun {
                continue;
            }
            // As cjdns does: address | !netmask (interfaces need not have a broadcast set).
            let bcast = std::net::Ipv4Addr::from(u32::from(v4.ip) | !u32::from(v4.netmask));
            let selected = all
                || self
                    .settings
                    .devices
                    .iter()
                    .any(|d| *d == iface.name || *d == bcast.to_string());
            if !selected {
                continue;
            }
            let to = SocketAddr::new(bcast.into(), self.settings.port);
            if let Err(e) = self.socket.send_to(&beacon, to) {
                debug!(%to, error = %e, "beacon send failed");
            }
        }
    }

    fn receive<P: Pathfinder>(&self, node: &mut Node<P>) {
        let mut data = [0u8; 512];
        for _ in 0..MAX_BATCH {
            let (n, from) = match self.socket.recv_from(&mut data) {
                Ok(r) => r,
                Err(_) => return,
            };
            match node.handle_beacon(Instant::now(), from, &data[..n]) {
                Ok(Some(label)) => info!(%from, %label, "added peer from beacon"),
                Ok(None) => {}
                Err(e) => debug!(%from, error = %e, "ignored beacon"),
            }
        }
    }
}

struct Admin {
    socket: UdpSocket,
    server: AdminServer,
    pings: PendingPings,
}

impl Admin {
    fn drain<P: Pathfinder>(&mut self, node: &mut Node<P>) {
        let mut request = [0u8; 4096];
        for _ in 0..MAX_BATCH {
            let (n, src) = match self.socket.recv_from(&mut request) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(error = %e, "admin receive failed");
                    return;
                }
            };
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut shards = [&mut *node];
            let mut functions = NodeAdmin {
                shards: &mut shards,
                now: Instant::now(),
                pings: &mut self.pings,
            };
            let handled = self.server.handle(unix, src, &request[..n], &mut functions);
            if let Some(why) = handled.ignored {
                debug!(%src, %why, "admin request ignored");
            }
            for r in handled.responses {
                let _ = self.socket.send_to(&r, src);
            }
        }
    }

    fn complete_pings<P: Pathfinder>(&mut self, node: &mut Node<P>) {
        for (to, reply) in self.pings.poll(Instant::now(), node, &self.server) {
            let _ = self.socket.send_to(&reply, to);
        }
    }
}

/// The value of a TUN read, or `None` when the device has nothing more for now (a failed read
/// is logged).
fn tun_read<T>(result: io::Result<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        Err(e) => {
            debug!(error = %e, "TUN read failed");
            None
        }
    }
}

/// The links to peers: UDP sockets and Ethernet interfaces, each with its send queue.
struct Links {
    udp: udp::Udp,
    eth: Vec<EthInterface>,
}

impl Links {
    /// Queues a packet for the peer at link address `to`: an Ethernet frame when the address
    /// names a MAC ([`EthLink`]), a UDP datagram otherwise. It leaves at the next flush.
    fn queue(&mut self, to: SocketAddr, data: &[u8]) {
        match EthLink::from_link_address(&to) {
            Some(link) => {
                let iface = self
                    .eth
                    .iter_mut()
                    .find(|e| e.socket.ifindex() == link.ifindex);
                if let Some(iface) = iface {
                    iface.socket.queue(link.mac, data);
                }
            }
            None => self.udp.queue(to, data),
        }
    }

    /// Sends everything queued.
    fn flush(&mut self) {
        self.udp.flush();
        for e in &mut self.eth {
            e.socket.flush();
        }
    }
}

struct Io<'a> {
    /// Where packets for peers go.
    links: Links,
    /// Where Ethernet `recvmmsg` reads into.
    eth_rx: eth::EthRxBatch,
    /// Where `recvmmsg` reads into.
    rx: udp::RxBatch,
    /// The TUN device (`tun_out.tun`) and where packets for it go.
    tun_out: TunOut<'a>,
    /// Where offloaded TUN reads go, when the device has offloads.
    tun_offload: Option<TunOffloadBuffers>,
}

/// Buffers for reading a TUN device with offloads: a whole super-packet, and one segment.
struct TunOffloadBuffers {
    read: Box<[u8]>,
    segment: Box<[u8]>,
}

impl TunOffloadBuffers {
    fn new() -> Self {
        Self {
            read: vec![0; tun::OFFLOAD_READ_MAX].into_boxed_slice(),
            segment: vec![0; tun::TUN_MTU as usize].into_boxed_slice(),
        }
    }
}

/// Where packets for the TUN device go: straight to it, or, with offloads, through a
/// [`Coalescer`] that merges a flow's consecutive TCP segments (and UDP datagrams, where the
/// kernel takes UDP segmentation offload) into one write.
struct TunOut<'a> {
    tun: Option<&'a Tun>,
    coalescer: Option<Coalescer>,
    /// Writes made so far (a super-packet counts once).
    writes: u64,
}

impl TunOut<'_> {
    fn write(&mut self, packet: &[u8]) {
        let Some(t) = self.tun else { return };
        let writes = &mut self.writes;
        match self.coalescer.as_mut() {
            Some(c) => c.push(packet, |h, b| Self::write_raw(t, writes, h, b)),
            None => {
                *writes += 1;
                if let Err(e) = t.send(packet) {
                    debug!(error = %e, "TUN write failed");
                }
            }
        }
    }

    /// Writes what the coalescer holds (at the end of every drain round).
    fn flush(&mut self) {
        if let (Some(t), Some(c)) = (self.tun, self.coalescer.as_mut()) {
            let writes = &mut self.writes;
            c.flush(|h, b| Self::write_raw(t, writes, h, b));
        }
    }

    fn write_raw(t: &Tun, writes: &mut u64, hdr: &[u8], packet: &[u8]) {
        *writes += 1;
        if let Err(e) = t.send_with_header(hdr, packet) {
            debug!(error = %e, "TUN write failed");
        }
    }
}

impl Io<'_> {
    fn send(&mut self, out: Output, data: &[u8]) {
        Self::emit(&mut self.links, &mut self.tun_out, out, data);
    }

    /// Queues an output for a peer (sent at the next flush, at the latest at the end of the
    /// drain round) or writes one for TUN.
    fn emit(links: &mut Links, tun: &mut TunOut<'_>, out: Output, data: &[u8]) {
        match out {
            Output::None => {}
            Output::Udp(to) => links.queue(to, data),
            Output::Tun => tun.write(data),
            // The node runs as one shard here, and one shard never hands off.
            Output::Handoff(h) => debug!(?h, "handoff without shards dropped"),
        }
    }

    /// Sends and writes everything queued.
    fn flush_queues(&mut self) {
        self.links.flush();
        self.tun_out.flush();
    }

    /// Ends a round of reading from peers: sends what it caused, and if it wrote to TUN, lets
    /// the woken readers drain their sockets before the next round adds more (on a shared
    /// core the node would otherwise run on and their receive buffers overflow: docs/perf.md,
    /// UDP flood). `tun_writes` is the TUN write count when the round began.
    fn end_peer_round(&mut self, tun_writes: u64) {
        self.flush_queues();
        if self.tun_out.writes != tun_writes {
            std::thread::yield_now();
        }
    }

    /// Reads up to a batch of packets from socket `i`, `recvmmsg` by `recvmmsg`, and sends
    /// what they cause; true if it may still hold data (mio is edge-triggered, so a source
    /// left unread must be revisited without waiting for an event).
    fn drain_socket<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
        i: usize,
    ) -> bool {
        let mut budget = MAX_BATCH;
        let tun_writes = self.tun_out.writes;
        let more = loop {
            if budget == 0 {
                break true;
            }
            let n = match self.links.udp.recv(i, &mut self.rx, budget) {
                Ok(0) => break false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) => {
                    debug!(error = %e, "UDP receive failed");
                    break false;
                }
            };
            let now = Instant::now();
            for k in 0..n {
                let (from, data, stride) = self.rx.datagram(k);
                for segment in udp::segments(data, stride) {
                    budget = budget.saturating_sub(1);
                    buf.load(segment);
                    let out = node.handle_udp(now, from, buf);
                    Self::emit(&mut self.links, &mut self.tun_out, out, buf.data());
                }
            }
        };
        self.end_peer_round(tun_writes);
        more
    }

    /// Reads up to a batch of frames from Ethernet interface `i`, `recvmmsg` by `recvmmsg`;
    /// true if it may still hold some. Broadcast frames are beacons; the rest go to the node
    /// like UDP datagrams, from the sender's link address ([`EthLink::link_address`]).
    fn drain_eth<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
        i: usize,
    ) -> bool {
        let Some((ifindex, accept_beacons)) = self
            .links
            .eth
            .get(i)
            .map(|e| (e.socket.ifindex(), e.accept_beacons))
        else {
            return false;
        };
        let mut budget = MAX_BATCH;
        let tun_writes = self.tun_out.writes;
        let more = loop {
            if budget == 0 {
                break true;
            }
            let Some(iface) = self.links.eth.get(i) else {
                break false;
            };
            let n = match iface.socket.recv_batch(&mut self.eth_rx) {
                Ok(0) => break false,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) => {
                    debug!(device = iface.socket.device(), error = %e, "Ethernet receive failed");
                    break false;
                }
            };
            budget = budget.saturating_sub(n);
            let now = Instant::now();
            for k in 0..n {
                let Some((got, frame)) = self.eth_rx.frame(k) else {
                    continue;
                };
                let payload = match pktmesh_node::eth::payload(frame) {
                    Ok(p) => p,
                    Err(e) => {
                        debug!(error = %e, "frame dropped");
                        continue;
                    }
                };
                let link = EthLink {
                    ifindex,
                    mac: got.from,
                };
                if got.broadcast {
                    if !accept_beacons {
                        continue;
                    }
                    match node.handle_eth_beacon(now, link.link_address(), payload) {
                        Ok(Some(label)) => info!(peer = %link, %label, "added peer from beacon"),
                        Ok(None) => {}
                        Err(e) => debug!(peer = %link, error = %e, "ignored beacon"),
                    }
                    continue;
                }
                buf.load(payload);
                let out = node.handle_udp(now, link.link_address(), buf);
                Self::emit(&mut self.links, &mut self.tun_out, out, buf.data());
            }
        };
        self.end_peer_round(tun_writes);
        more
    }

    /// Reads up to a batch from the TUN device; true if it may still hold packets.
    fn drain_tun<P: Pathfinder>(&mut self, node: &mut Node<P>, buf: &mut PacketBuf) -> bool {
        if self.tun_offload.is_some() {
            return self.drain_tun_offload(node, buf);
        }
        let mut more = true;
        for _ in 0..MAX_BATCH {
            let Some(t) = self.tun_out.tun else {
                more = false;
                break;
            };
            let Some(n) = tun_read(t.recv(buf.read_area())) else {
                more = false;
                break;
            };
            buf.set_read_len(n);
            let out = node.handle_tun(Instant::now(), buf);
            self.send(out, buf.data());
        }
        self.flush_queues();
        more
    }

    /// [`Io::drain_tun`] for a device with offloads: each read may be a TCP super-packet of up to
    /// 64 KiB, cut into ordinary packets that go through the node one by one. The round's
    /// budget counts packets, not reads, so a round of small packets batches as many UDP sends
    /// as without offloads.
    fn drain_tun_offload<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
    ) -> bool {
        let (Some(t), Some(bufs)) = (self.tun_out.tun, self.tun_offload.as_mut()) else {
            return false;
        };
        let links = &mut self.links;
        let tun_out = &mut self.tun_out;
        let mut packets = 0usize;
        let mut more = true;
        for _ in 0..MAX_BATCH {
            if packets >= MAX_BATCH {
                break;
            }
            // One clock read per read: a super-packet's segments arrived together.
            let now = Instant::now();
            let read = t.recv_segments(&mut bufs.read, &mut bufs.segment, |packet| {
                packets += 1;
                buf.load(packet);
                let out = node.handle_tun(now, buf);
                Self::emit(links, tun_out, out, buf.data());
            });
            if tun_read(read) != Some(true) {
                more = false;
                break;
            }
        }
        self.flush_queues();
        more
    }

    /// Sends what the paced egress ports let go now.
    fn drain_egress<P: Pathfinder>(
        &mut self,
        node: &mut Node<P>,
        buf: &mut PacketBuf,
        now: Instant,
    ) {
        loop {
            match node.poll_egress(now, buf) {
                Output::None => break,
                out => self.send(out, buf.data()),
            }
        }
        self.flush_queues();
    }

    /// Sends the control-plane packets the node queued, and everything still queued.
    fn flush<P: Pathfinder>(&mut self, node: &mut Node<P>) {
        while let Some(t) = node.poll_transmit() {
            match t {
                Transmit::Udp { to, data } => self.send(Output::Udp(to), &data),
                Transmit::Tun(data) => self.send(Output::Tun, &data),
                Transmit::Handoff { handoff, data } => self.send(Output::Handoff(handoff), &data),
            }
        }
        self.flush_queues();
    }
}
