//! Replicated shards: where each shard's Raft group lives, which replica
//! leads it, and the data path to it.
//!
//! The coordinator decides membership; the groups decide leadership. The
//! reconciler (one pass per interval or wake-up) gives each shard up to
//! `factor` replicas on healthy nodes, bootstraps new groups, re-opens a
//! replica a node lost, and replaces replicas whose node has been unhealthy
//! for longer than the replica timeout (or is draining or removed): the
//! leader adds the new node as a learner, which catches up by snapshot and
//! log, and then switches the voters (one change per pass). Requests go to
//! the leader the nodes last reported; a replica that does not lead answers
//! 421 naming the leader, and the request follows it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::cluster::{Cluster, Status};
use super::meta::Meta;
use super::node_client::CallError;
use crate::http::ApiError;
use crate::shutdown::Shutdown;
use crate::wire::{GroupRequest, GroupStatus, NodeInfo};

/// How long a request keeps looking for a shard's leader (an election
/// takes about one election timeout).
const FIND_LEADER_FOR: Duration = Duration::from_secs(8);

/// Runtime state of replication on the coordinator.
pub(crate) struct Replication {
    timeout: Duration,
    /// How long reports may lag (the nodes' heartbeat interval).
    report_interval: Duration,
    /// When leadership was last moved.
    last_leader_move: std::sync::Mutex<Option<Instant>>,
    /// Leader of each shard, as last reported or learned from a 421.
    leaders: RwLock<HashMap<u32, String>>,
    /// Each node's last report of the groups it hosts.
    reports: RwLock<HashMap<String, Vec<GroupStatus>>>,
}

impl Replication {
    pub(crate) fn new(timeout: Duration, report_interval: Duration) -> Replication {
        Replication {
            timeout,
            report_interval,
            last_leader_move: Default::default(),
            leaders: RwLock::default(),
            reports: RwLock::default(),
        }
    }

    /// Records a node's heartbeat report; a replica that leads becomes the
    /// shard's known leader, if `member(shard)` says the node is one of the
    /// group's replicas (a node cannot draw another group's traffic).
    pub(crate) fn report(
        &self,
        node: &str,
        groups: Vec<GroupStatus>,
        member: impl Fn(u32) -> bool,
    ) {
        {
            let mut leaders = self.leaders.write().unwrap_or_else(|p| p.into_inner());
            for g in groups.iter().filter(|g| g.role == "leader") {
                if member(g.shard) {
                    leaders.insert(g.shard, node.to_owned());
                } else {
                    tracing::warn!(
                        node,
                        shard = g.shard,
                        "ignored a claim to lead a group the node is not a replica of"
                    );
                }
            }
        }
        self.reports
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_owned(), groups);
    }

    fn note_leader(&self, shard: u32, node: &str) {
        let mut leaders = self.leaders.write().unwrap_or_else(|p| p.into_inner());
        if leaders.get(&shard).map(String::as_str) != Some(node) {
            leaders.insert(shard, node.to_owned());
        }
    }

    fn leader(&self, shard: u32) -> Option<String> {
        self.leaders
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&shard)
            .cloned()
    }

    /// Every node's view of `shard`'s group.
    pub(crate) fn views(&self, shard: u32) -> Vec<(String, GroupStatus)> {
        let reports = self.reports.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(String, GroupStatus)> = reports
            .iter()
            .filter_map(|(n, gs)| {
                gs.iter()
                    .find(|g| g.shard == shard)
                    .map(|g| (n.clone(), g.clone()))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn hosts(&self, node: &str, shard: u32) -> bool {
        self.reports
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .is_some_and(|gs| gs.iter().any(|g| g.shard == shard))
    }

    /// The leader as `/shards` shows it.
    pub(crate) fn shown_leader(&self, shard: u32) -> Option<String> {
        self.leader(shard)
    }
}

fn members(meta: &Meta, nodes: &[String]) -> Vec<NodeInfo> {
    nodes.iter().map(|n| node_info(meta, n)).collect()
}

impl Cluster {
    fn repl(&self) -> Result<&Replication, ApiError> {
        self.replication
            .as_ref()
            .ok_or_else(|| ApiError::internal("replicated path on an unreplicated cluster"))
    }

    /// Shards that cannot serve: no replicas yet, or fewer healthy
    /// replicas than a quorum of their group.
    pub(crate) fn shards_without_quorum(&self) -> Result<Vec<u32>, ApiError> {
        self.shards_where(|s| {
            let healthy = s
                .replicas
                .iter()
                .filter(|n| self.status_of(n) == Status::Healthy)
                .count();
            s.replicas.is_empty() || healthy <= s.replicas.len() / 2
        })
    }

    /// Replicas per shard (the metadata's: another coordinator may change it).
    pub(crate) fn factor(&self) -> Result<u32, ApiError> {
        self.meta
            .read(|m| m.replication)?
            .ok_or_else(|| ApiError::internal("replicated path on an unreplicated cluster"))
    }

    /// Shards with fewer replicas than the replication factor.
    pub(crate) fn under_replicated(&self) -> Result<Vec<u32>, ApiError> {
        let factor = self.factor()? as usize;
        self.shards_where(|s| s.replicas.len() < factor)
    }

    /// Runs `call` against the shard's leader (any replica with `any`),
    /// following 421 answers and moving past replicas that are down, until
    /// one answers or [`FIND_LEADER_FOR`] passes. A call whose outcome is
    /// unknown (sent, no answer) is never retried elsewhere.
    pub(crate) async fn on_replicas<T, F, Fut>(
        &self,
        shard: u32,
        any: bool,
        call: F,
    ) -> Result<T, ApiError>
    where
        F: Fn(NodeInfo) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let repl = self.repl()?;
        let meta = self.snapshot()?;
        let s = meta.shards.get(shard as usize).ok_or_else(|| {
            ApiError::bad_request("invalid_shard_id", format!("shard {shard} does not exist"))
        })?;
        if s.replicas.is_empty() {
            return Err(ApiError::unavailable(
                "shard_unassigned",
                format!("shard {shard} has no replicas yet; start and register a node"),
            ));
        }
        // Candidates: the known leader first (unless any replica will do),
        // then healthy replicas, then the rest.
        let mut order: Vec<String> = s.replicas.clone();
        order.sort_by_key(|n| self.status_of(n) != Status::Healthy);
        // Only a member of the group is ever called, whoever claimed to lead it.
        if let Some(l) = repl
            .leader(shard)
            .filter(|l| !any && s.replicas.contains(l))
        {
            order.retain(|n| *n != l);
            order.insert(0, l);
        }
        let known_addr = |n: &str| meta.node_info(n);
        let deadline = Instant::now() + FIND_LEADER_FOR;
        let mut next = 0usize;
        let mut pause = Duration::from_millis(50);
        loop {
            let node = order[next % order.len()].clone();
            let Some(addr) = known_addr(&node) else {
                next += 1;
                continue;
            };
            let err = match call(addr).await {
                Ok(v) => {
                    if !any {
                        repl.note_leader(shard, &node);
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            if !err.try_elsewhere() || Instant::now() >= deadline {
                return Err(err.into_api(&node, shard));
            }
            let hinted = match &err {
                CallError::Status {
                    leader: Some(l), ..
                } if *l != node => Some(l.clone()),
                _ => None,
            };
            match hinted.and_then(|l| order.iter().position(|n| *n == l)) {
                Some(i) => next = i,
                None => {
                    next += 1;
                    // Every replica tried: an election is under way.
                    if next.is_multiple_of(order.len()) {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                }
            }
        }
    }
}

/// Keeps every shard's group at the replication factor, one change at a
/// time.
pub(crate) async fn reconciler(cluster: Arc<Cluster>, period: Duration, shutdown: Shutdown) {
    loop {
        // Of several coordinators only the leader acts, on metadata it has
        // confirmed is current.
        let pass = async {
            let acting = cluster.leads();
            cluster.metrics.acting.set(i64::from(acting));
            if !acting {
                return Ok(false);
            }
            cluster.meta.refresh().await?;
            reconcile(&cluster).await
        };
        let changed = match pass.await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(error = %e, "replica reconciliation failed; will retry");
                false
            }
        };
        super::health::publish(&cluster);
        if changed && !shutdown.is_triggered() {
            continue; // more may be pending: one change per pass
        }
        tokio::select! {
            _ = cluster.wake.notified() => {}
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.clone().wait() => return,
        }
    }
}

/// Healthy nodes that may take replicas, by how many they hold (fewest
/// first, then by name).
fn by_load(cluster: &Cluster, meta: &Meta) -> Vec<String> {
    loads(cluster, meta).into_iter().map(|(n, _)| n).collect()
}

/// Healthy nodes that may take replicas with how many they hold, fewest
/// first (then by name).
fn loads(cluster: &Cluster, meta: &Meta) -> Vec<(String, usize)> {
    let mut load: BTreeMap<String, usize> =
        cluster.eligible(meta).into_iter().map(|n| (n, 0)).collect();
    for s in &meta.shards {
        for r in &s.replicas {
            if let Some(c) = load.get_mut(r) {
                *c += 1;
            }
        }
    }
    let mut nodes: Vec<(String, usize)> = load.into_iter().collect();
    nodes.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    nodes
}

/// Node `n` with its address, as registered (none: calls fail as not sent).
fn node_info(meta: &Meta, n: &str) -> NodeInfo {
    meta.node_info(n).unwrap_or_else(|| NodeInfo {
        id: n.to_owned(),
        addr: String::new(),
    })
}

/// One step towards leaders spread evenly over the nodes, once every node
/// is healthy and every group settled: when one node leads two shards more
/// than another, it hands one of them over to a follower that leads fewer
/// (Raft's leadership transfer: the leader stops taking requests, waits
/// until the follower has its whole log, and tells it to stand for
/// election at once; requests wait for it, briefly).
async fn balance_leaders(c: &Cluster, meta: &Meta) -> Result<bool, ApiError> {
    let repl = c.repl()?;
    // Reports lag by up to an interval: give them one to catch up.
    let gap = Duration::from_secs(1) + repl.report_interval;
    let recent = repl
        .last_leader_move
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some_and(|t| t.elapsed() < gap);
    if recent {
        return Ok(false);
    }
    let mut led: BTreeMap<String, usize> = BTreeMap::new();
    for s in &meta.shards {
        for n in &s.replicas {
            if c.status_of(n) != Status::Healthy {
                return Ok(false);
            }
            led.entry(n.clone()).or_default();
        }
    }
    let mut leader_of = Vec::with_capacity(meta.shards.len());
    for (id, s) in meta.shards.iter().enumerate() {
        let views = repl.views(id as u32);
        let settled = views.len() == s.replicas.len()
            && views.iter().all(|(n, g)| {
                s.replicas.contains(n) && (g.role == "leader" || g.role == "follower")
            })
            && views.iter().filter(|(_, g)| g.role == "leader").count() == 1;
        // The leader as last learned (a transfer updates it at once; the
        // reports follow within an interval).
        let leader = repl.leader(id as u32).filter(|l| s.replicas.contains(l));
        let (true, Some(leader)) = (settled && s.replicas.len() >= 2, leader) else {
            return Ok(false);
        };
        *led.entry(leader.clone()).or_default() += 1;
        leader_of.push(leader);
    }
    let Some((busiest, most)) = led.iter().max_by_key(|(n, k)| (**k, std::cmp::Reverse(*n))) else {
        return Ok(false);
    };
    let fewest = led.values().min().copied().unwrap_or(0);
    if *most <= fewest + 1 {
        return Ok(false);
    }
    // A shard of the busiest node with a follower that leads at least two
    // fewer: the one leading fewest takes it.
    let pick = leader_of.iter().enumerate().find_map(|(id, l)| {
        if l != busiest {
            return None;
        }
        meta.shards[id]
            .replicas
            .iter()
            .filter(|n| *n != busiest)
            .map(|n| (led.get(n).copied().unwrap_or(0), n))
            .filter(|(k, _)| k + 1 < *most)
            .min()
            .map(|(_, n)| (id as u32, n.clone()))
    });
    let Some((shard, to)) = pick else {
        return Ok(false);
    };
    let busiest = busiest.clone();
    *repl
        .last_leader_move
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    let target = node_info(meta, &to);
    let started = Instant::now();
    let handed = c
        .nodes
        .transfer_leader(&node_info(meta, &busiest), shard, &target)
        .await;
    c.metrics
        .transferred(if handed.is_ok() { "ok" } else { "failed" });
    handed.map_err(|e| e.into_api(&busiest, shard))?;
    repl.note_leader(shard, &to);
    // How long the shard's requests waited (the old leader took none).
    let took_ms = started.elapsed().as_millis() as u64;
    tracing::info!(shard, from = %busiest, to = %to, leads = most, took_ms, "shard leadership handed over to even out leaders");
    Ok(true)
}

/// One step towards even load: a replica moves from the node holding the
/// most to the node holding the fewest, when they differ by more than
/// one. Only shards whose replicas are all healthy and that were not
/// placed by hand move, and a follower's replica before a leader's (a
/// leader that leaves its group hands over by election).
fn rebalance_step(c: &Cluster, meta: &Meta) -> Option<(u32, Vec<String>, Vec<String>)> {
    let load = loads(c, meta);
    let ((light, lo), (heavy, hi)) = (load.first()?, load.last()?);
    if *hi <= lo + 1 {
        return None;
    }
    let repl = c.replication.as_ref()?;
    let movable = meta.shards.iter().enumerate().filter(|(id, s)| {
        !meta.pinned.contains(&(*id as u32))
            && s.replicas.contains(heavy)
            && !s.replicas.contains(light)
            && s.replicas.iter().all(|n| c.status_of(n) == Status::Healthy)
    });
    let (shard, s) = movable
        .min_by_key(|(id, _)| repl.leader(*id as u32).as_ref() == Some(heavy))
        .map(|(id, s)| (id as u32, s))?;
    let desired = s
        .replicas
        .iter()
        .map(|n| if n == heavy { light.clone() } else { n.clone() })
        .collect();
    Some((shard, s.replicas.clone(), desired))
}

/// One pass; returns whether it changed a group (more may be pending).
async fn reconcile(c: &Cluster) -> Result<bool, ApiError> {
    // Relearning lost metadata from the nodes' groups: wait for the rest
    // of them, rather than create a second group for a shard or replace a
    // replica whose node has not reported yet.
    if c.is_relearning() {
        return Ok(false);
    }
    let _one = c.moves.lock().await;
    let repl = c.repl()?;
    let factor = c.factor()? as usize;
    let meta = c.snapshot()?;
    // A node that came back without its data may join a group again once
    // it is out of it.
    let rejoined: Vec<(String, u32)> = meta
        .rejoining
        .iter()
        .filter(|(n, s)| {
            meta.shards
                .get(*s as usize)
                .is_none_or(|s| !s.replicas.contains(n))
        })
        .cloned()
        .collect();
    if !rejoined.is_empty() {
        c.update(|m| {
            for r in &rejoined {
                m.rejoining.remove(r);
            }
            Ok(())
        })
        .await?;
        for (node, shard) in &rejoined {
            tracing::info!(node = %node, shard, "a replica whose node lost its data is out of its group");
        }
    }
    let meta = c.snapshot()?;
    // Leaders per node, as known, plus the groups bootstrapped this pass:
    // a new group is bootstrapped (and so, at first, led) by whichever of
    // its replicas leads fewest, so leaders start out spread.
    let mut leading: HashMap<String, usize> = HashMap::new();
    for l in repl
        .leaders
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .values()
    {
        *leading.entry(l.clone()).or_default() += 1;
    }
    for shard in 0..meta.num_shards {
        let meta = c.snapshot()?;
        let current = meta.shards[shard as usize].replicas.clone();
        if current.is_empty() {
            let mut chosen: Vec<String> = by_load(c, &meta).into_iter().take(factor).collect();
            if chosen.is_empty() {
                return Ok(false); // no healthy node yet
            }
            if let Some(i) =
                (0..chosen.len()).min_by_key(|i| leading.get(&chosen[*i]).copied().unwrap_or(0))
            {
                chosen.swap(0, i);
            }
            *leading.entry(chosen[0].clone()).or_default() += 1;
            c.update(|m| {
                m.shards[shard as usize].replicas = chosen.clone();
                Ok(())
            })
            .await?;
            let meta = c.snapshot()?;
            let req = GroupRequest {
                members: members(&meta, &chosen),
                bootstrap: false,
                incarnation: None,
            };
            // Followers first, so the bootstrapping replica's first
            // election finds them.
            for (i, node) in chosen.iter().enumerate().rev() {
                let addr = node_info(&meta, node);
                let req = GroupRequest {
                    bootstrap: i == 0,
                    ..req.clone()
                };
                if let Err(e) = c.nodes.open_group(&addr, shard, &req).await {
                    tracing::warn!(shard, node = %node, error = %e, "opening replica failed; will retry");
                }
            }
            tracing::info!(shard, replicas = ?chosen, "shard group created");
            continue;
        }
        // A healthy replica that reports no group (its node was down when
        // the group was made, or crashed before opening it) gets it opened
        // again; the leader catches it up. Not one that lost its data: it
        // leaves the group first (below).
        let amnesiac = |n: &String| meta.rejoining.contains(&(n.clone(), shard));
        for node in &current {
            if c.status_of(node) == Status::Healthy && !repl.hosts(node, shard) && !amnesiac(node) {
                let addr = node_info(&meta, node);
                let req = GroupRequest {
                    members: members(&meta, &current),
                    bootstrap: false,
                    incarnation: meta.nodes.get(node).and_then(|m| m.incarnation.clone()),
                };
                if let Err(e) = c.nodes.open_group(&addr, shard, &req).await {
                    tracing::debug!(shard, node = %node, error = %e, "reopening replica failed");
                }
            }
        }
        let health = c.health();
        let gone = |n: &String| {
            amnesiac(n)
                || meta.removed.contains(n)
                || meta.nodes.get(n).is_none_or(|m| m.draining)
                || health
                    .get(n)
                    .and_then(|h| h.unhealthy_since)
                    .is_some_and(|t| t.elapsed() >= repl.timeout)
        };
        let mut desired: Vec<String> = current.iter().filter(|n| !gone(n)).cloned().collect();
        let kept = desired.len();
        for n in by_load(c, &meta) {
            if desired.len() >= factor {
                break;
            }
            // A node that lost its data leaves the group before it joins again.
            let leaving = amnesiac(&n) && current.contains(&n);
            if !desired.contains(&n) && !leaving {
                desired.push(n);
            }
        }
        desired.truncate(factor.max(1));
        let same: BTreeSet<&String> = desired.iter().collect();
        if desired.is_empty() || same == current.iter().collect::<BTreeSet<_>>() {
            continue;
        }
        // A replica that is only down is replaced, never just dropped: a
        // smaller group tolerates no more failures, and the node may return.
        let decommissioned = current.iter().any(|n| {
            amnesiac(n) || meta.removed.contains(n) || meta.nodes.get(n).is_none_or(|m| m.draining)
        });
        if desired.len() == kept && kept < current.len() && !decommissioned {
            continue;
        }
        change_members(c, &meta, shard, &current, desired).await?;
        // One membership change per pass keeps each pass short.
        return Ok(true);
    }
    // Every group as it should be: even out the load, then the leaders.
    let meta = c.snapshot()?;
    if let Some((shard, current, desired)) = rebalance_step(c, &meta) {
        tracing::info!(shard, from = ?current, to = ?desired, "rebalancing a replica");
        change_members(c, &meta, shard, &current, desired).await?;
        return Ok(true);
    }
    balance_leaders(c, &meta).await
}

impl Cluster {
    /// Puts a replica of `shard` on `node` (`POST /shards/assign`): added
    /// while the group is below the factor, otherwise in place of the
    /// replica on the busiest node that does not lead. The shard is pinned:
    /// rebalancing leaves it where it is.
    pub(crate) async fn place_replica(&self, shard: u32, node: &str) -> Result<(), ApiError> {
        let _one = self.moves.lock().await;
        let repl = self.repl()?;
        let meta = self.snapshot()?;
        let current = meta.shards[shard as usize].replicas.clone();
        if !current.iter().any(|n| n == node) {
            if current.is_empty() {
                return Err(ApiError::unavailable(
                    "shard_unassigned",
                    format!("shard {shard} has no replicas yet; its group is being created"),
                ));
            }
            let mut desired = current.clone();
            if current.len() >= self.factor()? as usize {
                let load: HashMap<String, usize> = loads(self, &meta).into_iter().collect();
                let leader = repl.leader(shard);
                let out = current
                    .iter()
                    .max_by_key(|n| {
                        let healthy = self.status_of(n) == Status::Healthy;
                        (!healthy, leader.as_ref() != Some(*n), load.get(*n).copied())
                    })
                    .cloned()
                    .unwrap_or_default();
                desired.retain(|n| *n != out);
            }
            desired.push(node.to_owned());
            change_members(self, &meta, shard, &current, desired).await?;
        }
        self.pin(shard).await
    }
}

/// Moves `shard`'s group from `current` to `desired` voters through its
/// leader, then deletes the replicas left out.
async fn change_members(
    c: &Cluster,
    meta: &Meta,
    shard: u32,
    current: &[String],
    desired: Vec<String>,
) -> Result<(), ApiError> {
    let req = GroupRequest {
        members: members(meta, &desired),
        bootstrap: false,
        incarnation: None,
    };
    // A new replica is told every member, old and new, so it accepts
    // the messages of whichever leads the group while it joins.
    let mut everyone = current.to_vec();
    everyone.extend(desired.iter().filter(|n| !current.contains(n)).cloned());
    let open = GroupRequest {
        members: members(meta, &everyone),
        ..req.clone()
    };
    for node in desired.iter().filter(|n| !current.contains(n)) {
        let addr = node_info(meta, node);
        c.nodes
            .open_group(&addr, shard, &open)
            .await
            .map_err(|e| e.into_api(node, shard))?;
    }
    c.on_replicas(shard, false, |node| {
        let req = req.clone();
        async move { c.nodes.set_members(&node, shard, &req).await }
    })
    .await?;
    c.update(|m| {
        m.shards[shard as usize].replicas = desired.clone();
        // Out of the group: a node that lost its data may join it anew.
        m.rejoining
            .retain(|(n, s)| *s != shard || desired.contains(n));
        Ok(())
    })
    .await?;
    tracing::info!(shard, from = ?current, to = ?desired, "shard group membership changed");
    for node in current.iter().filter(|n| !desired.contains(n)) {
        if c.status_of(node) != Status::Healthy {
            continue;
        }
        let addr = node_info(meta, node);
        if let Err(e) = c.nodes.drop_group(&addr, shard).await {
            tracing::warn!(shard, node = %node, error = %e, "deleting a removed replica failed");
        }
    }
    Ok(())
}
