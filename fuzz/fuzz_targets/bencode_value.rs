//! Arbitrary bytes as bencode (admin requests, CJDHT messages): parsing never panics, and a
//! value that parses encodes to bytes that parse back to the same value, with and without the
//! cjdns padding (which only non-empty dictionaries get).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_node::bencode::{encode, encode_padded, parse, parse_prefix, Value};

fuzz_target!(|data: &[u8]| {
    let _ = parse_prefix(data);
    let Ok(value) = parse(data) else { return };
    let bytes = encode(&value);
    assert_eq!(parse(&bytes).as_ref(), Ok(&value), "round trip");
    let padded = encode_padded(&value, 8);
    if matches!(&value, Value::Dict(d) if !d.is_empty()) {
        assert_eq!(padded.len() % 8, 0, "a non-empty dictionary is padded to 8");
    } else {
        assert_eq!(padded, bytes, "anything else is written unpadded");
    }
    assert_eq!(parse_prefix(&padded).map(|(v, _)| v).as_ref(), Ok(&value));
});
