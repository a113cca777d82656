//! State the coordinator must not forget, kept as one JSON file per
//! concern (placement, security) and replaced atomically: write a temp
//! file, fsync it, rename it over the old one, fsync the directory. A
//! change is on disk *before* anyone can see it in memory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::Serialize;

use crate::http::ApiError;

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

/// A value mirrored in a JSON file: readers see only what is on disk.
pub struct Persisted<T> {
    /// The value and how many updates it has seen (for derived caches).
    value: RwLock<(T, u64)>,
    path: PathBuf,
    private: bool,
    /// Serializes writers, so each update starts from the last saved value.
    writer: tokio::sync::Mutex<()>,
}

fn poisoned() -> ApiError {
    ApiError::internal("coordinator state lock poisoned")
}

impl<T: Serialize + Clone + Send + Sync + 'static> Persisted<T> {
    /// Wraps `value`, already saved at `path` (or about to be, by `save_now`).
    pub fn new(path: PathBuf, value: T, private: bool) -> Self {
        Persisted {
            value: RwLock::new((value, 0)),
            path,
            private,
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// Writes `value` to `path` (start-up, before serving).
    pub fn save_now(path: &Path, value: &T, private: bool) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
        replace_file(path, &bytes, private)
    }

    /// Reads the current value.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, ApiError> {
        self.value.read().map(|v| f(&v.0)).map_err(|_| poisoned())
    }

    /// Reads the current value with its generation, which changes with
    /// every update: what is derived from a value is valid while the
    /// generation is the same.
    pub fn read_versioned<R>(&self, f: impl FnOnce(&T) -> R) -> Result<(R, u64), ApiError> {
        self.value
            .read()
            .map(|v| (f(&v.0), v.1))
            .map_err(|_| poisoned())
    }

    /// A copy of the current value.
    pub fn snapshot(&self) -> Result<T, ApiError> {
        self.read(T::clone)
    }

    /// Applies `f` to a copy, saves the copy, then publishes it. When `f`
    /// fails nothing changes.
    pub async fn update<R>(
        &self,
        f: impl FnOnce(&mut T) -> Result<R, ApiError>,
    ) -> Result<R, ApiError> {
        let _one = self.writer.lock().await;
        let mut next = self.snapshot()?;
        let out = f(&mut next)?;
        let saved = next.clone();
        let (path, private) = (self.path.clone(), self.private);
        tokio::task::spawn_blocking(move || Self::save_now(&path, &saved, private))
            .await
            .map_err(ApiError::internal)?
            .map_err(|e| ApiError::internal(format!("saving {}: {e}", self.path.display())))?;
        let mut v = self.value.write().map_err(|_| poisoned())?;
        v.1 += 1;
        v.0 = next;
        Ok(out)
    }
}
