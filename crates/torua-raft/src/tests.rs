#![allow(clippy::unwrap_used, clippy::expect_used)]

use openraft::testing::{StoreBuilder, Suite};
use torua_store::{ShardState, ShardStore};

use crate::typ::StorageError;
use crate::{LogStore, StateMachine, TypeConfig};

/// Fresh stores for the suite; `sealed` turns encryption at rest on (log
/// entries, vote and values sealed under a master key).
struct Builder {
    sealed: bool,
}

fn io(e: impl std::error::Error + 'static) -> StorageError {
    openraft::StorageIOError::write(&e).into()
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, (tempfile::TempDir, ShardStore)> for Builder {
    async fn build(
        &self,
    ) -> Result<((tempfile::TempDir, ShardStore), LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().map_err(io)?;
        let master = self
            .sealed
            .then(|| torua_store::MasterKeys::new([7; 32], &[]));
        let store = ShardStore::open(dir.path(), master).map_err(io)?;
        let shard = store
            .create_shard(5, ShardState::Active)
            .await
            .map_err(io)?;
        let log = LogStore::new(5, store.wal().clone());
        let sm = StateMachine::open(shard).await?;
        Ok(((dir, store), log, sm))
    }
}

/// openraft's conformance suite for log stores and state machines.
#[test]
fn openraft_storage_suite() -> Result<(), StorageError> {
    Suite::test_all(Builder { sealed: false })
}

/// The same suite with encryption at rest, as nodes run by default.
#[test]
fn openraft_storage_suite_on_an_encrypted_store() -> Result<(), StorageError> {
    Suite::test_all(Builder { sealed: true })
}

/// A replica that joins late applies a batch mixing membership, blank and
/// normal entries; each entry gets its own answer, in order.
#[tokio::test]
async fn mixed_batches_apply_in_order() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Membership};
    let dir = tempfile::tempdir().unwrap();
    let store =
        ShardStore::open(dir.path(), Some(torua_store::MasterKeys::new([1; 32], &[]))).unwrap();
    let shard = store.create_shard(0, ShardState::Replicated).await.unwrap();
    let mut sm = StateMachine::open(shard.clone()).await.unwrap();
    let id = |i| LogId::new(CommittedLeaderId::new(1, 7), i);
    let put = |k: &str| crate::Request {
        changes: vec![crate::Change::Put {
            key: k.into(),
            content_type: "t".into(),
            value: b"v".to_vec(),
            expect: crate::Condition::Any,
        }],
    };
    let m = Membership::<u64, crate::Member>::new(vec![[7u64].into()], None);
    let entries = vec![
        crate::typ::Entry {
            log_id: id(1),
            payload: EntryPayload::Membership(m.clone()),
        },
        crate::typ::Entry {
            log_id: id(2),
            payload: EntryPayload::Blank,
        },
        crate::typ::Entry {
            log_id: id(3),
            payload: EntryPayload::Normal(put("a")),
        },
        crate::typ::Entry {
            log_id: id(4),
            payload: EntryPayload::Membership(m),
        },
        crate::typ::Entry {
            log_id: id(5),
            payload: EntryPayload::Normal(put("b")),
        },
    ];
    let out = sm.apply(entries).await.unwrap();
    assert_eq!(out.len(), 5);
    assert_eq!(out[2], crate::Response::Applied { versions: vec![1] });
    assert_eq!(out[4], crate::Response::Applied { versions: vec![2] });
    assert_eq!(shard.get("b").await.unwrap().map(|r| r.version), Some(2));
}

/// Writes sharing an entry apply each on its own: one whose condition
/// fails leaves the others applied, and each gets its own answer.
#[tokio::test]
async fn writes_sharing_an_entry_apply_and_answer_each_on_their_own() {
    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    let dir = tempfile::tempdir().unwrap();
    let store = ShardStore::open(dir.path(), None).unwrap();
    let shard = store.create_shard(0, ShardState::Replicated).await.unwrap();
    let mut sm = StateMachine::open(shard.clone()).await.unwrap();
    let put = |k: &str, expect| crate::Change::Put {
        key: k.into(),
        content_type: "t".into(),
        value: b"v".to_vec(),
        expect,
    };
    let each = crate::Request::each(vec![
        vec![put("a", crate::Condition::Any)],
        // Fails: all of this write is left out, none of the others.
        vec![
            put("b", crate::Condition::Any),
            put("c", crate::Condition::Exists),
        ],
        vec![
            put("d", crate::Condition::Absent),
            crate::Change::Delete {
                key: "a".into(),
                expect: crate::Condition::Version(1),
            },
        ],
    ]);
    let entries = vec![crate::typ::Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 7), 1),
        payload: EntryPayload::Normal(each),
    }];
    let out = sm.apply(entries).await.unwrap();
    assert_eq!(
        out,
        vec![crate::Response::Each(vec![
            crate::Response::Applied { versions: vec![1] },
            crate::Response::Precondition {
                key: "c".into(),
                current: None
            },
            // Versions count the shard's writes; the refused one took none.
            crate::Response::Applied {
                versions: vec![2, 3]
            },
        ])]
    );
    assert!(shard.get("a").await.unwrap().is_none());
    assert!(shard.get("b").await.unwrap().is_none());
    assert!(shard.get("d").await.unwrap().is_some());
}

#[test]
fn appends_are_bounded_in_bytes_but_never_empty() {
    use openraft::{CommittedLeaderId, EntryPayload, LogId};
    let entry = |i, size: usize| crate::typ::Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 7), i),
        payload: EntryPayload::Normal(crate::Request {
            changes: vec![crate::Change::Put {
                key: "k".into(),
                content_type: "t".into(),
                value: vec![0; size],
                expect: crate::Condition::Any,
            }],
        }),
    };
    let small: Vec<_> = (1..=64).map(|i| entry(i, 100)).collect();
    assert_eq!(crate::log::within(&small, 1 << 20), 64);
    let big: Vec<_> = (1..=3).map(|i| entry(i, 600 << 10)).collect();
    assert_eq!(crate::log::within(&big, 1 << 20), 1);
    let huge = vec![entry(1, 4 << 20), entry(2, 10)];
    assert_eq!(
        crate::log::within(&huge, 1 << 20),
        1,
        "one entry goes alone"
    );
    assert_eq!(crate::log::within(&[], 1 << 20), 0);
}
