//! `torua bench`: a closed-loop HTTP load generator for the Torua data API
//! (`PUT`/`GET {target}{path}{key}`). It only needs that API, so the same run
//! can measure another implementation side by side. `torua bench-fsync`
//! measures the disk's write+fsync latency for comparison.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::config::parse_go_duration;
use crate::http::extract::encode_key;

/// What the clients do.
#[derive(Debug, Clone, Copy, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Overwrite random keys.
    Put,
    /// Read random keys (preloaded first, untimed).
    Get,
}

/// Flags of `torua bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the server under test.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Path prefix before the key.
    #[arg(long, default_value = "/data/")]
    path: String,
    /// Concurrent clients (each with one request in flight).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to run (Go duration).
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    duration: Duration,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// put or get.
    #[arg(long, value_enum, default_value = "put")]
    workload: Workload,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Label for the report (e.g. the implementation's name).
    #[arg(long, default_value = "torua")]
    label: String,
}

/// Flags of `torua bench-fsync`.
#[derive(Debug, clap::Args)]
pub struct FsyncArgs {
    /// Directory on the disk to measure.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Number of write+fsync rounds.
    #[arg(long, default_value_t = 500)]
    rounds: usize,
    /// Bytes written per round.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Latency summary in microseconds.
#[derive(Debug, Serialize)]
pub struct Summary {
    label: String,
    workload: String,
    clients: usize,
    value_size: usize,
    ops: u64,
    errors: u64,
    seconds: f64,
    ops_per_sec: f64,
    p50_us: u64,
    p90_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Small, fast PRNG for key choice (xorshift64*); no need for crypto here.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

pub async fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    if a.clients == 0 || a.keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    let base = format!("{}{}", a.target.trim_end_matches('/'), a.path);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.clients)
        .tcp_nodelay(true)
        .build()?;
    let value = bytes::Bytes::from(vec![b'x'; a.value_size]);
    let url = |i: u64| format!("{base}{}", encode_key(&format!("bench-{i:08}")));
    if matches!(a.workload, Workload::Get) {
        preload(&client, &url, a.keys, &value, a.clients).await?;
    }
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + a.duration;
    let mut workers = Vec::new();
    for w in 0..a.clients {
        let (client, value, errors) = (client.clone(), value.clone(), errors.clone());
        let urls: Vec<String> = (0..a.keys as u64).map(url).collect();
        let workload = a.workload;
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
            while Instant::now() < deadline {
                let u = &urls[(next(&mut rng) % urls.len() as u64) as usize];
                let t = Instant::now();
                let res = match workload {
                    Workload::Put => client.put(u).body(value.clone()).send().await,
                    Workload::Get => client.get(u).send().await,
                };
                let ok = match res {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await?);
    }
    let secs = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let s = Summary {
        label: a.label,
        workload: format!("{:?}", a.workload).to_lowercase(),
        clients: a.clients,
        value_size: a.value_size,
        ops: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        seconds: secs,
        ops_per_sec: all.len() as f64 / secs,
        p50_us: percentile(&all, 0.50),
        p90_us: percentile(&all, 0.90),
        p99_us: percentile(&all, 0.99),
        max_us: all.last().copied().unwrap_or(0),
    };
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "{} {} clients={} value={}B: {:.0} ops/s, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} ok, {} errors in {:.1}s",
            s.label, s.workload, s.clients, s.value_size, s.ops_per_sec,
            s.p50_us as f64 / 1e3, s.p90_us as f64 / 1e3, s.p99_us as f64 / 1e3, s.max_us as f64 / 1e3,
            s.ops, s.errors, s.seconds
        );
    }
    Ok(if s.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn preload(
    client: &reqwest::Client,
    url: &impl Fn(u64) -> String,
    keys: usize,
    value: &bytes::Bytes,
    par: usize,
) -> anyhow::Result<()> {
    use futures::stream::{self, StreamExt};
    let failures = stream::iter(0..keys as u64)
        .map(|i| {
            let req = client.put(url(i)).body(value.clone());
            async move {
                req.send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false)
            }
        })
        .buffer_unordered(par)
        .filter(|ok| std::future::ready(!*ok))
        .count()
        .await;
    if failures > 0 {
        bail!("{failures} of {keys} preload writes failed");
    }
    Ok(())
}

pub fn fsync(a: FsyncArgs) -> anyhow::Result<ExitCode> {
    let path = a
        .dir
        .join(format!(".torua-fsync-probe-{}", std::process::id()));
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let buf = vec![0xA5u8; a.size];
    let mut lat = Vec::with_capacity(a.rounds);
    for _ in 0..a.rounds {
        let t = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    lat.sort_unstable();
    let mean = lat.iter().sum::<u64>() as f64 / lat.len().max(1) as f64;
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    if a.json {
        println!(
            "{}",
            serde_json::json!({"rounds": a.rounds, "size": a.size, "mean_us": mean, "p50_us": p50, "p99_us": p99})
        );
    } else {
        println!(
            "write({} B)+fdatasync x{}: mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms",
            a.size,
            a.rounds,
            mean / 1e3,
            p50 as f64 / 1e3,
            p99 as f64 / 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
