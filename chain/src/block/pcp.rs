//! The PacketCrypt proof (PcP) wire format: a TLV list (`varint type ‖ varint length ‖ value`)
//! ending with type 0 / length 0.
//!
//! Types: 1 = `LE32 nonce ‖ 4 × 1024-byte announcements ‖ tree proof`, 2 = ed25519
//! signatures (one per announcement with a signing key), 3 = content proofs (PcP ≤ 1 only),
//! 4 = version (a varint). [`PcProof::parse`] follows the lenient historical parser (unknown
//! types are skipped, a later duplicate replaces an earlier one) and records how many bytes it
//! consumed; [`PcProof::is_canonical`] is the PKT-FullNode "IsStandard" rule that consumed ==
//! canonical size, which rejects unknown, duplicate or padded TLVs.

use super::{varint, BlockError};
use crate::announce::{Announcement, ANN_LEN};

const TYPE_END: u64 = 0;
const TYPE_PCP: u64 = 1;
const TYPE_SIGNATURES: u64 = 2;
const TYPE_CONTENT_PROOFS: u64 = 3;
const TYPE_VERSION: u64 = 4;
/// Smallest allowed pcp TLV length is one byte more than nonce + 4 announcements.
const PCP_MIN_EXCLUSIVE: u64 = 4 + 4 * ANN_LEN as u64;
/// Largest allowed pcp TLV length.
const PCP_MAX: u64 = 131_072;

/// A parsed PacketCrypt proof.
#[derive(Clone, PartialEq, Eq)]
pub struct PcProof {
    /// The low nonce.
    pub nonce: u32,
    /// The four announcements, in hashing order.
    pub anns: Box<[[u8; ANN_LEN]; 4]>,
    /// The range-merkle tree proof bytes.
    pub tree_proof: Vec<u8>,
    /// Signatures for the announcements that have signing keys.
    pub signatures: [Option<[u8; 64]>; 4],
    /// Concatenated content proofs (PcP ≤ 1), if the TLV is present.
    pub content_proofs: Option<Vec<u8>>,
    /// PcP version (0 if the version TLV is absent).
    pub version: u32,
    /// Bytes consumed while parsing (the canonical size for a proof built with [`PcProof::new`]).
    pub wire_len: usize,
}

impl core::fmt::Debug for PcProof {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PcProof")
            .field("nonce", &self.nonce)
            .field("version", &self.version)
            .field("tree_proof_len", &self.tree_proof.len())
            .field("wire_len", &self.wire_len)
            .finish_non_exhaustive()
    }
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: u64) -> Result<&'a [u8], BlockError> {
    let n = usize::try_from(n).map_err(|_| BlockError::Truncated("pcp entity"))?;
    let end = pos
        .checked_add(n)
        .ok_or(BlockError::Truncated("pcp entity"))?;
    let s = buf
        .get(*pos..end)
        .ok_or(BlockError::Truncated("pcp entity"))?;
    *pos = end;
    Ok(s)
}

impl PcProof {
    /// A proof built in memory (miner side).
    /// Its `wire_len` is set to the canonical size, as if it had been parsed from
    /// [`PcProof::serialize`]'s output (update it if you add signatures or content proofs).
    pub fn new(nonce: u32, anns: [[u8; ANN_LEN]; 4], tree_proof: Vec<u8>, version: u32) -> Self {
        let mut p = PcProof {
            nonce,
            anns: Box::new(anns),
            tree_proof,
            signatures: [None; 4],
            content_proofs: None,
            version,
            wire_len: 0,
        };
        p.wire_len = p.canonical_size();
        p
    }

    /// Parses a PcP at the start of `buf` (it is followed by the transactions in a block).
    pub fn parse(buf: &[u8]) -> Result<Self, BlockError> {
        let mut pos = 0usize;
        let mut pcp: Option<PcProof> = None;
        let mut signatures_raw: Option<&[u8]> = None;
        let mut content = None;
        let mut version = 0u32;
        loop {
            let ty = varint::read(buf, &mut pos)?;
            let len = varint::read(buf, &mut pos)?;
            match ty {
                TYPE_END => break,
                TYPE_PCP => {
                    if len <= PCP_MIN_EXCLUSIVE || len > PCP_MAX {
                        return Err(BlockError::PcpLength(len));
                    }
                    let v = take(buf, &mut pos, len)?;
                    let nonce = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                    let mut anns = Box::new([[0u8; ANN_LEN]; 4]);
                    for (i, a) in anns.iter_mut().enumerate() {
                        a.copy_from_slice(&v[4 + i * ANN_LEN..4 + (i + 1) * ANN_LEN]);
                    }
                    let tree_proof = v[PCP_MIN_EXCLUSIVE as usize..].to_vec();
                    pcp = Some(PcProof {
                        nonce,
                        anns,
                        tree_proof,
                        signatures: [None; 4],
                        content_proofs: None,
                        version: 0,
                        wire_len: 0,
                    });
                }
                TYPE_SIGNATURES => {
                    if pcp.is_none() {
                        return Err(BlockError::EntityBeforePcp("signatures"));
                    }
                    signatures_raw = Some(take(buf, &mut pos, len)?);
                }
                TYPE_CONTENT_PROOFS => {
                    if pcp.is_none() {
                        return Err(BlockError::EntityBeforePcp("content proofs"));
                    }
                    content = Some(take(buf, &mut pos, len)?.to_vec());
                }
                TYPE_VERSION => {
                    let v = take(buf, &mut pos, len)?;
                    let mut p = 0;
                    let ver = varint::read(v, &mut p)?;
                    if p != v.len() {
                        return Err(BlockError::BadVersionEntity);
                    }
                    version = u32::try_from(ver).map_err(|_| BlockError::BadVersionEntity)?;
                }
                _ => {
                    take(buf, &mut pos, len)?;
                }
            }
        }
        let mut pcp = pcp.ok_or(BlockError::MissingPcp)?;
        if let Some(raw) = signatures_raw {
            let mut rest = raw;
            for i in 0..4 {
                let has_key = Announcement::new_checked(&pcp.anns[i][..])
                    .map(|a| a.has_signing_key())
                    .unwrap_or(false);
                if !has_key {
                    continue;
                }
                let (sig, tail) = rest
                    .split_at_checked(64)
                    .ok_or(BlockError::BadSignatureEntity)?;
                let mut s = [0u8; 64];
                s.copy_from_slice(sig);
                pcp.signatures[i] = Some(s);
                rest = tail;
            }
            if !rest.is_empty() {
                return Err(BlockError::BadSignatureEntity);
            }
        }
        pcp.content_proofs = content;
        pcp.version = version;
        pcp.wire_len = pos;
        Ok(pcp)
    }

    fn tlv_size(len: usize) -> usize {
        1 + varint::size(len as u64) + len
    }

    fn sig_len(&self) -> usize {
        self.signatures.iter().flatten().count() * 64
    }

    /// The canonical serialized size.
    pub fn canonical_size(&self) -> usize {
        let mut n = Self::tlv_size(4 + 4 * ANN_LEN + self.tree_proof.len());
        let sl = self.sig_len();
        if sl > 0 {
            n += Self::tlv_size(sl);
        }
        if let Some(c) = &self.content_proofs {
            if !c.is_empty() {
                n += Self::tlv_size(c.len());
            }
        }
        if self.version > 0 {
            n += Self::tlv_size(varint::size(u64::from(self.version)));
        }
        n + 2
    }

    /// "IsStandard": the parsed bytes are exactly the canonical encoding's size.
    pub fn is_canonical(&self) -> bool {
        self.wire_len == self.canonical_size()
    }

    /// Canonical serialization: pcp, signatures, content proofs, version, end.
    pub fn serialize(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.canonical_size());
        out.push(TYPE_PCP as u8);
        varint::write(&mut out, (4 + 4 * ANN_LEN + self.tree_proof.len()) as u64);
        out.extend_from_slice(&self.nonce.to_le_bytes());
        for a in self.anns.iter() {
            out.extend_from_slice(a);
        }
        out.extend_from_slice(&self.tree_proof);
        let sl = self.sig_len();
        if sl > 0 {
            out.push(TYPE_SIGNATURES as u8);
            varint::write(&mut out, sl as u64);
            for s in self.signatures.iter().flatten() {
                out.extend_from_slice(s);
            }
        }
        if let Some(c) = &self.content_proofs {
            if !c.is_empty() {
                out.push(TYPE_CONTENT_PROOFS as u8);
                varint::write(&mut out, c.len() as u64);
                out.extend_from_slice(c);
            }
        }
        if self.version > 0 {
            out.push(TYPE_VERSION as u8);
            varint::write(&mut out, varint::size(u64::from(self.version)) as u64);
            varint::write(&mut out, u64::from(self.version));
        }
        out.extend_from_slice(&[0, 0]);
        out
    }
}
