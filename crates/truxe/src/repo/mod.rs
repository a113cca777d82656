//! Storage seams. Services see only these traits; `SqlStore` implements
//! them for SQLite and PostgreSQL alike, and the integration suite runs
//! against both.
//!
//! Repositories store and fetch; every rule (lockout, rotation, limits)
//! lives in the service layer.

mod redis;
mod sql;
pub mod truxe_v1;

use async_trait::async_trait;
use secure::audit::{AuditEvent, AuditSink};

pub use redis::RedisRateLimitStore;
pub use sql::SqlStore;

use crate::model::{
    ApiKey, Attempt, AuthCode, Ceremony, CodeUse, Delivery, Invitation, Membership, OAuthClient,
    OAuthIdentity, OAuthState, Organization, PasskeyRecord, RefreshUse, ServiceAccount, Session,
    User, WebhookEndpoint,
};
use crate::service::policy::RoleDef;

/// Storage failure. The detail is for logs, never for clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// A unique constraint was violated (e.g. email taken).
    #[error("already exists")]
    Conflict,
    /// The database failed.
    #[error("database: {0}")]
    Db(String),
}

impl From<sqlx::Error> for RepoError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => RepoError::Conflict,
            _ => RepoError::Db(e.to_string()),
        }
    }
}

/// Accounts.
#[async_trait]
pub trait UserRepo: Send + Sync {
    /// Inserts a new user; `Conflict` if the email exists.
    async fn create_user(&self, user: &User) -> Result<(), RepoError>;
    /// By lower-cased email.
    async fn user_by_email(&self, email: &str) -> Result<Option<User>, RepoError>;
    /// By id.
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, RepoError>;
    /// Records a failed login and returns the new count in the window; the
    /// window restarts when `failed_since` is older than `window_start`. Locks
    /// the account until `lock_until` when the count reaches `threshold`.
    async fn record_failure(
        &self,
        id: &str,
        now: i64,
        window_start: i64,
        threshold: i64,
        lock_until: i64,
    ) -> Result<i64, RepoError>;
    /// Clears failures and any lock.
    async fn clear_failures(&self, id: &str, now: i64) -> Result<(), RepoError>;
    /// Replaces the password hash.
    async fn set_password_hash(&self, id: &str, hash: &str, now: i64) -> Result<(), RepoError>;
    /// Sets `active` or `disabled`.
    async fn set_status(&self, id: &str, status: &str, now: i64) -> Result<(), RepoError>;
    /// Users matching `filter`, by id.
    async fn search_users(&self, filter: &UserFilter) -> Result<Vec<User>, RepoError>;
    /// Deletes the user with everything that belongs to them, the
    /// invitations sent to `email`, and scrubs IP, user agent and details
    /// from audit events naming them; one transaction.
    async fn erase_user(&self, id: &str, email: &str) -> Result<(), RepoError>;
}

/// Which users an administrator lists.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Part of the email (case-insensitive).
    pub query: Option<String>,
    /// `active` or `disabled`.
    pub status: Option<String>,
    /// Continue after this user id.
    pub after: Option<String>,
    /// Page size.
    pub limit: u32,
}

/// Sessions and their refresh tokens.
#[async_trait]
pub trait SessionRepo: Send + Sync {
    /// Inserts a session with its first refresh token and the audit
    /// `events` of its start, in one transaction. Returns the enabled
    /// webhook endpoints of its user's organizations, read in that
    /// transaction: the recipients of those events, with no read of their
    /// own (see [`WebhookRepo::endpoints_of_member`]).
    async fn create_session(
        &self,
        s: &Session,
        refresh_hash: &str,
        refresh_expires: i64,
        events: &[AuditEvent],
    ) -> Result<Vec<WebhookEndpoint>, RepoError>;
    /// What a password sign-in needs before it hashes, in one read: the
    /// user with this lower-cased `email`, whether it has a passkey, and
    /// [`SessionRepo::before_new_session`] for a session from
    /// `user_agent`, unless sessions must end to make room (their ids are
    /// read when the session opens).
    async fn sign_in_read(
        &self,
        email: &str,
        user_agent: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<Option<SignInRead>, RepoError>;
    /// By id.
    async fn session(&self, id: &str) -> Result<Option<Session>, RepoError>;
    /// Session `id` and its user, read together; `None` unless the session
    /// is `user_id`'s. Verified requests call this: it may be answered from
    /// memory, and every write of a user or session forgets what it changed
    /// before it returns.
    async fn session_with_user(
        &self,
        id: &str,
        user_id: &str,
    ) -> Result<Option<(Session, User)>, RepoError>;
    /// What opening a session of `user_id` from `user_agent` must know,
    /// read together: the oldest live sessions that must end for one more
    /// to stay within `limit`, and whether it has had any session (live or
    /// ended) and any from this user agent.
    async fn before_new_session(
        &self,
        user_id: &str,
        user_agent: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<SessionsBefore, RepoError>;
    /// Live sessions of a user, oldest first.
    async fn live_sessions(&self, user_id: &str, now: i64) -> Result<Vec<Session>, RepoError>;
    /// Uses refresh tokens, many in one transaction (one durable commit for
    /// the group). For each in order: spends the presented token; if it was
    /// unspent and its session and account are live, adds its successor
    /// (expiring with the session) and records its audit event with the
    /// session's user as actor and the session as target. Of rotations
    /// presenting the same token, in one group or not, exactly one gets
    /// `Rotated`. An error fails the whole group; nothing of it is kept.
    async fn use_refresh(&self, group: &[Rotation]) -> Result<Vec<RefreshUse>, RepoError>;
    /// Rotates a live session in one transaction: sets the organization
    /// it acts in, spends every unspent refresh token and adds `hash`.
    /// Returns false if the session is no longer live.
    async fn rotate_session(
        &self,
        session_id: &str,
        org_id: Option<&str>,
        hash: &str,
        expires: i64,
        now: i64,
    ) -> Result<bool, RepoError>;
    /// Live sessions of one user or of all, by id, after `after`.
    async fn all_live_sessions(
        &self,
        user_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
        now: i64,
    ) -> Result<Vec<Session>, RepoError>;
    /// Revokes one session (no-op if already revoked).
    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> Result<(), RepoError>;
    /// Revokes every live session of a user; returns how many.
    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, RepoError>;
    /// Deletes up to `limit` sessions that expired before `expired_before`
    /// (revoked or not), with their refresh tokens; returns how many.
    async fn purge_sessions(&self, expired_before: i64, limit: u32) -> Result<u64, RepoError>;
}

/// What [`SessionRepo::sign_in_read`] reads.
#[derive(Debug, Clone)]
pub struct SignInRead {
    /// The account.
    pub user: User,
    /// It has a passkey, so a second factor.
    pub has_passkeys: bool,
    /// Its sessions so far; `None` when some must end to make room.
    pub sessions: Option<SessionsBefore>,
}

/// What [`SessionRepo::before_new_session`] reads.
#[derive(Debug, Clone)]
pub struct SessionsBefore {
    /// Ids of the live sessions to end to make room, oldest first (none
    /// while fewer than the limit are live).
    pub to_end: Vec<String>,
    /// The user has had a session before (live or ended).
    pub any: bool,
    /// One of them came from the same user agent.
    pub from_agent: bool,
}

/// One refresh in a group commit ([`SessionRepo::use_refresh`]).
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Digest of the presented refresh token.
    pub spent: String,
    /// Digest of its successor.
    pub next: String,
    /// Unix seconds of the request.
    pub now: i64,
    /// Recorded when the rotation happens.
    pub event: AuditEvent,
}

/// A pending second-factor check after a correct password.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Random id given to the client.
    pub id: String,
    /// The user who passed the password check.
    pub user_id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// Client address at login.
    pub ip: Option<String>,
    /// Client user agent at login.
    pub user_agent: Option<String>,
}

/// TOTP secrets, backup codes and login challenges. Every "use once"
/// operation is a single conditional statement, so concurrent callers
/// cannot both succeed.
#[async_trait]
pub trait MfaRepo: Send + Sync {
    /// Stores a sealed secret awaiting confirmation.
    async fn set_pending_secret(
        &self,
        user_id: &str,
        sealed: &str,
        now: i64,
    ) -> Result<(), RepoError>;
    /// Turns MFA on with the pending secret, records `step` as used and
    /// replaces the backup codes. False if there was no pending secret.
    async fn enable_mfa(
        &self,
        user_id: &str,
        step: i64,
        code_hashes: &[String],
        now: i64,
    ) -> Result<bool, RepoError>;
    /// Turns MFA off and deletes secret and backup codes.
    async fn disable_mfa(&self, user_id: &str, now: i64) -> Result<(), RepoError>;
    /// Accepts TOTP step `step` if it is later than the last one accepted.
    async fn claim_totp_step(&self, user_id: &str, step: i64) -> Result<bool, RepoError>;
    /// Replaces every backup code.
    async fn replace_backup_codes(
        &self,
        user_id: &str,
        code_hashes: &[String],
    ) -> Result<(), RepoError>;
    /// Spends an unused backup code.
    async fn use_backup_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now: i64,
    ) -> Result<bool, RepoError>;
    /// Unused backup codes left.
    async fn backup_codes_left(&self, user_id: &str) -> Result<i64, RepoError>;
    /// Stores a new challenge.
    async fn create_challenge(&self, c: &Challenge) -> Result<(), RepoError>;
    /// Counts one attempt on a live challenge (unused, unexpired, fewer than
    /// `max_attempts` so far) and returns it; `None` if it is not live.
    async fn attempt_challenge(
        &self,
        id: &str,
        now: i64,
        max_attempts: i64,
    ) -> Result<Option<Challenge>, RepoError>;
    /// A live challenge (as [`attempt_challenge`](Self::attempt_challenge)
    /// would take it), without counting an attempt.
    async fn live_challenge(
        &self,
        id: &str,
        now: i64,
        max_attempts: i64,
    ) -> Result<Option<Challenge>, RepoError>;
    /// Marks a challenge used; false if it already was.
    async fn finish_challenge(&self, id: &str, now: i64) -> Result<bool, RepoError>;
}

/// Single-use emailed tokens.
#[async_trait]
pub trait TokenRepo: Send + Sync {
    /// Stores a token digest of `kind` for `user_id`.
    async fn create_token(
        &self,
        hash: &str,
        kind: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
        data: Option<&str>,
    ) -> Result<(), RepoError>;
    /// Spends a live token of `kind`: returns its user and data, once.
    async fn consume_token(
        &self,
        hash: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<(String, Option<String>)>, RepoError>;
    /// Sets a user's email as verified.
    async fn set_email_verified(&self, user_id: &str, now: i64) -> Result<(), RepoError>;
    /// Revokes a user's sessions except `keep` (password change).
    async fn revoke_other_sessions(
        &self,
        user_id: &str,
        keep: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, RepoError>;
}

/// Which audit events to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this action.
    pub action: Option<String>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this outcome.
    pub outcome: Option<String>,
    /// Only events older than this cursor (from a previous page).
    pub before: Option<i64>,
    /// Page size.
    pub limit: u32,
}

/// Reading the audit trail (writing is the kernel's `AuditSink`).
#[async_trait]
pub trait AuditQuery: Send + Sync {
    /// Events matching `filter`, newest first, with each event's cursor.
    async fn audit_events(&self, filter: &AuditFilter)
        -> Result<Vec<(i64, AuditEvent)>, RepoError>;
}

/// Outcome of changing or removing a membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberChange {
    /// Done.
    Done,
    /// The user is not a member.
    NotMember,
    /// Refused: the organization would be left without an owner.
    LastOwner,
}

/// Outcome of accepting an invitation.
#[derive(Debug, Clone, PartialEq)]
pub enum Acceptance {
    /// Joined with the invitation's role.
    Joined(Invitation),
    /// Already a member: the invitation is spent, the role unchanged.
    AlreadyMember(Invitation, String),
    /// Live, but sent to another address (not spent).
    OtherAddress,
    /// Unknown, expired, revoked or already used.
    Invalid,
}

/// Organizations, memberships, custom roles and invitations. Changes that
/// could leave an organization without an owner serialize on the
/// organization's row, so two concurrent demotions cannot both pass.
#[async_trait]
pub trait OrgRepo: Send + Sync {
    /// Inserts `org` and makes `owner` its owner, in one transaction;
    /// `Conflict` if the slug is taken.
    async fn create_org(&self, org: &Organization, owner: &str) -> Result<(), RepoError>;
    /// By id.
    async fn org(&self, id: &str) -> Result<Option<Organization>, RepoError>;
    /// Writes name, slug, parent and metadata; `Conflict` if the slug is taken.
    async fn update_org(&self, org: &Organization) -> Result<(), RepoError>;
    /// Deletes it with its memberships, roles and invitations.
    async fn delete_org(&self, id: &str) -> Result<(), RepoError>;
    /// Direct children.
    async fn children(&self, id: &str) -> Result<Vec<Organization>, RepoError>;
    /// Organizations whose name or slug contains `query` (any, without
    /// one), by name, at most `limit`.
    async fn search_orgs(
        &self,
        query: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Organization>, RepoError>;
    /// A user's organizations with their role, by id, after `after`.
    async fn user_orgs(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Organization, String)>, RepoError>;
    /// One membership.
    async fn membership(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> Result<Option<Membership>, RepoError>;
    /// Members with their email, by user id, after `after`.
    async fn members(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Membership, String)>, RepoError>;
    /// Changes an existing member's role (refusing to demote the last owner).
    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        role: &str,
        now: i64,
    ) -> Result<MemberChange, RepoError>;
    /// Removes a member (refusing to remove the last owner).
    async fn remove_member(
        &self,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<MemberChange, RepoError>;
    /// Organizations whose only owner is `user_id`.
    async fn sole_owned_orgs(&self, user_id: &str) -> Result<Vec<String>, RepoError>;
    /// How many members hold `role`.
    async fn role_holders(&self, org_id: &str, role: &str) -> Result<i64, RepoError>;
    /// The organization's custom roles.
    async fn custom_roles(&self, org_id: &str) -> Result<Vec<RoleDef>, RepoError>;
    /// Inserts or replaces a custom role.
    async fn put_role(&self, org_id: &str, role: &RoleDef, now: i64) -> Result<(), RepoError>;
    /// Deletes a custom role; false if there was none.
    async fn delete_role(&self, org_id: &str, name: &str) -> Result<bool, RepoError>;
    /// Stores an invitation with the digest of its token.
    async fn create_invitation(&self, inv: &Invitation, token_hash: &str) -> Result<(), RepoError>;
    /// Invitations of an organization, newest first.
    async fn invitations(&self, org_id: &str) -> Result<Vec<Invitation>, RepoError>;
    /// Revokes a pending invitation; false if none was pending.
    async fn revoke_invitation(&self, org_id: &str, id: &str, now: i64) -> Result<bool, RepoError>;
    /// Spends a live invitation for `email` and adds `user_id` with its
    /// role, in one transaction.
    async fn accept_invitation(
        &self,
        token_hash: &str,
        email: &str,
        user_id: &str,
        now: i64,
    ) -> Result<Acceptance, RepoError>;
}

/// Service accounts and API keys.
#[async_trait]
pub trait MachineRepo: Send + Sync {
    /// Inserts an account with the digest of its client secret;
    /// `Conflict` if the name is taken in the organization.
    async fn create_service_account(
        &self,
        a: &ServiceAccount,
        secret_hash: &str,
    ) -> Result<(), RepoError>;
    /// By id, with the client-secret digest.
    async fn service_account(
        &self,
        id: &str,
    ) -> Result<Option<(ServiceAccount, String)>, RepoError>;
    /// An organization's accounts, by name.
    async fn service_accounts(&self, org_id: &str) -> Result<Vec<ServiceAccount>, RepoError>;
    /// Writes name, description, permissions and status.
    async fn update_service_account(&self, a: &ServiceAccount) -> Result<(), RepoError>;
    /// Deletes it with its keys.
    async fn delete_service_account(&self, id: &str) -> Result<(), RepoError>;
    /// Inserts a key.
    async fn create_api_key(&self, k: &ApiKey) -> Result<(), RepoError>;
    /// By id.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>, RepoError>;
    /// An account's keys, newest first.
    async fn api_keys(&self, service_account_id: &str) -> Result<Vec<ApiKey>, RepoError>;
    /// Rotation in one transaction: `old` (if still live and not yet
    /// rotated) keeps working until `grace_until` and names `new`, which is
    /// inserted. False if `old` was revoked or rotated meanwhile.
    async fn rotate_api_key(
        &self,
        old: &str,
        grace_until: i64,
        new: &ApiKey,
        now: i64,
    ) -> Result<bool, RepoError>;
    /// Revokes a key; false if it already was.
    async fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool, RepoError>;
    /// Records a use, at most once per minute per key.
    async fn touch_api_key(&self, id: &str, ip: Option<&str>, now: i64) -> Result<(), RepoError>;
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Delivered.
    Succeeded,
    /// Try again at this time.
    RetryAt(i64),
    /// Out of attempts (or no longer deliverable): dead-lettered.
    Dead,
}

/// Which deliveries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// The organization.
    pub org_id: String,
    /// Only this endpoint.
    pub endpoint_id: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only deliveries after this (created_at, id) in newest-first order.
    pub before: Option<(i64, String)>,
    /// Page size.
    pub limit: u32,
}

/// Webhook endpoints and the durable delivery queue. Claiming is a
/// conditional update with a lease, so several instances (or a restart)
/// never deliver one attempt twice at the same time and never lose one.
#[async_trait]
pub trait WebhookRepo: Send + Sync {
    /// Inserts an endpoint.
    async fn create_endpoint(&self, e: &WebhookEndpoint) -> Result<(), RepoError>;
    /// By id.
    async fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, RepoError>;
    /// An organization's endpoints.
    async fn endpoints(&self, org_id: &str) -> Result<Vec<WebhookEndpoint>, RepoError>;
    /// Enabled endpoints of the organizations `user_id` belongs to.
    async fn endpoints_of_member(&self, user_id: &str) -> Result<Vec<WebhookEndpoint>, RepoError>;
    /// Writes url, description, events, enabled and secrets.
    async fn update_endpoint(&self, e: &WebhookEndpoint) -> Result<(), RepoError>;
    /// Deletes it with its deliveries.
    async fn delete_endpoint(&self, id: &str) -> Result<(), RepoError>;
    /// Queues deliveries, in one transaction.
    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), RepoError>;
    /// Leases up to `limit` due deliveries until `lease_until`, marking
    /// them `delivering` and counting the attempt.
    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, RepoError>;
    /// Logs an attempt and moves the delivery to its next step.
    async fn finish_attempt(
        &self,
        delivery: &Delivery,
        attempt: &Attempt,
        next: NextStep,
    ) -> Result<(), RepoError>;
    /// By id.
    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, RepoError>;
    /// Deliveries matching `filter`.
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Delivery>, RepoError>;
    /// A delivery's attempts, first first.
    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, RepoError>;
    /// Queues a delivery that is not in flight again, due now, with a
    /// fresh schedule; false if it is being delivered.
    async fn requeue(&self, id: &str, now: i64) -> Result<bool, RepoError>;
}

/// Passkeys and the WebAuthn ceremonies in flight.
#[async_trait]
pub trait PasskeyRepo: Send + Sync {
    /// Stores a new passkey; `Conflict` if its credential id is known.
    async fn add_passkey(&self, p: &PasskeyRecord) -> Result<(), RepoError>;
    /// A user's passkeys, oldest first.
    async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, RepoError>;
    /// Whether a user has any passkey.
    async fn has_passkeys(&self, user_id: &str) -> Result<bool, RepoError>;
    /// Records a sign-in with a passkey: its new counter and backup state.
    async fn passkey_used(
        &self,
        id: &str,
        passkey: &str,
        backed_up: bool,
        now: i64,
    ) -> Result<(), RepoError>;
    /// Removes one of a user's passkeys; false if there is no such one.
    async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool, RepoError>;
    /// Stores a ceremony (and drops expired ones).
    async fn put_ceremony(&self, c: &Ceremony, now: i64) -> Result<(), RepoError>;
    /// Removes and returns an unexpired ceremony: each is used once.
    async fn take_ceremony(&self, id: &str, now: i64) -> Result<Option<Ceremony>, RepoError>;
}

/// How much a client is used (`GET /api/oauth/clients/{id}/stats`).
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientStats {
    /// Live sessions (refresh tokens that still work).
    pub active_sessions: i64,
    /// Distinct users with a live session.
    pub active_users: i64,
    /// Users who consented to it.
    pub consents: i64,
    /// Unix seconds of the last use of any of its sessions.
    pub last_used_at: Option<i64>,
}

/// Social login: sign-ins in flight and linked provider identities.
#[async_trait]
pub trait SocialRepo: Send + Sync {
    /// Stores a sign-in in flight (and drops expired ones).
    async fn create_oauth_state(&self, s: &OAuthState) -> Result<(), RepoError>;
    /// Removes and returns an unexpired sign-in: each state is used once.
    async fn take_oauth_state(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<OAuthState>, RepoError>;
    /// The identity a provider's subject is linked to.
    async fn identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<OAuthIdentity>, RepoError>;
    /// A user's linked identities, oldest first.
    async fn identities(&self, user_id: &str) -> Result<Vec<OAuthIdentity>, RepoError>;
    /// Links an identity; `Conflict` if the subject is linked already.
    async fn create_identity(&self, i: &OAuthIdentity) -> Result<(), RepoError>;
    /// Records a sign-in: the address and tokens it brought.
    async fn identity_signed_in(
        &self,
        id: &str,
        email: &str,
        tokens_sealed: &str,
        now: i64,
    ) -> Result<(), RepoError>;
    /// Unlinks one of the user's identities; false if there is no such one.
    async fn delete_identity(&self, user_id: &str, id: &str) -> Result<bool, RepoError>;
}

/// A column holding values sealed with an encryption key, for
/// `truxe keys rotate-encryption`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    /// Active TOTP secrets.
    MfaSecret,
    /// TOTP secrets awaiting confirmation.
    MfaPendingSecret,
    /// Webhook signing secrets.
    WebhookSecret,
    /// Webhook secrets still used during a rotation.
    WebhookPreviousSecret,
    /// Provider tokens of linked identities.
    OAuthTokens,
    /// PKCE verifiers of sign-ins in flight.
    OAuthVerifier,
}

impl SealedColumn {
    /// Every sealed column.
    pub const ALL: [SealedColumn; 6] = [
        SealedColumn::MfaSecret,
        SealedColumn::MfaPendingSecret,
        SealedColumn::WebhookSecret,
        SealedColumn::WebhookPreviousSecret,
        SealedColumn::OAuthTokens,
        SealedColumn::OAuthVerifier,
    ];

    /// `(table, key column, sealed column)`.
    pub fn location(self) -> (&'static str, &'static str, &'static str) {
        match self {
            SealedColumn::MfaSecret => ("users", "id", "mfa_secret"),
            SealedColumn::MfaPendingSecret => ("users", "id", "mfa_pending_secret"),
            SealedColumn::WebhookSecret => ("webhook_endpoints", "id", "secret_sealed"),
            SealedColumn::WebhookPreviousSecret => {
                ("webhook_endpoints", "id", "previous_secret_sealed")
            }
            SealedColumn::OAuthTokens => ("oauth_identities", "id", "tokens_sealed"),
            SealedColumn::OAuthVerifier => ("oauth_states", "id_hash", "verifier_sealed"),
        }
    }
}

/// Sealed values, read and rewritten by key rotation.
#[async_trait]
pub trait SealedRepo: Send + Sync {
    /// Up to `limit` `(row key, sealed value)` pairs with keys after `after`, in key order.
    async fn sealed_values(
        &self,
        col: SealedColumn,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>, RepoError>;
    /// Replaces a sealed value if it is still `old` (a concurrent change
    /// wins); true if replaced.
    async fn reseal(
        &self,
        col: SealedColumn,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, RepoError>;
}

/// The OpenID Connect provider's clients, codes and consents.
#[async_trait]
pub trait OidcRepo: Send + Sync {
    /// Registers a client.
    async fn create_client(&self, c: &OAuthClient) -> Result<(), RepoError>;
    /// A client by id.
    async fn client(&self, id: &str) -> Result<Option<OAuthClient>, RepoError>;
    /// Every client, oldest first (at most 1,000).
    async fn clients(&self) -> Result<Vec<OAuthClient>, RepoError>;
    /// Writes everything but id, organization and creation.
    async fn update_client(&self, c: &OAuthClient) -> Result<(), RepoError>;
    /// A client's use: live sessions, distinct users with one, consents,
    /// and the last time one of its sessions was used.
    async fn client_stats(&self, client_id: &str, now: i64) -> Result<ClientStats, RepoError>;
    /// Records a client assertion's id (`private_key_jwt`) until it
    /// expires; false if the client used it already (a replay).
    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, RepoError>;
    /// Deletes a client and ends its sessions; false if there was none.
    async fn delete_client(&self, id: &str, now: i64) -> Result<bool, RepoError>;
    /// Stores a code (and drops long-expired ones).
    async fn create_code(&self, c: &AuthCode) -> Result<(), RepoError>;
    /// Spends a code, atomically: one exchange wins.
    async fn use_code(&self, code_hash: &str, now: i64) -> Result<CodeUse, RepoError>;
    /// Records the session a code's exchange started.
    async fn code_session(&self, code_hash: &str, session_id: &str) -> Result<(), RepoError>;
    /// The scopes a user consented to for a client (empty if none).
    async fn consent(&self, user_id: &str, client_id: &str) -> Result<Vec<String>, RepoError>;
    /// Records (replaces) a consent.
    async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<(), RepoError>;
    /// A user's consents: (client, scopes, when).
    async fn consents(&self, user_id: &str) -> Result<Vec<(String, Vec<String>, i64)>, RepoError>;
    /// A refresh token by digest: its session, when it was used, when it
    /// expires.
    async fn refresh_token(
        &self,
        digest: &str,
    ) -> Result<Option<(String, Option<i64>, i64)>, RepoError>;
    /// Withdraws a consent and ends the client's sessions of the user;
    /// false if there was none.
    async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<bool, RepoError>;
}

/// What copying one row in found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// Written now.
    New,
    /// The same row (same id) was there: left as it is.
    Present,
    /// Another row holds its unique name (email, slug): not written.
    Taken,
}

/// Rows copied from another system (`truxe import`) with their ids,
/// hashes and times; an existing row is never overwritten.
#[async_trait]
pub trait ImportRepo: Send + Sync {
    /// A user with everything it carries (hash, MFA secret, lockout).
    async fn import_user(&self, u: &User) -> Result<Imported, RepoError>;
    /// An organization, its parent imported before it.
    async fn import_org(&self, o: &Organization) -> Result<Imported, RepoError>;
    /// A membership; `Present` if the user is a member already.
    async fn import_membership(&self, m: &Membership) -> Result<Imported, RepoError>;
}

/// Everything the service needs from storage.
#[async_trait]
pub trait Store:
    UserRepo
    + SessionRepo
    + MfaRepo
    + TokenRepo
    + OrgRepo
    + MachineRepo
    + WebhookRepo
    + SocialRepo
    + SealedRepo
    + ImportRepo
    + OidcRepo
    + PasskeyRepo
    + AuditSink
    + AuditQuery
{
    /// Whether the database answers (for `/ready`).
    async fn ping(&self) -> bool;
    /// Write transactions worth running at once: one where the database
    /// takes one writer at a time (SQLite), more where it takes many.
    fn concurrent_writers(&self) -> usize {
        1
    }
}
