//! The leased-route client: a thread that asks the route server for the path of this node's
//! leased traffic (`GET /path?from=&to=&owner=`), so that traffic follows the links the
//! virtual ISP leased rather than the DHT's shortest label.
//!
//! The node core keeps the routes and decides which destinations need one
//! ([`pktmesh_node::routes`]); the once-a-second tick hands this thread a [`Request`] (our
//! address, the owner of the lease our traffic rides, the destinations) and applies the
//! [`Answer`]s. Reading a reply is the pure function [`parse_path_reply`]. A route server that
//! is slow or away costs a debug line and no answer; the node's routes then expire and the DHT
//! decides again (fail open). Requests queue at most [`BACKLOG`] deep; more are dropped (the
//! node asks again).

use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use pktmesh_crypto_auth::Address;
use pktmesh_switch::Label;
use serde::Deserialize;
use thiserror::Error;
use tracing::debug;

/// Requests waiting for the thread.
pub const BACKLOG: usize = 4;
/// Largest reply read (a path of 60 hops is about 3 KB of JSON).
const MAX_REPLY: u64 = 64 * 1024;

/// Paths wanted: from `from` to each of `destinations`, preferring the links `owner` leases.
#[derive(Debug, Clone)]
pub struct Request {
    /// This node's address.
    pub from: Address,
    /// The lease owner's Ed25519 key, hex.
    pub owner: String,
    /// Destinations to route.
    pub destinations: Vec<Address>,
}

/// What the route server said about one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// The destination.
    pub destination: Address,
    /// Its label, or `None` when the route server knows no usable path.
    pub label: Option<Label>,
}

/// Why a `GET /path` reply was not used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathReplyError {
    /// Not the JSON object the API documents.
    #[error("malformed path reply: {0}")]
    Malformed(String),
    /// The label does not parse, or is the empty path.
    #[error("bad label {0:?}")]
    BadLabel(String),
    /// The hops do not run from us to the destination.
    #[error("the path does not run from {from} to {to}")]
    WrongEnds {
        /// Us.
        from: Address,
        /// The destination.
        to: Address,
    },
}

#[derive(Debug, Deserialize)]
struct PathReply {
    label: String,
    hops: Vec<String>,
}

/// Reads a `GET /path` reply for the path `from` → `to`: its label, if the hops start at
/// `from` and end at `to` and the label is a real path (not the self route).
pub fn parse_path_reply(
    body: &[u8],
    from: &Address,
    to: &Address,
) -> Result<Label, PathReplyError> {
    let reply: PathReply =
        serde_json::from_slice(body).map_err(|e| PathReplyError::Malformed(e.to_string()))?;
    let label: Label = reply
        .label
        .parse()
        .map_err(|_| PathReplyError::BadLabel(reply.label.clone()))?;
    if label.bits() <= 1 {
        return Err(PathReplyError::BadLabel(reply.label));
    }
    let hop = |h: Option<&String>| h.and_then(|h| Address::parse(h).ok());
    if reply.hops.len() < 2
        || hop(reply.hops.first()) != Some(*from)
        || hop(reply.hops.last()) != Some(*to)
    {
        return Err(PathReplyError::WrongEnds {
            from: *from,
            to: *to,
        });
    }
    Ok(label)
}

/// Handle of the query thread.
#[derive(Debug)]
pub struct LeasedRouteClient {
    requests: SyncSender<Request>,
    answers: Receiver<Answer>,
    _thread: JoinHandle<()>,
}

impl LeasedRouteClient {
    /// Starts asking the route server at `url`.
    pub fn start(url: &str) -> std::io::Result<Self> {
        let (request_tx, request_rx) = mpsc::sync_channel(BACKLOG);
        let (answer_tx, answer_rx) = mpsc::channel();
        let base = url.trim_end_matches('/').to_string();
        let thread = std::thread::Builder::new()
            .name("leased-routes".into())
            .spawn(move || run(&base, &request_rx, &answer_tx))?;
        Ok(Self {
            requests: request_tx,
            answers: answer_rx,
            _thread: thread,
        })
    }

    /// Hands the thread a request; dropped if it is that far behind.
    pub fn submit(&self, request: Request) {
        match self.requests.try_send(request) {
            Ok(()) | Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// The next answer, if any.
    pub fn poll_answer(&self) -> Option<Answer> {
        self.answers.try_recv().ok()
    }
}

fn run(base: &str, requests: &Receiver<Request>, answers: &mpsc::Sender<Answer>) {
    let http = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .build();
    while let Ok(request) = requests.recv() {
        for to in &request.destinations {
            let url = format!(
                "{base}/path?from={}&to={to}&owner={}",
                request.from, request.owner
            );
            let label = match http.get(&url).call() {
                Ok(reply) => {
                    let mut body = Vec::new();
                    let read = std::io::Read::read_to_end(
                        &mut std::io::Read::take(reply.into_reader(), MAX_REPLY),
                        &mut body,
                    );
                    match read.map_err(|e| e.to_string()).and_then(|_| {
                        parse_path_reply(&body, &request.from, to).map_err(|e| e.to_string())
                    }) {
                        Ok(label) => Some(label),
                        Err(e) => {
                            debug!(destination = %to, error = %e, "route server path not used");
                            None
                        }
                    }
                }
                // No path known (404) or refused: the DHT's path.
                Err(ureq::Error::Status(code, _)) => {
                    debug!(destination = %to, code, "route server has no path");
                    None
                }
                // Away: no answer; the node's route expires on its own.
                Err(e) => {
                    debug!(destination = %to, error = %e, "route server unreachable for a path");
                    continue;
                }
            };
            if answers
                .send(Answer {
                    destination: *to,
                    label,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> Address {
        let mut b = [0u8; 16];
        b[0] = 0xfc;
        b[15] = n;
        Address::from_bytes(b)
    }

    fn reply(label: &str, hops: &[Address]) -> Vec<u8> {
        serde_json::json!({
            "label": label,
            "hops": hops.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "cost": 12.5,
            "leased_links_used": 2,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_path_from_us_to_the_destination_gives_its_label() {
        let (a, b, c) = (addr(1), addr(2), addr(3));
        let body = reply("0000.0000.0000.0153", &[a, c, b]);
        assert_eq!(
            parse_path_reply(&body, &a, &b),
            Ok(Label::new(0x153).unwrap())
        );
    }

    #[test]
    fn other_replies_are_refused() {
        let (a, b, c) = (addr(1), addr(2), addr(3));
        assert!(matches!(
            parse_path_reply(b"{}", &a, &b),
            Err(PathReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_path_reply(&reply("zz", &[a, b]), &a, &b),
            Err(PathReplyError::BadLabel(_))
        ));
        assert!(matches!(
            parse_path_reply(&reply("0000.0000.0000.0001", &[a, b]), &a, &b),
            Err(PathReplyError::BadLabel(_))
        ));
        for hops in [&[a, c][..], &[c, b], &[a], &[]] {
            assert_eq!(
                parse_path_reply(&reply("0000.0000.0000.0013", hops), &a, &b),
                Err(PathReplyError::WrongEnds { from: a, to: b }),
                "{hops:?}"
            );
        }
    }
}
