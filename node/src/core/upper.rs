//! The upper stage (cjdns' UpperDistributor): what an opened end-to-end packet is for, by the
//! content type of its DataHeader.
//!
//! **Owns:** one consumer per content type and the consumers' state: [`TunConsumer`] (IPv6
//! content types, 0..=255: rebuilt into an IPv6 packet for the TUN device) and [`DhtConsumer`]
//! (256, CJDHT: to the pathfinder, or queued for the route server when the node is a supernode
//! face). **Does not own:** sessions (the packet arrives opened) or the pathfinder (lent for the
//! call).
//!
//! Adding a content type (IpTunnel's 257 is next) is one new consumer here: a type with a
//! `deliver` method, a field of [`Upper`] and one arm in [`Upper::deliver`]; nothing else in
//! the node changes.

use std::collections::VecDeque;
use std::time::Instant;

use pktmesh_crypto_auth::Address;

use super::types::{Output, SupernodeQuery, MAX_SUPERNODE_QUERIES};
use crate::ipv6::{self, read_data_header, CONTENT_TYPE_CJDHT};
use crate::packet::PacketBuf;
use crate::pathfinding::{NodeRef, Pathfinder};

/// The consumers of opened end-to-end packets.
#[derive(Debug, Default)]
pub(crate) struct Upper {
    /// IPv6 to the TUN device.
    pub(crate) tun: TunConsumer,
    /// CJDHT to the pathfinder or the route server.
    pub(crate) dht: DhtConsumer,
}

impl Upper {
    /// Hands `[DataHeader][content]` from `from` (whose address is `source`) to the consumer
    /// of its content type.
    pub(crate) fn deliver<P: Pathfinder>(
        &mut self,
        now: Instant,
        from: NodeRef,
        source: &Address,
        own: &Address,
        buf: &mut PacketBuf,
        pathfinder: &mut P,
    ) -> Output {
        match read_data_header(buf.data()) {
            Some(ct) if ct < 256 => self.tun.deliver(source, own, buf),
            Some(CONTENT_TYPE_CJDHT) => self.dht.deliver(now, from, buf, pathfinder),
            _ => Output::None,
        }
    }
}

/// IPv6 content types: the IPv6 header is rebuilt in the buffer's headroom (source: the
/// sender's address, destination: ours) and the packet goes to the TUN device.
#[derive(Debug, Default)]
pub(crate) struct TunConsumer;

impl TunConsumer {
    fn deliver(&mut self, source: &Address, own: &Address, buf: &mut PacketBuf) -> Output {
        let (whole, data_offset) = buf.with_headroom();
        match ipv6::to_tun(whole, data_offset, source, own) {
            Some(ip_start) => {
                buf.set_start(ip_start);
                Output::Tun
            }
            None => Output::None,
        }
    }
}

/// CJDHT messages: to the pathfinder, except supernode queries (a top-level `sq` key) while
/// the node is the cjdns face of a route server, which wait for the driver.
#[derive(Debug, Default)]
pub(crate) struct DhtConsumer {
    /// Whether supernode queries are kept for the route server.
    pub(crate) supernode_face: bool,
    /// Supernode queries not yet collected (at most [`MAX_SUPERNODE_QUERIES`]).
    pub(crate) supernode_queries: VecDeque<SupernodeQuery>,
}

impl DhtConsumer {
    fn deliver<P: Pathfinder>(
        &mut self,
        now: Instant,
        from: NodeRef,
        buf: &PacketBuf,
        pathfinder: &mut P,
    ) -> Output {
        let message = buf.data().get(4..).unwrap_or_default();
        if self.supernode_face && is_supernode_query(message) {
            if self.supernode_queries.len() < MAX_SUPERNODE_QUERIES {
                self.supernode_queries.push_back(SupernodeQuery {
                    from,
                    message: message.to_vec(),
                });
            }
        } else {
            pathfinder.handle_message(now, from, message);
        }
        Output::None
    }
}

/// Whether a CJDHT message is a supernode query: a bencoded dictionary with an `sq` key.
fn is_supernode_query(message: &[u8]) -> bool {
    crate::bencode::parse_prefix(message)
        .ok()
        .and_then(|(v, _)| v.as_dict().map(|d| d.contains_key("sq")))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    //! The upper stage on its own: opened packets in, to the consumer of their content type.
    use super::*;
    use pktmesh_crypto_auth::PrivateKey;
    use pktmesh_switch::Label;
    use rand_core::SeedableRng;

    /// Records the messages it is given.
    #[derive(Default)]
    struct Recorder(Vec<Vec<u8>>);

    impl Pathfinder for Recorder {
        fn peer_up(&mut self, _: Instant, _: NodeRef) {}
        fn peer_down(&mut self, _: Instant, _: NodeRef) {}
        fn handle_message(&mut self, _: Instant, _: NodeRef, message: &[u8]) {
            self.0.push(message.to_vec());
        }
        fn search(&mut self, _: Instant, _: Address) {}
        fn ping(&mut self, _: Instant, _: NodeRef) {}
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
        fn poll_transmit(&mut self) -> Option<(NodeRef, Vec<u8>)> {
            None
        }
        fn poll_node(&mut self) -> Option<NodeRef> {
            None
        }
        fn node_for(&self, _: &Address) -> Option<NodeRef> {
            None
        }
    }

    fn node(seed: u64) -> NodeRef {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
        NodeRef {
            key: PrivateKey::generate(&mut rng).1,
            path: Label::new(0x13).unwrap(),
            version: 22,
        }
    }

    #[test]
    fn each_content_type_reaches_its_consumer() {
        let now = Instant::now();
        let (from, us) = (node(1), node(2));
        let (source, own) = (from.key.address(), us.key.address());
        let mut upper = Upper::default();
        let mut pf = Recorder::default();
        // CJDHT to the pathfinder.
        let mut buf = PacketBuf::from_slice(b"\x10\x00\x01\x00d1:q2:pne");
        assert_eq!(
            upper.deliver(now, from, &source, &own, &mut buf, &mut pf),
            Output::None
        );
        assert_eq!(pf.0, [b"d1:q2:pne".to_vec()]);
        // ICMPv6 to the TUN device, with the IPv6 header rebuilt from the two addresses.
        let mut buf = PacketBuf::from_slice(&[0x10, 0, 0, 58, 128, 0, 0, 0, 0, 1, 0, 1]);
        assert_eq!(
            upper.deliver(now, from, &source, &own, &mut buf, &mut pf),
            Output::Tun
        );
        let ip = buf.data();
        assert_eq!((ip[0] >> 4, ip[6], ip.len()), (6, 58, 40 + 8));
        assert_eq!(
            (&ip[8..24], &ip[24..40]),
            (&source.as_bytes()[..], &own.as_bytes()[..])
        );
        // A content type nobody consumes.
        let mut buf = PacketBuf::from_slice(&[0x10, 0, 0x01, 0x2c, 1, 2, 3]);
        assert_eq!(
            upper.deliver(now, from, &source, &own, &mut buf, &mut pf),
            Output::None
        );
        assert_eq!(pf.0.len(), 1);
    }

    #[test]
    fn supernode_queries_wait_for_the_route_server_when_the_node_is_its_face() {
        let now = Instant::now();
        let (from, us) = (node(3), node(4));
        let (source, own) = (from.key.address(), us.key.address());
        let mut upper = Upper::default();
        upper.dht.supernode_face = true;
        let mut pf = Recorder::default();
        for _ in 0..MAX_SUPERNODE_QUERIES + 5 {
            let mut buf = PacketBuf::from_slice(b"\x10\x00\x01\x00d2:sq2:gre");
            let _ = upper.deliver(now, from, &source, &own, &mut buf, &mut pf);
        }
        assert!(pf.0.is_empty());
        assert_eq!(upper.dht.supernode_queries.len(), MAX_SUPERNODE_QUERIES);
        assert_eq!(upper.dht.supernode_queries[0].from, from);
    }
}
