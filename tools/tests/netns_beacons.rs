//! Forged UDP beacons against a node in a network namespace: unicast ones (what any host that
//! can reach the beacon port sends) make no peer; broadcast ones from the LAN make at most
//! `MAX_BEACON_PEERS`. Needs root (CI runs as root).

mod netns;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use netns::{identity, tempdir, write, Daemon, Identity, Netns};
use pktmesh_node::beacon::{Beacon, BEACON_PROTOCOL_VERSION, MAX_BEACON_PEERS};

/// A node that takes beacons (mode 1) on every device, with one worker.
fn config(id: &Identity) -> String {
    format!(
        r#"{{
    "privateKey": "{}",
    "publicKey": "{}",
    "ipv6": "{}",
    "authorizedPasswords": [],
    "admin": {{ "bind": "127.0.0.1:11234", "password": "NONE" }},
    "interfaces": {{ "UDPInterface": [ {{ "bind": "0.0.0.0:15000", "beacon": 1,
        "beaconPort": 64512, "beaconDevices": [ "all" ], "connectTo": {{}} }} ] }},
    "router": {{ "interface": {{ "type": "TUNInterface" }} }},
    "pktmesh": {{ "workers": 1 }},
    "noBackground": 1,
    "version": 2
}}
"#,
        id.private, id.public, id.ipv6
    )
}

/// `count` beacons from fresh keys, advertising data ports from `first_port` on, in hex.
fn forged_beacons(count: usize, first_port: u16) -> Vec<String> {
    (0..count)
        .map(|i| {
            let (_, key, _) = pktmesh_crypto_auth::PrivateKey::generate(&mut rand_core::OsRng);
            let b = Beacon {
                data_port: first_port + i as u16,
                version: BEACON_PROTOCOL_VERSION,
                password: [b'f'; 20],
                key,
            };
            hex::encode(b.to_bytes())
        })
        .collect()
}

/// Sends `beacons` from `ns` to `to:64512`, with `SO_BROADCAST` on.
fn send_from(ns: &Netns, to: &str, beacons: &[String]) {
    let script = format!(
        "import socket, sys\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)\n\
         for line in sys.stdin:\n    s.sendto(bytes.fromhex(line.strip()), ('{to}', 64512))\n"
    );
    let mut child = ns
        .cmd("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    for b in beacons {
        writeln!(stdin, "{b}").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

fn peers_added(d: &Daemon) -> usize {
    d.log_text().matches("added peer from beacon").count()
}

#[test]
fn forged_beacons_are_refused_unless_broadcast_and_capped_when_they_are() {
    if !netns::available() {
        return;
    }
    let tag = netns::tag();
    let dir = tempdir("pktmesh-netns", &tag);
    let (na, nb) = netns::two_hosts(&tag, "10.220.0.1/24", "10.220.0.2/24");
    let a = identity();
    let da = Daemon::start(&na, &write(&dir, "a.conf", &config(&a)), &dir, "a");
    assert!(
        da.wait_for_log("beacons on", Duration::from_secs(10)),
        "{}",
        da.log_text()
    );

    // Unicast to the node's address: refused, every one.
    send_from(&nb, "10.220.0.1", &forged_beacons(40, 20_000));
    assert!(
        da.wait_for_log(
            "datagrams on the beacon port refused",
            Duration::from_secs(5)
        ),
        "{}",
        da.log_text()
    );
    assert_eq!(peers_added(&da), 0, "{}", da.log_text());

    // Broadcast on the LAN from a host of its subnet: taken, up to the cap.
    let forged = MAX_BEACON_PEERS + 40;
    send_from(&nb, "10.220.0.255", &forged_beacons(forged, 21_000));
    let deadline = Instant::now() + Duration::from_secs(10);
    while peers_added(&da) < MAX_BEACON_PEERS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        peers_added(&da),
        MAX_BEACON_PEERS,
        "{forged} broadcast beacons:\n{}",
        da.log_text()
    );
    drop(da);
    let _ = std::fs::remove_dir_all(&dir);
}
