//! SQLite's WAL checkpoints, off the commit path.
//!
//! Left to itself, SQLite checkpoints inside the commit that takes the WAL
//! past 1,000 pages: that commit, and every refresh queued behind the group
//! commit, waits while ~4 MiB of pages are copied into the database file
//! and it is fsync'd. A lone refresh writes 11 pages, so at 1,000
//! refreshes/s that was a stall every ~100 ms, and the refresh p99. Here
//! no commit checkpoints (`wal_autocheckpoint = 0`). A task of its own, on
//! a connection of its own, copies the WAL into the database while commits
//! go on (PASSIVE), in small steps: every 20 ms under load, so that each
//! copy and the fsync of the database after it stay short (on a grown
//! database, the refresh p99 at 1,000/s was 5.4-5.5 ms copying every
//! 200 ms, 4.3-4.6 ms every 50 ms, medians of five runs; 4.7-5.1 ms
//! every 50 ms and 4.2-4.3 ms every 20 ms, medians of eight, for ~2 % of
//! the refresh rate at 64 clients). Once the WAL is
//! large it copies the last few frames with the writers' gate held: the
//! WAL is then wholly in the database, so the next commit starts it over
//! from its beginning instead of growing it. (A commit made meanwhile
//! outside the gate only postpones that to the next round.) After each
//! round it keeps the database's files mapped (see `resident`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{RwLock, RwLockReadGuard};

use super::resident::Resident;

/// When the checkpointer copies, and how long the WAL may grow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// Between two copies while commits come (backing off to
    /// [`IDLE_EVERY`] while none do).
    pub every: Duration,
    /// WAL frames (pages) past which the WAL is brought back to its start.
    pub restart_frames: i64,
}

impl Default for Policy {
    fn default() -> Self {
        // The WAL stays within ~8 MiB plus one interval's commits; a
        // crash replays at most that.
        Policy {
            every: Duration::from_millis(20),
            restart_frames: 2048,
        }
    }
}

/// The checkpointer's side of the store: its task runs while this lives.
#[derive(Debug)]
pub(super) struct Checkpoints {
    /// Shared by commits that hold it; held alone for the last copy.
    gate: RwLock<()>,
}

impl Checkpoints {
    /// Starts the checkpointer on a connection taken out of `pool` for good.
    pub(super) async fn start(pool: &AnyPool, policy: Policy) -> Result<Arc<Self>, sqlx::Error> {
        let conn = pool.acquire().await?.detach();
        let this = Arc::new(Checkpoints {
            gate: RwLock::new(()),
        });
        tokio::spawn(run(conn, Arc::downgrade(&this), policy));
        Ok(this)
    }

    /// Held while a commit writes, so that the last copy of a round has
    /// the WAL to itself.
    pub(super) async fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }
}

/// Longest pause between two rounds, reached while nothing is committed:
/// the first round after a quiet spell copies at most this long's commits.
const IDLE_EVERY: Duration = Duration::from_millis(200);

async fn run(mut conn: AnyConnection, this: Weak<Checkpoints>, policy: Policy) {
    let mut resident = match main_file(&mut conn).await {
        Ok(path) => path.map(Resident::new),
        Err(e) => {
            tracing::warn!(error = %e, "SQLite did not name its database file; its pages are left to the page cache");
            None
        }
    };
    let mut failing = false;
    let mut pause = policy.every;
    let mut last = None;
    loop {
        tokio::time::sleep(pause).await;
        let Some(this) = this.upgrade() else {
            return;
        };
        // A failed round (a full disk, say) is tried again next time:
        // commits never checkpoint, so stopping would grow the WAL forever.
        match round(&mut conn, &this, policy).await {
            Ok(wal) => {
                if failing {
                    tracing::info!("SQLite checkpoints work again");
                    failing = false;
                }
                pause = next_pause(pause, policy.every, wal, last);
                last = Some(wal);
            }
            Err(e) if !failing => {
                tracing::error!(error = %e, "SQLite checkpoint failed; the WAL grows until one succeeds");
                failing = true;
            }
            Err(_) => {}
        }
        if let Some(r) = resident.take() {
            resident = keep_resident(r).await;
        }
    }
}

/// The main database's file, `None` for one in memory.
async fn main_file(conn: &mut AnyConnection) -> Result<Option<std::path::PathBuf>, sqlx::Error> {
    let rows = sqlx::query("PRAGMA database_list")
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let name: String = row.try_get(1)?;
        let file: String = row.try_get(2)?;
        if name == "main" && !file.is_empty() {
            return Ok(Some(file.into()));
        }
    }
    Ok(None)
}

/// Maps what the files gained, off the runtime (the first time it reads
/// them whole); after an error (a kernel without `MADV_POPULATE_READ`, say)
/// the files are left to the page cache.
async fn keep_resident(mut r: Resident) -> Option<Resident> {
    match tokio::task::spawn_blocking(move || r.keep().map(|()| r)).await {
        Ok(Ok(r)) => Some(r),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "SQLite's files cannot be kept mapped; their pages are left to the page cache");
            None
        }
        Err(_) => None,
    }
}

/// The pause after a round that left `wal` (and the one before it, `last`):
/// an idle database is looked at ever less often, and any commit brings
/// the pace back to `every`.
fn next_pause(pause: Duration, every: Duration, wal: Wal, last: Option<Wal>) -> Duration {
    let idle = wal.copied == wal.frames && last == Some(wal);
    if idle {
        (pause * 2).clamp(every, IDLE_EVERY.max(every))
    } else {
        every
    }
}

/// One round: copy what is there and, past the restart length, catch up
/// while commits go on until a copy finds little new, then copy that
/// little with the writers held back.
async fn round(
    conn: &mut AnyConnection,
    this: &Checkpoints,
    policy: Policy,
) -> Result<Wal, sqlx::Error> {
    let mut wal = passive(conn).await?;
    if wal.frames < policy.restart_frames {
        return Ok(wal);
    }
    for _ in 0..CATCH_UP {
        let was = std::mem::replace(&mut wal, passive(conn).await?);
        if wal.frames - was.frames <= LAST_COPY {
            break;
        }
    }
    let _alone = this.gate.write().await;
    passive(conn).await
}

/// Unguarded copies before the last one, at most.
const CATCH_UP: usize = 4;
/// New frames few enough to copy with the writers held.
const LAST_COPY: i64 = 64;

/// The WAL after a copy, in frames (pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wal {
    /// Its length.
    frames: i64,
    /// How many of them are in the database file.
    copied: i64,
}

/// Copies every WAL frame no reader still needs into the database.
async fn passive(conn: &mut AnyConnection) -> Result<Wal, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Wal {
        frames: row.try_get(1)?,
        copied: row.try_get(2)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_database_is_looked_at_less_often_until_a_commit() {
        let every = Duration::from_millis(50);
        let wal = |frames, copied| Wal { frames, copied };
        let copied = wal(40, 40);
        // Nothing new and all copied: the pause doubles up to the cap.
        let mut pause = every;
        let mut seen = Vec::new();
        for _ in 0..5 {
            pause = next_pause(pause, every, copied, Some(copied));
            seen.push(pause.as_millis());
        }
        assert_eq!(seen, [100, 200, 200, 200, 200]);
        // A commit since the last round, or frames not yet copied: at once
        // back to the quick pace.
        assert_eq!(next_pause(pause, every, wal(52, 52), Some(copied)), every);
        assert_eq!(
            next_pause(pause, every, wal(40, 30), Some(wal(40, 30))),
            every
        );
        // The first round has nothing to compare with.
        assert_eq!(next_pause(every, every, copied, None), every);
        // A policy slower than the idle cap keeps its own pace.
        let slow = Duration::from_secs(2);
        assert_eq!(next_pause(slow, slow, copied, Some(copied)), slow);
    }
}
