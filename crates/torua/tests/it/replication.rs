//! Replicated shards (`TORUA_REPLICATION_FACTOR`): every shard a Raft
//! group; writes survive the loss of a leader, and lost replicas are
//! re-created on another node.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use testkit::eventually;

use super::cluster::{error_code, Options, TestCluster};

const WAIT: Duration = Duration::from_secs(60);
/// Fast elections for tests (production defaults: 200ms / 1s).
const RAFT: &[(&str, &str)] = &[
    ("TORUA_RAFT_HEARTBEAT", "100ms"),
    ("TORUA_RAFT_ELECTION_TIMEOUT", "500ms"),
];

/// A replicated cluster of `n` nodes; returns once every shard has a
/// leader and `min(n, 3)` replicas whose roles are known.
async fn start(n: usize, shards: u32) -> TestCluster {
    start_in(n, shards, false, "2s").await
}

/// Like `start`; with `lab`, every node on a network-namespace host of its
/// own (so links can be cut). Replicas of a node down longer than
/// `replica_timeout` are replaced.
pub async fn start_in(n: usize, shards: u32, lab: bool, replica_timeout: &str) -> TestCluster {
    let opts = Options {
        coordinator_env: &[
            ("TORUA_REPLICATION_FACTOR", "3"),
            ("TORUA_REPLICA_TIMEOUT", replica_timeout),
        ],
        node_env: RAFT,
        lab,
        ..Options::default()
    };
    let mut c = TestCluster::launch(0, shards, opts).await;
    for i in 1..=n {
        c.add_node(&format!("n{i}"));
    }
    settled(&c, n.min(3), None).await;
    c.wait_ready().await;
    c
}

/// Waits until every shard has `replicas` voters (none on `without`), a
/// leader, and only leaders and followers.
pub async fn settled(c: &TestCluster, replicas: usize, without: Option<&str>) {
    c.wait_settled(replicas, without).await
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

/// `key` as node `id`'s replica holds it (its own copy, not the leader's),
/// or None when it has no such key or cannot answer.
async fn stale_read(c: &TestCluster, id: &str, key: &str) -> Option<Vec<u8>> {
    let shard = torua::placement::shard_for_key(key, c.shards);
    let url = format!(
        "{}/shard/{shard}/store/{}?consistency=stale",
        c.node_url(id),
        torua::http::extract::encode_key(key)
    );
    let res = c.http.get(url).send().await.ok()?;
    if res.status() != StatusCode::OK {
        return None;
    }
    Some(res.bytes().await.ok()?.to_vec())
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
    // Every shard it led gets a new leader; writes to all keys go through,
    // and new keys are added while it is down.
    for i in 0..20 {
        let key = format!("k{i}");
        eventually(&format!("write {key} after the kill"), WAIT, || async {
            (c.put(&key, format!("w{i}")).await == StatusCode::NO_CONTENT).then_some(())
        })
        .await;
    }
    for i in 0..10 {
        assert_eq!(c.put(&format!("new{i}"), "n").await, StatusCode::NO_CONTENT);
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

    // The killed node comes back and catches up on what it missed: read
    // from it alone (stale reads are served by the replica asked), it has
    // every overwrite and every key added while it was down.
    c.add_node(&victim);
    c.wait_node_ready(&victim).await;
    let missed: Vec<(String, String)> = (0..20)
        .map(|i| (format!("k{i}"), format!("w{i}")))
        .chain((0..10).map(|i| (format!("new{i}"), "n".to_owned())))
        .collect();
    eventually(&format!("{victim} caught up"), WAIT, || async {
        for (key, value) in &missed {
            if stale_read(&c, &victim, key).await.as_deref() != Some(value.as_bytes()) {
                return None;
            }
        }
        (keys_on(&c, &victim).await == 30).then_some(())
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
    let ready: serde_json::Value = testkit::get_json(&c.http, &format!("{}/ready", c.url())).await;
    assert_eq!(ready["under_replicated"], 0, "{ready}");
}

#[tokio::test]
async fn a_partitioned_minority_refuses_writes_and_loses_nothing() {
    let mut c = start_in(3, 2, true, "60s").await;
    let key = "split/k";
    assert_eq!(c.put(key, "before").await, StatusCode::NO_CONTENT);
    let shard = torua::placement::shard_for_key(key, c.shards);
    let old = c.shard_map().await.shards[shard as usize].node_id.clone();
    let direct = format!(
        "{}/shard/{shard}/store/{}",
        c.node_url(&old),
        torua::http::extract::encode_key(key)
    );

    // The leader is cut off from its peers (the coordinator still reaches
    // it). Asked directly, it refuses with 503 once an election timeout
    // has passed without a quorum's ack, and never acknowledges.
    c.lab().isolate(&old, false);
    let refused = eventually("the cut-off leader refuses writes", WAIT, || async {
        let res = c.http.put(&direct).body("minority").send().await.unwrap();
        let (status, code, _) = error_code(res).await;
        assert_ne!(
            status,
            StatusCode::NO_CONTENT,
            "the minority acknowledged a write"
        );
        (status == StatusCode::SERVICE_UNAVAILABLE && (code == "no_quorum" || code == "no_leader"))
            .then_some(code)
    })
    .await;
    // Nor does it serve a linearizable read.
    let (status, code, _) = error_code(c.http.get(&direct).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{code}");

    // The majority elects a new leader; through the coordinator, writes
    // and reads go on.
    eventually("a write on the majority side", WAIT, || async {
        (c.put(key, "after").await == StatusCode::NO_CONTENT).then_some(())
    })
    .await;
    let (status, body) = c.get(key).await;
    assert_eq!((status, body), (StatusCode::OK, "after".into()));
    let led_by = c.shard_map().await.shards[shard as usize].node_id.clone();
    assert_ne!(led_by, old, "the cut-off node still leads");

    // Healed: the old leader rejoins as a follower; whatever it held
    // unconfirmed is discarded, and it catches up.
    c.lab().heal();
    eventually(&format!("{old} caught up"), WAIT, || async {
        let res = c
            .http
            .get(format!("{direct}?consistency=stale"))
            .send()
            .await
            .unwrap();
        let ok = res.status() == StatusCode::OK;
        (ok && res.bytes().await.unwrap() == "after").then_some(())
    })
    .await;
    settled(&c, 3, None).await;
    let (status, body) = c.get(key).await;
    assert_eq!((status, body), (StatusCode::OK, "after".into()));
    eprintln!("minority refused with 503 {refused}; {led_by} took over from {old}");
}

/// How many replicas each node holds, by node.
async fn replica_counts(c: &TestCluster) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for s in c.shard_map().await.shards {
        for r in s.replicas {
            *counts.entry(r.node_id).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn a_joining_node_takes_replicas_while_writes_go_on() {
    let mut c = start(3, 6).await;
    // A writer that runs throughout: every write must succeed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (http, url, stop) = (c.http.clone(), c.data_url("live/"), stop.clone());
        tokio::spawn(async move {
            let (mut written, mut failed) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let res = http
                    .put(format!("{url}{written}"))
                    .body(format!("v{written}"))
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status() == StatusCode::NO_CONTENT => {}
                    Ok(r) => {
                        failed.push(format!("{written}: {}", r.text().await.unwrap_or_default()))
                    }
                    Err(e) => failed.push(format!("{written}: {e}")),
                }
                written += 1;
            }
            (written, failed)
        })
    };
    c.add_node("n4");
    c.wait_node_ready("n4").await;
    // 18 replicas over 4 nodes: 4 or 5 each, moved by membership changes.
    eventually("replicas spread over four nodes", WAIT, || async {
        let counts = replica_counts(&c).await;
        let spread = counts.len() == 4 && counts.values().all(|n| *n == 4 || *n == 5);
        spread.then_some(())
    })
    .await;
    settled(&c, 3, None).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (written, failed) = writer.await.unwrap();
    assert!(
        failed.is_empty(),
        "writes failed while replicas moved: {failed:?}"
    );
    assert!(written > 10, "only {written} writes");
    for i in 0..written {
        let (status, body) = c.get(&format!("live/{i}")).await;
        assert_eq!((status, body), (StatusCode::OK, format!("v{i}").into()));
    }
    eprintln!("{written} writes while n4 joined, none failed");
}

#[tokio::test]
async fn assign_places_a_replica_and_decommission_moves_them_all_off() {
    let mut c = start(4, 4).await;
    for i in 0..12 {
        assert_eq!(c.put(&format!("d{i}"), "v").await, StatusCode::NO_CONTENT);
    }
    // A replica by hand: onto a node the shard is not on.
    let map = c.shard_map().await;
    let shard = &map.shards[0];
    let target = ["n1", "n2", "n3", "n4"]
        .into_iter()
        .find(|n| shard.replicas.iter().all(|r| r.node_id != *n))
        .unwrap();
    let res = c
        .http
        .post(format!("{}/shards/assign", c.url()))
        .json(&serde_json::json!({"shard_id": 0, "node_id": target}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    let holders: Vec<&str> = body["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node_id"].as_str().unwrap())
        .collect();
    assert!(holders.contains(&target), "{body}");
    assert_eq!(holders.len(), 3, "{body}");

    // Decommission a node that is not the one just placed: its replicas
    // go elsewhere first (the call waits), then it is removed.
    let victim = ["n1", "n2", "n3", "n4"]
        .into_iter()
        .find(|n| *n != target)
        .unwrap();
    let res = c
        .http
        .delete(format!("{}/nodes/{victim}", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let map = c.shard_map().await;
    assert!(
        map.shards
            .iter()
            .all(|s| s.replicas.len() == 3 && s.replicas.iter().all(|r| r.node_id != victim)),
        "{map:?}"
    );
    assert!(c.nodes().await.nodes.iter().all(|n| n.id != victim));
    assert!(
        map.shards[0].replicas.iter().any(|r| r.node_id == target),
        "the placed replica stayed"
    );
    c.stop_node(victim);
    settled(&c, 3, Some(victim)).await;
    for i in 0..12 {
        let (status, body) = c.get(&format!("d{i}")).await;
        assert_eq!((status, body), (StatusCode::OK, "v".into()));
    }
}

#[tokio::test]
async fn a_coordinator_without_metadata_relearns_every_group_from_the_nodes() {
    // 4 nodes, 3 replicas per shard: some shard has no replica on n1.
    let mut c = start(4, 4).await;
    for i in 0..12 {
        assert_eq!(c.put(&format!("m{i}"), "v").await, StatusCode::NO_CONTENT);
    }
    let replica_sets = |m: &torua::wire::ShardsResponse| -> Vec<Vec<String>> {
        m.shards
            .iter()
            .map(|s| {
                let mut v: Vec<String> = s.replicas.iter().map(|r| r.node_id.clone()).collect();
                v.sort();
                v
            })
            .collect()
    };
    let before = replica_sets(&c.shard_map().await);
    let held: Vec<u64> = {
        let mut v = Vec::new();
        for id in ["n1", "n2", "n3", "n4"] {
            v.push(keys_on(&c, id).await);
        }
        v
    };
    c.kill_coordinator();
    std::fs::remove_file(c.dir.path().join("coordinator/cluster.json")).unwrap();
    // n1 reports first, alone: a shard it has no replica of must not get a
    // new, empty group on it; the others' groups are learned as they report.
    for id in ["n2", "n3", "n4"] {
        c.stop_node(id);
    }
    c.start_coordinator();
    c.wait_registered("n1").await;
    for id in ["n2", "n3", "n4"] {
        c.add_node(id);
    }
    for id in ["n2", "n3", "n4"] {
        c.wait_node_ready(id).await;
    }
    settled(&c, 3, None).await;
    assert_eq!(replica_sets(&c.shard_map().await), before);
    for i in 0..12 {
        let (status, body) = c.get(&format!("m{i}")).await;
        assert_eq!((status, body), (StatusCode::OK, "v".into()), "m{i}");
    }
    // No replica was rebuilt empty or added.
    for (id, n) in ["n1", "n2", "n3", "n4"].into_iter().zip(held) {
        assert_eq!(keys_on(&c, id).await, n, "{id}");
    }
}

#[tokio::test]
async fn a_node_that_lost_its_data_rejoins_as_a_new_member() {
    // Replicas are not replaced for being down during this test.
    let mut c = start_in(3, 4, false, "60s").await;
    for i in 0..20 {
        assert_eq!(c.put(&format!("k{i}"), "v").await, StatusCode::NO_CONTENT);
    }
    // n3 loses its disk and comes back empty while n1 is down: one intact
    // copy of each shard is left.
    c.stop_node("n3");
    std::fs::remove_dir_all(c.dir.path().join("n3")).unwrap();
    c.stop_node("n1");
    c.add_node("n3");
    eventually("n3 rejoining", WAIT, || async {
        let nodes = c.nodes().await;
        nodes
            .nodes
            .iter()
            .any(|n| n.id == "n3" && n.state == "rejoining" && n.status == "healthy")
            .then_some(())
    })
    .await;
    // A voter that forgot its log and votes must not make a quorum with
    // n2: no write is acknowledged until n1 is back.
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut tries = 0;
    while Instant::now() < deadline {
        let res = c
            .http
            .put(c.data_url(&format!("refused-{tries}")))
            .timeout(Duration::from_secs(2))
            .body("x")
            .send()
            .await;
        if let Ok(r) = res {
            assert_ne!(
                r.status(),
                StatusCode::NO_CONTENT,
                "acknowledged without a quorum of intact replicas"
            );
        }
        tries += 1;
    }
    // n1 returns: each group drops n3, then takes it back as a new member
    // that catches up from the others.
    c.add_node("n1");
    c.wait_node_ready("n1").await;
    eventually("n3 active again", WAIT, || async {
        let nodes = c.nodes().await;
        nodes
            .nodes
            .iter()
            .any(|n| n.id == "n3" && n.state == "active")
            .then_some(())
    })
    .await;
    settled(&c, 3, None).await;
    eventually("n3 has every key again", WAIT, || async {
        (keys_on(&c, "n3").await >= 20).then_some(())
    })
    .await;
    for i in 0..20 {
        assert_eq!(c.get(&format!("k{i}")).await.0, StatusCode::OK);
    }
}

/// How many shards each node leads, as `/shards` shows.
async fn leaders_per_node(c: &TestCluster) -> std::collections::BTreeMap<String, usize> {
    let mut led = std::collections::BTreeMap::new();
    for s in c.shard_map().await.shards {
        *led.entry(s.node_id).or_insert(0) += 1;
    }
    led
}

#[tokio::test]
async fn leaders_spread_out_again_after_a_node_returns() {
    let mut c = start(3, 6).await;
    c.stop_node("n1");
    eventually("n1's shards led elsewhere", WAIT, || async {
        let led = leaders_per_node(&c).await;
        (!led.contains_key("n1") && !led.contains_key("")).then_some(())
    })
    .await;
    c.add_node("n1");
    c.wait_node_ready("n1").await;
    // n1 came back leading nothing; leaders move until each node leads two.
    eventually("two shards led by each node", WAIT, || async {
        let led = leaders_per_node(&c).await;
        (led.len() == 3 && led.values().all(|k| *k == 2)).then_some(())
    })
    .await;
    settled(&c, 3, None).await;
    // Transfers are counted (a restarted replica may also win an election
    // by itself, so how many is not fixed).
    let metrics = c.metrics().await;
    assert!(
        metrics.contains("# TYPE torua_leader_transfers counter"),
        "{metrics}"
    );
    for i in 0..12 {
        assert_eq!(
            c.put(&format!("after-{i}"), "v").await,
            StatusCode::NO_CONTENT
        );
    }
    // A transfer asked of the leader for a node outside the group, or with
    // a body that is not one, is refused and changes nothing.
    let map = c.shard_map().await;
    let leader = map.shards[0].node_id.clone();
    let transfer = format!("{}/shard/0/group/transfer", c.node_url(&leader));
    let stranger = serde_json::json!({"to": {"id": "n9", "addr": "https://127.0.0.1:1"}});
    let res = c.http.post(&transfer).json(&stranger).send().await.unwrap();
    assert_eq!(error_code(res).await.1, "not_a_voter");
    let res = c
        .http
        .post(&transfer)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(c.shard_map().await.shards[0].node_id, leader);
}

/// Chunks of snapshots node `id` received and accepted.
async fn snapshot_chunks_on(c: &TestCluster, id: &str) -> u64 {
    c.node_metric(id, "torua_raft_snapshot_chunks_received_total")
        .await
}

/// A replica that missed more than the leader's log still holds is sent
/// the whole shard as a snapshot, streamed through files in chunks over
/// the nodes' TLS, and then holds every key, large values byte for byte.
#[tokio::test]
async fn a_replica_far_behind_is_sent_the_shard_as_a_snapshot_in_chunks() {
    let opts = Options {
        coordinator_env: &[
            ("TORUA_REPLICATION_FACTOR", "3"),
            ("TORUA_REPLICA_TIMEOUT", "120s"),
        ],
        // A snapshot every 10 entries, and the log before it purged.
        node_env: &[RAFT[0], RAFT[1], ("TORUA_RAFT_SNAPSHOT_LOGS", "10")],
        ..Options::default()
    };
    let mut c = TestCluster::launch(0, 1, opts).await;
    for i in 1..=3 {
        c.add_node(&format!("n{i}"));
    }
    settled(&c, 3, None).await;
    c.wait_ready().await;
    let map = c.shard_map().await;
    let leader = map.shards[0].node_id.clone();
    let victim = map.shards[0]
        .replicas
        .iter()
        .map(|r| r.node_id.clone())
        .find(|n| *n != leader)
        .unwrap();
    assert_eq!(snapshot_chunks_on(&c, &victim).await, 0);
    c.stop_node(&victim);

    // Six values just under the test's 2 MiB limit: 12 MiB, three chunks
    // or more; and small ones, far past the log the leader keeps.
    let big = |i: u8| -> Vec<u8> {
        (0..(2 << 20) - 64)
            .map(|j: u32| (j as u8) ^ i.wrapping_mul(37))
            .collect()
    };
    // (A 2 MiB append can hold the only live follower's answer past the
    // test's 500 ms election timeout on a loaded machine: the leader then
    // refuses with 503 and writes nothing, and the write is made again.)
    for i in 0..6u8 {
        assert_eq!(
            c.put_retrying(&format!("big{i}"), &big(i), WAIT).await,
            StatusCode::NO_CONTENT
        );
    }
    for i in 0..40 {
        assert_eq!(
            c.put_retrying(&format!("small{i}"), format!("s{i}").as_bytes(), WAIT)
                .await,
            StatusCode::NO_CONTENT
        );
    }

    c.add_node(&victim);
    c.wait_node_ready(&victim).await;
    eventually(&format!("{victim} caught up"), WAIT, || async {
        (keys_on(&c, &victim).await == 46).then_some(())
    })
    .await;
    let chunks = snapshot_chunks_on(&c, &victim).await;
    assert!(
        chunks >= 3,
        "{victim} caught up with {chunks} snapshot chunks"
    );
    // Its own copy, read from it alone, is the data that was written.
    for (key, want) in [
        ("big5".to_owned(), big(5)),
        ("small39".into(), b"s39".to_vec()),
    ] {
        let held = stale_read(&c, &victim, &key).await;
        assert!(held.is_some(), "{key} missing on {victim}");
        assert!(held == Some(want), "{key} differs on {victim}");
    }
}
