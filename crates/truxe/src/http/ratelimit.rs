//! Rate limits as a route layer (per client address) and as a check the
//! login handler makes per account. Decisions come from the kernel's GCRA
//! limiter; allowed responses carry the `RateLimit-*` headers too.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secure::ratelimit::{Decision, MemoryStore, Quota, RateLimitStore};

use super::extract::ClientAddr;
use super::ApiError;

/// The limiter and its store.
pub struct Limiter {
    store: Arc<dyn RateLimitStore>,
}

impl Limiter {
    /// An in-memory limiter (one instance).
    pub fn in_memory() -> Arc<Self> {
        Arc::new(Limiter {
            store: Arc::new(MemoryStore::default()),
        })
    }

    /// A limiter over a shared store (e.g. Redis, for several instances).
    pub fn shared(store: Arc<dyn RateLimitStore>) -> Arc<Self> {
        Arc::new(Limiter { store })
    }

    /// Counts one request for `rule` and `key`. A failing store refuses
    /// (fails closed): these endpoints guard credentials.
    pub async fn check(&self, rule: &str, key: &str, quota: &Quota) -> Result<Decision, ApiError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let d = self
            .store
            .check(&format!("{rule}:{key}"), quota, now)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "rate limiter failed");
                ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "rate_limiter_unavailable",
                    "try again shortly",
                )
            })?;
        if d.allowed {
            Ok(d)
        } else {
            tracing::info!(rule, "rate limit exceeded");
            Err(ApiError::rate_limited(&d))
        }
    }
}

/// A per-address rule for one group of routes.
#[derive(Clone)]
pub struct PerIp {
    /// The limiter.
    pub limiter: Arc<Limiter>,
    /// Rule name (part of the key).
    pub rule: &'static str,
    /// Quota.
    pub quota: Quota,
}

/// Middleware: applies a [`PerIp`] rule.
pub async fn per_ip(State(rule): State<PerIp>, req: Request, next: Next) -> Response {
    let ip = client_key(req.extensions().get::<ClientAddr>());
    match rule.limiter.check(rule.rule, &ip, &rule.quota).await {
        Ok(d) => with_headers(next.run(req).await, &d),
        Err(e) => e.into_response(),
    }
}

/// The per-address key of a client (IPv6 by its /64, see
/// `secure::ratelimit::address_key`).
pub fn client_key(addr: Option<&ClientAddr>) -> String {
    addr.and_then(|c| c.0)
        .map(secure::ratelimit::address_key)
        .unwrap_or_default()
}

/// Adds the `RateLimit-*` headers of `d` to a response.
pub fn with_headers(mut res: Response, d: &Decision) -> Response {
    for (name, value) in d.headers() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
    res
}
