//! Machine identities: service accounts of an organization, their API keys
//! (`truxe_sk_<live|test>_<id>_<secret>`) and short-lived client-credential
//! tokens; and [`Caller`], the identity of any organization-scoped call,
//! a user or a service account alike.
//!
//! A key holds the permissions it was given, narrowed at every use to its
//! account's current ones, so shrinking or disabling an account acts on
//! its keys and tokens from the next request.

use std::collections::BTreeSet;
use std::net::IpAddr;

use secure::audit::Outcome;
use secure::{token, Secret};
use serde::{Deserialize, Serialize};

use super::auth::{ClientInfo, Principal};
use super::org::Grant;
use super::policy::{self, perm};
use super::{AuthError, AuthService};
use crate::model::{ApiKey, ServiceAccount};
use crate::repo::RepoError;

/// Client secrets of service accounts start with this.
const CLIENT_SECRET_PREFIX: &str = "truxe_cs_";
/// Every API key starts with this.
pub const API_KEY_PREFIX: &str = "truxe_sk_";
/// Length of a key's public id (hex).
const KEY_ID_LEN: usize = 16;

/// Who makes an organization-scoped call.
#[derive(Debug, Clone)]
// One per request, moved rarely: boxing the user would cost an allocation
// per request for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Caller {
    /// A signed-in user.
    User(Principal),
    /// A service account, by API key or client-credentials token.
    Service(ServiceCaller),
    /// A system administrator acting on any organization from the admin
    /// console (signed in there with two factors): every permission,
    /// audited as the administrator. Never made from an API token.
    Admin(Principal),
}

/// A service account at work.
#[derive(Debug, Clone)]
pub struct ServiceCaller {
    /// The account.
    pub account: ServiceAccount,
    /// The key used, if any (none for a client-credentials token).
    pub key_id: Option<String>,
    /// Key environment: `live` or `test`.
    pub environment: String,
    /// Effective permissions: the key's or token's, narrowed to the account's.
    pub permissions: BTreeSet<String>,
    /// Rate-limit tier of the key.
    pub rate_tier: String,
}

impl Caller {
    /// The actor id recorded in audit events.
    pub fn actor(&self) -> String {
        match self {
            Caller::User(p) | Caller::Admin(p) => p.user.id.clone(),
            Caller::Service(s) => format!("service_account:{}", s.account.id),
        }
    }

    /// The user, when a user calls.
    pub fn user(&self) -> Option<&Principal> {
        match self {
            Caller::User(p) | Caller::Admin(p) => Some(p),
            Caller::Service(_) => None,
        }
    }

    /// The organization a call is about: the one named, else the session's
    /// current organization, else a service account's own.
    pub fn org_context(&self, named: Option<&str>) -> Result<String, AuthError> {
        match (named, self) {
            (Some(o), _) => Ok(o.to_owned()),
            (None, Caller::User(p)) => p.session.org_id.clone().ok_or_else(|| {
                AuthError::Invalid("give `orgId`, or switch to an organization first".into())
            }),
            (None, Caller::Service(s)) => Ok(s.account.org_id.clone()),
            (None, Caller::Admin(_)) => Err(AuthError::Invalid("name the organization".into())),
        }
    }
}

/// Claims of a client-credentials access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ServiceClaims {
    iss: String,
    aud: String,
    /// The service account id.
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    /// Always `service`: tells these apart from user tokens.
    token_use: String,
    org_id: String,
    permissions: Vec<String>,
    /// `["service"]`, for services that map roles (Torua).
    roles: Vec<String>,
}

/// Fields of a new or changed service account.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccountInput {
    /// Organization (on create; default: the session's current one).
    #[serde(default)]
    pub org_id: Option<String>,
    /// Unique name in the organization.
    #[serde(default)]
    pub name: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// The most its keys may hold.
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// `active` or `disabled` (on update).
    #[serde(default)]
    pub status: Option<String>,
}

/// A new API key's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeyInput {
    /// Label.
    #[serde(default)]
    pub name: Option<String>,
    /// `live` (default) or `test`.
    #[serde(default)]
    pub environment: Option<String>,
    /// Permissions (default: the account's).
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// Lifetime in seconds (default: no expiry).
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// Allowed source networks, CIDR (default: any).
    #[serde(default)]
    pub allowed_cidrs: Option<Vec<String>>,
    /// `low`, `standard` (default) or `high`.
    #[serde(default)]
    pub rate_limit_tier: Option<String>,
}

/// Rate-limit tiers of API keys and their quotas.
pub const RATE_TIERS: [(&str, &str); 3] = [
    ("low", "60/1m"),
    ("standard", "600/1m"),
    ("high", "6000/1m"),
];

fn not_found() -> AuthError {
    AuthError::NotFound("no such service account".into())
}

fn no_key() -> AuthError {
    AuthError::NotFound("no such API key".into())
}

fn bad_key() -> AuthError {
    AuthError::Unauthenticated("API key is invalid".into())
}

fn check_permissions(list: &[String]) -> Result<BTreeSet<String>, AuthError> {
    if list.len() > 100 {
        return Err(AuthError::Invalid("at most 100 permissions".into()));
    }
    if let Some(bad) = list.iter().find(|p| !policy::valid_permission(p)) {
        return Err(AuthError::Invalid(format!(
            "`{bad}` is not a permission (`resource:action`, `resource:*` or `*`)"
        )));
    }
    Ok(list.iter().cloned().collect())
}

fn check_label(what: &str, v: &str, max: usize) -> Result<String, AuthError> {
    let v = v.trim();
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(AuthError::Invalid(format!(
            "{what} must be 1 to {max} characters, without control characters"
        )));
    }
    Ok(v.to_owned())
}

/// Splits `truxe_sk_<env>_<id>_<secret>` into environment and id, checking
/// the shape before any database lookup.
fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (env, rest) = rest.split_once('_')?;
    if env != "live" && env != "test" {
        return None;
    }
    let id = rest.get(..KEY_ID_LEN)?;
    let secret = rest.get(KEY_ID_LEN..)?.strip_prefix('_')?;
    let ok = id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some((env, id))
}

fn new_key_id() -> String {
    token::random_uuid().replace('-', "")[..KEY_ID_LEN].to_owned()
}

impl AuthService {
    /// Authenticates any bearer credential: an API key, a client-credentials
    /// token, or a user's access token.
    pub async fn authenticate_caller(
        &self,
        bearer: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<Caller, AuthError> {
        if bearer.starts_with(API_KEY_PREFIX) {
            return self
                .authenticate_key(bearer, ip, now)
                .await
                .map(Caller::Service);
        }
        let claims = self
            .keys
            .verify(bearer, now)
            .map_err(|e| AuthError::Unauthenticated(e.to_string()))?;
        if claims["token_use"] == "service" {
            let c: ServiceClaims = serde_json::from_value(claims)
                .map_err(|_| AuthError::Unauthenticated("malformed service token".into()))?;
            let account = self.live_account(&c.sub).await?;
            if account.org_id != c.org_id {
                return Err(AuthError::Unauthenticated("service token is stale".into()));
            }
            return Ok(Caller::Service(ServiceCaller {
                permissions: policy::narrow(&c.permissions, &account.permissions),
                account,
                key_id: None,
                environment: "live".into(),
                rate_tier: "standard".into(),
            }));
        }
        let claims = serde_json::from_value(claims)
            .map_err(|_| AuthError::Unauthenticated("malformed access token".into()))?;
        Ok(Caller::User(self.principal(claims, now).await?))
    }

    async fn live_account(&self, id: &str) -> Result<ServiceAccount, AuthError> {
        match self.store.service_account(id).await? {
            Some((a, _)) if a.status == "active" => Ok(a),
            Some(_) => Err(AuthError::Unauthenticated(
                "service account is disabled".into(),
            )),
            None => Err(AuthError::Unauthenticated(
                "service account no longer exists".into(),
            )),
        }
    }

    async fn authenticate_key(
        &self,
        presented: &str,
        ip: Option<IpAddr>,
        now: i64,
    ) -> Result<ServiceCaller, AuthError> {
        let (env, id) = parse_key(presented).ok_or_else(bad_key)?;
        let key = self.store.api_key(id).await?.ok_or_else(bad_key)?;
        if !token::matches(presented, &key.secret_hash) || key.environment != env {
            return Err(bad_key());
        }
        if !key.is_live(now) {
            return Err(AuthError::Unauthenticated(
                "API key is revoked or expired".into(),
            ));
        }
        let account = self.live_account(&key.service_account_id).await?;
        if !key.allowed_cidrs.is_empty() {
            let allowed = ip.is_some_and(|ip| {
                key.allowed_cidrs
                    .iter()
                    .filter_map(|c| c.parse::<ipnet::IpNet>().ok())
                    .any(|n| n.contains(&ip))
            });
            if !allowed {
                return Err(AuthError::Forbidden(
                    "this API key is not allowed from this address".into(),
                ));
            }
        }
        let ip_text = ip.map(|i| i.to_string());
        self.store
            .touch_api_key(&key.id, ip_text.as_deref(), now)
            .await?;
        Ok(ServiceCaller {
            permissions: policy::narrow(&key.permissions, &account.permissions),
            account,
            key_id: Some(key.id),
            environment: key.environment,
            rate_tier: key.rate_tier,
        })
    }

    /// `POST /api/service-accounts/token`: a short-lived JWT for a service
    /// account, from its client id and secret. Returns (token, seconds).
    pub async fn client_credentials(
        &self,
        client_id: &str,
        client_secret: Secret<String>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(String, u64), AuthError> {
        let invalid = || AuthError::Unauthenticated("client id or secret is wrong".into());
        let found = if client_id.len() <= 64 {
            self.store.service_account(client_id).await?
        } else {
            None
        };
        let Some((account, digest)) = found else {
            return Err(invalid());
        };
        if !token::matches(client_secret.expose(), &digest) {
            let e = self
                .event("service_token", Outcome::Failure, ctx, now)
                .target(&account.id);
            self.record(e).await;
            return Err(invalid());
        }
        if account.status != "active" {
            return Err(AuthError::Disabled);
        }
        let ttl = self.cfg.access_ttl.as_secs().min(3600);
        let claims = ServiceClaims {
            iss: self.cfg.issuer.clone(),
            aud: self.cfg.audience.clone(),
            sub: account.id.clone(),
            iat: now,
            nbf: now,
            exp: now + ttl as i64,
            jti: token::random_uuid(),
            token_use: "service".into(),
            org_id: account.org_id.clone(),
            permissions: account.permissions.clone(),
            roles: vec!["service".into()],
        };
        let e = self
            .event("service_token", Outcome::Success, ctx, now)
            .actor(format!("service_account:{}", account.id))
            .target(&account.org_id);
        self.record(e).await;
        Ok((self.keys.ring().sign(&claims)?, ttl))
    }

    /// An account, if `caller` may do `wanted` in its organization (else
    /// the same 404 as for a missing one, or 403).
    async fn account_for(
        &self,
        c: &Caller,
        id: &str,
        wanted: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(ServiceAccount, Grant), AuthError> {
        let (account, _) = self
            .store
            .service_account(id)
            .await?
            .ok_or_else(not_found)?;
        let grant = self
            .authorize_resource(c, &account.org_id, wanted, not_found, ctx, now)
            .await?;
        Ok((account, grant))
    }

    /// `POST /api/service-accounts`: returns the account and its client
    /// secret (shown once). Its permissions must be within the caller's.
    pub async fn create_service_account(
        &self,
        c: &Caller,
        input: AccountInput,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(ServiceAccount, Secret<String>), AuthError> {
        let org_id = c.org_context(input.org_id.as_deref())?;
        let grant = self
            .authorize(c, &org_id, perm::SERVICE_ACCOUNTS_MANAGE, ctx, now)
            .await?;
        let name = check_label(
            "name",
            input
                .name
                .as_deref()
                .ok_or_else(|| AuthError::Invalid("`name` is required".into()))?,
            100,
        )?;
        let permissions = check_permissions(&input.permissions.unwrap_or_default())?;
        grant.require_covers(&permissions, "give a service account")?;
        let secret = token::generate(CLIENT_SECRET_PREFIX);
        let account = ServiceAccount {
            id: token::random_uuid(),
            org_id,
            name,
            description: input.description.unwrap_or_default(),
            permissions: permissions.into_iter().collect(),
            status: "active".into(),
            created_by: Some(c.actor()),
            created_at: now,
            updated_at: now,
        };
        if account.description.chars().count() > 500 {
            return Err(AuthError::Invalid(
                "description is at most 500 characters".into(),
            ));
        }
        match self
            .store
            .create_service_account(&account, &secret.digest)
            .await
        {
            Err(RepoError::Conflict) => {
                return Err(AuthError::Conflict {
                    code: "name_taken",
                    message: "a service account with this name exists in the organization".into(),
                })
            }
            other => other?,
        }
        self.caller_event(
            "service_account_created",
            c,
            &account.id,
            serde_json::json!({"org_id": account.org_id, "permissions": account.permissions}),
            ctx,
            now,
        )
        .await;
        Ok((account, secret.plaintext))
    }

    /// `GET /api/service-accounts?orgId=`.
    pub async fn service_accounts(
        &self,
        c: &Caller,
        org_id: Option<&str>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Vec<ServiceAccount>, AuthError> {
        let org_id = c.org_context(org_id)?;
        self.authorize(c, &org_id, perm::SERVICE_ACCOUNTS_READ, ctx, now)
            .await?;
        Ok(self.store.service_accounts(&org_id).await?)
    }

    /// `GET /api/service-accounts/{id}`.
    pub async fn service_account(
        &self,
        c: &Caller,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<ServiceAccount, AuthError> {
        Ok(self
            .account_for(c, id, perm::SERVICE_ACCOUNTS_READ, ctx, now)
            .await?
            .0)
    }

    /// `PATCH /api/service-accounts/{id}`. The caller must cover the
    /// account's permissions before and after.
    pub async fn update_service_account(
        &self,
        c: &Caller,
        id: &str,
        input: AccountInput,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<ServiceAccount, AuthError> {
        let (mut account, grant) = self
            .account_for(c, id, perm::SERVICE_ACCOUNTS_MANAGE, ctx, now)
            .await?;
        grant.require_covers(
            &account.permissions.iter().cloned().collect(),
            "change a service account holding",
        )?;
        if input.org_id.is_some() {
            return Err(AuthError::Invalid(
                "a service account cannot move to another organization".into(),
            ));
        }
        if let Some(name) = &input.name {
            account.name = check_label("name", name, 100)?;
        }
        if let Some(d) = input.description {
            account.description = d;
        }
        if let Some(p) = &input.permissions {
            let set = check_permissions(p)?;
            grant.require_covers(&set, "give a service account")?;
            account.permissions = set.into_iter().collect();
        }
        if let Some(s) = &input.status {
            if s != "active" && s != "disabled" {
                return Err(AuthError::Invalid(
                    "status is `active` or `disabled`".into(),
                ));
            }
            account.status = s.clone();
        }
        account.updated_at = now;
        match self.store.update_service_account(&account).await {
            Err(RepoError::Conflict) => {
                return Err(AuthError::Conflict {
                    code: "name_taken",
                    message: "a service account with this name exists in the organization".into(),
                })
            }
            other => other?,
        }
        self.caller_event(
            "service_account_updated",
            c,
            id,
            serde_json::json!({"permissions": account.permissions, "status": account.status}),
            ctx,
            now,
        )
        .await;
        Ok(account)
    }

    /// `DELETE /api/service-accounts/{id}`: its keys stop at once.
    pub async fn delete_service_account(
        &self,
        c: &Caller,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let (account, grant) = self
            .account_for(c, id, perm::SERVICE_ACCOUNTS_MANAGE, ctx, now)
            .await?;
        grant.require_covers(
            &account.permissions.iter().cloned().collect(),
            "delete a service account holding",
        )?;
        self.store.delete_service_account(id).await?;
        self.caller_event(
            "service_account_deleted",
            c,
            id,
            serde_json::json!({}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }

    /// `POST /api/service-accounts/{id}/keys`: the key is returned once.
    pub async fn create_api_key(
        &self,
        c: &Caller,
        account_id: &str,
        input: KeyInput,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(ApiKey, Secret<String>), AuthError> {
        let (account, grant) = self
            .account_for(c, account_id, perm::SERVICE_ACCOUNTS_MANAGE, ctx, now)
            .await?;
        let environment = input.environment.unwrap_or_else(|| "live".into());
        if environment != "live" && environment != "test" {
            return Err(AuthError::Invalid("environment is `live` or `test`".into()));
        }
        let permissions = check_permissions(
            &input
                .permissions
                .unwrap_or_else(|| account.permissions.clone()),
        )?;
        let ceiling: BTreeSet<String> = account.permissions.iter().cloned().collect();
        if let Some(extra) = permissions
            .iter()
            .find(|p| !policy::set_allows(&ceiling, p))
        {
            return Err(AuthError::Invalid(format!(
                "`{extra}` is beyond the service account's permissions"
            )));
        }
        grant.require_covers(&permissions, "issue a key holding")?;
        let cidrs = input.allowed_cidrs.unwrap_or_default();
        if cidrs.len() > 20 {
            return Err(AuthError::Invalid("at most 20 allowed networks".into()));
        }
        let cidrs = cidrs
            .iter()
            .map(|c| {
                c.parse::<ipnet::IpNet>()
                    .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map(|n| n.to_string())
                    .map_err(|_| {
                        AuthError::Invalid(format!("`{c}` is not an address or CIDR network"))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tier = input.rate_limit_tier.unwrap_or_else(|| "standard".into());
        if !RATE_TIERS.iter().any(|(t, _)| *t == tier) {
            return Err(AuthError::Invalid(
                "rateLimitTier is `low`, `standard` or `high`".into(),
            ));
        }
        let expires_at = match input.expires_in {
            Some(0) => return Err(AuthError::Invalid("expiresIn must be positive".into())),
            Some(s) if s > 10 * 365 * 86_400 => {
                return Err(AuthError::Invalid("expiresIn is at most ten years".into()))
            }
            Some(s) => Some(now + s as i64),
            None => None,
        };
        let name = check_label("name", input.name.as_deref().unwrap_or("default"), 100)?;
        let (key, secret) = Self::new_key(
            &account.id,
            &name,
            &environment,
            permissions.into_iter().collect(),
            cidrs,
            &tier,
            expires_at,
            &c.actor(),
            now,
        );
        self.store.create_api_key(&key).await?;
        self.caller_event(
            "api_key_created",
            c,
            &key.id,
            serde_json::json!({"service_account_id": account.id, "environment": key.environment}),
            ctx,
            now,
        )
        .await;
        Ok((key, secret))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_key(
        account_id: &str,
        name: &str,
        environment: &str,
        permissions: Vec<String>,
        allowed_cidrs: Vec<String>,
        tier: &str,
        expires_at: Option<i64>,
        created_by: &str,
        now: i64,
    ) -> (ApiKey, Secret<String>) {
        let id = new_key_id();
        let t = token::generate(&format!("{API_KEY_PREFIX}{environment}_{id}_"));
        let key = ApiKey {
            id,
            service_account_id: account_id.to_owned(),
            name: name.to_owned(),
            environment: environment.to_owned(),
            secret_hash: t.digest,
            permissions,
            allowed_cidrs,
            rate_tier: tier.to_owned(),
            expires_at,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
            replaced_by: None,
            grace_until: None,
            created_by: Some(created_by.to_owned()),
            created_at: now,
        };
        (key, t.plaintext)
    }

    /// `GET /api/service-accounts/{id}/keys`.
    pub async fn api_keys(
        &self,
        c: &Caller,
        account_id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Vec<ApiKey>, AuthError> {
        self.account_for(c, account_id, perm::SERVICE_ACCOUNTS_READ, ctx, now)
            .await?;
        Ok(self.store.api_keys(account_id).await?)
    }

    async fn key_for(
        &self,
        c: &Caller,
        key_id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(ApiKey, ServiceAccount, Grant), AuthError> {
        let key = self.store.api_key(key_id).await?.ok_or_else(no_key)?;
        let (account, grant) = self
            .account_for(
                c,
                &key.service_account_id,
                perm::SERVICE_ACCOUNTS_MANAGE,
                ctx,
                now,
            )
            .await
            .map_err(|e| match e {
                AuthError::NotFound(_) => no_key(),
                other => other,
            })?;
        grant.require_covers(
            &key.permissions.iter().cloned().collect(),
            "manage a key holding",
        )?;
        Ok((key, account, grant))
    }

    /// `POST /api/api-keys/{keyId}/rotate`: a new key with the same
    /// settings; the old one keeps working for `grace` seconds (default
    /// `TRUXE_API_KEY_ROTATION_GRACE`), then stops.
    pub async fn rotate_api_key(
        &self,
        c: &Caller,
        key_id: &str,
        grace: Option<u64>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(ApiKey, Secret<String>, i64), AuthError> {
        let (old, account, _) = self.key_for(c, key_id, ctx, now).await?;
        let grace = grace.unwrap_or(self.cfg.api_key_rotation_grace.as_secs());
        if grace > 30 * 86_400 {
            return Err(AuthError::Invalid(
                "the grace period is at most 30 days".into(),
            ));
        }
        if !old.is_live(now) || old.replaced_by.is_some() {
            return Err(AuthError::Conflict {
                code: "key_not_active",
                message: "only an active, unrotated key can be rotated".into(),
            });
        }
        let grace_until = now + grace as i64;
        let (new, secret) = Self::new_key(
            &account.id,
            &old.name,
            &old.environment,
            old.permissions.clone(),
            old.allowed_cidrs.clone(),
            &old.rate_tier,
            old.expires_at,
            &c.actor(),
            now,
        );
        if !self
            .store
            .rotate_api_key(&old.id, grace_until, &new, now)
            .await?
        {
            return Err(AuthError::Conflict {
                code: "key_not_active",
                message: "the key was revoked or rotated meanwhile".into(),
            });
        }
        self.caller_event(
            "api_key_rotated",
            c,
            &old.id,
            serde_json::json!({"replaced_by": new.id, "grace_until": grace_until}),
            ctx,
            now,
        )
        .await;
        Ok((new, secret, grace_until))
    }

    /// `DELETE /api/api-keys/{keyId}`: stops the key at once (also during
    /// a rotation's grace period).
    pub async fn revoke_api_key(
        &self,
        c: &Caller,
        key_id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.key_for(c, key_id, ctx, now).await?;
        if !self.store.revoke_api_key(key_id, now).await? {
            return Err(AuthError::NotFound("the key is already revoked".into()));
        }
        self.caller_event(
            "api_key_revoked",
            c,
            key_id,
            serde_json::json!({}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shape_is_checked_before_lookup() {
        let good = format!("truxe_sk_live_{}_{}", "0123456789abcdef", "A".repeat(43));
        assert_eq!(parse_key(&good), Some(("live", "0123456789abcdef")));
        let test = good.replace("_live_", "_test_");
        assert_eq!(parse_key(&test).map(|p| p.0), Some("test"));
        for bad in [
            String::new(),
            "truxe_sk_".into(),
            good.replace("_live_", "_prod_"),
            good.replace("0123456789abcdef", "0123456789abcdeg"),
            format!("{good}x"),
            good[..good.len() - 1].to_owned(),
            good.replace("AAAA", "A+AA"),
            "truxe_sk_live_é".into(),
        ] {
            assert_eq!(parse_key(&bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_keys_parse() {
        let (key, secret) =
            AuthService::new_key("a", "n", "test", vec![], vec![], "standard", None, "u", 0);
        assert_eq!(parse_key(secret.expose()), Some(("test", key.id.as_str())));
        assert!(token::matches(secret.expose(), &key.secret_hash));
        assert!(secret.expose().starts_with(&key.prefix()));
    }
}
