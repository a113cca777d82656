//! A snapshot moves a shard through a file: building one and installing
//! one hold a bounded amount of memory, not the shard. Measured as the
//! resident set of this test binary (its own process: nothing else runs).
#![allow(clippy::unwrap_used)]

use torua_store::{Expect, Op, Record, ShardState, ShardStore};

/// A line of `/proc/self/status`, in bytes.
fn status(field: &str) -> usize {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = text.lines().find(|l| l.starts_with(field)).unwrap();
    let kb: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb << 10
}

/// Resident bytes at the highest point of `f`, above where it started
/// (the kernel's high-water mark, reset first).
async fn peak_during<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let base = status("VmRSS:");
    let t = f.await;
    (t, status("VmHWM:").saturating_sub(base))
}

const MIB: usize = 1 << 20;
/// The shard: 80 MiB of values.
const VALUES: usize = 1280;
/// What memory may grow by: redb's page cache of a shard file (8 MiB,
/// `SHARD_CACHE_BYTES`), the snapshot's buffers, and a margin.
const BOUND: usize = 40 << 20;
const VALUE: usize = 64 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn building_and_installing_a_snapshot_hold_far_less_than_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        ShardStore::open(dir.path(), Some(torua_store::MasterKeys::new([5; 32], &[]))).unwrap();
    let from = store.create_shard(1, ShardState::Replicated).await.unwrap();
    for batch in (0..VALUES).collect::<Vec<_>>().chunks(64) {
        let entries = batch
            .iter()
            .map(|&i| {
                let value = vec![(i % 251) as u8; VALUE];
                let r = Record::new("application/octet-stream", value);
                vec![Op::Put(format!("k{i:05}"), r, Expect::Any)]
            })
            .collect();
        from.apply_replicated(entries, b"m".to_vec()).await.unwrap();
    }
    from.flush().await.unwrap();
    let to = store.create_shard(2, ShardState::Replicated).await.unwrap();
    let shard = VALUES * VALUE;

    let ((file, _), built) = peak_during(async { from.snapshot().await.unwrap() }).await;
    let ((), installed) =
        peak_during(async { to.restore(file, b"m".to_vec()).await.unwrap() }).await;
    eprintln!(
        "shard {} MiB; peak growth of the resident set: building {:.1} MiB, installing {:.1} MiB",
        shard / MIB,
        built as f64 / MIB as f64,
        installed as f64 / MIB as f64
    );
    // Whole in memory, the shard alone would be 80 MiB (twice that encoded).
    assert!(built < BOUND, "building held {built} bytes");
    assert!(installed < BOUND, "installing held {installed} bytes");
    // Control: the snapshot carried the whole shard.
    assert_eq!(to.list("", None, 10_000).await.unwrap().len(), VALUES);
    let last = to
        .get(&format!("k{:05}", VALUES - 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last.value, vec![((VALUES - 1) % 251) as u8; VALUE]);
}
