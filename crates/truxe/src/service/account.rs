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
use super::letters::Letter;
use super::AuthError;
use crate::model::User;

/// How an address was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proof {
    /// The verification link a signed-in registrant asked for: the
    /// registrant keeps the password and signs in again.
    VerificationLink,
    /// A password reset: the password is replaced anyway.
    Reset,
    /// A magic link or a social sign-in: no password was involved.
    WithoutPassword,
}

impl Proof {
    fn as_str(self) -> &'static str {
        match self {
            Proof::VerificationLink => "verification_link",
            Proof::Reset => "password_reset",
            Proof::WithoutPassword => "without_password",
        }
    }
}

const RESET_TTL: i64 = 3600;
const VERIFY_TTL: i64 = 24 * 3600;
const MAGIC_TTL: i64 = 15 * 60;

/// One kind of emailed link.
struct LinkKind {
    /// Token kind in the store.
    kind: &'static str,
    /// Token prefix (recognisable in logs and secret scanners).
    prefix: &'static str,
    /// Lifetime in seconds.
    ttl: i64,
    /// Path the link points to.
    path: &'static str,
    /// The mail carrying the link.
    letter: for<'a> fn(&'a str) -> Letter<'a>,
    /// Audit action once sent.
    audit: &'static str,
    /// What the token is called in error messages.
    noun: &'static str,
    /// Asked for by the signed-in user (audited as actor), rather than by
    /// anyone naming the address (audited as target).
    self_requested: bool,
}

const RESET: LinkKind = LinkKind {
    kind: "password_reset",
    prefix: "prt_",
    ttl: RESET_TTL,
    path: "/reset-password",
    letter: |link| Letter::Reset { link },
    audit: "password_reset_requested",
    noun: "reset link",
    self_requested: false,
};

const VERIFY: LinkKind = LinkKind {
    kind: "email_verify",
    prefix: "evt_",
    ttl: VERIFY_TTL,
    // The hosted page; `GET /api/auth/email/verify?token=` stays for API clients.
    path: "/verify-email",
    letter: |link| Letter::Verify { link },
    audit: "email_verification_sent",
    noun: "verification link",
    self_requested: true,
};

/// A sign-in link asked for on a hosted sign-in page. Its token is bound
/// to the browser that asked (see [`bound`]), and its data is where the
/// sign-in goes on (an application's request, the account page…).
const PAGE_LINK: LinkKind = LinkKind {
    kind: "sign_in_link",
    prefix: "mlt_",
    ttl: MAGIC_TTL,
    path: "/sign-in/link",
    letter: |link| Letter::MagicLink { link },
    audit: "magic_link_sent",
    noun: "sign-in link",
    self_requested: false,
};

/// The stored digest of a token that works only in `browser`: opened
/// anywhere else it matches nothing (so it is not spent either). Without
/// this, whoever asked for a link to their own address could send it to
/// someone else and sign that browser in as themselves, and an
/// application's sign-in started by an attacker could be completed by
/// the victim's click.
fn bound(token: &str, browser: Option<&str>) -> String {
    match browser {
        Some(b) => token::digest(&format!("{token}.{b}")),
        None => token::digest(token),
    }
}

const MAGIC: LinkKind = LinkKind {
    kind: "magic_link",
    prefix: "mlt_",
    ttl: MAGIC_TTL,
    path: "/auth/verify",
    letter: |link| Letter::MagicLink { link },
    audit: "magic_link_sent",
    noun: "sign-in link",
    self_requested: false,
};

impl AuthService {
    /// Issues a single-use token of `link` for `user` (bound to `browser`
    /// if given) and mails the link.
    async fn send_link(
        &self,
        user: &User,
        link: &LinkKind,
        data: Option<&str>,
        browser: Option<&str>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let t = token::generate(link.prefix);
        let digest = bound(t.plaintext.expose(), browser);
        self.store
            .create_token(&digest, link.kind, &user.id, now, now + link.ttl, data)
            .await?;
        // Sign-in links may go to the application's own page, which completes
        // them with `POST /auth/verify-magic-link` (MAGIC_LINK_BASE_URL).
        let base = match (link.kind, &self.cfg.magic_link_base) {
            (k, Some(base)) if k == MAGIC.kind => base,
            _ => &self.cfg.public_url,
        };
        let url = format!("{base}{}?token={}", link.path, t.plaintext.expose());
        let mail = (link.letter)(&url).mail(&self.cfg.brand, &user.email, now.saturating_mul(1000));
        self.mailer
            .send(&mail)
            .await
            .map_err(AuthError::Unavailable)?;
        let e = self.event(link.audit, Outcome::Success, ctx, now);
        let e = if link.self_requested {
            e.actor(&user.id)
        } else {
            e.target(&user.id)
        };
        self.record(e).await;
        Ok(())
    }

    /// Spends a token of `link` once (in `browser`, if it was bound to
    /// one): its user and data, or 401.
    async fn consume_link(
        &self,
        link: &LinkKind,
        presented: &str,
        browser: Option<&str>,
        now: i64,
    ) -> Result<(String, Option<String>), AuthError> {
        let invalid = || {
            AuthError::Unauthenticated(format!(
                "the {} is invalid, expired or already used",
                link.noun
            ))
        };
        if presented.len() > 128 {
            return Err(invalid());
        }
        self.store
            .consume_token(&bound(presented, browser), link.kind, now)
            .await?
            .ok_or_else(invalid)
    }

    /// Marks `user`'s address proven, unless it already is. Whoever
    /// registered an address may not own it (account pre-hijacking), so
    /// every session issued while it was unproven ends; and a proof that
    /// used no password also voids the password and second factor set
    /// before it (the owner sets a new password through a reset). Returns
    /// the user as it now is.
    pub(super) async fn prove_address(
        &self,
        user: User,
        proof: Proof,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<User, AuthError> {
        if user.email_verified {
            return Ok(user);
        }
        self.store.set_email_verified(&user.id, now).await?;
        let ended = self
            .store
            .revoke_user_sessions(&user.id, "address_proven", now)
            .await?;
        let voided = proof == Proof::WithoutPassword;
        if voided {
            let unusable = self.hasher.hash(token::generate("").plaintext).await?;
            self.store
                .set_password_hash(&user.id, &unusable, now)
                .await?;
            if user.mfa_enabled {
                self.store.disable_mfa(&user.id, now).await?;
            }
        }
        let e = self
            .event("email_verified", Outcome::Success, ctx, now)
            .actor(&user.id);
        self.record(e.details(serde_json::json!({
            "method": proof.as_str(), "sessions_ended": ended, "credentials_voided": voided,
        })))
        .await;
        self.store
            .user_by_id(&user.id)
            .await?
            .ok_or_else(|| AuthError::NotFound("no such user".into()))
    }

    /// The user an emailed link was issued to.
    async fn link_user(&self, user_id: &str, noun: &str) -> Result<User, AuthError> {
        self.store.user_by_id(user_id).await?.ok_or_else(|| {
            AuthError::Unauthenticated(format!("the {noun} is invalid, expired or already used"))
        })
    }

    async fn user_for_email(&self, email: &str) -> Result<Option<User>, AuthError> {
        Ok(self
            .store
            .user_by_email(&email.trim().to_lowercase())
            .await?)
    }

    /// `POST /api/auth/password/forgot`: mails a reset link if the account exists.
    pub async fn forgot_password(
        &self,
        email: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        match self.user_for_email(email).await? {
            Some(user) => self.send_link(&user, &RESET, None, None, ctx, now).await,
            None => Ok(()),
        }
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
        let (user_id, _) = self.consume_link(&RESET, reset_token, None, now).await?;
        // Following the emailed link proves control of the address.
        let user = self.link_user(&user_id, RESET.noun).await?;
        self.prove_address(user, Proof::Reset, ctx, now).await?;
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
        if let Some(u) = self.store.user_by_id(&user_id).await? {
            self.notify(&u.email, Letter::PasswordChanged, now);
        }
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
        self.notify(&p.user.email, Letter::PasswordChanged, now);
        Ok(())
    }

    /// When the caller's address was verified (from the audit trail), if it is.
    pub async fn email_verified_at(&self, p: &Principal) -> Result<Option<i64>, AuthError> {
        if !p.user.email_verified {
            return Ok(None);
        }
        let filter = crate::repo::AuditFilter {
            action: Some("email_verified".into()),
            actor: Some(p.user.id.clone()),
            outcome: Some("success".into()),
            before: None,
            limit: 1,
        };
        let last = self.store.audit_events(&filter).await?;
        Ok(last.first().map(|(_, e)| e.at_ms / 1000))
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
        self.send_link(&p.user, &VERIFY, None, None, ctx, now)
            .await?;
        Ok(true)
    }

    /// `GET /api/auth/email/verify?token=`.
    pub async fn verify_email(
        &self,
        verify_token: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let (user_id, _) = self.consume_link(&VERIFY, verify_token, None, now).await?;
        let user = self.link_user(&user_id, VERIFY.noun).await?;
        self.prove_address(user, Proof::VerificationLink, ctx, now)
            .await
            .map(drop)
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
        match self.user_for_email(email).await? {
            Some(user) => {
                self.send_link(&user, &MAGIC, redirect, None, ctx, now)
                    .await
            }
            None => Ok(()),
        }
    }

    /// `GET /auth/verify?token=`: signs in with a magic link (a second factor
    /// is still required when MFA is on). Returns the outcome and the redirect.
    pub async fn verify_magic_link(
        &self,
        link_token: &str,
        ctx: ClientInfo,
        now: i64,
    ) -> Result<(LoginOutcome, Option<String>), AuthError> {
        let (user_id, redirect) = self.consume_link(&MAGIC, link_token, None, now).await?;
        Ok((self.link_sign_in(&user_id, ctx, now).await?, redirect))
    }

    /// A hosted sign-in page's "email me a link": mails a link that works
    /// only in `browser` if the account exists. `resume` says where the
    /// sign-in goes on and comes back from [`Self::page_link_sign_in`].
    pub async fn send_page_link(
        &self,
        email: &str,
        browser: &str,
        resume: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        match self.user_for_email(email).await? {
            Some(user) => {
                self.send_link(&user, &PAGE_LINK, Some(resume), Some(browser), ctx, now)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Signs in with a hosted page's link, opened in `browser`: the outcome
    /// and where the sign-in goes on.
    pub async fn page_link_sign_in(
        &self,
        link_token: &str,
        browser: &str,
        ctx: ClientInfo,
        now: i64,
    ) -> Result<(LoginOutcome, String), AuthError> {
        let (user_id, resume) = self
            .consume_link(&PAGE_LINK, link_token, Some(browser), now)
            .await?;
        let outcome = self.link_sign_in(&user_id, ctx, now).await?;
        Ok((outcome, resume.unwrap_or_default()))
    }

    /// The sign-in an emailed link grants `user_id` (a second factor is
    /// still required when MFA is on).
    async fn link_sign_in(
        &self,
        user_id: &str,
        ctx: ClientInfo,
        now: i64,
    ) -> Result<LoginOutcome, AuthError> {
        let user = self.link_user(user_id, MAGIC.noun).await?;
        if user.status != "active" {
            return Err(AuthError::Disabled);
        }
        // Following the emailed link proves control of the address.
        let user = self
            .prove_address(user, Proof::WithoutPassword, &ctx, now)
            .await?;
        if self.needs_second_factor(&user).await? {
            let challenge_id = self.start_challenge(&user, &ctx, now).await?;
            return Ok(LoginOutcome::MfaRequired { challenge_id });
        }
        let e = self
            .event("login", Outcome::Success, &ctx, now)
            .actor(&user.id)
            .details(serde_json::json!({"method": "magic_link"}));
        let tokens = self.start_session(&user, ctx, now, e, None).await?;
        Ok(LoginOutcome::Authenticated(Box::new(user), tokens))
    }

    /// Whether sign-in links can be mailed (a mail transport is set up).
    pub fn links_available(&self) -> bool {
        self.mailer.delivers()
    }
}
