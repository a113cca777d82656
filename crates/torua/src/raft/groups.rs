//! The Raft groups a process hosts: on a node, one per replicated shard
//! it holds; on a coordinator of several, their one group (`docs.rs`).
//!
//! A replicated shard is a [`torua_store::Shard`] in state `replicated`,
//! written only by its group's state machine; its log lives in the
//! process's shared WAL. A node opens groups when the coordinator says so
//! (and again at start for every replicated shard on disk); peers' Raft
//! RPCs arrive through `rpc.rs`, and this process sends its own through
//! [`super::net::Net`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use torua_raft::{raft_id, typ, Change, LogStore, Member, Raft, Request, StateMachine};
use torua_store::{Record, Shard, ShardState, ShardStore};

use super::net::{Batcher, Net, Timing};
use crate::http::ApiError;
use crate::tls::HttpClient;

/// Bytes of one snapshot chunk: snapshots travel in requests this large
/// (the receiving end refuses larger bodies). Small enough that each
/// arrives well within an election timeout on a slow link.
pub(crate) const SNAPSHOT_CHUNK: u64 = 1 << 20;

/// How long a snapshot chunk may take, sent and answered. The answer to
/// the last one waits until the whole shard is installed, so this is long;
/// it stays under the nodes' request deadline (`http::REQUEST_DEADLINE`).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);
const _: () = assert!(SNAPSHOT_TIMEOUT.as_secs() < crate::http::REQUEST_DEADLINE.as_secs());

/// Header naming the node that leads a shard's group, on a 421 answer.
pub const LEADER_HEADER: &str = "x-torua-leader";

/// How long a write or linearizable read waits for its group before
/// answering 503 (a leader cut off from its quorum never commits).
const QUORUM_WAIT: Duration = Duration::from_secs(5);

/// Replicates one entry of shard `id`'s group; answers once it is applied
/// here.
async fn propose(raft: &Raft, id: u32, request: Request) -> Result<torua_raft::Response, Refusal> {
    let res = match tokio::time::timeout(QUORUM_WAIT, raft.client_write(request)).await {
        Ok(r) => r,
        Err(_) => {
            return Err(ApiError::unavailable(
                "outcome_unknown",
                format!(
                    "shard {id}: the write was not confirmed by a quorum in time; it may or may not be applied"
                ),
            )
            .into())
        }
    };
    match res {
        Ok(r) => Ok(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(Refusal::NotLeader(leader_of(&f)))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(ApiError::internal(e).into())
        }
        Err(RaftError::Fatal(e)) => Err(ApiError::unavailable(
            "replica_stopped",
            format!("shard {id}: this replica has stopped: {e}"),
        )
        .into()),
    }
}

/// One hosted group.
#[derive(Clone)]
pub(crate) struct Group {
    pub raft: Raft,
    pub shard: Arc<Shard>,
    log: LogStore,
    batcher: Arc<Batcher>,
    /// Set while this leader hands its leadership over: it takes no
    /// requests, so the target's log can catch up with it.
    handing_over: Arc<AtomicBool>,
    /// When this replica last became leader (by `log_roles`).
    leader_since: Arc<Mutex<Option<Instant>>>,
    /// Raft ids of the members the coordinator named when it opened this
    /// replica: a new replica has no membership until the leader's first
    /// messages bring it, and must accept those.
    announced: Arc<RwLock<BTreeSet<u64>>>,
    /// Linearizable reads, sharing quorum rounds.
    reads: Arc<super::reads::Rounds<Result<(), Refusal>>>,
    /// Writes, sharing log entries.
    writes: Arc<super::writes::Proposals>,
}

/// Every group this node hosts.
pub(crate) struct Groups {
    me: String,
    /// What the groups are, for logs: `shard` (a node's) or `coordinators`.
    kind: &'static str,
    store: Arc<ShardStore>,
    client: HttpClient,
    /// Appends and votes of every group, batched per peer node.
    batcher: Arc<Batcher>,
    config: Arc<openraft::Config>,
    groups: RwLock<BTreeMap<u32, Group>>,
    /// Serializes opening and dropping, which await.
    opening: tokio::sync::Mutex<()>,
}

/// Opens the shard store in `dir` off the runtime (it reads and checks
/// every shard file; its writer tasks start on the runtime).
pub(crate) async fn open_store(
    dir: &std::path::Path,
    master: Option<torua_store::MasterKeys>,
) -> Result<ShardStore, crate::Error> {
    let dir = dir.to_owned();
    let rt = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _g = rt.enter();
        ShardStore::open(&dir, master)
    })
    .await
    .map_err(|e| crate::Error::Config(e.to_string()))?
    .map_err(crate::Error::from)
}

/// A refusal from a group, as the HTTP answer it becomes.
#[derive(Clone)]
pub(crate) enum Refusal {
    /// Another replica leads: 421 with its name; none is known: 503.
    NotLeader(Option<String>),
    /// Anything else.
    Api(ApiError),
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Api(e)
    }
}

impl From<torua_store::StoreError> for Refusal {
    fn from(e: torua_store::StoreError) -> Self {
        Refusal::Api(e.into())
    }
}

impl Refusal {
    /// The error a client sees, and the leader named when another replica
    /// leads (sent in [`LEADER_HEADER`]).
    pub(crate) fn into_parts(self) -> (ApiError, Option<String>) {
        match self {
            Refusal::Api(e) => (e, None),
            // No leader known: an election is under way, or this replica
            // is cut off from its quorum. Nothing was done; retry later.
            Refusal::NotLeader(None) => (
                ApiError::unavailable(
                    "no_leader",
                    "this replica does not lead the shard and knows no leader (an election is under way or it is cut off from its peers); nothing was done",
                ),
                None,
            ),
            Refusal::NotLeader(Some(leader)) => (
                ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "not_leader",
                    format!("this replica does not lead the shard; node `{leader}` does"),
                ),
                Some(leader),
            ),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (e, leader) = self.into_parts();
        let mut res = e.into_response();
        if let Some(v) = leader.and_then(|l| HeaderValue::from_str(&l).ok()) {
            res.headers_mut().insert(LEADER_HEADER, v);
        }
        res
    }
}

fn leader_of(f: &typ::ForwardToLeader) -> Option<String> {
    f.leader_node.as_ref().map(|m| m.name.clone())
}

impl Groups {
    pub(crate) fn new(
        kind: &'static str,
        me: String,
        store: Arc<ShardStore>,
        client: HttpClient,
        timing: crate::config::RaftTiming,
    ) -> Result<Groups, crate::Error> {
        let election = timing.election.as_millis() as u64;
        let config = openraft::Config {
            cluster_name: "torua".into(),
            heartbeat_interval: timing.heartbeat.as_millis() as u64,
            // openraft's followers refuse votes for `election_timeout_max`
            // after the last heartbeat (leader lease), so a first
            // candidacy before then fails and the second one wins: a
            // narrow range keeps failover near two timeouts, not four.
            election_timeout_min: election,
            election_timeout_max: election + election / 4,
            // Bounded append RPCs: at most this many values per request.
            max_payload_entries: 64,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK,
            install_snapshot_timeout: SNAPSHOT_TIMEOUT.as_millis() as u64,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timing.snapshot_logs),
            max_in_snapshot_log_to_keep: timing.logs_kept(),
            ..Default::default()
        }
        .validate()
        .map_err(|e| crate::Error::Config(format!("raft timing: {e}")))?;
        Ok(Groups {
            me,
            kind,
            store,
            batcher: Batcher::new(client.clone()),
            client,
            config: Arc::new(config),
            groups: RwLock::default(),
            opening: tokio::sync::Mutex::new(()),
        })
    }

    /// The group of shard `id`, if this node hosts one.
    pub(crate) fn get(&self, id: u32) -> Option<Group> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// The group of shard `id`, or 404 when this process hosts none.
    pub(crate) fn hosted(&self, id: u32) -> Result<Group, ApiError> {
        self.get(id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "group_not_hosted",
                format!("{} hosts no replica of group {id}", self.me),
            )
        })
    }

    /// Ids of the hosted groups.
    pub(crate) fn ids(&self) -> Vec<u32> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Opens every replicated shard's group (at start).
    pub(crate) async fn open_existing(&self) -> Result<(), ApiError> {
        for shard in self.store.shards() {
            if shard.state() == ShardState::Replicated {
                self.open(shard.id(), None, false).await?;
            }
        }
        Ok(())
    }

    /// Opens shard `id`'s group (creating the replica) whose members, as
    /// the coordinator knows them, are `members`; with `bootstrap` makes it
    /// a new group of those members, unless it already has a membership.
    pub(crate) async fn open(
        &self,
        id: u32,
        members: Option<Vec<Member>>,
        bootstrap: bool,
    ) -> Result<Group, ApiError> {
        let _serial = self.opening.lock().await;
        let group = match self.get(id) {
            Some(g) => g,
            None => {
                let shard = self.store.create_shard(id, ShardState::Replicated).await?;
                let log = LogStore::new(id, self.store.wal().clone());
                let sm = StateMachine::open(shard.clone())
                    .await
                    .map_err(ApiError::internal)?;
                let timing = Timing {
                    heartbeat: Duration::from_millis(self.config.heartbeat_interval),
                    election: Duration::from_millis(self.config.election_timeout_min),
                };
                let net = Net::new(self.client.clone(), self.batcher.clone(), id, timing);
                let raft = Raft::new(raft_id(&self.me), self.config.clone(), net, log.clone(), sm)
                    .await
                    .map_err(ApiError::internal)?;
                let g = Group {
                    raft,
                    shard,
                    log,
                    batcher: self.batcher.clone(),
                    handing_over: Arc::default(),
                    leader_since: Arc::default(),
                    announced: Arc::default(),
                    reads: Arc::default(),
                    writes: Arc::default(),
                };
                self.groups
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(id, g.clone());
                tracing::debug!(kind = self.kind, group = id, node = %self.me, "raft group opened");
                tokio::spawn(log_roles(
                    self.kind,
                    id,
                    g.raft.metrics(),
                    g.leader_since.clone(),
                ));
                g
            }
        };
        if let Some(members) = &members {
            group
                .announced
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .extend(members.iter().map(|m| raft_id(&m.name)));
        }
        if let Some(members) = members.filter(|_| bootstrap) {
            let initialized = group
                .raft
                .is_initialized()
                .await
                .map_err(ApiError::internal)?;
            if !initialized {
                let map: BTreeMap<u64, Member> =
                    members.into_iter().map(|m| (raft_id(&m.name), m)).collect();
                match group.raft.initialize(map).await {
                    Ok(()) => {
                        tracing::debug!(kind = self.kind, group = id, "raft group bootstrapped")
                    }
                    // Another call initialized it meanwhile: fine.
                    Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(ApiError::internal(e)),
                }
            }
        }
        Ok(group)
    }

    /// Stops shard `id`'s group and deletes the replica (log and data).
    pub(crate) async fn drop_group(&self, id: u32) -> Result<bool, ApiError> {
        let _serial = self.opening.lock().await;
        let removed = self
            .groups
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let Some(g) = removed else {
            return Ok(false);
        };
        if let Err(e) = g.raft.shutdown().await {
            tracing::warn!(kind = self.kind, group = id, error = %e, "raft group did not stop cleanly");
        }
        g.log.destroy().await.map_err(ApiError::internal)?;
        drop(g);
        self.store.drop_shard(id).await?;
        tracing::info!(kind = self.kind, group = id, node = %self.me, "raft group dropped");
        Ok(true)
    }
}

impl Group {
    /// Whether the replica with Raft id `id` may send this one Raft
    /// messages: a voter or learner of the group's membership, or a member
    /// the coordinator named when it opened this replica.
    pub(crate) fn knows(&self, id: u64) -> bool {
        let in_membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        in_membership
            || self
                .announced
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
    }

    /// The Raft id of the leader this replica knows of.
    pub(crate) fn current_leader(&self) -> Option<u64> {
        self.raft.metrics().borrow().current_leader
    }

    /// Replicates `changes` through the log (in an entry shared with
    /// concurrent writes, `writes.rs`); answers once a quorum has the entry
    /// durably and it is applied here, with each change's version.
    pub(crate) async fn write(&self, changes: Vec<Change>) -> Result<Vec<u64>, Refusal> {
        self.lead_with_quorum()?;
        let (raft, id) = (self.raft.clone(), self.shard.id());
        let submit = move |request| {
            let raft = raft.clone();
            async move { propose(&raft, id, request).await }
        };
        match self.writes.propose(changes, submit).await? {
            torua_raft::Response::Applied { versions } => Ok(versions),
            torua_raft::Response::Precondition { key, current } => {
                Err(ApiError::from(torua_store::StoreError::Precondition { key, current }).into())
            }
            torua_raft::Response::Invalid { message } => {
                Err(ApiError::bad_request("invalid_input", message).into())
            }
            torua_raft::Response::Each(_) => {
                Err(ApiError::internal("a write was answered for several").into())
            }
        }
    }

    /// Waits until a read here sees every write acknowledged before the
    /// call (ReadIndex: the leader confirms its leadership with a quorum
    /// and this replica applies up to the commit index). Concurrent reads
    /// share the round (`reads.rs`).
    pub(crate) async fn linearize(&self) -> Result<(), Refusal> {
        self.lead_with_quorum()?;
        let (raft, id) = (self.raft.clone(), self.shard.id());
        let round = move || {
            let raft = raft.clone();
            async move { read_index(&raft, id).await }
        };
        self.reads
            .join(round)
            .await
            .unwrap_or_else(|| Err(no_quorum(id).into()))
    }

    /// Refuses at once, rather than waiting, when this replica is not the
    /// leader or has not heard from a quorum for longer than an election
    /// timeout (the minority side of a partition): such a write cannot
    /// commit, so it is certainly not applied.
    fn lead_with_quorum(&self) -> Result<(), Refusal> {
        if self.handing_over.load(Ordering::Acquire) {
            return Err(Refusal::NotLeader(None));
        }
        // Read in place: every request passes here, and a clone of the
        // metrics copies the membership and replication maps.
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state != ServerState::Leader {
            let leader = m.current_leader.and_then(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.name.clone())
            });
            return Err(Refusal::NotLeader(leader));
        }
        let timeout = self.raft.config().election_timeout_max;
        match m.millis_since_quorum_ack {
            Some(ms) if ms <= timeout => Ok(()),
            // A group of one acknowledges itself.
            _ if m.membership_config.membership().voter_ids().count() <= 1 => Ok(()),
            _ => Err(no_quorum(self.shard.id()).into()),
        }
    }

    /// Hands the leadership over to the voter `to` (Raft's leadership
    /// transfer): stop taking requests, wait until `to` has the whole log,
    /// tell it to stand for election now; this leader's vote goes to it
    /// (openraft's followers would refuse it for a while after the last
    /// heartbeat, but a leader's own lease runs from its election). Requests
    /// meanwhile answer `no_leader` and are retried by the coordinator.
    pub(crate) async fn transfer(&self, to: &Member) -> Result<(), Refusal> {
        self.lead_with_quorum()?;
        let target = raft_id(&to.name);
        let m = self.raft.metrics().borrow().clone();
        if m.id == target {
            return Ok(());
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == target)
        {
            return Err(ApiError::bad_request(
                "not_a_voter",
                format!(
                    "{} is not a voter of shard {}'s group",
                    to.name,
                    self.shard.id()
                ),
            )
            .into());
        }
        // A leader elected less than a lease ago would refuse the vote.
        let lease = Duration::from_millis(self.raft.config().election_timeout_max);
        let since = *self.leader_since.lock().unwrap_or_else(|p| p.into_inner());
        if since.is_none_or(|t| t.elapsed() <= lease) {
            return Err(transfer_failed(
                self.shard.id(),
                "this replica became leader too recently; retry",
            ));
        }
        self.handing_over.store(true, Ordering::Release);
        let res = self.hand_over(target, to, lease).await;
        self.handing_over.store(false, Ordering::Release);
        res
    }

    async fn hand_over(&self, target: u64, to: &Member, lease: Duration) -> Result<(), Refusal> {
        let id = self.shard.id();
        let mut metrics = self.raft.metrics();
        let me = metrics.borrow().id;
        let caught_up = |m: &typ::RaftMetrics| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&target).cloned().flatten())
                .map(|l| l.index);
            m.state != ServerState::Leader || matched >= m.last_log_index
        };
        // Writes let in just before requests stopped may still be on their
        // way into the log: the target must have those too, or this
        // leader refuses it its vote.
        let deadline = Instant::now() + lease;
        let mut last_seen = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let last = tokio::time::timeout(left, metrics.wait_for(caught_up))
                .await
                .ok()
                .and_then(|r| r.ok())
                .filter(|m| m.state == ServerState::Leader)
                .map(|m| m.last_log_index);
            let Some(last) = last else {
                return Err(transfer_failed(id, "the target did not catch up in time"));
            };
            if last_seen == Some(last) {
                break;
            }
            last_seen = Some(last);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.batcher
            .timeout_now(&to.addr, id, me)
            .await
            .map_err(|e| transfer_failed(id, &e))?;
        let stepped_down = |m: &typ::RaftMetrics| m.state != ServerState::Leader;
        let done = tokio::time::timeout(lease * 2, metrics.wait_for(stepped_down))
            .await
            .is_ok_and(|r| r.is_ok());
        match done {
            true => Ok(()),
            false => Err(transfer_failed(
                id,
                "the target did not win its election; this replica still leads",
            )),
        }
    }

    /// Makes the group's voters exactly `members`: new ones join as
    /// learners and catch up (snapshot and log) before the switch.
    pub(crate) async fn set_members(&self, members: Vec<Member>) -> Result<(), Refusal> {
        self.lead_with_quorum()?;
        let current = self.raft.metrics().borrow().membership_config.clone();
        for m in &members {
            let id = raft_id(&m.name);
            if current.membership().get_node(&id).is_none() {
                match self.raft.add_learner(id, m.clone(), true).await {
                    Ok(_) => {}
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                        return Err(Refusal::NotLeader(leader_of(&f)))
                    }
                    Err(e) => {
                        return Err(ApiError::unavailable(
                            "membership_change_failed",
                            e.to_string(),
                        )
                        .into())
                    }
                }
            }
        }
        let voters: std::collections::BTreeSet<u64> =
            members.iter().map(|m| raft_id(&m.name)).collect();
        match self
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), false)
            .await
        {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Refusal::NotLeader(leader_of(&f)))
            }
            Err(e) => Err(ApiError::unavailable("membership_change_failed", e.to_string()).into()),
        }
    }

    /// Reads a key from this replica's state (after [`Group::linearize`]
    /// for a linearizable read).
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Record>, ApiError> {
        Ok(self.shard.get(key).await?)
    }

    /// The group's state as the coordinator shows it.
    pub(crate) fn status(&self) -> crate::wire::GroupStatus {
        let m = self.raft.metrics().borrow().clone();
        let name_of = |id: &u64| {
            m.membership_config
                .membership()
                .get_node(id)
                .map(|n| n.name.clone())
        };
        crate::wire::GroupStatus {
            shard: self.shard.id(),
            role: role_name(m.state).into(),
            term: m.current_term,
            leader: m.current_leader.as_ref().and_then(name_of),
            voters: m
                .membership_config
                .membership()
                .voter_ids()
                .filter_map(|id| name_of(&id))
                .collect(),
            last_applied: m.last_applied.map(|l| l.index),
        }
    }
}

/// A replica's role as `/shards` and the logs name it.
fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "stopped",
    }
}

/// Logs this replica's role and known leader as they change (openraft's
/// own logs are kept at `warn`); ends with the group.
async fn log_roles(
    kind: &'static str,
    group: u32,
    mut metrics: tokio::sync::watch::Receiver<typ::RaftMetrics>,
    leader_since: Arc<Mutex<Option<Instant>>>,
) {
    let mut last = None;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            let leader = m.current_leader.and_then(|id| {
                m.membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.name.clone())
            });
            (m.state, leader, m.current_term)
        };
        if last.as_ref().map(|(s, l, _)| (s, l)) != Some((&now.0, &now.1)) {
            let became_leader = now.0 == ServerState::Leader
                && last
                    .as_ref()
                    .is_none_or(|(s, _, _)| *s != ServerState::Leader);
            if became_leader || now.0 != ServerState::Leader {
                *leader_since.lock().unwrap_or_else(|p| p.into_inner()) =
                    became_leader.then(Instant::now);
            }
            let leader = now.1.as_deref().unwrap_or("none");
            tracing::debug!(
                kind,
                group,
                role = role_name(now.0),
                leader,
                term = now.2,
                "raft role"
            );
            last = Some(now);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

fn transfer_failed(shard: u32, why: &str) -> Refusal {
    ApiError::unavailable(
        "transfer_failed",
        format!("shard {shard}: leadership not handed over: {why}"),
    )
    .into()
}

/// One ReadIndex round of `raft` (the group of shard `id`).
async fn read_index(raft: &Raft, id: u32) -> Result<(), Refusal> {
    match tokio::time::timeout(QUORUM_WAIT, raft.ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f)))) => {
            Err(Refusal::NotLeader(leader_of(&f)))
        }
        Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(_))))
        | Err(_) => Err(no_quorum(id).into()),
        Ok(Err(RaftError::Fatal(e))) => Err(ApiError::internal(e).into()),
    }
}

fn no_quorum(shard: u32) -> ApiError {
    ApiError::unavailable(
        "no_quorum",
        format!("shard {shard}: this replica cannot reach a quorum of its group (partitioned or too many replicas down); nothing was written"),
    )
}
