//! Configuration: the original Torua environment variables, parsed and
//! validated once at start-up. A bad value stops the process with a message
//! naming the variable.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use secure::ratelimit::Quota;

/// Default number of shards. Every shard is a Raft group, and writes to
/// one group share its appends, replication rounds, applies and (since
/// proposals are batched) its log entries, so fewer groups write faster:
/// on three nodes, 4 shards took 1.15 times the writes of 8, and 8 took
/// 2.2 times those of 64 (`docs/benchmarks.md`). Larger clusters set more
/// (about the number of nodes or a few times it, so every node leads some).
pub const DEFAULT_SHARDS: u32 = 4;
/// Default largest value accepted by `PUT /data/{key}`.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 32 * 1024 * 1024;

/// Coordinator settings (`torua-coordinator`).
#[derive(Debug, Clone, Args)]
pub struct CoordinatorConfig {
    /// Listen address: `:8080` (all interfaces) or `host:port`.
    #[arg(long = "listen", env = "COORDINATOR_ADDR", value_name = "COORDINATOR_ADDR",
          default_value = ":8080", value_parser = parse_listen_addr)]
    pub listen: SocketAddr,
    /// How often nodes are health-checked (Go duration: `5s`, `500ms`).
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", value_name = "HEALTH_CHECK_INTERVAL",
          default_value = "5s", value_parser = parse_interval)]
    pub health_check_interval: Duration,
    /// Number of shards; fixed when the cluster is created (default 4).
    #[arg(long, env = "TORUA_SHARDS", value_name = "TORUA_SHARDS", value_parser = parse_shards)]
    pub shards: Option<u32>,
    /// Directory for the coordinator's metadata.
    #[arg(
        long,
        env = "TORUA_DATA_DIR",
        value_name = "TORUA_DATA_DIR",
        default_value = "torua-data/coordinator"
    )]
    pub data_dir: PathBuf,
    /// Largest value accepted, in bytes.
    #[arg(long, env = "TORUA_MAX_VALUE_BYTES", value_name = "TORUA_MAX_VALUE_BYTES",
          default_value_t = DEFAULT_MAX_VALUE_BYTES, value_parser = parse_max_value)]
    pub max_value_bytes: usize,
    /// Consecutive failed health checks before a node is `unhealthy`.
    #[arg(long, env = "TORUA_HEALTH_FAILURES", value_name = "TORUA_HEALTH_FAILURES",
          default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub health_failures: u32,
    /// Replicas per shard (1–7): every shard is a Raft group of up to this
    /// many nodes (fewer while the cluster is smaller, as `/ready` says).
    /// Unset: what the cluster was created with, and 3 for a new cluster.
    /// `off` (only when the cluster is created): single-copy mode, one copy
    /// per shard moved whole between nodes, without Raft.
    #[arg(long, env = "TORUA_REPLICATION_FACTOR", value_name = "TORUA_REPLICATION_FACTOR",
          value_parser = parse_replication)]
    pub replication_factor: Option<Replication>,
    /// How long a replica's node may stay unhealthy before the replica is
    /// re-created on another node.
    #[arg(long, env = "TORUA_REPLICA_TIMEOUT", value_name = "TORUA_REPLICA_TIMEOUT",
          default_value = "30s", value_parser = parse_interval)]
    pub replica_timeout: Duration,
    /// This coordinator's name among its peers (with
    /// `TORUA_COORDINATOR_PEERS`).
    #[arg(long = "coordinator-id", env = "TORUA_COORDINATOR_ID", value_name = "TORUA_COORDINATOR_ID",
          value_parser = parse_node_id)]
    pub coordinator_id: Option<String>,
    /// Every coordinator of a highly available cluster, this one included:
    /// `c1=https://10.0.0.1:8080,c2=…,c3=…`. They keep the metadata in a
    /// Raft group; unset, this coordinator runs alone with it in files.
    #[arg(long = "coordinator-peers", env = "TORUA_COORDINATOR_PEERS", value_name = "TORUA_COORDINATOR_PEERS",
          value_parser = parse_peers)]
    pub peers: Option<Peers>,
    /// Raft timing of the coordinators' group.
    #[command(flatten)]
    pub raft: RaftTiming,
    /// Authentication, authorization, rate limits and audit.
    #[command(flatten)]
    pub security: SecurityConfig,
    /// TLS on the listener and towards nodes.
    #[command(flatten)]
    pub tls: TlsConfig,
    /// What the listener allows its clients.
    #[command(flatten)]
    pub listener: ListenerConfig,
}

/// Listener bounds, the same for coordinator and nodes (see `edge`):
/// requests' headers within 10 s (also the keep-alive idle timeout), whole
/// requests within [`crate::http::REQUEST_DEADLINE`].
#[derive(Debug, Clone, Copy, Args)]
pub struct ListenerConfig {
    /// Open connections at most; more are answered `503` with `Retry-After`.
    #[arg(long = "max-connections", env = "TORUA_MAX_CONNECTIONS", value_name = "TORUA_MAX_CONNECTIONS",
          default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            max_connections: 4096,
        }
    }
}

impl ListenerConfig {
    /// The edge's limits.
    pub fn limits(&self) -> edge::Limits {
        edge::Limits {
            request: crate::http::REQUEST_DEADLINE,
            max_connections: self.max_connections as usize,
            ..edge::Limits::default()
        }
    }
}

/// TLS settings, the same for coordinator and nodes.
#[derive(Debug, Clone, Args)]
pub struct TlsConfig {
    /// `on` (default): the listener speaks TLS and cluster calls use mutual
    /// TLS. `off` speaks plain HTTP, and says so in the log.
    #[arg(id = "tls_enabled", long = "tls", env = "TORUA_TLS", value_name = "TORUA_TLS",
          default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// PEM certificate chain of this process (`torua certs init` makes dev ones).
    #[arg(
        long = "tls-cert",
        env = "TORUA_TLS_CERT",
        value_name = "TORUA_TLS_CERT"
    )]
    pub cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long = "tls-key", env = "TORUA_TLS_KEY", value_name = "TORUA_TLS_KEY")]
    pub key: Option<PathBuf>,
    /// PEM bundle of the CAs whose certificates are trusted (old and new
    /// together during a CA rotation).
    #[arg(long = "tls-ca", env = "TORUA_TLS_CA", value_name = "TORUA_TLS_CA")]
    pub ca: Option<PathBuf>,
}

/// Security settings of the coordinator.
#[derive(Debug, Clone, Args)]
pub struct SecurityConfig {
    /// `on` (default): every request needs credentials. `off` lets every
    /// client act as admin, and says so in the log at start-up.
    #[arg(long = "auth", env = "TORUA_AUTH", value_name = "TORUA_AUTH",
          default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub auth: bool,
    /// Truxe's JWKS URL, e.g. `http://127.0.0.1:3001/.well-known/jwks.json`;
    /// unset, only Torua API keys are accepted.
    #[arg(long, env = "TORUA_JWKS_URL", value_name = "TORUA_JWKS_URL", value_parser = parse_http_url)]
    pub jwks_url: Option<String>,
    /// The `iss` tokens must carry (Truxe's `JWT_ISSUER`); required with a JWKS URL.
    #[arg(long, env = "TORUA_JWT_ISSUER", value_name = "TORUA_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// The `aud` tokens must carry (Truxe's `JWT_AUDIENCE`).
    #[arg(
        long,
        env = "TORUA_JWT_AUDIENCE",
        value_name = "TORUA_JWT_AUDIENCE",
        default_value = "truxe-api"
    )]
    pub jwt_audience: String,
    /// Requests per source address, e.g. `10000/1s`.
    #[arg(long, env = "TORUA_RATE_LIMIT_IP", value_name = "TORUA_RATE_LIMIT_IP",
          default_value = "10000/1s", value_parser = parse_quota)]
    pub rate_limit_ip: Quota,
    /// Requests per principal unless one of its roles sets a quota.
    #[arg(long, env = "TORUA_RATE_LIMIT_PRINCIPAL", value_name = "TORUA_RATE_LIMIT_PRINCIPAL",
          default_value = "5000/1s", value_parser = parse_quota)]
    pub rate_limit_principal: Quota,
    /// The audit log (default `TORUA_DATA_DIR/audit.jsonl`).
    #[arg(long, env = "TORUA_AUDIT_LOG", value_name = "TORUA_AUDIT_LOG")]
    pub audit_log: Option<PathBuf>,
    /// The key of the audit log's MACs: a file of 64 hex digits, kept apart
    /// from the log (default `audit.key` beside the log, made if missing).
    #[arg(
        long,
        env = "TORUA_AUDIT_KEY_FILE",
        value_name = "TORUA_AUDIT_KEY_FILE"
    )]
    pub audit_key_file: Option<PathBuf>,
    /// Where the audit log's checkpoint (its newest entry, MAC'd) is kept,
    /// to tell a cut-off tail (default `audit.checkpoint` beside the log;
    /// put it on another volume).
    #[arg(
        long,
        env = "TORUA_AUDIT_CHECKPOINT",
        value_name = "TORUA_AUDIT_CHECKPOINT"
    )]
    pub audit_checkpoint: Option<PathBuf>,
    /// `on`: also audit every data access (reads, writes, deletes, lists).
    #[arg(long, env = "TORUA_AUDIT_DATA", value_name = "TORUA_AUDIT_DATA",
          default_value = "off", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub audit_data: bool,
}

/// Storage node settings (`torua-node`).
#[derive(Debug, Clone, Args)]
pub struct NodeConfig {
    /// Unique node id (letters, digits, `.`, `_`, `-`; at most 64).
    #[arg(long = "id", env = "NODE_ID", value_name = "NODE_ID", value_parser = parse_node_id)]
    pub node_id: String,
    /// Listen address: `:8081` or `host:port`.
    #[arg(long = "listen", env = "NODE_LISTEN", value_name = "NODE_LISTEN",
          default_value = ":8081", value_parser = parse_listen_addr)]
    pub listen: SocketAddr,
    /// URL other processes use to reach this node (default `https://127.0.0.1:<port>`,
    /// `http://` with TLS off).
    #[arg(long = "addr", env = "NODE_ADDR", value_name = "NODE_ADDR", value_parser = parse_url)]
    pub advertise: Option<String>,
    /// The coordinator's URL, e.g. `https://127.0.0.1:8080`; with several
    /// coordinators, all of them, comma-separated.
    #[arg(long = "coordinator", env = "COORDINATOR_ADDR", value_name = "COORDINATOR_ADDR", value_parser = parse_urls)]
    pub coordinator: Urls,
    /// Where this node's shards live (default `torua-data/<NODE_ID>`).
    #[arg(long, env = "DATA_DIR", value_name = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// How often the node re-registers with the coordinator.
    #[arg(long, env = "HEALTH_CHECK_INTERVAL", value_name = "HEALTH_CHECK_INTERVAL",
          default_value = "5s", value_parser = parse_interval)]
    pub health_check_interval: Duration,
    /// Largest value accepted, in bytes.
    #[arg(long, env = "TORUA_MAX_VALUE_BYTES", value_name = "TORUA_MAX_VALUE_BYTES",
          default_value_t = DEFAULT_MAX_VALUE_BYTES, value_parser = parse_max_value)]
    pub max_value_bytes: usize,
    /// File holding this node's Torua API key (role `node`), sent when it
    /// registers with a coordinator that requires authentication.
    #[arg(
        long = "key-file",
        env = "TORUA_NODE_KEY_FILE",
        value_name = "TORUA_NODE_KEY_FILE"
    )]
    pub key_file: Option<PathBuf>,
    /// Raft timing of the shard groups.
    #[command(flatten)]
    pub raft: RaftTiming,
    /// Encryption at rest.
    #[command(flatten)]
    pub encryption: EncryptionConfig,
    /// TLS on the listener and towards the coordinator.
    #[command(flatten)]
    pub tls: TlsConfig,
    /// What the listener allows its clients.
    #[command(flatten)]
    pub listener: ListenerConfig,
}

/// Raft timing and log compaction, the same for shard groups and the
/// coordinators' group.
#[derive(Debug, Clone, Copy, Args)]
pub struct RaftTiming {
    /// How often a group's leader sends heartbeats to its followers.
    #[arg(long = "raft-heartbeat", env = "TORUA_RAFT_HEARTBEAT", value_name = "TORUA_RAFT_HEARTBEAT",
          default_value = "200ms", value_parser = parse_interval)]
    pub heartbeat: Duration,
    /// How long a follower waits without hearing from its leader before it
    /// stands for election (randomized up to 1.25 times this). Must exceed
    /// the heartbeat; failover takes about twice this long.
    #[arg(long = "raft-election-timeout", env = "TORUA_RAFT_ELECTION_TIMEOUT", value_name = "TORUA_RAFT_ELECTION_TIMEOUT",
          default_value = "1s", value_parser = parse_interval)]
    pub election: Duration,
    /// Log entries after which a group takes a snapshot of its state and
    /// purges the log before it (keeping a tenth, at most 1,000, for
    /// followers a little behind); a follower further behind is sent the
    /// snapshot.
    #[arg(long = "raft-snapshot-logs", env = "TORUA_RAFT_SNAPSHOT_LOGS", value_name = "TORUA_RAFT_SNAPSHOT_LOGS",
          default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(10..=10_000_000))]
    pub snapshot_logs: u64,
}

impl RaftTiming {
    /// Entries kept in the log after a snapshot.
    pub fn logs_kept(&self) -> u64 {
        (self.snapshot_logs / 10).min(1_000)
    }
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming {
            heartbeat: Duration::from_millis(200),
            election: Duration::from_secs(1),
            snapshot_logs: 10_000,
        }
    }
}

/// The coordinators of a highly available cluster, by name, with URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers(pub std::collections::BTreeMap<String, String>);

/// Parses `TORUA_COORDINATOR_PEERS`: `name=url` pairs, comma-separated.
pub fn parse_peers(s: &str) -> Result<Peers, String> {
    let mut peers = std::collections::BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part.split_once('=').ok_or_else(|| {
            format!("`{part}` is not `name=url`, e.g. `c1=https://10.0.0.1:8080`")
        })?;
        let name = parse_node_id(name.trim())?;
        let url = parse_url(url.trim())?;
        if peers.insert(name.clone(), url).is_some() {
            return Err(format!("coordinator `{name}` is named twice"));
        }
    }
    match peers.len() {
        0 => Err("no coordinators given; expected `c1=https://10.0.0.1:8080,c2=…`".into()),
        n if n > 7 => Err(format!("{n} coordinators: at most 7 are supported")),
        _ => Ok(Peers(peers)),
    }
}

/// The coordinators a node or client talks to: one URL or several,
/// comma-separated; any of them will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls(pub Vec<String>);

impl Urls {
    /// The first URL (the one tried first).
    pub fn first(&self) -> &str {
        &self.0[0]
    }
}

impl std::fmt::Display for Urls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// Parses one URL or a comma-separated list of them.
pub fn parse_urls(s: &str) -> Result<Urls, String> {
    let urls = s
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(parse_url)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err("no URL given; expected e.g. `https://127.0.0.1:8080`".into());
    }
    Ok(Urls(urls))
}

/// Encryption-at-rest settings of a node.
#[derive(Debug, Clone, Args)]
pub struct EncryptionConfig {
    /// `on` (default): values are sealed at rest and a master key is
    /// required. `off` stores plaintext, and says so in the log.
    #[arg(id = "encryption_enabled", long = "encryption", env = "TORUA_ENCRYPTION", value_name = "TORUA_ENCRYPTION",
          default_value = "on", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// File holding the master key: 64 hex digits, mode 0600
    /// (`torua keys generate-master` makes one).
    #[arg(
        long,
        env = "TORUA_MASTER_KEY_FILE",
        value_name = "TORUA_MASTER_KEY_FILE"
    )]
    pub master_key_file: Option<PathBuf>,
    /// The master key itself (64 hex digits), when it comes from the
    /// environment (a secret manager) rather than a file.
    #[arg(
        long,
        env = "TORUA_MASTER_KEY",
        value_name = "TORUA_MASTER_KEY",
        hide_env_values = true
    )]
    pub master_key: Option<String>,
    /// The previous master key's file, during a master-key rotation: data
    /// keys it wraps are re-wrapped under the current one at start-up.
    #[arg(
        long,
        env = "TORUA_PREVIOUS_MASTER_KEY_FILE",
        value_name = "TORUA_PREVIOUS_MASTER_KEY_FILE"
    )]
    pub previous_master_key_file: Option<PathBuf>,
    /// `on`: seal the plaintext that a node run without encryption left
    /// (shard values, Raft log entries), once. Off (default), plaintext met
    /// under a master key is refused: whoever can write the data files
    /// cannot inject values.
    #[arg(long = "migrate-plaintext", env = "TORUA_MIGRATE_PLAINTEXT", value_name = "TORUA_MIGRATE_PLAINTEXT",
          default_value = "off", value_parser = parse_switch, action = clap::ArgAction::Set)]
    pub migrate_plaintext: bool,
}

impl NodeConfig {
    /// The URL this node advertises.
    pub fn advertised_url(&self) -> String {
        let scheme = if self.tls.enabled { "https" } else { "http" };
        self.advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://127.0.0.1:{}", self.listen.port()))
    }
    /// The data directory actually used.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("torua-data").join(&self.node_id))
    }
}

/// Parses a Go-style listen address: `:8080` means every interface.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let expected = "expected `:PORT` or `HOST:PORT`, e.g. `:8080` or `127.0.0.1:8080`";
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("bad port in `{s}`; {expected}"))?;
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    s.to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{s}` ({e}); {expected}"))?
        .next()
        .ok_or_else(|| format!("`{s}` resolves to no address; {expected}"))
}

/// Parses a Go `time.Duration` string: a sequence of decimal numbers with
/// units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` (e.g. `1m30s`, `1.5s`, `500ms`).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let bad =
        || format!("`{orig}` is not a duration; use Go syntax such as `5s`, `500ms` or `1m30s`");
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = tail;
    }
    if !total.is_finite() || total > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

pub(crate) fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_go_duration(s)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(3600) {
        return Err(format!("`{s}` is out of range; use between 10ms and 1h"));
    }
    Ok(d)
}

/// How shards are kept: `TORUA_REPLICATION_FACTOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// Single-copy mode: no Raft, one copy moved whole between nodes.
    Off,
    /// A Raft group of up to this many replicas per shard.
    Factor(u32),
}

/// Replication factor of a new cluster when none is given.
pub const DEFAULT_REPLICATION_FACTOR: u32 = 3;

/// `off`, or a factor from 1 to 7.
pub fn parse_replication(s: &str) -> Result<Replication, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Replication::Off);
    }
    match s.parse::<u32>() {
        Ok(n @ 1..=7) => Ok(Replication::Factor(n)),
        _ => Err(format!(
            "`{s}` is not a replication factor: give 1 to 7, or `off` for single-copy mode"
        )),
    }
}

/// `on`/`off` (also `true`/`false`, `1`/`0`, `yes`/`no`).
pub fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(format!("`{s}` is not on or off")),
    }
}

fn parse_quota(s: &str) -> Result<Quota, String> {
    s.parse().map_err(|e: secure::Error| e.to_string())
}

/// An `http(s)://` URL with a path (for JWKS documents).
fn parse_http_url(s: &str) -> Result<String, String> {
    let t = s.trim();
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .ok_or_else(|| format!("`{s}` is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains([' ', '#']) {
        return Err(format!("`{s}` is not a valid URL"));
    }
    Ok(t.to_owned())
}

fn parse_shards(s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=65536).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a shard count between 1 and 65536")),
    }
}

fn parse_max_value(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=1 << 30).contains(&n) => Ok(n),
        _ => Err(format!(
            "`{s}` is not a byte count between 1 and 1073741824"
        )),
    }
}

/// Node ids appear in URLs, file names and metrics labels, so they are kept plain.
pub fn parse_node_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a node id: use 1 to 64 letters, digits, `.`, `_` or `-`"
        ))
    }
}

/// Accepts `http://host:port` (no path, query or fragment); strips a trailing `/`.
pub fn parse_url(s: &str) -> Result<String, String> {
    let t = s.trim().trim_end_matches('/');
    let Some(rest) = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
    else {
        return Err(format!(
            "`{s}` is not a URL; expected e.g. `http://127.0.0.1:8080`"
        ));
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ', '@']) {
        return Err(format!(
            "`{s}` must be a bare origin such as `http://host:port`"
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap checks argument ids only when a command is built: build each.
    #[test]
    fn command_lines_are_well_formed() {
        use clap::{CommandFactory, Parser};
        #[derive(Parser)]
        struct Coordinator {
            #[command(flatten)]
            c: CoordinatorConfig,
        }
        #[derive(Parser)]
        struct Node {
            #[command(flatten)]
            n: NodeConfig,
        }
        Coordinator::command().debug_assert();
        Node::command().debug_assert();
        crate::cli::Cli::command().debug_assert();
    }

    #[test]
    fn coordinator_lists() {
        let p = parse_peers(" c1=https://10.0.0.1:8080/, c2=https://10.0.0.2:8080 ").unwrap();
        assert_eq!(p.0["c1"], "https://10.0.0.1:8080");
        assert_eq!(p.0.len(), 2);
        for bad in [
            "",
            ",",
            "c1",
            "c1=",
            "c1=ftp://x",
            "c1=http://a,c1=http://b",
            "bad name=http://a",
        ] {
            assert!(parse_peers(bad).is_err(), "{bad} should fail");
        }
        let eight: Vec<String> = (1..=8).map(|i| format!("c{i}=http://h:{i}")).collect();
        assert!(parse_peers(&eight.join(",")).is_err());
        let u = parse_urls("https://a:1,https://b:2").unwrap();
        assert_eq!((u.first(), u.0.len()), ("https://a:1", 2));
        assert_eq!(u.to_string(), "https://a:1,https://b:2");
        for bad in ["", " , ", "https://a:1,x"] {
            assert!(parse_urls(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn go_durations() {
        let ok = [
            ("5s", 5000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1.5s", 1500),
            ("2h", 7_200_000),
            ("0", 0),
            ("250000us", 250),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_go_duration(s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for s in ["", "5", "s", "-1s", "5 s", "5x", "1e9h", "abc", ".s"] {
            assert!(parse_go_duration(s).is_err(), "{s} should fail");
        }
    }

    #[test]
    fn listen_addrs() {
        assert_eq!(
            parse_listen_addr(":8080"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 8080)))
        );
        assert_eq!(
            parse_listen_addr("127.0.0.1:9"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9)))
        );
        assert!(parse_listen_addr(":99999").is_err());
        assert!(parse_listen_addr("8080").is_err());
        assert!(parse_listen_addr("").is_err());
    }

    #[test]
    fn urls_and_ids() {
        assert_eq!(parse_url("http://a:1/"), Ok("http://a:1".into()));
        assert!(parse_url("a:1").is_err());
        assert!(parse_url("http://a:1/x").is_err());
        assert!(parse_node_id("n-1.a_b").is_ok());
        assert!(parse_node_id("").is_err());
        assert!(parse_node_id("a/b").is_err());
        assert!(parse_node_id(&"x".repeat(65)).is_err());
    }
}

/// The command line of `torua-coordinator`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "torua-coordinator",
    version,
    about = "Torua coordinator: membership, placement and the client API"
)]
pub struct CoordinatorCli {
    /// Its configuration.
    #[command(flatten)]
    pub config: CoordinatorConfig,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "TORUA_LOG_JSON")]
    pub log_json: bool,
}

/// The command line of `torua-node`.
#[derive(Debug, clap::Parser)]
#[command(name = "torua-node", version, about = "Torua storage node")]
pub struct NodeCli {
    /// Its configuration.
    #[command(flatten)]
    pub config: NodeConfig,
    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "TORUA_LOG_JSON")]
    pub log_json: bool,
}
