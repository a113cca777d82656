//! What a shard group's log carries and what applying it answers.

use serde::{Deserialize, Serialize};
use torua_store::{Expect, Op, Record, StoreError};

/// A replica: a node, by the name the cluster knows it by, and the base
/// URL its Raft endpoints answer at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's id in the cluster (`NODE_ID`).
    pub name: String,
    /// Base URL of the node's API (`https://host:port`).
    pub addr: String,
}

/// openraft's numeric id for the node named `name`: its 64-bit xxh3.
/// Names are unique in a cluster, and a collision between two of a
/// cluster's few names is negligible (about n²/2⁶⁵).
pub fn raft_id(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

/// What a write expects of its key beforehand (`If-Match`,
/// `If-None-Match`); checked when the entry is applied, identically on
/// every replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// Nothing.
    Any,
    /// The key exists.
    Exists,
    /// The key exists in exactly this version.
    Version(u64),
    /// The key does not exist.
    Absent,
}

impl From<Condition> for Expect {
    fn from(c: Condition) -> Expect {
        match c {
            Condition::Any => Expect::Any,
            Condition::Exists => Expect::Exists,
            Condition::Version(v) => Expect::Version(v),
            Condition::Absent => Expect::Absent,
        }
    }
}

/// One change to one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Store a value.
    Put {
        /// The key.
        key: String,
        /// Its content type.
        content_type: String,
        /// Its bytes (encoded as one byte string: the same postcard bytes
        /// as a sequence of `u8`, without a call per byte).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// What must hold first.
        expect: Condition,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
        /// What must hold first.
        expect: Condition,
    },
    /// Concurrent writes sharing one entry: each one's changes apply all
    /// or none, on their own, in order, and each is answered on its own
    /// ([`Response::Each`]). Only as an entry's one change; nested or
    /// beside other changes it is ignored. (Last, so entries written
    /// before it existed decode as they did.)
    Each(Vec<Vec<Change>>),
}

impl Change {
    /// The key and value bytes it carries.
    pub fn bytes(&self) -> usize {
        match self {
            Change::Put { key, value, .. } => key.len() + value.len(),
            Change::Delete { key, .. } => key.len(),
            Change::Each(writes) => writes.iter().flatten().map(Change::bytes).sum(),
        }
    }
}

/// The payload of a log entry: changes applied together, all or none (or,
/// as one [`Change::Each`], several writes each applied on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The changes, in order.
    pub changes: Vec<Change>,
}

impl std::fmt::Display for Request {
    // Log lines name how much changed, never keys or values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.changes.as_slice() {
            [Change::Each(writes)] => write!(f, "request({} writes)", writes.len()),
            changes => write!(f, "request({} changes)", changes.len()),
        }
    }
}

impl Request {
    /// Several writes in one entry (see [`Change::Each`]).
    pub fn each(writes: Vec<Vec<Change>>) -> Request {
        Request {
            changes: vec![Change::Each(writes)],
        }
    }

    /// The writes it carries, each applied all or none: one, or those of
    /// a [`Change::Each`].
    pub(crate) fn into_writes(self) -> Writes {
        let mut changes = self.changes;
        if let [Change::Each(_)] = changes.as_slice() {
            if let Some(Change::Each(writes)) = changes.pop() {
                return Writes::Each(writes.into_iter().map(ops).collect());
            }
        }
        Writes::One(ops(changes))
    }
}

/// What one entry applies.
pub(crate) enum Writes {
    /// One write.
    One(Vec<Op>),
    /// Independent writes, each answered.
    Each(Vec<Vec<Op>>),
}

fn ops(changes: Vec<Change>) -> Vec<Op> {
    changes
        .into_iter()
        .filter_map(|c| match c {
            Change::Put {
                key,
                content_type,
                value,
                expect,
            } => Some(Op::Put(
                key,
                Record::new(content_type, value),
                expect.into(),
            )),
            Change::Delete { key, expect } => Some(Op::Delete(key, expect.into())),
            Change::Each(_) => None,
        })
        .collect()
}

/// What applying an entry answered. Identical on every replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied: the version each change gave its key (none for entries
    /// that carry no changes).
    Applied {
        /// One per change.
        versions: Vec<u64>,
    },
    /// A condition did not hold; nothing was written.
    Precondition {
        /// The key whose condition failed.
        key: String,
        /// Its version then (`None`: absent).
        current: Option<u64>,
    },
    /// The write breaks a limit (key length, content type); nothing was
    /// written.
    Invalid {
        /// Which limit.
        message: String,
    },
    /// The answers of a [`Change::Each`] entry, one per write, in order.
    Each(Vec<Response>),
}

impl Response {
    /// The answer of an entry that carries no changes.
    pub(crate) fn empty() -> Response {
        Response::Applied { versions: vec![] }
    }

    /// Maps a refused entry to its answer; other errors stay errors.
    pub(crate) fn from_outcome(o: torua_store::Outcome) -> Result<Response, StoreError> {
        match o {
            Ok(versions) => Ok(Response::Applied { versions }),
            Err(StoreError::Precondition { key, current }) => {
                Ok(Response::Precondition { key, current })
            }
            Err(StoreError::Invalid(message)) => Ok(Response::Invalid { message }),
            Err(e) => Err(e),
        }
    }
}
