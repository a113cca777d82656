//! Group commit for refresh-token rotation. Each rotation is a few small
//! writes; committed one by one, every refresh pays a durable commit of its
//! own (and on SQLite, the writers queue on one lock). One task takes every
//! rotation waiting when it is free and commits them in one transaction
//! (`SessionRepo::use_refresh`), so a burst costs one commit. A lone
//! refresh is committed at once: nothing waits for a group to fill.

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
        tokio::spawn(commit_groups(store, rx));
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

async fn commit_groups(store: Arc<dyn Store>, mut rx: mpsc::Receiver<(Rotation, Reply)>) {
    let mut group = Vec::new();
    while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
        let (rotations, replies): (Vec<_>, Vec<_>) = group.drain(..).unzip();
        match store.use_refresh(&rotations).await {
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
