//! Account flows that go through email: password reset, email
//! verification and magic links; and password change.
//!
//! Every emailed token is 256 random bits, stored as SHA-256, single use and
//! short-lived (reset 1 h, verification 24 h, magic link 15 min). Requests
//! that take an email address answer the same whether or not the account
//! exists; the caller runs them in the background so timing is equal too.

use secure::audit::Outcome;
use secure::{token, Secret};

use super::auth::{AuthService, ClientInfo, LoginOutcome, Principal};
use super::mail::Mail;
use super::AuthError;
use crate::model::User;

const RESET_TTL: i64 = 3600;
const VERIFY_TTL: i64 = 24 * 3600;
const MAGIC_TTL: i64 = 15 * 60;

impl AuthService {
    async fn email_token(
        &self,
        user: &User,
        kind: &str,
        prefix: &str,
        ttl: i64,
        data: Option<&str>,
        now: i64,
    ) -> Result<String, AuthError> {
        let t = token::generate(prefix);
        self.store
            .create_token(&t.digest, kind, &user.id, now, now + ttl, data)
            .await?;
        Ok(t.plaintext.expose().clone())
    }

    async fn mail(&self, to: &str, subject: &str, text: String, now: i64) -> Result<(), AuthError> {
        let mail = Mail {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text,
            at_ms: now.saturating_mul(1000),
        };
        self.mailer
            .send(&mail)
            .await
            .map_err(AuthError::Unavailable)
    }

    fn link(&self, path: &str, token: &str) -> String {
        format!("{}{path}?token={token}", self.cfg.public_url)
    }

    /// `POST /api/auth/password/forgot`: mails a reset link if the account exists.
    pub async fn forgot_password(
        &self,
        email: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let Some(user) = self
            .store
            .user_by_email(&email.trim().to_lowercase())
            .await?
        else {
            return Ok(());
        };
        let t = self
            .email_token(&user, "password_reset", "prt_", RESET_TTL, None, now)
            .await?;
        let text = format!(
            "Someone asked to reset the password of your account.\n\nReset it within one hour: {}\n\nIf it was not you, ignore this message.\n",
            self.link("/reset-password", &t)
        );
        self.mail(&user.email, "Reset your password", text, now)
            .await?;
        self.record(
            self.event("password_reset_requested", Outcome::Success, ctx, now)
                .target(&user.id),
        )
        .await;
        Ok(())
    }

    /// `POST /api/auth/password/reset`: sets a new password with an emailed
    /// token and ends every session of the account.
    pub async fn reset_password(
        &self,
        reset_token: &str,
        password: Secret<String>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let problems = self.cfg.password.violations(password.expose());
        if !problems.is_empty() {
            return Err(AuthError::WeakPassword(problems));
        }
        let invalid = || {
            AuthError::Unauthenticated("the reset link is invalid, expired or already used".into())
        };
        if reset_token.len() > 128 {
            return Err(invalid());
        }
        let (user_id, _) = self
            .store
            .consume_token(&token::digest(reset_token), "password_reset", now)
            .await?
            .ok_or_else(invalid)?;
        let hash = self.hasher.hash(password).await?;
        self.store.set_password_hash(&user_id, &hash, now).await?;
        self.store.clear_failures(&user_id, now).await?;
        let ended = self
            .store
            .revoke_user_sessions(&user_id, "password_reset", now)
            .await?;
        let e = self
            .event("password_reset", Outcome::Success, ctx, now)
            .actor(&user_id);
        self.record(e.details(serde_json::json!({"sessions_ended": ended})))
            .await;
        Ok(())
    }

    /// `PUT /api/auth/password/change`: needs the current password; ends the
    /// other sessions, keeps the caller's.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: Secret<String>,
        new: Secret<String>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        if !self
            .hasher
            .verify(current, Some(p.user.password_hash.clone()))
            .await?
            .ok
        {
            self.record(
                self.event("password_change", Outcome::Failure, ctx, now)
                    .actor(&p.user.id),
            )
            .await;
            return Err(AuthError::InvalidCredentials);
        }
        let problems = self.cfg.password.violations(new.expose());
        if !problems.is_empty() {
            return Err(AuthError::WeakPassword(problems));
        }
        let hash = self.hasher.hash(new).await?;
        self.store.set_password_hash(&p.user.id, &hash, now).await?;
        let ended = self
            .store
            .revoke_other_sessions(&p.user.id, &p.session.id, "password_changed", now)
            .await?;
        let e = self
            .event("password_changed", Outcome::Success, ctx, now)
            .actor(&p.user.id);
        self.record(e.details(serde_json::json!({"other_sessions_ended": ended})))
            .await;
        Ok(())
    }

    /// `POST /api/auth/email/send-verification`. Returns false if already verified.
    pub async fn send_verification(
        &self,
        p: &Principal,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<bool, AuthError> {
        if p.user.email_verified {
            return Ok(false);
        }
        let t = self
            .email_token(&p.user, "email_verify", "evt_", VERIFY_TTL, None, now)
            .await?;
        let text = format!(
            "Confirm your email address within 24 hours: {}\n",
            self.link("/api/auth/email/verify", &t)
        );
        self.mail(&p.user.email, "Confirm your email address", text, now)
            .await?;
        self.record(
            self.event("email_verification_sent", Outcome::Success, ctx, now)
                .actor(&p.user.id),
        )
        .await;
        Ok(true)
    }

    /// `GET /api/auth/email/verify?token=`.
    pub async fn verify_email(
        &self,
        verify_token: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let invalid = || {
            AuthError::Unauthenticated(
                "the verification link is invalid, expired or already used".into(),
            )
        };
        if verify_token.len() > 128 {
            return Err(invalid());
        }
        let (user_id, _) = self
            .store
            .consume_token(&token::digest(verify_token), "email_verify", now)
            .await?
            .ok_or_else(invalid)?;
        self.store.set_email_verified(&user_id, now).await?;
        self.record(
            self.event("email_verified", Outcome::Success, ctx, now)
                .actor(&user_id),
        )
        .await;
        Ok(())
    }

    /// Checks a magic link's redirect against the allow-list (exact match).
    pub fn check_redirect(&self, redirect: Option<&str>) -> Result<(), AuthError> {
        match redirect {
            None => Ok(()),
            Some(r) if self.cfg.magic_link_redirects.iter().any(|a| a == r) => Ok(()),
            Some(_) => Err(AuthError::Invalid(
                "redirectUri is not in the allowed list (TRUXE_MAGIC_LINK_REDIRECTS)".into(),
            )),
        }
    }

    /// `POST /auth/magic-link`: mails a sign-in link if the account exists.
    /// Call [`Self::check_redirect`] first, so a bad redirect is reported.
    pub async fn send_magic_link(
        &self,
        email: &str,
        redirect: Option<&str>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.check_redirect(redirect)?;
        let Some(user) = self
            .store
            .user_by_email(&email.trim().to_lowercase())
            .await?
        else {
            return Ok(());
        };
        let t = self
            .email_token(&user, "magic_link", "mlt_", MAGIC_TTL, redirect, now)
            .await?;
        let text = format!(
            "Sign in within 15 minutes: {}\n\nIf you did not ask for this, ignore it.\n",
            self.link("/auth/verify", &t)
        );
        self.mail(&user.email, "Your sign-in link", text, now)
            .await?;
        self.record(
            self.event("magic_link_sent", Outcome::Success, ctx, now)
                .target(&user.id),
        )
        .await;
        Ok(())
    }

    /// `GET /auth/verify?token=`: signs in with a magic link (a second factor
    /// is still required when MFA is on). Returns the outcome and the redirect.
    pub async fn verify_magic_link(
        &self,
        link_token: &str,
        ctx: ClientInfo,
        now: i64,
    ) -> Result<(LoginOutcome, Option<String>), AuthError> {
        let invalid = || {
            AuthError::Unauthenticated(
                "the sign-in link is invalid, expired or already used".into(),
            )
        };
        if link_token.len() > 128 {
            return Err(invalid());
        }
        let (user_id, redirect) = self
            .store
            .consume_token(&token::digest(link_token), "magic_link", now)
            .await?
            .ok_or_else(invalid)?;
        let user = self.store.user_by_id(&user_id).await?.ok_or_else(invalid)?;
        if user.status != "active" {
            return Err(AuthError::Disabled);
        }
        // Following the emailed link proves control of the address.
        if !user.email_verified {
            self.store.set_email_verified(&user.id, now).await?;
        }
        if user.mfa_enabled {
            let challenge_id = self.start_challenge(&user, &ctx, now).await?;
            return Ok((LoginOutcome::MfaRequired { challenge_id }, redirect));
        }
        let e = self
            .event("login", Outcome::Success, &ctx, now)
            .actor(&user.id);
        self.record(e.details(serde_json::json!({"method": "magic_link"})))
            .await;
        let tokens = self.start_session(&user, ctx, now).await?;
        Ok((
            LoginOutcome::Authenticated(Box::new(user), tokens),
            redirect,
        ))
    }
}
