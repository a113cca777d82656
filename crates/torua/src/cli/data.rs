//! `put`, `get`, `del`, `ls` and `status` against a coordinator.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};

/// Writes to stdout; a closed pipe (`torua ls | head`) ends quietly.
fn stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

/// The cluster client, and what an error message may say about how it
/// was asked.
pub struct Api {
    /// The typed client (retries, failover between coordinators).
    pub client: torua_client::Client,
    /// What the client sends, as an error message may name it.
    credential: String,
    /// The CA trusted, if one was given.
    ca: Option<std::path::PathBuf>,
}

/// How an error names the credential sent, without its secret: an API
/// key by its public id (`torua_<id>_…`), a token by its kind.
fn describe(token: Option<&str>) -> String {
    match token {
        None => "no credential".into(),
        Some(t) => match t.strip_prefix("torua_").and_then(|r| r.split_once('_')) {
            Some((id, _)) => format!("the API key torua_{id}_…"),
            None if t.split('.').count() == 3 => "a bearer token (a Truxe access token?)".into(),
            None => "a bearer token that is not a Torua API key".into(),
        },
    }
}

impl Api {
    /// A client for the coordinators at `urls` (the next is tried when one
    /// refuses connections), authenticating with `token` (API key or Truxe
    /// token) and trusting `ca` (else the public roots) for `https://`.
    pub fn new(
        urls: &[String],
        token: Option<&str>,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Api> {
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        let mut builder = torua_client::Client::builder(&urls[0]);
        for u in &urls[1..] {
            builder = builder.url(u);
        }
        if let Some(t) = token {
            builder = builder.token(t);
        }
        if let Some(ca) = ca {
            builder = builder.ca_file(ca)?;
        }
        Ok(Api {
            client: builder.build()?,
            credential: describe(token),
            ca: ca.map(ToOwned::to_owned),
        })
    }

    /// Turns a client error into a message that says what to do about it:
    /// the CA to pass, whether a coordinator runs, which credential a
    /// refusal was for.
    pub fn explain(&self, e: torua_client::Error) -> anyhow::Error {
        use torua_client::{Error, Failure};
        match e {
            Error::Unreachable {
                url,
                kind: Failure::Tls,
                cause,
            } => match &self.ca {
                None => anyhow::anyhow!(
                    "{url} presented a certificate this machine does not trust ({cause}). \
                     Pass the cluster's CA with --ca or TORUA_CA (`torua dev` keeps it in \
                     torua-data/dev/certs/ca.pem and prints it)."
                ),
                Some(ca) => anyhow::anyhow!(
                    "{url} presented a certificate the CA in {} did not sign ({cause}): \
                     is it the right cluster's CA?",
                    ca.display()
                ),
            },
            Error::Unreachable {
                url,
                kind: Failure::Connect,
                cause,
            } => anyhow::anyhow!(
                "cannot connect to the coordinator at {} ({cause}). Is it running? \
                 `torua dev` starts a local cluster; --coordinator or TORUA_COORDINATOR names another.",
                base_of(&url)
            ),
            Error::Unreachable {
                url,
                kind: Failure::Timeout,
                ..
            } => anyhow::anyhow!("the coordinator at {} did not answer in time", base_of(&url)),
            Error::Api {
                status,
                code,
                message,
            } => {
                let hint = match status {
                    401 => format!(
                        " (sent {}; set TORUA_TOKEN or --token to an API key, such as the admin key \
                         `torua dev` prints, or a Truxe access token)",
                        self.credential
                    ),
                    403 => format!(
                        " (sent {}, whose roles do not allow this; `torua apikey create --role …` \
                         with an admin key makes one that may)",
                        self.credential
                    ),
                    _ => String::new(),
                };
                anyhow::anyhow!("{status} {code}: {message}{hint}")
            }
            other => other.into(),
        }
    }
}

/// `https://host:port` of a request URL.
fn base_of(url: &str) -> &str {
    let rest = url.find("://").map_or(0, |i| i + 3);
    url[rest..].find('/').map_or(url, |i| &url[..rest + i])
}

/// Runs `call` against the cluster, explaining its failure.
macro_rules! ask {
    ($api:expr, $call:expr) => {
        $call.await.map_err(|e| $api.explain(e))
    };
}
pub(crate) use ask;

pub async fn put(
    api: &Api,
    key: &str,
    value: Option<String>,
    file: Option<std::path::PathBuf>,
    ct: &str,
) -> anyhow::Result<ExitCode> {
    let body = match (value, file) {
        (Some(v), None) => v.into_bytes(),
        (None, Some(f)) if f.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
        (None, Some(f)) => std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?,
        _ => bail!("give either a VALUE or --file"),
    };
    let put = torua_client::Put::new().content_type(ct);
    ask!(api, api.client.put_with(key, body, &put))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn get(api: &Api, key: &str) -> anyhow::Result<ExitCode> {
    match ask!(api, api.client.get(key))? {
        Some(entry) => {
            stdout(&entry.value)?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("not found: {key}");
            Ok(ExitCode::from(1))
        }
    }
}

pub async fn del(api: &Api, key: &str) -> anyhow::Result<ExitCode> {
    ask!(api, api.client.delete(key))?;
    Ok(ExitCode::SUCCESS)
}

/// Lists keys page by page as they come: one per line, or with `-o json`
/// one JSON array of strings (written as it streams, so any key survives).
pub async fn ls(
    api: &Api,
    prefix: &str,
    limit: usize,
    output: super::Output,
) -> anyhow::Result<ExitCode> {
    let json = output == super::Output::Json;
    let mut printed = 0usize;
    if json {
        stdout(b"[")?;
    }
    let page_size = if limit == 0 { 1000 } else { limit.min(1000) };
    let mut pages = api.client.list(prefix).page_size(page_size);
    while let Some(mut keys) = ask!(api, pages.next_page())? {
        if limit > 0 {
            keys.truncate(limit - printed);
        }
        let mut text = String::new();
        for (i, k) in keys.iter().enumerate() {
            if json {
                if printed + i > 0 {
                    text.push(',');
                }
                text.push_str(&serde_json::to_string(k)?);
            } else {
                text.push_str(k);
                text.push('\n');
            }
        }
        stdout(text.as_bytes())?;
        printed += keys.len();
        if limit > 0 && printed >= limit {
            break;
        }
    }
    if json {
        stdout(b"]\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `status --watch`: the status every `every` until interrupted, redrawn
/// in place on a terminal and separated by a timestamped line otherwise.
/// A failed refresh is shown and retried, not fatal.
pub async fn watch(
    api: &Api,
    output: super::Output,
    every: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal();
    loop {
        if terminal {
            // Home and clear, then the table.
            stdout(b"\x1b[H\x1b[2J")?;
        } else {
            let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            stdout(format!("--- {now}\n").as_bytes())?;
        }
        if let Err(e) = status(api, output).await {
            stdout(format!("{e:#}\n").as_bytes())?;
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

pub async fn status(api: &Api, output: super::Output) -> anyhow::Result<ExitCode> {
    let nodes = ask!(api, api.client.nodes())?;
    let shards = ask!(api, api.client.shards())?;
    let readiness = ask!(api, api.client.ready())?;
    let (ready, body) = (readiness.ready, readiness.detail);
    let code = if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if output == super::Output::Json {
        let doc = serde_json::json!({
            "ready": ready, "readiness": body, "nodes": nodes, "shards": shards,
        });
        stdout(format!("{}\n", serde_json::to_string_pretty(&doc)?).as_bytes())?;
        return Ok(code);
    }
    let said = body["message"]
        .as_str()
        .or(body["error"]["message"].as_str())
        .unwrap_or_default();
    use std::fmt::Write as _;
    let mut o = String::new();
    writeln!(
        o,
        "cluster: {} nodes, {} shards, {}",
        nodes.len(),
        shards.num_shards,
        if ready { "ready" } else { "NOT ready" }
    )?;
    if let Some(f) = body["replication_factor"].as_u64() {
        let under = body["under_replicated"].as_u64().unwrap_or(0);
        writeln!(o, "replication factor {f}: {under} shards under-replicated")?;
    }
    if let Some(c) = body["coordinators"].as_object() {
        let members: Vec<&str> = c["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        writeln!(
            o,
            "coordinators: {} (leader {}, term {}; the one asked is {})",
            members.join(" "),
            c["leader"].as_str().unwrap_or("none"),
            c["term"],
            c["role"].as_str().unwrap_or("?"),
        )?;
    }
    if !said.is_empty() {
        writeln!(o, "{said}")?;
    }
    writeln!(
        o,
        "\n{:<16} {:<10} {:<9} {:>6}  ADDR",
        "NODE", "STATUS", "STATE", "SHARDS"
    )?;
    for n in &nodes {
        writeln!(
            o,
            "{:<16} {:<10} {:<9} {:>6}  {}",
            n.id, n.status, n.state, n.shard_count, n.addr
        )?;
    }
    let replicated = shards.shards.iter().any(|s| !s.replicas.is_empty());
    let last = if replicated { "REPLICAS" } else { "MOVING TO" };
    let head = if replicated { "LEADER" } else { "NODE" };
    writeln!(o, "\n{:<6} {:<16} {last}", "SHARD", head)?;
    for s in &shards.shards {
        let node = if s.node_id.is_empty() {
            "-"
        } else {
            &s.node_id
        };
        let tail = if replicated {
            s.replicas
                .iter()
                .map(|r| format!("{}({})", r.node_id, r.role))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            s.moving_to.clone().unwrap_or_default()
        };
        writeln!(o, "{:<6} {:<16} {tail}", s.shard_id, node)?;
    }
    stdout(o.as_bytes())?;
    Ok(code)
}
