//! Durable storage for one Torua node: one redb file per shard.
//!
//! # Brief overview
//!
//! [`ShardStore`] owns a node's data directory and the set of shards the node
//! holds. Each [`Shard`] is one redb file (`shards/<id>.redb`) with its own
//! writer task that *group-commits*: concurrent writes queued while a commit
//! is in flight are applied together in the next transaction and made
//! durable by one fsync. A write is acknowledged only after its transaction
//! committed with [`redb::Durability::Immediate`].
//!
//! Values are stored as versioned [`Record`]s (content type + bytes); the
//! byte layout is documented in `record.rs` where it is encoded. With a
//! [`MasterKeys`], records are sealed at rest with per-shard data keys that
//! the master key wraps, and data keys rotate online (`crypto.rs`).
//!
//! For replication, the node's [`Wal`] is one log file shared by every
//! shard's Raft group (one fsync for all groups' appends), and a shard
//! doubles as its group's state machine: [`Shard::apply_replicated`]
//! records the applied position with the data, [`Shard::snapshot`] and
//! [`Shard::restore`] move whole shards through a [`SnapshotFile`] (streamed,
//! encrypted, never whole in memory). The Raft logic itself lives in
//! `torua-raft`.
//!
//! This crate knows nothing about HTTP, placement or the cluster: it must not
//! depend on axum, reqwest or the `torua` crate.
//!
//! # Example
//! ```
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let dir = tempfile::tempdir()?;
//! let store = torua_store::ShardStore::open(dir.path(), None)?;
//! let shard = store.create_shard(7, torua_store::ShardState::Active).await?;
//! shard.put("greeting".into(), torua_store::Record::new("text/plain", b"hi".to_vec())).await?;
//! assert_eq!(shard.get("greeting").await?.map(|r| r.value), Some(b"hi".to_vec()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod crypto;
mod error;
mod record;
mod shard;
mod snapshot;
mod store;
mod tables;
mod wal;

pub use crypto::MasterKeys;
pub use error::StoreError;
pub use record::Record;
pub use shard::{Expect, KeyStatus, Op, Outcome, Shard, ShardState, ShardStats};
pub use snapshot::SnapshotFile;
pub use store::ShardStore;
pub use wal::{Wal, WalDone, WalWrite};

/// Memory redb may use to cache one shard file's pages. redb's own
/// default is 1 GiB per file, which a node with dozens of shards could
/// reach many times over; reads past it still hit the kernel's page
/// cache. At 32 MiB a node with 8 shards and 1 M keys of 100 B held 3.3×
/// the raw data resident (`bench/memory.sh`, benchmarks.md).
pub(crate) const SHARD_CACHE_BYTES: usize = 8 << 20;

/// Whether `bounds` contain any index. `BTreeMap::range` panics on an
/// inverted range, and openraft may ask for an empty one.
pub fn non_empty(bounds: &(std::ops::Bound<u64>, std::ops::Bound<u64>)) -> bool {
    use std::ops::Bound;
    let start = match bounds.0 {
        Bound::Included(s) => Some(s),
        Bound::Excluded(s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let Some(start) = start else { return false };
    match bounds.1 {
        Bound::Included(e) => start <= e,
        Bound::Excluded(e) => start < e,
        Bound::Unbounded => true,
    }
}

/// Longest key accepted, in bytes (UTF-8).
pub const MAX_KEY_LEN: usize = 4096;
/// Longest content type accepted, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
