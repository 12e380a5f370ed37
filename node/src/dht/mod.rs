//! The legacy DHT pathfinder of cjdns 22.3 (`dht/`), sans-IO.
//!
//! Stock cjdns 22.3 is built without `SUBNODE`, so a node without a supernode finds paths to
//! nodes that are not its direct peers with this DHT: bencoded queries and replies
//! ([`message`]) carried as content type 256 ([`CONTENT_TYPE_CJDHT`]) inside end-to-end
//! CryptoAuth sessions. This module is that pathfinder as a state machine with no I/O, no
//! clock and no randomness of its own:
//!
//! - inputs: [`Pathfinder::peer_up`] / [`Pathfinder::peer_down`] (from the peer table),
//!   [`Pathfinder::handle_message`] (every CJDHT message the session layer decrypted),
//!   [`Pathfinder::lookup`] (the session layer needs a path), [`Pathfinder::switch_error`],
//!   [`Pathfinder::discovered_path`] and [`Pathfinder::handle_timeout`];
//! - outputs: [`Pathfinder::poll_transmit`] (messages to send: destination key, path label,
//!   version and the bencoded body, to be sent in a session with a DataHeader of content type
//!   256), [`Pathfinder::poll_event`] ([`Event::PathFound`] and friends, for the session layer)
//!   and [`Pathfinder::poll_timeout`] (when to call `handle_timeout` next).
//!
//! [`Pathfinder`] also implements [`crate::pathfinding::Pathfinder`], the interface the node core
//! drives; that adapter drops what the core has no use for (typed errors, lost paths, failed
//! searches).
//!
//! Time is `std::time::Instant`, always passed in; randomness comes from a seed given to
//! [`Pathfinder::new`] (give it one from the OS). Every queue, table and search is bounded
//! (see [`Config`]), and every call does work bounded by those sizes.
//!
//! The wire behaviour follows the C modules of cjdns 22.3: `SerializationModule` (our query
//! `txid`s start with ASCII `00`, replies without that prefix are not ours),
//! `EncodingSchemeModule` (`p`, `es`, `ei` on every message, messages from versions below 20
//! dropped), `ReplyModule` (every query but `sq` is answered, `txid` echoed), `RouterModule`
//! (`fn`/`gp`/`nh` answers of up to 8 nodes, labels re-encoded for the asker with
//! `getLabelFor`), `SearchRunner` (iterative search asking the closest candidate next, moving on
//! after a timeout derived from the mean response time) and `Janitor` (about once a second: get
//! peers from rumoured nodes, re-check the node heard from least recently, find-node for
//! keyspace coverage). [`store`] says where the node store deliberately differs.

pub mod message;
mod pathfinder;
pub mod store;
pub mod version;

use thiserror::Error;

pub use message::{
    Body, Message, NodeEntry, NodeListError, Query, Reply, Target, CONTENT_TYPE_CJDHT,
};
pub use pathfinder::{Config, Event, LookupStatus, Pathfinder, Sender, Transmit};
pub use store::NodeInfo;

/// Why a CJDHT message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DhtError {
    /// Not bencode, or not a dictionary (a repeated key counts as malformed, although cjdns
    /// would keep the last value).
    #[error(transparent)]
    Bencode(#[from] crate::bencode::DecodeError),
    /// A mandatory key (`txid`, `p`, `ei`) is absent.
    #[error("message has no `{0}`")]
    MissingKey(&'static str),
    /// A key holds the wrong kind of value.
    #[error("`{0}` has the wrong type")]
    WrongType(&'static str),
    /// `p` does not fit a protocol version.
    #[error("protocol version {0} out of range")]
    BadVersion(i64),
    /// `es` is not a sane encoding scheme.
    #[error("bad encoding scheme: {0}")]
    BadScheme(#[from] pktmesh_switch::SchemeError),
    /// `ei` is negative or beyond the sender's scheme.
    #[error("encoding index {index} out of range for a scheme of {forms} forms")]
    BadEncodingIndex {
        /// The index sent.
        index: i64,
        /// Forms in the sender's scheme.
        forms: usize,
    },
    /// The sender's protocol version is older than [`version::MINIMUM_COMPATIBLE`].
    #[error("protocol version {0} is too old")]
    IncompatibleVersion(u32),
    /// A reply whose `txid` does not match a query of ours that is still outstanding (late,
    /// duplicate, forged, or meant for another pathfinder).
    #[error("reply to no outstanding query of ours")]
    UnknownTransaction,
    /// A reply from a different node than the one we asked.
    #[error("reply from a node we did not ask")]
    WrongResponder,
    /// A message claiming to come from this node itself.
    #[error("message from our own key")]
    FromSelf,
    /// A peer label that is not one hop in our encoding scheme.
    #[error("peer label {0} is not a one-hop label")]
    NotOneHop(pktmesh_switch::Label),
}
