//! `pktctl lease …` against the real `pktmesh-route-server` binary on 127.0.0.1: the whole buy
//! flow (offers, buy, issue, virtual switch, attach, network) and the failure messages.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use pktmesh_crypto_auth::{Address, PrivateKey};
use pktmesh_lease_engine::sign::Signer;
use pktmesh_route_server::announce::{
    AnnounceSigner, AnnouncementRepr, EntityRepr, LeaseOffer, LinkCapacity, PeerRepr,
    CURRENT_VERSION,
};
use pktmesh_switch::EncodingScheme;
use serde_json::Value;

mod netns;

use netns::route_server_bin;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "pktctl-lease-{name}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The route server process, killed on drop.
struct RouteServer {
    child: Child,
    url: String,
}

impl RouteServer {
    fn start(dir: &Scratch) -> Self {
        let mut child = Command::new(route_server_bin())
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(dir.0.join("rs.redb"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start pktmesh-route-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr: SocketAddr = line
            .trim()
            .trim_start_matches("listening on ")
            .parse()
            .unwrap_or_else(|_| panic!("unexpected first line {line:?}"));
        Self {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for RouteServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic private keys whose addresses are in fc00::/8.
fn key(seed: u32) -> PrivateKey {
    (0u32..)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&seed.to_be_bytes());
            b[4..8].copy_from_slice(&i.to_be_bytes());
            PrivateKey::from_bytes(b)
        })
        .find(|k| k.public_key().address().is_valid())
        .unwrap()
}

/// Announces node `me` with its peers `(peer key, my slot to it, its slot to me, offer)`; an
/// offer (kbit/s) adds LINK_CAPACITY and LEASE_OFFER entities for that link.
fn announce(url: &str, me: &PrivateKey, peers: &[(&PrivateKey, u32, u32, Option<u32>)]) {
    let scheme = EncodingScheme::v358();
    let mut entities = vec![EntityRepr::Version(22), EntityRepr::EncodingScheme(scheme)];
    for &(peer, mine, theirs, offer) in peers {
        let mine = scheme.label_for_interface(mine).unwrap();
        let theirs = scheme.label_for_interface(theirs).unwrap();
        let peer_num = (mine.bits() & 0xffff) as u16;
        entities.push(EntityRepr::Peer(PeerRepr {
            encoding_form: scheme.form_index(mine.bits()).unwrap() as u8,
            flags: 0,
            mtu8: 1280 / 8,
            peer_num,
            unused: 0xffff_ffff,
            ip: peer.public_key().address(),
            label: theirs.bits() as u32,
        }));
        if let Some(kbps) = offer {
            entities.push(EntityRepr::LinkCapacity(LinkCapacity {
                peer_num,
                flags: 0,
                capacity_kbps: 2 * kbps,
                leased_kbps: 0,
            }));
            entities.push(EntityRepr::LeaseOffer(LeaseOffer {
                peer_num,
                kbps,
                max_seconds: 86_400,
                price_msat_per_mbit_hour: 5,
            }));
        }
    }
    let ann = AnnouncementRepr {
        snode_ip: Address::from_bytes([0xfc; 16]),
        timestamp_ms: now_ms(),
        reset: true,
        version: CURRENT_VERSION,
        entities,
    }
    .emit_signed(&AnnounceSigner::from_cjdns(me))
    .unwrap();
    let reply = ureq::post(&format!("{url}/announce"))
        .set("Content-Type", "application/octet-stream")
        .send_bytes(&ann);
    assert!(reply.is_ok(), "announce: {reply:?}");
}

fn pktctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pktctl"))
        .args(args)
        .output()
        .expect("run pktctl")
}

/// Runs `pktctl lease --server URL ARGS…`; must succeed. Returns stdout.
fn lease(url: &str, args: &[&str]) -> String {
    let mut all = vec!["lease", "--server", url];
    all.extend_from_slice(args);
    let out = pktctl(&all);
    assert!(
        out.status.success(),
        "pktctl {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `pktctl lease --server URL ARGS…`; must fail with status 1 and one line on stderr,
/// which is returned.
fn lease_fails(url: &str, args: &[&str]) -> String {
    let mut all = vec!["lease", "--server", url];
    all.extend_from_slice(args);
    let out = pktctl(&all);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "pktctl {all:?}: {stderr}");
    assert!(out.stdout.is_empty(), "pktctl {all:?} printed to stdout");
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr:?}");
    stderr
}

fn one_line(s: &str) -> String {
    assert_eq!(s.lines().count(), 1, "one line expected: {s:?}");
    s.trim_end().to_owned()
}

#[test]
fn buy_issue_and_configure_through_the_route_server() {
    let dir = Scratch::new("flow");
    let rs = RouteServer::start(&dir);
    let url = rs.url.as_str();
    // A line A — B — C; A offers on A → B, B on B → C.
    let (a, b, c, buyer) = (key(1), key(2), key(3), key(4));
    announce(url, &a, &[(&b, 3, 3, Some(50_000))]);
    announce(url, &b, &[(&a, 3, 3, None), (&c, 5, 3, Some(50_000))]);
    announce(url, &c, &[(&b, 3, 5, None)]);
    let ip = |k: &PrivateKey| k.public_key().address().to_string();
    let pubkey = |k: &PrivateKey| k.public_key().to_string();

    // Key files: node A as a cjdroute.conf with comments, node B and the buyer as bare hex.
    let a_conf = dir.file(
        "a.conf",
        &format!(
            "// cjdroute.conf of node A\n{{\n    /* identity */\n    \"privateKey\": \"{}\",\n    \
             \"publicKey\": \"{}\" // derived\n}}\n",
            a.to_hex(),
            pubkey(&a)
        ),
    );
    let b_key = dir.file("b.key", &format!("{}\n", b.to_hex()));
    let buyer_key = dir.file("buyer.key", &buyer.to_hex());

    let who = one_line(&lease(url, &["--key-file", &buyer_key, "whoami"]));
    let owner = hex::encode(Signer::from_cjdns(&buyer).public().0);
    assert_eq!(who, format!("{owner} {} {}", pubkey(&buyer), ip(&buyer)));
    let who_a: Value =
        serde_json::from_str(&lease(url, &["--key-file", &a_conf, "--json", "whoami"])).unwrap();
    assert_eq!(who_a["ipv6"], ip(&a));

    let offers = lease(url, &["offers"]);
    assert_eq!(offers.lines().count(), 3, "{offers}");
    assert!(offers.lines().next().unwrap().starts_with("NODE"));
    assert!(
        offers.contains(&ip(&a)) && offers.contains("50000"),
        "{offers}"
    );
    let offers: Value = serde_json::from_str(&lease(url, &["offers", "--json"])).unwrap();
    assert_eq!(offers["offers"].as_array().unwrap().len(), 2);

    // The buyer orders A → B and B → C.
    let buy = |node: &PrivateKey, peer: &PrivateKey| {
        let (n, p) = (ip(node), ip(peer));
        let args = [
            "--key-file",
            &buyer_key,
            "buy",
            "--node",
            &n,
            "--peer",
            &p,
            "--kbps",
            "10000",
            "--seconds",
            "3600",
        ];
        one_line(&lease(url, &args))
    };
    let order_ab = buy(&a, &b);
    let order_bc = buy(&b, &c);
    assert_eq!(order_ab.len(), 64);
    let pending = lease(url, &["pending", "--node", &ip(&a)]);
    assert_eq!(pending.lines().count(), 2, "{pending}");
    assert!(pending.contains(&order_ab) && pending.contains(&owner));

    // The nodes issue them.
    let issue = |key_file: &str, order: &str, peer: &PrivateKey| {
        let pk = pubkey(peer);
        one_line(&lease(
            url,
            &[
                "--key-file",
                key_file,
                "issue",
                "--order",
                order,
                "--peer-key",
                &pk,
            ],
        ))
    };
    let l1 = issue(&a_conf, &order_ab, &b);
    let l2 = issue(&b_key, &order_bc, &c);
    assert_eq!(l1.len(), 32);
    assert_eq!(
        lease(url, &["pending", "--node", &ip(&a)]).lines().count(),
        1
    );
    // Node B lets the buyer connect A → B to B → C.
    let vs = one_line(&lease(
        url,
        &[
            "--key-file",
            &b_key,
            "vswitch",
            "--owner",
            &owner,
            "--in",
            &l1,
            "--out",
            &l2,
            "--seconds",
            "3600",
        ],
    ));
    // The buyer attaches both leases to network 7 and configures the network.
    for l in [&l1, &l2] {
        let seq = one_line(&lease(
            url,
            &[
                "--key-file",
                &buyer_key,
                "attach",
                "--lease",
                l,
                "--network",
                "7",
            ],
        ));
        assert!(
            seq.parse::<u64>().unwrap() > 1_600_000_000_000,
            "ms timestamp"
        );
    }
    let leases_arg = format!("{l1},{l2}");
    lease(
        url,
        &[
            "--key-file",
            &buyer_key,
            "network",
            "--id",
            "7",
            "--leases",
            &leases_arg,
            "--vswitches",
            &vs,
        ],
    );

    let listing: Value = serde_json::from_str(&lease(url, &["leases", "--json"])).unwrap();
    let leases = listing["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 2);
    for l in leases {
        assert_eq!(l["network"], 7, "{l}");
        assert_eq!(l["owner"], owner.as_str());
        assert!(l["order"].is_string(), "matched to its order: {l}");
    }
    assert_eq!(listing["virtual_switches"][0]["id"], vs.as_str());
    let table = lease(url, &["leases"]);
    let row = table.lines().find(|r| r.starts_with(&l1)).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1..4], [ip(&a).as_str(), ip(&b).as_str(), "10000"]);
    assert_eq!(cells[7..], ["7", "active"], "{row}");
    assert!(table.lines().any(|r| r.starts_with(&vs)), "{table}");
    let networks: Value = ureq::get(&format!("{url}/networks"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(networks["networks"].as_array().unwrap().len(), 1);

    // Failures: an order above the offer shows the server's refusal.
    let (na, nb) = (ip(&a), ip(&b));
    let err = lease_fails(
        url,
        &[
            "--key-file",
            &buyer_key,
            "buy",
            "--node",
            &na,
            "--peer",
            &nb,
            "--kbps",
            "60000",
            "--seconds",
            "60",
        ],
    );
    assert!(
        err.contains("400") && err.contains("more kbit/s than offered"),
        "{err}"
    );
    // A peer key that is not the order's peer.
    let order = buy(&a, &b);
    let err = lease_fails(
        url,
        &[
            "--key-file",
            &a_conf,
            "issue",
            "--order",
            &order,
            "--peer-key",
            &pubkey(&c),
        ],
    );
    assert!(err.contains("not the order's peer"), "{err}");
    // A configuration by someone who is not the owner.
    let err = lease_fails(url, &["--key-file", &b_key, "release", "--lease", &l1]);
    assert!(err.contains("400") && err.contains("not owned"), "{err}");
}

#[test]
fn bad_key_files_and_unreachable_servers() {
    let dir = Scratch::new("keys");
    let url = "http://127.0.0.1:9";
    let missing = dir.0.join("nope.key");
    let missing = missing.to_str().unwrap();
    let err = lease_fails(url, &["--key-file", missing, "whoami"]);
    assert!(err.contains(missing), "{err}");
    let garbage = dir.file("garbage.key", "not a key at all\n");
    let err = lease_fails(url, &["--key-file", &garbage, "whoami"]);
    assert!(err.contains(&garbage), "{err}");
    let no_key = dir.file("empty.conf", "{ \"admin\": {} }");
    let err = lease_fails(url, &["--key-file", &no_key, "whoami"]);
    assert!(err.contains(&no_key) && err.contains("privateKey"), "{err}");
    let err = lease_fails(url, &["whoami"]);
    assert!(err.contains("--key-file"), "{err}");
    // Nothing listens on the discard port.
    let err = lease_fails(url, &["offers"]);
    assert!(err.contains("cannot reach"), "{err}");
    // Help documents the output formats.
    let help = pktctl(&["lease", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("whoami    SIGNING_KEY"));
}
