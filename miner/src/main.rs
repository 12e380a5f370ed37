//! `pktmine`: mine and check PacketCrypt announcements and block proofs.
#![forbid(unsafe_code)]

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use pktmesh_chain::announce::AnnValidator;
use pktmesh_chain::block::{validate_block_proof, BlockHeader, CoinbaseCommitment, PcProof, Tx};
use pktmesh_chain::hash::{b2b512, reversed};
use pktmesh_chain::item::ItemBuilder;
use pktmesh_chain::randhash::Program;
use pktmesh_miner::ann::{mine_anns, AnnJob};
use pktmesh_miner::bench::{bench_ann, bench_blk};
use pktmesh_miner::block::BlockMiner;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "pktmine",
    about = "PacketCrypt (PKT) announcement and block miner and checker"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Mine announcements; prints one hex announcement per line.
    Ann {
        /// Parent block hash, display order (as explorers show it).
        #[arg(long)]
        parent_hash: String,
        /// Parent block height.
        #[arg(long)]
        parent_height: u32,
        /// Compact work target, hex (e.g. 207fffff).
        #[arg(long, default_value = "207fffff")]
        work_bits: String,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Number of announcements to mine.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// First hard nonce (thread t uses first + t, first + t + threads, ...).
        #[arg(long, default_value_t = 0)]
        hard_nonce: u32,
    },
    /// Re-mine the PcP nonce of a block given in the format of synthetic_block_pcp_v2.json;
    /// prints the new PcP as JSON.
    Block {
        /// JSON file with header_hex, coinbase commitment, all announcements and block_height.
        #[arg(long)]
        json: String,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Measure mining speed.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// Validate one announcement; prints {"valid":…}.
    CheckAnn {
        /// Announcement, 1024 bytes hex.
        hex: String,
        /// Parent block hash, display order (as explorers show it).
        #[arg(long)]
        parent_hash: String,
        /// PcP version of the block context.
        #[arg(long, default_value_t = 2)]
        pcp_version: u32,
    },
    /// Validate a block's PacketCrypt proof from a JSON file; prints {"valid":…}.
    CheckBlock {
        /// JSON file in the format of synthetic_block_pcp_v2.json.
        #[arg(long)]
        json: String,
    },
    /// Print the first 16 bytes (hex) of BLAKE2b-512 of a v1 table item whose program seed and
    /// item seed are both `seed_hex`.
    Item {
        /// 32-byte seed, hex.
        seed_hex: String,
        /// Item number.
        item_no: u64,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Ann-hash attempts per second (tables are built first and not timed).
    Ann {
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Seconds to measure.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
    },
    /// Block hashes per second over `--mem` MiB of announcements per thread.
    Blk {
        /// MiB of announcements per thread.
        #[arg(long, default_value_t = 1024)]
        mem: usize,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Seconds to measure.
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
    },
}

fn hex32(s: &str) -> Result<[u8; 32]> {
    let v = hex::decode(s.trim()).context("not hex")?;
    v.try_into().map_err(|_| anyhow!("expected 32 bytes"))
}

fn display_hash(s: &str) -> Result<[u8; 32]> {
    Ok(reversed(&hex32(s)?))
}

fn field<'a>(v: &'a Value, k: &str) -> Result<&'a str> {
    v[k].as_str()
        .ok_or_else(|| anyhow!("missing string field {k}"))
}

fn print_result(r: std::result::Result<[u8; 32], String>) {
    // Field order is part of the output contract: "valid" first.
    match r {
        Ok(h) => println!("{{\"valid\":true,\"work_hash\":\"{}\"}}", hex::encode(h)),
        Err(e) => println!("{{\"valid\":false,\"error\":{}}}", Value::String(e)),
    }
}

struct BlockInput {
    header: BlockHeader,
    pcp: Option<PcProof>,
    commitment: CoinbaseCommitment,
    parent: [u8; 32],
    height: u32,
}

fn read_block_json(path: &str) -> Result<(Value, BlockInput)> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
    )?;
    let header =
        BlockHeader::parse(&hex::decode(field(&v, "header_hex")?)?).map_err(|e| anyhow!("{e}"))?;
    let pcp = match v["pcp_wire_hex"].as_str() {
        Some(h) => Some(PcProof::parse(&hex::decode(h)?).map_err(|e| anyhow!("{e}"))),
        None => None,
    };
    let pcp = pcp.transpose().ok().flatten();
    let commitment = if let Some(c) = v["coinbase_commitment_hex"].as_str() {
        CoinbaseCommitment::from_slice(&hex::decode(c)?).map_err(|e| anyhow!("{e}"))?
    } else {
        let tx =
            Tx::parse(&hex::decode(field(&v, "coinbase_tx_hex")?)?).map_err(|e| anyhow!("{e}"))?;
        tx.pc_commitment().map_err(|e| anyhow!("{e}"))?
    };
    let parent = hex32(field(&v, "ann_parent_block_hash_raw")?)?;
    let height = v["block_height"]
        .as_u64()
        .ok_or_else(|| anyhow!("missing block_height"))? as u32;
    Ok((
        v,
        BlockInput {
            header,
            pcp,
            commitment,
            parent,
            height,
        },
    ))
}

fn check_block(path: &str) -> Result<()> {
    let (v, b) = read_block_json(path)?;
    let pcp = match b.pcp {
        Some(p) => p,
        None => {
            let wire = hex::decode(field(&v, "pcp_wire_hex")?)?;
            match PcProof::parse(&wire) {
                Ok(p) => p,
                Err(e) => {
                    print_result(Err(e.to_string()));
                    return Ok(());
                }
            }
        }
    };
    let r = validate_block_proof(&b.header, &pcp, &b.commitment, &[b.parent; 4], b.height)
        .map(|ok| ok.work_hash)
        .map_err(|e| e.to_string());
    print_result(r);
    Ok(())
}

fn main() -> std::process::ExitCode {
    // Bad input gets one line on stderr and a non-zero exit, never a backtrace.
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::CheckAnn {
            hex: ann_hex,
            parent_hash,
            pcp_version,
        } => {
            let ann = hex::decode(ann_hex.trim()).context("announcement is not hex")?;
            let parent = display_hash(&parent_hash)?;
            let r = AnnValidator::new()
                .check(&ann, &parent, pcp_version)
                .map(|c| c.work_hash)
                .map_err(|e| e.to_string());
            print_result(r);
        }
        Cmd::CheckBlock { json } => check_block(&json)?,
        Cmd::Item { seed_hex, item_no } => {
            let seed = hex32(&seed_hex)?;
            let prog = Program::create(&seed).map_err(|e| anyhow!("{e}"))?;
            let mut item = [0u8; 1024];
            ItemBuilder::new()
                .mkitem2(item_no, &seed, &prog, &mut item)
                .map_err(|e| anyhow!("{e}"))?;
            println!("{}", hex::encode(&b2b512(&item)[..16]));
        }
        Cmd::Ann {
            parent_hash,
            parent_height,
            work_bits,
            threads,
            count,
            hard_nonce,
        } => {
            let job = AnnJob {
                parent_hash: display_hash(&parent_hash)?,
                parent_height,
                work_bits: u32::from_str_radix(&work_bits, 16).context("work bits")?,
                content_type: 0,
                content: Vec::new(),
                signing_key: [0u8; 32],
            };
            let start = Instant::now();
            let mut last = (Instant::now(), 0u64);
            let anns = mine_anns(&job, threads, count, hard_nonce, |attempts, found| {
                if last.0.elapsed().as_secs_f64() >= 1.0 {
                    let rate = (attempts - last.1) as f64 / last.0.elapsed().as_secs_f64();
                    eprint!("\r{:>8.1}s  {attempts} attempts  {rate:.0} attempts/s  {found}/{count} found   ", start.elapsed().as_secs_f64());
                    let _ = std::io::stderr().flush();
                    last = (Instant::now(), attempts);
                }
            })
            .map_err(|e| anyhow!("{e}"))?;
            eprintln!();
            for a in anns {
                println!("{}", hex::encode(a));
            }
        }
        Cmd::Block { json, threads } => {
            let (v, b) = read_block_json(&json)?;
            let anns: Vec<[u8; 1024]> = v["all_anns_sorted_by_hash_prefix"]
                .as_array()
                .ok_or_else(|| anyhow!("missing all_anns_sorted_by_hash_prefix"))?
                .iter()
                .map(|a| -> Result<[u8; 1024]> {
                    let bytes = hex::decode(a.as_str().unwrap_or_default())?;
                    bytes
                        .try_into()
                        .map_err(|_| anyhow!("announcement is not 1024 bytes"))
                })
                .collect::<Result<_>>()?;
            let miner = BlockMiner::new(&anns, b.commitment.ann_min_target(), 2)
                .map_err(|e| anyhow!("{e}"))?;
            if miner.commitment() != b.commitment {
                bail!("announcement set does not match the coinbase commitment");
            }
            let stop = AtomicBool::new(false);
            let attempts = AtomicU64::new(0);
            let threads = threads.max(1) as u32;
            let chunk = u32::MAX / threads;
            let found: Vec<Option<PcProof>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|t| {
                        let (miner, stop, attempts, header) = (&miner, &stop, &attempts, &b.header);
                        s.spawn(move || {
                            let r = miner
                                .mine(header, t * chunk, (t + 1) * chunk, stop, attempts)
                                .ok()
                                .flatten();
                            if r.is_some() {
                                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                            r
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().ok().flatten()).collect()
            });
            let pcp = found
                .into_iter()
                .flatten()
                .next()
                .ok_or_else(|| anyhow!("no nonce found"))?;
            // Check exactly what goes on the wire.
            let pcp = PcProof::parse(&pcp.serialize())
                .map_err(|e| anyhow!("mined proof does not parse: {e}"))?;
            let ok = validate_block_proof(&b.header, &pcp, &b.commitment, &[b.parent; 4], b.height)
                .map_err(|e| anyhow!("mined proof rejected: {e}"))?;
            println!(
                "{}",
                json!({"pcp_nonce": pcp.nonce, "pcp_wire_hex": hex::encode(pcp.serialize()), "work_hash": hex::encode(ok.work_hash)})
            );
        }
        Cmd::Bench { what } => match what {
            BenchCmd::Ann { threads, secs } => {
                eprintln!("building tables for {threads} thread(s)...");
                let r = bench_ann(threads, secs, |rate| {
                    eprintln!("  {rate:.0} ann-hash attempts/s");
                })
                .map_err(|e| anyhow!("{e}"))?;
                println!(
                    "bench ann: {:.0} ann-hash attempts/s total, {:.0} per thread, {:.0} per CPU-second ({} threads, {:.1}s)",
                    r.per_sec(),
                    r.per_sec() / r.threads as f64,
                    r.per_cpu_sec().unwrap_or(f64::NAN),
                    r.threads,
                    r.elapsed.as_secs_f64()
                );
            }
            BenchCmd::Blk { mem, threads, secs } => {
                eprintln!("filling {mem} MiB per thread for {threads} thread(s)...");
                let r = bench_blk(threads, mem, secs, |rate| {
                    eprintln!("  {rate:.0} block hashes/s");
                })
                .map_err(|e| anyhow!("{e}"))?;
                println!(
                    "bench blk: {:.0} block hashes/s total, {:.0} per thread, {:.0} per CPU-second ({} threads, {mem} MiB/thread, {:.1}s)",
                    r.per_sec(),
                    r.per_sec() / r.threads as f64,
                    r.per_cpu_sec().unwrap_or(f64::NAN),
                    r.threads,
                    r.elapsed.as_secs_f64()
                );
            }
        },
    }
    Ok(())
}
