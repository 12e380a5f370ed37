//! The node configs and scenario files captured from real cjdns 22.3 nodes: private key →
//! public key → IPv6 must reproduce what the real nodes printed.

use std::path::PathBuf;

use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};

fn captures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/cjdns-captures")
}

/// Every scenario folder that exists (more are added over time).
fn scenarios() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .expect("shared/vectors/cjdns-captures must sit beside the checkout")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("scenario.json").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no capture scenarios found");
    dirs
}

fn check_identity(private_hex: &str, public_text: &str, ipv6: &str) {
    let private = PrivateKey::from_hex(private_hex).unwrap();
    let public = private.public_key();
    assert_eq!(public.to_string(), public_text);
    assert_eq!(PublicKey::parse(public_text).unwrap(), public);
    assert_eq!(public.address().to_string(), ipv6);
    assert_eq!(Address::parse(ipv6).unwrap(), public.address());
}

#[test]
fn scenario_nodes_match_their_printed_identity() {
    let mut checked = 0;
    for dir in scenarios() {
        let text = std::fs::read_to_string(dir.join("scenario.json")).unwrap();
        let scenario: serde_json::Value = serde_json::from_str(&text).unwrap();
        let nodes = scenario["nodes"].as_object().expect("nodes object");
        for node in nodes.values() {
            check_identity(
                node["private_key"].as_str().unwrap(),
                node["public_key"].as_str().unwrap(),
                node["ipv6"].as_str().unwrap(),
            );
            // The node's own config file says the same.
            let config = node["config"].as_str().unwrap();
            let conf: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join(config)).unwrap()).unwrap();
            check_identity(
                conf["privateKey"].as_str().unwrap(),
                conf["publicKey"].as_str().unwrap(),
                conf["ipv6"].as_str().unwrap(),
            );
            assert_eq!(conf["publicKey"], node["public_key"]);
            // The newer layout also gives the key in hex.
            if let Some(hex_key) = node["public_key_hex"].as_str() {
                let public = PublicKey::parse(node["public_key"].as_str().unwrap()).unwrap();
                assert_eq!(hex::encode(public.as_bytes()), hex_key);
            }
            checked += 1;
        }
    }
    assert!(checked >= 2);
}

/// Every `connectTo` entry of every interface (UDP or Ethernet; the `beacon/` nodes have only
/// an Ethernet interface) names a valid cjdns key; every scenario has at least one interface.
#[test]
fn connect_to_keys_are_valid_peers() {
    let mut peers = 0;
    for dir in scenarios() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.to_string_lossy().ends_with(".cjdroute.conf") {
                continue;
            }
            let conf: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let interfaces = conf["interfaces"].as_object().expect("interfaces");
            let list: Vec<&serde_json::Value> = ["UDPInterface", "ETHInterface"]
                .iter()
                .filter_map(|kind| interfaces.get(*kind)?.as_array())
                .flatten()
                .collect();
            assert!(!list.is_empty(), "{}: no interface", path.display());
            for iface in list {
                if let Some(map) = iface["connectTo"].as_object() {
                    for peer in map.values() {
                        let key = PublicKey::parse(peer["publicKey"].as_str().unwrap()).unwrap();
                        assert!(key.address().is_valid());
                        peers += 1;
                    }
                }
            }
        }
    }
    assert!(peers >= 4, "{peers} connectTo entries");
}
