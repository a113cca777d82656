//! SQLite's WAL checkpoints, off the commit path.
//!
//! Left to itself, SQLite checkpoints inside the commit that takes the WAL
//! past 1,000 pages: that commit, and every refresh queued behind the group
//! commit, waits while ~4 MiB of pages are copied into the database file
//! and it is fsync'd. A lone refresh writes 11 pages, so at 1,000
//! refreshes/s that was a stall every ~100 ms, and the refresh p99. Here
//! no commit checkpoints (`wal_autocheckpoint = 0`). A task of its own, on
//! a connection of its own, copies the WAL into the database while commits
//! go on (PASSIVE). Once the WAL is large it copies the last few frames with
//! the writers' gate held: the WAL is then wholly in the database, so the
//! next commit starts it over from its beginning instead of growing it.
//! (A commit made meanwhile outside the gate only postpones that to the
//! next round.)

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{RwLock, RwLockReadGuard};

/// When the checkpointer copies, and how long the WAL may grow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    /// Between two copies.
    pub every: Duration,
    /// WAL frames (pages) past which the WAL is brought back to its start.
    pub restart_frames: i64,
}

impl Default for Policy {
    fn default() -> Self {
        // The WAL stays within ~8 MiB plus one interval's commits; a
        // crash replays at most that.
        Policy {
            every: Duration::from_millis(200),
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

async fn run(mut conn: AnyConnection, this: Weak<Checkpoints>, policy: Policy) {
    let mut tick = tokio::time::interval(policy.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(this) = this.upgrade() else {
            return;
        };
        // A failed round (a full disk, say) is tried again next tick:
        // commits never checkpoint, so stopping would grow the WAL forever.
        match round(&mut conn, &this, policy).await {
            Ok(()) if failing => {
                tracing::info!("SQLite checkpoints work again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::error!(error = %e, "SQLite checkpoint failed; the WAL grows until one succeeds");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// One round: copy what is there and, past the restart length, catch up
/// while commits go on until a copy finds little new, then copy that
/// little with the writers held back.
async fn round(
    conn: &mut AnyConnection,
    this: &Checkpoints,
    policy: Policy,
) -> Result<(), sqlx::Error> {
    let mut frames = passive(conn).await?;
    if frames < policy.restart_frames {
        return Ok(());
    }
    for _ in 0..CATCH_UP {
        let was = std::mem::replace(&mut frames, passive(conn).await?);
        if frames - was <= LAST_COPY {
            break;
        }
    }
    let _alone = this.gate.write().await;
    passive(conn).await?;
    Ok(())
}

/// Unguarded copies before the last one, at most.
const CATCH_UP: usize = 4;
/// New frames few enough to copy with the writers held.
const LAST_COPY: i64 = 64;

/// Copies every WAL frame no reader still needs into the database; the
/// WAL's length in frames.
async fn passive(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await?;
    row.try_get(1)
}
