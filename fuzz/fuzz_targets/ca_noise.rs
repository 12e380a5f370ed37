//! Arbitrary and mutated Noise handshake and data messages: never a panic, and a rejected
//! data packet leaves the transport unconfirmed/unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "ca_common.rs"]
mod ca_common;

fuzz_target!(|data: &[u8]| {
    let f = ca_common::noise_fixture();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let mut rng = ca_common::Rng(u64::from(sel));
    let raw = sel & 0x80 == 0;
    match sel % 3 {
        0 => {
            let p = if raw {
                rest.to_vec()
            } else {
                ca_common::mutate(&f.initiation, rest)
            };
            let mut r = f.responder.clone();
            let _ = r.handle_initiation(f.t0, &mut rng, b"src", &p, 0x200, true);
        }
        1 => {
            let p = if raw {
                rest.to_vec()
            } else {
                ca_common::mutate(&f.response, rest)
            };
            let _ = f.sent.complete(&f.ca_a, f.t0, &p);
            let _ = f.sent.take_cookie(&p);
        }
        _ => {
            let mut p = if raw {
                rest.to_vec()
            } else {
                ca_common::mutate(&f.data, rest)
            };
            let mut t = f.transport.clone();
            let before = t.is_confirmed();
            if t.decrypt(f.t0, &mut p).is_err() {
                assert_eq!(
                    before,
                    t.is_confirmed(),
                    "a rejected packet confirmed the session"
                );
            }
        }
    }
});
