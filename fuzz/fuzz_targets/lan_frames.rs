//! Arbitrary bytes as what arrives on a LAN: an Ethernet frame payload (cjdns frame header,
//! then a beacon body when broadcast) and a UDP beacon datagram. Parsing never panics; a frame
//! that parses carries exactly the length its header claims and re-frames to the same bytes;
//! a beacon that parses re-encodes to the bytes it came from. The first six bytes, read as a
//! MAC, always round-trip through the node's Ethernet link address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_node::beacon::{Beacon, BEACON_LEN, BODY_LEN};
use pktmesh_node::eth::{header, payload, EthLink, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = payload(data) {
        let claimed = usize::from(u16::from_be_bytes([data[2], data[3]]));
        assert_eq!(p.len() + HEADER_LEN, claimed);
        let mut again = header(p.len())
            .expect("a parsed payload fits a frame")
            .to_vec();
        again.extend_from_slice(p);
        // Only the zero byte (unchecked, as in cjdns) may differ.
        assert_eq!(again[0], data[0]);
        assert_eq!(again[2..], data[2..claimed]);
        if let Ok(b) = Beacon::parse_body(p) {
            assert_eq!(b.body_bytes()[..], p[..BODY_LEN]);
        }
    }
    if let Ok(b) = Beacon::parse(data) {
        assert_eq!(b.to_bytes()[..], data[..BEACON_LEN]);
    }
    if let Some(mac) = data.first_chunk::<6>() {
        let link = EthLink {
            ifindex: 1 + u32::from(data.get(6).copied().unwrap_or(0)),
            mac: *mac,
        };
        assert_eq!(EthLink::from_link_address(&link.link_address()), Some(link));
    }
});
