//! Group commit for refresh-token rotation. Each rotation is a few small
//! writes; committed one by one, every refresh pays a durable commit of its
//! own (and on SQLite, the writers queue on one lock). One task takes every
//! rotation waiting when it is free and commits them in one transaction
//! (`SessionRepo::use_refresh`), so a burst costs one commit. A lone
//! refresh is committed at once: nothing waits for a group to fill. Where
//! the database takes several writers (PostgreSQL), several tasks take
//! groups in turn, so one group's round trips overlap another's; a group
//! that lost a deadlock to another (rolled back whole) is committed again.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::model::RefreshUse;
use crate::repo::{RepoError, Rotation, Store};

/// Most rotations in one transaction.
const MAX_GROUP: usize = 256;
/// Rotations waiting beyond the one being committed.
const QUEUE: usize = 4096;

type Reply = oneshot::Sender<Result<RefreshUse, String>>;

/// The queue in front of the committing task.
pub(super) struct RefreshGroups {
    queue: mpsc::Sender<(Rotation, Reply)>,
}

impl RefreshGroups {
    /// Starts the committing task (on the current runtime); it ends when
    /// this queue is dropped.
    pub(super) fn start(store: Arc<dyn Store>) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..store.concurrent_writers().max(1) {
            tokio::spawn(commit_groups(store.clone(), rx.clone()));
        }
        RefreshGroups { queue }
    }

    /// Queues one rotation and waits for the commit of its group.
    pub(super) async fn rotate(&self, r: Rotation) -> Result<RefreshUse, RepoError> {
        let (tx, rx) = oneshot::channel();
        let gone = || RepoError::Db("refresh commit task stopped".into());
        self.queue.send((r, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?.map_err(RepoError::Db)
    }
}

/// Times a group that lost a deadlock is tried again.
const DEADLOCK_RETRIES: usize = 3;

type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<(Rotation, Reply)>>>;

async fn commit_groups(store: Arc<dyn Store>, rx: Queue) {
    let mut group = Vec::new();
    loop {
        // One task waits for the next group while others commit theirs.
        if rx.lock().await.recv_many(&mut group, MAX_GROUP).await == 0 {
            return;
        }
        let (rotations, replies): (Vec<_>, Vec<_>) = group.drain(..).unzip();
        let mut done = store.use_refresh(&rotations).await;
        for _ in 0..DEADLOCK_RETRIES {
            match &done {
                Err(e) if e.to_string().contains("deadlock detected") => {
                    done = store.use_refresh(&rotations).await;
                }
                _ => break,
            }
        }
        match done {
            Ok(done) => {
                for (reply, d) in replies.into_iter().zip(done) {
                    let _ = reply.send(Ok(d));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, rotations = rotations.len(), "refresh group not committed");
                for reply in replies {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}
