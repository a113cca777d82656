//! The coordinator's persisted metadata: members and shard placement, in
//! one JSON file replaced atomically ([`crate::persist`]).
//! Health is not persisted: after a restart every node is `unknown` until
//! checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{Replication, DEFAULT_REPLICATION_FACTOR};
use crate::persist::Persisted;
use crate::Error;

const FILE: &str = "cluster.json";
const FORMAT: u32 = 1;

/// Everything the coordinator must not forget.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// File format version.
    pub format: u32,
    /// Number of shards, fixed at creation.
    pub num_shards: u32,
    /// Members by id.
    pub nodes: BTreeMap<String, NodeMeta>,
    /// Placement, indexed by shard id. Invariant: `len() == num_shards`.
    pub shards: Vec<ShardMeta>,
    /// Copies left behind by moves (the source after a move, or the target
    /// of an aborted one), to delete once their node answers.
    #[serde(default)]
    pub pending_drops: BTreeSet<(String, u32)>,
    /// Ids of decommissioned nodes: their registrations are refused, so a
    /// node left running after removal does not slip back in.
    #[serde(default)]
    pub removed: BTreeSet<String>,
    /// Replicas per shard when shards are Raft groups (`None`: one copy,
    /// moved whole). Whether it is set is fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<u32>,
}

/// A member node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMeta {
    /// Advertised URL.
    pub addr: String,
    /// Being decommissioned: its shards move away, it receives none.
    #[serde(default)]
    pub draining: bool,
}

/// Placement of one shard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMeta {
    /// Node serving the shard.
    pub owner: Option<String>,
    /// Node receiving a copy during a move (writes go to both).
    #[serde(default)]
    pub moving_to: Option<String>,
    /// Voting members of the shard's Raft group (replicated clusters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

impl ShardMeta {
    /// Whether `node` serves this shard: owns it, or holds a replica.
    pub fn holds(&self, node: &str) -> bool {
        self.owner.as_deref() == Some(node) || self.replicas.iter().any(|r| r == node)
    }
}

/// Loads the metadata, or creates it for a new cluster. A moving shard
/// found at start-up belongs to a move that died with the previous process:
/// the move is abandoned and its partial copy queued for deletion.
pub fn load_or_create(
    dir: &Path,
    shards: Option<u32>,
    replication: Option<Replication>,
) -> Result<Persisted<Meta>, Error> {
    std::fs::create_dir_all(dir).map_err(|e| meta_err(dir, e))?;
    let path = dir.join(FILE);
    let meta = match std::fs::read(&path) {
        Ok(bytes) => {
            let mut m: Meta = serde_json::from_slice(&bytes).map_err(|e| meta_err(&path, e))?;
            if m.format != FORMAT || m.shards.len() != m.num_shards as usize {
                return Err(meta_err(
                    &path,
                    "unsupported format or inconsistent shard table",
                ));
            }
            if let Some(n) = shards.filter(|n| *n != m.num_shards) {
                return Err(Error::Config(format!(
                    "TORUA_SHARDS is {n} but the cluster in {} was created with {} shards; the shard count cannot change",
                    dir.display(),
                    m.num_shards
                )));
            }
            // The factor of a replicated cluster may change (groups grow or
            // shrink); single-copy and replicated cannot turn into each other.
            match (m.replication, replication) {
                (_, None) => {}
                (Some(_), Some(Replication::Factor(n))) => m.replication = Some(n),
                (None, Some(Replication::Off)) => {}
                (was, Some(_)) => {
                    return Err(Error::Config(format!(
                        "the cluster in {} was created {}; TORUA_REPLICATION_FACTOR must be {} or unset (changing the mode needs a new cluster)",
                        dir.display(),
                        if was.is_some() { "replicated" } else { "in single-copy mode" },
                        if was.is_some() { "a factor from 1 to 7" } else { "`off`" },
                    )));
                }
            }
            for (id, s) in m.shards.iter_mut().enumerate() {
                if let Some(target) = s.moving_to.take() {
                    m.pending_drops.insert((target, id as u32));
                }
            }
            m
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let n = shards.unwrap_or(crate::config::DEFAULT_SHARDS);
            let m = Meta {
                format: FORMAT,
                num_shards: n,
                nodes: BTreeMap::new(),
                shards: vec![ShardMeta::default(); n as usize],
                pending_drops: BTreeSet::new(),
                removed: BTreeSet::new(),
                replication: match replication {
                    Some(Replication::Off) => None,
                    Some(Replication::Factor(n)) => Some(n),
                    None => Some(DEFAULT_REPLICATION_FACTOR),
                },
            };
            Persisted::save_now(&path, &m, false).map_err(|e| meta_err(&path, e))?;
            m
        }
        Err(e) => return Err(meta_err(&path, e)),
    };
    Ok(Persisted::new(path, meta, false))
}

fn meta_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Meta {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
