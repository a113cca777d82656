//! SQL storage for SQLite (the zero-setup default) and PostgreSQL, through
//! sqlx's `Any` driver: one implementation, one set of queries written with
//! `$N` placeholders (which both accept). Dialect differences live only in
//! the two migration sets, `migrations/sqlite` and `migrations/postgres`.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Arguments, Row};

mod checkpoint;
mod conns;
mod import;
mod machines;
mod oidc;
mod orgs;
mod passkeys;
mod principals;
mod resident;
mod social;
mod tx;
mod webhooks;

use tx::{args, placeholders, value_rows, Batch, WriteTx};

use secure::audit::{AuditEvent, AuditSink, Outcome};

use super::{
    AuditFilter, AuditQuery, Challenge, MfaRepo, RepoError, Rotation, SessionRepo, SessionsBefore,
    SignInRead, Store, TokenRepo, UserFilter, UserRepo,
};

/// Reads a JSON column, tolerating a damaged value as the default.
fn json_column<T: serde::de::DeserializeOwned + Default>(
    r: &AnyRow,
    col: &str,
) -> Result<T, RepoError> {
    let text: String = r.try_get(col)?;
    Ok(serde_json::from_str(&text).unwrap_or_default())
}
use crate::model::{RefreshUse, Session, User, WebhookEndpoint};

/// What a write of users or sessions changed (see `principals`).
#[derive(Clone, Copy)]
pub(super) enum Changed<'a> {
    /// One user, or every session of theirs.
    User(&'a str),
    /// One session.
    Session(&'a str),
    /// Many users or sessions.
    All,
}

/// Users, sessions and the audit trail in SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    /// Where statements run (see `conns`).
    db: conns::Db,
    /// sqlx's pool, for transactions begun by sqlx and migrations.
    pool: AnyPool,
    /// Sessions and users of verified requests (SQLite only: see
    /// `principals`).
    principals: Option<std::sync::Arc<principals::Principals>>,
    /// SQLite's WAL checkpoints (see `checkpoint`).
    checkpoints: Option<std::sync::Arc<checkpoint::Checkpoints>>,
}

impl SqlStore {
    /// Runs `write`, then forgets what it may have changed from the
    /// verified-request memory, whatever came of it: a failure may follow
    /// a committed statement.
    pub(super) async fn forgetting<T>(
        &self,
        changed: Changed<'_>,
        write: impl std::future::Future<Output = Result<T, RepoError>>,
    ) -> Result<T, RepoError> {
        let done = write.await;
        self.forget(changed);
        done
    }

    /// Forgets what a committed write changed.
    fn forget(&self, changed: Changed<'_>) {
        let Some(p) = &self.principals else { return };
        match changed {
            Changed::User(id) => p.forget_user(id),
            Changed::Session(id) => p.forget_session(id),
            Changed::All => p.forget_all(),
        }
    }

    /// Connects to `url` (`sqlite://path` or `postgres://…`), creating a
    /// SQLite file if missing, and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, RepoError> {
        Self::open_with(url, checkpoint::Policy::default()).await
    }

    async fn open_with(url: &str, checkpoints: checkpoint::Policy) -> Result<Self, RepoError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let url = if sqlite && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_owned()
        };
        let opts: AnyConnectOptions = url
            .parse()
            .map_err(|e| RepoError::Db(format!("bad DATABASE_URL: {e}")))?;
        let pool = AnyPoolOptions::new()
            // On SQLite, statements and the hot transactions take `db`'s
            // connections; this pool only serves sqlx's transactions.
            .max_connections(if sqlite { 4 } else { 16 })
            .acquire_timeout(conns::ACQUIRE_TIMEOUT)
            // A SQLite connection is a thread in this process, not a socket
            // that can die idle; testing it before every use would cost a
            // round trip to that thread each time (sqlx still tests it when
            // it comes back to the pool, and drops it if broken).
            .test_before_acquire(!sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conns::prepare_sqlite(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts.clone())
            .await?;
        let migrator = if sqlite {
            sqlx::migrate!("./migrations/sqlite")
        } else {
            sqlx::migrate!("./migrations/postgres")
        };
        migrator
            .run(&pool)
            .await
            .map_err(|e| RepoError::Db(format!("migration failed: {e}")))?;
        let principals = sqlite.then(|| std::sync::Arc::new(principals::Principals::new()));
        let checkpoints = if sqlite {
            Some(checkpoint::Checkpoints::start(&pool, checkpoints).await?)
        } else {
            None
        };
        let db = if sqlite {
            conns::Db::Own(conns::Conns::new(opts, 8))
        } else {
            conns::Db::Pool(pool.clone())
        };
        Ok(SqlStore {
            db,
            pool,
            principals,
            checkpoints,
        })
    }
}

/// A live session's condition, `$3` being now.
const LIVE: &str = "revoked_at IS NULL AND expires_at > $3";

/// What opening a session must know of the sessions of the user `user`
/// (an SQL expression), as columns: whether it has had any
/// (`sessions_ever`, 0 or 1), whether any was from the user agent in `$2`
/// (`sessions_seen`, 0 or 1; `''` for none) and how many are live at `$3`
/// (`sessions_live`). Each is an index lookup (migration 0012): ended
/// sessions are kept until their retention passes, and a user may have
/// had thousands.
fn session_counts(user: &str) -> String {
    format!(
        "CAST(CASE WHEN EXISTS (SELECT 1 FROM sessions WHERE user_id = {user})
              THEN 1 ELSE 0 END AS BIGINT) AS sessions_ever,
         CAST(CASE WHEN EXISTS (SELECT 1 FROM sessions WHERE user_id = {user} AND user_agent = $2)
                OR ($2 = '' AND EXISTS (SELECT 1 FROM sessions
                                        WHERE user_id = {user} AND user_agent IS NULL))
              THEN 1 ELSE 0 END AS BIGINT) AS sessions_seen,
         (SELECT COUNT(*) FROM sessions WHERE user_id = {user} AND {LIVE}) AS sessions_live"
    )
}

/// The sign-in read ([`SessionRepo::sign_in_read`]): the user by address
/// (`$1`), whether it has passkeys, and [`session_counts`].
fn sign_in_sql() -> String {
    format!(
        "SELECT u.*,
           CAST(CASE WHEN EXISTS (SELECT 1 FROM passkeys p WHERE p.user_id = u.id)
                THEN 1 ELSE 0 END AS BIGINT) AS has_passkeys,
           {}
         FROM users u WHERE u.email = $1",
        session_counts("u.id")
    )
}

/// [`SessionsBefore`] from a row with [`session_counts`]' columns.
fn sessions_before(r: &AnyRow, to_end: Vec<String>) -> Result<SessionsBefore, RepoError> {
    Ok(SessionsBefore {
        to_end,
        any: r.try_get::<i64, _>("sessions_ever")? > 0,
        from_agent: r.try_get::<i64, _>("sessions_seen")? > 0,
    })
}

fn user(r: &AnyRow) -> Result<User, RepoError> {
    Ok(User {
        id: r.try_get("id")?,
        email: r.try_get("email")?,
        password_hash: r.try_get("password_hash")?,
        email_verified: r.try_get::<i64, _>("email_verified")? != 0,
        status: r.try_get("status")?,
        is_admin: r.try_get::<i64, _>("is_admin")? != 0,
        metadata: json_column(r, "metadata")?,
        failed_logins: r.try_get("failed_logins")?,
        failed_since: r.try_get("failed_since")?,
        locked_until: r.try_get("locked_until")?,
        mfa_enabled: r.try_get::<i64, _>("mfa_enabled")? != 0,
        mfa_secret: r.try_get("mfa_secret")?,
        mfa_pending_secret: r.try_get("mfa_pending_secret")?,
        mfa_last_step: r.try_get("mfa_last_step")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The columns of a session, as `SELECT *` names them…
const SESSION: [&str; 11] = [
    "id",
    "user_id",
    "created_at",
    "last_used_at",
    "expires_at",
    "revoked_at",
    "revoke_reason",
    "ip",
    "user_agent",
    "org_id",
    "client_id",
];
/// …and as [`SESSION_WITH_USER`] names them beside the user's.
const SESSION_AS: [&str; 11] = [
    "s_id",
    "s_user_id",
    "s_created_at",
    "s_last_used_at",
    "s_expires_at",
    "s_revoked_at",
    "s_revoke_reason",
    "s_ip",
    "s_user_agent",
    "s_org_id",
    "s_client_id",
];
/// A session and its user in one read (one round trip on the hot path).
const SESSION_WITH_USER: &str = "SELECT u.*, s.id AS s_id, s.user_id AS s_user_id,
    s.created_at AS s_created_at, s.last_used_at AS s_last_used_at,
    s.expires_at AS s_expires_at, s.revoked_at AS s_revoked_at,
    s.revoke_reason AS s_revoke_reason, s.ip AS s_ip, s.user_agent AS s_user_agent,
    s.org_id AS s_org_id, s.client_id AS s_client_id
    FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1";

fn session(r: &AnyRow) -> Result<Session, RepoError> {
    session_named(r, &SESSION)
}

fn session_named(r: &AnyRow, c: &[&str; 11]) -> Result<Session, RepoError> {
    Ok(Session {
        id: r.try_get(c[0])?,
        user_id: r.try_get(c[1])?,
        created_at: r.try_get(c[2])?,
        last_used_at: r.try_get(c[3])?,
        expires_at: r.try_get(c[4])?,
        revoked_at: r.try_get(c[5])?,
        revoke_reason: r.try_get(c[6])?,
        ip: r.try_get(c[7])?,
        user_agent: r.try_get(c[8])?,
        org_id: r.try_get(c[9])?,
        client_id: r.try_get(c[10])?,
    })
}

#[async_trait]
impl UserRepo for SqlStore {
    async fn create_user(&self, u: &User) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, email_verified, status, is_admin, metadata, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&u.id)
        .bind(&u.email)
        .bind(&u.password_hash)
        .bind(u.email_verified as i64)
        .bind(&u.status)
        .bind(u.is_admin as i64)
        .bind(u.metadata.to_string())
        .bind(u.created_at)
        .bind(u.updated_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> Result<Option<User>, RepoError> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, RepoError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(user).transpose()
    }

    async fn record_failure(
        &self,
        id: &str,
        now: i64,
        window_start: i64,
        threshold: i64,
        lock_until: i64,
    ) -> Result<i64, RepoError> {
        self.forgetting(Changed::User(id), async {
            // One statement, so concurrent failures are all counted.
            let row = sqlx::query(
                "UPDATE users SET
                    failed_logins = CASE WHEN failed_since IS NULL OR failed_since < $2 THEN 1 ELSE failed_logins + 1 END,
                    failed_since  = CASE WHEN failed_since IS NULL OR failed_since < $2 THEN $1 ELSE failed_since END,
                    updated_at = $1
                 WHERE id = $3
                 RETURNING failed_logins",
            )
            .bind(now)
            .bind(window_start)
            .bind(id)
            .fetch_one(&self.db)
            .await?;
            let count: i64 = row.try_get(0)?;
            if count >= threshold {
                sqlx::query("UPDATE users SET locked_until = $1, failed_logins = 0, failed_since = NULL WHERE id = $2")
                    .bind(lock_until)
                    .bind(id)
                    .execute(&self.db)
                    .await?;
            }
            Ok(count)
        })
        .await
    }

    async fn clear_failures(&self, id: &str, now: i64) -> Result<(), RepoError> {
        self.forgetting(Changed::User(id), async {
            sqlx::query("UPDATE users SET failed_logins = 0, failed_since = NULL, locked_until = NULL, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&self.db)
                .await?;
            Ok(())
        })
        .await
    }

    async fn set_status(&self, id: &str, status: &str, now: i64) -> Result<(), RepoError> {
        self.forgetting(Changed::User(id), async {
            sqlx::query("UPDATE users SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status)
                .bind(now)
                .bind(id)
                .execute(&self.db)
                .await?;
            Ok(())
        })
        .await
    }

    async fn search_users(&self, f: &UserFilter) -> Result<Vec<User>, RepoError> {
        let pattern = f.query.as_deref().map(contains_pattern);
        let rows = sqlx::query(
            "SELECT * FROM users
             WHERE ($1 IS NULL OR email LIKE $1 ESCAPE '\\') AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR id > $3)
             ORDER BY id LIMIT $4",
        )
        .bind(pattern)
        .bind(&f.status)
        .bind(&f.after)
        .bind(i64::from(f.limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(user).collect()
    }

    async fn erase_user(&self, id: &str, email: &str) -> Result<(), RepoError> {
        self.forgetting(Changed::User(id), async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("DELETE FROM invitations WHERE email = $1")
                .bind(email)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE audit_events SET ip = NULL, user_agent = NULL, details = '{\"erased\":true}'
                 WHERE actor = $1 OR target = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // Sessions, refresh tokens, factors, one-time tokens and
            // memberships go with the row (ON DELETE CASCADE).
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn set_password_hash(&self, id: &str, hash: &str, now: i64) -> Result<(), RepoError> {
        self.forgetting(Changed::User(id), async {
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(hash)
                .bind(now)
                .bind(id)
                .execute(&self.db)
                .await?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl SessionRepo for SqlStore {
    async fn create_session(
        &self,
        s: &Session,
        refresh_hash: &str,
        refresh_expires: i64,
        events: &[AuditEvent],
    ) -> Result<Vec<WebhookEndpoint>, RepoError> {
        let tx = WriteTx::begin(self).await?;
        let mut batch = tx.batch();
        batch.push(
            |first| {
                format!(
                    "INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, ip, user_agent, client_id) VALUES ({})",
                    placeholders(first, 8)
                )
            },
            |a| {
                a.add(&s.id)?;
                a.add(&s.user_id)?;
                a.add(s.created_at)?;
                a.add(s.last_used_at)?;
                a.add(s.expires_at)?;
                a.add(&s.ip)?;
                a.add(&s.user_agent)?;
                a.add(&s.client_id)
            },
        )?;
        push_refreshes(
            &mut batch,
            &[(refresh_hash, &s.id, s.created_at, refresh_expires)],
        )?;
        push_audits(&mut batch, events)?;
        batch.push(webhooks::member_endpoints, |a| a.add(&s.user_id))?;
        let rows = tx.commit(batch).await?;
        rows.iter().map(webhooks::endpoint).collect()
    }

    async fn sign_in_read(
        &self,
        email: &str,
        user_agent: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<Option<SignInRead>, RepoError> {
        // A sign-in's reads in one statement: at a login's pace each is a
        // round trip to a sleeping connection thread.
        let row = sqlx::query(&sign_in_sql())
            .bind(email)
            .bind(user_agent.unwrap_or_default())
            .bind(now)
            .fetch_optional(&self.db)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let live = r.try_get::<i64, _>("sessions_live")?;
        let room = usize::try_from(live).is_ok_and(|live| live < limit);
        Ok(Some(SignInRead {
            user: user(&r)?,
            has_passkeys: r.try_get::<i64, _>("has_passkeys")? != 0,
            sessions: room.then(|| sessions_before(&r, Vec::new())).transpose()?,
        }))
    }

    async fn session(&self, id: &str) -> Result<Option<Session>, RepoError> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(session).transpose()
    }

    async fn session_with_user(
        &self,
        id: &str,
        user_id: &str,
    ) -> Result<Option<(Session, User)>, RepoError> {
        let before = match &self.principals {
            Some(p) => match p.get(user_id, id) {
                Some(hit) => return Ok(Some(hit)),
                None => Some(p.seen(user_id, id)),
            },
            None => None,
        };
        let row = sqlx::query(SESSION_WITH_USER)
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        let found = row
            .map(|r| Ok::<_, RepoError>((session_named(&r, &SESSION_AS)?, user(&r)?)))
            .transpose()?
            .filter(|(_, u)| u.id == user_id);
        if let (Some(p), Some(before), Some((s, u))) = (&self.principals, before, &found) {
            p.put(before, s, u);
        }
        Ok(found)
    }

    async fn before_new_session(
        &self,
        user_id: &str,
        user_agent: Option<&str>,
        limit: usize,
        now: i64,
    ) -> Result<SessionsBefore, RepoError> {
        // One read, not two: at a login's pace each statement is a round
        // trip to a sleeping connection thread. The one-row count comes
        // with the ids of the sessions over the limit, or alone (NULL id)
        // when none is: a user's live sessions are counted in SQL, not
        // carried here row by row (a login read and dropped every one).
        let rows = sqlx::query(&format!(
            "SELECT a.*, s.id FROM (SELECT {}) a
             LEFT JOIN
               (SELECT id, created_at, seq FROM sessions
                WHERE user_id = $1 AND {LIVE}
                ORDER BY created_at, seq
                LIMIT (SELECT CASE WHEN COUNT(*) >= $4 THEN COUNT(*) + 1 - $4 ELSE 0 END
                       FROM sessions
                       WHERE user_id = $1 AND {LIVE})) s
               ON 1 = 1
             ORDER BY s.created_at, s.seq",
            session_counts("$1")
        ))
        .bind(user_id)
        .bind(user_agent.unwrap_or_default())
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.db)
        .await?;
        let Some(first) = rows.first() else {
            return Err(RepoError::Db("session count returned no row".into()));
        };
        let mut to_end = Vec::new();
        for r in &rows {
            if let Some(id) = r.try_get::<Option<String>, _>("id")? {
                to_end.push(id);
            }
        }
        sessions_before(first, to_end)
    }

    async fn live_sessions(&self, user_id: &str, now: i64) -> Result<Vec<Session>, RepoError> {
        let rows = sqlx::query(
            "SELECT * FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY created_at, seq",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(session).collect()
    }

    async fn use_refresh(&self, group: &[Rotation]) -> Result<Vec<RefreshUse>, RepoError> {
        // The hot writer: the checkpointer's last copy waits for it.
        let _writing = match &self.checkpoints {
            Some(c) => Some(c.writing().await),
            None => None,
        };
        let out = rotate_group(WriteTx::begin(self).await?, group).await?;
        for done in &out {
            if let RefreshUse::Rotated { session, .. } = done {
                self.forget(Changed::Session(&session.id));
            }
        }
        Ok(out)
    }

    async fn all_live_sessions(
        &self,
        user_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
        now: i64,
    ) -> Result<Vec<Session>, RepoError> {
        let rows = sqlx::query(
            "SELECT * FROM sessions
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR id > $2) AND revoked_at IS NULL AND expires_at > $3
             ORDER BY id LIMIT $4",
        )
        .bind(user_id)
        .bind(after)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(session).collect()
    }

    async fn rotate_session(
        &self,
        session_id: &str,
        org_id: Option<&str>,
        hash: &str,
        expires: i64,
        now: i64,
    ) -> Result<bool, RepoError> {
        self.forgetting(Changed::Session(session_id), async {
            let mut tx = self.pool.begin().await?;
            let live = sqlx::query("UPDATE sessions SET last_used_at = $1, org_id = $2 WHERE id = $3 AND revoked_at IS NULL AND expires_at > $1")
                .bind(now)
                .bind(org_id)
                .bind(session_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !live {
                return Ok(false);
            }
            // The new token replaces every unspent one: presenting an older
            // token later counts as reuse.
            sqlx::query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE session_id = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
            insert_refresh(&mut tx, hash, session_id, now, expires).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> Result<(), RepoError> {
        self.forgetting(Changed::Session(id), async {
            sqlx::query("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(reason)
                .bind(id)
                .execute(&self.db)
                .await?;
            Ok(())
        })
        .await
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, RepoError> {
        self.forgetting(Changed::User(user_id), async {
            let r = sqlx::query("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(reason)
                .bind(user_id)
                .execute(&self.db)
                .await?;
            Ok(r.rows_affected())
        })
        .await
    }

    async fn purge_sessions(&self, expired_before: i64, limit: u32) -> Result<u64, RepoError> {
        // Their refresh tokens go by ON DELETE CASCADE. No session cached
        // for verified requests needs forgetting: an expired one is
        // refused on its expiry wherever it is found.
        let r = sqlx::query(
            "DELETE FROM sessions WHERE id IN
               (SELECT id FROM sessions WHERE expires_at < $1 LIMIT $2)",
        )
        .bind(expired_before)
        .bind(i64::from(limit))
        .execute(&self.db)
        .await?;
        Ok(r.rows_affected())
    }
}

#[async_trait]
impl TokenRepo for SqlStore {
    async fn create_token(
        &self,
        hash: &str,
        kind: &str,
        user_id: &str,
        now: i64,
        expires_at: i64,
        data: Option<&str>,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO one_time_tokens (token_hash, kind, user_id, created_at, expires_at, data) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash)
        .bind(kind)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .bind(data)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn consume_token(
        &self,
        hash: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<(String, Option<String>)>, RepoError> {
        let row = sqlx::query(
            "UPDATE one_time_tokens SET used_at = $1
             WHERE token_hash = $2 AND kind = $3 AND used_at IS NULL AND expires_at > $1
             RETURNING user_id, data",
        )
        .bind(now)
        .bind(hash)
        .bind(kind)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| Ok((r.try_get("user_id")?, r.try_get("data")?)))
            .transpose()
    }

    async fn set_email_verified(&self, user_id: &str, now: i64) -> Result<(), RepoError> {
        self.forgetting(Changed::User(user_id), async {
            sqlx::query("UPDATE users SET email_verified = 1, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(user_id)
                .execute(&self.db)
                .await?;
            Ok(())
        })
        .await
    }

    async fn revoke_other_sessions(
        &self,
        user_id: &str,
        keep: &str,
        reason: &str,
        now: i64,
    ) -> Result<u64, RepoError> {
        self.forgetting(Changed::User(user_id), async {
            let r = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE user_id = $3 AND id <> $4 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(user_id)
            .bind(keep)
            .execute(&self.db)
            .await?;
            Ok(r.rows_affected())
        })
        .await
    }
}

/// Adds an unspent refresh token of a session within `tx`.
async fn insert_refresh(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    hash: &str,
    session_id: &str,
    now: i64,
    expires: i64,
) -> Result<(), RepoError> {
    let mut batch = Batch::new(false);
    push_refreshes(&mut batch, &[(hash, session_id, now, expires)])?;
    batch.run(tx).await.map(drop)
}

/// Adds refresh tokens `(hash, session, created, expires)` in one statement.
fn push_refreshes<'q>(
    batch: &mut Batch<'q>,
    rows: &[(&'q str, &'q str, i64, i64)],
) -> Result<(), RepoError> {
    if rows.is_empty() {
        return Ok(());
    }
    batch.push(
        |first| {
            format!(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at, expires_at) VALUES {}",
                value_rows(first, rows.len(), 4)
            )
        },
        |a| {
            for (hash, session_id, now, expires) in rows {
                a.add(*hash)?;
                a.add(*session_id)?;
                a.add(*now)?;
                a.add(*expires)?;
            }
            Ok(())
        },
    )
}

/// What a group's presented tokens were and lead to, read in its
/// transaction as the group spends them.
#[derive(Default)]
struct Spending {
    /// Tokens this group spent, with their sessions.
    won: HashMap<String, String>,
    /// The others' sessions and when they were spent: before (reuse), or
    /// never (unknown or expired). May hold won tokens too.
    before: HashMap<String, (String, Option<i64>)>,
    /// The live sessions of the won tokens, marked used now (may hold more).
    sessions: HashMap<String, Session>,
    /// Their users (may hold more).
    users: HashMap<String, User>,
}

impl Spending {
    fn before(&mut self, rows: &[AnyRow]) -> Result<(), RepoError> {
        for row in rows {
            self.before
                .insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
        }
        Ok(())
    }

    fn won(&mut self, rows: &[AnyRow]) -> Result<(), RepoError> {
        for row in rows {
            self.won.insert(row.try_get(0)?, row.try_get(1)?);
        }
        Ok(())
    }

    fn sessions(&mut self, rows: &[AnyRow]) -> Result<(), RepoError> {
        for row in rows {
            let s = session(row)?;
            self.sessions.insert(s.id.clone(), s);
        }
        Ok(())
    }

    fn users(&mut self, rows: &[AnyRow]) -> Result<(), RepoError> {
        for row in rows {
            let u = user(row)?;
            self.users.insert(u.id.clone(), u);
        }
        Ok(())
    }
}

const SPEND: &str = "UPDATE refresh_tokens SET used_at = $1 WHERE used_at IS NULL AND expires_at > $1 AND token_hash IN";
const TOUCH: &str =
    "UPDATE sessions SET last_used_at = $1 WHERE revoked_at IS NULL AND expires_at > $1 AND id IN";

/// Spends the group's tokens in `tx` and reads what [`Spending`] holds. On
/// SQLite that is one query (with the `BEGIN`), whose later statements
/// find the spent tokens' sessions by `used_at = now`. That may also match
/// a token spent earlier in the same second, whose session that use
/// already marked used now if it was live, so the extra rows change
/// nothing and the caller only looks up won tokens' sessions. PostgreSQL
/// takes a round trip per statement and reads only what it needs.
async fn spend(tx: &mut WriteTx, now: i64, spent: &[&str]) -> Result<Spending, RepoError> {
    let mut out = Spending::default();
    let tokens = placeholders(2, spent.len());
    let bound = args(|a| {
        a.add(now)?;
        spent.iter().try_for_each(|h| a.add(*h))
    })?;
    if tx.together() {
        let together = format!(
            "SELECT token_hash, session_id, used_at FROM refresh_tokens WHERE token_hash IN ({tokens});
             {SPEND} ({tokens}) RETURNING token_hash, session_id;
             {TOUCH} (SELECT session_id FROM refresh_tokens WHERE used_at = $1 AND token_hash IN ({tokens})) RETURNING *;
             SELECT * FROM users WHERE id IN (SELECT user_id FROM sessions WHERE last_used_at = $1 AND id IN
                 (SELECT session_id FROM refresh_tokens WHERE used_at = $1 AND token_hash IN ({tokens})))"
        );
        let statements = tx.fetch_statements(&together, bound).await?;
        let [before, won, sessions, users] = statements.as_slice() else {
            return Err(RepoError::Db(format!(
                "a refresh group's query returned {} results, not 4",
                statements.len()
            )));
        };
        out.before(before)?;
        out.won(won)?;
        out.sessions(sessions)?;
        out.users(users)?;
        return Ok(out);
    }
    out.won(
        &tx.fetch_all(
            &format!("{SPEND} ({tokens}) RETURNING token_hash, session_id"),
            bound,
        )
        .await?,
    )?;
    let lost: Vec<&str> = spent
        .iter()
        .copied()
        .filter(|h| !out.won.contains_key(*h))
        .collect();
    if !lost.is_empty() {
        let sql = format!(
            "SELECT token_hash, session_id, used_at FROM refresh_tokens WHERE token_hash IN ({})",
            placeholders(1, lost.len())
        );
        let bound = args(|a| lost.iter().try_for_each(|h| a.add(*h)))?;
        out.before(&tx.fetch_all(&sql, bound).await?)?;
    }
    let ids: HashSet<&str> = out.won.values().map(String::as_str).collect();
    if !ids.is_empty() {
        let sql = format!("{TOUCH} ({}) RETURNING *", placeholders(2, ids.len()));
        let bound = args(|a| {
            a.add(now)?;
            ids.iter().try_for_each(|id| a.add(*id))
        })?;
        let rows = tx.fetch_all(&sql, bound).await?;
        out.sessions(&rows)?;
    }
    let user_ids: HashSet<&str> = out.sessions.values().map(|s| s.user_id.as_str()).collect();
    if !user_ids.is_empty() {
        let sql = format!(
            "SELECT * FROM users WHERE id IN ({})",
            placeholders(1, user_ids.len())
        );
        let bound = args(|a| user_ids.iter().try_for_each(|id| a.add(*id)))?;
        let rows = tx.fetch_all(&sql, bound).await?;
        out.users(&rows)?;
    }
    Ok(out)
}

/// The rotations of [`SessionRepo::use_refresh`], committed in `tx`: the
/// group's statements rather than five per rotation (each statement is a
/// round trip to the database), and on SQLite two queries, [`spend`] with
/// the `BEGIN` and the successors and audit rows with the `COMMIT`. The
/// conditional UPDATE is the arbiter: only one use flips a token's
/// `used_at`, and within the group the first rotation naming a token is
/// that use.
async fn rotate_group(mut tx: WriteTx, group: &[Rotation]) -> Result<Vec<RefreshUse>, RepoError> {
    let Some(now) = group.iter().map(|r| r.now).max() else {
        return Ok(Vec::new());
    };
    let mut spent: Vec<&str> = Vec::with_capacity(group.len());
    let mut seen = HashSet::new();
    for r in group {
        if seen.insert(r.spent.as_str()) {
            spent.push(&r.spent);
        }
    }
    let Spending {
        won,
        before,
        sessions,
        users,
    } = spend(&mut tx, now, &spent).await?;
    // Each rotation's outcome, in order; the first to name a token is its use.
    let mut first = HashSet::new();
    let mut out = Vec::with_capacity(group.len());
    let mut rotated: Vec<(&Rotation, &Session)> = Vec::new();
    for r in group {
        let done = match won.get(&r.spent) {
            Some(sid) if first.insert(r.spent.as_str()) => match sessions.get(sid) {
                None => RefreshUse::Ended,
                Some(live) => match users.get(&live.user_id) {
                    Some(u) if u.status == "active" => {
                        rotated.push((r, live));
                        RefreshUse::Rotated {
                            session: Box::new(live.clone()),
                            user: Box::new(u.clone()),
                        }
                    }
                    _ => RefreshUse::Inactive,
                },
            },
            Some(sid) => RefreshUse::AlreadyUsed {
                session_id: sid.clone(),
                used_at: now,
            },
            None => match before.get(&r.spent) {
                Some((sid, Some(used_at))) => RefreshUse::AlreadyUsed {
                    session_id: sid.clone(),
                    used_at: *used_at,
                },
                // Expired and never used, or unknown.
                _ => RefreshUse::Invalid,
            },
        };
        out.push(done);
    }
    // 5. The successors, and 6. the audit trail of each rotation.
    let rows: Vec<_> = rotated
        .iter()
        .map(|(r, live)| (r.next.as_str(), live.id.as_str(), r.now, live.expires_at))
        .collect();
    let events: Vec<AuditEvent> = rotated
        .iter()
        .map(|(r, live)| r.event.clone().actor(&live.user_id).target(&live.id))
        .collect();
    let mut last = tx.batch();
    push_refreshes(&mut last, &rows)?;
    push_audits(&mut last, &events)?;
    tx.commit(last).await?;
    Ok(out)
}

/// Replaces a user's backup codes within `tx` (an empty list deletes them).
async fn write_backup_codes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user_id: &str,
    code_hashes: &[String],
) -> Result<(), RepoError> {
    sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    for h in code_hashes {
        sqlx::query("INSERT INTO mfa_backup_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user_id)
            .bind(h)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// A LIKE pattern for "contains `q`" (lower-cased), with the caller's text
/// escaped so `%` and `_` match themselves (use with `ESCAPE '\\'`).
pub(super) fn contains_pattern(q: &str) -> String {
    let q = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{q}%")
}

fn challenge(r: &AnyRow) -> Result<Challenge, RepoError> {
    Ok(Challenge {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
    })
}

#[async_trait]
impl MfaRepo for SqlStore {
    async fn set_pending_secret(
        &self,
        user_id: &str,
        sealed: &str,
        now: i64,
    ) -> Result<(), RepoError> {
        self.forgetting(Changed::User(user_id), async {
            sqlx::query("UPDATE users SET mfa_pending_secret = $1, updated_at = $2 WHERE id = $3")
                .bind(sealed)
                .bind(now)
                .bind(user_id)
                .execute(&self.db)
                .await?;
            Ok(())
        })
        .await
    }

    async fn enable_mfa(
        &self,
        user_id: &str,
        step: i64,
        code_hashes: &[String],
        now: i64,
    ) -> Result<bool, RepoError> {
        self.forgetting(Changed::User(user_id), async {
            let mut tx = self.pool.begin().await?;
            let done = sqlx::query(
                "UPDATE users SET mfa_enabled = 1, mfa_secret = mfa_pending_secret, mfa_pending_secret = NULL,
                     mfa_last_step = $1, updated_at = $2
                 WHERE id = $3 AND mfa_pending_secret IS NOT NULL",
            )
            .bind(step)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !done {
                return Ok(false);
            }
            write_backup_codes(&mut tx, user_id, code_hashes).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn disable_mfa(&self, user_id: &str, now: i64) -> Result<(), RepoError> {
        self.forgetting(Changed::User(user_id), async {
            let mut tx = self.pool.begin().await?;
            sqlx::query(
                "UPDATE users SET mfa_enabled = 0, mfa_secret = NULL, mfa_pending_secret = NULL, updated_at = $1 WHERE id = $2",
            )
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            write_backup_codes(&mut tx, user_id, &[]).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn claim_totp_step(&self, user_id: &str, step: i64) -> Result<bool, RepoError> {
        self.forgetting(Changed::User(user_id), async {
            let r = sqlx::query("UPDATE users SET mfa_last_step = $1 WHERE id = $2 AND (mfa_last_step IS NULL OR mfa_last_step < $1)")
                .bind(step)
                .bind(user_id)
                .execute(&self.db)
                .await?;
            Ok(r.rows_affected() == 1)
        })
        .await
    }

    async fn replace_backup_codes(
        &self,
        user_id: &str,
        code_hashes: &[String],
    ) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await?;
        write_backup_codes(&mut tx, user_id, code_hashes).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_backup_code(
        &self,
        user_id: &str,
        code_hash: &str,
        now: i64,
    ) -> Result<bool, RepoError> {
        let r = sqlx::query("UPDATE mfa_backup_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL")
            .bind(now)
            .bind(user_id)
            .bind(code_hash)
            .execute(&self.db)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn backup_codes_left(&self, user_id: &str) -> Result<i64, RepoError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM mfa_backup_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.db)
        .await?;
        Ok(row.try_get("n")?)
    }

    async fn create_challenge(&self, c: &Challenge) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO mfa_challenges (id, user_id, created_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.user_id)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(&c.ip)
        .bind(&c.user_agent)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn attempt_challenge(
        &self,
        id: &str,
        now: i64,
        max_attempts: i64,
    ) -> Result<Option<Challenge>, RepoError> {
        let row = sqlx::query(
            "UPDATE mfa_challenges SET attempts = attempts + 1
             WHERE id = $1 AND used_at IS NULL AND expires_at > $2 AND attempts < $3
             RETURNING id, user_id, created_at, expires_at, ip, user_agent",
        )
        .bind(id)
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(challenge).transpose()
    }

    async fn live_challenge(
        &self,
        id: &str,
        now: i64,
        max_attempts: i64,
    ) -> Result<Option<Challenge>, RepoError> {
        let row = sqlx::query(
            "SELECT id, user_id, created_at, expires_at, ip, user_agent FROM mfa_challenges
             WHERE id = $1 AND used_at IS NULL AND expires_at > $2 AND attempts < $3",
        )
        .bind(id)
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(&self.db)
        .await?;
        row.as_ref().map(challenge).transpose()
    }

    async fn finish_challenge(&self, id: &str, now: i64) -> Result<bool, RepoError> {
        let r =
            sqlx::query("UPDATE mfa_challenges SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
                .bind(now)
                .bind(id)
                .execute(&self.db)
                .await?;
        Ok(r.rows_affected() == 1)
    }
}

#[async_trait]
impl AuditSink for SqlStore {
    async fn record(&self, e: &AuditEvent) -> Result<(), secure::Error> {
        insert_audit(&self.db, e)
            .await
            .map_err(|err| secure::Error::Io(format!("audit write failed: {err}")))
    }
}

async fn insert_audit(db: &conns::Db, e: &AuditEvent) -> Result<(), RepoError> {
    let mut batch = Batch::new(false);
    push_audits(&mut batch, std::slice::from_ref(e))?;
    batch.run(db.acquire().await?.get()?).await.map(drop)
}

/// Records `events` in one statement.
fn push_audits<'q>(batch: &mut Batch<'q>, events: &'q [AuditEvent]) -> Result<(), RepoError> {
    if events.is_empty() {
        return Ok(());
    }
    batch.push(
        |first| {
            format!(
                "INSERT INTO audit_events (id, at_ms, action, outcome, actor, target, ip, user_agent, request_id, details) VALUES {}",
                value_rows(first, events.len(), 10)
            )
        },
        |a| {
            for e in events {
                a.add(&e.id)?;
                a.add(e.at_ms)?;
                a.add(&e.action)?;
                a.add(e.outcome.as_str())?;
                a.add(&e.actor)?;
                a.add(&e.target)?;
                a.add(&e.ip)?;
                a.add(&e.user_agent)?;
                a.add(&e.request_id)?;
                a.add(e.details.to_string())?;
            }
            Ok(())
        },
    )
}

#[async_trait]
impl AuditQuery for SqlStore {
    async fn audit_events(&self, f: &AuditFilter) -> Result<Vec<(i64, AuditEvent)>, RepoError> {
        let rows = sqlx::query(
            "SELECT * FROM audit_events
             WHERE ($1 IS NULL OR action = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR outcome = $3)
               AND ($4 IS NULL OR seq < $4)
             ORDER BY seq DESC LIMIT $5",
        )
        .bind(&f.action)
        .bind(&f.actor)
        .bind(&f.outcome)
        .bind(f.before)
        .bind(i64::from(f.limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(audit_event).collect()
    }
}

fn audit_event(r: &AnyRow) -> Result<(i64, AuditEvent), RepoError> {
    let outcome = match r.try_get::<String, _>("outcome")?.as_str() {
        "success" => Outcome::Success,
        "failure" => Outcome::Failure,
        _ => Outcome::Denied,
    };
    let details: String = r.try_get("details")?;
    Ok((
        r.try_get("seq")?,
        AuditEvent {
            id: r.try_get("id")?,
            at_ms: r.try_get("at_ms")?,
            action: r.try_get("action")?,
            outcome,
            actor: r.try_get("actor")?,
            target: r.try_get("target")?,
            ip: r.try_get("ip")?,
            user_agent: r.try_get("user_agent")?,
            request_id: r.try_get("request_id")?,
            details: serde_json::from_str(&details).unwrap_or_default(),
        },
    ))
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.db).await.is_ok()
    }
    fn concurrent_writers(&self) -> usize {
        // The principal memory exists exactly on SQLite, the one-writer engine.
        if self.principals.is_some() {
            1
        } else {
            4
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Organization, PasskeyRecord};
    use crate::repo::{OrgRepo, PasskeyRepo, Rotation, SessionRepo, UserRepo, WebhookRepo};
    use std::time::Duration;

    /// A store in a temporary SQLite file with one user, and a session
    /// of that user by id (live for an hour from `NOW`).
    struct Fixture {
        dir: tempfile::TempDir,
        store: SqlStore,
        user: User,
    }

    const NOW: i64 = 1_000_000;

    /// A verified user with this address, stored.
    async fn new_user(store: &SqlStore, email: &str) -> User {
        let value = serde_json::Value::Null;
        let user = User::new(email.into(), "x".into(), true, false, value, NOW);
        store.create_user(&user).await.unwrap();
        user
    }

    impl Fixture {
        async fn new(email: &str) -> Fixture {
            Fixture::with(email, checkpoint::Policy::default()).await
        }

        async fn with(email: &str, checkpoints: checkpoint::Policy) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("t.db").display());
            let store = SqlStore::open_with(&url, checkpoints).await.unwrap();
            let user = new_user(&store, email).await;
            Fixture { dir, store, user }
        }

        /// [`SessionRepo::sign_in_read`] of the fixture's user.
        async fn sign_in_read(&self, agent: Option<&str>, limit: usize) -> SignInRead {
            let read = self.store.sign_in_read(&self.user.email, agent, limit, NOW);
            let read = read.await.unwrap().unwrap();
            assert_eq!(read.user, self.user);
            read
        }

        /// A connection of the fixture's SQLite store, for raw SQL.
        async fn conn(&self) -> conns::Lease {
            let conns::Db::Own(conns) = &self.store.db else {
                panic!("the fixture is on SQLite");
            };
            conns.lease().await.unwrap()
        }

        fn session(&self, id: &str) -> Session {
            Session {
                id: id.into(),
                user_id: self.user.id.clone(),
                created_at: NOW,
                last_used_at: NOW,
                expires_at: NOW + 3600,
                revoked_at: None,
                revoke_reason: None,
                ip: None,
                user_agent: None,
                org_id: None,
                client_id: None,
            }
        }
    }

    fn rotation(spent: &str, next: &str, now: i64) -> Rotation {
        Rotation {
            spent: secure::token::digest(spent),
            next: secure::token::digest(next),
            now,
            event: AuditEvent::new("refresh", Outcome::Success, now * 1000),
        }
    }

    /// A session's start events are written with it or not at all: a
    /// session that cannot be made (its id taken) leaves no record of a
    /// sign-in, and the one that is made leaves exactly its own.
    #[tokio::test]
    async fn a_session_and_its_start_events_commit_together() {
        let fx = Fixture::new("s@example.com").await;
        let (store, now) = (&fx.store, NOW);
        let session = fx.session("s1");
        let login = |n: i64| {
            AuditEvent::new("login", Outcome::Success, n)
                .actor(&fx.user.id)
                .target(format!("attempt-{n}"))
        };
        let digest = secure::token::digest;
        store
            .create_session(&session, &digest("a"), now + 3600, &[login(1), login(2)])
            .await
            .unwrap();
        // The same id again: refused, and its events with it.
        assert!(store
            .create_session(&session, &digest("b"), now + 3600, &[login(3)])
            .await
            .is_err());
        // A new session whose refresh token is taken: the session's own
        // insert, sent before it in the same round trip, is undone too.
        assert!(store
            .create_session(&fx.session("s2"), &digest("a"), now + 3600, &[login(4)])
            .await
            .is_err());
        assert!(store.session("s2").await.unwrap().is_none());
        let logins = store
            .audit_events(&AuditFilter {
                action: Some("login".into()),
                limit: 10,
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        let mut targets: Vec<_> = logins.iter().map(|(_, e)| e.target.clone()).collect();
        targets.sort();
        assert_eq!(
            targets,
            [Some("attempt-1".to_owned()), Some("attempt-2".to_owned())]
        );
    }

    /// A write transaction begun by hand on SQLite and left unfinished (a
    /// request dropped midway) is undone, and its connection does not go
    /// back to the pool inside it: the next writes commit, promptly.
    #[tokio::test]
    async fn a_write_transaction_left_midway_is_undone_and_holds_nothing() {
        let fx = Fixture::new("w@example.com").await;
        let store = &fx.store;
        for _ in 0..3 {
            let mut tx = WriteTx::begin(store).await.unwrap();
            let bound = args(|a| a.add(&fx.user.id)).unwrap();
            let rows = tx
                .fetch_all(
                    "UPDATE users SET status = 'disabled' WHERE id = $1 RETURNING id",
                    bound,
                )
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
            drop(tx);
        }
        let user = store.user_by_id(&fx.user.id).await.unwrap().unwrap();
        assert_eq!(user.status, "active");
        // Writes through every pooled connection commit: none is inside a
        // leftover transaction (BEGIN would fail there) and none waits on
        // one's write lock (until the busy timeout, then fails).
        let digest = secure::token::digest;
        for n in 0..10 {
            let id = format!("after-{n}");
            store
                .create_session(&fx.session(&id), &digest(&id), NOW + 3600, &[])
                .await
                .unwrap();
            assert!(store.session(&id).await.unwrap().is_some());
        }
    }

    /// The read before a new session: the live sessions over the limit
    /// (oldest first, as many as make room for one more), while "had a
    /// session" and "from this user agent" count ended ones too; and a user
    /// with no session at all still gets its one-row answer.
    #[tokio::test]
    async fn before_a_new_session_the_oldest_live_ones_over_the_limit_are_named() {
        let fx = Fixture::new("b@example.com").await;
        let store = &fx.store;
        let none = store
            .before_new_session(&fx.user.id, Some("a"), 1, NOW)
            .await
            .unwrap();
        assert!(none.to_end.is_empty() && !none.any && !none.from_agent);
        let read = fx.sign_in_read(Some("a"), 1).await.sessions.unwrap();
        assert!(read.to_end.is_empty() && !read.any && !read.from_agent);
        let digest = secure::token::digest;
        let with = |id: &str, agent: &str, created: i64, expires: i64| Session {
            user_agent: Some(agent.into()),
            created_at: created,
            expires_at: expires,
            ..fx.session(id)
        };
        for (s, hash) in [
            (with("newer", "a", NOW - 10, NOW + 3600), "1"),
            (with("older", "a", NOW - 20, NOW + 3600), "2"),
            (with("expired", "b", NOW - 30, NOW - 1), "3"),
            (with("revoked", "c", NOW - 40, NOW + 3600), "4"),
        ] {
            store
                .create_session(&s, &digest(hash), s.expires_at, &[])
                .await
                .unwrap();
        }
        store
            .revoke_session("revoked", "logout", NOW)
            .await
            .unwrap();
        for (agent, seen) in [
            (Some("a"), true),
            (Some("b"), true),
            (Some("c"), true),
            (Some("d"), false),
            (None, false),
        ] {
            let b = store
                .before_new_session(&fx.user.id, agent, 10, NOW)
                .await
                .unwrap();
            assert!(b.to_end.is_empty(), "{agent:?}");
            assert!(b.any, "{agent:?}");
            assert_eq!(b.from_agent, seen, "{agent:?}");
            let read = fx.sign_in_read(agent, 10).await.sessions.unwrap();
            assert!(read.to_end.is_empty() && read.any, "{agent:?}");
            assert_eq!(read.from_agent, seen, "{agent:?}");
        }
        // Two live: a limit of 3 or 10 ends none, 2 ends the older, 1 both.
        for (limit, ends) in [
            (10, &[][..]),
            (3, &[][..]),
            (2, &["older"][..]),
            (1, &["older", "newer"][..]),
        ] {
            let b = store
                .before_new_session(&fx.user.id, Some("a"), limit, NOW)
                .await
                .unwrap();
            assert_eq!(b.to_end, ends, "limit {limit}");
            // A sign-in's read leaves the ids to the session's opening.
            let read = fx.sign_in_read(Some("a"), limit).await.sessions;
            assert_eq!(read.is_none(), !ends.is_empty(), "limit {limit}");
        }
        // A session that came with no user agent is seen by a sign-in that
        // comes with none.
        store
            .create_session(&fx.session("no-agent"), &digest("5"), NOW + 3600, &[])
            .await
            .unwrap();
        let b = store
            .before_new_session(&fx.user.id, None, 10, NOW)
            .await
            .unwrap();
        assert!(b.from_agent);
        assert!(fx.sign_in_read(None, 10).await.sessions.unwrap().from_agent);
        // Another user's sessions are not this one's.
        let other = store
            .before_new_session("someone-else", Some("a"), 1, NOW)
            .await
            .unwrap();
        assert!(other.to_end.is_empty() && !other.any && !other.from_agent);
    }

    /// A sign-in's read: no row for an unknown address, and the passkey
    /// flag follows the user's passkeys (no other user's).
    #[tokio::test]
    async fn a_sign_in_read_finds_the_user_and_its_passkeys() {
        let fx = Fixture::new("k@example.com").await;
        let store = &fx.store;
        let unknown = store.sign_in_read("nobody@example.com", None, 10, NOW);
        assert!(unknown.await.unwrap().is_none());
        assert!(!fx.sign_in_read(None, 10).await.has_passkeys);
        let other = new_user(store, "o@example.com").await;
        let passkey = |id: &str, user: &User| PasskeyRecord {
            id: id.into(),
            user_id: user.id.clone(),
            credential_id: format!("cred-{id}"),
            name: id.into(),
            passkey: "{}".into(),
            backup_eligible: false,
            backed_up: false,
            created_at: NOW,
            last_used_at: None,
        };
        store.add_passkey(&passkey("theirs", &other)).await.unwrap();
        assert!(!fx.sign_in_read(None, 10).await.has_passkeys);
        store.add_passkey(&passkey("mine", &fx.user)).await.unwrap();
        assert!(fx.sign_in_read(None, 10).await.has_passkeys);
    }

    /// A purge takes sessions that expired before its cutoff, revoked or
    /// not, at most `limit` at a time, and their refresh tokens with them;
    /// it leaves live ones (revoked or not) and those expired after it.
    #[tokio::test]
    async fn a_purge_deletes_sessions_expired_before_its_cutoff_and_their_tokens() {
        let fx = Fixture::new("g@example.com").await;
        let store = &fx.store;
        let digest = secure::token::digest;
        let expiring = |id: &str, expires: i64| Session {
            expires_at: expires,
            ..fx.session(id)
        };
        for (id, expires) in [
            ("old-1", NOW - 300),
            ("old-2", NOW - 200),
            ("old-revoked", NOW - 100),
            ("cutoff", NOW - 50),
            ("recent", NOW - 10),
            ("live", NOW + 3600),
            ("live-revoked", NOW + 3600),
        ] {
            let s = expiring(id, expires);
            store
                .create_session(&s, &digest(id), expires, &[])
                .await
                .unwrap();
        }
        for id in ["old-revoked", "live-revoked"] {
            store.revoke_session(id, "logout", NOW).await.unwrap();
        }
        assert!(store
            .use_refresh(&[rotation("old-1", "old-1 next", NOW - 400)])
            .await
            .is_ok());
        let left = || async {
            let mut conn = fx.conn().await;
            let ids = sqlx::query("SELECT id FROM sessions ORDER BY id")
                .fetch_all(conn.get().unwrap())
                .await
                .unwrap();
            let tokens = sqlx::query("SELECT COUNT(*) FROM refresh_tokens")
                .fetch_one(conn.get().unwrap())
                .await
                .unwrap();
            let ids: Vec<String> = ids.iter().map(|r| r.try_get(0).unwrap()).collect();
            (ids, tokens.try_get::<i64, _>(0).unwrap())
        };
        assert_eq!(left().await.1, 8, "one token each, and old-1's successor");
        assert_eq!(store.purge_sessions(NOW - 50, 2).await.unwrap(), 2);
        assert_eq!(store.purge_sessions(NOW - 50, 2).await.unwrap(), 1);
        assert_eq!(store.purge_sessions(NOW - 50, 2).await.unwrap(), 0);
        let (ids, tokens) = left().await;
        assert_eq!(ids, ["cutoff", "live", "live-revoked", "recent"]);
        assert_eq!(tokens, 4);
    }

    /// A sign-in finds what it needs of a user's sessions by index keys
    /// (migration 0012), not by going through them: sessions are kept after
    /// they end, so a pass over the user's sessions would make every
    /// sign-in slower than the one before. In SQLite's plan every read of
    /// `sessions` is an index-only search, the agent is looked up by
    /// (user, agent) and the live count reads only live entries.
    #[tokio::test]
    async fn a_sign_in_finds_sessions_by_index_keys_not_by_going_through_them() {
        let fx = Fixture::new("p@example.com").await;
        let mut conn = fx.conn().await;
        let plan = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", sign_in_sql()))
            .bind(&fx.user.email)
            .bind("agent")
            .bind(NOW)
            .fetch_all(conn.get().unwrap())
            .await
            .unwrap();
        let steps: Vec<String> = plan
            .iter()
            .map(|r| r.try_get::<String, _>("detail").unwrap())
            .collect();
        for step in steps.iter().filter(|d| d.contains(" sessions ")) {
            assert!(
                step.starts_with("SEARCH sessions USING COVERING INDEX"),
                "a read of sessions that is not an index-only search: {step}\n{steps:#?}"
            );
        }
        for key in [
            "sessions_by_user_agent (user_id=? AND user_agent=?)",
            "sessions_live_by_user (user_id=? AND revoked_at=? AND expires_at>?)",
        ] {
            assert!(steps.iter().any(|d| d.ends_with(key)), "{key}: {steps:#?}");
        }
    }

    /// A new session's commit reads the enabled endpoints of its user's
    /// organizations (the recipients of its events): not a disabled one,
    /// not another organization's.
    #[tokio::test]
    async fn a_new_session_reads_its_users_endpoints_in_its_commit() {
        let fx = Fixture::new("h@example.com").await;
        let store = &fx.store;
        let digest = secure::token::digest;
        let org = |id: &str| Organization {
            id: id.into(),
            name: id.into(),
            slug: id.into(),
            parent_id: None,
            metadata: serde_json::Value::Null,
            created_by: None,
            created_at: NOW,
            updated_at: NOW,
        };
        let other = new_user(store, "x@example.com").await;
        store.create_org(&org("mine"), &fx.user.id).await.unwrap();
        store.create_org(&org("theirs"), &other.id).await.unwrap();
        let endpoint = |id: &str, org: &str, enabled: bool| WebhookEndpoint {
            id: id.into(),
            org_id: org.into(),
            url: format!("https://hooks.example.com/{id}"),
            description: String::new(),
            events: vec!["user.login".into()],
            secret_sealed: "sealed".into(),
            previous_secret_sealed: None,
            previous_secret_until: None,
            enabled,
            created_by: None,
            created_at: NOW,
            updated_at: NOW,
        };
        let found = store
            .create_session(&fx.session("s1"), &digest("1"), NOW + 3600, &[])
            .await
            .unwrap();
        assert!(found.is_empty());
        store
            .create_endpoint(&endpoint("on", "mine", true))
            .await
            .unwrap();
        store
            .create_endpoint(&endpoint("off", "mine", false))
            .await
            .unwrap();
        store
            .create_endpoint(&endpoint("else", "theirs", true))
            .await
            .unwrap();
        let found = store
            .create_session(&fx.session("s2"), &digest("2"), NOW + 3600, &[])
            .await
            .unwrap();
        let ids: Vec<&str> = found.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["on"]);
        assert_eq!(found, store.endpoints_of_member(&fx.user.id).await.unwrap());
        // The session and its token were committed with the read.
        assert!(store.session("s2").await.unwrap().is_some());
    }

    /// Commits do not checkpoint, yet under back-to-back refresh commits
    /// the WAL is still copied into the database and started over: its
    /// file stays near the restart length instead of growing by every
    /// commit's pages (38 MB here without the checkpointer, 31 MB with its
    /// last copy not holding the writers back).
    #[tokio::test]
    async fn the_wal_starts_over_under_back_to_back_commits() {
        let policy = checkpoint::Policy {
            every: Duration::from_millis(10),
            restart_frames: 64,
        };
        let fx = Fixture::with("w@example.com", policy).await;
        let store = &fx.store;
        let digest = secure::token::digest;
        store
            .create_session(&fx.session("s1"), &digest("t0"), NOW + 3600, &[])
            .await
            .unwrap();
        for i in 0..1_000 {
            let done = store
                .use_refresh(&[rotation(&format!("t{i}"), &format!("t{}", i + 1), NOW)])
                .await
                .unwrap();
            assert!(matches!(done[..], [RefreshUse::Rotated { .. }]), "{i}");
        }
        let wal = fx.dir.path().join("t.db-wal");
        let len = std::fs::metadata(&wal).unwrap().len();
        assert!(len < 4 << 20, "the WAL grew to {len} bytes");
    }

    /// The checkpointer keeps the database's and the WAL's pages mapped
    /// (`resident`), so that a quiet spell does not leave the next commit
    /// reading them back from disk: both files show in this process's
    /// mappings, with pages in memory.
    #[tokio::test]
    async fn the_database_files_are_kept_mapped() {
        let fx = Fixture::new("m@example.com").await;
        let digest = secure::token::digest;
        fx.store
            .create_session(&fx.session("s1"), &digest("t0"), NOW + 3600, &[])
            .await
            .unwrap();
        let (db, wal) = (fx.dir.path().join("t.db"), fx.dir.path().join("t.db-wal"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while resident::mapped_kb(&db) == 0 || resident::mapped_kb(&wal) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "not mapped: {} kB of the database, {} kB of the WAL",
                resident::mapped_kb(&db),
                resident::mapped_kb(&wal)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Keeping the files mapped must not cost SQLite its locks: closing any
    /// descriptor of a file drops every POSIX lock the process holds on it,
    /// and without its shared lock another process (the CLI on the same
    /// file) may checkpoint and delete the WAL under the server. After the
    /// checkpointer has mapped the database a few times, another process
    /// is still refused the database for itself.
    #[tokio::test]
    async fn the_database_stays_locked_while_its_files_are_kept_mapped() {
        let fx = Fixture::new("l@example.com").await;
        let db = fx.dir.path().join("t.db");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (mut rounds, mut n) = (0, 0);
        // A few rounds of the checkpointer after the first mapping.
        while rounds < 5 {
            assert!(std::time::Instant::now() < deadline, "never mapped");
            let digest = secure::token::digest;
            fx.store
                .create_session(
                    &fx.session(&format!("s{n}")),
                    &digest(&format!("t{n}")),
                    NOW + 3600,
                    &[],
                )
                .await
                .unwrap();
            n += 1;
            if resident::mapped_kb(&db) > 0 {
                rounds += 1;
            }
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert!(
            shared_lock_held(&db),
            "SQLite's shared lock on the database is gone"
        );
        // Control: the connections still work.
        assert!(fx.store.session("s0").await.unwrap().is_some());
    }

    /// Whether another process is refused an exclusive lock over SQLite's
    /// shared-lock bytes of `path` (the unix VFS's SHARED_FIRST, 510 bytes):
    /// asked from a separate process (python3), since POSIX locks never
    /// conflict within one, and this one must not close a descriptor of
    /// the file either.
    fn shared_lock_held(path: &std::path::Path) -> bool {
        let probe = "import fcntl, os, sys\n\
                     fd = os.open(sys.argv[1], os.O_RDWR)\n\
                     try:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 0x40000002)\n\
                     except OSError:\n    sys.exit(3)\n";
        let status = std::process::Command::new("python3")
            .arg("-c")
            .arg(probe)
            .arg(path)
            .status()
            .expect("python3 runs");
        match status.code() {
            Some(3) => true,
            Some(0) => false,
            other => panic!("lock probe failed: {other:?}"),
        }
    }

    /// One group naming a token twice, a token spent before (once in the
    /// group's own second), an unknown one, an expired one and one of an
    /// ended session: each gets its own
    /// outcome, the first naming of a token is its one use, and only the
    /// rotations that happened leave a successor and an audit event.
    #[tokio::test]
    async fn a_group_rotates_each_token_once() {
        let fx = Fixture::new("g@example.com").await;
        let (store, now) = (&fx.store, NOW);
        let session = |id: &str| fx.session(id);
        let digest = secure::token::digest;
        store
            .create_session(&session("s1"), &digest("a"), now + 3600, &[])
            .await
            .unwrap();
        store
            .create_session(&session("s2"), &digest("b"), now + 3600, &[])
            .await
            .unwrap();
        store
            .create_session(&session("s3"), &digest("old"), now - 1, &[])
            .await
            .unwrap();
        store
            .create_session(&session("s4"), &digest("ended"), now + 3600, &[])
            .await
            .unwrap();
        store.revoke_session("s4", "logout", now).await.unwrap();
        // `b` is spent before the group.
        let first = store
            .use_refresh(&[rotation("b", "b2", now)])
            .await
            .unwrap();
        assert!(matches!(first[0], RefreshUse::Rotated { .. }));
        // `c` is spent in the group's own second, just before it.
        store
            .create_session(&session("s5"), &digest("c"), now + 3600, &[])
            .await
            .unwrap();
        let early = store
            .use_refresh(&[rotation("c", "c2", now + 1)])
            .await
            .unwrap();
        assert!(matches!(early[0], RefreshUse::Rotated { .. }));
        let got = store
            .use_refresh(&[
                rotation("a", "a2", now),
                rotation("a", "a3", now),
                rotation("b", "b3", now + 1),
                rotation("nobody", "n2", now),
                rotation("old", "o2", now),
                rotation("ended", "e2", now),
                rotation("c", "c3", now + 1),
            ])
            .await
            .unwrap();
        assert!(matches!(&got[0], RefreshUse::Rotated { session, .. } if session.id == "s1"));
        assert!(
            matches!(&got[1], RefreshUse::AlreadyUsed { session_id, used_at } if session_id == "s1" && *used_at == now + 1),
            "{:?}",
            got[1]
        );
        assert!(
            matches!(&got[2], RefreshUse::AlreadyUsed { session_id, used_at } if session_id == "s2" && *used_at == now),
            "{:?}",
            got[2]
        );
        assert!(matches!(got[3], RefreshUse::Invalid));
        assert!(matches!(got[4], RefreshUse::Invalid));
        assert!(matches!(got[5], RefreshUse::Ended));
        assert!(
            matches!(&got[6], RefreshUse::AlreadyUsed { session_id, used_at } if session_id == "s5" && *used_at == now + 1),
            "{:?}",
            got[6]
        );
        // The winner's successor works; the loser's was never made.
        let next = store
            .use_refresh(&[rotation("a2", "a4", now + 2)])
            .await
            .unwrap();
        assert!(matches!(next[0], RefreshUse::Rotated { .. }));
        let never = store
            .use_refresh(&[rotation("a3", "a5", now + 2)])
            .await
            .unwrap();
        assert!(matches!(never[0], RefreshUse::Invalid));
        let f = crate::repo::AuditFilter {
            action: Some("refresh".into()),
            actor: None,
            outcome: None,
            before: None,
            limit: 100,
        };
        let events = store.audit_events(&f).await.unwrap();
        assert_eq!(events.len(), 4, "b, c, a and a2 rotated: {events:?}");
    }
}
