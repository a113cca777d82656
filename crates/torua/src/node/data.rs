//! Key reads and writes on the shards a node holds: through the shard's
//! Raft group when it is replicated, on the shard itself otherwise. Both
//! the HTTP routes and the coordinator's data stream call these.

use std::sync::Arc;

use axum::http::StatusCode;
use torua_raft::{Change, Condition};
use torua_store::{Expect, Op, Record, Shard};

use super::Node;
use crate::http::ApiError;
use crate::raft::groups::Refusal;
use crate::stream::Precondition;

/// The shard `id`, or `421 shard_not_owned`.
pub(super) fn held(n: &Node, id: u32) -> Result<Arc<Shard>, ApiError> {
    n.store.shard(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "shard_not_owned",
            format!("node {} does not hold shard {id}", n.id),
        )
    })
}

/// Reads a key; `stale` answers from this replica's state without asking
/// the leader.
pub(super) async fn read(
    n: &Node,
    id: u32,
    key: &str,
    stale: bool,
) -> Result<Option<Record>, Refusal> {
    match n.groups.get(id) {
        Some(g) => {
            if !stale {
                g.linearize().await?;
            }
            Ok(g.get(key).await?)
        }
        None => Ok(held(n, id)?.get(key).await?),
    }
}

fn condition_of(e: Expect) -> Condition {
    match e {
        Expect::Any => Condition::Any,
        Expect::Exists => Condition::Exists,
        Expect::Version(v) => Condition::Version(v),
        Expect::Absent => Condition::Absent,
    }
}

/// Writes one change through a group; its version.
async fn replicate(g: &crate::raft::groups::Group, change: Change) -> Result<u64, Refusal> {
    let versions = g.write(vec![change]).await?;
    versions
        .first()
        .copied()
        .ok_or_else(|| ApiError::internal("replicated write answered no version").into())
}

/// Writes a key if `when` holds; its new version.
pub(super) async fn write(
    n: &Node,
    id: u32,
    key: String,
    record: Record,
    when: Precondition,
) -> Result<u64, Refusal> {
    let (keep, expect) = when.split();
    if let Some(g) = n.groups.get(id) {
        let change = Change::Put {
            key,
            content_type: record.content_type,
            value: record.value,
            expect: condition_of(expect),
        };
        return replicate(&g, change).await;
    }
    let shard = held(n, id)?;
    match keep {
        // A move target takes the owner's version as it is (the
        // coordinator already applied the precondition at the owner).
        Some(v) => {
            let r = Record {
                version: v,
                ..record
            };
            shard.apply(vec![Op::Import(key, r)]).await?;
            Ok(v)
        }
        None => Ok(shard.put_if(key, record, expect).await?),
    }
}

/// Deletes a key if `when` holds (absent is fine with no precondition).
pub(super) async fn delete(
    n: &Node,
    id: u32,
    key: String,
    when: Precondition,
) -> Result<(), Refusal> {
    let expect = match when.split() {
        (None, expect) => expect,
        (Some(_), _) => {
            return Err(ApiError::bad_request(
                "invalid_precondition",
                "a delete cannot keep a version",
            )
            .into())
        }
    };
    match n.groups.get(id) {
        Some(g) => {
            let change = Change::Delete {
                key,
                expect: condition_of(expect),
            };
            replicate(&g, change).await.map(drop)
        }
        None => Ok(held(n, id)?.delete_if(key, expect).await?),
    }
}
