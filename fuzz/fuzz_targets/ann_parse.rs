//! Fuzz the announcement view and `CheckAnn`: any input must yield a value or a typed error,
//! never a panic. The first byte chooses whether to force a v1 header with a valid parent
//! height so that the RandHash/merkle paths run on arbitrary data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_chain::announce::{AnnValidator, Announcement, ANN_LEN};

fuzz_target!(|data: &[u8]| {
    let _ = Announcement::new_checked(data).map(|a| (a.header_repr(), a.has_signing_key()));
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut ann = [0u8; ANN_LEN];
    let n = rest.len().min(ANN_LEN);
    ann[..n].copy_from_slice(&rest[..n]);
    if mode & 1 == 1 {
        ann[0] = 1;
        ann[12..16].copy_from_slice(&500_000u32.to_le_bytes());
        // Keep the soft nonce under the limit of easy work bits.
        ann[8..12].copy_from_slice(&0x207f_ffffu32.to_le_bytes());
        ann[2..4].fill(0);
    }
    let pcp_version = u32::from(mode >> 1 & 3);
    let parent = [mode; 32];
    let mut v = AnnValidator::new();
    if let Ok(c) = v.check(&ann, &parent, pcp_version) {
        assert!(pktmesh_chain::difficulty::is_hash_ok(
            &c.work_hash,
            Announcement::new_checked(&ann[..]).unwrap().work_bits()
        ));
    }
});
