//! `pktctl decode` on the real cjdns 22.3 captures: every frame of every capture decoded field
//! for field as the captures' reference decoding (`decoded-*.json`) does, and pktmesh's own
//! synthetic and live captures (legacy and Noise).

use std::path::{Path, PathBuf};

use pktmesh_tools::pktctl::decode::decode_capture;
use serde_json::Value;

fn captures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/cjdns-captures"
    ))
}

/// Where `ours` differs from the reference `truth`: one line per field, `path: ours ≠ truth`.
/// Times are compared to the microsecond the pcap records; everything else exactly, both ways
/// (a field only one side has is a difference).
fn differences(path: &str, ours: &Value, truth: &Value, out: &mut Vec<String>) {
    match (ours, truth) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, tv) in b {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    Some(ov) => differences(&p, ov, tv, out),
                    None => out.push(format!("{p}: missing, reference has {tv}")),
                }
            }
            for (k, ov) in a {
                if !b.contains_key(k) {
                    out.push(format!("{path}.{k}: {ov}, absent from the reference"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{path}[{i}]"), x, y, out);
            }
        }
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (x - y).abs() > 1.5e-6 {
                out.push(format!("{path}: {x} ≠ {y}"));
            }
        }
        _ if ours == truth => {}
        _ => out.push(format!("{path}: {ours} ≠ {truth}")),
    }
}

/// Every `decoded-<name>.json` beside a `<name>.pcap`, in every capture folder.
fn reference_decodings() -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(captures()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(stem) = name
                .strip_prefix("decoded-")
                .and_then(|n| n.strip_suffix(".json"))
            {
                out.push((dir.join(format!("{stem}.pcap")), f));
            }
        }
    }
    out.sort();
    out
}

fn compare_with_reference(pcap: &Path, reference: &Path) -> Vec<String> {
    let scenario = pcap.parent().unwrap().join("scenario.json");
    let ours = decode_capture(pcap, &scenario).unwrap();
    let truth: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
    let name = format!(
        "{}/{}",
        pcap.parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        pcap.file_name().unwrap().to_string_lossy()
    );
    let mut diffs = Vec::new();
    if ours.len() != truth.len() {
        diffs.push(format!(
            "{name}: {} frames decoded, the reference has {}",
            ours.len(),
            truth.len()
        ));
    }
    for (o, t) in ours.iter().zip(&truth) {
        differences(&format!("{name} frame {}", t["frame"]), o, t, &mut diffs);
    }
    diffs
}

/// Issue 15: all five capture folders (ten pcaps), every frame and every field, including the
/// plaintexts of outer and inner handshakes and data, switch headers and labels at each hop,
/// control messages, DHT messages, ICMPv6 and TCP, admin RPC and Ethernet beacons.
#[test]
fn every_frame_of_every_capture_matches_the_reference_decoding() {
    let refs = reference_decodings();
    let folders: std::collections::BTreeSet<_> =
        refs.iter().map(|(p, _)| p.parent().unwrap()).collect();
    assert!(refs.len() >= 10 && folders.len() >= 4, "{refs:?}");
    let mut diffs = Vec::new();
    let mut frames = 0;
    for (pcap, reference) in &refs {
        let d = compare_with_reference(pcap, reference);
        frames += decode_capture(pcap, &pcap.parent().unwrap().join("scenario.json"))
            .unwrap()
            .len();
        diffs.extend(d);
    }
    assert!(
        diffs.is_empty(),
        "{} differences from the reference decoding:\n{}",
        diffs.len(),
        diffs[..diffs.len().min(60)].join("\n")
    );
    assert!(frames >= 500, "{frames} frames");
}

/// The comparison itself fails on a changed field, a missing one and an extra one, and names
/// the frame and the field.
#[test]
fn the_comparison_names_the_frame_and_field() {
    let (pcap, reference) = reference_decodings()
        .into_iter()
        .find(|(p, _)| p.ends_with("two-node-ping/capture.pcap"))
        .unwrap();
    let scenario = pcap.parent().unwrap().join("scenario.json");
    let ours = decode_capture(&pcap, &scenario).unwrap();
    let truth: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(reference).unwrap()).unwrap();
    let mut changed = ours[49].clone();
    changed["switch"]["inner"]["payload"]["icmp6"]["seq"] = 7.into();
    changed["switch"]["inner"]["extra"] = 1.into();
    changed["outer"].as_object_mut().unwrap().remove("nonce");
    let mut diffs = Vec::new();
    differences("frame 50", &changed, &truth[49], &mut diffs);
    assert_eq!(diffs.len(), 3, "{diffs:?}");
    assert!(diffs
        .iter()
        .any(|d| d.starts_with("frame 50.switch.inner.payload.icmp6.seq: 7")));
    assert!(diffs
        .iter()
        .any(|d| d.starts_with("frame 50.outer.nonce: missing")));
    assert!(diffs
        .iter()
        .any(|d| d.starts_with("frame 50.switch.inner.extra")));
}

/// The first capture, in the first scenario layout: the HELLO and KEY open (with the link's
/// login and password); its data frames need temporary keys the scenario does not have.
#[test]
fn two_node_password() {
    let dir = captures().join("two-node-password");
    let lines = decode_capture(&dir.join("capture.pcap"), &dir.join("scenario.json")).unwrap();
    assert_eq!(lines.len(), 31);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["frame"], i + 1);
    }
    assert_eq!(lines[0]["outer"]["type"], "HELLO");
    assert_eq!(lines[0]["outer"]["auth_login"], "nodeA");
    assert_eq!(lines[0]["src"], "10.77.0.1:11001");
    assert_eq!(lines[0]["dst"], "10.77.0.2:11002");
    assert_eq!(lines[0]["switch"]["label"], "8000.0000.0000.0001");
    assert_eq!(lines[0]["switch"]["control"]["type"], "PING");
    assert_eq!(lines[0]["switch"]["control"]["checksum_ok"], true);
    assert!(lines[0]["outer"].get("error").is_none());
    assert_eq!(lines[1]["outer"]["type"], "KEY");
    assert_eq!(lines[1]["switch"]["control"]["type"], "PING");
    for l in &lines[2..] {
        assert_eq!(l["outer"]["type"], "DATA");
        assert!(
            l["outer"]["error"]
                .as_str()
                .unwrap()
                .contains("ephemeral private key not recovered"),
            "{l}"
        );
        assert!(l.get("switch").is_none());
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = captures().join("two-node-password");
    assert!(decode_capture(&dir.join("scenario.json"), &dir.join("scenario.json")).is_err());
    assert!(decode_capture(&dir.join("capture.pcap"), &dir.join("capture.pcap")).is_err());
}

/// A synthetic capture made by two pktmesh nodes (outer link with login + password, inner
/// end-to-end session, an ICMPv6 echo), with the temporary private keys in the scenario:
/// every frame, data included, must decode down to the echo sequence numbers.
#[test]
fn synthetic_capture_with_temp_keys_decodes_fully() {
    use std::sync::Arc;
    use std::time::Instant;

    use pcap_file::pcap::{PcapPacket, PcapWriter};
    use pktmesh_crypto_auth::legacy::{CryptoAuth, Session};
    use pktmesh_crypto_auth::PrivateKey;
    use rand_core::{CryptoRng, OsRng, RngCore};

    /// Records every 32-byte draw (the temporary private keys are among them).
    struct Recording(Vec<[u8; 32]>);
    impl RngCore for Recording {
        fn next_u32(&mut self) -> u32 {
            OsRng.next_u32()
        }
        fn next_u64(&mut self) -> u64 {
            OsRng.next_u64()
        }
        fn fill_bytes(&mut self, d: &mut [u8]) {
            OsRng.fill_bytes(d);
            if let Ok(k) = <[u8; 32]>::try_from(&*d) {
                self.0.push(k);
            }
        }
        fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(d);
            Ok(())
        }
    }
    impl CryptoRng for Recording {}

    fn switch_packet(body: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0x44, 0xff, 0xff];
        p.extend_from_slice(body);
        p
    }
    fn ping() -> Vec<u8> {
        let mut frame = vec![0, 0, 0, 3, 0x09, 0xf9, 0x11, 0x02, 0, 0, 0, 22, 1, 2, 3, 4];
        let c = pktmesh_switch::control::checksum(&frame);
        frame[..2].copy_from_slice(&c.to_be_bytes());
        let mut body = vec![0xff; 4];
        body.extend_from_slice(&frame);
        switch_packet(&body)
    }
    fn echo(kind: u8, seq: u16) -> Vec<u8> {
        let mut p = vec![0x10, 0, 0, 58, kind, 0, 0, 0, 0, 7];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&b"ABCD".repeat(25));
        p
    }

    let mut rng = Recording(Vec::new());
    let now = Instant::now();
    let (ka, pa, _) = PrivateKey::generate(&mut rng);
    let (kb, pb, _) = PrivateKey::generate(&mut rng);
    let mut cb = CryptoAuth::new(kb.clone());
    cb.add_user(b"secret-pw", Some(b"nodeA"), None).unwrap();
    let (ca_a, ca_b) = (Arc::new(CryptoAuth::new(ka.clone())), Arc::new(cb));
    let mut out_a = Session::new(ca_a.clone(), pb, false, now);
    out_a.set_auth(Some(b"secret-pw"), Some(b"nodeA"));
    let mut out_b = Session::new(ca_b.clone(), pa, true, now);
    let mut in_a = Session::new(ca_a, pb, false, now);
    let mut in_b = Session::new(ca_b, pa, false, now);
    let (ha, hb) = (0x1111_0004u32, 0x2222_0004u32);

    let mut frames: Vec<(bool, Vec<u8>)> = Vec::new(); // (from A, UDP payload)
    let mut send =
        |from_a: bool, plain: Vec<u8>, frames: &mut Vec<(bool, Vec<u8>)>, rng: &mut Recording| {
            let (tx, rx) = if from_a {
                (&mut out_a, &mut out_b)
            } else {
                (&mut out_b, &mut out_a)
            };
            let wire = tx.encrypt_to_vec(now, rng, &plain).unwrap();
            let mut copy = wire.clone();
            assert_eq!(rx.decrypt(now, &mut copy).unwrap().payload, &plain[..]);
            frames.push((from_a, wire));
        };
    send(true, ping(), &mut frames, &mut rng);
    send(false, ping(), &mut frames, &mut rng);
    // Inner HELLO A→B and KEY B→A, carrying the handles and a CJDHT DataHeader.
    let mut plain = ha.to_be_bytes().to_vec();
    plain.extend_from_slice(&[0x10, 0, 1, 0]);
    plain.extend_from_slice(b"d1:q2:pne");
    let hello = in_a.encrypt_to_vec(now, &mut rng, &plain).unwrap();
    in_b.decrypt(now, &mut hello.clone()).unwrap();
    send(true, switch_packet(&hello), &mut frames, &mut rng);
    let mut plain = hb.to_be_bytes().to_vec();
    plain.extend_from_slice(&[0x10, 0, 1, 0]);
    plain.extend_from_slice(b"d1:q2:pne");
    let key = in_b.encrypt_to_vec(now, &mut rng, &plain).unwrap();
    in_a.decrypt(now, &mut key.clone()).unwrap();
    send(false, switch_packet(&key), &mut frames, &mut rng);
    // Three echo request/reply pairs over the inner session.
    for seq in 1..=3u16 {
        let d = in_a.encrypt_to_vec(now, &mut rng, &echo(128, seq)).unwrap();
        in_b.decrypt(now, &mut d.clone()).unwrap();
        let mut body = hb.to_be_bytes().to_vec();
        body.extend_from_slice(&d);
        send(true, switch_packet(&body), &mut frames, &mut rng);
        let d = in_b.encrypt_to_vec(now, &mut rng, &echo(129, seq)).unwrap();
        in_a.decrypt(now, &mut d.clone()).unwrap();
        let mut body = ha.to_be_bytes().to_vec();
        body.extend_from_slice(&d);
        send(false, switch_packet(&body), &mut frames, &mut rng);
    }

    // Write an Ethernet/IPv4/UDP pcap and the scenario.
    let dir = std::env::temp_dir().join(format!("pktctl-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = PcapWriter::new(std::fs::File::create(dir.join("c.pcap")).unwrap()).unwrap();
    for (i, (from_a, udp)) in frames.iter().enumerate() {
        let (s, d, sp, dp) = if *from_a {
            (1u8, 2u8, 11001u16, 11002u16)
        } else {
            (2, 1, 11002, 11001)
        };
        let mut pkt = vec![0u8; 12];
        pkt.extend_from_slice(&[0x08, 0x00]);
        let total = 20 + 8 + udp.len();
        pkt.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0,
            0,
            64,
            17,
            0,
            0,
        ]);
        pkt.extend_from_slice(&[10, 77, 0, s, 10, 77, 0, d]);
        pkt.extend_from_slice(&sp.to_be_bytes());
        pkt.extend_from_slice(&dp.to_be_bytes());
        pkt.extend_from_slice(&((8 + udp.len()) as u16).to_be_bytes());
        pkt.extend_from_slice(&[0, 0]);
        pkt.extend_from_slice(udp);
        let ts = std::time::Duration::from_millis(i as u64);
        w.write_packet(&PcapPacket::new(ts, pkt.len() as u32, &pkt))
            .unwrap();
    }
    drop(w);
    let temps: Vec<String> = rng.0.iter().map(hex::encode).collect();
    let scenario = serde_json::json!({
        "nodes": {
            "A": {"private_key": ka.to_hex(), "udp": "10.77.0.1:11001"},
            "B": {"private_key": kb.to_hex(), "udp": "10.77.0.2:11002"},
        },
        "peering": {"login": "nodeA", "password": "secret-pw"},
        "temp_private_keys": temps,
    });
    std::fs::write(dir.join("s.json"), scenario.to_string()).unwrap();
    let lines = decode_capture(&dir.join("c.pcap"), &dir.join("s.json")).unwrap();
    std::fs::remove_dir_all(&dir).ok();

    for l in &lines {
        assert!(errors(l).is_empty(), "{l}");
    }
    let inner = |i: usize| lines[i]["switch"]["inner"].clone();
    assert_eq!(lines[0]["outer"]["type"], "HELLO");
    assert_eq!(lines[0]["switch"]["control"]["type"], "PING");
    assert_eq!(lines[1]["outer"]["type"], "KEY");
    assert_eq!(lines[1]["switch"]["control"]["type"], "PING");
    assert_eq!(lines[2]["outer"]["type"], "DATA");
    assert_eq!(inner(2)["type"], "INNER_HELLO");
    assert_eq!(inner(2)["payload"]["content_type"], 256);
    assert_eq!(inner(3)["type"], "INNER_KEY");
    assert_eq!(inner(3)["payload"]["content_type"], 256);
    let requests: Vec<_> = lines[4..]
        .iter()
        .filter(|l| l["src"] == "10.77.0.1:11001")
        .map(|l| &l["switch"]["inner"]["payload"]["icmp6"])
        .filter(|i| i["echo"] == "request")
        .map(|i| i["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(requests, [1, 2, 3]);
    assert!(lines[4..].iter().all(|l| {
        let i = &l["switch"]["inner"];
        i["type"] == "INNER_DATA" && i["payload"]["content_type"] == 58
    }));
    assert_eq!(
        lines[9]["switch"]["inner"]["payload"]["icmp6"]["echo"],
        "reply"
    );
}

/// Every `error` field of a decoded frame, at any depth.
fn errors(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    if k == "error" {
                        out.push(x.to_string());
                    }
                    walk(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// Every pcap of every scenario folder that exists (more will be added), in either layout:
/// every layer of every frame opens with the scenario's keys, except data packets whose
/// temporary keys the scenario does not have.
#[test]
fn every_capture_folder() {
    let mut seen = 0;
    for entry in std::fs::read_dir(captures()).unwrap() {
        let dir = entry.unwrap().path();
        let scenario = dir.join("scenario.json");
        if !scenario.exists() {
            continue;
        }
        for f in std::fs::read_dir(&dir).unwrap() {
            let pcap = f.unwrap().path();
            if pcap.extension().is_none_or(|e| e != "pcap") {
                continue;
            }
            seen += 1;
            let lines = decode_capture(&pcap, &scenario).unwrap();
            assert!(!lines.is_empty(), "{}", pcap.display());
            for l in &lines {
                for e in errors(l) {
                    assert_eq!(l["outer"]["type"], "DATA", "{}: {l}", pcap.display());
                    assert!(
                        e.contains("ephemeral private key not recovered"),
                        "{}: {l}",
                        pcap.display()
                    );
                }
            }
        }
    }
    assert!(seen >= 11, "{seen} pcaps");
}

#[test]
fn live_cjdroute_capture() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crypto-auth/tests/vectors/pktmesh-cjdroute-legacy"
    ));
    let lines = decode_capture(&dir.join("capture.pcap"), &dir.join("scenario.json")).unwrap();
    let failed: Vec<u64> = lines
        .iter()
        .filter(|l| !errors(l).is_empty())
        .map(|l| {
            let inner = &l["switch"]["inner"];
            assert_eq!(inner["error"], "unknown handle", "{l}");
            assert_eq!(inner["receiver_handle"], 0x1234_5678, "{l}");
            l["frame"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(failed, [4, 6, 9, 16, 22, 26]);
    let seqs = |kind: &str| -> Vec<u64> {
        lines
            .iter()
            .map(|l| &l["switch"]["inner"]["payload"]["icmp6"])
            .filter(|i| i["echo"] == kind)
            .map(|i| i["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs("request"), [1, 2, 3]);
    assert_eq!(seqs("reply"), [1, 2, 3]);
    assert!(lines.iter().any(|l| {
        let i = &l["switch"]["inner"];
        i["type"] == "INNER_HELLO" && i["payload"]["content_type"] == 256
    }));
    assert_eq!(lines[1]["outer"]["type"], "KEY");
}

/// The decoder reads pcapng as well: the two-node capture converted to pcapng decodes to the
/// same lines.
#[test]
fn pcapng_input() {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;

    let dir = captures().join("two-node-password");
    let mut reader =
        PcapReader::new(std::fs::File::open(dir.join("capture.pcap")).unwrap()).unwrap();
    let linktype = reader.header().datalink;
    let out = std::env::temp_dir().join(format!("pktctl-decode-ng-{}.pcapng", std::process::id()));
    let mut w = PcapNgWriter::new(std::fs::File::create(&out).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype,
        snaplen: 65535,
        options: vec![],
    })
    .unwrap();
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.unwrap();
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: pkt.timestamp,
            original_len: pkt.orig_len,
            data: pkt.data,
            options: vec![],
        })
        .unwrap();
    }
    drop(w);
    let ng = decode_capture(&out, &dir.join("scenario.json")).unwrap();
    std::fs::remove_file(&out).ok();
    let classic = decode_capture(&dir.join("capture.pcap"), &dir.join("scenario.json")).unwrap();
    assert_eq!(ng, classic);
}

/// The live Noise capture (pktmesh initiating Noise to stock cjdroute 22.3, with P's ephemeral
/// secret in the scenario): the initiation is read with C's static key, the response with P's
/// ephemeral secret, and every Noise data packet in both directions decodes.
#[test]
fn live_cjdroute_noise_capture() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crypto-auth/tests/vectors/pktmesh-cjdroute-noise"
    ));
    let lines = decode_capture(&dir.join("capture.pcap"), &dir.join("scenario.json")).unwrap();
    assert!(lines.iter().all(|l| errors(l).is_empty()));
    assert_eq!(lines[0]["outer"]["type"], "NOISE_INITIATION");
    assert_eq!(lines[1]["outer"]["type"], "NOISE_RESPONSE");
    assert_eq!(lines[2]["outer"]["type"], "NOISE_DATA");
    assert_eq!(lines[2]["outer"]["keepalive"], true);
    assert!(lines[2..]
        .iter()
        .all(|l| l["outer"]["type"] == "NOISE_DATA"));
    let replies: Vec<u64> = lines
        .iter()
        .map(|l| &l["switch"]["inner"]["payload"]["icmp6"])
        .filter(|i| i["echo"] == "reply")
        .map(|i| i["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replies, [1, 2, 3]);
    // Without the ephemeral secret the response cannot be opened, and the data neither.
    let mut sc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("scenario.json")).unwrap()).unwrap();
    sc["temp_private_keys"] = serde_json::json!([]);
    let tmp = std::env::temp_dir().join(format!("pktctl-noise-{}.json", std::process::id()));
    std::fs::write(&tmp, sc.to_string()).unwrap();
    let lines = decode_capture(&dir.join("capture.pcap"), &tmp).unwrap();
    std::fs::remove_file(&tmp).ok();
    assert!(lines[1]["outer"]["error"]
        .as_str()
        .unwrap()
        .contains("ephemeral private key not recovered"));
}
