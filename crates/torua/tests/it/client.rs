//! The typed client (`torua-client`) against real clusters: the README's
//! quick start, versions and conditional writes, listing in pages,
//! administration, errors, and retries only where they are safe.

use std::time::Duration;

use torua_client::{Client, Error, Failure, Put};

use super::cluster::TestCluster;

#[path = "../../../torua-client/examples/quickstart.rs"]
mod quickstart;

fn client(c: &TestCluster, credential: &str) -> Client {
    Client::builder(c.url())
        .token(credential)
        .ca_file(c.certs().join("ca.pem"))
        .unwrap()
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_readme_quickstart_and_typed_calls_work_on_a_secured_cluster() {
    let c = TestCluster::start(3, 8).await;
    let ca = c.certs().join("ca.pem");
    let entry = quickstart::run(&c.url(), &c.admin_key, ca.to_str().unwrap())
        .await
        .unwrap()
        .expect("the quick start reads back what it wrote");
    assert_eq!(entry.value, "hello");
    let admin = client(&c, &c.admin_key);

    // Versions only grow; the content type is kept.
    let key = "ünï/键 🔑?#%";
    let v1 = admin.put(key, "one").await.unwrap();
    let put = Put::new().content_type("text/plain; charset=utf-8");
    let v2 = admin.put_with(key, "two", &put).await.unwrap();
    assert!(v2 > v1);
    let got = admin.get(key).await.unwrap().unwrap();
    assert_eq!(
        (got.text().unwrap(), got.content_type.as_str(), got.version),
        ("two", "text/plain; charset=utf-8", v2)
    );
    assert_eq!(admin.get_stale(key).await.unwrap().unwrap().version, v2);
    assert_eq!(admin.get("absent").await.unwrap(), None);

    // Compare-and-set: the stale version loses and writes nothing.
    let stale = admin
        .put_with(key, "lost", &Put::new().if_version(v1))
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale}");
    assert_eq!(stale.status(), Some(412));
    let v3 = admin
        .put_with(key, "three", &Put::new().if_version(v2))
        .await
        .unwrap();
    assert_eq!(
        admin.get(key).await.unwrap().unwrap().text().unwrap(),
        "three"
    );
    // Create once; write only what exists.
    assert!(admin
        .put_with(key, "again", &Put::new().if_absent())
        .await
        .unwrap_err()
        .is_precondition_failed());
    assert!(admin
        .put_with("never", "x", &Put::new().if_exists())
        .await
        .unwrap_err()
        .is_precondition_failed());
    assert_eq!(admin.get("never").await.unwrap(), None);
    // Conditional delete: the wrong version keeps the key.
    assert!(admin
        .delete_if(key, v2)
        .await
        .unwrap_err()
        .is_precondition_failed());
    admin.delete_if(key, v3).await.unwrap();
    assert_eq!(admin.get(key).await.unwrap(), None);
    admin.delete(key).await.unwrap(); // absent: still fine
                                      // An empty value is a value.
    admin.put("empty", "").await.unwrap();
    assert_eq!(admin.get("empty").await.unwrap().unwrap().value, "");

    // Listing in pages, in byte order, across shards.
    let mut want: Vec<String> = (0..23).map(|i| format!("page/{i:02}")).collect();
    want.push("page/ž".into());
    for k in &want {
        admin.put(k, "v").await.unwrap();
    }
    let mut pages = admin.list("page/").page_size(5);
    let mut seen = Vec::new();
    let mut count = 0;
    while let Some(page) = pages.next_page().await.unwrap() {
        assert!(page.len() <= 5);
        count += 1;
        seen.extend(page);
    }
    assert_eq!(seen, want);
    assert_eq!(count, 5);
    let rest = admin
        .list("page/")
        .after("page/20")
        .collect()
        .await
        .unwrap();
    assert_eq!(rest, ["page/21", "page/22", "page/ž"]);

    // Cluster and administration.
    assert_eq!(admin.nodes().await.unwrap().len(), 3);
    assert_eq!(admin.shards().await.unwrap().num_shards, 8);
    assert!(admin.ready().await.unwrap().ready);
    assert_eq!(admin.whoami().await.unwrap()["kind"], "api_key");
    let made = admin
        .create_api_key(&serde_json::json!({"name": "reader", "roles": ["monitor"]}))
        .await
        .unwrap();
    let monitor = client(&c, made["key"].as_str().unwrap());
    assert_eq!(monitor.nodes().await.unwrap().len(), 3);
    let refused = monitor.put("page/x", "v").await.unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(403), Some("forbidden"))
    );
    admin
        .revoke_api_key(made["id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        monitor.nodes().await.unwrap_err().code(),
        Some("api_key_revoked")
    );
    let policy = admin.policy().await.unwrap();
    let stored = admin.set_policy(&policy).await.unwrap();
    assert_eq!(stored["version"], policy["version"].as_u64().unwrap() + 1);
    // Setting the same version again is a conflict, not a retry.
    assert_eq!(
        admin.set_policy(&policy).await.unwrap_err().code(),
        Some("version_conflict")
    );
}

#[tokio::test]
async fn errors_say_what_failed_and_refused_connections_fail_over() {
    let c = TestCluster::start(1, 4).await;
    // No CA: the certificate is not trusted, and that is what it says.
    let untrusting = Client::builder(c.url())
        .token(&c.admin_key)
        .build()
        .unwrap();
    match untrusting.put("k", "v").await.unwrap_err() {
        Error::Unreachable {
            kind: Failure::Tls, ..
        } => {}
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    // No credential: the coordinator's own code and message.
    let anonymous = Client::builder(c.url())
        .ca_file(c.certs().join("ca.pem"))
        .unwrap()
        .build()
        .unwrap();
    let e = anonymous.get("k").await.unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(401), Some("missing_credentials"))
    );
    // A dead coordinator first: the next URL answers, and is used after.
    let dead = format!("https://127.0.0.1:{}", testkit::free_port());
    let failover = Client::builder(&dead)
        .url(c.url())
        .token(&c.admin_key)
        .ca_file(c.certs().join("ca.pem"))
        .unwrap()
        .build()
        .unwrap();
    failover.put("k", "v").await.unwrap();
    assert_eq!(failover.url(), c.url());
    // Only the dead one: refused, named, after the retries.
    let alone = Client::builder(&dead).attempts(2).build().unwrap();
    match alone.get("k").await.unwrap_err() {
        Error::Unreachable {
            url,
            kind: Failure::Connect,
            ..
        } => assert!(url.starts_with(&dead), "{url}"),
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_write_is_retried_while_the_owner_is_down_and_lands_once_it_is_back() {
    let mut c = TestCluster::start_single(1, 2).await;
    let admin = client(&c, &c.admin_key);
    admin.put("k", "before").await.unwrap();
    c.stop_node("n1");
    // Control: without retries the outage is the answer, and nothing was done.
    let once = Client::builder(c.url())
        .token(&c.admin_key)
        .ca_file(c.certs().join("ca.pem"))
        .unwrap()
        .attempts(1)
        .build()
        .unwrap();
    let e = once.put("k", "during").await.unwrap_err();
    assert_eq!(e.code(), Some("node_unavailable"), "{e}");
    // With retries the same write waits out the restart.
    let patient = Client::builder(c.url())
        .token(&c.admin_key)
        .ca_file(c.certs().join("ca.pem"))
        .unwrap()
        .attempts(40)
        .build()
        .unwrap();
    let write = tokio::spawn(async move { patient.put("k", "after").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !write.is_finished(),
        "the write waits while the node is down"
    );
    c.add_node("n1");
    write.await.unwrap().unwrap();
    assert_eq!(admin.get("k").await.unwrap().unwrap().value, "after");
}
