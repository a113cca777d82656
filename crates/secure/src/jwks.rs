//! A verifier for services that only verify tokens (Torua; later Truxe's
//! social login): it holds the issuer's JWKS, refreshes it on a schedule,
//! and refetches at once when a token names an unknown `kid` (the issuer
//! rotated), at most once per `min_refetch`, so tokens with made-up `kid`s
//! cannot make it hammer the issuer.
//!
//! The fetch itself is a seam ([`JwksSource`]): this crate has no HTTP
//! client; the product supplies one.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::jwt::{TokenError, Verifier};
use crate::Error;

/// Fetches the issuer's JWKS document.
#[async_trait]
pub trait JwksSource: Send + Sync {
    /// Returns the current `{"keys":[…]}` document.
    async fn fetch(&self) -> Result<Value, Error>;
    /// Where the keys come from, for messages (a URL).
    fn describe(&self) -> String;
}

/// Why a token could not be verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The token itself is refused; the message is safe to show.
    #[error("{0}")]
    Token(#[from] TokenError),
    /// No keys could be fetched yet, so nothing can be verified.
    #[error("the token issuer's keys are not available: {0}")]
    Unavailable(String),
}

/// Timing of a [`JwksCache`].
#[derive(Debug, Clone, Copy)]
pub struct JwksTiming {
    /// Refresh keys older than this on the next verification.
    pub max_age: Duration,
    /// Fetch at most once per this interval on unknown `kid`s or failures.
    pub min_refetch: Duration,
}

impl Default for JwksTiming {
    fn default() -> Self {
        JwksTiming {
            max_age: Duration::from_secs(300),
            min_refetch: Duration::from_secs(5),
        }
    }
}

struct Cached {
    verifier: Option<Arc<Verifier>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    last_error: Option<String>,
}

/// JWKS-backed token verification with pinned issuer and audience.
pub struct JwksCache {
    source: Box<dyn JwksSource>,
    issuer: String,
    audience: String,
    timing: JwksTiming,
    state: RwLock<Cached>,
    /// One fetch at a time; waiters reuse its result.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("source", &self.source.describe())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl JwksCache {
    /// A cache that verifies tokens of `issuer` for `audience` with keys from `source`.
    pub fn new(
        source: Box<dyn JwksSource>,
        issuer: &str,
        audience: &str,
        timing: JwksTiming,
    ) -> Self {
        JwksCache {
            source,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            timing,
            state: RwLock::new(Cached {
                verifier: None,
                fetched_at: None,
                attempted_at: None,
                last_error: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> (Option<Arc<Verifier>>, Option<Instant>, Option<Instant>) {
        match self.state.read() {
            Ok(s) => (s.verifier.clone(), s.fetched_at, s.attempted_at),
            Err(_) => (None, None, None),
        }
    }

    /// Fetches now unless another caller fetched since `seen` or the last
    /// attempt was under `min_refetch` ago. Returns the verifier to use.
    async fn refresh(&self, seen: Option<Instant>) -> Result<Arc<Verifier>, JwksError> {
        let _one = self.fetching.lock().await;
        let (current, fetched_at, attempted_at) = self.cached();
        if let (Some(v), true) = (&current, fetched_at != seen) {
            return Ok(v.clone());
        }
        let too_soon = attempted_at.is_some_and(|t| t.elapsed() < self.timing.min_refetch);
        if too_soon {
            return current.ok_or_else(|| JwksError::Unavailable(self.last_error()));
        }
        let now = Instant::now();
        let fetched =
            self.source.fetch().await.and_then(|doc| {
                Verifier::from_jwks(&doc, &self.issuer, &self.audience).map(Arc::new)
            });
        let mut s = self
            .state
            .write()
            .map_err(|_| JwksError::Unavailable("key cache lock poisoned".into()))?;
        s.attempted_at = Some(now);
        match fetched {
            Ok(v) => {
                s.verifier = Some(v.clone());
                s.fetched_at = Some(now);
                s.last_error = None;
                Ok(v)
            }
            Err(e) => {
                let msg = format!("fetching {} failed: {e}", self.source.describe());
                s.last_error = Some(msg.clone());
                // Stale keys beat no keys while the issuer is down.
                s.verifier.clone().ok_or(JwksError::Unavailable(msg))
            }
        }
    }

    fn last_error(&self) -> String {
        self.state
            .read()
            .ok()
            .and_then(|s| s.last_error.clone())
            .unwrap_or_else(|| "not fetched yet".into())
    }

    /// Fetches the keys if none are cached (start-up warm-up; failures are
    /// retried on the next verification).
    pub async fn prefetch(&self) -> Result<(), JwksError> {
        let (_, fetched_at, _) = self.cached();
        self.refresh(fetched_at).await.map(drop)
    }

    /// Verifies a token's signature, algorithm, times, issuer and audience.
    pub async fn verify<C: DeserializeOwned>(&self, token: &str) -> Result<C, JwksError> {
        let (cached, fetched_at, _) = self.cached();
        let stale = fetched_at.is_none_or(|t| t.elapsed() > self.timing.max_age);
        let verifier = match cached {
            Some(v) if !stale => v,
            _ => self.refresh(fetched_at).await?,
        };
        match verifier.verify(token) {
            Err(TokenError::UnknownKey) => {
                let again = self.refresh(self.cached().1).await?;
                Ok(again.verify(token)?)
            }
            other => Ok(other?),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::jwt::{KeyAlg, KeyRing, SigningKey};

    #[derive(Serialize, Deserialize)]
    struct Claims {
        sub: String,
        iss: String,
        aud: String,
        exp: u64,
    }

    struct Source {
        jwks: RwLock<Value>,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl JwksSource for Arc<Source> {
        async fn fetch(&self) -> Result<Value, Error> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            self.jwks
                .read()
                .map(|j| j.clone())
                .map_err(|_| Error::Io("lock".into()))
        }
        fn describe(&self) -> String {
            "test".into()
        }
    }

    fn token(ring: &KeyRing) -> Result<String, Error> {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() + 60)
            .unwrap_or(0);
        ring.sign(&Claims {
            sub: "u".into(),
            iss: "iss".into(),
            aud: "aud".into(),
            exp,
        })
    }

    #[tokio::test]
    async fn refetches_on_rotation_but_not_for_every_unknown_kid() -> Result<(), Error> {
        let first = KeyRing::new(SigningKey::generate(KeyAlg::EdDsa)?, vec![]);
        let source = Arc::new(Source {
            jwks: RwLock::new(first.jwks()),
            fetches: AtomicUsize::new(0),
        });
        let timing = JwksTiming {
            max_age: Duration::from_secs(300),
            min_refetch: Duration::from_millis(300),
        };
        let cache = JwksCache::new(Box::new(source.clone()), "iss", "aud", timing);
        assert!(cache.verify::<Claims>(&token(&first)?).await.is_ok());
        assert!(cache.verify::<Claims>(&token(&first)?).await.is_ok());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "cached");

        // A token from a key the issuer never published: at most one fetch.
        let stranger = KeyRing::new(SigningKey::generate(KeyAlg::EdDsa)?, vec![]);
        for _ in 0..5 {
            assert_eq!(
                cache.verify::<Claims>(&token(&stranger)?).await.err(),
                Some(JwksError::Token(TokenError::UnknownKey))
            );
        }
        assert!(source.fetches.load(Ordering::SeqCst) <= 2);

        // The issuer rotates: once the refetch interval has passed, the new key verifies.
        let second = KeyRing::new(SigningKey::generate(KeyAlg::EdDsa)?, vec![]);
        if let Ok(mut j) = source.jwks.write() {
            *j = second.jwks();
        }
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(cache.verify::<Claims>(&token(&second)?).await.is_ok());
        // The old key is gone from the issuer's set, so its tokens are refused.
        assert_eq!(
            cache.verify::<Claims>(&token(&first)?).await.err(),
            Some(JwksError::Token(TokenError::UnknownKey))
        );
        Ok(())
    }

    struct Down;

    #[async_trait]
    impl JwksSource for Down {
        async fn fetch(&self) -> Result<Value, Error> {
            Err(Error::Io("connection refused".into()))
        }
        fn describe(&self) -> String {
            "http://issuer/jwks".into()
        }
    }

    #[tokio::test]
    async fn unreachable_issuer_is_unavailable_not_a_bad_token() {
        let cache = JwksCache::new(Box::new(Down), "iss", "aud", JwksTiming::default());
        match cache.verify::<Claims>("a.b.c").await {
            Err(JwksError::Unavailable(m)) => assert!(m.contains("connection refused"), "{m}"),
            other => panic!("expected Unavailable, got {:?}", other.err()),
        }
    }
}
