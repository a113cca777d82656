//! Social login: sign in with a configured provider (OpenID Connect by
//! discovery, or GitHub), authorization code flow with PKCE.
//!
//! A sign-in starts with a state row (sealed PKCE verifier, nonce, allowed
//! redirect, digest of a browser-binding cookie) and a `state` parameter
//! HMAC-signed for the provider. The callback checks the signature, deletes
//! the row (single use), checks the cookie (the callback finishes in the
//! browser that started it — no login CSRF), exchanges the code, verifies
//! the ID token and its nonce, and then finds, links or creates the user.
//! The result is a Truxe session, or a second-factor challenge when MFA is
//! on. Provider tokens are kept sealed with the identity.
//!
//! Linking by email happens only when both sides vouch for the address (the
//! provider says it is verified, and so is the Truxe account): otherwise
//! whoever controls a provider account with someone's address, or whoever
//! registered an address they do not own, could take over the other side.
//! For the same reason a new account needs an address the provider vouches
//! for.

use secure::audit::Outcome;
use secure::{token, Secret};

use super::auth::{AuthService, ClientInfo, LoginOutcome, Principal};
use super::vault::Vault;
use super::AuthError;
use crate::model::{OAuthIdentity, OAuthState, User};
use crate::oauth::{ExternalIdentity, OAuthError, ProviderTokens};
use crate::repo::RepoError;

/// How long a sign-in may take between redirect and callback.
const STATE_TTL_SECS: i64 = 600;
/// The [`Callback::mode`] of a sign-in started on a hosted page: its
/// [`Callback::redirect`] is where that page's sign-in goes on.
pub const PAGE_MODE: &str = "page";
/// Cookie tying a sign-in to the browser that started it.
pub const BINDING_COOKIE: &str = "truxe_oauth";

/// A started sign-in: send the browser to `url` with the binding cookie.
#[derive(Debug)]
pub struct Started {
    /// The provider's authorization URL.
    pub url: String,
    /// Value of [`BINDING_COOKIE`].
    pub binding: Secret<String>,
}

/// What the provider sent back to the callback.
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackParams {
    /// Authorization code.
    pub code: Option<String>,
    /// The signed state.
    pub state: Option<String>,
    /// The provider's error code (e.g. `access_denied`).
    pub error: Option<String>,
    /// The provider's explanation.
    pub error_description: Option<String>,
    /// The issuer of the answer (RFC 9207), when the provider sends it.
    pub iss: Option<String>,
}

/// A finished callback whose state was genuine: where to return and how.
#[derive(Debug)]
pub struct Callback {
    /// Allow-listed application URL (tokens or error go in its fragment).
    pub redirect: Option<String>,
    /// `json`, `cookie` or [`PAGE_MODE`].
    pub mode: String,
    /// The sign-in's outcome.
    pub result: Result<LoginOutcome, AuthError>,
}

impl From<OAuthError> for AuthError {
    fn from(e: OAuthError) -> Self {
        match e {
            OAuthError::Unavailable(..) => AuthError::Unavailable(e.to_string()),
            OAuthError::Refused(..) => AuthError::Unauthenticated(e.to_string()),
            OAuthError::BadIdToken(..) => AuthError::Unauthenticated(e.to_string()),
            OAuthError::NoEmail(..) => AuthError::Invalid(e.to_string()),
        }
    }
}

fn bad_state(why: &str) -> AuthError {
    AuthError::Conflict {
        code: "invalid_state",
        message: format!("the sign-in cannot be completed: {why}; start it again"),
    }
}

/// A provider's error text, short and printable, for messages.
fn tidy(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

impl AuthService {
    /// The configured providers: `(id, name, protocol)`.
    pub fn oauth_providers(&self) -> Vec<(String, String, &'static str)> {
        self.providers
            .all()
            .iter()
            .map(|p| {
                let protocol = match p.cfg.kind {
                    crate::config::ProviderKind::Oidc { .. } => "oidc",
                    crate::config::ProviderKind::Github { .. } => "oauth2",
                };
                (p.cfg.id.clone(), p.cfg.name.clone(), protocol)
            })
            .collect()
    }

    fn provider(&self, id: &str) -> Result<&std::sync::Arc<crate::oauth::Provider>, AuthError> {
        self.providers
            .get(id)
            .ok_or_else(|| AuthError::NotFound(format!("no sign-in provider `{}`", tidy(id))))
    }

    /// `GET /auth/oauth/{provider}/authorize`: records the sign-in and
    /// returns the provider URL to redirect to.
    pub async fn oauth_start(
        &self,
        provider: &str,
        redirect: Option<&str>,
        cookie_mode: bool,
        login_hint: Option<&str>,
        now: i64,
    ) -> Result<Started, AuthError> {
        if let Some(r) = redirect {
            if !self.cfg.oauth_redirects.iter().any(|a| a == r) {
                return Err(AuthError::Invalid(
                    "redirect_uri is not in the allowed list (TRUXE_OAUTH_REDIRECTS)".into(),
                ));
            }
        }
        let mode = if cookie_mode { "cookie" } else { "json" };
        self.begin_sign_in(provider, redirect, mode, login_hint, now)
            .await
    }

    /// A sign-in started on a hosted sign-in page: the callback answers
    /// with the page that comes next, and `resume` (kept server-side in
    /// the state row) says where the sign-in goes on.
    pub async fn oauth_start_page(
        &self,
        provider: &str,
        resume: &str,
        login_hint: Option<&str>,
        now: i64,
    ) -> Result<Started, AuthError> {
        self.begin_sign_in(provider, Some(resume), PAGE_MODE, login_hint, now)
            .await
    }

    async fn begin_sign_in(
        &self,
        provider: &str,
        back: Option<&str>,
        mode: &str,
        login_hint: Option<&str>,
        now: i64,
    ) -> Result<Started, AuthError> {
        let p = self.provider(provider)?;
        if login_hint.is_some_and(|h| h.len() > 254) {
            return Err(AuthError::Invalid("login_hint is too long".into()));
        }
        let id = token::generate("");
        let binding = token::generate("");
        let nonce = token::generate("").plaintext;
        let pkce = secure::oauth::pkce();
        let state = OAuthState {
            verifier_sealed: self.seal_in(
                Vault::OAuth,
                &format!("oauth-state:{}", id.digest),
                pkce.verifier.expose().as_bytes(),
            )?,
            id_hash: id.digest,
            provider: p.cfg.id.clone(),
            nonce: nonce.expose().clone(),
            binding_hash: binding.digest,
            redirect_uri: back.map(str::to_owned),
            mode: mode.into(),
            created_at: now,
            expires_at: now + STATE_TTL_SECS,
        };
        let signed = secure::oauth::sign_state(
            self.vaults.state_key.expose(),
            &p.cfg.id,
            id.plaintext.expose(),
        );
        let url = self
            .providers
            .authorization_url(
                p,
                &self.cfg.oauth_callback(&p.cfg.id),
                &signed,
                nonce.expose(),
                &pkce.challenge,
                login_hint,
            )
            .await?;
        self.store.create_oauth_state(&state).await?;
        Ok(Started {
            url,
            binding: binding.plaintext,
        })
    }

    /// `GET /auth/oauth/{provider}/callback`. An error before the state is
    /// known genuine is returned as `Err`; after, inside the [`Callback`],
    /// so it can be reported to the application the sign-in came from.
    pub async fn oauth_callback(
        &self,
        provider: &str,
        params: CallbackParams,
        binding: Option<&str>,
        ctx: ClientInfo,
        now: i64,
    ) -> Result<Callback, AuthError> {
        let p = self.provider(provider)?;
        let signed = params
            .state
            .as_deref()
            .ok_or_else(|| bad_state("the state parameter is missing"))?;
        let id = secure::oauth::verify_state(self.vaults.state_key.expose(), &p.cfg.id, signed)
            .ok_or_else(|| bad_state("the state parameter is not one Truxe issued"))?;
        let id_hash = token::digest(id);
        let st = self
            .store
            .take_oauth_state(&id_hash, now)
            .await?
            .filter(|s| s.provider == p.cfg.id)
            .ok_or_else(|| bad_state("the sign-in is unknown, expired or already completed"))?;
        let bound = binding.is_some_and(|b| {
            secure::ct_eq(token::digest(b).as_bytes(), st.binding_hash.as_bytes())
        });
        if !bound {
            let e = self.event("login", Outcome::Denied, &ctx, now);
            self.record(e.details(serde_json::json!({"method": "oauth", "provider": p.cfg.id, "reason": "browser_mismatch"})))
                .await;
            return Err(bad_state(
                "it was started in another browser (the sign-in cookie is missing or different)",
            ));
        }
        let result = self.finish_sign_in(p, &st, params, ctx, now).await;
        Ok(Callback {
            redirect: st.redirect_uri,
            mode: st.mode,
            result,
        })
    }

    async fn finish_sign_in(
        &self,
        p: &crate::oauth::Provider,
        st: &OAuthState,
        params: CallbackParams,
        ctx: ClientInfo,
        now: i64,
    ) -> Result<LoginOutcome, AuthError> {
        let provider = p.cfg.id.as_str();
        let fail = |reason: &str| {
            self.event("login", Outcome::Failure, &ctx, now).details(
                serde_json::json!({"method": "oauth", "provider": provider, "reason": reason}),
            )
        };
        if let Err(e) = self
            .providers
            .check_response_issuer(p, params.iss.as_deref())
            .await
        {
            self.record(fail("issuer_mismatch")).await;
            return Err(e.into());
        }
        if let Some(err) = params.error.as_deref() {
            self.record(fail("provider_error")).await;
            let desc = params.error_description.as_deref().map(tidy);
            return Err(AuthError::Conflict {
                code: if err == "access_denied" {
                    "access_denied"
                } else {
                    "provider_error"
                },
                message: format!(
                    "the provider ended the sign-in: {}{}",
                    tidy(err),
                    desc.map(|d| format!(" ({d})")).unwrap_or_default()
                ),
            });
        }
        let code = params
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= 2048)
            .ok_or_else(|| AuthError::Invalid("the callback has no authorization code".into()))?;
        let verifier = Secret::new(
            String::from_utf8(self.open_in(
                Vault::OAuth,
                &format!("oauth-state:{}", st.id_hash),
                &st.verifier_sealed,
            )?)
            .map_err(|_| AuthError::Internal("PKCE verifier is not UTF-8".into()))?,
        );
        let callback = self.cfg.oauth_callback(provider);
        let outcome = async {
            let tokens = self
                .providers
                .exchange(p, &callback, code, &verifier, now)
                .await?;
            let ext = self.providers.identity(p, &tokens, &st.nonce).await?;
            Ok::<_, OAuthError>((tokens, ext))
        }
        .await;
        let (tokens, ext) = match outcome {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(provider, error = %e, "social sign-in failed");
                self.record(fail("provider_refused")).await;
                return Err(e.into());
            }
        };
        let user = self
            .user_for_identity(provider, &ext, &tokens, &ctx, now)
            .await?;
        if user.status != "active" {
            self.record(fail("disabled").actor(&user.id)).await;
            return Err(AuthError::Disabled);
        }
        if self.needs_second_factor(&user).await? {
            let challenge_id = self.start_challenge(&user, &ctx, now).await?;
            return Ok(LoginOutcome::MfaRequired { challenge_id });
        }
        let e = self
            .event("login", Outcome::Success, &ctx, now)
            .actor(&user.id)
            .details(serde_json::json!({"method": "oauth", "provider": provider}));
        let tokens = self.start_session(&user, ctx, now, e, None).await?;
        Ok(LoginOutcome::Authenticated(Box::new(user), tokens))
    }

    pub(super) fn seal_tokens(
        &self,
        identity_id: &str,
        t: &ProviderTokens,
    ) -> Result<String, AuthError> {
        let json =
            Secret::new(serde_json::to_string(t).map_err(|e| AuthError::Internal(e.to_string()))?);
        self.seal_in(
            Vault::OAuth,
            &format!("oauth:{identity_id}"),
            json.expose().as_bytes(),
        )
    }

    /// The user an external identity signs in as: the linked one; else the
    /// account with the same address when both sides vouch for it (linked
    /// now); else a new account.
    async fn user_for_identity(
        &self,
        provider: &str,
        ext: &ExternalIdentity,
        tokens: &ProviderTokens,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<User, AuthError> {
        if let Some(linked) = self.store.identity(provider, &ext.subject).await? {
            let sealed = self.seal_tokens(&linked.id, tokens)?;
            self.store
                .identity_signed_in(&linked.id, &ext.email, &sealed, now)
                .await?;
            return self
                .store
                .user_by_id(&linked.user_id)
                .await?
                .ok_or_else(|| AuthError::Internal("identity without user".into()));
        }
        let email = super::auth::normalize_email(&ext.email)?;
        let (user, created) = match self.store.user_by_email(&email).await? {
            Some(u) if ext.email_verified && u.email_verified => (u, false),
            // The provider vouches for an address the account never proved:
            // its owner takes the account over, and whatever the registrant
            // set before (password, sessions, second factor) is void.
            Some(u) if ext.email_verified => {
                let u = self
                    .prove_address(u, super::account::Proof::WithoutPassword, ctx, now)
                    .await?;
                (u, false)
            }
            Some(_) => {
                let e = self.event("login", Outcome::Denied, ctx, now);
                self.record(e.details(serde_json::json!({"method": "oauth", "provider": provider, "reason": "unverified_email_match"})))
                    .await;
                return Err(AuthError::Conflict {
                    code: "account_exists",
                    message: "an account with this email address exists, and the provider does not vouch for the address; verify it there, or sign in with the password, then use this provider again".into(),
                });
            }
            None if !self.cfg.enable_signup => return Err(AuthError::SignupDisabled),
            // An account made from an address nobody vouches for would let
            // the address's real owner (by a password reset) and the
            // provider account share one account.
            None if !ext.email_verified => {
                return Err(AuthError::Conflict {
                    code: "email_unverified",
                    message: "the provider does not vouch for this email address; verify it there and try again".into(),
                })
            }
            None => (self.create_social_user(&email, ext, now).await?, true),
        };
        let id = token::random_uuid();
        let identity = OAuthIdentity {
            tokens_sealed: self.seal_tokens(&id, tokens)?,
            id,
            user_id: user.id.clone(),
            provider: provider.to_owned(),
            subject: ext.subject.clone(),
            email: email.clone(),
            created_at: now,
            updated_at: now,
            last_login_at: now,
        };
        match self.store.create_identity(&identity).await {
            Err(RepoError::Conflict) => {
                return Err(AuthError::Conflict {
                    code: "conflict",
                    message: "this sign-in raced another one for the same account; try again"
                        .into(),
                })
            }
            other => other?,
        }
        let details = serde_json::json!({"method": "oauth", "provider": provider});
        if created {
            self.record(
                self.event("register", Outcome::Success, ctx, now)
                    .actor(&user.id)
                    .details(details),
            )
            .await;
            if self.cfg.mail_welcome {
                self.notify(&user.email, super::letters::Letter::Welcome, now);
            }
        } else {
            self.record(
                self.event("oauth_linked", Outcome::Success, ctx, now)
                    .actor(&user.id)
                    .target(&identity.id)
                    .details(details),
            )
            .await;
        }
        Ok(user)
    }

    /// A new account for a social sign-in. Its password is random and never
    /// shown: the account signs in through the provider (or sets a password
    /// through the reset flow).
    async fn create_social_user(
        &self,
        email: &str,
        ext: &ExternalIdentity,
        now: i64,
    ) -> Result<User, AuthError> {
        let metadata = match &ext.name {
            Some(n) => serde_json::json!({"name": tidy(n)}),
            None => serde_json::json!({}),
        };
        let user = User::new(
            email.to_owned(),
            self.hasher.hash(token::generate("").plaintext).await?,
            ext.email_verified,
            false,
            metadata,
            now,
        );
        match self.store.create_user(&user).await {
            Err(RepoError::Conflict) => Err(AuthError::Conflict {
                code: "conflict",
                message: "this sign-in raced another one for the same address; try again".into(),
            }),
            other => other.map(|()| user).map_err(Into::into),
        }
    }

    /// `GET /auth/oauth/identities`: the caller's linked identities.
    pub async fn identities(&self, p: &Principal) -> Result<Vec<OAuthIdentity>, AuthError> {
        self.linked_identities(&p.user).await
    }

    /// A user's linked identities (the account page lists them too).
    pub async fn linked_identities(&self, user: &User) -> Result<Vec<OAuthIdentity>, AuthError> {
        Ok(self.store.identities(&user.id).await?)
    }

    /// `DELETE /auth/oauth/identities/{id}`: unlinks one (audited).
    pub async fn unlink_identity(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.unlink_identity_of(&p.user, id, ctx, now).await
    }

    /// Unlinks one of `user`'s identities (audited as `oauth_unlinked`).
    pub async fn unlink_identity_of(
        &self,
        user: &User,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        if !self.store.delete_identity(&user.id, id).await? {
            return Err(AuthError::NotFound("no such linked identity".into()));
        }
        self.record(
            self.event("oauth_unlinked", Outcome::Success, ctx, now)
                .actor(&user.id)
                .target(id),
        )
        .await;
        Ok(())
    }

    /// The provider tokens of one of a user's identities, opened (for
    /// administrators; the admin gate audits the call).
    pub async fn admin_identity_tokens(
        &self,
        p: &Principal,
        user_id: &str,
        identity_id: &str,
    ) -> Result<ProviderTokens, AuthError> {
        self.require_admin(p)?;
        let identity = self
            .store
            .identities(user_id)
            .await?
            .into_iter()
            .find(|i| i.id == identity_id)
            .ok_or_else(|| AuthError::NotFound("no such linked identity".into()))?;
        let plain = self.open_in(
            Vault::OAuth,
            &format!("oauth:{}", identity.id),
            &identity.tokens_sealed,
        )?;
        serde_json::from_slice(&plain).map_err(|e| AuthError::Internal(e.to_string()))
    }
}
