//! Label text, key text, address text and serialized encoding schemes: parsing never panics,
//! and whatever parses prints or serializes back to something that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_switch::{ConvertTo, EncodingScheme, Label};

fuzz_target!(|data: &[u8]| {
    if let Ok(scheme) = EncodingScheme::deserialize(data) {
        assert_eq!(EncodingScheme::deserialize(&scheme.serialize()), Ok(scheme));
        if let Some(raw) = data.get(..8) {
            let mut b = [0u8; 8];
            b.copy_from_slice(raw);
            if let Ok(label) = Label::new(u64::from_le_bytes(b)) {
                let _ = scheme.is_one_hop(label);
                let _ = scheme.parse_director(label.bits());
                for i in 0..scheme.forms().len() {
                    let _ = scheme.convert_label(label, ConvertTo::Form(i));
                }
                let _ = scheme.convert_label(label, ConvertTo::Canonical);
                let _ = scheme.get_label_for(label, Label::SELF);
            }
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(label) = Label::parse(text) {
        assert_eq!(Label::parse(&label.to_string()), Ok(label));
    }
    if let Ok(key) = PublicKey::parse_any(text) {
        assert_eq!(PublicKey::parse_any(&key.to_string()), Ok(key));
    }
    if let Ok(private) = PrivateKey::from_hex(text) {
        assert_eq!(PrivateKey::from_hex(&private.to_hex()).unwrap(), private);
    }
    let _ = Address::parse(text);
});
