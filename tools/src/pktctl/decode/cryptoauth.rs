//! Opening legacy CryptoAuth packets as an observer that holds the scenario's keys.
//!
//! - A HELLO opens with the receiver's permanent secret and the sender's permanent key (mixed
//!   with SHA-256(password) when the auth challenge names one of the scenario's credentials).
//! - A KEY opens with the *sender's* permanent secret and the temporary key of a HELLO the
//!   receiver sent earlier in the session: X25519 is symmetric, so this is the key the initiator
//!   computes with its temporary secret.
//! - DATA is keyed with beforenm(one temporary secret, the other temporary public key), which
//!   only the scenario's recovered temporary secrets give (forward secrecy). Every pairing of a
//!   HELLO and a KEY from the other side is a candidate, the latest first.
//!
//! The JSON fields are those of the captures' reference decoding (`decoded-*.json`).

use pktmesh_crypto_auth::legacy::{raw, AuthType, HandshakeHeader};
use pktmesh_crypto_auth::PublicKey;
use serde_json::{json, Map, Value};

use super::fields::{hex, latin1};
use super::scenario::{Credential, Keys};

/// A JSON object under construction.
pub(super) type Obj = Map<String, Value>;

/// The stage names of handshake words 0..=3.
pub(super) fn stage_name(word: u32) -> &'static str {
    match word {
        0 => "HELLO",
        1 => "REPEAT_HELLO",
        2 => "KEY",
        _ => "REPEAT_KEY",
    }
}

/// A temporary key seen in a handshake.
#[derive(Debug, Clone)]
struct Seen {
    sender: String,
    temp: [u8; 32],
    frame: usize,
}

/// The handshakes seen in one session (an outer link, or an inner session between two nodes).
#[derive(Debug, Clone, Default)]
pub(super) struct HandshakeLog {
    hellos: Vec<Seen>,
    keys: Vec<Seen>,
}

/// A data key to try, and who initiated the handshake it comes from.
struct Candidate {
    secret: [u8; 32],
    initiator: String,
    what: String,
}

impl HandshakeLog {
    /// Remember the temporary key of an opened handshake (once per key).
    pub(super) fn record(&mut self, word: u32, sender: &str, temp: [u8; 32], frame: usize) {
        let list = if word < 2 {
            &mut self.hellos
        } else {
            &mut self.keys
        };
        if !list.iter().any(|s| s.temp == temp) {
            list.push(Seen {
                sender: sender.to_owned(),
                temp,
                frame,
            });
        }
    }

    fn candidates(&self, keys: &Keys) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = Vec::new();
        for h in self.hellos.iter().rev() {
            for k in self.keys.iter().rev().filter(|k| k.sender != h.sender) {
                let secret = match (keys.temp_secret(&h.temp), keys.temp_secret(&k.temp)) {
                    (Some(s), _) => raw::beforenm(&s, &k.temp),
                    (None, Some(s)) => raw::beforenm(&s, &h.temp),
                    (None, None) => None,
                };
                let Some(secret) = secret else { continue };
                if !out
                    .iter()
                    .any(|c| c.secret == secret && c.initiator == h.sender)
                {
                    out.push(Candidate {
                        secret,
                        initiator: h.sender.clone(),
                        what: format!("HELLO#{} x KEY#{}", h.frame, k.frame),
                    });
                }
            }
        }
        out
    }
}

/// An opened handshake.
#[derive(Debug)]
pub(super) struct Opened {
    /// The node that opened it.
    pub(super) receiver: String,
    /// The sender's temporary public key.
    pub(super) temp: [u8; 32],
    /// What follows the temporary key in the box.
    pub(super) payload: Vec<u8>,
}

/// Open handshake `msg` sent by `sender` (or by the node its header names) to one of
/// `receivers`, within the session `log`.
pub(super) fn open_handshake(
    keys: &Keys,
    msg: &[u8],
    sender: Option<&str>,
    receivers: &[&str],
    log: &HandshakeLog,
) -> (Obj, Option<Opened>) {
    let mut d = Obj::new();
    let Some(hdr) = HandshakeHeader::parse(msg) else {
        d.insert("error".into(), "runt handshake".into());
        return (d, None);
    };
    let word = hdr.stage;
    let auth = hdr.auth.to_bytes();
    let named = keys.name_of_key(&hdr.public_key);
    d.insert("type".into(), stage_name(word).into());
    d.insert("auth_type".into(), auth[0].into());
    d.insert("auth_lookup".into(), hex(&auth[1..8]).into());
    d.insert("auth_flags".into(), hex(&auth[8..12]).into());
    d.insert("handshake_nonce".into(), hex(&hdr.nonce).into());
    d.insert(
        "perm_key".into(),
        PublicKey::from_bytes(hdr.public_key).to_string().into(),
    );
    d.insert("len".into(), msg.len().into());
    d.insert("perm_key_node".into(), json!(named));
    let sender = match (sender, named) {
        (Some(s), n) => {
            if n != Some(s) {
                d.insert(
                    "warning".into(),
                    "permanent key field is not the sender's key".into(),
                );
            }
            s
        }
        (None, Some(n)) => n,
        (None, None) => {
            d.insert("error".into(), "unknown sender key".into());
            return (d, None);
        }
    };
    let credentials: Vec<Option<&Credential>> = match hdr.auth.auth_type {
        AuthType::Password | AuthType::Login => {
            let found = keys.matching(&hdr.auth);
            if found.is_empty() {
                d.insert("error".into(), "unknown password lookup".into());
                return (d, None);
            }
            found.into_iter().map(Some).collect()
        }
        _ => vec![None],
    };
    let (Some(sender_node), true) = (keys.node(sender), msg.len() > 72) else {
        d.insert("error".into(), "could not open handshake box".into());
        return (d, None);
    };
    let is_hello = word < 2;
    for &recv in receivers.iter().filter(|&&r| r != sender) {
        let Some(recv_node) = keys.node(recv) else {
            continue;
        };
        // HELLO: S(receiver's permanent secret, sender's permanent key).
        // KEY: S(sender's permanent secret, a temporary key of the receiver's HELLO).
        let (secret, peers): (&[u8; 32], Vec<[u8; 32]>) = if is_hello {
            (
                recv_node.private.as_bytes(),
                vec![*sender_node.public.as_bytes()],
            )
        } else {
            (
                sender_node.private.as_bytes(),
                log.hellos
                    .iter()
                    .rev()
                    .filter(|h| h.sender == recv)
                    .map(|h| h.temp)
                    .collect(),
            )
        };
        for cred in &credentials {
            let pw_hash = cred.map(|c| raw::password_hash(&c.password));
            for peer in &peers {
                let Some(k) = raw::shared_secret(secret, peer, pw_hash.as_ref()) else {
                    continue;
                };
                let mut body = msg[72..].to_vec();
                if !raw::open_box(&k, &hdr.nonce, &mut body) || body.len() < 48 {
                    continue;
                }
                d.insert("receiver".into(), recv.into());
                if let Some(c) = cred {
                    d.insert("auth_login".into(), json!(c.login.as_deref().map(latin1)));
                    d.insert("auth_password".into(), latin1(&c.password).into());
                }
                let mut temp = [0u8; 32];
                temp.copy_from_slice(&body[16..48]);
                d.insert("temp_pub".into(), hex(&temp).into());
                let derivation = match (cred.is_some(), is_hello) {
                    (true, true) => "SHA256(X25519(permPriv,permPub)||SHA256(password))",
                    (true, false) => "SHA256(X25519(respPermPriv,initTempPub)||SHA256(password))",
                    (false, true) => "beforenm(perm,perm)",
                    (false, false) => "beforenm(respPerm,initTemp)",
                };
                d.insert("key_derivation".into(), derivation.into());
                return (
                    d,
                    Some(Opened {
                        receiver: recv.to_owned(),
                        temp,
                        payload: body.split_off(48),
                    }),
                );
            }
        }
    }
    d.insert("error".into(), "could not open handshake box".into());
    (d, None)
}

/// Open a data packet (`[nonce BE 4][tag 16][ciphertext]`) that `sender` sent in the session
/// `log`; the fields name the handshakes whose keys opened it.
pub(super) fn open_data(
    keys: &Keys,
    msg: &[u8],
    sender: &str,
    log: &HandshakeLog,
) -> (Obj, Option<Vec<u8>>) {
    let mut d = Obj::new();
    d.insert("type".into(), "DATA".into());
    let Some(nonce) = msg.first_chunk::<4>().map(|n| u32::from_be_bytes(*n)) else {
        d.insert("error".into(), "runt data packet".into());
        return (d, None);
    };
    d.insert("nonce".into(), nonce.into());
    d.insert("len".into(), msg.len().into());
    if msg.len() >= 20 {
        for c in log.candidates(keys) {
            let from_initiator = c.initiator == sender;
            let mut body = msg[4..].to_vec();
            if raw::open_box(
                &c.secret,
                &raw::data_nonce(nonce, from_initiator),
                &mut body,
            ) {
                d.insert("keys".into(), c.what.into());
                d.insert(
                    "nonce_offset".into(),
                    (if from_initiator { 4 } else { 0 }).into(),
                );
                d.insert("sender_is_initiator".into(), from_initiator.into());
                return (d, Some(body.split_off(16)));
            }
        }
    }
    d.insert(
        "error".into(),
        "no data key (ephemeral private key not recovered)".into(),
    );
    (d, None)
}
