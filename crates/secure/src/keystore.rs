//! Signing keys on disk: `<dir>/keys.json` (the manifest) and one
//! `<kid>.pem` (PKCS#8, mode 0600) per key that is not retired.
//!
//! A key's life: `pending` (published, not signing yet, so verifiers can
//! cache it first) → `active` (signs) → `retiring` (published so its tokens
//! stay valid, no longer signs) → `retired` (private key deleted, no longer
//! published). Exactly one key is active. Writers replace the manifest
//! atomically; a running server notices the change by the manifest's mtime.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::jwt::{KeyAlg, KeyRing, SigningKey};
use crate::Error;

const MANIFEST: &str = "keys.json";

/// Lifecycle state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing.
    Pending,
    /// The signing key.
    Active,
    /// Published until its tokens have expired.
    Retiring,
    /// Gone: not published, private key deleted.
    Retired,
}

/// One key in the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Key id (RFC 7638 thumbprint).
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// State.
    pub state: KeyState,
    /// Unix seconds.
    pub created_at: u64,
    /// When it stopped signing (unix seconds), for retiring keys.
    #[serde(default)]
    pub retiring_since: Option<u64>,
    /// When it started signing (unix seconds).
    #[serde(default)]
    pub activated_at: Option<u64>,
}

/// A directory of signing keys.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("{}: {e}", path.display()))
}

impl KeyStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyStore { dir: dir.into() }
    }

    /// Every key ever recorded, oldest first.
    pub fn entries(&self) -> Result<Vec<KeyEntry>, Error> {
        let path = self.dir.join(MANIFEST);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// Modification time of the manifest, to notice changes made by others.
    pub fn modified(&self) -> Option<SystemTime> {
        std::fs::metadata(self.dir.join(MANIFEST))
            .and_then(|m| m.modified())
            .ok()
    }

    fn save(&self, entries: &[KeyEntry]) -> Result<(), Error> {
        create_private_dir(&self.dir)?;
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        let bytes = serde_json::to_vec_pretty(entries).map_err(|e| Error::Io(e.to_string()))?;
        write_private(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }

    fn add(&self, alg: KeyAlg, state: KeyState, now: u64) -> Result<KeyEntry, Error> {
        let key = SigningKey::generate(alg)?;
        create_private_dir(&self.dir)?;
        write_private(
            &self.dir.join(format!("{}.pem", key.kid())),
            key.pem().expose().as_bytes(),
        )?;
        let activated_at = (state == KeyState::Active).then_some(now);
        Ok(KeyEntry {
            kid: key.kid().to_owned(),
            alg: alg.as_str().into(),
            state,
            created_at: now,
            retiring_since: None,
            activated_at,
        })
    }

    /// Creates an active key if there is none. Returns its entry when created.
    pub fn ensure_active(&self, alg: KeyAlg, now: u64) -> Result<Option<KeyEntry>, Error> {
        let mut entries = self.entries()?;
        if entries.iter().any(|e| e.state == KeyState::Active) {
            return Ok(None);
        }
        let e = self.add(alg, KeyState::Active, now)?;
        entries.push(e.clone());
        self.save(&entries)?;
        Ok(Some(e))
    }

    /// Adds a pending key (active if the store has none).
    pub fn generate(&self, alg: KeyAlg, now: u64) -> Result<KeyEntry, Error> {
        let mut entries = self.entries()?;
        let state = if entries.iter().any(|e| e.state == KeyState::Active) {
            KeyState::Pending
        } else {
            KeyState::Active
        };
        let e = self.add(alg, state, now)?;
        entries.push(e.clone());
        self.save(&entries)?;
        Ok(e)
    }

    /// Makes the newest pending key of `alg` (or a new one) the signing key;
    /// the previous signing key starts retiring. Returns `(old, new)` kids.
    pub fn rotate(&self, alg: KeyAlg, now: u64) -> Result<(Option<String>, String), Error> {
        let mut entries = self.entries()?;
        let pending = entries
            .iter()
            .rposition(|e| e.state == KeyState::Pending && e.alg == alg.as_str());
        let new_idx = match pending {
            Some(i) => i,
            None => {
                let e = self.add(alg, KeyState::Pending, now)?;
                entries.push(e);
                entries.len() - 1
            }
        };
        let mut old = None;
        for e in entries.iter_mut().filter(|e| e.state == KeyState::Active) {
            e.state = KeyState::Retiring;
            e.retiring_since = Some(now);
            old = Some(e.kid.clone());
        }
        entries[new_idx].state = KeyState::Active;
        entries[new_idx].activated_at = Some(now);
        let new = entries[new_idx].kid.clone();
        self.save(&entries)?;
        Ok((old, new))
    }

    /// Rotates (as [`Self::rotate`]) when the signing key has signed for
    /// `period` or longer. Returns `(old, new)` kids when it rotated.
    pub fn rotate_if_older(
        &self,
        alg: KeyAlg,
        period: Duration,
        now: u64,
    ) -> Result<Option<(Option<String>, String)>, Error> {
        let due = self
            .entries()?
            .iter()
            .find(|e| e.state == KeyState::Active)
            .is_some_and(|e| {
                now >= e
                    .activated_at
                    .unwrap_or(e.created_at)
                    .saturating_add(period.as_secs())
            });
        if due {
            self.rotate(alg, now).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Retires a pending or retiring key now (e.g. suspected compromise):
    /// its tokens stop verifying and its private key is deleted.
    pub fn retire(&self, kid: &str) -> Result<(), Error> {
        let mut entries = self.entries()?;
        let e = entries
            .iter_mut()
            .find(|e| e.kid == kid)
            .ok_or_else(|| Error::Config(format!("no key {kid}")))?;
        if e.state == KeyState::Active {
            return Err(Error::Config(format!(
                "key {kid} is the signing key; rotate first"
            )));
        }
        e.state = KeyState::Retired;
        self.save(&entries)?;
        let pem = self.dir.join(format!("{kid}.pem"));
        match std::fs::remove_file(&pem) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&pem, e)),
            _ => Ok(()),
        }
    }

    /// Retires keys that have been retiring for longer than `grace` (the
    /// longest lifetime of a token they signed). Returns their kids.
    pub fn expire(&self, grace: Duration, now: u64) -> Result<Vec<String>, Error> {
        let due: Vec<String> = self
            .entries()?
            .into_iter()
            .filter(|e| {
                e.state == KeyState::Retiring
                    && e.retiring_since.is_some_and(|t| now >= t + grace.as_secs())
            })
            .map(|e| e.kid)
            .collect();
        for kid in &due {
            self.retire(kid)?;
        }
        Ok(due)
    }

    /// Builds the ring: the active key signs; pending and retiring keys are published.
    pub fn load_ring(&self) -> Result<KeyRing, Error> {
        let entries = self.entries()?;
        let mut current = None;
        let mut others = Vec::new();
        for e in entries.iter().filter(|e| e.state != KeyState::Retired) {
            let alg: KeyAlg = e.alg.parse()?;
            let path = self.dir.join(format!("{}.pem", e.kid));
            let pem = std::fs::read_to_string(&path).map_err(|err| io(&path, err))?;
            let key = SigningKey::from_pkcs8_pem(alg, &pem)?;
            if key.kid() != e.kid {
                return Err(Error::Config(format!(
                    "{} does not hold key {}",
                    path.display(),
                    e.kid
                )));
            }
            if e.state == KeyState::Active {
                current = Some(key);
            } else {
                others.push(key.public().clone());
            }
        }
        let current = current.ok_or_else(|| {
            Error::Config(format!("no active signing key in {}", self.dir.display()))
        })?;
        Ok(KeyRing::new(current, others))
    }
}

fn create_private_dir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io(dir, e))?;
    }
    Ok(())
}

/// Writes a file readable by its owner only (0600), durably.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle() -> Result<(), Error> {
        let dir =
            std::env::temp_dir().join(format!("secure-keystore-{}", crate::token::random_uuid()));
        let store = KeyStore::new(&dir);
        let first = store
            .ensure_active(KeyAlg::EdDsa, 100)?
            .ok_or_else(|| Error::Config("created".into()))?;
        assert!(store.ensure_active(KeyAlg::EdDsa, 101)?.is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(format!("{}.pem", first.kid)))
                .map_err(|e| io(&dir, e))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let ring = store.load_ring()?;
        assert_eq!(ring.current_kid(), first.kid);
        let pending = store.generate(KeyAlg::EdDsa, 110)?;
        assert_eq!(pending.state, KeyState::Pending);
        assert_eq!(
            store.load_ring()?.jwks()["keys"].as_array().map(Vec::len),
            Some(2)
        );
        let (old, new) = store.rotate(KeyAlg::EdDsa, 120)?;
        assert_eq!(
            (old.as_deref(), new.as_str()),
            (Some(first.kid.as_str()), pending.kid.as_str())
        );
        assert!(
            store.retire(&new).is_err(),
            "the signing key cannot be retired"
        );
        assert!(store.expire(Duration::from_secs(60), 150)?.is_empty());
        assert_eq!(
            store.expire(Duration::from_secs(60), 180)?,
            vec![first.kid.clone()]
        );
        // Scheduled rotation counts from activation (120), not creation (110).
        assert!(store
            .rotate_if_older(KeyAlg::EdDsa, Duration::from_secs(100), 215)?
            .is_none());
        let (old, _) = store
            .rotate_if_older(KeyAlg::EdDsa, Duration::from_secs(100), 220)?
            .ok_or_else(|| Error::Config("due".into()))?;
        assert_eq!(old.as_deref(), Some(new.as_str()));
        let ring = store.load_ring()?;
        assert_ne!(ring.current_kid(), new, "rotated on schedule");
        assert_eq!(ring.jwks()["keys"].as_array().map(Vec::len), Some(2));
        assert!(!dir.join(format!("{}.pem", first.kid)).exists());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
