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
        // On PostgreSQL there is no database file of Truxe's to check:
        // the server's own files are its operator's business.
        if t.on_postgres() {
            eprintln!("PostgreSQL: no database file to check the mode of");
        } else {
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

/// Key ids are base64url and about one in 32 starts with `-`: such an id is
/// still an id on the command line, not a flag.
#[tokio::test]
async fn key_ids_starting_with_a_hyphen_are_ids() {
    let t = Truxe::start(&[]).await;
    let out = t.cli(&["keys", "retire", "-vNotAKey"], None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no key -vNotAKey"), "{err}");
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
    // For scripts: one JSON document, the signing key's id included.
    let out = t.cli(&["keys", "list", "-o", "json"], None);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let states: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"active") && states.contains(&"retiring"),
        "{list}"
    );
    assert!(list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["kid"] == kid(&second)));
}

fn kid(token: &str) -> String {
    let header = base64_decode(token.split('.').next().unwrap());
    serde_json::from_slice::<Value>(&header).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Changes one claim of an otherwise valid token.
type Mutation<'a> = &'a dyn Fn(&mut Value);

#[tokio::test]
async fn every_forged_token_case_is_refused_over_http() {
    let t = Truxe::start(&[]).await;
    let (access, _) = t.register("forge@example.com").await;
    let (_, me) = t
        .authed(reqwest::Method::GET, "/auth/me", &access, None)
        .await;
    let (sub, sid) = (
        me["user"]["id"].as_str().unwrap().to_owned(),
        me["session"]["id"].as_str().unwrap().to_owned(),
    );
    // The server's own signing key, from its key directory (0600, same machine).
    let ring = secure::keystore::KeyStore::new(t.dir.path().join("data/keys"))
        .load_ring()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |f: &dyn Fn(&mut Value)| {
        let mut c = json!({"iss": t.url(), "aud": "truxe-api", "sub": sub, "iat": now, "nbf": now, "exp": now + 600,
                           "jti": "j", "sid": sid, "email": "forge@example.com", "email_verified": false});
        f(&mut c);
        ring.sign(&c).unwrap()
    };
    assert_eq!(
        t.me(&claims(&|_| {})).await,
        StatusCode::OK,
        "control: a well-formed token signed by the key passes"
    );
    let cases: [(&str, Mutation); 4] = [
        ("expired", &|c| c["exp"] = json!(now - 120)),
        ("not yet valid", &|c| c["nbf"] = json!(now + 3600)),
        ("wrong issuer", &|c| {
            c["iss"] = json!("https://evil.example.net")
        }),
        ("wrong audience", &|c| c["aud"] = json!("other-api")),
    ];
    for (name, f) in cases {
        assert_eq!(t.me(&claims(f)).await, StatusCode::UNAUTHORIZED, "{name}");
    }
    // alg:none, and HS256 keyed with the published public key.
    let kid = ring.current_kid().to_owned();
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload =
        b64(&json!({"iss": t.url(), "aud": "truxe-api", "sub": sub, "exp": now + 600, "sid": sid}));
    let none = format!("{}.{payload}.", b64(&json!({"alg": "none", "kid": kid})));
    assert_eq!(t.me(&none).await, StatusCode::UNAUTHORIZED, "alg none");
    let jwks = jwks(&t).await.to_string();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid);
    let hs = jsonwebtoken::encode(
        &header,
        &json!({"iss": t.url(), "aud": "truxe-api", "sub": sub, "exp": now + 600, "sid": sid}),
        &jsonwebtoken::EncodingKey::from_secret(jwks.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        t.me(&hs).await,
        StatusCode::UNAUTHORIZED,
        "HS256 with the public key"
    );
    // Tampered: a valid token with one payload byte changed.
    let parts: Vec<&str> = access.split('.').collect();
    let mut p = parts[1].to_owned().into_bytes();
    p[5] = if p[5] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        t.me(&format!(
            "{}.{}.{}",
            parts[0],
            String::from_utf8(p).unwrap(),
            parts[2]
        ))
        .await,
        StatusCode::UNAUTHORIZED,
        "tampered"
    );
}

#[tokio::test]
async fn a_fixed_private_key_file_signs_and_cannot_be_rotated() {
    let key = SigningKey::generate(KeyAlg::Es256).unwrap();
    let scratch = testkit::tempdir();
    let path = scratch.path().join("signing.pem");
    std::fs::write(&path, key.pem().expose()).unwrap();
    let path = path.display().to_string();
    let t = Truxe::start(&[("JWT_PRIVATE_KEY_FILE", &path), ("JWT_ALGORITHM", "ES256")]).await;
    let published = jwks(&t).await;
    assert_eq!(published["keys"].as_array().map(Vec::len), Some(1));
    assert_eq!(published["keys"][0]["kid"], key.kid());
    assert_eq!(published["keys"][0]["alg"], "ES256");
    let (access, _) = t.register("fixed@example.com").await;
    assert_eq!(kid(&access), key.kid());
    let out = t.cli(&["keys", "rotate"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_PRIVATE_KEY_FILE"));
    // A key file of the wrong algorithm is refused at start-up.
    let mut cmd = t.command();
    let out = cmd
        .env("JWT_ALGORITHM", "RS256")
        .arg("check-config")
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Issue 21: JWKS and discovery are served from documents built once, with
/// a strong `ETag`: a client holding the current version gets `304` and no
/// body; a rotation changes the JWKS and its tag, so a cached copy is not
/// answered `304` any more.
#[tokio::test]
async fn jwks_and_discovery_carry_etags_that_follow_the_keys() {
    let t = Truxe::start(&[]).await;
    let get = |path: &'static str, tag: Option<String>| {
        let (http, url) = (t.http.clone(), t.url());
        async move {
            let mut r = http.get(format!("{url}{path}"));
            if let Some(tag) = tag {
                r = r.header("if-none-match", tag);
            }
            let r = r.send().await.unwrap();
            let h = r.headers().clone();
            let tag = h.get("etag").map(|v| v.to_str().unwrap().to_owned());
            (r.status(), h, tag, r.text().await.unwrap())
        }
    };
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
    ] {
        let (s, h, tag, body) = get(path, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["cache-control"], "public, max-age=60");
        assert_eq!(h["content-type"], "application/json");
        serde_json::from_str::<Value>(&body).unwrap();
        let tag = tag.expect("an ETag");
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() > 8,
            "{tag}"
        );
        // Held: 304, no body, same tag. In a list, and weak-compared, too.
        for held in [tag.clone(), format!("\"other\", {tag}"), format!("W/{tag}")] {
            let (s, h, again, body) = get(path, Some(held)).await;
            assert_eq!(s, StatusCode::NOT_MODIFIED);
            assert_eq!(again.as_deref(), Some(tag.as_str()));
            assert_eq!(h["cache-control"], "public, max-age=60");
            assert!(body.is_empty());
        }
        // Control: another tag, or garbage, gets the document.
        for other in ["\"0000\"", "not a tag", ""] {
            let (s, _, _, body) = get(path, Some(other.into())).await;
            assert_eq!(s, StatusCode::OK, "{other:?}");
            assert!(!body.is_empty());
        }
    }
    let (_, _, old, _) = get("/.well-known/jwks.json", None).await;
    let out = t.cli(&["keys", "rotate"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = testkit::eventually("the rotated JWKS", Duration::from_secs(30), || async {
        let (s, _, tag, body) = get("/.well-known/jwks.json", old.clone()).await;
        (s == StatusCode::OK && tag != old).then_some(body)
    })
    .await;
    let keys: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
}

/// `truxe check-config` reads the signing keys and writes none. On a fresh
/// data directory it says `serve` will create the first key, and creates
/// nothing (it used to create the key itself); beside a running server it
/// names the active key and leaves the store's files as they were.
#[tokio::test]
async fn check_config_names_the_signing_key_and_writes_none() {
    let fresh = testkit::tempdir();
    let data = fresh.path().join("data");
    let out = std::process::Command::new(crate::server::TRUXE)
        .env("TRUXE_DATA_DIR", &data)
        .arg("check-config")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("signing key none yet"), "{stdout}");
    assert!(
        !data.join("keys").exists(),
        "check-config created a key store"
    );

    // The control: a server's key store, named and left as it was.
    let t = Truxe::start(&[]).await;
    let store = t.dir.path().join("data/keys");
    let files = || {
        let mut all: Vec<_> = std::fs::read_dir(&store)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                (path.clone(), std::fs::read(&path).unwrap())
            })
            .collect();
        all.sort();
        all
    };
    let before = files();
    let kid = jwks(&t).await["keys"][0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = t.cli(&["check-config"], None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("signing key {kid})")), "{stdout}");
    assert_eq!(files(), before);
}
