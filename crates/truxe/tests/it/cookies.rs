//! Cookie mode: HttpOnly session cookies, and the double-submit CSRF token
//! required on every cookie-authenticated state-changing request.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{Truxe, PASSWORD};

/// name → (value, attributes) of every Set-Cookie in a response.
fn set_cookies(res: &reqwest::Response) -> HashMap<String, (String, String)> {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), (value.to_owned(), attrs.to_owned()))
        })
        .collect()
}

fn cookie_header(jar: &HashMap<String, (String, String)>) -> String {
    jar.iter()
        .map(|(k, (v, _))| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Signs in in cookie mode: the cookies set, and the login's answer.
async fn cookie_login(t: &Truxe, email: &str) -> (HashMap<String, (String, String)>, Value) {
    let res = t
        .http
        .post(format!("{}/api/auth/login?mode=cookie", t.url()))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let jar = set_cookies(&res);
    (jar, res.json().await.unwrap())
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_to_change_anything() {
    let t = Truxe::start(&[]).await;
    t.register("quinn@example.com").await;
    let (jar, body) = cookie_login(&t, "quinn@example.com").await;
    assert!(
        body["data"].get("tokens").is_none(),
        "tokens stay out of reach of page scripts: {body}"
    );
    let csrf = body["data"]["csrf_token"].as_str().unwrap().to_owned();
    let (access_attrs, refresh_attrs, csrf_attrs) = (
        &jar["truxe_access_token"].1,
        &jar["truxe_refresh_token"].1,
        &jar["truxe_csrf"].1,
    );
    assert!(
        access_attrs.contains("HttpOnly") && access_attrs.contains("SameSite=Lax"),
        "{access_attrs}"
    );
    assert!(
        refresh_attrs.contains("HttpOnly") && refresh_attrs.contains("Path=/auth"),
        "{refresh_attrs}"
    );
    assert!(
        !csrf_attrs.contains("HttpOnly"),
        "the page must read the CSRF cookie"
    );
    assert!(
        !access_attrs.contains("Secure"),
        "no Secure flag in development (plain http)"
    );
    assert_eq!(jar["truxe_csrf"].0, csrf);
    let cookies = cookie_header(&jar);

    // Reading needs only the cookie.
    let me = t
        .http
        .get(format!("{}/auth/me", t.url()))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // Writing needs the CSRF header, and the right one.
    let revoke = |token: Option<&str>| {
        let mut req = t
            .http
            .post(format!("{}/auth/revoke", t.url()))
            .header("cookie", &cookies);
        if let Some(tok) = token {
            req = req.header("x-csrf-token", tok);
        }
        req.send()
    };
    for bad in [None, Some("forged"), Some("")] {
        let r = revoke(bad).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{bad:?}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "csrf_failed"
        );
    }

    // Refresh by cookie, with the CSRF header; the cookies rotate.
    let refresh = |jar: &HashMap<String, (String, String)>, csrf: Option<&str>| {
        let mut req = t
            .http
            .post(format!("{}/auth/refresh", t.url()))
            .header("cookie", cookie_header(jar));
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.send()
    };
    assert_eq!(
        refresh(&jar, None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let r = refresh(&jar, Some(&csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = set_cookies(&r);
    assert_ne!(
        rotated["truxe_refresh_token"].0,
        jar["truxe_refresh_token"].0
    );
    let new_csrf = rotated["truxe_csrf"].0.clone();
    let new_cookies = cookie_header(&rotated);
    let ok = t
        .http
        .post(format!("{}/auth/revoke", t.url()))
        .header("cookie", &new_cookies)
        .header("x-csrf-token", &new_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let after = t
        .http
        .get(format!("{}/auth/me", t.url()))
        .header("cookie", &new_cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "revoked");
}

#[tokio::test]
async fn another_sessions_csrf_token_is_refused() {
    let t = Truxe::start(&[]).await;
    t.register("rita@example.com").await;
    let (a, _) = cookie_login(&t, "rita@example.com").await;
    let (b, _) = cookie_login(&t, "rita@example.com").await;
    let (a_csrf, b_csrf) = (a["truxe_csrf"].0.clone(), b["truxe_csrf"].0.clone());
    assert_ne!(a_csrf, b_csrf);
    let revoke = |jar: &HashMap<String, (String, String)>, token: &str| {
        t.http
            .post(format!("{}/auth/revoke", t.url()))
            .header("cookie", cookie_header(jar))
            .header("x-csrf-token", token)
            .send()
    };
    // Session A's cookies with B's token, in the header and in the CSRF
    // cookie, as a page that can plant cookies would send them: the
    // double submit matches, the token is not A's.
    let mut forged = a.clone();
    forged.insert("truxe_csrf".into(), (b_csrf.clone(), String::new()));
    let r = revoke(&forged, &b_csrf).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "csrf_failed"
    );
    // Control: A's own token ends A, and B lives on.
    assert_eq!(revoke(&a, &a_csrf).await.unwrap().status(), StatusCode::OK);
    let me = |jar: &HashMap<String, (String, String)>| {
        t.http
            .get(format!("{}/auth/me", t.url()))
            .header("cookie", cookie_header(jar))
            .send()
    };
    assert_eq!(me(&a).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me(&b).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn bearer_clients_are_unaffected_and_logout_clears_cookies() {
    let t = Truxe::start(&[]).await;
    let (access, _) = t.register("rhea@example.com").await;
    // No CSRF token needed with a bearer token (not sent automatically by browsers).
    let (s, _) = t
        .authed(Method::POST, "/auth/revoke", &access, Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, body) = t.login("rhea@example.com", PASSWORD).await;
    let access = body["data"]["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = t
        .http
        .post(format!("{}/auth/logout", t.url()))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let cleared = set_cookies(&r);
    assert!(cleared["truxe_access_token"].1.contains("Max-Age=0"));
    let r = t
        .http
        .post(format!("{}/api/auth/login?mode=bogus", t.url()))
        .json(&json!({"email": "rhea@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Issue 21: the session cookies carry the original Truxe's names
/// (`truxe_access_token`, `truxe_refresh_token`); a browser holding the
/// names this Truxe used before stays signed in, and sign-out expires both.
#[tokio::test]
async fn cookies_carry_the_original_names_and_the_earlier_ones_still_work() {
    let t = Truxe::start(&[]).await;
    t.register("names@example.com").await;
    let (jar, body) = cookie_login(&t, "names@example.com").await;
    let csrf = body["data"]["csrf_token"].as_str().unwrap().to_owned();
    for earlier in ["truxe_access", "truxe_refresh"] {
        assert!(
            !jar.contains_key(earlier),
            "only the original names are set"
        );
    }
    let (access, refresh) = (&jar["truxe_access_token"].0, &jar["truxe_refresh_token"].0);
    // A browser from before the upgrade: the same tokens under the earlier names.
    let earlier = format!("truxe_access={access}; truxe_refresh={refresh}; truxe_csrf={csrf}");
    let me = t
        .http
        .get(format!("{}/auth/me", t.url()))
        .header("cookie", &earlier)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    let r = t
        .http
        .post(format!("{}/auth/refresh", t.url()))
        .header("cookie", &earlier)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the refresh cookie is read under its earlier name"
    );
    let renewed = set_cookies(&r);
    assert!(
        renewed.contains_key("truxe_refresh_token"),
        "and renewed under the new one"
    );
    // Control: no cookie, no session.
    let me = t
        .http
        .get(format!("{}/auth/me", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    // Sign-out expires both names.
    let r = t
        .http
        .post(format!("{}/auth/logout", t.url()))
        .header(
            "cookie",
            format!(
                "truxe_access_token={}; truxe_csrf={csrf}",
                renewed["truxe_access_token"].0
            ),
        )
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cleared = set_cookies(&r);
    for name in [
        "truxe_access_token",
        "truxe_refresh_token",
        "truxe_access",
        "truxe_refresh",
    ] {
        assert!(cleared[name].1.contains("Max-Age=0"), "{name}: {cleared:?}");
    }
}
