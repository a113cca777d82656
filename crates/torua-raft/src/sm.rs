//! A group's state machine: the shard's redb file.
//!
//! Applied entries and the applied position (last log id and membership,
//! the "marker") commit in one transaction, so a restarted replica resumes
//! exactly after what it applied. Applies are not fsync'd (the log has
//! them); a snapshot is built only after a flush, because the log up to
//! it may then be purged.

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageIOError};
use serde::{Deserialize, Serialize};
use torua_store::{Shard, SnapshotFile};

use crate::typ::{Entry, LogId, NodeId, StorageError, StoredMembership};
use crate::types::Writes;
use crate::{decode, encode, Member, Response, TypeConfig};

/// How an applied entry's answer is made from the writes' outcomes.
enum Carries {
    /// No writes: membership and blank entries.
    Nothing,
    /// One write, answered by its outcome.
    One,
    /// This many independent writes, answered together.
    Each(usize),
}

/// What the shard records as applied.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Marker {
    last: Option<LogId>,
    membership: StoredMembership,
}

fn sm_read(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_state_machine(&e).into()
}

/// One group's state machine over its shard. Clones share the shard.
#[derive(Clone)]
pub struct StateMachine {
    shard: Arc<Shard>,
    marker: Marker,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("shard", &self.shard.id())
            .field("applied", &self.marker.last)
            .finish()
    }
}

impl StateMachine {
    /// The state machine of `shard`, resuming after what it recorded.
    pub async fn open(shard: Arc<Shard>) -> Result<StateMachine, StorageError> {
        let marker = match shard.raft_applied().await.map_err(sm_read)? {
            Some(bytes) => decode(&bytes).map_err(sm_read)?,
            None => Marker::default(),
        };
        Ok(StateMachine { shard, marker })
    }

    /// The shard it applies to.
    pub fn shard(&self) -> &Arc<Shard> {
        &self.shard
    }

    /// A snapshot of the shard as it is now, with the position it is at.
    async fn current(&self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let (file, marker) = self.shard.snapshot().await.map_err(sm_read)?;
        let marker: Marker = match marker {
            Some(bytes) => decode(&bytes).map_err(sm_read)?,
            None => return Ok(None),
        };
        let id = match marker.last {
            Some(l) => format!("{}-{}-{}", self.shard.id(), l.leader_id, l.index),
            None => format!("{}-empty", self.shard.id()),
        };
        Ok(Some(Snapshot {
            meta: SnapshotMeta {
                last_log_id: marker.last,
                last_membership: marker.membership,
                snapshot_id: id,
            },
            snapshot: Box::new(file),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // The log up to this snapshot may be purged once it exists, so
        // what it covers must be durable here.
        self.shard.flush().await.map_err(sm_write)?;
        match self.current().await? {
            Some(s) => Ok(s),
            None => Ok(Snapshot {
                meta: SnapshotMeta {
                    last_log_id: None,
                    last_membership: StoredMembership::default(),
                    snapshot_id: format!("{}-empty", self.shard.id()),
                },
                snapshot: Box::new(self.shard.empty_snapshot().await.map_err(sm_read)?),
            }),
        }
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.marker.last, self.marker.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut marker = self.marker.clone();
        let mut writes = Vec::new();
        // Per entry: how its answer is made from the outcomes of `writes`.
        let mut carries = Vec::new();
        for entry in entries {
            marker.last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => carries.push(Carries::Nothing),
                EntryPayload::Normal(req) => match req.into_writes() {
                    Writes::One(ops) => {
                        writes.push(ops);
                        carries.push(Carries::One);
                    }
                    Writes::Each(each) => {
                        carries.push(Carries::Each(each.len()));
                        writes.extend(each);
                    }
                },
                EntryPayload::Membership(m) => {
                    marker.membership = StoredMembership::new(Some(entry.log_id), m);
                    carries.push(Carries::Nothing);
                }
            }
        }
        if carries.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = encode(&marker).map_err(sm_write)?;
        let mut outcomes = self
            .shard
            .apply_replicated(writes, bytes)
            .await
            .map_err(sm_write)?
            .into_iter();
        self.marker = marker;
        let id = self.shard.id();
        let mut next = move || -> Result<Response, StorageError> {
            let o = outcomes
                .next()
                .ok_or_else(|| sm_write(torua_store::StoreError::Closed(id)))?;
            Response::from_outcome(o).map_err(sm_write)
        };
        let mut out = Vec::with_capacity(carries.len());
        for c in carries {
            out.push(match c {
                Carries::Nothing => Response::empty(),
                Carries::One => next()?,
                Carries::Each(n) => {
                    Response::Each((0..n).map(|_| next()).collect::<Result<_, _>>()?)
                }
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotFile>, StorageError> {
        Ok(Box::new(
            self.shard.receive_snapshot().await.map_err(sm_write)?,
        ))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<SnapshotFile>,
    ) -> Result<(), StorageError> {
        let sig = Some(meta.signature());
        let marker = Marker {
            last: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let bytes = encode(&marker).map_err(sm_write)?;
        self.shard
            .restore(*snapshot, bytes)
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(sig, &e)))?;
        self.marker = marker;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        self.current().await
    }
}
