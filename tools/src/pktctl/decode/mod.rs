//! `pktctl decode <capture> --keys <scenario.json>`: a passive decoder of cjdns traffic that
//! opens every layer an observer holding the scenario's keys can open, one JSON object per
//! captured frame.
//!
//! Layers, outside in (each a nested object, absent when the frame does not have it):
//!
//! | field | what |
//! |---|---|
//! | `frame`, `time`, `t_rel`, `src`, `dst` | frame number, capture time (s), time since the first frame, addresses (`ip:port` or MAC) |
//! | `udp_payload_len` / `frame_len`, `eth_*` | UDP payload size; or an Ethernet frame's size and its cjdns frame header |
//! | `from`, `to` | the scenario's names of the sending and receiving node |
//! | `outer` | the link's CryptoAuth packet: `type` (`HELLO`, `REPEAT_HELLO`, `KEY`, `REPEAT_KEY`, `DATA`, or `NOISE_*`), auth challenge, nonce, the sender's keys, how it was opened, `plaintext_hex` |
//! | `switch` | the switch header (`label`, `congest`, `suppress_errors`, `version`, `label_shift`, `traffic_class`, return path) |
//! | `switch.control` | a control message (`PING`, `PONG`, `KEYPING`, `GETSNODE_*`, `RPATH_*`, `LLADDR_*`, `ERROR`) with checksum and fields |
//! | `switch.inner` | the end-to-end session packet (`INNER_HELLO` … `INNER_DATA`): handles, nonce, how it was opened, `plaintext_hex` |
//! | `switch.inner.payload` | DataHeader, content type and content: CJDHT (bencode, query or reply, node list), ICMPv6, TCP, UDP |
//! | `beacon` | a UDP or Ethernet beacon (version, password, key) |
//! | `type: "ADMIN"`, `bencode` | an admin RPC datagram (to or from a scenario's `admin_ports`) |
//! | `other` | a frame that is not cjdns traffic |
//! | `error` (at any level) | why that layer could not be opened |
//!
//! The field names and formats are those of the captures' reference decoding
//! (`shared/vectors/cjdns-captures/*/decoded-*.json`), so the two compare field for field; see
//! `docs/decode.md`. Data packets are keyed with the sessions' temporary keys: forward secrecy
//! means they open only when the scenario lists a recovered temporary private key of the
//! session (`ephemeral_keys`); otherwise the layer gets an `error` saying so.

mod cryptoauth;
mod fields;
mod noise;
mod pcap;
mod scenario;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use pktmesh_switch::header::SwitchHeader;
use serde_json::{json, Value};

use cryptoauth::{open_data, open_handshake, stage_name, HandshakeLog, Obj};
pub use pcap::{parse_frames, read_frames, read_pcap, CaptureFrame, Link, UdpDatagram};
pub use scenario::Keys;

/// Arguments of `pktctl decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The pcap or pcapng file (Ethernet, Linux cooked or raw IP link types; UDP over
    /// IPv4/IPv6, cjdns Ethernet frames).
    pub capture: std::path::PathBuf,
    /// The scenario.json with the nodes' keys, addresses and passwords.
    #[arg(long)]
    pub keys: std::path::PathBuf,
}

/// A session between two nodes, whichever way round.
type Pair = (String, String);

fn pair(a: &str, b: &str) -> Pair {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

fn set(d: &mut Obj, k: &str, v: impl Into<Value>) {
    d.insert(k.to_owned(), v.into());
}

/// A passive decoder over the frames of one capture, in order.
#[derive(Debug)]
pub struct Decoder {
    keys: Keys,
    /// Outer (link) sessions by the two link addresses.
    outer: HashMap<Pair, HandshakeLog>,
    /// Inner (end-to-end) sessions by the two node names.
    inner: HashMap<Pair, HandshakeLog>,
    /// Inner receive handle → (the node that chose it, its peer).
    handles: HashMap<u32, (String, String)>,
    noise: noise::NoiseLinks,
    /// Capture time of the first frame, µs.
    first: Option<u64>,
}

impl Decoder {
    /// A decoder with these keys.
    pub fn new(keys: Keys) -> Self {
        Self {
            keys,
            outer: HashMap::new(),
            inner: HashMap::new(),
            handles: HashMap::new(),
            noise: noise::NoiseLinks::default(),
            first: None,
        }
    }

    /// Decode one frame (frames must come in capture order: sessions are learnt from their
    /// handshakes).
    pub fn decode(&mut self, f: &CaptureFrame) -> Value {
        let first = *self.first.get_or_insert(f.micros);
        let mut rec = Obj::new();
        set(&mut rec, "frame", f.number);
        set(&mut rec, "time", f.micros as f64 / 1e6);
        set(
            &mut rec,
            "t_rel",
            f.micros.saturating_sub(first) as f64 / 1e6,
        );
        match &f.link {
            Link::Udp { src, dst, payload } => {
                let (s, d) = (src.to_string(), dst.to_string());
                set(&mut rec, "src", s.clone());
                set(&mut rec, "dst", d.clone());
                set(&mut rec, "udp_payload_len", payload.len());
                if self.keys.is_admin_port(src.port()) || self.keys.is_admin_port(dst.port()) {
                    fields::admin(payload, &mut rec);
                } else if payload.starts_with(&pktmesh_node::beacon::BEACON_MAGIC)
                    && payload.len() == pktmesh_node::beacon::BEACON_LEN
                {
                    let (b, parsed) = fields::udp_beacon(payload, &self.keys);
                    if let Some(p) = parsed {
                        self.keys.learn_beacon_password(&p.password);
                    }
                    set(&mut rec, "beacon", b);
                } else {
                    self.outer(&s, &d, payload, f.number, &mut rec);
                }
            }
            Link::Eth { src, dst, payload } => {
                let s = pktmesh_node::eth::mac_text(src);
                let d = dst.map(|m| pktmesh_node::eth::mac_text(&m));
                set(&mut rec, "src", s.clone());
                set(&mut rec, "dst", d.clone().unwrap_or_default());
                set(&mut rec, "frame_len", f.len);
                self.eth(&s, d.as_deref(), payload, f.number, &mut rec);
            }
            Link::Other {
                ethertype,
                ip_proto,
            } => {
                let mut o = Obj::new();
                if let Some(e) = ethertype {
                    set(&mut o, "ethertype", *e);
                }
                if let Some(p) = ip_proto {
                    set(&mut o, "ip_proto", *p);
                }
                set(&mut rec, "other", o);
            }
        }
        Value::Object(rec)
    }

    /// An ETHInterface frame: its header, then a beacon (to the broadcast address) or a link
    /// packet.
    fn eth(&mut self, src: &str, dst: Option<&str>, payload: &[u8], frame: usize, rec: &mut Obj) {
        if let Some(h) = payload.first_chunk::<6>() {
            set(rec, "eth_header", fields::hex(h));
            set(rec, "eth_version", h[0]);
            set(rec, "eth_len", u16::from_be_bytes([h[2], h[3]]));
            set(rec, "eth_magic", fields::hex(&h[4..]));
        }
        let body = match pktmesh_node::eth::payload(payload) {
            Ok(b) => b,
            Err(e) => {
                set(rec, "error", e.to_string());
                return;
            }
        };
        let broadcast = pktmesh_node::eth::mac_text(&pktmesh_node::eth::BROADCAST);
        match dst {
            Some(d) if d == broadcast => {
                let (b, parsed) = fields::eth_beacon(body, &self.keys);
                if let Some(p) = parsed {
                    self.keys.learn_beacon_password(&p.password);
                }
                set(rec, "beacon", b);
            }
            Some(d) => self.outer(src, d, body, frame, rec),
            None => set(rec, "error", "no destination MAC in this capture"),
        }
    }

    /// A link packet between two link addresses: CryptoAuth (or Noise), then the switch.
    fn outer(&mut self, src: &str, dst: &str, payload: &[u8], frame: usize, rec: &mut Obj) {
        let sender = self.keys.name_of_addr(src).map(str::to_owned);
        let receiver = self.keys.name_of_addr(dst).map(str::to_owned);
        set(rec, "from", json!(sender));
        set(rec, "to", json!(receiver));
        let (Some(sender), Some(receiver)) = (sender, receiver) else {
            set(rec, "error", "unknown endpoint");
            return;
        };
        let Some(word) = payload.first_chunk::<4>().map(|w| u32::from_be_bytes(*w)) else {
            set(rec, "error", "runt datagram");
            return;
        };
        let (mut od, plain) = if word == u32::MAX {
            let od = self
                .noise
                .handshake(&self.keys, (src, &sender), (dst, &receiver), payload);
            (od, None)
        } else if let Some(opened) = self.noise.data(src, dst, payload) {
            opened
        } else {
            let log = self.outer.entry(pair(src, dst)).or_default();
            if word <= 3 {
                let (od, opened) =
                    open_handshake(&self.keys, payload, Some(&sender), &[&receiver], log);
                match opened {
                    Some(o) => {
                        log.record(word, &sender, o.temp, frame);
                        (od, Some(o.payload))
                    }
                    None => (od, None),
                }
            } else {
                open_data(&self.keys, payload, &sender, log)
            }
        };
        if let Some(plain) = plain.filter(|p| !p.is_empty()) {
            set(&mut od, "plaintext_hex", fields::hex(&plain));
            set(rec, "outer", od);
            let sw = self.switch(&plain, frame);
            set(rec, "switch", sw);
        } else {
            set(rec, "outer", od);
        }
    }

    /// The switch header and what it carries.
    fn switch(&mut self, pkt: &[u8], frame: usize) -> Obj {
        let mut d = Obj::new();
        let Ok(hdr) = SwitchHeader::new_checked(pkt) else {
            set(&mut d, "error", "runt switch packet");
            return d;
        };
        let label = hdr.label();
        set(&mut d, "label", fields::label_text(label));
        set(&mut d, "congest", hdr.congestion());
        set(&mut d, "suppress_errors", u8::from(hdr.suppress_errors()));
        set(&mut d, "version", hdr.version());
        set(&mut d, "label_shift", hdr.label_shift());
        set(
            &mut d,
            "traffic_class",
            format!("{:04x}", hdr.traffic_class()),
        );
        let to_router = label & 0xf == 1;
        set(&mut d, "to_router_of_receiver", to_router);
        if to_router {
            set(
                &mut d,
                "return_path_bitrev",
                fields::label_text(label.reverse_bits()),
            );
        }
        let rest = hdr.payload();
        let Some(word) = rest.first_chunk::<4>().map(|w| u32::from_be_bytes(*w)) else {
            set(&mut d, "error", "no payload");
            return d;
        };
        if word == u32::MAX {
            set(&mut d, "control", fields::control(&rest[4..], &self.keys));
        } else if word <= 3 {
            let inner = self.inner_handshake(rest, word, frame);
            set(&mut d, "inner", inner);
        } else {
            let inner = self.inner_data(rest);
            set(&mut d, "inner", inner);
        }
        d
    }

    /// An end-to-end handshake: the sender is the node its header names; the receiver is
    /// whichever other node opens it.
    fn inner_handshake(&mut self, msg: &[u8], word: u32, frame: usize) -> Obj {
        let name = format!("INNER_{}", stage_name(word));
        let key = msg
            .get(40..72)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .unwrap_or_default();
        let Some(sender) = self.keys.name_of_key(&key).map(str::to_owned) else {
            let mut d = Obj::new();
            set(&mut d, "type", name);
            set(
                &mut d,
                "error",
                format!("unknown sender key {}", fields::key_text(&key)),
            );
            return d;
        };
        let others: Vec<String> = self
            .keys
            .nodes()
            .iter()
            .map(|n| n.name.clone())
            .filter(|n| *n != sender)
            .collect();
        let mut last = Obj::new();
        for recv in &others {
            let log = self.inner.entry(pair(&sender, recv)).or_default();
            let (mut d, opened) = open_handshake(&self.keys, msg, Some(&sender), &[recv], log);
            let Some(o) = opened else {
                last = d;
                continue;
            };
            log.record(word, &sender, o.temp, frame);
            set(&mut d, "type", name);
            set(&mut d, "from", sender.clone());
            set(&mut d, "to", o.receiver.clone());
            set(&mut d, "plaintext_hex", fields::hex(&o.payload));
            let Some((handle, rest)) = o.payload.split_first_chunk::<4>() else {
                set(&mut d, "error", "handshake without a handle");
                return d;
            };
            let handle = u32::from_be_bytes(*handle);
            set(&mut d, "sender_handle", handle);
            self.handles.insert(handle, (sender.clone(), o.receiver));
            set(&mut d, "payload", fields::data_header(rest, &self.keys));
            return d;
        }
        set(&mut last, "type", name);
        last
    }

    /// End-to-end data: `[receiver handle][nonce][tag][ciphertext]`.
    fn inner_data(&mut self, msg: &[u8]) -> Obj {
        let mut d = Obj::new();
        set(&mut d, "type", "INNER_DATA");
        let (Some(handle), Some(nonce)) = (
            msg.first_chunk::<4>().map(|h| u32::from_be_bytes(*h)),
            msg.get(4..8)
                .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]])),
        ) else {
            set(&mut d, "error", "runt inner data");
            return d;
        };
        set(&mut d, "receiver_handle", handle);
        set(&mut d, "nonce", nonce);
        set(&mut d, "len", msg.len());
        let Some((owner, peer)) = self.handles.get(&handle).cloned() else {
            set(&mut d, "error", "unknown handle");
            return d;
        };
        set(&mut d, "from", peer.clone());
        set(&mut d, "to", owner.clone());
        let Some(log) = self.inner.get(&pair(&owner, &peer)) else {
            set(&mut d, "error", "no inner session");
            return d;
        };
        let (opened, plain) = open_data(&self.keys, &msg[4..], &peer, log);
        for (k, v) in opened {
            if k != "type" && k != "len" {
                d.insert(k, v);
            }
        }
        if let Some(plain) = plain {
            set(&mut d, "plaintext_hex", fields::hex(&plain));
            set(&mut d, "payload", fields::data_header(&plain, &self.keys));
        }
        d
    }
}

/// Decode a whole capture: one JSON object per frame.
pub fn decode_capture(capture: &Path, scenario: &Path) -> Result<Vec<Value>> {
    let text = std::fs::read_to_string(scenario)
        .with_context(|| format!("read {}", scenario.display()))?;
    let json: Value = serde_json::from_str(&text).context("scenario is not JSON")?;
    let mut decoder = Decoder::new(Keys::from_scenario(&json)?);
    Ok(read_frames(capture)?
        .iter()
        .map(|f| decoder.decode(f))
        .collect())
}

/// Run `pktctl decode`: print one JSON object per frame, one per line; exit non-zero only when
/// the capture or the scenario cannot be read.
pub fn main(args: &DecodeArgs) -> std::process::ExitCode {
    match decode_capture(&args.capture, &args.keys) {
        Ok(records) => {
            for r in records {
                println!("{r}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
