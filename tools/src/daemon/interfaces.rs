//! Setting up interfaces: UDP sockets (bound the way cjdns binds them), beacon sockets,
//! Ethernet devices, and the first connection to every configured peer.

use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::time::Instant;

use anyhow::Result;
use mio::net::UdpSocket;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token};
use pktmesh_node::core::{Node, Pathfinder};
use pktmesh_node::eth::{display_link, EthLink};
use pktmesh_node::peers::PeerCredentials;
use tracing::{debug, info, warn};

use self::eth::EthSocket;

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

/// Binds a UDP socket; IPv6 sockets are IPv6-only, so `0.0.0.0:P` and `[::]:P` (what
/// `cjdroute --genconf` writes) can both be bound, as cjdns does.
/// A UDP socket bound to `bind`; with `reuse_port`, one of a group on the same port among
/// which the kernel spreads peers (by a hash of their addresses).
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

pub(super) struct BeaconSocket {
    pub(super) socket: UdpSocket,
    pub(super) settings: BeaconSettings,
    pub(super) data_port: u16,
}

impl BeaconSocket {
    /// Broadcasts our beacon on every selected IPv4 interface (not loopback, not our TUN).
    pub(super) fn send<P: Pathfinder>(&self, node: &Node<P>, tun: Option<&str>) {
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
    pub(super) fn receive(&self) -> Vec<(SocketAddr, Vec<u8>)> {
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
