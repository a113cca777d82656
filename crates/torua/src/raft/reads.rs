//! Linearizable reads share their quorum rounds (ReadIndex batching, as
//! etcd and TiKV do): a read waits for the next round that *starts after it
//! arrived*, and every read waiting then is answered by that one round. A
//! round that is already running cannot serve a read that arrived after it
//! began (the leadership it confirms may predate a write that read must
//! see), so such reads form the next round, started as soon as the running
//! one ends. Under load a group runs one round at a time, whatever the
//! number of readers.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The rounds of one group; `T` is what a round answers.
pub(crate) struct Rounds<T> {
    queue: Mutex<Queue<T>>,
}

struct Queue<T> {
    /// Whether a task is running rounds (it takes the waiters as it goes).
    running: bool,
    waiting: Vec<oneshot::Sender<T>>,
}

impl<T> Default for Rounds<T> {
    fn default() -> Self {
        Rounds {
            queue: Mutex::new(Queue {
                running: false,
                waiting: Vec::new(),
            }),
        }
    }
}

impl<T: Clone + Send + 'static> Rounds<T> {
    /// The outcome of a round started after this call; `round` starts one.
    /// `None` if the task running rounds went away (a panic).
    pub(crate) async fn join<F, Fut>(self: &Arc<Self>, round: F) -> Option<T>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.waiting.push(tx);
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            // On a task of its own: the rounds must go on for the others
            // if this reader goes away.
            let rounds = self.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut q = rounds.queue.lock().unwrap_or_else(|p| p.into_inner());
                        if q.waiting.is_empty() {
                            q.running = false;
                            return;
                        }
                        std::mem::take(&mut q.waiting)
                    };
                    let out = round().await;
                    for w in batch {
                        let _ = w.send(out.clone());
                    }
                }
            });
        }
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicU32, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    /// Rounds that count themselves and wait for a permit to finish.
    fn counted(
        gate: &Arc<Semaphore>,
        count: &Arc<AtomicU32>,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = u32> + Send>> + Send + Clone + 'static
    {
        let (gate, count) = (gate.clone(), count.clone());
        move || {
            let (gate, count) = (gate.clone(), count.clone());
            Box::pin(async move {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                gate.acquire().await.unwrap().forget();
                n
            })
        }
    }

    #[tokio::test]
    async fn a_read_that_arrives_during_a_round_waits_for_the_next_one() {
        let rounds = Arc::new(Rounds::default());
        let (gate, count) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU32::new(0)));
        let round = counted(&gate, &count);
        let first = tokio::spawn({
            let (r, f) = (rounds.clone(), round.clone());
            async move { r.join(f).await }
        });
        // Round 1 is running (it counted itself) and cannot finish yet.
        while count.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let late: Vec<_> = (0..50)
            .map(|_| {
                let (r, f) = (rounds.clone(), round.clone());
                tokio::spawn(async move { r.join(f).await })
            })
            .collect();
        tokio::task::yield_now().await;
        gate.add_permits(2);
        assert_eq!(first.await.unwrap(), Some(1));
        for l in late {
            // Not round 1, which began before they arrived: round 2, shared.
            assert_eq!(l.await.unwrap(), Some(2));
        }
        assert_eq!(count.load(Ordering::SeqCst), 2, "fifty reads, one round");
        // Idle again: the next read starts a round of its own.
        gate.add_permits(1);
        assert_eq!(rounds.join(round).await, Some(3));
    }
}
