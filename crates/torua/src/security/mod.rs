//! Who may do what on a Torua cluster: authentication (Torua API keys and
//! Truxe access tokens verified against Truxe's JWKS), role-based access on
//! key prefixes ([`policy`]), per-principal and per-address rate limits,
//! and the hash-chained audit log (`secure::audit::chain`).
//!
//! One middleware ([`authenticate`]) runs on every protected route: it
//! rate-limits the source address, authenticates the credential,
//! rate-limits the principal, and leaves a [`Caller`] in the request for
//! handlers, which check permissions with [`Caller::require`]. Denials and
//! failures are audited here, never in handlers.

pub mod authn;
pub mod policy;
pub mod state;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secure::audit::chain::ChainedLog;
use secure::audit::{AuditEvent, AuditSink, Outcome};
use secure::jwks::{JwksCache, JwksTiming};
use secure::ratelimit::{Decision, MemoryStore, Quota, RateLimitStore};

use crate::config::SecurityConfig;
use crate::http::{ApiError, RequestId};
use crate::tls::Peer;
use crate::Error;
use authn::HttpJwks;
pub use authn::Refusal;
pub use authn::{Authenticator, Principal};
use policy::{Access, Action};
use state::SecurityState;

/// Default name of the audit log's key file, beside the log.
pub const AUDIT_KEY_FILE: &str = "audit.key";
/// Default name of the audit log's checkpoint, beside the log.
pub const AUDIT_CHECKPOINT_FILE: &str = "audit.checkpoint";

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Where Truxe tokens come from and what they must say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenIssuer {
    /// Truxe's JWKS URL.
    pub jwks_url: String,
    /// Pinned `iss`.
    pub issuer: String,
    /// Pinned `aud`.
    pub audience: String,
}

impl TokenIssuer {
    /// A verifier following this issuer's JWKS.
    pub fn verifier(&self) -> JwksCache {
        JwksCache::new(
            Box::new(HttpJwks {
                url: self.jwks_url.clone(),
                http: reqwest::Client::new(),
            }),
            &self.issuer,
            &self.audience,
            JwksTiming::default(),
        )
    }
}

/// The coordinator's security: credentials, limits and audit.
pub struct Security {
    enforce: bool,
    /// Checks credentials; holds the policy and API keys.
    pub authn: Authenticator,
    /// The token issuer nodes verify against (`{jwks_url, issuer, audience}`).
    pub token_issuer: Option<TokenIssuer>,
    limits: MemoryStore,
    ip_quota: Quota,
    principal_quota: Quota,
    audit: ChainedLog,
    audit_data: bool,
    /// Everyone, when authentication is off (built once).
    anonymous: Arc<Principal>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("enforce", &self.enforce)
            .finish()
    }
}

impl Security {
    /// Checks the settings, before anything is opened or written; returns
    /// the pinned token issuer, if any.
    pub(crate) fn check_settings(cfg: &SecurityConfig) -> Result<Option<TokenIssuer>, Error> {
        if let Some(url) = cfg.jwks_url.as_deref().filter(|u| u.starts_with("http://")) {
            let host = url["http://".len()..]
                .split(['/', ':'])
                .next()
                .unwrap_or_default();
            if !matches!(host, "127.0.0.1" | "localhost" | "[") {
                tracing::warn!(url, "TORUA_JWKS_URL is plain http to another host: whoever can change that traffic can mint tokens Torua accepts; use https");
            }
        }
        let issuer = match (&cfg.jwks_url, &cfg.jwt_issuer) {
            (Some(url), Some(issuer)) => Some(TokenIssuer {
                jwks_url: url.clone(),
                issuer: issuer.clone(),
                audience: cfg.jwt_audience.clone(),
            }),
            (Some(_), None) => {
                return Err(Error::Config(
                    "TORUA_JWKS_URL is set but TORUA_JWT_ISSUER is not: the issuer must be pinned".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(Error::Config(
                    "TORUA_JWT_ISSUER is set but TORUA_JWKS_URL is not: tokens cannot be verified without keys".into(),
                ))
            }
            (None, None) => None,
        };
        Ok(issuer)
    }

    /// Opens the security state (in `data_dir`, or in the coordinators'
    /// group) and the audit log, with settings [`Security::check_settings`]
    /// passed. Logs the bootstrap key's path for a new cluster.
    pub(crate) async fn open(
        cfg: &SecurityConfig,
        token_issuer: Option<TokenIssuer>,
        data_dir: &std::path::Path,
        docs: Option<Arc<crate::raft::docs::Docs>>,
    ) -> Result<Arc<Self>, Error> {
        let (state, bootstrap) = match docs {
            Some(d) => SecurityState::open_replicated(d, data_dir, unix_now()).await?,
            None => SecurityState::open(data_dir, unix_now())?,
        };
        if let Some(path) = bootstrap {
            tracing::warn!(path = %path.display(), "new cluster: the first admin API key was written to this file; keep it safe and delete it once you have made other keys");
        }
        let audit_path = cfg
            .audit_log
            .clone()
            .unwrap_or_else(|| data_dir.join("audit.jsonl"));
        let beside = |name: &str| audit_path.with_file_name(name);
        let key_path = cfg
            .audit_key_file
            .clone()
            .unwrap_or_else(|| beside(AUDIT_KEY_FILE));
        let key = secure::audit::chain::ensure_key(&key_path)
            .map_err(|e| Error::Config(e.to_string()))?;
        let checkpoint = cfg
            .audit_checkpoint
            .clone()
            .unwrap_or_else(|| beside(AUDIT_CHECKPOINT_FILE));
        let audit = ChainedLog::open(&audit_path, key, checkpoint)
            .map_err(|e| Error::Config(e.to_string()))?;
        if !cfg.auth {
            tracing::warn!("TORUA_AUTH=off: authentication and authorization are OFF; every client acts as admin. Use this only for benchmarks and trusted test rigs");
        }
        tracing::info!(
            auth = cfg.auth,
            token_issuer = cfg.jwt_issuer.as_deref().unwrap_or("none"),
            audit_log = %audit_path.display(),
            audit_data = cfg.audit_data,
            "security configured"
        );
        let jwks = token_issuer.as_ref().map(TokenIssuer::verifier);
        Ok(Arc::new(Security {
            enforce: cfg.auth,
            authn: Authenticator::new(state, jwks),
            token_issuer,
            limits: MemoryStore::default(),
            ip_quota: cfg.rate_limit_ip,
            principal_quota: cfg.rate_limit_principal,
            audit,
            audit_data: cfg.audit_data,
            anonymous: Arc::new(Principal {
                id: "anonymous".into(),
                kind: "anonymous",
                node_id: None,
                roles: vec![policy::ADMIN_ROLE.into()],
                access: Access::everything(),
            }),
        }))
    }

    /// Fetches the issuer's keys once in the background, so the first
    /// token does not wait for them.
    pub fn warm_up(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.authn.prefetch().await {
                tracing::warn!(error = %e, "token issuer keys not fetched yet; retrying on the first token");
            }
        });
    }

    async fn limit(&self, key: &str, quota: &Quota) -> Decision {
        match self.limits.check(key, quota, unix_nanos()).await {
            Ok(d) => d,
            Err(e) => {
                // Fail open on a poisoned limiter: limits protect capacity,
                // not confidentiality.
                tracing::error!(error = %e, "rate limiter failed");
                Decision {
                    allowed: true,
                    limit: quota.limit,
                    remaining: quota.limit,
                    reset_after: Duration::ZERO,
                    retry_after: None,
                }
            }
        }
    }

    async fn authenticate(
        &self,
        headers: &HeaderMap,
        identity: Option<&str>,
    ) -> Result<Arc<Principal>, Refusal> {
        if !self.enforce {
            return Ok(self.anonymous.clone());
        }
        self.authn.authenticate(headers, identity).await
    }

    /// Records an event; a failure to record is logged, never shown.
    async fn record(&self, event: AuditEvent) {
        if let Err(e) = self.audit.record(&event).await {
            tracing::error!(error = %e, action = %event.action, "audit log write failed");
        }
    }
}

/// The authenticated caller of a request, for handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Arc<Principal>,
    /// From where.
    pub ip: IpAddr,
    /// `X-Request-ID`.
    pub request_id: String,
    user_agent: Option<String>,
    sec: Arc<Security>,
}

impl Caller {
    fn event(&self, action: &str, outcome: Outcome, target: Option<&str>) -> AuditEvent {
        let mut e = AuditEvent::new(action, outcome, (unix_nanos() / 1_000_000) as i64)
            .actor(self.principal.id.clone());
        e.ip = Some(self.ip.to_string());
        e.request_id = Some(self.request_id.clone());
        e.user_agent = self.user_agent.clone();
        e.target = target.map(str::to_owned);
        e
    }

    async fn deny(&self, action: Action, target: &str, what: &str) -> ApiError {
        self.sec
            .record(
                self.event("authorize", Outcome::Denied, Some(target))
                    .details(serde_json::json!({"permission": action.as_str()})),
            )
            .await;
        self.principal.forbidden(action, what)
    }

    /// Allows `action` on `key`, or answers 403 naming the permission and
    /// the key (and audits the denial). Data access is audited when
    /// `TORUA_AUDIT_DATA` is on.
    pub async fn require(&self, action: Action, key: &str) -> Result<(), ApiError> {
        if !self.principal.access.allows(action, key) {
            return Err(self.deny(action, key, &format!("key `{key}`")).await);
        }
        if self.sec.audit_data {
            self.sec
                .record(self.event(
                    &format!("data.{}", action.as_str()),
                    Outcome::Success,
                    Some(key),
                ))
                .await;
        }
        Ok(())
    }

    /// The prefixes a listing under `prefix` may cover (see
    /// [`Access::list_scopes`]); 403 when there are none.
    pub async fn list_scopes(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        let scopes = self.principal.access.list_scopes(prefix);
        if scopes.is_empty() {
            return Err(self
                .deny(Action::List, prefix, &format!("prefix `{prefix}`"))
                .await);
        }
        if self.sec.audit_data {
            self.sec
                .record(self.event("data.list", Outcome::Success, Some(prefix)))
                .await;
        }
        Ok(scopes)
    }

    /// Requires `admin` (on the whole cluster).
    pub async fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.access.allows(Action::Admin, "") {
            return Ok(());
        }
        Err(self.deny(Action::Admin, "", "the cluster").await)
    }

    /// Requires `monitor` (or `admin`): reading the cluster's layout.
    pub async fn require_monitor(&self) -> Result<(), ApiError> {
        if self.principal.access.allows(Action::Monitor, "") {
            return Ok(());
        }
        Err(self.deny(Action::Monitor, "", "the cluster").await)
    }

    /// Allows registering as node `id`: that node's certificate, a `node`
    /// key bound to that node, or `admin`. A node's credential never
    /// registers another node, so a node cannot take over another's
    /// address.
    pub async fn require_node(&self, id: &str) -> Result<(), ApiError> {
        match self.principal.node_id.as_deref() {
            Some(own) if own == id => Ok(()),
            Some(own) => Err(self
                .deny(
                    Action::Admin,
                    id,
                    &format!("node `{id}` (this credential belongs to node `{own}`)"),
                )
                .await),
            None if self.principal.access.node => Err(self
                .deny(
                    Action::Admin,
                    id,
                    &format!("node `{id}` (this `node` key names no node; create one with `torua apikey create --role node --node {id}`)"),
                )
                .await),
            None => self.require_admin().await,
        }
    }

    /// Audits an administrative action that succeeded.
    pub async fn audit_admin(&self, action: &str, target: &str, details: serde_json::Value) {
        self.sec
            .record(
                self.event(action, Outcome::Success, Some(target))
                    .details(details),
            )
            .await;
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::internal("route has no authentication layer"))
    }
}

fn too_many(d: &Decision, who: &str) -> Response {
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from {who}; retry later"),
    )
    .into_response();
    with_limit_headers(&mut res, d);
    res
}

fn with_limit_headers(res: &mut Response, d: &Decision) {
    for (name, value) in d.headers() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
}

/// Middleware for routes that show the cluster's layout (`/metrics`):
/// `monitor` or `admin`, after [`authenticate`].
pub async fn require_monitor(caller: Caller, req: Request, next: Next) -> Response {
    match caller.require_monitor().await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Middleware for protected routes: address limit → credential → principal
/// limit → [`Caller`] in the request; `RateLimit-*` headers on the answer.
pub async fn authenticate(
    State(sec): State<Arc<Security>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = peer.addr.ip();
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    let by_ip = sec
        .limit(
            &format!("ip:{}", secure::ratelimit::address_key(ip)),
            &sec.ip_quota,
        )
        .await;
    if !by_ip.allowed {
        return too_many(&by_ip, &format!("address {ip}"));
    }
    let principal = match sec
        .authenticate(req.headers(), peer.identity.as_deref())
        .await
    {
        Ok(p) => p,
        Err(refusal) => {
            let mut e = AuditEvent::new(
                "authenticate",
                Outcome::Failure,
                (unix_nanos() / 1_000_000) as i64,
            )
            .details(serde_json::json!({"reason": refusal.code, "path": req.uri().path()}));
            e.ip = Some(ip.to_string());
            e.request_id = Some(request_id);
            e.user_agent = user_agent;
            sec.record(e).await;
            return refusal.into_response();
        }
    };
    let quota = principal.access.quota.unwrap_or(sec.principal_quota);
    let by_principal = sec.limit(&format!("p:{}", principal.id), &quota).await;
    if !by_principal.allowed {
        return too_many(&by_principal, &principal.id);
    }
    req.extensions_mut().insert(Caller {
        principal,
        ip,
        request_id,
        user_agent,
        sec: sec.clone(),
    });
    let mut res = next.run(req).await;
    // Show whichever limit is closer to running out.
    let tighter = if by_ip.remaining < by_principal.remaining {
        &by_ip
    } else {
        &by_principal
    };
    with_limit_headers(&mut res, tighter);
    res
}
