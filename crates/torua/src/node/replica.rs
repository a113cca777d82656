//! The node's copy of the coordinator's security state (policy, API-key
//! digests, token issuer), pulled with each heartbeat. With it the node
//! checks the client credential the coordinator forwards on data calls
//! itself — it verifies keys and tokens alone — and refuses (503
//! `policy_stale`) when its copy is older than `TORUA_POLICY_STALE_AFTER`,
//! rather than guess.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::http::ApiError;
use crate::security::state::SecurityState;
use crate::security::{Authenticator, TokenIssuer};
use crate::tls::HttpClient;

/// File of the copy, in the node's data directory.
const FILE: &str = "security-replica.json";
/// Shortest time between two on-demand refreshes.
const MIN_REFRESH: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Sync {
    etag: Option<String>,
    at: Option<Instant>,
    issuer: Option<TokenIssuer>,
}

/// Where the copy comes from.
pub(crate) struct Source {
    /// Client with the node's certificate.
    pub client: HttpClient,
    /// `{coordinator}/cluster/security`, of every coordinator.
    pub urls: Vec<String>,
    /// The one that answered last, tried first.
    pub last_good: std::sync::atomic::AtomicUsize,
    /// The node's API key, when it registers with one.
    pub bearer: Option<secure::Secret<String>>,
}

/// The node's copy and when it was last confirmed.
pub(crate) struct Replica {
    authn: RwLock<Arc<Authenticator>>,
    sync: Mutex<Sync>,
    stale_after: Duration,
    path: PathBuf,
    source: OnceLock<Source>,
    /// One on-demand refresh at a time; holds when the last one finished.
    refreshing: tokio::sync::Mutex<Option<Instant>>,
}

impl Replica {
    /// An empty copy; every forwarded credential is refused as stale until
    /// the first sync.
    pub fn new(data_dir: &Path, stale_after: Duration) -> Self {
        let path = data_dir.join(FILE);
        Replica {
            authn: RwLock::new(Arc::new(Authenticator::new(
                SecurityState::replica(&path),
                None,
            ))),
            sync: Mutex::new(Sync::default()),
            stale_after,
            path,
            source: OnceLock::new(),
            refreshing: tokio::sync::Mutex::new(None),
        }
    }

    /// Sets where the copy comes from (once, at start-up).
    pub fn set_source(&self, source: Source) {
        let _ = self.source.set(source);
    }

    /// Pulls from the configured source.
    pub async fn sync_from_source(&self) -> Result<(), String> {
        let Some(src) = self.source.get() else {
            return Err("no coordinator configured".into());
        };
        let bearer = src.bearer.as_ref().map(|b| b.expose().as_str());
        let first = src.last_good.load(std::sync::atomic::Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in (0..src.urls.len()).map(|k| (first + k) % src.urls.len()) {
            match self.sync(&src.client.get(), &src.urls[i], bearer).await {
                Ok(()) => {
                    src.last_good.store(i, std::sync::atomic::Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => failures.push(format!("{}: {e}", src.urls[i])),
            }
        }
        Err(failures.join("; "))
    }

    /// A credential or permission the copy refused may be newer than the
    /// copy (a key just made, a policy just changed): refresh now, once for
    /// every request that asked since `asked_at`, and at most every
    /// [`MIN_REFRESH`] (a request arriving sooner waits for the next one).
    /// Returns whether a refresh finished after `asked_at`.
    pub async fn refresh_after(&self, asked_at: Instant) -> bool {
        let mut last = self.refreshing.lock().await;
        if last.is_some_and(|t| t >= asked_at) {
            return true;
        }
        if let Some(wait) = last.and_then(|t| MIN_REFRESH.checked_sub(t.elapsed())) {
            tokio::time::sleep(wait).await;
        }
        let ok = self.sync_from_source().await.is_ok();
        *last = Some(Instant::now());
        ok
    }

    /// The authenticator over the current copy.
    pub fn authn(&self) -> Arc<Authenticator> {
        match self.authn.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// `Ok` while the copy was confirmed within the bound.
    pub fn fresh(&self) -> Result<(), ApiError> {
        let at = self.sync.lock().ok().and_then(|s| s.at);
        match at {
            Some(t) if t.elapsed() <= self.stale_after => Ok(()),
            Some(t) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "policy_stale",
                format!(
                    "this node's copy of the access policy was last confirmed {}s ago (bound {}s); retry once the coordinator is reachable",
                    t.elapsed().as_secs(),
                    self.stale_after.as_secs()
                ),
            )),
            None => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "policy_stale",
                "this node has no copy of the access policy yet",
            )),
        }
    }

    /// Pulls the coordinator's snapshot (`GET url`, conditional on the last
    /// `ETag`) and installs it if it changed.
    pub async fn sync(
        &self,
        client: &reqwest::Client,
        url: &str,
        bearer: Option<&str>,
    ) -> Result<(), String> {
        let etag = self.sync.lock().ok().and_then(|s| s.etag.clone());
        let mut req = client.get(url).timeout(Duration::from_secs(5));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        if let Some(e) = &etag {
            req = req.header(reqwest::header::IF_NONE_MATCH, e);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        let now = Instant::now();
        if res.status() == reqwest::StatusCode::NOT_MODIFIED {
            if let Ok(mut s) = self.sync.lock() {
                s.at = Some(now);
            }
            return Ok(());
        }
        if !res.status().is_success() {
            return Err(format!("status {}", res.status()));
        }
        let tag = res
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: serde_json::Value = res.json().await.map_err(|e| e.to_string())?;
        let issuer: Option<TokenIssuer> =
            serde_json::from_value(body["token_issuer"].clone()).map_err(|e| e.to_string())?;
        let same_issuer = self
            .sync
            .lock()
            .map(|s| s.issuer == issuer)
            .unwrap_or(false);
        if same_issuer {
            self.authn()
                .state
                .install(body["state"].clone())
                .await
                .map_err(|e| e.message)?;
        } else {
            // A new issuer needs a new verifier: build, fill, then swap.
            let state = SecurityState::replica(&self.path);
            state
                .install(body["state"].clone())
                .await
                .map_err(|e| e.message)?;
            let authn = Arc::new(Authenticator::new(
                state,
                issuer.as_ref().map(TokenIssuer::verifier),
            ));
            match self.authn.write() {
                Ok(mut a) => *a = authn,
                Err(p) => *p.into_inner() = authn,
            }
        }
        if let Ok(mut s) = self.sync.lock() {
            *s = Sync {
                etag: tag,
                at: Some(now),
                issuer,
            };
        }
        Ok(())
    }
}
