//! The coordinator's HTTP client for node APIs. Errors keep the node's own
//! `{"error":{code,message}}` so clients see why a node refused.

use std::time::Duration;

use axum::http::StatusCode;
use bytes::Bytes;
use torua_store::{Expect, Record};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::http::extract::encode_key;
use crate::stream::client::{Failed, Links, Mux};
use crate::stream::{encode, Answer, Op, Precondition};

use crate::http::{etag, parse_etag, ApiError, KEEP_VERSION};
use crate::tls::{HttpClient, Tls, NODE_IDENTITY_PREFIX};
use crate::wire::{
    decode_entries, encode_entries, GroupRequest, GroupStatus, KeyPage, NodeInfo, OpenShardRequest,
};

/// Why a node call failed.
#[derive(Debug)]
pub enum CallError {
    /// The connection was refused or could not be made: the request never
    /// reached the node, so nothing happened.
    NotSent(String),
    /// Sent, but no answer (timeout, reset): outcome unknown for writes.
    Unreachable(String),
    /// The node answered with an error.
    Status {
        status: StatusCode,
        code: String,
        message: String,
        /// The leader a replica named when it refused (`421 not_leader`).
        leader: Option<String>,
    },
}

impl CallError {
    /// The node does not hold the shard (it moved away meanwhile).
    pub fn is_not_owned(&self) -> bool {
        matches!(self, CallError::Status { status, .. } if *status == StatusCode::MISDIRECTED_REQUEST)
    }

    /// Certainly not applied, and another replica may serve it: the call
    /// never left, or a replica refused as not leading or cut off from its
    /// quorum.
    pub fn try_elsewhere(&self) -> bool {
        match self {
            CallError::NotSent(_) => true,
            CallError::Status { status, code, .. } => {
                *status == StatusCode::MISDIRECTED_REQUEST
                    || code == "no_quorum"
                    || code == "no_leader"
                    || code == "group_not_hosted"
            }
            CallError::Unreachable(_) => false,
        }
    }

    /// Converts to a client-facing error naming the node and shard.
    pub fn into_api(self, node: &str, shard: u32) -> ApiError {
        match self {
            CallError::NotSent(why) => ApiError::unavailable(
                "node_unavailable",
                format!("shard {shard} is on node {node}, which could not be reached ({why}); nothing was done"),
            ),
            CallError::Unreachable(why) => ApiError::unavailable(
                "outcome_unknown",
                format!("shard {shard} is on node {node}, which did not answer ({why}); a write may or may not have been applied"),
            ),
            CallError::Status {
                status,
                code,
                message,
                ..
            } => {
                let code = known_code(&code);
                if status.is_server_error() || status == StatusCode::MISDIRECTED_REQUEST {
                    ApiError::unavailable(code, format!("node {node} (shard {shard}): {message}"))
                } else {
                    ApiError::new(status, code, message)
                }
            }
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NotSent(w) => write!(f, "not reached: {w}"),
            CallError::Unreachable(w) => write!(f, "unreachable: {w}"),
            CallError::Status {
                status,
                code,
                message,
                ..
            } => write!(f, "{status} {code}: {message}"),
        }
    }
}

/// Error codes are `&'static str` in [`ApiError`]; map the node's to ours.
fn known_code(code: &str) -> &'static str {
    match code {
        "invalid_key" => "invalid_key",
        "key_too_large" => "key_too_large",
        "payload_too_large" => "payload_too_large",
        "invalid_content_type" => "invalid_content_type",
        "invalid_input" => "invalid_input",
        "invalid_limit" => "invalid_limit",
        "not_found" => "not_found",
        "precondition_failed" => "precondition_failed",
        "invalid_precondition" => "invalid_precondition",
        "shard_not_owned" => "shard_not_owned",
        "forbidden" => "forbidden",
        "not_leader" => "not_leader",
        "no_quorum" => "no_quorum",
        "no_leader" => "no_leader",
        "outcome_unknown" => "outcome_unknown",
        "replica_stopped" => "replica_stopped",
        "membership_change_failed" => "membership_change_failed",
        "group_not_hosted" => "group_not_hosted",
        "invalid_consistency" => "invalid_consistency",
        _ => "node_error",
    }
}

/// `req` with the headers that carry `when` to a node over HTTP.
fn with_precondition(req: reqwest::RequestBuilder, when: Precondition) -> reqwest::RequestBuilder {
    use reqwest::header::{IF_MATCH, IF_NONE_MATCH};
    match when {
        Precondition::Any => req,
        Precondition::Exists => req.header(IF_MATCH, "*"),
        Precondition::Version(v) => req.header(IF_MATCH, etag(v)),
        Precondition::Absent => req.header(IF_NONE_MATCH, "*"),
        Precondition::Keep(v) => req.header(KEEP_VERSION, v.to_string()),
    }
}

/// The version in a node's `ETag`.
fn version_of(res: &reqwest::Response) -> R<u64> {
    res.headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_etag)
        .ok_or_else(|| CallError::Unreachable("the node's answer has no ETag".into()))
}

/// HTTP client for node APIs with pooled connections. With TLS on, over
/// mutual TLS, presenting the coordinator's certificate and accepting only
/// the certificate of the node called (`node:<id>`), one client per node.
///
/// Client credentials never travel to nodes: the coordinator has
/// authenticated and authorized the request, and the node API answers only
/// the coordinator's certificate, so a node has nothing it could replay.
#[derive(Clone)]
pub struct NodeClient {
    tls: Option<Arc<Tls>>,
    /// With TLS off, one client for every node.
    shared: HttpClient,
    /// With TLS on, by node id.
    pinned: Arc<RwLock<HashMap<String, HttpClient>>>,
    timeout: Duration,
    /// The data stream to each node, by node id and address.
    streams: Arc<Links<crate::stream::Response>>,
    /// Largest value a node may answer with.
    max_value: usize,
}

type R<T> = Result<T, CallError>;

fn configure(b: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    b.connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
}

impl NodeClient {
    /// A client whose data calls time out after `timeout`, for values of
    /// up to `max_value` bytes.
    pub fn new(timeout: Duration, tls: Option<Arc<Tls>>, max_value: usize) -> Self {
        NodeClient {
            shared: HttpClient::new(None, configure),
            tls,
            pinned: Arc::default(),
            timeout,
            streams: Arc::default(),
            max_value,
        }
    }

    /// The data stream to `node`, opened if need be; `None` for a node
    /// that has none (an older version), which is called over HTTP.
    async fn stream(&self, node: &NodeInfo) -> R<Option<Arc<Mux<crate::stream::Response>>>> {
        let max = self.max_value + crate::stream::FRAME_OVERHEAD;
        let path = crate::stream::PATH;
        self.streams
            .to(
                &node.id,
                &node.addr,
                path,
                || self.http(node),
                max,
                self.timeout,
            )
            .await
            // Whatever went wrong, no operation was sent yet.
            .map_err(|e| CallError::NotSent(short(&e)))
    }

    /// Runs `op` on `mux`: the node's answer, or its refusal as an error.
    async fn on_stream(&self, mux: &Mux<crate::stream::Response>, shard: u32, op: Op) -> R<Answer> {
        let frame = |id| encode(&crate::stream::Request { id, shard, op });
        match mux.call(frame, self.timeout).await.map(|r| r.answer) {
            Ok(Answer::Refused {
                status,
                code,
                message,
                leader,
            }) => Err(CallError::Status {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                code,
                message,
                leader,
            }),
            Ok(answer) => Ok(answer),
            Err(Failed::NotSent(why)) => Err(CallError::NotSent(why)),
            Err(Failed::Lost(why)) => Err(CallError::Unreachable(why)),
        }
    }

    /// Whether node calls go over TLS (and nodes must advertise `https`).
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The client for calls to `node`.
    fn http(&self, node: &NodeInfo) -> reqwest::Client {
        let Some(tls) = &self.tls else {
            return self.shared.get();
        };
        let found = self
            .pinned
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node.id)
            .cloned();
        let client = found.unwrap_or_else(|| {
            let identity = format!("{NODE_IDENTITY_PREFIX}{}", node.id);
            let c = HttpClient::pinned(tls.clone(), configure, identity);
            // Bounded by the number of node ids the cluster has known.
            self.pinned
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(node.id.clone(), c.clone());
            c
        });
        client.get()
    }

    fn url(node: &NodeInfo, path: &str) -> String {
        format!("{}{path}", node.addr)
    }

    /// [`Self::send`], then the answer's JSON body.
    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> R<T> {
        let res = self.send(req, timeout).await?;
        res.json()
            .await
            .map_err(|e| CallError::Unreachable(short(&e)))
    }

    async fn send(&self, req: reqwest::RequestBuilder, timeout: Duration) -> R<reqwest::Response> {
        let res = req.timeout(timeout).send().await.map_err(|e| {
            // A connect error means no byte of the request left: safe to
            // report as not done. Anything later (timeout, reset) is unknown.
            if e.is_connect() {
                CallError::NotSent(short(&e))
            } else {
                CallError::Unreachable(short(&e))
            }
        })?;
        if res.status().is_success() {
            return Ok(res);
        }
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let leader = res
            .headers()
            .get(crate::raft::groups::LEADER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        let field = |f: &str| body["error"][f].as_str().unwrap_or_default().to_owned();
        let message = match field("message") {
            m if m.is_empty() => format!("node answered {status}"),
            m => m,
        };
        Err(CallError::Status {
            status,
            code: field("code"),
            message,
            leader,
        })
    }

    fn key_url(node: &NodeInfo, shard: u32, key: &str) -> String {
        Self::url(node, &format!("/shard/{shard}/store/{}", encode_key(key)))
    }

    /// Reads a key: `Ok(None)` when absent. `stale` lets a replicated
    /// shard's replica answer from its own state.
    pub async fn get(
        &self,
        node: &NodeInfo,
        shard: u32,
        key: &str,
        stale: bool,
    ) -> R<Option<Record>> {
        if let Some(mux) = self.stream(node).await? {
            let op = Op::Get {
                key: key.to_owned(),
                stale,
            };
            return match self.on_stream(&mux, shard, op).await? {
                Answer::Value {
                    version,
                    content_type,
                    value,
                } => Ok(Some(Record {
                    version,
                    ..Record::new(content_type, value)
                })),
                Answer::Absent => Ok(None),
                other => Err(unexpected(other)),
            };
        }
        let mut req = self.http(node).get(Self::key_url(node, shard, key));
        if stale {
            req = req.query(&[("consistency", "stale")]);
        }
        match self.send(req, self.timeout).await {
            Ok(res) => {
                let ct = res
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/octet-stream")
                    .to_owned();
                let version = version_of(&res)?;
                let body = res
                    .bytes()
                    .await
                    .map_err(|e| CallError::Unreachable(short(&e)))?;
                Ok(Some(Record {
                    version,
                    ..Record::new(ct, body.to_vec())
                }))
            }
            Err(CallError::Status {
                status: StatusCode::NOT_FOUND,
                code,
                ..
            }) if code == "not_found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a key if `expect` holds there — or, with `keep`, stores it
    /// with exactly that version (a move target) — and returns its version.
    pub async fn put(
        &self,
        node: &NodeInfo,
        shard: u32,
        key: &str,
        content_type: &str,
        value: Bytes,
        when: Precondition,
    ) -> R<u64> {
        if let Some(mux) = self.stream(node).await? {
            let op = Op::Put {
                key: key.to_owned(),
                content_type: content_type.to_owned(),
                value: value.to_vec(),
                when,
            };
            return match self.on_stream(&mux, shard, op).await? {
                Answer::Written { version } => Ok(version),
                other => Err(unexpected(other)),
            };
        }
        let req = self
            .http(node)
            .put(Self::key_url(node, shard, key))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(value);
        let res = self
            .send(with_precondition(req, when), self.timeout)
            .await?;
        version_of(&res)
    }

    /// Deletes a key if `expect` holds (absent is fine with `Expect::Any`).
    pub async fn delete(&self, node: &NodeInfo, shard: u32, key: &str, expect: Expect) -> R<()> {
        if let Some(mux) = self.stream(node).await? {
            let op = Op::Delete {
                key: key.to_owned(),
                when: expect.into(),
            };
            return match self.on_stream(&mux, shard, op).await? {
                Answer::Deleted => Ok(()),
                other => Err(unexpected(other)),
            };
        }
        let req = self.http(node).delete(Self::key_url(node, shard, key));
        self.send(with_precondition(req, expect.into()), self.timeout)
            .await
            .map(drop)
    }

    /// Lists keys of one shard.
    pub async fn list(
        &self,
        node: &NodeInfo,
        shard: u32,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> R<KeyPage> {
        let mut q = vec![("prefix", prefix.to_owned()), ("limit", limit.to_string())];
        if let Some(a) = after {
            q.push(("after", a.to_owned()));
        }
        let req = self
            .http(node)
            .get(Self::url(node, &format!("/shard/{shard}/store")))
            .query(&q);
        self.send_json(req, self.timeout).await
    }

    /// Opens (creates) a shard on a node.
    pub async fn open_shard(&self, node: &NodeInfo, shard: u32, state: &str, reset: bool) -> R<()> {
        let body = OpenShardRequest {
            state: state.into(),
            reset,
        };
        self.send(
            self.http(node)
                .put(Self::url(node, &format!("/shard/{shard}")))
                .json(&body),
            self.timeout,
        )
        .await
        .map(drop)
    }

    /// Hosts a replica of a shard's group on a node (bootstrapping the
    /// group there when asked).
    pub async fn open_group(
        &self,
        node: &NodeInfo,
        shard: u32,
        req: &GroupRequest,
    ) -> R<GroupStatus> {
        self.send_json(
            self.http(node)
                .put(Self::url(node, &format!("/shard/{shard}/group")))
                .json(req),
            self.timeout,
        )
        .await
    }

    /// Hands a group's leadership over to the voter `to`; sent to its leader.
    pub async fn transfer_leader(
        &self,
        node: &NodeInfo,
        shard: u32,
        to: &NodeInfo,
    ) -> R<GroupStatus> {
        self.send_json(
            self.http(node)
                .post(Self::url(node, &format!("/shard/{shard}/group/transfer")))
                .json(&serde_json::json!({ "to": to })),
            Duration::from_secs(10),
        )
        .await
    }

    /// Changes a group's voters; sent to its leader, which adds new members
    /// as learners, lets them catch up, then switches.
    pub async fn set_members(
        &self,
        node: &NodeInfo,
        shard: u32,
        req: &GroupRequest,
    ) -> R<GroupStatus> {
        self.send_json(
            self.http(node)
                .post(Self::url(node, &format!("/shard/{shard}/group/members")))
                .json(req),
            Duration::from_secs(120),
        )
        .await
    }

    /// Stops a node's replica of a group and deletes it.
    pub async fn drop_group(&self, node: &NodeInfo, shard: u32) -> R<()> {
        self.send(
            self.http(node)
                .delete(Self::url(node, &format!("/shard/{shard}/group"))),
            self.timeout,
        )
        .await
        .map(drop)
    }

    /// Drops a shard and its data on a node.
    pub async fn drop_shard(&self, node: &NodeInfo, shard: u32) -> R<()> {
        self.send(
            self.http(node)
                .delete(Self::url(node, &format!("/shard/{shard}"))),
            self.timeout,
        )
        .await
        .map(drop)
    }

    /// One page of a shard's entries after `after`; empty at the end.
    pub async fn export(
        &self,
        node: &NodeInfo,
        shard: u32,
        after: Option<&str>,
    ) -> R<Vec<(String, Record)>> {
        let mut q = vec![("limit", "1000".to_owned())];
        if let Some(a) = after {
            q.push(("after", a.to_owned()));
        }
        let res = self
            .send(
                self.http(node)
                    .get(Self::url(node, &format!("/shard/{shard}/export")))
                    .query(&q),
                Duration::from_secs(120),
            )
            .await?;
        let body = res
            .bytes()
            .await
            .map_err(|e| CallError::Unreachable(short(&e)))?;
        decode_entries(&body).map_err(|e| CallError::Status {
            status: StatusCode::BAD_GATEWAY,
            code: "invalid_entries".into(),
            message: e,
            leader: None,
        })
    }

    /// Writes a page of entries into a shard.
    pub async fn import(&self, node: &NodeInfo, shard: u32, entries: &[(String, Record)]) -> R<()> {
        let req = self
            .http(node)
            .post(Self::url(node, &format!("/shard/{shard}/import")))
            .body(encode_entries(entries));
        self.send(req, Duration::from_secs(120)).await.map(drop)
    }

    /// `GET /health` with a short timeout.
    pub async fn health(&self, node: &NodeInfo, timeout: Duration) -> R<()> {
        self.send(self.http(node).get(Self::url(node, "/health")), timeout)
            .await
            .map(drop)
    }

    /// `GET` or `POST` (empty body) a node's `path` and decode its JSON answer.
    pub async fn call_json(
        &self,
        node: &NodeInfo,
        method: reqwest::Method,
        path: &str,
        timeout: Duration,
    ) -> R<serde_json::Value> {
        let req = self.http(node).request(method, Self::url(node, path));
        self.send_json(req, timeout).await
    }

    /// POSTs JSON to a node's `path` (broadcast).
    pub async fn post_json(
        &self,
        node: &NodeInfo,
        path: &str,
        payload: &serde_json::Value,
        timeout: Duration,
    ) -> R<()> {
        let req = self.http(node).post(Self::url(node, path)).json(payload);
        self.send(req, timeout).await.map(drop)
    }
}

/// A node answered a stream request with the wrong kind of answer.
fn unexpected(answer: Answer) -> CallError {
    let kind = match answer {
        Answer::Value { .. } => "a value",
        Answer::Absent => "absent",
        Answer::Written { .. } => "written",
        Answer::Deleted => "deleted",
        Answer::Refused { .. } => "refused",
    };
    CallError::Unreachable(format!(
        "the node answered `{kind}`, which does not fit the request"
    ))
}

/// reqwest errors nest their cause; show the innermost, which says what happened.
fn short(e: &reqwest::Error) -> String {
    let mut src: &dyn std::error::Error = e;
    while let Some(next) = src.source() {
        src = next;
    }
    if e.is_timeout() {
        "timed out".into()
    } else {
        src.to_string()
    }
}
