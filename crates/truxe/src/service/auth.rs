//! Accounts and sessions: registration, login with lockout, refresh-token
//! rotation with reuse detection, revocation, session limits.
//!
//! A session is the family of its refresh tokens. Access tokens carry the
//! session id (`sid`), and every authenticated request checks that the
//! session is live, so ending a session stops its access tokens at once.

use std::sync::Arc;

use secure::audit::{AuditEvent, Outcome};
use secure::password::PasswordHasher;
use secure::{token, Secret};
use serde::{Deserialize, Serialize};

use super::group::RefreshGroups;
use super::letters::Letter;
use super::mail::Mailer;
use super::vault::Vaults;
use super::webhooks::MemberEndpoints;
use super::{AuthError, KeyManager, OrgClaims};
use crate::config::{Config, MAX_PASSWORD_LEN};
use crate::model::{RefreshUse, Session, User};
use crate::repo::{RepoError, Rotation, SessionsBefore, SignInRead, Store};

/// Refresh tokens are recognisable in logs and secret scanners by this prefix.
pub(super) const REFRESH_PREFIX: &str = "trt_";

/// Claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires.
    pub exp: i64,
    /// Token id.
    pub jti: String,
    /// Session id.
    pub sid: String,
    /// Email.
    pub email: String,
    /// Whether the email is verified.
    pub email_verified: bool,
    /// Account roles: `user`, plus `admin` for administrators. Services
    /// that trust Truxe (Torua) map these to their own permissions.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The organization the session acts in, with the caller's role there
    /// and that role's effective permissions (absent outside an organization).
    #[serde(flatten)]
    pub org: Option<OrgClaims>,
}

/// A token pair as returned to clients.
#[derive(Debug, Serialize)]
pub struct Tokens {
    /// JWT.
    pub access_token: String,
    /// Opaque, single-use.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// The session (for cookie mode's CSRF token); not part of the JSON.
    #[serde(skip)]
    pub session_id: String,
}

/// Who is calling, established from a verified access token and a live session.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// The session of the token.
    pub session: Session,
    /// The token's id.
    pub jti: String,
}

/// Where a request came from, recorded on sessions and audit events.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// Client address.
    pub ip: Option<String>,
    /// User agent (truncated).
    pub user_agent: Option<String>,
    /// `X-Request-ID` of the request.
    pub request_id: Option<String>,
}

/// The user agent a session records: its first 256 characters.
fn user_agent(client: &ClientInfo) -> Option<String> {
    client
        .user_agent
        .as_ref()
        .map(|ua| ua.chars().take(256).collect())
}

/// How a session opens ([`AuthService::open_session`]).
pub(super) struct Opening {
    /// The OAuth client it is for, if any.
    pub client_id: Option<String>,
    /// Its lifetime in seconds.
    pub ttl: i64,
    /// The sign-in that opens it, recorded with it.
    pub started: Option<AuditEvent>,
    /// The user's sessions so far, if read already.
    pub before: Option<SessionsBefore>,
}

/// The account and session service.
pub struct AuthService {
    pub(super) store: Arc<dyn Store>,
    pub(super) hasher: PasswordHasher,
    pub(super) keys: Arc<KeyManager>,
    pub(super) cfg: Config,
    /// Keys for secrets at rest.
    pub(super) vaults: Vaults,
    /// Social login providers.
    pub(super) providers: Arc<crate::oauth::Providers>,
    /// Wakes the webhook dispatcher when deliveries are queued.
    pub(super) webhook_wake: Arc<tokio::sync::Notify>,
    /// Sends emailed links.
    pub(super) mailer: Arc<dyn Mailer>,
    /// Commits refresh rotations in groups (started on first use, so the
    /// service can be built outside a runtime).
    refresh_groups: std::sync::OnceLock<RefreshGroups>,
    /// The WebAuthn relying party, when the public URL names a domain.
    pub(super) webauthn: Option<Box<webauthn_rs::Webauthn>>,
    /// Keys the stand-in passkey ids of addresses without passkeys, so they
    /// stay the same between asks (`COOKIE_SECRET`, else per process).
    pub(super) decoy_key: Vec<u8>,
}

/// What a correct password leads to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Signed in.
    Authenticated(Box<User>, Tokens),
    /// A second factor is required: answer the challenge.
    MfaRequired {
        /// Pass to `POST /auth/mfa/challenge/verify`.
        challenge_id: String,
    },
}

pub(super) fn normalize_email(email: &str) -> Result<String, AuthError> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.matches('@').count() == 1;
    if valid {
        Ok(e)
    } else {
        Err(AuthError::Invalid("email is not a valid address".into()))
    }
}

impl AuthService {
    /// A service over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        hasher: PasswordHasher,
        keys: Arc<KeyManager>,
        vaults: Vaults,
        providers: Arc<crate::oauth::Providers>,
        mailer: Arc<dyn Mailer>,
        cfg: Config,
    ) -> Self {
        let webauthn = match super::passkeys::relying_party(&cfg.public_url, &cfg.brand.name) {
            Ok(rp) => Some(Box::new(rp)),
            Err(why) => {
                tracing::debug!(%why, "passkeys off");
                None
            }
        };
        let decoy_key = match &cfg.cookie_secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => token::generate("").plaintext.expose().as_bytes().to_vec(),
        };
        AuthService {
            webauthn,
            decoy_key,
            store,
            hasher,
            keys,
            cfg,
            vaults,
            providers,
            webhook_wake: Arc::new(tokio::sync::Notify::new()),
            mailer,
            refresh_groups: std::sync::OnceLock::new(),
        }
    }

    /// Whether anyone may create an account.
    pub fn signup_enabled(&self) -> bool {
        self.cfg.enable_signup
    }

    /// The operator's brand (mail and hosted pages).
    pub fn brand(&self) -> &super::Brand {
        &self.cfg.brand
    }

    /// The key manager (for JWKS).
    pub fn keys(&self) -> &Arc<KeyManager> {
        &self.keys
    }

    /// Whether storage answers.
    pub async fn ready(&self) -> bool {
        self.store.ping().await
    }

    /// An audit event carrying the request's context.
    pub fn event(&self, action: &str, outcome: Outcome, ctx: &ClientInfo, now: i64) -> AuditEvent {
        let mut e = AuditEvent::new(action, outcome, now.saturating_mul(1000));
        e.ip = ctx.ip.clone();
        e.user_agent = ctx.user_agent.clone();
        e.request_id = ctx.request_id.clone();
        e
    }

    /// Records that `actor` did `action` to `target`, successfully.
    pub(super) async fn actor_event(
        &self,
        action: &str,
        actor: &str,
        target: &str,
        details: serde_json::Value,
        ctx: &ClientInfo,
        now: i64,
    ) {
        let e = self
            .event(action, Outcome::Success, ctx, now)
            .actor(actor)
            .target(target);
        self.record(e.details(details)).await;
    }

    /// [`Self::actor_event`] for caller `c`.
    pub(super) async fn caller_event(
        &self,
        action: &str,
        c: &super::Caller,
        target: &str,
        details: serde_json::Value,
        ctx: &ClientInfo,
        now: i64,
    ) {
        self.actor_event(action, &c.actor(), target, details, ctx, now)
            .await;
    }

    /// Records an audit event and queues the webhook deliveries it causes.
    /// A failed write is logged, not returned: the action itself already
    /// happened and is also in the service log.
    pub async fn record(&self, e: AuditEvent) {
        if let Err(err) = self.store.record(&e).await {
            tracing::error!(error = %err, action = %e.action, "audit event not recorded");
        }
        self.queue_webhooks(&e, None).await;
    }

    /// Queues the webhook deliveries of a recorded event (`known`: the
    /// endpoints of its user, if read already); a failure is logged, not
    /// returned: the action it reports has happened.
    pub(super) async fn queue_webhooks(&self, e: &AuditEvent, known: Option<MemberEndpoints<'_>>) {
        if let Err(err) = self.fan_out(e, known).await {
            tracing::error!(error = %err, action = %e.action, "webhook deliveries not queued");
        }
    }

    /// Mails a notice in the background: it must neither fail nor slow the
    /// action it reports. Without a way to send mail it is skipped; a
    /// failed delivery is logged.
    pub(super) fn notify(&self, to: &str, letter: Letter<'_>, now: i64) {
        if !self.mailer.delivers() {
            return;
        }
        let mail = letter.mail(&self.cfg.brand, to, now.saturating_mul(1000));
        let mailer = self.mailer.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&mail).await {
                tracing::warn!(error = %e, subject = %mail.subject, "notice not mailed");
            }
        });
    }

    /// Deletes the sessions that expired longer ago than
    /// `TRUXE_SESSION_RETENTION`, with their refresh tokens (nothing when
    /// it is `off`), and returns how many. Small batches, each its own
    /// short write with a pause after it, so sign-ins and refreshes go on
    /// between them. Audited as `sessions_purged` by `scheduler`.
    pub async fn purge_sessions(&self, now: i64) -> Result<u64, AuthError> {
        const BATCH: u32 = 256;
        let Some(retention) = self.cfg.session_retention else {
            return Ok(0);
        };
        let before = now.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
        let mut purged = 0;
        loop {
            let n = self.store.purge_sessions(before, BATCH).await?;
            purged += n;
            if n < u64::from(BATCH) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if purged > 0 {
            let e = AuditEvent::new(
                "sessions_purged",
                Outcome::Success,
                now.saturating_mul(1000),
            )
            .actor("scheduler")
            .details(serde_json::json!({"sessions": purged, "expired_before": before}));
            self.record(e).await;
        }
        Ok(purged)
    }

    /// Runs [`AuthService::purge_sessions`] every `every`.
    pub async fn purge_sessions_every(self: Arc<Self>, every: std::time::Duration) {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = self.purge_sessions(crate::http::now()).await {
                tracing::warn!(error = %e, "expired sessions not purged");
            }
        }
    }

    /// Keeps the key ring current every `every`: picks up rotations made
    /// with `truxe keys`, rotates on schedule (audited), retires old keys.
    pub async fn watch_keys(self: Arc<Self>, every: std::time::Duration) {
        loop {
            tokio::time::sleep(every).await;
            let keys = self.keys.clone();
            let rotated = tokio::task::spawn_blocking(move || keys.refresh())
                .await
                .ok()
                .flatten();
            if let Some((old, new)) = rotated {
                let mut e = AuditEvent::new(
                    "key_rotated",
                    Outcome::Success,
                    crate::http::now().saturating_mul(1000),
                );
                e = e
                    .actor("scheduler")
                    .target(new)
                    .details(serde_json::json!({"previous": old}));
                self.record(e).await;
            }
        }
    }

    /// Creates an account (no session). Used by registration and the CLI.
    pub async fn create_user(
        &self,
        email: &str,
        password: Secret<String>,
        metadata: serde_json::Value,
        admin: bool,
        now: i64,
    ) -> Result<User, AuthError> {
        let email = normalize_email(email)?;
        let problems = self.cfg.password.violations(password.expose());
        if !problems.is_empty() {
            return Err(AuthError::WeakPassword(problems));
        }
        if !metadata.is_object() {
            return Err(AuthError::Invalid("metadata must be a JSON object".into()));
        }
        if metadata.to_string().len() > 16 * 1024 {
            return Err(AuthError::Invalid("metadata must be at most 16 KiB".into()));
        }
        let user = User::new(
            email,
            self.hasher.hash(password).await?,
            false,
            admin,
            metadata,
            now,
        );
        match self.store.create_user(&user).await {
            Err(RepoError::Conflict) => Err(AuthError::EmailTaken),
            other => other.map(|()| user).map_err(Into::into),
        }
    }

    /// `POST /api/auth/register`: account plus a first session.
    pub async fn register(
        &self,
        email: &str,
        password: Secret<String>,
        metadata: Option<serde_json::Value>,
        client: ClientInfo,
        now: i64,
    ) -> Result<(User, Tokens), AuthError> {
        if !self.cfg.enable_signup {
            return Err(AuthError::SignupDisabled);
        }
        let user = self
            .create_user(
                email,
                password,
                metadata.unwrap_or_else(|| serde_json::json!({})),
                false,
                now,
            )
            .await?;
        let e = self
            .event("register", Outcome::Success, &client, now)
            .actor(&user.id);
        let tokens = self.start_session(&user, client, now, e, None).await?;
        tracing::info!(user_id = %user.id, "user registered");
        if self.cfg.mail_welcome {
            self.notify(&user.email, Letter::Welcome, now);
        }
        Ok((user, tokens))
    }

    /// Counts a failed proof of a credential (a password, a second-factor
    /// code) toward the account's lockout, and locks it at the threshold.
    pub(super) async fn count_failure(
        &self,
        user_id: &str,
        client: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let window = self.cfg.lockout_duration.as_secs() as i64;
        let count = self
            .store
            .record_failure(
                user_id,
                now,
                now - window,
                self.cfg.lockout_threshold,
                now + window,
            )
            .await?;
        if count >= self.cfg.lockout_threshold {
            tracing::warn!(user_id = %user_id, "account locked after repeated failed attempts");
            let e = self
                .event("account_locked", Outcome::Success, client, now)
                .target(user_id);
            self.record(e.details(serde_json::json!({"until": now + window})))
                .await;
            if let Some(u) = self.store.user_by_id(user_id).await? {
                let minutes = (window + 59) / 60;
                self.notify(&u.email, Letter::AccountLocked { minutes }, now);
            }
        }
        Ok(())
    }

    /// `POST /api/auth/login`. The password is always checked first (against
    /// a dummy hash for unknown emails), so a lock is revealed only to whoever
    /// knows the password, and failures are counted only after a real check.
    pub async fn login(
        &self,
        email: &str,
        password: Secret<String>,
        client: ClientInfo,
        now: i64,
    ) -> Result<LoginOutcome, AuthError> {
        if password.expose().len() > MAX_PASSWORD_LEN {
            return Err(AuthError::InvalidCredentials);
        }
        let agent = user_agent(&client);
        let read = match normalize_email(email) {
            Ok(e) => {
                let limit = self.cfg.max_sessions;
                let agent = agent.as_deref();
                self.store.sign_in_read(&e, agent, limit, now).await?
            }
            Err(_) => None,
        };
        let verified = self
            .hasher
            .verify(
                password.clone(),
                read.as_ref().map(|r| r.user.password_hash.clone()),
            )
            .await?;
        let Some(SignInRead {
            user,
            has_passkeys,
            sessions,
        }) = read
        else {
            let e = self.event("login", Outcome::Failure, &client, now);
            self.record(e.details(serde_json::json!({"reason": "unknown_email"})))
                .await;
            return Err(AuthError::InvalidCredentials);
        };
        let locked = user.locked_until.filter(|t| *t > now);
        if !verified.ok {
            let e = self
                .event("login", Outcome::Failure, &client, now)
                .actor(&user.id);
            self.record(e.details(serde_json::json!({"reason": "wrong_password"})))
                .await;
            if locked.is_none() {
                self.count_failure(&user.id, &client, now).await?;
            }
            return Err(AuthError::InvalidCredentials);
        }
        if let Some(unlock_at) = locked {
            let e = self
                .event("login", Outcome::Denied, &client, now)
                .actor(&user.id);
            self.record(e.details(serde_json::json!({"reason": "locked"})))
                .await;
            return Err(AuthError::Locked { unlock_at });
        }
        if user.status != "active" {
            let e = self
                .event("login", Outcome::Denied, &client, now)
                .actor(&user.id);
            self.record(e.details(serde_json::json!({"reason": "disabled"})))
                .await;
            return Err(AuthError::Disabled);
        }
        if user.failed_logins > 0 || user.locked_until.is_some() {
            self.store.clear_failures(&user.id, now).await?;
        }
        if verified.needs_rehash {
            let hash = self.hasher.hash(password).await?;
            self.store.set_password_hash(&user.id, &hash, now).await?;
            tracing::info!(user_id = %user.id, "password rehashed with current parameters");
        }
        if super::passkeys::second_factor(&user, has_passkeys) {
            let challenge_id = self.start_challenge(&user, &client, now).await?;
            return Ok(LoginOutcome::MfaRequired { challenge_id });
        }
        let e = self
            .event("login", Outcome::Success, &client, now)
            .actor(&user.id);
        let tokens = self.start_session(&user, client, now, e, sessions).await?;
        Ok(LoginOutcome::Authenticated(Box::new(user), tokens))
    }

    /// A new session of `user` and its tokens; `started` (the sign-in that
    /// opened it) is recorded with the session, in one commit. `before`:
    /// the user's sessions, if read already.
    pub(super) async fn start_session(
        &self,
        user: &User,
        client: ClientInfo,
        now: i64,
        started: AuditEvent,
        before: Option<SessionsBefore>,
    ) -> Result<Tokens, AuthError> {
        let ttl = self.cfg.refresh_ttl.as_secs() as i64;
        let opening = Opening {
            client_id: None,
            ttl,
            started: Some(started),
            before,
        };
        let (sid, refresh) = self.open_session(user, client, opening, now).await?;
        self.tokens(user, &sid, refresh, None, now)
    }

    /// A new session of `user`: its id and first refresh token. The
    /// opening's event and a new device's notice are recorded in the
    /// session's commit.
    pub(super) async fn open_session(
        &self,
        user: &User,
        client: ClientInfo,
        opening: Opening,
        now: i64,
    ) -> Result<(String, Secret<String>), AuthError> {
        let Opening {
            client_id,
            ttl,
            started,
            before,
        } = opening;
        let mut events: Vec<AuditEvent> = started.into_iter().collect();
        let user_agent = user_agent(&client);
        // Keep at most max_sessions live: end the oldest to make room.
        let before = match before {
            Some(before) => before,
            None => {
                let limit = self.cfg.max_sessions;
                let agent = user_agent.as_deref();
                self.store
                    .before_new_session(&user.id, agent, limit, now)
                    .await?
            }
        };
        for id in &before.to_end {
            self.store.revoke_session(id, "session_limit", now).await?;
        }
        // A new device: the account has had sessions, none from this user
        // agent (the original Truxe's `security.new_device_login`).
        if before.any && !before.from_agent {
            let e = self.event("new_device_login", Outcome::Success, &client, now);
            events.push(e.actor(&user.id).details(serde_json::json!({
                "user_agent": user_agent,
                "ip": client.ip,
            })));
            let device = Letter::NewDevice {
                user_agent: user_agent.as_deref().unwrap_or("an unnamed client"),
                ip: client.ip.as_deref().unwrap_or("address unknown"),
            };
            self.notify(&user.email, device, now);
        }
        let refresh = token::generate(REFRESH_PREFIX);
        let expires = now + ttl;
        let session = Session {
            id: token::random_uuid(),
            user_id: user.id.clone(),
            created_at: now,
            last_used_at: now,
            expires_at: expires,
            revoked_at: None,
            revoke_reason: None,
            ip: client.ip,
            user_agent,
            org_id: None,
            client_id,
        };
        let endpoints = self
            .store
            .create_session(&session, &refresh.digest, expires, &events)
            .await?;
        let known = MemberEndpoints {
            user: &user.id,
            endpoints: &endpoints,
        };
        for e in &events {
            self.queue_webhooks(e, Some(known)).await;
        }
        Ok((session.id, refresh.plaintext))
    }

    pub(super) fn tokens(
        &self,
        user: &User,
        sid: &str,
        refresh: Secret<String>,
        org: Option<OrgClaims>,
        now: i64,
    ) -> Result<Tokens, AuthError> {
        let ttl = self.cfg.access_ttl.as_secs();
        let claims = Claims {
            iss: self.cfg.issuer.clone(),
            aud: self.cfg.audience.clone(),
            sub: user.id.clone(),
            iat: now,
            nbf: now,
            exp: now + ttl as i64,
            jti: token::random_uuid(),
            sid: sid.to_owned(),
            email: user.email.clone(),
            email_verified: user.email_verified,
            roles: if user.is_admin {
                vec!["user".into(), "admin".into()]
            } else {
                vec!["user".into()]
            },
            org,
        };
        Ok(Tokens {
            access_token: self.keys.ring().sign(&claims)?,
            refresh_token: refresh.expose().clone(),
            expires_in: ttl,
            token_type: "Bearer",
            session_id: sid.to_owned(),
        })
    }

    /// `POST /auth/refresh`: spends the refresh token and issues a new pair
    /// in the same session. A token spent earlier than the retry grace means
    /// it was stolen or replayed: the whole session is revoked.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Tokens, AuthError> {
        let (session, user, next) = self.rotate_refresh(refresh_token, ctx, now).await?;
        if session.client_id.is_some() {
            // An OAuth client's token brought here to mint tokens for
            // Truxe's own API: stolen, so its session ends.
            self.store
                .revoke_session(&session.id, "refresh_token_misused", now)
                .await?;
            return Err(AuthError::Unauthenticated(
                "refresh token is invalid or expired".into(),
            ));
        }
        // Roles and permissions are read afresh: a change made since the
        // last token takes effect now.
        let org = match &session.org_id {
            Some(org_id) => self.org_claims(&user.id, org_id).await?,
            None => None,
        };
        self.tokens(&user, &session.id, next, org, now)
    }

    /// Spends a refresh token (in a group commit with concurrent ones):
    /// its session and user, and the next refresh token. Reuse past the
    /// retry grace revokes the session.
    pub(super) async fn rotate_refresh(
        &self,
        refresh_token: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(Box<Session>, Box<User>, Secret<String>), AuthError> {
        let invalid = || AuthError::Unauthenticated("refresh token is invalid or expired".into());
        if !refresh_token.starts_with(REFRESH_PREFIX) || refresh_token.len() > 128 {
            return Err(invalid());
        }
        let next = token::generate(REFRESH_PREFIX);
        let event = self.event("refresh", Outcome::Success, ctx, now);
        let rotation = Rotation {
            spent: token::digest(refresh_token),
            next: next.digest.clone(),
            now,
            event: event.clone(),
        };
        let groups = self
            .refresh_groups
            .get_or_init(|| RefreshGroups::start(self.store.clone()));
        match groups.rotate(rotation).await? {
            RefreshUse::Invalid => Err(invalid()),
            RefreshUse::Ended => Err(AuthError::Unauthenticated("session has ended".into())),
            RefreshUse::Inactive => Err(AuthError::Disabled),
            RefreshUse::AlreadyUsed {
                session_id,
                used_at,
            } => {
                if now - used_at < self.cfg.refresh_reuse_grace.as_secs() as i64 {
                    return Err(AuthError::Unauthenticated(
                        "refresh token was just used by another request".into(),
                    ));
                }
                self.store
                    .revoke_session(&session_id, "refresh_token_reused", now)
                    .await?;
                tracing::warn!(session_id = %session_id, "refresh token reused; session revoked");
                let actor = self
                    .store
                    .session(&session_id)
                    .await?
                    .map(|s| s.user_id)
                    .unwrap_or_default();
                let e = self
                    .event("refresh_token_reused", Outcome::Denied, ctx, now)
                    .actor(actor)
                    .target(&session_id);
                self.record(e.details(serde_json::json!({"session_revoked": true})))
                    .await;
                Err(AuthError::RefreshReused)
            }
            RefreshUse::Rotated { session, user } => {
                // Recorded with the rotation; only webhooks are left to queue.
                self.queue_webhooks(&event.actor(&user.id).target(&session.id), None)
                    .await;
                Ok((session, user, next.plaintext))
            }
        }
    }

    /// Verifies a user's access token and its session.
    pub async fn authenticate(&self, access_token: &str, now: i64) -> Result<Principal, AuthError> {
        let claims = self
            .keys
            .verify(access_token, now)
            .map_err(|e| AuthError::Unauthenticated(e.to_string()))?;
        if claims["token_use"] == "service" {
            return Err(AuthError::Unauthenticated(
                "service account tokens cannot use this endpoint".into(),
            ));
        }
        let claims = serde_json::from_value(claims)
            .map_err(|_| AuthError::Unauthenticated("malformed access token".into()))?;
        self.principal(claims, now).await
    }

    /// The user and live session of verified user-token claims.
    pub(super) async fn principal(&self, claims: Claims, now: i64) -> Result<Principal, AuthError> {
        // A session's user is the token's subject, or the token is not its.
        let (session, user) = self
            .store
            .session_with_user(&claims.sid, &claims.sub)
            .await?
            .filter(|(s, _)| s.user_id == claims.sub && s.is_live(now))
            .ok_or_else(|| AuthError::Unauthenticated("session has ended".into()))?;
        if user.status != "active" {
            return Err(AuthError::Disabled);
        }
        Ok(Principal {
            user,
            session,
            jti: claims.jti,
        })
    }

    /// `POST /auth/logout`: ends the caller's session (its refresh token and
    /// every access token of it stop working).
    pub async fn logout(&self, p: &Principal, ctx: &ClientInfo, now: i64) -> Result<(), AuthError> {
        self.store
            .revoke_session(&p.session.id, "logout", now)
            .await?;
        self.record(
            self.event("logout", Outcome::Success, ctx, now)
                .actor(&p.user.id)
                .target(&p.session.id),
        )
        .await;
        Ok(())
    }

    /// `POST /auth/revoke`: the caller's session, or with `all` every session
    /// of the user. Returns how many sessions ended.
    pub async fn revoke(
        &self,
        p: &Principal,
        all: bool,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<u64, AuthError> {
        let n = if all {
            self.store
                .revoke_user_sessions(&p.user.id, "revoke_all", now)
                .await?
        } else {
            self.store
                .revoke_session(&p.session.id, "revoked", now)
                .await?;
            1
        };
        let e = self
            .event("sessions_revoked", Outcome::Success, ctx, now)
            .actor(&p.user.id);
        self.record(e.details(serde_json::json!({"all": all, "count": n})))
            .await;
        Ok(n)
    }

    /// The caller's live sessions, oldest first.
    pub async fn sessions(&self, p: &Principal, now: i64) -> Result<Vec<Session>, AuthError> {
        Ok(self.store.live_sessions(&p.user.id, now).await?)
    }

    /// Ends one of the caller's sessions. Someone else's session is "not found".
    pub async fn end_session(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        match self.store.session(id).await? {
            Some(s) if s.user_id == p.user.id => {
                self.store.revoke_session(id, "ended_by_user", now).await?;
                self.record(
                    self.event("session_ended", Outcome::Success, ctx, now)
                        .actor(&p.user.id)
                        .target(id),
                )
                .await;
                Ok(())
            }
            _ => Err(AuthError::NotFound("no such session".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Alice@Example.COM ").ok().as_deref(),
            Some("alice@example.com")
        );
        for bad in [
            "",
            "a",
            "a@b",
            "@b.c",
            "a@.b.c",
            "a@b..c",
            "a b@c.d",
            "a@b@c.d",
            "a@b.c.",
            "a\u{0}@b.c",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}
