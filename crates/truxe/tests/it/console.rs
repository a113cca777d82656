//! Issue 20: the admin console. Only a system administrator signed in
//! with two factors gets in; every request is audited; every action needs
//! the browser's CSRF token. Users (search, block, unblock), applications,
//! signing keys and the audit log, through the real server.

use reqwest::StatusCode;
use serde_json::Value;

use crate::mfa::{enable_mfa, now, totp, user_with_mfa};
use crate::oidc::{browser, csrf_field, form_fields, get, post_form};
use crate::server::{Truxe, PASSWORD};

pub(crate) const ADMIN_PASSWORD: &str = "Admin-Password-9";

/// Signs in on the console's page: the password, then the code of
/// `second` (secret and a step not used before), if given; the status of
/// the last answer.
pub(crate) async fn sign_in(
    b: &reqwest::Client,
    t: &Truxe,
    email: &str,
    password: &str,
    second: Option<(&[u8], u64)>,
) -> StatusCode {
    let (_, page) = get(b, t, "/admin/console").await;
    assert!(page.contains(r#"action="/admin/console/login""#), "{page}");
    let mut fields = form_fields(&page);
    fields.push(("email".into(), email.into()));
    fields.push(("password".into(), password.into()));
    let r = post_form(b, t, "/admin/console/login", &fields).await;
    let Some((secret, step)) = second else {
        return r.status();
    };
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"action="/admin/console/mfa""#), "{html}");
    let mut fields = form_fields(&html);
    fields.push(("code".into(), totp(secret, step)));
    post_form(b, t, "/admin/console/mfa", &fields)
        .await
        .status()
}

/// The id in the first `/admin/console/users/{id}` link of a page.
fn first_user_link(html: &str) -> String {
    let rest = html.split(r#"href="/admin/console/users/"#).nth(1).unwrap();
    rest.split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn issue_20_admin_console_needs_two_factors_and_audits_every_action() {
    let t = Truxe::start(&[]).await;
    let (admin_id, admin_access) = t.admin("root-c@example.com").await;
    let (secret, _, step) = enable_mfa(&t, &admin_access).await;
    let (victim_access, _) = t.register("victim@example.com").await;
    let b = browser();

    // Password and code, then the console.
    let s = sign_in(
        &b,
        &t,
        "root-c@example.com",
        ADMIN_PASSWORD,
        Some((&secret, step.max(now()) + 30)),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, page) = get(&b, &t, "/admin/console?q=victim").await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert!(
        page.contains("victim@example.com") && !page.contains(">root-c@example.com<"),
        "{page}"
    );
    let victim = first_user_link(&page);

    // Block: the user's sessions end and sign-in is refused.
    let here = format!("/admin/console/users/{victim}");
    let (_, page) = get(&b, &t, &here).await;
    let csrf: Vec<(String, String)> = csrf_field(&page);
    // Attack: the same post without the token, and from another browser.
    let r = post_form(&b, &t, &format!("{here}/block"), &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post_form(&browser(), &t, &format!("{here}/block"), &csrf).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        t.me(&victim_access).await,
        StatusCode::OK,
        "nothing was done"
    );
    // Control: with it.
    let r = post_form(&b, &t, &format!("{here}/block"), &csrf).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(t.me(&victim_access).await, StatusCode::UNAUTHORIZED);
    let (s, _) = t.login("victim@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, page) = get(&b, &t, &here).await;
    assert!(page.contains("Unblock"), "{page}");
    let r = post_form(&b, &t, &format!("{here}/unblock"), &csrf).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (s, _) = t.login("victim@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    // Deleting needs the box ticked.
    let r = post_form(&b, &t, &format!("{here}/delete"), &csrf).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // An application: registered, its secret shown once.
    let mut fields = csrf.clone();
    fields.push(("name".into(), "Ledger <app>".into()));
    fields.push((
        "redirect_uris".into(),
        "https://ledger.example.com/cb\n".into(),
    ));
    let r = post_form(&b, &t, "/admin/console/clients", &fields).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("shown this once") && page.contains("tcs_"),
        "{page}"
    );
    assert!(
        page.contains("Ledger &lt;app&gt;") && !page.contains("Ledger <app>"),
        "escaped: {page}"
    );

    // Signing keys: a rotation leaves the old key retiring.
    let r = post_form(&b, &t, "/admin/console/keys/rotate", &csrf).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, page) = get(&b, &t, "/admin/console/keys").await;
    assert!(
        page.contains("retiring") && page.contains("active"),
        "{page}"
    );

    // The audit log, filtered: the block, by this administrator.
    let (_, page) = get(&b, &t, "/admin/console/audit?action=user_blocked").await;
    assert!(
        page.contains("user_blocked") && page.contains(&admin_id),
        "{page}"
    );
    assert!(!page.contains("user_unblocked"), "{page}");

    // Every console request is in the trail, with the administrator, and
    // the refused ones too.
    let (s, body) = t
        .authed(
            reqwest::Method::GET,
            "/api/admin/audit?action=admin_console&limit=200",
            &admin_access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let events: Vec<&Value> = body["events"].as_array().unwrap().iter().collect();
    let by_admin = events
        .iter()
        .filter(|e| e["actor"] == admin_id.as_str())
        .count();
    assert!(by_admin >= 10, "{events:?}");
    assert!(
        events.iter().any(|e| e["outcome"] == "denied"),
        "{events:?}"
    );
    assert!(events.iter().any(
        |e| e["details"]["route"] == "/admin/console/users/{id}/{action}"
            && e["actor"] == admin_id.as_str()
    ));
}

#[tokio::test]
async fn only_administrators_with_a_second_factor_get_in() {
    let t = Truxe::start(&[]).await;
    // An administrator without a second factor: signed in, refused, told why.
    t.admin("plain-admin@example.com").await;
    let b = browser();
    assert_eq!(
        sign_in(&b, &t, "plain-admin@example.com", ADMIN_PASSWORD, None).await,
        StatusCode::SEE_OTHER
    );
    let (s, page) = get(&b, &t, "/admin/console").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("your account has none yet"), "{page}");
    let (s, _) = get(&b, &t, "/admin/console/audit").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A user with two factors who is not an administrator.
    let (_, secret, _, step) = user_with_mfa(&t, "mfa-user@example.com").await;
    let b = browser();
    let s = sign_in(
        &b,
        &t,
        "mfa-user@example.com",
        PASSWORD,
        Some((&secret, step.max(now()) + 30)),
    )
    .await;
    assert_eq!(s, StatusCode::SEE_OTHER);
    let (s, page) = get(&b, &t, "/admin/console").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("for system administrators"), "{page}");
    // Nobody signed in: the sign-in page, and no data.
    let (s, page) = get(&browser(), &t, "/admin/console/users/x").await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains(r#"action="/admin/console/login""#) && !page.contains("Sessions"),
        "{page}"
    );
}

/// The console in Chromium (its CSP enforced): sign in with password and
/// code, search, open a user. Screenshots in `test-artifacts/`.
#[tokio::test]
async fn issue_20_admin_console_in_chromium() {
    use fantoccini::Locator;
    let t = Truxe::start(&[("TRUXE_BRAND_NAME", "Acme ID")]).await;
    let (_, access) = t.admin("root-d@example.com").await;
    let (secret, _, step) = enable_mfa(&t, &access).await;
    for who in ["ann@example.com", "bob@example.com", "cyd@example.com"] {
        t.register(who).await;
    }
    let b = crate::browser::Browser::start().await;
    b.client
        .goto(&format!("{}/admin/console", t.url()))
        .await
        .unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("input#password"))
        .await
        .unwrap();
    b.fill("#email", "root-d@example.com").await;
    b.fill("#password", ADMIN_PASSWORD).await;
    b.click("button[type=submit]").await;
    b.client
        .wait()
        .for_element(Locator::Css("input#code"))
        .await
        .unwrap();
    b.fill("#code", &totp(&secret, step.max(now()) + 30)).await;
    b.click("button[type=submit]").await;
    b.client
        .wait()
        .for_element(Locator::Css("nav[aria-label=Console]"))
        .await
        .unwrap();
    let page = b.text().await;
    assert!(
        page.contains("bob@example.com") && page.contains("Signed in as root-d@example.com"),
        "{page}"
    );
    b.screenshot("console-users").await;
    b.fill("#q", "bob").await;
    b.click("form.filter button").await;
    // The list before the search has such links too: wait for the
    // search's own page first, or the click may land on the old one.
    b.wait_url(&format!("{}/admin/console?q=bob", t.url()))
        .await;
    b.client
        .wait()
        .for_element(Locator::Css("a[href^='/admin/console/users/']"))
        .await
        .unwrap();
    b.click("a[href^='/admin/console/users/']").await;
    b.client
        .wait()
        .for_element(Locator::Css("form[action$='/logout']"))
        .await
        .unwrap();
    assert!(b.text().await.contains("Sign out everywhere"));
    b.screenshot("console-user").await;
    b.client.close().await.unwrap();
}
