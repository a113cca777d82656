//! Encryption at rest on real nodes: nothing written reaches the disk in
//! plaintext, data keys rotate online, master keys rotate by restart, and
//! a wrong or missing master key stops a node without touching its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use testkit::{eventually, ChildGuard};

use crate::cluster::{write_private, SendJson, TestCluster, WAIT};

const CANARY: &str = "PLAINTEXT-CANARY";
const CANARY_TYPE: &str = "application/x-canary-type";

/// Every file under `dir` and its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn assert_no_plaintext(dir: &Path) {
    let all = files(dir);
    assert!(!all.is_empty());
    for (path, bytes) in all {
        for needle in [CANARY.as_bytes(), CANARY_TYPE.as_bytes()] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} contains plaintext",
                path.display()
            );
        }
    }
}

async fn put_canaries(c: &TestCluster, range: std::ops::Range<usize>) {
    for i in range {
        let r = c
            .http
            .put(c.data_url(&format!("k/{i}")))
            .header("content-type", CANARY_TYPE)
            .body(format!("{CANARY}-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
}

async fn assert_canaries(c: &TestCluster, range: std::ops::Range<usize>) {
    for i in range {
        let r = c
            .http
            .get(c.data_url(&format!("k/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "k/{i}");
        assert_eq!(r.headers()["content-type"], CANARY_TYPE);
        assert_eq!(r.text().await.unwrap(), format!("{CANARY}-{i}"));
    }
}

/// `(shard, data key, key count, resealing)` of every shard on every node.
async fn key_status(c: &TestCluster) -> Vec<(u64, String, u64, bool)> {
    let v: Value = testkit::get_json(&c.http, &format!("{}/admin/keys", c.url())).await;
    let mut out = Vec::new();
    for n in v["nodes"].as_array().unwrap() {
        assert_eq!(n["encrypted"], true, "{n}");
        for s in n["shards"].as_array().unwrap() {
            out.push((
                s["id"].as_u64().unwrap(),
                s["data_key"].as_str().unwrap().to_owned(),
                s["keys"].as_u64().unwrap(),
                s["resealing"].as_bool().unwrap(),
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn no_plaintext_reaches_disk_and_data_keys_rotate_online() {
    let c = TestCluster::start(2, 4).await;
    put_canaries(&c, 0..200).await;
    assert_no_plaintext(c.dir.path());

    let before = key_status(&c).await;
    // Both nodes hold a replica of each of the 4 shards, each with its own data key.
    assert_eq!(before.len(), 8);
    let rotated: Value = c
        .http
        .post(format!("{}/admin/keys/rotate", c.url()))
        .send_json()
        .await;
    assert_eq!(rotated["nodes"].as_array().unwrap().len(), 2, "{rotated}");
    // Writes go on while older values are re-sealed.
    put_canaries(&c, 200..300).await;
    let after = eventually(
        "old values re-sealed and old keys dropped",
        WAIT,
        || async {
            let now = key_status(&c).await;
            now.iter()
                .all(|(_, _, keys, resealing)| *keys == 1 && !resealing)
                .then_some(now)
        },
    )
    .await;
    for ((id, old, _, _), (_, new, _, _)) in before.iter().zip(&after) {
        assert_ne!(old, new, "shard {id} has a new data key");
    }
    assert_canaries(&c, 0..300).await;
    assert_no_plaintext(c.dir.path());

    // Rotation is refused on a node that stores plaintext.
    let mut plain = TestCluster::start_with(0, 2, &[]).await;
    plain.add_node_with("p1", &[("TORUA_ENCRYPTION", "off")]);
    plain.wait_node_ready("p1").await;
    let v: Value = plain
        .http
        .post(format!("{}/admin/keys/rotate", plain.url()))
        .send_json()
        .await;
    assert!(
        v["nodes"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("plaintext")),
        "{v}"
    );
}

/// Starts node `id` with `env` changes and waits for it to exit; returns
/// its exit code and log.
fn start_and_fail(c: &mut TestCluster, id: &str, set: &[(&str, &Path)], unset: &[&str]) -> String {
    let mut cmd = c.node_command(id);
    for (k, v) in set {
        cmd.env(k, v);
    }
    for k in unset {
        cmd.env_remove(k);
    }
    let name = format!("{id}-refused");
    let mut child = ChildGuard::spawn(&name, cmd, c.dir.path());
    let status = child
        .wait_exit(Duration::from_secs(30))
        .expect("node exits");
    assert_eq!(status.code(), Some(2));
    let log = std::fs::read_to_string(c.dir.path().join(format!("{name}.log"))).unwrap();
    std::fs::remove_file(c.dir.path().join(format!("{name}.log"))).unwrap();
    log
}

#[tokio::test]
async fn wrong_or_missing_master_key_stops_the_node_and_master_keys_rotate() {
    let mut c = TestCluster::start(1, 4).await;
    put_canaries(&c, 0..50).await;
    c.stop_node("n1");
    let data = c.dir.path().join("n1");
    let untouched = files(&data);

    let wrong = c.dir.path().join("wrong.key");
    write_private(&wrong, &"cd".repeat(32));
    let log = start_and_fail(&mut c, "n1", &[("TORUA_MASTER_KEY_FILE", &wrong)], &[]);
    assert!(log.contains("not configured"), "{log}");
    let log = start_and_fail(&mut c, "n1", &[], &["TORUA_MASTER_KEY_FILE"]);
    assert!(log.contains("TORUA_MASTER_KEY_FILE is required"), "{log}");
    let mut off = c.node_command("n1");
    off.env("TORUA_ENCRYPTION", "off");
    let mut child = ChildGuard::spawn("n1-off", off, c.dir.path());
    assert_eq!(
        child
            .wait_exit(Duration::from_secs(30))
            .and_then(|s| s.code()),
        Some(2)
    );
    let log = std::fs::read_to_string(c.dir.path().join("n1-off.log")).unwrap();
    assert!(log.contains("no master key is configured"), "{log}");
    let loose = c.dir.path().join("loose.key");
    std::fs::write(&loose, "ab".repeat(32)).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let log = start_and_fail(&mut c, "n1", &[("TORUA_MASTER_KEY_FILE", &loose)], &[]);
    assert!(log.contains("chmod 600"), "{log}");
    let short = c.dir.path().join("short.key");
    write_private(&short, "abcd");
    let log = start_and_fail(&mut c, "n1", &[("TORUA_MASTER_KEY_FILE", &short)], &[]);
    assert!(log.contains("64 hex digits"), "{log}");
    assert!(files(&data) == untouched, "refused starts changed no file");

    // Master-key rotation: start with the new key and the old one as previous...
    let old = c.master_key_file();
    let new = c.dir.path().join("new.key");
    write_private(&new, &"ef".repeat(32));
    let old_s = old.to_str().unwrap().to_owned();
    let new_s = new.to_str().unwrap().to_owned();
    c.add_node_with(
        "n1",
        &[
            ("TORUA_MASTER_KEY_FILE", &new_s),
            ("TORUA_PREVIOUS_MASTER_KEY_FILE", &old_s),
        ],
    );
    c.wait_node_ready("n1").await;
    assert_canaries(&c, 0..50).await;
    c.stop_node("n1");
    // ...after which the new key alone opens the data, and the old alone does not.
    c.add_node_with("n1", &[("TORUA_MASTER_KEY_FILE", &new_s)]);
    c.wait_node_ready("n1").await;
    assert_canaries(&c, 0..50).await;
    c.stop_node("n1");
    let log = start_and_fail(&mut c, "n1", &[("TORUA_MASTER_KEY_FILE", &old)], &[]);
    assert!(log.contains("not configured"), "{log}");
}

/// Issue 18: whoever can write a node's files cannot inject a value. A
/// plaintext record planted in an encrypted shard's file is refused, never
/// sealed into a value: the node holding it stops naming the shard, and
/// the shard's other replicas serve on without it.
#[tokio::test]
async fn issue_18_plaintext_planted_in_an_encrypted_shard_is_refused() {
    let mut c = TestCluster::start(3, 1).await;
    assert_eq!(c.put("real", "v").await, StatusCode::NO_CONTENT);
    c.stop_node("n1");
    let file = c.dir.path().join("n1/shards/0.redb");
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("data");
            let mut t = txn.open_table(def).unwrap();
            let rec = torua_store::Record::new("text/plain", b"planted-value".to_vec());
            t.insert("planted", rec.encode().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let log = start_and_fail(&mut c, "n1", &[], &[]);
    assert!(
        log.contains("shard 0 holds plaintext") && log.contains("TORUA_MIGRATE_PLAINTEXT"),
        "{log}"
    );
    {
        let db = redb::Database::create(&file).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("data");
        let t = txn.open_table(def).unwrap();
        let stored = t.get("planted").unwrap().unwrap().value().to_vec();
        let rec = torua_store::Record::new("text/plain", b"planted-value".to_vec());
        assert_eq!(stored, rec.encode(), "the planted value was not sealed");
    }
    // Control: the other replicas serve the shard, without the planted key.
    let (status, body) = c.get("real").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"v"[..]));
    assert_eq!(c.get("planted").await.0, StatusCode::NOT_FOUND);
}
