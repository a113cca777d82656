//! Moving shards: the rebalancer loop, one shard move with its data, and
//! cleanup of copies left behind. See `cluster.rs` for the gate protocol.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::cluster::{Cluster, Status};
use crate::http::ApiError;
use crate::placement::{plan, ShardView, Step};
use crate::shutdown::Shutdown;
use crate::wire::NodeInfo;

/// Runs until shutdown: on every wake-up (membership or health change) and
/// periodically, deletes leftover copies and executes a balancing plan.
pub(crate) async fn rebalancer(cluster: Arc<Cluster>, period: Duration, shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = cluster.wake.notified() => {}
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.clone().wait() => return,
        }
        drop_leftovers(&cluster).await;
        loop {
            if shutdown.is_triggered() {
                return;
            }
            match rebalance_once(&cluster).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "rebalancing step failed; will retry");
                    break;
                }
            }
        }
        super::health::publish(&cluster);
    }
}

/// Plans and executes one step; returns how many steps were pending.
async fn rebalance_once(cluster: &Cluster) -> Result<usize, ApiError> {
    let _one = cluster.moves.lock().await;
    let meta = cluster.snapshot()?;
    let eligible = cluster.eligible(&meta);
    let draining: BTreeSet<String> = meta
        .nodes
        .iter()
        .filter(|(_, n)| n.draining)
        .map(|(id, _)| id.clone())
        .collect();
    let views: Vec<ShardView> = meta
        .shards
        .iter()
        .enumerate()
        .map(|(id, s)| ShardView {
            id: id as u32,
            owner: s.owner.clone(),
        })
        .collect();
    let steps = plan(&views, &eligible, &draining, &meta.pinned);
    // Skip moves whose source cannot serve a copy right now, and empty
    // assignments while other nodes may still report what they hold.
    let relearning = cluster.is_relearning();
    let runnable = steps.into_iter().find(|s| match s {
        Step::Assign { .. } => !relearning,
        Step::Move { from, .. } => cluster.status_of(from) == Status::Healthy,
    });
    let Some(step) = runnable else { return Ok(0) };
    match step {
        Step::Assign { shard, to } => assign_empty(cluster, shard, &to).await?,
        Step::Move { shard, from, to } => move_shard(cluster, shard, &from, &to).await?,
    }
    Ok(1)
}

/// Gives an unowned shard to `to`. There is no data to copy: an unowned
/// shard has never been written, or its node was removed with `force`.
pub(crate) async fn assign_empty(cluster: &Cluster, shard: u32, to: &str) -> Result<(), ApiError> {
    let addr = node_addr(cluster, to)?;
    cluster
        .nodes
        .open_shard(&addr, shard, "active", false)
        .await
        .map_err(|e| e.into_api(to, shard))?;
    let gate = &cluster.gates[shard as usize];
    let _excl = gate.rw.write().await;
    cluster
        .update(|m| {
            let s = &mut m.shards[shard as usize];
            if s.owner.is_none() {
                s.owner = Some(to.to_owned());
            }
            Ok(())
        })
        .await?;
    tracing::info!(shard, node = %to, "shard assigned");
    Ok(())
}

fn node_addr(cluster: &Cluster, id: &str) -> Result<NodeInfo, ApiError> {
    cluster.snapshot()?.node_info(id).ok_or_else(|| {
        ApiError::bad_request("unknown_node", format!("node {id} is not registered"))
    })
}

/// Moves `shard` from `from` to `to` with its data: open an empty copy on
/// `to`, mirror writes, copy pages, switch the owner, delete the old copy.
/// Callers hold `cluster.moves`.
pub(crate) async fn move_shard(
    cluster: &Cluster,
    shard: u32,
    from: &str,
    to: &str,
) -> Result<(), ApiError> {
    let started = std::time::Instant::now();
    let from_addr = node_addr(cluster, from)?;
    let to_addr = node_addr(cluster, to)?;
    let gate = &cluster.gates[shard as usize];
    // `reset` discards a stale copy left on `to` by an earlier aborted move.
    cluster
        .nodes
        .open_shard(&to_addr, shard, "receiving", true)
        .await
        .map_err(|e| e.into_api(to, shard))?;
    {
        let _excl = gate.rw.write().await;
        gate.poisoned.store(false, Ordering::SeqCst);
        cluster
            .update(|m| {
                let s = &mut m.shards[shard as usize];
                if s.owner.as_deref() != Some(from) || s.moving_to.is_some() {
                    return Err(ApiError::new(
                        axum::http::StatusCode::CONFLICT,
                        "placement_changed",
                        format!("shard {shard} is no longer on {from} or is already moving"),
                    ));
                }
                s.moving_to = Some(to.to_owned());
                m.pending_drops.remove(&(to.to_owned(), shard));
                Ok(())
            })
            .await?;
    }
    tracing::info!(shard, from, to, "shard move started");
    let copied = copy_pages(cluster, shard, from, &from_addr, to, &to_addr).await;
    let result = match copied {
        Ok(n) => finish_move(cluster, shard, from, to, &to_addr)
            .await
            .map(|()| n),
        Err(e) => Err(e),
    };
    match result {
        Ok(keys) => {
            cluster.metrics.moved("ok");
            tracing::info!(
                shard,
                from,
                to,
                keys,
                ms = started.elapsed().as_millis() as u64,
                "shard moved"
            );
            if let Err(e) = cluster.nodes.drop_shard(&from_addr, shard).await {
                tracing::warn!(shard, node = from, error = %e, "old copy not deleted yet; will retry");
            } else {
                cluster
                    .update(|m| Ok(m.pending_drops.remove(&(from.to_owned(), shard))))
                    .await?;
            }
            Ok(())
        }
        Err(e) => {
            cluster.metrics.moved("aborted");
            tracing::warn!(shard, from, to, error = %e, "shard move aborted; the shard stays where it was");
            let _excl = gate.rw.write().await;
            cluster
                .update(|m| {
                    m.shards[shard as usize].moving_to = None;
                    m.pending_drops.insert((to.to_owned(), shard));
                    Ok(())
                })
                .await?;
            Err(e)
        }
    }
}

async fn copy_pages(
    cluster: &Cluster,
    shard: u32,
    from: &str,
    from_addr: &NodeInfo,
    to: &str,
    to_addr: &NodeInfo,
) -> Result<u64, ApiError> {
    let gate = &cluster.gates[shard as usize];
    let mut after: Option<String> = None;
    let mut copied = 0u64;
    loop {
        let _serial = gate.copy.lock().await;
        if gate.poisoned.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable(
                "move_aborted",
                format!("a write to node {to} failed during the move"),
            ));
        }
        let page = cluster
            .nodes
            .export(from_addr, shard, after.as_deref())
            .await
            .map_err(|e| e.into_api(from, shard))?;
        let Some((last, _)) = page.last() else {
            return Ok(copied);
        };
        let last = last.clone();
        cluster
            .nodes
            .import(to_addr, shard, &page)
            .await
            .map_err(|e| e.into_api(to, shard))?;
        copied += page.len() as u64;
        after = Some(last);
    }
}

async fn finish_move(
    cluster: &Cluster,
    shard: u32,
    from: &str,
    to: &str,
    to_addr: &NodeInfo,
) -> Result<(), ApiError> {
    let gate = &cluster.gates[shard as usize];
    let _excl = gate.rw.write().await;
    if gate.poisoned.load(Ordering::SeqCst) {
        return Err(ApiError::unavailable(
            "move_aborted",
            format!("a write to node {to} failed during the move"),
        ));
    }
    cluster
        .nodes
        .open_shard(to_addr, shard, "active", false)
        .await
        .map_err(|e| e.into_api(to, shard))?;
    cluster
        .update(|m| {
            let s = &mut m.shards[shard as usize];
            s.owner = Some(to.to_owned());
            s.moving_to = None;
            m.pending_drops.insert((from.to_owned(), shard));
            Ok(())
        })
        .await
}

/// Deletes copies that moves left behind, where their node is reachable.
/// A copy is never deleted from the shard's current owner or move target.
pub(crate) async fn drop_leftovers(cluster: &Cluster) {
    let Ok(meta) = cluster.snapshot() else { return };
    for (node, shard) in &meta.pending_drops {
        let s = &meta.shards[*shard as usize];
        let in_use = s.owner.as_ref() == Some(node) || s.moving_to.as_ref() == Some(node);
        let gone = !meta.nodes.contains_key(node);
        if !in_use && !gone {
            let Some(addr) = meta.node_info(node) else {
                continue;
            };
            if cluster.status_of(node) == Status::Unhealthy {
                continue;
            }
            if let Err(e) = cluster.nodes.drop_shard(&addr, *shard).await {
                tracing::debug!(node = %node, shard, error = %e, "leftover copy not deleted yet");
                continue;
            }
            tracing::info!(node = %node, shard, "leftover copy deleted");
        }
        let key = (node.clone(), *shard);
        let _ = cluster.update(|m| Ok(m.pending_drops.remove(&key))).await;
    }
}
