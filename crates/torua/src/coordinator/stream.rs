//! The coordinator's end of the data stream ([`crate::stream`]): one
//! persistent connection per node carrying every key read and write sent
//! to it, answered in any order and matched by id.
//!
//! A stream that fails (the node restarted, a read or write error, a call
//! that timed out) is closed as a whole: every call waiting on it learns
//! its outcome is unknown, and the next call opens a new one. That is what
//! per-request HTTP gave: a timed-out request's connection was dropped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use crate::stream::{encode, Answer, FrameReader, Op, Request, Response, FRAME_OVERHEAD, PROTOCOL};
use crate::wire::NodeInfo;

/// The open stream to each node.
#[derive(Default)]
pub(crate) struct Streams {
    /// By node id, with the address each was opened to.
    open: RwLock<HashMap<String, (String, Arc<Mux>)>>,
    /// One stream being opened per node at a time.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// `id@addr` of nodes that answered `/stream` with 404 (an older
    /// version): called over HTTP.
    http_only: RwLock<HashSet<String>>,
}

impl Streams {
    fn find(&self, node: &NodeInfo) -> Option<Arc<Mux>> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        match open.get(&node.id) {
            Some((addr, mux)) if *addr == node.addr && mux.is_open() => Some(mux.clone()),
            _ => None,
        }
    }

    /// The stream to `node`, opened with `http` (the client pinned to the
    /// node's certificate) if need be; `None` for a node that has none.
    pub(crate) async fn to(
        &self,
        node: &NodeInfo,
        http: impl FnOnce() -> reqwest::Client,
        max_value: usize,
        timeout: Duration,
    ) -> Result<Option<Arc<Mux>>, reqwest::Error> {
        if let Some(mux) = self.find(node) {
            return Ok(Some(mux));
        }
        let key = format!("{}@{}", node.id, node.addr);
        if self
            .http_only
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&key)
        {
            return Ok(None);
        }
        let lock = self
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node.id.clone())
            .or_default()
            .clone();
        let _opening = lock.lock().await;
        if let Some(mux) = self.find(node) {
            return Ok(Some(mux));
        }
        let Some(mux) = Mux::open(&http(), &node.addr, max_value, timeout).await? else {
            tracing::info!(node = %node.id, "the node has no data stream (an older version); calling it over HTTP");
            self.http_only
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key);
            return Ok(None);
        };
        let mux = Arc::new(mux);
        self.open
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.id.clone(), (node.addr.clone(), mux.clone()));
        Ok(Some(mux))
    }
}

/// Why a call on a stream failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Nothing was sent: the stream was closed before the call.
    NotSent(String),
    /// Sent, but no answer came: the outcome is unknown.
    Lost(String),
}

type Waiting = Mutex<HashMap<u64, oneshot::Sender<Result<Answer, String>>>>;

/// One open stream to a node.
pub(crate) struct Mux {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    waiting: Arc<Waiting>,
    closed: Arc<AtomicBool>,
    next: AtomicU64,
    tasks: [AbortHandle; 2],
}

impl Mux {
    /// Opens a stream with `GET {base}/stream` on `http`; `Ok(None)` when
    /// the node predates streams (404).
    pub(crate) async fn open(
        http: &reqwest::Client,
        base: &str,
        max_value: usize,
        timeout: Duration,
    ) -> Result<Option<Mux>, reqwest::Error> {
        let res = http
            .get(format!("{base}{}", crate::stream::PATH))
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, PROTOCOL)
            .timeout(timeout)
            .send()
            .await?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let io = res.error_for_status()?.upgrade().await?;
        let (rd, wr) = tokio::io::split(io);
        let (frames, rx) = mpsc::unbounded_channel();
        let waiting = Arc::new(Waiting::default());
        let closed = Arc::new(AtomicBool::new(false));
        let writer = {
            let (waiting, closed) = (waiting.clone(), closed.clone());
            tokio::spawn(async move {
                let why = match crate::stream::write_frames(wr, rx).await {
                    Ok(()) => "stream closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                fail_all(&closed, &waiting, &why);
            })
        };
        let reader = {
            let (waiting, closed) = (waiting.clone(), closed.clone());
            tokio::spawn(async move {
                let mut frames = FrameReader::new(rd, max_value + FRAME_OVERHEAD);
                let why = loop {
                    match frames.next::<Response>().await {
                        Ok(Some(r)) => {
                            let to = waiting
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&r.id);
                            // None: the caller timed out and left.
                            if let Some(to) = to {
                                let _ = to.send(Ok(r.answer));
                            }
                        }
                        Ok(None) => break "the node closed the stream".to_owned(),
                        Err(e) => break e.to_string(),
                    }
                };
                fail_all(&closed, &waiting, &why);
            })
        };
        Ok(Some(Mux {
            frames,
            waiting,
            closed,
            next: AtomicU64::new(1),
            tasks: [writer.abort_handle(), reader.abort_handle()],
        }))
    }

    /// Whether calls can still be made on it.
    pub(crate) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Sends `op` on `shard` and waits for its answer for up to `timeout`;
    /// a timeout closes the stream.
    pub(crate) async fn call(
        &self,
        shard: u32,
        op: Op,
        timeout: Duration,
    ) -> Result<Answer, Failed> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        // Checked after registering: a stream that closes from here on
        // fails this call too, so it cannot wait for an answer that never
        // comes.
        if !self.is_open()
            || self
                .frames
                .send(encode(&Request { id, shard, op }))
                .is_err()
        {
            self.forget(id);
            return Err(Failed::NotSent("the stream to the node was closed".into()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(why))) => Err(Failed::Lost(why)),
            Ok(Err(_)) => Err(Failed::Lost("the stream was dropped".into())),
            Err(_) => {
                self.forget(id);
                self.close("a call timed out");
                Err(Failed::Lost("timed out".into()))
            }
        }
    }

    fn forget(&self, id: u64) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Closes the stream, failing every call waiting on it.
    pub(crate) fn close(&self, why: &str) {
        for t in &self.tasks {
            t.abort();
        }
        fail_all(&self.closed, &self.waiting, why);
    }
}

impl Drop for Mux {
    fn drop(&mut self) {
        self.close("the stream was dropped");
    }
}

fn fail_all(closed: &AtomicBool, waiting: &Waiting, why: &str) {
    closed.store(true, Ordering::Release);
    let all: Vec<_> = waiting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for (_, to) in all {
        let _ = to.send(Err(why.to_owned()));
    }
}
