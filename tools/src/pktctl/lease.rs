//! `pktctl lease …`: buy, issue and configure bandwidth leases through a route server's HTTP
//! API (`docs/route-server.md`), for node operators and virtual ISPs.
//!
//! Every signing command builds the frame locally with the key of `--key-file` (the
//! lease-engine signer of that cjdns identity) and posts it; the route server checks it. A
//! non-2xx answer becomes an error that carries the server's body.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use pktmesh_crypto_auth::{Address, PrivateKey, PublicKey};
use pktmesh_lease_engine::sign::{Signer, SigningKey};
use pktmesh_lease_engine::wire::{Command, Config, Lease, Message, VirtualSwitchLease};
use pktmesh_lease_engine::{LeaseId, UnixTime};
use pktmesh_route_server::leases::{Order, VirtualNetwork};
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use crate::Output;

/// What `pktctl lease --help` says about outputs (they are stable; scripts may parse them).
pub const OUTPUT_HELP: &str = "\
Output (plain; with --json one JSON object instead):
  offers    header + one row per offer: NODE PEER KBPS MAX_SECONDS PRICE_MSAT_PER_MBIT_HOUR
            (--json: the server's {\"offers\": [...]})
  leases    header + one row per lease: ID FROM TO KBPS START END OWNER NETWORK STATE
            (STATE: active, pending, expired, released), then a blank line, a header and one
            row per virtual switch: VSWITCH OWNER START END INS OUTS (lists comma-separated,
            '-' when empty)  (--json: the server's {\"leases\": [...], \"virtual_switches\": [...]})
  pending   header + one row per order: ORDER NODE PEER KBPS START END BUYER
            (--json: the server's {\"orders\": [...]})
  buy       the order id (64 hex digits)                  --json: {\"order\": id}
  issue     the lease id (32 hex digits)                  --json: {\"lease\": id, \"order\": id}
  vswitch   the virtual-switch lease id (32 hex digits)   --json: {\"lease\": id}
  attach, classes, release, transfer
            the sequence number signed (decimal)          --json: {\"lease\": id, \"seq\": n}
  network   the sequence number signed (decimal)          --json: {\"network\": n, \"seq\": n}
  whoami    SIGNING_KEY PUBLIC_KEY IPV6 on one line       --json: {\"signing_key\", \"public_key\", \"ipv6\"}
Times are unix seconds; keys are hex Ed25519 signing keys (see whoami); ids are hex.
Errors: one line on stderr, exit status 1; a refusal by the server includes its status and body.";

/// Where the route server is and whose key signs.
#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// Route server HTTP API base URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:8470")]
    pub server: String,
    /// Key file: a cjdroute.conf (comments allowed) with "privateKey", or a file holding just
    /// the 64-hex-digit cjdns private key.
    #[arg(long, global = true)]
    pub key_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: LeaseCommand,
}

/// `pktctl lease` subcommands.
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// List lease offers (GET /offers).
    Offers,
    /// List leases and virtual switches (GET /leases).
    Leases,
    /// Buy a lease on the link NODE → PEER: sign an order as the key's owner (POST /orders).
    Buy {
        /// The node whose link it is (fc IPv6).
        #[arg(long)]
        node: String,
        /// The peer at the other end (fc IPv6).
        #[arg(long)]
        peer: String,
        /// kbit/s wanted.
        #[arg(long)]
        kbps: u32,
        /// Duration in seconds.
        #[arg(long)]
        seconds: u64,
        /// Start, unix seconds (default: now).
        #[arg(long)]
        start: Option<u64>,
    },
    /// Orders for NODE's links that no lease fulfils yet (GET /orders/pending).
    Pending {
        /// The node (fc IPv6).
        #[arg(long)]
        node: String,
    },
    /// Node operator: issue the lease an order asks for, signed by this node (POST /leases).
    Issue {
        /// The order id (from `pending`).
        #[arg(long)]
        order: String,
        /// The peer's cjdns public key (`….k`); must map to the order's peer address.
        #[arg(long)]
        peer_key: String,
    },
    /// Node operator: issue a virtual-switch lease at this node (POST /leases).
    Vswitch {
        /// The holder's signing key (hex, `whoami` of the virtual ISP).
        #[arg(long)]
        owner: String,
        /// Leases on links into this node it may connect (comma-separated ids).
        #[arg(long = "in", value_delimiter = ',', required = true)]
        ins: Vec<String>,
        /// Leases on links out of this node it may connect them to (comma-separated ids).
        #[arg(long = "out", value_delimiter = ',', required = true)]
        outs: Vec<String>,
        /// Duration in seconds.
        #[arg(long)]
        seconds: u64,
        /// Start, unix seconds (default: now).
        #[arg(long)]
        start: Option<u64>,
    },
    /// Owner: put a lease into virtual network N (0: take it out).
    Attach {
        /// The lease id.
        #[arg(long)]
        lease: String,
        /// The network id.
        #[arg(long)]
        network: u64,
        /// Sequence number.
        #[command(flatten)]
        seq: SeqArg,
    },
    /// Owner: set the default and highest traffic class (0..=15) of a lease.
    Classes {
        /// The lease id.
        #[arg(long)]
        lease: String,
        /// Class of unclassed packets.
        #[arg(long)]
        default: u8,
        /// Highest class allowed.
        #[arg(long)]
        max: u8,
        /// Sequence number.
        #[command(flatten)]
        seq: SeqArg,
    },
    /// Owner: give a lease up now.
    Release {
        /// The lease id.
        #[arg(long)]
        lease: String,
        /// Sequence number.
        #[command(flatten)]
        seq: SeqArg,
    },
    /// Owner: hand a lease to another owner.
    Transfer {
        /// The lease id.
        #[arg(long)]
        lease: String,
        /// The new owner's signing key (hex).
        #[arg(long)]
        to: String,
        /// Sequence number.
        #[command(flatten)]
        seq: SeqArg,
    },
    /// Owner: configure virtual network ID as the leases along a path, in order, and the
    /// virtual-switch leases connecting them (POST /networks; an empty --leases deletes it).
    Network {
        /// Network id.
        #[arg(long)]
        id: u64,
        /// Bandwidth leases along the path, in order (comma-separated ids).
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        leases: Vec<String>,
        /// Virtual-switch leases at the nodes in between (comma-separated ids).
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        vswitches: Vec<String>,
        /// Sequence number.
        #[command(flatten)]
        seq: SeqArg,
    },
    /// Print the key file's signing key, cjdns public key and address.
    Whoami,
}

/// The sequence number of a configuration.
#[derive(Debug, Clone, Copy, Args)]
pub struct SeqArg {
    /// Sequence number (default: milliseconds since the epoch, as docs/leases.md recommends).
    #[arg(long)]
    pub seq: Option<u64>,
}

impl SeqArg {
    fn get(self) -> u64 {
        self.seq.unwrap_or_else(now_ms)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn now_s() -> u64 {
    now_ms() / 1000
}

/// Reads the cjdns private key from `path`: 64 hex digits, or a cjdroute.conf with `privateKey`.
pub fn load_key(path: &Path) -> Result<PrivateKey> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("key file {name}: cannot read it"))?;
    if let Ok(text) = std::str::from_utf8(&bytes) {
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return PrivateKey::from_hex(t).map_err(|e| anyhow!("key file {name}: {e}"));
        }
    }
    let (dict, _) = pktmesh_node::config::parse_text(&bytes, &name)
        .map_err(|e| anyhow!("key file {name}: neither 64 hex digits nor a cjdroute.conf ({e})"))?;
    let hex = dict
        .get_str("privateKey")
        .ok_or_else(|| anyhow!("key file {name}: no \"privateKey\" string in it"))?;
    PrivateKey::from_hex(hex.trim()).map_err(|e| anyhow!("key file {name}: privateKey: {e}"))
}

fn parse_address(text: &str, what: &str) -> Result<Address> {
    Address::parse(text.trim())
        .map_err(|e| anyhow!("{what} {text:?} is not an fc IPv6 address: {e}"))
}

fn parse_lease_id(text: &str) -> Result<LeaseId> {
    let b = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok());
    b.map(LeaseId)
        .ok_or_else(|| anyhow!("lease id {text:?} is not 32 hex digits"))
}

fn parse_ids(list: &[String]) -> Result<Vec<LeaseId>> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_lease_id(s))
        .collect()
}

fn parse_signing_key(text: &str, what: &str) -> Result<SigningKey> {
    let key = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(SigningKey)
        .ok_or_else(|| anyhow!("{what} {text:?} is not 64 hex digits"))?;
    if key.cjdns_key().is_none() {
        bail!("{what} {text:?} is not a valid Ed25519 key");
    }
    Ok(key)
}

/// The route server's HTTP API.
struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(15))
                .build(),
        }
    }

    fn answer(&self, what: &str, r: Result<ureq::Response, ureq::Error>) -> Result<Value> {
        match r {
            Ok(resp) => resp
                .into_json::<Value>()
                .with_context(|| format!("{what}: the route server's answer is not JSON")),
            Err(ureq::Error::Status(code, resp)) => {
                let body = resp.into_string().unwrap_or_default();
                let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
                bail!("route server refused {what} ({code}): {body}")
            }
            Err(ureq::Error::Transport(t)) => {
                bail!(
                    "{what}: cannot reach the route server at {}: {t}",
                    self.base
                )
            }
        }
    }

    fn get(&self, path: &str) -> Result<Value> {
        let r = self.agent.get(&format!("{}{path}", self.base)).call();
        self.answer(&format!("GET {path}"), r)
    }

    /// Every page of a paged list (`?limit=&after=`, `next` cursor): the arrays named by
    /// `lists` concatenated, in one object like a single page.
    fn get_all(&self, path: &str, lists: &[&str]) -> Result<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut all = json!({});
        for l in lists {
            all[*l] = json!([]);
        }
        let mut after: Option<String> = None;
        // Bounded: a million entries at the largest page size.
        for _ in 0..1000 {
            let page_path = match &after {
                None => format!("{path}{sep}limit=1000"),
                Some(a) => format!("{path}{sep}limit=1000&after={a}"),
            };
            let page = self.get(&page_path)?;
            for l in lists {
                if let (Some(to), Some(from)) = (all[*l].as_array_mut(), page[*l].as_array()) {
                    to.extend(from.iter().cloned());
                }
            }
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_owned()),
                None => return Ok(all),
            }
        }
        bail!("GET {path}: more pages than expected")
    }

    /// Posts a signed frame; returns the server's id of it.
    fn post_frame(&self, path: &str, frame: &[u8]) -> Result<String> {
        let r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .send_json(json!({ "frame": hex::encode(frame) }));
        let v = self.answer(&format!("POST {path}"), r)?;
        v["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("POST {path}: the answer has no id: {v}"))
    }
}

fn signer(args: &LeaseArgs) -> Result<(PrivateKey, Signer)> {
    let path = args
        .key_file
        .as_deref()
        .ok_or_else(|| anyhow!("this command needs --key-file"))?;
    let key = load_key(path)?;
    let signer = Signer::from_cjdns(&key);
    Ok((key, signer))
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&width).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn rows(list: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|o| keys.iter().map(|k| cell(&o[*k])).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn list_cell(v: &Value) -> String {
    let items: Vec<String> = v
        .as_array()
        .map(|a| a.iter().map(cell).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(",")
    }
}

fn leases_output(v: Value) -> Output {
    let now = now_s();
    let leases: Vec<Vec<String>> = v["leases"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    let (start, end) = (l["start"].as_u64(), l["end"].as_u64());
                    let state = if l["released"].as_bool() == Some(true) {
                        "released"
                    } else if end.is_some_and(|e| e <= now) {
                        "expired"
                    } else if start.is_some_and(|s| s > now) {
                        "pending"
                    } else {
                        "active"
                    };
                    let mut row: Vec<String> = [
                        "id", "from", "to", "kbps", "start", "end", "owner", "network",
                    ]
                    .iter()
                    .map(|k| cell(&l[*k]))
                    .collect();
                    row.push(state.to_owned());
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    let vswitches: Vec<Vec<String>> = v["virtual_switches"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    let mut row: Vec<String> = ["id", "owner", "start", "end"]
                        .iter()
                        .map(|k| cell(&s[*k]))
                        .collect();
                    row.push(list_cell(&s["ins"]));
                    row.push(list_cell(&s["outs"]));
                    row
                })
                .collect()
        })
        .unwrap_or_default();
    let line = format!(
        "{}\n\n{}",
        table(
            &["ID", "FROM", "TO", "KBPS", "START", "END", "OWNER", "NETWORK", "STATE"],
            &leases
        ),
        table(
            &["VSWITCH", "OWNER", "START", "END", "INS", "OUTS"],
            &vswitches
        )
    );
    Output { line, json: v }
}

/// Signs and posts a configuration command; the output is the sequence number.
fn configure(
    args: &LeaseArgs,
    api: &Api,
    lease: &str,
    seq: SeqArg,
    command: Command,
) -> Result<Output> {
    let (_, signer) = signer(args)?;
    let target = parse_lease_id(lease)?;
    let seq = seq.get();
    let frame = Message::Config(Config {
        target,
        signer: signer.public(),
        seq,
        command,
    })
    .emit_signed(&signer)
    .map_err(|e| anyhow!("cannot build the configuration: {e}"))?;
    api.post_frame("/leases", &frame)?;
    Ok(Output {
        line: seq.to_string(),
        json: json!({ "lease": target.to_string(), "seq": seq }),
    })
}

/// Runs a lease subcommand.
pub fn run(args: &LeaseArgs) -> Result<Output> {
    let api = Api::new(&args.server);
    match &args.command {
        LeaseCommand::Offers => {
            let v = api.get("/offers")?;
            let rows = rows(
                &v["offers"],
                &[
                    "node",
                    "peer",
                    "kbps",
                    "max_seconds",
                    "price_msat_per_mbit_hour",
                ],
            );
            Ok(Output {
                line: table(
                    &[
                        "NODE",
                        "PEER",
                        "KBPS",
                        "MAX_SECONDS",
                        "PRICE_MSAT_PER_MBIT_HOUR",
                    ],
                    &rows,
                ),
                json: v,
            })
        }
        LeaseCommand::Leases => Ok(leases_output(
            api.get_all("/leases", &["leases", "virtual_switches"])?,
        )),
        LeaseCommand::Pending { node } => {
            let node = parse_address(node, "--node")?;
            let v = api.get_all(&format!("/orders/pending?node={node}"), &["orders"])?;
            let rows = rows(
                &v["orders"],
                &["id", "node", "peer", "kbps", "start", "end", "buyer"],
            );
            Ok(Output {
                line: table(
                    &["ORDER", "NODE", "PEER", "KBPS", "START", "END", "BUYER"],
                    &rows,
                ),
                json: v,
            })
        }
        LeaseCommand::Buy {
            node,
            peer,
            kbps,
            seconds,
            start,
        } => {
            let (_, signer) = signer(args)?;
            let (start, end) = time_span(*start, *seconds)?;
            if *kbps == 0 {
                bail!("--kbps must be positive");
            }
            let order = Order {
                node: parse_address(node, "--node")?,
                peer: parse_address(peer, "--peer")?,
                kbps: *kbps,
                start: UnixTime(start),
                end: UnixTime(end),
                buyer: signer.public(),
                nonce: OsRng.next_u64(),
            };
            let id = api.post_frame("/orders", &order.emit_signed(&signer))?;
            Ok(Output::single("order", id))
        }
        LeaseCommand::Issue { order, peer_key } => {
            let (key, signer) = signer(args)?;
            let me = key.public_key().address();
            let peer_key = PublicKey::parse(peer_key.trim())
                .map_err(|e| anyhow!("--peer-key {peer_key:?}: {e}"))?;
            let wanted = order.trim().to_ascii_lowercase();
            if wanted.len() != 64 || !wanted.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("order {wanted:?} is not 64 hex digits");
            }
            let orders = api.get(&format!("/orders?id={wanted}"))?;
            let o = orders["orders"]
                .as_array()
                .and_then(|a| a.iter().find(|o| o["id"].as_str() == Some(&wanted)))
                .ok_or_else(|| anyhow!("order {wanted} is not on the route server"))?;
            let field = |k: &str| {
                o[k].as_str()
                    .ok_or_else(|| anyhow!("order {wanted}: no {k} in the server's answer"))
            };
            let number = |k: &str| {
                o[k].as_u64()
                    .ok_or_else(|| anyhow!("order {wanted}: no {k} in the server's answer"))
            };
            let node = parse_address(field("node")?, "the order's node")?;
            if node != me {
                bail!("order {wanted} is for node {node}, but the key file is node {me}");
            }
            let peer = parse_address(field("peer")?, "the order's peer")?;
            if peer_key.address() != peer {
                bail!(
                    "--peer-key is {}, not the order's peer {peer}",
                    peer_key.address()
                );
            }
            let kbps = u32::try_from(number("kbps")?)
                .map_err(|_| anyhow!("order {wanted}: kbps out of range"))?;
            let mut id = [0u8; 16];
            OsRng.fill_bytes(&mut id);
            let lease = Lease {
                id: LeaseId(id),
                node: signer.public(),
                peer: *peer_key.as_bytes(),
                kbps,
                start: UnixTime(number("start")?),
                end: UnixTime(number("end")?),
                owner: parse_signing_key(field("buyer")?, "the order's buyer")?,
            };
            let frame = Message::Lease(lease)
                .emit_signed(&signer)
                .map_err(|e| anyhow!("cannot build the lease: {e}"))?;
            api.post_frame("/leases", &frame)?;
            Ok(Output {
                line: lease.id.to_string(),
                json: json!({ "lease": lease.id.to_string(), "order": wanted }),
            })
        }
        LeaseCommand::Vswitch {
            owner,
            ins,
            outs,
            seconds,
            start,
        } => {
            let (_, signer) = signer(args)?;
            let (start, end) = time_span(*start, *seconds)?;
            let mut id = [0u8; 16];
            OsRng.fill_bytes(&mut id);
            let vs = VirtualSwitchLease {
                id: LeaseId(id),
                node: signer.public(),
                owner: parse_signing_key(owner, "--owner")?,
                start: UnixTime(start),
                end: UnixTime(end),
                ins: parse_ids(ins)?,
                outs: parse_ids(outs)?,
            };
            let frame = Message::VirtualSwitch(vs)
                .emit_signed(&signer)
                .map_err(|e| anyhow!("cannot build the virtual-switch lease: {e}"))?;
            api.post_frame("/leases", &frame)?;
            Ok(Output::single("lease", LeaseId(id).to_string()))
        }
        LeaseCommand::Attach {
            lease,
            network,
            seq,
        } => configure(
            args,
            &api,
            lease,
            *seq,
            Command::Attach { network: *network },
        ),
        LeaseCommand::Classes {
            lease,
            default,
            max,
            seq,
        } => configure(
            args,
            &api,
            lease,
            *seq,
            Command::SetClasses {
                default_class: *default,
                max_class: *max,
            },
        ),
        LeaseCommand::Release { lease, seq } => {
            configure(args, &api, lease, *seq, Command::Release)
        }
        LeaseCommand::Transfer { lease, to, seq } => configure(
            args,
            &api,
            lease,
            *seq,
            Command::Transfer {
                new_owner: parse_signing_key(to, "--to")?,
            },
        ),
        LeaseCommand::Network {
            id,
            leases,
            vswitches,
            seq,
        } => {
            let (_, signer) = signer(args)?;
            let (leases, vswitches) = (parse_ids(leases)?, parse_ids(vswitches)?);
            let max = pktmesh_route_server::leases::MAX_VNET_LEASES;
            if leases.len() > max || vswitches.len() > max {
                bail!("a network lists at most {max} leases and {max} virtual switches");
            }
            let seq = seq.get();
            let frame = VirtualNetwork {
                id: *id,
                owner: signer.public(),
                seq,
                leases,
                vswitches,
            }
            .emit_signed(&signer);
            api.post_frame("/networks", &frame)?;
            Ok(Output {
                line: seq.to_string(),
                json: json!({ "network": id, "seq": seq }),
            })
        }
        LeaseCommand::Whoami => {
            let (key, signer) = signer(args)?;
            let public = key.public_key();
            let (sk, pk, ip) = (
                hex::encode(signer.public().0),
                public.to_string(),
                public.address().to_string(),
            );
            Ok(Output {
                line: format!("{sk} {pk} {ip}"),
                json: json!({ "signing_key": sk, "public_key": pk, "ipv6": ip }),
            })
        }
    }
}

/// `--start` (default now) and the end `--seconds` later; `--seconds` must be positive.
fn time_span(start: Option<u64>, seconds: u64) -> Result<(u64, u64)> {
    let start = start.unwrap_or_else(now_s);
    let end = start
        .checked_add(seconds)
        .filter(|_| seconds > 0)
        .ok_or_else(|| anyhow!("--seconds must be positive and end before 2^64"))?;
    Ok((start, end))
}
