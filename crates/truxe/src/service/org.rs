//! Organizations: creation (the creator becomes owner), members and roles,
//! invitations, the hierarchy, and switching the organization a session
//! acts in.
//!
//! Every organization-scoped operation passes [`AuthService::authorize`]
//! first: it reads the caller's membership *now* (not from the token) and
//! asks the policy ([`super::policy`]) whether the role grants the
//! permission. Someone who is not a member learns nothing: the answer is
//! the same 404 as for an organization that does not exist.

use secure::audit::Outcome;
use secure::token;
use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use super::auth::{ClientInfo, Principal, Tokens};
use super::letters::Letter;
use super::machine::Caller;
use super::policy::{self, perm, PolicyError, RoleDef, RoleSet};
use super::{AuthError, AuthService};
use crate::model::{Invitation, Membership, Organization};
use crate::repo::{Acceptance, MemberChange, RepoError};

/// Invitation tokens are recognisable by this prefix.
const INVITE_PREFIX: &str = "tinv_";

/// Largest page of a list.
pub const MAX_PAGE: u32 = 200;

/// Organization claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrgClaims {
    /// The organization.
    pub org_id: String,
    /// The caller's role in it.
    pub role: String,
    /// That role's effective permissions, sorted.
    pub permissions: Vec<String>,
}

/// Fields of a new or changed organization; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrgInput {
    /// Display name (required on create).
    #[serde(default)]
    pub name: Option<String>,
    /// URL-safe unique name; derived from the name when absent on create.
    #[serde(default)]
    pub slug: Option<String>,
    /// Parent organization; `Some(None)` (JSON `null`) detaches.
    #[serde(default, with = "double_option")]
    pub parent_id: Option<Option<String>>,
    /// Free-form JSON object.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// Distinguishes an absent field from an explicit `null`.
mod double_option {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// A custom role as clients send it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    /// Name (taken from the path on update).
    #[serde(default)]
    pub name: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Permissions held directly.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Roles inherited.
    #[serde(default)]
    pub inherits: Vec<String>,
}

/// What an authorized caller holds in an organization.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The caller for messages: ``role `admin` `` or ``service account `ci` ``.
    pub who: String,
    /// Effective permissions.
    pub held: BTreeSet<String>,
    /// The user's role; `None` for service accounts.
    pub role: Option<String>,
    /// The organization's roles.
    pub roles: RoleSet,
}

impl Grant {
    /// Whether the caller holds every permission of `role` (the rule
    /// against escalation: nobody grants, changes or removes more than
    /// they hold).
    pub fn covers_role(&self, role: &str) -> bool {
        self.roles
            .effective(role)
            .is_ok_and(|wanted| policy::set_covers(&self.held, &wanted))
    }

    /// 403 unless the caller holds every one of `wanted`.
    pub fn require_covers(&self, wanted: &BTreeSet<String>, what: &str) -> Result<(), AuthError> {
        if policy::set_covers(&self.held, wanted) {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "{} cannot {what} permissions it lacks",
                self.who
            )))
        }
    }
}

/// An organization's place in the hierarchy.
#[derive(Debug)]
pub struct Hierarchy {
    /// The organization.
    pub org: Organization,
    /// Its parent, grandparent, …, nearest first.
    pub ancestors: Vec<Organization>,
    /// Direct children.
    pub children: Vec<Organization>,
}

fn no_org() -> AuthError {
    AuthError::NotFound("no such organization".into())
}

fn conflict(code: &'static str, message: impl Into<String>) -> AuthError {
    AuthError::Conflict {
        code,
        message: message.into(),
    }
}

fn policy_error(e: PolicyError) -> AuthError {
    match e {
        PolicyError::Cycle(_) => conflict("role_cycle", e.to_string()),
        other => AuthError::Invalid(other.to_string()),
    }
}

pub(super) fn check_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AuthError::Invalid(
            "name must be 1 to 100 characters, without control characters".into(),
        ));
    }
    Ok(name.to_owned())
}

pub(super) fn check_slug(slug: &str) -> Result<String, AuthError> {
    let ok = (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-');
    if ok {
        Ok(slug.to_owned())
    } else {
        Err(AuthError::Invalid(
            "slug must be 2 to 63 lower-case letters, digits or inner hyphens".into(),
        ))
    }
}

/// A slug from a display name: ASCII letters and digits, hyphens between.
fn slug_from(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 50 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.len() < 2 {
        format!("org-{}", &token::random_uuid()[..8])
    } else {
        out
    }
}

fn check_metadata(m: &serde_json::Value) -> Result<(), AuthError> {
    if !m.is_object() {
        return Err(AuthError::Invalid("metadata must be a JSON object".into()));
    }
    if m.to_string().len() > 16 * 1024 {
        return Err(AuthError::Invalid("metadata must be at most 16 KiB".into()));
    }
    Ok(())
}

fn page(limit: Option<u32>) -> Result<u32, AuthError> {
    let limit = limit.unwrap_or(50);
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(limit)
    } else {
        Err(AuthError::Invalid(format!(
            "limit must be between 1 and {MAX_PAGE}"
        )))
    }
}

impl AuthService {
    /// The roles of an organization, resolved on the blocking pool (an
    /// organization may define up to `MAX_CUSTOM_ROLES` nested roles).
    pub(super) async fn roles_of(&self, org_id: &str) -> Result<RoleSet, AuthError> {
        let custom = self.store.custom_roles(org_id).await?;
        if custom.is_empty() {
            return Ok(RoleSet::default());
        }
        tokio::task::spawn_blocking(move || RoleSet::new(custom))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// The policy gate of every organization-scoped call. A user's current
    /// membership, or a service account's own organization and effective
    /// permissions, must grant `wanted`. Outsiders get 404, insiders
    /// without the permission 403 (and an audit event).
    pub(super) async fn authorize(
        &self,
        c: &Caller,
        org_id: &str,
        wanted: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Grant, AuthError> {
        let grant = match c {
            Caller::User(p) => {
                let m = self
                    .store
                    .membership(org_id, &p.user.id)
                    .await?
                    .ok_or_else(no_org)?;
                let roles = self.roles_of(org_id).await?;
                Grant {
                    who: format!("role `{}`", m.role),
                    // A role that no longer resolves grants nothing.
                    held: roles.effective(&m.role).unwrap_or_default(),
                    role: Some(m.role),
                    roles,
                }
            }
            Caller::Admin(p) => {
                if !p.user.is_admin {
                    return Err(no_org());
                }
                self.store.org(org_id).await?.ok_or_else(no_org)?;
                Grant {
                    who: "a system administrator".into(),
                    held: BTreeSet::from(["*".to_owned()]),
                    role: None,
                    roles: self.roles_of(org_id).await?,
                }
            }
            Caller::Service(s) => {
                if s.account.org_id != org_id {
                    return Err(no_org());
                }
                Grant {
                    who: format!("service account `{}`", s.account.name),
                    held: s.permissions.clone(),
                    role: None,
                    roles: self.roles_of(org_id).await?,
                }
            }
        };
        if policy::set_allows(&grant.held, wanted) {
            return Ok(grant);
        }
        let e = self
            .event("permission_denied", Outcome::Denied, ctx, now)
            .actor(c.actor())
            .target(org_id);
        self.record(e.details(serde_json::json!({"permission": wanted, "as": grant.who})))
            .await;
        Err(AuthError::Forbidden(format!(
            "{} lacks the permission `{wanted}`",
            grant.who
        )))
    }

    /// [`Self::authorize`] for a resource of `org_id`: an outsider's 404
    /// names the resource (`missing`), not the organization.
    pub(super) async fn authorize_resource(
        &self,
        c: &Caller,
        org_id: &str,
        wanted: &str,
        missing: fn() -> AuthError,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Grant, AuthError> {
        self.authorize(c, org_id, wanted, ctx, now)
            .await
            .map_err(|e| match e {
                AuthError::NotFound(_) => missing(),
                other => other,
            })
    }

    /// The org claims for `user_id` acting in `org_id`, or `None` if they
    /// are no longer a member.
    pub(super) async fn org_claims(
        &self,
        user_id: &str,
        org_id: &str,
    ) -> Result<Option<OrgClaims>, AuthError> {
        let Some(m) = self.store.membership(org_id, user_id).await? else {
            return Ok(None);
        };
        let roles = self.roles_of(org_id).await?;
        // A role that no longer resolves grants nothing.
        let permissions = roles.effective(&m.role).unwrap_or_default();
        Ok(Some(OrgClaims {
            org_id: org_id.to_owned(),
            role: m.role,
            permissions: permissions.into_iter().collect(),
        }))
    }

    /// Checks that `parent` may become the parent of `child` (`None` for a
    /// new organization): the caller may update the parent, and the parent
    /// is not `child` or one of its descendants.
    async fn check_parent(
        &self,
        c: &Caller,
        child: Option<&str>,
        parent: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let missing = || AuthError::NotFound("no such parent organization".into());
        self.authorize_resource(c, parent, perm::ORG_UPDATE, missing, ctx, now)
            .await?;
        let mut at = Some(parent.to_owned());
        for _ in 0..policy::MAX_DEPTH {
            let Some(id) = at else { return Ok(()) };
            if Some(id.as_str()) == child {
                return Err(conflict(
                    "hierarchy_cycle",
                    "an organization cannot be its own ancestor",
                ));
            }
            at = self.store.org(&id).await?.and_then(|o| o.parent_id);
        }
        Err(conflict(
            "hierarchy_too_deep",
            format!("the hierarchy is limited to {} levels", policy::MAX_DEPTH),
        ))
    }

    /// `POST /organizations`: the caller becomes its owner.
    pub async fn create_org(
        &self,
        p: &Principal,
        input: OrgInput,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Organization, AuthError> {
        let c = &Caller::User(p.clone());
        let name = check_name(
            input
                .name
                .as_deref()
                .ok_or_else(|| AuthError::Invalid("`name` is required".into()))?,
        )?;
        let metadata = input.metadata.unwrap_or_else(|| serde_json::json!({}));
        check_metadata(&metadata)?;
        let parent_id = input.parent_id.flatten();
        if let Some(parent) = &parent_id {
            self.check_parent(c, None, parent, ctx, now).await?;
        }
        let explicit = input.slug.is_some();
        let mut org = Organization {
            id: token::random_uuid(),
            slug: match input.slug {
                Some(s) => check_slug(&s)?,
                None => slug_from(&name),
            },
            name,
            parent_id,
            metadata,
            created_by: Some(p.user.id.clone()),
            created_at: now,
            updated_at: now,
        };
        let mut result = self.store.create_org(&org, &p.user.id).await;
        if matches!(result, Err(RepoError::Conflict)) && !explicit {
            // A derived slug that is taken gets a random suffix.
            org.slug = format!("{}-{}", org.slug, &token::random_uuid()[..6]);
            result = self.store.create_org(&org, &p.user.id).await;
        }
        match result {
            Err(RepoError::Conflict) => {
                return Err(conflict(
                    "slug_taken",
                    "an organization with this slug exists",
                ))
            }
            other => other?,
        }
        self.caller_event(
            "organization_created",
            c,
            &org.id,
            serde_json::json!({"slug": org.slug, "parent_id": org.parent_id}),
            ctx,
            now,
        )
        .await;
        Ok(org)
    }

    /// The caller's organizations with their role, paged by id.
    pub async fn my_orgs(
        &self,
        p: &Principal,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<(Organization, String)>, AuthError> {
        Ok(self
            .store
            .user_orgs(&p.user.id, after, page(limit)?)
            .await?)
    }

    /// `GET /organizations/{id}` with the caller's role.
    pub async fn get_org(
        &self,
        c: &Caller,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(Organization, String), AuthError> {
        let grant = self.authorize(c, id, perm::ORG_READ, ctx, now).await?;
        let org = self.store.org(id).await?.ok_or_else(no_org)?;
        Ok((org, grant.role.unwrap_or_else(|| "service".into())))
    }

    /// `PUT /organizations/{id}/settings` (the original Truxe's): replaces
    /// `settings` within the organization's metadata, keeping its other
    /// keys. Truxe stores the settings; it does not act on them.
    pub async fn update_org_settings(
        &self,
        c: &Caller,
        id: &str,
        settings: serde_json::Value,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Organization, AuthError> {
        self.authorize(c, id, perm::ORG_UPDATE, ctx, now).await?;
        let org = self.store.org(id).await?.ok_or_else(no_org)?;
        let mut metadata = match org.metadata {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        metadata.insert("settings".into(), settings);
        let input = OrgInput {
            metadata: Some(serde_json::Value::Object(metadata)),
            ..OrgInput::default()
        };
        self.update_org(c, id, input, ctx, now).await
    }

    /// `PUT /organizations/{id}`.
    pub async fn update_org(
        &self,
        c: &Caller,
        id: &str,
        input: OrgInput,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Organization, AuthError> {
        let grant = self.authorize(c, id, perm::ORG_UPDATE, ctx, now).await?;
        let mut org = self.store.org(id).await?.ok_or_else(no_org)?;
        if let Some(name) = &input.name {
            org.name = check_name(name)?;
        }
        if let Some(slug) = &input.slug {
            org.slug = check_slug(slug)?;
        }
        if let Some(meta) = input.metadata {
            check_metadata(&meta)?;
            org.metadata = meta;
        }
        if let Some(parent) = input.parent_id {
            if let Some(parent) = &parent {
                if org.parent_id.as_ref() != Some(parent) {
                    self.check_parent(c, Some(id), parent, ctx, now).await?;
                }
            }
            org.parent_id = parent;
        }
        org.updated_at = now;
        match self.store.update_org(&org).await {
            Err(RepoError::Conflict) => {
                return Err(conflict(
                    "slug_taken",
                    "an organization with this slug exists",
                ))
            }
            other => other?,
        }
        self.caller_event(
            "organization_updated",
            c,
            id,
            serde_json::json!({"slug": org.slug, "parent_id": org.parent_id, "as": grant.who}),
            ctx,
            now,
        )
        .await;
        Ok(org)
    }

    /// `DELETE /organizations/{id}`: refused while it has children.
    pub async fn delete_org(
        &self,
        c: &Caller,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.authorize(c, id, perm::ORG_DELETE, ctx, now).await?;
        if !self.store.children(id).await?.is_empty() {
            return Err(conflict(
                "has_children",
                "move or delete the child organizations first",
            ));
        }
        let parent = self.store.org(id).await?.and_then(|o| o.parent_id);
        self.store.delete_org(id).await?;
        self.caller_event(
            "organization_deleted",
            c,
            id,
            serde_json::json!({"parent_id": parent}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }

    /// `GET /organizations/{id}/hierarchy`.
    pub async fn hierarchy(
        &self,
        c: &Caller,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Hierarchy, AuthError> {
        self.authorize(c, id, perm::ORG_READ, ctx, now).await?;
        let org = self.store.org(id).await?.ok_or_else(no_org)?;
        let mut ancestors = Vec::new();
        let mut at = org.parent_id.clone();
        while let Some(pid) = at {
            if ancestors.len() >= policy::MAX_DEPTH {
                break;
            }
            let Some(o) = self.store.org(&pid).await? else {
                break;
            };
            at = o.parent_id.clone();
            ancestors.push(o);
        }
        let children = self.store.children(id).await?;
        Ok(Hierarchy {
            org,
            ancestors,
            children,
        })
    }

    /// `GET /organizations/{id}/members` with emails, paged by user id.
    pub async fn members(
        &self,
        c: &Caller,
        id: &str,
        after: Option<&str>,
        limit: Option<u32>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Vec<(Membership, String)>, AuthError> {
        self.authorize(c, id, perm::MEMBERS_READ, ctx, now).await?;
        Ok(self.store.members(id, after, page(limit)?).await?)
    }

    /// `PUT /organizations/{id}/members/{userId}`: changes a member's role.
    /// The caller's role must cover both the old and the new role.
    pub async fn set_member_role(
        &self,
        c: &Caller,
        id: &str,
        user_id: &str,
        role: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Membership, AuthError> {
        let grant = self
            .authorize(c, id, perm::MEMBERS_UPDATE, ctx, now)
            .await?;
        if grant.roles.get(role).is_none() {
            return Err(AuthError::Invalid(format!(
                "no role named `{role}` in this organization"
            )));
        }
        let target = self
            .store
            .membership(id, user_id)
            .await?
            .ok_or_else(|| AuthError::NotFound("no such member; invite them instead".into()))?;
        if !grant.covers_role(role) || !grant.covers_role(&target.role) {
            return Err(AuthError::Forbidden(format!(
                "{} cannot grant or change a role with permissions it lacks",
                grant.who
            )));
        }
        match self.store.set_member_role(id, user_id, role, now).await? {
            MemberChange::Done => {}
            MemberChange::NotMember => return Err(AuthError::NotFound("no such member".into())),
            MemberChange::LastOwner => {
                return Err(conflict(
                    "last_owner",
                    "an organization keeps at least one owner",
                ))
            }
        }
        self.caller_event(
            "member_role_changed",
            c,
            id,
            serde_json::json!({"user_id": user_id, "from": target.role, "to": role}),
            ctx,
            now,
        )
        .await;
        Ok(Membership {
            role: role.to_owned(),
            updated_at: now,
            ..target
        })
    }

    /// `DELETE /organizations/{id}/members/{userId}`: removes a member, or
    /// lets the caller leave.
    pub async fn remove_member(
        &self,
        c: &Caller,
        id: &str,
        user_id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let leaving = c.user().is_some_and(|p| p.user.id == user_id);
        let wanted = if leaving {
            perm::ORG_READ
        } else {
            perm::MEMBERS_REMOVE
        };
        let grant = self.authorize(c, id, wanted, ctx, now).await?;
        if !leaving {
            let target = self
                .store
                .membership(id, user_id)
                .await?
                .ok_or_else(|| AuthError::NotFound("no such member".into()))?;
            if !grant.covers_role(&target.role) {
                return Err(AuthError::Forbidden(format!(
                    "{} cannot remove a `{}`",
                    grant.who, target.role
                )));
            }
        }
        match self.store.remove_member(id, user_id, now).await? {
            MemberChange::Done => {}
            MemberChange::NotMember => return Err(AuthError::NotFound("no such member".into())),
            MemberChange::LastOwner => {
                return Err(conflict(
                    "last_owner",
                    "an organization keeps at least one owner; transfer ownership first",
                ))
            }
        }
        self.caller_event(
            if leaving {
                "member_left"
            } else {
                "member_removed"
            },
            c,
            id,
            serde_json::json!({"user_id": user_id}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }

    /// `GET /organizations/{id}/roles`: every role with its effective
    /// permissions; the bool marks built-in roles.
    pub async fn roles(
        &self,
        c: &Caller,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Vec<(RoleDef, bool, Vec<String>)>, AuthError> {
        let roles = self
            .authorize(c, id, perm::ROLES_READ, ctx, now)
            .await?
            .roles;
        Ok(roles
            .all()
            .into_iter()
            .map(|(def, builtin)| {
                let eff = roles.effective(&def.name).unwrap_or_default();
                (def, builtin, eff.into_iter().collect())
            })
            .collect())
    }

    /// Creates (`create`) or replaces a custom role. The caller's role must
    /// cover the new role, and on replace the old one too.
    pub async fn put_role(
        &self,
        c: &Caller,
        id: &str,
        input: RoleInput,
        path_name: Option<&str>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<RoleDef, AuthError> {
        let grant = self.authorize(c, id, perm::ROLES_MANAGE, ctx, now).await?;
        let roles = &grant.roles;
        let name = match (path_name, input.name.as_deref()) {
            (Some(path), Some(body)) if path != body => {
                return Err(AuthError::Invalid(
                    "a role cannot be renamed; create a new one".into(),
                ))
            }
            (Some(n), _) | (None, Some(n)) => n.to_owned(),
            (None, None) => return Err(AuthError::Invalid("`name` is required".into())),
        };
        if policy::BUILTIN.contains(&name.as_str()) {
            return Err(AuthError::Invalid(format!(
                "`{name}` is a built-in role and cannot be changed"
            )));
        }
        let existing = roles.get(&name);
        match (path_name.is_some(), &existing) {
            (false, Some(_)) => {
                return Err(conflict("role_exists", format!("role `{name}` exists")))
            }
            (true, None) => return Err(AuthError::NotFound(format!("no role named `{name}`"))),
            _ => {}
        }
        let def = RoleDef {
            name: name.clone(),
            description: input.description.unwrap_or_default(),
            permissions: input.permissions,
            inherits: input.inherits,
        };
        roles.validate(&def).map_err(policy_error)?;
        // The caller's permissions are judged as they are now, before the
        // change: editing one's own role cannot raise it.
        let wanted = roles
            .with(def.clone())
            .effective(&name)
            .map_err(policy_error)?;
        if existing.is_some() && !grant.covers_role(&name) {
            return Err(AuthError::Forbidden(format!(
                "{} cannot change a role with permissions it lacks",
                grant.who
            )));
        }
        grant.require_covers(&wanted, "define a role with")?;
        self.store.put_role(id, &def, now).await?;
        self.caller_event(
            if existing.is_some() {
                "role_updated"
            } else {
                "role_created"
            },
            c,
            id,
            serde_json::json!({"role": name, "permissions": def.permissions, "inherits": def.inherits}),
            ctx,
            now,
        )
        .await;
        Ok(def)
    }

    /// Deletes a custom role nobody holds or inherits.
    pub async fn delete_role(
        &self,
        c: &Caller,
        id: &str,
        name: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        let grant = self.authorize(c, id, perm::ROLES_MANAGE, ctx, now).await?;
        let roles = &grant.roles;
        if policy::BUILTIN.contains(&name) {
            return Err(AuthError::Invalid(format!("`{name}` is a built-in role")));
        }
        if roles.get(name).is_none() {
            return Err(AuthError::NotFound(format!("no role named `{name}`")));
        }
        if !grant.covers_role(name) {
            return Err(AuthError::Forbidden(format!(
                "{} cannot delete a role with permissions it lacks",
                grant.who
            )));
        }
        let heirs = roles.heirs(name);
        if !heirs.is_empty() {
            return Err(conflict(
                "role_in_use",
                format!("roles {} inherit `{name}`", heirs.join(", ")),
            ));
        }
        if self.store.role_holders(id, name).await? > 0 {
            return Err(conflict(
                "role_in_use",
                format!("members hold `{name}`; give them another role first"),
            ));
        }
        self.store.delete_role(id, name).await?;
        self.caller_event(
            "role_deleted",
            c,
            id,
            serde_json::json!({"role": name}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }

    /// `POST /organizations/{id}/invite`: mails a single-use link. The
    /// inviter's role must cover the offered role.
    pub async fn invite(
        &self,
        c: &Caller,
        id: &str,
        email: &str,
        role: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Invitation, AuthError> {
        let grant = self
            .authorize(c, id, perm::MEMBERS_INVITE, ctx, now)
            .await?;
        let email = super::auth::normalize_email(email)?;
        if grant.roles.get(role).is_none() {
            return Err(AuthError::Invalid(format!(
                "no role named `{role}` in this organization"
            )));
        }
        if !grant.covers_role(role) {
            return Err(AuthError::Forbidden(format!(
                "{} cannot invite as `{role}`",
                grant.who
            )));
        }
        let org = self.store.org(id).await?.ok_or_else(no_org)?;
        let t = token::generate(INVITE_PREFIX);
        let inv = Invitation {
            id: token::random_uuid(),
            org_id: id.to_owned(),
            email: email.clone(),
            role: role.to_owned(),
            invited_by: Some(c.actor()),
            created_at: now,
            expires_at: now + self.cfg.invitation_ttl.as_secs() as i64,
            accepted_at: None,
            revoked_at: None,
        };
        self.store.create_invitation(&inv, &t.digest).await?;
        let url = format!(
            "{}/invitations/accept?token={}",
            self.cfg.public_url,
            t.plaintext.expose()
        );
        let inviter = match c {
            Caller::User(p) | Caller::Admin(p) => p.user.email.clone(),
            Caller::Service(s) => format!("The service account {}", s.account.name),
        };
        let mail = Letter::Invitation {
            inviter: &inviter,
            organization: &org.name,
            role,
            link: &url,
            token: t.plaintext.expose(),
            days: self.cfg.invitation_ttl.as_secs() / 86_400,
        }
        .mail(&self.cfg.brand, &email, now.saturating_mul(1000));
        if let Err(e) = self.mailer.send(&mail).await {
            // An invitation nobody can receive must not linger.
            self.store.revoke_invitation(id, &inv.id, now).await?;
            return Err(AuthError::Unavailable(e));
        }
        self.caller_event(
            "invitation_created",
            c,
            id,
            serde_json::json!({"invitation_id": inv.id, "role": role}),
            ctx,
            now,
        )
        .await;
        Ok(inv)
    }

    /// The organization's invitations, newest first.
    pub async fn invitations(
        &self,
        c: &Caller,
        id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<Vec<Invitation>, AuthError> {
        self.authorize(c, id, perm::MEMBERS_INVITE, ctx, now)
            .await?;
        Ok(self.store.invitations(id).await?)
    }

    /// Revokes a pending invitation.
    pub async fn revoke_invitation(
        &self,
        c: &Caller,
        id: &str,
        invitation_id: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(), AuthError> {
        self.authorize(c, id, perm::MEMBERS_INVITE, ctx, now)
            .await?;
        if !self.store.revoke_invitation(id, invitation_id, now).await? {
            return Err(AuthError::NotFound("no such pending invitation".into()));
        }
        self.caller_event(
            "invitation_revoked",
            c,
            id,
            serde_json::json!({"invitation_id": invitation_id}),
            ctx,
            now,
        )
        .await;
        Ok(())
    }

    /// `POST /organizations/invitations/accept`: joins with the invited
    /// role. The invitation must be addressed to the caller's email.
    pub async fn accept_invitation(
        &self,
        p: &Principal,
        presented: &str,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(Organization, String), AuthError> {
        let c = &Caller::User(p.clone());
        let invalid =
            || AuthError::NotFound("the invitation is invalid, expired or already used".into());
        if !presented.starts_with(INVITE_PREFIX) || presented.len() > 128 {
            return Err(invalid());
        }
        let outcome = self
            .store
            .accept_invitation(&token::digest(presented), &p.user.email, &p.user.id, now)
            .await?;
        let (inv, role) = match outcome {
            Acceptance::Invalid => return Err(invalid()),
            Acceptance::OtherAddress => {
                return Err(AuthError::Forbidden(
                    "this invitation was sent to another email address".into(),
                ))
            }
            Acceptance::Joined(inv) => {
                let role = inv.role.clone();
                (inv, role)
            }
            Acceptance::AlreadyMember(inv, role) => (inv, role),
        };
        let org = self.store.org(&inv.org_id).await?.ok_or_else(invalid)?;
        self.caller_event(
            "invitation_accepted",
            c,
            &inv.org_id,
            serde_json::json!({"invitation_id": inv.id, "role": role}),
            ctx,
            now,
        )
        .await;
        Ok((org, role))
    }

    /// `POST /auth/switch-org`: rotates the session into `org_id` (or out of
    /// any organization with `None`) and issues tokens carrying it.
    pub async fn switch_org(
        &self,
        p: &Principal,
        org_id: Option<&str>,
        ctx: &ClientInfo,
        now: i64,
    ) -> Result<(Tokens, Option<OrgClaims>), AuthError> {
        let c = &Caller::User(p.clone());
        let claims = match org_id {
            Some(id) => Some(self.org_claims(&p.user.id, id).await?.ok_or_else(no_org)?),
            None => None,
        };
        let next = token::generate(super::auth::REFRESH_PREFIX);
        if !self
            .store
            .rotate_session(
                &p.session.id,
                org_id,
                &next.digest,
                p.session.expires_at,
                now,
            )
            .await?
        {
            return Err(AuthError::Unauthenticated("session has ended".into()));
        }
        self.caller_event(
            "organization_switched",
            c,
            org_id.unwrap_or(""),
            serde_json::json!({"session_id": p.session.id}),
            ctx,
            now,
        )
        .await;
        let tokens = self.tokens(&p.user, &p.session.id, next.plaintext, claims.clone(), now)?;
        Ok((tokens, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug_from("Acme, Inc."), "acme-inc");
        assert_eq!(slug_from("  Ünïcode Team  "), "n-code-team");
        assert!(slug_from("??").starts_with("org-"));
        assert!(check_slug("acme-inc").is_ok());
        for bad in ["", "a", "-a", "a-", "A1", "a_b", &"x".repeat(64)] {
            assert!(check_slug(bad).is_err(), "{bad}");
        }
        assert!(check_name("  ").is_err());
        assert!(check_name("a\u{7}").is_err());
        assert_eq!(check_name(" Acme ").ok().as_deref(), Some("Acme"));
    }

    #[test]
    fn org_input_tells_null_from_absent() {
        let absent: OrgInput = serde_json::from_str("{}").unwrap_or_default();
        assert_eq!(absent.parent_id, None);
        let null: OrgInput = serde_json::from_str(r#"{"parentId":null}"#).unwrap_or_default();
        assert_eq!(null.parent_id, Some(None));
        let set: OrgInput = serde_json::from_str(r#"{"parentId":"p"}"#).unwrap_or_default();
        assert_eq!(set.parent_id, Some(Some("p".into())));
    }
}
