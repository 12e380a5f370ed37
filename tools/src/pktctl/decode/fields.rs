//! What the decrypted layers say, as JSON fields: switch control messages, the DataHeader and
//! its content (CJDHT, ICMPv6, TCP, UDP), admin RPC datagrams and beacons.
//!
//! Each function reads one layer through pktmesh's own parsers (the switch crate's control
//! messages, the node crate's bencode, DHT messages and beacons), so that comparing this
//! output with the captures' reference decoding checks those parsers. Field names and
//! formats are the reference decoding's (`decoded-*.json`): hex strings for bytes, labels as
//! `xxxx.xxxx.xxxx.xxxx`, keys as `….k`, bencode rendered with printable strings as JSON
//! strings and other byte strings as `0x…`.

use pktmesh_crypto_auth::PublicKey;
use pktmesh_node::beacon::Beacon;
use pktmesh_node::bencode::{self, Value as Bencode};
use pktmesh_node::dht::message::{Body, Message, Query};
use pktmesh_switch::control::{checksum, ControlMessage, ControlType, LinkAddress};
use serde_json::{json, Value};

use super::cryptoauth::Obj;
use super::scenario::Keys;

/// Lower-case hex.
pub(super) fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// Bytes as Latin-1 text (how the reference decoding prints passwords and prefixes).
pub(super) fn latin1(b: &[u8]) -> String {
    b.iter().map(|&c| char::from(c)).collect()
}

/// A label as `xxxx.xxxx.xxxx.xxxx` (zero included).
pub(super) fn label_text(x: u64) -> String {
    format!(
        "{:04x}.{:04x}.{:04x}.{:04x}",
        x >> 48,
        (x >> 32) & 0xffff,
        (x >> 16) & 0xffff,
        x & 0xffff
    )
}

/// A public key as `….k`.
pub(super) fn key_text(k: &[u8; 32]) -> String {
    PublicKey::from_bytes(*k).to_string()
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*b.get(at..)?.first_chunk::<2>()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(at..)?.first_chunk::<4>()?))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(*b.get(at..)?.first_chunk::<8>()?))
}

fn prefix(b: &[u8], n: usize) -> &[u8] {
    &b[..b.len().min(n)]
}

fn printable(b: &[u8]) -> bool {
    b.iter().all(|&c| (32..127).contains(&c))
}

fn set(d: &mut Obj, k: &str, v: impl Into<Value>) {
    d.insert(k.to_owned(), v.into());
}

/// A bencoded value rendered compactly: dicts and lists in their order, printable strings as
/// JSON strings, other strings as `0x…`.
pub(super) fn bencode_text(v: &Bencode) -> String {
    match v {
        Bencode::Int(i) => i.to_string(),
        Bencode::Bytes(b) => bytes_text(b),
        Bencode::List(l) => {
            let items: Vec<String> = l.iter().map(bencode_text).collect();
            format!("[{}]", items.join(", "))
        }
        Bencode::Dict(d) => {
            let items: Vec<String> = d
                .iter()
                .map(|(k, v)| format!("{}: {}", bytes_text(k), bencode_text(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn bytes_text(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if printable(b) => Value::from(s).to_string(),
        _ => format!("0x{}", hex(b)),
    }
}

/// A switch control message: `c` is what follows the `FFFFFFFF` marker (checksum, type, body).
pub(super) fn control(c: &[u8], keys: &Keys) -> Obj {
    let mut d = Obj::new();
    let (Some(sum), Some(kind)) = (be16(c, 0), be16(c, 2)) else {
        set(&mut d, "error", "short control");
        return d;
    };
    let kind = ControlType(kind);
    set(
        &mut d,
        "type",
        kind.name()
            .map_or_else(|| format!("type{}", kind.0), str::to_owned),
    );
    set(&mut d, "checksum", format!("{sum:04x}"));
    set(&mut d, "checksum_ok", checksum(c) == 0);
    set(&mut d, "len", c.len() + 4);
    let body = &c[4..];
    let magic = hex(prefix(body, 4));
    let msg = match ControlMessage::parse_unverified(c) {
        Ok(m) => m,
        Err(e) => {
            set(&mut d, "error", e.to_string());
            return d;
        }
    };
    match msg {
        ControlMessage::Ping(p) | ControlMessage::Pong(p) => {
            set(&mut d, "magic", magic);
            set(&mut d, "version", p.version);
            set(&mut d, "data", hex(p.data));
            if let Some((handle, rest)) = p.data.split_first_chunk::<4>() {
                if let Some((cookie, user)) = rest.split_first_chunk::<8>() {
                    set(&mut d, "data_handle_le", u32::from_le_bytes(*handle));
                    set(&mut d, "data_cookie", hex(cookie));
                    let user = if printable(user) {
                        latin1(user)
                    } else {
                        hex(user)
                    };
                    set(&mut d, "data_user", user);
                }
            }
        }
        ControlMessage::KeyPing(k) | ControlMessage::KeyPong(k) => {
            set(&mut d, "magic", magic);
            set(&mut d, "version", k.version);
            set(&mut d, "key", key_text(&k.key));
            set(&mut d, "key_node", json!(keys.name_of_key(&k.key)));
            set(&mut d, "data", hex(k.data));
        }
        ControlMessage::RPathQuery(r) | ControlMessage::RPathReply(r) => {
            set(&mut d, "magic", magic);
            set(&mut d, "version", r.version);
            set(&mut d, "rpath", label_text(r.rpath));
        }
        ControlMessage::GetSnodeQuery(g) | ControlMessage::GetSnodeReply(g) => {
            set(&mut d, "magic", magic);
            set(&mut d, "version", g.version);
            set(&mut d, "snode_version", g.snode_version);
            set(&mut d, "kbps", format!("{:08x}", g.kbps));
            set(&mut d, "snode_key", hex(&g.snode_key));
            set(&mut d, "path_to_snode", label_text(g.path_to_snode));
        }
        ControlMessage::LlAddrQuery(l) | ControlMessage::LlAddrReply(l) => {
            set(&mut d, "magic", magic);
            set(&mut d, "version", l.version);
            // The typed view checked the length; type and length are its first two bytes.
            set(&mut d, "addr_type", body.get(8).copied().unwrap_or(0));
            set(&mut d, "addr_len", body.get(9).copied().unwrap_or(0));
            match l.addr {
                LinkAddress::Udp4 { port, addr } => {
                    let ip = std::net::Ipv4Addr::from(addr);
                    set(&mut d, "lladdr", format!("{ip}:{port}"));
                }
                _ => set(&mut d, "addr_raw", hex(body.get(8..40).unwrap_or_default())),
            }
        }
        ControlMessage::Error { code, cause } => {
            set(
                &mut d,
                "error_type",
                code.name().map_or_else(|| json!(code.0), |n| json!(n)),
            );
            set(&mut d, "cause_hex", hex(cause));
            if let Some(l) = be64(cause, 0).filter(|_| cause.len() >= 12) {
                set(&mut d, "cause_label", label_text(l));
            }
        }
        ControlMessage::Unknown { .. } => {}
    }
    d
}

/// The name the reference decoding gives a content type.
fn content_name(ct: u16) -> String {
    match ct {
        58 => "ICMPv6".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        256 => "CJDHT".into(),
        257 => "IPTUN".into(),
        other => other.to_string(),
    }
}

/// A DataHeader and what follows it.
pub(super) fn data_header(b: &[u8], keys: &Keys) -> Obj {
    let mut d = Obj::new();
    let (Some(head), Some(ct)) = (b.get(..4), pktmesh_node::ipv6::read_data_header(b)) else {
        set(&mut d, "error", "short");
        return d;
    };
    set(&mut d, "dataheader", hex(head));
    set(&mut d, "version", head[0] >> 4);
    set(&mut d, "content_type", ct);
    set(&mut d, "content", content_name(ct));
    set(&mut d, "content_len", b.len() - 4);
    let p = &b[4..];
    match ct {
        256 => dht(p, keys, &mut d),
        58 => {
            if let Some(i) = icmp6(p) {
                set(&mut d, "icmp6", i);
            }
        }
        6 => {
            if let Some(t) = tcp(p) {
                set(&mut d, "tcp", t);
            }
        }
        17 => {
            if let (Some(sport), Some(dport), Some(len)) = (be16(p, 0), be16(p, 2), be16(p, 4)) {
                set(
                    &mut d,
                    "udp",
                    json!({"sport": sport, "dport": dport, "len": len}),
                );
            }
        }
        _ => set(&mut d, "raw_prefix", hex(prefix(p, 32))),
    }
    d
}

/// A CJDHT message: its bencode, and what pktmesh's DHT parser makes of it.
fn dht(p: &[u8], keys: &Keys, d: &mut Obj) {
    let (value, used) = match bencode::parse_prefix(p) {
        Ok(v) => v,
        Err(e) => {
            set(d, "bencode_error", e.to_string());
            set(d, "raw", hex(p));
            return;
        }
    };
    set(d, "bencode", bencode_text(&value));
    set(d, "bencode_raw_prefix", latin1(prefix(p, 12)));
    if used != p.len() {
        set(d, "trailing", p.len() - used);
    }
    let msg = match Message::parse(p) {
        Ok(m) => m,
        Err(e) => {
            set(d, "dht_error", e.to_string());
            return;
        }
    };
    let dict = value.as_dict();
    match msg.body {
        Body::Query(q) => {
            let name = match q {
                Query::Ping => "pn".to_owned(),
                Query::FindNode(_) => "fn".to_owned(),
                Query::GetPeers(_) => "gp".to_owned(),
                Query::NextHop(_) => "nh".to_owned(),
                Query::Other { q, .. } => latin1(&q),
            };
            set(d, "dht", format!("query {name}"));
        }
        Body::Reply(r) => {
            set(d, "dht", "reply");
            if dict.is_some_and(|d| d.get_bytes("n").is_some()) {
                let nodes: Vec<String> = r
                    .nodes
                    .iter()
                    .map(|n| {
                        let k = n.key.to_string();
                        format!(
                            "{}({})@{}",
                            keys.name_of_key(n.key.as_bytes()).unwrap_or("?"),
                            &k[..8],
                            label_text(n.label)
                        )
                    })
                    .collect();
                set(d, "dht_nodes", nodes);
            }
            if dict.is_some_and(|d| d.get_bytes("np").is_some_and(|np| !np.is_empty())) {
                let versions: Vec<u32> = r.nodes.iter().map(|n| n.version).collect();
                set(d, "dht_versions", versions);
            }
            if let Some(e) = r.node_list_error {
                set(d, "dht_error", e.to_string());
            }
        }
    }
}

fn icmp6(p: &[u8]) -> Option<Value> {
    let mut d = Obj::new();
    let (&kind, &code) = (p.first()?, p.get(1)?);
    set(&mut d, "type", kind);
    set(&mut d, "code", code);
    set(&mut d, "checksum", hex(p.get(2..4)?));
    if kind == 128 || kind == 129 {
        set(
            &mut d,
            "echo",
            if kind == 128 { "request" } else { "reply" },
        );
        set(&mut d, "id", be16(p, 4)?);
        set(&mut d, "seq", be16(p, 6)?);
        set(&mut d, "data_len", p.len() - 8);
        set(&mut d, "data_prefix", hex(prefix(&p[8..], 16)));
    }
    Some(Value::Object(d))
}

fn tcp(p: &[u8]) -> Option<Value> {
    let (offset, flags) = (*p.get(12)?, *p.get(13)?);
    let header = usize::from(offset >> 4) * 4;
    let names = [(2, 'S'), (16, 'A'), (8, 'P'), (1, 'F'), (4, 'R')];
    let flags: String = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|&(_, c)| c)
        .collect();
    let payload = p.get(header..).unwrap_or_default();
    Some(json!({
        "sport": be16(p, 0)?,
        "dport": be16(p, 2)?,
        "seq": be32(p, 4)?,
        "ack": be32(p, 8)?,
        "flags": flags,
        "payload_len": payload.len(),
        "payload_prefix": hex(prefix(payload, 16)),
    }))
}

/// An admin RPC datagram (one bencoded dictionary).
pub(super) fn admin(payload: &[u8], d: &mut Obj) {
    set(d, "type", "ADMIN");
    set(d, "len", payload.len());
    set(d, "raw_prefix", latin1(prefix(payload, 24)));
    match bencode::parse_prefix(payload) {
        Ok((v, used)) => {
            set(d, "bencode", bencode_text(&v));
            if used != payload.len() {
                set(d, "trailing", payload.len() - used);
            }
        }
        Err(e) => set(d, "bencode_error", e.to_string()),
    }
}

/// A UDP beacon (`FF FF FF FC`, 64 bytes); the parsed beacon, if it is one.
pub(super) fn udp_beacon(payload: &[u8], keys: &Keys) -> (Obj, Option<Beacon>) {
    let mut d = Obj::new();
    set(&mut d, "type", "UDP_BEACON");
    match Beacon::parse(payload) {
        Ok(b) => {
            set(&mut d, "magic", hex(&payload[..4]));
            set(&mut d, "iface_version", payload[4]);
            set(&mut d, "comm_port", b.data_port);
            beacon_body(&b, keys, &mut d);
            (d, Some(b))
        }
        Err(e) => {
            set(&mut d, "error", e.to_string());
            (d, None)
        }
    }
}

/// An Ethernet beacon's body (56 bytes); the parsed beacon, if it is one.
pub(super) fn eth_beacon(body: &[u8], keys: &Keys) -> (Obj, Option<Beacon>) {
    let mut d = Obj::new();
    set(&mut d, "type", "ETH_BEACON");
    set(&mut d, "len", body.len());
    match Beacon::parse_body(body) {
        Ok(b) => {
            beacon_body(&b, keys, &mut d);
            (d, Some(b))
        }
        Err(e) => {
            set(&mut d, "error", e.to_string());
            (d, None)
        }
    }
}

fn beacon_body(b: &Beacon, keys: &Keys, d: &mut Obj) {
    set(d, "beacon_version", b.version);
    set(d, "password", latin1(&b.password));
    set(d, "key", b.key.to_string());
    set(d, "key_node", json!(keys.name_of_key(b.key.as_bytes())));
}
