//! Several instances behind one Redis share their rate limits: a flood
//! against one instance is also refused by the other.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use testkit::{free_port, wait_http_ok, ChildGuard};

use crate::server::{Truxe, PASSWORD};

/// A throwaway redis-server on a free loopback port (scripts/test installs it).
fn start_redis(dir: &std::path::Path) -> (ChildGuard, String) {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .current_dir(dir);
    let which = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output();
    assert!(
        which.is_ok_and(|o| o.status.success()),
        "redis-server is required: run ./scripts/test, which installs it"
    );
    (
        ChildGuard::spawn("redis", cmd, dir),
        format!("redis://127.0.0.1:{port}"),
    )
}

#[tokio::test]
async fn instances_share_limits_through_redis() {
    let scratch = testkit::tempdir();
    let (_redis, url) = start_redis(scratch.path());
    testkit::eventually(
        "redis to accept connections",
        Duration::from_secs(30),
        || async {
            let port: u16 = url.rsplit(':').next()?.parse().ok()?;
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let env = [
        ("REDIS_URL", url.as_str()),
        ("TRUXE_RATE_LIMIT_LOGIN_ACCOUNT", "3/1m"),
    ];
    let a = Truxe::start(&env).await;
    a.register("flood@example.com").await;
    a.register("calm@example.com").await;
    // A second instance: same database and keys, another port, same Redis.
    let b_port = free_port();
    let mut cmd = a.command();
    cmd.env("PORT", b_port.to_string()).arg("serve");
    let mut b = ChildGuard::spawn("truxe-b", cmd, a.dir.path());
    let b_url = format!("http://127.0.0.1:{b_port}");
    wait_http_ok(&format!("{b_url}/ready"), Duration::from_secs(60)).await;
    b.assert_running(a.dir.path());

    for _ in 0..3 {
        assert_eq!(
            a.login("flood@example.com", "Wrong-Password-1").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let login_b = |email: &str| {
        a.http
            .post(format!("{b_url}/api/auth/login"))
            .json(&serde_json::json!({"email": email, "password": PASSWORD}))
            .send()
    };
    let r = login_b("flood@example.com").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the other instance knows the account's budget is spent"
    );
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        login_b("calm@example.com").await.unwrap().status(),
        StatusCode::OK
    );
}
