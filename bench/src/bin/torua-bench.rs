//! `torua-bench`: load for any server with the Torua data API
//! (`PUT`/`GET {target}{path}{key}`) or, for a side-by-side comparison,
//! etcd's v3 JSON gateway (`POST /v3/kv/put`, `/v3/kv/range`, linearizable
//! reads as etcd's default), and `torua-bench fsync` to measure the disk's
//! write+fsync latency for comparison.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bench::{closed_loop, percentile, xorshift, Op};
use clap::{Parser, Subcommand, ValueEnum};
use torua::config::parse_go_duration;

#[derive(Debug, Parser)]
#[command(about = "Load generator for the Torua data API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop PUT or GET load.
    Http(HttpArgs),
    /// write + fdatasync latency of a directory's disk.
    Fsync(FsyncArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Workload {
    Put,
    Get,
}

/// The API the target speaks.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Api {
    /// `PUT`/`GET {target}{path}{key}`.
    Torua,
    /// etcd v3's gRPC gateway: JSON with base64 keys and values.
    Etcd,
}

#[derive(Debug, clap::Args)]
struct HttpArgs {
    /// Base URL of the server under test.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Path prefix before the key.
    #[arg(long, default_value = "/data/")]
    path: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long to run (Go duration).
    #[arg(long, default_value = "10s", value_parser = parse_go_duration)]
    duration: Duration,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Distinct keys, chosen uniformly.
    #[arg(long, default_value_t = 10_000)]
    keys: usize,
    /// put or get (get preloads every key first, untimed).
    #[arg(long, value_enum, default_value = "put")]
    workload: Workload,
    /// The target's API (`--path` is ignored for etcd).
    #[arg(long, value_enum, default_value = "torua")]
    api: Api,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Label for the report.
    #[arg(long, default_value = "torua")]
    label: String,
    /// Credential sent as `Authorization: Bearer` (API key or token).
    #[arg(long, env = "TORUA_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA bundle to trust for an `https://` target.
    #[arg(long, env = "TORUA_CA")]
    ca: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct FsyncArgs {
    /// Directory on the disk to measure.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Rounds.
    #[arg(long, default_value_t = 500)]
    rounds: usize,
    /// Bytes per round.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Http(a) => http(a).await,
        Command::Fsync(a) => fsync(a),
    };
    result.unwrap_or_else(|e| {
        eprintln!("torua-bench: {e:#}");
        ExitCode::from(2)
    })
}

async fn http(a: HttpArgs) -> anyhow::Result<ExitCode> {
    if a.clients == 0 || a.keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    // For etcd's gateway (plain HTTP, no credential); Torua's requests go
    // through its own client, set up in `Keys::new`.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.clients)
        .tcp_nodelay(true)
        .build()?;
    let keys = Keys::new(&a)?;
    if matches!(a.workload, Workload::Get) {
        use futures::stream::{self, StreamExt};
        let failed = stream::iter(0..a.keys)
            .map(|i| keys.op(&client, Workload::Put, i))
            .buffer_unordered(a.clients)
            .filter(|ok| std::future::ready(!*ok))
            .count()
            .await;
        if failed > 0 {
            bail!("{failed} of {} preload writes failed", a.keys);
        }
    }
    let workload = a.workload;
    let keys = std::sync::Arc::new(keys);
    let run = closed_loop(a.clients, a.duration, |w| -> Op {
        let (client, keys) = (client.clone(), keys.clone());
        let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
        Box::new(move || {
            let i = (xorshift(&mut rng) % keys.len() as u64) as usize;
            keys.op(&client, workload, i)
        })
    })
    .await;
    let name = format!("{:?}", a.workload).to_lowercase();
    let s = run.summary(&a.label, &format!("{name} {}B", a.value_size), a.clients);
    s.print(a.json);
    Ok(if s.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Every request of a run, prepared before it starts (so the load loop
/// only clones). Torua is asked through its typed client without retries,
/// so every refusal counts as an error, as etcd's do.
enum Keys {
    Torua {
        client: torua_client::Client,
        names: Vec<String>,
        value: bytes::Bytes,
    },
    Etcd {
        put: String,
        range: String,
        puts: Vec<bytes::Bytes>,
        ranges: Vec<bytes::Bytes>,
    },
}

impl Keys {
    fn new(a: &HttpArgs) -> anyhow::Result<Keys> {
        use base64::Engine;
        let names = (0..a.keys).map(|i| format!("bench-{i:08}"));
        let value = vec![b'x'; a.value_size];
        Ok(match a.api {
            Api::Torua => {
                let mut b = torua_client::Client::builder(&a.target)
                    .attempts(1)
                    .timeout(Duration::from_secs(30));
                if let Some(t) = &a.token {
                    b = b.token(t);
                }
                if let Some(ca) = &a.ca {
                    b = b.ca_file(ca)?;
                }
                Keys::Torua {
                    client: b.build()?,
                    names: names.collect(),
                    value: value.into(),
                }
            }
            Api::Etcd => {
                let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
                let root = a.target.trim_end_matches('/');
                let v = b64(&value);
                let (mut puts, mut ranges) = (Vec::new(), Vec::new());
                for k in names {
                    let k = b64(k.as_bytes());
                    let put = serde_json::json!({"key": k, "value": v});
                    puts.push(serde_json::to_vec(&put).unwrap_or_default().into());
                    let range = serde_json::json!({"key": k});
                    ranges.push(serde_json::to_vec(&range).unwrap_or_default().into());
                }
                Keys::Etcd {
                    put: format!("{root}/v3/kv/put"),
                    range: format!("{root}/v3/kv/range"),
                    puts,
                    ranges,
                }
            }
        })
    }

    fn len(&self) -> usize {
        match self {
            Keys::Torua { names, .. } => names.len(),
            Keys::Etcd { puts, .. } => puts.len(),
        }
    }

    /// One operation on key `i`; whether it succeeded.
    fn op(
        &self,
        c: &reqwest::Client,
        w: Workload,
        i: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> {
        match (self, w) {
            (
                Keys::Torua {
                    client,
                    names,
                    value,
                },
                Workload::Put,
            ) => {
                let (client, key, value) = (client.clone(), names[i].clone(), value.clone());
                Box::pin(async move { client.put(&key, value).await.is_ok() })
            }
            (Keys::Torua { client, names, .. }, Workload::Get) => {
                let (client, key) = (client.clone(), names[i].clone());
                Box::pin(async move { matches!(client.get(&key).await, Ok(Some(_))) })
            }
            (Keys::Etcd { put, puts, .. }, Workload::Put) => {
                Box::pin(succeeded(w, c.post(put).body(puts[i].clone())))
            }
            (Keys::Etcd { range, ranges, .. }, Workload::Get) => {
                Box::pin(succeeded(w, c.post(range).body(ranges[i].clone())))
            }
        }
    }
}

/// Sends an etcd request; a success is a 2xx with its whole body read (for
/// a read, a body that holds the key: etcd's gateway answers 200 for a
/// missing one too).
async fn succeeded(w: Workload, req: reqwest::RequestBuilder) -> bool {
    let Ok(r) = req.send().await else {
        return false;
    };
    if !r.status().is_success() {
        return false;
    }
    match r.bytes().await {
        Ok(b) => !matches!(w, Workload::Get) || contains(&b, b"\"kvs\""),
        Err(_) => false,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn fsync(a: FsyncArgs) -> anyhow::Result<ExitCode> {
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
