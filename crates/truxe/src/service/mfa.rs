//! TOTP multi-factor authentication: setup, confirmation with backup codes,
//! status, disabling, and the login challenge that stands between a correct
//! password and a session.
//!
//! Secrets are sealed with the MFA key (AES-256-GCM, bound to the user id)
//! before storage. Each TOTP code works once (the last accepted time step is
//! stored); backup codes are random, stored as SHA-256 and single use. A
//! challenge lives 5 minutes, allows 5 attempts and is spent on success.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use secure::audit::Outcome;
use secure::{token, totp, Secret};

use super::auth::{AuthService, ClientInfo, Principal, Tokens};
use super::AuthError;
use crate::model::User;
use crate::repo::Challenge;

/// How long a login challenge lives.
pub const CHALLENGE_TTL_SECS: i64 = 300;
/// Attempts allowed per challenge.
pub const CHALLENGE_ATTEMPTS: i64 = 5;
/// Backup codes issued at once.
pub const BACKUP_CODES: usize = 10;
const ISSUER: &str = "Truxe";

/// What `/auth/mfa/setup` returns: show it once, to the user only.
#[derive(Debug, serde::Serialize)]
pub struct MfaSetup {
    /// Base32 secret for manual entry.
    pub secret: String,
    /// `otpauth://` provisioning URI.
    pub otpauth_url: String,
    /// The URI as a QR code, an SVG data URL.
    pub qr_code: String,
}

/// How a second factor was given.
#[derive(Debug)]
pub enum SecondFactor<'a> {
    /// A 6-digit TOTP code.
    Totp(&'a str),
    /// A backup code.
    BackupCode(&'a str),
    /// A passkey's answer (`credential`, JSON) to the ceremony the login
    /// challenge's options started.
    Passkey {
        /// `webauthn_ceremonies.id`.
        ceremony_id: &'a str,
        /// The `PublicKeyCredential` as JSON.
        credential: &'a str,
    },
}

fn now_u64(now: i64) -> u64 {
    u64::try_from(now).unwrap_or(0)
}

/// `abcd-efgh-ijkl-mnop`: 80 random bits, easy to type.
fn new_backup_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let chars: Vec<char> = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Digest of a backup code as typed (case, spaces and dashes ignored).
fn backup_digest(code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    token::digest(&norm)
}

fn qr_svg(uri: &str) -> Result<String, AuthError> {
    let code =
        qrcode::QrCode::new(uri.as_bytes()).map_err(|e| AuthError::Internal(e.to_string()))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(svg)
    ))
}

impl AuthService {
    /// Proves the caller still holds the account's credentials before an MFA
    /// change: `check` runs only while the account is not locked, and a
    /// failed proof counts toward the lockout, as a wrong password at login
    /// does, so guesses through these endpoints are bounded as well.
    async fn prove<F, Fut>(
        &self,
        p: &Principal,
        action: &str,
        ctx: &ClientInfo,
        now: i64,
        check: F,
    ) -> Result<(), AuthError>
    where
        F: FnOnce(User) -> Fut,
        Fut: std::future::Future<Output = Result<bool, AuthError>>,
    {
        let user = self
            .store
            .user_by_id(&p.user.id)
            .await?
            .ok_or_else(|| AuthError::NotFound("no such user".into()))?;
        if let Some(unlock_at) = user.locked_until.filter(|t| *t > now) {
            return Err(AuthError::Locked { unlock_at });
        }
        if check(user).await? {
            return Ok(());
        }
        self.record(
            self.event(action, Outcome::Failure, ctx, now)
                .actor(&p.user.id),
        )
        .await;
        self.count_failure(&p.user.id, ctx, now).await?;
        Err(AuthError::Unauthenticated(
            "the code or password is wrong".into(),
        ))
    }

    /// Checks a TOTP code against the user's active secret and spends its
    /// time step (atomically, so a code works once even under concurrency).
    async fn check_totp(&self, user: &User, code: &str, now: i64) -> Result<bool, AuthError> {
        let Some(sealed) = user.mfa_secret.as_deref().filter(|_| user.mfa_enabled) else {
            return Ok(false);
        };
        let secret = self.open_secret(&user.id, sealed)?;
        let last = user.mfa_last_step.and_then(|s| u64::try_from(s).ok());
        match totp::verify(&secret, code, now_u64(now), last) {
            Some(step) => Ok(self.store.claim_totp_step(&user.id, step as i64).await?),
            None => Ok(false),
        }
    }

    async fn new_backup_codes(&self) -> (Vec<String>, Vec<String>) {
        let codes: Vec<String> = (0..BACKUP_CODES).map(|_| new_backup_code()).collect();
        let hashes = codes.iter().map(|c| backup_digest(c)).collect();
        (codes, hashes)
    }

    /// `POST /auth/mfa/setup`: a new secret to confirm with `/auth/mfa/enable`.
    /// When MFA is already on, a current code is required (no silent takeover
    /// by someone holding only a session).
    pub async fn mfa_setup(
        &self,
        p: &Principal,
        code: Option<&str>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<MfaSetup, AuthError> {
        if p.user.mfa_enabled {
            let Some(c) = code else {
                return Err(AuthError::Unauthenticated(
                    "MFA is on: a current code is required to set it up again".into(),
                ));
            };
            self.prove(p, "mfa_setup", ctx, now, |u| async move {
                self.check_totp(&u, c, now).await
            })
            .await?;
        }
        let secret = totp::generate_secret();
        self.store
            .set_pending_secret(&p.user.id, &self.seal_secret(&p.user.id, &secret)?, now)
            .await?;
        let otpauth_url = totp::provisioning_uri(&secret, ISSUER, &p.user.email)?;
        self.record(
            self.event("mfa_setup_started", Outcome::Success, ctx, now)
                .actor(&p.user.id),
        )
        .await;
        Ok(MfaSetup {
            secret: totp::base32(&secret),
            qr_code: qr_svg(&otpauth_url)?,
            otpauth_url,
        })
    }

    /// `POST /auth/mfa/enable`: confirms the pending secret with a code and
    /// returns fresh backup codes (shown once).
    pub async fn mfa_enable(
        &self,
        p: &Principal,
        code: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Vec<String>, AuthError> {
        let user = self
            .store
            .user_by_id(&p.user.id)
            .await?
            .ok_or_else(|| AuthError::NotFound("no such user".into()))?;
        let Some(sealed) = user.mfa_pending_secret.as_deref() else {
            return Err(AuthError::Invalid("start with POST /auth/mfa/setup".into()));
        };
        let secret = self.open_secret(&user.id, sealed)?;
        let Some(step) = totp::verify(&secret, code, now_u64(now), None) else {
            self.record(
                self.event("mfa_enable", Outcome::Failure, ctx, now)
                    .actor(&user.id),
            )
            .await;
            return Err(AuthError::Unauthenticated(
                "the code is wrong or expired".into(),
            ));
        };
        let (codes, hashes) = self.new_backup_codes().await;
        if !self
            .store
            .enable_mfa(&user.id, step as i64, &hashes, now)
            .await?
        {
            return Err(AuthError::Invalid("start with POST /auth/mfa/setup".into()));
        }
        self.record(
            self.event("mfa_enabled", Outcome::Success, ctx, now)
                .actor(&user.id),
        )
        .await;
        Ok(codes)
    }

    /// Whether MFA is on, and how many backup codes are left.
    pub async fn mfa_status(&self, p: &Principal) -> Result<(bool, i64), AuthError> {
        let left = if p.user.mfa_enabled {
            self.store.backup_codes_left(&p.user.id).await?
        } else {
            0
        };
        Ok((p.user.mfa_enabled, left))
    }

    /// `POST /auth/mfa/disable`: needs a current code or the password.
    pub async fn mfa_disable(
        &self,
        p: &Principal,
        code: Option<&str>,
        backup_code: Option<&str>,
        password: Option<Secret<String>>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        if !p.user.mfa_enabled {
            return Err(AuthError::Invalid("MFA is not enabled".into()));
        }
        if code.is_none() && backup_code.is_none() && password.is_none() {
            return Err(AuthError::Invalid(
                "give a current code (`token`), a `backupCode` or the `password`".into(),
            ));
        }
        self.prove(p, "mfa_disable", ctx, now, |u| async move {
            match (code, backup_code, password) {
                (Some(c), _, _) => self.check_totp(&u, c, now).await,
                (None, Some(b), _) => self.spend_backup_code(&u, b, now).await,
                (None, None, Some(pw)) => {
                    Ok(self.hasher.verify(pw, Some(u.password_hash)).await?.ok)
                }
                (None, None, None) => Ok(false),
            }
        })
        .await?;
        self.store.disable_mfa(&p.user.id, now).await?;
        self.record(
            self.event("mfa_disabled", Outcome::Success, ctx, now)
                .actor(&p.user.id),
        )
        .await;
        Ok(())
    }

    /// Uses one of the user's backup codes; false if it is not one (or spent).
    async fn spend_backup_code(&self, u: &User, code: &str, now: i64) -> Result<bool, AuthError> {
        Ok(self
            .store
            .use_backup_code(&u.id, &backup_digest(code), now)
            .await?)
    }

    /// `POST /auth/mfa/verify` and `/auth/mfa/backup/verify` (the original
    /// Truxe's step-up): proves the signed-in user holds their second factor
    /// now. A wrong code is a failed proof like any other (audited, counted
    /// toward the lockout); a right one is audited as `mfa_verified`. A
    /// TOTP code or backup code works once, as at sign-in.
    pub async fn mfa_step_up(
        &self,
        p: &Principal,
        factor: SecondFactor<'_>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        if !p.user.mfa_enabled {
            return Err(AuthError::Invalid("MFA is not enabled".into()));
        }
        let method = match factor {
            SecondFactor::Totp(_) => "totp",
            SecondFactor::BackupCode(_) => "backup_code",
            // A passkey answers a sign-in (its ceremony is bound to one).
            SecondFactor::Passkey { .. } => {
                return Err(AuthError::Invalid(
                    "step-up takes a TOTP or backup code".into(),
                ))
            }
        };
        self.prove(p, "mfa_verify", ctx, now, |u| async move {
            match factor {
                SecondFactor::Totp(c) => self.check_totp(&u, c, now).await,
                SecondFactor::BackupCode(c) => self.spend_backup_code(&u, c, now).await,
                SecondFactor::Passkey { .. } => Ok(false),
            }
        })
        .await?;
        let e = self
            .event("mfa_verified", Outcome::Success, ctx, now)
            .actor(&p.user.id)
            .target(&p.session.id);
        self.record(e.details(serde_json::json!({ "method": method })))
            .await;
        Ok(())
    }

    /// `POST /auth/mfa/backup/regenerate`: new codes (the old ones die); needs a current code.
    pub async fn mfa_regenerate_backup(
        &self,
        p: &Principal,
        code: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Vec<String>, AuthError> {
        if !p.user.mfa_enabled {
            return Err(AuthError::Invalid("MFA is not enabled".into()));
        }
        self.prove(p, "mfa_backup_codes_regenerate", ctx, now, |u| async move {
            self.check_totp(&u, code, now).await
        })
        .await?;
        let (codes, hashes) = self.new_backup_codes().await;
        self.store.replace_backup_codes(&p.user.id, &hashes).await?;
        self.record(
            self.event("mfa_backup_codes_regenerated", Outcome::Success, ctx, now)
                .actor(&p.user.id),
        )
        .await;
        Ok(codes)
    }

    /// Issues a login challenge after a correct password.
    pub(super) async fn start_challenge(
        &self,
        user: &User,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<String, AuthError> {
        let c = Challenge {
            id: token::generate("mfa_").plaintext.expose().clone(),
            user_id: user.id.clone(),
            created_at: now,
            expires_at: now + CHALLENGE_TTL_SECS,
            ip: ctx.ip.clone(),
            user_agent: ctx.user_agent.clone(),
        };
        self.store.create_challenge(&c).await?;
        self.record(
            self.event("mfa_challenge_issued", Outcome::Success, ctx, now)
                .actor(&user.id),
        )
        .await;
        Ok(c.id)
    }

    /// `POST /auth/mfa/challenge/verify`: the second factor completes the login.
    pub async fn mfa_verify_challenge(
        &self,
        challenge_id: &str,
        factor: SecondFactor<'_>,
        ctx: ClientInfo,
        now: i64,
    ) -> Result<(User, Tokens), AuthError> {
        let dead = || {
            AuthError::Unauthenticated(
                "the challenge is unknown, expired, used or out of attempts; log in again".into(),
            )
        };
        if challenge_id.len() > 128 {
            return Err(dead());
        }
        let c = self
            .store
            .attempt_challenge(challenge_id, now, CHALLENGE_ATTEMPTS)
            .await?
            .ok_or_else(dead)?;
        let user = self.store.user_by_id(&c.user_id).await?.ok_or_else(dead)?;
        let (ok, method) = match factor {
            SecondFactor::Totp(code) => (self.check_totp(&user, code, now).await?, "totp"),
            SecondFactor::BackupCode(code) => (
                self.spend_backup_code(&user, code, now).await?,
                "backup_code",
            ),
            SecondFactor::Passkey {
                ceremony_id,
                credential,
            } => (
                self.passkey_second_factor(&c.id, &user.id, ceremony_id, credential, now)
                    .await?,
                "passkey",
            ),
        };
        if !ok {
            let e = self
                .event("login", Outcome::Failure, &ctx, now)
                .actor(&user.id);
            self.record(
                e.details(serde_json::json!({"reason": "wrong_second_factor", "method": method})),
            )
            .await;
            return Err(AuthError::Unauthenticated(
                "the code is wrong or already used".into(),
            ));
        }
        if !self.store.finish_challenge(&c.id, now).await? {
            return Err(dead());
        }
        let e = self
            .event("login", Outcome::Success, &ctx, now)
            .actor(&user.id)
            .details(serde_json::json!({"mfa": method}));
        let tokens = self.start_session(&user, ctx, now, e, None).await?;
        Ok((user, tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_codes_are_random_and_forgiving() {
        let a = new_backup_code();
        assert_eq!(a.len(), 19);
        assert_ne!(a, new_backup_code());
        assert_eq!(
            backup_digest(&a),
            backup_digest(&a.to_uppercase().replace('-', " "))
        );
    }
}
