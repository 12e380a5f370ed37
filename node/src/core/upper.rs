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
