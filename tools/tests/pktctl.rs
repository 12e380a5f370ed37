//! The `pktctl` command-line interface, exactly as other tools and checks call it.

use std::process::Command;

fn pktctl(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pktctl"))
        .args(args)
        .output()
        .expect("run pktctl");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, stdout, stderr) = pktctl(args);
    assert!(success, "pktctl {args:?} failed: {stderr}");
    assert_eq!(stdout.lines().count(), 1, "one line expected: {stdout:?}");
    stdout.trim_end().to_string()
}

fn fails(args: &[&str]) -> String {
    let (success, stdout, stderr) = pktctl(args);
    assert!(!success, "pktctl {args:?} should fail, printed {stdout:?}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "one-line error expected: {stderr:?}"
    );
    stderr
}

#[test]
fn key_gen_prints_a_valid_identity() {
    let out: serde_json::Value = serde_json::from_str(&ok(&["key", "gen"])).unwrap();
    let private = out["private_key"].as_str().unwrap();
    let public = out["public_key"].as_str().unwrap();
    let ipv6 = out["ipv6"].as_str().unwrap();
    assert_eq!(private.len(), 64);
    assert!(ipv6.starts_with("fc"));
    assert_eq!(ok(&["key", "pub", private]), public);
    assert_eq!(ok(&["key", "ip6", public]), ipv6);
}

#[test]
fn keys_of_the_captured_nodes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/cjdns-captures/two-node-password/scenario.json"
    );
    let scenario: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for node in scenario["nodes"].as_object().unwrap().values() {
        let public = node["public_key"].as_str().unwrap();
        assert_eq!(
            ok(&["key", "pub", node["private_key"].as_str().unwrap()]),
            public
        );
        assert_eq!(ok(&["key", "ip6", public]), node["ipv6"].as_str().unwrap());
        let json: serde_json::Value =
            serde_json::from_str(&ok(&["--json", "key", "ip6", public])).unwrap();
        assert_eq!(json["ipv6"], node["ipv6"]);
    }
}

#[test]
fn label_commands() {
    assert_eq!(
        ok(&[
            "label",
            "splice",
            "0000.0000.0000.0013",
            "0000.0000.0000.0015"
        ]),
        "0000.0000.0000.0153"
    );
    assert_eq!(
        ok(&[
            "label",
            "splice",
            "0000.0000.0000.0015",
            "0000.0000.0000.008e",
            "0000.0000.0000.00a2",
            "0000.0000.0000.001d",
            "0000.0000.0000.0414",
            "0000.0000.0000.001b"
        ]),
        "0000.001b.0535.10e5"
    );
    assert_eq!(
        ok(&[
            "label",
            "unsplice",
            "0000.0000.0000.0153",
            "0000.0000.0000.0013"
        ]),
        "0000.0000.0000.0015"
    );
    assert_eq!(
        ok(&[
            "label",
            "routes-through",
            "0000.001b.0535.10e5",
            "0000.0000.0000.0015"
        ]),
        "true"
    );
    assert_eq!(
        ok(&[
            "label",
            "routes-through",
            "0000.001b.0535.10e5",
            "0000.0000.0000.0013"
        ]),
        "false"
    );
    assert_eq!(ok(&["label", "one-hop", "0000.0000.0000.0096"]), "true");
    assert_eq!(ok(&["label", "one-hop", "0000.0000.0000.0153"]), "false");
    assert_eq!(
        ok(&["label", "one-hop", "0000.0000.0000.0210", "--scheme", "v48"]),
        "true"
    );
    assert_eq!(
        ok(&["label", "reencode", "0000.0000.0000.0015", "--form", "1"]),
        "0000.0000.0000.0086"
    );
    assert_eq!(
        ok(&[
            "label",
            "reencode",
            "0000.0000.0000.0404",
            "--form",
            "canonical",
            "--scheme",
            "v358"
        ]),
        "0000.0000.0000.0015"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["--json", "label", "one-hop", "0000.0000.0000.0013"])).unwrap();
    assert_eq!(json["one_hop"], true);
}

#[test]
fn scheme_commands() {
    for (name, hex) in [
        ("v358", "6114458100"),
        ("v48", "810c08"),
        ("f4", "8000"),
        ("f8", "0001"),
    ] {
        assert_eq!(ok(&["scheme", "encode", name]), hex);
    }
    let v37 = ok(&["scheme", "encode", "v37"]);
    let forms: serde_json::Value = serde_json::from_str(&ok(&["scheme", "decode", &v37])).unwrap();
    assert_eq!(
        forms,
        serde_json::json!([
            {"bit_count": 3, "prefix_len": 1, "prefix": 1},
            {"bit_count": 7, "prefix_len": 1, "prefix": 0}
        ])
    );
    let forms: serde_json::Value =
        serde_json::from_str(&ok(&["scheme", "decode", "6114458100"])).unwrap();
    assert_eq!(
        forms[0],
        serde_json::json!({"bit_count": 3, "prefix_len": 1, "prefix": 1})
    );
    assert_eq!(
        forms[2],
        serde_json::json!({"bit_count": 8, "prefix_len": 2, "prefix": 0})
    );
}

#[test]
fn bad_input_fails_with_one_line() {
    assert!(fails(&["key", "pub", "abcd"]).contains("wrong length"));
    assert!(fails(&["key", "ip6", "0000.k"]).contains("invalid public key"));
    fails(&["label", "splice", "0000.0000.0000.0000"]);
    fails(&[
        "label",
        "splice",
        "0400.0000.0000.1111",
        "0000.0000.0000.0005",
    ]);
    fails(&[
        "label",
        "unsplice",
        "0000.0000.0000.0153",
        "0000.0000.0000.0015",
    ]);
    fails(&[
        "label",
        "reencode",
        "0000.0000.0000.0015",
        "--form",
        "seven",
    ]);
    fails(&["label", "reencode", "0000.0000.0000.009e", "--form", "0"]);
    fails(&["label", "one-hop", "0000.0000.0000.0013", "--scheme", "v99"]);
    fails(&["scheme", "encode", "v99"]);
    fails(&["scheme", "decode", "zz"]);
    fails(&["scheme", "decode", "61144581"]);
}
