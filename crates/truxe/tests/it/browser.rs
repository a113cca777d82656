//! Issue 20: the hosted pages in a real browser — Debian's Chromium,
//! headless, driven over WebDriver by `chromedriver` (scripts/test installs
//! both). Screenshots of each step are kept as test artifacts in
//! `test-artifacts/` at the workspace root.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::json;
use testkit::{free_port, ChildGuard};

use crate::server::{Truxe, PASSWORD};

/// A headless Chromium behind its own chromedriver.
pub(crate) struct Browser {
    pub(crate) client: Client,
    _driver: ChildGuard,
    _profile: tempfile::TempDir,
}

fn need(program: &str) {
    assert!(
        std::path::Path::new(program).exists(),
        "{program} is required: run ./scripts/test, which installs Debian's chromium and chromium-driver"
    );
}

impl Browser {
    pub(crate) async fn start() -> Browser {
        need("/usr/bin/chromium");
        need("/usr/bin/chromedriver");
        let profile = testkit::tempdir();
        let port = free_port();
        let mut cmd = std::process::Command::new("/usr/bin/chromedriver");
        cmd.arg(format!("--port={port}"));
        let driver = ChildGuard::spawn("chromedriver", cmd, profile.path());
        let url = format!("http://127.0.0.1:{port}");
        testkit::wait_http_ok(&format!("{url}/status"), Duration::from_secs(30)).await;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                // As root (CI) Chromium needs --no-sandbox; the rest keeps it
                // from reaching for the network this machine does not have.
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=800,900",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a WebDriver session in Chromium");
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Saves a screenshot as `test-artifacts/<name>.png`.
    pub(crate) async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let dir = crate::social::oidc_dir().join("../../../../test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the page's URL starts with `prefix`; the URL.
    pub(crate) async fn wait_url(&self, prefix: &str) -> url::Url {
        testkit::eventually(
            &format!("a page at {prefix}"),
            Duration::from_secs(30),
            || async {
                let u = self.client.current_url().await.ok()?;
                u.as_str().starts_with(prefix).then_some(u)
            },
        )
        .await
    }

    pub(crate) async fn fill(&self, css: &str, text: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    }

    pub(crate) async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    pub(crate) async fn text(&self) -> String {
        self.client
            .find(Locator::Css("main"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A user signs in to an application through Truxe's pages in Chromium:
/// sign-in, consent, and back to the application with a code the
/// application exchanges. Chromium enforces the pages' CSP, `form-action`
/// included on the redirect after the consent form.
#[tokio::test]
async fn issue_20_sign_in_and_consent_in_chromium() {
    let t = Truxe::start(&[
        ("TRUXE_BRAND_NAME", "Acme ID"),
        ("TRUXE_BRAND_COLOR", "#0a7d48"),
    ])
    .await;
    let (_, admin) = t.admin("root-b@example.com").await;
    let redirect = "http://127.0.0.1:9/callback";
    let (s, c) = t
        .authed(
            reqwest::Method::POST,
            "/api/oauth/clients",
            &admin,
            Some(json!({"name": "Notes", "redirectUris": [redirect]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let client_id = c["data"]["client"]["clientId"].as_str().unwrap().to_owned();
    let secret = c["data"]["clientSecret"].as_str().unwrap().to_owned();
    t.register("bea@example.com").await;

    let verifier = "browser-verifier-0123456789-0123456789-0123456789";
    let mut url = url::Url::parse(&format!("{}/oauth/authorize", t.url())).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid email")
        .append_pair("state", "s1")
        .append_pair("code_challenge", &secure::oauth::pkce_challenge(verifier))
        .append_pair("code_challenge_method", "S256");

    let b = Browser::start().await;
    b.client.goto(url.as_str()).await.unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("input#email"))
        .await
        .unwrap();
    assert_eq!(b.client.title().await.unwrap(), "Sign in · Acme ID");
    b.screenshot("oidc-1-sign-in").await;
    // A wrong password first: the page says so, in an alert.
    b.fill("#email", "bea@example.com").await;
    b.fill("#password", "not-the-password").await;
    b.click("button[type=submit]").await;
    b.client
        .wait()
        .for_element(Locator::Css("[role=alert]"))
        .await
        .unwrap();
    assert!(b.text().await.contains("not right"));
    b.screenshot("oidc-2-wrong-password").await;
    // The address stays filled in.
    let kept = b
        .client
        .find(Locator::Css("#email"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("bea@example.com"));
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.client
        .wait()
        .for_element(Locator::Css("button[value=allow]"))
        .await
        .unwrap();
    let consent = b.text().await;
    assert!(
        consent.contains("Notes would like to") && consent.contains("see your email address"),
        "{consent}"
    );
    b.screenshot("oidc-3-consent").await;
    b.click("button[value=allow]").await;
    let back = b.wait_url(redirect).await;
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let r = t
        .http
        .post(format!("{}/oauth/token", t.url()))
        .basic_auth(&client_id, Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Signed in on Truxe now: the next application request goes straight
    // back, without a page.
    b.client.goto(url.as_str()).await.unwrap();
    let again = b.wait_url(redirect).await;
    assert!(again.query_pairs().any(|(k, _)| k == "code"));
    // prompt=login: the password again, and (consent given) its post
    // leads straight to the application — Chromium checks that redirect
    // against the sign-in page's `form-action`.
    b.client.goto(&format!("{url}&prompt=login")).await.unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("input#password"))
        .await
        .unwrap();
    b.fill("#email", "bea@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    let again = b.wait_url(redirect).await;
    assert!(again.query_pairs().any(|(k, _)| k == "code"), "{again}");
    // The account page lists this browser and the application.
    b.client
        .goto(&format!("{}/account", t.url()))
        .await
        .unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("form[action='/account/logout']"))
        .await
        .unwrap();
    let account = b.text().await;
    assert!(
        account.contains("(this browser)") && account.contains("Notes (an application)"),
        "{account}"
    );
    b.screenshot("oidc-4-account").await;
    b.client.close().await.unwrap();
}
