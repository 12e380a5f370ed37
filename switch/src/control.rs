//! Switch control messages: framing, the RFC 1071 checksum, every message type cjdns 22.x
//! sends, and the responder that answers queries (`net/ControlHandler.c`).
//!
//! On the wire a control frame is `[switch header 12][FF FF FF FF][checksum 2][type 2][body]`.
//! The functions here work on the part after the marker (the "control frame") unless they say
//! otherwise. Parsing borrows from the input; emitting writes into a caller buffer and never
//! allocates. Unknown message types and error codes keep their numbers.

use core::fmt;

use thiserror::Error;

use crate::header::{SwitchHeaderRepr, CURRENT_VERSION, HEADER_LEN, TRAFFIC_CLASS_UNCLASSED};
use crate::label::Label;
use crate::scheme::EncodingScheme;

/// The four bytes after the switch header that mark an unencrypted control frame.
pub const CONTROL_MARKER: [u8; 4] = [0xff; 4];

/// Checksum and type.
pub const CONTROL_HEADER_LEN: usize = 4;

/// The longest cause an ERROR message carries (cjdns `Control_Error_MAX_SIZE`).
pub const ERROR_CAUSE_MAX: usize = 256;

/// The longest switch-generated ERROR packet: header, marker, control header, code, cause.
pub const ERROR_PACKET_MAX: usize = HEADER_LEN + 4 + CONTROL_HEADER_LEN + 4 + ERROR_CAUSE_MAX;

/// The protocol version of cjdns 22.x, which pktmesh speaks.
pub const PROTOCOL_VERSION: u32 = 22;

/// The oldest protocol version cjdns 22.x answers pings from.
pub const MINIMUM_COMPATIBLE_VERSION: u32 = 20;

/// Body sizes and magics.
mod layout {
    pub(super) const PING_MAGIC: u32 = 0x09f9_1102;
    pub(super) const PONG_MAGIC: u32 = 0x9d74_e35b;
    pub(super) const KEYPING_MAGIC: u32 = 0x0123_4567;
    pub(super) const KEYPONG_MAGIC: u32 = 0x89ab_cdef;
    /// "snoq": GETSNODE and RPATH queries share it.
    pub(super) const QUERY_MAGIC: u32 = 0x736e_6f71;
    /// "snor": GETSNODE and RPATH replies share it.
    pub(super) const REPLY_MAGIC: u32 = 0x736e_6f72;
    pub(super) const LLADDR_QUERY_MAGIC: u32 = 0x6c6c_6171;
    pub(super) const LLADDR_REPLY_MAGIC: u32 = 0x6c6c_6172;

    pub(super) const PING_MIN: usize = 8;
    pub(super) const KEYPING_MIN: usize = 40;
    pub(super) const KEYPING_MAX: usize = 104;
    pub(super) const GETSNODE_LEN: usize = 56;
    pub(super) const RPATH_LEN: usize = 16;
    pub(super) const LLADDR_LEN: usize = 40;
}
use layout::*;

/// RFC 1071 Internet checksum of `data` as cjdns computes it (`Checksum_engine_be`): the
/// ones'-complement sum of big-endian 16-bit words, an odd last byte padded with zero,
/// complemented. Store the result big-endian.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        // Four 16-bit words at a time; the carries accumulate in the high bits.
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]))
            + u64::from(u16::from_be_bytes([w[2], w[3]]))
            + u64::from(u16::from_be_bytes([w[4], w[5]]))
            + u64::from(u16::from_be_bytes([w[6], w[7]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = rest.remainder() {
        sum += u64::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

/// A control message type (open: unknown values are kept).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ControlType(pub u16);

impl ControlType {
    /// An error report from a switch or router.
    pub const ERROR: Self = Self(2);
    /// Switch ping.
    pub const PING: Self = Self(3);
    /// Switch pong.
    pub const PONG: Self = Self(4);
    /// Ping that carries the sender's key.
    pub const KEYPING: Self = Self(5);
    /// Pong that carries the responder's key.
    pub const KEYPONG: Self = Self(6);
    /// "Which supernode do you use?"
    pub const GETSNODE_QUERY: Self = Self(7);
    /// Supernode answer.
    pub const GETSNODE_REPLY: Self = Self(8);
    /// "What is the path from you back to me?"
    pub const RPATH_QUERY: Self = Self(9);
    /// Reverse-path answer.
    pub const RPATH_REPLY: Self = Self(10);
    /// "What is my link-layer address as you see it?"
    pub const LLADDR_QUERY: Self = Self(11);
    /// Link-layer address answer.
    pub const LLADDR_REPLY: Self = Self(12);

    /// The cjdns name of a known type.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            2 => "ERROR",
            3 => "PING",
            4 => "PONG",
            5 => "KEYPING",
            6 => "KEYPONG",
            7 => "GETSNODE_QUERY",
            8 => "GETSNODE_REPLY",
            9 => "RPATH_QUERY",
            10 => "RPATH_REPLY",
            11 => "LLADDR_QUERY",
            12 => "LLADDR_REPLY",
            _ => return None,
        })
    }
}

impl fmt::Debug for ControlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "ControlType({})", self.0),
        }
    }
}

impl fmt::Display for ControlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An error code carried by ERROR messages (`wire/Error.h`; open).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// No error.
    pub const NONE: Self = Self(0);
    /// The label names no interface, or cannot be forwarded.
    pub const MALFORMED_ADDRESS: Self = Self(1);
    /// Flood.
    pub const FLOOD: Self = Self(2);
    /// Link limit exceeded.
    pub const LINK_LIMIT_EXCEEDED: Self = Self(3);
    /// Oversize message.
    pub const OVERSIZE_MESSAGE: Self = Self(4);
    /// Runt message.
    pub const RUNT: Self = Self(5);
    /// An end-to-end packet failed to authenticate.
    pub const AUTHENTICATION: Self = Self(6);
    /// Invalid.
    pub const INVALID: Self = Self(7);
    /// Undeliverable.
    pub const UNDELIVERABLE: Self = Self(8);
    /// Loop route.
    pub const LOOP_ROUTE: Self = Self(9);
    /// The return director does not fit in the label.
    pub const RETURN_PATH_INVALID: Self = Self(10);
    /// Unhandled.
    pub const UNHANDLED: Self = Self(11);
    /// Overflow.
    pub const OVERFLOW: Self = Self(12);
    /// Internal error.
    pub const INTERNAL: Self = Self(13);

    /// The cjdns name of a known code.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NONE",
            1 => "MALFORMED_ADDRESS",
            2 => "FLOOD",
            3 => "LINK_LIMIT_EXCEEDED",
            4 => "OVERSIZE_MESSAGE",
            5 => "RUNT",
            6 => "AUTHENTICATION",
            7 => "INVALID",
            8 => "UNDELIVERABLE",
            9 => "LOOP_ROUTE",
            10 => "RETURN_PATH_INVALID",
            11 => "UNHANDLED",
            12 => "OVERFLOW",
            13 => "INTERNAL",
            _ => return None,
        })
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "ErrorCode({})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a control frame was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Fewer bytes than a control header.
    #[error("control frame of {0} bytes is shorter than its 4-byte header")]
    TooShort(usize),
    /// The checksum over the frame is not zero.
    #[error("control frame checksum mismatch (sum {0:#06x})")]
    BadChecksum(u16),
    /// The body is shorter than its type requires.
    #[error("{kind} body of {len} bytes, at least {min} required")]
    BodyTooShort {
        /// Message type.
        kind: ControlType,
        /// Body length found.
        len: usize,
        /// Minimum for the type.
        min: usize,
    },
    /// The body is longer than its type allows.
    #[error("{kind} body of {len} bytes, at most {max} allowed")]
    BodyTooLong {
        /// Message type.
        kind: ControlType,
        /// Body length found.
        len: usize,
        /// Maximum for the type.
        max: usize,
    },
    /// The body does not start with the magic of its type.
    #[error("{kind} has magic {found:#010x}")]
    BadMagic {
        /// Message type.
        kind: ControlType,
        /// Magic found.
        found: u32,
    },
    /// The output buffer cannot hold the message.
    #[error("output buffer of {have} bytes, {need} needed")]
    BufferTooSmall {
        /// Bytes available.
        have: usize,
        /// Bytes needed.
        need: usize,
    },
}

/// PING and PONG bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping<'a> {
    /// Sender's protocol version.
    pub version: u32,
    /// Opaque data, echoed by the responder.
    pub data: &'a [u8],
}

/// KEYPING and KEYPONG bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPing<'a> {
    /// Sender's protocol version.
    pub version: u32,
    /// Sender's (ping) or responder's (pong) public key.
    pub key: [u8; 32],
    /// Opaque data (at most 64 bytes), echoed.
    pub data: &'a [u8],
}

/// GETSNODE query and reply bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetSnode {
    /// Sender's protocol version.
    pub version: u32,
    /// Supernode's protocol version, 0 if unknown.
    pub snode_version: u32,
    /// Link speed (high bit = configured limit); replies say `0xffffffff`.
    pub kbps: u32,
    /// Supernode key, zero if none.
    pub snode_key: [u8; 32],
    /// Path from the sender to its supernode, re-encoded for the querier; 0 if none.
    pub path_to_snode: u64,
}

/// RPATH query and reply bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RPath {
    /// Sender's protocol version.
    pub version: u32,
    /// Query: the label the querier used. Reply: the path from the responder back.
    pub rpath: u64,
}

/// The 32-byte link-layer address union of LLADDR messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAddress {
    /// What a query carries: type 0, length 2, the rest zero.
    Query,
    /// UDP over IPv4 (type 1).
    Udp4 {
        /// Port.
        port: u16,
        /// Address.
        addr: [u8; 4],
    },
    /// UDP over IPv6 (type 2).
    Udp6 {
        /// Port.
        port: u16,
        /// Address.
        addr: [u8; 16],
    },
    /// Anything else, kept byte for byte.
    Raw([u8; 32]),
}

impl LinkAddress {
    fn parse(b: &[u8; 32]) -> Self {
        match (b[0], b[1]) {
            (0, 2) if b[2..].iter().all(|&x| x == 0) => Self::Query,
            (1, 8) if b[8..].iter().all(|&x| x == 0) => Self::Udp4 {
                port: u16::from_be_bytes([b[2], b[3]]),
                addr: [b[4], b[5], b[6], b[7]],
            },
            (2, 20) if b[20..].iter().all(|&x| x == 0) => {
                let mut addr = [0u8; 16];
                addr.copy_from_slice(&b[4..20]);
                Self::Udp6 {
                    port: u16::from_be_bytes([b[2], b[3]]),
                    addr,
                }
            }
            _ => Self::Raw(*b),
        }
    }

    fn to_bytes(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        match self {
            Self::Query => {
                out[1] = 2;
            }
            Self::Udp4 { port, addr } => {
                out[0] = 1;
                out[1] = 8;
                out[2..4].copy_from_slice(&port.to_be_bytes());
                out[4..8].copy_from_slice(&addr);
            }
            Self::Udp6 { port, addr } => {
                out[0] = 2;
                out[1] = 20;
                out[2..4].copy_from_slice(&port.to_be_bytes());
                out[4..20].copy_from_slice(&addr);
            }
            Self::Raw(raw) => out = raw,
        }
        out
    }
}

/// LLADDR query and reply bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlAddr {
    /// Sender's protocol version.
    pub version: u32,
    /// The address.
    pub addr: LinkAddress,
}

/// A parsed control message, borrowing variable-length parts from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlMessage<'a> {
    /// An error report: the code and the start of the offending packet.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// The offending packet from its switch header on (at most 256 bytes when a switch
        /// made it).
        cause: &'a [u8],
    },
    /// Switch ping.
    Ping(Ping<'a>),
    /// Switch pong.
    Pong(Ping<'a>),
    /// Key ping.
    KeyPing(KeyPing<'a>),
    /// Key pong.
    KeyPong(KeyPing<'a>),
    /// Supernode query.
    GetSnodeQuery(GetSnode),
    /// Supernode reply.
    GetSnodeReply(GetSnode),
    /// Reverse-path query.
    RPathQuery(RPath),
    /// Reverse-path reply.
    RPathReply(RPath),
    /// Link-layer address query.
    LlAddrQuery(LlAddr),
    /// Link-layer address reply.
    LlAddrReply(LlAddr),
    /// A type pktmesh does not know, kept whole.
    Unknown {
        /// Its type number.
        kind: ControlType,
        /// Its body.
        body: &'a [u8],
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

fn key_at(b: &[u8], at: usize) -> [u8; 32] {
    let mut k = [0u8; 32];
    k.copy_from_slice(&b[at..at + 32]);
    k
}

fn need(kind: ControlType, body: &[u8], min: usize) -> Result<(), ControlError> {
    if body.len() < min {
        return Err(ControlError::BodyTooShort {
            kind,
            len: body.len(),
            min,
        });
    }
    Ok(())
}

fn magic(kind: ControlType, body: &[u8], expected: u32) -> Result<(), ControlError> {
    let found = be32(body, 0);
    if found != expected {
        return Err(ControlError::BadMagic { kind, found });
    }
    Ok(())
}

impl<'a> ControlMessage<'a> {
    /// Parses a control frame (the bytes after the `FFFFFFFF` marker), verifying the checksum.
    pub fn parse(frame: &'a [u8]) -> Result<Self, ControlError> {
        if frame.len() < CONTROL_HEADER_LEN {
            return Err(ControlError::TooShort(frame.len()));
        }
        let sum = checksum(frame);
        if sum != 0 {
            return Err(ControlError::BadChecksum(sum));
        }
        Self::parse_unverified(frame)
    }

    /// Parses a control frame without looking at its checksum.
    pub fn parse_unverified(frame: &'a [u8]) -> Result<Self, ControlError> {
        let Some((head, body)) = frame.split_first_chunk::<CONTROL_HEADER_LEN>() else {
            return Err(ControlError::TooShort(frame.len()));
        };
        let kind = ControlType(u16::from_be_bytes([head[2], head[3]]));
        Ok(match kind {
            ControlType::ERROR => {
                need(kind, body, 4)?;
                Self::Error {
                    code: ErrorCode(be32(body, 0)),
                    cause: &body[4..],
                }
            }
            ControlType::PING | ControlType::PONG => {
                need(kind, body, PING_MIN)?;
                let expected = if kind == ControlType::PING {
                    PING_MAGIC
                } else {
                    PONG_MAGIC
                };
                magic(kind, body, expected)?;
                let ping = Ping {
                    version: be32(body, 4),
                    data: &body[PING_MIN..],
                };
                if kind == ControlType::PING {
                    Self::Ping(ping)
                } else {
                    Self::Pong(ping)
                }
            }
            ControlType::KEYPING | ControlType::KEYPONG => {
                need(kind, body, KEYPING_MIN)?;
                if body.len() > KEYPING_MAX {
                    return Err(ControlError::BodyTooLong {
                        kind,
                        len: body.len(),
                        max: KEYPING_MAX,
                    });
                }
                let expected = if kind == ControlType::KEYPING {
                    KEYPING_MAGIC
                } else {
                    KEYPONG_MAGIC
                };
                magic(kind, body, expected)?;
                let ping = KeyPing {
                    version: be32(body, 4),
                    key: key_at(body, 8),
                    data: &body[KEYPING_MIN..],
                };
                if kind == ControlType::KEYPING {
                    Self::KeyPing(ping)
                } else {
                    Self::KeyPong(ping)
                }
            }
            ControlType::GETSNODE_QUERY | ControlType::GETSNODE_REPLY => {
                need(kind, body, GETSNODE_LEN)?;
                let query = kind == ControlType::GETSNODE_QUERY;
                magic(kind, body, if query { QUERY_MAGIC } else { REPLY_MAGIC })?;
                let g = GetSnode {
                    version: be32(body, 4),
                    snode_version: be32(body, 8),
                    kbps: be32(body, 12),
                    snode_key: key_at(body, 16),
                    path_to_snode: be64(body, 48),
                };
                if query {
                    Self::GetSnodeQuery(g)
                } else {
                    Self::GetSnodeReply(g)
                }
            }
            ControlType::RPATH_QUERY | ControlType::RPATH_REPLY => {
                need(kind, body, RPATH_LEN)?;
                let query = kind == ControlType::RPATH_QUERY;
                magic(kind, body, if query { QUERY_MAGIC } else { REPLY_MAGIC })?;
                let r = RPath {
                    version: be32(body, 4),
                    rpath: be64(body, 8),
                };
                if query {
                    Self::RPathQuery(r)
                } else {
                    Self::RPathReply(r)
                }
            }
            ControlType::LLADDR_QUERY | ControlType::LLADDR_REPLY => {
                need(kind, body, LLADDR_LEN)?;
                let query = kind == ControlType::LLADDR_QUERY;
                magic(
                    kind,
                    body,
                    if query {
                        LLADDR_QUERY_MAGIC
                    } else {
                        LLADDR_REPLY_MAGIC
                    },
                )?;
                let l = LlAddr {
                    version: be32(body, 4),
                    addr: LinkAddress::parse(&key_at(body, 8)),
                };
                if query {
                    Self::LlAddrQuery(l)
                } else {
                    Self::LlAddrReply(l)
                }
            }
            _ => Self::Unknown { kind, body },
        })
    }

    /// The message's type.
    pub fn kind(&self) -> ControlType {
        match self {
            Self::Error { .. } => ControlType::ERROR,
            Self::Ping(_) => ControlType::PING,
            Self::Pong(_) => ControlType::PONG,
            Self::KeyPing(_) => ControlType::KEYPING,
            Self::KeyPong(_) => ControlType::KEYPONG,
            Self::GetSnodeQuery(_) => ControlType::GETSNODE_QUERY,
            Self::GetSnodeReply(_) => ControlType::GETSNODE_REPLY,
            Self::RPathQuery(_) => ControlType::RPATH_QUERY,
            Self::RPathReply(_) => ControlType::RPATH_REPLY,
            Self::LlAddrQuery(_) => ControlType::LLADDR_QUERY,
            Self::LlAddrReply(_) => ControlType::LLADDR_REPLY,
            Self::Unknown { kind, .. } => *kind,
        }
    }

    /// Bytes [`ControlMessage::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        CONTROL_HEADER_LEN
            + match self {
                Self::Error { cause, .. } => 4 + cause.len(),
                Self::Ping(p) | Self::Pong(p) => PING_MIN + p.data.len(),
                Self::KeyPing(p) | Self::KeyPong(p) => KEYPING_MIN + p.data.len(),
                Self::GetSnodeQuery(_) | Self::GetSnodeReply(_) => GETSNODE_LEN,
                Self::RPathQuery(_) | Self::RPathReply(_) => RPATH_LEN,
                Self::LlAddrQuery(_) | Self::LlAddrReply(_) => LLADDR_LEN,
                Self::Unknown { body, .. } => body.len(),
            }
    }

    /// Writes the control frame (checksum, type, body) to the front of `out` and returns its
    /// length. The checksum is computed over what was written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        let len = self.buffer_len();
        if out.len() < len {
            return Err(ControlError::BufferTooSmall {
                have: out.len(),
                need: len,
            });
        }
        let frame = &mut out[..len];
        frame[0..2].fill(0);
        frame[2..4].copy_from_slice(&self.kind().0.to_be_bytes());
        let body = &mut frame[CONTROL_HEADER_LEN..];
        let put32 =
            |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        match self {
            Self::Error { code, cause } => {
                put32(body, 0, code.0);
                body[4..].copy_from_slice(cause);
            }
            Self::Ping(p) | Self::Pong(p) => {
                let m = if matches!(self, Self::Ping(_)) {
                    PING_MAGIC
                } else {
                    PONG_MAGIC
                };
                put32(body, 0, m);
                put32(body, 4, p.version);
                body[PING_MIN..].copy_from_slice(p.data);
            }
            Self::KeyPing(p) | Self::KeyPong(p) => {
                let m = if matches!(self, Self::KeyPing(_)) {
                    KEYPING_MAGIC
                } else {
                    KEYPONG_MAGIC
                };
                put32(body, 0, m);
                put32(body, 4, p.version);
                body[8..40].copy_from_slice(&p.key);
                body[KEYPING_MIN..].copy_from_slice(p.data);
            }
            Self::GetSnodeQuery(g) | Self::GetSnodeReply(g) => {
                let m = if matches!(self, Self::GetSnodeQuery(_)) {
                    QUERY_MAGIC
                } else {
                    REPLY_MAGIC
                };
                put32(body, 0, m);
                put32(body, 4, g.version);
                put32(body, 8, g.snode_version);
                put32(body, 12, g.kbps);
                body[16..48].copy_from_slice(&g.snode_key);
                body[48..56].copy_from_slice(&g.path_to_snode.to_be_bytes());
            }
            Self::RPathQuery(r) | Self::RPathReply(r) => {
                let m = if matches!(self, Self::RPathQuery(_)) {
                    QUERY_MAGIC
                } else {
                    REPLY_MAGIC
                };
                put32(body, 0, m);
                put32(body, 4, r.version);
                body[8..16].copy_from_slice(&r.rpath.to_be_bytes());
            }
            Self::LlAddrQuery(l) | Self::LlAddrReply(l) => {
                let m = if matches!(self, Self::LlAddrQuery(_)) {
                    LLADDR_QUERY_MAGIC
                } else {
                    LLADDR_REPLY_MAGIC
                };
                put32(body, 0, m);
                put32(body, 4, l.version);
                body[8..40].copy_from_slice(&l.addr.to_bytes());
            }
            Self::Unknown { body: b, .. } => body.copy_from_slice(b),
        }
        let sum = checksum(frame);
        frame[0..2].copy_from_slice(&sum.to_be_bytes());
        Ok(len)
    }

    /// Writes a whole packet: `header`, the marker, then this message. Returns its length.
    pub fn emit_packet(
        &self,
        header: &SwitchHeaderRepr,
        out: &mut [u8],
    ) -> Result<usize, ControlError> {
        let need = HEADER_LEN + 4 + self.buffer_len();
        if out.len() < need {
            return Err(ControlError::BufferTooSmall {
                have: out.len(),
                need,
            });
        }
        out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        out[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&CONTROL_MARKER);
        Ok(HEADER_LEN + 4 + self.emit(&mut out[HEADER_LEN + 4..])?)
    }
}

/// Splits a switch packet into its header and, if it is a control frame, the frame after the
/// marker.
pub fn control_frame(packet: &[u8]) -> Option<&[u8]> {
    let rest = packet.get(HEADER_LEN..)?;
    let (marker, frame) = rest.split_first_chunk::<4>()?;
    (*marker == CONTROL_MARKER).then_some(frame)
}

/// Writes the ERROR packet a switch sends back out of the arrival interface when it cannot
/// forward `cause` (the packet exactly as it arrived). Returns the length written to `out`,
/// which must hold [`ERROR_PACKET_MAX`] bytes or the whole error.
///
/// The header's label is the reversed arrival label, so the error retraces the path; it has
/// suppress-errors set, congestion 1 (cjdns' `setCongestion(0)` stores 1), version 1 and
/// traffic class `0xffff`. The cause is cut to 256 bytes.
pub fn write_switch_error(
    cause: &[u8],
    code: ErrorCode,
    out: &mut [u8],
) -> Result<usize, ControlError> {
    let label = crate::header::SwitchHeader::new_checked(cause)
        .map(|h| h.label())
        .unwrap_or(0);
    let cause = &cause[..cause.len().min(ERROR_CAUSE_MAX)];
    let header = SwitchHeaderRepr {
        label: label.reverse_bits(),
        congestion: 1,
        suppress_errors: true,
        version: CURRENT_VERSION,
        label_shift: 0,
        traffic_class: TRAFFIC_CLASS_UNCLASSED,
    };
    ControlMessage::Error { code, cause }.emit_packet(&header, out)
}

/// A node's supernode, as GETSNODE replies report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snode {
    /// The supernode's key.
    pub key: [u8; 32],
    /// Path from this node to it.
    pub path: Label,
    /// Its protocol version.
    pub version: u32,
}

/// What the responder needs to know about its own node.
#[derive(Debug, Clone, Copy)]
pub struct ResponderConfig<'a> {
    /// Protocol version to report (22).
    pub protocol_version: u32,
    /// This node's public key, for KEYPONG.
    pub public_key: [u8; 32],
    /// This node's encoding scheme, for the one-hop check and `getLabelFor`.
    pub scheme: &'a EncodingScheme,
    /// The supernode in use, if any.
    pub snode: Option<Snode>,
}

/// Why the responder produced no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NoReply {
    /// The frame is malformed (runt, bad checksum, bad magic, bad size).
    #[error("dropped malformed control frame: {0}")]
    Malformed(#[from] ControlError),
    /// The sender's version is below 20.
    #[error("sender's protocol version {0} is not compatible")]
    IncompatibleVersion(u32),
    /// Not a query: errors and replies go to whoever is waiting for them.
    #[error("{0} is not a query; deliver it to the waiting party")]
    NotAQuery(ControlType),
    /// A type this node does not handle.
    #[error("unknown control type {0}")]
    UnknownType(ControlType),
    /// LLADDR queries are answered only for direct peers.
    #[error("LLADDR query from a node that is not a direct peer")]
    NotOneHop,
    /// LLADDR query and the link-layer address of the peer is unknown.
    #[error("LLADDR query but the peer's link-layer address is unknown")]
    UnknownLinkAddress,
}

/// Answers a control query (`net/ControlHandler.c`) with a complete packet in `out`.
///
/// `path_back` is the label of the reply: the arrival label bit-reversed, i.e. the path from
/// this node to the querier. `peer_address` is the link-layer address of the peer the query
/// came from (for LLADDR). The reply's switch header has version 1 and nothing else set.
pub fn respond(
    config: &ResponderConfig<'_>,
    path_back: u64,
    frame: &[u8],
    peer_address: Option<LinkAddress>,
    out: &mut [u8],
) -> Result<usize, NoReply> {
    let message = ControlMessage::parse(frame)?;
    let ours = config.protocol_version;
    let reply = match message {
        ControlMessage::Ping(p) => {
            if p.version < MINIMUM_COMPATIBLE_VERSION {
                return Err(NoReply::IncompatibleVersion(p.version));
            }
            ControlMessage::Pong(Ping {
                version: ours,
                data: p.data,
            })
        }
        ControlMessage::KeyPing(p) => {
            if p.version < MINIMUM_COMPATIBLE_VERSION {
                return Err(NoReply::IncompatibleVersion(p.version));
            }
            ControlMessage::KeyPong(KeyPing {
                version: ours,
                key: config.public_key,
                data: p.data,
            })
        }
        ControlMessage::GetSnodeQuery(q) => {
            if q.version < MINIMUM_COMPATIBLE_VERSION {
                return Err(NoReply::IncompatibleVersion(q.version));
            }
            let mut r = GetSnode {
                version: ours,
                snode_version: 0,
                kbps: u32::MAX,
                snode_key: [0; 32],
                path_to_snode: 0,
            };
            if let Some(s) = config.snode {
                let asker = Label::new(path_back).unwrap_or(Label::SELF);
                let path = config.scheme.get_label_for(s.path, asker).unwrap_or(s.path);
                r.snode_version = s.version;
                r.snode_key = s.key;
                r.path_to_snode = path.bits();
            }
            ControlMessage::GetSnodeReply(r)
        }
        ControlMessage::RPathQuery(_) => ControlMessage::RPathReply(RPath {
            version: ours,
            rpath: path_back,
        }),
        ControlMessage::LlAddrQuery(_) => {
            let is_peer = Label::new(path_back).is_ok_and(|l| config.scheme.is_one_hop(l));
            if !is_peer {
                return Err(NoReply::NotOneHop);
            }
            ControlMessage::LlAddrReply(LlAddr {
                version: ours,
                addr: peer_address.ok_or(NoReply::UnknownLinkAddress)?,
            })
        }
        ControlMessage::Unknown { kind, .. } => return Err(NoReply::UnknownType(kind)),
        other => return Err(NoReply::NotAQuery(other.kind())),
    };
    // cjdns rewrites queries in place, so bytes past a fixed-size body come back unchanged.
    let fixed_len = reply.buffer_len();
    let trailing = match message {
        ControlMessage::GetSnodeQuery(_)
        | ControlMessage::RPathQuery(_)
        | ControlMessage::LlAddrQuery(_) => frame.get(fixed_len..).unwrap_or(&[]),
        _ => &[],
    };
    let header = SwitchHeaderRepr::new(path_back);
    let total = HEADER_LEN + 4 + fixed_len + trailing.len();
    if out.len() < total {
        return Err(NoReply::Malformed(ControlError::BufferTooSmall {
            have: out.len(),
            need: total,
        }));
    }
    let written = reply.emit_packet(&header, out)?;
    if !trailing.is_empty() {
        out[written..total].copy_from_slice(trailing);
        let frame_out = &mut out[HEADER_LEN + 4..total];
        frame_out[0..2].fill(0);
        let sum = checksum(frame_out);
        frame_out[0..2].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    #[test]
    fn checksum_vectors() {
        let cases = [
            ("00", 0xffff),
            ("0001", 0xfffe),
            ("000102", 0xfdfe),
            ("00010203", 0xfdfb),
            ("ff", 0x00ff),
            ("fffe", 0x0001),
            ("fffefd", 0x0300),
            ("fffefdfc", 0x0204),
            ("45000054ccf3000040010000c0a80001c0a8000b", 0x2c59),
        ];
        for (data, sum) in cases {
            assert_eq!(checksum(&h(data)), sum, "{data}");
        }
        assert_eq!(checksum(&[]), 0xffff);
    }

    const PING: &str = "a2e5 0003 09f91102 00000012 4d160b1eee2929e12e19a3b1";
    const PONG: &str = "4974 0004 9d74e35b 00000012 80534c66df69e44b496d5bc8";
    const KEYPING: &str = "994b 0005 01234567 00000012 a331ebbed8d92ac03b10efed3e389cd0c6ec7331a72dbde198476c5eb4d14a1f 02e29842b42aedb6bce2ead3";
    const KEYPONG: &str = "3b96 0006 89abcdef 00000012 6bd2e8e50faca3d987623d6a043c17c0d9e9004e145f8dd90615d34edbb36d6a 02e29842b42aedb6bce2ead3";
    const ERROR: &str = "bce300020000000a62c1d23a648114010379000000012d7c000006c378e071c46aefad3aa295fff396371d10678e9833807de083a4a40da39bf0f68f15c4380afbe92405196242a74bb304a8285088579f94fb01867be2171aa8d2c7b54198a89bbdb80c668e9c05";

    fn round_trip(hex: &str) -> ControlMessage<'static> {
        let bytes: &'static [u8] = Box::leak(h(hex).into_boxed_slice());
        let msg = ControlMessage::parse(bytes).unwrap();
        let mut out = vec![0u8; msg.buffer_len()];
        assert_eq!(msg.emit(&mut out).unwrap(), bytes.len());
        assert_eq!(out, bytes, "re-emitted bytes differ");
        msg
    }

    #[test]
    fn cjdns_ctrl_vectors() {
        let ControlMessage::Ping(p) = round_trip(PING) else {
            panic!()
        };
        assert_eq!(p.version, 18);
        assert_eq!(p.data, h("4d160b1eee2929e12e19a3b1"));
        assert!(matches!(
            round_trip(PONG),
            ControlMessage::Pong(Ping { version: 18, .. })
        ));
        let ControlMessage::KeyPing(k) = round_trip(KEYPING) else {
            panic!()
        };
        assert_eq!(
            k.key.as_slice(),
            h("a331ebbed8d92ac03b10efed3e389cd0c6ec7331a72dbde198476c5eb4d14a1f")
        );
        assert_eq!(k.data, h("02e29842b42aedb6bce2ead3"));
        assert!(matches!(round_trip(KEYPONG), ControlMessage::KeyPong(_)));
        let ControlMessage::Error { code, cause } = round_trip(ERROR) else {
            panic!()
        };
        assert_eq!(code, ErrorCode::RETURN_PATH_INVALID);
        let cause_header = SwitchHeaderRepr::parse(cause).unwrap();
        assert_eq!(cause_header.label, 0x62c1_d23a_6481_1401);
        assert_eq!(
            (
                cause_header.congestion,
                cause_header.suppress_errors,
                cause_header.version,
                cause_header.label_shift
            ),
            (1, true, 1, 57)
        );
    }

    #[test]
    fn main_fuzz_ctrl_ping_case() {
        // test/Main_fuzz_test_cases/CtrlPing.hex after its 68-byte RouteHeader: checksum 64eb,
        // PING, version 20, 8 bytes of data.
        let frame = h("64eb 0003 09f91102 00000014 a6739ba43cd40116");
        let ControlMessage::Ping(p) = ControlMessage::parse(&frame).unwrap() else {
            panic!()
        };
        assert_eq!(p.version, 20);
    }

    #[test]
    fn malformed_frames() {
        assert_eq!(
            ControlMessage::parse(&[1, 2]),
            Err(ControlError::TooShort(2))
        );
        let mut bad = h(PING);
        bad[10] ^= 1;
        assert!(matches!(
            ControlMessage::parse(&bad),
            Err(ControlError::BadChecksum(_))
        ));
        // cjdns-ctrl accepts a byte-swapped checksum; the C receiver (and pktmesh) does not.
        let mut swapped = h(PING);
        swapped.swap(0, 1);
        assert!(matches!(
            ControlMessage::parse(&swapped),
            Err(ControlError::BadChecksum(_))
        ));

        let mut out = [0u8; 200];
        let short = ControlMessage::Unknown {
            kind: ControlType::PING,
            body: &[0x09, 0xf9, 0x11, 0x02],
        };
        let n = short.emit(&mut out).unwrap();
        assert_eq!(
            ControlMessage::parse(&out[..n]),
            Err(ControlError::BodyTooShort {
                kind: ControlType::PING,
                len: 4,
                min: 8
            })
        );
        let wrong_magic = ControlMessage::Unknown {
            kind: ControlType::PONG,
            body: &[0x09, 0xf9, 0x11, 0x02, 0, 0, 0, 22],
        };
        let n = wrong_magic.emit(&mut out).unwrap();
        assert_eq!(
            ControlMessage::parse(&out[..n]),
            Err(ControlError::BadMagic {
                kind: ControlType::PONG,
                found: 0x09f9_1102
            })
        );
        let long_body = [0u8; 105];
        let long = ControlMessage::Unknown {
            kind: ControlType::KEYPING,
            body: &long_body,
        };
        let n = long.emit(&mut out).unwrap();
        assert_eq!(
            ControlMessage::parse(&out[..n]),
            Err(ControlError::BodyTooLong {
                kind: ControlType::KEYPING,
                len: 105,
                max: 104
            })
        );
        assert!(matches!(
            ControlMessage::Ping(Ping {
                version: 22,
                data: &[0; 300]
            })
            .emit(&mut out),
            Err(ControlError::BufferTooSmall { .. })
        ));
        // Unknown types survive a round trip.
        let unknown = ControlMessage::Unknown {
            kind: ControlType(0x77),
            body: &[1, 2, 3],
        };
        let n = unknown.emit(&mut out).unwrap();
        assert_eq!(ControlMessage::parse(&out[..n]).unwrap(), unknown);
    }

    #[test]
    fn all_types_round_trip() {
        let key = [7u8; 32];
        let messages = [
            ControlMessage::GetSnodeQuery(GetSnode {
                version: 22,
                snode_version: 0,
                kbps: 1000,
                snode_key: [0; 32],
                path_to_snode: 0,
            }),
            ControlMessage::GetSnodeReply(GetSnode {
                version: 22,
                snode_version: 22,
                kbps: u32::MAX,
                snode_key: key,
                path_to_snode: 0x153,
            }),
            ControlMessage::RPathQuery(RPath {
                version: 22,
                rpath: 0x13,
            }),
            ControlMessage::RPathReply(RPath {
                version: 22,
                rpath: 0x15,
            }),
            ControlMessage::LlAddrQuery(LlAddr {
                version: 22,
                addr: LinkAddress::Query,
            }),
            ControlMessage::LlAddrReply(LlAddr {
                version: 22,
                addr: LinkAddress::Udp4 {
                    port: 11002,
                    addr: [10, 77, 0, 2],
                },
            }),
            ControlMessage::LlAddrReply(LlAddr {
                version: 22,
                addr: LinkAddress::Udp6 {
                    port: 1,
                    addr: [0xfe; 16],
                },
            }),
            ControlMessage::LlAddrReply(LlAddr {
                version: 22,
                addr: LinkAddress::Raw([3; 32]),
            }),
        ];
        for m in messages {
            let mut out = [0u8; 64];
            let n = m.emit(&mut out).unwrap();
            assert_eq!(ControlMessage::parse(&out[..n]).unwrap(), m);
        }
        // RPATH reuses the GETSNODE magics ("snoq"/"snor").
        let mut out = [0u8; 64];
        let n = ControlMessage::RPathQuery(RPath {
            version: 22,
            rpath: 1,
        })
        .emit(&mut out)
        .unwrap();
        assert_eq!(&out[4..8], b"snoq");
        assert_eq!(n, 20);
    }

    fn config(scheme: &EncodingScheme) -> ResponderConfig<'_> {
        ResponderConfig {
            protocol_version: PROTOCOL_VERSION,
            public_key: [0xab; 32],
            scheme,
            snode: None,
        }
    }

    #[test]
    fn responder_answers_ping_and_keyping() {
        let scheme = EncodingScheme::v358();
        let cfg = config(&scheme);
        let mut out = [0u8; 300];
        // Raise the vector's version to 20 so it is answered.
        let query = ControlMessage::Ping(Ping {
            version: 20,
            data: b"IFACE_CNTRLR",
        });
        let mut frame = [0u8; 64];
        let n = query.emit(&mut frame).unwrap();
        let len = respond(&cfg, 0x13, &frame[..n], None, &mut out).unwrap();
        let header = SwitchHeaderRepr::parse(&out).unwrap();
        assert_eq!(header, SwitchHeaderRepr::new(0x13));
        assert_eq!(&out[8..12], &[0x00, 0x40, 0x00, 0x00]);
        let reply = ControlMessage::parse(control_frame(&out[..len]).unwrap()).unwrap();
        assert_eq!(
            reply,
            ControlMessage::Pong(Ping {
                version: 22,
                data: b"IFACE_CNTRLR"
            })
        );

        let old = h(PING); // version 18
        assert_eq!(
            respond(&cfg, 0x13, &old, None, &mut out),
            Err(NoReply::IncompatibleVersion(18))
        );
        let old_key = h(KEYPING);
        assert_eq!(
            respond(&cfg, 0x13, &old_key, None, &mut out),
            Err(NoReply::IncompatibleVersion(18))
        );

        let kp = ControlMessage::KeyPing(KeyPing {
            version: 22,
            key: [1; 32],
            data: &[9; 64],
        });
        let mut frame = [0u8; 128];
        let n = kp.emit(&mut frame).unwrap();
        let len = respond(&cfg, 0x15, &frame[..n], None, &mut out).unwrap();
        let reply = ControlMessage::parse(control_frame(&out[..len]).unwrap()).unwrap();
        assert_eq!(
            reply,
            ControlMessage::KeyPong(KeyPing {
                version: 22,
                key: [0xab; 32],
                data: &[9; 64]
            })
        );
    }

    #[test]
    fn responder_answers_rpath_getsnode_lladdr() {
        let scheme = EncodingScheme::v358();
        let mut cfg = config(&scheme);
        let mut out = [0u8; 300];
        let mut frame = [0u8; 64];

        let n = ControlMessage::RPathQuery(RPath {
            version: 22,
            rpath: 0x153,
        })
        .emit(&mut frame)
        .unwrap();
        let len = respond(&cfg, 0x137, &frame[..n], None, &mut out).unwrap();
        let reply = ControlMessage::parse(control_frame(&out[..len]).unwrap()).unwrap();
        assert_eq!(
            reply,
            ControlMessage::RPathReply(RPath {
                version: 22,
                rpath: 0x137
            })
        );

        let q = GetSnode {
            version: 22,
            snode_version: 0,
            kbps: 5,
            snode_key: [0; 32],
            path_to_snode: 0,
        };
        let n = ControlMessage::GetSnodeQuery(q).emit(&mut frame).unwrap();
        let len = respond(&cfg, 0x13, &frame[..n], None, &mut out).unwrap();
        let reply = ControlMessage::parse(control_frame(&out[..len]).unwrap()).unwrap();
        assert_eq!(
            reply,
            ControlMessage::GetSnodeReply(GetSnode {
                kbps: u32::MAX,
                ..q
            })
        );
        cfg.snode = Some(Snode {
            key: [5; 32],
            path: Label::new(0x153).unwrap(),
            version: 22,
        });
        // Asked over a 10-bit director: the snode path's first director is widened for it.
        let len = respond(&cfg, 0x404, &frame[..n], None, &mut out).unwrap();
        let ControlMessage::GetSnodeReply(r) =
            ControlMessage::parse(control_frame(&out[..len]).unwrap()).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (r.snode_key, r.snode_version, r.path_to_snode),
            ([5; 32], 22, 0x5400)
        );
        // The node is its own snode (the cjdns face of a route server): the path is the self
        // route, which the asker splices onto its label for us and so reaches us.
        cfg.snode = Some(Snode {
            key: [6; 32],
            path: Label::SELF,
            version: 22,
        });
        for asker in [0x13, 0x404] {
            let len = respond(&cfg, asker, &frame[..n], None, &mut out).unwrap();
            let ControlMessage::GetSnodeReply(r) =
                ControlMessage::parse(control_frame(&out[..len]).unwrap()).unwrap()
            else {
                panic!()
            };
            assert_eq!((r.snode_key, r.path_to_snode), ([6; 32], 1));
        }
        let old = ControlMessage::GetSnodeQuery(GetSnode { version: 19, ..q });
        let n2 = old.emit(&mut frame).unwrap();
        assert_eq!(
            respond(&cfg, 0x13, &frame[..n2], None, &mut out),
            Err(NoReply::IncompatibleVersion(19))
        );

        let n = ControlMessage::LlAddrQuery(LlAddr {
            version: 22,
            addr: LinkAddress::Query,
        })
        .emit(&mut frame)
        .unwrap();
        let peer = LinkAddress::Udp4 {
            port: 11001,
            addr: [10, 77, 0, 1],
        };
        let len = respond(&cfg, 0x13, &frame[..n], Some(peer), &mut out).unwrap();
        let reply = ControlMessage::parse(control_frame(&out[..len]).unwrap()).unwrap();
        assert_eq!(
            reply,
            ControlMessage::LlAddrReply(LlAddr {
                version: 22,
                addr: peer
            })
        );
        assert_eq!(
            respond(&cfg, 0x153, &frame[..n], Some(peer), &mut out),
            Err(NoReply::NotOneHop)
        );
        assert_eq!(
            respond(&cfg, 0x13, &frame[..n], None, &mut out),
            Err(NoReply::UnknownLinkAddress)
        );
    }

    #[test]
    fn responder_passes_on_errors_and_replies() {
        let scheme = EncodingScheme::v358();
        let cfg = config(&scheme);
        let mut out = [0u8; 300];
        for hex in [PONG, KEYPONG, ERROR] {
            assert!(matches!(
                respond(&cfg, 0x13, &h(hex), None, &mut out),
                Err(NoReply::NotAQuery(_))
            ));
        }
        let mut bad = h(PONG);
        bad[0] ^= 0xff;
        assert!(matches!(
            respond(&cfg, 0x13, &bad, None, &mut out),
            Err(NoReply::Malformed(_))
        ));
    }

    #[test]
    fn switch_error_packet_layout() {
        let mut cause = vec![0u8; 400];
        cause[..12].copy_from_slice(&SwitchHeaderRepr::new(0x8000_0000_0000_0153).to_bytes());
        let mut out = [0u8; ERROR_PACKET_MAX];
        let n = write_switch_error(&cause, ErrorCode::MALFORMED_ADDRESS, &mut out).unwrap();
        assert_eq!(n, ERROR_PACKET_MAX);
        assert_eq!(&out[..12], &h("ca80000000000001 03 40 ffff"));
        assert_eq!(&out[12..16], &CONTROL_MARKER);
        let ControlMessage::Error { code, cause: c } = ControlMessage::parse(&out[16..n]).unwrap()
        else {
            panic!()
        };
        assert_eq!(code, ErrorCode::MALFORMED_ADDRESS);
        assert_eq!(c, &cause[..256]);
    }
}
