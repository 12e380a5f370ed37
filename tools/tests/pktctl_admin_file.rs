//! `pktctl` finds a node's admin password in `~/.cjdnsadmin`, as cjdns' tools do: a node
//! without TUN on loopback, an admin password, and `pktctl sessions` (which needs it) with and
//! without the file.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback UDP port free a moment ago.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Node {
    child: Child,
    log: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(dir: &Path, admin_port: u16, password: &str) -> Node {
    let (private, public, ipv6) = pktmesh_crypto_auth::PrivateKey::generate(&mut rand_core::OsRng);
    let conf = format!(
        r#"{{
    "privateKey": "{}", "publicKey": "{public}", "ipv6": "{ipv6}",
    "authorizedPasswords": [],
    "admin": {{ "bind": "127.0.0.1:{admin_port}", "password": "{password}" }},
    "interfaces": {{ "UDPInterface": [ {{ "bind": "127.0.0.1:{}" }} ] }},
    "router": {{}},
    "pktmesh": {{ "workers": 1 }},
    "version": 2
}}"#,
        private.to_hex(),
        free_port()
    );
    let path = dir.join("node.conf");
    std::fs::write(&path, conf).unwrap();
    let log = dir.join("node.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_cjdroute"))
        .args(["--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap();
    let node = Node { child, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&node.log)
        .unwrap_or_default()
        .contains("admin API up")
    {
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    node
}

/// `pktctl sessions` with `HOME` at `home`; whether it succeeded, and what it printed.
fn sessions(home: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pktctl"))
        .arg("sessions")
        .args(extra)
        .env("HOME", home)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn pktctl_reads_the_admin_password_from_cjdnsadmin() {
    let dir = std::env::temp_dir().join(format!("pktctl-admin-file-{}", std::process::id()));
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let admin_port = free_port();
    let _node = start_node(&dir, admin_port, "s3cret-admin");
    let port_arg = format!("127.0.0.1:{admin_port}");

    // No ~/.cjdnsadmin: pktctl tries 127.0.0.1:11234 or, told the address, NONE; refused.
    let (ok, text) = sessions(&home, &["--admin", &port_arg]);
    assert!(
        !ok && text.contains("No functions matched"),
        "no password, yet: {text}"
    );

    // With the file, address and password come from it.
    std::fs::write(
        home.join(".cjdnsadmin"),
        format!(r#"{{ "addr": "127.0.0.1", "port": {admin_port}, "password": "s3cret-admin" }}"#),
    )
    .unwrap();
    let (ok, text) = sessions(&home, &[]);
    assert!(ok, "with ~/.cjdnsadmin: {text}");
    // The command line still wins.
    let (ok, text) = sessions(&home, &["--admin-password", "wrong"]);
    assert!(!ok, "a wrong password on the command line: {text}");
    let _ = std::fs::remove_dir_all(&dir);
}
