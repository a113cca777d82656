//! Signing keys: JWKS verification by a third party, rotation picked up by
//! a running server, forged tokens refused, key files private.

use std::time::Duration;

use reqwest::StatusCode;
use secure::jwt::{KeyAlg, KeyRing, SigningKey, Verifier};
use serde_json::{json, Value};

use crate::server::Truxe;

async fn jwks(t: &Truxe) -> Value {
    testkit::get_json(&t.http, &format!("{}/.well-known/jwks.json", t.url())).await
}

#[tokio::test]
async fn tokens_verify_against_the_published_jwks() {
    let t = Truxe::start(&[("JWT_AUDIENCE", "my-api")]).await;
    let (access, _) = t.register("judy@example.com").await;
    let keys = jwks(&t).await;
    let v = Verifier::from_jwks(&keys, &t.url(), "my-api").unwrap();
    let claims: Value = v.verify(&access).unwrap();
    for c in [
        "iss",
        "aud",
        "sub",
        "iat",
        "exp",
        "jti",
        "sid",
        "email",
        "email_verified",
    ] {
        assert!(claims.get(c).is_some(), "claim {c} missing: {claims}");
    }
    assert!(Verifier::from_jwks(&keys, &t.url(), "other-api")
        .unwrap()
        .verify::<Value>(&access)
        .is_err());
    let discovery: Value = testkit::get_json(
        &t.http,
        &format!("{}/.well-known/openid-configuration", t.url()),
    )
    .await;
    assert_eq!(discovery["issuer"], t.url());
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}/.well-known/jwks.json", t.url())
    );

    // A token signed by any other key is refused, even with the right claims.
    let mut forged_claims = claims.clone();
    forged_claims["exp"] = json!(claims["exp"].as_i64().unwrap() + 3600);
    let rogue = KeyRing::new(SigningKey::generate(KeyAlg::EdDsa).unwrap(), vec![]);
    assert_eq!(
        t.me(&rogue.sign(&forged_claims).unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    // Tampered payload with the real signature.
    let parts: Vec<&str> = access.split('.').collect();
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    assert_eq!(t.me(&tampered).await, StatusCode::UNAUTHORIZED);
    assert_eq!(t.me(&access).await, StatusCode::OK);
}

#[tokio::test]
async fn rotation_is_picked_up_without_restart() {
    let t = Truxe::start(&[]).await;
    let (old_access, _) = t.register("kim@example.com").await;
    let before = jwks(&t).await["keys"].as_array().unwrap().len();
    assert_eq!(before, 1);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for entry in std::fs::read_dir(t.dir.path().join("data/keys")).unwrap() {
            let mode = entry.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        if !t.on_postgres() {
            let db = std::fs::metadata(t.dir.path().join("data/truxe.db"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(db, 0o600, "the database file is private");
        }
    }
    let out = t.cli(&["keys", "rotate"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_kid = testkit::eventually(
        "the server to load the rotated key",
        Duration::from_secs(30),
        || async {
            let keys = jwks(&t).await;
            let list = keys["keys"].as_array().unwrap().clone();
            (list.len() == 2).then_some(list)
        },
    )
    .await;
    let (new_access, _) = {
        let (_, body) = t.login("kim@example.com", crate::server::PASSWORD).await;
        crate::server::tokens(&body)
    };
    let kid_of = |tok: &str| {
        let header = tok.split('.').next().unwrap();
        let bytes = base64_decode(header);
        serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(
        kid_of(&old_access),
        kid_of(&new_access),
        "new tokens use the new key"
    );
    assert!(new_kid.iter().any(|k| k["kid"] == kid_of(&new_access)));
    assert_eq!(
        t.me(&old_access).await,
        StatusCode::OK,
        "tokens of the retiring key stay valid"
    );
    assert_eq!(t.me(&new_access).await, StatusCode::OK);

    let list = t.cli(&["keys", "list"], None);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("active") && text.contains("retiring"),
        "{text}"
    );
    // Retiring the old key now (e.g. leaked) stops its tokens.
    let out = t.cli(&["keys", "retire", &kid_of(&old_access)], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    testkit::eventually("old key unpublished", Duration::from_secs(30), || async {
        (t.me(&old_access).await == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;
    assert_eq!(t.me(&new_access).await, StatusCode::OK);
    let out = t.cli(&["keys", "retire", &kid_of(&new_access)], None);
    assert!(!out.status.success(), "the signing key cannot be retired");
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn keys_rotate_on_schedule() {
    let t = Truxe::start(&[("TRUXE_KEY_ROTATION_PERIOD", "2s")]).await;
    let (first, _) = t.register("sched@example.com").await;
    let first_kid = kid(&first);
    // Poll the public JWKS (logging in repeatedly would hit the rate limits).
    testkit::eventually("a scheduled rotation", Duration::from_secs(30), || async {
        (jwks(&t).await["keys"].as_array().map(Vec::len) == Some(2)).then_some(())
    })
    .await;
    let (_, body) = t.login("sched@example.com", crate::server::PASSWORD).await;
    let (second, _) = crate::server::tokens(&body);
    assert_ne!(kid(&second), first_kid, "new tokens use the new key");
    assert_eq!(
        t.me(&first).await,
        StatusCode::OK,
        "tokens of the previous key stay valid"
    );
    assert_eq!(t.me(&second).await, StatusCode::OK);
    let out = t.cli(&["keys", "list"], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("retiring"));
}

fn kid(token: &str) -> String {
    let header = base64_decode(token.split('.').next().unwrap());
    serde_json::from_slice::<Value>(&header).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}
