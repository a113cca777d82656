//! Issue 20: passkeys. In Chromium with WebDriver's virtual authenticator:
//! register one on the account page, sign in to an application with it
//! (first factor), then with a password it becomes the second factor;
//! removed, it no longer signs in. Over HTTP: the attacks that need no
//! authenticator (forged answers, ceremonies reused or of another purpose,
//! address probing) beside their controls.

use std::time::Duration;

use fantoccini::Locator;
use reqwest::StatusCode;
use serde_json::{json, Value};
use testkit::free_port;

use crate::browser::Browser;
use crate::server::{code, jwt_part, tokens, Truxe, PASSWORD};

/// Truxe on `localhost` (a WebAuthn relying party needs a domain name).
async fn on_localhost() -> (Truxe, String) {
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let t = Truxe::start_on(port, &[("JWT_ISSUER", base.as_str())]).await;
    (t, base)
}

/// `POST /session/{id}/webauthn/authenticator`: a platform authenticator
/// that verifies its user and answers by itself.
#[derive(Debug)]
struct AddAuthenticator;

impl fantoccini::wd::WebDriverCompatibleCommand for AddAuthenticator {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/webauthn/authenticator",
            session.unwrap_or_default()
        ))
    }
    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = json!({
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": true,
            "hasUserVerification": true, "isUserVerified": true,
            "automaticPresenceSimulation": true,
        });
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// Exchanges the code of `back` for tokens; the ID token's claims.
async fn id_token(
    t: &Truxe,
    back: &url::Url,
    client: &(String, String),
    redirect: &str,
    verifier: &str,
) -> Value {
    let code = back
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {back}"));
    let r = t
        .http
        .post(format!("{}/oauth/token", t.url()))
        .basic_auth(&client.0, Some(&client.1))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    jwt_part(body["id_token"].as_str().expect("an ID token"), 1)
}

/// Waits (through navigations) until the page's text contains `what`.
async fn wait_text(b: &Browser, what: &str) {
    testkit::eventually(
        &format!("a page saying {what:?}"),
        Duration::from_secs(30),
        || async {
            let main = b.client.find(Locator::Css("main")).await.ok()?;
            main.text().await.ok()?.contains(what).then_some(())
        },
    )
    .await
}

/// Signs out on the account page, and waits until it is done.
async fn sign_out(b: &Browser) {
    b.click("form[action='/account/logout'] button").await;
    wait_text(b, "You are signed out").await;
}

#[tokio::test]
async fn issue_20_passkeys_register_sign_in_and_second_factor_in_chromium() {
    let (t, base) = on_localhost().await;
    let (_, admin) = t.admin("root-p@example.com").await;
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
    let client = (
        c["data"]["client"]["clientId"].as_str().unwrap().to_owned(),
        c["data"]["clientSecret"].as_str().unwrap().to_owned(),
    );
    t.register("pia@example.com").await;
    let verifier = "passkey-verifier-0123456789-0123456789-0123456789";
    let mut authorize = url::Url::parse(&format!("{base}/oauth/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.0)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid email")
        .append_pair("state", "p1")
        .append_pair("code_challenge", &secure::oauth::pkce_challenge(verifier))
        .append_pair("code_challenge_method", "S256");

    let b = Browser::start().await;
    b.client
        .issue_cmd(AddAuthenticator)
        .await
        .expect("a virtual authenticator");

    // Sign in to the account page with the password, add a passkey.
    b.client.goto(&format!("{base}/account")).await.unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("input#password"))
        .await
        .unwrap();
    b.fill("#email", "pia@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.click("button:not([formaction])").await;
    b.client
        .wait()
        .for_element(Locator::Css("form[data-passkey=create]"))
        .await
        .unwrap();
    b.fill("input#name", "laptop").await;
    b.click("form[data-passkey=create] button").await;
    wait_text(&b, "laptop").await;
    let page = b.text().await;
    assert!(page.contains("last used never"), "{page}");
    b.client
        .execute(
            "document.querySelector('form[data-passkey]').scrollIntoView({block: 'end'})",
            vec![],
        )
        .await
        .unwrap();
    b.screenshot("passkeys-1-account").await;
    sign_out(&b).await;

    // Sign in to the application with the passkey alone: email, then the
    // browser's authenticator (the page asks it at once).
    b.client.goto(authorize.as_str()).await.unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("input#email"))
        .await
        .unwrap();
    b.screenshot("passkeys-2-sign-in").await;
    b.fill("#email", "pia@example.com").await;
    b.click("button[formaction]").await;
    b.client
        .wait()
        .for_element(Locator::Css("button[value=allow]"))
        .await
        .unwrap();
    b.click("button[value=allow]").await;
    let back = b.wait_url(redirect).await;
    let claims = id_token(&t, &back, &client, redirect, verifier).await;
    assert_eq!(claims["amr"], json!(["hwk", "user"]), "{claims}");
    assert_eq!(claims["acr"], "urn:truxe:acr:mfa");

    // With a passkey, a password is no longer enough: it asks for the
    // passkey as the second step.
    b.client
        .goto(&format!("{authorize}&prompt=login"))
        .await
        .unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("input#password"))
        .await
        .unwrap();
    b.fill("#email", "pia@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.click("button:not([formaction])").await;
    let back = b.wait_url(redirect).await;
    let claims = id_token(&t, &back, &client, redirect, verifier).await;
    assert_eq!(claims["amr"], json!(["pwd", "hwk"]), "{claims}");

    // The account page shows it used; removed, it signs in no more.
    b.client.goto(&format!("{base}/account")).await.unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("form[action='/account/passkeys/remove']"))
        .await
        .unwrap();
    assert!(!b.text().await.contains("last used never"));
    b.click("form[action='/account/passkeys/remove'] button")
        .await;
    wait_text(&b, "None yet").await;
    sign_out(&b).await;
    b.client.goto(authorize.as_str()).await.unwrap();
    b.client
        .wait()
        .for_element(Locator::Css("input#email"))
        .await
        .unwrap();
    b.fill("#email", "pia@example.com").await;
    b.click("button[formaction]").await;
    // The authenticator holds no credential the options name: the browser
    // says so on the page, and nothing is posted.
    wait_text(&b, "cancelled or timed out").await;
    b.screenshot("passkeys-3-none-left").await;
    // And the password alone works again.
    let (s, body) = t.login("pia@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body["data"]["tokens"]["access_token"].is_string(), "{body}");
    b.client.close().await.unwrap();
}

#[tokio::test]
async fn forged_reused_and_misdirected_passkey_answers_are_refused() {
    let (t, _) = on_localhost().await;
    let (access, _) = t.register("quin@example.com").await;
    // Options for an address with no account, one without a passkey and
    // one that may register: the first two look alike (no enumeration).
    let options = |email: &str| {
        let t = &t;
        let email = email.to_owned();
        async move {
            let (s, body) = t
                .post("/auth/passkeys/login/options", json!({"email": email}))
                .await;
            assert_eq!(s, StatusCode::OK, "{body}");
            body["data"].clone()
        }
    };
    let nobody = options("nobody@example.com").await;
    let quin = options("quin@example.com").await;
    let keys = |v: &Value| {
        let mut k: Vec<String> = v["options"]["publicKey"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&nobody), keys(&quin));
    assert_eq!(nobody["options"]["publicKey"]["rpId"], "localhost");
    // The stand-in credential is the same each time (no tell by change).
    let again = options("nobody@example.com").await;
    assert_eq!(
        again["options"]["publicKey"]["allowCredentials"],
        nobody["options"]["publicKey"]["allowCredentials"]
    );

    // A forged answer: refused, no session, audited.
    let forged = json!({
        "id": "AAAA", "rawId": "AAAA", "type": "public-key", "extensions": {},
        "response": {"clientDataJSON": "e30", "authenticatorData": "AAAA", "signature": "AAAA", "userHandle": null},
    });
    let (s, body) = t
        .post(
            "/auth/passkeys/login",
            json!({"ceremony_id": quin["ceremony_id"], "credential": forged}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["data"]["tokens"].is_null());
    // The ceremony is spent by that attempt: a second answer to it is
    // refused as expired, whatever it holds.
    let (s, body) = t
        .post(
            "/auth/passkeys/login",
            json!({"ceremony_id": quin["ceremony_id"], "credential": forged}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    // A registration ceremony cannot be answered as a sign-in.
    let (s, reg) = t
        .authed(
            reqwest::Method::POST,
            "/auth/passkeys/register/options",
            &access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{reg}");
    let (s, body) = t
        .post(
            "/auth/passkeys/login",
            json!({"ceremony_id": reg["data"]["ceremony_id"], "credential": forged}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    // Malformed and oversized answers: a clear 400.
    let (s, reg) = t
        .authed(
            reqwest::Method::POST,
            "/auth/passkeys/register/options",
            &access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = t
        .authed(
            reqwest::Method::POST,
            "/auth/passkeys",
            &access,
            Some(json!({"ceremony_id": reg["data"]["ceremony_id"], "name": "x", "credential": {"id": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(code(&body), "validation_error", "{body}");
    let (s, body) = t
        .authed(
            reqwest::Method::POST,
            "/auth/passkeys",
            &access,
            Some(json!({"ceremony_id": "x", "name": "", "credential": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // Nothing was registered, so a password still signs in alone (control).
    let (s, body) = t.login("quin@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    assert!(tokens(&body).0.len() > 10);
    let (s, list) = t
        .authed(reqwest::Method::GET, "/auth/passkeys", &access, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["data"]["passkeys"], json!([]));
    // Passkeys need a domain: on an address they are refused, clearly.
    let plain = Truxe::start(&[]).await;
    let (s, body) = plain
        .post(
            "/auth/passkeys/login/options",
            json!({"email": "quin@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("domain"),
        "{body}"
    );
}
