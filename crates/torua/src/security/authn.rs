//! Who is calling: a Torua API key, a Truxe access token, or a verified
//! client certificate, turned into a [`Principal`] with its roles and
//! access. Shared by the coordinator's middleware (`super::authenticate`)
//! and anything else that must check a credential alone.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use secure::jwks::{JwksCache, JwksError, JwksSource};
use secure::jwt::TokenError;
use serde::Deserialize;

use super::policy::Access;
use super::state::{KeyRefusal, SecurityState, KEY_PREFIX};
use super::unix_now;
use crate::http::ApiError;
use crate::tls::NODE_IDENTITY_PREFIX;

/// Largest JWKS document fetched.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// An authenticated client.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `key:<id>`, `user:<sub>`, `service:<sub>`, a certificate's common
    /// name, or `anonymous` when authentication is off.
    pub id: String,
    /// `api_key`, `token`, `certificate` or `anonymous`.
    pub kind: &'static str,
    /// The one node id it may register as: a node's certificate
    /// (`node:<id>`), or a `node` key bound to that node.
    pub node_id: Option<String>,
    /// Roles held.
    pub roles: Vec<String>,
    /// What the roles allow.
    pub access: Access,
}

impl Principal {
    /// 403 naming this principal, the missing permission and `what` it was
    /// asked on (``key `a/b` ``, ``prefix `a/` ``, `the cluster`).
    pub fn forbidden(&self, action: super::policy::Action, what: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} lacks the `{}` permission on {what}",
                self.id,
                action.as_str()
            ),
        )
    }
}

/// Truxe access-token claims Torua reads (signature, `exp`, `iss` and
/// `aud` are checked by the kernel).
#[derive(Debug, Deserialize)]
struct TokenClaims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    /// Only a proven address may stand for its owner.
    #[serde(default)]
    email_verified: bool,
    /// `service` on client-credentials tokens of service accounts.
    #[serde(default)]
    token_use: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

impl TokenClaims {
    fn is_service(&self) -> bool {
        self.token_use.as_deref() == Some("service")
    }

    /// The `subjects` names this token holder is known by: `sub:` for a
    /// user, plus `email:` only when the address is verified; `service:`
    /// for a service account, which no address stands for.
    fn subject_names(&self) -> Vec<String> {
        if self.is_service() {
            return vec![format!("service:{}", self.sub)];
        }
        let mut names = vec![format!("sub:{}", self.sub)];
        if let Some(email) = self.email.as_deref().filter(|_| self.email_verified) {
            names.push(format!("email:{}", email.to_lowercase()));
        }
        names
    }
}

/// Fetches Truxe's JWKS over HTTP.
pub(crate) struct HttpJwks {
    pub(crate) url: String,
    pub(crate) http: reqwest::Client,
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<serde_json::Value, secure::Error> {
        let io = |e: &dyn std::fmt::Display| secure::Error::Io(e.to_string());
        let res = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| io(&e))?;
        if !res.status().is_success() {
            return Err(io(&format!("status {}", res.status())));
        }
        if res
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(io(&"JWKS document is too large"));
        }
        let body = res.bytes().await.map_err(|e| io(&e))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err(io(&"JWKS document is too large"));
        }
        serde_json::from_slice(&body).map_err(|e| io(&e))
    }
    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// A refused credential: status, code, message, and the `WWW-Authenticate` value.
pub struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) challenge: String,
}

impl Refusal {
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            code,
            challenge: format!(
                "Bearer realm=\"torua\", error=\"invalid_token\", error_description=\"{}\"",
                message.replace('"', "'")
            ),
            message,
        }
    }

    pub(crate) fn into_response(self) -> Response {
        let mut res = ApiError::new(self.status, self.code, self.message).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.challenge) {
            res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        res
    }
}

/// Checks credentials against one [`SecurityState`] and token issuer.
pub struct Authenticator {
    /// Policy and API keys.
    pub state: SecurityState,
    jwks: Option<JwksCache>,
    /// API-key principals by key id, with the state generation they were
    /// built from; the key itself is still checked on every request.
    key_principals: RwLock<HashMap<String, (u64, Arc<Principal>)>>,
}

impl Authenticator {
    /// Checks credentials against `state`, and tokens against `jwks`.
    pub fn new(state: SecurityState, jwks: Option<JwksCache>) -> Self {
        Authenticator {
            state,
            jwks,
            key_principals: RwLock::new(HashMap::new()),
        }
    }

    /// Fetches the token issuer's keys (start-up warm-up).
    pub async fn prefetch(&self) -> Result<(), JwksError> {
        match &self.jwks {
            Some(j) => j.prefetch().await,
            None => Ok(()),
        }
    }

    /// Authenticates a request's credential (or, without one, its verified
    /// client certificate `identity`).
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        identity: Option<&str>,
    ) -> Result<Arc<Principal>, Refusal> {
        let internal = |e: ApiError| Refusal {
            status: e.status,
            code: e.code,
            message: e.message,
            challenge: "Bearer realm=\"torua\"".into(),
        };
        // A verified client certificate and no bearer credential: the
        // certificate is the credential (nodes; and clients the policy
        // names in `subjects`).
        if let (None, Some(cn)) = (headers.get(header::AUTHORIZATION), identity) {
            let (roles, access) = self
                .state
                .subject_access(&[format!("cert:{cn}")], &[])
                .map_err(internal)?;
            return Ok(Arc::new(Principal {
                id: cn.to_owned(),
                kind: "certificate",
                node_id: cn.strip_prefix(NODE_IDENTITY_PREFIX).map(str::to_owned),
                roles,
                access,
            }));
        }
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(Refusal {
                status: StatusCode::UNAUTHORIZED,
                code: "missing_credentials",
                message: "this endpoint needs credentials: send `Authorization: Bearer <Torua API key or Truxe access token>`".into(),
                challenge: "Bearer realm=\"torua\"".into(),
            });
        };
        let credential = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Refusal::invalid(
                    "invalid_credentials",
                    "the Authorization header must be `Bearer <credential>`",
                )
            })?;
        if credential.starts_with(KEY_PREFIX) {
            let (id, generation) = self
                .state
                .authenticate_key(credential, unix_now())
                .map_err(|r| {
                    let code = match r {
                        KeyRefusal::Invalid => "invalid_api_key",
                        KeyRefusal::Revoked => "api_key_revoked",
                        KeyRefusal::Expired => "api_key_expired",
                    };
                    Refusal::invalid(code, r.message())
                })?;
            return self.key_principal(id, generation).map_err(internal);
        }
        let Some(jwks) = &self.jwks else {
            return Err(Refusal::invalid(
                "invalid_token",
                "this cluster accepts only Torua API keys: no token issuer is configured (TORUA_JWKS_URL)",
            ));
        };
        let claims: TokenClaims = jwks.verify(credential).await.map_err(|e| match e {
            JwksError::Token(TokenError::Expired) => {
                Refusal::invalid("token_expired", e.to_string())
            }
            JwksError::Token(t) => Refusal::invalid("invalid_token", t.to_string()),
            JwksError::Unavailable(why) => {
                tracing::warn!(error = %why, "cannot verify a token");
                Refusal {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    code: "issuer_unavailable",
                    message: "the token issuer's keys cannot be fetched right now; retry shortly"
                        .into(),
                    challenge: "Bearer realm=\"torua\"".into(),
                }
            }
            other => Refusal::invalid("invalid_token", other.to_string()),
        })?;
        let (roles, access) = self
            .state
            .subject_access(&claims.subject_names(), &claims.roles)
            .map_err(internal)?;
        let kind = if claims.is_service() {
            "service"
        } else {
            "user"
        };
        Ok(Arc::new(Principal {
            id: format!("{kind}:{}", claims.sub),
            kind: "token",
            node_id: None,
            roles,
            access,
        }))
    }

    /// The principal of a checked API key, from the cache while the state
    /// has not changed since it was built.
    fn key_principal(&self, id: String, generation: u64) -> Result<Arc<Principal>, ApiError> {
        if let Some((g, p)) = self
            .key_principals
            .read()
            .ok()
            .and_then(|m| m.get(&id).cloned())
        {
            if g == generation {
                return Ok(p);
            }
        }
        let ((roles, access, node_id), built) = self.state.key_access(&id)?;
        let principal = Arc::new(Principal {
            id: format!("key:{id}"),
            kind: "api_key",
            node_id: node_id.filter(|_| access.node),
            roles,
            access,
        });
        if let Ok(mut m) = self.key_principals.write() {
            // Bounded by the number of keys; stale entries are replaced.
            m.insert(id, (built, principal.clone()));
        }
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(v: serde_json::Value) -> TokenClaims {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_address_names_its_holder_only_when_verified_and_never_a_service() {
        let user = |verified: bool| {
            claims(serde_json::json!({
                "sub": "u1", "email": "Ann@Example.com", "email_verified": verified
            }))
        };
        assert_eq!(user(false).subject_names(), vec!["sub:u1"]);
        assert_eq!(
            user(true).subject_names(),
            vec!["sub:u1", "email:ann@example.com"]
        );
        // Absent means unproven.
        let bare = claims(serde_json::json!({"sub": "u1", "email": "a@x.com"}));
        assert_eq!(bare.subject_names(), vec!["sub:u1"]);
        // A service token is its service account, whatever else it says.
        let service = claims(serde_json::json!({
            "sub": "svc1", "token_use": "service", "email": "a@x.com", "email_verified": true
        }));
        assert_eq!(service.subject_names(), vec!["service:svc1"]);
    }
}
