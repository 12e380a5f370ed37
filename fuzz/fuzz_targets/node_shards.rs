//! Arbitrary datagrams, TUN packets and handoffs into a node split over two shards that has
//! one established peer (which also seals fuzzed IPv6 packets for it): nothing panics, and no
//! packet is passed between the shards more than a few times.
#![no_main]

use std::net::SocketAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use pktmesh_node::core::{Output, Stage};
use pktmesh_node::packet::PacketBuf;

#[path = "node_common.rs"]
mod node_common;

use node_common::{Net, B_LINK};

fuzz_target!(|data: &[u8]| {
    let mut net = Net::new();
    let mut rest = data;
    while let [op, shard, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (bytes, next) = tail.split_at(n);
        rest = next;
        let k = usize::from(*shard % 2);
        let mut buf = PacketBuf::from_slice(bytes);
        let now = net.now;
        match op % 6 {
            0 => net.deliver_to_shard(k, bytes),
            1 => {
                let from = SocketAddr::from(([10, 0, 0, *shard], u16::from(*len)));
                let out = net.shards[k].handle_udp(now, from, &mut buf);
                net.follow(k, out, &mut buf, 0);
            }
            2 => {
                let out = net.shards[k].handle_tun(now, &mut buf);
                net.follow(k, out, &mut buf, 0);
            }
            3 => {
                let stage = match shard / 2 % 4 {
                    0 => Stage::Datagram(B_LINK.parse().expect("addr")),
                    1 => Stage::Forward {
                        from: u16::from(*len),
                        to: u16::from(*shard),
                    },
                    2 => Stage::Router,
                    _ => Stage::Tun,
                };
                let out = net.shards[k].handle_handoff(now, stage, &mut buf);
                net.follow(k, out, &mut buf, 0);
            }
            4 => {
                // The peer seals a fuzzed IPv6 packet for us: it passes the link crypto.
                let mut packet = bytes.to_vec();
                if let Some(dst) = packet.get_mut(24..40) {
                    dst.copy_from_slice(net.shards[0].address().as_bytes());
                }
                let mut pb = PacketBuf::from_slice(&packet);
                if let Output::Udp(_) = net.peer.handle_tun(now, &mut pb) {
                    let sealed = pb.data().to_vec();
                    net.deliver_to_shard(k, &sealed);
                }
            }
            _ => {
                net.now += Duration::from_millis(u64::from(*len) * 10);
                let now = net.now;
                for s in &mut net.shards {
                    s.handle_timeout(now);
                }
            }
        }
        net.pump();
    }
});
