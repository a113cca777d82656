//! The coordinators' own Raft group: the metadata every coordinator must
//! agree on (placement, security state), kept as a few JSON documents in
//! one replicated shard, each written whole under compare-and-set on its
//! version.
//!
//! Any coordinator reads its local copy and serves requests from it. A
//! change is proposed to the group's leader, from a follower by
//! `POST /raft/propose`; its version condition makes a proposal computed
//! from a stale copy fail rather than overwrite a newer document, and the
//! proposer catches up (`POST /raft/read-index`: ReadIndex through the
//! leader) and computes it again ([`crate::persist::Persisted::update`]).
//! A change that takes rights away (the security state) is not answered
//! until every other coordinator holds it too (`POST /raft/sync`), so a
//! revoked key is refused everywhere once the revocation is answered.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use torua_raft::{typ, Change, Condition, Member, Request};

use super::groups::{Group, Groups, Refusal};
use super::net::{post as post_rpc, RAFT_CONTENT_TYPE};
use crate::http::ApiError;
use crate::tls::HttpClient;
use crate::wire::GroupStatus;
use crate::Error;

/// The group's id among the groups of a coordinator (it hosts only this).
const GROUP: u32 = 0;
/// How long a proposal or catch-up looks for a leader (an election takes
/// about two election timeouts).
const FIND_LEADER_FOR: Duration = Duration::from_secs(10);
/// Largest document (a security state with many keys stays far below).
pub(crate) const MAX_DOC: usize = 16 << 20;
/// Time allowed for one forwarded call.
const CALL_TTL: Duration = Duration::from_secs(8);
/// How long a change waits for each other coordinator to hold it (one
/// heartbeat normally; a coordinator down or cut off is not waited for
/// longer).
const SYNC_FOR: Duration = Duration::from_secs(3);

/// How a proposal ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proposed {
    /// Committed and applied on the leader: the document's new version.
    Applied(u64),
    /// The document was not at the expected version; nothing changed.
    Conflict,
}

/// A forwarded call's answer (postcard).
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Applied(u64),
    Conflict,
    /// Read index: the leader's applied position after confirming it leads.
    Index(u64),
    NotLeader,
    Failed {
        code: String,
        message: String,
    },
}

/// The coordinators' group, as one coordinator hosts it.
pub(crate) struct Docs {
    groups: Arc<Groups>,
    group: Group,
    client: HttpClient,
    /// The version of each document this coordinator's copy holds.
    held: tokio::sync::watch::Sender<BTreeMap<String, u64>>,
}

impl Docs {
    /// Opens (creating) the group's replica in `dir`; a new replica starts
    /// as a member of the group of `peers`. Every coordinator of a new
    /// cluster proposes the same initial membership, which is why any of
    /// them may.
    pub(crate) async fn open(
        me: &str,
        peers: &BTreeMap<String, String>,
        dir: &Path,
        client: HttpClient,
        timing: crate::config::RaftTiming,
    ) -> Result<Arc<Docs>, Error> {
        // The documents hold the security state: owner only.
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
        }
        let store = super::groups::open_store(dir, None).await?;
        let groups = Arc::new(Groups::new(
            "coordinators",
            me.to_owned(),
            Arc::new(store),
            client.clone(),
            timing,
        )?);
        let members = peers
            .iter()
            .map(|(name, addr)| Member {
                name: name.clone(),
                addr: addr.clone(),
            })
            .collect();
        let group = groups
            .open(GROUP, Some(members), true)
            .await
            .map_err(|e| Error::Config(format!("coordinator group: {}", e.message)))?;
        // An existing group keeps its members whatever the settings say now.
        let m = group.raft.metrics().borrow().clone();
        let current: BTreeMap<String, String> = m
            .membership_config
            .membership()
            .nodes()
            .map(|(_, n)| (n.name.clone(), n.addr.clone()))
            .collect();
        if !current.is_empty() && current != *peers {
            tracing::warn!(
                group = ?current,
                settings = ?peers,
                "TORUA_COORDINATOR_PEERS differs from the coordinators' group; the group's members stay (changing the set of coordinators is not supported)"
            );
        }
        Ok(Arc::new(Docs {
            groups,
            group,
            client,
            held: tokio::sync::watch::Sender::new(BTreeMap::new()),
        }))
    }

    /// The hosted group, for the Raft RPC routes.
    pub(crate) fn groups(&self) -> Arc<Groups> {
        self.groups.clone()
    }

    /// The group's state (role, leader, term) as `/ready` shows it.
    pub(crate) fn status(&self) -> GroupStatus {
        self.group.status()
    }

    /// Whether this coordinator leads the group now.
    pub(crate) fn leads(&self) -> bool {
        self.group.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The group's metrics, which change as entries are applied.
    pub(crate) fn metrics(&self) -> tokio::sync::watch::Receiver<typ::RaftMetrics> {
        self.group.raft.metrics()
    }

    /// The leader's URL, when one is known and it is not this coordinator.
    fn leader_addr(&self) -> Option<String> {
        let m = self.group.raft.metrics().borrow().clone();
        let leader = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// The local copy of document `key`: its JSON and version.
    pub(crate) async fn read(&self, key: &str) -> Result<Option<(Vec<u8>, u64)>, ApiError> {
        Ok(self.group.get(key).await?.map(|r| (r.value, r.version)))
    }

    /// Writes document `key` if it is at `expect`, through the leader.
    pub(crate) async fn put(
        &self,
        key: &str,
        json: Vec<u8>,
        expect: Condition,
    ) -> Result<Proposed, ApiError> {
        let req = Request {
            changes: vec![Change::Put {
                key: key.to_owned(),
                content_type: "application/json".into(),
                value: json,
                expect,
            }],
        };
        match self.call("propose", &req).await? {
            Answer::Applied(v) => Ok(Proposed::Applied(v)),
            Answer::Conflict => Ok(Proposed::Conflict),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the local copy holds every change committed before the
    /// call (ReadIndex through the leader).
    pub(crate) async fn catch_up(&self) -> Result<(), ApiError> {
        let index = match self.call("read-index", &()).await? {
            Answer::Index(i) => i,
            other => return Err(unexpected(other)),
        };
        let mut metrics = self.metrics();
        let reached = |m: &typ::RaftMetrics| m.last_applied.is_some_and(|l| l.index >= index);
        let caught_up = tokio::time::timeout(FIND_LEADER_FOR, metrics.wait_for(reached))
            .await
            .is_ok_and(|r| r.is_ok());
        match caught_up {
            true => Ok(()),
            false => Err(ApiError::unavailable(
                "metadata_unavailable",
                "this coordinator did not catch up with the coordinators' log in time",
            )),
        }
    }

    /// Records that this coordinator's copy of `key` is at `version`.
    pub(crate) fn holds(&self, key: &str, version: u64) {
        self.held.send_if_modified(|m| {
            let held = m.entry(key.to_owned()).or_default();
            let newer = version > *held;
            *held = (*held).max(version);
            newer
        });
    }

    /// Waits until every other coordinator holds version `version` of
    /// `key` or a newer one; names those that did not say so in time.
    pub(crate) async fn sync_everywhere(&self, key: &str, version: u64) -> Vec<String> {
        let m = self.group.raft.metrics().borrow().clone();
        let others: Vec<(String, String)> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != m.id)
            .map(|(_, n)| (n.name.clone(), n.addr.clone()))
            .collect();
        let Ok(bytes) = torua_raft::encode(&(key, version)) else {
            return others.into_iter().map(|(name, _)| name).collect();
        };
        let calls = others.into_iter().map(|(name, addr)| {
            let bytes = bytes.clone();
            async move {
                let url = format!("{addr}/raft/sync");
                let answer = post_rpc(&self.client, &url, bytes, SYNC_FOR + Duration::from_secs(1))
                    .await
                    .ok()
                    .and_then(|b| torua_raft::decode::<Answer>(&b).ok());
                (!matches!(answer, Some(Answer::Index(_)))).then_some(name)
            }
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The other side of [`Docs::sync_everywhere`].
    async fn synced(&self, key: &str, version: u64) -> Answer {
        let mut held = self.held.subscribe();
        let reached = held.wait_for(|m| m.get(key).is_some_and(|v| *v >= version));
        let reached = tokio::time::timeout(SYNC_FOR, reached)
            .await
            .is_ok_and(|r| r.is_ok());
        match reached {
            true => Answer::Index(version),
            false => failed(
                "not_synced",
                format!("document {key} is not at version {version} here yet"),
            ),
        }
    }

    /// Runs `op` on the leader: here when this coordinator leads, else
    /// forwarded. Retried while no leader is known or the leader cannot be
    /// reached (the call was not delivered, so nothing happened).
    async fn call<B: Serialize>(&self, op: &str, body: &B) -> Result<Answer, ApiError> {
        let deadline = Instant::now() + FIND_LEADER_FOR;
        let bytes = torua_raft::encode(body).map_err(ApiError::internal)?;
        loop {
            let answer = if self.leads() {
                self.answer(op, &bytes).await
            } else if let Some(addr) = self.leader_addr() {
                let url = format!("{addr}/raft/{op}");
                match post_rpc(&self.client, &url, bytes.clone(), CALL_TTL).await {
                    Ok(b) => torua_raft::decode(&b).map_err(ApiError::internal)?,
                    Err(f) if f.undelivered() => Answer::NotLeader,
                    Err(f) => {
                        return Err(ApiError::unavailable(
                            "outcome_unknown",
                            format!(
                                "the coordinators' leader did not answer ({}); the change may or may not be made",
                                f.message()
                            ),
                        ))
                    }
                }
            } else {
                Answer::NotLeader
            };
            // A leader cut off from its quorum wrote nothing either.
            let answer = match answer {
                Answer::Failed { code, .. } if code == "no_quorum" => Answer::NotLeader,
                other => other,
            };
            match answer {
                Answer::NotLeader if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Answer::NotLeader => {
                    return Err(ApiError::unavailable(
                        "no_leader",
                        "the coordinators have no leader (fewer than a quorum of them are up, or an election is under way); nothing was changed",
                    ))
                }
                Answer::Failed { code, message } if code == "outcome_unknown" => {
                    return Err(ApiError::unavailable("outcome_unknown", message))
                }
                Answer::Failed { code, message } => {
                    return Err(ApiError::unavailable(
                        "metadata_unavailable",
                        format!("the coordinators' leader refused: {code}: {message}"),
                    ))
                }
                other => return Ok(other),
            }
        }
    }

    /// The leader's side of [`Docs::call`].
    async fn answer(&self, op: &str, body: &[u8]) -> Answer {
        let refused = |r: Refusal| match r {
            Refusal::NotLeader(_) => Answer::NotLeader,
            Refusal::Api(e) if e.code == "precondition_failed" => Answer::Conflict,
            Refusal::Api(e) => Answer::Failed {
                code: e.code.into(),
                message: e.message,
            },
        };
        match op {
            "propose" => {
                let req: Request = match torua_raft::decode(body) {
                    Ok(r) => r,
                    Err(e) => return failed("invalid_raft_message", e),
                };
                match self.group.write(req.changes).await {
                    Ok(v) => {
                        // Tell the followers of the commit now, not at the
                        // next heartbeat: a change may be waiting for them.
                        let _ = self.group.raft.trigger().heartbeat().await;
                        Answer::Applied(v.first().copied().unwrap_or_default())
                    }
                    Err(r) => refused(r),
                }
            }
            "read-index" => match self.group.linearize().await {
                Ok(()) => {
                    let m = self.group.raft.metrics().borrow().clone();
                    Answer::Index(m.last_applied.map_or(0, |l| l.index))
                }
                Err(r) => refused(r),
            },
            _ => failed("unknown_call", op),
        }
    }
}

fn failed(code: &str, e: impl std::fmt::Display) -> Answer {
    Answer::Failed {
        code: code.into(),
        message: e.to_string(),
    }
}

fn unexpected(a: Answer) -> ApiError {
    ApiError::internal(format!(
        "unexpected answer from the coordinators' leader: {a:?}"
    ))
}

/// `POST /raft/propose` and `POST /raft/read-index`: what followers
/// forward to the leader; `POST /raft/sync`: what a coordinator asks the
/// others after a change. Mounted behind the coordinator-only check.
pub(crate) fn router(docs: Arc<Docs>) -> Router {
    Router::new()
        .route("/raft/propose", post(forwarded_propose))
        .route("/raft/read-index", post(forwarded_read_index))
        .route("/raft/sync", post(sync))
        .layer(DefaultBodyLimit::max(MAX_DOC + 4096))
        .with_state(docs)
}

async fn forwarded(
    docs: &Docs,
    op: &str,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    let answer = match body {
        Ok(b) => docs.answer(op, &b).await,
        Err(e) => failed("invalid_body", e.body_text()),
    };
    reply(&answer)
}

fn reply(answer: &Answer) -> impl IntoResponse {
    let bytes = torua_raft::encode(answer).unwrap_or_default();
    ([(header::CONTENT_TYPE, RAFT_CONTENT_TYPE)], bytes)
}

async fn forwarded_propose(
    State(docs): State<Arc<Docs>>,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    forwarded(&docs, "propose", body).await
}

async fn forwarded_read_index(
    State(docs): State<Arc<Docs>>,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    forwarded(&docs, "read-index", body).await
}

async fn sync(
    State(docs): State<Arc<Docs>>,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    let asked = body
        .map_err(|e| e.body_text())
        .and_then(|b| torua_raft::decode::<(String, u64)>(&b).map_err(|e| e.to_string()));
    let answer = match asked {
        Ok((key, version)) => docs.synced(&key, version).await,
        Err(e) => failed("invalid_body", e),
    };
    reply(&answer)
}
