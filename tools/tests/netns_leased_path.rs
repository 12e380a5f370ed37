//! Issue 14, must show 5: the leased path is the routed path.
//!
//! Six namespaces: a customer C with two ways to D, a short one C – R1 – D that the DHT
//! prefers (fewest label bits) and a longer one C – R2 – R3 – D, plus a management namespace M
//! with the route server (a second veth per node). A virtual ISP buys leases on the long way's
//! three links and attaches them to its network. C's own traffic then rides a lease, so C asks
//! the route server for the path to D that prefers the owner's leased links and sends on that
//! label: the packets are counted on C's two links (the kernel's veth counters), before the
//! leases (on C – R1) and after (on C – R2). With the route server stopped, C's route expires
//! and the DHT's path carries the traffic again (fail open).
//!
//! Needs root and iproute2 (CI runs it as root).

mod netns;

use std::process::Stdio;
use std::time::Duration;

use netns::market::{buy, lease, wait_for_offers};
use netns::{
    identity, link, route_server_bin, tempdir, wait_ping6, wait_until, write, Background, Daemon,
    Identity, Netns,
};
use serde_json::Value;

const NETWORK: &str = "91";

/// A node config: one UDP interface, its peers, the route server every second, leases offered.
fn config(id: &Identity, connect: &[(&str, &Identity)], route_server: &str) -> String {
    let peers: Vec<String> = connect
        .iter()
        .map(|(addr, peer)| {
            format!(
                "\"{addr}:13000\": {{ \"login\": \"mesh\", \"password\": \"path test\", \"publicKey\": \"{}\" }}",
                peer.public
            )
        })
        .collect();
    format!(
        r#"{{
    "privateKey": "{private}",
    "authorizedPasswords": [ {{ "password": "path test", "user": "mesh" }} ],
    "admin": {{ "bind": "127.0.0.1:11234", "password": "NONE" }},
    "interfaces": {{ "UDPInterface": [ {{ "bind": "0.0.0.0:13000", "connectTo": {{ {peers} }} }} ] }},
    "router": {{ "interface": {{ "type": "TUNInterface" }} }},
    "pktmesh": {{
        "routeServer": {{ "url": "{route_server}", "intervalSeconds": 1,
            "leaseOffer": {{ "maxKbps": 8000, "maxSeconds": 3600, "priceMsat": 1000 }} }}
    }},
    "noBackground": 1,
    "version": 2
}}
"#,
        private = id.private,
        peers = peers.join(", "),
    )
}

/// The name of the device in `ns` that carries `ip` (no prefix).
fn device_with(ns: &Netns, ip: &str) -> String {
    let out = ns.run("ip", &["-j", "addr", "show", "to", ip]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j addr JSON");
    v[0]["ifname"]
        .as_str()
        .unwrap_or_else(|| panic!("no device with {ip} in {}", ns.name))
        .to_string()
}

/// Packets the kernel sent on `dev` in `ns`.
fn tx_packets(ns: &Netns, dev: &str) -> u64 {
    let out = ns.run("ip", &["-j", "-s", "link", "show", "dev", dev]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j -s link JSON");
    v[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no tx counter for {dev}: {v}"))
}

/// Pings D from C `count` times quickly; returns (packets on C – R1, packets on C – R2).
fn count_per_link(c: &Netns, d_ip: &str, via_r1: &str, via_r2: &str, count: u32) -> (u64, u64) {
    let (r1_before, r2_before) = (tx_packets(c, via_r1), tx_packets(c, via_r2));
    let out = c.run(
        "ping",
        &[
            "-6",
            "-q",
            "-c",
            &count.to_string(),
            "-i",
            "0.01",
            "-W",
            "1",
            "-s",
            "200",
            d_ip,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{}",
        text.lines().rev().take(2).collect::<Vec<_>>().join(" | ")
    );
    (
        tx_packets(c, via_r1) - r1_before,
        tx_packets(c, via_r2) - r2_before,
    )
}

#[test]
fn leased_traffic_follows_the_route_servers_path_and_falls_back_to_the_dht() {
    if !netns::available() {
        return;
    }
    let tag = netns::tag();
    let dir = tempdir("pktmesh-leased-path", &tag);
    let names = ["C", "R1", "R2", "R3", "D"];
    let ns: Vec<Netns> = names
        .iter()
        .map(|n| Netns::new(&format!("{tag}{n}")))
        .collect();
    let m = Netns::new(&format!("{tag}M"));
    let (c, r1, r2, r3, d) = (&ns[0], &ns[1], &ns[2], &ns[3], &ns[4]);
    // The short way C – R1 – D and the long way C – R2 – R3 – D, each link its own /24.
    link(c, r1, "10.217.1.1/24", "10.217.1.2/24");
    link(r1, d, "10.217.2.1/24", "10.217.2.2/24");
    link(c, r2, "10.217.3.1/24", "10.217.3.2/24");
    link(r2, r3, "10.217.4.1/24", "10.217.4.2/24");
    link(r3, d, "10.217.5.1/24", "10.217.5.2/24");
    for (i, n) in ns.iter().enumerate() {
        link(
            &m,
            n,
            &format!("10.218.{i}.1/24"),
            &format!("10.218.{i}.2/24"),
        );
    }
    let ids: Vec<Identity> = (0..5).map(|_| identity()).collect();
    let (id_c, id_r1, id_r2, id_r3, id_d) = (&ids[0], &ids[1], &ids[2], &ids[3], &ids[4]);

    let route_server = Background(
        m.cmd(route_server_bin().to_str().unwrap())
            .args(["--listen", "0.0.0.0:8470", "--db"])
            .arg(dir.join("rs.redb"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the route server"),
    );
    let at = |i: usize| format!("http://10.218.{i}.1:8470");
    let confs = [
        config(
            id_c,
            &[("10.217.1.2", id_r1), ("10.217.3.2", id_r2)],
            &at(0),
        ),
        config(id_r1, &[("10.217.2.2", id_d)], &at(1)),
        config(id_r2, &[("10.217.4.2", id_r3)], &at(2)),
        config(id_r3, &[("10.217.5.2", id_d)], &at(3)),
        config(id_d, &[], &at(4)),
    ];
    let daemons: Vec<Daemon> = names
        .iter()
        .zip(&confs)
        .enumerate()
        .map(|(i, (n, text))| {
            let path = write(&dir, &format!("{n}.conf"), text);
            Daemon::start(&ns[i], &path, &dir, n)
        })
        .collect();
    let logs = || {
        daemons
            .iter()
            .zip(names)
            .map(|(d, n)| format!("--- {n}\n{}", d.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (daemon, n) in daemons.iter().zip(names) {
        assert!(
            daemon.wait_for_log("TUN up", Duration::from_secs(10)),
            "{n}: {}",
            daemon.log_text()
        );
    }
    assert!(
        wait_ping6(c, &id_d.ipv6, Duration::from_secs(60)),
        "C cannot reach D\n{}",
        logs()
    );
    let via_r1 = device_with(c, "10.217.1.1");
    let via_r2 = device_with(c, "10.217.3.1");

    // Before any lease the DHT's path carries C's traffic: the short way (the DHT replaces a
    // path by one with fewer label bits, so it settles there).
    let mut before = (0, 0);
    wait_until(
        "the DHT to route C → D the short way",
        Duration::from_secs(30),
        || {
            before = count_per_link(c, &id_d.ipv6, &via_r1, &via_r2, 100);
            before.0 >= 95 && before.1 < 20
        },
    );
    eprintln!("no lease: C – R1 {} packets, C – R2 {}", before.0, before.1);

    // The virtual ISP leases the long way and attaches it to its network.
    let isp_key = write(&dir, "isp.key", &identity().private);
    let links = [(id_c, id_r2), (id_r2, id_r3), (id_r3, id_d)];
    wait_for_offers(&m, &links);
    let lease_ids = buy(&m, &isp_key, &links, 2000, 1800);
    for id in &lease_ids {
        lease(
            &m,
            Some(&isp_key),
            &["attach", "--lease", id, "--network", NETWORK],
        );
    }
    // The node asks for the paths of the destinations it sends to: keep some traffic going.
    let pinging = Background(
        c.cmd("ping")
            .args(["-6", "-q", "-i", "0.2", &id_d.ipv6])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ping"),
    );
    assert!(
        daemons[0].wait_for_log(
            "leased traffic follows the route server's path",
            Duration::from_secs(30)
        ),
        "C never took the route server's path\n{}",
        logs()
    );
    drop(pinging);

    // Now C's traffic to D takes the leased links although the DHT still prefers the short way.
    let leased = count_per_link(c, &id_d.ipv6, &via_r1, &via_r2, 300);
    eprintln!("leased: C – R1 {} packets, C – R2 {}", leased.0, leased.1);
    assert!(
        leased.1 >= 285 && leased.0 < 30,
        "leased traffic should leave on C – R2: {leased:?}\n{}",
        logs()
    );
    // The leased links carry it all the way: R3 forwarded it to D.
    let r3_to_d = device_with(r3, "10.217.5.1");
    let r3_before = tx_packets(r3, &r3_to_d);
    let again = count_per_link(c, &id_d.ipv6, &via_r1, &via_r2, 100);
    let r3_sent = tx_packets(r3, &r3_to_d) - r3_before;
    assert!(
        again.1 >= 95 && r3_sent >= 95,
        "R3 → D should carry the leased traffic: C {again:?}, R3 → D {r3_sent}"
    );

    // The route server goes away: C's route expires (six rounds) and the DHT decides again.
    drop(route_server);
    let mut fallback = (0, 0);
    wait_until(
        "C to fall back to the DHT's path",
        Duration::from_secs(30),
        || {
            fallback = count_per_link(c, &id_d.ipv6, &via_r1, &via_r2, 100);
            fallback.0 >= 95 && fallback.1 < 20
        },
    );
    eprintln!(
        "route server away: C – R1 {} packets, C – R2 {}",
        fallback.0, fallback.1
    );
}
