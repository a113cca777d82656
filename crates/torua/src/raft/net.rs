//! Raft RPCs between nodes: postcard bodies over the cluster's mutual TLS.
//!
//! Appends and votes of every group bound for the same peer node travel
//! together (as TiKV batches Raft messages per store): one task per peer
//! takes everything queued for it into one batch, with at most
//! [`IN_FLIGHT`] batches outstanding, so a node with many shards sends a
//! few large messages instead of one small one per group and heartbeat.
//! Batches go as frames on one persistent stream per peer (`GET
//! {peer}/raft/stream`, [`crate::stream`]), or as `POST {peer}/raft/batch`
//! to a peer of an older version. Snapshots go on their own: `POST
//! {peer}/raft/{shard}/snapshot`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RemoteError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use torua_raft::{decode, encode, typ, Member, TypeConfig};

use crate::stream::client::{Failed as StreamFailed, Links, Tagged};
use crate::tls::HttpClient;

/// Content type of Raft RPC bodies.
pub(crate) const RAFT_CONTENT_TYPE: &str = "application/x-torua-raft";

/// Batches outstanding per peer; more RPCs wait and join the next batch.
const IN_FLIGHT: usize = 4;
/// Most RPCs in one batch.
const MAX_ITEMS: usize = 512;
/// A batch stops growing past this many body bytes (one larger RPC still
/// goes, alone).
pub(crate) const MAX_BATCH_BYTES: usize = 16 << 20;

/// Which RPC a batched body is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) enum BatchOp {
    Append,
    Vote,
    /// Raft's TimeoutNow: stand for election at once (a leadership
    /// transfer; the body is the sending leader's Raft id).
    TimeoutNow,
}

/// One RPC in a batch: its group, kind and postcard body.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct BatchItem {
    pub group: u32,
    pub op: BatchOp,
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The answer to one batched RPC: the postcard-encoded response, or why
/// the receiving node could not hand it to the group.
pub(crate) type BatchAnswer = Result<serde_bytes::ByteBuf, String>;

/// Path of the Raft stream.
pub(crate) const STREAM_PATH: &str = "/raft/stream";

/// A batch as a stream frame.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RaftCall {
    pub id: u64,
    pub items: Vec<BatchItem>,
}

/// The answers to a [`RaftCall`], in its order.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RaftReply {
    pub id: u64,
    pub answers: Vec<BatchAnswer>,
}

impl Tagged for RaftReply {
    fn id(&self) -> u64 {
        self.id
    }
}

/// Largest answer frame: a batch's answers are small (appends answer a
/// log id, votes a vote).
const MAX_REPLY: usize = 16 << 20;

/// Why an RPC got no answer.
#[derive(Clone)]
pub(super) enum Failed {
    /// The peer could not be reached: nothing was delivered.
    Unreachable(String),
    /// Sent, but no usable answer.
    Network(String),
}

struct Queued {
    item: BatchItem,
    ttl: Duration,
    reply: oneshot::Sender<Result<Vec<u8>, Failed>>,
}

/// The node's outgoing batches, one queue per peer address.
pub(crate) struct Batcher {
    client: HttpClient,
    peers: Mutex<HashMap<String, mpsc::UnboundedSender<Queued>>>,
    /// The stream to each peer, by address.
    links: Arc<Links<RaftReply>>,
}

impl Batcher {
    pub(crate) fn new(client: HttpClient) -> Arc<Batcher> {
        Arc::new(Batcher {
            client,
            peers: Mutex::default(),
            links: Arc::default(),
        })
    }

    /// Sends `item` to the peer at `addr` in the next batch; waits for its answer.
    async fn call(&self, addr: &str, item: BatchItem, ttl: Duration) -> Result<Vec<u8>, Failed> {
        let (reply, answer) = oneshot::channel();
        let mut job = Queued { item, ttl, reply };
        for _ in 0..2 {
            let tx = {
                let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
                peers
                    .entry(addr.to_owned())
                    .or_insert_with(|| {
                        let (tx, rx) = mpsc::unbounded_channel();
                        let to = To {
                            client: self.client.clone(),
                            links: self.links.clone(),
                            addr: addr.trim_end_matches('/').to_owned(),
                        };
                        tokio::spawn(run_peer(to, rx));
                        tx
                    })
                    .clone()
            };
            match tx.send(job) {
                Ok(()) => {
                    return answer
                        .await
                        .unwrap_or_else(|_| Err(Failed::Network("batch dropped".into())))
                }
                // The peer's task ended (its runtime is shutting down):
                // start another once.
                Err(mpsc::error::SendError(j)) => {
                    job = j;
                    self.peers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(addr);
                }
            }
        }
        Err(Failed::Network("no sender for the peer".into()))
    }
}

impl Batcher {
    /// Tells the replica of `group` at `addr` to stand for election now.
    pub(crate) async fn timeout_now(
        &self,
        addr: &str,
        group: u32,
        from: u64,
    ) -> Result<(), String> {
        let item = BatchItem {
            group,
            op: BatchOp::TimeoutNow,
            body: encode(&from).map_err(|e| e.to_string())?,
        };
        let addr = addr.trim_end_matches('/');
        let bytes = self
            .call(addr, item, Duration::from_secs(2))
            .await
            .map_err(|f| f.message().to_owned())?;
        decode::<Result<(), String>>(&bytes).map_err(|e| e.to_string())?
    }
}

/// Where one peer's batches go.
#[derive(Clone)]
struct To {
    client: HttpClient,
    links: Arc<Links<RaftReply>>,
    addr: String,
}

/// Takes everything queued for one peer into batches, [`IN_FLIGHT`] at a time.
async fn run_peer(to: To, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.item.body.len();
        let mut batch = vec![first];
        while batch.len() < MAX_ITEMS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(q) => {
                    bytes += q.item.body.len();
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let to = to.clone();
        tokio::spawn(async move {
            send_batch(&to, batch).await;
            drop(permit);
        });
    }
}

impl Failed {
    /// Whether the request certainly did not arrive.
    pub(super) fn undelivered(&self) -> bool {
        matches!(self, Failed::Unreachable(_))
    }

    /// What went wrong, for an error message.
    pub(super) fn message(&self) -> &str {
        match self {
            Failed::Unreachable(m) | Failed::Network(m) => m,
        }
    }
}

/// POSTs a postcard body to a peer; the answer's bytes on a 2xx.
pub(super) async fn post(
    client: &HttpClient,
    url: &str,
    body: Vec<u8>,
    ttl: Duration,
) -> Result<bytes::Bytes, Failed> {
    let res = client
        .get()
        .post(url)
        .timeout(ttl)
        .header(reqwest::header::CONTENT_TYPE, RAFT_CONTENT_TYPE)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                Failed::Unreachable(e.to_string())
            } else {
                Failed::Network(e.to_string())
            }
        })?;
    let status = res.status();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| Failed::Network(e.to_string()))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned();
        return Err(Failed::Network(format!("{url} answered {status}: {text}")));
    }
    Ok(bytes)
}

/// An RPC failure as openraft takes it: a peer that could not be reached
/// is not retried at once.
fn rpc_error<E: std::error::Error>(f: Failed) -> typ::RPCError<E> {
    match f {
        Failed::Unreachable(m) => {
            openraft::error::RPCError::Unreachable(Unreachable::new(&RpcFailure(m)))
        }
        Failed::Network(m) => network(&m),
    }
}

/// Sends one batch on the peer's stream (or, to an older peer, as one
/// POST); its answers in order.
async fn exchange(
    to: &To,
    items: Vec<BatchItem>,
    ttl: Duration,
) -> Result<Vec<BatchAnswer>, Failed> {
    let link = to
        .links
        .to(
            &to.addr,
            &to.addr,
            STREAM_PATH,
            || to.client.get(),
            MAX_REPLY,
            ttl,
        )
        .await;
    match link {
        Ok(Some(mux)) => {
            let frame = move |id| crate::stream::encode(&RaftCall { id, items });
            match mux.call(frame, ttl).await {
                Ok(reply) => Ok(reply.answers),
                Err(StreamFailed::NotSent(m)) => Err(Failed::Unreachable(m)),
                Err(StreamFailed::Lost(m)) => Err(Failed::Network(m)),
            }
        }
        Ok(None) => {
            let body = encode(&items).map_err(|e| Failed::Network(e.to_string()))?;
            let url = format!("{}/raft/batch", to.addr);
            let bytes = post(&to.client, &url, body, ttl).await?;
            decode(&bytes).map_err(|e| Failed::Network(e.to_string()))
        }
        // The stream could not be opened: nothing was delivered.
        Err(e) => Err(Failed::Unreachable(e.to_string())),
    }
}

async fn send_batch(to: &To, batch: Vec<Queued>) {
    let ttl = batch.iter().map(|q| q.ttl).max().unwrap_or_default();
    let (items, replies): (Vec<BatchItem>, Vec<_>) =
        batch.into_iter().map(|q| (q.item, q.reply)).unzip();
    let answers = async {
        let answers = exchange(to, items, ttl).await?;
        if answers.len() != replies.len() {
            return Err(Failed::Network("batch answer has the wrong length".into()));
        }
        Ok(answers)
    }
    .await;
    match answers {
        Ok(answers) => {
            for (reply, a) in replies.into_iter().zip(answers) {
                let _ = reply.send(a.map(|b| b.into_vec()).map_err(Failed::Network));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// Connects one group's replica to its peers.
pub(crate) struct Net {
    client: HttpClient,
    batcher: Arc<Batcher>,
    group: u32,
    timing: Timing,
    /// When this replica's Raft core last sent anything to any peer.
    core_sent: Arc<Clock>,
}

/// The group's heartbeat interval and election timeout.
#[derive(Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) heartbeat: Duration,
    pub(crate) election: Duration,
}

impl Net {
    pub(crate) fn new(
        client: HttpClient,
        batcher: Arc<Batcher>,
        group: u32,
        timing: Timing,
    ) -> Net {
        Net {
            client,
            batcher,
            group,
            timing,
            core_sent: Arc::new(Clock::default()),
        }
    }
}

/// A connection to one peer of one group.
pub(crate) struct Peer {
    client: HttpClient,
    batcher: Arc<Batcher>,
    addr: String,
    group: u32,
    target: u64,
    timing: Timing,
    core_sent: Arc<Clock>,
    /// When the core last sent this peer anything.
    sent: Arc<Clock>,
    keep_alive: Option<KeepAlive>,
}

/// Milliseconds on a monotonic clock, shared between tasks.
struct Clock {
    base: Instant,
    ms: std::sync::atomic::AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock {
            base: Instant::now(),
            ms: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Clock {
    fn mark(&self) {
        let now = self.base.elapsed().as_millis() as u64;
        self.ms.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    fn since(&self) -> Duration {
        let at = Duration::from_millis(self.ms.load(std::sync::atomic::Ordering::Relaxed));
        self.base.elapsed().saturating_sub(at)
    }
}

/// Keeps a follower from standing for election while its leader's Raft
/// core is busy on its behalf without sending it anything. openraft 0.9
/// sends a follower that needs a snapshot nothing at all (no heartbeats)
/// while the snapshot is made, sent, and installed — the last chunk is
/// answered only once the follower has installed it. When that takes
/// longer than the follower's election timeout (a large shard, a loaded
/// machine), the follower stands for election, the leader steps down on
/// seeing its term, and the transfer starts over: the follower never
/// catches up. So while the core sends a peer nothing for a heartbeat
/// interval, the peer gets an empty append: the leader's vote, no previous
/// entry, no entries, no commit index. It changes nothing in its log or
/// commit point; it renews the leader's lease, as a heartbeat does. Only
/// while the core is seen sending to some peer within an election timeout:
/// a leader whose core is stuck must lose its followers, not keep them.
struct KeepAlive {
    task: tokio::task::JoinHandle<()>,
}

impl KeepAlive {
    fn start(peer: &Peer, vote: openraft::Vote<u64>) -> Option<KeepAlive> {
        let body = encode(&AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        })
        .ok()?;
        let (batcher, addr, group, timing) = (
            peer.batcher.clone(),
            peer.addr.clone(),
            peer.group,
            peer.timing,
        );
        let (core_sent, sent) = (peer.core_sent.clone(), peer.sent.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(timing.heartbeat);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if sent.since() < timing.heartbeat || core_sent.since() > timing.election {
                    continue;
                }
                let item = BatchItem {
                    group,
                    op: BatchOp::Append,
                    body: body.clone(),
                };
                // The answer tells the leader nothing it needs.
                let _ = batcher.call(&addr, item, timing.heartbeat * 4).await;
            }
        });
        Some(KeepAlive { task })
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    /// Notes that the core sends this peer something; a leader's first
    /// message starts the [`KeepAlive`] of this stream (one per peer and
    /// leadership: openraft makes a new client when it becomes leader).
    fn sending(&mut self, leader_vote: Option<openraft::Vote<u64>>) {
        self.core_sent.mark();
        self.sent.mark();
        if let (None, Some(vote)) = (&self.keep_alive, leader_vote) {
            self.keep_alive = KeepAlive::start(self, vote);
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RpcFailure(String);

impl RaftNetworkFactory<TypeConfig> for Net {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &Member) -> Peer {
        Peer {
            client: self.client.clone(),
            batcher: self.batcher.clone(),
            addr: node.addr.trim_end_matches('/').to_owned(),
            group: self.group,
            target,
            timing: self.timing,
            core_sent: self.core_sent.clone(),
            sent: Arc::new(Clock::default()),
            keep_alive: None,
        }
    }
}

fn network<E: std::error::Error>(e: &dyn std::fmt::Display) -> typ::RPCError<E> {
    openraft::error::RPCError::Network(NetworkError::new(&RpcFailure(e.to_string())))
}

impl Peer {
    /// An append or vote, in the peer's next batch.
    async fn batched<Req, Resp>(
        &self,
        op: BatchOp,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, typ::RPCError>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
    {
        let body = encode(req).map_err(|e| network(&e))?;
        let item = BatchItem {
            group: self.group,
            op,
            body,
        };
        let bytes = self
            .batcher
            .call(&self.addr, item, option.hard_ttl())
            .await
            .map_err(rpc_error)?;
        let answer: Result<Resp, typ::RaftError> = decode(&bytes).map_err(|e| network(&e))?;
        answer.map_err(|e| openraft::error::RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    /// A snapshot chunk, on its own request.
    async fn call<Req, Resp, E>(
        &self,
        op: &str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, typ::RPCError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode(req).map_err(|e| network(&e))?;
        let url = format!("{}/raft/{}/{op}", self.addr, self.group);
        let bytes = post(&self.client, &url, body, option.hard_ttl())
            .await
            .map_err(rpc_error)?;
        let answer: Result<Resp, typ::RaftError<E>> = decode(&bytes).map_err(|e| network(&e))?;
        answer.map_err(|e| openraft::error::RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, typ::RPCError> {
        self.sending(Some(req.vote));
        self.batched(BatchOp::Append, &req, &option).await
    }

    /// One chunk of a snapshot (see [`KeepAlive`] for what else the
    /// follower gets meanwhile).
    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, typ::RPCError<InstallSnapshotError>> {
        self.sending(Some(req.vote));
        self.call("snapshot", &req, &option).await
    }

    /// How long to wait before calling an unreachable peer again: one
    /// heartbeat, not openraft's fixed 500 ms. A replica that comes back
    /// hears from its leader within its election timeout (which may be as
    /// short as 500 ms) instead of standing for election and unseating the
    /// leader with its higher term.
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.timing.heartbeat))
    }

    async fn vote(
        &mut self,
        req: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, typ::RPCError> {
        self.sending(None);
        self.batched(BatchOp::Vote, &req, &option).await
    }
}
