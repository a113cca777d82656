//! Extractors: inputs are parsed and checked before a handler runs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::{cookies, now, ApiError, App};
use crate::service::{Caller, ClientInfo, Principal};

/// Query parameters whose rejections use the API's error shape
/// (`400 invalid_query`).
pub struct ValidQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ValidQuery(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                e.body_text(),
            )),
        }
    }
}

/// `?orgId=` (or `org_id`) of a list that may be narrowed to one
/// organization.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OrgQuery {
    #[serde(rename = "orgId", alias = "org_id")]
    pub org_id: Option<String>,
}

/// JSON body whose rejections use the API's error shape.
pub struct ValidJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ValidJson(v))
    }
}

/// The token of `Authorization: Bearer <token>`, if any.
fn bearer(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

/// A signed-in user, from `Authorization: Bearer <access token>` (or the
/// access cookie) and a live session. API keys are not accepted here.
pub struct Auth(pub Principal);

impl FromRequestParts<App> for Auth {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let bearer = bearer(parts);
        // Cookie mode: the access cookie, with CSRF protection on writes.
        let (token, via_cookie) = match bearer {
            Some(t) => (t, false),
            None => (
                cookies::session(&parts.headers, cookies::ACCESS).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "missing bearer token",
                    )
                })?,
                true,
            ),
        };
        let principal = app.auth.authenticate(&token, now()).await?;
        if via_cookie
            && !cookies::is_safe(&parts.method)
            && !cookies::csrf_ok(&app.cookies, &parts.headers, Some(&principal.session.id))
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_failed",
                "cookie-authenticated requests must send X-CSRF-Token",
            ));
        }
        Ok(Auth(principal))
    }
}

/// The client's address as established by [`client_addr`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// The client address: the TCP peer, unless the peer is a trusted proxy;
/// then the right-most `X-Forwarded-For` entry that is not a trusted proxy
/// (entries further left are whatever the client claimed, so nothing left
/// of the first untrusted or malformed entry is read).
pub fn resolve_client(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    // From the right: each trusted hop vouches for the entry to its left.
    // The first entry that is not a trusted proxy is the client; an entry
    // that is not an address ends the walk at the last hop that vouched.
    let mut client = peer;
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect::<Vec<_>>();
    for entry in entries.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// Middleware: resolves the client address once for every later consumer
/// (sessions, audit, rate limits).
pub async fn client_addr(
    State(trusted): State<Arc<Vec<IpNet>>>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let addr = resolve_client(peer, req.headers(), &trusted);
    req.extensions_mut().insert(ClientAddr(addr));
    next.run(req).await
}

/// Client address and user agent for session records.
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ClientAddr>()
            .and_then(|c| c.0)
            .map(|ip| ip.to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Client(ClientInfo {
            ip,
            user_agent,
            request_id,
        }))
    }
}

/// `?limit=&cursor=` of a list: the page size and the last id of the page before.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Page size.
    pub limit: Option<u32>,
    /// Continue after this id.
    pub cursor: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let ValidQuery(page) = ValidQuery::from_request_parts(parts, state).await?;
        Ok(page)
    }
}

impl Page {
    /// The cursor for the page after `items`, if it was full.
    pub fn next<T>(&self, items: &[T], id: impl Fn(&T) -> String) -> Option<String> {
        let full = items.len() >= self.limit.unwrap_or(50) as usize;
        full.then(|| items.last().map(id)).flatten()
    }
}

/// The caller of an organization-scoped route: a user as for [`Auth`], or
/// a service account by API key (`Bearer truxe_sk_…`, rate-limited by the
/// key's tier) or client-credentials token.
pub struct Who(pub Caller);

impl FromRequestParts<App> for Who {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let Some(token) = bearer(parts) else {
            let Auth(p) = Auth::from_request_parts(parts, app).await?;
            return Ok(Who(Caller::User(p)));
        };
        let ip = parts.extensions.get::<ClientAddr>().and_then(|c| c.0);
        let caller = app.auth.authenticate_caller(&token, ip, now()).await?;
        if let Caller::Service(s) = &caller {
            if let Some(key) = &s.key_id {
                let quota = app.key_tiers.get(s.rate_tier.as_str()).ok_or_else(|| {
                    ApiError::from(crate::service::AuthError::Internal(format!(
                        "unknown rate tier {}",
                        s.rate_tier
                    )))
                })?;
                app.limiter.check("api_key", key, quota).await?;
            }
        }
        Ok(Who(caller))
    }
}
