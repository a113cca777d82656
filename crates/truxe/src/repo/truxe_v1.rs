//! Reading an original (Node) Truxe database, for `truxe import truxe-v1`.
//!
//! The original's schema grew by migrations and by tables its services
//! create on first use, so a database may lack any table or column this
//! reads. Each row is read whole as JSON (`to_jsonb`), so a missing column
//! is only a missing field, and its timestamps are turned into unix
//! seconds by PostgreSQL itself. Rows come in pages ordered by key, so a
//! source of any size is read in bounded memory.
//!
//! Struct fields are the original's columns under their own names (its
//! migrations document them), so they are not documented again here.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Row};

use super::RepoError;

/// Rows per page.
pub const PAGE: i64 = 500;

/// `users` (with `020_password_authentication` and `022_email_verification`).
#[derive(Debug, Deserialize)]
pub struct V1User {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// `active`, `blocked` or `pending`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Argon2 PHC string; none for accounts that never set a password.
    #[serde(default)]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub locked_until: Option<f64>,
    #[serde(default)]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
}

/// `organizations` (a table, or after `030_nested_tenancy` a view of root
/// workspaces without `parent_org_id`).
#[derive(Debug, Deserialize)]
pub struct V1Org {
    pub id: String,
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub parent_org_id: Option<String>,
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
    #[serde(default)]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
}

/// `memberships` (table or view).
#[derive(Debug, Deserialize)]
pub struct V1Membership {
    pub org_id: String,
    pub user_id: String,
    pub role: String,
    /// None while the invitation is pending.
    #[serde(default)]
    pub joined_at: Option<f64>,
    #[serde(default)]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
}

/// `roles` (`031_rbac_schema`): per-tenant roles, built-in ones marked.
#[derive(Debug, Deserialize)]
pub struct V1Role {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub is_system: Option<bool>,
    #[serde(default)]
    pub permissions: Option<serde_json::Value>,
    /// Ids of roles it inherits.
    #[serde(default)]
    pub inherits_from: Option<Vec<String>>,
}

/// `user_roles`: a role held in a tenant.
#[derive(Debug, Deserialize)]
pub struct V1UserRole {
    pub user_id: String,
    pub role_id: String,
    pub tenant_id: String,
    #[serde(default)]
    pub expires_at: Option<f64>,
}

/// `oauth_accounts` (`014_oauth_infrastructure`): linked provider accounts.
#[derive(Debug, Deserialize)]
pub struct V1Identity {
    pub id: String,
    pub user_id: String,
    pub provider: String,
    pub provider_account_id: String,
    #[serde(default)]
    pub provider_email: Option<String>,
    #[serde(default)]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
}

/// `webhook_endpoints` (created by the original's webhook service).
#[derive(Debug, Deserialize)]
pub struct V1Endpoint {
    pub id: String,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    /// Kept in the clear by the original.
    pub secret: String,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub is_active: Option<bool>,
    #[serde(default)]
    pub created_by: Option<String>,
    #[serde(default)]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub updated_at: Option<f64>,
}

/// What a paged table is read by.
pub struct Table {
    /// Relation name.
    pub name: &'static str,
    /// SQL of the (text) key rows are ordered and resumed by.
    key: &'static str,
    /// Timestamp columns, read as unix seconds.
    times: &'static [&'static str],
}

/// The tables the import reads, in the order it reads them.
pub const USERS: Table = Table {
    name: "users",
    key: "t.id::text",
    times: &["created_at", "updated_at", "locked_until"],
};
pub const ORGS: Table = Table {
    name: "organizations",
    key: "t.id::text",
    times: &["created_at", "updated_at"],
};
pub const ROLES: Table = Table {
    name: "roles",
    key: "t.id::text",
    times: &[],
};
pub const MEMBERSHIPS: Table = Table {
    name: "memberships",
    key: "t.org_id::text || '/' || t.user_id::text",
    times: &["created_at", "updated_at", "joined_at"],
};
pub const USER_ROLES: Table = Table {
    name: "user_roles",
    key: "t.tenant_id::text || '/' || t.user_id::text || '/' || t.role_id::text",
    times: &["expires_at"],
};
pub const IDENTITIES: Table = Table {
    name: "oauth_accounts",
    key: "t.id::text",
    times: &["created_at", "updated_at"],
};
pub const ENDPOINTS: Table = Table {
    name: "webhook_endpoints",
    key: "t.id::text",
    times: &["created_at", "updated_at"],
};

/// A connection to the original's database (read only: this module only
/// runs `SELECT`s, in read-only transactions).
pub struct V1Source {
    pool: AnyPool,
}

impl V1Source {
    /// Connects to `url` (`postgres://…`).
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        sqlx::any::install_default_drivers();
        if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
            return Err(RepoError::Db(
                "--from takes the original Truxe's PostgreSQL URL (postgres://…)".into(),
            ));
        }
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("SET default_transaction_read_only = on; SET TIME ZONE 'UTC'")
                        .await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// Whether the relation (table or view) exists.
    pub async fn has(&self, relation: &str) -> Result<bool, RepoError> {
        let row = sqlx::query("SELECT to_regclass($1) IS NOT NULL AS present")
            .bind(format!("public.{relation}"))
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<bool, _>("present")?)
    }

    /// Rows of `t` in total (for progress).
    pub async fn count(&self, t: &Table) -> Result<i64, RepoError> {
        let sql = format!("SELECT count(*) AS n FROM {}", t.name);
        let row = sqlx::query(&sql).fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// Up to [`PAGE`] rows of `t` after key `after` (`""` for the first),
    /// with each row's key.
    pub async fn page<T: DeserializeOwned>(
        &self,
        t: &Table,
        after: &str,
    ) -> Result<Vec<(String, T)>, RepoError> {
        let times: Vec<String> = t
            .times
            .iter()
            .map(|c| {
                format!("'{c}', floor(extract(epoch from (to_jsonb(t)->>'{c}')::timestamptz))")
            })
            .collect();
        let sql = format!(
            "SELECT {key} AS k, (to_jsonb(t) || jsonb_build_object({times}))::text AS row \
             FROM {name} t WHERE {key} > $1 ORDER BY {key} LIMIT {PAGE}",
            key = t.key,
            name = t.name,
            times = times.join(", "),
        );
        let rows = sqlx::query(&sql).bind(after).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let key: String = r.try_get("k")?;
                let json: String = r.try_get("row")?;
                let row = serde_json::from_str(&json)
                    .map_err(|e| RepoError::Db(format!("{} row {key} unreadable: {e}", t.name)))?;
                Ok((key, row))
            })
            .collect()
    }

    /// Confirmed TOTP secrets (`mfa_settings`, sealed as the original
    /// sealed them), by user id; empty if the table is missing.
    pub async fn totp_secrets(&self) -> Result<HashMap<String, String>, RepoError> {
        if !self.has("mfa_settings").await? {
            return Ok(HashMap::new());
        }
        let rows = sqlx::query(
            "SELECT user_id::text AS user_id, totp_secret FROM mfa_settings \
             WHERE totp_verified AND totp_secret IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("user_id")?, r.try_get("totp_secret")?)))
            .collect()
    }
}
