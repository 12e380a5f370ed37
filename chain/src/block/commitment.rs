//! The 48-byte PacketCrypt coinbase commitment and its extraction from a coinbase
//! transaction (plus the minimal transaction parsing that needs).
//!
//! Layout: `[0,4)` magic `0x0211f909`, `[4,8)` annMinTarget (compact), `[8,40)` root of the
//! announcement set, `[40,48)` annCount. It lives in an output script `6a 30 ‖ 48 bytes`.

use super::{varint, BlockError};
use crate::hash::dsha256;

/// Commitment magic (`09 f9 11 02` on the wire).
pub const COMMIT_MAGIC: u32 = 0x0211_f909;
/// Commitment size.
pub const COMMIT_LEN: usize = 48;

/// The coinbase commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoinbaseCommitment {
    /// The raw 48 bytes.
    pub bytes: [u8; COMMIT_LEN],
}

impl CoinbaseCommitment {
    /// Builds a commitment from its fields.
    pub fn new(ann_min_target: u32, merkle_root: &[u8; 32], ann_count: u64) -> Self {
        let mut bytes = [0u8; COMMIT_LEN];
        bytes[..4].copy_from_slice(&COMMIT_MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&ann_min_target.to_le_bytes());
        bytes[8..40].copy_from_slice(merkle_root);
        bytes[40..].copy_from_slice(&ann_count.to_le_bytes());
        CoinbaseCommitment { bytes }
    }

    /// The placeholder miners insert before the set is known (magic + 44 × `0xfc`).
    pub fn placeholder() -> Self {
        let mut bytes = [0xfcu8; COMMIT_LEN];
        bytes[..4].copy_from_slice(&COMMIT_MAGIC.to_le_bytes());
        CoinbaseCommitment { bytes }
    }

    /// Parses exactly 48 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, BlockError> {
        let bytes: [u8; COMMIT_LEN] = b
            .try_into()
            .map_err(|_| BlockError::Truncated("commitment"))?;
        Ok(CoinbaseCommitment { bytes })
    }

    /// Magic field.
    pub fn magic(&self) -> u32 {
        u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }
    /// Minimum announcement target (compact).
    pub fn ann_min_target(&self) -> u32 {
        u32::from_le_bytes([self.bytes[4], self.bytes[5], self.bytes[6], self.bytes[7]])
    }
    /// Root of the announcement set.
    pub fn merkle_root(&self) -> [u8; 32] {
        let mut r = [0u8; 32];
        r.copy_from_slice(&self.bytes[8..40]);
        r
    }
    /// Number of announcements in the set.
    pub fn ann_count(&self) -> u64 {
        let mut c = [0u8; 8];
        c.copy_from_slice(&self.bytes[40..48]);
        u64::from_le_bytes(c)
    }
}

/// One transaction output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxOut {
    /// Value in units.
    pub value: u64,
    /// Output script.
    pub script: Vec<u8>,
}

/// The parts of a transaction this crate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    /// Input scripts (for a coinbase: one script starting with the BIP34 height push).
    pub input_scripts: Vec<Vec<u8>>,
    /// Outputs.
    pub outputs: Vec<TxOut>,
    /// Serialized length consumed.
    pub len: usize,
    /// Transaction id (double SHA-256 of the non-witness serialization), raw byte order.
    pub txid: [u8; 32],
}

fn take<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    n: usize,
    what: &'static str,
) -> Result<&'a [u8], BlockError> {
    let end = pos.checked_add(n).ok_or(BlockError::Truncated(what))?;
    let s = buf.get(*pos..end).ok_or(BlockError::Truncated(what))?;
    *pos = end;
    Ok(s)
}

impl Tx {
    /// Parses one transaction at the start of `buf` (legacy or segwit serialization).
    pub fn parse(buf: &[u8]) -> Result<Self, BlockError> {
        let mut pos = 0;
        let mut stripped = Vec::with_capacity(buf.len().min(1 << 16));
        stripped.extend_from_slice(take(buf, &mut pos, 4, "tx version")?);
        let segwit = buf.get(pos) == Some(&0) && buf.get(pos + 1) == Some(&1);
        if segwit {
            pos += 2;
        }
        let body_start = pos;
        let n_in = varint::read(buf, &mut pos)?;
        let mut input_scripts = Vec::new();
        for _ in 0..n_in {
            take(buf, &mut pos, 36, "tx input")?;
            let l = varint::read(buf, &mut pos)? as usize;
            input_scripts.push(take(buf, &mut pos, l, "tx input script")?.to_vec());
            take(buf, &mut pos, 4, "tx sequence")?;
        }
        let n_out = varint::read(buf, &mut pos)?;
        let mut outputs = Vec::new();
        for _ in 0..n_out {
            let v = take(buf, &mut pos, 8, "tx output")?;
            let mut value = [0u8; 8];
            value.copy_from_slice(v);
            let l = varint::read(buf, &mut pos)? as usize;
            outputs.push(TxOut {
                value: u64::from_le_bytes(value),
                script: take(buf, &mut pos, l, "tx output script")?.to_vec(),
            });
        }
        stripped.extend_from_slice(&buf[body_start..pos]);
        if segwit {
            for _ in 0..n_in {
                let items = varint::read(buf, &mut pos)?;
                for _ in 0..items {
                    let l = varint::read(buf, &mut pos)? as usize;
                    take(buf, &mut pos, l, "witness")?;
                }
            }
        }
        let lock = take(buf, &mut pos, 4, "tx locktime")?;
        stripped.extend_from_slice(lock);
        Ok(Tx {
            input_scripts,
            outputs,
            len: pos,
            txid: dsha256(&stripped),
        })
    }

    /// The BIP34 block height pushed at the start of a coinbase input script.
    pub fn coinbase_height(&self) -> Option<u32> {
        let s = self.input_scripts.first()?;
        let n = *s.first()? as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut b = [0u8; 4];
        b[..n].copy_from_slice(s.get(1..1 + n)?);
        Some(u32::from_le_bytes(b))
    }

    /// The PacketCrypt commitment: the first output whose script is longer than 6 bytes and
    /// starts with `6a 30 09 f9 11 02`.
    pub fn pc_commitment(&self) -> Result<CoinbaseCommitment, BlockError> {
        const PREFIX: [u8; 6] = [0x6a, 0x30, 0x09, 0xf9, 0x11, 0x02];
        for o in &self.outputs {
            if o.script.len() > 6 && o.script[..6] == PREFIX {
                let mut bytes = [0u8; COMMIT_LEN];
                let src = &o.script[2..];
                let n = src.len().min(COMMIT_LEN);
                bytes[..n].copy_from_slice(&src[..n]);
                return Ok(CoinbaseCommitment { bytes });
            }
        }
        Err(BlockError::MissingCommitment)
    }
}
