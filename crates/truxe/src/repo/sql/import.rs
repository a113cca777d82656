//! Rows copied from another system as they are (`truxe import`): ids,
//! hashes and times kept, nothing overwritten, so running it again only
//! adds what is missing.

use async_trait::async_trait;
use sqlx::Row;

use super::{Changed, SqlStore};
use crate::model::{Membership, Organization, User};
use crate::repo::{ImportRepo, Imported, RepoError};

#[async_trait]
impl ImportRepo for SqlStore {
    async fn import_user(&self, u: &User) -> Result<Imported, RepoError> {
        self.forgetting(Changed::User(&u.id), async {
            let mut tx = self.pool.begin().await?;
            let holder = sqlx::query("SELECT id FROM users WHERE id = $1 OR email = $2")
                .bind(&u.id)
                .bind(&u.email)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = holder {
                let id: String = row.try_get("id")?;
                return Ok(if id == u.id { Imported::Present } else { Imported::Taken });
            }
            sqlx::query(
                "INSERT INTO users (id, email, password_hash, email_verified, status, is_admin, metadata,
                                    failed_logins, failed_since, locked_until, mfa_enabled, mfa_secret,
                                    created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&u.id)
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(u.email_verified as i64)
            .bind(&u.status)
            .bind(u.is_admin as i64)
            .bind(u.metadata.to_string())
            .bind(u.failed_logins)
            .bind(u.failed_since)
            .bind(u.locked_until)
            .bind(u.mfa_enabled as i64)
            .bind(&u.mfa_secret)
            .bind(u.created_at)
            .bind(u.updated_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Imported::New)
        })
        .await
    }

    async fn import_org(&self, o: &Organization) -> Result<Imported, RepoError> {
        let mut tx = self.pool.begin().await?;
        let holder = sqlx::query("SELECT id FROM organizations WHERE id = $1 OR slug = $2")
            .bind(&o.id)
            .bind(&o.slug)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = holder {
            let id: String = row.try_get("id")?;
            return Ok(if id == o.id {
                Imported::Present
            } else {
                Imported::Taken
            });
        }
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
        tx.commit().await?;
        Ok(Imported::New)
    }

    async fn import_membership(&self, m: &Membership) -> Result<Imported, RepoError> {
        let done = sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, user_id) DO NOTHING",
        )
        .bind(&m.org_id)
        .bind(&m.user_id)
        .bind(&m.role)
        .bind(m.created_at)
        .bind(m.updated_at)
        .execute(&self.db)
        .await?;
        Ok(if done.rows_affected() == 1 {
            Imported::New
        } else {
            Imported::Present
        })
    }
}
