//! The PostgreSQL the suite runs on (scripts/pg.sh) takes only TLS with
//! passwords, as a production server should, and Truxe reaches it with
//! `sslmode=verify-full`: the whole PostgreSQL run of this suite goes
//! through that. These checks show the server refuses the insecure ways in
//! and that Truxe's driver checks the certificate.

use sqlx::Connection;

/// Issue 18: PostgreSQL with `sslmode=verify-full` and a CA file.
#[tokio::test]
async fn issue_18_postgres_is_reached_only_over_verified_tls() {
    let Ok(url) = std::env::var("TRUXE_TEST_POSTGRES_URL") else {
        eprintln!("not on PostgreSQL in this run (scripts/test runs the suite again on it)");
        return;
    };
    assert!(url.contains("sslmode=verify-full"), "{url}");
    // Control: as configured, it connects.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let on: (bool,) = sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(on.0, "the connection is encrypted");
    // Without TLS the server refuses.
    let plain = url.replace("sslmode=verify-full", "sslmode=disable");
    let err = sqlx::PgConnection::connect(&plain)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("no encryption"), "{err}");
    // A server certificate from another CA is refused by the client.
    let dir = testkit::tempdir();
    let year = std::time::SystemTime::now() + std::time::Duration::from_secs(86_400);
    let other = secure::tls::dev::DevCa::new("Another CA", year).unwrap();
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, &other.cert_pem).unwrap();
    let ca = std::env::var("TRUXE_TEST_POSTGRES_CA").unwrap();
    let wrong = url.replace(&ca, other_ca.to_str().unwrap());
    assert_ne!(wrong, url);
    assert!(sqlx::PgConnection::connect(&wrong).await.is_err());
    // A wrong password is refused.
    let (creds, _) = url.split_once('@').unwrap();
    let (_, pw) = creds.rsplit_once(':').unwrap();
    let bad = url.replacen(&format!(":{pw}@"), ":not-the-password@", 1);
    assert!(sqlx::PgConnection::connect(&bad).await.is_err());
}
