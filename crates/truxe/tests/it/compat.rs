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

/// MFA as the original's clients drive it: camelCase answers beside ours,
/// `challengeId`/`backupCode`/`trustDevice` in, step-up with `/auth/mfa/verify`
/// and `/auth/mfa/backup/verify`, and disabling with a backup code.
#[tokio::test]
async fn mfa_the_original_way() {
    use crate::mfa::{now, totp};
    let t = Truxe::start(&[]).await;
    let (access, _) = t.register("mfa-compat@example.com").await;
    // Step-up before MFA is on: refused (nothing to prove).
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/mfa/verify",
            &access,
            Some(json!({"token": "123456"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = t
        .authed(Method::POST, "/auth/mfa/setup", &access, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["secret"], b["data"]["secret"]);
    assert_eq!(b["qrCode"], b["data"]["qr_code"]);
    assert_eq!(b["otpauthUrl"], b["data"]["otpauth_url"]);
    assert_eq!(
        b["manualEntryCode"].as_str().unwrap().replace(' ', ""),
        b["secret"].as_str().unwrap()
    );
    let secret = secure::totp::from_base32(b["secret"].as_str().unwrap()).unwrap();
    let step = now();
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/mfa/enable",
            &access,
            Some(json!({"token": totp(&secret, step)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let codes: Vec<String> = serde_json::from_value(b["backupCodes"].clone()).unwrap();
    assert_eq!(codes.len(), 10);
    assert!(b["message"].is_string());
    let (_, b) = t
        .authed(Method::GET, "/auth/mfa/status", &access, None)
        .await;
    assert_eq!(
        (b["enabled"].clone(), b["backupCodesRemaining"].clone()),
        (json!(true), json!(10))
    );
    // Step-up: a current code proves it once; the same code again, or a
    // wrong one, is `400 invalid_mfa_code` with `success: false`.
    let next = totp(&secret, step + 30);
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/mfa/verify",
            &access,
            Some(json!({"token": next})),
        )
        .await;
    assert_eq!(
        (s, b["success"].clone()),
        (StatusCode::OK, json!(true)),
        "{b}"
    );
    for wrong in [next.as_str(), "000000", ""] {
        let (s, b) = t
            .authed(
                Method::POST,
                "/auth/mfa/verify",
                &access,
                Some(json!({"token": wrong})),
            )
            .await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::BAD_REQUEST, "invalid_mfa_code"),
            "{wrong:?}: {b}"
        );
        assert_eq!(b["success"], false);
    }
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/mfa/backup/verify",
            &access,
            Some(json!({"code": codes[0]})),
        )
        .await;
    assert_eq!(
        (s, b["success"].clone()),
        (StatusCode::OK, json!(true)),
        "{b}"
    );
    let (s, _) = t
        .authed(
            Method::POST,
            "/auth/mfa/backup/verify",
            &access,
            Some(json!({"code": codes[0]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "a backup code works once");
    // Sign-in: the challenge in the original's fields, answered with them.
    let (s, b) = t
        .login("mfa-compat@example.com", crate::server::PASSWORD)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["mfaRequired"], true);
    let challenge = b["challengeId"].as_str().unwrap().to_owned();
    assert_eq!(challenge, b["data"]["challenge_id"].as_str().unwrap());
    let (s, b) = t
        .post(
            "/auth/mfa/challenge/verify",
            json!({"challengeId": challenge, "backupCode": codes[1], "trustDevice": true}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let fresh = b["tokens"]["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(b["user"]["email"], "mfa-compat@example.com");
    assert_eq!(t.me(&fresh).await, StatusCode::OK);
    // Disabling with a backup code.
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/mfa/disable",
            &fresh,
            Some(json!({"backupCode": codes[2]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = t
        .authed(Method::GET, "/auth/mfa/status", &fresh, None)
        .await;
    assert_eq!(b["enabled"], false);
    // Each step-up was audited.
    let (_, admin) = t.admin("root-compat@example.com").await;
    let (_, b) = t
        .authed(
            Method::GET,
            "/api/admin/audit?action=mfa_verified",
            &admin,
            None,
        )
        .await;
    assert_eq!(b["events"].as_array().unwrap().len(), 2, "{b}");
}

/// Refresh, revoke and the magic link as the original's SDK calls them.
#[tokio::test]
async fn tokens_the_original_way() {
    let t = Truxe::start(&[]).await;
    let (_, refresh) = t.register("sdk@example.com").await;
    let (s, b) = t.refresh(&refresh).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The SDK keeps the answer as its token pair: flat camelCase fields.
    let access = b["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(b["tokens"]["accessToken"], access.as_str());
    assert_eq!(b["data"]["tokens"]["access_token"], access.as_str());
    assert_eq!(b["tokenType"], "Bearer");
    assert!(b["expiresIn"].as_u64().unwrap() > 0);
    let next = b["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(t.refresh(&next).await.0, StatusCode::OK);
    // Magic link, verified by POST.
    t.post("/auth/magic-link", json!({"email": "sdk@example.com"}))
        .await;
    let token = mailed_token(&t, "sdk@example.com", 1).await;
    let (s, b) = t
        .post("/auth/verify-magic-link", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let access = b["tokens"]["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(t.me(&access).await, StatusCode::OK);
    let (s, _) = t
        .post("/auth/verify-magic-link", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a link works once");
    let (s, b) = t.post("/auth/verify-magic-link", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    // Revoke everything: the count as the original named it. (The link
    // proved the address without the password, which ended the earlier
    // sessions and voided the password: a second link makes a second one.)
    t.post("/auth/magic-link", json!({"email": "sdk@example.com"}))
        .await;
    let token = mailed_token(&t, "sdk@example.com", 2).await;
    assert_eq!(
        t.post("/auth/verify-magic-link", json!({"token": token}))
            .await
            .0,
        StatusCode::OK
    );
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/revoke",
            &access,
            Some(json!({"revokeAll": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let n = b["revokedSessions"].as_u64().unwrap();
    assert!(n >= 2, "{b}");
    assert_eq!(b["data"]["revoked_sessions"], n);
    assert!(b["message"].as_str().unwrap().contains(&n.to_string()));
    assert_eq!(t.me(&access).await, StatusCode::UNAUTHORIZED);
}

/// The original Truxe's environment: its key (base64 PEM, kept under its
/// `JWT_KEY_ID`, so tokens it signed still verify against the JWKS), its
/// password rule names, its magic-link base, and names with no meaning here
/// reported by `check-config`.
#[tokio::test]
async fn the_original_configuration_is_read() {
    use base64::Engine;
    let dir = testkit::tempdir();
    let st = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "key.pem",
        ])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&pem);
    let env = [
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_PRIVATE_KEY_BASE64", b64.as_str()),
        ("JWT_KEY_ID", "truxe-rsa-2025"),
        ("PASSWORD_REQUIRE_SPECIAL", "true"),
        ("MAGIC_LINK_BASE_URL", "http://app.test/"),
        ("OAUTH_ALLOWED_REDIRECT_HOSTS", "app.test"),
    ];
    let t = Truxe::start(&env).await;
    // The key, under the original's id.
    let jwks: Value =
        testkit::get_json(&t.http, &format!("{}/.well-known/jwks.json", t.url())).await;
    assert_eq!(jwks["keys"][0]["kid"], "truxe-rsa-2025", "{jwks}");
    let (access, _) = t.register("moved@example.com").await;
    assert_eq!(crate::server::jwt_part(&access, 0)["kid"], "truxe-rsa-2025");
    // A token the original signed with that key (signed here by OpenSSL)
    // verifies against Truxe's JWKS.
    let claims = crate::server::jwt_part(&access, 1);
    let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "truxe-rsa-2025"});
    let old = json!({"sub": "legacy-user", "iss": claims["iss"], "aud": claims["aud"], "exp": claims["exp"], "iat": claims["iat"]});
    let signed = format!("{}.{}", enc(&header), enc(&old));
    std::fs::write(dir.path().join("data"), &signed).unwrap();
    let st = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", "key.pem", "-out", "sig", "data"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let sig = std::fs::read(dir.path().join("sig")).unwrap();
    let token = format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    );
    let v = secure::jwt::Verifier::from_jwks(
        &jwks,
        claims["iss"].as_str().unwrap(),
        claims["aud"].as_str().unwrap(),
    )
    .unwrap();
    let got: Value = v.verify(&token).unwrap();
    assert_eq!(got["sub"], "legacy-user");
    // PASSWORD_REQUIRE_SPECIAL: a password without a symbol is refused.
    let (s, b) = t
        .post(
            "/api/auth/register",
            json!({"email": "plain@example.com", "password": "NoSymbolsHere123"}),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "weak_password"),
        "{b}"
    );
    // MAGIC_LINK_BASE_URL: the mailed link goes to the application's page.
    t.post("/auth/magic-link", json!({"email": "moved@example.com"}))
        .await;
    let token = mailed_token(&t, "moved@example.com", 1).await;
    let mail: Value = testkit::get_json(
        &t.http,
        &format!("{}/dev/mailbox?to=moved@example.com", t.url()),
    )
    .await;
    assert!(
        mail.to_string()
            .contains(&format!("http://app.test/auth/verify?token={token}")),
        "{mail}"
    );
    let (s, b) = t
        .post("/auth/verify-magic-link", json!({"token": token}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // check-config says what it read and what it ignored.
    let out = t.cli(&["check-config"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("read PASSWORD_REQUIRE_SPECIAL as PASSWORD_REQUIRE_SYMBOLS"),
        "{text}"
    );
    assert!(
        text.contains("ignored OAUTH_ALLOWED_REDIRECT_HOSTS: "),
        "{text}"
    );
    assert!(text.contains("signing key truxe-rsa-2025"), "{text}");
    assert!(!text.contains(&b64[..40]), "no secret in the output");
    // A fixed key is not rotated by the managed-key commands.
    let out = t.cli(&["keys", "rotate"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_PRIVATE_KEY_BASE64"));
}
