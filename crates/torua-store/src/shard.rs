use std::ops::Bound;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Weak};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::{mpsc, oneshot};

use crate::tables::{DATA, FORMAT_VERSION, META, META_BYTES, META_FORMAT, META_STATE};
use crate::{Record, StoreError, MAX_KEY_LEN};

/// Most queued write requests folded into one transaction.
const MAX_GROUP: usize = 512;
/// Depth of a shard's write queue; senders wait when it is full (back-pressure).
const QUEUE_DEPTH: usize = 4096;

/// Lifecycle of a shard on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Owned and serving.
    Active,
    /// Being filled by a move; becomes `Active` when the move completes.
    Receiving,
}

impl ShardState {
    fn code(self) -> u8 {
        match self {
            ShardState::Active => 0,
            ShardState::Receiving => 1,
        }
    }
    fn from_code(c: u8) -> Self {
        if c == 1 {
            ShardState::Receiving
        } else {
            ShardState::Active
        }
    }
    /// Name used in APIs: `active` or `receiving`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Active => "active",
            ShardState::Receiving => "receiving",
        }
    }
}

/// One change applied by a shard's writer.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or replace a key.
    Put(String, Record),
    /// Remove a key (absent keys are fine).
    Delete(String),
}

/// Counts reported by [`Shard::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    /// Number of keys.
    pub key_count: u64,
    /// Bytes of keys plus encoded records.
    pub byte_size: u64,
}

enum Command {
    Apply(Vec<Op>),
    SetState(ShardState),
}

struct Request {
    cmd: Command,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// One shard: a redb file and the task that commits its writes.
pub struct Shard {
    id: u32,
    db: Arc<Database>,
    state: Arc<AtomicU8>,
    tx: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("id", &self.id).finish()
    }
}

impl Shard {
    /// Opens (or creates) the file and starts the writer. Blocking: call it
    /// from a blocking context; it needs a tokio runtime for the writer.
    pub(crate) fn open(
        id: u32,
        path: &std::path::Path,
        initial: Option<ShardState>,
    ) -> Result<Arc<Shard>, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        let state = {
            let mut meta = txn.open_table(META)?;
            let format = meta.get(META_FORMAT)?.map(|g| g.value());
            match format {
                None => {
                    meta.insert(META_FORMAT, FORMAT_VERSION)?;
                }
                Some(FORMAT_VERSION) => {}
                Some(_) => return Err(StoreError::Corrupt("unsupported shard file format")),
            }
            let stored = meta.get(META_STATE)?.map(|g| g.value());
            let state = match (initial, stored) {
                (Some(s), _) => s,
                (None, Some(code)) => ShardState::from_code(u8::try_from(code).unwrap_or(0)),
                (None, None) => ShardState::Active,
            };
            meta.insert(META_STATE, u64::from(state.code()))?;
            txn.open_table(DATA)?;
            state
        };
        txn.commit()?;
        let db = Arc::new(db);
        let state = Arc::new(AtomicU8::new(state.code()));
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(writer(id, Arc::downgrade(&db), state.clone(), rx));
        Ok(Arc::new(Shard { id, db, state, tx }))
    }

    /// The shard id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The shard's current state.
    pub fn state(&self) -> ShardState {
        ShardState::from_code(self.state.load(Ordering::Acquire))
    }

    /// Reads one key.
    pub async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        let db = self.db.clone();
        let key = key.to_owned();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(DATA)?;
            let value = table.get(key.as_str())?;
            value.map(|v| Record::decode(v.value())).transpose()
        })
        .await
    }

    /// Stores `record` under `key`; returns once the write is durable.
    pub async fn put(&self, key: String, record: Record) -> Result<(), StoreError> {
        self.apply(vec![Op::Put(key, record)]).await
    }

    /// Deletes `key`; returns once the deletion is durable.
    pub async fn delete(&self, key: String) -> Result<(), StoreError> {
        self.apply(vec![Op::Delete(key)]).await
    }

    /// Applies `ops` atomically, in order; returns once they are durable.
    pub async fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        for op in &ops {
            match op {
                Op::Put(k, r) => {
                    check_key(k)?;
                    r.validate()?;
                }
                Op::Delete(k) => check_key(k)?,
            }
        }
        self.send(Command::Apply(ops)).await
    }

    /// Changes the shard's state durably.
    pub async fn set_state(&self, state: ShardState) -> Result<(), StoreError> {
        self.send(Command::SetState(state)).await
    }

    async fn send(&self, cmd: Command) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Request { cmd, done })
            .await
            .map_err(|_| StoreError::Closed(self.id))?;
        rx.await.map_err(|_| StoreError::Closed(self.id))?
    }

    /// Keys starting with `prefix`, strictly after `after`, in order, at most `limit`.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        Ok(self
            .scan(prefix, after, limit, usize::MAX)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    /// Like [`Shard::list`] but with the records (used to copy a shard).
    /// Stops early once the entries returned reach `max_bytes` (at least one
    /// entry is returned when any is left), so pages stay bounded.
    pub async fn scan(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(String, Record)>, StoreError> {
        let db = self.db.clone();
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(DATA)?;
            let start = match after.as_deref() {
                Some(a) if a >= prefix.as_str() => Bound::Excluded(a),
                _ => Bound::Included(prefix.as_str()),
            };
            let mut out = Vec::new();
            let mut bytes = 0usize;
            for entry in table.range::<&str>((start, Bound::Unbounded))? {
                if out.len() >= limit || bytes >= max_bytes {
                    break;
                }
                let (k, v) = entry?;
                let key = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                bytes += key.len() + v.value().len();
                out.push((key.to_owned(), Record::decode(v.value())?));
            }
            Ok(out)
        })
        .await
    }

    /// Key count and byte size.
    pub async fn stats(&self) -> Result<ShardStats, StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let data = txn.open_table(DATA)?;
            let meta = txn.open_table(META)?;
            Ok(ShardStats {
                key_count: data.len()?,
                byte_size: meta.get(META_BYTES)?.map(|g| g.value()).unwrap_or(0),
            })
        })
        .await
    }
}

fn check_key(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::Invalid("key must not be empty".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StoreError::Invalid(format!(
            "key is {} bytes; at most {MAX_KEY_LEN} are allowed",
            key.len()
        )));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

/// Group commit: take everything queued, apply it in one transaction, fsync
/// once, then answer every request with the shared outcome.
async fn writer(
    id: u32,
    // Weak: the file closes as soon as the last `Shard` handle is dropped.
    db: Weak<Database>,
    state: Arc<AtomicU8>,
    mut rx: mpsc::Receiver<Request>,
) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let (cmds, dones): (Vec<Command>, Vec<_>) =
            group.into_iter().map(|r| (r.cmd, r.done)).unzip();
        let Some(db) = db.upgrade() else {
            for d in dones {
                let _ = d.send(Err(StoreError::Closed(id)));
            }
            return;
        };
        let outcome = blocking(move || commit(&db, cmds)).await;
        match outcome {
            Ok(new_state) => {
                if let Some(s) = new_state {
                    state.store(s.code(), Ordering::Release);
                }
                for d in dones {
                    let _ = d.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(shard = id, error = %e, "shard commit failed");
                let msg = e.to_string();
                for d in dones {
                    let _ = d.send(Err(StoreError::Io(std::io::Error::other(msg.clone()))));
                }
            }
        }
    }
}

fn commit(db: &Database, cmds: Vec<Command>) -> Result<Option<ShardState>, StoreError> {
    let txn = db.begin_write()?;
    let mut new_state = None;
    {
        let mut data = txn.open_table(DATA)?;
        let mut meta = txn.open_table(META)?;
        let mut bytes = meta.get(META_BYTES)?.map(|g| g.value()).unwrap_or(0);
        for cmd in cmds {
            match cmd {
                Command::Apply(ops) => {
                    for op in ops {
                        match op {
                            Op::Put(key, record) => {
                                let enc = record.encode();
                                let added = (key.len() + enc.len()) as u64;
                                if let Some(old) = data.insert(key.as_str(), enc.as_slice())? {
                                    bytes = bytes
                                        .saturating_sub((key.len() + old.value().len()) as u64);
                                }
                                bytes += added;
                            }
                            Op::Delete(key) => {
                                if let Some(old) = data.remove(key.as_str())? {
                                    bytes = bytes
                                        .saturating_sub((key.len() + old.value().len()) as u64);
                                }
                            }
                        }
                    }
                }
                Command::SetState(s) => {
                    meta.insert(META_STATE, u64::from(s.code()))?;
                    new_state = Some(s);
                }
            }
        }
        meta.insert(META_BYTES, bytes)?;
    }
    txn.commit()?;
    Ok(new_state)
}
