//! Arbitrary bytes as (mostly) handshake packets to legacy sessions in every stage.
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
    // Mode 0: raw bytes. Mode 1: the valid next packet with bytes xored in (reaches the
    // semantic checks past the length and key checks). Mode 2: raw bytes under a handshake word.
    match sel / 64 {
        0 => ca_common::feed(session, f.t0, &mut rest.to_vec()),
        1 => {
            let mut p = valid.clone();
            for (i, b) in rest.iter().enumerate() {
                if let Some(x) = p.get_mut(i) {
                    *x ^= b;
                }
            }
            if let Some(&cut) = rest.last() {
                if cut & 1 == 1 {
                    p.truncate(p.len().saturating_sub(usize::from(cut >> 1)));
                }
            }
            ca_common::feed(session, f.t0, &mut p);
        }
        _ => {
            let mut p = rest.to_vec();
            if let Some(w) = p.get_mut(..4) {
                w.copy_from_slice(&[0, 0, 0, sel & 3]);
            }
            ca_common::feed(session, f.t0, &mut p);
        }
    }
});
