//! `pktctl peers`, `pktctl sessions`, `pktctl ping`: ask a running node over its admin API.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use pktmesh_node::admin::client;
use pktmesh_node::bencode::{Dict, Value};
use pktmesh_switch::Label;
use serde_json::{json, Value as Json};

use crate::Output;

/// Where the node's admin API is, as given on the command line. What is not given comes from
/// `~/.cjdnsadmin`, as cjdns' tools (cjdnstool, cexec) take it, and failing that from the
/// defaults of `cjdroute --genconf` ([`AdminTarget::endpoint`]).
#[derive(Clone, Args)]
pub struct AdminTarget {
    /// Admin API address (cjdroute.conf `admin.bind`) [default: `addr` and `port` of
    /// ~/.cjdnsadmin, else 127.0.0.1:11234].
    #[arg(long, global = true)]
    pub admin: Option<SocketAddr>,
    /// Admin password (cjdroute.conf `admin.password`) [default: `password` of
    /// ~/.cjdnsadmin, else NONE].
    #[arg(long, global = true)]
    pub admin_password: Option<String>,
    /// The admin file to read instead of ~/.cjdnsadmin.
    #[arg(long, global = true, value_name = "FILE")]
    pub cjdnsadmin: Option<PathBuf>,
}

impl std::fmt::Debug for AdminTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTarget")
            .field("admin", &self.admin)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("cjdnsadmin", &self.cjdnsadmin)
            .finish()
    }
}

/// The admin API address and password to use.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where the admin API listens.
    pub addr: SocketAddr,
    /// Its password (`NONE`: send requests without authenticating).
    pub password: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The admin API address when nothing says otherwise (`cjdroute --genconf`'s `admin.bind`).
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 11234);

/// `~/.cjdnsadmin`: `{"addr": "127.0.0.1", "port": 11234, "password": "…"}`, every key
/// optional (other keys, such as cjdcmd's `config`, are ignored).
#[derive(Debug, Default, serde::Deserialize)]
struct AdminFile {
    addr: Option<std::net::IpAddr>,
    port: Option<u16>,
    password: Option<String>,
}

impl AdminTarget {
    /// The address and password to use: each from the command line if given there, else from
    /// the admin file (`--cjdnsadmin`, or `~/.cjdnsadmin` when `$HOME` is set and the file
    /// exists), else 127.0.0.1:11234 and `NONE`. A named file that cannot be read, or an
    /// admin file that is not valid JSON, is an error.
    pub fn endpoint(&self) -> Result<Endpoint> {
        let (text, path) = match &self.cjdnsadmin {
            Some(path) => (
                Some(
                    std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?,
                ),
                Some(path.clone()),
            ),
            None => match std::env::var_os("HOME") {
                Some(home) => {
                    let path = PathBuf::from(home).join(".cjdnsadmin");
                    match std::fs::read_to_string(&path) {
                        Ok(text) => (Some(text), Some(path)),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (None, None),
                        Err(e) => {
                            return Err(e).with_context(|| format!("reading {}", path.display()))
                        }
                    }
                }
                None => (None, None),
            },
        };
        self.endpoint_with(text.as_deref())
            .with_context(|| match path {
                Some(p) => format!("admin file {}", p.display()),
                None => "admin target".to_string(),
            })
    }

    /// [`AdminTarget::endpoint`] with the admin file's text given (`None`: no file).
    pub fn endpoint_with(&self, admin_file: Option<&str>) -> Result<Endpoint> {
        let file: AdminFile = match admin_file {
            Some(text) => serde_json::from_str(text).context("not the JSON object expected")?,
            None => AdminFile::default(),
        };
        let addr = self.admin.unwrap_or_else(|| {
            SocketAddr::new(
                file.addr.unwrap_or(DEFAULT_ADMIN.ip()),
                file.port.unwrap_or(DEFAULT_ADMIN.port()),
            )
        });
        let password = self
            .admin_password
            .clone()
            .or(file.password)
            .unwrap_or_else(|| "NONE".to_string());
        Ok(Endpoint { addr, password })
    }
}

/// Calls `function` with `args` and returns the response dictionary.
pub fn call(target: &AdminTarget, function: &str, args: Dict, timeout: Duration) -> Result<Dict> {
    let target = target.endpoint()?;
    call_at(&target, function, args, timeout)
}

/// [`call`] at a resolved endpoint.
fn call_at(target: &Endpoint, function: &str, args: Dict, timeout: Duration) -> Result<Dict> {
    let sock = UdpSocket::bind(if target.addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    sock.set_read_timeout(Some(timeout))?;
    sock.connect(target.addr)?;
    let mut buf = [0u8; 65536];
    let mut recv = |what: &str| -> Result<Dict> {
        let n = sock
            .recv(&mut buf)
            .with_context(|| format!("no answer from the admin API at {} ({what})", target.addr))?;
        Ok(client::parse_response(&buf[..n])?.dict)
    };
    let txid = b"pktctl".to_vec();
    let request = if target.password == "NONE" {
        client::request(function, args, &txid)
    } else {
        sock.send(&client::cookie_request(b"cookie"))?;
        let d = recv("cookie")?;
        let cookie = d
            .get_bytes("cookie")
            .ok_or_else(|| anyhow!("admin API sent no cookie"))?
            .to_vec();
        client::authenticated_request(function, args, target.password.as_bytes(), &cookie, &txid)
    };
    sock.send(&request)?;
    let d = recv(function)?;
    if let Some(e) = d
        .get_str("error")
        .filter(|e| !e.eq_ignore_ascii_case("none"))
    {
        bail!("{function}: {e}");
    }
    Ok(d)
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Int(i) => json!(i),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => json!(s),
            Err(_) => json!(hex::encode(b)),
        },
        Value::List(l) => Json::Array(l.iter().map(to_json).collect()),
        Value::Dict(d) => Json::Object(
            d.iter()
                .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), to_json(v)))
                .collect(),
        ),
    }
}

/// Every page of a paged function, concatenating the list under `key`.
fn all_pages(target: &AdminTarget, function: &str, key: &str) -> Result<Vec<Value>> {
    let endpoint = target.endpoint()?;
    let mut out = Vec::new();
    for page in 0..1000 {
        let d = call_at(
            &endpoint,
            function,
            Dict::new().with("page", Value::Int(page)),
            Duration::from_secs(3),
        )?;
        out.extend(d.get_list(key).unwrap_or_default().iter().cloned());
        if d.get_int("more").is_none_or(|m| m == 0) {
            break;
        }
    }
    Ok(out)
}

/// `pktctl peers`.
pub fn peers(target: &AdminTarget) -> Result<Output> {
    let peers = all_pages(target, "InterfaceController_peerStats", "peers")?;
    let summary: Vec<String> = peers
        .iter()
        .filter_map(Value::as_dict)
        .map(|p| {
            format!(
                "{} {} {}",
                p.get_str("lladdr").unwrap_or("?"),
                p.get_str("addr").unwrap_or("?"),
                p.get_str("state").unwrap_or("?")
            )
        })
        .collect();
    Ok(Output {
        line: format!("{} peers: {}", peers.len(), summary.join("; ")),
        json: json!({ "peers": peers.iter().map(to_json).collect::<Vec<_>>() }),
    })
}

/// `pktctl sessions`.
pub fn sessions(target: &AdminTarget) -> Result<Vec<Dict>> {
    let handles = all_pages(target, "SessionManager_getHandles", "handles")?;
    let mut out = Vec::new();
    for h in handles.iter().filter_map(Value::as_int) {
        out.push(call(
            target,
            "SessionManager_sessionStats",
            Dict::new().with("handle", Value::Int(h)),
            Duration::from_secs(3),
        )?);
    }
    Ok(out)
}

/// `pktctl sessions` as output.
pub fn sessions_output(target: &AdminTarget) -> Result<Output> {
    let s = sessions(target)?;
    let summary: Vec<String> = s
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.get_str("ip6").unwrap_or("?"),
                d.get_str("state").unwrap_or("?")
            )
        })
        .collect();
    Ok(Output {
        line: format!("{} sessions: {}", s.len(), summary.join("; ")),
        json: json!({ "sessions": s.iter().map(|d| to_json(&Value::Dict(d.clone()))).collect::<Vec<_>>() }),
    })
}

/// `pktctl ping <ipv6|label>`: a switch ping along the label, or along the path of the
/// session with that address.
pub fn ping(target: &AdminTarget, dest: &str, timeout_ms: u64) -> Result<Output> {
    let path = if let Ok(label) = Label::parse(dest) {
        label.to_string()
    } else {
        let ip: std::net::Ipv6Addr = dest.parse().map_err(|_| {
            anyhow!("{dest:?} is neither a label (0000.0000.0000.0013) nor an IPv6 address")
        })?;
        let session = sessions(target)?
            .into_iter()
            .find(|d| {
                d.get_str("ip6")
                    .and_then(|s| s.parse::<std::net::Ipv6Addr>().ok())
                    == Some(ip)
            })
            .ok_or_else(|| anyhow!("no session with {dest}; send it traffic first"))?;
        let addr = session.get_str("addr").unwrap_or_default();
        // v<version>.<label>.<key>.k
        addr.split('.')
            .skip(1)
            .take(4)
            .collect::<Vec<_>>()
            .join(".")
    };
    let d = call(
        target,
        "SwitchPinger_ping",
        Dict::new()
            .with("path", Value::from(path.as_str()))
            .with("timeout", Value::Int(timeout_ms as i64)),
        Duration::from_millis(timeout_ms + 2000),
    )?;
    let result = d.get_str("result").unwrap_or("?").to_string();
    let ms = d.get_int("ms").unwrap_or(-1);
    if result != "pong" {
        bail!("ping {path}: {result} after {ms} ms");
    }
    Ok(Output {
        line: format!(
            "pong from {path} in {ms} ms (version {})",
            d.get_int("version").unwrap_or(0)
        ),
        json: to_json(&Value::Dict(d)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(admin: Option<&str>, password: Option<&str>) -> AdminTarget {
        AdminTarget {
            admin: admin.map(|a| a.parse().unwrap()),
            admin_password: password.map(str::to_string),
            cjdnsadmin: None,
        }
    }

    #[test]
    fn the_admin_file_fills_in_what_the_command_line_leaves_out() {
        let file = r#"{ "addr": "::1", "port": 11300, "password": "from the file", "config": "/etc/cjdroute.conf" }"#;
        let e = target(None, None).endpoint_with(Some(file)).unwrap();
        assert_eq!(e.addr, "[::1]:11300".parse().unwrap());
        assert_eq!(e.password, "from the file");
        // The command line wins, key by key.
        let e = target(Some("127.0.0.1:9"), None)
            .endpoint_with(Some(file))
            .unwrap();
        assert_eq!(
            (e.addr, e.password.as_str()),
            ("127.0.0.1:9".parse().unwrap(), "from the file")
        );
        let e = target(None, Some("cli")).endpoint_with(Some(file)).unwrap();
        assert_eq!(e.password, "cli");
        // Keys the file leaves out take the defaults.
        let e = target(None, None)
            .endpoint_with(Some(r#"{"password": "p"}"#))
            .unwrap();
        assert_eq!((e.addr, e.password.as_str()), (DEFAULT_ADMIN, "p"));
    }

    #[test]
    fn without_a_file_the_genconf_defaults_apply_and_a_bad_file_is_an_error() {
        let e = target(None, None).endpoint_with(None).unwrap();
        assert_eq!((e.addr, e.password.as_str()), (DEFAULT_ADMIN, "NONE"));
        assert!(target(None, None).endpoint_with(Some("not json")).is_err());
        assert!(target(None, None)
            .endpoint_with(Some(r#"{"port": "eleven"}"#))
            .is_err());
        // The password never shows in Debug output.
        let t = target(None, Some("hunter2"));
        assert!(!format!("{t:?}").contains("hunter2"));
        let e = t.endpoint_with(None).unwrap();
        assert!(!format!("{e:?}").contains("hunter2"));
    }

    #[test]
    fn a_named_admin_file_is_read() {
        let dir = std::env::temp_dir().join(format!("pktctl-admin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("admin.json");
        std::fs::write(
            &path,
            r#"{"addr": "127.0.0.1", "port": 4444, "password": "x"}"#,
        )
        .unwrap();
        let t = AdminTarget {
            cjdnsadmin: Some(path.clone()),
            ..target(None, None)
        };
        let e = t.endpoint().unwrap();
        assert_eq!((e.addr.port(), e.password.as_str()), (4444, "x"));
        let missing = AdminTarget {
            cjdnsadmin: Some(dir.join("missing")),
            ..target(None, None)
        };
        assert!(missing.endpoint().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
