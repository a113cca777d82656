//! Registration, login, lockout and input validation.

use reqwest::StatusCode;
use serde_json::json;

use crate::server::{code, Truxe, PASSWORD};

#[tokio::test]
async fn register_login_and_me_use_the_original_shapes() {
    let t = Truxe::start(&[]).await;
    let (s, body) = t.post("/api/auth/register", json!({"email": "Alice@Example.com", "password": PASSWORD, "metadata": {"plan": "pro"}})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(body["success"], true);
    let user = &body["data"]["user"];
    assert_eq!(user["email"], "alice@example.com");
    assert_eq!(user["emailVerified"], false);
    assert_eq!(user["status"], "active");
    assert_eq!(user["metadata"]["plan"], "pro");
    assert!(user["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(user.get("password_hash").is_none() && !body.to_string().contains("argon2"));
    let tokens = &body["data"]["tokens"];
    assert_eq!(tokens["expires_in"], 900);
    assert!(tokens["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("trt_"));

    let (s, body) = t.login("ALICE@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let access = body["data"]["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, me) = t
        .authed(reqwest::Method::GET, "/auth/me", &access, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["user"]["email"], "alice@example.com");
    assert_eq!(me["session"]["current"], true);

    // Data survives a restart.
    let mut t = t;
    t.restart().await;
    assert_eq!(
        t.login("alice@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
    assert_eq!(
        t.me(&access).await,
        StatusCode::OK,
        "tokens stay valid across restarts"
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    // Many refused registrations from one address: a budget that fits them.
    let t = Truxe::start(&[("TRUXE_RATE_LIMIT_REGISTER_IP", "1000/1h")]).await;
    let (s, body) = t
        .post(
            "/api/auth/register",
            json!({"email": "bob@example.com", "password": "short"}),
        )
        .await;
    assert_eq!((s, code(&body)), (StatusCode::BAD_REQUEST, "weak_password"));
    assert_eq!(body["success"], false);
    assert_eq!(
        body["error"]["details"].as_array().unwrap().len(),
        3,
        "{body}"
    );
    for email in [
        "",
        "no-at-sign",
        "a@b",
        "two@@example.com",
        "sp ace@example.com",
    ] {
        let (s, body) = t
            .post(
                "/api/auth/register",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(
            (s, code(&body)),
            (StatusCode::BAD_REQUEST, "validation_error"),
            "{email:?}"
        );
    }
    t.register("bob@example.com").await;
    let (s, body) = t
        .post(
            "/api/auth/register",
            json!({"email": "BOB@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!((s, code(&body)), (StatusCode::CONFLICT, "email_taken"));
    let (s, body) = t
        .post(
            "/api/auth/register",
            json!({"email": "c@example.com", "password": PASSWORD, "metadata": [1]}),
        )
        .await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::BAD_REQUEST, "validation_error")
    );
    // Malformed, wrong type, unknown field, missing body, oversized body.
    let raw = |body: &'static str| {
        t.http
            .post(format!("{}/api/auth/login", t.url()))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for bad in [
        "{",
        "{\"email\":1,\"password\":\"x\"}",
        "{\"email\":\"a@b.c\",\"password\":\"x\",\"admin\":true}",
        "",
    ] {
        let r = raw(bad).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(code(&body), "invalid_json");
    }
    let huge = format!(
        "{{\"email\":\"a@b.c\",\"password\":\"{}\"}}",
        "x".repeat(100_000)
    );
    let r = t
        .http
        .post(format!("{}/api/auth/login", t.url()))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = t
        .http
        .post(format!("{}/api/auth/login", t.url()))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = t
        .http
        .get(format!("{}/nope", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(&r.json().await.unwrap()), "not_found");
    // Unicode passwords work.
    let (s, _) = t
        .post(
            "/api/auth/register",
            json!({"email": "u@example.com", "password": "Pässwörd-9ÜnïcØde"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        t.login("u@example.com", "Pässwörd-9ÜnïcØde").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let t = Truxe::start(&[]).await;
    t.register("carol@example.com").await;
    let (s1, b1) = t.login("carol@example.com", "Wrong-Password-1").await;
    let (s2, b2) = t.login("nobody@example.com", "Wrong-Password-1").await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(b1["error"], b2["error"]);
    assert_eq!(code(&b1), "invalid_credentials");
}

#[tokio::test]
async fn lockout_after_five_failures_and_admin_unlock() {
    let t = Truxe::start(&[]).await;
    let (_, dave) = t
        .post(
            "/api/auth/register",
            json!({"email": "dave@example.com", "password": PASSWORD}),
        )
        .await;
    let dave_id = dave["data"]["user"]["id"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        assert_eq!(
            t.login("dave@example.com", "Wrong-Password-1").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: only someone with the right password learns about the lock.
    let (s, body) = t.login("dave@example.com", PASSWORD).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::LOCKED, "account_locked"),
        "{body}"
    );
    assert!(body["error"]["unlock_at"].as_str().unwrap().ends_with('Z'));
    let (s, body) = t.login("dave@example.com", "Wrong-Password-1").await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );

    // Unlocking needs the admin role.
    let (_, eve) = t
        .post(
            "/api/auth/register",
            json!({"email": "eve@example.com", "password": PASSWORD}),
        )
        .await;
    let eve_token = eve["data"]["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let unlock = format!("/api/admin/users/{dave_id}/unlock");
    let (s, body) = t
        .authed(reqwest::Method::POST, &unlock, &eve_token, None)
        .await;
    assert_eq!((s, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));

    // An admin created with the CLI (password on stdin) can.
    let out = t.cli(
        &["user", "create", "--email", "root@example.com", "--admin"],
        Some("Admin-Password-9\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = t.cli(
        &["user", "create", "--email", "dave@example.com"],
        Some("Whatever-Pass-9\n"),
    );
    assert!(
        !out.status.success(),
        "a duplicate user is refused by the CLI too"
    );
    let (s, admin) = t.login("root@example.com", "Admin-Password-9").await;
    assert_eq!(s, StatusCode::OK, "{admin}");
    let admin_token = admin["data"]["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = t
        .authed(
            reqwest::Method::POST,
            "/api/admin/users/00000000-0000-4000-8000-000000000000/unlock",
            &admin_token,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = t
        .authed(reqwest::Method::POST, &unlock, &admin_token, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        t.login("dave@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn signup_can_be_disabled_and_production_refuses_weak_secrets() {
    let t = Truxe::start(&[("ENABLE_SIGNUP", "false")]).await;
    let (s, body) = t
        .post(
            "/api/auth/register",
            json!({"email": "x@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!((s, code(&body)), (StatusCode::FORBIDDEN, "signup_disabled"));

    let mut cmd = t.command();
    cmd.env("TRUXE_ENV", "production")
        .env("COOKIE_SECRET", "changeme")
        .arg("check-config");
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for name in [
        "COOKIE_SECRET",
        "MFA_ENCRYPTION_KEY",
        "TRUXE_ARGON2_MEMORY_KIB",
        "JWT_ISSUER",
        // Issue 18: plain HTTP only behind a declared TLS proxy.
        "TRUXE_TLS_CERT",
    ] {
        assert!(err.contains(name), "should name {name}: {err}");
    }
    assert!(!err.contains("changeme"), "secrets are not echoed: {err}");
    let mut cmd = t.command();
    cmd.env("TRUXE_ENV", "production")
        .env("TRUXE_BEHIND_TLS_PROXY", "true")
        .env("COOKIE_SECRET", "8fJ2kq9ZxP0wLm3Tn7Vb4Rc6Yd1Hs5Ge")
        .env("MFA_ENCRYPTION_KEY", "Qw7eR2tY9uI4oP1aS6dF3gH8jK5lZ0xC")
        .env("TRUXE_ARGON2_MEMORY_KIB", "19456")
        .env("TRUXE_ARGON2_ITERATIONS", "2")
        .env("JWT_ISSUER", "https://id.example.com")
        .arg("check-config");
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn older_hash_parameters_are_upgraded_at_login() {
    use sqlx::{Connection, Row};
    let mut t = Truxe::start(&[]).await;
    t.register("vera@example.com").await;
    let stored = |t: &Truxe| {
        let url = t.database_url();
        async move {
            sqlx::any::install_default_drivers();
            let mut c = sqlx::AnyConnection::connect(&url).await.unwrap();
            let row = sqlx::query("SELECT password_hash FROM users WHERE email = $1")
                .bind("vera@example.com")
                .fetch_one(&mut c)
                .await
                .unwrap();
            row.try_get::<String, _>(0).unwrap()
        }
    };
    assert!(
        stored(&t).await.contains("m=1024,t=1"),
        "registered with the cheap test cost"
    );
    t.env
        .push(("TRUXE_ARGON2_MEMORY_KIB".into(), "2048".into()));
    t.env.push(("TRUXE_ARGON2_ITERATIONS".into(), "2".into()));
    t.restart().await;
    assert_eq!(
        t.login("vera@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
    let upgraded = stored(&t).await;
    assert!(
        upgraded.starts_with("$argon2id$") && upgraded.contains("m=2048,t=2"),
        "{upgraded}"
    );
    assert_eq!(
        t.login("vera@example.com", PASSWORD).await.0,
        StatusCode::OK,
        "the new hash verifies"
    );
}

/// Issue 18: `409 email_taken` stays (the original's contract) but each one
/// costs the address several registrations of its budget, so probing which
/// addresses have accounts runs out fast.
#[tokio::test]
async fn issue_18_probing_taken_addresses_spends_the_registration_budget() {
    let env = [("TRUXE_RATE_LIMIT_REGISTER_IP", "10/1h")];
    let t = Truxe::start(&env).await;
    t.register("taken@example.com").await;
    let register = |email: &str| {
        t.post(
            "/api/auth/register",
            json!({"email": email, "password": PASSWORD}),
        )
    };
    for _ in 0..2 {
        let (s, b) = register("taken@example.com").await;
        assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "email_taken"), "{b}");
    }
    let (s, b) = register("free@example.com").await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{b}"
    );
    // Control: the same budget takes ten registrations of free addresses.
    let t = Truxe::start(&env).await;
    for i in 0..10 {
        let (s, b) = t
            .post(
                "/api/auth/register",
                json!({"email": format!("u{i}@example.com"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
}
