//! Admin API: the cookie + auth exchange with a fixed clock, refusals, padding, paging,
//! argument checks, txid echo, deferred and asynchronous replies.

use std::net::SocketAddr;
use std::time::Duration;

use pktmesh_node::admin::{
    client, AdminFunctions, AdminServer, ArgSpec, ArgType, Call, FunctionSpec, Handled, Ignored,
    ReplyTo, Response, UnixMillis, AUTH_FAILED, BUILTIN_FUNCTIONS, MAX_REQUEST_SIZE,
    NO_FUNCTIONS_MATCHED, TOO_BIG_RESPONSE,
};
use pktmesh_node::bencode::{self, encode, parse_dict, Dict, Value};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

/// The cookie the server hands out at [`NOW`]: cjdns seconds (Unix ms / 1024), not Unix seconds.
const COOKIE: u64 = 1_700_000_000;
/// The first millisecond of cjdns second [`COOKIE`].
const NOW: UnixMillis = UnixMillis(COOKIE * 1024);

/// The first millisecond of a cjdns second.
fn at(cjdns_seconds: u64) -> UnixMillis {
    UnixMillis(cjdns_seconds * 1024)
}
const PASSWORD: &[u8] = b"s3cret-admin-password";

fn src() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

/// A node with a few functions, recording what it was asked.
#[derive(Default)]
struct Node {
    calls: Vec<(String, Dict, bool)>,
    deferred: Vec<ReplyTo>,
}

const NODE_FUNCTIONS: &[FunctionSpec] = &[
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
        name: "Core_exit",
        needs_auth: true,
        args: &[],
    },
    FunctionSpec {
        name: "UDPInterface_beginConnection",
        needs_auth: true,
        args: &[
            ArgSpec::required("publicKey", ArgType::String),
            ArgSpec::required("address", ArgType::String),
            ArgSpec::optional("interfaceNumber", ArgType::Int),
            ArgSpec::optional("password", ArgType::String),
        ],
    },
    FunctionSpec {
        name: "SwitchPinger_ping",
        needs_auth: true,
        args: &[ArgSpec::required("path", ArgType::String)],
    },
];

impl AdminFunctions for Node {
    fn functions(&self) -> &[FunctionSpec] {
        NODE_FUNCTIONS
    }

    fn call(&mut self, call: &Call<'_>) -> Response {
        self.calls
            .push((call.name.to_owned(), call.args.clone(), call.authenticated));
        match call.name {
            "SwitchPinger_ping" => {
                self.deferred.push(call.reply_to.clone());
                Response::Deferred
            }
            "Core_nodeInfo" => {
                Response::Reply(Dict::new().with("myIp6", "fc00::1").with("error", "none"))
            }
            _ => Response::Reply(Dict::new().with("error", "none")),
        }
    }
}

/// Handles `request` and returns the single parsed response.
fn one(server: &mut AdminServer, node: &mut Node, now: UnixMillis, request: &[u8]) -> Dict {
    let Handled {
        responses, ignored, ..
    } = server.handle(now, src(), request, node);
    assert_eq!(ignored, None);
    assert_eq!(responses.len(), 1, "{responses:?}");
    let bytes = &responses[0];
    assert_eq!(
        bytes.len() % 4,
        0,
        "responses are padded: {:?}",
        String::from_utf8_lossy(bytes)
    );
    parse_dict(bytes).unwrap()
}

fn error_of(d: &Dict) -> Option<&str> {
    d.get_str("error")
}

#[test]
fn ping_and_the_padding_quirk() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let out = server.handle(NOW, src(), b"d1:q4:pinge", &mut node);
    assert_eq!(out.responses, [b"d01:q4:ponge".to_vec()]);
    // Requests may be padded too.
    let out = server.handle(NOW, src(), b"d01:q4:pinge", &mut node);
    assert_eq!(out.responses, [b"d01:q4:ponge".to_vec()]);
    // With a txid: `d1:q4:pong4:txid3:abce` is 22 bytes, so two zeros.
    let out = server.handle(NOW, src(), b"d1:q4:ping4:txid3:abce", &mut node);
    assert_eq!(out.responses, [b"d001:q4:pong4:txid3:abce".to_vec()]);
    // An empty txid is not echoed.
    let out = server.handle(NOW, src(), b"d1:q4:ping4:txid0:e", &mut node);
    assert_eq!(out.responses, [b"d01:q4:ponge".to_vec()]);
}

#[test]
fn request_too_big() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    // Exactly the limit is still handled.
    let ok = (0..MAX_REQUEST_SIZE)
        .map(|n| {
            encode(
                &Dict::new()
                    .with("q", "ping")
                    .with("z", vec![b'x'; n])
                    .into(),
            )
        })
        .find(|b| b.len() == MAX_REQUEST_SIZE)
        .unwrap();
    assert_eq!(ok.len(), MAX_REQUEST_SIZE);
    let out = server.handle(NOW, src(), &ok, &mut node);
    assert_eq!(out.ignored, None);
    assert_eq!(
        parse_dict(&out.responses[0]).unwrap().get_str("q"),
        Some("pong")
    );
    // One more byte is refused with cjdns' literal answer, whatever the content.
    let mut big = ok.clone();
    big.push(b'x');
    let out = server.handle(NOW, src(), &big, &mut node);
    assert_eq!(out.responses, [TOO_BIG_RESPONSE.to_vec()]);
    assert_eq!(TOO_BIG_RESPONSE, b"d5:error16:Request too big.e");
    assert!(node.calls.is_empty());
}

/// The cookie is cjdns' `Time_currentTimeSeconds()`: Unix milliseconds / 1024, as a decimal.
#[test]
fn cookie_is_cjdns_seconds() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let d = one(&mut server, &mut node, NOW, &client::cookie_request(b"c1"));
    assert_eq!(d.get_str("cookie"), Some("1700000000"));
    assert_eq!(d.get_bytes("txid"), Some(&b"c1"[..]));
    // The last millisecond of that cjdns second, and the next one.
    let d = one(
        &mut server,
        &mut node,
        UnixMillis(NOW.0 + 1023),
        &client::cookie_request(b"c2"),
    );
    assert_eq!(d.get_str("cookie"), Some("1700000000"));
    let d = one(
        &mut server,
        &mut node,
        UnixMillis(NOW.0 + 1024),
        &client::cookie_request(b"c3"),
    );
    assert_eq!(d.get_str("cookie"), Some("1700000001"));
    // Stock cjdns 22.3 (admin-api/startup-config.pcap, frames 2-3): asked at Unix time
    // 1795487910.499177 s, it answered 1753406162.
    let d = one(
        &mut server,
        &mut node,
        UnixMillis(1_795_487_910_499),
        &client::cookie_request(b"00000000"),
    );
    assert_eq!(d.get_str("cookie"), Some("1753406162"));
    assert_eq!(UnixMillis(1_795_487_910_499).cjdns_seconds(), 1_753_406_162);
    assert_eq!(
        UnixMillis::since_epoch(Duration::from_micros(1_795_487_910_499_177)),
        UnixMillis(1_795_487_910_499)
    );
}

/// The whole exchange with the client helpers: cookie, then an authenticated call.
#[test]
fn full_cookie_and_auth_exchange() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let cookie_resp = server.handle(NOW, src(), &client::cookie_request(b"1"), &mut node);
    let cookie = client::parse_response(&cookie_resp.responses[0]).unwrap();
    assert_eq!(cookie.txid(), Some(&b"1"[..]));
    let cookie = cookie.cookie().unwrap().to_vec();

    let args = Dict::new()
        .with(
            "publicKey",
            "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k",
        )
        .with("address", "10.77.0.2:11002")
        .with("password", "pw");
    let request = client::authenticated_request(
        "UDPInterface_beginConnection",
        args.clone(),
        PASSWORD,
        &cookie,
        b"2",
    );
    assert_eq!(request.len() % 4, 0);
    // Five seconds later, still within the window.
    let out = server.handle(at(COOKIE + 5), src(), &request, &mut node);
    let resp = client::parse_response(&out.responses[0]).unwrap();
    assert_eq!(resp.error(), None, "{:?}", resp.dict);
    assert_eq!(resp.txid(), Some(&b"2"[..]));
    assert_eq!(node.calls.len(), 1);
    let (name, got_args, authed) = &node.calls[0];
    assert_eq!(name, "UDPInterface_beginConnection");
    assert_eq!(got_args, &args);
    assert!(authed);
}

/// The same exchange built by hand from §9.2, unpadded (as cjdnstool's bendy encoder
/// writes it) and with keys in bencode order: the server only cares about the bytes.
#[test]
fn hand_built_auth_request_matches_the_spec() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let cookie = COOKIE.to_string();
    let hash1 = hex::encode(Sha256::digest([PASSWORD, cookie.as_bytes()].concat()));
    let msg = Dict::new()
        .with("q", "auth")
        .with("aq", "Core_exit")
        .with("cookie", cookie.as_str())
        .with("hash", hash1.as_str())
        .with("txid", "t");
    let mut bytes = encode(&Value::Dict(msg));
    let hash2 = hex::encode(Sha256::digest(&bytes));
    let at = bytes
        .windows(64)
        .position(|w| w == hash1.as_bytes())
        .unwrap();
    bytes[at..at + 64].copy_from_slice(hash2.as_bytes());
    let d = one(&mut server, &mut node, NOW, &bytes);
    assert_eq!(error_of(&d), Some("none"));
    assert_eq!(node.calls[0].0, "Core_exit");
    // The client helper produces the same hash for the same (padded) bytes.
    let ours =
        client::authenticated_request("Core_exit", Dict::new(), PASSWORD, cookie.as_bytes(), b"t");
    let ours_dict = parse_dict(&ours).unwrap();
    let padded_hash2 = hex::encode(Sha256::digest(bencode::encode_cjdns(
        &ours_dict.clone().with("hash", hash1.as_str()),
    )));
    assert_eq!(ours_dict.get_str("hash"), Some(padded_hash2.as_str()));
}

#[test]
fn wrong_password_fails() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let cookie = COOKIE.to_string();
    let req =
        client::authenticated_request("Core_exit", Dict::new(), b"guess", cookie.as_bytes(), b"x");
    let d = one(&mut server, &mut node, NOW, &req);
    assert_eq!(error_of(&d), Some(AUTH_FAILED));
    assert_eq!(d.get_bytes("txid"), Some(&b"x"[..]));
    assert!(node.calls.is_empty());
    // Tampering with the request after hashing fails too.
    let mut req =
        client::authenticated_request("Core_exit", Dict::new(), PASSWORD, cookie.as_bytes(), b"x");
    let at = req.windows(9).position(|w| w == b"Core_exit").unwrap();
    req[at] = b'K';
    assert_eq!(
        error_of(&one(&mut server, &mut node, NOW, &req)),
        Some(AUTH_FAILED)
    );
    // A missing or short hash fails.
    let d = one(
        &mut server,
        &mut node,
        NOW,
        &bencode::encode_cjdns(
            &Dict::new()
                .with("q", "auth")
                .with("aq", "Core_exit")
                .with("cookie", cookie.as_str()),
        ),
    );
    assert_eq!(error_of(&d), Some(AUTH_FAILED));
}

#[test]
fn cookie_window() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let call = |server: &mut AdminServer, node: &mut Node, now: UnixMillis, cookie: u64| {
        let req = client::authenticated_request(
            "Core_exit",
            Dict::new(),
            PASSWORD,
            cookie.to_string().as_bytes(),
            b"w",
        );
        error_of(&one(server, node, now, &req)).map(str::to_owned)
    };
    // now - 20 ..= now is accepted, in cjdns seconds (1024 ms).
    assert_eq!(
        call(&mut server, &mut node, NOW, COOKIE).as_deref(),
        Some("none")
    );
    assert_eq!(
        call(&mut server, &mut node, at(COOKIE + 20), COOKIE).as_deref(),
        Some("none")
    );
    // The last millisecond of the window: 21 × 1024 − 1 ms later is still cjdns second + 20.
    assert_eq!(
        call(
            &mut server,
            &mut node,
            UnixMillis(NOW.0 + 21 * 1024 - 1),
            COOKIE
        )
        .as_deref(),
        Some("none")
    );
    // Stale by one cjdns second, or from the future: refused.
    assert_eq!(
        call(&mut server, &mut node, at(COOKIE + 21), COOKIE).as_deref(),
        Some(AUTH_FAILED)
    );
    assert_eq!(
        call(&mut server, &mut node, UnixMillis(NOW.0 - 1), COOKIE).as_deref(),
        Some(AUTH_FAILED)
    );
    // A cookie in Unix seconds (what this server handed out before) is from the future.
    let unix_seconds = NOW.0 / 1000;
    assert_eq!(
        call(&mut server, &mut node, NOW, unix_seconds).as_deref(),
        Some(AUTH_FAILED)
    );
    // A zero cookie never passes.
    assert_eq!(
        call(&mut server, &mut node, at(10), 0).as_deref(),
        Some(AUTH_FAILED)
    );
}

/// cjdns reads the cookie with strtoll and also accepts an integer cookie.
#[test]
fn cookie_forms() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    for cookie in [
        format!("000{COOKIE}"),
        format!("{COOKIE}xyz"),
        format!(" +{COOKIE}"),
    ] {
        let req = client::authenticated_request(
            "Core_exit",
            Dict::new(),
            PASSWORD,
            cookie.as_bytes(),
            b"f",
        );
        assert_eq!(
            error_of(&one(&mut server, &mut node, NOW, &req)),
            Some("none"),
            "{cookie}"
        );
    }
    // Integer cookie, built by hand.
    let hash1 = hex::encode(Sha256::digest(
        [PASSWORD, COOKIE.to_string().as_bytes()].concat(),
    ));
    let msg = Dict::new()
        .with("q", "auth")
        .with("aq", "Core_exit")
        .with("cookie", Value::Int(COOKIE as i64))
        .with("hash", hash1.as_str());
    let mut bytes = bencode::encode_cjdns(&msg);
    let hash2 = hex::encode(Sha256::digest(&bytes));
    let at = bytes
        .windows(64)
        .position(|w| w == hash1.as_bytes())
        .unwrap();
    bytes[at..at + 64].copy_from_slice(hash2.as_bytes());
    assert_eq!(
        error_of(&one(&mut server, &mut node, NOW, &bytes)),
        Some("none")
    );
}

/// cjdns hashes `snprintf(buf, 64, "%s%u", password, cookie)`: only 63 bytes. Both our
/// server and our client do the same, so long passwords behave exactly as with stock cjdns.
#[test]
fn long_passwords_are_truncated_like_cjdns() {
    let long = [b'p'; 60];
    let mut server = AdminServer::new(long.to_vec());
    let mut node = Node::default();
    let cookie = COOKIE.to_string();
    let req =
        client::authenticated_request("Core_exit", Dict::new(), &long, cookie.as_bytes(), b"l");
    assert_eq!(
        error_of(&one(&mut server, &mut node, NOW, &req)),
        Some("none")
    );
    // A client hashing all 70 bytes (cjdnstool does) is refused, as by stock cjdns.
    let hash1 = hex::encode(Sha256::digest([&long[..], cookie.as_bytes()].concat()));
    let msg = Dict::new()
        .with("q", "auth")
        .with("aq", "Core_exit")
        .with("cookie", cookie.as_str())
        .with("hash", hash1.as_str());
    let mut bytes = encode(&Value::Dict(msg));
    let hash2 = hex::encode(Sha256::digest(&bytes));
    let at = bytes
        .windows(64)
        .position(|w| w == hash1.as_bytes())
        .unwrap();
    bytes[at..at + 64].copy_from_slice(hash2.as_bytes());
    assert_eq!(
        error_of(&one(&mut server, &mut node, NOW, &bytes)),
        Some(AUTH_FAILED)
    );
    // The truncated hash equals that of the first 63 bytes.
    let expected = hex::encode(Sha256::digest(
        [&long[..], &cookie.as_bytes()[..3]].concat(),
    ));
    assert_eq!(
        pktmesh_node::admin::password_hash_hex(&long, COOKIE as u32).to_vec(),
        expected.into_bytes()
    );
}

#[test]
fn unauthenticated_calls_to_protected_functions() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let d = one(
        &mut server,
        &mut node,
        NOW,
        &client::request("Core_exit", Dict::new(), b"u"),
    );
    assert_eq!(error_of(&d), Some(NO_FUNCTIONS_MATCHED));
    assert_eq!(d.get_bytes("txid"), Some(&b"u"[..]));
    let d = one(
        &mut server,
        &mut node,
        NOW,
        &client::request("No_such", Dict::new(), b"u"),
    );
    assert_eq!(error_of(&d), Some(NO_FUNCTIONS_MATCHED));
    // `cookie` is not a function: through auth it does not match.
    let req = client::authenticated_request(
        "cookie",
        Dict::new(),
        PASSWORD,
        COOKIE.to_string().as_bytes(),
        b"u",
    );
    assert_eq!(
        error_of(&one(&mut server, &mut node, NOW, &req)),
        Some(NO_FUNCTIONS_MATCHED)
    );
    // Unprotected functions work without auth.
    let d = one(
        &mut server,
        &mut node,
        NOW,
        &client::request("Core_nodeInfo", Dict::new(), b"u"),
    );
    assert_eq!(d.get_str("myIp6"), Some("fc00::1"));
    assert_eq!(node.calls.len(), 1);
    assert!(!node.calls[0].2);
    assert!(!server.is_open());
}

#[test]
fn password_none_authenticates_everything() {
    let mut server = AdminServer::new("NONE");
    assert!(server.is_open());
    let mut node = Node::default();
    let d = one(
        &mut server,
        &mut node,
        NOW,
        &client::request("Core_exit", Dict::new(), b"n"),
    );
    assert_eq!(error_of(&d), Some("none"));
    assert!(node.calls[0].2);
    // But an auth request with a wrong hash is still refused.
    let req = client::authenticated_request(
        "Core_exit",
        Dict::new(),
        b"wrong",
        COOKIE.to_string().as_bytes(),
        b"n",
    );
    assert_eq!(
        error_of(&one(&mut server, &mut node, NOW, &req)),
        Some(AUTH_FAILED)
    );
    let req = client::authenticated_request(
        "Core_exit",
        Dict::new(),
        b"NONE",
        COOKIE.to_string().as_bytes(),
        b"n",
    );
    assert_eq!(
        error_of(&one(&mut server, &mut node, NOW, &req)),
        Some("none")
    );
}

#[test]
fn required_arguments_are_checked() {
    let mut server = AdminServer::new("NONE");
    let mut node = Node::default();
    let call = |server: &mut AdminServer, node: &mut Node, args: Dict| {
        let d = one(
            server,
            node,
            NOW,
            &client::request("UDPInterface_beginConnection", args, b"a"),
        );
        error_of(&d).map(str::to_owned)
    };
    assert_eq!(
        call(&mut server, &mut node, Dict::new()).as_deref(),
        Some("Entry [publicKey] is required and must be of type [String]")
    );
    assert_eq!(
        call(
            &mut server,
            &mut node,
            Dict::new().with("publicKey", "k").with("address", 5)
        )
        .as_deref(),
        Some("Entry [address] is required and must be of type [String]")
    );
    // Optional arguments are not type-checked (the function sees them as they are).
    assert_eq!(
        call(
            &mut server,
            &mut node,
            Dict::new()
                .with("publicKey", "k")
                .with("address", "a")
                .with("interfaceNumber", "x")
        )
        .as_deref(),
        Some("none")
    );
    assert_eq!(node.calls.len(), 1);
    let d = one(
        &mut server,
        &mut node,
        NOW,
        &client::request("Admin_exportFd", Dict::new(), b"a"),
    );
    assert_eq!(
        error_of(&d),
        Some("Entry [fd] is required and must be of type [Int]")
    );
    let d = one(
        &mut server,
        &mut node,
        NOW,
        &client::request("Admin_exportFd", Dict::new().with("fd", -1), b"a"),
    );
    assert_eq!(error_of(&d), Some("invalid fd"));
}

#[test]
fn available_functions_paging() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let total = BUILTIN_FUNCTIONS.len() + NODE_FUNCTIONS.len();
    assert_eq!(total, 10);
    let page = |server: &mut AdminServer, node: &mut Node, p: Option<i64>| {
        let args = p.map_or_else(Dict::new, |p| Dict::new().with("page", p));
        let bytes = server
            .handle(
                NOW,
                src(),
                &client::request("Admin_availableFunctions", args, b"p"),
                node,
            )
            .responses
            .remove(0);
        client::parse_response(&bytes).unwrap()
    };
    let first = page(&mut server, &mut node, None);
    let (names0, more0) = first.function_page();
    assert_eq!(names0.len(), 8);
    assert!(more0);
    let (names1, more1) = page(&mut server, &mut node, Some(1)).function_page();
    assert_eq!(names1.len(), 2);
    assert!(!more1);
    let (names2, more2) = page(&mut server, &mut node, Some(2)).function_page();
    assert!(names2.is_empty() && !more2);
    // Negative pages wrap to a huge index, as in cjdns: empty.
    assert!(page(&mut server, &mut node, Some(-1))
        .function_page()
        .0
        .is_empty());
    let mut all: Vec<String> = names0.into_iter().chain(names1).collect();
    all.sort();
    let mut expected: Vec<String> = BUILTIN_FUNCTIONS
        .iter()
        .chain(NODE_FUNCTIONS)
        .map(|f| f.name.to_owned())
        .collect();
    expected.sort();
    assert_eq!(all, expected);
    // The argument descriptions.
    let listed = first.dict.get_dict("availableFunctions").unwrap();
    let page_arg = listed
        .get_dict("Admin_availableFunctions")
        .and_then(|a| a.get_dict("page"))
        .unwrap();
    assert_eq!(page_arg.get_int("required"), Some(0));
    assert_eq!(page_arg.get_str("type"), Some("Int"));
    assert!(listed.get_dict("ping").is_some_and(Dict::is_empty));
    // Protected functions are listed to everyone, as in cjdns.
    assert!(listed.get_dict("Admin_importFd").is_some());
}

/// With exactly 8 functions on the last page, cjdns still says `more` and the next page is
/// empty; cjdnstool stops on the empty page.
#[test]
fn full_last_page_still_says_more() {
    struct Three;
    const THREE: &[FunctionSpec] = &[
        FunctionSpec {
            name: "A_a",
            needs_auth: false,
            args: &[],
        },
        FunctionSpec {
            name: "A_b",
            needs_auth: false,
            args: &[],
        },
        FunctionSpec {
            name: "A_c",
            needs_auth: false,
            args: &[],
        },
    ];
    impl AdminFunctions for Three {
        fn functions(&self) -> &[FunctionSpec] {
            THREE
        }
        fn call(&mut self, _call: &Call<'_>) -> Response {
            Response::Reply(Dict::new())
        }
    }
    let mut server = AdminServer::new(PASSWORD);
    let req =
        |p: i64| client::request("Admin_availableFunctions", Dict::new().with("page", p), b"");
    let r0 = client::parse_response(&server.handle(NOW, src(), &req(0), &mut Three).responses[0])
        .unwrap();
    assert_eq!(r0.function_page().0.len(), 8);
    assert!(r0.function_page().1);
    let r1 = client::parse_response(&server.handle(NOW, src(), &req(1), &mut Three).responses[0])
        .unwrap();
    assert_eq!(r1.function_page(), (vec![], false));
    // A reply with neither txid nor other keys: the function's empty dict.
    let out = server.handle(
        NOW,
        src(),
        &client::request("A_a", Dict::new(), b""),
        &mut Three,
    );
    assert_eq!(out.responses, [b"de".to_vec()]);
}

#[test]
fn ignored_requests_get_no_answer() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    for bad in [
        &b""[..],
        b"garbage",
        b"li1ee",
        b"d1:q4:pingeXX",
        b"d1:xi1ee",
        b"d1:qi5ee",
    ] {
        let out = server.handle(NOW, src(), bad, &mut node);
        assert!(
            out.responses.is_empty(),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert!(out.ignored.is_some());
    }
    assert!(matches!(
        server.handle(NOW, src(), b"d1:xi1ee", &mut node).ignored,
        Some(Ignored::NoQuery)
    ));
}

#[test]
fn deferred_replies_carry_the_txid() {
    let mut server = AdminServer::new("NONE");
    let mut node = Node::default();
    let out = server.handle(
        NOW,
        src(),
        &client::request(
            "SwitchPinger_ping",
            Dict::new().with("path", "0000.0000.0000.0013"),
            b"ping-7",
        ),
        &mut node,
    );
    assert!(out.responses.is_empty() && out.ignored.is_none());
    let to = node.deferred.pop().unwrap();
    assert_eq!(to.addr, src());
    let bytes = server.reply(&to, Dict::new().with("result", "pong").with("ms", 3));
    assert_eq!(bytes.len() % 4, 0);
    let d = parse_dict(&bytes).unwrap();
    assert_eq!(d.get_bytes("txid"), Some(&b"ping-7"[..]));
    assert_eq!(d.get_str("result"), Some("pong"));
}

#[test]
fn async_channel_follows_cjdns_rules() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let to = ReplyTo {
        addr: src(),
        txid: b"log".to_vec(),
    };
    // Unknown, unauthenticated client: async disabled, no channel.
    let d = one(
        &mut server,
        &mut node,
        NOW,
        &client::request("Admin_asyncEnabled", Dict::new(), b""),
    );
    assert_eq!(d.get_int("asyncEnabled"), Some(0));
    assert_eq!(
        server.async_message(NOW, &to, Dict::new().with("msg", "x")),
        None
    );
    // After an authenticated request the client is remembered for 30 s.
    let req = client::authenticated_request(
        "Admin_asyncEnabled",
        Dict::new(),
        PASSWORD,
        COOKIE.to_string().as_bytes(),
        b"",
    );
    let d = one(&mut server, &mut node, NOW, &req);
    assert_eq!(d.get_int("asyncEnabled"), Some(1));
    let msg = server
        .async_message(
            NOW + Duration::from_secs(30),
            &to,
            Dict::new().with("msg", "x"),
        )
        .unwrap();
    assert_eq!(
        parse_dict(&msg).unwrap().get_bytes("txid"),
        Some(&b"log"[..])
    );
    // Even unauthenticated requests keep a known client alive.
    let d = one(
        &mut server,
        &mut node,
        NOW + Duration::from_secs(25),
        &client::request("Admin_asyncEnabled", Dict::new(), b""),
    );
    assert_eq!(d.get_int("asyncEnabled"), Some(1));
    // 30 000 ms after the last request is still in time; one millisecond more is not.
    assert!(server
        .async_message(NOW + Duration::from_millis(55_000), &to, Dict::new())
        .is_some());
    assert_eq!(
        server.async_message(NOW + Duration::from_millis(55_001), &to, Dict::new()),
        None
    );
    // Once dropped, it stays dropped.
    assert_eq!(
        server.async_message(NOW + Duration::from_secs(56), &to, Dict::new()),
        None
    );
    assert_eq!(server.expire(NOW + Duration::from_secs(100)), 0);
}

#[test]
fn response_helpers() {
    let r = client::parse_response(b"d5:error4:none4:txid1:ae").unwrap();
    assert_eq!(r.error(), None);
    assert_eq!(r.txid(), Some(&b"a"[..]));
    assert!(r.cookie().is_err());
    let r = client::parse_response(b"d5:error12:Auth failed.e").unwrap();
    assert_eq!(r.error(), Some("Auth failed."));
    assert!(client::parse_response(b"nope").is_err());
}

proptest! {
    #[test]
    fn handle_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut server = AdminServer::new(PASSWORD);
        let mut node = Node::default();
        let _ = server.handle(NOW, src(), &bytes, &mut node);
    }

    #[test]
    fn handle_never_panics_on_near_valid_auth(
        cookie in proptest::collection::vec(any::<u8>(), 0..12),
        hash in proptest::collection::vec(any::<u8>(), 60..68),
        now in any::<u64>(),
    ) {
        let mut server = AdminServer::new(PASSWORD);
        let mut node = Node::default();
        let req = bencode::encode_cjdns(&Dict::new()
            .with("q", "auth").with("aq", "Core_exit")
            .with("cookie", cookie).with("hash", hash));
        let _ = server.handle(UnixMillis(now), src(), &req, &mut node);
    }
}

/// The client state machine against the server: with and without a password, with a stray
/// datagram in between.
#[test]
fn client_exchange_drives_a_call() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let (mut ex, first) = client::Exchange::start("Core_exit", Dict::new(), Some(PASSWORD), b"42");
    let cookie = server
        .handle(NOW, src(), &first, &mut node)
        .responses
        .remove(0);
    assert_eq!(
        ex.on_response(b"d01:q4:ponge").unwrap(),
        client::Step::Ignored
    );
    let client::Step::Send(call) = ex.on_response(&cookie).unwrap() else {
        panic!("expected the authenticated request");
    };
    let reply = server
        .handle(at(COOKIE + 1), src(), &call, &mut node)
        .responses
        .remove(0);
    let client::Step::Done(resp) = ex.on_response(&reply).unwrap() else {
        panic!("expected the result");
    };
    assert_eq!(resp.error(), None);
    assert_eq!(node.calls.len(), 1);
    assert!(node.calls[0].2);

    // Without a password: one round trip, unauthenticated.
    let (mut ex, first) = client::Exchange::start("Core_nodeInfo", Dict::new(), None, b"43");
    let reply = server
        .handle(NOW, src(), &first, &mut node)
        .responses
        .remove(0);
    let client::Step::Done(resp) = ex.on_response(&reply).unwrap() else {
        panic!("expected the result");
    };
    assert_eq!(resp.dict.get_str("myIp6"), Some("fc00::1"));
}

/// Requests exactly as 22.3's cjdnstool (cjdns-admin at 8cfdf38) writes them: unpadded,
/// always with an `args` dictionary, hash over the unpadded bytes.
#[test]
fn cjdnstool_style_requests() {
    let mut server = AdminServer::new(PASSWORD);
    let mut node = Node::default();
    let ping = encode(&Value::Dict(
        Dict::new()
            .with("txid", "17")
            .with("q", "ping")
            .with("args", Dict::new()),
    ));
    let d = one(&mut server, &mut node, NOW, &ping);
    assert_eq!(d.get_str("q"), Some("pong"));
    assert_eq!(d.get_str("txid"), Some("17"));

    let cookie = COOKIE.to_string();
    let hash1 = hex::encode(Sha256::digest([PASSWORD, cookie.as_bytes()].concat()));
    let mut req = Dict::new()
        .with("txid", "18")
        .with("q", "auth")
        .with("aq", "UDPInterface_beginConnection")
        .with(
            "args",
            Dict::new()
                .with("publicKey", "k.k")
                .with("address", "10.0.0.1:1"),
        )
        .with("cookie", cookie.as_str())
        .with("hash", hash1.as_str());
    let hash2 = hex::encode(Sha256::digest(encode(&Value::Dict(req.clone()))));
    req.insert("hash", hash2.as_str());
    let d = one(&mut server, &mut node, NOW, &encode(&Value::Dict(req)));
    assert_eq!(error_of(&d), Some("none"));
    assert_eq!(d.get_str("txid"), Some("18"));
}
