//! The redb store of the lease book, written by one thread with group commit.
//!
//! Every change to the set of frames ([`Change`]) is sent to the writer thread, which applies
//! everything that is waiting in one write transaction and commits it (checksummed, fsync'd
//! copy-on-write B-trees: after `kill -9` the file holds exactly the committed transactions).
//! Requests wait for the commit that carries their frame before they are answered, so a `201`
//! means durable; frames accepted concurrently share one commit (one fsync), which is what
//! keeps `POST /orders` fast under load. Changes are applied in the order they were sent, and
//! the driver sends them while it holds the book's lock, so the file follows the book.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::DriverError;
use crate::leases::Change;

const FRAMES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("frames");

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 1024;

struct Job {
    changes: Vec<Change>,
    done: Option<oneshot::Sender<Result<(), String>>>,
}

/// The writer's handle.
pub(crate) struct Store {
    jobs: mpsc::Sender<Job>,
    _thread: JoinHandle<()>,
}

fn db_err(e: impl std::fmt::Display) -> DriverError {
    DriverError::Db(e.to_string())
}

impl Store {
    /// Opens (or creates) the database at `path`; returns the store and the frames in it.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<Vec<u8>>), DriverError> {
        let db = Database::create(path).map_err(db_err)?;
        let mut frames = Vec::new();
        {
            let tx = db.begin_write().map_err(db_err)?;
            tx.open_table(FRAMES).map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            let tx = db.begin_read().map_err(db_err)?;
            let table = tx.open_table(FRAMES).map_err(db_err)?;
            for row in table.iter().map_err(db_err)? {
                let (_, v) = row.map_err(db_err)?;
                frames.push(v.value().to_vec());
            }
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("route-server-store".into())
            .spawn(move || writer(db, rx))
            .map_err(db_err)?;
        Ok((
            Self {
                jobs: tx,
                _thread: thread,
            },
            frames,
        ))
    }

    /// Queues `changes`; the receiver answers once they are committed. Call while holding the
    /// lock under which the changes were made, so that the file sees them in order.
    pub(crate) fn submit(&self, changes: Vec<Change>) -> oneshot::Receiver<Result<(), String>> {
        let (done, wait) = oneshot::channel();
        let job = Job {
            changes,
            done: Some(done),
        };
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            if let Some(d) = job.done {
                let _ = d.send(Err("the store has stopped".into()));
            }
        }
        wait
    }
}

fn apply(db: &Database, jobs: &[Job]) -> Result<(), String> {
    let tx = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut t = tx.open_table(FRAMES).map_err(|e| e.to_string())?;
        for change in jobs.iter().flat_map(|j| &j.changes) {
            match change {
                Change::Added(id, bytes) => {
                    t.insert(&id[..], &bytes[..]).map_err(|e| e.to_string())?;
                }
                Change::Removed(id) => {
                    t.remove(&id[..]).map_err(|e| e.to_string())?;
                }
            }
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

fn writer(db: Database, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let result = if batch.iter().all(|j| j.changes.is_empty()) {
            Ok(())
        } else {
            apply(&db, &batch)
        };
        if let Err(e) = &result {
            tracing::error!("store commit failed: {e}");
        }
        for j in batch {
            if let Some(d) = j.done {
                let _ = d.send(result.clone());
            }
        }
    }
}
