//! Passkeys (WebAuthn, through webauthn-rs): registration by a signed-in
//! user, sign-in with a passkey as the first factor (email first, then the
//! passkey; user verification required, so it stands for two factors), and
//! a passkey as the second factor after a password.
//!
//! Each ceremony's server half (its challenge) is stored in the database
//! and used once, so it holds across instances and restarts; the browser
//! only ever gets the options and a random ceremony id.

use secure::audit::Outcome;
use secure::token;
use serde_json::{json, Value};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::auth::normalize_email;
use super::{AuthError, AuthService, ClientInfo, Tokens};
use crate::model::{Ceremony, PasskeyRecord, User};

/// How long a browser has to answer a ceremony.
const CEREMONY_TTL: i64 = 300;
/// How recent a sign-in must be to add a passkey.
pub const RECENT_SIGN_IN: i64 = 15 * 60;
/// Passkeys one account may hold.
const MAX_PASSKEYS: usize = 20;
/// Longest JSON an authenticator's answer may be.
const MAX_CREDENTIAL_JSON: usize = 64 * 1024;

/// The relying party for `public_url`, if passkeys can work there: the
/// WebAuthn ID must be a domain name (browsers refuse IP addresses), and
/// the pages' origin is the only origin accepted.
pub fn relying_party(public_url: &str, name: &str) -> Result<Webauthn, String> {
    let url = Url::parse(public_url).map_err(|e| format!("{public_url}: {e}"))?;
    let Some(url::Host::Domain(host)) = url.host() else {
        return Err(format!(
            "{public_url} names its host by address; passkeys need a domain name (localhost will do for trials)"
        ));
    };
    WebauthnBuilder::new(host, &url)
        .and_then(|b| b.rp_name(name).build())
        .map_err(|e| format!("{public_url}: {e}"))
}

/// Options to hand the browser, and the id to send back with its answer.
#[derive(Debug, Clone)]
pub struct Ceremonial {
    /// `webauthn_ceremonies.id`.
    pub ceremony_id: String,
    /// `{"publicKey": …}` for `navigator.credentials.create/get`.
    pub options: Value,
}

/// A passkey as its owner sees it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PasskeyView {
    /// Its id.
    pub id: String,
    /// The owner's name for it.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, if it was ever used to sign in.
    pub last_used_at: Option<String>,
    /// May be synced to the owner's other devices.
    pub backup_eligible: bool,
    /// Is synced now.
    pub backed_up: bool,
}

impl From<&PasskeyRecord> for PasskeyView {
    fn from(p: &PasskeyRecord) -> Self {
        PasskeyView {
            id: p.id.clone(),
            name: p.name.clone(),
            created_at: crate::model::rfc3339(p.created_at),
            last_used_at: p.last_used_at.map(crate::model::rfc3339),
            backup_eligible: p.backup_eligible,
            backed_up: p.backed_up,
        }
    }
}

/// The WebAuthn user handle of a user: its id when that is a UUID (every
/// account made here), else one derived from it (imported ids).
fn user_handle(user: &User) -> Uuid {
    Uuid::parse_str(&user.id).unwrap_or_else(|_| {
        use sha2::Digest;
        let d = sha2::Sha256::digest(format!("truxe-user:{}", user.id).as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        Uuid::from_bytes(b)
    })
}

/// The relying party id: the host of the public URL.
fn rp_id(public_url: &str) -> String {
    Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Options for an address without passkeys, shaped as webauthn-rs shapes
/// real ones (a test compares them), naming a credential nobody holds.
fn decoy_options(rp_id: &str, credential: &str) -> Value {
    use base64::Engine;
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(token::generate("").digest.as_bytes());
    json!({"publicKey": {
        "challenge": challenge,
        "timeout": 300_000,
        "rpId": rp_id,
        "allowCredentials": [{"type": "public-key", "id": credential}],
        "userVerification": "required",
    }})
}

/// The credential id as stored: the JSON string webauthn-rs writes for it.
fn credential_id(pk: &Passkey) -> String {
    match serde_json::to_value(pk.cred_id()) {
        Ok(Value::String(s)) => s,
        other => other.map(|v| v.to_string()).unwrap_or_default(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T, AuthError> {
    if json.len() > MAX_CREDENTIAL_JSON {
        return Err(AuthError::Invalid(format!("{what} is too large")));
    }
    serde_json::from_str(json).map_err(|e| AuthError::Invalid(format!("{what} is malformed: {e}")))
}

fn expired() -> AuthError {
    AuthError::Unauthenticated(
        "the passkey request expired, was used, or is not yours; start again".into(),
    )
}

impl AuthService {
    /// Whether passkeys work on this server (its public URL has a domain name).
    pub fn passkeys_available(&self) -> bool {
        self.webauthn.is_some()
    }

    fn rp(&self) -> Result<&Webauthn, AuthError> {
        self.webauthn.as_deref().ok_or_else(|| {
            AuthError::Invalid(
                "passkeys are not available: the server's public URL (TRUXE_PUBLIC_URL or JWT_ISSUER) must name a domain".into(),
            )
        })
    }

    /// Whether a correct password is not enough for `user`: TOTP is on, or
    /// the user has a passkey.
    pub(super) async fn needs_second_factor(&self, user: &User) -> Result<bool, AuthError> {
        let has_passkeys = !user.mfa_enabled && self.store.has_passkeys(&user.id).await?;
        Ok(second_factor(user, has_passkeys))
    }

    async fn ceremony(
        &self,
        user_id: Option<&str>,
        purpose: &str,
        bound_to: Option<&str>,
        state: String,
        options: Value,
        now: i64,
    ) -> Result<Ceremonial, AuthError> {
        let c = Ceremony {
            id: token::generate("").digest,
            user_id: user_id.map(str::to_owned),
            purpose: purpose.into(),
            bound_to: bound_to.map(str::to_owned),
            state,
            expires_at: now + CEREMONY_TTL,
        };
        self.store.put_ceremony(&c, now).await?;
        Ok(Ceremonial {
            ceremony_id: c.id,
            options,
        })
    }

    /// The user's passkeys.
    pub async fn passkeys(&self, user: &User) -> Result<Vec<PasskeyView>, AuthError> {
        Ok(self
            .store
            .passkeys(&user.id)
            .await?
            .iter()
            .map(PasskeyView::from)
            .collect())
    }

    /// Starts registering a passkey for `user` (the ones it has are
    /// excluded, so one authenticator is not registered twice).
    pub async fn passkey_register_options(
        &self,
        user: &User,
        now: i64,
    ) -> Result<Ceremonial, AuthError> {
        let rp = self.rp()?;
        let have = self.stored_passkeys(&user.id).await?;
        if have.len() >= MAX_PASSKEYS {
            return Err(AuthError::Invalid(format!(
                "an account holds at most {MAX_PASSKEYS} passkeys; remove one first"
            )));
        }
        let exclude = have.iter().map(|(_, pk)| pk.cred_id().clone()).collect();
        let (options, state) = rp
            .start_passkey_registration(user_handle(user), &user.email, &user.email, Some(exclude))
            .map_err(|e| AuthError::Invalid(format!("cannot start a registration: {e}")))?;
        let state = serde_json::to_string(&state)?;
        let options = serde_json::to_value(options)?;
        self.ceremony(Some(&user.id), "register", None, state, options, now)
            .await
    }

    /// Finishes a registration with the authenticator's answer
    /// (`credential`, the JSON of a `PublicKeyCredential`). Only a recent
    /// sign-in (`signed_in_at`) may add one: a stolen session must not be
    /// able to plant a lasting way in.
    #[allow(clippy::too_many_arguments)]
    pub async fn passkey_register(
        &self,
        user: &User,
        signed_in_at: i64,
        ceremony_id: &str,
        name: &str,
        credential: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<PasskeyView, AuthError> {
        let rp = self.rp()?;
        if now - signed_in_at > RECENT_SIGN_IN {
            return Err(AuthError::Unauthenticated(format!(
                "sign in again to add a passkey (a sign-in of the last {} minutes is needed)",
                RECENT_SIGN_IN / 60
            )));
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(AuthError::Invalid(
                "name the passkey in 1 to 64 characters (\"laptop\", \"phone\")".into(),
            ));
        }
        let c = self
            .store
            .take_ceremony(ceremony_id, now)
            .await?
            .filter(|c| c.purpose == "register" && c.user_id.as_deref() == Some(&user.id))
            .ok_or_else(expired)?;
        let state: PasskeyRegistration = parse(&c.state, "the ceremony")?;
        let answer: RegisterPublicKeyCredential = parse(credential, "the authenticator's answer")?;
        let pk = rp
            .finish_passkey_registration(&answer, &state)
            .map_err(|e| {
                AuthError::Invalid(format!("the authenticator's answer did not verify: {e}"))
            })?;
        let json = serde_json::to_string(&pk)?;
        let flags: Value = serde_json::from_str(&json).unwrap_or_default();
        let record = PasskeyRecord {
            id: token::random_uuid(),
            user_id: user.id.clone(),
            credential_id: credential_id(&pk),
            name: name.to_owned(),
            passkey: json,
            backup_eligible: flags["cred"]["backup_eligible"] == true,
            backed_up: flags["cred"]["backup_state"] == true,
            created_at: now,
            last_used_at: None,
        };
        match self.store.add_passkey(&record).await {
            Err(crate::repo::RepoError::Conflict) => {
                return Err(AuthError::Invalid(
                    "this passkey is registered already".into(),
                ))
            }
            other => other?,
        }
        let e = self
            .event("passkey_registered", Outcome::Success, ctx, now)
            .actor(&user.id);
        self.record(e.details(json!({"passkey_id": record.id, "name": record.name})))
            .await;
        Ok(PasskeyView::from(&record))
    }

    /// Removes one of the user's passkeys.
    pub async fn passkey_remove(
        &self,
        user: &User,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        if !self.store.delete_passkey(&user.id, id).await? {
            return Err(AuthError::NotFound("passkey".into()));
        }
        let e = self
            .event("passkey_removed", Outcome::Success, ctx, now)
            .actor(&user.id);
        self.record(e.details(json!({"passkey_id": id}))).await;
        Ok(())
    }

    async fn stored_passkeys(
        &self,
        user_id: &str,
    ) -> Result<Vec<(PasskeyRecord, Passkey)>, AuthError> {
        let mut out = Vec::new();
        for r in self.store.passkeys(user_id).await? {
            match serde_json::from_str::<Passkey>(&r.passkey) {
                Ok(pk) => out.push((r, pk)),
                Err(e) => {
                    tracing::error!(passkey_id = %r.id, error = %e, "unreadable stored passkey")
                }
            }
        }
        Ok(out)
    }

    /// Options asking for one of `user`'s passkeys; an address with no
    /// account or no passkey gets options that look the same (a stand-in
    /// credential id derived from the address), so the answer does not
    /// tell which addresses have accounts.
    async fn authentication_options(
        &self,
        email: &str,
        user: Option<&User>,
        purpose: &str,
        bound_to: Option<&str>,
        now: i64,
    ) -> Result<Ceremonial, AuthError> {
        let rp = self.rp()?;
        let have = match user {
            Some(u) => self.stored_passkeys(&u.id).await?,
            None => Vec::new(),
        };
        let keys: Vec<Passkey> = have.into_iter().map(|(_, pk)| pk).collect();
        if keys.is_empty() {
            let decoy =
                secure::mac::sign_hex(&self.decoy_key, format!("passkey-decoy:{email}").as_bytes());
            let options = decoy_options(&rp_id(&self.cfg.public_url), &decoy);
            return self
                .ceremony(None, purpose, bound_to, String::new(), options, now)
                .await;
        }
        let (options, state) = rp
            .start_passkey_authentication(&keys)
            .map_err(|e| AuthError::Invalid(format!("cannot start a passkey sign-in: {e}")))?;
        let state = serde_json::to_string(&state)?;
        let options = serde_json::to_value(options)?;
        self.ceremony(
            user.map(|u| u.id.as_str()),
            purpose,
            bound_to,
            state,
            options,
            now,
        )
        .await
    }

    /// Checks the browser's answer to a ceremony of `purpose`: the user and
    /// the passkey that signed (its counter and backup state updated), or
    /// `None` when the answer does not verify. Errors: the ceremony is not
    /// live, the answer is malformed.
    async fn verify_passkey(
        &self,
        ceremony_id: &str,
        purpose: &str,
        bound_to: Option<&str>,
        credential: &str,
        now: i64,
    ) -> Result<Option<(User, String)>, AuthError> {
        let rp = self.rp()?;
        let c = self
            .store
            .take_ceremony(ceremony_id, now)
            .await?
            .filter(|c| c.purpose == purpose && c.bound_to.as_deref() == bound_to)
            .ok_or_else(expired)?;
        let answer: PublicKeyCredential = parse(credential, "the authenticator's answer")?;
        // A decoy ceremony (no account, or no passkey) fails like a wrong key.
        let Some(user_id) = c.user_id.filter(|_| !c.state.is_empty()) else {
            return Ok(None);
        };
        let state: PasskeyAuthentication = parse(&c.state, "the ceremony")?;
        let Ok(result) = rp.finish_passkey_authentication(&answer, &state) else {
            return Ok(None);
        };
        let Some(user) = self.store.user_by_id(&user_id).await? else {
            return Ok(None);
        };
        let mut stored = self.stored_passkeys(&user.id).await?;
        let Some((record, pk)) = stored
            .iter_mut()
            .find(|(_, pk)| pk.cred_id() == result.cred_id())
        else {
            // Removed between the options and the answer.
            return Ok(None);
        };
        pk.update_credential(&result);
        let json = serde_json::to_string(&*pk)?;
        self.store
            .passkey_used(&record.id, &json, result.backup_state(), now)
            .await?;
        Ok(Some((user, record.id.clone())))
    }

    /// Starts a sign-in with a passkey for the account of `email`.
    pub async fn passkey_login_options(
        &self,
        email: &str,
        now: i64,
    ) -> Result<Ceremonial, AuthError> {
        let email = normalize_email(email)?;
        let user = self
            .store
            .user_by_email(&email)
            .await?
            .filter(|u| u.status == "active");
        self.authentication_options(&email, user.as_ref(), "login", None, now)
            .await
    }

    /// Finishes a sign-in with a passkey: a session, as a password and a
    /// second factor would give.
    pub async fn passkey_login(
        &self,
        ceremony_id: &str,
        credential: &str,
        ctx: ClientInfo,
        now: i64,
    ) -> Result<(User, Tokens), AuthError> {
        let verified = self
            .verify_passkey(ceremony_id, "login", None, credential, now)
            .await;
        let (user, passkey_id) = match verified {
            Ok(Some(x)) => x,
            other => {
                let ev = self.event("login", Outcome::Failure, &ctx, now);
                self.record(ev.details(json!({"reason": "passkey_rejected", "method": "passkey"})))
                    .await;
                other?;
                return Err(AuthError::Unauthenticated(
                    "the passkey was not accepted".into(),
                ));
            }
        };
        if user.status != "active" {
            return Err(AuthError::Disabled);
        }
        let e = self
            .event("login", Outcome::Success, &ctx, now)
            .actor(&user.id)
            .details(json!({"method": "passkey", "passkey_id": passkey_id}));
        let tokens = self.start_session(&user, ctx, now, e, None).await?;
        Ok((user, tokens))
    }

    /// The second factors a login challenge may be answered with: whether
    /// TOTP (and backup codes) work, and passkey options when the user has
    /// a passkey.
    pub async fn second_factor_options(
        &self,
        challenge_id: &str,
        now: i64,
    ) -> Result<(bool, Option<Ceremonial>), AuthError> {
        let c = self
            .store
            .live_challenge(challenge_id, now, super::mfa::CHALLENGE_ATTEMPTS)
            .await?
            .ok_or_else(expired)?;
        let user = self
            .store
            .user_by_id(&c.user_id)
            .await?
            .ok_or_else(expired)?;
        let passkey = if self.passkeys_available() && self.store.has_passkeys(&user.id).await? {
            Some(
                self.authentication_options(
                    &user.email,
                    Some(&user),
                    "mfa",
                    Some(challenge_id),
                    now,
                )
                .await?,
            )
        } else {
            None
        };
        Ok((user.mfa_enabled, passkey))
    }

    /// Checks a passkey answering login challenge `challenge_id`; the user
    /// whose challenge it is.
    pub(super) async fn passkey_second_factor(
        &self,
        challenge_id: &str,
        user_id: &str,
        ceremony_id: &str,
        credential: &str,
        now: i64,
    ) -> Result<bool, AuthError> {
        Ok(self
            .verify_passkey(ceremony_id, "mfa", Some(challenge_id), credential, now)
            .await?
            .is_some_and(|(user, _)| user.id == user_id))
    }
}

/// [`AuthService::needs_second_factor`] once whether `user` has a passkey
/// is known.
pub(super) fn second_factor(user: &User, has_passkeys: bool) -> bool {
    user.mfa_enabled || has_passkeys
}
