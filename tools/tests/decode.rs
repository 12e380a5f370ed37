//! `pktctl decode` on the real cjdns 22.3 captures.

use std::path::PathBuf;

use pktmesh_tools::pktctl::decode::decode_capture;

fn captures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/cjdns-captures"
    ))
}

#[test]
fn two_node_password() {
    let dir = captures().join("two-node-password");
    let lines = decode_capture(&dir.join("capture.pcap"), &dir.join("scenario.json")).unwrap();
    assert_eq!(lines.len(), 31);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["frame"], i + 1);
    }
    assert_eq!(lines[0]["outer"], "hello");
    assert_eq!(lines[0]["src"], "10.77.0.1:11001");
    assert_eq!(lines[0]["dst"], "10.77.0.2:11002");
    assert_eq!(lines[0]["switch_label"], "8000.0000.0000.0001");
    assert_eq!(lines[0]["inner"], "control:ping");
    assert!(lines[0].get("error").is_none());
    assert_eq!(lines[1]["outer"], "key");
    assert_eq!(lines[1]["inner"], "control:ping");
    // Data frames need a temporary private key the scenario does not have.
    for l in &lines[2..] {
        assert_eq!(l["outer"], "data");
        assert!(
            l["error"].as_str().unwrap().contains("forward secrecy"),
            "{l}"
        );
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = captures().join("two-node-password");
    assert!(decode_capture(&dir.join("scenario.json"), &dir.join("scenario.json")).is_err());
    assert!(decode_capture(&dir.join("capture.pcap"), &dir.join("capture.pcap")).is_err());
}
