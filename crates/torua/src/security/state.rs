//! The coordinator's security state: the access policy and Torua API keys,
//! persisted in `security.json` beside the placement metadata.
//!
//! An API key looks like `torua_<id>_<secret>`: `id` (12 hex digits) finds
//! the record, the whole key is checked against its SHA-256 digest in
//! constant time. Keys are shown once, at creation; only digests are kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::http::StatusCode;
use secure::Secret;
use serde::{Deserialize, Serialize};

use super::policy::{role_exists, Access, Policy, ADMIN_ROLE, NODE_ROLE};
use crate::http::ApiError;
use crate::persist::Persisted;
use crate::Error;

const FILE: &str = "security.json";
/// The name of the security document in the coordinators' group.
const DOC: &str = "security";
/// Written once, when a cluster is created: the first admin key.
pub const BOOTSTRAP_KEY_FILE: &str = "bootstrap-admin.key";
/// Where a coordinator of several keeps the key it proposed until its
/// state wins (then renamed to [`BOOTSTRAP_KEY_FILE`]).
const PENDING_KEY_FILE: &str = "bootstrap-admin.key.pending";
const FORMAT: u32 = 1;
/// Every Torua API key starts with this.
pub const KEY_PREFIX: &str = "torua_";
const ID_LEN: usize = 12;

/// One API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Public id, part of the key.
    pub id: String,
    /// Operator's label.
    pub name: String,
    /// Hex SHA-256 of the whole key.
    digest: String,
    /// Roles bound to the key.
    pub roles: Vec<String>,
    /// The one node a key with the `node` role may register as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds after which the key is refused.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// Unix seconds when it was revoked.
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

impl ApiKey {
    /// What `GET /admin/apikeys` shows.
    pub fn view(&self, now: u64) -> serde_json::Value {
        let state = if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        };
        serde_json::json!({
            "id": self.id, "name": self.name, "roles": self.roles, "node_id": self.node_id, "state": state,
            "created_at": self.created_at, "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    format: u32,
    policy: Policy,
    api_keys: BTreeMap<String, ApiKey>,
}

/// Why a presented API key was refused (safe to tell the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No such key, or the secret does not match.
    Invalid,
    /// Revoked by an administrator.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl KeyRefusal {
    /// Sentence for the 401 body.
    pub fn message(self) -> &'static str {
        match self {
            KeyRefusal::Invalid => "API key is not valid",
            KeyRefusal::Revoked => "API key was revoked",
            KeyRefusal::Expired => "API key has expired",
        }
    }
}

fn state_err(p: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::Meta {
        path: p.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads and checks the state file at `path`, if there is one.
fn read_file(path: &Path) -> Result<Option<Doc>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(state_err(path, &e)),
    };
    let doc: Doc = serde_json::from_slice(&bytes).map_err(|e| state_err(path, &e))?;
    if doc.format != FORMAT {
        return Err(state_err(path, &"unsupported format"));
    }
    doc.policy.validate().map_err(|e| state_err(path, &e))?;
    Ok(Some(doc))
}

/// A new cluster's state: an empty policy and one admin key, whose secret
/// goes to `file` in `dir` (first: a crash before the state is saved
/// leaves no cluster whose only admin key is lost).
fn bootstrap(dir: &Path, file: &str, now: u64) -> Result<(Doc, PathBuf), Error> {
    let (key, secret) = new_key("bootstrap-admin", vec![ADMIN_ROLE.into()], None, now);
    let doc = Doc {
        format: FORMAT,
        policy: Policy {
            version: 1,
            ..Policy::default()
        },
        api_keys: [(key.id.clone(), key)].into(),
    };
    let key_path = dir.join(file);
    crate::persist::replace_file(&key_path, format!("{}\n", secret.expose()).as_bytes(), true)
        .map_err(|e| state_err(&key_path, &e))?;
    Ok((doc, key_path))
}

/// Policy and API keys, persisted.
pub struct SecurityState {
    doc: Persisted<Doc>,
}

impl SecurityState {
    /// Opens the state in `dir`. A new cluster gets an empty policy and one
    /// admin key, written to [`BOOTSTRAP_KEY_FILE`] (0600) whose path is
    /// returned: the only way in until more keys or a token issuer exist.
    pub fn open(dir: &Path, now: u64) -> Result<(Self, Option<PathBuf>), Error> {
        std::fs::create_dir_all(dir).map_err(|e| state_err(dir, &e))?;
        let path = dir.join(FILE);
        if let Some(doc) = read_file(&path)? {
            return Ok((
                SecurityState {
                    doc: Persisted::new(path, doc, true),
                },
                None,
            ));
        }
        let (doc, key_path) = bootstrap(dir, BOOTSTRAP_KEY_FILE, now)?;
        Persisted::save_now(&path, &doc, true).map_err(|e| state_err(&path, &e))?;
        Ok((
            SecurityState {
                doc: Persisted::new(path, doc, true),
            },
            Some(key_path),
        ))
    }

    /// Opens the state kept in the coordinators' group. The coordinator
    /// that creates it seeds it from `dir`'s file when it has one (a lone
    /// coordinator turned into several), else makes the bootstrap key in
    /// `dir` as [`SecurityState::open`] does.
    pub(crate) async fn open_replicated(
        docs: std::sync::Arc<crate::raft::docs::Docs>,
        dir: &Path,
        now: u64,
    ) -> Result<(Self, Option<PathBuf>), Error> {
        std::fs::create_dir_all(dir).map_err(|e| state_err(dir, &e))?;
        let mut made_key = None;
        let (doc, created) = Persisted::replicated(docs, DOC, || {
            if let Some(doc) = read_file(&dir.join(FILE))? {
                return Ok(doc);
            }
            // Under a name of its own until this coordinator's state wins:
            // several may try at once, and only one key may be the key.
            let (doc, key_path) = bootstrap(dir, PENDING_KEY_FILE, now)?;
            made_key = Some(key_path);
            Ok(doc)
        })
        .await?;
        // A revoked key or a narrowed role must not keep working at
        // another coordinator once the change is answered.
        let doc = doc.held_everywhere();
        let bootstrap = match (made_key, created) {
            (Some(pending), true) => {
                let path = dir.join(BOOTSTRAP_KEY_FILE);
                std::fs::rename(&pending, &path).map_err(|e| state_err(&path, &e))?;
                Some(path)
            }
            // Another coordinator created the state first: this key is in
            // no state.
            (Some(pending), false) => {
                let _ = std::fs::remove_file(&pending);
                None
            }
            (None, _) => None,
        };
        Ok((SecurityState { doc }, bootstrap))
    }

    /// The current policy.
    pub fn policy(&self) -> Result<Policy, ApiError> {
        self.doc.read(|d| d.policy.clone())
    }

    /// Access of a principal known by the subject `names` (kind included)
    /// and holding the Truxe roles `claimed`: its roles, and what they allow.
    pub fn subject_access(
        &self,
        names: &[String],
        claimed: &[String],
    ) -> Result<(Vec<String>, Access), ApiError> {
        self.doc.read(|d| {
            let roles = d.policy.roles_of(names, claimed, &[]);
            let access = d.policy.access(&roles);
            (roles, access)
        })
    }

    /// Replaces the policy if `proposed.version` is the current version;
    /// returns the stored policy with its new version.
    pub async fn set_policy(&self, proposed: Policy) -> Result<Policy, ApiError> {
        proposed
            .validate()
            .map_err(|m| ApiError::bad_request("invalid_policy", m))?;
        self.doc
            .update(|d| {
                if proposed.version != d.policy.version {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "version_conflict",
                        format!(
                            "the policy is at version {}, not {}; fetch it, edit that, and retry",
                            d.policy.version, proposed.version
                        ),
                    ));
                }
                let mut stored = proposed.clone();
                stored.version += 1;
                d.policy = stored.clone();
                Ok(stored)
            })
            .await
    }

    /// Checks the key `presented`; returns its id and the generation of the
    /// state it was checked against (see [`Persisted::read_versioned`]).
    pub fn authenticate_key(&self, presented: &str, now: u64) -> Result<(String, u64), KeyRefusal> {
        let id = parse_id(presented).ok_or(KeyRefusal::Invalid)?;
        let (checked, generation) = self
            .doc
            .read_versioned(|d| {
                let found = d.api_keys.get(id);
                // Unknown ids still pay for one digest, so timing says nothing.
                let digest = found.map_or("", |k| k.digest.as_str());
                let matches = secure::token::matches(presented, digest);
                match found.filter(|_| matches) {
                    None => Err(KeyRefusal::Invalid),
                    Some(k) if k.revoked_at.is_some() => Err(KeyRefusal::Revoked),
                    Some(k) if k.expires_at.is_some_and(|e| e <= now) => Err(KeyRefusal::Expired),
                    Some(_) => Ok(()),
                }
            })
            .map_err(|_| KeyRefusal::Invalid)?;
        checked.map(|()| (id.to_owned(), generation))
    }

    /// Key `id`'s access: its roles (its own and those `subjects` gives
    /// `key:<id>`), what they allow, and the node it is bound to; with the
    /// state's generation.
    #[allow(clippy::type_complexity)]
    pub fn key_access(
        &self,
        id: &str,
    ) -> Result<((Vec<String>, Access, Option<String>), u64), ApiError> {
        self.doc.read_versioned(|d| {
            let key = d.api_keys.get(id);
            let own = key.map(|k| k.roles.as_slice()).unwrap_or_default();
            let roles = d.policy.roles_of(&[format!("key:{id}")], &[], own);
            let access = d.policy.access(&roles);
            (roles, access, key.and_then(|k| k.node_id.clone()))
        })
    }

    /// Creates a key bound to `roles` (and, with the `node` role, to the
    /// one node `node_id`); the secret is returned once.
    pub async fn create_key(
        &self,
        name: &str,
        roles: Vec<String>,
        node_id: Option<String>,
        expires_at: Option<u64>,
        now: u64,
    ) -> Result<(ApiKey, Secret<String>), ApiError> {
        let node_role = roles.iter().any(|r| r == NODE_ROLE);
        match (&node_id, node_role) {
            (None, true) => {
                return Err(ApiError::bad_request(
                    "node_id_required",
                    "a key with the `node` role may register only as one node: name it (`node_id`, `torua apikey create --node <id>`)",
                ))
            }
            (Some(_), false) => {
                return Err(ApiError::bad_request(
                    "invalid_node_id",
                    "`node_id` binds a key with the `node` role; this key has none",
                ))
            }
            (Some(n), true) => {
                crate::config::parse_node_id(n)
                    .map_err(|m| ApiError::bad_request("invalid_node_id", m))?;
            }
            (None, false) => {}
        }
        if name.trim().is_empty() || name.len() > 128 {
            return Err(ApiError::bad_request(
                "invalid_name",
                "a key name must be 1 to 128 characters",
            ));
        }
        if roles.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_roles",
                "a key needs at least one role",
            ));
        }
        if expires_at.is_some_and(|e| e <= now) {
            return Err(ApiError::bad_request(
                "invalid_expiry",
                "the expiry must be in the future",
            ));
        }
        self.doc
            .update(|d| {
                if let Some(r) = roles.iter().find(|r| !role_exists(&d.policy, r)) {
                    return Err(ApiError::bad_request(
                        "unknown_role",
                        format!("role `{r}` is not defined in the policy"),
                    ));
                }
                let (key, secret) = new_key(name, roles.clone(), expires_at, now);
                let key = ApiKey {
                    node_id: node_id.clone(),
                    ..key
                };
                d.api_keys.insert(key.id.clone(), key.clone());
                Ok((key, secret))
            })
            .await
    }

    /// Revokes a key; it is refused from the next request on.
    pub async fn revoke_key(&self, id: &str, now: u64) -> Result<ApiKey, ApiError> {
        self.doc
            .update(|d| {
                let k = d
                    .api_keys
                    .get_mut(id)
                    .ok_or_else(|| ApiError::not_found(format!("no API key has id `{id}`")))?;
                k.revoked_at.get_or_insert(now);
                Ok(k.clone())
            })
            .await
    }

    /// Every key, newest first.
    pub fn keys(&self) -> Result<Vec<ApiKey>, ApiError> {
        let mut keys: Vec<ApiKey> = self.doc.read(|d| d.api_keys.values().cloned().collect())?;
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }
}

fn new_key(
    name: &str,
    roles: Vec<String>,
    expires_at: Option<u64>,
    now: u64,
) -> (ApiKey, Secret<String>) {
    let id = secure::token::random_uuid().replace('-', "")[..ID_LEN].to_owned();
    let t = secure::token::generate(&format!("{KEY_PREFIX}{id}_"));
    let key = ApiKey {
        id,
        name: name.trim().to_owned(),
        digest: t.digest,
        roles,
        node_id: None,
        created_at: now,
        expires_at,
        revoked_at: None,
    };
    (key, t.plaintext)
}

/// The id part of `torua_<id>_<secret>`.
fn parse_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_LEN)?;
    (id.bytes().all(|b| b.is_ascii_hexdigit()) && secret.starts_with('_') && secret.len() > 1)
        .then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_checked_revoked_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (state, boot) = SecurityState::open(dir.path(), 100).unwrap();
        let boot = std::fs::read_to_string(boot.unwrap()).unwrap();
        let (admin, _) = state.authenticate_key(boot.trim(), 100).unwrap();
        assert_eq!(state.key_access(&admin).unwrap().0 .0, vec!["admin"]);

        // A node key names its node; other keys name none.
        for (roles, node) in [
            (vec!["node".to_string()], None),
            (vec!["admin".into()], Some("n1")),
        ] {
            let e = state
                .create_key("x", roles, node.map(str::to_owned), None, 100)
                .await
                .unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{}", e.message);
        }
        let (k, secret) = state
            .create_key("ci", vec!["node".into()], Some("n1".into()), Some(200), 100)
            .await
            .unwrap();
        assert_eq!(state.key_access(&k.id).unwrap().0 .2.as_deref(), Some("n1"));
        assert!(secret.expose().starts_with(&format!("torua_{}_", k.id)));
        assert_eq!(
            state.authenticate_key(secret.expose(), 150).unwrap().0,
            k.id
        );
        assert_eq!(
            state.authenticate_key(secret.expose(), 200),
            Err(KeyRefusal::Expired)
        );
        let mut wrong = secret.expose().clone();
        wrong.pop();
        wrong.push('!');
        assert_eq!(
            state.authenticate_key(&wrong, 150),
            Err(KeyRefusal::Invalid)
        );
        for junk in ["", "torua_", "torua_zz", "Bearer x", "torua_0123456789ab"] {
            assert_eq!(state.authenticate_key(junk, 150), Err(KeyRefusal::Invalid));
        }
        state.revoke_key(&k.id, 160).await.unwrap();
        assert_eq!(
            state.authenticate_key(secret.expose(), 160),
            Err(KeyRefusal::Revoked)
        );
        assert!(state
            .create_key("x", vec!["ghost".into()], None, None, 100)
            .await
            .is_err());

        // Reopened: same keys, no new bootstrap key.
        drop(state);
        let (again, boot2) = SecurityState::open(dir.path(), 300).unwrap();
        assert!(boot2.is_none());
        assert_eq!(again.keys().unwrap().len(), 2);
        assert!(!std::fs::read_to_string(dir.path().join(FILE))
            .unwrap()
            .contains(secret.expose().as_str()));
    }

    #[tokio::test]
    async fn policy_changes_need_the_current_version() {
        let dir = tempfile::tempdir().unwrap();
        let (state, _) = SecurityState::open(dir.path(), 1).unwrap();
        let mut p = state.policy().unwrap();
        assert_eq!(p.version, 1);
        p.token_roles.insert("admin".into(), vec!["admin".into()]);
        let stored = state.set_policy(p.clone()).await.unwrap();
        assert_eq!(stored.version, 2);
        let stale = state.set_policy(p).await.unwrap_err();
        assert_eq!(stale.code, "version_conflict");
    }
}
