//! The receiving end of [`super::net`]: Raft RPCs from peer replicas,
//! handed to the hosted group they name. The caller mounts the router
//! behind its own check of which certificates may send them (nodes accept
//! nodes, coordinators accept coordinators); here each RPC is checked
//! against its group: its sender (the vote it carries, or a TimeoutNow's
//! leader) must be the member the certificate names, and a member or
//! learner of the group. Refusals are counted in
//! `torua_raft_rpc_refused_total{reason}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use torua_raft::{raft_id, typ};

use super::groups::{Group, Groups, SNAPSHOT_CHUNK};
use super::net::{
    BatchAnswer, BatchItem, BatchOp, RaftCall, RaftReply, MAX_BATCH_BYTES, RAFT_CONTENT_TYPE,
    STREAM_PATH,
};
use crate::http::extract::ShardId;
use crate::http::{ApiError, Metrics};
use crate::tls::Peer;

/// Extra room for framing around the largest values in one append.
const OVERHEAD: usize = 8 << 20;

/// Labels of `torua_raft_rpc_refused_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    /// `wrong_sender`, `not_member` or `not_leader`.
    reason: &'static str,
}

/// Who may send a hosted group Raft messages, and the count of snapshot
/// chunks they sent.
#[derive(Clone)]
pub(crate) struct Senders {
    /// The member a certificate identity stands for (`node:n1` → `n1`);
    /// `None` when identities name no member (coordinators share one
    /// certificate), and then only membership is checked.
    member_of: fn(&str) -> Option<&str>,
    refused: Family<RefusedLabels, Counter>,
    /// `torua_raft_snapshot_chunks_received_total`: chunks accepted.
    chunks: Counter,
}

impl Senders {
    /// Checks senders with `member_of`, counting refusals in `metrics`.
    pub(crate) fn new(metrics: &Metrics, member_of: fn(&str) -> Option<&str>) -> Senders {
        let refused = Family::<RefusedLabels, Counter>::default();
        let chunks = Counter::default();
        if let Ok(mut r) = metrics.registry.lock() {
            r.register(
                "raft_rpc_refused",
                "Raft messages refused because of their sender",
                refused.clone(),
            );
            r.register(
                "raft_snapshot_chunks_received",
                "Chunks of Raft snapshots received and accepted from leaders",
                chunks.clone(),
            );
        }
        Senders {
            member_of,
            refused,
            chunks,
        }
    }

    fn refuse(&self, reason: &'static str, message: String) -> ApiError {
        self.refused.get_or_create(&RefusedLabels { reason }).inc();
        tracing::warn!(reason, "{message}");
        ApiError::new(StatusCode::FORBIDDEN, "sender_refused", message)
    }

    /// Allows a message to `g` from the replica `from` over a connection
    /// whose certificate identity is `identity`.
    fn check(&self, g: &Group, from: u64, identity: Option<&str>) -> Result<(), ApiError> {
        if let Some((who, name)) = identity.and_then(|i| Some((i, (self.member_of)(i)?))) {
            if raft_id(name) != from {
                return Err(self.refuse(
                    "wrong_sender",
                    format!(
                        "group {}: a Raft message from certificate `{who}` names another sender",
                        g.shard.id()
                    ),
                ));
            }
        }
        if !g.knows(from) {
            return Err(self.refuse(
                "not_member",
                format!(
                    "group {}: a Raft message from a replica that is not a member",
                    g.shard.id()
                ),
            ));
        }
        Ok(())
    }
}

/// `POST /raft/batch` and `POST /raft/{id}/snapshot` for `groups`, whose
/// values are at most `max_value` bytes, from `senders`.
pub(crate) fn router(groups: Arc<Groups>, max_value: usize, senders: Senders) -> Router {
    // A snapshot travels in chunks of SNAPSHOT_CHUNK bytes; an append
    // carries about MAX_APPEND_BYTES, or one entry (one value) when that is
    // larger; a batch holds RPCs up to MAX_BATCH_BYTES plus one more.
    let snapshot_limit = SNAPSHOT_CHUNK as usize + OVERHEAD;
    let append_limit = torua_raft::MAX_APPEND_BYTES.max(max_value + 8192);
    let batch_limit = append_limit + MAX_BATCH_BYTES + OVERHEAD;
    Router::new()
        .route(STREAM_PATH, get(raft_stream))
        .route(
            "/raft/{id}/snapshot",
            post(raft_snapshot).layer(DefaultBodyLimit::max(snapshot_limit)),
        )
        .route(
            "/raft/batch",
            post(raft_batch).layer(DefaultBodyLimit::max(batch_limit)),
        )
        .with_state(Rpc {
            groups,
            senders,
            batch_limit,
        })
}

#[derive(Clone)]
struct Rpc {
    groups: Arc<Groups>,
    senders: Senders,
    /// Largest batch accepted, in bytes.
    batch_limit: usize,
}

/// The sender a Raft request names (the vote it carries).
trait Sent {
    fn sender(&self) -> Option<u64>;
}

impl Sent for typ::AppendEntriesRequest {
    fn sender(&self) -> Option<u64> {
        self.vote.leader_id().voted_for()
    }
}

impl Sent for typ::VoteRequest {
    fn sender(&self) -> Option<u64> {
        self.vote.leader_id().voted_for()
    }
}

impl Sent for typ::InstallSnapshotRequest {
    fn sender(&self) -> Option<u64> {
        self.vote.leader_id().voted_for()
    }
}

/// Decodes a Raft RPC, checks its sender, hands it to the group, encodes
/// the answer.
async fn raft_rpc<Req, Resp, Fut>(
    rpc: &Rpc,
    identity: Option<&str>,
    id: u32,
    body: &[u8],
    call: impl FnOnce(Group, Req) -> Fut,
) -> Result<Vec<u8>, ApiError>
where
    Req: serde::de::DeserializeOwned + Sent,
    Resp: serde::Serialize,
    Fut: std::future::Future<Output = Resp>,
{
    let g = rpc.groups.hosted(id)?;
    let req: Req = torua_raft::decode(body)
        .map_err(|e| ApiError::bad_request("invalid_raft_message", e.to_string()))?;
    let from = req.sender().ok_or_else(|| {
        ApiError::bad_request("invalid_raft_message", "the message names no sender")
    })?;
    rpc.senders.check(&g, from, identity)?;
    torua_raft::encode(&call(g, req).await).map_err(ApiError::internal)
}

/// A TimeoutNow: only the group's leader, as this replica knows it, may
/// hand it the leadership.
async fn timeout_now(
    rpc: &Rpc,
    identity: Option<&str>,
    id: u32,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let g = rpc.groups.hosted(id)?;
    let from: u64 = torua_raft::decode(body)
        .map_err(|e| ApiError::bad_request("invalid_raft_message", e.to_string()))?;
    rpc.senders.check(&g, from, identity)?;
    if g.current_leader() != Some(from) {
        return Err(rpc.senders.refuse(
            "not_leader",
            format!("group {id}: a leadership hand-over from a replica that does not lead it"),
        ));
    }
    let elected = g.raft.trigger().elect().await.map_err(|e| e.to_string());
    torua_raft::encode(&elected).map_err(ApiError::internal)
}

/// Appends and votes of many groups in one request (`net.rs`); each is
/// handed to its group at once, and the answers come back in order.
async fn answer_batch(
    rpc: &Rpc,
    identity: Option<&str>,
    items: Vec<BatchItem>,
) -> Vec<BatchAnswer> {
    futures::future::join_all(items.into_iter().map(|it| async move {
        let res = match it.op {
            BatchOp::Append => {
                raft_rpc(rpc, identity, it.group, &it.body, |g, req| async move {
                    g.raft.append_entries(req).await
                })
                .await
            }
            BatchOp::Vote => {
                raft_rpc(rpc, identity, it.group, &it.body, |g, req| async move {
                    g.raft.vote(req).await
                })
                .await
            }
            BatchOp::TimeoutNow => timeout_now(rpc, identity, it.group, &it.body).await,
        };
        res.map(serde_bytes::ByteBuf::from)
            .map_err(|e| format!("{}: {}", e.code, e.message))
    }))
    .await
}

/// `POST /raft/batch`: one batch (a peer of an older version, which has no
/// stream).
async fn raft_batch(
    State(rpc): State<Rpc>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let items: Vec<BatchItem> = torua_raft::decode(&body)
        .map_err(|e| ApiError::bad_request("invalid_raft_message", e.to_string()))?;
    let answers = answer_batch(&rpc, peer.identity.as_deref(), items).await;
    let answer = torua_raft::encode(&answers).map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, RAFT_CONTENT_TYPE)], answer).into_response())
}

/// `GET /raft/stream` with `Upgrade: torua-stream`: batches as frames on
/// one persistent connection, each answered when its RPCs are, checked
/// against the certificate the connection presented.
async fn raft_stream(
    State(rpc): State<Rpc>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: axum::extract::Request,
) -> Response {
    let identity: Option<Arc<str>> = peer.identity.as_deref().map(Arc::from);
    crate::stream::server::upgrade(req, move |io| {
        let max = rpc.batch_limit;
        crate::stream::server::serve(io, max, None, move |call: RaftCall| {
            let (rpc, identity) = (rpc.clone(), identity.clone());
            async move {
                let answers = answer_batch(&rpc, identity.as_deref(), call.items).await;
                crate::stream::encode(&RaftReply {
                    id: call.id,
                    answers,
                })
            }
        })
    })
}

async fn raft_snapshot(
    State(rpc): State<Rpc>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    ShardId(id): ShardId,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body?;
    let chunks = rpc.senders.chunks.clone();
    let answer = raft_rpc(
        &rpc,
        peer.identity.as_deref(),
        id,
        &body,
        |g, req| async move {
            let res = g.raft.install_snapshot(req).await;
            if res.is_ok() {
                chunks.inc();
            }
            res
        },
    )
    .await?;
    Ok(([(header::CONTENT_TYPE, RAFT_CONTENT_TYPE)], answer).into_response())
}
