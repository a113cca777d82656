//! TOTP MFA end to end: setup, enable with backup codes, login challenge,
//! replay guard, attempt limit, backup codes, regeneration, disabling, and
//! secrets encrypted at rest.
//!
//! Codes are computed for steps t and t+1 of the test's clock, which stay
//! inside the server's ±1-step window whatever step the server is in when
//! it checks; no test waits for time to pass.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{code, tokens, Truxe, PASSWORD};

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn totp(secret: &[u8], t: u64) -> String {
    secure::totp::code_at(secret, t).unwrap()
}

/// Registers `email`, turns MFA on with the code of step `t`; returns
/// (access token, secret, backup codes, t).
pub(crate) async fn user_with_mfa(t_: &Truxe, email: &str) -> (String, Vec<u8>, Vec<String>, u64) {
    let (access, _) = t_.register(email).await;
    let (secret, codes, t) = enable_mfa(t_, &access).await;
    (access, secret, codes, t)
}

/// Turns MFA on for the holder of `access`: (secret, backup codes, the
/// step whose code was used).
pub(crate) async fn enable_mfa(t_: &Truxe, access: &str) -> (Vec<u8>, Vec<String>, u64) {
    let (s, body) = t_
        .authed(Method::POST, "/auth/mfa/setup", access, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let data = &body["data"];
    assert!(data["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/Truxe:"));
    assert!(data["qr_code"]
        .as_str()
        .unwrap()
        .starts_with("data:image/svg+xml;base64,"));
    let secret = secure::totp::from_base32(data["secret"].as_str().unwrap()).unwrap();
    let t = now();
    let (s, body) = t_
        .authed(
            Method::POST,
            "/auth/mfa/enable",
            access,
            Some(json!({"token": totp(&secret, t)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let codes: Vec<String> = body["data"]["backup_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes, t)
}

async fn challenge(t: &Truxe, email: &str) -> String {
    let (s, body) = t.login(email, PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["mfa_required"], true, "{body}");
    assert!(
        body["data"].get("tokens").is_none(),
        "no tokens before the second factor"
    );
    body["data"]["challenge_id"].as_str().unwrap().to_owned()
}

async fn verify(t: &Truxe, challenge_id: &str, factor: Value) -> (StatusCode, Value) {
    let mut body = json!({"challenge_id": challenge_id});
    body.as_object_mut()
        .unwrap()
        .extend(factor.as_object().unwrap().clone());
    t.post("/auth/mfa/challenge/verify", body).await
}

#[tokio::test]
async fn login_requires_the_second_factor_and_codes_work_once() {
    let t = Truxe::start(&[]).await;
    let (access, secret, backup, step_t) = user_with_mfa(&t, "rosa@example.com").await;
    let (_, status) = t
        .authed(Method::GET, "/auth/mfa/status", &access, None)
        .await;
    assert_eq!(
        status["data"],
        json!({"enabled": true, "backup_codes_remaining": 10})
    );

    // Password alone gives a challenge, not tokens; the next code completes it.
    let ch = challenge(&t, "rosa@example.com").await;
    let next = totp(&secret, step_t + 30);
    let (s, body) = verify(&t, &ch, json!({"token": next})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (mfa_access, _) = tokens(&body);
    assert_eq!(t.me(&mfa_access).await, StatusCode::OK);
    // The challenge is spent, and the same code does not work twice.
    assert_eq!(
        verify(&t, &ch, json!({"token": next})).await.0,
        StatusCode::UNAUTHORIZED
    );
    let ch2 = challenge(&t, "rosa@example.com").await;
    let (s, body) = verify(&t, &ch2, json!({"token": next})).await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::UNAUTHORIZED, "unauthorized"),
        "replayed code"
    );
    let (s, body) = verify(&t, &ch2, json!({"token": totp(&secret, step_t)})).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "an older code than the last accepted one: {body}"
    );

    // A backup code works once.
    let (s, body) = verify(&t, &ch2, json!({"backup_code": backup[0].to_uppercase()})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let ch3 = challenge(&t, "rosa@example.com").await;
    assert_eq!(
        verify(&t, &ch3, json!({"backup_code": backup[0]})).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (_, status) = t
        .authed(Method::GET, "/auth/mfa/status", &access, None)
        .await;
    assert_eq!(status["data"]["backup_codes_remaining"], 9);

    // Five attempts, then the challenge is dead even for a good backup code.
    let ch4 = challenge(&t, "rosa@example.com").await;
    for _ in 0..5 {
        assert_eq!(
            verify(&t, &ch4, json!({"token": "000000"})).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        verify(&t, &ch4, json!({"backup_code": backup[1]})).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Bad shapes.
    for bad in [json!({}), json!({"token": "1", "backup_code": "2"})] {
        let (s, body) = verify(&t, &ch4, bad).await;
        assert_eq!(
            (s, code(&body)),
            (StatusCode::BAD_REQUEST, "validation_error")
        );
    }
    assert_eq!(
        verify(&t, "nope", json!({"token": "123456"})).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Disabling needs the password (or a code); then login gives tokens again.
    let (s, _) = t
        .authed(
            Method::POST,
            "/auth/mfa/disable",
            &access,
            Some(json!({"password": "Wrong-Password-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = t
        .authed(
            Method::POST,
            "/auth/mfa/disable",
            &access,
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, body) = t.login("rosa@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body["data"]["tokens"]["access_token"].is_string(), "{body}");
}

#[tokio::test]
async fn setup_again_and_regeneration_need_a_current_code() {
    let t = Truxe::start(&[]).await;
    let (access, secret, old_codes, step_t) = user_with_mfa(&t, "sam@example.com").await;
    // Someone holding only the session cannot replace the second factor.
    let (s, _) = t
        .authed(Method::POST, "/auth/mfa/setup", &access, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = t
        .authed(
            Method::POST,
            "/auth/mfa/backup/regenerate",
            &access,
            Some(json!({"token": "000000"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, body) = t
        .authed(
            Method::POST,
            "/auth/mfa/backup/regenerate",
            &access,
            Some(json!({"token": totp(&secret, step_t + 30)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let new_codes = body["data"]["backup_codes"].as_array().unwrap();
    assert_eq!(new_codes.len(), 10);
    let ch = challenge(&t, "sam@example.com").await;
    assert_eq!(
        verify(&t, &ch, json!({"backup_code": old_codes[0]}))
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "old codes died"
    );
    let (s, _) = verify(&t, &ch, json!({"backup_code": new_codes[0]})).await;
    assert_eq!(s, StatusCode::OK);
    // Enabling without a setup, and a wrong first code, are refused.
    let (fresh, _) = t.register("tina@example.com").await;
    let (s, body) = t
        .authed(
            Method::POST,
            "/auth/mfa/enable",
            &fresh,
            Some(json!({"token": "123456"})),
        )
        .await;
    assert_eq!(
        (s, code(&body)),
        (StatusCode::BAD_REQUEST, "validation_error")
    );
    t.authed(Method::POST, "/auth/mfa/setup", &fresh, None)
        .await;
    let (s, _) = t
        .authed(
            Method::POST,
            "/auth/mfa/enable",
            &fresh,
            Some(json!({"token": "123456"})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (_, status) = t
        .authed(Method::GET, "/auth/mfa/status", &fresh, None)
        .await;
    assert_eq!(status["data"]["enabled"], false);
}

#[tokio::test]
async fn totp_secrets_are_encrypted_at_rest() {
    let t = Truxe::start(&[]).await;
    let (access, _) = t.register("uma@example.com").await;
    let (_, body) = t
        .authed(Method::POST, "/auth/mfa/setup", &access, None)
        .await;
    let b32 = body["data"]["secret"].as_str().unwrap().to_owned();
    let secret = secure::totp::from_base32(&b32).unwrap();
    let (s, _) = t
        .authed(
            Method::POST,
            "/auth/mfa/enable",
            &access,
            Some(json!({"token": totp(&secret, now())})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    for needle in [b32.as_bytes(), secret.as_slice()] {
        assert!(!t.stores(needle), "a TOTP secret is stored in the clear");
    }
    // Control: the search finds what is stored in the clear.
    assert!(t.stores(b"uma@example.com"));
}

/// Issue 18: guesses at the MFA management endpoints are limited per
/// address and per user, and count toward the account's lockout.
#[tokio::test]
async fn issue_18_mfa_management_guesses_are_limited_and_lock_the_account() {
    let t = Truxe::start(&[("TRUXE_RATE_LIMIT_MFA_IP", "100/1m")]).await;
    let (access, secret, _, _) = user_with_mfa(&t, "guess@example.com").await;
    let disable = |body: Value| t.authed(Method::POST, "/auth/mfa/disable", &access, Some(body));
    // Wrong passwords and wrong codes both count; at the lockout threshold
    // (5) the account locks, and even the right password is refused.
    for i in 0..5 {
        let guess = if i % 2 == 0 {
            json!({"password": format!("Wrong-Pass-{i}")})
        } else {
            json!({"token": "000000"})
        };
        let (s, b) = disable(guess).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    }
    let (s, b) = disable(json!({"password": PASSWORD})).await;
    assert_eq!((s, code(&b)), (StatusCode::LOCKED, "account_locked"), "{b}");
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/mfa/backup/regenerate",
            &access,
            Some(json!({"token": totp(&secret, now())})),
        )
        .await;
    assert_eq!(s, StatusCode::LOCKED, "{b}");
    // The lock applies to sign-in too.
    let (s, b) = t.login("guess@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::LOCKED, "{b}");

    // Per address: a tight limit refuses the next guess with 429.
    let t = Truxe::start(&[("TRUXE_RATE_LIMIT_MFA_IP", "3/1h")]).await;
    let (access, _, _, _) = user_with_mfa(&t, "fast@example.com").await;
    // user_with_mfa spent two requests of the address's budget (setup, enable).
    let guess = || {
        t.authed(
            Method::POST,
            "/auth/mfa/backup/regenerate",
            &access,
            Some(json!({"token": "000000"})),
        )
    };
    assert_eq!(guess().await.0, StatusCode::UNAUTHORIZED);
    let (s, b) = guess().await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        "{b}"
    );
}

/// Control for the test above: the right code still works.
#[tokio::test]
async fn issue_18_mfa_management_with_the_right_code_still_works() {
    let t = Truxe::start(&[]).await;
    let (access, secret, _, t0) = user_with_mfa(&t, "right@example.com").await;
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/mfa/backup/regenerate",
            &access,
            Some(json!({"token": totp(&secret, t0 + 30)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["backup_codes"].as_array().unwrap().len(), 10);
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/mfa/disable",
            &access,
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
