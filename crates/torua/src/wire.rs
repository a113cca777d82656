//! Types that cross the network between coordinator, nodes and clients,
//! with the original Torua JSON field names.

use serde::{Deserialize, Serialize};
use torua_store::Record;

// What clients read is defined once, with the client.
pub use torua_client::wire::{
    KeyPage, NodeStatus, NodesResponse, ReplicaView, ShardAssignment, ShardsResponse,
};

/// A node as named in `POST /register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node id.
    pub id: String,
    /// URL the node serves on.
    pub addr: String,
}

/// Body of `POST /register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The registering node.
    pub node: NodeInfo,
    /// Shards the node holds (Torua nodes send it; the original's did not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<Vec<u32>>,
    /// The Raft groups the node hosts, with its role in each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupStatus>,
    /// Made when the node's data directory was created: a node that
    /// comes back with a new one lost its data (and its Raft votes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
}

/// A node's view of one shard group it hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// Shard id.
    pub shard: u32,
    /// `leader`, `follower`, `candidate`, `learner` or `stopped`.
    pub role: String,
    /// Raft term.
    pub term: u64,
    /// The leader it knows of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Voting members, by node id.
    pub voters: Vec<String>,
    /// Index of the last entry applied here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<u64>,
}

/// Body of a node's `PUT /shard/{id}/group` (host a replica) and
/// `POST /shard/{id}/group/members` (change the voters, at the leader).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupRequest {
    /// Every member of the group.
    pub members: Vec<NodeInfo>,
    /// Start a new group of `members` here if it has none yet.
    #[serde(default)]
    pub bootstrap: bool,
    /// Reopening a replica the node should already hold: the node's
    /// incarnation it must still have (one that lost its data refuses, so
    /// it never votes in a group it has forgotten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
}

/// `POST /shard/{id}/group/transfer`: hand the leadership over to `to`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransferRequest {
    /// A voter of the group.
    pub to: NodeInfo,
}

/// Body of `POST /shards/assign`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssignRequest {
    /// Shard to move.
    pub shard_id: u32,
    /// Destination node.
    pub node_id: String,
}

/// Body of `POST /broadcast`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BroadcastRequest {
    /// Path on each node, e.g. `/control`.
    pub path: String,
    /// JSON sent as the body.
    #[serde(default)]
    pub payload: serde_json::Value,
}

/// One node's outcome in a broadcast.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BroadcastResult {
    /// Node id.
    pub node_id: String,
    /// Error, when the node did not answer 2xx in time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
}

/// Body of the `POST /broadcast` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BroadcastResponse {
    /// One per node sent to.
    pub results: Vec<BroadcastResult>,
    /// Number of nodes sent to.
    pub sent_to: usize,
}

/// One shard in a node's `GET /info` and `GET /shard/{id}/stats`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Shard id.
    #[serde(rename = "ID")]
    pub id: u32,
    /// Always true until replication exists.
    #[serde(rename = "Primary")]
    pub primary: bool,
    /// `active` or `receiving`.
    #[serde(rename = "State")]
    pub state: String,
    /// Number of keys.
    #[serde(rename = "KeyCount")]
    pub key_count: u64,
    /// Bytes of keys and records.
    #[serde(rename = "ByteSize")]
    pub byte_size: u64,
}

/// Body of a node's `GET /info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfoResponse {
    /// Node id.
    pub node_id: String,
    /// Shards held.
    pub shards: Vec<ShardInfo>,
    /// Number of shards held.
    pub shard_count: usize,
}

/// Body of a node's `PUT /shard/{id}` (open a shard).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenShardRequest {
    /// `active` or `receiving`.
    pub state: String,
    /// Discard any existing copy first.
    #[serde(default)]
    pub reset: bool,
}

// Shard copy stream (little-endian), one frame per entry until the body ends:
//   4 bytes key length K | K bytes key (UTF-8) | 4 bytes record length R | R bytes record (Record v1)
const LEN: usize = size_of::<u32>();

/// Encodes entries for `GET /shard/{id}/export` and `POST /shard/{id}/import`.
pub fn encode_entries(entries: &[(String, Record)]) -> Vec<u8> {
    let size = entries
        .iter()
        .map(|(k, r)| 2 * LEN + k.len() + r.encoded_len())
        .sum();
    let mut out = Vec::with_capacity(size);
    for (k, r) in entries {
        // Keys are ≤ 4 KiB and values ≤ 1 GiB by validation, so both fit in u32.
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        let rec = r.encode();
        out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        out.extend_from_slice(&rec);
    }
    out
}

/// Decodes [`encode_entries`]' output; any malformation is an error.
pub fn decode_entries(mut buf: &[u8]) -> Result<Vec<(String, Record)>, String> {
    fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if buf.len() < n {
            return Err("truncated entry".into());
        }
        let (head, tail) = buf.split_at(n);
        *buf = tail;
        Ok(head)
    }
    fn len(buf: &mut &[u8]) -> Result<usize, String> {
        let b: [u8; LEN] = take(buf, LEN)?.try_into().map_err(|_| "truncated length")?;
        Ok(u32::from_le_bytes(b) as usize)
    }
    let mut out = Vec::new();
    while !buf.is_empty() {
        let klen = len(&mut buf)?;
        let key = std::str::from_utf8(take(&mut buf, klen)?).map_err(|_| "key is not UTF-8")?;
        let rlen = len(&mut buf)?;
        let rec = Record::decode(take(&mut buf, rlen)?).map_err(|e| e.to_string())?;
        out.push((key.to_owned(), rec));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn entries_round_trip(entries in proptest::collection::vec(("\\PC{1,20}", "[a-z/]{0,10}", proptest::collection::vec(any::<u8>(), 0..64)), 0..10)) {
            let entries: Vec<(String, Record)> = entries.into_iter().map(|(k, ct, v)| (k, Record::new(ct, v))).collect();
            prop_assert_eq!(decode_entries(&encode_entries(&entries)), Ok(entries));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_entries(&bytes);
        }
    }
}
