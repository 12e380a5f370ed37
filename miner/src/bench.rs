//! `pktmine bench`: ann-hash attempts per second and block hashes per second, per thread and
//! in total, with wall-clock timing.

use crate::ann::{AnnJob, AnnTables};
use crate::block::hash_with_table;
use crate::MineError;
use pktmesh_chain::announce::ANN_LEN;
use pktmesh_chain::cryptocycle::State;
use pktmesh_chain::hash::hash_expand;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Result of a benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct BenchResult {
    /// Operations completed.
    pub ops: u64,
    /// Wall time of the measured phase.
    pub elapsed: Duration,
    /// Threads used.
    pub threads: usize,
    /// CPU time the worker threads used during the measured phase (`None` where
    /// `/proc/thread-self/stat` is unavailable).
    pub cpu: Option<Duration>,
}

impl BenchResult {
    /// Operations per second (all threads).
    pub fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Operations per CPU-second of the workers: the figure that other processes sharing the
    /// machine do not distort.
    pub fn per_cpu_sec(&self) -> Option<f64> {
        self.cpu.map(|c| self.ops as f64 / c.as_secs_f64())
    }
}

/// CPU time (user + system) of the calling thread, from `/proc/thread-self/stat`.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `after` starts at field 3.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // Linux reports these in USER_HZ, which is 100 on every supported architecture.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A job with an unreachable target, so that every attempt is counted and none emitted.
fn bench_job() -> AnnJob {
    AnnJob {
        parent_hash: [7u8; 32],
        parent_height: 1_000_000,
        work_bits: 0x0300_0001,
        content_type: 0,
        content: Vec::new(),
        signing_key: [0u8; 32],
    }
}

/// Builds one table set per thread (not timed), then counts ann-hash attempts for `secs`.
pub fn bench_ann(
    threads: usize,
    secs: f64,
    mut report: impl FnMut(f64),
) -> Result<BenchResult, MineError> {
    let threads = threads.max(1);
    let job = bench_job();
    let tables: Vec<AnnTables> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn({
                    let job = &job;
                    move || AnnTables::build(job, t as u32)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or(Err(MineError::NoAnnouncements)))
            .collect::<Result<Vec<_>, _>>()
    })?;
    run_timed(threads, secs, &mut report, |t, stop, count| {
        tables[t].search(0, u32::MAX, stop, count, |_| true);
    })
}

/// Fills `mib` MiB per thread with pseudo-random 1 KiB "announcements" (not timed), then
/// counts block hashes (4 random announcement reads, Smul, Final) for `secs`.
pub fn bench_blk(
    threads: usize,
    mib: usize,
    secs: f64,
    mut report: impl FnMut(f64),
) -> Result<BenchResult, MineError> {
    let threads = threads.max(1);
    let per_thread = (mib.max(1) * 1024).max(4);
    let tables: Vec<Vec<[u8; ANN_LEN]>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut v = vec![[0u8; ANN_LEN]; per_thread];
                    let seed = [t as u8; 32];
                    for (i, a) in v.iter_mut().enumerate() {
                        hash_expand(a, &seed, i as u32);
                    }
                    v
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    run_timed(threads, secs, &mut report, |t, stop, count| {
        let mut state = Box::<State>::default();
        let mut idx = [0u64; 4];
        let seed = [t as u8 ^ 0x55; 32];
        let mut nonce = 0u32;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..64 {
                hash_with_table(&tables[t], &seed, nonce, &mut state, &mut idx);
                nonce = nonce.wrapping_add(1);
            }
            count.fetch_add(64, Ordering::Relaxed);
        }
    })
}

fn run_timed(
    threads: usize,
    secs: f64,
    report: &mut dyn FnMut(f64),
    work: impl Fn(usize, &AtomicBool, &AtomicU64) + Sync,
) -> Result<BenchResult, MineError> {
    let stop = AtomicBool::new(false);
    let count = AtomicU64::new(0);
    let start = Instant::now();
    let mut elapsed = Duration::ZERO;
    let cpu = std::sync::Mutex::new(Some(Duration::ZERO));
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, count, work, cpu) = (&stop, &count, &work, &cpu);
            s.spawn(move || {
                let before = thread_cpu_time();
                work(t, stop, count);
                let used = before
                    .zip(thread_cpu_time())
                    .map(|(b, a)| a.saturating_sub(b));
                let mut total = cpu.lock().unwrap_or_else(|p| p.into_inner());
                *total = total.zip(used).map(|(x, y)| x + y);
            });
        }
        let mut last = (Instant::now(), 0u64);
        while start.elapsed().as_secs_f64() < secs {
            std::thread::sleep(Duration::from_millis(1000));
            let now = Instant::now();
            let c = count.load(Ordering::Relaxed);
            report((c - last.1) as f64 / now.duration_since(last.0).as_secs_f64());
            last = (now, c);
        }
        elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
    });
    let cpu = cpu.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(BenchResult {
        ops: count.load(Ordering::Relaxed),
        elapsed,
        threads,
        cpu,
    })
}
