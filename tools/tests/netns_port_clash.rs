//! Start-up conflicts in a network namespace: a second node on a UDP port (or the admin port)
//! that a running node holds exits non-zero naming the port, before it creates its TUN device,
//! and the first node keeps its traffic. Needs root (CI runs as root).

mod netns;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use netns::{identity, ping6, tempdir, wait_ping6, write, Daemon, Identity, Netns};

/// A minimal config: one UDP interface, TUN, the admin API on `admin_port`, `workers` workers.
fn config(
    id: &Identity,
    bind: &str,
    admin_port: u16,
    workers: u8,
    authorized: Option<&str>,
    connect: Option<(&str, &Identity, &str)>,
) -> String {
    let auth = authorized
        .map(|pw| format!(r#"{{ "password": "{pw}", "user": "peer" }}"#))
        .unwrap_or_default();
    let peers = connect
        .map(|(addr, peer, pw)| {
            format!(
                r#""{addr}": {{ "login": "peer", "password": "{pw}", "publicKey": "{}" }}"#,
                peer.public
            )
        })
        .unwrap_or_default();
    format!(
        r#"{{
    "privateKey": "{private}",
    "publicKey": "{public}",
    "ipv6": "{ipv6}",
    "authorizedPasswords": [ {auth} ],
    "admin": {{ "bind": "127.0.0.1:{admin_port}", "password": "NONE" }},
    "interfaces": {{ "UDPInterface": [ {{ "bind": "{bind}", "connectTo": {{ {peers} }} }} ] }},
    "router": {{ "interface": {{ "type": "TUNInterface" }} }},
    "pktmesh": {{ "workers": {workers} }},
    "noBackground": 1,
    "version": 2
}}
"#,
        private = id.private,
        public = id.public,
        ipv6 = id.ipv6,
    )
}

/// Waits up to 15 s for the daemon to exit; its exit status, or `None` if it still runs.
fn wait_exit(d: &mut Daemon) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = d.child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Starts a second node from `conf` in `ns` and asserts it fails, naming `needle`, before
/// creating its TUN device.
fn assert_refused(ns: &Netns, dir: &std::path::Path, conf: &str, name: &str, needle: &str) {
    let mut d = Daemon::start(ns, &write(dir, &format!("{name}.conf"), conf), dir, name);
    let status = wait_exit(&mut d);
    let log = d.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "{name}: expected a failed start, got {status:?}:\n{log}"
    );
    assert!(log.contains(needle), "{name}: {needle:?} not named:\n{log}");
    assert!(
        !log.contains("TUN up"),
        "{name}: the TUN device was created before the conflict was found:\n{log}"
    );
}

/// A process outside pktmesh that binds UDP `port` in `ns` with `SO_REUSEPORT` set (the
/// kernel lets it join a group of the same user's sockets), then counts the datagrams it gets
/// for `seconds` and prints the count.
fn reuseport_holder(ns: &Netns, port: u16, seconds: u32) -> Child {
    let script = format!(
        "import socket, sys, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n\
         s.bind(('0.0.0.0', {port}))\n\
         print('bound', flush=True)\n\
         s.settimeout(0.2)\n\
         got, end = 0, time.time() + {seconds}\n\
         while time.time() < end:\n\
         \x20   try:\n\
         \x20       s.recv(65536); got += 1\n\
         \x20   except socket.timeout:\n\
         \x20       pass\n\
         print(got, flush=True)\n"
    );
    let mut child = ns
        .cmd("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let stdout = child.stdout.as_mut().expect("stdout");
    let mut first = [0u8; 6];
    std::io::Read::read_exact(stdout, &mut first).unwrap();
    assert_eq!(&first, b"bound\n");
    child
}

/// What a [`reuseport_holder`] printed at the end: the datagrams it got.
fn holder_count(holder: Child) -> u64 {
    let out = holder.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}

#[test]
fn a_second_node_on_a_held_port_exits_naming_it_and_the_first_keeps_working() {
    if !netns::available() {
        return;
    }
    let tag = netns::tag();
    let dir = tempdir("pktmesh-netns", &tag);
    let (na, nb) = netns::two_hosts(&tag, "10.219.0.1/24", "10.219.0.2/24");
    let (a, b) = (identity(), identity());
    // A runs two workers: its sockets share the port with SO_REUSEPORT.
    let conf_a = config(&a, "0.0.0.0:16000", 11234, 2, Some("clash pw"), None);
    let conf_b = config(
        &b,
        "10.219.0.2:16000",
        11234,
        1,
        None,
        Some(("10.219.0.1:16000", &a, "clash pw")),
    );
    let da = Daemon::start(&na, &write(&dir, "a.conf", &conf_a), &dir, "a");
    assert!(
        da.wait_for_log("admin API up", Duration::from_secs(10)),
        "{}",
        da.log_text()
    );
    let db = Daemon::start(&nb, &write(&dir, "b.conf", &conf_b), &dir, "b");
    assert!(
        wait_ping6(&nb, &a.ipv6, Duration::from_secs(20)),
        "B cannot reach A\nA:\n{}\nB:\n{}",
        da.log_text(),
        db.log_text()
    );

    // Same UDP port, another admin port: with two workers (SO_REUSEPORT) and with one.
    let clashes = [
        (2, "0.0.0.0:16000"),
        (1, "0.0.0.0:16000"),
        (2, "10.219.0.1:16000"),
    ];
    for (i, (workers, bind)) in clashes.into_iter().enumerate() {
        let conf = config(&identity(), bind, 11300, workers, None, None);
        assert_refused(&na, &dir, &conf, &format!("clash{i}"), "UDP port 16000");
    }
    // Another UDP port, the same admin port.
    let conf = config(&identity(), "0.0.0.0:16100", 11234, 2, None, None);
    assert_refused(&na, &dir, &conf, "admin", "admin port 11234");
    // A port held by a program that is not pktmesh, with SO_REUSEPORT.
    let holder = reuseport_holder(&na, 16200, 1);
    let conf = config(&identity(), "0.0.0.0:16200", 11301, 2, None, None);
    assert_refused(&na, &dir, &conf, "foreign", "UDP port 16200");
    let _ = holder_count(holder);

    // A program of the same user joins A's port with SO_REUSEPORT while A runs: the kernel
    // lets it, but A's sockets keep every datagram, and every ping is answered.
    let intruder = reuseport_holder(&na, 16000, 4);
    let (ok, text) = ping6(&nb, &a.ipv6, 10);
    assert!(ok, "after the clashes: {text}\nA:\n{}", da.log_text());
    assert_eq!(
        holder_count(intruder),
        0,
        "the late joiner got A's datagrams"
    );
    drop((da, db));
    let _ = std::fs::remove_dir_all(&dir);
}
