//! The HTTP edge: CORS allow-list, X-Forwarded-For only from trusted
//! proxies (for sessions, audit and rate limits), production headers.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::server::{Truxe, PASSWORD};

#[tokio::test]
async fn cors_answers_only_listed_origins() {
    let app = "https://app.example.com";
    let t = Truxe::start(&[("CORS_ORIGIN", app)]).await;
    let preflight = |origin: &'static str| {
        t.http
            .request(Method::OPTIONS, format!("{}/api/auth/login", t.url()))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight(app).await.unwrap();
    assert_eq!(ok.headers()["access-control-allow-origin"], app);
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let evil = preflight("https://evil.example.net").await.unwrap();
    assert!(!evil.headers().contains_key("access-control-allow-origin"));
    // No CORS_ORIGIN: no cross-origin access at all.
    let plain = Truxe::start(&[]).await;
    let r = plain
        .http
        .get(format!("{}/health", plain.url()))
        .header("origin", app)
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert!(
        !r.headers().contains_key("strict-transport-security"),
        "no HSTS in development"
    );
    // A wildcard mixed with origins is refused at start-up.
    let out = t
        .command()
        .env("CORS_ORIGIN", format!("*,{app}"))
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CORS_ORIGIN"));
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let register = |t: &Truxe, email: &'static str| {
        t.http
            .post(format!("{}/api/auth/register", t.url()))
            .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
    };
    let session_ip = |t: &Truxe, body: serde_json::Value| {
        let access = body["data"]["tokens"]["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let http = t.http.clone();
        let url = format!("{}/auth/sessions", t.url());
        async move {
            let s: serde_json::Value = http
                .get(url)
                .bearer_auth(access)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            s["sessions"][0]["ip"].as_str().unwrap().to_owned()
        }
    };
    // Behind a trusted proxy: the right-most address the proxy saw.
    let proxied = Truxe::start(&[
        ("TRUXE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("TRUXE_RATE_LIMIT_LOGIN_IP", "2/1h"),
        ("TRUXE_RATE_LIMIT_LOGIN_ACCOUNT", "100/1m"),
    ])
    .await;
    let body = register(&proxied, "ada@example.com")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session_ip(&proxied, body).await, "203.0.113.9");
    // Rate limits follow the forwarded address.
    let login = |xff: &str| {
        proxied
            .http
            .post(format!("{}/api/auth/login", proxied.url()))
            .header("x-forwarded-for", xff.to_owned())
            .json(&json!({"email": "ada@example.com", "password": PASSWORD}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(login("192.0.2.1").await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        login("192.0.2.1").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login("192.0.2.2").await.unwrap().status(),
        StatusCode::OK,
        "another client's budget"
    );
    // Issue 18: what the client writes left of a malformed entry is never
    // read, so a new spoofed address per request buys no new budget.
    for i in 0..2 {
        let xff = format!("10.9.9.{i}, junk, 192.0.2.3");
        assert_eq!(login(&xff).await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(
        login("10.9.9.7, junk, 192.0.2.3").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS,
        "spoofed entries left of junk are not the client"
    );
    assert_eq!(
        login("10.9.9.8, junk, 192.0.2.4").await.unwrap().status(),
        StatusCode::OK,
        "control: the real address right of the junk has its own budget"
    );
    // Issue 18: an IPv6 client is one /64; a new address in it buys nothing.
    for host in ["2001:db8:1:2::1", "2001:db8:1:2::2"] {
        assert_eq!(
            login(host).await.unwrap().status(),
            StatusCode::OK,
            "{host}"
        );
    }
    assert_eq!(
        login("2001:db8:1:2:ffff::3").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the same /64"
    );
    assert_eq!(
        login("2001:db8:1:3::1").await.unwrap().status(),
        StatusCode::OK,
        "control: another /64"
    );
    // Not configured: the header is the client's claim and is ignored.
    let direct = Truxe::start(&[]).await;
    let body = register(&direct, "bob@example.com")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session_ip(&direct, body).await, "127.0.0.1");
}

#[tokio::test]
async fn issue_18_dev_mailbox_only_when_switched_on_and_only_to_loopback() {
    let mailbox = |t: &Truxe, xff: Option<&str>| {
        let mut req = t.http.get(format!("{}/dev/mailbox", t.url()));
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x.to_owned());
        }
        req.send()
    };
    // Switched on, behind a trusted proxy: a loopback client reads it
    // (control), a client the proxy forwards from elsewhere does not.
    let proxied = Truxe::start(&[
        ("TRUXE_DEV_MAILBOX", "on"),
        ("TRUXE_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    assert_eq!(
        mailbox(&proxied, None).await.unwrap().status(),
        StatusCode::OK
    );
    let r = mailbox(&proxied, Some("203.0.113.5")).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Not switched on: there is no mailbox, and no mail is kept.
    let off = Truxe::start(&[("TRUXE_DEV_MAILBOX", "off")]).await;
    assert_eq!(
        mailbox(&off, None).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    off.register("x@example.com").await;
    let (s, _) = off
        .post(
            "/api/auth/password/forgot",
            json!({"email": "x@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!off.dir.path().join("data/mailbox.jsonl").exists());
    // Never in production.
    let out = off
        .command()
        .env("TRUXE_ENV", "production")
        .env("TRUXE_DEV_MAILBOX", "on")
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TRUXE_DEV_MAILBOX"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn production_sends_hsts_and_hides_the_dev_mailbox() {
    let t = Truxe::start(&[
        ("TRUXE_ENV", "production"),
        ("TRUXE_BEHIND_TLS_PROXY", "true"),
        ("COOKIE_SECRET", "8fJ2kq9ZxP0wLm3Tn7Vb4Rc6Yd1Hs5Ge"),
        ("MFA_ENCRYPTION_KEY", "Qw7eR2tY9uI4oP1aS6dF3gH8jK5lZ0xC"),
        ("TRUXE_ARGON2_MEMORY_KIB", "19456"),
        ("TRUXE_ARGON2_ITERATIONS", "2"),
        ("JWT_ISSUER", "https://id.example.com"),
    ])
    .await;
    let r = t
        .http
        .get(format!("{}/health", t.url()))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["strict-transport-security"]
        .to_str()
        .unwrap()
        .starts_with("max-age="));
    assert_eq!(
        t.http
            .get(format!("{}/dev/mailbox", t.url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // Emailed flows refuse rather than keep mail locally.
    let (access, _) = t.register("cleo@example.com").await;
    // Cookies are Secure outside development.
    let r = t
        .http
        .post(format!("{}/api/auth/login?mode=cookie", t.url()))
        .json(&json!({"email": "cleo@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(cookies.len(), 3);
    assert!(
        cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
    let (s, body) = t
        .authed(
            Method::POST,
            "/api/auth/email/send-verification",
            &access,
            None,
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable"))
    );
}

#[tokio::test]
async fn issue_18_slow_clients_are_cut_off_and_connections_are_capped() {
    use tokio::io::AsyncWriteExt;
    let t = Truxe::start(&[("TRUXE_MAX_CONNECTIONS", "200")]).await;
    let addr = ("127.0.0.1", t.port);
    let mut slow = Vec::new();
    for _ in 0..150 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /api/auth/lo").await.unwrap();
        slow.push(s);
    }
    // Control: others are served meanwhile.
    let r = t
        .http
        .get(format!("{}/health", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let limit = std::time::Duration::from_secs(60);
    let closed = futures::future::join_all(
        slow.iter_mut()
            .map(|s| testkit::read_until_closed(s, limit)),
    )
    .await;
    assert!(
        closed.iter().all(Option::is_some),
        "every stalled client was cut off"
    );
    // A body sent slowly is cut off by the request deadline too: here the
    // client never finishes it.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /api/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"em")
        .await
        .unwrap();
    let said = testkit::read_until_closed(&mut s, limit)
        .await
        .expect("cut off");
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");

    // Over the cap: 503 with Retry-After, not a hang.
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut over = tokio::net::TcpStream::connect(addr).await.unwrap();
    let said = testkit::read_until_closed(&mut over, limit).await.unwrap();
    assert!(said.starts_with("HTTP/1.1 503"), "{said}");
    assert!(said.contains("retry-after: 1"), "{said}");
    drop(held);
    testkit::eventually("served again", limit, || async {
        let r = t
            .http
            .get(format!("{}/health", t.url()))
            .send()
            .await
            .ok()?;
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
}

/// The identity (common name) of the certificate `addr` serves.
async fn served_identity(addr: (&str, u16), ca: &std::path::Path) -> Option<String> {
    let tls = std::sync::Arc::new(secure::tls::client_trusting(ca).ok()?);
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
    let s = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .ok()?;
    let cert = s.get_ref().1.peer_certificates()?.first()?.clone();
    secure::tls::inspect(&cert).ok()?.0
}

/// Issue 18: Truxe serves TLS itself, reloads its certificate without a
/// restart, and in production refuses plain HTTP unless a TLS proxy is
/// declared.
#[tokio::test]
async fn issue_18_truxe_serves_https_and_reloads_its_certificate() {
    let dir = testkit::tempdir();
    let year = std::time::SystemTime::now() + std::time::Duration::from_secs(365 * 86_400);
    let ca = secure::tls::dev::DevCa::new("Test CA", year).unwrap();
    let (cert, key, ca_pem) = (
        dir.path().join("t.pem"),
        dir.path().join("t.key"),
        dir.path().join("ca.pem"),
    );
    let issue = |cn: &str| {
        let leaf = ca
            .issue(cn, &["127.0.0.1"], std::time::SystemTime::now(), year)
            .unwrap();
        std::fs::write(&key, leaf.key_pem.expose()).unwrap();
        std::fs::write(&cert, &leaf.cert_pem).unwrap();
    };
    issue("truxe-one");
    std::fs::write(&ca_pem, &ca.cert_pem).unwrap();
    let port = testkit::free_port();
    let mut cmd = std::process::Command::new(crate::server::TRUXE);
    cmd.arg("serve")
        .env("PORT", port.to_string())
        .env("TRUXE_DATA_DIR", dir.path().join("data"))
        .env("TRUXE_TLS_CERT", &cert)
        .env("TRUXE_TLS_KEY", &key);
    let _child = testkit::ChildGuard::spawn("truxe-tls", cmd, dir.path());
    let https = reqwest::Client::builder()
        .use_preconfigured_tls(secure::tls::client_trusting(&ca_pem).unwrap())
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{port}");
    testkit::wait_ok_with(
        &https,
        &format!("{url}/ready"),
        std::time::Duration::from_secs(60),
    )
    .await;
    // The issuer follows the scheme.
    let config: serde_json::Value =
        testkit::get_json(&https, &format!("{url}/.well-known/openid-configuration")).await;
    assert!(
        config["issuer"].as_str().unwrap().starts_with("https://"),
        "{config}"
    );
    // Plain HTTP gets nowhere.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .is_err());
    // A replaced certificate is served without a restart.
    assert_eq!(
        served_identity(("127.0.0.1", port), &ca_pem)
            .await
            .as_deref(),
        Some("truxe-one")
    );
    issue("truxe-two");
    testkit::eventually(
        "the new certificate is served",
        std::time::Duration::from_secs(30),
        || async {
            (served_identity(("127.0.0.1", port), &ca_pem)
                .await
                .as_deref()
                == Some("truxe-two"))
            .then_some(())
        },
    )
    .await;
    // Production: plain HTTP only behind a declared TLS proxy.
    let production = |extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(crate::server::TRUXE);
        cmd.arg("check-config")
            .env("TRUXE_DATA_DIR", dir.path().join("data"))
            .env("TRUXE_ENV", "production")
            .env("COOKIE_SECRET", "8fJ2kq9ZxP0wLm3Tn7Vb4Rc6Yd1Hs5Ge")
            .env("MFA_ENCRYPTION_KEY", "Qw7eR2tY9uI4oP1aS6dF3gH8jK5lZ0xC")
            .env("TRUXE_ARGON2_MEMORY_KIB", "19456")
            .env("TRUXE_ARGON2_ITERATIONS", "2")
            .env("JWT_ISSUER", "https://id.example.com")
            .envs(extra.iter().copied());
        cmd.output().unwrap()
    };
    let out = production(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TRUXE_BEHIND_TLS_PROXY"));
    assert!(production(&[("TRUXE_BEHIND_TLS_PROXY", "true")])
        .status
        .success());
    let c = cert.to_str().unwrap();
    let k = key.to_str().unwrap();
    assert!(production(&[("TRUXE_TLS_CERT", c), ("TRUXE_TLS_KEY", k)])
        .status
        .success());
}
