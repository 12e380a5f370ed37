//! The cjdns admin API (bencode over UDP) as a sans-IO state machine, and its client side.
//!
//! # Server
//!
//! [`AdminServer::handle`] takes one request datagram, the wall-clock time ([`UnixMillis`]),
//! the sender's address and the node's functions (an [`AdminFunctions`] implementation) and
//! returns the response datagrams for the sender. It behaves like cjdns 22.3's `admin/Admin.c`:
//!
//! - A request longer than [`MAX_REQUEST_SIZE`] bytes is answered with exactly
//!   `d5:error16:Request too big.e`.
//! - Input that does not parse as one bencoded dictionary, or has no string `q`, gets no answer.
//! - `q: cookie` → `{cookie: "<decimal u32>"}`: the time in cjdns seconds
//!   ([`UnixMillis::cjdns_seconds`]).
//! - `q: auth` checks the cookie and hash (below) and then dispatches `aq`; a failed check gets
//!   `{error: "Auth failed."}`.
//! - A function marked `needs_auth` called without authentication (or any unknown name) gets
//!   `{error: "No functions matched your request, try Admin_availableFunctions()"}`. If the
//!   configured password is the literal `NONE`, every request counts as authenticated (but a
//!   `q: auth` with a wrong hash still fails).
//! - A required argument that is missing or of the wrong type gets
//!   `{error: "Entry [<name>] is required and must be of type [<Type>]"}`.
//! - A non-empty `txid` in the request is echoed in every response to it.
//! - Every response dictionary is padded to a multiple of 4 bytes ([`bencode::encode_cjdns`]).
//!
//! Built in (listed first by `Admin_availableFunctions`, in cjdns' order): `Admin_asyncEnabled`,
//! `Admin_availableFunctions(page)` (8 per page, `more: 1` whenever a page is full),
//! `Admin_importFd`, `Admin_exportFd(fd)` (no descriptor passing over UDP: they answer with
//! cjdns' error strings), and `ping` → `{q: pong}`.
//!
//! # Authentication
//!
//! The client takes a cookie, computes `hash1 = hex(SHA-256(password ‖ cookie))`, bencodes
//! `{q: auth, aq, args, cookie, hash: hash1, txid}`, hashes those exact bytes into `hash2` and
//! replaces `hash1` by `hash2` in place. The server accepts a cookie only while
//! `now − 20 ≤ cookie ≤ now` in cjdns seconds, finds the submitted hash in the raw request,
//! puts its own `hash1` there, hashes the whole request and compares in constant time.
//!
//! # Time
//!
//! cjdns' admin clock is `Time_currentTimeSeconds()`: **Unix milliseconds divided by 1024**
//! (rounded down), not Unix seconds. The captures of stock 22.3 show it: a cookie of
//! `1753406162` handed out at Unix time 1795487910.5 s (1753406162 × 1.024 = 1795487909.9).
//! So the server takes the time as [`UnixMillis`] and derives cookies and their freshness
//! window (20 cjdns seconds, 20.48 s) from it; the asynchronous-message timeout is in
//! milliseconds, as cjdns' `TIMEOUT_MILLISECONDS`. Clients compute nothing from a cookie:
//! they echo it.
//!
//! Two cjdns details are reproduced so that hashes agree with stock nodes and tools: the cookie
//! is read like C `strtoll` and truncated to 32 bits, and `password ‖ cookie` is formatted into
//! a 64-byte buffer, so only its first 63 bytes are hashed (a password up to about 53 bytes is
//! unaffected). One is not: cjdns finds the hash with `strstr`, which stops at a NUL byte in
//! the request; we search the whole request.
//!
//! # Deferred and asynchronous replies
//!
//! A function may answer later ([`Response::Deferred`]): it keeps the [`ReplyTo`] from the
//! [`Call`] and later turns a result into a datagram with [`AdminServer::reply`]. Streams such
//! as log subscriptions use [`AdminServer::async_message`], which, like cjdns, refuses to send
//! to a client that has been silent for more than [`ASYNC_TIMEOUT_MS`].
//!
//! # Client
//!
//! [`client`] builds requests (plain and authenticated) and parses responses, for `pktctl` and
//! tests.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Add;
use std::time::Duration;

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::bencode::{self, Dict, Value};

/// Requests longer than this are refused (`Admin_MAX_REQUEST_SIZE`).
pub const MAX_REQUEST_SIZE: usize = 2048;

/// The exact answer to an oversized request.
pub const TOO_BIG_RESPONSE: &[u8] = b"d5:error16:Request too big.e";

/// `Admin_availableFunctions` entries per page.
pub const FUNCTIONS_PER_PAGE: usize = 8;

/// How old a cookie may be, in cjdns seconds (1024 ms each; [`UnixMillis::cjdns_seconds`]).
pub const COOKIE_MAX_AGE: u64 = 20;

/// How long after its last request a client still receives asynchronous messages, in
/// milliseconds (cjdns' `TIMEOUT_MILLISECONDS`).
pub const ASYNC_TIMEOUT_MS: u64 = 30_000;

/// Wall-clock time as cjdns' admin API reads it: milliseconds since the Unix epoch
/// (`Time_currentTimeMilliseconds()`).
///
/// The caller reads the clock; the server only computes with the value it is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The time `since_epoch` after the Unix epoch (e.g. `SystemTime::now()
    /// .duration_since(UNIX_EPOCH)`), saturating far in the future.
    pub fn since_epoch(since_epoch: Duration) -> Self {
        Self(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
    }

    /// cjdns seconds, `Time_currentTimeSeconds()`: milliseconds / 1024, rounded down. Cookies
    /// are these, not Unix seconds.
    pub fn cjdns_seconds(self) -> u64 {
        self.0 / 1024
    }
}

impl Add<Duration> for UnixMillis {
    type Output = Self;

    fn add(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// The admin password that turns authentication off.
pub const PASSWORD_NONE: &[u8] = b"NONE";

/// Error text for a failed `auth`.
pub const AUTH_FAILED: &str = "Auth failed.";

/// Error text for an unknown function or an unauthenticated call to a protected one.
pub const NO_FUNCTIONS_MATCHED: &str =
    "No functions matched your request, try Admin_availableFunctions()";

/// The type of an argument, as `Admin_availableFunctions` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// A byte string.
    String,
    /// An integer.
    Int,
    /// A dictionary.
    Dict,
    /// A list.
    List,
}

impl ArgType {
    /// The name cjdns uses (`String`, `Int`, `Dict`, `List`).
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "String",
            Self::Int => "Int",
            Self::Dict => "Dict",
            Self::List => "List",
        }
    }

    fn matches(self, v: &Value) -> bool {
        matches!(
            (self, v),
            (Self::String, Value::Bytes(_))
                | (Self::Int, Value::Int(_))
                | (Self::Dict, Value::Dict(_))
                | (Self::List, Value::List(_))
        )
    }
}

impl fmt::Display for ArgType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One argument of an admin function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgSpec {
    /// Argument name.
    pub name: &'static str,
    /// Whether a call without it (or with the wrong type) is refused.
    pub required: bool,
    /// Expected type.
    pub ty: ArgType,
}

impl ArgSpec {
    /// A required argument.
    pub const fn required(name: &'static str, ty: ArgType) -> Self {
        Self {
            name,
            required: true,
            ty,
        }
    }

    /// An optional argument.
    pub const fn optional(name: &'static str, ty: ArgType) -> Self {
        Self {
            name,
            required: false,
            ty,
        }
    }
}

/// An admin function's name, protection and arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Name, e.g. `InterfaceController_peerStats`.
    pub name: &'static str,
    /// Whether unauthenticated calls are refused.
    pub needs_auth: bool,
    /// Arguments, in registration order.
    pub args: &'static [ArgSpec],
}

/// Where and how to send a reply: the requester's address and `txid`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReplyTo {
    /// The requester.
    pub addr: SocketAddr,
    /// The requester's `txid`, echoed in replies (empty: none).
    pub txid: Vec<u8>,
}

/// One call of a node function.
#[derive(Debug)]
#[non_exhaustive]
pub struct Call<'a> {
    /// Wall-clock time at arrival.
    pub now: UnixMillis,
    /// The function name (as registered).
    pub name: &'static str,
    /// The `args` dictionary (empty if the request had none).
    pub args: &'a Dict,
    /// Whether the caller authenticated (or the password is `NONE`).
    pub authenticated: bool,
    /// Where to send a deferred reply.
    pub reply_to: &'a ReplyTo,
}

/// What a function returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Send this now.
    Reply(Dict),
    /// Send these now, in order (e.g. a result followed by a stream start).
    Replies(Vec<Dict>),
    /// Nothing now; the function will use [`AdminServer::reply`] later.
    Deferred,
}

/// The functions a node offers through the admin API.
pub trait AdminFunctions {
    /// The functions, in the order `Admin_availableFunctions` lists them (after the built-ins).
    fn functions(&self) -> &[FunctionSpec];

    /// Runs `call`, whose required arguments have already been checked.
    fn call(&mut self, call: &Call<'_>) -> Response;
}

/// The built-in functions, in the order cjdns registers them.
pub const BUILTIN_FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "Admin_asyncEnabled",
        needs_auth: false,
        args: &[],
    },
    FunctionSpec {
        name: "Admin_availableFunctions",
        needs_auth: false,
        args: &[ArgSpec::optional("page", ArgType::Int)],
    },
    FunctionSpec {
        name: "Admin_importFd",
        needs_auth: true,
        args: &[],
    },
    FunctionSpec {
        name: "Admin_exportFd",
        needs_auth: true,
        args: &[ArgSpec::required("fd", ArgType::Int)],
    },
    FunctionSpec {
        name: "ping",
        needs_auth: false,
        args: &[],
    },
];

/// Why a request got no answer at all (for logging; cjdns logs these and stays silent).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Ignored {
    /// Not one bencoded dictionary.
    #[error("unparsable admin request: {0}")]
    Unparsable(bencode::DecodeError),
    /// No string `q`.
    #[error("admin request without a query")]
    NoQuery,
}

/// The result of handling one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handled {
    /// Datagrams to send back to the requester, in order.
    pub responses: Vec<Vec<u8>>,
    /// Set when the request was dropped without an answer.
    pub ignored: Option<Ignored>,
}

/// The admin API server state: the password and the clients eligible for async messages.
#[derive(Clone)]
pub struct AdminServer {
    password: Vec<u8>,
    /// Client address → time of its last request.
    clients: HashMap<SocketAddr, UnixMillis>,
    async_enabled: bool,
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("password", &"<redacted>")
            .field("clients", &self.clients.len())
            .field("async_enabled", &self.async_enabled)
            .finish()
    }
}

impl AdminServer {
    /// A server with this admin password (`NONE` disables authentication).
    pub fn new(password: impl Into<Vec<u8>>) -> Self {
        Self {
            password: password.into(),
            clients: HashMap::new(),
            async_enabled: false,
        }
    }

    /// Whether authentication is off (`NONE`).
    pub fn is_open(&self) -> bool {
        self.password == PASSWORD_NONE
    }

    /// Handles one request datagram from `src` at wall-clock time `now` and returns the
    /// response datagrams for `src`.
    pub fn handle<F: AdminFunctions + ?Sized>(
        &mut self,
        now: UnixMillis,
        src: SocketAddr,
        request: &[u8],
        functions: &mut F,
    ) -> Handled {
        let silent = |why| Handled {
            responses: Vec::new(),
            ignored: Some(why),
        };
        if request.len() > MAX_REQUEST_SIZE {
            return Handled {
                responses: vec![TOO_BIG_RESPONSE.to_vec()],
                ignored: None,
            };
        }
        let msg = match bencode::parse_dict(request) {
            Ok(d) => d,
            Err(e) => return silent(Ignored::Unparsable(e)),
        };
        let Some(query) = msg.get_bytes("q") else {
            return silent(Ignored::NoQuery);
        };
        let reply_to = ReplyTo {
            addr: src,
            txid: msg.get_bytes("txid").unwrap_or_default().to_vec(),
        };
        let one = |d: Dict| Handled {
            responses: vec![encode_reply(&reply_to, d)],
            ignored: None,
        };

        if query == b"cookie" {
            // cjdns: `snprintf("%u", (uint32_t) Time_currentTimeSeconds())`.
            let cookie = (now.cjdns_seconds() as u32).to_string();
            return one(Dict::new().with("cookie", cookie));
        }

        let mut authenticated = false;
        let mut query = Some(query);
        if query == Some(b"auth".as_slice()) {
            if !self.auth_valid(now, &msg, request) {
                return one(error_dict(AUTH_FAILED));
            }
            query = msg.get_bytes("aq");
            authenticated = true;
        }
        if self.is_open() {
            authenticated = true;
        }

        // Track clients for asynchronous messages.
        self.async_enabled = true;
        if let Some(last) = self.clients.get_mut(&src) {
            *last = now;
        } else if authenticated {
            self.clients.insert(src, now);
        } else {
            self.async_enabled = false;
        }

        let empty = Dict::new();
        let args_present = msg.get_dict("args");
        let args = args_present.unwrap_or(&empty);

        let spec = query.and_then(|q| {
            BUILTIN_FUNCTIONS
                .iter()
                .chain(functions.functions().iter())
                .find(|f| f.name.as_bytes() == q && (authenticated || !f.needs_auth))
                .copied()
        });
        let Some(spec) = spec else {
            return one(error_dict(NO_FUNCTIONS_MATCHED));
        };
        if let Some(missing) = spec.args.iter().find(|a| {
            a.required
                && !args_present
                    .and_then(|d| d.get(a.name))
                    .is_some_and(|v| a.ty.matches(v))
        }) {
            return one(error_dict(&format!(
                "Entry [{}] is required and must be of type [{}]",
                missing.name, missing.ty
            )));
        }

        let response = match spec.name {
            "Admin_asyncEnabled" => {
                Response::Reply(Dict::new().with("asyncEnabled", i64::from(self.async_enabled)))
            }
            "Admin_availableFunctions" => {
                Response::Reply(available_functions(args, functions.functions()))
            }
            "Admin_importFd" => Response::Reply(
                Dict::new().with("error", "file descriptor was not attached to message"),
            ),
            "Admin_exportFd" => {
                let error = if args.get_int("fd").is_some_and(|fd| fd >= 0) {
                    "file descriptor was not attached to message"
                } else {
                    "invalid fd"
                };
                Response::Reply(Dict::new().with("error", error))
            }
            "ping" => Response::Reply(Dict::new().with("q", "pong")),
            name => functions.call(&Call {
                now,
                name,
                args,
                authenticated,
                reply_to: &reply_to,
            }),
        };
        let responses = match response {
            Response::Reply(d) => vec![encode_reply(&reply_to, d)],
            Response::Replies(ds) => ds.into_iter().map(|d| encode_reply(&reply_to, d)).collect(),
            Response::Deferred => Vec::new(),
        };
        Handled {
            responses,
            ignored: None,
        }
    }

    /// Encodes a deferred reply (txid echoed, padded).
    pub fn reply(&self, to: &ReplyTo, dict: Dict) -> Vec<u8> {
        encode_reply(to, dict)
    }

    /// Encodes an asynchronous message for a client, or `None` if the client has not sent a
    /// request in the last [`ASYNC_TIMEOUT_MS`] (the channel is closed and forgotten).
    pub fn async_message(&mut self, now: UnixMillis, to: &ReplyTo, dict: Dict) -> Option<Vec<u8>> {
        let last = *self.clients.get(&to.addr)?;
        if now.0.saturating_sub(last.0) > ASYNC_TIMEOUT_MS {
            self.clients.remove(&to.addr);
            return None;
        }
        Some(encode_reply(to, dict))
    }

    /// Forgets clients silent for more than [`ASYNC_TIMEOUT_MS`]; returns how many.
    pub fn expire(&mut self, now: UnixMillis) -> usize {
        let before = self.clients.len();
        self.clients
            .retain(|_, last| now.0.saturating_sub(last.0) <= ASYNC_TIMEOUT_MS);
        before - self.clients.len()
    }

    /// The cjdns `authValid` check, in cjdns seconds.
    fn auth_valid(&self, now: UnixMillis, msg: &Dict, raw: &[u8]) -> bool {
        let now = now.cjdns_seconds();
        let mut cookie = msg.get_bytes("cookie").map_or(0, strtoll_u32);
        if cookie == 0 {
            cookie = msg.get_int("cookie").map_or(0, |c| c as u32);
        }
        let cookie_u64 = u64::from(cookie);
        let Some(submitted) = msg.get_bytes("hash") else {
            return false;
        };
        if cookie_u64 > now
            || cookie_u64 < now.wrapping_sub(COOKIE_MAX_AGE)
            || submitted.len() != 64
        {
            return false;
        }
        let Some(at) = find(raw, submitted) else {
            return false;
        };
        let mut work = raw.to_vec();
        work[at..at + 64].copy_from_slice(&password_hash_hex(&self.password, cookie));
        let expected = hex_lower(&Sha256::digest(&work));
        constant_time_eq(&expected, submitted)
    }
}

/// `{error: text}`.
fn error_dict(text: &str) -> Dict {
    Dict::new().with("error", text)
}

/// Adds the txid (if any) and encodes with cjdns padding.
fn encode_reply(to: &ReplyTo, mut dict: Dict) -> Vec<u8> {
    if !to.txid.is_empty() {
        dict.insert("txid", to.txid.clone());
    }
    bencode::encode_cjdns(&dict)
}

/// One page of `Admin_availableFunctions`, as cjdns computes it.
fn available_functions(args: &Dict, node: &[FunctionSpec]) -> Dict {
    // cjdns: `uint32_t i = page * 8` with a 64-bit page.
    let start = args
        .get_int("page")
        .map_or(0, |p| p.wrapping_mul(FUNCTIONS_PER_PAGE as i64) as u32) as usize;
    let page: Vec<&FunctionSpec> = BUILTIN_FUNCTIONS
        .iter()
        .chain(node.iter())
        .skip(start)
        .take(FUNCTIONS_PER_PAGE)
        .collect();
    let mut listed = Dict::new();
    for f in &page {
        let mut a = Dict::new();
        for arg in f.args {
            a.insert(
                arg.name,
                Dict::new()
                    .with("required", i64::from(arg.required))
                    .with("type", arg.ty.name()),
            );
        }
        listed.insert(f.name, a);
    }
    let mut out = Dict::new().with("availableFunctions", listed);
    if page.len() >= FUNCTIONS_PER_PAGE {
        out.insert("more", 1);
    }
    out
}

/// C `strtoll(s, NULL, 10)` truncated to `uint32_t`: leading whitespace, an optional sign,
/// decimal digits up to the first non-digit; saturates at the `i64` range.
fn strtoll_u32(s: &[u8]) -> u32 {
    let mut i = 0;
    while s
        .get(i)
        .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
    {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut acc: i64 = 0;
    let mut saturated = false;
    while let Some(d) = s.get(i).filter(|c| c.is_ascii_digit()) {
        let digit = i64::from(d - b'0');
        match acc.checked_mul(10).and_then(|a| {
            if negative {
                a.checked_sub(digit)
            } else {
                a.checked_add(digit)
            }
        }) {
            Some(a) => acc = a,
            None => {
                saturated = true;
                break;
            }
        }
        i += 1;
    }
    if saturated {
        acc = if negative { i64::MIN } else { i64::MAX };
    }
    acc as u32
}

/// Lower-case hex of SHA-256 of the first 63 bytes of `password ‖ decimal(cookie)`, as cjdns'
/// `snprintf(buf, 64, "%s%u", …)` computes it (the password stops at a NUL byte, as a C
/// string does).
pub fn password_hash_hex(password: &[u8], cookie: u32) -> [u8; 64] {
    let password = password.split(|&b| b == 0).next().unwrap_or_default();
    let mut buf = Vec::with_capacity(password.len() + 10);
    buf.extend_from_slice(password);
    buf.extend_from_slice(cookie.to_string().as_bytes());
    buf.truncate(63);
    hex_lower(&Sha256::digest(&buf))
}

fn hex_lower(bytes: &[u8]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().take(32).enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub mod client;
