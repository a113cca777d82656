//! The admin console's gate, and the signing-key actions it offers beside
//! the admin API's (the rest it does through the admin service itself).

use secure::audit::Outcome;
use secure::keystore::{KeyEntry, KeyStore};

use super::auth::{ClientInfo, Principal};
use super::oidc::BrowserSignIn;
use super::policy::RoleDef;
use super::{AuthError, AuthService};
use crate::model::{Delivery, Membership, Organization, WebhookEndpoint};
use crate::repo::DeliveryFilter;

/// How long a console sign-in lasts before the console asks again.
pub const CONSOLE_MAX_AGE: i64 = 8 * 3600;

/// What the console shows of one organization.
#[derive(Debug)]
pub struct OrgOverview {
    /// The organization.
    pub org: Organization,
    /// Members with their address (the first 200).
    pub members: Vec<(Membership, String)>,
    /// Its own roles (beside the built-in ones).
    pub roles: Vec<RoleDef>,
    /// Its webhook endpoints.
    pub endpoints: Vec<WebhookEndpoint>,
    /// Its 50 newest deliveries.
    pub deliveries: Vec<Delivery>,
}

/// Whether a browser's sign-in may use the console.
#[derive(Debug)]
pub enum ConsoleAccess {
    /// An administrator, signed in with two factors, recently.
    Granted(Box<Principal>),
    /// Not a system administrator.
    NotAdmin,
    /// Signed in with one factor; `has_factor`: the account has a second
    /// one to sign in with (else it must set one up first).
    NeedsSecondFactor {
        /// TOTP or a passkey is set up.
        has_factor: bool,
    },
    /// Signed in longer ago than [`CONSOLE_MAX_AGE`].
    Stale,
}

impl AuthService {
    /// Decides whether `who` may use the console now.
    pub async fn console_access(
        &self,
        who: &BrowserSignIn,
        now: i64,
    ) -> Result<ConsoleAccess, AuthError> {
        if !who.user.is_admin {
            return Ok(ConsoleAccess::NotAdmin);
        }
        if !who.amr.iter().any(|m| m == "otp" || m == "hwk") {
            return Ok(ConsoleAccess::NeedsSecondFactor {
                has_factor: self.needs_second_factor(&who.user).await?,
            });
        }
        if now - who.auth_time > CONSOLE_MAX_AGE {
            return Ok(ConsoleAccess::Stale);
        }
        match self.browser_principal(who, now).await? {
            Some(p) => Ok(ConsoleAccess::Granted(Box::new(p))),
            None => Ok(ConsoleAccess::Stale),
        }
    }

    /// The principal of a browser's sign-in while its session lives, for
    /// the pages that act through the services the API uses.
    pub async fn browser_principal(
        &self,
        who: &BrowserSignIn,
        now: i64,
    ) -> Result<Option<Principal>, AuthError> {
        let session = self
            .store
            .session(&who.session_id)
            .await?
            .filter(|s| s.is_live(now));
        Ok(session.map(|session| Principal {
            user: who.user.clone(),
            jti: format!("browser:{}", session.id),
            session,
        }))
    }

    /// Organizations by name or slug (administrators).
    pub async fn admin_orgs(
        &self,
        p: &Principal,
        query: Option<&str>,
    ) -> Result<Vec<Organization>, AuthError> {
        self.require_admin(p)?;
        Ok(self.store.search_orgs(query, 100).await?)
    }

    /// One organization with its members, roles, webhooks and newest
    /// deliveries (administrators).
    pub async fn admin_org(&self, p: &Principal, id: &str) -> Result<OrgOverview, AuthError> {
        self.require_admin(p)?;
        let org = self
            .store
            .org(id)
            .await?
            .ok_or_else(|| AuthError::NotFound("no such organization".into()))?;
        let filter = DeliveryFilter {
            org_id: org.id.clone(),
            endpoint_id: None,
            status: None,
            before: None,
            limit: 50,
        };
        Ok(OrgOverview {
            members: self.store.members(&org.id, None, 200).await?,
            roles: self.store.custom_roles(&org.id).await?,
            endpoints: self.store.endpoints(&org.id).await?,
            deliveries: self.store.deliveries(&filter).await?,
            org,
        })
    }

    /// Sends a delivery again from its first attempt (administrators);
    /// audited as `webhook_delivery_retried`. Its organization, for the page.
    pub async fn admin_retry_delivery(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<String, AuthError> {
        self.require_admin(p)?;
        let d = self
            .store
            .delivery(id)
            .await?
            .ok_or_else(|| AuthError::NotFound("no such delivery".into()))?;
        if !self.store.requeue(id, now).await? {
            return Err(AuthError::Invalid(
                "the delivery is being sent right now; try again in a moment".into(),
            ));
        }
        self.webhook_wake().notify_one();
        let e = self
            .event("webhook_delivery_retried", Outcome::Success, ctx, now)
            .actor(&p.user.id)
            .target(id);
        self.record(e.details(serde_json::json!({"org_id": d.org_id, "event": d.event})))
            .await;
        Ok(d.org_id)
    }

    fn managed_keys(&self) -> Result<KeyStore, AuthError> {
        if self.cfg.private_key_file.is_some() || self.cfg.private_key_pem.is_some() {
            return Err(AuthError::Invalid(
                "a fixed signing key is set (JWT_PRIVATE_KEY…); it is not rotated here".into(),
            ));
        }
        Ok(KeyStore::new(self.cfg.keys_dir()))
    }

    /// The signing keys (administrators): active, retiring and retired.
    pub fn signing_keys(&self, p: &Principal) -> Result<Vec<KeyEntry>, AuthError> {
        self.require_admin(p)?;
        match self.managed_keys() {
            Ok(store) => store
                .entries()
                .map_err(|e| AuthError::Internal(e.to_string())),
            // A fixed key is not listed as managed ones are.
            Err(_) => Ok(Vec::new()),
        }
    }

    /// Starts signing with a new key; the old one stays published until
    /// its tokens expire. Audited as `key_rotated`.
    pub async fn rotate_signing_key(
        &self,
        p: &Principal,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<String, AuthError> {
        self.require_admin(p)?;
        let store = self.managed_keys()?;
        let (_, new) = store
            .rotate(self.cfg.algorithm, u64::try_from(now).unwrap_or(0))
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        self.keys_changed().await;
        let e = self
            .event("key_rotated", Outcome::Success, ctx, now)
            .actor(&p.user.id)
            .target(&new);
        self.record(e.details(serde_json::json!({"alg": self.cfg.algorithm.as_str()})))
            .await;
        Ok(new)
    }

    /// Retires a key at once: tokens it signed are refused from now on.
    /// Audited as `key_retired`.
    pub async fn retire_signing_key(
        &self,
        p: &Principal,
        kid: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.require_admin(p)?;
        let store = self.managed_keys()?;
        store
            .retire(kid)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        self.keys_changed().await;
        let e = self
            .event("key_retired", Outcome::Success, ctx, now)
            .actor(&p.user.id)
            .target(kid);
        self.record(e).await;
        Ok(())
    }

    /// Reloads the key ring now rather than at the next watch.
    async fn keys_changed(&self) {
        let keys = self.keys.clone();
        let _ = tokio::task::spawn_blocking(move || keys.refresh()).await;
    }
}
