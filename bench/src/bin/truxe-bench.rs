//! `truxe-bench`: logins/s, refreshes/s and verified `GET /auth/me`/s
//! against a running Truxe, next to the Argon2id bound of this machine: the
//! hashes per second that all cores sustain at the server's cost (each login
//! verifies one hash, so logins cannot beat it), and the latency of one hash.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use bench::{closed_loop, open_loop, Op};
use clap::{Parser, ValueEnum};
use secure::password::{PasswordCost, PasswordHasher};
use secure::Secret;
use serde_json::{json, Value};

const PASSWORD: &str = "Bench-Password-9";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    Login,
    Refresh,
    Me,
}

#[derive(Debug, Parser)]
#[command(about = "Load generator for Truxe")]
struct Args {
    /// Truxe base URL.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    target: String,
    /// Concurrent clients (one account each).
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds per workload.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Workloads to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "login,refresh,me"
    )]
    workloads: Vec<Workload>,
    /// Argon2id memory of the server (KiB), for the bound.
    #[arg(long, default_value_t = 19456)]
    argon2_memory_kib: u32,
    /// Argon2id iterations of the server, for the bound.
    #[arg(long, default_value_t = 2)]
    argon2_iterations: u32,
    /// Open loop: start this many operations per second in total (latency
    /// counted from when each was due) instead of each client sending its
    /// next as soon as the last one answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop only: seconds at the rate before the measured ones. After
    /// a quiet spell this machine's first ~100 ms run every database query
    /// several times slower (the CPUs' ramp from idle: gone when a
    /// lowest-priority spinner keeps them busy), which is not the server's
    /// steady state.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Skip the Argon2id bound (runs that only need the server's numbers).
    #[arg(long)]
    no_bound: bool,
    /// Login runs, each followed by the bound (so each is set against the
    /// bound measured just before and just after it): the machine's speed
    /// drifts by a few percent within minutes, as much as a login's margin.
    #[arg(long, default_value_t = 3)]
    login_rounds: usize,
    /// Print JSON lines.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    run(Args::parse()).await.unwrap_or_else(|e| {
        eprintln!("truxe-bench: {e:#}");
        ExitCode::from(2)
    })
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> Option<Value> {
    let r = client.post(url).json(&body).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

fn tokens(v: &Value) -> Option<(String, String)> {
    let t = &v["data"]["tokens"];
    Some((
        t["access_token"].as_str()?.to_owned(),
        t["refresh_token"].as_str()?.to_owned(),
    ))
}

async fn run(a: Args) -> anyhow::Result<ExitCode> {
    if a.clients == 0 {
        bail!("--clients must be at least 1");
    }
    let base = a.target.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.clients)
        .tcp_nodelay(true)
        .build()?;
    if !a.no_bound {
        argon2_bound(&a).await?;
    }
    // One account per client.
    let run_id = std::process::id();
    let mut sessions = Vec::new();
    for i in 0..a.clients {
        let email = format!("bench-{run_id}-{i}@example.com");
        let reg = post(
            &client,
            format!("{base}/api/auth/register"),
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        .with_context(|| {
            format!("registering {email} (is signup enabled and the register limit high enough?)")
        })?;
        sessions.push((email, tokens(&reg).context("no tokens in register answer")?));
    }
    let mut failed = false;
    for w in &a.workloads {
        let duration = Duration::from_secs(a.seconds);
        let make = |i: usize| -> Op {
            let client = client.clone();
            let base = base.clone();
            let (email, (access, refresh)) = sessions[i].clone();
            let refresh = Arc::new(Mutex::new(refresh));
            match w {
                Workload::Login => Box::new(move || {
                    let (client, url, email) = (
                        client.clone(),
                        format!("{base}/api/auth/login"),
                        email.clone(),
                    );
                    Box::pin(async move {
                        post(&client, url, json!({"email": email, "password": PASSWORD}))
                            .await
                            .is_some()
                    })
                }),
                Workload::Refresh => Box::new(move || {
                    let (client, url, refresh) = (
                        client.clone(),
                        format!("{base}/auth/refresh"),
                        refresh.clone(),
                    );
                    Box::pin(async move {
                        let current = refresh.lock().map(|r| r.clone()).unwrap_or_default();
                        match post(&client, url, json!({"refreshToken": current}))
                            .await
                            .as_ref()
                            .and_then(tokens)
                        {
                            Some((_, next)) => {
                                if let Ok(mut r) = refresh.lock() {
                                    *r = next;
                                }
                                true
                            }
                            None => false,
                        }
                    })
                }),
                Workload::Me => Box::new(move || {
                    let req = client.get(format!("{base}/auth/me")).bearer_auth(&access);
                    Box::pin(
                        async move { matches!(req.send().await, Ok(r) if r.status().is_success()) },
                    )
                }),
            }
        };
        let name = match a.rate {
            Some(rate) => format!("{w:?} at {rate:.0}/s").to_lowercase(),
            None => format!("{w:?}").to_lowercase(),
        };
        let login = matches!(w, Workload::Login) && !a.no_bound;
        let rounds = if login { a.login_rounds.max(1) } else { 1 };
        for _ in 0..rounds {
            let run = match a.rate {
                Some(rate) => {
                    let warmup = Duration::try_from_secs_f64(a.warmup)
                        .context("--warmup must be a number of seconds, 0 or more")?;
                    open_loop(a.clients, rate, warmup, duration, &make).await
                }
                None => closed_loop(a.clients, duration, &make).await,
            };
            let s = run.summary("truxe", &name, a.clients);
            s.print(a.json);
            failed |= s.errors > 0;
            // The bound again after each login run: the machine's speed
            // drifts within a sitting, so each run is set against the
            // bound on either side of it.
            if login {
                argon2_bound(&a).await?;
            }
        }
        // Refresh tokens rotated: later workloads use their own state only.
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The Argon2id bound on this machine with the server's cost: the hashes per
/// second all cores sustain (each login verifies one).
async fn argon2_bound(a: &Args) -> anyhow::Result<()> {
    let cost = PasswordCost {
        memory_kib: a.argon2_memory_kib,
        iterations: a.argon2_iterations,
        parallelism: 1,
    };
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let hasher = PasswordHasher::new(cost, cores)?;
    // The bound: cores ÷ the time of one hash (timed alone, median of 7).
    let mut alone = Vec::new();
    for _ in 0..7 {
        let t = std::time::Instant::now();
        hasher.hash(Secret::new(PASSWORD.to_owned())).await?;
        alone.push(t.elapsed().as_secs_f64());
    }
    alone.sort_by(f64::total_cmp);
    let one_hash_s = alone[alone.len() / 2];
    let formula_bound = cores as f64 / one_hash_s;
    let hashing = closed_loop(cores, Duration::from_secs(3), |_| -> Op {
        let h = hasher.clone();
        Box::new(move || {
            let h = h.clone();
            Box::pin(async move { h.hash(Secret::new(PASSWORD.to_owned())).await.is_ok() })
        })
    })
    .await
    .summary("argon2id", "hash", cores);
    let bound = hashing.ops_per_sec;
    let hash_ms = hashing.p50_us as f64 / 1e3;
    if a.json {
        println!(
            "{}",
            json!({"argon2_memory_kib": cost.memory_kib, "argon2_iterations": cost.iterations, "hash_ms": hash_ms, "one_hash_ms": one_hash_s * 1e3, "formula_bound_per_sec": formula_bound, "cores": cores, "login_bound_per_sec": bound})
        );
    } else {
        println!(
            "Argon2id m={} KiB t={}: one hash alone {:.1} ms → cores ÷ time = {formula_bound:.0}/s; measured on {cores} cores: {bound:.0} hashes/s (p50 {hash_ms:.1} ms each)",
            cost.memory_kib, cost.iterations, one_hash_s * 1e3
        );
    }
    Ok(())
}
