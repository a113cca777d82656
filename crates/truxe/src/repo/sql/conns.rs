//! Where statements run: SQLite connections lent without sqlx's pool.
//!
//! sqlx's pool pings every connection that comes back to it, and on
//! SQLite that ping is a round trip to the connection's thread (two thread
//! wake-ups), as dear as the statement itself: a login's five statements
//! cost ten round trips. A SQLite connection is a thread of this process,
//! not a socket that can die idle, and it runs its commands in order, so
//! a statement dropped midway leaves nothing behind for the connection's
//! next user. Here a connection goes straight back to the idle list; one
//! whose thread failed is closed instead, and replaced when next needed.
//! PostgreSQL keeps sqlx's pool, whose test catches a dead socket.
//!
//! Statements that need `BEGIN` ... `COMMIT` from sqlx (the cold paths)
//! still take sqlx's pool; the hot write transactions (`tx`) lease here.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::any::{AnyConnectOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Either, Execute, Executor};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a statement waits for a connection before failing.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The store's executor: `&db` runs a statement as `&pool` would.
#[derive(Debug, Clone)]
pub(super) enum Db {
    Pool(AnyPool),
    Own(Arc<Conns>),
}

impl Db {
    /// A connection for several statements.
    pub(super) async fn acquire(&self) -> Result<Conn, sqlx::Error> {
        Ok(match self {
            Db::Pool(p) => Conn::Pooled(p.acquire().await?),
            Db::Own(c) => Conn::Leased(c.lease().await?),
        })
    }
}

/// SQLite connections to one database, at most `max` at a time.
pub(super) struct Conns {
    opts: AnyConnectOptions,
    idle: Mutex<Vec<AnyConnection>>,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for Conns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conns")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Conns {
    pub(super) fn new(opts: AnyConnectOptions, max: usize) -> Arc<Self> {
        Arc::new(Conns {
            opts,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max)),
        })
    }

    /// An idle connection, or a new one while fewer than `max` are out.
    pub(super) async fn lease(self: &Arc<Self>) -> Result<Lease, sqlx::Error> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match idle {
            Some(c) => c,
            None => {
                let mut c = AnyConnection::connect_with(&self.opts).await?;
                prepare_sqlite(&mut c).await?;
                c
            }
        };
        Ok(Lease {
            conn: Some(conn),
            home: self.clone(),
            _permit: permit,
        })
    }
}

/// Sets up a new SQLite connection: WAL for concurrent readers; FULL so a
/// committed session or rotation survives power loss; foreign keys
/// enforced; checkpoints are the checkpointer's, not a commit's.
pub(super) async fn prepare_sqlite(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::raw_sql(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
         PRAGMA wal_autocheckpoint = 0;",
    ))
    .await?;
    Ok(())
}

/// A lent connection; it goes back idle when dropped, unless discarded.
pub(super) struct Lease {
    conn: Option<AnyConnection>,
    home: Arc<Conns>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    /// Closes the connection instead of lending it again (which rolls back
    /// a transaction left open on it).
    pub(super) fn discard(&mut self) {
        self.conn = None;
    }

    /// The connection, until discarded.
    pub(super) fn get(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)
    }

    /// Discards the connection after an error that may mean it is broken
    /// (a database's refusal, such as a constraint, does not).
    fn check<T>(&mut self, done: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        if let Err(e) = &done {
            if !matches!(e, sqlx::Error::Database(_) | sqlx::Error::Encode(_)) {
                self.discard();
            }
        }
        done
    }
}

/// Runs `work` on a connection lent from `conns`, discarding it if the
/// work failed in a way that may have broken it.
async fn leased<T>(
    conns: &Arc<Conns>,
    work: impl AsyncFnOnce(&mut AnyConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    let mut lease = conns.lease().await?;
    let done = work(lease.get()?).await;
    lease.check(done)
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.home
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(c);
        }
    }
}

/// A connection from either kind of [`Db`].
pub(super) enum Conn {
    Pooled(PoolConnection<Any>),
    Leased(Lease),
}

impl Conn {
    pub(super) fn get(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        match self {
            Conn::Pooled(c) => Ok(c),
            Conn::Leased(l) => l.get(),
        }
    }
}

impl<'c> Executor<'c> for &'c Db {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Db::Pool(p) => p.fetch_many(query),
            // Every statement here is read whole (fetch_all, execute), so
            // its results are gathered with the connection held.
            Db::Own(c) => stream::once(leased(c, async move |conn| {
                let all: Vec<_> = conn.fetch_many(query).try_collect().await?;
                Ok(stream::iter(all.into_iter().map(Ok)))
            }))
            .try_flatten()
            .boxed(),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Db::Pool(p) => p.fetch_optional(query),
            Db::Own(c) => Box::pin(leased(c, async move |conn| {
                conn.fetch_optional(query).await
            })),
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Db::Pool(p) => p.prepare_with(sql, parameters),
            Db::Own(c) => Box::pin(leased(c, async move |conn| {
                conn.prepare_with(sql, parameters).await
            })),
        }
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Db::Pool(p) => p.describe(sql),
            Db::Own(c) => Box::pin(leased(c, async move |conn| conn.describe(sql).await)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sqlx::Row;

    fn conns(dir: &tempfile::TempDir, max: usize) -> Arc<Conns> {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
        Conns::new(url.parse().unwrap(), max)
    }

    async fn count(db: &Db, sql: &str) -> Result<i64, sqlx::Error> {
        sqlx::query(sql).fetch_one(db).await?.try_get(0)
    }

    /// A connection-local table marks which connection a statement ran on.
    #[tokio::test]
    async fn a_connection_goes_back_to_be_lent_again_unless_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::Own(conns(&dir, 1));
        let mut lease = db.acquire().await.unwrap();
        sqlx::query("CREATE TEMP TABLE mark (x)")
            .execute(lease.get().unwrap())
            .await
            .unwrap();
        drop(lease);
        assert_eq!(
            count(&db, "SELECT count(*) FROM temp.mark").await.unwrap(),
            0
        );
        let mut lease = db.acquire().await.unwrap();
        let Conn::Leased(l) = &mut lease else {
            panic!("SQLite leases")
        };
        l.discard();
        assert!(lease.get().is_err(), "a discarded lease lends nothing");
        drop(lease);
        let gone = count(&db, "SELECT count(*) FROM temp.mark").await;
        assert!(
            gone.is_err(),
            "a new connection has no temp table: {gone:?}"
        );
    }

    #[tokio::test]
    async fn no_more_than_max_connections_are_lent_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = conns(&dir, 2);
        let (a, _b) = (c.lease().await.unwrap(), c.lease().await.unwrap());
        let third = tokio::time::timeout(Duration::from_millis(100), c.lease()).await;
        assert!(third.is_err(), "a third lease waits");
        drop(a);
        let third = tokio::time::timeout(Duration::from_secs(10), c.lease()).await;
        assert!(matches!(third, Ok(Ok(_))));
    }

    /// A statement whose caller gave up leaves all of its work or none,
    /// and its connection serves the next statement.
    #[tokio::test]
    async fn a_statement_dropped_midway_leaves_a_usable_connection_and_no_half_write() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::Own(conns(&dir, 1));
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&db)
            .await
            .unwrap();
        let rows = 2_000_000;
        let write = sqlx::query(
            "INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) SELECT x FROM c",
        )
        .bind(rows)
        .execute(&db);
        let gave_up = tokio::time::timeout(Duration::from_millis(5), write).await;
        assert!(gave_up.is_err(), "the insert outlasts 5 ms");
        let n = count(&db, "SELECT count(*) FROM t").await.unwrap();
        assert!(n == 0 || n == rows, "all or nothing, not {n}");
        assert_eq!(count(&db, "SELECT 40 + 2").await.unwrap(), 42);
    }
}
