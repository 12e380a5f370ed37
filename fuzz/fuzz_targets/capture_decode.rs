//! Arbitrary bytes into `pktctl decode`: once as a whole capture file (pcap or pcapng, any
//! link type), once as a sequence of datagrams and Ethernet frames between two nodes whose keys
//! the decoder holds. Decoding never panics, yields one object per frame, and every frame
//! object keeps its number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_tools::pktctl::decode::{parse_frames, CaptureFrame, Decoder, Keys, Link};

fn keys() -> Keys {
    let scenario = serde_json::json!({
        "nodes": {
            "A": {"private_key": "11".repeat(32), "udp": ["10.0.0.1:1"], "mac": "02:00:00:00:00:01"},
            "B": {"private_key": "22".repeat(32), "udp": "10.0.0.2:2", "mac": ["02:00:00:00:00:02"]},
        },
        "passwords": [{"login": "l", "password": "p"}, {"password": {"hex": "00ff"}}],
        "ephemeral_keys": ["33".repeat(32)],
        "admin_ports": [11234],
    });
    Keys::from_scenario(&scenario).expect("a valid scenario")
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frames) = parse_frames(data) {
        let mut d = Decoder::new(keys());
        for f in &frames {
            assert_eq!(d.decode(f)["frame"], f.number);
        }
    }
    // The same bytes cut into frames: a 2-byte length, then a kind byte selecting the link.
    let mut d = Decoder::new(keys());
    let mut rest = data;
    let mut number = 0;
    while let Some((head, tail)) = rest.split_first_chunk::<3>() {
        let len = usize::from(u16::from_be_bytes([head[0], head[1]])).min(tail.len());
        let (payload, tail) = tail.split_at(len);
        rest = tail;
        number += 1;
        let (a, b) = ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap());
        let link = match head[2] % 4 {
            0 => Link::Udp {
                src: a,
                dst: b,
                payload: payload.to_vec(),
            },
            1 => Link::Udp {
                src: b,
                dst: "127.0.0.1:11234".parse().unwrap(),
                payload: payload.to_vec(),
            },
            2 => Link::Eth {
                src: [2, 0, 0, 0, 0, 1],
                dst: Some([2, 0, 0, 0, 0, 2]),
                payload: payload.to_vec(),
            },
            _ => Link::Eth {
                src: [2, 0, 0, 0, 0, 2],
                dst: Some([0xff; 6]),
                payload: payload.to_vec(),
            },
        };
        let f = CaptureFrame {
            number,
            micros: number as u64,
            len: payload.len(),
            link,
        };
        assert_eq!(d.decode(&f)["frame"], number);
    }
});
