//! The variable-length integers of cjdns link-state entities (`util/VarInt.h`).
//!
//! A number is one byte when below `0xfd`; otherwise a marker byte `0xfd`, `0xfe` or `0xff`
//! followed by 2, 4 or 8 big-endian bytes. cjdns picks the width with
//! `(v >> 32 != 0)·4 + (v >> 16 != 0)·2 + ((v + 3) >> 8 != 0) + 1` payload bytes, so values
//! `0xfd..=0xff` take the two-byte form; [`push`] does the same so that our bytes equal
//! theirs. [`pop`] accepts any width the marker names (also non-minimal ones), as cjdns does.

/// Reads one number from the front of `bytes`, returning it and the bytes consumed, or `None`
/// when `bytes` is empty or shorter than the marker says.
pub(crate) fn pop(bytes: &[u8]) -> Option<(u64, usize)> {
    let (&first, rest) = bytes.split_first()?;
    let width = match first {
        0xfd => 2,
        0xfe => 4,
        0xff => 8,
        v => return Some((u64::from(v), 1)),
    };
    let payload = rest.get(..width)?;
    let v = payload
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    Some((v, 1 + width))
}

/// Payload width cjdns uses for `v` (`VarInt_sizeOf`), 1, 2, 4 or 8.
fn size_of(v: u64) -> usize {
    usize::from(v >> 32 != 0) * 4
        + usize::from(v >> 16 != 0) * 2
        + usize::from(v.saturating_add(3) >> 8 != 0)
        + 1
}

/// Appends `v` in cjdns' encoding.
pub(crate) fn push(out: &mut Vec<u8>, v: u64) {
    let width = size_of(v);
    match width {
        1 => {
            out.push(v as u8);
            return;
        }
        2 => out.push(0xfd),
        4 => out.push(0xfe),
        _ => out.push(0xff),
    }
    out.extend_from_slice(&v.to_be_bytes()[8 - width..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_match_cjdns() {
        for (v, bytes) in [
            (0u64, vec![0x00]),
            (0xfc, vec![0xfc]),
            (0xfd, vec![0xfd, 0x00, 0xfd]),
            (0xff, vec![0xfd, 0x00, 0xff]),
            (0x1234, vec![0xfd, 0x12, 0x34]),
            (0x1_0000, vec![0xfe, 0x00, 0x01, 0x00, 0x00]),
            (0x1_0000_0000, vec![0xff, 0, 0, 0, 1, 0, 0, 0, 0]),
        ] {
            let mut out = Vec::new();
            push(&mut out, v);
            assert_eq!(out, bytes, "{v:#x}");
            assert_eq!(pop(&out), Some((v, bytes.len())));
        }
    }

    #[test]
    fn short_input_is_refused() {
        assert_eq!(pop(&[]), None);
        assert_eq!(pop(&[0xfd, 0x01]), None);
        assert_eq!(pop(&[0xfe, 0, 0, 0]), None);
        assert_eq!(pop(&[0xff, 0, 0, 0, 0, 0, 0, 0]), None);
        // Non-minimal forms are read as cjdns reads them.
        assert_eq!(pop(&[0xfd, 0x00, 0x05]), Some((5, 3)));
    }
}
