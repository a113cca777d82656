//! Start-up configuration: the original environment variables, and
//! refusal of invalid values with a message naming the variable.

use std::process::Command;
use std::time::Duration;

use testkit::{free_port, ChildGuard};

use crate::cluster::{COORD, NODE};

fn refused(bin: &str, envs: &[(&str, &str)], var: &str) {
    let dir = testkit::tempdir();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("TORUA_DATA_DIR", dir.path().join("c"))
        .env("DATA_DIR", dir.path().join("n"));
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "{bin} {envs:?} should refuse to start"
    );
    assert!(stderr.contains(var), "error should name {var}: {stderr}");
}

#[test]
fn invalid_values_are_refused_naming_the_variable() {
    refused(
        COORD,
        &[("COORDINATOR_ADDR", "nonsense")],
        "COORDINATOR_ADDR",
    );
    refused(
        COORD,
        &[("COORDINATOR_ADDR", ":0"), ("HEALTH_CHECK_INTERVAL", "5")],
        "HEALTH_CHECK_INTERVAL",
    );
    refused(
        COORD,
        &[("COORDINATOR_ADDR", ":0"), ("TORUA_SHARDS", "0")],
        "TORUA_SHARDS",
    );
    refused(
        NODE,
        &[("COORDINATOR_ADDR", "http://127.0.0.1:1")],
        "NODE_ID",
    );
    refused(
        NODE,
        &[("COORDINATOR_ADDR", "http://127.0.0.1:1,nonsense")],
        "COORDINATOR_ADDR",
    );
    // Several coordinators: every one named, this one among them.
    let coord = ("COORDINATOR_ADDR", ":0");
    refused(
        COORD,
        &[
            coord,
            ("TORUA_COORDINATOR_PEERS", "c1=http://127.0.0.1:1,c2"),
        ],
        "TORUA_COORDINATOR_PEERS",
    );
    refused(
        COORD,
        &[coord, ("TORUA_COORDINATOR_PEERS", "c1=http://127.0.0.1:1")],
        "TORUA_COORDINATOR_ID",
    );
    refused(
        COORD,
        &[
            coord,
            ("TORUA_COORDINATOR_PEERS", "c1=http://127.0.0.1:1"),
            ("TORUA_COORDINATOR_ID", "c9"),
        ],
        "TORUA_COORDINATOR_ID",
    );
    // Security settings: refused, never guessed.
    let node = [
        ("COORDINATOR_ADDR", "http://127.0.0.1:1"),
        ("NODE_ID", "n1"),
        ("NODE_LISTEN", "127.0.0.1:0"),
    ];
    refused(NODE, &node, "TORUA_MASTER_KEY_FILE");
    refused(
        NODE,
        &[
            node[0],
            node[1],
            node[2],
            ("TORUA_MASTER_KEY", "passphrase"),
        ],
        "TORUA_MASTER_KEY",
    );
    refused(
        NODE,
        &[node[0], node[1], node[2], ("TORUA_ENCRYPTION", "maybe")],
        "TORUA_ENCRYPTION",
    );
    let coord = ("COORDINATOR_ADDR", "127.0.0.1:0");
    refused(
        COORD,
        &[coord, ("TORUA_JWKS_URL", "http://127.0.0.1:1/jwks.json")],
        "TORUA_JWT_ISSUER",
    );
    refused(
        COORD,
        &[coord, ("TORUA_RATE_LIMIT_IP", "lots")],
        "TORUA_RATE_LIMIT_IP",
    );
    refused(COORD, &[coord, ("TORUA_AUTH", "sometimes")], "TORUA_AUTH");
    // TLS is on by default: its files are required, or TORUA_TLS=off.
    refused(COORD, &[coord], "TORUA_TLS_CERT");
    refused(
        COORD,
        &[
            coord,
            ("TORUA_TLS_CERT", "/nonexistent/cert.pem"),
            ("TORUA_TLS_KEY", "/nonexistent/key.pem"),
            ("TORUA_TLS_CA", "/nonexistent/ca.pem"),
        ],
        "/nonexistent/cert.pem",
    );
    refused(
        NODE,
        &[
            ("NODE_ID", "n/1"),
            ("COORDINATOR_ADDR", "http://127.0.0.1:1"),
        ],
        "NODE_ID",
    );
    refused(
        NODE,
        &[("NODE_ID", "n1"), ("COORDINATOR_ADDR", "127.0.0.1:8080")],
        "COORDINATOR_ADDR",
    );
    refused(
        NODE,
        &[
            ("NODE_ID", "n1"),
            ("COORDINATOR_ADDR", "http://127.0.0.1:1"),
            ("NODE_LISTEN", "8081"),
        ],
        "NODE_LISTEN",
    );
}

#[test]
fn shard_count_cannot_change_after_creation() {
    let dir = testkit::tempdir();
    let start = |shards: &str| {
        let mut cmd = Command::new(COORD);
        cmd.env("COORDINATOR_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("TORUA_TLS", "off")
            .env("TORUA_DATA_DIR", dir.path())
            .env("TORUA_SHARDS", shards);
        ChildGuard::spawn(&format!("coord-{shards}"), cmd, dir.path())
    };
    let mut first = start("8");
    testkit::eventually_sync("cluster.json written", Duration::from_secs(30), || {
        dir.path().join("cluster.json").exists()
    });
    first.terminate(Duration::from_secs(10));
    let mut second = start("16");
    let status = second
        .wait_exit(Duration::from_secs(30))
        .expect("coordinator should exit");
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.path().join("coord-16.log")).unwrap();
    assert!(
        log.contains("TORUA_SHARDS is 16") && log.contains("8 shards"),
        "{log}"
    );
}

#[tokio::test]
async fn go_style_listen_address_binds_all_interfaces() {
    let dir = testkit::tempdir();
    let port = free_port();
    let mut cmd = Command::new(COORD);
    cmd.env("COORDINATOR_ADDR", format!(":{port}"))
        .env("TORUA_TLS", "off")
        .env("TORUA_DATA_DIR", dir.path());
    let _c = ChildGuard::spawn("coord", cmd, dir.path());
    testkit::wait_http_ok(
        &format!("http://127.0.0.1:{port}/health"),
        Duration::from_secs(30),
    )
    .await;
    // Another local address answers too: 127.0.0.2 reaches a socket bound
    // to every interface, not one bound to 127.0.0.1 alone.
    let other = reqwest::get(format!("http://127.0.0.2:{port}/health"))
        .await
        .expect("127.0.0.2 is refused: the listener is not on every interface");
    assert_eq!(other.status(), reqwest::StatusCode::OK);
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    let bin = env!("CARGO_BIN_EXE_torua");
    let nowhere = [
        ("TORUA_CA", "/nonexistent/ca.pem"),
        ("TORUA_COORDINATOR", "not a url"),
    ];
    testkit::cli::completions_and_man_pages(bin, &nowhere, "torua", "apikey");
}

#[test]
fn a_coordinator_that_cannot_be_reached_is_named_with_what_to_do() {
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_torua"))
        .env_remove("TORUA_TOKEN")
        .args([
            "--coordinator",
            &format!("http://127.0.0.1:{port}"),
            "status",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "cannot connect to the coordinator at http://127.0.0.1:{port}"
        )) && err.contains("torua dev")
            && err.contains("TORUA_COORDINATOR"),
        "{err}"
    );
}
