//! The signing key ring in use, reloaded when the key store changes, so
//! `truxe keys rotate` takes effect in a running server without a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use secure::jwt::{KeyAlg, KeyRing, SigningKey, TokenError, Verifier};
use secure::keystore::KeyStore;

use crate::config::Config;

/// A key ring, the verifier over its published keys and its JWKS document,
/// built once per load instead of once per request.
#[derive(Clone)]
struct Loaded {
    ring: Arc<KeyRing>,
    verifier: Arc<Verifier>,
    jwks: Published,
    /// The signing key's public half as PEM (the original Truxe's
    /// `/.well-known/public-key.pem`).
    public_pem: Published,
    /// Tokens verified with these keys, by the SHA-256 of their text: a
    /// client presents the same access token until it expires, and its
    /// signature need not be checked again. Starts empty with every load,
    /// so a key that stops being published stops verifying at once.
    verified: Arc<Mutex<HashMap<[u8; 32], Arc<serde_json::Value>>>>,
}

/// Verified tokens kept per key load; beyond it the memo starts over.
const VERIFIED_CAPACITY: usize = 100_000;
/// Clock skew allowed on `exp`, as the verifier allows it.
const LEEWAY_SECS: i64 = 5;

/// A serialized document with its strong `ETag`.
#[derive(Clone)]
pub struct Published {
    /// The body.
    pub body: bytes::Bytes,
    /// Its media type.
    pub content_type: &'static str,
    /// `"…"`: a digest of the body, so it changes exactly when the body does.
    pub etag: String,
}

impl Published {
    /// Serializes `doc` as JSON.
    pub fn new(doc: &serde_json::Value) -> Self {
        Self::text(doc.to_string(), "application/json")
    }

    /// A body of this media type.
    pub fn text(body: String, content_type: &'static str) -> Self {
        use sha2::Digest;
        let body = bytes::Bytes::from(body);
        let etag = format!("\"{}\"", hex::encode(&sha2::Sha256::digest(&body)[..16]));
        Published {
            body,
            content_type,
            etag,
        }
    }
}

impl Loaded {
    fn new(ring: KeyRing, issuer: &str, audience: &str) -> Self {
        let verifier = Arc::new(ring.verifier(issuer, audience));
        let jwks = Published::new(&ring.jwks());
        // Every key Truxe signs with has a PEM form; a failure here is a
        // damaged key, and the ring would not have loaded.
        let pem = ring.current().spki_pem().unwrap_or_else(|e| {
            tracing::error!(error = %e, "the signing key has no PEM form");
            String::new()
        });
        Loaded {
            ring: Arc::new(ring),
            verifier,
            jwks,
            public_pem: Published::text(pem, "application/x-pem-file"),
            verified: Arc::default(),
        }
    }
}

/// Holds the current [`KeyRing`].
pub struct KeyManager {
    store: Option<KeyStore>,
    /// The ring and its verifier, swapped together on reload.
    current: RwLock<Loaded>,
    seen: Mutex<Option<SystemTime>>,
    issuer: String,
    audience: String,
    /// Longest life of a token signed by a key that stopped signing.
    grace: Duration,
    /// Scheduled rotation: period and algorithm of new keys.
    rotation: Option<(Duration, KeyAlg)>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The fixed signing key the configuration names, if any.
fn fixed_key(cfg: &Config) -> Result<Option<SigningKey>, secure::Error> {
    let pem = match (&cfg.private_key_file, &cfg.private_key_pem) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
            secure::Error::Config(format!("JWT_PRIVATE_KEY_FILE {}: {e}", path.display()))
        })?,
        (None, Some(pem)) => pem.expose().clone(),
        (None, None) => return Ok(None),
    };
    let key = SigningKey::from_pem(cfg.algorithm, &pem)?;
    Ok(Some(match &cfg.key_id {
        Some(kid) => key.with_kid(kid)?,
        None => key,
    }))
}

impl KeyManager {
    /// Loads keys: a fixed key (`JWT_PRIVATE_KEY_FILE`, `JWT_PRIVATE_KEY`
    /// or its base64 form, named `JWT_KEY_ID` if set) if given, else the
    /// managed store, creating its first key (mode 0600) when empty.
    pub fn load(cfg: &Config) -> Result<KeyManager, secure::Error> {
        let grace = cfg.access_ttl + Duration::from_secs(60);
        let (store, ring) = match fixed_key(cfg)? {
            Some(key) => (None, KeyRing::new(key, vec![])),
            None => {
                let store = KeyStore::new(cfg.keys_dir());
                if let Some(created) = store.ensure_active(cfg.algorithm, now_secs())? {
                    tracing::info!(kid = %created.kid, alg = %created.alg, "created the first signing key");
                }
                store.expire(grace, now_secs())?;
                let ring = store.load_ring()?;
                (Some(store), ring)
            }
        };
        let seen = store.as_ref().and_then(KeyStore::modified);
        Ok(KeyManager {
            store,
            current: RwLock::new(Loaded::new(ring, &cfg.issuer, &cfg.audience)),
            seen: Mutex::new(seen),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            grace,
            rotation: cfg.key_rotation_period.map(|p| (p, cfg.algorithm)),
        })
    }

    /// What [`KeyManager::load`] would sign with, read without writing
    /// anything (`truxe check-config`): the fixed key, the managed store's
    /// active key, or that the store is empty and `serve` will create one.
    pub fn check(cfg: &Config) -> Result<String, secure::Error> {
        if let Some(key) = fixed_key(cfg)? {
            return Ok(format!("{} (fixed)", key.kid()));
        }
        let store = KeyStore::new(cfg.keys_dir());
        if store.entries()?.is_empty() {
            return Ok(format!(
                "none yet: `truxe serve` creates one in {}",
                cfg.keys_dir().display()
            ));
        }
        Ok(store.load_ring()?.current_kid().to_owned())
    }

    /// The ring to sign and publish with now.
    pub fn ring(&self) -> Arc<KeyRing> {
        self.loaded().ring
    }

    /// The JWKS document of every published key.
    pub fn jwks(&self) -> Published {
        self.loaded().jwks
    }

    /// The signing key's public half as a PEM `PUBLIC KEY`.
    pub fn public_pem(&self) -> Published {
        self.loaded().public_pem
    }

    /// Verifies an access token (signature, algorithm, issuer, audience,
    /// times) and returns its claims; a token already verified with the
    /// current keys is only checked for expiry.
    pub fn verify(&self, token: &str, now: i64) -> Result<serde_json::Value, TokenError> {
        use sha2::Digest;
        let loaded = self.loaded();
        let id: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let known = loaded
            .verified
            .lock()
            .ok()
            .and_then(|m| m.get(&id).cloned());
        if let Some(claims) = known {
            return match claims["exp"].as_i64() {
                Some(exp) if exp >= now - LEEWAY_SECS => Ok((*claims).clone()),
                _ => Err(TokenError::Expired),
            };
        }
        let claims: serde_json::Value = loaded.verifier.verify(token)?;
        if let Ok(mut m) = loaded.verified.lock() {
            if m.len() >= VERIFIED_CAPACITY {
                m.clear();
            }
            m.insert(id, Arc::new(claims.clone()));
        }
        Ok(claims)
    }

    fn loaded(&self) -> Loaded {
        self.current
            .read()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Rotates on schedule, retires keys past their grace, and reloads when
    /// the store changed (here or by `truxe keys`). Returns `(old, new)`
    /// kids when it rotated. Blocking: file I/O and key parsing.
    pub fn refresh(&self) -> Option<(Option<String>, String)> {
        let store = self.store.as_ref()?;
        let now = now_secs();
        let rotated =
            self.rotation.and_then(
                |(period, alg)| match store.rotate_if_older(alg, period, now) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "scheduled key rotation failed");
                        None
                    }
                },
            );
        match store.expire(self.grace, now) {
            Ok(retired) => {
                for kid in retired {
                    tracing::info!(kid = %kid, "signing key retired after its grace period");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot expire old keys"),
        }
        let modified = store.modified();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen != modified {
            match store.load_ring() {
                Ok(ring) => {
                    tracing::info!(kid = %ring.current_kid(), "signing keys reloaded");
                    if let Ok(mut r) = self.current.write() {
                        *r = Loaded::new(ring, &self.issuer, &self.audience);
                    }
                    *seen = modified;
                }
                Err(e) => {
                    tracing::error!(error = %e, "key store changed but cannot be loaded; keeping the current keys")
                }
            }
        }
        rotated
    }
}
