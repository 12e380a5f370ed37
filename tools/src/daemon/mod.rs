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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_lease_engine::UnixTime;
use pktmesh_node::admin::{AdminServer, UnixMillis};
use pktmesh_node::beacon::BeaconError;
use pktmesh_node::core::{Handoff, Node, NodeEvent, Output, Pathfinder, Transmit};
use pktmesh_node::egress::PortStats;
use pktmesh_node::eth::{display_link, EthLink};
use pktmesh_node::host::{HostRequest, HostState, HostUser, InterfaceKind};
use pktmesh_node::node_admin::{NodeAdmin, PendingPings};
use pktmesh_node::offload::Coalescer;
use pktmesh_node::packet::PacketBuf;
use pktmesh_node::peers::PeerCredentials;
use pktmesh_node::shard::{Directory, ShardSpec, SharedPathfinder, Wake, MAX_SHARDS};
use pktmesh_switch::Label;
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
    /// Worker threads, each owning a shard of the node (`pktmesh.workers`; 1 to 64).
    pub workers: usize,
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

/// Runs the node until `shutdown` is set, on [`DaemonSettings::workers`] threads.
pub fn run<P: Pathfinder + Send>(
    settings: DaemonSettings,
    pathfinder: P,
    shutdown: Arc<AtomicBool>,
) -> Result<()> {
    let workers = settings.workers.clamp(1, usize::from(MAX_SHARDS));
    let count = u8::try_from(workers).context("worker count")?;
    if workers > 1
        && (settings.link_kbps.is_some()
            || settings.route_server.is_some()
            || settings.supernode_url.is_some())
    {
        anyhow::bail!(
            "leases, paced links and the supernode face run on one worker only (workers = {workers})"
        );
    }
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
        node.set_link_capacity(settings.link_kbps);
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
    if let Some(kbps) = settings.link_kbps {
        info!(
            kbps,
            "peer links paced at their capacity, queued by lease priority"
        );
    }

    // UDP: every worker has a socket on every bind, all on one port (SO_REUSEPORT); the
    // kernel keeps each peer's datagrams on one of them.
    let mut sockets: Vec<Vec<UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, bind) in settings.udp_binds.iter().enumerate() {
        let first = bind_udp(bind, workers > 1).with_context(|| format!("binding UDP {bind}"))?;
        // The others join the first on the port it got (the configured one may be 0).
        let bound = first.local_addr()?;
        let mut group = vec![first];
        for _ in 1..workers {
            group.push(
                bind_udp(&bound, true).with_context(|| format!("binding UDP {bound} again"))?,
            );
        }
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
    let mut beacons = Vec::new();
    for (i, b) in settings.beacons.iter().enumerate() {
        let Some(data) = sockets[0].get(b.udp_index) else {
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
        main_poll
            .registry()
            .register(&mut sock, Token(BEACON_BASE - i), Interest::READABLE)?;
        info!(bind = %bind, send = b.send, "beacons on");
        beacons.push(BeaconSocket {
            socket: sock,
            settings: b.clone(),
            data_port: data_addr.port(),
        });
    }
    // Ethernet: the first worker reads every interface; the others only send on them.
    let eth = open_eth(&settings.eth, tun_name.as_deref(), &main_poll, shards)?;
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

    let admin = match settings.admin_bind {
        Some(bind) => {
            let std_sock = StdUdpSocket::bind(bind)
                .with_context(|| format!("binding the admin API to {bind}"))?;
            std_sock.set_nonblocking(true)?;
            let mut sock = UdpSocket::from_std(std_sock);
            main_poll
                .registry()
                .register(&mut sock, ADMIN, Interest::READABLE)?;
            info!(bind = %bind, "admin API up");
            Some(Admin {
                socket: sock,
                server: AdminServer::new(settings.admin_password.clone()),
                pings: PendingPings::default(),
                host,
            })
        }
        None => None,
    };
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
    let relay = match &settings.supernode_url {
        Some(url) => {
            lock(&shards[0]).set_supernode_face(true);
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
        agent,
        relay,
        tun_name,
        next_beacon: Instant::now(),
        next_second: Instant::now(),
        applied_frames: HashSet::new(),
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
    info!("shutting down");
    Ok(())
}

/// Sets the shutdown flag when dropped, so every worker ends when one does.
struct StopOnExit<'a>(&'a AtomicBool);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A node core of one shard.
type ShardNode<P> = Node<SharedPathfinder<P>>;

/// A shard of the node as the workers share it: its core, the packets other workers left for
/// it because they found it busy, and how to wake its worker.
struct Shard<P> {
    node: Mutex<ShardNode<P>>,
    inbox: Mutex<Handoffs>,
    waker: Arc<Waker>,
}

/// Locks a shard's core. A worker that panicked while holding one has ended the daemon (its
/// thread's result is checked), so a poisoned lock is taken as it is.
fn lock<P>(shard: &Shard<P>) -> MutexGuard<'_, ShardNode<P>> {
    shard.node.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Packets on their way to a shard, copied into one reused byte arena: what a worker's round
/// handed off, and a shard's inbox. Once grown to the traffic it allocates nothing.
#[derive(Default)]
struct Handoffs {
    items: Vec<(Handoff, std::ops::Range<usize>)>,
    bytes: Vec<u8>,
}

impl Handoffs {
    fn lock(inbox: &Mutex<Handoffs>) -> MutexGuard<'_, Handoffs> {
        inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps a copy of `data`; false when [`MAX_HANDOFFS`] already wait.
    fn push(&mut self, handoff: Handoff, data: &[u8]) -> bool {
        if self.items.len() >= MAX_HANDOFFS {
            return false;
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(data);
        self.items.push((handoff, start..self.bytes.len()));
        true
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn clear(&mut self) {
        self.items.clear();
        self.bytes.clear();
    }

    /// The packets for `shard`, in order.
    fn for_shard(&self, shard: usize) -> impl Iterator<Item = (Handoff, &[u8])> {
        self.items
            .iter()
            .filter(move |(h, _)| usize::from(h.shard) == shard)
            .filter_map(|(h, r)| Some((*h, self.bytes.get(r.clone())?)))
    }
}

/// Runs `packets` (handed to `node`'s shard) through it and does what it answers.
fn run_handed<'p, P: Pathfinder>(
    node: &mut ShardNode<P>,
    packets: impl Iterator<Item = (Handoff, &'p [u8])>,
    buf: &mut PacketBuf,
    sinks: &mut Sinks<'_>,
) {
    let now = Instant::now();
    for (h, data) in packets {
        buf.load(data);
        let out = node.handle_handoff(now, h.stage, buf);
        sinks.emit(out, buf.data());
    }
}

/// Calls `f` with every shard: `held` (shard 0, locked by the caller) and the others, locked
/// in ascending order (the one order any thread takes two shard locks in).
fn with_all_shards<P: Pathfinder, T>(
    held: &mut ShardNode<P>,
    shards: &[Shard<P>],
    f: impl FnOnce(&mut [&mut ShardNode<P>]) -> T,
) -> T {
    let mut guards: Vec<MutexGuard<'_, ShardNode<P>>> = shards.iter().skip(1).map(lock).collect();
    let mut all: Vec<&mut ShardNode<P>> = Vec::with_capacity(shards.len());
    all.push(held);
    all.extend(guards.iter_mut().map(|g| &mut **g));
    f(&mut all)
}

/// One worker: its sockets and TUN queue, and the shard it owns.
struct Worker<'a, P> {
    index: usize,
    shards: &'a [Shard<P>],
    io: Io<'a>,
    buf: PacketBuf,
    /// Handoffs being taken to their shards.
    batch: Handoffs,
    /// What other workers left for this worker's shard, taken out of its inbox.
    inbox: Handoffs,
    /// Hand every packet for another shard to its inbox, even when the shard is free (a test
    /// switch, `PKTMESH_HANDOFFS_VIA_INBOX`).
    via_inbox: bool,
    tun_pending: bool,
    socket_pending: Vec<bool>,
    eth_pending: Vec<bool>,
    /// Dropped handoffs already logged, and when.
    drops_reported: u64,
    last_drop_report: Option<Instant>,
}

impl<'a, P: Pathfinder> Worker<'a, P> {
    fn new(
        index: usize,
        shards: &'a [Shard<P>],
        links: Links,
        tun: Option<&'a Tun>,
        via_inbox: bool,
    ) -> Self {
        let sockets = links.udp.len();
        let eth = links.eth.len();
        Self {
            index,
            shards,
            io: Io {
                sinks: Sinks {
                    links,
                    tun_out: TunOut {
                        tun,
                        coalescer: tun
                            .filter(|t| t.offload())
                            .map(|t| Coalescer::new(t.udp_offload())),
                        writes: 0,
                    },
                    handoffs: Handoffs::default(),
                    dropped: 0,
                },
                eth_rx: eth::EthRxBatch::new(),
                rx: udp::RxBatch::new(),
                tun_offload: tun.is_some_and(Tun::offload).then(TunOffloadBuffers::new),
                eth_beacons: Vec::new(),
            },
            buf: PacketBuf::new(),
            batch: Handoffs::default(),
            inbox: Handoffs::default(),
            via_inbox,
            tun_pending: false,
            socket_pending: vec![false; sockets],
            eth_pending: vec![false; eth],
            drops_reported: 0,
            last_drop_report: None,
        }
    }

    /// Sources with unread data are served again at once (mio is edge-triggered).
    fn busy(&self) -> bool {
        self.tun_pending
            || self
                .socket_pending
                .iter()
                .chain(&self.eth_pending)
                .any(|&p| p)
    }

    /// Notes what a poll event made ready; false for tokens that are not the data path's.
    fn note_event(&mut self, token: Token) -> bool {
        match token {
            TUN => self.tun_pending = true,
            Token(i) if i > ETH_BASE - self.eth_pending.len() && i <= ETH_BASE => {
                if let Some(p) = self.eth_pending.get_mut(ETH_BASE - i) {
                    *p = true;
                }
            }
            Token(i) => match self.socket_pending.get_mut(i) {
                Some(p) => *p = true,
                None => return false,
            },
        }
        true
    }

    /// One round on the worker's own shard: a batch from each ready source, paced egress,
    /// timers, and everything it queued sent.
    fn round(&mut self, node: &mut ShardNode<P>) {
        self.take_inbox(node);
        // One batch from each ready source per round, so neither direction starves the other.
        if self.tun_pending {
            self.tun_pending = self.io.drain_tun(node, &mut self.buf);
        }
        for (i, pending) in self.socket_pending.iter_mut().enumerate() {
            if *pending {
                *pending = self.io.drain_socket(node, &mut self.buf, i);
            }
        }
        for (i, pending) in self.eth_pending.iter_mut().enumerate() {
            if *pending {
                *pending = self.io.drain_eth(node, &mut self.buf, i);
            }
        }
        let now = Instant::now();
        self.io.drain_egress(node, &mut self.buf, now);
        if now >= node.poll_timeout() || node.pathfinder().has_output() {
            node.handle_timeout(now);
        }
        self.io.flush(node);
        log_events(node);
    }

    /// Runs through the worker's own shard what other workers left in its inbox.
    fn take_inbox(&mut self, node: &mut ShardNode<P>) {
        {
            let mut inbox = Handoffs::lock(&self.shards[self.index].inbox);
            if inbox.is_empty() {
                return;
            }
            std::mem::swap(&mut *inbox, &mut self.inbox);
        }
        let packets = self.inbox.for_shard(self.index);
        run_handed(node, packets, &mut self.buf, &mut self.io.sinks);
        self.inbox.clear();
    }

    /// Takes the packets handed off during the round to their shards, and reports (at most once
    /// a second) those dropped because too many waited.
    fn run_handoffs(&mut self) {
        self.pass_handoffs();
        let dropped = self.io.sinks.dropped;
        if dropped > self.drops_reported {
            let now = Instant::now();
            let due = self
                .last_drop_report
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
            if due {
                warn!(
                    worker = self.index,
                    dropped = dropped - self.drops_reported,
                    "packets for other shards dropped: the handoff queue was full"
                );
                self.drops_reported = dropped;
                self.last_drop_report = Some(now);
            }
        }
    }

    /// Runs the waiting handoffs through their shards, each under its shard's lock, and sends
    /// what they cause before letting go of the lock: so what a shard seals for a session
    /// leaves in nonce order whichever worker sealed it. A shard that is busy (its own worker,
    /// or another, is in it) is not waited for: its packets go to its inbox and its worker is
    /// woken, so no worker ever sleeps on another's lock.
    fn pass_handoffs(&mut self) {
        for _ in 0..MAX_HANDOFF_PASSES {
            if self.io.sinks.handoffs.is_empty() {
                return;
            }
            std::mem::swap(&mut self.batch, &mut self.io.sinks.handoffs);
            for (s, shard) in self.shards.iter().enumerate() {
                if self.batch.for_shard(s).next().is_none() {
                    continue;
                }
                let attempt = if self.via_inbox {
                    Err(TryLockError::WouldBlock)
                } else {
                    shard.node.try_lock()
                };
                let mut node = match attempt {
                    Ok(node) => node,
                    Err(TryLockError::Poisoned(p)) => p.into_inner(),
                    Err(TryLockError::WouldBlock) => {
                        let mut inbox = Handoffs::lock(&shard.inbox);
                        let was_empty = inbox.is_empty();
                        for (h, data) in self.batch.for_shard(s) {
                            if !inbox.push(h, data) {
                                self.io.sinks.dropped += 1;
                            }
                        }
                        drop(inbox);
                        if was_empty {
                            let _ = shard.waker.wake();
                        }
                        continue;
                    }
                };
                let packets = self.batch.for_shard(s);
                run_handed(&mut node, packets, &mut self.buf, &mut self.io.sinks);
                self.io.flush(&mut node);
                log_events(&mut node);
            }
            self.batch.clear();
        }
        // Only a packet passed back and forth (a table changing under it) gets here.
        self.io.sinks.dropped += self.io.sinks.handoffs.len() as u64;
        self.io.sinks.handoffs.clear();
    }

    /// The loop of a worker other than the first: its sockets and TUN queue only.
    fn run(mut self, mut poll: Poll, shutdown: &AtomicBool) -> Result<()> {
        let mut events = Events::with_capacity(256);
        let shard = &self.shards[self.index];
        while !shutdown.load(Ordering::Relaxed) {
            let wait = if self.busy() {
                Duration::ZERO
            } else {
                lock(shard)
                    .poll_timeout()
                    .saturating_duration_since(Instant::now())
                    .min(MAX_WAIT)
            };
            match poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("poll"),
            }
            for event in events.iter() {
                self.note_event(event.token());
            }
            {
                let mut node = lock(shard);
                self.round(&mut node);
            }
            self.run_handoffs();
        }
        Ok(())
    }
}

/// The first worker: a worker, plus the admin API, beacons, the route-server agent, the
/// supernode relay and the once-a-second chores.
struct MainWorker<'a, P> {
    poll: Poll,
    worker: Worker<'a, P>,
    admin: Option<Admin>,
    beacons: Vec<BeaconSocket>,
    agent: Option<agent::Agent>,
    relay: Option<snode::SupernodeRelay>,
    tun_name: Option<String>,
    next_beacon: Instant,
    next_second: Instant,
    applied_frames: HashSet<[u8; 32]>,
    egress_seen: HashMap<PublicKey, PortStats>,
}

impl<P: Pathfinder> MainWorker<'_, P> {
    fn run(&mut self, shutdown: &AtomicBool) -> Result<()> {
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

    /// The once-a-second tick, beacons when due, and the supernode relay.
    fn chores(&mut self, node: &mut ShardNode<P>) {
        let now = Instant::now();
        if now >= self.next_second {
            self.next_second = now + Duration::from_secs(1);
            second_tick(
                node,
                self.agent.as_ref(),
                &mut self.applied_frames,
                &mut self.egress_seen,
                now,
            );
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
            while let Some(q) = node.poll_supernode_query() {
                r.submit(q);
            }
            while let Some((to, answer)) = r.poll_answer() {
                node.answer_supernode_query(now, to, &answer);
            }
        }
    }
}

/// Offers a beacon to each shard; the one that owns its sender peers with it.
fn dispatch_beacon<P: Pathfinder>(
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

fn log_events<P: Pathfinder>(node: &mut Node<P>) {
    while let Some(e) = node.poll_event() {
        log_event(&e);
    }
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

/// Starts peering with `p` at link address `address`, in the shard that owns it.
fn connect<P: Pathfinder, A>(shards: &[Shard<P>], address: SocketAddr, p: &PeerSpec<A>) {
    let creds = PeerCredentials {
        password: p.password.as_bytes().to_vec(),
        login: p.login.as_ref().map(|l| l.as_bytes().to_vec()),
    };
    let peer = display_link(&address);
    let Some(first) = shards.first() else { return };
    let owner = usize::from(lock(first).shard().owner_of(&p.key.address()));
    let Some(shard) = shards.get(owner) else {
        return;
    };
    let mut node = lock(shard);
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
    shards: &[Shard<P>],
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
                    connect(shards, link.link_address(), p);
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
/// A UDP socket bound to `bind`; with `reuse_port`, one of a group on the same port among
/// which the kernel spreads peers (by a hash of their addresses).
fn bind_udp(bind: &SocketAddr, reuse_port: bool) -> io::Result<StdUdpSocket> {
    let domain = if bind.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, None)?;
    if bind.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    if reuse_port {
        sock.set_reuse_port(true)?;
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

    /// The beacons waiting on the socket (up to a batch), and who sent them.
    fn receive(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut heard = Vec::new();
        let mut data = [0u8; 512];
        for _ in 0..MAX_BATCH {
            match self.socket.recv_from(&mut data) {
                Ok((n, from)) => heard.push((from, data[..n].to_vec())),
                Err(_) => break,
            }
        }
        heard
    }
}

struct Admin {
    socket: UdpSocket,
    server: AdminServer,
    pings: PendingPings,
    /// Interfaces and users for the admin functions, and what they asked of us.
    host: HostState,
}

impl Admin {
    fn drain<P: Pathfinder>(&mut self, shards: &mut [&mut Node<P>]) {
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
            let unix = UnixMillis::since_epoch(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            );
            let mut functions = NodeAdmin {
                shards: &mut *shards,
                now: Instant::now(),
                pings: &mut self.pings,
                host: &mut self.host,
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

    /// Reports what admin calls asked of this process that the node core only recorded
    /// (`UDPInterface_new`, `Core_initTunnel`, `Security_*`, …). pktmesh takes sockets, TUN
    /// and privileges from cjdroute.conf at start-up, so none of them is carried out here:
    /// each is logged, as a warning when it asked for something that did not happen.
    fn report_host_requests(&mut self, tun: Option<&str>) {
        let dropped = self.host.take_dropped_requests();
        if dropped > 0 {
            warn!(
                dropped,
                "admin: host requests dropped unreported (too many queued)"
            );
        }
        while let Some(request) = self.host.poll_request() {
            match &request {
                HostRequest::UdpInterface { bind, .. } => {
                    let open = self.host.interfaces().iter().any(|i| {
                        i.open && matches!(&i.kind, InterfaceKind::Udp { bind: b } if b == bind)
                    });
                    if open {
                        info!(%request, "admin: that address is already open (from the config)");
                    } else {
                        warn!(
                            %request,
                            "admin: no socket opened; pktmesh binds UDP only from cjdroute.conf \
                             at start-up"
                        );
                    }
                }
                HostRequest::InitTunnel { .. } => match tun {
                    Some(name) => info!(%request, tun = name, "admin: the TUN device is up"),
                    None => warn!(
                        %request,
                        "admin: no TUN device created; pktmesh creates it from cjdroute.conf"
                    ),
                },
                HostRequest::RouteException(_) => {
                    info!(%request, "admin: recorded; pktmesh generates no routes (no IpTunnel)");
                }
                HostRequest::SetupComplete => info!(%request, "admin: client setup complete"),
                _ => warn!(
                    %request,
                    "admin: not done; pktmesh does not drop privileges (run it with \
                     CAP_NET_ADMIN instead of root)"
                ),
            }
        }
    }

    fn complete_pings<P: Pathfinder>(&mut self, node: &mut Node<P>) {
        for (to, reply) in self.pings.poll(Instant::now(), node, &self.server) {
            let _ = self.socket.send_to(&reply, to);
        }
    }
}

/// The accounts of `/etc/passwd` (`name:password:uid:gid:…`), for `Security_getUser`; users
/// known only to other NSS sources are not seen. Unreadable: none.
fn host_users() -> Vec<HostUser> {
    let Ok(text) = std::fs::read_to_string("/etc/passwd") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| HostUser {
                name: name.to_string(),
                uid,
                gid,
            })
        })
        .collect()
}

/// The uid this process runs as (the owner of `/proc/self`).
fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
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
    /// Where the node's outputs go.
    sinks: Sinks<'a>,
    /// Where Ethernet `recvmmsg` reads into.
    eth_rx: eth::EthRxBatch,
    /// Where `recvmmsg` reads into.
    rx: udp::RxBatch,
    /// Where offloaded TUN reads go, when the device has offloads.
    tun_offload: Option<TunOffloadBuffers>,
    /// Ethernet beacons heard this round, for the shards that did not see them.
    eth_beacons: Vec<(SocketAddr, Vec<u8>)>,
}

/// Where what the node answers goes: peers' links, the TUN device, other shards.
struct Sinks<'a> {
    /// Where packets for peers go.
    links: Links,
    /// The TUN device (`tun_out.tun`) and where packets for it go.
    tun_out: TunOut<'a>,
    /// Packets for other shards.
    handoffs: Handoffs,
    /// Packets for other shards dropped because too many waited.
    dropped: u64,
}

impl Sinks<'_> {
    /// Queues an output for a peer (sent at the next flush, at the latest at the end of the
    /// drain round), writes one for TUN, or keeps one for another shard.
    fn emit(&mut self, out: Output, data: &[u8]) {
        match out {
            Output::None => {}
            Output::Udp(to) => self.links.queue(to, data),
            Output::Tun => self.tun_out.write(data),
            Output::Handoff(h) => {
                if !self.handoffs.push(h, data) {
                    self.dropped += 1;
                }
            }
        }
    }

    /// Sends and writes everything queued.
    fn flush(&mut self) {
        self.links.flush();
        self.tun_out.flush();
    }
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
        self.sinks.emit(out, data);
    }

    /// Sends and writes everything queued.
    fn flush_queues(&mut self) {
        self.sinks.flush();
    }

    /// Ends a round of reading from peers: sends what it caused, and if it wrote to TUN, lets
    /// the woken readers drain their sockets before the next round adds more (on a shared
    /// core the node would otherwise run on and their receive buffers overflow: docs/perf.md,
    /// UDP flood). `tun_writes` is the TUN write count when the round began.
    fn end_peer_round(&mut self, tun_writes: u64) {
        self.flush_queues();
        if self.sinks.tun_out.writes != tun_writes {
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
        let tun_writes = self.sinks.tun_out.writes;
        let more = loop {
            if budget == 0 {
                break true;
            }
            let n = match self.sinks.links.udp.recv(i, &mut self.rx, budget) {
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
                    self.sinks.emit(out, buf.data());
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
            .sinks
            .links
            .eth
            .get(i)
            .map(|e| (e.socket.ifindex(), e.accept_beacons))
        else {
            return false;
        };
        let mut budget = ETH_ROUND;
        let tun_writes = self.sinks.tun_out.writes;
        let more = loop {
            if budget == 0 {
                break true;
            }
            let Some(iface) = self.sinks.links.eth.get(i) else {
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
                        Ok(None) => {
                            if node.shard().count() > 1 {
                                self.eth_beacons
                                    .push((link.link_address(), payload.to_vec()));
                            }
                        }
                        Err(e) => debug!(peer = %link, error = %e, "ignored beacon"),
                    }
                    continue;
                }
                buf.load(payload);
                let out = node.handle_udp(now, link.link_address(), buf);
                self.sinks.emit(out, buf.data());
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
            let Some(t) = self.sinks.tun_out.tun else {
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
        let (Some(t), Some(bufs)) = (self.sinks.tun_out.tun, self.tun_offload.as_mut()) else {
            return false;
        };
        let sinks = &mut self.sinks;
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
                sinks.emit(out, buf.data());
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
