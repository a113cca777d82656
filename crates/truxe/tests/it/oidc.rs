//! Issue 20: Truxe as an OpenID Connect provider. A browser (a cookie jar
//! that follows no redirects, so each step is seen) goes through the
//! hosted pages; the application's side speaks the token and userinfo
//! endpoints; ID tokens are checked with `jsonwebtoken` against the JWKS.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::mfa::{now, totp, user_with_mfa};
use crate::server::{Truxe, PASSWORD};

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub(crate) const VERIFIER: &str =
    "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-plus-some-more-entropy";

pub(crate) struct App {
    pub(crate) id: String,
    pub(crate) secret: String,
}

async fn register_client(t: &Truxe, admin: &str, body: Value) -> (StatusCode, Value) {
    t.authed(Method::POST, "/api/oauth/clients", admin, Some(body))
        .await
}

pub(crate) async fn client(t: &Truxe, admin: &str) -> App {
    let (s, b) = register_client(
        t,
        admin,
        json!({"name": "Notes <b>app</b>", "redirectUris": [REDIRECT]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    App {
        id: b["data"]["client"]["clientId"].as_str().unwrap().to_owned(),
        secret: b["data"]["clientSecret"].as_str().unwrap().to_owned(),
    }
}

pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn challenge(verifier: &str) -> String {
    secure::oauth::pkce_challenge(verifier)
}

pub(crate) fn authorize_url(t: &Truxe, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", t.url())).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid email profile offline_access")
        .append_pair("state", "st-<1>&")
        .append_pair("nonce", "n-0S6_WzA2Mj")
        .append_pair("code_challenge", &challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.into()
}

/// A page as this browser gets it: status and text.
pub(crate) async fn get(b: &reqwest::Client, t: &Truxe, path: &str) -> (StatusCode, String) {
    let r = b.get(format!("{}{path}", t.url())).send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The CSRF field of a page's forms, to post an action with.
pub(crate) fn csrf_field(html: &str) -> Vec<(String, String)> {
    form_fields(html)
        .into_iter()
        .filter(|(k, _)| k == "csrf")
        .take(1)
        .collect()
}

/// The hidden fields of the page's form, unescaped.
pub(crate) fn form_fields(html: &str) -> Vec<(String, String)> {
    let unescape = |s: &str| {
        s.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    };
    html.split(r#"<input type="hidden" name=""#)
        .skip(1)
        .filter_map(|rest| {
            let (name, rest) = rest.split_once('"')?;
            let rest = rest.strip_prefix(r#" value=""#)?;
            let (value, _) = rest.split_once('"')?;
            Some((unescape(name), unescape(value)))
        })
        .collect()
}

pub(crate) async fn post_form(
    b: &reqwest::Client,
    t: &Truxe,
    path: &str,
    fields: &[(String, String)],
) -> reqwest::Response {
    b.post(format!("{}{path}", t.url()))
        .form(fields)
        .send()
        .await
        .unwrap()
}

pub(crate) fn location(r: &reqwest::Response) -> url::Url {
    url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap()
}

pub(crate) fn param(u: &url::Url, name: &str) -> Option<String> {
    u.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Signs in on the hosted page and answers the consent page with
/// `decision`; the redirect to the application.
async fn sign_in_and_decide(
    b: &reqwest::Client,
    t: &Truxe,
    url: &str,
    email: &str,
    decision: &str,
) -> url::Url {
    let page = b.get(url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        !csp.contains("unsafe")
            && !csp.contains("script-src")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<label for=\"email\">") && html.contains("lang=\"en\""),
        "{html}"
    );
    let mut fields = form_fields(&html);
    fields.push(("email".into(), email.into()));
    fields.push(("password".into(), PASSWORD.into()));
    let consent = post_form(b, t, "/oauth/authorize/login", &fields).await;
    assert_eq!(consent.status(), StatusCode::OK);
    let csp = consent.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("form-action 'self' http://127.0.0.1:9"),
        "{csp}"
    );
    let html = consent.text().await.unwrap();
    assert!(
        html.contains("Notes &lt;b&gt;app&lt;/b&gt; would like to"),
        "names are escaped: {html}"
    );
    let mut fields = form_fields(&html);
    fields.push(("decision".into(), decision.into()));
    let back = post_form(b, t, "/oauth/authorize/consent", &fields).await;
    assert_eq!(back.status(), StatusCode::SEE_OTHER);
    location(&back)
}

pub(crate) async fn exchange(
    t: &Truxe,
    app: &App,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let r = t
        .http
        .post(format!("{}/oauth/token", t.url()))
        .basic_auth(&app.id, Some(&app.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn refresh(t: &Truxe, app: &App, token: &str) -> (StatusCode, Value) {
    let r = t
        .http
        .post(format!("{}/oauth/token", t.url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", &app.id),
            ("client_secret", &app.secret),
        ])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn userinfo(t: &Truxe, access: &str) -> (StatusCode, Value) {
    let r = t
        .http
        .get(format!("{}/oauth/userinfo", t.url()))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// The ID token's claims, its signature checked against the JWKS by
/// `jsonwebtoken` with the client as the required audience.
pub(crate) async fn id_claims(t: &Truxe, id_token: &str, audience: &str) -> Value {
    let jwks: Value = t
        .http
        .get(format!("{}/.well-known/jwks.json", t.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"].as_str() == header.kid.as_deref())
        .unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[audience]);
    v.set_issuer(&[t.url()]);
    jsonwebtoken::decode::<Value>(id_token, &key, &v)
        .unwrap()
        .claims
}

/// `at_hash` as OpenID Connect Core §3.1.3.6 computes it for EdDSA
/// (the suite's keys): the left half of SHA-512, base64url.
fn at_hash(access: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha512::digest(access.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d[..32])
}

#[tokio::test]
async fn issue_20_code_flow_with_pkce_issues_tokens_only_the_client_can_use() {
    // No retry grace: a reused refresh token is a replay at once.
    let t = Truxe::start(&[("TRUXE_REFRESH_REUSE_GRACE", "0s")]).await;
    let (_, admin) = t.admin("root@example.com").await;
    let app = client(&t, &admin).await;
    t.register("uma@example.com").await;

    // Discovery lists the endpoints.
    let d: Value = t
        .http
        .get(format!("{}/.well-known/openid-configuration", t.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["authorization_endpoint"],
        format!("{}/oauth/authorize", t.url())
    );
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    let d2: Value = t
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            t.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d, d2);

    let b = browser();
    let back = sign_in_and_decide(
        &b,
        &t,
        &authorize_url(&t, &app.id, &[]),
        "uma@example.com",
        "allow",
    )
    .await;
    assert_eq!(back.as_str().split('?').next(), Some(REDIRECT));
    assert_eq!(
        param(&back, "state").as_deref(),
        Some("st-<1>&"),
        "state returned as sent"
    );
    assert_eq!(param(&back, "iss"), Some(t.url()), "RFC 9207");
    let code = param(&back, "code").unwrap();

    let (s, tokens) = exchange(&t, &app, &code, VERIFIER).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let claims = id_claims(&t, tokens["id_token"].as_str().unwrap(), &app.id).await;
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["email"], "uma@example.com");
    assert_eq!(claims["at_hash"], at_hash(&access));
    assert!(claims["auth_time"].as_i64().unwrap() <= now() as i64);

    let (s, me) = userinfo(&t, &access).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["sub"], claims["sub"]);
    assert_eq!(me["email"], "uma@example.com");
    // Attack: the client's token used on Truxe's own API (its audience is
    // the client) is refused; the control, a Truxe token, works.
    assert_eq!(t.me(&access).await, StatusCode::UNAUTHORIZED);
    let (uma, uma_refresh) = {
        let (_, b) = t.login("uma@example.com", PASSWORD).await;
        crate::server::tokens(&b)
    };
    assert_eq!(t.me(&uma).await, StatusCode::OK);
    // Attack: a Truxe token at userinfo is refused too.
    assert_eq!(userinfo(&t, &uma).await.0, StatusCode::UNAUTHORIZED);
    // Attack: the client's refresh token at Truxe's refresh ends its
    // session; Truxe's own refresh token at the client's endpoint too.
    let (s, _) = refresh(&t, &app, &uma_refresh).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        t.refresh(&uma_refresh).await.0,
        StatusCode::UNAUTHORIZED,
        "that session ended"
    );

    // Refresh rotates; the spent token reused ends the session.
    let (s, second) = refresh(&t, &app, &refresh_token).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    assert_ne!(second["refresh_token"], tokens["refresh_token"]);
    assert_eq!(
        userinfo(&t, second["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::OK
    );
    let (s, e) = refresh(&t, &app, &refresh_token).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        userinfo(&t, second["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // Signed in already and consent remembered: straight back with a code.
    let again = b.get(authorize_url(&t, &app.id, &[])).send().await.unwrap();
    assert_eq!(
        again.status(),
        StatusCode::SEE_OTHER,
        "{:?}",
        again.headers()
    );
    let code2 = param(&location(&again), "code").unwrap();
    // Attack: a wrong verifier.
    let (s, e) = exchange(&t, &app, &code2, "x".repeat(43).as_str()).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    // A replayed code ends what its first exchange gave.
    let again = b.get(authorize_url(&t, &app.id, &[])).send().await.unwrap();
    let code3 = param(&location(&again), "code").unwrap();
    let (s, first) = exchange(&t, &app, &code3, VERIFIER).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = exchange(&t, &app, &code3, VERIFIER).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        userinfo(&t, first["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Attack: a wrong client secret.
    let thief = App {
        id: app.id.clone(),
        secret: "tcs_wrong".into(),
    };
    let again = b.get(authorize_url(&t, &app.id, &[])).send().await.unwrap();
    let code4 = param(&location(&again), "code").unwrap();
    let (s, e) = exchange(&t, &thief, &code4, VERIFIER).await;
    assert_eq!(
        (s, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    // The code was not spent by that; the client's refresh token brought
    // to Truxe's own refresh endpoint is refused and ends its session.
    let (s, fourth) = exchange(&t, &app, &code4, VERIFIER).await;
    assert_eq!(s, StatusCode::OK, "{fourth}");
    let r = t.refresh(fourth["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.0, StatusCode::UNAUTHORIZED, "{}", r.1);
    assert_eq!(
        userinfo(&t, fourth["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // prompt=login asks again even though the browser is signed in.
    let page = b
        .get(authorize_url(&t, &app.id, &[("prompt", "login")]))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Sign in"));
    // The user withdraws consent: the client's sessions end, and the next
    // request asks again.
    let (s, list) = t
        .authed(Method::GET, "/api/oauth/consents", &uma, None)
        .await;
    // (That Truxe session ended above; sign in again for the account API.)
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{list}");
    let (_, b2) = t.login("uma@example.com", PASSWORD).await;
    let (uma, _) = crate::server::tokens(&b2);
    let (_, list) = t
        .authed(Method::GET, "/api/oauth/consents", &uma, None)
        .await;
    assert_eq!(
        list["data"]["consents"][0]["clientId"],
        app.id.as_str(),
        "{list}"
    );
    let again = b.get(authorize_url(&t, &app.id, &[])).send().await.unwrap();
    let (s, live) = exchange(
        &t,
        &app,
        &param(&location(&again), "code").unwrap(),
        VERIFIER,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let live = live["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo(&t, &live).await.0, StatusCode::OK);
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/oauth/consents/{}", app.id),
            &uma,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(userinfo(&t, &live).await.0, StatusCode::UNAUTHORIZED);
    let page = b.get(authorize_url(&t, &app.id, &[])).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK, "consent is asked again");
}

#[tokio::test]
async fn issue_20_bad_requests_never_redirect_to_an_unregistered_uri() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root2@example.com").await;
    let app = client(&t, &admin).await;
    let b = browser();
    // An unregistered redirect URI or client: a page, no Location.
    for url in [
        authorize_url(&t, &app.id, &[]).replace("127.0.0.1%3A9", "evil.example"),
        authorize_url(&t, "tcl_nobody", &[]),
        format!("{}/oauth/authorize?client_id={}", t.url(), app.id),
    ] {
        let r = b.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(r.headers().get("location").is_none());
        assert!(r.text().await.unwrap().contains("role=\"alert\""));
    }
    // Other errors go back to the registered URI, with state and iss.
    let r = b
        .get(authorize_url(&t, &app.id, &[]).replace("response_type=code", "response_type=token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(param(&location(&r), "state").as_deref(), Some("st-<1>&"));
    // prompt=none with no sign-in in this browser.
    let r = b
        .get(authorize_url(&t, &app.id, &[("prompt", "none")]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("login_required")
    );
    // A public client must use PKCE.
    let (_, p) = register_client(
        &t,
        &admin,
        json!({"name": "SPA", "redirectUris": [REDIRECT], "public": true}),
    )
    .await;
    assert!(p["data"].get("clientSecret").is_none(), "{p}");
    let spa = p["data"]["client"]["clientId"].as_str().unwrap();
    let no_pkce = authorize_url(&t, spa, &[])
        .split("&code_challenge")
        .next()
        .unwrap()
        .to_owned();
    let r = b.get(&no_pkce).send().await.unwrap();
    assert_eq!(
        param(&location(&r), "error").as_deref(),
        Some("invalid_request")
    );
    // Forged or missing CSRF token on a form: refused, nothing signed in.
    t.register("vic@example.com").await;
    let page = b
        .get(authorize_url(&t, &app.id, &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut fields = form_fields(&page);
    for f in fields.iter_mut().filter(|(k, _)| k == "csrf") {
        f.1 = "00".repeat(32);
    }
    fields.push(("email".into(), "vic@example.com".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let r = post_form(&b, &t, "/oauth/authorize/login", &fields).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let other = browser();
    let r = post_form(&other, &t, "/oauth/authorize/login", &form_fields(&page)).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "another browser cannot post this page's form"
    );
    // Control and denial: the right form works; "deny" answers access_denied.
    let back = sign_in_and_decide(
        &b,
        &t,
        &authorize_url(&t, &app.id, &[]),
        "vic@example.com",
        "deny",
    )
    .await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    // A wrong password says so on the page.
    let b3 = browser();
    let page = b3
        .get(authorize_url(&t, &app.id, &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut fields = form_fields(&page);
    fields.push(("email".into(), "vic@example.com".into()));
    fields.push(("password".into(), "not-it".into()));
    let r = post_form(&b3, &t, "/oauth/authorize/login", &fields).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("not right"));
    // The registry: only administrators; redirect URIs must be https or
    // loopback http.
    let (vic, _) = {
        let (_, b) = t.login("vic@example.com", PASSWORD).await;
        crate::server::tokens(&b)
    };
    let (s, _) = register_client(&t, &vic, json!({"name": "x", "redirectUris": [REDIRECT]})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, e) = register_client(
        &t,
        &admin,
        json!({"name": "x", "redirectUris": ["http://app.example/cb"]}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, list) = t
        .authed(Method::GET, "/api/oauth/clients", &admin, None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!list.to_string().contains("tcs_"), "no secrets in listings");
    // A new secret replaces the old at once.
    let (s, r) = t
        .authed(
            Method::POST,
            &format!("/api/oauth/clients/{}/regenerate-secret", app.id),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let fresh = App {
        id: app.id.clone(),
        secret: r["data"]["clientSecret"].as_str().unwrap().to_owned(),
    };
    assert_eq!(
        exchange(&t, &app, "tac_x", VERIFIER).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        exchange(&t, &fresh, "tac_x", VERIFIER).await.0,
        StatusCode::BAD_REQUEST,
        "authenticated; the code is bad"
    );
}

#[tokio::test]
async fn issue_20_second_factor_on_the_hosted_pages() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root3@example.com").await;
    let app = client(&t, &admin).await;
    let (_, secret, _, step) = user_with_mfa(&t, "wes@example.com").await;
    let b = browser();
    let page = b
        .get(authorize_url(&t, &app.id, &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut fields = form_fields(&page);
    fields.push(("email".into(), "wes@example.com".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let r = post_form(&b, &t, "/oauth/authorize/login", &fields).await;
    let html = r.text().await.unwrap();
    assert!(html.contains("Two-step verification"), "{html}");
    let mut fields = form_fields(&html);
    // A wrong code first: the page says so.
    let mut wrong = fields.clone();
    wrong.push(("code".into(), "000000".into()));
    let r = post_form(&b, &t, "/oauth/authorize/mfa", &wrong).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let later = step.max(now()) + 30;
    fields.push(("code".into(), totp(&secret, later)));
    let r = post_form(&b, &t, "/oauth/authorize/mfa", &fields).await;
    assert_eq!(r.status(), StatusCode::OK, "consent next");
    let mut fields = form_fields(&r.text().await.unwrap());
    fields.push(("decision".into(), "allow".into()));
    let back = post_form(&b, &t, "/oauth/authorize/consent", &fields).await;
    let code = param(&location(&back), "code").unwrap();
    let (s, tokens) = exchange(&t, &app, &code, VERIFIER).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let claims = id_claims(&t, tokens["id_token"].as_str().unwrap(), &app.id).await;
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims["acr"], "urn:truxe:acr:mfa");
}

/// A relying-party library, unmodified, from its registry: panva's
/// openid-client (npm; certified) or Authlib (PyPI).
#[derive(Clone, Copy, Debug)]
enum Rp {
    OpenidClient,
    Authlib,
}

impl Rp {
    /// Runs the library's script (`tests/oidc/rp.mjs` or `rp.py`): its
    /// JSON answer, or its refusal (stderr).
    fn run(self, args: &[&str]) -> Result<Value, String> {
        let mut cmd = match self {
            Rp::OpenidClient => {
                crate::social::ensure_installed();
                let mut c = std::process::Command::new("node");
                c.arg(crate::social::oidc_dir().join("rp.mjs"));
                c
            }
            Rp::Authlib => {
                let mut c = std::process::Command::new(crate::social::authlib_python());
                c.arg(crate::social::oidc_dir().join("rp.py"));
                c
            }
        };
        let out = cmd.args(args).output().expect("the relying party runs");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    }
}

/// Relying-party libraries, unmodified (openid-client and Authlib,
/// configured as their documentation says), sign in with Truxe:
/// discovery, PKCE, state, nonce, the ID token's signature and claims,
/// userinfo, a refresh, introspection, revocation and the RP-initiated
/// logout URL are handled by them, not by us; client credentials too. A
/// callback whose state is not theirs is refused by them.
#[tokio::test]
async fn issue_20_relying_party_libraries_sign_in_with_truxe() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root4@example.com").await;
    let bye = "http://127.0.0.1:9/bye";
    let (s, c) = register_client(
        &t,
        &admin,
        json!({"name": "Notes <b>app</b>", "redirectUris": [REDIRECT], "postLogoutRedirectUris": [bye]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let app = App {
        id: c["data"]["client"]["clientId"].as_str().unwrap().to_owned(),
        secret: c["data"]["clientSecret"].as_str().unwrap().to_owned(),
    };
    let o = crate::machines::org(&t, "svc-rp@example.com").await;
    let (sa_id, sa_secret) =
        crate::machines::account(&t, &o, "reporter", json!(["org:read"])).await;
    let issuer = t.url();
    for (i, rp) in [Rp::OpenidClient, Rp::Authlib].into_iter().enumerate() {
        let email = format!("rita{i}@example.com");
        t.register(&email).await;
        let common = [
            issuer.as_str(),
            app.id.as_str(),
            app.secret.as_str(),
            REDIRECT,
            "EdDSA",
        ];
        let start = rp.run(&[&["start"], &common[..]].concat()).unwrap();
        let url = start["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!("{issuer}/oauth/authorize?")),
            "{rp:?}: {url}"
        );
        let b = browser();
        let back = sign_in_and_decide(&b, &t, url, &email, "allow").await;
        let finish = |state: &str| {
            rp.run(
                &[
                    &["finish"],
                    &common[..],
                    &[
                        back.as_str(),
                        start["verifier"].as_str().unwrap(),
                        state,
                        start["nonce"].as_str().unwrap(),
                        bye,
                    ],
                ]
                .concat(),
            )
        };
        // Attack: an answer to another sign-in (its state differs) is
        // refused by the library before it spends the code.
        let refused = finish("someone-elses-state").unwrap_err();
        assert!(
            refused.to_lowercase().contains("state"),
            "{rp:?}: {refused}"
        );
        let done =
            finish(start["state"].as_str().unwrap()).unwrap_or_else(|e| panic!("{rp:?}: {e}"));
        assert_eq!(done["claims"]["email"], email.as_str(), "{rp:?}: {done}");
        assert_eq!(done["userinfo"]["email"], email.as_str());
        assert_eq!(done["refreshed"]["rotated"], true);
        assert_eq!(done["refreshed"]["sub"], done["claims"]["sub"]);
        assert_eq!(done["introspected"]["active"], true, "{rp:?}: {done}");
        assert_eq!(done["introspected"]["client_id"], app.id.as_str());
        assert_eq!(
            done["after_revocation"]["active"], false,
            "revoking ends the session"
        );
        // The logout URL the library built: Truxe asks, then returns.
        let end = done["end_session_url"].as_str().unwrap();
        let page = b.get(end).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{rp:?}: {end}");
        let r = post_form(
            &b,
            &t,
            "/oauth/end_session",
            &form_fields(&page.text().await.unwrap()),
        )
        .await;
        let to = location(&r);
        assert_eq!(to.as_str().split('?').next(), Some(bye));
        assert_eq!(param(&to, "state").as_deref(), Some("bye"));
        // Client credentials, with a service account as the client.
        let cc = rp
            .run(&["cc", issuer.as_str(), &sa_id, &sa_secret, REDIRECT, "EdDSA"])
            .unwrap_or_else(|e| panic!("{rp:?}: {e}"));
        assert_eq!(cc["token_type"], "bearer");
        assert_eq!(cc["has_access_token"], true);
    }
}

async fn form_post(
    t: &Truxe,
    path: &str,
    app: &App,
    fields: &[(&str, &str)],
) -> (StatusCode, Value) {
    let r = t
        .http
        .post(format!("{}{path}", t.url()))
        .basic_auth(&app.id, Some(&app.secret))
        .form(fields)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

/// Tokens for `email` through the whole code flow in a fresh browser.
async fn tokens_for(t: &Truxe, app: &App, email: &str) -> (reqwest::Client, Value) {
    let b = browser();
    let back = sign_in_and_decide(&b, t, &authorize_url(t, &app.id, &[]), email, "allow").await;
    let (s, tokens) = exchange(t, app, &param(&back, "code").unwrap(), VERIFIER).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    (b, tokens)
}

/// Introspection (RFC 7662) and revocation (RFC 7009): a client learns
/// about and ends only its own tokens.
#[tokio::test]
async fn issue_20_introspection_and_revocation_answer_only_the_owning_client() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root5@example.com").await;
    let app = client(&t, &admin).await;
    let other = client(&t, &admin).await;
    t.register("ida@example.com").await;
    let (_, tokens) = tokens_for(&t, &app, "ida@example.com").await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh_token = tokens["refresh_token"].as_str().unwrap();

    let (s, v) = form_post(&t, "/oauth/introspect", &app, &[("token", access)]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["client_id"], app.id.as_str());
    assert!(v["scope"].as_str().unwrap().contains("email"));
    let (_, v) = form_post(
        &t,
        "/oauth/introspect",
        &app,
        &[
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(v["active"], true, "{v}");
    // Attack: another client asks about them, or revokes them: nothing.
    let (_, v) = form_post(&t, "/oauth/introspect", &other, &[("token", access)]).await;
    assert_eq!(v, json!({"active": false}));
    let (s, _) = form_post(&t, "/oauth/revoke", &other, &[("token", refresh_token)]).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "no error for a token that is not its own"
    );
    assert_eq!(
        userinfo(&t, access).await.0,
        StatusCode::OK,
        "and it still works"
    );
    // Unknown tokens and unauthenticated callers.
    let (_, v) = form_post(&t, "/oauth/introspect", &app, &[("token", "garbage")]).await;
    assert_eq!(v, json!({"active": false}));
    let nobody = App {
        id: app.id.clone(),
        secret: "tcs_nope".into(),
    };
    assert_eq!(
        form_post(&t, "/oauth/introspect", &nobody, &[("token", access)])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // The owner revokes: the session ends, both tokens go inactive.
    let (s, _) = form_post(&t, "/oauth/revoke", &app, &[("token", refresh_token)]).await;
    assert_eq!(s, StatusCode::OK);
    let (_, v) = form_post(&t, "/oauth/introspect", &app, &[("token", access)]).await;
    assert_eq!(v["active"], false);
    assert_eq!(userinfo(&t, access).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&t, &app, refresh_token).await.0,
        StatusCode::BAD_REQUEST
    );
}

/// RP-initiated logout: a link alone signs nobody out (a confirmation is
/// asked), the confirmation ends the browser's sign-in and the hinted
/// client session, and only a registered return address is followed.
#[tokio::test]
async fn issue_20_logout_asks_first_and_returns_only_to_registered_addresses() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root6@example.com").await;
    let (s, c) = register_client(
        &t,
        &admin,
        json!({"name": "Notes <b>app</b>", "redirectUris": [REDIRECT], "postLogoutRedirectUris": ["http://127.0.0.1:9/bye"]}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let app = App {
        id: c["data"]["client"]["clientId"].as_str().unwrap().to_owned(),
        secret: c["data"]["clientSecret"].as_str().unwrap().to_owned(),
    };
    t.register("lou@example.com").await;
    let (b, tokens) = tokens_for(&t, &app, "lou@example.com").await;
    let hint = tokens["id_token"].as_str().unwrap();
    let end = |back: &str| {
        let mut u = url::Url::parse(&format!("{}/oauth/end_session", t.url())).unwrap();
        u.query_pairs_mut()
            .append_pair("id_token_hint", hint)
            .append_pair("post_logout_redirect_uri", back)
            .append_pair("state", "bye-1");
        u.to_string()
    };
    // Attack: an unregistered return address is refused with a page.
    let r = b.get(end("http://evil.example/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
    // The link alone: a confirmation page, and still signed in.
    let r = b.get(end("http://127.0.0.1:9/bye")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign lou@example.com out"), "{page}");
    let again = b.get(authorize_url(&t, &app.id, &[])).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER, "still signed in");
    // A forged confirmation (another browser) is refused.
    let r = post_form(&browser(), &t, "/oauth/end_session", &form_fields(&page)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The confirmation: back to the registered address with the state.
    let r = post_form(&b, &t, "/oauth/end_session", &form_fields(&page)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = location(&r);
    assert_eq!(
        to.as_str().split('?').next(),
        Some("http://127.0.0.1:9/bye")
    );
    assert_eq!(param(&to, "state").as_deref(), Some("bye-1"));
    // Signed out: the next authorization asks for the password, and the
    // hinted client session has ended.
    let page = b.get(authorize_url(&t, &app.id, &[])).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        userinfo(&t, tokens["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

/// `grant_type=client_credentials` at the token endpoint: service
/// accounts' credentials, the same token `/api/service-accounts/token`
/// gives.
#[tokio::test]
async fn issue_20_client_credentials_for_service_accounts() {
    let t = Truxe::start(&[]).await;
    let o = crate::machines::org(&t, "svc-owner@example.com").await;
    let (id, secret) = crate::machines::account(&t, &o, "reporter", json!(["org:read"])).await;
    let sa = App {
        id: id.clone(),
        secret: secret.clone(),
    };
    let (s, v) = form_post(
        &t,
        "/oauth/token",
        &sa,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    let claims = crate::server::jwt_part(v["access_token"].as_str().unwrap(), 1);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["token_use"], "service");
    let wrong = App {
        id,
        secret: "truxe_cs_wrong".into(),
    };
    let (s, v) = form_post(
        &t,
        "/oauth/token",
        &wrong,
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
}

/// The sign-in page leads to sign-up (then consent and back to the
/// application, signed in) and to a password reset by email, whose link
/// opens Truxe's own page.
#[tokio::test]
async fn issue_20_sign_up_and_reset_from_the_sign_in_page() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root7@example.com").await;
    let app = client(&t, &admin).await;
    let b = browser();
    let page = b
        .get(authorize_url(&t, &app.id, &[]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let link = |text: &str, label: &str| -> String {
        let end = text
            .find(&format!(">{label}</a>"))
            .unwrap_or_else(|| panic!("no {label} link: {text}"));
        let start = text[..end].rfind("href=\"").unwrap() + 6;
        text[start..end - 1].replace("&amp;", "&")
    };
    let signup = link(&page, "Create an account");
    assert!(signup.starts_with("/oauth/authorize/signup?"), "{signup}");
    let form = b
        .get(format!("{}{signup}", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A weak password is refused on the page, nothing created.
    let mut fields = form_fields(&form);
    fields.push(("email".into(), "new@example.com".into()));
    fields.push(("password".into(), "short".into()));
    let r = post_form(&b, &t, "/oauth/authorize/signup", &fields).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("stronger password"));
    assert_eq!(
        t.login("new@example.com", "short").await.0,
        StatusCode::UNAUTHORIZED
    );
    let mut fields = form_fields(&form);
    fields.push(("email".into(), "new@example.com".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let r = post_form(&b, &t, "/oauth/authorize/signup", &fields).await;
    assert_eq!(r.status(), StatusCode::OK, "consent next");
    let mut fields = form_fields(&r.text().await.unwrap());
    fields.push(("decision".into(), "allow".into()));
    let back = post_form(&b, &t, "/oauth/authorize/consent", &fields).await;
    assert!(param(&location(&back), "code").is_some());
    // The same address again: the page says to sign in or reset.
    let b2 = browser();
    let form = b2
        .get(format!("{}{signup}", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut fields = form_fields(&form);
    fields.push(("email".into(), "new@example.com".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let r = post_form(&b2, &t, "/oauth/authorize/signup", &fields).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Forgotten password: the same answer for unknown addresses.
    let forgot = link(&page, "Forgot your password?");
    let form = b2
        .get(format!("{}{forgot}", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for email in ["nobody@example.com", "new@example.com"] {
        let mut fields = form_fields(&form);
        fields.push(("email".into(), email.into()));
        let r = post_form(&b2, &t, "/oauth/authorize/forgot", &fields).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r
            .text()
            .await
            .unwrap()
            .contains("If an account uses that address"));
    }
    let token = crate::server::mailed_token(&t, "new@example.com", 1).await;
    assert!(token.starts_with("prt_"), "a reset link: {token}");
    let page = b2
        .get(format!("{}/reset-password?token={token}", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut fields = form_fields(&page);
    fields.push(("password".into(), "Another-Password-42".into()));
    // Attack: another browser cannot post this page's form.
    assert_eq!(
        post_form(&browser(), &t, "/reset-password", &fields)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let r = post_form(&b2, &t, "/reset-password", &fields).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Password changed"));
    assert_eq!(
        t.login("new@example.com", "Another-Password-42").await.0,
        StatusCode::OK
    );
    // The link works once.
    let r = post_form(&b2, &t, "/reset-password", &fields).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Signs in on the account page (`/account`) in browser `b`.
async fn account_sign_in(b: &reqwest::Client, t: &Truxe, email: &str) -> String {
    let page = b
        .get(format!("{}/account", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"action="/account/login""#), "{page}");
    let mut fields = form_fields(&page);
    fields.push(("email".into(), email.into()));
    fields.push(("password".into(), PASSWORD.into()));
    let r = post_form(b, t, "/account/login", &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/account");
    b.get(format!("{}/account", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The account page: the user sees their sessions and the applications
/// they allowed, ends a session elsewhere, withdraws an application's
/// access (its tokens stop), and signs out; forms from another browser
/// are refused.
#[tokio::test]
async fn issue_20_account_page_ends_sessions_and_withdraws_access() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root8@example.com").await;
    let app = client(&t, &admin).await;
    t.register("ava@example.com").await;
    let (b, tokens) = tokens_for(&t, &app, "ava@example.com").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // Signed in through the application already: the page shows at once.
    let page = b
        .get(format!("{}/account", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Your account") && page.contains("ava@example.com"),
        "{page}"
    );
    assert!(page.contains("(this browser)"), "{page}");
    assert!(
        page.contains("Notes &lt;b&gt;app&lt;/b&gt; (an application)"),
        "{page}"
    );
    assert!(page.contains("Withdraw access"), "{page}");
    // Another browser signs in on the account page; the first ends it.
    let other = browser();
    let other_page = account_sign_in(&other, &t, "ava@example.com").await;
    assert!(other_page.contains("Your account"));
    let page = b
        .get(format!("{}/account", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ids: Vec<String> = form_fields(&page)
        .into_iter()
        .filter(|(k, _)| k == "id")
        .map(|(_, v)| v)
        .collect();
    let csrf = form_fields(&page)
        .into_iter()
        .find(|(k, _)| k == "csrf")
        .unwrap()
        .1;
    // Attack: the other browser posts this page's form (its own cookie, this page's token).
    let forged = [
        ("csrf".to_owned(), csrf.clone()),
        ("id".to_owned(), app.id.clone()),
    ];
    assert_eq!(
        post_form(&other, &t, "/account/consents/withdraw", &forged)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        userinfo(&t, &access).await.0,
        StatusCode::OK,
        "nothing withdrawn"
    );
    // The other browser's own session, as its page marks it, ended here.
    let mark = other_page.find("(this browser)").unwrap();
    let theirs = form_fields(&other_page[mark..])
        .into_iter()
        .find(|(k, _)| k == "id")
        .unwrap()
        .1;
    assert!(ids.contains(&theirs), "this page lists it too");
    let fields = [("csrf".to_owned(), csrf.clone()), ("id".to_owned(), theirs)];
    let r = post_form(&b, &t, "/account/sessions/end", &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let other_again = other
        .get(format!("{}/account", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        other_again.contains(r#"action="/account/login""#),
        "the other browser is signed out"
    );
    // Withdraw the application's access: its tokens stop.
    let r = post_form(
        &b,
        &t,
        "/account/consents/withdraw",
        &[("csrf".into(), csrf.clone()), ("id".into(), app.id.clone())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(userinfo(&t, &access).await.0, StatusCode::UNAUTHORIZED);
    // Sign out.
    let r = post_form(&b, &t, "/account/logout", &[("csrf".into(), csrf)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page = b
        .get(format!("{}/account", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"action="/account/login""#), "signed out");
}

/// The account page's sign-in asks for the second factor too.
#[tokio::test]
async fn issue_20_account_sign_in_with_a_second_factor() {
    let t = Truxe::start(&[]).await;
    let (_, secret, _, step) = user_with_mfa(&t, "mia@example.com").await;
    let b = browser();
    let page = b
        .get(format!("{}/account", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut fields = form_fields(&page);
    fields.push(("email".into(), "mia@example.com".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let r = post_form(&b, &t, "/account/login", &fields).await;
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"action="/account/mfa""#), "{html}");
    let mut fields = form_fields(&html);
    fields.push(("code".into(), totp(&secret, step.max(now()) + 30)));
    let r = post_form(&b, &t, "/account/mfa", &fields).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = b
        .get(format!("{}/account", t.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("On (10 backup codes left)"), "{page}");
}

/// Issue 20: the account page turns two-step verification on (QR code and
/// key, confirmed with a code, backup codes shown once) and off (with a
/// current code); a wrong code changes nothing, and a form from another
/// browser is refused.
#[tokio::test]
async fn issue_20_account_page_sets_up_and_turns_off_an_authenticator() {
    let t = Truxe::start(&[]).await;
    t.register("tom@example.com").await;
    let b = browser();
    let page = account_sign_in(&b, &t, "tom@example.com").await;
    assert!(page.contains("Set up an authenticator app"), "{page}");
    let csrf: Vec<(String, String)> = csrf_field(&page);
    // Another browser cannot start it.
    let r = post_form(&browser(), &t, "/account/mfa/setup", &csrf).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post_form(&b, &t, "/account/mfa/setup", &csrf).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("<svg"), "an inline QR code: {html}");
    let key = html
        .split("Or type this key: <code>")
        .nth(1)
        .unwrap()
        .split("</code>")
        .next()
        .unwrap();
    let secret = secure::totp::from_base32(key).unwrap();
    // A wrong code: not turned on.
    let mut wrong = csrf.clone();
    wrong.push(("code".into(), "000000".into()));
    let r = post_form(&b, &t, "/account/mfa/enable", &wrong).await;
    assert!(r.text().await.unwrap().contains("Not turned on"));
    let (s, body) = t.login("tom@example.com", PASSWORD).await;
    assert_eq!(
        (s, body["data"]["mfa_required"].as_bool()),
        (StatusCode::OK, None)
    );
    // The right one: on, with ten backup codes shown once.
    let step = now();
    let mut right = csrf.clone();
    right.push(("code".into(), totp(&secret, step)));
    let r = post_form(&b, &t, "/account/mfa/enable", &right).await;
    let html = r.text().await.unwrap();
    assert_eq!(html.matches("<li><code>").count(), 10, "{html}");
    let (_, body) = t.login("tom@example.com", PASSWORD).await;
    assert_eq!(body["data"]["mfa_required"], true, "{body}");
    let (_, page) = get(&b, &t, "/account").await;
    assert!(page.contains("On (10 backup codes left)"), "{page}");
    // Off: a wrong code is refused, a current one works.
    let mut off = csrf.clone();
    off.push(("disable_code".into(), "123456".into()));
    let r = post_form(&b, &t, "/account/mfa/disable", &off).await;
    assert!(r.text().await.unwrap().contains("Not turned off"));
    let mut off = csrf.clone();
    off.push(("disable_code".into(), totp(&secret, step + 30)));
    let r = post_form(&b, &t, "/account/mfa/disable", &off).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, body) = t.login("tom@example.com", PASSWORD).await;
    assert!(body["data"]["tokens"]["access_token"].is_string(), "{body}");
}

/// Issue 20: `private_key_jwt`. A client registered with its public keys
/// gets no secret and proves itself with a short-lived JWT it signs; a
/// wrong key, audience, lifetime, a missing `jti` or a replayed assertion
/// is refused, beside the assertion that works.
#[tokio::test]
async fn issue_20_private_key_jwt_clients_sign_their_token_requests() {
    use secure::jwt::{KeyAlg, KeyRing, SigningKey};
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root-k@example.com").await;
    let ring = KeyRing::new(SigningKey::generate(KeyAlg::EdDsa).unwrap(), vec![]);
    let (s, b) = register_client(
        &t,
        &admin,
        json!({"name": "Notes <b>app</b>", "redirectUris": [REDIRECT], "jwks": ring.jwks()}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(b["data"]["clientSecret"].is_null(), "no secret: {b}");
    assert_eq!(
        b["data"]["client"]["tokenEndpointAuthMethod"],
        "private_key_jwt"
    );
    assert_eq!(b["data"]["client"]["public"], false);
    let id = b["data"]["client"]["clientId"].as_str().unwrap().to_owned();
    // Bad keys are refused at registration.
    let (s, _) = register_client(
        &t,
        &admin,
        json!({"name": "X", "redirectUris": [REDIRECT], "jwks": {"keys": []}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    t.register("kim@example.com").await;
    let b = browser();
    let back = sign_in_and_decide(
        &b,
        &t,
        &authorize_url(&t, &id, &[]),
        "kim@example.com",
        "allow",
    )
    .await;
    let code = param(&back, "code").unwrap();
    let endpoint = format!("{}/oauth/token", t.url());
    let claims = |jti: &str, aud: &str, exp_in: i64| json!({"iss": id, "sub": id, "aud": aud, "jti": jti, "iat": now(), "exp": now() as i64 + exp_in});
    let exchange = |assertion: String| {
        let (t, code) = (&t, code.clone());
        async move {
            let r = t
                .http
                .post(format!("{}/oauth/token", t.url()))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    // Attacks: each is refused, and the code stays unspent for the control.
    let rogue = KeyRing::new(SigningKey::generate(KeyAlg::EdDsa).unwrap(), vec![]);
    for (why, assertion) in [
        ("another key", rogue.sign(&claims("j1", &endpoint, 60)).unwrap()),
        ("another audience", ring.sign(&claims("j2", "https://elsewhere.example/token", 60)).unwrap()),
        ("too long a life", ring.sign(&claims("j3", &endpoint, 3600)).unwrap()),
        ("expired", ring.sign(&claims("j4", &endpoint, -60)).unwrap()),
        ("no jti", ring.sign(&json!({"iss": id, "sub": id, "aud": endpoint, "exp": now() + 60})).unwrap()),
        ("another subject", ring.sign(&json!({"iss": id, "sub": "tcl_other", "aud": endpoint, "jti": "j5", "exp": now() + 60})).unwrap()),
        ("not a JWT", "not.a.jwt".to_owned()),
    ] {
        let (s, body) = exchange(assertion).await;
        assert_eq!((s, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{why}: {body}");
    }
    // Control: the client's own, fresh assertion (audience the endpoint).
    let good = ring.sign(&claims("j-ok", &endpoint, 120)).unwrap();
    let (s, body) = exchange(good.clone()).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let access = body["access_token"].as_str().unwrap().to_owned();
    // The same assertion again (here at introspection): a replay.
    let introspect = |assertion: String| {
        let (t, access) = (&t, access.clone());
        async move {
            t.http
                .post(format!("{}/oauth/introspect", t.url()))
                .form(&[
                    ("token", access.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    let r = introspect(good).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("used already"));
    // A new one, with the issuer as audience, works.
    let r = introspect(ring.sign(&claims("j-ok-2", &t.url(), 60)).unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["active"], true);
    // Without any credential the client is not public: refused.
    let (s, _) = {
        let r = t
            .http
            .post(format!("{}/oauth/introspect", t.url()))
            .form(&[("token", access.as_str()), ("client_id", id.as_str())])
            .send()
            .await
            .unwrap();
        (r.status(), ())
    };
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Its use, at the original's stats path: one session, one user, one
    // consent; administrators only.
    let (s, stats) = t
        .authed(
            Method::GET,
            &format!("/api/oauth/clients/{id}/stats"),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{stats}");
    let d = &stats["data"];
    assert_eq!(
        (
            d["activeSessions"].as_i64(),
            d["activeUsers"].as_i64(),
            d["consents"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{stats}"
    );
    assert!(d["lastUsedAt"].is_string(), "{stats}");
    let (user, _) = t.register("nosy@example.com").await;
    let (s, _) = t
        .authed(
            Method::GET,
            &format!("/api/oauth/clients/{id}/stats"),
            &user,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not theirs to know of");
}

/// The hosted page's "Email me a sign-in link" for `email`, from the
/// authorization request `url`, in browser `b`: the page that says so.
async fn ask_for_link(b: &reqwest::Client, t: &Truxe, url: &str, email: &str) -> String {
    let page = b.get(url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Email me a sign-in link"), "{page}");
    let mut fields = form_fields(&page);
    fields.push(("email".into(), email.into()));
    let r = post_form(b, t, "/oauth/authorize/link", &fields).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

#[tokio::test]
async fn issue_20_sign_in_link_from_the_hosted_page_works_only_in_the_browser_that_asked() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root9@example.com").await;
    let app = client(&t, &admin).await;
    t.register("ann@example.com").await;
    let b = browser();
    let url = authorize_url(&t, &app.id, &[]);
    let asked = ask_for_link(&b, &t, &url, "ann@example.com").await;
    assert!(asked.contains("a sign-in link is on its way"), "{asked}");
    // An unknown address gets the same page (no account discovery).
    let unknown = ask_for_link(&b, &t, &url, "nobody@example.com").await;
    assert_eq!(
        unknown.replace("nobody@example.com", "ann@example.com"),
        asked
    );
    let token = crate::server::mailed_token(&t, "ann@example.com", 1).await;
    let link = format!("/sign-in/link?token={token}");

    // Attacks: the link in a browser without the asking browser's cookie
    // (a mail scanner, a forwarded mail), or in another browser that has
    // one, signs nobody in; nor does the API's magic-link endpoint take it.
    let (s, html) = get(&browser(), &t, &link).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(html.contains("asked for in another browser"), "{html}");
    let other = browser();
    other.get(&url).send().await.unwrap();
    assert_eq!(get(&other, &t, &link).await.0, StatusCode::BAD_REQUEST);
    let r = t
        .http
        .get(format!("{}/auth/verify?token={token}", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Control: none of that spent it; in the asking browser it signs in
    // and the application's request goes on (consent, then the code).
    let (s, html) = get(&b, &t, &link).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("would like to"), "{html}");
    let mut fields = form_fields(&html);
    fields.push(("decision".into(), "allow".into()));
    let back = post_form(&b, &t, "/oauth/authorize/consent", &fields).await;
    let to = location(&back);
    assert_eq!(param(&to, "state").as_deref(), Some("st-<1>&"));
    let code = param(&to, "code").unwrap();
    let (s, tokens) = exchange(&t, &app, &code, VERIFIER).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let claims = id_claims(&t, tokens["id_token"].as_str().unwrap(), &app.id).await;
    assert_eq!(claims["amr"], json!(["email"]));
    assert_eq!(claims["email"], "ann@example.com");
    // The link works once.
    assert_eq!(get(&b, &t, &link).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn issue_20_sign_in_link_still_asks_for_the_second_factor() {
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root10@example.com").await;
    let app = client(&t, &admin).await;
    let (access, secret, _, step) = user_with_mfa(&t, "max@example.com").await;
    // A proven address (a link to an unproven one voids the second factor).
    t.verify_address("max@example.com", &access).await;
    let b = browser();
    let url = authorize_url(&t, &app.id, &[("login_hint", "max@example.com")]);
    let page = b.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains(r#"value="max@example.com""#),
        "login_hint fills the address in: {page}"
    );
    ask_for_link(&b, &t, &url, "max@example.com").await;
    let token = crate::server::mailed_token(&t, "max@example.com", 2).await;
    let (s, html) = get(&b, &t, &format!("/sign-in/link?token={token}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("Two-step verification"), "{html}");
    let code = totp(&secret, step.max(now()) + 30);
    let fields = form_fields(&html);
    // Attack: the form claims a password was the first factor (it goes
    // into `amr`), or carries no first factor at all.
    for forged in [Some("pwd.".to_owned() + &"0".repeat(64)), None] {
        let mut f: Vec<_> = fields
            .iter()
            .filter(|(k, _)| k != "first")
            .cloned()
            .collect();
        if let Some(v) = forged {
            f.push(("first".into(), v));
        }
        f.push(("code".into(), code.clone()));
        let r = post_form(&b, &t, "/oauth/authorize/mfa", &f).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let mut f = fields.clone();
    f.push(("code".into(), code));
    let r = post_form(&b, &t, "/oauth/authorize/mfa", &f).await;
    assert_eq!(r.status(), StatusCode::OK, "consent next");
    let mut fields = form_fields(&r.text().await.unwrap());
    fields.push(("decision".into(), "allow".into()));
    let back = post_form(&b, &t, "/oauth/authorize/consent", &fields).await;
    let code = param(&location(&back), "code").unwrap();
    let (_, tokens) = exchange(&t, &app, &code, VERIFIER).await;
    let claims = id_claims(&t, tokens["id_token"].as_str().unwrap(), &app.id).await;
    assert_eq!(claims["amr"], json!(["email", "otp"]));
    assert_eq!(claims["acr"], "urn:truxe:acr:mfa");
}

#[tokio::test]
async fn issue_20_organization_and_role_claims_when_asked_for() {
    let t = Truxe::start(&[]).await;
    let (olga, _) = t.register("olga@example.com").await;
    let (s, b) = t
        .authed(
            Method::POST,
            "/organizations",
            &olga,
            Some(json!({"name": "Acme Claims"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let org = b["data"]["organization"]["id"].as_str().unwrap().to_owned();
    // The organization's own application.
    let (s, b) = t
        .authed(
            Method::POST,
            "/api/oauth/clients",
            &olga,
            Some(json!({"name": "Notes <b>app</b>", "redirectUris": [REDIRECT], "orgId": org})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let app = App {
        id: b["data"]["client"]["clientId"].as_str().unwrap().to_owned(),
        secret: b["data"]["clientSecret"].as_str().unwrap().to_owned(),
    };
    t.register("nils@example.com").await;
    let url = authorize_url(&t, &app.id, &[]).replace(
        "scope=openid+email+profile+offline_access",
        "scope=openid+organizations+roles",
    );
    let tokens_of = |email: &'static str| {
        let (t, url, app) = (&t, url.clone(), &app);
        async move {
            let back = sign_in_and_decide(&browser(), t, &url, email, "allow").await;
            let code = param(&back, "code").unwrap();
            let (s, tokens) = exchange(t, app, &code, VERIFIER).await;
            assert_eq!(s, StatusCode::OK, "{tokens}");
            tokens
        }
    };
    // A member: every organization with the role, and the role and
    // permissions in the application's own.
    let tokens = tokens_of("olga@example.com").await;
    let claims = id_claims(&t, tokens["id_token"].as_str().unwrap(), &app.id).await;
    assert_eq!(claims["organizations"][0]["id"], org.as_str(), "{claims}");
    assert_eq!(claims["organizations"][0]["role"], "owner");
    assert_eq!(claims["org_id"], org.as_str());
    assert_eq!(claims["roles"], json!(["owner"]));
    assert!(
        claims["permissions"]
            .as_array()
            .unwrap()
            .contains(&json!("members:read")),
        "{claims}"
    );
    assert!(claims.get("email").is_none(), "email was not asked for");
    let (s, info) = userinfo(&t, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info["roles"], json!(["owner"]), "{info}");
    // Control: someone outside the organization gets no role in it.
    let tokens = tokens_of("nils@example.com").await;
    let claims = id_claims(&t, tokens["id_token"].as_str().unwrap(), &app.id).await;
    assert_eq!(claims["organizations"], json!([]), "{claims}");
    assert!(
        claims.get("roles").is_none() && claims.get("org_id").is_none(),
        "{claims}"
    );
}

#[tokio::test]
async fn issue_20_expired_codes_and_deleted_clients_are_refused() {
    use sqlx::Connection;
    let t = Truxe::start(&[]).await;
    let (_, admin) = t.admin("root11@example.com").await;
    let app = client(&t, &admin).await;
    t.register("eve@example.com").await;
    let b = browser();
    let url = authorize_url(&t, &app.id, &[]);
    let back = sign_in_and_decide(&b, &t, &url, "eve@example.com", "allow").await;
    let stale = param(&back, "code").unwrap();
    // The code's 60 seconds have passed (aged in the database: the server
    // is not told).
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(&t.database_url())
        .await
        .unwrap();
    sqlx::query("UPDATE oauth_codes SET expires_at = 0")
        .execute(&mut db)
        .await
        .unwrap();
    let (s, e) = exchange(&t, &app, &stale, VERIFIER).await;
    assert_eq!(
        (s, &e["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant")),
        "{e}"
    );
    // Control: a fresh one (the browser is signed in and consented).
    let again = b.get(&url).send().await.unwrap();
    let (s, tokens) = exchange(
        &t,
        &app,
        &param(&location(&again), "code").unwrap(),
        VERIFIER,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&t, access).await.0, StatusCode::OK);

    // The client is deleted: its tokens stop, its refresh token and its
    // credentials are refused, and its sign-in requests are error pages.
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/oauth/clients/{}", app.id),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(userinfo(&t, access).await.0, StatusCode::UNAUTHORIZED);
    let (s, e) = refresh(&t, &app, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        (s, &e["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client")),
        "{e}"
    );
    let r = b.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.headers().get("location").is_none());
}

/// The hosted pages that mail a link (forgotten password, sign-in link)
/// hold to the per-address limit the API holds to, and mail in the
/// background (the same answer, in the same time, for any address).
#[tokio::test]
async fn issue_20_pages_that_mail_links_keep_the_per_address_limit() {
    let t = Truxe::start(&[("TRUXE_RATE_LIMIT_ACCOUNT", "2/15m")]).await;
    let (_, admin) = t.admin("root12@example.com").await;
    let app = client(&t, &admin).await;
    t.register("flood@example.com").await;
    let b = browser();
    let url = authorize_url(&t, &app.id, &[]);
    let (_, form) = get(
        &b,
        &t,
        &format!("/oauth/authorize/forgot?{}", url.split_once('?').unwrap().1),
    )
    .await;
    let forgot = |email: &str| {
        let mut f = form_fields(&form);
        f.push(("email".into(), email.into()));
        f
    };
    for _ in 0..2 {
        let r = post_form(
            &b,
            &t,
            "/oauth/authorize/forgot",
            &forgot("flood@example.com"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Attack: a third link for the address, from the reset page or the
    // sign-in page, is refused; nothing more is mailed.
    let r = post_form(
        &b,
        &t,
        "/oauth/authorize/forgot",
        &forgot("flood@example.com"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text().await.unwrap().contains("Too many links"));
    let page = b.get(&url).send().await.unwrap().text().await.unwrap();
    let mut f = form_fields(&page);
    f.push(("email".into(), "flood@example.com".into()));
    let r = post_form(&b, &t, "/oauth/authorize/link", &f).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Control: another address is not held back.
    let r = post_form(
        &b,
        &t,
        "/oauth/authorize/forgot",
        &forgot("other@example.com"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    crate::server::mailed_token(&t, "flood@example.com", 2).await;
    let mails: Value = testkit::get_json(
        &t.http,
        &format!("{}/dev/mailbox?to=flood@example.com", t.url()),
    )
    .await;
    let links = mails["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["text"].as_str().is_some_and(|s| s.contains("token=")))
        .count();
    assert_eq!(links, 2, "{mails}");
}
