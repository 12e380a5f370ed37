//! Arbitrary bytes as data packets to legacy sessions in every stage, plus mutated valid
//! data packets (nonce rewritten, truncated, bit-flipped).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "ca_common.rs"]
mod ca_common;

fuzz_target!(|data: &[u8]| {
    let f = ca_common::fixture();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let (session, valid) = &f.stages[usize::from(sel) % f.stages.len()];
    let mut p = if sel & 0x80 == 0 {
        let mut p = rest.to_vec();
        if p.len() >= 4 && u32::from_be_bytes([p[0], p[1], p[2], p[3]]) < 4 {
            p[0] |= 0x80; // keep it a data packet
        }
        p
    } else {
        let mut p = valid.clone();
        if let Some((&cut, flips)) = rest.split_first() {
            p.truncate(p.len().saturating_sub(usize::from(cut & 0x1f)));
            for pair in flips.chunks(2) {
                if let [pos, bit] = pair {
                    let len = p.len();
                    if len > 0 {
                        p[usize::from(*pos) % len] ^= 1 << (bit & 7);
                    }
                }
            }
        }
        p
    };
    ca_common::feed(session, f.t0, &mut p);
});
