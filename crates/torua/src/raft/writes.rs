//! Concurrent writes to one group share log entries (proposal batching, as
//! TiKV batches proposals). openraft 0.9 takes one client write at a time
//! and, inside its core task, waits for that entry's flush to the log
//! before it replicates it: writes proposed one by one queue behind one
//! `fdatasync` each, and each pays a log entry's whole way (append,
//! replication, apply). A write joins the ones waiting; while fewer than
//! [`IN_FLIGHT`] proposals of the group are being replicated, a proposal
//! starts at once with everything waiting (a lone write waits for
//! nothing); otherwise the waiting writes form the next one. Each write
//! still applies all or none on its own (`torua_raft::Change::Each`) and
//! gets its own answer.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use torua_raft::{Change, Request, Response};

use super::groups::Refusal;
use crate::http::ApiError;

/// Proposals of one group replicating at once. More would let a group's
/// next entry flush while the one before is on its way to the followers;
/// fewer makes bigger entries, and won: A B A B at factor 3, PUT c=64
/// with 1, 2 and 4 (docs/benchmarks.md).
const IN_FLIGHT: usize = 1;
/// Most writes in one proposal.
const MAX_WRITES: usize = 256;
/// Most key and value bytes in one proposal (at least one write): an entry
/// travels to the followers in one append.
const MAX_BYTES: usize = 256 << 10;

type Reply = oneshot::Sender<Result<Response, Refusal>>;

/// The proposals of one group.
#[derive(Default)]
pub(crate) struct Proposals {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// Tasks proposing (each takes the waiting writes as it goes).
    proposing: usize,
    waiting: Vec<(Vec<Change>, Reply)>,
}

impl Proposals {
    /// Proposes `changes` with others waiting; `submit` replicates one
    /// entry and answers once it is applied here.
    pub(crate) async fn propose<F, Fut>(
        self: &Arc<Self>,
        changes: Vec<Change>,
        submit: F,
    ) -> Result<Response, Refusal>
    where
        F: Fn(Request) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Response, Refusal>> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.lock();
            q.waiting.push((changes, tx));
            let start = q.proposing < IN_FLIGHT;
            if start {
                q.proposing += 1;
            }
            start
        };
        if start {
            // On a task of its own: proposing goes on for the others if
            // this writer goes away.
            let me = self.clone();
            tokio::spawn(async move {
                while let Some((request, replies)) = me.next() {
                    answer(submit(request).await, replies);
                }
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(ApiError::internal("the task proposing this write stopped").into())
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next proposal from the waiting writes, or `None` (and one task
    /// fewer proposing) when none wait.
    fn next(&self) -> Option<(Request, Vec<Reply>)> {
        let mut q = self.lock();
        if q.waiting.is_empty() {
            q.proposing -= 1;
            return None;
        }
        let mut bytes = 0;
        let take = q
            .waiting
            .iter()
            .take(MAX_WRITES)
            .position(|(changes, _)| {
                bytes += changes.iter().map(Change::bytes).sum::<usize>();
                bytes > MAX_BYTES
            })
            .unwrap_or(q.waiting.len().min(MAX_WRITES))
            .max(1);
        let (mut writes, replies): (Vec<_>, Vec<_>) = q.waiting.drain(..take).unzip();
        drop(q);
        let request = if writes.len() == 1 {
            Request {
                changes: writes.pop().unwrap_or_default(),
            }
        } else {
            Request::each(writes)
        };
        Some((request, replies))
    }
}

/// Gives each writer of a proposal its answer.
fn answer(out: Result<Response, Refusal>, replies: Vec<Reply>) {
    let n = replies.len();
    let answers = match out {
        Ok(Response::Each(answers)) if answers.len() == n => answers.into_iter().map(Ok).collect(),
        Ok(one) if n == 1 => vec![Ok(one)],
        Ok(_) => {
            vec![Err(ApiError::internal("a shared entry was answered for other writes").into()); n]
        }
        Err(e) => vec![Err(e); n],
    };
    for (reply, a) in replies.into_iter().zip(answers) {
        let _ = reply.send(a);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn put(key: &str, size: usize) -> Vec<Change> {
        vec![Change::Put {
            key: key.into(),
            content_type: "t".into(),
            value: vec![0; size],
            expect: torua_raft::Condition::Any,
        }]
    }

    /// Answers each write with its position, as a state machine would.
    async fn apply(r: Request) -> Result<Response, Refusal> {
        let applied = |i: usize| Response::Applied {
            versions: vec![i as u64],
        };
        Ok(match r.changes.as_slice() {
            [Change::Each(writes)] => Response::Each((0..writes.len()).map(applied).collect()),
            _ => applied(0),
        })
    }

    #[tokio::test]
    async fn a_lone_write_is_proposed_alone_and_at_once() {
        let p = Arc::new(Proposals::default());
        let Ok(out) = p.propose(put("a", 1), apply).await else {
            panic!("refused");
        };
        assert_eq!(out, Response::Applied { versions: vec![0] });
        assert_eq!(p.lock().proposing, 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_waiting_share_an_entry_and_get_their_own_answers() {
        let p = Arc::new(Proposals::default());
        let entries = Arc::new(AtomicUsize::new(0));
        let count = |entries: Arc<AtomicUsize>| {
            move |r: Request| {
                entries.fetch_add(1, Ordering::SeqCst);
                apply(r)
            }
        };
        // All queued before any proposing task runs: the first IN_FLIGHT
        // tasks take them in at most that many entries.
        let writes: Vec<_> = (0..40)
            .map(|i| {
                let (p, submit) = (p.clone(), count(entries.clone()));
                tokio::spawn(async move { p.propose(put(&format!("k{i}"), 10), submit).await })
            })
            .collect();
        let mut answers = Vec::new();
        for w in writes {
            let Ok(answer) = w.await.unwrap() else {
                panic!("refused");
            };
            answers.push(answer);
        }
        assert!(entries.load(Ordering::SeqCst) <= IN_FLIGHT, "{entries:?}");
        // Each write got an answer of its own entry position.
        assert!(answers
            .iter()
            .all(|a| matches!(a, Response::Applied { .. })));
        assert_eq!(p.lock().proposing, 0);
    }

    #[tokio::test]
    async fn a_proposal_is_bounded_in_writes_and_bytes() {
        let p = Proposals::default();
        {
            let mut q = p.lock();
            q.proposing = 1;
            for i in 0..MAX_WRITES + 10 {
                q.waiting
                    .push((put(&format!("k{i}"), 1), oneshot::channel().0));
            }
        }
        let (r, replies) = p.next().unwrap();
        assert_eq!(replies.len(), MAX_WRITES);
        assert!(matches!(r.changes.as_slice(), [Change::Each(w)] if w.len() == MAX_WRITES));
        p.lock().waiting.clear();
        for i in 0..3 {
            p.lock()
                .waiting
                .push((put(&format!("big{i}"), MAX_BYTES), oneshot::channel().0));
        }
        // One write over the limit still goes, alone.
        let (r, replies) = p.next().unwrap();
        assert_eq!(replies.len(), 1);
        assert!(matches!(r.changes.as_slice(), [Change::Put { .. }]));
    }

    #[tokio::test]
    async fn a_refused_proposal_refuses_each_of_its_writes() {
        let p = Arc::new(Proposals::default());
        let refuse = |_r: Request| async {
            Err::<Response, Refusal>(ApiError::unavailable("outcome_unknown", "no quorum").into())
        };
        assert!(p.propose(put("a", 1), refuse).await.is_err());
    }
}
