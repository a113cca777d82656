//! System administration: users (search, block, unlock, force logout,
//! erasure), sessions and the audit trail. Every method checks the
//! administrator flag itself; the HTTP layer additionally authenticates
//! and audits every admin request before a handler runs.

use secure::audit::AuditEvent;

use super::auth::{ClientInfo, Principal};
use super::AuthError;
use super::AuthService;
use crate::model::{OAuthIdentity, Organization, Session, User};
use crate::repo::{AuditFilter, UserFilter};

/// What an administrator sees of one user.
#[derive(Debug)]
pub struct UserDetail {
    /// The account.
    pub user: User,
    /// Live sessions.
    pub sessions: Vec<Session>,
    /// Organizations and the user's role in each.
    pub organizations: Vec<(Organization, String)>,
    /// Linked social-login identities.
    pub identities: Vec<OAuthIdentity>,
}

impl AuthService {
    pub(super) fn require_admin(&self, p: &Principal) -> Result<(), AuthError> {
        if p.user.is_admin {
            Ok(())
        } else {
            Err(AuthError::Forbidden("admin role required".into()))
        }
    }

    async fn existing_user(&self, id: &str) -> Result<User, AuthError> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or_else(|| AuthError::NotFound("no such user".into()))
    }

    /// Users matching `filter`, by id.
    pub async fn admin_users(
        &self,
        p: &Principal,
        filter: UserFilter,
    ) -> Result<Vec<User>, AuthError> {
        self.require_admin(p)?;
        if !(1..=super::org::MAX_PAGE).contains(&filter.limit) {
            return Err(AuthError::Invalid(format!(
                "limit must be between 1 and {}",
                super::org::MAX_PAGE
            )));
        }
        Ok(self.store.search_users(&filter).await?)
    }

    /// One user with sessions and organizations.
    pub async fn admin_user(
        &self,
        p: &Principal,
        id: &str,
        now: i64,
    ) -> Result<UserDetail, AuthError> {
        self.require_admin(p)?;
        let user = self.existing_user(id).await?;
        Ok(UserDetail {
            sessions: self.store.live_sessions(id, now).await?,
            organizations: self.store.user_orgs(id, None, super::org::MAX_PAGE).await?,
            identities: self.store.identities(id).await?,
            user,
        })
    }

    /// Blocks (status `disabled`, every session ended) or unblocks a user.
    pub async fn admin_set_blocked(
        &self,
        p: &Principal,
        id: &str,
        blocked: bool,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<User, AuthError> {
        self.require_admin(p)?;
        let mut user = self.existing_user(id).await?;
        if blocked && id == p.user.id {
            return Err(AuthError::Invalid(
                "administrators cannot block themselves".into(),
            ));
        }
        let status = if blocked { "disabled" } else { "active" };
        self.store.set_status(id, status, now).await?;
        let ended = if blocked {
            self.store
                .revoke_user_sessions(id, "blocked_by_admin", now)
                .await?
        } else {
            0
        };
        self.actor_event(
            if blocked {
                "user_blocked"
            } else {
                "user_unblocked"
            },
            &p.user.id,
            id,
            serde_json::json!({"sessions_ended": ended}),
            ctx,
            now,
        )
        .await;
        user.status = status.to_owned();
        Ok(user)
    }

    /// Clears a lockout.
    pub async fn unlock(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.require_admin(p)?;
        self.existing_user(id).await?;
        self.store.clear_failures(id, now).await?;
        tracing::info!(admin_id = %p.user.id, user_id = %id, "account unlocked by admin");
        self.actor_event(
            "account_unlock",
            &p.user.id,
            id,
            serde_json::json!({}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }

    /// Ends every session of a user; returns how many.
    pub async fn admin_logout(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<u64, AuthError> {
        self.require_admin(p)?;
        self.existing_user(id).await?;
        let n = self
            .store
            .revoke_user_sessions(id, "logged_out_by_admin", now)
            .await?;
        self.actor_event(
            "user_logged_out",
            &p.user.id,
            id,
            serde_json::json!({"sessions_ended": n}),
            ctx,
            now,
        )
        .await;
        Ok(n)
    }

    /// Deletes a user and erases their personal data: the account, its
    /// sessions, factors and tokens, memberships, invitations to its
    /// address, and the address, IP and user agent in audit events about
    /// it (the events stay, pseudonymous, so the trail keeps its shape).
    /// Refused while the user is the only owner of an organization.
    pub async fn admin_delete_user(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.require_admin(p)?;
        if id == p.user.id {
            return Err(AuthError::Invalid(
                "administrators cannot delete themselves".into(),
            ));
        }
        let user = self.existing_user(id).await?;
        let sole = self.store.sole_owned_orgs(id).await?;
        if !sole.is_empty() {
            return Err(AuthError::Conflict {
                code: "last_owner",
                message: format!(
                    "the user is the only owner of {} organization(s): {}; transfer or delete them first",
                    sole.len(),
                    sole.join(", ")
                ),
            });
        }
        // Their organizations are noted first: afterwards the memberships
        // are gone, and `user.deleted` goes to these organizations' webhooks.
        let orgs: Vec<String> = self
            .store
            .user_orgs(id, None, super::org::MAX_PAGE)
            .await?
            .into_iter()
            .map(|(o, _)| o.id)
            .collect();
        self.store.erase_user(id, &user.email).await?;
        tracing::info!(admin_id = %p.user.id, user_id = %id, "user deleted and erased");
        self.actor_event(
            "user_deleted",
            &p.user.id,
            id,
            serde_json::json!({"organizations": orgs}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }

    /// Live sessions, of one user or of everyone, by id.
    pub async fn admin_sessions(
        &self,
        p: &Principal,
        user_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
        now: i64,
    ) -> Result<Vec<Session>, AuthError> {
        self.require_admin(p)?;
        if !(1..=super::org::MAX_PAGE).contains(&limit) {
            return Err(AuthError::Invalid(format!(
                "limit must be between 1 and {}",
                super::org::MAX_PAGE
            )));
        }
        Ok(self
            .store
            .all_live_sessions(user_id, after, limit, now)
            .await?)
    }

    /// Ends any session.
    pub async fn admin_end_session(
        &self,
        p: &Principal,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.require_admin(p)?;
        let s = self
            .store
            .session(id)
            .await?
            .filter(|s| s.is_live(now))
            .ok_or_else(|| AuthError::NotFound("no such live session".into()))?;
        self.store.revoke_session(id, "ended_by_admin", now).await?;
        self.actor_event(
            "admin_session_ended",
            &p.user.id,
            id,
            serde_json::json!({"user_id": s.user_id}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }

    /// Reads the audit trail, newest first.
    pub async fn audit_events(
        &self,
        p: &Principal,
        filter: AuditFilter,
    ) -> Result<Vec<(i64, AuditEvent)>, AuthError> {
        self.require_admin(p)?;
        Ok(self.store.audit_events(&filter).await?)
    }
}
