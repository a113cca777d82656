//! Issue 21: `truxe import truxe-v1` against a PostgreSQL database built
//! with the original Truxe's schema (`fixtures/truxe_v1.sql`), then the
//! imported people sign in. Runs in the PostgreSQL pass of the suite
//! (the source is PostgreSQL, as the original's always was).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::mfa::{now, totp};
use crate::server::{tokens, with_database, Truxe};
use crate::webhooks::{signed_by, Receiver};

const PASSWORD: &str = "correct horse battery staple";
/// The original's MFA_ENCRYPTION_KEY the fixture's TOTP secrets are under.
const V1_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const ALICE: &str = "a0000000-0000-4000-8000-000000000001";
const ACME: &str = "b0000000-0000-4000-8000-000000000001";
const CRM_HOOK: &str = "e0000000-0000-4000-8000-000000000001";
const CRM_SECRET: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A fresh database on the suite's server holding the fixture; its URL.
async fn original_database(base: &str, receiver_port: u16) -> String {
    use sqlx::{Connection, Executor};
    let name = format!("v1_{}", secure::token::random_uuid().replace('-', ""));
    let mut admin = sqlx::PgConnection::connect(base).await.unwrap();
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let url = with_database(base, &name);
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let sql =
        include_str!("fixtures/truxe_v1.sql").replace("RECEIVER_PORT", &receiver_port.to_string());
    conn.execute(sqlx::raw_sql(&sql)).await.unwrap();
    url
}

fn import(t: &Truxe, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json", "import", "truxe-v1"];
    all.extend_from_slice(args);
    let out = t.cli(&all, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `kind`'s row of a report as (found, imported, present, skipped).
fn counts(report: &Value, kind: &str) -> (u64, u64, u64, u64) {
    let k = report["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {report}"));
    let n = |f: &str| k[f].as_u64().unwrap();
    (n("found"), n("imported"), n("present"), n("skipped"))
}

/// The reason a row was left out.
fn reason(report: &Value, id: &str) -> String {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no problem for {id} in {report}"))["reason"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn rows(t: &Truxe, sql: &str) -> Vec<Vec<String>> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&t.database_url())
        .await
        .unwrap();
    sqlx::query(sql)
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| (0..r.len()).map(|i| r.get::<String, _>(i)).collect())
        .collect()
}

/// Alice signs in with her password and the TOTP secret she had; her
/// access token.
async fn alice_signs_in_with_her_totp(t: &Truxe) -> String {
    let (s, b) = t.login("alice@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["data"]["mfa_required"], true,
        "her second factor came along: {b}"
    );
    let secret = secure::totp::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap();
    let code = totp(&secret, now());
    let (s, b) = t
        .post(
            "/auth/mfa/challenge/verify",
            json!({"challenge_id": b["data"]["challenge_id"], "token": code}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (alice, _) = tokens(&b);
    let (s, me) = t.authed(Method::GET, "/auth/me", &alice, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["user"]["id"], ALICE, "ids are kept: {me}");
    assert_eq!(me["user"]["emailVerified"], true, "{me}");
    alice
}

#[tokio::test]
async fn issue_21_truxe_v1_users_orgs_and_webhooks_move_and_sign_in() {
    let Ok(base) = std::env::var("TRUXE_TEST_POSTGRES_URL") else {
        eprintln!("needs PostgreSQL: runs in the suite's PostgreSQL pass (scripts/test)");
        return;
    };
    let rx = Receiver::start().await;
    let from = original_database(&base, rx.port).await;
    let t = Truxe::start(&[("TRUXE_WEBHOOK_ALLOW_LOOPBACK", "true")]).await;
    // An account here already holds one of the source's addresses.
    t.register("taken@example.com").await;

    // A dry run without the original's key: users with TOTP are left out
    // (not imported without their second factor), and nothing is written.
    let dry = import(&t, &["--from", &from, "--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(counts(&dry, "users"), (6, 3, 0, 3), "{dry}");
    assert!(reason(&dry, ALICE).contains("no key was given"), "{dry}");
    let (s, _) = t.login("erin.mixed@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a dry run writes nothing");

    let key = t.dir.path().join("v1-mfa.key");
    std::fs::write(&key, format!("{V1_KEY}\n")).unwrap();
    let key = key.to_str().unwrap();
    let report = import(&t, &["--from", &from, "--v1-mfa-key-file", key]);
    assert_eq!(report["dry_run"], false);
    assert_eq!(counts(&report, "users"), (6, 4, 0, 2), "{report}");
    assert!(
        reason(&report, "a0000000-0000-4000-8000-000000000004").contains("does not open"),
        "Dave's secret is under another key: {report}"
    );
    assert!(reason(&report, "a0000000-0000-4000-8000-000000000006").contains("another account"));
    // Root workspaces only: the archived one and a team are not in the
    // original's `organizations` view.
    assert_eq!(counts(&report, "organizations"), (1, 1, 0, 0), "{report}");
    assert_eq!(counts(&report, "roles"), (2, 2, 0, 0), "{report}");
    assert_eq!(counts(&report, "memberships"), (4, 3, 0, 1), "{report}");
    assert!(reason(
        &report,
        &format!("{ACME}/a0000000-0000-4000-8000-000000000003")
    )
    .contains("pending"));
    assert_eq!(
        counts(&report, "role assignments"),
        (2, 1, 0, 1),
        "{report}"
    );
    assert_eq!(counts(&report, "linked accounts"), (1, 1, 0, 0), "{report}");
    assert_eq!(
        counts(&report, "webhook endpoints"),
        (3, 1, 0, 2),
        "{report}"
    );
    assert!(reason(&report, "e0000000-0000-4000-8000-000000000002").contains("no organization"));
    assert!(reason(&report, "e0000000-0000-4000-8000-000000000003").contains("refused"));

    let alice = alice_signs_in_with_her_totp(&t).await;
    // A wrong password still fails; the address is kept lower-cased.
    assert_eq!(
        t.login("alice@example.com", "not it").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.login("erin.mixed@example.com", PASSWORD).await.0,
        StatusCode::OK
    );
    // Blocked stays blocked; an account without a password has none.
    let (s, b) = t.login("bob@example.com", PASSWORD).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_disabled"))
    );
    assert_eq!(
        t.login("carol@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.login("dave@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Organization settings, roles and memberships, linked accounts.
    let org = rows(
        &t,
        &format!("SELECT slug, metadata FROM organizations WHERE id = '{ACME}'"),
    )
    .await;
    assert_eq!(org[0][0], "acme");
    assert_eq!(
        serde_json::from_str::<Value>(&org[0][1]).unwrap(),
        json!({"settings": {"theme": "dark"}})
    );
    let members = rows(
        &t,
        &format!("SELECT user_id, role FROM memberships WHERE org_id = '{ACME}' ORDER BY user_id"),
    )
    .await;
    let members: Vec<(&str, &str)> = members
        .iter()
        .map(|r| (r[0].as_str(), r[1].as_str()))
        .collect();
    assert_eq!(
        members,
        [
            (ALICE, "owner"),
            ("a0000000-0000-4000-8000-000000000002", "member"),
            ("a0000000-0000-4000-8000-000000000005", "auditor"),
        ]
    );
    let roles = rows(
        &t,
        "SELECT name, permissions, inherits FROM org_roles ORDER BY name",
    )
    .await;
    assert_eq!(roles[0], ["auditor", r#"["audit:read"]"#, r#"["billing"]"#]);
    assert_eq!(roles[1][0], "billing");
    let linked = rows(
        &t,
        "SELECT user_id, provider, subject FROM oauth_identities",
    )
    .await;
    assert_eq!(
        linked,
        [["a0000000-0000-4000-8000-000000000003", "github", "583231"]]
    );

    // The endpoint signs with the secret its receiver already has.
    let (s, b) = t
        .authed(
            Method::POST,
            &format!("/webhooks/endpoints/{CRM_HOOK}/test"),
            &alice,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].path, "/hook");
    assert!(signed_by(&got[0], CRM_SECRET));

    // Again: everything is present, nothing is copied twice.
    let again = import(&t, &["--from", &from, "--v1-mfa-key-file", key]);
    for kind in [
        "users",
        "organizations",
        "roles",
        "memberships",
        "role assignments",
        "linked accounts",
        "webhook endpoints",
    ] {
        assert_eq!(counts(&again, kind).1, 0, "{kind}: {again}");
    }
    assert_eq!(counts(&again, "users"), (6, 0, 4, 2));
    assert_eq!(counts(&again, "memberships"), (4, 0, 3, 1));
    assert_eq!(
        rows(&t, "SELECT id FROM users").await.len(),
        5,
        "four imported beside the one here"
    );
}

/// The same import into a SQLite database: the rows Truxe writes are
/// the same SQL on both, and she signs in the same way.
#[tokio::test]
async fn issue_21_truxe_v1_import_into_sqlite() {
    let Ok(base) = std::env::var("TRUXE_TEST_POSTGRES_URL") else {
        eprintln!("needs PostgreSQL: runs in the suite's PostgreSQL pass (scripts/test)");
        return;
    };
    let from = original_database(&base, 9).await;
    let dir = testkit::tempdir();
    let sqlite = format!("sqlite://{}", dir.path().join("truxe.db").display());
    let t = Truxe::start(&[("DATABASE_URL", &sqlite)]).await;
    let report = import(&t, &["--from", &from]);
    // No key given, and none configured: Alice and Dave are left out.
    assert_eq!(counts(&report, "users"), (6, 4, 0, 2), "{report}");
    let key = dir.path().join("v1.key");
    std::fs::write(&key, V1_KEY).unwrap();
    let report = import(
        &t,
        &["--from", &from, "--v1-mfa-key-file", key.to_str().unwrap()],
    );
    assert_eq!(
        counts(&report, "users"),
        (6, 1, 4, 1),
        "Alice now: {report}"
    );
    assert_eq!(
        counts(&report, "memberships"),
        (4, 1, 2, 1),
        "and her membership: {report}"
    );
    alice_signs_in_with_her_totp(&t).await;
    assert!(
        std::fs::metadata(dir.path().join("truxe.db"))
            .unwrap()
            .len()
            > 0
    );
}

/// Bad input: a URL that is not PostgreSQL, a server that is not there.
#[tokio::test]
async fn issue_21_truxe_v1_import_refuses_a_bad_source_clearly() {
    let t = Truxe::start(&[]).await;
    let out = t.cli(
        &[
            "import",
            "truxe-v1",
            "--from",
            "mysql://root@127.0.0.1/truxe",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("postgres://"),
        "{out:?}"
    );
    let out = t.cli(
        &[
            "import",
            "truxe-v1",
            "--from",
            "postgres://truxe:hunter2@127.0.0.1:9/truxe",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert!(!err.contains("hunter2"), "no password in messages: {err}");
}
