//! The coordinator's HTTP surface (the original Torua API). Handlers parse
//! and answer; `Cluster` and `mover` decide.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::cluster::{Cluster, Status};
use super::meta::{NodeMeta, ShardMeta};
use super::mover;
use crate::config::{parse_node_id, parse_url};
use crate::http::extract::{empty_key, Key};
use crate::http::{
    self, content_type_of, expect_of, value_body, value_response, written, ApiError, ListQuery,
    Metrics,
};
use crate::security::policy::Action;
use crate::security::{self, Caller, Security};
use crate::wire::*;

type S = State<Arc<Cluster>>;

/// Longest time `DELETE /nodes/{id}` waits for the node's shards to leave.
const DRAIN_WAIT: Duration = Duration::from_secs(120);
/// Deadline for a whole broadcast.
const BROADCAST_DEADLINE: Duration = Duration::from_secs(4);

pub(crate) fn router(cluster: Arc<Cluster>, sec: Arc<Security>, metrics: Arc<Metrics>) -> Router {
    let value_limit = DefaultBodyLimit::max(cluster.max_value);
    let r = Router::new()
        .route("/register", post(register))
        .route("/nodes", get(nodes))
        .route("/nodes/{id}", delete(decommission))
        .route("/shards", get(shards))
        .route("/shards/assign", post(assign))
        .route("/broadcast", post(broadcast))
        .route("/data", get(list))
        .route("/data/", any(empty_key))
        .route(
            "/data/{*key}",
            get(get_value)
                .put(put_value)
                .delete(delete_value)
                .layer(value_limit),
        )
        .with_state(cluster.clone())
        .merge(super::admin::router(sec.clone(), cluster.clone()))
        .merge(
            http::metrics_route(metrics.clone())
                .route_layer(axum::middleware::from_fn(security::require_monitor)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            sec,
            security::authenticate,
        ))
        // Probes stay open: they say nothing about the data.
        .route("/ready", get(ready).with_state(cluster));
    http::finish(r, metrics)
}

fn json<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    Ok(body?.0)
}

async fn ready(State(c): S) -> Result<Json<serde_json::Value>, ApiError> {
    let missing = c.shards_without_live_owner()?;
    if missing.is_empty() {
        if c.replication.is_some() {
            let factor = c.factor()?;
            // Serving, but say so when a shard has fewer replicas than asked.
            let under = c.under_replicated()?;
            let mut body = serde_json::json!({
                "status": "ready",
                "replication_factor": factor,
                "under_replicated": under.len(),
                "message": if under.is_empty() {
                    format!("every shard has {factor} replicas")
                } else {
                    format!("{} of {} shards have fewer than {} replicas (the cluster has too few healthy nodes, or replicas are being re-created)", under.len(), c.num_shards(), factor)
                },
            });
            if let Some(d) = &c.docs {
                let mut g = d.status();
                g.voters.sort();
                body["coordinators"] = serde_json::json!({
                    "role": g.role, "leader": g.leader, "term": g.term, "members": g.voters,
                    "applied": g.last_applied,
                });
            }
            return Ok(Json(body));
        }
        return Ok(Json(serde_json::json!({"status": "ready"})));
    }
    Err(ApiError::unavailable(
        "not_ready",
        format!(
            "{} of {} shards have no live owner or quorum (first: shard {})",
            missing.len(),
            c.num_shards(),
            missing[0]
        ),
    ))
}

/// How long a coordinator that relearns placement from the nodes waits for
/// the rest of them before giving the shards nobody claimed out empty.
const RELEARN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

async fn register(
    State(c): S,
    caller: Caller,
    body: Result<Json<RegisterRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let req = json(body)?;
    caller.require_node(&req.node.id).await?;
    let id =
        parse_node_id(&req.node.id).map_err(|m| ApiError::bad_request("invalid_node_id", m))?;
    let addr =
        parse_url(&req.node.addr).map_err(|m| ApiError::bad_request("invalid_node_addr", m))?;
    // Client calls go to this address: over TLS only, when the cluster has it.
    if c.nodes.tls() && !addr.starts_with("https://") {
        return Err(ApiError::bad_request(
            "invalid_node_addr",
            format!(
                "the cluster uses TLS: node {id} must advertise an https:// address, not `{addr}`"
            ),
        ));
    }
    // Single copy: the shards a node holds. Replicated: the groups it
    // hosts, whose voters say where each shard's replicas are; a claim to
    // lead counts only from a member of the shard's group.
    let reported: Option<BTreeSet<u32>> = match &c.replication {
        Some(r) => {
            // The shards it is a replica of, not a copy of all the metadata:
            // this runs on every heartbeat of every node.
            let member_of: BTreeSet<u32> = c.meta.read(|m| {
                (0u32..)
                    .zip(&m.shards)
                    .filter(|(_, s)| s.replicas.contains(&id))
                    .map(|(sid, _)| sid)
                    .collect()
            })?;
            r.report(&req.node.id, req.groups.clone(), |shard| {
                member_of.contains(&shard)
            });
            None
        }
        None => req.shards.map(|v| v.into_iter().collect()),
    };
    let groups = if c.replication.is_some() {
        req.groups.clone()
    } else {
        Vec::new()
    };
    let incarnation = req.incarnation.clone();
    let replicated = c.replication.is_some();
    let (is_new, to_open, to_drop, relearned, rejoins) = c
        .update(|m| {
            if m.removed.contains(&id) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "node_decommissioned",
                    format!("node {id} was decommissioned; start it with a new NODE_ID to rejoin"),
                ));
            }
            let is_new = !m.nodes.contains_key(&id);
            let entry = m.nodes.entry(id.clone()).or_insert_with(|| NodeMeta {
                addr: addr.clone(),
                draining: false,
                incarnation: None,
            });
            entry.addr = addr.clone();
            let amnesiac = matches!(
                (&entry.incarnation, &incarnation),
                (Some(was), Some(now)) if was != now
            );
            if incarnation.is_some() {
                entry.incarnation = incarnation.clone();
            }
            let mut rejoins = false;
            if amnesiac && replicated {
                for (sid, s) in m.shards.iter().enumerate() {
                    if s.replicas.contains(&id) {
                        rejoins |= m.rejoining.insert((id.clone(), sid as u32));
                    }
                }
            }
            let (mut to_open, mut to_drop, mut relearned) = (Vec::new(), Vec::new(), false);
            // A coordinator that lost its metadata learns each group's
            // members from the replicas, rather than create a second group;
            // a node vouches only for groups it is a voter of.
            for g in groups
                .iter()
                .filter(|g| !g.voters.is_empty() && g.voters.contains(&id))
            {
                if let Some(s) = m.shards.get_mut(g.shard as usize) {
                    if s.replicas.is_empty() {
                        s.replicas = g.voters.clone();
                        relearned = true;
                    }
                }
            }
            if let Some(held) = &reported {
                for (sid, s) in m.shards.iter_mut().enumerate() {
                    let sid = sid as u32;
                    let has = held.contains(&sid);
                    match (&s.owner, has) {
                        // A restarted coordinator that lost its metadata relearns placement.
                        (None, true) => {
                            s.owner = Some(id.clone());
                            relearned = true;
                        }
                        // The node should hold it but does not (wiped disk): reopen so
                        // the shard is served again; its data is gone, say so loudly.
                        (Some(o), false) if *o == id => to_open.push(sid),
                        _ => {}
                    }
                }
                for sid in held {
                    if m.pending_drops.contains(&(id.clone(), *sid)) {
                        to_drop.push(*sid);
                    }
                }
            }
            Ok((is_new, to_open, to_drop, relearned, rejoins))
        })
        .await?;
    if rejoins {
        tracing::error!(node = %id, "node came back without its data (new incarnation); its replicas are removed from their groups and re-created from the others");
    }
    if relearned {
        c.relearning(RELEARN_GRACE);
    }
    c.observe(&id, true);
    if is_new {
        tracing::info!(node = %id, addr = %addr, "node joined");
        caller
            .audit_admin("node.register", &id, serde_json::json!({"addr": addr}))
            .await;
    }
    for sid in to_open {
        tracing::error!(node = %id, shard = sid, "node no longer holds a shard it owns; reopening it empty");
        let node = NodeInfo {
            id: id.clone(),
            addr: addr.clone(),
        };
        if let Err(e) = c.nodes.open_shard(&node, sid, "active", false).await {
            tracing::warn!(node = %id, shard = sid, error = %e, "reopen failed");
        }
    }
    if !to_drop.is_empty() {
        c.wake.notify_one();
    }
    if is_new
        || c.shards_without_live_owner()
            .map(|v| !v.is_empty())
            .unwrap_or(false)
    {
        c.wake.notify_one();
    }
    Ok(StatusCode::NO_CONTENT)
}

fn rfc3339(t: Option<std::time::SystemTime>) -> Option<String> {
    t.map(|t| humantime::format_rfc3339_millis(t).to_string())
}

async fn nodes(State(c): S, caller: Caller) -> Result<Json<NodesResponse>, ApiError> {
    caller.require_monitor().await?;
    let meta = c.snapshot()?;
    let health = c.health();
    let nodes = meta
        .nodes
        .iter()
        .map(|(id, n)| {
            let h = health.get(id).cloned().unwrap_or_default();
            NodeStatus {
                id: id.clone(),
                addr: n.addr.clone(),
                status: h.status.as_str().into(),
                last_health_check: rfc3339(h.last_check),
                state: if n.draining {
                    "draining"
                } else if meta.rejoining.iter().any(|(n, _)| n == id) {
                    "rejoining"
                } else {
                    "active"
                }
                .into(),
                shard_count: meta.shards.iter().filter(|s| s.holds(id)).count(),
            }
        })
        .collect();
    Ok(Json(NodesResponse { nodes }))
}

#[derive(Debug, Deserialize)]
struct DecommissionQuery {
    #[serde(default)]
    force: bool,
}

/// Moves every shard off the node, then removes it. With `force=true` an
/// unreachable node is removed at once and its shards restart empty.
async fn decommission(
    State(c): S,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<DecommissionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require_admin().await?;
    let Query(q) = q?;
    let res = drain_and_remove(&c, &id, q.force).await;
    let status = res.as_ref().map_or_else(|e| e.status, |r| r.status());
    caller
        .audit_admin(
            "node.decommission",
            &id,
            serde_json::json!({"force": q.force, "status": status.as_u16()}),
        )
        .await;
    res
}

async fn drain_and_remove(c: &Cluster, id: &str, force: bool) -> Result<Response, ApiError> {
    let id = id.to_owned();
    let q = DecommissionQuery { force };
    let meta = c.snapshot()?;
    if !meta.nodes.contains_key(&id) {
        return Err(ApiError::not_found(format!("node {id} is not registered")));
    }
    // Shards it owns (single copy) or holds a replica of, and of those the
    // ones no other node has a copy of.
    let owned: Vec<u32> = (0..c.num_shards())
        .filter(|s| meta.shards[*s as usize].holds(&id))
        .collect();
    let sole: Vec<u32> = owned
        .iter()
        .copied()
        .filter(|s| {
            let s = &meta.shards[*s as usize];
            s.owner.as_ref() == Some(&id) || s.replicas == [id.clone()]
        })
        .collect();
    let others = c.eligible(&meta).into_iter().any(|n| n != id);
    if !sole.is_empty() && !q.force {
        if !others {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_destination",
                format!(
                    "node {id} holds the only copy of {} shards and no other healthy node can take them",
                    sole.len()
                ),
            ));
        }
        if c.status_of(&id) != Status::Healthy {
            return Err(ApiError::new(StatusCode::CONFLICT, "node_unavailable", format!(
                "node {id} is not healthy, so its {} shards cannot be copied; retry when it is back, \
                 or pass ?force=true to remove it and restart its shards empty (their data is lost)", sole.len())));
        }
    }
    if q.force {
        let _one = c.moves.lock().await;
        c.update(|m| {
            for s in m.shards.iter_mut() {
                if s.owner.as_ref() == Some(&id) {
                    s.owner = None;
                }
                // A group whose only replica goes starts again, empty;
                // others are re-replicated from their remaining replicas.
                if s.replicas == [id.clone()] {
                    s.replicas.clear();
                }
                if s.moving_to.as_ref() == Some(&id) {
                    s.moving_to = None;
                }
            }
            m.nodes.remove(&id);
            m.removed.insert(id.clone());
            Ok(())
        })
        .await?;
        if !sole.is_empty() {
            tracing::error!(node = %id, shards = ?sole, "node removed by force; its shards restart empty");
        }
        c.forget_health(&id);
        c.wake.notify_one();
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    c.update(|m| {
        if let Some(n) = m.nodes.get_mut(&id) {
            n.draining = true;
        }
        Ok(())
    })
    .await?;
    tracing::info!(node = %id, shards = owned.len(), "decommissioning node");
    c.wake.notify_one();
    let deadline = Instant::now() + DRAIN_WAIT;
    loop {
        let meta = c.snapshot()?;
        let busy = meta
            .shards
            .iter()
            .any(|s| s.holds(&id) || s.moving_to.as_ref() == Some(&id));
        if !busy {
            c.update(|m| {
                m.nodes.remove(&id);
                m.removed.insert(id.clone());
                Ok(())
            })
            .await?;
            c.forget_health(&id);
            tracing::info!(node = %id, "node decommissioned");
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        if Instant::now() > deadline {
            let body = serde_json::json!({"status": "draining", "message": format!("node {id} is still handing off shards; call again to wait")});
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn shards(State(c): S, caller: Caller) -> Result<Json<ShardsResponse>, ApiError> {
    caller.require_monitor().await?;
    let meta = c.snapshot()?;
    let shards = meta
        .shards
        .iter()
        .enumerate()
        .map(|(id, s)| assignment(&c, id as u32, s))
        .collect();
    Ok(Json(ShardsResponse {
        num_shards: meta.num_shards,
        shards,
    }))
}

/// A shard as `/shards` shows it: `NodeID` is the owner, or the leader of
/// a replicated shard, whose replicas are listed with their roles.
fn assignment(c: &Cluster, id: u32, s: &ShardMeta) -> ShardAssignment {
    match &c.replication {
        Some(r) => {
            let views = r.views(id);
            let role_of = |n: &String| {
                views
                    .iter()
                    .find(|(v, _)| v == n)
                    .map_or("unknown".to_owned(), |(_, g)| g.role.clone())
            };
            ShardAssignment {
                shard_id: id,
                node_id: r.shown_leader(id).unwrap_or_default(),
                is_primary: true,
                moving_to: None,
                replicas: s
                    .replicas
                    .iter()
                    .map(|n| ReplicaView {
                        node_id: n.clone(),
                        role: role_of(n),
                    })
                    .collect(),
            }
        }
        None => ShardAssignment {
            shard_id: id,
            node_id: s.owner.clone().unwrap_or_default(),
            is_primary: true,
            moving_to: s.moving_to.clone(),
            replicas: Vec::new(),
        },
    }
}

async fn assign(
    State(c): S,
    caller: Caller,
    body: Result<Json<AssignRequest>, JsonRejection>,
) -> Result<Json<ShardAssignment>, ApiError> {
    caller.require_admin().await?;
    let req = json(body)?;
    if req.shard_id >= c.num_shards() {
        return Err(ApiError::bad_request(
            "invalid_shard_id",
            format!(
                "shard {} is out of range; this cluster has shards 0 to {}",
                req.shard_id,
                c.num_shards() - 1
            ),
        ));
    }
    let meta = c.snapshot()?;
    let Some(node) = meta.nodes.get(&req.node_id) else {
        return Err(ApiError::bad_request(
            "unknown_node",
            format!("node {} is not registered", req.node_id),
        ));
    };
    if node.draining {
        return Err(ApiError::bad_request(
            "node_draining",
            format!("node {} is being decommissioned", req.node_id),
        ));
    }
    if c.status_of(&req.node_id) != Status::Healthy {
        return Err(ApiError::unavailable(
            "node_unavailable",
            format!("node {} is not healthy", req.node_id),
        ));
    }
    if c.replication.is_some() {
        c.place_replica(req.shard_id, &req.node_id).await?;
    } else {
        let _one = c.moves.lock().await;
        let owner = c.snapshot()?.shards[req.shard_id as usize].owner.clone();
        match owner {
            Some(o) if o == req.node_id => {}
            Some(o) => mover::move_shard(&c, req.shard_id, &o, &req.node_id).await?,
            None => mover::assign_empty(&c, req.shard_id, &req.node_id).await?,
        }
        c.pin(req.shard_id).await?;
    }
    c.wake.notify_one();
    caller
        .audit_admin(
            "shard.assign",
            &req.shard_id.to_string(),
            serde_json::json!({"node": req.node_id}),
        )
        .await;
    let s = c.snapshot()?.shards[req.shard_id as usize].clone();
    Ok(Json(assignment(&c, req.shard_id, &s)))
}

async fn broadcast(
    State(c): S,
    caller: Caller,
    body: Result<Json<BroadcastRequest>, JsonRejection>,
) -> Result<Json<BroadcastResponse>, ApiError> {
    caller.require_admin().await?;
    let req = json(body)?;
    if !req.path.starts_with('/')
        || req.path.contains("..")
        || req.path.contains("//")
        || req.path.contains(['?', '#'])
    {
        return Err(ApiError::bad_request(
            "invalid_path",
            "path must be an absolute node path such as /control",
        ));
    }
    let meta = c.snapshot()?;
    let targets: Vec<NodeInfo> = meta
        .nodes
        .keys()
        .filter(|id| c.status_of(id) == Status::Healthy)
        .filter_map(|id| meta.node_info(id))
        .collect();
    let deadline = tokio::time::Instant::now() + BROADCAST_DEADLINE;
    let calls = targets.into_iter().map(|node| {
        let (c, payload, path) = (c.clone(), req.payload.clone(), req.path.clone());
        async move {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let err = c
                .nodes
                .post_json(&node, &path, &payload, left)
                .await
                .err()
                .map(|e| e.to_string());
            BroadcastResult {
                node_id: node.id,
                err,
            }
        }
    });
    let results = futures::future::join_all(calls).await;
    caller
        .audit_admin(
            "broadcast",
            &req.path,
            serde_json::json!({"sent_to": results.len()}),
        )
        .await;
    Ok(Json(BroadcastResponse {
        sent_to: results.len(),
        results,
    }))
}

/// Lists only what the caller may list: each permitted scope under the
/// requested prefix is listed and the pages merged.
async fn list(
    State(c): S,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<KeyPage>, ApiError> {
    let Query(q) = q?;
    let limit = q.limit()?;
    let scopes = caller.list_scopes(&q.prefix).await?;
    let mut pages = Vec::with_capacity(scopes.len());
    for scope in &scopes {
        pages.push(c.list(scope, q.after.as_deref(), limit).await?);
    }
    Ok(Json(super::cluster::merge_pages(pages, limit)))
}

#[derive(Debug, serde::Deserialize)]
struct ReadQuery {
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// `GET /data/{key}`: linearizable by default; `?consistency=stale` lets
/// any replica answer and says so in `X-Torua-Consistency: stale`.
async fn get_value(
    State(c): S,
    caller: Caller,
    Key(key): Key,
    q: Result<Query<ReadQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let stale = crate::http::stale_read(q.consistency.as_deref())?;
    caller.require(Action::Read, &key).await?;
    let rec = c
        .get(&key, stale)
        .await?
        .ok_or_else(|| ApiError::not_found("key not found"))?;
    let mut res = value_response(rec);
    if stale {
        res.headers_mut().insert(
            crate::node::routes::CONSISTENCY_HEADER,
            axum::http::HeaderValue::from_static("stale"),
        );
    }
    Ok(res)
}

/// `PUT /data/{key}`: 204 with the new version's `ETag`; with `If-Match`
/// or `If-None-Match`, 412 when the key is not as expected.
async fn put_value(
    State(c): S,
    caller: Caller,
    Key(key): Key,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.require(Action::Write, &key).await?;
    let expect = expect_of(&headers)?;
    let value = value_body(body, c.max_value)?;
    let ct = content_type_of(&headers)?;
    let version = c.write(&key, Some((&ct, value)), expect).await?;
    Ok(match version {
        Some(v) => written(v),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

async fn delete_value(
    State(c): S,
    caller: Caller,
    Key(key): Key,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    caller.require(Action::Delete, &key).await?;
    let expect = expect_of(&headers)?;
    c.write(&key, None, expect).await?;
    Ok(StatusCode::NO_CONTENT)
}
