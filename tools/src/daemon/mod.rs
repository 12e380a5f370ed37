//! The `cjdroute` driver: sockets, the TUN device, timers and signals around the sans-IO node
//! core of `pktmesh-node`.
//!
//! The node runs on `workers` threads (one per core by default), each with its own `mio` poll
//! loop, its own socket on every UDP bind (`SO_REUSEPORT`: the kernel keeps a peer's datagrams
//! on one of them) and its own TUN queue (`IFF_MULTI_QUEUE`: the kernel keeps a flow on one).
//! Each worker owns one shard of the node (`pktmesh_node::shard`): the peers and end-to-end
//! sessions whose remote address falls to it. A packet that needs another shard is handed off:
//! after its round the worker locks that shard, runs the packet through it and sends what it
//! caused before unlocking, so a session's packets always leave in the order they were sealed.
//! The first worker also serves the admin API, beacons, the Ethernet interfaces (the others
//! only send on them), the route-server agent and the supernode relay.
//! Every packet is handed to the node in one reusable [`PacketBuf`] and written wherever the
//! node says; nothing on that path allocates. UDP is batched ([`udp`]): up to 32 datagrams per
//! `recvmmsg` (UDP GRO super-datagrams split by segment size), and datagrams for peers queued
//! and sent with UDP GSO at the end of every drain round or when the queue is full.
//! Control-plane packets the node queues are flushed after every round. What the node does
//! lives in `pktmesh-node`; this module only moves bytes and keeps time.

mod admin;
pub mod agent;
pub mod beacons;
mod chores;
pub mod eth;
mod interfaces;
mod lease_frames;
pub mod leased_routes;
mod sinks;
pub mod snode;
pub mod tun;
pub mod udp;
mod workers;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token, Waker};
use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_node::admin::AdminServer;
use pktmesh_node::core::{Node, Pathfinder};
use pktmesh_node::egress::LinkCapacities;
use pktmesh_node::host::{HostState, InterfaceKind};
use pktmesh_node::link_crypto::LinkCryptoMode;
use pktmesh_node::node_admin::PendingPings;
use pktmesh_node::shard::{Directory, ShardSpec, SharedPathfinder, Wake, MAX_SHARDS};
use tracing::{info, warn};

use self::admin::{current_uid, host_users, Admin};
use self::chores::MainWorker;
use self::eth::EthSocket;
use self::interfaces::{bind_udp_group, connect, open_eth, BeaconSocket, EthInterface, UdpGroup};
use self::sinks::Links;
use self::tun::Tun;
use self::workers::{lock, Handoffs, Shard, ShardNode, StopOnExit, Worker};

/// A peer to connect to: over UDP (`A` is its socket address) or Ethernet (`A` is its MAC).
/// `Debug` leaves the password out.
#[derive(Clone)]
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

/// A password incoming peers may use. `Debug` leaves the password out.
#[derive(Clone)]
pub struct AuthorizedPassword {
    /// The password.
    pub password: String,
    /// Login name.
    pub user: Option<String>,
    /// Only for this peer address.
    pub ipv6: Option<Address>,
}

impl<A: std::fmt::Debug> std::fmt::Debug for PeerSpec<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSpec")
            .field("address", &self.address)
            .field("key", &self.key)
            .field("password", &"<redacted>")
            .field("login", &self.login)
            .field("name", &self.name)
            .finish()
    }
}

impl std::fmt::Debug for AuthorizedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizedPassword")
            .field("password", &"<redacted>")
            .field("user", &self.user)
            .field("ipv6", &self.ipv6)
            .finish()
    }
}

/// Everything the driver needs to run a node. `Debug` leaves the admin password out (the
/// private key's own `Debug` redacts it, and so do the peers' and passwords').
#[derive(Clone)]
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
    /// Egress capacity of the peer links (`pktmesh.linkCapacityKbps`).
    pub link_capacities: LinkCapacities,
    /// The route server to announce to and take lease configuration from.
    pub route_server: Option<agent::RouteServerSettings>,
    /// HTTP API of the route server this node is the cjdns face of (`pktmesh.supernode.url`).
    pub supernode_url: Option<String>,
    /// Use TUN checksum and segmentation offloads (`pktmesh.tunOffload`, default on).
    pub tun_offload: bool,
    /// Ethernet interfaces (`interfaces.ETHInterface`).
    pub eth: Vec<EthSettings>,
    /// Worker threads, each owning a shard of the node (`pktmesh.workers`; 1 to 64).
    pub workers: usize,
    /// What peer links speak (`pktmesh.linkCrypto`; Noise where the peer does).
    pub link_crypto: LinkCryptoMode,
    /// Whether end-to-end sessions with pktmesh nodes are upgraded to Noise
    /// (`pktmesh.sessionCrypto`; the default).
    pub session_noise: bool,
}

impl std::fmt::Debug for DaemonSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DaemonSettings")
            .field("private_key", &self.private_key)
            .field("udp_binds", &self.udp_binds)
            .field("peers", &self.peers)
            .field("authorized", &self.authorized)
            .field("tun", &self.tun)
            .field("admin_bind", &self.admin_bind)
            .field("admin_password", &"<redacted>")
            .field("beacons", &self.beacons)
            .field("link_capacities", &self.link_capacities)
            .field("route_server", &self.route_server)
            .field("supernode_url", &self.supernode_url)
            .field("tun_offload", &self.tun_offload)
            .field("eth", &self.eth)
            .field("workers", &self.workers)
            .field("link_crypto", &self.link_crypto)
            .field("session_noise", &self.session_noise)
            .finish_non_exhaustive()
    }
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
/// Packets a worker holds for other shards at once; more are dropped.
const MAX_HANDOFFS: usize = 1024;
/// Times a round's handoffs are passed on (a packet may need two shards after the first).
const MAX_HANDOFF_PASSES: usize = 4;
/// Frames read from an Ethernet interface per round. A UDP round can carry as many packets
/// (each datagram read may be a GRO batch); with fewer, the yield that ends a round that wrote
/// to TUN came every 64 frames, and with a busy process on the core each yield cost a time
/// slice (docs/perf.md, Ethernet flood).
const ETH_ROUND: usize = 8 * MAX_BATCH;
/// Longest a worker sleeps without looking at its timers and the shutdown flag.
const MAX_WAIT: Duration = Duration::from_millis(50);
const SOCKET_BUFFER: usize = 4 << 20;

/// Test switch for the lease-theft namespace test: `PKTMESH_FORGE_TRAFFIC_CLASS=0x84e0` makes
/// this node stamp that traffic class (a network tag it holds no lease for) on everything it
/// sends, so that the test can show the switches after it refuse the stolen tag.
fn forged_traffic_class() -> Option<u16> {
    let text = std::env::var("PKTMESH_FORGE_TRAFFIC_CLASS").ok()?;
    u16::from_str_radix(text.trim_start_matches("0x"), 16).ok()
}

/// Runs the node until `shutdown` is set, on [`DaemonSettings::workers`] threads.
pub fn run<P: Pathfinder + Send>(
    settings: DaemonSettings,
    pathfinder: P,
    shutdown: Arc<AtomicBool>,
) -> Result<()> {
    let workers = settings.workers.clamp(1, usize::from(MAX_SHARDS));
    let count = u8::try_from(workers).context("worker count")?;
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let now = Instant::now();

    // One poll per worker; the pathfinder wakes a worker when messages wait for its shard.
    let mut polls = Vec::with_capacity(workers);
    let mut wakers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let poll = Poll::new().context("creating a poll instance")?;
        wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
        polls.push(poll);
    }
    let wake_list = wakers.clone();
    let wake: Wake = Box::new(move |shard| {
        if let Some(w) = wake_list.get(usize::from(shard)) {
            let _ = w.wake();
        }
    });
    let directory = Directory::new(ShardNode::<P>::new_switch());
    let mut shards = Vec::with_capacity(workers);
    for (i, pf) in SharedPathfinder::group_with_wake(pathfinder, count, Some(wake))
        .into_iter()
        .enumerate()
    {
        let spec = u8::try_from(i)
            .ok()
            .and_then(|i| ShardSpec::new(i, count))
            .context("shard index")?;
        let mut node = Node::new_shard(
            settings.private_key.clone(),
            pf,
            seed,
            now,
            spec,
            directory.clone(),
        );
        node.set_link_capacities(settings.link_capacities.clone());
        node.set_link_crypto(settings.link_crypto);
        node.set_session_noise(settings.session_noise);
        if let Ok(since_epoch) = SystemTime::now().duration_since(UNIX_EPOCH) {
            // Our Noise initiations carry the wall-clock time (TAI64N).
            node.set_wall_clock(now, since_epoch);
        }
        if let Some(class) = forged_traffic_class() {
            warn!(
                class,
                "PKTMESH_FORGE_TRAFFIC_CLASS: this node forges the traffic class (lease theft test)"
            );
            node.forge_traffic_class(Some(class));
        }
        for a in &settings.authorized {
            node.add_authorized_password(
                a.password.as_bytes(),
                a.user.as_deref().map(str::as_bytes),
                a.ipv6,
            )
            .with_context(|| format!("authorizedPasswords entry for user {:?}", a.user))?;
        }
        shards.push(Shard {
            node: Mutex::new(node),
            inbox: Mutex::new(Handoffs::default()),
            waker: wakers[i].clone(),
        });
    }
    let shards: &[Shard<P>] = &shards;
    let (address, key) = {
        let first = lock(&shards[0]);
        (*first.address(), *first.public_key())
    };
    info!(%address, %key, workers, "node identity");
    if settings.link_capacities.any() {
        let caps = &settings.link_capacities;
        info!(
            default_kbps = caps.default,
            per_peer = caps.by_link.len() + caps.by_key.len(),
            "peer links paced at their capacity, queued by lease priority"
        );
    }

    // Every start-up conflict is found before anything outside this process changes: the UDP
    // ports, the admin port, the beacon ports and the Ethernet devices are taken first, and
    // the TUN device is created only once they all are.
    //
    // UDP: every worker has a socket on every bind, all on one port (SO_REUSEPORT); the
    // kernel keeps each peer's datagrams on one of them. A port another process holds is an
    // error that names it ([`interfaces::bind_udp_group`]).
    let mut sockets: Vec<Vec<UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    let mut port_locks = Vec::with_capacity(settings.udp_binds.len());
    for (i, bind) in settings.udp_binds.iter().enumerate() {
        let UdpGroup {
            sockets: group,
            lock,
        } = bind_udp_group(bind, workers)?;
        port_locks.push(lock);
        for (w, (list, std_sock)) in sockets.iter_mut().zip(group).enumerate() {
            std_sock.set_nonblocking(true)?;
            // Large buffers ride out bursts between two turns of the loop; the kernel caps
            // them at net.core.{r,w}mem_max.
            let sref = socket2::SockRef::from(&std_sock);
            let _ = sref.set_recv_buffer_size(SOCKET_BUFFER);
            let _ = sref.set_send_buffer_size(SOCKET_BUFFER);
            let mut sock = UdpSocket::from_std(std_sock);
            polls[w]
                .registry()
                .register(&mut sock, Token(i), Interest::READABLE)?;
            list.push(sock);
        }
    }

    let admin_socket = match settings.admin_bind {
        Some(bind) => {
            let std_sock = StdUdpSocket::bind(bind).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    anyhow::anyhow!(
                        "admin port {} ({bind}) is already in use by another process",
                        bind.port()
                    )
                } else {
                    anyhow::Error::new(e).context(format!("binding the admin API to {bind}"))
                }
            })?;
            std_sock.set_nonblocking(true)?;
            let mut sock = UdpSocket::from_std(std_sock);
            polls[0]
                .registry()
                .register(&mut sock, ADMIN, Interest::READABLE)?;
            if !bind.ip().is_loopback() {
                warn!(
                    bind = %bind,
                    "the admin API listens beyond loopback: anyone who can reach it and has \
                     the admin password controls this node (docs/security.md)"
                );
            }
            Some((bind, sock))
        }
        None => None,
    };

    let mut beacons = Vec::new();
    for (i, b) in settings.beacons.iter().enumerate() {
        let Some(data) = sockets[0].get(b.udp_index) else {
            continue;
        };
        let data_addr = data.local_addr()?;
        let mut beacon = BeaconSocket::bind(data_addr, b.clone())?;
        polls[0].registry().register(
            &mut beacon.socket,
            Token(BEACON_BASE - i),
            Interest::READABLE,
        )?;
        info!(bind = %beacon.bind, send = b.send, "beacons on");
        beacons.push(beacon);
    }
    // Ethernet: the first worker reads every interface; the others only send on them. The TUN
    // device does not exist yet, and "all" takes only Ethernet devices: it cannot be chosen.
    let eth = open_eth(&settings.eth, settings.tun.as_deref(), &polls[0], shards)?;

    // TUN: one queue per worker; the kernel keeps each flow on one queue.
    let tuns = match &settings.tun {
        Some(name) => {
            let queues = Tun::create_queues(name, address.into(), settings.tun_offload, workers)
                .with_context(|| format!("creating TUN device {name:?}"))?;
            for (t, poll) in queues.iter().zip(&polls) {
                poll.registry()
                    .register(&mut SourceFd(&t.as_raw_fd()), TUN, Interest::READABLE)?;
            }
            if let Some(t) = queues.first() {
                info!(
                    device = t.name(),
                    %address,
                    mtu = tun::TUN_MTU,
                    offload = t.offload(),
                    udp_offload = t.udp_offload(),
                    queues = queues.len(),
                    "TUN up"
                );
            }
            queues
        }
        None => Vec::new(),
    };
    let tun_name = tuns.first().map(|t| t.name().to_string());

    let mut polls = polls.into_iter();
    let main_poll = polls.next().context("no poll for the first worker")?;
    // What the admin API knows of the host: the interfaces, numbered as cjdns numbers them
    // (UDP, then Ethernet, in order of creation), and the user database.
    let mut host = HostState::new();
    for sock in &sockets[0] {
        host.add_open_interface(InterfaceKind::Udp {
            bind: sock.local_addr()?,
        });
    }
    for e in &eth {
        host.add_open_interface(InterfaceKind::Eth {
            device: e.socket.device().to_string(),
        });
    }
    host.set_users(host_users(), current_uid());
    let mut senders: Vec<Vec<EthInterface>> = Vec::new();
    for _ in 1..workers {
        let mut list = Vec::new();
        for e in &eth {
            list.push(EthInterface {
                socket: EthSocket::open_sender(e.socket.device())
                    .with_context(|| format!("opening {} for sending", e.socket.device()))?,
                accept_beacons: false,
                send_beacons: false,
            });
        }
        senders.push(list);
    }
    let eth_lists = std::iter::once(eth).chain(senders);

    let admin = admin_socket.map(|(bind, socket)| {
        info!(bind = %bind, "admin API up");
        Admin {
            socket,
            server: AdminServer::new(settings.admin_password.clone()),
            pings: PendingPings::default(),
            host,
        }
    });
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
    // Our own leased traffic follows the route server's paths (docs/leases.md). A route is
    // asked for again every two rounds and held for three times that, so a route server that
    // goes away leaves the DHT in charge within six rounds.
    let leased_routes = match &settings.route_server {
        Some(rs) => {
            let refresh = (rs.interval * 2).max(Duration::from_secs(2));
            for shard in shards {
                *lock(shard).leased_routes() =
                    pktmesh_node::routes::LeasedRoutes::new(refresh, refresh * 3);
            }
            Some(
                leased_routes::LeasedRouteClient::start(&rs.url)
                    .context("starting the leased-route client")?,
            )
        }
        None => None,
    };
    let relay = match &settings.supernode_url {
        Some(url) => {
            for shard in shards {
                lock(shard).set_supernode_face(true);
            }
            info!(%url, "supernode face on: supernode queries go to this route server");
            Some(
                snode::SupernodeRelay::start(url, wakers[0].clone())
                    .context("starting the supernode relay")?,
            )
        }
        None => None,
    };

    for p in &settings.peers {
        connect(shards, p.address, p);
    }

    // A test switch: every handoff through the owner's inbox, so that path carries all traffic.
    let via_inbox = std::env::var_os("PKTMESH_HANDOFFS_VIA_INBOX").is_some();
    if via_inbox {
        warn!("PKTMESH_HANDOFFS_VIA_INBOX: every handoff goes through the owning shard's inbox");
    }
    let mut tun_queues = tuns.iter();
    let mut built = Vec::with_capacity(workers);
    for (w, (sockets, eth)) in sockets.into_iter().zip(eth_lists).enumerate() {
        let udp = udp::Udp::new(sockets).context("setting up the UDP sockets")?;
        let links = Links { udp, eth };
        built.push(Worker::new(w, shards, links, tun_queues.next(), via_inbox));
    }
    let mut built = built.into_iter();
    let first = built.next().context("no first worker")?;
    for (i, sock) in first.io.sinks.links.udp.sockets().enumerate() {
        let (gso, gro) = first.io.sinks.links.udp.offloads(i);
        info!(bind = %sock.local_addr()?, gso, gro, workers, "UDP interface up");
    }
    let others: Vec<_> = polls.zip(built).collect();
    let mut main = MainWorker {
        poll: main_poll,
        worker: first,
        admin,
        beacons,
        leased_routes,
        agent,
        relay,
        tun_name,
        next_beacon: Instant::now(),
        next_second: Instant::now(),
        lease_frames: lease_frames::FrameLedger::default(),
        egress_seen: HashMap::new(),
    };
    std::thread::scope(|scope| -> Result<()> {
        let mut threads = Vec::new();
        for (poll, worker) in others {
            let shutdown = &shutdown;
            let name = format!("worker-{}", worker.index);
            threads.push(std::thread::Builder::new().name(name).spawn_scoped(
                scope,
                move || {
                    // A worker that stops (an error, a panic) stops the node.
                    let _stop = StopOnExit(shutdown);
                    worker.run(poll, shutdown)
                },
            )?);
        }
        let result = main.run(&shutdown);
        shutdown.store(true, Ordering::Relaxed);
        for t in threads {
            match t.join() {
                Ok(r) => r?,
                Err(_) => anyhow::bail!("a worker thread panicked"),
            }
        }
        result
    })?;
    // The ports stay ours until the node has stopped.
    drop(port_locks);
    info!("shutting down");
    Ok(())
}
