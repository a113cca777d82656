//! The audit trail: every security event with actor, address, user agent
//! and request id; readable by admins only, filtered and paged; no secrets.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{tokens, Truxe, PASSWORD};

#[tokio::test]
async fn security_events_are_audited_with_context() {
    let t = Truxe::start(&[
        ("TRUXE_LOCKOUT_THRESHOLD", "2"),
        ("TRUXE_REFRESH_REUSE_GRACE", "0s"),
    ])
    .await;
    let out = t.cli(
        &["user", "create", "--email", "admin@example.com", "--admin"],
        Some("Admin-Password-9\n"),
    );
    assert!(out.status.success());
    let (_, body) = t
        .post(
            "/api/auth/register",
            json!({"email": "pat@example.com", "password": PASSWORD}),
        )
        .await;
    let pat_id = body["data"]["user"]["id"].as_str().unwrap().to_owned();
    let (pat_access, pat_refresh) = tokens(&body);

    // A failed login whose request id we know.
    let r = t
        .http
        .post(format!("{}/api/auth/login", t.url()))
        .header("user-agent", "audit-test/1.0")
        .json(&json!({"email": "pat@example.com", "password": "Wrong-Password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    t.login("pat@example.com", "Wrong-Password-1").await; // second failure locks
    t.login("ghost@example.com", "Wrong-Password-1").await;
    t.refresh(&pat_refresh).await;
    t.refresh(&pat_refresh).await; // reuse
    t.authed(Method::POST, "/auth/logout", &pat_access, None)
        .await;
    assert!(t.cli(&["keys", "rotate"], None).status.success());

    let (s, _) = t
        .authed(Method::GET, "/api/admin/audit?limit=500", &pat_access, None)
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "pat's session was revoked by the reuse"
    );
    let (_, admin) = t.login("admin@example.com", "Admin-Password-9").await;
    let (admin_access, _) = tokens(&admin);
    let (_, p2) = t
        .post(
            "/api/auth/register",
            json!({"email": "quinn@example.com", "password": PASSWORD}),
        )
        .await;
    let (s, _) = t
        .authed(Method::GET, "/api/admin/audit", &tokens(&p2).0, None)
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "non-admins cannot read the audit trail"
    );

    let (s, body) = t
        .authed(
            Method::GET,
            "/api/admin/audit?limit=500",
            &admin_access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let events = body["events"].as_array().unwrap();
    let find = |action: &str, outcome: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == outcome)
            .collect()
    };
    assert_eq!(find("user_created", "success")[0]["actor"], "cli");
    assert_eq!(find("register", "success").len(), 2);
    let failed = find("login", "failure");
    assert_eq!(failed.len(), 3);
    let first = failed
        .iter()
        .find(|e| e["request_id"] == request_id.as_str())
        .expect("event carries the request id");
    assert_eq!(first["actor"], pat_id.as_str());
    assert_eq!(first["ip"], "127.0.0.1");
    assert_eq!(first["user_agent"], "audit-test/1.0");
    assert!(failed
        .iter()
        .any(|e| e["details"]["reason"] == "unknown_email" && e["actor"].is_null()));
    assert_eq!(
        find("account_locked", "success")[0]["target"],
        pat_id.as_str()
    );
    assert_eq!(find("refresh", "success").len(), 1);
    assert_eq!(
        find("refresh_token_reused", "denied")[0]["actor"],
        pat_id.as_str()
    );
    assert_eq!(find("key_rotated", "success").len(), 1);
    assert!(!find("login", "success").is_empty());
    // Newest first.
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]));
    // No secret ever reaches the trail.
    let text = body.to_string();
    for secret in [
        PASSWORD,
        "Wrong-Password-1",
        "Admin-Password-9",
        &pat_refresh,
        &pat_access,
    ] {
        assert!(!text.contains(secret), "audit trail leaks a secret");
    }

    // Filters and paging.
    let (_, body) = t
        .authed(
            Method::GET,
            &format!("/api/admin/audit?actor={pat_id}&action=login"),
            &admin_access,
            None,
        )
        .await;
    assert!(body["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == pat_id.as_str() && e["action"] == "login"));
    let (_, page1) = t
        .authed(Method::GET, "/api/admin/audit?limit=3", &admin_access, None)
        .await;
    let cursor = page1["next_cursor"]
        .as_i64()
        .expect("a full page has a cursor");
    let (_, page2) = t
        .authed(
            Method::GET,
            &format!("/api/admin/audit?limit=3&cursor={cursor}"),
            &admin_access,
            None,
        )
        .await;
    let ids = |p: &Value| {
        p["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&page1).len(), 3);
    assert!(ids(&page2).iter().all(|id| !ids(&page1).contains(id)));
    let (s, _) = t
        .authed(Method::GET, "/api/admin/audit?limit=0", &admin_access, None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}
