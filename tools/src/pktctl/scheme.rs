//! `pktctl scheme`: the compact serialized form of encoding schemes, both ways.

use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use pktmesh_switch::EncodingScheme;
use serde_json::json;

use crate::Output;

/// Scheme subcommands.
#[derive(Debug, Subcommand)]
pub enum SchemeCommand {
    /// Print the serialized hex of a well-known scheme (v358, v48, v37, f4, f8).
    Encode {
        /// Scheme name.
        name: String,
    },
    /// Print the forms of a serialized scheme as a JSON list, in serialized order.
    Decode {
        /// Serialized scheme, hex.
        hex: String,
    },
}

/// Runs a scheme subcommand.
pub fn run(cmd: &SchemeCommand) -> Result<Output> {
    match cmd {
        SchemeCommand::Encode { name } => {
            let scheme = EncodingScheme::by_name(name).ok_or_else(|| {
                anyhow!("unknown scheme {name:?}: expected v358, v48, v37, f4 or f8")
            })?;
            Ok(Output::single("hex", hex::encode(scheme.serialize())))
        }
        SchemeCommand::Decode { hex: text } => {
            let bytes =
                hex::decode(text.trim()).with_context(|| format!("invalid hex {text:?}"))?;
            let scheme = EncodingScheme::deserialize(&bytes)
                .map_err(|e| anyhow!("invalid scheme {text:?}: {e}"))?;
            let forms: Vec<_> = scheme
                .forms()
                .iter()
                .map(|f| json!({"bit_count": f.bit_count, "prefix_len": f.prefix_len, "prefix": f.prefix}))
                .collect();
            let json = serde_json::Value::Array(forms);
            Ok(Output {
                line: json.to_string(),
                json,
            })
        }
    }
}
