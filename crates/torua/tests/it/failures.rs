//! Crashes: SIGKILLed nodes and coordinators, and nodes losing power, lose
//! no acknowledged write; a dead node's shards fail fast with 503 and
//! recover when it returns.

use reqwest::StatusCode;
use testkit::disk::LoopDisk;
use testkit::eventually;

use crate::cluster::{error_code, Options, TestCluster, Writers, SINGLE_COPY, WAIT};

#[tokio::test]
async fn node_sigkill_loses_no_acknowledged_write() {
    let mut c = TestCluster::start_single(2, 8).await;
    // The victim: the node holding the shard of writer 0's first key.
    let shard = torua::placement::shard_for_key("k/0/0", 8);
    let victim = c.shard_map().await.shards[shard as usize].node_id.clone();
    let writers = Writers::start(&c, "k", 8);
    writers.wait_acked(200).await;
    // Kill the node the hard way, with writes in flight.
    c.kill_node(&victim);
    // Writes go on to the other node's shards, and fail on the victim's.
    writers.wait_acked(writers.acked_so_far() + 100).await;
    let (acked, refused) = writers.finish().await;
    assert!(
        refused > 0,
        "no write was refused: the kill was not mid-stream"
    );
    let on_victim: Vec<&String> = acked
        .iter()
        .filter(|k| torua::placement::shard_for_key(k, 8) == shard)
        .collect();
    assert!(
        !on_victim.is_empty(),
        "no acknowledged write on shard {shard}"
    );
    eprintln!(
        "{} writes acknowledged ({} on the victim's shard {shard}), {refused} refused",
        acked.len(),
        on_victim.len()
    );
    let probe = on_victim[0].clone();

    // Its shards fail fast with a message naming shard and node.
    let (status, code, msg) = eventually("503 for the dead node's shard", WAIT, || async {
        let r = c.http.get(c.data_url(&probe)).send().await.unwrap();
        let e = error_code(r).await;
        (e.0 == StatusCode::SERVICE_UNAVAILABLE && e.1 == "node_unavailable").then_some(e)
    })
    .await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "node_unavailable")
    );
    assert!(
        msg.contains(&format!("shard {shard}")) && msg.contains(&victim),
        "{msg}"
    );
    eventually("node reported unhealthy", WAIT, || async {
        c.nodes()
            .await
            .nodes
            .iter()
            .any(|n| n.id == victim && n.status == "unhealthy")
            .then_some(())
    })
    .await;
    let ready = c
        .http
        .get(format!("{}/ready", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    c.add_node(&victim);
    c.wait_ready().await;
    for k in &acked {
        let (s, body) = c.get(k).await;
        assert_eq!(
            (s, body.as_ref()),
            (StatusCode::OK, k.as_bytes()),
            "lost {k}"
        );
    }
}

#[tokio::test]
async fn coordinator_restart_loses_nothing() {
    let mut c = TestCluster::start_single(3, 16).await;
    for i in 0..100 {
        assert_eq!(
            c.put(&format!("r/{i}"), format!("{i}")).await,
            StatusCode::NO_CONTENT
        );
    }
    let before = c.shard_map().await;
    c.kill_coordinator();
    c.start_coordinator();
    c.wait_ready().await;
    let after = c.shard_map().await;
    let owners = |m: &torua::wire::ShardsResponse| {
        m.shards
            .iter()
            .map(|s| s.node_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(owners(&before), owners(&after));
    assert_eq!(c.nodes().await.nodes.len(), 3);
    for i in 0..100 {
        assert_eq!(c.get(&format!("r/{i}")).await.1, format!("{i}"));
    }
}

#[tokio::test]
async fn coordinator_without_metadata_relearns_placement_from_nodes() {
    let mut c = TestCluster::start_single(2, 8).await;
    for i in 0..40 {
        c.put(&format!("m/{i}"), "x").await;
    }
    c.kill_coordinator();
    // Placement is lost; the security state (keys, policy) is kept apart.
    std::fs::remove_file(c.dir.path().join("coordinator/cluster.json")).unwrap();
    // n2 comes back only after n1 has reported its shards: the shards n2
    // holds must wait for it, not be given to n1 empty.
    c.stop_node("n2");
    c.start_coordinator();
    c.wait_registered("n1").await;
    c.add_node("n2");
    c.wait_node_ready("n2").await;
    for i in 0..40 {
        assert_eq!(c.get(&format!("m/{i}")).await.0, StatusCode::OK, "m/{i}");
    }
}

/// A power cut, not only a kill: SIGKILL leaves what the node wrote in the
/// page cache, so alone it cannot show that acknowledged writes were
/// synced. Here the node's data directory is a file system on a loop
/// device; the node is killed with writes in flight and restarted on a
/// copy of that disk as the device held it, which has only what was
/// synced (see `testkit::disk`).
async fn power_cut_loses_no_acknowledged_write(coordinator_env: &[(&str, &str)]) {
    if let Err(why) = LoopDisk::available() {
        panic!("this test needs root and loop devices, as CI has: {why}");
    }
    let opts = Options {
        coordinator_env,
        ..Options::default()
    };
    let mut c = TestCluster::launch(0, 4, opts).await;
    let data = c.dir.path().join("n1");
    let disk = LoopDisk::create(&c.dir.path().join("n1.img"), &data, 512);
    c.add_node("n1");
    c.wait_placed(1).await;
    let writers = Writers::start(&c, "k", 8);
    writers.wait_acked(300).await;
    c.kill_node("n1");
    let (acked, _) = writers.finish().await;
    // Written after the kill and never synced: the copy must lack it, or
    // it would keep unsynced writes too and prove nothing.
    std::fs::write(data.join("unsynced"), "x").unwrap();
    let image = c.dir.path().join("cut.img");
    disk.power_cut(&image);
    drop(disk);
    let _disk = LoopDisk::open(&image, &data);
    assert!(
        !data.join("unsynced").exists(),
        "the copy kept unsynced data"
    );

    c.add_node("n1");
    // The node's own answer first: the coordinator may not have noticed it
    // was gone, and would call it ready while it is still starting.
    c.wait_node_ready("n1").await;
    c.wait_placed(1).await;
    for k in &acked {
        let (s, body) = c.get(k).await;
        assert_eq!(
            (s, body.as_ref()),
            (StatusCode::OK, k.as_bytes()),
            "lost {k} of {} acknowledged",
            acked.len()
        );
    }
}

#[tokio::test]
async fn power_cut_loses_no_write_acknowledged_by_a_replicated_shard() {
    power_cut_loses_no_acknowledged_write(&[("TORUA_REPLICATION_FACTOR", "1")]).await;
}

#[tokio::test]
async fn power_cut_loses_no_write_acknowledged_by_a_single_copy_shard() {
    power_cut_loses_no_acknowledged_write(&[SINGLE_COPY]).await;
}
