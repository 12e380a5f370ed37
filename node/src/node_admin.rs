//! The node's admin functions: what `cjdnstool peers show`, `session show`, `ping` and `util`
//! call, and what the stock `cjdroute` client sends to configure a fresh core, with cjdns
//! 22.3's names, arguments, paging and reply keys.
//!
//! [`NodeAdmin`] borrows the node (all its shards, [`crate::shard`]) for one request; switch
//! pings answer later, so their reply addresses wait in [`PendingPings`] until the node reports
//! the pong or the deadline passes.
//!
//! # Functions the sans-IO core cannot carry out
//!
//! The stock client configures a core with `UDPInterface_new`, `RouteGen_addException`,
//! `Core_initTunnel`, `Security_getUser`, `Security_chroot`, `Security_setUser`,
//! `Security_noforks` and `Security_setupComplete` (`admin-api/startup-config.pcap`). They
//! need sockets, a TUN device, routes or process privileges, which the core does not own.
//! Each answers with cjdns' reply (`error: none`, and for `UDPInterface_new` the interface
//! number and bind address) and records the request in the [`HostState`] the driver passed
//! in: it is then both part of the state (`HostState::interfaces`, `HostState::security`, …)
//! and queued for the driver ([`HostState::poll_request`]), which carries it out or reports
//! that it did not. In particular `UDPInterface_new` opens **no** socket here: it creates an
//! interface number marked not open, and a pending [`HostRequest::UdpInterface`].
//! `Security_getUser` answers from the user list the driver gave ([`HostState::set_users`]).
//!
//! [`HostRequest::UdpInterface`]: crate::host::HostRequest::UdpInterface

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use pktmesh_crypto_auth::{Address, PublicKey};
use pktmesh_switch::Label;

use crate::admin::{
    AdminFunctions, AdminServer, ArgSpec, ArgType, Call, FunctionSpec, ReplyTo, Response,
};
use crate::bencode::{Dict, Value};
use crate::core::{
    BudgetStats, HandshakeStats, Node, Pathfinder, PeerStats, PingResult, ReceiveStats,
    SessionStats,
};
use crate::host::{HostRequest, HostState, InterfaceKind, IpPrefix, SetUser};
use crate::peers::PeerCredentials;

/// Peers per `InterfaceController_peerStats` page.
pub const PEERS_PER_PAGE: usize = 6;
/// Handles per `SessionManager_getHandles` page.
pub const HANDLES_PER_PAGE: usize = 64;
/// Entries per `Pktmesh_receiveStats` page.
pub const RECEIVE_STATS_PER_PAGE: usize = 8;
/// Default switch ping timeout.
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_millis(2000);

/// The functions this node registers, in cjdns' registration order.
pub const NODE_FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "Core_nodeInfo",
        needs_auth: false,
        args: &[],
    },
    FunctionSpec {
        name: "InterfaceController_peerStats",
        needs_auth: false,
        args: &[ArgSpec::optional("page", ArgType::Int)],
    },
    FunctionSpec {
        name: "SessionManager_getHandles",
        needs_auth: true,
        args: &[ArgSpec::optional("page", ArgType::Int)],
    },
    FunctionSpec {
        name: "SessionManager_sessionStats",
        needs_auth: true,
        args: &[ArgSpec::required("handle", ArgType::Int)],
    },
    FunctionSpec {
        name: "SwitchPinger_ping",
        needs_auth: true,
        args: &[
            ArgSpec::required("path", ArgType::String),
            ArgSpec::optional("timeout", ArgType::Int),
            ArgSpec::optional("data", ArgType::String),
            ArgSpec::optional("keyPing", ArgType::Int),
        ],
    },
    FunctionSpec {
        name: "UDPInterface_beginConnection",
        needs_auth: true,
        args: &[
            ArgSpec::required("publicKey", ArgType::String),
            ArgSpec::required("address", ArgType::String),
            ArgSpec::optional("interfaceNumber", ArgType::Int),
            ArgSpec::optional("password", ArgType::String),
            ArgSpec::optional("login", ArgType::String),
            ArgSpec::optional("peerName", ArgType::String),
            ArgSpec::optional("version", ArgType::Int),
        ],
    },
    FunctionSpec {
        name: "AuthorizedPasswords_add",
        needs_auth: true,
        args: &[
            ArgSpec::required("password", ArgType::String),
            ArgSpec::optional("user", ArgType::String),
            ArgSpec::optional("ipv6", ArgType::String),
        ],
    },
    FunctionSpec {
        name: "AuthorizedPasswords_list",
        needs_auth: true,
        args: &[ArgSpec::optional("page", ArgType::Int)],
    },
    FunctionSpec {
        name: "UDPInterface_new",
        needs_auth: true,
        args: &[
            ArgSpec::optional("bindAddress", ArgType::String),
            ArgSpec::optional("dscp", ArgType::Int),
            ArgSpec::optional("beaconPort", ArgType::Int),
        ],
    },
    FunctionSpec {
        name: "RouteGen_addException",
        needs_auth: true,
        args: &[ArgSpec::required("route", ArgType::String)],
    },
    FunctionSpec {
        name: "Core_initTunnel",
        needs_auth: true,
        args: &[ArgSpec::optional("desiredTunName", ArgType::String)],
    },
    FunctionSpec {
        name: "Security_nofiles",
        needs_auth: true,
        args: &[],
    },
    FunctionSpec {
        name: "Security_noforks",
        needs_auth: true,
        args: &[],
    },
    FunctionSpec {
        name: "Security_chroot",
        needs_auth: true,
        args: &[ArgSpec::required("root", ArgType::String)],
    },
    FunctionSpec {
        name: "Security_setUser",
        needs_auth: true,
        args: &[
            ArgSpec::required("uid", ArgType::Int),
            ArgSpec::optional("gid", ArgType::Int),
            ArgSpec::required("keepNetAdmin", ArgType::Int),
        ],
    },
    FunctionSpec {
        name: "Security_getUser",
        needs_auth: true,
        args: &[ArgSpec::optional("user", ArgType::String)],
    },
    FunctionSpec {
        name: "Security_setupComplete",
        needs_auth: true,
        args: &[],
    },
    // pktmesh's own (cjdns has no such function): what every peer link and end-to-end
    // session refused on receipt, beyond the replay-window counts cjdns reports.
    FunctionSpec {
        name: "Pktmesh_receiveStats",
        needs_auth: false,
        args: &[ArgSpec::optional("page", ArgType::Int)],
    },
    // pktmesh's own: what the handshake budgets shed and what the session table holds and has
    // let go, summed over the node's shards (docs/node.md, "Handshake budget").
    FunctionSpec {
        name: "Pktmesh_handshakeStats",
        needs_auth: false,
        args: &[],
    },
];

/// Users per `AuthorizedPasswords_list` page.
pub const USERS_PER_PAGE: usize = 16;

/// `v<version>.<label>.<key>.k`, cjdns' printed node address (`Address_toStringKey`).
pub fn address_string(version: u32, label: Label, key: &PublicKey) -> String {
    format!("v{version}.{label}.{key}")
}

/// Switch pings waiting for their pong.
#[derive(Debug, Default)]
pub struct PendingPings {
    waiting: Vec<PendingPing>,
}

#[derive(Debug)]
struct PendingPing {
    cookie: u64,
    reply_to: ReplyTo,
    path: String,
    sent: Instant,
    deadline: Instant,
}

impl PendingPings {
    /// Completes pings with the node's results and expired ones with `timeout`, returning the
    /// reply datagrams to send and where. `node` is the shard [`NodeAdmin`] sends pings from,
    /// the first.
    pub fn poll<P: Pathfinder>(
        &mut self,
        now: Instant,
        node: &mut Node<P>,
        server: &AdminServer,
    ) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(r) = node.poll_ping_result() {
            if let Some(i) = self.waiting.iter().position(|p| p.cookie == r.cookie) {
                let p = self.waiting.swap_remove(i);
                out.push((
                    p.reply_to.addr,
                    server.reply(&p.reply_to, pong_reply(&p, &r)),
                ));
            }
        }
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].deadline <= now {
                let p = self.waiting.swap_remove(i);
                let ms = now.saturating_duration_since(p.sent).as_millis() as i64;
                let d = Dict::new()
                    .with("result", Value::from("timeout"))
                    .with("ms", Value::Int(ms))
                    .with("path", Value::from(p.path.as_str()));
                out.push((p.reply_to.addr, server.reply(&p.reply_to, d)));
            } else {
                i += 1;
            }
        }
        out
    }

    /// The earliest deadline, for the driver's timer.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|p| p.deadline).min()
    }
}

fn pong_reply(p: &PendingPing, r: &PingResult) -> Dict {
    Dict::new()
        .with("result", Value::from("pong"))
        .with("ms", Value::Int(r.rtt.as_millis() as i64))
        .with("path", Value::from(p.path.as_str()))
        .with(
            "responsePath",
            Value::from(r.response_path.to_string().as_str()),
        )
        .with("version", Value::Int(i64::from(r.version)))
}

/// The node's admin functions for one request.
pub struct NodeAdmin<'a, 'n, P> {
    /// The node's shards, in shard order (one for an unsharded node).
    pub shards: &'a mut [&'n mut Node<P>],
    /// Monotonic time of the request.
    pub now: Instant,
    /// Where switch pings wait.
    pub pings: &'a mut PendingPings,
    /// Interfaces, users and what was asked of the host process (module documentation).
    pub host: &'a mut HostState,
}

fn error(text: &str) -> Response {
    Response::Reply(Dict::new().with("error", Value::from(text)))
}

fn page_of(call: &Call<'_>) -> usize {
    call.args
        .get_int("page")
        .and_then(|p| usize::try_from(p).ok())
        .unwrap_or(0)
}

impl<P: Pathfinder> NodeAdmin<'_, '_, P> {
    /// The first shard: the node's identity, and where switch pings start.
    fn first(&mut self) -> Option<&mut Node<P>> {
        self.shards.first_mut().map(|n| &mut **n)
    }

    /// Peers of all shards, in slot order.
    fn all_peer_stats(&self) -> Vec<PeerStats> {
        let mut all: Vec<PeerStats> = self
            .shards
            .iter()
            .flat_map(|n| n.peer_stats(self.now))
            .collect();
        if self.shards.len() > 1 {
            all.sort_by_key(|p| p.slot);
        }
        all
    }

    /// Sessions of all shards, by handle.
    fn all_session_stats(&self) -> Vec<SessionStats> {
        let mut all: Vec<SessionStats> =
            self.shards.iter().flat_map(|n| n.session_stats()).collect();
        if self.shards.len() > 1 {
            all.sort_by_key(|s| s.handle);
        }
        all
    }

    fn node_info(&self) -> Response {
        let Some(node) = self.shards.first() else {
            return error("no node");
        };
        let scheme = node.scheme();
        let forms: Vec<Value> = scheme
            .forms()
            .iter()
            .rev()
            .map(|f| {
                let prefix = format!("{:08x}", f.prefix);
                let stripped = prefix.trim_start_matches("00");
                let stripped = if stripped.is_empty() { "00" } else { stripped };
                Value::Dict(
                    Dict::new()
                        .with("bitCount", Value::Int(i64::from(f.bit_count)))
                        .with("prefixLen", Value::Int(i64::from(f.prefix_len)))
                        .with("prefix", Value::from(stripped)),
                )
            })
            .collect();
        let key = *node.public_key();
        Response::Reply(
            Dict::new()
                .with(
                    "myAddr",
                    Value::from(address_string(22, Label::SELF, &key).as_str()),
                )
                .with("myIp6", Value::from(node.address().to_string().as_str()))
                .with(
                    "compressedSchemeHex",
                    Value::from(hex_lower(&scheme.serialize()).as_str()),
                )
                .with("encodingScheme", Value::List(forms))
                .with("version", Value::Int(22))
                .with("error", Value::from("none")),
        )
    }

    fn peer_stats(&self, call: &Call<'_>) -> Response {
        let stats = self.all_peer_stats();
        let start = page_of(call).saturating_mul(PEERS_PER_PAGE);
        let peers: Vec<Value> = stats
            .iter()
            .skip(start)
            .take(PEERS_PER_PAGE)
            .map(|p| {
                let mut d = Dict::new()
                    .with(
                        "addr",
                        Value::from(address_string(p.version, p.label, &p.key).as_str()),
                    )
                    .with(
                        "lladdr",
                        Value::from(crate::eth::display_link(&p.link_address).as_str()),
                    )
                    .with("state", Value::from(p.state))
                    // cjdns: the time of the last message, Unix milliseconds.
                    .with(
                        "last",
                        Value::Int(call.now.0.saturating_sub(p.last_ms_ago) as i64),
                    )
                    .with("isIncoming", Value::Int(i64::from(p.is_incoming)))
                    .with("bytesIn", Value::Int(p.bytes_in as i64))
                    .with("bytesOut", Value::Int(p.bytes_out as i64))
                    .with("recvKbps", Value::Int(0))
                    .with("sendKbps", Value::Int(0))
                    .with("duplicates", count(p.receive.duplicates))
                    .with("lostPackets", count(p.receive.lost_packets))
                    .with("receivedOutOfRange", count(p.receive.received_out_of_range))
                    .with("receivedPackets", count(p.receive.received_packets))
                    .with("noiseProto", Value::Int(i64::from(p.noise)))
                    .with("ifNum", Value::Int(0));
                if let Some(u) = &p.user {
                    d.insert("user", Value::from(u.as_str()));
                }
                Value::Dict(d)
            })
            .collect();
        let mut d = Dict::new()
            .with("peers", Value::List(peers))
            .with("total", Value::Int(stats.len() as i64));
        if start + PEERS_PER_PAGE < stats.len() {
            d.insert("more", Value::Int(1));
        }
        Response::Reply(d)
    }

    fn handles(&self, call: &Call<'_>) -> Response {
        let all: Vec<Value> = self
            .all_session_stats()
            .iter()
            .map(|s| Value::Int(i64::from(s.handle)))
            .collect();
        let start = page_of(call).saturating_mul(HANDLES_PER_PAGE);
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(HANDLES_PER_PAGE)
            .cloned()
            .collect();
        let mut d = Dict::new()
            .with("handles", Value::List(page))
            .with("total", Value::Int(all.len() as i64));
        if start + HANDLES_PER_PAGE < all.len() {
            d.insert("more", Value::Int(1));
        }
        Response::Reply(d)
    }

    fn session_stats(&self, call: &Call<'_>) -> Response {
        let handle = call.args.get_int("handle").unwrap_or(-1);
        let Some(s) = self
            .all_session_stats()
            .into_iter()
            .find(|s| i64::from(s.handle) == handle)
        else {
            return error("no such session");
        };
        let label = Label::new(s.path).unwrap_or(Label::SELF);
        Response::Reply(
            Dict::new()
                .with("ip6", Value::from(s.address.to_string().as_str()))
                .with(
                    "addr",
                    Value::from(address_string(s.version, label, &s.key).as_str()),
                )
                .with("state", Value::from(s.state))
                .with("handle", Value::Int(i64::from(s.handle)))
                .with("sendHandle", Value::Int(i64::from(s.send_handle)))
                .with(
                    "metric",
                    Value::Int(if s.path == 0 { 0xffff_ffff } else { 0 }),
                )
                .with("duplicates", count(s.receive.duplicates))
                .with("lostPackets", count(s.receive.lost_packets))
                .with("receivedOutOfRange", count(s.receive.received_out_of_range))
                .with("noiseProto", Value::Int(i64::from(s.noise)))
                .with("timeOfLastUsage", Value::Int(0)),
        )
    }

    /// `Pktmesh_receiveStats(page)`: per peer link and per end-to-end session, what the
    /// receiving side counted — accepted, lost, duplicate and too-late packets (the replay
    /// window, as cjdns reports in `peerStats`/`sessionStats`) and packets that did not open at
    /// all (`dropped`) — [`RECEIVE_STATS_PER_PAGE`] entries a page, peers first.
    fn receive_stats(&self, call: &Call<'_>) -> Response {
        let entry = |kind: &str, addr: String, r: &ReceiveStats| {
            Value::Dict(
                Dict::new()
                    .with("kind", Value::from(kind))
                    .with("addr", Value::from(addr.as_str()))
                    .with("receivedPackets", count(r.received_packets))
                    .with("lostPackets", count(r.lost_packets))
                    .with("duplicates", count(r.duplicates))
                    .with("receivedOutOfRange", count(r.received_out_of_range))
                    .with("dropped", count(r.dropped)),
            )
        };
        let peers = self.all_peer_stats().into_iter().map(|p| {
            let addr = address_string(p.version, p.label, &p.key);
            entry("peer", addr, &p.receive)
        });
        let sessions = self.all_session_stats().into_iter().map(|s| {
            let label = Label::new(s.path).unwrap_or(Label::SELF);
            entry(
                "session",
                address_string(s.version, label, &s.key),
                &s.receive,
            )
        });
        let start = page_of(call).saturating_mul(RECEIVE_STATS_PER_PAGE);
        let mut all = peers.chain(sessions).skip(start);
        let page: Vec<Value> = all.by_ref().take(RECEIVE_STATS_PER_PAGE).collect();
        let mut d = Dict::new().with("entries", Value::List(page));
        if all.next().is_some() {
            d.insert("more", Value::Int(1));
        }
        Response::Reply(d)
    }

    /// `Pktmesh_handshakeStats`: for the link and the session stage, handshakes allowed to
    /// cost an X25519 and shed (by cause), and the sources tracked; for the session table,
    /// sessions, those not set up, and how many ended by timeout or gave their place.
    fn handshake_stats(&self) -> Response {
        let all = self
            .shards
            .iter()
            .map(|n| n.handshake_stats())
            .fold(HandshakeStats::default(), HandshakeStats::plus);
        let budget = |b: &BudgetStats| {
            Value::Dict(
                Dict::new()
                    .with("allowed", count(b.allowed))
                    .with("shed", count(b.shed()))
                    .with("shedSource", count(b.shed_source))
                    .with("shedTotal", count(b.shed_total))
                    .with("shedTableFull", count(b.shed_table_full))
                    .with("sources", count(b.sources as u64)),
            )
        };
        let t = &all.sessions;
        Response::Reply(
            Dict::new()
                .with("link", budget(&all.link))
                .with("endToEnd", budget(&all.end_to_end))
                .with(
                    "sessions",
                    Value::Dict(
                        Dict::new()
                            .with("count", count(t.sessions as u64))
                            .with("pending", count(t.pending as u64))
                            .with("expired", count(t.expired))
                            .with("evictedPending", count(t.evicted_pending))
                            .with("evictedReady", count(t.evicted_ready)),
                    ),
                ),
        )
    }

    fn switch_ping(&mut self, call: &Call<'_>) -> Response {
        let Some(path_text) = call.args.get_str("path") else {
            return error("path was not parsable.");
        };
        let Ok(path) = Label::parse(path_text) else {
            return error("path was not parsable.");
        };
        let timeout = call
            .args
            .get_int("timeout")
            .and_then(|t| u64::try_from(t).ok())
            .map_or(DEFAULT_PING_TIMEOUT, Duration::from_millis);
        let now = self.now;
        let Some(node) = self.first() else {
            return error("no node");
        };
        let cookie = node.switch_ping(now, path);
        self.pings.waiting.push(PendingPing {
            cookie,
            reply_to: call.reply_to.clone(),
            path: path_text.to_string(),
            sent: self.now,
            deadline: self.now + timeout,
        });
        Response::Deferred
    }

    fn begin_connection(&mut self, call: &Call<'_>) -> Response {
        // cjdns: `(uint32_t) interfaceNumber`, default 0, and it must be a UDP interface.
        let number = call.args.get_int("interfaceNumber").map_or(0, |n| n as u32);
        let bound_to = match self.host.interface(number).map(|i| &i.kind) {
            Some(InterfaceKind::Udp { bind }) => *bind,
            _ => return error("no such interface for interfaceNumber"),
        };
        let key = match call.args.get_str("publicKey").map(PublicKey::parse) {
            Some(Ok(k)) => k,
            _ => return error("key must be 52 characters long"),
        };
        let addr: SocketAddr = match call.args.get_str("address").map(str::parse) {
            Some(Ok(a)) => a,
            _ => return error("unable to parse ip address and port."),
        };
        if addr.is_ipv4() != bound_to.is_ipv4() {
            return error("different address type than this socket is bound to.");
        }
        let password = call.args.get_bytes("password").unwrap_or_default().to_vec();
        let login = call.args.get_bytes("login").map(<[u8]>::to_vec);
        let name = call.args.get_str("peerName").map(str::to_string);
        let now = self.now;
        let owner = match self.shards.first() {
            Some(n) => usize::from(n.shard().owner_of(&key.address())),
            None => return error("no node"),
        };
        let Some(node) = self.shards.get_mut(owner) else {
            return error("no node");
        };
        match node.connect(now, addr, key, PeerCredentials { password, login }, name) {
            Ok(_) => Response::Reply(Dict::new().with("error", Value::from("none"))),
            Err(e) => error(&e.to_string()),
        }
    }

    fn add_password(&mut self, call: &Call<'_>) -> Response {
        let Some(password) = call.args.get_bytes("password") else {
            return error("password required");
        };
        let user = call.args.get_bytes("user");
        let ipv6 = match call.args.get_str("ipv6").map(Address::parse) {
            None => None,
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => return error("Invalid IPv6 Address"),
        };
        // Every shard may receive the HELLO of a peer using it.
        for node in self.shards.iter_mut() {
            if let Err(e) = node.add_authorized_password(password, user, ipv6) {
                return error(&e.to_string());
            }
        }
        Response::Reply(Dict::new().with("error", Value::from("none")))
    }
}

impl<P> NodeAdmin<'_, '_, P> {
    /// `UDPInterface_new`: a new interface number for a socket the driver is asked to open.
    fn udp_interface_new(&mut self, call: &Call<'_>) -> Response {
        // cjdns: `Sockaddr_parse(bindAddress ? bindAddress : "0.0.0.0")`; no port means 0.
        // An optional argument of another type counts as absent, as in cjdns.
        let bind = match call.args.get_bytes("bindAddress") {
            None => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
            Some(bytes) => std::str::from_utf8(bytes).ok().and_then(|text| {
                text.parse::<SocketAddr>()
                    .ok()
                    .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0)))
            }),
        };
        let Some(bind) = bind else {
            return error("Failed to parse address");
        };
        // cjdns truncates both: `(uint8_t) dscp`, `(uint16_t) beaconPort`.
        let dscp = call.args.get_int("dscp").map_or(0, |d| d as u8);
        let beacon_port = call.args.get_int("beaconPort").map_or(0, |p| p as u16);
        let Some(number) = self.host.request_udp_interface(bind, dscp, beacon_port) else {
            return error("too many interfaces");
        };
        Response::Reply(
            Dict::new()
                .with("error", Value::from("none"))
                .with("interfaceNumber", Value::Int(i64::from(number)))
                .with("bindAddress", Value::from(bind.to_string())),
        )
    }

    /// `RouteGen_addException`: recorded for the driver (pktmesh generates no routes).
    fn add_route_exception(&mut self, call: &Call<'_>) -> Response {
        let prefix = call
            .args
            .get_str("route")
            .filter(|r| r.len() <= 63)
            .and_then(IpPrefix::parse);
        let Some(prefix) = prefix else {
            return error("parse_failed");
        };
        self.host.add_route_exception(prefix);
        error("none")
    }

    /// `Core_initTunnel`: recorded for the driver, which owns the TUN device.
    fn init_tunnel(&mut self, call: &Call<'_>) -> Response {
        let name = call
            .args
            .get_bytes("desiredTunName")
            .map(|n| String::from_utf8_lossy(n).into_owned());
        self.host.init_tunnel(name);
        error("none")
    }

    /// `Security_getUser`: from the user list the driver supplied.
    fn get_user(&self, call: &Call<'_>) -> Response {
        match self.host.user(call.args.get_bytes("user")) {
            Some(u) => Response::Reply(
                Dict::new()
                    .with("error", Value::from("none"))
                    .with("name", Value::from(u.name.as_str()))
                    .with("uid", Value::Int(i64::from(u.uid)))
                    .with("gid", Value::Int(i64::from(u.gid))),
            ),
            None => error("Could not find user [no such user]"),
        }
    }

    /// `Security_chroot`, `Security_setUser`, `Security_noforks`, `Security_nofiles`,
    /// `Security_setupComplete`: recorded for the driver.
    fn security(&mut self, call: &Call<'_>) -> Response {
        let request = match call.name {
            "Security_chroot" => HostRequest::Chroot(
                String::from_utf8_lossy(call.args.get_bytes("root").unwrap_or_default())
                    .into_owned(),
            ),
            // cjdns passes both as C `int`s.
            "Security_setUser" => HostRequest::SetUser(SetUser {
                uid: call.args.get_int("uid").unwrap_or(0) as u32,
                gid: call.args.get_int("gid").unwrap_or(0) as u32,
                keep_net_admin: call.args.get_int("keepNetAdmin").unwrap_or(0) != 0,
            }),
            "Security_noforks" => HostRequest::NoForks,
            "Security_nofiles" => HostRequest::NoFiles,
            _ => HostRequest::SetupComplete,
        };
        self.host.security_request(request);
        error("none")
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl<P: Pathfinder> AdminFunctions for NodeAdmin<'_, '_, P> {
    fn functions(&self) -> &[FunctionSpec] {
        NODE_FUNCTIONS
    }

    fn call(&mut self, call: &Call<'_>) -> Response {
        match call.name {
            "Core_nodeInfo" => self.node_info(),
            "InterfaceController_peerStats" => self.peer_stats(call),
            "SessionManager_getHandles" => self.handles(call),
            "SessionManager_sessionStats" => self.session_stats(call),
            "Pktmesh_receiveStats" => self.receive_stats(call),
            "Pktmesh_handshakeStats" => self.handshake_stats(),
            "SwitchPinger_ping" => self.switch_ping(call),
            "UDPInterface_beginConnection" => self.begin_connection(call),
            "AuthorizedPasswords_add" => self.add_password(call),
            "AuthorizedPasswords_list" => {
                let users = self
                    .shards
                    .first()
                    .map(|n| n.authorized_users())
                    .unwrap_or_default();
                let start = page_of(call).saturating_mul(USERS_PER_PAGE);
                let page: Vec<Value> = users
                    .iter()
                    .skip(start)
                    .take(USERS_PER_PAGE)
                    .map(|u| Value::Bytes(u.clone()))
                    .collect();
                Response::Reply(
                    Dict::new()
                        .with("total", Value::Int(users.len() as i64))
                        .with("users", Value::List(page)),
                )
            }
            "UDPInterface_new" => self.udp_interface_new(call),
            "RouteGen_addException" => self.add_route_exception(call),
            "Core_initTunnel" => self.init_tunnel(call),
            "Security_getUser" => self.get_user(call),
            "Security_chroot"
            | "Security_setUser"
            | "Security_noforks"
            | "Security_nofiles"
            | "Security_setupComplete" => self.security(call),
            _ => error(crate::admin::NO_FUNCTIONS_MATCHED),
        }
    }
}

/// A counter as a bencode integer (saturating: cjdns' counters are 32- and 64-bit).
fn count(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}
