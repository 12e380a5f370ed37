//! `pktctl label`: splice, unsplice, routes-through, one-hop and re-encoding of route labels.

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use pktmesh_switch::{ConvertTo, Label};

use super::parse_scheme;
use crate::Output;

/// Label subcommands. Labels are written `0000.0000.0000.0013`.
#[derive(Debug, Subcommand)]
pub enum LabelCommand {
    /// The label for travelling hop1 first, then hop2, …
    Splice {
        /// Hops in travel order.
        #[arg(required = true)]
        hops: Vec<String>,
    },
    /// What remains of `full` after the prefix `mid`.
    Unsplice {
        /// The whole path.
        full: String,
        /// A prefix of it.
        mid: String,
    },
    /// Whether the route to `dest` passes through the node `mid` reaches.
    RoutesThrough {
        /// The route.
        dest: String,
        /// The candidate midpoint.
        mid: String,
    },
    /// Whether the label reaches a direct peer.
    OneHop {
        /// The label.
        label: String,
        /// Encoding scheme (name or serialized hex).
        #[arg(long, default_value = "v358")]
        scheme: String,
    },
    /// Re-encode the first director in another form.
    Reencode {
        /// The label.
        label: String,
        /// Form index, or `canonical`.
        #[arg(long)]
        form: String,
        /// Encoding scheme (name or serialized hex).
        #[arg(long, default_value = "v358")]
        scheme: String,
    },
}

fn parse_label(text: &str) -> Result<Label> {
    Label::parse(text.trim()).with_context(|| format!("invalid label {text:?}"))
}

/// Runs a label subcommand.
pub fn run(cmd: &LabelCommand) -> Result<Output> {
    match cmd {
        LabelCommand::Splice { hops } => {
            let hops = hops
                .iter()
                .map(|h| parse_label(h))
                .collect::<Result<Vec<_>>>()?;
            let label = Label::splice_path(&hops).map_err(|e| anyhow!("cannot splice: {e}"))?;
            Ok(Output::single("label", label.to_string()))
        }
        LabelCommand::Unsplice { full, mid } => {
            let label = Label::unsplice(parse_label(full)?, parse_label(mid)?)
                .map_err(|e| anyhow!("cannot unsplice: {e}"))?;
            Ok(Output::single("label", label.to_string()))
        }
        LabelCommand::RoutesThrough { dest, mid } => Ok(Output::single(
            "routes_through",
            parse_label(dest)?.routes_through(parse_label(mid)?),
        )),
        LabelCommand::OneHop { label, scheme } => Ok(Output::single(
            "one_hop",
            parse_scheme(scheme)?.is_one_hop(parse_label(label)?),
        )),
        LabelCommand::Reencode {
            label,
            form,
            scheme,
        } => {
            let scheme = parse_scheme(scheme)?;
            let to = if form.eq_ignore_ascii_case("canonical") {
                ConvertTo::Canonical
            } else {
                match form.parse::<usize>() {
                    Ok(n) => ConvertTo::Form(n),
                    Err(_) => {
                        bail!("invalid --form {form:?}: expected a form number or \"canonical\"")
                    }
                }
            };
            let out = scheme
                .convert_label(parse_label(label)?, to)
                .map_err(|e| anyhow!("cannot re-encode: {e}"))?;
            Ok(Output::single("label", out.to_string()))
        }
    }
}
