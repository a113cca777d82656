//! The node's write-ahead log for all of its Raft groups: one redb file,
//! `<data dir>/raft/log.redb`, shared by every shard replica on the node.
//!
//! Writes from all groups go through one queue to one writer task, which
//! folds everything queued into one write transaction and one fsync
//! (TiKV's raft-engine does the same): a node with many shards does not pay
//! one fsync per shard per batch. [`Wal::submit`] returns at once and calls
//! back when the write is durable, so a Raft group can go on while its
//! entries are flushed; writes are applied in submission order.
//!
//! Entries are opaque bytes to this module, keyed by `(group, index)`; with
//! a master key they are sealed at rest (AAD `"torua-raft-log" | group |
//! index`, see `crypto.rs`). Each group also has a few named state values
//! (vote, committed, purged), stored as given.

use std::ops::RangeBounds;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use redb::{Database, Durability, ReadableDatabase, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::{self, MasterKeys};
use crate::shard::blocking;
use crate::tables::{WAL_LOG, WAL_STATE};
use crate::StoreError;

/// Most queued writes folded into one transaction.
const MAX_GROUP: usize = 4096;

/// One change to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalWrite {
    /// Stores entries of `group` at their indexes (replacing any there).
    Append {
        /// Raft group (shard id).
        group: u32,
        /// `(index, entry)`, ascending.
        entries: Vec<(u64, Vec<u8>)>,
    },
    /// Removes the entries of `group` from index `from` on.
    Truncate {
        /// Raft group.
        group: u32,
        /// First index removed.
        from: u64,
    },
    /// Removes the entries of `group` up to and including `upto`.
    Purge {
        /// Raft group.
        group: u32,
        /// Last index removed.
        upto: u64,
    },
    /// Sets a named state value of `group`.
    SetState {
        /// Raft group.
        group: u32,
        /// Name (`vote`, `committed`, …).
        name: &'static str,
        /// The value.
        value: Vec<u8>,
    },
    /// Forgets everything of `group` (the replica left this node).
    DropGroup {
        /// Raft group.
        group: u32,
    },
}

/// Called once the write is durable (or failed).
pub type WalDone = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Job {
    write: WalWrite,
    done: WalDone,
}

/// The shared log. Cheap to share behind an `Arc`.
pub struct Wal {
    db: Arc<Database>,
    tx: mpsc::UnboundedSender<Job>,
    master: Option<Arc<MasterKeys>>,
    syncs: Arc<AtomicU64>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").finish_non_exhaustive()
    }
}

fn entry_aad(group: u32, index: u64) -> Vec<u8> {
    [
        b"torua-raft-log".as_slice(),
        &group.to_le_bytes(),
        &index.to_le_bytes(),
    ]
    .concat()
}

/// Seals again, under the current master key, every entry sealed under a
/// previous one (master-key rotation), in the older form, or in plaintext
/// while migrating (`MasterKeys::migrating`), so the previous key can be
/// retired once every shard and log has opened with the new one. Fails at
/// once when an entry needs a master key that is not configured, or is
/// plaintext under a master key and the node is not migrating.
fn reseal(
    log: &mut redb::Table<(u32, u64), &[u8]>,
    master: Option<&MasterKeys>,
) -> Result<(), StoreError> {
    let mut stale = Vec::new();
    for row in log.iter()? {
        let (k, v) = row?;
        if crypto::entry_needs_reseal(master, v.value())? {
            stale.push(k.value());
        }
    }
    if stale.is_empty() {
        return Ok(());
    }
    for (group, index) in &stale {
        let aad = entry_aad(*group, *index);
        let plain = {
            let v = log
                .get((*group, *index))?
                .ok_or(StoreError::Corrupt("raft log entry vanished"))?;
            crypto::open_entry(master, *group, *index, v.value(), &aad)?
        };
        let sealed = crypto::seal_entry(master, *group, *index, &plain, &aad)?;
        log.insert((*group, *index), sealed.as_slice())?;
    }
    tracing::info!(
        entries = stale.len(),
        "raft log entries sealed again under the current master key"
    );
    Ok(())
}

/// Opens stored entry `index` of `group`.
fn open_row(
    master: Option<&MasterKeys>,
    group: u32,
    index: u64,
    stored: &[u8],
) -> Result<Vec<u8>, StoreError> {
    crypto::open_entry(master, group, index, stored, &entry_aad(group, index))
}

impl Wal {
    /// Opens (creating) the log at `path` and starts its writer. Must run
    /// inside a tokio runtime.
    pub fn open(path: &Path, master: Option<Arc<MasterKeys>>) -> Result<Arc<Wal>, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let db = redb::Builder::new()
            .set_cache_size(crate::WAL_CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        reseal(&mut txn.open_table(WAL_LOG)?, master.as_deref())?;
        txn.open_table(WAL_STATE)?;
        txn.commit()?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::unbounded_channel();
        let syncs = Arc::new(AtomicU64::new(0));
        tokio::spawn(writer(
            Arc::downgrade(&db),
            master.clone(),
            rx,
            syncs.clone(),
        ));
        Ok(Arc::new(Wal {
            db,
            tx,
            master,
            syncs,
        }))
    }

    /// Queues `write`; `done` runs once it is durable. Writes are applied
    /// in the order they are submitted.
    pub fn submit(&self, write: WalWrite, done: WalDone) {
        if let Err(mpsc::error::SendError(job)) = self.tx.send(Job { write, done }) {
            (job.done)(Err(StoreError::Closed(u32::MAX)));
        }
    }

    /// Submits `write` and waits until it is durable.
    pub async fn write(&self, write: WalWrite) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.submit(
            write,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.map_err(|_| StoreError::Closed(u32::MAX))?
    }

    /// Number of write transactions committed (each one fsync) so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Durable entries of `group` with indexes in `range`, ascending, at
    /// most `limit`.
    pub async fn entries(
        &self,
        group: u32,
        range: impl RangeBounds<u64> + Send + 'static,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let (db, master) = (self.db.clone(), self.master.clone());
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(WAL_LOG)?;
            let start = match range.start_bound() {
                std::ops::Bound::Included(s) => (group, *s),
                std::ops::Bound::Excluded(s) => (group, s.saturating_add(1)),
                std::ops::Bound::Unbounded => (group, 0),
            };
            let end = match range.end_bound() {
                std::ops::Bound::Included(e) => std::ops::Bound::Included((group, *e)),
                std::ops::Bound::Excluded(e) => std::ops::Bound::Excluded((group, *e)),
                std::ops::Bound::Unbounded => std::ops::Bound::Included((group, u64::MAX)),
            };
            let mut out = Vec::new();
            for e in table.range::<(u32, u64)>((std::ops::Bound::Included(start), end))? {
                if out.len() >= limit {
                    break;
                }
                let (k, v) = e?;
                let (_, index) = k.value();
                out.push((index, open_row(master.as_deref(), group, index, v.value())?));
            }
            Ok(out)
        })
        .await
    }

    /// The durable entry of `group` with the highest index.
    pub async fn last(&self, group: u32) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let (db, master) = (self.db.clone(), self.master.clone());
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(WAL_LOG)?;
            let last = table
                .range::<(u32, u64)>((group, 0)..=(group, u64::MAX))?
                .next_back()
                .transpose()?;
            match last {
                None => Ok(None),
                Some((k, v)) => {
                    let (_, index) = k.value();
                    Ok(Some((
                        index,
                        open_row(master.as_deref(), group, index, v.value())?,
                    )))
                }
            }
        })
        .await
    }

    /// A named state value of `group`.
    pub async fn state(
        &self,
        group: u32,
        name: &'static str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(WAL_STATE)?;
            Ok(table.get((group, name))?.map(|v| v.value().to_vec()))
        })
        .await
    }
}

/// Group commit across Raft groups: take everything queued, apply it in
/// one transaction, fsync once, then call every job back in order.
async fn writer(
    // Weak: the file closes as soon as the `Wal` is dropped.
    db: Weak<Database>,
    master: Option<Arc<MasterKeys>>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    syncs: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (writes, dones): (Vec<WalWrite>, Vec<WalDone>) =
            jobs.into_iter().map(|j| (j.write, j.done)).unzip();
        let Some(db) = db.upgrade() else {
            for d in dones {
                d(Err(StoreError::Closed(u32::MAX)));
            }
            return;
        };
        let master = master.clone();
        let outcome = blocking(move || commit(&db, master.as_deref(), writes)).await;
        match outcome {
            Ok(()) => {
                syncs.fetch_add(1, Ordering::Relaxed);
                for d in dones {
                    d(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "raft log commit failed");
                let msg = e.to_string();
                for d in dones {
                    d(Err(StoreError::Io(std::io::Error::other(msg.clone()))));
                }
            }
        }
    }
}

fn commit(
    db: &Database,
    master: Option<&MasterKeys>,
    writes: Vec<WalWrite>,
) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    {
        let mut log = txn.open_table(WAL_LOG)?;
        let mut state = txn.open_table(WAL_STATE)?;
        for w in writes {
            match w {
                WalWrite::Append { group, entries } => {
                    for (index, entry) in entries {
                        let stored = crypto::seal_entry(
                            master,
                            group,
                            index,
                            &entry,
                            &entry_aad(group, index),
                        )?;
                        log.insert((group, index), stored.as_slice())?;
                    }
                }
                WalWrite::Truncate { group, from } => {
                    log.retain_in::<(u32, u64), _>((group, from)..=(group, u64::MAX), |_, _| {
                        false
                    })?;
                }
                WalWrite::Purge { group, upto } => {
                    log.retain_in::<(u32, u64), _>((group, 0)..=(group, upto), |_, _| false)?;
                }
                WalWrite::SetState { group, name, value } => {
                    state.insert((group, name), value.as_slice())?;
                }
                WalWrite::DropGroup { group } => {
                    log.retain_in::<(u32, u64), _>((group, 0)..=(group, u64::MAX), |_, _| false)?;
                    let names: Vec<String> = state
                        .range::<(u32, &str)>((group, "")..)?
                        .map_while(|e| e.ok())
                        .take_while(|(k, _)| k.value().0 == group)
                        .map(|(k, _)| k.value().1.to_owned())
                        .collect();
                    for n in names {
                        state.remove((group, n.as_str()))?;
                    }
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn append(group: u32, from: u64, n: u64) -> WalWrite {
        WalWrite::Append {
            group,
            entries: (from..from + n)
                .map(|i| (i, format!("e{group}-{i}").into_bytes()))
                .collect(),
        }
    }

    #[tokio::test]
    async fn appends_truncates_purges_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(&dir.path().join("log.redb"), None).unwrap();
        wal.write(append(1, 1, 10)).await.unwrap();
        wal.write(append(2, 1, 3)).await.unwrap();
        wal.write(WalWrite::Truncate { group: 1, from: 8 })
            .await
            .unwrap();
        wal.write(WalWrite::Purge { group: 1, upto: 2 })
            .await
            .unwrap();
        let got: Vec<u64> = wal
            .entries(1, .., 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(got, (3..8).collect::<Vec<_>>());
        assert_eq!(wal.last(2).await.unwrap().unwrap(), (3, b"e2-3".to_vec()));
        assert_eq!(
            wal.entries(1, 4..=5, 1).await.unwrap(),
            vec![(4, b"e1-4".to_vec())]
        );
        wal.write(WalWrite::SetState {
            group: 2,
            name: "vote",
            value: b"v".to_vec(),
        })
        .await
        .unwrap();
        wal.write(WalWrite::DropGroup { group: 2 }).await.unwrap();
        assert!(wal.last(2).await.unwrap().is_none());
        assert!(wal.state(2, "vote").await.unwrap().is_none());
        assert_eq!(wal.last(1).await.unwrap().unwrap().0, 7);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_of_many_groups_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(&dir.path().join("log.redb"), None).unwrap();
        let before = wal.syncs();
        // Submitted before the writer task can run (single-threaded runtime),
        // so they are all queued together.
        let mut waits = Vec::new();
        for g in 0..64 {
            let (tx, rx) = oneshot::channel();
            wal.submit(append(g, 1, 2), Box::new(move |r| drop(tx.send(r))));
            waits.push(rx);
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        assert_eq!(wal.syncs() - before, 1);
        for g in 0..64 {
            assert_eq!(wal.last(g).await.unwrap().unwrap().0, 2);
        }
    }

    #[tokio::test]
    async fn sealed_entries_need_the_master_key_and_stay_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        {
            let wal = Wal::open(&path, Some(Arc::new(MasterKeys::new([7; 32], &[])))).unwrap();
            wal.write(append(3, 1, 2)).await.unwrap();
            assert_eq!(wal.last(3).await.unwrap().unwrap().1, b"e3-2");
        }
        // The file holds no plaintext.
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(4).any(|w| w == b"e3-2"));
        // Without the key, or with another, the log does not open.
        assert!(matches!(Wal::open(&path, None), Err(StoreError::Crypto(_))));
        let other = Some(Arc::new(MasterKeys::new([8; 32], &[])));
        assert!(matches!(
            Wal::open(&path, other),
            Err(StoreError::Crypto(_))
        ));
    }

    #[tokio::test]
    async fn master_key_rotation_reseals_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.redb");
        let (old, new) = ([7u8; 32], [9u8; 32]);
        {
            let wal = Wal::open(&path, Some(Arc::new(MasterKeys::new(old, &[])))).unwrap();
            wal.write(append(3, 1, 5)).await.unwrap();
        }
        // New key with the old one as previous: opens, and seals again...
        {
            let both = Some(Arc::new(MasterKeys::new(new, &[old])));
            let wal = Wal::open(&path, both).unwrap();
            assert_eq!(wal.last(3).await.unwrap().unwrap().1, b"e3-5");
        }
        // ...so the new key alone opens every entry, and the old no longer does.
        let wal = Wal::open(&path, Some(Arc::new(MasterKeys::new(new, &[])))).unwrap();
        assert_eq!(wal.entries(3, 1..6, 100).await.unwrap().len(), 5);
        drop(wal);
        let stale = Some(Arc::new(MasterKeys::new(old, &[])));
        assert!(matches!(
            Wal::open(&path, stale),
            Err(StoreError::Crypto(_))
        ));
    }
}
