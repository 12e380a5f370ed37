//! Shared helpers for the capture tests: a minimal pcap → UDP frame reader and scenario keys.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use pcap_file::pcap::PcapReader;
use pktmesh_crypto_auth::cpu;
use pktmesh_crypto_auth::{PrivateKey, PublicKey};

/// Runs `check` once at every SIMD level this CPU has (`cpu::levels`: portable, then AVX2 and
/// AVX-512 where present), so one build tests every cipher path against the vectors.
pub fn at_every_level(check: impl Fn()) {
    for level in cpu::levels() {
        eprintln!("at {level:?}");
        cpu::with_level(level, &check);
    }
}

/// Root of the capture vectors.
pub fn captures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/cjdns-captures"
    ))
}

/// One UDP datagram from a capture.
#[derive(Debug, Clone)]
pub struct UdpFrame {
    /// 1-based frame number in the pcap.
    pub number: usize,
    /// Capture timestamp.
    pub ts: std::time::Duration,
    pub src: std::net::SocketAddr,
    pub dst: std::net::SocketAddr,
    pub payload: Vec<u8>,
}

/// Read every UDP/IPv4 or UDP/IPv6 datagram of a pcap (Ethernet, Linux cooked or raw IP).
pub fn read_udp_frames(path: &Path) -> Vec<UdpFrame> {
    let file = std::fs::File::open(path).expect("open pcap");
    let mut reader = PcapReader::new(file).expect("pcap header");
    let linktype = reader.header().datalink;
    let mut out = Vec::new();
    let mut number = 0;
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.expect("pcap record");
        number += 1;
        let data = &pkt.data[..];
        let ip = match u32::from(linktype) {
            1 => {
                // Ethernet: skip VLAN tags if any.
                let mut off = 12;
                while u16::from_be_bytes([data[off], data[off + 1]]) == 0x8100 {
                    off += 4;
                }
                &data[off + 2..]
            }
            113 => &data[16..],
            276 => &data[20..],
            101 | 228 | 229 => data,
            other => panic!("unsupported link type {other}"),
        };
        if let Some(mut f) = parse_ip_udp(number, ip) {
            f.ts = pkt.timestamp;
            out.push(f);
        }
    }
    out
}

fn parse_ip_udp(number: usize, ip: &[u8]) -> Option<UdpFrame> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let version = ip.first()? >> 4;
    let (src_ip, dst_ip, udp): (IpAddr, IpAddr, &[u8]) = match version {
        4 => {
            let ihl = usize::from(ip[0] & 0xf) * 4;
            if ip.get(9)? != &17 {
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
            if ip.get(6)? != &17 {
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
    let sport = u16::from_be_bytes(udp.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(udp.get(2..4)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(udp.get(4..6)?.try_into().ok()?));
    let payload = udp.get(8..len)?.to_vec();
    Some(UdpFrame {
        number,
        ts: std::time::Duration::ZERO,
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
        payload,
    })
}

/// One node of a scenario.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub private_key: PrivateKey,
    pub public_key: PublicKey,
    pub udp: std::net::SocketAddr,
}

/// A `scenario.json`.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub dir: PathBuf,
    pub nodes: Vec<Node>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub json: serde_json::Value,
}

pub fn load_scenario(dir: &Path) -> Scenario {
    let text = std::fs::read_to_string(dir.join("scenario.json")).expect("scenario.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut nodes = Vec::new();
    for (name, n) in json["nodes"].as_object().expect("nodes") {
        nodes.push(Node {
            name: name.clone(),
            private_key: PrivateKey::from_hex(n["private_key"].as_str().unwrap()).unwrap(),
            public_key: PublicKey::parse(n["public_key"].as_str().unwrap()).unwrap(),
            udp: n["udp"].as_str().unwrap().parse().unwrap(),
        });
    }
    let login = json["peering"]["login"].as_str().map(str::to_owned);
    let password = json["peering"]["password"].as_str().map(str::to_owned);
    Scenario {
        dir: dir.to_owned(),
        nodes,
        login,
        password,
        json,
    }
}

/// A deterministic RNG for tests: SHA-256 in counter mode over a seed.
#[derive(Debug, Clone)]
pub struct TestRng {
    seed: u64,
    counter: u64,
    buf: [u8; 32],
    used: usize,
}

impl TestRng {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: 0,
            buf: [0; 32],
            used: 32,
        }
    }
}

impl rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        use sha2::Digest;
        for d in dest {
            if self.used == 32 {
                let mut h = sha2::Sha256::new();
                h.update(self.seed.to_le_bytes());
                h.update(self.counter.to_le_bytes());
                self.buf = h.finalize().into();
                self.counter += 1;
                self.used = 0;
            }
            *d = self.buf[self.used];
            self.used += 1;
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for TestRng {}
