//! The `pktmine` output formats other tools depend on.

use std::process::Command;

fn vectors(name: &str) -> String {
    format!(
        "{}/../../shared/vectors/packetcrypt/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pktmine"))
        .args(args)
        .output()
        .expect("run pktmine");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn check_ann_output() {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors("real_ann_v1_mainnet.json")).unwrap(),
    )
    .unwrap();
    let ann = v["ann_hex"].as_str().unwrap();
    let parent = v["parent_block_hash_display"].as_str().unwrap();
    let out = run(&["check-ann", ann, "--parent-hash", parent]);
    assert_eq!(
        out.trim(),
        format!(
            "{{\"valid\":true,\"work_hash\":\"{}\"}}",
            v["expected"]["work_hash_raw"].as_str().unwrap()
        )
    );
    let out = run(&[
        "check-ann",
        ann,
        "--parent-hash",
        parent,
        "--pcp-version",
        "2",
    ]);
    assert!(out.starts_with("{\"valid\":true"));
    let raw = v["parent_block_hash_raw"].as_str().unwrap();
    let out = run(&["check-ann", ann, "--parent-hash", raw]);
    assert_eq!(
        out.trim(),
        "{\"valid\":false,\"error\":\"item 4 prefix mismatch\"}"
    );
}

#[test]
fn check_block_output() {
    let out = run(&[
        "check-block",
        "--json",
        &vectors("synthetic_block_pcp_v2.json"),
    ]);
    assert_eq!(
        out.trim(),
        "{\"valid\":true,\"work_hash\":\"14bd9581076a7f338579ddf939bba5c1b5f6f7ed6e6f90398bad725e4bc00500\"}"
    );
}

#[test]
fn item_output_matches_vector_lines() {
    let text = std::fs::read_to_string(vectors("randhash_mkitem2_400.txt")).unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')).step_by(97) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(run(&["item", f[1], f[2]]).trim(), f[3]);
    }
}

#[test]
fn block_command_remines_the_synthetic_nonce() {
    let out = run(&[
        "block",
        "--json",
        &vectors("synthetic_block_pcp_v2.json"),
        "--threads",
        "1",
    ]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["pcp_nonce"], 1798);
    assert_eq!(
        v["work_hash"],
        "14bd9581076a7f338579ddf939bba5c1b5f6f7ed6e6f90398bad725e4bc00500"
    );
}
