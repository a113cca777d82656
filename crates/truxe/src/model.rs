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
}

impl Session {
    /// Not revoked and not expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

/// Outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// The token was unused and is now spent; rotate within this session.
    Fresh {
        /// Its session.
        session_id: String,
    },
    /// The token was already spent.
    AlreadyUsed {
        /// Its session.
        session_id: String,
        /// When it was spent (unix seconds).
        used_at: i64,
    },
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
