//! `cjdroute`: a pktmesh node, started the way cjdns' own `cjdroute` is.
//!
//! - `cjdroute --genconf` prints a new configuration in cjdns' format (with a random admin
//!   password; when standard output is a file, that file is made readable by its owner only);
//! - `cjdroute < cjdroute.conf` or `cjdroute --config FILE` runs a node (`--nobg` accepted for
//!   compatibility: pktmesh always stays in the foreground and logs to stdout).

use std::fs::Metadata;
use std::io::{IsTerminal, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use pktmesh_node::config::{
    genconf_with, Beacon, Config, GenconfOptions, LinkCapacityConf, LinkCryptoConf,
    PeerCredentials, PktmeshConf, SessionCryptoConf,
};
use pktmesh_node::egress::LinkCapacities;
use pktmesh_node::link_crypto::LinkCryptoMode;
use pktmesh_node::shard::MAX_SHARDS;
use pktmesh_tools::daemon::{
    self, agent, AuthorizedPassword, BeaconSettings, DaemonSettings, EthSettings, PeerSpec,
};
use tracing::{info, warn};

#[derive(Debug, Parser)]
#[command(
    name = "cjdroute",
    version,
    about = "pktmesh node, a drop-in for cjdns' cjdroute"
)]
struct Cli {
    /// Print a new configuration and exit.
    #[arg(long)]
    genconf: bool,
    /// With --genconf: enable the Ethernet interface (bind "all", beacons on), as cjdns does.
    #[arg(long, requires = "genconf")]
    eth: bool,
    /// Read the configuration from this file instead of standard input.
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// Stay in the foreground (pktmesh always does).
    #[arg(long)]
    nobg: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.genconf {
        let options = GenconfOptions::with_eth(cli.eth);
        return match write_genconf(&genconf_with(&mut rand_core::OsRng, options)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cjdroute: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stdout)
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cjdroute: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a generated config to standard output. When that is a regular file (`cjdroute
/// --genconf > cjdroute.conf`: the shell created it with the umask's mode), the file is made
/// readable and writable by its owner only first: it holds the private key and passwords.
fn write_genconf(text: &str) -> Result<()> {
    let stdout = std::io::stdout();
    let file = std::fs::File::from(stdout.as_fd().try_clone_to_owned()?);
    if file.metadata().is_ok_and(|m| m.is_file()) {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .context("making the new config file readable by its owner only")?;
    }
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A warning when a config file with `meta` is open to other users: it holds the node's
/// private key, its peering passwords and the admin password.
fn config_mode_warning(meta: &Metadata, source: &str) -> Option<String> {
    let mode = meta.permissions().mode() & 0o777;
    (meta.is_file() && mode & 0o077 != 0).then(|| {
        format!(
            "{source} has mode {mode:03o}: other users can read (or change) the private key and \
             passwords in it; chmod 600 it"
        )
    })
}

fn run(cli: &Cli) -> Result<()> {
    let (text, source) = match &cli.config {
        Some(path) => {
            if let Some(w) = std::fs::metadata(path)
                .ok()
                .and_then(|m| config_mode_warning(&m, path))
            {
                warn!("{w}");
            }
            (
                std::fs::read(path).with_context(|| format!("reading {path}"))?,
                path.clone(),
            )
        }
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("usage: cjdroute < cjdroute.conf   (or --config FILE, or --genconf)");
            }
            // `cjdroute < cjdroute.conf`: standard input is the file itself.
            if let Some(w) = stdin
                .as_fd()
                .try_clone_to_owned()
                .ok()
                .and_then(|fd| std::fs::File::from(fd).metadata().ok())
                .and_then(|m| config_mode_warning(&m, "the config file on standard input"))
            {
                warn!("{w}");
            }
            let mut text = Vec::new();
            stdin
                .lock()
                .read_to_end(&mut text)
                .context("reading the configuration from stdin")?;
            (text, "<stdin>".to_string())
        }
    };
    let loaded = Config::load(&text, &source)?;
    for w in &loaded.warnings {
        warn!("{w}");
    }
    let settings = settings_from(&loaded.config)?;
    let shutdown = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, shutdown.clone())
            .context("installing signal handlers")?;
    }
    info!(config = %source, "starting");
    let now = std::time::Instant::now();
    let dht = pktmesh_node::dht::Pathfinder::new(
        now,
        settings.private_key.public_key(),
        pktmesh_node::dht::Config::default(),
        rand_core::RngCore::next_u64(&mut rand_core::OsRng),
    );
    daemon::run(settings, dht, shutdown)
}

fn settings_from(config: &Config) -> Result<DaemonSettings> {
    let mut udp_binds: Vec<SocketAddr> = Vec::new();
    for udp in config.udp_interfaces() {
        match &udp.bind {
            Some(b) => udp_binds.push(b.0),
            None => udp_binds.push("0.0.0.0:0".parse()?),
        }
    }
    let peers = config
        .udp_peers()
        .map(|p| peer_spec(p.addr, p.credentials))
        .collect();
    let mut eth = Vec::new();
    for (i, e) in config.eth_interfaces().iter().enumerate() {
        let Some(device) = e.bind.clone() else {
            warn!("interfaces.ETHInterface[{i}]: no bind (a device name or \"all\"); skipped");
            continue;
        };
        // Without `beacon`, cjdns leaves a new Ethernet interface's beaconing off.
        let beacon = e.beacon.unwrap_or_default();
        eth.push(EthSettings {
            device,
            accept_beacons: beacon != Beacon::Off,
            send_beacons: beacon == Beacon::AcceptAndSend,
            peers: e
                .connect_to
                .iter()
                .map(|(mac, creds)| peer_spec(mac.0, creds))
                .collect(),
        });
    }
    let authorized = config
        .authorized_passwords
        .iter()
        .map(|a| AuthorizedPassword {
            password: String::from_utf8_lossy(a.password.as_bytes()).into_owned(),
            user: a.user.clone(),
            ipv6: a.ipv6.as_ref().map(|x| x.0),
        })
        .collect();
    let tun = config
        .wants_tun()
        .then(|| config.tun_device().unwrap_or("tun%d").to_string());
    let beacons = config
        .udp_interfaces()
        .iter()
        .enumerate()
        .filter(|(_, u)| u.beacon != Beacon::Off)
        .map(|(udp_index, u)| BeaconSettings {
            udp_index,
            send: u.beacon == Beacon::AcceptAndSend,
            port: u.beacon_port.unwrap_or(64512),
            devices: u
                .beacon_devices
                .clone()
                .unwrap_or_else(|| vec!["all".into()]),
        })
        .collect();
    // cjdns makes up a random admin password when none is configured.
    let admin_password = match config.admin_password() {
        Some(p) => p.to_vec(),
        None => {
            let mut r = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut r);
            r.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes()
        }
    };
    Ok(DaemonSettings {
        private_key: config.private_key(),
        udp_binds,
        peers,
        authorized,
        tun,
        admin_bind: Some(config.admin_bind()),
        admin_password,
        beacons,
        link_capacities: link_capacities(&config.pktmesh.link_capacity_kbps),
        route_server: config
            .pktmesh
            .route_server
            .as_ref()
            .map(|rs| agent::RouteServerSettings {
                url: rs.url.clone(),
                address: rs.address.map(|a| a.0),
                interval: Duration::from_secs(rs.interval_seconds.unwrap_or(5).max(1)),
                offer: rs.lease_offer.map(|o| agent::OfferSettings {
                    max_kbps: o.max_kbps,
                    max_seconds: o.max_seconds,
                    price_msat: o.price_msat,
                }),
            }),
        supernode_url: config.pktmesh.supernode.as_ref().map(|s| s.url.clone()),
        tun_offload: config.pktmesh.tun_offload.is_none_or(|v| v != 0),
        eth,
        workers: workers(&config.pktmesh)?,
        link_crypto: match config.pktmesh.link_crypto {
            Some(LinkCryptoConf::Legacy) => LinkCryptoMode::Legacy,
            _ => LinkCryptoMode::Noise,
        },
        session_noise: config.pktmesh.session_crypto != Some(SessionCryptoConf::Legacy),
    })
}

/// `pktmesh.linkCapacityKbps` as the node takes it.
fn link_capacities(conf: &LinkCapacityConf) -> LinkCapacities {
    LinkCapacities {
        default: Some(conf.default).filter(|k| *k > 0),
        by_link: conf.by_link.iter().copied().collect(),
        by_key: conf.by_key.iter().copied().collect(),
    }
}

/// `pktmesh.workers`: as configured, or one per core the process may use (its CPU affinity, so
/// `taskset -c 0 cjdroute` runs one). Leases, paced links and the supernode face work on any
/// number of workers.
fn workers(conf: &PktmeshConf) -> Result<usize> {
    match conf.workers {
        Some(n) if usize::from(n) > usize::from(MAX_SHARDS) => {
            bail!("pktmesh.workers: expected 0 (one per core) to {MAX_SHARDS}, got {n}")
        }
        Some(n) if n > 0 => Ok(usize::from(n)),
        _ => Ok(std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(usize::from(MAX_SHARDS))),
    }
}

/// A `connectTo` entry as the daemon takes it.
fn peer_spec<A>(address: A, creds: &PeerCredentials) -> PeerSpec<A> {
    PeerSpec {
        address,
        key: creds.public_key.0,
        password: creds
            .password
            .as_ref()
            .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
            .unwrap_or_default(),
        login: creds.login.clone(),
        name: creds.peer_name.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_open_to_other_users_is_warned_about() {
        let dir = std::env::temp_dir().join(format!("cjdroute-mode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.conf");
        std::fs::write(&path, "{}").unwrap();
        let warning = |mode: u32| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            config_mode_warning(&std::fs::metadata(&path).unwrap(), "c.conf")
        };
        assert_eq!(warning(0o600), None);
        assert_eq!(warning(0o400), None);
        let w = warning(0o644).expect("world-readable");
        assert!(w.contains("c.conf") && w.contains("644"), "{w}");
        assert!(warning(0o640).is_some(), "group-readable");
        assert!(warning(0o602).is_some(), "world-writable");
        // Not a regular file (a pipe on standard input, a directory): nothing to say.
        assert_eq!(
            config_mode_warning(&std::fs::metadata(&dir).unwrap(), "dir"),
            None
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn pktmesh(json: &str) -> PktmeshConf {
        let text = genconf_with(&mut rand_core::OsRng, GenconfOptions::default());
        let text = text.replacen('{', &format!("{{ \"pktmesh\": {json},"), 1);
        Config::load(text.as_bytes(), "test.conf")
            .unwrap_or_else(|e| panic!("{e}"))
            .config
            .pktmesh
    }

    #[test]
    fn link_crypto_is_noise_unless_legacy_is_asked_for() {
        assert_eq!(pktmesh("{}").link_crypto, None);
        let legacy = pktmesh(r#"{ "linkCrypto": "legacy" }"#).link_crypto;
        assert_eq!(legacy, Some(LinkCryptoConf::Legacy));
        let noise = pktmesh(r#"{ "linkCrypto": "noise" }"#).link_crypto;
        assert_eq!(noise, Some(LinkCryptoConf::Noise));
        assert_eq!(pktmesh("{}").session_crypto, None);
        let legacy = pktmesh(r#"{ "sessionCrypto": "legacy" }"#).session_crypto;
        assert_eq!(legacy, Some(SessionCryptoConf::Legacy));
        let text = genconf_with(&mut rand_core::OsRng, GenconfOptions::default());
        let text = text.replacen('{', r#"{ "pktmesh": { "linkCrypto": "wireguard" },"#, 1);
        let err = Config::load(text.as_bytes(), "test.conf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("linkCrypto"), "{err}");
    }

    #[test]
    fn workers_default_to_the_cores_we_may_use_and_errors_name_the_key() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(workers(&pktmesh("{}")).unwrap(), cores.min(64));
        assert_eq!(
            workers(&pktmesh(r#"{ "workers": 0 }"#)).unwrap(),
            cores.min(64)
        );
        assert_eq!(workers(&pktmesh(r#"{ "workers": 3 }"#)).unwrap(), 3);
        let err = workers(&pktmesh(r#"{ "workers": 65 }"#))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pktmesh.workers") && err.contains("64"),
            "{err}"
        );
        // Leases and pacing no longer keep the node on one worker.
        let paced = r#"{ "linkCapacityKbps": 1000, "workers": 2 }"#;
        assert_eq!(workers(&pktmesh(paced)).unwrap(), 2);
        assert_eq!(
            workers(&pktmesh(r#"{ "linkCapacityKbps": 1000 }"#)).unwrap(),
            cores.min(64)
        );
    }

    #[test]
    fn link_capacity_is_one_number_or_per_peer() {
        let one = link_capacities(&pktmesh(r#"{ "linkCapacityKbps": 10000 }"#).link_capacity_kbps);
        assert_eq!(one, LinkCapacities::uniform(Some(10_000)));
        let key = pktmesh_crypto_auth::PrivateKey::generate(&mut rand_core::OsRng).1;
        let per_peer = pktmesh(&format!(
            r#"{{ "linkCapacityKbps": {{ "default": 10000, "10.0.0.2:11002": 5000, "{key}": 2000 }} }}"#
        ));
        let caps = link_capacities(&per_peer.link_capacity_kbps);
        let other = pktmesh_crypto_auth::PublicKey::from_bytes([7; 32]);
        let (a, b): (SocketAddr, SocketAddr) = (
            "10.0.0.2:11002".parse().unwrap(),
            "10.0.0.3:1".parse().unwrap(),
        );
        assert_eq!(caps.of(&other, &a), Some(5000), "connectTo key");
        assert_eq!(caps.of(&key, &b), Some(2000), "incoming peer by key");
        assert_eq!(caps.of(&other, &b), Some(10_000), "default");
        assert_eq!(LinkCapacities::uniform(Some(0)).of(&other, &b), None);
        // A key that is neither is an error that names the key.
        let text = genconf_with(&mut rand_core::OsRng, GenconfOptions::default()).replacen(
            '{',
            r#"{ "pktmesh": { "linkCapacityKbps": { "nonsense": 5 } },"#,
            1,
        );
        let err = Config::load(text.as_bytes(), "test.conf")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nonsense") && err.contains("linkCapacityKbps"),
            "{err}"
        );
    }
}
