//! Webhooks: organizations' endpoints, the event catalogue, and turning
//! audited actions into queued deliveries.
//!
//! Events come from one place: every audit event passes [`AuthService::fan_out`],
//! which maps it (by [`EVENT_MAP`]) to a webhook event and the organizations
//! it concerns — the organization acted on, or for a user's own events
//! every organization the user belongs to — and queues one delivery per
//! subscribed endpoint. Delivery itself is `crate::webhook::Dispatcher`'s.

use secure::audit::{AuditEvent, Outcome};
use secure::{token, Secret};
use serde::Deserialize;

use super::machine::Caller;
use super::policy::perm;
use super::{AuthError, AuthService};
use crate::model::{Attempt, Delivery, WebhookEndpoint};
use crate::repo::DeliveryFilter;

/// Webhook signing secrets start with this.
const SECRET_PREFIX: &str = "whsec_";
/// Endpoints per organization.
const MAX_ENDPOINTS: usize = 50;
/// The event `POST /webhooks/endpoints/{id}/test` sends.
pub const TEST_EVENT: &str = "webhook.test";

/// Every event type an endpoint can subscribe to, with what it means. The
/// original Truxe's names are here too: its own events where they differ
/// from ours, and [`ALIASES`] where they name one of ours.
pub const WEBHOOK_EVENTS: [(&str, &str); 26] = [
    ("user.login", "a member signed in"),
    ("user.logout", "a member signed out"),
    (
        "user.password_changed",
        "a member changed or reset their password",
    ),
    (
        "user.email_verified",
        "a member verified their email address",
    ),
    ("user.blocked", "an administrator blocked a member"),
    (
        "user.deleted",
        "an administrator deleted a member's account",
    ),
    ("session.revoked", "sessions of a member were ended"),
    (
        "session.refresh_token_reused",
        "a spent refresh token came back; the session was revoked",
    ),
    (
        "security.account_locked",
        "a member's account was locked after failed logins",
    ),
    (
        "security.mfa_enabled",
        "a member turned on two-factor authentication",
    ),
    (
        "security.mfa_disabled",
        "a member turned off two-factor authentication",
    ),
    (
        "organization.created",
        "a child organization was created (sent to the parent)",
    ),
    ("organization.updated", "the organization was changed"),
    (
        "organization.deleted",
        "a child organization was deleted (sent to the parent)",
    ),
    (
        "organization.role_changed",
        "a custom role was created, changed or deleted",
    ),
    ("membership.invited", "someone was invited"),
    ("membership.joined", "an invitation was accepted"),
    ("membership.role_changed", "a member's role changed"),
    ("membership.removed", "a member was removed or left"),
    ("membership.invitation_revoked", "an invitation was revoked"),
    // The original Truxe's events.
    (
        "user.created",
        "an account was created (original Truxe; reaches the organizations the account is in when created)",
    ),
    (
        "user.updated",
        "a member's account changed: email verified, password, two-factor, blocked or unblocked (original Truxe)",
    ),
    (
        "user.password_reset",
        "a member reset a forgotten password (original Truxe)",
    ),
    (
        "session.created",
        "a member signed in or signed up: a session began (original Truxe)",
    ),
    (
        "security.new_device_login",
        "a member signed in from a browser or app (user agent) none of their earlier sessions used (original Truxe)",
    ),
    (
        "security.suspicious_activity",
        "a spent refresh token came back, or an account was locked after failed logins (original Truxe)",
    ),
];

/// The original Truxe's events that Truxe accepts in subscriptions but
/// never sends, with why.
pub const NEVER_SENT: [(&str, &str); 4] = [
    (
        "session.expired",
        "original Truxe; never sent: sessions end passively at expiry",
    ),
    (
        "security.breach_detected",
        "original Truxe; never sent: nothing in Truxe detects it",
    ),
    (
        "security.impossible_travel",
        "original Truxe; never sent: needs IP geolocation, which Truxe does not have",
    ),
    (
        "security.account_takeover",
        "original Truxe; never sent: nothing in Truxe detects it",
    ),
];

/// The original Truxe's names for events of ours: a subscription to either
/// name receives the event, under the name it subscribed to.
pub const ALIASES: [(&str, &str); 3] = [
    ("membership.created", "membership.joined"),
    ("membership.updated", "membership.role_changed"),
    ("membership.deleted", "membership.removed"),
];

/// The enabled endpoints of one user's organizations, read already (in
/// the transaction that recorded the user's events), so that queueing
/// those events reads them no more.
#[derive(Debug, Clone, Copy)]
pub(super) struct MemberEndpoints<'a> {
    pub user: &'a str,
    pub endpoints: &'a [WebhookEndpoint],
}

/// Whose organizations an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    /// Every organization of the user who acted.
    ActorUser,
    /// Every organization of the user acted upon.
    TargetUser,
    /// Every organization of the user named in this detail.
    DetailsUser(&'static str),
    /// The organization acted upon.
    TargetOrg,
    /// The organization named in this detail.
    DetailsOrg(&'static str),
    /// The organizations listed in this detail.
    DetailsOrgs(&'static str),
}

/// Audit action → webhook event and its recipients. Only successful
/// actions are sent, except the refused reuse of a refresh token.
const EVENT_MAP: [(&str, &str, Subject); 42] = [
    ("login", "user.login", Subject::ActorUser),
    ("logout", "user.logout", Subject::ActorUser),
    (
        "password_changed",
        "user.password_changed",
        Subject::ActorUser,
    ),
    (
        "password_reset",
        "user.password_changed",
        Subject::ActorUser,
    ),
    ("email_verified", "user.email_verified", Subject::ActorUser),
    ("user_blocked", "user.blocked", Subject::TargetUser),
    (
        "user_deleted",
        "user.deleted",
        Subject::DetailsOrgs("organizations"),
    ),
    ("sessions_revoked", "session.revoked", Subject::ActorUser),
    ("session_ended", "session.revoked", Subject::ActorUser),
    ("user_logged_out", "session.revoked", Subject::TargetUser),
    (
        "admin_session_ended",
        "session.revoked",
        Subject::DetailsUser("user_id"),
    ),
    (
        "refresh_token_reused",
        "session.refresh_token_reused",
        Subject::ActorUser,
    ),
    (
        "account_locked",
        "security.account_locked",
        Subject::TargetUser,
    ),
    ("mfa_enabled", "security.mfa_enabled", Subject::ActorUser),
    ("mfa_disabled", "security.mfa_disabled", Subject::ActorUser),
    (
        "organization_created",
        "organization.created",
        Subject::DetailsOrg("parent_id"),
    ),
    (
        "organization_updated",
        "organization.updated",
        Subject::TargetOrg,
    ),
    (
        "organization_deleted",
        "organization.deleted",
        Subject::DetailsOrg("parent_id"),
    ),
    (
        "role_created",
        "organization.role_changed",
        Subject::TargetOrg,
    ),
    (
        "role_updated",
        "organization.role_changed",
        Subject::TargetOrg,
    ),
    (
        "role_deleted",
        "organization.role_changed",
        Subject::TargetOrg,
    ),
    (
        "invitation_created",
        "membership.invited",
        Subject::TargetOrg,
    ),
    (
        "invitation_accepted",
        "membership.joined",
        Subject::TargetOrg,
    ),
    (
        "member_role_changed",
        "membership.role_changed",
        Subject::TargetOrg,
    ),
    ("member_removed", "membership.removed", Subject::TargetOrg),
    ("member_left", "membership.removed", Subject::TargetOrg),
    (
        "invitation_revoked",
        "membership.invitation_revoked",
        Subject::TargetOrg,
    ),
    // The original Truxe's events.
    ("register", "user.created", Subject::ActorUser),
    ("user_created", "user.created", Subject::TargetUser),
    ("email_verified", "user.updated", Subject::ActorUser),
    ("password_changed", "user.updated", Subject::ActorUser),
    ("password_reset", "user.updated", Subject::ActorUser),
    ("mfa_enabled", "user.updated", Subject::ActorUser),
    ("mfa_disabled", "user.updated", Subject::ActorUser),
    ("user_blocked", "user.updated", Subject::TargetUser),
    ("user_unblocked", "user.updated", Subject::TargetUser),
    ("password_reset", "user.password_reset", Subject::ActorUser),
    ("login", "session.created", Subject::ActorUser),
    ("register", "session.created", Subject::ActorUser),
    (
        "new_device_login",
        "security.new_device_login",
        Subject::ActorUser,
    ),
    (
        "refresh_token_reused",
        "security.suspicious_activity",
        Subject::ActorUser,
    ),
    (
        "account_locked",
        "security.suspicious_activity",
        Subject::TargetUser,
    ),
];

/// Fields of a new or changed endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointInput {
    /// Organization (on create; default: the caller's current one).
    #[serde(default)]
    pub org_id: Option<String>,
    /// Destination.
    #[serde(default)]
    pub url: Option<String>,
    /// Subscribed events (`*` for all).
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Whether deliveries are made.
    #[serde(default)]
    pub enabled: Option<bool>,
}

fn no_endpoint() -> AuthError {
    AuthError::NotFound("no such webhook endpoint".into())
}

fn no_delivery() -> AuthError {
    AuthError::NotFound("no such delivery".into())
}

/// The name under which an endpoint subscribed to `event` receives it: ours
/// (also for `*`), else the original Truxe's alias it subscribed to.
fn subscribed_name<'a>(subscribed: &[String], event: &'a str) -> Option<&'a str> {
    if subscribed.iter().any(|s| s == "*" || s == event) {
        return Some(event);
    }
    ALIASES
        .iter()
        .find(|(alias, ours)| *ours == event && subscribed.iter().any(|s| s == alias))
        .map(|(alias, _)| *alias)
}

pub(super) fn check_events(events: &[String]) -> Result<Vec<String>, AuthError> {
    let known = WEBHOOK_EVENTS.len() + ALIASES.len() + NEVER_SENT.len();
    if events.is_empty() || events.len() > known + 1 {
        return Err(AuthError::Invalid(format!(
            "`events` lists 1 to {known} event types, or `*`"
        )));
    }
    let is_event = |e: &String| {
        WEBHOOK_EVENTS
            .iter()
            .chain(&NEVER_SENT)
            .any(|(name, _)| name == e)
            || ALIASES.iter().any(|(a, _)| a == e)
    };
    if let Some(bad) = events.iter().find(|e| *e != "*" && !is_event(e)) {
        return Err(AuthError::Invalid(format!(
            "`{bad}` is not an event type (see GET /webhooks/supported-events)"
        )));
    }
    let mut out = events.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

impl AuthService {
    /// Queues the webhook deliveries an audit event causes.
    pub(super) async fn fan_out(
        &self,
        e: &AuditEvent,
        known: Option<MemberEndpoints<'_>>,
    ) -> Result<(), AuthError> {
        let sent = e.outcome == Outcome::Success
            || (e.action == "refresh_token_reused" && e.outcome == Outcome::Denied);
        if !sent {
            return Ok(());
        }
        let data = serde_json::json!({
            "actor": e.actor,
            "target": e.target,
            "details": e.details,
        });
        let now = e.at_ms / 1000;
        // Recipients by subject: the rows of one action mostly share theirs.
        let mut recipients: Vec<(Subject, Vec<WebhookEndpoint>)> = Vec::new();
        let mut deliveries = Vec::new();
        let rows = EVENT_MAP.iter().filter(|(a, _, _)| *a == e.action);
        for (n, (_, event, subject)) in rows.enumerate() {
            if !recipients.iter().any(|(s, _)| s == subject) {
                let endpoints = self.recipients(e, *subject, known).await?;
                recipients.push((*subject, endpoints));
            }
            let endpoints = recipients
                .iter()
                .find(|(s, _)| s == subject)
                .map(|(_, eps)| eps.as_slice())
                .unwrap_or_default();
            // An action causing several events gives each its own id, so a
            // receiver deduplicating by `event_id` keeps them all.
            let event_id = match n {
                0 => e.id.clone(),
                _ => format!("{}/{event}", e.id),
            };
            for ep in endpoints.iter().filter(|ep| ep.enabled) {
                if let Some(name) = subscribed_name(&ep.events, event) {
                    deliveries.push(new_delivery(ep, name, &event_id, data.clone(), now));
                }
            }
        }
        if !deliveries.is_empty() {
            self.store.enqueue(&deliveries).await?;
            self.webhook_wake.notify_one();
        }
        Ok(())
    }

    /// The endpoints of the organizations an event of `subject` concerns.
    async fn recipients(
        &self,
        e: &AuditEvent,
        subject: Subject,
        known: Option<MemberEndpoints<'_>>,
    ) -> Result<Vec<WebhookEndpoint>, AuthError> {
        let detail = |k: &str| e.details.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let user = match subject {
            Subject::ActorUser => Some(e.actor.clone()),
            Subject::TargetUser => Some(e.target.clone()),
            Subject::DetailsUser(k) => Some(detail(k)),
            _ => None,
        };
        if let Some(user) = user {
            return Ok(match (user, known) {
                (Some(u), Some(k)) if k.user == u => k.endpoints.to_vec(),
                (Some(u), _) => self.store.endpoints_of_member(&u).await?,
                (None, _) => Vec::new(),
            });
        }
        let orgs: Vec<String> = match subject {
            Subject::TargetOrg => e.target.iter().cloned().collect(),
            Subject::DetailsOrg(k) => detail(k).into_iter().collect(),
            Subject::DetailsOrgs(k) => e
                .details
                .get(k)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut all = Vec::new();
        for o in orgs {
            all.extend(self.store.endpoints(&o).await?);
        }
        Ok(all)
    }

    /// The dispatcher's wake-up call.
    pub fn webhook_wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.webhook_wake.clone()
    }

    /// Storage, for the dispatcher.
    pub fn store(&self) -> &std::sync::Arc<dyn crate::repo::Store> {
        &self.store
    }

    fn open_endpoint_secret(&self, id: &str, sealed: &str) -> Result<Secret<String>, AuthError> {
        String::from_utf8(self.open_secret(&format!("webhook:{id}"), sealed)?)
            .map(Secret::new)
            .map_err(|_| AuthError::Internal("webhook secret is not UTF-8".into()))
    }

    /// The secrets to sign with at `now`: the current one, and during a
    /// rotation the previous one too.
    pub fn signing_secrets(
        &self,
        e: &WebhookEndpoint,
        now: i64,
    ) -> Result<Vec<Secret<String>>, AuthError> {
        let mut out = vec![self.open_endpoint_secret(&e.id, &e.secret_sealed)?];
        if let (Some(prev), Some(until)) = (&e.previous_secret_sealed, e.previous_secret_until) {
            if until > now {
                out.push(self.open_endpoint_secret(&e.id, prev)?);
            }
        }
        Ok(out)
    }

    async fn endpoint_for(
        &self,
        c: &Caller,
        id: &str,
        wanted: &str,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<WebhookEndpoint, AuthError> {
        let ep = self.store.endpoint(id).await?.ok_or_else(no_endpoint)?;
        self.authorize_resource(c, &ep.org_id, wanted, no_endpoint, ctx, now)
            .await?;
        Ok(ep)
    }

    pub(super) async fn checked_url(&self, url: &str) -> Result<String, AuthError> {
        if url.len() > 2048 {
            return Err(AuthError::Invalid("url is at most 2048 characters".into()));
        }
        let guard = crate::webhook::guard::Guard {
            allow_loopback: self.cfg.webhooks.allow_loopback,
            allowed: self.cfg.webhooks.allowed_networks.clone(),
        };
        guard
            .check_url(url, self.cfg.webhooks.https_only, true)
            .await
            .map(|u| u.to_string())
            .map_err(|why| AuthError::Invalid(format!("webhook destination refused: {why}")))
    }

    /// `POST /webhooks/endpoints`: returns the endpoint and its signing
    /// secret (shown once).
    pub async fn create_endpoint(
        &self,
        c: &Caller,
        input: EndpointInput,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<(WebhookEndpoint, Secret<String>), AuthError> {
        let org_id = c.org_context(input.org_id.as_deref())?;
        self.authorize(c, &org_id, perm::WEBHOOKS_MANAGE, ctx, now)
            .await?;
        let url = self
            .checked_url(
                input
                    .url
                    .as_deref()
                    .ok_or_else(|| AuthError::Invalid("`url` is required".into()))?,
            )
            .await?;
        let events = check_events(
            input
                .events
                .as_deref()
                .ok_or_else(|| AuthError::Invalid("`events` is required".into()))?,
        )?;
        if self.store.endpoints(&org_id).await?.len() >= MAX_ENDPOINTS {
            return Err(AuthError::Conflict {
                code: "too_many_endpoints",
                message: format!("an organization has at most {MAX_ENDPOINTS} endpoints"),
            });
        }
        let id = token::random_uuid();
        let secret = token::generate(SECRET_PREFIX).plaintext;
        let ep = WebhookEndpoint {
            secret_sealed: self
                .seal_secret(&format!("webhook:{id}"), secret.expose().as_bytes())?,
            id,
            org_id,
            url,
            description: input.description.unwrap_or_default(),
            events,
            previous_secret_sealed: None,
            previous_secret_until: None,
            enabled: input.enabled.unwrap_or(true),
            created_by: Some(c.actor()),
            created_at: now,
            updated_at: now,
        };
        if ep.description.chars().count() > 500 {
            return Err(AuthError::Invalid(
                "description is at most 500 characters".into(),
            ));
        }
        self.store.create_endpoint(&ep).await?;
        self.webhook_audit("webhook_endpoint_created", c, &ep, ctx, now)
            .await;
        Ok((ep, secret))
    }

    async fn webhook_audit(
        &self,
        action: &str,
        c: &Caller,
        ep: &WebhookEndpoint,
        ctx: &super::ClientInfo,
        now: i64,
    ) {
        let details = serde_json::json!({"org_id": ep.org_id, "url": ep.url});
        self.caller_event(action, c, &ep.id, details, ctx, now)
            .await;
    }

    /// `GET /webhooks/endpoints?orgId=`.
    pub async fn endpoints(
        &self,
        c: &Caller,
        org_id: Option<&str>,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<Vec<WebhookEndpoint>, AuthError> {
        let org_id = c.org_context(org_id)?;
        self.authorize(c, &org_id, perm::WEBHOOKS_READ, ctx, now)
            .await?;
        Ok(self.store.endpoints(&org_id).await?)
    }

    /// `GET /webhooks/endpoints/{id}`.
    pub async fn endpoint(
        &self,
        c: &Caller,
        id: &str,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<WebhookEndpoint, AuthError> {
        self.endpoint_for(c, id, perm::WEBHOOKS_READ, ctx, now)
            .await
    }

    /// `PUT /webhooks/endpoints/{id}`.
    pub async fn update_endpoint(
        &self,
        c: &Caller,
        id: &str,
        input: EndpointInput,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<WebhookEndpoint, AuthError> {
        let mut ep = self
            .endpoint_for(c, id, perm::WEBHOOKS_MANAGE, ctx, now)
            .await?;
        if input.org_id.is_some() {
            return Err(AuthError::Invalid(
                "an endpoint cannot move to another organization".into(),
            ));
        }
        if let Some(url) = &input.url {
            ep.url = self.checked_url(url).await?;
        }
        if let Some(events) = &input.events {
            ep.events = check_events(events)?;
        }
        if let Some(d) = input.description {
            ep.description = d;
        }
        if let Some(e) = input.enabled {
            ep.enabled = e;
        }
        ep.updated_at = now;
        self.store.update_endpoint(&ep).await?;
        self.webhook_audit("webhook_endpoint_updated", c, &ep, ctx, now)
            .await;
        Ok(ep)
    }

    /// `DELETE /webhooks/endpoints/{id}` with its deliveries.
    pub async fn delete_endpoint(
        &self,
        c: &Caller,
        id: &str,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let ep = self
            .endpoint_for(c, id, perm::WEBHOOKS_MANAGE, ctx, now)
            .await?;
        self.store.delete_endpoint(id).await?;
        self.webhook_audit("webhook_endpoint_deleted", c, &ep, ctx, now)
            .await;
        Ok(())
    }

    /// `POST /webhooks/endpoints/{id}/rotate-secret`: a new secret; for
    /// `overlap` seconds deliveries carry signatures by both.
    pub async fn rotate_endpoint_secret(
        &self,
        c: &Caller,
        id: &str,
        overlap: Option<u64>,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<(WebhookEndpoint, Secret<String>), AuthError> {
        let mut ep = self
            .endpoint_for(c, id, perm::WEBHOOKS_MANAGE, ctx, now)
            .await?;
        let overlap = overlap.unwrap_or(86_400);
        if overlap > 7 * 86_400 {
            return Err(AuthError::Invalid("the overlap is at most 7 days".into()));
        }
        let secret = token::generate(SECRET_PREFIX).plaintext;
        ep.previous_secret_sealed = Some(std::mem::replace(
            &mut ep.secret_sealed,
            self.seal_secret(&format!("webhook:{}", ep.id), secret.expose().as_bytes())?,
        ));
        ep.previous_secret_until = Some(now + overlap as i64);
        ep.updated_at = now;
        self.store.update_endpoint(&ep).await?;
        self.webhook_audit("webhook_secret_rotated", c, &ep, ctx, now)
            .await;
        Ok((ep, secret))
    }

    /// `POST /webhooks/endpoints/{id}/test`: queues a `webhook.test`
    /// delivery, due now.
    pub async fn test_endpoint(
        &self,
        c: &Caller,
        id: &str,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<Delivery, AuthError> {
        let ep = self
            .endpoint_for(c, id, perm::WEBHOOKS_MANAGE, ctx, now)
            .await?;
        let d = new_delivery(
            &ep,
            TEST_EVENT,
            &token::random_uuid(),
            serde_json::json!({"message": "a test delivery from Truxe", "actor": c.actor()}),
            now,
        );
        self.store.enqueue(std::slice::from_ref(&d)).await?;
        self.webhook_wake.notify_one();
        Ok(d)
    }

    /// `GET /webhooks/deliveries`.
    pub async fn deliveries(
        &self,
        c: &Caller,
        org_id: Option<&str>,
        mut filter: DeliveryFilter,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<Vec<Delivery>, AuthError> {
        filter.org_id = c.org_context(org_id)?;
        self.authorize(c, &filter.org_id, perm::WEBHOOKS_READ, ctx, now)
            .await?;
        if !(1..=super::org::MAX_PAGE).contains(&filter.limit) {
            return Err(AuthError::Invalid(format!(
                "limit must be between 1 and {}",
                super::org::MAX_PAGE
            )));
        }
        Ok(self.store.deliveries(&filter).await?)
    }

    async fn delivery_for(
        &self,
        c: &Caller,
        id: &str,
        wanted: &str,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<Delivery, AuthError> {
        let d = self.store.delivery(id).await?.ok_or_else(no_delivery)?;
        self.authorize_resource(c, &d.org_id, wanted, no_delivery, ctx, now)
            .await?;
        Ok(d)
    }

    /// `GET /webhooks/deliveries/{id}` with its attempts.
    pub async fn delivery(
        &self,
        c: &Caller,
        id: &str,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<(Delivery, Vec<Attempt>), AuthError> {
        let d = self
            .delivery_for(c, id, perm::WEBHOOKS_READ, ctx, now)
            .await?;
        let attempts = self.store.attempts(id).await?;
        Ok((d, attempts))
    }

    /// `POST /webhooks/deliveries/{id}/retry`: the same bytes again, now,
    /// with a fresh retry schedule.
    pub async fn retry_delivery(
        &self,
        c: &Caller,
        id: &str,
        ctx: &super::ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.delivery_for(c, id, perm::WEBHOOKS_MANAGE, ctx, now)
            .await?;
        if !self.store.requeue(id, now).await? {
            return Err(AuthError::Conflict {
                code: "delivery_in_flight",
                message: "the delivery is being attempted right now".into(),
            });
        }
        self.webhook_wake.notify_one();
        let e = self
            .event("webhook_delivery_retried", Outcome::Success, ctx, now)
            .actor(c.actor())
            .target(id);
        self.record(e).await;
        Ok(())
    }
}

/// A delivery of `event` to `ep`, due now. The body is fixed here, once:
/// every attempt sends (and signs) exactly these bytes.
fn new_delivery(
    ep: &WebhookEndpoint,
    event: &str,
    event_id: &str,
    data: serde_json::Value,
    now: i64,
) -> Delivery {
    let body = serde_json::json!({
        "event": event,
        "event_id": event_id,
        "timestamp": now,
        "organization_id": ep.org_id,
        "data": data,
    })
    .to_string();
    Delivery {
        id: token::random_uuid(),
        endpoint_id: ep.id.clone(),
        org_id: ep.org_id.clone(),
        event: event.to_owned(),
        event_id: event_id.to_owned(),
        body,
        status: "pending".into(),
        attempts: 0,
        total_attempts: 0,
        next_attempt_at: now,
        last_status_code: None,
        last_error: None,
        last_duration_ms: None,
        created_at: now,
        updated_at: now,
        delivered_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_event_is_in_the_catalogue_and_every_entry_is_sent() {
        for (_, event, _) in EVENT_MAP {
            assert!(WEBHOOK_EVENTS.iter().any(|(e, _)| *e == event), "{event}");
        }
        for (event, _) in WEBHOOK_EVENTS {
            assert!(
                EVENT_MAP.iter().any(|(_, e, _)| *e == event),
                "{event} is never sent"
            );
        }
        for (event, _) in NEVER_SENT {
            assert!(!EVENT_MAP.iter().any(|(_, e, _)| *e == event), "{event}");
        }
        for (alias, ours) in ALIASES {
            assert!(WEBHOOK_EVENTS.iter().any(|(e, _)| *e == ours), "{alias}");
            assert!(!WEBHOOK_EVENTS.iter().any(|(e, _)| *e == alias), "{alias}");
        }
    }

    #[test]
    fn events_are_checked() {
        assert!(check_events(&[]).is_err());
        assert!(check_events(&["user.nope".into()]).is_err());
        assert_eq!(
            check_events(&["user.login".into(), "user.login".into(), "*".into()]).ok(),
            Some(vec!["*".to_owned(), "user.login".to_owned()])
        );
    }
}
