//! Several coordinators (`TORUA_COORDINATOR_PEERS`): the metadata lives in
//! their Raft group, any of them serves clients and nodes, and losing one
//! of three stops nothing.

use std::time::Duration;

use reqwest::StatusCode;
use testkit::eventually;

use super::cluster::{error_code, Options, SendJson, TestCluster};

const WAIT: Duration = Duration::from_secs(60);
/// Fast elections, for the coordinators' group and the shards' alike.
const RAFT: &[(&str, &str)] = &[
    ("TORUA_RAFT_HEARTBEAT", "100ms"),
    ("TORUA_RAFT_ELECTION_TIMEOUT", "500ms"),
];

/// Three coordinators and `nodes` nodes, every shard settled.
pub async fn start(nodes: usize, shards: u32) -> TestCluster {
    let opts = Options {
        coordinator_env: &[RAFT[0], RAFT[1], ("TORUA_REPLICA_TIMEOUT", "2s")],
        node_env: RAFT,
        coordinators: 3,
        ..Options::default()
    };
    TestCluster::launch(nodes, shards, opts).await
}

/// What coordinator `name`'s `/ready` says of the coordinators' group.
async fn group_view(c: &TestCluster, name: &str) -> serde_json::Value {
    c.http
        .get(format!("{}/ready", c.coordinator_url(name)))
        .send_json()
        .await["coordinators"]
        .clone()
}

/// The coordinators' leader, once every live coordinator agrees on one
/// that is not `not`.
async fn leader(c: &TestCluster, live: &[String], not: Option<&str>) -> String {
    eventually("one coordinator leader all agree on", WAIT, || async {
        let mut seen = Vec::new();
        for name in live {
            seen.push(group_view(c, name).await["leader"].as_str()?.to_owned());
        }
        (seen.windows(2).all(|w| w[0] == w[1]) && Some(seen[0].as_str()) != not)
            .then(|| seen[0].clone())
    })
    .await
}

/// `POST /admin/apikeys` for an admin key named `name`, at `c.url()`.
fn make_key(c: &TestCluster, name: &str) -> reqwest::RequestBuilder {
    c.http
        .post(format!("{}/admin/apikeys", c.url()))
        .json(&serde_json::json!({"name": name, "roles": ["admin"]}))
}

#[tokio::test]
async fn three_coordinators_share_the_metadata_and_losing_one_stops_nothing() {
    let mut c = start(3, 8).await;
    let names = c.coordinator_names();
    assert_eq!(names, ["c1", "c2", "c3"]);
    // Every coordinator ready (c2 may still be catching up on placement).
    let members = eventually("c2 ready, naming the group", WAIT, || async {
        let view = group_view(&c, "c2").await;
        (!view["members"].is_null()).then_some(view["members"].clone())
    })
    .await;
    assert_eq!(members, serde_json::json!(["c1", "c2", "c3"]));

    // Data and placement through any coordinator.
    c.use_coordinator("c1");
    assert_eq!(c.put("k1", "v1").await, StatusCode::NO_CONTENT);
    for name in ["c2", "c3"] {
        c.use_coordinator(name);
        assert_eq!(c.get("k1").await, (StatusCode::OK, "v1".into()));
        assert_eq!(c.nodes().await.nodes.len(), 3);
    }

    // A key made through one coordinator works at the others at once:
    // the security state is one document of the group.
    c.use_coordinator("c2");
    let key = c.create_key("writer", &["admin"]).await;
    let writer = c.client_with(&key);
    for name in ["c1", "c3"] {
        let res = writer
            .put(format!("{}/data/by-{name}", c.coordinator_url(name)))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::NO_CONTENT,
            "key refused at {name}"
        );
    }

    // A key revoked at one coordinator is refused at the others at once:
    // the revocation is answered only when they hold it. Five rounds, each
    // checked the moment the revocation is answered.
    for round in 0..5 {
        let made = make_key(&c, &format!("revoked-{round}")).send_json().await;
        let (id, key) = (made["id"].as_str().unwrap(), made["key"].as_str().unwrap());
        let doomed = c.client_with(key);
        let at = |name: &str| format!("{}/data/k1", c.coordinator_url(name));
        for name in ["c1", "c3"] {
            let res = doomed.get(at(name)).send().await.unwrap();
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "control: {name}, round {round}"
            );
        }
        let res = c
            .http
            .delete(format!("{}/admin/apikeys/{id}", c.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        for name in ["c1", "c3"] {
            let (status, code, _) = error_code(doomed.get(at(name)).send().await.unwrap()).await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::UNAUTHORIZED, "api_key_revoked"),
                "revoked at c2, still accepted at {name} (round {round})"
            );
        }
        // Control: another key still works there.
        let res = writer.get(at("c1")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }

    // SIGKILL the leader of the coordinators (the one that acts).
    let old = leader(&c, &names, None).await;
    for name in &names {
        c.use_coordinator(name);
        let acting = if *name == old { 1 } else { 0 };
        let line = format!("torua_coordinator_acting {acting}");
        eventually(&format!("{name} says `{line}`"), WAIT, || async {
            c.metrics().await.lines().any(|l| l == line).then_some(())
        })
        .await;
    }
    c.kill_coordinator_named(&old);
    let live: Vec<String> = names.iter().filter(|n| **n != old).cloned().collect();
    c.use_coordinator(&live[0]);
    // Data goes on at once: it does not pass through the group.
    assert_eq!(c.put("k2", "v2").await, StatusCode::NO_CONTENT);
    leader(&c, &live, Some(&old)).await;
    // Metadata changes go on through the new leader, from either survivor.
    c.use_coordinator(&live[1]);
    let second = c.create_key("after-failover", &["admin"]).await;
    c.use_coordinator(&live[0]);
    let res = c
        .client_with(&second)
        .get(c.data_url("k2"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A node joins through a survivor, and the new leader gives it
    // replicas (only the leader rebalances).
    c.add_node("n4");
    c.wait_registered("n4").await;
    eventually("n4 holds replicas", WAIT, || async {
        let nodes = c.nodes().await;
        nodes
            .nodes
            .iter()
            .any(|n| n.id == "n4" && n.shard_count > 0)
            .then_some(())
    })
    .await;

    // The old leader comes back and catches up with what it missed.
    c.start_coordinator_named(&old);
    c.use_coordinator(&old);
    eventually("the restarted coordinator knows n4", WAIT, || async {
        let res = c.http.get(format!("{}/nodes", c.url())).send().await.ok()?;
        let nodes: torua::wire::NodesResponse = res.json().await.ok()?;
        nodes.nodes.iter().any(|n| n.id == "n4").then_some(())
    })
    .await;
    let res = c
        .client_with(&second)
        .get(c.data_url("k1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    c.wait_ready().await;
}

#[tokio::test]
async fn a_coordinator_without_a_quorum_serves_data_but_changes_nothing() {
    let mut c = start(3, 4).await;
    assert_eq!(c.put("k", "before").await, StatusCode::NO_CONTENT);
    // Kill the leader and one follower: the survivor is a follower with
    // no leader to forward to.
    let names = c.coordinator_names();
    let old = leader(&c, &names, None).await;
    let gone: Vec<String> = names
        .iter()
        .filter(|n| **n != old)
        .take(1)
        .cloned()
        .collect();
    let survivor = names
        .iter()
        .find(|n| **n != old && **n != gone[0])
        .unwrap()
        .clone();
    c.kill_coordinator_named(&old);
    c.kill_coordinator_named(&gone[0]);
    c.use_coordinator(&survivor);
    // Data still flows: placement is known, and the shards' groups are whole.
    assert_eq!(c.put("k", "after").await, StatusCode::NO_CONTENT);
    assert_eq!(c.get("k").await, (StatusCode::OK, "after".into()));
    // A metadata change cannot commit: a clear 503, and nothing changed.
    // Every attempt is refused; the first ones may still find the dead
    // leader's connection (`outcome_unknown`) before the survivor knows
    // it has no leader to forward to.
    eventually("the survivor to say it has no leader", WAIT, || async {
        let res = make_key(&c, "lost").send().await.unwrap();
        let (status, code, _) = error_code(res).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{code}");
        (code == "no_leader").then_some(())
    })
    .await;
    // With a quorum back, changes go through again.
    c.start_coordinator_named(&gone[0]);
    eventually("a key can be made again", WAIT, || async {
        let res = make_key(&c, "back").send().await.ok()?;
        (res.status() == StatusCode::CREATED).then_some(())
    })
    .await;
    let keys = c
        .http
        .get(format!("{}/admin/apikeys", c.url()))
        .send_json()
        .await;
    let names: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert!(
        names.contains(&"back") && !names.contains(&"lost"),
        "{names:?}"
    );
}
