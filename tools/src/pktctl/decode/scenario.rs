//! The keys of a capture: what `scenario.json` gives an observer (the nodes' permanent private
//! keys and their addresses, the link passwords, the sessions' temporary private keys, the admin
//! ports), in either layout of `shared/vectors/cjdns-captures/`.
//!
//! - The current layout: `nodes.<name>` with `private_key`, `public_key` (checked against the
//!   private key), `udp` and `mac` (a string or a list); `passwords` (`[{login, password}]`, the
//!   password a string or `{"hex": …}`); `ephemeral_keys` (`[{private_key, …}]` or hex strings);
//!   `admin_ports`.
//! - The first layout (`two-node-password/`): `nodes.<name>.udp` as one string and one
//!   `peering: {login, password}`; pktmesh's own scenarios may add `temp_private_keys`.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use pktmesh_crypto_auth::legacy::{raw, AuthChallenge, AuthType, CryptoAuth};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use pktmesh_node::beacon::{LOCAL_PEERS_LOGIN, PASSWORD_LEN};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One node of the scenario.
#[derive(Debug, Clone)]
pub struct NodeKeys {
    /// The scenario's name for it (`A`, `B`, …).
    pub name: String,
    /// Permanent private key.
    pub private: PrivateKey,
    /// Permanent public key.
    pub public: PublicKey,
}

/// A login (absent for auth type 1) and its password (left out of `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The login, if the password has one.
    pub login: Option<Vec<u8>>,
    /// The password bytes.
    pub password: Vec<u8>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("login", &self.login.as_deref().map(String::from_utf8_lossy))
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Everything the observer knows.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    nodes: Vec<NodeKeys>,
    /// `ip:port` or lower-case MAC → node index.
    by_addr: HashMap<String, usize>,
    passwords: Vec<Credential>,
    /// Temporary public key → its private key.
    temp: HashMap<[u8; 32], [u8; 32]>,
    admin_ports: Vec<u16>,
}

fn one_or_many(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn password_bytes(v: &Value) -> Result<Vec<u8>> {
    match v {
        // The reference decoder reads text passwords as Latin-1.
        Value::String(s) => Ok(s.chars().map(|c| c as u32 as u8).collect()),
        Value::Object(o) => {
            let h = o
                .get("hex")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("password object without \"hex\""))?;
            Ok(hex::decode(h)?)
        }
        _ => bail!("password is neither a string nor {{\"hex\": …}}"),
    }
}

impl Keys {
    /// Parse a scenario.json (either layout).
    pub fn from_scenario(json: &Value) -> Result<Self> {
        let mut keys = Keys::default();
        let nodes = json["nodes"]
            .as_object()
            .ok_or_else(|| anyhow!("no \"nodes\" object"))?;
        for (name, n) in nodes {
            let private = n["private_key"]
                .as_str()
                .ok_or_else(|| anyhow!("node {name}: no private_key"))
                .and_then(|s| PrivateKey::from_hex(s).map_err(|e| anyhow!("node {name}: {e}")))?;
            let public = private.public_key();
            if let Some(text) = n["public_key"].as_str() {
                if PublicKey::parse(text).ok() != Some(public) {
                    bail!("node {name}: public_key {text} is not the private key's");
                }
            }
            for a in one_or_many(&n["udp"]) {
                let addr: std::net::SocketAddr = a
                    .parse()
                    .map_err(|_| anyhow!("node {name}: bad udp address {a:?}"))?;
                keys.by_addr.insert(addr.to_string(), keys.nodes.len());
            }
            for m in one_or_many(&n["mac"]) {
                keys.by_addr
                    .insert(m.to_ascii_lowercase(), keys.nodes.len());
            }
            keys.nodes.push(NodeKeys {
                name: name.clone(),
                private,
                public,
            });
        }
        if let Some(pw) = json["peering"].get("password") {
            keys.passwords.push(Credential {
                login: json["peering"]["login"]
                    .as_str()
                    .map(|l| l.as_bytes().to_vec()),
                password: password_bytes(pw)?,
            });
        }
        for p in json["passwords"].as_array().into_iter().flatten() {
            keys.passwords.push(Credential {
                login: p["login"].as_str().map(|l| l.as_bytes().to_vec()),
                password: password_bytes(&p["password"])?,
            });
        }
        let temps = json["ephemeral_keys"].as_array().into_iter().flatten();
        for t in temps.chain(json["temp_private_keys"].as_array().into_iter().flatten()) {
            let text = t
                .as_str()
                .or_else(|| t["private_key"].as_str())
                .ok_or_else(|| anyhow!("temporary key entry without a private key"))?;
            let secret = *PrivateKey::from_hex(text)?.as_bytes();
            keys.temp.insert(raw::public_of(&secret), secret);
        }
        keys.admin_ports = json["admin_ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_u64().and_then(|p| u16::try_from(p).ok()))
            .collect();
        Ok(keys)
    }

    /// The node with this scenario name.
    pub fn node(&self, name: &str) -> Option<&NodeKeys> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The nodes, in the scenario's order.
    pub fn nodes(&self) -> &[NodeKeys] {
        &self.nodes
    }

    /// The name of the node with this permanent public key.
    pub fn name_of_key(&self, key: &[u8; 32]) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.public.as_bytes() == key)
            .map(|n| n.name.as_str())
    }

    /// The name of the node at this address (`ip:port`, or a MAC in any case).
    pub fn name_of_addr(&self, addr: &str) -> Option<&str> {
        let i = *self.by_addr.get(&addr.to_ascii_lowercase())?;
        self.nodes.get(i).map(|n| n.name.as_str())
    }

    /// Whether this UDP port is an admin port of the scenario.
    pub fn is_admin_port(&self, port: u16) -> bool {
        self.admin_ports.contains(&port)
    }

    /// The temporary private key of this temporary public key, if the scenario has it.
    pub fn temp_secret(&self, public: &[u8; 32]) -> Option<[u8; 32]> {
        self.temp.get(public).copied()
    }

    /// The credentials whose lookup matches a handshake's auth challenge: auth type 1 by
    /// SHA-256(SHA-256(password)), type 2 by SHA-256(login); several beacon passwords share the
    /// login `Local Peers`, so more than one may match.
    pub fn matching(&self, auth: &AuthChallenge) -> Vec<&Credential> {
        let lookup = |b: &[u8]| -> bool { b.get(1..8) == Some(&auth.lookup[..]) };
        self.passwords
            .iter()
            .filter(|c| match auth.auth_type {
                AuthType::Password => lookup(&Sha256::digest(Sha256::digest(&c.password))),
                AuthType::Login => c.login.as_ref().is_some_and(|l| lookup(&Sha256::digest(l))),
                _ => false,
            })
            .collect()
    }

    /// A beacon's password (login `Local Peers`), learnt when the beacon is seen.
    pub fn learn_beacon_password(&mut self, password: &[u8; PASSWORD_LEN]) {
        let c = Credential {
            login: Some(LOCAL_PEERS_LOGIN.to_vec()),
            password: password.to_vec(),
        };
        if !self.passwords.contains(&c) {
            self.passwords.push(c);
        }
    }

    /// The node's CryptoAuth with every credential of the scenario as a user (Noise PSKs).
    pub fn cryptoauth_of(&self, node: &NodeKeys) -> CryptoAuth {
        let mut ca = CryptoAuth::new(node.private.clone());
        for c in &self.passwords {
            // A duplicate or unusable credential only means one user fewer to try.
            let _ = ca.add_user(&c.password, c.login.as_deref(), None);
        }
        ca
    }
}
