//! `put`, `get`, `del`, `ls` and `status` against a coordinator.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::http::extract::encode_key;
use crate::wire::{KeyPage, NodesResponse, ShardsResponse};

/// Writes to stdout; a closed pipe (`torua ls | head`) ends quietly.
fn stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}

/// The coordinator's base URL and an HTTP client that sends the caller's
/// credential on every request.
pub struct Api {
    /// `http://host:port`.
    pub base: String,
    /// Client with `Authorization` preset.
    pub http: reqwest::Client,
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
    /// A client for `base`, authenticating with `token` (API key or Truxe
    /// token) and trusting `ca` (else the public roots) for `https://`.
    pub fn new(
        base: String,
        token: Option<&str>,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Api> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .context("the token contains characters a header cannot carry")?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut builder = reqwest::Client::builder().default_headers(headers);
        if let Some(ca) = ca {
            builder = builder.use_preconfigured_tls(secure::tls::client_trusting(ca)?);
        }
        let http = builder.build()?;
        let token = token.map(str::trim).filter(|t| !t.is_empty());
        Ok(Api {
            base,
            http,
            credential: describe(token),
            ca: ca.map(ToOwned::to_owned),
        })
    }

    /// Sends `req`; a request that never got an answer fails with what to
    /// do about it.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        req.send().await.map_err(|e| self.unreachable(&e))
    }

    /// Why the coordinator could not be asked, and what to try.
    fn unreachable(&self, e: &reqwest::Error) -> anyhow::Error {
        let mut causes = Vec::new();
        let mut src: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = src {
            causes.push(s.to_string());
            src = s.source();
        }
        let all = causes.join(": ");
        let base = &self.base;
        let cause = causes.last().cloned().unwrap_or_default();
        if all.contains("UnknownIssuer") || all.contains("certificate") {
            return match &self.ca {
                None => anyhow::anyhow!(
                    "{base} presented a certificate this machine does not trust ({cause}). \
                     Pass the cluster's CA with --ca or TORUA_CA (`torua dev` keeps it in \
                     torua-data/dev/certs/ca.pem and prints it)."
                ),
                Some(ca) => anyhow::anyhow!(
                    "{base} presented a certificate the CA in {} did not sign ({cause}): \
                     is it the right cluster's CA?",
                    ca.display()
                ),
            };
        }
        if e.is_connect() {
            return anyhow::anyhow!(
                "cannot connect to the coordinator at {base} ({cause}). Is it running? \
                 `torua dev` starts a local cluster; --coordinator or TORUA_COORDINATOR names another."
            );
        }
        if e.is_timeout() {
            return anyhow::anyhow!("the coordinator at {base} did not answer in time");
        }
        anyhow::anyhow!("asking the coordinator at {base} failed: {all}")
    }

    /// Passes a 2xx answer through; turns an error answer into its
    /// message, saying which credential a refusal was for.
    pub async fn check(&self, res: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        let status = res.status();
        let hint = match status {
            reqwest::StatusCode::UNAUTHORIZED => format!(
                " (sent {}; set TORUA_TOKEN or --token to an API key, such as the admin key \
                 `torua dev` prints, or a Truxe access token)",
                self.credential
            ),
            reqwest::StatusCode::FORBIDDEN => format!(
                " (sent {}, whose roles do not allow this; `torua apikey create --role …` \
                 with an admin key makes one that may)",
                self.credential
            ),
            _ => String::new(),
        };
        check(res).await.map_err(|e| anyhow::anyhow!("{e}{hint}"))
    }

    /// GETs `path` and decodes the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        Ok(self
            .check(
                self.send(self.http.get(format!("{}{path}", self.base)))
                    .await?,
            )
            .await?
            .json()
            .await?)
    }
}

/// The first of `urls` whose coordinator answers `/health` (any will do:
/// they share their metadata); the first when none answers, so the
/// command's own error names it.
pub async fn first_live(api: &Api, urls: &[String]) -> String {
    for url in urls {
        let probe = api
            .http
            .get(format!("{url}/health"))
            .timeout(std::time::Duration::from_secs(2))
            .send()
            .await;
        if probe.is_ok_and(|r| r.status().is_success()) {
            return url.clone();
        }
    }
    urls[0].clone()
}

/// Passes a 2xx answer through; turns an error answer into its message.
async fn check(res: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    let msg = body["error"]["message"].as_str().unwrap_or("(no message)");
    bail!("{status}: {msg}")
}

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
    let url = format!("{}/data/{}", api.base, encode_key(key));
    let req = api.http.put(url).header("content-type", ct).body(body);
    api.check(api.send(req).await?).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn get(api: &Api, key: &str) -> anyhow::Result<ExitCode> {
    let res = api
        .send(
            api.http
                .get(format!("{}/data/{}", api.base, encode_key(key))),
        )
        .await?;
    if res.status() == reqwest::StatusCode::NOT_FOUND {
        eprintln!("not found: {key}");
        return Ok(ExitCode::from(1));
    }
    let bytes = api.check(res).await?.bytes().await?;
    stdout(&bytes)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn del(api: &Api, key: &str) -> anyhow::Result<ExitCode> {
    let req = api
        .http
        .delete(format!("{}/data/{}", api.base, encode_key(key)));
    api.check(api.send(req).await?).await?;
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
    let mut after: Option<String> = None;
    let mut printed = 0usize;
    if json {
        stdout(b"[")?;
    }
    loop {
        let page_size = if limit == 0 {
            1000
        } else {
            (limit - printed).min(1000)
        };
        let mut q = vec![
            ("prefix", prefix.to_owned()),
            ("limit", page_size.to_string()),
        ];
        if let Some(a) = &after {
            q.push(("after", a.clone()));
        }
        let req = api.http.get(format!("{}/data", api.base)).query(&q);
        let page: KeyPage = api.check(api.send(req).await?).await?.json().await?;
        let mut text = String::new();
        for (i, k) in page.keys.iter().enumerate() {
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
        printed += page.keys.len();
        match page.next_after {
            Some(n) if limit == 0 || printed < limit => after = Some(n),
            _ => {
                if json {
                    stdout(b"]\n")?;
                }
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
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
    let nodes: NodesResponse = api.get_json("/nodes").await?;
    let shards: ShardsResponse = api.get_json("/shards").await?;
    let res = api
        .send(api.http.get(format!("{}/ready", api.base)))
        .await?;
    let ready = res.status().is_success();
    // `/ready` says why not, and how replication stands.
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    let code = if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if output == super::Output::Json {
        let doc = serde_json::json!({
            "ready": ready, "readiness": body, "nodes": nodes.nodes, "shards": shards,
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
        nodes.nodes.len(),
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
    for n in &nodes.nodes {
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
