//! Setting up interfaces: UDP sockets (bound the way cjdns binds them), beacon sockets,
//! Ethernet devices, and the first connection to every configured peer.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};
use pktmesh_node::core::{Node, Pathfinder};
use pktmesh_node::eth::{display_link, EthLink};
use pktmesh_node::peers::PeerCredentials;
use tracing::{debug, info, warn};

use self::eth::EthSocket;

use super::beacons::{accept_beacon, beacon_interfaces, recv_with_info, BeaconInterface, Refused};
use super::udp::{set_int_option, steer_to_first};

use super::workers::{lock, Shard};
use super::{eth, BeaconSettings, EthSettings, PeerSpec, ETH_BASE, MAX_BATCH};

/// Starts peering with `p` at link address `address`, in the shard that owns it.
pub(super) fn connect<P: Pathfinder, A>(shards: &[Shard<P>], address: SocketAddr, p: &PeerSpec<A>) {
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
pub(super) struct EthInterface {
    pub(super) socket: EthSocket,
    pub(super) accept_beacons: bool,
    pub(super) send_beacons: bool,
}

/// Opens the configured Ethernet interfaces, registers them with `poll` and connects to
/// their peers. A device that cannot be opened is logged and skipped, as cjdns does.
pub(super) fn open_eth<P: Pathfinder>(
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

/// A UDP socket bound to `bind`; IPv6 sockets are IPv6-only, so `0.0.0.0:P` and `[::]:P` (what
/// `cjdroute --genconf` writes) can both be bound, as cjdns does. With `reuse_port` it is one
/// of a group on the same port among which the kernel spreads peers (by a hash of their
/// addresses); see [`bind_udp_group`] for how the group keeps other processes out.
pub(super) fn bind_udp(bind: &SocketAddr, reuse_port: bool) -> io::Result<StdUdpSocket> {
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

/// The sockets of one UDP bind, one per worker, all on one port.
pub(super) struct UdpGroup {
    /// One socket per worker.
    pub(super) sockets: Vec<StdUdpSocket>,
    /// Held while the node runs: another pktmesh node that wants the port fails to take it.
    pub(super) lock: Option<UnixDatagram>,
}

/// Binds `count` sockets to `bind`, failing when another process holds the port.
///
/// `SO_REUSEPORT` lets any socket of the same user (any socket at all, for root) join a group
/// bound with it and take a share of its datagrams: a second node started on the same port
/// would silently take part of the first one's peers. So:
///
/// 1. an exclusive socket (no `SO_REUSEPORT`) is bound first. It fails with `EADDRINUSE` when
///    any socket holds the port, with or without `SO_REUSEPORT`, and it makes the kernel pick
///    the port when the configured one is 0. With one worker it is the socket;
/// 2. with several, an abstract Unix socket named after the address is bound while the
///    exclusive one still holds the port ([`PORT_LOCK_PREFIX`]; scoped to the network
///    namespace, like the port, and released by the kernel when the process ends), so that a
///    pktmesh node starting at the same moment cannot slip in between 3 and 4;
/// 3. the exclusive socket is closed;
/// 4. the group is bound with `SO_REUSEPORT`; from here a later pktmesh node (or stock cjdns,
///    which binds without `SO_REUSEPORT`) fails at its step 1;
/// 5. a classic BPF program steers every datagram to one of the group's first `count`
///    sockets, ours ([`steer_to_first`]).
///
/// What is left is a program of the same user that sets `SO_REUSEPORT` itself: the kernel lets
/// it join, but step 5 gives it no datagrams, unless it also replaces the group's BPF program
/// or binds in the microseconds between 3 and 4. Such a program could as well read this
/// process's memory (docs/security.md).
pub(super) fn bind_udp_group(bind: &SocketAddr, count: usize) -> anyhow::Result<UdpGroup> {
    let exclusive = bind_udp(bind, false).map_err(|e| udp_bind_error(bind, e))?;
    if count <= 1 {
        return Ok(UdpGroup {
            sockets: vec![exclusive],
            lock: None,
        });
    }
    let bound = exclusive.local_addr()?;
    let lock = take_port_lock(&bound).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            anyhow!(
                "UDP port {} ({bound}) is being bound by another pktmesh node",
                bound.port()
            )
        } else {
            anyhow::Error::new(e).context(format!("locking UDP port {}", bound.port()))
        }
    })?;
    drop(exclusive);
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        sockets.push(bind_udp(&bound, true).map_err(|e| udp_bind_error(&bound, e))?);
    }
    if let Some(first) = sockets.first() {
        if let Err(e) = steer_to_first(first.as_fd(), count, bound.is_ipv4()) {
            warn!(
                bind = %bound,
                error = %e,
                "cannot keep the port's datagrams on this node's sockets: a process of the same \
                 user that joins the port with SO_REUSEPORT would get a share of them"
            );
        }
    }
    Ok(UdpGroup {
        sockets,
        lock: Some(lock),
    })
}

/// The error for a UDP bind that failed: one that names the port when it is taken.
fn udp_bind_error(bind: &SocketAddr, e: io::Error) -> anyhow::Error {
    if e.kind() == io::ErrorKind::AddrInUse {
        anyhow!(
            "UDP port {} ({bind}) is already in use by another process",
            bind.port()
        )
    } else {
        anyhow::Error::new(e).context(format!("binding UDP {bind}"))
    }
}

/// Abstract Unix socket names that lock a UDP address: this, then the address (`0.0.0.0:5000`).
pub(super) const PORT_LOCK_PREFIX: &str = "pktmesh/udp/";

/// Binds the abstract Unix socket that stands for `bound`; `AddrInUse` when another process
/// holds it.
fn take_port_lock(bound: &SocketAddr) -> io::Result<UnixDatagram> {
    let name = format!("{PORT_LOCK_PREFIX}{bound}");
    UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes())?)
}

/// A UDP interface's beacon socket: where its beacons go out and other nodes' come in.
pub(super) struct BeaconSocket {
    pub(super) socket: UdpSocket,
    pub(super) settings: BeaconSettings,
    pub(super) data_port: u16,
    /// The address it is bound to (the data socket's address, the beacon port).
    pub(super) bind: SocketAddr,
    /// The selected interfaces as last read, and when.
    interfaces: RefCell<(Option<Instant>, Vec<BeaconInterface>)>,
    /// Datagrams refused since the last log line, the last reason, and when that line was.
    refused: RefCell<(u64, Option<Refused>, Option<Instant>)>,
}

/// How long the list of beacon interfaces is used before it is read again.
const INTERFACES_FRESH: Duration = Duration::from_secs(5);
/// Refused beacons are logged at most this often.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

impl BeaconSocket {
    /// Binds the beacon socket of the UDP interface whose data socket is at `data_addr`: the
    /// same address, the beacon port; shared with other processes (`SO_REUSEADDR`, so that
    /// every node on the host hears the broadcasts), with `IP_PKTINFO` on so that
    /// [`BeaconSocket::receive`] knows where each datagram was sent.
    pub(super) fn bind(data_addr: SocketAddr, settings: BeaconSettings) -> Result<Self> {
        let bind = SocketAddr::new(data_addr.ip(), settings.port);
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        sock.set_reuse_address(true)?;
        sock.set_broadcast(true)?;
        sock.set_nonblocking(true)?;
        set_int_option(sock.as_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
            .context("turning IP_PKTINFO on for the beacon socket")?;
        sock.bind(&bind.into())
            .with_context(|| format!("binding the beacon socket {bind}"))?;
        Ok(Self {
            socket: UdpSocket::from_std(sock.into()),
            data_port: data_addr.port(),
            settings,
            bind,
            interfaces: RefCell::new((None, Vec::new())),
            refused: RefCell::new((0, None, None)),
        })
    }

    /// The interfaces the settings select, read again when stale.
    fn interfaces(&self) -> std::cell::Ref<'_, [BeaconInterface]> {
        let now = Instant::now();
        let stale = self
            .interfaces
            .borrow()
            .0
            .is_none_or(|t| now.saturating_duration_since(t) >= INTERFACES_FRESH);
        if stale {
            let all = if_addrs::get_if_addrs().unwrap_or_default();
            let list = beacon_interfaces(&self.settings.devices, &all, None);
            *self.interfaces.borrow_mut() = (Some(now), list);
        }
        std::cell::Ref::map(self.interfaces.borrow(), |(_, list)| list.as_slice())
    }

    /// Broadcasts our beacon on every selected IPv4 interface (not loopback, not our TUN).
    pub(super) fn send<P: Pathfinder>(&self, node: &Node<P>, tun: Option<&str>) {
        let beacon = node.beacon(self.data_port);
        for iface in self.interfaces().iter() {
            if Some(iface.name.as_str()) == tun {
                continue;
            }
            let to = SocketAddr::new(iface.broadcast().into(), self.settings.port);
            if let Err(e) = self.socket.send_to(&beacon, to) {
                debug!(%to, error = %e, "beacon send failed");
            }
        }
    }

    /// The beacons waiting on the socket (up to a batch), and who sent them: only datagrams
    /// broadcast on a selected interface by a host of its subnet ([`accept_beacon`]); the
    /// others are counted and logged at most every [`REFUSED_LOG_EVERY`].
    pub(super) fn receive(&self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut heard = Vec::new();
        let mut data = [0u8; 512];
        for _ in 0..MAX_BATCH {
            let (n, from, info) = match recv_with_info(self.socket.as_fd(), &mut data) {
                Ok(r) => r,
                Err(_) => break,
            };
            match accept_beacon(from, info, &self.interfaces()) {
                Ok(_) => heard.push((from, data[..n].to_vec())),
                Err(why) => {
                    debug!(%from, %why, "datagram on the beacon port refused");
                    let mut refused = self.refused.borrow_mut();
                    refused.0 += 1;
                    refused.1 = Some(why);
                }
            }
        }
        self.log_refused();
        heard
    }

    fn log_refused(&self) {
        let mut refused = self.refused.borrow_mut();
        let now = Instant::now();
        let (count, why, last) = &mut *refused;
        if *count == 0 || last.is_some_and(|t| now.saturating_duration_since(t) < REFUSED_LOG_EVERY)
        {
            return;
        }
        if let Some(why) = why.take() {
            warn!(
                refused = *count,
                bind = %self.bind,
                last = %why,
                "datagrams on the beacon port refused: beacons are taken only when broadcast \
                 on a beacon device by a host of its subnet"
            );
        }
        *count = 0;
        *last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Datagrams waiting on `s` (non-blocking), counted.
    fn drain(s: &StdUdpSocket) -> usize {
        let mut buf = [0u8; 64];
        let mut n = 0;
        while s.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    /// A group of three on one loopback port: a socket of the same user may still join it
    /// (the kernel's rule), but every datagram goes to one of the group's own sockets, spread
    /// by sender; and a second group on the port is refused, naming it.
    #[test]
    fn a_socket_that_joins_the_group_later_gets_nothing() {
        for any in ["127.0.0.1:0", "[::1]:0"] {
            let Ok(group) = bind_udp_group(&any.parse().unwrap(), 3) else {
                eprintln!("skipped {any}: cannot bind");
                continue;
            };
            let port_addr = group.sockets[0].local_addr().unwrap();
            let intruder = bind_udp(&port_addr, true).expect("the kernel lets it join");
            for s in group.sockets.iter().chain([&intruder]) {
                s.set_nonblocking(true).unwrap();
            }
            let err = bind_udp_group(&port_addr, 2)
                .err()
                .expect("port held")
                .to_string();
            assert!(err.contains(&port_addr.port().to_string()), "{err}");
            let senders: Vec<StdUdpSocket> = (0..48)
                .map(|_| StdUdpSocket::bind(SocketAddr::new(port_addr.ip(), 0)).expect("a sender"))
                .collect();
            for s in &senders {
                s.send_to(b"hello", port_addr).unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
            let ours: Vec<usize> = group.sockets.iter().map(drain).collect();
            assert_eq!(drain(&intruder), 0, "{any}: the late joiner got datagrams");
            assert_eq!(ours.iter().sum::<usize>(), senders.len(), "{any}: {ours:?}");
            assert!(
                ours.iter().filter(|&&n| n > 0).count() >= 2,
                "{any}: senders spread over the group: {ours:?}"
            );
        }
    }

    #[test]
    fn one_worker_binds_exclusively() {
        let group = bind_udp_group(&"127.0.0.1:0".parse().unwrap(), 1).unwrap();
        assert!(group.lock.is_none());
        let port_addr = group.sockets[0].local_addr().unwrap();
        assert!(
            bind_udp(&port_addr, true).is_err(),
            "nobody joins an exclusive socket"
        );
        let err = bind_udp_group(&port_addr, 1).err().unwrap().to_string();
        assert!(err.contains("already in use"), "{err}");
    }
}
