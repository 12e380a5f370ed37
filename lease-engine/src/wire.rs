//! The binary wire format of lease messages: checked zero-copy views and plain structs that emit.
//!
//! Every message is one signed frame (all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | version, [`VERSION`] (1) |
//! | 1 | 1 | kind: 1 lease, 2 virtual-switch lease, 3 configuration |
//! | 2 | 2 | body length `n` |
//! | 4 | n | body (layout per kind, see [`LeaseView`], [`VirtualSwitchView`], [`ConfigView`]) |
//! | 4+n | 64 | Ed25519 signature over `SIGNING_CONTEXT ‖ bytes[0 .. 4+n]` |
//!
//! # Contract
//! - [`Frame::new_checked`] and the typed views never panic on any input; once a view is built,
//!   every accessor is in bounds (the check established the exact length).
//! - A frame is exactly `4 + n + 64` bytes; trailing bytes are an error, not ignored, so one
//!   message has exactly one encoding and its signature covers all of it.
//! - Emitting a struct whose [`Message::check`] passes cannot fail; the parse of an emitted
//!   message gives back the same struct.
//! - Signatures are *not* checked here; that is the engine's job (it knows who must have signed).

use thiserror::Error;

use crate::sign::{Signer, SigningKey};
use crate::{LeaseId, UnixTime};

/// The frame version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Bytes before the body.
pub const HEADER_LEN: usize = 4;
/// Bytes of the trailing signature.
pub const SIGNATURE_LEN: usize = 64;
/// Body length of a bandwidth lease.
pub const LEASE_BODY_LEN: usize = 132;
/// Body length of a virtual-switch lease without its lease lists.
pub const VSWITCH_FIXED_LEN: usize = 98;
/// Most in-leases (and, separately, out-leases) one virtual-switch lease may list.
pub const MAX_VSWITCH_LEASES: usize = 32;
/// Body length of a configuration message before the command's arguments.
pub const CONFIG_FIXED_LEN: usize = 57;
/// Highest virtual-network traffic class (4 bits).
pub const MAX_CLASS: u8 = 15;

/// Why bytes are not a well-formed lease message. Zero-size-ish and `Copy`: parsing is cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// Fewer bytes than the header and signature need.
    #[error("truncated: {0} bytes is shorter than header and signature")]
    Truncated(usize),
    /// A frame version this crate does not speak.
    #[error("unsupported version {0}")]
    BadVersion(u8),
    /// The total length disagrees with the body length in the header.
    #[error("frame is {actual} bytes but its header says {expected}")]
    LengthMismatch {
        /// `4 + n + 64`.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// A message kind this crate does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// The body length is wrong for its kind.
    #[error("body of {found} bytes is wrong for this kind (expected {expected})")]
    BadBodyLength {
        /// Expected body length (for variable bodies: the length implied by its counts).
        expected: usize,
        /// Body length found.
        found: usize,
    },
    /// A virtual-switch lease lists more than [`MAX_VSWITCH_LEASES`] leases on one side.
    #[error("virtual-switch lease lists {0} leases on one side (at most 32)")]
    TooManyLeases(u8),
    /// A configuration command code this crate does not know.
    #[error("unknown configuration command {0}")]
    UnknownCommand(u8),
    /// A traffic class above [`MAX_CLASS`].
    #[error("traffic class {0} is above 15")]
    BadClass(u8),
    /// A lease of 0 kbps.
    #[error("lease of 0 kbps")]
    ZeroRate,
    /// A time span whose end is not after its start.
    #[error("empty time span: end {end} is not after start {start}")]
    EmptySpan {
        /// Start, unix seconds.
        start: u64,
        /// End, unix seconds.
        end: u64,
    },
}

/// Message kinds (byte 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bandwidth lease, signed by the node whose link it is.
    Lease,
    /// A virtual-switch lease, signed by the node.
    VirtualSwitch,
    /// A configuration command, signed by the current owner.
    Config,
}

impl Kind {
    fn from_u8(b: u8) -> Result<Self, WireError> {
        match b {
            1 => Ok(Self::Lease),
            2 => Ok(Self::VirtualSwitch),
            3 => Ok(Self::Config),
            other => Err(WireError::UnknownKind(other)),
        }
    }

    const fn code(self) -> u8 {
        match self {
            Self::Lease => 1,
            Self::VirtualSwitch => 2,
            Self::Config => 3,
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

fn check_span(start: u64, end: u64) -> Result<(), WireError> {
    if end <= start {
        return Err(WireError::EmptySpan { start, end });
    }
    Ok(())
}

/// A checked view of one signed frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
    kind: Kind,
}

impl<'a> Frame<'a> {
    /// Checks the header and the exact length; the body is checked by [`Frame::view`].
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, WireError> {
        if bytes.len() < HEADER_LEN + SIGNATURE_LEN {
            return Err(WireError::Truncated(bytes.len()));
        }
        if bytes[0] != VERSION {
            return Err(WireError::BadVersion(bytes[0]));
        }
        let n = usize::from(be16(bytes, 2));
        let expected = HEADER_LEN + n + SIGNATURE_LEN;
        if bytes.len() != expected {
            return Err(WireError::LengthMismatch {
                expected,
                actual: bytes.len(),
            });
        }
        let kind = Kind::from_u8(bytes[1])?;
        Ok(Self { bytes, kind })
    }

    /// The message kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The body bytes.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..self.bytes.len() - SIGNATURE_LEN]
    }

    /// The bytes the signature covers (after [`crate::sign::SIGNING_CONTEXT`]).
    pub fn signed_bytes(&self) -> &'a [u8] {
        &self.bytes[..self.bytes.len() - SIGNATURE_LEN]
    }

    /// The signature.
    pub fn signature(&self) -> [u8; 64] {
        arr(self.bytes, self.bytes.len() - SIGNATURE_LEN)
    }

    /// The typed, checked view of the body.
    pub fn view(&self) -> Result<MessageView<'a>, WireError> {
        let body = self.body();
        Ok(match self.kind {
            Kind::Lease => MessageView::Lease(LeaseView::new_checked(body)?),
            Kind::VirtualSwitch => {
                MessageView::VirtualSwitch(VirtualSwitchView::new_checked(body)?)
            }
            Kind::Config => MessageView::Config(ConfigView::new_checked(body)?),
        })
    }
}

/// The typed view of a frame's body.
#[derive(Debug, Clone, Copy)]
pub enum MessageView<'a> {
    /// A bandwidth lease.
    Lease(LeaseView<'a>),
    /// A virtual-switch lease.
    VirtualSwitch(VirtualSwitchView<'a>),
    /// A configuration command.
    Config(ConfigView<'a>),
}

/// A bandwidth lease body (132 bytes).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 16 | lease id |
/// | 16 | 32 | node: Ed25519 key of the node whose egress link this is (the issuer and signer) |
/// | 48 | 32 | peer: cjdns (curve25519) key of the node at the other end of the link |
/// | 80 | 4 | kbps (≥ 1) |
/// | 84 | 8 | start, unix seconds |
/// | 92 | 8 | end, unix seconds (> start) |
/// | 100 | 32 | owner: Ed25519 key of the holder |
#[derive(Debug, Clone, Copy)]
pub struct LeaseView<'a>(&'a [u8]);

impl<'a> LeaseView<'a> {
    /// Checks length and values.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        if body.len() != LEASE_BODY_LEN {
            return Err(WireError::BadBodyLength {
                expected: LEASE_BODY_LEN,
                found: body.len(),
            });
        }
        let v = Self(body);
        if v.kbps() == 0 {
            return Err(WireError::ZeroRate);
        }
        check_span(v.start().0, v.end().0)?;
        Ok(v)
    }
    /// Lease id.
    pub fn id(&self) -> LeaseId {
        LeaseId(arr(self.0, 0))
    }
    /// The issuing node's signing key.
    pub fn node(&self) -> SigningKey {
        SigningKey(arr(self.0, 16))
    }
    /// The peer's cjdns key.
    pub fn peer(&self) -> [u8; 32] {
        arr(self.0, 48)
    }
    /// Leased rate in kbit/s.
    pub fn kbps(&self) -> u32 {
        be32(self.0, 80)
    }
    /// Start of the lease.
    pub fn start(&self) -> UnixTime {
        UnixTime(be64(self.0, 84))
    }
    /// End of the lease (exclusive).
    pub fn end(&self) -> UnixTime {
        UnixTime(be64(self.0, 92))
    }
    /// The holder's signing key.
    pub fn owner(&self) -> SigningKey {
        SigningKey(arr(self.0, 100))
    }
}

/// A virtual-switch lease body (98 + 16·(n_in + n_out) bytes).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 16 | lease id |
/// | 16 | 32 | node: Ed25519 key of the node (issuer and signer) |
/// | 48 | 32 | owner: Ed25519 key of the holder |
/// | 80 | 8 | start, unix seconds |
/// | 88 | 8 | end, unix seconds (> start) |
/// | 96 | 1 | n_in (≤ 32) |
/// | 97 | 1 | n_out (≤ 32) |
/// | 98 | 16·n_in | ids of the leases on links *into* the node it may connect |
/// | … | 16·n_out | ids of the leases on the node's own links it may connect them to |
#[derive(Debug, Clone, Copy)]
pub struct VirtualSwitchView<'a>(&'a [u8]);

impl<'a> VirtualSwitchView<'a> {
    /// Checks length, counts and values.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        if body.len() < VSWITCH_FIXED_LEN {
            return Err(WireError::BadBodyLength {
                expected: VSWITCH_FIXED_LEN,
                found: body.len(),
            });
        }
        let (n_in, n_out) = (body[96], body[97]);
        for n in [n_in, n_out] {
            if usize::from(n) > MAX_VSWITCH_LEASES {
                return Err(WireError::TooManyLeases(n));
            }
        }
        let expected = VSWITCH_FIXED_LEN + 16 * (usize::from(n_in) + usize::from(n_out));
        if body.len() != expected {
            return Err(WireError::BadBodyLength {
                expected,
                found: body.len(),
            });
        }
        let v = Self(body);
        check_span(v.start().0, v.end().0)?;
        Ok(v)
    }
    /// Lease id.
    pub fn id(&self) -> LeaseId {
        LeaseId(arr(self.0, 0))
    }
    /// The node's signing key.
    pub fn node(&self) -> SigningKey {
        SigningKey(arr(self.0, 16))
    }
    /// The holder's signing key.
    pub fn owner(&self) -> SigningKey {
        SigningKey(arr(self.0, 48))
    }
    /// Start.
    pub fn start(&self) -> UnixTime {
        UnixTime(be64(self.0, 80))
    }
    /// End (exclusive).
    pub fn end(&self) -> UnixTime {
        UnixTime(be64(self.0, 88))
    }
    /// Leases into the node that may be connected.
    pub fn ins(&self) -> impl ExactSizeIterator<Item = LeaseId> + 'a {
        let n = usize::from(self.0[96]);
        self.0[VSWITCH_FIXED_LEN..VSWITCH_FIXED_LEN + 16 * n]
            .chunks_exact(16)
            .map(|c| LeaseId(arr(c, 0)))
    }
    /// Leases out of the node they may be connected to.
    pub fn outs(&self) -> impl ExactSizeIterator<Item = LeaseId> + 'a {
        let at = VSWITCH_FIXED_LEN + 16 * usize::from(self.0[96]);
        self.0[at..].chunks_exact(16).map(|c| LeaseId(arr(c, 0)))
    }
}

/// A configuration body (57 bytes + the command's arguments).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 16 | target: id of the lease or virtual-switch lease |
/// | 16 | 32 | signer: Ed25519 key of the owner giving the command |
/// | 48 | 8 | sequence number, strictly increasing per target (replay protection) |
/// | 56 | 1 | command: 1 attach, 2 set classes, 3 release, 4 transfer |
/// | 57 | … | arguments: attach = 8-byte network id (0 detaches); set classes = default class, max class (1 byte each, ≤ 15); release = none; transfer = 32-byte new owner key |
#[derive(Debug, Clone, Copy)]
pub struct ConfigView<'a>(&'a [u8]);

impl<'a> ConfigView<'a> {
    /// Checks length, command and arguments.
    pub fn new_checked(body: &'a [u8]) -> Result<Self, WireError> {
        if body.len() < CONFIG_FIXED_LEN {
            return Err(WireError::BadBodyLength {
                expected: CONFIG_FIXED_LEN,
                found: body.len(),
            });
        }
        let args = match body[56] {
            1 => 8,
            2 => 2,
            3 => 0,
            4 => 32,
            other => return Err(WireError::UnknownCommand(other)),
        };
        let expected = CONFIG_FIXED_LEN + args;
        if body.len() != expected {
            return Err(WireError::BadBodyLength {
                expected,
                found: body.len(),
            });
        }
        if body[56] == 2 {
            for c in [body[57], body[58]] {
                if c > MAX_CLASS {
                    return Err(WireError::BadClass(c));
                }
            }
        }
        Ok(Self(body))
    }
    /// The lease addressed.
    pub fn target(&self) -> LeaseId {
        LeaseId(arr(self.0, 0))
    }
    /// Who claims to give the command.
    pub fn signer(&self) -> SigningKey {
        SigningKey(arr(self.0, 16))
    }
    /// Sequence number.
    pub fn seq(&self) -> u64 {
        be64(self.0, 48)
    }
    /// The command.
    pub fn command(&self) -> Command {
        let a = &self.0[CONFIG_FIXED_LEN..];
        match self.0[56] {
            1 => Command::Attach {
                network: be64(a, 0),
            },
            2 => Command::SetClasses {
                default_class: a[0],
                max_class: a[1],
            },
            3 => Command::Release,
            _ => Command::Transfer {
                new_owner: SigningKey(arr(a, 0)),
            },
        }
    }
}

/// A configuration command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Put the lease into virtual network `network` (0: take it out of any).
    Attach {
        /// Network id chosen by the owner.
        network: u64,
    },
    /// How the owner's traffic classes map onto the lease: packets whose header carries no class
    /// (or `0xFFFF`) ride `default_class`; classes above `max_class` are lowered to it.
    SetClasses {
        /// Class for unclassed packets (0..=15).
        default_class: u8,
        /// Highest class the owner's packets may use (0..=15).
        max_class: u8,
    },
    /// Give the lease up now; the node forgets it.
    Release,
    /// Hand the lease to another owner.
    Transfer {
        /// The new holder's signing key.
        new_owner: SigningKey,
    },
}

impl Command {
    fn code(&self) -> u8 {
        match self {
            Self::Attach { .. } => 1,
            Self::SetClasses { .. } => 2,
            Self::Release => 3,
            Self::Transfer { .. } => 4,
        }
    }
    fn args_len(&self) -> usize {
        match self {
            Self::Attach { .. } => 8,
            Self::SetClasses { .. } => 2,
            Self::Release => 0,
            Self::Transfer { .. } => 32,
        }
    }
}

/// A bandwidth lease: guaranteed `kbps` on the link from `node` to `peer` during
/// `[start, end)`, held by `owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Id chosen by the issuing node (16 random bytes).
    pub id: LeaseId,
    /// The node whose egress link is leased; issues and signs the lease.
    pub node: SigningKey,
    /// cjdns key of the peer at the other end of the link.
    pub peer: [u8; 32],
    /// Guaranteed rate, kbit/s.
    pub kbps: u32,
    /// Start, unix seconds.
    pub start: UnixTime,
    /// End (exclusive), unix seconds.
    pub end: UnixTime,
    /// The holder.
    pub owner: SigningKey,
}

impl From<LeaseView<'_>> for Lease {
    fn from(v: LeaseView<'_>) -> Self {
        Self {
            id: v.id(),
            node: v.node(),
            peer: v.peer(),
            kbps: v.kbps(),
            start: v.start(),
            end: v.end(),
            owner: v.owner(),
        }
    }
}

/// A virtual-switch lease: the right for `owner` to connect the leases `ins` (links into `node`)
/// to the leases `outs` (links out of `node`) during `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualSwitchLease {
    /// Id chosen by the issuing node.
    pub id: LeaseId,
    /// The node; issues and signs.
    pub node: SigningKey,
    /// The holder.
    pub owner: SigningKey,
    /// Start, unix seconds.
    pub start: UnixTime,
    /// End (exclusive).
    pub end: UnixTime,
    /// Leases on links into the node (at most 32).
    pub ins: Vec<LeaseId>,
    /// Leases on the node's own links (at most 32).
    pub outs: Vec<LeaseId>,
}

impl From<VirtualSwitchView<'_>> for VirtualSwitchLease {
    fn from(v: VirtualSwitchView<'_>) -> Self {
        Self {
            id: v.id(),
            node: v.node(),
            owner: v.owner(),
            start: v.start(),
            end: v.end(),
            ins: v.ins().collect(),
            outs: v.outs().collect(),
        }
    }
}

/// A configuration command from a lease's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The lease or virtual-switch lease addressed.
    pub target: LeaseId,
    /// The owner giving the command (must sign).
    pub signer: SigningKey,
    /// Strictly increasing per target.
    pub seq: u64,
    /// What to do.
    pub command: Command,
}

impl From<ConfigView<'_>> for Config {
    fn from(v: ConfigView<'_>) -> Self {
        Self {
            target: v.target(),
            signer: v.signer(),
            seq: v.seq(),
            command: v.command(),
        }
    }
}

/// Any lease message as a plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A bandwidth lease.
    Lease(Lease),
    /// A virtual-switch lease.
    VirtualSwitch(VirtualSwitchLease),
    /// A configuration command.
    Config(Config),
}

impl From<MessageView<'_>> for Message {
    fn from(v: MessageView<'_>) -> Self {
        match v {
            MessageView::Lease(l) => Self::Lease(l.into()),
            MessageView::VirtualSwitch(s) => Self::VirtualSwitch(s.into()),
            MessageView::Config(c) => Self::Config(c.into()),
        }
    }
}

impl Message {
    /// Parses a whole frame into a value and its signature (not verified).
    pub fn parse(bytes: &[u8]) -> Result<(Self, [u8; 64]), WireError> {
        let frame = Frame::new_checked(bytes)?;
        Ok((frame.view()?.into(), frame.signature()))
    }

    fn kind(&self) -> Kind {
        match self {
            Self::Lease(_) => Kind::Lease,
            Self::VirtualSwitch(_) => Kind::VirtualSwitch,
            Self::Config(_) => Kind::Config,
        }
    }

    /// The value rules the parser enforces; emitting a message that fails them is refused.
    pub fn check(&self) -> Result<(), WireError> {
        match self {
            Self::Lease(l) => {
                if l.kbps == 0 {
                    return Err(WireError::ZeroRate);
                }
                check_span(l.start.0, l.end.0)
            }
            Self::VirtualSwitch(s) => {
                for n in [s.ins.len(), s.outs.len()] {
                    if n > MAX_VSWITCH_LEASES {
                        return Err(WireError::TooManyLeases(u8::try_from(n).unwrap_or(u8::MAX)));
                    }
                }
                check_span(s.start.0, s.end.0)
            }
            Self::Config(c) => match c.command {
                Command::SetClasses {
                    default_class,
                    max_class,
                } => {
                    for x in [default_class, max_class] {
                        if x > MAX_CLASS {
                            return Err(WireError::BadClass(x));
                        }
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
        }
    }

    /// Body length in bytes.
    pub fn body_len(&self) -> usize {
        match self {
            Self::Lease(_) => LEASE_BODY_LEN,
            Self::VirtualSwitch(s) => VSWITCH_FIXED_LEN + 16 * (s.ins.len() + s.outs.len()),
            Self::Config(c) => CONFIG_FIXED_LEN + c.command.args_len(),
        }
    }

    /// Whole frame length, signature included.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.body_len() + SIGNATURE_LEN
    }

    /// Writes header and body into `out[..buffer_len() - 64]` (the part to sign).
    fn emit_unsigned(&self, out: &mut [u8]) {
        let n = self.body_len();
        out[0] = VERSION;
        out[1] = self.kind().code();
        // body_len ≤ 98 + 16·64 for checked messages: fits in u16.
        out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        let b = &mut out[HEADER_LEN..HEADER_LEN + n];
        match self {
            Self::Lease(l) => {
                b[0..16].copy_from_slice(&l.id.0);
                b[16..48].copy_from_slice(&l.node.0);
                b[48..80].copy_from_slice(&l.peer);
                b[80..84].copy_from_slice(&l.kbps.to_be_bytes());
                b[84..92].copy_from_slice(&l.start.0.to_be_bytes());
                b[92..100].copy_from_slice(&l.end.0.to_be_bytes());
                b[100..132].copy_from_slice(&l.owner.0);
            }
            Self::VirtualSwitch(s) => {
                b[0..16].copy_from_slice(&s.id.0);
                b[16..48].copy_from_slice(&s.node.0);
                b[48..80].copy_from_slice(&s.owner.0);
                b[80..88].copy_from_slice(&s.start.0.to_be_bytes());
                b[88..96].copy_from_slice(&s.end.0.to_be_bytes());
                b[96] = s.ins.len() as u8;
                b[97] = s.outs.len() as u8;
                for (chunk, id) in b[VSWITCH_FIXED_LEN..]
                    .chunks_exact_mut(16)
                    .zip(s.ins.iter().chain(s.outs.iter()))
                {
                    chunk.copy_from_slice(&id.0);
                }
            }
            Self::Config(c) => {
                b[0..16].copy_from_slice(&c.target.0);
                b[16..48].copy_from_slice(&c.signer.0);
                b[48..56].copy_from_slice(&c.seq.to_be_bytes());
                b[56] = c.command.code();
                let a = &mut b[CONFIG_FIXED_LEN..];
                match c.command {
                    Command::Attach { network } => a.copy_from_slice(&network.to_be_bytes()),
                    Command::SetClasses {
                        default_class,
                        max_class,
                    } => {
                        a[0] = default_class;
                        a[1] = max_class;
                    }
                    Command::Release => {}
                    Command::Transfer { new_owner } => a.copy_from_slice(&new_owner.0),
                }
            }
        }
    }

    /// Emits the frame with a given signature (for re-encoding a parsed message).
    pub fn emit_with_signature(&self, signature: &[u8; 64]) -> Result<Vec<u8>, WireError> {
        self.check()?;
        let mut out = vec![0u8; self.buffer_len()];
        self.emit_unsigned(&mut out);
        let at = out.len() - SIGNATURE_LEN;
        out[at..].copy_from_slice(signature);
        Ok(out)
    }

    /// Emits the frame signed by `signer`.
    pub fn emit_signed(&self, signer: &Signer) -> Result<Vec<u8>, WireError> {
        self.check()?;
        let mut out = vec![0u8; self.buffer_len()];
        self.emit_unsigned(&mut out);
        let at = out.len() - SIGNATURE_LEN;
        let sig = signer.sign(&out[..at]);
        out[at..].copy_from_slice(&sig);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            id: LeaseId([1; 16]),
            node: SigningKey([2; 32]),
            peer: [3; 32],
            kbps: 20_000,
            start: UnixTime(1000),
            end: UnixTime(2000),
            owner: SigningKey([4; 32]),
        }
    }

    #[test]
    fn round_trips() {
        let msgs = [
            Message::Lease(lease()),
            Message::VirtualSwitch(VirtualSwitchLease {
                id: LeaseId([5; 16]),
                node: SigningKey([2; 32]),
                owner: SigningKey([4; 32]),
                start: UnixTime(1),
                end: UnixTime(2),
                ins: vec![LeaseId([6; 16]), LeaseId([7; 16])],
                outs: vec![LeaseId([8; 16])],
            }),
            Message::Config(Config {
                target: LeaseId([1; 16]),
                signer: SigningKey([4; 32]),
                seq: 9,
                command: Command::Attach { network: 77 },
            }),
            Message::Config(Config {
                target: LeaseId([1; 16]),
                signer: SigningKey([4; 32]),
                seq: 10,
                command: Command::SetClasses {
                    default_class: 3,
                    max_class: 15,
                },
            }),
            Message::Config(Config {
                target: LeaseId([1; 16]),
                signer: SigningKey([4; 32]),
                seq: 11,
                command: Command::Release,
            }),
            Message::Config(Config {
                target: LeaseId([1; 16]),
                signer: SigningKey([4; 32]),
                seq: 12,
                command: Command::Transfer {
                    new_owner: SigningKey([9; 32]),
                },
            }),
        ];
        for m in msgs {
            let bytes = m.emit_with_signature(&[0xaa; 64]).unwrap();
            assert_eq!(bytes.len(), m.buffer_len());
            let (back, sig) = Message::parse(&bytes).unwrap();
            assert_eq!(back, m);
            assert_eq!(sig, [0xaa; 64]);
        }
    }

    #[test]
    fn lease_layout_is_fixed() {
        let bytes = Message::Lease(lease())
            .emit_with_signature(&[0; 64])
            .unwrap();
        assert_eq!(bytes.len(), 4 + 132 + 64);
        assert_eq!(&bytes[..4], &[1, 1, 0, 132]);
        assert_eq!(&bytes[84..88], &20_000u32.to_be_bytes());
    }

    #[test]
    fn rejects_malformed() {
        let good = Message::Lease(lease())
            .emit_with_signature(&[0; 64])
            .unwrap();
        assert_eq!(Message::parse(&good[..10]), Err(WireError::Truncated(10)));
        let mut b = good.clone();
        b[0] = 2;
        assert_eq!(Message::parse(&b), Err(WireError::BadVersion(2)));
        let mut b = good.clone();
        b.push(0);
        assert!(matches!(
            Message::parse(&b),
            Err(WireError::LengthMismatch { .. })
        ));
        let mut b = good.clone();
        b[1] = 9;
        assert_eq!(Message::parse(&b), Err(WireError::UnknownKind(9)));
        let mut b = good.clone();
        b[84..88].copy_from_slice(&[0; 4]);
        assert_eq!(Message::parse(&b), Err(WireError::ZeroRate));
        let mut b = good;
        b[96..104].copy_from_slice(&[0; 8]);
        assert!(matches!(
            Message::parse(&b),
            Err(WireError::EmptySpan { .. })
        ));
        let bad = Message::Lease(Lease { kbps: 0, ..lease() });
        assert_eq!(bad.emit_with_signature(&[0; 64]), Err(WireError::ZeroRate));
    }
}
