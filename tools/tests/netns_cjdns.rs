//! Live interoperability with stock cjdns 22.3 in network namespaces: a pktmesh node and a cjdns
//! node peer (each side initiating) and ping each other through TUN, and each routes for the
//! other in a three-node line.
//!
//! Stock cjdns is not part of this repository: these tests run only where
//! `PKTMESH_CJDNS_BIN` names a `cjdroute` built from cjdns' public source (and need root).
//! Elsewhere they say so and return. With `PKTMESH_CJDNSTOOL_BIN` set too, cjdns' `cjdnstool`
//! is pointed at the pktmesh node (`peers`, `session`, `cexec`, switch `ping`).

mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netns::{identity, link, ping6, tempdir, wait_ping6, write, Daemon, Identity, Netns};

fn cjdns_bin() -> Option<PathBuf> {
    let bin = std::env::var_os("PKTMESH_CJDNS_BIN").map(PathBuf::from)?;
    if !bin.is_file() {
        panic!("PKTMESH_CJDNS_BIN={} is not a file", bin.display());
    }
    netns::available().then_some(bin)
}

/// A config both implementations accept (cjdns' own layout).
fn config(id: &Identity, bind: &str, pipe: &str, connect: &[(String, &Identity)]) -> String {
    let peers: Vec<String> = connect
        .iter()
        .map(|(addr, peer)| {
            format!(
                "\"{addr}\": {{ \"login\": \"interop\", \"password\": \"interop secret\", \"publicKey\": \"{}\", \"peerName\": \"p\" }}",
                peer.public
            )
        })
        .collect();
    format!(
        r#"{{
    "privateKey": "{private}",
    "publicKey": "{public}",
    "ipv6": "{ipv6}",
    "authorizedPasswords": [ {{ "password": "interop secret", "user": "interop" }} ],
    "admin": {{ "bind": "127.0.0.1:11234", "password": "NONE" }},
    "interfaces": {{ "UDPInterface": [ {{ "bind": "{bind}", "beacon": 0, "connectTo": {{ {peers} }} }} ] }},
    "router": {{
        "interface": {{ "type": "TUNInterface" }},
        "dnsSeeds": [], "supernodes": [], "publicPeer": {{}},
        "ipTunnel": {{ "allowedConnections": [], "outgoingConnections": [] }}
    }},
    "security": [ {{ "setuser": "nobody", "keepNetAdmin": 1 }}, {{ "chroot": "/var/run/" }},
                  {{ "nofiles": 0 }}, {{ "noforks": 1 }}, {{ "setupComplete": 1 }} ],
    "logging": {{ "logTo": "stdout" }},
    "noBackground": 1,
    "pipe": "{pipe}",
    "version": 2
}}
"#,
        private = id.private,
        public = id.public,
        ipv6 = id.ipv6,
        peers = peers.join(", "),
    )
}

/// A stock cjdroute, started with retries (22.3's start-up is racy on a loaded machine: its
/// angel process sometimes dies before the core is configured).
struct Cjdns {
    procs: Vec<Child>,
    log: PathBuf,
    ns_name: String,
}

impl Cjdns {
    fn start(bin: &Path, ns: &Netns, conf: &Path, dir: &Path, name: &str, port: u16) -> Self {
        for attempt in 0..20 {
            let log = dir.join(format!("{name}.cjdns{attempt}.log"));
            let child = ns
                .cmd(bin.to_str().unwrap())
                .stdin(Stdio::from(std::fs::File::open(conf).unwrap()))
                .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut me = Self {
                procs: vec![child],
                log,
                ns_name: ns.name.clone(),
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(300));
                if let Ok(Some(_)) = me.procs[0].try_wait() {
                    break;
                }
                let ss = ns.run("ss", &["-lun"]);
                if String::from_utf8_lossy(&ss.stdout).contains(&format!(":{port} ")) {
                    // Give the core a moment to finish configuration (TUN, peers).
                    std::thread::sleep(Duration::from_secs(2));
                    if matches!(me.procs[0].try_wait(), Ok(None)) {
                        return me;
                    }
                    break;
                }
            }
            me.kill_all();
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("stock cjdroute did not start in 20 attempts");
    }

    fn kill_all(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The core is a separate process of the angel; end whatever runs in the namespace.
        let pids = Command::new("ip")
            .args(["netns", "pids", &self.ns_name])
            .output();
        if let Ok(out) = pids {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").arg("-9").arg(pid).output();
            }
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Cjdns {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// pktmesh and cjdns peer, `pktmesh_initiates` choosing who has the other in connectTo.
fn pair(pktmesh_initiates: bool) {
    let Some(bin) = cjdns_bin() else {
        eprintln!(
            "SKIPPING live cjdns interop: set PKTMESH_CJDNS_BIN to a stock cjdns 22.3 cjdroute"
        );
        return;
    };
    let tag = netns::tag();
    let dir = tempdir("pktmesh-interop", &tag);
    let (np, nc) = netns::two_hosts(&tag, "10.216.0.1/24", "10.216.0.2/24");
    let (p, c) = (identity(), identity());
    let (pc, cc) = if pktmesh_initiates {
        (
            config(
                &p,
                "10.216.0.1:13001",
                "unused",
                &[("10.216.0.2:13002".into(), &c)],
            ),
            config(&c, "10.216.0.2:13002", &format!("{tag}c.sock"), &[]),
        )
    } else {
        (
            config(&p, "10.216.0.1:13001", "unused", &[]),
            config(
                &c,
                "10.216.0.2:13002",
                &format!("{tag}c.sock"),
                &[("10.216.0.1:13001".into(), &p)],
            ),
        )
    };
    let cjdns = Cjdns::start(&bin, &nc, &write(&dir, "c.conf", &cc), &dir, "c", 13002);
    let ours = Daemon::start(&np, &write(&dir, "p.conf", &pc), &dir, "p");
    let reached = wait_ping6(&np, &c.ipv6, Duration::from_secs(40));
    assert!(
        reached,
        "pktmesh cannot ping cjdns\npktmesh log:\n{}\ncjdns log:\n{}",
        ours.log_text(),
        cjdns.log_text()
    );
    let (ok, text) = ping6(&np, &c.ipv6, 3);
    assert!(ok, "pktmesh->cjdns: {text}");
    let (ok, text) = ping6(&nc, &p.ipv6, 3);
    assert!(
        ok,
        "cjdns->pktmesh: {text}\npktmesh log:\n{}",
        ours.log_text()
    );
    drop((ours, cjdns));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pktmesh_connects_to_cjdns() {
    pair(true);
}

#[test]
fn cjdns_connects_to_pktmesh() {
    pair(false);
}

/// A line of three nodes; `middle_is_cjdns` picks cjdns–pktmesh–cjdns or pktmesh–cjdns–pktmesh.
fn line(middle_is_cjdns: bool) {
    let Some(bin) = cjdns_bin() else {
        eprintln!(
            "SKIPPING live cjdns interop: set PKTMESH_CJDNS_BIN to a stock cjdns 22.3 cjdroute"
        );
        return;
    };
    let tag = netns::tag();
    let dir = tempdir("pktmesh-interop", &tag);
    let ns: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("{tag}L{i}"))).collect();
    link(&ns[0], &ns[1], "10.217.0.1/24", "10.217.0.2/24");
    link(&ns[1], &ns[2], "10.217.1.1/24", "10.217.1.2/24");
    let ids: Vec<Identity> = (0..3).map(|_| identity()).collect();
    // The ends connect to the middle node, which listens on all addresses.
    let confs = [
        config(
            &ids[0],
            "10.217.0.1:14000",
            &format!("{tag}l0.sock"),
            &[("10.217.0.2:14000".into(), &ids[1])],
        ),
        config(&ids[1], "0.0.0.0:14000", &format!("{tag}l1.sock"), &[]),
        config(
            &ids[2],
            "10.217.1.2:14000",
            &format!("{tag}l2.sock"),
            &[("10.217.1.1:14000".into(), &ids[1])],
        ),
    ];
    let is_cjdns = |i: usize| (i == 1) == middle_is_cjdns;
    let mut cjdns = Vec::new();
    let mut ours = Vec::new();
    for i in [1usize, 0, 2] {
        let path = write(&dir, &format!("l{i}.conf"), &confs[i]);
        if is_cjdns(i) {
            cjdns.push(Cjdns::start(
                &bin,
                &ns[i],
                &path,
                &dir,
                &format!("l{i}"),
                14000,
            ));
        } else {
            ours.push(Daemon::start(&ns[i], &path, &dir, &format!("l{i}")));
        }
    }
    let reached = wait_ping6(&ns[0], &ids[2].ipv6, Duration::from_secs(90));
    let logs: Vec<String> = ours
        .iter()
        .map(Daemon::log_text)
        .chain(cjdns.iter().map(Cjdns::log_text))
        .collect();
    assert!(
        reached,
        "end-to-end ping failed; logs:\n{}",
        logs.join("\n-----\n")
    );
    let (ok, text) = ping6(&ns[2], &ids[0].ipv6, 3);
    assert!(ok, "back: {text}");
    drop((ours, cjdns));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cjdns_routes_between_pktmesh_nodes() {
    line(true);
}

#[test]
fn pktmesh_routes_between_cjdns_nodes() {
    line(false);
}

#[test]
fn pktmesh_and_cjdns_peer_by_beacons() {
    let Some(bin) = cjdns_bin() else {
        eprintln!(
            "SKIPPING live cjdns interop: set PKTMESH_CJDNS_BIN to a stock cjdns 22.3 cjdroute"
        );
        return;
    };
    let tag = netns::tag();
    let dir = tempdir("pktmesh-interop", &tag);
    let (np, nc) = netns::two_hosts(&tag, "10.219.0.1/24", "10.219.0.2/24");
    let (p, c) = (identity(), identity());
    let beaconing = |text: String| {
        text.replace(
            "\"beacon\": 0,",
            "\"beacon\": 2, \"beaconPort\": 64512, \"beaconDevices\": [ \"all\" ],",
        )
    };
    let pc = beaconing(config(&p, "0.0.0.0:13001", "unused", &[]));
    let cc = beaconing(config(&c, "0.0.0.0:13002", &format!("{tag}c.sock"), &[]));
    let cjdns = Cjdns::start(&bin, &nc, &write(&dir, "c.conf", &cc), &dir, "c", 13002);
    let ours = Daemon::start(&np, &write(&dir, "p.conf", &pc), &dir, "p");
    // cjdns beacons every 32 s; either side hearing the other is enough.
    let reached = wait_ping6(&np, &c.ipv6, Duration::from_secs(80));
    assert!(
        reached,
        "no beacon peering\npktmesh log:\n{}\ncjdns log:\n{}",
        ours.log_text(),
        cjdns.log_text()
    );
    let (ok, text) = ping6(&nc, &p.ipv6, 3);
    assert!(ok, "cjdns->pktmesh: {text}");
    drop((ours, cjdns));
    let _ = std::fs::remove_dir_all(&dir);
}
