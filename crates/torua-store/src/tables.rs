//! The redb tables of a shard file. Every table a shard uses is defined here.

use redb::TableDefinition;

/// User data: key (UTF-8) → encoded [`crate::Record`].
pub(crate) const DATA: TableDefinition<&str, &[u8]> = TableDefinition::new("data");

/// Shard bookkeeping: name → u64. Names are the `META_*` constants below.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Sum of `key.len() + encoded record len` over all entries of `DATA`.
/// Invariant: updated in the same transaction as every change to `DATA`.
pub(crate) const META_BYTES: &str = "bytes";
/// [`crate::ShardState`] as its numeric code.
pub(crate) const META_STATE: &str = "state";
/// Layout version of this file; bumped when a table's encoding changes.
pub(crate) const META_FORMAT: &str = "format";
/// Current file format.
pub(crate) const FORMAT_VERSION: u64 = 1;
