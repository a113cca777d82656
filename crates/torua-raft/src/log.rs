//! A group's Raft log in the node's shared write-ahead log.
//!
//! openraft wants appended entries readable as soon as `append` returns,
//! and durable when its callback runs. The [`Wal`] makes them durable in
//! its next group commit, so until then they wait in `tail`, an in-memory
//! overlay that readers consult first; an entry leaves it once durable.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};
use torua_store::{non_empty, Wal, WalWrite};

use crate::typ::{Entry, NodeId, StorageError};
use crate::{decode, encode, TypeConfig};

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// One group's log. Clones share the overlay; any clone reads and writes.
#[derive(Clone)]
pub struct LogStore {
    group: u32,
    wal: Arc<Wal>,
    /// Appended entries not yet known durable, by index.
    tail: Arc<Mutex<BTreeMap<u64, Entry>>>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("group", &self.group)
            .finish()
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    /// The log of group `group` (the shard id) in `wal`.
    pub fn new(group: u32, wal: Arc<Wal>) -> LogStore {
        LogStore {
            group,
            wal,
            tail: Arc::default(),
        }
    }

    fn tail(&self) -> MutexGuard<'_, BTreeMap<u64, Entry>> {
        // The map is consistent after every single call on it.
        self.tail.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn state<T: serde::de::DeserializeOwned>(
        &self,
        name: &'static str,
    ) -> Result<Option<T>, StorageError> {
        match self.wal.state(self.group, name).await.map_err(read_err)? {
            Some(bytes) => Ok(Some(decode(&bytes).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    async fn set_state<T: serde::Serialize>(
        &self,
        name: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let value = encode(value).map_err(write_err)?;
        let write = WalWrite::SetState {
            group: self.group,
            name,
            value,
        };
        self.wal.write(write).await.map_err(write_err)
    }

    /// Forgets the whole log (the replica is removed from this node).
    pub async fn destroy(&self) -> Result<(), StorageError> {
        self.tail().clear();
        let write = WalWrite::DropGroup { group: self.group };
        self.wal.write(write).await.map_err(write_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        if !non_empty(&bounds) {
            return Ok(Vec::new());
        }
        // The overlay first: an entry that leaves it is durable by then, so
        // the file read after it has the entry.
        let mut out: BTreeMap<u64, Entry> = self
            .tail()
            .range(bounds)
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let stored = self
            .wal
            .entries(self.group, bounds, usize::MAX)
            .await
            .map_err(read_err)?;
        for (index, bytes) in stored {
            if let std::collections::btree_map::Entry::Vacant(v) = out.entry(index) {
                v.insert(decode(&bytes).map_err(read_err)?);
            }
        }
        Ok(out.into_values().collect())
    }

    /// A prefix of about [`MAX_APPEND_BYTES`] (at least one entry):
    /// openraft gives an append one heartbeat interval to complete, so its
    /// size must not grow with the number of entries it could carry.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let mut entries = self.try_get_log_entries(start..end).await?;
        entries.truncate(within(&entries, MAX_APPEND_BYTES));
        Ok(entries)
    }
}

/// Data bytes an append of several entries stops at (one larger entry
/// still goes alone).
pub const MAX_APPEND_BYTES: usize = 1 << 20;

/// How many of `entries`, from the first, fit in `budget` data bytes;
/// at least one.
pub(crate) fn within(entries: &[Entry], budget: usize) -> usize {
    let mut bytes = 0usize;
    entries
        .iter()
        .position(|e| {
            bytes += payload_bytes(e);
            bytes > budget
        })
        .map_or(entries.len(), |i| i.max(1))
}

/// The keys and values an entry carries.
fn payload_bytes(e: &Entry) -> usize {
    match &e.payload {
        openraft::EntryPayload::Normal(r) => r.changes.iter().map(crate::Change::bytes).sum(),
        _ => 0,
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let purged: Option<LogId<NodeId>> = self.state(PURGED).await?;
        let pending = self.tail().last_key_value().map(|(_, e)| e.log_id);
        let last = match pending {
            Some(id) => Some(id),
            None => match self.wal.last(self.group).await.map_err(read_err)? {
                Some((_, bytes)) => Some(decode::<Entry>(&bytes).map_err(read_err)?.log_id),
                None => None,
            },
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.set_state(VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.state(VOTE).await
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        // Not waited for, and no fsync of its own: openraft saves it before
        // every apply and waits on the way, so a durable save put one more
        // fsync between a write's commit and its answer. Read back after a
        // crash, an older value is safe: openraft then starts from the
        // state machine's applied index if that is ahead, and learns the
        // rest from the leader.
        let value = encode(&committed).map_err(write_err)?;
        self.wal.record(WalWrite::SetState {
            group: self.group,
            name: COMMITTED,
            value,
        });
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self
            .state::<Option<LogId<NodeId>>>(COMMITTED)
            .await?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut encoded = Vec::with_capacity(entries.len());
        for e in &entries {
            encoded.push((e.log_id.index, encode(e).map_err(write_err)?));
        }
        let ids: Vec<LogId<NodeId>> = entries.iter().map(|e| e.log_id).collect();
        {
            let mut tail = self.tail();
            for e in entries {
                tail.insert(e.log_id.index, e);
            }
        }
        let tail = self.tail.clone();
        self.wal.submit(
            WalWrite::Append {
                group: self.group,
                entries: encoded,
            },
            Box::new(move |result| {
                if result.is_ok() {
                    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
                    for id in ids {
                        // Unless truncated and replaced meanwhile.
                        if tail.get(&id.index).map(|e| e.log_id) == Some(id) {
                            tail.remove(&id.index);
                        }
                    }
                }
                callback.log_io_completed(result.map_err(std::io::Error::other));
            }),
        );
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        self.tail().retain(|i, _| *i < log_id.index);
        let write = WalWrite::Truncate {
            group: self.group,
            from: log_id.index,
        };
        // Awaited, so no reader sees the removed entries afterwards.
        self.wal.write(write).await.map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        // The marker first: a crash between the two leaves entries that are
        // already accounted as purged, never a hole.
        self.set_state(PURGED, &log_id).await?;
        self.tail().retain(|i, _| *i > log_id.index);
        let write = WalWrite::Purge {
            group: self.group,
            upto: log_id.index,
        };
        self.wal.write(write).await.map_err(write_err)
    }
}
