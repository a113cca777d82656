//! Replicated shards (`TORUA_REPLICATION_FACTOR`): every shard a Raft
//! group; writes survive the loss of a leader, and lost replicas are
//! re-created on another node.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use testkit::eventually;

use super::cluster::TestCluster;

const WAIT: Duration = Duration::from_secs(60);
/// Fast elections for tests (production defaults: 200ms / 1s).
const RAFT: &[(&str, &str)] = &[
    ("TORUA_RAFT_HEARTBEAT", "100ms"),
    ("TORUA_RAFT_ELECTION_TIMEOUT", "500ms"),
];

/// A replicated cluster of `n` nodes; returns once every shard has a
/// leader and `min(n, 3)` replicas whose roles are known.
async fn start(n: usize, shards: u32) -> TestCluster {
    let mut c = TestCluster::start_with(
        0,
        shards,
        &[
            ("TORUA_REPLICATION_FACTOR", "3"),
            ("TORUA_REPLICA_TIMEOUT", "2s"),
        ],
    )
    .await;
    for i in 1..=n {
        c.add_node_with(&format!("n{i}"), RAFT);
    }
    settled(&c, n.min(3), None).await;
    c.wait_ready().await;
    c
}

/// Waits until every shard has `replicas` voters (none on `without`), a
/// leader, and only leaders and followers.
async fn settled(c: &TestCluster, replicas: usize, without: Option<&str>) {
    eventually(
        &format!("every shard led, with {replicas} replicas"),
        WAIT,
        || async {
            let map = c.shard_map().await;
            map.shards
                .iter()
                .all(|s| {
                    let roles: Vec<&str> = s.replicas.iter().map(|r| r.role.as_str()).collect();
                    s.replicas.len() == replicas
                        && !s.node_id.is_empty()
                        && Some(s.node_id.as_str()) != without
                        && s.replicas
                            .iter()
                            .all(|r| Some(r.node_id.as_str()) != without)
                        && roles.iter().filter(|r| **r == "leader").count() == 1
                        && roles.iter().all(|r| *r == "leader" || *r == "follower")
                })
                .then_some(())
        },
    )
    .await
}

/// Keys held by node `id` over all its shards.
async fn keys_on(c: &TestCluster, id: &str) -> u64 {
    c.node_info(id)
        .await
        .shards
        .iter()
        .map(|s| s.key_count)
        .sum()
}

#[tokio::test]
async fn writes_survive_a_killed_leader_and_every_replica_has_them() {
    let mut c = start(3, 4).await;
    for i in 0..20 {
        assert_eq!(
            c.put(&format!("k{i}"), format!("v{i}")).await,
            StatusCode::NO_CONTENT
        );
    }
    // Every node holds a replica of every shard, with every key.
    for id in ["n1", "n2", "n3"] {
        eventually(&format!("{id} has all keys"), WAIT, || async {
            (keys_on(&c, id).await == 20).then_some(())
        })
        .await;
    }
    // A follower may answer a stale read, and says so.
    let res = c
        .http
        .get(format!("{}?consistency=stale", c.data_url("k3")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-torua-consistency"], "stale");
    assert_eq!(res.bytes().await.unwrap(), "v3");
    let res = c
        .http
        .get(format!("{}?consistency=sometimes", c.data_url("k3")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);

    // Conditional writes hold through the log.
    let res = c
        .http
        .put(c.data_url("k0"))
        .header("if-none-match", "*")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);

    let map = c.shard_map().await;
    let victim = map.shards[0].node_id.clone();
    c.kill_node(&victim);
    let killed = Instant::now();
    // Every shard it led gets a new leader; writes to all keys go through.
    for i in 0..20 {
        let key = format!("k{i}");
        eventually(&format!("write {key} after the kill"), WAIT, || async {
            (c.put(&key, format!("w{i}")).await == StatusCode::NO_CONTENT).then_some(())
        })
        .await;
    }
    eprintln!(
        "failover: all 20 keys writable {:?} after SIGKILL of {victim}",
        killed.elapsed()
    );
    for i in 0..20 {
        let (status, body) = c.get(&format!("k{i}")).await;
        assert_eq!((status, body), (StatusCode::OK, format!("w{i}").into()));
    }
    let map = c.shard_map().await;
    assert!(map
        .shards
        .iter()
        .all(|s| s.node_id != victim && !s.node_id.is_empty()));
    // Two of three replicas alive: still ready, still three voters (a
    // replica that is only down is replaced, never dropped).
    c.wait_ready().await;
    assert!(map.shards.iter().all(|s| s.replicas.len() == 3));

    // The killed node comes back and catches up on what it missed.
    c.add_node_with(&victim, RAFT);
    c.wait_node_ready(&victim).await;
    eventually(&format!("{victim} caught up"), WAIT, || async {
        let (status, body) = c.get("k7").await;
        (status == StatusCode::OK && body == "w7" && keys_on(&c, &victim).await == 20).then_some(())
    })
    .await;
    settled(&c, 3, None).await;
}

#[tokio::test]
async fn a_dead_nodes_replicas_are_recreated_elsewhere() {
    let mut c = start(4, 4).await;
    for i in 0..12 {
        assert_eq!(c.put(&format!("r{i}"), "v").await, StatusCode::NO_CONTENT);
    }
    // The node with the most replicas goes away for good.
    let map = c.shard_map().await;
    let victim = ["n1", "n2", "n3", "n4"]
        .into_iter()
        .max_by_key(|n| {
            map.shards
                .iter()
                .filter(|s| s.replicas.iter().any(|r| r.node_id == *n))
                .count()
        })
        .unwrap();
    c.kill_node(victim);
    // After the replica timeout, each of its replicas moves to a live node
    // (learner, catch-up by snapshot and log, then voter).
    settled(&c, 3, Some(victim)).await;
    let map = c.shard_map().await;
    for n in ["n1", "n2", "n3", "n4"]
        .into_iter()
        .filter(|n| *n != victim)
    {
        let hosted = map
            .shards
            .iter()
            .filter(|s| s.replicas.iter().any(|r| r.node_id == n))
            .count();
        assert!(hosted >= 3, "{n} hosts {hosted} of 4 shards");
    }
    for i in 0..12 {
        let (status, body) = c.get(&format!("r{i}")).await;
        assert_eq!((status, body), (StatusCode::OK, "v".into()));
    }
    let ready: serde_json::Value = c
        .http
        .get(format!("{}/ready", c.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["under_replicated"], 0, "{ready}");
}
