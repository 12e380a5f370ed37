//! Arbitrary packets through a switch: header parsing and the forwarding decision never panic,
//! a refused packet is never modified, and a forwarded one keeps its payload.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pktmesh_switch::control::{write_switch_error, ERROR_PACKET_MAX};
use pktmesh_switch::header::SwitchHeaderRepr;
use pktmesh_switch::{EncodingScheme, Forward, SwitchCore};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let scheme = match selector % 3 {
        0 => EncodingScheme::v358(),
        1 => EncodingScheme::v48(),
        _ => EncodingScheme::f8(),
    };
    let mut switch = SwitchCore::new(scheme);
    for _ in 0..(selector / 3 % 20) {
        let _ = switch.add_interface();
    }
    let _ = switch.add_interface_at(200);
    let from = u16::from(selector) % 40;
    let mut packet = rest.to_vec();
    let _ = SwitchHeaderRepr::parse(&packet);
    match switch.forward(from, &mut packet) {
        Forward::Deliver { .. } => assert_eq!(&packet[12..], &rest[12..]),
        Forward::SendError { code } => {
            assert_eq!(packet, rest);
            let mut out = [0u8; ERROR_PACKET_MAX];
            let n = write_switch_error(&packet, code, &mut out).expect("error fits");
            assert!(n <= ERROR_PACKET_MAX);
        }
        Forward::Drop(_) => assert_eq!(packet, rest),
    }
});
