//! Service accounts and API keys.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{json_column, SqlStore};
use crate::model::{ApiKey, ServiceAccount};
use crate::repo::{MachineRepo, RepoError};

fn json(v: &[String]) -> Result<String, RepoError> {
    serde_json::to_string(v).map_err(|e| RepoError::Db(e.to_string()))
}

fn account(r: &AnyRow) -> Result<ServiceAccount, RepoError> {
    Ok(ServiceAccount {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        permissions: json_column(r, "permissions")?,
        status: r.try_get("status")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn key(r: &AnyRow) -> Result<ApiKey, RepoError> {
    Ok(ApiKey {
        id: r.try_get("id")?,
        service_account_id: r.try_get("service_account_id")?,
        name: r.try_get("name")?,
        environment: r.try_get("environment")?,
        secret_hash: r.try_get("secret_hash")?,
        permissions: json_column(r, "permissions")?,
        allowed_cidrs: json_column(r, "allowed_cidrs")?,
        rate_tier: r.try_get("rate_tier")?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
        last_used_ip: r.try_get("last_used_ip")?,
        revoked_at: r.try_get("revoked_at")?,
        replaced_by: r.try_get("replaced_by")?,
        grace_until: r.try_get("grace_until")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

async fn insert_key<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    exec: E,
    k: &ApiKey,
) -> Result<(), RepoError> {
    sqlx::query(
        "INSERT INTO api_keys (id, service_account_id, name, environment, secret_hash, permissions, allowed_cidrs,
                               rate_tier, expires_at, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&k.id)
    .bind(&k.service_account_id)
    .bind(&k.name)
    .bind(&k.environment)
    .bind(&k.secret_hash)
    .bind(json(&k.permissions)?)
    .bind(json(&k.allowed_cidrs)?)
    .bind(&k.rate_tier)
    .bind(k.expires_at)
    .bind(&k.created_by)
    .bind(k.created_at)
    .execute(exec)
    .await?;
    Ok(())
}

#[async_trait]
impl MachineRepo for SqlStore {
    async fn create_service_account(
        &self,
        a: &ServiceAccount,
        secret_hash: &str,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO service_accounts (id, org_id, name, description, permissions, client_secret_hash, status,
                                           created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&a.id)
        .bind(&a.org_id)
        .bind(&a.name)
        .bind(&a.description)
        .bind(json(&a.permissions)?)
        .bind(secret_hash)
        .bind(&a.status)
        .bind(&a.created_by)
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn service_account(
        &self,
        id: &str,
    ) -> Result<Option<(ServiceAccount, String)>, RepoError> {
        let row = sqlx::query("SELECT * FROM service_accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.map(|r| Ok((account(&r)?, r.try_get("client_secret_hash")?)))
            .transpose()
    }

    async fn service_accounts(&self, org_id: &str) -> Result<Vec<ServiceAccount>, RepoError> {
        let rows = sqlx::query(
            "SELECT * FROM service_accounts WHERE org_id = $1 ORDER BY name LIMIT 1000",
        )
        .bind(org_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(account).collect()
    }

    async fn update_service_account(&self, a: &ServiceAccount) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE service_accounts SET name = $1, description = $2, permissions = $3, status = $4, updated_at = $5
             WHERE id = $6",
        )
        .bind(&a.name)
        .bind(&a.description)
        .bind(json(&a.permissions)?)
        .bind(&a.status)
        .bind(a.updated_at)
        .bind(&a.id)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn delete_service_account(&self, id: &str) -> Result<(), RepoError> {
        sqlx::query("DELETE FROM service_accounts WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    async fn create_api_key(&self, k: &ApiKey) -> Result<(), RepoError> {
        insert_key(&self.db, k).await
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>, RepoError> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(key).transpose()
    }

    async fn api_keys(&self, service_account_id: &str) -> Result<Vec<ApiKey>, RepoError> {
        let rows = sqlx::query(
            "SELECT * FROM api_keys WHERE service_account_id = $1 ORDER BY created_at DESC, id LIMIT 1000",
        )
        .bind(service_account_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(key).collect()
    }

    async fn rotate_api_key(
        &self,
        old: &str,
        grace_until: i64,
        new: &ApiKey,
        now: i64,
    ) -> Result<bool, RepoError> {
        let mut tx = self.pool.begin().await?;
        let won = sqlx::query(
            "UPDATE api_keys SET replaced_by = $1, grace_until = $2
             WHERE id = $3 AND revoked_at IS NULL AND replaced_by IS NULL AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(&new.id)
        .bind(grace_until)
        .bind(old)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !won {
            return Ok(false);
        }
        insert_key(&mut *tx, new).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool, RepoError> {
        let r =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&self.db)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn touch_api_key(&self, id: &str, ip: Option<&str>, now: i64) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $1, last_used_ip = $2
             WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $4)",
        )
        .bind(now)
        .bind(ip)
        .bind(id)
        .bind(now - 60)
        .execute(&self.db)
        .await?;
        Ok(())
    }
}
