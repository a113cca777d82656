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
    /// Replicas `(node, shard)` whose node came back without its data (a
    /// new incarnation) while still a voter of the shard's group: removed
    /// from the group before the node may join it again as a new member,
    /// since a voter that forgot its votes and log could help elect a
    /// leader missing committed writes.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub rejoining: BTreeSet<(String, u32)>,
    /// Shards placed by hand (`/shards/assign`): rebalancing prefers to
    /// leave them where they are.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub pinned: BTreeSet<u32>,
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
    /// The incarnation it last registered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incarnation: Option<String>,
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

impl Meta {
    /// Node `id` with its registered address, to call it.
    pub fn node_info(&self, id: &str) -> Option<crate::wire::NodeInfo> {
        self.nodes.get(id).map(|n| crate::wire::NodeInfo {
            id: id.to_owned(),
            addr: n.addr.clone(),
        })
    }
}

impl ShardMeta {
    /// Whether `node` serves this shard: owns it, or holds a replica.
    pub fn holds(&self, node: &str) -> bool {
        self.owner.as_deref() == Some(node) || self.replicas.iter().any(|r| r == node)
    }
}

/// The name of the placement document in the coordinators' group.
const DOC: &str = "cluster";

/// A new cluster's metadata.
fn new_meta(shards: Option<u32>, replication: Option<Replication>) -> Meta {
    let n = shards.unwrap_or(crate::config::DEFAULT_SHARDS);
    Meta {
        format: FORMAT,
        num_shards: n,
        nodes: BTreeMap::new(),
        shards: vec![ShardMeta::default(); n as usize],
        pending_drops: BTreeSet::new(),
        removed: BTreeSet::new(),
        rejoining: BTreeSet::new(),
        pinned: BTreeSet::new(),
        replication: match replication {
            Some(Replication::Off) => None,
            Some(Replication::Factor(n)) => Some(n),
            None => Some(DEFAULT_REPLICATION_FACTOR),
        },
    }
}

/// Checks stored metadata against the settings (`place` names where it
/// is kept), and takes a new replication factor.
fn check(
    m: &mut Meta,
    place: &str,
    shards: Option<u32>,
    replication: Option<Replication>,
) -> Result<(), Error> {
    if m.format != FORMAT || m.shards.len() != m.num_shards as usize {
        return Err(Error::Meta {
            path: place.to_owned(),
            message: "unsupported format or inconsistent shard table".into(),
        });
    }
    if let Some(n) = shards.filter(|n| *n != m.num_shards) {
        return Err(Error::Config(format!(
            "TORUA_SHARDS is {n} but the cluster in {place} was created with {} shards; the shard count cannot change",
            m.num_shards
        )));
    }
    // The factor of a replicated cluster may change (groups grow or
    // shrink); single-copy and replicated cannot turn into each other.
    match (m.replication, replication) {
        (_, None) => Ok(()),
        (Some(_), Some(Replication::Factor(n))) => {
            m.replication = Some(n);
            Ok(())
        }
        (None, Some(Replication::Off)) => Ok(()),
        (was, Some(_)) => Err(Error::Config(format!(
            "the cluster in {place} was created {}; TORUA_REPLICATION_FACTOR must be {} or unset (changing the mode needs a new cluster)",
            if was.is_some() { "replicated" } else { "in single-copy mode" },
            if was.is_some() { "a factor from 1 to 7" } else { "`off`" },
        ))),
    }
}

/// Reads the metadata file in `dir`, if there is one.
fn read_file(dir: &Path) -> Result<Option<Meta>, Error> {
    let path = dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| meta_err(&path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(meta_err(&path, e)),
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
    let meta = match read_file(dir)? {
        Some(mut m) => {
            check(&mut m, &dir.display().to_string(), shards, replication)?;
            for (id, s) in m.shards.iter_mut().enumerate() {
                if let Some(target) = s.moving_to.take() {
                    m.pending_drops.insert((target, id as u32));
                }
            }
            m
        }
        None => {
            let m = new_meta(shards, replication);
            Persisted::save_now(&path, &m, false).map_err(|e| meta_err(&path, e))?;
            m
        }
    };
    Ok(Persisted::new(path, meta, false))
}

/// The metadata of a cluster with several coordinators, from their group.
/// The group's first coordinator seeds it from `dir`'s file when it has
/// one (a lone coordinator turned into several), else creates it.
pub(crate) async fn load_replicated(
    docs: std::sync::Arc<crate::raft::docs::Docs>,
    dir: &Path,
    shards: Option<u32>,
    replication: Option<Replication>,
) -> Result<Persisted<Meta>, Error> {
    let (meta, _) = Persisted::replicated(docs, DOC, || {
        Ok(match read_file(dir)? {
            Some(m) => m,
            None => new_meta(shards, replication),
        })
    })
    .await?;
    let mut m = meta.snapshot().map_err(|e| Error::Config(e.message))?;
    check(&mut m, "the coordinators' group", shards, replication)?;
    if m.replication.is_none() {
        return Err(Error::Config(
            "TORUA_COORDINATOR_PEERS needs a replicated cluster; this one runs in single-copy mode (TORUA_REPLICATION_FACTOR=off)".into(),
        ));
    }
    let factor = m.replication;
    meta.update(|x| {
        x.replication = factor;
        Ok(())
    })
    .await
    .map_err(|e| Error::Config(e.message))?;
    Ok(meta)
}

fn meta_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Meta {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
