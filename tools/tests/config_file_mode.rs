//! The config file holds the private key and passwords: `cjdroute --genconf > FILE` leaves
//! FILE readable by its owner only, and `cjdroute` warns when its config is open to others.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn cjdroute() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cjdroute"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pktmesh-mode-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn genconf_into_a_file_makes_it_owner_only() {
    let dir = scratch("genconf");
    let path = dir.join("cjdroute.conf");
    // What the shell does for `> cjdroute.conf` under a umask of 022.
    let file = std::fs::File::create(&path).unwrap();
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let status = cjdroute()
        .arg("--genconf")
        .stdout(Stdio::from(file))
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mode(&path), 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"privateKey\""), "{text}");
    let admin = text
        .lines()
        .skip_while(|l| !l.contains("\"admin\""))
        .find(|l| l.trim_start().starts_with("\"password\""))
        .expect("an admin password");
    assert!(!admin.contains("NONE"), "{admin}");

    // To a pipe it only prints.
    let out = cjdroute().arg("--genconf").output().unwrap();
    assert!(out.status.success() && out.stdout.starts_with(b"{"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_config_readable_by_others_is_warned_about() {
    let dir = scratch("warn");
    let path = dir.join("open.conf");
    // Not a valid config: the warning comes before it is even parsed.
    std::fs::write(&path, "{}").unwrap();
    for (mode, warned) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let by_path = cjdroute()
            .args(["--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let by_stdin = cjdroute()
            .stdin(Stdio::from(std::fs::File::open(&path).unwrap()))
            .output()
            .unwrap();
        for out in [by_path, by_stdin] {
            assert!(!out.status.success(), "an empty config does not start");
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert_eq!(text.contains("chmod 600"), warned, "mode {mode:o}:\n{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
