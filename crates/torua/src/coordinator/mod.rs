//! The coordinator: membership, placement and the client-facing API.
//!
//! Requests for `/data/{key}` are routed to the shard's owner (`cluster`);
//! failure detection runs in `health`; replica placement and repair in
//! `replicas` (shard moves in single-copy mode in `mover`); placement
//! decisions come from [`crate::placement`]. Metadata is persisted in
//! `meta` before it is acted on.
//!
//! Several coordinators keep the metadata in their Raft group
//! ([`crate::raft::docs`]): each serves clients and nodes from its copy
//! and proposes changes through the leader, and only the leader repairs
//! and rebalances, so they never act twice.

mod admin;
mod cluster;
mod health;
mod meta;
mod metrics;
mod mover;
pub(crate) mod node_client;
mod replicas;
mod routes;

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::Router;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use cluster::{Cluster, Health, Status};
pub use meta::{Meta, NodeMeta, ShardMeta};

use secure::tls::ClientAuth;

use crate::config::{CoordinatorConfig, Peers};
use crate::http::{ApiError, Metrics};
use crate::raft::docs::{self, Docs};
use crate::security::Security;
use crate::shutdown::Shutdown;
use crate::tls::{CertGate, HttpClient, Tls};
use crate::Error;

/// Runs the coordinator until `shutdown`; `listener` is already bound.
pub async fn run(
    cfg: CoordinatorConfig,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), Error> {
    let http_metrics = Metrics::new();
    let cluster_metrics = metrics::ClusterMetrics::default();
    if let Ok(mut reg) = http_metrics.registry.lock() {
        cluster_metrics.register(&mut reg);
    }
    // Settings are checked before anything is opened or written.
    let issuer = Security::check_settings(&cfg.security)?;
    let name = group_name(&cfg)?;
    let tls = Tls::open(&cfg.tls, ClientAuth::Optional, "coordinator")?;
    if let Some(t) = &tls {
        t.watch(&http_metrics, shutdown.clone());
    }
    let docs = match (&name, &cfg.peers) {
        (Some(me), Some(peers)) => Some(open_group(&cfg, me, peers, tls.clone()).await?),
        _ => None,
    };
    let api = Arc::new(OnceLock::<Router>::new());
    let listen = listener.local_addr().map_err(Error::Serve)?;
    let limits = cfg.listener.limits();
    let incoming = crate::tls::incoming(listener, tls.clone(), limits).map_err(Error::Serve)?;
    let senders = crate::raft::rpc::Senders::new(&http_metrics, |_| None);
    let router = outer_router(docs.clone(), tls.is_some(), api.clone(), senders);
    // Several coordinators serve at once: their group needs its peers'
    // Raft calls answered before any of them can load the metadata; until
    // this one has it, the API answers 503. A lone coordinator serves once
    // it is ready, so `/health` answering means the API does too.
    let mut pending = Some((incoming, router));
    let mut server = None;
    if docs.is_some() {
        server = pending
            .take()
            .map(|(i, r)| spawn_server(i, r, limits, &shutdown));
    }
    if let Some(d) = &docs {
        if !wait_for_quorum(d, &shutdown).await {
            return Ok(());
        }
    }
    let security = Security::open(&cfg.security, issuer, &cfg.data_dir, docs.clone()).await?;
    let cluster = cluster::open(&cfg, cluster_metrics, tls.clone(), docs.clone()).await?;
    security.warm_up();
    tracing::info!(
        %listen,
        shards = cluster.num_shards(),
        data_dir = %cfg.data_dir.display(),
        coordinators = cfg.peers.as_ref().map_or(1, |p| p.0.len()),
        "coordinator started"
    );
    tokio::spawn(health::monitor(
        cluster.clone(),
        cfg.health_check_interval,
        shutdown.clone(),
    ));
    let period = cfg.health_check_interval.max(Duration::from_millis(500));
    if cluster.replication.is_some() {
        tokio::spawn(replicas::reconciler(
            cluster.clone(),
            period,
            shutdown.clone(),
        ));
    } else {
        tokio::spawn(mover::rebalancer(cluster.clone(), period, shutdown.clone()));
    }
    let _ = api.set(routes::router(cluster, security, http_metrics));
    if let Some((i, r)) = pending.take() {
        server = Some(spawn_server(i, r, limits, &shutdown));
    }
    match server {
        Some(s) => s.join().await,
        None => Ok(()),
    }
}

/// Serves `router` until `shutdown`, in a task stopped with its handle.
fn spawn_server(
    incoming: edge::Incoming,
    router: Router,
    limits: edge::Limits,
    shutdown: &Shutdown,
) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(edge::serve(
        incoming,
        router,
        limits,
        shutdown.clone().wait(),
    )))
}

/// Stops the listener when start-up fails after it began serving.
struct AbortOnDrop(tokio::task::JoinHandle<std::io::Result<()>>);

impl AbortOnDrop {
    /// Waits for the server to stop.
    async fn join(mut self) -> Result<(), Error> {
        match (&mut self.0).await {
            Ok(res) => res.map_err(Error::Serve),
            Err(e) => Err(Error::Serve(std::io::Error::other(e))),
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// This coordinator's name among its peers, when there are several:
/// checked before anything is opened.
fn group_name(cfg: &CoordinatorConfig) -> Result<Option<String>, Error> {
    let Some(peers) = &cfg.peers else {
        return Ok(None);
    };
    let me = cfg.coordinator_id.clone().ok_or_else(|| {
        Error::Config(
            "TORUA_COORDINATOR_PEERS is set but TORUA_COORDINATOR_ID is not: name this coordinator"
                .into(),
        )
    })?;
    if !peers.0.contains_key(&me) {
        return Err(Error::Config(format!(
            "TORUA_COORDINATOR_ID `{me}` is not among TORUA_COORDINATOR_PEERS ({})",
            peers.0.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    if peers.0.len() % 2 == 0 {
        tracing::warn!(
            coordinators = peers.0.len(),
            "an even number of coordinators tolerates no more failures than one fewer"
        );
    }
    Ok(Some(me))
}

/// Opens this coordinator's replica of the coordinators' group.
async fn open_group(
    cfg: &CoordinatorConfig,
    me: &str,
    peers: &Peers,
    tls: Option<Arc<Tls>>,
) -> Result<Arc<Docs>, Error> {
    let client = HttpClient::new(tls, |b| b.connect_timeout(Duration::from_secs(2)));
    Docs::open(me, &peers.0, &cfg.data_dir.join("raft"), client, cfg.raft).await
}

/// Waits until the coordinators' group has a leader this one has caught
/// up with; false when shut down first.
async fn wait_for_quorum(docs: &Docs, shutdown: &Shutdown) -> bool {
    let mut told = false;
    loop {
        let attempt = tokio::select! {
            r = docs.catch_up() => r,
            _ = shutdown.clone().wait() => return false,
        };
        match attempt {
            Ok(()) => return true,
            Err(e) if !told => {
                told = true;
                tracing::warn!(error = %e.message, "waiting for a quorum of coordinators");
            }
            Err(_) => {}
        }
    }
}

/// What answers before the API is ready: `/health`, the coordinators'
/// Raft calls (from other coordinators only), and 503 for the rest.
/// Coordinators share one certificate identity, so their Raft messages are
/// checked against the group's membership only (`senders`).
fn outer_router(
    docs: Option<Arc<Docs>>,
    tls: bool,
    api: Arc<OnceLock<Router>>,
    senders: crate::raft::rpc::Senders,
) -> Router {
    let mut r = Router::new().route(
        "/health",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );
    if let Some(d) = docs {
        r = r.merge(
            crate::raft::rpc::router(d.groups(), docs::MAX_DOC, senders)
                .merge(docs::router(d))
                .route_layer(axum::middleware::from_fn_with_state(
                    CertGate::coordinators(tls, "coordinators' Raft API"),
                    crate::tls::require_cert,
                )),
        );
    }
    r.fallback_service(tower::service_fn(move |req: Request| {
        let api = api.get().cloned();
        async move {
            Ok::<_, Infallible>(match api {
                Some(router) => router.oneshot(req).await.into_response(),
                None => ApiError::unavailable(
                    "starting",
                    "the coordinator is starting (waiting for a quorum of coordinators); retry shortly",
                )
                .into_response(),
            })
        }
    }))
}
