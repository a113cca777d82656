//! OpenID Connect provider storage: clients, authorization codes, consents.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{json_column, SqlStore};
use crate::model::{AuthCode, CodeUse, OAuthClient};
use crate::repo::{ClientStats, OidcRepo, RepoError};

fn client(r: &AnyRow) -> Result<OAuthClient, RepoError> {
    Ok(OAuthClient {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        name: r.try_get("name")?,
        secret_hash: r.try_get("secret_hash")?,
        jwks: r.try_get("jwks")?,
        redirect_uris: json_column(r, "redirect_uris")?,
        post_logout_redirect_uris: json_column(r, "post_logout_redirect_uris")?,
        grant_types: json_column(r, "grant_types")?,
        scopes: json_column(r, "scopes")?,
        access_ttl: r.try_get("access_ttl")?,
        refresh_ttl: r.try_get("refresh_ttl")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl OidcRepo for SqlStore {
    async fn create_client(&self, c: &OAuthClient) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO oauth_clients (id, org_id, name, secret_hash, redirect_uris, post_logout_redirect_uris,
                                        grant_types, scopes, access_ttl, refresh_ttl, created_by, created_at, updated_at, jwks)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(&c.id)
        .bind(&c.org_id)
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(json(&c.redirect_uris))
        .bind(json(&c.post_logout_redirect_uris))
        .bind(json(&c.grant_types))
        .bind(json(&c.scopes))
        .bind(c.access_ttl)
        .bind(c.refresh_ttl)
        .bind(&c.created_by)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(&c.jwks)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn client(&self, id: &str) -> Result<Option<OAuthClient>, RepoError> {
        let row = sqlx::query("SELECT * FROM oauth_clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(client).transpose()
    }

    async fn clients(&self) -> Result<Vec<OAuthClient>, RepoError> {
        let rows = sqlx::query("SELECT * FROM oauth_clients ORDER BY created_at, id LIMIT 1000")
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(client).collect()
    }

    async fn update_client(&self, c: &OAuthClient) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE oauth_clients SET name = $1, secret_hash = $2, redirect_uris = $3, post_logout_redirect_uris = $4,
                    grant_types = $5, scopes = $6, access_ttl = $7, refresh_ttl = $8, updated_at = $9, jwks = $11
             WHERE id = $10",
        )
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(json(&c.redirect_uris))
        .bind(json(&c.post_logout_redirect_uris))
        .bind(json(&c.grant_types))
        .bind(json(&c.scopes))
        .bind(c.access_ttl)
        .bind(c.refresh_ttl)
        .bind(c.updated_at)
        .bind(&c.id)
        .bind(&c.jwks)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn client_stats(&self, client_id: &str, now: i64) -> Result<ClientStats, RepoError> {
        let live = sqlx::query(
            "SELECT COUNT(*) AS sessions, COUNT(DISTINCT user_id) AS users, MAX(last_used_at) AS last_used
             FROM sessions WHERE client_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(client_id)
        .bind(now)
        .fetch_one(&self.db)
        .await?;
        let consents = sqlx::query("SELECT COUNT(*) AS n FROM oauth_consents WHERE client_id = $1")
            .bind(client_id)
            .fetch_one(&self.db)
            .await?;
        Ok(ClientStats {
            active_sessions: live.try_get("sessions")?,
            active_users: live.try_get("users")?,
            last_used_at: live.try_get("last_used")?,
            consents: consents.try_get("n")?,
        })
    }

    async fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, RepoError> {
        sqlx::query("DELETE FROM oauth_client_assertions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.db)
            .await?;
        let r = sqlx::query(
            "INSERT INTO oauth_client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.db)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_client(&self, id: &str, now: i64) -> Result<bool, RepoError> {
        // Its sessions end with it: their tokens named it.
        self.forgetting(super::Changed::All, async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = 'client_deleted' WHERE client_id = $2 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            let done = sqlx::query("DELETE FROM oauth_clients WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }

    async fn create_code(&self, c: &AuthCode) -> Result<(), RepoError> {
        // Expired codes go as new ones come.
        sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
            .bind(c.created_at - 3600)
            .execute(&self.db)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_id, user_id, redirect_uri, scope, nonce, code_challenge,
                                      auth_time, amr, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&c.code_hash)
        .bind(&c.client_id)
        .bind(&c.user_id)
        .bind(&c.redirect_uri)
        .bind(&c.scope)
        .bind(&c.nonce)
        .bind(&c.code_challenge)
        .bind(c.auth_time)
        .bind(json(&c.amr))
        .bind(c.created_at)
        .bind(c.expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn use_code(&self, code_hash: &str, now: i64) -> Result<CodeUse, RepoError> {
        // The conditional UPDATE is the arbiter: one exchange wins.
        let won = sqlx::query(
            "UPDATE oauth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING *",
        )
        .bind(now)
        .bind(code_hash)
        .fetch_optional(&self.db)
        .await?;
        if let Some(r) = won {
            return Ok(CodeUse::Fresh(Box::new(AuthCode {
                code_hash: r.try_get("code_hash")?,
                client_id: r.try_get("client_id")?,
                user_id: r.try_get("user_id")?,
                redirect_uri: r.try_get("redirect_uri")?,
                scope: r.try_get("scope")?,
                nonce: r.try_get("nonce")?,
                code_challenge: r.try_get("code_challenge")?,
                auth_time: r.try_get("auth_time")?,
                amr: json_column(&r, "amr")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })));
        }
        let row = sqlx::query("SELECT used_at, session_id FROM oauth_codes WHERE code_hash = $1")
            .bind(code_hash)
            .fetch_optional(&self.db)
            .await?;
        Ok(match row {
            Some(r) if r.try_get::<Option<i64>, _>("used_at")?.is_some() => CodeUse::Replayed {
                session_id: r.try_get("session_id")?,
            },
            _ => CodeUse::Invalid,
        })
    }

    async fn code_session(&self, code_hash: &str, session_id: &str) -> Result<(), RepoError> {
        sqlx::query("UPDATE oauth_codes SET session_id = $1 WHERE code_hash = $2")
            .bind(session_id)
            .bind(code_hash)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> Result<Vec<String>, RepoError> {
        let row =
            sqlx::query("SELECT scopes FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .fetch_optional(&self.db)
                .await?;
        match row {
            Some(r) => json_column(&r, "scopes"),
            None => Ok(Vec::new()),
        }
    }

    async fn put_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO oauth_consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = $3, granted_at = $4",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(json(scopes))
        .bind(now)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn consents(&self, user_id: &str) -> Result<Vec<(String, Vec<String>, i64)>, RepoError> {
        let rows = sqlx::query(
            "SELECT client_id, scopes, granted_at FROM oauth_consents WHERE user_id = $1 ORDER BY granted_at",
        )
        .bind(user_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("client_id")?,
                    json_column(r, "scopes")?,
                    r.try_get("granted_at")?,
                ))
            })
            .collect()
    }

    async fn refresh_token(
        &self,
        digest: &str,
    ) -> Result<Option<(String, Option<i64>, i64)>, RepoError> {
        let row = sqlx::query(
            "SELECT session_id, used_at, expires_at FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(digest)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("session_id")?,
                r.try_get("used_at")?,
                r.try_get("expires_at")?,
            ))
        })
        .transpose()
    }

    async fn revoke_consent(
        &self,
        user_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<bool, RepoError> {
        // Withdrawn consent ends what it allowed: the client's sessions.
        self.forgetting(super::Changed::User(user_id), async {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query("DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
                .bind(user_id)
                .bind(client_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = 'consent_revoked' WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        })
        .await
    }
}
