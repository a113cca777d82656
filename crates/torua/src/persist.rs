//! State the coordinator must not forget, kept as one JSON document per
//! concern (placement, security). A lone coordinator keeps each in a file
//! replaced atomically: write a temp file, fsync it, rename it over the
//! old one, fsync the directory. Coordinators of a highly available
//! cluster keep them in their Raft group ([`crate::raft::docs`]). Either
//! way a change is durable *before* anyone can see it in memory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::de::DeserializeOwned;
use serde::Serialize;
use torua_raft::Condition;

use crate::http::ApiError;
use crate::raft::docs::{Docs, Proposed};

/// Replaces `path` with `bytes` atomically and durably; `private` makes
/// the file readable by its owner only.
pub fn replace_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    let mut f = opts.open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The value as this process holds it.
struct Held<T> {
    value: T,
    /// Counts the updates seen here (for derived caches).
    generation: u64,
    /// The document's version in the coordinators' group (0 for files).
    version: u64,
}

/// Where a value is kept.
enum Backend {
    File { path: PathBuf, private: bool },
    Replicated { docs: Arc<Docs>, key: &'static str },
}

/// A value mirrored in durable storage: readers see only what is stored.
pub struct Persisted<T> {
    held: Arc<RwLock<Held<T>>>,
    backend: Backend,
    /// Serializes this process's writers, so each update starts from the
    /// last value it saved.
    writer: tokio::sync::Mutex<()>,
    /// Replicated: an update is answered only once every other
    /// coordinator holds it (or did not say so in time).
    everywhere: bool,
}

fn poisoned() -> ApiError {
    ApiError::internal("coordinator state lock poisoned")
}

/// How many times an update is computed again after losing a race with
/// another coordinator's update.
const CONFLICT_RETRIES: usize = 8;

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Persisted<T> {
    /// Wraps `value`, already saved at `path` (or about to be, by `save_now`).
    pub fn new(path: PathBuf, value: T, private: bool) -> Self {
        Self::with(Backend::File { path, private }, value, 0)
    }

    fn with(backend: Backend, value: T, version: u64) -> Self {
        Persisted {
            held: Arc::new(RwLock::new(Held {
                value,
                generation: 0,
                version,
            })),
            backend,
            writer: tokio::sync::Mutex::new(()),
            everywhere: false,
        }
    }

    /// Makes every update wait until the other coordinators hold it: for
    /// state whose changes take rights away, which must not linger at
    /// another coordinator.
    pub(crate) fn held_everywhere(mut self) -> Self {
        self.everywhere = true;
        self
    }

    /// Writes `value` to `path` (start-up, before serving).
    pub fn save_now(path: &Path, value: &T, private: bool) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        replace_file(path, &bytes, private)
    }

    /// Document `key` of the coordinators' group, created from `init` when
    /// the group has none yet. Also says whether this call created it (a
    /// coordinator that raced another one and lost did not). Keeps the
    /// local copy current as the group applies changes.
    pub(crate) async fn replicated(
        docs: Arc<Docs>,
        key: &'static str,
        init: impl FnOnce() -> Result<T, crate::Error>,
    ) -> Result<(Self, bool), crate::Error> {
        let meta_err = |e: &dyn std::fmt::Display| crate::Error::Meta {
            path: format!("coordinator group document `{key}`"),
            message: e.to_string(),
        };
        docs.catch_up().await.map_err(|e| meta_err(&e.message))?;
        let load = || async {
            match docs.read(key).await.map_err(|e| meta_err(&e.message))? {
                Some((json, v)) => Ok(Some((
                    serde_json::from_slice::<T>(&json).map_err(|e| meta_err(&e))?,
                    v,
                ))),
                None => Ok::<_, crate::Error>(None),
            }
        };
        let mut created = false;
        let (value, version) = match load().await? {
            Some(found) => found,
            None => {
                let value = init()?;
                let json = serde_json::to_vec(&value).map_err(|e| meta_err(&e))?;
                let put = docs.put(key, json, Condition::Absent).await;
                match put.map_err(|e| meta_err(&e.message))? {
                    Proposed::Applied(v) => {
                        created = true;
                        (value, v)
                    }
                    // Another coordinator created it first: take theirs.
                    Proposed::Conflict => {
                        docs.catch_up().await.map_err(|e| meta_err(&e.message))?;
                        load().await?.ok_or_else(|| {
                            meta_err(&"created by another coordinator, yet absent")
                        })?
                    }
                }
            }
        };
        let me = Self::with(
            Backend::Replicated {
                docs: docs.clone(),
                key,
            },
            value,
            version,
        );
        docs.holds(key, version);
        tokio::spawn(follow(docs, key, Arc::downgrade(&me.held)));
        Ok((me, created))
    }

    /// Reads the current value.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, ApiError> {
        self.held
            .read()
            .map(|h| f(&h.value))
            .map_err(|_| poisoned())
    }

    /// Reads the current value with its generation, which changes with
    /// every update: what is derived from a value is valid while the
    /// generation is the same.
    pub fn read_versioned<R>(&self, f: impl FnOnce(&T) -> R) -> Result<(R, u64), ApiError> {
        self.held
            .read()
            .map(|h| (f(&h.value), h.generation))
            .map_err(|_| poisoned())
    }

    /// A copy of the current value.
    pub fn snapshot(&self) -> Result<T, ApiError> {
        self.read(T::clone)
    }

    /// Applies `f` to a copy, stores the copy, then publishes it. When `f`
    /// fails nothing changes; when it changes nothing, nothing is written.
    /// Replicated, `f` may run again: when another coordinator changed the
    /// document first, this one catches up and recomputes.
    pub async fn update<R>(
        &self,
        mut f: impl FnMut(&mut T) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let _one = self.writer.lock().await;
        for _ in 0..CONFLICT_RETRIES {
            let (current, version) = self.read_held()?;
            let mut next = current.clone();
            let out = f(&mut next)?;
            let bytes = serde_json::to_vec(&next).map_err(ApiError::internal)?;
            if bytes == serde_json::to_vec(&current).map_err(ApiError::internal)? {
                return Ok(out);
            }
            match &self.backend {
                Backend::File { path, private } => {
                    let (path, private, saved) = (path.clone(), *private, next.clone());
                    tokio::task::spawn_blocking(move || Self::save_now(&path, &saved, private))
                        .await
                        .map_err(ApiError::internal)?
                        .map_err(|e| {
                            ApiError::internal(format!("saving {}: {e}", path_of(&self.backend)))
                        })?;
                    self.publish(next, 0);
                    return Ok(out);
                }
                Backend::Replicated { docs, key } => {
                    match docs.put(key, bytes, Condition::Version(version)).await? {
                        Proposed::Applied(v) => {
                            self.publish(next, v);
                            docs.holds(key, v);
                            if self.everywhere {
                                let late = docs.sync_everywhere(key, v).await;
                                if !late.is_empty() {
                                    tracing::warn!(document = key, coordinators = ?late, "coordinators did not confirm a change in time; each applies it when it hears of it, and serves its older copy until then");
                                }
                            }
                            return Ok(out);
                        }
                        Proposed::Conflict => {
                            docs.catch_up().await?;
                            reload(docs, key, &self.held).await?;
                        }
                    }
                }
            }
        }
        Err(ApiError::unavailable(
            "metadata_contended",
            "other coordinators kept changing the same metadata; nothing was changed, retry",
        ))
    }

    /// Makes sure the value held is the latest committed one (replicated:
    /// ReadIndex, then load it; a file is always current).
    pub async fn refresh(&self) -> Result<(), ApiError> {
        if let Backend::Replicated { docs, key } = &self.backend {
            docs.catch_up().await?;
            reload(docs, key, &self.held).await?;
        }
        Ok(())
    }

    fn read_held(&self) -> Result<(T, u64), ApiError> {
        self.held
            .read()
            .map(|h| (h.value.clone(), h.version))
            .map_err(|_| poisoned())
    }

    /// Makes `value` current unless a newer version is already held (the
    /// follower task may have loaded it first).
    fn publish(&self, value: T, version: u64) {
        let mut h = self.held.write().unwrap_or_else(|p| p.into_inner());
        if version == 0 || version > h.version {
            h.value = value;
            h.version = version;
            h.generation += 1;
        }
    }
}

fn path_of(b: &Backend) -> String {
    match b {
        Backend::File { path, .. } => path.display().to_string(),
        Backend::Replicated { key, .. } => format!("document {key}"),
    }
}

/// Loads the group's version of document `key` into `held` when it is
/// newer than the one held.
async fn reload<T: DeserializeOwned>(
    docs: &Docs,
    key: &str,
    held: &RwLock<Held<T>>,
) -> Result<(), ApiError> {
    let Some((json, version)) = docs.read(key).await? else {
        return Ok(());
    };
    let newer = held.read().map(|h| version > h.version).unwrap_or(false);
    if newer {
        let value: T = serde_json::from_slice(&json).map_err(ApiError::internal)?;
        let mut h = held.write().unwrap_or_else(|p| p.into_inner());
        if version > h.version {
            h.value = value;
            h.version = version;
            h.generation += 1;
        }
    }
    docs.holds(key, version);
    Ok(())
}

/// Keeps a replicated document's local copy current: reloads it whenever
/// the group applies entries. Ends with the `Persisted`.
async fn follow<T: DeserializeOwned>(
    docs: Arc<Docs>,
    key: &'static str,
    held: std::sync::Weak<RwLock<Held<T>>>,
) {
    let mut metrics = docs.metrics();
    let mut seen = None;
    loop {
        let applied = metrics.borrow_and_update().last_applied;
        if applied != seen {
            let Some(h) = held.upgrade() else { return };
            match reload(&docs, key, &h).await {
                Ok(()) => seen = applied,
                Err(e) => {
                    tracing::warn!(document = key, error = %e.message, "cannot reload coordinator metadata")
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
