//! The lease market as a test's virtual ISP uses it: `pktctl lease` against the route server
//! in the management namespace, waiting for offers, and buying leases until the nodes issue
//! them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{wait_until, Identity, Netns};

fn pktctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pktctl"))
}

/// `pktctl lease --server http://127.0.0.1:8470 … <args>` in the management namespace `m`;
/// its stdout, or a panic with stderr.
pub fn lease(m: &Netns, key_file: Option<&Path>, args: &[&str]) -> String {
    let mut cmd = m.cmd(pktctl().to_str().unwrap());
    cmd.args(["lease", "--server", "http://127.0.0.1:8470"]);
    if let Some(k) = key_file {
        cmd.arg("--key-file").arg(k);
    }
    let out = cmd.args(args).output().expect("run pktctl");
    assert!(
        out.status.success(),
        "pktctl lease {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The route server's leases (`pktctl lease leases --json`).
pub fn leases_json(m: &Netns) -> Value {
    serde_json::from_str(&lease(m, None, &["leases", "--json"])).expect("leases JSON")
}

/// Waits (30 s at most) until the route server offers every link `a → b` of `links`.
pub fn wait_for_offers(m: &Netns, links: &[(&Identity, &Identity)]) {
    wait_until("offers on the links", Duration::from_secs(30), || {
        let offers: Value =
            serde_json::from_str(&lease(m, None, &["offers", "--json"])).unwrap_or(Value::Null);
        links.iter().all(|(a, b)| {
            offers["offers"].as_array().is_some_and(|list| {
                list.iter().any(|o| {
                    o["from"].as_str() == Some(&a.ipv6) && o["to"].as_str() == Some(&b.ipv6)
                        || o["node"].as_str() == Some(&a.ipv6)
                            && o["peer"].as_str() == Some(&b.ipv6)
                })
            })
        })
    });
}

/// Buys `kbps` for `seconds` on each link with the key in `isp_key` and waits (30 s at most)
/// until the nodes have issued the leases (their agents poll the route server); the lease
/// ids, in the order of `links`.
pub fn buy(
    m: &Netns,
    isp_key: &Path,
    links: &[(&Identity, &Identity)],
    kbps: u32,
    seconds: u32,
) -> Vec<String> {
    let (kbps, seconds) = (kbps.to_string(), seconds.to_string());
    let orders: Vec<String> = links
        .iter()
        .map(|(a, b)| {
            lease(
                m,
                Some(isp_key),
                &[
                    "buy",
                    "--node",
                    &a.ipv6,
                    "--peer",
                    &b.ipv6,
                    "--kbps",
                    &kbps,
                    "--seconds",
                    &seconds,
                ],
            )
        })
        .collect();
    let mut lease_ids = Vec::new();
    wait_until(
        "the nodes to issue the leases",
        Duration::from_secs(30),
        || {
            let all = leases_json(m);
            lease_ids = orders
                .iter()
                .filter_map(|o| {
                    all["leases"].as_array()?.iter().find_map(|l| {
                        (l["order"].as_str() == Some(o.as_str()))
                            .then(|| l["id"].as_str().map(str::to_string))
                            .flatten()
                    })
                })
                .collect();
            lease_ids.len() == orders.len()
        },
    );
    lease_ids
}
