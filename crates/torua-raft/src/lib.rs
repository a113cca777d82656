//! Replication for Torua: every shard is a Raft group (openraft 0.9).
//!
//! # Brief overview
//!
//! [`TypeConfig`] fixes openraft's types: a log entry carries a
//! [`Request`] (the changes of one client write, applied all or nothing),
//! and applying it yields a [`Response`] (the versions the keys took, or
//! why the write was refused). Replicas are [`Member`]s, named as the
//! cluster names its nodes; [`raft_id`] turns a name into openraft's
//! numeric id.
//!
//! Storage is the node's: [`LogStore`] keeps a group's log in the node's
//! shared [`torua_store::Wal`], so the appends of every group on a node are
//! made durable by one fsync per batch; [`StateMachine`] applies committed
//! entries to the group's [`torua_store::Shard`], recording the applied
//! position in the same transaction, and builds or installs snapshots of
//! the whole shard, streamed through a file ([`torua_store::SnapshotFile`]).
//!
//! This crate knows nothing of HTTP: the network between replicas, and
//! which nodes hold which groups, belong to the `torua` crate.
#![deny(missing_docs)]
// openraft's trait signatures return its `StorageError`, which is large.
#![allow(clippy::result_large_err)]

mod log;
mod sm;
mod types;

pub use log::{LogStore, MAX_APPEND_BYTES};
pub use sm::StateMachine;
pub use types::{raft_id, Change, Condition, Member, Request, Response};

openraft::declare_raft_types!(
    /// openraft's types for a Torua shard group.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = torua_store::SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A shard's Raft instance.
pub type Raft = openraft::Raft<TypeConfig>;

/// openraft's generic types, bound to [`TypeConfig`].
pub mod typ {
    use super::{Member, TypeConfig};

    /// Node id.
    pub type NodeId = u64;
    /// A log entry.
    pub type Entry = openraft::Entry<TypeConfig>;
    /// Errors of storage calls.
    pub type StorageError = openraft::StorageError<NodeId>;
    /// A log position.
    pub type LogId = openraft::LogId<NodeId>;
    /// A Raft API error.
    pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
    /// A failed RPC to another replica.
    pub type RPCError<E = openraft::error::Infallible> =
        openraft::error::RPCError<NodeId, Member, RaftError<E>>;
    /// Why a client write failed.
    pub type ClientWriteError = openraft::error::ClientWriteError<NodeId, Member>;
    /// Why a linearizable read could not be confirmed.
    pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<NodeId, Member>;
    /// Where to send a request this replica cannot serve.
    pub type ForwardToLeader = openraft::error::ForwardToLeader<NodeId, Member>;
    /// Why initializing a group failed.
    pub type InitializeError = openraft::error::InitializeError<NodeId, Member>;
    /// Answer to a successful client write.
    pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
    /// A group's metrics.
    pub type RaftMetrics = openraft::RaftMetrics<NodeId, Member>;
    /// Raft's AppendEntries.
    pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
    /// Raft's RequestVote.
    pub type VoteRequest = openraft::raft::VoteRequest<NodeId>;
    /// Raft's InstallSnapshot.
    pub type InstallSnapshotRequest = openraft::raft::InstallSnapshotRequest<TypeConfig>;
    /// Membership as recorded with its log id.
    pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
}

/// Encodes what the log and the network carry (postcard: compact, and
/// values stay raw bytes).
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(value)
}

/// Decodes what [`encode`] wrote.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

#[cfg(test)]
mod tests;
