//! `cjdroute.conf`: cjdns' JSON-with-comments dialect, the typed configuration the daemon
//! runs from, and `--genconf`.
//!
//! # Loading
//!
//! [`Config::load`] follows cjdns 22.3 (`rust/cjdns_sys/src/rffi/benc.rs` → `read_conf`):
//!
//! 1. Parse the text strictly (see [`json`] for the dialect).
//! 2. If that fails, parse it again in lax mode (missing or extra commas and colons
//!    tolerated). A file that only parses laxly is accepted only if its `"version"` is absent
//!    or ≤ 1: generated files say `"version": 2`, and a version-2 file that does not parse
//!    strictly is an editing mistake, so it is rejected with the strict-mode error.
//! 3. Map the value onto [`Config`] with `serde`. A key the schema does not know is a
//!    [`Warning`], not an error (keys starting with `_`, cjdns' way of disabling a block such as
//!    `_disabled_ETHInterface`, get their own warning kind). A value of the wrong shape is a
//!    [`ConfigError::Value`] naming the file, the key path and what was expected.
//!
//! # Types
//!
//! Strings that the core interprets are validated while loading: the private key (64 hex
//! digits), peers' public keys (`….k`, address in `fc00::/8`), socket addresses (`ip:port`,
//! `[ipv6]:port`; host names are refused as cjdns refuses them), MAC addresses, integer ranges.
//! Passwords are kept as bytes (cjdns allows `\xHH` in them).

use std::cell::RefCell;
use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::str::FromStr;

use pktmesh_crypto_auth::{PrivateKey, PublicKey};
use serde::Deserialize;
use thiserror::Error;

use crate::bencode::{Dict, Value};

mod genconf;
pub mod json;
mod valuede;

pub use genconf::{genconf, genconf_with, GenconfOptions};
pub use json::{SyntaxError, SyntaxErrorKind};
pub use valuede::KeyPath;

use valuede::ValueDe;

// ------------------------------------------------------------------------------------------------
// Errors and warnings
// ------------------------------------------------------------------------------------------------

/// Why a config file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text does not parse even in lax mode.
    #[error("{file}: {error}")]
    Syntax {
        /// File name as given to [`Config::load`].
        file: String,
        /// Where and what (from the strict parse, which is the more precise one).
        error: SyntaxError,
    },
    /// The text parses only in lax mode, but the file claims a version that must be strict.
    #[error(
        "{file}: {error} (the file says \"version\": {version}, so it must parse strictly; \
         fix the syntax or set \"version\" to 1)"
    )]
    StrictRequired {
        /// File name.
        file: String,
        /// The strict-mode error.
        error: SyntaxError,
        /// The `version` found.
        version: i64,
    },
    /// The top-level value is not an object.
    #[error("{file}: the top level must be an object ({{ … }})")]
    NotAnObject {
        /// File name.
        file: String,
    },
    /// A value does not fit the schema.
    #[error("{file}: {path}: {message}")]
    Value {
        /// File name.
        file: String,
        /// Key path of the offending value.
        path: KeyPath,
        /// What was expected, and what was found.
        message: String,
    },
}

/// What a [`Warning`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// A key the schema does not know; it is ignored.
    UnknownKey,
    /// A key starting with `_` (cjdns' idiom for a disabled block); it is ignored.
    DisabledKey,
    /// The file parsed only in lax mode; the strict error is given.
    LaxSyntax(SyntaxError),
    /// A key given twice in one object (line of the later one); the last value wins.
    DuplicateKey {
        /// 1-based line.
        line: usize,
    },
    /// Text after the closing `}` of the file (from this line on); it is ignored.
    TrailingContent {
        /// 1-based line.
        line: usize,
    },
    /// A setting that is accepted but has no effect or is incomplete.
    Ineffective(String),
}

/// Something in the file that is accepted but worth logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Where in the file.
    pub path: KeyPath,
    /// What.
    pub kind: WarningKind,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            WarningKind::UnknownKey => write!(f, "{}: unknown key, ignored", self.path),
            WarningKind::DisabledKey => write!(f, "{}: disabled block, ignored", self.path),
            WarningKind::LaxSyntax(e) => {
                write!(f, "parsed in lax mode, strict parse failed at {e}")
            }
            WarningKind::DuplicateKey { line } => write!(
                f,
                "{}: key given more than once (line {line}), the last one wins",
                self.path
            ),
            WarningKind::TrailingContent { line } => {
                write!(f, "line {line}: text after the end of the config, ignored")
            }
            WarningKind::Ineffective(why) => write!(f, "{}: {why}", self.path),
        }
    }
}

mod schema;
mod values;

pub use schema::*;
pub use values::*;

// ------------------------------------------------------------------------------------------------
// Loading
// ------------------------------------------------------------------------------------------------

/// A loaded config, the raw value it came from, and what was worth a warning.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Loaded {
    /// The typed configuration.
    pub config: Config,
    /// The parsed file (as cjdns' core would see it), e.g. for `--cleanconf`.
    pub raw: Dict,
    /// Unknown keys, lax parsing and the like.
    pub warnings: Vec<Warning>,
}

/// Parses the text of a config file into a dictionary following cjdns' strict-then-lax rule.
/// Returns the dictionary and warnings; `file` names the file in errors.
pub fn parse_text(text: &[u8], file: &str) -> Result<(Dict, Vec<Warning>), ConfigError> {
    let mut warnings = Vec::new();
    let (value, notes) = match json::parse(text, false) {
        Ok(ok) => ok,
        Err(strict) => {
            let Ok((value, notes)) = json::parse(text, true) else {
                return Err(ConfigError::Syntax {
                    file: file.to_owned(),
                    error: strict,
                });
            };
            // cjdns reads the version as an integer; anything else is an error there too.
            let version = match &value {
                Value::Dict(d) => match d.get("version") {
                    None => 0,
                    Some(Value::Int(v)) => *v,
                    Some(_) => {
                        return Err(ConfigError::Value {
                            file: file.to_owned(),
                            path: KeyPath::from_keys(["version"]),
                            message: "expected an integer".to_owned(),
                        })
                    }
                },
                _ => 0,
            };
            if version > 1 {
                return Err(ConfigError::StrictRequired {
                    file: file.to_owned(),
                    error: strict,
                    version,
                });
            }
            warnings.push(Warning {
                path: KeyPath::default(),
                kind: WarningKind::LaxSyntax(strict),
            });
            (value, notes)
        }
    };
    for note in notes {
        warnings.push(match note {
            json::SyntaxNote::DuplicateKey { key, line } => Warning {
                path: KeyPath::default().child_key(&key),
                kind: WarningKind::DuplicateKey { line },
            },
            json::SyntaxNote::TrailingContent { line } => Warning {
                path: KeyPath::default(),
                kind: WarningKind::TrailingContent { line },
            },
        });
    }
    match value {
        Value::Dict(d) => Ok((d, warnings)),
        _ => Err(ConfigError::NotAnObject {
            file: file.to_owned(),
        }),
    }
}

impl Config {
    /// Loads a config from the bytes of a file (see the module docs for the rules).
    pub fn load(text: &[u8], file: &str) -> Result<Loaded, ConfigError> {
        let (raw, mut warnings) = parse_text(text, file)?;
        let config = Self::from_dict(&raw, file, &mut warnings)?;
        Ok(Loaded {
            config,
            raw,
            warnings,
        })
    }

    /// Maps an already parsed dictionary onto the schema, appending warnings.
    pub fn from_dict(
        raw: &Dict,
        file: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Self, ConfigError> {
        let unknown = RefCell::new(Vec::new());
        let value = Value::Dict(raw.clone());
        let result = Self::deserialize(ValueDe {
            value: &value,
            path: KeyPath::default(),
            unknown: &unknown,
        });
        let config = result.map_err(|e| ConfigError::Value {
            file: file.to_owned(),
            path: e.path.unwrap_or_default(),
            message: e.message,
        })?;
        for path in unknown.into_inner() {
            let disabled = path.last_key().is_some_and(|k| k.starts_with(b"_"));
            warnings.push(Warning {
                path,
                kind: if disabled {
                    WarningKind::DisabledKey
                } else {
                    WarningKind::UnknownKey
                },
            });
        }
        config.validate(file, warnings)?;
        Ok(config)
    }

    /// Cross-field rules cjdns enforces when applying the config.
    fn validate(&self, file: &str, warnings: &mut Vec<Warning>) -> Result<(), ConfigError> {
        let err = |keys: &[&str], index: Option<usize>, message: &str| {
            let mut path = KeyPath::from_keys(keys.iter().copied());
            if let Some(i) = index {
                path = path.child_index(i);
            }
            ConfigError::Value {
                file: file.to_owned(),
                path,
                message: message.to_owned(),
            }
        };
        let public = self.public_key();
        if let Some(text) = &self.public_key {
            if PublicKey::parse_any(text).ok() != Some(public) {
                warnings.push(Warning {
                    path: KeyPath::from_keys(["publicKey"]),
                    kind: WarningKind::Ineffective(format!(
                        "does not match privateKey (which gives {public}); privateKey is used"
                    )),
                });
            }
        }
        if let Some(text) = &self.ipv6 {
            let ours = Ipv6Addr::from(public.address());
            if Ipv6Addr::from_str(text).ok() != Some(ours) {
                warnings.push(Warning {
                    path: KeyPath::from_keys(["ipv6"]),
                    kind: WarningKind::Ineffective(format!(
                        "does not match privateKey (which gives {}); privateKey is used",
                        public.address()
                    )),
                });
            }
        }
        for (i, udp) in self.interfaces.udp.0.iter().enumerate() {
            if udp.beacon != Beacon::Off
                && (udp.beacon_port.is_none() || udp.beacon_devices.is_none())
            {
                warnings.push(Warning {
                    path: KeyPath::from_keys(["interfaces", "UDPInterface"])
                        .child_index(i)
                        .child_key(b"beacon"),
                    kind: WarningKind::Ineffective(
                        "beacon needs beaconPort and beaconDevices; beaconing stays off".into(),
                    ),
                });
            }
        }
        if let Some(iface) = &self.router.interface {
            if iface.is_socket() && iface.socket_full_path.is_none() {
                return Err(err(
                    &["router", "interface", "socketFullPath"],
                    None,
                    "required when type is SocketInterface",
                ));
            }
        }
        for (i, c) in self.router.ip_tunnel.allowed_connections.iter().enumerate() {
            let keys = ["router", "ipTunnel", "allowedConnections"];
            if c.ip4_address.is_none() && c.ip6_address.is_none() {
                return Err(err(
                    &keys,
                    Some(i),
                    "either ip4Address or ip6Address is required",
                ));
            }
            if c.ip4_prefix.is_some() && c.ip4_address.is_none() {
                return Err(err(&keys, Some(i), "ip4Prefix requires ip4Address"));
            }
            if c.ip6_prefix.is_some() && c.ip6_address.is_none() {
                return Err(err(&keys, Some(i), "ip6Prefix requires ip6Address"));
            }
        }
        Ok(())
    }

    /// The node's private key.
    pub fn private_key(&self) -> PrivateKey {
        self.private_key.0.clone()
    }

    /// The node's public key (derived from the private key).
    pub fn public_key(&self) -> PublicKey {
        self.private_key.0.public_key()
    }

    /// Where the admin API listens.
    pub fn admin_bind(&self) -> SocketAddr {
        self.admin.bind.0
    }

    /// The admin password; `None` if absent (cjdns then makes a random one).
    /// The literal `NONE` disables authentication.
    pub fn admin_password(&self) -> Option<&[u8]> {
        self.admin.password.as_ref().map(Secret::as_bytes)
    }

    /// UDP interfaces in file order.
    pub fn udp_interfaces(&self) -> &[UdpInterface] {
        &self.interfaces.udp.0
    }

    /// Ethernet interfaces in file order.
    pub fn eth_interfaces(&self) -> &[EthInterface] {
        &self.interfaces.eth.0
    }

    /// Every UDP peer to connect to, with the index of the interface it belongs to.
    pub fn udp_peers(&self) -> impl Iterator<Item = UdpPeer<'_>> {
        self.interfaces
            .udp
            .0
            .iter()
            .enumerate()
            .flat_map(|(interface, udp)| {
                udp.connect_to.iter().map(move |(addr, creds)| UdpPeer {
                    interface,
                    addr: addr.0,
                    public_key: creds.public_key.0,
                    credentials: creds,
                })
            })
    }

    /// Whether to stay in the foreground (`noBackground` non-zero).
    pub fn no_background(&self) -> bool {
        self.no_background != 0
    }

    /// Whether `router.interface` asks for a TUN device (the generated default).
    pub fn wants_tun(&self) -> bool {
        self.router
            .interface
            .as_ref()
            .is_some_and(RouterInterface::is_tun)
    }

    /// The persistent TUN device name, if one is configured.
    pub fn tun_device(&self) -> Option<&str> {
        self.router.interface.as_ref()?.tun_device.as_deref()
    }

    /// Whether `logging.logTo` is `"stdout"`.
    pub fn log_to_stdout(&self) -> bool {
        self.logging.log_to.as_deref() == Some("stdout")
    }
}

/// One UDP peer from `connectTo`, with parsed address and key.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct UdpPeer<'a> {
    /// Index into [`Config::udp_interfaces`].
    pub interface: usize,
    /// Where to send.
    pub addr: SocketAddr,
    /// Who must answer.
    pub public_key: PublicKey,
    /// Password, login, names.
    pub credentials: &'a PeerCredentials,
}

impl UdpPeer<'_> {
    /// The password, if any.
    pub fn password(&self) -> Option<&[u8]> {
        self.credentials.password.as_ref().map(Secret::as_bytes)
    }

    /// The login, if any.
    pub fn login(&self) -> Option<&str> {
        self.credentials.login.as_deref()
    }
}

/// Writes `raw` as plain strict JSON without comments (sorted keys, two-space indentation),
/// for `--cleanconf`. This is the layout of the captured configs, not byte for byte what
/// cjdns' own `--cleanconf` prints (which indents differently and writes `\xHH` in upper
/// case).
pub fn clean_conf(raw: &Dict) -> String {
    let mut out = String::new();
    json::write_clean(&Value::Dict(raw.clone()), 0, &mut out);
    out.push('\n');
    out
}
