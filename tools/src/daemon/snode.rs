//! The supernode relay: makes this node the cjdns face of a route server
//! (`pktmesh.supernode`).
//!
//! Stock cjdns nodes find their supernode by asking their peers (switch GETSNODE), then send it
//! supernode queries (`sq`: `pn`, `ann`, `gr`) as CJDHT messages in end-to-end sessions. The
//! node core hands those to the driver ([`pktmesh_node::core::Node::poll_supernode_query`]);
//! this thread posts each one to the route server's `POST /sq` and passes the bencoded answer
//! back, waking the main loop. The protocol logic lives in the node core and in the route
//! server; this is only the blocking HTTP call kept off the packet loop. A route server that
//! is down costs a warning and an unanswered query (the asker retries), never forwarding.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::Waker;
use pktmesh_node::core::{NodeRef, SupernodeQuery};
use tracing::{debug, info, warn};

/// Queries waiting for the HTTP thread; more are dropped (the asker retries).
const BACKLOG: usize = 64;
/// Largest answer taken from the route server (a `gr` answer is a few hundred bytes).
const MAX_ANSWER: u64 = 16 * 1024;

/// Handle of the relay thread.
#[derive(Debug)]
pub struct SupernodeRelay {
    queries: SyncSender<SupernodeQuery>,
    answers: Receiver<(NodeRef, Vec<u8>)>,
    dropped: u64,
    _thread: JoinHandle<()>,
}

impl SupernodeRelay {
    /// Starts relaying to the route server at `url`; `waker` wakes the main loop when an
    /// answer is ready.
    pub fn start(url: &str, waker: Arc<Waker>) -> io::Result<Self> {
        let (query_tx, query_rx) = mpsc::sync_channel(BACKLOG);
        let (answer_tx, answer_rx) = mpsc::channel();
        let endpoint = format!("{}/sq", url.trim_end_matches('/'));
        let thread = std::thread::Builder::new()
            .name("supernode-relay".into())
            .spawn(move || run(&endpoint, &query_rx, &answer_tx, &waker))?;
        Ok(Self {
            queries: query_tx,
            answers: answer_rx,
            dropped: 0,
            _thread: thread,
        })
    }

    /// Hands a query to the relay thread; drops it if the thread is that far behind.
    pub fn submit(&mut self, query: SupernodeQuery) {
        match self.queries.try_send(query) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped += 1;
                if self.dropped.is_power_of_two() {
                    warn!(
                        dropped = self.dropped,
                        "supernode relay is behind; supernode queries dropped"
                    );
                }
            }
        }
    }

    /// The next answer to send back, if any.
    pub fn poll_answer(&self) -> Option<(NodeRef, Vec<u8>)> {
        self.answers.try_recv().ok()
    }
}

fn run(
    endpoint: &str,
    queries: &Receiver<SupernodeQuery>,
    answers: &mpsc::Sender<(NodeRef, Vec<u8>)>,
    waker: &Waker,
) {
    let http = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .build();
    let mut failing = false;
    let mut last_warning: Option<Instant> = None;
    while let Ok(query) = queries.recv() {
        let result = http
            .post(endpoint)
            .set("content-type", "application/octet-stream")
            .send_bytes(&query.message)
            .map_err(|e| e.to_string())
            .and_then(|response| {
                let mut body = Vec::new();
                response
                    .into_reader()
                    .take(MAX_ANSWER)
                    .read_to_end(&mut body)
                    .map_err(|e| e.to_string())?;
                Ok(body)
            });
        match result {
            Ok(answer) => {
                if failing {
                    info!(endpoint, "route server answers supernode queries again");
                    failing = false;
                }
                debug!(asker = %query.from.key.address(), bytes = answer.len(), "supernode answer");
                if answers.send((query.from, answer)).is_err() {
                    return;
                }
                let _ = waker.wake();
            }
            Err(error) => {
                // 400: not a query the route server answers (no txid, no version): no answer,
                // as a cjdns snode would give none.
                let quiet = last_warning.is_some_and(|t| t.elapsed() < Duration::from_secs(10));
                if !quiet {
                    warn!(endpoint, %error, "supernode query not answered");
                    last_warning = Some(Instant::now());
                }
                failing = true;
            }
        }
    }
}
