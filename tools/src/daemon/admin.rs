//! The admin face: the admin API socket drained into the node's functions on every shard,
//! the switch pings it started, and what the admin API asked of the host process (reported,
//! since the daemon cannot do it at run time).

use std::io;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use pktmesh_node::admin::{AdminServer, UnixMillis};
use pktmesh_node::core::{Node, Pathfinder};
use pktmesh_node::host::{HostRequest, HostState, HostUser, InterfaceKind};
use pktmesh_node::node_admin::{NodeAdmin, PendingPings};
use tracing::{debug, info, warn};

use super::MAX_BATCH;

pub(super) struct Admin {
    pub(super) socket: UdpSocket,
    pub(super) server: AdminServer,
    pub(super) pings: PendingPings,
    /// Interfaces and users for the admin functions, and what they asked of us.
    pub(super) host: HostState,
}

impl Admin {
    pub(super) fn drain<P: Pathfinder>(&mut self, shards: &mut [&mut Node<P>]) {
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
    pub(super) fn report_host_requests(&mut self, tun: Option<&str>) {
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

    pub(super) fn complete_pings<P: Pathfinder>(&mut self, node: &mut Node<P>) {
        for (to, reply) in self.pings.poll(Instant::now(), node, &self.server) {
            let _ = self.socket.send_to(&reply, to);
        }
    }
}

/// The accounts of `/etc/passwd` (`name:password:uid:gid:…`), for `Security_getUser`; users
/// known only to other NSS sources are not seen. Unreadable: none.
pub(super) fn host_users() -> Vec<HostUser> {
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
pub(super) fn current_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}
