//! Domain types: what the service hands out and the repositories store.

use serde::Serialize;

/// An account.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// UUID.
    pub id: String,
    /// Lower-cased email.
    pub email: String,
    /// Argon2id PHC string. Never serialized.
    pub password_hash: String,
    /// Whether the email was verified.
    pub email_verified: bool,
    /// `active` or `disabled`.
    pub status: String,
    /// May use admin endpoints.
    pub is_admin: bool,
    /// Free-form JSON object given at registration.
    pub metadata: serde_json::Value,
    /// Failed logins in the current window.
    pub failed_logins: i64,
    /// When the current failure window started.
    pub failed_since: Option<i64>,
    /// Locked until this time, if locked.
    pub locked_until: Option<i64>,
    /// Whether a second factor (TOTP) is required at login.
    pub mfa_enabled: bool,
    /// Sealed TOTP secret (base64), when MFA is on.
    pub mfa_secret: Option<String>,
    /// Sealed TOTP secret awaiting confirmation by `/auth/mfa/enable`.
    pub mfa_pending_secret: Option<String>,
    /// Last accepted TOTP time step (each code works once).
    pub mfa_last_step: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl User {
    /// A new active account with no failures and no second factor.
    pub fn new(
        email: String,
        password_hash: String,
        email_verified: bool,
        is_admin: bool,
        metadata: serde_json::Value,
        now: i64,
    ) -> User {
        User {
            id: secure::token::random_uuid(),
            email,
            password_hash,
            email_verified,
            status: "active".into(),
            is_admin,
            metadata,
            failed_logins: 0,
            failed_since: None,
            locked_until: None,
            mfa_enabled: false,
            mfa_secret: None,
            mfa_pending_secret: None,
            mfa_last_step: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// A login session: the family of its rotating refresh tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// UUID; the `sid` claim of its access tokens.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Last refresh.
    pub last_used_at: i64,
    /// When its refresh tokens stop working.
    pub expires_at: i64,
    /// Set when revoked.
    pub revoked_at: Option<i64>,
    /// Why it was revoked (`logout`, `refresh_token_reused`, …).
    pub revoke_reason: Option<String>,
    /// Client address at login.
    pub ip: Option<String>,
    /// Client user agent at login.
    pub user_agent: Option<String>,
    /// The organization the session acts in (`/auth/switch-org`).
    pub org_id: Option<String>,
    /// The OAuth client it was issued to; `None` for Truxe's own API (and
    /// for the browser session of the hosted pages).
    pub client_id: Option<String>,
}

impl Session {
    /// Not revoked and not expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Outcome of presenting a refresh token.
#[derive(Debug, Clone)]
pub enum RefreshUse {
    /// The token was unused and is now spent; its successor was added to
    /// the live session and the rotation recorded.
    Rotated {
        /// The session, as of this use.
        session: Box<Session>,
        /// Its user.
        user: Box<User>,
    },
    /// The token was already spent.
    AlreadyUsed {
        /// Its session.
        session_id: String,
        /// When it was spent (unix seconds).
        used_at: i64,
    },
    /// The token is spent now, but its session has ended: no successor.
    Ended,
    /// The token is spent now, but its account is gone or not active: no
    /// successor.
    Inactive,
    /// Unknown or expired.
    Invalid,
}

/// Time as RFC 3339 for API output.
pub fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The user as the API shows it (original Truxe field names).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    id: String,
    email: String,
    email_verified: bool,
    status: String,
    metadata: serde_json::Value,
    created_at: String,
    updated_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            id: u.id.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            status: u.status.clone(),
            metadata: u.metadata.clone(),
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// A session as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    id: String,
    created_at: String,
    last_used_at: String,
    expires_at: String,
    ip: Option<String>,
    user_agent: Option<String>,
    current: bool,
}

impl SessionView {
    /// View of `s`; `current` marks the caller's own session.
    pub fn new(s: &Session, current: bool) -> Self {
        SessionView {
            id: s.id.clone(),
            created_at: rfc3339(s.created_at),
            last_used_at: rfc3339(s.last_used_at),
            expires_at: rfc3339(s.expires_at),
            ip: s.ip.clone(),
            user_agent: s.user_agent.clone(),
            current,
        }
    }
}

/// An organization (tenant).
#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    /// UUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Unique, URL-safe name.
    pub slug: String,
    /// Parent in the hierarchy.
    pub parent_id: Option<String>,
    /// Free-form JSON object.
    pub metadata: serde_json::Value,
    /// The user who created it.
    pub created_by: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A user's role in an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct Membership {
    /// The organization.
    pub org_id: String,
    /// The member.
    pub user_id: String,
    /// Built-in or custom role name.
    pub role: String,
    /// When they joined (unix seconds).
    pub created_at: i64,
    /// Last role change.
    pub updated_at: i64,
}

/// An invitation to join an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    /// UUID.
    pub id: String,
    /// The organization.
    pub org_id: String,
    /// Lower-cased address it was sent to.
    pub email: String,
    /// Role on acceptance.
    pub role: String,
    /// Who sent it.
    pub invited_by: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Set once accepted.
    pub accepted_at: Option<i64>,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
}

/// An organization as the API shows it; `role` is the caller's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    id: String,
    name: String,
    slug: String,
    parent_id: Option<String>,
    metadata: serde_json::Value,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

impl OrgView {
    /// View of `o`, with the caller's role if given.
    pub fn new(o: &Organization, role: Option<&str>) -> Self {
        OrgView {
            id: o.id.clone(),
            name: o.name.clone(),
            slug: o.slug.clone(),
            parent_id: o.parent_id.clone(),
            metadata: o.metadata.clone(),
            created_at: rfc3339(o.created_at),
            updated_at: rfc3339(o.updated_at),
            role: role.map(str::to_owned),
        }
    }
}

/// A member as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    user_id: String,
    email: String,
    role: String,
    joined_at: String,
    updated_at: String,
}

impl MemberView {
    /// View of `m` whose user has `email`.
    pub fn new(m: &Membership, email: &str) -> Self {
        MemberView {
            user_id: m.user_id.clone(),
            email: email.to_owned(),
            role: m.role.clone(),
            joined_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
        }
    }
}

/// An invitation as the API shows it (never its token).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvitationView {
    id: String,
    organization_id: String,
    email: String,
    role: String,
    invited_by: Option<String>,
    created_at: String,
    expires_at: String,
    status: &'static str,
}

impl InvitationView {
    /// View of `i` at `now`.
    pub fn new(i: &Invitation, now: i64) -> Self {
        let status = if i.accepted_at.is_some() {
            "accepted"
        } else if i.revoked_at.is_some() {
            "revoked"
        } else if i.expires_at <= now {
            "expired"
        } else {
            "pending"
        };
        InvitationView {
            id: i.id.clone(),
            organization_id: i.org_id.clone(),
            email: i.email.clone(),
            role: i.role.clone(),
            invited_by: i.invited_by.clone(),
            created_at: rfc3339(i.created_at),
            expires_at: rfc3339(i.expires_at),
            status,
        }
    }
}

/// A machine identity of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccount {
    /// UUID; the client id for client credentials.
    pub id: String,
    /// The organization it acts in.
    pub org_id: String,
    /// Unique in the organization.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The most its keys and tokens may hold.
    pub permissions: Vec<String>,
    /// `active` or `disabled`.
    pub status: String,
    /// Who made it.
    pub created_by: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// An API key of a service account (never its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// The `<id>` of `truxe_sk_<env>_<id>_<secret>`.
    pub id: String,
    /// Its account.
    pub service_account_id: String,
    /// Label.
    pub name: String,
    /// `live` or `test`.
    pub environment: String,
    /// Hex SHA-256 of the whole key.
    pub secret_hash: String,
    /// Permissions asked for (narrowed to the account's at use).
    pub permissions: Vec<String>,
    /// Source networks allowed (empty: any).
    pub allowed_cidrs: Vec<String>,
    /// Rate-limit tier.
    pub rate_tier: String,
    /// Unix seconds, if it expires.
    pub expires_at: Option<i64>,
    /// Last use (recorded at most once a minute).
    pub last_used_at: Option<i64>,
    /// Address of the last use.
    pub last_used_ip: Option<String>,
    /// Set when revoked.
    pub revoked_at: Option<i64>,
    /// The key that replaced it by rotation.
    pub replaced_by: Option<String>,
    /// A rotated key works until then.
    pub grace_until: Option<i64>,
    /// Who made it.
    pub created_by: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

impl ApiKey {
    /// Usable at `now`: not revoked, not expired, and if rotated, in its grace period.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none()
            && self.expires_at.is_none_or(|e| e > now)
            && self.grace_until.is_none_or(|g| g > now)
    }

    /// The key's public prefix, `truxe_sk_<env>_<id>`, safe to show and log.
    pub fn prefix(&self) -> String {
        format!("truxe_sk_{}_{}", self.environment, self.id)
    }
}

/// A service account as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountView {
    id: String,
    client_id: String,
    organization_id: String,
    name: String,
    description: String,
    permissions: Vec<String>,
    status: String,
    created_at: String,
    updated_at: String,
}

impl From<&ServiceAccount> for ServiceAccountView {
    fn from(a: &ServiceAccount) -> Self {
        ServiceAccountView {
            id: a.id.clone(),
            client_id: a.id.clone(),
            organization_id: a.org_id.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            permissions: a.permissions.clone(),
            status: a.status.clone(),
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// An API key as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    id: String,
    prefix: String,
    service_account_id: String,
    name: String,
    environment: String,
    permissions: Vec<String>,
    allowed_cidrs: Vec<String>,
    rate_limit_tier: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    last_used_ip: Option<String>,
    replaced_by: Option<String>,
    grace_until: Option<String>,
    status: &'static str,
    created_at: String,
}

impl ApiKeyView {
    /// View of `k` at `now`.
    pub fn new(k: &ApiKey, now: i64) -> Self {
        let status = if k.revoked_at.is_some() {
            "revoked"
        } else if k.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else if k.grace_until.is_some_and(|g| g <= now) {
            "rotated"
        } else if k.grace_until.is_some() {
            "rotating"
        } else {
            "active"
        };
        ApiKeyView {
            id: k.id.clone(),
            prefix: k.prefix(),
            service_account_id: k.service_account_id.clone(),
            name: k.name.clone(),
            environment: k.environment.clone(),
            permissions: k.permissions.clone(),
            allowed_cidrs: k.allowed_cidrs.clone(),
            rate_limit_tier: k.rate_tier.clone(),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            last_used_ip: k.last_used_ip.clone(),
            replaced_by: k.replaced_by.clone(),
            grace_until: k.grace_until.map(rfc3339),
            status,
            created_at: rfc3339(k.created_at),
        }
    }
}

/// A webhook endpoint of an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    /// UUID.
    pub id: String,
    /// The organization whose events it receives.
    pub org_id: String,
    /// Destination (checked against the SSRF guard).
    pub url: String,
    /// What it is for.
    pub description: String,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// The signing secret, sealed.
    pub secret_sealed: String,
    /// The previous secret during a rotation, sealed.
    pub previous_secret_sealed: Option<String>,
    /// Until when the previous secret is also used.
    pub previous_secret_until: Option<i64>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// Who made it.
    pub created_by: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One event for one endpoint, queued until delivered or dead.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// UUID; `X-Truxe-Delivery`.
    pub id: String,
    /// Destination endpoint.
    pub endpoint_id: String,
    /// Its organization.
    pub org_id: String,
    /// Event type.
    pub event: String,
    /// Event id (the same for every endpoint of one event).
    pub event_id: String,
    /// The exact JSON body sent.
    pub body: String,
    /// `pending`, `retrying`, `delivering`, `succeeded` or `dead`.
    pub status: String,
    /// Attempts in the current schedule.
    pub attempts: i64,
    /// Attempts ever made.
    pub total_attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: i64,
    /// Response status of the last attempt.
    pub last_status_code: Option<i64>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// Duration of the last attempt.
    pub last_duration_ms: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// When it succeeded.
    pub delivered_at: Option<i64>,
}

/// One delivery attempt, as logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1, 2, … over the delivery's life.
    pub attempt: i64,
    /// Unix seconds.
    pub at: i64,
    /// HTTP status, if a response came.
    pub status_code: Option<i64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

/// A webhook endpoint as the API shows it (never its secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    id: String,
    organization_id: String,
    url: String,
    description: String,
    events: Vec<String>,
    enabled: bool,
    secret_rotating_until: Option<String>,
    created_at: String,
    updated_at: String,
}

impl EndpointView {
    /// View of `e` at `now`.
    pub fn new(e: &WebhookEndpoint, now: i64) -> Self {
        EndpointView {
            id: e.id.clone(),
            organization_id: e.org_id.clone(),
            url: e.url.clone(),
            description: e.description.clone(),
            events: e.events.clone(),
            enabled: e.enabled,
            secret_rotating_until: e.previous_secret_until.filter(|t| *t > now).map(rfc3339),
            created_at: rfc3339(e.created_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

/// A delivery as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    id: String,
    endpoint_id: String,
    organization_id: String,
    event: String,
    event_id: String,
    status: String,
    attempts: i64,
    next_attempt_at: Option<String>,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    last_duration_ms: Option<i64>,
    created_at: String,
    delivered_at: Option<String>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        let waiting = d.status == "pending" || d.status == "retrying";
        DeliveryView {
            id: d.id.clone(),
            endpoint_id: d.endpoint_id.clone(),
            organization_id: d.org_id.clone(),
            event: d.event.clone(),
            event_id: d.event_id.clone(),
            status: d.status.clone(),
            attempts: d.total_attempts,
            next_attempt_at: waiting.then(|| rfc3339(d.next_attempt_at)),
            last_status_code: d.last_status_code,
            last_error: d.last_error.clone(),
            last_duration_ms: d.last_duration_ms,
            created_at: rfc3339(d.created_at),
            delivered_at: d.delivered_at.map(rfc3339),
        }
    }
}

/// A social sign-in between the redirect to the provider and its callback.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthState {
    /// SHA-256 of the state id.
    pub id_hash: String,
    /// Provider id.
    pub provider: String,
    /// The PKCE verifier, sealed.
    pub verifier_sealed: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// SHA-256 of the browser-binding cookie.
    pub binding_hash: String,
    /// Allow-listed application URL to return to.
    pub redirect_uri: Option<String>,
    /// `json` or `cookie`.
    pub mode: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A provider identity linked to a user.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthIdentity {
    /// UUID.
    pub id: String,
    /// The Truxe user.
    pub user_id: String,
    /// Provider id.
    pub provider: String,
    /// The provider's id for the person.
    pub subject: String,
    /// The address the provider gave at the last sign-in.
    pub email: String,
    /// The provider's tokens (JSON), sealed.
    pub tokens_sealed: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Unix seconds.
    pub last_login_at: i64,
}

/// A linked identity as its user (or an administrator) sees it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    /// UUID.
    pub id: String,
    /// Provider id.
    pub provider: String,
    /// The provider's id for the person.
    pub subject: String,
    /// Address at the last sign-in.
    pub email: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub last_login_at: String,
}

impl From<&OAuthIdentity> for IdentityView {
    fn from(i: &OAuthIdentity) -> Self {
        IdentityView {
            id: i.id.clone(),
            provider: i.provider.clone(),
            subject: i.subject.clone(),
            email: i.email.clone(),
            created_at: rfc3339(i.created_at),
            last_login_at: rfc3339(i.last_login_at),
        }
    }
}

/// An application registered to sign users in through Truxe (an OpenID
/// Connect relying party).
#[derive(Debug, Clone)]
pub struct OAuthClient {
    /// The `client_id`.
    pub id: String,
    /// The organization it belongs to, if any.
    pub org_id: Option<String>,
    /// Shown on the consent page.
    pub name: String,
    /// Hex SHA-256 of its secret; `None` for a public client (PKCE only)
    /// and for one that signs its requests (`jwks`).
    pub secret_hash: Option<String>,
    /// Its public keys (a JWKS document) for `private_key_jwt`.
    pub jwks: Option<String>,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may return to.
    pub post_logout_redirect_uris: Vec<String>,
    /// Grants it may use.
    pub grant_types: Vec<String>,
    /// Scopes it may ask for.
    pub scopes: Vec<String>,
    /// Access and ID token lifetime (seconds), if not the server's.
    pub access_ttl: Option<i64>,
    /// Refresh token lifetime (seconds), if not the server's.
    pub refresh_ttl: Option<i64>,
    /// Who registered it.
    pub created_by: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

impl OAuthClient {
    /// Neither a secret nor keys: a browser or mobile app, held to PKCE.
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none() && self.jwks.is_none()
    }

    /// How it authenticates at the token endpoint.
    pub fn auth_method(&self) -> &'static str {
        match (&self.secret_hash, &self.jwks) {
            (Some(_), _) => "client_secret_basic",
            (None, Some(_)) => "private_key_jwt",
            (None, None) => "none",
        }
    }
}

/// An authorization code in flight: what its exchange will issue.
#[derive(Debug, Clone)]
pub struct AuthCode {
    /// SHA-256 of the code.
    pub code_hash: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The user who authorized.
    pub user_id: String,
    /// The redirect URI of the request (the exchange must repeat it).
    pub redirect_uri: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The request's `nonce`, for the ID token.
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// When the user authenticated (unix seconds).
    pub auth_time: i64,
    /// How: `pwd`, `otp`, `hwk`.
    pub amr: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
}

/// What presenting an authorization code found.
#[derive(Debug)]
pub enum CodeUse {
    /// Unused and unexpired: now spent.
    Fresh(Box<AuthCode>),
    /// Spent before: the session its first exchange started, if any.
    Replayed {
        /// The session to end.
        session_id: Option<String>,
    },
    /// Unknown or expired.
    Invalid,
}

/// A passkey (WebAuthn credential) of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct PasskeyRecord {
    /// Random id (what the account page and API name it by).
    pub id: String,
    /// Its owner.
    pub user_id: String,
    /// The authenticator's credential id, base64url.
    pub credential_id: String,
    /// The owner's name for it ("laptop", "phone").
    pub name: String,
    /// The credential as webauthn-rs keeps it (JSON): public key, counter,
    /// backup state.
    pub passkey: String,
    /// It may be synced to other devices.
    pub backup_eligible: bool,
    /// It is synced (backed up) now.
    pub backed_up: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of its last sign-in.
    pub last_used_at: Option<i64>,
}

/// The server's half of a WebAuthn ceremony in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceremony {
    /// Random id, handed to the browser with the options.
    pub id: String,
    /// Whose ceremony it is (`None`: a sign-in for an address with no account).
    pub user_id: Option<String>,
    /// `register`, `login` or `mfa`.
    pub purpose: String,
    /// For `mfa`: the login challenge it answers.
    pub bound_to: Option<String>,
    /// webauthn-rs's state (JSON), with the challenge.
    pub state: String,
    /// Unix seconds.
    pub expires_at: i64,
}
