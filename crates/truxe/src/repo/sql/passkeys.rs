//! Passkeys and the WebAuthn ceremonies in flight.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::SqlStore;
use crate::model::{Ceremony, PasskeyRecord};
use crate::repo::{PasskeyRepo, RepoError};

fn passkey(r: &AnyRow) -> Result<PasskeyRecord, RepoError> {
    Ok(PasskeyRecord {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        credential_id: r.try_get("credential_id")?,
        name: r.try_get("name")?,
        passkey: r.try_get("passkey")?,
        backup_eligible: r.try_get::<i64, _>("backup_eligible")? != 0,
        backed_up: r.try_get::<i64, _>("backed_up")? != 0,
        created_at: r.try_get("created_at")?,
        last_used_at: r.try_get("last_used_at")?,
    })
}

#[async_trait]
impl PasskeyRepo for SqlStore {
    async fn add_passkey(&self, p: &PasskeyRecord) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO passkeys (id, user_id, credential_id, name, passkey, backup_eligible, backed_up, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&p.id)
        .bind(&p.user_id)
        .bind(&p.credential_id)
        .bind(&p.name)
        .bind(&p.passkey)
        .bind(i64::from(p.backup_eligible))
        .bind(i64::from(p.backed_up))
        .bind(p.created_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn passkeys(&self, user_id: &str) -> Result<Vec<PasskeyRecord>, RepoError> {
        sqlx::query("SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created_at, id")
            .bind(user_id)
            .fetch_all(&self.db)
            .await?
            .iter()
            .map(passkey)
            .collect()
    }

    async fn has_passkeys(&self, user_id: &str) -> Result<bool, RepoError> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM passkeys WHERE user_id = $1 LIMIT 1")
                .bind(user_id)
                .fetch_optional(&self.db)
                .await?
                .is_some(),
        )
    }

    async fn passkey_used(
        &self,
        id: &str,
        passkey: &str,
        backed_up: bool,
        now: i64,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE passkeys SET passkey = $1, backed_up = $2, last_used_at = $3 WHERE id = $4",
        )
        .bind(passkey)
        .bind(i64::from(backed_up))
        .bind(now)
        .bind(id)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn delete_passkey(&self, user_id: &str, id: &str) -> Result<bool, RepoError> {
        let r = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn put_ceremony(&self, c: &Ceremony, now: i64) -> Result<(), RepoError> {
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.db)
            .await?;
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id, user_id, purpose, bound_to, state, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.user_id)
        .bind(&c.purpose)
        .bind(&c.bound_to)
        .bind(&c.state)
        .bind(c.expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn take_ceremony(&self, id: &str, now: i64) -> Result<Option<Ceremony>, RepoError> {
        let row = sqlx::query("DELETE FROM webauthn_ceremonies WHERE id = $1 RETURNING *")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.map(|r| {
            Ok(Ceremony {
                id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                purpose: r.try_get("purpose")?,
                bound_to: r.try_get("bound_to")?,
                state: r.try_get("state")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
        .map(|c| c.filter(|c: &Ceremony| c.expires_at > now))
    }
}
