//! SwitchCore forwarding: the digest's worked examples, simulated chains of switches with random
//! slot assignments, and every error case.

use pktmesh_switch::control::{
    control_frame, write_switch_error, ControlMessage, ERROR_PACKET_MAX,
};
use pktmesh_switch::header::{SwitchHeader, SwitchHeaderRepr};
use pktmesh_switch::{DropReason, EncodingScheme, ErrorCode, Forward, Label, SwitchCore};
use proptest::prelude::*;

/// A packet with a fresh header for `label` and some payload.
fn packet(label: u64, payload: &[u8]) -> Vec<u8> {
    let mut p = SwitchHeaderRepr::new(label).to_bytes().to_vec();
    p.extend_from_slice(payload);
    p
}

fn label_of(p: &[u8]) -> u64 {
    SwitchHeader::new_checked(p).unwrap().label()
}

/// A switch whose first `n` peers occupy slots 0, 2, 3, … as cjdns assigns them.
fn switch_with_peers(n: usize) -> SwitchCore {
    let mut s = SwitchCore::new(EncodingScheme::v358());
    for _ in 0..n {
        s.add_interface().unwrap();
    }
    s
}

#[test]
fn slots_are_assigned_as_cjdns_does() {
    let mut s = SwitchCore::new(EncodingScheme::v358());
    let (slot, label) = s.add_interface().unwrap();
    assert_eq!((slot, label.bits()), (0, 0x13));
    let (slot, label) = s.add_interface().unwrap();
    assert_eq!((slot, label.bits()), (2, 0x15));
    s.remove_interface(0);
    assert_eq!(s.add_interface().unwrap().0, 0);
    for _ in 0..254 {
        s.add_interface().unwrap();
    }
    assert!(s.add_interface().is_err());
    assert!(s.has_interface(256));
}

#[test]
fn worked_example_one_hop() {
    let a = switch_with_peers(1); // A's slot 0 is B
    let b = switch_with_peers(1); // B's slot 0 is A
    let mut p = packet(0x13, b"hello");
    assert_eq!(a.forward(1, &mut p), Forward::Deliver { to: 0 });
    assert_eq!(label_of(&p), 0x8000_0000_0000_0001);
    // The first switch on the far side sees byte 7 == 0x01 (InterfaceController's check).
    assert_eq!(p[7], 0x01);
    assert_eq!(b.forward(0, &mut p), Forward::Deliver { to: 1 });
    assert_eq!(label_of(&p), 0xC800_0000_0000_0000);
    assert_eq!(Label::new(label_of(&p)).unwrap().reversed().bits(), 0x13);
    let h = SwitchHeader::new_checked(&p[..]).unwrap();
    assert_eq!(h.label_shift(), 8);
    assert_eq!(h.traffic_class(), 0xffff);
    assert_eq!(h.version(), 1);
    assert_eq!(h.payload(), b"hello");
}

#[test]
fn worked_example_two_hops() {
    let a = switch_with_peers(1);
    let b = switch_with_peers(2); // B: slot 0 = A, slot 2 = C
    let c = switch_with_peers(3); // C: B is on slot 3
    let mut p = packet(0x153, b"x");
    assert_eq!(a.forward(1, &mut p), Forward::Deliver { to: 0 });
    assert_eq!(label_of(&p), 0x8000_0000_0000_0015);
    assert_eq!(b.forward(0, &mut p), Forward::Deliver { to: 2 });
    assert_eq!(label_of(&p), 0xC800_0000_0000_0001);
    assert_eq!(c.forward(3, &mut p), Forward::Deliver { to: 1 });
    assert_eq!(label_of(&p), 0xEC80_0000_0000_0000);
    assert_eq!(Label::new(label_of(&p)).unwrap().reversed().bits(), 0x137);
    assert_eq!(SwitchHeader::new_checked(&p[..]).unwrap().label_shift(), 12);
}

#[test]
fn missing_slot_is_malformed_address() {
    let a = switch_with_peers(1);
    let mut p = packet(0x15, &[0; 8]); // slot 2 is empty
    let before = p.clone();
    assert_eq!(
        a.forward(1, &mut p),
        Forward::SendError {
            code: ErrorCode::MALFORMED_ADDRESS
        }
    );
    assert_eq!(p, before, "a refused packet is not modified");
}

#[test]
fn narrow_director_after_wide_arrival_is_malformed_address() {
    let mut s = switch_with_peers(2);
    s.add_interface_at(40).unwrap(); // needs 10 bits
    let mut p = packet(0x15, &[0; 8]); // 4-bit director to slot 2
    assert_eq!(
        s.forward(40, &mut p),
        Forward::SendError {
            code: ErrorCode::MALFORMED_ADDRESS
        }
    );
    // A wide enough director works.
    let wide = EncodingScheme::v358()
        .convert_label(
            Label::new(0x15).unwrap(),
            pktmesh_switch::ConvertTo::Form(2),
        )
        .unwrap();
    let mut p = packet(wide.bits(), &[0; 8]);
    assert_eq!(s.forward(40, &mut p), Forward::Deliver { to: 2 });
}

#[test]
fn self_route_widening_and_return_path_invalid() {
    let mut s = switch_with_peers(1);
    s.add_interface_at(40).unwrap();
    // 0…01 with 13 free low bits: read as 10 bits wide.
    let mut ok = packet(0x8000_0000_0000_0001, &[0; 8]);
    assert_eq!(s.forward(40, &mut ok), Forward::Deliver { to: 1 });
    assert_eq!(
        SwitchHeader::new_checked(&ok[..]).unwrap().label_shift(),
        10
    );
    // Slot 40 at 10 bits is (40-1)<<2; reversed into the top.
    assert_eq!(
        label_of(&ok),
        (0x8000_0000_0000_0001u64 >> 10) | ((39u64 << 2).reverse_bits())
    );
    // A set bit within the 14 low bits makes the return path unrepresentable.
    let mut bad = packet(0x8000_0000_0000_2001, &[0; 8]);
    assert_eq!(
        s.forward(40, &mut bad),
        Forward::SendError {
            code: ErrorCode::RETURN_PATH_INVALID
        }
    );
}

#[test]
fn suppressed_and_runt_errors_are_silent() {
    let a = switch_with_peers(1);
    let mut p = packet(0x15, &[0; 8]);
    p[8] |= 1;
    assert_eq!(
        a.forward(1, &mut p),
        Forward::Drop(DropReason::ErrorSuppressed(ErrorCode::MALFORMED_ADDRESS))
    );
    let mut short = packet(0x15, &[0; 3]); // 15 bytes: cannot carry a cause
    assert_eq!(
        a.forward(1, &mut short),
        Forward::Drop(DropReason::ErrorRunt(ErrorCode::MALFORMED_ADDRESS))
    );
    for len in 0..12 {
        let mut runt = vec![0x13u8; len];
        assert_eq!(a.forward(1, &mut runt), Forward::Drop(DropReason::Runt));
    }
    let mut p = packet(0x13, &[0; 8]);
    assert_eq!(
        a.forward(9, &mut p),
        Forward::Drop(DropReason::UnknownArrivalSlot)
    );
}

#[test]
fn label_shift_rollover_drops() {
    let a = switch_with_peers(1);
    let mut p = packet(0x13, &[0; 8]);
    p[9] = 0x40 | 60;
    assert_eq!(
        a.forward(1, &mut p),
        Forward::Drop(DropReason::LabelRolledOver)
    );
    let mut p = packet(0x13, &[0; 8]);
    p[9] = 0x40 | 59;
    assert_eq!(a.forward(1, &mut p), Forward::Deliver { to: 0 });
}

#[test]
fn error_reply_retraces_the_path() {
    // A -> B -> (B's empty slot 3): B reports MALFORMED_ADDRESS back to A's router.
    let a = switch_with_peers(1);
    let b = switch_with_peers(2);
    let mut p = packet(
        Label::splice(Label::new(0x17).unwrap(), Label::new(0x13).unwrap())
            .unwrap()
            .bits(),
        &[0xaa; 40],
    );
    assert_eq!(a.forward(1, &mut p), Forward::Deliver { to: 0 });
    let arrived = p.clone();
    let Forward::SendError { code } = b.forward(0, &mut p) else {
        panic!("expected an error")
    };
    assert_eq!(code, ErrorCode::MALFORMED_ADDRESS);
    let mut err = [0u8; ERROR_PACKET_MAX];
    let n = write_switch_error(&arrived, code, &mut err).unwrap();
    let mut err = err[..n].to_vec();
    // The error goes back out of B's slot 0 to A, whose switch sees it arriving on slot 0.
    assert_eq!(a.forward(0, &mut err), Forward::Deliver { to: 1 });
    let frame = control_frame(&err).unwrap();
    let ControlMessage::Error { code: c, cause } = ControlMessage::parse(frame).unwrap() else {
        panic!()
    };
    assert_eq!(c, ErrorCode::MALFORMED_ADDRESS);
    assert_eq!(cause, &arrived[..]);
    // Errors have suppress-errors set, so an error about an error is never sent.
    assert!(SwitchHeader::new_checked(&err[..])
        .unwrap()
        .suppress_errors());
}

/// (receiving node, packet, links crossed).
type Arrival = (usize, Vec<u8>, usize);
/// (refusing node, decision, packet).
type Refusal = (usize, Forward, Vec<u8>);

/// Sends a packet from node `start`'s router along `label` through the chain; returns the node
/// whose router received it, the packet and the number of links crossed, or the node that
/// refused it and why.
fn travel(
    switches: &[SwitchCore],
    links: &[(u16, u16)],
    start: usize,
    label: u64,
) -> Result<Arrival, Refusal> {
    let mut p = packet(label, b"payload bytes");
    let mut node = start;
    let mut from = 1u16;
    for hops in 0..=switches.len() {
        match switches[node].forward(from, &mut p) {
            Forward::Deliver { to: 1 } => return Ok((node, p, hops)),
            Forward::Deliver { to } => {
                // Find the link leaving `node` on slot `to`.
                let (next, arrive) = if node + 1 < switches.len() && links[node].0 == to {
                    (node + 1, links[node].1)
                } else if node > 0 && links[node - 1].1 == to {
                    (node - 1, links[node - 1].0)
                } else {
                    panic!("slot {to} of node {node} leads nowhere")
                };
                node = next;
                from = arrive;
            }
            other => return Err((node, other, p)),
        }
    }
    panic!("packet looped")
}

/// Slots of all three V358 widths, the narrow ones more often so long chains still fit.
fn slot_strategy() -> impl Strategy<Value = u16> {
    // Slot 1 is the router, never a link.
    prop_oneof![4 => (0u16..7).prop_map(|s| if s == 1 { 7 } else { s }), 2 => 8u16..33, 1 => 33u16..=256]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn chains_of_switches_deliver_and_return(
        slots in proptest::collection::vec((slot_strategy(), slot_strategy()), 1..8),
    ) {
        // Node i links to node i+1 through (slot on i, slot on i+1); slot 1 is the router.
        let n = slots.len() + 1;
        // A node's two links must use different slots.
        for i in 1..slots.len() {
            prop_assume!(slots[i - 1].1 != slots[i].0);
        }
        let scheme = EncodingScheme::v358();
        let mut switches: Vec<SwitchCore> = (0..n).map(|_| SwitchCore::new(scheme)).collect();
        let mut hops = Vec::new();
        for (i, &(a, b)) in slots.iter().enumerate() {
            let fwd = switches[i].add_interface_at(a).unwrap();
            switches[i + 1].add_interface_at(b).unwrap();
            let reverse = if i == 0 { None } else { Some(scheme.label_for_interface(u32::from(slots[i - 1].1)).unwrap()) };
            hops.push((reverse, Some(fwd)));
        }
        let label = match scheme.build_label(&hops) {
            Ok(l) => l,
            Err(_) => return Ok(()), // too long for 60 bits
        };
        let (dest, arrived, hop_count) = match travel(&switches, &slots, 0, label.bits()) {
            Ok(t) => t,
            Err((node, Forward::SendError { code: ErrorCode::RETURN_PATH_INVALID }, p)) => {
                // cjdns issue #93: at the destination the self route must be read as wide as the
                // arrival slot's director, which fails when the return path already reaches
                // down into those bits. Only legitimate when the path is that long.
                prop_assert_eq!(node, n - 1);
                let shift = u32::from(SwitchHeader::new_checked(&p[..]).unwrap().label_shift());
                let source_bits = if slots[n - 2].1 < 8 { 4 } else if slots[n - 2].1 < 33 { 7 } else { 10 };
                prop_assert!(shift + source_bits + 4 > 64, "shift {shift}, source bits {source_bits}");
                return Ok(());
            }
            Err((node, Forward::Drop(DropReason::LabelRolledOver), _)) => {
                // The forward label fits in 60 bits, but reading the final self route can push
                // the label shift past 63: cjdns drops such packets silently. Only the
                // destination can see it.
                prop_assert_eq!(node, n - 1);
                return Ok(());
            }
            Err((node, why, _)) => {
                prop_assert!(false, "node {node} refused: {why:?}");
                unreachable!()
            }
        };
        prop_assert_eq!(dest, n - 1);
        prop_assert_eq!(hop_count, n - 1);
        prop_assert_eq!(&arrived[12..], b"payload bytes");
        // The arrival label bit-reversed is the path back: its directors name, hop by hop, the
        // slots the packet came in on, and sending along it reaches node 0's router.
        let back = Label::new(label_of(&arrived)).unwrap().reversed();
        let mut rest = back.bits();
        for i in (0..slots.len()).rev() {
            let (slot, form) = scheme.parse_director(rest).unwrap();
            prop_assert_eq!(slot, u32::from(slots[i].1));
            rest >>= scheme.forms()[form].width();
        }
        prop_assert_eq!(rest, 1, "terminator after the last director");
        let (home, _, _) = travel(&switches, &slots, n - 1, back.bits())
            .map_err(|(node, why, _)| TestCaseError::fail(format!("return refused at {node}: {why:?}")))?;
        prop_assert_eq!(home, 0);
    }

    #[test]
    fn forward_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
        from in 0u16..300,
    ) {
        let mut s = switch_with_peers(3);
        s.add_interface_at(200).unwrap();
        let mut p = bytes.clone();
        match s.forward(from, &mut p) {
            Forward::Deliver { .. } => prop_assert_eq!(&p[12..], &bytes[12..]),
            _ => prop_assert_eq!(p, bytes),
        }
    }
}

#[test]
fn generic_scheme_switch_round_trip() {
    // pktmesh switches can run other sane schemes; V48 and F8 chains also find their way back.
    for scheme in [
        EncodingScheme::v48(),
        EncodingScheme::f8(),
        EncodingScheme::f4(),
        EncodingScheme::v37(),
    ] {
        let mut a = SwitchCore::new(scheme);
        let mut b = SwitchCore::new(scheme);
        let (_, to_b) = a.add_interface().unwrap();
        let (slot_b, _) = b.add_interface().unwrap();
        let mut p = packet(to_b.bits(), b"z");
        let Forward::Deliver { to } = a.forward(1, &mut p) else {
            panic!("{scheme:?}")
        };
        assert_ne!(to, 1);
        assert_eq!(
            b.forward(slot_b, &mut p),
            Forward::Deliver { to: 1 },
            "{scheme:?}"
        );
        let back = Label::new(label_of(&p)).unwrap().reversed();
        assert_eq!(
            back, to_b,
            "{scheme:?}: a symmetric link has the same label both ways"
        );
    }
}

#[test]
fn traffic_class_is_overwritten_unless_preserved() {
    let mut a = switch_with_peers(1);
    let mut p = packet(0x13, b"x");
    p[10..12].copy_from_slice(&0x0031u16.to_be_bytes());
    let mut q = p.clone();
    assert_eq!(a.forward(1, &mut p), Forward::Deliver { to: 0 });
    assert_eq!(
        SwitchHeader::new_checked(&p[..]).unwrap().traffic_class(),
        0xffff,
        "cjdns default"
    );
    a.set_traffic_class_policy(pktmesh_switch::TrafficClassPolicy::Preserve);
    assert_eq!(a.forward(1, &mut q), Forward::Deliver { to: 0 });
    let h = SwitchHeader::new_checked(&q[..]).unwrap();
    assert_eq!(h.traffic_class(), 0x0031);
    assert_eq!(
        h.label(),
        0x8000_0000_0000_0001,
        "everything else as before"
    );
}
