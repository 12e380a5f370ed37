//! `pktctl peers`, `pktctl sessions`, `pktctl ping`: ask a running node over its admin API.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use pktmesh_node::admin::client;
use pktmesh_node::bencode::{Dict, Value};
use pktmesh_switch::Label;
use serde_json::{json, Value as Json};

use crate::Output;

/// Where the node's admin API is.
#[derive(Debug, Clone, Args)]
pub struct AdminTarget {
    /// Admin API address (cjdroute.conf `admin.bind`).
    #[arg(long, global = true, default_value = "127.0.0.1:11234")]
    pub admin: SocketAddr,
    /// Admin password (cjdroute.conf `admin.password`).
    #[arg(long, global = true, default_value = "NONE")]
    pub admin_password: String,
}

/// Calls `function` with `args` and returns the response dictionary.
pub fn call(target: &AdminTarget, function: &str, args: Dict, timeout: Duration) -> Result<Dict> {
    let sock = UdpSocket::bind(if target.admin.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    sock.set_read_timeout(Some(timeout))?;
    sock.connect(target.admin)?;
    let mut buf = [0u8; 65536];
    let mut recv = |what: &str| -> Result<Dict> {
        let n = sock.recv(&mut buf).with_context(|| {
            format!("no answer from the admin API at {} ({what})", target.admin)
        })?;
        Ok(client::parse_response(&buf[..n])?.dict)
    };
    let txid = b"pktctl".to_vec();
    let request = if target.admin_password == "NONE" {
        client::request(function, args, &txid)
    } else {
        sock.send(&client::cookie_request(b"cookie"))?;
        let d = recv("cookie")?;
        let cookie = d
            .get_bytes("cookie")
            .ok_or_else(|| anyhow!("admin API sent no cookie"))?
            .to_vec();
        client::authenticated_request(
            function,
            args,
            target.admin_password.as_bytes(),
            &cookie,
            &txid,
        )
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
    let mut out = Vec::new();
    for page in 0..1000 {
        let d = call(
            target,
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
