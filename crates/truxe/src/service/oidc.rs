//! Truxe as an OpenID Connect provider: the authorization code grant with
//! PKCE, refresh tokens (the session machinery's rotation and reuse
//! detection), ID tokens, userinfo, and the registry of client
//! applications.
//!
//! Tokens issued to a client name it as their audience, so they are good
//! only where that client sends them (and at `/oauth/userinfo`): Truxe's
//! own API and services that trust Truxe's tokens (Torua) refuse them.
//! A browser signs in once on Truxe's pages; that sign-in is an ordinary
//! Truxe session, which clients' sessions are separate from.

use secure::audit::Outcome;
use secure::jwt::KeyAlg;
use secure::{token, Secret};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::policy::perm;
use super::{AuthError, AuthService, ClientInfo, Principal};
use crate::model::{AuthCode, CodeUse, OAuthClient, Session, User};

/// Scopes a client may ask for.
pub const SCOPES: [(&str, &str); 6] = [
    ("openid", "sign you in"),
    ("profile", "see your name"),
    ("email", "see your email address"),
    ("offline_access", "keep you signed in"),
    (
        "organizations",
        "see the organizations you belong to and your role in each",
    ),
    (
        "roles",
        "see your role and permissions in the organization this application belongs to",
    ),
];
/// Organizations listed in the `organizations` claim at most.
const CLAIMED_ORGS: u32 = 100;
/// Grants a client may use.
pub const GRANTS: [&str; 2] = ["authorization_code", "refresh_token"];
/// An authorization code is good this long (seconds).
const CODE_TTL: i64 = 60;
const CODE_PREFIX: &str = "tac_";
const SECRET_PREFIX: &str = "tcs_";
/// Bounds of clients' token lifetimes (seconds).
const ACCESS_TTL: (i64, i64) = (60, 86_400);
const REFRESH_TTL: (i64, i64) = (300, 90 * 86_400);

/// An authorization request's parameters as sent (query or form), kept
/// as they came so the hosted pages can carry them from step to step.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeParams {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// One of the client's redirect URIs, exactly.
    pub redirect_uri: Option<String>,
    /// Space-separated scopes.
    pub scope: Option<String>,
    /// Returned as it is.
    pub state: Option<String>,
    /// Put into the ID token.
    pub nonce: Option<String>,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// Must be `S256` when a challenge is sent.
    pub code_challenge_method: Option<String>,
    /// `none`, `login`, `consent`.
    pub prompt: Option<String>,
    /// Seconds since the last sign-in beyond which it must be repeated.
    pub max_age: Option<String>,
    /// The address the application expects (fills the sign-in page in,
    /// and goes on to a social provider).
    pub login_hint: Option<String>,
}

impl AuthorizeParams {
    /// The parameters that are set, for hidden form fields and URLs.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("prompt", &self.prompt),
            ("max_age", &self.max_age),
            ("login_hint", &self.login_hint),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The client asking.
    pub client: OAuthClient,
    /// Where the answer goes.
    pub redirect_uri: String,
    /// Scopes asked for (known and allowed to the client).
    pub scopes: Vec<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    prompts: Vec<String>,
    max_age: Option<i64>,
    /// As sent.
    pub params: AuthorizeParams,
}

impl Authorization {
    /// Whether `prompt` lists `p`.
    pub fn prompts(&self, p: &str) -> bool {
        self.prompts.iter().any(|x| x == p)
    }

    /// Whether a sign-in at `auth_time` is too old for `max_age`.
    pub fn too_old(&self, auth_time: i64, now: i64) -> bool {
        self.max_age.is_some_and(|m| now - auth_time > m)
    }
}

/// Why an authorization request does not go on.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The client or its redirect URI is not known: said on a page, never
    /// sent to a URI the request chose.
    Untrusted(String),
    /// Answered to the client at its redirect URI (this URL).
    Redirect(String),
}

/// A user signed in on Truxe's pages in this browser.
#[derive(Debug, Clone)]
pub struct BrowserSignIn {
    /// The user.
    pub user: User,
    /// The Truxe session of the sign-in.
    pub session_id: String,
    /// When they signed in (unix seconds).
    pub auth_time: i64,
    /// How (`pwd`, `otp`).
    pub amr: Vec<String>,
}

/// A token endpoint error (RFC 6749 §5.2).
#[derive(Debug)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, …
    pub error: &'static str,
    /// For the developer.
    pub description: String,
}

impl OAuthError {
    /// An error with its code and description.
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }
}

impl From<AuthError> for OAuthError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Internal(_) | AuthError::Unavailable(_) => {
                tracing::error!(error = %e, "token endpoint");
                Self::new("server_error", "the server could not complete the request")
            }
            other => Self::new("invalid_grant", other.to_string()),
        }
    }
}

impl From<crate::repo::RepoError> for OAuthError {
    fn from(e: crate::repo::RepoError) -> Self {
        AuthError::from(e).into()
    }
}

/// A token request's form fields.
#[derive(Debug, Default, Deserialize)]
pub struct TokenRequest {
    /// `authorization_code` or `refresh_token`.
    pub grant_type: Option<String>,
    /// The authorization code.
    pub code: Option<String>,
    /// The authorization request's redirect URI, repeated.
    pub redirect_uri: Option<String>,
    /// PKCE verifier.
    pub code_verifier: Option<String>,
    /// For `refresh_token`.
    pub refresh_token: Option<String>,
    /// A narrower scope on refresh.
    pub scope: Option<String>,
    /// `client_secret_post`, or a public client naming itself.
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<String>,
    /// `private_key_jwt`: `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    pub client_assertion_type: Option<String>,
    /// `private_key_jwt`: a JWT the client signed (RFC 7523).
    pub client_assertion: Option<String>,
}

/// What the token endpoint answers.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    /// JWT whose audience is the client.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    /// Rotating, single use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// With `openid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// Granted scopes.
    pub scope: String,
}

/// Claims of an access token issued to a client.
#[derive(Debug, Serialize, Deserialize)]
struct ClientAccessClaims {
    iss: String,
    sub: String,
    aud: String,
    client_id: String,
    scope: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    sid: String,
}

/// Claims of an ID token.
#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    amr: &'a [String],
    acr: &'static str,
    at_hash: String,
    sid: &'a str,
    #[serde(flatten)]
    profile: serde_json::Map<String, serde_json::Value>,
}

/// A client as administrators see it (never its secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientView {
    /// The `client_id`.
    pub client_id: String,
    /// Name.
    pub name: String,
    /// Organization.
    pub org_id: Option<String>,
    /// No secret: PKCE only.
    pub public: bool,
    /// `client_secret_basic` (or `_post`), `private_key_jwt` or `none`.
    pub token_endpoint_auth_method: &'static str,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Where logout may return to.
    pub post_logout_redirect_uris: Vec<String>,
    /// Allowed grants.
    pub grant_types: Vec<String>,
    /// Allowed scopes.
    pub scopes: Vec<String>,
    /// Seconds, if not the server's.
    pub access_token_ttl: Option<i64>,
    /// Seconds, if not the server's.
    pub refresh_token_ttl: Option<i64>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<&OAuthClient> for ClientView {
    fn from(c: &OAuthClient) -> Self {
        ClientView {
            client_id: c.id.clone(),
            name: c.name.clone(),
            org_id: c.org_id.clone(),
            public: c.is_public(),
            token_endpoint_auth_method: c.auth_method(),
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            grant_types: c.grant_types.clone(),
            scopes: c.scopes.clone(),
            access_token_ttl: c.access_ttl,
            refresh_token_ttl: c.refresh_ttl,
            created_at: crate::model::rfc3339(c.created_at),
            updated_at: crate::model::rfc3339(c.updated_at),
        }
    }
}

/// A client registration or change (camelCase, or the snake_case names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientInput {
    /// Name shown to users.
    pub name: Option<String>,
    /// Exact redirect URIs (1 to 10).
    #[serde(alias = "redirect_uris")]
    pub redirect_uris: Option<Vec<String>>,
    /// Where logout may return to.
    #[serde(alias = "post_logout_redirect_uris")]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// Grants (default: both).
    #[serde(alias = "grant_types")]
    pub grant_types: Option<Vec<String>>,
    /// Scopes (default: all four).
    pub scopes: Option<Vec<String>>,
    /// A public client has no secret and must use PKCE (creation only).
    pub public: Option<bool>,
    /// Seconds.
    #[serde(alias = "access_token_ttl")]
    pub access_token_ttl: Option<i64>,
    /// Seconds.
    #[serde(alias = "refresh_token_ttl")]
    pub refresh_token_ttl: Option<i64>,
    /// Organization it belongs to (creation only).
    #[serde(alias = "org_id")]
    pub org_id: Option<String>,
    /// Public keys (`{"keys":[…]}`) it signs `private_key_jwt` assertions
    /// with; such a client gets no secret.
    pub jwks: Option<serde_json::Value>,
}

fn no_client() -> AuthError {
    AuthError::NotFound("no such client".into())
}

fn invalid(msg: impl Into<String>) -> AuthError {
    AuthError::Invalid(msg.into())
}

/// A redirect URI a client may register: `https`, or `http` on a loopback
/// address (native apps, RFC 8252); absolute, without a fragment.
fn check_redirect(uri: &str) -> Result<String, AuthError> {
    let u = url::Url::parse(uri).map_err(|_| invalid(format!("`{uri}` is not an absolute URL")))?;
    let loopback = matches!(u.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    if u.fragment().is_some() || uri.len() > 2048 {
        return Err(invalid(format!(
            "`{uri}`: no fragment, at most 2048 characters"
        )));
    }
    match u.scheme() {
        "https" => Ok(uri.to_owned()),
        "http" if loopback => Ok(uri.to_owned()),
        _ => Err(invalid(format!(
            "`{uri}`: redirect URIs are https, or http on a loopback address"
        ))),
    }
}

fn within<'a>(
    what: &str,
    asked: Option<Vec<String>>,
    allowed: impl Iterator<Item = &'a str> + Clone,
) -> Result<Vec<String>, AuthError> {
    let list = asked.unwrap_or_else(|| allowed.clone().map(str::to_owned).collect());
    if let Some(bad) = list
        .iter()
        .find(|x| !allowed.clone().any(|a| a == x.as_str()))
    {
        return Err(invalid(format!("`{bad}` is not a supported {what}")));
    }
    let mut list = list;
    list.sort();
    list.dedup();
    Ok(list)
}

fn ttl(v: Option<i64>, (lo, hi): (i64, i64), name: &str) -> Result<Option<i64>, AuthError> {
    match v {
        Some(t) if !(lo..=hi).contains(&t) => {
            Err(invalid(format!("`{name}` is {lo} to {hi} seconds")))
        }
        v => Ok(v),
    }
}

/// `url` with `pairs` added to its query.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            u.query_pairs_mut().extend_pairs(pairs);
            u.into()
        }
        // Only registered (parsed) URIs get here.
        Err(_) => url.to_owned(),
    }
}

/// The left half of the hash of `token` the signing algorithm uses,
/// base64url (`at_hash`, OpenID Connect Core §3.1.3.6).
fn half_hash(alg: KeyAlg, token: &str) -> String {
    use base64::Engine;
    let full = match alg {
        KeyAlg::EdDsa => sha2::Sha512::digest(token.as_bytes()).to_vec(),
        _ => sha2::Sha256::digest(token.as_bytes()).to_vec(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&full[..full.len() / 2])
}

/// The `aud` of a JWT, read without checking it (to choose the verifier
/// that then checks everything).
fn unverified_audience(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["aud"].as_str().map(str::to_owned)
}

impl AuthService {
    fn error_redirect(
        &self,
        a_uri: &str,
        state: Option<&str>,
        error: &str,
        why: &str,
    ) -> AuthorizeError {
        let mut pairs = vec![("error", error), ("error_description", why)];
        if let Some(s) = state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &self.cfg.issuer));
        AuthorizeError::Redirect(with_query(a_uri, &pairs))
    }

    /// Checks an authorization request: first the client and redirect URI
    /// (a page if wrong), then the rest (answered at the redirect URI).
    pub async fn check_authorization(
        &self,
        params: AuthorizeParams,
    ) -> Result<Authorization, AuthorizeError> {
        let untrusted = |m: &str| AuthorizeError::Untrusted(m.to_owned());
        let Some(client_id) = params.client_id.as_deref().filter(|c| c.len() <= 128) else {
            return Err(untrusted("the request names no client (`client_id`)"));
        };
        let client = match self.store.client(client_id).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(untrusted("the application is not registered here")),
            Err(e) => {
                tracing::error!(error = %e, "reading an OAuth client");
                return Err(untrusted("the request could not be checked; try again"));
            }
        };
        let Some(redirect_uri) = params
            .redirect_uri
            .as_deref()
            .filter(|r| client.redirect_uris.iter().any(|x| x == r))
        else {
            return Err(untrusted(
                "the application sent a return address (`redirect_uri`) it has not registered",
            ));
        };
        let redirect_uri = redirect_uri.to_owned();
        let state = params.state.clone().filter(|s| s.len() <= 1024);
        let fail = |error: &str, why: &str| {
            self.error_redirect(&redirect_uri, state.as_deref(), error, why)
        };
        if params.state.as_ref().is_some_and(|s| s.len() > 1024) {
            return Err(fail("invalid_request", "state is at most 1024 characters"));
        }
        if params.response_type.as_deref() != Some("code") {
            return Err(fail(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        if !client.grant_types.iter().any(|g| g == "authorization_code") {
            return Err(fail(
                "unauthorized_client",
                "the client may not use the authorization code grant",
            ));
        }
        let scopes: Vec<String> = params
            .scope
            .as_deref()
            .unwrap_or("")
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        if scopes.is_empty() {
            return Err(fail("invalid_scope", "scope is required (e.g. `openid`)"));
        }
        if let Some(bad) = scopes.iter().find(|s| !client.scopes.contains(s)) {
            return Err(fail(
                "invalid_scope",
                &format!("`{bad}` is not a scope this client may ask for"),
            ));
        }
        let challenge = params.code_challenge.clone();
        match (&challenge, params.code_challenge_method.as_deref()) {
            (Some(c), Some("S256")) if (43..=128).contains(&c.len()) => {}
            (Some(_), Some("S256")) => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge is 43 to 128 characters",
                ))
            }
            (Some(_), _) => {
                return Err(fail(
                    "invalid_request",
                    "code_challenge_method must be S256",
                ))
            }
            (None, _) if client.is_public() => {
                return Err(fail(
                    "invalid_request",
                    "PKCE (code_challenge with S256) is required of public clients",
                ))
            }
            (None, _) => {}
        }
        let prompts: Vec<String> = params
            .prompt
            .as_deref()
            .unwrap_or("")
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        if let Some(bad) = prompts
            .iter()
            .find(|p| !matches!(p.as_str(), "none" | "login" | "consent" | "select_account"))
        {
            return Err(fail(
                "invalid_request",
                &format!("prompt `{bad}` is not supported"),
            ));
        }
        if prompts.iter().any(|p| p == "none") && prompts.len() > 1 {
            return Err(fail("invalid_request", "prompt=none stands alone"));
        }
        let max_age = match params.max_age.as_deref() {
            None => None,
            Some(m) => match m.parse::<i64>() {
                Ok(v) if v >= 0 => Some(v),
                _ => return Err(fail("invalid_request", "max_age is a number of seconds")),
            },
        };
        if params.nonce.as_ref().is_some_and(|n| n.len() > 512) {
            return Err(fail("invalid_request", "nonce is at most 512 characters"));
        }
        Ok(Authorization {
            scopes,
            state,
            nonce: params.nonce.clone(),
            code_challenge: challenge,
            prompts,
            max_age,
            redirect_uri,
            client,
            params,
        })
    }

    /// The answer when the request cannot go on without the user (`prompt=none`).
    pub fn cannot_prompt(&self, a: &Authorization, error: &str) -> String {
        match self.error_redirect(
            &a.redirect_uri,
            a.state.as_deref(),
            error,
            "the user must interact",
        ) {
            AuthorizeError::Redirect(u) | AuthorizeError::Untrusted(u) => u,
        }
    }

    /// The browser sign-in of Truxe session `sid`, if it is live and its
    /// user active.
    pub async fn browser_sign_in(
        &self,
        sid: &str,
        user_id: &str,
        auth_time: i64,
        amr: Vec<String>,
        now: i64,
    ) -> Option<BrowserSignIn> {
        let (session, user) = self.store.session_with_user(sid, user_id).await.ok()??;
        let live = session.is_live(now) && session.client_id.is_none() && user.status == "active";
        live.then_some(BrowserSignIn {
            user,
            session_id: session.id,
            auth_time,
            amr,
        })
    }

    /// Whether the user must (again) consent to what `a` asks.
    pub async fn needs_consent(&self, user_id: &str, a: &Authorization) -> Result<bool, AuthError> {
        if a.prompts("consent") {
            return Ok(true);
        }
        let granted = self.store.consent(user_id, &a.client.id).await?;
        Ok(!a.scopes.iter().all(|s| granted.contains(s)))
    }

    /// Records the user's consent (remembered per client and scope).
    pub async fn consent(
        &self,
        who: &BrowserSignIn,
        a: &Authorization,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let mut scopes = self.store.consent(&who.user.id, &a.client.id).await?;
        scopes.extend(a.scopes.iter().cloned());
        scopes.sort();
        scopes.dedup();
        self.store
            .put_consent(&who.user.id, &a.client.id, &scopes, now)
            .await?;
        let e = self
            .event("oauth_consent_granted", Outcome::Success, ctx, now)
            .actor(&who.user.id)
            .target(&a.client.id);
        self.record(e.details(serde_json::json!({"scopes": a.scopes})))
            .await;
        Ok(())
    }

    /// The user said no: the answer to the client.
    pub async fn deny(
        &self,
        who: &BrowserSignIn,
        a: &Authorization,
        ctx: &ClientInfo,
        now: i64,
    ) -> String {
        let e = self
            .event("oauth_consent_denied", Outcome::Denied, ctx, now)
            .actor(&who.user.id)
            .target(&a.client.id);
        self.record(e).await;
        match self.error_redirect(
            &a.redirect_uri,
            a.state.as_deref(),
            "access_denied",
            "the user declined",
        ) {
            AuthorizeError::Redirect(u) | AuthorizeError::Untrusted(u) => u,
        }
    }

    /// Issues a code for `a` to `who`; the redirect that carries it.
    pub async fn issue_code(
        &self,
        who: &BrowserSignIn,
        a: &Authorization,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<String, AuthError> {
        let code = token::generate(CODE_PREFIX);
        self.store
            .create_code(&AuthCode {
                code_hash: code.digest,
                client_id: a.client.id.clone(),
                user_id: who.user.id.clone(),
                redirect_uri: a.redirect_uri.clone(),
                scope: a.scopes.join(" "),
                nonce: a.nonce.clone(),
                code_challenge: a.code_challenge.clone(),
                auth_time: who.auth_time,
                amr: who.amr.clone(),
                created_at: now,
                expires_at: now + CODE_TTL,
            })
            .await?;
        let e = self
            .event("oauth_code_issued", Outcome::Success, ctx, now)
            .actor(&who.user.id)
            .target(&a.client.id);
        self.record(e.details(serde_json::json!({"scopes": a.scopes})))
            .await;
        let mut pairs = vec![("code", code.plaintext.expose().as_str())];
        if let Some(s) = &a.state {
            pairs.push(("state", s));
        }
        pairs.push(("iss", &self.cfg.issuer));
        Ok(with_query(&a.redirect_uri, &pairs))
    }

    /// The client a token request authenticates as: by `client_secret_basic`
    /// (`basic`), `client_secret_post` or `private_key_jwt`; a public client
    /// by its id alone.
    async fn token_client(
        &self,
        basic: Option<(String, Secret<String>)>,
        req: &TokenRequest,
        now: i64,
    ) -> Result<OAuthClient, OAuthError> {
        let bad = || OAuthError::new("invalid_client", "client authentication failed");
        if let Some(assertion) = &req.client_assertion {
            if basic.is_some() || req.client_secret.is_some() {
                return Err(bad());
            }
            return self.asserted_client(req, assertion, now).await;
        }
        let (id, secret) = match (basic, &req.client_id) {
            (Some((id, secret)), None) => (id, Some(secret)),
            (Some((id, secret)), Some(form_id)) if *form_id == id => (id, Some(secret)),
            (Some(_), Some(_)) => return Err(bad()),
            (None, Some(id)) => (id.clone(), req.client_secret.clone().map(Secret::new)),
            (None, None) => return Err(bad()),
        };
        if id.len() > 128 {
            return Err(bad());
        }
        let Some(client) = self.store.client(&id).await? else {
            return Err(bad());
        };
        match (&client.secret_hash, secret) {
            (Some(hash), Some(s)) if token::matches(s.expose(), hash) => Ok(client),
            (None, None) if client.is_public() => Ok(client),
            _ => Err(bad()),
        }
    }

    /// `private_key_jwt` (RFC 7523, OpenID Connect Core §9): a JWT the
    /// client signed with a key it registered, naming itself as `iss` and
    /// `sub`, this server's token endpoint (or its issuer) as `aud`, with
    /// `exp` at most 5 minutes ahead and a `jti` it has not used before.
    async fn asserted_client(
        &self,
        req: &TokenRequest,
        assertion: &str,
        now: i64,
    ) -> Result<OAuthClient, OAuthError> {
        let bad = || OAuthError::new("invalid_client", "client authentication failed");
        if req.client_assertion_type.as_deref()
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            || assertion.len() > 8 * 1024
        {
            return Err(bad());
        }
        // Who it claims to be, before anything is trusted: only to find
        // the keys that must have signed it.
        let claimed = assertion
            .split('.')
            .nth(1)
            .and_then(|p| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|c| c["iss"].as_str().map(str::to_owned))
            .filter(|id| id.len() <= 128)
            .ok_or_else(bad)?;
        if req.client_id.as_deref().is_some_and(|id| id != claimed) {
            return Err(bad());
        }
        let client = self.store.client(&claimed).await?.ok_or_else(bad)?;
        let jwks: serde_json::Value = client
            .jwks
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
            .ok_or_else(bad)?;
        let issuer = &self.cfg.issuer;
        let endpoint = format!("{issuer}/oauth/token");
        let claims: serde_json::Value = [endpoint.as_str(), issuer.as_str()]
            .iter()
            .find_map(|aud| {
                secure::jwt::Verifier::from_jwks(&jwks, &client.id, aud)
                    .ok()?
                    .verify(assertion)
                    .ok()
            })
            .ok_or_else(bad)?;
        let exp = claims["exp"].as_i64().ok_or_else(bad)?;
        let jti = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty() && j.len() <= 256);
        if claims["sub"].as_str() != Some(client.id.as_str()) || exp > now + 300 {
            return Err(bad());
        }
        let Some(jti) = jti else {
            return Err(bad());
        };
        if !self.store.use_assertion(&client.id, jti, exp, now).await? {
            return Err(OAuthError::new(
                "invalid_client",
                "this client assertion was used already",
            ));
        }
        Ok(client)
    }

    /// `POST /oauth/token`.
    pub async fn token(
        &self,
        basic: Option<(String, Secret<String>)>,
        req: TokenRequest,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let client = self.token_client(basic, &req, now).await?;
        let grant = req.grant_type.as_deref().unwrap_or("");
        if !GRANTS.contains(&grant) {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type is authorization_code or refresh_token",
            ));
        }
        if !client.grant_types.iter().any(|g| g == grant) {
            return Err(OAuthError::new(
                "unauthorized_client",
                format!("the client may not use {grant}"),
            ));
        }
        if grant == "refresh_token" {
            return self.refresh_for_client(&client, &req, ctx, now).await;
        }
        let code = req.code.as_deref().unwrap_or("");
        if !code.starts_with(CODE_PREFIX) || code.len() > 128 {
            return Err(OAuthError::new(
                "invalid_grant",
                "the code is invalid or expired",
            ));
        }
        let hash = token::digest(code);
        let c = match self.store.use_code(&hash, now).await? {
            CodeUse::Fresh(c) => c,
            CodeUse::Invalid => {
                return Err(OAuthError::new(
                    "invalid_grant",
                    "the code is invalid or expired",
                ))
            }
            CodeUse::Replayed { session_id } => {
                // A code used twice was intercepted: what it gave ends.
                if let Some(sid) = &session_id {
                    self.store
                        .revoke_session(sid, "authorization_code_replayed", now)
                        .await?;
                }
                let e = self
                    .event("oauth_code_replayed", Outcome::Denied, ctx, now)
                    .target(&client.id);
                self.record(e.details(serde_json::json!({"session_revoked": session_id})))
                    .await;
                return Err(OAuthError::new(
                    "invalid_grant",
                    "the code was used already; the tokens it gave are revoked",
                ));
            }
        };
        if c.client_id != client.id || req.redirect_uri.as_deref() != Some(c.redirect_uri.as_str())
        {
            return Err(OAuthError::new(
                "invalid_grant",
                "the code was issued to another client or redirect_uri",
            ));
        }
        if let Some(challenge) = &c.code_challenge {
            let verifier = req.code_verifier.as_deref().unwrap_or("");
            let ok = (43..=128).contains(&verifier.len())
                && secure::ct_eq(
                    secure::oauth::pkce_challenge(verifier).as_bytes(),
                    challenge.as_bytes(),
                );
            if !ok {
                return Err(OAuthError::new(
                    "invalid_grant",
                    "code_verifier does not match the code_challenge",
                ));
            }
        }
        let Some(user) = self
            .store
            .user_by_id(&c.user_id)
            .await?
            .filter(|u| u.status == "active")
        else {
            return Err(OAuthError::new(
                "invalid_grant",
                "the account is not active",
            ));
        };
        let refresh_ttl = client
            .refresh_ttl
            .unwrap_or(self.cfg.refresh_ttl.as_secs() as i64);
        let opening = super::auth::Opening {
            client_id: Some(client.id.clone()),
            ttl: refresh_ttl,
            started: None,
            before: None,
        };
        let (sid, refresh) = self.open_session(&user, ctx.clone(), opening, now).await?;
        self.store.code_session(&hash, &sid).await?;
        let scopes: Vec<String> = c.scope.split(' ').map(str::to_owned).collect();
        let e = self
            .event("oauth_token_issued", Outcome::Success, ctx, now)
            .actor(&user.id)
            .target(&client.id);
        self.record(e.details(serde_json::json!({"grant": grant, "session": sid})))
            .await;
        let refresh = client
            .grant_types
            .iter()
            .any(|g| g == "refresh_token")
            .then_some(refresh);
        let claims = self.user_claims(&client, &user, &scopes).await?;
        self.client_tokens(
            &client,
            &user,
            &sid,
            (&scopes, claims),
            refresh,
            Some((&c.nonce, c.auth_time, &c.amr)),
            now,
        )
    }

    async fn refresh_for_client(
        &self,
        client: &OAuthClient,
        req: &TokenRequest,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let presented = req.refresh_token.as_deref().unwrap_or("");
        let (session, user, next) = self.rotate_refresh(presented, ctx, now).await?;
        if session.client_id.as_deref() != Some(client.id.as_str()) {
            // Another client's token, or Truxe's own: stolen, so it ends.
            self.store
                .revoke_session(&session.id, "refresh_token_misused", now)
                .await?;
            return Err(OAuthError::new(
                "invalid_grant",
                "the refresh token was not issued to this client",
            ));
        }
        let granted = self.store.consent(&user.id, &client.id).await?;
        let mut scopes: Vec<String> = granted
            .into_iter()
            .filter(|s| client.scopes.contains(s))
            .collect();
        if let Some(narrower) = &req.scope {
            let asked: Vec<String> = narrower
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect();
            if let Some(bad) = asked.iter().find(|s| !scopes.contains(s)) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("`{bad}` was not granted"),
                ));
            }
            scopes = asked;
        }
        let claims = self.user_claims(client, &user, &scopes).await?;
        self.client_tokens(
            client,
            &user,
            &session.id,
            (&scopes, claims),
            Some(next),
            None,
            now,
        )
    }

    /// Access token (audience: the client), the refresh token, and with
    /// `openid` an ID token (`first`: the code's nonce, auth_time and amr).
    #[allow(clippy::too_many_arguments)]
    fn client_tokens(
        &self,
        client: &OAuthClient,
        user: &User,
        sid: &str,
        (scopes, claims): (&[String], serde_json::Map<String, serde_json::Value>),
        refresh: Option<Secret<String>>,
        first: Option<(&Option<String>, i64, &Vec<String>)>,
        now: i64,
    ) -> Result<TokenResponse, OAuthError> {
        let ttl = client
            .access_ttl
            .unwrap_or(self.cfg.access_ttl.as_secs() as i64);
        let scope = scopes.join(" ");
        let ring = self.keys.ring();
        let access = ring
            .sign(&ClientAccessClaims {
                iss: self.cfg.issuer.clone(),
                sub: user.id.clone(),
                aud: client.id.clone(),
                client_id: client.id.clone(),
                scope: scope.clone(),
                iat: now,
                nbf: now,
                exp: now + ttl,
                jti: token::random_uuid(),
                sid: sid.to_owned(),
            })
            .map_err(AuthError::from)?;
        let id_token = if scopes.iter().any(|s| s == "openid") {
            let no_amr = Vec::new();
            let (nonce, auth_time, amr) = match first {
                Some((n, t, a)) => (n.as_deref(), t, a),
                None => (None, now, &no_amr),
            };
            let mfa = amr.iter().any(|m| m == "otp" || m == "hwk");
            let claims = IdTokenClaims {
                iss: &self.cfg.issuer,
                sub: &user.id,
                aud: &client.id,
                iat: now,
                exp: now + ttl,
                auth_time,
                nonce,
                amr,
                acr: if mfa {
                    "urn:truxe:acr:mfa"
                } else {
                    "urn:truxe:acr:single"
                },
                at_hash: half_hash(self.cfg.algorithm, &access),
                sid,
                profile: claims,
            };
            Some(ring.sign(&claims).map_err(AuthError::from)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: ttl,
            refresh_token: refresh.map(|r| r.expose().clone()),
            id_token,
            scope,
        })
    }

    /// `GET /oauth/userinfo`: the claims of the token's user its scopes
    /// allow. Only tokens issued to a client, whose session is live.
    pub async fn userinfo(&self, bearer: &str, now: i64) -> Result<serde_json::Value, AuthError> {
        let refused =
            || AuthError::Unauthenticated("the access token is invalid or expired".into());
        let aud = unverified_audience(bearer)
            .filter(|a| a.len() <= 128)
            .ok_or_else(refused)?;
        let client = self.store.client(&aud).await?.ok_or_else(refused)?;
        let verifier = self.keys.ring().verifier(&self.cfg.issuer, &client.id);
        let claims: ClientAccessClaims = verifier.verify(bearer).map_err(|_| refused())?;
        if claims.client_id != client.id || claims.exp < now {
            return Err(refused());
        }
        let (session, user) = self
            .store
            .session_with_user(&claims.sid, &claims.sub)
            .await?
            .ok_or_else(refused)?;
        let live = session.is_live(now)
            && session.user_id == claims.sub
            && session.client_id.as_deref() == Some(client.id.as_str())
            && user.status == "active";
        if !live {
            return Err(refused());
        }
        let scopes: Vec<String> = claims.scope.split(' ').map(str::to_owned).collect();
        let mut out = self.user_claims(&client, &user, &scopes).await?;
        out.insert("sub".into(), user.id.clone().into());
        Ok(serde_json::Value::Object(out))
    }

    /// A token of `client`'s, as far as Truxe still stands by it: the
    /// claims of a live access token, or the session of an unused
    /// refresh token. Another client's tokens are unknown to it.
    async fn client_token(
        &self,
        client: &OAuthClient,
        token: &str,
        now: i64,
    ) -> Result<Option<(Session, serde_json::Value)>, AuthError> {
        if token.len() > 4096 {
            return Ok(None);
        }
        if token.starts_with(super::auth::REFRESH_PREFIX) {
            let Some((sid, used, expires)) =
                self.store.refresh_token(&token::digest(token)).await?
            else {
                return Ok(None);
            };
            let Some(session) = self.store.session(&sid).await? else {
                return Ok(None);
            };
            let ok = used.is_none()
                && expires > now
                && session.is_live(now)
                && session.client_id.as_deref() == Some(client.id.as_str());
            let claims = serde_json::json!({
                "token_type": "refresh_token",
                "sub": session.user_id,
                "exp": expires,
                "sid": session.id,
            });
            return Ok(ok.then_some((session, claims)));
        }
        if unverified_audience(token).as_deref() != Some(client.id.as_str()) {
            return Ok(None);
        }
        let verifier = self.keys.ring().verifier(&self.cfg.issuer, &client.id);
        let Ok(claims) = verifier.verify::<ClientAccessClaims>(token) else {
            return Ok(None);
        };
        let Some(session) = self.store.session(&claims.sid).await? else {
            return Ok(None);
        };
        let ok = claims.exp >= now
            && session.is_live(now)
            && session.user_id == claims.sub
            && session.client_id.as_deref() == Some(client.id.as_str());
        let claims = serde_json::json!({
            "token_type": "Bearer",
            "sub": claims.sub,
            "scope": claims.scope,
            "exp": claims.exp,
            "iat": claims.iat,
            "sid": claims.sid,
            "jti": claims.jti,
        });
        Ok(ok.then_some((session, claims)))
    }

    /// `POST /oauth/introspect` (RFC 7662) by an authenticated client.
    pub async fn introspect(
        &self,
        basic: Option<(String, Secret<String>)>,
        req: &TokenRequest,
        token: &str,
        now: i64,
    ) -> Result<serde_json::Value, OAuthError> {
        let client = self.token_client(basic, req, now).await?;
        let Some((_, mut claims)) = self.client_token(&client, token, now).await? else {
            return Ok(serde_json::json!({"active": false}));
        };
        claims["active"] = true.into();
        claims["client_id"] = client.id.clone().into();
        claims["aud"] = client.id.into();
        claims["iss"] = self.cfg.issuer.clone().into();
        Ok(claims)
    }

    /// `POST /oauth/revoke` (RFC 7009): ends the session of a token of the
    /// client's (so its refresh tokens stop, and userinfo refuses its
    /// access tokens). Unknown tokens are not an error.
    pub async fn revoke_token(
        &self,
        basic: Option<(String, Secret<String>)>,
        req: &TokenRequest,
        token: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), OAuthError> {
        let client = self.token_client(basic, req, now).await?;
        if let Some((session, _)) = self.client_token(&client, token, now).await? {
            self.store
                .revoke_session(&session.id, "revoked_by_client", now)
                .await?;
            let e = self
                .event("oauth_token_revoked", Outcome::Success, ctx, now)
                .actor(&session.user_id)
                .target(&client.id);
            self.record(e.details(serde_json::json!({"session": session.id})))
                .await;
        }
        Ok(())
    }

    /// What an RP-initiated logout request names: the client and session
    /// of a genuine `id_token_hint` (expired hints count), and the
    /// `post_logout_redirect_uri` if that client registered it exactly.
    pub async fn logout_request(
        &self,
        id_token_hint: Option<&str>,
        client_id: Option<&str>,
        post_logout_redirect_uri: Option<&str>,
    ) -> Result<(Option<OAuthClient>, Option<String>, Option<String>), AuthError> {
        let mut sid = None;
        let mut named = client_id.map(str::to_owned);
        if let Some(hint) = id_token_hint.filter(|h| h.len() <= 8192) {
            if let Some(aud) = unverified_audience(hint) {
                let verifier = self.keys.ring().verifier(&self.cfg.issuer, &aud);
                let claims = verifier.verify_ignoring_expiry::<serde_json::Value>(hint);
                if let Ok(c) = claims {
                    if named.as_deref().is_none_or(|n| n == aud) {
                        named = Some(aud);
                        sid = c["sid"].as_str().map(str::to_owned);
                    }
                }
            }
        }
        let client = match named.filter(|n| n.len() <= 128) {
            Some(id) => self.store.client(&id).await?,
            None => None,
        };
        let back = match (&client, post_logout_redirect_uri) {
            (Some(c), Some(uri)) if c.post_logout_redirect_uris.iter().any(|u| u == uri) => {
                Some(uri.to_owned())
            }
            _ => None,
        };
        Ok((client, sid, back))
    }

    /// Ends the browser's sign-in (and the hinted client session of the
    /// same user); audited.
    pub async fn end_browser_session(
        &self,
        who: Option<&BrowserSignIn>,
        client_session: Option<&str>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let Some(who) = who else {
            return Ok(());
        };
        self.store
            .revoke_session(&who.session_id, "logout", now)
            .await?;
        if let Some(sid) = client_session {
            if let Some(s) = self
                .store
                .session(sid)
                .await?
                .filter(|s| s.user_id == who.user.id)
            {
                self.store.revoke_session(&s.id, "logout", now).await?;
            }
        }
        let e = self
            .event("logout", Outcome::Success, ctx, now)
            .actor(&who.user.id)
            .target(&who.session_id);
        self.record(e.details(serde_json::json!({"via": "end_session"})))
            .await;
        Ok(())
    }

    /// The client `id`, if `p` may act on it with `wanted`
    /// (`oauth_clients:read` or `:manage`): a system administrator on any,
    /// a member whose role grants it on its organization's. Others: 404.
    async fn client_for(
        &self,
        p: &Principal,
        id: &str,
        wanted: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<OAuthClient, AuthError> {
        if id.len() > 128 {
            return Err(no_client());
        }
        let c = self.store.client(id).await?.ok_or_else(no_client)?;
        if p.user.is_admin {
            return Ok(c);
        }
        let Some(org) = &c.org_id else {
            return Err(no_client());
        };
        let caller = super::Caller::User(p.clone());
        self.authorize_resource(&caller, org, wanted, no_client, ctx, now)
            .await?;
        Ok(c)
    }

    fn apply_client_input(&self, c: &mut OAuthClient, input: ClientInput) -> Result<(), AuthError> {
        if let Some(name) = input.name {
            c.name = super::org::check_name(&name)?;
        }
        if let Some(uris) = input.redirect_uris {
            if uris.is_empty() || uris.len() > 10 {
                return Err(invalid("redirectUris lists 1 to 10 URIs"));
            }
            c.redirect_uris = uris
                .iter()
                .map(|u| check_redirect(u))
                .collect::<Result<_, _>>()?;
        }
        if let Some(uris) = input.post_logout_redirect_uris {
            if uris.len() > 10 {
                return Err(invalid("postLogoutRedirectUris lists at most 10 URIs"));
            }
            c.post_logout_redirect_uris = uris
                .iter()
                .map(|u| check_redirect(u))
                .collect::<Result<_, _>>()?;
        }
        if input.grant_types.is_some() || c.grant_types.is_empty() {
            c.grant_types = within("grant type", input.grant_types, GRANTS.iter().copied())?;
        }
        if input.scopes.is_some() || c.scopes.is_empty() {
            c.scopes = within("scope", input.scopes, SCOPES.iter().map(|(s, _)| *s))?;
        }
        if input.access_token_ttl.is_some() {
            c.access_ttl = ttl(input.access_token_ttl, ACCESS_TTL, "accessTokenTtl")?;
        }
        if input.refresh_token_ttl.is_some() {
            c.refresh_ttl = ttl(input.refresh_token_ttl, REFRESH_TTL, "refreshTokenTtl")?;
        }
        if let Some(jwks) = input.jwks {
            let usable = secure::jwt::Verifier::from_jwks(&jwks, "", "")
                .map(|v| v.key_count())
                .unwrap_or(0);
            if usable == 0 || jwks.to_string().len() > 16 * 1024 {
                return Err(invalid(
                    "jwks must be a JWKS ({\"keys\":[…]}) with at least one RS256, ES256 or EdDSA key with a kid",
                ));
            }
            c.jwks = Some(jwks.to_string());
        }
        if c.redirect_uris.is_empty() {
            return Err(invalid("redirectUris is required"));
        }
        Ok(())
    }

    /// `POST /api/oauth/clients`: the client, and its secret (shown once)
    /// unless it is public.
    pub async fn create_client(
        &self,
        p: &Principal,
        input: ClientInput,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(OAuthClient, Option<Secret<String>>), AuthError> {
        if input.name.is_none() {
            return Err(invalid("name is required"));
        }
        match (&input.org_id, p.user.is_admin) {
            (Some(org), true) => {
                self.store
                    .org(org)
                    .await?
                    .ok_or_else(|| invalid("orgId names no organization"))?;
            }
            // An organization's own applications, by those its roles allow.
            (Some(org), false) => {
                let caller = super::Caller::User(p.clone());
                self.authorize(&caller, org, perm::OAUTH_CLIENTS_MANAGE, ctx, now)
                    .await?;
            }
            (None, true) => {}
            (None, false) => {
                return Err(AuthError::Forbidden(
                    "only system administrators register clients of no organization; give orgId"
                        .into(),
                ))
            }
        }
        let signs = input.jwks.is_some();
        if signs && input.public == Some(true) {
            return Err(invalid(
                "a public client has no keys; leave out jwks or public",
            ));
        }
        let secret =
            (!input.public.unwrap_or(false) && !signs).then(|| token::generate(SECRET_PREFIX));
        let mut c = OAuthClient {
            id: format!("tcl_{}", token::random_uuid().replace('-', "")),
            org_id: input.org_id.clone(),
            name: String::new(),
            secret_hash: secret.as_ref().map(|s| s.digest.clone()),
            jwks: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            scopes: Vec::new(),
            access_ttl: None,
            refresh_ttl: None,
            created_by: Some(p.user.id.clone()),
            created_at: now,
            updated_at: now,
        };
        self.apply_client_input(&mut c, input)?;
        self.store.create_client(&c).await?;
        self.client_audit("oauth_client_created", p, &c, ctx, now)
            .await;
        Ok((c, secret.map(|s| s.plaintext)))
    }

    async fn client_audit(
        &self,
        action: &str,
        p: &Principal,
        c: &OAuthClient,
        ctx: &ClientInfo,
        now: i64,
    ) {
        let e = self
            .event(action, Outcome::Success, ctx, now)
            .actor(&p.user.id)
            .target(&c.id);
        self.record(
            e.details(serde_json::json!({"name": c.name, "redirect_uris": c.redirect_uris})),
        )
        .await;
    }

    /// The clients of `org` (those whose role may read them), or every
    /// client (system administrators, without `org`).
    pub async fn list_clients(
        &self,
        p: &Principal,
        org: Option<&str>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Vec<OAuthClient>, AuthError> {
        match org {
            None if p.user.is_admin => Ok(self.store.clients().await?),
            None => Err(invalid(
                "give orgId: the organization whose applications to list",
            )),
            Some(org) => {
                if !p.user.is_admin {
                    let caller = super::Caller::User(p.clone());
                    self.authorize(&caller, org, perm::OAUTH_CLIENTS_READ, ctx, now)
                        .await?;
                }
                Ok(self
                    .store
                    .clients()
                    .await?
                    .into_iter()
                    .filter(|c| c.org_id.as_deref() == Some(org))
                    .collect())
            }
        }
    }

    /// One client.
    pub async fn get_client(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<OAuthClient, AuthError> {
        self.client_for(p, id, perm::OAUTH_CLIENTS_READ, ctx, now)
            .await
    }

    /// `GET /api/oauth/clients/{id}/stats`.
    pub async fn client_stats(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<crate::repo::ClientStats, AuthError> {
        let c = self.get_client(p, id, ctx, now).await?;
        Ok(self.store.client_stats(&c.id, now).await?)
    }

    /// `PUT /api/oauth/clients/{id}`.
    pub async fn update_client(
        &self,
        p: &Principal,
        id: &str,
        input: ClientInput,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<OAuthClient, AuthError> {
        let mut c = self
            .client_for(p, id, perm::OAUTH_CLIENTS_MANAGE, ctx, now)
            .await?;
        if input.public.is_some() || input.org_id.is_some() {
            return Err(invalid("public and orgId are set at registration"));
        }
        if input.jwks.is_some() && c.jwks.is_none() {
            return Err(invalid(
                "jwks replaces the keys of a client registered with keys; this one has a secret or is public",
            ));
        }
        self.apply_client_input(&mut c, input)?;
        c.updated_at = now;
        self.store.update_client(&c).await?;
        self.client_audit("oauth_client_updated", p, &c, ctx, now)
            .await;
        Ok(c)
    }

    /// `DELETE /api/oauth/clients/{id}`: its sessions end with it.
    pub async fn delete_client(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let c = self
            .client_for(p, id, perm::OAUTH_CLIENTS_MANAGE, ctx, now)
            .await?;
        self.store.delete_client(id, now).await?;
        self.client_audit("oauth_client_deleted", p, &c, ctx, now)
            .await;
        Ok(())
    }

    /// `POST /api/oauth/clients/{id}/regenerate-secret`: the new secret,
    /// shown once; the old one stops working at once.
    pub async fn regenerate_client_secret(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(OAuthClient, Secret<String>), AuthError> {
        let mut c = self
            .client_for(p, id, perm::OAUTH_CLIENTS_MANAGE, ctx, now)
            .await?;
        if c.secret_hash.is_none() {
            return Err(invalid(
                "this client has no secret (it is public, or signs with its keys)",
            ));
        }
        let secret = token::generate(SECRET_PREFIX);
        c.secret_hash = Some(secret.digest);
        c.updated_at = now;
        self.store.update_client(&c).await?;
        self.client_audit("oauth_client_secret_regenerated", p, &c, ctx, now)
            .await;
        Ok((c, secret.plaintext))
    }

    /// The user's consents: (client id, client name, scopes, when).
    pub async fn my_consents(
        &self,
        p: &Principal,
    ) -> Result<Vec<(String, String, Vec<String>, i64)>, AuthError> {
        let mut out = Vec::new();
        for (client_id, scopes, at) in self.store.consents(&p.user.id).await? {
            let name = self
                .store
                .client(&client_id)
                .await?
                .map(|c| c.name)
                .unwrap_or_default();
            out.push((client_id, name, scopes, at));
        }
        Ok(out)
    }

    /// Withdraws the user's consent to a client; its sessions end.
    pub async fn revoke_my_consent(
        &self,
        p: &Principal,
        client_id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        if !self
            .store
            .revoke_consent(&p.user.id, client_id, now)
            .await?
        {
            return Err(AuthError::NotFound("no consent to that client".into()));
        }
        let e = self
            .event("oauth_consent_revoked", Outcome::Success, ctx, now)
            .actor(&p.user.id)
            .target(client_id);
        self.record(e).await;
        Ok(())
    }
}

/// What the account page shows.
#[derive(Debug)]
pub struct AccountView {
    /// Live sessions, Truxe's and applications'.
    pub sessions: Vec<Session>,
    /// Names of the applications those sessions belong to.
    pub client_names: std::collections::HashMap<String, String>,
    /// (client id, name, scopes, when).
    pub consents: Vec<(String, String, Vec<String>, i64)>,
    /// Two-step verification on.
    pub mfa_enabled: bool,
    /// Backup codes left.
    pub backup_codes_left: i64,
}

impl AuthService {
    /// The browser's sign-in as a principal of its Truxe session, for the
    /// account services that take one.
    async fn account_principal(&self, who: &BrowserSignIn) -> Result<Principal, AuthError> {
        let session = self
            .store
            .session(&who.session_id)
            .await?
            .ok_or_else(|| AuthError::Unauthenticated("the sign-in ended".into()))?;
        Ok(Principal {
            user: who.user.clone(),
            session,
            jti: String::new(),
        })
    }

    /// `GET /account`.
    pub async fn account_view(
        &self,
        who: &BrowserSignIn,
        now: i64,
    ) -> Result<AccountView, AuthError> {
        let p = self.account_principal(who).await?;
        let sessions = self.sessions(&p, now).await?;
        let mut client_names = std::collections::HashMap::new();
        for id in sessions.iter().filter_map(|s| s.client_id.as_ref()) {
            if !client_names.contains_key(id) {
                if let Some(c) = self.store.client(id).await? {
                    client_names.insert(id.clone(), c.name);
                }
            }
        }
        let (mfa_enabled, backup_codes_left) = self.mfa_status(&p).await?;
        Ok(AccountView {
            sessions,
            client_names,
            consents: self.my_consents(&p).await?,
            mfa_enabled,
            backup_codes_left,
        })
    }

    /// Ends one of the user's own sessions from the account page.
    pub async fn account_end_session(
        &self,
        who: &BrowserSignIn,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let p = self.account_principal(who).await?;
        self.end_session(&p, id, ctx, now).await
    }

    /// Withdraws a consent from the account page.
    pub async fn account_withdraw(
        &self,
        who: &BrowserSignIn,
        client_id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let p = self.account_principal(who).await?;
        self.revoke_my_consent(&p, client_id, ctx, now).await
    }
}

impl AuthService {
    /// The claims about `user` that `scopes` allow `client` (ID token and
    /// userinfo): profile and email, and with `organizations` every
    /// membership with its role, with `roles` the role and effective
    /// permissions in the client's own organization (none for a client of
    /// no organization, or a user outside it). Read when the token is
    /// issued, so a refresh carries what holds then.
    async fn user_claims(
        &self,
        client: &OAuthClient,
        user: &User,
        scopes: &[String],
    ) -> Result<serde_json::Map<String, serde_json::Value>, AuthError> {
        let mut m = profile(user, scopes);
        let asked = |name: &str| scopes.iter().any(|s| s == name);
        if asked("organizations") {
            let orgs = self.store.user_orgs(&user.id, None, CLAIMED_ORGS).await?;
            let list: Vec<_> = orgs
                .iter()
                .map(|(o, role)| {
                    serde_json::json!({"id": o.id, "slug": o.slug, "name": o.name, "role": role})
                })
                .collect();
            m.insert("organizations".into(), list.into());
        }
        if let (true, Some(org)) = (asked("roles"), &client.org_id) {
            if let Some(member) = self.store.membership(org, &user.id).await? {
                let roles = self.roles_of(org).await?;
                let held: Vec<String> = roles
                    .effective(&member.role)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                m.insert("org_id".into(), org.clone().into());
                m.insert("roles".into(), vec![member.role].into());
                m.insert("permissions".into(), held.into());
            }
        }
        Ok(m)
    }
}

/// The profile claims `scopes` allow.
fn profile(user: &User, scopes: &[String]) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    if scopes.iter().any(|s| s == "email") {
        m.insert("email".into(), user.email.clone().into());
        m.insert("email_verified".into(), user.email_verified.into());
    }
    if scopes.iter().any(|s| s == "profile") {
        if let Some(name) = user.metadata.get("name").and_then(|n| n.as_str()) {
            m.insert("name".into(), name.into());
        }
        m.insert("updated_at".into(), user.updated_at.into());
    }
    m
}
