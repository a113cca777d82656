//! The Debian package, as an operator installs it: `scripts/dist` builds
//! it from the binary under test, `dpkg` installs it, and the installed
//! `truxe`, started as the package's user with its default configuration
//! and the secrets made at install (only the port changed), serves in
//! production mode.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use testkit::dist::{as_user, build_and_install, env_file, verify_units};
use testkit::{free_port, ChildGuard};

use crate::server::{tokens, PASSWORD, TRUXE};

#[tokio::test]
async fn the_debian_package_installs_and_serves_in_production_mode() {
    if std::env::var_os("TRUXE_TEST_POSTGRES_URL").is_some() {
        // The package is the same on either database; the SQLite pass
        // installs and runs it.
        return;
    }
    let _installed = build_and_install("truxe", Path::new(TRUXE).parent().unwrap());

    // Secrets made at install: strong, distinct, readable by the service
    // user's group only.
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata("/etc/truxe/secrets.env").unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    let secrets = env_file("/etc/truxe/secrets.env");
    let names: Vec<&str> = secrets.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "COOKIE_SECRET",
            "MFA_ENCRYPTION_KEY",
            "OAUTH_TOKEN_ENCRYPTION_KEY"
        ]
    );
    assert!(secrets.iter().all(|(_, v)| v.len() >= 43));
    assert!(secrets[0].1 != secrets[1].1 && secrets[1].1 != secrets[2].1);
    let unit = "/lib/systemd/system/truxe.service";
    verify_units(&[unit]);
    let text = std::fs::read_to_string(unit).unwrap();
    for hardening in [
        "User=truxe",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=truxe",
    ] {
        assert!(text.contains(hardening), "{unit} lacks {hardening}");
    }
    for file in [
        "/usr/share/man/man1/truxe.1.gz",
        "/usr/share/man/man1/truxe-serve.1.gz",
        "/usr/share/bash-completion/completions/truxe",
    ] {
        assert!(Path::new(file).exists(), "{file} not installed");
    }

    // As systemd would start it: the package's user, both environment
    // files, the state directory.
    let mut env = env_file("/etc/truxe/truxe.env");
    env.extend(secrets);
    assert!(Command::new("install")
        .args([
            "-d",
            "-m",
            "0700",
            "-o",
            "truxe",
            "-g",
            "truxe",
            "/var/lib/truxe"
        ])
        .status()
        .unwrap()
        .success());
    let checked = as_user(Path::new("/usr/bin/truxe"), "truxe")
        .env_clear()
        .envs(env.iter().cloned())
        .arg("check-config")
        .output()
        .unwrap();
    assert!(
        checked.status.success()
            && String::from_utf8_lossy(&checked.stdout).contains("configuration is valid"),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let port = free_port();
    let mut serve = as_user(Path::new("/usr/bin/truxe"), "truxe");
    serve
        .env_clear()
        .envs(env.iter().cloned())
        .env("PORT", port.to_string())
        .arg("serve");
    let logs = testkit::tempdir();
    let _serve = ChildGuard::spawn("truxe", serve, logs.path());
    let url = format!("http://127.0.0.1:{port}");
    testkit::wait_http_ok(&format!("{url}/ready"), Duration::from_secs(60)).await;

    let http = reqwest::Client::new();
    let registered = http
        .post(format!("{url}/api/auth/register"))
        .json(&json!({"email": "first@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::CREATED);
    let (access, _) = tokens(&registered.json().await.unwrap());
    let me = http
        .get(format!("{url}/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // Its database and keys are in the state directory, owned by its user.
    use std::os::unix::fs::MetadataExt;
    let db = std::fs::metadata("/var/lib/truxe/truxe.db").unwrap();
    let uid = String::from_utf8(
        Command::new("id")
            .args(["-u", "truxe"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(db.uid().to_string(), uid.trim());
}
