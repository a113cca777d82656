use std::io;

/// Everything that can go wrong in a node's storage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed (I/O error, corruption detected by redb, …).
    #[error("storage engine: {0}")]
    Engine(#[from] redb::Error),
    /// A file-system operation on the data directory failed.
    #[error("data directory: {0}")]
    Io(#[from] io::Error),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
    /// The shard was dropped or the node is shutting down.
    #[error("shard {0} is closed")]
    Closed(u32),
    /// Encryption at rest failed: a wrong or missing master key, or a
    /// value that fails authentication. The message names the shard.
    #[error("{0}")]
    Crypto(String),
    /// The key or content type breaks a limit; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// A conditional write's expectation did not hold; nothing was written.
    #[error("precondition failed for `{key}`: {}", match .current { Some(v) => format!("its version is {v}"), None => "it does not exist".into() })]
    Precondition {
        /// The key.
        key: String,
        /// Its version now (`None`: absent).
        current: Option<u64>,
    },
}

// redb splits its errors per operation; all of them funnel into `redb::Error`.
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Engine(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
