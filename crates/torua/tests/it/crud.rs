//! The data API through the coordinator: CRUD, key patterns, sizes,
//! limits, listing, concurrency and structured errors.

use reqwest::StatusCode;

use crate::cluster::{error_code, expect_error, TestCluster, MAX_VALUE};

#[tokio::test]
async fn crud_and_content_type() {
    let c = TestCluster::start(3, 16).await;
    let res = c
        .http
        .put(c.data_url("user:1"))
        .header("content-type", "application/json")
        .body(r#"{"a":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = c.http.get(c.data_url("user:1")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.text().await.unwrap(), r#"{"a":1}"#);
    // Overwrite, then delete twice (idempotent), then 404 with a JSON error.
    assert_eq!(c.put("user:1", "v2").await, StatusCode::NO_CONTENT);
    assert_eq!(c.get("user:1").await.1, "v2");
    assert_eq!(c.delete("user:1").await, StatusCode::NO_CONTENT);
    assert_eq!(c.delete("user:1").await, StatusCode::NO_CONTENT);
    expect_error(
        c.http.get(c.data_url("user:1")),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn key_patterns_round_trip() {
    let c = TestCluster::start(2, 8).await;
    let keys = [
        "a/b/c",
        "with space",
        "user@example.com",
        "ns:key:1",
        "ünïcødé/键/🔑",
        "?",
        "#frag",
        "100%",
        "a?b#c%d",
        "trailing/",
        "/leading",
        "a/../b",
        "%41",
        "%2F",
        "a+b",
        "~tilde",
        "semi;colon",
        "quote\"d",
    ];
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            c.put(k, format!("v{i}")).await,
            StatusCode::NO_CONTENT,
            "put {k:?}"
        );
    }
    for (i, k) in keys.iter().enumerate() {
        let (s, body) = c.get(k).await;
        assert_eq!(
            (s, body.as_ref()),
            (StatusCode::OK, format!("v{i}").as_bytes()),
            "get {k:?}"
        );
    }
    // A literal slash and its encoding name the same key.
    let raw = c
        .http
        .get(format!("{}/data/a/b/c", c.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(raw.text().await.unwrap(), "v0");
    // Listing returns the decoded keys, in byte order.
    let page: torua::wire::KeyPage = c
        .http
        .get(format!("{}/data?limit=100", c.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(page.keys, want);
}

#[tokio::test]
async fn sizes_and_limits() {
    let c = TestCluster::start(2, 8).await;
    assert_eq!(
        c.put("empty", Vec::<u8>::new()).await,
        StatusCode::NO_CONTENT
    );
    let (s, body) = c.get("empty").await;
    assert_eq!((s, body.len()), (StatusCode::OK, 0));
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let res = c
        .http
        .put(c.data_url("big"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "{}",
        res.text().await.unwrap()
    );
    assert_eq!(c.get("big").await.1.as_ref(), big.as_slice());
    // Over the value limit: 413 with a JSON error, nothing stored.
    let res = c
        .http
        .put(c.data_url("too-big"))
        .body(vec![0u8; MAX_VALUE + 1])
        .send()
        .await
        .unwrap();
    let (status, code, msg) = error_code(res).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        "{msg}"
    );
    assert_eq!(c.get("too-big").await.0, StatusCode::NOT_FOUND);
    // Key limit: 4 KiB ok, one more byte is 413.
    assert_eq!(c.put(&"k".repeat(4096), "x").await, StatusCode::NO_CONTENT);
    expect_error(
        c.http.put(c.data_url(&"k".repeat(4097))).body("x"),
        StatusCode::PAYLOAD_TOO_LARGE,
        "key_too_large",
    )
    .await;
    // Empty key and invalid UTF-8 are 400.
    expect_error(
        c.http.put(format!("{}/data/", c.url())).body("x"),
        StatusCode::BAD_REQUEST,
        "invalid_key",
    )
    .await;
    expect_error(
        c.http.get(format!("{}/data/%FF", c.url())),
        StatusCode::BAD_REQUEST,
        "invalid_key",
    )
    .await;
}

#[tokio::test]
async fn listing_paginates_across_shards() {
    let c = TestCluster::start(3, 16).await;
    for i in 0..120 {
        assert_eq!(
            c.put(&format!("list/{i:03}"), "x").await,
            StatusCode::NO_CONTENT
        );
    }
    c.put("other/1", "x").await;
    let mut after: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut q = vec![("prefix", "list/".to_owned()), ("limit", "25".to_owned())];
        if let Some(a) = &after {
            q.push(("after", a.clone()));
        }
        let page: torua::wire::KeyPage = c
            .http
            .get(format!("{}/data", c.url()))
            .query(&q)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(page.keys.len() <= 25);
        seen.extend(page.keys);
        match page.next_after {
            Some(a) => after = Some(a),
            None => break,
        }
    }
    let want: Vec<String> = (0..120).map(|i| format!("list/{i:03}")).collect();
    assert_eq!(seen, want);
    expect_error(
        c.http.get(format!("{}/data?limit=0", c.url())),
        StatusCode::BAD_REQUEST,
        "invalid_limit",
    )
    .await;
    expect_error(
        c.http.get(format!("{}/data?limit=abc", c.url())),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn concurrent_clients() {
    let c = TestCluster::start(3, 16).await;
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (http, url) = (c.http.clone(), c.url());
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                let key = torua::http::extract::encode_key(&format!("c/{w}/{i}"));
                let r = http
                    .put(format!("{url}/data/{key}"))
                    .body(format!("{w}-{i}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::NO_CONTENT);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for w in 0..16 {
        for i in 0..40 {
            assert_eq!(c.get(&format!("c/{w}/{i}")).await.1, format!("{w}-{i}"));
        }
    }
}

#[tokio::test]
async fn structured_errors_everywhere() {
    let c = TestCluster::start(1, 4).await;
    let u = c.url();
    let post = |path: &str, body: &'static str| {
        c.http
            .post(format!("{u}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (path, body, status, code) in [
        ("/register", "{bad", 400, "invalid_json"),
        (
            "/register",
            r#"{"node":{"id":"","addr":"http://x:1"}}"#,
            400,
            "invalid_node_id",
        ),
        (
            "/register",
            r#"{"node":{"id":"n9","addr":"not a url"}}"#,
            400,
            "invalid_node_addr",
        ),
        (
            "/shards/assign",
            r#"{"shard_id":4,"node_id":"n1"}"#,
            400,
            "invalid_shard_id",
        ),
        (
            "/shards/assign",
            r#"{"shard_id":-1,"node_id":"n1"}"#,
            400,
            "invalid_json",
        ),
        (
            "/shards/assign",
            r#"{"shard_id":0,"node_id":"ghost"}"#,
            400,
            "unknown_node",
        ),
        (
            "/broadcast",
            r#"{"path":"http://evil/"}"#,
            400,
            "invalid_path",
        ),
    ] {
        let (s, got, msg) = error_code(post(path, body).await.unwrap()).await;
        assert_eq!(
            (s.as_u16(), got.as_str()),
            (status, code),
            "{path} {body}: {msg}"
        );
    }
    expect_error(
        c.http.get(format!("{u}/no/such/route")),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_error(
        c.http.patch(format!("{u}/nodes")),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    expect_error(
        c.http.delete(format!("{u}/nodes/ghost")),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Node API: bad shard id, and a shard the node does not hold.
    let n = c.node_url("n1");
    expect_error(
        c.http.get(format!("{n}/shard/abc/store/x")),
        StatusCode::BAD_REQUEST,
        "invalid_shard_id",
    )
    .await;
    let (s, code, msg) = error_code(
        c.http
            .get(format!("{n}/shard/77/store/x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::MISDIRECTED_REQUEST, "shard_not_owned"),
        "{msg}"
    );
    expect_error(
        c.http.put(format!("{n}/shard/77/store/x")).body("v"),
        StatusCode::MISDIRECTED_REQUEST,
        "shard_not_owned",
    )
    .await;
}

#[tokio::test]
async fn broadcast_metrics_and_info() {
    let c = TestCluster::start(2, 8).await;
    let res: torua::wire::BroadcastResponse = c
        .http
        .post(format!("{}/broadcast", c.url()))
        .json(&serde_json::json!({"path": "/control", "payload": {"action": "noop"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res.sent_to, 2);
    assert!(res.results.iter().all(|r| r.err.is_none()), "{res:?}");
    let nodes = c.nodes().await;
    assert!(nodes
        .nodes
        .iter()
        .all(|n| n.status == "healthy" && n.last_health_check.is_some()));
    let res = c
        .http
        .get(format!("{}/nodes", c.url()))
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    c.put("m", "x").await;
    let metrics = c.metrics().await;
    assert!(metrics.contains("torua_http_requests_total{"), "{metrics}");
    assert!(
        metrics.contains("torua_cluster_nodes{status=\"healthy\"} 2"),
        "{metrics}"
    );
    let info = c.node_info("n1").await;
    assert_eq!(info.node_id, "n1");
    assert_eq!(info.shard_count, info.shards.len());
    // Every shard a Raft group's replica (the default mode).
    assert!(info
        .shards
        .iter()
        .all(|s| s.primary && s.state == "replicated"));
}

#[tokio::test]
async fn conditional_writes_and_versions() {
    let c = TestCluster::start(2, 8).await;
    let url = c.data_url("cas/k");
    let etag = |r: &reqwest::Response| r.headers()["etag"].to_str().unwrap().to_owned();
    let put = |cond: Option<(&'static str, String)>, body: &'static str| {
        let mut req = c.http.put(&url).body(body);
        if let Some((h, v)) = cond {
            req = req.header(h, v);
        }
        req.send()
    };
    // Create only if absent.
    let r = put(Some(("if-none-match", "*".into())), "v1")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v1 = etag(&r);
    expect_error(
        c.http.put(&url).header("if-none-match", "*").body("again"),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    let got = c.http.get(&url).send().await.unwrap();
    assert_eq!(etag(&got), v1);
    assert_eq!(got.text().await.unwrap(), "v1");
    // Compare-and-set on the version.
    let r = put(Some(("if-match", v1.clone())), "v2").await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v2 = etag(&r);
    assert_ne!(v2, v1);
    let msg = expect_error(
        c.http.put(&url).header("if-match", &v1).body("stale"),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    assert!(
        msg.contains(v2.trim_matches('"')),
        "names the current version: {msg}"
    );
    assert_eq!(
        c.get("cas/k").await.1,
        "v2",
        "a refused write changes nothing"
    );
    // Deletes take preconditions too.
    expect_error(
        c.http.delete(&url).header("if-match", &v1),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    let r = c
        .http
        .delete(&url)
        .header("if-match", &v2)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    expect_error(
        c.http.put(&url).header("if-match", "*").body("x"),
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    // Recreated: a version never seen before.
    let r = put(None, "v3").await.unwrap();
    let v3 = etag(&r);
    assert!(![&v1, &v2].contains(&&v3));
    // Malformed preconditions are refused before anything happens.
    for (h, v) in [
        ("if-match", "v3"),
        ("if-match", "W/\"1\""),
        ("if-none-match", "\"1\""),
    ] {
        expect_error(
            c.http.put(&url).header(h, v).body("x"),
            StatusCode::BAD_REQUEST,
            "invalid_precondition",
        )
        .await;
    }
    // Concurrent compare-and-sets from one version: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let req = c
            .http
            .put(&url)
            .header("if-match", &v3)
            .body(format!("racer {i}"));
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::NO_CONTENT => won += 1,
            StatusCode::PRECONDITION_FAILED => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(won, 1);
}
