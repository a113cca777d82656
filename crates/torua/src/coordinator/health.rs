//! Failure detection: every node is polled in parallel, each poll bounded
//! by a timeout, so one slow node never delays the verdict on the others.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::cluster::{Cluster, Status};
use super::metrics::StatusLabel;
use crate::shutdown::Shutdown;

pub(crate) async fn monitor(cluster: Arc<Cluster>, interval: Duration, shutdown: Shutdown) {
    // Refused connections fail at once; the timeout only bounds a hung node,
    // so it is generous enough not to misjudge a busy one.
    let timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(2));
    loop {
        check_all(&cluster, timeout).await;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}

async fn check_all(cluster: &Cluster, timeout: Duration) {
    let Ok(meta) = cluster.snapshot() else { return };
    let checks = meta
        .nodes
        .keys()
        .filter_map(|id| meta.node_info(id))
        .map(|n| async move {
            let ok = cluster.nodes.health(&n, timeout).await.is_ok();
            (n.id, ok)
        });
    let mut woke = false;
    for (id, ok) in join_all(checks).await {
        let (before, after) = cluster.observe(&id, ok);
        if before != after {
            match after {
                Status::Unhealthy => tracing::warn!(node = %id, "node is unhealthy"),
                Status::Healthy => tracing::info!(node = %id, "node is healthy"),
                Status::Unknown => {}
            }
            woke = true;
        }
    }
    if woke {
        cluster.wake.notify_one();
    }
    publish(cluster);
}

/// Refreshes the cluster gauges.
pub(crate) fn publish(cluster: &Cluster) {
    let health = cluster.health();
    let Ok(meta) = cluster.snapshot() else { return };
    for st in [Status::Healthy, Status::Unhealthy, Status::Unknown] {
        let n = meta
            .nodes
            .keys()
            .filter(|id| health.get(*id).map_or(Status::Unknown, |h| h.status) == st)
            .count();
        cluster
            .metrics
            .nodes
            .get_or_create(&StatusLabel {
                status: st.as_str().into(),
            })
            .set(n as i64);
    }
    if let Ok(s) = cluster.shards_without_live_owner() {
        cluster
            .metrics
            .shards_without_live_owner
            .set(s.len() as i64);
    }
}
