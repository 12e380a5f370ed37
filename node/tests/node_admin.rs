//! The node's admin functions through the admin server, as cjdnstool calls them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{key, EchoPathfinder};
use pktmesh_node::admin::{client, AdminServer, UnixMillis};
use pktmesh_node::bencode::{Dict, Value};
use pktmesh_node::core::Node;
use pktmesh_node::host::{HostRequest, HostState, HostUser, InterfaceKind, SetUser};
use pktmesh_node::node_admin::{NodeAdmin, PendingPings};
use pktmesh_node::peers::PeerCredentials;

fn ask(
    server: &mut AdminServer,
    node: &mut Node<EchoPathfinder>,
    pings: &mut PendingPings,
    host: &mut HostState,
    now: Instant,
    function: &str,
    args: Dict,
) -> Vec<Dict> {
    let src: SocketAddr = "127.0.0.1:5555".parse().unwrap();
    let req = client::request(function, args, b"t1");
    let mut shards = [node];
    let mut f = NodeAdmin {
        shards: &mut shards,
        now,
        pings,
        host,
    };
    server
        .handle(UnixMillis(1_700_000_000_000), src, &req, &mut f)
        .responses
        .iter()
        .map(|r| client::parse_response(r).unwrap().dict)
        .collect()
}

#[test]
fn cjdnstool_functions() {
    let now = Instant::now();
    let mut node = Node::new(key(7), EchoPathfinder::default(), [7; 32], now);
    node.add_authorized_password(b"pw", Some(b"alice"), None)
        .unwrap();
    for i in 0..8u8 {
        let peer = key(100 + i).public_key();
        let addr: SocketAddr = format!("10.1.0.{}:1000", i + 1).parse().unwrap();
        node.connect(
            now,
            addr,
            peer,
            PeerCredentials {
                password: b"x".to_vec(),
                login: None,
            },
            None,
        )
        .unwrap();
    }
    let mut server = AdminServer::new("NONE");
    let mut pings = PendingPings::default();
    // The driver's one UDP interface (number 0), as the daemon registers it.
    let mut host = HostState::new();
    host.add_open_interface(InterfaceKind::Udp {
        bind: "10.0.0.7:1007".parse().unwrap(),
    });

    let info = &ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "Core_nodeInfo",
        Dict::new(),
    )[0];
    assert_eq!(info.get_str("compressedSchemeHex"), Some("6114458100"));
    assert_eq!(
        info.get_str("myIp6"),
        Some(node.address().to_string().as_str())
    );
    assert_eq!(info.get_int("version"), Some(22));
    assert!(info
        .get_str("myAddr")
        .unwrap()
        .starts_with("v22.0000.0000.0000.0001."));

    // Eight peers: six on page 0 with `more`, two on page 1 without.
    let p0 = &ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "InterfaceController_peerStats",
        Dict::new(),
    )[0];
    assert_eq!(p0.get_list("peers").unwrap().len(), 6);
    assert_eq!(p0.get_int("total"), Some(8));
    assert_eq!(p0.get_int("more"), Some(1));
    let first = p0.get_list("peers").unwrap()[0].as_dict().unwrap();
    assert_eq!(first.get_str("lladdr"), Some("10.1.0.1:1000"));
    assert_eq!(first.get_str("state"), Some("SENT_HELLO"));
    assert!(first
        .get_str("addr")
        .unwrap()
        .starts_with("v0.0000.0000.0000.0013."));
    let p1 = &ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "InterfaceController_peerStats",
        Dict::new().with("page", Value::Int(1)),
    )[0];
    assert_eq!(p1.get_list("peers").unwrap().len(), 2);
    assert_eq!(p1.get_int("more"), None);

    let users = &ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "AuthorizedPasswords_list",
        Dict::new(),
    )[0];
    // The configured user, and "Local Peers" for our beacon password (as cjdns lists it).
    assert_eq!(users.get_int("total"), Some(2));
    let names: Vec<&[u8]> = users
        .get_list("users")
        .unwrap()
        .iter()
        .filter_map(Value::as_bytes)
        .collect();
    assert!(
        names.contains(&&b"alice"[..]) && names.contains(&&b"Local Peers"[..]),
        "{names:?}"
    );

    let handles = &ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "SessionManager_getHandles",
        Dict::new(),
    )[0];
    assert_eq!(handles.get_int("total"), Some(0));
    let none = &ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "SessionManager_sessionStats",
        Dict::new().with("handle", Value::Int(5)),
    )[0];
    assert_eq!(none.get_str("error"), Some("no such session"));

    // A switch ping is answered later: here its timeout passes without a pong.
    let deferred = ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "SwitchPinger_ping",
        Dict::new()
            .with("path", Value::from("0000.0000.0000.0015"))
            .with("timeout", Value::Int(100)),
    );
    assert!(deferred.is_empty(), "no immediate answer");
    assert!(pings.poll(now, &mut node, &server).is_empty());
    let later = pings.poll(now + Duration::from_millis(150), &mut node, &server);
    assert_eq!(later.len(), 1);
    let reply = client::parse_response(&later[0].1).unwrap().dict;
    assert_eq!(reply.get_str("result"), Some("timeout"));
    assert_eq!(reply.get_str("path"), Some("0000.0000.0000.0015"));
    assert_eq!(reply.get_bytes("txid"), Some(&b"t1"[..]));
    let bad = &ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "SwitchPinger_ping",
        Dict::new().with("path", Value::from("nonsense")),
    )[0];
    assert_eq!(bad.get_str("error"), Some("path was not parsable."));

    let conn = &ask(
        &mut server,
        &mut node,
        &mut pings,
        &mut host,
        now,
        "UDPInterface_beginConnection",
        Dict::new()
            .with("publicKey", Value::from("bad"))
            .with("address", Value::from("10.0.0.1:1")),
    )[0];
    assert!(conn.get_str("error").is_some_and(|e| e != "none"));
}

/// The functions that configure a fresh core, beyond what the captured start-up shows: their
/// refusals, and what they leave for the driver.
#[test]
fn host_functions_record_and_refuse_like_cjdns() {
    let now = Instant::now();
    let mut node = Node::new(key(7), EchoPathfinder::default(), [7; 32], now);
    let mut server = AdminServer::new("NONE");
    let mut pings = PendingPings::default();
    let mut host = HostState::new();
    host.set_users(
        vec![HostUser {
            name: "daemon".into(),
            uid: 2,
            gid: 3,
        }],
        Some(2),
    );
    let mut ask = |host: &mut HostState, function: &str, args: Dict| -> Dict {
        ask(
            &mut server,
            &mut node,
            &mut pings,
            host,
            now,
            function,
            args,
        )
        .remove(0)
    };
    let peer = key(100).public_key().to_string();
    let connect = |address: &str, number: Option<i64>| {
        let mut d = Dict::new()
            .with("publicKey", Value::from(peer.as_str()))
            .with("address", Value::from(address));
        if let Some(n) = number {
            d.insert("interfaceNumber", Value::Int(n));
        }
        d
    };

    // No interface yet: beginConnection has nothing to connect through.
    let r = ask(
        &mut host,
        "UDPInterface_beginConnection",
        connect("10.1.0.1:1", None),
    );
    assert_eq!(
        r.get_str("error"),
        Some("no such interface for interfaceNumber")
    );

    // UDPInterface_new without an address binds 0.0.0.0, port 0; with one, that one.
    let r = ask(&mut host, "UDPInterface_new", Dict::new());
    assert_eq!(r.get_int("interfaceNumber"), Some(0));
    assert_eq!(r.get_str("bindAddress"), Some("0.0.0.0:0"));
    let r = ask(
        &mut host,
        "UDPInterface_new",
        Dict::new()
            .with("bindAddress", Value::from("[::1]:5000"))
            .with("dscp", Value::Int(0x2e))
            .with("beaconPort", Value::Int(64512)),
    );
    assert_eq!(r.get_int("interfaceNumber"), Some(1));
    assert_eq!(r.get_str("bindAddress"), Some("[::1]:5000"));
    let r = ask(
        &mut host,
        "UDPInterface_new",
        Dict::new().with("bindAddress", Value::from("nowhere")),
    );
    assert_eq!(r.get_str("error"), Some("Failed to parse address"));
    assert_eq!(host.interfaces().len(), 2);
    assert!(host.interfaces().iter().all(|i| !i.open));
    assert_eq!(
        host.poll_request(),
        Some(HostRequest::UdpInterface {
            number: 0,
            bind: "0.0.0.0:0".parse().unwrap(),
            dscp: 0,
            beacon_port: 0,
        })
    );
    assert_eq!(
        host.poll_request(),
        Some(HostRequest::UdpInterface {
            number: 1,
            bind: "[::1]:5000".parse().unwrap(),
            dscp: 0x2e,
            beacon_port: 64512,
        })
    );
    assert_eq!(host.poll_request(), None);

    // An IPv6 peer on the IPv4 interface, an unknown interface, then a good one.
    let r = ask(
        &mut host,
        "UDPInterface_beginConnection",
        connect("[fd00::1]:1", Some(0)),
    );
    assert_eq!(
        r.get_str("error"),
        Some("different address type than this socket is bound to.")
    );
    let r = ask(
        &mut host,
        "UDPInterface_beginConnection",
        connect("10.1.0.1:1", Some(7)),
    );
    assert_eq!(
        r.get_str("error"),
        Some("no such interface for interfaceNumber")
    );
    let r = ask(
        &mut host,
        "UDPInterface_beginConnection",
        connect("10.1.0.1:1", Some(0)),
    );
    assert_eq!(r.get_str("error"), Some("none"));

    // Route exceptions: parsed as cjdns' Sockaddr_parse would, at most 63 characters.
    for (route, error) in [
        ("10.0.0.0/8", "none"),
        ("fc00::/8", "none"),
        ("10.0.0.0/40", "parse_failed"),
        ("not an address", "parse_failed"),
    ] {
        let r = ask(
            &mut host,
            "RouteGen_addException",
            Dict::new().with("route", Value::from(route)),
        );
        assert_eq!(r.get_str("error"), Some(error), "{route}");
    }
    let long = format!("10.0.0.1{}", " ".repeat(60));
    let r = ask(
        &mut host,
        "RouteGen_addException",
        Dict::new().with("route", Value::from(long.as_str())),
    );
    assert_eq!(r.get_str("error"), Some("parse_failed"));
    assert_eq!(host.route_exceptions().len(), 2);

    // Core_initTunnel with a name.
    let r = ask(
        &mut host,
        "Core_initTunnel",
        Dict::new().with("desiredTunName", Value::from("tun7")),
    );
    assert_eq!(r.get_str("error"), Some("none"));
    assert_eq!(host.tunnel_requested(), Some(Some("tun7")));

    // Security_getUser: by name, the current user without one, an unknown name.
    let r = ask(
        &mut host,
        "Security_getUser",
        Dict::new().with("user", Value::from("daemon")),
    );
    assert_eq!(
        (r.get_str("name"), r.get_int("uid"), r.get_int("gid")),
        (Some("daemon"), Some(2), Some(3))
    );
    let r = ask(&mut host, "Security_getUser", Dict::new());
    assert_eq!(r.get_str("name"), Some("daemon"));
    let r = ask(
        &mut host,
        "Security_getUser",
        Dict::new().with("user", Value::from("nobody")),
    );
    assert!(r
        .get_str("error")
        .is_some_and(|e| e.starts_with("Could not find user [")));
    assert_eq!(r.get("uid"), None);

    // Security_setUser needs uid and keepNetAdmin; gid defaults to 0 (left alone).
    let r = ask(
        &mut host,
        "Security_setUser",
        Dict::new().with("uid", Value::Int(2)),
    );
    assert_eq!(
        r.get_str("error"),
        Some("Entry [keepNetAdmin] is required and must be of type [Int]")
    );
    let r = ask(
        &mut host,
        "Security_setUser",
        Dict::new()
            .with("uid", Value::Int(2))
            .with("keepNetAdmin", Value::Int(0)),
    );
    assert_eq!(r.get_str("error"), Some("none"));
    let r = ask(&mut host, "Security_nofiles", Dict::new());
    assert_eq!(r.get_str("error"), Some("none"));
    let security = host.security();
    assert_eq!(
        security.set_user,
        Some(SetUser {
            uid: 2,
            gid: 0,
            keep_net_admin: false
        })
    );
    assert!(security.nofiles && !security.noforks && !security.setup_complete);
}

/// `Pktmesh_receiveStats` pages every peer link and session with what its receiving side
/// counted; a packet that does not open shows up as `dropped` for that peer.
#[test]
fn receive_stats_count_what_did_not_open() {
    use pktmesh_node::packet::PacketBuf;
    let now = Instant::now();
    let mut node = Node::new(key(7), EchoPathfinder::default(), [7; 32], now);
    let mut addrs = Vec::new();
    for i in 0..9u8 {
        let addr: SocketAddr = format!("10.1.0.{}:1000", i + 1).parse().unwrap();
        let creds = PeerCredentials {
            password: b"x".to_vec(),
            login: None,
        };
        node.connect(now, addr, key(100 + i).public_key(), creds, None)
            .unwrap();
        addrs.push(addr);
    }
    // Two damaged packets from the third peer.
    for _ in 0..2 {
        let mut junk = PacketBuf::from_slice(&[
            0, 0, 0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
        ]);
        let _ = node.handle_udp(now, addrs[2], &mut junk);
    }
    let mut server = AdminServer::new("NONE");
    let (mut pings, mut host) = (PendingPings::default(), HostState::new());
    let mut page = |n: i64| {
        let args = Dict::new().with("page", Value::Int(n));
        ask(
            &mut server,
            &mut node,
            &mut pings,
            &mut host,
            now,
            "Pktmesh_receiveStats",
            args,
        )
        .remove(0)
    };
    let p0 = page(0);
    let entries = p0.get_list("entries").unwrap();
    assert_eq!((entries.len(), p0.get_int("more")), (8, Some(1)));
    let dropped: Vec<i64> = entries
        .iter()
        .map(|e| e.as_dict().unwrap().get_int("dropped").unwrap())
        .collect();
    assert_eq!(dropped, [0, 0, 2, 0, 0, 0, 0, 0]);
    let third = entries[2].as_dict().unwrap();
    assert_eq!(third.get_str("kind"), Some("peer"));
    for k in [
        "receivedPackets",
        "lostPackets",
        "duplicates",
        "receivedOutOfRange",
    ] {
        assert_eq!(third.get_int(k), Some(0), "{k}");
    }
    let p1 = page(1);
    assert_eq!(p1.get_list("entries").unwrap().len(), 1);
    assert_eq!(p1.get_int("more"), None);
}
