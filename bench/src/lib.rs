//! Benchmark harness shared by `torua-bench` and `truxe-bench`.
//!
//! # Brief overview
//!
//! [`closed_loop`] runs N clients, each with one request in flight, for a
//! fixed time, and records the latency of every successful operation; a
//! [`Summary`] reports throughput and p50/p90/p99/max. The servers under test
//! are reached over HTTP only, so any implementation of the same API can be
//! measured the same way.
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let run = bench::closed_loop(2, std::time::Duration::from_millis(20), |_| {
//!     Box::new(|| Box::pin(async { true }))
//! })
//! .await;
//! assert!(run.ok() > 0);
//! # });
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde::Serialize;

/// One client's operation: returns whether it succeeded.
pub type Op = Box<dyn FnMut() -> BoxFuture<'static, bool> + Send>;

/// Latencies of a run.
#[derive(Debug)]
pub struct Run {
    latencies_us: Vec<u64>,
    errors: u64,
    seconds: f64,
}

impl Run {
    /// Successful operations.
    pub fn ok(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    /// Summarises the run under a label.
    pub fn summary(&self, label: &str, workload: &str, clients: usize) -> Summary {
        let l = &self.latencies_us;
        Summary {
            label: label.to_owned(),
            workload: workload.to_owned(),
            clients,
            ops: self.ok(),
            errors: self.errors,
            seconds: self.seconds,
            ops_per_sec: self.ok() as f64 / self.seconds.max(1e-9),
            p50_us: percentile(l, 0.50),
            p90_us: percentile(l, 0.90),
            p99_us: percentile(l, 0.99),
            max_us: l.last().copied().unwrap_or(0),
        }
    }
}

/// Throughput and latency of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// What was measured (implementation name).
    pub label: String,
    /// Workload name.
    pub workload: String,
    /// Concurrent clients.
    pub clients: usize,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// Wall time.
    pub seconds: f64,
    /// Successful operations per second.
    pub ops_per_sec: f64,
    /// Median latency.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Worst.
    pub max_us: u64,
}

impl Summary {
    /// One human-readable line.
    pub fn line(&self) -> String {
        let ms = |us: u64| us as f64 / 1e3;
        format!(
            "{} {} clients={}: {:.0} ops/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} ok, {} errors in {:.1}s",
            self.label, self.workload, self.clients, self.ops_per_sec, ms(self.p50_us), ms(self.p90_us),
            ms(self.p99_us), ms(self.max_us), self.ops, self.errors, self.seconds
        )
    }

    /// Prints JSON (`json`) or the text line.
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
        } else {
            println!("{}", self.line());
        }
    }
}

/// The `p` quantile of sorted values (nearest rank).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Runs `clients` workers for `duration`; `make(i)` builds worker `i`'s op.
pub async fn closed_loop(
    clients: usize,
    duration: Duration,
    mut make: impl FnMut(usize) -> Op,
) -> Run {
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let workers = (0..clients)
        .map(|i| {
            let mut op = make(i);
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if op().await {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    collect(workers, &errors, start).await
}

/// Starts `rate` operations per second in total for `duration`, spread over
/// `clients` workers (each one in flight at most, evenly staggered). When a
/// worker's previous operation ran past the next one's due time, latency is
/// counted from that due time, not from when it was sent, so a stalled
/// server shows in the percentiles instead of slowing the load (no
/// coordinated omission). Otherwise it is counted from the send: tokio's
/// timer wakes a sleeper up to a millisecond late, and that lateness is
/// this tool's, not the server's. The load runs at the same rate for
/// `warmup` first, unmeasured (its errors still count): the steady state is
/// what is reported, not the machine's ramp from idle.
pub async fn open_loop(
    clients: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
    mut make: impl FnMut(usize) -> Op,
) -> Run {
    let errors = Arc::new(AtomicU64::new(0));
    let begin = Instant::now();
    let start = begin + warmup;
    let deadline = start + duration;
    let every = Duration::from_secs_f64(clients as f64 / rate.max(1e-3));
    let workers = (0..clients)
        .map(|i| {
            let mut op = make(i);
            let errors = errors.clone();
            let mut due = begin + every.mul_f64(i as f64 / clients as f64);
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(4096);
                while due < deadline {
                    let from = if Instant::now() < due {
                        tokio::time::sleep_until(due.into()).await;
                        Instant::now()
                    } else {
                        due
                    };
                    if op().await {
                        if from >= start {
                            lat.push(from.elapsed().as_micros() as u64);
                        }
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    due += every;
                }
                lat
            })
        })
        .collect();
    collect(workers, &errors, start).await
}

async fn collect(
    workers: Vec<tokio::task::JoinHandle<Vec<u64>>>,
    errors: &AtomicU64,
    start: Instant,
) -> Run {
    let mut latencies_us = Vec::new();
    for w in workers {
        latencies_us.extend(w.await.unwrap_or_default());
    }
    latencies_us.sort_unstable();
    Run {
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Small, fast PRNG for key choice (xorshift64*); not for secrets.
pub fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}
