//! CJDHT messages: the bencoded dictionaries of content type 256.
//!
//! Every message carries `txid` (bytes), `p` (sender's protocol version), `ei` (index of the
//! encoding form of the sender's first director on its path to the recipient) and usually `es`
//! (the sender's serialized encoding scheme; a message without it is read as V358, as cjdns
//! does). A message with `q` is a query:
//!
//! | `q` | meaning | `tar` |
//! |---|---|---|
//! | `pn` | ping | — |
//! | `fn` | find node: the closest nodes to an address | 16-byte address |
//! | `gp` | get peers: the direct peers of the recipient, from a label on | 8-byte BE label |
//! | `nh` | next hop toward an address | 16-byte address |
//!
//! A message without `q` is a reply; it echoes the query's `txid` byte for byte and may carry
//! `n` (40-byte entries: 32-byte key + 8-byte BE label from the replier, already re-encoded for
//! the asker), `np` (version list: one byte giving the width *w* in 1..=4, then one *w*-byte BE
//! version per entry) and `dnd` ("do not disturb": do not hand this node out).
//!
//! The bencode is [`crate::bencode`]'s (cjdns' dialect: top-level padding accepted and written).
//! Parsing is checked and never panics; it follows cjdns' modules in what makes a message
//! unusable (no `txid`, no `p`, no `ei`, an `ei` beyond the scheme, an insane `es`) but leaves
//! policy (version compatibility, whose `txid` this is) to the [`Pathfinder`](super::Pathfinder).
//! A reply whose node list is malformed is still a valid reply (cjdns still counts it as a
//! pong); its nodes are dropped and [`Reply::node_list_error`] says why. [`Message::to_bytes`]
//! writes sorted keys and cjdns' top-level padding, so a message parsed from a 22.x node
//! re-encodes to the same bytes.

use pktmesh_crypto_auth::PublicKey;
use pktmesh_switch::EncodingScheme;
use thiserror::Error;

use super::DhtError;
use crate::bencode::{self, DecodeError, DecodeErrorKind, Dict, Value};

/// Content type of CJDHT messages in the DataHeader.
pub const CONTENT_TYPE_CJDHT: u16 = 256;

/// Bytes per entry of a node list (`n`): 32-byte key + 8-byte BE label.
pub const NODE_ENTRY_LEN: usize = 40;

/// Most entries this implementation reads from one node list; longer lists are dropped
/// ([`NodeListError::TooLong`]). cjdns itself never sends more than 8.
pub const MAX_NODE_ENTRIES: usize = 64;

/// The target of a query (`tar`), by length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No `tar`.
    Missing,
    /// 16 bytes: an address (`fn`, `nh`; cjdns' search also sends it with `gp`).
    Address([u8; 16]),
    /// 8 bytes: a label, big-endian (`gp`).
    Label(u64),
    /// Any other length; cjdns answers such a query without nodes.
    Other(Vec<u8>),
}

impl Target {
    fn from_bytes(b: Option<&[u8]>) -> Self {
        match b {
            None => Self::Missing,
            Some(b) => {
                if let Ok(a) = <[u8; 16]>::try_from(b) {
                    Self::Address(a)
                } else if let Ok(l) = <[u8; 8]>::try_from(b) {
                    Self::Label(u64::from_be_bytes(l))
                } else {
                    Self::Other(b.to_vec())
                }
            }
        }
    }

    fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Self::Missing => None,
            Self::Address(a) => Some(a.to_vec()),
            Self::Label(l) => Some(l.to_be_bytes().to_vec()),
            Self::Other(b) => Some(b.clone()),
        }
    }
}

/// A query (`q`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `pn`
    Ping,
    /// `fn`
    FindNode(Target),
    /// `gp`
    GetPeers(Target),
    /// `nh`
    NextHop(Target),
    /// Any other `q` (cjdns replies to these with an empty reply, except `sq`, which it ignores).
    Other {
        /// The `q` value.
        q: Vec<u8>,
        /// The `tar` value, if any.
        target: Target,
    },
}

impl Query {
    fn q(&self) -> &[u8] {
        match self {
            Self::Ping => b"pn",
            Self::FindNode(_) => b"fn",
            Self::GetPeers(_) => b"gp",
            Self::NextHop(_) => b"nh",
            Self::Other { q, .. } => q,
        }
    }

    fn target(&self) -> Option<&Target> {
        match self {
            Self::Ping => None,
            Self::FindNode(t) | Self::GetPeers(t) | Self::NextHop(t) => Some(t),
            Self::Other { target, .. } => Some(target),
        }
    }
}

/// One entry of a node list: a node and the label the replier gives for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeEntry {
    /// The node's public key.
    pub key: PublicKey,
    /// Label from the replier to the node (re-encoded for the asker); splice it onto the path to
    /// the replier to get a path from the asker.
    pub label: u64,
    /// The node's protocol version.
    pub version: u32,
}

/// Why a reply's node list was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NodeListError {
    /// `n` is empty or not a multiple of 40 bytes.
    #[error("node list of {0} bytes is not a non-empty multiple of 40")]
    BadLength(usize),
    /// `np` is missing, malformed or has a different number of entries than `n`.
    #[error("version list missing, malformed or of the wrong length")]
    BadVersions,
    /// More than [`MAX_NODE_ENTRIES`] entries.
    #[error("node list of {0} entries is longer than accepted")]
    TooLong(usize),
    /// `n` or `np` is not a byte string.
    #[error("node list is not a byte string")]
    WrongType,
}

/// A reply (no `q`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    /// `n` + `np`, in the order the replier sent them (cjdns puts the best entry last).
    pub nodes: Vec<NodeEntry>,
    /// `dnd`: the replier asks not to be handed out to others.
    pub dnd: bool,
    /// Set when the reply carried a node list that had to be dropped (not written back out).
    pub node_list_error: Option<NodeListError>,
}

/// Query or reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Has `q`.
    Query(Query),
    /// Has no `q`.
    Reply(Reply),
}

/// A CJDHT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id; replies echo the query's verbatim.
    pub txid: Vec<u8>,
    /// `p`: the sender's protocol version.
    pub version: u32,
    /// `es`: the sender's encoding scheme (`None` = absent, read as V358).
    pub scheme: Option<EncodingScheme>,
    /// `ei`: form index of the sender's first director toward the recipient.
    pub encoding_index: u32,
    /// Query or reply.
    pub body: Body,
}

/// Encodes a version list (`VersionList_stringify`): the narrowest width in 1..=4 bytes that
/// holds every version strictly (a version equal to the width's maximum widens it, as in cjdns).
pub(crate) fn encode_versions(versions: &[u32]) -> Vec<u8> {
    let mut width = 1usize;
    let mut max: u64 = 0xff;
    for &v in versions {
        while u64::from(v) >= max && width < 4 {
            width += 1;
            max = (max << 8) | 0xff;
        }
    }
    let mut out = Vec::with_capacity(1 + width * versions.len());
    out.push(width as u8);
    for &v in versions {
        let be = v.to_be_bytes();
        out.extend_from_slice(be.get(4 - width..).unwrap_or(&be));
    }
    out
}

/// Decodes a version list (`VersionList_parse`).
pub(crate) fn decode_versions(b: &[u8]) -> Option<Vec<u32>> {
    let (&width, rest) = b.split_first()?;
    let width = usize::from(width);
    if !(1..=4).contains(&width) || rest.len() % width != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(width)
            .map(|c| c.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)))
            .collect(),
    )
}

fn get_bytes<'a>(d: &'a Dict, key: &'static str) -> Result<Option<&'a [u8]>, DhtError> {
    match d.get(key) {
        None => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(DhtError::WrongType(key)),
    }
}

fn get_int(d: &Dict, key: &'static str) -> Result<Option<i64>, DhtError> {
    match d.get(key) {
        None => Ok(None),
        Some(Value::Int(i)) => Ok(Some(*i)),
        Some(_) => Err(DhtError::WrongType(key)),
    }
}

fn parse_nodes(d: &Dict) -> Result<Vec<NodeEntry>, NodeListError> {
    let n = match d.get("n") {
        None => return Ok(Vec::new()),
        Some(Value::Bytes(b)) => b,
        Some(_) => return Err(NodeListError::WrongType),
    };
    if n.is_empty() || n.len() % NODE_ENTRY_LEN != 0 {
        return Err(NodeListError::BadLength(n.len()));
    }
    let count = n.len() / NODE_ENTRY_LEN;
    if count > MAX_NODE_ENTRIES {
        return Err(NodeListError::TooLong(count));
    }
    let versions = match d.get("np") {
        Some(Value::Bytes(b)) => decode_versions(b).ok_or(NodeListError::BadVersions)?,
        _ => return Err(NodeListError::BadVersions),
    };
    if versions.len() != count {
        return Err(NodeListError::BadVersions);
    }
    let mut out = Vec::with_capacity(count);
    for (chunk, version) in n.chunks_exact(NODE_ENTRY_LEN).zip(versions) {
        let (key, label) = chunk.split_at(32);
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| NodeListError::BadLength(n.len()))?;
        let label: [u8; 8] = label
            .try_into()
            .map_err(|_| NodeListError::BadLength(n.len()))?;
        out.push(NodeEntry {
            key: PublicKey::from_bytes(key),
            label: u64::from_be_bytes(label),
            version,
        });
    }
    Ok(out)
}

impl Message {
    /// Parses a CJDHT message (the bytes after the DataHeader). Bytes after the dictionary are
    /// ignored, as cjdns does.
    pub fn parse(bytes: &[u8]) -> Result<Self, DhtError> {
        let d = match bencode::parse_prefix(bytes)? {
            (Value::Dict(d), _used) => d,
            _ => {
                return Err(DhtError::Bencode(DecodeError {
                    kind: DecodeErrorKind::NotADict,
                    offset: 0,
                }))
            }
        };
        let txid = get_bytes(&d, "txid")?
            .ok_or(DhtError::MissingKey("txid"))?
            .to_vec();
        let version = get_int(&d, "p")?.ok_or(DhtError::MissingKey("p"))?;
        let version = u32::try_from(version).map_err(|_| DhtError::BadVersion(version))?;
        let scheme = get_bytes(&d, "es")?
            .map(EncodingScheme::deserialize)
            .transpose()?;
        let forms = scheme.unwrap_or_else(EncodingScheme::v358).forms().len();
        let ei = get_int(&d, "ei")?.ok_or(DhtError::MissingKey("ei"))?;
        let encoding_index = u32::try_from(ei)
            .ok()
            .filter(|&i| (i as usize) < forms)
            .ok_or(DhtError::BadEncodingIndex { index: ei, forms })?;
        let body = match get_bytes(&d, "q")? {
            Some(q) => {
                let target = Target::from_bytes(get_bytes(&d, "tar")?);
                Body::Query(match q {
                    b"pn" => Query::Ping,
                    b"fn" => Query::FindNode(target),
                    b"gp" => Query::GetPeers(target),
                    b"nh" => Query::NextHop(target),
                    other => Query::Other {
                        q: other.to_vec(),
                        target,
                    },
                })
            }
            None => {
                let (nodes, node_list_error) = match parse_nodes(&d) {
                    Ok(n) => (n, None),
                    Err(e) => (Vec::new(), Some(e)),
                };
                let dnd = d.get_int("dnd").is_some_and(|i| i != 0);
                Body::Reply(Reply {
                    nodes,
                    dnd,
                    node_list_error,
                })
            }
        };
        Ok(Self {
            txid,
            version,
            scheme,
            encoding_index,
            body,
        })
    }

    /// The sender's scheme, V358 when the message carried none.
    pub fn scheme_or_default(&self) -> EncodingScheme {
        self.scheme.unwrap_or_else(EncodingScheme::v358)
    }

    /// Encodes the message as cjdns would: sorted keys, top-level dictionary padded to a
    /// multiple of four bytes. An empty node list writes neither `n` nor `np`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut d = Dict::new();
        let mut put = |k: &str, v: Value| {
            d.insert(k, v);
        };
        put("txid", Value::Bytes(self.txid.clone()));
        put("p", Value::Int(i64::from(self.version)));
        put("ei", Value::Int(i64::from(self.encoding_index)));
        if let Some(s) = &self.scheme {
            put("es", Value::Bytes(s.serialize()));
        }
        match &self.body {
            Body::Query(q) => {
                put("q", Value::Bytes(q.q().to_vec()));
                if let Some(t) = q.target().and_then(Target::to_bytes) {
                    put("tar", Value::Bytes(t));
                }
            }
            Body::Reply(r) => {
                if !r.nodes.is_empty() {
                    let mut n = Vec::with_capacity(r.nodes.len() * NODE_ENTRY_LEN);
                    for e in &r.nodes {
                        n.extend_from_slice(e.key.as_bytes());
                        n.extend_from_slice(&e.label.to_be_bytes());
                    }
                    let versions: Vec<u32> = r.nodes.iter().map(|e| e.version).collect();
                    put("n", Value::Bytes(n));
                    put("np", Value::Bytes(encode_versions(&versions)));
                }
                if r.dnd {
                    put("dnd", Value::Int(1));
                }
            }
        }
        bencode::encode_cjdns(&d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lists() {
        assert_eq!(encode_versions(&[22, 21]), vec![1, 22, 21]);
        assert_eq!(encode_versions(&[255]), vec![2, 0, 255]);
        assert_eq!(encode_versions(&[]), vec![1]);
        assert_eq!(decode_versions(&[1, 22, 21]), Some(vec![22, 21]));
        assert_eq!(decode_versions(&[2, 0, 255]), Some(vec![255]));
        assert_eq!(decode_versions(&[2, 0]), None);
        assert_eq!(decode_versions(&[0]), None);
        assert_eq!(decode_versions(&[5, 1, 2, 3, 4, 5]), None);
        assert_eq!(decode_versions(&[]), None);
    }
}
