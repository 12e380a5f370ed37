//! Bitcoin CompactSize integers ("varints") with canonical-encoding checks.

use super::BlockError;

/// Reads a CompactSize at `*pos`, advancing it. Non-minimal encodings are rejected.
pub fn read(buf: &[u8], pos: &mut usize) -> Result<u64, BlockError> {
    let first = *buf.get(*pos).ok_or(BlockError::Truncated("varint"))?;
    let (len, min) = match first {
        0xfd => (2, 0xfd),
        0xfe => (4, 0x1_0000),
        0xff => (8, 0x1_0000_0000),
        b => {
            *pos += 1;
            return Ok(u64::from(b));
        }
    };
    let bytes = buf
        .get(*pos + 1..*pos + 1 + len)
        .ok_or(BlockError::Truncated("varint"))?;
    let mut v = [0u8; 8];
    v[..len].copy_from_slice(bytes);
    let v = u64::from_le_bytes(v);
    if v < min {
        return Err(BlockError::NonCanonicalVarint);
    }
    *pos += 1 + len;
    Ok(v)
}

/// Encoded size of `v`.
pub fn size(v: u64) -> usize {
    match v {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

/// Appends the CompactSize encoding of `v`.
pub fn write(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xfc => out.push(v as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(v as u32).to_le_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}
