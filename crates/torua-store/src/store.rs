use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::{MasterKeys, Shard, ShardState, StoreError, Wal};

/// All shards held by one node, under `<data dir>/shards/<id>.redb`.
#[derive(Debug)]
pub struct ShardStore {
    dir: PathBuf,
    shards: RwLock<BTreeMap<u32, Arc<Shard>>>,
    master: Option<Arc<MasterKeys>>,
    wal: Arc<Wal>,
}

impl ShardStore {
    /// Opens the data directory (creating it) and every shard file in it.
    /// With `master`, values are encrypted at rest (see `crypto.rs`);
    /// every shard's keys are checked before any file is written, so a
    /// wrong master key fails with nothing changed.
    /// Must run inside a tokio runtime (each shard starts a writer task).
    pub fn open(data_dir: &Path, master: Option<MasterKeys>) -> Result<Self, StoreError> {
        let dir = data_dir.join("shards");
        std::fs::create_dir_all(&dir)?;
        let master = master.map(Arc::new);
        let mut paths = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if let Some(id) = shard_id_of(&path) {
                Shard::check_keys(id, &path, master.as_deref())?;
                paths.insert(id, path);
            }
        }
        let wal = Wal::open(&data_dir.join("raft").join("wal"), master.clone())?;
        let mut shards = BTreeMap::new();
        for (id, path) in paths {
            shards.insert(id, Shard::open(id, &path, None, master.clone())?);
        }
        Ok(ShardStore {
            dir,
            shards: RwLock::new(shards),
            master,
            wal,
        })
    }

    /// The node's Raft log, shared by all of its shards' groups.
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }

    /// Whether values are encrypted at rest.
    pub fn encrypted(&self) -> bool {
        self.master.is_some()
    }

    /// Starts a new data key in every shard (see [`Shard::rotate_key`]);
    /// returns each shard's new key id.
    pub async fn rotate_keys(&self) -> Result<Vec<(u32, u32)>, StoreError> {
        let mut out = Vec::new();
        for s in self.shards() {
            out.push((s.id(), s.rotate_key().await?));
        }
        Ok(out)
    }

    fn path_of(&self, id: u32) -> PathBuf {
        self.dir.join(format!("{id}.redb"))
    }

    /// The shard if this node holds it.
    pub fn shard(&self, id: u32) -> Option<Arc<Shard>> {
        self.read().get(&id).cloned()
    }

    /// Ids of every shard held, ascending.
    pub fn shard_ids(&self) -> Vec<u32> {
        self.read().keys().copied().collect()
    }

    /// Every shard held, by ascending id.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        self.read().values().cloned().collect()
    }

    /// Creates the shard (or sets the state of the existing one).
    pub async fn create_shard(&self, id: u32, state: ShardState) -> Result<Arc<Shard>, StoreError> {
        if let Some(s) = self.shard(id) {
            if s.state() != state {
                s.set_state(state).await?;
            }
            return Ok(s);
        }
        let path = self.path_of(id);
        let rt = tokio::runtime::Handle::current();
        let master = self.master.clone();
        let shard = tokio::task::spawn_blocking(move || {
            let _guard = rt.enter();
            Shard::open(id, &path, Some(state), master)
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        let mut map = self.write();
        // A concurrent create of the same id may have won; keep the first.
        Ok(map.entry(id).or_insert(shard).clone())
    }

    /// Forgets the shard and deletes its file. Returns whether it existed.
    pub async fn drop_shard(&self, id: u32) -> Result<bool, StoreError> {
        let removed = self.write().remove(&id);
        if removed.is_none() {
            return Ok(false);
        }
        // In-flight readers keep the open file alive; unlinking is safe.
        drop(removed);
        match tokio::fs::remove_file(self.path_of(id)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Arc<Shard>>> {
        // A poisoned lock only means another thread panicked mid-access; the
        // map itself is always consistent (single insert/remove calls).
        self.shards.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u32, Arc<Shard>>> {
        self.shards.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn shard_id_of(path: &Path) -> Option<u32> {
    if path.extension()? != "redb" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expect, MasterKeys, Op, Record};

    #[tokio::test]
    async fn data_survives_reopen_and_stats_track_bytes() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        {
            let store = ShardStore::open(dir.path(), None)?;
            let s = store.create_shard(3, ShardState::Receiving).await?;
            s.put("a".into(), Record::new("t", vec![1; 10])).await?;
            s.put("b".into(), Record::new("t", vec![])).await?;
            s.put("a".into(), Record::new("t", vec![2; 4])).await?;
            s.delete("missing".into()).await?;
            let st = s.stats().await?;
            assert_eq!(st.key_count, 2);
            // key + record (11-byte header, content type, value)
            assert_eq!(st.byte_size, (1 + 11 + 1 + 4) + (1 + 11 + 1));
        }
        let store = ShardStore::open(dir.path(), None)?;
        assert_eq!(store.shard_ids(), vec![3]);
        let s = store.shard(3).ok_or(StoreError::Closed(3))?;
        assert_eq!(s.state(), ShardState::Receiving);
        assert_eq!(s.get("a").await?.map(|r| r.value), Some(vec![2; 4]));
        s.delete("a".into()).await?;
        assert_eq!(s.stats().await?.byte_size, 1 + 11 + 1);
        assert!(store.drop_shard(3).await?);
        assert!(!dir.path().join("shards/3.redb").exists());
        Ok(())
    }

    #[tokio::test]
    async fn list_respects_prefix_after_and_limit() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::open(dir.path(), None)?;
        let s = store.create_shard(0, ShardState::Active).await?;
        let ops = ["a/1", "a/2", "a/3", "b/1", "ä"]
            .iter()
            .map(|k| Op::Put((*k).into(), Record::new("", vec![]), Expect::Any))
            .collect();
        s.apply(ops).await?;
        assert_eq!(s.list("a/", None, 10).await?, vec!["a/1", "a/2", "a/3"]);
        assert_eq!(s.list("a/", Some("a/1"), 1).await?, vec!["a/2"]);
        assert_eq!(s.list("", Some("b/1"), 10).await?, vec!["ä"]);
        assert!(s.list("c", None, 10).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn versions_grow_and_expectations_hold_under_concurrency() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::open(dir.path(), None)?;
        let s = store.create_shard(2, ShardState::Active).await?;
        let rec = || Record::new("", vec![1]);
        let v1 = s.put_if("k".into(), rec(), Expect::Absent).await?;
        assert!(matches!(
            s.put_if("k".into(), rec(), Expect::Absent).await,
            Err(StoreError::Precondition { current: Some(v), .. }) if v == v1
        ));
        let v2 = s.put_if("k".into(), rec(), Expect::Version(v1)).await?;
        assert!(v2 > v1);
        assert_eq!(s.get("k").await?.map(|r| r.version), Some(v2));
        assert!(matches!(
            s.delete_if("k".into(), Expect::Version(v1)).await,
            Err(StoreError::Precondition { .. })
        ));
        s.delete_if("k".into(), Expect::Exists).await?;
        assert!(matches!(
            s.put_if("k".into(), rec(), Expect::Exists).await,
            Err(StoreError::Precondition { current: None, .. })
        ));
        // Recreated: a new, higher version (no ABA).
        let v3 = s.put("k".into(), rec()).await?;
        assert!(v3 > v2);
        // Many compare-and-sets from the same version: exactly one wins,
        // the rest fail without disturbing the group they shared.
        let mut tasks = Vec::new();
        for i in 0..50u8 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.put_if("k".into(), Record::new("", vec![i]), Expect::Version(v3))
                    .await
            }));
        }
        let mut won = 0;
        for t in tasks {
            match t
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
            {
                Ok(_) => won += 1,
                Err(StoreError::Precondition { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        assert_eq!(won, 1);
        // Versions survive a reopen, and the revision keeps growing.
        let last = s.get("k").await?.map(|r| r.version);
        drop((s, store));
        let store = ShardStore::open(dir.path(), None)?;
        let s = store.shard(2).ok_or(StoreError::Closed(2))?;
        assert_eq!(s.get("k").await?.map(|r| r.version), last);
        assert!(Some(s.put("k".into(), rec()).await?) > last);
        // An imported record keeps its version and lifts the revision.
        s.apply(vec![Op::Import(
            "copied".into(),
            Record {
                version: 1_000,
                ..rec()
            },
        )])
        .await?;
        assert_eq!(s.get("copied").await?.map(|r| r.version), Some(1_000));
        assert!(s.put("next".into(), rec()).await? > 1_000);
        Ok(())
    }

    #[tokio::test]
    async fn concurrent_writes_are_all_durable() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::open(dir.path(), None)?;
        let s = store.create_shard(1, ShardState::Active).await?;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.put(format!("k{i:03}"), Record::new("", vec![i as u8]))
                    .await
            }));
        }
        for t in tasks {
            t.await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        }
        assert_eq!(s.stats().await?.key_count, 200);
        Ok(())
    }

    /// Polls until every shard has one data key and no re-sealer runs.
    async fn settled(store: &ShardStore) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let mut done = true;
            for s in store.shards() {
                let k = s.key_status().await?;
                done &= k.keys == 1 && !k.resealing;
            }
            if done {
                return Ok(());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "re-sealing never settled"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn encryption_migrates_plaintext_rotates_online_and_refuses_wrong_keys(
    ) -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let rec = |i: usize| Record::new("text/plain", format!("value-{i}").into_bytes());
        {
            let store = ShardStore::open(dir.path(), None)?;
            let s = store.create_shard(0, ShardState::Active).await?;
            let ops = (0..300)
                .map(|i| Op::Put(format!("k{i:03}"), rec(i), Expect::Any))
                .collect();
            s.apply(ops).await?;
            assert_eq!(s.key_status().await?.current, None);
        }
        let key = secure::envelope::generate_key();
        // Plaintext under a master key is refused, unless the node migrates.
        let plain_file = std::fs::read(dir.path().join("shards/0.redb"))?;
        let refused = ShardStore::open(dir.path(), Some(MasterKeys::new(key, &[])));
        assert!(refused.is_err_and(|e| e.to_string().contains("TORUA_MIGRATE_PLAINTEXT")));
        assert!(std::fs::read(dir.path().join("shards/0.redb"))? == plain_file);
        {
            let store =
                ShardStore::open(dir.path(), Some(MasterKeys::new(key, &[]).migrating(true)))?;
            settled(&store).await?;
        }
        {
            let store = ShardStore::open(dir.path(), Some(MasterKeys::new(key, &[])))?;
            settled(&store).await?;
            let s = store.shard(0).ok_or(StoreError::Closed(0))?;
            let first = s.key_status().await?.current;
            assert!(first.is_some());
            assert_eq!(s.get("k007").await?.map(|r| r.value), Some(rec(7).value));
            // Rotate while writing; every value stays readable.
            let writer = {
                let s = s.clone();
                tokio::spawn(async move {
                    for i in 300..400 {
                        s.put(format!("k{i:03}"), rec(i)).await?;
                    }
                    Ok::<_, StoreError>(())
                })
            };
            let second = s.rotate_key().await?;
            assert_ne!(Some(second), first);
            writer
                .await
                .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
            settled(&store).await?;
            assert_eq!(s.key_status().await?.current, Some(second));
            for i in 0..400 {
                assert_eq!(
                    s.get(&format!("k{i:03}")).await?.map(|r| r.value),
                    Some(rec(i).value),
                    "k{i:03}"
                );
            }
            assert_eq!(s.scan("", None, 1000, usize::MAX).await?.len(), 400);
        }
        // A plaintext value written into the encrypted file is refused on
        // read, never sealed.
        {
            let db = redb::Database::create(dir.path().join("shards/0.redb"))
                .map_err(redb::Error::from)?;
            let txn = db.begin_write().map_err(redb::Error::from)?;
            txn.open_table(crate::tables::DATA)
                .map_err(redb::Error::from)?
                .insert("injected", rec(1).encode().as_slice())
                .map_err(redb::Error::from)?;
            txn.commit().map_err(redb::Error::from)?;
        }
        {
            let store = ShardStore::open(dir.path(), Some(MasterKeys::new(key, &[])))?;
            let s = store.shard(0).ok_or(StoreError::Closed(0))?;
            let injected = s.get("injected").await;
            assert!(
                injected.is_err_and(|e| e.to_string().contains("plaintext")),
                "an injected plaintext value is refused"
            );
            assert!(
                s.get("k007").await?.is_some(),
                "control: sealed values read"
            );
        }
        // Master-key rotation replaces the data key, not only its wrapping.
        let next = secure::envelope::generate_key();
        let before = {
            let store = ShardStore::open(dir.path(), Some(MasterKeys::new(key, &[])))?;
            let s = store.shard(0).ok_or(StoreError::Closed(0))?;
            s.key_status().await?.current
        };
        {
            let store = ShardStore::open(dir.path(), Some(MasterKeys::new(next, &[key])))?;
            let s = store.shard(0).ok_or(StoreError::Closed(0))?;
            assert_ne!(s.key_status().await?.current, before, "a new data key");
            settled(&store).await?;
            assert_eq!(s.get("k007").await?.map(|r| r.value), Some(rec(7).value));
        }
        let old_master = ShardStore::open(dir.path(), Some(MasterKeys::new(key, &[])));
        assert!(old_master.is_err_and(|e| e.to_string().contains("not configured")));
        let file = std::fs::read(dir.path().join("shards/0.redb"))?;
        let wrong = ShardStore::open(
            dir.path(),
            Some(MasterKeys::new(secure::envelope::generate_key(), &[])),
        );
        assert!(wrong.is_err_and(|e| e.to_string().contains("not configured")));
        let none = ShardStore::open(dir.path(), None);
        assert!(none.is_err_and(|e| e.to_string().contains("no master key")));
        assert!(
            std::fs::read(dir.path().join("shards/0.redb"))? == file,
            "a refused open leaves the file untouched"
        );
        Ok(())
    }

    #[tokio::test]
    async fn rejects_bad_keys() -> Result<(), StoreError> {
        let dir = tempfile::tempdir()?;
        let store = ShardStore::open(dir.path(), None)?;
        let s = store.create_shard(1, ShardState::Active).await?;
        assert!(s.put(String::new(), Record::new("", vec![])).await.is_err());
        assert!(s
            .put("k".repeat(4097), Record::new("", vec![]))
            .await
            .is_err());
        Ok(())
    }

    #[tokio::test]
    async fn replicated_entries_commit_with_their_marker_and_fail_alone() -> Result<(), StoreError>
    {
        let dir = tempfile::tempdir()?;
        {
            let store = ShardStore::open(dir.path(), Some(MasterKeys::new([3; 32], &[])))?;
            let s = store.create_shard(4, ShardState::Active).await?;
            assert_eq!(s.raft_applied().await?, None);
            let put = |k: &str, e| Op::Put(k.into(), Record::new("t", b"v".to_vec()), e);
            let out = s
                .apply_replicated(
                    vec![
                        vec![put("a", Expect::Absent)],
                        vec![put("", Expect::Any)],
                        vec![put("a", Expect::Absent)],
                        vec![
                            put("b", Expect::Any),
                            Op::Delete("a".into(), Expect::Exists),
                        ],
                    ],
                    b"m1".to_vec(),
                )
                .await?;
            assert!(matches!(out[0], Ok(ref v) if v == &[1]));
            assert!(matches!(out[1], Err(StoreError::Invalid(_))));
            assert!(matches!(
                out[2],
                Err(StoreError::Precondition {
                    current: Some(1),
                    ..
                })
            ));
            assert!(matches!(out[3], Ok(ref v) if v == &[2, 3]));
            s.flush().await?;
        }
        let store = ShardStore::open(dir.path(), Some(MasterKeys::new([3; 32], &[])))?;
        let s = store.shard(4).ok_or(StoreError::Closed(4))?;
        assert_eq!(s.raft_applied().await?, Some(b"m1".to_vec()));
        let (snap, marker) = s.snapshot().await?;
        assert_eq!(marker, Some(b"m1".to_vec()));
        // A snapshot installs over whatever was there, revision included.
        let other = store.create_shard(5, ShardState::Replicated).await?;
        other
            .put("z".into(), Record::new("t", b"x".to_vec()))
            .await?;
        other.restore(snap, b"m2".to_vec()).await?;
        assert_eq!(other.get("z").await?, None);
        assert_eq!(other.get("b").await?.map(|r| r.version), Some(2));
        let v = other.put("y".into(), Record::new("t", vec![])).await?;
        assert_eq!(v, 4, "the revision came with the snapshot");
        assert_eq!(other.raft_applied().await?, Some(b"m2".to_vec()));
        Ok(())
    }
}
