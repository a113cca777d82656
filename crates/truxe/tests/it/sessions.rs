//! Refresh rotation, reuse detection, revocation and session limits.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::server::{code, tokens, Truxe, PASSWORD};

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    // No retry grace: any second use of a spent token is treated as theft.
    let t = Truxe::start(&[("TRUXE_REFRESH_REUSE_GRACE", "0s")]).await;
    let (access1, refresh1) = t.register("frank@example.com").await;
    let (s, body) = t.refresh(&refresh1).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (access2, refresh2) = tokens(&body);
    assert_ne!(refresh1, refresh2);
    assert_eq!(t.me(&access2).await, StatusCode::OK);
    assert_eq!(
        t.me(&access1).await,
        StatusCode::OK,
        "old access tokens live until they expire"
    );

    // Presented again: reuse.
    let (s, body) = t.refresh(&refresh1).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::UNAUTHORIZED, "refresh_token_reused"),
        "{body}"
    );
    // The whole family is dead: the newest refresh token and its access tokens.
    let (s, _) = t.refresh(&refresh2).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(t.me(&access2).await, StatusCode::UNAUTHORIZED);
    // Garbage and unknown tokens.
    for bad in [
        "",
        "trt_",
        "trt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "not-a-token",
    ] {
        assert_eq!(t.refresh(bad).await.0, StatusCode::UNAUTHORIZED, "{bad:?}");
    }
}

#[tokio::test]
async fn reuse_after_the_default_grace_revokes_the_family() {
    let t = Truxe::start(&[]).await;
    let (_, refresh1) = t.register("late@example.com").await;
    let spent = tokio::time::Instant::now();
    let (s, body) = t.refresh(&refresh1).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, refresh2) = tokens(&body);
    // At once, a second use is a retry that lost a race: refused, and
    // the session lives on (its newest token still works).
    let (s, body) = t.refresh(&refresh1).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_ne!(code(&body), "refresh_token_reused", "{body}");
    let (s, body) = t.refresh(&refresh2).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (access3, refresh3) = tokens(&body);
    // Once the 2 s grace is over (kept in whole seconds: 3 s is past it
    // whatever the rounding), the same spent token is theft: the whole
    // family ends, the newest pair included.
    tokio::time::sleep_until(spent + std::time::Duration::from_secs(3)).await;
    let (s, body) = t.refresh(&refresh1).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::UNAUTHORIZED, "refresh_token_reused"),
        "{body}"
    );
    assert_eq!(t.refresh(&refresh3).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(t.me(&access3).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_have_one_winner() {
    // A grace no loaded machine outlasts: all eight fall within it.
    let t = Truxe::start(&[("TRUXE_REFRESH_REUSE_GRACE", "60s")]).await;
    let (_, refresh) = t.register("grace@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, rt) = (t.http.clone(), t.url(), refresh.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/auth/refresh"))
                .json(&json!({"refreshToken": rt}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (s, body) = task.await.unwrap();
        if s == StatusCode::OK {
            winners.push(tokens(&body));
        } else {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh wins");
    // Within the retry grace the losers did not end the session: the winner's pair works.
    let (access, next) = winners.pop().unwrap();
    assert_eq!(t.me(&access).await, StatusCode::OK);
    assert_eq!(t.refresh(&next).await.0, StatusCode::OK);
}

#[tokio::test]
async fn logout_and_revoke_take_effect_at_once() {
    let t = Truxe::start(&[]).await;
    let (access, refresh) = t.register("heidi@example.com").await;
    let (s, _) = t.authed(Method::POST, "/auth/logout", &access, None).await;
    assert_eq!(s, StatusCode::OK);
    let r = t
        .http
        .get(format!("{}/auth/me", t.url()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(t.refresh(&refresh).await.0, StatusCode::UNAUTHORIZED);

    // revokeAll ends every session of the user.
    let (_, b1) = t.login("heidi@example.com", PASSWORD).await;
    let (_, b2) = t.login("heidi@example.com", PASSWORD).await;
    let ((a1, r1), (a2, _)) = (tokens(&b1), tokens(&b2));
    let (s, body) = t
        .authed(
            Method::POST,
            "/auth/revoke",
            &a2,
            Some(json!({"revokeAll": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["revoked_sessions"], 2);
    assert_eq!(t.me(&a1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t.me(&a2).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t.refresh(&r1).await.0, StatusCode::UNAUTHORIZED);
    // Missing, malformed and foreign-looking tokens.
    let r = t
        .http
        .get(format!("{}/auth/me", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for bad in ["x", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        assert_eq!(t.me(bad).await, StatusCode::UNAUTHORIZED, "{bad}");
    }
}

#[tokio::test]
async fn sessions_are_listed_limited_and_ended() {
    let t = Truxe::start(&[("MAX_CONCURRENT_SESSIONS", "2")]).await;
    let (first, _) = t.register("ivan@example.com").await;
    let (_, b) = t.login("ivan@example.com", PASSWORD).await;
    let (second, _) = tokens(&b);
    let (_, b) = t.login("ivan@example.com", PASSWORD).await;
    let (third, _) = tokens(&b);
    assert_eq!(
        t.me(&first).await,
        StatusCode::UNAUTHORIZED,
        "the oldest session was evicted"
    );
    let (s, body) = t.authed(Method::GET, "/auth/sessions", &third, None).await;
    assert_eq!(s, StatusCode::OK);
    let list = body["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    let other = list.iter().find(|x| x["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another user cannot end it.
    let (mallory, _) = t.register("mallory@example.com").await;
    let (s, body) = t
        .authed(
            Method::DELETE,
            &format!("/auth/sessions/{other}"),
            &mallory,
            None,
        )
        .await;
    assert_eq!((s, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    assert_eq!(t.me(&second).await, StatusCode::OK);
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/auth/sessions/{other}"),
            &third,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.me(&second).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t.me(&third).await, StatusCode::OK);
}

/// Issue 21: refreshes arriving together are committed together (one
/// transaction for the group); each still gets its own outcome, and only
/// the rotations that happened are in the audit trail.
#[tokio::test]
async fn refreshes_committed_together_each_get_their_own_outcome() {
    let t = Truxe::start(&[
        ("TRUXE_REFRESH_REUSE_GRACE", "60s"),
        ("TRUXE_RATE_LIMIT_REGISTER_IP", "100/1m"),
        ("TRUXE_RATE_LIMIT_REFRESH_IP", "1000/1m"),
    ])
    .await;
    let (_, admin) = t.admin("root@example.com").await;
    let mut fresh = Vec::new();
    for i in 0..24 {
        let email = format!("group{i}@example.com");
        let (access, refresh) = t.register(&email).await;
        let me = t.authed(Method::GET, "/auth/me", &access, None).await.1;
        fresh.push((me["user"]["id"].as_str().unwrap().to_owned(), refresh));
    }
    let (ended_access, ended) = t.register("ended@example.com").await;
    assert_eq!(
        t.authed(Method::POST, "/auth/logout", &ended_access, None)
            .await
            .0,
        StatusCode::OK
    );
    // All at once: 24 fresh tokens, one of them twice, and an ended session's.
    let mut presented: Vec<String> = fresh.iter().map(|(_, r)| r.clone()).collect();
    presented.push(fresh[0].1.clone());
    presented.push(ended.clone());
    let answers = futures::future::join_all(presented.iter().map(|rt| {
        let (http, url, rt) = (t.http.clone(), t.url(), rt.clone());
        async move {
            let r = http
                .post(format!("{url}/auth/refresh"))
                .json(&json!({"refreshToken": rt}))
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    }))
    .await;
    let (dup, last) = (&answers[24], &answers[25]);
    assert_eq!(last.0, StatusCode::UNAUTHORIZED, "{}", last.1);
    assert_eq!(
        [answers[0].0, dup.0]
            .iter()
            .filter(|s| **s == StatusCode::OK)
            .count(),
        1,
        "one of the two uses of one token wins"
    );
    let mut next = std::collections::HashSet::new();
    for (i, (s, body)) in answers[..24].iter().enumerate() {
        let body = if i == 0 && *s != StatusCode::OK {
            &dup.1
        } else {
            body
        };
        let (access, refresh) = tokens(body);
        assert!(
            next.insert(refresh.clone()),
            "every rotation has its own successor"
        );
        assert_eq!(t.me(&access).await, StatusCode::OK);
        // The successor is live: rotating it again works.
        assert_eq!(t.refresh(&refresh).await.0, StatusCode::OK);
    }
    // One `refresh` event per rotation of the group and of the second round,
    // each naming its user and session; none for the losers.
    let (s, b) = t
        .authed(
            Method::GET,
            "/api/admin/audit?action=refresh&limit=500",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let events = b["events"].as_array().unwrap();
    assert_eq!(events.len(), 48, "{b}");
    for (user, _) in &fresh {
        let mine: Vec<_> = events.iter().filter(|e| e["actor"] == *user).collect();
        assert_eq!(mine.len(), 2, "{user}: {b}");
        assert!(mine
            .iter()
            .all(|e| e["target"].is_string() && e["outcome"] == "success"));
    }
}

/// Issue 21: verified requests may be answered from memory (SQLite), so
/// every way a session ends or an account changes must take effect before
/// it answers. Each case primes the memory (two verified requests), makes
/// the change, and checks the very next request.
#[tokio::test]
async fn a_session_answered_from_memory_ends_at_once() {
    let t = Truxe::start(&[("TRUXE_RATE_LIMIT_LOGIN_IP", "1000/1m")]).await;
    let (admin_id, admin) = t.admin("root-cache@example.com").await;
    let _ = admin_id;
    let (_, _) = t.register("cache@example.com").await;
    let signed_in = || async {
        let (s, b) = t.login("cache@example.com", PASSWORD).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let access = tokens(&b).0;
        for _ in 0..2 {
            assert_eq!(t.me(&access).await, StatusCode::OK);
        }
        access
    };
    let user_id = {
        let a = signed_in().await;
        t.authed(Method::GET, "/auth/me", &a, None).await.1["user"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Logout.
    let a = signed_in().await;
    t.authed(Method::POST, "/auth/logout", &a, None).await;
    assert_eq!(t.me(&a).await, StatusCode::UNAUTHORIZED, "logout");
    // An administrator ends the session.
    let a = signed_in().await;
    let sid = t.authed(Method::GET, "/auth/me", &a, None).await.1["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/admin/sessions/{sid}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        t.me(&a).await,
        StatusCode::UNAUTHORIZED,
        "admin end session"
    );
    // Blocked, then unblocked: refused at once, and the unblock shows at once
    // in a new session.
    let a = signed_in().await;
    let block = format!("/api/admin/users/{user_id}/block");
    assert_eq!(
        t.authed(Method::POST, &block, &admin, None).await.0,
        StatusCode::OK
    );
    assert_ne!(t.me(&a).await, StatusCode::OK, "blocked");
    let unblock = format!("/api/admin/users/{user_id}/unblock");
    assert_eq!(
        t.authed(Method::POST, &unblock, &admin, None).await.0,
        StatusCode::OK
    );
    // Revoke all from another session.
    let a = signed_in().await;
    let b = signed_in().await;
    let (s, _) = t
        .authed(
            Method::POST,
            "/auth/revoke",
            &b,
            Some(json!({"revokeAll": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.me(&a).await, StatusCode::UNAUTHORIZED, "revoke all");
    // A password change ends the other sessions.
    let a = signed_in().await;
    let b = signed_in().await;
    let (s, body) = t
        .authed(
            Method::PUT,
            "/api/auth/password/change",
            &b,
            Some(json!({"currentPassword": PASSWORD, "newPassword": PASSWORD.to_owned() + "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(t.me(&a).await, StatusCode::UNAUTHORIZED, "password change");
    assert_eq!(t.me(&b).await, StatusCode::OK, "the changing session stays");
    // Deleted by an administrator.
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/admin/users/{user_id}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.me(&b).await, StatusCode::UNAUTHORIZED, "deleted");
}

/// Issue 21: a token's signature is checked once per key load, but its
/// expiry on every request: a token used until it expires is refused when
/// it does (10 s life, 5 s leeway), while its session lives on.
#[tokio::test]
async fn a_token_verified_before_still_expires() {
    let t = Truxe::start(&[("JWT_ACCESS_TOKEN_TTL", "10s")]).await;
    let (access, refresh) = t.register("expiry@example.com").await;
    let issued = tokio::time::Instant::now();
    assert_eq!(t.me(&access).await, StatusCode::OK);
    testkit::eventually(
        "the token to expire",
        std::time::Duration::from_secs(40),
        || async { (t.me(&access).await == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;
    assert!(
        issued.elapsed() >= std::time::Duration::from_secs(9),
        "not before its time"
    );
    // The session itself is fine: a refresh gives a working token.
    let (s, body) = t.refresh(&refresh).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(t.me(&tokens(&body).0).await, StatusCode::OK);
}

/// A server keeps the sessions of verified requests in memory on SQLite
/// and hears only of its own writes. A second server on the same file
/// could end a session the first would go on accepting, so it is refused;
/// several instances run on PostgreSQL, which nothing caches.
#[tokio::test]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let t = Truxe::start(&[]).await;
    if t.on_postgres() {
        return;
    }
    let (access, _) = t.register("solo@example.com").await;
    let mut cmd = t.command();
    cmd.env("PORT", testkit::free_port().to_string())
        .arg("serve");
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap()
    })
    .await
    .expect("the second server exits at once");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another `truxe serve`"), "{err}");
    assert!(err.contains("PostgreSQL"), "says what to do instead: {err}");
    // Control: the first serves on, and a server with a file of its own
    // starts.
    assert_eq!(t.me(&access).await, StatusCode::OK);
    let other = Truxe::start(&[]).await;
    assert_eq!(
        other.post("/api/auth/login", json!({})).await.0,
        StatusCode::BAD_REQUEST
    );
}

/// Issue 21: several instances on one PostgreSQL. Nothing there is kept
/// in memory between requests, so a revocation made through one instance
/// holds on the other for the very next request: logout, an administrator
/// ending a session, and a refresh-token replay detected on one instance.
#[tokio::test]
async fn revocation_on_one_instance_holds_on_another_at_once() {
    let a = Truxe::start(&[("TRUXE_REFRESH_REUSE_GRACE", "0s")]).await;
    if !a.on_postgres() {
        // One server per SQLite file (a_second_server_on_one_sqlite_file_is_refused).
        return;
    }
    let b_port = testkit::free_port();
    let mut cmd = a.command();
    // The same keys and database, and the same issuer, as instances
    // behind one name are configured.
    cmd.env("PORT", b_port.to_string())
        .env("JWT_ISSUER", a.url())
        .arg("serve");
    let mut b = testkit::ChildGuard::spawn("truxe-b", cmd, a.dir.path());
    let b_url = format!("http://127.0.0.1:{b_port}");
    testkit::wait_http_ok(
        &format!("{b_url}/ready"),
        std::time::Duration::from_secs(60),
    )
    .await;
    b.assert_running(a.dir.path());
    let me_on_b = |token: String| {
        let http = a.http.clone();
        let url = format!("{b_url}/auth/me");
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let (_, admin) = a.admin("root-two@example.com").await;
    a.register("two@example.com").await;
    let signed_in = || async {
        let (s, body) = a.login("two@example.com", PASSWORD).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (access, refresh) = tokens(&body);
        // Control: B accepts it (twice, so anything B might keep is warm).
        for _ in 0..2 {
            assert_eq!(me_on_b(access.clone()).await, StatusCode::OK);
        }
        (access, refresh)
    };
    // Logout on A.
    let (access, _) = signed_in().await;
    a.authed(Method::POST, "/auth/logout", &access, None).await;
    assert_eq!(
        me_on_b(access).await,
        StatusCode::UNAUTHORIZED,
        "logout on A"
    );
    // An administrator on A ends the session.
    let (access, _) = signed_in().await;
    let sid = a.authed(Method::GET, "/auth/me", &access, None).await.1["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = a
        .authed(
            Method::DELETE,
            &format!("/api/admin/sessions/{sid}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        me_on_b(access).await,
        StatusCode::UNAUTHORIZED,
        "ended by an admin on A"
    );
    // A refresh token replayed on A ends the session B was serving.
    let (access, refresh) = signed_in().await;
    assert_eq!(a.refresh(&refresh).await.0, StatusCode::OK);
    assert_eq!(a.refresh(&refresh).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        me_on_b(access).await,
        StatusCode::UNAUTHORIZED,
        "replay on A"
    );
}

/// Sessions are not kept for ever: the server's own sweep deletes one
/// that expired longer ago than `TRUXE_SESSION_RETENTION`, with its refresh
/// tokens, and audits it as `sessions_purged`. A live session and one
/// expired within the retention stay. (Expiry is set in the database: the
/// shortest session the configuration allows lasts 10 s.)
#[tokio::test]
async fn sessions_expired_past_their_retention_are_purged_with_their_tokens() {
    use sqlx::{Connection, Row};
    let t = Truxe::start(&[
        ("TRUXE_SESSION_RETENTION", "1h"),
        ("TRUXE_SESSION_PURGE_INTERVAL", "200ms"),
    ])
    .await;
    let (_, spent) = t.register("old@example.com").await;
    let (s, body) = t.refresh(&spent).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, old_refresh) = tokens(&body);
    let (_, live_refresh) = t.register("live@example.com").await;
    let (_, recent_refresh) = t.register("recent@example.com").await;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&t.database_url())
        .await
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (email, expired) in [
        ("old@example.com", now - 2 * 3600),
        ("recent@example.com", now - 1800),
    ] {
        sqlx::query(
            "UPDATE sessions SET expires_at = $1
             WHERE user_id = (SELECT id FROM users WHERE email = $2)",
        )
        .bind(expired)
        .bind(email)
        .execute(&mut db)
        .await
        .unwrap();
    }
    // An account's sessions and their refresh tokens, and refresh tokens
    // of any account left without their session.
    let count = |email: &'static str| {
        let url = t.database_url();
        async move {
            let mut db = sqlx::AnyConnection::connect(&url).await.unwrap();
            let row = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id),
                        (SELECT COUNT(*) FROM refresh_tokens r
                          JOIN sessions s ON s.id = r.session_id WHERE s.user_id = u.id),
                        (SELECT COUNT(*) FROM refresh_tokens r
                          WHERE NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = r.session_id))
                 FROM users u WHERE u.email = $1",
            )
            .bind(email)
            .fetch_one(&mut db)
            .await
            .unwrap();
            let n = |i| row.try_get::<i64, _>(i).unwrap();
            (n(0), n(1), n(2))
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while count("old@example.com").await.0 != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired session was not purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Gone with its refresh tokens (none is left without a session).
    assert_eq!(count("old@example.com").await, (0, 0, 0));
    assert_eq!(count("live@example.com").await, (1, 1, 0));
    assert_eq!(count("recent@example.com").await, (1, 1, 0));
    let (s, body) = t.refresh(&old_refresh).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let (s, body) = t.refresh(&live_refresh).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = t.refresh(&recent_refresh).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "expired, if not yet purged");
    let purged = sqlx::query(
        "SELECT details FROM audit_events WHERE action = 'sessions_purged' AND actor = 'scheduler'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(purged.len(), 1);
    let details: serde_json::Value =
        serde_json::from_str(&purged[0].try_get::<String, _>(0).unwrap()).unwrap();
    assert_eq!(details["sessions"], 1);
}

/// A retention that is neither a duration nor `off` is refused, naming
/// its variable; `off` and a duration are taken.
#[test]
fn a_session_retention_must_be_a_duration_or_off() {
    let dir = testkit::tempdir();
    let check = |retention: &str| {
        std::process::Command::new(crate::server::TRUXE)
            .env("TRUXE_DATA_DIR", dir.path().join("data"))
            .env("TRUXE_SESSION_RETENTION", retention)
            .arg("check-config")
            .output()
            .unwrap()
    };
    for bad in ["forever", "", "-1d"] {
        let out = check(bad);
        assert!(!out.status.success(), "{bad:?} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("TRUXE_SESSION_RETENTION"), "{bad:?}: {err}");
    }
    for good in ["off", "30d", "0s"] {
        let out = check(good);
        assert!(
            out.status.success(),
            "{good:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
