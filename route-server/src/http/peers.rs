//! Gossip with other route servers over HTTP, and the bare HTTP/1.1 client it uses.
//!
//! Each configured peer gets its own timer task, so a slow or silent peer delays only its own
//! exchanges; expiry runs on another task ([`super::serve`]). Every request of an exchange is
//! bounded by [`super::GossipSettings::request_timeout`] (connect, send and answer together),
//! and an exchange by [`super::GossipSettings::max_messages`] messages. Every message is sealed
//! to the peer ([`crate::gossip::envelope`]) and every answer must be sealed by it; any other
//! status than 200 or 204 is an error, never a silent end.
//!
//! # Cancel safety
//! Dropping [`gossip_with`] between messages loses nothing: every item taken was taken under
//! the locks and queued for the store before the next await.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pktmesh_lease_engine::sign::SigningKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{now_ms, Counters, Shared};
use crate::gossip::{self, envelope, GossipMessage, OpenError, MAX_GOSSIP_BODY};

/// A route server to gossip with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its Ed25519 signing key (the lease-engine form of its cjdns key).
    pub key: SigningKey,
    /// Its HTTP API address.
    pub addr: SocketAddr,
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GossipError {
    /// This server has no key to sign with.
    #[error("no gossip key configured")]
    NoKey,
    /// The peer did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting or talking failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer answered with another status than 200 or 204.
    #[error("peer answered {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The answer is not sealed by the peer for us.
    #[error("answer refused: {0}")]
    Envelope(#[from] envelope::EnvelopeError),
    /// The answer is not a gossip message.
    #[error("answer is not a gossip message: {0}")]
    Decode(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(String),
}

/// A bare HTTP/1.1 request (enough for gossip and tests; no TLS, no chunked bodies) with a
/// 30-second limit. Returns the status and the body.
pub async fn http_request(
    to: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    http_request_timeout(
        to,
        method,
        path,
        content_type,
        body,
        Duration::from_secs(30),
    )
    .await
}

/// [`http_request`] bounded by `limit` (connect, send and answer together).
pub async fn http_request_timeout(
    to: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    limit: Duration,
) -> std::io::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut s = TcpStream::connect(to).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {to}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body).await?;
        let mut out = Vec::new();
        // Bounded: an answer larger than a gossip body is refused.
        (&mut s)
            .take((MAX_GOSSIP_BODY + 64 * 1024) as u64)
            .read_to_end(&mut out)
            .await?;
        let split = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no header end"))?;
        let head = String::from_utf8_lossy(&out[..split]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other("no status"))?;
        Ok((status, out[split + 4..].to_vec()))
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))?
}

/// One gossip exchange initiated with `peer`: at most `max_messages` messages, each within
/// the request timeout. Returns how many messages were sent.
pub async fn gossip_with(app: &Shared, peer: &Peer) -> Result<usize, GossipError> {
    let settings = &app.gossip;
    let signer = settings.signer.as_ref().ok_or(GossipError::NoKey)?;
    let mut msg: GossipMessage = {
        let mut rs = app.graph_mut();
        let mut book = app.book_mut();
        gossip::summary(rs.graph_mut(), &mut book)
    };
    for sent in 1..=settings.max_messages.max(1) {
        let sealed = gossip::seal_message(signer, &peer.key, now_ms(), &msg)
            .map_err(|e| GossipError::Decode(e.to_string()))?;
        let (status, reply) = http_request_timeout(
            peer.addr,
            "POST",
            "/gossip",
            "application/octet-stream",
            &sealed,
            settings.request_timeout,
        )
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut => GossipError::Timeout(settings.request_timeout),
            _ => GossipError::Io(e),
        })?;
        match status {
            204 => return Ok(sent),
            200 => {}
            status => {
                return Err(GossipError::Status {
                    status,
                    body: String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned(),
                })
            }
        }
        let now = now_ms();
        let (_, reply) = gossip::open_message(&reply, &signer.public(), &[peer.key], now).map_err(
            |e| match e {
                OpenError::Envelope(e) => GossipError::Envelope(e),
                e => GossipError::Decode(e.to_string()),
            },
        )?;
        let (next, report, committed) = {
            let mut rs = app.graph_mut();
            let mut book = app.book_mut();
            let (next, report) = gossip::handle(now, rs.graph_mut(), &mut book, &reply);
            (next, report, app.persist(&mut book))
        };
        app.counters.gossip_items_refused.fetch_add(
            (report.anns_refused + report.frames_refused) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        committed.await.map_err(GossipError::Store)?;
        match next {
            Some(m) => msg = m,
            None => return Ok(sent),
        }
    }
    Ok(settings.max_messages)
}

/// Starts one gossip timer task per configured peer.
pub(super) fn spawn_gossip(app: &Shared) {
    if app.gossip.signer.is_none() {
        if !app.gossip.peers.is_empty() {
            tracing::warn!("peers configured but no key: gossip is off");
        }
        return;
    }
    for peer in app.gossip.peers.clone() {
        let app = Arc::clone(app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(app.gossip.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match gossip_with(&app, &peer).await {
                    Ok(_) => Counters::bump(&app.counters.gossip_exchanges),
                    Err(e) => {
                        Counters::bump(&app.counters.gossip_failures);
                        tracing::debug!("gossip with {}: {e}", peer.addr);
                    }
                }
            }
        });
    }
}
