//! `pktctl` subcommands: `key`, `label`, `scheme`, `decode`, the admin-API ones (`peers`,
//! `sessions`, `ping`) and `lease`. Argument types are clap derives; the logic lives in one
//! function per subcommand.

pub mod decode;
pub mod key;
pub mod label;
pub mod lease;
pub mod node;
pub mod scheme;

use anyhow::{anyhow, Result};
use pktmesh_switch::EncodingScheme;

/// Parses a scheme name (`v358`, `v48`, `v37`, `f4`, `f8`) or a compact serialized scheme in hex.
pub fn parse_scheme(text: &str) -> Result<EncodingScheme> {
    if let Some(s) = EncodingScheme::by_name(text) {
        return Ok(s);
    }
    let bytes = hex::decode(text).map_err(|_| {
        anyhow!("unknown scheme {text:?}: expected v358, v48, v37, f4, f8 or serialized hex")
    })?;
    EncodingScheme::deserialize(&bytes).map_err(|e| anyhow!("invalid scheme {text:?}: {e}"))
}
