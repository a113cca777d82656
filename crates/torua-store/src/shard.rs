use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::{mpsc, oneshot};

use crate::crypto::{self, Codec, MasterKeys};
use crate::snapshot::{SnapshotFile, SnapshotReader};
use crate::tables::{
    DATA, FORMAT_PLAINTEXT, FORMAT_VERSION, KEYS, META, META_BYTES, META_DATA_KEY, META_FORMAT,
    META_REVISION, META_STATE, RAFT, RAFT_APPLIED,
};
use crate::{Record, StoreError, MAX_KEY_LEN};

/// Keys re-sealed per write transaction by the background re-sealer.
const RESEAL_BATCH: usize = 256;

/// Most queued write requests folded into one transaction.
const MAX_GROUP: usize = 512;
/// Depth of a shard's write queue; senders wait when it is full (back-pressure).
const QUEUE_DEPTH: usize = 4096;

/// Replicated applies stay in memory (see [`Overlay`]) until this many
/// keys, this many bytes or this long after the first of them, then go to
/// the file in one transaction (etcd's backend batch limit; its interval
/// is 100 ms, but a checkpoint rewrites every leaf page it touches, and a
/// hot key set paid that ten times a second: 1 s cut CPU per write 16 %).
const CHECKPOINT_KEYS: usize = 4096;
const CHECKPOINT_BYTES: usize = 8 << 20;
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(1000);

/// Lifecycle of a shard on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Owned and serving.
    Active,
    /// Being filled by a move; becomes `Active` when the move completes.
    Receiving,
    /// A replica of a Raft group: written only through its log.
    Replicated,
}

impl ShardState {
    fn code(self) -> u8 {
        match self {
            ShardState::Active => 0,
            ShardState::Receiving => 1,
            ShardState::Replicated => 2,
        }
    }
    fn from_code(c: u8) -> Self {
        match c {
            1 => ShardState::Receiving,
            2 => ShardState::Replicated,
            _ => ShardState::Active,
        }
    }
    /// Name used in APIs: `active`, `receiving` or `replicated`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Active => "active",
            ShardState::Receiving => "receiving",
            ShardState::Replicated => "replicated",
        }
    }
}

/// What a write expects of its key beforehand (HTTP `If-Match` /
/// `If-None-Match`). Checked by the writer inside the commit, so it holds
/// against every concurrent write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing.
    Any,
    /// The key exists, in any version (`If-Match: *`).
    Exists,
    /// The key exists in exactly this version (`If-Match: "v"`).
    Version(u64),
    /// The key does not exist (`If-None-Match: *`).
    Absent,
}

impl Expect {
    fn holds(self, current: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Exists => current.is_some(),
            Expect::Version(v) => current == Some(v),
            Expect::Absent => current.is_none(),
        }
    }
}

/// One change applied by a shard's writer.
#[derive(Debug, Clone)]
pub enum Op {
    /// Insert or replace a key if the expectation holds; the writer gives
    /// the record the shard's next revision as its version.
    Put(String, Record, Expect),
    /// Remove a key if the expectation holds (absent keys are fine with
    /// [`Expect::Any`]); takes a revision too.
    Delete(String, Expect),
    /// Store a record with the version it carries (a copy of another
    /// node's shard); the shard's revision rises to it.
    Import(String, Record),
}

impl Op {
    fn key(&self) -> &str {
        match self {
            Op::Put(k, ..) | Op::Delete(k, _) | Op::Import(k, _) => k,
        }
    }
}

/// Encryption state reported by [`Shard::key_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStatus {
    /// Id of the data key new writes use; `None` when encryption is off.
    pub current: Option<u32>,
    /// Data keys held (more than one while older values are re-sealed).
    pub keys: u64,
    /// Whether the background re-sealer is running.
    pub resealing: bool,
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
    /// Start a new data key; new values use it.
    RotateKey,
    /// Re-seal these keys' values with the current data key, if stale.
    Reseal(Vec<String>),
    /// Forget every data key but these (no value uses the others).
    RetainKeys(Vec<u32>),
    /// Apply replicated log entries (each a list of ops, refused or applied
    /// as a whole) and record `applied` (the replication layer's marker of
    /// the last entry) in the same transaction, so a restart never applies
    /// an entry twice. Not fsync'd: the Raft log is the durable record, and
    /// entries after the last durable marker are applied again from it.
    Replicated {
        entries: Vec<Vec<Op>>,
        applied: Vec<u8>,
    },
    /// Make every earlier commit durable.
    Flush,
    /// Write the overlay's applies to the file (not fsync'd), so reads of
    /// the file alone see them.
    Checkpoint,
    /// Replace all data, the revision and the marker (a Raft snapshot),
    /// read from the file as it is applied.
    Restore {
        from: SnapshotReader,
        applied: Vec<u8>,
    },
}

/// The writer's copy of the unwrapped data keys (readers see only the
/// [`Codec`] built from them).
#[derive(Clone)]
struct DataKeys {
    master: Arc<MasterKeys>,
    current: u32,
    keys: BTreeMap<u32, [u8; 32]>,
}

impl DataKeys {
    fn codec(&self, shard: u32) -> Codec {
        let older: Vec<[u8; 32]> = self
            .keys
            .iter()
            .filter(|(id, _)| **id != self.current)
            .map(|(_, k)| *k)
            .collect();
        match self.keys.get(&self.current) {
            Some(current) => Codec::sealed(shard, *current, &older, self.master.is_migrating()),
            None => Codec::Plain,
        }
    }
}

impl Drop for DataKeys {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for k in self.keys.values_mut() {
            k.zeroize();
        }
    }
}

/// The outcome of one request or replicated entry: the version each op
/// took, or why it was refused (a failed precondition, nothing written).
pub type Outcome = Result<Vec<u64>, StoreError>;

/// A command's answer: one [`Outcome`] per request or entry it carried.
type Reply = Result<Vec<Outcome>, StoreError>;

struct Request {
    cmd: Command,
    done: oneshot::Sender<Reply>,
}

/// Changes by key: stored (encoded) bytes, or `None` for a deletion.
type Changes = HashMap<String, Option<Vec<u8>>>;

/// Applies kept in memory since a checkpoint, with the marker of the last.
#[derive(Default, Clone)]
struct Generation {
    changes: Changes,
    applied: Option<Vec<u8>>,
    /// Bytes of keys and values inserted (a trigger, not an exact size).
    bytes: usize,
}

/// Replicated applies not yet in the file. A transaction per apply buys
/// nothing (the Raft log is their durable record, and a restart applies
/// again from the marker in the file), so the writer applies them here and
/// writes them out in batches. Point reads look here first; everything
/// else that reads the file has the writer checkpoint first.
#[derive(Default)]
struct Overlay {
    /// Written by the writer as it applies.
    active: Generation,
    /// Being written to the file; dropped once committed there.
    frozen: Option<Arc<Generation>>,
}

impl Overlay {
    /// What the overlay holds for `key`: `Some(None)` if deleted, `None`
    /// if the file decides.
    fn lookup(&self, key: &str) -> Option<Option<&[u8]>> {
        if let Some(v) = self.active.changes.get(key) {
            return Some(v.as_deref());
        }
        let frozen = self.frozen.as_ref()?;
        frozen.changes.get(key).map(Option::as_deref)
    }

    fn is_empty(&self) -> bool {
        self.active.applied.is_none() && self.frozen.is_none()
    }
}

/// Shared access that survives a panicked holder (the data is only ever
/// replaced whole under the lock).
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// One shard: a redb file and the task that commits its writes.
pub struct Shard {
    id: u32,
    /// Where snapshot files are made (the shard file's directory).
    dir: std::path::PathBuf,
    db: Arc<Database>,
    state: Arc<AtomicU8>,
    /// How values are read; replaced by the writer when data keys change.
    codec: Arc<RwLock<Arc<Codec>>>,
    overlay: Arc<RwLock<Overlay>>,
    tx: mpsc::Sender<Request>,
    resealing: AtomicBool,
    reseal_wanted: AtomicBool,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("id", &self.id).finish()
    }
}

impl Shard {
    /// Checks, without writing, that `master` opens the shard at `path`
    /// (an encrypted shard needs its master key; a plaintext one needs none).
    pub(crate) fn check_keys(
        id: u32,
        path: &std::path::Path,
        master: Option<&MasterKeys>,
    ) -> Result<(), StoreError> {
        // Read-only, so a refused key leaves the file byte for byte as it
        // was. A file not closed cleanly needs redb's repair, which writes.
        match redb::ReadOnlyDatabase::open(path) {
            Ok(db) => read_data_keys(&db, id, master).map(drop),
            Err(redb::DatabaseError::RepairAborted) => {
                read_data_keys(&create(path)?, id, master).map(drop)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens (or creates) the file and starts the writer. Blocking: call it
    /// from a blocking context; it needs a tokio runtime for the writer.
    /// With `master`, a new shard gets a data key; a shard holding
    /// plaintext values is refused unless the node migrates them
    /// (`MasterKeys::migrating`), which seals them in the background. A
    /// shard whose data keys were wrapped by a previous master key gets a
    /// new data key too, and its values are sealed again under it, so the
    /// previous master key with an old copy of the file opens nothing
    /// written or re-sealed since.
    pub(crate) fn open(
        id: u32,
        path: &std::path::Path,
        initial: Option<ShardState>,
        master: Option<Arc<MasterKeys>>,
    ) -> Result<Arc<Shard>, StoreError> {
        let db = create(path)?;
        // Unwrap every data key before writing anything: a wrong master key
        // must leave the file as it was.
        let (mut keys, current) = read_data_keys(&db, id, master.as_deref())?;
        // Values may need re-sealing only after an interrupted rotation (more
        // than one data key) or when a plaintext shard gains its first key.
        let mut stale_possible = keys.len() > 1;
        let txn = db.begin_write()?;
        let counters;
        let (state, data_keys) = {
            let mut meta = txn.open_table(META)?;
            let format = meta.get(META_FORMAT)?.map(|g| g.value());
            match format {
                None | Some(FORMAT_PLAINTEXT) | Some(FORMAT_VERSION) => {
                    meta.insert(META_FORMAT, FORMAT_VERSION)?;
                }
                Some(_) => return Err(StoreError::Corrupt("unsupported shard file format")),
            }
            let stored = meta.get(META_STATE)?.map(|g| g.value());
            let state = match (initial, stored) {
                (Some(s), _) => s,
                (None, Some(code)) => ShardState::from_code(u8::try_from(code).unwrap_or(0)),
                (None, None) => ShardState::Active,
            };
            meta.insert(META_STATE, u64::from(state.code()))?;
            counters = Counters {
                bytes: meta.get(META_BYTES)?.map(|g| g.value()).unwrap_or(0),
                revision: meta.get(META_REVISION)?.map(|g| g.value()).unwrap_or(0),
            };
            let has_data = !txn.open_table(DATA)?.is_empty()?;
            let mut wrapped = txn.open_table(KEYS)?;
            let data_keys = match master {
                None => None,
                Some(master) => {
                    // Master-key rotation: every data key is re-wrapped under
                    // the current master key, and a new one replaces them.
                    let mut rewrap = Vec::new();
                    for entry in wrapped.iter()? {
                        let (kid, w) = entry?;
                        if crypto::needs_rewrap(&master, w.value()) {
                            rewrap.push(kid.value());
                        }
                    }
                    for kid in &rewrap {
                        if let Some(k) = keys.get(kid) {
                            wrapped.insert(*kid, crypto::rewrap(&master, id, k)?.as_slice())?;
                        }
                    }
                    let current = match current {
                        Some(c) if keys.contains_key(&c) && rewrap.is_empty() => c,
                        _ => {
                            // (Plaintext without migration was refused by
                            // `read_data_keys`, before any write.)
                            stale_possible |= has_data;
                            let (kid, w) = crypto::new_data_key(&master, id)?;
                            keys.insert(kid, crypto::unwrap_data_key(&master, id, &w)?);
                            wrapped.insert(kid, w.as_slice())?;
                            meta.insert(META_DATA_KEY, u64::from(kid))?;
                            kid
                        }
                    };
                    Some(DataKeys {
                        master,
                        current,
                        keys: std::mem::take(&mut keys),
                    })
                }
            };
            (state, data_keys)
        };
        txn.commit()?;
        let codec = data_keys.as_ref().map_or(Codec::Plain, |k| k.codec(id));
        let reseal = data_keys.is_some() && stale_possible;
        let db = Arc::new(db);
        let state = Arc::new(AtomicU8::new(state.code()));
        let codec = Arc::new(RwLock::new(Arc::new(codec)));
        let overlay = Arc::new(RwLock::new(Overlay::default()));
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(
            Writer {
                id,
                db: Arc::downgrade(&db),
                state: state.clone(),
                codec: codec.clone(),
                keys: data_keys,
                overlay: overlay.clone(),
                counters,
            }
            .run(rx),
        );
        let shard = Arc::new(Shard {
            id,
            dir: path
                .parent()
                .map_or_else(|| std::path::PathBuf::from("."), |d| d.to_path_buf()),
            db,
            state,
            codec,
            overlay,
            tx,
            resealing: AtomicBool::new(false),
            reseal_wanted: AtomicBool::new(false),
        });
        if reseal {
            shard.start_reseal();
        }
        Ok(shard)
    }

    fn codec(&self) -> Arc<Codec> {
        read(&self.codec).clone()
    }

    /// Has the writer put every apply so far into the file, for reads that
    /// see only the file (ranges, counts, snapshots).
    async fn checkpoint(&self) -> Result<(), StoreError> {
        if read(&self.overlay).is_empty() {
            return Ok(());
        }
        self.send(Command::Checkpoint).await.map(drop)
    }

    /// Starts a new data key: writes from now on use it, and older values
    /// are re-sealed in the background, after which the old key is
    /// forgotten. Returns the new key's id.
    pub async fn rotate_key(self: &Arc<Self>) -> Result<u32, StoreError> {
        if self.codec().current_key_id().is_none() {
            return Err(StoreError::Invalid(format!(
                "shard {} is not encrypted: start the node with a master key",
                self.id
            )));
        }
        self.send(Command::RotateKey).await?;
        self.start_reseal();
        self.codec()
            .current_key_id()
            .ok_or(StoreError::Closed(self.id))
    }

    /// The shard's encryption state.
    pub async fn key_status(&self) -> Result<KeyStatus, StoreError> {
        let db = self.db.clone();
        let keys = blocking(move || Ok(db.begin_read()?.open_table(KEYS)?.len()?)).await?;
        Ok(KeyStatus {
            current: self.codec().current_key_id(),
            keys,
            resealing: self.resealing.load(Ordering::Acquire),
        })
    }

    fn start_reseal(self: &Arc<Self>) {
        self.reseal_wanted.store(true, Ordering::Release);
        if self.resealing.swap(true, Ordering::AcqRel) {
            return; // the running re-sealer makes another pass
        }
        tokio::spawn(reseal_loop(Arc::downgrade(self)));
    }

    /// One pass over the shard, re-sealing stale values; returns how many
    /// were stale.
    async fn reseal_pass(&self) -> Result<usize, StoreError> {
        let mut after: Option<String> = None;
        let mut stale = 0;
        loop {
            let (db, codec, cursor) = (self.db.clone(), self.codec(), after.clone());
            let (keys, next) = blocking(move || {
                let txn = db.begin_read()?;
                let table = txn.open_table(DATA)?;
                let start = match cursor.as_deref() {
                    Some(a) => Bound::Excluded(a),
                    None => Bound::Unbounded,
                };
                let mut keys = Vec::new();
                let mut last = None;
                for entry in table.range::<&str>((start, Bound::Unbounded))? {
                    let (k, v) = entry?;
                    last = Some(k.value().to_owned());
                    if codec.is_stale(v.value()) {
                        keys.push(k.value().to_owned());
                        if keys.len() >= RESEAL_BATCH {
                            break;
                        }
                    }
                }
                Ok((keys, last))
            })
            .await?;
            stale += keys.len();
            if !keys.is_empty() {
                self.send(Command::Reseal(keys)).await?;
            }
            match next {
                Some(n) if after.as_ref() != Some(&n) => after = Some(n),
                _ => return Ok(stale),
            }
        }
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
        // A point read touches a few pages, nearly always cached (redb's
        // cache, then the kernel's): done in place it costs less than the
        // hand-off to a blocking thread and back. The overlay first: the
        // file holds an apply only once the overlay has let go of it.
        let held = read(&self.overlay)
            .lookup(key)
            .map(|v| v.map(<[u8]>::to_vec));
        if let Some(held) = held {
            return held.map(|v| self.codec().decode(key, &v)).transpose();
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(DATA)?;
        let value = table.get(key)?;
        value
            .map(|v| self.codec().decode(key, v.value()))
            .transpose()
    }

    /// Stores `record` under `key`; returns its version once durable.
    pub async fn put(&self, key: String, record: Record) -> Result<u64, StoreError> {
        self.put_if(key, record, Expect::Any).await
    }

    /// Stores `record` under `key` if `expect` holds (else
    /// [`StoreError::Precondition`], nothing written); returns its version.
    pub async fn put_if(
        &self,
        key: String,
        record: Record,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        let v = self.apply(vec![Op::Put(key, record, expect)]).await?;
        v.first().copied().ok_or(StoreError::Closed(self.id))
    }

    /// Deletes `key`; returns once the deletion is durable.
    pub async fn delete(&self, key: String) -> Result<(), StoreError> {
        self.delete_if(key, Expect::Any).await
    }

    /// Deletes `key` if `expect` holds (else [`StoreError::Precondition`]).
    pub async fn delete_if(&self, key: String, expect: Expect) -> Result<(), StoreError> {
        self.apply(vec![Op::Delete(key, expect)]).await.map(drop)
    }

    /// Applies `ops` atomically, in order, if every expectation holds (each
    /// checked after the ops before it); returns once they are durable,
    /// with the version each op took.
    pub async fn apply(&self, ops: Vec<Op>) -> Result<Vec<u64>, StoreError> {
        for op in &ops {
            check_key(op.key())?;
            if let Op::Put(_, r, _) | Op::Import(_, r) = op {
                r.validate()?;
            }
        }
        let mut outcomes = self.send(Command::Apply(ops)).await?;
        outcomes.pop().ok_or(StoreError::Closed(self.id))?
    }

    /// Applies replicated entries and records `applied` atomically with
    /// them (see [`Shard::raft_applied`]); returns each entry's outcome.
    /// Like the writes of [`Shard::apply`], but not fsync'd: call
    /// [`Shard::flush`] before anything relies on the marker being durable.
    pub async fn apply_replicated(
        &self,
        entries: Vec<Vec<Op>>,
        applied: Vec<u8>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let mut checked = Vec::with_capacity(entries.len());
        for ops in entries {
            // An entry that breaks a limit is refused alone, as every
            // replica refuses it alike; it must not stop the log.
            let valid = ops.iter().try_for_each(|op| {
                check_key(op.key())?;
                match op {
                    Op::Put(_, r, _) | Op::Import(_, r) => r.validate(),
                    Op::Delete(..) => Ok(()),
                }
            });
            checked.push(valid.map(|()| ops));
        }
        let (valid, invalid): (Vec<_>, Vec<_>) = checked
            .into_iter()
            .enumerate()
            .partition(|(_, r)| r.is_ok());
        let entries = valid.into_iter().filter_map(|(_, r)| r.ok()).collect();
        let mut outcomes = self
            .send(Command::Replicated { entries, applied })
            .await?
            .into_iter();
        let mut invalid = invalid.into_iter().peekable();
        let total = outcomes.len() + invalid.len();
        let mut out = Vec::with_capacity(total);
        for i in 0..total {
            match invalid.next_if(|(at, _)| *at == i) {
                Some((_, Err(e))) => out.push(Err(e)),
                _ => out.push(outcomes.next().ok_or(StoreError::Closed(self.id))?),
            }
        }
        Ok(out)
    }

    /// Makes every write so far durable (one fsync).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.send(Command::Flush).await.map(drop)
    }

    /// Replaces the shard's data with the snapshot in `file` (from
    /// [`Shard::snapshot`] here or on another replica) and records
    /// `applied`, durably, in one transaction: installing a Raft snapshot.
    /// Records are read from the file as they are written; a malformed or
    /// truncated file changes nothing.
    pub async fn restore(&self, file: SnapshotFile, applied: Vec<u8>) -> Result<(), StoreError> {
        let from = file.reader().await?;
        self.send(Command::Restore { from, applied })
            .await
            .map(drop)
    }

    /// An empty file to receive a snapshot into (see [`SnapshotFile`]).
    pub async fn receive_snapshot(&self) -> Result<SnapshotFile, StoreError> {
        let dir = self.dir.clone();
        blocking(move || SnapshotFile::create(&dir)).await
    }

    /// The marker last recorded by [`Shard::apply_replicated`] or
    /// [`Shard::restore`] (`None` for a shard never replicated).
    pub async fn raft_applied(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.checkpoint().await?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            match txn.open_table(RAFT) {
                Ok(t) => Ok(t.get(RAFT_APPLIED)?.map(|v| v.value().to_vec())),
                Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// A consistent snapshot: every record and the revision, written to a
    /// [`SnapshotFile`] from one read transaction, with the marker read in
    /// that transaction (`None`: never replicated). Streams: memory stays
    /// bounded whatever the shard's size.
    pub async fn snapshot(&self) -> Result<(SnapshotFile, Option<Vec<u8>>), StoreError> {
        self.checkpoint().await?;
        let (db, codec, dir) = (self.db.clone(), self.codec(), self.dir.clone());
        blocking(move || {
            let txn = db.begin_read()?;
            SnapshotFile::write_with(&dir, |out| {
                out.revision(
                    txn.open_table(META)?
                        .get(META_REVISION)?
                        .map(|g| g.value())
                        .unwrap_or(0),
                )?;
                for entry in txn.open_table(DATA)?.iter()? {
                    let (k, v) = entry?;
                    out.record(k.value(), &codec.decode(k.value(), v.value())?)?;
                }
                match txn.open_table(RAFT) {
                    Ok(t) => Ok(t.get(RAFT_APPLIED)?.map(|v| v.value().to_vec())),
                    Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            })
        })
        .await
    }

    /// A snapshot of an empty shard at revision 0 (what a group that never
    /// applied anything sends).
    pub async fn empty_snapshot(&self) -> Result<SnapshotFile, StoreError> {
        let dir = self.dir.clone();
        blocking(move || SnapshotFile::write_with(&dir, |out| out.revision(0)).map(|(f, ())| f))
            .await
    }

    /// Changes the shard's state durably.
    pub async fn set_state(&self, state: ShardState) -> Result<(), StoreError> {
        self.send(Command::SetState(state)).await.map(drop)
    }

    async fn send(&self, cmd: Command) -> Reply {
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
        self.checkpoint().await?;
        let (db, codec) = (self.db.clone(), self.codec());
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
                out.push((key.to_owned(), codec.decode(key, v.value())?));
            }
            Ok(out)
        })
        .await
    }

    /// Key count and byte size.
    pub async fn stats(&self) -> Result<ShardStats, StoreError> {
        self.checkpoint().await?;
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

/// Runs storage work on the blocking pool (redb calls block).
/// Opens (creating) a shard file with its bounded cache.
fn create(path: &std::path::Path) -> Result<Database, StoreError> {
    Ok(redb::Builder::new()
        .set_cache_size(crate::SHARD_CACHE_BYTES)
        .create(path)?)
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}

/// Data keys by id, unwrapped.
type UnwrappedKeys = BTreeMap<u32, [u8; 32]>;

/// Reads and unwraps the shard's data keys (none for a plaintext shard)
/// and the id of the current one. Reads only.
fn read_data_keys(
    db: &impl ReadableDatabase,
    id: u32,
    master: Option<&MasterKeys>,
) -> Result<(UnwrappedKeys, Option<u32>), StoreError> {
    let txn = db.begin_read()?;
    // Plaintext values under a master key, without a data key yet: a shard
    // from before encryption, sealed only when the node migrates.
    let has_data = match txn.open_table(DATA) {
        Ok(t) => !t.is_empty()?,
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(e) => return Err(e.into()),
    };
    let plaintext = |keys: bool| {
        if master.is_some_and(|m| !keys && has_data && !m.is_migrating()) {
            return Err(StoreError::Crypto(format!(
                "shard {id} holds plaintext values although encryption is on; to seal data written before encryption was turned on, start the node once with TORUA_MIGRATE_PLAINTEXT=on"
            )));
        }
        Ok(())
    };
    let wrapped = match txn.open_table(KEYS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            plaintext(false)?;
            return Ok((BTreeMap::new(), None));
        }
        Err(e) => return Err(e.into()),
    };
    plaintext(!wrapped.is_empty()?)?;
    let current = match txn.open_table(META) {
        Ok(m) => m
            .get(META_DATA_KEY)?
            .and_then(|g| u32::try_from(g.value()).ok()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut keys = BTreeMap::new();
    for entry in wrapped.iter()? {
        let (kid, w) = entry?;
        let Some(master) = master else {
            return Err(StoreError::Crypto(format!(
                "shard {id} is encrypted, but no master key is configured (TORUA_MASTER_KEY_FILE)"
            )));
        };
        keys.insert(kid.value(), crypto::unwrap_data_key(master, id, w.value())?);
    }
    Ok((keys, current))
}

/// Runs re-seal passes until one finds nothing stale, then drops the data
/// keys no value uses any more.
async fn reseal_loop(shard: Weak<Shard>) {
    loop {
        let Some(s) = shard.upgrade() else {
            return;
        };
        s.reseal_wanted.store(false, Ordering::Release);
        let current = s.codec().current_key_id();
        match s.reseal_pass().await {
            Ok(0) => {
                let retain = current.into_iter().collect();
                if let Err(e) = s.send(Command::RetainKeys(retain)).await {
                    tracing::warn!(shard = s.id, error = %e, "dropping old data keys failed");
                }
                s.resealing.store(false, Ordering::Release);
                // A rotation that raced the flag above restarts the loop.
                if !s.reseal_wanted.load(Ordering::Acquire)
                    || s.resealing.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
            Ok(n) => tracing::info!(
                shard = s.id,
                resealed = n,
                "re-sealed values under the current data key"
            ),
            Err(StoreError::Closed(_)) => return,
            Err(e) => {
                tracing::warn!(shard = s.id, error = %e, "re-sealing failed; retrying");
                drop(s);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// The shard's byte size and revision, kept by the writer (invariants of
/// `META_BYTES` and `META_REVISION`, which hold them as of the last commit).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    bytes: u64,
    revision: u64,
}

/// The task that makes every change to a shard.
struct Writer {
    id: u32,
    // Weak: the file closes as soon as the last `Shard` handle is dropped.
    db: Weak<Database>,
    state: Arc<AtomicU8>,
    codec: Arc<RwLock<Arc<Codec>>>,
    keys: Option<DataKeys>,
    overlay: Arc<RwLock<Overlay>>,
    counters: Counters,
}

impl Writer {
    /// Group commit: takes everything queued and applies it together.
    /// Replicated applies go to the overlay; anything else, or an overlay
    /// past its bounds, goes to the file with the overlay in one
    /// transaction (fsync'd unless it is only applies).
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        // When the overlay's oldest apply was made.
        let mut since: Option<tokio::time::Instant> = None;
        loop {
            let first = match since {
                None => rx.recv().await,
                Some(t) => tokio::select! {
                    r = rx.recv() => r,
                    () = tokio::time::sleep_until(t + CHECKPOINT_INTERVAL) => {
                        self.commit(Vec::new()).await;
                        since = self.retry_at();
                        continue;
                    }
                },
            };
            // Every handle is gone, and the file closed with them; what the
            // overlay held is in the log, applied again on the next open.
            let Some(first) = first else { return };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let in_bounds = {
                let o = read(&self.overlay);
                o.active.changes.len() < CHECKPOINT_KEYS && o.active.bytes < CHECKPOINT_BYTES
            };
            if in_bounds
                && group
                    .iter()
                    .all(|r| matches!(r.cmd, Command::Replicated { .. }))
            {
                self.apply_in_memory(group);
                since.get_or_insert_with(tokio::time::Instant::now);
            } else {
                self.commit(group).await;
                since = self.retry_at();
            }
        }
    }

    /// After a commit: when to try again to write out what a failed one
    /// left in the overlay (nothing once it succeeded).
    fn retry_at(&self) -> Option<tokio::time::Instant> {
        (!read(&self.overlay).is_empty()).then(tokio::time::Instant::now)
    }

    fn current_codec(&self) -> Arc<Codec> {
        read(&self.codec).clone()
    }

    /// Applies replicated entries to the overlay: each entry is checked
    /// against the file and the overlay, and the group lands in the
    /// overlay at once, or not at all.
    fn apply_in_memory(&mut self, group: Vec<Request>) {
        let codec = self.current_codec();
        let (cmds, dones): (Vec<Command>, Vec<_>) =
            group.into_iter().map(|r| (r.cmd, r.done)).unzip();
        let staged = (|| {
            let db = self.db.upgrade().ok_or(StoreError::Closed(self.id))?;
            let txn = db.begin_read()?;
            let overlay = read(&self.overlay);
            let mut w = DataWriter {
                data: Staged {
                    staged: Changes::new(),
                    overlay: &overlay,
                    file: txn.open_table(DATA)?,
                },
                counters: self.counters,
            };
            let mut replies = Vec::with_capacity(cmds.len());
            let mut marker = None;
            for cmd in cmds {
                if let Command::Replicated { entries, applied } = cmd {
                    let mut reply = Vec::with_capacity(entries.len());
                    for ops in entries {
                        reply.push(w.apply(&codec, ops)?);
                    }
                    replies.push(Ok(reply));
                    marker = Some(applied);
                }
            }
            Ok((w.data.staged, w.counters, marker, replies))
        })();
        match staged {
            Ok((staged, counters, marker, replies)) => {
                let mut o = write(&self.overlay);
                for (k, v) in staged {
                    o.active.bytes += k.len() + v.as_ref().map_or(0, Vec::len);
                    o.active.changes.insert(k, v);
                }
                o.active.applied = marker.or(o.active.applied.take());
                drop(o);
                self.counters = counters;
                for (d, r) in dones.into_iter().zip(replies) {
                    let _ = d.send(r);
                }
            }
            Err(e) => fail(self.id, dones, &e),
        }
    }

    /// Writes the overlay and `group` to the file in one transaction.
    async fn commit(&mut self, group: Vec<Request>) {
        let (cmds, dones): (Vec<Command>, Vec<_>) =
            group.into_iter().map(|r| (r.cmd, r.done)).unzip();
        let Some(db) = self.db.upgrade() else {
            for d in dones {
                let _ = d.send(Err(StoreError::Closed(self.id)));
            }
            return;
        };
        // Readers see the frozen generation until the file holds it.
        let frozen = {
            let mut o = write(&self.overlay);
            let g = Arc::new(std::mem::take(&mut o.active));
            o.frozen = Some(g.clone());
            g
        };
        let (id, codec, draft, counters) = (
            self.id,
            self.current_codec(),
            self.keys.clone(),
            self.counters,
        );
        let held = frozen.clone();
        let outcome = blocking(move || commit(id, &db, &held, cmds, codec, draft, counters)).await;
        match outcome {
            Ok((done, replies)) => {
                write(&self.overlay).frozen = None;
                self.counters = done.counters;
                if let Some(s) = done.state {
                    self.state.store(s.code(), Ordering::Release);
                }
                if let Some((k, c)) = done.keys {
                    self.keys = Some(k);
                    *write(&self.codec) = c;
                }
                for (d, r) in dones.into_iter().zip(replies) {
                    let _ = d.send(r);
                }
            }
            Err(e) => {
                // The applies are still only in memory: keep them there.
                let mut o = write(&self.overlay);
                o.frozen = None;
                o.active = Arc::try_unwrap(frozen).unwrap_or_else(|g| (*g).clone());
                drop(o);
                fail(self.id, dones, &e);
            }
        }
    }
}

/// Answers every request of a failed group with the error.
fn fail(id: u32, dones: Vec<oneshot::Sender<Reply>>, e: &StoreError) {
    tracing::error!(shard = id, error = %e, "shard commit failed");
    let msg = e.to_string();
    for d in dones {
        let _ = d.send(Err(StoreError::Io(std::io::Error::other(msg.clone()))));
    }
}

/// What a committed group changed besides data.
struct Committed {
    counters: Counters,
    state: Option<ShardState>,
    /// New data keys and the codec built from them.
    keys: Option<(DataKeys, Arc<Codec>)>,
}

/// Rows a [`DataWriter`] reads and changes: the file's table in a write
/// transaction, or [`Staged`] changes over the overlay and the file.
trait Rows {
    /// Calls `f` with the stored bytes of `key`, if any.
    fn with_stored<T>(
        &self,
        key: &str,
        f: impl FnOnce(Option<&[u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
    /// Stores (or, with `None`, removes) `key`; returns the length of
    /// what it replaced.
    fn set(&mut self, key: &str, value: Option<Vec<u8>>) -> Result<Option<usize>, StoreError>;
}

/// Calls `f` with the bytes `table` stores under `key`, if any.
fn with_row<T>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
    f: impl FnOnce(Option<&[u8]>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let g = table.get(key)?;
    f(g.as_ref().map(|g| g.value()))
}

impl Rows for redb::Table<'_, &'static str, &'static [u8]> {
    fn with_stored<T>(
        &self,
        key: &str,
        f: impl FnOnce(Option<&[u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        with_row(self, key, f)
    }

    fn set(&mut self, key: &str, value: Option<Vec<u8>>) -> Result<Option<usize>, StoreError> {
        let old = match value {
            Some(v) => self.insert(key, v.as_slice())?,
            None => self.remove(key)?,
        };
        Ok(old.map(|o| o.value().len()))
    }
}

/// A group's changes, staged in front of the overlay and the file until
/// the whole group has applied.
struct Staged<'o> {
    staged: Changes,
    overlay: &'o Overlay,
    file: redb::ReadOnlyTable<&'static str, &'static [u8]>,
}

impl Rows for Staged<'_> {
    fn with_stored<T>(
        &self,
        key: &str,
        f: impl FnOnce(Option<&[u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Some(v) = self.staged.get(key) {
            return f(v.as_deref());
        }
        if let Some(v) = self.overlay.lookup(key) {
            return f(v);
        }
        with_row(&self.file, key, f)
    }

    fn set(&mut self, key: &str, value: Option<Vec<u8>>) -> Result<Option<usize>, StoreError> {
        let old = self.with_stored(key, |v| Ok(v.map(<[u8]>::len)))?;
        self.staged.insert(key.to_owned(), value);
        Ok(old)
    }
}

/// The version `key` has now: as staged earlier in this request, else as
/// stored (decoding the record, which for a sealed value means opening it).
fn version_of(
    data: &impl Rows,
    codec: &Codec,
    staged: &BTreeMap<String, Option<u64>>,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    if let Some(v) = staged.get(key) {
        return Ok(*v);
    }
    data.with_stored(key, |stored| {
        stored
            .map(|v| codec.decode(key, v).map(|r| r.version))
            .transpose()
    })
}

/// Checks every expectation of one request in order, each against the
/// state the request's earlier ops leave; nothing is written.
fn check_expectations(data: &impl Rows, codec: &Codec, ops: &[Op]) -> Result<(), StoreError> {
    if ops.iter().all(|op| {
        matches!(
            op,
            Op::Put(.., Expect::Any) | Op::Delete(_, Expect::Any) | Op::Import(..)
        )
    }) {
        return Ok(());
    }
    let mut staged = BTreeMap::new();
    for op in ops {
        let key = op.key();
        let current = version_of(data, codec, &staged, key)?;
        let (expect, after) = match op {
            // The version an op will take is unknown here but not needed:
            // a later op of the same request can only expect "exists".
            Op::Put(_, _, e) => (*e, Some(u64::MAX)),
            Op::Delete(_, e) => (*e, None),
            Op::Import(_, r) => (Expect::Any, Some(r.version)),
        };
        if !expect.holds(current) {
            return Err(StoreError::Precondition {
                key: key.to_owned(),
                current,
            });
        }
        staged.insert(key.to_owned(), after);
    }
    Ok(())
}

/// The data rows with the counters every change to them keeps.
struct DataWriter<R> {
    data: R,
    counters: Counters,
}

impl<R: Rows> DataWriter<R> {
    fn store(&mut self, key: &str, value: Option<Vec<u8>>) -> Result<(), StoreError> {
        let c = &mut self.counters;
        if let Some(v) = &value {
            c.bytes += (key.len() + v.len()) as u64;
        }
        if let Some(old) = self.data.set(key, value)? {
            c.bytes = c.bytes.saturating_sub((key.len() + old) as u64);
        }
        Ok(())
    }

    /// Applies one request's ops if every expectation holds. A failed
    /// expectation refuses this request only (the inner error); the others
    /// of the group still commit.
    fn apply(&mut self, codec: &Codec, ops: Vec<Op>) -> Result<Outcome, StoreError> {
        if let Err(e) = check_expectations(&self.data, codec, &ops) {
            return match e {
                StoreError::Precondition { .. } => Ok(Err(e)),
                other => Err(other),
            };
        }
        let mut versions = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put(key, mut record, _) => {
                    self.counters.revision += 1;
                    record.version = self.counters.revision;
                    let enc = codec.encode(&key, &record)?;
                    self.store(&key, Some(enc))?;
                    versions.push(record.version);
                }
                Op::Delete(key, _) => {
                    self.counters.revision += 1;
                    self.store(&key, None)?;
                    versions.push(self.counters.revision);
                }
                Op::Import(key, record) => {
                    let c = &mut self.counters;
                    c.revision = c.revision.max(record.version);
                    let enc = codec.encode(&key, &record)?;
                    self.store(&key, Some(enc))?;
                    versions.push(record.version);
                }
            }
        }
        Ok(Ok(versions))
    }
}

/// Writes `overlay` (what applies left in memory), then `cmds`, in one
/// transaction.
fn commit(
    id: u32,
    db: &Database,
    overlay: &Generation,
    cmds: Vec<Command>,
    mut codec: Arc<Codec>,
    mut keys: Option<DataKeys>,
    mut counters: Counters,
) -> Result<(Committed, Vec<Reply>), StoreError> {
    let mut txn = db.begin_write()?;
    // Only replicated applies may skip the fsync (their log has them);
    // any other command in the group makes the whole commit durable.
    let durable = cmds
        .iter()
        .any(|c| !matches!(c, Command::Replicated { .. } | Command::Checkpoint));
    if !durable {
        txn.set_durability(redb::Durability::None)
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    }
    let mut new_state = None;
    let mut keys_changed = false;
    let mut replies = Vec::with_capacity(cmds.len());
    {
        let mut meta = txn.open_table(META)?;
        let mut w = DataWriter {
            data: txn.open_table(DATA)?,
            counters,
        };
        // Already counted as they were applied.
        for (key, value) in &overlay.changes {
            w.data.set(key, value.clone())?;
        }
        if let Some(applied) = &overlay.applied {
            txn.open_table(RAFT)?
                .insert(RAFT_APPLIED, applied.as_slice())?;
        }
        for cmd in cmds {
            let mut reply = Vec::new();
            match cmd {
                Command::Apply(ops) => reply.push(w.apply(&codec, ops)?),
                Command::Replicated { entries, applied } => {
                    for ops in entries {
                        reply.push(w.apply(&codec, ops)?);
                    }
                    txn.open_table(RAFT)?
                        .insert(RAFT_APPLIED, applied.as_slice())?;
                }
                Command::Flush | Command::Checkpoint => {}
                Command::Restore { from, applied } => {
                    w.data.retain(|_, _| false)?;
                    w.counters = Counters {
                        bytes: 0,
                        revision: from.revision(),
                    };
                    for r in from {
                        let (key, record) = r?;
                        check_key(&key)?;
                        let enc = codec.encode(&key, &record)?;
                        w.store(&key, Some(enc))?;
                    }
                    txn.open_table(RAFT)?
                        .insert(RAFT_APPLIED, applied.as_slice())?;
                }
                Command::SetState(s) => {
                    meta.insert(META_STATE, u64::from(s.code()))?;
                    new_state = Some(s);
                }
                Command::RotateKey => {
                    let Some(k) = keys.as_mut() else {
                        return Err(StoreError::Invalid(format!("shard {id} is not encrypted")));
                    };
                    let (kid, wrapped) = crypto::new_data_key(&k.master, id)?;
                    let dek = crypto::unwrap_data_key(&k.master, id, &wrapped)?;
                    txn.open_table(KEYS)?.insert(kid, wrapped.as_slice())?;
                    meta.insert(META_DATA_KEY, u64::from(kid))?;
                    k.keys.insert(kid, dek);
                    k.current = kid;
                    codec = Arc::new(k.codec(id));
                    keys_changed = true;
                }
                Command::Reseal(list) => {
                    for key in list {
                        let Some(stored) = w.data.get(key.as_str())?.map(|v| v.value().to_vec())
                        else {
                            continue;
                        };
                        if codec.is_stale(&stored) {
                            let enc = codec.encode(&key, &codec.decode(&key, &stored)?)?;
                            w.store(&key, Some(enc))?;
                        }
                    }
                }
                Command::RetainKeys(retain) => {
                    let Some(k) = keys.as_mut() else {
                        replies.push(Ok(reply));
                        continue;
                    };
                    let mut table = txn.open_table(KEYS)?;
                    let gone: Vec<u32> = k
                        .keys
                        .keys()
                        .copied()
                        .filter(|kid| *kid != k.current && !retain.contains(kid))
                        .collect();
                    for kid in &gone {
                        table.remove(*kid)?;
                        k.keys.remove(kid);
                    }
                    if !gone.is_empty() {
                        codec = Arc::new(k.codec(id));
                        keys_changed = true;
                    }
                }
            }
            replies.push(Ok(reply));
        }
        meta.insert(META_BYTES, w.counters.bytes)?;
        meta.insert(META_REVISION, w.counters.revision)?;
        counters = w.counters;
    }
    txn.commit()?;
    Ok((
        Committed {
            counters,
            state: new_state,
            keys: keys.filter(|_| keys_changed).map(|k| (k, codec)),
        },
        replies,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MasterKeys, ShardStore};

    fn put(k: &str, e: Expect) -> Op {
        Op::Put(k.into(), Record::new("t", k.as_bytes().to_vec()), e)
    }

    /// Whether the shard's file itself (not the overlay) holds `key`.
    fn in_file(s: &Shard, key: &str) -> Result<bool, StoreError> {
        Ok(s.db.begin_read()?.open_table(DATA)?.get(key)?.is_some())
    }

    #[tokio::test]
    async fn replicated_applies_are_read_from_memory_until_checkpointed() -> Result<(), StoreError>
    {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::open(dir.path(), Some(MasterKeys::new([5; 32], &[])))?;
        let s = store.create_shard(1, ShardState::Replicated).await?;
        // "old" reaches the file through an ordinary durable write.
        s.put("old".into(), Record::new("t", b"old".to_vec()))
            .await?;
        assert!(in_file(&s, "old")?);
        let out = s
            .apply_replicated(
                vec![
                    vec![put("a", Expect::Absent)],
                    vec![Op::Delete("old".into(), Expect::Exists)],
                ],
                b"m1".to_vec(),
            )
            .await?;
        assert!(matches!(out[0], Ok(ref v) if v == &[2]));
        assert!(matches!(out[1], Ok(ref v) if v == &[3]));
        // Held in memory: the file has neither change yet, reads see both.
        assert!(!in_file(&s, "a")? && in_file(&s, "old")?);
        assert_eq!(
            s.get("a").await?.map(|r| (r.version, r.value)),
            Some((2, b"a".to_vec()))
        );
        assert_eq!(
            s.get("old").await?,
            None,
            "a deletion in memory hides the file's value"
        );
        // Expectations see the overlay as well.
        let out = s
            .apply_replicated(
                vec![
                    vec![put("a", Expect::Absent)],
                    vec![put("a", Expect::Version(2))],
                    vec![put("old", Expect::Exists)],
                ],
                b"m2".to_vec(),
            )
            .await?;
        assert!(matches!(
            out[0],
            Err(StoreError::Precondition {
                current: Some(2),
                ..
            })
        ));
        assert!(matches!(out[1], Ok(ref v) if v == &[4]));
        assert!(matches!(
            out[2],
            Err(StoreError::Precondition { current: None, .. })
        ));
        assert!(!in_file(&s, "a")?, "still only in memory");
        // Reads of the file alone (lists, counts, the marker) checkpoint first.
        assert_eq!(s.list("", None, 10).await?, vec!["a"]);
        assert!(in_file(&s, "a")? && !in_file(&s, "old")?);
        // The same writes made durably, one transaction each, count alike.
        let control = store.create_shard(9, ShardState::Active).await?;
        control
            .put("old".into(), Record::new("t", b"old".to_vec()))
            .await?;
        control.apply(vec![put("a", Expect::Any)]).await?;
        control.delete("old".into()).await?;
        control.apply(vec![put("a", Expect::Any)]).await?;
        assert_eq!(s.stats().await?, control.stats().await?);
        assert_eq!(s.raft_applied().await?, Some(b"m2".to_vec()));
        // Left alone, applies reach the file by themselves.
        s.apply_replicated(vec![vec![put("later", Expect::Any)]], b"m3".to_vec())
            .await?;
        // The writer commits the file, then empties the overlay: wait for
        // both (a reader may see the commit before the overlay is emptied).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(in_file(&s, "later")? && read(&s.overlay).is_empty()) {
            assert!(std::time::Instant::now() < deadline, "never checkpointed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let marker = s.db.begin_read()?.open_table(RAFT)?.get(RAFT_APPLIED)?;
        assert_eq!(marker.map(|m| m.value().to_vec()), Some(b"m3".to_vec()));
        control.apply(vec![put("later", Expect::Any)]).await?;
        // The revision and byte count carried across checkpoints survive a
        // reopen.
        drop((s, control, store));
        let store = ShardStore::open(dir.path(), Some(MasterKeys::new([5; 32], &[])))?;
        let s = store.shard(1).ok_or(StoreError::Closed(1))?;
        assert_eq!(s.put("next".into(), Record::new("t", vec![])).await?, 6);
        let control = store.shard(9).ok_or(StoreError::Closed(9))?;
        control.put("next".into(), Record::new("t", vec![])).await?;
        assert_eq!(s.stats().await?, control.stats().await?);
        Ok(())
    }

    #[tokio::test]
    async fn the_overlay_is_bounded_by_key_count() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::open(dir.path(), None)?;
        let s = store.create_shard(2, ShardState::Replicated).await?;
        let batch = 1000;
        for round in 0..8 {
            let entries = (0..batch)
                .map(|i| vec![put(&format!("k{round}-{i}"), Expect::Any)])
                .collect();
            s.apply_replicated(entries, vec![round]).await?;
            let held = read(&s.overlay).active.changes.len();
            assert!(held < CHECKPOINT_KEYS + batch, "{held} keys held in memory");
        }
        assert_eq!(s.stats().await?.key_count, 8 * batch as u64);
        Ok(())
    }
}
