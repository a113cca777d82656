//! The node's HTTP surface. Handlers parse, call the store, and answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use torua_store::{Op, Record, Shard, ShardState};

use crate::stream::Precondition;

use super::data::{self, held};
use super::Node;
use crate::http::extract::{empty_key, Key, ShardId};
use crate::http::{
    self, content_type_of, expect_of, value_body, value_response, written, ApiError, ListQuery,
    KEEP_VERSION,
};
use crate::raft::groups::Refusal;
use crate::raft::rpc::Senders;
use crate::tls::{require_cert, CertGate};
use crate::wire::{
    decode_entries, encode_entries, GroupRequest, GroupStatus, KeyPage, NodeInfoResponse,
    OpenShardRequest, ShardInfo, TransferRequest,
};
use torua_raft::Member;

type S = State<Arc<Node>>;

/// Extra room for framing around the largest value in a copy batch.
const IMPORT_OVERHEAD: usize = 8 << 20;
use crate::http::MAX_LIMIT;

pub(crate) fn router(node: Arc<Node>) -> Router {
    let value_limit = DefaultBodyLimit::max(node.max_value);
    let import_limit = DefaultBodyLimit::max(node.max_value + IMPORT_OVERHEAD);
    let metrics = node.metrics.clone();
    let tls = node.cluster_tls;
    let r = Router::new()
        .route("/info", get(info))
        .route("/control", post(control))
        .route("/keys", get(key_status))
        .route("/keys/rotate", post(rotate_keys))
        .route("/shard/{id}", put(open_shard).delete(drop_shard))
        .route("/shard/{id}/stats", get(stats))
        .route("/shard/{id}/store", get(list))
        .route("/shard/{id}/store/", any(empty_key))
        .route(
            "/shard/{id}/store/{*key}",
            get(get_value)
                .put(put_value)
                .delete(delete_value)
                .layer(value_limit),
        )
        .route(
            "/shard/{id}/group",
            put(open_group).delete(drop_group).get(group_status),
        )
        .route("/shard/{id}/group/members", post(set_members))
        .route("/shard/{id}/group/transfer", post(transfer_leader))
        .route("/shard/{id}/export", get(export))
        .route("/shard/{id}/import", post(import).layer(import_limit))
        .route(crate::stream::PATH, get(super::stream::open))
        .with_state(node.clone())
        .route_layer(axum::middleware::from_fn_with_state(
            CertGate::coordinators(tls, "node API"),
            require_cert,
        ))
        .merge(
            crate::raft::rpc::router(
                node.groups.clone(),
                node.max_value,
                Senders::new(&metrics, |identity| {
                    identity.strip_prefix(crate::tls::NODE_IDENTITY_PREFIX)
                }),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                CertGate::nodes(tls, "Raft API"),
                require_cert,
            )),
        )
        .merge(http::metrics_route(metrics.clone()).route_layer(
            axum::middleware::from_fn_with_state(CertGate::cluster(tls, "metrics"), require_cert),
        ))
        .route("/ready", get(ready).with_state(node));
    http::finish(r, metrics)
}

async fn ready(State(n): S) -> Result<Json<serde_json::Value>, ApiError> {
    if n.registered.load(Ordering::Relaxed) {
        Ok(Json(serde_json::json!({"status": "ready"})))
    } else {
        Err(ApiError::unavailable(
            "not_registered",
            "node has not registered with the coordinator yet",
        ))
    }
}

async fn shard_info(s: &Shard) -> Result<ShardInfo, ApiError> {
    let st = s.stats().await?;
    Ok(ShardInfo {
        id: s.id(),
        primary: true,
        state: s.state().as_str().into(),
        key_count: st.key_count,
        byte_size: st.byte_size,
    })
}

async fn info(State(n): S) -> Result<Json<NodeInfoResponse>, ApiError> {
    let mut shards = Vec::new();
    for s in n.store.shards() {
        shards.push(shard_info(&s).await?);
    }
    Ok(Json(NodeInfoResponse {
        node_id: n.id.clone(),
        shard_count: shards.len(),
        shards,
    }))
}

async fn stats(State(n): S, ShardId(id): ShardId) -> Result<Json<ShardInfo>, ApiError> {
    Ok(Json(shard_info(&*held(&n, id)?).await?))
}

async fn control(State(n): S, body: Result<Bytes, BytesRejection>) -> Result<StatusCode, ApiError> {
    let body = body?;
    // The payload is the operator's; log its size, not its content.
    tracing::info!(node = %n.id, bytes = body.len(), "control message received");
    Ok(StatusCode::NO_CONTENT)
}

fn kid_hex(kid: Option<u32>) -> serde_json::Value {
    kid.map_or(serde_json::Value::Null, |k| format!("{k:08x}").into())
}

/// Encryption state of every shard held.
async fn key_status(State(n): S) -> Result<Json<serde_json::Value>, ApiError> {
    let mut shards = Vec::new();
    for s in n.store.shards() {
        let k = s.key_status().await?;
        shards.push(serde_json::json!({
            "id": s.id(), "data_key": kid_hex(k.current), "keys": k.keys, "resealing": k.resealing,
        }));
    }
    Ok(Json(serde_json::json!({
        "node_id": n.id, "encrypted": n.store.encrypted(), "shards": shards,
    })))
}

/// Starts a new data key in every shard; older values are re-sealed in
/// the background.
async fn rotate_keys(State(n): S) -> Result<Json<serde_json::Value>, ApiError> {
    if !n.store.encrypted() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "encryption_off",
            format!("node {} stores plaintext (TORUA_ENCRYPTION=off)", n.id),
        ));
    }
    let rotated = n.store.rotate_keys().await?;
    tracing::info!(node = %n.id, shards = rotated.len(), "data keys rotated");
    let shards: Vec<_> = rotated
        .into_iter()
        .map(|(id, kid)| serde_json::json!({"id": id, "data_key": kid_hex(Some(kid))}))
        .collect();
    Ok(Json(serde_json::json!({"node_id": n.id, "shards": shards})))
}

async fn open_shard(
    State(n): S,
    ShardId(id): ShardId,
    body: Result<Json<OpenShardRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ShardInfo>, ApiError> {
    let Json(req) = body?;
    let state = match req.state.as_str() {
        "active" => ShardState::Active,
        "receiving" => ShardState::Receiving,
        other => {
            return Err(ApiError::bad_request(
                "invalid_state",
                format!("`{other}` is not active or receiving"),
            ))
        }
    };
    if req.reset {
        n.store.drop_shard(id).await?;
    }
    let s = n.store.create_shard(id, state).await?;
    tracing::info!(node = %n.id, shard = id, state = state.as_str(), reset = req.reset, "shard opened");
    Ok(Json(shard_info(&s).await?))
}

async fn drop_shard(State(n): S, ShardId(id): ShardId) -> Result<StatusCode, ApiError> {
    if n.store.drop_shard(id).await? {
        tracing::info!(node = %n.id, shard = id, "shard dropped");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct ReadQuery {
    /// `stale` allows a read from this replica's state without asking the
    /// leader (replicated shards only).
    consistency: Option<String>,
}

/// Header on a read answered from a replica's possibly stale state.
pub(crate) const CONSISTENCY_HEADER: &str = "x-torua-consistency";

async fn get_value(
    State(n): S,
    ShardId(id): ShardId,
    Key(key): Key,
    q: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let Query(q) = q.map_err(ApiError::from)?;
    let stale = http::stale_read(q.consistency.as_deref())?;
    let rec = data::read(&n, id, &key, stale).await?;
    let mut res = value_response(rec.ok_or_else(|| ApiError::not_found("key not found"))?);
    if stale {
        res.headers_mut().insert(
            CONSISTENCY_HEADER,
            header::HeaderValue::from_static("stale"),
        );
    }
    Ok(res)
}

/// The precondition of a write: `X-Torua-Version` (a move target keeps
/// that version), else `If-Match`/`If-None-Match`.
fn precondition_of(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    match headers.get(KEEP_VERSION) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Precondition::Keep)
            .ok_or_else(|| {
                ApiError::bad_request("invalid_version", "X-Torua-Version is not a version")
            }),
        None => Ok(expect_of(headers)?.into()),
    }
}

async fn put_value(
    State(n): S,
    ShardId(id): ShardId,
    Key(key): Key,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let value = value_body(body, n.max_value)?;
    let record = Record::new(content_type_of(&headers)?, value.to_vec());
    let version = data::write(&n, id, key, record, precondition_of(&headers)?).await?;
    Ok(written(version))
}

async fn delete_value(
    State(n): S,
    ShardId(id): ShardId,
    Key(key): Key,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    data::delete(&n, id, key, expect_of(&headers)?.into()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(
    State(n): S,
    ShardId(id): ShardId,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<KeyPage>, Refusal> {
    let Query(q) = q.map_err(ApiError::from)?;
    let limit = q.limit()?;
    if let Some(g) = n.groups.get(id) {
        g.linearize().await?;
    }
    // One extra key tells whether another page exists.
    let mut keys = held(&n, id)?
        .list(&q.prefix, q.after.as_deref(), limit + 1)
        .await?;
    let next_after = if keys.len() > limit {
        keys.truncate(limit);
        keys.last().cloned()
    } else {
        None
    };
    Ok(Json(KeyPage { keys, next_after }))
}

#[derive(Debug, Deserialize)]
struct ExportQuery {
    after: Option<String>,
    limit: Option<usize>,
    max_bytes: Option<usize>,
}

/// A page of entries for a shard copy; an empty body means the end.
async fn export(
    State(n): S,
    ShardId(id): ShardId,
    q: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let limit = q.limit.unwrap_or(1000).clamp(1, MAX_LIMIT);
    let max_bytes = q.max_bytes.unwrap_or(4 << 20).clamp(1, 64 << 20);
    let entries = held(&n, id)?
        .scan("", q.after.as_deref(), limit, max_bytes)
        .await?;
    Ok((
        [(header::CONTENT_TYPE, "application/x-torua-entries")],
        encode_entries(&entries),
    )
        .into_response())
}

async fn import(
    State(n): S,
    ShardId(id): ShardId,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let body = value_body(body, n.max_value + IMPORT_OVERHEAD)?;
    let entries = decode_entries(&body).map_err(|e| ApiError::bad_request("invalid_entries", e))?;
    // Copies keep their versions.
    let ops = entries.into_iter().map(|(k, r)| Op::Import(k, r)).collect();
    held(&n, id)?.apply(ops).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn members_of(req: &GroupRequest) -> Result<Vec<Member>, ApiError> {
    if req.members.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_members",
            "a group needs at least one member",
        ));
    }
    Ok(req
        .members
        .iter()
        .map(|m| Member {
            name: m.id.clone(),
            addr: m.addr.clone(),
        })
        .collect())
}

/// Hosts a replica of shard `id`'s group here (and bootstraps the group
/// when asked and it has no members yet).
async fn open_group(
    State(n): S,
    ShardId(id): ShardId,
    body: Result<Json<GroupRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<GroupStatus>, ApiError> {
    let Json(req) = body?;
    let members = members_of(&req)?;
    if req
        .incarnation
        .as_ref()
        .is_some_and(|i| *i != n.incarnation)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "incarnation_mismatch",
            format!(
                "node {} lost its data since it held this replica of shard {id}; it must rejoin the group as a new member",
                n.id
            ),
        ));
    }
    let g = n.groups.open(id, Some(members), req.bootstrap).await?;
    Ok(Json(g.status()))
}

async fn drop_group(State(n): S, ShardId(id): ShardId) -> Result<StatusCode, ApiError> {
    n.groups.drop_group(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn group_status(State(n): S, ShardId(id): ShardId) -> Result<Json<GroupStatus>, ApiError> {
    match n.groups.get(id) {
        Some(g) => Ok(Json(g.status())),
        None => Err(ApiError::not_found(format!(
            "node {} hosts no replica of shard {id}",
            n.id
        ))),
    }
}

/// Hands the group's leadership over to one of its voters (at the leader).
async fn transfer_leader(
    State(n): S,
    ShardId(id): ShardId,
    body: Result<Json<TransferRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<GroupStatus>, Refusal> {
    let Json(req) = body.map_err(ApiError::from)?;
    let g = n.groups.hosted(id)?;
    g.transfer(&Member {
        name: req.to.id,
        addr: req.to.addr,
    })
    .await?;
    Ok(Json(g.status()))
}

/// Makes the group's voters exactly the given members (at the leader).
async fn set_members(
    State(n): S,
    ShardId(id): ShardId,
    body: Result<Json<GroupRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<GroupStatus>, Refusal> {
    let Json(req) = body.map_err(ApiError::from)?;
    let members = members_of(&req)?;
    let g = n.groups.hosted(id)?;
    g.set_members(members).await?;
    Ok(Json(g.status()))
}
