//! What the admin API asks of the process that hosts the node, and what that process told the
//! node about itself.
//!
//! cjdns' core opens sockets, creates the TUN device, adds route exceptions and drops
//! privileges when its client process asks it to over the admin API (`UDPInterface_new`,
//! `Core_initTunnel`, `RouteGen_addException`, `Security_chroot`, `Security_setUser`, …: the
//! sequence in `admin-api/startup-config.pcap` of the reference captures). A sans-IO core can
//! do none of that itself. [`HostState`] is where those calls land: each is answered with
//! cjdns' reply, **recorded** (the current state, e.g. [`HostState::interfaces`],
//! [`HostState::security`]) and **queued** as a [`HostRequest`] that the driver takes with
//! [`HostState::poll_request`] and either carries out or reports. Nothing is silently
//! dropped: a request the driver cannot honour stays visible in both places.
//!
//! The driver also tells the core what exists already: the interfaces it opened from its
//! configuration ([`HostState::add_open_interface`], numbered as cjdns numbers its
//! interfaces: in order of creation, from 0) and the user database `Security_getUser` reads
//! ([`HostState::set_users`]), which a sans-IO core cannot read itself.

use std::collections::VecDeque;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// An account as `Security_getUser` reports it (`getpwnam` in cjdns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
}

/// What kind of interface a number names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InterfaceKind {
    /// A UDP socket bound to this address (`UDPInterface`).
    Udp {
        /// The bind address.
        bind: SocketAddr,
    },
    /// An Ethernet device (`ETHInterface`).
    Eth {
        /// The device name.
        device: String,
    },
}

/// One interface of the node, as cjdns' InterfaceController numbers them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    /// The interface number (`interfaceNumber`, `ifNum`).
    pub number: u32,
    /// What it is.
    pub kind: InterfaceKind,
    /// Whether the driver has it open. `false` for one requested over the admin API that the
    /// driver has not (yet) opened.
    pub open: bool,
}

/// An IP address with a prefix length: a `RouteGen` route or exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length (32 or 128 when the request gave none).
    pub len: u8,
}

impl IpPrefix {
    /// Parses `address` or `address/length` (IPv4 or IPv6). As cjdns' `Sockaddr_parse`, an
    /// address with a port (`1.2.3.4:5`, `[::1]:5`) is accepted too; the port is ignored.
    pub fn parse(text: &str) -> Option<Self> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr = match addr_text.parse::<IpAddr>() {
            Ok(a) => a,
            Err(_) => addr_text.parse::<SocketAddr>().ok()?.ip(),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                l.parse::<u8>().ok().filter(|&l| l <= max)?
            }
            Some(_) => return None,
        };
        Some(Self { addr, len })
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// What `Security_*` calls asked for so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecurityRequests {
    /// `Security_chroot`: the directory to change root to (the last one asked).
    pub chroot: Option<String>,
    /// `Security_setUser`: the user to become (the last one asked).
    pub set_user: Option<SetUser>,
    /// `Security_noforks`: forbid `fork` (cjdns: `RLIMIT_NPROC` 0).
    pub noforks: bool,
    /// `Security_nofiles`: forbid opening files (cjdns: `RLIMIT_NOFILE` 0).
    pub nofiles: bool,
    /// `Security_setupComplete`: the client has finished configuring the core.
    pub setup_complete: bool,
}

/// A `Security_setUser` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetUser {
    /// User id.
    pub uid: u32,
    /// Group id (0: leave the group alone, as cjdns does).
    pub gid: u32,
    /// Keep `CAP_NET_ADMIN` across the switch.
    pub keep_net_admin: bool,
}

/// A request the node's admin functions answered (with cjdns' reply) and left to the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostRequest {
    /// `UDPInterface_new`: open a UDP socket on `bind` as interface `number`.
    UdpInterface {
        /// The number the reply gave it.
        number: u32,
        /// The requested bind address (`0.0.0.0:0` when none was given).
        bind: SocketAddr,
        /// DSCP to set on outgoing packets (0: leave alone).
        dscp: u8,
        /// Beacon port (0: no beacons).
        beacon_port: u16,
    },
    /// `RouteGen_addException`: keep this prefix out of the routes generated for the TUN
    /// device.
    RouteException(IpPrefix),
    /// `Core_initTunnel`: create the TUN device (name wanted, if any) and give it the node's
    /// address.
    InitTunnel {
        /// `desiredTunName`.
        desired_name: Option<String>,
    },
    /// `Security_chroot`.
    Chroot(String),
    /// `Security_setUser`.
    SetUser(SetUser),
    /// `Security_noforks`.
    NoForks,
    /// `Security_nofiles`.
    NoFiles,
    /// `Security_setupComplete`.
    SetupComplete,
}

impl fmt::Display for HostRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UdpInterface {
                number,
                bind,
                dscp,
                beacon_port,
            } => write!(
                f,
                "UDPInterface_new: interface {number} bound to {bind} (dscp {dscp}, beacon port \
                 {beacon_port})"
            ),
            Self::RouteException(p) => write!(f, "RouteGen_addException: {p}"),
            Self::InitTunnel { desired_name } => write!(
                f,
                "Core_initTunnel: {}",
                desired_name.as_deref().unwrap_or("<any name>")
            ),
            Self::Chroot(root) => write!(f, "Security_chroot: {root}"),
            Self::SetUser(u) => write!(
                f,
                "Security_setUser: uid {} gid {} keepNetAdmin {}",
                u.uid,
                u.gid,
                u8::from(u.keep_net_admin)
            ),
            Self::NoForks => f.write_str("Security_noforks"),
            Self::NoFiles => f.write_str("Security_nofiles"),
            Self::SetupComplete => f.write_str("Security_setupComplete"),
        }
    }
}

/// At most this many requests wait for the driver; older ones are dropped first (they stay
/// recorded in the state). Bounds memory against a client repeating calls.
pub const MAX_PENDING_REQUESTS: usize = 256;

/// At most this many interfaces and route exceptions are recorded (cjdns' are bounded by
/// memory only; this bounds a client looping on `UDPInterface_new`).
pub const MAX_RECORDED: usize = 1024;

/// The host-facing state of the node's admin functions. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    interfaces: Vec<HostInterface>,
    route_exceptions: Vec<IpPrefix>,
    tunnel: Option<Option<String>>,
    security: SecurityRequests,
    users: Vec<HostUser>,
    current_uid: Option<u32>,
    pending: VecDeque<HostRequest>,
    dropped: u64,
}

impl HostState {
    /// No interfaces, no users, nothing asked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an interface the driver has open (from its configuration) and returns its
    /// number. Register them in cjdns' order (UDP interfaces, then Ethernet ones) so that
    /// numbers agree with a stock node's.
    pub fn add_open_interface(&mut self, kind: InterfaceKind) -> u32 {
        self.push_interface(kind, true)
    }

    /// Marks interface `number` open (the driver carried out its `UDPInterface_new`). Returns
    /// whether there is such an interface.
    pub fn mark_open(&mut self, number: u32) -> bool {
        match self.interfaces.iter_mut().find(|i| i.number == number) {
            Some(i) => {
                i.open = true;
                true
            }
            None => false,
        }
    }

    /// The interfaces, by number: opened by the driver or requested over the admin API.
    pub fn interfaces(&self) -> &[HostInterface] {
        &self.interfaces
    }

    /// The interface with this number.
    pub fn interface(&self, number: u32) -> Option<&HostInterface> {
        self.interfaces.iter().find(|i| i.number == number)
    }

    /// Route exceptions added with `RouteGen_addException`.
    pub fn route_exceptions(&self) -> &[IpPrefix] {
        &self.route_exceptions
    }

    /// `Some(desired name)` once `Core_initTunnel` was called.
    pub fn tunnel_requested(&self) -> Option<Option<&str>> {
        self.tunnel.as_ref().map(Option::as_deref)
    }

    /// What the `Security_*` calls asked for.
    pub fn security(&self) -> &SecurityRequests {
        &self.security
    }

    /// Sets the user database `Security_getUser` answers from, and the uid the process runs
    /// as (what `Security_getUser` without a name reports).
    pub fn set_users(&mut self, users: Vec<HostUser>, current_uid: Option<u32>) {
        self.users = users;
        self.current_uid = current_uid;
    }

    /// The user named `name`, or the current user for `None`.
    pub fn user(&self, name: Option<&[u8]>) -> Option<&HostUser> {
        match name {
            Some(n) => self.users.iter().find(|u| u.name.as_bytes() == n),
            None => {
                let uid = self.current_uid?;
                self.users.iter().find(|u| u.uid == uid)
            }
        }
    }

    /// The oldest request not yet taken by the driver.
    pub fn poll_request(&mut self) -> Option<HostRequest> {
        self.pending.pop_front()
    }

    /// How many requests were dropped unseen, because more than [`MAX_PENDING_REQUESTS`]
    /// waited, since the last call.
    pub fn take_dropped_requests(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    // ----- recording (for the node's admin functions) ------------------------------------

    fn push_interface(&mut self, kind: InterfaceKind, open: bool) -> u32 {
        let number = self
            .interfaces
            .last()
            .map_or(0, |i| i.number.saturating_add(1));
        self.interfaces.push(HostInterface { number, kind, open });
        number
    }

    fn queue(&mut self, request: HostRequest) {
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(request);
    }

    /// Records a `UDPInterface_new`; returns its interface number, or `None` when
    /// [`MAX_RECORDED`] interfaces exist.
    pub(crate) fn request_udp_interface(
        &mut self,
        bind: SocketAddr,
        dscp: u8,
        beacon_port: u16,
    ) -> Option<u32> {
        if self.interfaces.len() >= MAX_RECORDED {
            return None;
        }
        let number = self.push_interface(InterfaceKind::Udp { bind }, false);
        self.queue(HostRequest::UdpInterface {
            number,
            bind,
            dscp,
            beacon_port,
        });
        Some(number)
    }

    /// Records a `RouteGen_addException` (a repeated one is recorded once, queued again).
    pub(crate) fn add_route_exception(&mut self, prefix: IpPrefix) {
        if !self.route_exceptions.contains(&prefix) && self.route_exceptions.len() < MAX_RECORDED {
            self.route_exceptions.push(prefix);
        }
        self.queue(HostRequest::RouteException(prefix));
    }

    /// Records a `Core_initTunnel`.
    pub(crate) fn init_tunnel(&mut self, desired_name: Option<String>) {
        self.tunnel = Some(desired_name.clone());
        self.queue(HostRequest::InitTunnel { desired_name });
    }

    /// Records a `Security_*` call.
    pub(crate) fn security_request(&mut self, request: HostRequest) {
        match &request {
            HostRequest::Chroot(root) => self.security.chroot = Some(root.clone()),
            HostRequest::SetUser(u) => self.security.set_user = Some(*u),
            HostRequest::NoForks => self.security.noforks = true,
            HostRequest::NoFiles => self.security.nofiles = true,
            HostRequest::SetupComplete => self.security.setup_complete = true,
            _ => {}
        }
        self.queue(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_like_sockaddr_parse() {
        let p = IpPrefix::parse("10.66.3.2").unwrap();
        assert_eq!(p.to_string(), "10.66.3.2/32");
        assert_eq!(IpPrefix::parse("10.0.0.0/8").unwrap().len, 8);
        assert_eq!(IpPrefix::parse("fc00::/8").unwrap().to_string(), "fc00::/8");
        assert_eq!(IpPrefix::parse("::1").unwrap().len, 128);
        assert_eq!(
            IpPrefix::parse("10.1.2.3:80").unwrap().to_string(),
            "10.1.2.3/32"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "nope",
            "::/129",
        ] {
            assert_eq!(IpPrefix::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_follow_creation_and_requests_queue() {
        let mut h = HostState::new();
        let bind: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(h.add_open_interface(InterfaceKind::Udp { bind }), 0);
        assert_eq!(h.request_udp_interface(bind, 0, 0), Some(1));
        assert!(!h.interface(1).unwrap().open);
        assert!(h.mark_open(1));
        assert!(!h.mark_open(7));
        assert!(matches!(
            h.poll_request(),
            Some(HostRequest::UdpInterface { number: 1, .. })
        ));
        assert_eq!(h.poll_request(), None);
        for _ in 0..MAX_PENDING_REQUESTS + 3 {
            h.security_request(HostRequest::NoForks);
        }
        assert_eq!(h.take_dropped_requests(), 3);
        assert_eq!(h.take_dropped_requests(), 0);
        assert!(h.security().noforks);
    }
}
