//! `torua dev`: a coordinator and N nodes in one process on loopback, with
//! all data under one directory, so a restart keeps the data. Each
//! component runs on a runtime of its own and logs to its own file
//! (`devlog`); the terminal shows the banner, and warnings.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::{certs, devlog};
use crate::config::{
    CoordinatorConfig, EncryptionConfig, ListenerConfig, NodeConfig, Peers, RaftTiming,
    SecurityConfig, TlsConfig, Urls, DEFAULT_MAX_VALUE_BYTES,
};

/// Flags of `torua dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Directory for all data (coordinator metadata and node shards).
    #[arg(long, default_value = "torua-data/dev")]
    dir: PathBuf,
    /// Number of storage nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    nodes: u16,
    /// Coordinators: 1, or 3 (or 5, 7) sharing the metadata through their
    /// own Raft group, so that losing one stops nothing.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=7))]
    coordinators: u16,
    /// The first coordinator's port; the other coordinators, then the
    /// nodes, use the following ports.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Shards of a new cluster (ignored when the cluster exists).
    #[arg(long)]
    shards: Option<u32>,
    /// Replicas per shard, 1 to 7 (every shard a Raft group), or `off`
    /// for single-copy mode (only for a new cluster). Unset: what the
    /// cluster has, 3 for a new one (fewer while it has fewer nodes).
    #[arg(long, value_parser = crate::config::parse_replication)]
    replication_factor: Option<crate::config::Replication>,
    /// Port for Truxe, the identity service (started when its binary sits
    /// next to this one, as after `cargo build --workspace`).
    #[arg(long, default_value_t = 3001)]
    truxe_port: u16,
    /// Do not start Truxe.
    #[arg(long)]
    no_truxe: bool,
    /// Log JSON lines (`TORUA_LOG_JSON`).
    #[arg(long, env = "TORUA_LOG_JSON")]
    log_json: bool,
    /// Stream every component's log to the terminal, each line naming its
    /// component, instead of into `DIR/logs`.
    #[arg(long, short)]
    verbose: bool,
    /// The coordinator's security settings (`--auth off` for a plain
    /// benchmark; token issuer defaults to the Truxe started here).
    #[command(flatten)]
    security: SecurityConfig,
    /// The nodes' encryption at rest (default: on, with a master key that
    /// `torua dev` makes in the credentials directory).
    #[command(flatten)]
    encryption: EncryptionConfig,
    /// `on` (default): TLS on every listener and mutual TLS between the
    /// coordinator and nodes, with development certificates made in
    /// `DIR/certs`. `off`: plain HTTP.
    #[arg(long = "tls", default_value = "on", value_parser = crate::config::parse_switch,
          action = clap::ArgAction::Set)]
    tls: bool,
}

/// The `truxe` binary built next to this one, if any.
fn sibling_truxe() -> Option<PathBuf> {
    let path = std::env::current_exe().ok()?.parent()?.join("truxe");
    path.is_file().then_some(path)
}

/// A `truxe` command with the dev Truxe's settings: its data under `dir`,
/// emailed links kept in the development mailbox.
fn truxe_command(bin: &std::path::Path, dir: &std::path::Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env("TRUXE_DATA_DIR", dir)
        // Emailed links (verification, reset) readable from this machine.
        .env("TRUXE_DEV_MAILBOX", "on");
    cmd
}

/// Starts `truxe serve` on loopback with its data under `dir`.
async fn start_truxe(
    bin: &std::path::Path,
    dir: &std::path::Path,
    port: u16,
    log: Option<std::sync::Arc<std::fs::File>>,
) -> anyhow::Result<(tokio::process::Child, String)> {
    use std::process::Stdio;
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = truxe_command(bin, dir);
    cmd.arg("serve")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        // Dropped on the way out; a SIGKILL skips that, so it also watches.
        .env("TRUXE_EXIT_WITH_PARENT", "on")
        .kill_on_drop(true);
    if log.is_some() {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    if let Some(log) = log {
        if let Some(out) = child.stdout.take() {
            tokio::spawn(devlog::copy_lines("truxe", out, log.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(devlog::copy_lines("truxe", err, log));
        }
    }
    wait_ok(
        &reqwest::Client::new(),
        &format!("{url}/ready"),
        Duration::from_secs(60),
    )
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

/// Files `torua dev` keeps credentials in (0600, in a 0700 directory).
struct DevCredentials {
    dir: PathBuf,
}

impl DevCredentials {
    fn open(dir: &std::path::Path) -> anyhow::Result<Self> {
        let dir = dir.join("credentials");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(DevCredentials { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.path(name))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    fn write(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let path = self.path(name);
        crate::persist::replace_file(&path, format!("{value}\n").as_bytes(), true)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Node `node`'s key (bound to it): made once with the admin key, then
/// reused.
async fn ensure_node_key(
    admin: &torua_client::Client,
    creds: &DevCredentials,
    node: &str,
) -> anyhow::Result<PathBuf> {
    let file = format!("node-{node}.key");
    if creds.read(&file).is_none() {
        let spec =
            serde_json::json!({"name": format!("dev-{node}"), "roles": ["node"], "node_id": node});
        let body = admin
            .create_api_key(&spec)
            .await
            .context("creating a node's API key")?;
        let key = body["key"].as_str().context("no key in the answer")?;
        creds.write(&file, key)?;
    }
    Ok(creds.path(&file))
}

/// Maps Truxe's `admin` role to Torua's, once.
async fn ensure_role_mapping(admin: &torua_client::Client) -> anyhow::Result<()> {
    let mut policy = admin.policy().await.context("reading the policy")?;
    if policy["token_roles"]["admin"].is_array() {
        return Ok(());
    }
    policy["token_roles"]["admin"] = serde_json::json!(["admin"]);
    admin
        .set_policy(&policy)
        .await
        .context("mapping Truxe's admin role")
        .map(drop)
}

const DEV_ADMIN_EMAIL: &str = "admin@example.com";

/// Creates the Truxe admin user once and logs in; returns an access token.
async fn truxe_admin_token(
    http: &reqwest::Client,
    bin: &std::path::Path,
    truxe_dir: &std::path::Path,
    truxe_url: &str,
    creds: &DevCredentials,
    log: Option<std::sync::Arc<std::fs::File>>,
) -> anyhow::Result<String> {
    use tokio::io::AsyncWriteExt;
    let password = match creds.read("truxe-admin.password") {
        Some(p) => p,
        None => {
            let p = format!("Dev-1{}", secure::token::generate("").plaintext.expose());
            let mut cmd = truxe_command(bin, truxe_dir);
            cmd.args(["user", "create", "--admin", "--email", DEV_ADMIN_EMAIL])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null());
            if let Some(log) = log {
                cmd.stderr(log.try_clone()?);
            }
            let mut child = cmd.spawn().context("running truxe user create")?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(format!("{p}\n").as_bytes()).await?;
            }
            if !child.wait().await?.success() {
                bail!("truxe user create failed for {DEV_ADMIN_EMAIL}");
            }
            creds.write("truxe-admin.password", &p)?;
            p
        }
    };
    let res = http
        .post(format!("{truxe_url}/api/auth/login"))
        .json(&serde_json::json!({"email": DEV_ADMIN_EMAIL, "password": password}))
        .send()
        .await
        .context("logging in to Truxe")?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("logging in to Truxe: {status} {}", body["error"]["message"]);
    }
    body["data"]["tokens"]["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| "Truxe's login answer has no access token".to_owned())
}

pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let files = match args.verbose {
        true => None,
        false => Some(devlog::Files::new(&args.dir.join("logs"))?),
    };
    devlog::init(files.clone(), args.log_json);
    // Listen for Ctrl-C/SIGTERM before anything starts, so an early signal
    // stops the cluster cleanly instead of killing the process.
    let (signalled, mut signal) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        crate::shutdown::os_signal().await;
        let _ = signalled.send(());
    });
    let (trigger, shutdown) = crate::shutdown::channel();
    let scheme = if args.tls { "https" } else { "http" };
    // One coordinator is `coordinator`; several are `c1`, `c2`, …
    let coordinators: Vec<(String, SocketAddr)> = (0..args.coordinators)
        .map(|i| {
            let name = match args.coordinators {
                1 => "coordinator".to_owned(),
                _ => format!("c{}", i + 1),
            };
            let port = args.port.checked_add(i).context("port range overflows")?;
            anyhow::Ok((name, SocketAddr::from(([127, 0, 0, 1], port))))
        })
        .collect::<Result<_, _>>()?;
    let coord_urls: Vec<String> = coordinators
        .iter()
        .map(|(_, a)| format!("{scheme}://{a}"))
        .collect();
    let coord_url = coord_urls[0].clone();
    let coord_dir_of = |name: &str| args.dir.join(name);
    let names: Vec<String> = (1..=args.nodes).map(|i| format!("n{i}")).collect();
    let certs = if args.tls {
        Some(certs::CertDir::ensure(
            &args.dir.join("certs"),
            &certs::cluster_leaves(&names, &["dev".to_string()]),
            &[],
            365,
        )?)
    } else {
        None
    };
    let tls_for = |file: &str| match &certs {
        Some(c) => c.tls(file),
        None => TlsConfig {
            enabled: false,
            cert: None,
            key: None,
            ca: None,
        },
    };
    let interval = Duration::from_secs(1);
    let truxe_bin = if args.no_truxe { None } else { sibling_truxe() };
    let truxe_url = format!("http://127.0.0.1:{}", args.truxe_port);
    let mut security = args.security.clone();
    if truxe_bin.is_some() && security.jwks_url.is_none() {
        security.jwks_url = Some(format!("{truxe_url}/.well-known/jwks.json"));
        security.jwt_issuer = Some(truxe_url.clone());
    }
    let peers = (coordinators.len() > 1).then(|| {
        Peers(
            coordinators
                .iter()
                .zip(&coord_urls)
                .map(|((name, _), url)| (name.clone(), url.clone()))
                .collect(),
        )
    });
    let coord_cfgs: Vec<CoordinatorConfig> = coordinators
        .iter()
        .map(|(name, addr)| CoordinatorConfig {
            listen: *addr,
            health_check_interval: interval,
            shards: args.shards,
            data_dir: coord_dir_of(name),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            health_failures: 3,
            replication_factor: args.replication_factor,
            replica_timeout: Duration::from_secs(30),
            coordinator_id: peers.as_ref().map(|_| name.clone()),
            peers: peers.clone(),
            raft: RaftTiming::default(),
            security: security.clone(),
            tls: tls_for("coordinator"),
            listener: ListenerConfig::default(),
        })
        .collect();
    // Truxe first: the cluster trusts its keys from the first request on.
    let truxe_dir = args.dir.join("truxe");
    let truxe_log = files.as_ref().map(|f| f.file("truxe")).transpose()?;
    let truxe_child = match &truxe_bin {
        Some(bin) => tokio::select! {
            r = start_truxe(bin, &truxe_dir, args.truxe_port, truxe_log.clone()) => Some(r?),
            _ = &mut signal => return Ok(ExitCode::SUCCESS),
        },
        None => None,
    };
    let mut tasks = Vec::new();
    let mut runtimes = devlog::Runtimes::default();
    for (cfg, (name, _)) in coord_cfgs.into_iter().zip(&coordinators) {
        let stop = shutdown.clone();
        tasks.push(
            runtimes
                .serve(name, cfg.listen, |l| crate::coordinator::run(cfg, l, stop))
                .with_context(|| format!("starting {name}"))?,
        );
    }
    // Trusts the dev CA; authenticates with the admin key per request.
    let http = match &certs {
        Some(c) => reqwest::Client::builder()
            .use_preconfigured_tls(secure::tls::client_trusting(&c.ca())?)
            .build()?,
        None => reqwest::Client::new(),
    };
    let creds = DevCredentials::open(&args.dir)?;
    let boot = async {
        for url in &coord_urls {
            wait_ok(&http, &format!("{url}/health"), Duration::from_secs(60)).await?;
        }
        // The coordinator that created the cluster wrote its bootstrap key
        // before it began serving the API (several agree on one first).
        let admin = bootstrap_key(&http, &coordinators, &coord_urls, &coord_dir_of)
            .await
            .with_context(|| {
                format!(
                    "reading the admin key (torua dev needs it; delete {} to start a new dev cluster)",
                    args.dir.display()
                )
            })?;
        let mut client = torua_client::Client::builder(&coord_url).token(&admin);
        if let Some(c) = &certs {
            client = client.ca_file(c.ca())?;
        }
        let client = client.build()?;
        // With TLS, nodes register by their certificates; without, each by
        // a key bound to it.
        let mut node_keys = Vec::new();
        if certs.is_none() {
            for name in &names {
                node_keys.push(ensure_node_key(&client, &creds, name).await?);
            }
        }
        anyhow::Ok((admin, client, node_keys))
    };
    let (admin_key, admin, node_keys) = tokio::select! {
        r = boot => r?,
        _ = &mut signal => {
            trigger.fire();
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut encryption = args.encryption.clone();
    if encryption.enabled && encryption.master_key_file.is_none() && encryption.master_key.is_none()
    {
        if creds.read("master.key").is_none() {
            creds.write(
                "master.key",
                &secure::envelope::key_to_hex(&secure::envelope::generate_key()),
            )?;
        }
        encryption.master_key_file = Some(creds.path("master.key"));
    }
    let mut nodes = Vec::new();
    for (i, name) in (1..=args.nodes).zip(&names) {
        let port = args
            .port
            .checked_add(args.coordinators - 1 + i)
            .context("port range overflows")?;
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let cfg = NodeConfig {
            node_id: name.clone(),
            listen,
            advertise: Some(format!("{scheme}://{listen}")),
            coordinator: Urls(coord_urls.clone()),
            data_dir: Some(args.dir.join(name)),
            health_check_interval: interval,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            key_file: node_keys.get(usize::from(i - 1)).cloned(),
            raft: RaftTiming::default(),
            encryption: encryption.clone(),
            tls: tls_for(&format!("node-{name}")),
            listener: ListenerConfig::default(),
        };
        nodes.push((
            cfg.node_id.clone(),
            format!("{scheme}://{listen}"),
            cfg.data_dir(),
        ));
        let stop = shutdown.clone();
        tasks.push(
            runtimes
                .serve(name, listen, |l| crate::node::run(cfg, l, stop))
                .with_context(|| format!("starting node {name}"))?,
        );
    }
    let started = async {
        wait_ok(
            &http,
            &format!("{coord_url}/ready"),
            Duration::from_secs(60),
        )
        .await?;
        let (Some(bin), Some((child, url))) = (&truxe_bin, truxe_child) else {
            return anyhow::Ok(None);
        };
        ensure_role_mapping(&admin).await?;
        let token = truxe_admin_token(&http, bin, &truxe_dir, &url, &creds, truxe_log).await?;
        Ok(Some((child, url, token)))
    };
    let truxe = tokio::select! {
        started = started => started?,
        _ = &mut signal => {
            trigger.fire();
            return Ok(ExitCode::SUCCESS);
        }
    };
    let groups = leaders(&admin).await;
    println!(
        "\nTorua dev cluster is ready ({} nodes{groups}).",
        args.nodes
    );
    for ((name, _), url) in coordinators.iter().zip(&coord_urls) {
        println!(
            "  {name:<12} {url}   data: {}",
            coord_dir_of(name).display()
        );
    }
    for (id, url, dir) in &nodes {
        println!("  node {id:<7} {url}   data: {}", dir.display());
    }
    match &truxe {
        Some((_, url, _)) => println!("  truxe        {url}   data: {}  (identity: /api/auth/register, /.well-known/jwks.json; mail: /dev/mailbox)", truxe_dir.display()),
        None if args.no_truxe => {}
        None => println!("  truxe        not started: build it with `cargo build --workspace` to run it here"),
    }
    println!(
        "\nCredentials (development only; kept in {}):",
        creds.dir.display()
    );
    println!("  admin API key      {admin_key}");
    if let Some((_, _, token)) = &truxe {
        println!("  Truxe admin token  {token}");
        println!(
            "                     ({DEV_ADMIN_EMAIL}, mapped to Torua's admin role; valid for Truxe's access-token lifetime)"
        );
    }
    let cacert = match &certs {
        Some(c) => {
            println!(
                "  TLS CA             {}  (mutual TLS between coordinator and nodes)",
                c.ca().display()
            );
            format!("--cacert {} ", c.ca().display())
        }
        None => String::new(),
    };
    println!("\nTry:");
    println!("  export TORUA_TOKEN={admin_key}");
    if let Some(c) = &certs {
        println!("  export TORUA_CA={}", c.ca().display());
    }
    println!("  curl {cacert}-X PUT -H \"Authorization: Bearer $TORUA_TOKEN\" --data-binary 'hello' {coord_url}/data/greeting");
    println!("  curl {cacert}-H \"Authorization: Bearer $TORUA_TOKEN\" {coord_url}/data/greeting");
    println!(
        "  curl {cacert}-H \"Authorization: Bearer $TORUA_TOKEN\" '{coord_url}/data?prefix=&limit=10'"
    );
    let me = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "torua".into());
    println!("  {me} --coordinator {coord_url} status        # uses $TORUA_TOKEN and $TORUA_CA");
    if let Some(f) = &files {
        println!(
            "\nLogs: {} (coordinator, nodes, truxe); warnings also show here. --verbose streams them all.",
            f.dir().display()
        );
    }
    println!(
        "Audit log: audit.jsonl in each coordinator's data directory. Ctrl-C stops the cluster; data stays in {}.\n",
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
    if let Some((child, _, _)) = truxe {
        stop_child(child).await;
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    drop(runtimes);
    println!("stopped");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The bootstrap admin key, from whichever coordinator wrote it, once
/// every coordinator's API accepts it.
async fn bootstrap_key(
    http: &reqwest::Client,
    coordinators: &[(String, SocketAddr)],
    urls: &[String],
    dir_of: &impl Fn(&str) -> PathBuf,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let key = coordinators
            .iter()
            .map(|(name, _)| dir_of(name).join(crate::security::state::BOOTSTRAP_KEY_FILE))
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty());
        if let Some(key) = key {
            let mut all = true;
            for url in urls {
                let res = http
                    .get(format!("{url}/shards"))
                    .bearer_auth(&key)
                    .send()
                    .await;
                all &= res.is_ok_and(|r| r.status().is_success());
            }
            if all {
                return Ok(key);
            }
        }
        if Instant::now() > deadline {
            bail!(
                "no coordinator wrote a bootstrap key, or the coordinators did not start serving"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `, N shard groups, each with a leader` once every replicated shard's
/// group has elected one (waiting up to 30 s; elections end in about a
/// second), or how many have so far; nothing for single-copy shards.
async fn leaders(admin: &torua_client::Client) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let Ok(shards) = admin.shards().await else {
            return String::new();
        };
        let groups = shards
            .shards
            .iter()
            .filter(|s| !s.replicas.is_empty())
            .count();
        let led = shards
            .shards
            .iter()
            .filter(|s| s.replicas.iter().any(|r| r.role == "leader"))
            .count();
        if groups == 0 {
            return String::new();
        }
        if led == groups {
            return format!(", {groups} shard groups, each with a leader");
        }
        if Instant::now() > deadline {
            return format!(", {led} of {groups} shard groups with a leader so far");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `url` until it answers 2xx.
async fn wait_ok(client: &reqwest::Client, url: &str, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} not ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
