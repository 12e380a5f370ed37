//! `cjdroute.conf`: real configs from cjdns 22.3, our `--genconf`, the strict/lax rule, errors
//! with key paths, unknown-key warnings.

mod config_fixtures;

use std::collections::BTreeSet;
use std::net::SocketAddr;

use config_fixtures::{CJDNS_22_3_GENCONF, NODE_A, NODE_B};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use pktmesh_node::bencode::{Dict, Value};
use pktmesh_node::config::{
    clean_conf, genconf, genconf_with, parse_text, Beacon, Config, ConfigError, GenconfOptions,
    Loaded, StrOrInt, SyntaxErrorKind, WarningKind,
};
use proptest::prelude::*;
use rand_core::{CryptoRng, Error as RngError, RngCore};

/// A deterministic generator for tests (SplitMix64); not for real keys.
struct TestRng(u64);

impl RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for TestRng {}

fn load(text: &str) -> Loaded {
    Config::load(text.as_bytes(), "test.conf").unwrap_or_else(|e| panic!("{e}"))
}

fn load_err(text: &str) -> ConfigError {
    Config::load(text.as_bytes(), "test.conf").expect_err("must be rejected")
}

fn warnings_of(loaded: &Loaded, kind: fn(&WarningKind) -> bool) -> Vec<String> {
    loaded
        .warnings
        .iter()
        .filter(|w| kind(&w.kind))
        .map(|w| w.path.to_string())
        .collect()
}

fn no_lax(loaded: &Loaded) {
    assert!(
        !loaded
            .warnings
            .iter()
            .any(|w| matches!(w.kind, WarningKind::LaxSyntax(_))),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn captured_node_a_config() {
    let loaded = load(NODE_A);
    no_lax(&loaded);
    let c = &loaded.config;
    assert_eq!(
        c.private_key(),
        PrivateKey::from_hex("ffe353b8ab14265a98a3398617ede911412cf9d2b2cca66318f34ad2721fc7aa")
            .unwrap()
    );
    assert_eq!(
        c.public_key().to_string(),
        "hdxrv5j8mm504fbwlsh1z14qybr954pu4h8k8llz4x7sbd0wfjh0.k"
    );
    assert_eq!(
        c.admin_bind(),
        "127.0.0.1:11234".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.admin_password(), Some(&b"NONE"[..]));
    assert_eq!(c.authorized_passwords.len(), 1);
    assert_eq!(
        c.authorized_passwords[0].password.as_bytes(),
        b"lgyckvlb50cw81ttp5gbhc98h3ugqdb"
    );
    assert_eq!(
        c.authorized_passwords[0].user.as_deref(),
        Some("default-login")
    );
    let udp = c.udp_interfaces();
    assert_eq!(udp.len(), 1);
    assert_eq!(
        udp[0].bind.unwrap().0,
        "10.77.0.1:11001".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(udp[0].beacon, Beacon::Off);
    let peers: Vec<_> = c.udp_peers().collect();
    assert_eq!(peers.len(), 1);
    let peer = peers[0];
    assert_eq!(peer.interface, 0);
    assert_eq!(peer.addr, "10.77.0.2:11002".parse::<SocketAddr>().unwrap());
    assert_eq!(
        peer.public_key,
        PublicKey::parse("4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k").unwrap()
    );
    assert_eq!(
        peer.password(),
        Some(&b"ngb3c5rrbb1f9w2m0crx3gfjq4zv6nx"[..])
    );
    assert_eq!(peer.login(), Some("nodeA"));
    assert_eq!(peer.credentials.peer_name.as_deref(), Some("nodeB"));
    assert!(c.wants_tun());
    assert!(c.no_background());
    assert!(c.log_to_stdout());
    assert_eq!(c.pipe.as_deref(), Some("/run/cjdroute-A.sock"));
    assert_eq!(c.version, Some(2));
    assert_eq!(c.security.len(), 5);
    assert_eq!(c.security[0].setuser, Some(StrOrInt::Str("nobody".into())));
    assert_eq!(c.security[0].keep_net_admin, Some(1));
    assert_eq!(c.security[4].setup_complete, Some(1));
    // "publicPeer": {} and empty lists are fine.
    assert_eq!(
        c.router.public_peer.as_ref().and_then(|p| p.id.clone()),
        None
    );
    assert!(c.router.dns_seeds.is_empty());
    // The only warning: the disabled socket interface block.
    assert_eq!(
        warnings_of(&loaded, |k| matches!(k, WarningKind::DisabledKey)),
        ["router._disabled_interface"]
    );
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
}

/// The captured configs are in the plain layout `clean_conf` writes: reproduce them exactly.
#[test]
fn clean_conf_reproduces_the_captured_files() {
    for text in [NODE_A, NODE_B] {
        let loaded = load(text);
        assert_eq!(clean_conf(&loaded.raw), format!("{text}\n"));
    }
}

#[test]
fn captured_node_b_config() {
    let loaded = load(NODE_B);
    no_lax(&loaded);
    let c = &loaded.config;
    assert_eq!(
        c.public_key().to_string(),
        "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k"
    );
    assert_eq!(c.authorized_passwords[0].user.as_deref(), Some("nodeA"));
    assert_eq!(c.udp_peers().count(), 0);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
}

#[test]
fn cjdns_22_3_genconf_output_parses_strictly() {
    let loaded = load(CJDNS_22_3_GENCONF);
    no_lax(&loaded);
    let c = &loaded.config;
    assert_eq!(
        c.public_key().to_string(),
        "hdxrv5j8mm504fbwlsh1z14qybr954pu4h8k8llz4x7sbd0wfjh0.k"
    );
    let udp = c.udp_interfaces();
    assert_eq!(udp.len(), 2);
    assert_eq!(
        udp[0].bind.unwrap().0,
        "0.0.0.0:41257".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        udp[1].bind.unwrap().0,
        "[::]:41257".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(udp[0].beacon, Beacon::AcceptAndSend);
    assert_eq!(udp[0].beacon_port, Some(64512));
    assert_eq!(
        udp[0].beacon_devices.as_deref(),
        Some(&["all".to_owned()][..])
    );
    assert!(udp.iter().all(|u| u.connect_to.is_empty()));
    assert!(c.eth_interfaces().is_empty());
    assert_eq!(c.router.dns_seeds, ["seed.pns.cjdns.fr"]);
    assert!(c.wants_tun());
    assert_eq!(c.tun_device(), None);
    assert!(!c.no_background());
    assert!(!c.log_to_stdout());
    assert_eq!(c.admin_password(), Some(&b"NONE"[..]));
    assert_eq!(c.authorized_passwords.len(), 1);
    assert_eq!(c.version, Some(2));
    let mut disabled = warnings_of(&loaded, |k| matches!(k, WarningKind::DisabledKey));
    disabled.sort();
    assert_eq!(
        disabled,
        [
            "interfaces._disabled_ETHInterface",
            "router._disabled_interface"
        ]
    );
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
}

/// cjdns-bencode's `test_read_conf_invalid`: drop a comma from a generated file. With
/// `"version": 2` it must be rejected; with `"version": 1` the lax parse is accepted.
#[test]
fn lax_mode_only_for_old_versions() {
    let broken = CJDNS_22_3_GENCONF.replace(
        "\"pipe\": \"cjdroute.sock\",",
        "\"pipe\": \"cjdroute.sock\"",
    );
    match load_err(&broken) {
        ConfigError::StrictRequired { version, error, .. } => {
            assert_eq!(version, 2);
            assert!(matches!(
                error.kind,
                SyntaxErrorKind::UnexpectedChar { found: b'"', .. }
            ));
            assert_eq!(error.line, 334); // the "version" line after the comma-less "pipe"
        }
        other => panic!("{other}"),
    }
    let old = broken.replace("\"version\": 2", "\"version\": 1");
    let loaded = load(&old);
    assert!(loaded
        .warnings
        .iter()
        .any(|w| matches!(w.kind, WarningKind::LaxSyntax(_))));
    assert_eq!(loaded.config.pipe.as_deref(), Some("cjdroute.sock"));
    // No version at all counts as 0.
    let none = broken.replace("\"version\": 2", "\"x\": 0");
    load(&none);
    // Lax mode tolerates missing colons, repeated and trailing commas too.
    let lax = r#"{ "privateKey" "ffe353b8ab14265a98a3398617ede911412cf9d2b2cca66318f34ad2721fc7aa",,
        "admin": { "bind":: "127.0.0.1:11234" } "security": [ {"noforks": 1},, ], }"#;
    let loaded = load(lax);
    assert_eq!(loaded.config.security.len(), 1);
}

#[test]
fn genconf_output_is_a_strict_cjdns_shaped_config() {
    let mut rng = TestRng(7);
    let text = genconf(&mut rng);
    let loaded = load(&text);
    no_lax(&loaded);
    let c = &loaded.config;
    // Informational keys match the private key (no mismatch warning).
    assert!(!loaded
        .warnings
        .iter()
        .any(|w| matches!(w.kind, WarningKind::Ineffective(_))));
    assert_eq!(
        c.public_key.as_deref(),
        Some(c.public_key().to_string().as_str())
    );
    assert!(c.public_key().is_valid());
    let udp = c.udp_interfaces();
    let v4 = udp[0].bind.unwrap().0;
    let v6 = udp[1].bind.unwrap().0;
    assert!(v4.is_ipv4() && v6.is_ipv6());
    assert_eq!(v4.port(), v6.port());
    assert!(v4.port() > 1024);
    assert_eq!(c.admin_bind().to_string(), "127.0.0.1:11234");
    // A random admin password, not cjdns' NONE (which opens the API to every local user).
    let admin = c.admin_password().expect("an admin password");
    assert_eq!(admin.len(), 31);
    assert!(admin
        .iter()
        .all(|b| b"0123456789bcdfghjklmnpqrstuvwxyz".contains(b)));
    assert_ne!(admin, c.authorized_passwords[0].password.as_bytes());
    let pw = c.authorized_passwords[0].password.as_bytes();
    assert_eq!(pw.len(), 31);
    assert!(pw
        .iter()
        .all(|b| b"0123456789bcdfghjklmnpqrstuvwxyz".contains(b)));
    assert_eq!(
        c.authorized_passwords[0].user.as_deref(),
        Some("default-login")
    );
    assert_eq!(c.version, Some(2));
    assert_eq!(c.pipe.as_deref(), Some("cjdroute.sock"));
    assert!(c.wants_tun());

    // Same shape as cjdns' own output: the same key paths and value kinds.
    let ours = shape(&Value::Dict(loaded.raw.clone()));
    let theirs = shape(&Value::Dict(load(CJDNS_22_3_GENCONF).raw));
    assert_eq!(ours, theirs);

    // --eth enables the Ethernet block.
    let eth = load(&genconf_with(&mut rng, GenconfOptions::with_eth(true)));
    assert_eq!(eth.config.eth_interfaces().len(), 1);
    assert_eq!(eth.config.eth_interfaces()[0].bind.as_deref(), Some("all"));
    assert_eq!(
        eth.config.eth_interfaces()[0].beacon,
        Some(Beacon::AcceptAndSend)
    );

    // Fresh randomness gives a fresh identity.
    let again = load(&genconf(&mut rng));
    assert_ne!(again.config.public_key(), c.public_key());
    assert_ne!(again.config.admin_password(), c.admin_password());
}

/// Every key path with the kind of value found there.
fn shape(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, path: String, out: &mut BTreeSet<String>) {
        out.insert(format!("{path}: {}", v.type_name()));
        match v {
            Value::Dict(d) => {
                for (k, v) in d.iter() {
                    walk(v, format!("{path}.{}", String::from_utf8_lossy(k)), out);
                }
            }
            Value::List(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(v, format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(v, String::new(), &mut out);
    out
}

const MINIMAL: &str = r#"{
    "privateKey": "ffe353b8ab14265a98a3398617ede911412cf9d2b2cca66318f34ad2721fc7aa",
    "admin": { "bind": "127.0.0.1:11234", "password": "NONE" },
    "interfaces": { "UDPInterface": [ { "bind": "0.0.0.0:1", "connectTo": {
        "10.0.0.1:1": { "password": "pw", "publicKey": "PUBKEY" }
    } } ] }
}"#;

fn minimal_with_key(key: &str) -> String {
    MINIMAL.replace("PUBKEY", key)
}

#[test]
fn bad_value_names_file_key_path_and_expectation() {
    let err = load_err(&minimal_with_key("not-a-key"));
    let text = err.to_string();
    assert!(
        text.starts_with(
            "test.conf: interfaces.UDPInterface[0].connectTo[\"10.0.0.1:1\"].publicKey: expected a public key"
        ),
        "{text}"
    );
    assert!(text.contains("\"not-a-key\""), "{text}");
    match err {
        ConfigError::Value { file, path, .. } => {
            assert_eq!(file, "test.conf");
            assert_eq!(
                path.to_string(),
                "interfaces.UDPInterface[0].connectTo[\"10.0.0.1:1\"].publicKey"
            );
        }
        other => panic!("{other}"),
    }
    // A key whose address is outside fc00::/8 is refused too.
    let err = load_err(&minimal_with_key(
        "2222222222222222222222222222222222222222222222222220.k",
    ));
    assert!(err.to_string().contains("fc00::/8"), "{err}");
}

#[test]
fn more_bad_values() {
    let good_key = "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k";
    let base = minimal_with_key(good_key);
    let cases: Vec<(String, &str, &str)> = vec![
        (
            base.replace("\"10.0.0.1:1\"", "\"example.com:1\""),
            "interfaces.UDPInterface[0].connectTo[\"example.com:1\"]",
            "host names are not supported",
        ),
        (
            base.replace("\"0.0.0.0:1\"", "\"0.0.0.0\""),
            "interfaces.UDPInterface[0].bind",
            "\"IPv4:port\"",
        ),
        (
            base.replace("\"bind\": \"0.0.0.0:1\",", "\"bind\": \"0.0.0.0:1\", \"beacon\": 3,"),
            "interfaces.UDPInterface[0].beacon",
            "expected 0, 1 or 2, found 3",
        ),
        (
            base.replace("\"bind\": \"0.0.0.0:1\",", "\"bind\": \"0.0.0.0:1\", \"beaconPort\": 70000,"),
            "interfaces.UDPInterface[0].beaconPort",
            "70000",
        ),
        (
            base.replace("\"bind\": \"0.0.0.0:1\",", "\"bind\": \"0.0.0.0:1\", \"dscp\": \"46\","),
            "interfaces.UDPInterface[0].dscp",
            "expected an integer",
        ),
        (
            base.replace("\"password\": \"pw\", ", ""),
            "interfaces.UDPInterface[0].connectTo[\"10.0.0.1:1\"]",
            "",
        ),
        (
            base.replace("\"password\": \"pw\", \"publicKey\"", "\"password\": \"pw\", \"publicKeyX\""),
            "interfaces.UDPInterface[0].connectTo[\"10.0.0.1:1\"]",
            "missing field `publicKey`",
        ),
        (
            base.replace("\"ffe353b8ab14265a98a3398617ede911412cf9d2b2cca66318f34ad2721fc7aa\"", "\"ffe3\""),
            "privateKey",
            "64 hex digits",
        ),
        (
            base.replace("\"privateKey\"", "\"privateKeyX\""),
            "(top level)",
            "missing field `privateKey`",
        ),
        (
            base.replace("\"admin\": {", "\"admin\": [ {").replace("\"NONE\" },", "\"NONE\" } ],"),
            "admin",
            "expected an object",
        ),
        (
            base.replace("\"interfaces\"", "\"authorizedPasswords\": [ { \"user\": \"x\" } ], \"interfaces\""),
            "authorizedPasswords[0]",
            "missing field `password`",
        ),
        (
            base.replace(
                "\"interfaces\"",
                "\"router\": { \"interface\": { \"type\": \"SocketInterface\" } }, \"interfaces\"",
            ),
            "router.interface.socketFullPath",
            "required when type is SocketInterface",
        ),
        (
            base.replace(
                "\"interfaces\"",
                "\"router\": { \"ipTunnel\": { \"allowedConnections\": [ { \"publicKey\": \"KEY\" } ] } }, \"interfaces\"",
            ).replace("KEY", good_key),
            "router.ipTunnel.allowedConnections[0]",
            "either ip4Address or ip6Address",
        ),
        (
            base.replace("\"interfaces\"", "\"noBackground\": \"yes\", \"interfaces\""),
            "noBackground",
            "expected an integer",
        ),
    ];
    for (text, path, expect) in cases {
        // The password-less case is valid: password is optional.
        if expect.is_empty() {
            let loaded = load(&text);
            assert_eq!(loaded.config.udp_peers().next().unwrap().password(), None);
            continue;
        }
        let err = load_err(&text);
        match &err {
            ConfigError::Value {
                path: p, message, ..
            } => {
                assert_eq!(p.to_string(), path, "{err}");
                assert!(message.contains(expect), "{err}");
            }
            other => panic!("{other}"),
        }
    }
}

#[test]
fn unknown_keys_are_warnings_with_paths() {
    let text = minimal_with_key("4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k")
        .replace(
            "\"password\": \"pw\",",
            "\"password\": \"pw\", \"colour\": \"blue\",",
        )
        .replace("\"admin\":", "\"extra\": [1, 2], \"_off\": {}, \"admin\":");
    let loaded = load(&text);
    assert_eq!(
        warnings_of(&loaded, |k| matches!(k, WarningKind::UnknownKey)),
        [
            "extra",
            "interfaces.UDPInterface[0].connectTo[\"10.0.0.1:1\"].colour"
        ]
    );
    assert_eq!(
        warnings_of(&loaded, |k| matches!(k, WarningKind::DisabledKey)),
        ["_off"]
    );
    let shown: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        shown.contains(&"extra: unknown key, ignored".to_owned()),
        "{shown:?}"
    );
}

#[test]
fn single_object_udp_interface_and_string_public_peer() {
    let text = r#"{
        "privateKey": "ffe353b8ab14265a98a3398617ede911412cf9d2b2cca66318f34ad2721fc7aa",
        "admin": { "bind": "[::1]:11234" },
        "interfaces": {
            "UDPInterface": { "bind": "0.0.0.0:5000", "unknownThing": 1 },
            "ETHInterface": { "bind": "eth0", "beacon": 1,
                "connectTo": { "01:02:03:0a:0b:0c": {
                    "publicKey": "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k" } } }
        },
        "router": { "publicPeer": "PUB_ME", "supernodes": [
            "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k" ] },
        "security": [ { "setuser": 0 }, { "chroot": 0 } ]
    }"#;
    let loaded = load(text);
    let c = &loaded.config;
    assert_eq!(c.udp_interfaces().len(), 1);
    assert_eq!(c.udp_interfaces()[0].bind.unwrap().0.port(), 5000);
    assert_eq!(c.eth_interfaces().len(), 1);
    let (mac, _) = c.eth_interfaces()[0].connect_to.iter().next().unwrap();
    assert_eq!(mac.0, [1, 2, 3, 0x0a, 0x0b, 0x0c]);
    assert_eq!(mac.to_string(), "01:02:03:0a:0b:0c");
    assert_eq!(c.admin_password(), None);
    assert_eq!(c.admin_bind().port(), 11234);
    assert_eq!(
        c.router.public_peer.as_ref().and_then(|p| p.id.as_deref()),
        Some("PUB_ME")
    );
    assert_eq!(c.router.supernodes.len(), 1);
    assert_eq!(c.security[0].setuser, Some(StrOrInt::Int(0)));
    assert_eq!(c.security[1].chroot, Some(StrOrInt::Int(0)));
    // Unknown keys inside the single object are still reported.
    assert_eq!(
        warnings_of(&loaded, |k| matches!(k, WarningKind::UnknownKey)),
        ["interfaces.UDPInterface.unknownThing"]
    );
}

#[test]
fn beacon_without_port_is_a_warning() {
    let text = MINIMAL
        .replace(
            "PUBKEY",
            "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k",
        )
        .replace(
            "\"bind\": \"0.0.0.0:1\",",
            "\"bind\": \"0.0.0.0:1\", \"beacon\": 2,",
        );
    let loaded = load(&text);
    assert_eq!(
        warnings_of(&loaded, |k| matches!(k, WarningKind::Ineffective(_))),
        ["interfaces.UDPInterface[0].beacon"]
    );
}

#[test]
fn mismatched_informational_keys_warn() {
    let text = NODE_A.replace(
        "\"ipv6\": \"fc91:fc76:265b:733a:2473:502e:b7a4:2fc9\"",
        "\"ipv6\": \"fc00::1\"",
    );
    let loaded = load(&text);
    assert_eq!(
        warnings_of(&loaded, |k| matches!(k, WarningKind::Ineffective(_))),
        ["ipv6"]
    );
}

fn syntax_err(text: &str) -> (SyntaxErrorKind, usize, usize) {
    match parse_text(text.as_bytes(), "f.conf").expect_err(text) {
        ConfigError::Syntax { error, .. } => (error.kind, error.line, error.column),
        other => panic!("{other}"),
    }
}

#[test]
fn syntax_errors_have_positions() {
    assert_eq!(syntax_err("{ \"a\": 1.5 }"), (SyntaxErrorKind::Float, 1, 9));
    assert_eq!(
        syntax_err("{\n \"a\": true }"),
        (SyntaxErrorKind::UnsupportedLiteral, 2, 7)
    );
    assert_eq!(
        syntax_err("{ \"a\": null }").0,
        SyntaxErrorKind::UnsupportedLiteral
    );
    assert_eq!(
        syntax_err("{ \"a\": \"\\n\" }"),
        (SyntaxErrorKind::BadEscape, 1, 9)
    );
    assert_eq!(
        syntax_err("{ \"a\": \"\\x4\" }").0,
        SyntaxErrorKind::BadEscape
    );
    assert_eq!(
        syntax_err("{ \"a\": \"abc }").0,
        SyntaxErrorKind::UnterminatedString
    );
    assert_eq!(
        syntax_err("{ /* \"a\": 1 }").0,
        SyntaxErrorKind::UnterminatedComment
    );
    assert_eq!(syntax_err("{ / \"a\": 1 }").0, SyntaxErrorKind::StraySlash);
    assert_eq!(syntax_err("{ \"a\": 1-2 }").0, SyntaxErrorKind::BadInteger);
    assert_eq!(
        syntax_err("{ \"a\": 99999999999999999999 }").0,
        SyntaxErrorKind::BadInteger
    );
    assert_eq!(syntax_err("{ \"a\": 1 ").0, SyntaxErrorKind::UnexpectedEnd);
    assert_eq!(syntax_err("").0, SyntaxErrorKind::UnexpectedEnd);
    assert!(matches!(
        syntax_err("{ 'a': 1 }").0,
        SyntaxErrorKind::UnexpectedChar { found: b'\'', .. }
    ));
    // Top level must be an object.
    assert!(matches!(
        parse_text(b"[1]", "f.conf"),
        Err(ConfigError::NotAnObject { .. })
    ));
    // The error message names the file and the position.
    let e = parse_text(b"{\n\n  \"a\": 1.5 }", "my.conf").unwrap_err();
    assert_eq!(
        e.to_string(),
        "my.conf: line 3, column 9: only integers are supported, not fractions"
    );
}

#[test]
fn strict_mode_rules() {
    // Things strict mode refuses but lax mode accepts (no version, so lax wins).
    for text in [
        "{ \"a\": 1, }",
        "{ \"a\": 1 \"b\": 2 }",
        "{ \"a\" 1 }",
        "{ , \"a\": 1 }",
        "{ \"a\": [1 2] }",
        "{ \"a\": [1,,2] }",
        "{ \"a\": [1,] }",
        "{ \"a\":: 1 }",
    ] {
        let (_, warnings) = parse_text(text.as_bytes(), "f").unwrap();
        assert!(
            warnings
                .iter()
                .any(|w| matches!(w.kind, WarningKind::LaxSyntax(_))),
            "{text}"
        );
    }
    // Things both accept without comment.
    for text in [
        "{}",
        "{ \"a\": [] }",
        "{\r\n \"a\": -5, \"b\": 007, // c\r\n \"c\": \"\\x41\\x42\" /* d */ }",
    ] {
        let (d, warnings) = parse_text(text.as_bytes(), "f").unwrap();
        assert!(warnings.is_empty(), "{text}: {warnings:?}");
        if let Some(b) = d.get_int("b") {
            assert_eq!(b, 7);
            assert_eq!(d.get_int("a"), Some(-5));
            assert_eq!(d.get_bytes("c"), Some(&b"AB"[..]));
        }
    }
    // A comma inside a key-value pair is an error even in lax mode.
    assert!(parse_text(b"{ \"a\": , 1 }", "f").is_err());
}

#[test]
fn duplicate_keys_and_trailing_text_are_warnings() {
    let (d, warnings) = parse_text(b"{ \"a\": 1, \"a\": 2 } trailing", "f").unwrap();
    assert_eq!(d.get_int("a"), Some(2));
    assert!(warnings
        .iter()
        .any(|w| matches!(w.kind, WarningKind::DuplicateKey { line: 1 })));
    assert!(warnings
        .iter()
        .any(|w| matches!(w.kind, WarningKind::TrailingContent { line: 1 })));
}

#[test]
fn binary_passwords_and_clean_conf_round_trip() {
    let text = NODE_B.replace("ngb3c5rrbb1f9w2m0crx3gfjq4zv6nx", "\\x00\\xffpw\\x22");
    let loaded = load(&text);
    assert_eq!(
        loaded.config.authorized_passwords[0].password.as_bytes(),
        b"\x00\xffpw\""
    );
    let clean = clean_conf(&loaded.raw);
    assert!(clean.contains("\"\\x00\\xffpw\\x22\""), "{clean}");
    let (again, warnings) = parse_text(clean.as_bytes(), "clean").unwrap();
    assert!(warnings.is_empty());
    assert_eq!(again, loaded.raw);
    // Secrets do not leak through Debug.
    let dbg = format!("{:?}", loaded.config);
    assert!(!dbg.contains("pw"), "{dbg}");
    assert!(!dbg.contains("a6e8d265"), "{dbg}");
}

fn arb_conf_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Value::Int),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..6),
                inner,
                0..5
            )
            .prop_map(|m| Value::Dict(Dict::from(m))),
        ]
    })
}

proptest! {
    #[test]
    fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Config::load(&bytes, "fuzz");
    }

    #[test]
    fn parser_never_panics_on_json_like_text(
        bytes in proptest::collection::vec(
            prop_oneof![Just(b'{'), Just(b'}'), Just(b'['), Just(b']'), Just(b'"'), Just(b':'),
                        Just(b','), Just(b'/'), Just(b'*'), Just(b'\\'), Just(b'x'), Just(b'-'),
                        Just(b'\n'), Just(b' '), (b'0'..=b'9')], 0..120)
    ) {
        let _ = parse_text(&bytes, "fuzz");
    }

    #[test]
    fn clean_conf_round_trips(m in proptest::collection::btree_map(
        proptest::collection::vec(any::<u8>(), 0..6), arb_conf_value(), 0..5)
    ) {
        let d = Dict::from(m);
        let text = clean_conf(&d);
        let (again, warnings) = parse_text(text.as_bytes(), "p").unwrap();
        prop_assert!(warnings.is_empty());
        prop_assert_eq!(again, d);
    }
}

#[test]
fn pktmesh_section_for_leases_and_the_route_server() {
    let good_key = "4zyq040tgcks59j1uqc8yzflh8j6nub5jbwlknfn7k0m6nc1pr00.k";
    let base = minimal_with_key(good_key);
    let with = |section: &str| base.replacen('{', &format!("{{ \"pktmesh\": {section},"), 1);
    let loaded = load(&with(
        r#"{ "linkCapacityKbps": 20000, "routeServer": { "url": "http://10.1.0.1:8470",
             "intervalSeconds": 2,
             "leaseOffer": { "maxKbps": 8000, "maxSeconds": 3600, "priceMsat": 5 } } }"#,
    ));
    let p = &loaded.config.pktmesh;
    assert_eq!(p.link_capacity_kbps.default, 20000);
    let rs = p.route_server.as_ref().expect("route server");
    assert_eq!(rs.url, "http://10.1.0.1:8470");
    assert_eq!(rs.interval_seconds, Some(2));
    let offer = rs.lease_offer.expect("offer");
    assert_eq!(
        (offer.max_kbps, offer.max_seconds, offer.price_msat),
        (8000, 3600, 5)
    );
    // Without the section nothing changes (a stock cjdns config).
    let plain = load(&base);
    assert_eq!(plain.config.pktmesh.link_capacity_kbps.default, 0);
    assert!(plain.config.pktmesh.route_server.is_none());
    // Bad values name the key.
    let err = load_err(&with(r#"{ "linkCapacityKbps": "fast" }"#)).to_string();
    assert!(err.contains("pktmesh.linkCapacityKbps"), "{err}");
    let err = load_err(&with(r#"{ "routeServer": { "intervalSeconds": 2 } }"#)).to_string();
    assert!(
        err.contains("pktmesh.routeServer") && err.contains("url"),
        "{err}"
    );
    // The supernode face: the route server whose supernode queries this node relays.
    let loaded = load(&with(
        r#"{ "supernode": { "url": "http://127.0.0.1:8470" } }"#,
    ));
    let face = loaded.config.pktmesh.supernode.as_ref().expect("supernode");
    assert_eq!(face.url, "http://127.0.0.1:8470");
    assert!(plain.config.pktmesh.supernode.is_none());
    // TUN offloads: on unless switched off.
    assert_eq!(plain.config.pktmesh.tun_offload, None);
    let off = load(&with(r#"{ "tunOffload": 0 }"#));
    assert_eq!(off.config.pktmesh.tun_offload, Some(0));
    let err = load_err(&with(r#"{ "tunOffload": "yes" }"#)).to_string();
    assert!(err.contains("pktmesh.tunOffload"), "{err}");
    let err = load_err(&with(r#"{ "supernode": { "url": 8470 } }"#)).to_string();
    assert!(
        err.contains("pktmesh.supernode") && err.contains("url"),
        "{err}"
    );
}
