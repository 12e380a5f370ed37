//! The node's admin functions through the admin server, as cjdnstool calls them.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{key, EchoPathfinder};
use pktmesh_node::admin::{client, AdminServer, UnixMillis};
use pktmesh_node::bencode::{Dict, Value};
use pktmesh_node::core::Node;
use pktmesh_node::node_admin::{NodeAdmin, PendingPings};
use pktmesh_node::peers::PeerCredentials;

fn ask(
    server: &mut AdminServer,
    node: &mut Node<EchoPathfinder>,
    pings: &mut PendingPings,
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

    let info = &ask(
        &mut server,
        &mut node,
        &mut pings,
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
        now,
        "SessionManager_getHandles",
        Dict::new(),
    )[0];
    assert_eq!(handles.get_int("total"), Some(0));
    let none = &ask(
        &mut server,
        &mut node,
        &mut pings,
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
        now,
        "SwitchPinger_ping",
        Dict::new().with("path", Value::from("nonsense")),
    )[0];
    assert_eq!(bad.get_str("error"), Some("path was not parsable."));

    let conn = &ask(
        &mut server,
        &mut node,
        &mut pings,
        now,
        "UDPInterface_beginConnection",
        Dict::new()
            .with("publicKey", Value::from("bad"))
            .with("address", Value::from("10.0.0.1:1")),
    )[0];
    assert!(conn.get_str("error").is_some_and(|e| e != "none"));
}
