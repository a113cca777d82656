//! The coordinator: membership, placement and the client-facing API.
//!
//! Requests for `/data/{key}` are routed to the shard's owner (`cluster`);
//! failure detection runs in `health`; shard moves and rebalancing in
//! `mover`; placement decisions come from [`crate::placement`]. Metadata is
//! persisted in `meta` before it is acted on.

mod admin;
mod cluster;
mod health;
mod meta;
mod metrics;
mod mover;
pub(crate) mod node_client;
mod replicas;
mod routes;

use std::time::Duration;

use tokio::net::TcpListener;

pub use cluster::{Cluster, Health, Status};
pub use meta::{Meta, NodeMeta, ShardMeta};

use secure::tls::ClientAuth;

use crate::config::CoordinatorConfig;
use crate::http::Metrics;
use crate::shutdown::Shutdown;
use crate::tls::{Incoming, Tls};
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
    let security = crate::security::Security::open(&cfg.security, &cfg.data_dir)?;
    let tls = Tls::open(&cfg.tls, ClientAuth::Optional, "coordinator")?;
    if let Some(t) = &tls {
        t.watch(&http_metrics, shutdown.clone());
    }
    let cluster = cluster::open(&cfg, cluster_metrics, tls.clone())?;
    security.warm_up();
    tracing::info!(
        listen = %listener.local_addr().map_err(Error::Serve)?,
        shards = cluster.num_shards(),
        data_dir = %cfg.data_dir.display(),
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
    crate::http::serve(
        Incoming::new(listener, tls).map_err(Error::Serve)?,
        routes::router(cluster, security, http_metrics),
        shutdown.wait(),
    )
    .await
    .map_err(Error::Serve)
}
