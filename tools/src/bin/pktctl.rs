//! `pktctl`: keys, labels and encoding schemes of a cjdns/pktmesh network.
//!
//! Every subcommand prints one line (or one JSON object with `--json`; the `lease` listings print
//! a table) and exits non-zero with a one-line error on bad input.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pktmesh_tools::pktctl::{decode, key, label, lease, node, scheme};

#[derive(Debug, Parser)]
#[command(
    name = "pktctl",
    version,
    about = "pktmesh control tool: keys, labels, schemes"
)]
struct Cli {
    /// Print one JSON object instead of a plain line.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Node keys and addresses.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Route labels.
    #[command(subcommand)]
    Label(label::LabelCommand),
    /// Encoding schemes.
    #[command(subcommand)]
    Scheme(scheme::SchemeCommand),
    /// Decrypt a capture: one JSON object per UDP frame.
    Decode(decode::DecodeArgs),
    /// Peers of a running node (admin API).
    Peers(node::AdminTarget),
    /// End-to-end sessions of a running node (admin API).
    Sessions(node::AdminTarget),
    /// Switch-ping a label, or the node at an IPv6 address through its session (admin API).
    Ping {
        /// A label (`0000.0000.0000.0013`) or an fc IPv6 address.
        dest: String,
        /// Milliseconds to wait for the pong.
        #[arg(long, default_value_t = 2000)]
        timeout: u64,
        #[command(flatten)]
        target: node::AdminTarget,
    },
    /// Bandwidth leases through a route server: offers, buying, issuing, configuring.
    #[command(after_help = lease::OUTPUT_HELP)]
    Lease(lease::LeaseArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Key(cmd) => key::run(cmd),
        Command::Label(cmd) => label::run(cmd),
        Command::Scheme(cmd) => scheme::run(cmd),
        // Many lines of JSON, one per frame: prints for itself.
        Command::Decode(args) => return decode::main(args),
        Command::Peers(target) => node::peers(target),
        Command::Sessions(target) => node::sessions_output(target),
        Command::Ping {
            dest,
            timeout,
            target,
        } => node::ping(target, dest, *timeout),
        Command::Lease(args) => lease::run(args),
    };
    match result {
        Ok(out) => {
            if cli.json {
                println!("{}", out.json);
            } else {
                println!("{}", out.line);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
