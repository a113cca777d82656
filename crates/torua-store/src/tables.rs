//! The redb tables of a shard file. Every table a shard uses is defined here.

use redb::TableDefinition;

/// User data: key (UTF-8) → encoded [`crate::Record`].
pub(crate) const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("data");

/// Wrapped data keys: data-key id → the key sealed by the master key
/// (layout in `crypto.rs`). Empty when the shard is not encrypted.
pub(crate) const KEYS: TableDefinition<u32, &[u8]> = TableDefinition::new("keys");

/// Shard bookkeeping: name → u64. Names are the `META_*` constants below.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Sum of `key.len() + encoded record len` over all entries of `DATA`.
/// Invariant: updated in the same transaction as every change to `DATA`.
pub(crate) const META_BYTES: &str = "bytes";
/// [`crate::ShardState`] as its numeric code.
pub(crate) const META_STATE: &str = "state";
/// The shard's revision: the version of its latest write. Every put or
/// delete takes the next one, so versions of a key only grow (no ABA), and
/// copies keep the versions they carry.
pub(crate) const META_REVISION: &str = "revision";
/// Id of the data key new values are sealed with (encrypted shards only).
pub(crate) const META_DATA_KEY: &str = "data_key";
/// Layout version of this file; bumped when a table's encoding changes.
pub(crate) const META_FORMAT: &str = "format";
/// Current file format: 2 adds sealed values and the `keys` table. Files of
/// format 1 (plaintext records only) are read and upgraded in place.
pub(crate) const FORMAT_VERSION: u64 = 2;
/// The plaintext-only format written before encryption existed.
pub(crate) const FORMAT_PLAINTEXT: u64 = 1;

/// Raft log (`wal.rs`, its own file): `(group, index)` → tagged entry.
pub(crate) const WAL_LOG: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("log");
/// Raft log state (`wal.rs`): `(group, name)` → value.
pub(crate) const WAL_STATE: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new("state");

/// Raft state of a replicated shard (in the shard file): name → bytes.
/// Written in the same transaction as the entries it describes.
pub(crate) const RAFT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft");
/// In [`RAFT`]: the last applied log id and membership, as the replication
/// layer encodes them.
pub(crate) const RAFT_APPLIED: &str = "applied";
