//! The calling end of a stream: one persistent connection per peer
//! carrying every call to it, answered in any order and matched by id.
//!
//! A stream that fails (the peer restarted, a read or write error, a call
//! that timed out) is closed as a whole: every call waiting on it learns
//! its outcome is unknown, and the next call opens a new one. That is what
//! per-request HTTP gave: a timed-out request's connection was dropped.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::{FrameReader, PROTOCOL};

/// An answer frame: it names the call it answers.
pub(crate) trait Tagged: DeserializeOwned + Send + 'static {
    /// The id of the call answered.
    fn id(&self) -> u64;
}

impl Tagged for super::Response {
    fn id(&self) -> u64 {
        self.id
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

type Waiting<R> = Mutex<HashMap<u64, oneshot::Sender<Result<R, String>>>>;

/// One open stream to a peer, answered with `R`s.
pub(crate) struct Mux<R> {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    waiting: Arc<Waiting<R>>,
    closed: Arc<AtomicBool>,
    next: AtomicU64,
    tasks: [AbortHandle; 2],
}

impl<R: Tagged> Mux<R> {
    /// Opens a stream with `GET {url}` and `Upgrade: torua-stream` on
    /// `http`, taking answers of up to `max_frame` bytes; `Ok(None)` when
    /// the peer has no such path (404: an older version).
    pub(crate) async fn open(
        http: &reqwest::Client,
        url: &str,
        max_frame: usize,
        timeout: Duration,
    ) -> Result<Option<Mux<R>>, reqwest::Error> {
        let res = http
            .get(url)
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
        let waiting: Arc<Waiting<R>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let writer = {
            let (waiting, closed) = (waiting.clone(), closed.clone());
            tokio::spawn(async move {
                let why = match super::write_frames(wr, rx).await {
                    Ok(()) => "stream closed".to_owned(),
                    Err(e) => e.to_string(),
                };
                fail_all(&closed, &waiting, &why);
            })
        };
        let reader = {
            let (waiting, closed) = (waiting.clone(), closed.clone());
            tokio::spawn(async move {
                let mut frames = FrameReader::new(rd, max_frame);
                let why = loop {
                    match frames.next::<R>().await {
                        Ok(Some(r)) => {
                            let to = waiting
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&r.id());
                            // None: the caller timed out and left.
                            if let Some(to) = to {
                                let _ = to.send(Ok(r));
                            }
                        }
                        Ok(None) => break "the peer closed the stream".to_owned(),
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

    /// Sends the frame `frame(id)` makes and waits for the answer naming
    /// `id` for up to `timeout`; a timeout closes the stream.
    pub(crate) async fn call(
        &self,
        frame: impl FnOnce(u64) -> Vec<u8>,
        timeout: Duration,
    ) -> Result<R, Failed> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        // Checked after registering: a stream that closes from here on
        // fails this call too, so it cannot wait for an answer that never
        // comes.
        if !self.is_open() || self.frames.send(frame(id)).is_err() {
            self.forget(id);
            return Err(Failed::NotSent("the stream was closed".into()));
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
}

impl<R> Mux<R> {
    /// Closes the stream, failing every call waiting on it.
    pub(crate) fn close(&self, why: &str) {
        for t in &self.tasks {
            t.abort();
        }
        fail_all(&self.closed, &self.waiting, why);
    }
}

impl<R> Drop for Mux<R> {
    fn drop(&mut self) {
        self.close("the stream was dropped");
    }
}

fn fail_all<R>(closed: &AtomicBool, waiting: &Waiting<R>, why: &str) {
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

/// A stream and the address it was opened to.
type Opened<R> = (String, Arc<Mux<R>>);

/// The open stream to each peer, by a key that names the peer as the
/// caller authenticates it (the coordinator pins each node's certificate,
/// so its key is the node id), with the address it was opened to.
pub(crate) struct Links<R> {
    open: RwLock<HashMap<String, Opened<R>>>,
    /// One stream being opened per peer at a time.
    opening: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// `key@addr` of peers that answered with 404 (an older version):
    /// called over HTTP until this process restarts.
    http_only: RwLock<HashSet<String>>,
}

impl<R> Default for Links<R> {
    fn default() -> Self {
        Links {
            open: RwLock::default(),
            opening: Mutex::default(),
            http_only: RwLock::default(),
        }
    }
}

impl<R: Tagged> Links<R> {
    fn find(&self, key: &str, addr: &str) -> Option<Arc<Mux<R>>> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        match open.get(key) {
            Some((at, mux)) if at == addr && mux.is_open() => Some(mux.clone()),
            _ => None,
        }
    }

    /// The stream to the peer `key` at `addr`, opened at `addr` + `path`
    /// with `http` if need be; `None` for a peer that has none.
    pub(crate) async fn to(
        &self,
        key: &str,
        addr: &str,
        path: &str,
        http: impl FnOnce() -> reqwest::Client,
        max_frame: usize,
        timeout: Duration,
    ) -> Result<Option<Arc<Mux<R>>>, reqwest::Error> {
        if let Some(mux) = self.find(key, addr) {
            return Ok(Some(mux));
        }
        let peer = format!("{key}@{addr}");
        if self
            .http_only
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&peer)
        {
            return Ok(None);
        }
        let lock = self
            .opening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.to_owned())
            .or_default()
            .clone();
        let _opening = lock.lock().await;
        if let Some(mux) = self.find(key, addr) {
            return Ok(Some(mux));
        }
        let url = format!("{}{path}", addr.trim_end_matches('/'));
        let Some(mux) = Mux::open(&http(), &url, max_frame, timeout).await? else {
            tracing::info!(%peer, "the peer has no stream (an older version); calling it over HTTP");
            self.http_only
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(peer);
            return Ok(None);
        };
        let mux = Arc::new(mux);
        self.open
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), (addr.to_owned(), mux.clone()));
        Ok(Some(mux))
    }
}
