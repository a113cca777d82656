//! Domain services: plain Rust in, plain Rust out, `now` as an argument.
//! No HTTP types and no SQL here.

mod account;
mod admin;
mod auth;
pub mod console;
mod group;
mod import;
mod keys;
mod letters;
mod machine;
pub mod mail;
mod mfa;
pub mod oidc;
mod org;
pub mod passkeys;
pub mod policy;
mod social;
mod vault;
mod webhooks;

pub use admin::UserDetail;
pub use auth::{AuthService, Claims, ClientInfo, LoginOutcome, Principal, Tokens};
pub use import::{ImportOptions, ImportReport, KindReport, Problem, Progress};
pub use keys::{KeyManager, Published};
pub use letters::{escape, Brand, Letter};
pub use machine::{AccountInput, Caller, KeyInput, ServiceCaller, API_KEY_PREFIX, RATE_TIERS};
pub use mfa::{MfaSetup, SecondFactor};
pub use org::{Grant, Hierarchy, OrgClaims, OrgInput, RoleInput};
pub use social::{Callback, CallbackParams, Started, BINDING_COOKIE, PAGE_MODE};
pub use vault::{ColumnReport, Vaults};
pub use webhooks::{
    EndpointInput, ALIASES as WEBHOOK_ALIASES, NEVER_SENT as WEBHOOK_NEVER_SENT, TEST_EVENT,
    WEBHOOK_EVENTS,
};

use crate::repo::RepoError;

/// Why an auth operation failed. Each variant has a stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Bad input; the message says what.
    #[error("{0}")]
    Invalid(String),
    /// The password breaks the policy; every unmet rule is listed.
    #[error("password {}", .0.join("; "))]
    WeakPassword(Vec<String>),
    /// Registration is closed.
    #[error("registration is disabled")]
    SignupDisabled,
    /// The email is registered already.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Unknown email or wrong password (deliberately the same).
    #[error("email or password is wrong")]
    InvalidCredentials,
    /// Too many failures; locked until the given unix time.
    #[error("account is locked after too many failed logins")]
    Locked {
        /// Unix seconds.
        unlock_at: i64,
    },
    /// The account is disabled.
    #[error("account is disabled")]
    Disabled,
    /// Missing, malformed, expired or otherwise unacceptable token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A spent refresh token came back: the session was revoked.
    #[error("refresh token was already used; the session has been revoked")]
    RefreshReused,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (for this caller).
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with the current state; `code` says how.
    #[error("{message}")]
    Conflict {
        /// Stable snake_case code.
        code: &'static str,
        /// Human sentence.
        message: String,
    },
    /// A dependency is not available (e.g. mail delivery); the message says which.
    #[error("{0}")]
    Unavailable(String),
    /// Storage or crypto failed.
    #[error("internal error")]
    Internal(String),
}

impl AuthError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Invalid(_) => "validation_error",
            AuthError::WeakPassword(_) => "weak_password",
            AuthError::SignupDisabled => "signup_disabled",
            AuthError::EmailTaken => "email_taken",
            AuthError::InvalidCredentials => "invalid_credentials",
            AuthError::Locked { .. } => "account_locked",
            AuthError::Disabled => "account_disabled",
            AuthError::Unauthenticated(_) => "unauthorized",
            AuthError::RefreshReused => "refresh_token_reused",
            AuthError::Forbidden(_) => "forbidden",
            AuthError::NotFound(_) => "not_found",
            AuthError::Conflict { code, .. } => code,
            AuthError::Unavailable(_) => "unavailable",
            AuthError::Internal(_) => "internal",
        }
    }
}

/// Our own values failing to serialize: a bug, never the caller's input
/// (input is parsed with its own `Invalid` errors).
impl From<serde_json::Error> for AuthError {
    fn from(e: serde_json::Error) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<RepoError> for AuthError {
    fn from(e: RepoError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<secure::Error> for AuthError {
    fn from(e: secure::Error) -> Self {
        AuthError::Internal(e.to_string())
    }
}
