//! Test hosts in network namespaces: each test creates its own namespaces and veth pairs with
//! private addresses, runs `cjdroute` processes in them, and removes everything on drop.
//!
//! Needs root, `ip` (iproute2) and `ping` (iputils-ping). Without root the tests say so and
//! return; with `PKTMESH_REQUIRE_NETNS=1` (set by `.ci/run`) a missing capability is a failure.

#![allow(dead_code, unreachable_pub)]

pub mod market;
pub mod restart;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Whether namespace tests can run here; panics when they must but cannot.
pub fn available() -> bool {
    // SAFETY-free check: root is uid 0 in /proc/self/status.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"));
    let tools = Command::new("ip").arg("-V").output().is_ok()
        && Command::new("ping").arg("-V").output().is_ok();
    let ok = root && tools && Path::new("/dev/net/tun").exists();
    if !ok {
        let why = format!(
            "root={root}, ip+ping present={tools}, /dev/net/tun present={}",
            Path::new("/dev/net/tun").exists()
        );
        if std::env::var("PKTMESH_REQUIRE_NETNS").is_ok_and(|v| v == "1") {
            panic!("namespace tests are required but cannot run: {why}");
        }
        eprintln!("SKIPPING namespace test: {why}");
    }
    ok
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique short tag for names (namespaces, interfaces) of this test process.
pub fn tag() -> String {
    format!(
        "pm{}x{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `ip` with arguments; panics with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop.
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Creates a namespace with loopback up.
    pub fn new(name: &str) -> Self {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        let ns = Self {
            name: name.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `ip` inside the namespace.
    pub fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip(&full);
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.cmd(program)
            .args(args)
            .output()
            .expect("run in namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Joins two namespaces with a veth pair carrying `a_ip`/`b_ip` (CIDR strings).
pub fn link(a: &Netns, b: &Netns, a_ip: &str, b_ip: &str) {
    let t = tag();
    let (va, vb) = (format!("{t}a"), format!("{t}b"));
    ip(&[
        "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns", &b.name,
    ]);
    // IPv6 addresses skip duplicate address detection so they are usable at once.
    let extra: &[&str] = if a_ip.contains(':') { &["nodad"] } else { &[] };
    a.ip(&[&["addr", "add", a_ip, "dev", &va][..], extra].concat());
    b.ip(&[&["addr", "add", b_ip, "dev", &vb][..], extra].concat());
    a.ip(&["link", "set", &va, "up"]);
    b.ip(&["link", "set", &vb, "up"]);
}

/// Two namespaces `<tag>A` and `<tag>B` joined by a veth pair with these addresses.
pub fn two_hosts(tag: &str, a_ip: &str, b_ip: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("{tag}A"));
    let b = Netns::new(&format!("{tag}B"));
    link(&a, &b, a_ip, b_ip);
    (a, b)
}

/// Two namespaces `<tag>A` and `<tag>B` joined by a veth pair with no IP addresses at all
/// (only raw Ethernet can cross); returns them with their device names.
pub fn ethernet_hosts(tag: &str) -> (Netns, Netns, String, String) {
    let a = Netns::new(&format!("{tag}A"));
    let b = Netns::new(&format!("{tag}B"));
    let t = self::tag();
    let (va, vb) = (format!("{t}a"), format!("{t}b"));
    ip(&[
        "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns", &b.name,
    ]);
    // No IPv6 link-local addresses either: nothing but cjdns frames on this wire.
    for (ns, dev) in [(&a, &va), (&b, &vb)] {
        let _ = ns.run(
            "sysctl",
            &["-qw", &format!("net.ipv6.conf.{dev}.disable_ipv6=1")],
        );
        ns.ip(&["link", "set", dev, "up"]);
    }
    (a, b, va, vb)
}

/// The MAC address of `dev` inside `ns`.
pub fn mac_of(ns: &Netns, dev: &str) -> String {
    let out = ns.run("cat", &[&format!("/sys/class/net/{dev}/address")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The `cjdroute` binary under test.
pub fn cjdroute_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cjdroute"))
}

/// A running `cjdroute`, killed on drop; its log is kept in a file.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// When it was started (Unix seconds).
    pub started: f64,
}

impl Daemon {
    /// Starts `cjdroute --nobg --config <conf>` inside `ns`.
    pub fn start(ns: &Netns, conf: &Path, dir: &Path, name: &str) -> Self {
        Self::start_with_env(ns, conf, dir, name, &[])
    }

    /// [`Daemon::start`] with extra environment variables.
    pub fn start_with_env(
        ns: &Netns,
        conf: &Path,
        dir: &Path,
        name: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let started = unix_now();
        let child = ns
            .cmd(cjdroute_bin().to_str().unwrap())
            .args(["--nobg", "--config", conf.to_str().unwrap()])
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("start cjdroute");
        Self {
            child,
            log,
            started,
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`, up to `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first for a graceful shutdown, then make sure.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .output();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generates a fresh config with `cjdroute --genconf` and returns it with the node's fc
/// address and public key.
pub fn genconf() -> (String, String, String) {
    genconf_with(&[])
}

/// [`genconf`] with more arguments (`--eth`).
pub fn genconf_with(args: &[&str]) -> (String, String, String) {
    let out = Command::new(cjdroute_bin())
        .arg("--genconf")
        .args(args)
        .output()
        .expect("genconf");
    assert!(
        out.status.success(),
        "genconf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |key: &str| -> String {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("\"{key}\"")))
            .unwrap_or_else(|| panic!("no {key} in genconf output"));
        line.split('"').nth(3).unwrap().to_string()
    };
    let ipv6 = field("ipv6");
    let public_key = field("publicKey");
    (text, ipv6, public_key)
}

/// Writes a file and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

/// Pings `target` (IPv6) from `ns` `count` times; true if every echo came back.
pub fn ping6(ns: &Netns, target: &str, count: u32) -> (bool, String) {
    let out = ns.run(
        "ping",
        &[
            "-6",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            target,
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let ok = out.status.success() && text.contains(&format!("{count} received"));
    (ok, text)
}

/// Pings until one succeeds or `timeout` passes.
pub fn wait_ping6(ns: &Netns, target: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ping6(ns, target, 1).0 {
            return true;
        }
    }
    false
}

/// Seconds since the Unix epoch, as `ping -D` stamps its lines.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Pings `target` from `ns` every 0.2 s until the first answer (at most `deadline`); the
/// Unix time of that answer as `ping -D` stamped it, and ping's output.
pub fn first_answer(ns: &Netns, target: &str, deadline: Duration) -> (Option<f64>, String) {
    let out = ns.run(
        "ping",
        &[
            "-6",
            "-D",
            "-n",
            "-c",
            "1",
            "-i",
            "0.2",
            "-w",
            &deadline.as_secs().to_string(),
            target,
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let at = text
        .lines()
        .filter(|l| l.contains("bytes from"))
        .find_map(|l| l.strip_prefix('[')?.split(']').next()?.parse::<f64>().ok());
    (at, text)
}

/// A node identity as test configs need it.
pub struct Identity {
    /// 64 hex digits.
    pub private: String,
    /// `….k`.
    pub public: String,
    /// fc address.
    pub ipv6: String,
}

/// A fresh identity with an fc address.
pub fn identity() -> Identity {
    let (private, public, address) =
        pktmesh_crypto_auth::PrivateKey::generate(&mut rand_core::OsRng);
    Identity {
        private: private.to_hex(),
        public: public.to_string(),
        ipv6: address.to_string(),
    }
}

/// An empty scratch directory under the system temp dir.
pub fn tempdir(prefix: &str, tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{tag}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The route server's binary.
///
/// `CARGO_BIN_EXE_<name>` exists only for binaries of the package under test, and artifact
/// dependencies (`bindeps`) are unstable, so the binary cannot come from tools' manifest. A
/// dev-dependency on the route-server crate with its `server` feature would let the test
/// serve the router in-process, but not run the binary, and it would turn that feature on
/// for the whole test build. So the test asks cargo for it: `cargo build -p
/// pktmesh-route-server --bin pktmesh-route-server` into this test's own target directory and
/// profile (read off the test executable's path, `<target>/<profile>/deps/<test>`). Cargo
/// holds its build-directory lock only while compiling, not while tests run, so the nested
/// build does not wait on the outer one; when the binary is up to date it is a no-op.
pub fn route_server_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps/<test>");
        let target_dir = profile_dir.parent().expect("<target>/<profile>");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("unexpected target layout {}", exe.display()),
        };
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let status = Command::new(env!("CARGO"))
            .current_dir(&workspace)
            .args([
                "build",
                "--quiet",
                "-p",
                "pktmesh-route-server",
                "--bin",
                "pktmesh-route-server",
                "--profile",
                profile,
                "--target-dir",
            ])
            .arg(target_dir)
            .status()
            .expect("run cargo build for the route server");
        assert!(status.success(), "building pktmesh-route-server failed");
        let bin = profile_dir.join(format!(
            "pktmesh-route-server{}",
            std::env::consts::EXE_SUFFIX
        ));
        assert!(bin.exists(), "{} missing after the build", bin.display());
        bin
    })
}

/// Waits (bounded) until `f` holds; panics naming `what` otherwise.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}");
}

/// A background process killed on drop.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `InterfaceController_peerStats` of the node whose admin API is at 127.0.0.1:11234 inside
/// `ns` (pktmesh, or stock cjdns with the admin password `NONE`), as `pktctl --json peers`
/// prints it: one object a peer (`lladdr`, `state`, `noiseProto`, `bytesIn`, …).
pub fn peer_stats(ns: &Netns) -> Vec<serde_json::Value> {
    let pktctl = env!("CARGO_BIN_EXE_pktctl");
    let out = ns.run(pktctl, &["--json", "peers"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pktctl peers: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    json["peers"].as_array().cloned().unwrap_or_default()
}

/// The end-to-end session with `ipv6` of the node in `ns` (`pktctl --json sessions`).
pub fn session_with(ns: &Netns, ipv6: &str) -> serde_json::Value {
    let out = ns.run(env!("CARGO_BIN_EXE_pktctl"), &["--json", "sessions"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pktctl sessions: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let wanted: std::net::Ipv6Addr = ipv6.parse().expect("an IPv6 address");
    json["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["ip6"].as_str().and_then(|i| i.parse().ok()) == Some(wanted))
        .cloned()
        .unwrap_or_else(|| panic!("no session with {ipv6} in {}: {json}", ns.name))
}

/// Waits (bounded) until the node in `ns` has `count` peers, all `ESTABLISHED`; their stats.
pub fn established_peers(ns: &Netns, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let mut stats = Vec::new();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        stats = peer_stats(ns);
        if stats.len() == count && stats.iter().all(|p| p["state"] == "ESTABLISHED") {
            return stats;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("not {count} established peers in {}: {stats:?}", ns.name);
}
