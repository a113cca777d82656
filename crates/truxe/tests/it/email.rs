//! Flows through email, end to end via the development mailbox: password
//! reset, password change, email verification and magic links.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{code, mailed_token, tokens, Truxe, PASSWORD};

const NEW_PASSWORD: &str = "Brand-New-Pass-7";

async fn mail_count(t: &Truxe, to: &str) -> usize {
    let body: Value = testkit::get_json(&t.http, &format!("{}/dev/mailbox?to={to}", t.url())).await;
    body["messages"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test]
async fn password_reset_by_email() {
    let t = Truxe::start(&[]).await;
    let (old_access, old_refresh) = t.register("walt@example.com").await;
    let (s1, b1) = t
        .post(
            "/api/auth/password/forgot",
            json!({"email": "walt@example.com"}),
        )
        .await;
    let (s2, b2) = t
        .post(
            "/api/auth/password/forgot",
            json!({"email": "nobody@example.com"}),
        )
        .await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(
        b1, b2,
        "the answer does not tell whether the account exists"
    );
    let token = mailed_token(&t, "walt@example.com", 1).await;
    assert!(token.starts_with("prt_"), "{token}");
    assert_eq!(mail_count(&t, "nobody@example.com").await, 0);

    // A weak password is refused without spending the token.
    let (s, body) = t
        .post(
            "/api/auth/password/reset",
            json!({"token": token, "password": "weak"}),
        )
        .await;
    assert_eq!((s, code(&body)), (StatusCode::BAD_REQUEST, "weak_password"));
    let (s, body) = t
        .post(
            "/api/auth/password/reset",
            json!({"token": token, "password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Every session ended; the new password works, the old one not; single use.
    assert_eq!(t.me(&old_access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t.refresh(&old_refresh).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.login("walt@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.login("walt@example.com", NEW_PASSWORD).await.0,
        StatusCode::OK
    );
    let (s, _) = t
        .post(
            "/api/auth/password/reset",
            json!({"token": token, "password": "Another-Pass-8"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for bad in ["", "prt_nope", &"x".repeat(500)] {
        assert_eq!(
            t.post(
                "/api/auth/password/reset",
                json!({"token": bad, "password": NEW_PASSWORD})
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn password_change_ends_the_other_sessions() {
    let t = Truxe::start(&[]).await;
    let (a, _) = t.register("xena@example.com").await;
    let (_, b) = t.login("xena@example.com", PASSWORD).await;
    let (other, _) = tokens(&b);
    let change = |current: &str, new: &str| json!({"currentPassword": current, "newPassword": new});
    let (s, body) = t
        .authed(
            Method::PUT,
            "/api/auth/password/change",
            &a,
            Some(change("Wrong-Password-1", NEW_PASSWORD)),
        )
        .await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::UNAUTHORIZED, "invalid_credentials")
    );
    let (s, body) = t
        .authed(
            Method::PUT,
            "/api/auth/password/change",
            &a,
            Some(change(PASSWORD, "short")),
        )
        .await;
    assert_eq!((s, code(&body)), (StatusCode::BAD_REQUEST, "weak_password"));
    let (s, _) = t
        .authed(
            Method::PUT,
            "/api/auth/password/change",
            &a,
            Some(change(PASSWORD, NEW_PASSWORD)),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t.me(&a).await, StatusCode::OK, "the caller's session stays");
    assert_eq!(
        t.me(&other).await,
        StatusCode::UNAUTHORIZED,
        "other sessions end"
    );
    assert_eq!(
        t.login("xena@example.com", NEW_PASSWORD).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn email_verification() {
    let t = Truxe::start(&[]).await;
    let (access, _) = t.register("yuri@example.com").await;
    let (s, body) = t
        .authed(
            Method::POST,
            "/api/auth/email/send-verification",
            &access,
            None,
        )
        .await;
    assert_eq!((s, &body["data"]["sent"]), (StatusCode::OK, &json!(true)));
    let token = mailed_token(&t, "yuri@example.com", 1).await;
    let verify = |tok: &str| {
        t.http
            .get(format!("{}/api/auth/email/verify", t.url()))
            .query(&[("token", tok)])
            .send()
    };
    assert_eq!(verify(&token).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        verify(&token).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "single use"
    );
    let r = t
        .http
        .get(format!("{}/api/auth/email/verify", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Sessions from before the proof end; the registrant signs in again.
    assert_eq!(t.me(&access).await, StatusCode::UNAUTHORIZED);
    let (_, body) = t.login("yuri@example.com", PASSWORD).await;
    let (access, _) = tokens(&body);
    let (_, me) = t.authed(Method::GET, "/auth/me", &access, None).await;
    assert_eq!(me["user"]["emailVerified"], true);
    let (_, body) = t
        .authed(
            Method::POST,
            "/api/auth/email/send-verification",
            &access,
            None,
        )
        .await;
    assert_eq!(body["data"]["sent"], false, "already verified");
}

#[tokio::test]
async fn magic_links_sign_in_once_and_redirect_only_where_allowed() {
    let allowed = "https://app.example.com/callback";
    let t = Truxe::start(&[("TRUXE_MAGIC_LINK_REDIRECTS", allowed)]).await;
    t.register("zoe@example.com").await;
    let (s, body) = t
        .post(
            "/auth/magic-link",
            json!({"email": "zoe@example.com", "redirectUri": "https://evil.example.net/"}),
        )
        .await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::BAD_REQUEST, "validation_error")
    );
    let (s, _) = t
        .post(
            "/auth/magic-link",
            json!({"email": "zoe@example.com", "redirectUri": allowed}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let token = mailed_token(&t, "zoe@example.com", 1).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirects
        .get(format!("{}/auth/verify", t.url()))
        .query(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{allowed}#access_token=")),
        "{location}"
    );
    let access = location
        .split("access_token=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_eq!(t.me(access).await, StatusCode::OK);
    let again = no_redirects
        .get(format!("{}/auth/verify", t.url()))
        .query(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED, "single use");

    // Without a redirect: JSON tokens; the link also verifies the email.
    t.post("/auth/magic-link", json!({"email": "zoe@example.com"}))
        .await;
    let token = mailed_token(&t, "zoe@example.com", 2).await;
    let body: Value =
        testkit::get_json(&t.http, &format!("{}/auth/verify?token={token}", t.url())).await;
    let (access, _) = tokens(&body);
    let (_, me) = t.authed(Method::GET, "/auth/me", &access, None).await;
    assert_eq!(me["user"]["emailVerified"], true);
}

/// Issue 18, account pre-hijacking: whoever registered an address may not
/// own it. When the owner proves it without the password (a magic link),
/// the registrant's sessions, password and second factor are void; a
/// registrant who verifies their own address keeps the password.
#[tokio::test]
async fn issue_18_proving_an_address_ends_what_its_registrant_set() {
    let t = Truxe::start(&[]).await;
    let (squat_access, _, _, _) = crate::mfa::user_with_mfa(&t, "victim@example.com").await;
    assert_eq!(t.me(&squat_access).await, StatusCode::OK);
    // The owner signs in with an emailed link: no second factor is asked
    // (the registrant's is void), and the link's session works.
    t.post("/auth/magic-link", json!({"email": "victim@example.com"}))
        .await;
    let token = mailed_token(&t, "victim@example.com", 1).await;
    let body: Value =
        testkit::get_json(&t.http, &format!("{}/auth/verify?token={token}", t.url())).await;
    assert!(body["data"].get("mfa_required").is_none(), "{body}");
    let (owner, _) = tokens(&body);
    assert_eq!(t.me(&owner).await, StatusCode::OK);
    // The registrant's session and password are void.
    assert_eq!(t.me(&squat_access).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        t.login("victim@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Control: a registrant verifying their own address keeps the
    // password, and signs in again (sessions from before the proof end).
    let (access, refresh) = t.register("own@example.com").await;
    t.verify_address("own@example.com", &access).await;
    assert_eq!(t.refresh(&refresh).await.0, StatusCode::UNAUTHORIZED);
    let (s, body) = t.login("own@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (access, _) = tokens(&body);
    let (_, me) = t.authed(Method::GET, "/auth/me", &access, None).await;
    assert_eq!(me["user"]["emailVerified"], true);
}

/// Issue 20: the emailed verification link leads to a hosted page. Opening
/// it (as a mail scanner would) confirms nothing; the button does, once.
#[tokio::test]
async fn the_verification_link_opens_a_page_that_confirms_on_a_click() {
    let t = Truxe::start(&[]).await;
    let (access, _) = t.register("vera@example.com").await;
    let (s, _) = t
        .authed(
            Method::POST,
            "/api/auth/email/send-verification",
            &access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let url = format!("{}/dev/mailbox?to=vera@example.com", t.url());
    let mailbox: Value = testkit::get_json(&t.http, &url).await;
    let text = mailbox["messages"][0]["text"].as_str().unwrap().to_owned();
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/verify-email?token="))
        .unwrap_or_else(|| panic!("a link to the page: {text}"));
    assert!(link.starts_with(&t.url()), "{link}");
    let token = mailed_token(&t, "vera@example.com", 1).await;
    // Fetched: a page with a button, and the address not yet confirmed.
    let page = t.http.get(link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Confirm my address") && html.contains(r#"action="/verify-email""#),
        "{html}"
    );
    assert_eq!(
        t.me(&access).await,
        StatusCode::OK,
        "nothing was confirmed yet"
    );
    // The click: confirmed, once.
    let confirm = || {
        t.http
            .post(format!("{}/verify-email", t.url()))
            .form(&[("token", token.as_str())])
            .send()
    };
    let r = confirm().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Your email address is confirmed"));
    let (_, body) = t.login("vera@example.com", PASSWORD).await;
    let (fresh, _) = tokens(&body);
    let (_, me) = t.authed(Method::GET, "/auth/me", &fresh, None).await;
    assert_eq!(me["user"]["emailVerified"], true);
    let r = confirm().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("expired or was used"));
    // A link without its token says so.
    let r = t
        .http
        .get(format!("{}/verify-email", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
