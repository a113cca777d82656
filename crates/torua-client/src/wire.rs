//! The JSON bodies a client reads, with the original Torua field names.

use serde::{Deserialize, Serialize};

/// One entry of `GET /nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node id.
    pub id: String,
    /// Node URL.
    pub addr: String,
    /// `healthy`, `unhealthy` or `unknown`.
    pub status: String,
    /// RFC 3339 time of the last health check, if any.
    pub last_health_check: Option<String>,
    /// `active` or `draining` (being decommissioned).
    #[serde(default)]
    pub state: String,
    /// Number of shards the node owns.
    #[serde(default)]
    pub shard_count: usize,
}

/// Body of `GET /nodes`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodesResponse {
    /// Every registered node.
    pub nodes: Vec<NodeStatus>,
}

/// One entry of `GET /shards`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardAssignment {
    /// Shard id.
    #[serde(rename = "ShardID")]
    pub shard_id: u32,
    /// Owning node, or the leader of a replicated shard's group ("" when
    /// unassigned or no leader is known).
    #[serde(rename = "NodeID")]
    pub node_id: String,
    /// True: `NodeID` is the copy that serves writes.
    #[serde(rename = "IsPrimary")]
    pub is_primary: bool,
    /// Node the shard is being moved to, if a move is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moving_to: Option<String>,
    /// Every replica of a replicated shard and its role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaView>,
}

/// One replica in `GET /shards`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaView {
    /// Node id.
    pub node_id: String,
    /// `leader`, `follower`, `candidate`, `learner`, `stopped`, or
    /// `unknown` (not reported yet).
    pub role: String,
}

/// Body of `GET /shards`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardsResponse {
    /// Total number of shards.
    pub num_shards: u32,
    /// Every shard, ordered by id.
    pub shards: Vec<ShardAssignment>,
}

/// A page of keys (`GET /data?…`, `GET /shard/{id}/store?…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyPage {
    /// Keys in ascending byte order.
    pub keys: Vec<String>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}
