//! Several instances behind one Redis share their rate limits: a flood
//! against one instance is also refused by the other.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use testkit::{free_port, wait_http_ok, ChildGuard};

use crate::server::{LoopbackTls, Truxe, PASSWORD};

/// A throwaway redis-server on a free loopback port (scripts/test installs
/// it), as a production one should be: TLS only (a test CA made here) and a
/// password. Returns the guard, the `rediss://` URL with the password, the
/// password and the CA file.
fn start_redis(dir: &std::path::Path) -> (ChildGuard, String, String, std::path::PathBuf) {
    let which = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output();
    assert!(
        which.is_ok_and(|o| o.status.success()),
        "redis-server is required: run ./scripts/test, which installs it"
    );
    let tls = LoopbackTls::write(dir, "Truxe test Redis CA");
    let password = secure::token::random_uuid().replace('-', "");
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", "0", "--tls-port", &port.to_string()])
        .args(["--tls-auth-clients", "no", "--requirepass", &password])
        .arg("--tls-cert-file")
        .arg(&tls.cert)
        .arg("--tls-key-file")
        .arg(&tls.key)
        .arg("--tls-ca-cert-file")
        .arg(&tls.ca)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .current_dir(dir);
    (
        ChildGuard::spawn("redis", cmd, dir),
        format!("rediss://:{password}@127.0.0.1:{port}"),
        password,
        tls.ca,
    )
}

/// `truxe serve` with `env` (and a data directory of its own, so that on
/// SQLite it is not refused for sharing `t`'s file) fails to start, saying
/// why.
fn refuses_to_start(t: &Truxe, env: &[(&str, &str)]) -> String {
    let own = testkit::tempdir();
    let mut cmd = t.command();
    cmd.env("PORT", free_port().to_string())
        .env("TRUXE_DATA_DIR", own.path())
        .envs(env.iter().copied())
        .arg("serve");
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "started with {env:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn instances_share_limits_through_redis() {
    let scratch = testkit::tempdir();
    let (mut redis, url, password, ca) = start_redis(scratch.path());
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
    let ca = ca.to_str().unwrap();
    let env = [
        ("REDIS_URL", url.as_str()),
        ("TRUXE_REDIS_CA", ca),
        ("TRUXE_RATE_LIMIT_LOGIN_ACCOUNT", "3/1h"),
    ];
    let a = Truxe::start(&env).await;
    // Issue 18: the server takes only TLS with the password, and Truxe
    // checks its certificate.
    let plain = url.replacen("rediss://", "redis://", 1);
    let wrong = url.replacen(&password, "not-the-password", 1);
    let err = refuses_to_start(&a, &[("REDIS_URL", &plain)]);
    assert!(err.contains("REDIS_URL"), "{err}");
    let err = refuses_to_start(&a, &[("REDIS_URL", &wrong), ("TRUXE_REDIS_CA", ca)]);
    assert!(err.contains("REDIS_URL"), "{err}");
    let err = refuses_to_start(&a, &[("REDIS_URL", &url), ("TRUXE_REDIS_CA", "/dev/null")]);
    assert!(
        err.contains("REDIS_URL") || err.contains("TRUXE_REDIS_CA"),
        "{err}"
    );
    a.register("flood@example.com").await;
    a.register("calm@example.com").await;
    // A second instance: another port, same Redis; the same database on
    // PostgreSQL. SQLite serves one instance per file, so there it has a
    // file of its own, holding the same accounts.
    let b_port = free_port();
    let b_dir = testkit::tempdir();
    let mut cmd = a.command();
    cmd.env("PORT", b_port.to_string()).arg("serve");
    if !a.on_postgres() {
        cmd.env("TRUXE_DATA_DIR", b_dir.path());
    }
    let mut b = ChildGuard::spawn("truxe-b", cmd, a.dir.path());
    let b_url = format!("http://127.0.0.1:{b_port}");
    wait_http_ok(&format!("{b_url}/ready"), Duration::from_secs(60)).await;
    b.assert_running(a.dir.path());
    if !a.on_postgres() {
        for email in ["flood@example.com", "calm@example.com"] {
            let r = a
                .http
                .post(format!("{b_url}/api/auth/register"))
                .json(&serde_json::json!({"email": email, "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    }

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

    // Redis gone: the limiter cannot count, so it refuses (fails closed)
    // rather than let guesses through uncounted, even with the right
    // password.
    redis.kill();
    for instance in [a.url(), b_url.clone()] {
        let r = a
            .http
            .post(format!("{instance}/api/auth/login"))
            .json(&serde_json::json!({"email": "calm@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("rate_limiter_unavailable")
            ),
            "{instance}: {body}"
        );
    }
}
