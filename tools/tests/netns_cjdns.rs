//! Live interoperability with stock cjdns 22.3 in network namespaces: a pktmesh node and a cjdns
//! node peer (each side initiating) and ping each other through TUN, each routes for the other
//! in a three-node line, they peer by UDP beacons and over raw Ethernet (by beacons and by
//! `connectTo` with a MAC, each side initiating), and a cjdns node configured with a supernode
//! finds a pktmesh node that is the face of a route server and announces to the route server.
//!
//! Stock cjdns is not part of this repository: these tests run only where
//! `PKTMESH_CJDNS_BIN` names a `cjdroute` built from cjdns' public source (and need root).
//! Elsewhere they say so and return. With `PKTMESH_CJDNSTOOL_BIN` set too, cjdns' `cjdnstool`
//! is pointed at the pktmesh node (`peers`, `session`, `cexec`, switch `ping`).

mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netns::restart::{restart_loop, Restartable};
use netns::{
    identity, link, ping6, route_server_bin, tempdir, unix_now, wait_ping6, wait_until, write,
    Background, Daemon, Identity, Netns,
};

/// The stock cjdroute to test against, or `None` (after saying so) where there is none.
fn cjdns_bin() -> Option<PathBuf> {
    let Some(bin) = std::env::var_os("PKTMESH_CJDNS_BIN").map(PathBuf::from) else {
        eprintln!(
            "SKIPPING live cjdns interop: set PKTMESH_CJDNS_BIN to a stock cjdns 22.3 cjdroute"
        );
        return None;
    };
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

/// The line a 22.3 `cjdroute` client logs when it has configured its core, the last call being
/// `Security_setupComplete` (answered: the client waits for each answer). A core that is not
/// told so within 20 s of its start logs `Security_setupComplete() not called in time, exiting`
/// and exits.
const CJDNS_CONFIGURED: &str = "Cjdns started in the background";

/// How long one start of stock cjdroute may take to be configured (0.2-0.5 s here, loaded or
/// not; a failed start's client sometimes hangs instead of crashing).
const CJDNS_START_LIMIT: Duration = Duration::from_secs(5);

/// A stock cjdroute, started with retries. 22.3's client process (the one that configures the
/// core over the admin port) has a data race: `AdminClient`'s `doCall` sends the cookie request
/// and only then stores the call it is for, while the answer is handled on a tokio thread; when
/// the answer wins (the main thread preempted), `cookieCallback` passes a null dict on and the
/// client segfaults in `Dict_putObject` (seen in `dmesg` and gdb). That happens at any step of
/// the configuration: 1 start in 15 on an idle machine here, half or more of them on a loaded
/// one (two cores, load 3), 14 in 15 pinned to one CPU. The core then runs on with whatever
/// was configured until it exits 20 s later for want of `Security_setupComplete`. Started with
/// SCHED_FIFO (`chrt -f`), which load cannot preempt, 70 starts of 70 came up on the loaded
/// machine; the processes are put back to the normal policy once configured.
struct Cjdns {
    procs: Vec<Child>,
    log: PathBuf,
    ns_name: String,
    /// When the running client was started (Unix seconds).
    started: f64,
    /// How many starts failed before this one.
    failed_starts: usize,
}

impl Cjdns {
    /// Starts cjdroute in `ns` with the config at `conf` and returns once its client has
    /// logged [`CJDNS_CONFIGURED`] (its stdout made line-buffered with `stdbuf`, so the line is
    /// in the log as soon as it is written) and the UDP `port` is open; a start whose client
    /// exits, or that is not configured within [`CJDNS_START_LIMIT`], is killed and retried.
    fn start(bin: &Path, ns: &Netns, conf: &Path, dir: &Path, name: &str, port: u16) -> Self {
        for attempt in 0..20 {
            let log = dir.join(format!("{name}.cjdns{attempt}.log"));
            // The client logs to stdout, the core to stderr: both go to the log.
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            let started = unix_now();
            let child = ns
                .cmd("chrt")
                .args(["-f", "10", "stdbuf", "-oL"])
                .arg(bin)
                .stdin(Stdio::from(std::fs::File::open(conf).unwrap()))
                .stdout(Stdio::from(out.try_clone().unwrap()))
                .stderr(Stdio::from(out))
                .spawn()
                .expect("run chrt (util-linux), stdbuf (coreutils) and cjdroute");
            let mut me = Self {
                procs: vec![child],
                log,
                ns_name: ns.name.clone(),
                started,
                failed_starts: attempt,
            };
            let deadline = Instant::now() + CJDNS_START_LIMIT;
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(Some(_)) = me.procs[0].try_wait() {
                    break;
                }
                if !me.log_text().contains(CJDNS_CONFIGURED) {
                    continue;
                }
                let ss = ns.run("ss", &["-lun"]);
                if String::from_utf8_lossy(&ss.stdout).contains(&format!(":{port} ")) {
                    me.normal_policy();
                    return me;
                }
            }
            eprintln!(
                "stock cjdroute start {attempt} failed (22.3's start-up race), retrying; its log:\n{}",
                me.log_text()
            );
            me.kill_all();
            std::thread::sleep(Duration::from_millis(300));
        }
        panic!("stock cjdroute did not start in 20 attempts");
    }

    /// Puts every thread of the namespace's processes (the client and its core) back to the
    /// normal scheduling policy.
    fn normal_policy(&self) {
        for pid in self.pids() {
            let _ = Command::new("chrt")
                .args(["-o", "-a", "-p", "0", &pid])
                .output();
        }
    }

    /// The processes running in the namespace.
    fn pids(&self) -> Vec<String> {
        Command::new("ip")
            .args(["netns", "pids", &self.ns_name])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn kill_all(&mut self) {
        for c in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The core is a separate process of the angel; end whatever runs in the namespace.
        for pid in self.pids() {
            let _ = Command::new("kill").arg("-9").arg(pid).output();
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

impl Restartable for Cjdns {
    fn kill9(&mut self) {
        self.kill_all();
    }

    fn log_text(&self) -> String {
        Cjdns::log_text(self)
    }

    fn started_at(&self) -> f64 {
        self.started
    }
}

/// pktmesh and cjdns peer, `pktmesh_initiates` choosing who has the other in connectTo.
fn pair(pktmesh_initiates: bool) {
    let Some(bin) = cjdns_bin() else {
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

/// pktmesh connects to stock cjdns and both stay idle for 30 s: cjdns' own traffic to an idle
/// peer is a switch ping every 3 s (its SupernodeHunter; InterfaceController pings a peer only
/// after 3.072 s of quiet), so the link is often quiet for over a second; pktmesh must not take
/// that for a dead peer (no "peer stopped answering", no renewed session) and the link still
/// carries pings both ways afterwards.
#[test]
fn an_idle_cjdns_peer_is_never_declared_dead() {
    let Some(bin) = cjdns_bin() else {
        return;
    };
    let tag = netns::tag();
    let dir = tempdir("pktmesh-interop-idle", &tag);
    let (np, nc) = netns::two_hosts(&tag, "10.227.0.1/24", "10.227.0.2/24");
    let (p, c) = (identity(), identity());
    let pc = config(
        &p,
        "10.227.0.1:13001",
        "unused",
        &[("10.227.0.2:13002".into(), &c)],
    );
    let cc = config(&c, "10.227.0.2:13002", &format!("{tag}c.sock"), &[]);
    let cjdns = Cjdns::start(&bin, &nc, &write(&dir, "c.conf", &cc), &dir, "c", 13002);
    let ours = Daemon::start(&np, &write(&dir, "p.conf", &pc), &dir, "p");
    assert!(
        wait_ping6(&np, &c.ipv6, Duration::from_secs(40)),
        "pktmesh cannot ping cjdns\npktmesh log:\n{}\ncjdns log:\n{}",
        ours.log_text(),
        cjdns.log_text()
    );
    let before = ours.log_text().len();
    std::thread::sleep(Duration::from_secs(30));
    let log = ours.log_text();
    let idle = &log[before..];
    assert!(
        !idle.contains("peer stopped answering") && !idle.contains("peer link session renewed"),
        "pktmesh reset the link session of an idle cjdns peer:\n{idle}\ncjdns log (a 22.3 core \
         that logs \"Security_setupComplete() not called in time\" really exited):\n{}",
        cjdns.log_text()
    );
    let (ok, text) = ping6(&np, &c.ipv6, 3);
    assert!(
        ok,
        "pktmesh->cjdns after 30 s idle: {text}\npktmesh log:\n{log}"
    );
    let (ok, text) = ping6(&nc, &p.ipv6, 3);
    assert!(
        ok,
        "cjdns->pktmesh after 30 s idle: {text}\npktmesh log:\n{log}"
    );
    assert!(
        !ours.log_text().contains("peer stopped answering"),
        "pktmesh reset the link session:\n{}",
        ours.log_text()
    );
    drop((ours, cjdns));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 26 against stock cjdns: pktmesh connects to a cjdns 22.3 node (the responder), which is
/// `kill -9`ed and restarted with the same config 0.5 s later, five times in a row; each time
/// pktmesh must ping its fc address within 5 s of the restarted process's start. Nothing new
/// on the wire: pktmesh takes the link session for dead after two unanswered keepalives and
/// sends a fresh HELLO (repeated as REPEAT HELLO), which the new cjdns answers like any new
/// peer's; the new cjdns then pings its new peer end to end, and that HELLO renews pktmesh's
/// end-to-end session with it. Both sides log it: pktmesh `peer stopped answering` and `peer
/// link session renewed` once a round, each restarted cjdns `Added peer` for pktmesh.
#[test]
fn a_restarted_cjdns_responder_is_reachable_within_5s_five_times() {
    let Some(bin) = cjdns_bin() else {
        return;
    };
    const ROUNDS: usize = 5;
    let tag = netns::tag();
    let dir = tempdir("pktmesh-interop-restart", &tag);
    let (np, nc) = netns::two_hosts(&tag, "10.228.0.1/24", "10.228.0.2/24");
    let (p, c) = (identity(), identity());
    let pc = config(
        &p,
        "10.228.0.1:13001",
        "unused",
        &[("10.228.0.2:13002".into(), &c)],
    );
    let cc = config(&c, "10.228.0.2:13002", &format!("{tag}c.sock"), &[]);
    let c_conf = write(&dir, "c.conf", &cc);
    let ours = Daemon::start(&np, &write(&dir, "p.conf", &pc), &dir, "p");
    let mut cjdns_logs = Vec::new();
    let mut failed_starts = 0;
    let mut start = |round: usize| {
        let cjdns = Cjdns::start(&bin, &nc, &c_conf, &dir, &format!("c{round}"), 13002);
        cjdns_logs.push(cjdns.log.clone());
        failed_starts += cjdns.failed_starts;
        cjdns
    };
    let delays = restart_loop(&np, &ours, &mut start, &c.ipv6, ROUNDS);
    eprintln!(
        "stock cjdns responder restart delays (s): {delays:?}; failed cjdns starts retried: \
         {failed_starts}"
    );
    // One dead session and one renewal a round; a failed start whose core lived long enough
    // to answer our HELLO before it was killed may add one of each, nothing else may.
    let log = ours.log_text();
    for needle in ["peer stopped answering", "peer link session renewed"] {
        let count = log.matches(needle).count();
        assert!(
            (ROUNDS..=ROUNDS + failed_starts).contains(&count),
            "pktmesh logged `{needle}` {count} times for {ROUNDS} restarts and {failed_starts} \
             failed starts:\n{log}"
        );
    }
    assert_eq!(cjdns_logs.len(), ROUNDS + 1);
    for (round, path) in cjdns_logs.iter().enumerate() {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            text.lines()
                .any(|l| l.contains("Added peer [") && l.contains("from incoming message")),
            "cjdns (round {round}) did not log pktmesh as a new peer:\n{text}"
        );
    }
    drop(ours);
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

/// [`config`] with UDP on loopback only and this `ETHInterface` block: the nodes can reach
/// each other only in raw Ethernet frames.
fn ethernet_config(id: &Identity, port: u16, pipe: &str, eth: &str) -> String {
    config(id, &format!("127.0.0.1:{port}"), pipe, &[]).replace(
        "\"interfaces\": { \"UDPInterface\"",
        &format!("\"interfaces\": {{ \"ETHInterface\": [ {eth} ], \"UDPInterface\""),
    )
}

/// An `ETHInterface` block that connects to `peer` at `mac`.
fn eth_connect(device: &str, mac: &str, peer: &Identity) -> String {
    format!(
        r#"{{ "bind": "{device}", "beacon": 0, "connectTo": {{ "{mac}": {{ "login": "interop", "password": "interop secret", "publicKey": "{}", "peerName": "p" }} }} }}"#,
        peer.public
    )
}

/// Forty pings 250 ms apart, each waited for up to 30 s; the number of replies and ping's
/// output. Bounded at about 40 s.
fn lagging_pings(from: &Netns, to: &str) -> (usize, String) {
    let out = from.run(
        "timeout",
        &["45", "ping", "-6", "-c", "40", "-i", "0.25", "-W", "30", to],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (text.matches("bytes from").count(), text)
}

/// pktmesh and cjdns on a veth pair with no IP addresses, peering over Ethernet: by beacons
/// (`initiator` None), or with a `connectTo` by MAC at pktmesh (`Some(true)`) or at cjdns
/// (`Some(false)`). Then each pings the other through TUN.
fn ethernet_pair(initiator: Option<bool>) {
    let Some(bin) = cjdns_bin() else {
        return;
    };
    let tag = netns::tag();
    let dir = tempdir("pktmesh-interop", &tag);
    let (np, nc, vp, vc) = netns::ethernet_hosts(&tag);
    let (p, c) = (identity(), identity());
    let listen =
        |device: &str, beacon: u8| format!(r#"{{ "bind": "{device}", "beacon": {beacon} }}"#);
    let (eth_p, eth_c) = match initiator {
        None => (listen("all", 2), listen(&vc, 2)),
        Some(true) => (
            eth_connect(&vp, &netns::mac_of(&nc, &vc), &c),
            listen(&vc, 0),
        ),
        Some(false) => (
            listen(&vp, 0),
            eth_connect(&vc, &netns::mac_of(&np, &vp), &p),
        ),
    };
    let pc = ethernet_config(&p, 13001, "unused", &eth_p);
    let cc = ethernet_config(&c, 13002, &format!("{tag}c.sock"), &eth_c);
    let cjdns = Cjdns::start(&bin, &nc, &write(&dir, "c.conf", &cc), &dir, "c", 13002);
    let ours = Daemon::start(&np, &write(&dir, "p.conf", &pc), &dir, "p");
    // Stock 22.3 reads one Ethernet frame per readiness event, so every frame it receives
    // waits behind those still queued and replies come seconds late, more the longer the
    // link runs (two cjdns nodes do the same to each other: docs/node.md). Each direction
    // therefore sends a stream of pings and needs replies, however late, to some of them.
    // pktmesh logs the peer once data authenticated both ways over the link.
    assert!(
        ours.wait_for_log("peer established", Duration::from_secs(30)),
        "no Ethernet peering ({initiator:?})\npktmesh log:\n{}\ncjdns log:\n{}",
        ours.log_text(),
        cjdns.log_text()
    );
    for (from, to, what) in [
        (&np, &c.ipv6, "pktmesh->cjdns"),
        (&nc, &p.ipv6, "cjdns->pktmesh"),
    ] {
        let (replies, text) = lagging_pings(from, to);
        assert!(
            replies > 0,
            "{what}: no ping over Ethernet ({initiator:?})\n{text}\npktmesh log:\n{}",
            ours.log_text()
        );
    }
    drop((ours, cjdns));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pktmesh_and_cjdns_peer_by_ethernet_beacons() {
    ethernet_pair(None);
}

#[test]
fn pktmesh_connects_to_cjdns_over_ethernet() {
    ethernet_pair(Some(true));
}

#[test]
fn cjdns_connects_to_pktmesh_over_ethernet() {
    ethernet_pair(Some(false));
}

/// `GET <path>` on the route server at 127.0.0.1:8470 inside `ns`, as JSON.
fn route_server_get(ns: &Netns, path: &str) -> serde_json::Value {
    let script = format!(
        "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:8470{path}', timeout=5).read().decode())"
    );
    let out = ns.run("python3", &["-c", &script]);
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn same_address(json: &serde_json::Value, ipv6: &str) -> bool {
    let want: std::net::Ipv6Addr = ipv6.parse().expect("identity address");
    json.as_str()
        .and_then(|a| a.parse::<std::net::Ipv6Addr>().ok())
        == Some(want)
}

/// A stock cjdns node that lists a pktmesh node in `router.supernodes` finds it (GETSNODE),
/// pings it and announces itself (`sq`: `pn`, `ann`, `gr` in an end-to-end session); the
/// pktmesh node relays those to the route server beside it (`pktmesh.supernode`), which then
/// holds the cjdns node's announcement and, with the pktmesh node's own announcement over
/// HTTP, the link between them.
#[test]
fn cjdns_announces_to_a_route_server_through_a_pktmesh_supernode() {
    let Some(bin) = cjdns_bin() else {
        return;
    };
    let tag = netns::tag();
    let dir = tempdir("pktmesh-interop", &tag);
    let (ns_s, ns_c) = netns::two_hosts(&tag, "10.220.0.1/24", "10.220.0.2/24");
    let (s, c) = (identity(), identity());
    let _route_server = Background(
        ns_s.cmd(route_server_bin().to_str().unwrap())
            .args([
                "--listen",
                "127.0.0.1:8470",
                "--self-address",
                &s.ipv6,
                "--db",
            ])
            .arg(dir.join("rs.redb"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the route server"),
    );
    let face = format!(
        r#"{{ "pktmesh": {{ "supernode": {{ "url": "http://127.0.0.1:8470" }},
             "routeServer": {{ "url": "http://127.0.0.1:8470", "address": "{}",
                               "intervalSeconds": 2 }} }},"#,
        s.ipv6
    );
    let sc = config(&s, "10.220.0.1:13001", "unused", &[]).replacen('{', &face, 1);
    let cc = config(
        &c,
        "10.220.0.2:13002",
        &format!("{tag}c.sock"),
        &[("10.220.0.1:13001".into(), &s)],
    )
    .replace(
        "\"supernodes\": []",
        &format!("\"supernodes\": [ \"{}\" ]", s.public),
    );
    let ours = Daemon::start(&ns_s, &write(&dir, "s.conf", &sc), &dir, "s");
    let cjdns = Cjdns::start(&bin, &ns_c, &write(&dir, "c.conf", &cc), &dir, "c", 13002);
    assert!(
        wait_ping6(&ns_c, &s.ipv6, Duration::from_secs(40)),
        "no peering\npktmesh log:\n{}\ncjdns log:\n{}",
        ours.log_text(),
        cjdns.log_text()
    );
    // cjdns' announcer waits for its supernode hunter; both run on timers of a few seconds.
    let announced = |path: &str, who: &str| {
        route_server_get(&ns_s, path)["nodes"]
            .as_array()
            .is_some_and(|nodes| {
                nodes
                    .iter()
                    .any(|n| same_address(&n["address"], who) && n["peers"].as_u64() >= Some(1))
            })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while std::time::Instant::now() < deadline && !announced("/nodes", &c.ipv6) {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        announced("/nodes", &c.ipv6),
        "the route server never got the cjdns node's announcement: {}\npktmesh log:\n{}\ncjdns log:\n{}",
        route_server_get(&ns_s, "/nodes"),
        ours.log_text(),
        cjdns.log_text()
    );
    // Both ends announced each other: the route server has the link and a path over it.
    wait_until(
        "the link between the two nodes",
        Duration::from_secs(30),
        || {
            announced("/nodes", &s.ipv6)
                && route_server_get(&ns_s, &format!("/path?from={}&to={}", c.ipv6, s.ipv6))
                    .get("label")
                    .is_some()
        },
    );
    drop((ours, cjdns));
    let _ = std::fs::remove_dir_all(&dir);
}

/// pktmesh connects to stock cjdns with Noise on (the default) and ends up legacy, with pings
/// both ways (issue 17). Captured on pktmesh's side, the fact the negotiation rests on: its
/// first datagram is a Noise initiation that names its user in PktmeshPsk only (the cjdns
/// node's own key reads it), 22.3 answers no Noise message at all (no CjdnsPsk from an
/// unknown address: `AUTH_REQUIRED`), and the first thing it sends comes after pktmesh's
/// legacy HELLO, 1.024 s or more after the initiation. `noiseProto` is 0 on both sides.
#[test]
fn pktmesh_connecting_to_cjdns_ends_up_legacy() {
    use pktmesh_crypto_auth::legacy::CryptoAuth;
    use pktmesh_crypto_auth::noise::ObservedInitiation;
    use pktmesh_crypto_auth::PrivateKey;
    use pktmesh_tools::pktctl::decode::{read_frames, Link};

    let Some(bin) = cjdns_bin() else {
        return;
    };
    let tag = netns::tag();
    let dir = tempdir("pktmesh-interop-noise", &tag);
    let (np, nc) = netns::two_hosts(&tag, "10.218.0.1/24", "10.218.0.2/24");
    let (p, c) = (identity(), identity());
    let to_cjdns = [("10.218.0.2:13002".to_string(), &c)];
    let pc = config(&p, "10.218.0.1:13001", "unused", &to_cjdns);
    let cc = config(&c, "10.218.0.2:13002", &format!("{tag}c.sock"), &[]);
    let cjdns = Cjdns::start(&bin, &nc, &write(&dir, "c.conf", &cc), &dir, "c", 13002);
    let pcap = dir.join("p.pcap");
    let mut capture = np
        .cmd("tcpdump")
        .args(["-i", "any", "--immediate-mode", "-U", "-n", "-w"])
        .arg(&pcap)
        .arg("udp port 13002")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("tcpdump.err")).unwrap(),
        ))
        .spawn()
        .expect("run tcpdump");
    std::thread::sleep(Duration::from_secs(1));
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
    assert!(ok, "cjdns->pktmesh: {text}");
    for ns in [&np, &nc] {
        let peers = netns::established_peers(ns, 1, Duration::from_secs(10));
        assert_eq!(peers[0]["noiseProto"], 0, "{}: {peers:?}", ns.name);
    }
    // The end-to-end session stays legacy: cjdns drops our Noise initiations unread (both
    // attempts, 2 s apart, are over after 5 s), and the session keeps working.
    std::thread::sleep(Duration::from_secs(5));
    let (ok, text) = ping6(&np, &c.ipv6, 3);
    assert!(ok, "pktmesh->cjdns after the Noise initiations: {text}");
    let session = netns::session_with(&np, &c.ipv6);
    assert_eq!(session["noiseProto"], 0, "{session}");
    // SIGTERM: tcpdump writes out what it holds.
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill").arg(capture.id().to_string()).output();
    let _ = capture.wait();
    // pktmesh sends what it has for one peer as a UDP GSO batch, which a capture on the sender
    // sees as one datagram: a batch that starts with an initiation (184 bytes: CjdnsVer and
    // PktmeshPsk) is cut into 184-byte segments, the last maybe shorter, as the kernel does.
    const INITIATION_LEN: usize = 184;
    let mut datagrams: Vec<(u64, bool, Vec<u8>)> = Vec::new();
    for f in read_frames(&pcap).expect("the capture") {
        let Link::Udp { src, payload, .. } = f.link else {
            continue;
        };
        let ours = src.port() == 13001;
        let batch = ours && payload.starts_with(&[0xff, 0xff, 0xff, 0xff, 1]);
        let size = if batch { INITIATION_LEN } else { payload.len() };
        for segment in payload.chunks(size.max(1)) {
            datagrams.push((f.micros, ours, segment.to_vec()));
        }
    }
    let (first_at, _, initiation) = datagrams
        .iter()
        .find(|(_, ours, _)| *ours)
        .expect("pktmesh sent something");
    assert_eq!(initiation.len(), INITIATION_LEN, "a Noise initiation");
    let cjdns_key = CryptoAuth::new(PrivateKey::from_hex(&c.private).unwrap());
    let seen = ObservedInitiation::open(&cjdns_key, initiation).expect("opens with cjdns' key");
    assert_eq!(seen.additional.psk_lookup, None, "no CjdnsPsk");
    assert!(
        seen.additional.pktmesh_psk.is_some(),
        "the user in PktmeshPsk"
    );
    let hello = datagrams
        .iter()
        .find(|(_, ours, d)| *ours && d.get(..4) == Some(&[0; 4]))
        .expect("a legacy HELLO");
    assert!(
        hello.0 - first_at >= 1_000_000,
        "the HELLO waited for the Noise initiation to go unanswered"
    );
    let from_cjdns: Vec<&(u64, bool, Vec<u8>)> = datagrams.iter().filter(|d| !d.1).collect();
    assert!(!from_cjdns.is_empty());
    assert!(
        from_cjdns
            .iter()
            .all(|(at, _, d)| *at > hello.0 && d.get(..4) != Some(&[0xff; 4])),
        "cjdns answered nothing before the HELLO and no Noise message at all"
    );
    eprintln!(
        "Noise initiation unanswered; HELLO {:.3} s later; {} datagrams from cjdns after it",
        (hello.0 - first_at) as f64 / 1e6,
        from_cjdns.len()
    );
    drop((ours, cjdns));
    let _ = std::fs::remove_dir_all(&dir);
}
