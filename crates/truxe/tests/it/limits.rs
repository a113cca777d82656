//! Rate limits: per address and per account, with RateLimit headers and
//! 429 + Retry-After beyond the quota.

use reqwest::StatusCode;
use serde_json::json;

use crate::server::{code, Truxe, PASSWORD};

#[tokio::test]
async fn parallel_logins_beyond_the_limit_get_429_with_headers() {
    let t = Truxe::start(&[
        ("TRUXE_RATE_LIMIT_LOGIN_IP", "5/1h"),
        ("TRUXE_RATE_LIMIT_LOGIN_ACCOUNT", "100/1m"),
    ])
    .await;
    t.register("lena@example.com").await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (http, url) = (t.http.clone(), t.url());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/api/auth/login"))
                .json(&json!({"email": "lena@example.com", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            let headers = r.headers().clone();
            (
                r.status(),
                headers,
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for task in tasks {
        let (status, headers, body) = task.await.unwrap();
        assert_eq!(headers["ratelimit-limit"], "5");
        assert!(
            headers.contains_key("ratelimit-remaining") && headers.contains_key("ratelimit-reset")
        );
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert_eq!(code(&body), "rate_limited");
                let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=3600).contains(&retry), "{retry}");
                assert_eq!(headers["ratelimit-remaining"], "0");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, limited), (5, 7));
    // Other routes have their own budgets.
    let (s, _) = t
        .post(
            "/api/auth/register",
            json!({"email": "mia@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
}

#[tokio::test]
async fn per_account_limit_does_not_block_other_accounts() {
    let t = Truxe::start(&[("TRUXE_RATE_LIMIT_LOGIN_ACCOUNT", "3/1h")]).await;
    t.register("nina@example.com").await;
    t.register("omar@example.com").await;
    for _ in 0..3 {
        assert_eq!(
            t.login("nina@example.com", "Wrong-Password-1").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let (s, body) = t.login("NINA@example.com", PASSWORD).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "case does not dodge the limit"
    );
    assert_eq!(
        t.login("omar@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn per_account_limits_cover_the_emailed_and_token_endpoints() {
    let t = Truxe::start(&[
        ("TRUXE_RATE_LIMIT_ACCOUNT", "2/1h"),
        ("TRUXE_RATE_LIMIT_EMAIL_IP", "100/1m"),
    ])
    .await;
    for _ in 0..2 {
        let (s, _) = t
            .post(
                "/api/auth/password/forgot",
                json!({"email": "Pia@example.com"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, body) = t
        .post("/auth/magic-link", json!({"email": "pia@EXAMPLE.com"}))
        .await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "same account, any endpoint that mails it"
    );
    let (s, _) = t
        .post(
            "/api/auth/password/forgot",
            json!({"email": "other@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // Guessing at one refresh token is cut off too.
    for _ in 0..2 {
        assert_eq!(t.refresh("trt_guess").await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        t.refresh("trt_guess").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}
