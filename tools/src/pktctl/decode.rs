//! `pktctl decode <capture.pcap> --keys <scenario.json>`: a passive decoder of cjdns/pktmesh
//! UDP traffic, one JSON object per UDP frame.
//!
//! ```text
//! {"frame":N,"src":"ip:port","dst":"ip:port","outer":"hello|repeat-hello|key|repeat-key|data|noise-…",
//!  "switch_label":"xxxx.xxxx.xxxx.xxxx","inner":"control:ping|handshake:hello|data|…",
//!  "content_type":N,"icmp6_echo_seq":N}            fields absent when not applicable
//! {"frame":N,…,"error":"…"}                        when (part of) a frame cannot be opened
//! ```
//!
//! What an observer holding the nodes' permanent private keys (and the link password) can
//! open: every HELLO (with the receiver's key), every KEY (with the sender's key and the
//! initiator's temporary public key learnt from the HELLO: X25519 is symmetric), and the same
//! for the inner end-to-end handshakes. Data packets are keyed with beforenm(temporary secret,
//! temporary public): forward secrecy means they open only when the scenario also lists a
//! temporary private key of that session (`"temp_private_keys": ["hex", …]`, optional);
//! otherwise the frame gets an `"error"` saying so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use pktmesh_crypto_auth::legacy::{raw, CryptoAuth, HandshakeHeader, PacketKind};
use pktmesh_crypto_auth::noise::{ObservedInitiation, Transport};
use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use pktmesh_switch::control::{control_frame, ControlMessage};
use pktmesh_switch::header::SwitchHeader;
use pktmesh_switch::Label;
use serde::Serialize;
use serde_json::Value;

/// Arguments of `pktctl decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The pcap or pcapng file (Ethernet, Linux cooked or raw IP link types; UDP over
    /// IPv4/IPv6).
    pub capture: std::path::PathBuf,
    /// The scenario.json with the nodes' keys, addresses and the link password.
    #[arg(long)]
    pub keys: std::path::PathBuf,
}

/// One UDP datagram of a capture.
#[derive(Debug, Clone)]
pub struct UdpDatagram {
    /// 1-based frame number in the pcap.
    pub frame: usize,
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// UDP payload.
    pub payload: Vec<u8>,
}

/// Read the UDP datagrams of a pcap or pcapng file.
pub fn read_pcap(path: &Path) -> Result<Vec<UdpDatagram>> {
    let bytes = std::fs::read(path).with_context(|| format!("open {}", path.display()))?;
    // pcapng files start with a Section Header Block, type 0x0A0D0D0A.
    if bytes.get(..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        return read_pcapng(&bytes);
    }
    let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).context("not a pcap file")?;
    let linktype = u32::from(reader.header().datalink);
    let mut out = Vec::new();
    let mut frame = 0;
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.context("truncated pcap record")?;
        frame += 1;
        push_datagram(&mut out, frame, linktype, &pkt.data)?;
    }
    Ok(out)
}

fn read_pcapng(bytes: &[u8]) -> Result<Vec<UdpDatagram>> {
    use pcap_file::pcapng::{Block, PcapNgReader};
    let mut reader = PcapNgReader::new(bytes).context("not a pcapng file")?;
    let mut out = Vec::new();
    let mut links: Vec<u32> = Vec::new();
    let mut frame = 0;
    while let Some(block) = reader.next_block() {
        let block = block.context("truncated pcapng block")?;
        let (iface, data) = match &block {
            Block::SectionHeader(_) => {
                links.clear();
                continue;
            }
            Block::InterfaceDescription(i) => {
                links.push(u32::from(i.linktype));
                continue;
            }
            Block::EnhancedPacket(p) => (p.interface_id as usize, &p.data),
            Block::SimplePacket(p) => (0, &p.data),
            _ => continue,
        };
        let linktype = *links
            .get(iface)
            .ok_or_else(|| anyhow!("packet on an undeclared interface"))?;
        frame += 1;
        push_datagram(&mut out, frame, linktype, data)?;
    }
    Ok(out)
}

fn push_datagram(
    out: &mut Vec<UdpDatagram>,
    frame: usize,
    linktype: u32,
    data: &[u8],
) -> Result<()> {
    let ip = match linktype {
        1 => {
            let mut off = 12;
            while data.get(off..off + 2) == Some(&[0x81, 0x00]) {
                off += 4;
            }
            data.get(off + 2..)
        }
        113 => data.get(16..),
        276 => data.get(20..),
        101 | 228 | 229 => Some(data),
        other => bail!("unsupported link type {other}"),
    };
    if let Some((src, dst, payload)) = ip.and_then(parse_ip_udp) {
        out.push(UdpDatagram {
            frame,
            src,
            dst,
            payload: payload.to_vec(),
        });
    }
    Ok(())
}

fn parse_ip_udp(ip: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let (src, dst, udp): (IpAddr, IpAddr, &[u8]) = match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip.first()? & 0xf) * 4;
            if *ip.get(9)? != 17 {
                return None;
            }
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            (
                Ipv4Addr::from(s).into(),
                Ipv4Addr::from(d).into(),
                ip.get(ihl..)?,
            )
        }
        6 => {
            if *ip.get(6)? != 17 {
                return None;
            }
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (
                Ipv6Addr::from(s).into(),
                Ipv6Addr::from(d).into(),
                ip.get(40..)?,
            )
        }
        _ => return None,
    };
    let port = |at: usize| {
        udp.get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let len = usize::from(port(4)?);
    Some((
        SocketAddr::new(src, port(0)?),
        SocketAddr::new(dst, port(2)?),
        udp.get(8..len)?,
    ))
}

/// A node of the scenario.
#[derive(Debug, Clone)]
struct Node {
    private: PrivateKey,
    public: PublicKey,
    udp: Option<SocketAddr>,
}

/// The keys of a scenario.json.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    nodes: Vec<Node>,
    login: Option<String>,
    passwords: Vec<String>,
    password_hashes: Vec<[u8; 32]>,
    temp_secrets: Vec<[u8; 32]>,
}

impl Keys {
    /// Parse the scenario.json format of `shared/vectors/cjdns-captures/`.
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
            let udp = n["udp"].as_str().and_then(|s| s.parse().ok());
            keys.nodes.push(Node {
                public: private.public_key(),
                private,
                udp,
            });
        }
        let mut passwords = Vec::new();
        if let Some(pw) = json["peering"]["password"].as_str() {
            passwords.push(pw.to_owned());
        }
        if let Some(list) = json["passwords"].as_array() {
            passwords.extend(list.iter().filter_map(|p| p.as_str().map(str::to_owned)));
        }
        keys.login = json["peering"]["login"].as_str().map(str::to_owned);
        keys.passwords = passwords.clone();
        keys.password_hashes = passwords
            .iter()
            .map(|p| raw::password_hash(p.as_bytes()))
            .collect();
        if let Some(list) = json["temp_private_keys"].as_array() {
            for t in list {
                let t = t
                    .as_str()
                    .ok_or_else(|| anyhow!("temp_private_keys: not a string"))?;
                keys.temp_secrets.push(*PrivateKey::from_hex(t)?.as_bytes());
            }
        }
        Ok(keys)
    }

    fn node_by_key(&self, key: &[u8; 32]) -> Option<&Node> {
        self.nodes.iter().find(|n| n.public.as_bytes() == key)
    }

    fn node_by_udp(&self, addr: SocketAddr) -> Option<&Node> {
        self.nodes.iter().find(|n| n.udp == Some(addr))
    }

    /// The node's CryptoAuth with the scenario's password(s) as users (for Noise PSKs).
    fn context_of(&self, node: &Node) -> CryptoAuth {
        let mut ca = CryptoAuth::new(node.private.clone());
        for pw in &self.passwords {
            let _ = ca.add_user(
                pw.as_bytes(),
                self.login.as_deref().map(str::as_bytes),
                None,
            );
        }
        ca
    }

    fn temp_secret_for(&self, public: &[u8; 32]) -> Option<[u8; 32]> {
        self.temp_secrets
            .iter()
            .copied()
            .find(|s| raw::public_of(s) == *public)
    }
}

/// What the observer knows of one CryptoAuth session (outer link or inner end-to-end).
#[derive(Debug, Clone, Default)]
struct Observed {
    initiator_temp: Option<[u8; 32]>,
    responder_temp: Option<[u8; 32]>,
}

impl Observed {
    fn data_key(&self, keys: &Keys) -> Option<[u8; 32]> {
        let (it, rt) = (self.initiator_temp?, self.responder_temp?);
        if let Some(s) = keys.temp_secret_for(&it) {
            return raw::beforenm(&s, &rt);
        }
        keys.temp_secret_for(&rt)
            .and_then(|s| raw::beforenm(&s, &it))
    }
}

/// An inner session: (initiator's permanent key, responder's permanent key).
type SessionId = ([u8; 32], [u8; 32]);

/// One output line: the fields of the `pktctl decode` interface, in that order, absent when
/// not applicable.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FrameRecord {
    /// 1-based pcap frame number.
    pub frame: usize,
    /// Source `ip:port`.
    pub src: String,
    /// Destination `ip:port`.
    pub dst: String,
    /// `hello`, `repeat-hello`, `key`, `repeat-key`, `data`, `noise-initiation`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outer: Option<String>,
    /// The switch label, `xxxx.xxxx.xxxx.xxxx`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_label: Option<String>,
    /// `control:<type>`, `handshake:<kind>` or `data`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inner: Option<String>,
    /// DataHeader content type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<u16>,
    /// ICMPv6 echo sequence number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp6_echo_seq: Option<u16>,
    /// `echo-request` or `echo-reply`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp6_type: Option<&'static str>,
    /// Why (part of) the frame could not be opened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A passive decoder over a sequence of datagrams.
#[derive(Debug)]
pub struct Decoder {
    keys: Keys,
    /// One instant for the whole capture (Noise keys are checked for age against it).
    now: std::time::Instant,
    /// Outer sessions by (initiator udp, responder udp).
    links: HashMap<(SocketAddr, SocketAddr), Observed>,
    /// Inner sessions by (initiator key, responder key).
    inner: HashMap<SessionId, Observed>,
    /// Noise links by (initiator udp, responder udp).
    noise: HashMap<(SocketAddr, SocketAddr), NoiseObserved>,
    /// Inner receive handle → (session, the key of the node that chose the handle).
    handles: HashMap<u32, (SessionId, [u8; 32])>,
}

/// What the observer knows of one Noise link.
#[derive(Debug, Default)]
struct NoiseObserved {
    initiation: Option<ObservedInitiation>,
    /// The keys as the initiator holds them (opens the responder's packets).
    initiator_view: Option<Transport>,
    /// The keys as the responder holds them (opens the initiator's packets).
    responder_view: Option<Transport>,
}

/// Result of opening one CryptoAuth packet.
struct Plain {
    payload: Vec<u8>,
}

impl Decoder {
    /// A decoder with these keys.
    pub fn new(keys: Keys) -> Self {
        Self {
            keys,
            now: std::time::Instant::now(),
            links: HashMap::new(),
            noise: HashMap::new(),
            inner: HashMap::new(),
            handles: HashMap::new(),
        }
    }

    /// Decode one datagram into its JSON line.
    pub fn decode(&mut self, d: &UdpDatagram) -> FrameRecord {
        let mut out = FrameRecord {
            frame: d.frame,
            src: d.src.to_string(),
            dst: d.dst.to_string(),
            ..FrameRecord::default()
        };
        if let Err(e) = self.decode_outer(d, &mut out) {
            out.error = Some(format!("{e:#}"));
        }
        out
    }

    fn decode_outer(&mut self, d: &UdpDatagram, out: &mut FrameRecord) -> Result<()> {
        let kind = PacketKind::of(&d.payload).ok_or_else(|| anyhow!("runt datagram"))?;
        if let PacketKind::Data(0xFFFF_FFFF) = kind {
            let ty = d.payload.get(4).copied().unwrap_or(0);
            let name = match ty {
                1 => "noise-initiation",
                2 => "noise-response",
                3 => "noise-cookie",
                _ => "noise-unknown",
            };
            out.outer = Some(name.to_owned());
            return self.decode_noise_handshake(d, ty);
        }
        if let Some(r) = self.try_noise_data(d, out) {
            return r;
        }
        out.outer = Some(kind.name().to_owned());
        let sender = self.keys.node_by_udp(d.src).map(|n| n.public);
        let receiver = self.keys.node_by_udp(d.dst).map(|n| n.public);
        let (Some(sender), Some(receiver)) = (sender, receiver) else {
            bail!("no node of the scenario has this address");
        };
        let plain = match kind {
            PacketKind::Data(nonce) => {
                let (link, sender_is_initiator) = if let Some(l) = self.links.get(&(d.src, d.dst)) {
                    (l, true)
                } else if let Some(l) = self.links.get(&(d.dst, d.src)) {
                    (l, false)
                } else {
                    bail!("data packet before any handshake on this link");
                };
                let key = link.data_key(&self.keys).ok_or_else(|| {
                    anyhow!("data key unavailable: no temporary private key of this session in the scenario (forward secrecy)")
                })?;
                open_data(&key, nonce, sender_is_initiator, &d.payload)?
            }
            _ => {
                let link = if matches!(kind, PacketKind::Hello | PacketKind::RepeatHello) {
                    self.links.entry((d.src, d.dst)).or_default()
                } else {
                    self.links.entry((d.dst, d.src)).or_default()
                };
                open_handshake(
                    &self.keys,
                    link,
                    kind,
                    &d.payload,
                    *sender.as_bytes(),
                    *receiver.as_bytes(),
                )?
            }
        };
        self.decode_switch(
            &plain.payload,
            *sender.as_bytes(),
            *receiver.as_bytes(),
            out,
        )
    }

    fn decode_noise_handshake(&mut self, d: &UdpDatagram, ty: u8) -> Result<()> {
        let node = |a: SocketAddr| {
            self.keys
                .node_by_udp(a)
                .cloned()
                .ok_or_else(|| anyhow!("no node of the scenario has this address"))
        };
        match ty {
            1 => {
                let responder = self.keys.context_of(&node(d.dst)?);
                let obs = ObservedInitiation::open(&responder, &d.payload)
                    .map_err(|e| anyhow!("noise initiation: {e}"))?;
                self.noise.insert(
                    (d.src, d.dst),
                    NoiseObserved {
                        initiation: Some(obs),
                        ..NoiseObserved::default()
                    },
                );
                Ok(())
            }
            2 => {
                let (initiator, responder) = (node(d.dst)?, node(d.src)?);
                let link = self
                    .noise
                    .get_mut(&(d.dst, d.src))
                    .ok_or_else(|| anyhow!("noise response without an initiation"))?;
                let obs = link
                    .initiation
                    .as_ref()
                    .ok_or_else(|| anyhow!("noise response without an initiation"))?;
                let secret = self.keys.temp_secret_for(&obs.ephemeral_public).ok_or_else(|| {
                    anyhow!("noise keys unavailable: the initiator's ephemeral secret is not in the scenario (forward secrecy)")
                })?;
                let r_ctx = self.keys.context_of(&responder);
                let psk = obs
                    .additional
                    .psk_lookup
                    .and_then(|l| r_ctx.find_noise_user(&l).map(|u| *u.noise().psk()))
                    .unwrap_or([0; 32]);
                let sent = obs
                    .with_ephemeral(&secret, &psk)
                    .ok_or_else(|| anyhow!("ephemeral secret does not match"))?;
                let t = sent
                    .complete(&self.keys.context_of(&initiator), self.now, &d.payload)
                    .map_err(|e| anyhow!("noise response: {e}"))?;
                link.responder_view = Some(t.mirrored());
                link.initiator_view = Some(t);
                Ok(())
            }
            // A cookie reply carries no session data.
            _ => Ok(()),
        }
    }

    /// A data packet on a Noise link this decoder has keys for, if it is one.
    fn try_noise_data(&mut self, d: &UdpDatagram, out: &mut FrameRecord) -> Option<Result<()>> {
        let now = self.now;
        let (view, sender, receiver) = {
            let (link, from_initiator) = match self.noise.get_mut(&(d.src, d.dst)) {
                Some(l) => (l, true),
                None => (self.noise.get_mut(&(d.dst, d.src))?, false),
            };
            let view = if from_initiator {
                link.responder_view.as_mut()?
            } else {
                link.initiator_view.as_mut()?
            };
            if !view.accepts_index(&d.payload) {
                return None;
            }
            let mut p = d.payload.clone();
            let body = match view.decrypt(now, &mut p) {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    out.outer = Some("noise-data".to_owned());
                    return Some(Err(anyhow!("noise data: {e}")));
                }
            };
            let s = self.keys.node_by_udp(d.src).map(|n| *n.public.as_bytes());
            let r = self.keys.node_by_udp(d.dst).map(|n| *n.public.as_bytes());
            (body, s?, r?)
        };
        out.outer = Some("noise-data".to_owned());
        if view.is_empty() {
            out.inner = Some("keepalive".to_owned());
            return Some(Ok(()));
        }
        Some(self.decode_switch(&view, sender, receiver, out))
    }

    fn decode_switch(
        &mut self,
        packet: &[u8],
        sender: [u8; 32],
        receiver: [u8; 32],
        out: &mut FrameRecord,
    ) -> Result<()> {
        let hdr = SwitchHeader::new_checked(packet).map_err(|_| anyhow!("runt switch packet"))?;
        out.switch_label = Some(label_text(hdr.label()));
        if let Some(frame) = control_frame(packet) {
            let msg = ControlMessage::parse(frame).map_err(|e| anyhow!("control: {e}"))?;
            let name = msg.kind().name().map_or_else(
                || format!("type{}", msg.kind().0),
                |n| n.to_ascii_lowercase(),
            );
            out.inner = Some(format!("control:{name}"));
            return Ok(());
        }
        let rest = packet.get(12..).unwrap_or_default();
        let word = rest
            .get(..4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or_else(|| anyhow!("runt inner packet"))?;
        if word < 4 {
            let kind = PacketKind::from_word(word);
            out.inner = Some(format!("handshake:{}", kind.name()));
            let hdr =
                HandshakeHeader::parse(rest).ok_or_else(|| anyhow!("runt inner handshake"))?;
            // The inner session is between the two routers; the header names the sender.
            let from = hdr.public_key;
            let to = self
                .keys
                .nodes
                .iter()
                .map(|n| *n.public.as_bytes())
                .find(|k| *k != from && (*k == receiver || *k == sender))
                .ok_or_else(|| anyhow!("inner handshake from an unknown node"))?;
            let id = if matches!(kind, PacketKind::Hello | PacketKind::RepeatHello) {
                (from, to)
            } else {
                (to, from)
            };
            let session = self.inner.entry(id).or_default();
            let plain = open_handshake(&self.keys, session, kind, rest, from, to)?;
            let handle = plain
                .payload
                .get(..4)
                .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
                .ok_or_else(|| anyhow!("inner handshake without a handle"))?;
            self.handles.insert(handle, (id, from));
            return describe_content(plain.payload.get(4..).unwrap_or_default(), out);
        }
        out.inner = Some("data".to_owned());
        let (id, chooser) = *self
            .handles
            .get(&word)
            .ok_or_else(|| anyhow!("inner data for unknown handle {word:#x}"))?;
        let session = self
            .inner
            .get(&id)
            .ok_or_else(|| anyhow!("no inner session"))?;
        let key = session.data_key(&self.keys).ok_or_else(|| {
            anyhow!("inner data key unavailable: no temporary private key of the end-to-end session in the scenario (forward secrecy)")
        })?;
        // The handle names the receiver; the sender is the other end.
        let sender_is_initiator = chooser != id.0;
        let body = rest.get(4..).unwrap_or_default();
        let nonce = body
            .get(..4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or_else(|| anyhow!("runt inner data"))?;
        let plain = open_data(&key, nonce, sender_is_initiator, body)?;
        describe_content(&plain.payload, out)
    }
}

/// The `xxxx.xxxx.xxxx.xxxx` form (a zero label, invalid on the wire, prints as zeros).
fn label_text(raw: u64) -> String {
    Label::new(raw).map_or_else(|_| "0000.0000.0000.0000".to_owned(), |l| l.to_string())
}

fn open_handshake(
    keys: &Keys,
    session: &mut Observed,
    kind: PacketKind,
    packet: &[u8],
    sender: [u8; 32],
    receiver: [u8; 32],
) -> Result<Plain> {
    let hdr = HandshakeHeader::parse(packet).ok_or_else(|| anyhow!("runt handshake"))?;
    if hdr.public_key != sender {
        bail!("handshake names a permanent key that is not the sender's");
    }
    let is_hello = matches!(kind, PacketKind::Hello | PacketKind::RepeatHello);
    // HELLO: S(receiver perm secret, sender perm public). KEY: S(sender perm secret,
    // initiator temp public) — equal to what the initiator computes with its temp secret.
    let (secret, public) = if is_hello {
        let node = keys
            .node_by_key(&receiver)
            .ok_or_else(|| anyhow!("receiver key unknown"))?;
        (*node.private.as_bytes(), sender)
    } else {
        let node = keys
            .node_by_key(&sender)
            .ok_or_else(|| anyhow!("sender key unknown"))?;
        let temp = session
            .initiator_temp
            .ok_or_else(|| anyhow!("KEY before any HELLO"))?;
        (*node.private.as_bytes(), temp)
    };
    let candidates = std::iter::once(None).chain(keys.password_hashes.iter().map(Some));
    for pw in candidates {
        let Some(k) = raw::shared_secret(&secret, &public, pw) else {
            continue;
        };
        let mut body = packet.get(72..).unwrap_or_default().to_vec();
        if raw::open_box(&k, &hdr.nonce, &mut body) {
            let temp: [u8; 32] = body
                .get(16..48)
                .and_then(|t| t.try_into().ok())
                .unwrap_or_default();
            if is_hello {
                *session = Observed {
                    initiator_temp: Some(temp),
                    responder_temp: None,
                };
            } else {
                session.responder_temp = Some(temp);
            }
            return Ok(Plain {
                payload: body.get(48..).unwrap_or_default().to_vec(),
            });
        }
    }
    bail!("handshake does not open with the scenario's keys and passwords")
}

fn open_data(
    key: &[u8; 32],
    nonce: u32,
    sender_is_initiator: bool,
    packet: &[u8],
) -> Result<Plain> {
    let mut body = packet
        .get(4..)
        .ok_or_else(|| anyhow!("runt data packet"))?
        .to_vec();
    if body.len() < 16
        || !raw::open_box(key, &raw::data_nonce(nonce, sender_is_initiator), &mut body)
    {
        bail!("data packet does not authenticate");
    }
    Ok(Plain {
        payload: body.split_off(16),
    })
}

/// DataHeader (version, content type) and, for ICMPv6 echo, the sequence number.
fn describe_content(plain: &[u8], out: &mut FrameRecord) -> Result<()> {
    let dh = plain.get(..4).ok_or_else(|| anyhow!("runt DataHeader"))?;
    let ct = u16::from_be_bytes([dh[2], dh[3]]);
    out.content_type = Some(ct);
    if ct == 58 {
        if let Some(icmp) = plain.get(4..12) {
            if icmp[0] == 128 || icmp[0] == 129 {
                out.icmp6_echo_seq = Some(u16::from_be_bytes([icmp[6], icmp[7]]));
                out.icmp6_type = Some(if icmp[0] == 128 {
                    "echo-request"
                } else {
                    "echo-reply"
                });
            }
        }
    }
    Ok(())
}

/// Decode a whole capture: one record per UDP frame.
pub fn decode_records(capture: &Path, scenario: &Path) -> Result<Vec<FrameRecord>> {
    let text = std::fs::read_to_string(scenario)
        .with_context(|| format!("read {}", scenario.display()))?;
    let json: Value = serde_json::from_str(&text).context("scenario is not JSON")?;
    let mut decoder = Decoder::new(Keys::from_scenario(&json)?);
    Ok(read_pcap(capture)?
        .iter()
        .map(|d| decoder.decode(d))
        .collect())
}

/// Decode a whole capture into JSON values (for tests and programs; the key order of a
/// `Value` is not the printed order).
pub fn decode_capture(capture: &Path, scenario: &Path) -> Result<Vec<Value>> {
    decode_records(capture, scenario)?
        .iter()
        .map(|r| serde_json::to_value(r).context("serialize"))
        .collect()
}

/// Run `pktctl decode`: print one JSON object per UDP frame, one per line (with or without
/// `--json`); exit non-zero only when the capture or the scenario cannot be read.
pub fn main(args: &DecodeArgs) -> std::process::ExitCode {
    match decode_records(&args.capture, &args.keys) {
        Ok(records) => {
            for r in records {
                match serde_json::to_string(&r) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
