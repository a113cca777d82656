//! Social sign-ins in flight, linked identities, and the sealed columns
//! that key rotation rewrites.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::Changed;
use super::SqlStore;
use crate::model::{OAuthIdentity, OAuthState};
use crate::repo::{RepoError, SealedColumn, SealedRepo, SocialRepo};

fn state(r: &AnyRow) -> Result<OAuthState, RepoError> {
    Ok(OAuthState {
        id_hash: r.try_get("id_hash")?,
        provider: r.try_get("provider")?,
        verifier_sealed: r.try_get("verifier_sealed")?,
        nonce: r.try_get("nonce")?,
        binding_hash: r.try_get("binding_hash")?,
        redirect_uri: r.try_get("redirect_uri")?,
        mode: r.try_get("mode")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

fn identity(r: &AnyRow) -> Result<OAuthIdentity, RepoError> {
    Ok(OAuthIdentity {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        provider: r.try_get("provider")?,
        subject: r.try_get("subject")?,
        email: r.try_get("email")?,
        tokens_sealed: r.try_get("tokens_sealed")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        last_login_at: r.try_get("last_login_at")?,
    })
}

#[async_trait]
impl SocialRepo for SqlStore {
    async fn create_oauth_state(&self, s: &OAuthState) -> Result<(), RepoError> {
        sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
            .bind(s.created_at)
            .execute(&self.db)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_states (id_hash, provider, verifier_sealed, nonce, binding_hash, redirect_uri, mode, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&s.id_hash)
        .bind(&s.provider)
        .bind(&s.verifier_sealed)
        .bind(&s.nonce)
        .bind(&s.binding_hash)
        .bind(&s.redirect_uri)
        .bind(&s.mode)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn take_oauth_state(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<OAuthState>, RepoError> {
        let row = sqlx::query("DELETE FROM oauth_states WHERE id_hash = $1 RETURNING *")
            .bind(id_hash)
            .fetch_optional(&self.db)
            .await?;
        Ok(row
            .map(|r| state(&r))
            .transpose()?
            .filter(|s| s.expires_at > now))
    }

    async fn identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<OAuthIdentity>, RepoError> {
        sqlx::query("SELECT * FROM oauth_identities WHERE provider = $1 AND subject = $2")
            .bind(provider)
            .bind(subject)
            .fetch_optional(&self.db)
            .await?
            .map(|r| identity(&r))
            .transpose()
    }

    async fn identities(&self, user_id: &str) -> Result<Vec<OAuthIdentity>, RepoError> {
        sqlx::query("SELECT * FROM oauth_identities WHERE user_id = $1 ORDER BY created_at, id")
            .bind(user_id)
            .fetch_all(&self.db)
            .await?
            .iter()
            .map(identity)
            .collect()
    }

    async fn create_identity(&self, i: &OAuthIdentity) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO oauth_identities (id, user_id, provider, subject, email, tokens_sealed, created_at, updated_at, last_login_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&i.id)
        .bind(&i.user_id)
        .bind(&i.provider)
        .bind(&i.subject)
        .bind(&i.email)
        .bind(&i.tokens_sealed)
        .bind(i.created_at)
        .bind(i.updated_at)
        .bind(i.last_login_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn identity_signed_in(
        &self,
        id: &str,
        email: &str,
        tokens_sealed: &str,
        now: i64,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE oauth_identities SET email = $1, tokens_sealed = $2, updated_at = $3, last_login_at = $3 WHERE id = $4",
        )
        .bind(email)
        .bind(tokens_sealed)
        .bind(now)
        .bind(id)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn delete_identity(&self, user_id: &str, id: &str) -> Result<bool, RepoError> {
        let done = sqlx::query("DELETE FROM oauth_identities WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl SealedRepo for SqlStore {
    async fn sealed_values(
        &self,
        col: SealedColumn,
        after: &str,
        limit: u32,
    ) -> Result<Vec<(String, String)>, RepoError> {
        // Table and column names come from the fixed `SealedColumn` list.
        let (table, key, sealed) = col.location();
        let sql = format!(
            "SELECT {key} AS k, {sealed} AS v FROM {table}
             WHERE {sealed} IS NOT NULL AND {key} > $1 ORDER BY {key} LIMIT $2"
        );
        sqlx::query(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.db)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("k")?, r.try_get("v")?)))
            .collect()
    }

    async fn reseal(
        &self,
        col: SealedColumn,
        key: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, RepoError> {
        self.forgetting(Changed::All, async {
            let (table, key_col, sealed) = col.location();
            let sql =
                format!("UPDATE {table} SET {sealed} = $1 WHERE {key_col} = $2 AND {sealed} = $3");
            let done = sqlx::query(&sql)
                .bind(new)
                .bind(key)
                .bind(old)
                .execute(&self.db)
                .await?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }
}
