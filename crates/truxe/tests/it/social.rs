//! Social login end to end against an independent OpenID provider:
//! panva/oidc-provider from the npm registry (`tests/oidc`), run on
//! loopback by the test, with its own keys, cookies and consent. A
//! cookie-keeping HTTP client plays the browser, following every redirect
//! from Truxe to the provider and back.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use testkit::{free_port, wait_http_ok, ChildGuard};

use crate::mfa::{now, totp, user_with_mfa};
use crate::server::{code, Truxe, PASSWORD};

const CLIENT_ID: &str = "truxe-test";
const CLIENT_SECRET: &str = "a-client-secret-for-the-test-provider";

/// Read at run time (cargo sets it for test processes): a test binary reused
/// from a shared target directory may have been built in another checkout.
pub(crate) fn oidc_dir() -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    root.join("tests/oidc")
}

/// Installs the provider's npm packages once per test process, exactly as
/// locked (scripts/test does the same before the suite).
pub(crate) fn ensure_installed() {
    static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = ONCE.lock().unwrap_or_else(|p| p.into_inner());
    let installed = ["oidc-provider", "openid-client"]
        .iter()
        .all(|p| oidc_dir().join("node_modules").join(p).exists());
    if *done || installed {
        *done = true;
        return;
    }
    let st = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(oidc_dir())
        .status()
        .expect("npm (Node.js) is needed for the OpenID tests");
    assert!(st.success(), "npm ci in tests/oidc failed");
    *done = true;
}

/// The Python of `tests/oidc/.venv` with Authlib, made once per test
/// process if missing, exactly as pinned in requirements.txt (scripts/test
/// does the same before the suite).
pub(crate) fn authlib_python() -> PathBuf {
    static ONCE: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut done = ONCE.lock().unwrap_or_else(|p| p.into_inner());
    let venv = oidc_dir().join(".venv");
    let python = venv.join("bin/python");
    let ready = || {
        Command::new(&python)
            .args(["-c", "import authlib, requests"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if *done || ready() {
        *done = true;
        return python;
    }
    let st = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 is needed for the Authlib tests");
    assert!(
        st.success(),
        "python3 -m venv failed (Debian: python3-venv)"
    );
    let st = Command::new(&python)
        .args(["-m", "pip", "install", "--quiet", "-r"])
        .arg(oidc_dir().join("requirements.txt"))
        .status()
        .unwrap();
    assert!(
        st.success(),
        "pip install -r tests/oidc/requirements.txt failed"
    );
    *done = true;
    python
}

/// The provider process.
struct Provider {
    _child: ChildGuard,
    _dir: tempfile::TempDir,
    issuer: String,
}

impl Provider {
    async fn start(truxe_port: u16) -> Provider {
        ensure_installed();
        let dir = testkit::tempdir();
        let port = free_port();
        let mut cmd = Command::new("node");
        cmd.arg(oidc_dir().join("provider.mjs"))
            .env("PORT", port.to_string())
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env(
                "REDIRECT_URIS",
                // Truxe's callback path, and the original Truxe's.
                format!(
                    "http://127.0.0.1:{truxe_port}/auth/oauth/corp/callback,http://127.0.0.1:{truxe_port}/auth/oauth/callback/corp"
                ),
            );
        let mut child = ChildGuard::spawn("oidc-provider", cmd, dir.path());
        let issuer = format!("http://127.0.0.1:{port}");
        wait_http_ok(
            &format!("{issuer}/.well-known/openid-configuration"),
            Duration::from_secs(30),
        )
        .await;
        child.assert_running(dir.path());
        Provider {
            _child: child,
            _dir: dir,
            issuer,
        }
    }
}

const APP: &str = "http://app.test/signed-in";

/// A provider, and Truxe configured with it as `corp` plus `env`.
async fn setup(env: &[(&str, &str)]) -> (Provider, Truxe) {
    let port = free_port();
    let p = Provider::start(port).await;
    let mut all = vec![
        ("TRUXE_OAUTH_PROVIDERS", "corp"),
        ("TRUXE_OAUTH_CORP_CLIENT_ID", CLIENT_ID),
        ("TRUXE_OAUTH_CORP_CLIENT_SECRET", CLIENT_SECRET),
        ("TRUXE_OAUTH_CORP_ISSUER", p.issuer.as_str()),
        ("TRUXE_OAUTH_CORP_NAME", "Corp SSO"),
        ("TRUXE_OAUTH_REDIRECTS", APP),
    ];
    all.extend_from_slice(env);
    let t = Truxe::start_on(port, &all).await;
    (p, t)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Follows redirects from `url` until the next hop is Truxe's callback;
/// returns that callback URL (not yet requested), or the response that
/// ended the chain elsewhere.
async fn to_callback(
    b: &reqwest::Client,
    t: &Truxe,
    mut url: String,
) -> Result<String, reqwest::Response> {
    let callback = format!("{}/auth/oauth/corp/callback", t.url());
    for _ in 0..20 {
        if url.starts_with(&callback) {
            return Ok(url);
        }
        let r = b.get(&url).send().await.unwrap();
        if !r.status().is_redirection() {
            return Err(r);
        }
        let loc = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
        url = reqwest::Url::parse(&url)
            .unwrap()
            .join(&loc)
            .unwrap()
            .to_string();
    }
    panic!("too many redirects from {url}");
}

/// Starts a sign-in at Truxe and runs it through the provider: the
/// callback's response.
async fn sign_in(b: &reqwest::Client, t: &Truxe, query: &str) -> reqwest::Response {
    let start = format!("{}/auth/oauth/corp/authorize?{query}", t.url());
    match to_callback(b, t, start).await {
        Ok(cb) => b.get(cb).send().await.unwrap(),
        Err(r) => r,
    }
}

async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[header::LOCATION].to_str().unwrap().to_owned()
}

/// The fragment parameters of a redirect to the application.
fn fragment(loc: &str) -> std::collections::HashMap<String, String> {
    let (base, frag) = loc.split_once('#').unwrap_or((loc, ""));
    assert_eq!(base, APP, "{loc}");
    url::form_urlencoded::parse(frag.as_bytes())
        .into_owned()
        .collect()
}

/// The sealed provider tokens as stored, straight from the database.
async fn stored_tokens(t: &Truxe) -> Vec<String> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&t.database_url())
        .await
        .unwrap();
    sqlx::query("SELECT tokens_sealed FROM oauth_identities")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

#[tokio::test]
async fn sign_up_then_sign_in_again_with_provider_tokens_sealed() {
    let (_p, t) = setup(&[]).await;
    let (s, body) = json_of(
        t.http
            .get(format!("{}/auth/oauth/providers", t.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        body["data"]["providers"],
        json!([{"id": "corp", "name": "Corp SSO", "protocol": "oidc", "authorizeUrl": "/auth/oauth/corp/authorize"}])
    );

    let (s, body) = json_of(sign_in(&browser(), &t, "login_hint=alice").await).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let user = &body["data"]["user"];
    assert_eq!(user["email"], "alice@example.test");
    assert_eq!(user["emailVerified"], true, "the provider vouches for it");
    let access = body["data"]["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(t.me(&access).await, StatusCode::OK, "a real Truxe session");
    let id = user["id"].as_str().unwrap().to_owned();

    let (_, list) = t
        .authed(Method::GET, "/auth/oauth/identities", &access, None)
        .await;
    let identities = list["data"]["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 1, "{list}");
    assert_eq!(identities[0]["provider"], "corp");
    assert_eq!(identities[0]["subject"], "alice");

    // Again, from a fresh browser: the same account, not a new one.
    let (s, again) = json_of(sign_in(&browser(), &t, "login_hint=alice").await).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["data"]["user"]["id"], id.as_str());

    // The provider's tokens are kept, sealed: an administrator can read
    // them through the API, and they are nowhere in the database in clear.
    let (_, admin) = t.admin("root@example.com").await;
    let identity = identities[0]["id"].as_str().unwrap();
    let (s, tok) = t
        .authed(
            Method::GET,
            &format!("/api/admin/users/{id}/identities/{identity}/tokens"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{tok}");
    let provider_access = tok["data"]["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let id_token = tok["data"]["tokens"]["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        provider_access.len() > 20 && id_token.split('.').count() == 3,
        "{tok}"
    );
    let sealed = stored_tokens(&t).await;
    assert_eq!(sealed.len(), 1);
    assert!(!sealed[0].contains(&provider_access) && !sealed[0].contains(&id_token));
    for token in [&provider_access, &id_token] {
        assert!(
            !t.stores(token.as_bytes()),
            "a provider token is stored in the clear"
        );
    }
    let (s, _) = t
        .authed(
            Method::GET,
            &format!("/api/admin/users/{id}/identities/{identity}/tokens"),
            &access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "administrators only");

    // Unlinking is the owner's, and audited.
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/auth/oauth/identities/{identity}"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not the administrator's identity");
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/auth/oauth/identities/{identity}"),
            &access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, audit) = t
        .authed(
            Method::GET,
            "/api/admin/audit?action=oauth_unlinked",
            &admin,
            None,
        )
        .await;
    assert_eq!(audit["events"].as_array().map(Vec::len), Some(1), "{audit}");
}

#[tokio::test]
async fn state_is_signed_single_use_and_bound_to_the_browser() {
    let (_p, t) = setup(&[]).await;
    let start = format!("{}/auth/oauth/corp/authorize?login_hint=erin", t.url());
    let b = browser();
    let cb = to_callback(&b, &t, start.clone()).await.unwrap();

    // Another browser (no binding cookie) cannot finish this sign-in.
    let stranger = browser();
    let other = to_callback(&stranger, &t, start.clone()).await.unwrap();
    let (s, body) = json_of(browser().get(&other).send().await.unwrap()).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::CONFLICT, "invalid_state"),
        "{body}"
    );

    // A tampered state is refused before any lookup.
    let tampered = cb.replacen("state=", "state=x", 1);
    let (s, body) = json_of(b.get(&tampered).send().await.unwrap()).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::CONFLICT, "invalid_state"),
        "{body}"
    );
    let (s, body) = json_of(
        b.get(format!("{}/auth/oauth/corp/callback?code=x", t.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::CONFLICT, "invalid_state"),
        "{body}"
    );

    // The genuine one works once.
    let (s, body) = json_of(b.get(&cb).send().await.unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = json_of(b.get(&cb).send().await.unwrap()).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::CONFLICT, "invalid_state"),
        "replayed: {body}"
    );

    // Unknown providers, bad redirects.
    let r = b
        .get(format!("{}/auth/oauth/nope/authorize", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = b
        .get(format!(
            "{}/auth/oauth/corp/authorize?redirect_uri=http://evil.test/",
            t.url()
        ))
        .send()
        .await
        .unwrap();
    let (s, body) = json_of(r).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::BAD_REQUEST, "validation_error"),
        "{body}"
    );
}

#[tokio::test]
async fn redirects_carry_tokens_errors_or_cookies() {
    let (_p, t) = setup(&[]).await;
    let q = format!("login_hint=frank&redirect_uri={APP}");
    let r = sign_in(&browser(), &t, &q).await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let f = fragment(&location(&r));
    assert_eq!(t.me(&f["access_token"]).await, StatusCode::OK, "{f:?}");
    assert!(f["refresh_token"].starts_with("trt_"));

    // The person declines at the provider: the application hears why.
    let r = sign_in(
        &browser(),
        &t,
        &format!("login_hint=deny&redirect_uri={APP}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let f = fragment(&location(&r));
    assert_eq!(f["error"], "access_denied", "{f:?}");
    assert!(f["error_description"].contains("declined"), "{f:?}");
    assert!(!f.contains_key("access_token"));

    // Cookie mode: session cookies, no tokens in the URL.
    let b = browser();
    let r = sign_in(
        &b,
        &t,
        &format!("login_hint=frank&mode=cookie&redirect_uri={APP}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), APP);
    let cookies: Vec<String> = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("truxe_access_token=") && c.contains("HttpOnly")),
        "{cookies:?}"
    );
    let me = b.get(format!("{}/auth/me", t.url())).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK, "the browser is signed in");
}

#[tokio::test]
async fn linking_needs_both_sides_to_vouch_and_mfa_still_applies() {
    let (_p, t) = setup(&[]).await;
    // bob has a password account with a verified address and MFA on.
    let (bob, secret, backup, _) = user_with_mfa(&t, "bob@example.test").await;
    t.verify_address("bob@example.test", &bob).await;
    // Proving the address ended the sessions from before; sign in again.
    let (s, body) = t.login("bob@example.test", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = t
        .post(
            "/auth/mfa/challenge/verify",
            json!({"challenge_id": body["data"]["challenge_id"], "backup_code": backup[0]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let bob = body["data"]["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, body) = json_of(sign_in(&browser(), &t, "login_hint=bob").await).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["mfa_required"], true, "{body}");
    assert!(
        body["data"].get("tokens").is_none(),
        "no tokens before the second factor"
    );
    let challenge = body["data"]["challenge_id"].as_str().unwrap();
    let (s, body) = t
        .post(
            "/auth/mfa/challenge/verify",
            json!({"challenge_id": challenge, "token": totp(&secret, now() + 30)}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, me_by_password) = t.authed(Method::GET, "/auth/me", &bob, None).await;
    assert_eq!(
        body["data"]["user"]["id"], me_by_password["user"]["id"],
        "linked, not a new account"
    );

    // Issue 18: someone registered carol's address and never proved it (a
    // pre-hijack). The provider vouches for it, so its owner takes the
    // account over, and what the registrant set is void: sessions end, the
    // password no longer signs in.
    let (squat_access, squat_refresh) = t.register("carol@example.test").await;
    let (s, body) = json_of(sign_in(&browser(), &t, "login_hint=carol").await).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _) = t.authed(Method::GET, "/auth/me", &squat_access, None).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the registrant's session ended"
    );
    assert_eq!(t.refresh(&squat_refresh).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.login("carol@example.test", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED,
        "the registrant's password is void"
    );
    let owner = body["data"]["tokens"]["access_token"].as_str().unwrap();
    let (s, me) = t.authed(Method::GET, "/auth/me", owner, None).await;
    assert_eq!(s, StatusCode::OK, "control: the owner is signed in");
    assert_eq!(me["user"]["emailVerified"], true, "{me}");

    // The provider does not vouch for dave's address: no account is made
    // from it (its real owner could later share it with the provider
    // account), and the address stays free.
    let (s, body) = json_of(sign_in(&browser(), &t, "login_hint=unverified-dave").await).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::CONFLICT, "email_unverified"),
        "{body}"
    );
    t.register("unverified-dave@example.test").await;

    // A blocked account does not sign in through a provider either.
    let (s, body) = json_of(sign_in(&browser(), &t, "login_hint=ivan").await).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let id = body["data"]["user"]["id"].as_str().unwrap().to_owned();
    let (_, admin) = t.admin("root@example.com").await;
    let (s, _) = t
        .authed(
            Method::POST,
            &format!("/api/admin/users/{id}/block"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = json_of(sign_in(&browser(), &t, "login_hint=ivan").await).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::FORBIDDEN, "account_disabled"),
        "{body}"
    );

    // Issue 20: bob sees the link on his account page (signed in with his
    // password and a backup code) and unlinks it there; the API agrees.
    let b = crate::oidc::browser();
    let page = crate::oidc::get(&b, &t, "/account").await.1;
    let mut fields = crate::oidc::form_fields(&page);
    fields.push(("email".into(), "bob@example.test".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let html = crate::oidc::post_form(&b, &t, "/account/login", &fields)
        .await
        .text()
        .await
        .unwrap();
    let mut fields = crate::oidc::form_fields(&html);
    // A backup code: both TOTP steps of the window were spent above.
    fields.push(("code".into(), backup[1].clone()));
    let r = crate::oidc::post_form(&b, &t, "/account/mfa", &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = crate::oidc::get(&b, &t, "/account").await.1;
    assert!(
        page.contains("Linked accounts") && page.contains("bob@example.test · linked"),
        "{page}"
    );
    let (_, linked) = t
        .authed(Method::GET, "/auth/oauth/identities", &bob, None)
        .await;
    let identity = linked["data"]["identities"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let csrf: Vec<(String, String)> = crate::oidc::csrf_field(&page);
    let mut unlink = csrf.clone();
    unlink.push(("id".into(), identity.clone()));
    // From another browser: refused, still linked.
    let r = crate::oidc::post_form(&browser(), &t, "/account/identities/unlink", &unlink).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = crate::oidc::post_form(&b, &t, "/account/identities/unlink", &unlink).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, linked) = t
        .authed(Method::GET, "/auth/oauth/identities", &bob, None)
        .await;
    assert_eq!(linked["data"]["identities"], json!([]), "{linked}");
}

#[tokio::test]
async fn encryption_keys_rotate_while_the_server_runs() {
    const OAUTH_A: &str = "oauth-key-A-0123456789abcdefghijklmnopq";
    const OAUTH_B: &str = "oauth-key-B-zyxwvutsrqponmlkjihgfedcba98";
    const MFA_A: &str = "mfa-key-A-0123456789abcdefghijklmnopqrs";
    const MFA_B: &str = "mfa-key-B-zyxwvutsrqponmlkjihgfedcba9876";
    let (_p, mut t) = setup(&[
        ("OAUTH_TOKEN_ENCRYPTION_KEY", OAUTH_A),
        ("MFA_ENCRYPTION_KEY", MFA_A),
    ])
    .await;
    let (s, body) = json_of(sign_in(&browser(), &t, "login_hint=gina").await).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let gina = body["data"]["user"]["id"].as_str().unwrap().to_owned();
    let (_, secret, _, _) = user_with_mfa(&t, "hank@example.com").await;
    let (_, admin) = t.admin("root@example.com").await;
    let (_, ids) = t
        .authed(
            Method::GET,
            &format!("/api/admin/users/{gina}"),
            &admin,
            None,
        )
        .await;
    let identity = ids["data"]["identities"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tokens_path = format!("/api/admin/users/{gina}/identities/{identity}/tokens");
    let (_, before) = t.authed(Method::GET, &tokens_path, &admin, None).await;

    // Every instance learns the new keys, keeping the old ones for reading.
    let set = |t: &mut Truxe, vars: &[(&str, &str)]| {
        t.env.retain(|(k, _)| !k.contains("ENCRYPTION_KEY"));
        t.env
            .extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    };
    set(
        &mut t,
        &[
            ("OAUTH_TOKEN_ENCRYPTION_KEY", OAUTH_B),
            ("OAUTH_TOKEN_ENCRYPTION_KEY_PREVIOUS", OAUTH_A),
            ("MFA_ENCRYPTION_KEY", MFA_B),
            ("MFA_ENCRYPTION_KEY_PREVIOUS", MFA_A),
        ],
    );
    t.restart().await;
    let out = t.cli(&["keys", "rotate-encryption", "--dry-run"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(dry.contains("oauth_identities.tokens_sealed"), "{dry}");

    assert!(
        dry.lines().next().unwrap().starts_with("COLUMN"),
        "a table: {dry}"
    );
    assert!(dry.contains("would reseal"), "a summary line: {dry}");
    // Not a terminal: plain progress lines on stderr, ending at all columns.
    let progress = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        progress.contains("counting sealed values: ") && progress.contains("(100%)"),
        "{progress}"
    );
    assert!(!progress.contains('\x1b'), "{progress:?}");

    // Re-seal while the server is up and serving (the report as JSON).
    let out = t.cli(&["-o", "json", "keys", "rotate-encryption"], None);
    let report = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["dry_run"], false);
    let resealed = |col: &str| -> u64 {
        report["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["column"] == col)
            .unwrap_or_else(|| panic!("{col}: {report}"))["resealed"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(resealed("oauth_identities.tokens_sealed"), 1, "{report}");
    assert_eq!(resealed("users.mfa_secret"), 1, "{report}");
    let (s, during) = t.authed(Method::GET, &tokens_path, &admin, None).await;
    assert_eq!((s, &during["data"]), (StatusCode::OK, &before["data"]));

    // The old keys can go: everything still opens.
    set(
        &mut t,
        &[
            ("OAUTH_TOKEN_ENCRYPTION_KEY", OAUTH_B),
            ("MFA_ENCRYPTION_KEY", MFA_B),
        ],
    );
    t.restart().await;
    let (s, after) = t.authed(Method::GET, &tokens_path, &admin, None).await;
    assert_eq!(
        (s, &after["data"]),
        (StatusCode::OK, &before["data"]),
        "provider tokens open under the new key"
    );
    let (s, body) = t.login("hank@example.com", crate::server::PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    let challenge = body["data"]["challenge_id"].as_str().unwrap();
    let (s, body) = t
        .post(
            "/auth/mfa/challenge/verify",
            json!({"challenge_id": challenge, "token": totp(&secret, now() + 30)}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "TOTP secret opens under the new key: {body}"
    );
    let out = t.cli(&["keys", "rotate-encryption", "--dry-run"], None);
    assert!(out.status.success());

    // A value under a key that is no longer configured is reported, and
    // the command fails.
    set(
        &mut t,
        &[
            ("OAUTH_TOKEN_ENCRYPTION_KEY", OAUTH_A),
            ("MFA_ENCRYPTION_KEY", MFA_B),
        ],
    );
    let out = t.cli(&["keys", "rotate-encryption"], None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Issue 21: the original Truxe's client asks `POST …/start` for the URL and
/// navigates itself, and the provider may send the browser back to the
/// original's callback path; both are the same sign-in as ours.
#[tokio::test]
async fn the_original_start_and_callback_paths_sign_in() {
    let (p, t) = setup(&[]).await;
    let b = browser();
    let r = b
        .post(format!("{}/auth/oauth/corp/start", t.url()))
        .json(&json!({"redirectUri": APP, "scopes": ["openid", "email"], "prompt": null, "state": {"from": "app"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers().get(header::SET_COOKIE).is_some(),
        "binding cookie"
    );
    let started: Value = r.json().await.unwrap();
    let url = started["authorizationUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&p.issuer), "{started}");
    let state = started["state"].as_str().unwrap();
    assert!(url.contains(&format!("state={state}")), "{started}");
    assert!(
        started["expiresAt"].as_str().unwrap().ends_with('Z'),
        "{started}"
    );
    assert_eq!(started["provider"], "corp");
    assert!(started["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("openid")));
    // Through the provider, back to the original's callback path.
    let cb = to_callback(&b, &t, url).await.unwrap();
    let original = cb.replacen("/auth/oauth/corp/callback", "/auth/oauth/callback/corp", 1);
    let r = b.get(original).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let f = fragment(&location(&r));
    assert_eq!(t.me(&f["access_token"]).await, StatusCode::OK, "{f:?}");

    // No body at all is a sign-in without a redirect; a body that is not
    // JSON, an unknown provider and a redirect not allowed are refused.
    let r = browser()
        .post(format!("{}/auth/oauth/corp/start", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (path, body, want) in [
        ("corp", "{not json", "invalid_json"),
        ("nope", "{}", "not_found"),
        (
            "corp",
            r#"{"redirectUri":"https://evil.test/"}"#,
            "validation_error",
        ),
    ] {
        let r = browser()
            .post(format!("{}/auth/oauth/{path}/start", t.url()))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let (s, b) = json_of(r).await;
        assert!(s.is_client_error(), "{body}: {s} {b}");
        assert_eq!(code(&b), want, "{body}: {b}");
    }
}

/// Issue 21: a provider registered with the original Truxe's callback path
/// (`TRUXE_OAUTH_<ID>_REDIRECT_URI`, or the original's `<ID>_OAUTH_REDIRECT_URI`)
/// is sent that path and returns there; the sign-in completes. A callback
/// URL on another server is refused at start.
#[tokio::test]
async fn a_provider_registered_with_the_original_callback_path() {
    let port = free_port();
    let p = Provider::start(port).await;
    let original = format!("http://127.0.0.1:{port}/auth/oauth/callback/corp");
    let t = Truxe::start_on(
        port,
        &[
            ("TRUXE_OAUTH_PROVIDERS", "corp"),
            ("TRUXE_OAUTH_CORP_CLIENT_ID", CLIENT_ID),
            ("TRUXE_OAUTH_CORP_CLIENT_SECRET", CLIENT_SECRET),
            ("TRUXE_OAUTH_CORP_ISSUER", p.issuer.as_str()),
            ("TRUXE_OAUTH_CORP_REDIRECT_URI", original.as_str()),
            ("TRUXE_OAUTH_REDIRECTS", APP),
        ],
    )
    .await;
    let b = browser();
    let mut url = format!(
        "{}/auth/oauth/corp/authorize?login_hint=frank&redirect_uri={APP}",
        t.url()
    );
    let mut hops = 0;
    while !url.starts_with(&original) {
        let r = b.get(&url).send().await.unwrap();
        assert!(r.status().is_redirection(), "{url}: {}", r.status());
        let next = reqwest::Url::parse(&url)
            .unwrap()
            .join(&location(&r))
            .unwrap();
        url = next.to_string();
        hops += 1;
        assert!(hops < 20, "too many redirects");
    }
    let r = b.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let f = fragment(&location(&r));
    assert_eq!(t.me(&f["access_token"]).await, StatusCode::OK, "{f:?}");
    // Elsewhere: the server refuses to start with it.
    let mut bad = t.command();
    bad.env("TRUXE_OAUTH_PROVIDERS", "corp")
        .env("TRUXE_OAUTH_CORP_CLIENT_ID", CLIENT_ID)
        .env("TRUXE_OAUTH_CORP_CLIENT_SECRET", CLIENT_SECRET)
        .env("TRUXE_OAUTH_CORP_ISSUER", &p.issuer)
        .env(
            "TRUXE_OAUTH_CORP_REDIRECT_URI",
            "http://elsewhere.test/auth/oauth/callback/corp",
        )
        .arg("check-config");
    let out = bad.output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TRUXE_OAUTH_CORP_REDIRECT_URI"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The page's "Continue with Corp SSO" link, as a full URL.
fn provider_link(t: &Truxe, html: &str) -> String {
    let end = html
        .find(">Continue with Corp SSO</a>")
        .unwrap_or_else(|| panic!("no provider link: {html}"));
    let start = html[..end].rfind("href=\"").unwrap() + 6;
    format!("{}{}", t.url(), html[start..end - 1].replace("&amp;", "&"))
}

/// Runs the provider link of `page` through the provider: Truxe's answer
/// to the callback.
async fn through_provider(b: &reqwest::Client, t: &Truxe, page: &str) -> reqwest::Response {
    let cb = to_callback(b, t, provider_link(t, page)).await.unwrap();
    b.get(cb).send().await.unwrap()
}

#[tokio::test]
async fn issue_20_hosted_sign_in_pages_offer_the_provider_and_keep_the_request() {
    use crate::oidc::{authorize_url, client, exchange, form_fields, id_claims, param, post_form};
    let (_p, t) = setup(&[]).await;
    let (_, admin) = t.admin("root@example.test").await;
    let app = client(&t, &admin).await;

    // An application's sign-in through the provider: consent, then the
    // code, for the request the page was showing.
    let b = browser();
    let page = b
        .get(authorize_url(&t, &app.id, &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = provider_link(&t, &page);
    assert!(start.contains("/oauth/authorize/social/corp?"), "{start}");
    // Attack: the request in the link is checked before leaving for the
    // provider (a foreign redirect URI gets an error page, no redirect).
    let forged = start.replace("127.0.0.1%3A9", "evil.test");
    assert_ne!(forged, start);
    let r = b.get(&forged).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get(header::LOCATION).is_none());
    let r = through_provider(&b, &t, &page).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut fields = form_fields(&r.text().await.unwrap());
    fields.push(("decision".into(), "allow".into()));
    let back = post_form(&b, &t, "/oauth/authorize/consent", &fields).await;
    let to = crate::oidc::location(&back);
    assert!(to.as_str().starts_with(crate::oidc::REDIRECT), "{to}");
    let code = param(&to, "code").unwrap();
    let (s, tokens) = exchange(&t, &app, &code, crate::oidc::VERIFIER).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let claims = id_claims(&t, tokens["id_token"].as_str().unwrap(), &app.id).await;
    assert_eq!(claims["amr"], json!(["fed"]));
    assert_eq!(claims["email"], "alice@example.test");

    // The provider says no: the sign-in page again, saying so.
    let b = browser();
    let url = authorize_url(&t, &app.id, &[("login_hint", "deny")]);
    let page = b.get(&url).send().await.unwrap().text().await.unwrap();
    let r = through_provider(&b, &t, &page).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("was cancelled") && html.contains("Sign in"),
        "{html}"
    );

    // An account with MFA: the second factor after the provider, and
    // `amr` says which factors were used.
    let (bob, secret, _, step) = user_with_mfa(&t, "bob@example.test").await;
    t.verify_address("bob@example.test", &bob).await;
    let b = browser();
    let url = authorize_url(&t, &app.id, &[("login_hint", "bob")]);
    let page = b.get(&url).send().await.unwrap().text().await.unwrap();
    let r = through_provider(&b, &t, &page).await;
    let html = r.text().await.unwrap();
    assert!(html.contains("Two-step verification"), "{html}");
    let mut fields = form_fields(&html);
    fields.push(("code".into(), totp(&secret, step.max(now()) + 30)));
    let r = post_form(&b, &t, "/oauth/authorize/mfa", &fields).await;
    assert_eq!(r.status(), StatusCode::OK, "consent next");
    let mut fields = form_fields(&r.text().await.unwrap());
    fields.push(("decision".into(), "allow".into()));
    let back = post_form(&b, &t, "/oauth/authorize/consent", &fields).await;
    let code = param(&crate::oidc::location(&back), "code").unwrap();
    let (_, tokens) = exchange(&t, &app, &code, crate::oidc::VERIFIER).await;
    let claims = id_claims(&t, tokens["id_token"].as_str().unwrap(), &app.id).await;
    assert_eq!(claims["amr"], json!(["fed", "otp"]));

    // The account page's sign-in offers the provider too.
    let b = browser();
    let (_, page) = crate::oidc::get(&b, &t, "/account").await;
    let r = through_provider(&b, &t, &page).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/account");
    let (s, page) = crate::oidc::get(&b, &t, "/account").await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("alice@example.test"), "{page}");
}
