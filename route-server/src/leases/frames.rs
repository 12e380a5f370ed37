//! The two frame kinds the route server adds to the lease-engine's (`docs/route-server.md`):
//! buy orders ([`Order`], first byte `0xB1`) and virtual networks ([`VirtualNetwork`], first
//! byte `0xB2`), and [`parse`], which verifies any frame the book holds.
//!
//! Both are signed with the lease-engine signer (Ed25519 of the cjdns key over
//! `SIGNING_CONTEXT ‖ bytes`); their first byte differs from the lease frame version (1), so no
//! signature can be replayed across kinds. Parsing never panics: lengths are checked before any
//! field is read.

use pktmesh_crypto_auth::Address;
use pktmesh_lease_engine::sign::{Signer, SigningKey};
use pktmesh_lease_engine::wire::{Frame, Lease, MessageView, VirtualSwitchLease};
use pktmesh_lease_engine::{LeaseId, UnixTime};

use super::BookError;

/// First byte of an order.
pub const ORDER_MAGIC: u8 = 0xb1;
/// First byte of a virtual-network configuration.
pub const VNET_MAGIC: u8 = 0xb2;
/// Length of an order including its signature.
pub const ORDER_LEN: usize = 1 + 16 + 16 + 4 + 8 + 8 + 32 + 8 + 64;
/// Most leases in one virtual network.
pub const MAX_VNET_LEASES: usize = 32;

/// A request to buy a bandwidth lease on the link `node → peer`.
///
/// `[0xB1][node 16][peer 16][kbps u32][start u64][end u64][buyer 32][nonce u64][signature 64]`,
/// big-endian; signed by `buyer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    /// The node whose link it is.
    pub node: Address,
    /// The peer at the other end.
    pub peer: Address,
    /// kbit/s wanted.
    pub kbps: u32,
    /// Start, unix seconds.
    pub start: UnixTime,
    /// End, unix seconds.
    pub end: UnixTime,
    /// The buyer, who will own the lease.
    pub buyer: SigningKey,
    /// Makes orders distinct.
    pub nonce: u64,
}

pub(crate) fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[at..at + N]);
    a
}

impl Order {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(ORDER_LEN);
        b.push(ORDER_MAGIC);
        b.extend_from_slice(self.node.as_bytes());
        b.extend_from_slice(self.peer.as_bytes());
        b.extend_from_slice(&self.kbps.to_be_bytes());
        b.extend_from_slice(&self.start.0.to_be_bytes());
        b.extend_from_slice(&self.end.0.to_be_bytes());
        b.extend_from_slice(&self.buyer.0);
        b.extend_from_slice(&self.nonce.to_be_bytes());
        b
    }

    /// Serializes and signs (the signer must be the buyer).
    pub fn emit_signed(&self, signer: &Signer) -> Vec<u8> {
        let mut b = self.body();
        let sig = signer.sign(&b);
        b.extend_from_slice(&sig);
        b
    }

    /// Parses and verifies the buyer's signature.
    pub fn parse_verified(bytes: &[u8]) -> Result<Self, BookError> {
        if bytes.len() != ORDER_LEN || bytes[0] != ORDER_MAGIC {
            return Err(BookError::Malformed("order"));
        }
        let o = Self {
            node: Address::from_bytes(arr(bytes, 1)),
            peer: Address::from_bytes(arr(bytes, 17)),
            kbps: u32::from_be_bytes(arr(bytes, 33)),
            start: UnixTime(u64::from_be_bytes(arr(bytes, 37))),
            end: UnixTime(u64::from_be_bytes(arr(bytes, 45))),
            buyer: SigningKey(arr(bytes, 53)),
            nonce: u64::from_be_bytes(arr(bytes, 85)),
        };
        if o.kbps == 0 || o.end <= o.start {
            return Err(BookError::Malformed("order (zero rate or empty span)"));
        }
        if !o
            .buyer
            .verify(&bytes[..ORDER_LEN - 64], &arr(bytes, ORDER_LEN - 64))
        {
            return Err(BookError::BadSignature);
        }
        Ok(o)
    }
}

/// An owner's virtual network: leases along a path, in order, and the virtual-switch leases
/// that connect each to the next.
///
/// `[0xB2][id u64][owner 32][seq u64][n_leases u8][n_vswitches u8][lease ids 16·n][vswitch ids
/// 16·m][signature 64]`; signed by `owner`. A later `seq` for the same `(owner, id)` replaces
/// the network; an empty lease list deletes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualNetwork {
    /// Network id chosen by the owner (the `network` of attach commands).
    pub id: u64,
    /// The owner.
    pub owner: SigningKey,
    /// Version of this configuration.
    pub seq: u64,
    /// Bandwidth leases along the path, in order.
    pub leases: Vec<LeaseId>,
    /// Virtual-switch leases at the nodes in between.
    pub vswitches: Vec<LeaseId>,
}

impl VirtualNetwork {
    fn body(&self) -> Vec<u8> {
        let mut b = vec![VNET_MAGIC];
        b.extend_from_slice(&self.id.to_be_bytes());
        b.extend_from_slice(&self.owner.0);
        b.extend_from_slice(&self.seq.to_be_bytes());
        b.push(self.leases.len() as u8);
        b.push(self.vswitches.len() as u8);
        for l in self.leases.iter().chain(&self.vswitches) {
            b.extend_from_slice(&l.0);
        }
        b
    }

    /// Serializes and signs (the signer must be the owner). At most [`MAX_VNET_LEASES`] of
    /// each list are written.
    pub fn emit_signed(&self, signer: &Signer) -> Vec<u8> {
        let mut v = self.clone();
        v.leases.truncate(MAX_VNET_LEASES);
        v.vswitches.truncate(MAX_VNET_LEASES);
        let mut b = v.body();
        let sig = signer.sign(&b);
        b.extend_from_slice(&sig);
        b
    }

    /// Parses and verifies the owner's signature.
    pub fn parse_verified(bytes: &[u8]) -> Result<Self, BookError> {
        const FIXED: usize = 1 + 8 + 32 + 8 + 2;
        if bytes.len() < FIXED + 64 || bytes[0] != VNET_MAGIC {
            return Err(BookError::Malformed("virtual network"));
        }
        let (n, m) = (usize::from(bytes[49]), usize::from(bytes[50]));
        if n > MAX_VNET_LEASES || m > MAX_VNET_LEASES || bytes.len() != FIXED + 16 * (n + m) + 64 {
            return Err(BookError::Malformed("virtual network"));
        }
        let ids = |from: usize, count: usize| {
            (0..count)
                .map(|i| LeaseId(arr(bytes, from + 16 * i)))
                .collect::<Vec<_>>()
        };
        let v = Self {
            id: u64::from_be_bytes(arr(bytes, 1)),
            owner: SigningKey(arr(bytes, 9)),
            seq: u64::from_be_bytes(arr(bytes, 41)),
            leases: ids(FIXED, n),
            vswitches: ids(FIXED + 16 * n, m),
        };
        let signed = bytes.len() - 64;
        if !v.owner.verify(&bytes[..signed], &arr(bytes, signed)) {
            return Err(BookError::BadSignature);
        }
        Ok(v)
    }
}

/// A verified frame of any kind the book holds.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Order(Order),
    Lease(Lease),
    VSwitch(VirtualSwitchLease),
    Config(pktmesh_lease_engine::wire::Config),
    Network(VirtualNetwork),
}

impl Parsed {
    /// Who signed it (whose per-signer cap it counts against).
    pub(crate) fn signer(&self) -> SigningKey {
        match self {
            Parsed::Order(o) => o.buyer,
            Parsed::Lease(l) => l.node,
            Parsed::VSwitch(v) => v.node,
            Parsed::Config(c) => c.signer,
            Parsed::Network(n) => n.owner,
        }
    }
}

/// Parses `bytes` as any frame the book holds and verifies its signature.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed, BookError> {
    match bytes.first() {
        Some(&ORDER_MAGIC) => Ok(Parsed::Order(Order::parse_verified(bytes)?)),
        Some(&VNET_MAGIC) => Ok(Parsed::Network(VirtualNetwork::parse_verified(bytes)?)),
        _ => {
            let frame = Frame::new_checked(bytes)?;
            let sig = frame.signature();
            let signed = frame.signed_bytes();
            match frame.view()? {
                MessageView::Lease(v) => {
                    if !v.node().verify(signed, &sig) {
                        return Err(BookError::BadSignature);
                    }
                    Ok(Parsed::Lease(v.into()))
                }
                MessageView::VirtualSwitch(v) => {
                    if !v.node().verify(signed, &sig) {
                        return Err(BookError::BadSignature);
                    }
                    Ok(Parsed::VSwitch(v.into()))
                }
                MessageView::Config(c) => {
                    if !c.signer().verify(signed, &sig) {
                        return Err(BookError::BadSignature);
                    }
                    Ok(Parsed::Config(c.into()))
                }
            }
        }
    }
}

/// The cjdns address of a signing key.
pub(crate) fn address_of(k: &SigningKey) -> Result<Address, BookError> {
    Ok(k.cjdns_key().ok_or(BookError::BadKey)?.address())
}
