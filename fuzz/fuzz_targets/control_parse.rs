//! Arbitrary control frames: parsing never panics, whatever parses re-emits to the same bytes,
//! and the responder never panics and only answers with frames that parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_switch::control::{
    control_frame, respond, ControlMessage, LinkAddress, ResponderConfig, PROTOCOL_VERSION,
};
use pktmesh_switch::EncodingScheme;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = ControlMessage::parse_unverified(data) {
        let mut out = vec![0u8; message.buffer_len()];
        let n = message.emit(&mut out).expect("buffer_len is enough");
        // Fixed-size bodies drop trailing bytes; the rest re-emits exactly (checksum aside).
        assert_eq!(&out[2..n], &data[2..n]);
    }
    let scheme = EncodingScheme::v358();
    let config = ResponderConfig {
        protocol_version: PROTOCOL_VERSION,
        public_key: [1; 32],
        scheme: &scheme,
        snode: None,
    };
    let mut out = [0u8; 2048];
    let path_back = 0x13;
    let peer = Some(LinkAddress::Udp4 {
        port: 1,
        addr: [127, 0, 0, 1],
    });
    if let Ok(n) = respond(&config, path_back, data, peer, &mut out) {
        let frame = control_frame(&out[..n]).expect("replies are control frames");
        ControlMessage::parse(frame).expect("replies parse");
    }
});
