//! Issue 21: what Truxe mails (text and HTML, in the operator's brand), the
//! security notices, and delivery through Resend's HTTP API, tested against
//! a stand-in that speaks Resend's documented API (`POST /emails`, bearer
//! key, JSON `{from, to, subject, text, html}`, answers `{id}` or
//! `{statusCode, name, message}`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxStatus};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{mailed_token, Truxe, PASSWORD};

const KEY: &str = "re_test_0123456789abcdef";

/// Resend's API on loopback: keeps what it accepted; refuses a wrong key
/// (401) and mail to `refused@…` (422), as Resend does, with its error shape.
async fn resend_stand_in() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let kept: Arc<Mutex<Vec<Value>>> = Arc::default();
    let k = kept.clone();
    let app = axum::Router::new().route(
        "/emails",
        axum::routing::post(move |headers: HeaderMap, body: axum::Json<Value>| {
            let k = k.clone();
            async move {
                let err = |status: AxStatus, name: &str, message: &str| {
                    let body =
                        json!({"statusCode": status.as_u16(), "name": name, "message": message});
                    (status, axum::Json(body))
                };
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some(&format!("Bearer {KEY}"))
                {
                    return err(
                        AxStatus::UNAUTHORIZED,
                        "validation_error",
                        "API key is invalid",
                    );
                }
                let b = body.0;
                let fields_ok = b["from"].is_string()
                    && b["to"].as_array().is_some_and(|t| t.len() == 1)
                    && b["subject"].is_string()
                    && b["text"].is_string();
                if !fields_ok {
                    return err(
                        AxStatus::UNPROCESSABLE_ENTITY,
                        "validation_error",
                        "missing fields",
                    );
                }
                if b["to"][0]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("refused@")
                {
                    return err(
                        AxStatus::UNPROCESSABLE_ENTITY,
                        "validation_error",
                        "recipient refused",
                    );
                }
                k.lock().unwrap().push(b);
                (
                    AxStatus::OK,
                    axum::Json(json!({"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})),
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, kept)
}

#[tokio::test]
async fn resend_delivers_through_its_http_api() {
    let (url, kept) = resend_stand_in().await;
    let env = [
        ("EMAIL_PROVIDER", "resend"),
        ("RESEND_API_KEY", KEY),
        ("TRUXE_RESEND_URL", url.as_str()),
        ("SMTP_FROM", "Acme <no-reply@example.com>"),
        ("TRUXE_BRAND_NAME", "Acme"),
        ("TRUXE_BRAND_COLOR", "#123456"),
    ];
    let t = Truxe::start(&env).await;
    let (access, _) = t.register("ann@example.com").await;
    let (s, b) = t
        .authed(
            Method::POST,
            "/api/auth/email/send-verification",
            &access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let got = kept.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m["from"], "Acme <no-reply@example.com>");
    assert_eq!(m["to"], json!(["ann@example.com"]));
    assert_eq!(m["subject"], "Confirm your email address");
    let text = m["text"].as_str().unwrap();
    let html = m["html"].as_str().unwrap();
    let start = text.find("token=").unwrap() + 6;
    let token: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert!(html.contains(&token) && html.contains("#123456") && text.contains("Acme"));
    // The link works: the mail really carried it.
    let r = t
        .http
        .get(format!("{}/api/auth/email/verify", t.url()))
        .query(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Refused by the provider: the caller hears that mail is unavailable.
    let (refused, _) = t.register("refused@example.com").await;
    let (s, b) = t
        .authed(
            Method::POST,
            "/api/auth/email/send-verification",
            &refused,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{b}");
    // No development mailbox while a provider is set.
    let r = t
        .http
        .get(format!("{}/dev/mailbox", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // A wrong key: refused, nothing accepted, the key not in the log.
    let wrong = [
        ("EMAIL_PROVIDER", "resend"),
        ("RESEND_API_KEY", "re_wrong_key_0000000000"),
        ("TRUXE_RESEND_URL", url.as_str()),
        ("SMTP_FROM", "no-reply@example.com"),
    ];
    let t2 = Truxe::start(&wrong).await;
    let (access, _) = t2.register("bea@example.com").await;
    let before = kept.lock().unwrap().len();
    let (s, _) = t2
        .authed(
            Method::POST,
            "/api/auth/email/send-verification",
            &access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(kept.lock().unwrap().len(), before);
    // Misconfigured: named at start-up.
    for (vars, named) in [
        (
            vec![("EMAIL_PROVIDER", "resend"), ("RESEND_API_KEY", " ")],
            "RESEND_API_KEY",
        ),
        (vec![("EMAIL_PROVIDER", "ses")], "EMAIL_PROVIDER"),
        (vec![("TRUXE_BRAND_COLOR", "red;}")], "TRUXE_BRAND_COLOR"),
        (
            vec![("TRUXE_BRAND_LOGO_URL", "javascript:alert(1)")],
            "TRUXE_BRAND_LOGO_URL",
        ),
    ] {
        let mut cmd = t2.command();
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        let out = cmd.arg("check-config").output().unwrap();
        assert!(!out.status.success(), "{vars:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{vars:?}: {err}");
    }
}

/// The security notices: a password change, a sign-in from a new user
/// agent (named in the mail, escaped in its HTML) and a lockout; a welcome
/// only when asked for.
#[tokio::test]
async fn security_notices_are_mailed() {
    let t = Truxe::start(&[("TRUXE_LOCKOUT_THRESHOLD", "3")]).await;
    let (access, _) = t.register("nia@example.com").await;
    // New device: a user agent none of the account's sessions used.
    let ua = "Evil <b>Browser</b>";
    let r = t
        .http
        .post(format!("{}/api/auth/login", t.url()))
        .header("user-agent", ua)
        .json(&json!({"email": "nia@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let m = wait_for_on(&t, "nia@example.com", "New sign-in to Truxe").await;
    assert!(m["text"].as_str().unwrap().contains(ua), "{m}");
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains("Evil &lt;b&gt;Browser&lt;/b&gt;") && !html.contains("<b>Browser"),
        "{html}"
    );
    // Password changed.
    let (s, b) = t
        .authed(
            Method::PUT,
            "/api/auth/password/change",
            &access,
            Some(json!({"currentPassword": PASSWORD, "newPassword": "Another-Pass-42"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    wait_for_on(&t, "nia@example.com", "Your password was changed").await;
    // Lockout.
    for _ in 0..3 {
        t.login("nia@example.com", "Wrong-Password-1").await;
    }
    let m = wait_for_on(&t, "nia@example.com", "Your account is locked for now").await;
    assert!(m["html"].as_str().unwrap().starts_with("<!doctype html>"));
    // No welcome unless asked for; links still count from the first.
    assert!(!mails_on(&t, "nia@example.com")
        .await
        .iter()
        .any(|m| m["subject"] == "Welcome to Truxe"));
    let t = Truxe::start(&[("TRUXE_MAIL_WELCOME", "true"), ("TRUXE_BRAND_NAME", "Acme")]).await;
    t.register("wes@example.com").await;
    let m = wait_for_on(&t, "wes@example.com", "Welcome to Acme").await;
    assert!(m["html"].as_str().unwrap().contains("Acme"));
    t.post("/auth/magic-link", json!({"email": "wes@example.com"}))
        .await;
    assert!(mailed_token(&t, "wes@example.com", 1)
        .await
        .starts_with("mlt_"));
}

async fn mails_on(t: &Truxe, to: &str) -> Vec<Value> {
    let url = format!("{}/dev/mailbox?to={to}", t.url());
    let body: Value = testkit::get_json(&t.http, &url).await;
    body["messages"].as_array().cloned().unwrap_or_default()
}

async fn wait_for_on(t: &Truxe, to: &str, subject: &str) -> Value {
    testkit::eventually(subject, Duration::from_secs(30), || async {
        mails_on(t, to)
            .await
            .into_iter()
            .find(|m| m["subject"] == subject)
    })
    .await
}
