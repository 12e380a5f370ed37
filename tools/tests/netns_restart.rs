//! Link session liveness in network namespaces (issue 26): a peer that is `kill -9`ed and
//! restarted is reachable again within 5 s of its start, five times in a row, whichever side
//! initiated the link, and both sides log it; a HELLO captured from the real handshake and
//! replayed (from the peer's own link address and from another one) leaves the established
//! peer session untouched. Needs root (CI runs as root).
//!
//! The replay is captured by a UDP relay between the nodes: node A connects to the relay,
//! which forwards to B and keeps A's first datagram (the HELLO). The relay is this test
//! executable run again inside A's namespace (`helper_process`, which does nothing unless
//! `PKTMESH_RS_HELPER` is set).

mod netns;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netns::restart::restart_loop;
use netns::{identity, ping6, tempdir, wait_ping6, write, Daemon, Identity, Netns};

const PASSWORD: &str = "restart secret";
const LOGIN: &str = "nodeA";

/// A node config: `bind`, the users it authorizes, the peers it connects to.
fn config(id: &Identity, bind: &str, authorize: bool, connect: &[(&str, &Identity)]) -> String {
    let auth = if authorize {
        format!("{{ \"password\": \"{PASSWORD}\", \"user\": \"{LOGIN}\" }}")
    } else {
        String::new()
    };
    let peers: Vec<String> = connect
        .iter()
        .map(|(addr, peer)| {
            format!(
                "\"{addr}\": {{ \"login\": \"{LOGIN}\", \"password\": \"{PASSWORD}\", \"publicKey\": \"{}\", \"peerName\": \"peer\" }}",
                peer.public
            )
        })
        .collect();
    format!(
        r#"{{
    "privateKey": "{private}",
    "publicKey": "{public}",
    "ipv6": "{ipv6}",
    "authorizedPasswords": [ {auth} ],
    "admin": {{ "bind": "127.0.0.1:11234", "password": "NONE" }},
    "interfaces": {{ "UDPInterface": [ {{ "bind": "{bind}", "beacon": 0, "connectTo": {{ {peers} }} }} ] }},
    "router": {{ "interface": {{ "type": "TUNInterface" }} }},
    "noBackground": 1,
    "version": 2
}}
"#,
        private = id.private,
        public = id.public,
        ipv6 = id.ipv6,
        peers = peers.join(", "),
    )
}

/// `conf` with `pktmesh.linkCrypto` legacy: the link speaks legacy CryptoAuth, as with stock
/// cjdns. The replay test needs it: a HELLO is legacy CryptoAuth's (two pktmesh nodes speak
/// Noise, whose initiations carry a TAI64N timestamp that the responder must see grow, so a
/// replayed one is refused by `crypto-auth`'s `Responder` before it touches the link).
fn legacy(conf: &str) -> String {
    conf.replace(
        "\"noBackground\"",
        "\"pktmesh\": { \"linkCrypto\": \"legacy\" },\n    \"noBackground\"",
    )
}

/// `kill -9` and restart of the node that answered the link (`initiator_restarts` false) or
/// of the one that made it, 5 times in a row.
fn restarts(initiator_restarts: bool, subnet: u8) {
    if !netns::available() {
        return;
    }
    let tag = netns::tag();
    let dir = tempdir("pktmesh-restart", &tag);
    let (a_ip, b_ip) = (format!("10.{subnet}.0.1"), format!("10.{subnet}.0.2"));
    let (na, nb) = netns::two_hosts(&tag, &format!("{a_ip}/24"), &format!("{b_ip}/24"));
    let (a, b) = (identity(), identity());
    let (a_bind, b_bind) = (format!("{a_ip}:15001"), format!("{b_ip}:15002"));
    // A survives; B restarts. A connects to B, or B to A.
    let (conf_a, conf_b) = if initiator_restarts {
        (
            config(&a, &a_bind, true, &[]),
            config(&b, &b_bind, false, &[(&a_bind, &a)]),
        )
    } else {
        (
            config(&a, &a_bind, false, &[(&b_bind, &b)]),
            config(&b, &b_bind, true, &[]),
        )
    };
    let pa = write(&dir, "a.conf", &conf_a);
    let pb = write(&dir, "b.conf", &conf_b);
    let da = Daemon::start(&na, &pa, &dir, "a");
    let mut start = |round: usize| Daemon::start(&nb, &pb, &dir, &format!("b{round}"));
    let delays = restart_loop(&na, &da, &mut start, &b.ipv6, 5);
    eprintln!("restart delays (s): {delays:?}");
    // Both sides said what happened: the survivor that initiated reset the dead session, and
    // each restarted node logged the new link.
    let log_a = da.log_text();
    if !initiator_restarts {
        assert!(
            log_a.contains("peer stopped answering"),
            "A did not log the dead session:\n{log_a}"
        );
    }
    assert!(
        log_a.contains("peer link session renewed"),
        "A did not log the renewal:\n{log_a}"
    );
    for round in 1..=5 {
        let log_b = std::fs::read_to_string(dir.join(format!("b{round}.log"))).unwrap_or_default();
        assert!(
            log_b.contains("peer established"),
            "restarted B (round {round}) did not log the link:\n{log_b}"
        );
    }
    drop((da, na, nb));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restarted_responder_is_reachable_within_5s_five_times() {
    restarts(false, 223);
}

#[test]
fn a_restarted_initiator_is_reachable_within_5s_five_times() {
    restarts(true, 224);
}

// ----- replayed HELLO ---------------------------------------------------------------------

fn pktctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pktctl"))
}

/// `pktctl --json peers` of the node in `ns`: (link address, state, bytes in) of each peer.
fn peers(ns: &Netns) -> Vec<(String, String, u64)> {
    let out = ns
        .cmd(pktctl().to_str().unwrap())
        .args(["--json", "peers"])
        .output()
        .expect("run pktctl");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pktctl peers: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    json["peers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["lladdr"].as_str().unwrap_or("?").to_string(),
                        p["state"].as_str().unwrap_or("?").to_string(),
                        p["bytesIn"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn relay(ns: &Netns, listen: &str, target: &str, dir: &Path) -> Child {
    let exe = std::env::current_exe().expect("test executable");
    ns.cmd(exe.to_str().expect("utf-8 path"))
        .args(["helper_process", "--exact", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env("PKTMESH_RS_HELPER", "relay")
        .env("RS_LISTEN", listen)
        .env("RS_TARGET", target)
        .env("RS_DIR", dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the relay")
}

#[test]
fn a_replayed_hello_leaves_the_established_session_untouched() {
    if !netns::available() {
        return;
    }
    let tag = netns::tag();
    let dir = tempdir("pktmesh-replay", &tag);
    let (na, nb) = netns::two_hosts(&tag, "10.225.0.1/24", "10.225.0.2/24");
    let (a, b) = (identity(), identity());
    let mut relay = relay(&na, "10.225.0.1:15100", "10.225.0.2:15002", &dir);
    let db = Daemon::start(
        &nb,
        &write(
            &dir,
            "b.conf",
            &legacy(&config(&b, "10.225.0.2:15002", true, &[])),
        ),
        &dir,
        "b",
    );
    let conf_a = legacy(&config(
        &a,
        "10.225.0.1:15001",
        false,
        &[("10.225.0.1:15100", &b)],
    ));
    let da = Daemon::start(&na, &write(&dir, "a.conf", &conf_a), &dir, "a");
    assert!(
        wait_ping6(&na, &b.ipv6, Duration::from_secs(30)),
        "A cannot reach B through the relay\nA:\n{}\nB:\n{}",
        da.log_text(),
        db.log_text()
    );
    assert!(
        dir.join("hello.bin").exists(),
        "the relay captured no HELLO"
    );
    let before = peers(&nb);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].1, "ESTABLISHED", "{before:?}");
    // Replay it: from the relay's socket (A's link address at B) and from a new one.
    write(&dir, "replay", "");
    netns::wait_until("the replay", Duration::from_secs(10), || {
        dir.join("replayed").exists()
    });
    std::thread::sleep(Duration::from_secs(1));
    let (ok, text) = ping6(&na, &b.ipv6, 10);
    assert!(ok, "ping after the replay: {text}\nB:\n{}", db.log_text());
    let after = peers(&nb);
    assert_eq!(
        after.len(),
        1,
        "the replay made or evicted a peer: {after:?}"
    );
    assert_eq!(
        (&after[0].0, after[0].1.as_str()),
        (&before[0].0, "ESTABLISHED")
    );
    assert!(after[0].2 > before[0].2, "{before:?} {after:?}");
    let log_b = db.log_text();
    assert!(
        !log_b.contains("renewed") && !log_b.contains("forgot"),
        "B renewed or dropped the session:\n{log_b}"
    );
    assert!(
        log_b.contains("REPLAY") || log_b.contains("replay"),
        "B did not report the replays:\n{log_b}"
    );
    let log_a = da.log_text();
    assert!(!log_a.contains("stopped answering"), "{log_a}");
    write(&dir, "stop", "");
    let _ = relay.kill();
    let _ = relay.wait();
    drop((da, db, na, nb));
    let _ = std::fs::remove_dir_all(&dir);
}

// ----- the helper process -----------------------------------------------------------------

/// Not a test: the UDP relay the replay test starts inside A's namespace
/// (`PKTMESH_RS_HELPER=relay`; without it, nothing happens).
#[test]
#[ignore = "run by the namespace tests in this file"]
fn helper_process() {
    let Ok(job) = std::env::var("PKTMESH_RS_HELPER") else {
        return;
    };
    assert_eq!(job, "relay");
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let listen: SocketAddr = env("RS_LISTEN").parse().expect("RS_LISTEN");
    let target: SocketAddr = env("RS_TARGET").parse().expect("RS_TARGET");
    let dir = PathBuf::from(env("RS_DIR"));
    let down = UdpSocket::bind(listen).expect("bind the relay");
    let up = Arc::new(UdpSocket::bind("0.0.0.0:0").expect("bind upstream"));
    down.set_read_timeout(Some(Duration::from_millis(50))).ok();
    up.set_read_timeout(Some(Duration::from_millis(50))).ok();
    let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(180);
    {
        // B -> A.
        let (up, down, client) = (up.clone(), down.try_clone().expect("clone"), client.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                if let Ok((n, _)) = up.recv_from(&mut buf) {
                    if let Some(to) = *client.lock().unwrap() {
                        let _ = down.send_to(&buf[..n], to);
                    }
                }
            }
        });
    }
    let mut buf = [0u8; 2048];
    let mut hello: Option<Vec<u8>> = None;
    let mut replayed = false;
    while Instant::now() < deadline && !dir.join("stop").exists() {
        if let Ok((n, from)) = down.recv_from(&mut buf) {
            *client.lock().unwrap() = Some(from);
            // The first HELLO (stage word 0) A sends: the one of the real handshake.
            if hello.is_none() && n > 120 && buf[..4] == [0, 0, 0, 0] {
                hello = Some(buf[..n].to_vec());
                std::fs::write(dir.join("hello.bin"), &buf[..n]).expect("keep the HELLO");
            }
            let _ = up.send_to(&buf[..n], target);
        }
        if !replayed && dir.join("replay").exists() {
            let h = hello.clone().expect("a HELLO to replay");
            let other = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for _ in 0..3 {
                let _ = up.send_to(&h, target);
                let _ = other.send_to(&h, target);
                std::thread::sleep(Duration::from_millis(100));
            }
            replayed = true;
            std::fs::write(dir.join("replayed"), "").expect("mark");
        }
    }
}
