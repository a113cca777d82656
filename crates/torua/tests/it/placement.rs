//! Placement: even spread, rebalancing on join and decommission with the
//! data, and manual assignment — with writes running during the moves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reqwest::StatusCode;

use crate::cluster::{expect_error, TestCluster, Writers};

async fn assert_all_readable(c: &TestCluster, pairs: &[(String, String)]) {
    for (k, v) in pairs {
        let (s, body) = c.get(k).await;
        assert_eq!(
            (s, body.as_ref()),
            (StatusCode::OK, v.as_bytes()),
            "key {k}"
        );
    }
}

#[tokio::test]
async fn spread_is_even() {
    let c = TestCluster::start_single(3, 64).await;
    let counts: Vec<usize> = c
        .nodes()
        .await
        .nodes
        .iter()
        .map(|n| n.shard_count)
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 64);
    assert!(
        counts.iter().max().unwrap() - counts.iter().min().unwrap() <= 1,
        "{counts:?}"
    );
    // Nodes hold exactly what the coordinator says they own.
    let map = c.shard_map().await;
    assert_eq!(map.num_shards, 64);
    assert!(map
        .shards
        .iter()
        .enumerate()
        .all(|(i, s)| s.shard_id as usize == i && s.is_primary));
    for id in ["n1", "n2", "n3"] {
        let held: Vec<u32> = c.node_info(id).await.shards.iter().map(|s| s.id).collect();
        let owned: Vec<u32> = map
            .shards
            .iter()
            .filter(|s| s.node_id == id)
            .map(|s| s.shard_id)
            .collect();
        assert_eq!(held, owned, "{id}");
    }
}

#[tokio::test]
async fn join_rebalances_with_data_and_live_writes() {
    let mut c = TestCluster::start_single(2, 24).await;
    let initial: Vec<(String, String)> = (0..300)
        .map(|i| (format!("pre/{i}"), format!("v{i}")))
        .collect();
    for (k, v) in &initial {
        assert_eq!(c.put(k, v.clone()).await, StatusCode::NO_CONTENT);
    }
    let writer = Writers::start(&c, "live", 1);
    let stop = Arc::new(AtomicBool::new(false));
    // Reads of existing keys must succeed throughout the moves.
    let reader = {
        let (http, url, stop, keys) = (c.http.clone(), c.url(), stop.clone(), initial.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !stop.load(Ordering::Relaxed) {
                for (k, v) in keys.iter().step_by(7) {
                    let r = http
                        .get(format!(
                            "{url}/data/{}",
                            torua::http::extract::encode_key(k)
                        ))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(
                        r.status(),
                        StatusCode::OK,
                        "read of {k} failed during a move"
                    );
                    assert_eq!(r.text().await.unwrap(), *v);
                    reads += 1;
                }
            }
            reads
        })
    };
    c.add_node("n3");
    c.wait_registered("n3").await;
    // Issue 23: `torua balance --wait` follows the rebalancing to its end.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_torua"))
        .env("TORUA_TOKEN", &c.admin_key)
        .args(["--coordinator", &c.url(), "--ca"])
        .arg(c.certs().join("ca.pem"))
        .args(["balance", "--wait"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let summary = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("balanced: 24 shard copies over 3 nodes (8 each) in "),
        "{stdout}"
    );
    assert!(
        stderr.is_empty() || stderr.contains("rebalancing: "),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    c.wait_balanced(3).await;
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(String, String)> = writer
        .finish()
        .await
        .0
        .into_iter()
        .map(|k| (k.clone(), k))
        .collect();
    assert!(!acked.is_empty());
    assert!(reader.await.unwrap() > 0);
    assert_all_readable(&c, &initial).await;
    assert_all_readable(&c, &acked).await;
    // The newcomer really holds data now, and the old copies are gone.
    let info = c.node_info("n3").await;
    assert_eq!(info.shard_count, 8);
    assert!(info.shards.iter().map(|s| s.key_count).sum::<u64>() > 0);
    let total: u64 = {
        let mut t = 0;
        for id in ["n1", "n2", "n3"] {
            t += c
                .node_info(id)
                .await
                .shards
                .iter()
                .map(|s| s.key_count)
                .sum::<u64>();
        }
        t
    };
    assert_eq!(
        total as usize,
        initial.len() + acked.len(),
        "every key is stored exactly once"
    );
}

#[tokio::test]
async fn decommission_moves_everything_off() {
    let c = TestCluster::start_single(3, 12).await;
    let pairs: Vec<(String, String)> = (0..150)
        .map(|i| (format!("d/{i}"), format!("v{i}")))
        .collect();
    for (k, v) in &pairs {
        c.put(k, v.clone()).await;
    }
    let res = c
        .http
        .delete(format!("{}/nodes/n3", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let nodes = c.nodes().await;
    assert!(nodes.nodes.iter().all(|n| n.id != "n3"));
    assert_eq!(
        nodes
            .nodes
            .iter()
            .map(|n| n.shard_count)
            .collect::<Vec<_>>(),
        vec![6, 6]
    );
    assert_all_readable(&c, &pairs).await;
    testkit::eventually("n3's copies deleted", crate::cluster::WAIT, || async {
        (c.node_info("n3").await.shard_count == 0).then_some(())
    })
    .await;
    // The last node cannot be decommissioned while it holds shards.
    c.http
        .delete(format!("{}/nodes/n2", c.url()))
        .send()
        .await
        .unwrap();
    expect_error(
        c.http.delete(format!("{}/nodes/n1", c.url())),
        StatusCode::CONFLICT,
        "no_destination",
    )
    .await;
    assert_all_readable(&c, &pairs).await;
}

#[tokio::test]
async fn manual_assign_moves_data() {
    let c = TestCluster::start_single(2, 8).await;
    let key = "assign/me";
    c.put(key, "payload").await;
    let etag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_owned();
    let before = etag(&c.http.get(c.data_url(key)).send().await.unwrap());
    let shard = torua::placement::shard_for_key(key, 8);
    let map = c.shard_map().await;
    let from = map.shards[shard as usize].node_id.clone();
    let to = if from == "n1" { "n2" } else { "n1" };
    let res = c
        .http
        .post(format!("{}/shards/assign", c.url()))
        .json(&serde_json::json!({"shard_id": shard, "node_id": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: torua::wire::ShardAssignment = res.json().await.unwrap();
    assert_eq!(body.node_id, to);
    assert_eq!(c.get(key).await.1, "payload");
    // The version moved with the value: a compare-and-set made before the
    // move still applies, exactly once.
    let after = etag(&c.http.get(c.data_url(key)).send().await.unwrap());
    assert_eq!(after, before);
    let cas = || {
        c.http
            .put(c.data_url(key))
            .header("if-match", &before)
            .body("next")
    };
    assert_eq!(cas().send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cas().send().await.unwrap().status(),
        StatusCode::PRECONDITION_FAILED
    );
    let held: Vec<u32> = c.node_info(to).await.shards.iter().map(|s| s.id).collect();
    assert!(held.contains(&shard));
    testkit::eventually("old copy dropped", crate::cluster::WAIT, || async {
        let held: Vec<u32> = c
            .node_info(&from)
            .await
            .shards
            .iter()
            .map(|s| s.id)
            .collect();
        (!held.contains(&shard)).then_some(())
    })
    .await;
}

/// Issue 23: `torua node decommission` shows the shards still to move
/// while the coordinator moves them, then one summary line; an unknown
/// node is a clear error.
#[tokio::test]
async fn decommission_from_the_cli_reports_progress_and_a_summary() {
    let c = TestCluster::start_single(3, 12).await;
    for i in 0..60 {
        c.put(&format!("cli/{i}"), format!("v{i}")).await;
    }
    let ca = c.certs().join("ca.pem");
    let torua = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_torua"))
            .env("TORUA_TOKEN", &c.admin_key)
            .env_remove("NO_COLOR")
            .args(["--coordinator", &c.url(), "--ca", ca.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    };
    let held = c.node_info("n3").await.shard_count;
    assert!(held > 0);
    let out = torua(&["node", "decommission", "n3"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(
        stdout
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .split(" in ")
            .next(),
        Some(format!("node n3 decommissioned: {held} shard copies moved off").as_str()),
        "{stdout}"
    );
    // Not a terminal: plain progress lines, no escapes.
    assert!(
        stderr.contains(&format!("moving shards off n3: {held}/{held} (100%)")),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
    assert!(c.nodes().await.nodes.iter().all(|n| n.id != "n3"));
    let out = torua(&["node", "decommission", "n9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("node n9 is not registered"));
}
