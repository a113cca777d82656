//! Organizations, memberships, custom roles and invitations.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::Changed;
use super::{json_column, SqlStore};
use crate::model::{Invitation, Membership, Organization};
use crate::repo::{Acceptance, MemberChange, OrgRepo, RepoError};
use crate::service::policy::{RoleDef, OWNER};

fn org(r: &AnyRow) -> Result<Organization, RepoError> {
    Ok(Organization {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        slug: r.try_get("slug")?,
        parent_id: r.try_get("parent_id")?,
        metadata: json_column(r, "metadata")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn membership(r: &AnyRow) -> Result<Membership, RepoError> {
    Ok(Membership {
        org_id: r.try_get("org_id")?,
        user_id: r.try_get("user_id")?,
        role: r.try_get("role")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn invitation(r: &AnyRow) -> Result<Invitation, RepoError> {
    Ok(Invitation {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        email: r.try_get("email")?,
        role: r.try_get("role")?,
        invited_by: r.try_get("invited_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        accepted_at: r.try_get("accepted_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// Takes the organization's row lock (PostgreSQL) or the write lock
/// (SQLite) for the rest of `tx`, so owner counts read next stay true
/// until commit.
async fn lock_org(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    org_id: &str,
    now: i64,
) -> Result<(), RepoError> {
    sqlx::query("UPDATE organizations SET updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(org_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Whether changing `user_id` away from owner would leave no owner.
async fn last_owner(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    org_id: &str,
    user_id: &str,
) -> Result<Option<bool>, RepoError> {
    let Some(row) = sqlx::query("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org_id)
        .bind(user_id)
        .fetch_optional(&mut **tx)
        .await?
    else {
        return Ok(None);
    };
    if row.try_get::<String, _>("role")? != OWNER {
        return Ok(Some(false));
    }
    let owners: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM memberships WHERE org_id = $1 AND role = $2")
            .bind(org_id)
            .bind(OWNER)
            .fetch_one(&mut **tx)
            .await?
            .try_get("n")?;
    Ok(Some(owners <= 1))
}

#[async_trait]
impl OrgRepo for SqlStore {
    async fn create_org(&self, o: &Organization, owner: &str) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO organizations (id, name, slug, parent_id, metadata, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&o.id)
        .bind(&o.name)
        .bind(&o.slug)
        .bind(&o.parent_id)
        .bind(o.metadata.to_string())
        .bind(&o.created_by)
        .bind(o.created_at)
        .bind(o.updated_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&o.id)
        .bind(owner)
        .bind(OWNER)
        .bind(o.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn org(&self, id: &str) -> Result<Option<Organization>, RepoError> {
        let row = sqlx::query("SELECT * FROM organizations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(org).transpose()
    }

    async fn search_orgs(
        &self,
        query: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Organization>, RepoError> {
        let pattern = query.map(super::contains_pattern);
        let rows = sqlx::query(
            "SELECT * FROM organizations
             WHERE $1 IS NULL OR LOWER(name) LIKE $1 ESCAPE '\\' OR slug LIKE $1 ESCAPE '\\'
             ORDER BY name, id LIMIT $2",
        )
        .bind(pattern)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(org).collect()
    }

    async fn update_org(&self, o: &Organization) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE organizations SET name = $1, slug = $2, parent_id = $3, metadata = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(&o.name)
        .bind(&o.slug)
        .bind(&o.parent_id)
        .bind(o.metadata.to_string())
        .bind(o.updated_at)
        .bind(&o.id)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn delete_org(&self, id: &str) -> Result<(), RepoError> {
        self.forgetting(Changed::All, async {
            let mut tx = self.pool.begin().await?;
            // Sessions acting in it fall back to no organization.
            sqlx::query("UPDATE sessions SET org_id = NULL WHERE org_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM organizations WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn children(&self, id: &str) -> Result<Vec<Organization>, RepoError> {
        let rows =
            sqlx::query("SELECT * FROM organizations WHERE parent_id = $1 ORDER BY name, id")
                .bind(id)
                .fetch_all(&self.db)
                .await?;
        rows.iter().map(org).collect()
    }

    async fn user_orgs(
        &self,
        user_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Organization, String)>, RepoError> {
        let rows = sqlx::query(
            "SELECT o.*, m.role AS member_role FROM organizations o JOIN memberships m ON m.org_id = o.id
             WHERE m.user_id = $1 AND ($2 IS NULL OR o.id > $2) ORDER BY o.id LIMIT $3",
        )
        .bind(user_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| Ok((org(r)?, r.try_get("member_role")?)))
            .collect()
    }

    async fn membership(
        &self,
        org_id: &str,
        user_id: &str,
    ) -> Result<Option<Membership>, RepoError> {
        let row = sqlx::query("SELECT * FROM memberships WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(membership).transpose()
    }

    async fn members(
        &self,
        org_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(Membership, String)>, RepoError> {
        let rows = sqlx::query(
            "SELECT m.*, u.email AS email FROM memberships m JOIN users u ON u.id = m.user_id
             WHERE m.org_id = $1 AND ($2 IS NULL OR m.user_id > $2) ORDER BY m.user_id LIMIT $3",
        )
        .bind(org_id)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| Ok((membership(r)?, r.try_get("email")?)))
            .collect()
    }

    async fn set_member_role(
        &self,
        org_id: &str,
        user_id: &str,
        role: &str,
        now: i64,
    ) -> Result<MemberChange, RepoError> {
        let mut tx = self.pool.begin().await?;
        lock_org(&mut tx, org_id, now).await?;
        match last_owner(&mut tx, org_id, user_id).await? {
            None => return Ok(MemberChange::NotMember),
            Some(true) if role != OWNER => return Ok(MemberChange::LastOwner),
            Some(_) => {}
        }
        sqlx::query(
            "UPDATE memberships SET role = $1, updated_at = $2 WHERE org_id = $3 AND user_id = $4",
        )
        .bind(role)
        .bind(now)
        .bind(org_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(MemberChange::Done)
    }

    async fn remove_member(
        &self,
        org_id: &str,
        user_id: &str,
        now: i64,
    ) -> Result<MemberChange, RepoError> {
        self.forgetting(Changed::User(user_id), async {
            let mut tx = self.pool.begin().await?;
            lock_org(&mut tx, org_id, now).await?;
            match last_owner(&mut tx, org_id, user_id).await? {
                None => return Ok(MemberChange::NotMember),
                Some(true) => return Ok(MemberChange::LastOwner),
                Some(false) => {}
            }
            sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE sessions SET org_id = NULL WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(MemberChange::Done)
        })
        .await
    }

    async fn sole_owned_orgs(&self, user_id: &str) -> Result<Vec<String>, RepoError> {
        let rows = sqlx::query(
            "SELECT m.org_id AS org_id FROM memberships m
             WHERE m.user_id = $1 AND m.role = $2
               AND (SELECT COUNT(*) FROM memberships o WHERE o.org_id = m.org_id AND o.role = $2) = 1
             ORDER BY m.org_id",
        )
        .bind(user_id)
        .bind(OWNER)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("org_id")?)).collect()
    }

    async fn role_holders(&self, org_id: &str, role: &str) -> Result<i64, RepoError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM memberships WHERE org_id = $1 AND role = $2")
                .bind(org_id)
                .bind(role)
                .fetch_one(&self.db)
                .await?;
        Ok(row.try_get("n")?)
    }

    async fn custom_roles(&self, org_id: &str) -> Result<Vec<RoleDef>, RepoError> {
        let rows = sqlx::query("SELECT * FROM org_roles WHERE org_id = $1 ORDER BY name")
            .bind(org_id)
            .fetch_all(&self.db)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(RoleDef {
                    name: r.try_get("name")?,
                    description: r.try_get("description")?,
                    permissions: json_column(r, "permissions")?,
                    inherits: json_column(r, "inherits")?,
                })
            })
            .collect()
    }

    async fn put_role(&self, org_id: &str, role: &RoleDef, now: i64) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO org_roles (org_id, name, description, permissions, inherits, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (org_id, name) DO UPDATE SET description = $3, permissions = $4, inherits = $5, updated_at = $6",
        )
        .bind(org_id)
        .bind(&role.name)
        .bind(&role.description)
        .bind(serde_json::to_string(&role.permissions).map_err(|e| RepoError::Db(e.to_string()))?)
        .bind(serde_json::to_string(&role.inherits).map_err(|e| RepoError::Db(e.to_string()))?)
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn delete_role(&self, org_id: &str, name: &str) -> Result<bool, RepoError> {
        let r = sqlx::query("DELETE FROM org_roles WHERE org_id = $1 AND name = $2")
            .bind(org_id)
            .bind(name)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn create_invitation(&self, i: &Invitation, token_hash: &str) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO invitations (id, token_hash, org_id, email, role, invited_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&i.id)
        .bind(token_hash)
        .bind(&i.org_id)
        .bind(&i.email)
        .bind(&i.role)
        .bind(&i.invited_by)
        .bind(i.created_at)
        .bind(i.expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn invitations(&self, org_id: &str) -> Result<Vec<Invitation>, RepoError> {
        let rows = sqlx::query(
            "SELECT * FROM invitations WHERE org_id = $1 ORDER BY created_at DESC, id LIMIT 500",
        )
        .bind(org_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(invitation).collect()
    }

    async fn revoke_invitation(&self, org_id: &str, id: &str, now: i64) -> Result<bool, RepoError> {
        let r = sqlx::query(
            "UPDATE invitations SET revoked_at = $1
             WHERE id = $2 AND org_id = $3 AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .bind(org_id)
        .execute(&self.db)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn accept_invitation(
        &self,
        token_hash: &str,
        email: &str,
        user_id: &str,
        now: i64,
    ) -> Result<Acceptance, RepoError> {
        let mut tx = self.pool.begin().await?;
        // The conditional UPDATE spends the invitation exactly once.
        let spent = sqlx::query(
            "UPDATE invitations SET accepted_at = $1, accepted_by = $2
             WHERE token_hash = $3 AND email = $4 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $1
             RETURNING *",
        )
        .bind(now)
        .bind(user_id)
        .bind(token_hash)
        .bind(email)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = spent else {
            let live = sqlx::query(
                "SELECT 1 AS live FROM invitations
                 WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            return Ok(if live.is_some() {
                Acceptance::OtherAddress
            } else {
                Acceptance::Invalid
            });
        };
        let inv = invitation(&row)?;
        let existing =
            sqlx::query("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2")
                .bind(&inv.org_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match existing {
            Some(r) => Acceptance::AlreadyMember(inv, r.try_get("role")?),
            None => {
                sqlx::query(
                    "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(&inv.org_id)
                .bind(user_id)
                .bind(&inv.role)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Acceptance::Joined(inv)
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}
