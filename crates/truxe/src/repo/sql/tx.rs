//! Write transactions in few round trips.
//!
//! sqlx's SQLite driver runs each connection on a thread of its own, and
//! every statement, `BEGIN` and `COMMIT` is a round trip to that thread.
//! Under load each round trip also waits for the thread to be scheduled
//! (on two busy cores, often a millisecond), and a group commit's
//! statements run one after another while every refresh in the group
//! waits. So on SQLite the statements of a hot transaction travel
//! together: several in one query ([`Batch`]), `BEGIN` with the first
//! query and `COMMIT` with the last ([`WriteTx`]). PostgreSQL keeps
//! sqlx's transaction and one statement per query (a prepared statement
//! holds one command there).
//!
//! sqlx 0.8 still runs SQLite's multi-statement queries but calls them
//! deprecated (launchbadge/sqlx#3108); the lockfile holds the version, and
//! each batched transaction's tests run on SQLite.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments};

use super::conns::{Db, Lease};
use super::SqlStore;
use crate::repo::RepoError;

/// Statements of one transaction, sent together where the database
/// allows: on SQLite as one multi-statement query, one round trip to the
/// connection's thread instead of one per statement (at a login's pace the
/// round trip costs more than the statement); on PostgreSQL one by one. A
/// statement's placeholders are numbered on from the ones sent before it
/// together.
pub(super) struct Batch<'q> {
    together: bool,
    queries: Vec<(String, AnyArguments<'q>)>,
}

impl<'q> Batch<'q> {
    pub(super) fn new(together: bool) -> Self {
        Batch {
            together,
            queries: Vec::new(),
        }
    }

    /// Adds a statement: `sql(first)` writes it with its placeholders
    /// numbered from `$first`, and `bind` adds their values in order.
    pub(super) fn push(
        &mut self,
        sql: impl FnOnce(usize) -> String,
        bind: impl FnOnce(&mut AnyArguments<'q>) -> Result<(), sqlx::error::BoxDynError>,
    ) -> Result<(), RepoError> {
        match self.queries.last_mut() {
            Some((text, args)) if self.together => {
                text.push_str(";\n");
                text.push_str(&sql(args.len() + 1));
                bind(args)
            }
            _ => {
                let mut args = AnyArguments::default();
                let text = sql(1);
                let bound = bind(&mut args);
                self.queries.push((text, args));
                bound
            }
        }
        .map_err(bind_error)
    }

    /// Runs the statements on `conn`, stopping at the first failure, and
    /// returns the rows they give, in order. Run in a transaction (which
    /// rolls back when dropped uncommitted), a failed or cancelled batch
    /// leaves none of them.
    pub(super) async fn run(
        self,
        conn: &mut sqlx::AnyConnection,
    ) -> Result<Vec<AnyRow>, RepoError> {
        let mut rows = Vec::new();
        for (sql, args) in self.queries {
            rows.extend(sqlx::query_with(&sql, args).fetch_all(&mut *conn).await?);
        }
        Ok(rows)
    }
}

fn bind_error(e: sqlx::error::BoxDynError) -> RepoError {
    RepoError::Db(format!("binding a value: {e}"))
}

/// The arguments `bind` adds, in order, for [`WriteTx::fetch_all`].
pub(super) fn args<'q>(
    bind: impl FnOnce(&mut AnyArguments<'q>) -> Result<(), sqlx::error::BoxDynError>,
) -> Result<AnyArguments<'q>, RepoError> {
    let mut args = AnyArguments::default();
    bind(&mut args).map_err(bind_error)?;
    Ok(args)
}

/// A write transaction: sqlx's on PostgreSQL; on SQLite one driven by
/// hand, whose `BEGIN IMMEDIATE` goes with its first query and whose
/// `COMMIT` goes with the last statements ([`WriteTx::commit`]).
pub(super) enum WriteTx {
    Sqlx(sqlx::Transaction<'static, Any>),
    Sqlite(Open),
}

/// A SQLite connection for a transaction begun by hand. The connection
/// must not be lent again until the transaction has ended: if a statement
/// fails, or the future is dropped midway (sqlx's connection thread stops
/// running the rest of a query whose caller is gone), the connection is
/// closed instead, which rolls the transaction back. One never begun goes
/// back as it came.
pub(super) struct Open {
    conn: Lease,
    begun: bool,
    ended: bool,
}

impl Drop for Open {
    fn drop(&mut self) {
        if self.begun && !self.ended {
            self.conn.discard();
        }
    }
}

impl Open {
    /// `sql`, after `BEGIN IMMEDIATE` if this is the first query.
    fn text(&mut self, sql: &str) -> String {
        if std::mem::replace(&mut self.begun, true) {
            sql.to_owned()
        } else {
            format!("BEGIN IMMEDIATE;\n{sql}")
        }
    }
}

impl WriteTx {
    pub(super) async fn begin(store: &SqlStore) -> Result<Self, RepoError> {
        Ok(match &store.db {
            Db::Own(conns) => WriteTx::Sqlite(Open {
                conn: conns.lease().await?,
                begun: false,
                ended: false,
            }),
            Db::Pool(pool) => WriteTx::Sqlx(pool.begin().await?),
        })
    }

    /// An empty [`Batch`] for this transaction's last statements: one
    /// query on SQLite, to go with the `COMMIT`.
    pub(super) fn batch<'q>(&self) -> Batch<'q> {
        Batch::new(self.together())
    }

    /// Whether several statements may go in one query (SQLite).
    pub(super) fn together(&self) -> bool {
        matches!(self, WriteTx::Sqlite(_))
    }

    /// Runs one statement and returns its rows.
    pub(super) async fn fetch_all<'q>(
        &mut self,
        sql: &str,
        args: AnyArguments<'q>,
    ) -> Result<Vec<AnyRow>, RepoError> {
        Ok(match self {
            WriteTx::Sqlx(tx) => sqlx::query_with(sql, args).fetch_all(&mut **tx).await?,
            WriteTx::Sqlite(open) => {
                let text = open.text(sql);
                sqlx::query_with(&text, args)
                    .fetch_all(open.conn.get()?)
                    .await?
            }
        })
    }

    /// On SQLite, runs the statements of `sql` (`;`-separated, sharing
    /// `args`: a `$n` means the same value in each) in one query and
    /// returns each statement's rows. Only where [`WriteTx::together`]:
    /// PostgreSQL's parameterised queries hold one statement.
    pub(super) async fn fetch_statements<'q>(
        &mut self,
        sql: &str,
        args: AnyArguments<'q>,
    ) -> Result<Vec<Vec<AnyRow>>, RepoError> {
        use futures::TryStreamExt;
        use sqlx::Executor;
        let WriteTx::Sqlite(open) = self else {
            return Err(RepoError::Db(
                "several statements in one query need SQLite".into(),
            ));
        };
        let begins = !open.begun;
        let text = open.text(sql);
        let mut results = open.conn.get()?.fetch_many(sqlx::query_with(&text, args));
        // Each statement's rows, then its result.
        let (mut statements, mut rows) = (Vec::new(), Vec::new());
        while let Some(next) = results.try_next().await? {
            match next {
                sqlx::Either::Right(row) => rows.push(row),
                sqlx::Either::Left(_) => statements.push(std::mem::take(&mut rows)),
            }
        }
        if begins && !statements.is_empty() {
            statements.remove(0);
        }
        Ok(statements)
    }

    /// Runs `last` and commits; the rows its statements give (a read in
    /// the transaction, at its end), in order. On SQLite the last query of
    /// `last` (made by [`WriteTx::batch`], its only one) is sent with the
    /// `COMMIT`.
    pub(super) async fn commit(self, last: Batch<'_>) -> Result<Vec<AnyRow>, RepoError> {
        match self {
            WriteTx::Sqlx(mut tx) => {
                let rows = last.run(&mut tx).await?;
                tx.commit().await?;
                Ok(rows)
            }
            WriteTx::Sqlite(mut open) => {
                let mut queries = last.queries;
                let Some((sql, args)) = queries.pop() else {
                    if open.begun {
                        sqlx::query("COMMIT").execute(open.conn.get()?).await?;
                        open.ended = true;
                    }
                    return Ok(Vec::new());
                };
                let mut rows = Vec::new();
                for (sql, args) in queries {
                    let text = open.text(&sql);
                    rows.extend(
                        sqlx::query_with(&text, args)
                            .fetch_all(open.conn.get()?)
                            .await?,
                    );
                }
                // SQLite steps each statement of a query to its end before
                // the next, so a read before the COMMIT is finished by then.
                let text = open.text(&format!("{sql};\nCOMMIT"));
                rows.extend(
                    sqlx::query_with(&text, args)
                        .fetch_all(open.conn.get()?)
                        .await?,
                );
                open.ended = true;
                Ok(rows)
            }
        }
    }
}

/// `$from, $from+1, …` for `n` values.
pub(super) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($first, …), ($first+width, …)` for a multi-row `INSERT` of `rows`.
pub(super) fn value_rows(first: usize, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|i| format!("({})", placeholders(first + i * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}
