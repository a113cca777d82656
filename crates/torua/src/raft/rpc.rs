//! The receiving end of [`super::net`]: Raft RPCs from peer replicas,
//! handed to the hosted group they name. The caller mounts the router
//! behind its own check of who may send them (nodes accept nodes,
//! coordinators accept coordinators).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

use super::groups::{Group, Groups};
use super::net::{BatchAnswer, BatchItem, BatchOp, MAX_BATCH_BYTES, RAFT_CONTENT_TYPE};
use crate::http::extract::ShardId;
use crate::http::ApiError;

/// Extra room for framing around the largest values in one append.
const OVERHEAD: usize = 8 << 20;

/// `POST /raft/batch` and `POST /raft/{id}/snapshot` for `groups`, whose
/// values are at most `max_value` bytes.
pub(crate) fn router(groups: Arc<Groups>, max_value: usize) -> Router {
    // An append carries at most 64 entries (see `groups.rs`), a snapshot
    // chunk at most openraft's chunk size.
    let raft_limit = 64 * (max_value + 8192) + OVERHEAD;
    // A batch holds one RPC of any size, or many up to a bound.
    let batch_limit = raft_limit + MAX_BATCH_BYTES;
    Router::new()
        .route("/raft/{id}/snapshot", post(raft_snapshot))
        .layer(DefaultBodyLimit::max(raft_limit))
        .route(
            "/raft/batch",
            post(raft_batch).layer(DefaultBodyLimit::max(batch_limit)),
        )
        .with_state(groups)
}

/// Decodes a Raft RPC, hands it to the group, encodes the answer.
async fn raft_rpc<Req, Resp, Fut>(
    groups: &Groups,
    id: u32,
    body: &[u8],
    call: impl FnOnce(Group, Req) -> Fut,
) -> Result<Vec<u8>, ApiError>
where
    Req: serde::de::DeserializeOwned,
    Resp: serde::Serialize,
    Fut: std::future::Future<Output = Resp>,
{
    let g = groups.hosted(id)?;
    let req: Req = torua_raft::decode(body)
        .map_err(|e| ApiError::bad_request("invalid_raft_message", e.to_string()))?;
    torua_raft::encode(&call(g, req).await).map_err(ApiError::internal)
}

/// Appends and votes of many groups in one request (`net.rs`); each is
/// handed to its group at once, and the answers come back in order.
async fn raft_batch(
    State(groups): State<Arc<Groups>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let items: Vec<BatchItem> = torua_raft::decode(&body)
        .map_err(|e| ApiError::bad_request("invalid_raft_message", e.to_string()))?;
    let groups = &groups;
    let answers: Vec<BatchAnswer> =
        futures::future::join_all(items.into_iter().map(|it| async move {
            let res = match it.op {
                BatchOp::Append => {
                    raft_rpc(groups, it.group, &it.body, |g, req| async move {
                        g.raft.append_entries(req).await
                    })
                    .await
                }
                BatchOp::Vote => {
                    raft_rpc(groups, it.group, &it.body, |g, req| async move {
                        g.raft.vote(req).await
                    })
                    .await
                }
                BatchOp::TimeoutNow => {
                    raft_rpc(groups, it.group, &it.body, |g, ()| async move {
                        g.raft.trigger().elect().await.map_err(|e| e.to_string())
                    })
                    .await
                }
            };
            res.map(serde_bytes::ByteBuf::from)
                .map_err(|e| format!("{}: {}", e.code, e.message))
        }))
        .await;
    let answer = torua_raft::encode(&answers).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, RAFT_CONTENT_TYPE)], answer).into_response())
}

async fn raft_snapshot(
    State(groups): State<Arc<Groups>>,
    ShardId(id): ShardId,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))?;
    let answer = raft_rpc(&groups, id, &body, |g, req| async move {
        g.raft.install_snapshot(req).await
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, RAFT_CONTENT_TYPE)], answer).into_response())
}
