//! `pktctl key`: generate identities and derive public keys and addresses.

use anyhow::{Context, Result};
use clap::Subcommand;
use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use serde_json::json;

use crate::Output;

/// Key subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a node identity whose address is in fc00::/8.
    Gen,
    /// Print the `.k` public key of a 64-hex-digit private key.
    Pub {
        /// Private key, 64 hex digits.
        private_key: String,
    },
    /// Print the IPv6 address of a `.k` public key.
    Ip6 {
        /// Public key, `<52 base32 chars>.k`.
        public_key: String,
    },
}

/// Runs a key subcommand.
pub fn run(cmd: &KeyCommand) -> Result<Output> {
    match cmd {
        KeyCommand::Gen => {
            let (private, public, address) = PrivateKey::generate(&mut rand_core::OsRng);
            let json = json!({
                "private_key": private.to_hex(),
                "public_key": public.to_string(),
                "ipv6": address.to_string(),
            });
            Ok(Output {
                line: json.to_string(),
                json,
            })
        }
        KeyCommand::Pub { private_key } => {
            let private = PrivateKey::from_hex(private_key.trim())
                .with_context(|| format!("invalid private key {private_key:?}"))?;
            Ok(Output::single(
                "public_key",
                private.public_key().to_string(),
            ))
        }
        KeyCommand::Ip6 { public_key } => {
            let public = PublicKey::parse(public_key.trim())
                .with_context(|| format!("invalid public key {public_key:?}"))?;
            Ok(Output::single("ipv6", public.address().to_string()))
        }
    }
}
