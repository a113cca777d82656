//! `torua dev`: a coordinator and N nodes in one process on loopback, with
//! all data under one directory, so a restart keeps the data.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::{CoordinatorConfig, NodeConfig, DEFAULT_MAX_VALUE_BYTES};

/// Flags of `torua dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Directory for all data (coordinator metadata and node shards).
    #[arg(long, default_value = "torua-data/dev")]
    dir: PathBuf,
    /// Number of storage nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    nodes: u16,
    /// Coordinator port; nodes use the following ports.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Shards of a new cluster (ignored when the cluster exists).
    #[arg(long)]
    shards: Option<u32>,
    /// Port for Truxe, the identity service (started when its binary sits
    /// next to this one, as after `cargo build --workspace`).
    #[arg(long, default_value_t = 3001)]
    truxe_port: u16,
    /// Do not start Truxe.
    #[arg(long)]
    no_truxe: bool,
    /// Log JSON lines.
    #[arg(long)]
    log_json: bool,
}

/// The `truxe` binary built next to this one, if any.
fn sibling_truxe() -> Option<PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join("truxe");
    path.is_file().then_some(path)
}

/// Starts `truxe serve` on loopback with its data under `dir`.
async fn start_truxe(
    bin: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let url = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(bin)
        .arg("serve")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("TRUXE_DATA_DIR", dir)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    wait_ready(&url, Duration::from_secs(60))
        .await
        .context("Truxe did not become ready")?;
    Ok((child, url))
}

/// Asks a child to stop (SIGTERM), then kills it if it lingers.
async fn stop_child(mut child: tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    crate::init_tracing(args.log_json);
    // Listen for Ctrl-C/SIGTERM before anything starts, so an early signal
    // stops the cluster cleanly instead of killing the process.
    let (signalled, mut signal) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        crate::shutdown::os_signal().await;
        let _ = signalled.send(());
    });
    let (trigger, shutdown) = crate::shutdown::channel();
    let coord_addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let coord_url = format!("http://{coord_addr}");
    let interval = Duration::from_secs(1);
    let coord_cfg = CoordinatorConfig {
        listen: coord_addr,
        health_check_interval: interval,
        shards: args.shards,
        data_dir: args.dir.join("coordinator"),
        max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        health_failures: 3,
    };
    let listener = crate::bind(coord_addr)
        .await
        .context("starting the coordinator")?;
    let mut tasks = vec![tokio::spawn(crate::coordinator::run(
        coord_cfg,
        listener,
        shutdown.clone(),
    ))];
    let mut nodes = Vec::new();
    for i in 1..=args.nodes {
        let port = args.port.checked_add(i).context("port range overflows")?;
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let cfg = NodeConfig {
            node_id: format!("n{i}"),
            listen,
            advertise: Some(format!("http://{listen}")),
            coordinator: coord_url.clone(),
            data_dir: Some(args.dir.join(format!("n{i}"))),
            health_check_interval: interval,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        };
        nodes.push((
            cfg.node_id.clone(),
            format!("http://{listen}"),
            cfg.data_dir(),
        ));
        let listener = crate::bind(listen)
            .await
            .with_context(|| format!("starting node n{i}"))?;
        tasks.push(tokio::spawn(crate::node::run(
            cfg,
            listener,
            shutdown.clone(),
        )));
    }
    let truxe_bin = if args.no_truxe { None } else { sibling_truxe() };
    let started = async {
        wait_ready(&coord_url, Duration::from_secs(60)).await?;
        match &truxe_bin {
            Some(bin) => start_truxe(bin, &args.dir.join("truxe"), args.truxe_port)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let truxe = tokio::select! {
        started = started => started?,
        _ = &mut signal => {
            trigger.fire();
            return Ok(ExitCode::SUCCESS);
        }
    };
    println!("\nTorua dev cluster is ready ({} nodes).", args.nodes);
    println!(
        "  coordinator  {coord_url}   data: {}",
        args.dir.join("coordinator").display()
    );
    for (id, url, dir) in &nodes {
        println!("  node {id:<7} {url}   data: {}", dir.display());
    }
    match &truxe {
        Some((_, url)) => println!("  truxe        {url}   data: {}  (identity: /api/auth/register, /.well-known/jwks.json)", args.dir.join("truxe").display()),
        None if args.no_truxe => {}
        None => println!("  truxe        not started: build it with `cargo build --workspace` to run it here"),
    }
    println!("\nTry:");
    println!("  curl -X PUT --data-binary 'hello' {coord_url}/data/greeting");
    println!("  curl {coord_url}/data/greeting");
    println!("  curl '{coord_url}/data?prefix=&limit=10'");
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "torua".into());
    println!("  {me} --coordinator {coord_url} status");
    println!(
        "\nCtrl-C stops the cluster; data stays in {}.\n",
        args.dir.display()
    );
    let mut failed = false;
    tokio::select! {
        _ = &mut signal => {}
        res = futures::future::select_all(tasks.iter_mut()) => {
            if let (Ok(Err(e)), _, _) = &res {
                eprintln!("torua dev: a server stopped: {e}");
            }
            failed = true;
        }
    }
    trigger.fire();
    if let Some((child, _)) = truxe {
        stop_child(child).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    println!("stopped");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn wait_ready(url: &str, limit: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = client.get(format!("{url}/ready")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("cluster not ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
