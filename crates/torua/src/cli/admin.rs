//! `torua apikey`, `torua policy` and `torua audit`: security
//! administration through the coordinator's admin API, and offline
//! verification of an audit log.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use super::data::{ask, Api};
use super::Output;

/// `torua apikey …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once and cannot be shown again.
    Create {
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// Role to bind (repeat for several): `admin`, `monitor`, `node`, or
        /// a policy role.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The one node a key with the `node` role may register as.
        #[arg(long = "node", value_name = "NODE_ID")]
        node: Option<String>,
        /// Lifetime such as `30d` or `12h` (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id; it is refused from the next request on.
    Revoke {
        /// Key id (the 12 hex digits after `torua_`).
        id: String,
    },
}

/// `torua policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print the policy as JSON.
    Get,
    /// Replace the policy with a JSON file (`-` for stdin). Its `version`
    /// must be the current one, so concurrent edits are not lost.
    Set {
        /// Policy file.
        file: std::path::PathBuf,
    },
}

/// `torua keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Start a new data key in every shard of every node; older values are
    /// re-sealed in the background, then the old keys are forgotten.
    Rotate {
        /// Wait until every shard has re-sealed its older values, showing
        /// how many have.
        #[arg(long)]
        wait: bool,
    },
    /// Show each shard's current data key and whether re-sealing runs.
    Status,
    /// Print a new random master key (64 hex digits) for TORUA_MASTER_KEY_FILE.
    GenerateMaster,
}

/// `torua node …`
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Move every shard copy off a node, then remove it from the cluster
    /// (needs `admin`). Shows the shards still to move while it runs.
    Decommission {
        /// The node's id.
        id: String,
        /// Remove it even if a shard would be left with no copy elsewhere.
        #[arg(long)]
        force: bool,
    },
}

/// Shard copies `id` holds now, from `/nodes` (`None`: not registered).
async fn held(api: &Api, id: &str) -> anyhow::Result<Option<u64>> {
    let nodes = ask!(api, api.client.nodes())?;
    Ok(nodes
        .iter()
        .find(|n| n.id == id)
        .map(|n| n.shard_count as u64))
}

/// Runs `torua node …`.
pub async fn node(api: &Api, cmd: NodeCommand, output: Output) -> anyhow::Result<ExitCode> {
    let NodeCommand::Decommission { id, force } = cmd;
    let Some(total) = held(api, &id).await? else {
        anyhow::bail!("node {id} is not registered (`torua status` lists the nodes)");
    };
    let started = std::time::Instant::now();
    let progress = edge::cli::Progress::new();
    let label = format!("moving shards off {id}");
    // The coordinator answers once everything has moved (after two
    // minutes it says it is still moving: then ask again); meanwhile the
    // node's shard count says how far it is.
    let outcome = loop {
        let done = api.client.remove_node(&id, force);
        tokio::pin!(done);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        let res = loop {
            tokio::select! {
                res = &mut done => break res,
                _ = tick.tick() => {
                    if let Ok(Some(left)) = held(api, &id).await {
                        progress.update(&label, total.saturating_sub(left), total);
                    }
                }
            }
        };
        match res {
            Ok(torua_client::Removal::InProgress) => continue,
            Ok(torua_client::Removal::Done) => break Ok(()),
            Err(e) => break Err(api.explain(e)),
        }
    };
    progress.update(&label, total, total);
    let took = progress.finish();
    if let Err(e) = outcome {
        anyhow::bail!(
            "{e:#}\nnode {id} is still registered; what moved stays moved (run it again to go on)"
        );
    }
    if output == Output::Json {
        return print_json(
            &json!({"node": id, "shards_moved": total, "seconds": took.as_secs_f64()}),
        );
    }
    println!(
        "node {id} decommissioned: {total} shard copies moved off in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// How far shard copies are from an even spread over the active, healthy
/// nodes: copies per node, and how many still have to move.
struct Balance {
    /// `(node, copies)` of the nodes that take shards.
    nodes: Vec<(String, u64)>,
    /// Copies above the even share, plus moves under way.
    to_move: u64,
}

impl Balance {
    async fn read(api: &Api) -> anyhow::Result<Balance> {
        let nodes = ask!(api, api.client.nodes())?;
        let shards = ask!(api, api.client.shards())?;
        let live: Vec<(String, u64)> = nodes
            .iter()
            .filter(|n| n.status == "healthy" && n.state == "active")
            .map(|n| (n.id.clone(), n.shard_count as u64))
            .collect();
        let copies: u64 = live.iter().map(|(_, c)| c).sum();
        let high = copies.div_ceil(live.len().max(1) as u64);
        let excess: u64 = live.iter().map(|(_, c)| c.saturating_sub(high)).sum();
        // A single copy on its way, or a replica still catching up.
        let moving = shards
            .shards
            .iter()
            .filter(|s| {
                s.node_id.is_empty()
                    || s.moving_to.is_some()
                    || s.replicas.iter().any(|r| r.role == "learner")
            })
            .count() as u64;
        Ok(Balance {
            nodes: live,
            to_move: excess + moving,
        })
    }

    fn spread(&self) -> String {
        let counts = self.nodes.iter().map(|(_, c)| *c);
        match (counts.clone().min(), counts.max()) {
            (Some(lo), Some(hi)) if lo == hi => format!("{lo} each"),
            (Some(lo), Some(hi)) => format!("{lo}–{hi} each"),
            _ => "no active node".into(),
        }
    }
}

/// Runs `torua balance`: how shard copies spread over the nodes, and with
/// `wait` progress until the coordinator's rebalancing is done.
pub async fn balance(api: &Api, wait: bool, output: Output) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut now = Balance::read(api).await?;
    if wait {
        let progress = edge::cli::Progress::new();
        let first = now.to_move;
        while now.to_move > 0 {
            progress.update("rebalancing", first.saturating_sub(now.to_move), first);
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            now = Balance::read(api).await?;
        }
        if first > 0 {
            progress.update("rebalancing", first, first);
        }
        progress.finish();
    }
    let balanced = now.to_move == 0;
    if output == Output::Json {
        let nodes: Vec<Value> = now
            .nodes
            .iter()
            .map(|(id, c)| json!({"node_id": id, "shards": c}))
            .collect();
        print_json(&json!({
            "balanced": balanced, "to_move": now.to_move, "nodes": nodes,
            "seconds": started.elapsed().as_secs_f64(),
        }))?;
    } else {
        println!("{:<16} {:>6}", "NODE", "SHARDS");
        for (id, c) in &now.nodes {
            println!("{id:<16} {c:>6}");
        }
        let copies: u64 = now.nodes.iter().map(|(_, c)| c).sum();
        match (balanced, wait) {
            (true, true) => println!(
                "balanced: {copies} shard copies over {} nodes ({}) in {:.1} s",
                now.nodes.len(),
                now.spread(),
                started.elapsed().as_secs_f64()
            ),
            (true, false) => println!(
                "balanced: {copies} shard copies over {} nodes ({})",
                now.nodes.len(),
                now.spread()
            ),
            (false, _) => println!(
                "rebalancing: {} shard copies still to move (`torua balance --wait` follows it)",
                now.to_move
            ),
        }
    }
    Ok(if balanced {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `torua audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check a log's MAC chain, and that it reaches its checkpoint; report
    /// the first altered, inserted or removed entry, or a cut-off tail
    /// (exit 1), or the number of entries and the last MAC.
    Verify {
        /// The log file (the coordinator's `audit.jsonl`).
        file: std::path::PathBuf,
        /// The log's key (default: `audit.key` beside the log).
        #[arg(long, value_name = "FILE")]
        key_file: Option<std::path::PathBuf>,
        /// The log's checkpoint (default: `audit.checkpoint` beside the log,
        /// when there is one).
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<std::path::PathBuf>,
    },
}

/// One data key id, or how many different ones.
fn summarize(kids: &[&str]) -> String {
    let mut distinct: Vec<&str> = kids.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    match distinct.as_slice() {
        [] => "-".into(),
        [one] => (*one).to_owned(),
        many => format!("{} keys", many.len()),
    }
}

fn print_json(v: &Value) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

/// Runs `torua apikey …`.
pub async fn apikey(api: &Api, cmd: ApiKeyCommand, output: Output) -> anyhow::Result<ExitCode> {
    match cmd {
        ApiKeyCommand::Create {
            name,
            roles,
            node,
            expires_in,
        } => {
            let body =
                json!({"name": name, "roles": roles, "node_id": node, "expires_in": expires_in});
            let key = ask!(api, api.client.create_api_key(&body))?;
            eprintln!("Store this key now; it is not shown again.");
            print_json(&key)
        }
        ApiKeyCommand::List => {
            let keys = ask!(api, api.client.api_keys())?;
            if output == Output::Json {
                return print_json(&keys);
            }
            println!(
                "{:<14} {:<8} {:<24} {:<12} ROLES",
                "ID", "STATE", "NAME", "EXPIRES"
            );
            for k in keys["keys"].as_array().into_iter().flatten() {
                let roles: Vec<&str> = k["roles"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let expires = k["expires_at"]
                    .as_u64()
                    .map(|t| {
                        humantime::format_rfc3339_seconds(
                            std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
                        )
                        .to_string()[..10]
                            .to_owned()
                    })
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{:<14} {:<8} {:<24} {:<12} {}",
                    k["id"].as_str().unwrap_or(""),
                    k["state"].as_str().unwrap_or(""),
                    k["name"].as_str().unwrap_or(""),
                    expires,
                    roles.join(",")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ApiKeyCommand::Revoke { id } => {
            let k = ask!(api, api.client.revoke_api_key(&id))?;
            eprintln!("revoked {}", k["id"].as_str().unwrap_or(&id));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `torua policy …`.
pub async fn policy(api: &Api, cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Get => print_json(&ask!(api, api.client.policy())?),
        PolicyCommand::Set { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let doc: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let stored = ask!(api, api.client.set_policy(&doc))?;
            eprintln!("policy is now at version {}", stored["version"]);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `torua keys …`.
pub async fn keys(api: &Api, cmd: KeysCommand, output: Output) -> anyhow::Result<ExitCode> {
    match cmd {
        KeysCommand::GenerateMaster => {
            println!(
                "{}",
                secure::envelope::key_to_hex(&secure::envelope::generate_key())
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate { wait } => {
            let started = std::time::Instant::now();
            let res = ask!(api, api.client.rotate_keys())?;
            let nodes = res["nodes"].as_array().cloned().unwrap_or_default();
            let failed = nodes.iter().filter(|n| n.get("error").is_some()).count();
            if output == Output::Json {
                print_json(&res)?;
            } else {
                println!("{:<16} {:>6}  {:<10} RESULT", "NODE", "SHARDS", "DATA KEYS");
                for n in &nodes {
                    let shards = n["shards"].as_array().map(Vec::len);
                    let kids: Vec<&str> = n["shards"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["data_key"].as_str())
                        .collect();
                    let result = match n["error"].as_str() {
                        Some(e) => format!("FAILED: {e}"),
                        None => "rotated".into(),
                    };
                    println!(
                        "{:<16} {:>6}  {:<10} {result}",
                        n["node_id"].as_str().unwrap_or("?"),
                        shards.map_or("-".into(), |c| c.to_string()),
                        summarize(&kids),
                    );
                }
                println!(
                    "new data keys on {} of {} nodes in {:.1} s; older values are re-sealed in the background (`torua keys status` shows how far)",
                    nodes.len() - failed,
                    nodes.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            if failed > 0 {
                return Ok(ExitCode::from(1));
            }
            if wait {
                return resealed(api, output, started).await;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Status => {
            let res = ask!(api, api.client.key_status())?;
            if output == Output::Json {
                return print_json(&res);
            }
            println!(
                "{:<16} {:>5}  {:<10} {:>4}  RESEALING",
                "NODE", "SHARD", "DATA KEY", "KEYS"
            );
            for n in res["nodes"].as_array().into_iter().flatten() {
                let node = n["node_id"].as_str().unwrap_or("?");
                if let Some(e) = n["error"].as_str() {
                    println!("{node:<16} {:>5}  {:<10} {:>4}  FAILED: {e}", "-", "-", "-");
                    continue;
                }
                if n["encrypted"] == false {
                    println!(
                        "{node:<16} {:>5}  {:<10} {:>4}  plaintext (TORUA_ENCRYPTION=off)",
                        "-", "-", "-"
                    );
                    continue;
                }
                for sh in n["shards"].as_array().into_iter().flatten() {
                    // How many data keys the shard still holds values under.
                    let keys = sh["keys"]
                        .as_u64()
                        .or(sh["keys"].as_array().map(|k| k.len() as u64))
                        .unwrap_or(0);
                    println!(
                        "{node:<16} {:>5}  {:<10} {keys:>4}  {}",
                        sh["id"].as_u64().map_or("?".into(), |i| i.to_string()),
                        sh["data_key"].as_str().unwrap_or("-"),
                        if sh["resealing"] == true { "yes" } else { "no" },
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `keys rotate --wait`: follows `/admin/keys` until no shard is
/// re-sealing, with progress; then one summary line.
async fn resealed(
    api: &Api,
    output: Output,
    started: std::time::Instant,
) -> anyhow::Result<ExitCode> {
    let progress = edge::cli::Progress::new();
    loop {
        let res = ask!(api, api.client.key_status())?;
        let shards: Vec<&Value> = res["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| n["shards"].as_array().into_iter().flatten())
            .collect();
        let busy = shards.iter().filter(|s| s["resealing"] == true).count() as u64;
        let total = shards.len() as u64;
        progress.update("re-sealing older values", total - busy, total);
        if busy == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    progress.finish();
    if output != Output::Json {
        println!(
            "every shard re-sealed under its new data key in {:.1} s; the old keys are forgotten",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `torua audit …` (offline: reads the files, talks to nobody).
pub fn audit(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    let AuditCommand::Verify {
        file,
        key_file,
        checkpoint,
    } = cmd;
    let key_file = key_file.unwrap_or_else(|| file.with_file_name(crate::security::AUDIT_KEY_FILE));
    let key = secure::audit::chain::read_key(&key_file)?;
    let checkpoint = match checkpoint {
        Some(p) => Some(p),
        None => {
            Some(file.with_file_name(crate::security::AUDIT_CHECKPOINT_FILE)).filter(|p| p.exists())
        }
    };
    let checkpoint = match &checkpoint {
        Some(p) => match secure::audit::chain::Checkpoint::read(p, &key) {
            Ok(c) => Some(c),
            Err(e) => {
                println!("{}: TAMPERED: {e}", file.display());
                return Ok(ExitCode::from(1));
            }
        },
        None => None,
    };
    let f = std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?;
    match secure::audit::chain::verify(std::io::BufReader::new(f), &key, checkpoint.as_ref()) {
        Ok(head) => {
            let reached = match &checkpoint {
                Some(c) => format!(", reaches its checkpoint (entry {})", c.seq),
                None => ", no checkpoint to check its tail against".into(),
            };
            println!(
                "{}: chain intact, {} entries, last MAC {}{reached}",
                file.display(),
                head.entries,
                head.mac
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(brk) => {
            println!("{}: TAMPERED at {brk}", file.display());
            Ok(ExitCode::from(1))
        }
    }
}
