//! Social login's conversation with identity providers: OpenID Connect
//! discovery, the authorization URL (code flow with PKCE and a nonce), the
//! code exchange, and turning the provider's answer into an
//! [`ExternalIdentity`] — for OpenID Connect from a verified ID token (keys
//! from the provider's JWKS, refetched on rotation), for GitHub from its
//! REST API.
//!
//! Only the operator's configured provider URLs are contacted; no redirect
//! is followed and every answer is size- and time-limited. What to do with
//! the identity (create, link, sign in) is the service layer's business.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secure::jwks::{JwksCache, JwksError, JwksSource, JwksTiming};
use secure::Secret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{OAuthProvider, ProviderKind};

/// The largest provider answer read (discovery, keys, tokens, user info).
const MAX_ANSWER: usize = 1024 * 1024;

/// Why talking to a provider failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider could not be reached or answered nonsense.
    #[error("identity provider `{0}` is unavailable: {1}")]
    Unavailable(String, String),
    /// The provider refused (e.g. the code was used or expired).
    #[error("identity provider `{0}` refused: {1}")]
    Refused(String, String),
    /// The ID token failed verification.
    #[error("the ID token from `{0}` is not acceptable: {1}")]
    BadIdToken(String, String),
    /// The provider gave no email address Truxe can use.
    #[error(
        "identity provider `{0}` did not share an email address; allow email access and try again"
    )]
    NoEmail(String),
}

/// Tokens from the provider's token endpoint, kept sealed with the identity.
/// `Debug` shows which tokens there are, never their values.
#[derive(Clone, Serialize, Deserialize)]
pub struct ProviderTokens {
    /// Access token for the provider's APIs.
    pub access_token: String,
    /// Refresh token, when the provider issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// ID token (OpenID Connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Unix time the access token expires, when said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Granted scopes, when said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for ProviderTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderTokens")
            .field("access_token", &"…")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "…"))
            .field("id_token", &self.id_token.as_ref().map(|_| "…"))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Who the provider says signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The provider's stable id for the person (`sub`, GitHub's numeric id).
    pub subject: String,
    /// Email address, lower-cased.
    pub email: String,
    /// Whether the provider vouches for the address.
    pub email_verified: bool,
    /// Display name, if shared.
    pub name: Option<String>,
}

/// OpenID Connect metadata used here.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    jwks_uri: String,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

struct Oidc {
    meta: Discovery,
    keys: JwksCache,
}

/// One configured provider.
pub struct Provider {
    /// Its settings.
    pub cfg: OAuthProvider,
    oidc: tokio::sync::OnceCell<Oidc>,
}

/// The configured providers and the HTTP client that reaches them.
pub struct Providers {
    http: reqwest::Client,
    by_id: HashMap<String, Arc<Provider>>,
    order: Vec<Arc<Provider>>,
}

/// Claims of an ID token that matter here (signature, `iss`, `aud`, `exp`
/// are checked by the kernel's verifier).
#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    aud: Value,
    #[serde(default)]
    azp: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<Flag>,
    #[serde(default)]
    name: Option<String>,
}

/// `email_verified` as a boolean, or as the string some providers send.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(BoolText),
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BoolText {
    True,
    False,
}

impl Flag {
    fn get(self) -> bool {
        matches!(self, Flag::Bool(true) | Flag::Text(BoolText::True))
    }
}

struct Keys {
    http: reqwest::Client,
    url: String,
}

#[async_trait]
impl JwksSource for Keys {
    async fn fetch(&self) -> Result<Value, secure::Error> {
        get_json(&self.http, &self.url, None)
            .await
            .map_err(secure::Error::Io)
    }
    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// GETs a JSON document (optionally with a bearer token), bounded in size.
async fn get_json(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
) -> Result<Value, String> {
    let mut req = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    read_json(req.send().await.map_err(|e| e.to_string())?).await
}

/// Reads a JSON answer of at most [`MAX_ANSWER`] bytes; a non-2xx status
/// is an error naming it (and the OAuth `error` field, if any).
async fn read_json(res: reqwest::Response) -> Result<Value, String> {
    let status = res.status();
    if res.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err("answer is too large".into());
    }
    let mut body = Vec::new();
    let mut res = res;
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err("answer is too large".into());
        }
    }
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|_| format!("status {status}, answer is not JSON"))?;
    if !status.is_success() {
        let what = doc["error"].as_str().unwrap_or("no error code");
        return Err(format!("status {status} ({what})"));
    }
    if doc["error"].is_string() {
        return Err(format!("error `{}`", doc["error"].as_str().unwrap_or("")));
    }
    Ok(doc)
}

impl Providers {
    /// The providers of `list`.
    pub fn new(list: &[OAuthProvider]) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("Truxe/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let order: Vec<Arc<Provider>> = list
            .iter()
            .map(|cfg| {
                Arc::new(Provider {
                    cfg: cfg.clone(),
                    oidc: tokio::sync::OnceCell::new(),
                })
            })
            .collect();
        let by_id = order
            .iter()
            .map(|p| (p.cfg.id.clone(), p.clone()))
            .collect();
        Ok(Providers { http, by_id, order })
    }

    /// A provider by id.
    pub fn get(&self, id: &str) -> Option<&Arc<Provider>> {
        self.by_id.get(id)
    }

    /// Every provider, in configured order.
    pub fn all(&self) -> &[Arc<Provider>] {
        &self.order
    }

    /// Discovery (once per process; a failure is retried on the next use).
    async fn oidc<'p>(
        &self,
        p: &'p Provider,
        issuer: &str,
        multi_tenant: bool,
    ) -> Result<&'p Oidc, OAuthError> {
        let id = &p.cfg.id;
        p.oidc
            .get_or_try_init(|| async {
                let url = format!("{issuer}/.well-known/openid-configuration");
                let doc = get_json(&self.http, &url, None)
                    .await
                    .map_err(|e| OAuthError::Unavailable(id.clone(), format!("discovery: {e}")))?;
                let meta: Discovery = serde_json::from_value(doc).map_err(|e| {
                    OAuthError::Unavailable(id.clone(), format!("discovery document: {e}"))
                })?;
                // OpenID Connect Discovery §4.3: the document must name the
                // issuer it was fetched for (a tenant template for Microsoft's
                // multi-tenant endpoints).
                let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
                let expected = if multi_tenant { template } else { issuer };
                if meta.issuer.trim_end_matches('/') != expected {
                    return Err(OAuthError::Unavailable(
                        id.clone(),
                        format!("discovery names issuer `{}`, not `{expected}`", meta.issuer),
                    ));
                }
                let keys = JwksCache::new(
                    Box::new(Keys {
                        http: self.http.clone(),
                        url: meta.jwks_uri.clone(),
                    }),
                    &meta.issuer,
                    &p.cfg.client_id,
                    JwksTiming::default(),
                );
                Ok(Oidc { meta, keys })
            })
            .await
    }

    /// Where to send the browser: the provider's authorization endpoint
    /// with client id, callback, scopes, `state`, `nonce` and the PKCE
    /// challenge.
    pub async fn authorization_url(
        &self,
        p: &Provider,
        callback: &str,
        state: &str,
        nonce: &str,
        challenge: &str,
        login_hint: Option<&str>,
    ) -> Result<String, OAuthError> {
        let endpoint = match &p.cfg.kind {
            ProviderKind::Oidc {
                issuer,
                multi_tenant,
            } => self
                .oidc(p, issuer, *multi_tenant)
                .await?
                .meta
                .authorization_endpoint
                .clone(),
            ProviderKind::Github { web, .. } => format!("{web}/login/oauth/authorize"),
        };
        let mut url = url::Url::parse(&endpoint).map_err(|e| {
            OAuthError::Unavailable(p.cfg.id.clone(), format!("authorization endpoint: {e}"))
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &p.cfg.client_id)
                .append_pair("redirect_uri", callback)
                .append_pair("scope", &p.cfg.scopes.join(" "))
                .append_pair("state", state)
                .append_pair("code_challenge", challenge)
                .append_pair("code_challenge_method", "S256");
            if matches!(p.cfg.kind, ProviderKind::Oidc { .. }) {
                q.append_pair("nonce", nonce);
            }
            if let Some(hint) = login_hint {
                q.append_pair(
                    if matches!(p.cfg.kind, ProviderKind::Github { .. }) {
                        "login"
                    } else {
                        "login_hint"
                    },
                    hint,
                );
            }
        }
        Ok(url.into())
    }

    /// RFC 9207: a callback's `iss` parameter, when sent, must name this
    /// provider (a mix-up defence when several providers are configured).
    pub async fn check_response_issuer(
        &self,
        p: &Provider,
        iss: Option<&str>,
    ) -> Result<(), OAuthError> {
        let (
            Some(iss),
            ProviderKind::Oidc {
                issuer,
                multi_tenant: false,
            },
        ) = (iss, &p.cfg.kind)
        else {
            return Ok(());
        };
        let meta = &self.oidc(p, issuer, false).await?.meta;
        if iss == meta.issuer {
            Ok(())
        } else {
            Err(OAuthError::Refused(
                p.cfg.id.clone(),
                "the callback names another issuer (`iss`)".into(),
            ))
        }
    }

    /// Exchanges the authorization code (with the PKCE verifier) for tokens.
    pub async fn exchange(
        &self,
        p: &Provider,
        callback: &str,
        code: &str,
        verifier: &Secret<String>,
        now: i64,
    ) -> Result<ProviderTokens, OAuthError> {
        let id = &p.cfg.id;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", callback),
            ("code_verifier", verifier.expose().as_str()),
        ];
        let secret = p.cfg.client_secret.expose().as_str();
        let req = match &p.cfg.kind {
            ProviderKind::Oidc {
                issuer,
                multi_tenant,
            } => {
                let meta = &self.oidc(p, issuer, *multi_tenant).await?.meta;
                let methods = &meta.token_endpoint_auth_methods_supported;
                let req = self.http.post(&meta.token_endpoint);
                // client_secret_basic is the default (RFC 6749 §2.3.1, with
                // the form-encoding of id and secret it requires).
                if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") {
                    let enc = |s: &str| {
                        url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                    };
                    req.basic_auth(enc(&p.cfg.client_id), Some(enc(secret)))
                } else {
                    form.push(("client_id", &p.cfg.client_id));
                    form.push(("client_secret", secret));
                    req
                }
            }
            ProviderKind::Github { web, .. } => {
                form.push(("client_id", &p.cfg.client_id));
                form.push(("client_secret", secret));
                self.http.post(format!("{web}/login/oauth/access_token"))
            }
        };
        let res = req
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| OAuthError::Unavailable(id.clone(), format!("token endpoint: {e}")))?;
        let server_error = res.status().is_server_error();
        let doc = read_json(res).await.map_err(|e| {
            if server_error {
                OAuthError::Unavailable(id.clone(), format!("token endpoint: {e}"))
            } else {
                OAuthError::Refused(id.clone(), format!("code exchange: {e}"))
            }
        })?;
        let text = |k: &str| doc[k].as_str().map(str::to_owned);
        Ok(ProviderTokens {
            access_token: text("access_token").ok_or_else(|| {
                OAuthError::Refused(id.clone(), "the token answer has no access_token".into())
            })?,
            refresh_token: text("refresh_token"),
            id_token: text("id_token"),
            expires_at: doc["expires_in"].as_i64().map(|s| now.saturating_add(s)),
            scope: text("scope"),
        })
    }

    /// Who signed in: from the verified ID token (its `nonce` must be the
    /// one this sign-in sent), with the email from user info when the ID
    /// token lacks it; or, for GitHub, from its API.
    pub async fn identity(
        &self,
        p: &Provider,
        tokens: &ProviderTokens,
        nonce: &str,
    ) -> Result<ExternalIdentity, OAuthError> {
        let id = &p.cfg.id;
        let (issuer, multi_tenant) = match &p.cfg.kind {
            ProviderKind::Github { api, .. } => return self.github(id, api, tokens).await,
            ProviderKind::Oidc {
                issuer,
                multi_tenant,
            } => (issuer, *multi_tenant),
        };
        let oidc = self.oidc(p, issuer, multi_tenant).await?;
        let bad = |m: &str| OAuthError::BadIdToken(id.clone(), m.to_owned());
        let raw = tokens
            .id_token
            .as_deref()
            .ok_or_else(|| bad("the token answer has no id_token"))?;
        let claims: IdClaims = oidc.keys.verify(raw).await.map_err(|e| match e {
            JwksError::Token(t) => bad(&t.to_string()),
            other => OAuthError::Unavailable(id.clone(), other.to_string()),
        })?;
        check_id_claims(&claims, nonce, &p.cfg.client_id).map_err(|m| bad(&m))?;
        let mut email = claims.email.clone();
        let mut verified = claims.email_verified.map(Flag::get);
        let mut name = claims.name.clone();
        if email.is_none() {
            if let Some(url) = &oidc.meta.userinfo_endpoint {
                let info = get_json(&self.http, url, Some(&tokens.access_token))
                    .await
                    .map_err(|e| OAuthError::Unavailable(id.clone(), format!("userinfo: {e}")))?;
                // OpenID Connect Core §5.3.2: user info must be about the
                // same subject as the ID token.
                if info["sub"].as_str() != Some(claims.sub.as_str()) {
                    return Err(bad("userinfo is about another subject"));
                }
                email = info["email"].as_str().map(str::to_owned);
                verified = serde_json::from_value::<Flag>(info["email_verified"].clone())
                    .ok()
                    .map(Flag::get);
                name = name.or_else(|| info["name"].as_str().map(str::to_owned));
            }
        }
        Ok(ExternalIdentity {
            subject: claims.sub,
            email: email
                .filter(|e| !e.is_empty())
                .ok_or_else(|| OAuthError::NoEmail(id.clone()))?
                .to_lowercase(),
            email_verified: verified.unwrap_or(false),
            name,
        })
    }

    async fn github(
        &self,
        id: &str,
        api: &str,
        tokens: &ProviderTokens,
    ) -> Result<ExternalIdentity, OAuthError> {
        let get = |path: &'static str| {
            let url = format!("{api}{path}");
            async move {
                get_json(&self.http, &url, Some(&tokens.access_token))
                    .await
                    .map_err(|e| OAuthError::Unavailable(id.to_owned(), format!("{path}: {e}")))
            }
        };
        let user = get("/user").await?;
        let emails = get("/user/emails").await?;
        let subject = user["id"]
            .as_i64()
            .map(|n| n.to_string())
            .ok_or_else(|| OAuthError::Unavailable(id.to_owned(), "/user has no id".into()))?;
        let (email, email_verified) =
            github_email(&emails).ok_or_else(|| OAuthError::NoEmail(id.to_owned()))?;
        Ok(ExternalIdentity {
            subject,
            email,
            email_verified,
            name: user["name"]
                .as_str()
                .or(user["login"].as_str())
                .map(str::to_owned),
        })
    }
}

/// The checks on ID-token claims that the signature verifier does not
/// make: the nonce (replay), and `azp` when there are several audiences.
fn check_id_claims(c: &IdClaims, nonce: &str, client_id: &str) -> Result<(), String> {
    match c.nonce.as_deref() {
        Some(n) if secure::ct_eq(n.as_bytes(), nonce.as_bytes()) => {}
        Some(_) => return Err("nonce does not match this sign-in".into()),
        None => return Err("nonce is missing".into()),
    }
    if let Some(list) = c.aud.as_array() {
        if list.len() > 1 && c.azp.as_deref() != Some(client_id) {
            return Err("several audiences and `azp` is not this client".into());
        }
    }
    if c.sub.is_empty() || c.sub.len() > 255 {
        return Err("`sub` is empty or too long".into());
    }
    Ok(())
}

/// GitHub's primary verified address, else its first verified one, else
/// the primary one (unverified).
fn github_email(emails: &Value) -> Option<(String, bool)> {
    let list = emails.as_array()?;
    let pick = |want_primary: bool, want_verified: bool| {
        list.iter().find(|e| {
            (!want_primary || e["primary"].as_bool() == Some(true))
                && (!want_verified || e["verified"].as_bool() == Some(true))
        })
    };
    let e = pick(true, true)
        .or_else(|| pick(false, true))
        .or_else(|| pick(true, false))?;
    Some((
        e["email"].as_str()?.to_lowercase(),
        e["verified"].as_bool() == Some(true),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> IdClaims {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("claims: {e}"))
    }

    #[test]
    fn nonce_and_azp_are_checked() {
        let ok = claims(json!({"sub": "s1", "nonce": "n1", "aud": "c"}));
        assert_eq!(check_id_claims(&ok, "n1", "c"), Ok(()));
        assert!(check_id_claims(&ok, "n2", "c").is_err(), "wrong nonce");
        let none = claims(json!({"sub": "s1", "aud": "c"}));
        assert!(check_id_claims(&none, "n1", "c").is_err(), "no nonce");
        let many = claims(json!({"sub": "s1", "nonce": "n1", "aud": ["c", "d"]}));
        assert!(check_id_claims(&many, "n1", "c").is_err(), "no azp");
        let azp = claims(json!({"sub": "s1", "nonce": "n1", "aud": ["c", "d"], "azp": "c"}));
        assert_eq!(check_id_claims(&azp, "n1", "c"), Ok(()));
        let empty = claims(json!({"sub": "", "nonce": "n1"}));
        assert!(check_id_claims(&empty, "n1", "c").is_err());
    }

    #[tokio::test]
    async fn github_authorization_url() {
        let cfg = OAuthProvider {
            id: "github".into(),
            name: "GitHub".into(),
            kind: ProviderKind::Github {
                web: "https://github.com".into(),
                api: "https://api.github.com".into(),
            },
            client_id: "cid".into(),
            client_secret: Secret::new("cs".into()),
            scopes: vec!["read:user".into(), "user:email".into()],
            redirect_uri: None,
        };
        let providers = Providers::new(std::slice::from_ref(&cfg)).unwrap();
        let p = providers.get("github").unwrap();
        let url = providers
            .authorization_url(
                p,
                "https://id.example/cb",
                "st",
                "nonce",
                "ch",
                Some("octocat"),
            )
            .await
            .unwrap();
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(
            parsed.as_str().split('?').next(),
            Some("https://github.com/login/oauth/authorize")
        );
        let q: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["redirect_uri"], "https://id.example/cb");
        assert_eq!(q["scope"], "read:user user:email");
        assert_eq!(q["state"], "st");
        assert_eq!(
            (
                q["code_challenge"].as_str(),
                q["code_challenge_method"].as_str()
            ),
            ("ch", "S256")
        );
        assert_eq!(q["login"], "octocat");
        assert!(
            !q.contains_key("nonce"),
            "GitHub has no ID token to carry it"
        );
        assert!(!format!(
            "{:?}",
            ProviderTokens {
                access_token: "gho_secret".into(),
                refresh_token: None,
                id_token: None,
                expires_at: None,
                scope: None,
            }
        )
        .contains("gho_secret"));
    }

    #[test]
    fn email_verified_as_bool_or_string() {
        let c = claims(json!({"sub": "s", "email_verified": "true"}));
        assert!(c.email_verified.is_some_and(Flag::get));
        let c = claims(json!({"sub": "s", "email_verified": false}));
        assert!(!c.email_verified.is_some_and(Flag::get));
    }

    #[test]
    fn github_prefers_the_primary_verified_address() {
        let emails = json!([
            {"email": "Old@Example.com", "primary": false, "verified": true},
            {"email": "Main@Example.com", "primary": true, "verified": true},
        ]);
        assert_eq!(
            github_email(&emails),
            Some(("main@example.com".into(), true))
        );
        let unverified = json!([{"email": "a@example.com", "primary": true, "verified": false}]);
        assert_eq!(
            github_email(&unverified),
            Some(("a@example.com".into(), false))
        );
        assert_eq!(github_email(&json!([])), None);
        assert_eq!(github_email(&json!({"message": "Bad credentials"})), None);
    }
}
