//! Organizations, members, roles, invitations, the hierarchy, switching
//! organizations, and tenant isolation across every organization endpoint.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::server::{code, jwt_part, mailed_token, tokens, Truxe};

/// A user with a token, and a helper to call as them.
struct User {
    id: String,
    email: String,
    access: String,
    refresh: String,
}

async fn user(t: &Truxe, email: &str) -> User {
    let (access, refresh) = t.register(email).await;
    let id = jwt_part(&access, 1)["sub"].as_str().unwrap().to_owned();
    User {
        id,
        email: email.to_owned(),
        access,
        refresh,
    }
}

async fn call(
    t: &Truxe,
    u: &User,
    m: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    t.authed(m, path, &u.access, body).await
}

async fn create_org(t: &Truxe, u: &User, name: &str) -> String {
    let (s, b) = call(
        t,
        u,
        Method::POST,
        "/organizations",
        Some(json!({"name": name})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["organization"]["role"], "owner");
    b["data"]["organization"]["id"].as_str().unwrap().to_owned()
}

/// Invites `who` to `org` as `role` (by `by`) and accepts as `who`.
async fn join(t: &Truxe, by: &User, org: &str, who: &User, role: &str, nth_mail: usize) {
    let (s, b) = call(
        t,
        by,
        Method::POST,
        &format!("/organizations/{org}/invite"),
        Some(json!({"email": who.email, "role": role})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["data"]["invitation"]["status"], "pending");
    assert!(
        b["data"]["invitation"].get("token").is_none(),
        "the token is only mailed"
    );
    let token = mailed_token(t, &who.email, nth_mail).await;
    let (s, b) = call(
        t,
        who,
        Method::POST,
        "/organizations/invitations/accept",
        Some(json!({"token": token})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["role"], role);
}

async fn role_of(t: &Truxe, u: &User, org: &str) -> Option<String> {
    let (s, b) = call(t, u, Method::GET, &format!("/organizations/{org}"), None).await;
    (s == StatusCode::OK).then(|| {
        b["data"]["organization"]["role"]
            .as_str()
            .unwrap()
            .to_owned()
    })
}

#[tokio::test]
async fn organizations_members_and_invitations() {
    let t = Truxe::start(&[]).await;
    let alice = user(&t, "alice@example.com").await;
    let bob = user(&t, "bob@example.com").await;
    let carol = user(&t, "carol@example.com").await;
    let org = create_org(&t, &alice, "Acme, Inc.").await;

    let (s, b) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/organizations/{org}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["organization"]["slug"], "acme-inc");
    // The same name again gets a distinct slug; an explicit taken slug is a conflict.
    let second = create_org(&t, &alice, "Acme, Inc.").await;
    assert_ne!(second, org);
    let (s, b) = call(
        &t,
        &alice,
        Method::POST,
        "/organizations",
        Some(json!({"name": "X", "slug": "acme-inc"})),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "slug_taken"), "{b}");
    let (s, b) = call(&t, &alice, Method::GET, "/organizations?limit=1", None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["organizations"].as_array().unwrap().len(), 1);
    let cursor = b["data"]["nextCursor"].as_str().unwrap().to_owned();
    let (_, b) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/organizations?limit=1&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(b["data"]["organizations"].as_array().unwrap().len(), 1);
    assert_ne!(
        b["data"]["organizations"][0]["id"].as_str(),
        Some(cursor.as_str())
    );

    // Invitation to bob; carol cannot use it, bob can, once.
    let (s, b) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/organizations/{org}/invite"),
        Some(json!({"email": "BOB@example.com", "role": "member"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let invite = mailed_token(&t, "bob@example.com", 1).await;
    assert!(invite.starts_with("tinv_"));
    let accept = |u: &User| {
        let u_access = u.access.clone();
        let invite = invite.clone();
        let t = &t;
        async move {
            t.authed(
                Method::POST,
                "/organizations/invitations/accept",
                &u_access,
                Some(json!({"token": invite})),
            )
            .await
        }
    };
    let (s, b) = accept(&carol).await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{b}");
    let (s, b) = accept(&bob).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["organization"]["id"], org.as_str());
    let (s, b) = accept(&bob).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::NOT_FOUND, "not_found"),
        "single use: {b}"
    );
    assert_eq!(role_of(&t, &bob, &org).await.as_deref(), Some("member"));

    // Members: bob sees them but may not change anything.
    let (s, b) = call(
        &t,
        &bob,
        Method::GET,
        &format!("/organizations/{org}/members"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let emails: Vec<&str> = b["data"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), 2);
    assert!(emails.contains(&"alice@example.com") && emails.contains(&"bob@example.com"));
    let (s, b) = call(
        &t,
        &bob,
        Method::PUT,
        &format!("/organizations/{org}"),
        Some(json!({"name": "Bob's"})),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::FORBIDDEN, "forbidden"), "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("organization:update"),
        "{b}"
    );
    let (s, _) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/organizations/{org}/invite"),
        Some(json!({"email": "carol@example.com"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Promoted to admin, bob may update and invite, but not delete, not touch owners, not make owners.
    let (s, b) = call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", bob.id),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = call(
        &t,
        &bob,
        Method::PUT,
        &format!("/organizations/{org}"),
        Some(json!({"name": "Acme Ünïcode ✓", "metadata": {"tier": "gold"}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["organization"]["name"], "Acme Ünïcode ✓");
    let (s, _) = call(
        &t,
        &bob,
        Method::DELETE,
        &format!("/organizations/{org}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &t,
        &bob,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", bob.id),
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "no self-promotion to owner");
    let (s, _) = call(
        &t,
        &bob,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", alice.id),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins cannot demote owners");
    let (s, _) = call(
        &t,
        &bob,
        Method::DELETE,
        &format!("/organizations/{org}/members/{}", alice.id),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins cannot remove owners");
    let (s, _) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/organizations/{org}/invite"),
        Some(json!({"email": "carol@example.com", "role": "owner"})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins cannot invite owners");
    // Only members can be given roles: others must be invited.
    let (s, _) = call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", carol.id),
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", bob.id),
        Some(json!({"role": "emperor"})),
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "validation_error"),
        "{b}"
    );

    // Invitations can be listed and revoked; a revoked one cannot be used.
    let (s, b) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/organizations/{org}/invite"),
        Some(json!({"email": "carol@example.com", "role": "viewer"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let inv_id = b["data"]["invitation"]["id"].as_str().unwrap().to_owned();
    let carol_token = mailed_token(&t, "carol@example.com", 1).await;
    let (_, b) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/organizations/{org}/invitations"),
        None,
    )
    .await;
    let mut statuses: Vec<&str> = b["data"]["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["accepted", "pending"]);
    let (s, _) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("/organizations/{org}/invitations/{inv_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("/organizations/{org}/invitations/{inv_id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &t,
        &carol,
        Method::POST,
        "/organizations/invitations/accept",
        Some(json!({"token": carol_token})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "revoked");
    for bad in ["", "tinv_", "nope", &"x".repeat(5000)] {
        let (s, b) = call(
            &t,
            &carol,
            Method::POST,
            "/organizations/invitations/accept",
            Some(json!({"token": bad})),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{bad:.20}: {b}");
    }

    // The last owner can neither leave nor be demoted; after a transfer, they can.
    let (s, b) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("/organizations/{org}/members/{}", alice.id),
        None,
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "last_owner"), "{b}");
    let (s, b) = call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", alice.id),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "last_owner"), "{b}");
    let (s, _) = call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", bob.id),
        Some(json!({"role": "owner"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("/organizations/{org}/members/{}", alice.id),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "alice leaves");
    assert_eq!(role_of(&t, &alice, &org).await, None);
    assert_eq!(role_of(&t, &bob, &org).await.as_deref(), Some("owner"));

    // Deletion by the owner; afterwards the organization is gone for everyone.
    let (s, _) = call(
        &t,
        &bob,
        Method::DELETE,
        &format!("/organizations/{org}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(role_of(&t, &bob, &org).await, None);

    // Bad input: unknown fields, missing or oversize names, non-object metadata.
    for body in [
        json!({"name": "ok", "owner": "me"}),
        json!({}),
        json!({"name": ""}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "ok", "metadata": [1]}),
        json!({"name": "ok", "slug": "Bad Slug"}),
    ] {
        let (s, b) = call(
            &t,
            &carol,
            Method::POST,
            "/organizations",
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
        assert!(!code(&b).is_empty());
    }
    let (s, _) = t
        .authed(Method::GET, "/organizations", "not-a-token", None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = t.post("/organizations", json!({"name": "anon"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "no anonymous organizations");
}

#[tokio::test]
async fn switch_org_tokens_follow_role_changes() {
    let t = Truxe::start(&[]).await;
    let alice = user(&t, "owner@example.com").await;
    let bob = user(&t, "dev@example.com").await;
    let org = create_org(&t, &alice, "Tokens").await;
    join(&t, &alice, &org, &bob, "viewer", 1).await;

    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/switch-org",
            &bob.access,
            Some(json!({"orgId": org})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (access, refresh) = tokens(&b);
    let claims = jwt_part(&access, 1);
    assert_eq!(claims["org_id"], org.as_str());
    assert_eq!(claims["role"], "viewer");
    assert!(claims["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("members:read")));
    assert!(!claims["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("organization:update")));
    let (_, b) = t
        .authed(Method::GET, "/auth/organizations", &access, None)
        .await;
    assert_eq!(b["data"]["currentOrgId"], org.as_str());
    assert_eq!(b["data"]["organizations"][0]["current"], true);
    // Switching rotates the session: the refresh token from before is spent.
    let (s, b) = t.refresh(&bob.refresh).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");

    // A role change shows in the next token, without switching again.
    let (s, _) = call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", bob.id),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = t.refresh(&refresh).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (access, refresh) = tokens(&b);
    let claims = jwt_part(&access, 1);
    assert_eq!(claims["role"], "admin");
    assert!(claims["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("members:*")));

    // So does a custom role's changed permission set.
    let (s, b) = call(
        &t,
        &alice,
        Method::POST,
        &format!("/organizations/{org}/roles"),
        Some(json!({"name": "billing", "permissions": ["invoices:read"], "inherits": ["viewer"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", bob.id),
        Some(json!({"role": "billing"})),
    )
    .await;
    call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/roles/billing"),
        Some(json!({"permissions": ["invoices:read", "invoices:pay"], "inherits": ["viewer"]})),
    )
    .await;
    let (_, b) = t.refresh(&refresh).await;
    let (access, refresh) = tokens(&b);
    let claims = jwt_part(&access, 1);
    assert_eq!(claims["role"], "billing");
    let perms = claims["permissions"].as_array().unwrap();
    assert!(
        perms.contains(&json!("invoices:pay")) && perms.contains(&json!("organization:read")),
        "{claims}"
    );

    // Removed from the organization: the next token carries none.
    let (s, _) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("/organizations/{org}/members/{}", bob.id),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = t.refresh(&refresh).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (access, _) = tokens(&b);
    let claims = jwt_part(&access, 1);
    assert!(
        claims.get("org_id").is_none() && claims.get("permissions").is_none(),
        "{claims}"
    );

    // Switching into an organization one is not in is the same 404 as a missing one.
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/switch-org",
            &access,
            Some(json!({"orgId": org})),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "not_found"), "{b}");
    let (s, _) = t
        .authed(
            Method::POST,
            "/auth/switch-org",
            &access,
            Some(json!({"orgId": "nope"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Leaving every organization.
    let (s, b) = t
        .authed(
            Method::POST,
            "/auth/switch-org",
            &alice.access,
            Some(json!({"orgId": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(jwt_part(&tokens(&b).0, 1).get("org_id").is_none());
}

#[tokio::test]
async fn custom_roles_inherit_and_cannot_escalate() {
    let t = Truxe::start(&[]).await;
    let alice = user(&t, "root@example.com").await;
    let bob = user(&t, "ops@example.com").await;
    let org = create_org(&t, &alice, "Roles").await;
    join(&t, &alice, &org, &bob, "admin", 1).await;
    let roles = format!("/organizations/{org}/roles");

    let (s, b) = call(&t, &bob, Method::POST, &roles, Some(json!({"name": "auditor", "description": "reads the trail", "permissions": ["audit:read"], "inherits": ["viewer"]}))).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // reports:write is not an admin's to give; the owner holds `*`.
    let lead = json!({"name": "lead", "permissions": ["reports:write"], "inherits": ["auditor"]});
    let (s, _) = call(&t, &bob, Method::POST, &roles, Some(lead.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = call(&t, &alice, Method::POST, &roles, Some(lead)).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (_, b) = call(&t, &bob, Method::GET, &roles, None).await;
    let lead = b["data"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lead")
        .unwrap()
        .clone();
    let eff = lead["effectivePermissions"].as_array().unwrap();
    assert!(
        eff.contains(&json!("audit:read")) && eff.contains(&json!("organization:read")),
        "{lead}"
    );
    assert_eq!(
        b["data"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["builtin"] == true)
            .count(),
        4
    );

    // Cycles, unknown parents, bad names and permissions, duplicates.
    let (s, b) = call(
        &t,
        &bob,
        Method::PUT,
        &format!("{roles}/auditor"),
        Some(json!({"permissions": ["audit:read"], "inherits": ["lead"]})),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "role_cycle"), "{b}");
    for body in [
        json!({"name": "x", "inherits": ["ghost"]}),
        json!({"name": "Bad Name"}),
        json!({"name": "owner"}),
        json!({"name": "ok", "permissions": ["no-colon"]}),
        json!({"permissions": []}),
    ] {
        let (s, b) = call(&t, &bob, Method::POST, &roles, Some(body.clone())).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    let (s, b) = call(
        &t,
        &bob,
        Method::POST,
        &roles,
        Some(json!({"name": "lead"})),
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "role_exists"), "{b}");

    // Escalation: an admin cannot define a role with more than admin holds,
    // nor widen a role it holds itself, nor hand out such a role.
    let (s, _) = call(
        &t,
        &bob,
        Method::POST,
        &roles,
        Some(json!({"name": "god", "permissions": ["*"]})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &t,
        &bob,
        Method::POST,
        &roles,
        Some(json!({"name": "deleter", "permissions": ["organization:delete"]})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&t, &alice, Method::POST, &roles, Some(json!({"name": "manager", "permissions": ["roles:manage", "members:*"], "inherits": ["viewer"]}))).await;
    assert_eq!(s, StatusCode::CREATED);
    call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{org}/members/{}", bob.id),
        Some(json!({"role": "manager"})),
    )
    .await;
    let (s, _) = call(
        &t,
        &bob,
        Method::PUT,
        &format!("{roles}/manager"),
        Some(json!({"permissions": ["roles:manage", "members:*", "organization:delete"]})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "editing one's own role cannot raise it"
    );
    let (s, _) = call(
        &t,
        &alice,
        Method::POST,
        &roles,
        Some(json!({"name": "billing", "permissions": ["billing:*"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &t,
        &bob,
        Method::POST,
        &format!("/organizations/{org}/invite"),
        Some(json!({"email": "x@example.com", "role": "billing"})),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "cannot invite into a role one does not cover"
    );

    // A role that is held or inherited cannot be deleted.
    let (s, b) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("{roles}/auditor"),
        None,
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "role_in_use"),
        "inherited by lead: {b}"
    );
    let (s, b) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("{roles}/manager"),
        None,
    )
    .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "role_in_use"),
        "held by bob: {b}"
    );
    let (s, _) = call(&t, &alice, Method::DELETE, &format!("{roles}/lead"), None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("{roles}/auditor"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(&t, &alice, Method::DELETE, &format!("{roles}/admin"), None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "built-in roles stay");
}

#[tokio::test]
async fn hierarchy_refuses_cycles() {
    let t = Truxe::start(&[]).await;
    let alice = user(&t, "tree@example.com").await;
    let bob = user(&t, "other@example.com").await;
    let root = create_org(&t, &alice, "Root").await;
    let (s, b) = call(
        &t,
        &alice,
        Method::POST,
        "/organizations",
        Some(json!({"name": "Child", "parentId": root})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let child = b["data"]["organization"]["id"].as_str().unwrap().to_owned();
    let (s, b) = call(
        &t,
        &alice,
        Method::POST,
        "/organizations",
        Some(json!({"name": "Grandchild", "parentId": child})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let grandchild = b["data"]["organization"]["id"].as_str().unwrap().to_owned();

    let (s, b) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/organizations/{child}/hierarchy"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["parent"]["id"], root.as_str());
    assert_eq!(b["data"]["children"][0]["id"], grandchild.as_str());
    let (_, b) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/organizations/{grandchild}/hierarchy"),
        None,
    )
    .await;
    let ancestors: Vec<&str> = b["data"]["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ancestors, [child.as_str(), root.as_str()]);

    for (org, parent) in [(&root, &grandchild), (&root, &root), (&child, &grandchild)] {
        let (s, b) = call(
            &t,
            &alice,
            Method::PUT,
            &format!("/organizations/{org}"),
            Some(json!({"parentId": parent})),
        )
        .await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::CONFLICT, "hierarchy_cycle"),
            "{b}"
        );
    }
    let (s, b) = call(
        &t,
        &alice,
        Method::DELETE,
        &format!("/organizations/{root}"),
        None,
    )
    .await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "has_children"), "{b}");
    // Another tenant's organization cannot be made a parent (nor is it revealed).
    let foreign = create_org(&t, &bob, "Foreign").await;
    let (s, b) = call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{grandchild}"),
        Some(json!({"parentId": foreign})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, b) = call(
        &t,
        &alice,
        Method::PUT,
        &format!("/organizations/{grandchild}"),
        Some(json!({"parentId": null})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["organization"]["parentId"], Value::Null);
}

/// Every organization endpoint, called by a user of tenant A against
/// tenant B's resources, answers 404 and changes nothing of B.
#[tokio::test]
async fn tenant_isolation_matrix() {
    let t = Truxe::start(&[]).await;
    let a = user(&t, "a-owner@example.com").await;
    let b_owner = user(&t, "b-owner@example.com").await;
    let b_member = user(&t, "b-member@example.com").await;
    let org_a = create_org(&t, &a, "Tenant A").await;
    let org_b = create_org(&t, &b_owner, "Tenant B").await;
    join(&t, &b_owner, &org_b, &b_member, "member", 1).await;
    call(
        &t,
        &b_owner,
        Method::POST,
        &format!("/organizations/{org_b}/roles"),
        Some(json!({"name": "ops", "permissions": ["ops:run"]})),
    )
    .await;
    let (_, inv) = call(
        &t,
        &b_owner,
        Method::POST,
        &format!("/organizations/{org_b}/invite"),
        Some(json!({"email": "later@example.com"})),
    )
    .await;
    let inv_b = inv["data"]["invitation"]["id"].as_str().unwrap().to_owned();

    let snapshot = || async {
        let mut out = Vec::new();
        for path in ["", "/members", "/roles", "/invitations", "/hierarchy"] {
            let (s, body) = call(
                &t,
                &b_owner,
                Method::GET,
                &format!("/organizations/{org_b}{path}"),
                None,
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{path}: {body}");
            let mut data = body["data"].clone();
            if let Some(o) = data.get_mut("organization") {
                o["updatedAt"] = Value::Null; // touched by the owner-count lock
            }
            out.push(data);
        }
        out
    };
    let before = snapshot().await;

    let m = &b_member.id;
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/organizations/{org_b}"), None),
        (
            Method::PUT,
            format!("/organizations/{org_b}"),
            Some(json!({"name": "pwned"})),
        ),
        (Method::DELETE, format!("/organizations/{org_b}"), None),
        (
            Method::GET,
            format!("/organizations/{org_b}/hierarchy"),
            None,
        ),
        (Method::GET, format!("/organizations/{org_b}/members"), None),
        (
            Method::PUT,
            format!("/organizations/{org_b}/members/{m}"),
            Some(json!({"role": "viewer"})),
        ),
        (
            Method::DELETE,
            format!("/organizations/{org_b}/members/{m}"),
            None,
        ),
        (
            Method::POST,
            format!("/organizations/{org_b}/invite"),
            Some(json!({"email": "x@example.com"})),
        ),
        (
            Method::GET,
            format!("/organizations/{org_b}/invitations"),
            None,
        ),
        (
            Method::DELETE,
            format!("/organizations/{org_b}/invitations/{inv_b}"),
            None,
        ),
        (Method::GET, format!("/organizations/{org_b}/roles"), None),
        (
            Method::POST,
            format!("/organizations/{org_b}/roles"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::PUT,
            format!("/organizations/{org_b}/roles/ops"),
            Some(json!({"permissions": ["*"]})),
        ),
        (
            Method::DELETE,
            format!("/organizations/{org_b}/roles/ops"),
            None,
        ),
        (
            Method::POST,
            "/auth/switch-org".to_owned(),
            Some(json!({"orgId": org_b})),
        ),
        // A's own resources addressed through B's id, and B's through A's.
        (
            Method::PUT,
            format!("/organizations/{org_a}/members/{m}"),
            Some(json!({"role": "viewer"})),
        ),
        (
            Method::DELETE,
            format!("/organizations/{org_a}/invitations/{inv_b}"),
            None,
        ),
        (
            Method::PUT,
            format!("/organizations/{org_a}"),
            Some(json!({"parentId": org_b})),
        ),
        (
            Method::POST,
            "/organizations".to_owned(),
            Some(json!({"name": "sub", "parentId": org_b})),
        ),
    ];
    for (method, path, body) in &cases {
        let (s, res) = call(&t, &a, method.clone(), path, body.clone()).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {res}");
        assert!(
            !res.to_string().contains("Tenant B"),
            "{method} {path} leaks: {res}"
        );
    }
    // A's listings never include B.
    for path in ["/organizations", "/auth/organizations"] {
        let (_, res) = call(&t, &a, Method::GET, path, None).await;
        assert!(!res.to_string().contains(&org_b), "{path}: {res}");
    }
    assert_eq!(snapshot().await, before, "tenant B is unchanged");
}

#[tokio::test]
async fn concurrent_demotions_keep_an_owner() {
    let t = Truxe::start(&[]).await;
    let a = user(&t, "co1@example.com").await;
    let b = user(&t, "co2@example.com").await;
    let org = create_org(&t, &a, "Two owners").await;
    join(&t, &a, &org, &b, "owner", 1).await;
    // Each owner demotes themselves at the same moment: at most one may win.
    let demote = |u: &User| {
        let (http, url, access, id) = (t.http.clone(), t.url(), u.access.clone(), u.id.clone());
        let org = org.clone();
        tokio::spawn(async move {
            http.put(format!("{url}/organizations/{org}/members/{id}"))
                .bearer_auth(access)
                .json(&json!({"role": "member"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let owners = || async {
        [role_of(&t, &a, &org).await, role_of(&t, &b, &org).await]
            .iter()
            .filter(|r| r.as_deref() == Some("owner"))
            .count()
    };
    for round in 0..5 {
        assert_eq!(owners().await, 2, "round {round} starts with two owners");
        let (x, y) = (demote(&a), demote(&b));
        let (x, y) = (x.await.unwrap(), y.await.unwrap());
        let owners = owners().await;
        assert!(owners >= 1, "statuses {x} {y} left no owner");
        assert!(x == StatusCode::CONFLICT || y == StatusCode::CONFLICT || owners == 2);
        // Restore two owners for the next round.
        let owner = if role_of(&t, &a, &org).await.as_deref() == Some("owner") {
            &a
        } else {
            &b
        };
        for u in [&a, &b] {
            let (status, body) = call(
                &t,
                owner,
                Method::PUT,
                &format!("/organizations/{org}/members/{}", u.id),
                Some(json!({"role": "owner"})),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "restoring {}: {body}", u.id);
        }
    }
}

/// Issue 18: nested custom roles are resolved once each (a role reachable
/// by many paths is not expanded on every path), and capped.
#[tokio::test]
async fn issue_18_nested_roles_do_not_stall_the_server() {
    let t = Truxe::start(&[]).await;
    let alice = user(&t, "nest@example.com").await;
    let bob = user(&t, "deep@example.com").await;
    let org = create_org(&t, &alice, "Nested").await;
    let roles = format!("{}/organizations/{org}/roles", t.url());
    // A generous deadline: the old expansion took hours here; resolving
    // once takes milliseconds.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    let post = |body: Value| {
        http.post(&roles)
            .bearer_auth(&alice.access)
            .json(&body)
            .send()
    };
    // 12 layers of 8, each role inheriting the whole layer below: 8^12
    // inheritance paths over 96 roles.
    for layer in 0..12 {
        for i in 0..8 {
            let inherits: Vec<String> = if layer == 0 {
                vec!["viewer".into()]
            } else {
                (0..8).map(|j| format!("l{}r{j}", layer - 1)).collect()
            };
            let body = json!({"name": format!("l{layer}r{i}"), "permissions": [format!("p{layer}:x{i}")], "inherits": inherits});
            let r = post(body).await.expect("answered within the deadline");
            assert_eq!(r.status(), StatusCode::CREATED);
        }
    }
    // Held by a member, the deepest role still answers and grants.
    join(&t, &alice, &org, &bob, "l11r0", 1).await;
    let r = http
        .get(format!("{}/organizations/{org}", t.url()))
        .bearer_auth(&bob.access)
        .send()
        .await
        .expect("answered within the deadline");
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .get(&roles)
        .bearer_auth(&alice.access)
        .send()
        .await
        .expect("answered within the deadline");
    let b: Value = r.json().await.unwrap();
    let top = b["data"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "l11r0")
        .unwrap()
        .clone();
    assert!(top["effectivePermissions"]
        .as_array()
        .unwrap()
        .contains(&json!("p0:x7")));
    // Capped at 100 custom roles, with a clear 400.
    for i in 0..4 {
        let r = post(json!({"name": format!("extra{i}"), "permissions": ["a:b"]}))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = post(json!({"name": "onemore", "permissions": ["a:b"]}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let b: Value = r.json().await.unwrap();
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 100"),
        "{b}"
    );
}

/// Issue 20: an organization's administrators manage its OAuth clients
/// (`oauth_clients:*`); members without the permission and outsiders do
/// not, and only system administrators register clients of no
/// organization.
#[tokio::test]
async fn organizations_manage_their_own_oauth_clients() {
    let t = Truxe::start(&[]).await;
    let owner = user(&t, "olga@example.com").await;
    let member = user(&t, "mats@example.com").await;
    let outsider = user(&t, "otto@example.com").await;
    let org = create_org(&t, &owner, "Acme").await;
    join(&t, &owner, &org, &member, "member", 1).await;
    let body = json!({"name": "Acme Notes", "redirectUris": ["https://notes.acme.example/cb"], "orgId": org});
    // Control: the owner registers one, lists, reads, changes, measures.
    let (s, b) = call(
        &t,
        &owner,
        Method::POST,
        "/api/oauth/clients",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(b["data"]["clientSecret"]
        .as_str()
        .unwrap()
        .starts_with("tcs_"));
    let id = b["data"]["client"]["clientId"].as_str().unwrap().to_owned();
    let (s, b) = call(
        &t,
        &owner,
        Method::GET,
        &format!("/api/oauth/clients?orgId={org}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["clients"][0]["clientId"], id.as_str());
    let (s, b) = call(
        &t,
        &owner,
        Method::GET,
        &format!("/api/oauth/clients?org_id={org}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["clients"][0]["clientId"], id.as_str());
    // A parameter it does not know is named, not ignored.
    let (s, b) = call(
        &t,
        &owner,
        Method::GET,
        &format!("/api/oauth/clients?orgId={org}&orgid={org}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["code"], "invalid_query");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("orgid"),
        "{b}"
    );
    let (s, _) = call(
        &t,
        &owner,
        Method::GET,
        &format!("/api/oauth/clients/{id}/stats"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = call(
        &t,
        &owner,
        Method::PUT,
        &format!("/api/oauth/clients/{id}"),
        Some(json!({"name": "Acme Notes 2"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // A member without the permission: refused (and audited).
    let (s, _) = call(
        &t,
        &member,
        Method::POST,
        "/api/oauth/clients",
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &t,
        &member,
        Method::DELETE,
        &format!("/api/oauth/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // An outsider does not even learn it exists.
    let (s, _) = call(
        &t,
        &outsider,
        Method::GET,
        &format!("/api/oauth/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = call(
        &t,
        &outsider,
        Method::GET,
        &format!("/api/oauth/clients?orgId={org}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // No organization: system administrators only; the list needs one.
    let mut bare = body.clone();
    bare.as_object_mut().unwrap().remove("orgId");
    let (s, _) = call(&t, &owner, Method::POST, "/api/oauth/clients", Some(bare)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&t, &owner, Method::GET, "/api/oauth/clients", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The owner deletes it.
    let (s, _) = call(
        &t,
        &owner,
        Method::DELETE,
        &format!("/api/oauth/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = call(
        &t,
        &owner,
        Method::GET,
        &format!("/api/oauth/clients/{id}"),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The webhook endpoints of `org`, as `u` sees them.
async fn endpoints_of(t: &Truxe, u: &User, org: &str) -> Vec<Value> {
    let path = format!("/webhooks/endpoints?orgId={org}");
    let (s, body) = call(t, u, Method::GET, &path, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["data"]["endpoints"].as_array().unwrap().clone()
}

#[tokio::test]
async fn issue_20_the_console_changes_organizations_roles_and_webhooks() {
    use crate::console::{sign_in, ADMIN_PASSWORD};
    use crate::mfa::{enable_mfa, now};
    use crate::oidc::{browser, csrf_field, get, post_form};
    let t = Truxe::start(&[("TRUXE_WEBHOOK_ALLOW_LOOPBACK", "true")]).await;
    let alice = user(&t, "alice-c@example.com").await;
    let bob = user(&t, "bob-c@example.com").await;
    let org = create_org(&t, &alice, "Acme Console").await;
    join(&t, &alice, &org, &bob, "member", 1).await;
    let (admin_id, admin) = t.admin("root-o@example.com").await;
    let (secret, _, step) = enable_mfa(&t, &admin).await;
    let b = browser();
    let signed = sign_in(
        &b,
        &t,
        "root-o@example.com",
        ADMIN_PASSWORD,
        Some((&secret, step.max(now()) + 30)),
    )
    .await;
    assert_eq!(signed, StatusCode::SEE_OTHER);
    let here = format!("/admin/console/organizations/{org}");
    let (s, page) = get(&b, &t, &here).await;
    assert_eq!(s, StatusCode::OK);
    let csrf = csrf_field(&page);
    let act = |what: &str, extra: &[(&str, &str)]| {
        let mut f = csrf.clone();
        f.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        (format!("{here}/{what}"), f)
    };

    // Attacks: no token; a browser not signed in to the console, with a
    // token of its own; the organization's own owner (no administrator).
    let (path, _) = act("member-role", &[]);
    let bob_admin = [
        ("user_id".to_owned(), bob.id.clone()),
        ("role".into(), "admin".into()),
    ];
    assert_eq!(
        post_form(&b, &t, &path, &bob_admin).await.status(),
        StatusCode::FORBIDDEN
    );
    let stranger = browser();
    let (_, sign_in_page) = get(&stranger, &t, "/admin/console").await;
    let mut f = csrf_field(&sign_in_page);
    f.extend(bob_admin.iter().cloned());
    let r = post_form(&stranger, &t, &path, &f).await;
    assert!(r.text().await.unwrap().contains("Sign in"));
    let owner = browser();
    crate::console::sign_in(&owner, &t, &alice.email, crate::server::PASSWORD, None).await;
    let (_, owner_page) = get(&owner, &t, &here).await;
    assert!(!owner_page.contains("Members"), "{owner_page}");
    assert_eq!(role_of(&t, &bob, &org).await.as_deref(), Some("member"));

    // Members: a role changed, the last owner kept.
    let (path, f) = act("member-role", &[("user_id", &bob.id), ("role", "admin")]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(role_of(&t, &bob, &org).await.as_deref(), Some("admin"));
    let (path, f) = act("member-role", &[("user_id", &alice.id), ("role", "member")]);
    let r = post_form(&b, &t, &path, &f).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("at least one owner"));
    assert_eq!(role_of(&t, &alice, &org).await.as_deref(), Some("owner"));

    // Roles: created, changed, held (so not deletable), deleted.
    let (path, f) = act(
        "role-save",
        &[("name", "auditor"), ("permissions", "members:read")],
    );
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    let (path, f) = act(
        "role-save",
        &[
            ("existing", "auditor"),
            ("permissions", "members:read webhooks:read"),
            ("inherits", "viewer"),
        ],
    );
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, roles) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/organizations/{org}/roles"),
        None,
    )
    .await;
    let auditor = roles["data"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "auditor")
        .cloned()
        .unwrap_or_else(|| panic!("{roles}"));
    assert_eq!(auditor["inherits"], json!(["viewer"]), "{auditor}");
    let (path, f) = act("role-save", &[("name", "bad"), ("permissions", "nonsense")]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::BAD_REQUEST
    );
    let (path, f) = act("member-role", &[("user_id", &bob.id), ("role", "auditor")]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(role_of(&t, &bob, &org).await.as_deref(), Some("auditor"));
    let (path, f) = act("role-delete", &[("name", "auditor")]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::CONFLICT
    );
    let (path, f) = act("member-role", &[("user_id", &bob.id), ("role", "member")]);
    post_form(&b, &t, &path, &f).await;
    let (path, f) = act("role-delete", &[("name", "auditor")]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, page) = get(&b, &t, &here).await;
    assert!(!page.contains("perm-auditor"), "{page}");

    // Webhooks: added (its secret shown once), turned off, deleted.
    let (path, f) = act(
        "endpoint-add",
        &[
            ("url", "http://127.0.0.1:9/hook"),
            ("events", "organization.updated"),
        ],
    );
    let r = post_form(&b, &t, &path, &f).await;
    let html = r.text().await.unwrap();
    assert!(html.contains("whsec_"), "{html}");
    let list = endpoints_of(&t, &alice, &org).await;
    assert_eq!(
        (list.len(), &list[0]["enabled"]),
        (1, &json!(true)),
        "{list:?}"
    );
    let ep = list[0]["id"].as_str().unwrap().to_owned();
    let (path, f) = act("endpoint-disable", &[("endpoint_id", &ep)]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        endpoints_of(&t, &alice, &org).await[0]["enabled"],
        json!(false)
    );
    let (path, f) = act("endpoint-delete", &[("endpoint_id", &ep)]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(endpoints_of(&t, &alice, &org).await.is_empty());

    // The organization: renamed, a member removed, then deleted (with the
    // box ticked only).
    let (path, f) = act(
        "update",
        &[("name", "Acme Renamed"), ("slug", "acme-renamed")],
    );
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    let (_, got) = call(
        &t,
        &alice,
        Method::GET,
        &format!("/organizations/{org}"),
        None,
    )
    .await;
    assert_eq!(
        (
            &got["data"]["organization"]["name"],
            &got["data"]["organization"]["slug"]
        ),
        (&json!("Acme Renamed"), &json!("acme-renamed")),
        "{got}"
    );
    let (path, f) = act("member-remove", &[("user_id", &bob.id)]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(role_of(&t, &bob, &org).await, None);
    let (path, f) = act("delete", &[]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::BAD_REQUEST
    );
    let (path, f) = act("delete", &[("confirm", "yes")]);
    assert_eq!(
        post_form(&b, &t, &path, &f).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(role_of(&t, &alice, &org).await, None);

    // Each change is in the trail as the administrator's.
    let (s, body) = t
        .authed(
            Method::GET,
            "/api/admin/audit?action=member_role_changed",
            &admin,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let events = body["events"].as_array().unwrap();
    assert!(
        events.len() >= 3 && events.iter().all(|e| e["actor"] == admin_id.as_str()),
        "{events:?}"
    );
}
