//! Service accounts, API keys (permissions, networks, expiry, tiers,
//! rotation with a grace period, revocation) and client credentials.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{code, jwt_part, Truxe};

pub(crate) struct Org {
    id: String,
    owner: String,
}

pub(crate) async fn org(t: &Truxe, email: &str) -> Org {
    let (owner, _) = t.register(email).await;
    let (s, b) = t
        .authed(
            Method::POST,
            "/organizations",
            &owner,
            Some(json!({"name": email})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    Org {
        id: b["data"]["organization"]["id"].as_str().unwrap().to_owned(),
        owner,
    }
}

/// Creates a service account; returns (id, client secret).
pub(crate) async fn account(t: &Truxe, o: &Org, name: &str, perms: Value) -> (String, String) {
    let (s, b) = t
        .authed(
            Method::POST,
            "/api/service-accounts",
            &o.owner,
            Some(json!({"orgId": o.id, "name": name, "permissions": perms})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let d = &b["data"];
    assert_eq!(d["clientId"], d["serviceAccount"]["id"]);
    (
        d["clientId"].as_str().unwrap().to_owned(),
        d["clientSecret"].as_str().unwrap().to_owned(),
    )
}

/// Issues a key for `account`; returns (key id, key).
async fn key(t: &Truxe, o: &Org, account: &str, body: Value) -> (String, String) {
    let (s, b) = t
        .authed(
            Method::POST,
            &format!("/api/service-accounts/{account}/keys"),
            &o.owner,
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (
        b["data"]["apiKey"]["id"].as_str().unwrap().to_owned(),
        b["data"]["key"].as_str().unwrap().to_owned(),
    )
}

async fn members(t: &Truxe, o: &Org, credential: &str) -> (StatusCode, Value) {
    t.authed(
        Method::GET,
        &format!("/organizations/{}/members", o.id),
        credential,
        None,
    )
    .await
}

#[tokio::test]
async fn api_keys_act_within_their_permissions() {
    let t = Truxe::start(&[]).await;
    let acme = org(&t, "acme@example.com").await;
    let other = org(&t, "other@example.com").await;
    let (sa, _) = account(&t, &acme, "ci", json!(["members:read", "orders:*"])).await;
    let (kid, live) = key(&t, &acme, &sa, json!({"name": "deploy"})).await;
    assert!(live.starts_with(&format!("truxe_sk_live_{kid}_")), "{live}");
    let (_, test_key) = key(
        &t,
        &acme,
        &sa,
        json!({"environment": "test", "permissions": ["members:read"]}),
    )
    .await;
    assert!(test_key.starts_with("truxe_sk_test_"));

    let (s, b) = members(&t, &acme, &live).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(members(&t, &acme, &test_key).await.0, StatusCode::OK);
    // Beyond its permissions, another tenant, user-only routes.
    let (s, b) = t
        .authed(
            Method::GET,
            &format!("/organizations/{}/roles", acme.id),
            &live,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("service account `ci`"),
        "{b}"
    );
    assert_eq!(members(&t, &other, &live).await.0, StatusCode::NOT_FOUND);
    assert_eq!(t.me(&live).await, StatusCode::UNAUTHORIZED);
    let (s, _) = t
        .authed(
            Method::POST,
            "/organizations",
            &live,
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "keys cannot create organizations"
    );

    // The listing shows use, never the secret.
    let (_, b) = t
        .authed(
            Method::GET,
            &format!("/api/service-accounts/{sa}/keys"),
            &acme.owner,
            None,
        )
        .await;
    let listed = b["data"]["apiKeys"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        !b.to_string().contains(&live[live.len() - 20..]),
        "no secret in listings"
    );
    let deploy = listed.iter().find(|k| k["id"] == kid.as_str()).unwrap();
    assert_eq!(deploy["lastUsedIp"], "127.0.0.1");
    assert!(deploy["lastUsedAt"].is_string());
    assert_eq!(deploy["status"], "active");

    // Garbage and near-misses.
    let tampered = format!(
        "{}{}",
        &live[..live.len() - 1],
        if live.ends_with('A') { 'B' } else { 'A' }
    );
    for bad in [
        tampered.as_str(),
        "truxe_sk_live_",
        "truxe_sk_live_0123456789abcdef_short",
        &live.replace("_live_", "_test_"),
    ] {
        let (s, b) = members(&t, &acme, bad).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{bad}: {b}"
        );
    }

    // Keys cannot exceed their account; the account cannot exceed its maker.
    let (s, b) = t
        .authed(
            Method::POST,
            &format!("/api/service-accounts/{sa}/keys"),
            &acme.owner,
            Some(json!({"permissions": ["audit:read"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    for bad in [
        json!({"environment": "prod"}),
        json!({"expiresIn": 0}),
        json!({"allowedCidrs": ["nonsense"]}),
        json!({"rateLimitTier": "infinite"}),
        json!({"secret": "mine"}),
    ] {
        let (s, b) = t
            .authed(
                Method::POST,
                &format!("/api/service-accounts/{sa}/keys"),
                &acme.owner,
                Some(bad.clone()),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }

    // Narrowing the account narrows its keys at once; disabling stops them.
    let (s, b) = t
        .authed(
            Method::PATCH,
            &format!("/api/service-accounts/{sa}"),
            &acme.owner,
            Some(json!({"permissions": ["orders:*"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(members(&t, &acme, &live).await.0, StatusCode::FORBIDDEN);
    t.authed(
        Method::PATCH,
        &format!("/api/service-accounts/{sa}"),
        &acme.owner,
        Some(json!({"permissions": ["members:read"], "status": "disabled"})),
    )
    .await;
    assert_eq!(members(&t, &acme, &live).await.0, StatusCode::UNAUTHORIZED);
    t.authed(
        Method::PATCH,
        &format!("/api/service-accounts/{sa}"),
        &acme.owner,
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(members(&t, &acme, &live).await.0, StatusCode::OK);

    // Source networks.
    let (_, remote_only) = key(&t, &acme, &sa, json!({"allowedCidrs": ["10.0.0.0/8"]})).await;
    let (s, b) = members(&t, &acme, &remote_only).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (_, local) = key(
        &t,
        &acme,
        &sa,
        json!({"allowedCidrs": ["127.0.0.0/8", "::1"]}),
    )
    .await;
    assert_eq!(members(&t, &acme, &local).await.0, StatusCode::OK);

    // Expiry.
    let (_, brief) = key(&t, &acme, &sa, json!({"expiresIn": 1})).await;
    testkit::eventually("the key to expire", Duration::from_secs(10), || async {
        (members(&t, &acme, &brief).await.0 == StatusCode::UNAUTHORIZED).then_some(())
    })
    .await;

    // Deleting the account stops every key.
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/service-accounts/{sa}"),
            &acme.owner,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(members(&t, &acme, &live).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotation_keeps_the_old_key_for_the_grace_period() {
    let t = Truxe::start(&[]).await;
    let acme = org(&t, "rotor@example.com").await;
    let (sa, _) = account(&t, &acme, "worker", json!(["members:read"])).await;
    let (old_id, old) = key(&t, &acme, &sa, json!({})).await;

    let (s, b) = t
        .authed(
            Method::POST,
            &format!("/api/api-keys/{old_id}/rotate"),
            &acme.owner,
            Some(json!({"gracePeriod": 2})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let new = b["data"]["key"].as_str().unwrap().to_owned();
    let new_id = b["data"]["apiKey"]["id"].as_str().unwrap().to_owned();
    assert!(b["data"]["previousKeyValidUntil"].is_string());
    assert_eq!(
        members(&t, &acme, &old).await.0,
        StatusCode::OK,
        "old key within grace"
    );
    assert_eq!(members(&t, &acme, &new).await.0, StatusCode::OK);
    let (s, b) = t
        .authed(
            Method::POST,
            &format!("/api/api-keys/{old_id}/rotate"),
            &acme.owner,
            None,
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "key_not_active"),
        "rotated once: {b}"
    );
    testkit::eventually(
        "the grace period to end",
        Duration::from_secs(15),
        || async { (members(&t, &acme, &old).await.0 == StatusCode::UNAUTHORIZED).then_some(()) },
    )
    .await;
    assert_eq!(members(&t, &acme, &new).await.0, StatusCode::OK);
    let (_, b) = t
        .authed(
            Method::GET,
            &format!("/api/service-accounts/{sa}/keys"),
            &acme.owner,
            None,
        )
        .await;
    let old_view = b["data"]["apiKeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == old_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(old_view["status"], "rotated");
    assert_eq!(old_view["replacedBy"], new_id.as_str());

    // Revocation is immediate, also for a key in its grace period.
    let (s, b) = t
        .authed(
            Method::POST,
            &format!("/api/api-keys/{new_id}/rotate"),
            &acme.owner,
            Some(json!({"gracePeriod": 3600})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let newest = b["data"]["key"].as_str().unwrap().to_owned();
    assert_eq!(members(&t, &acme, &new).await.0, StatusCode::OK);
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/api-keys/{new_id}"),
            &acme.owner,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(members(&t, &acme, &new).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(members(&t, &acme, &newest).await.0, StatusCode::OK);
    let (s, _) = t
        .authed(
            Method::DELETE,
            &format!("/api/api-keys/{new_id}"),
            &acme.owner,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn client_credentials_give_short_lived_tokens() {
    let t = Truxe::start(&[]).await;
    let acme = org(&t, "m2m@example.com").await;
    let (sa, secret) = account(&t, &acme, "batch", json!(["members:read"])).await;
    assert!(secret.starts_with("truxe_cs_"));
    let (s, b) = t
        .post(
            "/api/service-accounts/token",
            json!({"client_id": sa, "client_secret": "truxe_cs_wrong"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = t
        .post(
            "/api/service-accounts/token",
            json!({"client_id": "nobody", "client_secret": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = t
        .post(
            "/api/service-accounts/token",
            json!({"grant_type": "password", "client_id": sa, "client_secret": secret}),
        )
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "unsupported_grant_type")
    );
    let (s, b) = t
        .post(
            "/api/service-accounts/token",
            json!({"grant_type": "client_credentials", "clientId": sa, "clientSecret": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let access = b["access_token"].as_str().unwrap().to_owned();
    assert!(b["expires_in"].as_u64().unwrap() <= 3600);
    let claims = jwt_part(&access, 1);
    assert_eq!(claims["token_use"], "service");
    assert_eq!(claims["sub"], sa.as_str());
    assert_eq!(claims["org_id"], acme.id.as_str());
    assert_eq!(claims["permissions"], json!(["members:read"]));
    assert_eq!(members(&t, &acme, &access).await.0, StatusCode::OK);
    assert_eq!(
        t.me(&access).await,
        StatusCode::UNAUTHORIZED,
        "not a user token"
    );
    t.authed(
        Method::DELETE,
        &format!("/api/service-accounts/{sa}"),
        &acme.owner,
        None,
    )
    .await;
    assert_eq!(
        members(&t, &acme, &access).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn key_tiers_limit_requests() {
    let t = Truxe::start(&[]).await;
    let acme = org(&t, "tier@example.com").await;
    let (sa, _) = account(&t, &acme, "noisy", json!(["members:read"])).await;
    let (_, low) = key(&t, &acme, &sa, json!({"rateLimitTier": "low"})).await;
    let mut statuses = Vec::new();
    for _ in 0..61 {
        statuses.push(members(&t, &acme, &low).await.0);
    }
    assert!(
        statuses[..60].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(statuses[60], StatusCode::TOO_MANY_REQUESTS);
    let (_, other) = key(&t, &acme, &sa, json!({})).await;
    assert_eq!(
        members(&t, &acme, &other).await.0,
        StatusCode::OK,
        "limits are per key"
    );
}

#[tokio::test]
async fn service_accounts_respect_roles_and_tenants() {
    let t = Truxe::start(&[]).await;
    let acme = org(&t, "sa-owner@example.com").await;
    let other = org(&t, "sa-other@example.com").await;
    let (sa, _) = account(&t, &acme, "svc", json!(["members:read"])).await;
    let (kid, _) = key(&t, &acme, &sa, json!({})).await;

    // An admin cannot make an account with more than admins hold.
    let (admin, _) = t.register("sa-admin@example.com").await;
    let (viewer, _) = t.register("sa-viewer@example.com").await;
    for (who, role, n) in [(&admin, "admin", 1), (&viewer, "viewer", 1)] {
        let email = if role == "admin" {
            "sa-admin@example.com"
        } else {
            "sa-viewer@example.com"
        };
        t.authed(
            Method::POST,
            &format!("/organizations/{}/invite", acme.id),
            &acme.owner,
            Some(json!({"email": email, "role": role})),
        )
        .await;
        let token = crate::server::mailed_token(&t, email, n).await;
        let (s, b) = t
            .authed(
                Method::POST,
                "/organizations/invitations/accept",
                who,
                Some(json!({"token": token})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let create = |who: &str, perms: Value| {
        let who = who.to_owned();
        let org_id = acme.id.clone();
        let t = &t;
        async move {
            t.authed(Method::POST, "/api/service-accounts", &who, Some(json!({"orgId": org_id, "name": format!("n{}", perms.to_string().len()), "permissions": perms}))).await
        }
    };
    assert_eq!(create(&admin, json!(["*"])).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        create(&admin, json!(["organization:delete"])).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        create(&admin, json!(["members:read"])).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        create(&viewer, json!([])).await.0,
        StatusCode::FORBIDDEN,
        "viewers cannot manage"
    );
    let (s, b) = t
        .authed(
            Method::GET,
            &format!("/api/service-accounts?orgId={}", acme.id),
            &viewer,
            None,
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "viewers lack service_accounts:read: {b}"
    );
    let (s, b) = t
        .authed(
            Method::GET,
            &format!("/api/service-accounts?orgId={}", acme.id),
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["serviceAccounts"].as_array().unwrap().len(), 2);
    let (s, _) = t
        .authed(
            Method::POST,
            "/api/service-accounts",
            &acme.owner,
            Some(json!({"orgId": acme.id, "name": "svc"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "names are unique per organization");
    let (s, b) = t
        .authed(
            Method::POST,
            "/api/service-accounts",
            &acme.owner,
            Some(json!({"name": "no-org"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    // Another tenant sees none of it.
    let cases = [
        (Method::GET, format!("/api/service-accounts/{sa}"), None),
        (
            Method::PATCH,
            format!("/api/service-accounts/{sa}"),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, format!("/api/service-accounts/{sa}"), None),
        (
            Method::GET,
            format!("/api/service-accounts/{sa}/keys"),
            None,
        ),
        (
            Method::POST,
            format!("/api/service-accounts/{sa}/keys"),
            Some(json!({})),
        ),
        (Method::POST, format!("/api/api-keys/{kid}/rotate"), None),
        (Method::DELETE, format!("/api/api-keys/{kid}"), None),
        (
            Method::GET,
            format!("/api/service-accounts?orgId={}", acme.id),
            None,
        ),
        (
            Method::POST,
            "/api/service-accounts".to_owned(),
            Some(json!({"orgId": acme.id, "name": "evil"})),
        ),
    ];
    for (m, path, body) in cases {
        let (s, b) = t.authed(m.clone(), &path, &other.owner, body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{m} {path}: {b}");
    }
    let (_, b) = t
        .authed(
            Method::GET,
            &format!("/api/service-accounts/{sa}/keys"),
            &acme.owner,
            None,
        )
        .await;
    assert_eq!(b["data"]["apiKeys"][0]["status"], "active", "unchanged");
}
