//! A storage node: serves the shards it holds from its [`ShardStore`] and
//! keeps itself registered with the coordinator.
//!
//! The node decides nothing about placement: it opens, fills and drops
//! shards when the coordinator says so, and refuses requests for shards it
//! does not hold.

mod data;
pub(crate) mod routes;
mod stream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use torua_store::{MasterKeys, ShardStore};

use secure::tls::ClientAuth;

use crate::config::{EncryptionConfig, NodeConfig};
use crate::http::Metrics;
use crate::raft::groups::Groups;
use crate::shutdown::Shutdown;
use crate::tls::{HttpClient, Tls};
use crate::wire::{NodeInfo, RegisterRequest};
use crate::Error;

/// State shared by the node's handlers.
pub(crate) struct Node {
    pub id: String,
    pub store: Arc<ShardStore>,
    pub metrics: Arc<Metrics>,
    pub max_value: usize,
    pub registered: AtomicBool,
    /// TLS is on: the node API answers only the coordinator's certificate.
    /// The coordinator authenticates and authorizes each client request;
    /// no client credential reaches a node.
    pub cluster_tls: bool,
    /// The Raft groups of the replicated shards held here.
    pub groups: Arc<Groups>,
    /// Made with the data directory (see `incarnation`).
    pub incarnation: String,
    /// Ends the coordinators' data streams, which outlive HTTP's
    /// graceful shutdown once upgraded.
    pub shutdown: Shutdown,
}

/// Runs a node until `shutdown`; `listener` is already bound.
pub async fn run(cfg: NodeConfig, listener: TcpListener, shutdown: Shutdown) -> Result<(), Error> {
    let data_dir = cfg.data_dir();
    let master = master_keys(&cfg.encryption)?;
    let tls = Tls::open(&cfg.tls, ClientAuth::Optional, "node")?;
    let store = crate::raft::groups::open_store(&data_dir, master).await?;
    let incarnation = incarnation(&data_dir)?;
    let metrics = Metrics::new();
    if let Some(t) = &tls {
        t.watch(&metrics, shutdown.clone());
    } else {
        tracing::warn!("with TLS off the node API checks no credentials: anyone who reaches this port can read and change its shards");
    }
    let store = Arc::new(store);
    let client = HttpClient::new(tls.clone(), |b| b.connect_timeout(Duration::from_secs(2)));
    let groups = Arc::new(Groups::new(
        "shard",
        cfg.node_id.clone(),
        store.clone(),
        client.clone(),
        cfg.raft,
    )?);
    let node = Arc::new(Node {
        id: cfg.node_id.clone(),
        store,
        groups,
        metrics,
        cluster_tls: tls.is_some(),
        max_value: cfg.max_value_bytes,
        registered: AtomicBool::new(false),
        incarnation,
        shutdown: shutdown.clone(),
    });
    tracing::info!(
        node = %cfg.node_id,
        listen = %listener.local_addr().map_err(Error::Serve)?,
        advertise = %cfg.advertised_url(),
        data_dir = %data_dir.display(),
        shards = node.store.shard_ids().len(),
        encrypted = node.store.encrypted(),
        "node started"
    );
    let limits = cfg.listener.limits();
    let credential = match &cfg.key_file {
        Some(path) => Some(read_secret_file("TORUA_NODE_KEY_FILE", path)?),
        None => None,
    };
    node.groups.open_existing().await.map_err(|e| {
        Error::Config(format!(
            "reopening raft groups: {} (the cause is logged above)",
            e.message
        ))
    })?;
    tokio::spawn(heartbeat(
        cfg,
        credential,
        client,
        node.clone(),
        shutdown.clone(),
    ));
    let incoming = crate::tls::incoming(listener, tls, limits).map_err(Error::Serve)?;
    edge::serve(incoming, routes::router(node), limits, shutdown.wait())
        .await
        .map_err(Error::Serve)
}

/// Registers at start and then every interval, with every coordinator
/// (each routes requests by the leaders the nodes report to it),
/// reporting held shards, so a restarted coordinator relearns the node and
/// its data.
async fn heartbeat(
    cfg: NodeConfig,
    credential: Option<secure::Secret<String>>,
    client: HttpClient,
    node: Arc<Node>,
    shutdown: Shutdown,
) {
    let mut failing = vec![false; cfg.coordinator.0.len()];
    loop {
        let body = RegisterRequest {
            node: NodeInfo {
                id: cfg.node_id.clone(),
                addr: cfg.advertised_url(),
            },
            shards: Some(node.store.shard_ids()),
            groups: node
                .groups
                .ids()
                .into_iter()
                .filter_map(|id| node.groups.get(id))
                .map(|g| g.status())
                .collect(),
            incarnation: Some(node.incarnation.clone()),
        };
        let sends = cfg.coordinator.0.iter().map(|coordinator| {
            let mut req = client
                .get()
                .post(format!("{coordinator}/register"))
                .json(&body);
            if let Some(key) = &credential {
                req = req.bearer_auth(key.expose());
            }
            req.timeout(Duration::from_secs(3)).send()
        });
        let results = futures::future::join_all(sends).await;
        let was_registered = node.registered.load(Ordering::Relaxed);
        for ((coordinator, res), failing) in cfg.coordinator.0.iter().zip(results).zip(&mut failing)
        {
            match res {
                Ok(r) if r.status().is_success() => {
                    if *failing || !was_registered {
                        tracing::info!(%coordinator, "registered with coordinator");
                    }
                    node.registered.store(true, Ordering::Relaxed);
                    *failing = false;
                }
                other => {
                    let why = match other {
                        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => format!(
                            "status {1}: the coordinator requires credentials; give this node a certificate from the cluster CA \
                             with common name node:{0} (TORUA_TLS_CERT), or an API key with the `node` role bound to it \
                             (`torua apikey create --role node --node {0}`, TORUA_NODE_KEY_FILE)",
                            cfg.node_id, r.status()
                        ),
                        // The coordinator's own sentence says what to do
                        // (a decommissioned node must rejoin under a new id).
                        Ok(r) => {
                            let status = r.status();
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            match body["error"]["message"].as_str() {
                                Some(m) => format!("status {status}: {m}"),
                                None => format!("status {status}"),
                            }
                        }
                        Err(e) => e.to_string(),
                    };
                    if !*failing {
                        tracing::warn!(%coordinator, error = %why, "cannot register with coordinator; retrying");
                    }
                    *failing = true;
                }
            }
        }
        // Retry quickly until the first registration succeeds.
        let wait = if node.registered.load(Ordering::Relaxed) {
            cfg.health_check_interval
        } else {
            cfg.health_check_interval.min(Duration::from_millis(250))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}

/// This data directory's incarnation: made with it, so a node whose
/// directory was lost or replaced registers with a new one.
fn incarnation(data_dir: &std::path::Path) -> Result<String, Error> {
    let path = data_dir.join("incarnation");
    let err = |e: std::io::Error| Error::Config(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Ok(_) => Err(err(std::io::Error::other("is empty"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = secure::token::random_uuid();
            crate::persist::replace_file(&path, format!("{id}\n").as_bytes(), false)
                .map_err(err)?;
            Ok(id)
        }
        Err(e) => Err(err(e)),
    }
}

/// The master keys from the settings; `None` when encryption is off.
fn master_keys(cfg: &EncryptionConfig) -> Result<Option<MasterKeys>, Error> {
    if !cfg.enabled {
        tracing::warn!("TORUA_ENCRYPTION=off: values are stored in plaintext on this node");
        return Ok(None);
    }
    let hex = |var: &str, text: &str| {
        secure::envelope::key_from_hex(text).map_err(|e| Error::Config(format!("{var}: {e}")))
    };
    let current = match (&cfg.master_key_file, &cfg.master_key) {
        (Some(path), None) => {
            let text = read_secret_file("TORUA_MASTER_KEY_FILE", path)?;
            hex("TORUA_MASTER_KEY_FILE", text.expose())?
        }
        (None, Some(text)) => hex("TORUA_MASTER_KEY", text)?,
        (Some(_), Some(_)) => {
            return Err(Error::Config(
                "set TORUA_MASTER_KEY_FILE or TORUA_MASTER_KEY, not both".into(),
            ))
        }
        (None, None) => {
            return Err(Error::Config(
                "TORUA_MASTER_KEY_FILE is required: it encrypts this node's data at rest. \
                 Make one with `torua keys generate-master > master.key && chmod 600 master.key`, \
                 or set TORUA_ENCRYPTION=off to store plaintext"
                    .into(),
            ))
        }
    };
    let previous = match &cfg.previous_master_key_file {
        Some(path) => {
            let text = read_secret_file("TORUA_PREVIOUS_MASTER_KEY_FILE", path)?;
            vec![hex("TORUA_PREVIOUS_MASTER_KEY_FILE", text.expose())?]
        }
        None => Vec::new(),
    };
    if cfg.migrate_plaintext {
        tracing::warn!("TORUA_MIGRATE_PLAINTEXT=on: plaintext values and log entries are sealed rather than refused; turn it off once the node has started");
    }
    Ok(Some(
        MasterKeys::new(current, &previous).migrating(cfg.migrate_plaintext),
    ))
}

/// Reads a one-line secret file named by `var`, refusing an empty one or
/// one that others may read.
pub fn read_secret_file(
    var: &str,
    path: &std::path::Path,
) -> Result<secure::Secret<String>, Error> {
    let bad = |why: String| Error::Config(format!("{var} {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| bad(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "is readable by others (mode {:o}); chmod 600 it",
                mode & 0o777
            )));
        }
    }
    let key = text.trim();
    if key.is_empty() {
        return Err(bad("is empty".into()));
    }
    Ok(secure::Secret::new(key.to_owned()))
}
