//! The restart loop of issue 26: a node is `kill -9`ed and started again, and a survivor must
//! ping it within 5 s of the new process's start, several times in a row. Shared by the
//! pktmesh–pktmesh tests (`netns_restart.rs`) and the stock-cjdns one (`netns_cjdns.rs`).

use std::time::Duration;

use super::{first_answer, ping6, unix_now, wait_ping6, Daemon, Netns};

/// A node process the restart loop kills and starts again.
pub trait Restartable {
    /// Kills all of its processes with SIGKILL (no goodbye, its keys are lost) and reaps them.
    fn kill9(&mut self);
    /// Its log so far.
    fn log_text(&self) -> String;
    /// When the process that runs now was started (Unix seconds): after a failed start that
    /// was retried, the start of the retry.
    fn started_at(&self) -> f64;
}

impl Restartable for Daemon {
    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_text(&self) -> String {
        Daemon::log_text(self)
    }

    fn started_at(&self) -> f64 {
        self.started
    }
}

/// The longest a round waits for the first answer after the kill.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// `start(0)` and then, `restarts` times, `kill -9` of that node and `start(round)` 0.5 s later;
/// each time the survivor in `na` must ping `target` (the node's fc address) within 5 s of the
/// new process's start. It pings every 0.2 s from just before the start, so the delay is from
/// the process's start to the first answer, whatever `start` waits for. Returns the delays.
pub fn restart_loop<N: Restartable>(
    na: &Netns,
    survivor: &dyn Restartable,
    start: &mut dyn FnMut(usize) -> N,
    target: &str,
    restarts: usize,
) -> Vec<f64> {
    let mut node = Some(start(0));
    assert!(
        wait_ping6(na, target, Duration::from_secs(30)),
        "first contact\nsurvivor:\n{}\nnode:\n{}",
        survivor.log_text(),
        node.as_ref().map(N::log_text).unwrap_or_default()
    );
    let mut delays = Vec::new();
    for round in 1..=restarts {
        let (ok, text) = ping6(na, target, 3);
        assert!(ok, "round {round}: before the kill: {text}");
        if let Some(mut old) = node.take() {
            old.kill9();
            // Dropped before the restart: a drop may clean up after the old process.
            drop(old);
        }
        std::thread::sleep(Duration::from_millis(500));
        let kicked_off = unix_now();
        let (restarted, (at, text)) = std::thread::scope(|s| {
            let pinger = s.spawn(|| first_answer(na, target, ROUND_LIMIT));
            let restarted = start(round);
            (restarted, pinger.join().expect("the pinging thread"))
        });
        let started = restarted.started_at();
        let delay = at.map(|t| t - started);
        eprintln!(
            "round {round}: reachable {delay:?} s after the restart (its process started {:.2} s \
             after the kill + 0.5 s)",
            started - kicked_off
        );
        assert!(
            delay.is_some_and(|d| (0.0..=5.0).contains(&d)),
            "round {round}: not reachable within 5 s of the restart ({delay:?}): {text}\nsurvivor:\n{}\nrestarted:\n{}",
            survivor.log_text(),
            restarted.log_text()
        );
        delays.push(delay.unwrap_or_default());
        node = Some(restarted);
    }
    drop(node);
    delays
}
