//! The admin API: only system administrators, every call audited; user
//! search, block, unlock, force logout, erasure; sessions; `/metrics` access.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{code, tokens, Truxe, PASSWORD};

const ROUTES: [(&str, &str); 10] = [
    ("GET", "/api/admin/users"),
    ("GET", "/api/admin/users/{id}"),
    ("DELETE", "/api/admin/users/{id}"),
    ("POST", "/api/admin/users/{id}/block"),
    ("POST", "/api/admin/users/{id}/unblock"),
    ("POST", "/api/admin/users/{id}/unlock"),
    ("POST", "/api/admin/users/{id}/logout"),
    ("GET", "/api/admin/sessions"),
    ("DELETE", "/api/admin/sessions/{id}"),
    ("GET", "/api/admin/audit"),
];

#[tokio::test]
async fn admin_routes_refuse_everyone_else_and_audit_every_call() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root@example.com").await;
    let (user, _) = t.register("plain@example.com").await;
    let target = "00000000-0000-4000-8000-000000000000";
    for (m, path) in ROUTES {
        let path = path.replace("{id}", target);
        let method: Method = m.parse().unwrap();
        let anon = t
            .http
            .request(method.clone(), format!("{}{path}", t.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(
            anon.status(),
            StatusCode::UNAUTHORIZED,
            "{m} {path} anonymous"
        );
        let (s, b) = t.authed(method.clone(), &path, &user, None).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{m} {path} as a user: {b}"
        );
        let (s, b) = t.authed(method.clone(), &path, "garbage", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {path} bad token: {b}");
    }
    // Operations routes: /metrics too.
    let r = t
        .http
        .get(format!("{}/metrics", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.authed(Method::GET, "/metrics", &user, None).await.0,
        StatusCode::FORBIDDEN
    );
    let r = t
        .http
        .get(format!("{}/metrics", t.url()))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("truxe_auth_events_total"));

    let (s, b) = t
        .authed(
            Method::GET,
            "/api/admin/audit?action=admin_request&limit=500",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let events = b["events"].as_array().unwrap();
    let count = |outcome: &str| events.iter().filter(|e| e["outcome"] == outcome).count();
    assert_eq!(count("denied"), ROUTES.len(), "each user attempt: {b}");
    assert_eq!(
        count("failure"),
        2 * ROUTES.len(),
        "each anonymous and bad-token attempt"
    );
    // The audit read itself is recorded after it answers; the next read shows it.
    let (_, b) = t
        .authed(
            Method::GET,
            "/api/admin/audit?action=admin_request&outcome=success",
            &admin,
            None,
        )
        .await;
    let e = &b["events"][0];
    assert_eq!(e["details"]["route"], "/api/admin/audit");
    assert_eq!(e["details"]["method"], "GET");
    assert_eq!(e["details"]["status"], 200);
    assert!(!b.to_string().contains(&admin), "no token in the trail");
}

#[tokio::test]
async fn metrics_accept_the_scrape_token() {
    let token = "m3tr1cs-Scrape-Token-0123456789abcdef";
    let t = Truxe::start(&[("TRUXE_METRICS_TOKEN", token)]).await;
    let get = |bearer: &str| {
        t.http
            .get(format!("{}/metrics", t.url()))
            .bearer_auth(bearer.to_owned())
            .send()
    };
    assert_eq!(get(token).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get("m3tr1cs-Scrape-Token-0123456789abcdeX")
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // A short token is refused at start-up.
    let out = t.cli(&["check-config"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cmd = t.command();
    cmd.env("TRUXE_METRICS_TOKEN", "short").arg("check-config");
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRUXE_METRICS_TOKEN"));
}

async fn user_id(t: &Truxe, access: &str) -> String {
    let (_, me) = t.authed(Method::GET, "/auth/me", access, None).await;
    me["user"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn administrators_manage_users_and_sessions() {
    let t = Truxe::start(&[]).await;
    let (admin_id, admin) = t.admin("root@example.com").await;
    let (eve, _) = t.register("eve_100%@example.com").await;
    let (_, _) = t.register("evelyn@example.com").await;
    let (frank, _) = t.register("frank@example.com").await;
    let eve_id = user_id(&t, &eve).await;
    let frank_id = user_id(&t, &frank).await;

    // Search: substring, with LIKE wildcards taken literally; pages.
    let search = |q: &str| {
        let q = q.to_owned();
        let t = &t;
        let admin = admin.clone();
        async move {
            let (s, b) = t
                .authed(Method::GET, &format!("/api/admin/users?{q}"), &admin, None)
                .await;
            assert_eq!(s, StatusCode::OK, "{q}: {b}");
            b["data"]["users"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["email"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let mut eves = search("q=EVE").await;
    eves.sort();
    assert_eq!(eves, ["eve_100%@example.com", "evelyn@example.com"]);
    assert_eq!(
        search("q=e_1").await,
        ["eve_100%@example.com"],
        "`_` is literal"
    );
    assert_eq!(
        search("q=100%25").await,
        ["eve_100%@example.com"],
        "`%` is literal"
    );
    assert!(search("q=%25").await.len() == 1);
    assert_eq!(search("limit=2").await.len(), 2);
    let (s, b) = t
        .authed(Method::GET, "/api/admin/users?limit=0", &admin, None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = t
        .authed(Method::GET, "/api/admin/users?bogus=1", &admin, None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Detail with sessions.
    let (s, b) = t
        .authed(
            Method::GET,
            &format!("/api/admin/users/{eve_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["isAdmin"], false);
    assert_eq!(b["data"]["sessions"].as_array().unwrap().len(), 1);
    assert!(b["data"]["user"].get("passwordHash").is_none() && !b.to_string().contains("argon2"));

    // Block: tokens stop, login is refused; unblock restores login.
    let (s, b) = t
        .authed(
            Method::POST,
            &format!("/api/admin/users/{eve_id}/block"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["user"]["status"], "disabled");
    assert_ne!(t.me(&eve).await, StatusCode::OK);
    let (s, b) = t.login("eve_100%@example.com", PASSWORD).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::FORBIDDEN, "account_disabled"),
        "{b}"
    );
    let (s, b) = t
        .authed(
            Method::GET,
            "/api/admin/users?status=disabled",
            &admin,
            None,
        )
        .await;
    assert_eq!(b["data"]["users"].as_array().unwrap().len(), 1, "{s} {b}");
    t.authed(
        Method::POST,
        &format!("/api/admin/users/{eve_id}/unblock"),
        &admin,
        None,
    )
    .await;
    let (s, b) = t.login("eve_100%@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (eve, _) = tokens(&b);
    let (s, _) = t
        .authed(
            Method::POST,
            &format!("/api/admin/users/{admin_id}/block"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no self-block");

    // Sessions: list (all, or one user's), end one, force logout.
    let (_, b) = t
        .authed(
            Method::GET,
            &format!("/api/admin/sessions?userId={frank_id}"),
            &admin,
            None,
        )
        .await;
    let frank_sessions = b["data"]["sessions"].as_array().unwrap();
    assert_eq!(frank_sessions.len(), 1, "{b}");
    assert_eq!(frank_sessions[0]["userId"], frank_id.as_str());
    let (_, b) = t
        .authed(Method::GET, "/api/admin/sessions", &admin, None)
        .await;
    assert!(b["data"]["sessions"].as_array().unwrap().len() >= 4, "{b}");
    let sid = frank_sessions[0]["id"].as_str().unwrap().to_owned();
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/admin/sessions/{sid}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.me(&frank).await, StatusCode::UNAUTHORIZED);
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/admin/sessions/{sid}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = t
        .authed(
            Method::POST,
            &format!("/api/admin/users/{eve_id}/logout"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["revoked_sessions"], 1);
    assert_eq!(t.me(&eve).await, StatusCode::UNAUTHORIZED);

    // Erasure: refused while frank solely owns an organization.
    let (_, b) = t.login("frank@example.com", PASSWORD).await;
    let (frank, _) = tokens(&b);
    let (s, org) = t
        .authed(
            Method::POST,
            "/organizations",
            &frank,
            Some(json!({"name": "Frank's"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let org_id = org["data"]["organization"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.authed(
        Method::POST,
        &format!("/organizations/{org_id}/invite"),
        &frank,
        Some(json!({"email": "eve_100%@example.com"})),
    )
    .await;
    let (s, b) = t
        .authed(
            Method::DELETE,
            &format!("/api/admin/users/{frank_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "last_owner"), "{b}");
    t.authed(
        Method::DELETE,
        &format!("/organizations/{org_id}"),
        &frank,
        None,
    )
    .await;
    // Eve is erased: the account, her sessions, the invitation to her address,
    // and her IP and user agent in the audit trail.
    let (s, b) = t
        .authed(
            Method::DELETE,
            &format!("/api/admin/users/{eve_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = t
        .authed(
            Method::GET,
            &format!("/api/admin/users/{eve_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        t.login("eve_100%@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, b) = t
        .authed(
            Method::GET,
            &format!("/api/admin/audit?actor={eve_id}&limit=500"),
            &admin,
            None,
        )
        .await;
    let events = b["events"].as_array().unwrap();
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e["ip"], Value::Null, "{e}");
        assert_eq!(e["user_agent"], Value::Null, "{e}");
    }
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/admin/users/{admin_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no self-deletion");
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/admin/users/{eve_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
