//! The client side of the admin API: building requests (plain and authenticated, hashed as
//! cjdns' tools hash them) and reading responses, for `pktctl` and tests.

use super::{find, password_hash_hex, strtoll_u32, Sha256};
use crate::bencode::{self, Dict};
use sha2::Digest;
use thiserror::Error;

/// `{q: cookie, txid}`.
pub fn cookie_request(txid: &[u8]) -> Vec<u8> {
    bencode::encode_cjdns(&Dict::new().with("q", "cookie").with("txid", txid))
}

/// `{q: function, args, txid}` without authentication (`args` omitted when empty).
pub fn request(function: &str, args: Dict, txid: &[u8]) -> Vec<u8> {
    let mut d = Dict::new().with("q", function).with("txid", txid);
    if !args.is_empty() {
        d.insert("args", args);
    }
    bencode::encode_cjdns(&d)
}

/// An authenticated request for `function` with the cookie string a server sent, built as
/// cjdns' `AdminClient` builds it (so the hash matches what stock nodes compute).
pub fn authenticated_request(
    function: &str,
    args: Dict,
    password: &[u8],
    cookie: &[u8],
    txid: &[u8],
) -> Vec<u8> {
    let hash1 = password_hash_hex(password, strtoll_u32(cookie));
    let mut d = Dict::new()
        .with("q", "auth")
        .with("aq", function)
        .with("cookie", cookie)
        .with("hash", hash1.to_vec())
        .with("txid", txid);
    if !args.is_empty() {
        d.insert("args", args);
    }
    let mut bytes = bencode::encode_cjdns(&d);
    let hash2 = super::hex_lower(&Sha256::digest(&bytes));
    // The hash string is in the request we just built, so it is found.
    if let Some(at) = find(&bytes, &hash1) {
        bytes[at..at + 64].copy_from_slice(&hash2);
    }
    bytes
}

/// Why a response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Not a bencoded dictionary.
    #[error("malformed admin response: {0}")]
    Malformed(bencode::DecodeError),
    /// A cookie response without a cookie.
    #[error("admin response has no cookie")]
    NoCookie,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdminResponse {
    /// The whole dictionary (including `txid` and `error`).
    pub dict: Dict,
}

impl AdminResponse {
    /// The echoed `txid`.
    pub fn txid(&self) -> Option<&[u8]> {
        self.dict.get_bytes("txid")
    }

    /// The `error` text unless it is absent or `none` (cjdns' success marker).
    pub fn error(&self) -> Option<&str> {
        self.dict
            .get_str("error")
            .filter(|e| !e.eq_ignore_ascii_case("none"))
    }

    /// The `cookie` of a cookie response.
    pub fn cookie(&self) -> Result<&[u8], ClientError> {
        self.dict.get_bytes("cookie").ok_or(ClientError::NoCookie)
    }

    /// For `Admin_availableFunctions`: the function names on this page and whether
    /// another page follows.
    pub fn function_page(&self) -> (Vec<String>, bool) {
        let names = self
            .dict
            .get_dict("availableFunctions")
            .map(|d| {
                d.iter()
                    .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        (names, self.dict.get_int("more").is_some_and(|m| m != 0))
    }
}

/// Parses one response datagram.
pub fn parse_response(bytes: &[u8]) -> Result<AdminResponse, ClientError> {
    bencode::parse_dict(bytes)
        .map(|dict| AdminResponse { dict })
        .map_err(ClientError::Malformed)
}

/// One admin call as a small state machine: with a password it first asks for a cookie,
/// then sends the authenticated request; without one it sends the plain request.
///
/// The cookie request uses the call's txid followed by `/cookie`, so responses can be
/// told apart; responses with other txids are reported as [`Step::Ignored`].
#[derive(Clone)]
pub struct Exchange {
    function: String,
    args: Dict,
    password: Option<Vec<u8>>,
    txid: Vec<u8>,
    cookie_txid: Vec<u8>,
    awaiting_cookie: bool,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("function", &self.function)
            .field("args", &self.args)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("txid", &String::from_utf8_lossy(&self.txid))
            .field("awaiting_cookie", &self.awaiting_cookie)
            .finish_non_exhaustive()
    }
}

/// What to do after a response datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Step {
    /// Send this datagram and wait for the next response.
    Send(Vec<u8>),
    /// The call's response.
    Done(AdminResponse),
    /// A datagram for some other request (or garbage); keep waiting.
    Ignored,
}

impl Exchange {
    /// Starts a call; returns the exchange and the first datagram to send.
    pub fn start(
        function: &str,
        args: Dict,
        password: Option<&[u8]>,
        txid: &[u8],
    ) -> (Self, Vec<u8>) {
        let mut cookie_txid = txid.to_vec();
        cookie_txid.extend_from_slice(b"/cookie");
        let exchange = Self {
            function: function.to_owned(),
            args,
            password: password.map(<[u8]>::to_vec),
            txid: txid.to_vec(),
            cookie_txid,
            awaiting_cookie: password.is_some(),
        };
        let first = if exchange.awaiting_cookie {
            cookie_request(&exchange.cookie_txid)
        } else {
            request(&exchange.function, exchange.args.clone(), &exchange.txid)
        };
        (exchange, first)
    }

    /// Feeds one response datagram.
    pub fn on_response(&mut self, bytes: &[u8]) -> Result<Step, ClientError> {
        let Ok(response) = parse_response(bytes) else {
            return Ok(Step::Ignored);
        };
        if self.awaiting_cookie {
            if response.txid() != Some(&self.cookie_txid[..]) {
                return Ok(Step::Ignored);
            }
            let cookie = response.cookie()?;
            self.awaiting_cookie = false;
            let password = self.password.as_deref().unwrap_or_default();
            return Ok(Step::Send(authenticated_request(
                &self.function,
                self.args.clone(),
                password,
                cookie,
                &self.txid,
            )));
        }
        if response.txid() != Some(&self.txid[..]) {
            return Ok(Step::Ignored);
        }
        Ok(Step::Done(response))
    }
}
