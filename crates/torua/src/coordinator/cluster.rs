//! The coordinator's view of the cluster and the data path through it.
//!
//! # Moves and the per-shard gate
//! While shard `s` moves from A to B, every write goes to A and then B, and
//! the copy reads pages from A and writes them to B. Three rules keep B equal
//! to A without losing or resurrecting anything:
//! 1. Every write to `s` holds `gate.rw` shared; starting and finishing a move
//!    take it exclusively, so no write straddles a change of route.
//! 2. During a move, writes and copy pages hold `gate.copy`, so each page is
//!    read from A and written to B with no write in between.
//! 3. If a write reaches A but not B, the move is `poisoned` and aborted: A
//!    stays the owner, the client's acknowledged write is safe there.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::Notify;
use torua_store::{Expect, Record};

use super::meta::Meta;
use super::metrics::ClusterMetrics;
use super::node_client::NodeClient;
use crate::http::ApiError;
use crate::persist::Persisted;
use crate::placement::shard_for_key;
use crate::stream::Precondition;
use crate::wire::{KeyPage, NodeInfo};
use crate::Error;

/// Health as shown in `/nodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not checked since the coordinator started.
    Unknown,
    /// Answered the last check.
    Healthy,
    /// Failed the configured number of checks in a row.
    Unhealthy,
}

impl Status {
    /// Name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// Runtime health of one node.
#[derive(Debug, Clone)]
pub struct Health {
    /// Current status.
    pub status: Status,
    /// When the last check finished.
    pub last_check: Option<SystemTime>,
    /// Consecutive failures.
    pub failures: u32,
    /// When it last became unhealthy (cleared by a success).
    pub unhealthy_since: Option<std::time::Instant>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            status: Status::Unknown,
            last_check: None,
            failures: 0,
            unhealthy_since: None,
        }
    }
}

#[derive(Default)]
pub(crate) struct Gate {
    pub rw: tokio::sync::RwLock<()>,
    pub copy: tokio::sync::Mutex<()>,
    pub poisoned: AtomicBool,
}

/// Where requests for a shard go.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub owner: NodeInfo,
    pub target: Option<NodeInfo>,
}

/// Shared coordinator state.
pub struct Cluster {
    pub(super) meta: Persisted<Meta>,
    /// The coordinators' group, when there are several coordinators.
    pub(crate) docs: Option<Arc<crate::raft::docs::Docs>>,
    health: RwLock<HashMap<String, Health>>,
    pub(crate) gates: Vec<Gate>,
    pub(crate) nodes: NodeClient,
    /// Wakes the rebalancer.
    pub(crate) wake: Notify,
    /// One move at a time (rebalancer and manual assignment alike).
    pub(crate) moves: tokio::sync::Mutex<()>,
    pub(crate) metrics: ClusterMetrics,
    pub(crate) max_value: usize,
    pub(crate) failure_threshold: u32,
    /// Replicated shards (Raft groups): placement, leaders, reports.
    pub(crate) replication: Option<super::replicas::Replication>,
    /// Set when a node reported shards this coordinator did not know it
    /// held (it lost its metadata): until then, unowned shards are not
    /// given out empty, so the other nodes have time to report theirs.
    pub(crate) relearning_until: Mutex<Option<std::time::Instant>>,
}

impl Cluster {
    pub(crate) fn new(
        meta: Persisted<Meta>,
        nodes: NodeClient,
        metrics: ClusterMetrics,
        max_value: usize,
        failure_threshold: u32,
        replication: Option<super::replicas::Replication>,
        docs: Option<Arc<crate::raft::docs::Docs>>,
    ) -> Self {
        let gates = (0..meta.read(|m| m.num_shards).unwrap_or(0))
            .map(|_| Gate::default())
            .collect();
        Cluster {
            meta,
            docs,
            health: RwLock::new(HashMap::new()),
            gates,
            nodes,
            wake: Notify::new(),
            moves: tokio::sync::Mutex::new(()),
            metrics,
            max_value,
            failure_threshold,
            replication,
            relearning_until: Mutex::new(None),
        }
    }

    /// Whether this coordinator acts on the cluster (health-driven repairs,
    /// rebalancing): a lone coordinator always, one of several while it
    /// leads their group, so two never act at once.
    pub fn leads(&self) -> bool {
        self.docs.as_ref().is_none_or(|d| d.leads())
    }

    /// A copy of the metadata.
    pub fn snapshot(&self) -> Result<Meta, ApiError> {
        self.meta.snapshot()
    }

    /// Number of shards.
    pub fn num_shards(&self) -> u32 {
        self.gates.len() as u32
    }

    /// Applies `f` to a copy of the metadata, persists the copy, then
    /// publishes it: readers never see state that is not on disk.
    pub(crate) async fn update<T>(
        &self,
        f: impl FnMut(&mut Meta) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.meta.update(f).await
    }

    /// Marks `shard` placed by hand: rebalancing leaves it where it is.
    pub(crate) async fn pin(&self, shard: u32) -> Result<(), ApiError> {
        self.update(|m| {
            m.pinned.insert(shard);
            Ok(())
        })
        .await
    }

    /// Health of every known node.
    pub fn health(&self) -> HashMap<String, Health> {
        self.health.read().map(|h| h.clone()).unwrap_or_default()
    }

    pub(crate) fn status_of(&self, node: &str) -> Status {
        self.health
            .read()
            .ok()
            .and_then(|h| h.get(node).map(|x| x.status))
            .unwrap_or(Status::Unknown)
    }

    /// Records a health observation; returns the status before and after.
    pub(crate) fn observe(&self, node: &str, ok: bool) -> (Status, Status) {
        let Ok(mut h) = self.health.write() else {
            return (Status::Unknown, Status::Unknown);
        };
        let e = h.entry(node.to_owned()).or_default();
        let before = e.status;
        e.last_check = Some(SystemTime::now());
        if ok {
            e.failures = 0;
            e.status = Status::Healthy;
            e.unhealthy_since = None;
        } else {
            e.failures = e.failures.saturating_add(1);
            if e.failures >= self.failure_threshold {
                e.status = Status::Unhealthy;
                e.unhealthy_since
                    .get_or_insert_with(std::time::Instant::now);
            }
        }
        (before, e.status)
    }

    pub(crate) fn forget_health(&self, node: &str) {
        if let Ok(mut h) = self.health.write() {
            h.remove(node);
        }
    }

    /// Holds back empty assignments for `grace` from now (see
    /// `relearning_until`).
    pub(crate) fn relearning(&self, grace: std::time::Duration) {
        if let Ok(mut until) = self.relearning_until.lock() {
            *until = Some(std::time::Instant::now() + grace);
        }
    }

    /// Whether empty assignments are held back.
    pub(crate) fn is_relearning(&self) -> bool {
        self.relearning_until
            .lock()
            .map(|u| u.is_some_and(|t| std::time::Instant::now() < t))
            .unwrap_or(false)
    }

    /// Nodes that may receive shards: healthy and not draining.
    pub(crate) fn eligible(&self, meta: &Meta) -> BTreeSet<String> {
        meta.nodes
            .iter()
            .filter(|(id, n)| !n.draining && self.status_of(id) == Status::Healthy)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Ids of the shards `pick` selects.
    pub(crate) fn shards_where(
        &self,
        pick: impl Fn(&super::meta::ShardMeta) -> bool,
    ) -> Result<Vec<u32>, ApiError> {
        self.meta.read(|m| {
            m.shards
                .iter()
                .enumerate()
                .filter(|(_, s)| pick(s))
                .map(|(i, _)| i as u32)
                .collect()
        })
    }

    /// Shards whose owner is missing or not healthy.
    pub fn shards_without_live_owner(&self) -> Result<Vec<u32>, ApiError> {
        if self.replication.is_some() {
            return self.shards_without_quorum();
        }
        self.shards_where(|s| {
            s.owner
                .as_deref()
                .is_none_or(|o| self.status_of(o) != Status::Healthy)
        })
    }

    pub(crate) fn route(&self, shard: u32) -> Result<Route, ApiError> {
        self.meta.read(|meta| self.route_in(meta, shard))?
    }

    fn route_in(&self, meta: &Meta, shard: u32) -> Result<Route, ApiError> {
        let s = meta.shards.get(shard as usize).ok_or_else(|| {
            ApiError::bad_request("invalid_shard_id", format!("shard {shard} does not exist"))
        })?;
        let Some(owner) = s.owner.clone() else {
            return Err(ApiError::unavailable(
                "shard_unassigned",
                format!("shard {shard} has no node yet; start and register a node"),
            ));
        };
        if self.status_of(&owner) == Status::Unhealthy {
            return Err(ApiError::unavailable(
                "node_unavailable",
                format!("shard {shard} is on node {owner}, which is unhealthy"),
            ));
        }
        let info = |id: &str| {
            meta.node_info(id).unwrap_or_else(|| NodeInfo {
                id: id.to_owned(),
                addr: String::new(),
            })
        };
        Ok(Route {
            owner: info(&owner),
            target: s.moving_to.as_deref().map(info),
        })
    }

    fn shard_of(&self, key: &str) -> u32 {
        shard_for_key(key, self.num_shards())
    }

    /// Reads a key from its owner (or, replicated, its group's leader;
    /// any replica with `stale`). Retries once if the shard moved meanwhile.
    pub async fn get(&self, key: &str, stale: bool) -> Result<Option<Record>, ApiError> {
        let shard = self.shard_of(key);
        if self.replication.is_some() {
            return self
                .on_replicas(shard, stale, |node| async move {
                    self.nodes.get(&node, shard, key, stale).await
                })
                .await;
        }
        let mut retried = false;
        loop {
            let r = self.route(shard)?;
            match self.nodes.get(&r.owner, shard, key, false).await {
                Err(e) if e.is_not_owned() && !retried => retried = true,
                other => return other.map_err(|e| e.into_api(&r.owner.id, shard)),
            }
        }
    }

    /// Writes (`Some(value)`) or deletes (`None`) a key if `expect` holds;
    /// returns once the owner made it durable, with the version a write
    /// took. During a move the target mirrors the owner's write with the
    /// owner's version, so versions survive the move.
    pub async fn write(
        &self,
        key: &str,
        value: Option<(&str, Bytes)>,
        expect: Expect,
    ) -> Result<Option<u64>, ApiError> {
        let shard = self.shard_of(key);
        if self.replication.is_some() {
            return self
                .on_replicas(shard, false, |node| {
                    let value = value.clone();
                    async move {
                        match value {
                            Some((ct, v)) => self
                                .nodes
                                .put(&node, shard, key, ct, v, expect.into())
                                .await
                                .map(Some),
                            None => self
                                .nodes
                                .delete(&node, shard, key, expect)
                                .await
                                .map(|()| None),
                        }
                    }
                })
                .await;
        }
        let gate = &self.gates[shard as usize];
        let _shared = gate.rw.read().await;
        let r = self.route(shard)?;
        let Some(target) = &r.target else {
            return self
                .write_to(&r.owner, shard, key, value, expect.into())
                .await;
        };
        let _serial = gate.copy.lock().await;
        let version = self
            .write_to(&r.owner, shard, key, value.clone(), expect.into())
            .await?;
        // The target stores the owner's version as it is.
        let mirror = version.map_or(Precondition::Any, Precondition::Keep);
        if let Err(e) = self.write_to(target, shard, key, value, mirror).await {
            // The owner has the write; the copy does not. Abort the move.
            tracing::warn!(shard, target = %target.id, error = %e, "write to move target failed; aborting move");
            gate.poisoned.store(true, Ordering::SeqCst);
        }
        Ok(version)
    }

    async fn write_to(
        &self,
        node: &NodeInfo,
        shard: u32,
        key: &str,
        value: Option<(&str, Bytes)>,
        when: Precondition,
    ) -> Result<Option<u64>, ApiError> {
        let res = match value {
            Some((ct, v)) => self
                .nodes
                .put(node, shard, key, ct, v, when)
                .await
                .map(Some),
            // A delete mirrored to a move target keeps no version: it
            // deletes unconditionally.
            None => self
                .nodes
                .delete(node, shard, key, when.split().1)
                .await
                .map(|()| None),
        };
        res.map_err(|e| e.into_api(&node.id, shard))
    }

    /// Keys across all shards in order: each shard's first `limit` keys
    /// after `after` are merged, so the first `limit` of the merge are the
    /// first `limit` overall.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<KeyPage, ApiError> {
        use futures::stream::{self, StreamExt, TryStreamExt};
        let pages: Vec<KeyPage> = stream::iter(0..self.num_shards())
            .map(|shard| async move {
                if self.replication.is_some() {
                    return self
                        .on_replicas(shard, false, |node| async move {
                            self.nodes.list(&node, shard, prefix, after, limit).await
                        })
                        .await;
                }
                let r = self.route(shard)?;
                self.nodes
                    .list(&r.owner, shard, prefix, after, limit)
                    .await
                    .map_err(|e| e.into_api(&r.owner.id, shard))
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
        Ok(merge_pages(pages, limit))
    }
}

/// Merges pages of disjoint key sets, each holding its first `limit` keys
/// after the same cursor: the first `limit` keys of the merge are the first
/// `limit` overall, and another page exists if any input had more.
pub(crate) fn merge_pages(pages: Vec<KeyPage>, limit: usize) -> KeyPage {
    let more = pages.iter().any(|p| p.next_after.is_some());
    let mut keys: Vec<String> = pages.into_iter().flat_map(|p| p.keys).collect();
    keys.sort_unstable();
    let next_after = if keys.len() > limit || more {
        keys.truncate(limit);
        keys.last().cloned()
    } else {
        None
    };
    KeyPage { keys, next_after }
}

/// Builds the cluster state: from the data directory, or from the
/// coordinators' group when there is one.
pub(crate) async fn open(
    cfg: &crate::config::CoordinatorConfig,
    metrics: ClusterMetrics,
    tls: Option<Arc<crate::tls::Tls>>,
    docs: Option<Arc<crate::raft::docs::Docs>>,
) -> Result<Arc<Cluster>, Error> {
    let meta = match &docs {
        Some(d) => {
            super::meta::load_replicated(
                d.clone(),
                &cfg.data_dir,
                cfg.shards,
                cfg.replication_factor,
            )
            .await?
        }
        None => super::meta::load_or_create(&cfg.data_dir, cfg.shards, cfg.replication_factor)?,
    };
    let nodes = NodeClient::new(std::time::Duration::from_secs(30), tls, cfg.max_value_bytes);
    let replication = meta
        .read(|m| m.replication)
        .map_err(|e| Error::Config(e.to_string()))?
        .map(|_| super::replicas::Replication::new(cfg.replica_timeout, cfg.health_check_interval));
    Ok(Arc::new(Cluster::new(
        meta,
        nodes,
        metrics,
        cfg.max_value_bytes,
        cfg.health_failures,
        replication,
        docs,
    )))
}
