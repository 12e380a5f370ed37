//! Command-line front ends of pktmesh and the `cjdroute` daemon's driver.
//!
//! [`daemon`] is the I/O driver around the sans-IO node core; its `tun` module (Linux ioctls),
//! `udp` module (socket options) and `beacons` module (`IP_PKTINFO` messages) are the only code
//! in this crate that uses `unsafe` (the rest of the workspace has none but crypto-auth's CPU
//! dispatch, `crypto-auth/src/cpu`).
//! [`pktctl`] holds the subcommands of the `pktctl` binary (keys, labels, encoding schemes),
//! each a function from parsed arguments to an [`Output`] that the binary prints as one line
//! or one JSON object. The binary itself only parses arguments and prints.
#![deny(unsafe_code)]

pub mod daemon;
pub mod pktctl;

/// What a subcommand prints: one plain line, or the same result as a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The one-line plain form.
    pub line: String,
    /// The `--json` form.
    pub json: serde_json::Value,
}

impl Output {
    /// An output whose JSON form is `{ key: value }` and whose line is `value` as text.
    pub fn single(key: &str, value: impl Into<serde_json::Value>) -> Self {
        let value = value.into();
        let line = match &value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Self {
            line,
            json: serde_json::json!({ key: value }),
        }
    }
}
