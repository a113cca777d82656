//! Issue 21: what the original Truxe's clients send, on the paths and in
//! the shapes they use, answered as they expect. (Social login's `start`
//! and callback paths are in `social.rs`, beside the provider they need;
//! the original's webhook events in `webhooks.rs`.)

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{code, mailed_token, Truxe};

/// `/.well-known/public-key.pem`: a PEM public key that verifies the access
/// tokens Truxe issues, with the same caching as the JWKS.
#[tokio::test]
async fn the_public_key_pem_verifies_issued_tokens() {
    let t = Truxe::start(&[]).await;
    let (access, _) = t.register("pem@example.com").await;
    let r = t
        .http
        .get(format!("{}/.well-known/public-key.pem", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/x-pem-file");
    assert!(r.headers().get("etag").is_some());
    let pem = r.text().await.unwrap();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    // Verified by OpenSSL, not by Truxe's own code: the signature over the
    // first two parts of the token, with this key (the suite's servers sign
    // with Ed25519, which OpenSSL verifies over the raw message).
    assert_eq!(crate::server::jwt_part(&access, 0)["alg"], "EdDSA");
    let dir = testkit::tempdir();
    let (signed, sig) = access.rsplit_once('.').unwrap();
    std::fs::write(dir.path().join("key.pem"), &pem).unwrap();
    std::fs::write(dir.path().join("data"), signed).unwrap();
    let verify = |sig: Vec<u8>| {
        std::fs::write(dir.path().join("sig"), sig).unwrap();
        std::process::Command::new("openssl")
            .args([
                "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-rawin",
            ])
            .args(["-in", "data", "-sigfile", "sig"])
            .current_dir(dir.path())
            .output()
            .unwrap()
            .status
            .success()
    };
    use base64::Engine;
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    assert!(verify(sig.clone()), "the PEM verifies the token");
    let mut bad = sig;
    bad[10] ^= 1;
    assert!(!verify(bad), "and not a changed signature");
}

/// `resend-verification` and `verification-status` under
/// `/api/auth/email`, with the original's answers.
#[tokio::test]
async fn email_verification_resend_and_status() {
    let t = Truxe::start(&[]).await;
    let (access, _) = t.register("status@example.com").await;
    let status = |access: String| {
        let t = &t;
        async move {
            let (s, b) = t
                .authed(
                    Method::GET,
                    "/api/auth/email/verification-status",
                    &access,
                    None,
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b
        }
    };
    let b = status(access.clone()).await;
    assert_eq!(
        (b["verified"].clone(), b["verified_at"].clone()),
        (json!(false), Value::Null)
    );
    let (s, b) = t
        .authed(
            Method::POST,
            "/api/auth/email/resend-verification",
            &access,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["success"], true);
    assert_eq!(b["data"]["sent"], true);
    assert!(b["message"].is_string(), "{b}");
    let token = mailed_token(&t, "status@example.com", 1).await;
    let r = t
        .http
        .get(format!("{}/api/auth/email/verify", t.url()))
        .query(&[("token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Proving the address ended the sessions begun before; sign in again.
    let (s, b) = t.login("status@example.com", crate::server::PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (access, _) = crate::server::tokens(&b);
    let b = status(access.clone()).await;
    assert_eq!(b["verified"], true);
    assert!(b["verified_at"].as_str().unwrap().ends_with('Z'), "{b}");
    // Verified: nothing more is sent, and it says so.
    let (_, b) = t
        .authed(
            Method::POST,
            "/api/auth/email/resend-verification",
            &access,
            None,
        )
        .await;
    assert_eq!(b["data"]["sent"], false, "{b}");
    // Without a token: 401.
    let r = t
        .http
        .get(format!("{}/api/auth/email/verification-status", t.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

/// `PUT /organizations/{id}/settings`: stored in the organization's
/// metadata under `settings`, other metadata kept; only those who may
/// change the organization may change them.
#[tokio::test]
async fn organization_settings() {
    let t = Truxe::start(&[]).await;
    let (owner, _) = t.register("settings@example.com").await;
    let (s, b) = t
        .authed(
            Method::POST,
            "/organizations",
            &owner,
            Some(json!({"name": "Settings Inc", "metadata": {"plan": "pro"}})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["data"]["organization"]["id"].as_str().unwrap().to_owned();
    let path = format!("/organizations/{id}/settings");
    let settings =
        json!({"branding": {"primaryColor": "#123456"}, "security": {"requireMfa": true}});
    let (s, b) = t
        .authed(
            Method::PUT,
            &path,
            &owner,
            Some(json!({"settings": settings})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["success"], true);
    assert_eq!(b["settings"], settings);
    assert!(b["updatedAt"].as_str().unwrap().ends_with('Z'));
    let (_, b) = t
        .authed(Method::GET, &format!("/organizations/{id}"), &owner, None)
        .await;
    let meta = &b["data"]["organization"]["metadata"];
    assert_eq!(meta["settings"], settings, "{b}");
    assert_eq!(meta["plan"], "pro", "other metadata is kept: {b}");
    // Not an object, or missing: refused, nothing changed.
    for bad in [
        json!({"settings": [1]}),
        json!({}),
        json!({"settings": {}, "x": 1}),
    ] {
        let (s, b) = t
            .authed(Method::PUT, &path, &owner, Some(bad.clone()))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    // Someone outside the organization cannot.
    let (stranger, _) = t.register("stranger-settings@example.com").await;
    let (s, b) = t
        .authed(Method::PUT, &path, &stranger, Some(json!({"settings": {}})))
        .await;
    assert!(
        matches!(s, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "{s} {b}"
    );
    assert!(!code(&b).is_empty());
    let (_, b) = t
        .authed(Method::GET, &format!("/organizations/{id}"), &owner, None)
        .await;
    assert_eq!(b["data"]["organization"]["metadata"]["settings"], settings);
}
