//! Replays the admin requests of the reference captures of stock cjdns 22.3
//! (`shared/vectors/cjdns-captures/admin-api/`, next to this checkout) against pktmesh's admin
//! API and checks every reply against the reply cjdns sent.
//!
//! # Set-up
//!
//! Node A of the captures (its private key from `scenario.json`) is a sans-IO pktmesh node
//! with a fresh [`HostState`] (no interfaces: the core the stock client configures is fresh)
//! and an [`AdminServer`] with the captures' admin password; node B, its peer, is another
//! pktmesh node in the in-memory network of `common`, authorizing A's login `nodeA`. The host
//! user database holds `nobody` (65534/65534), as the capture machine's did.
//!
//! 1. `startup-config.pcap`, the stock `cjdroute` client configuring the core, is replayed
//!    first: its `UDPInterface_beginConnection` makes A peer with B, as in the capture.
//! 2. The peering is run until established, and A and B exchange IPv6 packets so that A has an
//!    end-to-end session with B (what `SessionManager_getHandles`/`sessionStats` report).
//! 3. `admin-1` … `admin-5` (cjdnstool) are replayed against the same server.
//!
//! Every request datagram goes to [`AdminServer::handle`] byte for byte, with `now` the
//! frame's pcap timestamp, so the captured cookies and hashes authenticate unchanged. One
//! request is rewritten: `SessionManager_sessionStats --handle=98770` (admin-4 frame 61)
//! names cjdns' session handle, so its `handle` becomes A's own handle and the request is
//! re-authenticated with the admin password and the captured cookie
//! ([`client::authenticated_request`]).
//!
//! # Checks
//!
//! For every request with a captured reply (all but `startup-config` frame 1, which the
//! client sent before the core existed), pktmesh answers with exactly one datagram and:
//!
//! - **Shape**: the same keys with the same bencode types, recursively through dictionaries and
//!   list elements. In dictionaries whose keys are data (the function names of
//!   `availableFunctions` and their argument names) only value shapes are compared. A list
//!   that is empty where cjdns' is not is a failure. `more` of `Admin_availableFunctions` is
//!   checked by its rule instead (present, as `1`, exactly when the page is full): pktmesh
//!   implements fewer of cjdns' 93 functions, so its listing ends on an earlier page.
//! - **Values** fixed by the protocol or the set-up: `txid`, `error`, `q`, `cookie` (pktmesh
//!   must hand out the cookie cjdns handed out at the same time), every reply to the
//!   start-up sequence and to `AuthorizedPasswords_list` byte for byte (padding included),
//!   `total` of `SessionManager_getHandles`, and `last` of `InterfaceController_peerStats` as
//!   a Unix time in milliseconds just before the request.
//! - **Listing**: every function the captures call is listed by pktmesh's
//!   `Admin_availableFunctions` with exactly cjdns' arguments (name, `required`, `type`).
//!
//! A mismatch names the pcap, the request and reply frames, and the key path.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use common::{icmp_echo, EchoPathfinder, Net};
use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;
use pktmesh_crypto_auth::PrivateKey;
use pktmesh_node::admin::{client, AdminServer, UnixMillis, FUNCTIONS_PER_PAGE};
use pktmesh_node::bencode::{parse_dict, Dict, Value};
use pktmesh_node::core::Node;
use pktmesh_node::host::{HostRequest, HostState, HostUser, InterfaceKind};
use pktmesh_node::node_admin::{NodeAdmin, PendingPings};

/// `scenario.json`: node A's admin password, its key, node B's key and A's password at B.
const ADMIN_PASSWORD: &[u8] = b"95tzxl3u132y5g0yu281gqf2r1hfn99";
const ADMIN_PORT: u16 = 11234;
const KEY_A: &str = "cf68109ac80b33a7185fc284bf7b44a3aa12bfeda0f88fe5ce2ae32406ef1c84";
const KEY_B: &str = "6fd733ed26ec7ce85ed29128a03a7bd48fd45830cda63988a64a2f1f8704ae22";
const PASSWORD_AT_B: &[u8] = b"xjv06xk9bj6pv3hmbu59cr26y1wm1qq";
const A_UDP: &str = "10.66.3.1:11001";
const B_UDP: &str = "10.66.3.2:11002";

/// The captures, in the order they were taken.
const STARTUP: &str = "startup-config.pcap";
const CLI_PCAPS: &[&str] = &[
    "admin-1-peers-show.pcap",
    "admin-2-session-show.pcap",
    "admin-3-cexec-SessionManager_getHandles-auth.pcap",
    "admin-4-cexec-SessionManager_sessionStats-auth.pcap",
    "admin-5-cexec-wrong-password.pcap",
];

fn vectors() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/cjdns-captures/admin-api"
    ))
}

/// One UDP datagram of a capture.
struct Frame {
    /// 1-based, as Wireshark and `frames-*.txt` number them.
    number: usize,
    time: UnixMillis,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// The UDP/IPv4 datagrams of an Ethernet pcap (the loopback captures).
fn read_pcap(name: &str) -> Vec<Frame> {
    let path = vectors().join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = PcapReader::new(file).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(reader.header().datalink, DataLink::ETHERNET, "{name}");
    let mut frames = Vec::new();
    let mut number = 0;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap_or_else(|e| panic!("{name}: {e}"));
        number += 1;
        let d = &packet.data;
        let udp = (|| {
            if d.get(12..14)? != [0x08, 0x00] {
                return None;
            }
            let ip = d.get(14..)?;
            let ihl = usize::from(ip.first()? & 0x0f) * 4;
            if ip.first()? >> 4 != 4 || *ip.get(9)? != 17 {
                return None;
            }
            let addr = |at: usize| -> Option<IpAddr> {
                let b: [u8; 4] = ip.get(at..at + 4)?.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            };
            let (src_ip, dst_ip) = (addr(12)?, addr(16)?);
            let udp = ip.get(ihl..)?;
            let port = |at: usize| Some(u16::from_be_bytes([*udp.get(at)?, *udp.get(at + 1)?]));
            let len = usize::from(port(4)?);
            Some((
                SocketAddr::new(src_ip, port(0)?),
                SocketAddr::new(dst_ip, port(2)?),
                udp.get(8..len)?.to_vec(),
            ))
        })();
        let (src, dst, payload) =
            udp.unwrap_or_else(|| panic!("{name} frame {number}: not a UDP/IPv4 datagram"));
        frames.push(Frame {
            number,
            time: UnixMillis::since_epoch(packet.timestamp),
            src,
            dst,
            payload,
        });
    }
    frames
}

/// The function a request calls: `q`, or `aq` of an `auth` request.
fn function_of(request: &Dict) -> String {
    let q = request.get_str("q").unwrap_or_default();
    let f = if q == "auth" {
        request.get_str("aq").unwrap_or_default()
    } else {
        q
    };
    f.to_string()
}

/// Node A (sans-IO) in a network with node B, and A's admin API.
struct Rig {
    net: Net<EchoPathfinder>,
    server: AdminServer,
    pings: PendingPings,
    host: HostState,
}

impl Rig {
    fn new() -> Self {
        let now = std::time::Instant::now();
        let a = Node::new(
            PrivateKey::from_hex(KEY_A).unwrap(),
            EchoPathfinder::default(),
            [1; 32],
            now,
        );
        let mut b = Node::new(
            PrivateKey::from_hex(KEY_B).unwrap(),
            EchoPathfinder::default(),
            [2; 32],
            now,
        );
        b.add_authorized_password(PASSWORD_AT_B, Some(b"nodeA"), None)
            .unwrap();
        let net = Net::new(
            vec![(A_UDP.parse().unwrap(), a), (B_UDP.parse().unwrap(), b)],
            now,
        );
        let mut host = HostState::new();
        host.set_users(
            vec![
                HostUser {
                    name: "root".into(),
                    uid: 0,
                    gid: 0,
                },
                HostUser {
                    name: "nobody".into(),
                    uid: 65534,
                    gid: 65534,
                },
            ],
            Some(0),
        );
        Self {
            net,
            server: AdminServer::new(ADMIN_PASSWORD),
            pings: PendingPings::default(),
            host,
        }
    }

    /// A's admin server handles one request.
    fn ask(&mut self, now: UnixMillis, src: SocketAddr, request: &[u8]) -> Vec<Vec<u8>> {
        let node_now = self.net.now;
        let mut shards = [&mut self.net.nodes[0].1];
        let mut functions = NodeAdmin {
            shards: &mut shards,
            now: node_now,
            pings: &mut self.pings,
            host: &mut self.host,
        };
        self.server
            .handle(now, src, request, &mut functions)
            .responses
    }

    fn a(&self) -> &Node<EchoPathfinder> {
        &self.net.nodes[0].1
    }
}

/// Values of the data-keyed dictionaries of cjdns' replies, by pattern path, to compare
/// pktmesh's entries with when cjdns' reply has no entry of that name.
#[derive(Default)]
struct Templates(BTreeMap<String, Value>);

/// Dictionaries whose keys are data: function names, and each function's argument names.
const DATA_KEYED: &[&str] = &["availableFunctions", "availableFunctions.*"];

impl Templates {
    fn learn(&mut self, v: &Value, pattern: &str) {
        match v {
            Value::Dict(d) if DATA_KEYED.contains(&pattern) => {
                let child = format!("{pattern}.*");
                for (_, value) in d.iter() {
                    self.0.entry(child.clone()).or_insert_with(|| value.clone());
                    self.learn(value, &child);
                }
            }
            Value::Dict(d) => {
                for (k, value) in d.iter() {
                    self.learn(value, &join(pattern, k));
                }
            }
            Value::List(l) => {
                for value in l {
                    self.learn(value, &format!("{pattern}[]"));
                }
            }
            _ => {}
        }
    }
}

fn join(path: &str, key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    if path.is_empty() {
        key.into_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Compares the shape of pktmesh's value `got` with cjdns' `exp` at `path` (`pattern`: the
/// path with data keys as `*`), pushing one line per difference.
fn compare_shape(
    exp: &Value,
    got: &Value,
    path: &str,
    pattern: &str,
    templates: &Templates,
    out: &mut Vec<String>,
) {
    let shown = if path.is_empty() { "<reply>" } else { path };
    match (exp, got) {
        (Value::Int(_), Value::Int(_)) | (Value::Bytes(_), Value::Bytes(_)) => {}
        (Value::List(e), Value::List(g)) => {
            if g.is_empty() && !e.is_empty() {
                out.push(format!(
                    "{shown}: empty list where cjdns has {} entries",
                    e.len()
                ));
            }
            let child = format!("{pattern}[]");
            for (i, gv) in g.iter().enumerate() {
                let ev = e.get(i).or(e.first()).or_else(|| templates.0.get(&child));
                if let Some(ev) = ev {
                    compare_shape(ev, gv, &format!("{path}[{i}]"), &child, templates, out);
                }
            }
        }
        (Value::Dict(e), Value::Dict(g)) if DATA_KEYED.contains(&pattern) => {
            let child = format!("{pattern}.*");
            for (k, gv) in g.iter() {
                let p = join(path, k);
                match e.get(k).or_else(|| templates.0.get(&child)) {
                    Some(ev) => compare_shape(ev, gv, &p, &child, templates, out),
                    None => out.push(format!("{p}: no cjdns value of this kind to compare")),
                }
            }
        }
        (Value::Dict(e), Value::Dict(g)) => {
            for (k, ev) in e.iter() {
                let p = join(path, k);
                match g.get(k) {
                    Some(gv) => compare_shape(ev, gv, &p, &join(pattern, k), templates, out),
                    None => out.push(format!("{p}: missing (cjdns sends a {})", ev.type_name())),
                }
            }
            for (k, gv) in g.iter() {
                if !e.contains_key(k) {
                    out.push(format!(
                        "{}: extra {} that cjdns does not send",
                        join(path, k),
                        gv.type_name()
                    ));
                }
            }
        }
        _ => out.push(format!(
            "{shown}: {} where cjdns sends a {}",
            got.type_name(),
            exp.type_name()
        )),
    }
}

/// Functions whose replies must equal cjdns' byte for byte in this set-up.
const EXACT: &[&str] = &[
    "ping",
    "AuthorizedPasswords_add",
    "AuthorizedPasswords_list",
    "UDPInterface_new",
    "UDPInterface_beginConnection",
    "RouteGen_addException",
    "Core_initTunnel",
    "Security_getUser",
    "Security_chroot",
    "Security_setUser",
    "Security_noforks",
    "Security_setupComplete",
];

/// What the replay of one pcap found.
#[derive(Default)]
struct Findings {
    mismatches: Vec<String>,
    /// pktmesh's replies to `Admin_availableFunctions` and cjdns', with where they were:
    /// `(pcap, request frame, captured reply frame, pktmesh's, cjdns')`.
    listings: Vec<(String, usize, usize, Dict, Dict)>,
    /// The functions the requests called.
    called: BTreeSet<String>,
    rewritten: Vec<(String, usize)>,
    compared: usize,
}

/// Replays every request of `pcap` against the rig and compares the replies.
fn replay(rig: &mut Rig, pcap: &str, templates: &Templates, found: &mut Findings) {
    let frames = read_pcap(pcap);
    for (i, frame) in frames.iter().enumerate() {
        if frame.dst.port() != ADMIN_PORT {
            continue;
        }
        let at = format!("{pcap} frame {}", frame.number);
        let request = parse_dict(&frame.payload)
            .unwrap_or_else(|e| panic!("{at}: pktmesh's parser refuses the request: {e}"));
        let function = function_of(&request);
        if function != "cookie" {
            found.called.insert(function.clone());
        }
        let txid = request.get_bytes("txid").unwrap_or_default().to_vec();
        let mut bytes = frame.payload.clone();
        if function == "SessionManager_sessionStats" {
            // cjdns' handle (98770) names cjdns' session: ask for A's session instead.
            let handle = rig.a().session_stats()[0].handle;
            let args = request
                .get_dict("args")
                .cloned()
                .unwrap_or_default()
                .with("handle", Value::Int(i64::from(handle)));
            bytes = client::authenticated_request(
                &function,
                args,
                ADMIN_PASSWORD,
                request.get_bytes("cookie").unwrap_or_default(),
                &txid,
            );
            found.rewritten.push((pcap.to_string(), frame.number));
        }
        let responses = rig.ask(frame.time, frame.src, &bytes);

        let captured = frames[i + 1..].iter().find(|f| {
            f.src.port() == ADMIN_PORT
                && f.dst == frame.src
                && parse_dict(&f.payload).is_ok_and(|d| d.get_bytes("txid") == Some(&txid[..]))
        });
        let Some(captured) = captured else {
            // Only the client's "is a core already running?" probe, sent before the core
            // existed, went unanswered.
            assert_eq!(
                (pcap, frame.number),
                (STARTUP, 1),
                "{at}: no captured reply"
            );
            continue;
        };
        let at = format!("{at} -> reply frame {} ({function})", captured.number);
        if responses.len() != 1 {
            found.mismatches.push(format!(
                "{at}: {} replies where cjdns sent one",
                responses.len()
            ));
            continue;
        }
        found.compared += 1;
        let theirs = parse_dict(&captured.payload).unwrap();
        let ours = match parse_dict(&responses[0]) {
            Ok(d) => d,
            Err(e) => {
                found
                    .mismatches
                    .push(format!("{at}: unparsable reply: {e}"));
                continue;
            }
        };
        let mut lines = Vec::new();
        if responses[0].len() % 4 != 0 {
            lines.push("reply not padded to a multiple of 4 bytes".to_string());
        }
        // Values the protocol or the set-up fixes.
        for key in ["txid", "error", "q", "cookie"] {
            if theirs.get(key) != ours.get(key) {
                lines.push(format!(
                    "{key}: {:?} where cjdns sends {:?}",
                    ours.get(key),
                    theirs.get(key)
                ));
            }
        }
        let authenticated_call = theirs.get_str("error") != Some("Auth failed.")
            && theirs.get_str("error") != Some(pktmesh_node::admin::NO_FUNCTIONS_MATCHED);
        if EXACT.contains(&function.as_str())
            && authenticated_call
            && responses[0] != captured.payload
        {
            lines.push(format!(
                "bytes {:?} where cjdns sends {:?}",
                String::from_utf8_lossy(&responses[0]),
                String::from_utf8_lossy(&captured.payload)
            ));
        }
        let (mut theirs_shape, mut ours_shape) = (theirs.clone(), ours.clone());
        if function == "Admin_availableFunctions" && authenticated_call {
            for (who, d) in [("cjdns", &theirs), ("pktmesh", &ours)] {
                let full =
                    d.get_dict("availableFunctions").map(Dict::len) == Some(FUNCTIONS_PER_PAGE);
                if d.get_int("more") != full.then_some(1) {
                    lines.push(format!(
                        "more: {:?} from {who} on a page of {:?} functions",
                        d.get("more"),
                        d.get_dict("availableFunctions").map(Dict::len)
                    ));
                }
            }
            theirs_shape.remove("more");
            ours_shape.remove("more");
            found.listings.push((
                pcap.to_string(),
                frame.number,
                captured.number,
                ours.clone(),
                theirs.clone(),
            ));
        }
        if function == "SessionManager_getHandles"
            && authenticated_call
            && ours.get_int("total") != theirs.get_int("total")
        {
            lines.push(format!(
                "total: {:?} where cjdns sends {:?}",
                ours.get_int("total"),
                theirs.get_int("total")
            ));
        }
        if function == "InterfaceController_peerStats" {
            // cjdns: the time of the peer's last message, Unix milliseconds.
            for (n, p) in ours
                .get_list("peers")
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let last = p.as_dict().and_then(|p| p.get_int("last")).unwrap_or(-1);
                let now = frame.time.0 as i64;
                if !(now - 60_000..=now).contains(&last) {
                    lines.push(format!(
                        "peers[{n}].last: {last}, not a Unix time in ms before the request ({now})"
                    ));
                }
            }
        }
        compare_shape(
            &Value::Dict(theirs_shape),
            &Value::Dict(ours_shape),
            "",
            "",
            templates,
            &mut lines,
        );
        found
            .mismatches
            .extend(lines.into_iter().map(|l| format!("{at}: {l}")));
    }
}

/// Every function the captures call is listed by pktmesh with exactly cjdns' arguments.
fn check_listing(found: &mut Findings) {
    // Function name -> (its arguments, where it was listed), first listing of each.
    type Listing = BTreeMap<Vec<u8>, (Value, String)>;
    let mut ours = Listing::new();
    let mut theirs = Listing::new();
    for (pcap, request, reply, o, t) in &found.listings {
        let at =
            format!("{pcap} frame {request} -> reply frame {reply} (Admin_availableFunctions)");
        for (d, all) in [(o, &mut ours), (t, &mut theirs)] {
            let functions = d
                .get_dict("availableFunctions")
                .into_iter()
                .flat_map(Dict::iter);
            for (name, args) in functions {
                all.entry(name.to_vec())
                    .or_insert_with(|| (args.clone(), at.clone()));
            }
        }
    }
    assert_eq!(theirs.len(), 93, "cjdns lists 93 functions");
    for f in &found.called {
        let key = f.as_bytes();
        match (ours.get(key), theirs.get(key)) {
            (Some((o, _)), Some((t, _))) if o == t => {}
            (Some((o, at)), Some((t, cjdns_at))) => found.mismatches.push(format!(
                "{at}: availableFunctions.{f}: {o:?} where cjdns lists {t:?} ({cjdns_at})"
            )),
            (None, Some((_, cjdns_at))) => found.mismatches.push(format!(
                "{cjdns_at}: availableFunctions.{f}: called in the captures, listed by cjdns, \
                 not by pktmesh"
            )),
            (_, None) => found.mismatches.push(format!(
                "Admin_availableFunctions: {f} is called in the captures but cjdns does not list it"
            )),
        }
    }
}

#[test]
fn pktmesh_answers_the_captured_admin_requests_as_cjdns_does() {
    // What cjdns' data-keyed dictionaries hold, from all its captured replies.
    let mut templates = Templates::default();
    for pcap in std::iter::once(&STARTUP).chain(CLI_PCAPS) {
        for f in read_pcap(pcap) {
            if f.src.port() == ADMIN_PORT {
                templates.learn(&Value::Dict(parse_dict(&f.payload).unwrap()), "");
            }
        }
    }

    let mut rig = Rig::new();
    let mut found = Findings::default();

    // 1. The stock client configures the fresh core.
    replay(&mut rig, STARTUP, &templates, &mut found);
    assert_no_differences(&found);
    let requests: Vec<HostRequest> = std::iter::from_fn(|| rig.host.poll_request()).collect();
    let bind: SocketAddr = A_UDP.parse().unwrap();
    assert_eq!(
        rig.host.interface(0).map(|i| (&i.kind, i.open)),
        Some((&InterfaceKind::Udp { bind }, false)),
        "UDPInterface_new made interface 0, not opened by the core"
    );
    assert!(
        matches!(requests.first(), Some(HostRequest::UdpInterface { number: 0, bind: b, .. }) if *b == bind),
        "{requests:?}"
    );
    assert_eq!(
        requests.len(),
        7,
        "interface, route exception, tunnel, chroot, setUser, noforks, setupComplete: {requests:?}"
    );
    assert_eq!(
        rig.host
            .route_exceptions()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["10.66.3.2/32"]
    );
    assert_eq!(rig.host.tunnel_requested(), Some(None));
    let security = rig.host.security();
    assert_eq!(security.chroot.as_deref(), Some("/var/run/"));
    let set_user = security.set_user.unwrap();
    assert_eq!(
        (set_user.uid, set_user.gid, set_user.keep_net_admin),
        (65534, 65534, true)
    );
    assert!(security.noforks && security.setup_complete && !security.nofiles);

    // 2. The peering beginConnection started, and an end-to-end session A -> B.
    for _ in 0..5 {
        rig.net.run(1000);
        rig.net.tick(Duration::from_millis(1100));
    }
    let now = rig.net.now;
    let peers = rig.a().peer_stats(now);
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].state, "ESTABLISHED", "{peers:?}");
    let (a, b) = (*rig.net.nodes[0].1.address(), *rig.net.nodes[1].1.address());
    for seq in 1..4 {
        rig.net.send_tun(0, &icmp_echo(&a, &b, seq));
        rig.net.send_tun(1, &icmp_echo(&b, &a, seq));
        rig.net.run(1000);
    }
    let sessions = rig.a().session_stats();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].state, "ESTABLISHED");

    // 3. cjdnstool.
    for pcap in CLI_PCAPS {
        replay(&mut rig, pcap, &templates, &mut found);
    }
    check_listing(&mut found);

    assert_eq!(
        found.rewritten,
        [(CLI_PCAPS[3].to_string(), 61)],
        "exactly the sessionStats request is rewritten"
    );
    // startup-config: 24 requests with replies; admin-1/2: 15 each; admin-3/4: 31 each;
    // admin-5: 3.
    assert_eq!(found.compared, 24 + 15 + 15 + 31 + 31 + 3);
    assert_no_differences(&found);
}

fn assert_no_differences(found: &Findings) {
    assert!(
        found.mismatches.is_empty(),
        "{} differences from cjdns:\n{}",
        found.mismatches.len(),
        found.mismatches.join("\n")
    );
}

/// The admin-5 request with a wrong password is refused with cjdns' exact answer.
#[test]
fn the_wrong_password_gets_auth_failed() {
    let frames = read_pcap(CLI_PCAPS[4]);
    let mut rig = Rig::new();
    let request = &frames[4];
    assert_eq!(request.number, 5);
    let out = rig.ask(request.time, request.src, &request.payload);
    assert_eq!(out, [frames[5].payload.clone()]);
    assert_eq!(
        String::from_utf8_lossy(&out[0]),
        "d05:error12:Auth failed.4:txid10:2205424491e"
    );
}
